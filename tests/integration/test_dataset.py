"""Dataset stories: register data, see it validated, versioned and profiled; re-profile on change.

The real operator runs against the cluster; on the sandbox the node agent's ``process``
kubelet runs the real ``kyklos worker profile`` on small files written here. Those files
live outside /tmp: a worker pod mounts its own emptyDir at /tmp (read-only root
filesystem), which hides the host's /tmp from it as it would in a real pod.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kyklos_testing import Kyklos, wait_for
from urllib3.exceptions import ProtocolError

PROFILE_TIMEOUT = 120.0
#: Longer than the Dataset daemon's idle wake-up (30 s) and several resync periods (10 s).
QUIET_SECONDS = 35.0
REPO = Path(__file__).resolve().parents[2]
FEATURES = [
    {"name": "age", "type": "numeric"},
    {"name": "income", "type": "numeric"},
    {"name": "plan", "type": "categorical"},
]
#: Files the worker pods can read: not under /tmp (see the module docstring).
HOST_BASE = Path(os.environ.get("KYKLOS_TEST_HOST_DIR", "/var/tmp"))

#: Ready reasons of a profile still under way (its pod running, or not starting).
IN_PROGRESS = ("Profiling", "PodUnschedulable", "PodStartFailed")

sandbox_only = pytest.mark.sandbox_only


# ------------------------------------------------------------------------------ helpers


def rows(n: int, *, null_income_every: int = 0, shift: float = 0.0) -> list[dict[str, Any]]:
    """``n`` deterministic rows; every ``null_income_every``-th income is null."""
    out = []
    for i in range(n):
        income: float | None = 1000.0 + 37.5 * (i % 17) + shift
        if null_income_every and i % null_income_every == 0:
            income = None
        out.append({"age": 20 + i % 50, "income": income, "plan": "abc"[i % 3], "churned": i % 2})
    return out


def write_csv(path: Path, data: list[dict[str, Any]], columns: list[str] | None = None) -> bytes:
    columns = columns or list(data[0])
    lines = [",".join(columns)]
    for row in data:
        lines.append(",".join("" if row[c] is None else str(row[c]) for c in columns))
    content = ("\n".join(lines) + "\n").encode()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    tmp.replace(path)  # atomic: a refresh never reads half a file
    return content


def write_jsonl(path: Path, data: list[dict[str, Any]]) -> bytes:
    content = "".join(json.dumps(row) + "\n" for row in data).encode()
    path.write_bytes(content)
    return content


def write_parquet(path: Path, data: list[dict[str, Any]]) -> bytes:
    pq.write_table(pa.Table.from_pylist(data), path)
    return path.read_bytes()


def dataset(name: str, uri: str, **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": uri},
            "schema": {"features": FEATURES, "target": "churned"},
            "validation": {"minRows": 10},
            **spec,
        },
    }


def ready_condition(kyklos: Kyklos, name: str) -> dict[str, Any] | None:
    return kyklos.condition("datasets", name, "Ready")


def wait_finished(kyklos: Kyklos, name: str, timeout: float = PROFILE_TIMEOUT) -> dict[str, Any]:
    """Wait until the Dataset is Ready or Failed for its current generation; its status."""

    def probe() -> dict[str, Any] | None:
        obj = kyklos.get("datasets", name)
        status = obj.get("status") or {}
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
        if (
            ready
            and ready.get("reason") not in IN_PROGRESS
            and ready.get("observedGeneration") == obj["metadata"]["generation"]
        ):
            return dict(status)
        return None

    return wait_for(probe, timeout=timeout, what=f"Dataset {name} to finish profiling")


def events_of(k8s: Any, namespace: str, name: str) -> list[tuple[str, str, str]]:
    from kubernetes import client

    items = (
        client.CoreV1Api(k8s)
        .list_namespaced_event(
            namespace, field_selector=f"involvedObject.kind=Dataset,involvedObject.name={name}"
        )
        .items
    )
    return [(e.type, e.reason, e.message or "") for e in items]


def profile_jobs(k8s: Any, namespace: str, name: str) -> list[Any]:
    from kubernetes import client

    return list(
        client.BatchV1Api(k8s)
        .list_namespaced_job(namespace, label_selector=f"kyklos.io/dataset={name}")
        .items
    )


def version_of(content: bytes) -> tuple[str, str]:
    digest = hashlib.sha256(content).hexdigest()
    return digest[:16], f"sha256:{digest}"


class JobWatcher:
    """Records the names of Jobs created in a namespace while it runs (a background watch)."""

    def __init__(self, k8s: Any, namespace: str) -> None:
        from kubernetes import client, watch

        self.created: list[str] = []
        self._watch = watch.Watch()
        batch = client.BatchV1Api(k8s)
        rv = batch.list_namespaced_job(namespace).metadata.resource_version

        def run() -> None:
            try:
                for event in self._watch.stream(
                    batch.list_namespaced_job, namespace, resource_version=rv, timeout_seconds=300
                ):
                    if event["type"] == "ADDED":
                        self.created.append(event["object"].metadata.name)
            except ProtocolError:
                pass  # stop() closed the stream under the reader

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._watch.stop()


@pytest.fixture
def host_dir() -> Iterator[Path]:
    """A fresh directory the worker pods can read and write (outside /tmp)."""
    path = HOST_BASE / f"kyklos-dataset-{secrets.token_hex(4)}"
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def start_operator(operator: Callable[..., Any], cluster: Any, artifacts_uri: str) -> Any:
    """The real operator with this artifact store."""
    # KUBECONFIG as well as --kubeconfig: kopf's own login reads the environment.
    return operator({"KUBECONFIG": str(cluster.kubeconfig), "KYKLOS_ARTIFACTS_URI": artifacts_uri})


@pytest.fixture
def running_operator(
    cluster: Any, crds_installed: None, operator: Callable[..., Any], host_dir: Path
) -> Any:
    """The real operator with a file:// artifact store under ``host_dir``."""
    return start_operator(operator, cluster, f"file://{host_dir / 'artifacts'}")


