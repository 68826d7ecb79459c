# ruff: noqa: F811  (fixtures imported from test_training are parameters here)
"""Champion/challenger stories: a new model replaces the live one only when it beats it.

The real operator runs against the sandbox. The trainer and the evaluator are tiny real Python
programs (``python -c``, run by the node agent's ``process`` kubelet): the trainer writes a
model whose quality is its ``score`` hyperparameter; the evaluator reads the model it is
given (``KYKLOS_MODEL_PATH``) and the data (``KYKLOS_DATASET_PATH``) and reports the model's
score as ``accuracy``. Each story gives the evaluator its own behaviour through env: fail for
one role, write invalid JSON, or wait for a file so that the test can act mid-evaluation.
The champion is a ModelDeployment serving a model file written here (its server image is
scripted ``serve`` by the default kubelet policy).
"""

from __future__ import annotations

import json
import subprocess
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kyklos_testing import Kyklos, wait_for
from test_training import (
    data_uri,  # noqa: F401  (fixture)
    events_of,
    host_dir,  # noqa: F401  (fixture)
    jobs_of,
    make_dataset,
    pods_of,
    ready_reason,
    scrape,
    start_operator,  # noqa: F401  (fixture)
    wait_event,
    wait_phase,
)

pytestmark = [pytest.mark.sandbox_only, pytest.mark.slow]

TIMEOUT = 180.0

TRAINER = textwrap.dedent(
    """
    import json, os, pathlib
    hp = json.loads(os.environ["KYKLOS_HYPERPARAMETERS"])
    model = pathlib.Path(os.environ["KYKLOS_MODEL_PATH"])
    model.mkdir(parents=True, exist_ok=True)
    (model / "model.json").write_text(json.dumps({"score": float(hp["score"])}))
    with open(os.environ["KYKLOS_METRICS_FILE"], "w") as out:
        out.write(json.dumps({"accuracy": float(hp["score"])}))
    """
).strip()

EVALUATOR = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    assert os.environ["KYKLOS_MODE"] == "evaluate"
    role = os.environ["KYKLOS_EVALUATION_ROLE"]
    wait = os.environ.get("WAIT_FOR")
    for _ in range(900):
        if not wait or os.path.exists(wait):
            break
        time.sleep(0.2)
    out = open(os.environ["KYKLOS_METRICS_FILE"], "w")
    if os.environ.get("FAIL_ROLE") == role:
        out.write("cannot load the model")
        sys.exit(3)
    model = json.loads(pathlib.Path(os.environ["KYKLOS_MODEL_PATH"], "model.json").read_text())
    rows = sum(1 for _ in open(os.environ["KYKLOS_DATASET_PATH"])) - 1
    metrics = {"accuracy": model["score"], "rows": rows}
    out.write("{not json" if os.environ.get("INVALID_ROLE") == role else json.dumps(metrics))
    """
).strip()


def champion_model(host_dir: Path, name: str, score: float) -> str:
    """A model file the champion's ModelDeployment serves; its URI."""
    path = host_dir / "models" / name
    path.mkdir(parents=True)
    (path / "model.json").write_text(json.dumps({"score": score}))
    return f"file://{path}"


def deployment(name: str, model: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "runtime": {"image": "registry.test/churn-server:1", "port": 8080},
            "replicas": 1,
            # A scripted server (the kubelet policy's serve) listens nowhere: no proxy.
            "observability": {"proxy": False},
        },
    }


def challenger(
    name: str,
    score: float,
    champion: str,
    *,
    env: dict[str, str] | None = None,
    resources: dict[str, Any] | None = None,
    deadline: int | None = None,
    **gate: Any,
) -> dict[str, Any]:
    """A TrainingJob training a model of quality ``score``, gated against ``champion``."""
    evaluator: dict[str, Any] = {"command": ["python", "-c", EVALUATOR]}
    if env:
        evaluator["env"] = env
    if resources:
        evaluator["resources"] = resources
    spec: dict[str, Any] = {
        "datasetRef": {"name": "train-data"},
        "image": "python:3.12",
        "command": ["python", "-c", TRAINER],
        "hyperparameters": {"score": str(score)},
        "backoffLimit": 0,
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        "evaluation": {
            "metric": "accuracy",
            "threshold": 0.3,
            "compareTo": {"modelDeploymentRef": {"name": champion}},
            "evaluator": evaluator,
            **gate,
        },
    }
    if deadline is not None:
        spec["activeDeadlineSeconds"] = deadline
    return {"metadata": {"name": name}, "spec": spec}


