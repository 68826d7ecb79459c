"""The artifact store: where profiles, drift reports and models live.

The store is one URI (``KYKLOS_ARTIFACTS_URI``). For ``pvc://<claim>/<prefix>`` the claim is
namespaced like every PersistentVolumeClaim, so the claim of that name *in each workload's
namespace* holds that namespace's artifacts; the operator creates it when missing (see
``kyklos.controllers.artifacts``). Pods mount claims at ``<pvc_root>/<claim>``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

PVC_SCHEME = "pvc"


def pvc_claim(uri: str) -> str | None:
    """The claim name of a ``pvc://<claim>/...`` URI, else None."""
    parsed = urlparse(uri)
    if parsed.scheme != PVC_SCHEME:
        return None
    return parsed.netloc or None


def join_uri(base: str, *parts: str) -> str:
    """``base`` with ``parts`` appended as path segments (no doubled slashes)."""
    out = base.rstrip("/")
    for part in parts:
        out += "/" + part.strip("/")
    return out


def artifact_prefix(base: str, namespace: str, kind: str, name: str) -> str:
    """``<base>/<namespace>/<kind>/<name>``: the folder of one resource's artifacts."""
    return join_uri(base, namespace, kind, name)


def build_artifacts_claim(
    claim: str, namespace: str, size: str, storage_class: str | None
) -> dict[str, Any]:
    """The PersistentVolumeClaim holding a namespace's artifacts (no owner: artifacts outlive CRs)."""
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": size}},
    }
    if storage_class:
        spec["storageClassName"] = storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": claim,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "kyklos",
                "app.kubernetes.io/part-of": "kyklos",
                "app.kubernetes.io/component": "artifacts",
            },
        },
        "spec": spec,
    }
