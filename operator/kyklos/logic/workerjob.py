"""The batch/v1 Job of a data-plane worker (``kyklos worker ...``), shared by every kind.

One builder for the profile Jobs of Datasets and the check Jobs of DriftMonitors, so that
every worker pod is deployed the same way:

- image and resources from the operator's configuration, explicit command
  ``["kyklos", "worker", ...]`` (the sandbox's process kubelet runs it as given);
- the restricted Pod Security profile: non-root uid 65532, no privilege escalation, all
  capabilities dropped, seccomp RuntimeDefault, read-only root filesystem with an emptyDir
  at ``/tmp`` (also ``HOME``, for libraries that cache there);
- no Kubernetes API credentials (``automountServiceAccountToken: false``);
- every ``pvc://<claim>/...`` URI it reads or writes mounted at ``<pvc_root>/<claim>``
  (read-only unless written), with ``KYKLOS_PVC_ROOT`` telling the worker where;
- credentials only as ``envFrom`` Secret references, never as literal values;
- the compact summary read from ``/dev/termination-log`` (policy ``File``);
- ``backoffLimit`` 0 by default (a failed profile is a result, not something to retry)
  and no ``ttlSecondsAfterFinished``: the owner deletes the Jobs it no longer needs.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

from kyklos.api.podtemplate import PodTemplate
from kyklos.logic.artifacts import pvc_claim
from kyklos.logic.naming import child_labels, owner_reference
from kyklos.logic.podtemplate import apply_pod_template

WORKER_CONTAINER = "worker"
#: The Kyklos image's USER (Dockerfile); tests/unit/test_dockerfile.py keeps them equal.
WORKER_UID = 65532
TERMINATION_LOG = "/dev/termination-log"
TMP_VOLUME = "tmp"
TMP_PATH = "/tmp"

_CLAIM = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True)
class WorkerConfig:
    """How worker pods are deployed: the operator's configuration, as plain values."""

    image: str
    artifacts_uri: str
    resources: Mapping[str, Any] = field(default_factory=dict)
    pvc_root: str = "/mnt/kyklos/pvc"
    service_account: str | None = None
    artifacts_secret: str | None = None
    #: ``activeDeadlineSeconds`` of Jobs whose builder passes it on (None: no deadline).
    deadline_seconds: int | None = None
    #: The operator's pod override of every worker pod (kyklos.logic.podtemplate).
    pod_template: PodTemplate | None = None


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


def restricted_container_security() -> dict[str, Any]:
    """The container securityContext of the restricted Pod Security profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": WORKER_UID,
        "runAsGroup": WORKER_UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def build_worker_job(
    owner: Mapping[str, Any],
    *,
    job_name: str,
    component: str,
    worker_args: Sequence[str],
    config: WorkerConfig,
    read_uris: Sequence[str] = (),
    secret_refs: Sequence[str] = (),
    annotations: Mapping[str, str] | None = None,
    backoff_limit: int = 0,
    active_deadline_seconds: int | None = None,
) -> dict[str, Any]:
    """The Job running ``kyklos worker <worker_args...>`` for ``owner`` (a custom resource body).

    ``read_uris`` are the data the worker reads (their ``pvc://`` claims are mounted
    read-only); the artifact store ``config.artifacts_uri`` is always mounted writable.
    ``secret_refs`` name Secrets passed as ``envFrom`` after ``config.artifacts_secret``
    (on a duplicate key the later Secret wins). ValueError when a ``pvc://`` URI is malformed.
    """
    meta = owner["metadata"]
    namespace = meta["namespace"]
    kind = owner["kind"]
    labels = child_labels(kind, meta["name"], component)

    claims: dict[str, bool] = {}  # claim -> writable
    for uri in read_uris:
        claim = claim_of(uri, "source.uri")
        if claim:
            claims.setdefault(claim, False)
    artifacts_claim = claim_of(config.artifacts_uri, "artifacts URI")
    if artifacts_claim:
        claims[artifacts_claim] = True

    root = config.pvc_root.rstrip("/") or "/"
    volumes: list[dict[str, Any]] = [{"name": TMP_VOLUME, "emptyDir": {}}]
    mounts: list[dict[str, Any]] = [{"name": TMP_VOLUME, "mountPath": TMP_PATH}]
    for claim in sorted(claims):
        writable = claims[claim]
        volumes.append(
            {
                "name": volume_name(claim),
                "persistentVolumeClaim": {"claimName": claim, "readOnly": not writable},
            }
        )
        mounts.append(
            {
                "name": volume_name(claim),
                "mountPath": f"{root.rstrip('/')}/{claim}",
                "readOnly": not writable,
            }
        )

    secrets = [s for s in (config.artifacts_secret, *secret_refs) if s]
    env_from = [{"secretRef": {"name": s}} for s in dict.fromkeys(secrets)]

    container: dict[str, Any] = {
        "name": WORKER_CONTAINER,
        "image": config.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["kyklos", "worker", *worker_args],
        "env": [
            {"name": "KYKLOS_PVC_ROOT", "value": root},
            {"name": "HOME", "value": TMP_PATH},
        ],
        "resources": {k: dict(v) for k, v in config.resources.items()},
        "securityContext": restricted_container_security(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "File",
        "volumeMounts": mounts,
    }
    if env_from:
        container["envFrom"] = env_from

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "fsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if config.service_account:
        pod_spec["serviceAccountName"] = config.service_account

    job_spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "template": apply_pod_template(
            {"metadata": {"labels": dict(labels)}, "spec": pod_spec},
            config.pod_template,
            WORKER_CONTAINER,
        ),
    }
    if active_deadline_seconds is not None:
        job_spec["activeDeadlineSeconds"] = active_deadline_seconds

    metadata: dict[str, Any] = {
        "name": job_name,
        "namespace": namespace,
        "labels": dict(labels),
        "ownerReferences": [owner_reference(owner)],
    }
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": job_spec}
