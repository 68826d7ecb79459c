"""The real node's pure parts: pinned modules, rendered configs, the pause archive, the journal."""

from __future__ import annotations

import hashlib
import io
import ipaddress
import json
import os
import re
import tarfile
import tomllib
from pathlib import Path

import pytest

from kyklos.sandbox.realnode import config
from kyklos.sandbox.realnode.build import BINARIES, fingerprint, pinned_node, source_dir
from kyklos.sandbox.realnode.host import Journal, _targets
from kyklos.sandbox.realnode.pause import pause_archive

HACK = Path(__file__).resolve().parents[3] / "hack"
LAYOUT = config.NodeLayout(Path("/data/node"))


def _requires(go_mod: str) -> list[str]:
    """Every require line of a go.mod (module path and version), comments dropped."""
    lines = []
    inside = False
    for raw in go_mod.splitlines():
        line = raw.split("//")[0].strip()
        if line.startswith("require ("):
            inside = True
            continue
        if inside and line == ")":
            inside = False
            continue
        if inside and line:
            lines.append(line)
        elif line.startswith("require ") and "(" not in line:
            lines.append(line.removeprefix("require ").strip())
    return sorted(lines)


def _replaces(go_mod: str) -> list[str]:
    return sorted(line.strip() for line in go_mod.splitlines() if "=>" in line)


def test_node_module_pins_exactly_the_control_planes_versions() -> None:
    node = (HACK / "node" / "go.mod").read_text()
    control = (HACK / "controlplane" / "go.mod").read_text()
    assert _requires(node) == _requires(control)
    assert _replaces(node) == _replaces(control)
    assert "k8s.io/kubernetes v1.37.2" in _requires(node)


def test_node_tools_are_cached_beside_the_control_plane(tmp_path: Path) -> None:
    node = pinned_node(source_dir(), tmp_path)
    assert node.directory == tmp_path / "node" / "v1.37.2"
    assert node.path("kubelet") == node.directory / "kubelet"
    with pytest.raises(KeyError):
        node.path("etcd")
    assert set(BINARIES) >= {"kubelet", "kube-proxy", "containerd", "coredns", "pause"}


def test_fingerprint_changes_when_a_pinned_module_changes(tmp_path: Path) -> None:
    for sub in ("", "containerd", "coredns"):
        (tmp_path / sub).mkdir(exist_ok=True)
        (tmp_path / sub / "go.mod").write_text(f"module {sub or 'node'}\n")
    before = fingerprint(tmp_path)
    (tmp_path / "containerd" / "go.mod").write_text("module containerd\nrequire x v2\n")
    assert fingerprint(tmp_path) != before


def test_containerd_config_keeps_every_path_under_the_data_dir() -> None:
    text = config.containerd_config(LAYOUT, "/usr/sbin/runc", ["/usr/lib/cni"])
    doc = tomllib.loads(text)
    assert doc["version"] == 3
    assert doc["grpc"]["address"] == "/data/node/containerd/containerd.sock"
    runtime = doc["plugins"]["io.containerd.cri.v1.runtime"]
    # The machine lacks CAP_SYS_RESOURCE: runc must not be asked for a negative oom_score_adj.
    assert runtime["restrict_oom_score_adj"] is True
    assert runtime["netns_mounts_under_state_dir"] is True
    assert runtime["cni"]["conf_dir"] == "/data/node/cni/net.d"
    images = doc["plugins"]["io.containerd.cri.v1.images"]
    assert images["pinned_images"]["sandbox"] == config.PAUSE_IMAGE
    assert images["registry"]["config_path"] == "/data/node/containerd/hosts.d"
    assert "io.containerd.nri.v1.nri" in doc["disabled_plugins"]
    paths = re.findall(r'"(/[^"]*)"', text)
    outside = [p for p in paths if not p.startswith("/data/node") and p != "/usr/sbin/runc"]
    assert outside == ["/usr/lib/cni"]


def test_every_pull_goes_to_a_closed_loopback_port() -> None:
    doc = tomllib.loads(config.registry_hosts_toml())
    server = doc["server"]
    host = re.match(r"https?://([^:/]+)", server)
    assert host is not None
    assert ipaddress.ip_address(host.group(1)).is_loopback  # no name to look up, no route out
    assert set(doc) == {"server"}  # no host entry could send a pull elsewhere


def test_pod_network_has_no_masquerade_and_no_default_route() -> None:
    conf = config.cni_conflist(LAYOUT)
    bridge = conf["plugins"][0]  # type: ignore[index]
    assert bridge["type"] == "bridge"
    assert bridge["ipMasq"] is False
    assert bridge["isDefaultGateway"] is False
    routes = bridge["ipam"]["routes"]
    assert routes == [{"dst": config.SERVICE_CIDR, "gw": config.NODE_IP}]
    assert all(r["dst"] not in ("0.0.0.0/0", "default") for r in routes)
    assert bridge["ipam"]["dataDir"].startswith("/data/node/")
    assert ipaddress.ip_address(config.NODE_IP) in ipaddress.ip_network(config.POD_CIDR)


