"""One operator holding every kind at scale, and under faults (printed, never asserted).

    nice -n 10 .venv/bin/python benchmarks/bench_scale.py \\
        [--monitors 500] [--fast-monitors 50] [--deployments 100] [--trainingjobs 1000] \\
        [--probes 50] [--drift-window 1500] [--quiet 60] [--no-faults]

On one sandbox, one ``kyklos run`` (as a ServiceAccount, so the audit log tells its requests
apart) holds ``--monitors`` DriftMonitors (``--fast-monitors`` at ``interval: 1m``, the rest at
``10m``), ``--deployments`` ModelDeployments and ``--trainingjobs`` TrainingJobs. Three
Datasets are profiled for real first; then the kubelet policy scripts every pod's outcome
(``succeed`` with the termination message the worker or trainer would have written, ``serve``
for model servers), so the figures measure the operator rather than hundreds of Python
workers on 2 cores. Measured, with the targets of issue 16 printed beside them:

- create -> Job of the TrainingJobs of the burst; of ``--probes`` TrainingJobs created one by
  one while the burst's TrainingJobs run; and of as many once they finished (p50 / p99;
  target p99 <= 1 s), each beside the API server's own create+get round trip (ConfigMaps)
  measured right after them;
- how late drift checks start (the check Job's creation) against the ``nextCheckTime`` the
  monitor announced, per interval (target <= 10 s);
- the operator's RSS (peak and current) and threads (target RSS <= 500 MB);
- API requests per object per minute over ``--quiet`` seconds once the TrainingJobs and
  ModelDeployments settled (audit log), writes by resource (target 0 writes for settled
  objects; the 1m monitors' checks are due work and are shown apart);
- faults: the kube-apiserver SIGKILLed and restarted on the same data (``kyklos sandbox
  restart``); the operator SIGKILLed and a new one started (through the sandbox's fault
  proxy); then 15 s of 429/503 from that proxy: seconds until a new TrainingJob has its Job;
- SIGTERM -> exit of the operator holding all of it (target <= 10 s).

Every wait is bounded; a target not reached in time is printed as such.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_training as bt

from kyklos.api.reports import DriftSummary
from kyklos.sandbox.faultproxy import FaultProxy
from kyklos.sandbox.restart import request_restart

GROUP, VERSION = bt.GROUP, bt.VERSION
NS = "scale"
TRAINER = "registry.bench/trainer:1"
SERVER = "registry.bench/server:1"
NODES = {"cpu": "4000", "memory": "8Ti", "pods": 5000}
#: Phase 1: the Datasets' profile workers run for real.
PROFILE_POLICY = {"nodes": NODES, "rules": [{"image": "*kyklos*", "action": "process"}]}
#: Phase 2: every pod's outcome is scripted (what the worker or trainer would have written).
SCRIPTED_POLICY = {
    "nodes": NODES,
    "rules": [
        {
            "image": "*kyklos*",
            "action": "succeed",
            "terminationMessage": DriftSummary(
                ok=True, drift_share=0.0, drifted=False, features_checked=1, drifted_features=0
            ).to_termination_message(),
        },
        {
            "image": TRAINER,
            "action": "succeed",
            "terminationMessage": '{"accuracy": 0.93, "loss": 0.21}',
        },
        {"image": SERVER, "action": "serve", "readyAfter": 0},
    ],
}
POLICY_ANNOTATION = "sandbox.kyklos.io/policy-sha256"


def now_s() -> float:
    return time.time()


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def bounded_wait(probe: Any, timeout: float, every: float = 1.0) -> float | None:
    """Seconds until ``probe()`` held, or None when ``timeout`` passed first."""
    t0 = time.monotonic()
    while True:
        try:
            if probe():
                return time.monotonic() - t0
        except Exception as exc:  # the API server may be restarting
            print(f"  (probe: {type(exc).__name__})", file=sys.stderr)
        if time.monotonic() - t0 > timeout:
            return None
        time.sleep(every)


def fmt(seconds: float | None, unit: str = "s") -> str:
    return "not reached" if seconds is None else f"{seconds:.1f} {unit}"


# ------------------------------------------------------------------------------ set-up


def start_sandbox(workdir: Path) -> tuple[subprocess.Popen[str], Path, Path, Path]:
    """``kyklos sandbox serve`` with the profile policy; process, kubeconfig, data dir, policy."""
    kubeconfig, data, policy = workdir / "sandbox.kubeconfig", workdir / "data", workdir / "p.yaml"
    policy.write_text(yaml.safe_dump(PROFILE_POLICY))
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
    return proc, kubeconfig, data, policy


def set_policy(api: Any, path: Path, policy: dict[str, Any]) -> None:
    """Swap the node agent's policy and wait until every node reports it loaded."""
    import hashlib

    from kubernetes import client

    data = yaml.safe_dump(policy).encode()
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    digest = hashlib.sha256(data).hexdigest()
    core = client.CoreV1Api(api)

    def loaded() -> bool:
        nodes = core.list_node().items
        return bool(nodes) and all(
            (n.metadata.annotations or {}).get(POLICY_ANNOTATION) == digest for n in nodes
        )

    if bounded_wait(loaded, 60, 0.2) is None:
        raise SystemExit("the node agent did not load the scripted policy within 60 s")


