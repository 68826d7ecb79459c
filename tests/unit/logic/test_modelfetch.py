"""The model-download init container: built for store URIs only, credentials only in it."""

from __future__ import annotations

from typing import Any

import pytest

from kyklos.api.deployment import ModelDeploymentSpec
from kyklos.api.modelfetch import FetchModelArgs, ModelFetchSummary
from kyklos.logic import rollout
from kyklos.logic.modelfetch import (
    ENV_MODEL_PATH,
    INIT_CONTAINER,
    MODEL_DIR,
    ModelFetcher,
    fetch_failure,
    needs_fetch,
)

OWNER = {
    "apiVersion": "kyklos.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "iris", "namespace": "ml", "uid": "u"},
}
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


def test_fetch_failure_names_the_store_from_the_termination_message() -> None:
    message = ModelFetchSummary(
        ok=False,
        store="s3://m/iris",
        reason="ModelFetchFailed",
        message="cannot fetch from s3://m/iris",
    ).to_termination_message()
    pod = {
        "status": {
            "initContainerStatuses": [
                {
                    "name": INIT_CONTAINER,
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 1, "message": message}},
                }
            ]
        }
    }
    assert fetch_failure([pod]) == "cannot fetch from s3://m/iris"
    ok = {
        "status": {
            "initContainerStatuses": [
                {"name": INIT_CONTAINER, "state": {"terminated": {"exitCode": 0}}}
            ]
        }
    }
    assert fetch_failure([ok]) is None
