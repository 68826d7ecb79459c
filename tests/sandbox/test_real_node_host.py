"""The real node's host contract: one per machine, nothing left behind after a crash, clear refusals.

Each test starts ``kyklos sandbox serve --node real`` itself (root, overlayfs and the Debian
packages needed; skipped with the reason elsewhere, and when the session's own sandbox is the
real node). A start takes ~15 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kyklos.sandbox.realnode.config import BRIDGE
from kyklos.sandbox.realnode.host import STATE_DIR


def _skip_reason() -> str | None:
    if os.environ.get("KYKLOS_TEST_NODE") == "real":
        return "the session's sandbox already runs this machine's one real node"
    from kyklos.sandbox.realnode.node import NodeError, preflight

    try:
        preflight()
    except NodeError as exc:
        return f"real node: {exc}"
    return None


SKIP = _skip_reason()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(SKIP is not None, reason=SKIP or "")]


def _bridge_exists() -> bool:
    return subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode == 0


def _serve(tmp: Path, name: str, **kwargs: object) -> tuple[subprocess.Popen[str], Path]:
    log = tmp / f"{name}.log"
    argv = [
        sys.executable,
        "-m",
        "kyklos.sandbox.cli",
        "serve",
        "--node",
        "real",
        "--kubeconfig",
        str(tmp / f"{name}.kubeconfig"),
    ]
    with open(log, "w") as handle:
        proc = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=handle,
            text=True,
            **kwargs,  # type: ignore[call-overload]
        )
    return proc, log


def _first_line(proc: subprocess.Popen[str], timeout: float = 300) -> str:
    result: list[str] = []
    reader = threading.Thread(
        target=lambda: result.append(proc.stdout.readline() if proc.stdout else ""), daemon=True
    )
    reader.start()
    reader.join(timeout)
    return result[0] if result else ""


@pytest.fixture
def started(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    proc, log = _serve(tmp_path, "first")
    line = _first_line(proc)
    assert line.startswith("kubeconfig: "), log.read_text()[-3000:]
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)


def _wait_restored(timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _bridge_exists() and not (STATE_DIR / "journal.json").exists():
            return
        time.sleep(0.5)
    pytest.fail(f"the host was not restored: bridge {BRIDGE} or {STATE_DIR}/journal.json remain")


def test_a_second_real_node_refuses_in_one_line_and_a_crash_leaves_nothing(
    started: tuple[subprocess.Popen[str], Path], tmp_path: Path
) -> None:
    first, _log = started
    assert _bridge_exists()
    journal = json.loads((STATE_DIR / "journal.json").read_text())
    assert journal["pid"] == first.pid and journal["bridge"] is True
    original_panic = journal["sysctls"]["kernel.panic"]

    second, log = _serve(tmp_path, "second")
    code = second.wait(timeout=120)
    lines = [line for line in log.read_text().splitlines() if line.startswith("kyklos sandbox")]
    assert code == 2
    assert len(lines) == 1 and "another sandbox with a real node is running" in lines[0], lines
    assert f"pid {first.pid}" in lines[0]
    assert _bridge_exists()  # the refusal touched nothing of the first node

    # serve dies without any chance to clean up: its watchdog restores the host.
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    _wait_restored()
    assert Path("/proc/sys/kernel/panic").read_text().strip() == original_panic
    leftovers = subprocess.run(
        ["iptables-save"], capture_output=True, text=True, check=False
    ).stdout
    assert "KUBE-SERVICES" not in leftovers
    # containerd's kept store is not trusted after a crash: the next start empties it.
    from kyklos.sandbox.realnode.build import pinned_node
    from kyklos.sandbox.realnode.store import STORE_STAMP, reusable, store_dir, store_inputs

    node = pinned_node()
    stamp = (store_dir(node) / STORE_STAMP).read_text()
    assert not reusable(stamp, store_inputs(node))


def test_a_start_after_a_crash_cleans_up_what_the_crashed_run_left(tmp_path: Path) -> None:
    # A crashed run whose watchdog died too: its journal and bridge are still there.
    dead = subprocess.Popen(["true"])
    dead.wait()
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ip", "link", "add", BRIDGE, "type", "bridge"], check=True)
    (STATE_DIR / "journal.json").write_text(
        json.dumps(
            {
                "pid": dead.pid,
                "data_dir": str(tmp_path / "crashed"),
                "sysctls": {},
                "created_paths": [],
                "iptables_before": {},
                "bridge": True,
                "route": False,
            }
        )
    )
    proc, log = _serve(tmp_path, "after-crash")
    try:
        assert _first_line(proc).startswith("kubeconfig: "), log.read_text()[-3000:]
        assert f"cleaning up what a previous real node left (pid {dead.pid}" in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    _wait_restored(10)
