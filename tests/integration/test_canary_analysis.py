"""Canary analysis on live traffic: real operator, real proxies, real Prometheus (issue 14).

Every serving pod runs the example model server (``kyklos.examples.serve``, a real process
in the sandbox) behind the real ``kyklos proxy``; ``kyklos traffic``'s sender puts real
requests through them while a canary step holds; the real ``kyklos worker analyze`` Job
judges the request logs. The misbehaving canaries are the same server told to misbehave
through ``runtime.env`` (a 5xx share, a delay, a constant class). Prometheus is the Debian
``prometheus`` binary, scraping the proxies' ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kyklos_testing import Kyklos, wait_for

from kyklos.examples import train
from kyklos.examples.serve import load_model
from kyklos.rolloutctl import read_rows, send

REPO = Path(__file__).resolve().parents[2]
HOST_BASE = Path(os.environ.get("KYKLOS_TEST_HOST_DIR", "/var/tmp"))
KYKLOS_IMAGE = "ghcr.io/kyklos/kyklos:0.1.0"
DATA = REPO / "examples" / "data" / "churn-reference.csv"
FINAL_PHASES = ("Available", "RolledBack", "Paused")
#: Debian's package (the stories need a real Prometheus, not an imitation).
PROMETHEUS_PACKAGE = "prometheus"


def ensure_prometheus() -> str:
    """The prometheus binary; installed from Debian's package when missing and possible.

    Skips (one line, the reason) where it is neither installed nor installable.
    """
    found = shutil.which("prometheus")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("prometheus is not installed and apt-get (as root) is not available")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", PROMETHEUS_PACKAGE]
    result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if result.returncode != 0:  # stale package lists: update once, then try again
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    found = shutil.which("prometheus")
    if result.returncode != 0 or not found:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"prometheus could not be installed with apt-get: {last}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def model_dir() -> Iterator[Path]:
    """A trained example model outside /tmp (pods mount their own /tmp)."""
    HOST_BASE.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="kyklos-canary-", dir=HOST_BASE))
    path.chmod(0o777)
    env = {
        "KYKLOS_DATASET_URI": f"file://{DATA}",
        "KYKLOS_MODEL_URI": f"file://{path}/model/",
        "KYKLOS_HYPERPARAMETERS": json.dumps({"epochs": "200", "learningRate": "0.5"}),
        "KYKLOS_TERMINATION_MESSAGE_PATH": str(path / "termination-log"),
    }
    assert train.main(env) == 0
    (path / "artifacts").mkdir(mode=0o777)
    (path / "artifacts").chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def kyklos(
    cluster: Any, k8s: Any, namespace: str, crds_installed: None, operator: Any, model_dir: Path
) -> Kyklos:
    operator({"KYKLOS_ARTIFACTS_URI": f"file://{model_dir / 'artifacts'}"})
    return Kyklos(k8s, namespace)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Callable[[list[str]], str]]:
    """A real Prometheus scraping the given targets every second; yields set_targets -> URL."""
    binary = ensure_prometheus()
    port = free_port()
    targets = tmp_path / "targets.json"
    targets.write_text("[]")
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "kyklos-proxies", "file_sd_configs": [{"files": [str(targets)]}]}
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
            return r.status == 200

    def set_targets(addresses: list[str]) -> str:
        targets.write_text(json.dumps([{"targets": addresses}]))
        return url

    try:
        wait_for(ready, timeout=60, what="prometheus ready")
        yield set_targets
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


# ------------------------------------------------------------------------------- helpers


def rows() -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "churned"} for r in read_rows(str(DATA))]


def minority_class(model_dir: Path) -> int:
    """The class the model predicts less often on the data (a constant canary of it drifts)."""
    model = load_model(f"file://{model_dir}/model/")
    predictions = [int(p >= 0.5) for p in model.predict_proba(rows())]
    return 1 if predictions.count(1) < predictions.count(0) else 0


def model_deployment(
    name: str, model_dir: Path, port: int, analysis: dict[str, Any], **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": {"uri": f"file://{model_dir}/model/", "version": "v1"},
        "runtime": {
            "image": KYKLOS_IMAGE,
            "command": ["python", "-m", "kyklos.examples.serve"],
            "port": port,
            "healthPath": "/healthz",
        },
        "replicas": 1,
        "strategy": {
            "type": "Canary",
            "steps": [{"weight": 50, "pause": "8s"}],
            "analysis": {"window": "8s", **analysis},
        },
        "observability": {"requestLog": {"flushInterval": "2s"}},
        "progressDeadlineSeconds": 120,
    }
    body.update(spec)
    return {"metadata": {"name": name}, "spec": body}


def new_canary(ky: Kyklos, name: str, env: dict[str, str] | None = None) -> None:
    """Roll out version v2 of the model (optionally misbehaving)."""
    runtime = ky.get("modeldeployments", name)["spec"]["runtime"]
    if env:
        runtime = {**runtime, "env": env}
    ky.patch(
        "modeldeployments",
        name,
        {"spec": {"model": {"version": "v2"}, "runtime": runtime}},
    )


def wait_available(ky: Kyklos, name: str) -> None:
    ky.wait_status(
        "modeldeployments",
        name,
        lambda s: s.get("phase") == "Available",
        timeout=120,
        what="the stable model Available",
    )


def wait_canary_holding(ky: Kyklos, name: str) -> dict[str, Any]:
    return ky.wait_status(
        "modeldeployments",
        name,
        lambda s: s.get("canaryModel") and s.get("stepStartTime"),
        timeout=120,
        what="the canary Ready and holding its step",
    )


def traffic(port: int, seconds: float, rps: float = 25) -> threading.Thread:
    """Real requests through the proxies (new connection each: SO_REUSEPORT spreads them)."""
    data = rows()
    thread = threading.Thread(
        target=lambda: asyncio.run(send(f"http://127.0.0.1:{port}/predict", data, rps, seconds, 1)),
        daemon=True,
    )
    thread.start()
    return thread


def outcome(ky: Kyklos, name: str, timeout: float = 150) -> dict[str, Any]:
    return ky.wait_status(
        "modeldeployments",
        name,
        lambda s: s.get("analysis") and s.get("phase") in FINAL_PHASES,
        timeout=timeout,
        what="an analysis verdict and its outcome",
    )


def stable_generation(k8s: Any, namespace: str, name: str) -> int:
    from kubernetes import client

    return int(
        client.AppsV1Api(k8s)
        .read_namespaced_deployment(f"{name}-stable", namespace)
        .metadata.generation
    )


def metrics_targets(k8s: Any, namespace: str, name: str) -> list[str]:
    from kubernetes import client

    out = []
    for component in ("stable", "canary"):
        dep = client.AppsV1Api(k8s).read_namespaced_deployment(f"{name}-{component}", namespace)
        for container in dep.spec.template.spec.containers:
            for port in container.ports or []:
                if port.name == "metrics":
                    out.append(f"127.0.0.1:{port.container_port}")
    return out


def kyklos_cli(cluster: Any, *args: str, plugin: bool = False) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / ("kubectl-kyklos" if plugin else "kyklos")
    return subprocess.run(
        [str(exe), *args, "--kubeconfig", str(cluster.kubeconfig)],
        capture_output=True,
        text=True,
        timeout=60,
    )


ANALYSIS = {
    "minSamples": 20,
    "errorRate": {"maxIncrease": 0.05},
    "latency": {"p99MaxRatio": 4},
    "predictionDrift": {"method": "js", "threshold": 0.3},
}

pytestmark = [pytest.mark.sandbox_only, pytest.mark.slow]


# ------------------------------------------------------------------------------- stories


def test_a_good_canary_passes_with_real_prometheus_and_is_promoted(
    kyklos: Kyklos, k8s: Any, namespace: str, model_dir: Path, prometheus: Any
) -> None:
    port = free_port()
    query = {
        "name": "canaryAnswered",
        "query": 'sum(kyklos_serving_requests_total{revision="{{revision}}",code="200"})',
        "successCondition": "result >= 1",
    }
    address = prometheus([])
    analysis = {
        **ANALYSIS,
        "inputDrift": INPUT_DRIFT,  # a random split: the canary sees the stable's inputs
        "prometheus": {"address": address, "queries": [query]},
    }
    kyklos.create("modeldeployments", model_deployment("good", model_dir, port, analysis))
    wait_available(kyklos, "good")
    new_canary(kyklos, "good")
    wait_canary_holding(kyklos, "good")
    prometheus(metrics_targets(k8s, namespace, "good"))
    traffic(port, seconds=12)
    status = outcome(kyklos, "good")
    record = status["analysis"][-1]
    assert record["verdict"] == "Pass", record
    assert record["samples"]["canary"] >= 20 and record["samples"]["stable"] >= 20
    checks = {c["name"]: c for c in record["checks"]}
    assert set(checks) == {
        "errorRate",
        "latency",
        "predictionDrift",
        "inputDrift",
        "canaryAnswered",
    }
    assert checks["inputDrift"]["verdict"] == "Pass", checks["inputDrift"]
    assert checks["canaryAnswered"]["value"] >= 1  # scraped from the canary's proxy
    final = kyklos.wait_status(
        "modeldeployments",
        "good",
        lambda s: (s.get("history") or [{}])[-1].get("outcome") == "Promoted",
        timeout=120,
        what="Promoted",
    )
    assert final["phase"] == "Available" and not final.get("canaryModel")


@pytest.mark.parametrize(
    ("misbehaviour", "failing_check"),
    [
        ({"KYKLOS_EXAMPLE_ERROR_RATE": "0.2"}, "errorRate"),
        # Far slower than twice: on a loaded machine the stable's p99 alone can swing 2x.
        ({"KYKLOS_EXAMPLE_DELAY_SECONDS": "1.0"}, "latency"),
        ({"KYKLOS_EXAMPLE_CONSTANT_PREDICTION": "minority"}, "predictionDrift"),
    ],
    ids=["5xx-20-percent", "slow", "constant-predictions"],
)
def test_a_bad_canary_fails_its_analysis_and_is_rolled_back_stable_untouched(
    kyklos: Kyklos,
    k8s: Any,
    namespace: str,
    model_dir: Path,
    misbehaviour: dict[str, str],
    failing_check: str,
) -> None:
    if misbehaviour.get("KYKLOS_EXAMPLE_CONSTANT_PREDICTION") == "minority":
        misbehaviour = {"KYKLOS_EXAMPLE_CONSTANT_PREDICTION": str(minority_class(model_dir))}
    port = free_port()
    kyklos.create("modeldeployments", model_deployment("bad", model_dir, port, ANALYSIS))
    wait_available(kyklos, "bad")
    generation = stable_generation(k8s, namespace, "bad")
    new_canary(kyklos, "bad", misbehaviour)
    wait_canary_holding(kyklos, "bad")
    traffic(port, seconds=12)
    status = outcome(kyklos, "bad")
    record = status["analysis"][-1]
    assert record["verdict"] == "Fail", record
    checks = {c["name"]: c for c in record["checks"]}
    assert checks[failing_check]["verdict"] == "Fail", checks
    assert status["phase"] == "RolledBack"
    assert status["failedModel"] == f"file://{model_dir}/model/"
    assert stable_generation(k8s, namespace, "bad") == generation  # stable untouched


def test_no_traffic_is_inconclusive_paused_then_kubectl_kyklos_promote_promotes(
    kyklos: Kyklos, cluster: Any, namespace: str, model_dir: Path
) -> None:
    port = free_port()
    kyklos.create("modeldeployments", model_deployment("quiet", model_dir, port, ANALYSIS))
    wait_available(kyklos, "quiet")
    new_canary(kyklos, "quiet")
    status = outcome(kyklos, "quiet")
    record = status["analysis"][-1]
    assert record["verdict"] == "Inconclusive"
    assert "fewer than minSamples=20" in record["message"]
    assert status["phase"] == "Paused" and status["paused"] is True
    done = kyklos_cli(cluster, "rollout", "promote", "quiet", "-n", namespace, plugin=True)
    assert done.returncode == 0, done.stderr
    final = kyklos.wait_status(
        "modeldeployments",
        "quiet",
        lambda s: (s.get("history") or [{}])[-1].get("outcome") == "Promoted",
        timeout=120,
        what="Promoted after kubectl kyklos rollout promote",
    )
    action = final["history"][-1]["actions"][-1]
    assert action["action"] == "promote"
    assert action["user"].startswith("kyklos-rollout/")
    shown = kyklos_cli(cluster, "rollout", "status", "quiet", "-n", namespace)
    assert "Inconclusive" in shown.stdout and "promote by kyklos-rollout/" in shown.stdout


def test_abort_mid_canary_rolls_back(
    kyklos: Kyklos, cluster: Any, k8s: Any, namespace: str, model_dir: Path
) -> None:
    port = free_port()
    body = model_deployment("manual", model_dir, port, ANALYSIS)
    body["spec"]["strategy"]["steps"] = [{"weight": 50, "pause": "manual"}]
    kyklos.create("modeldeployments", body)
    wait_available(kyklos, "manual")
    generation = stable_generation(k8s, namespace, "manual")
    new_canary(kyklos, "manual")
    kyklos.wait_status(
        "modeldeployments",
        "manual",
        lambda s: s.get("phase") == "Paused",
        timeout=120,
        what="waiting for promotion (pause: manual)",
    )
    done = kyklos_cli(cluster, "rollout", "abort", "manual", "-n", namespace)
    assert done.returncode == 0, done.stderr
    status = kyklos.wait_status(
        "modeldeployments",
        "manual",
        lambda s: s.get("phase") == "RolledBack",
        timeout=60,
        what="RolledBack after abort",
    )
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert "aborted by kyklos-rollout/" in ready["message"]
    assert stable_generation(k8s, namespace, "manual") == generation
    spec = kyklos.get("modeldeployments", "manual")["spec"]
    assert spec["model"]["version"] == "v2"  # spec untouched: no GitOps drift


def test_a_prometheus_query_that_errors_is_inconclusive_naming_the_error(
    kyklos: Kyklos, model_dir: Path, prometheus: Any
) -> None:
    port = free_port()
    address = prometheus([])
    broken = {"name": "broken", "query": "sum(rate(", "successCondition": "result < 1"}
    analysis = {"minSamples": 1, "prometheus": {"address": address, "queries": [broken]}}
    kyklos.create("modeldeployments", model_deployment("promerr", model_dir, port, analysis))
    wait_available(kyklos, "promerr")
    new_canary(kyklos, "promerr")
    wait_canary_holding(kyklos, "promerr")
    traffic(port, seconds=10, rps=10)
    status = outcome(kyklos, "promerr")
    record = status["analysis"][-1]
    assert record["verdict"] == "Inconclusive", record
    assert "bad_data" in record["checks"][0]["message"]
    assert status["phase"] == "Paused"


def test_the_prometheus_provider_reads_a_real_prometheus_scraping_a_real_proxy(
    tmp_path: Path, prometheus: Any
) -> None:
    """No cluster needed: a proxy on loopback, scraped by Prometheus, queried by the worker."""
    from aiohttp import web

    from kyklos.api.serving import ProxySettings
    from kyklos.serving.proxy import serve
    from kyklos.worker.analyze import query_prometheus

    settings = ProxySettings(
        listen_port=free_port(),
        server_port=free_port(),
        metrics_port=free_port(),
        revision="r1",
        host="127.0.0.1",
    )
    url = prometheus([f"127.0.0.1:{settings.metrics_port}"])

    async def scenario() -> None:
        async def predict(request: web.Request) -> web.Response:
            return web.json_response({"predictions": [1]})

        app = web.Application()
        app.router.add_post("/predict", predict)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.server_port).start()
        stop = asyncio.Event()
        proxy = asyncio.create_task(serve(settings, stop))
        await asyncio.sleep(0.5)
        await send(f"http://127.0.0.1:{settings.listen_port}/predict", [{"a": 1}], 50, 1.0, 1)
        query = 'sum(kyklos_serving_requests_total{revision="r1"})'
        deadline = time.monotonic() + 30
        result = await asyncio.to_thread(query_prometheus, url, query, time.time())
        while result.value != 50 and time.monotonic() < deadline:
            await asyncio.sleep(1)
            result = await asyncio.to_thread(query_prometheus, url, query, time.time())
        stop.set()
        await proxy
        await runner.cleanup()
        assert result.value == 50, result
        bad = await asyncio.to_thread(query_prometheus, url, "sum(rate(", time.time())
        assert bad.value is None and "bad_data" in (bad.error or "")
        none = await asyncio.to_thread(query_prometheus, url, "absent_metric_xyz", time.time())
        assert none.value is None and "0 series" in (none.error or "")

    asyncio.run(scenario())


# ------------------------------------------------------------- a proxy killed mid-window


class Traffic:
    """Paced requests through the Service port until stopped (bounded), counted per revision.

    A new connection per request (SO_REUSEPORT spreads connections over the proxies); a
    request is *answered* when a response came back, and counted under the revision that
    answered it (``X-Kyklos-Revision``). Connection errors (a proxy being killed) are not
    answers. :meth:`pause` holds the sender between two requests (so a proxy can be killed
    with no request in flight, whose fate neither side could know).
    """

    def __init__(self, port: int, rps: float, max_seconds: float) -> None:
        self.url = f"http://127.0.0.1:{port}/predict"
        self.rps, self.max_seconds = rps, max_seconds
        self.answered: dict[str, int] = {}
        self.failed = 0
        self.stop = threading.Event()
        self.go = threading.Event()
        self.go.set()
        self.idle = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self.thread.start()

    async def _run(self) -> None:
        import aiohttp

        data = rows()
        started = time.monotonic()
        timeout = aiohttp.ClientTimeout(total=10)
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            for i in range(int(self.rps * self.max_seconds)):
                if self.stop.is_set():
                    break
                if not self.go.is_set():
                    held = time.monotonic()
                    self.idle.set()
                    await asyncio.to_thread(self.go.wait, 60)
                    self.idle.clear()
                    started += time.monotonic() - held  # no burst to catch up
                delay = started + i / self.rps - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                try:
                    async with session.post(self.url, json={"rows": [data[i % len(data)]]}) as r:
                        await r.read()
                        rev = r.headers.get("X-Kyklos-Revision", "-")
                        self.answered[rev] = self.answered.get(rev, 0) + 1
                except (aiohttp.ClientError, TimeoutError):
                    self.failed += 1

    def pause(self) -> None:
        """Return once the sender waits between two requests."""
        self.go.clear()
        assert self.idle.wait(30), "the sender did not pause"

    def resume(self) -> None:
        self.go.set()

    def finish(self) -> dict[str, int]:
        self.stop.set()
        self.go.set()
        self.thread.join(timeout=30)
        assert not self.thread.is_alive()
        return dict(self.answered)


def proxy_process(namespace: str, name: str, component: str) -> tuple[int, dict[str, str]]:
    """(pid, flags) of the running ``kyklos proxy`` of a pod of ``<name>-<component>``."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().decode().split("\0")
        except OSError:
            continue
        if "proxy" not in argv or "--pod" not in argv or "--namespace" not in argv:
            continue
        flags = {a: argv[i + 1] for i, a in enumerate(argv[:-1]) if a.startswith("--")}
        if flags["--namespace"] == namespace and flags["--pod"].startswith(f"{name}-{component}-"):
            return int(entry), flags
    return 0, {}


