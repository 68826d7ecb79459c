"""Operator configuration: environment variables, overridden by `kyklos run` flags.

| variable | flag | meaning | default |
| --- | --- | --- | --- |
| KYKLOS_WORKER_IMAGE | --worker-image | image of the data-plane worker Jobs | KYKLOS_OPERATOR_IMAGE, else ghcr.io/kyklos/kyklos:<version> |
| KYKLOS_ARTIFACTS_URI | --artifacts-uri | artifact store for profiles, reports, models | pvc://kyklos-artifacts |
| KYKLOS_ARTIFACTS_SECRET | --artifacts-secret | Secret injected (envFrom) into worker pods for object-store credentials | unset |
| KYKLOS_WORKER_SERVICE_ACCOUNT | --worker-service-account | ServiceAccount of worker pods (no API permissions) | unset (namespace default) |
| KYKLOS_WORKER_RESOURCES | --worker-resources | JSON {"requests": {...}, "limits": {...}} for worker containers | 100m/256Mi requests, 1Gi limit |
| KYKLOS_WORKER_DEADLINE | --worker-deadline | longest a Dataset profile Job may run (activeDeadlineSeconds); a duration (30m, 1h) or seconds, 0 for none | 1h |
| KYKLOS_ARTIFACTS_CLAIM_SIZE | | size of the per-namespace artifact claim the operator creates for pvc:// stores | 10Gi |
| KYKLOS_ARTIFACTS_STORAGE_CLASS | | StorageClass of that claim | the cluster default |
| KYKLOS_PVC_ROOT | | where pvc://<claim> is mounted inside worker pods | /mnt/kyklos/pvc |
| KYKLOS_EXECUTOR_WORKERS | --executor-workers | threads for short blocking API calls of handlers (not a limit on how many objects the operator holds: nothing that waits holds one) | 16 |
| KYKLOS_LOG_LEVEL | --log-level | debug, info, warning, error | info |
| KYKLOS_LOG_FORMAT | --log-format | json or text | text |
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from kyklos import __version__
from kyklos.api.podtemplate import PodTemplate
from kyklos.logic.durations import duration_seconds
from kyklos.logic.workerjob import WorkerConfig

DEFAULT_IMAGE = f"ghcr.io/kyklos/kyklos:{__version__}"
DEFAULT_ARTIFACTS_URI = "pvc://kyklos-artifacts"
DEFAULT_PVC_ROOT = "/mnt/kyklos/pvc"
DEFAULT_WORKER_RESOURCES: dict[str, Any] = {
    "requests": {"cpu": "100m", "memory": "256Mi"},
    "limits": {"memory": "1Gi"},
}
DEFAULT_WORKER_DEADLINE = "1h"
DEFAULT_EXECUTOR_WORKERS = 16
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("json", "text")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable or flag."""


