"""MLflow registry sync: the only module that calls MLflow (through its client library).

Enabled by the operator setting ``--mlflow-tracking-uri`` / ``KYKLOS_MLFLOW_TRACKING_URI``
and per resource by ``spec.registry.name``; the client comes with ``kyklos[mlflow]``. What
to record and which alias moves when is decided in ``kyklos.logic.registry``; here the
decisions become client calls and the outcome becomes ``status.registry`` and the condition
``RegistrySynced``.

A registry that does not answer never blocks training or serving: the event handlers only
schedule a background task per object (no kopf worker waits on MLflow), which retries with
back-off (an async sleep, no thread held) and reports ``RegistrySynced=False`` with the
cause until it succeeds. Each MLflow call is short (a request timeout, no client retries)
and runs on a thread only for its duration.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from kyklos.api.common import ConditionStatus
from kyklos.controllers import client, config, threads
from kyklos.controllers.status import emit
from kyklos.logic import registry
from kyklos.logic.conditions import get_condition, set_condition
from kyklos.logic.redaction import redact

log = logging.getLogger("kyklos.registry")

GROUP, VERSION = "kyklos.io", "v1alpha1"
CONDITION = "RegistrySynced"
REASON_SYNCED = "Synced"
REASON_UNAVAILABLE = "RegistryUnavailable"
#: First retry after a failed sync; doubles up to MAX_RETRY_SECONDS.
RETRY_SECONDS = float(os.environ.get("KYKLOS_REGISTRY_RETRY_SECONDS", "10"))
MAX_RETRY_SECONDS = 300.0
#: Seconds one MLflow request may take (the client's own retries are turned off).
REQUEST_TIMEOUT = "10"

_tasks: dict[tuple[str, str, str], asyncio.Task[None]] = {}


class RegistryError(Exception):
    """MLflow could not be reached or refused a call; the message names the cause."""


def _mlflow_client(tracking_uri: str) -> Any:
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", REQUEST_TIMEOUT)
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise RegistryError(
            "the mlflow client is not installed in the operator image (install kyklos[mlflow])"
        ) from None
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else type(exc).__name__
    return redact(f"{type(exc).__name__}: {first}")[:500]


# ------------------------------------------------------------------------- the MLflow calls


def _experiment_id(mc: Any, name: str) -> str:
    experiment_name = f"kyklos/{name}"
    found = mc.get_experiment_by_name(experiment_name)
    if found is not None:
        return str(found.experiment_id)
    return str(mc.create_experiment(experiment_name))


def _ensure_registered_model(mc: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        mc.get_registered_model(name)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" not in str(getattr(exc, "error_code", "")):
            raise
        mc.create_registered_model(name)


def sync_trainingjob(mc: Any, body: Mapping[str, Any]) -> dict[str, Any] | None:
    """Record the TrainingJob's run and model version; its ``status.registry`` (or None)."""
    from mlflow.entities import Metric, Param

    plan = registry.training_sync(body)
    if plan is None:
        return None
    uid = str(body["metadata"].get("uid") or "")
    run_id = plan.run_id
    if run_id is None and plan.run is not None:
        experiment = _experiment_id(mc, plan.registry)
        # Idempotent across a crash: a run of this TrainingJob may already exist.
        existing = mc.search_runs(
            [experiment], filter_string=f"tags.`{registry.TAG_TRAININGJOB_UID}` = '{uid}'"
        )
        if existing:
            run_id = str(existing[0].info.run_id)
        else:
            run = mc.create_run(experiment, run_name=plan.run.name, tags=plan.run.tags)
            run_id = str(run.info.run_id)
            now = int(time.time() * 1000)
            mc.log_batch(
                run_id,
                metrics=[Metric(k, v, now, 0) for k, v in sorted(plan.run.metrics.items())],
                params=[Param(k, v) for k, v in sorted(plan.run.params.items())],
            )
            mc.set_terminated(run_id)
    status: dict[str, Any] = {"name": plan.registry, "runId": run_id}
    if plan.register_source is not None:
        _ensure_registered_model(mc, plan.registry)
        versions = mc.search_model_versions(f"name='{plan.registry}' and run_id='{run_id}'")
        version = versions[0] if versions else None
        if version is None:
            version = mc.create_model_version(
                plan.registry,
                source=plan.register_source,
                run_id=run_id,
                tags={registry.TAG_TRAININGJOB_UID: uid},
            )
        status["version"] = str(version.version)
    return status


