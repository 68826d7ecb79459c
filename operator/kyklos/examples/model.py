"""The example's model: logistic regression over standardised numeric and one-hot features."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

FORMAT = "kyklos-example-logistic-regression/v1"


class DataError(ValueError):
    """The data cannot be trained on or scored (names the column or row at fault)."""


@dataclass
class Column:
    """How one input column becomes model inputs."""

    name: str
    type: str  # "numeric" or "categorical"
    mean: float = 0.0
    std: float = 1.0
    categories: list[str] = field(default_factory=list)

    def width(self) -> int:
        return 1 if self.type == "numeric" else len(self.categories)

    def encode(self, value: Any) -> list[float]:
        if self.type == "numeric":
            number = self.mean if value in (None, "") else float(value)
            return [(number - self.mean) / self.std]
        text = "" if value is None else str(value)
        return [1.0 if text == c else 0.0 for c in self.categories]

    def to_json(self) -> dict[str, Any]:
        if self.type == "numeric":
            return {"name": self.name, "type": "numeric", "mean": self.mean, "std": self.std}
        return {"name": self.name, "type": "categorical", "categories": self.categories}


def read_csv(path: Path) -> list[dict[str, str]]:
    """All rows of a CSV file with a header line."""
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def infer_columns(rows: Sequence[Mapping[str, str]], target: str) -> list[Column]:
    """Numeric where every non-empty value parses as a number, else categorical."""
    if not rows:
        raise DataError("the dataset has no rows")
    if target not in rows[0]:
        raise DataError(f"target column {target!r} is not in the data")
    columns = []
    for name in rows[0]:
        if name == target:
            continue
        values = [r[name] for r in rows if r[name] not in ("", None)]
        if values and all(_is_number(v) for v in values):
            numbers = np.array([float(v) for v in values])
            std = float(numbers.std()) or 1.0
            columns.append(Column(name, "numeric", mean=float(numbers.mean()), std=std))
        else:
            columns.append(Column(name, "categorical", categories=sorted(set(values))))
    return columns


def encode(columns: Sequence[Column], rows: Iterable[Mapping[str, Any]]) -> NDArray[np.float64]:
    """The design matrix of rows (missing numeric values become the training mean)."""
    matrix = []
    for index, row in enumerate(rows):
        encoded: list[float] = []
        for column in columns:
            try:
                encoded += column.encode(row.get(column.name))
            except (TypeError, ValueError):
                raise DataError(
                    f"row {index}: {column.name}={row.get(column.name)!r} is not a number"
                ) from None
        matrix.append(encoded)
    return np.array(matrix, dtype=np.float64).reshape(len(matrix), sum(c.width() for c in columns))


def sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    result: NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
    return result


def fit(
    x: NDArray[np.float64], y: NDArray[np.float64], lr: float, epochs: int, l2: float
) -> tuple[NDArray[np.float64], float]:
    """Full-batch gradient descent on the L2-regularised log-loss."""
    weights = np.zeros(x.shape[1])
    bias = 0.0
    for _ in range(epochs):
        p = sigmoid(x @ weights + bias)
        error = p - y
        weights -= lr * (x.T @ error / len(y) + l2 * weights)
        bias -= lr * float(error.mean())
    return weights, bias


def log_loss(p: NDArray[np.float64], y: NDArray[np.float64]) -> float:
    eps = 1e-12
    return float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))


@dataclass
class Model:
    """A trained model, serialisable to JSON."""

    target: str
    columns: list[Column]
    weights: list[float]
    bias: float
    metadata: dict[str, Any] = field(default_factory=dict)

    def predict_proba(self, rows: Sequence[Mapping[str, Any]]) -> list[float]:
        x = encode(self.columns, rows)
        p = sigmoid(x @ np.array(self.weights) + self.bias)
        return [float(v) for v in p]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "target": self.target,
            "columns": [c.to_json() for c in self.columns],
            "weights": self.weights,
            "bias": self.bias,
            "metadata": self.metadata,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Model:
        if data.get("format") != FORMAT:
            raise DataError(f"not a {FORMAT} model (format={data.get('format')!r})")
        columns = [
            Column(
                c["name"],
                c["type"],
                mean=float(c.get("mean", 0.0)),
                std=float(c.get("std", 1.0)),
                categories=list(c.get("categories", [])),
            )
            for c in data["columns"]
        ]
        weights = [float(w) for w in data["weights"]]
        if len(weights) != sum(c.width() for c in columns):
            raise DataError("model weights do not match its columns")
        return cls(
            str(data["target"]), columns, weights, float(data["bias"]), data.get("metadata", {})
        )
