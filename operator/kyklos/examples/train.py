"""The churn example's trainer: ``python -m kyklos.examples.train``.

Reads the Kyklos trainer contract from the environment:

- ``KYKLOS_DATASET_URI``: the CSV to train on (``file://``, ``pvc://<claim>/<path>`` under
  ``$KYKLOS_PVC_ROOT`` (default /mnt/kyklos/pvc), or a plain path);
- ``KYKLOS_MODEL_URI``: where to write the model JSON (a directory URI gets model.json);
- ``KYKLOS_HYPERPARAMETERS``: JSON object of strings -- ``target`` (default churned),
  ``learningRate`` (0.5), ``epochs`` (400), ``l2`` (0.001), ``testFraction`` (0.25),
  ``seed`` (0);
- ``KYKLOS_DATASET_VERSION``: recorded in the model's metadata (lineage).

Fits a logistic regression on a seeded split, writes the model, and reports
``{"accuracy": ..., "loss": ...}`` on the held-out rows as its termination message
(``$KYKLOS_TERMINATION_MESSAGE_PATH``, default /dev/termination-log; well under 4 KiB),
which the operator copies into the TrainingJob's status and its evaluation gate. Exit 1
with one line on stderr for bad input.

With ``KYKLOS_MODE=evaluate`` (the evaluator contract of a TrainingJob's evaluation gate) it
trains nothing: it loads the model at ``KYKLOS_MODEL_URI`` and reports the same metrics on
the held-out rows of ``KYKLOS_DATASET_URI`` (the same seeded split, ``seed`` and
``testFraction``), so a champion and a challenger are scored on exactly the same rows.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kyklos.examples.model import (
    DataError,
    Model,
    encode,
    fit,
    infer_columns,
    log_loss,
    read_csv,
    sigmoid,
)
from kyklos.examples.uris import UriError, local_path, model_file

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
DEFAULTS = {
    "target": "churned",
    "learningRate": "0.5",
    "epochs": "400",
    "l2": "0.001",
    "testFraction": "0.25",
    "seed": "0",
}


class TrainError(Exception):
    """Bad input to the trainer; the message names the variable or value at fault."""


def hyperparameters(env: Mapping[str, str]) -> dict[str, str]:
    """KYKLOS_HYPERPARAMETERS over the defaults."""
    raw = env.get("KYKLOS_HYPERPARAMETERS", "") or "{}"
    try:
        given = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise TrainError(f"KYKLOS_HYPERPARAMETERS: not JSON ({exc.msg})") from None
    if not isinstance(given, dict):
        raise TrainError("KYKLOS_HYPERPARAMETERS: expected a JSON object")
    return {**DEFAULTS, **{str(k): str(v) for k, v in given.items()}}


def _number(params: Mapping[str, str], name: str, kind: type[float] | type[int]) -> float:
    try:
        return kind(params[name])
    except ValueError:
        raise TrainError(f"hyperparameter {name}={params[name]!r} is not a number") from None


def train(env: Mapping[str, str]) -> tuple[Model, dict[str, float]]:
    """Train on the dataset the environment names; return the model and its test metrics."""
    params = hyperparameters(env)
    lr = _number(params, "learningRate", float)
    epochs = int(_number(params, "epochs", int))
    l2 = _number(params, "l2", float)
    labelled, y, test, fit_rows, target = _split(env)
    dataset_uri = str(env.get("KYKLOS_DATASET_URI"))
    columns = infer_columns(labelled, target)
    x = encode(columns, labelled)
    if len(fit_rows) == 0:
        raise TrainError("not enough rows to train on after the test split")
    weights, bias = fit(x[fit_rows], y[fit_rows], lr=lr, epochs=epochs, l2=l2)
    p = sigmoid(x[test] @ weights + bias)
    metrics = {
        "accuracy": round(float(np.mean((p >= 0.5) == (y[test] == 1.0))), 6),
        "loss": round(log_loss(p, y[test]), 6),
    }
    metadata = {
        "datasetUri": dataset_uri,
        "datasetVersion": env.get("KYKLOS_DATASET_VERSION", ""),
        "rows": len(labelled),
        "hyperparameters": params,
        "metrics": metrics,
    }
    model = Model(target, columns, [float(w) for w in weights], float(bias), metadata)
    return model, metrics


def _split(
    env: Mapping[str, str], target: str | None = None
) -> tuple[list[dict[str, str]], np.ndarray, np.ndarray, np.ndarray, str]:
    """The labelled rows, their labels, and the seeded (test, fit) index split."""
    dataset_uri = env.get("KYKLOS_DATASET_URI")
    if not dataset_uri:
        raise TrainError("KYKLOS_DATASET_URI is not set")
    params = hyperparameters(env)
    test_fraction = _number(params, "testFraction", float)
    seed = int(_number(params, "seed", int))
    if not 0 < test_fraction < 1:
        raise TrainError(f"hyperparameter testFraction={test_fraction} must be in (0, 1)")
    target = target or params["target"]
    rows = read_csv(local_path(dataset_uri, env))
    if rows and target not in rows[0]:
        raise DataError(f"target column {target!r} is not in the data")
    labelled = [r for r in rows if r[target] not in ("", None)]
    try:
        y = np.array([float(r[target]) for r in labelled])
    except ValueError:
        raise TrainError(f"target column {target!r} must hold 0/1 labels") from None
    if not set(np.unique(y)) <= {0.0, 1.0}:
        raise TrainError(f"target column {target!r} must hold 0/1 labels")
    order = np.random.default_rng(seed).permutation(len(labelled))
    n_test = max(1, round(len(labelled) * test_fraction))
    return labelled, y, order[:n_test], order[n_test:], target


def evaluate(env: Mapping[str, str]) -> dict[str, float]:
    """Score the model at KYKLOS_MODEL_URI on the held-out rows of KYKLOS_DATASET_URI."""
    model_uri = env.get("KYKLOS_MODEL_URI")
    if not model_uri:
        raise TrainError("KYKLOS_MODEL_URI is not set")
    path = model_file(model_uri, env)
    try:
        model = Model.from_json(json.loads(path.read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise DataError(f"{path}: no such model file (KYKLOS_MODEL_URI)") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: not a model this program wrote ({exc})") from None
    labelled, y, test, _fit, _target = _split(env, model.target)
    p = np.array(model.predict_proba([labelled[i] for i in test]))
    return {
        "accuracy": round(float(np.mean((p >= 0.5) == (y[test] == 1.0))), 6),
        "loss": round(log_loss(p, y[test]), 6),
        "rows": float(len(test)),
    }


def write_model(model: Model, uri: str, env: Mapping[str, str]) -> Path:
    """Write the model JSON where KYKLOS_MODEL_URI points; return the file."""
    path = model_file(uri, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(model.to_json(), indent=1), encoding="utf-8")
    tmp.replace(path)  # readers never see half a model
    return path


def report(metrics: Mapping[str, float], env: Mapping[str, str]) -> None:
    """The termination message the operator reads (and the same line on stdout)."""
    message = json.dumps(dict(metrics), separators=(",", ":"))
    print(message, flush=True)
    path = Path(env.get("KYKLOS_TERMINATION_MESSAGE_PATH") or DEFAULT_TERMINATION_PATH)
    try:
        path.write_text(message, encoding="utf-8")
    except OSError as exc:
        # Outside a pod (a laptop run) there is no termination log; stdout has the metrics.
        print(f"note: could not write {path}: {exc.strerror}", file=sys.stderr)


def main(env: Mapping[str, str] | None = None) -> int:
    """Train, write the model, report the metrics; 1 and one line on stderr for bad input."""
    env = os.environ if env is None else env
    if env.get("KYKLOS_MODE") == "evaluate":
        try:
            metrics = evaluate(env)
        except (TrainError, DataError, UriError) as exc:
            print(f"kyklos.examples.train: evaluate: {exc}", file=sys.stderr)
            return 1
        except OSError as exc:
            print(f"kyklos.examples.train: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
            return 1
        report(metrics, env)
        return 0
    try:
        model_uri = env.get("KYKLOS_MODEL_URI")
        if not model_uri:
            raise TrainError("KYKLOS_MODEL_URI is not set")
        model, metrics = train(env)
        path = write_model(model, model_uri, env)
    except (TrainError, DataError, UriError) as exc:
        print(f"kyklos.examples.train: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"kyklos.examples.train: {exc.filename or ''}: {exc.strerror}", file=sys.stderr)
        return 1
    print(f"model written to {path}", file=sys.stderr)
    report(metrics, env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
