"""Sandbox benchmarks (printed, never asserted).

    .venv/bin/python benchmarks/bench_sandbox.py [--starts 3] [--objects 10000] [--cold-build]

Measures, on this machine:
- cold build time of the control plane (from the cache's build stamp / log, or with
  ``--cold-build`` a fresh build into a temporary cache with an empty GOCACHE: ~15 minutes);
- warm start to Ready (``kyklos sandbox serve`` until it prints its kubeconfig), median of N;
- create+get round trip (p50/p99) and writes per second through the real API server, using
  aiohttp like kopf does (sequential round trips; writes with 32 in flight);
- pod start-to-Running latency through the node agent (bare pods, default policy);
- resident memory (RSS) of the whole sandbox process tree, idle and with 10,000 ConfigMaps.

``--real-node`` instead compares the process node agent with the real node (``serve --node
real``: kubelet, containerd, runc, kube-proxy, CoreDNS; needs root) side by side in one run:
start to Ready, pod create -> Running p50/p99 (the same bare pods, image pause, on each),
idle RSS of the whole tree, and the ratios real/agent; then the real node's start with its
containerd store rebuilt (the first start) and kept (the later ones), and ``kyklos image web
--load`` on each (an import, then found in the kept store).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from kyklos.sandbox.build import STAMP, pinned_binaries
from kyklos.sandbox.watchdog import descendants

SERVE = [sys.executable, "-m", "kyklos.sandbox.cli", "serve"]


def start_sandbox(
    workdir: Path, nodes: int = 2, node: str = "agent"
) -> tuple[subprocess.Popen[str], Path, float]:
    """Start a sandbox; return the process, its kubeconfig and the seconds to Ready."""
    kubeconfig = workdir / "bench.kubeconfig"
    log = open(workdir / "serve.log", "a")  # noqa: SIM115 - lives as long as the sandbox
    started = time.monotonic()
    proc = subprocess.Popen(
        [*SERVE, "--nodes", str(nodes), "--node", node, "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=workdir,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("kubeconfig: "):
        raise SystemExit(f"sandbox failed to start; see {workdir / 'serve.log'}")
    return proc, kubeconfig, time.monotonic() - started


def stop_sandbox(proc: subprocess.Popen[str]) -> float:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    return time.monotonic() - started


def tree_rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MiB."""
    total = 0
    for p in [pid, *(q for q, _ in descendants(pid))]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def rss_by_component(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for p, _ in descendants(pid):
        try:
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        name = Path(cmd[0].decode()).name
        if name.startswith("python"):
            name = next((c.decode() for c in cmd if c.startswith(b"kyklos.")), "python")
        rss = next(
            int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")
        )
        out[name] = out.get(name, 0.0) + rss / 1024
    return out


class Api:
    """Minimal aiohttp client for the sandbox's admin kubeconfig (client certificate)."""

    def __init__(self, kubeconfig: Path, workdir: Path) -> None:
        config = yaml.safe_load(kubeconfig.read_text())
        cluster = config["clusters"][0]["cluster"]
        user = config["users"][0]["user"]
        self.server = cluster["server"]
        import base64

        ca = workdir / "ca.crt"
        cert = workdir / "client.crt"
        key = workdir / "client.key"
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        cert.write_bytes(base64.b64decode(user["client-certificate-data"]))
        key.write_bytes(base64.b64decode(user["client-key-data"]))
        self.ssl = ssl.create_default_context(cafile=str(ca))
        self.ssl.load_cert_chain(str(cert), str(key))
        self.session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Api:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=self.ssl, limit=64))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        assert self.session is not None
        async with self.session.request(method, self.server + path, json=body) as resp:
            data = await resp.json()
            if resp.status >= 400:
                raise RuntimeError(f"{method} {path}: {resp.status} {data.get('message')}")
            return data


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_api(api: Api, namespace: str, round_trips: int, writes: int) -> dict[str, float]:
    base = f"/api/v1/namespaces/{namespace}/configmaps"
    latencies = []
    for i in range(round_trips):
        t0 = time.perf_counter()
        await api.request("POST", base, {"metadata": {"name": f"rt-{i}"}, "data": {"k": "v"}})
        await api.request("GET", f"{base}/rt-{i}")
        latencies.append((time.perf_counter() - t0) * 1000)
    sem = asyncio.Semaphore(32)

    async def create(i: int) -> None:
        async with sem:
            await api.request("POST", base, {"metadata": {"name": f"w-{i}"}, "data": {"k": "v"}})

    t0 = time.perf_counter()
    await asyncio.gather(*(create(i) for i in range(writes)))
    elapsed = time.perf_counter() - t0
    return {
        "rt_p50_ms": statistics.median(latencies),
        "rt_p99_ms": pct(latencies, 0.99),
        "writes_per_s": writes / elapsed,
    }


