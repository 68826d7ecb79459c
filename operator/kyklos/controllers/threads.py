"""The operator's worker threads: one pool for every blocking call, emptied on SIGTERM.

kopf runs the sync handlers on ``settings.execution.executor``; the async daemons run their
reconciles in threads too (:func:`run`). Both use the one pool installed here, sized by
``executorWorkers``: it bounds how many reconciles run at once, not how many objects the
operator can hold (nothing that waits holds a thread).

On SIGTERM the operator may have thousands of calls queued (a restarted operator resumes
every object). A thread pool runs every queued call before its threads end, so exit would
wait for all of them. :func:`stop` drops the calls that have not started (each is a
level-triggered reconcile the next operator repeats), gives kopf a small fresh pool for its
cleanup handlers, and lets only the calls already running finish.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from kyklos.controllers.config import DEFAULT_EXECUTOR_WORKERS

log = logging.getLogger("kyklos.threads")

P = ParamSpec("P")
T = TypeVar("T")

#: Threads left for kopf's cleanup handlers once the pool is stopped.
CLEANUP_WORKERS = 2

_pool: ThreadPoolExecutor | None = None


def install(workers: int) -> ThreadPoolExecutor:
    """Create the operator's pool of ``workers`` threads (replacing a stopped one)."""
    global _pool
    _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kyklos")
    return _pool


def pool() -> ThreadPoolExecutor:
    """The operator's pool (a default-sized one when :func:`install` was not called)."""
    return _pool if _pool is not None else install(DEFAULT_EXECUTOR_WORKERS)


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run ``fn`` on the operator's pool and await it (cancelling drops it if not started)."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(pool(), functools.partial(fn, *args, **kwargs))


def stop() -> ThreadPoolExecutor:
    """Drop every queued call; return a fresh small pool for what still has to run.

    Calls already running finish; the old pool accepts nothing new.
    """
    global _pool
    old = _pool
    _pool = ThreadPoolExecutor(max_workers=CLEANUP_WORKERS, thread_name_prefix="kyklos-exit")
    if old is not None:
        old.shutdown(wait=False, cancel_futures=True)
    log.info("stopping: queued reconciles dropped, waiting only for those running")
    return _pool
