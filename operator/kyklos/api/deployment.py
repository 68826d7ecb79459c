"""The ModelDeployment kind: a served model, rolled out through a canary."""

from __future__ import annotations

import itertools
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from kyklos.api.common import (
    CelRule,
    Conditions,
    Duration,
    KyklosModel,
    LocalObjectReference,
    ObjectName,
    ResourceRequirements,
    StringMap,
    cel_rules,
)
from kyklos.api.podtemplate import PodTemplate
from kyklos.api.registry import RegistryRef, RegistryStatus
from kyklos.api.training import Arg, ImageRef

MAX_HISTORY = 10
#: Analysis records kept in status (newest last).
MAX_ANALYSES = 20
#: Manual actions kept per rollout record.
MAX_ACTIONS = 10
#: ``pause: manual``: the step waits for ``kyklos rollout promote``.
MANUAL_PAUSE = "manual"
#: A step pause: a duration, or ``manual``.
PAUSE_PATTERN = r"^(manual|([0-9]+(ms|s|m|h|d))+)$"
#: ``{{...}}`` names a Prometheus query may use (docs in ``PrometheusQuery``).
QUERY_VARIABLES = ("revision", "canaryRevision", "stableRevision", "namespace", "name")
#: A query whose every ``{{...}}`` is one of QUERY_VARIABLES (no stray braces).
# (RE2 has no look-ahead: a single brace is matched with the character after it.)
QUERY_PATTERN = r"^([^{}]|\{[^{}]|\}[^{}]|\}$|\{\{(" + "|".join(QUERY_VARIABLES) + r")\}\})*$"
#: ``result <op> <number>``: the only successCondition grammar.
CONDITION_PATTERN = r"^\s*result\s*(<=|>=|==|!=|<|>)\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$"

ONE_MODEL_SOURCE = CelRule(
    rule="has(self.uri) != has(self.fromTrainingJob)",
    message="set exactly one of uri and fromTrainingJob",
)
MIN_LE_MAX_REPLICAS = CelRule(
    rule="!has(self.minReplicas) || self.minReplicas <= self.maxReplicas",
    message="must be less than or equal to maxReplicas",
    field_path=".minReplicas",
)
CANARY_NEEDS_STEPS = CelRule(
    rule="!has(self.type) || self.type != 'Canary' || has(self.steps)",
    message="required when type is Canary",
    field_path=".steps",
)
#: The schema of a whole number that a CEL rule reads. With ``type: integer`` the API server
#: lets ``1.0`` through its schema check but CEL then fails the rule ("expected int, got
#: float64"); as a number that must be a multiple of 1, CEL reads 1 and 1.0 alike (as
#: doubles), the schema still refuses 1.5, and the API server agrees with pydantic.
CEL_INT: dict[str, Any] = {"type": "number", "multipleOf": 1}

# isSorted() is in the Kubernetes CEL list library; exists_one rules out equal neighbours,
# so together they mean strictly increasing.
INCREASING_WEIGHTS = CelRule(
    rule=(
        "!has(self.steps) || (self.steps.map(s, s.weight).isSorted()"
        " && self.steps.all(s, self.steps.exists_one(t, t.weight == s.weight)))"
    ),
    message="weights must be strictly increasing",
    field_path=".steps",
)


class DeploymentPhase(StrEnum):
    """Lifecycle phase of a ModelDeployment."""

    PENDING = "Pending"
    PROGRESSING = "Progressing"
    AVAILABLE = "Available"
    DEGRADED = "Degraded"
    ROLLED_BACK = "RolledBack"
    PAUSED = "Paused"


class Verdict(StrEnum):
    """The outcome of a canary analysis (and of each of its checks)."""

    PASS = "Pass"
    FAIL = "Fail"
    INCONCLUSIVE = "Inconclusive"


class OnFailure(StrEnum):
    """What a failed analysis does to the rollout."""

    ROLLBACK = "Rollback"
    PAUSE = "Pause"


class OnInconclusive(StrEnum):
    """What an inconclusive analysis does to the rollout."""

    PAUSE = "Pause"
    CONTINUE = "Continue"
    ROLLBACK = "Rollback"


