"""kopf handlers of the ModelDeployment controller: read, decide (logic.rollout), act, report.

Each ModelDeployment has one async daemon (:class:`kyklos.controllers.runtime.Daemons`),
the only place its reconcile runs: a short blocking call in a worker thread, then a wait
that holds no thread until the decision's ``requeue_after`` (canary pauses, progress
deadlines), or until an event wakes it. Events of the ModelDeployment, its Deployments /
Service / HPA / canary and analysis Pods and Jobs (by the ``kyklos.io/modeldeployment``
label) and of referenced TrainingJobs (through an index of ModelDeployments by
``model.fromTrainingJob``) only wake the daemon. Everything a reconcile reads comes from
kopf's in-memory indexes, so a settled object costs no API call.

Status is written (with the read resourceVersion as precondition) before the children are
changed, so a crash between the two repeats the same decision (e.g. a rolled-back model is
recorded in ``failedModel`` before its canary is deleted, and is never retried); a 409 changes
nothing and decides again on the newer version. Because the indexes lag behind our own
writes, the last status and the children this controller wrote are remembered
(:class:`kyklos.controllers.runtime.Memory`, keyed by the resourceVersion each write
replaced) and used until the watch delivers them, so a reconcile never mixes a new status
with an old child (which could undo a canary step).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from kyklos.api.common import API_VERSION
from kyklos.api.deployment import ModelDeploymentSpec
from kyklos.controllers import client, config, metrics, runtime
from kyklos.controllers.status import emit
from kyklos.logic import analysis as canary_analysis
from kyklos.logic import rollout
from kyklos.logic.conditions import Event
from kyklos.logic.jobs import JobState, latest_message, observe_job
from kyklos.logic.modelfetch import FetchFailure, ModelFetcher, fetch_failure
from kyklos.logic.naming import COMPONENT, MANAGED_BY, child_name, label_value, owner_label
from kyklos.logic.serving import ProxyImage
from kyklos.logic.workerjob import build_worker_job

log = logging.getLogger("kyklos.deployment")

KIND = rollout.KIND
GROUP, VERSION = API_VERSION.split("/")
OWNER_LABEL = owner_label(KIND)
CHILDREN: dict[str, Any] = {MANAGED_BY: "kyklos", OWNER_LABEL: kopf.PRESENT}
CANARY_PODS: dict[str, Any] = {**CHILDREN, COMPONENT: rollout.CANARY}
ANALYSIS: dict[str, Any] = {**CHILDREN, COMPONENT: canary_analysis.ANALYSIS_COMPONENT}

Key = tuple[str, str]  # (namespace, owner label value)


def _key(namespace: str | None, name: str) -> Key:
    return (namespace or "", label_value(name))


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


# --------------------------------------------------------------------------------- indexes


def _by_owner(namespace: str | None, labels: kopf.Labels, value: Any) -> dict[Key, Any]:
    """An index entry of a child: ``value`` under its owner's key."""
    return {(namespace or "", labels[OWNER_LABEL]): value}


@kopf.index(GROUP, VERSION, "modeldeployments")
def md_bodies(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Key, Any]:
    """ModelDeployments by (namespace, name), for reconciles triggered by children and time."""
    return {_key(namespace, name): _plain(body)}


@kopf.index(GROUP, VERSION, "modeldeployments")
def md_by_training_job(
    spec: kopf.Spec, namespace: str | None, name: str, **_: Any
) -> dict[tuple[str, str], str] | None:
    """ModelDeployment names by the TrainingJob they take their model from."""
    job = (spec.get("model") or {}).get("fromTrainingJob")
    return {(namespace or "", job): name} if job else None


@kopf.index(GROUP, VERSION, "trainingjobs")
def md_training_jobs(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> dict[Key, Any]:
    """What model resolution needs of every TrainingJob."""
    return {
        (namespace or "", name): {
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"evaluation": (body.get("spec") or {}).get("evaluation")},
            "status": copy.deepcopy(dict(body.get("status") or {})),
        }
    }


def _child_by_owner(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, Any]:
    """A serving Deployment, Service or HPA, by owner."""
    return _by_owner(namespace, labels, _plain(body))


