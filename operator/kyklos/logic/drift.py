"""The DriftMonitor state machine: scheduled checks, and the closed loop to retraining.

One function, :func:`decide`, maps (spec, stored status, observed objects, now) to the
whole desired status plus the actions to take. Everything the loop needs to stay safe
across operator restarts — check count, last retrain, retrain count and time — lives in
status, so cooldown and ``maxRetrains`` always hold.

The loop, as documented in the README:

1. Every ``interval`` (and soon after a spec change) a check Job runs ``kyklos worker
   drift``; never two checks of one monitor at once. Its summary sets ``driftShare``,
   per-feature results and the ``Drifted`` condition; ``DriftDetected`` is emitted on the
   rising edge only.
2. When a check newer than the last retraining trips, ``retrain`` is set, no retraining
   of this monitor is running, the ``cooldown`` has passed since the last one and
   ``retrainCount < maxRetrains``, a TrainingJob ``<monitor>-retrain-<n>`` is created from
   ``retrain.template`` (its dataset replaced by ``current.datasetRef`` with
   ``useCurrentData``).
3. Its outcome: Failed, Rejected (ModelAccepted=False), Accepted (``promote: none``), or,
   with ``promote: canary``, the ModelDeployment's ``spec.model`` is pointed at the new
   model (RollingOut) and the outcome becomes Promoted when it is the stable model, or
   RolledBack when the ModelDeployment rolled it back. A rejected or failed retrain never
   touches the ModelDeployment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kyklos.api.common import ConditionStatus, ConditionType, Reason
from kyklos.api.drift import DriftMonitorSpec, DriftPhase, PromotePolicy, RetrainOutcome
from kyklos.api.reports import DriftSummary
from kyklos.api.worker import DriftArgs
from kyklos.logic.conditions import (
    Event,
    condition_is,
    phase_event,
    rfc3339,
    set_condition,
    validate_spec,
)
from kyklos.logic.durations import parse_duration
from kyklos.logic.jobs import JobState, latest_message, observe_job
from kyklos.logic.workerjob import WorkerConfig, build_worker_job

#: Label on check Jobs carrying the check's sequence number.
CHECK_LABEL = "kyklos.io/check"
#: How many worst features the Drifted condition's message names.
WORST_NAMED = 3

_ACTIVE_RETRAIN = (RetrainOutcome.RUNNING.value, RetrainOutcome.ROLLING_OUT.value)


@dataclass(frozen=True)
class CheckJob:
    """An observed check Job and its pods."""

    number: int
    job: Mapping[str, Any]
    pods: Sequence[Mapping[str, Any]] = ()

    @property
    def name(self) -> str:
        return str(self.job["metadata"]["name"])


@dataclass(frozen=True)
class Observed:
    """Everything the monitor's decision depends on besides its own spec and status."""

    reference: Mapping[str, Any] | None = None
    current: Mapping[str, Any] | None = None
    checks: Sequence[CheckJob] = ()
    retrain: Mapping[str, Any] | None = None
    deployment: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class CheckPlan:
    """Start check number ``number``."""

    number: int
    reference_profile: str
    reference_sample: str
    current_sample: str | None


@dataclass(frozen=True)
class RetrainPlan:
    """Create TrainingJob ``name`` with ``spec``."""

    name: str
    spec: dict[str, Any]


@dataclass(frozen=True)
class PromotePlan:
    """Point ModelDeployment ``deployment`` at ``model_uri``."""

    deployment: str
    model_uri: str
    version: str


@dataclass
class Decision:
    """What the controller should do, and the status to write."""

    status: dict[str, Any]
    start_check: CheckPlan | None = None
    delete_jobs: list[str] = field(default_factory=list)
    create_retrain: RetrainPlan | None = None
    promote: PromotePlan | None = None
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


def retrain_name(monitor: str, number: int) -> str:
    """``<monitor>-retrain-<n>``."""
    return f"{monitor}-retrain-{number}"


