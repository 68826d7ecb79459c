"""Fixtures for the conformance suite: the throwaway Widget CRD and helpers bound to a namespace."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sandbox_api import (  # free_port: `from conftest import free_port` works from either
    GROUP,
    KIND,
    PLURAL,
    VERSION,
    WIDGET_CRD,
    Widgets,
    free_port,
    wait_gone,
)

__all__ = ["free_port"]


@pytest.fixture(scope="session")
def widget_crd(k8s: Any) -> Iterator[dict[str, str]]:
    """Install the throwaway Widget CRD for the session and wait until it is served."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ext = client.ApiextensionsV1Api(k8s)
    name = WIDGET_CRD["metadata"]["name"]
    with contextlib.suppress(ApiException):
        ext.delete_custom_resource_definition(name)
        wait_gone(lambda: ext.read_custom_resource_definition(name))
    ext.create_custom_resource_definition(WIDGET_CRD)
    deadline = time.monotonic() + 60
    while True:
        crd = ext.read_custom_resource_definition(name)
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        if conditions.get("Established") == "True":
            break
        assert time.monotonic() < deadline, f"CRD {name} not Established: {conditions}"
        time.sleep(0.1)
    # Established means the storage is ready; discovery and the handler follow within moments.
    custom = client.CustomObjectsApi(k8s)
    while True:
        try:
            custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)
            break
        except ApiException as exc:
            assert exc.status == 404 and time.monotonic() < deadline, exc
            time.sleep(0.1)
    try:
        yield {"group": GROUP, "version": VERSION, "plural": PLURAL, "kind": KIND}
    finally:
        with contextlib.suppress(ApiException):
            ext.delete_custom_resource_definition(name)


@pytest.fixture
def widgets(k8s: Any, widget_crd: dict[str, str], namespace: str) -> Widgets:
    """Helpers for Widget objects in the test's namespace."""
    return Widgets(k8s, namespace)
