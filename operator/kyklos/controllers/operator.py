"""`kyklos run`: the kopf operator with every controller, /metrics and /healthz."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import random
import signal
import socket
import threading
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

import kopf
import kubernetes
from kubernetes.client.exceptions import ApiException
from prometheus_client import start_http_server
from urllib3.exceptions import HTTPError

from kyklos.controllers import client, config, threads

log = logging.getLogger("kyklos.operator")

KYKLOS_RESOURCES = ("datasets", "trainingjobs", "modeldeployments", "driftmonitors")


@dataclass(frozen=True)
class RunOptions:
    """Flags of `kyklos run`."""

    namespaces: Sequence[str] = ()
    all_namespaces: bool = True
    metrics_port: int = 8080
    liveness: str | None = "http://0.0.0.0:8081/healthz"
    standalone: bool = False
    peering: str | None = None
    kubeconfig: str | None = None


#: Where /metrics listens (prometheus_client's start_http_server default address).
METRICS_ADDRESS = "0.0.0.0"
#: What picks each port: the flag, and the variable `make run` (hack/run.sh) passes to it.
METRICS_SETTING = "--metrics-port; KYKLOS_METRICS_PORT with make run"
LIVENESS_SETTING = "--liveness; KYKLOS_HEALTH_PORT with make run"


class PreflightError(RuntimeError):
    """The cluster is not ready for the operator; the message says what is missing."""


def _where(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _bind_problem(host: str, port: int) -> str | None:
    """Why a server cannot listen on ``host:port`` right now (``address already in use``)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        return f"cannot resolve {host}: {exc.strerror or exc}"
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as sock:
            # As both servers do: a port left in TIME_WAIT by a previous run is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL and len(infos) > 1:
                    continue  # that address family is off here; asyncio skips it too
                return (exc.strerror or str(exc)).lower()
    return None


def _cannot_listen(host: str, port: int, purpose: str, setting: str, why: str) -> str:
    return f"cannot listen on {_where(host, port)} for {purpose} ({setting}): {why}"


def listen_problem(options: RunOptions) -> str | None:
    """Why the operator cannot serve /metrics or its liveness endpoint where asked, or None.

    Checked before kopf starts: otherwise a taken metrics port is an OSError traceback and a
    taken liveness port surfaces as kopf connection errors and then a traceback.
    """
    if options.metrics_port:
        if not 0 < options.metrics_port <= 65535:
            return f"--metrics-port {options.metrics_port}: not a port (1-65535, or 0 for none)"
        why = _bind_problem(METRICS_ADDRESS, options.metrics_port)
        if why:
            return _cannot_listen(
                METRICS_ADDRESS, options.metrics_port, "metrics", METRICS_SETTING, why
            )
    if options.liveness:
        # Parsed as kopf's health reporter does (host localhost and port 80 by default).
        parts = urllib.parse.urlsplit(options.liveness)
        try:
            port = parts.port or 80
        except ValueError as exc:
            return f"--liveness {options.liveness}: {exc}"
        if parts.scheme != "http":
            return f"--liveness {options.liveness}: only http:// endpoints are served"
        host = parts.hostname or "localhost"
        why = _bind_problem(host, port)
        if why:
            return _cannot_listen(host, port, "the liveness endpoint", LIVENESS_SETTING, why)
    return None


def preflight(namespaces: Sequence[str]) -> None:
    """Fail with one clear message when the CRDs are missing or a permission is lacking."""
    try:
        client._call("GET", "/apis/kyklos.io/v1alpha1")
    except ApiException as exc:
        if exc.status == 404:
            raise PreflightError(
                "the Kyklos CRDs are not installed (no kyklos.io/v1alpha1 API): "
                "run `kubectl apply -f crds/` or install the Helm chart"
            ) from None
        if exc.status in (401, 403):
            raise PreflightError(f"not allowed to read the kyklos.io API: {exc.reason}") from None
        raise PreflightError(
            f"cannot reach the Kubernetes API: {exc.status} {exc.reason}"
        ) from None
    except HTTPError as exc:
        raise PreflightError(f"cannot reach the Kubernetes API: {exc}") from None
    missing = []
    scopes: list[str | None] = list(namespaces) or [None]
    # What every controller needs: watch its kind and write its status.
    needs = [(verb, plural, "") for plural in KYKLOS_RESOURCES for verb in ("list", "watch")]
    needs += [("patch", plural, "status") for plural in KYKLOS_RESOURCES]
    for ns in scopes:
        for verb, plural, sub in needs:
            attributes = {"group": "kyklos.io", "resource": plural, "verb": verb}
            if sub:
                attributes["subresource"] = sub
            if ns:
                attributes["namespace"] = ns
            review = {
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes},
            }
            result = client._call(
                "POST", "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=review
            )
            if not (result.get("status") or {}).get("allowed"):
                where = f" in namespace {ns}" if ns else " cluster-wide"
                target = f"{plural}/{sub}" if sub else plural
                missing.append(f"{verb} {target}.kyklos.io{where}")
    if missing:
        raise PreflightError("missing permissions: " + "; ".join(missing))


