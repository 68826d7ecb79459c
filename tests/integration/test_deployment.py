"""ModelDeployment stories against a real API server with the real operator.

Serving images: the sandbox's kubelet policy gives each image a behaviour (``serve``,
``crashloop``, ``pending``), one policy for every story. The healthy stories use agnhost's
``netexec`` (a real HTTP server), so they also run on a real cluster; the crash-loop and
never-ready stories need the scripted kubelet and are ``sandbox_only``.
"""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import yaml
from kyklos_testing import Kyklos, wait_for

from kyklos.sandbox.policy import DEFAULT_POLICY_PATH

SERVE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
CRASH = "registry.test/crash:1"
NEVER_READY = "registry.test/never-ready:1"
# The image of the model-download init container (the operator's worker image) for the s3://
# models of these stories: scripted to succeed; tests/integration/test_model_fetch.py runs
# the real download.
MODEL_FETCH = "registry.test/model-fetch:1"
PLURAL = "modeldeployments"
TIMEOUT = 90


def serving_policy() -> dict[str, Any]:
    """The default policy with scripted serving behaviours in front, and a quick back-off."""
    with open(DEFAULT_POLICY_PATH) as handle:
        policy = yaml.safe_load(handle)
    policy["crashLoopBackOff"] = {"initialSeconds": 1, "maxSeconds": 2}
    policy["rules"] = [
        {"image": "registry.k8s.io/e2e-test-images/agnhost*", "action": "serve", "readyAfter": 0.5},
        {"image": "registry.test/crash*", "action": "crashloop", "duration": 0.2, "exitCode": 1},
        {"image": "registry.test/never-ready*", "action": "pending"},
        {"image": "registry.test/model-fetch*", "action": "succeed", "duration": 0.1},
        *policy["rules"],
    ]
    return policy


@pytest.fixture
def running_operator(
    cluster: Any, crds_installed: None, request: pytest.FixtureRequest, operator: Any
) -> Any:
    """The serving policy (on the sandbox) and a running operator."""
    if cluster.is_sandbox:
        setter: Callable[[Any], None] = request.getfixturevalue("kubelet_policy")
        setter(serving_policy())
    return operator({"KYKLOS_WORKER_IMAGE": MODEL_FETCH} if cluster.is_sandbox else {})


@pytest.fixture
def kyklos(k8s: Any, namespace: str, running_operator: Any) -> Iterator[Kyklos]:
    """A client for the test's namespace, with the operator running."""
    yield Kyklos(k8s, namespace)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def runtime(image: str = SERVE) -> dict[str, Any]:
    return {
        "image": image,
        "args": ["netexec", "--http-port=8080"],
        "port": 8080,
        "healthPath": "/",
    }


def canary(*weights: int, pause: str = "1s") -> dict[str, Any]:
    return {"type": "Canary", "steps": [{"weight": w, "pause": pause} for w in weights]}


def model_deployment(name: str, uri: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"uri": uri},
        "runtime": runtime(),
        "replicas": 2,
        "progressDeadlineSeconds": 60,
        # The scripted servers listen nowhere: no proxy in front of them (the proxy's
        # stories are in test_canary_analysis.py).
        "observability": {"proxy": False},
        **spec,
    }
    return {"metadata": {"name": name}, "spec": body}


class Cluster:
    """Reads of the built-in children."""

    def __init__(self, k8s: Any, namespace: str) -> None:
        from kubernetes import client

        self.apps = client.AppsV1Api(k8s)
        self.core = client.CoreV1Api(k8s)
        self.autoscaling = client.AutoscalingV2Api(k8s)
        self.namespace = namespace

    def deployment(self, name: str) -> Any | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.apps.read_namespaced_deployment(name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def events(self, name: str) -> list[tuple[str, str, str]]:
        """(type, reason, message) of the Events about ModelDeployment ``name``, oldest first."""
        items = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        ).items
        items.sort(key=lambda e: int(e.metadata.resource_version))
        return [
            (e.type, e.reason, e.message)
            for e in items
            if e.involved_object.kind == "ModelDeployment"
        ]


