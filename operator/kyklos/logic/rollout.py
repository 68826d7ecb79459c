"""ModelDeployment: serving children (pure builders) and the rollout state machine.

Children of ModelDeployment ``<name>``:

- Deployment ``<name>-stable`` serving the stable model;
- Deployment ``<name>-canary`` serving the new model, only while a canary runs;
- Service ``<name>`` selecting the pods of both, so traffic splits by ready-replica ratio;
- HorizontalPodAutoscaler ``<name>`` (autoscaling/v2, on the stable Deployment) when
  ``spec.autoscaling`` is set.

The model of a Deployment is read back from its pod template's annotations
(``kyklos.io/model-uri``, ``kyklos.io/model-version``, ``kyklos.io/revision``): what runs is
observed, never remembered. A rollout's identity is its **revision**, a digest of the model
(URI and version) and ``spec.runtime``: a new model *or* a new server image/config goes
through the strategy, and the stable Deployment's pod template changes only when a
rollout replaces it (first deployment, RollingUpdate, promotion). Outside that, only its
replica count follows the spec.

**Canary replica rounding.** The stable Deployment keeps its full replica count R during a
canary (so a failed canary never modifies it), and the canary runs beside it sized so that
its share of the serving pods, ``canary / (R + canary)``, is the step's weight:
``max(1, round_half_up(R * weight / (100 - weight)))`` replicas, R being the stable's
desired count (the HPA's when autoscaling). At 100 % the canary matches R and is then
promoted. With R = 4: 10 % -> 1 canary (20 % of pods: at least one), 25 % -> 1 (20 %),
50 % -> 4 (50 %), 75 % -> 12 (75 %). The price of never touching the stable is the extra
pods a high weight needs; choose steps accordingly. Scaling ``replicas`` mid-canary
rescales the canary to keep the share. Traffic follows ready pods, since the one Service
selects both Deployments.

**Rollout** (:func:`decide`):

- First deployment (no stable Deployment): the stable gets the model directly;
  Progressing -> Available when its ready replicas reach the desired count, Degraded when
  not within ``progressDeadlineSeconds``. A missing stable is recreated the same way.
- ``RollingUpdate``: a new model updates the stable Deployment in place; Progressing until
  the Deployment reports every replica updated and ready, Degraded past the deadline.
- ``Canary``: a new model starts ``<name>-canary`` at step 0. Each step sets the canary's
  replicas from the step's weight, waits until the canary is Ready (pause counted from
  then: ``status.stepStartTime``), holds for the step's pause, then advances. After the
  last step the stable Deployment takes the new model (promotion) and, once every stable
  replica is updated and ready, the canary is removed: outcome Promoted.
- A canary step not Ready within ``progressDeadlineSeconds`` of its start
  (``status.rolloutStartTime``), or a canary container of the new model restarting more
  than ``maxCanaryRestarts`` times, fails the canary. With ``autoRollback`` the canary is
  scaled to zero and deleted, ``failedModel`` records the model (it is not retried), phase
  RolledBack, Warning Event RolledBack naming the model and cause. The stable Deployment
  is not touched. Without ``autoRollback`` the canary is left running, phase Degraded.
- With ``strategy.analysis`` (or a step's own), a held step is judged before it advances
  (``kyklos.logic.analysis``): once the last request-log flush of the window
  ``[stepStartTime + pause - window, stepStartTime + pause]`` is written, one analysis Job
  per (revision, step, window) runs; its verdict is appended to ``status.analysis`` and
  Pass advances, Fail follows ``onFailure`` (Rollback as above, or Pause), Inconclusive
  ``onInconclusive``. A paused canary (``status.paused``) and a ``pause: manual`` step have
  phase Paused and wait for ``kyklos rollout promote|resume|abort`` (the
  ``kyklos.io/rollout-action`` annotation, each value carried out once and recorded in the
  rollout's ``history[].actions``). Abort rolls back even without ``autoRollback``.
- A model changed mid-canary restarts the canary at step 0 with the newest model (the old
  rollout's history outcome: Superseded; Event CanaryRestarted). Changed back to the stable
  model, the canary is removed (Superseded).
- Starting a rollout (rolling update or canary) ends every other rollout still InProgress
  as Superseded, e.g. a first deployment not yet rolled out when a new model's canary
  starts: every started rollout ends Promoted, RolledBack, Degraded or Superseded.
- A model not resolvable yet (``fromTrainingJob`` not accepted) leaves the stable
  untouched, removes any canary, and sets phase Pending, Ready=False reason ModelNotReady.

**Status meanings** (the DriftMonitor relies on these):

- ``stableModel``: URI of the model fully rolled out on ``<name>-stable`` (every replica
  updated and ready at least once). A model is promoted exactly when ``stableModel`` equals
  it and ``canaryModel`` is unset.
- ``canaryModel`` / ``canaryWeight`` / ``step``: the running canary, unset otherwise.
- ``failedModel`` / ``failedRevision``: URI and revision of the last rollout rolled back;
  that revision is never retried automatically (a different model or runtime starts a
  fresh canary; setting the stable revision again settles).
- ``phase``: Pending (no model yet), Progressing (rollout or replicas not ready),
  Available (the spec's model serves on every desired replica), Degraded (deadline
  exceeded, or a failing canary without autoRollback), RolledBack (the spec's model was
  rolled back; the stable model still serves).
- ``history``: the last 10 rollouts, outcome InProgress | Promoted | RolledBack |
  Superseded | Degraded.
- Conditions: ``Ready`` is True exactly in phase Available; ``Progressing`` True while a
  rollout runs; ``Degraded`` True in phases Degraded and RolledBack.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kyklos.api.common import ConditionStatus, ConditionType, Reason
from kyklos.api.deployment import (
    MANUAL_PAUSE,
    MAX_ACTIONS,
    MAX_ANALYSES,
    MAX_HISTORY,
    Analysis,
    DeploymentPhase,
    ModelDeploymentSpec,
    ModelSource,
    RolloutOutcome,
    StrategyType,
    Verdict,
)
from kyklos.api.serving import AnalysisSummary, AnalyzeArgs
from kyklos.logic import analysis as canary_analysis
from kyklos.logic.analysis import AnalysisJobPlan, RequestedAction
from kyklos.logic.conditions import (
    Event,
    SpecRejection,
    get_condition,
    rfc3339,
    set_condition,
    validate_spec,
)
from kyklos.logic.durations import duration_seconds
from kyklos.logic.modelfetch import (
    FetchFailure,
    ModelFetcher,
    failure_of_revision,
    needs_fetch,
    with_model_fetch,
)
from kyklos.logic.naming import child_labels, child_name, label_value, owner_reference
from kyklos.logic.podspec import (
    WORKER_UID,
    claim_of,
    claim_volumes,
    restricted_container_security,
    restricted_pod_security,
    tmp_volume,
)
from kyklos.logic.podtemplate import apply_pod_template
from kyklos.logic.redaction import redact
from kyklos.logic.serving import ProxyImage, add_proxy_sidecar

KIND = "ModelDeployment"
STABLE = "stable"
CANARY = "canary"
CONTAINER = "server"
PORT_NAME = "http"

MODEL_URI_ANNOTATION = "kyklos.io/model-uri"
MODEL_VERSION_ANNOTATION = "kyklos.io/model-version"
#: Pod label telling pods of different revisions apart (restart counts of an older canary
#: revision must not fail a newer one).
REVISION_LABEL = "kyklos.io/revision"
REVISION_ANNOTATION = REVISION_LABEL

ENV_MODEL_URI = "KYKLOS_MODEL_URI"
ENV_MODEL_VERSION = "KYKLOS_MODEL_VERSION"
ENV_PVC_ROOT = "KYKLOS_PVC_ROOT"
RESERVED_ENV = frozenset({ENV_MODEL_URI, ENV_MODEL_VERSION, ENV_PVC_ROOT})

#: Model servers run as the Kyklos image's own user (one UID for every pod Kyklos builds).
RUN_AS_USER = WORKER_UID

# ----------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to serve: its URI (identity) and version label."""

    uri: str
    version: str


