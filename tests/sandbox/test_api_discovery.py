"""Discovery and listing as kopf reads them: subresources, names, paging, list metadata."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from sandbox_api import GROUP, PLURAL, VERSION, raw_get


def _resources(k8s: Any, path: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in raw_get(k8s, path)["resources"]}


def test_crd_discovery_lists_status_subresource_names_and_verbs(
    k8s: Any, widget_crd: dict[str, str]
) -> None:
    resources = _resources(k8s, f"/apis/{GROUP}/{VERSION}")
    widget = resources[PLURAL]
    assert widget["kind"] == "Widget"
    assert widget["singularName"] == "widget"
    assert widget["namespaced"] is True
    assert widget["shortNames"] == ["wdg"]
    assert widget["categories"] == ["conformance"]
    assert {"create", "get", "list", "watch", "patch", "update", "delete"} <= set(widget["verbs"])
    # kopf patches status separately exactly when this entry exists.
    assert f"{PLURAL}/status" in resources
    assert f"{PLURAL}/scale" not in resources


def test_core_discovery_has_pod_status_and_events(k8s: Any) -> None:
    resources = _resources(k8s, "/api/v1")
    assert "pods/status" in resources
    assert "events" in resources
    assert resources["configmaps"]["namespaced"] is True


def test_list_paging_with_limit_and_continue(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    names = {f"cm-{i}" for i in range(7)}
    for name in names:
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": name, "labels": {"page": "yes"}}}
        )
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = core.list_namespaced_config_map(
            namespace, label_selector="page=yes", limit=3, _continue=token
        )
        pages += 1
        assert page.metadata.resource_version
        seen += [item.metadata.name for item in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert pages == 3
    assert sorted(seen) == sorted(names)


def test_raw_list_carries_kind_api_version_and_resource_version(k8s: Any, namespace: str) -> None:
    data = raw_get(k8s, f"/api/v1/namespaces/{namespace}/configmaps")
    assert data["kind"] == "ConfigMapList"
    assert data["apiVersion"] == "v1"
    assert data["metadata"]["resourceVersion"]


def test_events_accept_generate_name(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    body = {
        "metadata": {"generateName": "kyklos-"},
        "involvedObject": {"kind": "ConfigMap", "name": "x", "namespace": namespace},
        "reason": "Testing",
        "message": "conformance",
        "type": "Normal",
    }
    first = core.create_namespaced_event(namespace, body).metadata.name
    second = core.create_namespaced_event(namespace, body).metadata.name
    assert first != second and first.startswith("kyklos-")