def test_kubelet_authenticates_by_certificate_and_authorises_by_webhook() -> None:
    kubelet = config.kubelet_config(
        LAYOUT,
        ca_file=Path("/ca.crt"),
        tls_cert=Path("/k.crt"),
        tls_key=Path("/k.key"),
        port=1,
        healthz_port=2,
    )
    auth = kubelet["authentication"]
    assert auth == {
        "anonymous": {"enabled": False},
        "webhook": {"enabled": True},
        "x509": {"clientCAFile": "/ca.crt"},
    }
    assert kubelet["authorization"] == {"mode": "Webhook"}
    assert kubelet["readOnlyPort"] == 0
    assert kubelet["address"] == config.NODE_IP
    assert kubelet["failCgroupV1"] is False
    assert kubelet["cgroupRoot"] == "/" + config.CGROUP_PARENT
    assert kubelet["clusterDNS"] == [config.DNS_SERVICE_IP]
    assert str(kubelet["podLogsDir"]).startswith("/data/node/")


def test_kube_proxy_leaves_conntrack_alone_and_binds_node_ports_to_the_bridge() -> None:
    proxy = config.kube_proxy_config(LAYOUT, healthz_port=1, metrics_port=2)
    assert proxy["mode"] == "iptables"
    assert proxy["nodePortAddresses"] == [f"{config.NODE_IP}/32"]
    assert proxy["conntrack"] == {
        "maxPerCore": 0,
        "min": 0,
        "tcpEstablishedTimeout": "0s",
        "tcpCloseWaitTimeout": "0s",
    }


def test_corefile_answers_the_cluster_domain_and_forwards_nothing() -> None:
    text = config.corefile(LAYOUT, health_port=1, ready_port=2)
    assert "kubernetes cluster.local" in text
    assert f"bind {config.NODE_IP}" in text
    assert "forward" not in text and "proxy" not in text


def test_pause_archive_is_an_oci_layout_named_for_containerd() -> None:
    binary = b"\x7fELF fake pause"
    data = pause_archive(binary, "localhost/kyklos/pause:3.10.2")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    index = json.loads(files["index.json"])
    (manifest_desc,) = index["manifests"]
    assert manifest_desc["annotations"]["io.containerd.image.name"] == (
        "localhost/kyklos/pause:3.10.2"
    )
    manifest_blob = files["blobs/sha256/" + manifest_desc["digest"].split(":")[1]]
    assert hashlib.sha256(manifest_blob).hexdigest() == manifest_desc["digest"].split(":")[1]
    manifest = json.loads(manifest_blob)
    config_blob = json.loads(files["blobs/sha256/" + manifest["config"]["digest"].split(":")[1]])
    assert config_blob["config"]["Entrypoint"] == ["/pause"]
    layer = files["blobs/sha256/" + manifest["layers"][0]["digest"].split(":")[1]]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        member = tar.getmember("pause")
        assert member.mode == 0o755
        assert tar.extractfile(member).read() == binary  # type: ignore[union-attr]
    # Reproducible: the same binary gives the same bytes (and image digest).
    assert pause_archive(binary, "localhost/kyklos/pause:3.10.2") == data


def test_journal_round_trips_through_json() -> None:
    journal = Journal(
        pid=42,
        data_dir="/d",
        sysctls={"kernel.panic": "1"},
        created_paths=["/var/lib/kubelet"],
        iptables_before={"iptables": {"nat": ["DOCKER"]}},
        bridge=True,
        route=True,
    )
    assert Journal.from_json(journal.to_json()) == journal
    assert journal.node_root == Path("/d/node")


def test_rule_targets_are_read_from_jump_and_goto() -> None:
    rule = ["-A", "PREROUTING", "-m", "comment", "--comment", "x", "-j", "KUBE-SERVICES"]
    assert _targets(rule) == ["KUBE-SERVICES"]
    assert _targets(["-A", "FORWARD", "-g", "CNI-FORWARD"]) == ["CNI-FORWARD"]


def _serve_real(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    from kyklos.sandbox.cli import main

    code = main(["serve", "--node", "real", "--kubeconfig", str(tmp_path / "kc")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    return code, err


def test_not_root_is_refused_in_one_line_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    code, err = _serve_real(tmp_path, capsys)
    assert code == 2
    assert err == [
        "kyklos sandbox serve: --node real needs root (it runs containerd, runc and a kubelet "
        "and changes network settings); run as root, or use the default process node agent"
    ]
    assert not (tmp_path / "kc").exists()


def test_a_missing_package_is_named_with_the_command_that_installs_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from kyklos.sandbox.realnode import node

    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(node, "missing_packages", lambda: ["runc", "conntrack"])
    code, err = _serve_real(tmp_path, capsys)
    assert code == 2
    assert len(err) == 1
    assert "needs the Debian packages runc conntrack: apt-get install -y runc conntrack" in err[0]
