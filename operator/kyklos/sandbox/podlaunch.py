"""Starting a pod's containers: process handles, argv, env, mounts and the log/termination files.

``LaunchMixin`` gives the pod worker (``kyklos.sandbox.pods``) ``_launch``: a scripted
container (``succeed``/``fail``/``serve``/``crashloop``) gets a ``ScriptHandle``, a
``process`` container a ``ProcessHandle`` whose argv either enters a private mount namespace
(``_namespaced_argv``, as root) or has its mountPaths rewritten to host paths (``_rewrite``).
See the module docstring of ``kyklos.sandbox.pods`` for what a process sees.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import importlib.metadata
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from kyklos.sandbox.podcontext import ApiError, JsonDict, PodParts, pod_with_status
from kyklos.sandbox.podenv import (
    MAX_TERMINATION_MESSAGE,
    ContainerConfigError,
    EnvSources,
    build_env,
    expand,
    read_tail,
)

if TYPE_CHECKING:
    from kyklos.sandbox.podstatus import Container

DEFAULT_TERMINATION_PATH = "/dev/termination-log"


class StartError(Exception):
    """The container's process cannot be started (exit 128, reason StartError)."""


# ---------------------------------------------------------------------------- processes


def resolve_executable(name: str, path_env: str) -> str:
    """The file `name` runs: the sandbox's Python for python/python3, else a PATH lookup."""
    base = os.path.basename(name)
    if base in ("python", "python3") or (
        base.startswith("python3.") and base[len("python3.") :].isdigit()
    ):
        return sys.executable
    if "/" in name:
        if os.path.isfile(name) and os.access(name, os.X_OK):
            return name
        raise StartError(
            f'exec: "{name}": stat {name}: no such file or directory'
            if not os.path.exists(name)
            else f'exec: "{name}": permission denied'
        )
    found = shutil.which(name, path=path_env)
    if found is None:
        raise StartError(f'exec: "{name}": executable file not found in $PATH')
    return found


def start_error_message(detail: str) -> str:
    """The message containerd/runc give for a process that cannot start."""
    return (
        "failed to create containerd task: failed to create shim task: OCI runtime create "
        f"failed: runc create failed: unable to start container process: {detail}: unknown"
    )


def process_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks (to tell a pid from a recycled one)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


class Handle(Protocol):
    """A started container: a real process or a scripted stand-in."""

    started_mono: float

    def poll(self) -> int | None: ...
    def next_due(self) -> float | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def wait(self, timeout: float) -> int | None: ...
    def termination_message(self) -> bytes: ...


class ScriptHandle:
    """A scripted container that exits with `exit_code` after `duration` (None: never)."""

    def __init__(self, duration: float | None, exit_code: int, message: str) -> None:
        self.started_mono = time.monotonic()
        self.exit_at = None if duration is None else self.started_mono + duration
        self.exit_code = exit_code
        self.message = message
        self._killed: int | None = None

    def poll(self) -> int | None:
        if self._killed is not None:
            return self._killed
        if self.exit_at is not None and time.monotonic() >= self.exit_at:
            return self.exit_code
        return None

    def next_due(self) -> float | None:
        return self.exit_at if self._killed is None else None

    def terminate(self) -> None:
        if self.poll() is None:
            self._killed = 128 + signal.SIGTERM

    def kill(self) -> None:
        if self.poll() is None:
            self._killed = 128 + signal.SIGKILL

    def wait(self, timeout: float) -> int | None:
        return self.poll()

    def termination_message(self) -> bytes:
        return self.message.encode()


