"""The closed loop, end to end: drift -> retrain -> gate -> canary -> promote, or roll back.

Runs the real operator against the sandbox; the node agent's ``process`` kubelet runs the
real ``kyklos worker profile|drift`` and the example trainer (``kyklos.examples.train``).
The model server's image is scripted by the kubelet policy (``serve``, or ``crashloop`` for
the variant where the retrained model's serving pods crash), so that several replicas can
run on one machine without competing for a port.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kyklos_testing import Kyklos

pytestmark = [pytest.mark.sandbox_only, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
FINAL = ("Promoted", "RolledBack", "Rejected", "Failed")
#: Worker pods mount their own emptyDir at /tmp (as real pods do), hiding the host's /tmp:
#: files they read through file:// URIs live elsewhere.
HOST_BASE = Path(os.environ.get("KYKLOS_TEST_HOST_DIR", "/var/tmp"))
KYKLOS_IMAGE = "ghcr.io/kyklos/kyklos:0.1.0"
SERVER_IMAGE = "registry.test/churn-server:1"
FEATURES = [
    {"name": "tenure_months", "type": "numeric"},
    {"name": "monthly_charges", "type": "numeric"},
    {"name": "support_calls", "type": "numeric"},
    {"name": "contract", "type": "categorical"},
    {"name": "payment_method", "type": "categorical"},
]
TRAINER = {
    "image": KYKLOS_IMAGE,
    "command": ["python", "-m", "kyklos.examples.train"],
    "hyperparameters": {"epochs": "200", "learningRate": "0.5"},
    "backoffLimit": 0,
    "evaluation": {"metric": "accuracy", "threshold": 0.5},
}


def policy(server_action: str) -> dict[str, Any]:
    """The default rules, with the model server's image scripted."""
    rule: dict[str, Any] = {"image": "registry.test/churn-server:*", "action": server_action}
    if server_action == "serve":
        rule["readyAfter"] = 0.5
    else:
        rule.update({"exitCode": 1, "duration": 0.2})
    return {
        "crashLoopBackOff": {"initialSeconds": 1, "maxSeconds": 2},
        "rules": [
            rule,
            {"image": "*kyklos*", "action": "process", "entrypoint": ["kyklos"]},
            {
                "image": "*",
                "action": {"Always": "serve", "Never": "succeed", "OnFailure": "succeed"},
            },
        ],
    }