@dataclass(frozen=True)
class ModelNotReady:
    """Why the spec's model cannot be served yet (message names the TrainingJob and why)."""

    message: str
    #: Whether it needs a person (job missing, failed, rejected; bad URI) rather than time.
    warning: bool = True


def model_hash(uri: str) -> str:
    """A short stable digest of a model URI (label values cannot hold URIs)."""
    return hashlib.sha256(uri.encode()).hexdigest()[:12]


def _training_job_accepted(tj: Mapping[str, Any]) -> ModelNotReady | None:
    """None when a TrainingJob's model is accepted, else why not."""
    name = (tj.get("metadata") or {}).get("name", "?")
    status = tj.get("status") or {}
    phase = status.get("phase") or "Pending"
    conditions = status.get("conditions") or []
    accepted = get_condition(conditions, ConditionType.MODEL_ACCEPTED)
    if phase == "Failed":
        ready = get_condition(conditions, ConditionType.READY) or {}
        why = ready.get("message") or ready.get("reason") or "no reason given"
        return ModelNotReady(f"TrainingJob {name} failed: {why}")
    if accepted is not None and accepted.get("status") == ConditionStatus.FALSE:
        why = accepted.get("message") or accepted.get("reason") or "no reason given"
        return ModelNotReady(f"TrainingJob {name}'s model was rejected: {why}")
    if phase != "Succeeded":
        return ModelNotReady(
            f"TrainingJob {name} is {phase}; waiting for an accepted model", warning=False
        )
    if not status.get("modelUri"):
        return ModelNotReady(f"TrainingJob {name} succeeded but reports no status.modelUri")
    if accepted is not None and accepted.get("status") == ConditionStatus.TRUE:
        return None
    # Without an evaluation gate, Succeeded is enough (the TrainingJob controller then
    # writes ModelAccepted=True reason NoEvaluation; an older status may lack it).
    if accepted is None and not (tj.get("spec") or {}).get("evaluation"):
        return None
    return ModelNotReady(
        f"TrainingJob {name} succeeded; waiting for the evaluation verdict (ModelAccepted)",
        warning=False,
    )


def resolve_model(
    source: ModelSource, training_job: Mapping[str, Any] | None
) -> ResolvedModel | ModelNotReady:
    """The model to serve: ``uri``, or the TrainingJob's accepted ``status.modelUri``.

    The version is ``model.version``, else ``<job>-<run>`` for a TrainingJob's model, else
    a 12-hex digest of the URI.
    """
    if source.uri is not None:
        uri = source.uri
    else:
        found = _training_job_model(source, training_job)
        if isinstance(found, ModelNotReady):
            return found
        uri, version = found
        return _checked(ResolvedModel(uri, source.version or version))
    return _checked(ResolvedModel(uri, source.version or model_hash(uri)))


def _checked(model: ResolvedModel) -> ResolvedModel | ModelNotReady:
    """The model, unless its pvc:// URI cannot be mounted (never a half-built Deployment)."""
    try:
        claim_of(model.uri, "model.uri")
    except ValueError as exc:
        return ModelNotReady(str(exc))
    return model


def _training_job_model(
    source: ModelSource, training_job: Mapping[str, Any] | None
) -> tuple[str, str] | ModelNotReady:
    """The accepted model URI of the TrainingJob and its default version ``<job>-<run>``."""
    job = source.from_training_job or ""
    if training_job is None:
        return ModelNotReady(f"model.fromTrainingJob: TrainingJob {job} not found")
    why = _training_job_accepted(training_job)
    if why is not None:
        return ModelNotReady(f"model.fromTrainingJob: {why.message}", why.warning)
    status = training_job.get("status") or {}
    run = status.get("run")
    return str(status["modelUri"]), (f"{job}-{run}" if run else job)


def revision(model: ResolvedModel, spec: ModelDeploymentSpec) -> str:
    """The rollout identity: a 10-hex digest of the model and the runtime."""
    runtime = spec.runtime.model_dump(mode="json", by_alias=True, exclude_none=True)
    text = json.dumps(
        {"uri": model.uri, "version": model.version, "runtime": runtime}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def deployment_revision(deployment: Mapping[str, Any] | None) -> str | None:
    """The revision a serving Deployment's pod template carries."""
    template_meta = (((deployment or {}).get("spec") or {}).get("template") or {}).get(
        "metadata"
    ) or {}
    value = (template_meta.get("annotations") or {}).get(REVISION_ANNOTATION)
    return str(value) if value else None


def deployment_model(deployment: Mapping[str, Any] | None) -> ResolvedModel | None:
    """The model a serving Deployment's pod template carries (from its annotations)."""
    if deployment is None:
        return None
    template_meta = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    annotations = template_meta.get("annotations") or {}
    uri = annotations.get(MODEL_URI_ANNOTATION)
    if not uri:
        return None
    return ResolvedModel(str(uri), str(annotations.get(MODEL_VERSION_ANNOTATION) or ""))


# ------------------------------------------------------------------------------ builders


def canary_replicas(total: int, weight: int) -> int:
    """Canary replicas beside ``total`` stable ones making ``weight`` % of all pods.

    Round half up, at least one; at 100 % the canary matches the stable (then promoted).
    """
    if weight >= 100:
        return max(1, total)
    return max(1, math.floor(total * weight / (100 - weight) + 0.5))


def service_url(name: str, namespace: str, port: int) -> str:
    """In-cluster URL of the ModelDeployment's Service."""
    return f"http://{name}.{namespace}.svc:{port}"


def serving_selector(name: str) -> str:
    """The label selector of all serving pods as a string: the scale subresource's
    ``status.selector``, which an HPA uses to find the pods it averages over."""
    return ",".join(f"{key}={value}" for key, value in sorted(selector_labels(name).items()))


def _owner_meta(owner: Mapping[str, Any], name: str, component: str | None) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "name": name,
        "namespace": meta["namespace"],
        "labels": child_labels(KIND, meta["name"], component),
        "ownerReferences": [owner_reference(owner)],
    }


def selector_labels(owner_name: str, component: str | None = None) -> dict[str, str]:
    """Labels selecting the serving pods (of one component, or of both for the Service)."""
    return child_labels(KIND, owner_name, component)


def _with_fetch(
    pod: dict[str, Any],
    spec: ModelDeploymentSpec,
    model: ResolvedModel,
    fetcher: ModelFetcher | None,
) -> dict[str, Any]:
    """The pod with the model-download init container when the model lives in a store."""
    if fetcher is None or not needs_fetch(model.uri):
        return pod
    secret = spec.model.secret_ref.name if spec.model.secret_ref else None
    if secret is None and spec.model.from_training_job:
        secret = fetcher.artifacts_secret  # the trainer wrote it to the artifact store
    return with_model_fetch(pod, model.uri, fetcher, CONTAINER, secret)


