"""The pod worker's kubelet state machine, driven with scripted actions and a fake API."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from kyklos.sandbox.pods import ApiError, NodeContext, PodWorker
from kyklos.sandbox.policy import Policy, parse_policy


class FakeApi:
    """Records status patches and deletes; serves no secrets or config maps."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.deletes: list[dict[str, Any]] = []
        self.changed = threading.Condition()

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        with self.changed:
            if method == "PATCH" and path.endswith("/status"):
                assert content_type == "application/merge-patch+json"
                assert isinstance(body, dict)
                assert body["metadata"]["uid"] == "uid-1", "the UID is a precondition"
                self.statuses.append(body["status"])
            elif method == "DELETE":
                assert isinstance(body, dict)
                self.deletes.append(body)
            else:
                raise ApiError(404, f"{method} {path}")
            self.changed.notify_all()
        return {}

    def wait(self, predicate: Callable[[FakeApi], bool], what: str, timeout: float = 10) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self), timeout), (
                f"{what}; statuses: {self.statuses[-3:]}"
            )

    @property
    def last(self) -> dict[str, Any]:
        return self.statuses[-1] if self.statuses else {}


def pod(restart: str = "Never", image: str = "img", **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "uid-1"},
        "spec": {
            "restartPolicy": restart,
            "nodeName": "n1",
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "main", "image": image}],
            **spec,
        },
        "status": {
            "phase": "Pending",
            "conditions": [{"type": "PodScheduled", "status": "True", "lastTransitionTime": "x"}],
        },
    }


def run(policy_text: str, body: dict[str, Any]) -> tuple[FakeApi, PodWorker, NodeContext]:
    api = FakeApi()
    policy: Policy = parse_policy(policy_text.encode())
    ctx = NodeContext(
        api=api,
        data_dir="/nonexistent-kyklos-test",
        node_name="n1",
        host_ip="127.0.0.1",
        allocatable={"cpu": "4"},
        policy=lambda: policy,
    )
    worker = PodWorker(ctx, body, "10.244.1.2", lambda: None)
    worker.start()
    return api, worker, ctx


def stop(worker: PodWorker, ctx: NodeContext) -> None:
    ctx.stopping.set()
    worker.wake()
    worker.join(10)


def main_status(status: dict[str, Any]) -> dict[str, Any]:
    return dict(status.get("containerStatuses", [{}])[0])


