"""Pod status as the kubelet writes it: container records, conditions, phase, Events.

``pod_status`` is pure: it builds the ``status`` of a pod from its spec, the worker's
``Container`` records and a few facts (terminal, deadline exceeded, IPs, start time, now).
``StatusMixin`` writes it through ``pods/status`` only when it changed and records the
kubelet's Events, for the pod worker (``kyklos.sandbox.pods``).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kyklos.sandbox.podcontext import RETRY_SECONDS, ApiError, JsonDict, PodParts, now_rfc3339
from kyklos.sandbox.podlaunch import Handle
from kyklos.sandbox.podphase import pod_phase
from kyklos.sandbox.policy import Rule

log = logging.getLogger("kyklos.sandbox.nodeagent")


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
    ctype: str,
    ok: bool,
    old: Mapping[str, JsonDict],
    now: str,
    reason: str = "",
    message: str = "",
) -> JsonDict:
    status = "True" if ok else "False"
    prev = old.get(ctype)
    cond: JsonDict = {"type": ctype, "status": status}
    cond["lastTransitionTime"] = (
        prev["lastTransitionTime"]
        if prev and prev.get("status") == status and prev.get("lastTransitionTime")
        else now
    )
    cond["lastProbeTime"] = None
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def pod_status(
    pod: JsonDict,
    containers: Sequence[Container],
    *,
    last_written: JsonDict | None,
    terminal: bool,
    deadline_exceeded: bool,
    host_ip: str,
    pod_ip: str,
    start_time: str,
    now: str,
) -> JsonDict:
    """The pod's ``status`` from its containers' records, keeping others' conditions.

    ``terminal``: the pod is ending (nothing restarts); ``last_written``: the status the
    worker wrote last (its conditions' transition times are kept); ``now``: RFC 3339.
    """
    old = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
    if last_written is not None:
        old.update({c["type"]: c for c in last_written.get("conditions") or []})
    inits = [c for c in containers if c.init]
    regular = [c for c in containers if not c.init]
    init_statuses = [c.status() for c in inits]
    statuses = sorted((c.status() for c in regular), key=lambda s: str(s["name"]))
    policy = str(pod["spec"].get("restartPolicy", "Always"))
    phase = pod_phase(policy, inits, regular, terminal=terminal)
    if deadline_exceeded:
        phase = "Failed"
    ending = phase in ("Succeeded", "Failed")
    initialized = all(c.succeeded() for c in inits)
    not_ready = [c.name for c in regular if not c.ready]
    incomplete = [c.name for c in inits if not c.succeeded()]
    conditions: list[JsonDict] = []
    if not ending:
        conditions.append(_condition("PodReadyToStartContainers", True, old, now))
    else:
        conditions.append(_condition("PodReadyToStartContainers", False, old, now))
    if phase == "Succeeded":
        conditions.append(_condition("Initialized", True, old, now, "PodCompleted"))
    elif initialized:
        conditions.append(_condition("Initialized", True, old, now))
    else:
        conditions.append(
            _condition(
                "Initialized",
                False,
                old,
                now,
                "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(incomplete)}]",
            )
        )
    for ctype in ("Ready", "ContainersReady"):
        if phase == "Succeeded":
            conditions.append(_condition(ctype, False, old, now, "PodCompleted"))
        elif not_ready or ending:
            names = not_ready or [c.name for c in regular]
            conditions.append(
                _condition(
                    ctype,
                    False,
                    old,
                    now,
                    "PodFailed" if ending else "ContainersNotReady",
                    "" if ending else f"containers with unready status: [{' '.join(names)}]",
                )
            )
        else:
            conditions.append(_condition(ctype, True, old, now))
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
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": pod_ip,
        "podIPs": [{"ip": pod_ip}],
        "startTime": start_time,
        "containerStatuses": statuses,
    }
    if generation is not None:
        status["observedGeneration"] = generation
    if inits:
        status["initContainerStatuses"] = init_statuses
    if deadline_exceeded:
        status["reason"] = "DeadlineExceeded"
        status["message"] = "Pod was active on the node longer than the specified deadline"
    return status


class StatusMixin(PodParts):
    """Writes the pod worker's status and Events; reads the worker's state and context."""

    containers: list[Container]
    last_written: JsonDict | None
    write_retry_at: float
    terminal: bool
    deadline_exceeded: bool
    start_time: str
    _last_event: tuple[str, str, str]

    def _status(self, pod: JsonDict) -> JsonDict:
        return pod_status(
            pod,
            self.containers,
            last_written=self.last_written,
            terminal=self.terminal,
            deadline_exceeded=self.deadline_exceeded,
            host_ip=self.ctx.host_ip,
            pod_ip=self.pod_ip,
            start_time=self.start_time,
            now=now_rfc3339(),
        )

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
