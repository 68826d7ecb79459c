"""`kyklos run`: serves /metrics and /healthz, stops cleanly on SIGTERM, and refuses to start
with one clear line when it lacks permissions."""

from __future__ import annotations

import urllib.request
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