def check_job_name(monitor: str, number: int) -> str:
    """``<monitor>-check-<n>``."""
    return f"{monitor}-check-{number}"


def _parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def baseline_name(spec: DriftMonitorSpec, status: Mapping[str, Any] | None) -> str:
    """The Dataset checks compare against (see ``status.baselineDataset``)."""
    return str((status or {}).get("baselineDataset") or spec.reference.dataset_ref.name)


def dataset_readiness(dataset: Mapping[str, Any] | None, field_path: str, name: str) -> str | None:
    """None when the Dataset is Ready with a sample; else why not (naming ``field_path``)."""
    if dataset is None:
        return f"{field_path}: Dataset {name!r} not found"
    status = dataset.get("status") or {}
    if not condition_is(status.get("conditions"), ConditionType.READY, ConditionStatus.TRUE):
        return f"{field_path}: Dataset {name!r} is not Ready (phase {status.get('phase') or 'Pending'})"
    if not status.get("sampleUri") or not status.get("profileUri"):
        return f"{field_path}: Dataset {name!r} has no profile yet"
    return None


def _worst(features: Sequence[Mapping[str, Any]]) -> str:
    drifted = [f for f in features if f.get("drifted")]
    named = ", ".join(
        f"{f['name']} ({f.get('method')} {float(f.get('score') or 0):.3g})"
        for f in drifted[:WORST_NAMED]
    )
    more = len(drifted) - WORST_NAMED
    return named + (f" and {more} more" if more > 0 else "")


def _record_check(
    status: dict[str, Any],
    check: CheckJob,
    spec: DriftMonitorSpec,
    now: datetime,
    generation: int | None,
    decision: Decision,
) -> bool:
    """Fold a finished check into ``status``; True when it tripped."""
    observation = observe_job(check.job)
    finished = _parse_time(observation.completion_time) or now
    interval = parse_duration(spec.interval, "interval")
    status["checks"] = check.number
    status["checkJob"] = check.name
    status["lastCheckTime"] = rfc3339(finished)
    status["nextCheckTime"] = rfc3339(max(finished, now) + interval)
    message = latest_message(check.pods)
    summary: DriftSummary | None = None
    error = ""
    if message:
        try:
            summary = DriftSummary.parse(message)
        except ValueError as exc:
            error = f"check Job {check.name} wrote an unreadable summary: {str(exc)[:200]}"
    else:
        error = f"check Job {check.name} ended {observation.state.value} without a summary" + (
            f": {observation.message}" if observation.message else ""
        )
    if summary is not None and not summary.ok:
        error = f"{summary.reason or 'CheckFailed'}: {summary.message or 'the drift check failed'}"
    conditions = status.get("conditions")
    if summary is None or not summary.ok:
        status["conditions"] = set_condition(
            conditions,
            type=ConditionType.READY,
            status=ConditionStatus.FALSE,
            reason=Reason.CHECK_FAILED,
            message=error,
            generation=generation,
            now=now,
        )
        decision.events.append(Event(Reason.CHECK_FAILED, error, warning=True))
        return False
    was_drifted = bool(status.get("drifted"))
    features = [f.model_dump(by_alias=True, exclude_none=True) for f in summary.features]
    status["driftShare"] = summary.drift_share
    status["drifted"] = bool(summary.drifted)
    status["features"] = features
    status["reportUri"] = summary.report_uri
    share = f"{(summary.drift_share or 0):.0%}"
    if summary.drifted:
        drift_message = (
            f"drift share {share} >= {spec.thresholds.drift_share:.0%}; worst: {_worst(features)}"
        )
        reason = Reason.DRIFT_DETECTED
    else:
        drift_message = f"drift share {share} < {spec.thresholds.drift_share:.0%}"
        if any(f.get("drifted") for f in features):
            drift_message += f"; drifted: {_worst(features)}"
        reason = Reason.NO_DRIFT
    conditions = set_condition(
        conditions,
        type=ConditionType.READY,
        status=ConditionStatus.TRUE,
        reason=reason,
        message=f"check {check.number} succeeded: {drift_message}",
        generation=generation,
        now=now,
    )
    status["conditions"] = set_condition(
        conditions,
        type=ConditionType.DRIFTED,
        status=ConditionStatus.TRUE if summary.drifted else ConditionStatus.FALSE,
        reason=reason,
        message=drift_message,
        generation=generation,
        now=now,
    )
    if summary.drifted and not was_drifted:
        decision.events.append(Event(Reason.DRIFT_DETECTED, drift_message, warning=True))
    return bool(summary.drifted)


