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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kyklos.api.podtemplate import PodTemplate
from kyklos.logic.naming import child_labels, owner_reference
from kyklos.logic.podspec import (
    DEFAULT_PVC_ROOT,
    TERMINATION_PATH,
    TMP_PATH,
    claim_of,
    claim_volumes,
    restricted_container_security,
    restricted_pod_security,
    tmp_volume,
)
from kyklos.logic.podtemplate import apply_pod_template

WORKER_CONTAINER = "worker"


@dataclass(frozen=True)
class WorkerConfig:
    """How worker pods are deployed: the operator's configuration, as plain values."""

    image: str
    artifacts_uri: str
    resources: Mapping[str, Any] = field(default_factory=dict)
    pvc_root: str = DEFAULT_PVC_ROOT
    service_account: str | None = None
    artifacts_secret: str | None = None
    #: ``activeDeadlineSeconds`` of Jobs whose builder passes it on (None: no deadline).
    deadline_seconds: int | None = None
    #: The operator's pod override of every worker pod (kyklos.logic.podtemplate).
    pod_template: PodTemplate | None = None


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
    tmp, tmp_mount = tmp_volume()
    claim_vols, claim_mounts = claim_volumes({c: not w for c, w in claims.items()}, root)
    volumes: list[dict[str, Any]] = [tmp, *claim_vols]
    mounts: list[dict[str, Any]] = [tmp_mount, *claim_mounts]

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
        "terminationMessagePath": TERMINATION_PATH,
        "terminationMessagePolicy": "File",
        "volumeMounts": mounts,
    }
    if env_from:
        container["envFrom"] = env_from

    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": restricted_pod_security(),
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