def restart_losses(metrics_port: int) -> float | None:
    """The proxy's dropped{reason="proxy_restart"} (None while it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith('kyklos_serving_request_log_dropped_total{reason="proxy_restart"}'):
            return float(line.split()[-1])
    return None


def restarted_proxy(namespace: str, name: str, old_pid: int) -> tuple[int, float]:
    """Wait for the sandbox to restart the canary's proxy; (new pid, its restart losses)."""
    found: dict[str, Any] = {}

    def restarted() -> bool:
        pid, flags = proxy_process(namespace, name, "canary")
        if not pid or pid == old_pid:
            return False
        losses = restart_losses(int(flags["--metrics-port"]))
        found.update(pid=pid, losses=losses)
        return losses is not None

    wait_for(restarted, timeout=90, what="the canary's proxy restarted by the node agent")
    return int(found["pid"]), float(found["losses"])


def logged_records(model_dir: Path, namespace: str, name: str) -> dict[str, int]:
    """Rows of every request-log file written, per revision."""
    import pyarrow.parquet as pq

    top = model_dir / "artifacts" / namespace / "ModelDeployment" / name / "requests"
    out: dict[str, int] = {}
    for path in top.glob("*/*.parquet"):
        out[path.parent.name] = out.get(path.parent.name, 0) + pq.read_metadata(path).num_rows
    return out