@pytest.fixture
def kyklos(k8s: Any, namespace: str, running_operator: Any) -> Iterator[Kyklos]:
    """A client for this namespace's Kyklos resources, with the operator running.

    Afterwards the Datasets are deleted while the operator still runs, so that kopf removes
    its finalizer and the namespace can go.
    """
    kyklos = Kyklos(k8s, namespace)
    yield kyklos
    delete_datasets(kyklos)


def delete_datasets(kyklos: Kyklos) -> None:
    """Delete every Dataset of the namespace and wait until they are gone."""
    for item in kyklos.list("datasets"):
        kyklos.api.delete_namespaced_custom_object(
            "kyklos.io", "v1alpha1", kyklos.namespace, "datasets", item["metadata"]["name"]
        )
    wait_for(lambda: not kyklos.list("datasets"), timeout=60, what="the Datasets to be deleted")


# -------------------------------------------------------------------------------- stories


@sandbox_only
@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_good_data_becomes_ready_with_row_count_version_and_profile(
    kyklos: Kyklos, k8s: Any, namespace: str, host_dir: Path, fmt: str
) -> None:
    path = host_dir / f"train.{fmt}"
    writer = {"csv": write_csv, "parquet": write_parquet, "jsonl": write_jsonl}[fmt]
    content = writer(path, rows(120))
    kyklos.create("datasets", dataset("train", f"file://{path}"))

    status = wait_finished(kyklos, "train")

    assert status["phase"] == "Ready", status
    assert status["rows"] == 120
    version, checksum = version_of(content)
    assert (status["version"], status["versionSource"], status["checksum"]) == (
        version,
        "sha256",
        checksum,
    )
    assert {f["name"]: f["type"] for f in status["features"]} == {
        "age": "numeric",
        "income": "numeric",
        "plan": "categorical",
    }
    age = next(f for f in status["features"] if f["name"] == "age")
    assert (age["min"], age["max"]) == (20.0, 69.0)
    profile_uri = status["profileUri"]
    assert (
        profile_uri
        == f"file://{host_dir}/artifacts/{namespace}/Dataset/train/{version}/profile.json"
    )
    assert Path(profile_uri.removeprefix("file://")).is_file()
    assert Path(status["sampleUri"].removeprefix("file://")).is_file()
    ready = ready_condition(kyklos, "train")
    assert ready is not None and (ready["status"], ready["reason"]) == ("True", "Profiled")
    assert status["observedGeneration"] == 1 and ready["observedGeneration"] == 1
    (job,) = profile_jobs(k8s, namespace, "train")
    assert job.metadata.name == status["jobName"] == "train-profile-1"
    reasons = [reason for _, reason, _ in events_of(k8s, namespace, "train")]
    assert reasons.count("Profiling") == 1 and reasons.count("Profiled") == 1


