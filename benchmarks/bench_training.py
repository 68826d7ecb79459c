"""TrainingJob controller benchmark against the sandbox with the real operator (printed, never asserted).

    .venv/bin/python benchmarks/bench_training.py [--latency 200] [--burst 1000] [--quiet 60]

Starts a sandbox whose kubelet policy leaves trainer pods ``pending`` (so 1,000 trainings start no
process; the profile worker of the one Dataset per namespace still runs for real), runs
``kyklos run`` as a ServiceAccount (so the API server's audit log tells its requests apart), and
measures:

- latency from a TrainingJob's create to its Job existing *and* its ``status.phase`` set, over N
  sequential creations (p50 / p99), beside the sandbox's own create+get round trip (ConfigMaps);
- N TrainingJobs created at once (32 in flight): seconds until all have Jobs and until all are
  Running, the operator's API requests per TrainingJob until Running (from the audit log, by
  verb and resource), and the operator's peak RSS (VmHWM);
- quiescence: the operator's write requests in the following 60 s with every TrainingJob settled.

Targets (issue 5): p99 < 250 ms; all Jobs < 30 s; <= 6 requests per TrainingJob; RSS < 250 MB;
0 writes while quiet.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
GROUP, VERSION = "kyklos.io", "v1alpha1"
SYSTEM_NS = "kyklos-bench-system"
SA = "operator"
OPERATOR_USER = f"system:serviceaccount:{SYSTEM_NS}:{SA}"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection"}

POLICY = {
    "nodes": {"cpu": "4000", "memory": "8Ti", "pods": 5000},
    "rules": [
        {"image": "*kyklos*", "action": "process", "entrypoint": ["kyklos"]},
        {"image": "*", "action": "pending"},
    ],
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------------------ cluster set-up


def start_sandbox(workdir: Path) -> tuple[subprocess.Popen[str], Path, Path]:
    """Start ``kyklos sandbox serve``; the process, its kubeconfig and its audit log."""
    kubeconfig, data = workdir / "sandbox.kubeconfig", workdir / "data"
    policy = workdir / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    log = open(workdir / "serve.log", "w")  # noqa: SIM115 - lives as long as the sandbox
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "kyklos.sandbox.cli", "serve"),
            *("--kubeconfig", str(kubeconfig), "--data-dir", str(data)),
            *("--kubelet-policy", str(policy)),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    if not proc.stdout.readline().startswith("kubeconfig: "):
        raise SystemExit(f"the sandbox did not start; see {workdir / 'serve.log'}")
    return proc, kubeconfig, data / "controlplane" / "audit.log"


def install_crds(api: Any) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ext = client.ApiextensionsV1Api(api)
    names = []
    for path in sorted((REPO / "crds").glob("*.yaml")):
        body = yaml.safe_load(path.read_text())
        names.append(body["metadata"]["name"])
        try:
            ext.create_custom_resource_definition(body)
        except ApiException as exc:
            if exc.status != 409:
                raise
    for name in names:
        while not any(
            c.type == "Established" and c.status == "True"
            for c in ext.read_custom_resource_definition(name).status.conditions or []
        ):
            time.sleep(0.2)


def operator_kubeconfig(api: Any, workdir: Path) -> Path:
    """A ServiceAccount bound to cluster-admin, as a token kubeconfig (audit user of its own)."""
    from kubernetes import client

    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespace({"metadata": {"name": SYSTEM_NS}})
    core.create_namespaced_service_account(SYSTEM_NS, {"metadata": {"name": SA}})
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": "kyklos-bench-operator"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": "cluster-admin",
            },
            "subjects": [{"kind": "ServiceAccount", "name": SA, "namespace": SYSTEM_NS}],
        }
    )
    token = core.create_namespaced_service_account_token(
        SA, SYSTEM_NS, {"spec": {"expirationSeconds": 4 * 3600}}
    ).status.token
    conf = api.configuration
    cluster = {
        "server": conf.host,
        "certificate-authority-data": base64.b64encode(
            Path(conf.ssl_ca_cert).read_bytes()
        ).decode(),
    }
    path = workdir / "operator.kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": cluster}],
                "users": [{"name": "u", "user": {"token": token}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "c",
            }
        )
    )
    return path


def start_operator(kubeconfig: Path, workdir: Path) -> subprocess.Popen[bytes]:
    health = f"http://127.0.0.1:{free_port()}/healthz"
    env = {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),  # kopf's own login reads the environment
        "KYKLOS_ARTIFACTS_URI": f"file://{workdir / 'artifacts'}",
        "KYKLOS_LOG_LEVEL": "warning",
    }
    argv = [
        *(sys.executable, "-m", "kyklos", "run", "--kubeconfig", str(kubeconfig)),
        *("--all-namespaces", "--standalone", "--metrics-port", str(free_port())),
        *("--liveness", health),
    ]
    with open(workdir / "operator.log", "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(health, timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the operator did not start; see {workdir / 'operator.log'}")
        time.sleep(0.2)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def make_dataset(api: Any, namespace: str, csv: Path) -> None:
    from kubernetes import client

    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(
        GROUP,
        VERSION,
        namespace,
        "datasets",
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Dataset",
            "metadata": {"name": "data"},
            "spec": {
                "source": {"uri": f"file://{csv}"},
                "schema": {"features": [{"name": "x", "type": "numeric"}]},
            },
        },
    )
    deadline = time.monotonic() + 180
    while (
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, "datasets", "data")
        .get("status", {})
        .get("phase")
        != "Ready"
    ):
        if time.monotonic() > deadline:
            raise SystemExit(f"Dataset {namespace}/data did not become Ready")
        time.sleep(0.2)


def trainingjob(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "datasetRef": {"name": "data"},
            "image": "registry.example/trainer:1",
            "command": ["train"],
            "hyperparameters": {"lr": "0.1"},
        },
    }


# ------------------------------------------------------------------------------ observing


class Watcher:
    """Records, per TrainingJob, when its Job was first seen and when its phase was first set.

    A watch the API server closes (it drops slow watchers under load) is resumed after a
    fresh list; objects first seen in that list are stamped with the list's time.
    """

    def __init__(self, api: Any, namespace: str) -> None:
        from kubernetes import client

        self.namespace = namespace
        self.job_seen: dict[str, float] = {}
        self.phase_seen: dict[str, float] = {}
        self.running_seen: dict[str, float] = {}
        self.changed = threading.Condition()
        self._stop = threading.Event()
        custom, batch = client.CustomObjectsApi(api), client.BatchV1Api(api)

        def list_tj() -> tuple[list[Any], str]:
            out = custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs")
            return out["items"], out["metadata"]["resourceVersion"]

        def list_jobs() -> tuple[list[Any], str]:
            out = batch.list_namespaced_job(namespace)
            return out.items, out.metadata.resource_version

        self._threads = []
        for lister, watched, see in (
            (
                list_tj,
                (custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, "trainingjobs")),
                self._see_tj,
            ),
            (list_jobs, (batch.list_namespaced_job, (namespace,)), self._see_job),
        ):
            _baseline, rv = lister()  # before any creation: a baseline, not a sighting
            thread = threading.Thread(
                target=self._follow, args=(lister, watched, see, rv), daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _follow(self, lister: Any, watched: Any, see: Any, rv: str) -> None:
        from kubernetes import watch

        while not self._stop.is_set():
            try:
                fn, args = watched
                for event in watch.Watch().stream(
                    fn, *args, resource_version=rv, timeout_seconds=3600
                ):
                    if event["type"] in ("ADDED", "MODIFIED"):
                        see(event["object"], time.monotonic())
                    if self._stop.is_set():
                        return
            except Exception as exc:  # closed under load, 410 Gone, or the sandbox stopping
                if self._stop.is_set():
                    return
                print(f"watch of {self.namespace} resumed after: {exc}", file=sys.stderr)
            items, rv = lister()
            now = time.monotonic()
            for item in items:
                see(item, now)

    def _see_tj(self, obj: Any, now: float) -> None:
        name, phase = obj["metadata"]["name"], (obj.get("status") or {}).get("phase")
        with self.changed:
            if phase and name not in self.phase_seen:
                self.phase_seen[name] = now
            if phase == "Running" and name not in self.running_seen:
                self.running_seen[name] = now
            self.changed.notify_all()

    def _see_job(self, obj: Any, now: float) -> None:
        owner = (obj.metadata.labels or {}).get("kyklos.io/trainingjob")
        with self.changed:
            if owner and owner not in self.job_seen:
                self.job_seen[owner] = now
            self.changed.notify_all()

    def wait(self, done: Any, timeout: float) -> bool:
        with self.changed:
            return bool(self.changed.wait_for(done, timeout=timeout))

    def stop(self) -> None:
        self._stop.set()


def audit_requests(
    path: Path, user: str, namespace: str | None, start: float, end: float
) -> Counter[str]:
    """The user's requests received in [start, end] (wall clock), as "verb resource" counts."""
    counts: Counter[str] = Counter()
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("stage") != "ResponseComplete":
                continue
            if event.get("user", {}).get("username") != user:
                continue
            ref = event.get("objectRef") or {}
            if namespace is not None and ref.get("namespace") != namespace:
                continue
            when = datetime.fromisoformat(
                event["requestReceivedTimestamp"].replace("Z", "+00:00")
            ).timestamp()
            if start <= when <= end:
                resource = ref.get("resource", "?") + (
                    f"/{ref['subresource']}" if ref.get("subresource") else ""
                )
                counts[f"{event.get('verb')} {resource}"] += 1
    return counts


