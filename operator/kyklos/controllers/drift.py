"""kopf handlers of the DriftMonitor controller: scheduled checks and the closed loop.

The decisions are in :mod:`kyklos.logic.drift`; this module observes (the referenced
Datasets, the monitor's check Jobs and their Pods, its retraining TrainingJob, the
ModelDeployment), acts (create/delete Jobs, create the TrainingJob, patch the
ModelDeployment's model) and reports (status, Events, metrics). An async daemon per
monitor runs its reconciles and waits, holding no thread, until the next check is due;
child and reference changes wake it at once.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from kyklos.api.common import API_VERSION, ConditionStatus, ConditionType, Reason
from kyklos.api.drift import DriftMonitorSpec
from kyklos.controllers import client, config, metrics, runtime
from kyklos.controllers.status import emit
from kyklos.logic.conditions import Event, set_condition
from kyklos.logic.drift import (
    CHECK_LABEL,
    CheckJob,
    Decision,
    Observed,
    baseline_name,
    build_check_job,
    decide,
    parse_spec,
)
from kyklos.logic.naming import child_labels, owner_label, owner_reference

log = logging.getLogger("kyklos.drift")

KIND = "DriftMonitor"
OWNER = owner_label(KIND)
#: Longest sleep of a monitor's daemon between reconciles (a safety net, not the schedule).
MAX_SLEEP = 300.0
#: A status write that met a newer version of the monitor is decided again this soon.
CONFLICT_RETRY_SECONDS = 1.0


#: What a monitor reads of a Dataset: its readiness and where its profile and sample are.
_DATASET_FIELDS = ("conditions", "phase", "profileUri", "sampleUri", "version")
IDX_DATASETS = "drift_datasets"
_indexes: dict[str, Any] = {}


@kopf.index("kyklos.io", "v1alpha1", "datasets", id=IDX_DATASETS)
async def drift_datasets(
    namespace: str | None, name: str, status: kopf.Status, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    """Datasets as a monitor reads them, so a check costs no GET of its two Datasets.

    kopf updates an index before it calls the event handlers of the same event, so the
    monitor that :func:`on_dataset` wakes already reads the Dataset's new status here.
    """
    kept = {k: copy.deepcopy(status[k]) for k in _DATASET_FIELDS if k in status}
    return {
        (namespace or "", name): {
            "metadata": {"namespace": namespace, "name": name},
            "status": kept,
        }
    }


@kopf.on.startup()
async def drift_startup(**kwargs: Any) -> None:
    """Keep the Dataset index for the reconciles, which run in threads."""
    _indexes[IDX_DATASETS] = kwargs[IDX_DATASETS]


def _dataset(namespace: str, name: str) -> Mapping[str, Any] | None:
    """The Dataset as indexed (read from a thread: a copy retried if kopf mutates it meanwhile)."""
    index = _indexes.get(IDX_DATASETS)
    if index is not None:
        found = runtime.index_values(index, (namespace, name))
        return found[0] if found else None
    return client.get(client.DATASETS, namespace, name)


def observe(
    namespace: str, name: str, spec: DriftMonitorSpec, status: Mapping[str, Any]
) -> Observed:
    """Read what the monitor's decision depends on."""
    reference = _dataset(namespace, baseline_name(spec, status))
    current = None
    if spec.current.dataset_ref is not None:
        current = _dataset(namespace, spec.current.dataset_ref.name)
    selector = {OWNER: name, "app.kubernetes.io/component": "drift-check"}
    jobs = client.list_objects(client.JOBS, namespace, selector)
    pods = client.list_objects(client.PODS, namespace, selector) if jobs else []
    checks = []
    for job in jobs:
        labels = job["metadata"].get("labels") or {}
        try:
            number = int(labels.get(CHECK_LABEL, "0"))
        except ValueError:
            continue
        job_pods = [
            p for p in pods if (p["metadata"].get("labels") or {}).get(CHECK_LABEL) == str(number)
        ]
        checks.append(CheckJob(number, job, job_pods))
    return Observed(reference=reference, current=current, checks=checks)


