"""The ModelDeployment controller's own machinery: the requeue clock and the write memos."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from kyklos.controllers import deployment as ctrl


def test_clock_runs_the_newest_request_once_and_forgets_cancelled_ones() -> None:
    fired: list[tuple[str, str]] = []
    done = threading.Event()

    def callback(key: tuple[str, str]) -> None:
        fired.append(key)
        if key == ("ns", "b"):
            done.set()

    clock = ctrl.RequeueClock(callback)
    try:
        clock.schedule(("ns", "a"), 0.05)
        clock.schedule(("ns", "a"), 0.2)  # replaces the earlier request
        clock.schedule(("ns", "c"), 0.05)
        clock.schedule(("ns", "c"), None)  # cancelled
        clock.schedule(("ns", "b"), 0.4)
        assert done.wait(5)
        time.sleep(0.1)
    finally:
        clock.stop()
    assert fired == [("ns", "a"), ("ns", "b")]


def test_clock_wakes_early_for_an_earlier_request() -> None:
    done = threading.Event()
    clock = ctrl.RequeueClock(lambda key: done.set())
    try:
        clock.schedule(("ns", "late"), 3600)
        started = time.monotonic()
        clock.schedule(("ns", "soon"), 0.05)
        assert done.wait(5)
        assert time.monotonic() - started < 5
    finally:
        clock.stop()


def body(rv: str, status: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"resourceVersion": rv}, "status": status}


@pytest.fixture(autouse=True)
def clean_memos() -> Any:
    ctrl._written.clear()
    ctrl._child_writes.clear()
    yield
    ctrl._written.clear()
    ctrl._child_writes.clear()


def test_own_status_write_wins_over_an_older_indexed_body() -> None:
    key = ("ns", "iris")
    ctrl._written[key] = ("20", {"step": 1}, time.monotonic() + 30)
    assert ctrl._effective_status(key, body("19", {"step": 0, "canaryWeight": 10})) == {"step": 1}
    # The watch caught up (or moved past it): the body is the truth again.
    assert ctrl._effective_status(key, body("21", {"step": 2})) == {"step": 2}
    assert key not in ctrl._written


def test_own_status_write_expires() -> None:
    key = ("ns", "iris")
    ctrl._written[key] = ("20", {"step": 1}, time.monotonic() - 1)
    assert ctrl._effective_status(key, body("19", {"step": 0})) == {"step": 0}


def test_own_child_writes_hide_stale_and_deleted_children() -> None:
    old = {"metadata": {"resourceVersion": "5", "name": "iris-canary"}, "spec": {"replicas": 1}}
    new = {"metadata": {"resourceVersion": "7", "name": "iris-canary"}, "spec": {"replicas": 2}}
    ctrl._remember("Deployment", "ns", "iris-canary", new, "7")
    assert ctrl._fresh("Deployment", "ns", "iris-canary", old) == new
    assert ctrl._fresh("Deployment", "ns", "iris-canary", None) == new  # created, not seen yet
    assert ctrl._fresh("Deployment", "ns", "iris-canary", new) == new
    assert ("Deployment", "ns", "iris-canary") not in ctrl._child_writes
    ctrl._remember("Deployment", "ns", "iris-canary", None, "7")  # deleted at version 7
    assert ctrl._fresh("Deployment", "ns", "iris-canary", new) is None
    assert ctrl._fresh("Deployment", "ns", "iris-canary", None) is None
    assert ("Deployment", "ns", "iris-canary") not in ctrl._child_writes


def test_differs_ignores_server_defaults_but_sees_real_changes() -> None:
    desired = {
        "metadata": {"labels": {"a": "1"}, "ownerReferences": []},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "server"}]}}},
    }
    actual = {
        "metadata": {"labels": {"a": "1", "extra": "x"}},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 600,
            "template": {"spec": {"containers": [{"name": "server", "imagePullPolicy": "Always"}]}},
        },
    }
    assert not ctrl._differs(desired, actual)
    assert ctrl._differs({**desired, "spec": {**desired["spec"], "replicas": 3}}, actual)
    assert ctrl._differs(desired, None)