def serving(kyklos: Kyklos, name: str, model: str) -> None:
    kyklos.wait_status(
        "modeldeployments",
        name,
        lambda s: s.get("stableModel") == model,
        timeout=TIMEOUT,
        what=f"ModelDeployment {name} serving {model}",
    )


def verdict(kyklos: Kyklos, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The finished TrainingJob's status and its ModelAccepted condition."""
    status = wait_phase(kyklos, name, "Succeeded", "Failed", timeout=TIMEOUT)
    gate = kyklos.condition("trainingjobs", name, "ModelAccepted")
    assert gate is not None, status
    return status, gate


@pytest.fixture
def ready(
    k8s: Any,
    namespace: str,
    data_uri: str,
    start_operator: Callable[[], Any],
) -> tuple[Kyklos, Any]:
    """The operator running and the Dataset Ready."""
    operator = start_operator()
    kyklos = Kyklos(k8s, namespace)
    make_dataset(kyklos, data_uri)
    return kyklos, operator


# ------------------------------------------------------------------------------ stories


def test_challenger_is_judged_against_the_live_model_on_the_same_data(
    ready: tuple[Kyklos, Any],
    k8s: Any,
    namespace: str,
    host_dir: Path,
    cluster: Any,
) -> None:
    """Better -> BeatsChampion; worse -> NotBetterThanChampion with both values; champion
    scoring fails -> per onChampionError; no champion yet -> threshold only; invalid evaluator
    output -> EvaluationFailed; all scored by the same evaluator on the same dataset version."""
    kyklos, operator = ready
    live = champion_model(host_dir, "live", 0.8)
    kyklos.create("modeldeployments", deployment("churn", {"uri": live}))
    kyklos.create("modeldeployments", deployment("empty", {"fromTrainingJob": "not-trained"}))
    serving(kyklos, "churn", live)
    generation = kyklos.get("modeldeployments", "churn")["metadata"]["generation"]

    kyklos.create("trainingjobs", challenger("better", 0.9, "churn"))
    kyklos.create("trainingjobs", challenger("worse", 0.7, "churn"))
    kyklos.create("trainingjobs", challenger("strict", 0.9, "churn", env={"FAIL_ROLE": "champion"}))
    kyklos.create(
        "trainingjobs",
        challenger(
            "lenient", 0.9, "churn", env={"FAIL_ROLE": "champion"}, onChampionError="ThresholdOnly"
        ),
    )
    kyklos.create("trainingjobs", challenger("first", 0.5, "empty"))
    kyklos.create(
        "trainingjobs", challenger("garbled", 0.9, "churn", env={"INVALID_ROLE": "challenger"})
    )

    status, gate = verdict(kyklos, "better")
    assert (gate["status"], gate["reason"]) == ("True", "BeatsChampion"), gate
    evaluation = status["evaluation"]
    assert evaluation["verdict"] == "BeatsChampion"
    assert evaluation["jobName"] == "better-eval"
    assert evaluation["champion"]["model"] == live
    assert evaluation["champion"]["modelDeployment"] == "churn"
    assert evaluation["champion"]["metrics"] == {"accuracy": 0.8, "rows": 40}
    assert evaluation["challenger"] == {
        "model": status["modelUri"],
        "metrics": {"accuracy": 0.9, "rows": 40},
    }
    assert evaluation["delta"] == pytest.approx(0.1)
    assert evaluation["relativeDelta"] == pytest.approx(0.125)
    assert evaluation["datasetVersion"] == status["datasetVersion"]
    (pod,) = [
        p for p in pods_of(k8s, namespace, "better") if p.metadata.name.startswith("better-eval")
    ]
    assert [c.name for c in pod.spec.containers] == ["challenger", "champion"]
    assert pod.spec.automount_service_account_token is False
    assert pod.spec.security_context.seccomp_profile.type == "RuntimeDefault"
    for container in pod.spec.containers:
        assert container.security_context.allow_privilege_escalation is False
    (eval_job,) = [j for j in jobs_of(k8s, namespace, "better") if j.metadata.name == "better-eval"]
    assert eval_job.metadata.owner_references[0].kind == "TrainingJob"

    status, gate = verdict(kyklos, "worse")
    assert (gate["status"], gate["reason"]) == ("False", "NotBetterThanChampion"), gate
    assert gate["message"].startswith(
        f"accuracy challenger 0.7 vs champion 0.8 ({live}): delta -0.1"
    )
    assert status["evaluation"]["accepted"] is False
    assert ("Warning", "NotBetterThanChampion", gate["message"]) in wait_event(
        k8s, namespace, "worse", "NotBetterThanChampion"
    )

    _, gate = verdict(kyklos, "strict")
    assert (gate["status"], gate["reason"]) == ("False", "ChampionEvaluationFailed"), gate
    assert "container champion exited with code 3: cannot load the model" in gate["message"]
    assert "onChampionError Reject" in gate["message"]
    _, gate = verdict(kyklos, "lenient")
    assert (gate["status"], gate["reason"]) == ("True", "ChampionEvaluationFailed"), gate
    assert gate["message"].endswith("onChampionError ThresholdOnly: accuracy 0.9 >= 0.3")

    status, gate = verdict(kyklos, "first")
    assert (gate["status"], gate["reason"]) == ("True", "NoChampion"), gate
    assert (
        gate["message"]
        == "ModelDeployment empty serves no model yet; threshold only: accuracy 0.5 >= 0.3"
    )
    assert status["evaluation"]["champion"] == {"modelDeployment": "empty"}

    _, gate = verdict(kyklos, "garbled")
    assert (gate["status"], gate["reason"]) == ("False", "EvaluationFailed"), gate
    assert "container challenger: termination message is not JSON" in gate["message"]
    assert any(
        e[:2] == ("Warning", "EvaluationFailed") for e in events_of(k8s, namespace, "garbled")
    )

    # Nobody touched the live ModelDeployment.
    assert kyklos.get("modeldeployments", "churn")["metadata"]["generation"] == generation
    assert kyklos.status("modeldeployments", "churn")["stableModel"] == live
    table = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "get", "tj"],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert "VERDICT" in table.splitlines()[0], table
    assert any(
        " BeatsChampion " in f"{line} " for line in table.splitlines() if line.startswith("better ")
    ), table
    samples = scrape(operator.metrics_port)
    for reason, count in (
        ("BeatsChampion", 1),
        ("NotBetterThanChampion", 1),
        ("ChampionEvaluationFailed", 2),
        ("NoChampion", 1),
        ("EvaluationFailed", 1),
    ):
        key = f'kyklos_evaluations_total{{namespace="{namespace}",verdict="{reason}"}}'
        assert samples[key] == count, (key, samples.get(key))
    assert (
        samples[
            f'kyklos_evaluation_metric_value{{namespace="{namespace}",role="champion",trainingjob="worse"}}'
        ]
        == 0.8
    )


