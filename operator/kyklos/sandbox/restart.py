"""Restart one component of a running sandbox on the same data: ``kyklos sandbox restart``.

Fault stories need "the kube-apiserver dies and comes back" without tricks. The running
``kyklos sandbox serve`` owns its children, so the restart is a request it carries out:

1. ``kyklos sandbox restart kube-apiserver --data-dir D`` (or :func:`request_restart`) writes
   ``D/controlplane/restart/<id>.request.json`` (``{"component": ..., "signal": "KILL"}``);
2. serve's supervision loop (:func:`serve_restart_requests`, every 0.5 s) kills the
   component's process group with that signal, starts the same command line again (same
   port, same etcd data, same certificates) and waits until it is healthy;
3. serve writes ``<id>.done.json`` (``{"ok": true, "downSeconds": ..., "message": ...}``),
   which the requester waits for.

While a restart runs, serve does not treat the dying component as a crash. Components:
``etcd``, ``kube-apiserver``, ``kube-controller-manager``, ``kube-scheduler``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import ssl
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kyklos.sandbox.controlplane import Component, ComponentError, ControlPlane

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
SIGNALS = {"KILL": signal.SIGKILL, "TERM": signal.SIGTERM}


class RestartError(Exception):
    """A restart request could not be made or was not carried out; the message says why."""


@dataclass(frozen=True)
class RestartResult:
    """What serve reports back: whether the component is healthy again, and after how long."""

    ok: bool
    down_seconds: float
    message: str


def restart_dir(data_dir: Path) -> Path:
    """Where requests and answers live inside a sandbox's data dir."""
    return data_dir / "controlplane" / "restart"


# ------------------------------------------------------------------------------- requester


def request_restart(
    data_dir: Path,
    component: str,
    *,
    kill_signal: str = "KILL",
    timeout: float = 180.0,
) -> RestartResult:
    """Ask the serve running on ``data_dir`` to restart ``component``; wait for its answer."""
    if component not in COMPONENTS:
        raise RestartError(f"component {component!r} is not one of {', '.join(COMPONENTS)}")
    if kill_signal not in SIGNALS:
        raise RestartError(f"--signal {kill_signal!r} is not one of {', '.join(SIGNALS)}")
    directory = restart_dir(data_dir)
    if not (data_dir / "controlplane").is_dir():
        raise RestartError(f"--data-dir {data_dir}: no sandbox data here (no controlplane/)")
    directory.mkdir(parents=True, exist_ok=True)
    ident = f"{int(time.time() * 1000)}-{secrets.token_hex(3)}"
    request = directory / f"{ident}.request.json"
    done = directory / f"{ident}.done.json"
    tmp = directory / f"{ident}.tmp"
    tmp.write_text(json.dumps({"component": component, "signal": kill_signal}))
    tmp.replace(request)  # atomic: serve never reads half a request
    deadline = time.monotonic() + timeout
    while not done.exists():
        if time.monotonic() > deadline:
            request.unlink(missing_ok=True)
            raise RestartError(
                f"no answer within {timeout:.0f}s: is `kyklos sandbox serve --data-dir "
                f"{data_dir}` running?"
            )
        time.sleep(0.1)
    answer = json.loads(done.read_text())
    done.unlink(missing_ok=True)
    return RestartResult(
        ok=bool(answer.get("ok")),
        down_seconds=float(answer.get("downSeconds", 0.0)),
        message=str(answer.get("message", "")),
    )


# ---------------------------------------------------------------------------------- server


def serve_restart_requests(cp: ControlPlane, say: Callable[[str], None]) -> None:
    """Carry out every pending restart request (called from serve's supervision loop).

    Call it from the main thread: the restarted child's parent-death signal follows the
    thread that forks it (``kyklos.sandbox.procs``).
    """
    directory = restart_dir(cp.data_dir)
    if not directory.is_dir():
        return
    for request in sorted(directory.glob("*.request.json")):
        ident = request.name.removesuffix(".request.json")
        try:
            wanted = json.loads(request.read_text())
            name, sig = str(wanted["component"]), SIGNALS[str(wanted.get("signal", "KILL"))]
        except (OSError, ValueError, KeyError) as exc:
            _answer(directory, ident, ok=False, down=0.0, message=f"bad request: {exc}")
            request.unlink(missing_ok=True)
            continue
        request.unlink(missing_ok=True)
        started = time.monotonic()
        try:
            restart_component(cp, name, sig)
        except (ComponentError, KeyError) as exc:
            _answer(directory, ident, ok=False, down=time.monotonic() - started, message=str(exc))
            raise ComponentError(f"restarting {name} failed: {exc}") from None
        down = time.monotonic() - started
        say(f"{name} restarted ({signal.Signals(sig).name}); healthy again after {down:.1f}s")
        _answer(directory, ident, ok=True, down=down, message=f"{name} healthy again")


def _answer(directory: Path, ident: str, *, ok: bool, down: float, message: str) -> None:
    tmp = directory / f"{ident}.answer.tmp"
    tmp.write_text(json.dumps({"ok": ok, "downSeconds": round(down, 3), "message": message}))
    tmp.replace(directory / f"{ident}.done.json")


def restart_component(cp: ControlPlane, name: str, sig: int, timeout: float = 120.0) -> None:
    """Kill ``name`` with ``sig``, start its same command line again, wait until healthy."""
    old = next((c for c in cp.components if c.name == name), None)
    if old is None:
        raise KeyError(f"no running component named {name!r}")
    argv = [str(arg) for arg in old.proc.args]  # type: ignore[union-attr]
    _kill_group(old.proc, sig)
    cp.components.remove(old)
    new: Component = cp._spawn(name, argv)  # same argv: same port, data and certificates
    url, context = _health(cp, name, argv)
    cp._wait_http(new, url, context, time.monotonic() + timeout)


def _kill_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _flag(argv: list[str], flag: str) -> str:
    prefix = f"--{flag}="
    for arg in argv:
        if arg.startswith(prefix):
            return arg[len(prefix) :]
    raise ComponentError(f"cannot find {prefix} in the command line of the component")


def _health(cp: ControlPlane, name: str, argv: list[str]) -> tuple[str, ssl.SSLContext | None]:
    if name == "etcd":
        return f"{_flag(argv, 'listen-client-urls')}/health", None
    if name == "kube-apiserver":
        return f"{cp.server}/readyz", cp.client_tls()
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE  # their self-signed serving certs; /healthz only
    return f"https://127.0.0.1:{_flag(argv, 'secure-port')}/healthz", insecure
