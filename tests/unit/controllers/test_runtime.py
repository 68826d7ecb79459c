"""The shared reconcile runtime: own-write memory by resourceVersion, backoff, records."""

from __future__ import annotations

import threading

import pytest

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
