"""The churn example's data, trainer and model server work as the walkthrough says."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kyklos.examples import train
from kyklos.examples.serve import load_model

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / "examples" / "data"
GATE = yaml.safe_load((REPO / "examples" / "trainingjob.yaml").read_text())["spec"]["evaluation"]


def _env(tmp_path: Path, dataset: str, **extra: str) -> dict[str, str]:
    """The env the operator gives a trainer, with the claim kyklos-examples under tmp_path."""
    claim = tmp_path / "pvc" / "kyklos-examples"
    claim.mkdir(parents=True, exist_ok=True)
    (claim / dataset).write_bytes((DATA / dataset).read_bytes())
    return {
        "KYKLOS_PVC_ROOT": str(tmp_path / "pvc"),
        "KYKLOS_DATASET_URI": f"pvc://kyklos-examples/{dataset}",
        "KYKLOS_DATASET_VERSION": "sha256-test",
        "KYKLOS_MODEL_URI": f"file://{tmp_path}/models/run-1/",
        "KYKLOS_HYPERPARAMETERS": json.dumps({"epochs": "400", "learningRate": "0.5"}),
        "KYKLOS_TERMINATION_MESSAGE_PATH": str(tmp_path / "termination-log"),
        **extra,
    }


def test_checked_in_data_is_what_make_data_generates() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "examples" / "make_data.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("dataset", ["churn-reference.csv", "churn-current.csv"])
def test_trainer_passes_the_example_gate(tmp_path: Path, dataset: str) -> None:
    """Trained on either month, the model clears examples/trainingjob.yaml's gate, and the
    termination message is the small metrics JSON the operator reads."""
    env = _env(tmp_path, dataset)
    assert train.main(env) == 0
    message = (tmp_path / "termination-log").read_text()
    assert len(message.encode()) < 4096
    metrics = json.loads(message)
    assert set(metrics) == {"accuracy", "loss"}
    assert metrics[GATE["metric"]] >= GATE["threshold"]
    model = json.loads((tmp_path / "models" / "run-1" / "model.json").read_text())
    assert model["metadata"]["datasetVersion"] == "sha256-test"
    assert [c["name"] for c in model["columns"]] == [
        "tenure_months",
        "monthly_charges",
        "support_calls",
        "contract",
        "payment_method",
    ]


def test_trainer_is_deterministic(tmp_path: Path) -> None:
    first = train.train(_env(tmp_path / "a", "churn-reference.csv"))
    second = train.train(_env(tmp_path / "b", "churn-reference.csv"))
    assert first[1] == second[1] and first[0].weights == second[0].weights


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"KYKLOS_DATASET_URI": ""}, "KYKLOS_DATASET_URI is not set"),
        ({"KYKLOS_MODEL_URI": ""}, "KYKLOS_MODEL_URI is not set"),
        ({"KYKLOS_HYPERPARAMETERS": "{nope"}, "KYKLOS_HYPERPARAMETERS: not JSON"),
        ({"KYKLOS_HYPERPARAMETERS": '{"epochs": "many"}'}, "epochs='many' is not a number"),
        ({"KYKLOS_HYPERPARAMETERS": '{"target": "nope"}'}, "target column 'nope'"),
        ({"KYKLOS_DATASET_URI": "pvc://kyklos-examples/missing.csv"}, "missing.csv: no such file"),
        ({"KYKLOS_DATASET_URI": "s3://bucket/x.csv"}, "file:// and pvc:// URIs only"),
    ],
)
def test_trainer_bad_input_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, str], message: str
) -> None:
    env = _env(tmp_path, "churn-reference.csv", **change)
    assert train.main(env) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.fixture
def model_uri(tmp_path: Path) -> str:
    env = _env(tmp_path, "churn-reference.csv")
    assert train.main(env) == 0
    return env["KYKLOS_MODEL_URI"]


@pytest.fixture
def server(model_uri: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    env = {**os.environ, "KYKLOS_MODEL_URI": model_uri, "KYKLOS_MODEL_VERSION": "v1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "kyklos.examples.serve", "--host", "127.0.0.1", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    match = re.search(r"on 127\.0\.0\.1:(\d+)", line)
    assert match, line
    yield proc, int(match.group(1))
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _request(port: int, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    payload = (
        None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    )
    conn.request(method, path, body=payload, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    data = json.loads(response.read())
    conn.close()
    return response.status, data


def test_server_health_predict_and_sigterm(server: tuple[subprocess.Popen[str], int]) -> None:
    """/healthz is 200 with the version, /predict scores rows, SIGTERM exits 0."""
    proc, port = server
    assert _request(port, "GET", "/healthz") == (
        200,
        {"status": "ok", "model": "churned", "version": "v1"},
    )
    loyal = {
        "tenure_months": 70,
        "monthly_charges": 40,
        "support_calls": 0,
        "contract": "two-year",
        "payment_method": "credit-card",
    }
    leaving = {
        "tenure_months": 1,
        "monthly_charges": 110,
        "support_calls": 6,
        "contract": "month-to-month",
        "payment_method": "electronic-check",
    }
    status, body = _request(port, "POST", "/predict", {"rows": [loyal, leaving]})
    assert status == 200
    assert body["predictions"] == [0, 1]
    assert body["probabilities"][0] < 0.2 < 0.8 < body["probabilities"][1]
    status, body = _request(port, "POST", "/predict", [{"tenure_months": "long"}])
    assert status == 400 and "tenure_months='long' is not a number" in body["error"]
    status, body = _request(port, "POST", "/predict", b"{not json")
    assert status == 400 and "not JSON" in body["error"]
    assert _request(port, "GET", "/nope")[0] == 404
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_server_without_a_model_exits_with_one_line(tmp_path: Path) -> None:
    """A missing model is a crash (never Ready), with one line naming the URI."""
    env = {**os.environ, "KYKLOS_MODEL_URI": f"file://{tmp_path}/absent/model.json"}
    result = subprocess.run(
        [sys.executable, "-m", "kyklos.examples.serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "absent/model.json" in lines[0]


def test_load_model_rejects_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "model.json"
    path.write_text(json.dumps({"format": "sklearn-pickle"}))
    with pytest.raises(ValueError, match="not a kyklos-example-logistic-regression/v1 model"):
        load_model(str(path))


def test_example_programs_import_only_stdlib_numpy_and_themselves() -> None:
    """The example programs read as user code: no kopf, no Kubernetes client, no Kyklos
    internals -- only the standard library, NumPy and kyklos.examples."""
    import ast

    allowed_roots = set(sys.stdlib_module_names) | {"numpy", "__future__"}
    package = REPO / "operator" / "kyklos" / "examples"
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                ok = name.split(".")[0] in allowed_roots or name.startswith("kyklos.examples")
                assert ok, f"{path.name} imports {name}"


def test_evaluate_mode_scores_a_model_on_the_same_held_out_rows(tmp_path: Path) -> None:
    """KYKLOS_MODE=evaluate reproduces the trainer's own test metrics on its dataset (same
    seeded split), scores another month's rows with the same model, and fails clearly."""
    env = _env(tmp_path, "churn-reference.csv")
    assert train.main(env) == 0
    trained = json.loads((tmp_path / "termination-log").read_text())
    evaluate = {**env, "KYKLOS_MODE": "evaluate"}
    assert train.main(evaluate) == 0
    scored = json.loads((tmp_path / "termination-log").read_text())
    assert (scored["accuracy"], scored["loss"]) == (trained["accuracy"], trained["loss"])
    assert scored["rows"] > 0
    # No model is written in evaluate mode; a missing model is exit 1, not a crash.
    missing = {**evaluate, "KYKLOS_MODEL_URI": f"file://{tmp_path}/nowhere/"}
    assert train.main(missing) == 1
    assert not (tmp_path / "nowhere").exists()


def test_server_honours_kyklos_server_port_and_injected_faults(model_uri: str) -> None:
    """KYKLOS_SERVER_PORT picks the port; the fault variables make it misbehave on purpose."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **os.environ,
        "KYKLOS_MODEL_URI": model_uri,
        "KYKLOS_SERVER_PORT": str(port),
        "PORT": "1",
        "KYKLOS_EXAMPLE_ERROR_RATE": "0.2",
        "KYKLOS_EXAMPLE_CONSTANT_PREDICTION": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "kyklos.examples.serve", "--host", "127.0.0.1"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        assert f"127.0.0.1:{port}" in proc.stderr.readline()
        row = {
            "tenure_months": 70,
            "monthly_charges": 40,
            "support_calls": 0,
            "contract": "two-year",
            "payment_method": "credit-card",
        }
        answers = [_request(port, "POST", "/predict", {"rows": [row]}) for _ in range(10)]
        assert [s for s, _ in answers].count(500) == 2
        assert all(b["predictions"] == [1] for s, b in answers if s == 200)
    finally:
        proc.kill()
        proc.wait()
