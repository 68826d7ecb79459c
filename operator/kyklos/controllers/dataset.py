"""kopf handlers of the Dataset controller: profile Jobs, status, Events, refresh schedule.

Triggers: the Dataset's own watch events, the events of its profile Jobs and their Pods
(labelled ``kyklos.io/dataset``), and one async daemon per Dataset that sleeps until a
refresh is due (``spec.refreshInterval``) or, while a profile is under way, wakes every
``RESYNC_SECONDS`` so that a failed reconcile is retried. Datasets, Jobs and Pods are kept in
kopf's in-memory indexes, so a reconcile reads nothing from the API; a settled Dataset sees
no writes. Every trigger ends in ``reconcile``: observe the Jobs and Pods, let
``kyklos.logic.dataset.plan`` decide, create / delete Jobs, write the status (with the
stored resourceVersion as precondition: a reconcile from a stale body gets a 409 and
leaves it to the next watch event), then post one Event per transition.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kopf

from kyklos.api.dataset import DatasetPhase
from kyklos.controllers import client, config, metrics, runtime, status, threads
from kyklos.logic import dataset as logic
from kyklos.logic.naming import MANAGED_BY, label_value, owner_label
from kyklos.logic.pods import diagnosis_view

log = logging.getLogger("kyklos.dataset")

KIND = "Dataset"
DATASET_LABEL = owner_label(KIND)
CHILD_LABELS: dict[str, Any] = {
    MANAGED_BY: "kyklos",
    DATASET_LABEL: kopf.PRESENT,
}

#: While a profile is under way (or a reconcile failed), re-run the reconcile this often.
RESYNC_SECONDS = 10.0
#: A settled Dataset's daemon re-checks its (in-memory) schedule this often.
IDLE_SECONDS = 30.0

Key = tuple[str, str]  # (namespace, dataset label value)
Body = dict[str, Any]


@dataclass
class _Memory(runtime.Memory):
    """What the controller remembers about one Dataset between reconciles."""

    last_check: datetime | None = None  # when the last refresh was started
    run_floor: int = 0  # refresh Jobs created so far take lower numbers
    retry: bool = False  # the last reconcile failed or asked to be repeated
    retry_delay: float = (
        0.0  # after a failure: the backoff the log announced, which the daemon waits
    )


_objects: runtime.Objects[_Memory] = runtime.Objects(_Memory)


def _key(namespace: str, name: str) -> Key:
    return (namespace, label_value(name))


# ------------------------------------------------------------------------------ indexes


@kopf.index("kyklos.io", "v1alpha1", "datasets")
def dataset_index(namespace: str | None, name: str, body: kopf.Body, **_: Any) -> dict[Key, Body]:
    """Datasets by (namespace, label value of the name): the owners of Job and Pod events."""
    return {_key(namespace or "", name): copy.deepcopy(dict(body))}


@kopf.index("batch", "v1", "jobs", labels=CHILD_LABELS)
def dataset_job_index(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, Body]:
    """Profile Jobs by their Dataset (only what the state machine reads)."""
    meta = body.get("metadata") or {}
    kept = {
        k: copy.deepcopy(meta[k])
        for k in ("name", "uid", "annotations", "ownerReferences", "deletionTimestamp")
        if k in meta
    }
    return {
        (namespace or "", labels[DATASET_LABEL]): {
            "metadata": kept,
            "spec": {
                k: (body.get("spec") or {}).get(k) for k in ("suspend", "activeDeadlineSeconds")
            },
            "status": copy.deepcopy(dict(body.get("status") or {})),
        }
    }


@kopf.index("", "v1", "pods", labels=CHILD_LABELS)
def dataset_pod_index(
    namespace: str | None, labels: Mapping[str, str], body: kopf.Body, **_: Any
) -> dict[Key, Body]:
    """Profile Pods by their Dataset (container states carry the summary; conditions and
    waiting states say why a pod does not start)."""
    view = diagnosis_view(body)
    # Whole container states: a finished worker's termination message is its summary.
    view["status"]["containerStatuses"] = copy.deepcopy(
        (body.get("status") or {}).get("containerStatuses") or []
    )
    return {(namespace or "", labels[DATASET_LABEL]): view}


# ---------------------------------------------------------------------------- reconcile


def _owned_jobs(jobs: Iterable[Body], uid: str) -> list[Body]:
    return [
        j
        for j in jobs
        if any(ref.get("uid") == uid for ref in j["metadata"].get("ownerReferences") or [])
    ]


def reconcile(
    body: Body,
    jobs: Iterable[Body],
    pods: Iterable[Body],
    *,
    refresh_due: bool = False,
) -> None:
    """Bring one Dataset's Jobs and status in line with its spec and its Jobs' results.

    Never raises: a failure is logged in one line, counted (outcome ``error``) and retried
    by the Dataset's daemon.
    """
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    memory = _objects.get(_key(namespace, name))
    with memory.lock:
        try:
            with metrics.reconcile_timer(KIND):
                memory.retry = _reconcile_locked(body, list(jobs), list(pods), memory, refresh_due)
            memory.failures = 0
        except Exception as exc:
            memory.retry = True
            memory.failures += 1
            memory.retry_delay = runtime.retry_after(memory.failures)
            runtime.log_failure(KIND, namespace, name, exc, memory.retry_delay)


def _reconcile_locked(
    body: Body, jobs: list[Body], pods: list[Body], memory: _Memory, refresh_due: bool
) -> bool:
    """One reconcile; True when it should be repeated soon."""
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    # Our own last write may not be in the index yet: decide on what we wrote.
    stored = memory.current_status(body)
    body = {**body, "status": stored}
    runs = logic.observe_runs(_owned_jobs(jobs, meta["uid"]), pods)
    result = logic.plan(
        body,
        runs,
        config=config.worker_config(),
        now=datetime.now(UTC),
        refresh_due=refresh_due,
        run_floor=memory.run_floor,
    )
    if result.create is not None:
        _, action = client.apply(
            client.JOBS, result.create, owner_kind=KIND, immutable=("template", "selector")
        )
        if result.created_run is not None:
            memory.run_floor = max(memory.run_floor, result.created_run + 1)
        if action == "created":
            log.info(
                "dataset %s/%s: created profile Job %s",
                namespace,
                name,
                result.create["metadata"]["name"],
            )
    wrote: bool | None = False
    if result.status:
        wrote = runtime.write_status(client.DATASETS, body, stored, result.status, memory)
        if wrote is None:
            return False  # our copy was stale; its newer version's watch event reconciles
    for job_name in result.delete:
        if client.delete(client.JOBS, namespace, job_name):
            log.info("dataset %s/%s: deleted profile Job %s", namespace, name, job_name)
    if wrote:
        _count_outcome(stored, result.status)
        for event in result.events:
            log.info("dataset %s/%s: %s: %s", namespace, name, event.reason, event.message)
            status.emit(body, event.reason, event.message, warning=event.warning)
    return result.requeue_after is not None


def _count_outcome(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> None:
    phase = desired.get("phase")
    if phase in (DatasetPhase.READY, DatasetPhase.FAILED) and desired.get("jobName") != stored.get(
        "jobName"
    ):
        outcome = "succeeded" if phase == DatasetPhase.READY else "failed"
        metrics.JOB_OUTCOMES.labels(KIND, outcome).inc()


def _reconcile_key(key: Key, indexes: Mapping[str, Any], *, refresh_due: bool = False) -> None:
    """Reconcile the Dataset(s) indexed under ``key`` from kopf's in-memory indexes."""
    jobs = list(indexes["dataset_job_index"].get(key, []))
    pods = list(indexes["dataset_pod_index"].get(key, []))
    for body in list(indexes["dataset_index"].get(key, [])):
        if not body["metadata"].get("deletionTimestamp"):
            reconcile(body, jobs, pods, refresh_due=refresh_due)