def _follow_retrain(
    status: dict[str, Any],
    spec: DriftMonitorSpec,
    observed: Observed,
    now: datetime,
    decision: Decision,
) -> None:
    """Advance ``status.lastRetrain`` from the TrainingJob and the ModelDeployment."""
    record = dict(status.get("lastRetrain") or {})
    outcome = record.get("outcome")
    if outcome not in _ACTIVE_RETRAIN:
        return
    name = record.get("name", "")
    tj = observed.retrain
    if outcome == RetrainOutcome.RUNNING:
        if tj is None:
            _finish(record, RetrainOutcome.FAILED, f"TrainingJob {name} was deleted", now)
            decision.events.append(Event(Reason.RETRAIN_FAILED, record["message"], warning=True))
        else:
            tj_status = tj.get("status") or {}
            phase = tj_status.get("phase")
            conditions = tj_status.get("conditions")
            if phase == "Failed":
                _finish(record, RetrainOutcome.FAILED, f"TrainingJob {name} failed", now)
                decision.events.append(
                    Event(Reason.RETRAIN_FAILED, record["message"], warning=True)
                )
            elif phase == "Succeeded" and condition_is(
                conditions, ConditionType.MODEL_ACCEPTED, ConditionStatus.FALSE
            ):
                accepted = _condition_message(conditions, ConditionType.MODEL_ACCEPTED)
                _finish(record, RetrainOutcome.REJECTED, f"model rejected: {accepted}", now)
                decision.events.append(
                    Event(Reason.RETRAIN_REJECTED, record["message"], warning=True)
                )
            elif phase == "Succeeded" and condition_is(
                conditions, ConditionType.MODEL_ACCEPTED, ConditionStatus.TRUE
            ):
                model = tj_status.get("modelUri")
                record["model"] = model
                if spec.retrain is None or spec.retrain.promote == PromotePolicy.NONE or not model:
                    _finish(
                        record,
                        RetrainOutcome.ACCEPTED,
                        f"model {model} accepted (promote: none)",
                        now,
                    )
                    decision.events.append(Event(Reason.SUCCEEDED, record["message"]))
                elif spec.model_deployment_ref is None or observed.deployment is None:
                    target = (
                        spec.model_deployment_ref.name if spec.model_deployment_ref else "<unset>"
                    )
                    _finish(
                        record,
                        RetrainOutcome.FAILED,
                        f"modelDeploymentRef: ModelDeployment {target!r} not found; model {model} not promoted",
                        now,
                    )
                    decision.events.append(
                        Event(Reason.RETRAIN_FAILED, record["message"], warning=True)
                    )
                else:
                    decision.promote = PromotePlan(spec.model_deployment_ref.name, model, name)
                    record["outcome"] = RetrainOutcome.ROLLING_OUT.value
                    record["message"] = (
                        f"model {model} accepted; rolling out to ModelDeployment "
                        f"{spec.model_deployment_ref.name}"
                    )
                    decision.events.append(Event(Reason.MODEL_PROMOTED, record["message"]))
    elif outcome == RetrainOutcome.ROLLING_OUT:
        md_status = (observed.deployment or {}).get("status") or {}
        model = record.get("model")
        history = md_status.get("history") or []
        rolled_back = md_status.get("failedModel") == model or any(
            h.get("model") == model and h.get("outcome") == "RolledBack" for h in history
        )
        if observed.deployment is None:
            _finish(
                record, RetrainOutcome.FAILED, "the ModelDeployment was deleted during rollout", now
            )
            decision.events.append(Event(Reason.RETRAIN_FAILED, record["message"], warning=True))
        elif rolled_back:
            _finish(record, RetrainOutcome.ROLLED_BACK, f"model {model} was rolled back", now)
            decision.events.append(Event(Reason.ROLLED_BACK, record["message"], warning=True))
        elif md_status.get("stableModel") == model and not md_status.get("canaryModel"):
            message = f"model {model} promoted to stable"
            if (
                spec.retrain is not None
                and spec.retrain.use_current_data
                and spec.current.dataset_ref is not None
            ):
                # The serving model now learnt the current data: compare against it from here on,
                # or the same shift would trip (and retrain) again after the cooldown.
                status["baselineDataset"] = spec.current.dataset_ref.name
                message += f"; checks now compare against Dataset {spec.current.dataset_ref.name}"
            _finish(record, RetrainOutcome.PROMOTED, message, now)
            decision.events.append(Event(Reason.PROMOTED, record["message"]))
    status["lastRetrain"] = record


