"""kopf handlers of the ModelDeployment controller: read, decide (logic.rollout), act, report.

Triggers: the ModelDeployment itself, its Deployments / Service / HPA / canary Pods (by the
``kyklos.io/modeldeployment`` label) and referenced TrainingJobs (through an index of
ModelDeployments by ``model.fromTrainingJob``). Everything a reconcile reads comes from
kopf's in-memory indexes, so a settled object costs no API call.

Time (canary pauses, progress deadlines) is a requeue: each reconcile tells the
:class:`RequeueClock` when it next needs to look, and the clock's one thread reconciles the
object then (a newer decision replaces an older one). No polling.

Status is written before the children are changed, so a crash between the two repeats the
same decision (e.g. a rolled-back model is recorded in ``failedModel`` before its canary is
deleted, and is never retried). Because the indexes lag behind our own writes, the last status
and the children this controller wrote are remembered (for at most 30 s) and used until the
watch delivers them, so a reconcile never mixes a new status with an old child (which could
undo a canary step).
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import kopf
from pydantic import ValidationError

from kyklos.api.common import API_VERSION, ConditionStatus, ConditionType, Reason
from kyklos.api.deployment import ModelDeploymentSpec
from kyklos.controllers import client, config, metrics
from kyklos.controllers.status import emit
from kyklos.logic import analysis as canary_analysis
from kyklos.logic import rollout
from kyklos.logic.conditions import get_condition, set_condition, status_patch
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
#: Retry after a failed reconcile (and nothing else happens).
RETRY_SECONDS = 30.0
#: A remembered write is trusted this long at most (a watch lags by far less; an object
#: deleted by someone else must not be hidden for ever).
MEMO_SECONDS = 30.0

Key = tuple[str, str]  # (namespace, owner label value)


def _key(namespace: str | None, name: str) -> Key:
    return (namespace or "", label_value(name))


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(dict(body))


# --------------------------------------------------------------------------------- indexes


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


@kopf.index("apps", "v1", "deployments", labels=CHILDREN)
def md_deployments(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, Any]:
    """Serving Deployments by owner."""
    return {(namespace or "", labels[OWNER_LABEL]): _plain(body)}


@kopf.index("", "v1", "services", labels=CHILDREN)
def md_services(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, Any]:
    """Services by owner."""
    return {(namespace or "", labels[OWNER_LABEL]): _plain(body)}


@kopf.index("autoscaling", "v2", "horizontalpodautoscalers", labels=CHILDREN)
def md_hpas(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, Any]:
    """HPAs by owner."""
    return {(namespace or "", labels[OWNER_LABEL]): _plain(body)}


@kopf.index("", "v1", "pods", labels=CANARY_PODS)
def md_canary_pods(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, Any]:
    """Canary pods by owner: only their model label and restart counts."""
    statuses = (body.get("status") or {}).get("containerStatuses") or []
    return {
        (namespace or "", labels[OWNER_LABEL]): {
            "metadata": {"name": body["metadata"]["name"], "labels": dict(labels)},
            "status": {
                "containerStatuses": [{"restartCount": s.get("restartCount", 0)} for s in statuses]
            },
        }
    }


@kopf.index("", "v1", "pods", labels=CHILDREN)
def md_fetch_failures(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, Any] | None:
    """Serving pods whose model download failed: only why, and how often (none otherwise)."""
    failure = fetch_failure(body, rollout.REVISION_LABEL)
    if failure is None:
        return None
    return {(namespace or "", labels[OWNER_LABEL]): failure.to_index()}


@kopf.index("batch", "v1", "jobs", labels=ANALYSIS)
def md_analysis_jobs(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, Any]:
    """Analysis Jobs by owner: name and status."""
    return {
        (namespace or "", labels[OWNER_LABEL]): {
            "metadata": {"name": body["metadata"]["name"]},
            "status": copy.deepcopy(dict(body.get("status") or {})),
        }
    }


@kopf.index("", "v1", "pods", labels=ANALYSIS)
def md_analysis_pods(
    body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any
) -> dict[Key, Any]:
    """Analysis pods by owner: their Job and what they left in the termination message."""
    return {
        (namespace or "", labels[OWNER_LABEL]): {
            "metadata": {"labels": dict(labels)},
            "status": {
                "phase": (body.get("status") or {}).get("phase"),
                "containerStatuses": copy.deepcopy(
                    list((body.get("status") or {}).get("containerStatuses") or [])
                ),
            },
        }
    }


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
    """The live kopf indexes, captured from the first handler call (for the clock thread)."""

    def __init__(self) -> None:
        self.live: dict[str, Any] = {}

    def capture(self, kwargs: Mapping[str, Any]) -> None:
        if not self.live:
            self.live = {n: kwargs[n] for n in INDEX_NAMES if n in kwargs}

    def items(self, index: str, key: Any) -> list[Any]:
        store = self.live.get(index)
        if store is None or key not in store:
            return []
        return list(store[key])


indexes = _Indexes()


# ----------------------------------------------------------------------------------- clock


class RequeueClock:
    """Reconcile an object again after a delay; the newest request per object wins."""

    def __init__(self, callback: Callable[[Key], None]) -> None:
        self._callback = callback
        self._due: dict[Key, float] = {}
        self._heap: list[tuple[float, Key]] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopped = False

    def schedule(self, key: Key, delay: float | None) -> None:
        """Reconcile ``key`` in ``delay`` seconds (None: forget any earlier request)."""
        with self._cond:
            if delay is None:
                self._due.pop(key, None)
                return
            due = time.monotonic() + max(delay, 0.0)
            self._due[key] = due
            heapq.heappush(self._heap, (due, key))
            if self._thread is None:
                self._stopped = False
                self._thread = threading.Thread(
                    target=self._run, name="kyklos-rollout-clock", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def stop(self) -> None:
        """Stop the clock thread (operator shutdown)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=10)

    def _next(self) -> Key | None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                    heapq.heappop(self._heap)  # replaced or cancelled request
                if self._heap and self._heap[0][0] <= now:
                    _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    return key
                self._cond.wait(self._heap[0][0] - now if self._heap else None)
            return None

    def _run(self) -> None:
        while (key := self._next()) is not None:
            try:
                self._callback(key)
            except Exception:  # the callback logs its own failures; keep the clock alive
                log.exception("requeued reconcile of %s/%s failed", *key)


