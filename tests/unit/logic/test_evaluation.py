"""The evaluation gate: the verdict over a table of values, the evaluation Job, and the flow."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kyklos.api.training import Evaluation
from kyklos.logic.conditions import get_condition, status_after, status_patch
from kyklos.logic.evaluation import (
    CHALLENGER,
    CHAMPION,
    Plan,
    Scores,
    build_eval_job,
    eval_job_name,
    improvement,
    plan_from_job,
    read_scores,
    verdict,
)
from kyklos.logic.training import (
    Decision,
    Observation,
    Settings,
    build_job,
    decide,
    needs_eval_pods,
)

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
SETTINGS = Settings(artifacts_uri="pvc://kyklos-artifacts", pvc_root="/mnt/kyklos/pvc")


def trainingjob(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "churn", "namespace": "ml", "uid": UID, "generation": 1},
        "spec": {"datasetRef": {"name": "churn-data"}, "image": "python:3.12", **spec},
    }


def dataset() -> dict[str, Any]:
    return {
        "metadata": {"name": "churn-data", "namespace": "ml"},
        "spec": {"source": {"uri": "pvc://data/churn/train.csv"}},
        "status": {
            "phase": "Ready",
            "version": "sha256:abc",
            "conditions": [{"type": "Ready", "status": "True", "reason": "Profiled"}],
        },
    }


def settle(tj: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """``tj`` with the status the decision wrote."""
    return {**tj, "status": status_after(tj.get("status"), decision.status)}


def with_status(job: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {**job, "status": status}


def running(tj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``tj`` with its training Job created and running, and that Job."""
    first = decide(Observation(tj, dataset(), None, None, SETTINGS, NOW))
    assert first.create_job is not None
    job = json.loads(json.dumps(first.create_job))
    job["metadata"]["uid"] = "job-uid"
    job = with_status(job, startTime="2026-11-23T11:50:00Z", active=1)
    tj = settle(tj, first)
    second = decide(Observation(tj, dataset(), job, None, SETTINGS, NOW))
    return settle(tj, second), job


def complete(job: dict[str, Any]) -> dict[str, Any]:
    return with_status(
        job,
        startTime="2026-11-23T11:50:00Z",
        completionTime="2026-11-23T11:59:30Z",
        succeeded=1,
        conditions=[{"type": "Complete", "status": "True"}],
    )


def gate(**extra: Any) -> Evaluation:
    return Evaluation.model_validate({"metric": "accuracy", "threshold": 0.5, **extra})


def compare(**change: Any) -> dict[str, Any]:
    return {"compareTo": {"modelDeploymentRef": {"name": "churn"}, **change}}


def scores(value: float | None, **more: float) -> Scores:
    metrics = dict(more)
    if value is not None:
        metrics["accuracy"] = value
    return Scores(metrics=metrics)


# ------------------------------------------------------------------------------------ verdict

