"""The node agent's pod phase is the kubelet's getPhase over container states (a table)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from kyklos.sandbox.podphase import pod_phase


@dataclass
class C:
    state: dict[str, Any]
    last_state: dict[str, Any] = field(default_factory=dict)
    done: bool = False


WAITING = {"waiting": {"reason": "ContainerCreating"}}
RUNNING = {"running": {"startedAt": "t"}}


def ended(code: int) -> dict[str, Any]:
    return {"terminated": {"exitCode": code}}


def backoff_after(code: int) -> C:
    """Waiting to restart after exiting with ``code``."""
    return C({"waiting": {"reason": "CrashLoopBackOff"}}, ended(code))


CASES = [
    # (id, restartPolicy, inits, regular, terminal, phase)
    ("nothing-started", "Always", [], [C(WAITING)], False, "Pending"),
    ("running", "Always", [], [C(RUNNING)], False, "Running"),
    ("init-running", "Always", [C(RUNNING)], [C(WAITING)], False, "Pending"),
    ("init-done-main-running", "Always", [C(ended(0), done=True)], [C(RUNNING)], False, "Running"),
    ("init-failed-never", "Never", [C(ended(1), done=True)], [C(WAITING)], False, "Failed"),
    ("init-failed-will-retry", "OnFailure", [backoff_after(1)], [C(WAITING)], False, "Pending"),
    ("succeeded", "Never", [], [C(ended(0), done=True)], False, "Succeeded"),
    ("failed", "Never", [], [C(ended(2), done=True)], False, "Failed"),
    (
        "one-of-two-failed",
        "Never",
        [],
        [C(ended(0), done=True), C(ended(1), done=True)],
        False,
        "Failed",
    ),
    ("crashloop-is-running", "Always", [], [backoff_after(1)], False, "Running"),
    ("exited-will-restart", "Always", [], [C(ended(0))], False, "Running"),
    ("exited-pod-ending", "Always", [], [C(ended(0))], True, "Succeeded"),
    ("crashloop-pod-ending", "Always", [], [backoff_after(137)], True, "Failed"),
    (
        "one-running-one-done",
        "OnFailure",
        [],
        [C(RUNNING), C(ended(0), done=True)],
        False,
        "Running",
    ),
    ("no-containers", "Always", [], [], False, "Pending"),
]


@pytest.mark.parametrize(
    ("policy", "inits", "regular", "terminal", "phase"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_pod_phase(
    policy: str, inits: list[C], regular: list[C], terminal: bool, phase: str
) -> None:
    assert pod_phase(policy, inits, regular, terminal=terminal) == phase
