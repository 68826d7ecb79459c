"""The node agent itself: Node registration, policy files, restart and shutdown.

All sandbox only. Restart and shutdown tests run a second, private agent (its own node
name prefix, a NoSchedule taint so nothing else lands there, its own data dir) next to
the session's, and place pods on it by ``spec.nodeName``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from test_node_agent import (
    _processes_with,
    condition,
    container_status,
    core,
    create,
    get_pod,
    make_pod,
    phase_is,
    wait_pod,
)

pytestmark = pytest.mark.sandbox_only

POLICY_ANNOTATION = "sandbox.kyklos.io/policy-sha256"


def test_nodes_are_registered_as_a_kubelet_registers_them(k8s: Any, cluster: Any) -> None:
    from kubernetes import client

    nodes = {
        n.metadata.name: n
        for n in core(k8s).list_node().items
        if n.metadata.name.startswith("sandbox-node-")
    }
    assert "sandbox-node-1" in nodes
    leases = client.CoordinationV1Api(k8s)
    for name, node in nodes.items():
        labels = node.metadata.labels
        assert labels["kubernetes.io/hostname"] == name
        assert labels["kubernetes.io/os"] == "linux"
        assert labels["kubernetes.io/arch"]
        assert labels["node.kubernetes.io/instance-type"] == "sandbox"
        for resource in ("cpu", "memory", "pods", "ephemeral-storage"):
            assert resource in node.status.capacity and resource in node.status.allocatable
        ready = {c.type: c for c in node.status.conditions}["Ready"]
        assert ready.status == "True" and ready.reason == "KubeletReady"
        addresses = {(a.type, a.address) for a in node.status.addresses}
        assert ("InternalIP", "127.0.0.1") in addresses and ("Hostname", name) in addresses
        assert node.status.node_info.kubelet_version
        assert node.status.node_info.operating_system == "linux"
        assert not [t for t in node.spec.taints or [] if t.key.startswith("node.kubernetes.io/")]
        assert len(node.metadata.annotations[POLICY_ANNOTATION]) == 64
        lease = leases.read_namespaced_lease(name, "kube-node-lease")
        assert lease.spec.holder_identity == name
        age = datetime.now(UTC) - lease.spec.renew_time
        assert age.total_seconds() < lease.spec.lease_duration_seconds


def test_policy_reload_is_reported_on_every_node(k8s: Any, kubelet_policy: Any) -> None:
    text = "# reload test\nrules: [{image: 'example.com/reload:*', action: succeed}]\n"
    kubelet_policy(text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    for node in core(k8s).list_node().items:
        if node.metadata.name.startswith("sandbox-node-"):
            assert node.metadata.annotations[POLICY_ANNOTATION] == digest


def test_malformed_policy_on_reload_keeps_the_previous_one(
    k8s: Any, cluster: Any, namespace: str
) -> None:
    cluster.set_kubelet_policy(
        "rules: [{image: 'example.com/keep:*', action: fail, exitCode: 7}]\n"
    )
    before = core(k8s).read_node("sandbox-node-1").metadata.annotations[POLICY_ANNOTATION]
    try:
        cluster.policy_file.write_text("rules: [{image: x, action: explode}]\n")
        time.sleep(1.5)  # three reload polls
        node = core(k8s).read_node("sandbox-node-1")
        assert node.metadata.annotations[POLICY_ANNOTATION] == before
        create(k8s, namespace, make_pod("kept", image="example.com/keep:1"))
        pod = wait_pod(k8s, namespace, "kept", phase_is("Failed", "Succeeded"), "completion")
        assert container_status(pod)["state"]["terminated"]["exitCode"] == 7
    finally:
        cluster.restore_default_policy()


def test_malformed_policy_at_start_exits_2_before_registering(
    cluster: Any, k8s: Any, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  - image: '*'\n    action: succeed\n  - image: x\n    action: nap\n")
    prefix = f"kyklos-bad-{secrets.token_hex(3)}-"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "kyklos.sandbox.nodeagent",
            "--kubeconfig",
            str(cluster.kubeconfig),
            "--nodes",
            "1",
            "--policy",
            str(bad),
            "--data-dir",
            str(tmp_path / "data"),
            "--node-prefix",
            prefix,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "rules[1].action" in lines[0] and "nap" in lines[0]
    assert not [n for n in core(k8s).list_node().items if n.metadata.name.startswith(prefix)]


# --------------------------------------------------------------------------- private agent


@dataclass
class PrivateAgent:
    """A second node agent with one tainted node, started and stopped by the test."""

    kubeconfig: Path
    data_dir: Path
    policy: Path
    prefix: str
    log: Path
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def node(self) -> str:
        return f"{self.prefix}1"

    def start(self, k8s: Any) -> None:
        from kubernetes.client.rest import ApiException

        argv = [
            sys.executable,
            "-m",
            "kyklos.sandbox.nodeagent",
            "--kubeconfig",
            str(self.kubeconfig),
            "--nodes",
            "1",
            "--policy",
            str(self.policy),
            "--data-dir",
            str(self.data_dir),
            "--node-prefix",
            self.prefix,
            "--taint",
            "sandbox.kyklos.io/private=true:NoSchedule",
            *self.extra_args,
        ]
        with open(self.log, "ab") as log:
            env = {**os.environ, **self.env}
            self.proc = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        deadline = time.monotonic() + 60
        start = datetime.now(UTC).replace(microsecond=0)
        while True:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                node = core(k8s).read_node(self.node)
                ready = {c.type: c for c in node.status.conditions or []}.get("Ready")
                if ready is not None and ready.last_heartbeat_time >= start:
                    return
            except ApiException as exc:
                assert exc.status == 404, exc
            assert time.monotonic() < deadline, self.log.read_text()
            time.sleep(0.2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self.proc = None
        return code


@pytest.fixture
def private_agent(cluster: Any, k8s: Any, tmp_path: Path) -> Iterator[PrivateAgent]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "crashLoopBackOff: {initialSeconds: 0.2, maxSeconds: 1}\n"
        "rules: [{image: 'python*', action: process}]\n"
    )
    agent = PrivateAgent(
        kubeconfig=Path(cluster.kubeconfig),
        data_dir=tmp_path / "agent",
        policy=policy,
        prefix=f"kyklos-private-{secrets.token_hex(3)}-",
        log=tmp_path / "agent.log",
    )
    agent.start(k8s)
    try:
        yield agent
    finally:
        if agent.proc is not None:
            agent.stop(signal.SIGKILL)
        from kubernetes.client.rest import ApiException

        try:
            core(k8s).delete_node(agent.node)
        except ApiException as exc:
            assert exc.status == 404


def wait_processes(marker: str, count: int, timeout: float = 10) -> None:
    """Wait until exactly `count` processes carry `marker` in their command line."""
    deadline = time.monotonic() + timeout
    while len(found := _processes_with(marker)) != count:
        assert time.monotonic() < deadline, f"{len(found)} processes with {marker}, want {count}"
        time.sleep(0.1)


def sleeper(
    name: str, node: str, marker: str, restart: str, ignore_term: bool = False
) -> dict[str, Any]:
    code = "import signal, time\n"
    if ignore_term:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += f"MARK = {marker!r}\ntime.sleep(600)\n"
    body = make_pod(name, code, restart=restart)
    body["spec"]["nodeName"] = node
    body["spec"]["terminationGracePeriodSeconds"] = 1
    return body


def test_agent_restart_treats_pods_as_after_a_node_restart(
    k8s: Any, namespace: str, private_agent: PrivateAgent
) -> None:
    marker = f"kyklos-restart-{namespace}"
    node = private_agent.node
    create(k8s, namespace, sleeper("always", node, marker + "-always", "Always"))
    create(k8s, namespace, sleeper("never", node, marker + "-never", "Never"))
    for name in ("always", "never"):
        wait_pod(k8s, namespace, name, phase_is("Running"), "Running")
    wait_processes(marker, 2)

    private_agent.stop(signal.SIGKILL)
    wait_processes(marker, 0)  # they die with the agent (PR_SET_PDEATHSIG)

    private_agent.start(k8s)
    pod = wait_pod(
        k8s,
        namespace,
        "always",
        lambda p: (
            container_status(p).get("restartCount") == 1
            and "running" in container_status(p).get("state", {})
        ),
        "restarted",
    )
    last = container_status(pod)["lastState"]["terminated"]
    assert last["reason"] == "ContainerStatusUnknown"
    assert last["exitCode"] == 137
    never = wait_pod(k8s, namespace, "never", phase_is("Failed"), "Failed")
    assert container_status(never)["state"]["terminated"]["reason"] == "ContainerStatusUnknown"
    assert condition(never, "Ready")["status"] == "False"
    wait_processes(marker, 1)  # only the Always pod runs again


def test_stopping_the_agent_stops_every_process_and_cleans_up(
    k8s: Any, namespace: str, private_agent: PrivateAgent
) -> None:
    marker = f"kyklos-stop-{namespace}"
    node = private_agent.node
    create(k8s, namespace, sleeper("polite", node, marker + "-polite", "Always"))
    create(k8s, namespace, sleeper("stubborn", node, marker + "-stubborn", "Always", True))
    for name in ("polite", "stubborn"):
        wait_pod(k8s, namespace, name, phase_is("Running"), "Running")
    state = json.loads((private_agent.data_dir / "nodeagent-state.json").read_text())
    assert len(state["pids"]) == 2
    assert private_agent.stop(signal.SIGTERM) == 0
    assert not _processes_with(marker), "no pod process survives the agent"
    assert not (private_agent.data_dir / "nodeagent-state.json").exists()
    for path in state["mountpoints"]:
        assert not os.path.exists(path), f"mount point {path} created by the agent was left behind"
    assert get_pod(k8s, namespace, "polite") is not None, "pods stay; only their processes stop"


def test_agent_exits_when_its_parent_dies(
    k8s: Any, namespace: str, cluster: Any, tmp_path: Path
) -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    agent = PrivateAgent(
        kubeconfig=Path(cluster.kubeconfig),
        data_dir=tmp_path / "agent",
        policy=tmp_path / "policy.yaml",
        prefix=f"kyklos-orphan-{secrets.token_hex(3)}-",
        log=tmp_path / "agent.log",
        extra_args=["--parent-pid", str(parent.pid)],
    )
    agent.policy.write_text("rules: [{image: 'python*', action: process}]\n")
    agent.start(k8s)
    try:
        marker = f"kyklos-orphan-{namespace}"
        create(k8s, namespace, sleeper("child", agent.node, marker, "Always"))
        wait_pod(k8s, namespace, "child", phase_is("Running"), "Running")
        parent.kill()
        parent.wait()
        assert agent.proc is not None
        assert agent.proc.wait(timeout=30) == 0
        wait_processes(marker, 0)
    finally:
        if agent.proc is not None and agent.proc.poll() is None:
            agent.proc.kill()
        parent.kill()
        from kubernetes.client.rest import ApiException

        with contextlib.suppress(ApiException):
            core(k8s).delete_node(agent.node)


def test_without_mount_namespace_paths_are_rewritten_to_host_directories(
    k8s: Any, namespace: str, cluster: Any, tmp_path: Path
) -> None:
    agent = PrivateAgent(
        kubeconfig=Path(cluster.kubeconfig),
        data_dir=tmp_path / "agent",
        policy=tmp_path / "policy.yaml",
        prefix=f"kyklos-nomntns-{secrets.token_hex(3)}-",
        log=tmp_path / "agent.log",
        env={"KYKLOS_SANDBOX_NO_MOUNTNS": "1"},
    )
    agent.policy.write_text("rules: [{image: 'python*', action: process}]\n")
    agent.start(k8s)
    try:
        code = (
            "import os, sys\n"
            "open(sys.argv[1] + '/x', 'w').write('1')\n"
            "open(os.environ['KYKLOS_TERMINATION_MESSAGE_PATH'], 'w').write("
            "os.getcwd() + ' ' + os.environ['OUT'])"
        )
        body = make_pod(
            "rewritten",
            command=["python", "-c", code, "/data"],
            workingDir="/data/sub",
            env=[{"name": "OUT", "value": "/data/out.json"}],
            volumeMounts=[{"name": "d", "mountPath": "/data"}],
            pod_spec={"volumes": [{"name": "d", "emptyDir": {}}], "nodeName": agent.node},
        )
        create(k8s, namespace, body)
        pod = wait_pod(k8s, namespace, "rewritten", phase_is("Succeeded", "Failed"), "done")
        message = container_status(pod)["state"]["terminated"]["message"]
        volume = next((agent.data_dir / "pods").glob(f"{namespace}_rewritten_*")) / "volumes/d"
        assert message == f"{volume}/sub {volume}/out.json"
        assert (volume / "x").read_text() == "1"
    finally:
        from kubernetes.client.rest import ApiException

        agent.stop()
        with contextlib.suppress(ApiException):
            core(k8s).delete_node(agent.node)
