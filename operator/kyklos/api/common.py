"""Types shared by every Kyklos kind: durations, references, conditions, pod essentials."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)
from pydantic.alias_generators import to_camel

GROUP = "kyklos.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

#: A Go-style duration: one or more ``<integer><unit>`` parts, units ms, s, m, h, d.
DURATION_PATTERN = r"^([0-9]+(ms|s|m|h|d))+$"

Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN, max_length=32),
    Field(json_schema_extra={"x-kyklos-format": "duration"}),
]

#: A Kubernetes name (RFC 1123 subdomain) of an object this one refers to.
ObjectName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", min_length=1, max_length=253),
]

#: The storage schemes the data-plane workers read (fsspec; s3/gs need the image's extras).
DATA_URI_PATTERN = r"^(file|s3|gs|https?|pvc)://"
#: Where data lives: a URI (or glob) on one of the supported stores.
DataUri = Annotated[str, StringConstraints(pattern=DATA_URI_PATTERN, min_length=1, max_length=2048)]

#: A resource quantity (``500m``, ``2Gi``, ``1``) as Kubernetes accepts it.
QUANTITY_PATTERN = r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
Quantity = Annotated[
    int | Annotated[str, StringConstraints(pattern=QUANTITY_PATTERN, max_length=64)],
    Field(json_schema_extra={"x-kubernetes-int-or-string": True}),
]


#: Free-form string maps (env, hyperparameters, nodeSelector), bounded like everything in a
#: spec (the API server's CEL cost estimate needs bounds; these fit it with room to spare).
StringMap = Annotated[
    dict[str, Annotated[str, StringConstraints(max_length=32768)]],
    Field(max_length=256),
]


@dataclass(frozen=True)
class CelRule:
    """A cross-field rule: CEL for the API server, the same message for the pydantic model.

    ``field_path`` (relative, e.g. ``.steps``) names the field the error is reported on;
    without it the error is reported on the object that carries the rule.
    """

    rule: str
    message: str
    field_path: str | None = None

    def as_schema(self) -> dict[str, str]:
        """The rule as one entry of ``x-kubernetes-validations``."""
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out

    def error(self) -> ValueError:
        """The pydantic-side error: the message, prefixed by the relative field path."""
        if self.field_path:
            return ValueError(f"{self.field_path.lstrip('.')}: {self.message}")
        return ValueError(self.message)


def cel_rules(*rules: CelRule) -> dict[str, Any]:
    """``json_schema_extra`` carrying CEL rules into the rendered CRD."""
    return {"x-kubernetes-validations": [r.as_schema() for r in rules]}


class KyklosModel(BaseModel):
    """Base of every spec/status model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
    )


