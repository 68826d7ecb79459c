"""Deletion semantics: finalizers and deletionTimestamp, and ownerReference garbage collection."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from sandbox_api import Widgets, gone, wait_for

MERGE = "application/merge-patch+json"


def test_finalizer_holds_deletion_until_removed(widgets: Widgets) -> None:
    body = widgets.body("w", size=1)
    body["metadata"]["finalizers"] = ["conformance.kyklos.io/hold"]
    widgets.create(body)
    widgets.delete("w")
    held = widgets.get("w")
    assert held["metadata"]["deletionTimestamp"]
    assert held["metadata"]["finalizers"] == ["conformance.kyklos.io/hold"]
    # Status can still be written while the object is terminating (what kopf's handlers do).
    assert widgets.patch_status("w", {"status": {"phase": "Deleting"}})["status"]["phase"]
    widgets.patch("w", {"metadata": {"finalizers": None}}, MERGE)
    wait_for(lambda: gone(lambda: widgets.get("w")), what="widget gone after finalizer removal")


def test_no_new_finalizers_once_deleting(widgets: Widgets) -> None:
    body = widgets.body("w")
    body["metadata"]["finalizers"] = ["conformance.kyklos.io/a"]
    widgets.create(body)
    widgets.delete("w")
    with pytest.raises(ApiException) as info:
        widgets.patch(
            "w",
            {"metadata": {"finalizers": ["conformance.kyklos.io/a", "conformance.kyklos.io/b"]}},
            MERGE,
        )
    assert info.value.status == 422
    widgets.patch("w", {"metadata": {"finalizers": None}}, MERGE)


def _owned_config_map(
    core: client.CoreV1Api, namespace: str, name: str, owner: dict[str, Any], block: bool = False
) -> None:
    ref = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "blockOwnerDeletion": block,
    }
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": name, "ownerReferences": [ref]}, "data": {"k": "v"}}
    )


def test_background_deletion_collects_children(k8s: Any, widgets: Widgets, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    owner = widgets.create(widgets.body("owner"))
    _owned_config_map(core, namespace, "child-1", owner)
    _owned_config_map(core, namespace, "child-2", owner)
    widgets.delete("owner", propagation_policy="Background")
    assert gone(lambda: widgets.get("owner"))
    for child in ("child-1", "child-2"):
        wait_for(
            lambda c=child: gone(lambda: core.read_namespaced_config_map(c, namespace)),
            what=f"garbage collection of {child}",
            timeout=90,  # the collector notices a new CRD on its 30 s discovery resync
        )


def test_foreground_deletion_removes_children_before_owner(
    k8s: Any, widgets: Widgets, namespace: str
) -> None:
    core = client.CoreV1Api(k8s)
    owner = widgets.create(widgets.body("owner"))
    # A finalizer on the child keeps it around so the owner's waiting state can be observed.
    _owned_config_map(core, namespace, "child", owner, block=True)
    core.patch_namespaced_config_map(
        "child", namespace, {"metadata": {"finalizers": ["conformance.kyklos.io/hold"]}}
    )
    widgets.delete("owner", propagation_policy="Foreground")
    waiting = widgets.get("owner")
    assert waiting["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in waiting["metadata"]["finalizers"]
    wait_for(
        lambda: core.read_namespaced_config_map("child", namespace).metadata.deletion_timestamp,
        timeout=90,
        what="the garbage collector deleting the child first",
    )
    assert widgets.get("owner")["metadata"]["deletionTimestamp"]  # still waits for the child
    core.patch_namespaced_config_map(
        "child", namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )
    wait_for(lambda: gone(lambda: widgets.get("owner")), what="owner gone after its child")


def test_orphan_deletion_keeps_children_and_drops_the_reference(
    k8s: Any, widgets: Widgets, namespace: str
) -> None:
    core = client.CoreV1Api(k8s)
    owner = widgets.create(widgets.body("owner"))
    _owned_config_map(core, namespace, "child", owner)
    widgets.delete("owner", propagation_policy="Orphan")
    wait_for(lambda: gone(lambda: widgets.get("owner")), what="owner gone")
    wait_for(
        lambda: not core.read_namespaced_config_map("child", namespace).metadata.owner_references,
        timeout=90,
        what="ownerReference removed from the orphan",
    )


def test_child_with_a_missing_owner_is_collected(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    ghost = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "ghost", "uid": "00000000-0000-0000-0000-000000000001"},
    }
    _owned_config_map(core, namespace, "child", ghost)
    wait_for(
        lambda: gone(lambda: core.read_namespaced_config_map("child", namespace)),
        what="collection of a child whose owner never existed",
    )
