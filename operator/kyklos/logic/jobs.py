"""Observing batch/v1 Jobs and their Pods as plain data (shared by every controller)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

#: The kubelet truncates termination messages to this many bytes.
TERMINATION_MESSAGE_LIMIT = 4096


class JobState(StrEnum):
    """Where a Job stands, from its status conditions."""

    PENDING = "Pending"
    SUSPENDED = "Suspended"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


@dataclass(frozen=True)
class JobObservation:
    """What a controller needs to know about one Job."""

    state: JobState
    reason: str
    message: str
    active: int
    succeeded: int
    failed: int
    start_time: str | None
    completion_time: str | None


def _true(conditions: Iterable[Mapping[str, Any]], type: str) -> Mapping[str, Any] | None:
    for condition in conditions:
        if condition.get("type") == type and condition.get("status") == "True":
            return condition
    return None


def observe_job(job: Mapping[str, Any]) -> JobObservation:
    """Summarise a Job's status (the Job controller's conditions are the truth)."""
    status = job.get("status") or {}
    conditions = status.get("conditions") or []
    failed_cond = _true(conditions, "Failed")
    complete = _true(conditions, "Complete")
    suspended = _true(conditions, "Suspended")
    active = int(status.get("active") or 0)
    if complete:
        state, cond = JobState.SUCCEEDED, complete
    elif failed_cond:
        state, cond = JobState.FAILED, failed_cond
    elif suspended or (job.get("spec") or {}).get("suspend"):
        state, cond = JobState.SUSPENDED, suspended or {}
    elif active or status.get("startTime"):
        state, cond = JobState.RUNNING, {}
    else:
        state, cond = JobState.PENDING, {}
    return JobObservation(
        state=state,
        reason=str(cond.get("reason") or ""),
        message=str(cond.get("message") or ""),
        active=active,
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        start_time=status.get("startTime"),
        completion_time=status.get("completionTime"),
    )


def termination_message(pod: Mapping[str, Any], container: str | None = None) -> str | None:
    """The termination message of the pod's (named or first) terminated container."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        if container and status.get("name") != container:
            continue
        terminated = (status.get("state") or {}).get("terminated") or (
            status.get("lastState") or {}
        ).get("terminated")
        if terminated and terminated.get("message") is not None:
            return str(terminated["message"])[: TERMINATION_MESSAGE_LIMIT * 2]
    return None


def latest_message(
    pods: Iterable[Mapping[str, Any]], *, succeeded_only: bool = False
) -> str | None:
    """The termination message of the most recently finished pod (optionally only succeeded ones)."""
    best: tuple[str, str] | None = None
    for pod in pods:
        phase = (pod.get("status") or {}).get("phase")
        if succeeded_only and phase != "Succeeded":
            continue
        message = termination_message(pod)
        if message is None:
            continue
        finished = _finished_at(pod)
        if best is None or finished > best[0]:
            best = (finished, message)
    return best[1] if best else None


def _finished_at(pod: Mapping[str, Any]) -> str:
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated") or {}
        if terminated.get("finishedAt"):
            return str(terminated["finishedAt"])
    return ""


def failed_pods(pods: Iterable[Mapping[str, Any]]) -> int:
    """Pods that ended Failed (the attempts a Job used up)."""
    return sum(1 for pod in pods if (pod.get("status") or {}).get("phase") == "Failed")


def container_restarts(pods: Iterable[Mapping[str, Any]]) -> int:
    """The highest restart count of any container in ``pods``."""
    return max(
        (
            int(s.get("restartCount") or 0)
            for pod in pods
            for s in (pod.get("status") or {}).get("containerStatuses") or []
        ),
        default=0,
    )
