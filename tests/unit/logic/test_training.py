"""TrainingJob logic: Job/Service builders (golden), metrics, the gate, and the state machine as a table."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from kyklos.api.training import TrainingJobSpec
from kyklos.logic.conditions import get_condition, status_after, status_patch
from kyklos.logic.training import (
    COMPLETION_INDEX_ANNOTATION,
    JOB_NAME_LIMIT,
    SPEC_HASH_ANNOTATION,
    Decision,
    Lineage,
    Observation,
    Settings,
    SpecError,
    build_job,
    build_service,
    decide,
    describe_rejection,
    evaluate,
    expand_model_uri,
    job_name,
    needs_pods,
    parse_metrics,
    run_id,
    service_name,
)

GOLDEN = Path(__file__).parent / "golden"
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
NOW_TS = "2026-11-23T12:00:00Z"
UID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
SETTINGS = Settings(artifacts_uri="pvc://kyklos-artifacts", pvc_root="/mnt/kyklos/pvc")


def trainingjob(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "churn", "namespace": "ml", "uid": UID, "generation": 1},
        "spec": {"datasetRef": {"name": "churn-data"}, "image": "python:3.12", **spec},
    }
    if status is not None:
        body["status"] = status
    return body


def dataset(
    phase: str = "Ready", version: str | None = "sha256:abc", ready: bool | None = None
) -> dict[str, Any]:
    ready = phase == "Ready" if ready is None else ready
    status: dict[str, Any] = {
        "phase": phase,
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "Profiled" if ready else "Profiling",
                "message": "" if ready else "profile Job running",
            }
        ],
    }
    if version:
        status["version"] = version
    return {
        "metadata": {"name": "churn-data", "namespace": "ml"},
        "spec": {"source": {"uri": "pvc://data/churn/train.csv"}},
        "status": status,
    }


def observe(
    tj: dict[str, Any],
    *,
    ds: dict[str, Any] | None = None,
    job: dict[str, Any] | None = None,
    service: dict[str, Any] | None = None,
    pods: list[dict[str, Any]] | None = None,
    settings: Settings = SETTINGS,
) -> Decision:
    return decide(
        Observation(
            trainingjob=tj,
            dataset=ds,
            job=job,
            service=service,
            settings=settings,
            now=NOW,
            pods=pods,
        )
    )


def created_job(tj: dict[str, Any], ds: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Job the controller would have created for ``tj``, as the API server returns it."""
    decision = observe(tj, ds=ds or dataset())
    assert decision.create_job is not None
    job = json.loads(json.dumps(decision.create_job))
    job["metadata"]["uid"] = "job-uid"
    job["status"] = {}
    return job


def with_status(job: dict[str, Any], **status: Any) -> dict[str, Any]:
    return {**job, "status": status}


def pod(
    message: str | None,
    phase: str = "Succeeded",
    index: str | None = None,
    finished: str = "2026-11-23T11:59:00Z",
) -> dict[str, Any]:
    terminated: dict[str, Any] = {
        "exitCode": 0 if phase == "Succeeded" else 1,
        "finishedAt": finished,
    }
    if message is not None:
        terminated["message"] = message
    meta: dict[str, Any] = {"ownerReferences": [{"uid": "job-uid"}]}
    if index is not None:
        meta["annotations"] = {COMPLETION_INDEX_ANNOTATION: index}
    return {
        "metadata": meta,
        "status": {
            "phase": phase,
            "containerStatuses": [{"name": "trainer", "state": {"terminated": terminated}}],
        },
    }


def ready(decision: Decision) -> dict[str, Any]:
    condition = get_condition(decision.status["conditions"], "Ready")
    assert condition is not None
    return dict(condition)


def accepted(decision: Decision) -> dict[str, Any] | None:
    condition = get_condition(decision.status["conditions"], "ModelAccepted")
    return dict(condition) if condition is not None else None


def settle(tj: dict[str, Any], decision: Decision) -> dict[str, Any]:
    """``tj`` with the status the decision wrote."""
    return {**tj, "status": status_after(tj.get("status"), decision.status)}


# ------------------------------------------------------------------------------------ builders


def _check_golden(name: str, manifest: dict[str, Any]) -> None:
    path = GOLDEN / name
    if os.environ.get("KYKLOS_UPDATE_GOLDEN"):
        path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    assert manifest == json.loads(path.read_text())


