"""`kyklos sandbox serve` itself: bad input fails fast and cleanly, and nothing outlives it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from sandbox_api import wait_for

from kyklos.sandbox.build import pinned_binaries
from kyklos.sandbox.watchdog import descendants

pytestmark = [
    pytest.mark.sandbox_only,
    pytest.mark.skipif(
        not pinned_binaries().present(), reason="control plane not built (kyklos sandbox build)"
    ),
]

SERVE = [sys.executable, "-m", "kyklos.sandbox.cli", "serve"]


def _alive(pid: int, start: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and int(fields[19]) == start


def test_kubectl_works_with_the_printed_kubeconfig(cluster: Any) -> None:
    if not cluster.is_sandbox:
        pytest.skip("checks the sandbox's own kubeconfig")
    out = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "get", "nodes", "-o", "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "node/sandbox-node-1" in out.split()
    version = subprocess.run(
        ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "version", "-o", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout
    assert f'"gitVersion": "{pinned_binaries().version}"' in version


def test_malformed_policy_fails_before_starting_anything(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - image: '*'\n    action: explode\n")
    result = subprocess.run(
        [*SERVE, "--kubelet-policy", str(policy), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "rules[0]" in lines[0] and "action" in lines[0]
    assert not (tmp_path / "data" / "controlplane").exists()  # nothing was started


def test_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*SERVE, "--port", str(port), "--kubeconfig", str(tmp_path / "k")],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {port}" in lines[0] and "in use" in lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def second_sandbox(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    """Another sandbox (temporary data dir, one node) started just for this test."""
    kubeconfig = tmp_path / "second.kubeconfig"
    with open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen(
            [*SERVE, "--nodes", "1", "--kubeconfig", str(kubeconfig)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=tmp_path,
        )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first == f"kubeconfig: {kubeconfig}\n", (tmp_path / "serve.log").read_text()
    try:
        yield proc, kubeconfig
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _temp_data_dir(serve_log: Path) -> Path:
    for line in serve_log.read_text().splitlines():
        if "data in " in line:
            return Path(line.rsplit("data in ", 1)[1].strip())
    raise AssertionError(f"serve did not say where its data is:\n{serve_log.read_text()}")


def _start_sleeper_pod(kubeconfig: Path) -> None:
    with config.new_client_from_config(config_file=str(kubeconfig)) as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(
            "default",
            {
                "metadata": {"name": "sleeper"},
                "spec": {
                    "containers": [
                        {
                            "name": "main",
                            "image": "python:3.12",
                            "command": ["python", "-c", "import time; time.sleep(600)"],
                        }
                    ]
                },
            },
        )
        wait_for(
            lambda: core.read_namespaced_pod("sleeper", "default").status.phase == "Running",
            timeout=60,
            what="the sleeper pod running",
        )


def test_sigkill_of_serve_leaves_no_process_and_no_files(
    second_sandbox: tuple[subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    proc, kubeconfig = second_sandbox
    _start_sleeper_pod(kubeconfig)
    tree = descendants(proc.pid)
    commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid, _ in tree]
    assert any(b"kube-apiserver" in c for c in commands)
    assert any(b"time.sleep(600)" in c for c in commands)  # the pod's process
    data_dir = _temp_data_dir(tmp_path / "serve.log")
    assert data_dir.exists()
    time.sleep(2.0)  # the watchdog snapshots the tree twice a second
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(
        lambda: not any(_alive(pid, start) for pid, start in tree),
        timeout=30,
        what="every process of the killed sandbox gone",
    )
    wait_for(lambda: not data_dir.exists(), timeout=30, what="the temporary data dir removed")


def test_sigterm_stops_everything_and_exits_zero(
    second_sandbox: tuple[subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    proc, kubeconfig = second_sandbox
    _start_sleeper_pod(kubeconfig)
    tree = descendants(proc.pid)
    data_dir = _temp_data_dir(tmp_path / "serve.log")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=90) == 0
    assert not [pid for pid, start in tree if _alive(pid, start)]
    assert not data_dir.exists()
    assert not kubeconfig.exists()  # it would point at a server that is gone
