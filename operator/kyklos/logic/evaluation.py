"""The evaluation gate: champion vs challenger on one pinned dataset version.

Pure: no kopf, no Kubernetes client, no clock. ``kyklos.logic.training`` runs it after a
training Job succeeds when ``spec.evaluation`` sets ``datasetRef``, ``compareTo`` or
``evaluator`` (docs/architecture.md §9).

Evaluator contract
==================

The evaluation Job ``<name>-eval`` has one pod with one container per model it scores:
``challenger`` (the model just trained, ``status.modelUri``) and, with ``compareTo`` and a
ModelDeployment that serves a model, ``champion`` (its ``status.stableModel`` when the
evaluation started, recorded in ``status.evaluation.champion.model``). Both run the same
evaluator (``spec.evaluation.evaluator``, default the trainer's image, command and args) on
the same Dataset version, each with its own termination message and no shared writable
volume, so neither can see the other's output. Each container gets:

| variable | value |
| --- | --- |
| ``KYKLOS_MODE`` | ``evaluate`` |
| ``KYKLOS_EVALUATION_ROLE`` | ``challenger`` or ``champion`` |
| ``KYKLOS_MODEL_URI`` (+ ``KYKLOS_MODEL_PATH``) | the model to score (path for ``file://``/``pvc://``) |
| ``KYKLOS_DATASET_URI`` (+ ``KYKLOS_DATASET_PATH``) | the data to score on |
| ``KYKLOS_DATASET_VERSION`` | its version, pinned in ``status.evaluation.datasetVersion`` |
| ``KYKLOS_HYPERPARAMETERS``, ``KYKLOS_RUN``, ``KYKLOS_TRAININGJOB`` | as for the trainer |
| ``KYKLOS_METRICS_FILE`` | ``/dev/termination-log`` |

and writes one JSON object of metrics to the termination log exactly as a trainer does.

Verdict (``verdict``): the challenger's value must pass ``threshold`` in ``direction``; with
``compareTo`` it must also beat the champion, MLflow ``MetricThreshold`` style:
``delta = challenger - champion`` (``max``) or ``champion - challenger`` (``min``), and the
challenger is accepted when ``delta > 0``, ``delta >= minAbsoluteChange`` and
``delta / |champion| >= minRelativeChange``. When the champion's value is 0 the relative
change is undefined (``relativeDelta`` unset) and only ``delta > 0`` is asked of it (MLflow's
fallback). A tie keeps the champion.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kyklos.api.common import Reason
from kyklos.api.training import Direction, Evaluation, OnChampionError
from kyklos.logic.jobs import TERMINATION_MESSAGE_LIMIT, termination_message
from kyklos.logic.naming import MAX_NAME, child_name
from kyklos.logic.podspec import TERMINATION_PATH, claim_of, local_path, volume_name

COMPONENT_EVALUATOR = "evaluator"
CHALLENGER = "challenger"
CHAMPION = "champion"
MAX_METRICS = 64
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

CHAMPION_MODEL_ANNOTATION = "kyklos.io/champion-model"
CHAMPION_DEPLOYMENT_ANNOTATION = "kyklos.io/champion-modeldeployment"
CHALLENGER_MODEL_ANNOTATION = "kyklos.io/challenger-model"
EVAL_DATASET_ANNOTATION = "kyklos.io/evaluation-dataset"
EVAL_DATASET_URI_ANNOTATION = "kyklos.io/dataset-uri"
EVAL_DATASET_VERSION_ANNOTATION = "kyklos.io/dataset-version"

#: Variables the evaluator gets from Kyklos (on top of the trainer's reserved ones).
EVALUATOR_ENV = ("KYKLOS_MODE", "KYKLOS_EVALUATION_ROLE")


# ------------------------------------------------------------------------------------ metrics


@dataclass(frozen=True)
class Metrics:
    """The metrics a trainer or evaluator reported, or why its termination message could not be read."""

    values: dict[str, float] | None
    error: str | None = None


def parse_metrics(message: str | None) -> Metrics:
    """Read a termination message: every top-level finite number of a JSON object (at most 64)."""
    if message is None or not message.strip():
        return Metrics(None)
    size = len(message.encode())
    try:
        data = json.loads(message)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, huge integers, deep nesting
        reason = (
            f"{exc.msg} at character {exc.pos}"
            if isinstance(exc, json.JSONDecodeError)
            else str(exc).split(";")[0]
        )
        hint = (
            f" (it is {size} bytes; the limit is {TERMINATION_MESSAGE_LIMIT}, so it was probably truncated)"
            if size >= TERMINATION_MESSAGE_LIMIT
            else ""
        )
        return Metrics(None, f"termination message is not JSON: {reason}{hint}")
    if not isinstance(data, dict):
        return Metrics(
            None, f"termination message must be a JSON object, got {type(data).__name__}"
        )
    values = {
        str(k): float(v)
        for k, v in sorted(data.items())
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    }
    return Metrics(dict(list(values.items())[:MAX_METRICS]))


# ------------------------------------------------------------------------------------ verdict


@dataclass(frozen=True)
class Scores:
    """One model's evaluation: its metrics, or why it could not be scored."""

    metrics: Mapping[str, float] | None = None
    error: str | None = None


