"""Start, supervise and stop the real node: containerd, kubelet, kube-proxy and CoreDNS.

Order: ``preflight`` (root, overlayfs, packages; before anything is changed), ``prepare``
(take the machine's real-node lock, clean up after a crashed run, record the host, create the
bridge) before the control plane starts — the API server listens on the bridge address —
then ``start`` once the API server is ready: certificates from the sandbox CA, containerd,
the pause image, kubelet, kube-proxy, CoreDNS and the ``kube-dns`` Service. ``stop`` stops
them and restores the host (``host.restore``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kyklos.sandbox.controlplane import (
    Component,
    ComponentError,
    ControlPlane,
    free_port,
    kubeconfig,
    write_private,
)
from kyklos.sandbox.pki import Pki, issue_from_ca
from kyklos.sandbox.procs import log_tail, spawn, stop_all
from kyklos.sandbox.realnode import config
from kyklos.sandbox.realnode.build import (
    PACKAGES,
    NodeBinaries,
    first_existing,
    missing_packages,
)
from kyklos.sandbox.realnode.host import HostChanges, HostError, kill_pod_processes, restore
from kyklos.sandbox.realnode.pause import pause_archive
from kyklos.sandbox.realnode.store import close_store, open_store, store_dir, store_inputs

Say = Callable[[str], None]


class NodeError(Exception):
    """The real node cannot run on this machine; one line naming the cause and what to do."""


def preflight() -> None:
    """Root, the Debian packages, overlayfs; raise NodeError naming what is missing."""
    if os.geteuid() != 0:
        raise NodeError(
            "--node real needs root (it runs containerd, runc and a kubelet and changes "
            "network settings); run as root, or use the default process node agent"
        )
    missing = missing_packages()
    if missing:
        raise NodeError(
            f"--node real needs the Debian packages {' '.join(missing)}: "
            f"apt-get install -y {' '.join(missing)} (or `make node-deps` as root)"
        )
    try:
        filesystems = Path("/proc/filesystems").read_text()
    except OSError:
        filesystems = ""
    if "overlay" not in filesystems.split():
        raise NodeError(
            "--node real needs the overlay filesystem (containerd's overlayfs snapshotter); "
            "this kernel has none (load the overlay module)"
        )
    if not Path("/proc/sys/net/bridge").is_dir():
        raise NodeError(
            "--node real needs bridge netfilter (net.bridge.* sysctls): load the br_netfilter "
            "kernel module"
        )


def _cni_bin_dirs() -> list[str]:
    return [d for d in config.CNI_BIN_DIRS if Path(d, "bridge").exists()]


@dataclass
class RealNode:
    """The one real node of a sandbox."""

    data_dir: Path
    binaries: NodeBinaries
    components: list[Component] = field(default_factory=list)
    host: HostChanges | None = None
    started: bool = False
    #: The containerd store was kept from an earlier start (its images are there already).
    store_kept: bool = False

    @property
    def layout(self) -> config.NodeLayout:
        return config.NodeLayout(self.data_dir / "node", store=store_dir(self.binaries))

    def prepare(self, say: Say) -> None:
        """Take the machine's lock, clean up a crashed run, record the host, add the bridge."""
        host = HostChanges(self.data_dir)
        try:
            host.acquire(say)
        except HostError as exc:
            raise NodeError(str(exc)) from None
        self.host = host
        # A previous run on this data dir may have left mounts (its journal restored them
        # if it crashed); the node's own state is rebuilt from scratch every start.
        shutil.rmtree(self.layout.root, ignore_errors=True)
        self.layout.root.mkdir(parents=True)
        # containerd's store (images) is kept from the last clean stop when its inputs match.
        self.store_kept = open_store(store_dir(self.binaries), store_inputs(self.binaries))
        host.record_before_start()
        try:
            host.set_up()
        except HostError as exc:
            raise NodeError(str(exc)) from None

    # ---------------------------------------------------------------- pki

    def _certs(self, pki: Pki) -> dict[str, tuple[Path, Path]]:
        directory = self.layout.pki
        hostname = socket.gethostname()
        return {
            "kubelet": issue_from_ca(
                pki, directory, "kubelet", (f"system:node:{config.NODE_NAME}", "system:nodes")
            ),
            "kubelet-serving": issue_from_ca(
                pki,
                directory,
                "kubelet-serving",
                (config.NODE_NAME, None),
                server_names=[config.NODE_NAME, hostname],
                server_ips=[config.NODE_IP],
                client=False,
            ),
            "kube-proxy": issue_from_ca(pki, directory, "kube-proxy", ("system:kube-proxy", None)),
            # CoreDNS reads Services, EndpointSlices, Pods and Namespaces cluster-wide; in a
            # throwaway sandbox it uses an admin identity rather than a hand-written role.
            "coredns": issue_from_ca(
                pki, directory, "coredns", ("kyklos-sandbox-coredns", "system:masters")
            ),
        }

    def apiserver_args(self, pki: Pki) -> list[str]:
        """The API server's kubelet client: a CA-signed certificate, and the kubelet's CA."""
        cert, key = issue_from_ca(
            pki,
            self.layout.pki,
            "apiserver-kubelet-client",
            ("kube-apiserver-kubelet-client", "system:masters"),
        )
        return [
            f"--kubelet-client-certificate={cert}",
            f"--kubelet-client-key={key}",
            f"--kubelet-certificate-authority={pki.ca_cert}",
            "--kubelet-preferred-address-types=InternalIP",
        ]

    # ---------------------------------------------------------------- start

    def start(self, cp: ControlPlane, say: Say, deadline: float) -> None:
        """Start containerd, load pause, start kubelet, kube-proxy and CoreDNS."""
        layout = self.layout
        pki = cp.pki
        certs = self._certs(pki)
        for user in ("kubelet", "kube-proxy", "coredns"):
            cert, key = certs[user]
            text = yaml.safe_dump(kubeconfig(cp.server, pki.ca_cert, cert, key, embed=False))
            write_private(layout.kubeconfig(user), text)
        started = time.monotonic()
        self._start_containerd(say, deadline)
        kept = self.store_kept and config.PAUSE_IMAGE in self._ctr("images", "ls", "-q").stdout
        if not kept:
            self._load_pause()
        say(
            f"containerd ready, pause image {'kept' if kept else 'loaded'} "
            f"({time.monotonic() - started:.1f}s)"
        )
        self._start_kubelet(pki, certs["kubelet-serving"])
        self._start_kube_proxy()
        self._start_coredns()
        self._ensure_dns_service(cp)
        self._ensure_current_api_endpoints(cp, deadline)
        self._spawn(
            "storage",
            [
                sys.executable,
                "-m",
                "kyklos.sandbox.realnode.storage",
                "--kubeconfig",
                str(cp.admin_kubeconfig),
                "--data-dir",
                str(self.data_dir),
                "--parent-pid",
                str(os.getpid()),
            ],
        )
        self.started = True

    def _env(self) -> dict[str, str]:
        # containerd finds containerd-shim-runc-v2 on PATH; the CNI portmap plugin needs iptables.
        path = os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        return {**os.environ, "PATH": f"{self.binaries.directory}:{path}:/usr/sbin:/sbin"}

    def _spawn(self, name: str, argv: list[str]) -> Component:
        log = self.layout.logs / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as handle:
            handle.write(f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(argv)}\n")
        component = Component(name, spawn(argv, log, env=self._env()), log)
        self.components.append(component)
        return component

    def _start_containerd(self, say: Say, deadline: float) -> None:
        layout = self.layout
        runc = first_existing(PACKAGES["runc"])
        for directory in (layout.containerd_root, layout.containerd_state, layout.cni_conf_dir):
            directory.mkdir(parents=True, exist_ok=True)
        layout.containerd_config.write_text(config.containerd_config(layout, runc, _cni_bin_dirs()))
        default_hosts = layout.registry_hosts / "_default"
        default_hosts.mkdir(parents=True, exist_ok=True)
        (default_hosts / "hosts.toml").write_text(config.registry_hosts_toml())
        (layout.cni_conf_dir / "10-kyklos.conflist").write_text(
            json.dumps(config.cni_conflist(layout), indent=2) + "\n"
        )
        component = self._spawn(
            "containerd",
            [
                str(self.binaries.path("containerd")),
                "--config",
                str(layout.containerd_config),
                "--log-level",
                "warn",
            ],
        )
        while True:
            self._check(component)
            if layout.containerd_socket.exists() and self._ctr("version").returncode == 0:
                return
            if time.monotonic() > deadline:
                raise ComponentError(
                    f"containerd did not start; last lines of {component.log}:\n"
                    f"{log_tail(component.log)}"
                )
            time.sleep(0.1)

    def _ctr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                str(self.binaries.path("ctr")),
                "--address",
                str(self.layout.containerd_socket),
                "--namespace",
                "k8s.io",
                *args,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )

    def _load_pause(self) -> None:
        archive = self.layout.root / "pause.oci.tar"
        archive.write_bytes(
            pause_archive(self.binaries.path("pause").read_bytes(), config.PAUSE_IMAGE)
        )
        proc = self._ctr("images", "import", "--local", str(archive))
        if proc.returncode != 0:
            raise ComponentError(f"ctr could not import the pause image: {proc.stderr.strip()}")

    def _start_kubelet(self, pki: Pki, serving: tuple[Path, Path]) -> None:
        layout = self.layout
        layout.resolv_conf.write_text(config.resolv_conf())
        layout.pod_logs.mkdir(parents=True, exist_ok=True)
        layout.kubelet_root.mkdir(parents=True, exist_ok=True)
        kubelet_config = config.kubelet_config(
            layout,
            ca_file=pki.ca_cert,
            tls_cert=serving[0],
            tls_key=serving[1],
            port=free_port(),
            healthz_port=free_port(),
        )
        layout.kubelet_config.write_text(yaml.safe_dump(kubelet_config, sort_keys=False))
        self._spawn(
            "kubelet",
            [
                str(self.binaries.path("kubelet")),
                f"--config={layout.kubelet_config}",
                f"--kubeconfig={layout.kubeconfig('kubelet')}",
                f"--root-dir={layout.kubelet_root}",
                f"--cert-dir={layout.root / 'kubelet-pki'}",
                f"--hostname-override={config.NODE_NAME}",
                f"--node-ip={config.NODE_IP}",
                "--v=1",
            ],
        )

    def _start_kube_proxy(self) -> None:
        layout = self.layout
        proxy = config.kube_proxy_config(layout, healthz_port=free_port(), metrics_port=free_port())
        layout.kube_proxy_config.write_text(yaml.safe_dump(proxy, sort_keys=False))
        self._spawn(
            "kube-proxy",
            [
                str(self.binaries.path("kube-proxy")),
                f"--config={layout.kube_proxy_config}",
                "--v=1",
            ],
        )

    def _start_coredns(self) -> None:
        layout = self.layout
        layout.corefile.write_text(
            config.corefile(layout, health_port=free_port(), ready_port=free_port())
        )
        self._spawn("coredns", [str(self.binaries.path("coredns")), "-conf", str(layout.corefile)])

    def _ensure_dns_service(self, cp: ControlPlane) -> None:
        """The ``kube-dns`` Service (10.96.0.10) and its endpoints: CoreDNS on the bridge."""
        ports = [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ]
        labels = {"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"}
        service = {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {"clusterIP": config.DNS_SERVICE_IP, "ports": ports},
        }
        slice_ = {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": "kube-dns-real-node",
                "namespace": "kube-system",
                "labels": {**labels, "kubernetes.io/service-name": "kube-dns"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [config.NODE_IP], "conditions": {"ready": True}}],
            "ports": ports,
        }
        context = cp.client_tls()
        _create(cp.server, context, "/api/v1/namespaces/kube-system/services", service)
        _create(
            cp.server,
            context,
            "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
            slice_,
        )

    def _ensure_current_api_endpoints(self, cp: ControlPlane, deadline: float) -> None:
        """Wait until the ``kubernetes`` Service's endpoints name this API server's port.

        With a persistent data dir etcd still holds the previous run's endpoints (another
        port), which the API server's lease reconciler does not correct; pods would be
        refused. Stale ones are deleted and the reconciler writes them anew.
        """
        context = cp.client_tls()
        endpoints = "/api/v1/namespaces/default/endpoints/kubernetes"
        slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes"
        while True:
            current = _get(cp.server, context, endpoints)
            ports = [
                port.get("port")
                for subset in (current or {}).get("subsets", []) or []
                for port in subset.get("ports", []) or []
            ]
            slice_ = _get(cp.server, context, slices)
            slice_ports = [port.get("port") for port in (slice_ or {}).get("ports", []) or []]
            if cp.api_port in ports and cp.api_port in slice_ports:
                return
            if current is not None or slice_ is not None:
                for path in (endpoints, slices):
                    _delete(cp.server, context, path)
            if time.monotonic() > deadline:
                raise ComponentError(
                    "the kubernetes Service never got endpoints on port "
                    f"{cp.api_port} (kube-apiserver's endpoint reconciler)"
                )
            time.sleep(0.5)

    # ---------------------------------------------------------------- supervision

    def _check(self, component: Component) -> None:
        code = component.proc.poll()
        if code is not None:
            raise ComponentError(
                f"{component.name} exited with code {code}; last lines of {component.log}:\n"
                f"{log_tail(component.log)}"
            )

    def exited(self) -> Component | None:
        """The first node component that has exited, if any."""
        for component in self.components:
            if component.proc.poll() is not None:
                return component
        return None

    @property
    def kubelet_log(self) -> Path:
        return self.layout.logs / "kubelet.log"

    def stop(self, say: Say) -> None:
        """Stop the node's processes and pods, then restore the host and drop the lock."""
        by_name = {c.name: c for c in self.components}
        first = [
            by_name[n].proc for n in ("kubelet", "kube-proxy", "coredns", "storage") if n in by_name
        ]
        try:
            stop_all(first, grace=10.0)
            if self.host is not None:
                # Pods go before containerd, so its shims see their containers die.
                kill_pod_processes()
            if "containerd" in by_name:
                if by_name["containerd"].proc.poll() is None:
                    # The store keeps images only; the next start finds no old pods in it.
                    # (A failure leaves it marked in use: the next start rebuilds it.)
                    with contextlib.suppress(subprocess.SubprocessError, OSError):
                        close_store(
                            store_dir(self.binaries), store_inputs(self.binaries), self._ctr
                        )
                stop_all([by_name["containerd"].proc], grace=10.0)
        finally:
            # Whatever failed above, the host is restored (restore tolerates every absence).
            self.components.clear()
            if self.host is not None:
                restore(self.host.journal, say)
                self.host.release()
                self.host = None


