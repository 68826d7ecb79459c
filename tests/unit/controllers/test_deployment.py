"""The ModelDeployment controller's own helpers (the shared machinery is tested in test_runtime)."""

from __future__ import annotations

from kyklos.controllers import deployment as ctrl
from kyklos.controllers import runtime


def test_a_reconcile_of_a_deleted_or_deleting_object_does_nothing() -> None:
    # No body in the index (deleted), or one being deleted: no decision, no API call.
    memory = runtime.Memory()
    empty = ctrl._Indexes({"md_bodies": {}})
    assert ctrl.reconcile_key(("ns", "iris"), empty, memory) is None
    deleting = {"metadata": {"name": "iris", "namespace": "ns", "deletionTimestamp": "x"}}
    ix = ctrl._Indexes({"md_bodies": {("ns", "iris"): [deleting]}})
    assert ctrl.reconcile_key(("ns", "iris"), ix, memory) is None
    assert memory.failures == 0


def test_differs_ignores_server_defaults_but_sees_real_changes() -> None:
    desired = {
        "metadata": {"labels": {"a": "1"}, "ownerReferences": []},
        "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "server"}]}}},
    }
    actual = {
        "metadata": {"labels": {"a": "1", "extra": "x"}},
        "spec": {
            "replicas": 2,
            "progressDeadlineSeconds": 600,
            "template": {"spec": {"containers": [{"name": "server", "imagePullPolicy": "Always"}]}},
        },
    }
    assert not ctrl._differs(desired, actual)
    assert ctrl._differs({**desired, "spec": {**desired["spec"], "replicas": 3}}, actual)
    assert ctrl._differs(desired, None)
