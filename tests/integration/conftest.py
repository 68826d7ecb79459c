"""Fixtures shared by the integration stories: the Kyklos CRDs installed once per session, a
host directory for a story's data and artifacts, and the operator running on it.

Helpers (``wait_for``, ``Kyklos``) live in ``kyklos_testing``."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kyklos_testing import Kyklos, wait_for

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def crds_installed(cluster: Any, k8s: Any) -> None:
    """Apply crds/*.yaml (server-side) and wait until every CRD is Established."""
    from kubernetes import client

    result = subprocess.run(
        [
            "kubectl",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=kyklos-tests",
            "-f",
            str(REPO / "crds"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    ext = client.ApiextensionsV1Api(k8s)
    for path in sorted((REPO / "crds").glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        wait_for(
            lambda n=name: any(
                c.type == "Established" and c.status == "True"
                for c in (ext.read_custom_resource_definition(n).status.conditions or [])
            ),
            timeout=60,
            what=f"CRD {name} Established",
        )


#: Worker pods mount their own emptyDir at /tmp (as real pods do), hiding the host's /tmp:
#: files they read through file:// URIs live elsewhere.
HOST_BASE = Path(os.environ.get("KYKLOS_TEST_HOST_DIR", "/var/tmp"))


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A world-writable directory outside /tmp for a story's data and artifacts, removed after."""
    HOST_BASE.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="kyklos-story-", dir=HOST_BASE))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def kyklos(
    k8s: Any, namespace: str, crds_installed: None, operator: Any, data_dir: Path, cluster: Any
) -> Kyklos:
    """The operator running with its artifact store at ``data_dir/artifacts``; a client of the
    test's namespace (stories that need another operator define their own ``kyklos``)."""
    operator(
        {
            "KYKLOS_ARTIFACTS_URI": f"file://{data_dir / 'artifacts'}",
            "KUBECONFIG": str(cluster.kubeconfig),
        }
    )
    return Kyklos(k8s, namespace)