def dataset(name: str, csv: Path) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {
            "source": {"uri": f"file://{csv}", "format": "csv"},
            "schema": {"features": [{"name": "x", "type": "numeric"}]},
        },
    }


def monitor(name: str, interval: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "DriftMonitor",
        "metadata": {"name": name},
        "spec": {
            "reference": {"datasetRef": {"name": "reference"}},
            "current": {"datasetRef": {"name": "current"}},
            "interval": interval,
        },
    }


def deployment(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": f"file:///models/{name}"},
            "runtime": {"image": SERVER},
            # The kubelet policy scripts every Kyklos-image container to exit (the workers),
            # which would end the serving proxy too; the figures are the operator's anyway.
            "observability": {"proxy": False},
        },
    }


def trainingjob(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"datasetRef": {"name": "train"}, "image": TRAINER},
    }


def create_all(api: Any, plural: str, bodies: list[dict[str, Any]], threads: int = 16) -> float:
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(
            pool.map(
                lambda b: custom.create_namespaced_custom_object(GROUP, VERSION, NS, plural, b),
                bodies,
            )
        )
    return time.monotonic() - t0


def listing(api: Any, plural: str) -> list[dict[str, Any]]:
    from kubernetes import client

    items: list[dict[str, Any]] = client.CustomObjectsApi(api).list_namespaced_custom_object(
        GROUP, VERSION, NS, plural
    )["items"]
    return items


# ------------------------------------------------------------------------------ drift timing


class CheckClock:
    """Follows every monitor's announced ``nextCheckTime`` and every check Job's creation.

    A check's lateness is its Job's creationTimestamp minus the last ``nextCheckTime`` its
    monitor announced before it (the first check of a monitor, due at creation, is not
    counted). Both are whole seconds.
    """

    def __init__(self, api: Any, fast: set[str]) -> None:
        self.api = api
        self.fast = fast
        #: Every nextCheckTime each monitor announced (the status moves on to the next one
        #: when a check starts, often before the check Job's own event arrives here).
        self.due: dict[str, set[float]] = {}
        self.late: dict[str, list[float]] = {"1m": [], "10m": []}
        self.seen_jobs: set[str] = set()
        self.measured: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        for target in (self._follow_monitors, self._follow_jobs):
            threading.Thread(target=target, daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _follow_monitors(self) -> None:
        from kubernetes import client, watch

        custom = client.CustomObjectsApi(self.api)
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    NS,
                    "driftmonitors",
                    timeout_seconds=300,
                ):
                    obj = event["object"]
                    nxt = (obj.get("status") or {}).get("nextCheckTime")
                    if nxt:
                        with self._lock:
                            self.due.setdefault(obj["metadata"]["name"], set()).add(ts(nxt))
                    if self._stop.is_set():
                        return
            except Exception as exc:  # closed under load or by a restart; list again
                print(f"  (monitor watch resumed after {type(exc).__name__})", file=sys.stderr)
                time.sleep(1)

    def _follow_jobs(self) -> None:
        from kubernetes import client, watch

        batch = client.BatchV1Api(self.api)
        while not self._stop.is_set():
            try:
                for event in watch.Watch().stream(
                    batch.list_namespaced_job,
                    NS,
                    label_selector="kyklos.io/driftmonitor",
                    timeout_seconds=300,
                ):
                    job = event["object"]
                    if event["type"] != "ADDED" or job.metadata.name in self.seen_jobs:
                        continue
                    self.seen_jobs.add(job.metadata.name)
                    owner = job.metadata.labels["kyklos.io/driftmonitor"]
                    created = job.metadata.creation_timestamp.timestamp()
                    with self._lock:
                        # The last time announced before this Job; none for the first check.
                        # (Whole seconds on both sides: 1 s of slack.)
                        due = max(
                            (d for d in self.due.get(owner, ()) if d <= created + 1), default=None
                        )
                    if due is not None:
                        key = "1m" if owner in self.fast else "10m"
                        self.late[key].append(max(0.0, created - due))
                        self.measured.add(owner)
                    if self._stop.is_set():
                        return
            except Exception as exc:
                print(f"  (job watch resumed after {type(exc).__name__})", file=sys.stderr)
                time.sleep(1)


