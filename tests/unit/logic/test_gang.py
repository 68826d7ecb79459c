"""Gang restart: one failed worker restarts the whole group, on the same data and run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from kyklos.api.training import TrainingJobSpec
from kyklos.logic.conditions import get_condition, status_after
from kyklos.logic.gang import (
    ENV_RESTART,
    RESTART_ANNOTATION,
    on_job_failed,
    restart_all,
)
from kyklos.logic.training import Observation, Settings, decide

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SETTINGS = Settings(artifacts_uri="s3://artifacts", pvc_root="/p")
DATASET = {
    "metadata": {"name": "d", "namespace": "ml"},
    "spec": {"source": {"uri": "s3://b/d.csv"}},
    "status": {
        "phase": "Ready",
        "version": "etag:1",
        "conditions": [{"type": "Ready", "status": "True", "reason": "Profiled", "message": ""}],
    },
}


def trainingjob(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "ddp", "namespace": "ml", "uid": "0f1e2d3c-aaaa", "generation": 1},
        "spec": {"datasetRef": {"name": "d"}, "image": "python:3.12", "workers": 3, **spec},
    }


def step(tj: dict[str, Any], job: dict[str, Any] | None) -> tuple[dict[str, Any], Any]:
    decision = decide(Observation(tj, DATASET, job, None, SETTINGS, NOW, pods=[]))
    return {**tj, "status": status_after(tj.get("status"), decision.status)}, decision


def failed_by_policy(job: dict[str, Any]) -> dict[str, Any]:
    job = json.loads(json.dumps(job))
    job["metadata"]["uid"] = "job-uid"
    job["status"] = {
        "startTime": "2026-11-23T11:50:00Z",
        "failed": 1,
        "conditions": [
            {
                "type": "Failed",
                "status": "True",
                "reason": "PodFailurePolicy",
                "message": "Container trainer for pod ml/ddp-train-1-x failed with exit code 1 "
                "matching FailJob rule at index 0",
            }
        ],
    }
    return job


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return dict(get_condition(status["conditions"], "Ready") or {})


def test_default_on_for_distributed_jobs_only() -> None:
    spec = TrainingJobSpec.model_validate({"datasetRef": {"name": "d"}, "image": "t:1"})
    assert not restart_all(spec)
    assert restart_all(spec.model_copy(update={"workers": 2}))
    off = TrainingJobSpec.model_validate(
        {
            "datasetRef": {"name": "d"},
            "image": "t:1",
            "workers": 4,
            "failurePolicy": {"restartAll": False},
        }
    )
    assert not restart_all(off)
    assert on_job_failed(off, "PodFailurePolicy", "x", 0, "j") is None


def test_a_failed_rank_restarts_all_workers_until_max_restarts() -> None:
    tj = trainingjob(failurePolicy={"maxRestarts": 2})
    tj, first = step(tj, None)
    job = first.create_job
    assert job["spec"]["podFailurePolicy"]["rules"][0]["action"] == "FailJob"
    assert job["spec"]["backoffLimit"] == 0
    assert job["metadata"]["annotations"][RESTART_ANNOTATION] == "0"
    run = tj["status"]["run"]

    for restart in (1, 2):
        tj, decided = step(tj, failed_by_policy(job))
        assert decided.delete_job == job["metadata"]["name"]
        assert tj["status"]["restarts"] == restart
        assert tj["status"]["phase"] == "Running"
        assert ready(tj["status"])["reason"] == "GangRestart"
        assert (
            f"restarting all 3 workers (restart {restart} of at most 2)"
            in ready(tj["status"])["message"]
        )
        assert [e.reason for e in decided.events] == (["GangRestart"] if restart == 1 else [])
        # The Job is gone: a fresh one for the whole group, same data and run.
        tj, recreated = step(tj, None)
        job = recreated.create_job
        assert job is not None and ready(tj["status"])["reason"] == "GangRestart"
        assert job["metadata"]["annotations"][RESTART_ANNOTATION] == str(restart)
        env = {
            e["name"]: e.get("value")
            for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env[ENV_RESTART] == str(restart)
        assert env["KYKLOS_RUN"] == run and env["KYKLOS_DATASET_VERSION"] == "etag:1"

    tj, final = step(tj, failed_by_policy(job))
    assert final.delete_job is None
    assert tj["status"]["phase"] == "Failed" and tj["status"]["restarts"] == 2


def test_a_single_worker_job_fails_as_before() -> None:
    tj = trainingjob(workers=1)
    tj, first = step(tj, None)
    assert "podFailurePolicy" not in first.create_job["spec"]
    tj, decided = step(tj, failed_by_policy(first.create_job))
    assert decided.delete_job is None and tj["status"]["phase"] == "Failed"


def test_a_failed_attempt_seen_again_counts_the_same_restart() -> None:
    """The index may still show the failed Job after status counted its restart."""
    from kyklos.logic.gang import RESTART_ANNOTATION, restarts_of

    failed = {"metadata": {"annotations": {RESTART_ANNOTATION: "0"}}}
    counted = {"status": {"restarts": 1}}
    assert restarts_of(counted, failed) == 0
    assert restarts_of(counted) == 1
    assert restarts_of({"status": {}}, {"metadata": {}}) == 0
