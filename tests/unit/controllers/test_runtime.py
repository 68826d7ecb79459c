"""The shared reconcile runtime: own-write memory by resourceVersion, backoff, records."""

from __future__ import annotations

import asyncio
import logging
import threading

import kopf
import pytest
from kopf._cogs.aiokits.aioenums import AsyncFlagWaiter, FlagSetter
from kopf._core.intents.stoppers import DaemonStoppingReason

from kyklos.controllers import runtime


def body(version: str, status: dict[str, object]) -> dict[str, object]:
    return {"metadata": {"name": "x", "resourceVersion": version}, "status": status}


def test_a_body_at_the_version_a_write_replaced_is_stale_and_the_write_is_used() -> None:
    memory = runtime.Memory()
    stale = body("10", {"phase": "Pending", "a": 1})
    memory.remember_write(stale, stale["status"], {"phase": "Running", "a": None})  # type: ignore[arg-type]
    assert memory.current_status(stale) == {"phase": "Running"}
    # The watch delivered our write (or anyone's newer write): the body wins.
    newer = body("11", {"phase": "Running", "b": 2})
    assert memory.current_status(newer) == {"phase": "Running", "b": 2}


def test_without_a_write_the_body_is_current() -> None:
    assert runtime.Memory().current_status(body("3", {"phase": "X"})) == {"phase": "X"}


def test_retry_after_backs_off_exponentially_with_jitter_and_a_cap() -> None:
    low = [runtime.retry_after(n, rng=lambda: 0.0) for n in (1, 2, 3, 4, 10, 50)]
    high = [runtime.retry_after(n, rng=lambda: 1.0) for n in (1, 2, 3, 4, 10, 50)]
    assert low == pytest.approx([1.6, 3.2, 6.4, 12.8, 48.0, 48.0])
    assert high == pytest.approx([2.4, 4.8, 9.6, 19.2, 72.0, 72.0])


def test_objects_give_one_record_per_key_across_threads() -> None:
    objects: runtime.Objects[runtime.Memory] = runtime.Objects(runtime.Memory)
    seen: list[runtime.Memory] = []

    def grab() -> None:
        seen.append(objects.get(("ns", "a")))

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(m is seen[0] for m in seen)
    objects.forget(("ns", "a"))
    assert objects.get(("ns", "a")) is not seen[0]


def child(version: str, replicas: int) -> dict[str, object]:
    return {
        "metadata": {"name": "iris-canary", "resourceVersion": version},
        "spec": {"replicas": replicas},
    }


def test_own_child_writes_hide_stale_copies_until_the_watch_delivers_a_newer_one() -> None:
    memory = runtime.Memory()
    old, new = child("5", 1), child("7", 2)
    memory.remember_child("Deployment", "iris-canary", old, new)
    assert memory.current_child("Deployment", "iris-canary", old) == new
    assert memory.current_child("Deployment", "iris-canary", new) == new
    assert memory.children == {}  # delivered: the index is the truth again
    assert memory.current_child("Deployment", "iris-canary", old) == old


def test_a_created_child_not_indexed_yet_is_the_written_one() -> None:
    memory = runtime.Memory()
    new = child("7", 2)
    memory.remember_child("Deployment", "iris-canary", None, new)
    assert memory.current_child("Deployment", "iris-canary", None) == new
    assert memory.current_child("Deployment", "iris-canary", new) == new


def test_a_deleted_child_stays_deleted_through_every_version_the_reconcile_replaced() -> None:
    memory = runtime.Memory()
    seen, scaled = child("5", 1), child("6", 0)
    memory.remember_child("Deployment", "iris-canary", seen, None, also_replaced=[scaled])
    assert memory.current_child("Deployment", "iris-canary", seen) is None
    assert memory.current_child("Deployment", "iris-canary", scaled) is None
    assert memory.current_child("Deployment", "iris-canary", None) is None  # gone: delivered
    assert memory.children == {}
    # Created again by someone else later: seen as it is.
    assert memory.current_child("Deployment", "iris-canary", child("9", 1)) == child("9", 1)


