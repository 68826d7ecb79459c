"""The DriftMonitor kind: scheduled drift checks that close the loop to retraining."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from kyklos.api.common import (
    CelRule,
    Conditions,
    DataUri,
    Duration,
    KyklosModel,
    LocalObjectReference,
    cel_rules,
)
from kyklos.api.dataset import DataFormat, FeatureName
from kyklos.api.training import TrainingJobSpec

ONE_CURRENT_SOURCE = CelRule(
    rule="has(self.datasetRef) != has(self.source)",
    message="set exactly one of datasetRef and source",
)
# promote defaults to canary, so an absent promote counts as canary.
PROMOTE_NEEDS_DEPLOYMENT = CelRule(
    rule=(
        "!has(self.retrain) || has(self.modelDeploymentRef)"
        " || (has(self.retrain.promote) && self.retrain.promote == 'none')"
    ),
    message="required when retrain.promote is canary",
    field_path=".modelDeploymentRef",
)
CURRENT_DATA_NEEDS_DATASET = CelRule(
    rule=(
        "!has(self.retrain) || !has(self.retrain.useCurrentData)"
        " || !self.retrain.useCurrentData || has(self.current.datasetRef)"
    ),
    message="requires current.datasetRef",
    field_path=".retrain.useCurrentData",
)


class DriftPhase(StrEnum):
    """Lifecycle phase of a DriftMonitor."""

    PENDING = "Pending"
    HEALTHY = "Healthy"
    DRIFTED = "Drifted"
    RETRAINING = "Retraining"
    ERROR = "Error"


class NumericMethod(StrEnum):
    """Drift statistic for numeric features."""

    PSI = "psi"
    KS = "ks"
    WASSERSTEIN = "wasserstein"
    JS = "js"


class CategoricalMethod(StrEnum):
    """Drift statistic for categorical features."""

    CHI2 = "chi2"
    JS = "js"
    PSI = "psi"


class PromotePolicy(StrEnum):
    """What happens to an accepted retrained model."""

    NONE = "none"
    CANARY = "canary"


class RetrainOutcome(StrEnum):
    """How a retraining ended."""

    RUNNING = "Running"
    ROLLING_OUT = "RollingOut"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    REJECTED = "Rejected"
    FAILED = "Failed"
    ACCEPTED = "Accepted"


class Reference(KyklosModel):
    """The data the model was trained on (the baseline)."""

    dataset_ref: LocalObjectReference = Field(
        description="A Ready Dataset; its pinned version's profile and sample are the reference."
    )


class CurrentSource(KyklosModel):
    """Production data files to compare against the reference."""

    uri: DataUri = Field(
        description=(
            "URI or glob of the files on file://, s3://, gs://, http(s):// or pvc://, e.g. "
            "pvc://logs/scoring/*.csv or s3://b/p/*.parquet."
        )
    )
    format: DataFormat | None = Field(
        default=None, description="csv, parquet or jsonl. Default: from the extension."
    )
    window: int = Field(
        default=1, ge=1, le=1000, description="Use the latest N files by modification time."
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None, description="Secret with storage credentials, passed as env to the check pod."
    )


class Current(KyklosModel):
    """The production data to check: a Dataset, or files (exactly one)."""

    model_config = ConfigDict(json_schema_extra=cel_rules(ONE_CURRENT_SOURCE))

    dataset_ref: LocalObjectReference | None = Field(
        default=None, description="A Dataset holding the current data."
    )
    source: CurrentSource | None = Field(
        default=None, description="Files holding the current data."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Current:
        if (self.dataset_ref is None) == (self.source is None):
            raise ONE_CURRENT_SOURCE.error()
        return self


class Methods(KyklosModel):
    """Drift statistic per feature type."""

    numeric: NumericMethod = Field(
        default=NumericMethod.PSI, description="psi, ks, wasserstein or js (default psi)."
    )
    categorical: CategoricalMethod = Field(
        default=CategoricalMethod.JS, description="chi2, js or psi (default js)."
    )


class Thresholds(KyklosModel):
    """When a feature counts as drifted, per method; and when the monitor trips."""

    psi: float = Field(default=0.2, ge=0, le=100, description="PSI above this is drift.")
    ks: float = Field(default=0.05, ge=0, le=1, description="KS p-value below this is drift.")
    wasserstein: float = Field(
        default=0.1, ge=0, le=1000, description="Wasserstein-1 / reference std above this is drift."
    )
    js: float = Field(
        default=0.1, ge=0, le=1, description="Jensen-Shannon distance above this is drift."
    )
    chi2: float = Field(
        default=0.05, ge=0, le=1, description="Chi-square p-value below this is drift."
    )
    drift_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="The monitor trips when at least this fraction of features drifted.",
    )


class Retrain(KyklosModel):
    """What to do when the monitor trips."""

    template: TrainingJobSpec = Field(description="Spec of the retraining TrainingJob.")
    use_current_data: bool = Field(
        default=False,
        description="Train on current.datasetRef instead of the template's datasetRef.",
    )
    cooldown: Duration = Field(
        default="1h", description="No new retraining within this long of the last one."
    )
    max_retrains: int = Field(
        default=3, ge=0, le=1000, description="Retrainings this monitor may ever start."
    )
    promote: PromotePolicy = Field(
        default=PromotePolicy.CANARY,
        description="canary: point the ModelDeployment at the accepted model; none: only record it.",
    )
    compare_to_live: bool = Field(
        default=True,
        description=(
            "When the template's evaluation has no compareTo and modelDeploymentRef is set, "
            "gate the retrained model against the model that ModelDeployment serves "
            "(evaluation.compareTo.modelDeploymentRef); needs template.evaluation."
        ),
    )


class DriftMonitorSpec(KyklosModel):
    """Desired state of a DriftMonitor."""

    model_config = ConfigDict(
        json_schema_extra=cel_rules(PROMOTE_NEEDS_DEPLOYMENT, CURRENT_DATA_NEEDS_DATASET)
    )

    model_deployment_ref: LocalObjectReference | None = Field(
        default=None, description="The ModelDeployment whose inputs are watched and retrained."
    )
    reference: Reference = Field(description="The baseline data.")
    current: Current = Field(description="The production data to check.")
    features: list[FeatureName] | None = Field(
        default=None,
        max_length=1000,
        description="Features to check. Default: every feature of the reference Dataset's schema.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    method: Methods = Field(
        default_factory=Methods, description="Drift statistic per feature type."
    )
    thresholds: Thresholds = Field(
        default_factory=Thresholds, description="When a feature counts as drifted."
    )
    interval: Duration = Field(default="1h", description="How often to check (e.g. 15m).")
    sample_size: int = Field(
        default=10000, ge=100, le=10_000_000, description="Rows sampled from each side per check."
    )
    retrain: Retrain | None = Field(default=None, description="Retraining on a trip.")

    @model_validator(mode="after")
    def _cross_field(self) -> DriftMonitorSpec:
        if self.retrain is not None:
            if self.retrain.promote == PromotePolicy.CANARY and self.model_deployment_ref is None:
                raise PROMOTE_NEEDS_DEPLOYMENT.error()
            if self.retrain.use_current_data and self.current.dataset_ref is None:
                raise CURRENT_DATA_NEEDS_DATASET.error()
        if self.features is not None and len(set(self.features)) != len(self.features):
            raise ValueError("features: duplicate feature names")
        return self


class FeatureDrift(KyklosModel):
    """One feature's drift result."""

    name: FeatureName = Field(description="Feature name.")
    method: str = Field(description="Statistic used.")
    score: float | None = Field(default=None, description="The statistic's value.")
    threshold: float | None = Field(default=None, description="The threshold it was compared to.")
    drifted: bool = Field(default=False, description="Whether the feature drifted.")


