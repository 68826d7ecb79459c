"""Start and supervise etcd, kube-apiserver, kube-controller-manager and kube-scheduler.

Layout of the data dir (the node agent shares the top level; everything here is under
``controlplane/``)::

    controlplane/pki/                 CA, serving and client certificates, SA keys (pki.py)
    controlplane/etcd/                etcd's data
    controlplane/logs/<component>.log each component's stdout and stderr
    controlplane/audit-policy.yaml    Metadata level for every request
    controlplane/audit.log            the API server's audit log (JSON lines)
    controlplane/*.kubeconfig         admin, controller-manager, scheduler credentials
    controlplane/ports.json           ports chosen for etcd (reused by a persistent data dir)

Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import base64
import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kyklos.sandbox.build import ControlPlaneBinaries
from kyklos.sandbox.pki import Pki, ensure_pki
from kyklos.sandbox.procs import log_tail, spawn, stop_all

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"  # first address of the range: the `kubernetes` Service
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
CLUSTER_NAME = "kyklos-sandbox"

AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [{"level": "Metadata"}],
}

Progress = Callable[[str], None]


class ComponentError(Exception):
    """A component failed to start or become healthy; the message names it and its log tail."""


class PortInUseError(ComponentError):
    """A requested port is taken."""


class PortClashError(PortInUseError):
    """A component could not bind the port picked for it (someone took it meanwhile)."""


_Plan = tuple[list[str], str, ssl.SSLContext | None]  # argv, health URL, TLS context


@dataclass
class _Launch:
    component: Component
    url: str
    context: ssl.SSLContext | None
    plan: Callable[[], _Plan]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """True when 127.0.0.1:``port`` can be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def kubeconfig(server: str, ca: Path, cert: Path, key: Path, *, embed: bool) -> dict[str, object]:
    """A kubeconfig for one client-certificate user, with the files embedded or referenced."""
    if embed:
        cluster = {"server": server, "certificate-authority-data": _b64(ca)}
        user = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}
    else:
        cluster = {"server": server, "certificate-authority": str(ca)}
        user = {"client-certificate": str(cert), "client-key": str(key)}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": cluster}],
        "users": [{"name": CLUSTER_NAME, "user": user}],
        "contexts": [
            {"name": CLUSTER_NAME, "context": {"cluster": CLUSTER_NAME, "user": CLUSTER_NAME}}
        ],
        "current-context": CLUSTER_NAME,
        "preferences": {},
    }


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (it holds credentials)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o600)
    tmp.replace(path)


