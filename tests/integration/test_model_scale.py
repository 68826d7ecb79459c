"""A ModelDeployment scales like a Deployment: `kubectl scale` and an HPA use its /scale.

The story: a model serves on one replica; the on-call engineer runs
`kubectl scale mdep/<name> --replicas 3` and the stable Deployment follows, with
`status.replicas` and `status.selector` telling a scaler how many pods serve and which.
Then the team hands the count to their own HorizontalPodAutoscaler (what KEDA creates too)
targeting the ModelDeployment itself: with a floor above the current count it scales the
ModelDeployment up through the scale subresource, and the operator follows.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from kyklos_testing import Kyklos, wait_for

PLURAL = "modeldeployments"
SERVE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
TIMEOUT = 90


@pytest.fixture
def kyklos(k8s: Any, namespace: str, crds_installed: None, operator: Any) -> Kyklos:
    operator()
    return Kyklos(k8s, namespace)


def _stable_replicas(k8s: Any, namespace: str, name: str) -> int | None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        deployment = client.AppsV1Api(k8s).read_namespaced_deployment(f"{name}-stable", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return int(deployment.spec.replicas)


def test_kubectl_scale_and_an_hpa_on_the_scale_subresource(
    cluster: Any, k8s: Any, namespace: str, kyklos: Kyklos
) -> None:
    from kubernetes import client

    kyklos.create(
        PLURAL,
        {
            "metadata": {"name": "iris"},
            "spec": {
                "model": {"uri": "file:///models/iris/1"},  # a path: no download
                "runtime": {"image": SERVE, "args": ["netexec", "--http-port=8080"], "port": 8080},
                "replicas": 1,
                # The server listens on runtime.port itself: no serving proxy in front.
                "observability": {"proxy": False},
            },
        },
    )
    status = kyklos.wait_status(
        PLURAL, "iris", lambda s: s.get("phase") == "Available", timeout=TIMEOUT, what="Available"
    )
    assert status["replicas"] == 1
    selector = status["selector"]
    pods = client.CoreV1Api(k8s).list_namespaced_pod(namespace, label_selector=selector).items
    assert [p.metadata.labels["kyklos.io/modeldeployment"] for p in pods] == ["iris"]

    scaled = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace,
         "scale", "mdep/iris", "--replicas", "3"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert scaled.returncode == 0, scaled.stderr
    assert kyklos.get(PLURAL, "iris")["spec"]["replicas"] == 3
    wait_for(
        lambda: _stable_replicas(k8s, namespace, "iris") == 3,
        timeout=TIMEOUT,
        what="iris-stable follows kubectl scale to 3 replicas",
    )
    kyklos.wait_status(
        PLURAL,
        "iris",
        lambda s: s.get("replicas") == 3 and s.get("readyReplicas") == 3,
        timeout=TIMEOUT,
        what="status.replicas and readyReplicas 3",
    )
    scale = client.CustomObjectsApi(k8s).get_namespaced_custom_object_scale(
        "kyklos.io", "v1alpha1", namespace, PLURAL, "iris"
    )
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert scale["status"]["selector"] == selector

    # A user's HPA targets the ModelDeployment. Below its floor it scales up through /scale
    # before it needs any metric (the sandbox runs no metrics server).
    client.AutoscalingV2Api(k8s).create_namespaced_horizontal_pod_autoscaler(
        namespace,
        {
            "metadata": {"name": "iris"},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "kyklos.io/v1alpha1", "kind": "ModelDeployment", "name": "iris",
                },
                "minReplicas": 4,
                "maxReplicas": 6,
                "metrics": [{"type": "Resource", "resource": {
                    "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80},
                }}],
            },
        },
    )  # fmt: skip
    wait_for(
        lambda: kyklos.get(PLURAL, "iris")["spec"]["replicas"] == 4,
        timeout=TIMEOUT,
        what="the HPA scales the ModelDeployment to its minReplicas 4",
    )
    wait_for(
        lambda: _stable_replicas(k8s, namespace, "iris") == 4,
        timeout=TIMEOUT,
        what="iris-stable follows the HPA to 4 replicas",
    )
