"""A container's environment and termination message, as the kubelet builds them.

``build_env`` resolves ``env`` and ``envFrom`` (ConfigMaps, Secrets, the downward API,
resource fields, ``$(VAR)`` expansion); ``truncate_termination_message`` and ``log_tail``
cut what a container leaves behind as the kubelet does. Used by the node agent's pod worker
(``kyklos.sandbox.pods``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

JsonDict = dict[str, Any]

MAX_TERMINATION_MESSAGE = 4 * 1024  # kubecontainer.MaxContainerTerminationMessageLength
MAX_FALLBACK_LOG_BYTES = 2 * 1024  # kubecontainer.MaxContainerTerminationMessageLogLength
MAX_FALLBACK_LOG_LINES = 80  # kubecontainer.MaxContainerTerminationMessageLogLines


class ContainerConfigError(Exception):
    """The container cannot be configured yet (CreateContainerConfigError)."""


# ---------------------------------------------------------------------------- env


def expand(text: str, lookup: Callable[[str], str | None]) -> str:
    """Expand ``$(VAR)`` like the kubelet: ``$$`` escapes, unknown names stay verbatim."""
    out: list[str] = []
    i = 0
    checkpoint = 0
    n = len(text)
    while i < n:
        if text[i] == "$" and i + 1 < n:
            out.append(text[checkpoint:i])
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                advance = 1
            elif nxt == "(":
                close = text.find(")", i + 2)
                if close == -1:
                    out.append("$(")
                    advance = 1
                else:
                    name = text[i + 2 : close]
                    value = lookup(name)
                    out.append(value if value is not None else f"$({name})")
                    advance = close - i
            else:
                out.append("$" + nxt)
                advance = 1
            i += advance
            checkpoint = i + 1
        i += 1
    out.append(text[checkpoint:])
    return "".join(out)


def _subscript(path: str, prefix: str) -> str | None:
    """`metadata.labels['k']` -> `k` for prefix `metadata.labels`."""
    if path.startswith(prefix + "[") and path.endswith("]"):
        inner = path[len(prefix) + 1 : -1]
        if len(inner) >= 2 and inner[0] == inner[-1] and inner[0] in "'\"":
            return inner[1:-1]
    return None


def field_ref_value(pod: JsonDict, path: str) -> str:
    """The value of a downward-API fieldRef such as `metadata.annotations['k']`."""
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.hostIP": status.get("hostIP", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIPs": ",".join(a["ip"] for a in status.get("hostIPs") or []),
        "status.podIPs": ",".join(a["ip"] for a in status.get("podIPs") or []),
    }
    if path in simple:
        return str(simple[path])
    for prefix, source in (
        ("metadata.labels", meta.get("labels") or {}),
        ("metadata.annotations", meta.get("annotations") or {}),
    ):
        key = _subscript(path, prefix)
        if key is not None:
            return str(source.get(key, ""))
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted(source.items()))
    raise ContainerConfigError(f"unsupported fieldRef fieldPath {path!r}")


def resource_field_value(container: JsonDict, ref: JsonDict, allocatable: Mapping[str, str]) -> str:
    """A resourceFieldRef value: the limit (node allocatable when unset) over the divisor."""
    from kubernetes.utils.quantity import parse_quantity

    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    if kind not in ("limits", "requests") or name not in ("cpu", "memory", "ephemeral-storage"):
        raise ContainerConfigError(f"unsupported resourceFieldRef resource {resource!r}")
    resources = container.get("resources") or {}
    raw = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:
        raw = allocatable.get(name, "0") if kind == "limits" else "0"
    divisor = parse_quantity(str(ref.get("divisor") or "1"))
    if divisor == 0:
        divisor = Decimal(1)
    value = parse_quantity(str(raw)) / divisor
    return str(math.ceil(value))


@dataclass
class EnvSources:
    """Lookups the env builder needs from the API (secret and configMap data)."""

    get_secret: Callable[[str], dict[str, str] | None]
    get_configmap: Callable[[str], dict[str, str] | None]
    allocatable: Mapping[str, str] = field(default_factory=dict)


def build_env(container: JsonDict, pod: JsonDict, sources: EnvSources) -> dict[str, str]:
    """The container's env as the kubelet builds it (envFrom first, then env)."""
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, getter in (
            ("configMapRef", sources.get_configmap),
            ("secretRef", sources.get_secret),
        ):
            ref = src.get(kind)
            if ref is None:
                continue
            data = getter(ref.get("name", ""))
            if data is None:
                if ref.get("optional"):
                    continue
                what = "configmap" if kind == "configMapRef" else "secret"
                raise ContainerConfigError(f'{what} "{ref.get("name", "")}" not found')
            for key, value in data.items():
                env[prefix + key] = value
    for var in container.get("env") or []:
        name = var["name"]
        if "valueFrom" not in var:
            env[name] = expand(var.get("value", ""), env.get)
            continue
        vf = var["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_ref_value(pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            ref = vf["resourceFieldRef"]
            target = container
            if ref.get("containerName"):
                all_containers = (pod["spec"].get("containers") or []) + (
                    pod["spec"].get("initContainers") or []
                )
                target = next(
                    (c for c in all_containers if c["name"] == ref["containerName"]), container
                )
            env[name] = resource_field_value(target, ref, sources.allocatable)
        elif "secretKeyRef" in vf or "configMapKeyRef" in vf:
            is_secret = "secretKeyRef" in vf
            ref = vf["secretKeyRef" if is_secret else "configMapKeyRef"]
            data = (sources.get_secret if is_secret else sources.get_configmap)(ref["name"])
            what = "secret" if is_secret else "configmap"
            if data is None:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(f'{what} "{ref["name"]}" not found')
            if ref["key"] not in data:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(
                    f"couldn't find key {ref['key']} in {'Secret' if is_secret else 'ConfigMap'}"
                    f" {pod['metadata']['namespace']}/{ref['name']}"
                )
            env[name] = data[ref["key"]]
    return env


def truncate_termination_message(data: bytes) -> str:
    """What the kubelet keeps of a termination message: its last 4096 bytes."""
    return data[-MAX_TERMINATION_MESSAGE:].decode("utf-8", errors="replace")


def log_tail(data: bytes) -> str:
    """FallbackToLogsOnError: the last 80 lines of the log, at most 2048 bytes."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines = lines[:-1]
    tail = b"\n".join(lines[-MAX_FALLBACK_LOG_LINES:])
    if lines:
        tail += b"\n"
    return tail[-MAX_FALLBACK_LOG_BYTES:].decode("utf-8", errors="replace")


def read_tail(path: str, limit: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - limit))
            return f.read()
    except OSError:
        return b""
