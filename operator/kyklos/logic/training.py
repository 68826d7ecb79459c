"""TrainingJob logic: the trainer's Job and headless Service, lineage, metrics, the gate, the state machine.

Pure: no kopf, no Kubernetes client, no clock (``now`` is passed in), no randomness.

Trainer contract
================

The operator runs the trainer image as a batch/v1 Job (``workers: 1``) or as an Indexed Job
with a headless Service (``workers: N > 1``), with ``restartPolicy: Never`` so that every
failed attempt is one failed pod (``status.attempts``). Every trainer container gets:

| variable | value |
| --- | --- |
| ``KYKLOS_DATASET_URI`` | the Dataset's ``spec.source.uri`` (``pvc://`` claims are mounted, see below) |
| ``KYKLOS_DATASET_VERSION`` | the Dataset's content version the run is pinned to (``status.datasetVersion``) |
| ``KYKLOS_MODEL_URI`` | where to write the model: ``spec.output.modelUri`` with ``{namespace}``, ``{name}``, ``{run}`` expanded; default ``<artifacts>/{namespace}/TrainingJob/{name}/{run}/model`` |
| ``KYKLOS_HYPERPARAMETERS`` | ``spec.hyperparameters`` as a JSON object of strings (``{}`` when unset) |
| ``KYKLOS_RUN`` | the run id (``status.run``: the first 8 hex digits of the TrainingJob's uid) |
| ``KYKLOS_TRAININGJOB`` | the TrainingJob's name |
| ``KYKLOS_METRICS_FILE`` | the file to write metrics to: the container's termination-message path, ``/dev/termination-log`` |
| ``KYKLOS_DATASET_PATH``, ``KYKLOS_MODEL_PATH`` | the local path of a ``file://`` or ``pvc://`` URI (unset for object stores) |
| ``KYKLOS_PVC_ROOT`` | where ``pvc://<claim>`` is mounted (``<pvc_root>/<claim>``), when a claim is mounted |
| ``WORLD_SIZE``, ``RANK`` | number of workers, and this pod's completion index (``0`` with one worker) |
| ``MASTER_ADDR``, ``MASTER_PORT`` | ``workers > 1`` only: the index-0 pod's stable DNS name ``<job>-0.<service>.<namespace>.svc`` and ``spec.masterPort`` (default 29500) |

followed by ``spec.env`` (names above are reserved: setting one is ``Ready=False``
``InvalidSpec``). This is the environment ``torchrun --nnodes=$WORLD_SIZE --node_rank=$RANK
--master_addr=$MASTER_ADDR --master_port=$MASTER_PORT`` and Kubeflow's PyTorchJob use.

**Metrics.** Before exiting, the trainer writes one JSON object to ``$KYKLOS_METRICS_FILE``
(``/dev/termination-log``), at most 4096 bytes (the kubelet keeps only the last 4 KiB of a
termination message), for example ``{"accuracy": 0.93, "loss": 0.21, "epochs": 40}``. When the
Job finishes, the operator reads the message of the index-0 pod (the latest finished pod with one
worker) and copies every top-level finite number (booleans excluded; at most 64, by name) into
``status.metrics``; other values are ignored. No message means no metrics. A message that is not a
JSON object (or was truncated) gives a Warning Event ``MetricsInvalid`` and no metrics -- never a
crash.

**Evaluation gate.** With ``spec.evaluation`` (``metric``, ``threshold``, ``direction`` max | min)
a succeeded training gets condition ``ModelAccepted``: True ``ThresholdMet`` (``accuracy 0.93 >=
0.9``), False ``BelowThreshold`` (``accuracy 0.81 < 0.9``) or False ``MetricMissing``. Without
an evaluation a succeeded training's model is accepted (True, ``NoEvaluation``); a failed one's is
not (False, ``Failed``). Consumers (ModelDeployment ``fromTrainingJob``, DriftMonitor retraining)
use ``status.modelUri`` once ``ModelAccepted`` is True. With ``evaluation.datasetRef``,
``compareTo`` or ``evaluator`` the gate instead scores the model again in the evaluation Job
``<name>-eval`` (champion vs challenger on one pinned dataset version, see
``kyklos.logic.evaluation``): the TrainingJob stays Running (Ready reason ``Evaluating``,
ModelAccepted Unknown) until the verdict, and only then records ``completionTime``.

**Immutability.** The spec is immutable once the training has started (``status.startTime``
set: the Job controller started the Job, i.e. it was created or unsuspended), enforced by the
CRD's CEL transition rule; re-run by creating a new TrainingJob. Before that (waiting for the dataset, or ``suspend: true``) edits are accepted and
acted on: ``suspend`` is patched on the Job, any other change replaces the not-yet-started Job.
The dataset version is pinned when the Job is made; a Job that has not started yet (suspended,
queued) is replaced when the Dataset moves to a new version, so the recorded lineage is what
the trainer reads. With ``queueName`` the Job is created suspended and Kueue owns its ``suspend`` from then on.

**Lifecycle.** Pending (``DatasetNotReady`` until the Dataset is Ready with the pinned
``datasetRef.version`` if set; ``JobCreated``; ``Suspended``) -> Running -> Succeeded | Failed
(``BackoffLimitExceeded``, ``DeadlineExceeded``, ``Failed``). While the Job's pod does not
start (``kyklos.logic.pods``: unschedulable, image not pulled, a missing Secret) the phase
stays Pending or Running and the Ready reason is ``PodUnschedulable`` or ``PodStartFailed``
with a message naming the pod and the cause (a Warning Event per change); it returns to
``Running`` when the pod recovers. ``spec.activeDeadlineSeconds`` bounds how long that lasts. A finished TrainingJob's status is
final: a Job deleted afterwards (by ``ttlSecondsAfterFinished`` or by hand) is not recreated. A
Job deleted before the training finished is recreated with the same lineage (Event
``JobRecreated``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kyklos.api.common import ConditionStatus, ConditionType, Reason
from kyklos.api.training import (
    MODEL_URI_PLACEHOLDERS,
    Direction,
    Evaluation,
    TrainingJobSpec,
    TrainingPhase,
)
from kyklos.logic import evaluation
from kyklos.logic.conditions import (
    Event,
    get_condition,
    rfc3339,
    set_condition,
    spec_error,
)
from kyklos.logic.evaluation import parse_metrics
from kyklos.logic.gang import on_job_failed, restarts_of, with_gang_policy
from kyklos.logic.jobs import JobState, latest_message, observe_job
from kyklos.logic.naming import (
    MAX_NAME,
    child_labels,
    child_name,
    owner_reference,
)
from kyklos.logic.pods import PodStuck, first_stuck_pod, held_diagnosis, is_live, with_held_cause
from kyklos.logic.podspec import (
    DEFAULT_PVC_ROOT,
    TERMINATION_PATH,
    claim_of,
    claim_volumes,
    local_path,
    restricted_container_security,
    restricted_pod_security,
)
from kyklos.logic.podtemplate import apply_pod_template

KIND = "TrainingJob"
COMPONENT_TRAINER = "trainer"
CONTAINER = "trainer"
RUN_ID_LENGTH = 8
MAX_METRICS = 64
#: Room left in a Job name for the ``-<index>`` of an Indexed Job's pod hostnames (<= 63).
JOB_NAME_LIMIT = 52

KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
SPEC_HASH_ANNOTATION = "kyklos.io/spec-hash"
RUN_ANNOTATION = "kyklos.io/run"
DATASET_URI_ANNOTATION = "kyklos.io/dataset-uri"
DATASET_VERSION_ANNOTATION = "kyklos.io/dataset-version"
MODEL_URI_ANNOTATION = "kyklos.io/model-uri"

#: Environment variables Kyklos sets; ``spec.env`` may not override them.
RESERVED_ENV = frozenset(
    {
        "KYKLOS_DATASET_URI",
        "KYKLOS_DATASET_VERSION",
        "KYKLOS_DATASET_PATH",
        "KYKLOS_MODEL_URI",
        "KYKLOS_MODEL_PATH",
        "KYKLOS_HYPERPARAMETERS",
        "KYKLOS_RUN",
        "KYKLOS_TRAININGJOB",
        "KYKLOS_METRICS_FILE",
        "KYKLOS_PVC_ROOT",
        "KYKLOS_RESTART",
        "WORLD_SIZE",
        "RANK",
        "MASTER_ADDR",
        "MASTER_PORT",
    }
)
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")

TERMINAL_PHASES = (TrainingPhase.SUCCEEDED.value, TrainingPhase.FAILED.value)
#: Ready reasons whose transition Event is a Warning.
WARNING_REASONS = frozenset(
    {
        Reason.INVALID_SPEC,
        Reason.JOB_RECREATED,
        Reason.FAILED,
        Reason.BACKOFF_LIMIT_EXCEEDED,
        Reason.DEADLINE_EXCEEDED,
        Reason.BELOW_THRESHOLD,
        Reason.METRIC_MISSING,
        Reason.METRICS_INVALID,
        Reason.POD_UNSCHEDULABLE,
        Reason.POD_START_FAILED,
        Reason.NOT_BETTER_THAN_CHAMPION,
        Reason.CHAMPION_EVALUATION_FAILED,
        Reason.CHAMPION_NOT_FOUND,
        Reason.EVALUATION_FAILED,
    }
)


class SpecError(ValueError):
    """The spec cannot be turned into a Job; the message names the field at fault."""


# ------------------------------------------------------------------------------------ inputs


@dataclass(frozen=True)
class Settings:
    """How the operator is deployed (from ``kyklos.controllers.config``)."""

    artifacts_uri: str
    pvc_root: str = DEFAULT_PVC_ROOT
    artifacts_secret: str | None = None


@dataclass(frozen=True)
class Lineage:
    """What one run trains on and where its model goes (pinned when the Job is first made)."""

    run: str
    dataset_uri: str
    dataset_version: str
    model_uri: str
    dataset_secret: str | None = None


@dataclass(frozen=True)
class Observation:
    """Everything the state machine looks at.

    ``trainingjob`` is the body (metadata, spec and the latest known status); ``job`` and
    ``service`` are the owned children or None; ``pods`` the Job's pods, listed only when
    ``needs_pods`` says the terminal transition is due; ``watched_pods`` the pods as the pod
    watch last saw them (to say why a pod does not start); ``job_rejection`` the API
    server's reason when it refused the Job this decision wanted to create.
    """

    trainingjob: Mapping[str, Any]
    dataset: Mapping[str, Any] | None
    job: Mapping[str, Any] | None
    service: Mapping[str, Any] | None
    settings: Settings
    now: datetime
    pods: Sequence[Mapping[str, Any]] | None = None
    job_rejection: str | None = None
    watched_pods: Sequence[Mapping[str, Any]] = ()
    # The evaluation gate (kyklos.logic.evaluation): the owned ``<name>-eval`` Job, its pods
    # (listed once it finished), the Dataset named by spec.evaluation.datasetRef, the
    # compareTo ModelDeployment (None: not found), the API server's refusal of the eval Job.
    eval_job: Mapping[str, Any] | None = None
    eval_pods: Sequence[Mapping[str, Any]] | None = None
    eval_dataset: Mapping[str, Any] | None = None
    champion: Mapping[str, Any] | None = None
    eval_job_rejection: str | None = None


@dataclass
class Decision:
    """What to do: children to create / patch / delete, the whole status, Events, metrics."""

    status: dict[str, Any]
    create_job: dict[str, Any] | None = None
    patch_job: dict[str, Any] | None = None
    delete_job: str | None = None
    create_service: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    #: "started", "succeeded", "failed": counted in kyklos_trainings_total.
    transitions: list[str] = field(default_factory=list)
    #: Seconds from start to completion, when this decision records the completion.
    duration_seconds: float | None = None
    #: The evaluation Job to create (kyklos.logic.evaluation.build_eval_job).
    create_eval_job: dict[str, Any] | None = None
    #: The gate's verdict, when this decision records it (kyklos_evaluations_total).
    verdict: evaluation.Verdict | None = None


# ------------------------------------------------------------------------------------ naming


def _dns_label(name: str) -> str:
    # TrainingJob names are DNS subdomains (dots allowed); Job pod hostnames and Service
    # names must be DNS labels, and a Service name must start with a letter.
    label = name.replace(".", "-")
    return label if label[:1].isalpha() else f"tj-{label}"


def job_name(trainingjob_name: str) -> str:
    """The Job's deterministic name (short enough for ``<job>-<index>`` pod hostnames)."""
    return child_name(_dns_label(trainingjob_name), "train", limit=JOB_NAME_LIMIT)


