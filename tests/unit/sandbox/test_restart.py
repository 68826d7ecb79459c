"""`kyklos sandbox restart`: serve kills one component and starts the same command line again."""

from __future__ import annotations

import socket
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kyklos.sandbox.controlplane import ComponentError, ControlPlane
from kyklos.sandbox.procs import stop_all
from kyklos.sandbox.restart import (
    RestartError,
    request_restart,
    restart_dir,
    serve_restart_requests,
)

# A stand-in component: answers 200 on every path of the port in its etcd-style flag.
HEALTHY = (
    "import http.server, sys\n"
    "port = int(sys.argv[1].rsplit(':', 1)[1])\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
    "    def log_message(self, *a): pass\n"
    "http.server.HTTPServer(('127.0.0.1', port), H).serve_forever()\n"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[tuple[ControlPlane, str]]:
    cp = ControlPlane(tmp_path, binaries=None)  # type: ignore[arg-type]  # nothing is built here
    url = f"http://127.0.0.1:{free_port()}"
    cp._spawn("etcd", [sys.executable, "-c", HEALTHY, f"--listen-client-urls={url}"])
    cp._wait_http(cp.components[0], f"{url}/health", None, time.monotonic() + 30)
    try:
        yield cp, url
    finally:
        stop_all([c.proc for c in cp.components], grace=5)


def restart_while_serving(
    cp: ControlPlane, component: str, **kwargs: Any
) -> tuple[Any, list[BaseException]]:
    """Request a restart from a thread while this (main) thread runs serve's loop.

    serve carries restarts out on its main thread: a child's parent-death signal follows the
    thread that forked it, so a component started from a thread that ends would die with it.
    """
    answer: list[Any] = []
    errors: list[BaseException] = []

    def request() -> None:
        try:
            answer.append(request_restart(cp.data_dir, component, **kwargs))
        except RestartError as exc:
            answer.append(exc)

    requester = threading.Thread(target=request, daemon=True)
    requester.start()
    deadline = time.monotonic() + 60
    while requester.is_alive() and time.monotonic() < deadline:
        try:
            serve_restart_requests(cp, lambda line: None)
        except ComponentError as exc:
            errors.append(exc)
        time.sleep(0.05)
    requester.join(5)
    assert answer, "no answer within 60 s"
    return answer[0], errors


def test_the_component_is_killed_and_the_same_command_line_runs_again(
    control_plane: tuple[ControlPlane, str],
) -> None:
    cp, url = control_plane
    old = cp.components[0].proc
    result, _errors = restart_while_serving(cp, "etcd", kill_signal="KILL", timeout=60)
    assert result.ok, result.message
    assert result.down_seconds > 0
    assert old.poll() == -9  # SIGKILL, as asked
    (new,) = cp.components
    assert new.proc.pid != old.pid and new.proc.poll() is None
    assert new.proc.args == old.args
    with urllib.request.urlopen(f"{url}/health", timeout=5) as resp:
        assert resp.status == 200
    assert not list(restart_dir(cp.data_dir).iterdir()), "request and answer are cleaned up"


def test_a_component_that_is_not_running_is_answered_not_ok(
    control_plane: tuple[ControlPlane, str],
) -> None:
    cp, _url = control_plane
    result, errors = restart_while_serving(cp, "kube-scheduler", timeout=30)
    assert not result.ok
    assert "kube-scheduler" in result.message
    assert errors, "serve stops (exit 1) when a restart it was asked for fails"


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"component": "kubelet"}, "'kubelet' is not one of etcd, kube-apiserver"),
        ({"component": "etcd", "kill_signal": "HUP"}, "--signal 'HUP'"),
    ],
)
def test_bad_requests_name_the_argument(
    tmp_path: Path, kwargs: dict[str, Any], fragment: str
) -> None:
    (tmp_path / "controlplane").mkdir()
    with pytest.raises(RestartError, match=fragment.replace("(", r"\(")):
        request_restart(tmp_path, **kwargs)


def test_no_sandbox_or_no_serve_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RestartError, match="no sandbox data here"):
        request_restart(tmp_path, "etcd")
    (tmp_path / "controlplane").mkdir()
    with pytest.raises(RestartError, match="is `kyklos sandbox serve --data-dir"):
        request_restart(tmp_path, "etcd", timeout=0.5)
    assert not list(restart_dir(tmp_path).glob("*.request.json")), "the stale request is removed"
