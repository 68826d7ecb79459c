"""Readiness probes the node agent runs for ``process`` containers: ``httpGet`` and ``tcpSocket``.

Probes go to 127.0.0.1 (pod IPs are not routable in the process sandbox); ``exec`` and
``grpc`` probes are not run, so such a container counts as ready while it runs. Used by
the pod worker (``kyklos.sandbox.pods``).
"""

from __future__ import annotations

import http.client
import socket
from typing import TYPE_CHECKING

from kyklos.sandbox.podcontext import JsonDict

if TYPE_CHECKING:
    from kyklos.sandbox.podstatus import Container


def _probe_http(port: int, path: str, scheme: str, timeout: float, headers: list[JsonDict]) -> bool:
    conn: http.client.HTTPConnection
    if scheme.upper() == "HTTPS":
        import ssl

        conn = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=timeout, context=ssl._create_unverified_context()
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path or "/", headers={h["name"]: h["value"] for h in headers})
        status = conn.getresponse().status
        return 200 <= status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _probe_tcp(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def probe_readiness(c: Container, probe: JsonDict) -> None:
    """Run `c`'s readinessProbe once and update its ready flag after the thresholds."""
    timeout = float(probe.get("timeoutSeconds", 1))
    ok = True
    if "httpGet" in probe or "tcpSocket" in probe:
        action = probe.get("httpGet") or probe.get("tcpSocket") or {}
        port = action.get("port")
        if isinstance(port, str) and not port.isdigit():
            named = {p.get("name"): p.get("containerPort") for p in c.spec.get("ports") or []}
            port = named.get(port)
        if port is None:
            ok = False
        elif "httpGet" in probe:
            ok = _probe_http(
                int(port),
                action.get("path", "/"),
                action.get("scheme", "HTTP"),
                timeout,
                action.get("httpHeaders") or [],
            )
        else:
            ok = _probe_tcp(int(port), timeout)
    # exec and grpc probes are not run: the container counts as ready while it runs.
    if ok:
        c.probe_ok += 1
        c.probe_fail = 0
        if c.probe_ok >= int(probe.get("successThreshold", 1)):
            c.ready = True
    else:
        c.probe_fail += 1
        c.probe_ok = 0
        if c.probe_fail >= int(probe.get("failureThreshold", 3)):
            c.ready = False
