"""``kyklos worker profile``: the stories the Dataset controller relies on."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kyklos.api.reports import ProfileSummary
from kyklos.worker.cli import main

MakeTable = Callable[..., pa.Table]
Write = Callable[[pa.Table, Path, str], Path]
Spec = Callable[..., dict[str, Any]]


def run(
    tmp_path: Path, spec: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> tuple[int, ProfileSummary, str]:
    log = tmp_path / "termination-log"
    code = main(
        [
            "profile",
            "--spec",
            json.dumps(spec),
            "--namespace",
            "team",
            "--name",
            "churn",
            "--artifacts",
            f"file://{tmp_path / 'store'}",
            "--termination-log",
            str(log),
        ]
    )
    out, err = capsys.readouterr()
    summary = ProfileSummary.parse(log.read_text())
    assert ProfileSummary.parse(out.strip()) == summary  # stdout carries the same summary
    assert "Traceback" not in err
    return code, summary, err


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_a_good_dataset_is_versioned_profiled_and_sampled(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    fmt: str,
    make_table: MakeTable,
    write: Write,
    dataset_spec: Spec,
) -> None:
    table = make_table(400, null_every=10)
    path = write(table, tmp_path / f"data.{fmt}", fmt)
    code, summary, _ = run(tmp_path, dataset_spec(path.as_uri()), capsys)

    assert code == 0 and summary.ok and summary.reason is None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary.version == digest[:16]
    assert (summary.version_source, summary.checksum) == ("sha256", f"sha256:{digest}")
    assert summary.rows == 400
    by_name = {f.name: f for f in summary.features}
    assert by_name["income"].null_fraction == pytest.approx(40 / 400)
    assert by_name["age"].mean == pytest.approx(float(np.mean(table.column("age"))))
    assert by_name["city"].categories == 3

    version_dir = tmp_path / "store" / "team" / "Dataset" / "churn" / summary.version
    assert summary.profile_uri == f"file://{version_dir / 'profile.json'}"
    profile = json.loads((version_dir / "profile.json").read_text())
    assert profile["rows"] == 400 and profile["version"] == summary.version
    age = next(f for f in profile["features"] if f["name"] == "age")
    assert len(age["binEdges"]) == 6 and sum(age["binFractions"]) == pytest.approx(1.0)
    city = next(f for f in profile["features"] if f["name"] == "city")
    assert sum(c["count"] for c in city["categories"]) + city["otherCount"] == 400

    sample = pq.read_table(version_dir / "sample.parquet")
    assert summary.sample_uri == f"file://{version_dir / 'sample.parquet'}"
    assert sample.num_rows == 100 and sample.column_names == ["age", "income", "city"]
    # sampled rows are real rows of the data, in their original order
    ages = table.column("age").to_pylist()
    positions = [ages.index(a) for a in sample.column("age").to_pylist()]
    assert positions == sorted(positions)


def test_the_sample_is_deterministic_and_the_version_follows_the_content(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
    dataset_spec: Spec,
) -> None:
    path = write(make_table(300), tmp_path / "data.csv", "csv")
    _, first, _ = run(tmp_path, dataset_spec(path.as_uri()), capsys)
    sample_path = Path(str(first.sample_uri).removeprefix("file://"))
    first_sample = pq.read_table(sample_path)
    _, again, _ = run(tmp_path, dataset_spec(path.as_uri()), capsys)
    assert again.version == first.version
    assert pq.read_table(sample_path).equals(first_sample)

    write(make_table(300, seed=1), path, "csv")
    _, changed, _ = run(tmp_path, dataset_spec(path.as_uri()), capsys)
    assert changed.ok and changed.version != first.version


def test_a_missing_column_fails_with_the_schema_rule_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
    dataset_spec: Spec,
) -> None:
    path = write(make_table(50).drop_columns(["income"]), tmp_path / "d.csv", "csv")
    code, summary, err = run(tmp_path, dataset_spec(path.as_uri()), capsys)
    assert code == 1 and not summary.ok
    assert summary.reason == "SchemaMismatch"
    assert [(f.rule, f.feature) for f in summary.failures] == [("schema", "income")]
    assert "income" in (summary.message or "") and "income" in err
    assert err.count("\n") == 1  # one line on stderr


def test_a_missing_target_is_a_schema_failure(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
    dataset_spec: Spec,
) -> None:
    path = write(make_table(50).drop_columns(["label"]), tmp_path / "d.parquet", "parquet")
    code, summary, _ = run(tmp_path, dataset_spec(path.as_uri()), capsys)
    assert code == 1
    assert summary.failures[0].feature == "label"
    assert "target label" in summary.failures[0].message


def test_too_many_nulls_fails_max_null_fraction_naming_feature_and_limit(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
    dataset_spec: Spec,
) -> None:
    path = write(make_table(100, null_every=4), tmp_path / "d.csv", "csv")
    spec = dataset_spec(path.as_uri(), validation={"maxNullFraction": 0.1})
    code, summary, _ = run(tmp_path, spec, capsys)
    assert code == 1 and summary.reason == "ValidationFailed"
    assert [(f.rule, f.feature) for f in summary.failures] == [("maxNullFraction", "income")]
    assert "0.25" in summary.failures[0].message and "0.1" in summary.failures[0].message
    assert summary.sample_uri is None  # an invalid version is not a drift reference
    assert summary.profile_uri is not None  # but its profile explains the failure


def test_a_per_feature_null_limit_overrides_the_dataset_limit(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
    dataset_spec: Spec,
) -> None:
    path = write(make_table(100, null_every=4), tmp_path / "d.csv", "csv")
    spec = dataset_spec(path.as_uri(), validation={"maxNullFraction": 0.1})
    spec["schema"]["features"][1]["maxNullFraction"] = 0.5
    code, summary, _ = run(tmp_path, spec, capsys)
    assert code == 0 and summary.ok


def test_too_few_rows_fails_min_rows(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
    dataset_spec: Spec,
) -> None:
    path = write(make_table(10), tmp_path / "d.jsonl", "jsonl")
    code, summary, _ = run(
        tmp_path, dataset_spec(path.as_uri(), validation={"minRows": 11}), capsys
    )
    assert code == 1 and summary.reason == "ValidationFailed"
    assert summary.failures[0].rule == "minRows" and "10 rows" in summary.failures[0].message


def test_a_non_numeric_value_fails_the_type_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset_spec: Spec
) -> None:
    path = tmp_path / "d.csv"
    path.write_text("age,income,city,label\n1,2,x,0\n3,lots,y,1\n")
    code, summary, _ = run(tmp_path, dataset_spec(path.as_uri()), capsys)
    assert code == 1 and summary.reason == "SchemaMismatch"
    assert (summary.failures[0].rule, summary.failures[0].feature) == ("type", "income")
    assert "'lots'" in summary.failures[0].message


def test_an_unreadable_uri_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset_spec: Spec
) -> None:
    uri = (tmp_path / "nowhere.csv").as_uri()
    code, summary, err = run(tmp_path, dataset_spec(uri), capsys)
    assert code == 2 and summary.reason == "SourceUnreachable"
    assert uri in (summary.message or "") and uri in err


def test_a_file_in_the_wrong_format_exits_2_with_format_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
    dataset_spec: Spec,
) -> None:
    path = write(make_table(10), tmp_path / "d.csv", "csv")
    spec = dataset_spec(path.as_uri())
    spec["source"]["format"] = "parquet"
    code, summary, _ = run(tmp_path, spec, capsys)
    assert code == 2 and summary.reason == "FormatError" and str(path) in (summary.message or "")


def test_an_empty_source_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset_spec: Spec
) -> None:
    header_only = tmp_path / "h.csv"
    header_only.write_text("age,income,city,label\n")
    code, summary, _ = run(tmp_path, dataset_spec(header_only.as_uri()), capsys)
    assert code == 1 and summary.reason == "EmptySource" and summary.rows == 0
    (tmp_path / "e.csv").write_text("")
    code, summary, _ = run(tmp_path, dataset_spec((tmp_path / "e.csv").as_uri()), capsys)
    assert code == 1 and summary.reason == "EmptySource"


def test_pvc_sources_and_artifact_stores_resolve_under_the_mount_root(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    pvc_root: Path,
    make_table: MakeTable,
    write: Write,
    dataset_spec: Spec,
) -> None:
    write(make_table(30), pvc_root / "data" / "train" / "d.parquet", "parquet")
    log = tmp_path / "log"
    code = main(
        [
            "profile",
            "--spec",
            json.dumps(dataset_spec("pvc://data/train/d.parquet")),
            "--namespace",
            "ns",
            "--name",
            "n",
            "--artifacts",
            "pvc://artifacts",
            "--termination-log",
            str(log),
        ]
    )
    capsys.readouterr()
    summary = ProfileSummary.parse(log.read_text())
    assert code == 0
    assert summary.profile_uri == f"pvc://artifacts/ns/Dataset/n/{summary.version}/profile.json"
    assert (
        pvc_root / "artifacts" / "ns" / "Dataset" / "n" / str(summary.version) / "sample.parquet"
    ).is_file()


def test_an_invalid_spec_is_one_line_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = {
        "source": {"uri": "file:///x.csv"},
        "schema": {"features": [{"name": "a", "type": "text"}]},
    }
    code, summary, err = run(tmp_path, spec, capsys)
    assert code == 2 and summary.reason == "InvalidSpec"
    assert "schema.features.0.type" in (summary.message or "")
    assert err.count("\n") == 1


def test_no_termination_log_file_is_a_warning_not_a_crash(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_table: MakeTable,
    write: Write,
    dataset_spec: Spec,
) -> None:
    path = write(make_table(20), tmp_path / "d.csv", "csv")
    code = main(
        [
            "profile",
            "--spec",
            json.dumps(dataset_spec(path.as_uri())),
            "--namespace",
            "n",
            "--name",
            "d",
            "--artifacts",
            str(tmp_path / "s"),
            "--termination-log",
            str(tmp_path / "no" / "such" / "dir" / "log"),
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0 and ProfileSummary.parse(out).ok
    assert "cannot write" in err


def test_a_file_with_none_of_the_declared_columns_lists_each_and_claims_no_row_count(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], dataset_spec: Spec
) -> None:
    path = tmp_path / "d.csv"
    path.write_text("x,y\n1,2\n3,4\n")
    code, summary, _ = run(tmp_path, dataset_spec(path.as_uri()), capsys)
    assert code == 1 and summary.reason == "SchemaMismatch"
    assert [f.feature for f in summary.failures] == ["age", "income", "city", "label"]
    assert {f.rule for f in summary.failures} == {"schema"}
    assert summary.rows is None


def test_the_worker_process_exits_with_the_contract_code_and_no_traceback(
    tmp_path: Path, make_table: MakeTable, write: Write, dataset_spec: Spec
) -> None:
    """As the Job runs it: a real process, summary in the termination log, one stderr line."""
    import subprocess
    import sys

    good = write(make_table(50), tmp_path / "good.csv", "csv")
    log = tmp_path / "termination-log"
    for uri, expected_code, reason in [
        (good.as_uri(), 0, None),
        ((tmp_path / "missing.csv").as_uri(), 2, "SourceUnreachable"),
    ]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "kyklos.worker.cli",
                "profile",
                "--spec",
                json.dumps(dataset_spec(uri)),
                "--namespace",
                "ns",
                "--name",
                "d",
                "--artifacts",
                str(tmp_path / "store"),
                "--termination-log",
                str(log),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == expected_code
        summary = ProfileSummary.parse(log.read_text())
        assert summary.reason == reason
        assert "Traceback" not in proc.stderr
        assert proc.stderr.count("\n") == (0 if expected_code == 0 else 1)


def test_an_unexpected_error_still_leaves_a_termination_message(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    make_table: MakeTable,
    write: Write,
    dataset_spec: Spec,
) -> None:
    """The operator only sees the termination message: a worker bug must not leave it empty."""
    import kyklos.worker.cli as worker_cli

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom at s3://KEY:SECRET@bucket/x.csv\nsecond line")

    monkeypatch.setattr(worker_cli, "run_profile", broken)
    path = write(make_table(5), tmp_path / "d.csv", "csv")
    code, summary, err = run(tmp_path, dataset_spec(path.as_uri()), capsys)
    assert code == worker_cli.EXIT_INTERNAL
    assert not summary.ok and summary.reason == "ProfileJobFailed"
    assert summary.message == (
        "internal error in kyklos worker profile: RuntimeError: boom at s3://***@bucket/x.csv"
    )
    assert "SECRET" not in err
