"""The reconcile runtime the controllers share: what every Kubernetes controller needs once.

- **Per-object serialisation and memory** (:class:`Objects`): one lock and one small record
  per object, so two triggers never reconcile the same object at once.
- **The operator's own last write** (:class:`Memory`): after a status write, the watch (and so
  kopf's body or index) still shows the object as it was for a moment. The record keeps the
  ``resourceVersion`` the write replaced and the status it produced; a body at exactly that
  version is known to be stale, and the status written is used instead. Any newer version
  already contains the write (or was written by someone else, and wins).
- **Status writes with a precondition** (:func:`write_status`): the patch carries the body's
  ``resourceVersion``; a 409 means the body was stale, and the watch event that made it so
  reconciles again (``None``: requeue, nothing was written).
- **Requeue with jittered backoff** (:func:`retry_after`) and **one log line per failure**
  (:func:`log_failure`, one format and level for every controller).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from kubernetes.client.exceptions import ApiException

from kyklos.controllers import client, status
from kyklos.logic.conditions import status_after

log = logging.getLogger("kyklos.runtime")

#: First retry after a failed reconcile, and the longest wait between retries.
RETRY_BASE_SECONDS = 2.0
RETRY_MAX_SECONDS = 60.0


@dataclass
class Memory:
    """What a controller remembers about one object between reconciles (extend per kind)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    #: (resourceVersion the last status write replaced, the status it left on the server).
    written: tuple[str, dict[str, Any]] | None = None
    #: Reconciles that failed in a row (0 after a success).
    failures: int = 0

    def current_status(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The object's status, with this process's own last write applied if ``body`` predates it."""
        version = (body.get("metadata") or {}).get("resourceVersion")
        if self.written is not None and version is not None and self.written[0] == str(version):
            return dict(self.written[1])
        return dict(body.get("status") or {})

    def remember_write(
        self, body: Mapping[str, Any], stored: Mapping[str, Any], desired: Mapping[str, Any]
    ) -> None:
        """Record that a status write took ``body`` (whose status was ``stored``) to ``desired``."""
        version = (body.get("metadata") or {}).get("resourceVersion")
        self.written = (str(version), status_after(stored, desired)) if version else None


M = TypeVar("M", bound=Memory)


class Objects(Generic[M]):
    """Per-object records of one controller, created on first use; safe from any thread."""

    def __init__(self, factory: Callable[[], M]) -> None:
        self._factory = factory
        self._records: dict[Hashable, M] = {}
        self._guard = threading.Lock()

    def get(self, key: Hashable) -> M:
        """The record of ``key`` (a new one the first time)."""
        with self._guard:
            record = self._records.get(key)
            if record is None:
                record = self._records[key] = self._factory()
            return record

    def forget(self, key: Hashable) -> None:
        """Drop the record of a deleted object."""
        with self._guard:
            self._records.pop(key, None)


def write_status(
    res: client.Resource,
    body: Mapping[str, Any],
    stored: Mapping[str, Any],
    desired: Mapping[str, Any],
    memory: Memory,
) -> bool | None:
    """Patch the status from ``stored`` to ``desired`` with ``body``'s resourceVersion as precondition.

    True when written (and remembered in ``memory``), False when nothing differed or the
    object is gone, None when ``body`` was stale (409): its newer version reconciles again.
    """
    view = {**body, "status": stored}
    try:
        written = status.write_status(res, view, desired, precondition=True)
    except ApiException as exc:
        if exc.status == 409:
            return None
        raise
    if written:
        memory.remember_write(body, stored, desired)
    return written


def retry_after(failures: int, *, rng: Callable[[], float] = random.random) -> float:
    """Seconds before retrying after ``failures`` failed reconciles in a row (jittered, capped).

    Exponential from :data:`RETRY_BASE_SECONDS`, at most :data:`RETRY_MAX_SECONDS`, and
    spread by ±20 % so that many objects failing together do not retry in lockstep.
    """
    exponent = max(failures - 1, 0)
    base = min(RETRY_BASE_SECONDS * float(2**exponent), RETRY_MAX_SECONDS)
    return base * (0.8 + 0.4 * rng())


def describe(exc: BaseException) -> str:
    """One line about a failure (never a traceback or a response body)."""
    if isinstance(exc, ApiException):
        return f"API error {exc.status} {exc.reason}"
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def log_failure(kind: str, namespace: str, name: str, exc: BaseException, retry: float) -> None:
    """The one log line of a failed reconcile, in the same format for every kind."""
    log.warning(
        "%s %s/%s: reconcile failed, retrying in %.0fs: %s",
        kind,
        namespace,
        name,
        retry,
        describe(exc),
    )