def test_the_champion_compared_is_the_one_serving_when_the_evaluation_started(
    ready: tuple[Kyklos, Any],
    host_dir: Path,
) -> None:
    """The stable model changes during the evaluation: the recorded champion is compared."""
    kyklos, _ = ready
    first = champion_model(host_dir, "first", 0.6)
    second = champion_model(host_dir, "second", 0.95)
    kyklos.create("modeldeployments", deployment("churn", {"uri": first}))
    serving(kyklos, "churn", first)
    go = host_dir / "go"
    kyklos.create("trainingjobs", challenger("racing", 0.7, "churn", env={"WAIT_FOR": str(go)}))
    kyklos.wait_status(
        "trainingjobs",
        "racing",
        lambda s: ((s.get("evaluation") or {}).get("champion") or {}).get("model") == first,
        timeout=TIMEOUT,
        what="the evaluation started against the first model",
    )
    kyklos.patch("modeldeployments", "churn", {"spec": {"model": {"uri": second}}})
    serving(kyklos, "churn", second)
    assert kyklos.status("trainingjobs", "racing")["phase"] == "Running"
    go.touch()
    status, gate = verdict(kyklos, "racing")
    assert (gate["status"], gate["reason"]) == ("True", "BeatsChampion"), gate
    assert status["evaluation"]["champion"]["model"] == first
    assert status["evaluation"]["champion"]["metrics"]["accuracy"] == 0.6


