"""Pure parts of `kyklos sandbox serve`: node readiness, kubeconfig shape, audit policy."""

from __future__ import annotations

import base64
from pathlib import Path

from kyklos.sandbox.controlplane import AUDIT_POLICY, kubeconfig
from kyklos.sandbox.serve import _ready_nodes

SINCE = 1_795_000_000.0  # 2026-11-18T...; any fixed epoch works


def _node(name: str, status: str, beat: str) -> dict[str, object]:
    return {
        "metadata": {"name": name},
        "status": {
            "conditions": [
                {"type": "MemoryPressure", "status": "False", "lastHeartbeatTime": beat},
                {"type": "Ready", "status": status, "lastHeartbeatTime": beat},
            ]
        },
    }


def _iso(epoch: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_only_ready_nodes_with_a_fresh_heartbeat_count() -> None:
    listing = {
        "items": [
            _node("fresh", "True", _iso(SINCE + 1)),
            _node("not-ready", "False", _iso(SINCE + 1)),
            _node("stale", "True", _iso(SINCE - 600)),  # left in etcd by a previous run
            _node("same-second", "True", _iso(SINCE - 1)),
        ]
    }
    assert _ready_nodes(listing, SINCE) == ["fresh", "same-second"]


def test_no_listing_means_no_ready_nodes() -> None:
    assert _ready_nodes(None, SINCE) == []
    assert _ready_nodes({"items": []}, SINCE) == []


def test_user_kubeconfig_embeds_credentials(tmp_path: Path) -> None:
    for name in ("ca.crt", "c.crt", "c.key"):
        (tmp_path / name).write_text(f"PEM {name}")
    config = kubeconfig(
        "https://127.0.0.1:6443",
        tmp_path / "ca.crt",
        tmp_path / "c.crt",
        tmp_path / "c.key",
        embed=True,
    )
    (cluster,) = config["clusters"]  # type: ignore[misc]
    (user,) = config["users"]  # type: ignore[misc]
    assert cluster["cluster"]["server"] == "https://127.0.0.1:6443"
    assert base64.b64decode(cluster["cluster"]["certificate-authority-data"]) == b"PEM ca.crt"
    assert base64.b64decode(user["user"]["client-key-data"]) == b"PEM c.key"
    assert config["current-context"] == cluster["name"]


def test_component_kubeconfig_references_files(tmp_path: Path) -> None:
    config = kubeconfig("https://x", tmp_path / "ca", tmp_path / "c", tmp_path / "k", embed=False)
    (user,) = config["users"]  # type: ignore[misc]
    assert user["user"] == {
        "client-certificate": str(tmp_path / "c"),
        "client-key": str(tmp_path / "k"),
    }


def test_audit_policy_records_every_request_at_metadata_level() -> None:
    assert AUDIT_POLICY["rules"] == [{"level": "Metadata"}]
    assert AUDIT_POLICY["omitStages"] == ["RequestReceived"]