for _id, _group, _version, _plural in (
    ("md_deployments", "apps", "v1", "deployments"),
    ("md_services", "", "v1", "services"),
    ("md_hpas", "autoscaling", "v2", "horizontalpodautoscalers"),
):
    kopf.index(_group, _version, _plural, id=_id, labels=CHILDREN)(_child_by_owner)


@kopf.index("", "v1", "pods", labels=CANARY_PODS)
def md_canary_pods(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, Any]:
    """Canary pods by owner: only their model label and restart counts."""
    statuses = (body.get("status") or {}).get("containerStatuses") or []
    restarts = [{"restartCount": s.get("restartCount", 0)} for s in statuses]
    meta = {"name": body["metadata"]["name"], "labels": dict(labels)}
    return _by_owner(
        namespace, labels, {"metadata": meta, "status": {"containerStatuses": restarts}}
    )


@kopf.index("", "v1", "pods", labels=CHILDREN)
def md_fetch_failures(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, Any] | None:
    """Serving pods whose model download failed: only why, and how often (none otherwise)."""
    failure = fetch_failure(body, rollout.REVISION_LABEL)
    if failure is None:
        return None
    return _by_owner(namespace, labels, failure.to_index())


@kopf.index("batch", "v1", "jobs", labels=ANALYSIS)
def md_analysis_jobs(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, Any]:
    """Analysis Jobs by owner: name and status."""
    status = copy.deepcopy(dict(body.get("status") or {}))
    return _by_owner(
        namespace, labels, {"metadata": {"name": body["metadata"]["name"]}, "status": status}
    )


@kopf.index("", "v1", "pods", labels=ANALYSIS)
def md_analysis_pods(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, Any]:
    """Analysis pods by owner: their Job and what they left in the termination message."""
    status = body.get("status") or {}
    kept = {
        "phase": status.get("phase"),
        "containerStatuses": copy.deepcopy(list(status.get("containerStatuses") or [])),
    }
    return _by_owner(namespace, labels, {"metadata": {"labels": dict(labels)}, "status": kept})


INDEX_NAMES = (
    "md_analysis_jobs",
    "md_analysis_pods",
    "md_bodies",
    "md_by_training_job",
    "md_training_jobs",
    "md_deployments",
    "md_services",
    "md_hpas",
    "md_canary_pods",
    "md_fetch_failures",
)


class _Indexes:
    """The live kopf indexes a daemon was given, read safely from its worker thread."""

    def __init__(self, kwargs: Mapping[str, Any]) -> None:
        self.live: dict[str, Any] = {n: kwargs[n] for n in INDEX_NAMES if n in kwargs}

    def items(self, index: str, key: Any) -> list[Any]:
        return runtime.index_values(self.live.get(index), key)


# ------------------------------------------------------------------------------- reconcile

#: Per ModelDeployment: its lock, its last status write and the children it wrote.
_objects: runtime.Objects[runtime.Memory] = runtime.Objects(runtime.Memory)
#: The daemons' wake-up flags; a daemon sleeps at most this long without an event.
_daemons = runtime.Daemons(max_sleep=300.0)
#: A status write that met a newer version is decided again this soon (its event wakes too).
CONFLICT_RETRY_SECONDS = 1.0


def reconcile_key(key: Key, ix: _Indexes, memory: runtime.Memory) -> float | None:
    """Reconcile the ModelDeployment indexed under ``key``; seconds until it is due again.

    Failures are logged in one line and retried with backoff; an object deleted meanwhile
    ends quietly (its children go with it by ownerReference).
    """
    with memory.lock:
        bodies = ix.items("md_bodies", key)
        if not bodies or bodies[0]["metadata"].get("deletionTimestamp"):
            return None
        body = bodies[0]
        meta = body["metadata"]

        def run() -> float | None:
            with metrics.reconcile_timer(KIND):
                return _reconcile(key, body, ix, memory)

        def gone() -> bool:
            now = ix.items("md_bodies", key)
            return (
                not now
                or now[0]["metadata"].get("uid") != meta.get("uid")
                or bool(now[0]["metadata"].get("deletionTimestamp"))
            )

        return runtime.attempt(KIND, meta["namespace"], meta["name"], memory, run, gone=gone)


