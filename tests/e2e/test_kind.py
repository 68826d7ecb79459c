"""The kind walkthrough (hack/kind-e2e.sh): a real cluster, the built image, the chart, the examples.

Runs only with KYKLOS_E2E_KIND=1 on a machine with Docker, kind and kubectl; it creates (or
reuses) the kind cluster of kind-config.yaml, so it is never part of the default test run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "kind-e2e.sh"
ENABLED = os.environ.get("KYKLOS_E2E_KIND") == "1"


def test_walkthrough_script_is_valid_bash() -> None:
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
@pytest.mark.skipif(
    not ENABLED, reason="kind e2e runs only with KYKLOS_E2E_KIND=1 (needs Docker, kind, kubectl)"
)
def test_chart_installs_on_kind_and_the_examples_become_ready() -> None:
    missing = [tool for tool in ("docker", "kind", "kubectl") if shutil.which(tool) is None]
    assert not missing, f"KYKLOS_E2E_KIND=1 but {', '.join(missing)} not on PATH"
    proc = subprocess.run(
        ["bash", str(SCRIPT)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-6000:]
    status = output.split("kind-e2e: --- status ---", 1)[-1]
    for kind in ("dataset", "trainingjob", "modeldeployment", "driftmonitor"):
        assert f"{kind}.kyklos.io/" in status, f"{kind} missing from the final status:\n{status}"
