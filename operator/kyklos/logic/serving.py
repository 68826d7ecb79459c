"""The serving pod's proxy sidecar (``kyklos proxy``), added to a serving Deployment (pure).

With ``spec.observability.proxy`` (the default) every serving pod runs two containers:

- ``server``: the model server, told its pod-local port in ``KYKLOS_SERVER_PORT`` (the
  **contract change**: a server behind the proxy must listen there, not on
  ``runtime.port``); no readiness probe of its own;
- ``proxy``: ``kyklos proxy`` (the Kyklos image) on ``runtime.port`` (the Service's
  ``http`` target) forwarding to the server, with the readiness probe the server had
  (``healthPath``, forwarded, so Ready means what it meant; probed on the ``metrics`` port,
  which serves ``/metrics`` and forwards ``healthPath`` too), and the artifact store mounted
  for request logs; the proxy's ``/tmp`` is an ``emptyDir`` holding the request log's
  crash-safe journal (``JOURNAL_DIR``), which outlives a restart of the proxy container.

The server port and the metrics port are derived from (name, component, revision): in the
process sandbox every pod shares the host network, and a server port of its own per
revision keeps a canary proxy from reaching a stable server (request logs always carry the
revision that really answered). On a real cluster the ports are pod-local and any value
works. Ports lie in ``PORT_BASE`` .. ``PORT_BASE + PORT_SPAN`` and never equal
``runtime.port``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kyklos.api.deployment import ModelDeploymentSpec
from kyklos.api.serving import ProxySettings
from kyklos.logic.durations import duration_seconds
from kyklos.logic.podspec import (
    DEFAULT_PVC_ROOT,
    claim_of,
    restricted_container_security,
    volume_name,
)

PROXY_CONTAINER = "proxy"
SERVER_PORT_NAME = "server"
METRICS_PORT_NAME = "metrics"
ENV_SERVER_PORT = "KYKLOS_SERVER_PORT"
ENV_POD_NAME = "KYKLOS_POD_NAME"
PORT_BASE = 20000
PORT_SPAN = 10000
#: On the proxy's /tmp emptyDir: survives a container restart, so a proxy killed outright
#: is followed by one that counts what it lost (kyklos.serving.journal).
JOURNAL_DIR = "/tmp/kyklos-proxy-journal"


@dataclass(frozen=True)
class ProxyImage:
    """What the operator knows about the proxy: its image and the artifact store."""

    image: str
    artifacts_uri: str
    pvc_root: str = DEFAULT_PVC_ROOT


@dataclass(frozen=True)
class ServingPorts:
    """The pod-local ports behind the proxy."""

    server: int
    metrics: int


def serving_ports(name: str, component: str, revision: str, listen_port: int) -> ServingPorts:
    """Server and metrics ports of one revision's pods (deterministic, distinct, != listen)."""
    digest = hashlib.sha256(f"{name}/{component}/{revision}".encode()).digest()
    server = PORT_BASE + int.from_bytes(digest[:4], "big") % (PORT_SPAN // 2) * 2
    if listen_port in (server, server + 1):
        server = PORT_BASE + (server - PORT_BASE + 2) % PORT_SPAN
    return ServingPorts(server=server, metrics=server + 1)


def proxy_settings(
    owner: Mapping[str, Any],
    spec: ModelDeploymentSpec,
    component: str,
    revision: str,
    artifacts_uri: str,
) -> ProxySettings:
    """The arguments of the ``kyklos proxy`` of one revision's pods."""
    meta = owner["metadata"]
    ports = serving_ports(meta["name"], component, revision, spec.runtime.port)
    log = spec.observability.request_log
    return ProxySettings(
        listen_port=spec.runtime.port,
        server_port=ports.server,
        metrics_port=ports.metrics,
        revision=revision,
        health_path=spec.runtime.health_path,
        namespace=meta["namespace"],
        name=meta["name"],
        pod=f"$({ENV_POD_NAME})",
        artifacts=artifacts_uri,
        sample_rate=log.sample_rate,
        flush_seconds=duration_seconds(
            log.flush_interval, "observability.requestLog.flushInterval"
        ),
        max_body_bytes=log.max_body_bytes,
        journal_dir=JOURNAL_DIR,
    )


def add_proxy_sidecar(
    deployment: dict[str, Any],
    owner: Mapping[str, Any],
    spec: ModelDeploymentSpec,
    component: str,
    revision: str,
    proxy: ProxyImage,
) -> dict[str, Any]:
    """``deployment`` with the proxy in front of its ``server`` container (in place, returned)."""
    pod = deployment["spec"]["template"]["spec"]
    server = pod["containers"][0]
    settings = proxy_settings(owner, spec, component, revision, proxy.artifacts_uri)
    probe = server.pop("readinessProbe")
    # The proxy answers healthPath on its metrics port too (forwarded to the server): a
    # port of this revision's own, so in the process sandbox, where the Service port is
    # shared, the probe reaches this pod's proxy and server, not another pod's.
    probe = {**probe, "httpGet": {**probe["httpGet"], "port": METRICS_PORT_NAME}}
    server["ports"] = [
        {"name": SERVER_PORT_NAME, "containerPort": settings.server_port, "protocol": "TCP"}
    ]
    server["env"] = [
        *server["env"],
        {"name": ENV_SERVER_PORT, "value": str(settings.server_port)},
    ]
    mounts: list[dict[str, Any]] = [{"name": "proxy-tmp", "mountPath": "/tmp"}]
    pod["volumes"] = [*pod["volumes"], {"name": "proxy-tmp", "emptyDir": {}}]
    root = proxy.pvc_root.rstrip("/")
    claim = claim_of(proxy.artifacts_uri, "artifacts URI")
    if claim:
        volume = volume_name(claim)
        # The model may live on the same claim (mounted read-only by the server): the
        # volume becomes writable, the server's mount stays read-only.
        pod["volumes"] = [v for v in pod["volumes"] if v["name"] != volume]
        pod["volumes"].append({"name": volume, "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": volume, "mountPath": f"{root}/{claim}"})
    pod["containers"] = [
        server,
        {
            "name": PROXY_CONTAINER,
            "image": proxy.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["kyklos", "proxy", *settings.to_flags()],
            "env": [
                {"name": ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "KYKLOS_PVC_ROOT", "value": root},
                {"name": "HOME", "value": "/tmp"},
            ],
            "ports": [
                {"name": "http", "containerPort": spec.runtime.port, "protocol": "TCP"},
                {
                    "name": METRICS_PORT_NAME,
                    "containerPort": settings.metrics_port,
                    "protocol": "TCP",
                },
            ],
            "readinessProbe": probe,
            "resources": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"memory": "256Mi"},
            },
            "securityContext": restricted_container_security(),
            "volumeMounts": mounts,
        },
    ]
    return deployment
