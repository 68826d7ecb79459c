"""Canary analysis verdicts from plain samples (logic.analysis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from kyklos.api.deployment import Analysis, Strategy, Verdict
from kyklos.logic.analysis import (
    NextAction,
    PrometheusResult,
    RevisionSample,
    analyse,
    effective_analysis,
    evaluate_condition,
    file_start,
    files_in_window,
    next_action,
    render_query,
    request_log_file,
    request_log_prefix,
)

ROWS = [{"tenure": t, "contract": c} for t, c in zip(range(40), ["a", "b"] * 20, strict=True)]


def sample(
    n: int,
    *,
    error_every: int = 0,
    latency: float = 0.01,
    predictions: list[int] | None = None,
    rows: list[dict[str, object]] | None = None,
    seed: int = 0,
) -> RevisionSample:
    rng = np.random.default_rng(seed)
    out = RevisionSample()
    for i in range(n):
        code = 500 if error_every and i % error_every == 0 else 200
        preds = predictions if predictions is not None else [int(rng.integers(0, 2))]
        out.add(
            code,
            latency * (1 + 0.1 * rng.random()),
            {"rows": rows or [ROWS[i % len(ROWS)]]},
            {"predictions": preds},
        )
    return out


def analysis(**spec: object) -> Analysis:
    return Analysis.model_validate({"minSamples": 50, **spec})


def check(outcome_checks: list, name: str):  # type: ignore[no-untyped-def]
    return next(c for c in outcome_checks if c.name == name)


def test_a_healthy_canary_passes_every_check() -> None:
    a = analysis(
        errorRate={"maxIncrease": 0.05},
        latency={"p99MaxRatio": 1.5},
        predictionDrift={"method": "js", "threshold": 0.2},
        inputDrift={"method": "psi", "threshold": 0.2},
    )
    outcome = analyse(a, sample(400, seed=1), sample(400, seed=2))
    assert outcome.verdict == Verdict.PASS, outcome.message
    assert [c.verdict for c in outcome.checks] == [Verdict.PASS] * 4
    assert "400 canary / 400 stable" in outcome.message


def test_twenty_percent_5xx_fails_the_error_rate_check() -> None:
    outcome = analyse(
        analysis(errorRate={"maxIncrease": 0.05}), sample(200, error_every=5), sample(200)
    )
    assert outcome.verdict == Verdict.FAIL
    c = check(outcome.checks, "errorRate")
    assert c.value == pytest.approx(0.2)
    assert c.limit == 0.05
    assert "5xx share 0.200" in outcome.message


def test_twice_as_slow_fails_the_latency_check() -> None:
    outcome = analyse(
        analysis(latency={"p99MaxRatio": 1.5}), sample(200, latency=0.02), sample(200)
    )
    assert outcome.verdict == Verdict.FAIL
    assert check(outcome.checks, "latency").value == pytest.approx(2.0, rel=0.15)


def test_constant_predictions_fail_the_prediction_drift_check() -> None:
    a = analysis(predictionDrift={"method": "js", "threshold": 0.2})
    outcome = analyse(a, sample(200, predictions=[1]), sample(200))
    assert outcome.verdict == Verdict.FAIL
    assert check(outcome.checks, "predictionDrift").value > 0.2


def test_categorical_predictions_are_compared_as_categories() -> None:
    canary, stable = RevisionSample(), RevisionSample()
    for i in range(100):
        stable.add(200, 0.01, None, {"predictions": ["yes" if i % 2 else "no"]})
        canary.add(200, 0.01, None, {"predictions": ["yes"]})
    a = analysis(predictionDrift={"method": "wasserstein", "threshold": 0.1})
    assert analyse(a, canary, stable).verdict == Verdict.FAIL


def test_a_skewed_input_split_fails_the_input_drift_check() -> None:
    shifted = [{"tenure": 100 + i, "contract": "z"} for i in range(40)]
    a = analysis(inputDrift={"method": "psi", "threshold": 0.2, "driftShare": 0.5})
    canary = RevisionSample()
    for i in range(100):
        canary.add(200, 0.01, {"rows": [shifted[i % 40]]}, {"predictions": [1]})
    outcome = analyse(a, canary, sample(100))
    assert outcome.verdict == Verdict.FAIL
    assert check(outcome.checks, "inputDrift").value == 1.0


def test_fewer_than_min_samples_is_inconclusive_whatever_the_checks_say() -> None:
    outcome = analyse(
        analysis(errorRate={"maxIncrease": 0.0}), sample(10, error_every=2), sample(0)
    )
    assert outcome.verdict == Verdict.INCONCLUSIVE
    assert "fewer than minSamples=50" in outcome.message


def test_prometheus_checks_pass_fail_and_an_error_is_inconclusive_with_it() -> None:
    a = analysis(
        prometheus={
            "address": "http://127.0.0.1:9090",
            "queries": [
                {"name": "ok", "query": "up", "successCondition": "result >= 1"},
                {"name": "bad", "query": "up", "successCondition": "result < 0.5"},
                {"name": "err", "query": "up", "successCondition": "result < 1"},
            ],
        }
    )
    results = {
        "ok": PrometheusResult(1.0),
        "bad": PrometheusResult(0.9),
        "err": PrometheusResult(error="bad_data: parse error at char 3"),
    }
    outcome = analyse(a, sample(60), sample(60), results)
    assert [c.verdict for c in outcome.checks] == [Verdict.PASS, Verdict.FAIL, Verdict.INCONCLUSIVE]
    assert outcome.verdict == Verdict.FAIL
    assert "parse error at char 3" in (check(outcome.checks, "err").message or "")
    only_error = analyse(a, sample(60), sample(60), {**results, "bad": PrometheusResult(0.1)})
    assert only_error.verdict == Verdict.INCONCLUSIVE
    assert "parse error at char 3" in only_error.message


@pytest.mark.parametrize(
    ("condition", "value", "holds"),
    [
        ("result < 0.05", 0.01, True),
        ("result < 0.05", 0.05, False),
        (" result>=1 ", 1.0, True),
        ("result == 2", 2.0, True),
        ("result != 2", 2.0, False),
        ("result > -1e-3", 0.0, True),
    ],
)
def test_success_conditions(condition: str, value: float, holds: bool) -> None:
    assert evaluate_condition(condition, value) is holds


def test_a_condition_outside_the_grammar_is_rejected() -> None:
    with pytest.raises(ValueError, match="successCondition"):
        evaluate_condition("__import__('os')", 1.0)


def test_query_templates_are_rendered() -> None:
    query = 'sum(x{revision="{{revision}}",ns="{{namespace}}"}) / y{r="{{stableRevision}}"}'
    out = render_query(query, {"revision": "c1", "namespace": "ns", "stableRevision": "s1"})
    assert out == 'sum(x{revision="c1",ns="ns"}) / y{r="s1"}'


def test_verdicts_map_to_the_configured_actions() -> None:
    default = analysis()
    assert next_action(default, Verdict.PASS) == NextAction.CONTINUE
    assert next_action(default, Verdict.FAIL) == NextAction.ROLLBACK
    assert next_action(default, Verdict.INCONCLUSIVE) == NextAction.PAUSE
    custom = analysis(onFailure="Pause", onInconclusive="Rollback")
    assert next_action(custom, Verdict.FAIL) == NextAction.PAUSE
    assert next_action(custom, Verdict.INCONCLUSIVE) == NextAction.ROLLBACK
    assert next_action(analysis(onInconclusive="Continue"), Verdict.INCONCLUSIVE) == (
        NextAction.CONTINUE
    )


def test_a_step_analysis_replaces_the_strategy_analysis() -> None:
    strategy = Strategy.model_validate(
        {
            "type": "Canary",
            "analysis": {"minSamples": 10},
            "steps": [{"weight": 10}, {"weight": 50, "analysis": {"minSamples": 99}}],
        }
    )
    assert effective_analysis(strategy, 0).min_samples == 10  # type: ignore[union-attr]
    assert effective_analysis(strategy, 1).min_samples == 99  # type: ignore[union-attr]
    assert (
        effective_analysis(Strategy.model_validate({"type": "Canary", "steps": [{"weight": 5}]}), 0)
        is None
    )


def test_request_log_files_are_named_by_time_and_selected_by_window() -> None:
    prefix = request_log_prefix("pvc://kyklos-artifacts/", "ns", "churn", "abc123")
    assert prefix == "pvc://kyklos-artifacts/ns/ModelDeployment/churn/requests/abc123"
    t0 = datetime(2026, 12, 4, 18, 0, 0, 123456, tzinfo=UTC)
    name = request_log_file(prefix, t0, "churn-stable-x_y", 7)
    assert name.endswith("/20261204T180000123456-churn-stable-x-y-000007.parquet")
    assert file_start(name) == t0
    assert file_start("other.parquet") is None
    names = [request_log_file(prefix, t0 + timedelta(seconds=s), "p", s) for s in (0, 30, 60, 90)]
    chosen = files_in_window(
        names, t0 + timedelta(seconds=55), t0 + timedelta(seconds=75), flush_seconds=10
    )
    assert chosen == [names[2]]
    # A file started up to two flushes before the window may hold records inside it.
    assert files_in_window(names, t0 + timedelta(seconds=45), t0 + timedelta(seconds=75), 10) == [
        names[1],
        names[2],
    ]
