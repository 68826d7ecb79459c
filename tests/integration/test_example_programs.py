"""The churn example's programs run as pods: the trainer as a Job reading and writing a claim,
the model server as a Deployment that becomes Ready and answers /predict.

This is the contract the example manifests rely on (the operator builds pods like these);
it runs on the sandbox, whose kubelet runs ``*kyklos*`` images as local processes and whose
claims are local directories the test can fill with examples/data.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = "ghcr.io/kyklos/kyklos:0.1.0"
CLAIM = "kyklos-examples"
PVC_ROOT = "/mnt/kyklos/pvc"

pytestmark = pytest.mark.sandbox_only


def _wait(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout:.0f}s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _pod_template(container: dict[str, Any], restart: str) -> dict[str, Any]:
    container["volumeMounts"] = [{"name": "data", "mountPath": f"{PVC_ROOT}/{CLAIM}"}]
    container["env"] = [{"name": "KYKLOS_PVC_ROOT", "value": PVC_ROOT}, *container["env"]]
    return {
        "spec": {
            "restartPolicy": restart,
            "containers": [container],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": CLAIM}}],
        }
    }


@pytest.fixture
def example_claim(cluster: Any, k8s: Any, namespace: str) -> Path:
    """The claim kyklos-examples holding examples/data (what `make run` prepares)."""
    from kubernetes import client

    core = client.CoreV1Api(k8s)
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": CLAIM},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "100Mi"}},
            },
        },
    )

    def bound() -> str | None:
        claim = core.read_namespaced_persistent_volume_claim(CLAIM, namespace)
        return claim.spec.volume_name if claim.status.phase == "Bound" else None

    volume = _wait(bound, 60, "the claim was not Bound")
    directory = Path(core.read_persistent_volume(volume).spec.host_path.path)
    for csv in (REPO / "examples" / "data").glob("*.csv"):
        (directory / csv.name).write_bytes(csv.read_bytes())
    return directory


def test_trainer_job_and_server_deployment(k8s: Any, namespace: str, example_claim: Path) -> None:
    from kubernetes import client

    batch, apps, core = client.BatchV1Api(k8s), client.AppsV1Api(k8s), client.CoreV1Api(k8s)
    model_uri = f"pvc://{CLAIM}/models/churn-train-1/run-1/"
    trainer = {
        "name": "trainer",
        "image": IMAGE,
        "command": ["python", "-m", "kyklos.examples.train"],
        "env": [
            {"name": "KYKLOS_DATASET_URI", "value": f"pvc://{CLAIM}/churn-reference.csv"},
            {"name": "KYKLOS_MODEL_URI", "value": model_uri},
            {"name": "KYKLOS_HYPERPARAMETERS", "value": '{"epochs": "400"}'},
        ],
    }
    batch.create_namespaced_job(
        namespace,
        {
            "metadata": {"name": "train"},
            "spec": {"backoffLimit": 0, "template": _pod_template(trainer, "Never")},
        },
    )

    def finished() -> Any:
        pods = core.list_namespaced_pod(namespace, label_selector="job-name=train").items
        for pod in pods:
            for status in pod.status.container_statuses or []:
                if status.state.terminated:
                    return status.state.terminated
        return None

    terminated = _wait(finished, 120, "the trainer did not finish")
    assert terminated.exit_code == 0, terminated.message
    metrics = json.loads(terminated.message)
    assert metrics["accuracy"] >= 0.75 and metrics["loss"] > 0
    assert (example_claim / "models" / "churn-train-1" / "run-1" / "model.json").is_file()

    port = _free_port()
    server = {
        "name": "server",
        "image": IMAGE,
        "command": ["python", "-m", "kyklos.examples.serve"],
        "args": ["--port", str(port)],
        "env": [{"name": "KYKLOS_MODEL_URI", "value": model_uri}],
        "ports": [{"containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 1},
    }
    template = _pod_template(server, "Always")
    template["metadata"] = {"labels": {"app": "churn-model"}}
    apps.create_namespaced_deployment(
        namespace,
        {
            "metadata": {"name": "churn-model"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "churn-model"}},
                "template": template,
            },
        },
    )

    def ready() -> bool:
        status = apps.read_namespaced_deployment_status("churn-model", namespace).status
        return (status.ready_replicas or 0) == 2

    _wait(ready, 120, "the model server replicas did not become Ready")
    row = {
        "tenure_months": 1,
        "monthly_charges": 110,
        "support_calls": 6,
        "contract": "month-to-month",
        "payment_method": "electronic-check",
    }
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/predict",
        data=json.dumps({"rows": [row]}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
    assert body["predictions"] == [1] and body["version"] == model_uri
