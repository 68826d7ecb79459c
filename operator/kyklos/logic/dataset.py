"""The Dataset state machine and its profile Job builder (pure: no I/O, no clock).

A Dataset's status always describes one finished profile run (a Job running
``kyklos worker profile``) of its current generation, or says that one is under way:

- a new generation gets the Job ``<dataset>-profile-<generation>``: phase Pending until that
  Job is observed, then Profiling until the run's outcome (never back to Pending, whatever
  its pod does meanwhile), condition Ready=False reason Profiling; while its pod does not
  start (``kyklos.logic.pods``: unschedulable, image not pulled, a missing Secret) the phase
  stays Profiling, the reason is PodUnschedulable or PodStartFailed with a message naming
  the pod and the cause, and it returns to Profiling when the pod recovers;
- the Job carries the operator's worker deadline (``activeDeadlineSeconds``): a profile that
  is stuck or hangs ends Failed with reason DeadlineExceeded instead of waiting forever;
- when that Job finishes, its worker's termination message (a ``ProfileSummary``) becomes
  the status: phase Ready (reason Profiled) or Failed (the summary's reason:
  ValidationFailed, SchemaMismatch, SourceUnreachable, FormatError, EmptySource; or
  ProfileJobFailed when the Job ended without a readable summary);
- with ``refreshInterval``, when a refresh is due a refresh Job
  ``<dataset>-profile-<generation>-r<n>`` runs while the status stays as it is. When its
  result equals the recorded one (same outcome, same version) it is deleted and nothing is
  written; otherwise it is adopted: the status describes it, the Event ``NewVersion`` is
  emitted when the version changed, and the Job it supersedes is deleted.

Jobs of older generations and superseded runs are deleted, so a Dataset keeps at most the
Job its status describes plus one refresh Job in flight.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from kyklos.api.common import ConditionStatus, ConditionType, Reason, drop_none
from kyklos.api.dataset import DatasetPhase, DatasetSpec
from kyklos.api.reports import ProfileSummary
from kyklos.api.worker import ProfileArgs
from kyklos.logic.conditions import Event, get_condition, rfc3339, set_condition, spec_error
from kyklos.logic.durations import format_duration, parse_duration
from kyklos.logic.jobs import JobState, latest_message, observe_job
from kyklos.logic.naming import child_name
from kyklos.logic.pods import (
    STUCK_REASONS,
    PodStuck,
    first_stuck_pod,
    held_diagnosis,
    is_live,
    with_held_cause,
)
from kyklos.logic.podspec import claim_of
from kyklos.logic.workerjob import WorkerConfig, build_worker_job

KIND = "Dataset"
COMPONENT = "profile"
GENERATION_ANNOTATION = "kyklos.io/generation"
RUN_ANNOTATION = "kyklos.io/profile-run"

#: How long a finished Job may go without its pod's termination message being observed
#: before the run counts as ProfileJobFailed (the pod's watch event may lag the Job's).
MESSAGE_GRACE_SECONDS = 20.0

#: Longest condition message built from a list of failures.
MAX_MESSAGE = 1024

#: Ready reasons of a first profile run still under way (its pod running, or not starting).
IN_PROGRESS_REASONS = frozenset({Reason.PROFILING, *STUCK_REASONS})

#: Status keys that carry the result of a profile run (removed when a run has none).
RESULT_KEYS = (
    "version",
    "versionSource",
    "checksum",
    "rows",
    "features",
    "profileUri",
    "sampleUri",
    "failures",
)

_RUN_SUFFIX = re.compile(r"-r([0-9]+)$")


# ------------------------------------------------------------------------------ the Job


def profile_job_name(dataset: str, generation: int, run: int) -> str:
    """``<dataset>-profile-<generation>`` for the first run, ``...-r<run>`` for refreshes."""
    suffix = f"profile-{generation}" if run == 0 else f"profile-{generation}-r{run}"
    return child_name(dataset, suffix)


def worker_spec_json(spec: DatasetSpec) -> str:
    """The spec as the worker's ``--spec`` argument: compact, camelCase, stable key order."""
    data = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return json.dumps(data, separators=(",", ":"), sort_keys=True)


