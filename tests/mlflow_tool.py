"""A real MLflow tracking server for the registry tests (SQLite backend, loopback only).

The server is MLflow's own (``mlflow server``), installed from PyPI into a virtualenv of its
own under ``.tools/mlflow`` (gitignored) on first use, because the full ``mlflow`` package
brings pandas, SQLAlchemy and a web stack that Kyklos itself does not need (the operator
uses only the client, ``kyklos[mlflow]``). ``KYKLOS_TEST_MLFLOW`` may name an existing
``mlflow`` executable instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV = REPO_ROOT / ".tools" / "mlflow"
INSTALL_TIMEOUT = 900
START_TIMEOUT = 240.0


class MlflowUnavailableError(RuntimeError):
    """No mlflow server can be provided on this machine; the message says why."""


def mlflow_executable() -> Path:
    """The ``mlflow`` CLI: $KYKLOS_TEST_MLFLOW, or a virtualenv built on first use."""
    given = os.environ.get("KYKLOS_TEST_MLFLOW")
    if given:
        return Path(given)
    exe = VENV / "bin" / "mlflow"
    if exe.exists():
        return exe
    VENV.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", str(VENV)],
        [str(VENV / "bin" / "pip"), "install", "--quiet", "mlflow>=3,<4"],
    ]
    for argv in steps:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
        )
        if proc.returncode != 0:
            shutil.rmtree(VENV, ignore_errors=True)
            raise MlflowUnavailableError(f"{' '.join(argv)} failed:\n{proc.stderr[-2000:]}")
    return exe


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class MlflowServer:
    """One ``mlflow server`` process; stop() and start() again keep its data."""

    root: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 (the process owns it)
        self.proc = subprocess.Popen(
            [
                str(mlflow_executable()), "server",
                "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
                "--default-artifact-root", f"file://{self.root / 'artifacts'}",
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            ],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            # No background job runner (huey workers): the tests need the tracking API only.
            env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise MlflowUnavailableError(f"mlflow server exited: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise MlflowUnavailableError(f"mlflow server not up in {START_TIMEOUT}s")
            time.sleep(1)

    def stop(self) -> None:
        """Stop the server and every process it started (its own session)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def log_tail(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""