def test_single_worker_job_matches_the_golden_manifest() -> None:
    spec = TrainingJobSpec.model_validate(
        {
            "datasetRef": {"name": "churn-data"},
            "image": "ghcr.io/acme/trainer:1.2",
            "command": ["python", "-m", "train"],
            "args": ["--epochs", "3"],
            "env": {"LOG_LEVEL": "debug"},
            "hyperparameters": {"lr": "0.1", "epochs": "3"},
            "resources": {
                "requests": {"cpu": "500m", "memory": "1Gi"},
                "limits": {"memory": "2Gi"},
            },
            "nodeSelector": {"pool": "cpu"},
            "tolerations": [
                {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
            ],
            "serviceAccountName": "trainer",
            "backoffLimit": 3,
            "activeDeadlineSeconds": 3600,
            "ttlSecondsAfterFinished": 86400,
            "queueName": "team-a",
        }
    )
    lineage = Lineage(
        run="0f1e2d3c",
        dataset_uri="pvc://data/churn/train.csv",
        dataset_version="sha256:abc",
        model_uri="pvc://kyklos-artifacts/ml/TrainingJob/churn/0f1e2d3c/model",
        dataset_secret="data-creds",
    )
    settings = replace(SETTINGS, artifacts_secret="artifact-creds")
    _check_golden("training_job_single.json", build_job(trainingjob(), spec, lineage, settings))


def test_distributed_job_and_service_match_the_golden_manifests() -> None:
    spec = TrainingJobSpec.model_validate(
        {
            "datasetRef": {"name": "churn-data"},
            "image": "python:3.12",
            "workers": 3,
            "masterPort": 23456,
        }
    )
    lineage = Lineage(
        "0f1e2d3c", "s3://bucket/churn.parquet", "etag:1", "s3://models/churn/0f1e2d3c"
    )
    manifests = {
        "job": build_job(trainingjob(), spec, lineage, SETTINGS),
        "service": build_service(trainingjob(), spec),
    }
    _check_golden("training_job_distributed.json", manifests)


def test_distributed_env_gives_each_index_its_rank_and_the_index0_master() -> None:
    spec = TrainingJobSpec.model_validate(
        {"datasetRef": {"name": "d"}, "image": "python:3.12", "workers": 4}
    )
    lineage = Lineage("r", "file:///data/x.csv", "v1", "file:///models/m")
    job = build_job(trainingjob(), spec, lineage, SETTINGS)
    pod_spec = job["spec"]["template"]["spec"]
    env = {e["name"]: e for e in pod_spec["containers"][0]["env"]}
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4
    assert env["WORLD_SIZE"]["value"] == "4"
    assert env["RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"
    )
    assert pod_spec["subdomain"] == service_name("churn")
    assert env["MASTER_ADDR"]["value"] == f"{job_name('churn')}-0.{service_name('churn')}.ml.svc"
    assert env["MASTER_PORT"]["value"] == "29500"
    # file:// URIs need no volume; their local paths are offered.
    assert env["KYKLOS_DATASET_PATH"]["value"] == "/data/x.csv"
    assert env["KYKLOS_MODEL_PATH"]["value"] == "/models/m"
    assert "volumes" not in pod_spec


def test_single_worker_is_rank_0_of_1_without_a_master() -> None:
    spec = TrainingJobSpec.model_validate({"datasetRef": {"name": "d"}, "image": "python:3.12"})
    job = build_job(trainingjob(), spec, Lineage("r", "s3://b/k", "v", "s3://m"), SETTINGS)
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert (env["WORLD_SIZE"], env["RANK"]) == ("1", "0")
    assert "MASTER_ADDR" not in env and "completionMode" not in job["spec"]
    assert "subdomain" not in job["spec"]["template"]["spec"]


def test_user_env_follows_kyklos_env_and_hyperparameters_are_json() -> None:
    spec = TrainingJobSpec.model_validate(
        {
            "datasetRef": {"name": "d"},
            "image": "python:3.12",
            "env": {"B": "2", "A": "1"},
            "hyperparameters": {"lr": "0.1"},
        }
    )
    env = build_job(trainingjob(), spec, Lineage("r", "s3://b/k", "v", "s3://m"), SETTINGS)["spec"][
        "template"
    ]["spec"]["containers"][0]["env"]
    names = [e["name"] for e in env]
    assert names[-2:] == ["B", "A"]
    assert json.loads(next(e["value"] for e in env if e["name"] == "KYKLOS_HYPERPARAMETERS")) == {
        "lr": "0.1"
    }


@pytest.mark.parametrize(
    ("name", "expect_prefix"),
    [
        ("churn", "churn-train"),
        ("churn.v2", "churn-v2-train"),
        ("2026-retrain", "tj-2026-retrain-train"),
        ("x" * 253, None),
    ],
)
def test_job_names_are_dns_labels_with_room_for_the_index(
    name: str, expect_prefix: str | None
) -> None:
    job, svc = job_name(name), service_name(name)
    assert len(job) <= JOB_NAME_LIMIT and len(svc) <= 63
    assert svc[0].isalpha() and "." not in job and "." not in svc
    if expect_prefix:
        assert job == expect_prefix
    assert job_name(name) == job  # deterministic


def test_run_id_is_the_uid_prefix() -> None:
    assert run_id(UID) == "0f1e2d3c"


def test_model_uri_default_and_template() -> None:
    assert (
        expand_model_uri(None, namespace="ml", name="churn", run="r1", artifacts_uri="file:///art/")
        == "file:///art/ml/TrainingJob/churn/r1/model"
    )
    assert (
        expand_model_uri(
            "s3://models/{namespace}/{name}-{run}.pkl",
            namespace="ml",
            name="churn",
            run="r1",
            artifacts_uri="x",
        )
        == "s3://models/ml/churn-r1.pkl"
    )
    with pytest.raises(SpecError, match=r"spec.output.modelUri: unknown placeholder\(s\) \{date\}"):
        expand_model_uri("s3://m/{date}", namespace="ml", name="n", run="r", artifacts_uri="x")


def test_pvc_uris_are_mounted_dataset_read_only_model_writable() -> None:
    decision = observe(trainingjob(), ds=dataset())
    assert decision.create_job is not None
    pod_spec = decision.create_job["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m["readOnly"] for m in pod_spec["containers"][0]["volumeMounts"]}
    assert mounts == {"/mnt/kyklos/pvc/data": True, "/mnt/kyklos/pvc/kyklos-artifacts": False}
    claims = {v["persistentVolumeClaim"]["claimName"] for v in pod_spec["volumes"]}
    assert claims == {"data", "kyklos-artifacts"}
    env = {e["name"]: e.get("value") for e in pod_spec["containers"][0]["env"]}
    assert env["KYKLOS_PVC_ROOT"] == "/mnt/kyklos/pvc"
    assert env["KYKLOS_DATASET_PATH"] == "/mnt/kyklos/pvc/data/churn/train.csv"
    assert env["KYKLOS_MODEL_URI"] == "pvc://kyklos-artifacts/ml/TrainingJob/churn/0f1e2d3c/model"


# ------------------------------------------------------------------------------------ metrics


def test_metrics_keep_finite_numbers_only() -> None:
    parsed = parse_metrics(
        json.dumps({"accuracy": 0.9, "epochs": 3, "ok": True, "name": "x", "nested": {"a": 1}})
    )
    assert parsed == parse_metrics('{"epochs": 3, "accuracy": 0.9}')
    assert parsed.values == {"accuracy": 0.9, "epochs": 3.0} and parsed.error is None
    assert parse_metrics('{"loss": NaN, "acc": Infinity, "f1": 0.5}').values == {"f1": 0.5}


def test_metrics_are_capped_at_64() -> None:
    parsed = parse_metrics(json.dumps({f"m{i:03d}": i for i in range(100)}))
    assert parsed.values is not None and len(parsed.values) == 64
    assert "m000" in parsed.values and "m099" not in parsed.values


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ("accuracy=0.9", "termination message is not JSON"),
        ("[0.9]", "must be a JSON object, got list"),
        ('{"a": ' + "1" * 5000, "probably truncated"),
    ],
)
def test_invalid_metrics_are_an_error_not_a_crash(message: str, error: str) -> None:
    parsed = parse_metrics(message)
    assert parsed.values is None
    assert parsed.error is not None and error in parsed.error


