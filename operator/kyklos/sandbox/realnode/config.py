"""Configuration of the real node's components, rendered from a few names and paths (pure).

Networking stays on the machine: pods sit on a bridge the sandbox creates (``BRIDGE``), whose
address is also where the API server, the kubelet and CoreDNS listen; pods get no default route
(only the pod subnet, on-link, and the service range through the bridge), the bridge plugin
masquerades nothing, and containerd resolves every registry to a closed loopback port so a pull
of an image that is not local fails at once without a lookup or a connection leaving the host.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

BRIDGE = "kyklos0"
POD_CIDR = "10.244.0.0/24"
NODE_IP = "10.244.0.1"  # the bridge's address: the node's InternalIP, API server, kubelet, DNS
SERVICE_CIDR = "10.96.0.0/16"  # kyklos.sandbox.controlplane.SERVICE_CIDR
DNS_SERVICE_IP = "10.96.0.10"
CLUSTER_DOMAIN = "cluster.local"
NODE_NAME = "kyklos-real-node"
CGROUP_PARENT = "kyklos-real-node"  # the kubelet's cgroupRoot: every pod cgroup lives under it
PAUSE_IMAGE = "localhost/kyklos/pause:3.10.2"
# Where containerd sends every pull: a loopback port nothing listens on (tcpmux, reserved).
# The connection is refused at once; no name is looked up and nothing leaves the machine.
NOWHERE_REGISTRY = "http://127.0.0.1:1"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
CNI_NETWORK = "kyklos-real-node"


@dataclass(frozen=True)
class NodeLayout:
    """Every path the node's components use, all under ``<data dir>/node`` but ``store``."""

    root: Path
    #: containerd's root (its images) when kept outside the node root (``store.py``).
    store: Path | None = None

    @property
    def containerd_root(self) -> Path:
        return self.store or self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_config(self) -> Path:
        return self.root / "containerd" / "config.toml"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def registry_hosts(self) -> Path:
        return self.root / "containerd" / "hosts.d"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def cni_state(self) -> Path:
        return self.root / "cni" / "state"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def kubelet_config(self) -> Path:
        return self.root / "kubelet-config.yaml"

    @property
    def pod_logs(self) -> Path:
        return self.root / "pod-logs"

    @property
    def resolv_conf(self) -> Path:
        return self.root / "resolv.conf"

    @property
    def kube_proxy_config(self) -> Path:
        return self.root / "kube-proxy-config.yaml"

    @property
    def corefile(self) -> Path:
        return self.root / "Corefile"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def kubeconfig(self, user: str) -> Path:
        """Kubeconfig of one node component (kubelet, kube-proxy, coredns)."""
        return self.root / f"{user}.kubeconfig"


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid TOML basic string


def containerd_config(layout: NodeLayout, runc: str, cni_bin_dirs: list[str]) -> str:
    """containerd v2 configuration (version 3 format, accepted and migrated by v2.4).

    ``restrict_oom_score_adj``: the machine lacks CAP_SYS_RESOURCE, and runc cannot give the
    pause container the kubelet's -998 (docs/real-node.md, blocker 1). NRI is disabled (it
    would create /run/nri); network namespaces live under the state dir, not /run/netns.
    """
    state = layout.containerd_state
    sock = layout.containerd_socket
    lines = [
        "version = 3",
        f"root = {_toml_str(str(layout.containerd_root))}",
        f"state = {_toml_str(str(state))}",
        f"temp = {_toml_str(str(layout.root / 'containerd' / 'tmp'))}",
        'disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp",'
        ' "io.containerd.internal.v1.tracing"]',
        "",
        "[grpc]",
        f"  address = {_toml_str(str(sock))}",
        "",
        "[ttrpc]",
        f"  address = {_toml_str(str(sock) + '.ttrpc')}",
        "",
        "[plugins.'io.containerd.internal.v1.opt']",
        f"  path = {_toml_str(str(layout.root / 'containerd' / 'opt'))}",
        "",
        "[plugins.'io.containerd.cri.v1.images']",
        "  snapshotter = 'overlayfs'",
        "",
        "[plugins.'io.containerd.cri.v1.images'.pinned_images]",
        f"  sandbox = {_toml_str(PAUSE_IMAGE)}",
        "",
        "[plugins.'io.containerd.cri.v1.images'.registry]",
        f"  config_path = {_toml_str(str(layout.registry_hosts))}",
        "",
        "[plugins.'io.containerd.cri.v1.runtime']",
        "  restrict_oom_score_adj = true",
        "  netns_mounts_under_state_dir = true",
        "  enable_unprivileged_ports = true",
        "  enable_unprivileged_icmp = true",
        "  cdi_spec_dirs = []",
        "",
        "[plugins.'io.containerd.cri.v1.runtime'.containerd]",
        "  default_runtime_name = 'runc'",
        "",
        "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]",
        "  runtime_type = 'io.containerd.runc.v2'",
        "",
        "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]",
        f"  BinaryName = {_toml_str(runc)}",
        f"  Root = {_toml_str(str(state / 'runc'))}",
        "",
        "[plugins.'io.containerd.cri.v1.runtime'.cni]",
        "  bin_dirs = [" + ", ".join(_toml_str(d) for d in cni_bin_dirs) + "]",
        f"  conf_dir = {_toml_str(str(layout.cni_conf_dir))}",
        "  max_conf_num = 1",
        "",
        "[plugins.'io.containerd.grpc.v1.cri']",
        "  disable_tcp_service = true",
        "  stream_server_address = '127.0.0.1'",
        "  stream_server_port = '0'",
        "",
    ]
    return "\n".join(lines)


