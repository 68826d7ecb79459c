"""Small data files for the worker tests, written to a temporary directory."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest


def _make_table(n: int = 400, seed: int = 0, shift: float = 0.0, null_every: int = 0) -> pa.Table:
    """A table with two numeric features, one categorical feature and a target."""
    rng = np.random.default_rng(seed)
    income = rng.lognormal(10 + shift, 1, n)
    if null_every:
        income[::null_every] = np.nan
    return pa.table(
        {
            "age": rng.normal(40 + 10 * shift, 10, n),
            "income": pa.array(income, from_pandas=True),
            "city": rng.choice(["athens", "berlin", "cairo"], n),
            "label": rng.integers(0, 2, n),
        }
    )


def _write(table: pa.Table, path: Path, fmt: str) -> Path:
    """Write a table as csv, parquet or jsonl."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        pa_csv.write_csv(table, path)
    elif fmt == "parquet":
        pq.write_table(table, path)
    else:
        with path.open("w") as f:
            for row in table.to_pylist():
                clean = {
                    k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()
                }
                f.write(json.dumps(clean) + "\n")
    return path


def _dataset_spec(uri: str, **overrides: Any) -> dict[str, Any]:
    """A Dataset spec (wire form) declaring age, income, city and the label target."""
    spec: dict[str, Any] = {
        "source": {"uri": uri},
        "schema": {
            "features": [
                {"name": "age", "type": "numeric"},
                {"name": "income", "type": "numeric"},
                {"name": "city", "type": "categorical"},
            ],
            "target": "label",
        },
        "profile": {"sampleSize": 100, "bins": 5},
    }
    for key, value in overrides.items():
        spec[key] = value
    return spec


@pytest.fixture
def pvc_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A KYKLOS_PVC_ROOT under the test's temporary directory."""
    root = tmp_path / "pvc"
    root.mkdir()
    monkeypatch.setenv("KYKLOS_PVC_ROOT", str(root))
    return root


@pytest.fixture
def make_table() -> Callable[..., pa.Table]:
    """Builds a table (see ``_make_table``)."""
    return _make_table


@pytest.fixture
def write() -> Callable[[pa.Table, Path, str], Path]:
    """Writes a table as csv, parquet or jsonl."""
    return _write


@pytest.fixture
def dataset_spec() -> Callable[..., dict[str, Any]]:
    """Builds a Dataset spec (see ``_dataset_spec``)."""
    return _dataset_spec