async def bench_pods(
    api: Api, namespace: str, count: int, image: str = "nginx:1"
) -> dict[str, float]:
    base = f"/api/v1/namespaces/{namespace}/pods"
    created: dict[str, float] = {}
    running: dict[str, float] = {}
    for i in range(count):
        name = f"p-{i}"
        created[name] = time.monotonic()
        await api.request(
            "POST",
            base,
            {
                "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": image, "imagePullPolicy": "Never"}]},
            },
        )
    deadline = time.monotonic() + 120
    while len(running) < count and time.monotonic() < deadline:
        pods = await api.request("GET", base)
        now = time.monotonic()
        for pod in pods["items"]:
            name = pod["metadata"]["name"]
            if pod.get("status", {}).get("phase") == "Running" and name not in running:
                running[name] = now
        await asyncio.sleep(0.05)
    latencies = [running[n] - created[n] for n in running]
    return {
        "pods_running": float(len(running)),
        "pod_p50_s": statistics.median(latencies) if latencies else float("nan"),
        "pod_p99_s": pct(latencies, 0.99) if latencies else float("nan"),
        "pod_max_s": max(latencies) if latencies else float("nan"),
    }


async def fill(api: Api, namespace: str, count: int) -> float:
    sem = asyncio.Semaphore(32)
    payload = {"k": "x" * 100}

    async def create(i: int) -> None:
        async with sem:
            await api.request(
                "POST",
                f"/api/v1/namespaces/{namespace}/configmaps",
                {"metadata": {"name": f"fill-{i}"}, "data": payload},
            )

    t0 = time.perf_counter()
    await asyncio.gather(*(create(i) for i in range(count)))
    return time.perf_counter() - t0


def cold_build_from_stamp() -> str:
    binaries = pinned_binaries()
    try:
        stamp = json.loads((binaries.directory / STAMP).read_text())
    except (OSError, ValueError):
        return "unknown (no build stamp; run with --cold-build)"
    return f"{stamp.get('seconds', '?')} s for the last build recorded in the cache (warm or cold)"


def cold_build(workdir: Path) -> float:
    env = {
        **os.environ,
        "KYKLOS_CACHE_DIR": str(workdir / "cache"),
        "GOCACHE": str(workdir / "gocache"),
    }
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "kyklos.sandbox.cli", "build"], env=env, check=True)
    return time.monotonic() - t0


async def main_async(args: argparse.Namespace, workdir: Path) -> None:
    if args.cold_build:
        seconds = cold_build(workdir)
        print(f"cold build (empty GOCACHE, module cache as is): {seconds / 60:.1f} min")
        shutil.rmtree(workdir / "gocache", ignore_errors=True)
    else:
        print(f"build: {cold_build_from_stamp()}")
    starts = []
    for _ in range(args.starts - 1):
        proc, _, seconds = start_sandbox(workdir)
        starts.append(seconds)
        stop_sandbox(proc)
    proc, kubeconfig, seconds = start_sandbox(workdir)
    starts.append(seconds)
    print(f"warm start to Ready (2 nodes): median {statistics.median(starts):.1f} s of {starts}")
    try:
        await asyncio.sleep(10)
        print(f"RSS idle: {tree_rss_mib(proc.pid):.0f} MiB total")
        for name, mib in sorted(rss_by_component(proc.pid).items()):
            print(f"  {name}: {mib:.0f} MiB")
        async with Api(kubeconfig, workdir) as api:
            for ns in ("bench-api", "bench-pods", "bench-fill"):
                await api.request("POST", "/api/v1/namespaces", {"metadata": {"name": ns}})
            await asyncio.sleep(2)  # the default ServiceAccount for the pods
            api_stats = await bench_api(api, "bench-api", args.round_trips, args.writes)
            print(
                f"create+get round trip: p50 {api_stats['rt_p50_ms']:.1f} ms, "
                f"p99 {api_stats['rt_p99_ms']:.1f} ms ({args.round_trips} sequential)"
            )
            print(f"writes/s (ConfigMap create, 32 in flight): {api_stats['writes_per_s']:.0f}")
            pods = await bench_pods(api, "bench-pods", args.pods)
            print(
                f"pod create to Running through the node agent: p50 {pods['pod_p50_s']:.2f} s, "
                f"max {pods['pod_max_s']:.2f} s ({pods['pods_running']:.0f}/{args.pods} pods)"
            )
            seconds = await fill(api, "bench-fill", args.objects)
            print(f"created {args.objects} ConfigMaps in {seconds:.1f} s")
            await asyncio.sleep(5)
            print(
                f"RSS with {args.objects} more ConfigMaps: {tree_rss_mib(proc.pid):.0f} MiB total"
            )
            for name, mib in sorted(rss_by_component(proc.pid).items()):
                print(f"  {name}: {mib:.0f} MiB")
    finally:
        print(f"stop: {stop_sandbox(proc):.1f} s")


