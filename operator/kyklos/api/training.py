"""The TrainingJob kind: training as a Kubernetes Job, single or distributed, with a gate."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import ConfigDict, Field, StringConstraints

from kyklos.api.common import (
    CelRule,
    Conditions,
    KyklosModel,
    LocalObjectReference,
    ObjectName,
    ResourceRequirements,
    StringMap,
    Toleration,
    cel_rules,
)
from kyklos.api.podtemplate import PodTemplate
from kyklos.api.registry import RegistryRef, RegistryStatus

#: Placeholders allowed in output.modelUri.
MODEL_URI_PLACEHOLDERS = ("namespace", "name", "run")

ImageRef = Annotated[
    str,
    StringConstraints(
        # registry/repository[:tag][@digest], lower-case repository, no whitespace.
        pattern=r"^[a-z0-9]+([._\-/:][a-z0-9]+)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$",
        min_length=1,
        max_length=512,
    ),
]
Arg = Annotated[str, StringConstraints(max_length=4096)]

# A transition rule on the whole object: the API server evaluates it on every update of the
# main resource (status updates go through /status, where spec cannot change anyway). Every
# spec field but `suspend` is compared (a running job may be suspended and resumed); the
# field list is filled in from TrainingJobSpec below, once the model exists.
_IMMUTABLE_MESSAGE = (
    "spec is immutable once the training has started (only suspend may change); "
    "create a new TrainingJob to re-run"
)
#: Spec fields (wire names) a started TrainingJob may still change.
MUTABLE_ONCE_STARTED = ("suspend",)


def _immutable_rule(fields: list[str]) -> CelRule:
    same = " && ".join(
        f"has(self.spec.{f}) == has(oldSelf.spec.{f}) && "
        f"(!has(self.spec.{f}) || self.spec.{f} == oldSelf.spec.{f})"
        for f in fields
    )
    return CelRule(
        rule=f"!has(oldSelf.status) || !has(oldSelf.status.startTime) || ({same})",
        message=_IMMUTABLE_MESSAGE,
        field_path=".spec",
    )


class TrainingPhase(StrEnum):
    """Lifecycle phase of a TrainingJob."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    #: a started training paused with spec.suspend (its Job suspended)
    SUSPENDED = "Suspended"


class Direction(StrEnum):
    """Whether a larger or a smaller metric is better."""

    MAX = "max"
    MIN = "min"


class DatasetReference(KyklosModel):
    """The Dataset a TrainingJob trains on."""

    name: ObjectName = Field(description="Name of the Dataset in the same namespace.")
    version: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None,
        description="Train only on this dataset version; the job waits until the Dataset has it.",
    )


class Output(KyklosModel):
    """Where the trained model goes."""

    model_uri: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None,
        description=(
            "URI the trainer writes the model to; {namespace}, {name} and {run} are expanded. "
            "Default: <artifacts>/{namespace}/TrainingJob/{name}/{run}/model."
        ),
    )


class OnChampionError(StrEnum):
    """What the gate does when the champion cannot be scored."""

    REJECT = "Reject"
    THRESHOLD_ONLY = "ThresholdOnly"


ChangeThreshold = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class CompareTo(KyklosModel):
    """The champion: the model a ModelDeployment serves (status.stableModel) when evaluation starts."""

    model_deployment_ref: LocalObjectReference = Field(
        description="The ModelDeployment whose stable model is the champion."
    )
    min_absolute_change: ChangeThreshold = Field(
        default=0.0,
        description=(
            "The challenger must beat the champion by at least this much in the metric's "
            "direction (max: challenger >= champion + change; min: <= champion - change)."
        ),
    )
    min_relative_change: ChangeThreshold = Field(
        default=0.0,
        description=(
            "The challenger must beat the champion by at least this fraction of |champion| "
            "(max: (challenger - champion) / |champion|; min: (champion - challenger) / |champion|). "
            "With a champion value of 0 the relative check is only 'strictly better'."
        ),
    )


class Evaluator(KyklosModel):
    """The container that scores a model (default: the trainer's image and command)."""

    image: ImageRef | None = Field(default=None, description="Image; the trainer's when unset.")
    command: list[Arg] | None = Field(
        default=None,
        max_length=64,
        description=(
            "Entrypoint. Unset: the trainer's command when image is unset too, else the "
            "image's entrypoint."
        ),
    )
    args: list[Arg] | None = Field(
        default=None,
        max_length=256,
        description="Arguments. Unset: the trainer's args when image and command are unset too.",
    )
    env: StringMap | None = Field(
        default=None, description="Extra environment; the trainer's spec.env when unset."
    )
    resources: ResourceRequirements | None = Field(
        default=None,
        description="Compute resources of each scoring container; the trainer's when unset.",
    )