def test_no_message_means_no_metrics_and_no_error() -> None:
    assert parse_metrics(None).values is None and parse_metrics("  ").error is None


@pytest.mark.parametrize(
    ("evaluation", "metrics", "verdict", "reason", "message"),
    [
        (
            {"metric": "accuracy", "threshold": 0.9},
            {"accuracy": 0.91},
            True,
            "ThresholdMet",
            "accuracy 0.91 >= 0.9",
        ),
        (
            {"metric": "accuracy", "threshold": 0.9},
            {"accuracy": 0.9},
            True,
            "ThresholdMet",
            "accuracy 0.9 >= 0.9",
        ),
        (
            {"metric": "accuracy", "threshold": 0.9},
            {"accuracy": 0.8},
            False,
            "BelowThreshold",
            "accuracy 0.8 < 0.9",
        ),
        (
            {"metric": "loss", "threshold": 0.3, "direction": "min"},
            {"loss": 0.2},
            True,
            "ThresholdMet",
            "loss 0.2 <= 0.3",
        ),
        (
            {"metric": "loss", "threshold": 0.3, "direction": "min"},
            {"loss": 0.4},
            False,
            "BelowThreshold",
            "loss 0.4 > 0.3",
        ),
        (
            {"metric": "auc", "threshold": 0.7},
            {"accuracy": 0.9},
            False,
            "MetricMissing",
            "metric auc (spec.evaluation.metric) was not reported by the trainer; reported: accuracy",
        ),
        ({"metric": "auc", "threshold": 0.7}, None, False, "MetricMissing", "reported: none"),
        (None, {"accuracy": 0.1}, True, "NoEvaluation", "no evaluation gate"),
    ],
)
def test_evaluation_gate(
    evaluation: dict[str, Any] | None,
    metrics: dict[str, float] | None,
    verdict: bool,
    reason: str,
    message: str,
) -> None:
    spec = TrainingJobSpec.model_validate(
        {"datasetRef": {"name": "d"}, "image": "python:3.12", "evaluation": evaluation}
    )
    result = evaluate(spec.evaluation, metrics)
    assert (result.accepted, result.reason.value) == (verdict, reason)
    assert message in result.message