async def compare_nodes(args: argparse.Namespace, workdir: Path) -> None:
    """The process node agent and the real node, measured side by side in this run."""
    from kyklos.sandbox.realnode.config import PAUSE_IMAGE

    results: dict[str, dict[str, float]] = {}
    loads: list[float] = []
    real_starts: list[float] = []
    for node in ("agent", "real"):
        if node == "real":
            forget_real_node_store()
        starts = []
        for _ in range(args.starts - 1):
            proc, _, seconds = start_sandbox(workdir, nodes=1, node=node)
            starts.append(seconds)
            if node == "real":
                loads.append(load_web_image())
            stop_sandbox(proc)
        proc, kubeconfig, seconds = start_sandbox(workdir, nodes=1, node=node)
        starts.append(seconds)
        try:
            if node == "real":
                loads.append(load_web_image())
                real_starts = starts
            await asyncio.sleep(10)
            row = {"start_s": statistics.median(starts), "rss_mib": tree_rss_mib(proc.pid)}
            async with Api(kubeconfig, workdir) as api:
                await api.request("POST", "/api/v1/namespaces", {"metadata": {"name": "bench"}})
                await asyncio.sleep(2)
                row.update(await bench_pods(api, "bench", args.pods, image=PAUSE_IMAGE))
            results[node] = row
        finally:
            stop_sandbox(proc)
    agent, real = results["agent"], results["real"]
    print(f"{'':34} {'agent':>9} {'real':>9} {'real/agent':>10}")
    for key, label in (
        ("start_s", "start to Ready (s, median)"),
        ("pod_p50_s", f"pod create->Running p50 (s, {args.pods})"),
        ("pod_p99_s", "pod create->Running p99 (s)"),
        ("rss_mib", "idle RSS of the tree (MiB)"),
    ):
        print(f"{label:34} {agent[key]:9.2f} {real[key]:9.2f} {real[key] / agent[key]:10.2f}")
    print(f"pods Running: agent {agent['pods_running']:.0f}, real {real['pods_running']:.0f}")
    # The real node's containerd store: rebuilt at the first start (marked in use first),
    # kept at the later ones; the web image's load imports it once, then finds it there.
    print(
        f"real node start, store rebuilt: {real_starts[0]:.2f} s; store kept: "
        + (f"{statistics.median(real_starts[1:]):.2f} s (median)" if real_starts[1:] else "-")
    )
    print(
        f"kyklos image web --load, store rebuilt: {loads[0]:.2f} s; store kept: "
        + (f"{statistics.median(loads[1:]):.2f} s (median)" if loads[1:] else "-")
    )


def forget_real_node_store() -> None:
    """Mark the real node's kept containerd store in use, so its next start rebuilds it."""
    from kyklos.sandbox.realnode.build import pinned_node
    from kyklos.sandbox.realnode.store import STORE_STAMP, StoreStamp, store_dir, store_inputs

    binaries = pinned_node()
    stamp = store_dir(binaries) / STORE_STAMP
    if stamp.exists():
        stamp.write_text(StoreStamp(store_inputs(binaries), clean=False).to_json())


def load_web_image() -> float:
    """Seconds for ``kyklos image web --load`` into the running real node."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "kyklos", "image", "web", "--load"],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--round-trips", type=int, default=500)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--pods", type=int, default=20)
    parser.add_argument("--objects", type=int, default=10000)
    parser.add_argument("--cold-build", action="store_true")
    parser.add_argument("--real-node", action="store_true", help="agent vs real node (root)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        asyncio.run((compare_nodes if args.real_node else main_async)(args, Path(tmp)))


if __name__ == "__main__":
    main()