def configure_logging(cfg: config.OperatorConfig) -> None:
    """Structured one-line logs at the configured level."""
    level = getattr(logging, cfg.log_level.upper())
    kopf.configure(
        verbose=cfg.log_level == "debug",
        log_format=kopf.LogFormat.JSON if cfg.log_format == "json" else kopf.LogFormat.FULL,
    )
    logging.getLogger().setLevel(level)
    for noisy in ("kubernetes", "urllib3", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@kopf.on.startup()
def _settings(settings: kopf.OperatorSettings, **_: object) -> None:
    """kopf settings: Kyklos-owned annotations and finalizer, no log-to-Event posting."""
    settings.persistence.finalizer = "kyklos.io/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kyklos.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="kyklos.io", key="last-handled-configuration"
    )
    # Events are posted explicitly for transitions; kopf's per-log-line events would be
    # a write per handler call and break quiescence.
    settings.posting.enabled = False
    # Only short blocking calls run on the executor: every daemon and retry that waits is
    # async, so this bounds concurrency, not how many objects the operator can hold.
    settings.execution.executor = threads.install(config.current().executor_workers)
    # Every handler is a level-triggered, idempotent reconcile: coalescing an object's events
    # for kopf's default 0.1 s only adds that much to create -> child latency.
    settings.batching.batch_window = 0.01
    settings.watching.server_timeout = 600
    settings.networking.request_timeout = 60


#: Set by the operator's own SIGTERM/SIGINT handler; kopf stops when it is set.
_stop: asyncio.Event | None = None


@kopf.on.startup()
async def _own_signals(settings: kopf.OperatorSettings, **_: object) -> None:
    """Replace kopf's SIGTERM/SIGINT handlers with one that first drops queued reconciles.

    kopf's own handler only stops the operator; the calls queued on the thread pool would
    all run before the process could exit (minutes, for an operator resuming thousands of
    objects). Only in the main thread: signals are delivered there alone.
    """
    stop = _stop
    if stop is None or threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()

    def stopping(sig: signal.Signals) -> None:
        log.info("%s received: stopping", sig.name)
        settings.execution.executor = threads.stop()
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping, sig)


def run(options: RunOptions, cfg: config.OperatorConfig) -> int:
    """Run the operator until SIGTERM/SIGINT; return the exit code."""
    configure_logging(cfg)
    config.install(cfg)
    if options.kubeconfig:
        os.environ["KUBECONFIG"] = options.kubeconfig
        # kopf logs in through kubernetes.config.load_kube_config(), whose default file was
        # read from $KUBECONFIG when the module was imported (before the line above).
        kubernetes.config.kube_config.KUBE_CONFIG_DEFAULT_LOCATION = options.kubeconfig
    try:
        client.load_config(options.kubeconfig)
    except Exception as exc:
        log.error("no Kubernetes credentials: %s", exc)
        return 2
    try:
        preflight(options.namespaces)
    except PreflightError as exc:
        log.error("%s", exc)
        return 2
    # Register every controller's handlers (importing the modules does it).
    from kyklos.controllers import (  # noqa: F401
        artifacts,
        dataset,
        deployment,
        drift,
        registry,
        training,
    )

    if options.metrics_port:
        try:
            start_http_server(options.metrics_port, addr=METRICS_ADDRESS)
        except OSError as exc:  # taken since listen_problem() looked
            why = (exc.strerror or str(exc)).lower()
            port = options.metrics_port
            log.error("%s", _cannot_listen(METRICS_ADDRESS, port, "metrics", METRICS_SETTING, why))
            return 2
    log.info(
        "kyklos operator starting: %s, artifacts %s, worker image %s",
        "all namespaces" if not options.namespaces else ", ".join(options.namespaces),
        cfg.artifacts_uri,
        cfg.worker_image,
    )
    global _stop
    _stop = asyncio.Event()
    kopf.run(
        clusterwide=not options.namespaces,
        namespaces=list(options.namespaces),
        standalone=options.standalone,
        peering_name=options.peering,
        # kopf pauses every replica when two share a priority: distinct random priorities
        # let the highest act while the others stand by (kopf's recipe for several pods).
        priority=random.randint(1, 32767) if options.peering else None,
        liveness_endpoint=options.liveness,
        stop_flag=_stop,
    )
    return 0