def service_name(trainingjob_name: str) -> str:
    """The headless Service's deterministic name (distributed training only)."""
    return child_name(_dns_label(trainingjob_name), "workers", limit=MAX_NAME)


def run_id(uid: str) -> str:
    """The run id: the first 8 hex digits of the TrainingJob's uid (stable across restarts)."""
    return uid.replace("-", "")[:RUN_ID_LENGTH]


# ------------------------------------------------------------------------------------ lineage


def _join(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


def expand_model_uri(
    template: str | None, *, namespace: str, name: str, run: str, artifacts_uri: str
) -> str:
    """``spec.output.modelUri`` with ``{namespace}``, ``{name}`` and ``{run}`` expanded.

    Unset means ``<artifacts>/{namespace}/TrainingJob/{name}/{run}/model``. Any other
    ``{placeholder}`` is a SpecError naming the field.
    """
    if template is None:
        template = _join(artifacts_uri, "{namespace}", KIND, "{name}", "{run}", "model")
    unknown = sorted({m for m in _PLACEHOLDER.findall(template) if m not in MODEL_URI_PLACEHOLDERS})
    if unknown:
        allowed = ", ".join("{" + p + "}" for p in MODEL_URI_PLACEHOLDERS)
        raise SpecError(
            f"spec.output.modelUri: unknown placeholder(s) {', '.join('{' + u + '}' for u in unknown)}; "
            f"allowed: {allowed}"
        )
    values = {"namespace": namespace, "name": name, "run": run}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def dataset_waiting_message(
    dataset: Mapping[str, Any] | None, name: str, pinned: str | None
) -> str | None:
    """Why the Dataset cannot be trained on yet (a message naming it), or None when it can."""
    if dataset is None:
        return f"dataset {name} not found (spec.datasetRef.name)"
    status = dataset.get("status") or {}
    ready_condition = get_condition(status.get("conditions"), ConditionType.READY)
    ready = (
        ready_condition.get("status") == ConditionStatus.TRUE
        if ready_condition is not None
        else status.get("phase") == "Ready"
    )
    if not ready:
        phase = status.get("phase") or "Pending"
        detail = (
            f": {ready_condition.get('message')}"
            if ready_condition and ready_condition.get("message")
            else ""
        )
        return f"dataset {name} is not Ready (phase {phase}){detail}"
    if not ((dataset.get("spec") or {}).get("source") or {}).get("uri"):
        return f"dataset {name} has no spec.source.uri"
    version = status.get("version")
    if pinned is not None and version != pinned:
        return (
            f"dataset {name} is at version {version or '(none)'}; waiting for the pinned "
            f"version {pinned} (spec.datasetRef.version)"
        )
    return None


def lineage_from_dataset(
    meta: Mapping[str, Any], spec: TrainingJobSpec, dataset: Mapping[str, Any], settings: Settings
) -> Lineage:
    """Pin the run to the Dataset as it is now (its uri and version)."""
    run = run_id(str(meta["uid"]))
    source = (dataset.get("spec") or {}).get("source") or {}
    secret = (source.get("secretRef") or {}).get("name")
    dataset_name = (dataset.get("metadata") or {}).get("name")
    lineage = Lineage(
        run=run,
        dataset_uri=str(source["uri"]),
        dataset_version=str((dataset.get("status") or {}).get("version") or ""),
        model_uri=expand_model_uri(
            spec.output.model_uri,
            namespace=str(meta["namespace"]),
            name=str(meta["name"]),
            run=run,
            artifacts_uri=settings.artifacts_uri,
        ),
        dataset_secret=str(secret) if secret else None,
    )
    try:
        claim_of(lineage.dataset_uri, f"dataset {dataset_name} spec.source.uri")
        claim_of(lineage.model_uri, "spec.output.modelUri")
    except ValueError as exc:
        raise SpecError(str(exc)) from None
    return lineage


def lineage_from_job(job: Mapping[str, Any], dataset_secret: str | None) -> Lineage | None:
    """The lineage a Job was made with (from its annotations), or None when they are missing."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    try:
        return Lineage(
            run=annotations[RUN_ANNOTATION],
            dataset_uri=annotations[DATASET_URI_ANNOTATION],
            dataset_version=annotations[DATASET_VERSION_ANNOTATION],
            model_uri=annotations[MODEL_URI_ANNOTATION],
            dataset_secret=dataset_secret,
        )
    except KeyError:
        return None


def lineage_from_status(status: Mapping[str, Any], dataset_secret: str | None) -> Lineage | None:
    """The lineage recorded in status (to recreate a deleted Job), or None when incomplete."""
    values = [status.get(k) for k in ("run", "datasetUri", "datasetVersion", "modelUri")]
    if any(v is None for v in values):
        return None
    run, dataset_uri, version, model_uri = (str(v) for v in values)
    return Lineage(run, dataset_uri, version, model_uri, dataset_secret)


# ------------------------------------------------------------------------------------ builders


def _claim(uri: str) -> str | None:
    try:
        return claim_of(uri)
    except ValueError:  # validated when the lineage was pinned
        return None


def _claim_mounts(lineage: Lineage, pvc_root: str) -> list[tuple[str, bool]]:
    """(claim, read_only) for every pvc:// claim the trainer needs; the model's is writable."""
    claims: dict[str, bool] = {}
    data_claim = _claim(lineage.dataset_uri)
    if data_claim:
        claims[data_claim] = True
    model_claim = _claim(lineage.model_uri)
    if model_claim:
        claims[model_claim] = False
    return sorted(claims.items())


def check_spec(spec: TrainingJobSpec) -> None:
    """Reject what the CRD cannot: env names the kubelet refuses or Kyklos reserves."""
    for key in spec.env or {}:
        if not _ENV_NAME.match(key):
            raise SpecError(
                f"spec.env.{key}: not a valid environment variable name "
                "(letters, digits, '_', '-', '.'; not starting with a digit)"
            )
        if key in RESERVED_ENV:
            raise SpecError(f"spec.env.{key}: set by Kyklos; choose another name")


def build_env(
    meta: Mapping[str, Any], spec: TrainingJobSpec, lineage: Lineage, settings: Settings
) -> list[dict[str, Any]]:
    """The trainer container's environment (see the module docstring)."""
    env: list[dict[str, Any]] = [
        {"name": "KYKLOS_DATASET_URI", "value": lineage.dataset_uri},
        {"name": "KYKLOS_DATASET_VERSION", "value": lineage.dataset_version},
        {"name": "KYKLOS_MODEL_URI", "value": lineage.model_uri},
        {
            "name": "KYKLOS_HYPERPARAMETERS",
            "value": json.dumps(spec.hyperparameters or {}, sort_keys=True, separators=(",", ":")),
        },
        {"name": "KYKLOS_RUN", "value": lineage.run},
        {"name": "KYKLOS_TRAININGJOB", "value": str(meta["name"])},
        {"name": "KYKLOS_METRICS_FILE", "value": TERMINATION_PATH},
    ]
    for var, uri in (
        ("KYKLOS_DATASET_PATH", lineage.dataset_uri),
        ("KYKLOS_MODEL_PATH", lineage.model_uri),
    ):
        path = local_path(uri, settings.pvc_root)
        if path is not None:
            env.append({"name": var, "value": path})
    if _claim_mounts(lineage, settings.pvc_root):
        env.append({"name": "KYKLOS_PVC_ROOT", "value": settings.pvc_root})
    env.append({"name": "WORLD_SIZE", "value": str(spec.workers)})
    if spec.workers > 1:
        name = str(meta["name"])
        env += [
            {
                "name": "RANK",
                "valueFrom": {
                    "fieldRef": {
                        "fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"
                    }
                },
            },
            {
                "name": "MASTER_ADDR",
                "value": f"{job_name(name)}-0.{service_name(name)}.{meta['namespace']}.svc",
            },
            {"name": "MASTER_PORT", "value": str(spec.master_port)},
        ]
    else:
        env.append({"name": "RANK", "value": "0"})
    env += [{"name": k, "value": v} for k, v in (spec.env or {}).items()]
    return env


def _template_labels(name: str) -> dict[str, str]:
    return child_labels(KIND, name, COMPONENT_TRAINER)


def spec_hash(job: Mapping[str, Any]) -> str:
    """A digest of everything in a Job manifest that a spec edit could change, except suspend."""
    spec = {k: v for k, v in (job.get("spec") or {}).items() if k != "suspend"}
    material = {"labels": (job.get("metadata") or {}).get("labels") or {}, "spec": spec}
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]