@dataclass(frozen=True)
class Verdict:
    """The gate's outcome: ModelAccepted (status, reason, message) and the numbers behind it."""

    accepted: bool
    reason: Reason
    message: str
    challenger: float | None = None
    champion: float | None = None
    delta: float | None = None
    relative_delta: float | None = None


def fmt(value: float) -> str:
    """A metric value as messages show it."""
    return f"{value:.6g}"


def _value(metrics: Mapping[str, float] | None, metric: str) -> float | None:
    value = (metrics or {}).get(metric)
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _at_least(value: float, bound: float) -> bool:
    """value >= bound, forgiving floating-point rounding (0.88 - 0.83 counts as 0.05)."""
    return value >= bound or math.isclose(value, bound, rel_tol=1e-9, abs_tol=1e-12)


def threshold_check(evaluation: Evaluation, value: float) -> tuple[bool, str]:
    """Whether ``value`` passes the absolute bar, and ``accuracy 0.93 >= 0.9`` style text."""
    metric, threshold = evaluation.metric, evaluation.threshold
    if evaluation.direction == Direction.MIN:
        ok = value <= threshold
        op = "<=" if ok else ">"
    else:
        ok = value >= threshold
        op = ">=" if ok else "<"
    return ok, f"{metric} {fmt(value)} {op} {fmt(threshold)}"


def improvement(direction: str, challenger: float, champion: float) -> tuple[float, float | None]:
    """(delta, relative delta) of the challenger over the champion, positive when it is better.

    ``delta`` is ``challenger - champion`` for ``max`` and ``champion - challenger`` for
    ``min``; the relative delta is ``delta / |champion|``, None when the champion is 0.
    """
    delta = challenger - champion if direction != Direction.MIN else champion - challenger
    return delta, (delta / abs(champion) if champion != 0 else None)


