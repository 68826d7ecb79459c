"""kyklos proxy against real loopback HTTP servers (aiohttp on both sides, no mocks)."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pyarrow.parquet as pq
from aiohttp import web

from kyklos.api.serving import ProxySettings, RequestRecord
from kyklos.serving.proxy import ERROR_HEADER, REVISION_HEADER, serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def model_server(port: int, delay: float = 0.0) -> web.AppRunner:
    """A tiny JSON model server: /healthz, /predict (echoes row count), /text, /fail."""

    async def predict(request: web.Request) -> web.Response:
        await asyncio.sleep(delay)
        body = await request.json()
        return web.json_response({"predictions": [1] * len(body["rows"])})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text="plain words", headers={"X-Server": "yes"})

    async def fail(request: web.Request) -> web.Response:
        return web.json_response({"error": "boom"}, status=503)

    app = web.Application()
    app.router.add_post("/predict", predict)
    app.router.add_get("/healthz", health)
    app.router.add_post("/text", text)
    app.router.add_get("/fail", fail)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


def settings(tmp_path: Path, **changes: Any) -> ProxySettings:
    values: dict[str, Any] = {
        "listen_port": free_port(),
        "server_port": free_port(),
        "metrics_port": free_port(),
        "revision": "rev1",
        "namespace": "ns",
        "name": "churn",
        "pod": "churn-stable-abc",
        "artifacts": f"file://{tmp_path}/store",
        "flush_seconds": 60.0,
        "host": "127.0.0.1",
    }
    values.update(changes)
    return ProxySettings(**values)


async def with_proxy(
    s: ProxySettings,
    body: Callable[[aiohttp.ClientSession], Awaitable[Any]],
    *,
    server: bool = True,
    delay: float = 0.0,
) -> Any:
    """Run the proxy (and the model server) around ``body``; stop the proxy afterwards."""
    runner = await model_server(s.server_port, delay) if server else None
    stop = asyncio.Event()
    task = asyncio.create_task(serve(s, stop))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):  # wait until the proxy listens
                try:
                    async with session.get(f"http://127.0.0.1:{s.metrics_port}/metrics"):
                        break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.02)
            result = await body(session)
    finally:
        stop.set()
        await task
        if runner is not None:
            await runner.cleanup()
    return result


def metrics_text(s: ProxySettings) -> Callable[[aiohttp.ClientSession], Awaitable[str]]:
    async def get(session: aiohttp.ClientSession) -> str:
        async with session.get(f"http://127.0.0.1:{s.metrics_port}/metrics") as r:
            return await r.text()

    return get


def written_records(tmp_path: Path) -> list[RequestRecord]:
    files = sorted((tmp_path / "store/ns/ModelDeployment/churn/requests/rev1").glob("*.parquet"))
    return [RequestRecord.from_row(row) for f in files for row in pq.read_table(f).to_pylist()]


def test_forwards_counts_and_logs_requests_on_stop(tmp_path: Path) -> None:
    s = settings(tmp_path)

    async def body(session: aiohttp.ClientSession) -> tuple[list[Any], str]:
        base = f"http://127.0.0.1:{s.listen_port}"
        answers = []
        for n in (1, 2, 3):
            async with session.post(f"{base}/predict", json={"rows": [{"x": 1}] * n}) as r:
                answers.append((r.status, await r.json(), r.headers[REVISION_HEADER]))
        async with session.get(f"{base}/fail") as r:
            answers.append((r.status, await r.json(), None))
        async with session.get(f"{base}/healthz") as r:  # the probe: forwarded, not counted
            answers.append((r.status, await r.json(), None))
        probe = f"http://127.0.0.1:{s.metrics_port}/healthz"  # the probe's own port
        async with session.get(probe) as r:
            answers.append((r.status, await r.json(), None))
        return answers, await metrics_text(s)(session)

    answers, metrics = asyncio.run(with_proxy(s, body))
    assert answers[0] == (200, {"predictions": [1]}, "rev1")
    assert answers[2][1] == {"predictions": [1, 1, 1]}
    assert answers[3] == (503, {"error": "boom"}, None)
    assert answers[4][:2] == (200, {"status": "ok"})
    assert answers[5][:2] == (200, {"status": "ok"})
    assert 'kyklos_serving_requests_total{code="200",revision="rev1"} 3.0' in metrics
    assert 'kyklos_serving_requests_total{code="503",revision="rev1"} 1.0' in metrics
    assert 'kyklos_serving_request_duration_seconds_count{revision="rev1"} 4.0' in metrics
    records = written_records(tmp_path)  # flushed on stop, no flush interval elapsed
    assert [r.code for r in records] == [200, 200, 200, 503]
    assert {r.revision for r in records} == {"rev1"}
    assert records[1].request_body() == {"rows": [{"x": 1}] * 2}
    assert records[1].response_body() == {"predictions": [1, 1]}
    assert all(r.latency_seconds > 0 for r in records)


def test_server_down_is_502_and_slow_server_is_504_with_the_cause(tmp_path: Path) -> None:
    down = settings(tmp_path)

    async def call(session: aiohttp.ClientSession) -> tuple[int, str]:
        async with session.post(
            f"http://127.0.0.1:{down.listen_port}/predict", json={"rows": []}
        ) as r:
            return r.status, r.headers.get(ERROR_HEADER, "")

    status, cause = asyncio.run(with_proxy(down, call, server=False))
    assert status == 502
    assert f"model server on port {down.server_port}" in cause

    slow = settings(tmp_path, upstream_timeout_seconds=0.2)

    async def call_slow(session: aiohttp.ClientSession) -> tuple[int, str]:
        async with session.post(
            f"http://127.0.0.1:{slow.listen_port}/predict", json={"rows": [{}]}
        ) as r:
            return r.status, r.headers.get(ERROR_HEADER, "")

    status, cause = asyncio.run(with_proxy(slow, call_slow, delay=2.0))
    assert status == 504
    assert "within 0.2s" in cause


def test_non_json_bodies_are_logged_raw_and_large_ones_are_counted_not_logged(
    tmp_path: Path,
) -> None:
    s = settings(tmp_path, max_body_bytes=100)

    async def body(session: aiohttp.ClientSession) -> tuple[str, str]:
        base = f"http://127.0.0.1:{s.listen_port}"
        async with session.post(f"{base}/text", data=b"\x00\x01 not json") as r:
            text, server_header = await r.text(), r.headers["X-Server"]
        async with session.post(f"{base}/predict", json={"rows": [{"x": "y" * 200}]}) as r:
            assert r.status == 200
        return text + "|" + server_header, await metrics_text(s)(session)

    (text, metrics) = asyncio.run(with_proxy(s, body))
    assert text == "plain words|yes"
    assert 'kyklos_serving_request_log_dropped_total{reason="body_too_large"} 1.0' in metrics
    raw, large = written_records(tmp_path)
    assert raw.request_raw == b"\x00\x01 not json" and raw.request_json is None
    assert raw.response_raw == b"plain words"
    assert large.request_json is None and large.request_raw is None  # too large: not logged
    assert large.code == 200  # but the request itself is recorded


def test_an_unreachable_store_never_fails_a_request_and_drops_are_counted(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the store's directory would be")
    s = settings(tmp_path, artifacts=f"file://{blocker}/store", flush_seconds=0.1)

    async def body(session: aiohttp.ClientSession) -> tuple[list[int], str]:
        codes = []
        for _ in range(5):
            async with session.post(
                f"http://127.0.0.1:{s.listen_port}/predict", json={"rows": [{}]}
            ) as r:
                codes.append(r.status)
        await asyncio.sleep(0.5)  # a few failed flushes
        return codes, await metrics_text(s)(session)

    codes, metrics = asyncio.run(with_proxy(s, body))
    assert codes == [200] * 5
    assert 'kyklos_serving_request_log_dropped_total{reason="store_error"} 5.0' in metrics


def test_a_full_buffer_drops_new_records_and_counts_them(tmp_path: Path) -> None:
    s = settings(tmp_path, max_buffer_records=2)

    async def body(session: aiohttp.ClientSession) -> str:
        for _ in range(5):
            async with session.post(
                f"http://127.0.0.1:{s.listen_port}/predict", json={"rows": [{}]}
            ) as r:
                assert r.status == 200
        return await metrics_text(s)(session)

    metrics = asyncio.run(with_proxy(s, body))
    assert 'kyklos_serving_request_log_dropped_total{reason="buffer_full"} 3.0' in metrics
    assert 'kyklos_serving_requests_total{code="200",revision="rev1"} 5.0' in metrics
    assert len(written_records(tmp_path)) == 2


def test_sample_rate_zero_logs_no_bodies_but_every_request(tmp_path: Path) -> None:
    s = settings(tmp_path, sample_rate=0.0)

    async def body(session: aiohttp.ClientSession) -> None:
        for _ in range(3):
            async with session.post(
                f"http://127.0.0.1:{s.listen_port}/predict", json={"rows": [{}]}
            ) as r:
                await r.read()

    asyncio.run(with_proxy(s, body))
    records = written_records(tmp_path)
    assert len(records) == 3
    assert all(r.request_json is None and r.response_json is None for r in records)


def test_proxy_settings_round_trip_through_args() -> None:
    s = ProxySettings(
        listen_port=8080, server_port=30001, metrics_port=9091, revision="r", sample_rate=0.25
    )
    assert ProxySettings.from_flags(s.to_flags()) == s
    assert json.loads(s.model_dump_json())["sample_rate"] == 0.25


def test_sigterm_flushes_the_buffer_of_a_real_proxy_process(tmp_path: Path) -> None:
    """A restart (SIGTERM, as the kubelet stops a pod) loses no buffered record."""
    import subprocess
    import sys
    import time

    s = settings(tmp_path, flush_seconds=3600.0)  # nothing flushed before the signal

    async def requests(session: aiohttp.ClientSession) -> None:
        for _ in range(7):
            async with session.post(
                f"http://127.0.0.1:{s.listen_port}/predict", json={"rows": [{}]}
            ) as r:
                assert r.status == 200

    async def scenario() -> int:
        runner = await model_server(s.server_port)
        proc = subprocess.Popen(
            [sys.executable, "-m", "kyklos", "proxy", *s.to_flags()], stderr=subprocess.PIPE
        )
        try:
            async with aiohttp.ClientSession() as session:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        async with session.get(f"http://127.0.0.1:{s.metrics_port}/metrics"):
                            break
                    except aiohttp.ClientConnectionError:
                        assert time.monotonic() < deadline, "the proxy did not start"
                        await asyncio.sleep(0.05)
                await requests(session)
            assert written_records(tmp_path) == []
            proc.send_signal(signal.SIGTERM)
            return await asyncio.to_thread(proc.wait, 30)
        finally:
            if proc.poll() is None:
                proc.kill()
            await runner.cleanup()

    assert asyncio.run(scenario()) == 0
    assert len(written_records(tmp_path)) == 7


def _start(s: ProxySettings) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "kyklos", "proxy", *s.to_flags()], stderr=subprocess.PIPE
    )


async def _wait_listening(session: aiohttp.ClientSession, s: ProxySettings) -> None:

    deadline = time.monotonic() + 30
    while True:
        try:
            async with session.get(f"http://127.0.0.1:{s.metrics_port}/metrics"):
                return
        except aiohttp.ClientConnectionError:
            assert time.monotonic() < deadline, "the proxy did not start"
            await asyncio.sleep(0.05)


def test_sigkill_loses_the_buffer_and_the_next_proxy_counts_it(tmp_path: Path) -> None:
    """Real proxy processes: 7 answered, SIGKILL, restart -> 7 counted, 0 written."""

    s = settings(tmp_path, flush_seconds=3600.0, journal_dir=str(tmp_path / "journal"))

    async def scenario() -> tuple[str, bytes, int]:
        runner = await model_server(s.server_port)
        first = _start(s)
        second: subprocess.Popen[bytes] | None = None
        try:
            async with aiohttp.ClientSession() as session:
                await _wait_listening(session, s)
                for _ in range(7):
                    async with session.post(
                        f"http://127.0.0.1:{s.listen_port}/predict", json={"rows": [{}]}
                    ) as r:
                        assert r.status == 200
            first.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.wait, 30)
            second = _start(s)
            async with aiohttp.ClientSession() as session:
                await _wait_listening(session, s)
                metrics = await metrics_text(s)(session)
            second.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.to_thread(second.communicate, None, 30)
            third = _start(s)  # after a clean stop: nothing to count
            async with aiohttp.ClientSession() as session:
                await _wait_listening(session, s)
                after_clean = await metrics_text(s)(session)
            third.send_signal(signal.SIGTERM)
            await asyncio.to_thread(third.wait, 30)
            return metrics + after_clean, stderr, second.returncode
        finally:
            for proc in (first, second):
                if proc is not None and proc.poll() is None:
                    proc.kill()
            await runner.cleanup()

    metrics, stderr, code = asyncio.run(scenario())
    assert code == 0
    assert written_records(tmp_path) == []

    assert 'kyklos_serving_request_log_dropped_total{reason="proxy_restart"} 7.0' in metrics
    assert 'kyklos_serving_request_log_dropped_total{reason="proxy_restart"} 0.0' in metrics
    assert b"7 records of a previous proxy of revision rev1" in stderr
