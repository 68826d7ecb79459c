"""Why a child pod does not start, read from its status as the API returns it (pure).

Shared by the controllers that run Jobs (Dataset profiles, TrainingJobs): a pod that the
scheduler cannot place, or whose container the kubelet cannot create, otherwise leaves its
owner Pending/Running forever with no explanation. ``stuck_pod`` names the pod and the
cause, in the words of the scheduler or kubelet:

- condition ``PodScheduled=False`` reason ``Unschedulable`` -> ``PodUnschedulable`` with the
  scheduler's message (``0/2 nodes are available: 2 Insufficient cpu. ...``);
- a container (or init container) waiting with ``ErrImagePull``, ``ImagePullBackOff``,
  ``InvalidImageName``, ``CreateContainerConfigError`` or ``CreateContainerError`` ->
  ``PodStartFailed`` with the kubelet's reason and message.

Waiting reasons that are part of a normal start (``ContainerCreating``,
``PodInitializing``) or that belong to a container that did start (``CrashLoopBackOff``) are
not a stuck start; finished and terminating pods never are. A controller holds its last
diagnosis while no pod is live (``is_live``): a pod deleted at the Job's deadline has not
recovered, it is gone, and the Job's outcome follows.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from kyklos.api.common import Reason

#: Container waiting reasons of a container the kubelet cannot start (it retries them all).
START_FAILURE_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)

#: The Ready reasons this module produces (an owner still waiting for its pod to start).
STUCK_REASONS = frozenset({Reason.POD_UNSCHEDULABLE, Reason.POD_START_FAILED})

#: Longest scheduler or kubelet message quoted (they can list every node).
MAX_CAUSE = 512


class PodStuck(NamedTuple):
    """A pod that does not start: a ``Reason`` and a message naming the pod and the cause."""

    reason: Reason
    message: str


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_CAUSE else text[: MAX_CAUSE - 3] + "..."


def stuck_pod(pod: Mapping[str, Any]) -> PodStuck | None:
    """Why ``pod`` does not start, or None while it is progressing normally (or has ended)."""
    if not is_live(pod):
        return None
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    name = str(meta.get("name") or "(unnamed)")
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            cause = _clip(str(condition.get("message") or "no node fits it"))
            return PodStuck(Reason.POD_UNSCHEDULABLE, f"pod {name} cannot be scheduled: {cause}")
    for key in ("initContainerStatuses", "containerStatuses"):
        for container in status.get(key) or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason in START_FAILURE_REASONS:
                detail = waiting.get("message")
                cause = f"{reason}: {_clip(str(detail))}" if detail else str(reason)
                return PodStuck(
                    Reason.POD_START_FAILED,
                    f"pod {name} container {container.get('name')} cannot start: {cause}",
                )
    return None


def diagnosis_view(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``pod`` that ``stuck_pod`` and ``is_live`` read, copied for an index:
    name, owners, deletionTimestamp, phase, PodScheduled, and containers' waiting states."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}

    def waiting(key: str) -> list[dict[str, Any]]:
        return [
            {"name": c.get("name"), "state": {"waiting": copy.deepcopy(c["state"]["waiting"])}}
            for c in status.get(key) or []
            if (c.get("state") or {}).get("waiting")
        ]

    kept_meta = {
        "name": meta.get("name"),
        "ownerReferences": copy.deepcopy(meta.get("ownerReferences") or []),
    }
    if meta.get("deletionTimestamp"):
        kept_meta["deletionTimestamp"] = meta["deletionTimestamp"]
    return {
        "metadata": kept_meta,
        "status": {
            "phase": status.get("phase"),
            "conditions": [
                copy.deepcopy(c)
                for c in status.get("conditions") or []
                if c.get("type") == "PodScheduled"
            ],
            "initContainerStatuses": waiting("initContainerStatuses"),
            "containerStatuses": waiting("containerStatuses"),
        },
    }


def is_live(pod: Mapping[str, Any]) -> bool:
    """Whether ``pod`` may still start or run: not terminating, not finished."""
    meta = pod.get("metadata") or {}
    phase = (pod.get("status") or {}).get("phase")
    return not meta.get("deletionTimestamp") and phase not in ("Succeeded", "Failed")


def first_stuck_pod(pods: Iterable[Mapping[str, Any]]) -> PodStuck | None:
    """The diagnosis of the first stuck pod by name (deterministic), or None when none is stuck."""
    ordered = sorted(pods, key=lambda p: str((p.get("metadata") or {}).get("name") or ""))
    for pod in ordered:
        stuck = stuck_pod(pod)
        if stuck is not None:
            return stuck
    return None


def held_diagnosis(ready: Mapping[str, Any] | None, prefix: str) -> PodStuck | None:
    """The diagnosis a stored Ready condition carries after ``prefix``, or None.

    An owner keeps it while none of its pods is live: a pod deleted at the Job's deadline
    has not recovered, and the Job's outcome follows.
    """
    ready = ready or {}
    message = str(ready.get("message") or "")
    if ready.get("reason") in STUCK_REASONS and message.startswith(prefix):
        return PodStuck(Reason(ready["reason"]), message[len(prefix) :])
    return None


def with_held_cause(text: str, ready: Mapping[str, Any] | None) -> str:
    """``text`` followed by what a stored stuck-pod Ready condition said held the run up.

    (When a Job fails at its deadline, the pod that never started is gone with its cause.)
    """
    ready = ready or {}
    if ready.get("reason") not in STUCK_REASONS:
        return text
    return f"{text}; before that: {ready.get('message')}"