@dataclass
class Component:
    """One running control-plane process."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class ControlPlane:
    """The running control plane: where it listens and how to reach it."""

    data_dir: Path
    binaries: ControlPlaneBinaries
    api_port: int = 0
    components: list[Component] = field(default_factory=list)
    # The real node (kyklos.sandbox.realnode) has the API server listen on its bridge address,
    # so pods reach it through the `kubernetes` Service, and adds kubelet-client flags.
    bind_address: str = "127.0.0.1"
    apiserver_extra_args: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return self.data_dir / "controlplane"

    @property
    def pki(self) -> Pki:
        return Pki(self.root / "pki")

    @property
    def server(self) -> str:
        return f"https://{self.bind_address}:{self.api_port}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.root / "admin.kubeconfig"

    @property
    def audit_log(self) -> Path:
        return self.root / "audit.log"

    def log(self, name: str) -> Path:
        """Log file of one component."""
        return self.root / "logs" / f"{name}.log"

    # ----------------------------------------------------------------- start-up

    def start(
        self,
        say: Progress,
        *,
        timeout: float = 120.0,
        on_api_ready: Callable[[], None] | None = None,
    ) -> None:
        """Start every component and wait until each is healthy (raises ComponentError).

        ``on_api_ready`` runs as soon as the API server is ready, so clients (the node agent)
        start in parallel with the controller manager and the scheduler. Ports picked here
        are free when picked but may be taken before the component binds them (other
        sandboxes start on the same machine); a component that loses that race is restarted
        on a new port.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        loopback = self.bind_address == "127.0.0.1"
        pki = ensure_pki(
            self.pki.directory, SERVICE_IP, extra_ips=() if loopback else (self.bind_address,)
        )
        explicit_port = self.api_port != 0
        if explicit_port and not port_is_free(self.api_port):
            raise PortInUseError(
                f"port {self.api_port} on 127.0.0.1 is already in use "
                "(pick another with --port, or --port 0 for a free one)"
            )
        started = time.monotonic()
        deadline = started + timeout
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # their self-signed serving certs; /healthz only
        etcd_client = 0
        attempts = 0

        def plan_etcd() -> _Plan:
            nonlocal etcd_client
            client, peer = self._etcd_ports(fresh=attempts > 0)
            etcd_client = client
            return self._etcd_args(client, peer), f"http://127.0.0.1:{client}/health", None

        def plan_api() -> _Plan:
            if not explicit_port:
                self.api_port = free_port()
            self._write_configs(pki)
            args = self._apiserver_args(pki, etcd_client)
            return args, f"{self.server}/readyz", self.client_tls()

        def plan_kcm() -> _Plan:
            port = free_port()
            return self._kcm_args(pki, port), f"https://127.0.0.1:{port}/healthz", insecure

        def plan_scheduler() -> _Plan:
            port = free_port()
            return self._scheduler_args(port), f"https://127.0.0.1:{port}/healthz", insecure

        etcd = self._launch("etcd", plan_etcd)
        attempts = 1
        self._await(etcd, deadline)
        say(f"etcd ready on 127.0.0.1:{etcd_client} ({time.monotonic() - started:.1f}s)")
        api = self._launch("kube-apiserver", plan_api)
        self._await(api, deadline, retriable=not explicit_port)
        say(f"kube-apiserver ready on {self.server} ({time.monotonic() - started:.1f}s)")
        # Only now: both exit at once if their bootstrap RBAC roles do not exist yet.
        kcm = self._launch("kube-controller-manager", plan_kcm)
        sched = self._launch("kube-scheduler", plan_scheduler)
        if on_api_ready is not None:
            on_api_ready()
        self._await(kcm, deadline)
        self._await(sched, deadline)
        say(
            "kube-controller-manager and kube-scheduler healthy "
            f"({time.monotonic() - started:.1f}s)"
        )

    def _launch(self, name: str, plan: Callable[[], _Plan]) -> _Launch:
        argv, url, context = plan()
        return _Launch(self._spawn(name, argv), url, context, plan)

    def _await(self, launch: _Launch, deadline: float, *, retriable: bool = True) -> None:
        for attempt in range(3):
            try:
                self._wait_http(launch.component, launch.url, launch.context, deadline)
                return
            except PortClashError:
                if not retriable or attempt == 2:
                    raise
                self.components.remove(launch.component)
                stop_all([launch.component.proc], grace=5)
                launch = self._launch(launch.component.name, launch.plan)

    def client_tls(self) -> ssl.SSLContext:
        """TLS context that trusts the sandbox CA and presents the admin certificate."""
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(
            str(self.pki.client_cert("admin")), str(self.pki.client_key("admin"))
        )
        return context

    def _etcd_ports(self, *, fresh: bool = False) -> tuple[int, int]:
        # A persistent data dir keeps etcd's ports, since etcd stores its peer URL in its data.
        ports_file = self.root / "ports.json"
        try:
            saved = json.loads(ports_file.read_text())
            client, peer = int(saved["etcdClient"]), int(saved["etcdPeer"])
            if not fresh and port_is_free(client) and port_is_free(peer):
                return client, peer
        except (OSError, ValueError, KeyError, TypeError):
            pass
        client, peer = free_port(), free_port()
        ports_file.write_text(json.dumps({"etcdClient": client, "etcdPeer": peer}))
        return client, peer

    def _write_configs(self, pki: Pki) -> None:
        ca = pki.ca_cert
        for name in ("admin", "controller-manager", "scheduler"):
            config = kubeconfig(
                self.server, ca, pki.client_cert(name), pki.client_key(name), embed=name == "admin"
            )
            write_private(self.root / f"{name}.kubeconfig", yaml.safe_dump(config, sort_keys=False))
        (self.root / "audit-policy.yaml").write_text(yaml.safe_dump(AUDIT_POLICY, sort_keys=False))

    def _etcd_args(self, client: int, peer: int) -> list[str]:
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        return [
            str(self.binaries.path("etcd")),
            "--name=sandbox",
            f"--data-dir={self.root / 'etcd'}",
            f"--listen-client-urls={client_url}",
            f"--advertise-client-urls={client_url}",
            f"--listen-peer-urls={peer_url}",
            f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=sandbox={peer_url}",
            # A throwaway local cluster: durability on power loss is not worth the fsync cost.
            "--unsafe-no-fsync",
            "--log-level=warn",
            "--quota-backend-bytes=8589934592",
        ]

    def _apiserver_args(self, pki: Pki, etcd_client: int) -> list[str]:
        # The lease reconciler refuses a loopback address for the `kubernetes` Service's
        # endpoints; with the node agent nothing reaches the API server through that Service.
        # On the real node's bridge address it keeps real endpoints, which pods use.
        reconciler = "none" if self.bind_address == "127.0.0.1" else "lease"
        return [
            str(self.binaries.path("kube-apiserver")),
            f"--etcd-servers=http://127.0.0.1:{etcd_client}",
            f"--bind-address={self.bind_address}",
            f"--advertise-address={self.bind_address}",
            f"--endpoint-reconciler-type={reconciler}",
            f"--secure-port={self.api_port}",
            f"--tls-cert-file={pki.apiserver_cert}",
            f"--tls-private-key-file={pki.apiserver_key}",
            f"--client-ca-file={pki.ca_cert}",
            "--authorization-mode=Node,RBAC",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki.sa_pub}",
            f"--service-account-signing-key-file={pki.sa_key}",
            f"--audit-policy-file={self.root / 'audit-policy.yaml'}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",  # never rotate: tests read one file from the start
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
            *self.apiserver_extra_args,
        ]

    def _kcm_args(self, pki: Pki, port: int) -> list[str]:
        config = str(self.root / "controller-manager.kubeconfig")
        return [
            str(self.binaries.path("kube-controller-manager")),
            f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.root / 'controller-manager-certs'}",
            "--controllers=*",
            "--use-service-account-credentials=true",
            f"--root-ca-file={pki.ca_cert}",
            f"--service-account-private-key-file={pki.sa_key}",
            f"--cluster-signing-cert-file={pki.ca_cert}",
            f"--cluster-signing-key-file={pki.ca_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cluster-name={CLUSTER_NAME}",
            # One instance only: leader election would just delay start-up (and a restart
            # on a persistent data dir would wait for the previous lease to expire).
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]

    def _scheduler_args(self, port: int) -> list[str]:
        config = str(self.root / "scheduler.kubeconfig")
        return [
            str(self.binaries.path("kube-scheduler")),
            f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}",
            f"--authorization-kubeconfig={config}",
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={self.root / 'scheduler-certs'}",
            "--leader-elect=false",
            "--profiling=false",
            "--v=1",
        ]

    def _spawn(self, name: str, argv: list[str]) -> Component:
        log = self.log(name)
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as handle:
            handle.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n")
        component = Component(name, spawn(argv, log), log)
        self.components.append(component)
        return component

    def _wait_http(
        self, component: Component, url: str, context: ssl.SSLContext | None, deadline: float
    ) -> None:
        last = "no answer yet"
        while True:
            code = component.proc.poll()
            if code is not None:
                raise ComponentError(
                    f"{component.name} exited with code {code} during start-up; "
                    f"last lines of {component.log}:\n{self._tail(component)}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2, context=context) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
            if time.monotonic() > deadline:
                raise ComponentError(
                    f"{component.name} did not become healthy ({url}: {last}); "
                    f"last lines of {component.log}:\n{self._tail(component)}"
                )
            time.sleep(0.1)

    def _tail(self, component: Component) -> str:
        tail = log_tail(component.log)
        if "address already in use" in tail.rsplit("\n--- ", 1)[-1]:
            if component.name == "kube-apiserver":
                raise PortClashError(
                    f"port {self.api_port} on 127.0.0.1 is already in use "
                    "(pick another with --port, or --port 0 for a free one)"
                )
            raise PortClashError(f"{component.name} lost its port to another process:\n{tail}")
        return tail

    # ------------------------------------------------------------- supervision

    def exited(self) -> Component | None:
        """The first component that has exited, if any."""
        for component in self.components:
            if component.proc.poll() is not None:
                return component
        return None

    def stop(self, grace: float = 10.0) -> None:
        """Stop every component: the clients first, etcd last (so nothing loses its store)."""
        order = ["kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
        by_name = {c.name: c for c in self.components}
        clients = [by_name[n].proc for n in order[:2] if n in by_name]
        stop_all(clients, grace)
        for name in order[2:]:
            if name in by_name:
                stop_all([by_name[name].proc], grace)
        self.components.clear()
