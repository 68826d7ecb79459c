"""Children of the sandbox never outlive it, even when serve is killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from kyklos.sandbox.watchdog import descendants

# A stand-in for `serve`: spawns a child with kyklos.sandbox.procs.spawn (process group +
# parent-death signal), and that child forks a grandchild in a new session that ignores
# SIGTERM (like a pod process the node agent started); then it starts the watchdog and
# prints every pid.
CHILD = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'], start_new_session=True)\n"
    "print(g.pid, flush=True)\n"
    "time.sleep(600)\n"
)
SERVE = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from pathlib import Path
    from kyklos.sandbox.procs import spawn
    log, remove, child_code = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    child = spawn([sys.executable, "-c", child_code], log)
    dog = subprocess.Popen(
        [sys.executable, "-m", "kyklos.sandbox.watchdog", "--pid", str(os.getpid()),
         "--remove", remove],
        stdin=subprocess.PIPE, start_new_session=True,
    )
    text = ""
    for _ in range(200):
        text = log.read_text() if log.exists() else ""
        if text.strip():
            break
        time.sleep(0.05)
    print(child.pid, text.strip(), dog.pid, flush=True)
    time.sleep(600)
    """
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [pid for pid in pids if _alive(pid)]
        if not alive:
            return []
        time.sleep(0.05)
    return [pid for pid in pids if _alive(pid)]


def test_sigkill_of_serve_leaves_no_descendant_and_no_temp_dir(tmp_path: Path) -> None:
    temp = tmp_path / "data"
    temp.mkdir()
    (temp / "state").write_text("x")
    serve = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(tmp_path / "child.log"), str(temp), CHILD],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert serve.stdout is not None
    child, grandchild, dog = (int(x) for x in serve.stdout.readline().split())
    assert all(_alive(pid) for pid in (child, grandchild, dog))
    assert os.getpgid(child) == child  # its own process group
    time.sleep(3.0)  # let the watchdog start (slow under load) and snapshot the grandchild
    serve.send_signal(signal.SIGKILL)
    serve.wait()
    assert _wait_gone([child, grandchild, dog]) == []
    assert not temp.exists()


def test_descendants_follow_the_whole_tree() -> None:
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time; "
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
            "print(p.pid, flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert parent.stdout is not None
        grandchild = int(parent.stdout.readline())
        found = {pid for pid, _start in descendants(os.getpid())}
        assert {parent.pid, grandchild} <= found
    finally:
        os.kill(grandchild, signal.SIGKILL)
        parent.kill()
        parent.wait()