class ConditionStatus(StrEnum):
    """The status of a condition, as in every Kubernetes API."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class ConditionType(StrEnum):
    """Condition types used across the Kyklos kinds (each kind documents which it sets)."""

    READY = "Ready"
    MODEL_ACCEPTED = "ModelAccepted"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"
    DRIFTED = "Drifted"


class Reason(StrEnum):
    """Every condition and Event reason Kyklos writes, listed once (CamelCase)."""

    # Dataset
    PROFILING = "Profiling"
    PROFILED = "Profiled"
    VALIDATION_FAILED = "ValidationFailed"
    SOURCE_UNREACHABLE = "SourceUnreachable"
    FORMAT_ERROR = "FormatError"
    SCHEMA_MISMATCH = "SchemaMismatch"
    EMPTY_SOURCE = "EmptySource"
    PROFILE_JOB_FAILED = "ProfileJobFailed"
    NEW_VERSION = "NewVersion"
    # TrainingJob
    DATASET_NOT_READY = "DatasetNotReady"
    JOB_CREATED = "JobCreated"
    JOB_RECREATED = "JobRecreated"
    SUSPENDED = "Suspended"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    METRICS_INVALID = "MetricsInvalid"
    METRIC_MISSING = "MetricMissing"
    THRESHOLD_MET = "ThresholdMet"
    BELOW_THRESHOLD = "BelowThreshold"
    NO_EVALUATION = "NoEvaluation"
    INVALID_SPEC = "InvalidSpec"
    # ModelDeployment
    MODEL_NOT_READY = "ModelNotReady"
    REPLICAS_NOT_READY = "ReplicasNotReady"
    ROLLOUT_STARTED = "RolloutStarted"
    CANARY_STARTED = "CanaryStarted"
    CANARY_STEP = "CanaryStep"
    CANARY_RESTARTED = "CanaryRestarted"
    PROMOTED = "Promoted"
    ROLLED_BACK = "RolledBack"
    AVAILABLE = "Available"
    PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
    CRASH_LOOP = "CrashLoop"
    # ModelDeployment: canary analysis and manual control (issue 14)
    ANALYSIS_RUNNING = "AnalysisRunning"
    ANALYSIS_PASSED = "AnalysisPassed"
    ANALYSIS_FAILED = "AnalysisFailed"
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
    PAUSED = "Paused"
    AWAITING_PROMOTION = "AwaitingPromotion"
    ABORTED = "Aborted"
    ROLLOUT_ACTION = "RolloutAction"
    # DriftMonitor
    REFERENCE_NOT_READY = "ReferenceNotReady"
    CHECK_RUNNING = "CheckRunning"
    CHECK_FAILED = "CheckFailed"
    NO_DRIFT = "NoDrift"
    DRIFT_DETECTED = "DriftDetected"
    RETRAIN_STARTED = "RetrainStarted"
    RETRAIN_SKIPPED = "RetrainSkipped"
    RETRAIN_REJECTED = "RetrainRejected"
    RETRAIN_FAILED = "RetrainFailed"
    MODEL_PROMOTED = "ModelPromoted"
    # Dataset and TrainingJob: a child pod that does not start (kyklos.logic.pods)
    POD_UNSCHEDULABLE = "PodUnschedulable"
    POD_START_FAILED = "PodStartFailed"
    # TrainingJob evaluation gate: champion/challenger (kyklos.logic.evaluation)
    EVALUATING = "Evaluating"
    BEATS_CHAMPION = "BeatsChampion"
    NOT_BETTER_THAN_CHAMPION = "NotBetterThanChampion"
    NO_CHAMPION = "NoChampion"
    CHAMPION_EVALUATION_FAILED = "ChampionEvaluationFailed"
    CHAMPION_NOT_FOUND = "ChampionNotFound"
    EVALUATION_FAILED = "EvaluationFailed"
    # ModelDeployment: the init container could not download the model (issue 17)
    MODEL_FETCH_FAILED = "ModelFetchFailed"
    # TrainingJob: a failed worker restarted the whole group (issue 17)
    GANG_RESTART = "GangRestart"


class Condition(KyklosModel):
    """One observation of the object's state, in the Kubernetes condition shape."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=316)] = Field(
        description="Type of the condition, e.g. Ready, ModelAccepted, Progressing, Degraded, Drifted."
    )
    status: ConditionStatus = Field(description="Status of the condition: True, False or Unknown.")
    reason: Annotated[str, StringConstraints(max_length=1024)] = Field(
        default="", description="Machine-readable CamelCase reason for the last transition."
    )
    message: Annotated[str, StringConstraints(max_length=32768)] = Field(
        default="", description="Human-readable message; names the field or object at fault."
    )
    last_transition_time: datetime | None = Field(
        default=None, description="When the condition last changed status (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation the condition was computed from."
    )


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


class LocalObjectReference(KyklosModel):
    """A reference to an object of a known kind in the same namespace."""

    name: ObjectName = Field(description="Name of the referenced object in the same namespace.")


class ResourceRequirements(KyklosModel):
    """Compute resources of a container, as in a Pod spec."""

    requests: dict[str, Quantity] | None = Field(
        default=None,
        max_length=32,
        description="Minimum resources required, e.g. {cpu: 500m, memory: 1Gi, nvidia.com/gpu: 1}.",
    )
    limits: dict[str, Quantity] | None = Field(
        default=None, max_length=32, description="Maximum resources allowed, e.g. {memory: 2Gi}."
    )


class TolerationOperator(StrEnum):
    """How a toleration matches a taint's value."""

    EXISTS = "Exists"
    EQUAL = "Equal"


class TaintEffect(StrEnum):
    """The taint effect a toleration matches."""

    NO_SCHEDULE = "NoSchedule"
    PREFER_NO_SCHEDULE = "PreferNoSchedule"
    NO_EXECUTE = "NoExecute"