def verdict(
    evaluation: Evaluation | None,
    challenger: Scores,
    champion: Scores | None,
    *,
    champion_name: str = "",
) -> Verdict:
    """The gate's decision for the challenger's (and the champion's) scores.

    ``champion`` is None when there is no champion to compare with (no ``compareTo``, or its
    ModelDeployment serves nothing yet); ``champion_name`` names it in messages.
    """
    if evaluation is None:
        return Verdict(
            True, Reason.NO_EVALUATION, "no evaluation gate (spec.evaluation unset); model accepted"
        )
    metric = evaluation.metric
    if challenger.error is not None:
        return Verdict(
            False, Reason.EVALUATION_FAILED, f"challenger evaluation failed: {challenger.error}"
        )
    value = _value(challenger.metrics, metric)
    if value is None:
        reported = ", ".join(sorted(challenger.metrics or {})) or "none"
        return Verdict(
            False,
            Reason.METRIC_MISSING,
            f"metric {metric} (spec.evaluation.metric) was not reported for the challenger; "
            f"reported: {reported}",
        )
    passes, bar = threshold_check(evaluation, value)
    compare = evaluation.compare_to
    if compare is None:
        return Verdict(
            passes, Reason.THRESHOLD_MET if passes else Reason.BELOW_THRESHOLD, bar, value
        )
    deployment = compare.model_deployment_ref.name
    if champion is None:
        return Verdict(
            passes,
            Reason.NO_CHAMPION,
            f"ModelDeployment {deployment} serves no model yet; threshold only: {bar}",
            value,
        )
    champion_value = _value(champion.metrics, metric)
    if champion.error is not None or champion_value is None:
        why = champion.error or (
            f"metric {metric} was not reported; reported: "
            f"{', '.join(sorted(champion.metrics or {})) or 'none'}"
        )
        who = f"champion {champion_name}" if champion_name else "champion"
        if evaluation.on_champion_error == OnChampionError.THRESHOLD_ONLY:
            return Verdict(
                passes,
                Reason.CHAMPION_EVALUATION_FAILED,
                f"{who} evaluation failed ({why}); onChampionError ThresholdOnly: {bar}",
                value,
            )
        return Verdict(
            False,
            Reason.CHAMPION_EVALUATION_FAILED,
            f"{who} evaluation failed ({why}); onChampionError Reject: challenger rejected",
            value,
        )
    delta, relative = improvement(evaluation.direction, value, champion_value)
    compared = (
        f"{metric} challenger {fmt(value)} vs champion {fmt(champion_value)}"
        f"{f' ({champion_name})' if champion_name else ''}: delta {delta:+.6g}"
        + (f" ({relative:+.2%})" if relative is not None else " (champion is 0)")
    )
    numbers = {
        "challenger": value,
        "champion": champion_value,
        "delta": delta,
        "relative_delta": relative,
    }
    if not passes:
        return Verdict(False, Reason.BELOW_THRESHOLD, f"{bar}; {compared}", **numbers)
    missing = []
    if not delta > 0:
        missing.append("better than the champion")
    if compare.min_absolute_change > 0 and not _at_least(delta, compare.min_absolute_change):
        missing.append(f"delta >= minAbsoluteChange {fmt(compare.min_absolute_change)}")
    if (
        compare.min_relative_change > 0
        and relative is not None
        and not _at_least(relative, compare.min_relative_change)
    ):
        missing.append(f"relative delta >= minRelativeChange {fmt(compare.min_relative_change)}")
    if missing:
        return Verdict(
            False,
            Reason.NOT_BETTER_THAN_CHAMPION,
            f"{compared}; needs {', '.join(missing)}",
            **numbers,
        )
    return Verdict(True, Reason.BEATS_CHAMPION, f"{compared}; {bar}", **numbers)


# ------------------------------------------------------------------------------------ the Job


@dataclass(frozen=True)
class Plan:
    """What one evaluation scores, on which data (pinned when the Job is made)."""

    dataset: str
    dataset_uri: str
    dataset_version: str
    challenger_model: str
    champion_model: str | None = None
    champion_deployment: str | None = None
    dataset_secret: str | None = None


def eval_job_name(trainingjob_name: str) -> str:
    """``<name>-eval`` (a DNS label, shortened with a hash when needed)."""
    label = trainingjob_name.replace(".", "-")
    label = label if label[:1].isalpha() else f"tj-{label}"
    return child_name(label, "eval", limit=MAX_NAME)


def plan_from_job(job: Mapping[str, Any]) -> Plan | None:
    """The plan an evaluation Job was made with (its annotations), or None when missing."""
    annotations = (job.get("metadata") or {}).get("annotations") or {}
    try:
        return Plan(
            dataset=annotations[EVAL_DATASET_ANNOTATION],
            dataset_uri=annotations[EVAL_DATASET_URI_ANNOTATION],
            dataset_version=annotations[EVAL_DATASET_VERSION_ANNOTATION],
            challenger_model=annotations[CHALLENGER_MODEL_ANNOTATION],
            champion_model=annotations.get(CHAMPION_MODEL_ANNOTATION) or None,
            champion_deployment=annotations.get(CHAMPION_DEPLOYMENT_ANNOTATION) or None,
        )
    except KeyError:
        return None


def roles(plan: Plan) -> list[tuple[str, str]]:
    """(container name, model URI) of every model the Job scores."""
    out = [(CHALLENGER, plan.challenger_model)]
    if plan.champion_model:
        out.append((CHAMPION, plan.champion_model))
    return out