def test_writes_in_a_row_before_the_watch_catches_up_keep_every_older_version_stale() -> None:
    memory = runtime.Memory()
    a, b, c = child("5", 1), child("6", 2), child("8", 3)
    memory.remember_child("Deployment", "iris-canary", a, b)
    seen = memory.current_child("Deployment", "iris-canary", a)
    assert seen == b
    memory.remember_child("Deployment", "iris-canary", seen, c)
    # The watch delivers b, then c: b is older than our last write.
    assert memory.current_child("Deployment", "iris-canary", a) == c
    assert memory.current_child("Deployment", "iris-canary", b) == c
    assert memory.current_child("Deployment", "iris-canary", c) == c


def test_attempt_backs_off_and_logs_one_line_then_resets(caplog: pytest.LogCaptureFixture) -> None:
    memory = runtime.Memory()

    def boom() -> float | None:
        raise ValueError("no model\nsecond line")

    with caplog.at_level(logging.DEBUG, logger="kyklos.runtime"):
        first = runtime.attempt("ModelDeployment", "ns", "iris", memory, boom)
        second = runtime.attempt("ModelDeployment", "ns", "iris", memory, boom)
    assert memory.failures == 2
    assert first is not None and 1.6 <= first <= 2.4
    assert second is not None and 3.2 <= second <= 4.8
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert warnings[0].getMessage() == (
        "ModelDeployment ns/iris: reconcile failed, retrying in 2s: ValueError: no model"
    )
    assert runtime.attempt("ModelDeployment", "ns", "iris", memory, lambda: 7.0) == 7.0
    assert memory.failures == 0


def test_attempt_says_nothing_above_debug_about_an_object_deleted_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    memory = runtime.Memory()

    def boom() -> float | None:
        raise RuntimeError("namespace is terminating")

    with caplog.at_level(logging.DEBUG, logger="kyklos.runtime"):
        assert (
            runtime.attempt("ModelDeployment", "ns", "iris", memory, boom, gone=lambda: True)
            is None
        )
    assert memory.failures == 0
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]


class _Growing(dict[str, list[int]]):
    """An index whose values change size while they are copied the first times."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.calls += 1
        if self.calls < 3:
            return _Mutating()
        return super().get(key, default)


class _Mutating:
    def __iter__(self) -> object:
        raise RuntimeError("dictionary changed size during iteration")


def test_index_values_copies_again_when_the_event_loop_changed_the_index() -> None:
    index = _Growing()
    index["k"] = [1, 2]
    assert runtime.index_values(index, "k") == [1, 2]
    assert index.calls == 3
    assert runtime.index_values(None, "k") == []
    assert runtime.index_values({"k": [1]}, "missing") == []


def _stopper() -> tuple[FlagSetter[DaemonStoppingReason], kopf.DaemonStopped]:
    # kopf's own stop flag, as kopf hands it to a daemon.
    setter: FlagSetter[DaemonStoppingReason] = FlagSetter()
    return setter, AsyncFlagWaiter(setter)


def test_a_daemon_reconciles_when_due_when_woken_and_exits_when_stopped() -> None:
    async def scenario() -> list[tuple[str, float]]:
        daemons = runtime.Daemons(max_sleep=3600.0)
        setter, stopped = _stopper()
        runs: list[tuple[str, float]] = []
        delays = iter([0.05, None, None, None])
        loop = asyncio.get_running_loop()
        started = loop.time()

        def reconcile() -> float | None:
            runs.append((threading.current_thread().name, loop.time() - started))
            return next(delays)

        task = asyncio.ensure_future(daemons.run(("ns", "a"), stopped, reconcile))
        while len(runs) < 2:  # the first run, then the one due 0.05 s later
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert len(runs) == 2  # no delay: it sleeps max_sleep (an hour) ...
        daemons.wake(("ns", "other"))
        await asyncio.sleep(0.05)
        assert len(runs) == 2  # ... another object's wake-up is not its own ...
        daemons.wake(("ns", "a"))
        while len(runs) < 3:  # ... its own wakes it at once
            await asyncio.sleep(0.01)
        setter.set(DaemonStoppingReason.OPERATOR_EXITING)
        await asyncio.wait_for(task, 5)
        daemons.wake(("ns", "a"))  # gone: a no-op
        return runs

    runs = asyncio.run(scenario())
    assert len(runs) == 3
    assert all(name != threading.main_thread().name for name, _ in runs)  # in worker threads
    assert runs[1][1] >= 0.05
