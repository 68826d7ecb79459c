"""A running TrainingJob is suspended and resumed, on the same pinned data.

The story: a long training is running when the cluster's GPUs are needed elsewhere. The
user sets `spec.suspend: true` (the one spec field that may change once training started):
the operator suspends the Job, the Job controller stops its pods, and the TrainingJob says
phase Suspended. Setting it back to false resumes the same Job (same pinned dataset
version, same run); the trainer, a real process, sees that it ran before and finishes.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from kyklos_testing import Kyklos, tiny_dataset, wait_for

pytestmark = pytest.mark.sandbox_only

TIMEOUT = 120.0
SELECTOR = "kyklos.io/trainingjob=long"
# First run: leave a marker and train "for ever"; a run after a resume finishes at once.
TRAINER = textwrap.dedent(
    """
    import json, os, pathlib, time
    marker = pathlib.Path(json.loads(os.environ["KYKLOS_HYPERPARAMETERS"])["marker"])
    runs = int(marker.read_text()) + 1 if marker.exists() else 1
    marker.write_text(str(runs))
    if runs == 1:
        time.sleep(600)
    out = {"runs": runs}
    open(os.environ["KYKLOS_METRICS_FILE"], "w").write(json.dumps(out))
    """
).strip()


def _running_pods(k8s: Any, namespace: str) -> list[Any]:
    from kubernetes import client

    pods = (
        client.CoreV1Api(k8s)
        .list_namespaced_pod(namespace, label_selector="kyklos.io/trainingjob=long")
        .items
    )
    return [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


def test_suspend_a_running_training_and_resume_it(
    k8s: Any, namespace: str, kyklos: Kyklos, data_dir: Path
) -> None:
    from kubernetes import client

    tiny_dataset(kyklos, "d", data_dir)
    kyklos.create(
        "trainingjobs",
        {
            "metadata": {"name": "long"},
            "spec": {
                "datasetRef": {"name": "d"},
                "image": "python:3.12",
                "command": ["python", "-c", TRAINER],
                "hyperparameters": {"marker": str(data_dir / "runs")},
            },
        },
    )
    running = kyklos.wait_status(
        "trainingjobs", "long", lambda s: s.get("phase") == "Running", timeout=TIMEOUT,
        what="Running",
    )  # fmt: skip
    wait_for(lambda: _running_pods(k8s, namespace), timeout=60, what="the trainer pod runs")
    wait_for(lambda: (data_dir / "runs").exists(), timeout=60, what="the trainer started")
    (job,) = client.BatchV1Api(k8s).list_namespaced_job(namespace, label_selector=SELECTOR).items

    kyklos.patch("trainingjobs", "long", {"spec": {"suspend": True}})  # allowed while running
    suspended = kyklos.wait_status(
        "trainingjobs", "long", lambda s: s.get("phase") == "Suspended", timeout=TIMEOUT,
        what="phase Suspended",
    )  # fmt: skip
    (ready,) = [c for c in suspended["conditions"] if c["type"] == "Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Suspended")
    assert "resume" in ready["message"] and running["datasetVersion"] in ready["message"]
    assert client.BatchV1Api(k8s).read_namespaced_job(job.metadata.name, namespace).spec.suspend
    wait_for(lambda: not _running_pods(k8s, namespace), timeout=60, what="the pods stopped")

    # Other spec changes stay refused while suspended.
    from kubernetes.client.rest import ApiException

    with pytest.raises(ApiException) as refused:
        kyklos.patch("trainingjobs", "long", {"spec": {"image": "python:3.13"}})
    assert refused.value.status == 422 and "only suspend may change" in refused.value.body

    kyklos.patch("trainingjobs", "long", {"spec": {"suspend": False}})
    done = kyklos.wait_status(
        "trainingjobs", "long", lambda s: s.get("phase") in ("Succeeded", "Failed"),
        timeout=TIMEOUT, what="finished after resume",
    )  # fmt: skip
    assert done["phase"] == "Succeeded", done
    assert done["metrics"]["runs"] == 2  # the resumed run, not a fresh TrainingJob
    assert (done["datasetVersion"], done["run"]) == (running["datasetVersion"], running["run"])
    (same,) = client.BatchV1Api(k8s).list_namespaced_job(namespace, label_selector=SELECTOR).items
    assert same.metadata.uid == job.metadata.uid