class Evaluation(KyklosModel):
    """The gate a trained model must pass to be accepted."""

    metric: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="Name of the metric in the trainer's metrics JSON, e.g. accuracy."
    )
    threshold: float = Field(description="Value the metric must reach.")
    direction: Direction = Field(
        default=Direction.MAX,
        description="max: accepted when metric >= threshold; min: when metric <= threshold.",
    )
    dataset_ref: DatasetReference | None = Field(
        default=None,
        description=(
            "The data both models are scored on (pinned in status.evaluation.datasetVersion). "
            "Default: spec.datasetRef. Setting datasetRef, compareTo or evaluator runs an "
            "evaluation Job <name>-eval; otherwise the trainer's own metrics are gated."
        ),
    )
    compare_to: CompareTo | None = Field(
        default=None,
        description="Champion/challenger: the new model must also beat the model a ModelDeployment serves.",
    )
    evaluator: Evaluator | None = Field(
        default=None,
        description="The scoring container (KYKLOS_MODE=evaluate); default: the trainer's image and command.",
    )
    on_champion_error: OnChampionError = Field(
        default=OnChampionError.REJECT,
        description=(
            "When the champion cannot be scored: Reject the challenger, or ThresholdOnly "
            "(apply only the threshold)."
        ),
    )

    def runs_job(self) -> bool:
        """Whether the gate scores models in an evaluation Job (else it reads the trainer's metrics)."""
        return (
            self.dataset_ref is not None
            or self.compare_to is not None
            or self.evaluator is not None
        )


class FailurePolicy(KyklosModel):
    """What happens when a worker fails (gang restart of distributed training)."""

    restart_all: bool | None = Field(
        default=None,
        description=(
            "Any failed worker fails the whole attempt and all workers restart together "
            "(a new Job); default: true when workers > 1. Off: the Job retries the failed "
            "pod alone (backoffLimit)."
        ),
    )
    max_restarts: int = Field(
        default=3, ge=0, le=100, description="Whole-group restarts before the TrainingJob fails."
    )


class TrainingJobSpec(KyklosModel):
    """Desired state of a TrainingJob. Immutable once the training has started."""

    dataset_ref: DatasetReference = Field(description="The Dataset to train on.")
    image: ImageRef = Field(description="Container image of the trainer.")
    command: list[Arg] | None = Field(
        default=None, max_length=64, description="Entrypoint; the image's when unset."
    )
    args: list[Arg] | None = Field(
        default=None, max_length=256, description="Arguments to the entrypoint."
    )
    env: StringMap | None = Field(
        default=None, description="Extra environment variables for the trainer."
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Compute resources of each training container."
    )
    node_selector: StringMap | None = Field(
        default=None, description="Node labels the training pods must run on."
    )
    tolerations: list[Toleration] | None = Field(
        default=None, max_length=32, description="Tolerations of the training pods."
    )
    service_account_name: ObjectName | None = Field(
        default=None, description="ServiceAccount the training pods run as."
    )
    hyperparameters: StringMap | None = Field(
        default=None,
        description="Passed to the trainer as JSON in KYKLOS_HYPERPARAMETERS (values are strings).",
    )
    template: PodTemplate | None = Field(
        default=None,
        description=(
            "Pod overrides merged onto the training pods: envFrom, env valueFrom, volumes, "
            "affinity, tolerations, extended resources, securityContext, ... (Kyklos's env wins)."
        ),
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="Number of workers; more than 1 runs an Indexed Job with a headless Service.",
    )
    master_port: int = Field(
        default=29500, ge=1, le=65535, description="MASTER_PORT for distributed training."
    )
    backoff_limit: int = Field(
        default=2, ge=0, le=100, description="Retries before the Job is marked failed."
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Time limit of the whole Job, in seconds."
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Delete the finished Job (not the TrainingJob) after this."
    )
    output: Output = Field(default_factory=Output, description="Where the trained model goes.")
    evaluation: Evaluation | None = Field(
        default=None, description="The gate the model must pass (condition ModelAccepted)."
    )
    registry: RegistryRef | None = Field(
        default=None,
        description="Record the run and (when accepted) a model version in MLflow under this name.",
    )
    failure_policy: FailurePolicy | None = Field(
        default=None,
        description="Gang restart: {restartAll, maxRestarts} (restartAll defaults to workers > 1).",
    )
    suspend: bool = Field(
        default=False,
        description=(
            "Suspend the Job: before it starts (set to false to start it), or while it runs "
            "(phase Suspended; its pods stop; false resumes on the same pinned data version)."
        ),
    )
    queue_name: Annotated[str, StringConstraints(min_length=1, max_length=253)] | None = Field(
        default=None, description="Kueue LocalQueue; sets the kueue.x-k8s.io/queue-name label."
    )


