"""TrainingJob stories: wait for the data, train, record lineage and metrics, gate the model.

The real operator runs against the cluster. The trainer is a tiny real Python program passed
with ``python -c`` (so the ``python:3.12`` image runs it unchanged on a real cluster; on the
sandbox the node agent's ``process`` kubelet runs it with the local interpreter). It reads its
hyperparameters, writes a model where ``KYKLOS_MODEL_PATH`` says, and writes its metrics (plus
the distributed env it saw) as JSON to ``$KYKLOS_METRICS_FILE``, its termination message.

The Dataset it trains on is made Ready by the real Dataset controller: on the sandbox from a
CSV file written here (outside /tmp, which worker pods replace with an emptyDir); on a real
cluster from ``KYKLOS_TEST_DATASET_URI``, a URI the cluster's worker pods can read.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kyklos_testing import Kyklos, wait_for

HOST_BASE = Path(os.environ.get("KYKLOS_TEST_HOST_DIR", "/var/tmp"))
DATASET_TIMEOUT = 120.0
TRAIN_TIMEOUT = 120.0
IMMUTABLE = "spec is immutable once the training has started"

TRAINER = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    hp = json.loads(os.environ["KYKLOS_HYPERPARAMETERS"])
    time.sleep(float(hp.get("sleep", "0")))
    rows = -1
    data = os.environ.get("KYKLOS_DATASET_PATH")
    if data and os.path.isfile(data):
        rows = sum(1 for _ in open(data)) - 1
    model = os.environ.get("KYKLOS_MODEL_PATH")
    rank = int(os.environ.get("RANK", "0"))
    if model and rank == 0:
        pathlib.Path(model).mkdir(parents=True, exist_ok=True)
        pathlib.Path(model, "model.json").write_text(json.dumps({"weights": [1, 2, 3]}))
    metrics = {"rows": rows, "rank": rank, "worldSize": int(os.environ["WORLD_SIZE"])}
    if "accuracy" in hp:
        metrics["accuracy"] = float(hp["accuracy"])
    if os.environ.get("MASTER_ADDR"):
        metrics["masterAddr"] = os.environ["MASTER_ADDR"]
        metrics["masterPort"] = int(os.environ["MASTER_PORT"])
    message = hp.get("message") or json.dumps(metrics)
    with open(os.environ["KYKLOS_METRICS_FILE"], "w") as out:
        out.write(message)
    sys.exit(int(hp.get("exit", "0")))
    """
).strip()


# ------------------------------------------------------------------------------ helpers


def trainingjob(name: str, dataset: str = "train-data", **spec: Any) -> dict[str, Any]:
    hyperparameters = spec.pop("hyperparameters", {})
    return {
        "metadata": {"name": name},
        "spec": {
            "datasetRef": {"name": dataset},
            "image": "python:3.12",
            "command": ["python", "-c", TRAINER],
            "hyperparameters": hyperparameters,
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
            **spec,
        },
    }


def wait_phase(
    kyklos: Kyklos, name: str, *phases: str, timeout: float = TRAIN_TIMEOUT
) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        status = kyklos.status("trainingjobs", name)
        return status if status.get("phase") in phases else None

    return wait_for(probe, timeout=timeout, what=f"TrainingJob {name} phase in {phases}")


def ready_reason(kyklos: Kyklos, name: str) -> tuple[str, str, str] | None:
    condition = kyklos.condition("trainingjobs", name, "Ready")
    if condition is None:
        return None
    return condition["status"], condition["reason"], condition.get("message", "")


def jobs_of(k8s: Any, namespace: str, name: str) -> list[Any]:
    from kubernetes import client

    return list(
        client.BatchV1Api(k8s)
        .list_namespaced_job(namespace, label_selector=f"kyklos.io/trainingjob={name}")
        .items
    )


def services_of(k8s: Any, namespace: str, name: str) -> list[Any]:
    from kubernetes import client

    return list(
        client.CoreV1Api(k8s)
        .list_namespaced_service(namespace, label_selector=f"kyklos.io/trainingjob={name}")
        .items
    )


