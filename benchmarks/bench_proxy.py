"""The cost of ``kyklos proxy``: added latency and throughput loss against the server direct.

Run: ``.venv/bin/python benchmarks/bench_proxy.py [--requests N] [--concurrency C]``.
Prints a table; nothing is asserted. Targets (issue 14): <= 1 ms added at p50, <= 10 %
throughput loss at the server's own limit on this machine, 1 KB JSON bodies.

Loopback only, bounded in count. Processes: a model server, and ``kyklos proxy`` in front
of it (its own process, as in a pod, request logs to a temporary directory, its journal
on). Two servers (``--server``): ``aiohttp``, a trivial one answering each 1 KB
``{"rows": [...]}`` with ``{"predictions": [...]}`` (the proxy's worst case: the server
does almost nothing, so the proxy's own cost weighs most), and ``example``, the repository's
churn model server (``kyklos.examples.serve`` with a model trained here first) as users
start from. The client runs here (aiohttp, keep-alive connections).

Fairness on a shared, loaded machine: direct and proxied measurements alternate within
every round, in ABBA order (direct first in even rounds, proxied first in odd ones), so
load from other processes hits both sides alike; each figure is the median over the rounds,
with the spread (min..max over rounds) beside it, and the 1-minute load average is printed
before and after. ``--pin`` pins the server to CPU 0 and the proxy and the client to the
others (``taskset``), so the server's limit is one CPU of its own.

- latency: one connection, requests one after another; p50 and p99 per side, and the
  difference.
- throughput: ``--concurrency`` connections, as fast as the server answers; requests per
  second per side and the loss.
Both with request logging of every body (``sampleRate`` 1.0, the worst case) and with no
bodies (``sampleRate`` 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

SERVER = """
import sys
from aiohttp import web

async def predict(request):
    body = await request.json()
    return web.json_response({"predictions": [1] * len(body["rows"])})

async def health(request):
    return web.json_response({"status": "ok"})

app = web.Application()
app.router.add_post("/predict", predict)
app.router.add_get("/healthz", health)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""

ROW = {
    "tenure_months": 12,
    "monthly_charges": 70.5,
    "support_calls": 1,
    "contract": "month-to-month",
    "payment_method": "electronic-check",
}
REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body_1kb() -> bytes:
    rows = []
    while len(json.dumps({"rows": rows})) < 1000:
        rows.append(dict(ROW))
    return json.dumps({"rows": rows}).encode()


def wait_listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port} after {timeout}s")


async def latency(url: str, body: bytes, n: int) -> list[float]:
    out = []
    connector = aiohttp.TCPConnector(limit=1)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector) as session:
        for _ in range(n):
            t0 = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as r:
                await r.read()
                assert r.status == 200, r.status
            out.append(time.perf_counter() - t0)
    return out


async def throughput(url: str, body: bytes, n: int, concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json"}
    left = n

    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with session.post(url, data=body, headers=headers) as r:
                    await r.read()

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - t0)


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def train_example_model(tmp: Path) -> str:
    """Train the churn example's model (as the walkthrough does); its URI."""
    from kyklos.examples import train

    env = {
        "KYKLOS_DATASET_URI": f"file://{REPO / 'examples/data/churn-reference.csv'}",
        "KYKLOS_MODEL_URI": f"file://{tmp}/model/",
        "KYKLOS_HYPERPARAMETERS": json.dumps({"epochs": "50"}),
        "KYKLOS_TERMINATION_MESSAGE_PATH": str(tmp / "termination-log"),
    }
    if train.main(env) != 0:
        raise SystemExit("training the example model failed")
    return f"file://{tmp}/model/"


def server_command(kind: str, port: int, tmp: Path) -> tuple[list[str], dict[str, str]]:
    if kind == "aiohttp":
        return [sys.executable, "-c", SERVER, str(port)], dict(os.environ)
    model = tmp / "model"
    if not model.exists():
        train_example_model(tmp)
    argv = [sys.executable, "-m", "kyklos.examples.serve", "--port", str(port)]
    return argv, {**os.environ, "KYKLOS_MODEL_URI": f"file://{model}/"}