@dataclass(frozen=True)
class OperatorConfig:
    """Everything the controllers need to know about how they are deployed."""

    worker_image: str = DEFAULT_IMAGE
    artifacts_uri: str = DEFAULT_ARTIFACTS_URI
    artifacts_secret: str | None = None
    worker_service_account: str | None = None
    worker_resources: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_WORKER_RESOURCES))
    #: activeDeadlineSeconds of profile Jobs (None: no deadline).
    worker_deadline_seconds: int | None = 3600
    artifacts_claim_size: str = "10Gi"
    artifacts_storage_class: str | None = None
    pvc_root: str = DEFAULT_PVC_ROOT
    #: Size of kopf's executor (sync handlers' short blocking calls).
    executor_workers: int = DEFAULT_EXECUTOR_WORKERS
    log_level: str = "info"
    log_format: str = "text"
    #: MLflow tracking URI for registry sync (None: no sync; kyklos.controllers.registry).
    mlflow_tracking_uri: str | None = None
    #: Pod override of every worker Job (profile, drift check), e.g. tolerations.
    worker_pod_template: PodTemplate | None = None

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> OperatorConfig:
        """Build the config from ``env`` (default os.environ) and non-None ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {
            "worker_image": env.get("KYKLOS_WORKER_IMAGE")
            or env.get("KYKLOS_OPERATOR_IMAGE")
            or DEFAULT_IMAGE,
            "artifacts_uri": env.get("KYKLOS_ARTIFACTS_URI") or DEFAULT_ARTIFACTS_URI,
            "artifacts_secret": env.get("KYKLOS_ARTIFACTS_SECRET") or None,
            "worker_service_account": env.get("KYKLOS_WORKER_SERVICE_ACCOUNT") or None,
            "worker_resources": env.get("KYKLOS_WORKER_RESOURCES") or None,
            "worker_deadline_seconds": env.get("KYKLOS_WORKER_DEADLINE") or DEFAULT_WORKER_DEADLINE,
            "artifacts_claim_size": env.get("KYKLOS_ARTIFACTS_CLAIM_SIZE") or "10Gi",
            "artifacts_storage_class": env.get("KYKLOS_ARTIFACTS_STORAGE_CLASS") or None,
            "pvc_root": env.get("KYKLOS_PVC_ROOT") or DEFAULT_PVC_ROOT,
            "executor_workers": env.get("KYKLOS_EXECUTOR_WORKERS") or DEFAULT_EXECUTOR_WORKERS,
            "log_level": (env.get("KYKLOS_LOG_LEVEL") or "info").lower(),
            "log_format": (env.get("KYKLOS_LOG_FORMAT") or "text").lower(),
            "mlflow_tracking_uri": env.get("KYKLOS_MLFLOW_TRACKING_URI") or None,
            "worker_pod_template": env.get("KYKLOS_WORKER_POD_TEMPLATE") or None,
        }
        for key, value in (overrides or {}).items():
            if value is not None:
                values[key] = value
        resources = values["worker_resources"]
        if resources is None:
            values["worker_resources"] = dict(DEFAULT_WORKER_RESOURCES)
        elif isinstance(resources, str):
            values["worker_resources"] = _parse_resources(resources)
        if isinstance(values["worker_deadline_seconds"], str):
            values["worker_deadline_seconds"] = _parse_deadline(values["worker_deadline_seconds"])
        values["executor_workers"] = _parse_workers(values["executor_workers"])
        if values["log_level"] not in LOG_LEVELS:
            raise ConfigError(
                f"KYKLOS_LOG_LEVEL/--log-level: {values['log_level']!r} is not one of {', '.join(LOG_LEVELS)}"
            )
        if values["log_format"] not in LOG_FORMATS:
            raise ConfigError(
                f"KYKLOS_LOG_FORMAT/--log-format: {values['log_format']!r} is not one of {', '.join(LOG_FORMATS)}"
            )
        if isinstance(values["worker_pod_template"], str):
            values["worker_pod_template"] = _parse_pod_template(values["worker_pod_template"])
        if not values["artifacts_uri"].strip():
            raise ConfigError("KYKLOS_ARTIFACTS_URI/--artifacts-uri: must not be empty")
        return cls(**values)


def _parse_resources(text: str) -> dict[str, Any]:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"KYKLOS_WORKER_RESOURCES/--worker-resources: not JSON ({exc.msg})"
        ) from exc
    if not isinstance(parsed, dict) or set(parsed) - {"requests", "limits"}:
        raise ConfigError(
            'KYKLOS_WORKER_RESOURCES/--worker-resources: expected {"requests": {...}, "limits": {...}}'
        )
    return parsed


def _parse_workers(value: str | int) -> int:
    """A whole number of executor threads, 1 to 256."""
    try:
        workers = int(str(value).strip())
    except ValueError:
        workers = 0
    if not 1 <= workers <= 256:
        raise ConfigError(
            f"KYKLOS_EXECUTOR_WORKERS/--executor-workers: {value!r} is not a whole number from 1 to 256"
        )
    return workers


def _parse_pod_template(text: str) -> PodTemplate | None:
    """The worker pod template (JSON, the shape of TrainingJob.spec.template); {} is none."""
    try:
        template = PodTemplate.model_validate_json(text, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"KYKLOS_WORKER_POD_TEMPLATE: {where + ': ' if where else ''}{first['msg']}"
        ) from None
    return template if template.model_dump(exclude_none=True) else None


def _parse_deadline(text: str) -> int | None:
    """Seconds of a duration (``90s``, ``30m``, ``1h``) or a whole number of seconds; 0 is none."""
    text = text.strip()
    try:
        seconds = float(int(text)) if text.isdigit() else duration_seconds(text)
    except ValueError:
        raise ConfigError(
            f"KYKLOS_WORKER_DEADLINE/--worker-deadline: {text!r} is not a duration like 30m or "
            "1h, or a number of seconds (0: no deadline)"
        ) from None
    return math.ceil(seconds) or None


_current: OperatorConfig | None = None


def current() -> OperatorConfig:
    """The configuration the running operator was started with."""
    global _current
    if _current is None:
        _current = OperatorConfig.from_env()
    return _current


def install(config: OperatorConfig) -> None:
    """Make ``config`` the running operator's configuration (called once by `kyklos run`)."""
    global _current
    _current = config


def worker_config(cfg: OperatorConfig | None = None) -> WorkerConfig:
    """How worker pods are deployed, as the plain values the pure Job builders take."""
    cfg = cfg or current()
    return WorkerConfig(
        image=cfg.worker_image,
        artifacts_uri=cfg.artifacts_uri,
        resources=cfg.worker_resources,
        pvc_root=cfg.pvc_root,
        service_account=cfg.worker_service_account,
        artifacts_secret=cfg.artifacts_secret,
        deadline_seconds=cfg.worker_deadline_seconds,
        pod_template=cfg.worker_pod_template,
    )