def _observed(
    key: Key, namespace: str, name: str, ix: _Indexes, memory: runtime.Memory
) -> rollout.Observed:
    deployments = {d["metadata"]["name"]: d for d in ix.items("md_deployments", key)}
    stable, canary = child_name(name, rollout.STABLE), child_name(name, rollout.CANARY)
    return rollout.Observed(
        stable=memory.current_child("Deployment", stable, deployments.get(stable)),
        canary=memory.current_child("Deployment", canary, deployments.get(canary)),
        canary_pods=ix.items("md_canary_pods", key),
        fetch_failures=[FetchFailure.from_index(f) for f in ix.items("md_fetch_failures", key)],
        analysis_results=_analysis_results(key, ix),
    )


def _analysis_results(key: Key, ix: _Indexes) -> dict[str, rollout.AnalysisJobResult]:
    """Finished analysis Jobs: their summary, or why they left none."""
    pods = ix.items("md_analysis_pods", key)
    out: dict[str, rollout.AnalysisJobResult] = {}
    for job in ix.items("md_analysis_jobs", key):
        name = job["metadata"]["name"]
        own = [p for p in pods if (p["metadata"]["labels"] or {}).get("job-name") == name]
        message = latest_message(own)
        state = observe_job(job)
        if message is not None:
            out[name] = rollout.AnalysisJobResult(message=message)
        elif state.state == JobState.FAILED:
            out[name] = rollout.AnalysisJobResult(
                failure=f"{state.reason}: {state.message}".strip(": ")
            )
        elif state.state == JobState.SUCCEEDED:
            # Succeeded, but its pod (and message) not indexed yet: wait for the pod event.
            continue
    return out


def _reconcile(
    key: Key, body: Mapping[str, Any], ix: _Indexes, memory: runtime.Memory
) -> float | None:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    # Our own last write may not be in the index yet: decide on what we wrote.
    stored = memory.current_status(body)
    now = datetime.now(UTC)
    spec, invalid = rollout.parse_spec({**body, "status": stored}, now)
    if spec is None:
        assert invalid is not None
        wrote = _write(body, stored, invalid.status, memory)
        if wrote:
            _announce(body, [invalid.event])
        return CONFLICT_RETRY_SECONDS if wrote is None else None
    job = None
    if spec.model.from_training_job:
        jobs = ix.items("md_training_jobs", (namespace, spec.model.from_training_job))
        job = jobs[0] if jobs else None
    model = rollout.resolve_model(spec.model, job)
    observed = _observed(key, namespace, name, ix, memory)
    decision = rollout.decide(
        spec,
        model,
        observed,
        stored,
        now,
        name=name,
        namespace=namespace,
        generation=meta.get("generation"),
        artifacts_uri=config.current().artifacts_uri,
        request=canary_analysis.requested_action(meta),
    )
    wrote = _write(body, stored, decision.status, memory)
    if wrote is None:
        return CONFLICT_RETRY_SECONDS  # decided on a stale copy: nothing done, decide again
    if wrote:
        _report(body, decision)
    metrics.CANARY_WEIGHT.labels(namespace, name).set(rollout.canary_weight_of(decision.status))
    _act(key, body, spec, decision, observed, ix, memory)
    return decision.requeue_after


def _write(
    body: Mapping[str, Any],
    stored: Mapping[str, Any],
    desired: Mapping[str, Any],
    memory: runtime.Memory,
) -> bool | None:
    return runtime.write_status(client.MODELDEPLOYMENTS, body, stored, desired, memory)


def _announce(body: Mapping[str, Any], events: Iterable[Event]) -> None:
    for event in events:
        log.info("ModelDeployment %s/%s: %s", *_names(body), event.message)
        emit(body, event.reason, event.message, warning=event.warning)


def _names(body: Mapping[str, Any]) -> tuple[str, str]:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def _report(body: Mapping[str, Any], decision: rollout.Decision) -> None:
    namespace = body["metadata"]["namespace"]
    _announce(body, decision.events)
    for verdict in decision.verdicts:
        metrics.CANARY_ANALYSES.labels(namespace, verdict).inc()
    for metric in decision.metrics:
        metrics.ROLLOUTS.labels(namespace, metric.event).inc()
        if metric.seconds is not None:
            metrics.ROLLOUT_SECONDS.labels(namespace, metric.event).observe(metric.seconds)