def test_a_proxy_killed_mid_window_loses_only_its_buffer_counted_and_the_analysis_still_judges(
    kyklos: Kyklos, namespace: str, model_dir: Path
) -> None:
    """SIGKILL loses the unflushed buffer (counted by the next proxy); SIGTERM loses nothing.

    Every answered request is either in a request-log file or counted as
    dropped{reason="proxy_restart"}: logged + counted == answered, per revision.
    """
    port = free_port()
    analysis = {"window": "10s", "minSamples": 10, "errorRate": {"maxIncrease": 0.05}}
    body = model_deployment("restart", model_dir, port, analysis)
    body["spec"]["strategy"]["steps"] = [{"weight": 50, "pause": "30s"}]
    body["spec"]["observability"] = {"requestLog": {"flushInterval": "3s"}}
    kyklos.create("modeldeployments", body)
    wait_available(kyklos, "restart")
    new_canary(kyklos, "restart")
    wait_canary_holding(kyklos, "restart")
    sender = Traffic(port, rps=16, max_seconds=150)
    try:
        pid, flags = proxy_process(namespace, "restart", "canary")
        assert pid, "no canary proxy process found"
        canary = flags["--revision"]
        # Kill right after a flush plus 1.5 s: about a dozen records are in the buffer.
        first = wait_for(
            lambda: logged_records(model_dir, namespace, "restart").get(canary),
            timeout=60,
            what="the canary's first request-log flush",
        )
        wait_for(
            lambda: logged_records(model_dir, namespace, "restart").get(canary, 0) > first,
            timeout=60,
            what="the canary's next flush",
        )
        time.sleep(1.5)
        sender.pause()
        os.kill(pid, 9)  # SIGKILL: the buffer is lost
        sender.resume()
        pid, killed_losses = restarted_proxy(namespace, "restart", pid)
        assert killed_losses > 0, "the SIGKILLed proxy's buffer was not counted"
        sender.pause()
        os.kill(pid, 15)  # SIGTERM: flushed on the way out, nothing lost
        sender.resume()
        _, terminated_losses = restarted_proxy(namespace, "restart", pid)
        assert terminated_losses == 0
        status = outcome(kyklos, "restart", timeout=180)
    finally:
        answered = sender.finish()
    record = status["analysis"][-1]
    assert record["verdict"] == "Pass", record  # the analysis still judges the window
    assert record["samples"]["canary"] >= 10
    kyklos.wait_status(
        "modeldeployments",
        "restart",
        lambda s: (s.get("history") or [{}])[-1].get("outcome") == "Promoted",
        timeout=120,
        what="Promoted",
    )
    assert answered.get(canary, 0) > 0 and len(answered) >= 2, answered
    expected = {rev: n - (killed_losses if rev == canary else 0) for rev, n in answered.items()}
    # Every proxy flushes on its timer (3 s) or on SIGTERM when its pod goes: wait for both.
    with contextlib.suppress(AssertionError):
        wait_for(
            lambda: logged_records(model_dir, namespace, "restart") == expected,
            timeout=60,
            what="every answered request in a request-log file or counted",
        )
    logged = logged_records(model_dir, namespace, "restart")
    assert logged == expected, (logged, answered, killed_losses)


