"""The node agent's pod status is a pure function of the pod and its container records."""

from __future__ import annotations

from typing import Any

import pytest

from kyklos.sandbox.podstatus import Container, pod_status
from kyklos.sandbox.policy import Rule

NOW = "2026-12-04T22:00:00Z"
EARLIER = "2026-12-04T21:00:00Z"
RUNNING = {"running": {"startedAt": EARLIER}}


def ended(code: int) -> dict[str, Any]:
    return {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}}


def container(
    name: str,
    state: dict[str, Any],
    *,
    init: bool = False,
    ready: bool = False,
    done: bool = False,
) -> Container:
    rule = Rule(image="*")
    c = Container(spec={"name": name, "image": "img:1"}, init=init, rule=rule, action="process")
    c.state, c.ready, c.done = state, ready, done
    return c


def pod(restart_policy: str = "Never", **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u", **extra.pop("metadata", {})},
        "spec": {"restartPolicy": restart_policy},
        **extra,
    }


def status(p: dict[str, Any], containers: list[Container], **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "last_written": None,
        "terminal": False,
        "deadline_exceeded": False,
        "host_ip": "10.0.0.1",
        "pod_ip": "10.1.0.5",
        "start_time": EARLIER,
        "now": NOW,
    }
    args.update(kw)
    return pod_status(p, containers, **args)


def conditions(s: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """type -> (status, reason, message)"""
    return {
        c["type"]: (c["status"], c.get("reason", ""), c.get("message", "")) for c in s["conditions"]
    }


CASES = [
    pytest.param(
        [container("main", RUNNING, ready=True)],
        {},
        "Running",
        {
            "PodReadyToStartContainers": ("True", "", ""),
            "Initialized": ("True", "", ""),
            "Ready": ("True", "", ""),
            "ContainersReady": ("True", "", ""),
        },
        id="running-and-ready",
    ),
    pytest.param(
        [container("b", RUNNING), container("a", RUNNING, ready=True)],
        {},
        "Running",
        {
            "Ready": ("False", "ContainersNotReady", "containers with unready status: [b]"),
            "ContainersReady": (
                "False",
                "ContainersNotReady",
                "containers with unready status: [b]",
            ),
        },
        id="one-container-not-ready",
    ),
    pytest.param(
        [
            container("setup", RUNNING, init=True),
            container("main", {"waiting": {"reason": "PodInitializing"}}),
        ],
        {},
        "Pending",
        {
            "Initialized": (
                "False",
                "ContainersNotInitialized",
                "containers with incomplete status: [setup]",
            ),
        },
        id="init-container-running",
    ),
    pytest.param(
        [container("main", ended(0), done=True)],
        {},
        "Succeeded",
        {
            "PodReadyToStartContainers": ("False", "", ""),
            "Initialized": ("True", "PodCompleted", ""),
            "Ready": ("False", "PodCompleted", ""),
            "ContainersReady": ("False", "PodCompleted", ""),
        },
        id="succeeded",
    ),
    pytest.param(
        [container("main", ended(1), done=True)],
        {},
        "Failed",
        {
            "PodReadyToStartContainers": ("False", "", ""),
            "Ready": ("False", "PodFailed", ""),
            "ContainersReady": ("False", "PodFailed", ""),
        },
        id="failed",
    ),
    pytest.param(
        [container("main", ended(137))],
        {"terminal": True, "deadline_exceeded": True},
        "Failed",
        {"Ready": ("False", "PodFailed", "")},
        id="deadline-exceeded",
    ),
]


@pytest.mark.parametrize(("containers", "facts", "phase", "expected"), CASES)
def test_phase_and_conditions_follow_the_container_records(
    containers: list[Container],
    facts: dict[str, Any],
    phase: str,
    expected: dict[str, tuple[str, str, str]],
) -> None:
    s = status(pod(), containers, **facts)
    assert s["phase"] == phase
    got = conditions(s)
    for ctype, want in expected.items():
        assert got[ctype] == want, ctype
    assert [c["type"] for c in s["conditions"]] == [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
    ]
    if facts.get("deadline_exceeded"):
        assert s["reason"] == "DeadlineExceeded"
        assert "deadline" in s["message"]
    else:
        assert "reason" not in s


def test_status_carries_ips_start_time_and_sorted_container_statuses() -> None:
    init = container("setup", ended(0), init=True, done=True)
    s = status(pod(), [init, container("b", RUNNING), container("a", RUNNING)])
    assert s["hostIP"] == "10.0.0.1" and s["hostIPs"] == [{"ip": "10.0.0.1"}]
    assert s["podIP"] == "10.1.0.5" and s["podIPs"] == [{"ip": "10.1.0.5"}]
    assert s["startTime"] == EARLIER
    assert [c["name"] for c in s["containerStatuses"]] == ["a", "b"]
    assert [c["name"] for c in s["initContainerStatuses"]] == ["setup"]
    a = s["containerStatuses"][0]
    assert a["started"] is True and a["restartCount"] == 0
    assert a["imageID"].startswith("img@sha256:")
    assert "observedGeneration" not in s


def test_unchanged_conditions_keep_their_transition_time_and_others_conditions_stay() -> None:
    scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": EARLIER}
    first = status(
        pod(status={"conditions": [scheduled]}, metadata={"generation": 3}),
        [container("main", RUNNING, ready=False)],
        now=EARLIER,
    )
    assert first["conditions"][0] == scheduled, "the scheduler's condition is kept, first"
    assert first["observedGeneration"] == 3
    assert all(c["observedGeneration"] == 3 for c in first["conditions"][1:])
    assert "observedGeneration" not in first["conditions"][0]

    second = status(
        pod(status={"conditions": [scheduled]}, metadata={"generation": 3}),
        [container("main", RUNNING, ready=True)],
        last_written=first,
        now=NOW,
    )
    times = {c["type"]: c["lastTransitionTime"] for c in second["conditions"]}
    assert times["Initialized"] == EARLIER, "no transition: the time stays"
    assert times["Ready"] == NOW, "False -> True: a new transition time"
    assert times["ContainersReady"] == NOW


def test_pod_status_is_pure() -> None:
    p = pod(status={"conditions": []})
    cs = [container("main", RUNNING, ready=True)]
    assert status(p, cs) == status(p, cs)
    assert p == pod(status={"conditions": []}), "the pod is not modified"
