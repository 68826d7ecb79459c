"""Patch semantics: JSON merge patch and JSON patch with a `test` precondition; generateName."""

from __future__ import annotations

import pytest
from kubernetes.client.rest import ApiException
from sandbox_api import Widgets

MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def test_merge_patch_sets_and_null_removes(widgets: Widgets) -> None:
    widgets.create(widgets.body("w", color="red", name="n"))
    patched = widgets.patch("w", {"spec": {"color": None, "size": 4}}, MERGE)
    assert "color" not in patched["spec"]
    assert patched["spec"]["size"] == 4
    assert patched["spec"]["name"] == "n"  # untouched


def test_merge_patch_replaces_lists_whole(k8s: object, namespace: str) -> None:
    from kubernetes import client

    core = client.CoreV1Api(k8s)
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "c", "finalizers": ["a.io/x", "b.io/y"]}}
    )
    patched = core.patch_namespaced_config_map(
        "c", namespace, {"metadata": {"finalizers": ["b.io/y"]}}, _content_type=MERGE
    )
    assert patched.metadata.finalizers == ["b.io/y"]
    core.patch_namespaced_config_map(
        "c", namespace, {"metadata": {"finalizers": None}}, _content_type=MERGE
    )


def test_json_patch_test_op_guards_the_change(widgets: Widgets) -> None:
    widgets.create(widgets.body("w", size=1))
    ok = widgets.patch(
        "w",
        [
            {"op": "test", "path": "/spec/size", "value": 1},
            {"op": "replace", "path": "/spec/size", "value": 2},
        ],
        JSON_PATCH,
    )
    assert ok["spec"]["size"] == 2
    with pytest.raises(ApiException) as info:
        widgets.patch(
            "w",
            [
                {"op": "test", "path": "/spec/size", "value": 1},
                {"op": "replace", "path": "/spec/size", "value": 3},
            ],
            JSON_PATCH,
        )
    assert info.value.status == 422
    assert widgets.get("w")["spec"]["size"] == 2


def test_json_patch_resource_version_test_is_optimistic_locking(widgets: Widgets) -> None:
    created = widgets.create(widgets.body("w", size=1))
    rv = created["metadata"]["resourceVersion"]
    widgets.patch("w", {"spec": {"size": 2}}, MERGE)
    with pytest.raises(ApiException) as info:
        widgets.patch(
            "w",
            [
                {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
                {"op": "replace", "path": "/spec/size", "value": 5},
            ],
            JSON_PATCH,
        )
    assert info.value.status == 422  # what kopf expects when its finalizer patch races
    assert widgets.get("w")["spec"]["size"] == 2


def test_generate_name_gives_unique_names(widgets: Widgets) -> None:
    body = widgets.body("", size=1)
    del body["metadata"]["name"]
    body["metadata"]["generateName"] = "w-"
    first = widgets.create(body)["metadata"]["name"]
    second = widgets.create(body)["metadata"]["name"]
    assert first.startswith("w-") and second.startswith("w-")
    assert first != second
    assert len(first) > len("w-")


def test_create_of_an_existing_name_is_a_conflict(widgets: Widgets) -> None:
    widgets.create(widgets.body("w"))
    with pytest.raises(ApiException) as info:
        widgets.create(widgets.body("w"))
    assert info.value.status == 409