VERDICTS = [
    # (id, gate extras, challenger, champion, accepted, reason)
    ("threshold-met", {}, scores(0.8), None, True, "ThresholdMet"),
    ("threshold-not-met", {}, scores(0.4), None, False, "BelowThreshold"),
    ("beats", compare(), scores(0.88), scores(0.83), True, "BeatsChampion"),
    ("worse", compare(), scores(0.78), scores(0.83), False, "NotBetterThanChampion"),
    ("tie-keeps-champion", compare(), scores(0.83), scores(0.83), False, "NotBetterThanChampion"),
    # MLflow: challenger >= champion + minAbsoluteChange (0.88 - 0.83 is 0.04999... in floats)
    (
        "abs-exact",
        compare(minAbsoluteChange=0.05),
        scores(0.88),
        scores(0.83),
        True,
        "BeatsChampion",
    ),
    (
        "abs-short",
        compare(minAbsoluteChange=0.06),
        scores(0.88),
        scores(0.83),
        False,
        "NotBetterThanChampion",
    ),
    # relative: (0.88 - 0.8) / 0.8 = 0.1
    ("rel-exact", compare(minRelativeChange=0.1), scores(0.88), scores(0.8), True, "BeatsChampion"),
    (
        "rel-short",
        compare(minRelativeChange=0.11),
        scores(0.88),
        scores(0.8),
        False,
        "NotBetterThanChampion",
    ),
    (
        "both-one-short",
        compare(minAbsoluteChange=0.01, minRelativeChange=0.2),
        scores(0.88),
        scores(0.8),
        False,
        "NotBetterThanChampion",
    ),
    # direction min: smaller is better; delta = champion - challenger
    (
        "min-better",
        {"metric": "loss", "threshold": 1.0, "direction": "min", **compare(minAbsoluteChange=0.1)},
        Scores(metrics={"loss": 0.3}),
        Scores(metrics={"loss": 0.45}),
        True,
        "BeatsChampion",
    ),
    (
        "min-worse",
        {"metric": "loss", "threshold": 1.0, "direction": "min", **compare()},
        Scores(metrics={"loss": 0.5}),
        Scores(metrics={"loss": 0.45}),
        False,
        "NotBetterThanChampion",
    ),
    (
        "min-rel",
        {"metric": "loss", "threshold": 1.0, "direction": "min", **compare(minRelativeChange=0.5)},
        Scores(metrics={"loss": 0.2}),
        Scores(metrics={"loss": 0.4}),
        True,
        "BeatsChampion",
    ),
    # zero champion: relative change undefined, only "strictly better" is asked of it
    (
        "zero-champion-better",
        compare(minRelativeChange=5),
        scores(0.01),
        scores(0.0),
        False,
        "BelowThreshold",
    ),
    (
        "zero-champion-better-low-bar",
        {"threshold": 0.0, **compare(minRelativeChange=5)},
        scores(0.01),
        scores(0.0),
        True,
        "BeatsChampion",
    ),
    (
        "zero-champion-tie",
        {"threshold": 0.0, **compare(minRelativeChange=5)},
        scores(0.0),
        scores(0.0),
        False,
        "NotBetterThanChampion",
    ),
    # negative champion: relative change divides by |champion|
    (
        "negative-champion",
        {"metric": "r2", "threshold": -1.0, **compare(minRelativeChange=0.5)},
        Scores(metrics={"r2": -0.1}),
        Scores(metrics={"r2": -0.4}),
        True,
        "BeatsChampion",
    ),
    # the absolute bar still applies with compareTo
    ("beats-but-below-bar", compare(), scores(0.45), scores(0.3), False, "BelowThreshold"),
    # missing and non-finite metrics
    ("challenger-missing", compare(), scores(None, loss=0.2), scores(0.8), False, "MetricMissing"),
    ("challenger-nan", compare(), scores(math.nan), scores(0.8), False, "MetricMissing"),
    ("challenger-inf", compare(), scores(math.inf), scores(0.8), False, "MetricMissing"),
    (
        "challenger-failed",
        compare(),
        Scores(error="exit 1"),
        scores(0.8),
        False,
        "EvaluationFailed",
    ),
    ("no-champion", compare(), scores(0.8), None, True, "NoChampion"),
    ("no-champion-below-bar", compare(), scores(0.4), None, False, "NoChampion"),
    (
        "champion-missing-reject",
        compare(),
        scores(0.8),
        scores(None),
        False,
        "ChampionEvaluationFailed",
    ),
    (
        "champion-nan-reject",
        compare(),
        scores(0.8),
        scores(math.nan),
        False,
        "ChampionEvaluationFailed",
    ),
    (
        "champion-failed-reject",
        compare(),
        scores(0.8),
        Scores(error="boom"),
        False,
        "ChampionEvaluationFailed",
    ),
    (
        "champion-failed-threshold-only",
        {**compare(), "onChampionError": "ThresholdOnly"},
        scores(0.8),
        Scores(error="boom"),
        True,
        "ChampionEvaluationFailed",
    ),
    (
        "champion-failed-threshold-only-below",
        {**compare(), "onChampionError": "ThresholdOnly"},
        scores(0.4),
        Scores(error="boom"),
        False,
        "ChampionEvaluationFailed",
    ),
]


