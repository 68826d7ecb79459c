"""Helpers for the integration stories: wait for a condition, create and read Kyklos resources.

Importable by name (``from kyklos_testing import Kyklos, wait_for``): pyproject puts
``tests/integration`` on pytest's path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

GROUP, VERSION = "kyklos.io", "v1alpha1"
T = TypeVar("T")


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

    def wait_status(
        self,
        plural: str,
        name: str,
        predicate: Callable[[dict[str, Any]], Any],
        *,
        timeout: float,
        what: str,
    ) -> dict[str, Any]:
        """Wait until ``predicate(status)`` holds; on timeout the failure shows the whole status."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while True:
            try:
                status = self.status(plural, name)
                if predicate(status):
                    return status
            except Exception as exc:  # not created yet
                status = {"error": repr(exc)}
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out after {timeout}s waiting for {what} ({plural}/{name}); status: {status}"
                )
            time.sleep(0.5)


def churn_dataset(name: str, path: Path, features: list[dict[str, str]]) -> dict[str, Any]:
    """A Dataset manifest over a copy of the example churn data at ``path``."""
    return {
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": f"file://{path}", "format": "csv"},
            "schema": {"features": features},
        },
    }


def tiny_dataset(kyklos: Kyklos, name: str, directory: Path) -> Path:
    """Create Dataset ``name`` over 20 rows of ``x,label`` written to ``directory/train.csv``."""
    data = directory / "train.csv"
    data.write_text("x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    kyklos.create(
        "datasets",
        {
            "metadata": {"name": name},
            "spec": {
                "source": {"uri": f"file://{data}", "format": "csv"},
                "schema": {"features": [{"name": "x", "type": "numeric"}], "target": "label"},
            },
        },
    )
    return data