def build_job(
    trainingjob: Mapping[str, Any], spec: TrainingJobSpec, lineage: Lineage, settings: Settings
) -> dict[str, Any]:
    """The batch/v1 Job running the trainer (Indexed, with N completions, when workers > 1)."""
    meta = trainingjob["metadata"]
    name, namespace = str(meta["name"]), str(meta["namespace"])
    labels = _template_labels(name)
    job_labels = dict(labels)
    if spec.queue_name:
        job_labels[KUEUE_QUEUE_LABEL] = spec.queue_name

    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image,
        "env": build_env(meta, spec, lineage, settings),
        "terminationMessagePath": TERMINATION_PATH,
        "terminationMessagePolicy": "File",
        # A user's image: its own user, only what the restricted profile needs no uid for.
        "securityContext": restricted_container_security(uid=None),
    }
    if spec.command is not None:
        container["command"] = list(spec.command)
    if spec.args is not None:
        container["args"] = list(spec.args)
    if spec.resources is not None:
        container["resources"] = spec.resources.model_dump(by_alias=True, exclude_none=True)
    env_from = [
        {"secretRef": {"name": secret}}
        for secret in dict.fromkeys(
            s for s in (lineage.dataset_secret, settings.artifacts_secret) if s
        )
    ]
    if env_from:
        container["envFrom"] = env_from
    mounts = _claim_mounts(lineage, settings.pvc_root)
    claim_vols, claim_mounts = claim_volumes(dict(mounts), settings.pvc_root)
    if mounts:
        container["volumeMounts"] = claim_mounts

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [container],
        "securityContext": restricted_pod_security(uid=None),
    }
    if spec.service_account_name:
        pod_spec["serviceAccountName"] = spec.service_account_name
    else:
        # A trainer needs no Kubernetes API credentials unless it asks for an account.
        pod_spec["automountServiceAccountToken"] = False
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations
        ]
    if mounts:
        pod_spec["volumes"] = claim_vols
    if spec.workers > 1:
        pod_spec["subdomain"] = service_name(name)

    job_spec: dict[str, Any] = {
        "backoffLimit": spec.backoff_limit,
        "completions": spec.workers,
        "parallelism": spec.workers,
        # Kueue admits a queued Job by unsuspending it, so a queued Job starts suspended.
        "suspend": bool(spec.suspend or spec.queue_name),
        "template": apply_pod_template(
            {"metadata": {"labels": labels}, "spec": pod_spec}, spec.template, CONTAINER
        ),
    }
    if spec.workers > 1:
        job_spec["completionMode"] = "Indexed"
    if spec.active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = spec.active_deadline_seconds
    if spec.ttl_seconds_after_finished is not None:
        job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished

    job: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(name),
            "namespace": namespace,
            "labels": job_labels,
            "annotations": {
                RUN_ANNOTATION: lineage.run,
                DATASET_URI_ANNOTATION: lineage.dataset_uri,
                DATASET_VERSION_ANNOTATION: lineage.dataset_version,
                MODEL_URI_ANNOTATION: lineage.model_uri,
            },
            "ownerReferences": [owner_reference(trainingjob)],
        },
        "spec": job_spec,
    }
    job = with_gang_policy(job, spec, restarts_of(trainingjob))
    job["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = spec_hash(job)
    return job


def build_service(trainingjob: Mapping[str, Any], spec: TrainingJobSpec) -> dict[str, Any]:
    """The headless Service giving each worker pod a stable DNS name (``<job>-<index>.<svc>``)."""
    meta = trainingjob["metadata"]
    name = str(meta["name"])
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(name),
            "namespace": str(meta["namespace"]),
            "labels": _template_labels(name),
            "ownerReferences": [owner_reference(trainingjob)],
        },
        "spec": {
            "clusterIP": "None",
            "selector": _template_labels(name),
            # Workers rendezvous before any of them is Ready.
            "publishNotReadyAddresses": True,
            "ports": [
                {
                    "name": "master",
                    "port": spec.master_port,
                    "targetPort": spec.master_port,
                    "protocol": "TCP",
                }
            ],
        },
    }


