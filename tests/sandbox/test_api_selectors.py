"""Label and field selectors on list (what kopf and Kyklos use to find their children)."""

from __future__ import annotations

from typing import Any

from kubernetes import client


def _names(items: list[Any]) -> set[str]:
    return {item.metadata.name for item in items}


def _seed(core: client.CoreV1Api, namespace: str) -> None:
    for name, labels in [
        ("a", {"app": "kyklos", "tier": "train"}),
        ("b", {"app": "kyklos", "tier": "serve"}),
        ("c", {"app": "other"}),
        ("d", {}),
    ]:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": labels}})


def test_equality_set_and_existence_label_selectors(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    _seed(core, namespace)
    assert _names(
        core.list_namespaced_config_map(namespace, label_selector="app=kyklos").items
    ) == {"a", "b"}
    assert _names(
        core.list_namespaced_config_map(namespace, label_selector="app!=kyklos").items
    ) >= {"c", "d"}
    assert _names(
        core.list_namespaced_config_map(namespace, label_selector="tier in (train,eval)").items
    ) == {"a"}
    assert _names(core.list_namespaced_config_map(namespace, label_selector="tier").items) == {
        "a",
        "b",
    }
    assert _names(core.list_namespaced_config_map(namespace, label_selector="app,!tier").items) == {
        "c"
    }
    assert _names(
        core.list_namespaced_config_map(namespace, label_selector="app=kyklos,tier=serve").items
    ) == {"b"}


def test_field_selectors(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    _seed(core, namespace)
    assert _names(
        core.list_namespaced_config_map(namespace, field_selector="metadata.name=c").items
    ) == {"c"}
    everywhere = core.list_config_map_for_all_namespaces(
        field_selector=f"metadata.namespace={namespace},metadata.name!=a",
        label_selector="app",
    )
    assert _names(everywhere.items) == {"b", "c"}


def test_pod_field_selector_on_node_name_and_phase(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_pod(
        namespace,
        {
            "metadata": {"name": "p"},
            "spec": {
                "nodeName": "no-such-node",
                "containers": [{"name": "c", "image": "conformance/none:1"}],
            },
        },
    )
    on_node = core.list_namespaced_pod(namespace, field_selector="spec.nodeName=no-such-node")
    assert _names(on_node.items) == {"p"}
    assert core.list_namespaced_pod(namespace, field_selector="spec.nodeName=elsewhere").items == []
    pending = core.list_namespaced_pod(namespace, field_selector="status.phase=Pending")
    assert _names(pending.items) == {"p"}
    core.delete_namespaced_pod("p", namespace, grace_period_seconds=0)
