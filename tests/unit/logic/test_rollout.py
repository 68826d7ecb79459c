"""ModelDeployment builders (golden) and the rollout state machine (transition table)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kyklos.api.deployment import ModelDeploymentSpec, ModelSource
from kyklos.logic import rollout
from kyklos.logic.conditions import get_condition
from kyklos.logic.rollout import (
    CanaryPlan,
    ModelNotReady,
    Observed,
    ResolvedModel,
    build_hpa,
    build_service,
    build_serving_deployment,
    canary_replicas,
    decide,
    resolve_model,
)

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
M1 = ResolvedModel("s3://models/iris/1", "v1")
M2 = ResolvedModel("s3://models/iris/2", "v2")
M3 = ResolvedModel("s3://models/iris/3", "v3")
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
        "strategy": {
            "type": "Canary",
            "steps": [
                {"weight": 10, "pause": "30s"},
                {"weight": 50, "pause": "1m"},
                {"weight": 100, "pause": "0s"},
            ],
        },
        "progressDeadlineSeconds": 120,
        "maxCanaryRestarts": 2,
    }
    body.update(overrides)
    return ModelDeploymentSpec.model_validate(body)


def deployment(
    component: str,
    model: ResolvedModel,
    replicas: int,
    ready: int | None = None,
    *,
    generation: int = 1,
    observed_generation: int | None = None,
    conditions: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A Deployment as the API server would show it after the builder's manifest."""
    spec = make_spec()
    body = build_serving_deployment(OWNER, spec, component, model, replicas, "/mnt/kyklos/pvc")
    ready = replicas if ready is None else ready
    body["metadata"]["generation"] = generation
    body["status"] = {
        "observedGeneration": generation if observed_generation is None else observed_generation,
        "replicas": replicas,
        "updatedReplicas": ready,
        "readyReplicas": ready,
        "conditions": conditions or [],
    }
    return body


def pod(model: ResolvedModel, restarts: int) -> dict[str, Any]:
    return {
        "metadata": {"labels": {rollout.REVISION_LABEL: rollout.revision(model, make_spec())}},
        "status": {"containerStatuses": [{"restartCount": restarts}]},
    }


def run(
    spec: ModelDeploymentSpec,
    observed: Observed,
    status: dict[str, Any] | None = None,
    now: datetime = T0,
    model: ResolvedModel | ModelNotReady | None = None,
) -> rollout.Decision:
    return decide(
        spec,
        model if model is not None else resolve_model(spec.model, None),
        observed,
        status,
        now,
        name="iris",
        namespace="ml",
        generation=3,
    )


def cond(decision: rollout.Decision, type: str) -> tuple[str, str]:
    condition = get_condition(decision.conditions, type) or {}
    return str(condition.get("status")), str(condition.get("reason"))


# ------------------------------------------------------------------------------- builders


def test_stable_deployment_matches_golden_manifest() -> None:
    spec = make_spec(
        runtime={
            "image": "registry.test/serve-ok:1",
            "args": ["--port", "8080"],
            "env": {"LOG_LEVEL": "debug", "KYKLOS_MODEL_URI": "ignored"},
            "port": 8080,
            "healthPath": "/ready",
            "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "1Gi"}},
        }
    )
    model = ResolvedModel("pvc://kyklos-artifacts/ml/TrainingJob/iris/r1/model", "iris-r1")
    body = build_serving_deployment(OWNER, spec, rollout.STABLE, model, 4, "/mnt/kyklos/pvc")
    golden = json.loads((GOLDEN / "rollout_stable_deployment.json").read_text())
    assert body == golden


def test_status_selector_for_the_scale_subresource_matches_stable_and_canary_pods() -> None:
    """An HPA on /scale counts the pods `status.selector` matches: every serving pod."""
    decision = run(make_spec(), Observed(stable=deployment("stable", M2, 4)))
    selector = dict(term.split("=", 1) for term in decision.status["selector"].split(","))
    for component, model in ((rollout.STABLE, M1), (rollout.CANARY, M2)):
        body = build_serving_deployment(OWNER, make_spec(), component, model, 1, "/p")
        assert selector.items() <= body["spec"]["template"]["metadata"]["labels"].items()
    assert selector["kyklos.io/modeldeployment"] == "iris"
    assert decision.status["replicas"] == 4


def test_service_selects_stable_and_canary_pods() -> None:
    service = build_service(OWNER, make_spec())
    stable = build_serving_deployment(OWNER, make_spec(), rollout.STABLE, M1, 3, "/p")
    canary = build_serving_deployment(OWNER, make_spec(), rollout.CANARY, M2, 1, "/p")
    selector = service["spec"]["selector"]
    for child in (stable, canary):
        pod_labels = child["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= pod_labels.items()
    # The two Deployments' own selectors must not overlap, or they would fight over pods.
    assert stable["spec"]["selector"] != canary["spec"]["selector"]
    assert service["metadata"]["name"] == "iris"
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}
    ]
    assert service["metadata"]["ownerReferences"][0]["uid"] == "u-1"


