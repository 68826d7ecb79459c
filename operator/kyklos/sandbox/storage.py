"""Default StorageClass and local-directory provisioner of the sandbox node agent.

At start the agent creates the StorageClass ``standard`` (the cluster default,
provisioner ``sandbox.kyklos.io/local``, volumeBindingMode Immediate, reclaimPolicy
Delete). For every Pending claim of that class without a volume, the provisioner creates
a PersistentVolume ``pvc-<claim uid>`` backed by the host directory
``<data-dir>/volumes/<pv name>`` with the claim's requested size and access modes and a
claimRef to the claim; kube-controller-manager's real PV binder then binds the two, so a
chart's PVC becomes Bound. When a provisioned volume is Released (its claim deleted) and
its reclaim policy is Delete, the directory and the PV are deleted.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from typing import Any

from kyklos.sandbox.pods import ApiError, JsonDict

log = logging.getLogger("kyklos.sandbox.nodeagent")

STORAGE_CLASS = "standard"
PROVISIONER = "sandbox.kyklos.io/local"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"


def storage_class_manifest() -> JsonDict:
    """The default StorageClass the sandbox installs."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            "labels": {"app.kubernetes.io/managed-by": "kyklos-sandbox"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": True,
    }


def pv_name_for(claim: JsonDict) -> str:
    """Deterministic PV name for a claim, as external provisioners name them."""
    return f"pvc-{claim['metadata']['uid']}"


def wants_volume(claim: JsonDict, classes: dict[str, str]) -> bool:
    """Whether the provisioner must create a volume for `claim`."""
    spec = claim.get("spec") or {}
    if spec.get("volumeName") or claim["metadata"].get("deletionTimestamp"):
        return False
    if (claim.get("status") or {}).get("phase", "Pending") != "Pending":
        return False
    cls = spec.get("storageClassName")
    return classes.get(cls or "", "") == PROVISIONER


def pv_manifest(claim: JsonDict, data_dir: str) -> JsonDict:
    """The PersistentVolume that satisfies `claim`, backed by a directory in `data_dir`."""
    name = pv_name_for(claim)
    spec = claim.get("spec") or {}
    size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    meta = claim["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": name,
            "annotations": {PROVISIONED_BY: PROVISIONER},
            "labels": {"app.kubernetes.io/managed-by": "kyklos-sandbox"},
        },
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.get("storageClassName") or STORAGE_CLASS,
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "hostPath": {
                "path": os.path.join(data_dir, "volumes", name),
                "type": "DirectoryOrCreate",
            },
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
                "resourceVersion": meta.get("resourceVersion", ""),
            },
        },
    }


class Provisioner:
    """Creates volumes for claims and reclaims released ones, driven by two watches."""

    def __init__(self, api: Any, data_dir: str, stopping: threading.Event) -> None:
        self.api = api
        self.data_dir = data_dir
        self.stopping = stopping
        self.classes: dict[str, str] = {}

    def ensure_storage_class(self) -> None:
        """Create the default StorageClass unless it exists."""
        try:
            self.api.request(
                "POST", "/apis/storage.k8s.io/v1/storageclasses", storage_class_manifest()
            )
            log.info("storage: created default StorageClass %s", STORAGE_CLASS)
        except ApiError as e:
            if e.status != 409:
                raise
        self.classes[STORAGE_CLASS] = PROVISIONER

    def start(self) -> list[threading.Thread]:
        """Start the claim and volume watch threads."""
        threads = [
            threading.Thread(target=self._watch_classes, name="watch-sc", daemon=True),
            threading.Thread(target=self._watch_claims, name="watch-pvc", daemon=True),
            threading.Thread(target=self._watch_volumes, name="watch-pv", daemon=True),
        ]
        for t in threads:
            t.start()
        return threads

    def _watch_classes(self) -> None:
        for kind, sc in self.api.list_watch(
            "/apis/storage.k8s.io/v1/storageclasses", self.stopping
        ):
            if kind == "RELISTED":
                continue
            name = sc["metadata"]["name"]
            if kind == "DELETED":
                self.classes.pop(name, None)
            else:
                self.classes[name] = sc.get("provisioner", "")

    def _watch_claims(self) -> None:
        for kind, claim in self.api.list_watch("/api/v1/persistentvolumeclaims", self.stopping):
            if kind in ("DELETED", "RELISTED"):
                continue
            if wants_volume(claim, self.classes):
                self.provision(claim)

    def provision(self, claim: JsonDict) -> None:
        """Create the claim's PV (idempotent: an existing PV of that name is fine)."""
        pv = pv_manifest(claim, self.data_dir)
        os.makedirs(pv["spec"]["hostPath"]["path"], exist_ok=True)
        try:
            self.api.request("POST", "/api/v1/persistentvolumes", pv)
            log.info(
                "storage: provisioned %s for %s/%s",
                pv["metadata"]["name"],
                claim["metadata"]["namespace"],
                claim["metadata"]["name"],
            )
        except ApiError as e:
            if e.status != 409:
                log.warning("storage: cannot provision %s: %s", pv["metadata"]["name"], e)

    def _watch_volumes(self) -> None:
        for kind, pv in self.api.list_watch("/api/v1/persistentvolumes", self.stopping):
            if kind in ("DELETED", "RELISTED"):
                continue
            self.reclaim_if_released(pv)

    def reclaim_if_released(self, pv: JsonDict) -> None:
        """Delete a released volume we provisioned, with its directory."""
        annotations = pv["metadata"].get("annotations") or {}
        spec = pv.get("spec") or {}
        if annotations.get(PROVISIONED_BY) != PROVISIONER:
            return
        if (pv.get("status") or {}).get("phase") != "Released":
            return
        if spec.get("persistentVolumeReclaimPolicy") != "Delete":
            return
        path = (spec.get("hostPath") or {}).get("path", "")
        if path.startswith(os.path.join(self.data_dir, "volumes") + os.sep):
            shutil.rmtree(path, ignore_errors=True)
        try:
            self.api.request("DELETE", f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
            log.info("storage: reclaimed %s", pv["metadata"]["name"])
        except ApiError as e:
            if e.status != 404:
                log.warning("storage: cannot delete %s: %s", pv["metadata"]["name"], e)