def sync_deployment(mc: Any, body: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """Move the aliases to the rollout's state; ``status.registry`` and a message."""
    plan = registry.alias_plan(body)
    if plan is None:
        return None, ""
    _ensure_registered_model(mc, plan.registry)
    model = mc.get_registered_model(plan.registry)
    current = {str(k): str(v) for k, v in (getattr(model, "aliases", None) or {}).items()}
    versions: dict[str, str] = {}
    run_ids: dict[str, str] = {}
    # MLflow's search cannot filter on source: match the registered model's versions here.
    wanted = set(plan.set.values())
    for found in sorted(
        mc.search_model_versions(f"name='{plan.registry}'"), key=lambda v: int(v.version)
    ):
        if found.source in wanted:  # the newest version of a source wins
            versions[found.source] = str(found.version)
            run_ids[found.source] = str(found.run_id or "")
    change = registry.alias_changes(plan, current, versions)
    for alias, version in sorted(change.set.items()):
        mc.set_registered_model_alias(plan.registry, alias, version)
    for alias in change.delete:
        mc.delete_registered_model_alias(plan.registry, alias)
    champion = plan.set.get(registry.CHAMPION)
    status = {
        "name": plan.registry,
        "version": versions.get(champion) if champion else None,
        "runId": run_ids.get(champion) if champion else None,
    }
    aliases = {**{a: v for a, v in current.items() if a not in change.delete}, **change.set}
    message = ", ".join(f"{a}={v}" for a, v in sorted(aliases.items())) or "no aliases"
    if change.unresolved:
        message += "; not registered (no alias moved): " + ", ".join(change.unresolved)
    return status, f"{plan.registry}: {message}"


# ------------------------------------------------------------------------- status and tasks


def _write(
    res: client.Resource,
    body: Mapping[str, Any],
    ok: bool,
    reason: str,
    message: str,
    registry_status: Mapping[str, Any] | None,
) -> None:
    """Patch ``status.registry`` and the RegistrySynced condition when they changed."""
    meta = body["metadata"]
    stored = body.get("status") or {}
    before = get_condition(stored.get("conditions"), CONDITION) or {}
    conditions = set_condition(
        stored.get("conditions"),
        type=CONDITION,
        status=ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        generation=meta.get("generation"),
        now=datetime.now(UTC),
    )
    patch: dict[str, Any] = {}
    if conditions != list(stored.get("conditions") or []):
        patch["conditions"] = conditions
    wanted = {k: v for k, v in (registry_status or {}).items() if v is not None}
    if wanted and {**(stored.get("registry") or {}), **wanted} != (stored.get("registry") or {}):
        patch["registry"] = wanted
    if not patch:
        return
    client.patch(res, meta["namespace"], meta["name"], {"status": patch}, status=True)
    if (before.get("status"), before.get("reason")) != (
        ConditionStatus.TRUE if ok else ConditionStatus.FALSE,
        reason,
    ):
        emit(body, reason if not ok else "RegistrySynced", message, warning=not ok)


def _sync_once(res: client.Resource, body: Mapping[str, Any], tracking_uri: str) -> None:
    mc = _mlflow_client(tracking_uri)
    try:
        if res is client.TRAININGJOBS:
            status = sync_trainingjob(mc, body)
            if status is None:
                return
            message = f"{status['name']}: run {status['runId']}" + (
                f", version {status['version']}" if status.get("version") else ""
            )
        else:
            status, message = sync_deployment(mc, body)
            if status is None:
                return
    except RegistryError:
        raise
    except Exception as exc:  # any client or server error: reported, retried
        raise RegistryError(f"MLflow at {redact(tracking_uri)}: {_describe(exc)}") from exc
    _write(res, body, True, REASON_SYNCED, message, status)


async def _sync_loop(res: client.Resource, namespace: str, name: str, tracking_uri: str) -> None:
    delay = RETRY_SECONDS
    while True:
        body = await threads.run(client.get, res, namespace, name)
        if body is None or registry.registry_name(body) is None:
            return
        try:
            await threads.run(_sync_once, res, body, tracking_uri)
            return
        except RegistryError as exc:
            log.warning("registry sync of %s %s/%s: %s", res.kind, namespace, name, exc)
            try:
                await threads.run(_write, res, body, False, REASON_UNAVAILABLE, str(exc), None)
            except Exception as write_error:  # the next attempt writes again
                log.warning(
                    "cannot write RegistrySynced of %s/%s: %s", namespace, name, write_error
                )
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_RETRY_SECONDS)


REASON_NOT_CONFIGURED = "RegistryNotConfigured"
NOT_CONFIGURED = (
    "spec.registry is set but the operator has no MLflow tracking URI "
    "(--mlflow-tracking-uri, KYKLOS_MLFLOW_TRACKING_URI or the chart value mlflow.trackingUri)"
)


async def _not_configured(res: client.Resource, body: Mapping[str, Any]) -> None:
    await threads.run(_write, res, body, False, REASON_NOT_CONFIGURED, NOT_CONFIGURED, None)


def _schedule(res: client.Resource, namespace: str, name: str) -> None:
    tracking_uri = config.current().mlflow_tracking_uri
    if not tracking_uri:
        return
    key = (res.plural, namespace, name)
    task = _tasks.get(key)
    if task is not None and not task.done():
        return
    _tasks[key] = asyncio.get_running_loop().create_task(
        _sync_loop(res, namespace, name, tracking_uri)
    )


def _wants_registry(body: kopf.Body, **_: Any) -> bool:
    return registry.registry_name(body) is not None


@kopf.on.event(GROUP, VERSION, "trainingjobs", when=_wants_registry)
async def registry_trainingjob_event(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> None:
    """A TrainingJob with spec.registry changed: record what is still unrecorded."""
    if registry.training_sync(body) is None:
        return
    if not config.current().mlflow_tracking_uri:
        await _not_configured(client.TRAININGJOBS, body)
        return
    _schedule(client.TRAININGJOBS, namespace or "", name)


@kopf.on.event(GROUP, VERSION, "modeldeployments", when=_wants_registry)
async def registry_deployment_event(
    body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> None:
    """A ModelDeployment with spec.registry changed: move the aliases with its rollout."""
    if not config.current().mlflow_tracking_uri:
        await _not_configured(client.MODELDEPLOYMENTS, body)
        return
    _schedule(client.MODELDEPLOYMENTS, namespace or "", name)