def reconcile(namespace: str, name: str) -> float | None:
    """Bring one DriftMonitor a step closer to its desired state; seconds until due again.

    Only the monitor's daemon calls it, so one monitor's reconciles never overlap. It reads
    the monitor fresh: an event's body may predate this controller's last status write,
    and deciding on it would repeat Events.
    """
    with metrics.reconcile_timer(KIND):
        body = client.get(client.DRIFTMONITORS, namespace, name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        meta = body["metadata"]
        stored = body.get("status") or {}
        now = datetime.now(UTC)
        spec, invalid = parse_spec(body, now)
        if spec is None:
            assert invalid is not None
            if _write(body, invalid.status):
                for event in invalid.events:
                    emit(body, event.reason, event.message, warning=event.warning)
            return None
        observed = observe(namespace, name, spec, stored)
        last = stored.get("lastRetrain") or {}
        if last.get("name"):
            observed = Observed(
                reference=observed.reference,
                current=observed.current,
                checks=observed.checks,
                retrain=client.get(client.TRAININGJOBS, namespace, last["name"]),
                deployment=client.get(
                    client.MODELDEPLOYMENTS, namespace, spec.model_deployment_ref.name
                )
                if spec.model_deployment_ref
                else None,
            )
        decision = decide(
            name=name,
            generation=meta.get("generation"),
            spec=spec,
            stored=stored,
            observed=observed,
            now=now,
        )
        act(body, spec, decision)
        if _write(body, decision.status) is None:
            return CONFLICT_RETRY_SECONDS  # changed meanwhile: decide again on the new version
        for event in decision.events:
            emit(body, event.reason, event.message, warning=event.warning)
        record_metrics(namespace, name, stored, decision)
        return decision.requeue_after


def _write(body: Mapping[str, Any], desired: Mapping[str, Any]) -> bool | None:
    """Write the status against ``body``'s resourceVersion; None when it changed meanwhile."""
    return runtime.write_status(
        client.DRIFTMONITORS, body, body.get("status") or {}, desired, runtime.Memory()
    )


def act(body: Mapping[str, Any], spec: DriftMonitorSpec, decision: Decision) -> None:
    """Carry out the decision's actions (each idempotent)."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    if decision.start_check is not None:
        try:
            job = build_check_job(body, spec, decision.start_check, config.worker_config())
        except ValueError as exc:
            decision.start_check = None
            _fail_in_status(decision, Reason.INVALID_SPEC, str(exc), meta.get("generation"))
        else:
            client.create(client.JOBS, namespace, job)
            metrics.CHILDREN_CREATED.labels(KIND, "Job").inc()
    for job_name in decision.delete_jobs:
        client.delete(client.JOBS, namespace, job_name)
    if decision.create_retrain is not None:
        plan = decision.create_retrain
        tj = {
            "apiVersion": API_VERSION,
            "kind": "TrainingJob",
            "metadata": {
                "name": plan.name,
                "namespace": namespace,
                "labels": child_labels(KIND, name, "retrain"),
                "ownerReferences": [owner_reference(body)],
            },
            "spec": plan.spec,
        }
        try:
            client.create(client.TRAININGJOBS, namespace, tj)
            metrics.CHILDREN_CREATED.labels(KIND, "TrainingJob").inc()
        except ApiException as exc:
            if exc.status not in (400, 422):
                raise
            message = f"retrain.template: the API server rejected TrainingJob {plan.name}: {_api_message(exc)}"
            record = decision.status.get("lastRetrain") or {}
            record.update({"outcome": "Failed", "message": message[:1024]})
            decision.status["lastRetrain"] = record
            decision.status["phase"] = "Error"
            decision.events.append(_event(Reason.RETRAIN_FAILED, message))
    if decision.promote is not None:
        plan_p = decision.promote
        client.patch(
            client.MODELDEPLOYMENTS,
            namespace,
            plan_p.deployment,
            {
                "spec": {
                    "model": {
                        "uri": plan_p.model_uri,
                        "fromTrainingJob": None,
                        "version": plan_p.version,
                    }
                }
            },
        )


def _event(reason: str, message: str) -> Event:
    return Event(reason, message, warning=True)


def _api_message(exc: ApiException) -> str:
    try:
        return str(json.loads(exc.body or "{}").get("message") or exc.reason)
    except ValueError:
        return str(exc.reason)


def _fail_in_status(decision: Decision, reason: str, message: str, generation: int | None) -> None:
    decision.status["phase"] = "Error"
    decision.status["conditions"] = set_condition(
        decision.status.get("conditions"),
        type=ConditionType.READY,
        status=ConditionStatus.FALSE,
        reason=reason,
        message=message,
        generation=generation,
        now=datetime.now(UTC),
    )
    decision.events.append(_event(reason, message))


def record_metrics(
    namespace: str, name: str, stored: Mapping[str, Any], decision: Decision
) -> None:
    """Gauges and counters of the monitor (only when something happened)."""
    status = decision.status
    if status.get("checks") != stored.get("checks"):
        failed = any(e.reason == Reason.CHECK_FAILED for e in decision.events)
        metrics.DRIFT_CHECKS.labels(namespace, "error" if failed else "success").inc()
        if status.get("driftShare") is not None:
            metrics.DRIFT_SHARE.labels(namespace, name).set(float(status["driftShare"]))
        for feature in status.get("features") or []:
            if feature.get("score") is not None:
                metrics.DRIFT_SCORE.labels(
                    namespace, name, feature["name"], feature.get("method", "")
                ).set(float(feature["score"]))
    if any(e.reason == Reason.DRIFT_DETECTED for e in decision.events):
        metrics.DRIFT_TRIPS.labels(namespace).inc()
    if decision.create_retrain is not None:
        metrics.RETRAINS.labels(namespace, "triggered").inc()
    old = (stored.get("lastRetrain") or {}).get("outcome")
    new = (status.get("lastRetrain") or {}).get("outcome")
    if new and new != old and new not in ("Running", "RollingOut"):
        metrics.RETRAINS.labels(namespace, new.lower()).inc()


# ----------------------------------------------------------------------------- triggers
#
# One async daemon per monitor is the only place its reconcile runs: each reconcile is
# a short blocking call in a worker thread, and between reconciles the daemon awaits
# (holding no thread) until the decision's requeue time, or until an event wakes it.
# Events (the monitor's spec, its check Jobs, its retraining TrainingJob, the Datasets
# and ModelDeployment it references) only wake the daemon, so a wake-up always re-arms
# the schedule with the delay the fresh decision asks for, and one monitor's reconciles
# never overlap.

#: Wake-up flags of the running daemons, by (namespace, name).
_daemons = runtime.Daemons(max_sleep=MAX_SLEEP)


def _wake(namespace: str | None, name: str | None) -> None:
    """Make the monitor's daemon reconcile now (no-op when it has none yet: it starts soon)."""
    _daemons.wake((namespace or "", name or ""))


@kopf.daemon("kyklos.io", "v1alpha1", "driftmonitors", cancellation_timeout=5)
async def monitor_daemon(
    stopped: kopf.DaemonStopped, name: str, namespace: str | None, **_: Any
) -> None:
    """One per monitor: reconcile, then wait until the next check is due (or woken)."""
    key, memory = (namespace or "", name), runtime.Memory()
    await _daemons.run(
        key, stopped, lambda: runtime.attempt(KIND, key[0], name, memory, lambda: reconcile(*key))
    )


@kopf.on.event("kyklos.io", "v1alpha1", "driftmonitors")
async def on_monitor(type: str | None, body: kopf.Body, **_: Any) -> None:
    """The spec changed (status-only changes are this controller's own writes)."""
    if type == "DELETED" or body["metadata"].get("deletionTimestamp"):
        return
    status = body.get("status") or {}
    if status.get("observedGeneration") != body["metadata"].get("generation"):
        _wake(body["metadata"].get("namespace"), body["metadata"].get("name"))


@kopf.on.event(
    "batch", "v1", "jobs", labels={OWNER: kopf.PRESENT, "app.kubernetes.io/managed-by": "kyklos"}
)
async def on_check_job(type: str | None, body: kopf.Body, namespace: str | None, **_: Any) -> None:
    """A check Job finished (or changed): its monitor decides what is next."""
    status = body.get("status") or {}
    if type == "DELETED" or not (
        status.get("succeeded") or status.get("failed") or status.get("conditions")
    ):
        return
    _wake(namespace, (body["metadata"].get("labels") or {}).get(OWNER))


@kopf.on.event("kyklos.io", "v1alpha1", "trainingjobs", labels={OWNER: kopf.PRESENT})
async def on_retrain(type: str | None, body: kopf.Body, namespace: str | None, **_: Any) -> None:
    """A retraining TrainingJob changed: follow its outcome."""
    if type != "DELETED":
        _wake(namespace, (body["metadata"].get("labels") or {}).get(OWNER))


@kopf.index("kyklos.io", "v1alpha1", "driftmonitors")
async def monitors_by_namespace(
    namespace: str | None, name: str | None, spec: kopf.Spec, **_: Any
) -> dict[str | None, dict[str, Any]]:
    """Monitors per namespace with what they reference, so unrelated events cost no API call."""
    return {
        namespace: {
            "name": name,
            "datasets": {
                ((spec.get("reference") or {}).get("datasetRef") or {}).get("name"),
                ((spec.get("current") or {}).get("datasetRef") or {}).get("name"),
            },
            "deployment": (spec.get("modelDeploymentRef") or {}).get("name"),
        }
    }


def _wake_matching(
    index: kopf.Index[str | None, dict[str, Any]], namespace: str | None, match: Any
) -> None:
    if namespace not in index:
        return
    for entry in list(index[namespace]):
        if match(entry):
            _wake(namespace, entry["name"])


@kopf.on.event("kyklos.io", "v1alpha1", "modeldeployments")
async def on_deployment(type: str, namespace: str | None, name: str, **kwargs: Any) -> None:
    """A ModelDeployment's rollout moved: monitors promoting into it follow the outcome."""
    if type != "DELETED":
        _wake_matching(
            kwargs["monitors_by_namespace"], namespace, lambda e: e["deployment"] == name
        )


@kopf.on.event("kyklos.io", "v1alpha1", "datasets")
async def on_dataset(namespace: str | None, name: str, **kwargs: Any) -> None:
    """A referenced Dataset became Ready (or changed): monitors waiting on it reconcile."""
    _wake_matching(kwargs["monitors_by_namespace"], namespace, lambda e: name in e["datasets"])
