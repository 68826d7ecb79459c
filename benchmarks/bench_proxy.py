"""The cost of ``kyklos proxy``: added latency and throughput loss against the server direct.

Run: ``.venv/bin/python benchmarks/bench_proxy.py [--requests N] [--concurrency C]``.
Prints a table; nothing is asserted. Targets (issue 14): <= 1 ms added at p50, <= 10 %
throughput loss at the server's own limit on this machine, 1 KB JSON bodies.

Loopback only, bounded in count. Processes: a model server (aiohttp, answers each 1 KB
``{"rows": [...]}`` with ``{"predictions": [...]}``), and ``kyklos proxy`` in front of it
(its own process, as in a pod, request logs to a temporary directory). The client runs
here (aiohttp, keep-alive connections) and alternates direct and proxied rounds so that
load from other processes on the machine hits both sides alike; each figure is the
median over the rounds.

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

ROW = {"tenure_months": 12, "monthly_charges": 70.5, "contract": "month-to-month"}


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


def measure(
    sample_rate: float, args: argparse.Namespace, body: bytes, tmp: Path
) -> dict[str, float]:
    server_port, proxy_port, metrics_port = free_port(), free_port(), free_port()
    kyklos = Path(sys.executable).parent / "kyklos"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(server_port)])
    proxy = subprocess.Popen(
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
        ],
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(server_port)
        wait_listening(proxy_port)
        direct = f"http://127.0.0.1:{server_port}/predict"
        proxied = f"http://127.0.0.1:{proxy_port}/predict"
        asyncio.run(latency(direct, body, 200))  # warm-up
        asyncio.run(latency(proxied, body, 200))
        rounds: dict[str, list[float]] = {k: [] for k in ("d50", "d99", "p50", "p99", "dtp", "ptp")}
        for _ in range(args.rounds):
            d = asyncio.run(latency(direct, body, args.requests))
            p = asyncio.run(latency(proxied, body, args.requests))
            rounds["d50"].append(quantile(d, 0.5))
            rounds["d99"].append(quantile(d, 0.99))
            rounds["p50"].append(quantile(p, 0.5))
            rounds["p99"].append(quantile(p, 0.99))
            rounds["dtp"].append(
                asyncio.run(throughput(direct, body, args.requests * 2, args.concurrency))
            )
            rounds["ptp"].append(
                asyncio.run(throughput(proxied, body, args.requests * 2, args.concurrency))
            )
        return {k: statistics.median(v) for k, v in rounds.items()}
    finally:
        for proc in (proxy, server):
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="per latency round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    body = body_1kb()
    print(
        f"body {len(body)} bytes, {args.requests} requests x {args.rounds} rounds, "
        f"throughput with {args.concurrency} connections, {os.cpu_count()} CPUs"
    )
    print(
        f"{'sampleRate':>10} | {'direct p50':>10} {'proxy p50':>10} {'added':>8} | "
        f"{'direct p99':>10} {'proxy p99':>10} {'added':>8} | "
        f"{'direct rps':>10} {'proxy rps':>10} {'loss':>6}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for rate in (1.0, 0.0):
            m = measure(rate, args, body, Path(tmp))
            print(
                f"{rate:>10} | {m['d50'] * 1e3:>8.3f}ms {m['p50'] * 1e3:>8.3f}ms "
                f"{(m['p50'] - m['d50']) * 1e3:>6.3f}ms | "
                f"{m['d99'] * 1e3:>8.3f}ms {m['p99'] * 1e3:>8.3f}ms "
                f"{(m['p99'] - m['d99']) * 1e3:>6.3f}ms | "
                f"{m['dtp']:>10.0f} {m['ptp']:>10.0f} {(1 - m['ptp'] / m['dtp']) * 100:>5.1f}%"
            )


if __name__ == "__main__":
    main()
