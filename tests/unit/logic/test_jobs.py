"""Reading Job state and termination messages from plain objects."""

from __future__ import annotations

from typing import Any

import pytest

from kyklos.logic.jobs import JobState, container_restarts, failed_pods, latest_message, observe_job


@pytest.mark.parametrize(
    ("job", "state"),
    [
        ({"status": {}}, JobState.PENDING),
        ({"spec": {"suspend": True}, "status": {}}, JobState.SUSPENDED),
        ({"status": {"active": 1, "startTime": "t"}}, JobState.RUNNING),
        ({"status": {"conditions": [{"type": "Complete", "status": "True"}]}}, JobState.SUCCEEDED),
        (
            {
                "status": {
                    "conditions": [
                        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
                    ]
                }
            },
            JobState.FAILED,
        ),
        (
            {"status": {"conditions": [{"type": "Failed", "status": "False"}], "active": 1}},
            JobState.RUNNING,
        ),
    ],
)
def test_observe_job(job: dict[str, Any], state: JobState) -> None:
    assert observe_job(job).state == state


def pod(phase: str, message: str | None, finished: str, restarts: int = 0) -> dict[str, Any]:
    terminated = {"finishedAt": finished}
    if message is not None:
        terminated["message"] = message
    return {
        "status": {
            "phase": phase,
            "containerStatuses": [{"restartCount": restarts, "state": {"terminated": terminated}}],
        }
    }


def test_latest_message_prefers_the_most_recent_pod() -> None:
    pods = [
        pod("Failed", "old", "2026-01-01T00:00:00Z"),
        pod("Succeeded", "new", "2026-01-01T00:01:00Z"),
    ]
    assert latest_message(pods) == "new"
    assert latest_message(pods[:1], succeeded_only=True) is None


def test_counts() -> None:
    pods = [
        pod("Failed", "x", "a", restarts=4),
        pod("Failed", None, "b"),
        pod("Succeeded", "y", "c"),
    ]
    assert failed_pods(pods) == 2
    assert container_restarts(pods) == 4
