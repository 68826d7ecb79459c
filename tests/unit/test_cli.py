"""`kyklos run` names a missing kubeconfig instead of kopf's in-cluster fallback error."""

from __future__ import annotations

from pathlib import Path

import pytest

from kyklos.cli import kubeconfig_problem, main


def test_explicit_kubeconfig_must_exist(tmp_path: Path) -> None:
    missing = tmp_path / "missing.kubeconfig"
    assert kubeconfig_problem(str(missing), {}) == f"--kubeconfig {missing}: no such file"
    missing.write_text("apiVersion: v1\n")
    assert kubeconfig_problem(str(missing), {}) is None


def test_env_kubeconfig_list_needs_one_existing_file(tmp_path: Path) -> None:
    present = tmp_path / "config"
    absent = tmp_path / "absent"
    env = {"KUBECONFIG": str(absent), "HOME": str(tmp_path)}
    problem = kubeconfig_problem(None, env)
    assert problem is not None and f"$KUBECONFIG={absent} names no existing file" in problem
    present.write_text("apiVersion: v1\n")
    env["KUBECONFIG"] = f"{absent}:{present}"
    assert kubeconfig_problem(None, env) is None


def test_in_cluster_needs_no_file(tmp_path: Path) -> None:
    env = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBECONFIG": str(tmp_path / "absent")}
    assert kubeconfig_problem(None, env) is None


def test_default_location(tmp_path: Path) -> None:
    problem = kubeconfig_problem(None, {"HOME": str(tmp_path)})
    assert problem is not None and f"{tmp_path / '.kube' / 'config'} does not exist" in problem
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text("apiVersion: v1\n")
    assert kubeconfig_problem(None, {"HOME": str(tmp_path)}) is None


def test_run_exits_2_naming_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    assert main(["run", "--kubeconfig", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"kyklos run: --kubeconfig {missing}: no such file"