def _condition_message(conditions: Any, type: str) -> str:
    for condition in conditions or ():
        if condition.get("type") == type:
            return str(condition.get("message") or condition.get("reason") or "")
    return ""


def _finish(record: dict[str, Any], outcome: RetrainOutcome, message: str, now: datetime) -> None:
    record["outcome"] = outcome.value
    record["message"] = message
    record["completionTime"] = rfc3339(now)


def _maybe_retrain(
    status: dict[str, Any],
    spec: DriftMonitorSpec,
    monitor: str,
    now: datetime,
    fresh_trip: bool,
    decision: Decision,
) -> None:
    """Start a retraining when the latest check tripped and every guard allows it."""
    retrain = spec.retrain
    if retrain is None or not status.get("drifted"):
        return
    last_check = _parse_time(status.get("lastCheckTime"))
    last_retrain = _parse_time(status.get("lastRetrainTime"))
    if last_check is None or (last_retrain is not None and last_check <= last_retrain):
        return  # no fresh evidence since the last retraining
    count = int(status.get("retrainCount") or 0)
    record = status.get("lastRetrain") or {}
    blocked = ""
    if record.get("outcome") in _ACTIVE_RETRAIN:
        blocked = f"retraining {record.get('name')} is still running"
    elif count >= retrain.max_retrains:
        blocked = f"retrain.maxRetrains ({retrain.max_retrains}) reached"
    elif last_retrain is not None:
        cooldown = parse_duration(retrain.cooldown, "retrain.cooldown")
        if now < last_retrain + cooldown:
            wait = last_retrain + cooldown - now
            blocked = f"retrain.cooldown {retrain.cooldown} not over (another {int(wait.total_seconds())}s)"
            _set_requeue(decision, wait.total_seconds())
    if blocked:
        if fresh_trip:
            decision.events.append(Event(Reason.RETRAIN_SKIPPED, f"drift detected but {blocked}"))
        return
    number = count + 1
    name = retrain_name(monitor, number)
    tj_spec = retrain.template.model_dump(by_alias=True, exclude_none=True, mode="json")
    if retrain.use_current_data and spec.current.dataset_ref is not None:
        tj_spec["datasetRef"] = {"name": spec.current.dataset_ref.name}
    _compare_to_live(tj_spec, spec)
    decision.create_retrain = RetrainPlan(name, tj_spec)
    status["retrainCount"] = number
    status["lastRetrainTime"] = rfc3339(now)
    status["lastRetrain"] = {
        "name": name,
        "startTime": rfc3339(now),
        "outcome": RetrainOutcome.RUNNING.value,
        "message": f"retraining after drift share {float(status.get('driftShare') or 0):.0%}",
    }
    decision.events.append(Event(Reason.RETRAIN_STARTED, f"created TrainingJob {name}"))