def _requeued(key: Key) -> None:
    for body in indexes.items("md_bodies", key):
        reconcile(body)


clock = RequeueClock(_requeued)


@kopf.on.cleanup()
def _stop_clock(**_: Any) -> None:
    clock.stop()


# ------------------------------------------------------------------------------- reconcile

_locks: dict[Key, threading.Lock] = {}
_locks_guard = threading.Lock()
#: Last status written per object: (resourceVersion of the write, status).
_written: dict[Key, tuple[str, dict[str, Any], float]] = {}


def _lock(key: Key) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _newer(candidate: str, than: str) -> bool:
    try:
        return int(candidate) > int(than)
    except ValueError:
        return candidate != than


def _effective_status(key: Key, body: Mapping[str, Any]) -> dict[str, Any]:
    """The body's status, or our own later write that the watch has not delivered yet."""
    stored = dict(body.get("status") or {})
    memo = _written.get(key)
    if memo is None:
        return stored
    rv = str((body.get("metadata") or {}).get("resourceVersion") or "")
    if rv == memo[0] or _newer(rv, memo[0]) or time.monotonic() > memo[2]:
        _written.pop(key, None)
        return stored
    return dict(memo[1])  # the whole status as written (removed keys stay removed)


def _write_status(
    key: Key, body: Mapping[str, Any], stored: Mapping[str, Any], desired: Mapping[str, Any]
) -> bool:
    """Patch ``/status`` with what differs from ``stored``; remember the write."""
    change = status_patch(stored, desired)
    if not change:
        return False
    meta = body["metadata"]
    result = client.patch(
        client.MODELDEPLOYMENTS, meta["namespace"], meta["name"], {"status": change}, status=True
    )
    if result is not None:
        merged = {k: v for k, v in {**stored, **desired}.items() if v is not None}
        rv = str(result["metadata"].get("resourceVersion") or "")
        _written[key] = (rv, merged, time.monotonic() + MEMO_SECONDS)
    return True