def env_of(deployment: Any) -> dict[str, str]:
    return {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}


def wait_status(
    ky: Kyklos,
    name: str,
    check: Callable[[Mapping[str, Any]], bool],
    what: str,
    timeout: float = TIMEOUT,
) -> dict[str, Any]:
    return wait_for(
        lambda: (lambda s: s if check(s) else None)(ky.status(PLURAL, name)),
        timeout=timeout,
        what=f"ModelDeployment {name}: {what}",
    )


def available_with(ky: Kyklos, name: str, uri: str) -> dict[str, Any]:
    return wait_status(
        ky,
        name,
        lambda s: (
            s.get("phase") == "Available"
            and s.get("stableModel") == uri
            and not s.get("canaryModel")
        ),
        f"Available serving {uri}",
    )


def test_healthy_canary_walks_10_50_100_and_is_promoted(
    kyklos: Kyklos, k8s: Any, namespace: str, running_operator: Any
) -> None:
    kube = Cluster(k8s, namespace)
    kyklos.create(
        PLURAL, model_deployment("iris", "s3://models/iris/1", strategy=canary(10, 50, 100))
    )
    first = available_with(kyklos, "iris", "s3://models/iris/1")
    assert first["url"] == f"http://iris.{namespace}.svc:8080"
    assert first["readyReplicas"] == 2
    assert kube.deployment("iris-canary") is None  # the first deployment needs no canary
    service = kube.core.read_namespaced_service("iris", namespace)
    assert service.spec.selector == {
        "app.kubernetes.io/managed-by": "kyklos",
        "app.kubernetes.io/part-of": "kyklos",
        "kyklos.io/modeldeployment": "iris",
    }

    kyklos.patch(PLURAL, "iris", {"spec": {"model": {"uri": "s3://models/iris/2"}}})
    seen: list[tuple[int, int]] = []  # (weight, canary replicas) while the canary runs

    def promoted() -> dict[str, Any] | None:
        status = kyklos.status(PLURAL, "iris")
        canary_dep = kube.deployment("iris-canary")
        if status.get("canaryWeight") and canary_dep is not None:
            sample = (status["canaryWeight"], canary_dep.spec.replicas)
            if not seen or seen[-1] != sample:
                seen.append(sample)
        done = status.get("stableModel") == "s3://models/iris/2" and not status.get("canaryModel")
        return status if done and status.get("phase") == "Available" else None

    final = wait_for(promoted, timeout=TIMEOUT, what="the canary promoted", interval=0.2)
    # Beside the 2 stable replicas: 10 % -> 1 canary (at least one), 50 % -> 2, 100 % -> 2.
    weights = [w for w, _ in seen]
    assert weights == sorted(weights) and {10, 50, 100} <= set(weights), seen
    assert dict(seen)[100] == 2 and dict(seen)[50] == 2 and dict(seen)[10] == 1, seen
    assert final["history"][-1]["model"] == "s3://models/iris/2"
    assert final["history"][-1]["outcome"] == "Promoted"
    assert final["history"][-1]["strategy"] == "Canary"
    stable = kube.deployment("iris-stable")
    assert env_of(stable)["KYKLOS_MODEL_URI"] == "s3://models/iris/2"
    wait_for(lambda: kube.deployment("iris-canary") is None, timeout=30, what="canary removed")
    reasons = [r for _, r, _ in kube.events("iris")]
    assert reasons.count("CanaryStarted") == 1 and reasons.count("Promoted") == 1, reasons
    steps = [m for _, r, m in kube.events("iris") if r == "CanaryStep"]
    assert any("(50%)" in m for m in steps) and any("(100%)" in m for m in steps), steps
    ready = next(c for c in final["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    text = scrape(running_operator.metrics_port)
    for event in ("started", "promoted"):
        line = f'kyklos_rollouts_total{{event="{event}",namespace="{namespace}"}}'
        assert f"{line} 2.0" in text, event  # the first deployment and the canary
    assert f'kyklos_canary_weight_percent{{name="iris",namespace="{namespace}"}} 0.0' in text
    assert (
        f'kyklos_rollout_duration_seconds_count{{namespace="{namespace}",outcome="promoted"}} 2.0'
        in text
    )

    # Settled: nothing is written any more (no status churn, no child patches).
    def versions() -> list[str]:
        return [
            kyklos.get(PLURAL, "iris")["metadata"]["resourceVersion"],
            kube.deployment("iris-stable").metadata.resource_version,
            kube.core.read_namespaced_service("iris", namespace).metadata.resource_version,
        ]

    settled = versions()
    time.sleep(5)
    assert versions() == settled


def stable_fingerprint(kube: Cluster, name: str) -> tuple[int, Any]:
    stable = kube.deployment(f"{name}-stable")
    assert stable is not None
    return stable.metadata.generation, stable.spec.template.to_dict()


@pytest.mark.sandbox_only
def test_crash_looping_canary_is_rolled_back_with_the_stable_untouched(
    kyklos: Kyklos, k8s: Any, namespace: str
) -> None:
    kube = Cluster(k8s, namespace)
    kyklos.create(
        PLURAL,
        model_deployment("crashy", "s3://m/1", strategy=canary(50), maxCanaryRestarts=1),
    )
    available_with(kyklos, "crashy", "s3://m/1")
    before = stable_fingerprint(kube, "crashy")
    kyklos.patch(
        PLURAL, "crashy", {"spec": {"model": {"uri": "s3://m/2"}, "runtime": {"image": CRASH}}}
    )
    wait_for(lambda: kube.deployment("crashy-canary"), timeout=TIMEOUT, what="canary created")
    status = wait_status(kyklos, "crashy", lambda s: s.get("phase") == "RolledBack", "RolledBack")
    assert status["failedModel"] == "s3://m/2"
    assert status["stableModel"] == "s3://m/1"
    assert not status.get("canaryModel")
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "CrashLoop")
    wait_for(lambda: kube.deployment("crashy-canary") is None, timeout=30, what="canary deleted")
    assert stable_fingerprint(kube, "crashy") == before
    warnings = [(r, m) for t, r, m in kube.events("crashy") if t == "Warning"]
    assert any(r == "RolledBack" and "s3://m/2" in m and "restarted" in m for r, m in warnings), (
        warnings
    )
    # Settled: the same model is not retried.
    time.sleep(3)
    assert kube.deployment("crashy-canary") is None
    assert kyklos.status(PLURAL, "crashy")["phase"] == "RolledBack"
    # A later, different model starts a fresh canary (and, healthy, is promoted).
    kyklos.patch(
        PLURAL, "crashy", {"spec": {"model": {"uri": "s3://m/3"}, "runtime": {"image": SERVE}}}
    )
    final = available_with(kyklos, "crashy", "s3://m/3")
    assert final["failedModel"] == "s3://m/2"


@pytest.mark.sandbox_only
def test_never_ready_canary_is_rolled_back_at_the_deadline(
    kyklos: Kyklos, k8s: Any, namespace: str
) -> None:
    kube = Cluster(k8s, namespace)
    kyklos.create(
        PLURAL,
        model_deployment("stuck", "s3://m/1", strategy=canary(50), progressDeadlineSeconds=6),
    )
    available_with(kyklos, "stuck", "s3://m/1")
    before = stable_fingerprint(kube, "stuck")
    kyklos.patch(
        PLURAL, "stuck", {"spec": {"model": {"uri": "s3://m/2"}, "runtime": {"image": NEVER_READY}}}
    )
    started = time.monotonic()
    wait_for(lambda: kube.deployment("stuck-canary"), timeout=TIMEOUT, what="canary created")
    status = wait_status(kyklos, "stuck", lambda s: s.get("phase") == "RolledBack", "RolledBack")
    assert time.monotonic() - started >= 5  # not before the deadline
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "ProgressDeadlineExceeded")
    assert status["history"][-1]["outcome"] == "RolledBack"
    wait_for(lambda: kube.deployment("stuck-canary") is None, timeout=30, what="canary deleted")
    assert stable_fingerprint(kube, "stuck") == before