# ------------------------------------------------------------------------------------ metrics


def _owned_pods(
    pods: Sequence[Mapping[str, Any]], job: Mapping[str, Any]
) -> list[Mapping[str, Any]]:
    """The pods of ``job`` (by its uid; all of them when the Job's uid is unknown)."""
    uid = (job.get("metadata") or {}).get("uid")
    return [
        p
        for p in pods
        if uid is None
        or any(r.get("uid") == uid for r in (p.get("metadata") or {}).get("ownerReferences") or [])
    ]


def trainer_message(
    pods: Sequence[Mapping[str, Any]], job: Mapping[str, Any], workers: int
) -> str | None:
    """The termination message to read metrics from: index 0's with several workers, else the latest."""
    owned = _owned_pods(pods, job)
    if workers > 1:
        leaders = [
            p
            for p in owned
            if ((p.get("metadata") or {}).get("annotations") or {}).get(COMPLETION_INDEX_ANNOTATION)
            == "0"
        ]
        message = latest_message(leaders, succeeded_only=True) or latest_message(leaders)
        if message is not None:
            return message
    return latest_message(owned, succeeded_only=True) or latest_message(owned)


@dataclass(frozen=True)
class Verdict:
    """The evaluation gate's outcome, as the ModelAccepted condition and status.evaluation."""

    accepted: bool
    reason: Reason
    message: str
    result: dict[str, Any] | None


def _fmt(value: float) -> str:
    return f"{value:.6g}"


def evaluate(evaluation: Evaluation | None, metrics: Mapping[str, float] | None) -> Verdict:
    """Apply the gate to a succeeded training's metrics."""
    if evaluation is None:
        return Verdict(
            True,
            Reason.NO_EVALUATION,
            "no evaluation gate (spec.evaluation unset); model accepted",
            None,
        )
    metric, threshold = evaluation.metric, evaluation.threshold
    value = (metrics or {}).get(metric)
    if value is None:
        reported = ", ".join(sorted(metrics or {})) or "none"
        return Verdict(
            False,
            Reason.METRIC_MISSING,
            f"metric {metric} (spec.evaluation.metric) was not reported by the trainer; reported: {reported}",
            {
                "metric": metric,
                "threshold": threshold,
                "accepted": False,
                "verdict": Reason.METRIC_MISSING.value,
            },
        )
    if evaluation.direction == Direction.MIN:
        accepted, op = value <= threshold, ("<=" if value <= threshold else ">")
    else:
        accepted, op = value >= threshold, (">=" if value >= threshold else "<")
    return Verdict(
        accepted,
        Reason.THRESHOLD_MET if accepted else Reason.BELOW_THRESHOLD,
        f"{metric} {_fmt(value)} {op} {_fmt(threshold)}",
        {
            "metric": metric,
            "value": value,
            "threshold": threshold,
            "accepted": accepted,
            "verdict": (Reason.THRESHOLD_MET if accepted else Reason.BELOW_THRESHOLD).value,
        },
    )


# ------------------------------------------------------------------------------------ rejection


#: Ends the InvalidSpec message of a Job the API server refused; not retried until the spec changes.
REJECTED = " (the API server rejected the training Job)"

_FIELD_MAP = (
    ("spec.template.spec.containers[0].resources", "spec.resources"),
    ("spec.template.spec.containers[0].env", "spec.env"),
    ("spec.template.spec.containers[0].image", "spec.image"),
    ("spec.template.spec.containers[0].command", "spec.command"),
    ("spec.template.spec.containers[0].args", "spec.args"),
    ("spec.template.spec.nodeSelector", "spec.nodeSelector"),
    ("spec.template.spec.tolerations", "spec.tolerations"),
    ("spec.template.spec.serviceAccountName", "spec.serviceAccountName"),
    ("spec.activeDeadlineSeconds", "spec.activeDeadlineSeconds"),
    ("spec.ttlSecondsAfterFinished", "spec.ttlSecondsAfterFinished"),
    ("spec.backoffLimit", "spec.backoffLimit"),
    ("metadata.labels", "spec.queueName"),
)


def describe_rejection(status: Mapping[str, Any] | None, fallback: str) -> str:
    """One line naming the TrainingJob field behind the API server's refusal of the Job."""
    status = status or {}
    causes = (status.get("details") or {}).get("causes") or []
    parts = []
    for cause in causes:
        job_field = str(cause.get("field") or "")
        spec_field = next(
            (ours for theirs, ours in _FIELD_MAP if job_field.startswith(theirs)),
            job_field or "spec",
        )
        parts.append(f"{spec_field}: {cause.get('message') or ''}".strip())
    detail = "; ".join(parts) or str(status.get("message") or fallback)
    return f"{detail}{REJECTED}"


# ------------------------------------------------------------------------------------ state machine


def needs_pods(obs: Observation) -> bool:
    """Whether this reconcile records a finished Job, so the pods' messages must be listed."""
    stored = obs.trainingjob.get("status") or {}
    if obs.job is None or stored.get("phase") in TERMINAL_PHASES or _evaluating(stored):
        return False
    return observe_job(obs.job).state in (JobState.SUCCEEDED, JobState.FAILED)


