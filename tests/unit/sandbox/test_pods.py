"""Pure parts of the node agent's pod runner: env building, $(VAR) expansion, termination
messages, executable resolution, PV manifests."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from kyklos.sandbox.podenv import (
    MAX_TERMINATION_MESSAGE,
    ContainerConfigError,
    EnvSources,
    build_env,
    expand,
    field_ref_value,
    log_tail,
    truncate_termination_message,
)
from kyklos.sandbox.podlaunch import StartError, resolve_executable
from kyklos.sandbox.storage import pv_manifest, storage_class_manifest, wants_volume

POD = {
    "metadata": {
        "name": "train-0-abc",
        "namespace": "ml",
        "uid": "1234",
        "labels": {"app": "train"},
        "annotations": {"batch.kubernetes.io/job-completion-index": "3"},
    },
    "spec": {"nodeName": "sandbox-node-1", "serviceAccountName": "trainer", "containers": []},
    "status": {"podIP": "10.244.1.7", "hostIP": "127.0.0.1"},
}


def sources(
    secrets: dict[str, dict[str, str]] | None = None,
    configmaps: dict[str, dict[str, str]] | None = None,
) -> EnvSources:
    return EnvSources(
        get_secret=lambda name: (secrets or {}).get(name),
        get_configmap=lambda name: (configmaps or {}).get(name),
        allocatable={"cpu": "4", "memory": "16Gi"},
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$(A)", "a"),
        ("x-$(A)-$(B)", "x-a-b"),
        ("$(MISSING)", "$(MISSING)"),
        ("$$(A)", "$(A)"),
        ("$$", "$"),
        ("$(A", "$(A"),
        ("$A", "$A"),
        ("cost $5", "cost $5"),
        ("trailing $", "trailing $"),
        ("", ""),
    ],
)
def test_expand_follows_kubelet_rules(text: str, expected: str) -> None:
    assert expand(text, {"A": "a", "B": "b"}.get) == expected


def test_env_values_expand_earlier_vars_only() -> None:
    container = {
        "env": [
            {"name": "LATER_REF", "value": "$(B)"},
            {"name": "B", "value": "b"},
            {"name": "C", "value": "$(B)-c"},
        ]
    }
    env = build_env(container, POD, sources())
    assert env == {"LATER_REF": "$(B)", "B": "b", "C": "b-c"}


def test_field_refs_cover_metadata_spec_and_status() -> None:
    container = {
        "env": [
            {"name": n, "valueFrom": {"fieldRef": {"fieldPath": p}}}
            for n, p in [
                ("NAME", "metadata.name"),
                ("NS", "metadata.namespace"),
                ("UID", "metadata.uid"),
                ("APP", "metadata.labels['app']"),
                ("INDEX", "metadata.annotations['batch.kubernetes.io/job-completion-index']"),
                ("NODE", "spec.nodeName"),
                ("SA", "spec.serviceAccountName"),
                ("IP", "status.podIP"),
                ("HOST", "status.hostIP"),
                ("NOLABEL", "metadata.labels['absent']"),
            ]
        ]
    }
    env = build_env(container, POD, sources())
    assert env == {
        "NAME": "train-0-abc",
        "NS": "ml",
        "UID": "1234",
        "APP": "train",
        "INDEX": "3",
        "NODE": "sandbox-node-1",
        "SA": "trainer",
        "IP": "10.244.1.7",
        "HOST": "127.0.0.1",
        "NOLABEL": "",
    }


def test_unsupported_field_path_is_a_config_error() -> None:
    with pytest.raises(ContainerConfigError, match=r"spec\.bogus"):
        field_ref_value(POD, "spec.bogus")


def test_secret_and_configmap_key_refs() -> None:
    container = {
        "env": [
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
            {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
            },
        ]
    }
    env = build_env(
        container, POD, sources({"db": {"password": "s3cret"}}, {"cfg": {"mode": "fast"}})
    )
    assert env == {"PW": "s3cret", "MODE": "fast"}


def test_missing_secret_is_create_container_config_error() -> None:
    container = {"env": [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "p"}}}]}
    with pytest.raises(ContainerConfigError, match='secret "db" not found'):
        build_env(container, POD, sources())
    with pytest.raises(ContainerConfigError, match="couldn't find key p in Secret ml/db"):
        build_env(container, POD, sources({"db": {"other": "x"}}))


def test_env_from_with_prefix_then_env_overrides() -> None:
    container = {
        "envFrom": [
            {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"},
            {"secretRef": {"name": "sec"}},
            {"secretRef": {"name": "absent", "optional": True}},
        ],
        "env": [{"name": "TOKEN", "value": "override-$(CFG_MODE)"}],
    }
    env = build_env(
        container, POD, sources({"sec": {"TOKEN": "t", "USER": "u"}}, {"cfg": {"MODE": "m"}})
    )
    assert env == {"CFG_MODE": "m", "TOKEN": "override-m", "USER": "u"}


def test_env_from_missing_configmap_is_an_error() -> None:
    with pytest.raises(ContainerConfigError, match='configmap "cfg" not found'):
        build_env({"envFrom": [{"configMapRef": {"name": "cfg"}}]}, POD, sources())


def test_resource_field_ref_uses_limits_divisor_and_node_allocatable() -> None:
    container = {
        "resources": {"limits": {"memory": "512Mi"}, "requests": {"cpu": "250m"}},
        "env": [
            {
                "name": "MEM",
                "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
            },
            {
                "name": "CPU_REQ",
                "valueFrom": {"resourceFieldRef": {"resource": "requests.cpu", "divisor": "1m"}},
            },
            {"name": "CPU_LIM", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
        ],
    }
    env = build_env(container, POD, sources())
    assert env == {"MEM": "512", "CPU_REQ": "250", "CPU_LIM": "4"}


def test_termination_message_keeps_the_last_4096_bytes() -> None:
    data = b"a" * 100 + b"b" * MAX_TERMINATION_MESSAGE
    msg = truncate_termination_message(data)
    assert len(msg.encode()) == MAX_TERMINATION_MESSAGE
    assert set(msg) == {"b"}
    assert truncate_termination_message(b'{"ok": true}') == '{"ok": true}'


def test_fallback_log_tail_is_80_lines_and_2048_bytes() -> None:
    lines = b"".join(f"line {i}\n".encode() for i in range(200))
    tail = log_tail(lines)
    assert tail.splitlines()[0] == "line 120"
    assert tail.splitlines()[-1] == "line 199"
    big = b"x" * 5000 + b"\n"
    assert len(log_tail(big).encode()) == 2048


def test_python_resolves_to_the_sandbox_interpreter() -> None:
    for name in ("python", "python3", "python3.12", "/usr/bin/python3"):
        assert resolve_executable(name, "/nonexistent") == sys.executable


def test_missing_executable_is_a_start_error_naming_it() -> None:
    with pytest.raises(StartError, match='exec: "no-such-tool": executable file not found'):
        resolve_executable("no-such-tool", "/usr/bin:/bin")
    with pytest.raises(StartError, match="/no/such/file"):
        resolve_executable("/no/such/file", "/usr/bin")
    assert resolve_executable("sh", "/usr/bin:/bin").endswith("/sh")


def test_without_mount_namespace_mount_paths_are_rewritten_to_host_paths() -> None:
    from kyklos.sandbox.podlaunch import _rewrite

    rewrites = [("/dev/termination-log", "/d/t/0.termination-log"), ("/data", "/d/vol/data")]
    assert _rewrite("/data", rewrites) == "/d/vol/data"
    assert _rewrite("/data/in/x.csv", rewrites) == "/d/vol/data/in/x.csv"
    assert _rewrite("--out=/data/report", rewrites) == "--out=/d/vol/data/report"
    assert _rewrite("/dev/termination-log", rewrites) == "/d/t/0.termination-log"
    assert _rewrite("/database", rewrites) == "/database", "only whole path components"
    assert _rewrite("pvc://claim/data", rewrites) == "pvc://claim/data"


def test_default_storage_class_is_default_and_immediate() -> None:
    sc = storage_class_manifest()
    assert sc["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true"
    assert sc["volumeBindingMode"] == "Immediate"
    assert sc["provisioner"] == "sandbox.kyklos.io/local"


def test_pv_for_claim_has_size_modes_claim_ref_and_a_data_dir_path() -> None:
    claim: dict[str, Any] = {
        "metadata": {"name": "data", "namespace": "ml", "uid": "u-1", "resourceVersion": "9"},
        "spec": {
            "storageClassName": "standard",
            "accessModes": ["ReadWriteMany"],
            "resources": {"requests": {"storage": "5Gi"}},
        },
        "status": {"phase": "Pending"},
    }
    classes = {"standard": "sandbox.kyklos.io/local", "other": "example.com/x"}
    assert wants_volume(claim, classes)
    pv = pv_manifest(claim, "/data")
    assert pv["metadata"]["name"] == "pvc-u-1"
    assert pv["spec"]["capacity"] == {"storage": "5Gi"}
    assert pv["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pv["spec"]["hostPath"]["path"] == "/data/volumes/pvc-u-1"
    assert pv["spec"]["claimRef"]["uid"] == "u-1"
    bound = {**claim, "spec": {**claim["spec"], "volumeName": "pv-x"}}
    assert not wants_volume(bound, classes)
    foreign = {**claim, "spec": {**claim["spec"], "storageClassName": "other"}}
    assert not wants_volume(foreign, classes)


def test_interpreter_dirs_include_the_editable_checkout() -> None:
    """A pod's own /tmp volume must not hide a checkout under /tmp that the venv imports from."""
    from pathlib import Path

    import kyklos
    from kyklos.sandbox.podlaunch import _interpreter_dirs

    checkout = str(Path(kyklos.__file__).resolve().parents[2])
    dirs = _interpreter_dirs("/usr/bin/true")
    assert checkout in dirs or str(Path(checkout) / "operator") in dirs
    assert all(Path(d).is_absolute() for d in dirs)