def pods_of(k8s: Any, namespace: str, name: str) -> list[Any]:
    from kubernetes import client

    return list(
        client.CoreV1Api(k8s)
        .list_namespaced_pod(namespace, label_selector=f"kyklos.io/trainingjob={name}")
        .items
    )


def events_of(k8s: Any, namespace: str, name: str) -> list[tuple[str, str, str]]:
    from kubernetes import client

    items = (
        client.CoreV1Api(k8s)
        .list_namespaced_event(
            namespace,
            field_selector=f"involvedObject.kind=TrainingJob,involvedObject.name={name}",
        )
        .items
    )
    return [(e.type, e.reason, e.message or "") for e in items]


def wait_event(k8s: Any, namespace: str, name: str, reason: str) -> list[tuple[str, str, str]]:
    """Wait until an Event ``reason`` about TrainingJob ``name`` exists (posted after the status
    write that announces it); all the Events about it."""
    return wait_for(
        lambda: (
            (events := events_of(k8s, namespace, name))
            and any(e[1] == reason for e in events)
            and events
        ),
        timeout=30,
        what=f"Event {reason} about {name}",
    )


def stays(probe: Callable[[], bool], seconds: float, what: str) -> None:
    """Assert that ``probe`` holds for ``seconds`` (a negative story: nothing happens)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert probe(), what
        time.sleep(0.5)


def termination_messages(pods: list[Any]) -> list[dict[str, Any]]:
    out = []
    for pod in pods:
        for status in pod.status.container_statuses or []:
            terminated = status.state.terminated
            if terminated is not None and terminated.message:
                out.append(json.loads(terminated.message))
    return out


def scrape(port: int) -> dict[str, float]:
    """The operator's Prometheus samples, as {'name{labels}': value} (labels sorted)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}"] = sample.value
    return out


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A fresh directory on the host the sandbox's pods can read and write (outside /tmp)."""
    path = HOST_BASE / f"kyklos-training-{secrets.token_hex(4)}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_operator(
    crds_installed: None, operator: Callable[..., Any], host_dir: Path, cluster: Any
) -> Callable[[], Any]:
    """Starts the real operator with a file:// artifact store under ``host_dir``."""
    env = {
        "KYKLOS_ARTIFACTS_URI": f"file://{host_dir / 'artifacts'}",
        # KUBECONFIG as well as --kubeconfig: kopf's own login reads the environment.
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    return lambda: operator(env)


@pytest.fixture
def kyklos(k8s: Any, namespace: str, start_operator: Callable[[], Any]) -> Kyklos:
    """The operator running; a client for this test's namespace."""
    start_operator()
    return Kyklos(k8s, namespace)


@pytest.fixture
def data_uri(cluster: Any, host_dir: Path) -> str:
    """A URI of 40 CSV rows the Dataset controller's worker pods can read."""
    if not cluster.is_sandbox:
        uri = os.environ.get("KYKLOS_TEST_DATASET_URI")
        if not uri:
            pytest.skip(
                "a real cluster's worker pods cannot read files written by the test: set "
                "KYKLOS_TEST_DATASET_URI to a CSV (columns x,y,label) they can read"
            )
        return uri
    path = host_dir / "train.csv"
    lines = ["x,y,label"] + [f"{i},{(i * 7) % 11},{i % 2}" for i in range(40)]
    path.write_text("\n".join(lines) + "\n")
    return f"file://{path}"


def make_dataset(kyklos: Kyklos, uri: str, name: str = "train-data") -> dict[str, Any]:
    """Create a Dataset and wait until the Dataset controller has made it Ready; its status."""
    kyklos.create(
        "datasets",
        {
            "metadata": {"name": name},
            "spec": {
                "source": {"uri": uri, "format": "csv"},
                "schema": {
                    "features": [
                        {"name": "x", "type": "numeric"},
                        {"name": "y", "type": "numeric"},
                    ],
                    "target": "label",
                },
            },
        },
    )

    def probe() -> dict[str, Any] | None:
        status = kyklos.status("datasets", name)
        return status if status.get("phase") == "Ready" and status.get("version") else None

    return wait_for(probe, timeout=DATASET_TIMEOUT, what=f"Dataset {name} Ready")


# ------------------------------------------------------------------------------ stories


def test_waits_for_the_dataset_then_trains_and_accepts_the_model(
    k8s: Any,
    namespace: str,
    cluster: Any,
    data_uri: str,
    host_dir: Path,
    start_operator: Callable[[], Any],
) -> None:
    operator = start_operator()
    kyklos = Kyklos(k8s, namespace)
    kyklos.create(
        "trainingjobs",
        trainingjob(
            "churn",
            hyperparameters={"accuracy": "0.93"},
            evaluation={"metric": "accuracy", "threshold": 0.9},
        ),
    )
    waiting = wait_for(
        lambda: (r := ready_reason(kyklos, "churn")) and r[1] == "DatasetNotReady" and r,
        timeout=60,
        what="Ready=False DatasetNotReady",
    )
    assert waiting[0] == "False" and "dataset train-data not found" in waiting[2]
    assert kyklos.status("trainingjobs", "churn")["phase"] == "Pending"
    assert jobs_of(k8s, namespace, "churn") == []

    dataset = make_dataset(kyklos, data_uri)  # the Dataset's Ready event starts the training

    status = wait_phase(kyklos, "churn", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status
    assert status["datasetVersion"] == dataset["version"]
    assert status["datasetUri"] == data_uri
    uid = kyklos.get("trainingjobs", "churn")["metadata"]["uid"]
    run = uid.replace("-", "")[:8]
    assert status["run"] == run
    assert (
        status["modelUri"]
        == f"file://{host_dir}/artifacts/{namespace}/TrainingJob/churn/{run}/model"
    )
    assert status["metrics"]["accuracy"] == 0.93
    assert status["metrics"]["worldSize"] == 1
    assert status["evaluation"] == {
        "metric": "accuracy",
        "value": 0.93,
        "threshold": 0.9,
        "accepted": True,
        "verdict": "ThresholdMet",
    }
    assert status["attempts"] == 0 and status["startTime"] <= status["completionTime"]
    (job,) = jobs_of(k8s, namespace, "churn")
    assert status["jobName"] == job.metadata.name
    gate = kyklos.condition("trainingjobs", "churn", "ModelAccepted")
    assert gate is not None
    assert (gate["status"], gate["reason"], gate["message"]) == (
        "True",
        "ThresholdMet",
        "accuracy 0.93 >= 0.9",
    )
    assert ready_reason(kyklos, "churn")[:2] == ("True", "Succeeded")  # type: ignore[index]
    if cluster.is_sandbox:
        assert status["metrics"]["rows"] == 40  # the trainer read the Dataset's file
        model = Path(status["modelUri"].removeprefix("file://")) / "model.json"
        assert json.loads(model.read_text()) == {"weights": [1, 2, 3]}
    reasons = [reason for _, reason, _ in wait_event(k8s, namespace, "churn", "ThresholdMet")]
    for reason in ("DatasetNotReady", "JobCreated", "Succeeded", "ThresholdMet"):
        assert reasons.count(reason) == 1, reasons

    samples = scrape(operator.metrics_port)
    assert samples[f'kyklos_trainings_total{{event="started",namespace="{namespace}"}}'] == 1
    assert samples[f'kyklos_trainings_total{{event="succeeded",namespace="{namespace}"}}'] == 1
    assert (
        samples[
            f'kyklos_training_duration_seconds_count{{namespace="{namespace}",outcome="succeeded"}}'
        ]
        == 1
    )
    assert samples['kyklos_reconciles_total{kind="TrainingJob",outcome="success"}'] >= 3
    assert samples['kyklos_children_created_total{child="Job",kind="TrainingJob"}'] == 1


def test_a_model_below_the_threshold_is_rejected(
    kyklos: Kyklos, k8s: Any, namespace: str, data_uri: str
) -> None:
    make_dataset(kyklos, data_uri)
    kyklos.create(
        "trainingjobs",
        trainingjob(
            "weak",
            hyperparameters={"accuracy": "0.61"},
            evaluation={"metric": "accuracy", "threshold": 0.9},
        ),
    )
    status = wait_phase(kyklos, "weak", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded"
    gate = kyklos.condition("trainingjobs", "weak", "ModelAccepted")
    assert gate is not None
    assert (gate["status"], gate["reason"], gate["message"]) == (
        "False",
        "BelowThreshold",
        "accuracy 0.61 < 0.9",
    )
    assert status["evaluation"]["accepted"] is False
    assert ("Warning", "BelowThreshold", "accuracy 0.61 < 0.9") in wait_event(
        k8s, namespace, "weak", "BelowThreshold"
    )


def test_a_missing_metric_and_invalid_metrics_json_are_reported_not_crashed_on(
    kyklos: Kyklos, k8s: Any, namespace: str, data_uri: str
) -> None:
    make_dataset(kyklos, data_uri)
    kyklos.create(
        "trainingjobs",
        trainingjob("no-auc", evaluation={"metric": "auc", "threshold": 0.7}),
    )
    kyklos.create(
        "trainingjobs",
        trainingjob(
            "garbled",
            hyperparameters={"message": "accuracy: high"},
            evaluation={"metric": "accuracy", "threshold": 0.7},
        ),
    )
    wait_phase(kyklos, "no-auc", "Succeeded")
    gate = kyklos.condition("trainingjobs", "no-auc", "ModelAccepted")
    assert gate is not None and (gate["status"], gate["reason"]) == ("False", "MetricMissing")
    assert "metric auc" in gate["message"]

    status = wait_phase(kyklos, "garbled", "Succeeded")
    assert "metrics" not in status
    events = wait_event(k8s, namespace, "garbled", "MetricsInvalid")
    warnings = [e for e in events if e[1] == "MetricsInvalid"]
    assert len(warnings) == 1 and warnings[0][0] == "Warning"
    assert "not JSON" in warnings[0][2]


def test_failure_after_backoff_limit_counts_attempts(
    kyklos: Kyklos, k8s: Any, namespace: str, data_uri: str
) -> None:
    make_dataset(kyklos, data_uri)
    kyklos.create(
        "trainingjobs",
        trainingjob(
            "crash",
            backoffLimit=1,
            hyperparameters={"exit": "1", "accuracy": "0.99"},
            evaluation={"metric": "accuracy", "threshold": 0.5},
        ),
    )
    status = wait_phase(kyklos, "crash", "Succeeded", "Failed", timeout=180)
    assert status["phase"] == "Failed", status
    assert status["attempts"] == 2
    ready = ready_reason(kyklos, "crash")
    assert ready is not None and ready[:2] == ("False", "BackoffLimitExceeded")
    assert "after 2 failed attempts" in ready[2]
    gate = kyklos.condition("trainingjobs", "crash", "ModelAccepted")
    assert gate is not None and (gate["status"], gate["reason"]) == ("False", "Failed")
    failed_pods = [p for p in pods_of(k8s, namespace, "crash") if p.status.phase == "Failed"]
    assert len(failed_pods) == 2
    assert any(
        e[:2] == ("Warning", "BackoffLimitExceeded")
        for e in wait_event(k8s, namespace, "crash", "BackoffLimitExceeded")
    )


def test_distributed_training_gives_each_index_its_env_and_deletion_cleans_up(
    kyklos: Kyklos, k8s: Any, namespace: str, data_uri: str
) -> None:
    from kubernetes import client

    make_dataset(kyklos, data_uri)
    kyklos.create("trainingjobs", trainingjob("ddp", workers=3, masterPort=23456))
    status = wait_phase(kyklos, "ddp", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded", status

    (job,) = jobs_of(k8s, namespace, "ddp")
    (service,) = services_of(k8s, namespace, "ddp")
    assert job.spec.completion_mode == "Indexed"
    assert job.spec.completions == job.spec.parallelism == 3
    assert service.spec.cluster_ip == "None"
    pods = pods_of(k8s, namespace, "ddp")
    assert len(pods) == 3
    master = f"{job.metadata.name}-0.{service.metadata.name}.{namespace}.svc"
    seen = sorted(termination_messages(pods), key=lambda m: m["rank"])
    assert [(m["rank"], m["worldSize"], m["masterAddr"], m["masterPort"]) for m in seen] == [
        (rank, 3, master, 23456) for rank in range(3)
    ]
    for pod in pods:
        index = pod.metadata.annotations["batch.kubernetes.io/job-completion-index"]
        # MASTER_ADDR is index 0's stable DNS name: hostname <job>-<index> under the Service.
        assert pod.spec.hostname == f"{job.metadata.name}-{index}"
        assert pod.spec.subdomain == service.metadata.name
    assert status["metrics"]["rank"] == 0  # metrics come from index 0

    client.CustomObjectsApi(k8s).delete_namespaced_custom_object(
        "kyklos.io", "v1alpha1", namespace, "trainingjobs", "ddp"
    )
    wait_for(
        lambda: not jobs_of(k8s, namespace, "ddp") and not services_of(k8s, namespace, "ddp"),
        timeout=60,
        what="the Job and the Service to be garbage-collected",
    )
    wait_for(lambda: not pods_of(k8s, namespace, "ddp"), timeout=60, what="the pods to go")


def test_operator_restarted_mid_run_picks_up_without_a_second_job(
    k8s: Any, namespace: str, start_operator: Callable[[], Any], data_uri: str
) -> None:
    first = start_operator()
    kyklos = Kyklos(k8s, namespace)
    make_dataset(kyklos, data_uri)
    kyklos.create(
        "trainingjobs", trainingjob("long", hyperparameters={"sleep": "12", "accuracy": "0.9"})
    )
    wait_phase(kyklos, "long", "Running")
    (job,) = jobs_of(k8s, namespace, "long")
    assert first.stop() == 0

    start_operator()
    status = wait_phase(kyklos, "long", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded"
    (after,) = jobs_of(k8s, namespace, "long")
    assert after.metadata.uid == job.metadata.uid
    reasons = [reason for _, reason, _ in wait_event(k8s, namespace, "long", "Succeeded")]
    assert reasons.count("JobCreated") == 1 and "JobRecreated" not in reasons
    assert reasons.count("Running") == 1 and reasons.count("Succeeded") == 1


def test_a_job_deleted_mid_run_is_recreated_but_not_after_the_end(
    kyklos: Kyklos, k8s: Any, namespace: str, data_uri: str
) -> None:
    from kubernetes import client

    batch = client.BatchV1Api(k8s)
    make_dataset(kyklos, data_uri)
    kyklos.create("trainingjobs", trainingjob("victim", hyperparameters={"sleep": "5"}))
    wait_phase(kyklos, "victim", "Running")
    (job,) = jobs_of(k8s, namespace, "victim")
    batch.delete_namespaced_job(job.metadata.name, namespace, propagation_policy="Background")

    recreated = wait_for(
        lambda: [
            j for j in jobs_of(k8s, namespace, "victim") if j.metadata.uid != job.metadata.uid
        ],
        timeout=60,
        what="a recreated Job",
    )
    assert recreated[0].metadata.name == job.metadata.name
    events = wait_event(k8s, namespace, "victim", "JobRecreated")
    assert next(e for e in events if e[1] == "JobRecreated")[0] == "Warning"
    status = wait_phase(kyklos, "victim", "Succeeded", "Failed")
    assert status["phase"] == "Succeeded"

    batch.delete_namespaced_job(job.metadata.name, namespace, propagation_policy="Background")
    wait_for(lambda: not jobs_of(k8s, namespace, "victim"), timeout=30, what="the Job to go")
    stays(
        lambda: not jobs_of(k8s, namespace, "victim"),
        5,
        "a finished TrainingJob's Job was recreated",
    )
    assert kyklos.status("trainingjobs", "victim")["phase"] == "Succeeded"
    assert [e[1] for e in events_of(k8s, namespace, "victim")].count("JobRecreated") == 1


def test_spec_edits_before_start_are_acted_on_and_rejected_after(
    kyklos: Kyklos, k8s: Any, namespace: str, data_uri: str
) -> None:
    from kubernetes.client.rest import ApiException

    make_dataset(kyklos, data_uri)
    kyklos.create("trainingjobs", trainingjob("held", suspend=True, hyperparameters={"sleep": "3"}))
    wait_for(
        lambda: (r := ready_reason(kyklos, "held")) and r[1] == "Suspended",
        timeout=60,
        what="Ready=False Suspended",
    )
    (job,) = jobs_of(k8s, namespace, "held")
    assert job.spec.suspend is True
    assert "startTime" not in kyklos.status("trainingjobs", "held")

    kyklos.patch("trainingjobs", "held", {"spec": {"suspend": False}})  # accepted: not started
    wait_phase(kyklos, "held", "Running", "Succeeded")
    (job,) = jobs_of(k8s, namespace, "held")
    assert job.spec.suspend is False

    with pytest.raises(ApiException) as rejected:
        kyklos.patch("trainingjobs", "held", {"spec": {"image": "python:3.13"}})
    assert rejected.value.status == 422
    assert IMMUTABLE in rejected.value.body
    assert wait_phase(kyklos, "held", "Succeeded")["phase"] == "Succeeded"
    with pytest.raises(ApiException) as again:
        kyklos.patch("trainingjobs", "held", {"spec": {"hyperparameters": {"sleep": "0"}}})
    assert again.value.status == 422 and IMMUTABLE in again.value.body


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("image", "Not An Image!", "spec.image"),
        ("hyperparameters", {"lr": 0.1}, "spec.hyperparameters"),
        ("workers", 0, "spec.workers"),
    ],
)
def test_the_crd_rejects_malformed_specs(
    kyklos: Kyklos, namespace: str, field: str, value: Any, named: str
) -> None:
    from kubernetes.client.rest import ApiException

    body = trainingjob("bad")
    body["spec"][field] = value
    with pytest.raises(ApiException) as rejected:
        kyklos.create("trainingjobs", body)
    assert rejected.value.status == 422
    assert named in rejected.value.body


def test_bad_input_the_crd_cannot_judge_is_ready_false_without_children(
    kyklos: Kyklos, k8s: Any, namespace: str, data_uri: str
) -> None:
    make_dataset(kyklos, data_uri)
    # requests above limits: only the API server's Job validation knows.
    kyklos.create(
        "trainingjobs",
        trainingjob(
            "greedy",
            workers=2,
            resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
        ),
    )
    kyklos.create("trainingjobs", trainingjob("clash", env={"KYKLOS_MODEL_URI": "s3://mine"}))
    for name, field in (("greedy", "spec.resources"), ("clash", "spec.env.KYKLOS_MODEL_URI")):
        reason = wait_for(
            lambda n=name: (r := ready_reason(kyklos, n)) and r[1] == "InvalidSpec" and r,
            timeout=60,
            what=f"{name}: Ready=False InvalidSpec",
        )
        assert reason[0] == "False" and field in reason[2], reason
        assert jobs_of(k8s, namespace, name) == [] and services_of(k8s, namespace, name) == []
        events = wait_event(k8s, namespace, name, "InvalidSpec")
        assert any(e[:2] == ("Warning", "InvalidSpec") for e in events)
    assert kyklos.status("trainingjobs", "greedy")["phase"] == "Pending"


def wait_ready_reason(kyklos: Kyklos, name: str, reason: str) -> tuple[str, str, str]:
    return wait_for(
        lambda: (r := ready_reason(kyklos, name)) and r[1] == reason and r,
        timeout=60,
        what=f"TrainingJob {name} Ready reason {reason}",
    )


def test_a_trainer_no_node_can_fit_says_why_then_fails_at_its_deadline(
    kyklos: Kyklos, k8s: Any, namespace: str, data_uri: str
) -> None:
    """More CPU than any node has: the real scheduler leaves the pod Unschedulable."""
    make_dataset(kyklos, data_uri)
    kyklos.create(
        "trainingjobs",
        trainingjob("huge", resources={"requests": {"cpu": "1000"}}, activeDeadlineSeconds=20),
    )

    status, _, message = wait_ready_reason(kyklos, "huge", "PodUnschedulable")
    (pod,) = pods_of(k8s, namespace, "huge")
    assert status == "False"
    assert message.startswith(f"Job huge-train: pod {pod.metadata.name} cannot be scheduled: 0/")
    assert "Insufficient cpu" in message
    assert kyklos.status("trainingjobs", "huge")["phase"] in ("Pending", "Running")
    events = wait_event(k8s, namespace, "huge", "PodUnschedulable")
    assert ("Warning", "PodUnschedulable", message) in events

    final = wait_phase(kyklos, "huge", "Succeeded", "Failed", timeout=90)
    assert final["phase"] == "Failed", final
    ready = ready_reason(kyklos, "huge")
    assert ready is not None and ready[1] == "DeadlineExceeded"
    assert f"before that: {message}" in ready[2]
    reasons = [r for _, r, _ in wait_event(k8s, namespace, "huge", "DeadlineExceeded")]
    assert reasons.count("PodUnschedulable") == 1, reasons


@pytest.mark.sandbox_only
def test_a_trainer_whose_storage_secret_is_gone_says_so_and_trains_once_it_is_back(
    kyklos: Kyklos, k8s: Any, namespace: str, data_uri: str
) -> None:
    from kubernetes import client

    core = client.CoreV1Api(k8s)
    secret = {"metadata": {"name": "store-creds"}, "stringData": {"TOKEN": "t"}}
    core.create_namespaced_secret(namespace, secret)
    kyklos.create(
        "datasets",
        {
            "metadata": {"name": "train-data"},
            "spec": {
                "source": {"uri": data_uri, "format": "csv", "secretRef": {"name": "store-creds"}},
                "schema": {"features": [{"name": "x", "type": "numeric"}], "target": "label"},
            },
        },
    )
    wait_for(
        lambda: kyklos.status("datasets", "train-data").get("phase") == "Ready",
        timeout=DATASET_TIMEOUT,
        what="Dataset train-data Ready",
    )
    core.delete_namespaced_secret("store-creds", namespace)
    kyklos.create("trainingjobs", trainingjob("locked", hyperparameters={"accuracy": "0.9"}))

    # The node agent, like a kubelet, keeps the container waiting: CreateContainerConfigError.
    status, _, message = wait_ready_reason(kyklos, "locked", "PodStartFailed")
    (pod,) = pods_of(k8s, namespace, "locked")
    assert status == "False"
    assert message == (
        f"Job locked-train: pod {pod.metadata.name} container trainer cannot start: "
        'CreateContainerConfigError: secret "store-creds" not found'
    )
    assert ("Warning", "PodStartFailed", message) in wait_event(
        k8s, namespace, "locked", "PodStartFailed"
    )

    core.create_namespaced_secret(namespace, secret)
    final = wait_phase(kyklos, "locked", "Succeeded", "Failed")

    assert final["phase"] == "Succeeded", final
    assert final["metrics"]["accuracy"] == 0.9
    reasons = [r for _, r, _ in wait_event(k8s, namespace, "locked", "Succeeded")]
    assert reasons.count("PodStartFailed") == 1, reasons  # not one per pod update or resync
