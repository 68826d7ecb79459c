"""MLflow registry sync: what a TrainingJob records, and which alias moves when (pure).

With ``spec.registry.name`` set (and the operator given an MLflow tracking URI):

- a Succeeded TrainingJob becomes an MLflow run — params are its hyperparameters, metrics
  its reported metrics, tags name the dataset and version, the TrainingJob's uid and the
  image — and, when its model was accepted, a registered model version with the model URI
  as source;
- a ModelDeployment moves aliases as its rollouts go: a running canary's model is
  ``challenger``; a promotion (the stable took the model, canary or rolling update) makes it
  ``champion`` and removes ``challenger``; a rollback removes ``challenger``.

The controller side (``kyklos.controllers.registry``) is the only place that talks to
MLflow. A registry that does not answer never blocks training or serving; it is retried and
reported as the condition ``RegistrySynced``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

CHAMPION = "champion"
CHALLENGER = "challenger"
#: Tag keys of a TrainingJob's run.
TAG_DATASET = "kyklos.dataset"
TAG_DATASET_VERSION = "kyklos.dataset_version"
TAG_TRAININGJOB_UID = "kyklos.trainingjob_uid"
TAG_TRAININGJOB = "kyklos.trainingjob"
TAG_IMAGE = "kyklos.image"


def registry_name(body: Mapping[str, Any]) -> str | None:
    """The registered model's name from ``spec.registry.name``, or None (no sync)."""
    registry = (body.get("spec") or {}).get("registry") or {}
    name = registry.get("name")
    return str(name) if name else None


@dataclass(frozen=True)
class RunRecord:
    """What an MLflow run of a TrainingJob holds."""

    name: str
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str]


@dataclass(frozen=True)
class TrainingSync:
    """What is still to record for a TrainingJob: the run, and the model version."""

    registry: str
    run: RunRecord | None  # None: already recorded (status.registry.runId)
    run_id: str | None
    register_source: str | None  # the model URI to register; None: nothing to register


def _accepted(status: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "ModelAccepted" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def training_sync(trainingjob: Mapping[str, Any]) -> TrainingSync | None:
    """What to record for a TrainingJob, or None (no registry, not finished, all recorded)."""
    name = registry_name(trainingjob)
    status = trainingjob.get("status") or {}
    if name is None or status.get("phase") != "Succeeded":
        return None
    recorded = status.get("registry") or {}
    run_id = recorded.get("runId")
    register = status.get("modelUri") if _accepted(status) and not recorded.get("version") else None
    if run_id and register is None:
        return None
    spec = trainingjob.get("spec") or {}
    meta = trainingjob.get("metadata") or {}
    run = None
    if not run_id:
        run = RunRecord(
            name=f"{meta.get('namespace')}/{meta.get('name')}",
            params={str(k): str(v) for k, v in (spec.get("hyperparameters") or {}).items()},
            metrics={str(k): float(v) for k, v in (status.get("metrics") or {}).items()},
            tags={
                TAG_DATASET: str((spec.get("datasetRef") or {}).get("name") or ""),
                TAG_DATASET_VERSION: str(status.get("datasetVersion") or ""),
                TAG_TRAININGJOB_UID: str(meta.get("uid") or ""),
                TAG_TRAININGJOB: f"{meta.get('namespace')}/{meta.get('name')}",
                TAG_IMAGE: str(spec.get("image") or ""),
            },
        )
    return TrainingSync(name, run, str(run_id) if run_id else None, register)


@dataclass(frozen=True)
class AliasPlan:
    """The aliases a ModelDeployment wants, by the model URI each should point at."""

    registry: str
    set: dict[str, str] = field(default_factory=dict)  # alias -> model URI
    remove: tuple[str, ...] = ()


def _last_outcome(status: Mapping[str, Any]) -> tuple[str | None, str | None]:
    history = status.get("history") or []
    if not history:
        return None, None
    last = history[-1]
    return last.get("model"), last.get("outcome")


def alias_plan(deployment: Mapping[str, Any]) -> AliasPlan | None:
    """Which aliases should point where, from the ModelDeployment's observed rollout."""
    name = registry_name(deployment)
    if name is None:
        return None
    status = deployment.get("status") or {}
    stable, canary = status.get("stableModel"), status.get("canaryModel")
    _model, outcome = _last_outcome(status)
    plan: dict[str, str] = {}
    remove: list[str] = []
    if stable:  # the stable serves the last promoted model: the champion
        plan[CHAMPION] = str(stable)
    if canary:
        plan[CHALLENGER] = str(canary)
    elif outcome in ("Promoted", "RolledBack", "Superseded"):
        remove.append(CHALLENGER)  # the canary is over, one way or the other
    return AliasPlan(name, plan, tuple(remove))


@dataclass(frozen=True)
class AliasChange:
    """The registry calls that bring the aliases to the plan."""

    set: dict[str, str]  # alias -> version
    delete: tuple[str, ...]
    unresolved: tuple[str, ...]  # model URIs with no registered version


def alias_changes(
    plan: AliasPlan, current: Mapping[str, str], versions: Mapping[str, str]
) -> AliasChange:
    """The difference between the aliases now (``current``: alias -> version) and the plan.

    ``versions`` maps model URIs to their registered version; a URI not registered (not from
    a synced TrainingJob) moves no alias and is reported.
    """
    to_set: dict[str, str] = {}
    unresolved = []
    for alias, uri in plan.set.items():
        version = versions.get(uri)
        if version is None:
            unresolved.append(uri)
        elif current.get(alias) != version:
            to_set[alias] = version
    delete = tuple(a for a in plan.remove if a in current and a not in plan.set)
    return AliasChange(to_set, delete, tuple(dict.fromkeys(unresolved)))
