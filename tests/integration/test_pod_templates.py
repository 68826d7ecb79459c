"""Pod templates put Kyklos's pods where a platform team's GPUs are.

The story: one sandbox node is a GPU node (every node advertises a fake `nvidia.com/gpu`
extended resource through the kubelet policy; this one also carries a pool label and a
`NoSchedule` taint only tolerating pods may land under). A TrainingJob and a ModelDeployment
ask for it through their pod templates (`spec.template`, `spec.runtime.template`): node
selector, toleration, one GPU, credentials from a Secret through `envFrom` and a
`secretKeyRef`. The real scheduler places their pods on that node; the trainer, run by the
node agent as a real process, reads the Secret's values through the env the kubelet builds.
A template asking for the host network is refused by the API server naming the field.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kyklos_testing import Kyklos, tiny_dataset, wait_for

from kyklos.sandbox.policy import DEFAULT_POLICY_PATH

pytestmark = pytest.mark.sandbox_only

TIMEOUT = 150.0
GPU = "nvidia.com/gpu"
SERVE = "registry.k8s.io/e2e-test-images/agnhost:2.53"

# Reports, as metrics, whether the Secret's values reached it (never the values themselves).
TRAINER = textwrap.dedent(
    """
    import json, os
    seen = {
        "envFromSeen": float(os.environ.get("API_TOKEN") == "t0ken"),
        "keyRefSeen": float(os.environ.get("HF_TOKEN") == "hf-t0ken"),
        "modelUriSet": float(bool(os.environ.get("KYKLOS_MODEL_URI"))),
    }
    open(os.environ["KYKLOS_METRICS_FILE"], "w").write(json.dumps(seen))
    """
).strip()


@pytest.fixture
def gpu_node(k8s: Any, cluster: Any, kubelet_policy: Any) -> Iterator[tuple[str, str, str]]:
    """(node, pool label value, taint key): the last sandbox node made a tainted GPU node."""
    from kubernetes import client

    with open(DEFAULT_POLICY_PATH) as handle:
        policy = yaml.safe_load(handle)
    policy["nodes"]["extendedResources"] = {GPU: 2}
    policy["rules"] = [
        {"image": "registry.k8s.io/e2e-test-images/agnhost*", "action": "serve", "readyAfter": 0.5},
        *policy["rules"],
    ]
    kubelet_policy(policy)
    core = client.CoreV1Api(k8s)
    node = sorted(n.metadata.name for n in core.list_node().items)[-1]
    pool, taint = f"gpu-{secrets.token_hex(3)}", f"kyklos.test/gpu-{secrets.token_hex(3)}"
    before = core.read_node(node)
    taints = [t.to_dict() for t in before.spec.taints or []]
    core.patch_node(
        node,
        {
            "metadata": {"labels": {"kyklos.test/pool": pool}},
            "spec": {"taints": [*taints, {"key": taint, "value": "true", "effect": "NoSchedule"}]},
        },
    )
    wait_for(
        lambda: (core.read_node(node).status.allocatable or {}).get(GPU) == "2",
        timeout=30,
        what=f"{node} advertises 2 {GPU}",
    )
    try:
        yield node, pool, taint
    finally:
        with contextlib.suppress(Exception):
            current = core.read_node(node)
            kept = [t.to_dict() for t in current.spec.taints or [] if t.key != taint]
            core.patch_node(
                node,
                {
                    "metadata": {"labels": {"kyklos.test/pool": None}},
                    "spec": {"taints": kept or None},
                },
            )


def template(pool: str, taint: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"team": "vision"}},
        "nodeSelector": {"kyklos.test/pool": pool},
        "tolerations": [{"key": taint, "operator": "Exists", "effect": "NoSchedule"}],
        "container": {
            "envFrom": [{"secretRef": {"name": "api"}}],
            "env": [
                {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
            ],
            "resources": {"requests": {GPU: 1}, "limits": {GPU: 1}},
        },
    }


def _pods(k8s: Any, namespace: str, selector: str) -> list[Any]:
    from kubernetes import client

    return list(client.CoreV1Api(k8s).list_namespaced_pod(namespace, label_selector=selector).items)


def _assert_landed(pod: Any, node: str, pool: str, taint: str) -> None:
    assert pod.spec.node_name == node, f"{pod.metadata.name} ran on {pod.spec.node_name}"
    assert pod.spec.node_selector["kyklos.test/pool"] == pool
    assert any(t.key == taint for t in pod.spec.tolerations)
    container = pod.spec.containers[0]
    assert container.resources.limits[GPU] == "1"
    assert [s.secret_ref.name for s in container.env_from if s.secret_ref][-1] == "api"
    assert pod.metadata.labels["team"] == "vision"


def test_training_and_serving_pods_land_on_the_tainted_gpu_node(
    k8s: Any, namespace: str, kyklos: Kyklos, gpu_node: tuple[str, str, str], data_dir: Path
) -> None:
    from kubernetes import client

    node, pool, taint = gpu_node
    core = client.CoreV1Api(k8s)
    for name, data in (("api", {"API_TOKEN": "t0ken"}), ("hf", {"token": "hf-t0ken"})):
        core.create_namespaced_secret(namespace, {"metadata": {"name": name}, "stringData": data})
    tiny_dataset(kyklos, "images", data_dir)
    kyklos.create(
        "trainingjobs",
        {
            "metadata": {"name": "vit"},
            "spec": {
                "datasetRef": {"name": "images"},
                "image": "python:3.12",
                "command": ["python", "-c", TRAINER],
                "template": template(pool, taint),
            },
        },
    )
    status = kyklos.wait_status(
        "trainingjobs", "vit", lambda s: s.get("phase") in ("Succeeded", "Failed"),
        timeout=TIMEOUT, what="training finished",
    )  # fmt: skip
    assert status["phase"] == "Succeeded", status
    seen = {"envFromSeen": 1.0, "keyRefSeen": 1.0, "modelUriSet": 1.0}
    assert seen.items() <= status["metrics"].items(), status["metrics"]
    (pod,) = _pods(k8s, namespace, "kyklos.io/trainingjob=vit")
    _assert_landed(pod, node, pool, taint)
    assert pod.spec.containers[0].env[-1].value_from.secret_key_ref.name == "hf"

    kyklos.create(
        "modeldeployments",
        {
            "metadata": {"name": "vit"},
            "spec": {
                "model": {"uri": status["modelUri"]},
                "runtime": {
                    "image": SERVE,
                    "args": ["netexec", "--http-port=8080"],
                    "healthPath": "/",
                    "template": template(pool, taint),
                },
                "replicas": 2,
                # The server listens on runtime.port itself: no serving proxy in front.
                "observability": {"proxy": False},
            },
        },
    )
    kyklos.wait_status(
        "modeldeployments", "vit", lambda s: s.get("phase") == "Available",
        timeout=TIMEOUT, what="serving Available",
    )  # fmt: skip
    pods = _pods(k8s, namespace, "kyklos.io/modeldeployment=vit")
    assert len([p for p in pods if p.status.phase == "Running"]) == 2
    for pod in pods:
        _assert_landed(pod, node, pool, taint)
    # Both GPUs of the node are now taken: a third replica cannot be scheduled anywhere.
    kyklos.patch("modeldeployments", "vit", {"spec": {"replicas": 3}})

    def unschedulable() -> bool:
        return any(
            c.type == "PodScheduled" and c.status == "False" and GPU in (c.message or "")
            for p in _pods(k8s, namespace, "kyklos.io/modeldeployment=vit")
            for c in p.status.conditions or []
        )

    wait_for(unschedulable, timeout=60, what=f"a third pod waits for a free {GPU}")


@pytest.mark.parametrize(
    ("template", "field"),
    [
        ({"hostNetwork": True}, "spec.template.hostNetwork"),
        ({"container": {"securityContext": {"privileged": True}}},
         "spec.template.container.securityContext.privileged"),
        ({"volumes": [{"name": "tmp", "emptyDir": {}}]}, "spec.template.volumes[0].name"),
        ({"container": {"env": [{"name": "KYKLOS_DATASET_URI", "value": "s3://elsewhere"}]}},
         "spec.template.container.env[0].name"),
    ],
    ids=["hostNetwork", "privileged", "reserved-volume", "reserved-env"],
)  # fmt: skip
def test_a_template_reaching_for_the_host_or_kyklos_names_is_refused_naming_the_field(
    k8s: Any, namespace: str, crds_installed: None, template: dict[str, Any], field: str
) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    body = {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "sneaky"},
        "spec": {"datasetRef": {"name": "d"}, "image": "python:3.12", "template": template},
    }
    with pytest.raises(ApiException) as caught:
        client.CustomObjectsApi(k8s).create_namespaced_custom_object(
            "kyklos.io", "v1alpha1", namespace, "trainingjobs", body
        )
    assert caught.value.status == 422
    message = json.loads(caught.value.body)["message"]
    assert field in message, message