class RolloutAction(StrEnum):
    """A manual rollout action (``kyklos rollout ...``), requested by annotation."""

    PROMOTE = "promote"
    ABORT = "abort"
    PAUSE = "pause"
    RESUME = "resume"


class StrategyType(StrEnum):
    """How a new model replaces the serving one."""

    ROLLING_UPDATE = "RollingUpdate"
    CANARY = "Canary"


class RolloutOutcome(StrEnum):
    """How a rollout ended."""

    IN_PROGRESS = "InProgress"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    SUPERSEDED = "Superseded"
    DEGRADED = "Degraded"


class ModelSource(KyklosModel):
    """The model to serve: a URI, or the accepted model of a TrainingJob (exactly one)."""

    model_config = ConfigDict(json_schema_extra=cel_rules(ONE_MODEL_SOURCE))

    uri: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None, description="URI of the model, passed to the server as KYKLOS_MODEL_URI."
    )
    from_training_job: ObjectName | None = Field(
        default=None,
        description="Name of a TrainingJob; its model is served once it Succeeded and was accepted.",
    )
    version: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None,
        description="Version label for the model (KYKLOS_MODEL_VERSION). Default: derived from the URI.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description=(
            "Secret with the model store's credentials (e.g. AWS_ACCESS_KEY_ID), given only to "
            "the init container that downloads an s3/gs/http(s) model."
        ),
    )

    @model_validator(mode="after")
    def _exactly_one_source(self) -> ModelSource:
        if (self.uri is None) == (self.from_training_job is None):
            raise ONE_MODEL_SOURCE.error()
        return self


class Runtime(KyklosModel):
    """The model server's container."""

    image: ImageRef = Field(description="Container image of the model server.")
    command: list[Arg] | None = Field(
        default=None, max_length=64, description="Entrypoint; the image's when unset."
    )
    args: list[Arg] | None = Field(
        default=None, max_length=256, description="Arguments to the entrypoint."
    )
    env: StringMap | None = Field(default=None, description="Extra environment variables.")
    port: int = Field(default=8080, ge=1, le=65535, description="Port the server listens on.")
    resources: ResourceRequirements | None = Field(
        default=None, description="Compute resources of each serving container."
    )
    health_path: Annotated[str, StringConstraints(pattern=r"^/", max_length=1024)] = Field(
        default="/healthz", description="HTTP path of the readiness probe."
    )
    template: PodTemplate | None = Field(
        default=None,
        description=(
            "Pod overrides merged onto the serving pods: envFrom, env valueFrom, volumes, "
            "affinity, tolerations, extended resources, securityContext, ... (Kyklos's env wins)."
        ),
    )


class Autoscaling(KyklosModel):
    """Horizontal autoscaling of the stable Deployment (autoscaling/v2 HPA on CPU)."""

    model_config = ConfigDict(json_schema_extra=cel_rules(MIN_LE_MAX_REPLICAS))

    min_replicas: int = Field(
        default=1, ge=1, le=1000, description="Lowest replica count.", json_schema_extra=CEL_INT
    )
    max_replicas: int = Field(
        ge=1, le=1000, description="Highest replica count.", json_schema_extra=CEL_INT
    )
    target_cpu_utilization: int = Field(
        default=80, ge=1, le=100, description="Average CPU utilisation target, in percent."
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise MIN_LE_MAX_REPLICAS.error()
        return self


class RequestLog(KyklosModel):
    """What the serving proxy records of each request."""

    sample_rate: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="Fraction of requests whose JSON bodies are logged (every request is counted).",
    )
    flush_interval: Duration = Field(
        default="10s",
        description="Request logs are written to the artifact store at least this often.",
    )
    max_body_bytes: int = Field(
        default=65536,
        ge=0,
        le=1 << 20,
        description="Bodies larger than this are not logged (counted as dropped).",
    )