@sandbox_only
@pytest.mark.parametrize(
    ("case", "reason", "named"),
    [
        ("missing-column", "SchemaMismatch", "plan"),
        ("null-fraction", "ValidationFailed", "income"),
        ("unreadable-uri", "SourceUnreachable", "nowhere.csv"),
    ],
)
def test_bad_data_ends_failed_with_a_reason_naming_the_problem(
    kyklos: Kyklos, k8s: Any, namespace: str, host_dir: Path, case: str, reason: str, named: str
) -> None:
    path = host_dir / "data.csv"
    spec: dict[str, Any] = {}
    if case == "missing-column":
        write_csv(path, rows(50), columns=["age", "income", "churned"])
    elif case == "null-fraction":
        write_csv(path, rows(50, null_income_every=2))  # half the incomes are null
        spec["validation"] = {"minRows": 10, "maxNullFraction": 0.2}
    else:
        path = host_dir / "nowhere.csv"
    kyklos.create("datasets", dataset("bad", f"file://{path}", **spec))

    status = wait_finished(kyklos, "bad")

    assert status["phase"] == "Failed", status
    ready = ready_condition(kyklos, "bad")
    assert ready is not None
    assert (ready["status"], ready["reason"]) == ("False", reason), ready
    assert named in ready["message"]
    if case != "unreadable-uri":
        assert any(named in (f.get("feature") or "") + f["message"] for f in status["failures"])
    warnings = [(r, m) for t, r, m in events_of(k8s, namespace, "bad") if t == "Warning"]
    assert warnings == [(reason, ready["message"])]


@sandbox_only
def test_a_changed_file_yields_a_new_version_and_unchanged_refreshes_write_nothing(
    kyklos: Kyklos, k8s: Any, namespace: str, host_dir: Path
) -> None:
    path = host_dir / "live.csv"
    first = write_csv(path, rows(60))
    kyklos.create("datasets", dataset("live", f"file://{path}", refreshInterval="2s"))
    status = wait_finished(kyklos, "live")
    assert status["phase"] == "Ready" and status["version"] == version_of(first)[0], status

    # Unchanged data: refresh Jobs run, are deleted, and the Dataset is never written.
    watcher = JobWatcher(k8s, namespace)
    try:
        before = kyklos.get("datasets", "live")
        wait_for(
            lambda: len(watcher.created) >= 2,
            timeout=PROFILE_TIMEOUT,
            what="two refresh Jobs of unchanged data",
        )
        assert all(n.startswith("live-profile-1-r") for n in watcher.created), watcher.created
        wait_for(
            lambda: len(profile_jobs(k8s, namespace, "live")) == 1,
            timeout=30,
            what="the finished refresh Job to be deleted",
        )
        after = kyklos.get("datasets", "live")
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    finally:
        watcher.stop()

    second = write_csv(path, rows(80, shift=500.0))
    new_version = version_of(second)[0]
    wait_for(
        lambda: kyklos.status("datasets", "live").get("version") == new_version,
        timeout=PROFILE_TIMEOUT,
        what="the new version to be recorded",
    )
    status = kyklos.status("datasets", "live")
    assert status["rows"] == 80 and status["phase"] == "Ready"
    new_version_events = [m for _, r, m in events_of(k8s, namespace, "live") if r == "NewVersion"]
    assert new_version_events == [f"version {version_of(first)[0]} -> {new_version} (80 rows)"]
    # Old profile Jobs do not pile up: the superseded one is deleted.
    wait_for(
        lambda: (
            [j.metadata.name for j in profile_jobs(k8s, namespace, "live")] == [status["jobName"]]
        ),
        timeout=30,
        what="only the Job the status describes to remain",
    )