def reconcile(body: Mapping[str, Any]) -> None:
    """Reconcile one ModelDeployment; failures are logged, counted and retried later."""
    meta = body["metadata"]
    key = _key(meta["namespace"], meta["name"])
    with _lock(key):
        try:
            with metrics.reconcile_timer(KIND):
                delay = _reconcile(key, body)
        except Exception as exc:
            log.error("reconcile of ModelDeployment %s/%s failed: %s", *key, exc)
            delay = RETRY_SECONDS
    clock.schedule(key, delay)


#: Children as this controller last wrote them, until the watch delivers that version:
#: (kind, namespace, name) -> (resourceVersion, object; None once deleted).
_child_writes: dict[tuple[str, str, str], tuple[str, dict[str, Any] | None, float]] = {}


def _rv(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


def _remember(kind: str, namespace: str, name: str, obj: Mapping[str, Any] | None, rv: str) -> None:
    _child_writes[(kind, namespace, name)] = (
        rv,
        None if obj is None else dict(obj),
        time.monotonic() + MEMO_SECONDS,
    )


def _fresh(kind: str, namespace: str, name: str, indexed: Mapping[str, Any] | None) -> Any:
    """The indexed child, or our own later write of it that the watch has not delivered yet.

    Without this, a reconcile could combine a fresh status with a stale child (or the other
    way round) and undo the previous reconcile's step.
    """
    memo = _child_writes.get((kind, namespace, name))
    if memo is None:
        return indexed
    rv, written, expires = memo
    if time.monotonic() > expires:
        _child_writes.pop((kind, namespace, name), None)
        return indexed
    if written is None:  # we deleted it
        if indexed is None or _newer(_rv(indexed), rv):
            _child_writes.pop((kind, namespace, name), None)
            return indexed
        return None
    if indexed is not None and (_rv(indexed) == rv or _newer(_rv(indexed), rv)):
        _child_writes.pop((kind, namespace, name), None)
        return indexed
    return written


def _observed(key: Key, namespace: str, name: str) -> rollout.Observed:
    deployments = {d["metadata"]["name"]: d for d in indexes.items("md_deployments", key)}
    stable, canary = child_name(name, rollout.STABLE), child_name(name, rollout.CANARY)
    return rollout.Observed(
        stable=_fresh("Deployment", namespace, stable, deployments.get(stable)),
        canary=_fresh("Deployment", namespace, canary, deployments.get(canary)),
        canary_pods=indexes.items("md_canary_pods", key),
        fetch_failures=[
            FetchFailure.from_index(f) for f in indexes.items("md_fetch_failures", key)
        ],
        analysis_results=_analysis_results(key),
    )


def _analysis_results(key: Key) -> dict[str, rollout.AnalysisJobResult]:
    """Finished analysis Jobs: their summary, or why they left none."""
    pods = indexes.items("md_analysis_pods", key)
    out: dict[str, rollout.AnalysisJobResult] = {}
    for job in indexes.items("md_analysis_jobs", key):
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


def _reconcile(key: Key, body: Mapping[str, Any]) -> float | None:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    stored = _effective_status(key, body)
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        _invalid(key, body, stored, exc)
        return None
    job = None
    if spec.model.from_training_job:
        jobs = indexes.items("md_training_jobs", (namespace, spec.model.from_training_job))
        job = jobs[0] if jobs else None
    model = rollout.resolve_model(spec.model, job)
    observed = _observed(key, namespace, name)
    decision = rollout.decide(
        spec,
        model,
        observed,
        stored,
        datetime.now(UTC),
        name=name,
        namespace=namespace,
        generation=meta.get("generation"),
        artifacts_uri=config.current().artifacts_uri,
        request=canary_analysis.requested_action(meta),
    )
    if _write_status(key, body, stored, decision.status):
        _report(body, decision)
    metrics.CANARY_WEIGHT.labels(namespace, name).set(rollout.canary_weight_of(decision.status))
    _act(key, body, spec, decision, observed)
    return decision.requeue_after


def _report(body: Mapping[str, Any], decision: rollout.Decision) -> None:
    namespace = body["metadata"]["namespace"]
    for event in decision.events:
        log.info("ModelDeployment %s/%s: %s", namespace, body["metadata"]["name"], event.message)
        emit(body, event.reason, event.message, warning=event.warning)
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
    res: client.Resource, desired: Mapping[str, Any], actual: Mapping[str, Any] | None
) -> None:
    if _differs(desired, actual):
        obj, action = client.apply(res, desired, owner_kind=KIND)
        if action != "unchanged":
            meta = desired["metadata"]
            _remember(res.kind, meta["namespace"], meta["name"], obj, _rv(obj))