def test_rejection_names_the_trainingjob_field() -> None:
    status = {
        "message": 'Job.batch "x" is invalid: ...',
        "details": {
            "causes": [
                {
                    "field": "spec.template.spec.containers[0].resources.requests",
                    "message": 'Invalid value: "2": must be less than or equal to cpu limit of 1',
                }
            ]
        },
    }
    text = describe_rejection(status, "Unprocessable Entity")
    assert text.startswith("spec.resources: Invalid value")
    assert "rejected the training Job" in text
    assert "Unprocessable" in describe_rejection(None, "Unprocessable Entity")


# ------------------------------------------------------------------------------------ state machine


@pytest.mark.parametrize(
    ("ds", "pinned", "message"),
    [
        (None, None, "dataset churn-data not found (spec.datasetRef.name)"),
        (
            dataset("Profiling", version=None),
            None,
            "dataset churn-data is not Ready (phase Profiling): profile Job running",
        ),
        (dataset("Failed", version=None), None, "is not Ready (phase Failed)"),
        (
            dataset(),
            "sha256:def",
            "is at version sha256:abc; waiting for the pinned version sha256:def",
        ),
    ],
)
def test_waits_for_the_dataset(ds: dict[str, Any] | None, pinned: str | None, message: str) -> None:
    ref = {"name": "churn-data", **({"version": pinned} if pinned else {})}
    decision = observe(trainingjob(datasetRef=ref), ds=ds)
    assert decision.create_job is None and decision.create_service is None
    assert decision.status["phase"] == "Pending"
    condition = ready(decision)
    assert (condition["status"], condition["reason"]) == ("False", "DatasetNotReady")
    assert message in condition["message"]
    assert [e.reason for e in decision.events] == ["DatasetNotReady"]


def test_waiting_again_is_silent() -> None:
    tj = trainingjob()
    first = observe(tj, ds=None)
    again = observe(settle(tj, first), ds=None)
    assert again.events == [] and status_patch(settle(tj, first)["status"], again.status) == {}


def test_ready_dataset_creates_the_job_and_pins_lineage() -> None:
    decision = observe(
        trainingjob(datasetRef={"name": "churn-data", "version": "sha256:abc"}), ds=dataset()
    )
    assert decision.create_job is not None and decision.create_service is None
    status = decision.status
    assert status["phase"] == "Pending"
    assert status["jobName"] == "churn-train" == decision.create_job["metadata"]["name"]
    assert status["run"] == "0f1e2d3c"
    assert status["datasetVersion"] == "sha256:abc"
    assert status["datasetUri"] == "pvc://data/churn/train.csv"
    assert status["modelUri"] == "pvc://kyklos-artifacts/ml/TrainingJob/churn/0f1e2d3c/model"
    assert ready(decision)["reason"] == "JobCreated"
    assert [(e.reason, e.warning) for e in decision.events] == [("JobCreated", False)]
    assert "on dataset churn-data version sha256:abc" in decision.events[0].message
    assert decision.create_job["metadata"]["ownerReferences"][0]["uid"] == UID


def test_distributed_creates_job_and_headless_service() -> None:
    decision = observe(trainingjob(workers=3), ds=dataset())
    assert decision.create_job is not None and decision.create_service is not None
    assert decision.create_service["spec"]["clusterIP"] == "None"
    assert decision.create_job["spec"]["completions"] == 3


def test_suspend_creates_a_suspended_job() -> None:
    decision = observe(trainingjob(suspend=True), ds=dataset())
    assert decision.create_job is not None and decision.create_job["spec"]["suspend"] is True
    assert ready(decision)["reason"] == "Suspended"


def test_queue_name_labels_the_job_and_leaves_suspend_to_kueue() -> None:
    tj = trainingjob(queueName="team-a")
    decision = observe(tj, ds=dataset())
    assert decision.create_job is not None
    assert decision.create_job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert decision.create_job["spec"]["suspend"] is True
    assert "waiting for Kueue queue team-a" in ready(decision)["message"]
    # Kueue admitted it (unsuspended): the operator does not suspend it again.
    job = created_job(tj)
    job["spec"]["suspend"] = False
    later = observe(
        settle(tj, decision), ds=dataset(), job=with_status(job, startTime=NOW_TS, active=1)
    )
    assert later.patch_job is None and later.status["phase"] == "Running"


def test_unsuspending_before_start_patches_the_job() -> None:
    tj = trainingjob(suspend=True)
    first = observe(tj, ds=dataset())
    job = with_status(
        created_job(tj),
        conditions=[{"type": "Suspended", "status": "True", "reason": "JobSuspended"}],
    )
    edited = settle(trainingjob(suspend=False), first)
    decision = observe(edited, ds=dataset(), job=job)
    assert decision.patch_job == {"spec": {"suspend": False}}
    assert decision.delete_job is None and decision.create_job is None
    assert decision.status["phase"] == "Pending" and ready(decision)["reason"] == "JobCreated"
    # The Job controller has not cleared its Suspended condition yet: still not "Suspended".
    job["spec"]["suspend"] = False
    again = observe(settle(edited, decision), ds=dataset(), job=job)
    assert again.patch_job is None and again.events == [] and ready(again)["reason"] == "JobCreated"


