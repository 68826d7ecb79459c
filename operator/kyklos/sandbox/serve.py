"""``kyklos sandbox serve``: a real local Kubernetes control plane plus the Kyklos node agent.

Order of events: validate the kubelet policy, build the control plane if the cache lacks it,
start the watchdog, generate the PKI, start etcd, kube-apiserver, kube-controller-manager and
kube-scheduler, write the kubeconfig, start the node agent, wait for ``/readyz``, the Ready
nodes and the ``default`` ServiceAccount, then print ``kubeconfig: <path>`` as the first line
of stdout (progress goes to stderr) and supervise until SIGINT/SIGTERM. On a signal every child
is stopped and serve exits 0; if a component dies, serve stops the rest and exits 1 naming it.

The kubeconfig written for the user is removed on exit (it would point at a dead server), and
without ``--data-dir`` the temporary data dir is removed too.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import types
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from kyklos.sandbox.build import BuildError, ensure_built
from kyklos.sandbox.controlplane import (
    ComponentError,
    ControlPlane,
    PortInUseError,
    kubeconfig,
    port_is_free,
    write_private,
)
from kyklos.sandbox.procs import log_tail, spawn, stop_all
from kyklos.sandbox.restart import serve_restart_requests

if TYPE_CHECKING:
    from kyklos.sandbox.realnode.node import RealNode

NODE_AGENT_MODULE = "kyklos.sandbox.nodeagent"


class SandboxError(Exception):
    """A one-line (plus optional log tail) reason why the sandbox cannot run."""

    exit_code = 1


class UnsupportedHostError(SandboxError):
    """This machine cannot run what was asked (``--node real``: not root, a missing package)."""

    exit_code = 2


class _Stop(BaseException):
    """Raised by the signal handler to unwind start-up or supervision."""


@dataclass
class ServeOptions:
    """Options of ``kyklos sandbox serve``."""

    port: int = 0
    kubeconfig: Path = Path("sandbox.kubeconfig")
    kubelet_policy: Path | None = None
    nodes: int = 2
    data_dir: Path | None = None
    node_agent: bool = True
    ready_timeout: float = 180.0
    # "agent": the process node agent (default); "real": kubelet + containerd (realnode).
    node: str = "agent"


def say(line: str) -> None:
    """A progress line on stderr."""
    print(f"sandbox: {line}", file=sys.stderr, flush=True)


def validate_policy(path: Path | None) -> None:
    """Check the kubelet policy file before anything starts (the node agent's own parser)."""
    if path is None:
        return
    if not path.is_file():
        raise SandboxError(f"--kubelet-policy {path}: no such file")
    from kyklos.sandbox.policy import PolicyError, load_policy

    try:
        load_policy(str(path))
    except PolicyError as exc:
        message = str(exc)  # it names the file already
        raise SandboxError(message if str(path) in message else f"{path}: {message}") from None


def _api_get(cp: ControlPlane, context: ssl.SSLContext, path: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"{cp.server}{path}", timeout=5, context=context) as resp:
            data: dict[str, object] = json.load(resp)
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    except (urllib.error.URLError, OSError):
        return None


def _ready_nodes(listing: dict[str, object] | None, since: float) -> list[str]:
    """Nodes whose Ready condition is True and was posted at or after ``since`` (epoch s).

    The time check matters with a persistent data dir: the Node objects of the previous run
    are still Ready in etcd until this run's agent reports (or the lifecycle controller
    notices it does not).
    """
    items = listing.get("items", []) if listing else []
    ready = []
    for node in items if isinstance(items, list) else []:
        for cond in node.get("status", {}).get("conditions", []) or []:
            if cond.get("type") != "Ready" or cond.get("status") != "True":
                continue
            try:
                beat = dt.datetime.fromisoformat(cond.get("lastHeartbeatTime", "")).timestamp()
            except ValueError:
                continue
            if beat >= since - 2:  # RFC 3339 timestamps are whole seconds
                ready.append(node["metadata"]["name"])
    return ready


class Sandbox:
    """One running sandbox: control plane, node agent, watchdog."""

    def __init__(self, options: ServeOptions) -> None:
        self.options = options
        self.temp_dir: Path | None = None
        if options.data_dir is None:
            self.temp_dir = Path(tempfile.mkdtemp(prefix="kyklos-sandbox-"))
        self.data_dir = (options.data_dir or self.temp_dir or Path()).resolve()
        self.kubeconfig_path = options.kubeconfig.resolve()
        self.kubeconfig_text: str | None = None
        self.watchdog: subprocess.Popen[bytes] | None = None
        self.control_plane: ControlPlane | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.real_node: RealNode | None = None
        self.started = time.monotonic()

    @property
    def real(self) -> bool:
        return self.options.node == "real" and self.options.node_agent

    @property
    def agent_log(self) -> Path:
        return self.data_dir / "controlplane" / "logs" / "node-agent.log"

    def start_watchdog(self) -> None:
        """Start the process that cleans up if serve itself is killed."""
        argv = [sys.executable, "-m", "kyklos.sandbox.watchdog", "--pid", str(os.getpid())]
        if self.temp_dir is not None:
            argv += ["--remove", str(self.temp_dir)]
        if self.real:
            from kyklos.sandbox.realnode.host import STATE_DIR

            argv += ["--real-node-state", str(STATE_DIR)]
        # stdout to /dev/null: a reader of serve's stdout must see EOF when serve exits.
        self.watchdog = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )

    def start(self) -> None:
        """Build, start everything and wait until the cluster is usable."""
        opts = self.options
        validate_policy(opts.kubelet_policy)
        if self.real:
            from kyklos.sandbox.realnode.node import NodeError, preflight

            try:
                preflight()
            except NodeError as exc:
                raise UnsupportedHostError(str(exc)) from None
        if opts.node_agent and importlib.util.find_spec(NODE_AGENT_MODULE) is None:
            raise SandboxError(f"the node agent module {NODE_AGENT_MODULE} is not installed")
        if opts.port and not port_is_free(opts.port):
            raise PortInUseError(
                f"port {opts.port} on 127.0.0.1 is already in use "
                "(pick another with --port, or --port 0 for a free one)"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.start_watchdog()
        try:
            binaries = ensure_built(say)
        except BuildError as exc:
            raise SandboxError(f"cannot build the control plane: {exc}") from None
        started = self.started = time.monotonic()
        cp = ControlPlane(self.data_dir, binaries, api_port=opts.port)
        if self.real:
            self.prepare_real_node(cp)
            started = self.started = time.monotonic()
        self.control_plane = cp

        def api_ready() -> None:
            pki = cp.pki
            config = kubeconfig(
                cp.server,
                pki.ca_cert,
                pki.client_cert("admin"),
                pki.client_key("admin"),
                embed=True,
            )
            self.kubeconfig_text = yaml.safe_dump(config, sort_keys=False)
            write_private(self.kubeconfig_path, self.kubeconfig_text)
            if self.real_node is not None:
                self.real_node.start(cp, say, started + opts.ready_timeout)
            elif opts.node_agent:
                self.start_agent(cp)

        cp.start(say, timeout=opts.ready_timeout, on_api_ready=api_ready)
        self.wait_usable(cp, started + opts.ready_timeout)
        say(
            f"ready in {time.monotonic() - started:.1f}s: {cp.server}, "
            f"{'1 real node' if self.real_node else f'{opts.nodes} node(s)'}, "
            f"data in {self.data_dir}"
        )

    def prepare_real_node(self, cp: ControlPlane) -> None:
        """Build the node's tools, take the machine's real-node lock, set up the bridge."""
        from kyklos.sandbox.controlplane import SERVICE_IP
        from kyklos.sandbox.pki import ensure_pki
        from kyklos.sandbox.realnode import config
        from kyklos.sandbox.realnode.build import ensure_node_built
        from kyklos.sandbox.realnode.node import NodeError, RealNode

        try:
            node_binaries = ensure_node_built(say)
        except BuildError as exc:
            raise SandboxError(f"cannot build the real node: {exc}") from None
        node = RealNode(self.data_dir, node_binaries)
        try:
            node.prepare(say)
        except NodeError as exc:
            raise UnsupportedHostError(str(exc)) from None
        self.real_node = node
        pki = ensure_pki(cp.pki.directory, SERVICE_IP, extra_ips=(config.NODE_IP,))
        cp.bind_address = config.NODE_IP
        cp.apiserver_extra_args = node.apiserver_args(pki)

    def start_agent(self, cp: ControlPlane) -> None:
        """Start the node agent as a child that dies with serve."""
        argv = [
            sys.executable,
            "-m",
            NODE_AGENT_MODULE,
            "--kubeconfig",
            str(cp.admin_kubeconfig),
            "--nodes",
            str(self.options.nodes),
            "--data-dir",
            str(self.data_dir),
            "--parent-pid",
            str(os.getpid()),
        ]
        if self.options.kubelet_policy is not None:
            argv += ["--policy", str(self.options.kubelet_policy.resolve())]
        # SIGTERM, not SIGKILL, on serve's death: the agent then stops its pods itself.
        self.agent = spawn(argv, self.agent_log, death_signal=signal.SIGTERM)

    def wait_usable(self, cp: ControlPlane, deadline: float) -> None:
        """Wait for the Ready nodes and the default ServiceAccount (pods need it)."""
        context = cp.client_tls()
        since = time.time() - (time.monotonic() - self.started)
        want_nodes = self.options.nodes if self.options.node_agent else 0
        if self.real_node is not None:
            want_nodes = 1
        while True:
            self.check_children()
            nodes = _api_get(cp, context, "/api/v1/nodes") if want_nodes else None
            ready = _ready_nodes(nodes, since) if want_nodes else []
            account = _api_get(cp, context, "/api/v1/namespaces/default/serviceaccounts/default")
            if len(ready) >= want_nodes and account is not None:
                say(
                    f"{len(ready)} node(s) Ready, default ServiceAccount present "
                    f"({time.monotonic() - self.started:.1f}s)"
                )
                return
            if time.monotonic() > deadline:
                what = (
                    f"{len(ready)} of {want_nodes} nodes Ready"
                    if len(ready) < want_nodes
                    else "no default ServiceAccount (kube-controller-manager)"
                )
                node_log = self.real_node.kubelet_log if self.real_node else self.agent_log
                log = node_log if len(ready) < want_nodes else cp.log("kube-controller-manager")
                raise ComponentError(
                    f"the cluster did not become usable: {what}; last lines of {log}:\n"
                    f"{log_tail(log)}"
                )
            time.sleep(0.2)

    def check_children(self) -> None:
        """Raise ComponentError if any child has exited."""
        cp = self.control_plane
        if cp is not None:
            gone = cp.exited()
            if gone is not None:
                raise ComponentError(
                    f"{gone.name} exited with code {gone.proc.returncode}; "
                    f"last lines of {gone.log}:\n{log_tail(gone.log)}"
                )
        if self.real_node is not None:
            node_gone = self.real_node.exited()
            if node_gone is not None:
                raise ComponentError(
                    f"{node_gone.name} exited with code {node_gone.proc.returncode}; "
                    f"last lines of {node_gone.log}:\n{log_tail(node_gone.log)}"
                )
        if self.agent is not None and self.agent.poll() is not None:
            raise ComponentError(
                f"the node agent exited with code {self.agent.returncode}; "
                f"last lines of {self.agent_log}:\n{log_tail(self.agent_log)}"
            )

    def stop(self) -> None:
        """Stop every child, remove the kubeconfig and (without --data-dir) the data dir."""
        if self.agent is not None:
            # The agent stops its pods (SIGTERM, then SIGKILL after their grace period).
            stop_all([self.agent], grace=35.0)
            self.agent = None
        if self.real_node is not None:
            # Before the control plane, and before a temporary data dir is removed: the node's
            # mounts live under it.
            self.real_node.stop(say)
            self.real_node = None
        if self.control_plane is not None:
            self.control_plane.stop()
        if self.kubeconfig_text is not None:
            try:
                if self.kubeconfig_path.read_text() == self.kubeconfig_text:
                    self.kubeconfig_path.unlink()
            except OSError:
                pass
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        if self.watchdog is not None:
            assert self.watchdog.stdin is not None
            self.watchdog.stdin.close()  # EOF: the watchdog sweeps up anything left and exits
            try:
                self.watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.watchdog.kill()
                self.watchdog.wait()


def serve(options: ServeOptions) -> int:
    """Run the sandbox until a signal; return the exit code."""

    def on_signal(signum: int, _frame: types.FrameType | None) -> None:
        raise _Stop(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    sandbox = Sandbox(options)
    code = 0
    try:
        sandbox.start()
        print(f"kubeconfig: {sandbox.kubeconfig_path}", flush=True)
        while True:
            time.sleep(0.5)
            if sandbox.control_plane is not None:  # `kyklos sandbox restart` requests
                serve_restart_requests(sandbox.control_plane, say)
            sandbox.check_children()
    except _Stop:
        say("stopping")
    except (SandboxError, ComponentError) as exc:
        print(f"kyklos sandbox serve: {exc}", file=sys.stderr, flush=True)
        code = exc.exit_code if isinstance(exc, SandboxError) else 1
    except OSError as exc:  # e.g. an unwritable --kubeconfig or --data-dir
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"kyklos sandbox serve: {exc.strerror or exc}{where}", file=sys.stderr, flush=True)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not abort the clean-up
        sandbox.stop()
    return code