def _act(
    key: Key,
    body: Mapping[str, Any],
    spec: ModelDeploymentSpec,
    decision: rollout.Decision,
    observed: rollout.Observed,
) -> None:
    """Make the children match the decision (only what differs from the indexed copies)."""
    namespace = body["metadata"]["namespace"]
    cfg = config.current()
    pvc_root = cfg.pvc_root
    fetcher = ModelFetcher(cfg.worker_image, cfg.worker_resources, cfg.artifacts_secret)
    proxy = ProxyImage(cfg.worker_image, cfg.artifacts_uri, cfg.pvc_root)
    services = indexes.items("md_services", key)
    _ensure(client.SERVICES, rollout.build_service(body, spec), services[0] if services else None)
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
        _ensure(client.DEPLOYMENTS, stable, observed.stable)
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
            _remember("Deployment", namespace, stable_name, patched, _rv(patched))
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
        _ensure(client.DEPLOYMENTS, canary, observed.canary)
    elif observed.canary is not None:
        canary_name = observed.canary["metadata"]["name"]
        # Scale to zero first so the pods leave the Service at once, then delete.
        scaled = client.patch(client.DEPLOYMENTS, namespace, canary_name, {"spec": {"replicas": 0}})
        client.delete(client.DEPLOYMENTS, namespace, canary_name)
        _remember("Deployment", namespace, canary_name, None, _rv(scaled or observed.canary))
    _ensure_analysis_job(key, body, decision)
    hpas = indexes.items("md_hpas", key)
    hpa = rollout.build_hpa(body, spec) if decision.autoscale else None
    if hpa is not None:
        _ensure(client.HPAS, hpa, hpas[0] if hpas else None)
    elif hpas:
        client.delete(client.HPAS, namespace, hpas[0]["metadata"]["name"])


def _ensure_analysis_job(key: Key, body: Mapping[str, Any], decision: rollout.Decision) -> None:
    """Create the analysis Job the decision asks for (finished ones expire by TTL)."""
    plan = decision.analysis_job
    if plan is None:
        return
    meta = body["metadata"]
    if any(j["metadata"]["name"] == plan.name for j in indexes.items("md_analysis_jobs", key)):
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