def build_serving_deployment(
    owner: Mapping[str, Any],
    spec: ModelDeploymentSpec,
    component: str,
    model: ResolvedModel,
    replicas: int | None,
    pvc_root: str,
    proxy: ProxyImage | None = None,
    *,
    fetcher: ModelFetcher | None = None,
) -> dict[str, Any]:
    """The ``<name>-stable`` or ``<name>-canary`` Deployment serving ``model``.

    ``replicas`` None leaves the count to the HPA (the field is then not managed). With
    ``proxy`` and ``spec.observability.proxy``, the pods run ``kyklos proxy`` in front of
    the server (``kyklos.logic.serving``). With a ``fetcher``, an s3/gs/http(s) model is
    downloaded by an init container (``kyklos.logic.modelfetch``).
    """
    name = owner["metadata"]["name"]
    runtime = spec.runtime
    annotations = {MODEL_URI_ANNOTATION: model.uri, MODEL_VERSION_ANNOTATION: model.version}
    env = [
        {"name": ENV_MODEL_URI, "value": model.uri},
        {"name": ENV_MODEL_VERSION, "value": model.version},
    ]
    tmp, tmp_mount = tmp_volume()
    volumes: list[dict[str, Any]] = [tmp]
    mounts: list[dict[str, Any]] = [tmp_mount]
    # resolve_model() already rejected malformed pvc:// URIs.
    claim = claim_of(model.uri, "model.uri")
    if claim:
        env.append({"name": ENV_PVC_ROOT, "value": pvc_root})
        claim_vols, claim_mounts = claim_volumes({claim: True}, pvc_root)
        volumes += claim_vols
        mounts += claim_mounts
    env.extend(
        {"name": k, "value": v}
        for k, v in sorted((runtime.env or {}).items())
        if k not in RESERVED_ENV
    )
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": runtime.image,
        "env": env,
        "ports": [{"name": PORT_NAME, "containerPort": runtime.port, "protocol": "TCP"}],
        "readinessProbe": {
            "httpGet": {"path": runtime.health_path, "port": PORT_NAME},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": restricted_container_security(RUN_AS_USER),
        "volumeMounts": mounts,
    }
    if runtime.command:
        container["command"] = list(runtime.command)
    if runtime.args:
        container["args"] = list(runtime.args)
    if runtime.resources:
        container["resources"] = runtime.resources.model_dump(by_alias=True, exclude_none=True)
    rev = revision(model, spec)
    template_annotations = {**annotations, REVISION_ANNOTATION: rev}
    pod_labels = {**selector_labels(name, component), REVISION_LABEL: rev}
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": selector_labels(name, component)},
        "progressDeadlineSeconds": spec.progress_deadline_seconds,
        "revisionHistoryLimit": 3,
        # Never below the desired count while the model changes: a model server takes a
        # while to load, and capacity must hold.
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"},
        },
        "template": apply_pod_template(
            _with_fetch(
                {
                    "metadata": {"labels": pod_labels, "annotations": template_annotations},
                    "spec": {
                        "automountServiceAccountToken": False,
                        # No fsGroup: the model's claim is mounted read-only.
                        "securityContext": restricted_pod_security(RUN_AS_USER, fs_group=False),
                        "containers": [container],
                        "volumes": volumes,
                    },
                },
                spec,
                model,
                fetcher,
            ),
            runtime.template,
            CONTAINER,
        ),
    }
    if replicas is not None:
        deployment_spec = {"replicas": replicas, **deployment_spec}
    metadata = _owner_meta(owner, child_name(name, component), component)
    metadata["annotations"] = annotations
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": deployment_spec,
    }
    if proxy is not None and spec.observability.proxy:
        add_proxy_sidecar(deployment, owner, spec, component, rev, proxy)
    return deployment


def build_service(owner: Mapping[str, Any], spec: ModelDeploymentSpec) -> dict[str, Any]:
    """Service ``<name>`` selecting the stable and canary pods alike."""
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _owner_meta(owner, name, "service"),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name),
            "ports": [
                {
                    "name": PORT_NAME,
                    "port": spec.runtime.port,
                    "targetPort": PORT_NAME,
                    "protocol": "TCP",
                }
            ],
        },
    }


def build_hpa(owner: Mapping[str, Any], spec: ModelDeploymentSpec) -> dict[str, Any] | None:
    """autoscaling/v2 HPA ``<name>`` on the stable Deployment (None without autoscaling)."""
    scaling = spec.autoscaling
    if scaling is None:
        return None
    name = owner["metadata"]["name"]
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _owner_meta(owner, name, "autoscaler"),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": child_name(name, STABLE),
            },
            "minReplicas": scaling.min_replicas,
            "maxReplicas": scaling.max_replicas,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {
                            "type": "Utilization",
                            "averageUtilization": scaling.target_cpu_utilization,
                        },
                    },
                }
            ],
        },
    }


# ------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class Observed:
    """The serving children as last seen: Deployments and the canary's pods."""

    stable: Mapping[str, Any] | None = None
    canary: Mapping[str, Any] | None = None
    canary_pods: Sequence[Mapping[str, Any]] = ()
    #: serving pods whose model download failed (kyklos.logic.modelfetch)
    fetch_failures: Sequence[FetchFailure] = ()
    #: Analysis Jobs by name: their termination message (None while running), or a
    #: failure when the Job ended without one.
    analysis_results: Mapping[str, AnalysisJobResult] = field(default_factory=dict)


@dataclass(frozen=True)
class AnalysisJobResult:
    """What an analysis Job left: its summary text, or why it has none (None: running)."""

    message: str | None = None
    failure: str | None = None


def ready_replicas(deployment: Mapping[str, Any] | None) -> int:
    """Ready pods of a Deployment (0 when absent)."""
    if deployment is None:
        return 0
    return int((deployment.get("status") or {}).get("readyReplicas") or 0)


def rolled_out(deployment: Mapping[str, Any] | None, want: int | None = None) -> bool:
    """Whether every replica of the Deployment's current template is updated and ready.

    ``want`` (when given) must also be the Deployment's replica count.
    """
    if deployment is None:
        return False
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    replicas = int(spec.get("replicas", 1))
    if want is not None and replicas != want:
        return False
    generation = int((deployment.get("metadata") or {}).get("generation") or 0)
    return (
        int(status.get("observedGeneration") or 0) >= generation
        and int(status.get("updatedReplicas") or 0) >= replicas
        and int(status.get("readyReplicas") or 0) >= replicas
        and int(status.get("replicas") or 0) <= replicas
    )


def deadline_exceeded_by_controller(deployment: Mapping[str, Any] | None) -> bool:
    """Whether the Deployment controller reports ProgressDeadlineExceeded."""
    condition = get_condition(
        ((deployment or {}).get("status") or {}).get("conditions"), "Progressing"
    )
    return bool(
        condition
        and condition.get("status") == "False"
        and condition.get("reason") == "ProgressDeadlineExceeded"
    )


def revision_restarts(pods: Sequence[Mapping[str, Any]], rev: str) -> int:
    """The highest container restart count among pods of revision ``rev``."""
    return max(
        (
            int(s.get("restartCount") or 0)
            for pod in pods
            if ((pod.get("metadata") or {}).get("labels") or {}).get(REVISION_LABEL) == rev
            for s in (pod.get("status") or {}).get("containerStatuses") or []
        ),
        default=0,
    )


