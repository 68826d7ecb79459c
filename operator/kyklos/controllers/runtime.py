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
  (:func:`log_failure`, one format and level for every controller; :func:`attempt` wraps a
  reconcile with both, and says nothing above debug about an object deleted meanwhile).
- **Index reads from threads** (:func:`index_values`): kopf's indexes are changed by its
  event loop while a reconcile in a worker thread copies them.
- **Per-object async daemons** (:class:`Daemons`): one kopf daemon per object runs the
  object's reconciles one at a time in a worker thread, and between them awaits (holding no
  thread) the delay the last decision asked for, or a wake-up from an event handler, or
  the operator's stop. Event handlers only wake the daemon, so every wake-up re-arms the
  schedule with a fresh decision's delay.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import kopf
from kubernetes.client.exceptions import ApiException

from kyklos.controllers import client, status, threads
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
    #: Children this process wrote, by (kind, name): (the versions the watch may still show
    #: from before the write, None for "absent"; the object after the write, None if deleted).
    children: dict[tuple[str, str], tuple[frozenset[str | None], dict[str, Any] | None]] = field(
        default_factory=dict
    )

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

    def current_child(
        self, kind: str, name: str, indexed: Mapping[str, Any] | None
    ) -> Mapping[str, Any] | None:
        """The indexed child, or this process's own later write of it (None: deleted).

        The same rule as :meth:`current_status`: an indexed copy at a version some write of
        ours replaced (or no copy, where we created it) predates the write; any other copy is
        newer and wins (and the record is dropped).
        """
        record = self.children.get((kind, name))
        if record is None:
            return indexed
        stale, written = record
        if _version(indexed) in stale:
            return written
        del self.children[(kind, name)]
        return indexed

    def remember_child(
        self,
        kind: str,
        name: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        *,
        also_replaced: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        """Record that a write took the child from ``before`` (None: absent) to ``after``
        (None: deleted); ``also_replaced`` are intermediate versions of the same reconcile."""
        stale = {_version(before), *(_version(o) for o in also_replaced)}
        previous = self.children.get((kind, name))
        if previous is not None:  # writes in a row before the watch caught up
            stale |= previous[0] | {_version(previous[1])}
        self.children[(kind, name)] = (frozenset(stale), None if after is None else dict(after))


def _version(obj: Mapping[str, Any] | None) -> str | None:
    if obj is None:
        return None
    version = (obj.get("metadata") or {}).get("resourceVersion")
    return None if version is None else str(version)


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


def attempt(
    kind: str,
    namespace: str,
    name: str,
    memory: Memory,
    reconcile: Callable[[], float | None],
    *,
    gone: Callable[[], bool] = lambda: False,
) -> float | None:
    """Run one reconcile; its delay, or after a failure one log line and the backoff delay.

    A failure of an object that ``gone`` says was deleted meanwhile is expected (its
    children's writes meet a missing owner or namespace): logged at debug, not retried.
    """
    try:
        delay = reconcile()
    except Exception as exc:
        if gone():
            log.debug("%s %s/%s: deleted during its reconcile: %s", kind, namespace, name, exc)
            return None
        memory.failures += 1
        retry = retry_after(memory.failures)
        log_failure(kind, namespace, name, exc, retry)
        return retry
    memory.failures = 0
    return delay


def index_values(index: Mapping[Any, Iterable[Any]] | None, key: Hashable) -> list[Any]:
    """The values of a kopf index under ``key``, copied safely from any thread.

    kopf's event loop changes an index while a worker thread copies it; a copy that met a
    change is taken again.
    """
    if index is None:
        return []
    for _attempt in range(5):
        try:
            return list(index.get(key, ()))
        except RuntimeError:  # changed size during iteration
            continue
    return []


class Daemons:
    """The wake-up flags of one kind's per-object async daemons; used on kopf's event loop.

    ``await daemons.run(key, stopped, reconcile)`` is a daemon's whole body: reconcile on the
    operator's pool (:mod:`kyklos.controllers.threads`, emptied on SIGTERM), then wait for
    the delay it returned (at most ``max_sleep``: a safety net, not the schedule), for
    :meth:`wake`, or for ``stopped`` (the object's deletion or the operator's exit; kopf
    cancels a daemon still running after ``cancellation_timeout``).
    """

    def __init__(self, max_sleep: float) -> None:
        self.max_sleep = max_sleep
        self._flags: dict[Hashable, asyncio.Event] = {}

    def wake(self, key: Hashable) -> None:
        """Make the object's daemon reconcile now (no-op before it starts: it reconciles first)."""
        flag = self._flags.get(key)
        if flag is not None:
            flag.set()

    async def run(
        self,
        key: Hashable,
        stopped: kopf.DaemonStopped,
        reconcile: Callable[[], float | None],
    ) -> None:
        """Reconcile (in a thread) and wait, until ``stopped``."""
        flag = self._flags.setdefault(key, asyncio.Event())
        try:
            while not stopped:
                flag.clear()
                delay = await threads.run(reconcile)
                wait = self.max_sleep if delay is None else min(max(delay, 0.0), self.max_sleep)
                await _sleep(stopped, flag, wait)
        finally:
            if self._flags.get(key) is flag:
                del self._flags[key]


async def _sleep(stopped: kopf.DaemonStopped, flag: asyncio.Event, seconds: float) -> None:
    """Return after ``seconds``, or as soon as the daemon is stopped or woken."""
    waits = [
        asyncio.ensure_future(stopped.wait(seconds)),
        asyncio.ensure_future(flag.wait()),
    ]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


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
