"""MLflow registry sync against a real `mlflow server` (SQLite backend, loopback).

Two stories. First the alias rules, driven through the controller's MLflow calls with the
statuses a rollout writes: two trainings become runs and registered versions; a canary of
the second makes it `challenger`; its promotion makes it `champion` and removes
`challenger`; a canary of a third that is rolled back removes `challenger` and leaves the
champion. Then the real operator: a TrainingJob with `spec.registry` becomes a run and a
version; the registry goes down mid-way and the next TrainingJob still trains, its
`RegistrySynced=False` naming the cause; when MLflow is back it is recorded.

(The sandbox serves no S3, and MLflow refuses `file://` and `http://` version sources, so
the ModelDeployment side is driven by its statuses rather than a live rollout here.)
"""

from __future__ import annotations

import os
import secrets
import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kyklos_testing import Kyklos, wait_for

from mlflow_tool import MlflowServer, MlflowUnavailableError, free_port

mlflow = pytest.importorskip("mlflow", reason="the registry tests need kyklos[mlflow]")

HOST_BASE = Path(os.environ.get("KYKLOS_TEST_HOST_DIR", "/var/tmp"))
TIMEOUT = 240.0
TRAINER = textwrap.dedent(
    """
    import json, os
    hp = json.loads(os.environ["KYKLOS_HYPERPARAMETERS"])
    open(os.environ["KYKLOS_METRICS_FILE"], "w").write(json.dumps({"auc": float(hp["auc"])}))
    """
).strip()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"), free_port())
    try:
        server.start()
    except MlflowUnavailableError as exc:
        pytest.fail(f"cannot start a real mlflow server: {exc}")
    try:
        yield server
    finally:
        server.stop()


def _client(server: MlflowServer) -> Any:
    from kyklos.controllers.registry import _mlflow_client

    return _mlflow_client(server.uri)


def _trainingjob(uid: str, model: str, auc: float, name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": uid, "namespace": "ml", "uid": uid},
        "spec": {
            "datasetRef": {"name": "churn-data"},
            "image": "trainer:1",
            "hyperparameters": {"auc": str(auc)},
            "registry": {"name": name},
        },
        "status": {
            "phase": "Succeeded",
            "modelUri": model,
            "datasetVersion": "etag:7",
            "metrics": {"auc": auc},
            "conditions": [{"type": "ModelAccepted", "status": "True"}],
        },
    }


def _deployment(name: str, **status: Any) -> dict[str, Any]:
    return {"spec": {"registry": {"name": name}}, "status": status}


def test_train_register_canary_champion_and_rollback(mlflow_server: MlflowServer) -> None:
    from kyklos.controllers.registry import sync_deployment, sync_trainingjob

    mc = _client(mlflow_server)
    name = f"churn-{secrets.token_hex(3)}"
    m1, m2, m3 = (f"s3://models/churn/r{i}" for i in (1, 2, 3))
    recorded = {}
    for uid, model, auc in (("tj-1", m1, 0.81), ("tj-2", m2, 0.88), ("tj-3", m3, 0.9)):
        body = _trainingjob(uid, model, auc, name)
        recorded[model] = sync_trainingjob(mc, body)
        body["status"]["registry"] = recorded[model]
        assert sync_trainingjob(mc, body) is None  # recorded once
    assert [recorded[m]["version"] for m in (m1, m2, m3)] == ["1", "2", "3"]
    version = mc.get_model_version(name, "2")
    assert version.source == m2 and version.run_id == recorded[m2]["runId"]
    run = mc.get_run(recorded[m2]["runId"])
    assert run.data.params == {"auc": "0.88"} and run.data.metrics == {"auc": 0.88}
    assert run.data.tags["kyklos.dataset"] == "churn-data"
    assert run.data.tags["kyklos.dataset_version"] == "etag:7"
    assert run.data.tags["kyklos.trainingjob_uid"] == "tj-2"
    assert run.data.tags["kyklos.image"] == "trainer:1"

    def aliases() -> dict[str, str]:
        return dict(mc.get_registered_model(name).aliases)

    serving = _deployment(name, stableModel=m1, history=[{"model": m1, "outcome": "Promoted"}])
    status, _ = sync_deployment(mc, serving)
    assert aliases() == {"champion": "1"} and status["version"] == "1"
    canary = _deployment(
        name, stableModel=m1, canaryModel=m2, history=[{"model": m2, "outcome": "InProgress"}]
    )
    sync_deployment(mc, canary)
    assert aliases() == {"champion": "1", "challenger": "2"}
    promoted = _deployment(name, stableModel=m2, history=[{"model": m2, "outcome": "Promoted"}])
    status, message = sync_deployment(mc, promoted)
    assert aliases() == {"champion": "2"} and status["runId"] == recorded[m2]["runId"]
    assert message == f"{name}: champion=2"
    sync_deployment(
        mc,
        _deployment(
            name, stableModel=m2, canaryModel=m3, history=[{"model": m3, "outcome": "InProgress"}]
        ),
    )
    assert aliases() == {"champion": "2", "challenger": "3"}
    sync_deployment(
        mc, _deployment(name, stableModel=m2, history=[{"model": m3, "outcome": "RolledBack"}])
    )
    assert aliases() == {"champion": "2"}