# -------------------------------------------------------------------------- the decision


@dataclass(frozen=True)
class CanaryPlan:
    """The canary Deployment to run."""

    model: ResolvedModel
    replicas: int


@dataclass(frozen=True)
class RolloutMetric:
    """A rollout counter increment: a rollout started, or how one ended.

    ``event``: ``started``, ``promoted``, ``rolled_back``, ``degraded`` or ``superseded``;
    ``seconds`` is the rollout's duration when it ended.
    """

    event: str
    seconds: float | None = None


@dataclass
class Decision:
    """The desired children, the whole status, and what to report."""

    status: dict[str, Any]
    #: Model to (re)build ``<name>-stable`` with, from the current runtime. None: keep the
    #: observed stable's pod template (only its replicas follow the spec), or none exists.
    stable_model: ResolvedModel | None
    #: Replicas of the stable Deployment (None: left to the HPA).
    stable_replicas: int | None
    #: The canary to run (None: ``<name>-canary`` must not exist).
    canary: CanaryPlan | None
    #: Whether an HPA should exist.
    autoscale: bool
    events: list[Event] = field(default_factory=list)
    metrics: list[RolloutMetric] = field(default_factory=list)
    #: Reconcile again after this many seconds even if nothing changes (pause, deadline).
    requeue_after: float | None = None
    #: The analysis Job to run (None: no analysis Job must exist).
    analysis_job: AnalysisJobPlan | None = None
    #: Verdicts recorded by this decision (for kyklos_canary_analysis_total).
    verdicts: list[str] = field(default_factory=list)

    @property
    def phase(self) -> str:
        return str(self.status["phase"])

    @property
    def conditions(self) -> list[dict[str, Any]]:
        return list(self.status["conditions"])


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def _seconds_since(text: Any, now: datetime) -> float | None:
    moment = _parse_time(text)
    return None if moment is None else (now - moment).total_seconds()


class _History:
    """The bounded rollout history (newest last)."""

    def __init__(self, records: Sequence[Mapping[str, Any]] | None) -> None:
        self.records: list[dict[str, Any]] = [dict(r) for r in records or ()]

    def current(self, uri: str) -> dict[str, Any] | None:
        """The newest InProgress record of ``uri``."""
        matches = [
            r
            for r in self.records
            if r.get("model") == uri and r.get("outcome") == RolloutOutcome.IN_PROGRESS.value
        ]
        return matches[-1] if matches else None

    def last_outcome(self, uri: str) -> str | None:
        """The outcome of the newest record of ``uri``."""
        outcomes = [str(r.get("outcome")) for r in self.records if r.get("model") == uri]
        return outcomes[-1] if outcomes else None

    def start(self, uri: str, strategy: str, now: datetime) -> None:
        self.records.append(
            {
                "model": uri,
                "strategy": strategy,
                "outcome": RolloutOutcome.IN_PROGRESS.value,
                "startTime": rfc3339(now),
            }
        )
        del self.records[: max(0, len(self.records) - MAX_HISTORY)]

    def end(self, uri: str, outcome: RolloutOutcome, now: datetime, message: str) -> float | None:
        """Close the InProgress record of ``uri``; its duration in seconds (None if none)."""
        record = self.current(uri)
        if record is None:
            return None
        return _close(record, outcome, now, message)

    def supersede_others(
        self, uri: str, strategy: str, now: datetime, message: str
    ) -> list[float | None]:
        """Close as Superseded every InProgress record but ``uri``'s by ``strategy``.

        Their durations in seconds (None where a record has no readable start time).
        """
        return [
            _close(record, RolloutOutcome.SUPERSEDED, now, message)
            for record in self.records
            if record.get("outcome") == RolloutOutcome.IN_PROGRESS.value
            and (record.get("model"), record.get("strategy")) != (uri, strategy)
        ]


def _close(
    record: dict[str, Any], outcome: RolloutOutcome, now: datetime, message: str
) -> float | None:
    """End the history ``record`` with ``outcome``; its duration in seconds."""
    record["outcome"] = outcome.value
    record["endTime"] = rfc3339(now)
    record["message"] = message[:1024]
    return _seconds_since(record.get("startTime"), now)


def _conditions(
    previous: Sequence[Mapping[str, Any]] | None,
    phase: DeploymentPhase,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
    degraded_reason: str | None = None,
) -> list[dict[str, Any]]:
    """Ready / Progressing / Degraded for ``phase`` (see the module docstring)."""
    available = phase == DeploymentPhase.AVAILABLE
    progressing = phase == DeploymentPhase.PROGRESSING
    degraded = phase in (DeploymentPhase.DEGRADED, DeploymentPhase.ROLLED_BACK)
    out = set_condition(
        previous,
        type=ConditionType.READY,
        status=ConditionStatus.TRUE if available else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        generation=generation,
        now=now,
    )
    out = set_condition(
        out,
        type=ConditionType.PROGRESSING,
        status=ConditionStatus.TRUE if progressing else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        generation=generation,
        now=now,
    )
    return set_condition(
        out,
        type=ConditionType.DEGRADED,
        status=ConditionStatus.TRUE if degraded else ConditionStatus.FALSE,
        reason=degraded_reason or reason,
        message=message,
        generation=generation,
        now=now,
    )


def _desired_replicas(spec: ModelDeploymentSpec, stable: Mapping[str, Any] | None) -> int:
    if spec.autoscaling is None:
        return spec.replicas
    observed = (stable or {}).get("spec", {}).get("replicas")
    return int(observed) if observed is not None else spec.autoscaling.min_replicas


def parse_spec(
    body: Mapping[str, Any], now: datetime
) -> tuple[ModelDeploymentSpec, None] | tuple[None, SpecRejection]:
    """The ModelDeployment's spec, or (None, Ready=False InvalidSpec naming the field).

    No phase: what runs keeps running (and no child is touched) until the spec is fixed.
    """
    return validate_spec(ModelDeploymentSpec, body, now)


def decide(
    spec: ModelDeploymentSpec,
    model: ResolvedModel | ModelNotReady,
    observed: Observed,
    status: Mapping[str, Any] | None,
    now: datetime,
    *,
    name: str,
    namespace: str,
    generation: int | None,
    artifacts_uri: str = "",
    request: RequestedAction | None = None,
) -> Decision:
    """The rollout state machine: (spec, model, observed children, status, now) -> decision.

    ``artifacts_uri`` is where the proxies write request logs (for analysis Jobs);
    ``request`` a manual action asked for by annotation (``logic.analysis.requested_action``).
    """
    machine = _Rollout(spec, model, observed, status or {}, now, name, namespace, generation)
    machine.artifacts_uri = artifacts_uri
    # Each annotation value is carried out once: the last one done is in status.
    if request is not None and request.value != (status or {}).get("handledAction"):
        machine.request = request
    return machine.run()


