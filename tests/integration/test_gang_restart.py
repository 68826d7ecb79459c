"""A 3-worker training where rank 1 fails restarts all three workers together.

The story: distributed training with `workers: 3` (gang restart is on by default). On the
first attempt rank 1 crashes while ranks 0 and 2 wait for it, as ranks blocked in a
collective do. The Job's native podFailurePolicy fails the whole Job at once, the Job
controller stops ranks 0 and 2, and the operator starts a fresh Job for all three
(`status.restarts: 1`, the same run and pinned data, `KYKLOS_RESTART=1`). The second attempt
succeeds. The workers are real processes run by the sandbox's kubelet; they leave marker
files that show which rank ran in which attempt and which finished.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from kyklos_testing import Kyklos, tiny_dataset

pytestmark = pytest.mark.sandbox_only

TIMEOUT = 180.0
TRAINER = textwrap.dedent(
    """
    import json, os, pathlib, sys, time
    marks = pathlib.Path(json.loads(os.environ["KYKLOS_HYPERPARAMETERS"])["marks"])
    rank, restart = int(os.environ["RANK"]), int(os.environ["KYKLOS_RESTART"])
    (marks / f"start-{restart}-{rank}-{os.environ['KYKLOS_RUN']}").touch()
    if restart == 0:
        if rank == 1:
            time.sleep(1)
            sys.exit(3)
        time.sleep(300)  # waits on the dead peer, as a collective would
    (marks / f"done-{restart}-{rank}").touch()
    open(os.environ["KYKLOS_METRICS_FILE"], "w").write(json.dumps({"restart": restart}))
    """
).strip()


def test_rank_1_fails_and_all_three_workers_restart(
    k8s: Any, namespace: str, kyklos: Kyklos, data_dir: Path
) -> None:
    from kubernetes import client

    (data_dir / "marks").mkdir()
    tiny_dataset(kyklos, "d", data_dir)
    kyklos.create(
        "trainingjobs",
        {
            "metadata": {"name": "ddp"},
            "spec": {
                "datasetRef": {"name": "d"},
                "image": "python:3.12",
                "command": ["python", "-c", TRAINER],
                "workers": 3,
                "hyperparameters": {"marks": str(data_dir / "marks")},
            },
        },
    )
    done = kyklos.wait_status(
        "trainingjobs", "ddp", lambda s: s.get("phase") in ("Succeeded", "Failed"),
        timeout=TIMEOUT, what="finished",
    )  # fmt: skip
    assert done["phase"] == "Succeeded", done
    assert done["restarts"] == 1
    marks = {p.name for p in (data_dir / "marks").iterdir()}
    run = done["run"]
    started = {m.rsplit("-", 1)[0] for m in marks if m.startswith("start-")}
    assert started == {f"start-{a}-{r}" for a in (0, 1) for r in (0, 1, 2)}
    assert {m for m in marks if m.startswith("start-")} == {f"{s}-{run}" for s in started}
    # Ranks 0 and 2 of the first attempt never finished: they were stopped, not waited for.
    assert {m for m in marks if m.startswith("done-")} == {f"done-1-{r}" for r in (0, 1, 2)}
    events = (
        client.CoreV1Api(k8s)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=ddp")
        .items
    )
    restarts = [e for e in events if e.reason == "GangRestart"]
    assert restarts and "restarting all 3 workers (restart 1 of at most 3)" in restarts[0].message
    (job,) = (
        client.BatchV1Api(k8s)
        .list_namespaced_job(namespace, label_selector="kyklos.io/trainingjob=ddp")
        .items
    )
    assert job.metadata.annotations["kyklos.io/restart"] == "1"