# ------------------------------------------------------------------------- input drift

#: inputDrift compares the canary's inputs with the stable's in the same window. JS on
#: ~100 requests a side: features of one population score <= 0.31 against each other (20
#: resamplings of the example data), the ``contract`` of a one-segment canary >= 0.53.
INPUT_DRIFT = {"method": "js", "threshold": 0.4, "driftShare": 0.2}


def sticky_segment_traffic(
    port: int, canary_revision: str, segment: list[dict[str, Any]], rps: float, seconds: float
) -> dict[str, int]:
    """Keep-alive sessions: those the kernel gave the canary send only ``segment``'s rows.

    As session affinity or header routing that sends one customer segment to the canary
    would: the split of *requests* is not random. Each session learns its proxy's revision
    from a readiness request (forwarded, never logged) before it sends rows. Bounded:
    ``rps * seconds`` requests at most, 16 sessions at most.
    """
    import http.client

    everyone = rows()
    sessions: list[tuple[http.client.HTTPConnection, str]] = []

    def open_session() -> tuple[http.client.HTTPConnection, str]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        return conn, str(response.getheader("X-Kyklos-Revision"))

    for _ in range(16):
        sessions.append(open_session())
        revisions = {rev for _, rev in sessions}
        if canary_revision in revisions and len(revisions) == 2 and len(sessions) >= 4:
            break
    answered: dict[str, int] = {}
    started = time.monotonic()
    for i in range(int(rps * seconds)):
        delay = started + i / rps - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        slot = i % len(sessions)
        conn, rev = sessions[slot]
        data = segment if rev == canary_revision else everyone
        body = json.dumps({"rows": [data[i % len(data)]]})
        try:
            conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            answered[rev] = answered.get(rev, 0) + 1
        except (OSError, http.client.HTTPException):
            conn.close()
            sessions[slot] = open_session()
    for conn, _ in sessions:
        conn.close()
    return answered


