"""All Kubernetes API I/O of the controllers goes through this module.

It is deliberately small: get / list / create / patch / delete on a fixed table of
resources, plus ``apply`` (create, or patch only what differs, or nothing) so that
reconciles are idempotent and a settled cluster sees no writes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import kubernetes
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from kyklos.controllers.metrics import CHILDREN_CREATED

log = logging.getLogger("kyklos.client")

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"

Action = Literal["created", "patched", "unchanged"]


@dataclass(frozen=True)
class Resource:
    """A Kubernetes resource type the controllers touch."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None, name: str | None = None, sub: str | None = None) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


JOBS = Resource("batch", "v1", "jobs", "Job")
PODS = Resource("", "v1", "pods", "Pod")
SERVICES = Resource("", "v1", "services", "Service")
DEPLOYMENTS = Resource("apps", "v1", "deployments", "Deployment")
HPAS = Resource("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
DATASETS = Resource("kyklos.io", "v1alpha1", "datasets", "Dataset")
TRAININGJOBS = Resource("kyklos.io", "v1alpha1", "trainingjobs", "TrainingJob")
MODELDEPLOYMENTS = Resource("kyklos.io", "v1alpha1", "modeldeployments", "ModelDeployment")
DRIFTMONITORS = Resource("kyklos.io", "v1alpha1", "driftmonitors", "DriftMonitor")

BY_KIND = {
    r.kind: r
    for r in (
        JOBS,
        PODS,
        SERVICES,
        DEPLOYMENTS,
        HPAS,
        DATASETS,
        TRAININGJOBS,
        MODELDEPLOYMENTS,
        DRIFTMONITORS,
    )
}

_local = threading.local()


def load_config(kubeconfig: str | None = None) -> None:
    """Load credentials: ``kubeconfig`` / $KUBECONFIG / ~/.kube/config, else in-cluster."""
    try:
        kubernetes.config.load_kube_config(config_file=kubeconfig)
    except (kubernetes.config.ConfigException, FileNotFoundError, TypeError):
        kubernetes.config.load_incluster_config()


def _api() -> ApiClient:
    # ApiClient is not thread-safe to share across kopf's executor threads; one per thread.
    client: ApiClient | None = getattr(_local, "client", None)
    if client is None:
        client = ApiClient()
        _local.client = client
    return client


def _call(
    method: str,
    path: str,
    *,
    body: Any = None,
    query: list[tuple[str, Any]] | None = None,
    content_type: str = "application/json",
) -> Any:
    """One API request; the decoded JSON response, or ApiException for a non-2xx answer."""
    api = _api()
    _, url, headers, serialized, _ = api.param_serialize(
        method=method,
        resource_path=path,
        query_params=query or [],
        header_params={"Content-Type": content_type, "Accept": "application/json"},
        body=body,
        auth_settings=["BearerToken"],
    )
    response = api.call_api(method, url, header_params=headers, body=serialized)
    data = response.read()
    if not 200 <= response.status < 300:
        raise ApiException(
            http_resp=response, body=data.decode("utf-8", "replace") if data else None
        )
    return json.loads(data) if data else None


def get(res: Resource, namespace: str | None, name: str) -> dict[str, Any] | None:
    """The object, or None when it does not exist."""
    try:
        result: dict[str, Any] = _call("GET", res.path(namespace, name))
        return result
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def list_objects(
    res: Resource, namespace: str | None, labels: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Objects of ``res`` in ``namespace`` (all namespaces when None) matching ``labels``."""
    query: list[tuple[str, Any]] = []
    if labels:
        query.append(("labelSelector", ",".join(f"{k}={v}" for k, v in labels.items())))
    result = _call("GET", res.path(namespace), query=query)
    items: list[dict[str, Any]] = result.get("items") or []
    return items


def create(res: Resource, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
    """Create ``body``; when it already exists (409), return the existing object."""
    try:
        created: dict[str, Any] = _call("POST", res.path(namespace), body=dict(body))
        return created
    except ApiException as exc:
        if exc.status == 409:
            existing = get(res, namespace, body["metadata"]["name"])
            if existing is not None:
                return existing
        raise


def patch(
    res: Resource,
    namespace: str | None,
    name: str,
    body: Any,
    *,
    status: bool = False,
    content_type: str = MERGE,
) -> dict[str, Any] | None:
    """Patch the object (or its status); None when it no longer exists."""
    try:
        result: dict[str, Any] = _call(
            "PATCH",
            res.path(namespace, name, "status" if status else None),
            body=body,
            content_type=content_type,
        )
        return result
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def delete(
    res: Resource, namespace: str | None, name: str, propagation: str = "Background"
) -> bool:
    """Delete the object (children per ``propagation``); False when it was already gone."""
    try:
        _call(
            "DELETE",
            res.path(namespace, name),
            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation},
        )
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


def is_subset(desired: Any, actual: Any) -> bool:
    """Whether every value in ``desired`` is present and equal in ``actual``.

    Lists must have the same length with each element a subset; the API server's defaults
    (extra keys in ``actual``) do not count as differences.
    """
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return all(k in actual and is_subset(v, actual[k]) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(desired) != len(actual):
            return False
        return all(is_subset(d, a) for d, a in zip(desired, actual, strict=True))
    if isinstance(desired, (int, float)) and isinstance(actual, (int, float)):
        return bool(desired == actual)
    return bool(desired == actual)


def apply(
    res: Resource,
    desired: Mapping[str, Any],
    *,
    owner_kind: str,
    immutable: tuple[str, ...] = (),
) -> tuple[dict[str, Any], Action]:
    """Create ``desired`` or patch the fields that differ; no write when nothing differs.

    ``immutable`` names top-level spec keys never patched (e.g. a Job's ``template``).
    """
    meta = desired["metadata"]
    namespace, name = meta.get("namespace"), meta["name"]
    existing = get(res, namespace, name)
    if existing is None:
        created = create(res, namespace, desired)
        CHILDREN_CREATED.labels(owner_kind, res.kind).inc()
        return created, "created"
    change: dict[str, Any] = {}
    for key in ("labels", "annotations"):
        want = meta.get(key) or {}
        if not is_subset(want, existing["metadata"].get(key) or {}):
            change.setdefault("metadata", {})[key] = want
    if not is_subset(
        meta.get("ownerReferences") or [], existing["metadata"].get("ownerReferences") or []
    ):
        change.setdefault("metadata", {})["ownerReferences"] = meta["ownerReferences"]
    for section in ("spec", "data"):
        want_section = desired.get(section)
        if want_section is None:
            continue
        have = existing.get(section) or {}
        diff = {
            k: v
            for k, v in want_section.items()
            if k not in immutable and not is_subset(v, have.get(k))
        }
        if diff:
            change[section] = diff
    if not change:
        return existing, "unchanged"
    patched = patch(res, namespace, name, change)
    return (patched or existing), "patched"