class ProcessHandle:
    """A real local process in its own process group; a waiter thread reports its exit."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str | None,
        log_path: str,
        termination_file: str,
        on_exit: Callable[[], None],
    ) -> None:
        self.started_mono = time.monotonic()
        self.termination_file = termination_file
        with open(log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                argv,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        self.pid = self.proc.pid
        self.start_ticks = process_start_time(self.pid)
        self._on_exit = on_exit
        threading.Thread(target=self._wait, name=f"wait-{self.pid}", daemon=True).start()

    def _wait(self) -> None:
        self.proc.wait()
        self._on_exit()

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is None:
            return None
        return 128 - code if code < 0 else code

    def next_due(self) -> float | None:
        return None

    def _signal(self, sig: int) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def wait(self, timeout: float) -> int | None:
        try:
            self.proc.wait(timeout=max(timeout, 0))
        except subprocess.TimeoutExpired:
            return None
        return self.poll()

    def termination_message(self) -> bytes:
        return read_tail(self.termination_file, MAX_TERMINATION_MESSAGE)


class LaunchMixin(PodParts):
    """Starts one container of the pod worker; reads the worker's identity, volumes and context."""

    volumes: dict[str, str] | None

    def wake(self) -> None:
        """Wake the worker's loop (a process exited); the worker implements it."""
        raise NotImplementedError

    def _launch(self, c: Container, pod: JsonDict) -> Handle:
        rule = c.rule
        if c.action == "process":
            return self._launch_process(c, pod)
        # Scripted containers still need their config (a missing secret blocks them too).
        self._env(c, pod)
        if c.action == "serve":
            return ScriptHandle(None, 0, "")
        if c.action == "succeed":
            return ScriptHandle(rule.duration, 0, rule.termination_message)
        return ScriptHandle(rule.duration, rule.exit_code, rule.termination_message)

    def _env(self, c: Container, pod: JsonDict) -> dict[str, str]:
        api = self.ctx.api
        ns = self.namespace

        def getter(kind: str) -> Callable[[str], dict[str, str] | None]:
            def get(name: str) -> dict[str, str] | None:
                try:
                    obj = api.request("GET", f"/api/v1/namespaces/{ns}/{kind}/{name}")
                except ApiError as e:
                    if e.status == 404:
                        return None
                    raise ContainerConfigError(f"cannot read {kind} {name!r}: {e}") from None
                if kind == "secrets":
                    return {
                        k: base64.b64decode(v).decode("utf-8", errors="replace")
                        for k, v in (obj.get("data") or {}).items()
                    }
                return dict(obj.get("data") or {})

            return get

        sources = EnvSources(getter("secrets"), getter("configmaps"), self.ctx.allocatable)
        return build_env(c.spec, pod_with_status(pod, self.pod_ip, self.ctx.host_ip), sources)

    def _log_path(self, c: Container) -> str:
        return os.path.join(self.pod_dir, "logs", c.name, f"{c.restart_count}.log")

    def _launch_process(self, c: Container, pod: JsonDict) -> Handle:
        spec = c.spec
        env = self._env(c, pod)
        venv_bin = os.path.dirname(sys.executable)
        base = {
            "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/local/bin:/usr/bin:/bin')}",
            "HOME": os.environ.get("HOME", "/root"),
            "HOSTNAME": self.pod_name,
        }
        if self.ctx.api_host:
            base["KUBERNETES_SERVICE_HOST"] = self.ctx.api_host
            base["KUBERNETES_SERVICE_PORT"] = self.ctx.api_port
            base["KUBERNETES_SERVICE_PORT_HTTPS"] = self.ctx.api_port
        full_env = {**base, **env}
        command = [expand(a, full_env.get) for a in spec.get("command") or []]
        args = [expand(a, full_env.get) for a in spec.get("args") or []]
        argv = (command or list(c.rule.entrypoint)) + args
        if not argv:
            raise StartError("no command specified")
        mounts = self._mounts(c)
        container_dir = os.path.join(self.pod_dir, "containers", c.name)
        os.makedirs(container_dir, exist_ok=True)
        term_file = os.path.join(container_dir, f"{c.restart_count}.termination-log")
        with open(term_file, "wb"):
            pass
        term_path = spec.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
        log_path = self._log_path(c)
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        workdir = spec.get("workingDir") or None
        if self.ctx.use_mount_ns:
            executable = resolve_executable(argv[0], full_env.get("PATH", ""))
            argv = self._namespaced_argv(
                [executable, *argv[1:]], mounts, term_file, term_path, workdir
            )
            cwd = None
        else:
            rewrites = sorted(
                [(m, src) for m, src, _ in mounts] + [(term_path, term_file)],
                key=lambda x: -len(x[0]),
            )
            argv = [_rewrite(a, rewrites) for a in argv]
            full_env = {k: _rewrite(v, rewrites) for k, v in full_env.items()}
            full_env["KYKLOS_TERMINATION_MESSAGE_PATH"] = term_file
            argv[0] = resolve_executable(argv[0], full_env.get("PATH", ""))
            if shutil.which("setpriv"):
                argv = ["setpriv", "--pdeathsig", "KILL", *argv]
            cwd = _rewrite(workdir, rewrites) if workdir else None
            if cwd:
                os.makedirs(cwd, exist_ok=True)
        try:
            return ProcessHandle(argv, full_env, cwd, log_path, term_file, self.wake)
        except OSError as e:
            raise StartError(f'exec: "{argv[0]}": {e.strerror}') from None

    def _mounts(self, c: Container) -> list[tuple[str, str, bool]]:
        """(mountPath, host directory or file, readOnly) for each volumeMount."""
        assert self.volumes is not None
        out = []
        for vm in c.spec.get("volumeMounts") or []:
            src = self.volumes.get(vm["name"])
            if src is None:
                raise ContainerConfigError(f"volume {vm['name']!r} not found in the pod spec")
            sub = vm.get("subPath") or ""
            if sub:
                src = os.path.join(src, sub)
                if not os.path.exists(src):
                    os.makedirs(src, exist_ok=True)
            out.append((vm["mountPath"].rstrip("/") or "/", src, bool(vm.get("readOnly"))))
        return out

    def _namespaced_argv(
        self,
        argv: list[str],
        mounts: list[tuple[str, str, bool]],
        term_file: str,
        term_path: str,
        workdir: str | None,
    ) -> list[str]:
        binds = [*mounts, (term_path, term_file, False)]
        targets = [t for t, _, _ in binds]
        # Sources are read through an untouched view of / (a recursive bind at `stage`),
        # so a volume mounted over, say, /tmp cannot hide the next volume's source.
        stage = _stage_dir(self.ctx.data_dir, targets)
        if not stage.startswith(self.ctx.data_dir + os.sep):
            with self.ctx.lock:
                self.ctx.mountpoints.add(stage)
        lines = ["set -e", f"mount --rbind / {shlex.quote(stage)}"]
        for target, src, _ in binds:
            self._ensure_mountpoint(target, is_file=os.path.isfile(src))
            lines.append(f"mount --bind {shlex.quote(stage + src)} {shlex.quote(target)}")
        # A mountPath over the interpreter's own tree (e.g. /work over /work/main/.venv) would
        # hide it: put those directories back on top, as they are in the image of a real pod.
        for needed in _interpreter_dirs(argv[0]):
            if any(_under(needed, t) for t in targets):
                q = shlex.quote(needed)
                lines.append(f"mkdir -p {q}")
                lines.append(f"mount --bind {shlex.quote(stage + needed)} {q}")
        for target, _, read_only in binds:
            if read_only:
                lines.append(f"mount -o remount,bind,ro {shlex.quote(target)}")
        if workdir:
            lines.append(f"mkdir -p {shlex.quote(workdir)}")
            lines.append(f"cd {shlex.quote(workdir)}")
        lines.append('exec "$@"')
        script = "\n".join(lines)
        return [
            "setpriv",
            "--pdeathsig",
            "KILL",
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "kyklos-sandbox-pod",
            *argv,
        ]

    def _ensure_mountpoint(self, target: str, is_file: bool) -> None:
        """Create a missing mount point on the host and remember it for clean-up."""
        with self.ctx.lock:
            if os.path.exists(target):
                return
            missing = []
            parent = os.path.dirname(target)
            while parent and not os.path.exists(parent):
                missing.append(parent)
                parent = os.path.dirname(parent)
            os.makedirs(os.path.dirname(target) or "/", exist_ok=True)
            if is_file:
                with open(target, "ab"):
                    pass
            else:
                os.makedirs(target, exist_ok=True)
            self.ctx.mountpoints.update([target, *missing])
        self.ctx.on_process_change()


