"""Which MLflow records and aliases a TrainingJob and a ModelDeployment call for (pure)."""

from __future__ import annotations

from typing import Any

from kyklos.logic import registry
from kyklos.logic.registry import CHALLENGER, CHAMPION, AliasPlan


def trainingjob(status: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "churn", "namespace": "ml", "uid": "u-1"},
        "spec": {
            "datasetRef": {"name": "churn-data"},
            "image": "trainer:1",
            "hyperparameters": {"lr": "0.1"},
            "registry": {"name": "churn"},
            **spec,
        },
        "status": status,
    }


SUCCEEDED = {
    "phase": "Succeeded",
    "modelUri": "s3://m/churn/r1",
    "datasetVersion": "etag:1",
    "metrics": {"auc": 0.91},
    "conditions": [{"type": "ModelAccepted", "status": "True"}],
}


def test_a_succeeded_accepted_training_becomes_a_run_and_a_version() -> None:
    plan = registry.training_sync(trainingjob(SUCCEEDED))
    assert plan is not None and plan.registry == "churn"
    assert plan.run is not None and plan.run_id is None
    assert plan.run.params == {"lr": "0.1"} and plan.run.metrics == {"auc": 0.91}
    assert plan.run.tags[registry.TAG_DATASET] == "churn-data"
    assert plan.run.tags[registry.TAG_DATASET_VERSION] == "etag:1"
    assert plan.run.tags[registry.TAG_TRAININGJOB_UID] == "u-1"
    assert plan.run.tags[registry.TAG_IMAGE] == "trainer:1"
    assert plan.register_source == "s3://m/churn/r1"


def test_what_is_recorded_is_not_recorded_again() -> None:
    half = {**SUCCEEDED, "registry": {"name": "churn", "runId": "r-9"}}
    plan = registry.training_sync(trainingjob(half))
    assert plan is not None and plan.run is None and plan.run_id == "r-9"
    done = {**SUCCEEDED, "registry": {"name": "churn", "runId": "r-9", "version": "3"}}
    assert registry.training_sync(trainingjob(done)) is None


def test_a_rejected_model_is_a_run_but_no_version() -> None:
    rejected = {**SUCCEEDED, "conditions": [{"type": "ModelAccepted", "status": "False"}]}
    plan = registry.training_sync(trainingjob(rejected))
    assert plan is not None and plan.run is not None and plan.register_source is None
    assert registry.training_sync(trainingjob({**rejected, "registry": {"runId": "r"}})) is None


def test_nothing_without_registry_or_before_success() -> None:
    assert registry.training_sync(trainingjob({**SUCCEEDED, "phase": "Running"})) is None
    no_registry = trainingjob(SUCCEEDED)
    del no_registry["spec"]["registry"]
    assert registry.training_sync(no_registry) is None


def deployment(status: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"registry": {"name": "churn"}}, "status": status}


def test_canary_is_challenger_stable_is_champion() -> None:
    plan = registry.alias_plan(
        deployment(
            {
                "stableModel": "s3://m/1",
                "canaryModel": "s3://m/2",
                "history": [{"model": "s3://m/2", "outcome": "InProgress"}],
            }
        )
    )
    assert plan == AliasPlan("churn", {CHAMPION: "s3://m/1", CHALLENGER: "s3://m/2"}, ())


def test_promotion_moves_champion_and_removes_challenger() -> None:
    plan = registry.alias_plan(
        deployment(
            {"stableModel": "s3://m/2", "history": [{"model": "s3://m/2", "outcome": "Promoted"}]}
        )
    )
    assert plan == AliasPlan("churn", {CHAMPION: "s3://m/2"}, (CHALLENGER,))
    change = registry.alias_changes(plan, {CHAMPION: "1", CHALLENGER: "2"}, {"s3://m/2": "2"})
    assert change.set == {CHAMPION: "2"} and change.delete == (CHALLENGER,)


def test_rollback_removes_challenger_and_keeps_champion() -> None:
    plan = registry.alias_plan(
        deployment(
            {"stableModel": "s3://m/1", "history": [{"model": "s3://m/3", "outcome": "RolledBack"}]}
        )
    )
    assert plan is not None
    change = registry.alias_changes(plan, {CHAMPION: "1", CHALLENGER: "3"}, {"s3://m/1": "1"})
    assert change.set == {} and change.delete == (CHALLENGER,)


def test_settled_aliases_need_no_call_and_unregistered_models_are_reported() -> None:
    plan = AliasPlan("churn", {CHAMPION: "s3://m/1"}, (CHALLENGER,))
    settled = registry.alias_changes(plan, {CHAMPION: "1"}, {"s3://m/1": "1"})
    assert settled.set == {} and settled.delete == () and settled.unresolved == ()
    unknown = registry.alias_changes(plan, {}, {})
    assert unknown.set == {} and unknown.unresolved == ("s3://m/1",)