def needs_eval_pods(obs: Observation) -> bool:
    """Whether this reconcile records a finished evaluation Job, so its pods must be listed."""
    stored = obs.trainingjob.get("status") or {}
    if obs.eval_job is None or not _evaluating(stored):
        return False
    return observe_job(obs.eval_job).state in (JobState.SUCCEEDED, JobState.FAILED)


def _evaluating(stored: Mapping[str, Any]) -> bool:
    """Whether the training succeeded and the evaluation gate has not decided yet."""
    return (stored.get("evaluation") or {}).get("verdict") == Reason.EVALUATING.value


def _parse_spec(trainingjob: Mapping[str, Any]) -> TrainingJobSpec:
    try:
        spec = TrainingJobSpec.model_validate(trainingjob.get("spec") or {})
    except ValidationError as exc:
        raise SpecError(spec_error(exc)) from None
    check_spec(spec)
    return spec


def _owned_by(child: Mapping[str, Any] | None, uid: str) -> bool:
    refs = ((child or {}).get("metadata") or {}).get("ownerReferences") or []
    return any(r.get("uid") == uid for r in refs)


class _StatusBuilder:
    """Builds the desired status from the stored one (keeping condition transition times)."""

    def __init__(self, stored: Mapping[str, Any], generation: int | None, now: datetime) -> None:
        self.stored = stored
        self.generation = generation
        self.now = now
        self.status: dict[str, Any] = {"observedGeneration": generation}
        self.conditions: list[dict[str, Any]] = [dict(c) for c in stored.get("conditions") or []]

    def condition(self, type: str, status: bool | None, reason: Reason, message: str) -> None:
        value = (
            ConditionStatus.UNKNOWN
            if status is None
            else ConditionStatus.TRUE
            if status
            else ConditionStatus.FALSE
        )
        self.conditions = set_condition(
            self.conditions,
            type=type,
            status=value.value,
            reason=reason.value,
            message=message,
            generation=self.generation,
            now=self.now,
        )

    def ready(self, phase: TrainingPhase, status: bool, reason: Reason, message: str) -> None:
        self.status["phase"] = phase.value
        self.condition(ConditionType.READY, status, reason, message)

    def finish(self) -> dict[str, Any]:
        self.status["conditions"] = self.conditions
        return self.status


def _lineage_status(lineage: Lineage, job: str) -> dict[str, Any]:
    return {
        "jobName": job,
        "run": lineage.run,
        "datasetUri": lineage.dataset_uri,
        "datasetVersion": lineage.dataset_version,
        "modelUri": lineage.model_uri,
    }


