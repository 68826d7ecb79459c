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

The worker loop lives here; it composes ``kyklos.sandbox.podvolumes`` (volumes as host
directories), ``kyklos.sandbox.podlaunch`` (process handles, argv, mounts),
``kyklos.sandbox.podstatus`` (container records, the pure ``pod_status``, status writes and
Events), ``kyklos.sandbox.podprobe`` (readiness probes), ``kyklos.sandbox.podenv`` (env,
termination messages) and ``kyklos.sandbox.podphase`` (the phase); what they all read of
the worker and share with the agent is in ``kyklos.sandbox.podcontext``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from kyklos.sandbox.podcontext import (
    RETRY_SECONDS,
    ApiError,
    JsonDict,
    KubeApi,
    NodeContext,
    now_rfc3339,
)
from kyklos.sandbox.podenv import (
    ContainerConfigError,
    log_tail,
    read_tail,
    truncate_termination_message,
)
from kyklos.sandbox.podlaunch import (
    DEFAULT_TERMINATION_PATH,
    Handle,
    LaunchMixin,
    ProcessHandle,
    ScriptHandle,
    StartError,
    process_start_time,
    resolve_executable,
    start_error_message,
)
from kyklos.sandbox.podprobe import probe_readiness
from kyklos.sandbox.podstatus import Container, StatusMixin, pod_status
from kyklos.sandbox.podvolumes import VolumesMixin

# Names other modules import from here (the node agent, storage, tests).
__all__ = [
    "DEFAULT_TERMINATION_PATH",
    "RETRY_SECONDS",
    "ApiError",
    "Container",
    "Handle",
    "JsonDict",
    "KubeApi",
    "NodeContext",
    "PodWorker",
    "ProcessHandle",
    "ScriptHandle",
    "StartError",
    "json_dumps",
    "now_rfc3339",
    "pod_status",
    "process_start_time",
    "resolve_executable",
    "start_error_message",
]

log = logging.getLogger("kyklos.sandbox.nodeagent")


class PodWorker(LaunchMixin, VolumesMixin, StatusMixin):
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
                probe_readiness(c, c.spec["readinessProbe"])
                c.probe_next = now + float(c.spec["readinessProbe"].get("periodSeconds", 10))
        else:
            c.ready = True

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


def _fmt_seconds(seconds: float) -> str:
    """Durations as Go prints them in back-off messages (10s, 1m20s, 2.5s)."""
    if seconds >= 60:
        m, s = divmod(int(seconds), 60)
        return f"{m}m{s}s" if s else f"{m}m0s"
    return f"{seconds:g}s"


def json_dumps(obj: object) -> str:
    """Compact JSON for logs and the state file."""
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)
