"""``kyklos rollout status|promote|abort|pause|resume NAME`` and ``kyklos traffic NAME``.

Also installed as the kubectl plugin ``kubectl-kyklos`` (``kubectl kyklos rollout promote
churn-model``).

Manual control never changes ``spec`` (GitOps tools must see no drift): the command sets
the annotation ``kyklos.io/rollout-action: <action>/<UTC time>`` with the field manager
``kyklos-rollout/<local user>``; the controller carries out each new value once
(``status.handledAction``) and records it, with that field manager as the user, in the
rollout's ``status.history[].actions``. promote ends the current step now (the next step,
or promotion after the last); abort rolls the canary back (even without autoRollback);
pause holds the current step; resume releases it (the step holds and is analysed again).

``kyklos traffic`` sends rows of a data file (or of a Dataset whose source is a local
file) to the ModelDeployment's ``/predict``, bounded by ``--rps`` x ``--duration``, to a
loopback address or the in-cluster Service only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import ipaddress
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

GROUP, VERSION, PLURAL = "kyklos.io", "v1alpha1", "modeldeployments"
ACTION_ANNOTATION = "kyklos.io/rollout-action"
ACTIONS = ("promote", "abort", "pause", "resume")
#: Hard bounds of ``kyklos traffic`` (a test tool, not a load generator).
MAX_RPS = 2000
MAX_DURATION_SECONDS = 3600


def add_parsers(sub: Any) -> None:
    """Register ``rollout`` and ``traffic`` on the top-level ``kyklos`` parser."""
    ro = sub.add_parser("rollout", help="canary rollout status and manual control")
    ro.add_argument("action", choices=("status", *ACTIONS))
    ro.add_argument("name", help="the ModelDeployment")
    ro.add_argument("-n", "--namespace", default=None, help="namespace (default: kubeconfig's)")
    ro.add_argument("--kubeconfig", default=None)

    tr = sub.add_parser("traffic", help="send data rows to a ModelDeployment (bounded)")
    tr.add_argument("name", help="the ModelDeployment")
    tr.add_argument("-n", "--namespace", default=None)
    tr.add_argument("--kubeconfig", default=None)
    tr.add_argument("--rps", type=float, default=20.0, help=f"requests per second (<= {MAX_RPS})")
    tr.add_argument("--duration", default="30s", help="how long (e.g. 30s, 2m; <= 1h)")
    tr.add_argument("--rows-per-request", type=int, default=1)
    src = tr.add_mutually_exclusive_group()
    src.add_argument("--data", help="a local csv/parquet/jsonl file of rows")
    src.add_argument("--dataset", help="a Dataset whose source is a local file")
    tr.add_argument(
        "--url", default=None, help="base URL (default: http://127.0.0.1:<runtime.port>)"
    )


# ---------------------------------------------------------------------------- rollout


def _api(kubeconfig: str | None) -> tuple[Any, str]:
    from kubernetes import client, config

    config.load_kube_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    _, active = config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    namespace = (active or {}).get("context", {}).get("namespace") or "default"
    return client.CustomObjectsApi(), namespace


def field_manager() -> str:
    """``kyklos-rollout/<local user>``: what the controller records as the requester."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"kyklos-rollout/{user}"[:128]


def action_value(action: str, now: datetime) -> str:
    """The annotation value: a new one per request, so a repeated action is carried out again."""
    return f"{action}/{now.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


def rollout_main(args: argparse.Namespace) -> int:
    from kubernetes.client.exceptions import ApiException

    api, default_ns = _api(args.kubeconfig)
    namespace = args.namespace or default_ns
    try:
        if args.action == "status":
            body = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, args.name)
            print(describe(body))
            return 0
        value = action_value(args.action, datetime.now(UTC))
        api.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            PLURAL,
            args.name,
            {"metadata": {"annotations": {ACTION_ANNOTATION: value}}},
            field_manager=field_manager(),
        )
    except ApiException as exc:
        reason = exc.reason or ""
        with contextlib.suppress(ValueError):
            reason = json.loads(exc.body or "{}").get("message") or reason
        print(f"kyklos rollout {args.action}: {namespace}/{args.name}: {reason}", file=sys.stderr)
        return 1
    print(f"modeldeployment {namespace}/{args.name}: {args.action} requested ({value})")
    return 0


def describe(body: dict[str, Any]) -> str:
    """A human summary of a ModelDeployment's rollout."""
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    ready: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Ready"), {}
    )
    lines = [
        f"Name:      {meta.get('namespace')}/{meta.get('name')}",
        f"Phase:     {status.get('phase', '-')}" + ("  (paused)" if status.get("paused") else ""),
        f"Stable:    {status.get('stableModel', '-')}",
        f"Canary:    {status.get('canaryModel', '-')}"
        + (
            f"  step {status.get('step')} at {status.get('canaryWeight')}%"
            if status.get("canaryModel")
            else ""
        ),
        f"Message:   {ready.get('message', '-')}",
    ]
    analyses = status.get("analysis") or []
    if analyses:
        lines.append("Analyses (newest last):")
        for record in analyses[-5:]:
            samples = record.get("samples") or {}
            checks = ", ".join(
                f"{c.get('name')}={c.get('value')}/{c.get('limit')}:{c.get('verdict')}"
                for c in record.get("checks") or []
            )
            lines.append(
                f"  step {record.get('step')} {record.get('verdict'):<12} "
                f"canary {samples.get('canary', 0)} / stable {samples.get('stable', 0)}  {checks}"
            )
    history = status.get("history") or []
    if history:
        current = history[-1]
        lines.append(f"Rollout:   {current.get('model')} {current.get('outcome')}")
        for action in current.get("actions") or []:
            lines.append(
                f"  {action.get('time')} {action.get('action')} by {action.get('user', '?')}"
            )
    return "\n".join(lines)


