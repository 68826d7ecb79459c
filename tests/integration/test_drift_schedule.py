"""A DriftMonitor checks at the interval its spec asks for, and says when the next check is.

The real operator, the real ``kyklos worker profile|drift`` run by the node agent's
``process`` kubelet. Each check's start is compared with the ``nextCheckTime`` the
previous check announced.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from kyklos_testing import Kyklos, churn_dataset

pytestmark = [pytest.mark.sandbox_only, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FEATURES = [
    {"name": "tenure_months", "type": "numeric"},
    {"name": "monthly_charges", "type": "numeric"},
    {"name": "contract", "type": "categorical"},
]
#: How late a check may start against the time the previous one announced.
LATE = 10.0


def _time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def test_checks_start_when_the_interval_says(
    k8s: Any, namespace: str, crds_installed: None, operator: Any, data_dir: Path
) -> None:
    operator({"KYKLOS_ARTIFACTS_URI": f"file://{data_dir / 'artifacts'}"})
    ky = Kyklos(k8s, namespace)
    for name in ("reference", "current"):
        path = data_dir / f"{name}.csv"
        shutil.copy(REPO / "examples" / "data" / f"churn-{name}.csv", path)
        ky.create("datasets", churn_dataset(name, path, FEATURES))
    intervals = {"every-20s": 20.0, "every-1m": 60.0}
    for name, seconds in intervals.items():
        ky.create(
            "driftmonitors",
            {
                "metadata": {"name": name},
                "spec": {
                    "reference": {"datasetRef": {"name": "reference"}},
                    "current": {"datasetRef": {"name": "current"}},
                    "interval": f"{int(seconds)}s",
                    "sampleSize": 200,
                },
            },
        )
    # Poll both monitors; note when each check number is first seen running or recorded.
    started: dict[str, dict[int, float]] = {name: {} for name in intervals}
    announced: dict[str, dict[int, str]] = {name: {} for name in intervals}
    deadline = time.monotonic() + 330
    want = {"every-20s": 4, "every-1m": 3}
    while time.monotonic() < deadline:
        for name in intervals:
            status = ky.status("driftmonitors", name)
            job = str(status.get("checkJob") or "")
            if job:
                number = int(job.rsplit("-", 1)[1])
                started[name].setdefault(number, time.time())
            if status.get("checks") and status.get("nextCheckTime"):
                announced[name].setdefault(int(status["checks"]), status["nextCheckTime"])
        if all(len(started[n]) >= want[n] for n in intervals):
            break
        time.sleep(0.5)
    for name, seconds in intervals.items():
        assert len(started[name]) >= want[name], (
            name,
            started[name],
            ky.status("driftmonitors", name),
        )
        for number in range(2, want[name] + 1):
            due = _time(announced[name][number - 1])
            late = started[name][number] - due
            # Never early (second-precision timestamps), never more than LATE behind.
            assert -2.0 <= late <= LATE, (name, number, late, announced[name], started[name])
        status = ky.status("driftmonitors", name)
        assert status["phase"] in ("Healthy", "Drifted")
        # The announced next check lies ahead (never minutes in the past), within an interval.
        ahead = _time(status["nextCheckTime"]) - time.time()
        assert -LATE <= ahead <= seconds + 2.0, (name, status)
