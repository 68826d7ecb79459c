"""The operator's pool: stopping it drops queued calls, lets running ones finish."""

from __future__ import annotations

import asyncio
import threading

from kyklos.controllers import threads


def test_stop_drops_queued_calls_and_lets_the_running_ones_finish() -> None:
    pool = threads.install(1)
    release = threading.Event()
    started = threading.Event()
    ran: list[int] = []

    def blocker() -> str:
        started.set()
        release.wait(10)
        return "finished"

    running = pool.submit(blocker)
    assert started.wait(10)
    queued = [pool.submit(ran.append, i) for i in range(100)]

    fresh = threads.stop()
    release.set()

    assert running.result(10) == "finished"
    assert all(f.cancelled() for f in queued)
    assert ran == []
    assert threads.pool() is fresh is not pool
    assert fresh.submit(lambda: 42).result(10) == 42


def test_run_awaits_the_call_on_the_operators_pool() -> None:
    threads.install(2)
    names: list[str] = []

    def work(a: int, *, b: int) -> int:
        names.append(threading.current_thread().name)
        return a + b

    assert asyncio.run(threads.run(work, 1, b=2)) == 3
    assert names and names[0].startswith("kyklos")