def build_profile_job(
    body: Mapping[str, Any],
    spec: DatasetSpec,
    *,
    generation: int,
    run: int,
    config: WorkerConfig,
) -> dict[str, Any]:
    """The Job that profiles ``body``'s data (run 0: first profile; n > 0: refresh n)."""
    meta = body["metadata"]
    args = ProfileArgs(
        spec=worker_spec_json(spec),
        namespace=meta["namespace"],
        name=meta["name"],
        artifacts=config.artifacts_uri,
    ).to_argv()
    secret = spec.source.secret_ref.name if spec.source.secret_ref else None
    return build_worker_job(
        body,
        job_name=profile_job_name(meta["name"], generation, run),
        component=COMPONENT,
        worker_args=args,
        config=config,
        read_uris=[spec.source.uri],
        secret_refs=[secret] if secret else [],
        annotations={GENERATION_ANNOTATION: str(generation), RUN_ANNOTATION: str(run)},
        active_deadline_seconds=config.deadline_seconds,
    )


# ------------------------------------------------------------------------- observation


@dataclass(frozen=True)
class ProfileRun:
    """One observed profile Job and what its pods said."""

    name: str
    generation: int
    run: int
    state: JobState
    job_reason: str = ""
    job_message: str = ""
    finished_at: str | None = None
    message: str | None = None
    #: The termination message of its latest pod that Succeeded (exit code 0), if any.
    succeeded_message: str | None = None
    pod_running: bool = False
    pod_pending: bool = False
    terminating: bool = False
    #: Why its pod does not start (None while it progresses normally, and once finished).
    stuck: PodStuck | None = None
    #: Whether a pod of it may still start or run (not terminating, not finished).
    live_pod: bool = False
    deadline_seconds: int | None = None

    @property
    def finished(self) -> bool:
        return self.state in (JobState.SUCCEEDED, JobState.FAILED)


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


_DONE = (JobState.SUCCEEDED, JobState.FAILED)


def _deadline(job: Mapping[str, Any]) -> int | None:
    value = (job.get("spec") or {}).get("activeDeadlineSeconds")
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def observe_runs(
    jobs: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]]
) -> list[ProfileRun]:
    """Profile runs from the Dataset's Jobs and their Pods (matched by the Job's uid)."""
    pods_by_job: dict[str, list[Mapping[str, Any]]] = {}
    for pod in pods:
        for ref in (pod.get("metadata") or {}).get("ownerReferences") or []:
            if ref.get("kind") == "Job" and ref.get("uid"):
                pods_by_job.setdefault(ref["uid"], []).append(pod)
    runs = []
    for job in jobs:
        meta = job.get("metadata") or {}
        annotations = meta.get("annotations") or {}
        name = str(meta.get("name") or "")
        suffix = _RUN_SUFFIX.search(name)
        observed = observe_job(job)
        job_pods = pods_by_job.get(str(meta.get("uid") or ""), [])
        phases = [(p.get("status") or {}).get("phase") for p in job_pods]
        finished_at = observed.completion_time
        if finished_at is None and observed.state == JobState.FAILED:
            for cond in (job.get("status") or {}).get("conditions") or []:
                if cond.get("type") == "Failed" and cond.get("status") == "True":
                    finished_at = cond.get("lastTransitionTime")
        runs.append(
            ProfileRun(
                name=name,
                generation=_int(annotations.get(GENERATION_ANNOTATION), -1),
                run=_int(annotations.get(RUN_ANNOTATION), int(suffix.group(1)) if suffix else 0),
                state=observed.state,
                job_reason=observed.reason,
                job_message=observed.message,
                finished_at=finished_at,
                message=latest_message(job_pods),
                succeeded_message=latest_message(job_pods, succeeded_only=True),
                pod_running="Running" in phases,
                pod_pending="Pending" in phases,
                terminating=bool(meta.get("deletionTimestamp")),
                stuck=None if observed.state in _DONE else first_stuck_pod(job_pods),
                live_pod=any(is_live(p) for p in job_pods),
                deadline_seconds=_deadline(job),
            )
        )
    return sorted(runs, key=lambda r: (r.generation, r.run, r.name))