def cond(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


def test_succeed_completes_the_pod_and_keeps_the_scheduler_condition() -> None:
    api, worker, ctx = run(
        "rules: [{image: img, action: succeed, terminationMessage: done}]", pod()
    )
    api.wait(lambda a: a.last.get("phase") == "Succeeded", "Succeeded")
    status = api.last
    term = main_status(status)["state"]["terminated"]
    assert (term["exitCode"], term["reason"], term["message"]) == (0, "Completed", "done")
    assert cond(status, "PodScheduled")["status"] == "True"
    assert cond(status, "Ready")["reason"] == "PodCompleted"
    assert status["podIP"] == "10.244.1.2" and status["hostIP"] == "127.0.0.1"
    stop(worker, ctx)


def test_fail_with_on_failure_restarts_with_back_off() -> None:
    policy = """
crashLoopBackOff: {initialSeconds: 0.3, maxSeconds: 0.6}
rules: [{image: img, action: fail, exitCode: 2}]
"""
    api, worker, ctx = run(policy, pod("OnFailure"))
    api.wait(lambda a: main_status(a.last).get("restartCount", 0) >= 3, "three restarts")
    reasons = {
        main_status(s).get("state", {}).get("waiting", {}).get("reason") for s in api.statuses
    }
    assert "CrashLoopBackOff" in reasons
    assert api.last["phase"] == "Running"
    assert main_status(api.last)["lastState"]["terminated"]["exitCode"] == 2
    stop(worker, ctx)


def test_serve_becomes_ready_then_writes_nothing_more() -> None:
    api, worker, ctx = run("rules: [{image: img, action: serve, readyAfter: 0.2}]", pod("Always"))
    api.wait(lambda a: cond(a.last, "Ready")["status"] == "True", "Ready")
    writes = len(api.statuses)
    time.sleep(0.5)
    assert len(api.statuses) == writes, "a settled pod gets no status writes"
    assert api.last["phase"] == "Running"
    stop(worker, ctx)


def test_failed_init_container_fails_a_never_pod_without_running_main() -> None:
    body = pod(initContainers=[{"name": "init", "image": "bad"}])
    api, worker, ctx = run(
        "rules: [{image: bad, action: fail, exitCode: 5}, {image: img, action: succeed}]", body
    )
    api.wait(lambda a: a.last.get("phase") == "Failed", "Failed")
    init = api.last["initContainerStatuses"][0]["state"]["terminated"]
    assert init["exitCode"] == 5
    assert main_status(api.last)["state"] == {"waiting": {"reason": "PodInitializing"}}
    assert cond(api.last, "Initialized")["status"] == "False"
    stop(worker, ctx)


def test_deletion_stops_reports_and_deletes_with_grace_zero() -> None:
    body = pod("Always")
    api, worker, _ctx = run("rules: [{image: img, action: serve}]", body)
    api.wait(lambda a: a.last.get("phase") == "Running", "Running")
    deleting = {**body, "metadata": {**body["metadata"], "deletionTimestamp": "now"}}
    deleting["metadata"]["deletionGracePeriodSeconds"] = 1
    worker.update(deleting)
    api.wait(lambda a: bool(a.deletes), "the final delete")
    assert api.deletes[0] == {"gracePeriodSeconds": 0, "preconditions": {"uid": "uid-1"}}
    assert "terminated" in main_status(api.last)["state"]
    worker.join(5)
    assert not worker.thread.is_alive()


def test_container_running_under_a_previous_agent_restarts_as_after_a_node_restart() -> None:
    body = pod("Always")
    body["status"] = {
        "phase": "Running",
        "startTime": "2026-01-01T00:00:00Z",
        "podIP": "10.244.1.9",
        "containerStatuses": [
            {
                "name": "main",
                "restartCount": 0,
                "state": {"running": {"startedAt": "2026-01-01T00:00:01Z"}},
                "containerID": "sandbox://old",
            }
        ],
    }
    api, worker, ctx = run("rules: [{image: img, action: serve}]", body)
    api.wait(lambda a: main_status(a.last).get("restartCount") == 1, "a restart")
    last = main_status(api.last)["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("ContainerStatusUnknown", 137)
    assert api.last["podIP"] == "10.244.1.9", "a pod keeps its IP"
    assert api.last["startTime"] == "2026-01-01T00:00:00Z"
    stop(worker, ctx)


@pytest.mark.parametrize("restart", ["Never", "OnFailure"])
def test_previous_agents_running_container_fails_a_pod_that_does_not_restart_it(
    restart: str,
) -> None:
    body = pod(restart)
    body["status"] = {
        "phase": "Running",
        "containerStatuses": [
            {"name": "main", "restartCount": 0, "state": {"running": {"startedAt": "t"}}}
        ],
    }
    api, worker, ctx = run("rules: [{image: img, action: serve}]", body)
    if restart == "Never":
        api.wait(lambda a: a.last.get("phase") == "Failed", "Failed")
    else:
        api.wait(lambda a: main_status(a.last).get("restartCount") == 1, "a restart (exit 137)")
    stop(worker, ctx)


def test_pending_action_never_starts() -> None:
    api, worker, ctx = run(
        "rules: [{image: img, action: pending, reason: ImagePullBackOff, message: nope}]",
        pod("Always"),
    )
    api.wait(lambda a: bool(a.statuses), "a status")
    assert api.last["phase"] == "Pending"
    assert main_status(api.last)["state"] == {
        "waiting": {"reason": "ImagePullBackOff", "message": "nope"}
    }
    stop(worker, ctx)
