"""CRD validation: OpenAPI schema, defaults, pruning and CEL rules enforced by the API server."""

from __future__ import annotations

import json

import pytest
from kubernetes.client.rest import ApiException
from sandbox_api import Widgets


def _rejected(exc: ApiException) -> str:
    assert exc.status == 422, exc
    return json.loads(exc.body)["message"]


def test_cel_rule_rejects_with_its_message(widgets: Widgets) -> None:
    with pytest.raises(ApiException) as info:
        widgets.create(widgets.body("w", size=20, maxSize=10))
    assert "size must not exceed maxSize" in _rejected(info.value)
    assert widgets.list()["items"] == []


def test_cel_transition_rule_makes_a_field_immutable(widgets: Widgets) -> None:
    widgets.create(widgets.body("w", name="first"))
    with pytest.raises(ApiException) as info:
        widgets.patch("w", {"spec": {"name": "second"}}, "application/merge-patch+json")
    assert "name is immutable" in _rejected(info.value)
    assert widgets.get("w")["spec"]["name"] == "first"


def test_schema_rejects_enum_and_minimum_violations_naming_the_field(widgets: Widgets) -> None:
    with pytest.raises(ApiException) as info:
        widgets.create(widgets.body("w", color="purple"))
    assert "spec.color" in _rejected(info.value)
    with pytest.raises(ApiException) as info:
        widgets.create(widgets.body("w", size=-1))
    assert "spec.size" in _rejected(info.value)


def test_defaults_are_applied_and_unknown_fields_pruned(widgets: Widgets) -> None:
    created = widgets.create(widgets.body("w", color="red", unknownField="dropped"))
    assert created["spec"]["size"] == 1
    assert created["spec"]["maxSize"] == 10
    assert "unknownField" not in created["spec"]
    assert "unknownField" not in widgets.get("w")["spec"]


def test_server_side_dry_run_validates_without_persisting(widgets: Widgets) -> None:
    dry = widgets.create(widgets.body("w", size=2), dry_run="All")
    assert dry["spec"]["size"] == 2
    assert dry["spec"]["maxSize"] == 10  # defaulted, as a real create would be
    assert widgets.list()["items"] == []
    with pytest.raises(ApiException) as info:
        widgets.create(widgets.body("w", size=99), dry_run="All")
    assert "size must not exceed maxSize" in _rejected(info.value)


def test_server_side_dry_run_on_builtin_kinds(k8s: object, namespace: str) -> None:
    from kubernetes import client

    apps = client.AppsV1Api(k8s)
    bad = {
        "metadata": {"name": "d"},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {
                "metadata": {"labels": {"app": "other"}},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        },
    }
    with pytest.raises(ApiException) as info:
        apps.create_namespaced_deployment(namespace, bad, dry_run="All")
    assert "selector" in _rejected(info.value)
    good = dict(bad)
    good["spec"] = {**bad["spec"], "template": {**bad["spec"]["template"]}}
    good["spec"]["template"]["metadata"] = {"labels": {"app": "a"}}
    dry = apps.create_namespaced_deployment(namespace, good, dry_run="All")
    assert dry.spec.replicas == 1  # defaulted by the server
    assert apps.list_namespaced_deployment(namespace).items == []
