"""The ModelDeployment kind: a served model, rolled out through a canary."""

from __future__ import annotations

import itertools
from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

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

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Lowest replica count.")
    max_replicas: int = Field(ge=1, le=1000, description="Highest replica count.")
    target_cpu_utilization: int = Field(
        default=80, ge=1, le=100, description="Average CPU utilisation target, in percent."
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise MIN_LE_MAX_REPLICAS.error()
        return self


class CanaryStep(KyklosModel):
    """One step of a canary: the canary's share of replicas, and how long to hold it."""

    weight: int = Field(ge=1, le=100, description="Canary share of replicas, in percent (1-100).")
    pause: Duration = Field(
        default="30s", description="How long the step holds once the canary is Ready."
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


class ModelDeploymentStatus(KyklosModel):
    """Observed state of a ModelDeployment."""

    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this status describes."
    )
    phase: DeploymentPhase | None = Field(
        default=None, description="Pending, Progressing, Available, Degraded or RolledBack."
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
