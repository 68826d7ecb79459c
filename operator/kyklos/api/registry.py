"""The MLflow model registry link of a TrainingJob or ModelDeployment (spec and status)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, StringConstraints

from kyklos.api.common import KyklosModel

RegisteredModelName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class RegistryRef(KyklosModel):
    """The registered model (in the operator's MLflow) this resource records into."""

    name: RegisteredModelName = Field(description="Registered model name in MLflow, e.g. churn.")


class RegistryStatus(KyklosModel):
    """What was recorded in the MLflow registry."""

    name: str | None = Field(default=None, description="The registered model.")
    version: str | None = Field(
        default=None,
        description="TrainingJob: its registered version; ModelDeployment: the champion's.",
    )
    run_id: str | None = Field(default=None, description="The MLflow run of the training.")
