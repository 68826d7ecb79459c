"""Status subresource and generation: what Kyklos's status writes and observedGeneration rely on."""

from __future__ import annotations

from typing import Any

from sandbox_api import Widgets


def test_main_resource_update_ignores_status(widgets: Widgets) -> None:
    widgets.create(widgets.body("w", size=1))
    obj = widgets.get("w")
    obj["status"] = {"phase": "FromMainEndpoint"}
    obj["spec"]["size"] = 2
    updated = widgets.replace(obj)
    assert updated["spec"]["size"] == 2
    assert "status" not in updated or updated["status"].get("phase") != "FromMainEndpoint"


def test_status_subresource_ignores_spec(widgets: Widgets) -> None:
    widgets.create(widgets.body("w", size=1))
    patched = widgets.patch_status("w", {"spec": {"size": 5}, "status": {"phase": "Ready"}})
    assert patched["status"]["phase"] == "Ready"
    assert patched["spec"]["size"] == 1
    assert widgets.get("w")["spec"]["size"] == 1


def test_generation_bumps_only_on_spec_change(widgets: Widgets) -> None:
    created = widgets.create(widgets.body("w", size=1))
    assert created["metadata"]["generation"] == 1

    after_status = widgets.patch_status(
        "w", {"status": {"phase": "Ready", "observedGeneration": 1}}
    )
    assert after_status["metadata"]["generation"] == 1

    after_label = widgets.patch(
        "w", {"metadata": {"labels": {"a": "b"}}}, "application/merge-patch+json"
    )
    assert after_label["metadata"]["generation"] == 1

    after_spec = widgets.patch("w", {"spec": {"size": 3}}, "application/merge-patch+json")
    assert after_spec["metadata"]["generation"] == 2
    # A spec "change" to the same value is no change.
    same = widgets.patch("w", {"spec": {"size": 3}}, "application/merge-patch+json")
    assert same["metadata"]["generation"] == 2


def test_resource_version_changes_on_every_write_and_not_on_noop(widgets: Widgets) -> None:
    created = widgets.create(widgets.body("w", size=1))
    rv0 = created["metadata"]["resourceVersion"]
    noop = widgets.patch("w", {"spec": {"size": 1}}, "application/merge-patch+json")
    assert noop["metadata"]["resourceVersion"] == rv0
    changed = widgets.patch("w", {"spec": {"size": 2}}, "application/merge-patch+json")
    assert changed["metadata"]["resourceVersion"] != rv0


def test_stale_resource_version_update_is_a_conflict(widgets: Widgets) -> None:
    from kubernetes.client.rest import ApiException

    widgets.create(widgets.body("w", size=1))
    stale: dict[str, Any] = widgets.get("w")
    widgets.patch("w", {"spec": {"size": 2}}, "application/merge-patch+json")
    stale["spec"]["size"] = 3
    try:
        widgets.replace(stale)
    except ApiException as exc:
        assert exc.status == 409
    else:
        raise AssertionError("an update with a stale resourceVersion was accepted")