def _invalid(
    key: Key, body: Mapping[str, Any], stored: Mapping[str, Any], exc: ValidationError
) -> None:
    """A spec the CRD let through but the model rejects: Ready=False InvalidSpec, no children."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first.get("loc", ())) or "spec"
    message = f"spec.{where}: {first.get('msg', 'invalid')}"
    previous = get_condition(stored.get("conditions"), ConditionType.READY) or {}
    now = datetime.now(UTC)
    generation = body["metadata"].get("generation")
    conditions = set_condition(
        stored.get("conditions"),
        type=ConditionType.READY,
        status=ConditionStatus.FALSE,
        reason=Reason.INVALID_SPEC,
        message=message,
        generation=generation,
        now=now,
    )
    desired = {"observedGeneration": generation, "conditions": conditions}
    _write_status(key, body, stored, desired)
    if previous.get("reason") != Reason.INVALID_SPEC or previous.get("message") != message:
        emit(body, Reason.INVALID_SPEC, message, warning=True)


# -------------------------------------------------------------------------------- triggers


def _reconcile_owners(keys: Iterable[Key], kwargs: Mapping[str, Any]) -> None:
    indexes.capture(kwargs)
    for key in keys:
        for body in indexes.items("md_bodies", key):
            reconcile(body)


@kopf.on.event(GROUP, VERSION, "modeldeployments")
def md_event(
    type: str | None, body: kopf.Body, namespace: str | None, name: str, **kwargs: Any
) -> None:
    """The ModelDeployment changed (or was listed): reconcile it."""
    indexes.capture(kwargs)
    key = _key(namespace, name)
    if type == "DELETED" or body.get("metadata", {}).get("deletionTimestamp"):
        clock.schedule(key, None)
        _written.pop(key, None)
        with contextlib.suppress(KeyError):
            metrics.CANARY_WEIGHT.remove(namespace, name)
        return
    reconcile(_plain(body))


@kopf.on.event("apps", "v1", "deployments", labels=CHILDREN)
def md_deployment_event(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    """A serving Deployment changed: reconcile its owner."""
    _reconcile_owners([(namespace or "", labels[OWNER_LABEL])], kwargs)


@kopf.on.event("", "v1", "services", labels=CHILDREN)
def md_service_event(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    """A Service changed (e.g. deleted by hand): reconcile its owner."""
    _reconcile_owners([(namespace or "", labels[OWNER_LABEL])], kwargs)


@kopf.on.event("autoscaling", "v2", "horizontalpodautoscalers", labels=CHILDREN)
def md_hpa_event(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    """An HPA changed: reconcile its owner."""
    _reconcile_owners([(namespace or "", labels[OWNER_LABEL])], kwargs)


@kopf.on.event("", "v1", "pods", labels=CANARY_PODS)
def md_canary_pod_event(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    """A canary pod changed (restarts): reconcile its owner."""
    _reconcile_owners([(namespace or "", labels[OWNER_LABEL])], kwargs)


def _fetch_failed(body: kopf.Body, **_: Any) -> bool:
    return fetch_failure(body, rollout.REVISION_LABEL) is not None


@kopf.on.event("", "v1", "pods", labels=CHILDREN, when=_fetch_failed)
def md_fetch_failure_event(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    """A serving pod's model download failed (again): reconcile its owner."""
    _reconcile_owners([(namespace or "", labels[OWNER_LABEL])], kwargs)


@kopf.on.event("batch", "v1", "jobs", labels=ANALYSIS)
def md_analysis_job_event(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    """An analysis Job changed: reconcile its owner."""
    _reconcile_owners([(namespace or "", labels[OWNER_LABEL])], kwargs)


@kopf.on.event("", "v1", "pods", labels=ANALYSIS)
def md_analysis_pod_event(namespace: str | None, labels: kopf.Labels, **kwargs: Any) -> None:
    """An analysis pod changed (its termination message): reconcile its owner."""
    _reconcile_owners([(namespace or "", labels[OWNER_LABEL])], kwargs)


@kopf.on.event(GROUP, VERSION, "trainingjobs")
def md_training_job_event(namespace: str | None, name: str, **kwargs: Any) -> None:
    """A TrainingJob changed: reconcile the ModelDeployments taking their model from it."""
    indexes.capture(kwargs)
    names = indexes.items("md_by_training_job", (namespace or "", name))
    _reconcile_owners([_key(namespace, n) for n in names], kwargs)
