"""Child processes that cannot outlive the sandbox.

Every child is started in its own process group with ``PR_SET_PDEATHSIG`` set, so the kernel
kills it the moment the process that started it dies (even by SIGKILL). The death signal is
tied to the *thread* that forked the child, so children must be spawned from the main thread.
Grandchildren (pod processes of the node agent) are covered by the watchdog
(``kyklos.sandbox.watchdog``), which outlives ``serve`` and kills whatever is left of its
process tree.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child receive ``sig`` when this process dies.

    Call ``subprocess.Popen`` from the main thread (the signal follows the forking thread).
    """
    return _die_with_parent(os.getpid(), sig)


def _die_with_parent(parent_pid: int, sig: int) -> Callable[[], None]:
    """Return a preexec function setting the parent-death signal (runs in the forked child)."""

    def preexec() -> None:
        _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        # The parent may have died between fork and prctl; then nobody will signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


def spawn(
    argv: Sequence[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    death_signal: int = signal.SIGKILL,
    stdout_to_log: bool = True,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group, logging to ``log_path``, dying with us."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log if stdout_to_log else subprocess.DEVNULL,
            stderr=log,
            env=env,
            cwd=cwd,
            process_group=0,
            preexec_fn=_die_with_parent(os.getpid(), death_signal),
            close_fds=True,
        )


def stop(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the child's process group, SIGKILL it after ``grace`` seconds, and reap it."""
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
    # Anything the child left in its group (it was the group leader) goes too.
    _signal_group(proc.pid, signal.SIGKILL)


def stop_all(procs: Sequence[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """Stop several children concurrently: SIGTERM all, wait up to ``grace``, SIGKILL the rest."""
    for proc in procs:
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            proc.wait(timeout=remaining)
        except subprocess.TimeoutExpired:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        _signal_group(proc.pid, signal.SIGKILL)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def log_tail(path: Path, lines: int = 15, max_chars: int = 3000) -> str:
    """The last lines of a log file, for error messages."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    tail = "\n".join(text.splitlines()[-lines:])
    return tail[-max_chars:]