def _claims(plan: Plan) -> list[str]:
    claims = set()
    for uri in (plan.dataset_uri, *(m for _, m in roles(plan))):
        try:
            claim = claim_of(uri)
        except ValueError:
            claim = None
        if claim:
            claims.add(claim)
    return sorted(claims)


def _evaluator_env(
    base_env: Sequence[Mapping[str, Any]],
    evaluation: Evaluation,
    plan: Plan,
    role: str,
    model: str,
    pvc_root: str,
    claims: Sequence[str],
) -> list[dict[str, Any]]:
    keep = ("KYKLOS_HYPERPARAMETERS", "KYKLOS_RUN", "KYKLOS_TRAININGJOB")
    inherited = {e["name"]: e for e in base_env if e.get("name") in keep}
    env: list[dict[str, Any]] = [
        {"name": "KYKLOS_MODE", "value": "evaluate"},
        {"name": "KYKLOS_EVALUATION_ROLE", "value": role},
        {"name": "KYKLOS_MODEL_URI", "value": model},
        {"name": "KYKLOS_DATASET_URI", "value": plan.dataset_uri},
        {"name": "KYKLOS_DATASET_VERSION", "value": plan.dataset_version},
        *(dict(inherited[k]) for k in keep if k in inherited),
        {"name": "KYKLOS_METRICS_FILE", "value": TERMINATION_PATH},
    ]
    for var, uri in (("KYKLOS_DATASET_PATH", plan.dataset_uri), ("KYKLOS_MODEL_PATH", model)):
        path = local_path(uri, pvc_root)
        if path is not None:
            env.append({"name": var, "value": path})
    if claims:
        env.append({"name": "KYKLOS_PVC_ROOT", "value": pvc_root})
    return env


def build_eval_job(
    trainer_job: Mapping[str, Any],
    evaluation: Evaluation,
    plan: Plan,
    *,
    pvc_root: str,
    user_env: Mapping[str, str] | None,
    labels: Mapping[str, str],
    artifacts_secret: str | None = None,
) -> dict[str, Any]:
    """The evaluation Job, made from the trainer's Job (same security context, same scheduling).

    One pod, one container per scored model, each reading the data and its model read-only
    and writing only its own termination message.
    """
    trainer_pod = trainer_job["spec"]["template"]["spec"]
    trainer = trainer_pod["containers"][0]
    evaluator = evaluation.evaluator
    claims = _claims(plan)
    containers = []
    for role, model in roles(plan):
        container: dict[str, Any] = {
            "name": role,
            "image": (evaluator.image if evaluator and evaluator.image else None)
            or trainer["image"],
            "env": _evaluator_env(
                trainer.get("env") or [], evaluation, plan, role, model, pvc_root, claims
            ),
            "terminationMessagePath": TERMINATION_PATH,
            "terminationMessagePolicy": "File",
            "securityContext": json.loads(json.dumps(trainer.get("securityContext") or {})),
        }
        extra_env = evaluator.env if evaluator and evaluator.env is not None else user_env
        container["env"] += [{"name": k, "value": v} for k, v in (extra_env or {}).items()]
        command = evaluator.command if evaluator and evaluator.command is not None else None
        args = evaluator.args if evaluator and evaluator.args is not None else None
        if evaluator is None or (evaluator.image is None and evaluator.command is None):
            command = command if command is not None else trainer.get("command")
            args = args if args is not None else trainer.get("args")
        if command is not None:
            container["command"] = list(command)
        if args is not None:
            container["args"] = list(args)
        if evaluator is not None and evaluator.resources is not None:
            container["resources"] = evaluator.resources.model_dump(
                by_alias=True, exclude_none=True
            )
        elif trainer.get("resources"):
            container["resources"] = dict(trainer["resources"])
        env_from = [
            {"secretRef": {"name": s}}
            for s in dict.fromkeys(x for x in (plan.dataset_secret, artifacts_secret) if x)
        ]
        if env_from:
            container["envFrom"] = env_from
        if claims:
            container["volumeMounts"] = [
                {
                    "name": volume_name(c),
                    "mountPath": f"{pvc_root.rstrip('/')}/{c}",
                    "readOnly": True,
                }
                for c in claims
            ]
        containers.append(container)

    pod_spec: dict[str, Any] = {
        key: json.loads(json.dumps(trainer_pod[key]))
        for key in (
            "securityContext",
            "serviceAccountName",
            "automountServiceAccountToken",
            "nodeSelector",
            "tolerations",
        )
        if key in trainer_pod
    }
    pod_spec["restartPolicy"] = "Never"
    pod_spec["containers"] = containers
    if claims:
        pod_spec["volumes"] = [
            {"name": volume_name(c), "persistentVolumeClaim": {"claimName": c, "readOnly": True}}
            for c in claims
        ]
    trainer_spec = trainer_job["spec"]
    job_spec: dict[str, Any] = {
        "backoffLimit": trainer_spec.get("backoffLimit", 0),
        "completions": 1,
        "parallelism": 1,
        "template": {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
    }
    for key in ("activeDeadlineSeconds", "ttlSecondsAfterFinished"):
        if key in trainer_spec:
            job_spec[key] = trainer_spec[key]
    meta = trainer_job["metadata"]
    job_labels = dict(labels)
    queue = (meta.get("labels") or {}).get(KUEUE_QUEUE_LABEL)
    if queue:
        # Queued like the training: Kueue admits the evaluation by unsuspending it.
        job_labels[KUEUE_QUEUE_LABEL] = queue
        job_spec["suspend"] = True
    annotations = {
        EVAL_DATASET_ANNOTATION: plan.dataset,
        EVAL_DATASET_URI_ANNOTATION: plan.dataset_uri,
        EVAL_DATASET_VERSION_ANNOTATION: plan.dataset_version,
        CHALLENGER_MODEL_ANNOTATION: plan.challenger_model,
    }
    if plan.champion_model:
        annotations[CHAMPION_MODEL_ANNOTATION] = plan.champion_model
    if plan.champion_deployment:
        annotations[CHAMPION_DEPLOYMENT_ANNOTATION] = plan.champion_deployment
    owner = meta["ownerReferences"][0]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": eval_job_name(str(owner["name"])),
            "namespace": meta["namespace"],
            "labels": job_labels,
            "annotations": annotations,
            "ownerReferences": [dict(owner)],
        },
        "spec": job_spec,
    }