def _transition_events(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> list[Event]:
    """One Event per condition whose reason (or status) changed, in Ready, ModelAccepted order."""
    events = []
    for type in (ConditionType.READY, ConditionType.MODEL_ACCEPTED):
        before = get_condition(stored.get("conditions"), type)
        after = get_condition(desired.get("conditions"), type)
        if after is None:
            continue
        if type == ConditionType.MODEL_ACCEPTED and after.get("status") == ConditionStatus.UNKNOWN:
            continue  # the gate is still evaluating: Ready's Evaluating Event says so
        if before is not None and (before.get("reason"), before.get("status")) == (
            after.get("reason"),
            after.get("status"),
        ):
            continue
        reason = str(after.get("reason"))
        events.append(
            Event(reason, str(after.get("message") or ""), warning=reason in WARNING_REASONS)
        )
    return events


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not start or not end:
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max((b - a).total_seconds(), 0.0)


def decide(obs: Observation) -> Decision:
    """The TrainingJob state machine: observed world -> whole status, child actions, Events.

    See the module docstring for the lifecycle. A finished TrainingJob's status is final.
    """
    tj = obs.trainingjob
    meta = tj["metadata"]
    uid = str(meta["uid"])
    stored: Mapping[str, Any] = tj.get("status") or {}
    generation = meta.get("generation")

    if stored.get("phase") in TERMINAL_PHASES and stored.get("completionTime"):
        return Decision(status=dict(stored))

    job = obs.job if _owned_by(obs.job, uid) else None
    service = obs.service if _owned_by(obs.service, uid) else None
    build = _StatusBuilder(stored, generation, obs.now)
    decision = Decision(status={})
    # Carry over lineage and times already recorded (merge-patch keeps them anyway; the
    # desired status is whole so that transition Events can be computed from it).
    for key in (
        "jobName",
        "run",
        "datasetUri",
        "datasetVersion",
        "modelUri",
        "startTime",
        "attempts",
        "metrics",
        "restarts",
    ):
        if stored.get(key) is not None:
            build.status[key] = stored[key]

    try:
        spec = _parse_spec(tj)
    except SpecError as exc:
        if job is None:
            build.ready(TrainingPhase.PENDING, False, Reason.INVALID_SPEC, str(exc))
        return _finish(decision, build, stored)

    source = ((obs.dataset or {}).get("spec") or {}).get("source") or {}
    secret_name = (source.get("secretRef") or {}).get("name")
    secret = str(secret_name) if secret_name else None

    if _evaluating(stored) and spec.evaluation is not None:
        _evaluate(obs, decision, build, stored, spec, secret, "")
        return _finish(decision, build, stored)

    if obs.job_rejection is not None:
        build.ready(TrainingPhase.PENDING, False, Reason.INVALID_SPEC, obs.job_rejection)
        build.status["jobName"] = None
        return _finish(decision, build, stored)

    if job is None:
        return _no_job(obs, decision, build, stored, spec, secret)
    return _with_job(obs, decision, build, stored, spec, job, service, secret)


def _no_job(
    obs: Observation,
    decision: Decision,
    build: _StatusBuilder,
    stored: Mapping[str, Any],
    spec: TrainingJobSpec,
    secret: str | None,
) -> Decision:
    tj = obs.trainingjob
    meta = tj["metadata"]
    recreate = lineage_from_status(stored, secret) if stored.get("jobName") else None
    if recreate is None:
        waiting = dataset_waiting_message(
            obs.dataset, spec.dataset_ref.name, spec.dataset_ref.version
        )
        if waiting is not None:
            build.ready(TrainingPhase.PENDING, False, Reason.DATASET_NOT_READY, waiting)
            return _finish(decision, build, stored)
        assert obs.dataset is not None
        before = get_condition(stored.get("conditions"), ConditionType.READY) or {}
        if (
            before.get("reason") == Reason.INVALID_SPEC
            and str(before.get("message") or "").endswith(REJECTED)
            and before.get("observedGeneration") == meta.get("generation")
        ):
            # The API server refused this spec's Job; asking again changes nothing.
            build.ready(TrainingPhase.PENDING, False, Reason.INVALID_SPEC, str(before["message"]))
            return _finish(decision, build, stored)
        try:
            lineage = lineage_from_dataset(meta, spec, obs.dataset, obs.settings)
        except SpecError as exc:
            build.ready(TrainingPhase.PENDING, False, Reason.INVALID_SPEC, str(exc))
            return _finish(decision, build, stored)
    else:
        lineage = recreate
    job = build_job(tj, spec, lineage, obs.settings)
    decision.create_job = job
    if spec.workers > 1:
        decision.create_service = build_service(tj, spec)
    build.status.update(_lineage_status(lineage, job["metadata"]["name"]))
    build.status.setdefault("attempts", 0)
    workers = f"{spec.workers} workers" if spec.workers > 1 else "1 worker"
    before_reason = (get_condition(stored.get("conditions"), ConditionType.READY) or {}).get(
        "reason"
    )
    if recreate is not None and before_reason == Reason.GANG_RESTART:
        # The replacement of a gang-restarted Job: the restart's message still says it all.
        build.ready(
            TrainingPhase.RUNNING,
            False,
            Reason.GANG_RESTART,
            str(
                (get_condition(stored.get("conditions"), ConditionType.READY) or {}).get("message")
                or ""
            ),
        )
        return _finish(decision, build, stored)
    if recreate is not None:
        reason, message = (
            Reason.JOB_RECREATED,
            f"Job {job['metadata']['name']} was deleted before the training finished; recreated it "
            f"({workers}, dataset version {lineage.dataset_version or '(none)'})",
        )
    elif job["spec"]["suspend"]:
        reason, message = _suspended(spec, job["metadata"]["name"])
    else:
        reason, message = (
            Reason.JOB_CREATED,
            _created_message(job["metadata"]["name"], spec, lineage),
        )
    build.ready(TrainingPhase.PENDING, False, reason, message)
    return _finish(decision, build, stored)


def _created_message(job: str, spec: TrainingJobSpec, lineage: Lineage | None) -> str:
    workers = f"{spec.workers} workers" if spec.workers > 1 else "1 worker"
    version = lineage.dataset_version if lineage is not None else ""
    return (
        f"created Job {job} ({workers}) on dataset {spec.dataset_ref.name} "
        f"version {version or '(none)'}"
    )


def _suspended(spec: TrainingJobSpec, job: str) -> tuple[Reason, str]:
    if spec.queue_name and not spec.suspend:
        return (
            Reason.SUSPENDED,
            f"Job {job} is waiting for Kueue queue {spec.queue_name} to admit it",
        )
    return Reason.SUSPENDED, f"Job {job} is suspended (spec.suspend); set it to false to start"


def _never_started(job: Mapping[str, Any]) -> bool:
    status = job.get("status") or {}
    return not (
        status.get("startTime")
        or status.get("active")
        or status.get("succeeded")
        or status.get("failed")
        or status.get("ready")
    )


def _stale(
    obs: Observation,
    spec: TrainingJobSpec,
    job: Mapping[str, Any],
    desired: Mapping[str, Any],
    lineage: Lineage,
    stored: Mapping[str, Any],
) -> str | None:
    """Why a Job that has not started must be replaced (spec edited, data moved on), or None."""
    if not _never_started(job):
        return None
    have_hash = ((job.get("metadata") or {}).get("annotations") or {}).get(SPEC_HASH_ANNOTATION)
    if have_hash != desired["metadata"]["annotations"][SPEC_HASH_ANNOTATION]:
        # Edits before the start are allowed: the CRD freezes the spec only once started.
        return "spec changed"
    if stored.get("startTime") or obs.dataset is None:
        return None  # a recreated run keeps the lineage it started with
    if dataset_waiting_message(obs.dataset, spec.dataset_ref.name, spec.dataset_ref.version):
        return None
    source = (obs.dataset.get("spec") or {}).get("source") or {}
    version = str((obs.dataset.get("status") or {}).get("version") or "")
    if (source.get("uri"), version) != (lineage.dataset_uri, lineage.dataset_version):
        # The data at the URI is the new version now: train on it and record that.
        return f"dataset {spec.dataset_ref.name} moved to version {version or '(none)'}"
    return None


def _with_job(
    obs: Observation,
    decision: Decision,
    build: _StatusBuilder,
    stored: Mapping[str, Any],
    spec: TrainingJobSpec,
    job: Mapping[str, Any],
    service: Mapping[str, Any] | None,
    secret: str | None,
) -> Decision:
    tj = obs.trainingjob
    job_meta = job.get("metadata") or {}
    current_name = str(job_meta.get("name"))
    lineage = lineage_from_job(job, secret) or lineage_from_status(stored, secret)
    observed = observe_job(job)
    if observed.state == JobState.SUSPENDED and not (job.get("spec") or {}).get("suspend"):
        # Unsuspended; the Job controller has not cleared its Suspended condition yet.
        observed = replace(observed, state=JobState.PENDING)
    finished = observed.state in (JobState.SUCCEEDED, JobState.FAILED)
    if lineage is not None:
        build.status.update(_lineage_status(lineage, current_name))
        desired = build_job(tj, spec, lineage, obs.settings)
        stale = _stale(obs, spec, job, desired, lineage, stored)
        if stale is not None:
            # A Job's template is immutable, so a not-yet-started Job is replaced.
            decision.delete_job = current_name
            build.status["jobName"] = None
            build.ready(
                TrainingPhase.PENDING,
                False,
                Reason.JOB_CREATED,
                f"{stale} before the training started; replacing Job {current_name}",
            )
            return _finish(decision, build, stored)
        want_suspend = bool(desired["spec"]["suspend"])
        if (
            not spec.queue_name
            and not finished
            and bool((job.get("spec") or {}).get("suspend")) != want_suspend
        ):
            decision.patch_job = {"spec": {"suspend": want_suspend}}
            observed = replace(
                observed, state=JobState.SUSPENDED if want_suspend else JobState.PENDING
            )
    if spec.workers > 1 and service is None and not finished:
        decision.create_service = build_service(tj, spec)

    attempts = max(int(stored.get("attempts") or 0), observed.failed)
    build.status["attempts"] = attempts
    start = observed.start_time or stored.get("startTime")
    state = observed.state
    stuck = (
        _stuck(_owned_pods(obs.watched_pods, job), stored, current_name)
        if state in (JobState.PENDING, JobState.RUNNING)
        else None
    )
    if state == JobState.RUNNING:
        build.status["startTime"] = start or rfc3339(obs.now)
    if stuck is not None:
        phase = TrainingPhase.RUNNING if state == JobState.RUNNING else TrainingPhase.PENDING
        build.ready(phase, False, stuck.reason, _stuck_message(current_name, stuck))
    elif state == JobState.SUSPENDED:
        reason, message = _suspended(spec, current_name)
        if start:  # paused mid-run: its pods are stopped, resuming keeps the pinned data
            message = (
                f"Job {current_name} is suspended while running (spec.suspend); set it to "
                f"false to resume on dataset version {build.status.get('datasetVersion')}"
            )
        build.ready(
            TrainingPhase.SUSPENDED if start else TrainingPhase.PENDING, False, reason, message
        )
    elif state == JobState.PENDING:
        before = get_condition(stored.get("conditions"), ConditionType.READY) or {}
        if before.get("reason") in (Reason.JOB_CREATED, Reason.JOB_RECREATED):
            # Still the Job this reason announced: keep its message (no write, no Event).
            reason, message = Reason(before["reason"]), str(before.get("message") or "")
        else:
            reason, message = Reason.JOB_CREATED, _created_message(current_name, spec, lineage)
        build.ready(TrainingPhase.PENDING, False, reason, message)
    elif state == JobState.RUNNING:
        build.ready(
            TrainingPhase.RUNNING,
            False,
            Reason.RUNNING,
            f"Job {current_name} is running ({spec.workers} worker{'s' if spec.workers > 1 else ''})",
        )
    elif (
        state == JobState.FAILED
        and (
            gang := on_job_failed(
                spec, observed.reason, observed.message, restarts_of(tj, job), current_name
            )
        )
        and gang.restart
    ):
        # The whole group restarts: a fresh Job, same pinned data and run (kyklos.logic.gang).
        decision.delete_job = current_name
        build.status["restarts"] = gang.restarts
        build.ready(TrainingPhase.RUNNING, False, Reason.GANG_RESTART, gang.message)
    else:
        _finished(
            obs,
            decision,
            build,
            spec,
            job,
            observed.state,
            observed.reason,
            observed.message,
            start,
            observed.completion_time,
            current_name,
            attempts,
        )
    if build.status.get("startTime") and not stored.get("startTime"):
        decision.transitions.insert(0, "started")
    return _finish(decision, build, stored)


def _stuck_prefix(job: str) -> str:
    """How a Ready message about a stuck pod of Job ``job`` starts."""
    return f"Job {job}: "


def _stuck_message(job: str, stuck: PodStuck) -> str:
    return _stuck_prefix(job) + stuck.message


def _stuck(
    pods: Sequence[Mapping[str, Any]], stored: Mapping[str, Any], job: str
) -> PodStuck | None:
    """Why the Job's pod does not start; while no pod is live (deleted at the deadline, not
    made again yet) the stored diagnosis stands: a pod that recovered would be live."""
    stuck = first_stuck_pod(pods)
    if stuck is not None or any(is_live(p) for p in pods):
        return stuck
    return held_diagnosis(
        get_condition(stored.get("conditions"), ConditionType.READY), _stuck_prefix(job)
    )


def _finished(
    obs: Observation,
    decision: Decision,
    build: _StatusBuilder,
    spec: TrainingJobSpec,
    job: Mapping[str, Any],
    state: JobState,
    job_reason: str,
    job_message: str,
    start: str | None,
    completion: str | None,
    current_name: str,
    attempts: int,
) -> None:
    now = rfc3339(obs.now)
    failed_at = None
    if state == JobState.FAILED:
        cond: Mapping[str, Any] = next(
            (
                c
                for c in (job.get("status") or {}).get("conditions") or []
                if c.get("type") == "Failed"
            ),
            {},
        )
        failed_at = cond.get("lastTransitionTime")
    end = completion or failed_at or now
    build.status["startTime"] = start or end
    build.status["completionTime"] = end
    metrics = parse_metrics(trainer_message(obs.pods or [], job, spec.workers))
    build.status["metrics"] = metrics.values
    duration = _seconds_between(build.status["startTime"], end)
    decision.duration_seconds = duration
    took = f" in {duration:.0f}s" if duration is not None else ""
    reported = ", ".join(f"{k}={_fmt(v)}" for k, v in (metrics.values or {}).items())
    if metrics.error is not None:
        decision.events.append(
            Event(
                Reason.METRICS_INVALID.value,
                f"{metrics.error} (see the trainer metrics contract)",
                warning=True,
            )
        )
    if state == JobState.SUCCEEDED:
        decision.transitions.append("succeeded")
        build.ready(
            TrainingPhase.SUCCEEDED,
            True,
            Reason.SUCCEEDED,
            f"Job {current_name} succeeded{took}"
            + (f"; metrics {reported}" if reported else "; no metrics reported"),
        )
        if spec.evaluation is not None and spec.evaluation.runs_job():
            # The model is scored again by the evaluation Job; the gate decides after it.
            del build.status["completionTime"]
            decision.duration_seconds = None
            _evaluate(
                obs,
                decision,
                build,
                build.stored,
                spec,
                None,
                f"Job {current_name} succeeded{took}",
            )
            return
        verdict = evaluate(spec.evaluation, metrics.values)
        build.status["evaluation"] = verdict.result
        build.condition(
            ConditionType.MODEL_ACCEPTED, verdict.accepted, verdict.reason, verdict.message
        )
        if spec.evaluation is not None:
            decision.verdict = evaluation.Verdict(
                verdict.accepted,
                verdict.reason,
                verdict.message,
                challenger=(verdict.result or {}).get("value"),
            )
    else:
        decision.transitions.append("failed")
        reason = {
            "BackoffLimitExceeded": Reason.BACKOFF_LIMIT_EXCEEDED,
            "DeadlineExceeded": Reason.DEADLINE_EXCEEDED,
        }.get(job_reason, Reason.FAILED)
        # The pod that never started is gone with the Job; keep its cause in the record.
        detail = with_held_cause(
            job_message or job_reason or "the Job failed",
            get_condition(build.stored.get("conditions"), ConditionType.READY),
        )
        build.ready(
            TrainingPhase.FAILED,
            False,
            reason,
            f"Job {current_name} failed after {attempts} failed attempt{'s' if attempts != 1 else ''}{took}: {detail}",
        )
        build.status["evaluation"] = None
        build.condition(
            ConditionType.MODEL_ACCEPTED,
            False,
            Reason.FAILED,
            "training failed; there is no model to accept",
        )


def _finish(decision: Decision, build: _StatusBuilder, stored: Mapping[str, Any]) -> Decision:
    decision.status = build.finish()
    decision.events = _transition_events(stored, decision.status) + decision.events
    return decision


# ------------------------------------------------------------------------------------ evaluation gate


def _past_deadline(spec: TrainingJobSpec, status: Mapping[str, Any], now: datetime) -> bool:
    """Whether spec.activeDeadlineSeconds has passed since the training started."""
    start = status.get("startTime")
    if spec.active_deadline_seconds is None or not start:
        return False
    waited = _seconds_between(str(start), rfc3339(now))
    return waited is not None and waited > spec.active_deadline_seconds


def _eval_plan(
    obs: Observation, spec: TrainingJobSpec, status: Mapping[str, Any]
) -> evaluation.Plan | tuple[Reason, str]:
    """What to score on which data, or (reason, message) saying what the gate waits for."""
    gate = spec.evaluation
    assert gate is not None
    own = gate.dataset_ref is None or gate.dataset_ref.name == spec.dataset_ref.name
    ref = gate.dataset_ref or spec.dataset_ref
    body = obs.dataset if own else obs.eval_dataset
    pinned = gate.dataset_ref.version if gate.dataset_ref is not None else None
    waiting = dataset_waiting_message(body, ref.name, pinned)
    if waiting is not None:
        if gate.dataset_ref is not None:
            waiting = waiting.replace("spec.datasetRef", "spec.evaluation.datasetRef")
        return Reason.DATASET_NOT_READY, f"evaluation waits: {waiting}"
    assert body is not None
    champion_model = champion_deployment = None
    if gate.compare_to is not None:
        champion_deployment = gate.compare_to.model_deployment_ref.name
        if obs.champion is None:
            return (
                Reason.CHAMPION_NOT_FOUND,
                f"ModelDeployment {champion_deployment} "
                "(spec.evaluation.compareTo.modelDeploymentRef.name) not found; the gate waits "
                "for it (bounded by spec.activeDeadlineSeconds)",
            )
        stable = (obs.champion.get("status") or {}).get("stableModel")
        champion_model = str(stable) if stable else None
    source = (body.get("spec") or {}).get("source") or {}
    secret = (source.get("secretRef") or {}).get("name")
    return evaluation.Plan(
        dataset=ref.name,
        dataset_uri=str(source["uri"]),
        dataset_version=str((body.get("status") or {}).get("version") or ""),
        challenger_model=str(status.get("modelUri") or ""),
        champion_model=champion_model,
        champion_deployment=champion_deployment,
        dataset_secret=str(secret) if secret else None,
    )


def _plan_record(plan: evaluation.Plan, job: str) -> dict[str, Any]:
    return {
        "verdict": Reason.EVALUATING.value,
        "jobName": job,
        "dataset": plan.dataset,
        "datasetVersion": plan.dataset_version,
        "champion": (
            {"modelDeployment": plan.champion_deployment, "model": plan.champion_model}
            if plan.champion_deployment
            else None
        ),
        "challenger": {"model": plan.challenger_model},
    }


def _evaluating_message(trained: str, job: str, plan: evaluation.Plan) -> str:
    if plan.champion_model:
        against = (
            f" against champion {plan.champion_model} (ModelDeployment {plan.champion_deployment})"
        )
    elif plan.champion_deployment:
        against = (
            f" (ModelDeployment {plan.champion_deployment} serves no model yet: threshold only)"
        )
    else:
        against = ""
    return (
        f"{trained}; evaluating in Job {job}: challenger {plan.challenger_model}{against} "
        f"on dataset {plan.dataset} version {plan.dataset_version or '(none)'}"
    )


def _evaluate(
    obs: Observation,
    decision: Decision,
    build: _StatusBuilder,
    stored: Mapping[str, Any],
    spec: TrainingJobSpec,
    secret: str | None,
    trained: str,
) -> None:
    """The gate after a succeeded training: create, watch and judge the evaluation Job."""
    gate = spec.evaluation
    assert gate is not None
    tj = obs.trainingjob
    uid = str(tj["metadata"]["uid"])
    name = str(tj["metadata"]["name"])
    eval_name = evaluation.eval_job_name(name)
    record = dict(stored.get("evaluation") or {})
    trained = trained or f"Job {build.status.get('jobName') or job_name(name)} succeeded"
    eval_job = obs.eval_job if _owned_by(obs.eval_job, uid) else None
    base = {"metric": gate.metric, "threshold": gate.threshold}

    if eval_job is None:
        if obs.eval_job_rejection is not None:
            failed = evaluation.Verdict(
                False,
                Reason.EVALUATION_FAILED,
                f"the API server rejected the evaluation Job: {obs.eval_job_rejection}",
            )
            _conclude(obs, decision, build, spec, record, failed, None, {})
            return
        plan = _eval_plan(obs, spec, build.status)
        if isinstance(plan, tuple):
            reason, message = plan
            if _past_deadline(spec, build.status, obs.now):
                failed = evaluation.Verdict(
                    False,
                    Reason.EVALUATION_FAILED,
                    f"spec.activeDeadlineSeconds ({spec.active_deadline_seconds}) passed "
                    f"before the evaluation could start: {message}",
                )
                _conclude(obs, decision, build, spec, record, failed, None, {})
                return
            build.status["evaluation"] = {**base, "verdict": Reason.EVALUATING.value}
            build.ready(TrainingPhase.RUNNING, False, reason, f"{trained}; {message}")
            build.condition(ConditionType.MODEL_ACCEPTED, None, Reason.EVALUATING, message)
            return
        recorded = record.get("champion") or {}
        if record.get("jobName") and recorded.get("model"):
            # A deleted evaluation Job is made again against the champion recorded first.
            plan = replace(
                plan,
                champion_model=str(recorded["model"]),
                champion_deployment=str(recorded.get("modelDeployment") or "") or None,
            )
        lineage = lineage_from_status(build.status, secret)
        assert lineage is not None
        trainer_job = build_job(tj, spec, lineage, obs.settings)
        decision.create_eval_job = evaluation.build_eval_job(
            trainer_job,
            gate,
            plan,
            pvc_root=obs.settings.pvc_root,
            user_env=spec.env,
            labels=child_labels(KIND, name, evaluation.COMPONENT_EVALUATOR),
            artifacts_secret=obs.settings.artifacts_secret,
        )
        build.status["evaluation"] = {**base, **_plan_record(plan, eval_name)}
        message = _evaluating_message(trained, eval_name, plan)
        build.ready(TrainingPhase.RUNNING, False, Reason.EVALUATING, message)
        build.condition(ConditionType.MODEL_ACCEPTED, None, Reason.EVALUATING, message)
        return

    from_job = evaluation.plan_from_job(eval_job)
    if from_job is None:
        fallback = _eval_plan(obs, spec, build.status)
        if isinstance(fallback, tuple):
            build.ready(TrainingPhase.RUNNING, False, *fallback)
            return
        from_job = fallback
    plan = from_job
    build.status["evaluation"] = {**base, **_plan_record(plan, eval_name)}
    observed = observe_job(eval_job)
    ready = get_condition(stored.get("conditions"), ConditionType.READY)
    if observed.state not in (JobState.SUCCEEDED, JobState.FAILED):
        stuck = _stuck(_owned_pods(obs.watched_pods, eval_job), stored, eval_name)
        message = _evaluating_message(trained, eval_name, plan)
        if stuck is not None:
            build.ready(
                TrainingPhase.RUNNING, False, stuck.reason, _stuck_message(eval_name, stuck)
            )
        else:
            if (ready or {}).get("reason") == Reason.EVALUATING:
                message = str((ready or {}).get("message") or message)  # unchanged: no write
            build.ready(TrainingPhase.RUNNING, False, Reason.EVALUATING, message)
        accepted = get_condition(build.conditions, ConditionType.MODEL_ACCEPTED) or {}
        if accepted.get("reason") != Reason.EVALUATING:
            build.condition(ConditionType.MODEL_ACCEPTED, None, Reason.EVALUATING, message)
        return
    failure = ""
    if observed.state == JobState.FAILED:
        failure = with_held_cause(
            f"evaluation Job {eval_name} failed: {observed.message or observed.reason or 'failed'}",
            ready,
        )
    scores = evaluation.read_scores(obs.eval_pods or [], plan, failure)
    champion = scores.get(evaluation.CHAMPION) if plan.champion_model else None
    verdict = evaluation.verdict(
        gate, scores[evaluation.CHALLENGER], champion, champion_name=plan.champion_model or ""
    )
    _conclude(obs, decision, build, spec, record, verdict, plan, scores, observed.completion_time)


def _conclude(
    obs: Observation,
    decision: Decision,
    build: _StatusBuilder,
    spec: TrainingJobSpec,
    record: Mapping[str, Any],
    verdict: evaluation.Verdict,
    plan: evaluation.Plan | None,
    scores: Mapping[str, evaluation.Scores],
    completion: str | None = None,
) -> None:
    """Record the gate's verdict: the TrainingJob is finished (Succeeded: the training did)."""
    gate = spec.evaluation
    assert gate is not None
    build.status["completionTime"] = completion or rfc3339(obs.now)
    decision.duration_seconds = _seconds_between(
        build.status.get("startTime"), build.status["completionTime"]
    )
    result: dict[str, Any] = {
        "metric": gate.metric,
        "threshold": gate.threshold,
        "value": verdict.challenger,
        "accepted": verdict.accepted,
        "delta": verdict.delta,
        "relativeDelta": verdict.relative_delta,
    }
    if plan is not None:
        name = str(obs.trainingjob["metadata"]["name"])
        result.update(_plan_record(plan, evaluation.eval_job_name(name)))
        challenger = scores.get(evaluation.CHALLENGER)
        result["challenger"] = {
            "model": plan.challenger_model,
            "metrics": dict(challenger.metrics) if challenger and challenger.metrics else None,
        }
        champion = scores.get(evaluation.CHAMPION)
        if plan.champion_deployment:
            result["champion"] = {
                "modelDeployment": plan.champion_deployment,
                "model": plan.champion_model,
                "metrics": dict(champion.metrics) if champion and champion.metrics else None,
                "error": (champion.error[:1000] if champion and champion.error else None),
            }
    else:
        result.update({k: record.get(k) for k in ("jobName", "dataset", "datasetVersion")})
    result["verdict"] = verdict.reason.value
    build.status["evaluation"] = result
    job = build.status.get("jobName") or ""
    build.ready(
        TrainingPhase.SUCCEEDED,
        True,
        Reason.SUCCEEDED,
        f"Job {job} succeeded; evaluation gate: {verdict.reason.value}",
    )
    build.condition(ConditionType.MODEL_ACCEPTED, verdict.accepted, verdict.reason, verdict.message)
    decision.verdict = verdict
