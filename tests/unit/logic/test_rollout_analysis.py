"""The rollout state machine with canary analysis and manual control (issue 14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kyklos.api.deployment import ModelDeploymentSpec, Verdict
from kyklos.api.serving import AnalysisSummary, AnalyzeArgs
from kyklos.logic import rollout
from kyklos.logic.analysis import RequestedAction, requested_action
from kyklos.logic.rollout import (
    AnalysisJobResult,
    Observed,
    ResolvedModel,
    build_serving_deployment,
    decide,
    resolve_model,
)

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
M1 = ResolvedModel("s3://models/iris/1", "v1")
M2 = ResolvedModel("s3://models/iris/2", "v2")
OWNER = {
    "apiVersion": "kyklos.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "u-1", "generation": 3},
}


def make_spec(**overrides: Any) -> ModelDeploymentSpec:
    body: dict[str, Any] = {
        "model": {"uri": M2.uri, "version": M2.version},
        "runtime": {"image": "registry.test/serve-ok:1", "port": 8080, "healthPath": "/ready"},
        "replicas": 4,
        "strategy": {"type": "Canary", "steps": [{"weight": 25, "pause": "30s"}]},
        "progressDeadlineSeconds": 120,
    }
    body.update(overrides)
    return ModelDeploymentSpec.model_validate(body)


def deployment(component: str, model: ResolvedModel, replicas: int) -> dict[str, Any]:
    """A rolled-out Deployment as the API server would show it after the builder's manifest."""
    body = build_serving_deployment(OWNER, make_spec(), component, model, replicas, "/p")
    body["metadata"]["generation"] = 1
    body["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
    }
    return body


ANALYSIS = {"window": "30s", "minSamples": 10, "errorRate": {"maxIncrease": 0.05}}


def spec(analysis: dict[str, Any] | None = None, **strategy: Any) -> ModelDeploymentSpec:
    return make_spec(
        strategy={
            "type": "Canary",
            "steps": [{"weight": 25, "pause": "30s"}, {"weight": 50, "pause": "30s"}],
            "analysis": analysis or ANALYSIS,
            **strategy,
        },
        observability={"requestLog": {"flushInterval": "5s"}},
    )


def observed(results: dict[str, AnalysisJobResult] | None = None, weight: int = 25) -> Observed:
    canary = rollout.canary_replicas(4, weight)
    return Observed(
        stable=deployment(rollout.STABLE, M1, 4),
        canary=deployment(rollout.CANARY, M2, canary),
        analysis_results=results or {},
    )


def step(
    s: ModelDeploymentSpec,
    obs: Observed,
    status: dict[str, Any] | None,
    seconds: float,
    request: RequestedAction | None = None,
) -> rollout.Decision:
    return decide(
        s,
        resolve_model(s.model, None),
        obs,
        status,
        T0 + timedelta(seconds=seconds),
        name="iris",
        namespace="ml",
        generation=3,
        artifacts_uri="pvc://kyklos-artifacts/",
        request=request,
    )


def held_canary(s: ModelDeploymentSpec) -> dict[str, Any]:
    """The status of a canary at step 0 that became Ready at T0."""
    started = step(s, Observed(stable=deployment(rollout.STABLE, M1, 4)), None, 0)
    holding = step(s, observed(), started.status, 0)
    assert holding.status["stepStartTime"] is not None
    return holding.status


def summary(verdict: Verdict, message: str = "m") -> AnalysisJobResult:
    text = AnalysisSummary(
        ok=True, verdict=verdict, samples={"canary": 40, "stable": 120}, message=message
    ).to_termination_message()
    return AnalysisJobResult(message=text)


def analysed(s: ModelDeploymentSpec, verdict: Verdict) -> tuple[rollout.Decision, str]:
    status = held_canary(s)
    waiting = step(s, observed(), status, 31)  # pause over, the last flush not yet written
    assert waiting.phase == "Progressing" and waiting.analysis_job is None
    assert "waiting" in waiting.conditions[0]["message"]
    assert 0 < (waiting.requeue_after or 0) <= 7
    running = step(s, observed(), waiting.status, 38)
    assert running.analysis_job is not None
    job = running.analysis_job.name
    args = AnalyzeArgs.from_argv(running.analysis_job.args)
    assert args.canary_revision == rollout.revision(rollout.resolve_model(s.model, None), s)  # type: ignore[arg-type]
    assert args.stable_revision == rollout.deployment_revision(deployment(rollout.STABLE, M1, 4))
    assert args.window_end == T0 + timedelta(seconds=30)
    assert args.artifacts == "pvc://kyklos-artifacts/"
    assert running.phase == "Progressing"
    assert job in running.conditions[0]["message"]
    # The same decision until the Job reports (no second Job, no second Event).
    again = step(s, observed(), running.status, 45)
    assert again.analysis_job == running.analysis_job and not again.events
    done = step(s, observed({job: summary(verdict, "the message")}), again.status, 50)
    return done, job


def test_pass_advances_and_records_the_analysis_in_status() -> None:
    s = spec()
    done, _ = analysed(s, Verdict.PASS)
    assert done.status["step"] == 1
    assert done.analysis_job is None
    (record,) = done.status["analysis"]
    assert record["step"] == 0 and record["verdict"] == "Pass"
    assert record["samples"] == {"canary": 40, "stable": 120}
    assert done.verdicts == ["Pass"]
    assert [e.reason for e in done.events] == ["AnalysisPassed", "CanaryStep"]
    # Settled at the next step: the record stays, nothing new.
    nxt = step(s, observed(weight=50), done.status, 51)
    assert len(nxt.status["analysis"]) == 1 and not nxt.verdicts