def _compare_to_live(tj_spec: dict[str, Any], spec: DriftMonitorSpec) -> None:
    """retrain.compareToLive: challenger-gate the retrained model against the live one.

    Fills the template's ``evaluation.compareTo`` with ``modelDeploymentRef`` when the
    template has an evaluation without one; a rejected challenger never reaches the
    ModelDeployment (see kyklos.logic.evaluation).
    """
    evaluation = tj_spec.get("evaluation")
    if (
        spec.retrain is None
        or not spec.retrain.compare_to_live
        or spec.model_deployment_ref is None
        or not isinstance(evaluation, dict)
        or evaluation.get("compareTo") is not None
    ):
        return
    evaluation["compareTo"] = {"modelDeploymentRef": {"name": spec.model_deployment_ref.name}}


def _set_requeue(decision: Decision, seconds: float) -> None:
    seconds = max(seconds, 1.0)
    if decision.requeue_after is None or seconds < decision.requeue_after:
        decision.requeue_after = seconds


def _phase(status: Mapping[str, Any]) -> DriftPhase:
    conditions = status.get("conditions")
    if (status.get("lastRetrain") or {}).get("outcome") in _ACTIVE_RETRAIN:
        return DriftPhase.RETRAINING
    if condition_is(conditions, ConditionType.READY, ConditionStatus.FALSE) and status.get(
        "checks"
    ):
        ready = next(c for c in conditions or () if c.get("type") == ConditionType.READY)
        if ready.get("reason") == Reason.CHECK_FAILED:
            return DriftPhase.ERROR
    if not status.get("checks"):
        return DriftPhase.PENDING
    return DriftPhase.DRIFTED if status.get("drifted") else DriftPhase.HEALTHY


def parse_spec(
    body: Mapping[str, Any], now: datetime
) -> tuple[DriftMonitorSpec, None] | tuple[None, Decision]:
    """The monitor's spec, or (None, the InvalidSpec decision naming the field at fault)."""
    spec, rejected = validate_spec(DriftMonitorSpec, body, now, phase=DriftPhase.ERROR.value)
    if spec is not None:
        return spec, None
    assert rejected is not None
    return None, Decision(
        status={**(body.get("status") or {}), **rejected.status}, events=[rejected.event]
    )


