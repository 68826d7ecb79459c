"""Watch semantics: resume from a resourceVersion, and 410 Gone for one that is too old."""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException
from sandbox_api import GROUP, PLURAL, VERSION, Widgets


def _watch(
    k8s: Any, namespace: str, resource_version: str, timeout: int = 3
) -> list[dict[str, Any]]:
    """Raw watch of ConfigMaps: every event the server sends until its timeout."""
    response = client.CoreV1Api(k8s).list_namespaced_config_map(
        namespace,
        watch=True,
        resource_version=resource_version,
        timeout_seconds=timeout,
        allow_watch_bookmarks=False,
        _preload_content=False,
        _request_timeout=timeout + 10,
    )
    events = []
    for line in response.read().decode().splitlines():
        if line.strip():
            events.append(json.loads(line))
    return events


def _ours(events: list[dict[str, Any]], names: set[str]) -> list[dict[str, Any]]:
    """Events of the test's own objects (the root CA publisher adds kube-root-ca.crt anytime)."""
    return [e for e in events if e["object"].get("metadata", {}).get("name") in names]


def test_watch_resumes_after_a_resource_version(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    first = core.create_namespaced_config_map(namespace, {"metadata": {"name": "a"}})
    resume_from = first.metadata.resource_version
    core.patch_namespaced_config_map("a", namespace, {"data": {"x": "1"}})
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "b"}})
    core.delete_namespaced_config_map("a", namespace)

    events = _ours(_watch(k8s, namespace, resume_from), {"a", "b"})
    seen = [(e["type"], e["object"]["metadata"]["name"]) for e in events]
    # Exactly what happened after `resume_from`, in order; not the creation of `a` itself.
    assert seen == [("MODIFIED", "a"), ("ADDED", "b"), ("DELETED", "a")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)


def test_watch_from_a_too_old_resource_version_is_410_gone(
    k8s: Any, widgets: Widgets, namespace: str
) -> None:
    # Widgets are served by a cache begun when the CRD was made, long after revision 1;
    # (a built-in kind of a cluster started seconds ago may still hold revision 1).
    widgets.create(widgets.body("w"))
    try:
        response = widgets.api.list_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            watch=True,
            resource_version="1",
            timeout_seconds=3,
            _preload_content=False,
            _request_timeout=15,
        )
    except ApiException as exc:  # some servers answer the request itself with 410
        assert exc.status == 410
        return
    events = [json.loads(line) for line in response.read().decode().splitlines() if line]
    # Otherwise the stream carries a single ERROR event with a 410 Status (what kopf handles).
    assert events, "no event at all for a too-old resourceVersion"
    assert events[0]["type"] == "ERROR", events
    assert events[0]["object"]["code"] == 410
    assert events[0]["object"]["reason"] in ("Expired", "Gone")
    assert len(events) == 1


def test_list_returns_a_resource_version_to_watch_from(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "before"}})
    listed = core.list_namespaced_config_map(namespace)
    assert "before" in {c.metadata.name for c in listed.items}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "after"}})
    events = _ours(_watch(k8s, namespace, listed.metadata.resource_version), {"before", "after"})
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "after")]