def _under(path: str, top: str) -> bool:
    top = top.rstrip("/") or "/"
    return top == "/" or path == top or path.startswith(top + "/")


def _interpreter_dirs(executable: str) -> list[str]:
    """Host directories a process needs visible: the interpreter's, the program's, and the
    source trees of the environment's packages (``sys.path`` entries and editable installs,
    e.g. a checkout under /tmp, which a pod's own /tmp volume would otherwise hide)."""
    dirs = {
        sys.prefix,
        sys.base_prefix,
        os.path.dirname(os.path.realpath(sys.executable)),
        os.path.dirname(sys.executable),
        os.path.dirname(executable),
        *(p for p in sys.path if p and os.path.isabs(p) and os.path.isdir(p)),
        *_editable_roots(),
    }
    return sorted(d for d in dirs if d and d != "/")


@functools.cache
def _editable_roots() -> tuple[str, ...]:
    """Project directories of editable installs in this environment (PEP 610 direct_url)."""
    roots = []
    for dist in importlib.metadata.distributions():
        text = dist.read_text("direct_url.json")
        if not text:
            continue
        try:
            info = json.loads(text)
        except ValueError:
            continue
        url = str(info.get("url") or "")
        if (info.get("dir_info") or {}).get("editable") and url.startswith("file://"):
            path = urllib.parse.unquote(urllib.parse.urlparse(url).path)
            if os.path.isdir(path):
                roots.append(path)
    return tuple(roots)


def _stage_dir(data_dir: str, targets: list[str]) -> str:
    """A directory, outside every mount target, where the namespace sees the host's /."""
    for base in (data_dir, "/run", "/var/tmp", "/opt"):
        stage = os.path.join(base, ".kyklos-sandbox-rootfs")
        if not any(_under(stage, t) for t in targets):
            os.makedirs(stage, exist_ok=True)
            return stage
    raise StartError("every candidate staging directory is under a volume mountPath")


def _rewrite(value: str, rewrites: list[tuple[str, str]]) -> str:
    """Replace a leading mountPath (also after '=') by its host path (no mount namespace)."""
    head, eq, tail = value.rpartition("=") if "=" in value else ("", "", value)
    for mount, host in rewrites:
        if tail == mount or tail.startswith(mount.rstrip("/") + "/"):
            return head + eq + host + tail[len(mount) :]
    if head:
        for mount, host in rewrites:
            if value == mount or value.startswith(mount.rstrip("/") + "/"):
                return host + value[len(mount) :]
    return value