def pinned(argv: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def measure(
    kind: str, sample_rate: float, args: argparse.Namespace, body: bytes, tmp: Path
) -> dict[str, list[float]]:
    server_port, proxy_port, metrics_port = free_port(), free_port(), free_port()
    kyklos = Path(sys.executable).parent / "kyklos"
    others = f"1-{os.cpu_count() - 1}" if args.pin and (os.cpu_count() or 1) > 1 else None
    argv, env = server_command(kind, server_port, tmp)
    server = subprocess.Popen(
        pinned(argv, "0" if others else None), env=env, stderr=subprocess.DEVNULL
    )
    proxy = subprocess.Popen(
        pinned(
            [
                str(kyklos),
                "proxy",
                "--listen-port",
                str(proxy_port),
                "--server-port",
                str(server_port),
                "--metrics-port",
                str(metrics_port),
                "--revision",
                "bench",
                "--host",
                "127.0.0.1",
                "--artifacts",
                f"file://{tmp}/store-{sample_rate}",
                "--namespace",
                "bench",
                "--name",
                "bench",
                "--pod",
                "bench",
                "--sample-rate",
                str(sample_rate),
                "--flush-seconds",
                "2",
                "--journal-dir",
                f"{tmp}/journal-{kind}-{sample_rate}",
            ],
            others,
        ),
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(server_port)
        wait_listening(proxy_port)
        direct = f"http://127.0.0.1:{server_port}/predict"
        proxied = f"http://127.0.0.1:{proxy_port}/predict"
        if others:
            os.sched_setaffinity(0, set(range(1, os.cpu_count() or 2)))
        asyncio.run(latency(direct, body, 200))  # warm-up
        asyncio.run(latency(proxied, body, 200))
        keys = ("d50", "d99", "p50", "p99", "dtp", "ptp", "add50", "add99", "loss")
        rounds: dict[str, list[float]] = {k: [] for k in keys}
        for i in range(args.rounds):
            # ABBA: which side goes first alternates, so a load trend hits both alike.
            sides = [("d", direct), ("p", proxied)]
            if i % 2:
                sides.reverse()
            for side, url in sides:
                lat = asyncio.run(latency(url, body, args.requests))
                rounds[f"{side}50"].append(quantile(lat, 0.5))
                rounds[f"{side}99"].append(quantile(lat, 0.99))
            for side, url in sides:
                rounds[f"{side}tp"].append(
                    asyncio.run(throughput(url, body, args.requests * 2, args.concurrency))
                )
            rounds["add50"].append(rounds["p50"][-1] - rounds["d50"][-1])
            rounds["add99"].append(rounds["p99"][-1] - rounds["d99"][-1])
            rounds["loss"].append(1 - rounds["ptp"][-1] / rounds["dtp"][-1])
        return rounds
    finally:
        if others:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        for proc in (proxy, server):
            proc.terminate()
            proc.wait(timeout=30)


def spread(values: list[float], scale: float, fmt: str) -> str:
    """``median [min..max]`` of per-round values."""
    med = statistics.median(values) * scale
    return f"{med:{fmt}} [{min(values) * scale:{fmt}}..{max(values) * scale:{fmt}}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per latency round")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--server", choices=("aiohttp", "example", "both"), default="both")
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, the rest on 1-")
    args = parser.parse_args()
    args.requests = max(10, min(args.requests, 100_000))  # bounded
    args.rounds = max(1, min(args.rounds, 50))
    body = body_1kb()
    print(
        f"body {len(body)} bytes, {args.requests} requests x {args.rounds} rounds (ABBA), "
        f"throughput with {args.concurrency} connections, {os.cpu_count()} CPUs, "
        f"pinned: {args.pin}; each cell: median [min..max] over rounds"
    )
    kinds = ("aiohttp", "example") if args.server == "both" else (args.server,)
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            for rate in (1.0, 0.0):
                load_before = os.getloadavg()[0]
                m = measure(kind, rate, args, body, Path(tmp))
                load_after = os.getloadavg()[0]
                print(
                    f"server {kind}, sampleRate {rate}: load {load_before:.1f} -> "
                    f"{load_after:.1f}\n"
                    f"  p50 direct {spread(m['d50'], 1e3, '.3f')} ms, proxied "
                    f"{spread(m['p50'], 1e3, '.3f')} ms, added {spread(m['add50'], 1e3, '.3f')} ms\n"
                    f"  p99 direct {spread(m['d99'], 1e3, '.3f')} ms, proxied "
                    f"{spread(m['p99'], 1e3, '.3f')} ms, added {spread(m['add99'], 1e3, '.3f')} ms\n"
                    f"  throughput direct {spread(m['dtp'], 1, '.0f')} rps, proxied "
                    f"{spread(m['ptp'], 1, '.0f')} rps, loss {spread(m['loss'], 100, '.1f')} %",
                    flush=True,
                )


if __name__ == "__main__":
    main()