def test_serving_containers_get_model_env_probe_and_restricted_context() -> None:
    body = build_serving_deployment(OWNER, make_spec(), rollout.CANARY, M2, 1, "/p")
    assert body["metadata"]["name"] == "iris-canary"
    pod_spec = body["spec"]["template"]["spec"]
    container = pod_spec["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["KYKLOS_MODEL_URI"] == M2.uri
    assert env["KYKLOS_MODEL_VERSION"] == "v2"
    assert "KYKLOS_PVC_ROOT" not in env  # no pvc:// model, nothing mounted
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod_spec["automountServiceAccountToken"] is False
    assert rollout.deployment_model(body) == M2


def test_hpa_targets_the_stable_deployment_only_with_autoscaling() -> None:
    assert build_hpa(OWNER, make_spec()) is None
    spec = make_spec(autoscaling={"minReplicas": 2, "maxReplicas": 6, "targetCpuUtilization": 70})
    hpa = build_hpa(OWNER, spec)
    assert hpa is not None
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "iris-stable"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert hpa["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_autoscaled_stable_leaves_replicas_to_the_hpa() -> None:
    body = build_serving_deployment(OWNER, make_spec(), rollout.STABLE, M1, None, "/p")
    assert "replicas" not in body["spec"]


@pytest.mark.parametrize(
    ("total", "weight", "expected"),
    [
        (4, 10, 1),  # 0.44 -> at least one
        (10, 10, 1),  # 1.11: 1 of 11 pods
        (10, 25, 3),  # 3.33: 3 of 13 pods
        (4, 50, 4),  # half of all pods
        (3, 20, 1),  # 0.75 rounds half up
        (2, 60, 3),  # 3.0: 3 of 5 pods
        (4, 75, 12),  # 12 of 16 pods
        (4, 100, 4),  # full size, then promoted
        (0, 10, 1),  # scaled to zero: still one canary replica
        (20, 1, 1),
    ],
)
def test_canary_share_of_all_pods_is_the_weight_round_half_up_at_least_one(
    total: int, weight: int, expected: int
) -> None:
    assert canary_replicas(total, weight) == expected


# -------------------------------------------------------------------------- model resolution


def training_job(
    phase: str | None,
    *,
    uri: str | None = "pvc://a/m",
    accepted: str | None = None,
    evaluation: bool = True,
    run: str | None = "r7",
    ready_message: str = "",
) -> dict[str, Any]:
    conditions = []
    if accepted is not None:
        conditions.append(
            {
                "type": "ModelAccepted",
                "status": accepted,
                "reason": "X",
                "message": "accuracy 0.5 < 0.9",
            }
        )
    if ready_message:
        conditions.append(
            {"type": "Ready", "status": "False", "reason": "Failed", "message": ready_message}
        )
    status: dict[str, Any] = {"conditions": conditions}
    if phase:
        status["phase"] = phase
    if uri:
        status["modelUri"] = uri
    if run:
        status["run"] = run
    return {
        "metadata": {"name": "train"},
        "spec": {"evaluation": {"metric": "accuracy", "threshold": 0.9} if evaluation else None},
        "status": status,
    }


SOURCE = ModelSource.model_validate({"fromTrainingJob": "train"})


@pytest.mark.parametrize(
    ("job", "needle"),
    [
        (None, "TrainingJob train not found"),
        (training_job("Running"), "TrainingJob train is Running"),
        (training_job(None, uri=None), "TrainingJob train is Pending"),
        (training_job("Failed", ready_message="OOMKilled"), "TrainingJob train failed: OOMKilled"),
        (training_job("Succeeded", accepted="False"), "model was rejected: accuracy 0.5 < 0.9"),
        (training_job("Succeeded", uri=None, accepted="True"), "reports no status.modelUri"),
        (training_job("Succeeded"), "waiting for the evaluation verdict"),
    ],
)
def test_training_job_model_not_ready_names_the_job_and_why(
    job: dict[str, Any] | None, needle: str
) -> None:
    result = resolve_model(SOURCE, job)
    assert isinstance(result, ModelNotReady)
    assert needle in result.message
    assert result.message.startswith("model.fromTrainingJob: ")


def test_accepted_training_job_model_is_served_with_job_run_version() -> None:
    assert resolve_model(SOURCE, training_job("Succeeded", accepted="True")) == ResolvedModel(
        "pvc://a/m", "train-r7"
    )


def test_training_job_without_evaluation_is_accepted_once_succeeded() -> None:
    job = training_job("Succeeded", evaluation=False)
    assert resolve_model(SOURCE, job) == ResolvedModel("pvc://a/m", "train-r7")


def test_uri_version_is_explicit_or_a_stable_digest() -> None:
    explicit = ModelSource.model_validate({"uri": "s3://b/m", "version": "v9"})
    derived = ModelSource.model_validate({"uri": "s3://b/m"})
    assert resolve_model(explicit, None) == ResolvedModel("s3://b/m", "v9")
    first = resolve_model(derived, None)
    assert isinstance(first, ResolvedModel)
    assert first.version == rollout.model_hash("s3://b/m") == resolve_model(derived, None).version  # type: ignore[union-attr]
    assert first.version != rollout.model_hash("s3://b/other")


# ---------------------------------------------------------------------- state machine table


def test_pending_model_creates_nothing_and_says_why() -> None:
    spec = make_spec(model={"fromTrainingJob": "train"})
    decision = run(
        spec, Observed(), model=ModelNotReady("model.fromTrainingJob: TrainingJob train not found")
    )
    assert decision.phase == "Pending"
    assert cond(decision, "Ready") == ("False", "ModelNotReady")
    assert (
        "TrainingJob train not found"
        in (get_condition(decision.conditions, "Ready") or {})["message"]
    )
    assert decision.stable_model is None and decision.canary is None
    assert not decision.autoscale


def test_pending_model_keeps_the_serving_stable_untouched() -> None:
    stable = deployment("stable", M1, 4)
    decision = run(make_spec(), Observed(stable=stable), model=ModelNotReady("not yet"))
    assert decision.phase == "Pending"
    assert decision.stable_model is None  # keep the stable template
    assert decision.canary is None


def test_first_deployment_goes_straight_to_stable_then_becomes_available() -> None:
    spec = make_spec()
    first = run(spec, Observed())
    assert first.phase == "Progressing"
    assert first.stable_model == M2 and first.canary is None
    assert first.stable_replicas == 4
    assert [e.reason for e in first.events] == ["RolloutStarted"]
    assert [m.event for m in first.metrics] == ["started"]
    assert first.status["history"][0]["outcome"] == "InProgress"
    assert first.requeue_after == 120

    waiting = run(
        spec,
        Observed(stable=deployment("stable", M2, 4, ready=2)),
        first.status,
        T0 + timedelta(seconds=10),
    )
    assert waiting.phase == "Progressing"
    assert waiting.status["readyReplicas"] == 2
    assert waiting.events == []
    assert waiting.requeue_after == 110

    done = run(
        spec,
        Observed(stable=deployment("stable", M2, 4)),
        waiting.status,
        T0 + timedelta(seconds=20),
    )
    assert done.phase == "Available"
    assert cond(done, "Ready") == ("True", "Available")
    assert cond(done, "Progressing")[0] == "False"
    assert done.status["stableModel"] == M2.uri
    assert done.status["history"][0]["outcome"] == "Promoted"
    assert done.status["url"] == "http://iris.ml.svc:8080"
    assert done.status["rolloutStartTime"] is None
    assert [m.event for m in done.metrics] == ["promoted"]
    assert done.metrics[0].seconds == 20
    assert done.requeue_after is None


def test_settled_deployment_decides_the_same_status_and_nothing_to_report() -> None:
    spec = make_spec()
    observed = Observed(stable=deployment("stable", M2, 4))
    settled = run(spec, observed, run(spec, observed).status)
    again = run(spec, observed, settled.status, T0 + timedelta(hours=1))
    assert again.status == settled.status
    assert again.events == [] and again.metrics == []
    assert again.requeue_after is None


def test_first_deployment_past_deadline_is_degraded_once() -> None:
    spec = make_spec()
    first = run(spec, Observed())
    late = run(
        spec,
        Observed(stable=deployment("stable", M2, 4, ready=1)),
        first.status,
        T0 + timedelta(seconds=121),
    )
    assert late.phase == "Degraded"
    assert cond(late, "Degraded") == ("True", "ProgressDeadlineExceeded")
    assert [(e.reason, e.warning) for e in late.events] == [("ProgressDeadlineExceeded", True)]
    assert late.status["history"][-1]["outcome"] == "Degraded"
    still = run(
        spec,
        Observed(stable=deployment("stable", M2, 4, ready=1)),
        late.status,
        T0 + timedelta(seconds=200),
    )
    assert still.phase == "Degraded" and still.events == []


def test_deployment_controller_deadline_marks_degraded() -> None:
    spec = make_spec()
    stable = deployment(
        "stable",
        M2,
        4,
        ready=3,
        conditions=[
            {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}
        ],
    )
    assert run(spec, Observed(stable=stable), {"stableModel": M2.uri}).phase == "Degraded"


def test_rolling_update_replaces_the_model_in_place() -> None:
    spec = make_spec(strategy={"type": "RollingUpdate"})
    available = {"stableModel": M1.uri, "phase": "Available"}
    started = run(spec, Observed(stable=deployment("stable", M1, 4)), available)
    assert started.phase == "Progressing"
    assert started.stable_model == M2 and started.canary is None
    assert [e.reason for e in started.events] == ["RolloutStarted"]
    assert started.status["stableModel"] == M1.uri  # not rolled out yet
    # The Deployment controller is working on the new template.
    mid = run(
        spec,
        Observed(stable=deployment("stable", M2, 4, ready=2, generation=2)),
        started.status,
        T0 + timedelta(seconds=5),
    )
    assert mid.phase == "Progressing" and mid.status["stableModel"] == M1.uri
    done = run(
        spec,
        Observed(stable=deployment("stable", M2, 4, generation=2)),
        mid.status,
        T0 + timedelta(seconds=9),
    )
    assert done.phase == "Available" and done.status["stableModel"] == M2.uri
    assert done.status["history"][-1]["strategy"] == "RollingUpdate"
    assert done.status["history"][-1]["outcome"] == "Promoted"


def test_unobserved_generation_is_not_rolled_out() -> None:
    stale = deployment("stable", M2, 4, generation=2, observed_generation=1)
    assert not rollout.rolled_out(stale)
    assert rollout.rolled_out(deployment("stable", M2, 4, generation=2))
    assert not rollout.rolled_out(deployment("stable", M2, 4), want=5)


# ------------------------------------------------------------------------------- canary


def canary_start(
    spec: ModelDeploymentSpec | None = None,
) -> tuple[ModelDeploymentSpec, rollout.Decision]:
    spec = spec or make_spec()
    decision = run(
        spec,
        Observed(stable=deployment("stable", M1, 4)),
        {"stableModel": M1.uri, "phase": "Available"},
    )
    return spec, decision


def test_new_model_starts_a_canary_beside_the_untouched_stable() -> None:
    _spec, start = canary_start()
    assert start.phase == "Progressing"
    assert start.stable_model is None  # the stable keeps its pod template...
    assert start.stable_replicas == 4  # ...and its replica count
    assert start.canary == CanaryPlan(M2, 1)
    assert (start.status["canaryModel"], start.status["canaryWeight"], start.status["step"]) == (
        M2.uri,
        10,
        0,
    )
    assert [e.reason for e in start.events] == ["CanaryStarted"]
    assert [m.event for m in start.metrics] == ["started"]
    assert start.requeue_after == 120


def test_canary_not_ready_waits_until_the_deadline() -> None:
    spec, start = canary_start()
    observed = Observed(
        stable=deployment("stable", M1, 4), canary=deployment("canary", M2, 1, ready=0)
    )
    waiting = run(spec, observed, start.status, T0 + timedelta(seconds=30))
    assert waiting.phase == "Progressing"
    assert cond(waiting, "Progressing") == ("True", "CanaryStep")
    assert waiting.canary == CanaryPlan(M2, 1)
    assert waiting.requeue_after == 90
    assert waiting.events == []


def test_ready_canary_holds_for_the_pause_then_advances() -> None:
    spec, start = canary_start()
    stable = deployment("stable", M1, 4)
    observed = Observed(stable=stable, canary=deployment("canary", M2, 1))
    ready = run(spec, observed, start.status, T0 + timedelta(seconds=10))
    assert ready.status["stepStartTime"] == "2026-11-23T12:00:10Z"
    assert ready.requeue_after == 30
    holding = run(spec, observed, ready.status, T0 + timedelta(seconds=25))
    assert holding.status["step"] == 0 and holding.requeue_after == 15
    advanced = run(spec, observed, holding.status, T0 + timedelta(seconds=40))
    assert advanced.status["step"] == 1 and advanced.status["canaryWeight"] == 50
    assert advanced.canary == CanaryPlan(M2, 4)  # beside 4 stable: half of all pods
    assert advanced.stable_model is None
    assert [e.reason for e in advanced.events] == ["CanaryStep"]
    assert advanced.status["stepStartTime"] is None
    assert advanced.status["rolloutStartTime"] == "2026-11-23T12:00:40Z"


def test_canary_losing_readiness_restarts_the_pause() -> None:
    spec, start = canary_start()
    stable = deployment("stable", M1, 4)
    ready = run(
        spec,
        Observed(stable=stable, canary=deployment("canary", M2, 1)),
        start.status,
        T0 + timedelta(seconds=10),
    )
    lost = run(
        spec,
        Observed(stable=stable, canary=deployment("canary", M2, 1, ready=0)),
        ready.status,
        T0 + timedelta(seconds=20),
    )
    assert lost.status["stepStartTime"] is None
    back = run(
        spec,
        Observed(stable=stable, canary=deployment("canary", M2, 1)),
        lost.status,
        T0 + timedelta(seconds=45),
    )
    assert back.status["step"] == 0 and back.requeue_after == 30


def walk(
    spec: ModelDeploymentSpec,
    stable_replicas: int = 4,
    *,
    status: dict[str, Any] | None = None,
    now: datetime = T0,
) -> list[rollout.Decision]:
    """Drive a healthy rollout to the end: a world that does what each decision asks."""
    status = status if status is not None else {"stableModel": M1.uri, "phase": "Available"}
    stable_model: ResolvedModel = M1
    canary: CanaryPlan | None = None
    decisions = []
    for _ in range(30):
        observed = Observed(
            stable=deployment("stable", stable_model, stable_replicas),
            canary=deployment("canary", canary.model, canary.replicas) if canary else None,
        )
        decision = run(spec, observed, status, now)
        decisions.append(decision)
        status = decision.status
        stable_model = decision.stable_model or stable_model
        canary = decision.canary
        if decision.phase == "Available" and canary is None:
            return decisions
        now += timedelta(seconds=decision.requeue_after or 1)
    raise AssertionError("the rollout never finished")


def test_healthy_canary_walks_every_step_and_is_promoted() -> None:
    decisions = walk(make_spec())
    weights = [d.status["canaryWeight"] for d in decisions if d.status["canaryWeight"]]
    assert sorted(set(weights)) == [10, 50, 100]
    assert weights == sorted(weights)  # never goes back
    replicas = [d.canary.replicas for d in decisions if d.canary]
    assert sorted(set(replicas)) == [1, 4]  # 10 % -> at least one; 50 % and 100 % -> 4
    final = decisions[-1]
    assert final.status["stableModel"] == M2.uri
    assert final.status["canaryModel"] is None and final.status["step"] is None
    assert final.status["history"][-1]["outcome"] == "Promoted"
    assert final.status["history"][-1]["strategy"] == "Canary"
    reasons = [e.reason for d in decisions for e in d.events]
    assert reasons == ["CanaryStarted", "CanaryStep", "CanaryStep", "CanaryStep", "Promoted"]
    # The stable took the new model only after the last step.
    switched = next(i for i, d in enumerate(decisions) if d.stable_model == M2)
    assert decisions[switched - 1].status["canaryWeight"] == 100
    assert cond(final, "Ready") == ("True", "Available")


def test_promotion_keeps_the_canary_until_the_stable_is_rolled_out() -> None:
    spec = make_spec()
    status = {
        "stableModel": M1.uri,
        "canaryModel": M2.uri,
        "step": 2,
        "canaryWeight": 100,
        "rolloutStartTime": "2026-11-23T12:00:00Z",
        "history": [
            {
                "model": M2.uri,
                "strategy": "Canary",
                "outcome": "InProgress",
                "startTime": "2026-11-23T11:58:00Z",
            }
        ],
    }
    rolling = Observed(
        stable=deployment("stable", M2, 4, ready=2, generation=2),
        canary=deployment("canary", M2, 4),
    )
    mid = run(spec, rolling, status, T0 + timedelta(seconds=5))
    assert mid.phase == "Progressing" and mid.canary == CanaryPlan(M2, 4)
    assert mid.status["stableModel"] == M1.uri
    done = run(
        spec,
        Observed(
            stable=deployment("stable", M2, 4, generation=2), canary=deployment("canary", M2, 4)
        ),
        mid.status,
        T0 + timedelta(seconds=9),
    )
    assert done.canary is None and done.status["stableModel"] == M2.uri
    assert done.metrics[0].event == "promoted" and done.metrics[0].seconds == 129
    assert [e.reason for e in done.events] == ["Promoted"]
    # The canary's deletion is not observed yet: the same promotion is not reported twice.
    lagging = run(
        spec,
        Observed(
            stable=deployment("stable", M2, 4, generation=2), canary=deployment("canary", M2, 4)
        ),
        done.status,
        T0 + timedelta(seconds=10),
    )
    assert lagging.canary is None and lagging.events == [] and lagging.metrics == []
    assert lagging.status["history"] == done.status["history"]


def test_crash_looping_canary_is_rolled_back_without_touching_the_stable() -> None:
    spec, start = canary_start()
    stable = deployment("stable", M1, 4)
    observed = Observed(
        stable=stable, canary=deployment("canary", M2, 1, ready=0), canary_pods=[pod(M2, 3)]
    )
    rolled = run(spec, observed, start.status, T0 + timedelta(seconds=40))
    assert rolled.phase == "RolledBack"
    assert rolled.canary is None
    assert rolled.stable_model is None and rolled.stable_replicas == 4
    assert rolled.status["failedModel"] == M2.uri
    assert rolled.status["stableModel"] == M1.uri
    assert rolled.status["canaryModel"] is None
    assert cond(rolled, "Degraded") == ("True", "CrashLoop")
    assert cond(rolled, "Ready") == ("False", "RolledBack")
    [event] = rolled.events
    assert event.reason == "RolledBack" and event.warning
    assert M2.uri in event.message and "restarted 3 times" in event.message
    assert [m.event for m in rolled.metrics] == ["rolled_back"]
    assert rolled.status["history"][-1]["outcome"] == "RolledBack"


def test_restarts_at_the_limit_are_tolerated() -> None:
    spec, start = canary_start()
    observed = Observed(
        stable=deployment("stable", M1, 4),
        canary=deployment("canary", M2, 1, ready=0),
        canary_pods=[pod(M2, 2)],
    )
    assert run(spec, observed, start.status, T0 + timedelta(seconds=5)).phase == "Progressing"


def test_restarts_of_an_older_canary_model_do_not_count() -> None:
    spec, start = canary_start()
    observed = Observed(
        stable=deployment("stable", M1, 4),
        canary=deployment("canary", M2, 1, ready=0),
        canary_pods=[pod(M3, 9)],
    )
    assert run(spec, observed, start.status, T0 + timedelta(seconds=5)).phase == "Progressing"


def test_never_ready_canary_is_rolled_back_at_the_deadline() -> None:
    spec, start = canary_start()
    observed = Observed(
        stable=deployment("stable", M1, 4), canary=deployment("canary", M2, 1, ready=0)
    )
    before = run(spec, observed, start.status, T0 + timedelta(seconds=119))
    assert before.phase == "Progressing" and before.requeue_after == 1
    rolled = run(spec, observed, start.status, T0 + timedelta(seconds=120))
    assert rolled.phase == "RolledBack"
    assert cond(rolled, "Degraded") == ("True", "ProgressDeadlineExceeded")
    assert "progressDeadlineSeconds=120" in rolled.events[0].message
    assert rolled.canary is None and rolled.stable_model is None


def test_rolled_back_model_is_not_retried_and_stays_quiet() -> None:
    spec, start = canary_start()
    observed = Observed(
        stable=deployment("stable", M1, 4),
        canary=deployment("canary", M2, 1, ready=0),
        canary_pods=[pod(M2, 5)],
    )
    rolled = run(spec, observed, start.status, T0 + timedelta(seconds=40))
    after = run(
        spec,
        Observed(stable=deployment("stable", M1, 4)),
        rolled.status,
        T0 + timedelta(seconds=60),
    )
    assert after.phase == "RolledBack" and after.canary is None
    assert after.events == [] and after.metrics == []
    assert after.status == rolled.status
    assert cond(after, "Degraded") == ("True", "CrashLoop")


def test_a_different_model_after_a_rollback_starts_a_fresh_canary() -> None:
    status = {"stableModel": M1.uri, "failedModel": M2.uri, "phase": "RolledBack"}
    spec = make_spec(model={"uri": M3.uri, "version": M3.version})
    fresh = run(spec, Observed(stable=deployment("stable", M1, 4)), status)
    assert fresh.canary == CanaryPlan(M3, 1)
    assert fresh.status["failedModel"] == M2.uri
    assert [e.reason for e in fresh.events] == ["CanaryStarted"]


def test_model_changed_mid_canary_restarts_the_canary_with_the_newest_model() -> None:
    _spec, start = canary_start()
    stable = deployment("stable", M1, 4)
    at_step_1 = {**start.status, "step": 1, "canaryWeight": 50}
    spec3 = make_spec(model={"uri": M3.uri, "version": M3.version})
    restarted = run(
        spec3,
        Observed(stable=stable, canary=deployment("canary", M2, 2)),
        at_step_1,
        T0 + timedelta(seconds=70),
    )
    assert restarted.canary == CanaryPlan(M3, 1)
    assert restarted.status["step"] == 0 and restarted.status["canaryModel"] == M3.uri
    assert restarted.stable_model is None
    assert [e.reason for e in restarted.events] == ["CanaryRestarted", "CanaryStarted"]
    outcomes = [(h["model"], h["outcome"]) for h in restarted.status["history"]]
    assert outcomes == [(M2.uri, "Superseded"), (M3.uri, "InProgress")]


@pytest.mark.parametrize(
    ("strategy", "superseded_by"),
    [
        ({"type": "Canary", "steps": [{"weight": 50, "pause": "0s"}]}, "a canary of model"),
        ({"type": "RollingUpdate"}, "a rolling update to"),
    ],
)
def test_a_new_rollout_supersedes_a_first_deployment_still_in_progress(
    strategy: dict[str, Any], superseded_by: str
) -> None:
    """Every rollout started ends: none stays InProgress once a newer one took over."""
    first = run(make_spec(model={"uri": M1.uri, "version": M1.version}), Observed())
    assert [(h["model"], h["outcome"]) for h in first.status["history"]] == [(M1.uri, "InProgress")]
    # M2 arrives while the first deployment's stable has 2 of 4 replicas ready.
    spec = make_spec(strategy=strategy)
    started = run(
        spec,
        Observed(stable=deployment("stable", M1, 4, ready=2)),
        first.status,
        T0 + timedelta(seconds=30),
    )
    assert [(h["model"], h["strategy"], h["outcome"]) for h in started.status["history"]] == [
        (M1.uri, "RollingUpdate", "Superseded"),
        (M2.uri, strategy["type"], "InProgress"),
    ]
    closed = started.status["history"][0]
    assert closed["endTime"] == "2026-11-23T12:00:30Z"
    assert closed["message"] == f"superseded by {superseded_by} {M2.uri}"
    # Counted and timed like a superseded canary.
    assert [(m.event, m.seconds) for m in started.metrics] == [
        ("superseded", 30.0),
        ("started", None),
    ]

    decisions = walk(spec, status=started.status, now=T0 + timedelta(seconds=31))
    final = decisions[-1]
    assert [(h["model"], h["outcome"]) for h in final.status["history"]] == [
        (M1.uri, "Superseded"),
        (M2.uri, "Promoted"),
    ]
    events = [m.event for d in [first, started, *decisions] for m in d.metrics]
    assert events.count("started") == 2
    assert events.count("superseded") + events.count("promoted") == 2


def test_model_set_back_to_stable_mid_canary_removes_the_canary() -> None:
    _spec, start = canary_start()
    back = make_spec(model={"uri": M1.uri, "version": M1.version})
    decision = run(
        back,
        Observed(stable=deployment("stable", M1, 4), canary=deployment("canary", M2, 1)),
        start.status,
        T0 + timedelta(seconds=5),
    )
    assert decision.canary is None and decision.phase == "Available"
    assert decision.status["history"][-1]["outcome"] == "Superseded"


def test_failing_canary_without_auto_rollback_is_left_running_degraded() -> None:
    spec, start = canary_start(make_spec(autoRollback=False))
    observed = Observed(
        stable=deployment("stable", M1, 4),
        canary=deployment("canary", M2, 1, ready=0),
        canary_pods=[pod(M2, 7)],
    )
    degraded = run(spec, observed, start.status, T0 + timedelta(seconds=5))
    assert degraded.phase == "Degraded"
    assert degraded.canary == CanaryPlan(M2, 1)
    assert degraded.status["failedModel"] is None
    assert cond(degraded, "Degraded") == ("True", "CrashLoop")
    again = run(spec, observed, degraded.status, T0 + timedelta(seconds=6))
    assert again.events == []


def test_scaling_replicas_mid_canary_keeps_the_ratio() -> None:
    _spec, start = canary_start()
    at_50 = {**start.status, "step": 1, "canaryWeight": 50}
    scaled = make_spec(replicas=10)
    decision = run(
        scaled,
        Observed(stable=deployment("stable", M1, 4), canary=deployment("canary", M2, 4)),
        at_50,
        T0 + timedelta(seconds=5),
    )
    assert decision.stable_replicas == 10
    assert decision.canary == CanaryPlan(M2, 10)
    assert decision.status["replicas"] == 20


def test_autoscaled_canary_follows_the_hpa_replica_count() -> None:
    spec = make_spec(autoscaling={"minReplicas": 2, "maxReplicas": 20})
    _, start = canary_start(spec)
    observed = Observed(
        stable=deployment("stable", M1, 8), canary=deployment("canary", M2, 1, ready=0)
    )
    decision = run(spec, observed, {**start.status, "step": 1}, T0)
    assert decision.stable_replicas is None  # the HPA owns the stable count
    assert decision.canary == CanaryPlan(M2, 8)  # 50 %: as many as the HPA's 8 stable
    assert decision.autoscale


def test_lost_status_mid_canary_restarts_the_step_clock_safely() -> None:
    spec = make_spec()
    observed = Observed(stable=deployment("stable", M1, 4), canary=deployment("canary", M2, 1))
    decision = run(spec, observed, {}, T0)
    assert decision.phase == "Progressing"
    assert (
        decision.status["step"] == 0
        and decision.status["rolloutStartTime"] == "2026-11-23T12:00:00Z"
    )
    assert decision.canary == CanaryPlan(M2, 1)
    assert decision.stable_model is None  # keep the stable template


def test_history_is_bounded_to_ten_rollouts() -> None:
    history = [
        {
            "model": f"s3://m/{i}",
            "strategy": "Canary",
            "outcome": "Promoted",
            "startTime": "2026-11-01T00:00:00Z",
        }
        for i in range(10)
    ]
    _spec, _start = canary_start()
    decision = run(
        make_spec(),
        Observed(stable=deployment("stable", M1, 4)),
        {"stableModel": M1.uri, "history": history},
    )
    assert len(decision.status["history"]) == 10
    assert decision.status["history"][-1]["model"] == M2.uri
    assert decision.status["history"][0]["model"] == "s3://m/1"


def test_new_server_image_with_the_same_model_goes_through_the_canary() -> None:
    spec = make_spec(model={"uri": M1.uri, "version": M1.version})
    stable = deployment("stable", M1, 4)  # built with serve-ok:1
    new_image = make_spec(
        model={"uri": M1.uri, "version": M1.version},
        runtime={"image": "registry.test/serve-ok:2", "port": 8080, "healthPath": "/ready"},
    )
    assert rollout.revision(M1, spec) != rollout.revision(M1, new_image)
    decision = run(new_image, Observed(stable=stable), {"stableModel": M1.uri})
    assert decision.canary == CanaryPlan(M1, 1)
    assert decision.stable_model is None  # the stable keeps serve-ok:1 until promotion


def test_failed_revision_is_not_retried_but_a_fixed_runtime_is() -> None:
    crash = make_spec(
        runtime={"image": "registry.test/crash:1", "port": 8080, "healthPath": "/ready"}
    )
    start = run(crash, Observed(stable=deployment("stable", M1, 4)), {"stableModel": M1.uri})
    bad = rollout.revision(M2, crash)
    observed = Observed(
        stable=deployment("stable", M1, 4),
        canary=deployment("canary", M2, 1, ready=0),
        canary_pods=[
            {
                "metadata": {"labels": {rollout.REVISION_LABEL: bad}},
                "status": {"containerStatuses": [{"restartCount": 3}]},
            }
        ],
    )
    # The test helper builds Deployments from make_spec(): give the canary the crash revision.
    assert observed.canary is not None
    observed.canary["spec"]["template"]["metadata"]["annotations"][rollout.REVISION_ANNOTATION] = (
        bad
    )
    rolled = run(crash, observed, start.status, T0 + timedelta(seconds=5))
    assert rolled.phase == "RolledBack"
    assert (rolled.status["failedModel"], rolled.status["failedRevision"]) == (M2.uri, bad)
    again = run(
        crash,
        Observed(stable=deployment("stable", M1, 4)),
        rolled.status,
        T0 + timedelta(seconds=9),
    )
    assert again.phase == "RolledBack" and again.canary is None
    fixed = run(
        make_spec(),
        Observed(stable=deployment("stable", M1, 4)),
        rolled.status,
        T0 + timedelta(seconds=9),
    )
    assert fixed.canary == CanaryPlan(M2, 1)
    assert [e.reason for e in fixed.events] == ["CanaryStarted"]


def test_promotion_start_seen_again_with_a_stale_stable_is_not_reported_twice() -> None:
    spec = make_spec(strategy={"type": "Canary", "steps": [{"weight": 50, "pause": "10s"}]})
    stable = deployment("stable", M1, 4)
    observed = Observed(stable=stable, canary=deployment("canary", M2, 4))
    start = run(spec, observed, {"stableModel": M1.uri})
    ready = run(spec, observed, start.status, T0 + timedelta(seconds=1))
    promote = run(spec, observed, ready.status, T0 + timedelta(seconds=11))
    assert promote.stable_model == M2
    assert [e.reason for e in promote.events] == ["CanaryStep"]
    # The stable Deployment in this view still has M1 (its patch is not observed yet).
    again = run(spec, observed, promote.status, T0 + timedelta(seconds=12))
    assert again.stable_model == M2 and again.events == []
    assert again.status == promote.status


def test_malformed_pvc_model_uri_is_not_ready_and_names_the_field() -> None:
    bad = ModelSource.model_validate({"uri": "pvc:///no-claim/model"})
    result = resolve_model(bad, None)
    assert isinstance(result, ModelNotReady)
    assert result.message.startswith("model.uri: ")
    decision = run(make_spec(model={"uri": "pvc:///no-claim/model"}), Observed(), model=result)
    assert decision.phase == "Pending" and decision.stable_model is None


def test_pending_reports_each_new_reason_once_warning_only_when_a_person_must_act() -> None:
    spec = make_spec(model={"fromTrainingJob": "train"})
    missing = run(spec, Observed(), model=resolve_model(SOURCE, None))
    assert [(e.reason, e.warning) for e in missing.events] == [("ModelNotReady", True)]
    same = run(
        spec, Observed(), missing.status, T0 + timedelta(seconds=5), resolve_model(SOURCE, None)
    )
    assert same.events == [] and same.status == missing.status
    running = resolve_model(SOURCE, training_job("Running"))
    waiting = run(spec, Observed(), same.status, T0 + timedelta(seconds=9), running)
    assert [(e.reason, e.warning) for e in waiting.events] == [("ModelNotReady", False)]
    rejected = resolve_model(SOURCE, training_job("Succeeded", accepted="False"))
    assert isinstance(rejected, ModelNotReady) and rejected.warning


def test_parse_spec_returns_the_spec_or_an_invalid_spec_decision_naming_the_field() -> None:
    good = {**OWNER, "spec": make_spec().model_dump(by_alias=True, exclude_none=True)}
    spec, invalid = rollout.parse_spec(good, T0)
    assert spec == make_spec() and invalid is None
    stored = {"phase": "Stable", "stableModel": {"uri": M1.uri}}
    bad = {**OWNER, "spec": {**good["spec"], "replicas": "many"}, "status": stored}
    spec, invalid = rollout.parse_spec(bad, T0)
    assert spec is None and invalid is not None
    ready = get_condition(invalid.status["conditions"], "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec")
    assert ready["message"].startswith("spec.replicas: ")
    assert invalid.status["observedGeneration"] == 3
    assert "phase" not in invalid.status  # what runs keeps running (and its phase)
    assert (invalid.event.reason, invalid.event.warning) == ("InvalidSpec", True)
    assert invalid.event.message == ready["message"]
