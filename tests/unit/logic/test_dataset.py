"""Dataset logic: the profile Job (golden), reading runs, and the state machine as a table."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kyklos.api.dataset import DatasetSpec
from kyklos.api.reports import ProfileSummary
from kyklos.logic.conditions import status_patch
from kyklos.logic.dataset import (
    MESSAGE_GRACE_SECONDS,
    Plan,
    ProfileRun,
    build_profile_job,
    is_settled,
    next_refresh_at,
    observe_runs,
    outcome_of,
    plan,
    profile_job_name,
    worker_spec_json,
)
from kyklos.logic.jobs import JobState
from kyklos.logic.workerjob import WorkerConfig

GOLDEN = Path(__file__).parent / "golden" / "dataset_profile_job.json"
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
CONFIG = WorkerConfig(
    image="ghcr.io/kyklos/kyklos:0.1.0",
    artifacts_uri="pvc://kyklos-artifacts",
    resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    pvc_root="/mnt/kyklos/pvc",
    artifacts_secret=None,
)
SPEC: dict[str, Any] = {
    "source": {"uri": "pvc://data/churn/train.csv", "secretRef": {"name": "data-creds"}},
    "schema": {
        "features": [
            {"name": "age", "type": "numeric"},
            {"name": "plan", "type": "categorical"},
        ],
        "target": "churned",
    },
    "validation": {"minRows": 10, "maxNullFraction": 0.1},
}


def dataset(
    *, generation: int = 1, status: dict[str, Any] | None = None, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {
            "name": "churn",
            "namespace": "ml",
            "uid": "ds-uid",
            "generation": generation,
        },
        "spec": {**SPEC, **spec},
    }
    if status is not None:
        body["status"] = status
    return body


def summary(version: str = "v1", rows: int = 100, **extra: Any) -> str:
    data: dict[str, Any] = {
        "ok": True,
        "version": version,
        "versionSource": "sha256",
        "checksum": f"sha256:{version}",
        "rows": rows,
        "features": [
            {"name": "age", "type": "numeric", "nullFraction": 0.0, "mean": 41.5},
            {"name": "plan", "type": "categorical", "nullFraction": 0.0, "categories": 3},
        ],
        "profileUri": f"pvc://kyklos-artifacts/ml/Dataset/churn/{version}/profile.json",
        "sampleUri": f"pvc://kyklos-artifacts/ml/Dataset/churn/{version}/sample.parquet",
    }
    data.update(extra)
    return ProfileSummary.model_validate(data).to_termination_message()


def failure_summary(reason: str, message: str | None = None, **extra: Any) -> str:
    return ProfileSummary.model_validate(
        {"ok": False, "reason": reason, "message": message, **extra}
    ).to_termination_message()


def job(
    name: str,
    *,
    generation: int = 1,
    run: int = 0,
    state: str = "running",
    uid: str | None = None,
    finished: str = "2026-11-23T11:59:00Z",
    terminating: bool = False,
) -> dict[str, Any]:
    status: dict[str, Any] = {"startTime": "2026-11-23T11:58:00Z"}
    if state == "running":
        status["active"] = 1
    elif state == "succeeded":
        status.update(
            succeeded=1,
            completionTime=finished,
            conditions=[{"type": "Complete", "status": "True", "lastTransitionTime": finished}],
        )
    elif state == "failed":
        status.update(
            failed=1,
            conditions=[
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit",
                    "lastTransitionTime": finished,
                }
            ],
        )
    elif state == "pending":
        status = {}
    meta: dict[str, Any] = {
        "name": name,
        "uid": uid or f"uid-{name}",
        "annotations": {"kyklos.io/generation": str(generation), "kyklos.io/profile-run": str(run)},
    }
    if terminating:
        meta["deletionTimestamp"] = "2026-11-23T11:59:30Z"
    return {"metadata": meta, "status": status}


def pod(job_body: dict[str, Any], phase: str, message: str | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {"running": {}}
    if phase in ("Succeeded", "Failed"):
        terminated: dict[str, Any] = {
            "exitCode": 0 if phase == "Succeeded" else 1,
            "finishedAt": "2026-11-23T11:58:59Z",
        }
        if message is not None:
            terminated["message"] = message
        state = {"terminated": terminated}
    return {
        "metadata": {
            "name": job_body["metadata"]["name"] + "-abcde",
            "ownerReferences": [{"kind": "Job", "uid": job_body["metadata"]["uid"]}],
        },
        "status": {"phase": phase, "containerStatuses": [{"name": "worker", "state": state}]},
    }


def finished_run(
    name: str, message: str | None, *, state: str = "succeeded", run: int = 0, generation: int = 1
) -> tuple[dict[str, Any], dict[str, Any]]:
    j = job(name, state=state, run=run, generation=generation)
    return j, pod(j, "Succeeded" if state == "succeeded" else "Failed", message)


def decide(
    body: dict[str, Any],
    jobs: list[dict[str, Any]],
    pods: list[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> Plan:
    return plan(body, observe_runs(jobs, pods or []), config=CONFIG, now=NOW, **kwargs)


def settle(body: dict[str, Any], result: Plan) -> dict[str, Any]:
    """The body after the plan's status was written (a merge patch of the whole status)."""
    status = dict(body.get("status") or {})
    for key, value in result.status.items():
        if value is None:
            status.pop(key, None)
        else:
            status[key] = value
    return {**body, "status": status}