# ------------------------------------------------------------------- through the operator


@pytest.fixture
def host_dir() -> Iterator[Path]:
    path = HOST_BASE / f"kyklos-registry-{secrets.token_hex(4)}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _synced(kyklos: Kyklos, name: str) -> dict[str, Any] | None:
    return kyklos.condition("trainingjobs", name, "RegistrySynced")


def test_the_operator_records_trainings_and_survives_a_registry_outage(
    k8s: Any,
    namespace: str,
    crds_installed: None,
    operator: Any,
    cluster: Any,
    host_dir: Path,
    mlflow_server: MlflowServer,
) -> None:
    operator(
        {
            "KYKLOS_ARTIFACTS_URI": f"file://{host_dir / 'artifacts'}",
            "KUBECONFIG": str(cluster.kubeconfig),
            "KYKLOS_MLFLOW_TRACKING_URI": mlflow_server.uri,
            "KYKLOS_REGISTRY_RETRY_SECONDS": "2",
        }
    )
    kyklos = Kyklos(k8s, namespace)
    data = host_dir / "train.csv"
    data.write_text("x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(20)))
    kyklos.create(
        "datasets",
        {
            "metadata": {"name": "d"},
            "spec": {
                "source": {"uri": f"file://{data}", "format": "csv"},
                "schema": {"features": [{"name": "x", "type": "numeric"}], "target": "label"},
            },
        },
    )
    registered = f"churn-{secrets.token_hex(3)}"

    def train(name: str, auc: str) -> None:
        kyklos.create(
            "trainingjobs",
            {
                "metadata": {"name": name},
                "spec": {
                    "datasetRef": {"name": "d"},
                    "image": "python:3.12",
                    "command": ["python", "-c", TRAINER],
                    "hyperparameters": {"auc": auc},
                    "output": {"modelUri": "s3://models/{namespace}/{name}/{run}"},
                    "registry": {"name": registered},
                },
            },
        )

    train("first", "0.8")
    first = kyklos.wait_status(
        "trainingjobs", "first", lambda s: (s.get("registry") or {}).get("version"),
        timeout=TIMEOUT, what="registered",
    )  # fmt: skip
    assert first["phase"] == "Succeeded" and first["registry"]["name"] == registered
    synced = _synced(kyklos, "first")
    assert synced is not None and synced["status"] == "True"
    mc = _client(mlflow_server)
    version = mc.get_model_version(registered, first["registry"]["version"])
    assert version.source == first["modelUri"]
    run = mc.get_run(first["registry"]["runId"])
    assert run.data.metrics == {"auc": 0.8}
    assert run.data.tags["kyklos.dataset_version"] == first["datasetVersion"]
    uid = kyklos.get("trainingjobs", "first")["metadata"]["uid"]
    assert run.data.tags["kyklos.trainingjob_uid"] == uid

    # The registry goes down: training goes on, the condition says why.
    mlflow_server.stop()
    train("second", "0.9")
    down = wait_for(
        lambda: (c := _synced(kyklos, "second")) and c["status"] == "False" and c,
        timeout=TIMEOUT,
        what="RegistrySynced=False while MLflow is down",
    )
    assert down["reason"] == "RegistryUnavailable"
    assert f"127.0.0.1:{mlflow_server.port}" in down["message"]
    assert kyklos.status("trainingjobs", "second")["phase"] == "Succeeded"

    mlflow_server.start()  # same database: recovery records what was missed
    second = kyklos.wait_status(
        "trainingjobs", "second", lambda s: (s.get("registry") or {}).get("version"),
        timeout=TIMEOUT, what="registered after the outage",
    )  # fmt: skip
    assert int(second["registry"]["version"]) == int(first["registry"]["version"]) + 1
    recovered = _synced(kyklos, "second")
    assert recovered is not None and recovered["status"] == "True"


def test_a_registry_name_without_a_tracking_uri_is_explained(
    k8s: Any, namespace: str, crds_installed: None, operator: Any
) -> None:
    operator()  # no KYKLOS_MLFLOW_TRACKING_URI
    kyklos = Kyklos(k8s, namespace)
    kyklos.create(
        "modeldeployments",
        {
            "metadata": {"name": "churn"},
            "spec": {
                "model": {"uri": "pvc://models/churn/1"},
                "runtime": {"image": "registry.test/serve:1"},
                "registry": {"name": "churn"},
            },
        },
    )
    condition = wait_for(
        lambda: kyklos.condition("modeldeployments", "churn", "RegistrySynced"),
        timeout=60,
        what="RegistrySynced on a ModelDeployment with spec.registry",
    )
    assert (condition["status"], condition["reason"]) == ("False", "RegistryNotConfigured")
    assert "KYKLOS_MLFLOW_TRACKING_URI" in condition["message"]