# ------------------------------------------------------------------------------ outcome


@dataclass(frozen=True)
class Outcome:
    """The result of a finished profile run."""

    ready: bool
    reason: str
    message: str
    summary: ProfileSummary | None = None


def _failures_message(summary: ProfileSummary) -> str:
    parts = []
    for failure in summary.failures:
        where = f"{failure.feature}: " if failure.feature else ""
        parts.append(f"{failure.rule}: {where}{failure.message}")
    return "; ".join(parts)


def _ok_summary(message: str | None) -> ProfileSummary | None:
    """The ok profile summary ``message`` holds, else None."""
    if message is None:
        return None
    try:
        summary = ProfileSummary.parse(message)
    except (ValidationError, ValueError):
        return None
    return summary if summary.ok else None


def outcome_of(run: ProfileRun, now: datetime) -> Outcome | None:
    """The run's outcome; None while it runs (or briefly, while its pod's message is unseen)."""
    if not run.finished:
        return None
    summary: ProfileSummary | None = None
    problem = "its pod left no termination message"
    if run.message is not None:
        try:
            summary = ProfileSummary.parse(run.message)
        except (ValidationError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            problem = f"its termination message is not a profile summary ({first})"
    done = _ok_summary(run.succeeded_message)
    if done is not None:
        # A pod that exited 0 with an ok summary wrote the profile: that is the result even
        # when the Job counts another of its pods as failed (say one the Job controller
        # made twice under load and deleted, which backoffLimit 0 turns into a failed Job).
        return Outcome(True, Reason.PROFILED, _profiled_message(done), done)
    if summary is not None:
        if summary.ok and run.state == JobState.SUCCEEDED:
            return Outcome(True, Reason.PROFILED, _profiled_message(summary), summary)
        if not summary.ok:
            reason = str(summary.reason or Reason.VALIDATION_FAILED)
            message = summary.message or _failures_message(summary) or reason
            return Outcome(False, reason, _clip(message), summary)
        problem = "its worker reported success but the Job failed"
    elif run.state == JobState.FAILED and run.job_reason == "DeadlineExceeded":
        # The Job controller killed the pod at the deadline: no summary is coming.
        return Outcome(False, Reason.DEADLINE_EXCEEDED, _deadline_message(run))
    elif run.message is None and (
        run.pod_running
        or run.pod_pending
        or (run.finished_at and _seconds_since(run.finished_at, now) < MESSAGE_GRACE_SECONDS)
    ):
        return None
    job_said = f" ({run.job_reason}: {run.job_message})" if run.job_reason else ""
    verb = "succeeded" if run.state == JobState.SUCCEEDED else "failed"
    return Outcome(
        False,
        Reason.PROFILE_JOB_FAILED,
        _clip(f"profile Job {run.name} {verb}{job_said} but {problem}"),
    )


def _deadline_message(run: ProfileRun) -> str:
    limit = (
        f"its deadline of {format_duration(run.deadline_seconds)}"
        if run.deadline_seconds
        else "its deadline"
    )
    said = f" ({run.job_message})" if run.job_message else ""
    return _clip(
        f"profile Job {run.name} did not finish within {limit}{said}; the operator's worker "
        "deadline is KYKLOS_WORKER_DEADLINE / --worker-deadline"
    )


def _profiled_message(summary: ProfileSummary) -> str:
    features = len(summary.features)
    return f"version {summary.version}: {summary.rows} rows, {features} features profiled"


def _clip(text: str) -> str:
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def _seconds_since(text: str | None, now: datetime) -> float:
    moment = _parse_time(text)
    return (now - moment).total_seconds() if moment else 0.0


# ------------------------------------------------------------------------------- status


def result_status(
    outcome: Outcome, run: ProfileRun, generation: int, stored: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """The whole status describing the finished ``run``."""
    summary = outcome.summary
    result: dict[str, Any] = dict.fromkeys(RESULT_KEYS)
    if summary is not None:
        dumped = summary.model_dump(mode="json", by_alias=True, exclude_none=True)
        for key in RESULT_KEYS:
            value = dumped.get(key)
            if value not in (None, []):
                result[key] = drop_none(value)
        if result.get("failures"):
            result["failures"] = result["failures"][:100]
    return {
        "observedGeneration": generation,
        "phase": DatasetPhase.READY if outcome.ready else DatasetPhase.FAILED,
        **result,
        "jobName": run.name,
        "lastProfileTime": run.finished_at or rfc3339(now),
        "conditions": set_condition(
            stored.get("conditions"),
            type=ConditionType.READY,
            status=ConditionStatus.TRUE if outcome.ready else ConditionStatus.FALSE,
            reason=outcome.reason,
            message=outcome.message,
            generation=generation,
            now=now,
        ),
    }


def profiling_status(
    run_name: str,
    job_observed: bool,
    generation: int,
    stored: Mapping[str, Any],
    now: datetime,
    stuck: PodStuck | None = None,
) -> dict[str, Any]:
    """The status while the first profile run of ``generation`` is under way.

    Phase Pending while its Job is only being created, Profiling once the Job is observed:
    from then on until the outcome, whether its pod is waiting, running or already finished
    (the Job is marked complete a moment after its pod ends), so the phase never goes back.
    The last known version and profile stay until the run replaces them; failures of an
    earlier generation's data go (they may not apply to the new spec). With ``stuck`` (its
    pod does not start) the Ready reason and message say why; the phase stays Profiling.
    """
    reason: str = Reason.PROFILING
    message = f"profile Job {run_name} is profiling generation {generation}"
    if stuck is not None:
        reason, message = stuck.reason, _clip(_stuck_prefix(run_name) + stuck.message)
    return {
        "observedGeneration": generation,
        "phase": DatasetPhase.PROFILING if job_observed else DatasetPhase.PENDING,
        "failures": None,
        "jobName": run_name,
        "conditions": set_condition(
            stored.get("conditions"),
            type=ConditionType.READY,
            status=ConditionStatus.FALSE,
            reason=reason,
            message=message,
            generation=generation,
            now=now,
        ),
    }


def invalid_status(
    message: str, generation: int, stored: Mapping[str, Any], now: datetime
) -> dict[str, Any]:
    """The status of a spec the worker cannot be given (message names the field)."""
    return {
        "observedGeneration": generation,
        "phase": DatasetPhase.FAILED,
        **dict.fromkeys(RESULT_KEYS),
        "failures": [{"rule": "spec", "message": _clip(message)}],
        "jobName": None,
        "conditions": set_condition(
            stored.get("conditions"),
            type=ConditionType.READY,
            status=ConditionStatus.FALSE,
            reason=Reason.INVALID_SPEC,
            message=_clip(message),
            generation=generation,
            now=now,
        ),
    }


def has_result(stored: Mapping[str, Any], generation: int) -> bool:
    """Whether the stored status records a finished run of ``generation``."""
    ready = get_condition(stored.get("conditions"), ConditionType.READY)
    return (
        ready is not None
        and ready.get("observedGeneration") == generation
        and stored.get("observedGeneration") == generation
        and ready.get("reason") not in (*IN_PROGRESS_REASONS, Reason.INVALID_SPEC)
        and bool(stored.get("jobName"))
    )


def _reason(status: Mapping[str, Any]) -> Any:
    return (get_condition(status.get("conditions"), ConditionType.READY) or {}).get("reason")


def _essence(status: Mapping[str, Any]) -> tuple[Any, ...]:
    ready = get_condition(status.get("conditions"), ConditionType.READY) or {}
    return (
        ready.get("status"),
        ready.get("reason"),
        status.get("version"),
        status.get("checksum"),
        status.get("rows"),
        json.dumps(status.get("failures"), sort_keys=True),
    )


def same_result(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Whether a refresh found what is already recorded (same outcome and version)."""
    return _essence(stored) == _essence(desired)


# ------------------------------------------------------------------------------- events


def transition_events(stored: Mapping[str, Any], desired: Mapping[str, Any]) -> list[Event]:
    """One Event per transition between the stored and the desired status."""
    events = []
    old = get_condition(stored.get("conditions"), ConditionType.READY) or {}
    new = get_condition(desired.get("conditions"), ConditionType.READY) or {}
    if new and (old.get("status"), old.get("reason")) != (new.get("status"), new.get("reason")):
        warning = (
            new.get("status") != ConditionStatus.TRUE and new.get("reason") != Reason.PROFILING
        )
        events.append(Event(str(new["reason"]), str(new.get("message") or ""), warning))
    old_version, new_version = stored.get("version"), desired.get("version")
    if old_version and new_version and old_version != new_version:
        rows = desired.get("rows")
        tail = f" ({rows} rows)" if rows is not None else ""
        events.append(Event(Reason.NEW_VERSION, f"version {old_version} -> {new_version}{tail}"))
    return events


# --------------------------------------------------------------------------------- plan


def _stuck_prefix(run_name: str) -> str:
    """How a Ready message about a stuck pod of ``run_name`` starts."""
    return f"profile Job {run_name}: "


def _with_last_problem(outcome: Outcome, run: ProfileRun, stored: Mapping[str, Any]) -> Outcome:
    """A deadline outcome names what the stored status last said held the run up, if anything."""
    if outcome.reason != Reason.DEADLINE_EXCEEDED or stored.get("jobName") != run.name:
        return outcome
    ready = get_condition(stored.get("conditions"), ConditionType.READY)
    message = with_held_cause(outcome.message, ready)
    return outcome if message == outcome.message else replace(outcome, message=_clip(message))


@dataclass
class Plan:
    """What one reconcile of a Dataset does: children to create and delete, status, Events."""

    status: dict[str, Any] = field(default_factory=dict)
    create: dict[str, Any] | None = None
    created_run: int | None = None
    delete: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    requeue_after: float | None = None


def parse_spec(body: Mapping[str, Any]) -> tuple[DatasetSpec | None, str]:
    """The Dataset's spec, or None and a message naming the field at fault."""
    try:
        spec = DatasetSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return None, spec_error(exc)
    try:
        claim_of(spec.source.uri, "spec.source.uri")
    except ValueError as exc:
        return None, str(exc)
    return spec, ""


def refresh_interval(body: Mapping[str, Any]) -> timedelta | None:
    """The spec's refreshInterval (None when unset or malformed)."""
    text = (body.get("spec") or {}).get("refreshInterval")
    if not text:
        return None
    try:
        interval = parse_duration(text, "spec.refreshInterval")
    except ValueError:
        return None
    return interval if interval.total_seconds() > 0 else None


def next_refresh_at(body: Mapping[str, Any], last_check: datetime | None) -> datetime | None:
    """When the next refresh is due: one interval after the later of the last profile and
    the last refresh check; None without a refreshInterval or before a first result."""
    interval = refresh_interval(body)
    if interval is None:
        return None
    status = body.get("status") or {}
    generation = int((body.get("metadata") or {}).get("generation") or 1)
    if not has_result(status, generation):
        return None
    moments = [m for m in (_parse_time(status.get("lastProfileTime")), last_check) if m]
    if not moments:
        return None
    return max(moments) + interval


def is_settled(body: Mapping[str, Any]) -> bool:
    """Whether the stored status describes a finished run (or a bad spec) of this generation."""
    status = body.get("status") or {}
    generation = int((body.get("metadata") or {}).get("generation") or 1)
    ready = get_condition(status.get("conditions"), ConditionType.READY)
    return (
        ready is not None
        and status.get("observedGeneration") == generation
        and ready.get("observedGeneration") == generation
        and ready.get("reason") not in IN_PROGRESS_REASONS
    )


def plan(
    body: Mapping[str, Any],
    runs: Sequence[ProfileRun],
    *,
    config: WorkerConfig,
    now: datetime,
    refresh_due: bool = False,
    run_floor: int = 0,
) -> Plan:
    """Decide one reconcile of the Dataset ``body`` given its observed profile runs.

    ``refresh_due``: the refresh schedule says re-profile now (a refresh Job is started
    unless one is in flight or the generation has no result yet). ``run_floor``: the
    lowest run number a new refresh Job may take (refresh Jobs deleted earlier keep theirs).
    """
    meta = body["metadata"]
    generation = int(meta.get("generation") or 1)
    stored: Mapping[str, Any] = body.get("status") or {}
    out = Plan()
    live = [r for r in runs if not r.terminating]
    spec, problem = parse_spec(body)
    if spec is None:
        out.delete = [r.name for r in live]
        out.status = invalid_status(problem, generation, stored, now)
        out.events = transition_events(stored, out.status)
        return out

    current = [r for r in live if r.generation == generation]
    out.delete = [r.name for r in live if r.generation != generation]
    recorded = has_result(stored, generation)
    adopted = stored.get("jobName") if recorded else None
    taken = [r.run for r in runs if r.generation == generation]
    next_run = max([run_floor, *(n + 1 for n in taken)])

    def start(run: int) -> None:
        out.create = build_profile_job(body, spec, generation=generation, run=run, config=config)
        out.created_run = run

    latest = current[-1] if current else None
    if latest is None:
        if recorded:
            if refresh_due:
                start(max(next_run, 1))
        else:
            run = 0 if not taken else next_run
            start(run)
            out.status = profiling_status(
                profile_job_name(meta["name"], generation, run),
                job_observed=False,
                generation=generation,
                stored=stored,
                now=now,
            )
    elif recorded and latest.name == adopted:
        out.delete += [r.name for r in current if r is not latest]
        if _reason(stored) == Reason.PROFILE_JOB_FAILED:
            # The pod's summary may show up after the grace period: it then wins.
            outcome = outcome_of(latest, now)
            if outcome is not None and outcome.summary is not None:
                out.status = result_status(outcome, latest, generation, stored, now)
        if refresh_due and latest.finished:
            start(max(next_run, 1))
    elif recorded:
        # ``latest`` is a refresh run; the status keeps describing the adopted one.
        out.delete += [r.name for r in current if r is not latest and r.name != adopted]
        outcome = outcome_of(latest, now)
        if outcome is None:
            if latest.finished:
                out.requeue_after = MESSAGE_GRACE_SECONDS
        else:
            desired = result_status(outcome, latest, generation, stored, now)
            if same_result(stored, desired):
                out.delete.append(latest.name)
            else:
                out.status = desired
                out.delete += [r.name for r in current if r is not latest]
    else:
        out.delete += [r.name for r in current if r is not latest]
        outcome = outcome_of(latest, now)
        if outcome is None:
            stuck = latest.stuck
            if stuck is None and not latest.live_pod and stored.get("jobName") == latest.name:
                # No pod to judge (deleted at the deadline, or not made again yet): the last
                # diagnosis stands; a pod that recovered would be live.
                stuck = held_diagnosis(
                    get_condition(stored.get("conditions"), ConditionType.READY),
                    _stuck_prefix(latest.name),
                )
            out.status = profiling_status(
                latest.name,
                job_observed=True,
                generation=generation,
                stored=stored,
                now=now,
                stuck=stuck,
            )
            if latest.finished:
                out.requeue_after = MESSAGE_GRACE_SECONDS
        else:
            out.status = result_status(
                _with_last_problem(outcome, latest, stored), latest, generation, stored, now
            )
    out.delete = list(dict.fromkeys(out.delete))
    if out.status:
        out.events = transition_events(stored, out.status)
    return out
