"""Pod runner of the sandbox node agent: runs one pod's containers as a kubelet would.

Each pod bound to a sandbox node gets a `PodWorker` thread. It prepares the pod's volumes
as directories, runs init containers in order and then the regular containers according
to the kubelet policy (`kyklos.sandbox.policy`), restarts them per restartPolicy with the
CrashLoopBackOff back-off, probes readiness, enforces activeDeadlineSeconds, and writes
the pod status through the ``pods/status`` subresource (a JSON merge patch carrying the
pod's UID as precondition) only when it changed.

Layout under the agent's data dir (like the kubelet's /var/lib/kubelet and /var/log/pods)::

    pods/<namespace>_<name>_<uid>/volumes/<volume>          emptyDir, configMap, secret,
                                                            downwardAPI, projected
    pods/<namespace>_<name>_<uid>/containers/<c>/<n>.termination-log
    pods/<namespace>_<name>_<uid>/logs/<c>/<n>.log          stdout+stderr of run n
                                                            (n = restartCount)

``process`` containers: argv is command (or the rule's ``entrypoint`` when the pod has
none) plus args, with ``$(VAR)`` expanded as the kubelet expands it; ``python``,
``python3`` and ``python3.N`` run ``sys.executable``; other names are looked up on the
container's PATH with the virtualenv's bin directory first. The process gets exactly the
env the kubelet builds (envFrom, env with ``$(VAR)``, fieldRef, resourceFieldRef,
secretKeyRef, configMapKeyRef) on top of a minimal base (PATH, HOME, HOSTNAME, and
KUBERNETES_SERVICE_HOST/PORT pointing at the API server so in-cluster config works with
the projected service-account token). It starts in its own process group and dies with
the agent (``setpriv --pdeathsig KILL``); workingDir is honoured.

Mounts. As root, each process runs in a private mount namespace
(``unshare --mount --propagation private``) where every volume directory is bind-mounted
at its ``mountPath`` (``subPath`` and ``readOnly`` honoured) and a per-container file is
bind-mounted at ``terminationMessagePath`` (default /dev/termination-log). Mount points
that do not exist on the host are created (empty directories / empty files) and removed
again when the agent stops. Without root, or with ``KYKLOS_SANDBOX_NO_MOUNTNS=1``, no
namespace is used and paths are rewritten instead: every argv element and env value that
equals a mountPath or starts with ``<mountPath>/`` (also after ``=``, as in
``--out=/data/x``) has that prefix replaced by the volume's host directory, the same for
the terminationMessagePath (replaced by the per-container file), the env var
``KYKLOS_TERMINATION_MESSAGE_PATH`` names that file, and a workingDir under a mountPath is
rewritten likewise. A program that builds such paths itself (e.g. from a constant) then
writes to the real host path, which may fail.

Events, as the kubelet records them (source ``kubelet``, one per distinct occurrence rather
than aggregated counts): Started, Failed (CreateContainerConfigError, StartError), BackOff,
Killing, FailedMount.

Probes: a ``process`` container's readinessProbe is run for real when it is ``httpGet``
or ``tcpSocket`` (against 127.0.0.1, since pod IPs are not routable here); with an
``exec``/``grpc`` readinessProbe, or none, a container is ready while it runs. Liveness
and startup probes are not run. Scripted actions (``succeed``/``fail``/``serve``/
``crashloop``/``pending``) run no process and ignore probes.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import http.client
import importlib.metadata
import json
import logging
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from kyklos.sandbox.podenv import (
    MAX_TERMINATION_MESSAGE,
    ContainerConfigError,
    EnvSources,
    build_env,
    expand,
    field_ref_value,
    log_tail,
    read_tail,
    resource_field_value,
    truncate_termination_message,
)
from kyklos.sandbox.podphase import pod_phase
from kyklos.sandbox.policy import Policy, Rule

log = logging.getLogger("kyklos.sandbox.nodeagent")

DEFAULT_TERMINATION_PATH = "/dev/termination-log"
RETRY_SECONDS = 2.0
JsonDict = dict[str, Any]


class ApiError(Exception):
    """A Kubernetes API request failed with an HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class KubeApi(Protocol):
    """The few API calls a pod worker needs (implemented in nodeagent)."""

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> JsonDict: ...


class StartError(Exception):
    """The container's process cannot be started (exit 128, reason StartError)."""