class Toleration(KyklosModel):
    """A Pod toleration, as in a Pod spec."""

    key: Annotated[str, StringConstraints(max_length=316)] | None = Field(
        default=None, description="Taint key the toleration applies to; empty matches all keys."
    )
    operator: TolerationOperator | None = Field(
        default=None, description="Exists or Equal (default Equal)."
    )
    value: Annotated[str, StringConstraints(max_length=256)] | None = Field(
        default=None, description="Taint value the toleration matches (with operator Equal)."
    )
    effect: TaintEffect | None = Field(
        default=None, description="Taint effect to match; empty matches all effects."
    )
    toleration_seconds: int | None = Field(
        default=None,
        description="With effect NoExecute: how long the pod stays bound after the taint.",
    )


M = TypeVar("M", bound=BaseModel)


def as_decoded(data: Any) -> Any:
    """JSON data as the API server decodes it: integral floats (``1.0``) become integers.

    (apimachinery's JSON decoder converts every whole float64 within int64 range to int64,
    so ``port: 8080.0`` is an integer to the schema, and to ``validate_wire``.)
    """
    if isinstance(data, dict):
        return {k: as_decoded(v) for k, v in data.items()}
    if isinstance(data, list):
        return [as_decoded(v) for v in data]
    if isinstance(data, float) and data.is_integer() and -(2**63) <= data < 2**63:
        return int(data)
    return data


@functools.cache
def _wire_schema(model: type[BaseModel]) -> dict[str, Any]:
    return model.model_json_schema(by_alias=True)


def _resolve(node: dict[str, Any], defs: dict[str, Any], data: Any) -> dict[str, Any]:
    """The schema node that describes ``data``: through ``$ref`` and ``Optional``/unions."""
    if "$ref" in node:
        return _resolve(defs[node["$ref"].rsplit("/", 1)[-1]], defs, data)
    if "anyOf" in node:
        wanted = "object" if isinstance(data, dict) else "array" if isinstance(data, list) else ""
        for branch in node["anyOf"]:
            resolved = _resolve(branch, defs, data)
            if resolved.get("type") == wanted:
                return resolved
        return {}
    return node


def _prune_known_nulls(node: dict[str, Any], defs: dict[str, Any], data: Any) -> Any:
    node = _resolve(node, defs, data)
    if isinstance(data, dict):
        props = node.get("properties")
        if props is not None:
            return {
                k: _prune_known_nulls(props[k], defs, v) if k in props else v
                for k, v in data.items()
                if not (v is None and k in props)
            }
        values = node.get("additionalProperties")
        if isinstance(values, dict):
            return {
                k: _prune_known_nulls(values, defs, v) for k, v in data.items() if v is not None
            }
    if isinstance(data, list) and isinstance(node.get("items"), dict):
        return [_prune_known_nulls(node["items"], defs, v) for v in data]
    return data


def as_stored(model: type[BaseModel], data: Mapping[str, Any]) -> Any:
    """JSON data as the API server decodes and prunes it before validating it.

    Whole floats (``8080.0``) become integers (apimachinery's JSON decoder does that for
    every integral float64 in int64 range); null fields and map values the schema knows are
    dropped (and later defaulted); nulls in lists and unknown fields stay, to be rejected.
    """
    schema = _wire_schema(model)
    return _prune_known_nulls(schema, schema.get("$defs", {}), as_decoded(data))


def validate_wire(model: type[M], data: Mapping[str, Any]) -> M:
    """Validate JSON-shaped data as the API server judges it.

    Strict JSON types (no ``"2"`` for an integer; ``2.0`` is one once decoded), camelCase
    field names only, unknown fields rejected, null fields and map values absent (see
    ``as_stored``): the same documents the CRD accepts.
    """
    return model.model_validate_json(
        json.dumps(as_stored(model, data)), strict=True, by_alias=True, by_name=False
    )


def drop_none(data: Any) -> Any:
    """Recursively remove None values (absent means unset on the wire)."""
    if isinstance(data, dict):
        return {k: drop_none(v) for k, v in data.items() if v is not None}
    if isinstance(data, list):
        return [drop_none(v) for v in data]
    return data