def test_fail_rolls_back_and_keeps_the_stable() -> None:
    done, _ = analysed(spec(), Verdict.FAIL)
    assert done.phase == "RolledBack"
    assert done.canary is None and done.stable_model is None
    assert done.status["failedModel"] == M2.uri
    assert "analysis of step 0: Fail: the message" in done.conditions[0]["message"]
    assert [e.reason for e in done.events] == ["AnalysisFailed", "RolledBack"]


def test_fail_with_on_failure_pause_pauses_then_resume_analyses_again() -> None:
    s = spec({**ANALYSIS, "onFailure": "Pause"})
    done, job = analysed(s, Verdict.FAIL)
    assert done.phase == "Paused" and done.status["paused"] is True
    assert done.canary is not None  # the canary keeps serving its share
    later = step(s, observed({job: summary(Verdict.FAIL)}), done.status, 500)
    assert later.phase == "Paused" and later.analysis_job is None and not later.events
    resume = RequestedAction("resume", "resume/1", "kyklos-rollout/ana", None)
    resumed = step(s, observed(), later.status, 600, resume)
    assert resumed.phase == "Progressing" and resumed.status["paused"] is None
    assert resumed.status["handledAction"] == "resume/1"
    assert resumed.status["history"][-1]["actions"][0]["user"] == "kyklos-rollout/ana"
    # A new window from the resume: another analysis at its end.
    again = step(s, observed(), resumed.status, 600 + 30 + 8)
    assert again.analysis_job is not None and again.analysis_job.name != job


def test_inconclusive_pauses_and_promote_finishes_the_rollout() -> None:
    s = spec(steps=[{"weight": 25, "pause": "30s"}])
    done, _ = analysed(s, Verdict.INCONCLUSIVE)
    assert done.phase == "Paused"
    assert "Inconclusive" in done.conditions[0]["message"]
    promote = RequestedAction("promote", "promote/2", "kyklos-rollout/bob", None)
    promoted = step(s, observed(), done.status, 100, promote)
    assert promoted.stable_model == M2  # the stable takes the canary's model
    assert promoted.status["history"][-1]["actions"][0]["action"] == "promote"
    # The same annotation again is not a second request.
    same = step(s, observed(), promoted.status, 101, promote)
    assert not [e for e in same.events if e.reason == "RolloutAction"]


def test_inconclusive_with_continue_goes_on() -> None:
    done, _ = analysed(spec({**ANALYSIS, "onInconclusive": "Continue"}), Verdict.INCONCLUSIVE)
    assert done.status["step"] == 1 and done.phase == "Progressing"


def test_a_job_that_fails_without_a_verdict_is_inconclusive() -> None:
    s = spec()
    status = held_canary(s)
    running = step(s, observed(), status, 40)
    assert running.analysis_job is not None
    failed = {running.analysis_job.name: AnalysisJobResult(failure="BackoffLimitExceeded")}
    done = step(s, observed(failed), running.status, 60)
    assert done.phase == "Paused"
    assert "failed without a verdict: BackoffLimitExceeded" in done.status["analysis"][0]["message"]


def test_abort_rolls_back_mid_canary_even_without_auto_rollback() -> None:
    s = make_spec(
        strategy={"type": "Canary", "steps": [{"weight": 25, "pause": "1h"}]}, autoRollback=False
    )
    status = held_canary(s)
    abort = RequestedAction("abort", "abort/x", "kyklos-rollout/eve", None)
    done = step(s, observed(), status, 5, abort)
    assert done.phase == "RolledBack" and done.canary is None
    assert "aborted by kyklos-rollout/eve" in done.conditions[0]["message"]


def test_manual_step_waits_for_promote_and_pause_holds() -> None:
    s = make_spec(strategy={"type": "Canary", "steps": [{"weight": 25, "pause": "manual"}]})
    status = held_canary(s)
    waiting = step(s, observed(), status, 10_000)
    assert waiting.phase == "Paused" and waiting.requeue_after is None
    assert "pause: manual" in waiting.conditions[0]["message"]
    pause = RequestedAction("pause", "pause/1", "u", None)
    paused = step(s, observed(), waiting.status, 10_001, pause)
    assert paused.status["paused"] is True
    promote = RequestedAction("promote", "promote/1", "u", None)
    assert step(s, observed(), paused.status, 10_002, promote).stable_model == M2


def test_an_action_without_a_canary_is_recorded_and_ignored() -> None:
    s = make_spec()
    stable = Observed(stable=deployment(rollout.STABLE, M2, 4))
    d = step(s, stable, None, 0, RequestedAction("promote", "promote/9", None, None))
    assert d.status["handledAction"] == "promote/9"
    assert any("ignored" in e.message for e in d.events)


def test_requested_action_reads_the_annotation_and_its_field_manager() -> None:
    meta = {
        "annotations": {"kyklos.io/rollout-action": "promote/2026-12-04T18:00:00Z"},
        "managedFields": [
            {"manager": "kubectl", "time": "2026-12-04T17:00:00Z", "fieldsV1": {"f:spec": {}}},
            {
                "manager": "kyklos-rollout/alice",
                "time": "2026-12-04T18:00:00Z",
                "fieldsV1": {"f:metadata": {"f:annotations": {"f:kyklos.io/rollout-action": {}}}},
            },
        ],
    }
    request = requested_action(meta)
    assert request is not None
    assert (request.action, request.user) == ("promote", "kyklos-rollout/alice")
    assert request.time == T0.replace(year=2026, month=12, day=4, hour=18)
    assert requested_action({"annotations": {"kyklos.io/rollout-action": "explode/1"}}) is None
    assert requested_action(OWNER["metadata"]) is None