# ---------------------------------------------------------------------------- traffic


def loopback_or_service(url: str) -> str | None:
    """Why ``url`` may not be used (None: a loopback address or an in-cluster Service)."""
    host = urlparse(url).hostname or ""
    if host == "localhost" or host.endswith((".svc", ".svc.cluster.local")):
        return None
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        pass
    return f"{url}: kyklos traffic only sends to loopback or <service>.<namespace>.svc"


def read_rows(uri: str, limit: int = 10_000) -> list[dict[str, Any]]:
    """Up to ``limit`` rows of a local csv/parquet/jsonl file (``file://`` or a path)."""
    import pyarrow.csv as pa_csv
    import pyarrow.json as pa_json
    import pyarrow.parquet as pq

    path = uri.removeprefix("file://")
    if path.endswith(".parquet"):
        table = pq.read_table(path)
    elif path.endswith((".jsonl", ".json")):
        table = pa_json.read_json(path)
    else:
        table = pa_csv.read_csv(path)
    return [dict(r) for r in table.slice(0, limit).to_pylist()]


async def send(
    url: str, rows: Sequence[dict[str, Any]], rps: float, seconds: float, per_request: int
) -> dict[str, Any]:
    """Send ``rps`` requests per second for ``seconds`` (bounded); a summary."""
    import aiohttp

    total = int(rps * seconds)
    codes: Counter[str] = Counter()
    revisions: Counter[str] = Counter()
    latencies: list[float] = []
    started = time.monotonic()
    semaphore = asyncio.Semaphore(64)

    async def one(i: int, session: aiohttp.ClientSession) -> None:
        batch = [rows[(i * per_request + k) % len(rows)] for k in range(per_request)]
        async with semaphore:
            t0 = time.perf_counter()
            try:
                async with session.post(url, json={"rows": batch}) as r:
                    await r.read()
                    codes[str(r.status)] += 1
                    revisions[r.headers.get("X-Kyklos-Revision", "-")] += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                codes[type(exc).__name__] += 1
            latencies.append(time.perf_counter() - t0)

    timeout = aiohttp.ClientTimeout(total=10)
    # A new connection per request: with SO_REUSEPORT (the process sandbox) the kernel
    # spreads connections, not requests, over the stable and canary proxies.
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        tasks = []
        for i in range(total):
            delay = started + i / rps - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() - started > seconds + 1:
                break
            tasks.append(asyncio.create_task(one(i, session)))
        await asyncio.gather(*tasks)
    latencies.sort()
    return {
        "requests": sum(codes.values()),
        "codes": dict(codes),
        "revisions": dict(revisions),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2) if latencies else None,
        "seconds": round(time.monotonic() - started, 2),
    }


def traffic_main(args: argparse.Namespace) -> int:
    from kyklos.logic.durations import duration_seconds

    try:
        seconds = duration_seconds(args.duration, "--duration")
    except ValueError as exc:
        print(f"kyklos traffic: {exc}", file=sys.stderr)
        return 2
    if not 0 < args.rps <= MAX_RPS or not 0 < seconds <= MAX_DURATION_SECONDS:
        print(
            f"kyklos traffic: --rps must be in (0, {MAX_RPS}] and --duration in (0, 1h]",
            file=sys.stderr,
        )
        return 2
    url, data = args.url, args.data
    if url is None or args.dataset:
        api, default_ns = _api(args.kubeconfig)
        namespace = args.namespace or default_ns
        if url is None:
            md = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, args.name)
            url = f"http://127.0.0.1:{md['spec']['runtime'].get('port', 8080)}"
        if args.dataset:
            ds = api.get_namespaced_custom_object(
                GROUP, VERSION, namespace, "datasets", args.dataset
            )
            data = ds["spec"]["source"]["uri"]
            target = ((ds["spec"].get("schema") or {}).get("target")) or None
        else:
            target = None
    else:
        target = None
    problem = loopback_or_service(url)
    if problem:
        print(f"kyklos traffic: {problem}", file=sys.stderr)
        return 2
    if not data:
        print("kyklos traffic: give --data FILE or --dataset NAME", file=sys.stderr)
        return 2
    if not (data.startswith("file://") or "://" not in data):
        print(f"kyklos traffic: {data}: only local files can be sent", file=sys.stderr)
        return 2
    rows = read_rows(data)
    if target:
        rows = [{k: v for k, v in r.items() if k != target} for r in rows]
    if not rows:
        print(f"kyklos traffic: {data} has no rows", file=sys.stderr)
        return 2
    target_url = url.rstrip("/") + "/predict"
    summary = asyncio.run(send(target_url, rows, args.rps, seconds, args.rows_per_request))
    print(json.dumps(summary))
    return 0


def kubectl_main() -> int:
    """``kubectl kyklos ...`` (the kubectl plugin): the same commands as ``kyklos``."""
    from kyklos.cli import main

    return main(sys.argv[1:])
