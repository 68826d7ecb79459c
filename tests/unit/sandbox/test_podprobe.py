"""Readiness probes of the node agent, against real servers on the loopback interface."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kyklos.sandbox.podprobe import probe_readiness
from kyklos.sandbox.podstatus import Container
from kyklos.sandbox.policy import Rule


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ok = self.path == "/ok" and self.headers.get("X-Probe") == "yes"
        self.send_response(200 if ok else 500)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def container(ports: list[dict[str, Any]] | None = None, ready: bool = False) -> Container:
    spec: dict[str, Any] = {"name": "main", "image": "img", "ports": ports or []}
    c = Container(spec=spec, init=False, rule=Rule(image="*"), action="process")
    c.ready = ready
    return c


def http_probe(port: int | str, path: str, **thresholds: int) -> dict[str, Any]:
    get = {"port": port, "path": path, "httpHeaders": [{"name": "X-Probe", "value": "yes"}]}
    return {"httpGet": get, "timeoutSeconds": 2, **thresholds}


def test_http_probe_on_a_named_port_makes_the_container_ready(http_port: int) -> None:
    c = container(ports=[{"name": "web", "containerPort": http_port}])
    probe_readiness(c, http_probe("web", "/ok", successThreshold=2))
    assert not c.ready, "one success of two needed"
    probe_readiness(c, http_probe("web", "/ok", successThreshold=2))
    assert c.ready and c.probe_ok == 2 and c.probe_fail == 0


def test_http_errors_make_a_ready_container_unready_after_the_failure_threshold(
    http_port: int,
) -> None:
    c = container(ready=True)
    probe = http_probe(http_port, "/broken", failureThreshold=2)
    probe_readiness(c, probe)
    assert c.ready, "one failure of two"
    probe_readiness(c, probe)
    assert not c.ready and c.probe_fail == 2


def test_tcp_probe_tells_an_open_port_from_a_closed_one() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        c = container()
        probe_readiness(c, {"tcpSocket": {"port": listener.getsockname()[1]}})
        assert c.ready
    c = container(ready=True)
    probe = {"tcpSocket": {"port": _closed_port()}, "failureThreshold": 1}
    probe_readiness(c, probe)
    assert not c.ready


def test_an_unknown_named_port_fails_and_exec_probes_count_as_passing() -> None:
    c = container(ready=True)
    probe_readiness(c, {"httpGet": {"port": "nope"}, "failureThreshold": 1})
    assert not c.ready
    c = container()
    probe_readiness(c, {"exec": {"command": ["false"]}})
    assert c.ready, "exec probes are not run: the container is ready while it runs"