class ChampionResult(KyklosModel):
    """The champion as recorded when the evaluation started, and its scores."""

    model_deployment: str | None = Field(
        default=None, description="The ModelDeployment it was serving from."
    )
    model: str | None = Field(
        default=None, description="Its model URI (status.stableModel when evaluation started)."
    )
    metrics: dict[str, float] | None = Field(
        default=None, max_length=64, description="Its metrics from the evaluator."
    )
    error: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="Why it could not be scored."
    )


class ChallengerResult(KyklosModel):
    """The newly trained model's scores from the evaluator."""

    model: str | None = Field(default=None, description="Its model URI (status.modelUri).")
    metrics: dict[str, float] | None = Field(
        default=None, max_length=64, description="Its metrics from the evaluator."
    )


class EvaluationResult(KyklosModel):
    """The evaluation gate's verdict."""

    metric: str | None = Field(default=None, description="Name of the evaluated metric.")
    value: float | None = Field(default=None, description="The metric's value, when reported.")
    threshold: float | None = Field(default=None, description="The threshold it was compared to.")
    accepted: bool | None = Field(default=None, description="Whether the model passed the gate.")
    verdict: str | None = Field(
        default=None,
        description=(
            "The ModelAccepted reason (ThresholdMet, BelowThreshold, BeatsChampion, "
            "NotBetterThanChampion, NoChampion, ChampionEvaluationFailed, EvaluationFailed, "
            "MetricMissing), or Evaluating while the evaluation Job runs."
        ),
    )
    job_name: str | None = Field(default=None, description="The evaluation Job (<name>-eval).")
    dataset: str | None = Field(default=None, description="The Dataset both models were scored on.")
    dataset_version: str | None = Field(
        default=None, description="Its version, pinned when the evaluation started."
    )
    champion: ChampionResult | None = Field(default=None, description="The champion (compareTo).")
    challenger: ChallengerResult | None = Field(default=None, description="The new model.")
    delta: float | None = Field(
        default=None,
        description="challenger - champion in the metric's direction (positive: the challenger is better).",
    )
    relative_delta: float | None = Field(
        default=None, description="delta / |champion| (unset when the champion's value is 0)."
    )


class TrainingJobStatus(KyklosModel):
    """Observed state of a TrainingJob."""

    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this status describes."
    )
    phase: TrainingPhase | None = Field(
        default=None, description="Pending, Running, Succeeded or Failed."
    )
    job_name: str | None = Field(default=None, description="Name of the batch/v1 Job.")
    run: str | None = Field(default=None, description="Run identifier ({run} in output.modelUri).")
    dataset_version: str | None = Field(
        default=None, description="The dataset version this training was pinned to (lineage)."
    )
    dataset_uri: str | None = Field(default=None, description="URI of the data trained on.")
    model_uri: str | None = Field(default=None, description="Where the trained model was written.")
    start_time: datetime | None = Field(default=None, description="When training started.")
    completion_time: datetime | None = Field(default=None, description="When training finished.")
    attempts: int | None = Field(default=None, description="Failed pods so far.")
    restarts: int | None = Field(
        default=None, description="Whole-group restarts so far (spec.failurePolicy)."
    )
    registry: RegistryStatus | None = Field(
        default=None, description="What was recorded in the MLflow registry."
    )
    metrics: dict[str, float] | None = Field(
        default=None, max_length=64, description="Numeric metrics reported by the trainer."
    )
    evaluation: EvaluationResult | None = Field(
        default=None, description="The evaluation gate's verdict."
    )
    conditions: Conditions | None = Field(default=None, description="Ready and ModelAccepted.")


SPEC_IMMUTABLE_ONCE_STARTED = _immutable_rule(
    [
        str(f.alias)
        for f in TrainingJobSpec.model_fields.values()
        if f.alias not in MUTABLE_ONCE_STARTED
    ]
)


class TrainingJob(KyklosModel):
    """A training run as a Kubernetes Job, with lineage, metrics and an evaluation gate."""

    model_config = ConfigDict(json_schema_extra=cel_rules(SPEC_IMMUTABLE_ONCE_STARTED))

    KIND: ClassVar[str] = "TrainingJob"
    PLURAL: ClassVar[str] = "trainingjobs"
    SHORT_NAMES: ClassVar[list[str]] = ["tj"]

    spec: TrainingJobSpec = Field(description="Desired state of the TrainingJob.")
    status: TrainingJobStatus | None = Field(
        default=None, description="Observed state of the TrainingJob."
    )


def validate_update(old: TrainingJob, new: TrainingJob) -> None:
    """Reject a spec change once training has started (the CRD's transition rule, in Python)."""
    started = old.status is not None and old.status.start_time is not None
    mutable = {"suspend"}
    if started and new.spec.model_dump(exclude=mutable) != old.spec.model_dump(exclude=mutable):
        raise SPEC_IMMUTABLE_ONCE_STARTED.error()
