"""A loopback HTTP proxy in front of the sandbox API server that can answer errors for a while.

Fault stories need "the API server answers 429/5xx for a while". The proxy forwards every
request (method, path, query, body, the bearer token) to the real API server over TLS and
streams the answer back, watches included; :meth:`FaultProxy.fail` makes it answer every new
request with an error status instead (cycling through the statuses given, with
``Retry-After``) for some seconds, and cuts the open streams so that clients must reconnect
through the failing window. Clients talk plain HTTP to ``127.0.0.1`` and authenticate with a
bearer token (a ServiceAccount's), which the proxy passes on unchanged, so the API server
(and its audit log) sees the client's own identity.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

#: Request headers passed on to the API server (hop-by-hop ones and Host are not).
_FORWARDED_REQUEST = ("authorization", "content-type", "accept", "user-agent", "impersonate-user")
#: Response headers passed back. Not Content-Encoding: the session decompresses what the API
#: server gzipped (it does for large lists), and the body goes back as plain bytes.
_FORWARDED_RESPONSE = ("content-type", "retry-after", "audit-id", "warning")

_REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable"}


@dataclass
class ProxyCounts:
    """What the proxy did so far."""

    forwarded: int = 0
    injected: dict[int, int] = field(default_factory=dict)


class FaultProxy:
    """A plain-HTTP proxy on 127.0.0.1 forwarding to ``upstream`` (the API server's URL)."""

    def __init__(self, upstream: str, ca_file: str) -> None:
        self.upstream = upstream.rstrip("/")
        self._tls = ssl.create_default_context(cafile=ca_file)
        self.counts = ProxyCounts()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._failing_until = 0.0
        self._statuses: itertools.cycle[int] = itertools.cycle([429])
        self._open: set[aiohttp.ClientResponse] = set()
        self.url = ""

    # ----------------------------------------------------------------- control

    def start(self) -> str:
        """Start serving in a background thread; return the proxy's URL."""
        ready = threading.Event()
        self._loop = asyncio.new_event_loop()

        def run() -> None:
            assert self._loop is not None
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(self._serve())
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise RuntimeError("the fault proxy did not start within 30 s")
        return self.url

    def fail(self, seconds: float, statuses: Sequence[int] = (429, 503)) -> None:
        """Answer every request with these statuses (in turn) for ``seconds``; cut open streams."""
        loop = self._require_loop()

        def arm() -> None:
            self._statuses = itertools.cycle(list(statuses))
            self._failing_until = loop.time() + seconds
            for response in list(self._open):
                response.close()  # the client sees its watch end and must reconnect

        loop.call_soon_threadsafe(arm)

    def stop(self) -> None:
        """Stop serving and join the thread."""
        if self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        with contextlib.suppress(Exception):
            future.result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._loop.close()
        self._loop = None

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("the fault proxy is not running (call start() first)")
        return self._loop

    # ----------------------------------------------------------------- serving

    async def _serve(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            connector=aiohttp.TCPConnector(ssl=self._tls, limit=0),
        )
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"

    async def _shutdown(self) -> None:
        for response in list(self._open):
            response.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        loop = asyncio.get_running_loop()
        if loop.time() < self._failing_until:
            status = next(self._statuses)
            self.counts.injected[status] = self.counts.injected.get(status, 0) + 1
            return _error(status)
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() in _FORWARDED_REQUEST}
        body = await request.read()
        try:
            upstream = await self._session.request(
                request.method,
                f"{self.upstream}{request.path_qs}",
                headers=headers,
                data=body or None,
                allow_redirects=False,
            )
        except (aiohttp.ClientError, OSError) as exc:
            return _error(503, f"the fault proxy could not reach the API server: {exc}")
        self.counts.forwarded += 1
        self._open.add(upstream)
        try:
            answer = web.StreamResponse(
                status=upstream.status,
                headers={
                    k: v for k, v in upstream.headers.items() if k.lower() in _FORWARDED_RESPONSE
                },
            )
            await answer.prepare(request)
            with contextlib.suppress(aiohttp.ClientError, ConnectionError, asyncio.CancelledError):
                async for chunk in upstream.content.iter_any():
                    await answer.write(chunk)
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await answer.write_eof()
            return answer
        finally:
            self._open.discard(upstream)
            upstream.release()


def _error(status: int, message: str = "injected by the Kyklos fault proxy") -> web.Response:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": _REASONS.get(status, "InternalError"),
        "code": status,
    }
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type="application/json",
        headers={"Retry-After": "1"},
    )