# ------------------------------------------------------------------------------ phases


def round_trip_floor(api: Any, namespace: str, count: int) -> list[float]:
    from kubernetes import client

    core = client.CoreV1Api(api)
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        core.create_namespaced_config_map(namespace, {"metadata": {"name": f"rt-{i}"}})
        core.read_namespaced_config_map(f"rt-{i}", namespace)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def latency(api: Any, namespace: str, count: int) -> list[float]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    watcher = Watcher(api, namespace)
    out = []
    for i in range(count):
        name = f"lat-{i}"
        t0 = time.monotonic()
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "trainingjobs", trainingjob(name)
        )
        if not watcher.wait(
            lambda n=name: n in watcher.job_seen and n in watcher.phase_seen, timeout=30
        ):
            raise SystemExit(f"{namespace}/{name}: no Job or no phase within 30 s")
        out.append((max(watcher.job_seen[name], watcher.phase_seen[name]) - t0) * 1000)
    watcher.stop()
    return out


def burst(api: Any, namespace: str, count: int, audit: Path, operator: int) -> dict[str, Any]:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    watcher = Watcher(api, namespace)
    wall0, t0, cpu0 = time.time(), time.monotonic(), cpu_seconds(operator)

    def create(i: int) -> None:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, "trainingjobs", trainingjob(f"b-{i}")
        )

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(create, range(count)))
    created = time.monotonic() - t0
    all_jobs = watcher.wait(lambda: len(watcher.job_seen) >= count, timeout=600)
    jobs_s = max(watcher.job_seen.values()) - t0 if all_jobs else float("nan")
    all_running = watcher.wait(lambda: len(watcher.running_seen) >= count, timeout=900)
    running_s = max(watcher.running_seen.values()) - t0 if all_running else float("nan")
    wall1, cpu = time.time(), cpu_seconds(operator) - cpu0
    watcher.stop()
    requests = audit_requests(audit, OPERATOR_USER, namespace, wall0, wall1)
    return {
        "created_s": created,
        "jobs_s": jobs_s,
        "running_s": running_s,
        "all_jobs": len(watcher.job_seen),
        "all_running": len(watcher.running_seen),
        "requests": requests,
        "cpu_s": cpu,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=int, default=200, help="sequential creations")
    parser.add_argument("--burst", type=int, default=1000, help="TrainingJobs created at once")
    parser.add_argument("--quiet", type=float, default=60.0, help="quiescence window, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args()

    from kubernetes import config

    # Under /var/tmp: worker pods mount their own /tmp, which would hide the Dataset's file.
    workdir = Path(tempfile.mkdtemp(prefix="kyklos-bench-training-", dir="/var/tmp"))
    csv = workdir / "data.csv"
    csv.write_text("x\n" + "\n".join(str(i) for i in range(100)) + "\n")
    sandbox, kubeconfig, audit = start_sandbox(workdir)
    operator: subprocess.Popen[bytes] | None = None
    try:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        install_crds(api)
        from kubernetes import client

        client.CoreV1Api(api).create_namespace({"metadata": {"name": "bench-floor"}})
        floor = round_trip_floor(api, "bench-floor", args.latency)
        operator = start_operator(operator_kubeconfig(api, workdir), workdir)
        for namespace in ("bench-latency", "bench-burst"):
            make_dataset(api, namespace, csv)

        lat = latency(api, "bench-latency", args.latency)
        print(f"TrainingJob controller benchmark ({os.cpu_count()} CPUs), sandbox + real operator")
        print(
            f"create -> Job exists & phase set, {len(lat)} sequential: "
            f"p50 {statistics.median(lat):.1f} ms, p99 {pct(lat, 0.99):.1f} ms (target p99 < 250 ms)"
        )
        print(
            f"  sandbox floor, ConfigMap create+get: p50 {statistics.median(floor):.1f} ms, "
            f"p99 {pct(floor, 0.99):.1f} ms; ratio p50 {statistics.median(lat) / statistics.median(floor):.1f}x, "
            f"p99 {pct(lat, 0.99) / pct(floor, 0.99):.1f}x"
        )

        result = burst(api, "bench-burst", args.burst, audit, operator.pid)
        total = sum(result["requests"].values())
        print(
            f"{args.burst} TrainingJobs at once (created in {result['created_s']:.1f} s): "
            f"all {result['all_jobs']} Jobs after {result['jobs_s']:.1f} s (target < 30 s; "
            f"{result['jobs_s'] - result['created_s']:.1f} s after the last create), "
            f"all {result['all_running']} Running after {result['running_s']:.1f} s"
        )
        print(
            f"  operator API requests until Running: {total} = {total / args.burst:.2f} per "
            "TrainingJob (target <= 6)"
        )
        print(
            f"  operator CPU until all Running: {result['cpu_s']:.1f} s = "
            f"{1000 * result['cpu_s'] / args.burst:.1f} ms per TrainingJob (all its handlers)"
        )
        for key, count in result["requests"].most_common():
            print(f"    {key:40s} {count:6d}  {count / args.burst:.2f}/TJ")

        time.sleep(5)  # let the last watch events drain before the quiet window
        wall0 = time.time()
        time.sleep(args.quiet)
        writes = {
            k: v
            for k, v in audit_requests(audit, OPERATOR_USER, None, wall0, time.time()).items()
            if k.split()[0] in WRITE_VERBS
        }
        print(
            f"quiescence: {sum(writes.values())} operator writes in {args.quiet:.0f} s with "
            f"{args.burst + args.latency} settled TrainingJobs (target 0) {writes or ''}"
        )
        print(f"operator peak RSS (VmHWM): {peak_rss_mib(operator.pid):.0f} MiB (target < 250 MB)")
    finally:
        if operator is not None:
            operator.send_signal(signal.SIGTERM)
            try:
                operator.wait(timeout=30)
            except subprocess.TimeoutExpired:
                operator.kill()
        sandbox.send_signal(signal.SIGTERM)
        try:
            sandbox.wait(timeout=120)
        except subprocess.TimeoutExpired:
            sandbox.kill()
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
