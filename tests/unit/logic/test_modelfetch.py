"""The model-download init container: built for store URIs only, credentials only in it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from kyklos.api.deployment import ModelDeploymentSpec
from kyklos.api.modelfetch import FetchModelArgs, ModelFetchSummary
from kyklos.logic import rollout
from kyklos.logic.modelfetch import (
    ENV_MODEL_PATH,
    INIT_CONTAINER,
    MODEL_DIR,
    FetchFailure,
    ModelFetcher,
    fetch_failure,
    needs_fetch,
)

OWNER = {
    "apiVersion": "kyklos.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "u"},
}
REV = rollout.REVISION_LABEL
M = rollout.ResolvedModel("s3://m/iris", "v1")
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
FETCHER = ModelFetcher("ghcr.io/kyklos/kyklos:1", {"limits": {"memory": "256Mi"}}, "artifacts")


def build(model: dict[str, Any], uri: str) -> dict[str, Any]:
    spec = ModelDeploymentSpec.model_validate({"model": model, "runtime": {"image": "server:1"}})
    resolved = rollout.ResolvedModel(uri, "v1")
    body = rollout.build_serving_deployment(
        OWNER, spec, rollout.STABLE, resolved, 1, "/mnt/kyklos/pvc", fetcher=FETCHER
    )
    pod: dict[str, Any] = body["spec"]["template"]["spec"]
    return pod


@pytest.mark.parametrize(
    ("uri", "fetch"),
    [
        ("s3://m/iris/", True),
        ("gs://m/iris", True),
        ("https://h/iris.bin", True),
        ("HTTP://h/x", True),
        ("pvc://claim/iris", False),
        ("file:///models/iris", False),
        ("iris", False),
    ],
)
def test_which_models_are_downloaded(uri: str, fetch: bool) -> None:
    assert needs_fetch(uri) is fetch


def test_store_model_gets_the_init_container_and_only_it_gets_the_secret() -> None:
    pod = build({"uri": "s3://m/iris/", "secretRef": {"name": "s3-creds"}}, "s3://m/iris/")
    (init,) = pod["initContainers"]
    (server,) = pod["containers"]
    assert init["name"] == INIT_CONTAINER and init["image"] == FETCHER.image
    assert init["command"][:2] == ["kyklos", "worker"]
    assert FetchModelArgs.from_argv(init["command"][3:]).uri == "s3://m/iris/"
    assert init["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]
    assert init["resources"] == {"limits": {"memory": "256Mi"}}
    assert init["securityContext"]["readOnlyRootFilesystem"] is True
    assert "envFrom" not in server
    env = {e["name"]: e.get("value") for e in server["env"]}
    assert env[ENV_MODEL_PATH] == MODEL_DIR and env["KYKLOS_MODEL_URI"] == "s3://m/iris/"
    (mount,) = [m for m in server["volumeMounts"] if m["mountPath"] == MODEL_DIR]
    assert mount["readOnly"] is True
    assert {"name": mount["name"], "emptyDir": {}} in pod["volumes"]


def test_a_training_jobs_model_uses_the_artifacts_secret() -> None:
    pod = build({"fromTrainingJob": "train"}, "s3://artifacts/ml/TrainingJob/train/r/model")
    assert pod["initContainers"][0]["envFrom"] == [{"secretRef": {"name": "artifacts"}}]


def test_pvc_models_stay_a_mount() -> None:
    pod = build({"uri": "pvc://models/iris"}, "pvc://models/iris")
    assert "initContainers" not in pod
    assert ENV_MODEL_PATH not in {e["name"] for e in pod["containers"][0]["env"]}


def _failing_pod(revision: str, restarts: int, message: str | None) -> dict[str, Any]:
    text = (
        ModelFetchSummary(
            ok=False, store="s3://m/iris", reason="ModelFetchFailed", message=message
        ).to_termination_message()
        if message
        else "Traceback ..."
    )
    return {
        "metadata": {"labels": {rollout.REVISION_LABEL: revision}},
        "status": {
            "initContainerStatuses": [
                {
                    "name": INIT_CONTAINER,
                    "restartCount": restarts,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "message": text}},
                }
            ]
        },
    }


def test_fetch_failure_names_the_store_from_the_termination_message() -> None:
    failure = fetch_failure(_failing_pod("r1", 2, "cannot fetch from s3://m/iris"), REV)
    assert failure == FetchFailure("r1", "cannot fetch from s3://m/iris", 2)
    assert FetchFailure.from_index(failure.to_index()) == failure
    # No summary (e.g. the image lacks kyklos): the exit code still explains it.
    assert fetch_failure(_failing_pod("r1", 0, None), REV).message == (  # type: ignore[union-attr]
        "the model download exited with 1"
    )
    done = {"status": {"initContainerStatuses": [
        {"name": INIT_CONTAINER, "state": {"terminated": {"exitCode": 0}}}
    ]}}  # fmt: skip
    assert fetch_failure(done, REV) is None
    assert fetch_failure({"status": {}}, REV) is None


def _spec(**extra: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(
        {"model": {"uri": M.uri, "version": M.version}, "runtime": {"image": "server:1"}, **extra}
    )


def _run(spec: ModelDeploymentSpec, observed: rollout.Observed, status: Any = None) -> Any:
    return rollout.decide(spec, M, observed, status, T0, name="iris", namespace="ml", generation=1)


def _stable(spec: ModelDeploymentSpec, model: rollout.ResolvedModel, ready: int) -> dict[str, Any]:
    body = rollout.build_serving_deployment(OWNER, spec, rollout.STABLE, model, 1, "/p")
    body["metadata"]["generation"] = 1
    body["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1}
    body["status"]["readyReplicas"] = ready
    return body


def test_a_stable_that_cannot_download_its_model_says_which_store() -> None:
    spec = _spec()
    rev = rollout.revision(M, spec)
    failing = FetchFailure(rev, "cannot fetch the model from s3://m/iris: no such file", 3)
    observed = rollout.Observed(stable=_stable(spec, M, 0), fetch_failures=[failing])
    first = _run(spec, observed)
    assert first.phase == "Progressing"
    ready = next(c for c in first.conditions if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "ModelFetchFailed")
    assert "s3://m/iris: no such file" in ready["message"]
    [event] = first.events
    assert event.reason == "ModelFetchFailed" and event.warning
    # Reported once; the kubelet keeps retrying the download.
    assert _run(spec, observed, first.status).events == []
    # A failure of another revision's pods is not this rollout's.
    other = rollout.Observed(
        stable=_stable(spec, M, 0), fetch_failures=[FetchFailure("old", "x", 9)]
    )
    assert _run(spec, other).phase == "Progressing"
    assert next(c for c in _run(spec, other).conditions if c["type"] == "Ready")["reason"] != (
        "ModelFetchFailed"
    )


def test_a_canary_that_cannot_download_its_model_is_rolled_back() -> None:
    spec = _spec(
        strategy={"type": "Canary", "steps": [{"weight": 50, "pause": "1m"}]}, maxCanaryRestarts=1
    )
    old = rollout.ResolvedModel("s3://m/iris-old", "v0")
    stable = _stable(spec, old, 1)
    start = _run(
        spec, rollout.Observed(stable=stable), {"stableModel": old.uri, "phase": "Available"}
    )
    assert start.canary is not None
    rev = rollout.revision(M, spec)
    failing = FetchFailure(rev, "cannot fetch the model from s3://m/iris: Forbidden", 1)
    canary = rollout.build_serving_deployment(OWNER, spec, rollout.CANARY, M, 1, "/p")
    observed = rollout.Observed(stable=stable, canary=canary, fetch_failures=[failing])
    rolled = _run(spec, observed, start.status)
    assert rolled.phase == "RolledBack" and rolled.canary is None
    degraded = next(c for c in rolled.conditions if c["type"] == "Degraded")
    assert (
        degraded["reason"] == "ModelFetchFailed" and "s3://m/iris: Forbidden" in degraded["message"]
    )