def test_a_missing_champion_waits_and_a_stuck_evaluation_pod_is_explained(
    ready: tuple[Kyklos, Any],
    k8s: Any,
    namespace: str,
    host_dir: Path,
    data_uri: str,
) -> None:
    """compareTo naming a ModelDeployment that does not exist: the training runs, the gate
    waits (Ready=False naming it) and goes on once it exists; so does an evaluation Dataset
    (DatasetNotReady), whose version is then pinned. An evaluation pod that cannot be
    scheduled is explained as a training pod is, and ends EvaluationFailed at the deadline."""
    kyklos, _ = ready
    live = champion_model(host_dir, "live", 0.8)
    kyklos.create("modeldeployments", deployment("present", {"uri": live}))
    kyklos.create("trainingjobs", challenger("patient", 0.9, "later"))
    kyklos.create(
        "trainingjobs", challenger("holdout", 0.9, "present", datasetRef={"name": "holdout"})
    )
    kyklos.create(
        "trainingjobs",
        challenger("huge", 0.9, "present", resources={"requests": {"cpu": "500"}}, deadline=45),
    )
    status, _, message = wait_for(
        lambda: (r := ready_reason(kyklos, "patient")) and r[1] == "ChampionNotFound" and r,
        timeout=TIMEOUT,
        what="Ready=False ChampionNotFound",
    )
    assert status == "False"
    assert (
        "ModelDeployment later (spec.evaluation.compareTo.modelDeploymentRef.name) not found"
        in message
    )
    assert kyklos.status("trainingjobs", "patient")["metrics"] == {"accuracy": 0.9}
    assert not [j for j in jobs_of(k8s, namespace, "patient") if j.metadata.name.endswith("-eval")]

    # It appears (and serves nothing yet when the gate sees it): the gate goes on, threshold only.
    kyklos.create("modeldeployments", deployment("later", {"fromTrainingJob": "not-trained"}))
    _, gate = verdict(kyklos, "patient")
    assert (gate["status"], gate["reason"]) == ("True", "NoChampion"), gate
    assert gate["message"].startswith("ModelDeployment later serves no model yet")

    # The evaluation Dataset is not there yet: the gate waits for it as training waits for its own.
    waiting = wait_for(
        lambda: (r := ready_reason(kyklos, "holdout")) and r[1] == "DatasetNotReady" and r,
        timeout=TIMEOUT,
        what="Ready=False DatasetNotReady for the evaluation Dataset",
    )
    assert "dataset holdout not found" in waiting[2], waiting
    holdout = make_dataset(kyklos, data_uri, name="holdout")
    status, gate = verdict(kyklos, "holdout")
    assert (gate["status"], gate["reason"]) == ("True", "BeatsChampion"), gate
    assert (status["evaluation"]["dataset"], status["evaluation"]["datasetVersion"]) == (
        "holdout",
        holdout["version"],
    )

    stuck = wait_for(
        lambda: (r := ready_reason(kyklos, "huge")) and r[1] == "PodUnschedulable" and r,
        timeout=TIMEOUT,
        what="Ready=False PodUnschedulable for the evaluation pod",
    )
    assert stuck[2].startswith("Job huge-eval: pod huge-eval-"), stuck
    assert kyklos.status("trainingjobs", "huge")["phase"] == "Running"
    _, gate = verdict(kyklos, "huge")
    assert (gate["status"], gate["reason"]) == ("False", "EvaluationFailed"), gate
    assert "before that:" in gate["message"] or "Insufficient cpu" in gate["message"], gate