class Observability(KyklosModel):
    """The serving proxy sidecar (kyklos proxy): metrics and request logs of every pod."""

    proxy: bool = Field(
        default=True,
        description=(
            "Run the kyklos proxy in every serving pod. It listens on runtime.port and "
            "forwards to the server on the pod-local port in KYKLOS_SERVER_PORT."
        ),
    )
    request_log: RequestLog = Field(
        default_factory=RequestLog, description="Request logs written by the proxy."
    )


class ErrorRateCheck(KyklosModel):
    """Fails when the canary's 5xx share exceeds the stable's by more than maxIncrease."""

    max_increase: float = Field(
        ge=0.0, le=1.0, description="Largest allowed canary minus stable 5xx share (0-1)."
    )


class LatencyCheck(KyklosModel):
    """Fails when the canary's p99 latency exceeds the stable's by more than a ratio."""

    p99_max_ratio: float = Field(
        ge=1.0, le=100.0, description="Largest allowed canary p99 / stable p99 (>= 1)."
    )


DriftMethodName = Literal["js", "psi", "wasserstein"]


class PredictionDriftCheck(KyklosModel):
    """Fails when the canary's predictions drift from the stable's on the same traffic."""

    method: DriftMethodName = Field(default="js", description="js, psi or wasserstein.")
    threshold: float = Field(
        gt=0.0, le=10.0, description="Score at or above which the predictions count as drifted."
    )


class InputDriftCheck(KyklosModel):
    """Fails when the inputs the canary saw drift from the stable's (a skewed split)."""

    method: DriftMethodName = Field(default="js", description="js, psi or wasserstein.")
    threshold: float = Field(gt=0.0, le=10.0, description="Per-feature drift threshold.")
    drift_share: float = Field(
        default=0.5, gt=0.0, le=1.0, description="Fraction of drifted features that fails."
    )


class PrometheusQuery(KyklosModel):
    """One PromQL query whose scalar result must satisfy successCondition."""

    name: Annotated[str, StringConstraints(pattern=r"^[a-zA-Z][a-zA-Z0-9_-]*$", max_length=63)] = (
        Field(description="Name of the check in status.analysis[].checks.")
    )
    query: Annotated[
        str, StringConstraints(min_length=1, max_length=4096, pattern=QUERY_PATTERN)
    ] = Field(
        description=(
            "PromQL; may use the double-brace variables revision (the canary's), "
            "canaryRevision, stableRevision, namespace and name."
        )
    )
    success_condition: Annotated[
        str, StringConstraints(pattern=CONDITION_PATTERN, max_length=128)
    ] = Field(description="'result <op> <number>', op one of < <= > >= == !=.")


