"""The chart's worker.deadline value reaches the operator as KYKLOS_WORKER_DEADLINE, validated."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kyklos.controllers.config import OperatorConfig

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kyklos"
# tests/ is not a package (pytest's rootdir-relative imports); helm_tool lives there.
sys.path.insert(0, str(REPO / "tests"))
from helm_tool import HelmUnavailableError, resolve_helm  # noqa: E402


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return resolve_helm()
    except HelmUnavailableError as exc:
        pytest.fail(f"helm is needed for the chart tests: {exc}")


def template(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), "template", "kyklos", str(CHART), "--namespace", "kyklos-system", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def operator_env(helm: Path, *args: str) -> dict[str, str]:
    result = template(helm, *args)
    assert result.returncode == 0, result.stderr
    (deployment,) = [
        d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Deployment"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_the_default_worker_deadline_is_one_hour_and_the_operator_accepts_it(
    helm: Path,
) -> None:
    env = operator_env(helm)
    assert env["KYKLOS_WORKER_DEADLINE"] == "1h"
    assert OperatorConfig.from_env(env).worker_deadline_seconds == 3600


@pytest.mark.parametrize(("value", "seconds"), [("30m", 1800), ("0", None), ("90", 90)])
def test_a_worker_deadline_value_is_passed_through(
    helm: Path, value: str, seconds: int | None
) -> None:
    env = operator_env(helm, "--set-string", f"worker.deadline={value}")
    assert env["KYKLOS_WORKER_DEADLINE"] == value
    assert OperatorConfig.from_env(env).worker_deadline_seconds == seconds


def test_the_values_schema_rejects_a_malformed_worker_deadline(helm: Path) -> None:
    result = template(helm, "--set-string", "worker.deadline=soon")
    assert result.returncode != 0 and "deadline" in result.stderr