def assert_quiet(body: dict[str, Any], result: Plan) -> None:
    """The plan changes nothing: no children touched, no status write, no Event."""
    assert result.create is None and result.delete == []
    assert status_patch(body.get("status"), result.status) == {}
    assert result.events == []


def ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Ready")


# --------------------------------------------------------------------------- the Job


def test_profile_job_matches_the_golden_manifest() -> None:
    spec = DatasetSpec.model_validate(SPEC)
    manifest = build_profile_job(dataset(), spec, generation=1, run=0, config=CONFIG)
    if os.environ.get("KYKLOS_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    assert manifest == json.loads(GOLDEN.read_text())


def test_profile_job_runs_the_worker_contract_with_the_spec_and_store() -> None:
    spec = DatasetSpec.model_validate(SPEC)
    manifest = build_profile_job(dataset(), spec, generation=3, run=2, config=CONFIG)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[:3] == ["kyklos", "worker", "profile"]
    args = dict(zip(command[3::2], command[4::2], strict=True))
    assert args["--namespace"] == "ml" and args["--name"] == "churn"
    assert args["--artifacts"] == "pvc://kyklos-artifacts"
    assert DatasetSpec.model_validate(json.loads(args["--spec"])) == spec
    assert manifest["metadata"]["name"] == "churn-profile-3-r2"
    assert manifest["metadata"]["annotations"] == {
        "kyklos.io/generation": "3",
        "kyklos.io/profile-run": "2",
    }
    # Storage credentials by reference only; the source claim read-only, the store writable.
    assert container["envFrom"] == [{"secretRef": {"name": "data-creds"}}]
    mounts = {m["mountPath"]: m["readOnly"] for m in container["volumeMounts"] if "readOnly" in m}
    assert mounts == {"/mnt/kyklos/pvc/data": True, "/mnt/kyklos/pvc/kyklos-artifacts": False}


def test_worker_spec_json_is_stable_and_complete() -> None:
    spec = DatasetSpec.model_validate(SPEC)
    text = worker_spec_json(spec)
    assert text == worker_spec_json(DatasetSpec.model_validate(json.loads(text)))
    assert json.loads(text)["profile"]["bins"] == 10  # defaults travel with the spec


def test_job_names_are_deterministic_and_fit_63_characters() -> None:
    assert profile_job_name("churn", 1, 0) == "churn-profile-1"
    assert profile_job_name("churn", 4, 7) == "churn-profile-4-r7"
    long = profile_job_name("d" * 60, 12, 345)
    assert len(long) <= 63 and long.endswith("-profile-12-r345")
    assert long == profile_job_name("d" * 60, 12, 345)


# ------------------------------------------------------------------------ observation


def test_runs_read_generation_run_and_the_message_of_their_own_pods() -> None:
    a, pa = finished_run("churn-profile-1", summary("v1"))
    b = job("churn-profile-1-r1", run=1, state="running")
    other = pod(job("elsewhere", uid="other"), "Failed", "not ours")
    runs = observe_runs([b, a], [pa, pod(b, "Running"), other])
    assert [(r.name, r.generation, r.run) for r in runs] == [
        ("churn-profile-1", 1, 0),
        ("churn-profile-1-r1", 1, 1),
    ]
    assert runs[0].state == JobState.SUCCEEDED and runs[0].message == summary("v1")
    assert runs[0].finished_at == "2026-11-23T11:59:00Z"
    assert runs[1].message is None and runs[1].pod_running


def test_failed_job_finish_time_comes_from_its_failed_condition() -> None:
    (run,) = observe_runs([job("x", state="failed", finished="2026-11-23T11:30:00Z")], [])
    assert run.state == JobState.FAILED and run.finished_at == "2026-11-23T11:30:00Z"


# ---------------------------------------------------------------------------- outcome


def run_of(state: JobState, message: str | None, finished_ago: float = 60.0) -> ProfileRun:
    finished = (NOW - timedelta(seconds=finished_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return ProfileRun(
        "churn-profile-1", 1, 0, state, "BackoffLimitExceeded", "limit", finished, message
    )


@pytest.mark.parametrize(
    ("state", "message", "ready", "reason"),
    [
        (JobState.SUCCEEDED, summary("v1"), True, "Profiled"),
        (
            JobState.FAILED,
            failure_summary("SourceUnreachable", "s3://b/x.csv: no such key"),
            False,
            "SourceUnreachable",
        ),
        (JobState.FAILED, failure_summary("FormatError", "x.csv: not CSV"), False, "FormatError"),
        (JobState.FAILED, failure_summary("EmptySource", "x.csv: no rows"), False, "EmptySource"),
        (
            JobState.FAILED,
            failure_summary("SchemaMismatch", "feature age: missing"),
            False,
            "SchemaMismatch",
        ),
        (JobState.FAILED, None, False, "ProfileJobFailed"),
        (JobState.FAILED, "Traceback (most recent call last):", False, "ProfileJobFailed"),
        (JobState.FAILED, summary("v1"), False, "ProfileJobFailed"),
        (
            JobState.SUCCEEDED,
            failure_summary("ValidationFailed", "minRows"),
            False,
            "ValidationFailed",
        ),
    ],
)
def test_outcome_of_a_finished_run(
    state: JobState, message: str | None, ready: bool, reason: str
) -> None:
    outcome = outcome_of(run_of(state, message), NOW)
    assert outcome is not None
    assert (outcome.ready, outcome.reason) == (ready, reason)
    assert outcome.message


def test_an_ok_summary_from_a_pod_that_succeeded_is_the_result_even_if_the_job_failed() -> None:
    run = replace(run_of(JobState.FAILED, "killed"), succeeded_message=summary("v1"))
    outcome = outcome_of(run, NOW)
    assert outcome is not None and (outcome.ready, outcome.reason) == (True, "Profiled")
    # The same summary from a pod that did not exit 0 is not trusted.
    failed_pod = run_of(JobState.FAILED, summary("v1"))
    outcome = outcome_of(failed_pod, NOW)
    assert outcome is not None and (outcome.ready, outcome.reason) == (False, "ProfileJobFailed")


def test_observed_runs_keep_the_message_of_the_pod_that_succeeded() -> None:
    job = {
        "metadata": {"name": "churn-profile-1", "uid": "j1", "annotations": {}},
        "status": {"conditions": [{"type": "Failed", "status": "True"}]},
    }

    def pod(name: str, phase: str, message: str, finished: str) -> dict[str, Any]:
        terminated = {"exitCode": 0 if phase == "Succeeded" else 1, "message": message}
        terminated["finishedAt"] = finished
        return {
            "metadata": {"name": name, "ownerReferences": [{"kind": "Job", "uid": "j1"}]},
            "status": {
                "phase": phase,
                "containerStatuses": [{"state": {"terminated": terminated}}],
            },
        }

    runs = observe_runs(
        [job],
        [
            pod("a", "Succeeded", summary("v1"), "2026-01-01T00:00:01Z"),
            pod("b", "Failed", "killed", "2026-01-01T00:00:02Z"),
        ],
    )
    assert runs[0].succeeded_message == summary("v1")
    outcome = outcome_of(runs[0], NOW)
    assert outcome is not None and (outcome.ready, outcome.reason) == (True, "Profiled")


def test_validation_failures_are_listed_in_the_message_when_the_worker_gives_none() -> None:
    message = failure_summary(
        "ValidationFailed",
        failures=[
            {"rule": "maxNullFraction", "feature": "age", "message": "null fraction 0.4 > 0.1"},
            {"rule": "minRows", "message": "5 rows < 10"},
        ],
    )
    outcome = outcome_of(run_of(JobState.FAILED, message), NOW)
    assert outcome is not None
    assert outcome.message == "maxNullFraction: age: null fraction 0.4 > 0.1; minRows: 5 rows < 10"


def test_a_running_job_and_a_just_failed_job_without_message_have_no_outcome_yet() -> None:
    assert outcome_of(run_of(JobState.RUNNING, None), NOW) is None
    assert outcome_of(run_of(JobState.FAILED, None, finished_ago=1), NOW) is None
    later = outcome_of(run_of(JobState.FAILED, None, finished_ago=MESSAGE_GRACE_SECONDS + 1), NOW)
    assert later is not None and later.reason == "ProfileJobFailed"
    assert "BackoffLimitExceeded" in later.message


# ----------------------------------------------------------------------- state machine


def test_a_new_dataset_gets_its_profile_job_and_is_pending() -> None:
    result = decide(dataset(), [])
    assert result.create is not None and result.create["metadata"]["name"] == "churn-profile-1"
    assert result.created_run == 0
    assert result.status["phase"] == "Pending"
    assert result.status["jobName"] == "churn-profile-1"
    assert result.status["observedGeneration"] == 1
    ready = ready_condition(result.status)
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == (
        "False",
        "Profiling",
        1,
    )
    assert [(e.reason, e.warning) for e in result.events] == [("Profiling", False)]


def test_profiling_while_the_pod_runs_without_a_new_event() -> None:
    created = settle(dataset(), decide(dataset(), []))
    j = job("churn-profile-1")
    result = decide(created, [j], [pod(j, "Running")])
    assert result.create is None and result.delete == []
    assert result.status["phase"] == "Profiling"
    assert result.events == []


def _gen2(state: str = "running") -> dict[str, Any]:
    return job("churn-profile-2", generation=2, state=state)


# A spec edit of a Ready Dataset, observed step by step (each row after the previous row's
# status was written): (jobs, pods of churn-profile-2, phase, Ready reason). The phase goes
# Pending -> Profiling -> Ready | Failed and never back: the Job controller marks the Job
# complete a moment after its pod ends, and in between the Dataset is still Profiling.
PHASE_STORIES: dict[str, list[tuple[list[dict[str, Any]], list[dict[str, Any]], str, str]]] = {
    "ready": [
        ([], [], "Pending", "Profiling"),  # the reconcile that creates churn-profile-2
        ([_gen2("pending")], [], "Profiling", "Profiling"),  # created, not started yet
        ([_gen2()], [pod(_gen2(), "Pending")], "Profiling", "Profiling"),
        ([_gen2()], [pod(_gen2(), "Running")], "Profiling", "Profiling"),
        ([_gen2()], [pod(_gen2(), "Succeeded", summary("v2"))], "Profiling", "Profiling"),
        (
            [_gen2("succeeded")],
            [pod(_gen2("succeeded"), "Succeeded", summary("v2"))],
            "Ready",
            "Profiled",
        ),
    ],
    "failed": [
        ([], [], "Pending", "Profiling"),
        ([_gen2()], [pod(_gen2(), "Running")], "Profiling", "Profiling"),
        (
            [_gen2()],
            [pod(_gen2(), "Failed", failure_summary("EmptySource", "x.csv: no rows"))],
            "Profiling",
            "Profiling",
        ),
        (
            [_gen2("failed")],
            [pod(_gen2("failed"), "Failed", failure_summary("EmptySource", "x.csv: no rows"))],
            "Failed",
            "EmptySource",
        ),
    ],
}


@pytest.mark.parametrize("story", sorted(PHASE_STORIES))
def test_a_spec_edit_goes_pending_then_profiling_until_the_outcome_never_back(story: str) -> None:
    body, j1, p1 = ready_body()
    body["metadata"]["generation"] = 2
    for jobs, pods, phase, reason in PHASE_STORIES[story]:
        result = decide(body, [j1, *jobs], [p1, *pods])
        assert result.status, (phase, reason)
        body = settle(body, result)
        ready = ready_condition(body["status"])
        assert (body["status"]["phase"], ready["reason"]) == (phase, reason), (jobs, pods)
        assert body["status"]["observedGeneration"] == 2


def test_a_good_profile_makes_the_dataset_ready_with_version_rows_and_features() -> None:
    body = settle(dataset(), decide(dataset(), []))
    result = decide(
        body, *map(list, zip(finished_run("churn-profile-1", summary("v1", 1234)), strict=True))
    )
    status = result.status
    assert status["phase"] == "Ready"
    assert (status["version"], status["versionSource"], status["rows"]) == ("v1", "sha256", 1234)
    assert status["checksum"] == "sha256:v1"
    assert status["profileUri"].endswith("/ml/Dataset/churn/v1/profile.json")
    assert status["sampleUri"].endswith("/v1/sample.parquet")
    assert [f["name"] for f in status["features"]] == ["age", "plan"]
    assert status["failures"] is None  # removed
    assert status["lastProfileTime"] == "2026-11-23T11:59:00Z"
    ready = ready_condition(status)
    assert (ready["status"], ready["reason"]) == ("True", "Profiled")
    assert "1234 rows" in ready["message"]
    assert [(e.reason, e.warning) for e in result.events] == [("Profiled", False)]


@pytest.mark.parametrize(
    ("message", "reason", "names"),
    [
        (
            failure_summary(
                "ValidationFailed",
                failures=[{"rule": "maxNullFraction", "feature": "age", "message": "0.4 > 0.1"}],
            ),
            "ValidationFailed",
            "age",
        ),
        (failure_summary("SchemaMismatch", "feature 'plan' is missing"), "SchemaMismatch", "plan"),
        (
            failure_summary("SourceUnreachable", "file:///nope.csv: not found"),
            "SourceUnreachable",
            "nope.csv",
        ),
    ],
)
def test_a_failed_profile_ends_failed_with_the_reason_naming_the_problem(
    message: str, reason: str, names: str
) -> None:
    body = settle(dataset(), decide(dataset(), []))
    j, p = finished_run("churn-profile-1", message, state="failed")
    result = decide(body, [j], [p])
    assert result.status["phase"] == "Failed"
    ready = ready_condition(result.status)
    assert (ready["status"], ready["reason"]) == ("False", reason)
    assert names in ready["message"]
    assert [(e.reason, e.warning) for e in result.events] == [(reason, True)]


def ready_body(version: str = "v1") -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A settled Ready dataset with refreshInterval, its Job and pod."""
    body = dataset(refreshInterval="1h")
    body = settle(body, decide(body, []))
    j, p = finished_run("churn-profile-1", summary(version))
    return settle(body, decide(body, [j], [p])), j, p


def test_a_settled_dataset_plans_nothing() -> None:
    body, j, p = ready_body()
    result = decide(body, [j], [p])
    assert result == Plan()
    assert is_settled(body)


def test_a_due_refresh_starts_a_refresh_job_and_leaves_status_alone() -> None:
    body, j, p = ready_body()
    result = decide(body, [j], [p], refresh_due=True)
    assert result.create is not None
    assert result.create["metadata"]["name"] == "churn-profile-1-r1"
    assert result.create["metadata"]["annotations"]["kyklos.io/profile-run"] == "1"
    assert result.status == {} and result.events == [] and result.delete == []


def test_no_second_refresh_while_one_is_in_flight() -> None:
    body, j, p = ready_body()
    refresh = job("churn-profile-1-r1", run=1)
    result = decide(body, [j, refresh], [p, pod(refresh, "Running")], refresh_due=True)
    assert result == Plan()


def test_refresh_run_numbers_never_reuse_deleted_ones() -> None:
    body, j, p = ready_body()
    result = decide(body, [j], [p], refresh_due=True, run_floor=5)
    assert result.create is not None and result.created_run == 5
    terminating = job("churn-profile-1-r6", run=6, terminating=True)
    again = decide(body, [j, terminating], [p], refresh_due=True, run_floor=5)
    assert again.created_run == 7


def test_an_unchanged_refresh_is_deleted_and_nothing_is_written() -> None:
    body, j, p = ready_body("v1")
    r, rp = finished_run("churn-profile-1-r1", summary("v1"), run=1)
    result = decide(body, [j, r], [p, rp])
    assert result.delete == ["churn-profile-1-r1"]
    assert result.status == {} and result.events == [] and result.create is None


def test_a_changed_source_yields_a_new_version_and_the_old_job_goes() -> None:
    body, j, p = ready_body("v1")
    r, rp = finished_run("churn-profile-1-r1", summary("v2", 2000), run=1)
    result = decide(body, [j, r], [p, rp])
    assert result.status["version"] == "v2" and result.status["rows"] == 2000
    assert result.status["jobName"] == "churn-profile-1-r1"
    assert result.delete == ["churn-profile-1"]
    assert [(e.reason, e.message) for e in result.events] == [
        ("NewVersion", "version v1 -> v2 (2000 rows)")
    ]
    ready = ready_condition(result.status)
    assert ready["lastTransitionTime"] == ready_condition(body["status"])["lastTransitionTime"]
    # Once written, the adopted refresh is what the status describes: settled again.
    assert decide(settle(body, result), [r], [rp]) == Plan()


def test_a_refresh_that_fails_turns_the_dataset_failed() -> None:
    body, j, p = ready_body("v1")
    r, rp = finished_run(
        "churn-profile-1-r1", failure_summary("SourceUnreachable", "gone"), state="failed", run=1
    )
    result = decide(body, [j, r], [p, rp])
    assert result.status["phase"] == "Failed"
    assert ready_condition(result.status)["reason"] == "SourceUnreachable"
    assert result.status["version"] is None  # the failed run read no data
    assert [(e.reason, e.warning) for e in result.events] == [("SourceUnreachable", True)]


def test_a_spec_change_replaces_the_old_generations_jobs() -> None:
    body, j, p = ready_body("v1")
    body["metadata"]["generation"] = 2
    result = decide(body, [j], [p])
    assert result.delete == ["churn-profile-1"]
    assert "version" not in result.status  # the last known version stays meanwhile
    assert result.create is not None and result.create["metadata"]["name"] == "churn-profile-2"
    assert result.status["phase"] == "Pending" and result.status["observedGeneration"] == 2
    assert [e.reason for e in result.events] == ["Profiling"]
    assert not is_settled(settle(body, result))


def test_failures_of_an_earlier_generation_go_when_the_spec_changes() -> None:
    body = settle(dataset(), decide(dataset(), []))
    j, p = finished_run(
        "churn-profile-1",
        failure_summary("ValidationFailed", failures=[{"rule": "minRows", "message": "5 < 10"}]),
        state="failed",
    )
    failed = settle(body, decide(body, [j], [p]))
    assert failed["status"]["failures"]
    failed["metadata"]["generation"] = 2
    result = decide(failed, [j], [p])
    assert result.status["failures"] is None and result.status["phase"] == "Pending"


def test_an_invalid_spec_fails_naming_the_field_and_creates_nothing() -> None:
    body = dataset(source={"uri": "pvc:///no-claim.csv"})
    j = job("churn-profile-1")
    result = decide(body, [j])
    assert result.create is None and result.delete == ["churn-profile-1"]
    assert result.status["phase"] == "Failed"
    ready = ready_condition(result.status)
    assert ready["reason"] == "InvalidSpec" and "spec.source.uri" in ready["message"]
    assert result.events[0].warning
    assert_quiet(settle(body, result), decide(settle(body, result), []))


def test_a_summary_seen_after_the_grace_period_corrects_profile_job_failed() -> None:
    body = settle(dataset(), decide(dataset(), []))
    j, p = finished_run("churn-profile-1", None, state="failed")
    failed = settle(body, decide(body, [j], [p]))
    assert ready_condition(failed["status"])["reason"] == "ProfileJobFailed"
    late = pod(j, "Failed", failure_summary("SchemaMismatch", "feature plan is missing"))
    result = decide(failed, [j], [late])
    assert ready_condition(result.status)["reason"] == "SchemaMismatch"
    assert [(e.reason, e.warning) for e in result.events] == [("SchemaMismatch", True)]
    # A Ready status is never downgraded when its pod (and message) disappears later.
    ready, j1, _ = ready_body()
    assert decide(ready, [j1], []) == Plan()


def test_every_terminal_state_is_settled_after_its_status_is_written() -> None:
    for message, state in (
        (summary("v1"), "succeeded"),
        (failure_summary("FormatError", "bad"), "failed"),
        (None, "failed"),
    ):
        body = settle(dataset(), decide(dataset(), []))
        j, p = finished_run("churn-profile-1", message, state=state)
        done = settle(body, decide(body, [j], [p]))
        assert decide(done, [j], [p]) == Plan(), message
        assert is_settled(done)


# ---------------------------------------------------------- stuck pods and the deadline

UNSCHEDULABLE = "0/2 nodes are available: 2 Insufficient cpu."


def stuck(
    j: dict[str, Any], *, unschedulable: str | None = None, waiting: str = ""
) -> dict[str, Any]:
    """A Pending pod of ``j`` the scheduler cannot place, or whose container cannot start."""
    p = pod(j, "Pending")
    if unschedulable is not None:
        p["status"]["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
            }
        ]
        p["status"]["containerStatuses"] = []
    else:
        reason, _, message = waiting.partition(": ")
        p["status"]["containerStatuses"][0]["state"] = {
            "waiting": {"reason": reason, "message": message}
        }
    return p


def deadline_job(name: str = "churn-profile-1") -> dict[str, Any]:
    j = job(name, state="failed")
    j["spec"] = {"activeDeadlineSeconds": 3600}
    j["status"]["conditions"][0].update(
        reason="DeadlineExceeded", message="Job was active longer than specified deadline"
    )
    return j


def test_the_profile_job_carries_the_operators_worker_deadline() -> None:
    body = dataset()
    spec = DatasetSpec.model_validate(body["spec"])
    with_deadline = replace(CONFIG, deadline_seconds=3600)
    built = build_profile_job(body, spec, generation=1, run=0, config=with_deadline)
    assert built["spec"]["activeDeadlineSeconds"] == 3600
    unbounded = build_profile_job(body, spec, generation=1, run=0, config=CONFIG)
    assert "activeDeadlineSeconds" not in unbounded["spec"]


J1 = job("churn-profile-1")
P = "pod churn-profile-1-abcde"


# (pods of the run, phase, Ready reason, message contains, Events (reason, warning)) in order:
# each row is observed after the previous row's status was written.
STUCK_STORY: list[tuple[list[dict[str, Any]], str, str, str, list[tuple[str, bool]]]] = [
    ([], "Profiling", "Profiling", "is profiling generation 1", []),
    (
        [stuck(J1, unschedulable=UNSCHEDULABLE)],
        "Profiling",
        "PodUnschedulable",
        f"profile Job churn-profile-1: {P} cannot be scheduled: {UNSCHEDULABLE}",
        [("PodUnschedulable", True)],
    ),
    # The scheduler rewords its message: the status follows, no second Event.
    (
        [stuck(J1, unschedulable="0/3 nodes are available: 3 Insufficient cpu.")],
        "Profiling",
        "PodUnschedulable",
        "0/3 nodes are available",
        [],
    ),
    (
        [stuck(J1, waiting='CreateContainerConfigError: secret "creds" not found')],
        "Profiling",
        "PodStartFailed",
        f'{P} container worker cannot start: CreateContainerConfigError: secret "creds" not found',
        [("PodStartFailed", True)],
    ),
    # Recovered: back to the normal reason, announced once.
    (
        [pod(J1, "Running")],
        "Profiling",
        "Profiling",
        "is profiling generation 1",
        [("Profiling", False)],
    ),
]


def test_a_stuck_profile_pod_is_explained_once_per_change_and_recovers() -> None:
    body = settle(dataset(), decide(dataset(), []))
    for pods, phase, reason, message, events in STUCK_STORY:
        result = decide(body, [J1], pods)
        assert result.create is None and result.delete == []
        if result.status:
            body = settle(body, result)
        status = body["status"]
        ready = ready_condition(status)
        assert (status["phase"], ready["status"], ready["reason"]) == (phase, "False", reason)
        assert message in ready["message"], ready
        assert [(e.reason, e.warning) for e in result.events] == events, reason
        assert not is_settled(body)
        # Observed again unchanged: no write, no Event.
        assert_quiet(body, decide(body, [J1], pods))


def test_a_stuck_profile_ends_failed_at_the_deadline_naming_it_and_the_last_cause() -> None:
    body = settle(dataset(), decide(dataset(), []))
    body = settle(body, decide(body, [J1], [stuck(J1, unschedulable=UNSCHEDULABLE)]))
    # At the deadline the Job controller deletes the pod before it marks the Job Failed: a
    # pod going away is not a recovery, so nothing changes in between.
    going = stuck(J1, unschedulable=UNSCHEDULABLE)
    going["metadata"]["deletionTimestamp"] = "2026-11-23T11:59:50Z"
    assert_quiet(body, decide(body, [J1], [going]))
    assert_quiet(body, decide(body, [J1], []))
    # The Job controller killed the pod at the deadline: no grace wait for a summary.
    j = deadline_job()
    result = decide(body, [j], [])
    status = result.status
    ready = ready_condition(status)
    assert status["phase"] == "Failed"
    assert (ready["status"], ready["reason"]) == ("False", "DeadlineExceeded")
    assert "did not finish within its deadline of 1h" in ready["message"]
    assert "KYKLOS_WORKER_DEADLINE" in ready["message"]
    assert f"before that: profile Job churn-profile-1: {P} cannot be scheduled" in ready["message"]
    assert [(e.reason, e.warning) for e in result.events] == [("DeadlineExceeded", True)]
    done = settle(body, result)
    assert is_settled(done)
    assert decide(done, [j], []) == Plan()


def test_a_hung_profile_that_was_running_ends_deadline_exceeded_without_a_stale_cause() -> None:
    body = settle(dataset(), decide(dataset(), []))
    body = settle(body, decide(body, [J1], [pod(J1, "Running")]))
    outcome = decide(body, [deadline_job()], [pod(J1, "Failed")]).status
    ready = ready_condition(outcome)
    assert ready["reason"] == "DeadlineExceeded" and "before that" not in ready["message"]


def test_a_summary_written_before_the_deadline_still_wins() -> None:
    message = failure_summary("FormatError", "x.csv: not CSV")
    run = replace(run_of(JobState.FAILED, message), job_reason="DeadlineExceeded")
    outcome = outcome_of(run, NOW)
    assert outcome is not None and outcome.reason == "FormatError"


def test_runs_say_why_their_pod_is_stuck_only_while_unfinished() -> None:
    (running,) = observe_runs([J1], [stuck(J1, waiting="ErrImagePull: not found")])
    assert running.stuck is not None and running.stuck.reason == "PodStartFailed"
    failed = job("churn-profile-1", state="failed")
    (ended,) = observe_runs([failed], [stuck(failed, waiting="ErrImagePull: not found")])
    assert ended.stuck is None


# ---------------------------------------------------------------------------- schedule


def test_next_refresh_is_one_interval_after_the_later_of_profile_and_check() -> None:
    body, _, _ = ready_body()
    profiled = datetime(2026, 11, 23, 11, 59, tzinfo=UTC)
    assert next_refresh_at(body, None) == profiled + timedelta(hours=1)
    checked = profiled + timedelta(minutes=30)
    assert next_refresh_at(body, checked) == checked + timedelta(hours=1)
    no_interval = {**body, "spec": SPEC}
    assert next_refresh_at(no_interval, None) is None
    assert (
        next_refresh_at(settle(dataset(refreshInterval="1h"), decide(dataset(), [])), None) is None
    )
