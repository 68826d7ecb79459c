"""kopf handlers of the TrainingJob controller: read (indexes), decide (logic.training), act, report.

Triggers: events of TrainingJobs, of the Datasets they name (through an index of TrainingJobs by
``spec.datasetRef.name``), of their Jobs and Services, and of their Jobs' pods (so that a pod
that cannot be scheduled or started is explained in the status as soon as it is seen); plus a
resync every minute over unfinished TrainingJobs that retries a failed reconcile and makes no
API call when nothing changed. Reads come from kopf's in-memory indexes, so a settled
TrainingJob costs no request; only the terminal transition lists the Job's pods once, to read
the trainer's metrics. (kopf keeps one watch per resource and filters by labels in the
process: the pod handlers here share the pod watch the Dataset controller already has.)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import kopf
from kubernetes.client.exceptions import ApiException

from kyklos.controllers import client, config, metrics, runtime, status, threads
from kyklos.logic import evaluation, training
from kyklos.logic.naming import COMPONENT, MANAGED_BY, label_value, owner_label
from kyklos.logic.pods import diagnosis_view

log = logging.getLogger("kyklos.training")

KIND = training.KIND
GROUP, VERSION = "kyklos.io", "v1alpha1"
TRAININGJOB_LABEL = owner_label(KIND)
CHILD_LABELS: Mapping[str, Any] = {MANAGED_BY: "kyklos", TRAININGJOB_LABEL: kopf.PRESENT}
RESYNC_SECONDS = 60.0

IDX_TRAININGJOBS = "training_trainingjobs"
IDX_BY_DATASET = "training_by_dataset"
IDX_DATASETS = "training_datasets"
IDX_JOBS = "training_jobs"
IDX_SERVICES = "training_services"
IDX_BY_LABEL = "training_by_label"
IDX_PODS = "training_pods"
IDX_EVAL_JOBS = "training_eval_jobs"
IDX_CHAMPIONS = "training_champions"
IDX_BY_CHAMPION = "training_by_champion"

Key = tuple[str, str]


@dataclass
class _State:
    """Process-wide controller state: indexes, children this process just created."""

    indexes: dict[str, Any] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)
    # Children created but not yet seen by the watch (avoids a second create and its 409).
    created: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    resync: asyncio.Task[None] | None = None


_state = _State()
#: Per TrainingJob: its lock and this process's last status write (kyklos.controllers.runtime).
_objects: runtime.Objects[runtime.Memory] = runtime.Objects(runtime.Memory)


# ------------------------------------------------------------------------------------ indexes


def _trim(body: Mapping[str, Any], *, spec_keys: Iterable[str] | None = None) -> dict[str, Any]:
    """A plain snapshot of what the controller reads (indexes keep them in memory)."""
    meta = body.get("metadata") or {}
    spec = body.get("spec") or {}
    snapshot: dict[str, Any] = json.loads(
        json.dumps(
            {
                "apiVersion": body.get("apiVersion"),
                "kind": body.get("kind"),
                "metadata": {
                    k: meta[k]
                    for k in (
                        "name",
                        "namespace",
                        "uid",
                        "resourceVersion",
                        "generation",
                        "labels",
                        "annotations",
                        "ownerReferences",
                        "deletionTimestamp",
                    )
                    if k in meta
                },
                "spec": spec if spec_keys is None else {k: spec[k] for k in spec_keys if k in spec},
                "status": body.get("status") or {},
            }
        )
    )
    return snapshot


def _owner(body: Mapping[str, Any]) -> str | None:
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == KIND and ref.get("apiVersion", "").startswith(f"{GROUP}/"):
            return str(ref.get("name"))
    return None


# Index functions are async: pure and tiny, they run on kopf's event loop instead of paying a
# round trip through its thread pool for every event.
@kopf.index(GROUP, VERSION, "trainingjobs", id=IDX_TRAININGJOBS)
async def training_trainingjobs(**kwargs: Any) -> object:
    """TrainingJobs by (namespace, name)."""
    return {(kwargs["namespace"], kwargs["name"]): _trim(kwargs["body"])}


@kopf.index(GROUP, VERSION, "trainingjobs", id=IDX_BY_DATASET)
async def training_by_dataset(**kwargs: Any) -> object:
    """TrainingJob names by (namespace, spec.datasetRef.name and spec.evaluation.datasetRef.name)."""
    spec = kwargs["spec"]
    names = {
        (spec.get("datasetRef") or {}).get("name"),
        (((spec.get("evaluation") or {}).get("datasetRef")) or {}).get("name"),
    }
    return {(kwargs["namespace"], n): kwargs["name"] for n in names if n} or None


@kopf.index(GROUP, VERSION, "datasets", id=IDX_DATASETS)
async def training_datasets(**kwargs: Any) -> object:
    """Datasets by (namespace, name): their source and status."""
    return {(kwargs["namespace"], kwargs["name"]): _trim(kwargs["body"], spec_keys=("source",))}


@kopf.index("batch", "v1", "jobs", labels=CHILD_LABELS, id=IDX_JOBS)
async def training_jobs(**kwargs: Any) -> object:
    """Training Jobs by (namespace, owning TrainingJob)."""
    owner = _owner(kwargs["body"])
    if owner is None or _is_eval_job(kwargs["body"]):
        return None
    return {(kwargs["namespace"], owner): _trim(kwargs["body"], spec_keys=("suspend",))}


def _is_eval_job(body: Mapping[str, Any]) -> bool:
    labels = (body.get("metadata") or {}).get("labels") or {}
    return labels.get(COMPONENT) == evaluation.COMPONENT_EVALUATOR


@kopf.index("batch", "v1", "jobs", labels=CHILD_LABELS, id=IDX_EVAL_JOBS)
async def training_eval_jobs(**kwargs: Any) -> object:
    """Evaluation Jobs (``<name>-eval``) by (namespace, owning TrainingJob)."""
    owner = _owner(kwargs["body"])
    if owner is None or not _is_eval_job(kwargs["body"]):
        return None
    return {(kwargs["namespace"], owner): _trim(kwargs["body"], spec_keys=())}


@kopf.index(GROUP, VERSION, "modeldeployments", id=IDX_CHAMPIONS)
async def training_champions(**kwargs: Any) -> object:
    """ModelDeployments by (namespace, name): the stable model a compareTo gate scores."""
    stable = (kwargs["body"].get("status") or {}).get("stableModel")
    return {(kwargs["namespace"], kwargs["name"]): {"status": {"stableModel": stable}}}


@kopf.index(GROUP, VERSION, "trainingjobs", id=IDX_BY_CHAMPION)
async def training_by_champion(**kwargs: Any) -> object:
    """TrainingJob names by (namespace, spec.evaluation.compareTo.modelDeploymentRef.name)."""
    compare = (kwargs["spec"].get("evaluation") or {}).get("compareTo") or {}
    name = (compare.get("modelDeploymentRef") or {}).get("name")
    return {(kwargs["namespace"], name): kwargs["name"]} if name else None


@kopf.index("v1", "services", labels=CHILD_LABELS, id=IDX_SERVICES)
async def training_services(**kwargs: Any) -> object:
    """Headless worker Services by (namespace, owning TrainingJob)."""
    owner = _owner(kwargs["body"])
    return {(kwargs["namespace"], owner): _trim(kwargs["body"], spec_keys=())} if owner else None


@kopf.index(GROUP, VERSION, "trainingjobs", id=IDX_BY_LABEL)
async def training_by_label(**kwargs: Any) -> object:
    """TrainingJob names by (namespace, the value of their children's owner label)."""
    return {(kwargs["namespace"], label_value(kwargs["name"])): kwargs["name"]}


@kopf.index("v1", "pods", labels=CHILD_LABELS, id=IDX_PODS)
async def training_pods(**kwargs: Any) -> object:
    """Trainer pods by (namespace, owner label value), trimmed to what says why one is stuck."""
    return {
        (kwargs["namespace"], kwargs["labels"][TRAININGJOB_LABEL]): diagnosis_view(kwargs["body"])
    }


def _values(index: str, key: Key) -> list[Any]:
    return runtime.index_values(_state.indexes.get(index), key)


def _owned(index: str, key: Key, uid: str) -> dict[str, Any] | None:
    """The indexed child of the TrainingJob ``uid`` (else any child under that key, else the one just created)."""
    children: list[dict[str, Any]] = _values(index, key)
    mine = [
        c
        for c in children
        if any(r.get("uid") == uid for r in c["metadata"].get("ownerReferences") or [])
    ]
    created_key = (index, *key)
    if mine:
        _state.created.pop(created_key, None)
        return mine[0]
    if children:
        return children[0]
    return _state.created.get(created_key)


# ------------------------------------------------------------------------------------ reconcile


def _settings() -> training.Settings:
    cfg = config.current()
    return training.Settings(
        artifacts_uri=cfg.artifacts_uri,
        pvc_root=cfg.pvc_root,
        artifacts_secret=cfg.artifacts_secret,
    )


def reconcile_key(namespace: str, name: str, body: Mapping[str, Any] | None = None) -> None:
    """Reconcile one TrainingJob (serialised per object); errors are logged and counted."""
    key = (namespace, name)
    memory = _objects.get(key)
    with memory.lock:
        found = _values(IDX_TRAININGJOBS, key)
        current = found[0] if found else (_trim(body) if body is not None else None)
        if current is None or current["metadata"].get("deletionTimestamp"):
            return
        try:
            with metrics.reconcile_timer(KIND):
                reconcile(current, memory)
            memory.failures = 0
        except Exception as exc:  # the resync retries; never crash the handler
            memory.failures += 1
            runtime.log_failure(KIND, namespace, name, exc, RESYNC_SECONDS)


def reconcile(body: Mapping[str, Any], memory: runtime.Memory | None = None) -> None:
    """Observe the children, decide the whole status and child set, apply the difference."""
    meta = body["metadata"]
    namespace, name, uid = str(meta["namespace"]), str(meta["name"]), str(meta["uid"])
    key = (namespace, name)
    memory = memory if memory is not None else _objects.get(key)
    # Our own last write may not be in the index yet: decide on what we wrote.
    stored = memory.current_status(body)
    view = {**body, "status": stored}
    dataset_name = ((body.get("spec") or {}).get("datasetRef") or {}).get("name")
    datasets = _values(IDX_DATASETS, (namespace, dataset_name)) if dataset_name else []
    job = _owned(IDX_JOBS, key, uid)
    if job is not None and job["metadata"].get("deletionTimestamp"):
        return  # the Job is going away; its DELETED event reconciles again
    eval_job = _owned(IDX_EVAL_JOBS, key, uid)
    obs = training.Observation(
        trainingjob=view,
        dataset=datasets[0] if datasets else None,
        job=job,
        service=_owned(IDX_SERVICES, key, uid),
        settings=_settings(),
        now=datetime.now(UTC),
        watched_pods=_values(IDX_PODS, (namespace, label_value(name))) if job or eval_job else (),
        **_gate_inputs(body, namespace, eval_job),
    )
    if training.needs_pods(obs) and job is not None:
        obs = replace(obs, pods=_job_pods(namespace, job))
    if training.needs_eval_pods(obs) and eval_job is not None:
        obs = replace(obs, eval_pods=_job_pods(namespace, eval_job))
    decision = _act(obs, training.decide(obs))
    _report(body, stored, decision, memory)


def _job_pods(namespace: str, job: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The pods of ``job`` (listed once, to read their termination messages)."""
    job_uid = job["metadata"].get("uid")
    return client.list_objects(
        client.PODS, namespace, {"batch.kubernetes.io/controller-uid": str(job_uid)}
    )


def _gate_inputs(
    body: Mapping[str, Any], namespace: str, eval_job: dict[str, Any] | None
) -> dict[str, Any]:
    """What the evaluation gate reads: its Job, its Dataset, the compareTo ModelDeployment."""
    gate = (body.get("spec") or {}).get("evaluation") or {}
    eval_dataset = (gate.get("datasetRef") or {}).get("name")
    champion = ((gate.get("compareTo") or {}).get("modelDeploymentRef") or {}).get("name")
    datasets = _values(IDX_DATASETS, (namespace, eval_dataset)) if eval_dataset else []
    champions = _values(IDX_CHAMPIONS, (namespace, champion)) if champion else []
    return {
        "eval_job": eval_job,
        "eval_dataset": datasets[0] if datasets else None,
        "champion": champions[0] if champions else None,
    }


def _act(obs: training.Observation, decision: training.Decision) -> training.Decision:
    """Delete, create and patch children; a Job the API server rejects is decided again."""
    meta = obs.trainingjob["metadata"]
    namespace, name = str(meta["namespace"]), str(meta["name"])
    if decision.delete_job:
        client.delete(client.JOBS, namespace, decision.delete_job)
        _state.created.pop((IDX_JOBS, namespace, name), None)
    if decision.create_job is not None:
        rejection = _create_job(obs, decision.create_job, IDX_JOBS, ("suspend",))
        if rejection is not None:  # InvalidSpec naming what the API server refused
            return training.decide(replace(obs, job_rejection=rejection))
    if decision.create_service is not None:
        service = client.create(client.SERVICES, namespace, decision.create_service)
        metrics.CHILDREN_CREATED.labels(KIND, "Service").inc()
        _state.created[(IDX_SERVICES, namespace, name)] = _trim(service, spec_keys=())
    if decision.patch_job is not None and obs.job is not None:
        client.patch(client.JOBS, namespace, obs.job["metadata"]["name"], decision.patch_job)
    if decision.create_eval_job is not None:
        rejection = _create_job(obs, decision.create_eval_job, IDX_EVAL_JOBS, ())
        if rejection is not None:  # an EvaluationFailed verdict naming it
            return training.decide(replace(obs, eval_job_rejection=rejection))
    return decision


def _create_job(
    obs: training.Observation, manifest: dict[str, Any], index: str, spec_keys: tuple[str, ...]
) -> str | None:
    """Create a Job of the TrainingJob; why the API server refused it (400/422), else None."""
    meta = obs.trainingjob["metadata"]
    namespace, name, uid = str(meta["namespace"]), str(meta["name"]), str(meta["uid"])
    try:
        job = client.create(client.JOBS, namespace, manifest)
    except ApiException as exc:
        if exc.status not in (400, 422):
            raise
        return training.describe_rejection(_json(exc.body), str(exc.reason))
    if not any(r.get("uid") == uid for r in job["metadata"].get("ownerReferences") or []):
        raise RuntimeError(
            f"Job {job['metadata']['name']} belongs to another object; waiting for it to go"
        )
    metrics.CHILDREN_CREATED.labels(KIND, "Job").inc()
    _state.created[(index, namespace, name)] = _trim(job, spec_keys=spec_keys)
    return None


def _json(text: Any) -> dict[str, Any] | None:
    try:
        data = json.loads(text) if text else None
    except (TypeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _report(
    body: Mapping[str, Any],
    stored: Mapping[str, Any],
    decision: training.Decision,
    memory: runtime.Memory,
) -> None:
    """Write the status (only what changed), post the transition Events, count the metrics.

    Nothing is reported when the TrainingJob changed since it was read (its newer version's
    watch event reconciles again) or nothing changed.
    """
    meta = body["metadata"]
    namespace = str(meta["namespace"])
    view = {**body, "status": stored}
    if not runtime.write_status(client.TRAININGJOBS, body, stored, decision.status, memory):
        return
    for event in decision.events:
        status.emit(view, event.reason, event.message, warning=event.warning)
    if decision.verdict is not None:
        _count_verdict(namespace, str(meta["name"]), decision.verdict)
    for transition in decision.transitions:
        metrics.TRAININGS.labels(namespace, transition).inc()
        if transition in ("succeeded", "failed"):
            metrics.JOB_OUTCOMES.labels(KIND, transition).inc()
            if decision.duration_seconds is not None:
                metrics.TRAINING_SECONDS.labels(namespace, transition).observe(
                    decision.duration_seconds
                )
    log.info(
        "TrainingJob %s/%s: phase %s",
        namespace,
        meta["name"],
        decision.status.get("phase") or stored.get("phase"),
    )


def _count_verdict(namespace: str, name: str, verdict: evaluation.Verdict) -> None:
    metrics.EVALUATIONS.labels(namespace, verdict.reason.value).inc()
    for role, value in (
        (evaluation.CHALLENGER, verdict.challenger),
        (evaluation.CHAMPION, verdict.champion),
    ):
        if value is not None:
            metrics.EVALUATION_VALUE.labels(namespace, name, role).set(value)


def _forget(namespace: str, name: str) -> None:
    _objects.forget((namespace, name))
    with _state.guard:
        for idx in (IDX_JOBS, IDX_SERVICES, IDX_EVAL_JOBS):
            _state.created.pop((idx, namespace, name), None)


# ------------------------------------------------------------------------------------ triggers


@kopf.on.event(GROUP, VERSION, "trainingjobs")
def training_on_trainingjob(**kwargs: Any) -> None:
    """A TrainingJob was added or changed (or deleted: forget it)."""
    namespace, name, body = str(kwargs["namespace"]), str(kwargs["name"]), kwargs["body"]
    if kwargs["type"] == "DELETED":
        _forget(namespace, name)
        return
    reconcile_key(namespace, name, body)


@kopf.on.event(GROUP, VERSION, "datasets")
def training_on_dataset(**kwargs: Any) -> None:
    """A Dataset changed: reconcile the TrainingJobs that name it (they may be waiting for it)."""
    namespace, name = str(kwargs["namespace"]), str(kwargs["name"])
    for trainingjob in _values(IDX_BY_DATASET, (namespace, name)):
        reconcile_key(namespace, str(trainingjob))


@kopf.on.event("batch", "v1", "jobs", labels=CHILD_LABELS)
def training_on_job(**kwargs: Any) -> None:
    """A training Job changed or was deleted: reconcile its TrainingJob."""
    namespace, owner = str(kwargs["namespace"]), _owner(kwargs["body"])
    if owner is None:
        return
    if kwargs["type"] == "DELETED":
        index = IDX_EVAL_JOBS if _is_eval_job(kwargs["body"]) else IDX_JOBS
        _state.created.pop((index, namespace, owner), None)
    reconcile_key(namespace, owner)


@kopf.on.event("v1", "services", labels=CHILD_LABELS)
def training_on_service(**kwargs: Any) -> None:
    """A worker Service changed or was deleted: reconcile its TrainingJob."""
    namespace, owner = str(kwargs["namespace"]), _owner(kwargs["body"])
    if owner is None:
        return
    if kwargs["type"] == "DELETED":
        _state.created.pop((IDX_SERVICES, namespace, owner), None)
    reconcile_key(namespace, owner)


@kopf.on.event(GROUP, VERSION, "modeldeployments")
def training_on_champion(**kwargs: Any) -> None:
    """A ModelDeployment changed: reconcile the TrainingJobs whose gate compares to it."""
    namespace, name = str(kwargs["namespace"]), str(kwargs["name"])
    for trainingjob in _values(IDX_BY_CHAMPION, (namespace, name)):
        reconcile_key(namespace, str(trainingjob))


@kopf.on.event("v1", "pods", labels=CHILD_LABELS)
def training_on_pod(**kwargs: Any) -> None:
    """A trainer pod changed (scheduled, stuck, started): reconcile its TrainingJob."""
    namespace, label = str(kwargs["namespace"]), str(kwargs["labels"][TRAININGJOB_LABEL])
    for name in _values(IDX_BY_LABEL, (namespace, label)):
        reconcile_key(namespace, str(name))


def _unfinished() -> list[Key]:
    """Unfinished TrainingJobs (called on kopf's event loop, so the index holds still)."""
    source = _state.indexes.get(IDX_TRAININGJOBS)
    if source is None:
        return []
    out = []
    for key in list(source.keys()):
        for body in _values(IDX_TRAININGJOBS, key):
            latest = _objects.get(key).current_status(body)
            if latest.get("phase") not in training.TERMINAL_PHASES:
                out.append(key)
    return out


async def _resync_loop(every: float, run: Callable[[str, str], None]) -> None:
    """Visit every unfinished TrainingJob once per ``every`` seconds, spread evenly over the
    period (a burst of index-only reconciles would hold the GIL and delay real work).

    Async: it holds no thread while it waits, and its reconciles run on the operator's
    pool like every other (so SIGTERM drops them when queued).
    """
    while True:
        keys = _unfinished()
        if not keys:
            await asyncio.sleep(every)
            continue
        pause = every / len(keys)
        for namespace, name in keys:
            await asyncio.sleep(pause)
            await threads.run(run, namespace, name)


@kopf.on.startup()
async def training_startup(**kwargs: Any) -> None:
    """Keep the indexes for threads outside kopf's handlers and start the resync."""
    for index in (
        IDX_TRAININGJOBS,
        IDX_BY_DATASET,
        IDX_DATASETS,
        IDX_JOBS,
        IDX_SERVICES,
        IDX_BY_LABEL,
        IDX_PODS,
        IDX_EVAL_JOBS,
        IDX_CHAMPIONS,
        IDX_BY_CHAMPION,
    ):
        _state.indexes[index] = kwargs[index]
    _state.resync = asyncio.get_running_loop().create_task(
        _resync_loop(RESYNC_SECONDS, reconcile_key), name="kyklos-training-resync"
    )


@kopf.on.cleanup()
async def training_cleanup(**_: Any) -> None:
    """Stop the resync."""
    task, _state.resync = _state.resync, None
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