def test_a_canary_fed_one_customer_segment_fails_input_drift_and_is_rolled_back(
    kyklos: Kyklos, k8s: Any, namespace: str, model_dir: Path
) -> None:
    """inputDrift catches a split that is not random (what it is for), on real request logs.

    It compares the canary's sampled inputs with the stable's over the same window, not
    with the training data: under the random split of the other stories it passes (the
    good canary's story checks that); here the canary's sessions carry only two-year
    contracts while the stable's carry everyone, and the canary is rolled back.
    """
    port = free_port()
    analysis = {"minSamples": 20, "inputDrift": INPUT_DRIFT}
    kyklos.create("modeldeployments", model_deployment("segment", model_dir, port, analysis))
    wait_available(kyklos, "segment")
    generation = stable_generation(k8s, namespace, "segment")
    new_canary(kyklos, "segment")
    wait_canary_holding(kyklos, "segment")
    _, flags = proxy_process(namespace, "segment", "canary")
    canary = flags["--revision"]
    two_year = [r for r in rows() if r["contract"] == "two-year"]
    answered = sticky_segment_traffic(port, canary, two_year, rps=25, seconds=12)
    assert answered.get(canary, 0) >= 20 and len(answered) == 2, answered
    status = outcome(kyklos, "segment")
    record = status["analysis"][-1]
    assert record["verdict"] == "Fail", record
    check = next(c for c in record["checks"] if c["name"] == "inputDrift")
    assert check["verdict"] == "Fail" and "contract" in check["message"], check
    assert status["phase"] == "RolledBack"
    assert stable_generation(k8s, namespace, "segment") == generation