def test_other_edits_before_start_replace_the_job() -> None:
    tj = trainingjob(suspend=True)
    first = observe(tj, ds=dataset())
    job = created_job(tj)
    edited = settle(trainingjob(suspend=True, image="python:3.13"), first)
    decision = observe(edited, ds=dataset(), job=job)
    assert decision.delete_job == "churn-train"
    assert decision.create_job is None
    assert decision.status["jobName"] is None
    # The next reconcile (Job gone) creates the new one, not a "recreated" one.
    after = observe(settle(edited, decision), ds=dataset())
    assert after.create_job is not None
    assert after.create_job["spec"]["template"]["spec"]["containers"][0]["image"] == "python:3.13"
    assert ready(after)["reason"] == "Suspended"


def test_a_started_job_is_never_replaced() -> None:
    tj = trainingjob()
    first = observe(tj, ds=dataset())
    job = with_status(created_job(tj), startTime=NOW_TS, active=1)
    # Same spec but the builder changed (e.g. an operator upgrade): hash differs, Job kept.
    job["metadata"]["annotations"][SPEC_HASH_ANNOTATION] = "old"
    decision = observe(settle(tj, first), ds=dataset(), job=job)
    assert decision.delete_job is None and decision.status["phase"] == "Running"


def test_running_records_start_and_counts_a_start() -> None:
    tj = trainingjob()
    first = observe(tj, ds=dataset())
    job = with_status(created_job(tj), startTime="2026-11-23T11:58:00Z", active=1)
    decision = observe(settle(tj, first), ds=dataset(), job=job)
    assert decision.status["phase"] == "Running"
    assert decision.status["startTime"] == "2026-11-23T11:58:00Z"
    assert decision.transitions == ["started"]
    assert [e.reason for e in decision.events] == ["Running"]
    # Settled: the same observation again writes nothing and says nothing.
    settled = settle(settle(tj, first), decision)
    again = observe(settled, ds=dataset(), job=job)
    assert status_patch(settled["status"], again.status) == {}
    assert again.events == [] and again.transitions == []


UNSCHEDULABLE = "0/2 nodes are available: 2 Insufficient cpu."
TRAINER_POD = "churn-train-x2v9q"


def trainer_pod(
    *,
    unschedulable: str | None = None,
    waiting: tuple[str, str] | None = None,
    running: bool = False,
    owner: str = "job-uid",
) -> dict[str, Any]:
    """A trainer pod as the pod watch sees it: unschedulable, waiting to start, or running."""
    status: dict[str, Any] = {"phase": "Running" if running else "Pending"}
    if unschedulable is not None:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
            }
        ]
    else:
        status["conditions"] = [{"type": "PodScheduled", "status": "True"}]
        state = {"running": {}} if running else {"waiting": {"reason": "ContainerCreating"}}
        if waiting is not None:
            state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
        status["containerStatuses"] = [{"name": "trainer", "state": state}]
    return {
        "metadata": {"name": TRAINER_POD, "ownerReferences": [{"uid": owner}]},
        "status": status,
    }


def watch(tj: dict[str, Any], job: dict[str, Any], pods: list[dict[str, Any]]) -> Decision:
    return decide(Observation(tj, dataset(), job, None, SETTINGS, NOW, watched_pods=pods))


MISSING_SECRET = ("CreateContainerConfigError", 'secret "store-creds" not found')

# (Job status, watched pods, phase, Ready reason, message contains, Events (reason, warning)),
# each row observed after the previous row's status was written.
STUCK_STORY: list[
    tuple[dict[str, Any], list[dict[str, Any]], str, str, str, list[tuple[str, bool]]]
] = [
    # The Job controller made the pod; the scheduler has not placed it: still normal.
    (
        {"startTime": NOW_TS, "active": 1},
        [trainer_pod()],
        "Running",
        "Running",
        "is running",
        [("Running", False)],
    ),
    (
        {"startTime": NOW_TS, "active": 1},
        [trainer_pod(unschedulable=UNSCHEDULABLE)],
        "Running",
        "PodUnschedulable",
        f"Job churn-train: pod {TRAINER_POD} cannot be scheduled: {UNSCHEDULABLE}",
        [("PodUnschedulable", True)],
    ),
    (
        {"startTime": NOW_TS, "active": 1},
        [trainer_pod(waiting=MISSING_SECRET)],
        "Running",
        "PodStartFailed",
        f"pod {TRAINER_POD} container trainer cannot start: "
        'CreateContainerConfigError: secret "store-creds" not found',
        [("PodStartFailed", True)],
    ),
    # Another Job's pod (not ours) says nothing about this one.
    (
        {"startTime": NOW_TS, "active": 1},
        [trainer_pod(running=True), trainer_pod(unschedulable=UNSCHEDULABLE, owner="other")],
        "Running",
        "Running",
        "is running",
        [("Running", False)],
    ),
]


