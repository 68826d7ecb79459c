"""The subset comparison that makes `apply` write nothing when nothing differs."""

from __future__ import annotations

from kyklos.controllers.client import DATASETS, JOBS, PODS, is_subset


def test_server_defaults_are_not_differences() -> None:
    desired = {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}
    actual = {
        "replicas": 2,
        "revisionHistoryLimit": 10,
        "template": {
            "spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Always"}]}
        },
    }
    assert is_subset(desired, actual)


def test_real_differences_are() -> None:
    assert not is_subset({"replicas": 3}, {"replicas": 2})
    assert not is_subset({"args": ["a", "b"]}, {"args": ["a"]})
    assert not is_subset({"env": {"A": "1"}}, {})


def test_paths() -> None:
    assert JOBS.path("ns", "j") == "/apis/batch/v1/namespaces/ns/jobs/j"
    assert PODS.path(None) == "/api/v1/pods"
    assert (
        DATASETS.path("ns", "d", "status")
        == "/apis/kyklos.io/v1alpha1/namespaces/ns/datasets/d/status"
    )
