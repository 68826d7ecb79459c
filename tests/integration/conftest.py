"""Fixtures shared by the integration stories: the Kyklos CRDs installed once per session,
and small helpers to create resources and wait for their status."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
GROUP, VERSION = "kyklos.io", "v1alpha1"
T = TypeVar("T")


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


def wait_for(
    probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.5
) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # the object may not exist yet
            last = exc
        if last and not isinstance(last, Exception):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


class Kyklos:
    """Create, read and patch Kyklos resources in one namespace."""

    def __init__(self, k8s: Any, namespace: str) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(k8s)
        self.namespace = namespace

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        kind = {
            "datasets": "Dataset",
            "trainingjobs": "TrainingJob",
            "modeldeployments": "ModelDeployment",
            "driftmonitors": "DriftMonitor",
        }[plural]
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, **body}
        created: dict[str, Any] = self.api.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, body
        )
        return created

    def get(self, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.api.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, name
        )
        return obj

    def list(self, plural: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural
        )["items"]
        return items

    def patch(self, plural: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        obj: dict[str, Any] = self.api.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, plural, name, body
        )
        return obj

    def status(self, plural: str, name: str) -> dict[str, Any]:
        return self.get(plural, name).get("status") or {}

    def condition(self, plural: str, name: str, type: str) -> dict[str, Any] | None:
        for condition in self.status(plural, name).get("conditions") or []:
            if condition.get("type") == type:
                return dict(condition)
        return None