def test_from_training_job_waits_for_an_accepted_model(
    kyklos: Kyklos, k8s: Any, namespace: str
) -> None:
    kube = Cluster(k8s, namespace)
    body = model_deployment("fromtj", "unused")
    body["spec"]["model"] = {"fromTrainingJob": "train"}
    kyklos.create(PLURAL, body)
    status = wait_status(
        kyklos, "fromtj", lambda s: "not found" in _ready_message(s), "Pending: job not found"
    )
    assert status["phase"] == "Pending"
    kyklos.create(
        "trainingjobs",
        {
            "metadata": {"name": "train"},
            "spec": {"datasetRef": {"name": "absent"}, "image": "python:3.12"},
        },
    )
    wait_status(
        kyklos,
        "fromtj",
        lambda s: "TrainingJob train is" in _ready_message(s),
        "Pending: job not done",
    )
    # Let the TrainingJob controller write its own first status (waiting for the absent
    # Dataset) before writing a finished one, which it then leaves alone.
    wait_for(
        lambda: (
            (kyklos.condition("trainingjobs", "train", "Ready") or {}).get("reason")
            == "DatasetNotReady"
        ),
        timeout=TIMEOUT,
        what="TrainingJob train waiting for its Dataset",
    )
    finished = {
        "phase": "Succeeded",
        "run": "r1",
        "modelUri": "s3://models/train/r1",
        "startTime": "2026-11-23T12:00:00Z",
        "completionTime": "2026-11-23T12:01:00Z",
    }
    _write_tj_status(kyklos, "train", finished, accepted=False)
    wait_status(
        kyklos, "fromtj", lambda s: "rejected" in _ready_message(s), "Pending: model rejected"
    )
    assert kube.deployment("fromtj-stable") is None  # never a Deployment without an accepted model
    _write_tj_status(kyklos, "train", finished, accepted=True)
    available_with(kyklos, "fromtj", "s3://models/train/r1")
    env = env_of(kube.deployment("fromtj-stable"))
    assert env["KYKLOS_MODEL_URI"] == "s3://models/train/r1"
    assert env["KYKLOS_MODEL_VERSION"] == "train-r1"