class PrometheusCheck(KyklosModel):
    """Checks answered by a Prometheus server."""

    address: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$", max_length=2048)] = (
        Field(description="Base URL of the Prometheus HTTP API, e.g. http://prometheus:9090.")
    )
    queries: list[PrometheusQuery] = Field(
        min_length=1,
        max_length=10,
        description="Queries, each a check by its name.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )


class Analysis(KyklosModel):
    """Canary analysis run at the end of each step's pause on the live traffic of both revisions."""

    window: Duration = Field(
        default="1m", description="The request logs of the last window are compared."
    )
    min_samples: int = Field(
        default=50,
        ge=1,
        le=10_000_000,
        description="Fewer requests than this on either side: Inconclusive.",
    )
    error_rate: ErrorRateCheck | None = Field(default=None, description="The 5xx share check.")
    latency: LatencyCheck | None = Field(default=None, description="The p99 latency check.")
    prediction_drift: PredictionDriftCheck | None = Field(
        default=None, description="The canary-versus-stable prediction drift check."
    )
    input_drift: InputDriftCheck | None = Field(
        default=None, description="The canary-versus-stable input drift check."
    )
    prometheus: PrometheusCheck | None = Field(
        default=None, description="Checks answered by a Prometheus server."
    )
    on_failure: OnFailure = Field(
        default=OnFailure.ROLLBACK, description="Rollback (as on a crash loop) or Pause."
    )
    on_inconclusive: OnInconclusive = Field(
        default=OnInconclusive.PAUSE, description="Pause, Continue or Rollback."
    )


class CanaryStep(KyklosModel):
    """One step of a canary: the canary's share of replicas, and how long to hold it."""

    weight: int = Field(
        ge=1,
        le=100,
        description="Canary share of replicas, in percent (1-100).",
        json_schema_extra=CEL_INT,
    )
    pause: Annotated[str, StringConstraints(pattern=PAUSE_PATTERN, max_length=32)] = Field(
        default="30s",
        description=(
            "How long the step holds once the canary is Ready, or 'manual': the step waits "
            "for kyklos rollout promote."
        ),
    )
    analysis: Analysis | None = Field(
        default=None,
        description="This step's analysis (replaces strategy.analysis for the step).",
    )


class Strategy(KyklosModel):
    """How a new model replaces the serving one."""

    model_config = ConfigDict(json_schema_extra=cel_rules(CANARY_NEEDS_STEPS, INCREASING_WEIGHTS))

    type: StrategyType = Field(
        default=StrategyType.ROLLING_UPDATE, description="RollingUpdate or Canary."
    )
    steps: list[CanaryStep] | None = Field(
        default=None,
        min_length=1,
        max_length=20,
        description="Canary steps with strictly increasing weights; promoted after the last step.",
    )
    analysis: Analysis | None = Field(
        default=None,
        description="Canary analysis at the end of every step's pause (a step may replace it).",
    )

    @model_validator(mode="after")
    def _increasing_weights(self) -> Strategy:
        if self.type == StrategyType.CANARY and not self.steps:
            raise CANARY_NEEDS_STEPS.error()
        if self.steps:
            weights = [s.weight for s in self.steps]
            if any(b <= a for a, b in itertools.pairwise(weights)):
                raise INCREASING_WEIGHTS.error()
        return self


class ModelDeploymentSpec(KyklosModel):
    """Desired state of a ModelDeployment."""

    model: ModelSource = Field(description="The model to serve.")
    runtime: Runtime = Field(description="The model server's container.")
    replicas: int = Field(
        default=1, ge=0, le=1000, description="Serving replicas (ignored when autoscaling is set)."
    )
    autoscaling: Autoscaling | None = Field(
        default=None, description="Horizontal autoscaling on CPU."
    )
    registry: RegistryRef | None = Field(
        default=None,
        description=(
            "MLflow registered model whose aliases follow the rollouts: challenger while a "
            "canary runs, champion on promotion."
        ),
    )
    strategy: Strategy = Field(
        default_factory=Strategy, description="How a new model replaces the serving one."
    )
    progress_deadline_seconds: int = Field(
        default=600,
        ge=1,
        le=86400,
        description="A rollout (or canary step) not Ready within this many seconds fails.",
    )
    auto_rollback: bool = Field(
        default=True, description="Roll a failing canary back automatically."
    )
    max_canary_restarts: int = Field(
        default=3,
        ge=0,
        le=1000,
        description="A canary container restarting more often than this is a crash loop.",
    )
    observability: Observability = Field(
        default_factory=Observability,
        description="The serving proxy sidecar: metrics and request logs.",
    )


class ManualAction(KyklosModel):
    """A manual rollout action the controller carried out."""

    action: RolloutAction = Field(description="promote, abort, pause or resume.")
    time: datetime | None = Field(default=None, description="When it was requested.")
    user: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="Who asked: the field manager that set the annotation."
    )


class RolloutRecord(KyklosModel):
    """One rollout in the history."""

    model: str = Field(description="The model URI rolled out.")
    strategy: StrategyType = Field(description="RollingUpdate or Canary.")
    outcome: RolloutOutcome = Field(
        description="InProgress, Promoted, RolledBack, Superseded or Degraded."
    )
    start_time: datetime | None = Field(default=None, description="When the rollout started.")
    end_time: datetime | None = Field(default=None, description="When the rollout ended.")
    message: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="Why it ended this way."
    )
    actions: list[ManualAction] | None = Field(
        default=None, max_length=MAX_ACTIONS, description="Manual actions during this rollout."
    )


