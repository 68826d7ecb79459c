"""`kyklos run`: serves /metrics and /healthz, stops cleanly on SIGTERM, and refuses to start
with one clear line when it lacks permissions or its ports are taken."""

from __future__ import annotations

import socket
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest


def test_run_serves_metrics_and_health_and_stops_on_sigterm(
    crds_installed: None, operator: Any
) -> None:
    proc = operator()
    with urllib.request.urlopen(proc.liveness_url, timeout=5) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{proc.metrics_port}/metrics", timeout=5) as resp:
        body = resp.read().decode()
    assert "kyklos_reconciles_total" in body
    assert "kyklos_reconcile_duration_seconds" in body
    assert proc.stop() == 0
    assert "Traceback" not in proc.log()


def test_missing_permissions_exit_2_with_one_line_naming_them(
    crds_installed: None, operator: Any
) -> None:
    account = operator.as_service_account(
        [{"apiGroups": ["kyklos.io"], "resources": ["datasets"], "verbs": ["list", "watch"]}]
    )
    proc = operator(service_account=account, wait_healthy=False)
    assert proc.proc.wait(timeout=60) == 2
    log = proc.log()
    assert "missing permissions" in log
    assert "patch datasets/status.kyklos.io" in log and "list trainingjobs.kyklos.io" in log
    assert "Traceback" not in log


@pytest.mark.parametrize("level", ["loud"])
def test_bad_config_is_one_line_not_a_traceback(level: str, operator: Any) -> None:
    proc = operator({"KYKLOS_LOG_LEVEL": level}, wait_healthy=False)
    assert proc.proc.wait(timeout=60) == 2
    assert "KYKLOS_LOG_LEVEL" in proc.log() and "Traceback" not in proc.log()


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 0.0.0.0 something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


@pytest.mark.parametrize("which", ["metrics", "liveness"])
def test_a_taken_port_exits_2_with_one_line_naming_it_and_its_flag(
    which: str, taken_port: int, operator: Any
) -> None:
    if which == "metrics":
        args = ["--metrics-port", str(taken_port)]  # the last --metrics-port wins
        expected = (
            f"kyklos run: cannot listen on 0.0.0.0:{taken_port} for metrics "
            "(--metrics-port; KYKLOS_METRICS_PORT with make run): address already in use"
        )
    else:
        args = ["--liveness", f"http://127.0.0.1:{taken_port}/healthz"]
        expected = (
            f"kyklos run: cannot listen on 127.0.0.1:{taken_port} for the liveness endpoint "
            "(--liveness; KYKLOS_HEALTH_PORT with make run): address already in use"
        )
    proc = operator(wait_healthy=False, extra_args=args)
    assert proc.proc.wait(timeout=60) == 2
    assert proc.log().strip().splitlines() == [expected]