def now_rfc3339() -> str:
    """The current time as Kubernetes serialises metav1.Time."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


# ---------------------------------------------------------------------------- node context


@dataclass
class NodeContext:
    """What pod workers share: API, policy, data dir, node identity."""

    api: KubeApi
    data_dir: str
    node_name: str
    host_ip: str
    allocatable: Mapping[str, str]
    policy: Callable[[], Policy]
    api_host: str = ""
    api_port: str = ""
    use_mount_ns: bool = True
    on_process_change: Callable[[], None] = lambda: None
    mountpoints: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)


def _probe_http(port: int, path: str, scheme: str, timeout: float, headers: list[JsonDict]) -> bool:
    conn: http.client.HTTPConnection
    if scheme.upper() == "HTTPS":
        import ssl

        conn = http.client.HTTPSConnection(
            "127.0.0.1", port, timeout=timeout, context=ssl._create_unverified_context()
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path or "/", headers={h["name"]: h["value"] for h in headers})
        status = conn.getresponse().status
        return 200 <= status < 400
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _probe_tcp(port: int, timeout: float) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


@dataclass
class Container:
    """Runtime state of one container of the pod, mirrored into its containerStatus."""

    spec: JsonDict
    init: bool
    rule: Rule
    action: str
    restart_count: int = 0
    state: JsonDict = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: JsonDict = field(default_factory=dict)
    handle: Handle | None = None
    container_id: str = ""
    started_at: str = ""
    ready: bool = False
    done: bool = False  # exited and will not be restarted
    last_term: JsonDict = field(default_factory=dict)
    ever_started: bool = False
    backoff: float = 0.0
    next_start: float = 0.0
    config_retry_at: float = 0.0
    probe_next: float = 0.0
    probe_ok: int = 0
    probe_fail: int = 0

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def succeeded(self) -> bool:
        term = self.state.get("terminated") or {}
        return bool(term) and term.get("exitCode") == 0 and self.done

    def status(self) -> JsonDict:
        image = self.spec.get("image", "")
        digest = hashlib.sha256(image.encode()).hexdigest()
        out: JsonDict = {
            "name": self.name,
            "state": self.state,
            "lastState": self.last_state,
            "ready": self.ready,
            "restartCount": self.restart_count,
            "image": image,
            "imageID": f"{image.split(':')[0].split('@')[0]}@sha256:{digest}",
            "started": "running" in self.state,
        }
        if self.container_id:
            out["containerID"] = self.container_id
        return out


def _condition(
    ctype: str, ok: bool, old: Mapping[str, JsonDict], reason: str = "", message: str = ""
) -> JsonDict:
    status = "True" if ok else "False"
    prev = old.get(ctype)
    cond: JsonDict = {"type": ctype, "status": status}
    cond["lastTransitionTime"] = (
        prev["lastTransitionTime"]
        if prev and prev.get("status") == status and prev.get("lastTransitionTime")
        else now_rfc3339()
    )
    cond["lastProbeTime"] = None
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


class PodWorker:
    """Runs one pod on one sandbox node (in its own thread) until it is deleted."""

    def __init__(self, ctx: NodeContext, pod: JsonDict, pod_ip: str, on_done: Callable[[], None]):
        meta = pod["metadata"]
        self.thread = threading.Thread(
            target=self.run, name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True
        )
        self.ctx = ctx
        self.uid: str = meta["uid"]
        self.namespace: str = meta["namespace"]
        self.pod_name: str = meta["name"]
        self.pod_ip = pod_ip
        self._pod = pod
        self._gone = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._on_done = on_done
        self.pod_dir = os.path.join(
            ctx.data_dir, "pods", f"{self.namespace}_{self.pod_name}_{self.uid}"
        )
        self.volumes: dict[str, str] | None = None
        self.volume_error = ""
        self.volume_retry_at = 0.0
        self.terminal = False
        self.deadline_exceeded = False
        self.start_time = ""
        self.last_written: JsonDict | None = None
        self._last_event: tuple[str, str, str] = ("", "", "")
        self.write_retry_at = 0.0
        policy = ctx.policy()
        restart_policy = pod["spec"].get("restartPolicy", "Always")
        self.containers: list[Container] = []
        for init, specs in (
            (True, pod["spec"].get("initContainers") or []),
            (False, pod["spec"].get("containers") or []),
        ):
            for spec in specs:
                rule = policy.rule_for(spec.get("image", ""))
                self.containers.append(
                    Container(
                        spec=spec, init=init, rule=rule, action=rule.action_for(restart_policy)
                    )
                )
        self._restore(pod.get("status") or {})

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float | None = None) -> None:
        self.thread.join(timeout)

    # -- events from the agent

    def update(self, pod: JsonDict) -> None:
        """A newer version of the pod arrived from the watch."""
        with self._lock:
            if pod["metadata"]["uid"] == self.uid:
                self._pod = pod
        self._wake.set()

    def gone(self) -> None:
        """The pod object was deleted from the API."""
        with self._lock:
            self._gone = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def pids(self) -> list[tuple[int, int | None]]:
        """Live process ids (with start ticks) for the agent's state file."""
        out = []
        for c in self.containers:
            if isinstance(c.handle, ProcessHandle) and c.handle.poll() is None:
                out.append((c.handle.pid, c.handle.start_ticks))
        return out

    # -- restore after an agent restart

    def _restore(self, status: JsonDict) -> None:
        """Take over state a previous agent wrote; its processes did not survive it."""
        self.start_time = status.get("startTime", "")
        if status.get("podIP"):
            self.pod_ip = status["podIP"]
        if status.get("phase") in ("Succeeded", "Failed"):
            self.terminal = True
        by_name = {
            s["name"]: s
            for s in (status.get("initContainerStatuses") or [])
            + (status.get("containerStatuses") or [])
        }
        for c in self.containers:
            prev = by_name.get(c.name)
            if not prev:
                continue
            c.restart_count = int(prev.get("restartCount", 0))
            c.last_state = prev.get("lastState") or {}
            c.container_id = prev.get("containerID", "")
            state = prev.get("state") or {}
            if "terminated" in state:
                c.state = state
                c.last_term = state["terminated"]
                c.ever_started = True
                c.done = self.terminal or not self._should_restart(
                    c, int(state["terminated"].get("exitCode", 0))
                )
                if not c.done:
                    c.backoff = self.ctx.policy().backoff_initial
            elif "running" in state or c.last_state:
                # The process died with the previous agent (as on a node restart).
                if "running" in state:
                    term = {
                        "exitCode": 137,
                        "reason": "ContainerStatusUnknown",
                        "message": "The container could not be located when the node agent "
                        "restarted",
                        "startedAt": state["running"].get("startedAt"),
                        "finishedAt": now_rfc3339(),
                        "containerID": c.container_id,
                    }
                    c.state = {"terminated": term}
                else:
                    c.state = {"terminated": c.last_state.get("terminated", {})}
                c.ever_started = True
                c.last_term = c.state["terminated"]
                code = int(c.state["terminated"].get("exitCode", 137))
                c.done = self.terminal or not self._should_restart(c, code)

    # -- main loop

    def run(self) -> None:
        try:
            self._loop()
        except Exception:
            log.exception("pod %s/%s: worker failed", self.namespace, self.pod_name)
            self._stop_all(2.0)
        finally:
            self._on_done()

    def _loop(self) -> None:
        while True:
            with self._lock:
                pod = self._pod
                gone = self._gone
            if self.ctx.stopping.is_set():
                self._stop_all(self._grace(pod))
                return
            if gone:
                self._stop_all(self._grace(pod))
                return
            if pod["metadata"].get("deletionTimestamp"):
                self._finish_deletion(pod)
                return
            self._sync(pod)
            if self.terminal and not self.write_retry_at:
                # Nothing runs and the final status is written: the agent finishes the
                # deletion of a finished pod itself, without a thread per pod.
                return
            due = self._next_due()
            timeout = None if due is None else max(0.0, due - time.monotonic())
            self._wake.wait(timeout)
            self._wake.clear()

    def _grace(self, pod: JsonDict) -> float:
        grace = pod["metadata"].get("deletionGracePeriodSeconds")
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        return float(grace)

    def _next_due(self) -> float | None:
        dues: list[float] = []
        for c in self.containers:
            if c.handle is not None:
                d = c.handle.next_due()
                if d is not None:
                    dues.append(d)
                if c.probe_next:
                    dues.append(c.probe_next)
                if not c.ready and c.action == "serve":
                    dues.append(c.handle.started_mono + c.rule.ready_after)
            elif not c.done and c.ever_started and c.next_start:
                dues.append(c.next_start)
            if c.config_retry_at:
                dues.append(c.config_retry_at)
        if self.volume_retry_at:
            dues.append(self.volume_retry_at)
        if self.write_retry_at:
            dues.append(self.write_retry_at)
        deadline = self._deadline_mono()
        if deadline is not None and not self.terminal:
            dues.append(deadline)
        return min(dues) if dues else None

    def _deadline_mono(self) -> float | None:
        ads = self._pod["spec"].get("activeDeadlineSeconds")
        if ads is None or not self.start_time:
            return None
        started = datetime.strptime(self.start_time, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        left = started.timestamp() + float(ads) - time.time()
        return time.monotonic() + left

    def _sync(self, pod: JsonDict) -> None:
        now = time.monotonic()
        if not self.start_time:
            self.start_time = now_rfc3339()
        if not self.terminal:
            deadline = self._deadline_mono()
            if deadline is not None and now >= deadline:
                self.deadline_exceeded = True
                self._stop_all(self._grace(pod))
                self.terminal = True
        if not self.terminal:
            self._run_containers(pod, now)
        status = self._status(pod)
        if status["phase"] in ("Succeeded", "Failed") and not self.terminal:
            self.terminal = True
            self._stop_all(self._grace(pod))
            status = self._status(pod)
        self._write_status(status)

    def _run_containers(self, pod: JsonDict, now: float) -> None:
        if self.volumes is None:
            if now < self.volume_retry_at:
                return
            try:
                self.volumes = self._prepare_volumes(pod)
                self.volume_error = ""
                self.volume_retry_at = 0.0
            except ContainerConfigError as e:
                self.volume_error = str(e)
                self.volume_retry_at = now + RETRY_SECONDS
                for c in self.containers:
                    if not c.ever_started:
                        c.state = {"waiting": {"reason": "ContainerCreating"}}
                log.info("pod %s/%s: volumes not ready: %s", self.namespace, self.pod_name, e)
                self._event(None, "Warning", "FailedMount", str(e))
                return
        inits = [c for c in self.containers if c.init]
        for c in inits:
            if c.succeeded():
                continue
            for main in self.containers:
                if not main.init and not main.ever_started:
                    main.state = {"waiting": {"reason": "PodInitializing"}}
            self._advance(c, pod, now)
            if not c.succeeded():
                return  # init containers run one at a time; a failed one stops the pod
        for c in self.containers:
            if not c.init:
                self._advance(c, pod, now)

    def _should_restart(self, c: Container, code: int) -> bool:
        if c.action == "crashloop":
            return True
        policy = self._pod["spec"].get("restartPolicy", "Always")
        if c.init and policy == "Always":
            policy = "OnFailure"  # init containers never restart after success
        return policy == "Always" or (policy == "OnFailure" and code != 0)

    def _advance(self, c: Container, pod: JsonDict, now: float) -> None:
        if c.handle is not None:
            code = c.handle.poll()
            if code is None:
                self._update_readiness(c, now)
                return
            self._record_exit(c, code)
        if c.done:
            return
        if c.action == "pending":
            c.state = {
                "waiting": {
                    "reason": c.rule.reason or "ContainerCreating",
                    **({"message": c.rule.message} if c.rule.message else {}),
                }
            }
            return
        if c.ever_started and now < c.next_start:
            if "waiting" not in c.state:
                self._event(
                    c,
                    "Warning",
                    "BackOff",
                    f"Back-off restarting failed container {c.name} in pod "
                    f"{self.pod_name}_{self.namespace}({self.uid})",
                )
            c.last_state = {"terminated": c.last_term}
            c.state = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {_fmt_seconds(c.backoff)} restarting failed container="
                    f"{c.name} pod={self.pod_name}_{self.namespace}({self.uid})",
                }
            }
            return
        if now < c.config_retry_at:
            return
        self._start(c, pod)

    def _record_exit(self, c: Container, code: int) -> None:
        assert c.handle is not None
        handle = c.handle
        c.handle = None
        c.ready = False
        c.probe_next = 0.0
        message = truncate_termination_message(handle.termination_message())
        reason = "Completed" if code == 0 else "Error"
        scripted_fail = isinstance(handle, ScriptHandle) and c.action == "fail"
        if scripted_fail and c.rule.reason and code == c.rule.exit_code:
            reason = c.rule.reason
        if (
            not message
            and code != 0
            and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError"
            and isinstance(handle, ProcessHandle)
        ):
            message = log_tail(read_tail(self._log_path(c), 64 * 1024))
        term: JsonDict = {
            "exitCode": code,
            "reason": reason,
            "startedAt": c.started_at,
            "finishedAt": now_rfc3339(),
            "containerID": c.container_id,
        }
        if message:
            term["message"] = message
        self._exited(c, term, code, time.monotonic() - handle.started_mono)
        self.ctx.on_process_change()

    def _start(self, c: Container, pod: JsonDict) -> None:
        old_count = c.restart_count
        if c.ever_started:
            c.restart_count += 1
        c.config_retry_at = 0.0
        container_id = (
            "sandbox://"
            + hashlib.sha256(
                f"{self.uid}/{c.name}/{c.restart_count}/{time.time()}".encode()
            ).hexdigest()
        )
        try:
            handle = self._launch(c, pod)
        except ContainerConfigError as e:
            # Not started after all: wait and retry, as the kubelet does.
            c.restart_count = old_count
            c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            c.config_retry_at = time.monotonic() + RETRY_SECONDS
            self._event(c, "Warning", "Failed", f"Error: {e}")
            return
        except StartError as e:
            handle = None
            start_error = str(e)
        if c.ever_started and c.last_term:
            c.last_state = {"terminated": c.last_term}
        c.ever_started = True
        c.container_id = container_id
        c.started_at = now_rfc3339()
        if handle is None:
            term: JsonDict = {
                "exitCode": 128,
                "reason": "StartError",
                "message": start_error_message(start_error),
                "startedAt": "1970-01-01T00:00:00Z",
                "finishedAt": now_rfc3339(),
                "containerID": container_id,
            }
            self._exited(c, term, 128, 0.0)
            self._event(c, "Warning", "Failed", f"Error: {term['message']}")
            return
        c.handle = handle
        self._event(c, "Normal", "Started", f"Started container {c.name}")
        c.state = {"running": {"startedAt": c.started_at}}
        probe = c.spec.get("readinessProbe")
        if probe and isinstance(c.handle, ProcessHandle):
            c.probe_next = time.monotonic() + float(probe.get("initialDelaySeconds", 0))
            c.probe_ok = c.probe_fail = 0
        self._update_readiness(c, time.monotonic())
        self.ctx.on_process_change()

    def _exited(self, c: Container, term: JsonDict, code: int, ran: float) -> None:
        """Record a termination and decide about (and schedule) the restart."""
        c.state = {"terminated": term}
        c.last_term = term
        restart = self._should_restart(c, code) and not self.ctx.stopping.is_set()
        if not restart:
            c.done = True
            return
        policy = self.ctx.policy()
        if ran > 2 * policy.backoff_max:
            c.backoff = 0.0  # the kubelet forgets the back-off of a container that ran long
        c.next_start = time.monotonic() + c.backoff
        c.backoff = (
            policy.backoff_initial if c.backoff == 0 else min(2 * c.backoff, policy.backoff_max)
        )

    def _update_readiness(self, c: Container, now: float) -> None:
        if c.handle is None or c.init:
            c.ready = False
            return
        if c.action == "crashloop":
            c.ready = False
        elif c.action == "serve":
            c.ready = now >= c.handle.started_mono + c.rule.ready_after
        elif isinstance(c.handle, ProcessHandle) and c.spec.get("readinessProbe"):
            if c.probe_next and now >= c.probe_next:
                self._probe(c, c.spec["readinessProbe"])
                c.probe_next = now + float(c.spec["readinessProbe"].get("periodSeconds", 10))
        else:
            c.ready = True

    def _probe(self, c: Container, probe: JsonDict) -> None:
        timeout = float(probe.get("timeoutSeconds", 1))
        ok = True
        if "httpGet" in probe or "tcpSocket" in probe:
            action = probe.get("httpGet") or probe.get("tcpSocket") or {}
            port = action.get("port")
            if isinstance(port, str) and not port.isdigit():
                named = {p.get("name"): p.get("containerPort") for p in c.spec.get("ports") or []}
                port = named.get(port)
            if port is None:
                ok = False
            elif "httpGet" in probe:
                ok = _probe_http(
                    int(port),
                    action.get("path", "/"),
                    action.get("scheme", "HTTP"),
                    timeout,
                    action.get("httpHeaders") or [],
                )
            else:
                ok = _probe_tcp(int(port), timeout)
        # exec and grpc probes are not run: the container counts as ready while it runs.
        if ok:
            c.probe_ok += 1
            c.probe_fail = 0
            if c.probe_ok >= int(probe.get("successThreshold", 1)):
                c.ready = True
        else:
            c.probe_fail += 1
            c.probe_ok = 0
            if c.probe_fail >= int(probe.get("failureThreshold", 3)):
                c.ready = False

    # -- launching

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
        return build_env(c.spec, self._pod_with_status(pod), sources)

    def _pod_with_status(self, pod: JsonDict) -> JsonDict:
        """The pod as the downward API sees it (status IPs known before they are written)."""
        status = dict(pod.get("status") or {})
        status.update(
            {
                "podIP": self.pod_ip,
                "podIPs": [{"ip": self.pod_ip}],
                "hostIP": self.ctx.host_ip,
                "hostIPs": [{"ip": self.ctx.host_ip}],
            }
        )
        return {**pod, "status": status}

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

    # -- volumes

    def _prepare_volumes(self, pod: JsonDict) -> dict[str, str]:
        out: dict[str, str] = {}
        vol_root = os.path.join(self.pod_dir, "volumes")
        for vol in pod["spec"].get("volumes") or []:
            name = vol["name"]
            path = os.path.join(vol_root, name)
            if "persistentVolumeClaim" in vol:
                out[name] = self._claim_dir(vol["persistentVolumeClaim"]["claimName"])
            elif "hostPath" in vol:
                hp = vol["hostPath"]
                kind = hp.get("type") or ""
                if not os.path.exists(hp["path"]):
                    if kind == "DirectoryOrCreate":
                        os.makedirs(hp["path"], exist_ok=True)
                    elif kind == "FileOrCreate":
                        os.makedirs(os.path.dirname(hp["path"]), exist_ok=True)
                        with open(hp["path"], "ab"):
                            pass
                    else:
                        # The kubelet keeps the pod in ContainerCreating (FailedMount).
                        raise ContainerConfigError(
                            f"hostPath type check failed: {hp['path']} does not exist"
                        )
                out[name] = hp["path"]
            else:
                os.makedirs(path, exist_ok=True)
                if "configMap" in vol:
                    self._write_keys(path, vol["configMap"], "configmaps", vol)
                elif "secret" in vol:
                    ref = dict(vol["secret"])
                    ref["name"] = ref.get("secretName", "")
                    self._write_keys(path, ref, "secrets", vol)
                elif "downwardAPI" in vol:
                    self._write_downward(path, vol["downwardAPI"].get("items") or [], pod)
                elif "projected" in vol:
                    self._write_projected(path, vol["projected"], pod)
                out[name] = path
        return out

    def _claim_dir(self, claim: str) -> str:
        api = self.ctx.api
        try:
            pvc = api.request(
                "GET", f"/api/v1/namespaces/{self.namespace}/persistentvolumeclaims/{claim}"
            )
        except ApiError as e:
            raise ContainerConfigError(f'persistentvolumeclaim "{claim}" not found ({e})') from None
        pv_name = (pvc.get("spec") or {}).get("volumeName")
        if not pv_name or (pvc.get("status") or {}).get("phase") != "Bound":
            raise ContainerConfigError(f'persistentvolumeclaim "{claim}" is not bound')
        try:
            pv = api.request("GET", f"/api/v1/persistentvolumes/{pv_name}")
        except ApiError as e:
            raise ContainerConfigError(f'persistentvolume "{pv_name}": {e}') from None
        spec = pv.get("spec") or {}
        path = (spec.get("hostPath") or spec.get("local") or {}).get("path")
        if not path:
            raise ContainerConfigError(f'persistentvolume "{pv_name}" has no hostPath/local path')
        os.makedirs(path, exist_ok=True)
        return str(path)

    def _fetch_data(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        try:
            obj = self.ctx.api.request("GET", f"/api/v1/namespaces/{self.namespace}/{kind}/{name}")
        except ApiError as e:
            if e.status == 404 and optional:
                return None
            raise ContainerConfigError(
                f'{kind[:-1]} "{name}" not found' if e.status == 404 else f"{kind} {name}: {e}"
            ) from None
        data: dict[str, bytes] = {}
        if kind == "secrets":
            for k, v in (obj.get("data") or {}).items():
                data[k] = base64.b64decode(v)
        else:
            for k, v in (obj.get("data") or {}).items():
                data[k] = v.encode()
            for k, v in (obj.get("binaryData") or {}).items():
                data[k] = base64.b64decode(v)
        return data

    def _write_keys(self, path: str, ref: JsonDict, kind: str, vol: JsonDict) -> None:
        data = self._fetch_data(kind, ref.get("name", ""), bool(ref.get("optional")))
        if data is None:
            return
        mode = int(ref.get("defaultMode", 0o644))
        items = ref.get("items")
        files = (
            [(i["key"], i["path"], i.get("mode", mode)) for i in items]
            if items
            else [(k, k, mode) for k in data]
        )
        for key, rel, fmode in files:
            if key not in data:
                if ref.get("optional"):
                    continue
                raise ContainerConfigError(
                    f"key {key!r} not found in {kind[:-1]} {ref.get('name')}"
                )
            _write_file(os.path.join(path, rel), data[key], int(fmode))

    def _write_downward(self, path: str, items: list[JsonDict], pod: JsonDict) -> None:
        full = self._pod_with_status(pod)
        for item in items:
            if "fieldRef" in item:
                value = field_ref_value(full, item["fieldRef"]["fieldPath"])
            else:
                ref = item.get("resourceFieldRef") or {}
                target = next(
                    (c.spec for c in self.containers if c.name == ref.get("containerName")),
                    self.containers[0].spec if self.containers else {},
                )
                value = resource_field_value(target, ref, self.ctx.allocatable)
            _write_file(
                os.path.join(path, item["path"]), value.encode(), int(item.get("mode", 0o644))
            )

    def _write_projected(self, path: str, projected: JsonDict, pod: JsonDict) -> None:
        for source in projected.get("sources") or []:
            if "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                token = self._token(pod, sat)
                _write_file(os.path.join(path, sat.get("path", "token")), token.encode(), 0o600)
            elif "configMap" in source:
                ref = source["configMap"]
                optional = bool(ref.get("optional"))
                # kube-root-ca.crt appears a moment after its namespace; give it that moment.
                if ref.get("name") == "kube-root-ca.crt" and not optional:
                    optional = self._waited_for_root_ca()
                self._write_keys(path, {**ref, "optional": optional}, "configmaps", {})
            elif "secret" in source:
                self._write_keys(path, source["secret"], "secrets", {})
            elif "downwardAPI" in source:
                self._write_downward(path, source["downwardAPI"].get("items") or [], pod)

    def _waited_for_root_ca(self) -> bool:
        """Whether to stop waiting for kube-root-ca.crt (after 10 s of retries)."""
        first: float | None = getattr(self, "_root_ca_first", None)
        if first is None:
            self._root_ca_first = time.monotonic()
            return False
        return bool(time.monotonic() - first > 10)

    def _token(self, pod: JsonDict, sat: JsonDict) -> str:
        sa = pod["spec"].get("serviceAccountName") or "default"
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [sat["audience"]] if sat.get("audience") else None,
                "expirationSeconds": int(sat.get("expirationSeconds", 3607)),
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": self.pod_name,
                    "uid": self.uid,
                },
            },
        }
        try:
            out = self.ctx.api.request(
                "POST", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/{sa}/token", body
            )
        except ApiError as e:
            raise ContainerConfigError(
                f"cannot get a token for serviceaccount {sa!r}: {e}"
            ) from None
        return str((out.get("status") or {}).get("token", ""))

    # -- status

    def _status(self, pod: JsonDict) -> JsonDict:
        old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
        if self.last_written is not None:
            old.update({c["type"]: c for c in self.last_written.get("conditions") or []})
        inits = [c for c in self.containers if c.init]
        regular = [c for c in self.containers if not c.init]
        init_statuses = [c.status() for c in inits]
        statuses = sorted((c.status() for c in regular), key=lambda s: str(s["name"]))
        phase = self._phase(pod, inits, regular)
        if self.deadline_exceeded:
            phase = "Failed"
        terminal = phase in ("Succeeded", "Failed")
        initialized = all(c.succeeded() for c in inits)
        not_ready = [c.name for c in regular if not c.ready]
        incomplete = [c.name for c in inits if not c.succeeded()]
        conditions: list[JsonDict] = []
        if not terminal:
            conditions.append(_condition("PodReadyToStartContainers", True, old))
        else:
            conditions.append(_condition("PodReadyToStartContainers", False, old))
        if phase == "Succeeded":
            conditions.append(_condition("Initialized", True, old, "PodCompleted"))
        elif initialized:
            conditions.append(_condition("Initialized", True, old))
        else:
            conditions.append(
                _condition(
                    "Initialized",
                    False,
                    old,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(incomplete)}]",
                )
            )
        for ctype in ("Ready", "ContainersReady"):
            if phase == "Succeeded":
                conditions.append(_condition(ctype, False, old, "PodCompleted"))
            elif not_ready or terminal:
                names = not_ready or [c.name for c in regular]
                conditions.append(
                    _condition(
                        ctype,
                        False,
                        old,
                        "PodFailed" if terminal else "ContainersNotReady",
                        "" if terminal else f"containers with unready status: [{' '.join(names)}]",
                    )
                )
            else:
                conditions.append(_condition(ctype, True, old))
        # Keep conditions others own (PodScheduled from the scheduler, DisruptionTarget, ...).
        mine = {c["type"] for c in conditions}
        others = [c for t, c in old.items() if t not in mine]
        conditions = others + conditions
        generation = pod["metadata"].get("generation")
        if generation is not None:
            # What the kubelet records since PodObservedGenerationTracking (GA in 1.35).
            for cond in conditions:
                if cond["type"] in mine:
                    cond["observedGeneration"] = generation
        status: JsonDict = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": self.ctx.host_ip,
            "hostIPs": [{"ip": self.ctx.host_ip}],
            "podIP": self.pod_ip,
            "podIPs": [{"ip": self.pod_ip}],
            "startTime": self.start_time,
            "containerStatuses": statuses,
        }
        if generation is not None:
            status["observedGeneration"] = generation
        if inits:
            status["initContainerStatuses"] = init_statuses
        if self.deadline_exceeded:
            status["reason"] = "DeadlineExceeded"
            status["message"] = "Pod was active on the node longer than the specified deadline"
        return status

    def _phase(self, pod: JsonDict, inits: list[Container], regular: list[Container]) -> str:
        """The kubelet's getPhase over our container states (``kyklos.sandbox.podphase``)."""
        policy = str(pod["spec"].get("restartPolicy", "Always"))
        return pod_phase(policy, inits, regular, terminal=self.terminal)

    def _write_status(self, status: JsonDict) -> None:
        if status == self.last_written:
            return
        now = time.monotonic()
        if now < self.write_retry_at:
            return
        body = {"metadata": {"uid": self.uid}, "status": status}
        try:
            self.ctx.api.request(
                "PATCH",
                f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}/status",
                body,
                content_type="application/merge-patch+json",
            )
        except ApiError as e:
            if e.status in (404, 409):
                log.info("pod %s/%s: gone while writing status", self.namespace, self.pod_name)
                self.last_written = status
                return
            log.warning("pod %s/%s: status write failed: %s", self.namespace, self.pod_name, e)
            self.write_retry_at = now + RETRY_SECONDS
            return
        except OSError as e:
            log.warning("pod %s/%s: status write failed: %s", self.namespace, self.pod_name, e)
            self.write_retry_at = now + RETRY_SECONDS
            return
        self.write_retry_at = 0.0
        self.last_written = status

    def _event(self, c: Container | None, etype: str, reason: str, message: str) -> None:
        """Record a core/v1 Event on the pod, as the kubelet's event recorder does."""
        if self.ctx.stopping.is_set():
            return
        key = (c.name if c else "", reason, message)
        if key == self._last_event:
            return  # the kubelet's recorder aggregates repeats; one is enough here
        self._last_event = key
        now = now_rfc3339()
        involved: JsonDict = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": self.namespace,
            "name": self.pod_name,
            "uid": self.uid,
        }
        if c is not None:
            kind = "initContainers" if c.init else "containers"
            involved["fieldPath"] = f"spec.{kind}{{{c.name}}}"
        body = {
            "metadata": {"generateName": f"{self.pod_name}.", "namespace": self.namespace},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": etype,
            "source": {"component": "kubelet", "host": self.ctx.node_name},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.ctx.node_name,
        }
        try:
            self.ctx.api.request("POST", f"/api/v1/namespaces/{self.namespace}/events", body)
        except (ApiError, OSError) as e:
            log.debug(
                "pod %s/%s: event %s not recorded: %s", self.namespace, self.pod_name, reason, e
            )

    # -- stopping and deletion

    def _stop_all(self, grace: float) -> None:
        """SIGTERM every running container, SIGKILL what is left after `grace` seconds."""
        running = [c for c in self.containers if c.handle is not None]
        for c in running:
            assert c.handle is not None
            self._event(c, "Normal", "Killing", f"Stopping container {c.name}")
            c.handle.terminate()
        deadline = time.monotonic() + grace
        for c in running:
            assert c.handle is not None
            if c.handle.wait(deadline - time.monotonic()) is None:
                log.info(
                    "pod %s/%s: container %s ignored SIGTERM for %gs, killing",
                    self.namespace,
                    self.pod_name,
                    c.name,
                    grace,
                )
                c.handle.kill()
                c.handle.wait(5.0)
        for c in running:
            assert c.handle is not None
            code = c.handle.poll()
            self._record_exit(c, 137 if code is None else code)
            c.done = True
        for c in self.containers:
            if c.handle is None and not c.done and not c.ever_started:
                c.done = True
        if running:
            self.ctx.on_process_change()

    def _finish_deletion(self, pod: JsonDict) -> None:
        """Graceful deletion: stop containers, report them, delete with grace period 0."""
        self._stop_all(self._grace(pod))
        self.terminal = True
        self._write_status(self._status(pod))
        try:
            self.ctx.api.request(
                "DELETE",
                f"/api/v1/namespaces/{self.namespace}/pods/{self.pod_name}",
                {"gracePeriodSeconds": 0, "preconditions": {"uid": self.uid}},
            )
        except ApiError as e:
            if e.status not in (404, 409):
                log.warning("pod %s/%s: final delete failed: %s", self.namespace, self.pod_name, e)
        except OSError as e:
            log.warning("pod %s/%s: final delete failed: %s", self.namespace, self.pod_name, e)
        shutil.rmtree(self.pod_dir + "/volumes", ignore_errors=True)


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


def _fmt_seconds(seconds: float) -> str:
    """Durations as Go prints them in back-off messages (10s, 1m20s, 2.5s)."""
    if seconds >= 60:
        m, s = divmod(int(seconds), 60)
        return f"{m}m{s}s" if s else f"{m}m0s"
    return f"{seconds:g}s"


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


def _write_file(path: str, data: bytes, mode: int) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def json_dumps(obj: object) -> str:
    """Compact JSON for logs and the state file."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)
