"""The real node's containerd store: kept across starts only when left clean by the same inputs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kyklos.sandbox.build import STAMP
from kyklos.sandbox.realnode import config
from kyklos.sandbox.realnode.build import NodeBinaries
from kyklos.sandbox.realnode.store import (
    STORE_STAMP,
    StoreStamp,
    close_store,
    open_store,
    reusable,
    store_dir,
    store_inputs,
)

INPUTS = "1:abc:localhost/kyklos/pause:3.10.2"


@pytest.mark.parametrize(
    ("stamp", "inputs", "expected"),
    [
        (StoreStamp(INPUTS, clean=True).to_json(), INPUTS, True),
        (StoreStamp(INPUTS, clean=False).to_json(), INPUTS, False),  # a crashed run's
        (StoreStamp("1:old:localhost/kyklos/pause:3.10.2", True).to_json(), INPUTS, False),
        (StoreStamp("", clean=True).to_json(), "", False),  # unknown build: never reused
        (None, INPUTS, False),
        ("not json", INPUTS, False),
        ('{"clean": true}', INPUTS, False),
    ],
)
def test_a_store_is_reused_only_when_left_clean_by_the_same_inputs(
    stamp: str | None, inputs: str, expected: bool
) -> None:
    assert reusable(stamp, inputs) is expected


def test_the_stamp_round_trips_through_json() -> None:
    stamp = StoreStamp(INPUTS, clean=True)
    assert StoreStamp.from_json(stamp.to_json()) == stamp


def test_store_lives_beside_the_node_binaries_and_its_inputs_name_their_build(
    tmp_path: Path,
) -> None:
    binaries = NodeBinaries("v1.37.2", tmp_path / "node" / "v1.37.2")
    assert store_dir(binaries) == tmp_path / "node" / "v1.37.2.store"
    assert store_inputs(binaries) == ""  # not built: no fingerprint to trust
    binaries.directory.mkdir(parents=True)
    (binaries.directory / STAMP).write_text(json.dumps({"fingerprint": "f00"}))
    assert store_inputs(binaries) == f"1:f00:{config.PAUSE_IMAGE}"
    layout = config.NodeLayout(tmp_path / "data" / "node", store=store_dir(binaries))
    assert layout.containerd_root == store_dir(binaries)
    assert config.NodeLayout(tmp_path / "n").containerd_root == tmp_path / "n/containerd/root"


def test_open_keeps_a_clean_store_and_marks_it_in_use(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "image-content").write_text("kept")
    (store / STORE_STAMP).write_text(StoreStamp(INPUTS, clean=True).to_json())
    assert open_store(store, INPUTS) is True
    assert (store / "image-content").read_text() == "kept"
    assert StoreStamp.from_json((store / STORE_STAMP).read_text()).clean is False
    # A second start without a clean stop in between (a crash) empties it.
    assert open_store(store, INPUTS) is False
    assert not (store / "image-content").exists()


def test_open_empties_a_store_of_other_inputs(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "image-content").write_text("old")
    (store / STORE_STAMP).write_text(StoreStamp("1:old:p", clean=True).to_json())
    assert open_store(store, INPUTS) is False
    assert sorted(p.name for p in store.iterdir()) == [STORE_STAMP]


class FakeContainerd:
    """What ``ctr`` sees: tasks, sandboxes and containers; removals that may fail."""

    def __init__(self, *, stuck: bool = False) -> None:
        self.tasks = ["c1", "p1"]
        self.sandboxes = ["p1"]
        self.containers = ["c1", "p1"]
        self.stuck = stuck
        self.calls: list[tuple[str, ...]] = []

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.calls.append(args)
        out = ""
        if args[:2] == ("tasks", "ls"):
            out = "".join(f"{t}\n" for t in self.tasks)
        elif args[:2] == ("sandboxes", "ls"):
            out = "ID  CREATED  RUNTIME\n" + "".join(f"{s}  now  runc\n" for s in self.sandboxes)
        elif args[:2] == ("containers", "ls"):
            out = "".join(f"{c}\n" for c in self.containers)
        elif args[:2] == ("tasks", "rm"):
            self.tasks = [t for t in self.tasks if t not in args]
        elif args[:2] == ("sandboxes", "rm"):
            self.sandboxes = [s for s in self.sandboxes if s not in args]
        elif args[:2] == ("containers", "rm") and not self.stuck:
            self.containers = [c for c in self.containers if c not in args]
        return subprocess.CompletedProcess(["ctr", *args], 0, out, "")


def test_close_removes_every_task_sandbox_and_container_then_marks_clean(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    open_store(store, INPUTS)
    ctr = FakeContainerd()
    assert close_store(store, INPUTS, ctr) is True
    assert ("tasks", "rm", "--force", "c1", "p1") in ctr.calls
    assert ("sandboxes", "rm", "--force", "p1") in ctr.calls
    assert ("containers", "rm", "c1", "p1") in ctr.calls
    assert reusable((store / STORE_STAMP).read_text(), INPUTS)


def test_close_leaves_the_store_in_use_when_a_container_remains(tmp_path: Path) -> None:
    store = tmp_path / "store"
    open_store(store, INPUTS)
    assert close_store(store, INPUTS, FakeContainerd(stuck=True)) is False
    assert not reusable((store / STORE_STAMP).read_text(), INPUTS)
    assert open_store(store, INPUTS) is False  # the next start rebuilds it