# ----------------------------------------------------------------------------- triggers


@kopf.on.event("kyklos.io", "v1alpha1", "datasets")
def dataset_event(
    type: str | None, body: kopf.Body, namespace: str | None, name: str, **kwargs: Any
) -> None:
    """A Dataset appeared or changed (including our own status writes): reconcile it."""
    key = _key(namespace or "", name)
    if type == "DELETED":
        _objects.forget(key)
        return
    if body.get("metadata", {}).get("deletionTimestamp"):
        return  # its Jobs go with it (ownerReferences)
    reconcile(
        copy.deepcopy(dict(body)),
        kwargs["dataset_job_index"].get(key, []),
        kwargs["dataset_pod_index"].get(key, []),
    )


@kopf.on.event("batch", "v1", "jobs", labels=CHILD_LABELS)
def dataset_job_event(namespace: str | None, labels: Mapping[str, str], **kwargs: Any) -> None:
    """A profile Job changed: reconcile its Dataset."""
    _reconcile_key((namespace or "", labels[DATASET_LABEL]), kwargs)


@kopf.on.event("", "v1", "pods", labels=CHILD_LABELS)
def dataset_pod_event(namespace: str | None, labels: Mapping[str, str], **kwargs: Any) -> None:
    """A profile Pod changed (started, stuck, or ended with its summary): reconcile its Dataset."""
    _reconcile_key((namespace or "", labels[DATASET_LABEL]), kwargs)


@kopf.daemon("kyklos.io", "v1alpha1", "datasets", cancellation_timeout=10)
async def dataset_clock(
    body: kopf.Body,
    namespace: str | None,
    name: str,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    """Per Dataset: start refreshes when due; retry reconciles while unsettled.

    Async on purpose: a sync daemon would hold one of kopf's executor threads for the
    Dataset's whole life; this one only sleeps, and runs each reconcile in a thread.
    Decisions use the live body and in-memory state only (no API calls while idle).
    """
    key = _key(namespace or "", name)
    while not stopped:
        memory = _objects.get(key)
        live: Body = copy.deepcopy(dict(body))
        now = datetime.now(UTC)
        due = logic.next_refresh_at(live, memory.last_check)
        unsettled = memory.retry or not logic.is_settled(live)
        delay = RESYNC_SECONDS if unsettled else IDLE_SECONDS
        if memory.failures:
            delay = memory.retry_delay
        if due is not None:
            delay = min(delay, max((due - now).total_seconds(), 0.0))
        if delay > 0:
            await stopped.wait(delay)
            if stopped:
                break
            now = datetime.now(UTC)
            live = copy.deepcopy(dict(body))
            due = logic.next_refresh_at(live, memory.last_check)
            unsettled = memory.retry or not logic.is_settled(live)
        refresh_due = due is not None and due <= now
        if not (refresh_due or unsettled) or live["metadata"].get("deletionTimestamp"):
            continue
        if refresh_due:
            memory.last_check = now
        await threads.run(_reconcile_key, key, kwargs, refresh_due=refresh_due)
