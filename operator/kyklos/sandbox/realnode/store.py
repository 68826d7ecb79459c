"""The real node's containerd store (its images), kept across starts while its inputs hold.

containerd's root (content, unpacked snapshots, metadata) lives beside the node's binaries in
the cache, ``<cache>/node/<version>.store``, not under the sandbox's data dir: the pause image
and every image loaded into the node (``kyklos image load``) are still there at the next
start of any sandbox on this machine, which has one real node at a time (the real-node lock in
``host.py`` serialises every user of the store).

A store is reused only when its stamp says it was left *clean* by the same inputs (the node
binaries' build fingerprint, the pause image name, ``STORE_FORMAT``). Clean means that a
stopping node removed every task, container and sandbox from it once its kubelet had stopped,
so the next node starts with images only. A start marks the store in use first; a crashed run
leaves it marked in use, and the next start wipes and rebuilds it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

from kyklos.sandbox.build import STAMP
from kyklos.sandbox.realnode.build import NodeBinaries
from kyklos.sandbox.realnode.config import PAUSE_IMAGE
from kyklos.sandbox.realnode.host import unmount_under

STORE_FORMAT = 1
STORE_STAMP = "kyklos-store.json"

Ctr = Callable[..., CompletedProcess[str]]


@dataclass(frozen=True)
class StoreStamp:
    """What the store's stamp file says: which inputs made it, and whether it was left clean."""

    inputs: str
    clean: bool

    def to_json(self) -> str:
        """Serialise (the stamp crosses from one run of the node to the next)."""
        return json.dumps({"inputs": self.inputs, "clean": self.clean}, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StoreStamp:
        """Parse a stamp written by ``to_json``; ValueError when it is not one."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("inputs"), str):
            raise ValueError("not a store stamp")
        return cls(inputs=data["inputs"], clean=data.get("clean") is True)


def store_dir(binaries: NodeBinaries) -> Path:
    """Where containerd's root for these node binaries lives (beside them in the cache)."""
    return binaries.directory.parent / f"{binaries.version}.store"


def store_inputs(binaries: NodeBinaries) -> str:
    """What decides whether a kept store fits: the binaries' build, the pause name, the format."""
    try:
        stamp = json.loads((binaries.directory / STAMP).read_text())
        built = str(stamp.get("fingerprint") or "") if isinstance(stamp, dict) else ""
    except (OSError, ValueError):
        built = ""
    # Binaries without a build stamp: nothing tells whether a kept store fits them.
    return f"{STORE_FORMAT}:{built}:{PAUSE_IMAGE}" if built else ""


def reusable(stamp_text: str | None, inputs: str) -> bool:
    """True when a store whose stamp reads ``stamp_text`` may be used by a node with ``inputs``.

    Only a store left clean by the same, known inputs: not a crashed run's (still in use),
    not another build's, not one without a readable stamp.
    """
    if stamp_text is None:
        return False
    try:
        stamp = StoreStamp.from_json(stamp_text)
    except ValueError:
        return False
    return bool(inputs) and stamp.clean and stamp.inputs == inputs


def open_store(directory: Path, inputs: str) -> bool:
    """Keep the store when it is reusable, else empty it; mark it in use. True when kept."""
    stamp_path = directory / STORE_STAMP
    try:
        text: str | None = stamp_path.read_text()
    except OSError:
        text = None
    kept = reusable(text, inputs)
    if not kept:
        unmount_under(directory)
        shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True, exist_ok=True)
    _write(stamp_path, StoreStamp(inputs, clean=False))
    return kept


def close_store(directory: Path, inputs: str, ctr: Ctr) -> bool:
    """Remove every task, container and sandbox (the kubelet has stopped); mark it clean.

    ``ctr`` runs ``ctr --namespace k8s.io ARGS...`` against the node's containerd. Returns
    whether the store was left clean; if any removal failed it stays marked in use and the
    next start rebuilds it.
    """
    tasks = _ids(ctr("tasks", "ls", "-q"))
    if tasks:
        ctr("tasks", "rm", "--force", *tasks)
    sandboxes = _ids(ctr("sandboxes", "ls"), header=True)
    if sandboxes:
        ctr("sandboxes", "rm", "--force", *sandboxes)
    containers = _ids(ctr("containers", "ls", "-q"))
    if containers:
        ctr("containers", "rm", *containers)
    left = ctr("containers", "ls", "-q")
    left_sandboxes = ctr("sandboxes", "ls")
    clean = (
        left.returncode == 0
        and not _ids(left)
        and left_sandboxes.returncode == 0
        and not _ids(left_sandboxes, header=True)
    )
    if clean:
        _write(directory / STORE_STAMP, StoreStamp(inputs, clean=True))
    return clean


def _ids(proc: CompletedProcess[str], *, header: bool = False) -> list[str]:
    if proc.returncode != 0:
        return []
    lines = [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]
    return lines[1:] if header else lines


def _write(path: Path, stamp: StoreStamp) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(stamp.to_json())
    tmp.replace(path)
