"""The Dataset kind: registered, validated, versioned and profiled training data."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar

from pydantic import Field, StringConstraints, model_validator

from kyklos.api.common import (
    Conditions,
    DataUri,
    Duration,
    KyklosModel,
    LocalObjectReference,
)

FeatureName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class DataFormat(StrEnum):
    """File formats a Dataset source can have."""

    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"


class FeatureType(StrEnum):
    """How a feature is profiled and compared for drift."""

    NUMERIC = "numeric"
    CATEGORICAL = "categorical"


class DatasetPhase(StrEnum):
    """Lifecycle phase of a Dataset."""

    PENDING = "Pending"
    PROFILING = "Profiling"
    READY = "Ready"
    FAILED = "Failed"


class VersionSource(StrEnum):
    """Where a Dataset's content version comes from."""

    SHA256 = "sha256"
    ETAG = "etag"
    SIZE_MTIME = "size-mtime"


class DataSource(KyklosModel):
    """Where the data lives and how to read it."""

    uri: DataUri = Field(
        description=(
            "URI of the data: file:///path, s3://bucket/key, gs://bucket/key, https://host/path "
            "(or http://) or pvc://<claim>/<path> (the claim is mounted into the profiling pod)."
        )
    )
    format: DataFormat | None = Field(
        default=None,
        description="csv, parquet or jsonl. Default: from the URI's extension.",
    )
    secret_ref: LocalObjectReference | None = Field(
        default=None,
        description=(
            "Secret whose keys are passed as environment variables to the pod that reads the "
            "data (e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY). Never copied into status."
        ),
    )


class Feature(KyklosModel):
    """One declared column of the data."""

    name: FeatureName = Field(description="Column name in the data.")
    type: FeatureType = Field(description="numeric or categorical.")
    max_null_fraction: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Override of validation.maxNullFraction for this feature.",
    )


class DatasetSchema(KyklosModel):
    """The columns the data must have."""

    features: list[Feature] = Field(
        min_length=1,
        max_length=1000,
        description="Declared features; each must be present in the data with the declared type.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    target: FeatureName | None = Field(
        default=None,
        description="Name of the label column; must be present in the data when set.",
    )


class Validation(KyklosModel):
    """Rules the data must satisfy to become Ready."""

    min_rows: int = Field(default=1, ge=0, description="Minimum number of rows.")
    max_null_fraction: float = Field(
        default=1.0,
        ge=0,
        le=1,
        description="Largest fraction of null values allowed in any declared feature.",
    )


class ProfileSettings(KyklosModel):
    """How the data is profiled."""

    sample_size: int = Field(
        default=10000,
        ge=100,
        le=10_000_000,
        description="Rows kept as the reference sample that drift checks compare against.",
    )
    bins: int = Field(default=10, ge=2, le=100, description="Quantile bins per numeric feature.")
    top_k: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Categories kept per categorical feature; the rest are counted as 'other'.",
    )


class DatasetSpec(KyklosModel):
    """Desired state of a Dataset."""

    source: DataSource = Field(description="Where the data lives and how to read it.")
    schema_: DatasetSchema = Field(alias="schema", description="The columns the data must have.")
    validation: Validation = Field(
        default_factory=Validation, description="Rules the data must satisfy to become Ready."
    )
    profile: ProfileSettings = Field(
        default_factory=ProfileSettings, description="How the data is profiled."
    )
    refresh_interval: Duration | None = Field(
        default=None,
        description="Re-profile on this schedule (e.g. 1h); a changed source yields a new version.",
    )

    @model_validator(mode="after")
    def _unique_feature_names(self) -> DatasetSpec:
        names = [f.name for f in self.schema_.features]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"schema.features: duplicate feature name(s) {', '.join(dupes)}")
        return self


class FeatureSummary(KyklosModel):
    """Compact per-feature profile kept in status (the full profile is in the artifact store)."""

    name: FeatureName = Field(description="Feature name.")
    type: FeatureType = Field(description="numeric or categorical.")
    null_fraction: float | None = Field(default=None, description="Fraction of null values.")
    mean: float | None = Field(default=None, description="Mean (numeric features).")
    std: float | None = Field(default=None, description="Standard deviation (numeric features).")
    min: float | None = Field(default=None, description="Minimum (numeric features).")
    max: float | None = Field(default=None, description="Maximum (numeric features).")
    categories: int | None = Field(
        default=None, description="Number of distinct categories (categorical features)."
    )


class ValidationFailure(KyklosModel):
    """One validation rule the data broke."""

    rule: Annotated[str, StringConstraints(max_length=256)] = Field(
        description="The rule: minRows, maxNullFraction, schema, type, format, source."
    )
    feature: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="The feature at fault, when the rule is per feature."
    )
    message: Annotated[str, StringConstraints(max_length=4096)] = Field(
        description="What failed and why."
    )


class DatasetStatus(KyklosModel):
    """Observed state of a Dataset."""

    observed_generation: int | None = Field(
        default=None, description="The .metadata.generation this status describes."
    )
    phase: DatasetPhase | None = Field(
        default=None, description="Pending, Profiling, Ready or Failed."
    )
    version: str | None = Field(
        default=None, description="Content version of the data (changes when the data changes)."
    )
    version_source: VersionSource | None = Field(
        default=None,
        description="How the version was computed: sha256 of the bytes, the store's ETag, or size+mtime.",
    )
    checksum: str | None = Field(default=None, description="sha256 of the data, when read whole.")
    rows: int | None = Field(default=None, description="Number of rows.")
    features: list[FeatureSummary] | None = Field(
        default=None,
        max_length=1000,
        description="Compact per-feature profile.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    profile_uri: str | None = Field(default=None, description="URI of the full profile JSON.")
    sample_uri: str | None = Field(
        default=None, description="URI of the reference sample drift checks compare against."
    )
    failures: list[ValidationFailure] | None = Field(
        default=None, max_length=100, description="Validation failures, by rule."
    )
    job_name: str | None = Field(default=None, description="Name of the latest profile Job.")
    last_profile_time: datetime | None = Field(
        default=None, description="When the data was last profiled."
    )
    conditions: Conditions | None = Field(
        default=None,
        description="Ready (reasons Profiled, ValidationFailed, SourceUnreachable, ...).",
    )


class Dataset(KyklosModel):
    """A registered, validated, versioned and profiled set of training data."""

    KIND: ClassVar[str] = "Dataset"
    PLURAL: ClassVar[str] = "datasets"
    SHORT_NAMES: ClassVar[list[str]] = ["dset"]

    spec: DatasetSpec = Field(description="Desired state of the Dataset.")
    status: DatasetStatus | None = Field(default=None, description="Observed state of the Dataset.")