@sandbox_only
def test_a_settled_dataset_sees_no_writes(
    kyklos: Kyklos, namespace: str, host_dir: Path, audit: Any
) -> None:
    """Once Ready (no refreshInterval), resyncs and daemon wake-ups write nothing at all."""
    path = host_dir / "quiet.csv"
    write_csv(path, rows(30))
    kyklos.create("datasets", dataset("quiet", f"file://{path}"))
    assert wait_finished(kyklos, "quiet")["phase"] == "Ready"
    time.sleep(2)  # let the last status write's watch events settle
    start = datetime.now(UTC)
    time.sleep(QUIET_SECONDS)
    end = datetime.now(UTC)

    writes = [
        (e["verb"], e["objectRef"].get("resource"), e["objectRef"].get("name"))
        for e in audit.events()
        if (e.get("objectRef") or {}).get("namespace") == namespace
        and e["verb"] in ("create", "update", "patch", "delete", "deletecollection")
        and start
        <= datetime.fromisoformat(e["requestReceivedTimestamp"].replace("Z", "+00:00"))
        <= end
    ]
    assert writes == []


@sandbox_only
def test_a_spec_change_profiles_again_and_replaces_the_old_job(
    kyklos: Kyklos, k8s: Any, namespace: str, host_dir: Path
) -> None:
    good = host_dir / "good.csv"
    write_csv(good, rows(30))
    kyklos.create("datasets", dataset("edit", f"file://{good}", validation={"minRows": 100}))
    assert wait_finished(kyklos, "edit")["phase"] == "Failed"
    assert ready_condition(kyklos, "edit")["reason"] == "ValidationFailed"  # type: ignore[index]

    kyklos.patch("datasets", "edit", {"spec": {"validation": {"minRows": 10}}})
    status = wait_finished(kyklos, "edit")

    assert status["phase"] == "Ready" and status["observedGeneration"] == 2
    assert status["jobName"] == "edit-profile-2"
    wait_for(
        lambda: (
            [j.metadata.name for j in profile_jobs(k8s, namespace, "edit")] == ["edit-profile-2"]
        ),
        timeout=30,
        what="the generation-1 Job to be deleted",
    )


@sandbox_only
def test_storage_credentials_reach_the_worker_only_as_a_secret_reference(
    kyklos: Kyklos, k8s: Any, namespace: str, host_dir: Path, running_operator: Any
) -> None:
    from kubernetes import client

    secret_value = f"never-show-{secrets.token_hex(8)}"
    client.CoreV1Api(k8s).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "store-creds"},
            "stringData": {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": secret_value},
        },
    )
    path = host_dir / "creds.csv"
    write_csv(path, rows(20))
    body = dataset("creds", f"file://{path}")
    body["spec"]["source"]["secretRef"] = {"name": "store-creds"}
    kyklos.create("datasets", body)

    status = wait_finished(kyklos, "creds")

    assert status["phase"] == "Ready", status
    (job,) = profile_jobs(k8s, namespace, "creds")
    container = job.spec.template.spec.containers[0]
    assert [e.secret_ref.name for e in container.env_from] == ["store-creds"]
    assert secret_value not in json.dumps(k8s.sanitize_for_serialization(job))
    assert secret_value not in json.dumps(kyklos.get("datasets", "creds"))
    assert all(secret_value not in m for _, _, m in events_of(k8s, namespace, "creds"))
    assert secret_value not in running_operator.log()


def wait_ready_reason(kyklos: Kyklos, name: str, reason: str) -> dict[str, Any]:
    """Wait until the Dataset's Ready condition has ``reason``; that condition."""
    return wait_for(
        lambda: (c := ready_condition(kyklos, name)) and c["reason"] == reason and c,
        timeout=60,
        what=f"Dataset {name} Ready reason {reason}",
    )