def _ready_message(status: Mapping[str, Any]) -> str:
    for condition in status.get("conditions") or []:
        if condition["type"] == "Ready":
            return str(condition.get("message"))
    return ""


def _write_tj_status(ky: Kyklos, name: str, status: dict[str, Any], *, accepted: bool) -> None:
    condition = {
        "type": "ModelAccepted",
        "status": "True" if accepted else "False",
        "reason": "ThresholdMet" if accepted else "BelowThreshold",
        "message": "accuracy 0.95 >= 0.9" if accepted else "accuracy 0.5 < 0.9",
        "lastTransitionTime": "2026-11-23T12:01:00Z",
    }
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Succeeded",
        "message": "training succeeded",
        "lastTransitionTime": "2026-11-23T12:01:00Z",
    }
    ky.api.patch_namespaced_custom_object_status(
        "kyklos.io",
        "v1alpha1",
        ky.namespace,
        "trainingjobs",
        name,
        {"status": {**status, "conditions": [ready, condition]}},
    )


def test_scaling_replicas_keeps_the_canary_ratio(kyklos: Kyklos, k8s: Any, namespace: str) -> None:
    kube = Cluster(k8s, namespace)
    kyklos.create(PLURAL, model_deployment("scaled", "s3://m/1", strategy=canary(50, pause="1h")))
    available_with(kyklos, "scaled", "s3://m/1")
    kyklos.patch(PLURAL, "scaled", {"spec": {"model": {"uri": "s3://m/2"}}})
    wait_for(
        lambda: (d := kube.deployment("scaled-canary")) is not None and d.spec.replicas == 2,
        timeout=TIMEOUT,
        what="a 2-replica canary beside 2 stable (50 % of all pods)",
    )
    kyklos.patch(PLURAL, "scaled", {"spec": {"replicas": 6}})
    wait_for(
        lambda: (d := kube.deployment("scaled-canary")) is not None and d.spec.replicas == 6,
        timeout=TIMEOUT,
        what="a 6-replica canary beside 6 stable (50 % of all pods)",
    )
    stable = kube.deployment("scaled-stable")
    assert stable.spec.replicas == 6
    assert env_of(stable)["KYKLOS_MODEL_URI"] == "s3://m/1"  # still the stable model
    status = wait_status(kyklos, "scaled", lambda s: s.get("replicas") == 12, "12 desired replicas")
    assert (status["canaryWeight"], status["step"], status["canaryModel"]) == (50, 0, "s3://m/2")


