"""The real controllers and scheduler: Jobs and Deployments make pods, pods land on nodes."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from sandbox_api import gone, wait_for


def _job(name: str, image: str = "busybox:1.36", completions: int = 1) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "completions": completions,
            "parallelism": completions,
            "completionMode": "Indexed",
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{"name": "main", "image": image, "command": ["true"]}],
                }
            },
        },
    }


def _pods_of_job(core: client.CoreV1Api, namespace: str, job: str) -> list[Any]:
    return core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items  # type: ignore[no-any-return]


def test_job_controller_creates_indexed_pods_owned_by_the_job(k8s: Any, namespace: str) -> None:
    batch, core = client.BatchV1Api(k8s), client.CoreV1Api(k8s)
    job = batch.create_namespaced_job(namespace, _job("j", completions=2))
    pods = wait_for(
        lambda: len(_pods_of_job(core, namespace, "j")) == 2 and _pods_of_job(core, namespace, "j"),
        what="the Job controller creating two pods",
    )
    indexes = sorted(
        p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods
    )
    assert indexes == ["0", "1"]
    for pod in pods:
        (owner,) = pod.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == ("Job", "j", job.metadata.uid)
        assert owner.controller is True


def test_deleting_a_job_collects_its_pods(k8s: Any, namespace: str) -> None:
    batch, core = client.BatchV1Api(k8s), client.CoreV1Api(k8s)
    batch.create_namespaced_job(namespace, _job("j"))
    wait_for(lambda: _pods_of_job(core, namespace, "j"), what="the Job's pod")
    batch.delete_namespaced_job("j", namespace, propagation_policy="Background")
    wait_for(lambda: not _pods_of_job(core, namespace, "j"), what="the Job's pods collected")


def test_deployment_controller_makes_a_replicaset_and_pods(k8s: Any, namespace: str) -> None:
    apps, core = client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "d"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "d"}},
                "template": {
                    "metadata": {"labels": {"app": "d"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx:1"}]},
                },
            },
        },
    )
    rs = wait_for(
        lambda: apps.list_namespaced_replica_set(namespace, label_selector="app=d").items,
        what="the ReplicaSet",
    )[0]
    assert rs.metadata.owner_references[0].kind == "Deployment"
    wait_for(
        lambda: len(core.list_namespaced_pod(namespace, label_selector="app=d").items) == 2,
        what="two pods of the Deployment",
    )
    apps.patch_namespaced_deployment_scale("d", namespace, {"spec": {"replicas": 1}})
    wait_for(
        lambda: (
            len(
                [
                    p
                    for p in core.list_namespaced_pod(namespace, label_selector="app=d").items
                    if not p.metadata.deletion_timestamp
                ]
            )
            == 1
        ),
        what="scale down to one pod",
    )


def test_service_account_controller_and_token_request(k8s: Any, namespace: str) -> None:
    core = client.CoreV1Api(k8s)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "robot"}})
    token = core.create_namespaced_service_account_token(
        "robot", namespace, {"spec": {"expirationSeconds": 600}}
    ).status.token
    review = client.AuthenticationV1Api(k8s).create_token_review({"spec": {"token": token}})
    assert review.status.authenticated is True
    assert review.status.user.username == f"system:serviceaccount:{namespace}:robot"
    cm = wait_for(
        lambda: (
            not gone(lambda: core.read_namespaced_config_map("kube-root-ca.crt", namespace))
            and core.read_namespaced_config_map("kube-root-ca.crt", namespace)
        ),
        what="the root CA ConfigMap published into the namespace",
    )
    assert "BEGIN CERTIFICATE" in cm.data["ca.crt"]


def test_kubernetes_service_has_the_first_service_ip(k8s: Any) -> None:
    svc = client.CoreV1Api(k8s).read_namespaced_service("kubernetes", "default")
    assert svc.spec.cluster_ip
    assert svc.spec.ports[0].port == 443


@pytest.mark.sandbox_only
def test_job_pod_is_scheduled_to_a_sandbox_node_and_completes(k8s: Any, namespace: str) -> None:
    batch, core = client.BatchV1Api(k8s), client.CoreV1Api(k8s)
    batch.create_namespaced_job(namespace, _job("j"))
    pod = wait_for(
        lambda: next((p for p in _pods_of_job(core, namespace, "j") if p.spec.node_name), None),
        what="the scheduler binding the Job's pod",
    )
    assert pod.spec.node_name.startswith("sandbox-node-")

    def complete() -> Any:
        job = batch.read_namespaced_job_status("j", namespace)
        conditions = {c.type: c.status for c in (job.status.conditions or [])}
        return conditions.get("Complete") == "True" and job

    # The Job controller sets SuccessCriteriaMet first and Complete once the pod is accounted.
    done = wait_for(complete, timeout=120, what="the Job Complete")
    assert done.status.succeeded == 1
    assert not done.status.failed


@pytest.mark.sandbox_only
def test_nodes_are_ready_and_schedulable(k8s: Any) -> None:
    nodes = [
        n
        for n in client.CoreV1Api(k8s).list_node().items
        if n.metadata.name.startswith("sandbox-node-")
    ]
    assert nodes
    for node in nodes:
        ready = {c.type: c.status for c in node.status.conditions}["Ready"]
        assert ready == "True"
        assert not node.spec.unschedulable
        assert not [t for t in (node.spec.taints or []) if t.effect == "NoSchedule"]