def decide(
    *,
    name: str,
    generation: int | None,
    spec: DriftMonitorSpec,
    stored: Mapping[str, Any] | None,
    observed: Observed,
    now: datetime,
) -> Decision:
    """The whole desired status of a DriftMonitor and the actions to reach it."""
    status: dict[str, Any] = {k: v for k, v in (stored or {}).items()}
    decision = Decision(status=status)
    interval = parse_duration(spec.interval, "interval")
    recorded = int(status.get("checks") or 0)
    spec_changed = status.get("observedGeneration") not in (None, generation)
    status["observedGeneration"] = generation

    # 1. Fold in finished checks (in order); delete every check Job but the latest recorded.
    fresh_trip = False
    active: CheckJob | None = None
    for check in sorted(observed.checks, key=lambda c: c.number):
        state = observe_job(check.job).state
        if state in (JobState.SUCCEEDED, JobState.FAILED):
            if check.number > recorded:
                fresh_trip = (
                    _record_check(status, check, spec, now, generation, decision) or fresh_trip
                )
                recorded = check.number
        else:
            active = check
    latest_kept = status.get("checkJob")
    decision.delete_jobs = [
        c.name
        for c in observed.checks
        if c is not active and c.name != latest_kept and c.number <= recorded
    ]

    # 2. Readiness of the inputs.
    problems = [
        dataset_readiness(observed.reference, "reference.datasetRef", baseline_name(spec, status))
    ]
    if spec.current.dataset_ref is not None:
        problems.append(
            dataset_readiness(observed.current, "current.datasetRef", spec.current.dataset_ref.name)
        )
    problem = next((p for p in problems if p), None)
    if problem:
        status["conditions"] = set_condition(
            status.get("conditions"),
            type=ConditionType.READY,
            status=ConditionStatus.FALSE,
            reason=Reason.REFERENCE_NOT_READY,
            message=problem,
            generation=generation,
            now=now,
        )
    else:
        # 3. Schedule the next check: due, none running, or the spec just changed.
        due = _parse_time(status.get("nextCheckTime"))
        if active is not None:
            status["checkJob"] = active.name
        elif due is None or now >= due or spec_changed:
            reference = (observed.reference or {}).get("status") or {}
            current_sample = None
            if spec.current.dataset_ref is not None:
                current_sample = ((observed.current or {}).get("status") or {}).get("sampleUri")
            decision.start_check = CheckPlan(
                number=recorded + 1,
                reference_profile=str(reference["profileUri"]),
                reference_sample=str(reference["sampleUri"]),
                current_sample=current_sample,
            )
            status["checkJob"] = check_job_name(name, recorded + 1)
            status["nextCheckTime"] = rfc3339(now + interval)
        else:
            _set_requeue(decision, (due - now).total_seconds())
        ready = next(
            (c for c in status.get("conditions") or () if c.get("type") == ConditionType.READY),
            None,
        )
        if not status.get("checks") or (ready or {}).get("reason") == Reason.REFERENCE_NOT_READY:
            status["conditions"] = set_condition(
                status.get("conditions"),
                type=ConditionType.READY,
                status=ConditionStatus.FALSE,
                reason=Reason.CHECK_RUNNING,
                message="inputs are ready; waiting for the next drift check",
                generation=generation,
                now=now,
            )

    # 4. The closed loop.
    _follow_retrain(status, spec, observed, now, decision)
    _maybe_retrain(status, spec, name, now, fresh_trip, decision)
    status["phase"] = _phase(status).value
    announced = phase_event(stored, status, decision.events)
    if announced is not None:
        decision.events.append(announced)
    return decision


def build_check_job(
    monitor: Mapping[str, Any],
    spec: DriftMonitorSpec,
    plan: CheckPlan,
    config: WorkerConfig,
) -> dict[str, Any]:
    """The Job running check ``plan.number`` of ``monitor`` with ``kyklos worker drift``."""
    meta = monitor["metadata"]
    name = check_job_name(meta["name"], plan.number)
    reads = [plan.reference_profile, plan.reference_sample]
    secrets: list[str] = []
    source = spec.current.source
    current: dict[str, Any] = {}
    if plan.current_sample is not None:
        current["current_sample"] = plan.current_sample
        reads.append(plan.current_sample)
    elif source is not None:
        current.update(current_uri=source.uri, window=source.window)
        if source.format is not None:
            current["current_format"] = str(source.format)
        reads.append(source.uri)
        if source.secret_ref is not None:
            secrets.append(source.secret_ref.name)
    args = DriftArgs(
        spec=json.dumps(
            spec.model_dump(by_alias=True, exclude_none=True, mode="json"), sort_keys=True
        ),
        namespace=meta["namespace"],
        name=meta["name"],
        artifacts=config.artifacts_uri,
        reference_profile=plan.reference_profile,
        reference_sample=plan.reference_sample,
        check_id=str(plan.number),
        **current,
    ).to_argv()
    job = build_worker_job(
        monitor,
        job_name=name,
        component="drift-check",
        worker_args=args,
        config=config,
        read_uris=reads,
        secret_refs=secrets,
    )
    for labels in (job["metadata"]["labels"], job["spec"]["template"]["metadata"]["labels"]):
        labels[CHECK_LABEL] = str(plan.number)
    return job