@sandbox_only
def test_a_profile_pod_missing_its_secret_says_so_once_then_profiles_when_it_appears(
    kyklos: Kyklos, k8s: Any, namespace: str, host_dir: Path
) -> None:
    from kubernetes import client

    path = host_dir / "locked.csv"
    write_csv(path, rows(20))
    body = dataset("locked", f"file://{path}")
    body["spec"]["source"]["secretRef"] = {"name": "late-creds"}
    kyklos.create("datasets", body)

    # The node agent, like a kubelet, keeps the container waiting: CreateContainerConfigError.
    stuck = wait_ready_reason(kyklos, "locked", "PodStartFailed")
    assert stuck["status"] == "False"
    (pod,) = (
        client.CoreV1Api(k8s)
        .list_namespaced_pod(namespace, label_selector="kyklos.io/dataset=locked")
        .items
    )
    assert stuck["message"] == (
        f"profile Job locked-profile-1: pod {pod.metadata.name} container worker cannot start: "
        'CreateContainerConfigError: secret "late-creds" not found'
    )
    # Its Job exists: Profiling (never Pending again) while the pod waits.
    assert kyklos.status("datasets", "locked")["phase"] == "Profiling"
    # One Warning Event, with the condition's reason and message (posted after the write).
    wait_for(
        lambda: (
            ("Warning", "PodStartFailed", stuck["message"]) in events_of(k8s, namespace, "locked")
        ),
        timeout=30,
        what="the PodStartFailed Warning Event",
    )

    client.CoreV1Api(k8s).create_namespaced_secret(
        namespace, {"metadata": {"name": "late-creds"}, "stringData": {"TOKEN": "t"}}
    )
    status = wait_finished(kyklos, "locked")

    assert status["phase"] == "Ready", status
    reasons = [r for _, r, _ in events_of(k8s, namespace, "locked")]
    assert reasons.count("PodStartFailed") == 1, reasons  # not one per pod update or resync
    assert reasons.count("Profiled") == 1, reasons


@sandbox_only
def test_an_unschedulable_profile_says_why_and_ends_failed_at_the_worker_deadline(
    k8s: Any,
    cluster: Any,
    namespace: str,
    crds_installed: None,
    operator: Callable[..., Any],
    host_dir: Path,
) -> None:
    """Worker pods asking for more CPU than any node has: the real scheduler cannot place them."""
    operator(
        {
            "KUBECONFIG": str(cluster.kubeconfig),
            "KYKLOS_ARTIFACTS_URI": f"file://{host_dir / 'artifacts'}",
            "KYKLOS_WORKER_RESOURCES": '{"requests": {"cpu": "1000"}}',
            "KYKLOS_WORKER_DEADLINE": "20s",
        }
    )
    kyklos = Kyklos(k8s, namespace)
    path = host_dir / "big.csv"
    write_csv(path, rows(20))
    kyklos.create("datasets", dataset("big", f"file://{path}"))

    stuck = wait_ready_reason(kyklos, "big", "PodUnschedulable")
    assert stuck["message"].startswith("profile Job big-profile-1: pod big-profile-1-")
    assert "cannot be scheduled: 0/" in stuck["message"]
    assert "Insufficient cpu" in stuck["message"]
    (job,) = profile_jobs(k8s, namespace, "big")
    assert job.spec.active_deadline_seconds == 20

    status = wait_finished(kyklos, "big", timeout=90)

    assert status["phase"] == "Failed", status
    ready = ready_condition(kyklos, "big")
    assert ready is not None and (ready["status"], ready["reason"]) == ("False", "DeadlineExceeded")
    assert "did not finish within its deadline of 20s" in ready["message"]
    assert "before that: profile Job big-profile-1: pod big-profile-1-" in ready["message"]
    warnings = [r for t, r, _ in events_of(k8s, namespace, "big") if t == "Warning"]
    assert sorted(warnings) == ["DeadlineExceeded", "PodUnschedulable"]
    delete_datasets(kyklos)


def test_deleting_a_dataset_deletes_its_profile_job(
    kyklos: Kyklos, k8s: Any, namespace: str, host_dir: Path
) -> None:
    from kubernetes import client

    kyklos.create("datasets", dataset("gone", f"file://{host_dir}/absent.csv"))
    job = wait_for(
        lambda: next(iter(profile_jobs(k8s, namespace, "gone")), None),
        timeout=60,
        what="the profile Job",
    )
    (owner,) = job.metadata.owner_references
    assert (owner.kind, owner.name, owner.controller) == ("Dataset", "gone", True)

    client.CustomObjectsApi(k8s).delete_namespaced_custom_object(
        "kyklos.io", "v1alpha1", namespace, "datasets", "gone"
    )

    # The garbage collector (not the operator) removes the Job once its owner is gone.
    wait_for(
        lambda: not profile_jobs(k8s, namespace, "gone"),
        timeout=60,
        what="the garbage collector to delete the profile Job",
    )