def dataset(name: str, path: Path) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": f"file://{path}", "format": "csv"},
            "schema": {"features": FEATURES, "target": "churned"},
            "validation": {"minRows": 50},
            "profile": {"sampleSize": 500, "bins": 10},
        },
    }


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A directory outside /tmp for data and artifacts, removed afterwards."""
    HOST_BASE.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="kyklos-loop-", dir=HOST_BASE))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def loop(
    cluster: Any,
    k8s: Any,
    namespace: str,
    crds_installed: None,
    operator: Any,
    host_dir: Path,
    kubelet_policy: Any,
) -> Kyklos:
    """Data files, the operator, and a stable model serving: the starting point of the loop."""
    kubelet_policy(policy("serve"))
    data = host_dir / "data"
    data.mkdir()
    for name in ("churn-reference.csv", "churn-current.csv"):
        shutil.copy(REPO / "examples" / "data" / name, data / name)
    operator({"KYKLOS_ARTIFACTS_URI": f"file://{host_dir / 'artifacts'}"})
    ky = Kyklos(k8s, namespace)
    ky.create("datasets", dataset("reference", data / "churn-reference.csv"))
    ky.create("datasets", dataset("current", data / "churn-current.csv"))
    for name in ("reference", "current"):
        ky.wait_status(
            "datasets", name, lambda s: s.get("phase") == "Ready", timeout=180, what="Ready"
        )
    ky.create(
        "trainingjobs",
        {"metadata": {"name": "initial"}, "spec": {"datasetRef": {"name": "reference"}, **TRAINER}},
    )
    ky.wait_status(
        "trainingjobs",
        "initial",
        lambda s: any(
            c["type"] == "ModelAccepted" and c["status"] == "True"
            for c in s.get("conditions") or []
        ),
        timeout=240,
        what="the initial model accepted",
    )
    ky.create(
        "modeldeployments",
        {
            "metadata": {"name": "churn"},
            "spec": {
                "model": {"fromTrainingJob": "initial"},
                "runtime": {"image": SERVER_IMAGE, "port": 8080},
                # A scripted server listens nowhere: no proxy in front of it.
                "observability": {"proxy": False},
                "replicas": 2,
                "strategy": {"type": "Canary", "steps": [{"weight": 50, "pause": "1s"}]},
                "progressDeadlineSeconds": 30,
                "maxCanaryRestarts": 1,
            },
        },
    )
    ky.wait_status(
        "modeldeployments",
        "churn",
        lambda s: s.get("phase") == "Available",
        timeout=180,
        what="the stable model Available",
    )
    return ky


def monitor(current: str, **retrain: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "watch"},
        "spec": {
            "modelDeploymentRef": {"name": "churn"},
            "reference": {"datasetRef": {"name": "reference"}},
            "current": {"datasetRef": {"name": current}},
            "thresholds": {"driftShare": 0.4},
            "interval": "1h",
            "sampleSize": 500,
            "retrain": {
                "template": {"datasetRef": {"name": "reference"}, **TRAINER},
                "useCurrentData": True,
                "cooldown": "1h",
                "maxRetrains": 1,
                "promote": "canary",
                **retrain,
            },
        },
    }


def stable_deployment(k8s: Any, namespace: str) -> Any:
    from kubernetes import client

    return client.AppsV1Api(k8s).read_namespaced_deployment("churn-stable", namespace)


def test_drift_retrains_and_promotes_the_new_model(loop: Kyklos, k8s: Any, namespace: str) -> None:
    ky = loop
    stable_before = ky.status("modeldeployments", "churn")["stableModel"]
    ky.create("driftmonitors", monitor("current"))
    ky.wait_status(
        "driftmonitors",
        "watch",
        lambda s: s.get("drifted") is True,
        timeout=180,
        what="the monitor to detect drift",
    )
    drifted = ky.condition("driftmonitors", "watch", "Drifted")
    assert drifted and drifted["status"] == "True" and "worst" in drifted["message"]
    retrain = ky.wait_status(
        "driftmonitors",
        "watch",
        lambda s: (s.get("lastRetrain") or {}).get("name"),
        timeout=60,
        what="a retraining TrainingJob",
    )["lastRetrain"]["name"]
    assert retrain == "watch-retrain-1"
    tj = ky.get("trainingjobs", retrain)
    assert tj["spec"]["datasetRef"] == {"name": "current"}
    assert tj["metadata"]["ownerReferences"][0]["kind"] == "DriftMonitor"
    outcome = ky.wait_status(
        "driftmonitors",
        "watch",
        lambda s: (s.get("lastRetrain") or {}).get("outcome") in FINAL,
        timeout=400,
        what="the retrained model's rollout to finish",
    )["lastRetrain"]["outcome"]
    assert outcome == "Promoted", ky.status("driftmonitors", "watch")
    # retrain.compareToLive: promoted because it beat the live model on the same current rows.
    gate = ky.status("trainingjobs", retrain)["evaluation"]
    assert gate["verdict"] == "BeatsChampion", gate
    assert gate["champion"]["model"] == stable_before and gate["dataset"] == "current"
    md = ky.status("modeldeployments", "churn")
    assert md["stableModel"] == ky.status("trainingjobs", retrain)["modelUri"] != stable_before
    assert not md.get("canaryModel")
    monitor_status = ky.status("driftmonitors", "watch")
    assert monitor_status["retrainCount"] == 1
    # The serving model learnt the current data: later checks compare against it.
    assert monitor_status["baselineDataset"] == "current"


def test_crash_looping_retrained_model_is_rolled_back_stable_untouched(
    loop: Kyklos, k8s: Any, namespace: str, kubelet_policy: Any
) -> None:
    ky = loop
    stable_before = ky.status("modeldeployments", "churn")["stableModel"]
    template_before = stable_deployment(k8s, namespace).spec.template.to_dict()
    generation_before = stable_deployment(k8s, namespace).metadata.generation
    # From now on, new pods of the serving image crash: the canary of the retrained model.
    kubelet_policy(policy("crashloop"))
    ky.create("driftmonitors", monitor("current"))
    outcome = ky.wait_status(
        "driftmonitors",
        "watch",
        lambda s: (s.get("lastRetrain") or {}).get("outcome") in FINAL,
        timeout=400,
        what="the retrained model's rollout to finish",
    )["lastRetrain"]["outcome"]
    assert outcome == "RolledBack", ky.status("driftmonitors", "watch")
    md = ky.status("modeldeployments", "churn")
    assert md["phase"] == "RolledBack"
    assert md["stableModel"] == stable_before
    stable = stable_deployment(k8s, namespace)
    assert stable.metadata.generation == generation_before
    assert stable.spec.template.to_dict() == template_before


def test_no_drift_window_stays_healthy_and_creates_nothing(loop: Kyklos) -> None:
    ky = loop
    ky.create("driftmonitors", monitor("reference"))
    ky.wait_status(
        "driftmonitors",
        "watch",
        lambda s: s.get("phase") == "Healthy",
        timeout=180,
        what="the monitor Healthy",
    )
    status = ky.status("driftmonitors", "watch")
    assert status["drifted"] is False and status["checks"] == 1
    assert not status.get("lastRetrain")
    assert [t["metadata"]["name"] for t in ky.list("trainingjobs")] == ["initial"]


def test_a_retrained_model_worse_than_the_live_one_is_rejected_live_untouched(
    loop: Kyklos, k8s: Any, namespace: str
) -> None:
    """retrain.compareToLive (the default): the retrained model and the live one are scored by
    the example trainer's evaluate mode on the same current rows; a worse challenger is
    Rejected with both values, and the ModelDeployment is never touched."""
    ky = loop
    stable_before = ky.status("modeldeployments", "churn")["stableModel"]
    md_generation = ky.get("modeldeployments", "churn")["metadata"]["generation"]
    generation_before = stable_deployment(k8s, namespace).metadata.generation
    weak = {
        **TRAINER,
        # One tiny gradient step: a model that barely learnt anything.
        "hyperparameters": {"epochs": "1", "learningRate": "0.01"},
        "evaluation": {"metric": "loss", "threshold": 1.0, "direction": "min"},
    }
    body = monitor("current")
    body["spec"]["retrain"]["template"] = {"datasetRef": {"name": "reference"}, **weak}
    ky.create("driftmonitors", body)
    outcome = ky.wait_status(
        "driftmonitors",
        "watch",
        lambda s: (s.get("lastRetrain") or {}).get("outcome") in FINAL,
        timeout=400,
        what="the retraining to be judged",
    )["lastRetrain"]
    assert outcome["outcome"] == "Rejected", outcome
    assert "challenger" in outcome["message"] and "vs champion" in outcome["message"], outcome
    retrain = ky.status("trainingjobs", "watch-retrain-1")
    assert ky.get("trainingjobs", "watch-retrain-1")["spec"]["evaluation"]["compareTo"] == {
        "modelDeploymentRef": {"name": "churn"},
        "minAbsoluteChange": 0.0,
        "minRelativeChange": 0.0,
    }
    evaluation = retrain["evaluation"]
    assert evaluation["verdict"] == "NotBetterThanChampion"
    assert evaluation["champion"]["model"] == stable_before
    assert evaluation["dataset"] == "current"
    assert evaluation["challenger"]["metrics"]["loss"] > evaluation["champion"]["metrics"]["loss"]
    assert ky.get("modeldeployments", "churn")["metadata"]["generation"] == md_generation
    assert ky.status("modeldeployments", "churn")["stableModel"] == stable_before
    assert stable_deployment(k8s, namespace).metadata.generation == generation_before
