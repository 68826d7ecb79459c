"""The request log's crash-safe journal: what a proxy killed outright had not flushed.

SIGTERM flushes the buffer, but a proxy killed outright (SIGKILL, the OOM killer) loses
it. The journal makes that loss *counted* rather than silent; it does not recover the
records (journalling every record would cost a serialisation and a write per request,
counting costs a store into shared memory). It lives in a directory on the pod's
``emptyDir`` (the proxy's ``/tmp``), which outlives a container restart:

- ``request-log.journal``: 24 bytes mapped ``MAP_SHARED`` (magic, ``added``,
  ``settled``). Every record put in the buffer increments ``added``; every record that
  left it (written to the store, or dropped and counted because the write failed)
  increments ``settled``. A store into a shared file mapping is in the kernel's page
  cache at once, so it survives the death of the process (not of the node).
- ``request-log.pending.json``: written before a flush writes its file (the file's URI,
  its record count, and ``settled`` before it), removed after ``settled`` moved on. A
  proxy killed between writing the file and counting it would otherwise count as lost a
  batch that is in the store.

On start (:meth:`Journal.recover`) the new incarnation reads what the previous one left:
``added - settled`` (after crediting a pending batch whose file exists) records were
buffered and never written; the proxy counts them in
``kyklos_serving_request_log_dropped_total{reason="proxy_restart"}`` and logs a warning
naming how many. Then the journal starts again from zero. A clean stop (SIGTERM) settles
everything, so the next start counts no loss.
"""

from __future__ import annotations

import json
import mmap
import os
import struct
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, Field

JOURNAL_FILE = "request-log.journal"
PENDING_FILE = "request-log.pending.json"
MAGIC = b"KYKJRNL1"
_LAYOUT = struct.Struct("<8sQQ")  # magic, added, settled
_ADDED = 8
_SETTLED = 16
_COUNTER = struct.Struct("<Q")


class PendingFlush(BaseModel):
    """A flush under way: its file, its size, and ``settled`` before it."""

    uri: str
    count: int = Field(ge=0)
    settled: int = Field(ge=0)


class Journal:
    """Counts of the request-log buffer in a file mapped ``MAP_SHARED`` (see the module)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / JOURNAL_FILE
        self.pending_path = self.directory / PENDING_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _LAYOUT.size:
                os.ftruncate(fd, _LAYOUT.size)
            self._map = mmap.mmap(fd, _LAYOUT.size, mmap.MAP_SHARED)
        finally:
            os.close(fd)
        self.added = 0
        self.settled = 0

    def recover(self, exists: Callable[[str], bool]) -> int:
        """Records a previous incarnation buffered and never wrote; then start from zero.

        ``exists(uri)`` tells whether a pending flush's file reached the store.
        """
        magic, added, settled = _LAYOUT.unpack_from(self._map, 0)
        lost = 0
        if magic == MAGIC:
            pending = self._read_pending()
            if pending is not None and pending.settled == settled and exists(pending.uri):
                settled += pending.count  # written, killed before it was counted
            lost = max(0, added - settled)
        self.added = self.settled = 0
        _LAYOUT.pack_into(self._map, 0, MAGIC, 0, 0)
        self.pending_path.unlink(missing_ok=True)
        return lost

    def record_added(self) -> None:
        """One more record in the buffer."""
        self.added += 1
        _COUNTER.pack_into(self._map, _ADDED, self.added)

    def begin_flush(self, uri: str, count: int) -> None:
        """A batch of ``count`` records is about to be written at ``uri``."""
        pending = PendingFlush(uri=uri, count=count, settled=self.settled)
        tmp = self.pending_path.with_suffix(".tmp")
        tmp.write_text(pending.model_dump_json())
        os.replace(tmp, self.pending_path)

    def settle(self, count: int) -> None:
        """``count`` records left the buffer (written, or dropped and counted)."""
        self.settled += count
        _COUNTER.pack_into(self._map, _SETTLED, self.settled)
        self.pending_path.unlink(missing_ok=True)

    @property
    def unsettled(self) -> int:
        """Records in the buffer or in a flush under way."""
        return self.added - self.settled

    def close(self) -> None:
        self._map.close()

    def _read_pending(self) -> PendingFlush | None:
        try:
            return PendingFlush.model_validate_json(self.pending_path.read_text())
        except (OSError, ValueError, json.JSONDecodeError):
            return None