class AnalysisSamples(KyklosModel):
    """Requests analysed per revision."""

    canary: int = Field(default=0, ge=0, description="Requests the canary answered.")
    stable: int = Field(default=0, ge=0, description="Requests the stable answered.")


class CheckResult(KyklosModel):
    """One check of an analysis."""

    name: Annotated[str, StringConstraints(max_length=128)] = Field(description="The check.")
    value: float | None = Field(default=None, description="The measured value.")
    limit: float | None = Field(default=None, description="The limit it was judged against.")
    verdict: Verdict = Field(description="Pass, Fail or Inconclusive.")
    message: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="Why (for Fail and Inconclusive)."
    )


class AnalysisRecord(KyklosModel):
    """The analysis of one canary step."""

    step: int = Field(ge=0, description="The canary step (0-based).")
    revision: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None, description="The canary revision analysed."
    )
    start_time: datetime | None = Field(default=None, description="Start of the window.")
    end_time: datetime | None = Field(default=None, description="End of the window.")
    samples: AnalysisSamples | None = Field(default=None, description="Requests per revision.")
    checks: list[CheckResult] | None = Field(
        default=None, max_length=32, description="Every check and its verdict."
    )
    verdict: Verdict = Field(description="Pass, Fail or Inconclusive.")
    message: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="Summary, or the cause of an Inconclusive verdict."
    )


class ModelDeploymentStatus(KyklosModel):
    """Observed state of a ModelDeployment."""

    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this status describes."
    )
    phase: DeploymentPhase | None = Field(
        default=None,
        description="Pending, Progressing, Paused, Available, Degraded or RolledBack.",
    )
    stable_model: str | None = Field(default=None, description="Model served by <name>-stable.")
    canary_model: str | None = Field(
        default=None, description="Model served by <name>-canary while a canary runs."
    )
    canary_weight: int | None = Field(default=None, description="Canary share of replicas (%).")
    step: int | None = Field(default=None, description="Current canary step (0-based).")
    step_start_time: datetime | None = Field(
        default=None, description="When the current canary step became Ready."
    )
    rollout_start_time: datetime | None = Field(
        default=None, description="When the current rollout (or step) started."
    )
    failed_model: str | None = Field(
        default=None, description="The last model that was rolled back (not retried)."
    )
    failed_revision: str | None = Field(
        default=None,
        description="Revision (digest of model and runtime) of the last rolled-back rollout; not retried.",
    )
    replicas: int | None = Field(default=None, description="Desired serving replicas.")
    ready_replicas: int | None = Field(default=None, description="Ready replicas, stable+canary.")
    selector: str | None = Field(
        default=None,
        description="Label selector of every serving pod (the scale subresource's, for an HPA).",
    )
    registry: RegistryStatus | None = Field(
        default=None, description="What was recorded in the MLflow registry."
    )
    url: str | None = Field(default=None, description="In-cluster URL of the Service.")
    history: list[RolloutRecord] | None = Field(
        default=None, max_length=MAX_HISTORY, description="The last 10 rollouts."
    )
    analysis: list[AnalysisRecord] | None = Field(
        default=None, max_length=MAX_ANALYSES, description="Canary analyses, newest last."
    )
    paused: bool | None = Field(
        default=None, description="The canary is paused (kyklos rollout pause, or an analysis)."
    )
    handled_action: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None,
        description="The last kyklos.io/rollout-action annotation value carried out.",
    )
    conditions: Conditions | None = Field(
        default=None, description="Ready, Progressing and Degraded."
    )


class ModelDeployment(KyklosModel):
    """A model served behind one Service, with canary rollouts and automatic rollback."""

    KIND: ClassVar[str] = "ModelDeployment"
    PLURAL: ClassVar[str] = "modeldeployments"
    SHORT_NAMES: ClassVar[list[str]] = ["mdep"]

    spec: ModelDeploymentSpec = Field(description="Desired state of the ModelDeployment.")
    status: ModelDeploymentStatus | None = Field(
        default=None, description="Observed state of the ModelDeployment."
    )