# ------------------------------------------------------------------------------------ results


def _terminated(pod: Mapping[str, Any], container: str) -> Mapping[str, Any] | None:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == container:
            state = status.get("state") or {}
            return state.get("terminated") or (status.get("lastState") or {}).get("terminated")
    return None


def _finished_at(pod: Mapping[str, Any]) -> str:
    times = [
        str(t.get("finishedAt") or "")
        for s in (pod.get("status") or {}).get("containerStatuses") or []
        if (t := (s.get("state") or {}).get("terminated"))
    ]
    return max(times, default="")


def read_scores(
    pods: Sequence[Mapping[str, Any]], plan: Plan, job_failure: str
) -> dict[str, Scores]:
    """Each role's scores from the latest finished pod of the evaluation Job.

    A container that exited non-zero, wrote no metrics or wrote a message that is not a JSON
    object is a failed scoring (the error says which); ``job_failure`` explains a role whose
    container never ran (the pod never started).
    """
    finished = [p for p in pods if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed")]
    latest = max(finished, key=_finished_at) if finished else None
    out: dict[str, Scores] = {}
    for role, _model in roles(plan):
        terminated = _terminated(latest, role) if latest is not None else None
        if terminated is None:
            out[role] = Scores(error=job_failure or "the evaluation container did not run")
            continue
        code = int(terminated.get("exitCode") or 0)
        message = termination_message(latest or {}, role)
        if code != 0:
            detail = (message or terminated.get("reason") or "").strip()[:300]
            out[role] = Scores(
                error=f"container {role} exited with code {code}"
                + (f": {detail}" if detail else "")
            )
            continue
        metrics = parse_metrics(message)
        if metrics.error is not None:
            out[role] = Scores(error=f"container {role}: {metrics.error}")
        elif metrics.values is None:
            out[role] = Scores(error=f"container {role} wrote no metrics to its termination log")
        else:
            out[role] = Scores(metrics=metrics.values)
    return out
