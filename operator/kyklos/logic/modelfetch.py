"""Model download for servers: the init container that copies an object-store model locally.

For a model on ``s3://``, ``gs://`` or ``http(s)://`` the serving pod gets an init container
running ``kyklos worker fetch-model`` (the Kyklos image, fsspec) that copies the model into
an ``emptyDir``; the server mounts it read-only and finds it at ``KYKLOS_MODEL_PATH``. The
store's credentials (``spec.model.secretRef``, or the artifact store's Secret for a model
from a TrainingJob) reach only the init container. ``pvc://`` models stay a mount and
``file://`` models a path, as before.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kyklos.api.modelfetch import FetchModelArgs, ModelFetchSummary
from kyklos.logic.podspec import TERMINATION_PATH, TMP_PATH, restricted_container_security

#: URI schemes whose models are downloaded by the init container.
FETCH_SCHEMES = ("s3", "gs", "http", "https")
INIT_CONTAINER = "fetch-model"
MODEL_VOLUME = "kyklos-model"
MODEL_DIR = "/mnt/kyklos/model"
ENV_MODEL_PATH = "KYKLOS_MODEL_PATH"


@dataclass(frozen=True)
class ModelFetcher:
    """How the operator runs fetches: the worker image, its resources, the artifacts Secret."""

    image: str
    resources: Mapping[str, Any] = field(default_factory=dict)
    artifacts_secret: str | None = None


def needs_fetch(uri: str) -> bool:
    """Whether a model at ``uri`` is downloaded by an init container."""
    return uri.split("://", 1)[0].lower() in FETCH_SCHEMES if "://" in uri else False


def with_model_fetch(
    pod_template: Mapping[str, Any],
    uri: str,
    fetcher: ModelFetcher,
    server: str,
    secret: str | None,
) -> dict[str, Any]:
    """``pod_template`` with the fetch init container, its emptyDir and the server's mount.

    ``secret`` (a Secret name) is given to the init container only, as ``envFrom``.
    """
    out = copy.deepcopy(dict(pod_template))
    spec = out.setdefault("spec", {})
    args = FetchModelArgs(uri=uri, dest=MODEL_DIR, termination_log=TERMINATION_PATH)
    init: dict[str, Any] = {
        "name": INIT_CONTAINER,
        "image": fetcher.image,
        "command": ["kyklos", "worker", *args.to_argv()],
        "env": [{"name": "HOME", "value": TMP_PATH}],
        "terminationMessagePath": TERMINATION_PATH,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": restricted_container_security(),
        "volumeMounts": [
            {"name": MODEL_VOLUME, "mountPath": MODEL_DIR},
            {"name": "tmp", "mountPath": TMP_PATH},
        ],
    }
    if fetcher.resources:
        init["resources"] = copy.deepcopy(dict(fetcher.resources))
    if secret:
        init["envFrom"] = [{"secretRef": {"name": secret}}]
    spec["initContainers"] = [
        *(c for c in spec.get("initContainers") or [] if c.get("name") != INIT_CONTAINER),
        init,
    ]
    volumes = [v for v in spec.get("volumes") or [] if v.get("name") != MODEL_VOLUME]
    spec["volumes"] = [*volumes, {"name": MODEL_VOLUME, "emptyDir": {}}]
    for container in spec.get("containers") or []:
        if container.get("name") != server:
            continue
        env = [e for e in container.get("env") or [] if e.get("name") != ENV_MODEL_PATH]
        container["env"] = [*env, {"name": ENV_MODEL_PATH, "value": MODEL_DIR}]
        mounts = [m for m in container.get("volumeMounts") or [] if m.get("name") != MODEL_VOLUME]
        container["volumeMounts"] = [
            *mounts,
            {"name": MODEL_VOLUME, "mountPath": MODEL_DIR, "readOnly": True},
        ]
    return out


@dataclass(frozen=True)
class FetchFailure:
    """A serving pod whose model download failed: why (naming the store), and how often."""

    revision: str
    message: str
    restarts: int

    def to_index(self) -> dict[str, Any]:
        """The compact form the operator keeps per failing pod."""
        return {"revision": self.revision, "message": self.message, "restarts": self.restarts}

    @classmethod
    def from_index(cls, data: Mapping[str, Any]) -> FetchFailure:
        return cls(str(data["revision"]), str(data["message"]), int(data["restarts"]))


def fetch_failure(pod: Mapping[str, Any], revision_label: str) -> FetchFailure | None:
    """Why the model download of ``pod`` failed, or None (not failed, or no download).

    Read from the init container's termination message, current or last state.
    """
    revision = str(((pod.get("metadata") or {}).get("labels") or {}).get(revision_label) or "")
    for status in (pod.get("status") or {}).get("initContainerStatuses") or []:
        if status.get("name") != INIT_CONTAINER:
            continue
        for state in (status.get("state") or {}, status.get("lastState") or {}):
            terminated = state.get("terminated") or {}
            if not terminated or terminated.get("exitCode") in (0, None):
                continue
            summary = ModelFetchSummary.from_termination_message(
                str(terminated.get("message") or "")
            )
            if summary is not None and summary.message:
                message = summary.message
            else:
                message = f"the model download exited with {terminated.get('exitCode')}"
            return FetchFailure(revision, message, int(status.get("restartCount") or 0))
    return None


def failure_of_revision(failures: Iterable[FetchFailure], revision: str) -> FetchFailure | None:
    """The failure with the most restarts among pods of ``revision``."""
    mine = [f for f in failures if f.revision == revision]
    return max(mine, key=lambda f: f.restarts) if mine else None