def test_a_trainer_pod_that_does_not_start_is_explained_once_per_change_and_recovers() -> None:
    tj = trainingjob()
    first = observe(tj, ds=dataset())
    tj = settle(tj, first)
    job = created_job(trainingjob())
    for job_status, pods, phase, reason, message, events in STUCK_STORY:
        current = with_status(job, **job_status)
        decision = watch(tj, current, pods)
        assert decision.create_job is None and decision.delete_job is None
        tj = settle(tj, decision)
        condition = get_condition(tj["status"]["conditions"], "Ready")
        assert condition is not None
        assert (tj["status"]["phase"], condition["status"], condition["reason"]) == (
            phase,
            "False",
            reason,
        )
        assert message in condition["message"], condition
        assert [(e.reason, e.warning) for e in decision.events] == events, reason
        # Seen again unchanged: nothing to write, nothing to say.
        again = watch(tj, current, pods)
        assert status_patch(tj["status"], again.status) == {} and again.events == []
    assert tj["status"]["startTime"] == NOW_TS


def test_a_stuck_pod_of_a_job_not_started_yet_keeps_the_phase_pending() -> None:
    tj = trainingjob()
    tj = settle(tj, observe(tj, ds=dataset()))
    job = created_job(trainingjob())  # no startTime, no active count yet
    decision = watch(tj, job, [trainer_pod(unschedulable=UNSCHEDULABLE)])
    assert decision.status["phase"] == "Pending"
    assert ready(decision)["reason"] == "PodUnschedulable"


def test_a_stuck_pod_deleted_at_the_deadline_is_no_recovery_and_its_cause_is_kept() -> None:
    tj, job = running(trainingjob(activeDeadlineSeconds=60))
    active = with_status(job, startTime="2026-11-23T11:50:00Z", active=1)
    tj = settle(tj, watch(tj, active, [trainer_pod(unschedulable=UNSCHEDULABLE)]))
    assert get_condition(tj["status"]["conditions"], "Ready")["reason"] == "PodUnschedulable"  # type: ignore[index]
    # The Job controller deletes the pod first, then marks the Job Failed: nothing in between.
    going = trainer_pod(unschedulable=UNSCHEDULABLE)
    going["metadata"]["deletionTimestamp"] = "2026-11-23T11:51:00Z"
    for pods in ([going], []):
        between = watch(tj, active, pods)
        assert status_patch(tj["status"], between.status) == {} and between.events == []
    failed = with_status(
        job,
        startTime="2026-11-23T11:50:00Z",
        failed=1,
        conditions=[
            {
                "type": "Failed",
                "status": "True",
                "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline",
            }
        ],
    )
    decision = decide(Observation(tj, dataset(), failed, None, SETTINGS, NOW, pods=[]))
    assert decision.status["phase"] == "Failed"
    condition = ready(decision)
    assert condition["reason"] == "DeadlineExceeded"
    assert condition["message"].endswith(
        f"Job was active longer than specified deadline; before that: Job churn-train: "
        f"pod {TRAINER_POD} cannot be scheduled: {UNSCHEDULABLE}"
    )
    assert ("DeadlineExceeded", True) in [(e.reason, e.warning) for e in decision.events]


def test_a_finished_job_is_judged_by_its_outcome_not_by_a_stuck_pod() -> None:
    tj, job = running(trainingjob())
    failed = with_status(
        job,
        startTime="2026-11-23T11:50:00Z",
        failed=1,
        conditions=[
            {
                "type": "Failed",
                "status": "True",
                "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline",
            }
        ],
    )
    decision = decide(
        Observation(
            tj,
            dataset(),
            failed,
            None,
            SETTINGS,
            NOW,
            pods=[],
            watched_pods=[trainer_pod(unschedulable=UNSCHEDULABLE)],
        )
    )
    assert decision.status["phase"] == "Failed"
    assert ready(decision)["reason"] == "DeadlineExceeded"