# ------------------------------------------------------------------------------ phases


def probe_latency(api: Any, count: int, prefix: str) -> list[float]:
    """Sequential TrainingJobs: create -> Job, in ms."""
    from kubernetes import client

    batch = client.BatchV1Api(api)
    custom = client.CustomObjectsApi(api)
    out = []
    for i in range(count):
        name = f"{prefix}-{i}"
        t0 = time.monotonic()
        custom.create_namespaced_custom_object(
            GROUP, VERSION, NS, "trainingjobs", trainingjob(name)
        )
        while not batch.list_namespaced_job(
            NS, label_selector=f"kyklos.io/trainingjob={name}"
        ).items:
            if time.monotonic() - t0 > 60:
                print(f"  {name}: no Job within 60 s", file=sys.stderr)
                break
            time.sleep(0.02)
        out.append((time.monotonic() - t0) * 1000)
    return out


def floor_latency(api: Any, count: int, prefix: str = "floor") -> list[float]:
    from kubernetes import client

    core = client.CoreV1Api(api)
    out = []
    for i in range(count):
        t0 = time.monotonic()
        core.create_namespaced_config_map(NS, {"metadata": {"name": f"{prefix}-{i}"}})
        core.read_namespaced_config_map(f"{prefix}-{i}", NS)
        out.append((time.monotonic() - t0) * 1000)
    return out


def proc_status(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            out[key] = int(value.split()[0]) / 1024
        elif key == "Threads":
            out[key] = int(value)
    return out


def new_tj_gets_job(api: Any, name: str, timeout: float) -> float | None:
    """Create a TrainingJob (retrying while the API is down); seconds until its Job exists."""
    from kubernetes import client

    t0 = time.monotonic()
    created = bounded_wait(
        lambda: client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, NS, "trainingjobs", trainingjob(name)
        ),
        timeout,
        0.5,
    )
    if created is None:
        return None
    got = bounded_wait(
        lambda: (
            client.BatchV1Api(api)
            .list_namespaced_job(NS, label_selector=f"kyklos.io/trainingjob={name}")
            .items
        ),
        timeout,
        0.1,
    )
    return None if got is None else time.monotonic() - t0


