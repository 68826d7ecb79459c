"""The shared worker Job builder: restricted pods, PVC mounts, credentials only by reference."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kyklos.logic.podspec import claim_of, volume_name
from kyklos.logic.workerjob import WorkerConfig, build_worker_job

OWNER: dict[str, Any] = {
    "apiVersion": "kyklos.io/v1alpha1",
    "kind": "DriftMonitor",
    "metadata": {"name": "churn", "namespace": "ml", "uid": "u-1", "generation": 1},
}
CONFIG = WorkerConfig(
    image="ghcr.io/kyklos/kyklos:1.0",
    artifacts_uri="pvc://kyklos-artifacts/store",
    resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    pvc_root="/mnt/kyklos/pvc",
)
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def build(**kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "job_name": "churn-check-1",
        "component": "drift-check",
        "worker_args": ["drift", "--check-id", "1"],
        "config": CONFIG,
    }
    args.update(kwargs)
    return build_worker_job(OWNER, **args)


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = pod_of(job)["containers"][0]
    return container


def test_worker_runs_the_kyklos_cli_with_an_explicit_command_and_the_configured_image() -> None:
    container = container_of(build())
    assert container["image"] == "ghcr.io/kyklos/kyklos:1.0"
    assert container["command"] == ["kyklos", "worker", "drift", "--check-id", "1"]
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "1Gi"},
    }
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"


def test_worker_pod_meets_the_restricted_pod_security_profile() -> None:
    job = build()
    pod, container = pod_of(job), container_of(job)
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 65532
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # A read-only root needs a writable /tmp.
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp == {"name": "tmp", "emptyDir": {}}
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_worker_pod_has_no_api_credentials_and_never_restarts_or_expires() -> None:
    job = build()
    pod = pod_of(job)
    assert pod["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod
    assert pod["restartPolicy"] == "Never"
    assert job["spec"]["backoffLimit"] == 0
    assert "ttlSecondsAfterFinished" not in job["spec"]
    with_sa = build(config=WorkerConfig(**{**CONFIG.__dict__, "service_account": "kyklos-worker"}))
    assert pod_of(with_sa)["serviceAccountName"] == "kyklos-worker"


def test_job_and_pod_carry_the_kyklos_labels_and_the_owner_reference() -> None:
    job = build(annotations={"kyklos.io/check": "1"})
    labels = {
        "app.kubernetes.io/managed-by": "kyklos",
        "app.kubernetes.io/part-of": "kyklos",
        "kyklos.io/driftmonitor": "churn",
        "app.kubernetes.io/component": "drift-check",
    }
    assert job["metadata"]["labels"] == labels
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert job["metadata"]["namespace"] == "ml"
    assert job["metadata"]["annotations"] == {"kyklos.io/check": "1"}
    (ref,) = job["metadata"]["ownerReferences"]
    assert ref["uid"] == "u-1" and ref["kind"] == "DriftMonitor" and ref["controller"] is True


def test_pvc_sources_are_mounted_read_only_and_the_artifact_claim_writable() -> None:
    job = build(read_uris=["pvc://data/raw/x.csv", "file:///tmp/y.csv", "pvc://data/other.csv"])
    pod, container = pod_of(job), container_of(job)
    claims = {
        v["persistentVolumeClaim"]["claimName"]: v["persistentVolumeClaim"]["readOnly"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"data": True, "kyklos-artifacts": False}
    mounts = {m["mountPath"]: m.get("readOnly") for m in container["volumeMounts"]}
    assert mounts["/mnt/kyklos/pvc/data"] is True
    assert mounts["/mnt/kyklos/pvc/kyklos-artifacts"] is False
    assert {"name": "KYKLOS_PVC_ROOT", "value": "/mnt/kyklos/pvc"} in container["env"]


def test_a_claim_both_read_and_written_is_mounted_once_writable() -> None:
    job = build(read_uris=["pvc://kyklos-artifacts/data.csv"])
    pvcs = [v for v in pod_of(job)["volumes"] if "persistentVolumeClaim" in v]
    assert len(pvcs) == 1
    assert pvcs[0]["persistentVolumeClaim"]["readOnly"] is False


def test_non_pvc_artifact_store_mounts_no_claim() -> None:
    job = build(config=WorkerConfig(image="img", artifacts_uri="s3://bucket/kyklos"))
    assert [v["name"] for v in pod_of(job)["volumes"]] == ["tmp"]


def test_credentials_arrive_only_as_secret_references_artifacts_secret_first() -> None:
    config = WorkerConfig(image="img", artifacts_uri="s3://b", artifacts_secret="store-creds")
    job = build(config=config, secret_refs=["data-creds", "store-creds"])
    container = container_of(job)
    assert container["envFrom"] == [
        {"secretRef": {"name": "store-creds"}},
        {"secretRef": {"name": "data-creds"}},
    ]
    assert all("valueFrom" not in e for e in container["env"])
    assert "envFrom" not in container_of(build())


def test_malformed_pvc_uri_is_rejected_naming_the_field() -> None:
    with pytest.raises(ValueError, match=r"source\.uri: 'pvc:///x.csv'"):
        build(read_uris=["pvc:///x.csv"])
    with pytest.raises(ValueError, match="artifacts URI"):
        build(config=WorkerConfig(image="img", artifacts_uri="pvc://Bad_Claim/x"))
    assert claim_of("s3://bucket/x") is None
    assert claim_of("pvc://my.claim/a/b") == "my.claim"


@pytest.mark.parametrize("claim", ["data", "my.claim.v2", "c" * 253])
def test_volume_names_are_dns_labels(claim: str) -> None:
    name = volume_name(claim)
    assert len(name) <= 63 and DNS_LABEL.match(name)
    assert volume_name(claim) == name  # deterministic


def test_active_deadline_and_backoff_are_passed_through() -> None:
    job = build(backoff_limit=2, active_deadline_seconds=600)
    assert job["spec"]["backoffLimit"] == 2
    assert job["spec"]["activeDeadlineSeconds"] == 600