def _differs(desired: Mapping[str, Any], actual: Mapping[str, Any] | None) -> bool:
    """Whether ``client.apply`` would write (judged on the indexed copy: no API read)."""
    if actual is None:
        return True
    want, have = desired["metadata"], actual.get("metadata") or {}
    return not (
        client.is_subset(want.get("labels") or {}, have.get("labels") or {})
        and client.is_subset(want.get("annotations") or {}, have.get("annotations") or {})
        and client.is_subset(want.get("ownerReferences") or [], have.get("ownerReferences") or [])
        and client.is_subset(desired.get("spec") or {}, actual.get("spec") or {})
    )


def _ensure(
    res: client.Resource,
    desired: Mapping[str, Any],
    actual: Mapping[str, Any] | None,
    memory: runtime.Memory,
) -> None:
    if _differs(desired, actual):
        obj, action = client.apply(res, desired, owner_kind=KIND)
        if action != "unchanged":
            memory.remember_child(res.kind, desired["metadata"]["name"], actual, obj)


def _named(
    ix: _Indexes, index: str, key: Key, kind: str, name: str, memory: runtime.Memory
) -> Mapping[str, Any] | None:
    """The indexed child ``name`` of ``kind`` (or our own later write of it)."""
    found = [c for c in ix.items(index, key) if c["metadata"]["name"] == name]
    return memory.current_child(kind, name, found[0] if found else None)


def _act(
    key: Key,
    body: Mapping[str, Any],
    spec: ModelDeploymentSpec,
    decision: rollout.Decision,
    observed: rollout.Observed,
    ix: _Indexes,
    memory: runtime.Memory,
) -> None:
    """Make the children match the decision (only what differs from the indexed copies)."""
    namespace = body["metadata"]["namespace"]
    cfg = config.current()
    pvc_root = cfg.pvc_root
    fetcher = ModelFetcher(cfg.worker_image, cfg.worker_resources, cfg.artifacts_secret)
    proxy = ProxyImage(cfg.worker_image, cfg.artifacts_uri, cfg.pvc_root)
    name = body["metadata"]["name"]  # the Service and the HPA are named after their owner
    service = _named(ix, "md_services", key, "Service", name, memory)
    _ensure(client.SERVICES, rollout.build_service(body, spec), service, memory)
    if decision.stable_model is not None:
        stable = rollout.build_serving_deployment(
            body,
            spec,
            rollout.STABLE,
            decision.stable_model,
            decision.stable_replicas,
            pvc_root,
            proxy,
            fetcher=fetcher,
        )
        _ensure(client.DEPLOYMENTS, stable, observed.stable, memory)
    elif (
        observed.stable is not None
        and decision.stable_replicas is not None
        and (observed.stable.get("spec") or {}).get("replicas") != decision.stable_replicas
    ):
        # The stable's pod template is kept (a canary runs, or a model is pending); only
        # its size follows spec.replicas.
        stable_name = observed.stable["metadata"]["name"]
        patched = client.patch(
            client.DEPLOYMENTS,
            namespace,
            stable_name,
            {"spec": {"replicas": decision.stable_replicas}},
        )
        if patched is not None:
            memory.remember_child("Deployment", stable_name, observed.stable, patched)
    if decision.canary is not None:
        canary = rollout.build_serving_deployment(
            body,
            spec,
            rollout.CANARY,
            decision.canary.model,
            decision.canary.replicas,
            pvc_root,
            proxy,
            fetcher=fetcher,
        )
        _ensure(client.DEPLOYMENTS, canary, observed.canary, memory)
    elif observed.canary is not None:
        canary_name = observed.canary["metadata"]["name"]
        # Scale to zero first so the pods leave the Service at once, then delete.
        scaled = client.patch(client.DEPLOYMENTS, namespace, canary_name, {"spec": {"replicas": 0}})
        client.delete(client.DEPLOYMENTS, namespace, canary_name)
        memory.remember_child(
            "Deployment",
            canary_name,
            observed.canary,
            None,
            also_replaced=[scaled] if scaled else [],
        )
    _ensure_analysis_job(key, body, decision, ix)
    hpa_now = _named(ix, "md_hpas", key, "HorizontalPodAutoscaler", name, memory)
    hpa = rollout.build_hpa(body, spec) if decision.autoscale else None
    if hpa is not None:
        _ensure(client.HPAS, hpa, hpa_now, memory)
    elif hpa_now is not None:
        client.delete(client.HPAS, namespace, name)
        memory.remember_child("HorizontalPodAutoscaler", name, hpa_now, None)