class _Rollout:
    """One evaluation of :func:`decide` (a class only to share its inputs between steps)."""

    def __init__(
        self,
        spec: ModelDeploymentSpec,
        model: ResolvedModel | ModelNotReady,
        observed: Observed,
        status: Mapping[str, Any],
        now: datetime,
        name: str,
        namespace: str,
        generation: int | None,
    ) -> None:
        self.spec = spec
        self.model = model
        self.observed = observed
        self.prev = status
        self.now = now
        self.generation = generation
        self.history = _History(status.get("history"))
        self.total = _desired_replicas(spec, observed.stable)
        self.stable_model = deployment_model(observed.stable)
        self.canary_model = deployment_model(observed.canary)
        self.stable_rev = deployment_revision(observed.stable)
        self.canary_rev = deployment_revision(observed.canary)
        self.revision = revision(model, spec) if isinstance(model, ResolvedModel) else None
        self.events: list[Event] = []
        self.metrics: list[RolloutMetric] = []
        self.status: dict[str, Any] = {
            "observedGeneration": generation,
            "stableModel": status.get("stableModel"),
            "failedModel": status.get("failedModel"),
            "failedRevision": status.get("failedRevision"),
            "canaryModel": None,
            "canaryWeight": None,
            "step": None,
            "stepStartTime": None,
            "rolloutStartTime": status.get("rolloutStartTime"),
            "url": service_url(name, namespace, spec.runtime.port),
            "selector": serving_selector(name),
        }
        self.deadline = float(spec.progress_deadline_seconds)
        self.name = name
        self.namespace = namespace
        self.artifacts_uri = ""
        self.request: RequestedAction | None = None
        self._requester: str | None = None
        self.analysis_job: AnalysisJobPlan | None = None
        self.verdicts: list[str] = []
        self.status["analysis"] = status.get("analysis")
        self.status["handledAction"] = status.get("handledAction")
        self.status["paused"] = None

    # -- helpers

    def _stable_replicas(self) -> int | None:
        # With autoscaling, the HPA owns the count once the Deployment exists.
        if self.spec.autoscaling is not None and self.observed.stable is not None:
            return None
        return self.total

    def _finish(
        self,
        phase: DeploymentPhase,
        reason: str,
        message: str,
        *,
        stable: ResolvedModel | None = None,
        canary: CanaryPlan | None = None,
        requeue: float | None = None,
        degraded_reason: str | None = None,
    ) -> Decision:
        status = self.status
        status["phase"] = phase.value
        canary_ready = ready_replicas(self.observed.canary) if canary is not None else 0
        status["replicas"] = self.total + (canary.replicas if canary else 0)
        status["readyReplicas"] = ready_replicas(self.observed.stable) + canary_ready
        status["history"] = self.history.records or None
        if phase != DeploymentPhase.PROGRESSING:
            status["rolloutStartTime"] = None
        status["conditions"] = _conditions(
            self.prev.get("conditions"),
            phase,
            reason,
            message,
            self.generation,
            self.now,
            degraded_reason,
        )
        return Decision(
            status=status,
            stable_model=stable,
            stable_replicas=self._stable_replicas() if stable or self.observed.stable else None,
            canary=canary,
            autoscale=self.spec.autoscaling is not None and bool(stable or self.observed.stable),
            events=self.events,
            metrics=self.metrics,
            requeue_after=None if requeue is None else max(requeue, 0.0),
            analysis_job=self.analysis_job,
            verdicts=self.verdicts,
        )

    def _supersede_canary(self, why: str) -> None:
        """The running canary's model is no longer wanted: close its rollout."""
        if self.canary_model is None:
            return
        seconds = self.history.end(self.canary_model.uri, RolloutOutcome.SUPERSEDED, self.now, why)
        if seconds is not None:
            self.metrics.append(RolloutMetric("superseded", seconds))

    def _start(self, model: ResolvedModel, strategy: StrategyType) -> None:
        # A rollout the spec no longer wants (say a first deployment not rolled out yet when
        # a canary starts) ends here, or its record would stay InProgress forever.
        how = "a canary of model" if strategy == StrategyType.CANARY else "a rolling update to"
        for seconds in self.history.supersede_others(
            model.uri, strategy.value, self.now, f"superseded by {how} {model.uri}"
        ):
            self.metrics.append(RolloutMetric("superseded", seconds))
        # Idempotent: after a crash between the status write and the child writes, the
        # same rollout is started again without a second history record.
        self.status["rolloutStartTime"] = rfc3339(self.now)
        if self.history.current(model.uri) is None:
            self.history.start(model.uri, strategy.value, self.now)
            self.metrics.append(RolloutMetric("started"))

    def _remaining(self) -> float:
        elapsed = _seconds_since(self.status.get("rolloutStartTime"), self.now) or 0.0
        return self.deadline - elapsed

    # -- the machine

    def run(self) -> Decision:
        decision = self._run()
        if self.request is not None:  # asked for while no canary ran: nothing to do
            self.status["handledAction"] = self.request.value
            decision.events.append(
                Event(
                    Reason.ROLLOUT_ACTION,
                    f"rollout {self.request.action} ignored: no canary is running",
                    warning=True,
                )
            )
        return decision

    def _run(self) -> Decision:
        model = self.model
        if isinstance(model, ModelNotReady):
            return self._pending(model)
        if self.observed.stable is None or self.stable_rev is None:
            return self._first(model)
        if self.stable_rev == self.revision:
            if self.canary_rev == self.revision:
                return self._promoting(model)
            if self.canary_model is not None:
                self._supersede_canary(f"superseded: set back to the stable {model.uri}")
            return self._settle(model)
        if self.spec.strategy.type == StrategyType.ROLLING_UPDATE:
            if self.canary_model is not None:
                self._supersede_canary(f"superseded by a rolling update to {model.uri}")
            self._start(model, StrategyType.ROLLING_UPDATE)
            self.events.append(
                Event(
                    Reason.ROLLOUT_STARTED, f"rolling update to model {model.uri} ({model.version})"
                )
            )
            return self._finish(
                DeploymentPhase.PROGRESSING,
                Reason.ROLLOUT_STARTED,
                f"rolling update to model {model.uri} started",
                stable=model,
                requeue=self.deadline,
            )
        if self.revision == self.status.get("failedRevision") and self.spec.auto_rollback:
            return self._rolled_back(model)
        if self.canary_rev != self.revision:
            return self._start_canary(model)
        return self._canary_step(model)

    def _pending(self, why: ModelNotReady) -> Decision:
        self._supersede_canary(f"superseded: {why.message}")
        serving = f"; still serving {self.stable_model.uri}" if self.stable_model else ""
        previous = get_condition(self.prev.get("conditions"), ConditionType.READY) or {}
        if (previous.get("reason"), previous.get("message")) != (
            Reason.MODEL_NOT_READY,
            why.message + serving,
        ):
            self.events.append(Event(Reason.MODEL_NOT_READY, why.message, warning=why.warning))
        return self._finish(
            DeploymentPhase.PENDING,
            Reason.MODEL_NOT_READY,
            why.message + serving,
            stable=None,
        )

    def _first(self, model: ResolvedModel) -> Decision:
        """No stable Deployment: serve the model on a new stable directly."""
        if self.canary_model is not None and self.canary_model.uri != model.uri:
            self._supersede_canary(f"superseded: stable recreated with {model.uri}")
        if self.history.current(model.uri) is None:
            self._start(model, StrategyType.ROLLING_UPDATE)
            self.events.append(
                Event(Reason.ROLLOUT_STARTED, f"deploying model {model.uri} ({model.version})")
            )
        return self._finish(
            DeploymentPhase.PROGRESSING,
            Reason.ROLLOUT_STARTED,
            f"deploying model {model.uri}: stable Deployment created",
            stable=model,
            requeue=self._remaining(),
        )

    def _settle(self, model: ResolvedModel) -> Decision:
        """The stable carries the model: rolled out (Available), or on its way."""
        stable = self.observed.stable
        ready = ready_replicas(stable)
        if rolled_out(stable, None if self.spec.autoscaling else self.total):
            if self.status.get("stableModel") != model.uri:
                self.status["stableModel"] = model.uri
            seconds = self.history.end(
                model.uri, RolloutOutcome.PROMOTED, self.now, f"model {model.uri} rolled out"
            )
            if seconds is not None:
                self.metrics.append(RolloutMetric("promoted", seconds))
                self.events.append(Event(Reason.AVAILABLE, f"model {model.uri} is available"))
            return self._finish(
                DeploymentPhase.AVAILABLE,
                Reason.AVAILABLE,
                f"serving model {model.uri} ({model.version}) on {ready}/{self.total} ready replicas",
                stable=model,
            )
        fetch = failure_of_revision(self.observed.fetch_failures, str(self.revision))
        if fetch is not None:
            return self._fetch_failed(model, fetch)
        in_rollout = self.history.current(model.uri) is not None
        if in_rollout and self.status.get("rolloutStartTime") is None:
            self.status["rolloutStartTime"] = rfc3339(self.now)
        late = (
            (in_rollout and self._remaining() <= 0)
            or deadline_exceeded_by_controller(stable)
            # Degraded stays until the Deployment is rolled out (or a new model comes).
            or self.history.last_outcome(model.uri) == RolloutOutcome.DEGRADED.value
        )
        if late:
            message = (
                f"model {model.uri}: {ready}/{self.total} replicas ready after "
                f"progressDeadlineSeconds={self.spec.progress_deadline_seconds}"
            )
            seconds = self.history.end(model.uri, RolloutOutcome.DEGRADED, self.now, message)
            if seconds is not None:
                self.metrics.append(RolloutMetric("degraded", seconds))
            if self.prev.get("phase") != DeploymentPhase.DEGRADED:
                self.events.append(Event(Reason.PROGRESS_DEADLINE_EXCEEDED, message, warning=True))
            return self._finish(
                DeploymentPhase.DEGRADED,
                Reason.PROGRESS_DEADLINE_EXCEEDED,
                message,
                stable=model,
            )
        if in_rollout:
            return self._finish(
                DeploymentPhase.PROGRESSING,
                Reason.ROLLOUT_STARTED,
                f"rolling out model {model.uri}: {ready}/{self.total} replicas ready",
                stable=model,
                requeue=self._remaining(),
            )
        return self._finish(
            DeploymentPhase.PROGRESSING,
            Reason.REPLICAS_NOT_READY,
            f"serving model {model.uri}: {ready}/{self.total} replicas ready",
            stable=model,
        )

    def _fetch_failed(self, model: ResolvedModel, fetch: FetchFailure) -> Decision:
        """The stable's pods cannot download the model: say which store; the kubelet retries."""
        message = redact(f"model {model.uri}: {fetch.message}")
        ready = get_condition(self.prev.get("conditions"), ConditionType.READY) or {}
        if ready.get("reason") != Reason.MODEL_FETCH_FAILED:
            self.events.append(Event(Reason.MODEL_FETCH_FAILED, message, warning=True))
        return self._finish(
            DeploymentPhase.PROGRESSING,
            Reason.MODEL_FETCH_FAILED,
            message,
            stable=model,
            requeue=max(self._remaining(), 0.0) or None,
        )

    def _promoting(self, model: ResolvedModel) -> Decision:
        """The stable took the canary's model: remove the canary once the stable is rolled out."""
        steps = self.spec.strategy.steps or []
        if rolled_out(self.observed.stable, None if self.spec.autoscaling else self.total):
            self.status["stableModel"] = model.uri
            # Reported once: until the canary's deletion is observed, this branch repeats.
            if self.history.current(model.uri) is not None:
                seconds = self.history.end(
                    model.uri,
                    RolloutOutcome.PROMOTED,
                    self.now,
                    f"model {model.uri} promoted to stable",
                )
                self.metrics.append(RolloutMetric("promoted", seconds))
                self.events.append(Event(Reason.PROMOTED, f"model {model.uri} promoted to stable"))
            # The same status as once the canary's deletion is observed: no second write.
            return self._settle(model)
        weight = steps[-1].weight if steps else 100
        current = self.observed.canary or {}
        replicas = int((current.get("spec") or {}).get("replicas") or 0) or canary_replicas(
            self.total, weight
        )
        self.status.update(canaryModel=model.uri, canaryWeight=weight, step=max(len(steps) - 1, 0))
        if self.status.get("rolloutStartTime") is None:
            self.status["rolloutStartTime"] = rfc3339(self.now)
        ready = ready_replicas(self.observed.stable)
        if self._remaining() <= 0:
            message = (
                f"promoting model {model.uri}: stable {ready}/{self.total} ready after "
                f"progressDeadlineSeconds={self.spec.progress_deadline_seconds}"
            )
            if self.prev.get("phase") != DeploymentPhase.DEGRADED:
                self.events.append(Event(Reason.PROGRESS_DEADLINE_EXCEEDED, message, warning=True))
            return self._finish(
                DeploymentPhase.DEGRADED,
                Reason.PROGRESS_DEADLINE_EXCEEDED,
                message,
                stable=model,
                canary=CanaryPlan(model, replicas),
            )
        return self._finish(
            DeploymentPhase.PROGRESSING,
            Reason.PROMOTED,
            f"promoting model {model.uri}: stable {ready}/{self.total} replicas updated and ready",
            stable=model,
            canary=CanaryPlan(model, replicas),
            requeue=self._remaining(),
        )

    def _rolled_back(self, model: ResolvedModel) -> Decision:
        """The spec names the model that was rolled back: keep the stable, run no canary."""
        if self.canary_model is not None:
            self._supersede_canary(f"superseded: model set to {model.uri}, which was rolled back")
        previous = get_condition(self.prev.get("conditions"), ConditionType.DEGRADED) or {}
        if previous.get("status") == ConditionStatus.TRUE and self.prev.get("phase") == (
            DeploymentPhase.ROLLED_BACK
        ):
            cause, message = str(previous.get("reason")), str(previous.get("message"))
        else:
            cause = Reason.ROLLED_BACK
            message = (
                f"model {model.uri} was rolled back; change the model or runtime to roll out again"
            )
        return self._finish(
            DeploymentPhase.ROLLED_BACK,
            Reason.ROLLED_BACK,
            message,
            stable=None,
            degraded_reason=cause,
        )

    def _start_canary(self, model: ResolvedModel) -> Decision:
        steps = self.spec.strategy.steps or []
        if self.canary_model is not None:
            self._supersede_canary(f"superseded by model {model.uri}")
            self.events.append(
                Event(
                    Reason.CANARY_RESTARTED,
                    f"canary restarted with model {model.uri} (was {self.canary_model.uri})",
                )
            )
        self._start(model, StrategyType.CANARY)
        weight = steps[0].weight
        self.status.update(canaryModel=model.uri, canaryWeight=weight, step=0)
        self.events.append(
            Event(Reason.CANARY_STARTED, f"canary of model {model.uri} started at {weight}%")
        )
        return self._finish(
            DeploymentPhase.PROGRESSING,
            Reason.CANARY_STARTED,
            f"canary of model {model.uri} at step 0 ({weight}%); stable serves {self.stable_model.uri if self.stable_model else '-'}",
            stable=None,
            canary=CanaryPlan(model, canary_replicas(self.total, weight)),
            requeue=self.deadline,
        )

    def _canary_step(self, model: ResolvedModel) -> Decision:
        steps = self.spec.strategy.steps or []
        stored_step = self.prev.get("step")
        same = self.prev.get("canaryModel") == model.uri
        step = stored_step if same and isinstance(stored_step, int) else 0
        step = min(max(step, 0), len(steps) - 1)
        if not same or self.status.get("rolloutStartTime") is None:
            # Status lost (or written by an older rollout): restart this step's clocks.
            self.status["rolloutStartTime"] = rfc3339(self.now)
        if self.history.current(model.uri) is None:
            self.history.start(model.uri, StrategyType.CANARY.value, self.now)
        weight = steps[step].weight
        want = canary_replicas(self.total, weight)
        self.status.update(canaryModel=model.uri, canaryWeight=weight, step=step)
        restarts = revision_restarts(self.observed.canary_pods, str(self.revision))
        if restarts > self.spec.max_canary_restarts:
            return self._canary_failed(
                model,
                Reason.CRASH_LOOP,
                f"a canary container of model {model.uri} restarted {restarts} times "
                f"(maxCanaryRestarts={self.spec.max_canary_restarts})",
                want,
            )
        fetch = failure_of_revision(self.observed.fetch_failures, str(self.revision))
        if fetch is not None and fetch.restarts >= self.spec.max_canary_restarts:
            return self._canary_failed(
                model,
                Reason.MODEL_FETCH_FAILED,
                redact(f"canary of model {model.uri}: {fetch.message}"),
                want,
            )
        action = self._take_request(model)
        if action == "abort":
            return self._canary_failed(
                model,
                Reason.ABORTED,
                f"canary of model {model.uri} aborted by {self._who()}",
                want,
                force=True,
            )
        paused = bool(self.prev.get("paused")) and same
        if action == "pause":
            paused = True
        canary = self.observed.canary
        ready = rolled_out(canary, want) and self.canary_rev == self.revision
        if not ready and action == "promote":
            ready = True  # asked for: the step ends now, ready or not
        if not ready:
            remaining = self._remaining()
            if remaining <= 0:
                return self._canary_failed(
                    model,
                    Reason.PROGRESS_DEADLINE_EXCEEDED,
                    f"canary of model {model.uri} not Ready within "
                    f"progressDeadlineSeconds={self.spec.progress_deadline_seconds} at step "
                    f"{step} ({weight}%): {ready_replicas(canary)}/{want} replicas ready",
                    want,
                )
            return self._finish(
                DeploymentPhase.PROGRESSING,
                Reason.CANARY_STEP,
                f"canary of model {model.uri} at step {step} ({weight}%): waiting for "
                f"{ready_replicas(canary)}/{want} replicas to be ready",
                stable=None,
                canary=CanaryPlan(model, want),
                requeue=remaining,
            )
        ready_since = self.prev.get("stepStartTime") if same and stored_step == step else None
        if action == "resume":
            paused = False
            ready_since = None  # the step holds (and is analysed) again from now
        ready_since = ready_since or rfc3339(self.now)
        if action == "promote":
            return self._advance(model, step, want, ready_since, f"promoted by {self._who()}")
        if paused:
            self.status.update(paused=True, stepStartTime=ready_since)
            return self._finish(
                DeploymentPhase.PAUSED,
                Reason.PAUSED,
                f"canary of model {model.uri} paused at step {step} ({weight}%)"
                f"{self._pause_cause(step)}; kyklos rollout resume|promote|abort",
                stable=None,
                canary=CanaryPlan(model, want),
            )
        if steps[step].pause == MANUAL_PAUSE:
            self.status["stepStartTime"] = ready_since
            return self._finish(
                DeploymentPhase.PAUSED,
                Reason.AWAITING_PROMOTION,
                f"canary of model {model.uri} at step {step} ({weight}%) is Ready; waiting for "
                "kyklos rollout promote (pause: manual)",
                stable=None,
                canary=CanaryPlan(model, want),
            )
        pause = duration_seconds(steps[step].pause, f"strategy.steps[{step}].pause")
        held = _seconds_since(ready_since, self.now) or 0.0
        if held < pause:
            self.status["stepStartTime"] = ready_since
            return self._finish(
                DeploymentPhase.PROGRESSING,
                Reason.CANARY_STEP,
                f"canary of model {model.uri} at step {step} ({weight}%) is Ready; "
                f"holding {steps[step].pause}",
                stable=None,
                canary=CanaryPlan(model, want),
                requeue=pause - held,
            )
        check = canary_analysis.effective_analysis(self.spec.strategy, step)
        if check is not None:
            window_end = _parse_time(ready_since)
            assert window_end is not None
            judged = self._analysed(
                model, step, want, check, window_end + timedelta(seconds=pause), ready_since
            )
            if judged is not None:
                return judged
        return self._advance(model, step, want, ready_since, None)

    def _advance(
        self, model: ResolvedModel, step: int, want: int, ready_since: str, why: str | None
    ) -> Decision:
        """The step is done: the next step, or promotion after the last one."""
        steps = self.spec.strategy.steps or []
        same = self.prev.get("canaryModel") == model.uri
        if step + 1 < len(steps):
            nxt = step + 1
            weight = steps[nxt].weight
            self.status.update(step=nxt, canaryWeight=weight, rolloutStartTime=rfc3339(self.now))
            self.events.append(
                Event(
                    Reason.CANARY_STEP,
                    f"canary of model {model.uri} advanced to step {nxt} ({weight}%)"
                    + (f": {why}" if why else ""),
                )
            )
            return self._finish(
                DeploymentPhase.PROGRESSING,
                Reason.CANARY_STEP,
                f"canary of model {model.uri} at step {nxt} ({weight}%)",
                stable=None,
                canary=CanaryPlan(model, canary_replicas(self.total, weight)),
                requeue=self.deadline,
            )
        # Last step held: the stable takes the model; the canary stays until it is rolled out.
        # Idempotent: a reconcile that has not seen the stable's new template yet decides the
        # same again, without a second Event or a new deadline.
        previous = get_condition(self.prev.get("conditions"), ConditionType.PROGRESSING) or {}
        if same and previous.get("reason") == Reason.PROMOTED and self.prev.get("rolloutStartTime"):
            self.status["rolloutStartTime"] = self.prev["rolloutStartTime"]
        else:
            self.status["rolloutStartTime"] = rfc3339(self.now)
            self.events.append(
                Event(
                    Reason.CANARY_STEP,
                    f"canary of model {model.uri} passed every step; promoting it to stable"
                    if why is None
                    else f"canary of model {model.uri} {why}; promoting it to stable",
                )
            )
        self.status["stepStartTime"] = ready_since
        return self._finish(
            DeploymentPhase.PROGRESSING,
            Reason.PROMOTED,
            f"promoting model {model.uri} to stable",
            stable=model,
            canary=CanaryPlan(model, want),
            requeue=self.deadline,
        )

    # -- manual control and analysis (issue 14)

    def _take_request(self, model: ResolvedModel) -> str | None:
        """The manual action to carry out now (recorded in history), or None."""
        request, self.request = self.request, None
        if request is None:
            return None
        self.status["handledAction"] = request.value
        record = self.history.current(model.uri)
        if record is not None:
            entry: dict[str, Any] = {
                "action": request.action,
                "time": rfc3339(request.time or self.now),
            }
            if request.user:
                entry["user"] = request.user[:256]
            record["actions"] = [*(record.get("actions") or []), entry][-MAX_ACTIONS:]
        self._requester = request.user
        self.events.append(
            Event(Reason.ROLLOUT_ACTION, f"rollout {request.action} requested by {self._who()}")
        )
        return request.action

    def _who(self) -> str:
        return self._requester or "an unnamed client"

    def _pause_cause(self, step: int) -> str:
        records = [
            r
            for r in self.status.get("analysis") or []
            if r.get("step") == step and r.get("revision") == self.revision
        ]
        last = records[-1] if records else None
        if last is not None and last.get("verdict") != Verdict.PASS.value:
            return f" after analysis verdict {last.get('verdict')} ({last.get('message') or ''})"
        return ""

    def _analysed(
        self,
        model: ResolvedModel,
        step: int,
        want: int,
        check: Analysis,
        window_end: datetime,
        ready_since: str,
    ) -> Decision | None:
        """The step's analysis: wait, run it, record its verdict, act on it (None: go on)."""
        rev = str(self.revision)
        records = [dict(r) for r in self.status.get("analysis") or []]
        record = next(
            (
                r
                for r in records
                if r.get("step") == step
                and r.get("revision") == rev
                and _parse_time(r.get("endTime")) == window_end
            ),
            None,
        )
        self.status["stepStartTime"] = ready_since
        plan = CanaryPlan(model, want)
        weight = (self.spec.strategy.steps or [])[step].weight
        if record is None:
            flush = duration_seconds(
                self.spec.observability.request_log.flush_interval,
                "observability.requestLog.flushInterval",
            )
            wait = (
                window_end
                + timedelta(seconds=flush + canary_analysis.FLUSH_SLACK_SECONDS)
                - self.now
            ).total_seconds()
            if wait > 0:
                return self._finish(
                    DeploymentPhase.PROGRESSING,
                    Reason.ANALYSIS_RUNNING,
                    f"canary of model {model.uri} at step {step} ({weight}%): waiting "
                    f"{wait:.0f}s for the last request logs of the analysis window",
                    canary=plan,
                    requeue=wait,
                )
            job = canary_analysis.analysis_job_name(self.name, rev, step, window_end)
            summary = self._summary(job)
            if summary is None:
                args = AnalyzeArgs(
                    analysis=check.model_dump_json(by_alias=True, exclude_none=True),
                    namespace=self.namespace,
                    name=self.name,
                    artifacts=self.artifacts_uri,
                    canary_revision=rev,
                    stable_revision=self.stable_rev or "",
                    step=step,
                    window_end=window_end,
                    flush_seconds=flush,
                )
                self.analysis_job = AnalysisJobPlan(job, args.to_flags())
                return self._finish(
                    DeploymentPhase.PROGRESSING,
                    Reason.ANALYSIS_RUNNING,
                    f"canary of model {model.uri} at step {step} ({weight}%): analysis Job "
                    f"{job} is judging the last {check.window}",
                    canary=plan,
                    requeue=canary_analysis.ANALYSIS_DEADLINE_SECONDS + 30,
                )
            record = summary.to_record(step, rev).model_dump(
                mode="json", by_alias=True, exclude_none=True
            )
            record["endTime"] = rfc3339(window_end)
            records = [*records, record][-MAX_ANALYSES:]
            self.status["analysis"] = records
            verdict = Verdict(record["verdict"])
            self.verdicts.append(verdict.value)
            self.events.append(
                Event(
                    _VERDICT_REASONS[verdict],
                    f"analysis of step {step} of model {model.uri}: {verdict.value}: "
                    f"{record.get('message') or ''}",
                    warning=verdict != Verdict.PASS,
                )
            )
        verdict = Verdict(record["verdict"])
        act = canary_analysis.next_action(check, verdict)
        if act == canary_analysis.NextAction.CONTINUE:
            return None
        message = f"analysis of step {step}: {verdict.value}: {record.get('message') or ''}"
        if act == canary_analysis.NextAction.ROLLBACK:
            return self._canary_failed(model, _VERDICT_REASONS[verdict], message, want)
        self.status["paused"] = True
        return self._finish(
            DeploymentPhase.PAUSED,
            Reason.PAUSED,
            f"canary of model {model.uri} paused at step {step} ({weight}%) after {message}; "
            "kyklos rollout resume|promote|abort",
            canary=plan,
        )

    def _summary(self, job: str) -> AnalysisSummary | None:
        """The analysis Job's verdict, an Inconclusive one when it left none, or None (running)."""
        result = self.observed.analysis_results.get(job)
        if result is None:
            return None
        if result.message is not None:
            try:
                return AnalysisSummary.parse(result.message)
            except ValueError as exc:
                return AnalysisSummary(
                    ok=False,
                    verdict=Verdict.INCONCLUSIVE,
                    message=f"analysis Job {job} left an unreadable result: {str(exc)[:200]}",
                )
        if result.failure is not None:
            return AnalysisSummary(
                ok=False,
                verdict=Verdict.INCONCLUSIVE,
                message=f"analysis Job {job} failed without a verdict: {result.failure}",
            )
        return None

    def _canary_failed(
        self, model: ResolvedModel, cause: str, message: str, want: int, *, force: bool = False
    ) -> Decision:
        if not self.spec.auto_rollback and not force:
            if self.prev.get("phase") != DeploymentPhase.DEGRADED:
                self.events.append(Event(cause, message + " (autoRollback is off)", warning=True))
            self.status["stepStartTime"] = None
            return self._finish(
                DeploymentPhase.DEGRADED,
                cause,
                message + " (autoRollback is off)",
                stable=None,
                canary=CanaryPlan(model, want),
            )
        seconds = self.history.end(model.uri, RolloutOutcome.ROLLED_BACK, self.now, message)
        self.metrics.append(RolloutMetric("rolled_back", seconds))
        self.events.append(
            Event(Reason.ROLLED_BACK, f"rolled back model {model.uri}: {message}", warning=True)
        )
        self.status.update(
            failedModel=model.uri,
            failedRevision=self.revision,
            canaryModel=None,
            canaryWeight=None,
            step=None,
        )
        return self._finish(
            DeploymentPhase.ROLLED_BACK,
            Reason.ROLLED_BACK,
            f"rolled back model {model.uri}: {message}",
            stable=None,
            degraded_reason=cause,
        )


_VERDICT_REASONS = {
    Verdict.PASS: Reason.ANALYSIS_PASSED,
    Verdict.FAIL: Reason.ANALYSIS_FAILED,
    Verdict.INCONCLUSIVE: Reason.ANALYSIS_INCONCLUSIVE,
}


def canary_weight_of(status: Mapping[str, Any]) -> int:
    """The canary weight to export as a gauge (0 without a canary)."""
    return int(status.get("canaryWeight") or 0)


__all__ = [
    "CANARY",
    "STABLE",
    "CanaryPlan",
    "Decision",
    "Event",
    "ModelNotReady",
    "Observed",
    "ResolvedModel",
    "RolloutMetric",
    "build_hpa",
    "build_service",
    "build_serving_deployment",
    "canary_replicas",
    "decide",
    "deployment_model",
    "label_value",
    "resolve_model",
    "serving_selector",
]