def _create(server: str, context: ssl.SSLContext, path: str, body: Mapping[str, object]) -> None:
    """POST ``body`` unless it exists (a persistent data dir keeps it from the last run)."""
    metadata = body["metadata"]
    assert isinstance(metadata, dict)
    try:
        url = f"{server}{path}/{metadata['name']}"
        with urllib.request.urlopen(url, timeout=10, context=context):
            return
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise ComponentError(f"cannot read {path}: HTTP {exc.code}") from None
    request = urllib.request.Request(
        f"{server}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    for _attempt in range(50):
        try:
            with urllib.request.urlopen(request, timeout=10, context=context):
                return
        except urllib.error.HTTPError as exc:
            if exc.code == 409:
                return
            if exc.code == 404:  # kube-system not created yet by the API server
                time.sleep(0.2)
                continue
            detail = exc.read().decode("utf-8", "replace")[:300]
            raise ComponentError(f"cannot create {path}: HTTP {exc.code} {detail}") from None
    raise ComponentError(f"cannot create {path}: the namespace never appeared")


def _get(server: str, context: ssl.SSLContext, path: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"{server}{path}", timeout=10, context=context) as resp:
            data: dict[str, Any] = json.load(resp)
            return data
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise ComponentError(f"cannot read {path}: HTTP {exc.code}") from None


def _delete(server: str, context: ssl.SSLContext, path: str) -> None:
    request = urllib.request.Request(f"{server}{path}", method="DELETE")
    try:
        with urllib.request.urlopen(request, timeout=10, context=context):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise ComponentError(f"cannot delete {path}: HTTP {exc.code}") from None