def _ensure_analysis_job(
    key: Key, body: Mapping[str, Any], decision: rollout.Decision, ix: _Indexes
) -> None:
    """Create the analysis Job the decision asks for (finished ones expire by TTL)."""
    plan = decision.analysis_job
    if plan is None:
        return
    meta = body["metadata"]
    if any(j["metadata"]["name"] == plan.name for j in ix.items("md_analysis_jobs", key)):
        return
    if client.get(client.JOBS, meta["namespace"], plan.name) is not None:
        return  # created a moment ago; the index has not caught up
    owner = {"apiVersion": API_VERSION, "kind": KIND, "metadata": meta}
    job = build_worker_job(
        owner,
        job_name=plan.name,
        component=canary_analysis.ANALYSIS_COMPONENT,
        worker_args=["analyze", *plan.args],
        config=config.worker_config(),
        active_deadline_seconds=canary_analysis.ANALYSIS_DEADLINE_SECONDS,
    )
    job["spec"]["ttlSecondsAfterFinished"] = canary_analysis.ANALYSIS_TTL_SECONDS
    client.create(client.JOBS, meta["namespace"], job)
    metrics.CHILDREN_CREATED.labels(KIND, "Job").inc()
    log.info("ModelDeployment %s/%s: analysis Job %s created", *key, plan.name)


# -------------------------------------------------------------------------------- triggers


@kopf.daemon(GROUP, VERSION, "modeldeployments", cancellation_timeout=5)
async def md_daemon(
    stopped: kopf.DaemonStopped, namespace: str | None, name: str, **kwargs: Any
) -> None:
    """One per ModelDeployment: reconcile, then wait until due again (or woken)."""
    key = _key(namespace, name)
    ix, memory = _Indexes(kwargs), _objects.get(key)
    await _daemons.run(key, stopped, lambda: reconcile_key(key, ix, memory))


@kopf.on.event(GROUP, VERSION, "modeldeployments")
async def md_event(
    type: str | None, body: kopf.Body, namespace: str | None, name: str, **_: Any
) -> None:
    """The ModelDeployment changed (or was listed): its daemon reconciles it."""
    key = _key(namespace, name)
    if type == "DELETED":
        _objects.forget(key)
        with contextlib.suppress(KeyError):
            metrics.CANARY_WEIGHT.remove(namespace, name)
        return
    if not body.get("metadata", {}).get("deletionTimestamp"):
        _daemons.wake(key)


async def _wake_owner(namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
    """A child changed: its owner's daemon reconciles."""
    _daemons.wake((namespace or "", labels[OWNER_LABEL]))


def _fetch_failed(body: kopf.Body, **_: Any) -> bool:
    return fetch_failure(body, rollout.REVISION_LABEL) is not None


#: The children whose events wake their owner: (id, group, version, plural, labels, filter).
CHILD_TRIGGERS: tuple[tuple[str, str, str, str, dict[str, Any], Any], ...] = (
    ("md_deployment_event", "apps", "v1", "deployments", CHILDREN, None),
    # e.g. a Service deleted by hand
    ("md_service_event", "", "v1", "services", CHILDREN, None),
    ("md_hpa_event", "autoscaling", "v2", "horizontalpodautoscalers", CHILDREN, None),
    # canary restarts
    ("md_canary_pod_event", "", "v1", "pods", CANARY_PODS, None),
    # a serving pod's model download failed (again)
    ("md_fetch_failure_event", "", "v1", "pods", CHILDREN, _fetch_failed),
    ("md_analysis_job_event", "batch", "v1", "jobs", ANALYSIS, None),
    # an analysis pod's termination message
    ("md_analysis_pod_event", "", "v1", "pods", ANALYSIS, None),
)
for _id, _group, _version, _plural, _labels, _when in CHILD_TRIGGERS:
    kopf.on.event(_group, _version, _plural, id=_id, labels=_labels, when=_when)(_wake_owner)


@kopf.on.event(GROUP, VERSION, "trainingjobs")
async def md_training_job_event(namespace: str | None, name: str, **kwargs: Any) -> None:
    """A TrainingJob changed: the ModelDeployments taking their model from it reconcile."""
    index = kwargs["md_by_training_job"]
    for md_name in list(index.get((namespace or "", name), ())):
        _daemons.wake(_key(namespace, md_name))