def running(tj: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    first = observe(tj, ds=dataset())
    job = with_status(created_job(tj), startTime="2026-11-23T11:50:00Z", active=1)
    second = observe(settle(tj, first), ds=dataset(), job=job)
    return settle(settle(tj, first), second), job


def complete(job: dict[str, Any]) -> dict[str, Any]:
    return with_status(
        job,
        startTime="2026-11-23T11:50:00Z",
        completionTime="2026-11-23T11:59:30Z",
        succeeded=1,
        conditions=[{"type": "Complete", "status": "True"}],
    )


def test_success_copies_metrics_and_accepts_the_model() -> None:
    tj, job = running(trainingjob(evaluation={"metric": "accuracy", "threshold": 0.9}))
    done = complete(job)
    obs = Observation(tj, dataset(), done, None, SETTINGS, NOW)
    assert needs_pods(obs)
    decision = observe(tj, ds=dataset(), job=done, pods=[pod('{"accuracy": 0.93, "loss": 0.2}')])
    status = decision.status
    assert status["phase"] == "Succeeded"
    assert status["completionTime"] == "2026-11-23T11:59:30Z"
    assert status["metrics"] == {"accuracy": 0.93, "loss": 0.2}
    assert status["evaluation"] == {
        "metric": "accuracy",
        "value": 0.93,
        "threshold": 0.9,
        "accepted": True,
        "verdict": "ThresholdMet",
    }
    assert (ready(decision)["status"], ready(decision)["reason"]) == ("True", "Succeeded")
    gate = accepted(decision)
    assert (
        gate is not None and gate["status"] == "True" and gate["message"] == "accuracy 0.93 >= 0.9"
    )
    assert [e.reason for e in decision.events] == ["Succeeded", "ThresholdMet"]
    assert decision.transitions == ["succeeded"]
    assert decision.duration_seconds == 570.0
    # Finished is final: later observations (Job gone by TTL, or still there) change nothing.
    final = settle(tj, decision)
    assert not needs_pods(Observation(final, dataset(), done, None, SETTINGS, NOW))
    for later_job in (None, done):
        later = observe(final, ds=None, job=later_job)
        assert later.create_job is None and later.events == []
        assert status_patch(final["status"], later.status) == {}


def test_rejected_model() -> None:
    tj, job = running(trainingjob(evaluation={"metric": "accuracy", "threshold": 0.9}))
    decision = observe(tj, ds=dataset(), job=complete(job), pods=[pod('{"accuracy": 0.8}')])
    gate = accepted(decision)
    assert gate is not None
    assert (gate["status"], gate["reason"], gate["message"]) == (
        "False",
        "BelowThreshold",
        "accuracy 0.8 < 0.9",
    )
    assert decision.status["phase"] == "Succeeded"
    assert [(e.reason, e.warning) for e in decision.events] == [
        ("Succeeded", False),
        ("BelowThreshold", True),
    ]


def test_missing_metric_is_metric_missing() -> None:
    tj, job = running(trainingjob(evaluation={"metric": "auc", "threshold": 0.7}))
    decision = observe(tj, ds=dataset(), job=complete(job), pods=[pod('{"accuracy": 0.8}')])
    gate = accepted(decision)
    assert gate is not None and (gate["status"], gate["reason"]) == ("False", "MetricMissing")


def test_invalid_metrics_warn_once_and_record_none() -> None:
    tj, job = running(trainingjob(evaluation={"metric": "accuracy", "threshold": 0.9}))
    decision = observe(tj, ds=dataset(), job=complete(job), pods=[pod("accuracy: high")])
    assert "metrics" not in decision.status or decision.status["metrics"] is None
    warnings = [e for e in decision.events if e.reason == "MetricsInvalid"]
    assert len(warnings) == 1 and warnings[0].warning
    gate = accepted(decision)
    assert gate is not None and gate["reason"] == "MetricMissing"


def test_distributed_metrics_come_from_index_0() -> None:
    tj, job = running(trainingjob(workers=2))
    pods = [
        pod('{"accuracy": 0.5}', index="1", finished="2026-11-23T11:59:59Z"),
        pod('{"accuracy": 0.9}', index="0", finished="2026-11-23T11:59:00Z"),
    ]
    decision = observe(
        tj,
        ds=dataset(),
        job=complete(job),
        service={"metadata": {"ownerReferences": [{"uid": UID}]}},
        pods=pods,
    )
    assert decision.status["metrics"] == {"accuracy": 0.9}


def test_failure_after_backoff_limit_counts_attempts() -> None:
    tj, job = running(
        trainingjob(backoffLimit=1, evaluation={"metric": "accuracy", "threshold": 0.9})
    )
    failed = with_status(
        job,
        startTime="2026-11-23T11:50:00Z",
        failed=2,
        conditions=[
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": "2026-11-23T11:55:00Z",
            }
        ],
    )
    decision = observe(
        tj, ds=dataset(), job=failed, pods=[pod(None, "Failed"), pod(None, "Failed")]
    )
    status = decision.status
    assert status["phase"] == "Failed" and status["attempts"] == 2
    assert status["completionTime"] == "2026-11-23T11:55:00Z"
    condition = ready(decision)
    assert (condition["status"], condition["reason"]) == ("False", "BackoffLimitExceeded")
    assert "after 2 failed attempts" in condition["message"]
    gate = accepted(decision)
    assert gate is not None and (gate["status"], gate["reason"]) == ("False", "Failed")
    assert decision.transitions == ["failed"]
    assert [(e.reason, e.warning) for e in decision.events] == [
        ("BackoffLimitExceeded", True),
        ("Failed", True),
    ]


