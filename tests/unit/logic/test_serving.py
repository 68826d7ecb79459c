"""The proxy sidecar of serving pods (logic.serving via rollout.build_serving_deployment)."""

from __future__ import annotations

from typing import Any

from kyklos.api.deployment import ModelDeploymentSpec
from kyklos.api.serving import ProxySettings
from kyklos.logic import rollout
from kyklos.logic.rollout import ResolvedModel, build_serving_deployment
from kyklos.logic.serving import ENV_SERVER_PORT, ProxyImage, serving_ports

OWNER = {
    "apiVersion": "kyklos.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "churn", "namespace": "ml", "uid": "u-1", "generation": 1},
}
MODEL = ResolvedModel("pvc://kyklos-artifacts/models/churn/1", "v1")
PROXY = ProxyImage("ghcr.io/kyklos/kyklos:0.1.0", "pvc://kyklos-artifacts/", "/mnt/kyklos/pvc")


def spec(**overrides: Any) -> ModelDeploymentSpec:
    body: dict[str, Any] = {
        "model": {"uri": MODEL.uri},
        "runtime": {"image": "python:3.12", "port": 8080, "healthPath": "/healthz"},
        "observability": {"requestLog": {"sampleRate": 0.5, "flushInterval": "5s"}},
    }
    body.update(overrides)
    return ModelDeploymentSpec.model_validate(body)


def containers(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in body["spec"]["template"]["spec"]["containers"]}


def test_the_proxy_takes_the_service_port_and_the_probe_and_the_server_moves() -> None:
    body = build_serving_deployment(
        OWNER, spec(), rollout.CANARY, MODEL, 1, "/mnt/kyklos/pvc", PROXY
    )
    c = containers(body)
    assert list(c) == ["server", "proxy"]
    server, proxy = c["server"], c["proxy"]
    env = {e["name"]: e.get("value") for e in server["env"]}
    port = int(env[ENV_SERVER_PORT])
    assert server["ports"] == [{"name": "server", "containerPort": port, "protocol": "TCP"}]
    assert "readinessProbe" not in server
    assert proxy["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert {"name": "http", "containerPort": 8080, "protocol": "TCP"} in proxy["ports"]
    assert proxy["command"][:2] == ["kyklos", "proxy"]
    settings = ProxySettings.from_flags(proxy["command"][2:])
    rev = body["spec"]["template"]["metadata"]["labels"][rollout.REVISION_LABEL]
    assert settings.revision == rev
    assert settings.server_port == port != 8080
    assert settings.sample_rate == 0.5 and settings.flush_seconds == 5.0
    assert settings.pod == "$(KYKLOS_POD_NAME)"  # expanded by the kubelet
    assert settings.artifacts == "pvc://kyklos-artifacts/"
    # The model and the request logs share the artifact claim: writable volume, the
    # server's own mount stays read-only.
    volumes = {v["name"]: v for v in body["spec"]["template"]["spec"]["volumes"]}
    assert volumes["pvc-kyklos-artifacts"]["persistentVolumeClaim"] == {
        "claimName": "kyklos-artifacts"
    }
    server_mount = next(m for m in server["volumeMounts"] if m["name"] == "pvc-kyklos-artifacts")
    assert server_mount["readOnly"] is True
    proxy_mount = next(m for m in proxy["volumeMounts"] if m["name"] == "pvc-kyklos-artifacts")
    assert proxy_mount == {
        "name": "pvc-kyklos-artifacts",
        "mountPath": "/mnt/kyklos/pvc/kyklos-artifacts",
    }
    assert proxy["securityContext"]["readOnlyRootFilesystem"] is True


def test_proxy_off_or_unknown_image_leaves_the_server_alone() -> None:
    off = spec(observability={"proxy": False})
    for body in (
        build_serving_deployment(OWNER, off, rollout.STABLE, MODEL, 1, "/p", PROXY),
        build_serving_deployment(OWNER, spec(), rollout.STABLE, MODEL, 1, "/p"),
    ):
        c = containers(body)
        assert list(c) == ["server"]
        assert c["server"]["readinessProbe"]["httpGet"]["port"] == "http"
        assert all(e["name"] != ENV_SERVER_PORT for e in c["server"]["env"])


def test_server_ports_differ_per_revision_and_component_and_avoid_the_service_port() -> None:
    seen = {
        serving_ports("churn", comp, rev, 8080).server
        for comp in ("stable", "canary")
        for rev in ("a", "b", "c")
    }
    assert len(seen) == 6
    ports = serving_ports("churn", "stable", "a", 8080)
    assert ports.metrics == ports.server + 1
    assert serving_ports("churn", "stable", "a", 8080) == ports  # deterministic
    clash = serving_ports("churn", "stable", "a", ports.server)
    assert ports.server not in (clash.server, clash.metrics)


def test_the_proxy_journal_lives_on_an_emptydir_that_outlives_a_container_restart() -> None:
    """A read-only root filesystem: the journal must be on the proxy's emptyDir mount."""
    body = build_serving_deployment(
        OWNER, spec(), rollout.CANARY, MODEL, 1, "/mnt/kyklos/pvc", PROXY
    )
    proxy = containers(body)["proxy"]
    settings = ProxySettings.from_flags(proxy["command"][2:])
    mounts = {m["mountPath"]: m["name"] for m in proxy["volumeMounts"]}
    volumes = {v["name"]: v for v in body["spec"]["template"]["spec"]["volumes"]}
    under = [path for path in mounts if settings.journal_dir.startswith(path.rstrip("/") + "/")]
    assert under, (settings.journal_dir, mounts)
    assert "emptyDir" in volumes[mounts[under[0]]]
