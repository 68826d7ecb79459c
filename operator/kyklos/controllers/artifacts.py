"""Make sure the artifact claim exists in every namespace that has Kyklos resources.

Only for ``pvc://`` artifact stores. The claim carries no ownerReference on purpose:
profiles, reports and models must survive the deletion of the resources that made them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import kopf

from kyklos.controllers import client, config
from kyklos.logic.artifacts import build_artifacts_claim, pvc_claim

log = logging.getLogger("kyklos.artifacts")

PVCS = client.Resource("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim")

_ensured: set[tuple[str, str]] = set()
_lock = threading.Lock()


def ensure_claim(namespace: str) -> None:
    """Create the artifact claim in ``namespace`` unless it exists (once per process)."""
    cfg = config.current()
    claim = pvc_claim(cfg.artifacts_uri)
    if claim is None:
        return
    with _lock:
        if (namespace, claim) in _ensured:
            return
    if client.get(PVCS, namespace, claim) is None:
        client.create(
            PVCS,
            namespace,
            build_artifacts_claim(
                claim, namespace, cfg.artifacts_claim_size, cfg.artifacts_storage_class
            ),
        )
        log.info("created artifact claim %s/%s", namespace, claim)
    with _lock:
        _ensured.add((namespace, claim))


def _on_resource(namespace: str | None, type: str | None, **_: Any) -> None:
    if namespace and type != "DELETED":
        try:
            ensure_claim(namespace)
        except Exception as exc:  # retried on the next event
            log.warning("cannot ensure the artifact claim in %s: %s", namespace, exc)


for _plural in ("datasets", "trainingjobs", "modeldeployments", "driftmonitors"):
    kopf.on.event("kyklos.io", "v1alpha1", _plural)(_on_resource)