# ------------------------------------------------------------ an artifact store that fails


def test_an_unwritable_artifact_store_still_serves_counts_drops_and_is_inconclusive_naming_it(
    cluster: Any,
    k8s: Any,
    namespace: str,
    crds_installed: None,
    operator: Any,
    model_dir: Path,
) -> None:
    """Requests are answered, the proxies count every record they could not write, and the
    analysis is Inconclusive naming the store and its error (not "no traffic"): Paused."""
    blocker = model_dir / "not-a-directory"
    blocker.write_text("a file where the artifact store's directory would be")
    blocker.chmod(0o666)
    operator({"KYKLOS_ARTIFACTS_URI": f"file://{blocker}/store"})
    ky = Kyklos(k8s, namespace)
    port = free_port()
    ky.create("modeldeployments", model_deployment("nostore", model_dir, port, ANALYSIS))
    wait_available(ky, "nostore")
    new_canary(ky, "nostore")
    wait_canary_holding(ky, "nostore")
    _, flags = proxy_process(namespace, "nostore", "canary")
    sender = Traffic(port, rps=15, max_seconds=10)
    sender.thread.join(timeout=60)
    answered = sender.finish()
    assert sum(answered.values()) >= 100 and sender.failed == 0, (answered, sender.failed)
    # Every request the canary answered is a record it could not write, counted (flushes
    # every 2 s: wait for the last one).
    canary_answered = answered[flags["--revision"]]
    wait_for(
        lambda: store_errors(int(flags["--metrics-port"])) == canary_answered,
        timeout=30,
        what=f"the canary proxy counting all {canary_answered} records it could not write",
    )
    status = outcome(ky, "nostore")
    record = status["analysis"][-1]
    assert record["verdict"] == "Inconclusive", record
    assert f"artifact store file://{blocker}/store" in record["message"], record
    assert "Not a directory" in record["message"], record
    assert status["phase"] == "Paused"


def store_errors(metrics_port: int) -> float:
    """The proxy's dropped{reason="store_error"} (0 while none or no answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith('kyklos_serving_request_log_dropped_total{reason="store_error"}'):
            return float(line.split()[-1])
    return 0.0