def test_deadline_exceeded() -> None:
    tj, job = running(trainingjob(activeDeadlineSeconds=60))
    failed = with_status(
        job, conditions=[{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
    )
    assert ready(observe(tj, ds=dataset(), job=failed, pods=[]))["reason"] == "DeadlineExceeded"


def test_job_deleted_before_the_end_is_recreated_with_the_pinned_lineage() -> None:
    tj, _job = running(trainingjob())
    # The Dataset has moved on meanwhile; the run keeps what it was pinned to.
    decision = observe(tj, ds=dataset(version="sha256:new"))
    assert decision.create_job is not None
    env = {
        e["name"]: e.get("value")
        for e in decision.create_job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["KYKLOS_DATASET_VERSION"] == "sha256:abc"
    assert decision.status["datasetVersion"] == "sha256:abc"
    assert decision.status["startTime"] == "2026-11-23T11:50:00Z"
    assert [(e.reason, e.warning) for e in decision.events] == [("JobRecreated", True)]
    # Even when the Dataset is gone.
    assert observe(tj, ds=None).create_job is not None


def test_distributed_service_deleted_while_running_is_recreated() -> None:
    tj, job = running(trainingjob(workers=2))
    decision = observe(tj, ds=dataset(), job=job, service=None)
    assert decision.create_service is not None and decision.create_job is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"env": {"KYKLOS_MODEL_URI": "x"}}, "spec.env.KYKLOS_MODEL_URI: set by Kyklos"),
        ({"env": {"1BAD": "x"}}, "spec.env.1BAD: not a valid environment variable name"),
        ({"output": {"modelUri": "s3://m/{date}"}}, "spec.output.modelUri: unknown placeholder"),
        ({"output": {"modelUri": "pvc:///no-claim"}}, "spec.output.modelUri"),
        ({"workers": 0}, "spec.workers: Input should be greater than or equal to 1"),
    ],
)
def test_bad_input_is_invalid_spec_without_children(spec: dict[str, Any], message: str) -> None:
    decision = observe(trainingjob(**spec), ds=dataset())
    assert decision.create_job is None and decision.create_service is None
    condition = ready(decision)
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
    assert message in condition["message"]
    assert [(e.reason, e.warning) for e in decision.events] == [("InvalidSpec", True)]


def test_a_job_the_api_server_rejects_is_invalid_spec_until_the_spec_changes() -> None:
    tj = trainingjob()
    message = describe_rejection(
        {
            "details": {
                "causes": [
                    {"field": "spec.template.spec.containers[0].resources.limits", "message": "bad"}
                ]
            }
        },
        "Unprocessable Entity",
    )
    obs = Observation(tj, dataset(), None, None, SETTINGS, NOW, job_rejection=message)
    decision = decide(obs)
    assert decision.create_job is None
    assert (ready(decision)["reason"], ready(decision)["message"]) == ("InvalidSpec", message)
    assert message.startswith("spec.resources: bad")
    assert decision.status["jobName"] is None
    # Not asked again for the same spec (a refused create is a write, every resync) ...
    settled = settle(tj, decision)
    again = observe(settled, ds=dataset())
    assert again.create_job is None and again.events == []
    assert status_patch(settled["status"], again.status) == {}
    # ... but again once the spec is edited (a new generation).
    edited = {**settled, "metadata": {**settled["metadata"], "generation": 2}}
    assert observe(edited, ds=dataset()).create_job is not None


def test_children_of_another_trainingjob_with_the_same_name_are_ignored() -> None:
    tj = trainingjob()
    job = created_job(tj)
    job["metadata"]["ownerReferences"][0]["uid"] = "someone-else"
    decision = observe(tj, ds=dataset(), job=job)
    assert decision.create_job is not None  # ours does not exist yet


def test_seeing_the_just_created_job_writes_nothing() -> None:
    tj = trainingjob()
    first = observe(tj, ds=dataset())
    settled = settle(tj, first)
    again = observe(settled, ds=dataset(), job=created_job(tj))
    assert status_patch(settled["status"], again.status) == {} and again.events == []


def test_a_recreated_job_that_has_not_started_keeps_the_recreated_reason() -> None:
    tj, _job = running(trainingjob())
    recreate = observe(tj, ds=dataset())
    settled = settle(tj, recreate)
    again = observe(settled, ds=dataset(), job=created_job(tj))
    assert ready(again)["reason"] == "JobRecreated" and again.events == []
    assert status_patch(settled["status"], again.status) == {}


def test_a_suspended_job_is_replaced_when_the_dataset_moves_on_before_it_starts() -> None:
    tj = trainingjob(suspend=True)
    first = observe(tj, ds=dataset(version="sha256:abc"))
    settled = settle(tj, first)
    job = created_job(tj, dataset(version="sha256:abc"))
    moved = observe(settled, ds=dataset(version="sha256:new"), job=job)
    assert moved.delete_job == "churn-train"
    assert "dataset churn-data moved to version sha256:new" in ready(moved)["message"]
    again = observe(settle(settled, moved), ds=dataset(version="sha256:new"))
    assert again.create_job is not None and again.status["datasetVersion"] == "sha256:new"
    # Once started, the run keeps the version it was pinned to.
    started = with_status(job, startTime=NOW_TS, active=1)
    kept = observe(settled, ds=dataset(version="sha256:new"), job=started)
    assert kept.delete_job is None and kept.status["datasetVersion"] == "sha256:abc"
