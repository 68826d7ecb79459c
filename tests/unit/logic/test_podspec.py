"""The pod pieces every builder shares: one restricted profile, claims, the termination path."""

from __future__ import annotations

from pathlib import Path

import yaml

from kyklos.logic import podspec
from kyklos.logic.workerjob import WorkerConfig, build_worker_job

REPO = Path(__file__).resolve().parents[3]


def test_the_chart_runs_the_operator_pod_with_the_same_restricted_profile() -> None:
    values = yaml.safe_load((REPO / "charts" / "kyklos" / "values.yaml").read_text())
    assert values["securityContext"] == podspec.restricted_container_security()
    assert values["podSecurityContext"] == podspec.restricted_pod_security()


def test_the_restricted_profile_for_kyklos_images_and_for_a_users_image() -> None:
    own = podspec.restricted_container_security()
    assert own == {
        "runAsNonRoot": True,
        "runAsUser": 65532,
        "runAsGroup": 65532,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # A user's image keeps its user; the seccomp profile is the pod's.
    assert podspec.restricted_container_security(uid=None) == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert podspec.restricted_pod_security(uid=None) == {
        "seccompProfile": {"type": "RuntimeDefault"}
    }
    assert "fsGroup" not in podspec.restricted_pod_security(fs_group=False)
    # Each call is a fresh dict: a builder changing its copy changes no other pod.
    own["capabilities"]["drop"].append("X")
    assert podspec.restricted_container_security()["capabilities"] == {"drop": ["ALL"]}


def test_claims_are_mounted_under_the_root_each_read_only_or_not() -> None:
    volumes, mounts = podspec.claim_volumes({"models": True, "data.v1": False}, "/mnt/x/")
    assert volumes == [
        {
            "name": "pvc-data-v1",
            "persistentVolumeClaim": {"claimName": "data.v1", "readOnly": False},
        },
        {"name": "pvc-models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}},
    ]
    assert mounts == [
        {"name": "pvc-data-v1", "mountPath": "/mnt/x/data.v1", "readOnly": False},
        {"name": "pvc-models", "mountPath": "/mnt/x/models", "readOnly": True},
    ]


def test_worker_pods_use_the_one_definition() -> None:
    owner = {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "d", "namespace": "ml", "uid": "u"},
    }
    job = build_worker_job(
        owner,
        job_name="d-1",
        component="profile",
        worker_args=["profile"],
        config=WorkerConfig(image="kyklos:dev", artifacts_uri="pvc://art/x"),
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"] == podspec.restricted_pod_security()
    assert pod["containers"][0]["securityContext"] == podspec.restricted_container_security()
    assert pod["containers"][0]["terminationMessagePath"] == podspec.TERMINATION_PATH
    assert WorkerConfig(image="i", artifacts_uri="a").pvc_root == podspec.DEFAULT_PVC_ROOT