@pytest.mark.parametrize(
    ("extra", "challenger", "champion", "accepted", "reason"),
    [v[1:] for v in VERDICTS],
    ids=[v[0] for v in VERDICTS],
)
def test_verdict_table(
    extra: dict[str, Any],
    challenger: Scores,
    champion: Scores | None,
    accepted: bool,
    reason: str,
) -> None:
    result = verdict(gate(**extra), challenger, champion, champion_name="file:///m/1")
    assert (result.accepted, result.reason.value) == (accepted, reason), result.message


def test_not_better_message_has_both_values_and_the_delta() -> None:
    result = verdict(gate(**compare()), scores(0.78), scores(0.83), champion_name="file:///m/1")
    assert result.message == (
        "accuracy challenger 0.78 vs champion 0.83 (file:///m/1): delta -0.05 (-6.02%); "
        "needs better than the champion"
    )
    assert result.delta == pytest.approx(-0.05)
    assert result.relative_delta == pytest.approx(-0.05 / 0.83)
    assert (result.challenger, result.champion) == (0.78, 0.83)


def test_threshold_failures_name_what_is_missing() -> None:
    result = verdict(
        gate(**compare(minAbsoluteChange=0.1, minRelativeChange=0.5)), scores(0.9), scores(0.85)
    )
    assert result.message.endswith(
        "needs delta >= minAbsoluteChange 0.1, relative delta >= minRelativeChange 0.5"
    )
    missing = verdict(gate(**compare()), scores(None, loss=0.1), scores(0.8))
    assert missing.message == (
        "metric accuracy (spec.evaluation.metric) was not reported for the challenger; reported: loss"
    )


def test_zero_champion_has_no_relative_delta() -> None:
    assert improvement("max", 0.5, 0.0) == (0.5, None)
    assert improvement("min", 0.5, 1.0) == (0.5, 0.5)
    assert improvement("max", -0.1, -0.4) == pytest.approx((0.3, 0.75))


@pytest.mark.parametrize(
    ("change", "value"),
    [("minAbsoluteChange", -0.1), ("minRelativeChange", -1), ("minAbsoluteChange", math.nan)],
)
def test_negative_or_nan_change_thresholds_are_rejected_naming_the_field(
    change: str, value: float
) -> None:
    with pytest.raises(ValueError, match=change):
        gate(**compare(**{change: value}))


# ------------------------------------------------------------------------------------ the Job

PLAN = Plan(
    dataset="churn-data",
    dataset_uri="pvc://data/churn/train.csv",
    dataset_version="sha256:abc",
    challenger_model="pvc://kyklos-artifacts/ml/TrainingJob/churn/0f1e2d3c/model",
    champion_model="pvc://models/churn/v1",
    champion_deployment="churn",
)


def eval_job(spec: dict[str, Any] | None = None, plan: Plan = PLAN) -> dict[str, Any]:
    from kyklos.api.training import TrainingJobSpec
    from kyklos.logic.training import Lineage

    tj = trainingjob(
        **(spec or {"evaluation": {"metric": "accuracy", "threshold": 0.5, **compare()}})
    )
    parsed = TrainingJobSpec.model_validate(tj["spec"])
    lineage = Lineage("0f1e2d3c", PLAN.dataset_uri, "sha256:abc", PLAN.challenger_model)
    trainer = build_job(tj, parsed, lineage, SETTINGS)
    assert parsed.evaluation is not None
    return build_eval_job(
        trainer,
        parsed.evaluation,
        plan,
        pvc_root=SETTINGS.pvc_root,
        user_env=parsed.env,
        labels={"kyklos.io/trainingjob": "churn", "app.kubernetes.io/component": "evaluator"},
    )


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["env"]}


