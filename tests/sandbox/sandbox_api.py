"""Helpers for the conformance suite: a throwaway CRD (not a Kyklos one) and API wrappers.

tests/ is not a package; pytest puts this directory on sys.path, so tests import `sandbox_api`.
"""

from __future__ import annotations

import os
import time
from typing import Any

# The long-running server image of the pod tests: nginx on the node agent and on any cluster
# that can pull it; on the real node, where no registry reaches this machine, the small web
# server image `kyklos image web` builds from the local Debian base (the session loads it).
WEB_IMAGE = (
    "localhost/kyklos/web:bookworm"
    if os.environ.get("KYKLOS_TEST_NODE") == "real" and not os.environ.get("KYKLOS_TEST_KUBECONFIG")
    else "nginx:1.27"
)

GROUP = "conformance.sandbox.kyklos.io"
VERSION = "v1"
PLURAL = "widgets"
KIND = "Widget"

WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": f"{PLURAL}.{GROUP}"},
    "spec": {
        "group": GROUP,
        "scope": "Namespaced",
        "names": {
            "plural": PLURAL,
            "singular": "widget",
            "kind": KIND,
            "listKind": "WidgetList",
            "shortNames": ["wdg"],
            "categories": ["conformance"],
        },
        "versions": [
            {
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "minimum": 0, "default": 1},
                                    "maxSize": {"type": "integer", "default": 10},
                                    "color": {"type": "string", "enum": ["red", "green", "blue"]},
                                    "name": {
                                        "type": "string",
                                        "x-kubernetes-validations": [
                                            {
                                                "rule": "self == oldSelf",
                                                "message": "name is immutable",
                                            }
                                        ],
                                    },
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.size <= self.maxSize",
                                        "message": "size must not exceed maxSize",
                                    }
                                ],
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "phase": {"type": "string"},
                                    "observedGeneration": {"type": "integer"},
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def wait_gone(read: Any, timeout: float = 60.0) -> None:
    from kubernetes.client.rest import ApiException

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            read()
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        time.sleep(0.1)
    raise AssertionError("object still exists")


def wait_for(predicate: Any, timeout: float = 60.0, interval: float = 0.1, what: str = "") -> Any:
    """Poll ``predicate`` until it returns something truthy; return it (fail after timeout)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what or predicate} (last: {last!r})"
    )


def gone(read: Any) -> bool:
    """True when ``read()`` raises 404."""
    from kubernetes.client.rest import ApiException

    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return True
        raise
    return False


class Widgets:
    """Thin wrapper over CustomObjectsApi for the Widget CRD in one namespace."""

    def __init__(self, k8s: Any, namespace: str) -> None:
        from kubernetes import client

        self.api = client.CustomObjectsApi(k8s)
        self.namespace = namespace

    def body(self, name: str, /, **spec: Any) -> dict[str, Any]:
        return {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": KIND,
            "metadata": {"name": name},
            "spec": spec,
        }

    def create(self, body: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self.api.create_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURAL, body, **kwargs
        )

    def get(self, name: str) -> dict[str, Any]:
        return self.api.get_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURAL, name
        )

    def replace(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.api.replace_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURAL, body["metadata"]["name"], body
        )

    def patch(self, name: str, patch: Any, content_type: str, **kwargs: Any) -> dict[str, Any]:
        return self.api.patch_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            patch,
            _content_type=content_type,
            **kwargs,
        )

    def patch_status(self, name: str, patch: Any) -> dict[str, Any]:
        return self.api.patch_namespaced_custom_object_status(  # type: ignore[no-any-return]
            GROUP,
            VERSION,
            self.namespace,
            PLURAL,
            name,
            patch,
            _content_type="application/merge-patch+json",
        )

    def delete(self, name: str, **kwargs: Any) -> Any:
        return self.api.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, **kwargs
        )

    def list(self, **kwargs: Any) -> dict[str, Any]:
        return self.api.list_namespaced_custom_object(  # type: ignore[no-any-return]
            GROUP, VERSION, self.namespace, PLURAL, **kwargs
        )


def raw_get(k8s: Any, path: str) -> Any:
    """GET an API path with the client's credentials; the decoded JSON body."""
    import json

    method, url, headers, _body, _post = k8s.param_serialize(
        "GET", path, header_params={"Accept": "application/json"}, auth_settings=["BearerToken"]
    )
    response = k8s.call_api(method, url, headers)
    response.read()
    assert response.status == 200, (path, response.status, response.data[:500])
    return json.loads(response.data)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