def dump_stacks(pid: int, path: Path) -> str:
    """Write every thread's Python stack of ``pid`` to ``path`` (py-spy, when installed)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return "(py-spy not installed: no stacks of the operator that did not exit)"
    done = subprocess.run(
        [spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=60
    )
    path.write_text(done.stdout + done.stderr)
    return f"operator still running 10 s after SIGTERM: its stacks are in {path}"


def proxied_kubeconfig(kubeconfig: Path, proxy_url: str, path: Path) -> Path:
    """The operator's token kubeconfig, pointed at the fault proxy (plain HTTP on loopback)."""
    config = yaml.safe_load(kubeconfig.read_text())
    for entry in config["clusters"]:
        entry["cluster"] = {"server": proxy_url}
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--monitors", type=int, default=500)
    parser.add_argument("--fast-monitors", type=int, default=50, help="of them at interval 1m")
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--trainingjobs", type=int, default=1000)
    parser.add_argument("--probes", type=int, default=50, help="sequential TrainingJobs")
    parser.add_argument(
        "--drift-window",
        type=float,
        default=1500.0,
        help="at most this many seconds after the monitors' creation, check start times are "
        "measured until every monitor's second check started (the 10m ones' included)",
    )
    parser.add_argument("--quiet", type=float, default=60.0, help="settled window, seconds")
    parser.add_argument("--no-faults", action="store_true", help="skip the fault phases")
    parser.add_argument(
        "--proxy-faults",
        action="store_true",
        help="start the replacement operator behind the fault proxy and add 15 s of 429/503",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args()
    fast = min(args.fast_monitors, args.monitors)

    from kubernetes import client, config

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="kyklos-bench-scale-", dir="/var/tmp"))
    workdir.chmod(0o777)
    csv = workdir / "data.csv"
    csv.write_text("x\n" + "\n".join(str(i % 17) for i in range(200)) + "\n")
    sandbox, kubeconfig, data_dir, policy_path = start_sandbox(workdir)
    operator: subprocess.Popen[bytes] | None = None
    lines: list[str] = []
    proxy: FaultProxy | None = None

    def report(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    try:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        bt.install_crds(api)
        client.CoreV1Api(api).create_namespace({"metadata": {"name": NS}})
        operator_kc = bt.operator_kubeconfig(api, workdir)
        operator = bt.start_operator(operator_kc, workdir)
        create_all(api, "datasets", [dataset(n, csv) for n in ("reference", "current", "train")])
        ready = bounded_wait(
            lambda: all(
                (d.get("status") or {}).get("phase") == "Ready" for d in listing(api, "datasets")
            ),
            240,
        )
        if ready is None:
            raise SystemExit("the Datasets did not become Ready within 240 s")
        set_policy(api, policy_path, SCRIPTED_POLICY)
        report(
            f"Scale benchmark ({os.cpu_count()} CPUs, shared), sandbox + one real operator: "
            f"{args.monitors} DriftMonitors ({fast} at 1m), {args.deployments} "
            f"ModelDeployments, {args.trainingjobs} TrainingJobs"
        )

        # Monitors and deployments first: they hold the operator's attention throughout.
        names = [f"m{i:03d}" for i in range(args.monitors)]
        fast_names = set(names[:fast])
        clock = CheckClock(api, fast_names)
        monitors_created = time.monotonic()
        secs = create_all(
            api, "driftmonitors", [monitor(n, "1m" if n in fast_names else "10m") for n in names]
        )
        secs_md = create_all(
            api, "modeldeployments", [deployment(f"md{i:03d}") for i in range(args.deployments)]
        )
        all_status = bounded_wait(
            lambda: all(
                (m.get("status") or {}).get("nextCheckTime") for m in listing(api, "driftmonitors")
            ),
            300,
        )
        report(
            f"created {args.monitors} monitors in {secs:.1f} s, {args.deployments} "
            f"deployments in {secs_md:.1f} s; every monitor scheduled (nextCheckTime) "
            f"{fmt(all_status)} later"
        )
        md_ready = bounded_wait(
            lambda: all(
                (m.get("status") or {}).get("phase") == "Available"
                or any(
                    c.get("type") == "Ready" and c.get("status") == "True"
                    for c in (m.get("status") or {}).get("conditions") or []
                )
                for m in listing(api, "modeldeployments")
            ),
            300,
        )
        report(f"every ModelDeployment Ready {fmt(md_ready)} after that")

        # The TrainingJob burst, with create -> Job per TrainingJob.
        watcher = bt.Watcher(api, NS)
        t0 = time.monotonic()
        created_at: dict[str, float] = {}

        def create_tj(i: int) -> None:
            name = f"b-{i:04d}"
            created_at[name] = time.monotonic()
            client.CustomObjectsApi(api).create_namespaced_custom_object(
                GROUP, VERSION, NS, "trainingjobs", trainingjob(name)
            )

        with ThreadPoolExecutor(32) as pool:
            list(pool.map(create_tj, range(args.trainingjobs)))
        all_jobs = watcher.wait(lambda: len(watcher.job_seen) >= args.trainingjobs, 600)
        burst = [
            (watcher.job_seen[n] - created_at[n]) * 1000
            for n in created_at
            if n in watcher.job_seen
        ]
        # New TrainingJobs one by one while the burst's pods finish and the operator records it.
        busy = probe_latency(api, args.probes, "probe-busy")
        busy_floor = floor_latency(api, args.probes, "floor-busy")
        done = bounded_wait(
            lambda: (
                sum(
                    (t.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                    for t in listing(api, "trainingjobs")
                )
                >= args.trainingjobs
            ),
            600,
            2.0,
        )
        watcher.stop()
        report(
            f"{args.trainingjobs} TrainingJobs at once: "
            + (
                f"all Jobs {max(watcher.job_seen.values()) - t0:.1f} s after the first create"
                if all_jobs
                else f"only {len(watcher.job_seen)} Jobs within 600 s"
            )
            + f", all finished {fmt((time.monotonic() - t0) if done is not None else None)}; "
            f"create -> Job p50 {statistics.median(burst):.0f} ms, p99 {bt.pct(burst, 0.99):.0f} ms"
        )
        b99, bf99 = bt.pct(busy, 0.99), bt.pct(busy_floor, 0.99)
        report(
            f"new TrainingJob while the {args.trainingjobs} run, create -> Job ({args.probes} one "
            f"by one): p50 {statistics.median(busy):.0f} ms, p99 {b99:.0f} ms (target p99 <= "
            f"1000 ms); API floor meanwhile p50 {statistics.median(busy_floor):.0f} ms, p99 "
            f"{bf99:.0f} ms; ratio p50 {statistics.median(busy) / statistics.median(busy_floor):.1f}x"
            f", p99 {b99 / bf99:.1f}x"
        )
        probes = probe_latency(api, args.probes, "probe")
        floor = floor_latency(api, args.probes)
        p99, f99 = bt.pct(probes, 0.99), bt.pct(floor, 0.99)
        report(
            f"new TrainingJob once they finished, create -> Job ({args.probes} one by one): "
            f"p50 {statistics.median(probes):.0f} ms, p99 {p99:.0f} ms (target p99 <= 1000 ms); "
            f"API floor ConfigMap create+get p50 {statistics.median(floor):.0f} ms, p99 "
            f"{f99:.0f} ms; ratio p50 {statistics.median(probes) / statistics.median(floor):.1f}x, "
            f"p99 {p99 / f99:.1f}x"
        )

        # Settled: every TrainingJob (the probes too) finished, deployments Ready; only the
        # monitors' due checks are work.
        settled = bounded_wait(
            lambda: all(
                (t.get("status") or {}).get("phase") in ("Succeeded", "Failed")
                for t in listing(api, "trainingjobs")
            ),
            600,
            2.0,
        )
        if settled is None:
            report(
                "  (not every TrainingJob finished within 600 s; the quiet window is not settled)"
            )
        time.sleep(5)
        wall0 = now_s()
        time.sleep(args.quiet)
        wall1 = now_s()
        requests = bt.audit_requests(
            data_dir / "controlplane" / "audit.log", bt.OPERATOR_USER, None, wall0, wall1
        )
        objects = args.monitors + args.deployments + args.trainingjobs + 2 * args.probes + 3
        minutes = (wall1 - wall0) / 60
        total = sum(requests.values())
        writes = Counter({k: v for k, v in requests.items() if k.split()[0] in bt.WRITE_VERBS})
        due_work = Counter(
            {
                k: v
                for k, v in writes.items()
                if k.split()[1].split("/")[0] in ("driftmonitors", "jobs", "events")
            }
        )
        other_writes = writes - due_work
        report(
            f"settled ({args.quiet:.0f} s, {objects} objects): {total} operator requests = "
            f"{total / objects / minutes:.3f} per object per minute; writes other than the due "
            f"drift checks: {sum(other_writes.values())} (target 0) {dict(other_writes) or ''}; "
            f"drift-check writes (due work of the {fast} 1m monitors): {dict(due_work)}"
        )
        for key, count in requests.most_common(8):
            report(f"    {key:40s} {count:6d}")
        st = proc_status(operator.pid)
        report(
            f"operator RSS {st.get('VmRSS', 0):.0f} MiB, peak {st.get('VmHWM', 0):.0f} MiB "
            f"(target <= 500 MB); threads {st.get('Threads', 0):.0f}; CPU so far "
            f"{bt.cpu_seconds(operator.pid):.0f} s"
        )

        # Drift check start times: wait out the window (the 10m monitors' second checks).
        print(
            "  waiting for every monitor's next check (bounded by --drift-window)", file=sys.stderr
        )
        bounded_wait(
            lambda: (
                clock.measured >= set(names)
                or time.monotonic() - monitors_created > args.drift_window
            ),
            args.drift_window,
            2.0,
        )
        clock.stop()
        report(
            f"checks measured for {len(clock.measured)} of {args.monitors} monitors within "
            f"{time.monotonic() - monitors_created:.0f} s of their creation"
        )
        for key, late in clock.late.items():
            if late:
                report(
                    f"drift checks at {key}: {len(late)} measured, start late p50 "
                    f"{statistics.median(late):.1f} s, p99 {bt.pct(late, 0.99):.1f} s, max "
                    f"{max(late):.1f} s (target <= 10 s)"
                )
            else:
                report(f"drift checks at {key}: none measured within the window")
        st = proc_status(operator.pid)
        report(
            f"operator after the window: RSS {st.get('VmRSS', 0):.0f} MiB, peak "
            f"{st.get('VmHWM', 0):.0f} MiB, threads {st.get('Threads', 0):.0f}"
        )

        if not args.no_faults:
            result = request_restart(data_dir, "kube-apiserver", kill_signal="KILL")
            rec = new_tj_gets_job(api, "after-apiserver", 180)
            report(
                f"fault: kube-apiserver SIGKILLed and restarted on the same data (down "
                f"{result.down_seconds:.1f} s): a new TrainingJob had its Job {fmt(rec)} after "
                f"the API server was ready; operator still the same process: "
                f"{operator.poll() is None}"
            )
            operator.kill()
            operator.wait()
            replacement_kc = operator_kc
            if args.proxy_faults:  # the replacement talks to the API server through the proxy
                proxy = FaultProxy(api.configuration.host, api.configuration.ssl_ca_cert)
                replacement_kc = proxied_kubeconfig(
                    operator_kc, proxy.start(), workdir / "proxied.kubeconfig"
                )
            t_kill = time.monotonic()
            operator = bt.start_operator(replacement_kc, workdir)
            started_s = time.monotonic() - t_kill
            rec = new_tj_gets_job(api, "after-operator-kill", 180)
            report(
                f"fault: operator SIGKILLed, a new one healthy after {started_s:.1f} s; a new "
                f"TrainingJob had its Job {fmt(rec)} after that"
            )
        if not args.no_faults and proxy is not None:
            window = 15.0
            proxy.fail(window, statuses=(429, 503))
            create_all(api, "trainingjobs", [trainingjob("during-errors")], threads=1)
            time.sleep(window)
            rec = bounded_wait(
                lambda: (
                    client.BatchV1Api(api)
                    .list_namespaced_job(NS, label_selector="kyklos.io/trainingjob=during-errors")
                    .items
                ),
                180,
                0.1,
            )
            report(
                f"fault: {window:.0f} s of 429/503 from the API server ({proxy.counts.injected} "
                f"answered to the operator): the TrainingJob created meanwhile had its Job "
                f"{fmt(rec)} after the errors stopped; operator alive: {operator.poll() is None}"
            )

        t_term = time.monotonic()
        operator.send_signal(signal.SIGTERM)
        try:
            try:
                operator.wait(timeout=10)
            except subprocess.TimeoutExpired:
                report(dump_stacks(operator.pid, workdir / "operator-stacks.txt"))
                operator.wait(timeout=50)
            report(
                f"SIGTERM -> exit: {time.monotonic() - t_term:.1f} s with everything held "
                f"(target <= 10 s), exit code {operator.returncode}"
            )
        except subprocess.TimeoutExpired:
            report("SIGTERM -> exit: not within 60 s (target <= 10 s)")
            operator.kill()
        operator.wait()
        report(f"total run {time.monotonic() - started:.0f} s")
    finally:
        if operator is not None and operator.poll() is None:
            operator.kill()
            operator.wait()
        if proxy is not None:
            proxy.stop()
        sandbox.send_signal(signal.SIGTERM)
        try:
            sandbox.wait(timeout=180)
        except subprocess.TimeoutExpired:
            sandbox.kill()
        if args.keep:
            print(f"work dir kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