def registry_hosts_toml() -> str:
    """``_default/hosts.toml``: every registry is the closed loopback port (pulls fail at once)."""
    return (
        "# Every registry resolves to a closed loopback port: a pull of an image that is not\n"
        "# in containerd already fails at once, and no lookup or connection leaves the machine.\n"
        f"server = {_toml_str(NOWHERE_REGISTRY)}\n"
    )


def cni_conflist(layout: NodeLayout) -> dict[str, object]:
    """Bridge network: no masquerade, no default route, the service range via the bridge."""
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "isDefaultGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.cni_state),
                    "ranges": [[{"subnet": POD_CIDR, "gateway": NODE_IP}]],
                    "routes": [{"dst": SERVICE_CIDR, "gw": NODE_IP}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}, "snat": False},
            {"type": "loopback"},
        ],
    }


def kubelet_config(
    layout: NodeLayout,
    *,
    ca_file: Path,
    tls_cert: Path,
    tls_key: Path,
    port: int,
    healthz_port: int,
) -> dict[str, object]:
    """KubeletConfiguration: client-cert + webhook authn, Webhook authz, this machine's quirks.

    ``failCgroupV1: false``, ``cgroupfs`` and ``failSwapOn: false`` are what the machine needs
    (docs/real-node.md, blocker 2). The kubelet serves on the bridge address only.
    """
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "tlsCertFile": str(tls_cert),
        "tlsPrivateKeyFile": str(tls_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca_file)},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": "/" + CGROUP_PARENT,
        "failCgroupV1": False,
        "failSwapOn": False,
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        "clusterDomain": CLUSTER_DOMAIN,
        "clusterDNS": [DNS_SERVICE_IP],
        "resolvConf": str(layout.resolv_conf),
        "podLogsDir": str(layout.pod_logs),
        "serializeImagePulls": False,
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "5%",
            "imagefs.available": "5%",
        },
        "imageGCHighThresholdPercent": 95,
        "imageGCLowThresholdPercent": 90,
        "maxPods": 110,
        "podCIDR": POD_CIDR,
    }


def kube_proxy_config(
    layout: NodeLayout, *, healthz_port: int, metrics_port: int
) -> dict[str, object]:
    """KubeProxyConfiguration: iptables mode, node ports on the bridge only, conntrack untouched."""
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "mode": "iptables",
        "clientConnection": {"kubeconfig": str(layout.kubeconfig("kube-proxy"))},
        "hostnameOverride": NODE_NAME,
        "bindAddress": "127.0.0.1",
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "clusterCIDR": POD_CIDR,
        "nodePortAddresses": [f"{NODE_IP}/32"],
        # Leave the host's conntrack sysctls alone (kube-proxy would raise the table size).
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
        "oomScoreAdj": 0,
    }


def corefile(layout: NodeLayout, *, health_port: int, ready_port: int) -> str:
    """CoreDNS: the cluster domain from the API server; every other name is refused.

    No ``forward`` plugin: a pod's lookup of an outside name must not leave the machine.
    """
    return (
        f"{CLUSTER_DOMAIN}:53 in-addr.arpa:53 ip6.arpa:53 {{\n"
        f"    bind {NODE_IP}\n"
        "    errors\n"
        f"    health 127.0.0.1:{health_port}\n"
        f"    ready 127.0.0.1:{ready_port}\n"
        f"    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{\n"
        f"        kubeconfig {layout.kubeconfig('coredns')} kyklos-sandbox\n"
        "        pods insecure\n"
        "        fallthrough in-addr.arpa ip6.arpa\n"
        "        ttl 5\n"
        "    }\n"
        "    cache 5\n"
        "    loadbalance\n"
        "}\n"
    )


def resolv_conf() -> str:
    """The resolv.conf the kubelet hands to ``dnsPolicy: Default`` pods: cluster DNS only."""
    return f"nameserver {DNS_SERVICE_IP}\noptions ndots:5\n"
