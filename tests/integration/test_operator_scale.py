"""An operator holding many DriftMonitors keeps serving every kind, and stops on SIGTERM.

Each monitor waits for its next check. That wait must not hold one of kopf's executor
threads: with as many monitors as threads, every other handler (a TrainingJob's, the
monitors' own finalizers) would queue behind them for ever and the operator would freeze
while its liveness endpoint still answered.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from kyklos_testing import Kyklos, churn_dataset, wait_for

pytestmark = [pytest.mark.slow]

#: Many more monitors than kopf's executor has threads (16 by default).
MONITORS = 100
REPO = Path(__file__).resolve().parents[2]


def monitor(name: str) -> dict[str, Any]:
    """A monitor whose Datasets do not exist: it waits (status Pending) and re-checks later."""
    return {
        "metadata": {"name": name},
        "spec": {
            "reference": {"datasetRef": {"name": "no-such-reference"}},
            "current": {"datasetRef": {"name": "no-such-current"}},
            "interval": "10m",
        },
    }


def test_many_drift_monitors_do_not_starve_other_kinds_or_shutdown(
    k8s: Any, namespace: str, crds_installed: None, operator: Any, data_dir: Path
) -> None:
    ky = Kyklos(k8s, namespace)
    running = operator({"KYKLOS_ARTIFACTS_URI": f"file://{data_dir / 'artifacts'}"})
    shutil.copy(REPO / "examples" / "data" / "churn-reference.csv", data_dir / "train.csv")
    ky.create(
        "datasets",
        churn_dataset(
            "train", data_dir / "train.csv", [{"name": "tenure_months", "type": "numeric"}]
        ),
    )
    for i in range(MONITORS):
        ky.create("driftmonitors", monitor(f"m{i:02d}"))

    def every_monitor_has_a_status() -> bool:
        return all((m.get("status") or {}).get("phase") for m in ky.list("driftmonitors"))

    wait_for(
        every_monitor_has_a_status, timeout=180, what=f"all {MONITORS} monitors to get a status"
    )
    # Other kinds still get their turn while every monitor's daemon is waiting.
    ky.wait_status(
        "datasets", "train", lambda s: s.get("phase") == "Ready", timeout=180, what="Ready"
    )
    ky.create(
        "trainingjobs",
        {
            "metadata": {"name": "after-monitors"},
            "spec": {"datasetRef": {"name": "train"}, "image": "registry.test/trainer:1"},
        },
    )
    ky.wait_status(
        "trainingjobs",
        "after-monitors",
        lambda s: s.get("jobName"),
        timeout=60,
        what="the TrainingJob created after the monitors to get its Job",
    )
    from kubernetes import client

    job = ky.status("trainingjobs", "after-monitors")["jobName"]
    assert client.BatchV1Api(k8s).read_namespaced_job(job, namespace).metadata.owner_references
    # Deleting the monitors runs their finalizers (kopf stops each daemon first).
    api = client.CustomObjectsApi(k8s)
    for i in range(MONITORS):
        api.delete_namespaced_custom_object(
            "kyklos.io", "v1alpha1", namespace, "driftmonitors", f"m{i:02d}"
        )
    wait_for(
        lambda: not ky.list("driftmonitors"),
        timeout=120,
        what="every deleted monitor to be gone (its finalizer run)",
    )
    for i in range(MONITORS):
        ky.create("driftmonitors", monitor(f"n{i:02d}"))
    wait_for(every_monitor_has_a_status, timeout=180, what="the second set of monitors")
    started = time.monotonic()
    assert running.stop(timeout=20) == 0
    assert time.monotonic() - started < 20
