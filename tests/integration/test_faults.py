"""The operator holds up when its process, the API server or the network misbehaves.

Each story injects one real fault and then asks for convergence, with bounded waits:

- the operator SIGKILLed in the middle of a burst of creations: a new operator finishes the
  burst with exactly one Job per TrainingJob and no status already written lost;
- the kube-apiserver SIGKILLed and started again on the same etcd data
  (``kyklos sandbox restart kube-apiserver``) while the operator runs: the new API server's
  watch cache starts after the operator's last resourceVersion, so every resumed watch gets
  410 Gone; the operator re-lists, converges and is never restarted;
- the API server answering 429 and 503 for a while (the sandbox's fault proxy forwards the
  operator's real traffic and answers errors during the window): the operator retries with
  back-off, never crashes, and converges once the errors stop.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml
from kyklos_testing import Kyklos, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.sandbox_only]

REPO = Path(__file__).resolve().parents[2]
HOST_BASE = Path("/var/tmp")
TRAINER = "registry.test/trainer:1"  # default policy: its pods succeed after 0.5 s
TJ_LABEL = "kyklos.io/trainingjob"
#: Everything: these stories are about faults, not about the operator's RBAC.
ALL_RULES = [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]


@pytest.fixture
def data_dir() -> Iterator[Path]:
    HOST_BASE.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="kyklos-faults-", dir=HOST_BASE))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def artifacts_env(data_dir: Path) -> dict[str, str]:
    return {"KYKLOS_ARTIFACTS_URI": f"file://{data_dir / 'artifacts'}"}


def ready_dataset(ky: Kyklos, data_dir: Path) -> None:
    """A Dataset profiled for real (the worker runs), which every TrainingJob here trains on."""
    shutil.copy(REPO / "examples" / "data" / "churn-reference.csv", data_dir / "train.csv")
    ky.create(
        "datasets",
        {
            "metadata": {"name": "train"},
            "spec": {
                "source": {"uri": f"file://{data_dir / 'train.csv'}", "format": "csv"},
                "schema": {"features": [{"name": "tenure_months", "type": "numeric"}]},
            },
        },
    )
    ky.wait_status(
        "datasets", "train", lambda s: s.get("phase") == "Ready", timeout=180, what="Ready"
    )


def trainingjob(name: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"datasetRef": {"name": "train"}, "image": TRAINER},
    }


def jobs_by_trainingjob(k8s: Any, namespace: str) -> dict[str, list[Any]]:
    from kubernetes import client

    out: dict[str, list[Any]] = {}
    for job in client.BatchV1Api(k8s).list_namespaced_job(namespace).items:
        owner = (job.metadata.labels or {}).get(TJ_LABEL)
        if owner:
            out.setdefault(owner, []).append(job)
    return out


def alive(running: Any) -> bool:
    """The operator process runs and its liveness endpoint answers."""
    if running.proc.poll() is not None:
        return False
    with urllib.request.urlopen(running.liveness_url, timeout=5) as resp:
        return bool(resp.status == 200)


# -------------------------------------------------------------------- the operator killed


def test_operator_killed_mid_burst_a_new_one_converges_without_duplicates_or_lost_status(
    k8s: Any, namespace: str, crds_installed: None, operator: Any, data_dir: Path
) -> None:
    ky = Kyklos(k8s, namespace)
    first = operator(artifacts_env(data_dir))
    ready_dataset(ky, data_dir)
    burst = 40
    names = [f"burst-{i:02d}" for i in range(burst)]

    def has_job(name: str) -> bool:
        return bool((ky.status("trainingjobs", name) or {}).get("jobName"))

    with ThreadPoolExecutor(4) as pool:
        creations = pool.map(lambda n: ky.create("trainingjobs", trainingjob(n)), names)
        # Kill it once it has acted on some of the burst but (most likely) not all of it.
        wait_for(
            lambda: (
                sum(1 for tj in ky.list("trainingjobs") if (tj.get("status") or {}).get("jobName"))
                >= 3
            ),
            timeout=120,
            what="the first operator to start some of the burst",
            interval=0.05,
        )
        os.kill(first.proc.pid, signal.SIGKILL)
        first.proc.wait(timeout=30)
        list(creations)
    written = {
        tj["metadata"]["name"]: dict(tj["status"])
        for tj in ky.list("trainingjobs")
        if (tj.get("status") or {}).get("jobName")
    }
    assert len(written) > 0, "the first operator wrote no status before it was killed"

    killed_at = time.monotonic()
    operator(artifacts_env(data_dir))
    wait_for(
        lambda: all(has_job(n) for n in names),
        timeout=180,
        what=f"all {burst} TrainingJobs to have a Job after the restart",
    )
    recovery = time.monotonic() - killed_at
    jobs = jobs_by_trainingjob(k8s, namespace)
    duplicates = {name: [j.metadata.name for j in js] for name, js in jobs.items() if len(js) > 1}
    assert not duplicates, f"TrainingJobs with more than one Job: {duplicates}"
    assert sorted(jobs) == sorted(names)
    by_name = {tj["metadata"]["name"]: tj for tj in ky.list("trainingjobs")}
    for name in names:
        tj = by_name[name]
        (job,) = jobs[name]
        assert tj["status"]["jobName"] == job.metadata.name
        assert [o.uid for o in job.metadata.owner_references] == [tj["metadata"]["uid"]]
    for name, before in written.items():
        after = by_name[name]["status"]
        for key in ("jobName", "run", "datasetVersion", "startTime"):
            if before.get(key) is not None:
                assert after.get(key) == before[key], f"{name}: status.{key} lost or changed"
    print(
        f"operator SIGKILLed with {len(written)} of {burst} TrainingJobs started; all had "
        f"their Job {recovery:.1f}s later, one each"
    )


# ------------------------------------------------------------ the API server restarted


def test_api_server_restarted_on_the_same_data_the_operator_resumes_expired_watches(
    k8s: Any,
    cluster: Any,
    namespace: str,
    crds_installed: None,
    operator: Any,
    data_dir: Path,
) -> None:
    from kubernetes import client

    from kyklos.sandbox.restart import request_restart

    ky = Kyklos(k8s, namespace)
    running = operator({**artifacts_env(data_dir), "KYKLOS_LOG_LEVEL": "debug"})
    ready_dataset(ky, data_dir)
    ky.create("trainingjobs", trainingjob("before"))
    ky.wait_status("trainingjobs", "before", lambda s: s.get("jobName"), timeout=60, what="a Job")
    # Other writes after the operator's last TrainingJob event: the restarted API server's
    # watch cache begins after the resourceVersion the operator resumes from.
    core = client.CoreV1Api(k8s)
    for i in range(20):
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"churn-{i}"}})
    log_before = len(running.log())

    result = request_restart(cluster.data_dir, "kube-apiserver", kill_signal="KILL")
    assert result.ok, result.message
    restarted = time.monotonic()
    ky.create("trainingjobs", trainingjob("after"))
    ky.wait_status(
        "trainingjobs",
        "after",
        lambda s: s.get("jobName"),
        timeout=120,
        what="the TrainingJob created after the API server restart to get its Job",
    )
    recovery = time.monotonic() - restarted
    # The same process recovered: no restart, still live.
    assert alive(running)
    assert len(running.log()) > log_before
    resumed = running.log()[log_before:]
    assert "Restarting the watch-stream for trainingjobs" in resumed, (
        "no watch of TrainingJobs was restarted after 410 Gone; operator log since the "
        f"restart:\n{resumed[-3000:]}"
    )
    # An edit after the restart still reaches the operator through the resumed watch.
    ky.create("trainingjobs", trainingjob("later"))
    ky.wait_status("trainingjobs", "later", lambda s: s.get("jobName"), timeout=60, what="a Job")
    jobs = jobs_by_trainingjob(k8s, namespace)
    assert {name: len(js) for name, js in jobs.items()} == {"before": 1, "after": 1, "later": 1}
    print(
        f"kube-apiserver down {result.down_seconds:.1f}s; a new TrainingJob had its Job "
        f"{recovery:.1f}s after it was ready again"
    )


# ------------------------------------------------------------ 429 and 503 for a while


def proxied_kubeconfig(credentials: Any, proxy_url: str, path: Path) -> Path:
    """The ServiceAccount's kubeconfig, pointed at the proxy (plain HTTP on loopback)."""
    config = yaml.safe_load(credentials.kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"] = {"server": proxy_url}
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def test_api_server_answering_429_and_503_for_a_while_is_retried_never_a_crash(
    k8s: Any, namespace: str, crds_installed: None, operator: Any, data_dir: Path
) -> None:
    from kyklos.sandbox.faultproxy import FaultProxy

    ky = Kyklos(k8s, namespace)
    ca = k8s.configuration.ssl_ca_cert
    if not ca:  # the sandbox's kubeconfig embeds its CA; the client writes it to a file
        pytest.fail("the sandbox kubeconfig has no CA file")
    proxy = FaultProxy(k8s.configuration.host, ca)
    url = proxy.start()
    try:
        account = operator.as_service_account(ALL_RULES)
        kubeconfig = proxied_kubeconfig(account, url, data_dir / "proxied.kubeconfig")
        running = operator(artifacts_env(data_dir), kubeconfig=kubeconfig)
        ready_dataset(ky, data_dir)
        ky.create("trainingjobs", trainingjob("before"))
        ky.wait_status(
            "trainingjobs", "before", lambda s: s.get("jobName"), timeout=60, what="a Job"
        )
        window = 15.0
        proxy.fail(window, statuses=(429, 503))
        started = time.monotonic()
        ky.create("trainingjobs", trainingjob("during"))  # admin, not through the proxy
        while time.monotonic() - started < window:
            assert running.proc.poll() is None, "the operator exited while the API failed"
            time.sleep(1)
        ended = time.monotonic()
        ky.wait_status(
            "trainingjobs",
            "during",
            lambda s: s.get("jobName"),
            timeout=150,
            what="the TrainingJob created during the errors to get its Job afterwards",
        )
        recovery = time.monotonic() - ended
        injected = dict(proxy.counts.injected)
        assert injected.get(429) and injected.get(503), f"the operator met no errors: {injected}"
        # Back-off: a client retrying in a tight loop would send thousands in the window.
        assert sum(injected.values()) < 50 * window, f"retried without back-off: {injected}"
        assert alive(running)
        jobs = jobs_by_trainingjob(k8s, namespace)
        assert {name: len(js) for name, js in jobs.items()} == {"before": 1, "during": 1}
        print(
            f"{window:.0f}s of 429/503 ({injected}); the TrainingJob created meanwhile had "
            f"its Job {recovery:.1f}s after the errors stopped"
        )
    finally:
        proxy.stop()
