"""What a pod worker shares with its node agent: the API it talks to and the node's identity.

``NodeContext`` is handed to every ``PodWorker`` (``kyklos.sandbox.pods``); ``KubeApi`` is the
one call the worker makes (implemented in ``kyklos.sandbox.nodeagent``), ``ApiError`` what it
raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kyklos.sandbox.policy import Policy

RETRY_SECONDS = 2.0
JsonDict = dict[str, Any]


class ApiError(Exception):
    """A Kubernetes API request failed with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class KubeApi(Protocol):
    """The few API calls a pod worker needs (implemented in nodeagent)."""

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JsonDict: ...


def now_rfc3339() -> str:
    """The current time as Kubernetes serialises metav1.Time."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class NodeContext:
    """What pod workers share: API, policy, data dir, node identity."""

    api: KubeApi
    data_dir: str
    node_name: str
    host_ip: str
    allocatable: Mapping[str, str]
    policy: Callable[[], Policy]
    api_host: str = ""
    api_port: str = ""
    use_mount_ns: bool = True
    on_process_change: Callable[[], None] = lambda: None
    mountpoints: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


class PodParts:
    """What the pod worker's parts (launch, volumes, status) read of the worker itself.

    ``PodWorker`` (``kyklos.sandbox.pods``) sets these in its constructor.
    """

    ctx: NodeContext
    uid: str
    namespace: str
    pod_name: str
    pod_ip: str
    pod_dir: str


def pod_with_status(pod: JsonDict, pod_ip: str, host_ip: str) -> JsonDict:
    """The pod as the downward API sees it (status IPs known before they are written)."""
    status = dict(pod.get("status") or {})
    status.update(
        {
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
        }
    )
    return {**pod, "status": status}