class RetrainRecord(KyklosModel):
    """The latest retraining this monitor started."""

    name: str = Field(description="Name of the TrainingJob.")
    start_time: datetime | None = Field(default=None, description="When it was created.")
    completion_time: datetime | None = Field(
        default=None, description="When its outcome was known."
    )
    outcome: RetrainOutcome = Field(
        description="Running, RollingOut, Accepted, Promoted, RolledBack, Rejected or Failed."
    )
    model: str | None = Field(default=None, description="The retrained model's URI.")
    message: Annotated[str, StringConstraints(max_length=1024)] | None = Field(
        default=None, description="Details of the outcome."
    )


class DriftMonitorStatus(KyklosModel):
    """Observed state of a DriftMonitor."""

    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this status describes."
    )
    phase: DriftPhase | None = Field(
        default=None, description="Pending, Healthy, Drifted, Retraining or Error."
    )
    last_check_time: datetime | None = Field(
        default=None, description="When the last check finished."
    )
    next_check_time: datetime | None = Field(
        default=None, description="When the next check is due."
    )
    check_job: str | None = Field(default=None, description="The running check Job, if any.")
    checks: int | None = Field(default=None, description="Checks run so far.")
    drift_share: float | None = Field(
        default=None, description="Fraction of features drifted in the last check."
    )
    drifted: bool | None = Field(default=None, description="Whether the last check tripped.")
    features: list[FeatureDrift] | None = Field(
        default=None,
        max_length=1000,
        description="Per-feature results of the last check.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    report_uri: str | None = Field(default=None, description="URI of the last full report.")
    last_retrain: RetrainRecord | None = Field(default=None, description="The latest retraining.")
    last_retrain_time: datetime | None = Field(
        default=None, description="When the latest retraining started (for the cooldown)."
    )
    retrain_count: int | None = Field(
        default=None, description="Retrainings started so far (for maxRetrains)."
    )
    baseline_dataset: str | None = Field(
        default=None,
        description=(
            "The Dataset checks compare against: reference.datasetRef, until a model retrained "
            "on current.datasetRef (retrain.useCurrentData) is promoted; then that Dataset."
        ),
    )
    conditions: Conditions | None = Field(default=None, description="Ready and Drifted.")


class DriftMonitor(KyklosModel):
    """Scheduled drift checks on production data, closing the loop to retraining."""

    KIND: ClassVar[str] = "DriftMonitor"
    PLURAL: ClassVar[str] = "driftmonitors"
    SHORT_NAMES: ClassVar[list[str]] = ["dmon"]

    spec: DriftMonitorSpec = Field(description="Desired state of the DriftMonitor.")
    status: DriftMonitorStatus | None = Field(
        default=None, description="Observed state of the DriftMonitor."
    )