def test_eval_job_scores_both_models_in_their_own_containers_on_the_same_data() -> None:
    job = eval_job(
        {
            "evaluation": {"metric": "accuracy", "threshold": 0.5, **compare()},
            "nodeSelector": {"pool": "cpu"},
            "tolerations": [{"key": "ml", "operator": "Exists"}],
            "resources": {"limits": {"cpu": "1"}},
            "env": {"LOG": "1"},
            "backoffLimit": 1,
            "activeDeadlineSeconds": 600,
        }
    )
    assert job["metadata"]["name"] == "churn-eval"
    assert job["metadata"]["ownerReferences"][0]["uid"] == UID
    pod = job["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == [CHALLENGER, CHAMPION]
    challenger, champion = (env_of(c) for c in pod["containers"])
    assert challenger["KYKLOS_MODEL_URI"] == PLAN.challenger_model
    assert champion["KYKLOS_MODEL_URI"] == "pvc://models/churn/v1"
    assert champion["KYKLOS_MODEL_PATH"] == "/mnt/kyklos/pvc/models/churn/v1"
    for env, role in ((challenger, CHALLENGER), (champion, CHAMPION)):
        assert env["KYKLOS_MODE"] == "evaluate"
        assert env["KYKLOS_EVALUATION_ROLE"] == role
        assert env["KYKLOS_DATASET_URI"] == PLAN.dataset_uri
        assert env["KYKLOS_DATASET_PATH"] == "/mnt/kyklos/pvc/data/churn/train.csv"
        assert env["KYKLOS_DATASET_VERSION"] == "sha256:abc"
        assert env["LOG"] == "1"
    # Same restricted security context and scheduling as the trainer; every volume read-only.
    assert pod["securityContext"] == {"seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["automountServiceAccountToken"] is False
    assert pod["nodeSelector"] == {"pool": "cpu"}
    assert pod["tolerations"] == [{"key": "ml", "operator": "Exists"}]
    assert pod["restartPolicy"] == "Never"
    for container in pod["containers"]:
        assert container["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        }
        assert container["resources"] == {"limits": {"cpu": "1"}}
        assert container["terminationMessagePath"] == "/dev/termination-log"
        assert all(m["readOnly"] for m in container["volumeMounts"])
        assert container["image"] == "python:3.12"
    assert all(v["persistentVolumeClaim"]["readOnly"] for v in pod["volumes"])
    assert {v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"]} == {
        "data",
        "kyklos-artifacts",
        "models",
    }
    assert job["spec"]["backoffLimit"] == 1
    assert job["spec"]["activeDeadlineSeconds"] == 600
    assert plan_from_job(job) == PLAN


def test_eval_job_uses_the_evaluator_when_given_and_scores_only_the_challenger_without_champion() -> (
    None
):
    job = eval_job(
        {
            "command": ["python", "-m", "train"],
            "evaluation": {
                "metric": "accuracy",
                "threshold": 0.5,
                "evaluator": {
                    "image": "registry.test/eval:1",
                    "command": ["score"],
                    "env": {"MODE": "x"},
                    "resources": {"requests": {"cpu": "2"}},
                },
            },
        },
        plan=Plan("churn-data", "file:///d.csv", "v1", "file:///m/new"),
    )
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["name"] == CHALLENGER
    assert container["image"] == "registry.test/eval:1"
    assert container["command"] == ["score"]
    assert "args" not in container
    assert env_of(container)["MODE"] == "x"
    assert container["resources"] == {"requests": {"cpu": "2"}}
    assert "volumes" not in job["spec"]["template"]["spec"]


def test_default_evaluator_is_the_trainer_command_with_evaluate_mode() -> None:
    job = eval_job(
        {
            "command": ["python", "-m", "train"],
            "args": ["--fast"],
            "evaluation": {"metric": "accuracy", "threshold": 0.5, **compare()},
        }
    )
    for container in job["spec"]["template"]["spec"]["containers"]:
        assert (container["command"], container["args"]) == (["python", "-m", "train"], ["--fast"])
        assert env_of(container)["KYKLOS_MODE"] == "evaluate"


def test_long_names_give_a_dns_label_eval_job() -> None:
    name = eval_job_name("a" * 253)
    assert len(name) <= 63 and name.endswith("-eval")


def eval_pod(**containers: tuple[int, str | None]) -> dict[str, Any]:
    statuses = []
    for name, (code, message) in containers.items():
        terminated: dict[str, Any] = {"exitCode": code, "finishedAt": "2026-11-23T11:59:50Z"}
        if message is not None:
            terminated["message"] = message
        statuses.append({"name": name, "state": {"terminated": terminated}})
    failed = any(code for code, _ in containers.values())
    return {
        "metadata": {"ownerReferences": [{"uid": "eval-uid"}]},
        "status": {"phase": "Failed" if failed else "Succeeded", "containerStatuses": statuses},
    }


def test_scores_are_read_per_container_and_failures_say_why() -> None:
    pods = [
        eval_pod(
            challenger=(0, '{"accuracy": 0.9, "ok": true}'),
            champion=(2, "model file not found"),
        )
    ]
    got = read_scores(pods, PLAN, "")
    assert got[CHALLENGER] == Scores(metrics={"accuracy": 0.9})
    assert got[CHAMPION].error == "container champion exited with code 2: model file not found"
    bad = read_scores([eval_pod(challenger=(0, "{oops"), champion=(0, None))], PLAN, "")
    assert (bad[CHALLENGER].error or "").startswith(
        "container challenger: termination message is not JSON"
    )
    assert bad[CHAMPION].error == "container champion wrote no metrics to its termination log"
    never = read_scores([], PLAN, "evaluation Job churn-eval failed: DeadlineExceeded")
    assert never[CHALLENGER].error == "evaluation Job churn-eval failed: DeadlineExceeded"


# ------------------------------------------------------------------------------------ the flow


def champion(stable: str | None = "pvc://models/churn/v1") -> dict[str, Any]:
    return {"metadata": {"name": "churn"}, "status": {"stableModel": stable} if stable else {}}


def trained(spec_gate: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    tj, job = running(trainingjob(evaluation=spec_gate))
    return tj, complete(job)


def train_pod() -> dict[str, Any]:
    return {
        "metadata": {"ownerReferences": [{"uid": "job-uid"}]},
        "status": {
            "phase": "Succeeded",
            "containerStatuses": [
                {
                    "name": "trainer",
                    "state": {
                        "terminated": {
                            "exitCode": 0,
                            "message": '{"accuracy": 0.95}',
                            "finishedAt": "2026-11-23T11:59:00Z",
                        }
                    },
                }
            ],
        },
    }


def step(tj: dict[str, Any], job: dict[str, Any] | None, **more: Any) -> Decision:
    return decide(Observation(tj, dataset(), job, None, SETTINGS, NOW, **more))


def condition(decision: Decision, type: str) -> tuple[str, str, str]:
    found = get_condition(decision.status["conditions"], type)
    assert found is not None
    return found["status"], found["reason"], found["message"]


def test_champion_challenger_flow_records_the_champion_and_judges_on_the_eval_job() -> None:
    tj, job = trained({"metric": "accuracy", "threshold": 0.5, **compare()})
    first = step(tj, job, pods=[train_pod()], champion=champion())
    # Training done, metrics recorded, not finished: the evaluation Job is created.
    assert first.status["phase"] == "Running"
    assert "completionTime" not in first.status
    assert first.status["metrics"] == {"accuracy": 0.95}
    assert condition(first, "Ready")[1] == "Evaluating"
    assert condition(first, "ModelAccepted")[:2] == ("Unknown", "Evaluating")
    assert first.create_eval_job is not None
    record = first.status["evaluation"]
    assert record["verdict"] == "Evaluating"
    assert record["champion"] == {"modelDeployment": "churn", "model": "pvc://models/churn/v1"}
    assert record["datasetVersion"] == "sha256:abc"
    assert first.transitions == ["succeeded"]
    assert [e.reason for e in first.events].count("Evaluating") == 1
    tj = settle(tj, first)

    created = json.loads(json.dumps(first.create_eval_job))
    created["metadata"]["uid"] = "eval-uid"
    running_eval = with_status(created, active=1, startTime="2026-11-23T12:00:00Z")
    # The stable model changes meanwhile: the recorded champion stays the one compared.
    again = step(tj, job, eval_job=running_eval, champion=champion("pvc://models/churn/v2"))
    assert again.create_eval_job is None and again.create_job is None
    assert status_patch(tj["status"], again.status) == {}
    assert not needs_eval_pods(
        Observation(tj, dataset(), job, None, SETTINGS, NOW, eval_job=running_eval)
    )

    done = with_status(
        created,
        succeeded=1,
        completionTime="2026-11-23T12:01:00Z",
        conditions=[{"type": "Complete", "status": "True"}],
    )
    assert needs_eval_pods(Observation(tj, dataset(), job, None, SETTINGS, NOW, eval_job=done))
    final = step(
        tj,
        None,  # the training Job is gone (ttlSecondsAfterFinished): not recreated
        eval_job=done,
        eval_pods=[
            eval_pod(challenger=(0, '{"accuracy": 0.78}'), champion=(0, '{"accuracy": 0.83}'))
        ],
        champion=champion("pvc://models/churn/v2"),
    )
    assert final.create_job is None
    status = final.status
    assert status["phase"] == "Succeeded"
    assert status["completionTime"] == "2026-11-23T12:01:00Z"
    evaluation = status["evaluation"]
    assert evaluation["verdict"] == "NotBetterThanChampion"
    assert evaluation["champion"]["model"] == "pvc://models/churn/v1"
    assert evaluation["champion"]["metrics"] == {"accuracy": 0.83}
    assert evaluation["challenger"]["metrics"] == {"accuracy": 0.78}
    assert evaluation["delta"] == pytest.approx(-0.05)
    assert evaluation["value"] == 0.78 and evaluation["accepted"] is False
    gate_status, reason, message = condition(final, "ModelAccepted")
    assert (gate_status, reason) == ("False", "NotBetterThanChampion")
    assert "challenger 0.78 vs champion 0.83" in message
    assert ("NotBetterThanChampion", True) in [(e.reason, e.warning) for e in final.events]
    assert final.verdict is not None and final.verdict.reason.value == "NotBetterThanChampion"
    # Final: nothing changes afterwards.
    settled = settle(tj, final)
    later = step(settled, None, eval_job=done, champion=champion("pvc://models/churn/v2"))
    assert status_patch(settled["status"], later.status) == {} and later.events == []


def test_missing_champion_deployment_waits_then_fails_at_the_deadline() -> None:
    tj, job = trained({"metric": "accuracy", "threshold": 0.5, **compare()})
    first = step(tj, job, pods=[train_pod()])
    assert first.create_eval_job is None
    assert first.status["phase"] == "Running"
    ready_status, reason, message = condition(first, "Ready")
    assert (ready_status, reason) == ("False", "ChampionNotFound")
    assert (
        "ModelDeployment churn (spec.evaluation.compareTo.modelDeploymentRef.name) not found"
        in message
    )
    tj = settle(tj, first)
    # Appears: the evaluation starts.
    assert step(tj, job, champion=champion()).create_eval_job is not None
    # Never appears, deadline passed (training started 11:50, deadline 60s): EvaluationFailed.
    tj["spec"]["activeDeadlineSeconds"] = 60
    late = step(tj, job)
    assert late.status["phase"] == "Succeeded"
    assert condition(late, "ModelAccepted")[:2] == ("False", "EvaluationFailed")


def test_no_champion_yet_scores_the_challenger_alone_threshold_only() -> None:
    tj, job = trained({"metric": "accuracy", "threshold": 0.5, **compare()})
    first = step(tj, job, pods=[train_pod()], champion=champion(None))
    assert first.create_eval_job is not None
    assert [c["name"] for c in first.create_eval_job["spec"]["template"]["spec"]["containers"]] == [
        CHALLENGER
    ]
    tj = settle(tj, first)
    created = {
        **first.create_eval_job,
        "metadata": {**first.create_eval_job["metadata"], "uid": "e"},
    }
    done = with_status(created, succeeded=1, conditions=[{"type": "Complete", "status": "True"}])
    final = step(tj, None, eval_job=done, eval_pods=[eval_pod(challenger=(0, '{"accuracy": 0.7}'))])
    assert condition(final, "ModelAccepted")[:2] == ("True", "NoChampion")


def test_evaluation_dataset_not_ready_waits_with_dataset_not_ready() -> None:
    spec_gate = {"metric": "accuracy", "threshold": 0.5, "datasetRef": {"name": "holdout"}}
    tj, job = trained(spec_gate)
    first = step(tj, job, pods=[train_pod()], eval_dataset=None)
    assert first.create_eval_job is None
    assert condition(first, "Ready")[:2] == ("False", "DatasetNotReady")
    holdout = dataset()
    holdout["metadata"]["name"] = "holdout"
    holdout["spec"]["source"]["uri"] = "file:///data/holdout.csv"
    second = step(settle(tj, first), job, eval_dataset=holdout)
    assert second.create_eval_job is not None
    assert second.status["evaluation"]["dataset"] == "holdout"
    (container,) = second.create_eval_job["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["KYKLOS_DATASET_URI"] == "file:///data/holdout.csv"


def test_a_stuck_evaluation_pod_is_explained_like_a_training_pod() -> None:
    tj, job = trained({"metric": "accuracy", "threshold": 0.5, **compare()})
    first = step(tj, job, pods=[train_pod()], champion=champion())
    tj = settle(tj, first)
    assert first.create_eval_job is not None
    created = {
        **first.create_eval_job,
        "metadata": {**first.create_eval_job["metadata"], "uid": "eval-uid"},
    }
    stuck_pod = {
        "metadata": {"name": "churn-eval-x", "ownerReferences": [{"uid": "eval-uid"}]},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/3 nodes are available: 3 Insufficient cpu.",
                }
            ],
        },
    }
    decision = step(tj, job, eval_job=with_status(created, active=1), watched_pods=[stuck_pod])
    status, reason, message = condition(decision, "Ready")
    assert (status, reason) == ("False", "PodUnschedulable")
    assert message.startswith("Job churn-eval: pod churn-eval-x")
    assert decision.status["phase"] == "Running"


def test_the_rejected_evaluation_job_is_evaluation_failed() -> None:
    tj, job = trained({"metric": "accuracy", "threshold": 0.5, **compare()})
    decision = step(
        tj, job, pods=[train_pod()], champion=champion(), eval_job_rejection="spec.x: bad"
    )
    assert condition(decision, "ModelAccepted")[:2] == ("False", "EvaluationFailed")
    assert decision.status["phase"] == "Succeeded"


def test_without_datasetref_compareto_or_evaluator_the_trainers_metrics_are_gated() -> None:
    tj, job = trained({"metric": "accuracy", "threshold": 0.5})
    decision = step(tj, job, pods=[train_pod()])
    assert decision.create_eval_job is None
    assert condition(decision, "ModelAccepted")[:2] == ("True", "ThresholdMet")
    assert decision.status["evaluation"]["verdict"] == "ThresholdMet"
    assert NOW  # the table's clock


def test_a_queued_training_queues_its_evaluation_too() -> None:
    job = eval_job({"queueName": "team-a", "evaluation": {"metric": "accuracy", "threshold": 0.5}})
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["suspend"] is True
    assert "suspend" not in eval_job()["spec"]


values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
changes = st.floats(min_value=0, max_value=10, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(values, values, values, changes, changes)
def test_the_verdict_is_the_same_seen_from_either_direction(
    challenger: float, champion: float, threshold: float, min_abs: float, min_rel: float
) -> None:
    """max over (v, c, t) and min over (-v, -c, -t) are one question: same verdict, same delta;
    an accepted challenger is strictly better and clears both change thresholds."""
    change = compare(minAbsoluteChange=min_abs, minRelativeChange=min_rel)
    up = verdict(gate(threshold=threshold, **change), scores(challenger), scores(champion))
    down = verdict(
        gate(threshold=-threshold, direction="min", **change),
        scores(-challenger),
        scores(-champion),
    )
    assert (up.accepted, up.reason) == (down.accepted, down.reason)
    assert up.delta == pytest.approx(down.delta)
    if up.accepted:
        assert up.delta is not None and up.delta > 0
        assert up.delta >= min_abs or math.isclose(up.delta, min_abs, rel_tol=1e-9, abs_tol=1e-12)
        if champion != 0:
            assert up.relative_delta is not None
            assert up.relative_delta >= min_rel or math.isclose(
                up.relative_delta, min_rel, rel_tol=1e-9, abs_tol=1e-12
            )
