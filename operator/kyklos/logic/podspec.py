"""What every pod Kyklos builds shares: one definition each, used by all the builders.

- **The restricted Pod Security profile** (:func:`restricted_container_security`,
  :func:`restricted_pod_security`): no privilege escalation, all capabilities dropped,
  seccomp ``RuntimeDefault``; for Kyklos's own image and model servers also non-root uid and
  gid 65532 (the image's ``USER``) and a read-only root filesystem (with an emptyDir at
  ``/tmp``, :func:`tmp_volume`). A user's trainer image keeps its own user (``uid=None``).
  The chart's ``securityContext``/``podSecurityContext`` values spell the same profile for
  the operator pod (``tests/unit/logic/test_podspec.py`` keeps them equal).
- **Claims** (:func:`claim_volumes`): every ``pvc://<claim>/...`` URI a pod reads or writes is
  mounted at ``<pvc_root>/<claim>`` (default :data:`DEFAULT_PVC_ROOT`), read-only unless
  written; :func:`claim_of` names the field of a malformed URI.
- **The termination path** (:data:`TERMINATION_PATH`): where a container leaves its summary.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from kyklos.api.worker import TERMINATION_LOG
from kyklos.logic.artifacts import pvc_claim

#: The Kyklos image's USER (Dockerfile); tests/unit/test_dockerfile.py keeps them equal.
WORKER_UID = 65532
#: Where a container writes its termination message (policy ``File``).
TERMINATION_PATH = TERMINATION_LOG
#: Where ``pvc://<claim>`` is mounted in a pod (``<pvc_root>/<claim>``) unless configured.
DEFAULT_PVC_ROOT = "/mnt/kyklos/pvc"
TMP_VOLUME = "tmp"
TMP_PATH = "/tmp"

_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_SECCOMP = {"type": "RuntimeDefault"}


def restricted_container_security(uid: int | None = WORKER_UID) -> dict[str, Any]:
    """The container securityContext of the restricted Pod Security profile.

    ``uid`` None: the image's own user (a user's trainer image), so only what needs no uid;
    its seccomp profile is the pod's (:func:`restricted_pod_security`). Kept so: the trainer
    Job's spec hash, which restarts a training when it changes, stays what it was.
    """
    context: dict[str, Any] = {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    if uid is not None:
        context.update(
            runAsNonRoot=True,
            runAsUser=uid,
            runAsGroup=uid,
            readOnlyRootFilesystem=True,
            seccompProfile=dict(_SECCOMP),
        )
    return context


def restricted_pod_security(
    uid: int | None = WORKER_UID, *, fs_group: bool = True
) -> dict[str, Any]:
    """The pod securityContext of the restricted profile (``fs_group``: volumes owned by ``uid``)."""
    if uid is None:
        return {"seccompProfile": dict(_SECCOMP)}
    context: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid}
    if fs_group:
        context["fsGroup"] = uid
    context["seccompProfile"] = dict(_SECCOMP)
    return context


def tmp_volume() -> tuple[dict[str, Any], dict[str, Any]]:
    """The emptyDir a read-only root filesystem needs at ``/tmp``: (volume, mount)."""
    return {"name": TMP_VOLUME, "emptyDir": {}}, {"name": TMP_VOLUME, "mountPath": TMP_PATH}


def claim_of(uri: str, field_name: str = "uri") -> str | None:
    """The claim of a ``pvc://<claim>/...`` URI (None for other schemes).

    ValueError naming ``field_name`` when the claim is missing or not a valid claim name.
    """
    if not uri.startswith("pvc:"):
        return None
    claim = pvc_claim(uri)
    if not claim or len(claim) > 253 or not _CLAIM.match(claim):
        raise ValueError(
            f"{field_name}: {uri!r} must look like pvc://<claim>/<path> with a valid claim name"
        )
    return claim


def claim_path(pvc_root: str, claim: str) -> str:
    """Where ``claim`` is mounted: ``<pvc_root>/<claim>``."""
    return f"{pvc_root.rstrip('/')}/{claim}"


def local_path(uri: str, pvc_root: str) -> str | None:
    """The in-pod filesystem path of a ``file://`` or ``pvc://<claim>/...`` URI, else None."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return parsed.path or "/"
    if parsed.scheme == "pvc" and parsed.netloc:
        return (
            "/".join((pvc_root.rstrip("/"), parsed.netloc, parsed.path.strip("/")))
            if parsed.path.strip("/")
            else "/".join((pvc_root.rstrip("/"), parsed.netloc))
        )
    return None


def volume_name(claim: str) -> str:
    """A DNS-label volume name for ``claim`` (dots replaced; long names shortened with a hash)."""
    name = "pvc-" + claim.replace(".", "-")
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(claim.encode()).hexdigest()[:8]
    return f"{name[:54].rstrip('-')}-{digest}"


def claim_volumes(
    read_only: Mapping[str, bool], pvc_root: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) of the claims, by name, each read-only or not as ``read_only`` says."""
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    for claim in sorted(read_only):
        name, ro = volume_name(claim), read_only[claim]
        volumes.append(
            {"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": ro}}
        )
        mounts.append({"name": name, "mountPath": claim_path(pvc_root, claim), "readOnly": ro})
    return volumes, mounts