@sandbox_only
def test_pvc_source_is_mounted_into_the_worker(
    k8s: Any,
    cluster: Any,
    namespace: str,
    crds_installed: None,
    operator: Callable[..., Any],
    host_dir: Path,
) -> None:
    """The data on a claim, the artifact store on the per-namespace artifact claim."""
    from kubernetes import client

    core = client.CoreV1Api(k8s)
    content = write_csv(host_dir / "data.csv", rows(40))
    fill_claim(k8s, namespace, "data", {"train/data.csv": content})
    start_operator(operator, cluster, "pvc://kyklos-artifacts/store")
    kyklos = Kyklos(k8s, namespace)
    kyklos.create("datasets", dataset("onclaim", "pvc://data/train/data.csv"))

    status = wait_finished(kyklos, "onclaim")

    assert status["phase"] == "Ready", status
    assert status["rows"] == 40 and status["version"] == version_of(content)[0]
    assert status["profileUri"] == (
        f"pvc://kyklos-artifacts/store/{namespace}/Dataset/onclaim/{status['version']}/profile.json"
    )
    artifacts = core.read_namespaced_persistent_volume_claim("kyklos-artifacts", namespace)
    store = core.read_persistent_volume(artifacts.spec.volume_name)
    store_dir = Path((store.spec.host_path or store.spec.local).path)
    assert (store_dir / "store" / namespace / "Dataset" / "onclaim" / status["version"]).is_dir()
    delete_datasets(kyklos)


def fill_claim(k8s: Any, namespace: str, claim: str, files: dict[str, bytes]) -> Path:
    """Create ``claim``, wait until it is bound, write ``files`` into its volume's directory."""
    from kubernetes import client

    core = client.CoreV1Api(k8s)
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": claim},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    volume = wait_for(
        lambda: core.read_namespaced_persistent_volume_claim(claim, namespace).spec.volume_name,
        timeout=60,
        what=f"claim {claim} to be bound",
    )
    pv = core.read_persistent_volume(volume)
    directory = Path((pv.spec.host_path or pv.spec.local).path)
    for rel, content in files.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_bytes(content)
    return directory


@sandbox_only
def test_kubectl_apply_get_and_wait_with_the_example(
    k8s: Any, cluster: Any, namespace: str, crds_installed: None, operator: Callable[..., Any]
) -> None:
    """The walkthrough: the example's data on its claim, `kubectl apply`, `wait`, `get dset`."""
    data = REPO / "examples" / "data"
    fill_claim(
        k8s, namespace, "kyklos-examples", {p.name: p.read_bytes() for p in data.glob("*.csv")}
    )
    start_operator(operator, cluster, "pvc://kyklos-artifacts")

    def kubectl(*args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            ["kubectl", "--kubeconfig", str(cluster.kubeconfig), "-n", namespace, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    applied = kubectl("apply", "-f", str(REPO / "examples" / "dataset.yaml"))
    assert "dataset.kyklos.io/churn-reference created" in applied
    waited = kubectl(
        "wait",
        "--for=condition=Ready",
        "dataset/churn-reference",
        "dataset/churn-current",
        "--timeout=180s",
        timeout=200,
    )
    assert waited.count("condition met") == 2, waited
    lines = kubectl("get", "dset").strip().splitlines()
    assert lines[0].split()[:4] == ["NAME", "PHASE", "VERSION", "ROWS"]
    shown = {line.split()[0]: line.split()[1:4] for line in lines[1:]}
    for name in ("churn-reference", "churn-current"):
        content = (data / f"{name}.csv").read_bytes()
        data_rows = content.count(b"\n") - 1  # minus the header
        assert shown[name] == ["Ready", version_of(content)[0], str(data_rows)], shown
    assert "churn-reference" in kubectl("get", "ml")
    delete_datasets(Kyklos(k8s, namespace))