def test_deleting_the_model_deployment_removes_every_child(
    kyklos: Kyklos, k8s: Any, namespace: str, running_operator: Any
) -> None:
    kube = Cluster(k8s, namespace)
    kyklos.create(
        PLURAL,
        model_deployment(
            "gone",
            "s3://m/1",
            strategy=canary(50, pause="1h"),
            autoscaling={"minReplicas": 2, "maxReplicas": 4},
        ),
    )
    available_with(kyklos, "gone", "s3://m/1")
    kyklos.patch(PLURAL, "gone", {"spec": {"model": {"uri": "s3://m/2"}}})
    wait_for(lambda: kube.deployment("gone-canary"), timeout=TIMEOUT, what="canary created")
    hpa = kube.autoscaling.read_namespaced_horizontal_pod_autoscaler("gone", namespace)
    assert hpa.spec.scale_target_ref.name == "gone-stable"
    kyklos.api.delete_namespaced_custom_object("kyklos.io", "v1alpha1", namespace, PLURAL, "gone")
    selector = "kyklos.io/modeldeployment=gone"

    def all_gone() -> bool:
        return not (
            kube.apps.list_namespaced_deployment(namespace, label_selector=selector).items
            or kube.core.list_namespaced_service(namespace, label_selector=selector).items
            or kube.autoscaling.list_namespaced_horizontal_pod_autoscaler(
                namespace, label_selector=selector
            ).items
            or kube.core.list_namespaced_pod(namespace, label_selector=selector).items
        )

    wait_for(all_gone, timeout=TIMEOUT, what="every child garbage-collected")
    # Its daemon stopped and released the finalizer, and the deletion in the middle of a
    # rollout (reconciles running) left no warning or error about it in the operator's log.
    wait_for(
        lambda: "gone" not in {m["metadata"]["name"] for m in kyklos.list(PLURAL)},
        timeout=TIMEOUT,
        what="the ModelDeployment itself gone (finalizer released)",
    )
    noisy = [
        line
        for line in running_operator.log().splitlines()
        if re.search(r"\[(WARNING|ERROR|CRITICAL) *\]", line) and f"{namespace}/gone" in line
    ]
    assert not noisy, "\n".join(noisy)


def test_rolling_update_replaces_the_model_in_place(
    kyklos: Kyklos, k8s: Any, namespace: str
) -> None:
    kube = Cluster(k8s, namespace)
    kyklos.create(PLURAL, model_deployment("rolling", "s3://m/1"))  # RollingUpdate by default
    available_with(kyklos, "rolling", "s3://m/1")
    kyklos.patch(PLURAL, "rolling", {"spec": {"model": {"uri": "s3://m/2"}}})
    final = available_with(kyklos, "rolling", "s3://m/2")
    assert kube.deployment("rolling-canary") is None
    assert env_of(kube.deployment("rolling-stable"))["KYKLOS_MODEL_URI"] == "s3://m/2"
    assert [(h["model"], h["strategy"], h["outcome"]) for h in final["history"]] == [
        ("s3://m/1", "RollingUpdate", "Promoted"),
        ("s3://m/2", "RollingUpdate", "Promoted"),
    ]
    reasons = [r for _, r, _ in kube.events("rolling")]
    assert "CanaryStarted" not in reasons and reasons.count("RolloutStarted") == 2, reasons
