"""kyklos worker analyze on request logs written by the proxy's own writer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kyklos.api.deployment import Verdict
from kyklos.api.serving import AnalysisSummary, AnalyzeArgs, RequestRecord
from kyklos.logic.analysis import request_log_file, request_log_prefix
from kyklos.serving.proxy import _write_parquet
from kyklos.worker.cli import main

END = datetime(2026, 12, 4, 18, 0, 0, tzinfo=UTC)


def write_log(
    store: str,
    revision: str,
    n: int,
    *,
    error_every: int = 0,
    prediction: int | None = None,
    offset: float = 5.0,
) -> None:
    records = []
    for i in range(n):
        code = 500 if error_every and i % error_every == 0 else 200
        pred = prediction if prediction is not None else i % 2
        records.append(
            RequestRecord(
                time=END - timedelta(seconds=offset + i * 0.01),
                revision=revision,
                method="POST",
                path="/predict",
                code=code,
                latency_seconds=0.01,
                request_json=json.dumps({"rows": [{"x": i % 7}]}),
                response_json=json.dumps({"predictions": [pred]}),
            )
        )
    records.sort(key=lambda r: r.time)
    prefix = request_log_prefix(store, "ns", "churn", revision)
    _write_parquet(request_log_file(prefix, records[0].time, "pod", 1), records)


def run(tmp_path: Path, analysis: dict[str, object], store: str | None = None) -> AnalysisSummary:
    out = tmp_path / "termination-log"
    args = AnalyzeArgs(
        analysis=json.dumps(analysis),
        namespace="ns",
        name="churn",
        artifacts=store or f"file://{tmp_path}/store",
        canary_revision="canary1",
        stable_revision="stable1",
        step=0,
        window_end=END,
        termination_log=str(out),
    )
    assert main(["analyze", *args.to_flags()]) == 0
    return AnalysisSummary.parse(out.read_text())


def test_a_good_canary_passes_on_its_window(tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store"
    write_log(store, "canary1", 100)
    write_log(store, "stable1", 100)
    write_log(store, "stable1", 100, error_every=1, offset=120)  # outside the window
    summary = run(
        tmp_path,
        {
            "window": "1m",
            "minSamples": 50,
            "errorRate": {"maxIncrease": 0.05},
            "predictionDrift": {"threshold": 0.2},
        },
    )
    assert summary.verdict == Verdict.PASS, summary.message
    assert (summary.samples.canary, summary.samples.stable) == (100, 100)
    assert summary.start_time == END - timedelta(minutes=1)


def test_errors_and_constant_predictions_fail(tmp_path: Path) -> None:
    store = f"file://{tmp_path}/store"
    write_log(store, "canary1", 100, error_every=5, prediction=1)
    write_log(store, "stable1", 100)
    summary = run(
        tmp_path,
        {
            "minSamples": 50,
            "errorRate": {"maxIncrease": 0.05},
            "predictionDrift": {"threshold": 0.2},
        },
    )
    assert summary.verdict == Verdict.FAIL
    assert [c.verdict for c in summary.checks] == [Verdict.FAIL, Verdict.FAIL]


def test_no_traffic_is_inconclusive_and_an_unreadable_store_names_the_cause(tmp_path: Path) -> None:
    summary = run(tmp_path, {"minSamples": 5})
    assert summary.verdict == Verdict.INCONCLUSIVE
    assert "0 canary / 0 stable requests" in (summary.message or "")
    # A store this image cannot reach (no gcs extra installed): Inconclusive, naming why.
    summary = run(tmp_path, {"minSamples": 5}, store="gs://kyklos-test-bucket/store")
    assert summary.verdict == Verdict.INCONCLUSIVE and not summary.ok
    assert "cannot read the request logs" in (summary.message or "")
    assert "gcs" in (summary.message or "")


def test_a_store_the_proxies_could_not_write_is_inconclusive_naming_it_not_no_traffic(
    tmp_path: Path,
) -> None:
    """The store unreachable: the proxies dropped their logs (counted), the analysis says why."""
    blocker = tmp_path / "file"
    blocker.write_text("a file where the store's directory would be")
    summary = run(tmp_path, {"minSamples": 5}, store=f"file://{blocker}/store")
    assert summary.verdict == Verdict.INCONCLUSIVE and not summary.ok
    message = summary.message or ""
    assert "cannot read the request logs: artifact store file://" in message
    assert "Not a directory" in message
