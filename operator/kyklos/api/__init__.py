"""The Kyklos API: pydantic models of each kind's spec and status (the single source of truth)."""

from kyklos.api.common import API_VERSION, GROUP, VERSION, Condition, ConditionStatus, Reason
from kyklos.api.dataset import Dataset, DatasetSpec, DatasetStatus
from kyklos.api.deployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus
from kyklos.api.drift import DriftMonitor, DriftMonitorSpec, DriftMonitorStatus
from kyklos.api.training import TrainingJob, TrainingJobSpec, TrainingJobStatus

KINDS = (Dataset, TrainingJob, ModelDeployment, DriftMonitor)

__all__ = [
    "API_VERSION",
    "GROUP",
    "KINDS",
    "VERSION",
    "Condition",
    "ConditionStatus",
    "Dataset",
    "DatasetSpec",
    "DatasetStatus",
    "DriftMonitor",
    "DriftMonitorSpec",
    "DriftMonitorStatus",
    "ModelDeployment",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "Reason",
    "TrainingJob",
    "TrainingJobSpec",
    "TrainingJobStatus",
]
