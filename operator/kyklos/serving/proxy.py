"""``kyklos proxy``: the sidecar in front of every model server (aiohttp, async).

It listens on the Service's port (``runtime.port``, with ``SO_REUSEPORT``: in the process
sandbox every pod shares the host's network, so stable and canary proxies all take
connections) and forwards every request to the model server on the pod-local port the
operator gave the server in ``KYKLOS_SERVER_PORT``. For each request it:

- counts ``kyklos_serving_requests_total{revision,code}`` and observes
  ``kyklos_serving_request_duration_seconds{revision}`` (served on its own metrics port);
- buffers a :class:`~kyklos.api.serving.RequestRecord` (revision, code, latency; the JSON
  request and response bodies for a ``sampleRate`` share of requests; a body that is not
  JSON as raw bytes; a body above ``maxBodyBytes`` not at all, counted);
- never waits for the artifact store: a background task writes the buffer as one Parquet
  file per flush (every ``flushInterval`` and on SIGTERM) in a thread. A buffer that is
  full drops new records, a write that fails drops its batch; both are counted in
  ``kyklos_serving_request_log_dropped_total{reason}``;
- keeps a crash-safe journal of how many records it buffered and how many left the
  buffer (:mod:`kyklos.serving.journal`, on the pod's ``emptyDir``): a proxy killed
  outright (SIGKILL, OOM) loses its unflushed buffer, and the next incarnation counts that
  loss in ``kyklos_serving_request_log_dropped_total{reason="proxy_restart"}`` and logs a
  warning naming how many. A record is taken before its response is sent, so every
  answered request is either in a written file or counted (a request in flight at the kill
  may be counted without its client getting the answer: too many, never too few).

The readiness path (``healthPath``) is forwarded like any request, so the probe on the
proxy means what it meant on the server; it is neither counted nor logged. The metrics
port answers it too: the probe uses that port, which is this revision's own even where
pods share the host network (the process sandbox). Errors are
forwarded faithfully: the server's status and body as they are; no connection -> 502, no
answer within the upstream timeout -> 504, both with the cause in ``X-Kyklos-Proxy-Error``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import random
import signal
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from kyklos.api.serving import ProxySettings, RequestRecord
from kyklos.logic.analysis import request_log_file, request_log_prefix
from kyklos.serving.journal import Journal
from kyklos.serving.store import exists, write_bytes

log = logging.getLogger("kyklos.proxy")

#: Header carrying the proxy's cause of a 502/504.
ERROR_HEADER = "X-Kyklos-Proxy-Error"
#: Header naming the revision that answered (lets clients and tests see the split).
REVISION_HEADER = "X-Kyklos-Revision"
#: Not forwarded either way (RFC 9110 hop-by-hop, plus what aiohttp sets itself).
HOP_HEADERS = frozenset(
    h.lower()
    for h in (
        "Connection",
        "Keep-Alive",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "TE",
        "Trailer",
        "Transfer-Encoding",
        "Upgrade",
        "Content-Length",
        "Host",
    )
)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

REQUEST_LOG_SCHEMA = pa.schema(
    [
        ("time", pa.timestamp("us", tz="UTC")),
        ("revision", pa.string()),
        ("method", pa.string()),
        ("path", pa.string()),
        ("code", pa.int32()),
        ("latency_seconds", pa.float64()),
        ("request_json", pa.string()),
        ("response_json", pa.string()),
        ("request_raw", pa.binary()),
        ("response_raw", pa.binary()),
        ("error", pa.string()),
    ]
)


class Metrics:
    """The proxy's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "kyklos_serving_requests_total",
            "Requests answered, by revision and HTTP status code.",
            ["revision", "code"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "kyklos_serving_request_duration_seconds",
            "Request latency through the proxy, by revision.",
            ["revision"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.dropped = Counter(
            "kyklos_serving_request_log_dropped_total",
            "Request-log records (or bodies) not written, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.dropped.labels("proxy_restart")  # shown as 0 from the start
        self.written = Counter(
            "kyklos_serving_request_log_written_total",
            "Request-log records written to the artifact store.",
            registry=self.registry,
        )
        self.buffered = Gauge(
            "kyklos_serving_request_log_buffered",
            "Request-log records waiting for the next flush.",
            registry=self.registry,
        )


def _body_fields(data: bytes, limit: int) -> tuple[str | None, bytes | None, bool]:
    """(json text, raw bytes, too large) for a sampled body."""
    if len(data) > limit:
        return None, None, True
    if not data:
        return None, None, False
    try:
        text = data.decode()
        json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None, data, False
    return text, None, False


class RequestLog:
    """The bounded buffer of request records and its flushes to the artifact store."""

    def __init__(
        self, settings: ProxySettings, metrics: Metrics, journal: Journal | None = None
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.journal = journal
        self.buffer: list[RequestRecord] = []
        self.sequence = 0
        self._lock = asyncio.Lock()

    def recover(self) -> int:
        """Count what a previous incarnation buffered and never wrote (see the journal)."""
        if self.journal is None:
            return 0
        lost = self.journal.recover(exists)
        if lost:
            self.metrics.dropped.labels("proxy_restart").inc(lost)
            log.warning(
                "request log: %d records of a previous proxy of revision %s were buffered "
                "and never written (killed before a flush); counted as "
                'dropped{reason="proxy_restart"}',
                lost,
                self.settings.revision,
            )
        return lost

    def add(self, record: RequestRecord) -> None:
        """Buffer one record (dropped and counted when the buffer is full)."""
        if len(self.buffer) >= self.settings.max_buffer_records:
            self.metrics.dropped.labels("buffer_full").inc()
            return
        self.buffer.append(record)
        if self.journal is not None:
            self.journal.record_added()
        self.metrics.buffered.set(len(self.buffer))

    async def flush(self) -> int:
        """Write the buffered records as one Parquet file; how many were written."""
        async with self._lock:
            batch, self.buffer = self.buffer, []
            self.metrics.buffered.set(0)
            s = self.settings
            if not batch or not s.artifacts:
                return 0
            self.sequence += 1
            uri = request_log_file(
                request_log_prefix(s.artifacts, s.namespace, s.name, s.revision),
                batch[0].time,
                s.pod or socket.gethostname(),
                self.sequence,
            )
            try:
                await asyncio.to_thread(_write_parquet, uri, batch, self.journal)
            except Exception as exc:  # the store being down must never stop serving
                self.metrics.dropped.labels("store_error").inc(len(batch))
                log.warning(
                    "request log: %d records dropped, cannot write %s: %s", len(batch), uri, exc
                )
                return 0
            finally:
                if self.journal is not None:
                    self.journal.settle(len(batch))
            self.metrics.written.inc(len(batch))
            return len(batch)


def _write_parquet(uri: str, batch: list[RequestRecord], journal: Journal | None = None) -> None:
    # Column by column (the fields of RequestRecord.to_row): a model_dump per record would
    # hold the GIL long enough to stall the event loop at every flush.
    table = pa.table(
        {name: [getattr(r, name) for r in batch] for name in REQUEST_LOG_SCHEMA.names},
        schema=REQUEST_LOG_SCHEMA,
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    if journal is not None:
        journal.begin_flush(uri, len(batch))
    write_bytes(uri, sink.getvalue())


class Proxy:
    """The forwarding handler, its metrics and its request log."""

    def __init__(
        self,
        settings: ProxySettings,
        *,
        rng: random.Random | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        journal: Journal | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.log = RequestLog(settings, self.metrics, journal)
        self.rng = rng or random.Random()
        self.now = now
        self.upstream = f"http://127.0.0.1:{settings.server_port}"
        self.session: aiohttp.ClientSession | None = None
        self._requests = self.metrics.requests
        self._duration = self.metrics.duration.labels(settings.revision)

    async def open(self) -> None:
        timeout = aiohttp.ClientTimeout(total=self.settings.upstream_timeout_seconds)
        self.session = aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=0, force_close=False),
            auto_decompress=False,
            skip_auto_headers=("User-Agent", "Accept-Encoding", "Content-Type"),
        )

    async def close(self) -> None:
        if self.session is not None:
            await self.session.close()
            self.session = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Forward one request to the server; count and log it."""
        assert self.session is not None
        started = time.perf_counter()
        arrived = self.now()
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        error: str | None = None
        try:
            async with self.session.request(
                request.method,
                self.upstream + request.rel_url.raw_path_qs,
                headers=headers,
                data=body or None,
                allow_redirects=False,
            ) as upstream:
                payload = await upstream.read()
                status = upstream.status
                out_headers = {
                    k: v for k, v in upstream.headers.items() if k.lower() not in HOP_HEADERS
                }
        except TimeoutError:
            status, payload = 504, b""
            error = f"no answer from the model server within {self.settings.upstream_timeout_seconds:g}s"
            out_headers = {}
        except aiohttp.ClientError as exc:
            status, payload = 502, b""
            error = f"model server on port {self.settings.server_port}: {exc}"
            out_headers = {}
        out_headers[REVISION_HEADER] = self.settings.revision
        if error is not None:
            out_headers[ERROR_HEADER] = error.replace("\n", " ")[:512]
            out_headers["Content-Type"] = "text/plain"
            payload = (error + "\n").encode()
        response = web.Response(status=status, body=payload, headers=out_headers)
        if request.path == self.settings.health_path:
            return response
        latency = time.perf_counter() - started
        # Recorded (and journalled) before aiohttp sends it: an answered request is always
        # in the buffer, so a kill can count a request in flight too, never miss an answer.
        self._record(request, body, status, payload, latency, arrived, error)
        return response

    def _record(
        self,
        request: web.Request,
        body: bytes,
        status: int,
        payload: bytes,
        latency: float,
        arrived: datetime,
        error: str | None,
    ) -> None:
        s = self.settings
        self._requests.labels(s.revision, str(status)).inc()
        self._duration.observe(latency)
        if not s.artifacts:
            return
        fields: dict[str, Any] = {}
        if s.sample_rate > 0 and (s.sample_rate >= 1 or self.rng.random() < s.sample_rate):
            req_json, req_raw, req_big = _body_fields(body, s.max_body_bytes)
            resp_json, resp_raw, resp_big = _body_fields(payload, s.max_body_bytes)
            if req_big or resp_big:
                self.metrics.dropped.labels("body_too_large").inc()
            fields = {
                "request_json": req_json,
                "request_raw": req_raw,
                "response_json": resp_json,
                "response_raw": resp_raw,
            }
        self.log.add(
            RequestRecord.model_construct(
                time=arrived,
                revision=s.revision,
                method=request.method,
                path=request.path,
                code=status,
                latency_seconds=latency,
                request_json=fields.get("request_json"),
                response_json=fields.get("response_json"),
                request_raw=fields.get("request_raw"),
                response_raw=fields.get("response_raw"),
                error=error,
            )
        )

    async def metrics_handler(self, request: web.Request) -> web.Response:
        data = generate_latest(self.metrics.registry)
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def flush_forever(self) -> None:
        """Flush the request log every flushInterval until cancelled."""
        while True:
            await asyncio.sleep(self.settings.flush_seconds)
            await self.log.flush()


def application(proxy: Proxy) -> web.Application:
    """The forwarding application (every method, every path)."""
    app = web.Application(client_max_size=64 << 20)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    return app


def metrics_application(proxy: Proxy) -> web.Application:
    app = web.Application()
    app.router.add_get("/metrics", proxy.metrics_handler)
    # The readiness probe's port (one per revision): healthPath forwarded to the server.
    if proxy.settings.health_path != "/metrics":
        app.router.add_get(proxy.settings.health_path, proxy.handle)
    return app


async def serve(settings: ProxySettings, stop: asyncio.Event | None = None) -> None:
    """Run the proxy until ``stop`` is set (or SIGTERM/SIGINT); flush on the way out."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    proxy = Proxy(settings, journal=_open_journal(settings))
    proxy.log.recover()
    await proxy.open()
    runner = web.AppRunner(application(proxy), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, settings.host, settings.listen_port, reuse_port=True).start()
    metrics_runner: web.AppRunner | None = None
    if settings.metrics_port:
        metrics_runner = web.AppRunner(metrics_application(proxy), access_log=None)
        await metrics_runner.setup()
        await web.TCPSite(
            metrics_runner, settings.host, settings.metrics_port, reuse_port=True
        ).start()
    log.info(
        "proxy of revision %s on :%d -> 127.0.0.1:%d (metrics :%d)",
        settings.revision,
        settings.listen_port,
        settings.server_port,
        settings.metrics_port,
    )
    flusher = asyncio.create_task(proxy.flush_forever())
    try:
        await stop.wait()
    finally:
        flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flusher
        await runner.cleanup()  # stop taking connections, finish the ones in flight
        written = await proxy.log.flush()
        log.info("proxy stopping: flushed %d request records", written)
        if metrics_runner is not None:
            await metrics_runner.cleanup()
        await proxy.close()
        if proxy.log.journal is not None:
            proxy.log.journal.close()


def _open_journal(settings: ProxySettings) -> Journal | None:
    """The journal in ``journal_dir`` (None when unset, or when it cannot be opened)."""
    if not settings.journal_dir or not settings.artifacts:
        return None
    try:
        return Journal(settings.journal_dir)
    except OSError as exc:  # a journal is worth a warning, never a proxy that cannot start
        log.warning("request log: no journal in %s: %s", settings.journal_dir, exc)
        return None


def _run(main: Coroutine[Any, Any, None]) -> None:
    """Run on uvloop (libuv: a third of the proxy's per-request cost) when installed."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def main(argv: list[str]) -> int:
    """``kyklos proxy --listen-port ... --server-port ... --revision ...``."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        settings = ProxySettings.from_flags(argv)
    except ValueError as exc:
        print(f"kyklos proxy: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    try:
        _run(serve(settings))
    except OSError as exc:
        print(f"kyklos proxy: {exc}", file=sys.stderr)
        return 1
    return 0
