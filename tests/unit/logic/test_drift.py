"""Table tests of the DriftMonitor state machine: checks, rising edge, cooldown, maxRetrains."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kyklos.api.drift import DriftMonitorSpec
from kyklos.logic.drift import CheckJob, Observed, decide

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def ts(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def spec(**overrides: Any) -> DriftMonitorSpec:
    body: dict[str, Any] = {
        "modelDeploymentRef": {"name": "churn"},
        "reference": {"datasetRef": {"name": "ref"}},
        "current": {"datasetRef": {"name": "cur"}},
        "interval": "10m",
        "retrain": {
            "template": {"datasetRef": {"name": "ref"}, "image": "python:3.12"},
            "cooldown": "1h",
            "maxRetrains": 2,
            "useCurrentData": True,
        },
    }
    body.update(overrides)
    return DriftMonitorSpec.model_validate(body)


def ready_dataset(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "status": {
            "phase": "Ready",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Profiled"}],
            "profileUri": f"file:///a/{name}/profile.json",
            "sampleUri": f"file:///a/{name}/sample.parquet",
        },
    }


def check(number: int, *, drifted: bool | None, share: float = 0.6, ok: bool = True) -> CheckJob:
    job = {
        "metadata": {"name": f"mon-check-{number}"},
        "status": {
            "conditions": [{"type": "Complete", "status": "True"}],
            "completionTime": ts(NOW - timedelta(seconds=5)),
        },
    }
    if drifted is None:
        pods: list[dict[str, Any]] = []
    else:
        summary = {
            "ok": ok,
            "driftShare": share,
            "drifted": drifted,
            "features": [
                {"name": "age", "method": "psi", "score": 0.9, "threshold": 0.2, "drifted": True},
                {"name": "plan", "method": "js", "score": 0.01, "threshold": 0.1, "drifted": False},
            ],
            "reportUri": "file:///a/report.json",
        }
        if not ok:
            summary.update({"reason": "EmptySource", "message": "no files match pvc://x/*.csv"})
        pods = [
            {
                "status": {
                    "phase": "Succeeded",
                    "containerStatuses": [
                        {
                            "state": {
                                "terminated": {
                                    "message": json.dumps(summary),
                                    "finishedAt": ts(NOW),
                                }
                            }
                        }
                    ],
                }
            }
        ]
    return CheckJob(number, job, pods)


def observed(**kw: Any) -> Observed:
    base: dict[str, Any] = {"reference": ready_dataset("ref"), "current": ready_dataset("cur")}
    base.update(kw)
    return Observed(**base)


def run(stored: dict[str, Any] | None, obs: Observed, s: DriftMonitorSpec | None = None):  # type: ignore[no-untyped-def]
    return decide(name="mon", generation=1, spec=s or spec(), stored=stored, observed=obs, now=NOW)


def reasons(decision: Any) -> list[str]:
    return [e.reason for e in decision.events]


def test_first_reconcile_starts_check_one_with_reference_sample() -> None:
    d = run(None, observed())
    assert d.start_check is not None and d.start_check.number == 1
    assert d.start_check.reference_sample == "file:///a/ref/sample.parquet"
    assert d.start_check.current_sample == "file:///a/cur/sample.parquet"
    assert d.status["phase"] == "Pending"
    assert d.status["checkJob"] == "mon-check-1"


def test_reference_not_ready_waits_with_reason_naming_field() -> None:
    d = run(None, observed(reference=None))
    assert d.start_check is None
    ready = next(c for c in d.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ReferenceNotReady"
    assert "reference.datasetRef" in ready["message"] and "'ref'" in ready["message"]


def test_never_two_checks_at_once() -> None:
    running = CheckJob(1, {"metadata": {"name": "mon-check-1"}, "status": {"active": 1}})
    d = run({"observedGeneration": 1}, observed(checks=[running]))
    assert d.start_check is None
    assert d.delete_jobs == []


def test_no_drift_stays_healthy_and_creates_nothing() -> None:
    d = run({"observedGeneration": 1}, observed(checks=[check(1, drifted=False, share=0.1)]))
    assert d.status["phase"] == "Healthy"
    assert d.create_retrain is None and d.promote is None
    assert "DriftDetected" not in reasons(d)
    assert d.status["nextCheckTime"] == ts(NOW + timedelta(minutes=10))


def test_drift_trips_retrain_on_current_data_with_rising_edge_event() -> None:
    d = run({"observedGeneration": 1}, observed(checks=[check(1, drifted=True)]))
    assert d.status["drifted"] is True
    assert "DriftDetected" in reasons(d)
    assert d.create_retrain is not None
    assert d.create_retrain.name == "mon-retrain-1"
    assert d.create_retrain.spec["datasetRef"] == {"name": "cur"}
    assert d.status["phase"] == "Retraining"
    assert d.status["retrainCount"] == 1
    drifted = next(c for c in d.status["conditions"] if c["type"] == "Drifted")
    assert drifted["status"] == "True" and "age" in drifted["message"]


def test_drift_detected_only_on_rising_edge() -> None:
    stored = {"observedGeneration": 1, "checks": 1, "drifted": True, "retrainCount": 2}
    d = run(stored, observed(checks=[check(2, drifted=True)]))
    assert "DriftDetected" not in reasons(d)


@pytest.mark.parametrize(
    ("stored_extra", "why"),
    [
        ({"retrainCount": 2}, "maxRetrains"),
        (
            {"retrainCount": 1, "lastRetrainTime": ts(NOW - timedelta(minutes=30))},
            "cooldown",
        ),
        (
            {
                "retrainCount": 1,
                "lastRetrainTime": ts(NOW - timedelta(hours=3)),
                "lastRetrain": {"name": "mon-retrain-1", "outcome": "Running"},
            },
            "still running",
        ),
    ],
)
def test_guards_block_retrain_and_say_why(stored_extra: dict[str, Any], why: str) -> None:
    stored = {"observedGeneration": 1, "checks": 1, **stored_extra}
    retrain = {"metadata": {"name": "mon-retrain-1"}, "status": {"phase": "Running"}}
    d = run(stored, observed(checks=[check(2, drifted=True)], retrain=retrain))
    assert d.create_retrain is None
    skipped = [e.message for e in d.events if e.reason == "RetrainSkipped"]
    assert skipped and why in skipped[0]


def test_no_retrain_without_a_check_newer_than_the_last_retrain() -> None:
    stored = {
        "observedGeneration": 1,
        "checks": 1,
        "drifted": True,
        "lastCheckTime": ts(NOW - timedelta(hours=2)),
        "nextCheckTime": ts(NOW + timedelta(minutes=5)),
        "lastRetrainTime": ts(NOW - timedelta(hours=1, minutes=30)),
        "retrainCount": 1,
        "lastRetrain": {"name": "mon-retrain-1", "outcome": "Rejected"},
    }
    d = run(stored, observed())
    assert d.create_retrain is None
    assert d.start_check is None
    assert d.requeue_after == pytest.approx(300)


def accepted_tj(accepted: bool | None, phase: str = "Succeeded") -> dict[str, Any]:
    conditions = []
    if accepted is not None:
        conditions.append(
            {
                "type": "ModelAccepted",
                "status": "True" if accepted else "False",
                "message": "accuracy 0.7 < 0.9" if not accepted else "accuracy 0.95 >= 0.9",
            }
        )
    return {
        "metadata": {"name": "mon-retrain-1"},
        "status": {"phase": phase, "conditions": conditions, "modelUri": "pvc://a/m2"},
    }


RUNNING = {
    "observedGeneration": 1,
    "checks": 1,
    "drifted": True,
    "lastCheckTime": ts(NOW - timedelta(minutes=20)),
    "nextCheckTime": ts(NOW + timedelta(minutes=5)),
    "retrainCount": 1,
    "lastRetrainTime": ts(NOW - timedelta(minutes=19)),
    "lastRetrain": {"name": "mon-retrain-1", "outcome": "Running"},
}


def test_accepted_model_is_pointed_at_the_deployment() -> None:
    md = {"metadata": {"name": "churn"}, "status": {"stableModel": "pvc://a/m1"}}
    d = run(dict(RUNNING), observed(retrain=accepted_tj(True), deployment=md))
    assert d.promote is not None
    assert (d.promote.deployment, d.promote.model_uri) == ("churn", "pvc://a/m2")
    assert d.status["lastRetrain"]["outcome"] == "RollingOut"
    assert d.status["phase"] == "Retraining"


@pytest.mark.parametrize(
    ("tj", "outcome"),
    [(accepted_tj(False), "Rejected"), (accepted_tj(None, phase="Failed"), "Failed")],
)
def test_rejected_or_failed_retrain_never_touches_the_deployment(
    tj: dict[str, Any], outcome: str
) -> None:
    md = {"metadata": {"name": "churn"}, "status": {"stableModel": "pvc://a/m1"}}
    d = run(dict(RUNNING), observed(retrain=tj, deployment=md))
    assert d.promote is None
    assert d.status["lastRetrain"]["outcome"] == outcome
    assert d.status["phase"] == "Drifted"


@pytest.mark.parametrize(
    ("md_status", "outcome"),
    [
        ({"stableModel": "pvc://a/m2"}, "Promoted"),
        ({"stableModel": "pvc://a/m1", "failedModel": "pvc://a/m2"}, "RolledBack"),
        ({"stableModel": "pvc://a/m1", "canaryModel": "pvc://a/m2"}, "RollingOut"),
    ],
)
def test_rollout_outcome_is_read_from_the_deployment(
    md_status: dict[str, Any], outcome: str
) -> None:
    stored = dict(RUNNING)
    stored["lastRetrain"] = {
        "name": "mon-retrain-1",
        "outcome": "RollingOut",
        "model": "pvc://a/m2",
    }
    md = {"metadata": {"name": "churn"}, "status": md_status}
    d = run(stored, observed(retrain=accepted_tj(True), deployment=md))
    assert d.status["lastRetrain"]["outcome"] == outcome
    assert d.promote is None


def test_failed_check_is_error_with_worker_message() -> None:
    d = run({"observedGeneration": 1}, observed(checks=[check(1, drifted=False, ok=False)]))
    assert d.status["phase"] == "Error"
    ready = next(c for c in d.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "CheckFailed" and "no files match" in ready["message"]
    assert d.create_retrain is None


def test_check_job_without_summary_is_error_not_crash() -> None:
    d = run({"observedGeneration": 1}, observed(checks=[check(1, drifted=None)]))
    assert d.status["phase"] == "Error"


def test_settled_monitor_decides_nothing_new() -> None:
    first = run({"observedGeneration": 1}, observed(checks=[check(1, drifted=False, share=0.0)]))
    again = decide(
        name="mon",
        generation=1,
        spec=spec(),
        stored=first.status,
        observed=observed(checks=[check(1, drifted=False, share=0.0)]),
        now=NOW,
    )
    assert again.status == first.status
    assert again.events == [] and again.start_check is None and again.create_retrain is None


def test_spec_change_triggers_a_check_soon() -> None:
    stored = {
        "observedGeneration": 1,
        "checks": 1,
        "checkJob": "mon-check-1",
        "nextCheckTime": ts(NOW + timedelta(minutes=9)),
    }
    d = decide(name="mon", generation=2, spec=spec(), stored=stored, observed=observed(), now=NOW)
    assert d.start_check is not None and d.start_check.number == 2


def test_old_check_jobs_are_deleted_keeping_the_latest() -> None:
    d = run(
        {"observedGeneration": 1, "checks": 1, "checkJob": "mon-check-1"},
        observed(checks=[check(1, drifted=False), check(2, drifted=False)]),
    )
    assert d.delete_jobs == ["mon-check-1"]


def test_promotion_of_a_model_trained_on_current_data_moves_the_baseline() -> None:
    stored = dict(RUNNING)
    stored["lastRetrain"] = {
        "name": "mon-retrain-1",
        "outcome": "RollingOut",
        "model": "pvc://a/m2",
    }
    md = {"metadata": {"name": "churn"}, "status": {"stableModel": "pvc://a/m2"}}
    d = run(stored, observed(retrain=accepted_tj(True), deployment=md))
    assert d.status["lastRetrain"]["outcome"] == "Promoted"
    assert d.status["baselineDataset"] == "cur"
    assert "compare against Dataset cur" in d.status["lastRetrain"]["message"]


def test_checks_compare_against_the_baseline_dataset() -> None:
    d = run(
        {"observedGeneration": 1, "baselineDataset": "cur"},
        observed(reference=ready_dataset("cur")),
    )
    assert d.start_check is not None
    assert d.start_check.reference_sample == "file:///a/cur/sample.parquet"


def test_without_use_current_data_the_baseline_stays() -> None:
    s = spec(
        retrain={
            "template": {"datasetRef": {"name": "ref"}, "image": "python:3.12"},
            "cooldown": "1h",
            "maxRetrains": 2,
        }
    )
    stored = dict(RUNNING)
    stored["lastRetrain"] = {
        "name": "mon-retrain-1",
        "outcome": "RollingOut",
        "model": "pvc://a/m2",
    }
    md = {"metadata": {"name": "churn"}, "status": {"stableModel": "pvc://a/m2"}}
    d = run(stored, observed(retrain=accepted_tj(True), deployment=md), s)
    assert d.status["lastRetrain"]["outcome"] == "Promoted"
    assert "baselineDataset" not in d.status


def test_pending_to_healthy_is_announced_with_the_ready_reason() -> None:
    pending = run(None, observed()).status
    assert pending["phase"] == "Pending"
    d = run(pending, observed(checks=[check(1, drifted=False, share=0.1)]))
    assert d.status["phase"] == "Healthy"
    (event,) = d.events
    assert event.reason == "NoDrift" and not event.warning
    assert event.message.startswith("Pending -> Healthy: check 1 succeeded")


def test_a_transition_with_its_own_event_is_not_announced_twice() -> None:
    pending = run(None, observed()).status
    d = run(pending, observed(checks=[check(1, drifted=True)]))
    assert d.status["phase"] in ("Drifted", "Retraining")
    assert "DriftDetected" in reasons(d)
    assert not any(e.message.startswith("Pending ->") for e in d.events)


def _retrain_spec(**retrain: Any) -> DriftMonitorSpec:
    template = {
        "datasetRef": {"name": "ref"},
        "image": "python:3.12",
        "evaluation": {"metric": "accuracy", "threshold": 0.5},
    }
    return spec(retrain={"template": template, "useCurrentData": True, **retrain})


def test_retraining_is_challenger_gated_against_the_live_model_by_default() -> None:
    d = run({"observedGeneration": 1}, observed(checks=[check(1, drifted=True)]), _retrain_spec())
    assert d.create_retrain is not None
    assert d.create_retrain.spec["evaluation"]["compareTo"] == {
        "modelDeploymentRef": {"name": "churn"}
    }


def test_compare_to_live_off_or_an_explicit_compare_to_is_left_alone() -> None:
    trip = observed(checks=[check(1, drifted=True)])
    off = run({"observedGeneration": 1}, trip, _retrain_spec(compareToLive=False))
    assert off.create_retrain is not None
    assert "compareTo" not in off.create_retrain.spec["evaluation"]
    explicit = _retrain_spec()
    assert explicit.retrain is not None and explicit.retrain.template.evaluation is not None
    template = explicit.retrain.template.model_dump(by_alias=True, exclude_none=True, mode="json")
    template["evaluation"]["compareTo"] = {
        "modelDeploymentRef": {"name": "other"},
        "minAbsoluteChange": 0.01,
    }
    mine = run({"observedGeneration": 1}, trip, _retrain_spec(template=template)).create_retrain
    assert mine is not None
    assert mine.spec["evaluation"]["compareTo"]["modelDeploymentRef"] == {"name": "other"}
    # Without an evaluation there is no metric to compare: nothing is filled in.
    bare = run({"observedGeneration": 1}, trip).create_retrain
    assert bare is not None and "evaluation" not in bare.spec


def test_a_rejected_challenger_is_rejected_with_both_values_and_never_promoted() -> None:
    message = "accuracy challenger 0.78 vs champion 0.83 (file:///m/1): delta -0.05 (-6.02%); needs better than the champion"
    tj = {
        "status": {
            "phase": "Succeeded",
            "modelUri": "file:///m/2",
            "conditions": [
                {
                    "type": "ModelAccepted",
                    "status": "False",
                    "reason": "NotBetterThanChampion",
                    "message": message,
                }
            ],
        }
    }
    stored = {
        "observedGeneration": 1,
        "lastRetrain": {"name": "mon-retrain-1", "outcome": "Running"},
    }
    d = run(stored, observed(retrain=tj), _retrain_spec())
    assert d.promote is None
    assert d.status["lastRetrain"]["outcome"] == "Rejected"
    assert (
        "0.78" in d.status["lastRetrain"]["message"]
        and "0.83" in d.status["lastRetrain"]["message"]
    )


def test_a_spec_the_model_rejects_is_invalid_spec_decided_in_logic() -> None:
    from kyklos.logic.drift import parse_spec

    body = {
        "metadata": {"name": "mon", "generation": 3},
        "spec": {"reference": {"datasetRef": {"name": "r"}}, "interval": "soon"},
        "status": {"phase": "Healthy", "checks": 2},
    }
    spec, decision = parse_spec(body, NOW)
    assert spec is None and decision is not None
    assert decision.status["phase"] == "Error" and decision.status["checks"] == 2
    ready = next(c for c in decision.status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "InvalidSpec" and ready["message"].startswith("spec.")
    assert [e.reason for e in decision.events] == ["InvalidSpec"]
