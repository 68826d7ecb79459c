"""Why a pod does not start: the diagnosis from pod status (as the API returns it), as a table."""

from __future__ import annotations

from typing import Any

import pytest

from kyklos.logic.pods import (
    MAX_CAUSE,
    PodStuck,
    diagnosis_view,
    first_stuck_pod,
    held_diagnosis,
    is_live,
    stuck_pod,
    with_held_cause,
)

UNSCHEDULABLE = (
    "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: "
    "2 No preemption victims found for incoming pod."
)


def pod(
    name: str = "churn-profile-1-x7k2p",
    *,
    phase: str = "Pending",
    scheduled: dict[str, Any] | None = None,
    waiting: dict[str, Any] | None = None,
    init_waiting: dict[str, Any] | None = None,
    running: bool = False,
    terminating: bool = False,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if scheduled is not None:
        status["conditions"] = [
            {"type": "Initialized", "status": "True"},
            {"type": "PodScheduled", **scheduled},
        ]
    state: dict[str, Any] | None = (
        {"waiting": waiting} if waiting is not None else {"running": {}} if running else None
    )
    if state is not None:
        status["containerStatuses"] = [{"name": "worker", "state": state, "ready": False}]
    if init_waiting is not None:
        status["initContainerStatuses"] = [{"name": "fetch", "state": {"waiting": init_waiting}}]
    meta: dict[str, Any] = {"name": name}
    if terminating:
        meta["deletionTimestamp"] = "2026-11-23T12:00:00Z"
    return {"metadata": meta, "status": status}


def waiting(reason: str, message: str | None = None) -> dict[str, Any]:
    return {"reason": reason, **({"message": message} if message is not None else {})}


SCHEDULED = {"status": "True"}
NOT_SCHEDULED = {"status": "False", "reason": "Unschedulable", "message": UNSCHEDULABLE}
P = "pod churn-profile-1-x7k2p"


CASES: list[tuple[dict[str, Any], PodStuck | None]] = [
    # Progressing normally: not stuck.
    (pod(), None),
    (pod(scheduled=SCHEDULED), None),
    (pod(scheduled=SCHEDULED, waiting=waiting("ContainerCreating")), None),
    (pod(scheduled=SCHEDULED, waiting=waiting("PodInitializing")), None),
    (pod(phase="Running", scheduled=SCHEDULED, running=True), None),
    # A container that started and crashes is not a start failure.
    (pod(phase="Running", scheduled=SCHEDULED, waiting=waiting("CrashLoopBackOff")), None),
    # Being scheduled (no reason yet) or gated is not "no node fits".
    (pod(scheduled={"status": "False", "reason": "SchedulingGated"}), None),
    # Unschedulable: the scheduler's message.
    (
        pod(scheduled=NOT_SCHEDULED),
        PodStuck("PodUnschedulable", f"{P} cannot be scheduled: {UNSCHEDULABLE}"),
    ),
    (
        pod(scheduled={"status": "False", "reason": "Unschedulable"}),
        PodStuck("PodUnschedulable", f"{P} cannot be scheduled: no node fits it"),
    ),
    # The kubelet cannot start the container: its waiting reason and message.
    (
        pod(
            scheduled=SCHEDULED,
            waiting=waiting("CreateContainerConfigError", 'secret "store-creds" not found'),
        ),
        PodStuck(
            "PodStartFailed",
            f'{P} container worker cannot start: CreateContainerConfigError: secret "store-creds" not found',
        ),
    ),
    (
        pod(
            scheduled=SCHEDULED,
            waiting=waiting("ImagePullBackOff", 'Back-off pulling image "nope:1"'),
        ),
        PodStuck(
            "PodStartFailed",
            f'{P} container worker cannot start: ImagePullBackOff: Back-off pulling image "nope:1"',
        ),
    ),
    (
        pod(scheduled=SCHEDULED, waiting=waiting("ErrImagePull")),
        PodStuck("PodStartFailed", f"{P} container worker cannot start: ErrImagePull"),
    ),
    (
        pod(scheduled=SCHEDULED, waiting=waiting("InvalidImageName", "bad ref")),
        PodStuck("PodStartFailed", f"{P} container worker cannot start: InvalidImageName: bad ref"),
    ),
    (
        pod(scheduled=SCHEDULED, waiting=waiting("CreateContainerError", "no such file")),
        PodStuck(
            "PodStartFailed",
            f"{P} container worker cannot start: CreateContainerError: no such file",
        ),
    ),
    # An init container that cannot start blocks the pod too.
    (
        pod(scheduled=SCHEDULED, init_waiting=waiting("ErrImagePull", "not found")),
        PodStuck("PodStartFailed", f"{P} container fetch cannot start: ErrImagePull: not found"),
    ),
    # Finished or terminating pods are never stuck (their cause is gone with them).
    (pod(phase="Failed", scheduled=NOT_SCHEDULED), None),
    (pod(phase="Succeeded", waiting=waiting("ErrImagePull")), None),
    (pod(scheduled=NOT_SCHEDULED, terminating=True), None),
    # Not even a status yet (just created): not stuck.
    ({"metadata": {"name": "fresh"}}, None),
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_stuck_pod_diagnosis(body: dict[str, Any], expected: PodStuck | None) -> None:
    assert stuck_pod(body) == expected


def test_the_diagnosis_is_a_reason_message_pair() -> None:
    reason, message = stuck_pod(pod(scheduled=NOT_SCHEDULED))  # type: ignore[misc]
    assert reason == "PodUnschedulable" and message.startswith(P)


def test_a_long_cause_is_clipped_and_kept_on_one_line() -> None:
    long = "0/500 nodes are available:\n" + "x" * 5000
    stuck = stuck_pod(pod(scheduled={**NOT_SCHEDULED, "message": long}))
    assert stuck is not None
    cause = stuck.message.split("cannot be scheduled: ", 1)[1]
    assert len(cause) == MAX_CAUSE and cause.endswith("...") and "\n" not in cause


def test_first_stuck_pod_is_deterministic_and_skips_healthy_pods() -> None:
    healthy = pod("a-0", phase="Running", scheduled=SCHEDULED, running=True)
    unschedulable = pod("b-1", scheduled=NOT_SCHEDULED)
    no_image = pod("c-2", scheduled=SCHEDULED, waiting=waiting("ErrImagePull"))
    assert first_stuck_pod([]) is None
    assert first_stuck_pod([healthy]) is None
    for order in ([no_image, unschedulable, healthy], [healthy, unschedulable, no_image]):
        stuck = first_stuck_pod(order)
        assert stuck is not None and stuck.message.startswith("pod b-1 ")


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_the_indexed_view_of_a_pod_gets_the_same_diagnosis(
    body: dict[str, Any], expected: PodStuck | None
) -> None:
    """Controllers index diagnosis_view(pod), not the pod: nothing the diagnosis reads is lost."""
    view = diagnosis_view(body)
    assert stuck_pod(view) == expected
    assert is_live(view) == is_live(body)


def test_a_stored_diagnosis_is_held_only_under_its_own_prefix() -> None:
    message = f"Job churn-train: {P} cannot be scheduled: {UNSCHEDULABLE}"
    ready = {"type": "Ready", "status": "False", "reason": "PodUnschedulable", "message": message}
    assert held_diagnosis(ready, "Job churn-train: ") == PodStuck(
        "PodUnschedulable", f"{P} cannot be scheduled: {UNSCHEDULABLE}"
    )
    assert held_diagnosis(ready, "Job other: ") is None
    assert held_diagnosis({**ready, "reason": "Running"}, "Job churn-train: ") is None
    assert held_diagnosis(None, "Job churn-train: ") is None
    assert with_held_cause("deadline", ready) == f"deadline; before that: {message}"
    assert with_held_cause("deadline", {**ready, "reason": "Running"}) == "deadline"
    assert with_held_cause("deadline", None) == "deadline"
