"""``kyklos worker drift``: the stories the DriftMonitor controller relies on."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from kyklos.api.reports import DriftSummary, ProfileSummary
from kyklos.worker.cli import main

MakeTable = Callable[..., pa.Table]
Write = Callable[[pa.Table, Path, str], Path]
Spec = Callable[..., dict[str, Any]]


@pytest.fixture
def reference(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
    dataset_spec: Spec,
) -> ProfileSummary:
    """A profiled reference Dataset (2,000 rows, sample of 1,000)."""
    path = write(make_table(2000, seed=10), tmp_path / "ref.csv", "csv")
    spec = dataset_spec(path.as_uri(), profile={"sampleSize": 1000})
    log = tmp_path / "ref-log"
    assert (
        main(
            [
                "profile",
                "--spec",
                json.dumps(spec),
                "--namespace",
                "ns",
                "--name",
                "ref",
                "--artifacts",
                str(tmp_path / "store"),
                "--termination-log",
                str(log),
            ]
        )
        == 0
    )
    capsys.readouterr()
    return ProfileSummary.parse(log.read_text())


def monitor_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "reference": {"datasetRef": {"name": "ref"}},
        "current": {"source": {"uri": "file:///unused/*.csv", "window": 1}},
        "sampleSize": 1000,
    }
    spec.update(overrides)
    return spec


def check(
    tmp_path: Path,
    ref: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
    *current: str,
    spec: dict[str, Any] | None = None,
    check_id: str = "check-1",
) -> tuple[int, DriftSummary, str]:
    log = tmp_path / "drift-log"
    code = main(
        [
            "drift",
            "--spec",
            json.dumps(spec or monitor_spec()),
            "--namespace",
            "ns",
            "--name",
            "mon",
            "--artifacts",
            str(tmp_path / "store"),
            "--reference-profile",
            str(ref.profile_uri),
            "--reference-sample",
            str(ref.sample_uri),
            *current,
            "--check-id",
            check_id,
            "--termination-log",
            str(log),
        ]
    )
    out, err = capsys.readouterr()
    summary = DriftSummary.parse(log.read_text())
    assert DriftSummary.parse(out.strip()) == summary
    assert "Traceback" not in err
    return code, summary, err


def test_the_same_distribution_is_healthy(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
) -> None:
    cur = write(make_table(1500, seed=11), tmp_path / "cur" / "a.csv", "csv")
    code, summary, _ = check(tmp_path, reference, capsys, "--current-uri", str(cur))
    assert code == 0 and summary.ok
    assert summary.drifted is False and summary.drift_share == 0.0
    assert summary.features_checked == 3 and summary.drifted_features == 0
    assert {(f.name, f.method) for f in summary.features} == {
        ("age", "psi"),
        ("income", "psi"),
        ("city", "js"),
    }


def test_a_shifted_window_drifts_and_names_the_worst_features_first(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
) -> None:
    cur = write(make_table(1500, seed=12, shift=1.0), tmp_path / "cur" / "a.parquet", "parquet")
    code, summary, _ = check(tmp_path, reference, capsys, "--current-uri", str(cur))
    assert code == 0 and summary.ok and summary.drifted is True
    assert summary.drift_share == pytest.approx(2 / 3)
    names = [f.name for f in summary.features]
    assert set(names[:2]) == {"age", "income"} and names[2] == "city"
    assert summary.features[0].drifted and summary.features[1].drifted
    assert not summary.features[2].drifted
    # both drifted by PSI against the same threshold: the larger score comes first
    assert summary.features[0].score >= summary.features[1].score  # type: ignore[operator]

    report_path = tmp_path / "store" / "ns" / "DriftMonitor" / "mon" / "check-1" / "report.json"
    assert summary.report_uri == str(report_path)
    report = json.loads(report_path.read_text())
    age = next(f for f in report["features"] if f["name"] == "age")
    assert age["drifted"] and age["method"] == "psi"
    # every statistic is in the full report, not only the configured one
    assert {"ksPvalue", "ksStatistic", "wasserstein", "wassersteinNormalized", "psi", "js"} <= set(
        age
    )
    assert report["current"]["rows"] == 1000 and report["reference"]["rows"] == 1000


def test_methods_and_thresholds_come_from_the_spec(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
) -> None:
    cur = write(make_table(1500, seed=12, shift=1.0), tmp_path / "cur" / "a.csv", "csv")
    spec = monitor_spec(
        method={"numeric": "ks", "categorical": "chi2"},
        thresholds={"ks": 1e-300, "chi2": 0.01, "driftShare": 0.9},
        features=["age", "city"],
    )
    code, summary, _ = check(tmp_path, reference, capsys, "--current-uri", str(cur), spec=spec)
    assert code == 0
    assert {f.name: f.method for f in summary.features} == {"age": "ks", "city": "chi2"}
    assert all(f.threshold in (1e-300, 0.01) for f in summary.features)
    assert summary.drifted is False  # at most 1 of 2 drifted, below the 0.9 share


def test_the_window_uses_only_the_latest_files(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
) -> None:
    folder = tmp_path / "cur"
    old = write(make_table(800, seed=13, shift=1.0), folder / "old.csv", "csv")
    new = write(make_table(800, seed=14), folder / "new.csv", "csv")
    os.utime(old, (1000, 1000))
    os.utime(new, (2000, 2000))
    glob = str(folder / "*.csv")
    _, latest, _ = check(tmp_path, reference, capsys, "--current-uri", glob, "--window", "1")
    assert latest.drifted is False
    _, both, _ = check(
        tmp_path, reference, capsys, "--current-uri", glob, "--window", "2", check_id="check-2"
    )
    assert both.drifted_features and both.drifted_features > 0
    report = json.loads(Path(str(both.report_uri)).read_text())
    assert report["current"]["sources"] == [str(new), str(old)]


def test_a_current_dataset_sample_can_be_the_current_side(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, summary, _ = check(
        tmp_path, reference, capsys, "--current-sample", str(reference.sample_uri)
    )
    assert code == 0 and summary.drift_share == 0.0
    assert all(f.score == 0.0 for f in summary.features if f.method == "psi")


def test_checks_are_deterministic_for_a_seed(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
) -> None:
    cur = write(make_table(5000, seed=15, shift=0.1), tmp_path / "cur" / "a.csv", "csv")
    _, one, _ = check(tmp_path, reference, capsys, "--current-uri", str(cur), check_id="a")
    _, two, _ = check(tmp_path, reference, capsys, "--current-uri", str(cur), check_id="b")
    assert one.features == two.features


def test_an_empty_window_is_an_error_not_a_crash(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
) -> None:
    glob = str(tmp_path / "nothing" / "*.csv")
    code, summary, err = check(tmp_path, reference, capsys, "--current-uri", glob)
    assert code == 1 and not summary.ok and summary.reason == "EmptySource"
    assert glob in (summary.message or "") and err.count("\n") == 1


def test_a_file_missing_a_feature_is_a_schema_mismatch(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
) -> None:
    cur = write(make_table(100).drop_columns(["city"]), tmp_path / "cur" / "a.csv", "csv")
    code, summary, _ = check(tmp_path, reference, capsys, "--current-uri", str(cur))
    assert code == 1 and summary.reason == "SchemaMismatch"
    assert "city" in (summary.message or "") and str(cur) in (summary.message or "")


def test_an_unknown_feature_in_the_spec_is_a_schema_mismatch(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
) -> None:
    cur = write(make_table(100), tmp_path / "cur" / "a.csv", "csv")
    code, summary, _ = check(
        tmp_path,
        reference,
        capsys,
        "--current-uri",
        str(cur),
        spec=monitor_spec(features=["age", "height"]),
    )
    assert code == 1 and summary.reason == "SchemaMismatch" and "height" in (summary.message or "")


def test_an_all_null_column_is_invalid_data_naming_the_feature(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
) -> None:
    table = make_table(100)
    table = table.set_column(1, "income", pa.array(np.full(100, np.nan), from_pandas=True))
    cur = write(table, tmp_path / "cur" / "a.parquet", "parquet")
    code, summary, _ = check(tmp_path, reference, capsys, "--current-uri", str(cur))
    assert code == 1 and summary.reason == "InvalidData"
    assert summary.message == "feature income: current has no non-null values"


def test_constant_columns_are_compared_without_error(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
) -> None:
    table = make_table(100)
    table = table.set_column(0, "age", pa.array(np.full(100, 40.0)))
    cur = write(table, tmp_path / "cur" / "a.csv", "csv")
    code, summary, _ = check(tmp_path, reference, capsys, "--current-uri", str(cur))
    assert code == 0
    assert next(f for f in summary.features if f.name == "age").drifted


def test_a_missing_reference_artifact_is_unreachable(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
) -> None:
    cur = write(make_table(100), tmp_path / "cur" / "a.csv", "csv")
    gone = ProfileSummary.model_validate(
        reference.model_dump() | {"sample_uri": str(tmp_path / "gone.parquet")}
    )
    code, summary, _ = check(tmp_path, gone, capsys, "--current-uri", str(cur))
    assert code == 2 and summary.reason == "SourceUnreachable"
    assert "gone.parquet" in (summary.message or "")


def test_a_check_id_cannot_escape_the_report_folder(
    tmp_path: Path,
    reference: ProfileSummary,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, summary, _ = check(
        tmp_path, reference, capsys, "--current-sample", str(reference.sample_uri), check_id="../x"
    )
    assert code == 2 and summary.reason == "InvalidSpec"
