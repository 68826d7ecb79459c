"""A pod's phase from its containers' states: the kubelet's ``getPhase``, as a pure function.

The node agent (``kyklos.sandbox.pods``) keeps each container's current and last state; the
phase it reports follows from those alone, with the pod's ``restartPolicy`` and whether the
pod is ending (``terminal``: deleted, or past its deadline, so no container restarts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

PENDING, RUNNING, SUCCEEDED, FAILED = "Pending", "Running", "Succeeded", "Failed"


class ContainerState(Protocol):
    """What the phase reads of one container."""

    @property
    def state(self) -> Mapping[str, Any]: ...

    @property
    def last_state(self) -> Mapping[str, Any]: ...

    @property
    def done(self) -> bool:
        """Exited and will not be restarted."""
        ...


def _exit_code(state: Mapping[str, Any]) -> Any:
    return (state.get("terminated") or {}).get("exitCode")


def pod_phase(
    restart_policy: str,
    inits: Sequence[ContainerState],
    regular: Sequence[ContainerState],
    *,
    terminal: bool,
) -> str:
    """Pending, Running, Succeeded or Failed, as the kubelet would report it."""
    pending_init = failed_init = 0
    for c in inits:
        if "terminated" in c.state:
            if _exit_code(c.state) != 0:
                failed_init += 1
            elif not c.done:
                pending_init += 1
        elif "waiting" in c.state and c.last_state.get("terminated"):
            if _exit_code(c.last_state) != 0:
                failed_init += 1
        else:
            pending_init += 1
    if failed_init and restart_policy == "Never":
        return FAILED
    running = waiting = stopped = succeeded = 0
    for c in regular:
        if "running" in c.state:
            running += 1
        elif "terminated" in c.state:
            stopped += 1
            succeeded += _exit_code(c.state) == 0
        elif c.last_state.get("terminated"):
            stopped += 1
        else:
            waiting += 1
    if pending_init or waiting:
        return PENDING
    if running:
        return RUNNING
    if stopped:
        if terminal or all(c.done for c in regular):
            return SUCCEEDED if stopped == succeeded else FAILED
        return RUNNING
    return PENDING
