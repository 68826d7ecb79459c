"""The pod template merge: the user's override lands, Kyklos's own names and labels win."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from parity_cases import POD_TEMPLATE

from kyklos.api.podtemplate import PodTemplate
from kyklos.logic.podtemplate import apply_pod_template

GOLDEN = Path(__file__).parent / "golden" / "podtemplate_merged.json"

# A pod as a Kyklos builder makes it: selector labels, its env, /tmp and a claim mount,
# the restricted security defaults, and a sidecar the template must not touch.
BUILT: dict[str, Any] = {
    "metadata": {"labels": {"kyklos.io/modeldeployment": "iris", "team": "kyklos"}},
    "spec": {
        "automountServiceAccountToken": False,
        "nodeSelector": {"pool": "serving"},
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "server",
                "image": "server:1",
                "env": [{"name": "KYKLOS_MODEL_URI", "value": "s3://m/1"}, {"name": "TOKEN", "value": "kyklos"}],
                "envFrom": [{"secretRef": {"name": "s3"}}],
                "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "1Gi"}},
                "securityContext": {"runAsUser": 65532, "readOnlyRootFilesystem": True},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            },
            {"name": "proxy", "image": "kyklos:1", "env": [{"name": "A", "value": "1"}]},
        ],
        "volumes": [{"name": "tmp", "emptyDir": {}}],
    },
}  # fmt: skip


def _check_golden(manifest: dict[str, Any]) -> None:
    if os.environ.get("KYKLOS_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    assert manifest == json.loads(GOLDEN.read_text())


def test_merge_matches_the_golden_pod() -> None:
    merged = apply_pod_template(BUILT, PodTemplate.model_validate(POD_TEMPLATE), "server")
    _check_golden(merged)


def test_kyklos_names_and_labels_win_and_nothing_is_lost() -> None:
    template = copy.deepcopy(POD_TEMPLATE)
    template["metadata"]["labels"] = {"kyklos.io/modeldeployment": "other", "team": "ml"}
    template["nodeSelector"] = {"pool": "gpu", "zone": "a"}
    # A clash the admission rules cannot see: a mount on Kyklos's /tmp.
    template["container"]["volumeMounts"].append({"name": "cache", "mountPath": "/tmp"})
    merged = apply_pod_template(BUILT, PodTemplate.model_validate(template), "server")
    spec = merged["spec"]
    server, proxy = spec["containers"]
    assert merged["metadata"]["labels"] == {"kyklos.io/modeldeployment": "iris", "team": "kyklos"}
    assert spec["nodeSelector"] == {"pool": "serving", "zone": "a"}
    env = {e["name"]: e for e in server["env"]}
    assert env["TOKEN"] == {"name": "TOKEN", "value": "kyklos"}  # Kyklos's value wins
    assert env["POD"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert [m["mountPath"] for m in server["volumeMounts"]] == ["/tmp", "/etc/certs"]
    assert [v["name"] for v in spec["volumes"]] == ["tmp", "certs", "cache"]
    # The same Secret is not listed twice.
    assert server["envFrom"] == [
        {"secretRef": {"name": "s3"}},
        POD_TEMPLATE["container"]["envFrom"][1],
    ]
    # Overrides the user asked for: another user, a writable root, a GPU next to Kyklos's CPU.
    assert server["securityContext"]["readOnlyRootFilesystem"] is False
    assert server["securityContext"]["runAsUser"] == 65532
    assert server["resources"] == {
        "requests": {"cpu": "1"}, "limits": {"memory": "1Gi", "nvidia.com/gpu": 1},
    }  # fmt: skip
    assert spec["securityContext"]["runAsUser"] == 1000
    assert spec["serviceAccountName"] == "trainer" and "automountServiceAccountToken" not in spec
    assert proxy == BUILT["spec"]["containers"][1]  # only the named container changes
    assert BUILT["spec"]["volumes"] == [{"name": "tmp", "emptyDir": {}}]  # input untouched


def test_no_template_returns_an_equal_copy() -> None:
    merged = apply_pod_template(BUILT, None, "server")
    assert merged == BUILT and merged is not BUILT


def test_merging_twice_changes_nothing() -> None:
    """Idempotent: a reconcile that rebuilds from an already-merged pod adds no duplicates."""
    template = PodTemplate.model_validate(POD_TEMPLATE)
    once = apply_pod_template(BUILT, template, "server")
    assert apply_pod_template(once, template, "server") == once


# ------------------------------------------------------------------ the builders apply it


def test_training_job_pods_carry_the_template() -> None:
    from kyklos.api.training import TrainingJobSpec
    from kyklos.logic.training import Lineage, Settings, build_job

    spec = TrainingJobSpec.model_validate(
        {
            "datasetRef": {"name": "d"},
            "image": "python:3.12",
            "workers": 2,
            "template": POD_TEMPLATE,
        }
    )
    owner = {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "churn", "namespace": "ml", "uid": "u"},
    }
    lineage = Lineage("r1", "s3://b/d.csv", "etag:1", "s3://m/churn/r1")
    job = build_job(owner, spec, lineage, Settings(artifacts_uri="s3://a", pvc_root="/p"))
    pod = job["spec"]["template"]
    (trainer,) = pod["spec"]["containers"]
    assert pod["spec"]["tolerations"] == POD_TEMPLATE["tolerations"]
    assert pod["spec"]["nodeSelector"] == {"pool": "gpu"}
    assert trainer["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {"secretRef": {"name": "s3"}} in trainer["envFrom"]
    env = {e["name"] for e in trainer["env"]}
    assert {"TOKEN", "POD", "RANK", "WORLD_SIZE", "KYKLOS_MODEL_URI"} <= env
    assert pod["metadata"]["labels"]["team"] == "ml"


def test_serving_pods_carry_the_template_and_it_is_part_of_the_revision() -> None:
    from kyklos.api.deployment import ModelDeploymentSpec
    from kyklos.logic import rollout

    def spec(template: dict[str, Any] | None) -> ModelDeploymentSpec:
        runtime: dict[str, Any] = {"image": "server:1"}
        if template is not None:
            runtime["template"] = template
        return ModelDeploymentSpec.model_validate(
            {"model": {"uri": "s3://m/1"}, "runtime": runtime}
        )

    owner = {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris", "namespace": "ml", "uid": "u"},
    }
    model = rollout.ResolvedModel("s3://m/1", "v1")
    body = rollout.build_serving_deployment(
        owner, spec(POD_TEMPLATE), rollout.STABLE, model, 1, "/p"
    )
    pod = body["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia"
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is False
    assert [v["name"] for v in pod["volumes"]][:1] == ["tmp"]
    # Changing the template rolls the pods out like any runtime change.
    assert rollout.revision(model, spec(POD_TEMPLATE)) != rollout.revision(model, spec(None))


def test_worker_jobs_carry_the_operators_pod_template() -> None:
    from kyklos.logic.workerjob import WORKER_CONTAINER, WorkerConfig, build_worker_job

    template = PodTemplate.model_validate(
        {
            "nodeSelector": {"pool": "batch"},
            "tolerations": [{"key": "batch", "operator": "Exists"}],
            "priorityClassName": "low",
            "container": {"resources": {"limits": {"memory": "2Gi"}}},
        }
    )
    owner = {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "d", "namespace": "ml", "uid": "u"},
    }
    config = WorkerConfig(
        image="kyklos:1", artifacts_uri="s3://a", resources={"limits": {"memory": "1Gi"}},
        pod_template=template,
    )  # fmt: skip
    job = build_worker_job(
        owner, job_name="d-profile", component="profile", worker_args=["profile"], config=config
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "batch"}
    assert pod["tolerations"] == [{"key": "batch", "operator": "Exists"}]
    assert pod["priorityClassName"] == "low"
    (worker,) = pod["containers"]
    assert worker["name"] == WORKER_CONTAINER
    assert worker["resources"]["limits"]["memory"] == "2Gi"
    assert worker["securityContext"]["readOnlyRootFilesystem"] is True  # Kyklos's default kept
