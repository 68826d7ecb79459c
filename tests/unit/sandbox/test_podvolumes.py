"""A pod's volumes become host directories with the files the kubelet would project."""

from __future__ import annotations

import base64
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from kyklos.sandbox.podcontext import ApiError, NodeContext
from kyklos.sandbox.podenv import ContainerConfigError
from kyklos.sandbox.podstatus import Container
from kyklos.sandbox.podvolumes import VolumesMixin
from kyklos.sandbox.policy import Policy, Rule


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class FakeApi:
    """Serves a fixed set of objects by path; records token requests."""

    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects
        self.token_requests: list[tuple[str, Any]] = []

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        *,
        query: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        if method == "POST" and path.endswith("/token"):
            self.token_requests.append((path, body))
            return {"status": {"token": "tok-123"}}
        assert method == "GET", (method, path)
        if path not in self.objects:
            raise ApiError(404, f"{path} not found")
        return self.objects[path]


class Volumes(VolumesMixin):
    def __init__(self, api: FakeApi, tmp: Path) -> None:
        self.ctx = NodeContext(
            api=api,
            data_dir=str(tmp),
            node_name="node-1",
            host_ip="10.0.0.1",
            allocatable={"cpu": "4", "memory": "16Gi"},
            policy=Policy,
        )
        self.uid, self.namespace, self.pod_name, self.pod_ip = "uid-1", "ml", "p", "10.1.0.5"
        self.pod_dir = str(tmp / "pod")
        spec = {"name": "main", "image": "img", "resources": {"limits": {"memory": "1Gi"}}}
        self.containers = [Container(spec=spec, init=False, rule=Rule(image="*"), action="x")]


NS = "/api/v1/namespaces/ml"
OBJECTS: dict[str, dict[str, Any]] = {
    f"{NS}/configmaps/cfg": {"data": {"a.txt": "alpha", "b.txt": "beta"}, "binaryData": {}},
    f"{NS}/configmaps/kube-root-ca.crt": {"data": {"ca.crt": "PEM"}},
    f"{NS}/secrets/creds": {"data": {"user": b64("ada"), "pass": b64("s3cret")}},
    f"{NS}/persistentvolumeclaims/data": {
        "spec": {"volumeName": "pv-1"},
        "status": {"phase": "Bound"},
    },
    f"{NS}/persistentvolumeclaims/unbound": {"spec": {}, "status": {"phase": "Pending"}},
}


def pod(*volumes: dict[str, Any]) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ml", "uid": "uid-1", "labels": {"app": "t"}},
        "spec": {"volumes": list(volumes), "containers": [{"name": "main"}]},
    }


def read(path: str) -> str:
    return Path(path).read_text()


def test_config_secret_downward_and_projected_volumes_hold_the_kubelets_files(
    tmp_path: Path,
) -> None:
    api = FakeApi(OBJECTS)
    v = Volumes(api, tmp_path)
    out = v._prepare_volumes(
        pod(
            {"name": "scratch", "emptyDir": {}},
            {
                "name": "cfg",
                "configMap": {"name": "cfg", "items": [{"key": "b.txt", "path": "sub/b"}]},
            },
            {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 0o400}},
            {
                "name": "info",
                "downwardAPI": {
                    "items": [
                        {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                        {"path": "ip", "fieldRef": {"fieldPath": "status.podIP"}},
                        {
                            "path": "mem",
                            "resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"},
                        },
                    ]
                },
            },
            {
                "name": "sa",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"path": "token", "audience": "api"}},
                        {"configMap": {"name": "kube-root-ca.crt"}},
                    ]
                },
            },
        )
    )
    assert set(out) == {"scratch", "cfg", "creds", "info", "sa"}
    assert all(p.startswith(str(tmp_path / "pod" / "volumes")) for p in out.values())
    assert os.path.isdir(out["scratch"]) and not os.listdir(out["scratch"])
    assert os.listdir(out["cfg"]) == ["sub"], "items: only the listed key, at its path"
    assert read(f"{out['cfg']}/sub/b") == "beta"
    assert read(f"{out['creds']}/user") == "ada" and read(f"{out['creds']}/pass") == "s3cret"
    assert stat.S_IMODE(os.stat(f"{out['creds']}/pass").st_mode) == 0o400
    assert read(f"{out['info']}/name") == "p"
    assert read(f"{out['info']}/ip") == "10.1.0.5", "the pod IP is known before it is written"
    assert read(f"{out['info']}/mem") == "1024"
    assert read(f"{out['sa']}/token") == "tok-123"
    assert read(f"{out['sa']}/ca.crt") == "PEM"
    path, body = api.token_requests[0]
    assert path == f"{NS}/serviceaccounts/default/token"
    assert body["spec"]["audiences"] == ["api"]
    assert body["spec"]["boundObjectRef"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "p",
        "uid": "uid-1",
    }


def test_a_bound_claim_is_its_volumes_host_directory(tmp_path: Path) -> None:
    pv_dir = tmp_path / "pv-1"
    objects = {
        **OBJECTS,
        "/api/v1/persistentvolumes/pv-1": {"spec": {"local": {"path": str(pv_dir)}}},
    }
    v = Volumes(FakeApi(objects), tmp_path)
    out = v._prepare_volumes(pod({"name": "d", "persistentVolumeClaim": {"claimName": "data"}}))
    assert out == {"d": str(pv_dir)} and pv_dir.is_dir()


def test_host_paths_are_created_only_when_their_type_says_so(tmp_path: Path) -> None:
    v = Volumes(FakeApi(OBJECTS), tmp_path)
    made = tmp_path / "made" / "here"
    out = v._prepare_volumes(
        pod({"name": "h", "hostPath": {"path": str(made), "type": "DirectoryOrCreate"}})
    )
    assert out == {"h": str(made)} and made.is_dir()
    missing = tmp_path / "missing"
    with pytest.raises(ContainerConfigError, match=f"{missing} does not exist"):
        v._prepare_volumes(pod({"name": "h", "hostPath": {"path": str(missing)}}))
    assert not missing.exists()


@pytest.mark.parametrize(
    ("volume", "error"),
    [
        ({"configMap": {"name": "absent"}}, 'configmap "absent" not found'),
        ({"secret": {"secretName": "absent"}}, 'secret "absent" not found'),
        (
            {"configMap": {"name": "cfg", "items": [{"key": "zzz", "path": "z"}]}},
            "key 'zzz' not found in configmap cfg",
        ),
        ({"persistentVolumeClaim": {"claimName": "unbound"}}, '"unbound" is not bound'),
        ({"persistentVolumeClaim": {"claimName": "absent"}}, '"absent" not found'),
    ],
)
def test_what_is_missing_is_a_config_error_naming_it(
    tmp_path: Path, volume: dict[str, Any], error: str
) -> None:
    v = Volumes(FakeApi(OBJECTS), tmp_path)
    with pytest.raises(ContainerConfigError, match=error):
        v._prepare_volumes(pod({"name": "v", **volume}))


def test_optional_sources_that_are_missing_leave_the_volume_empty(tmp_path: Path) -> None:
    v = Volumes(FakeApi(OBJECTS), tmp_path)
    out = v._prepare_volumes(
        pod(
            {"name": "c", "configMap": {"name": "absent", "optional": True}},
            {
                "name": "k",
                "configMap": {
                    "name": "cfg",
                    "optional": True,
                    "items": [{"key": "zzz", "path": "z"}, {"key": "a.txt", "path": "a"}],
                },
            },
        )
    )
    assert os.listdir(out["c"]) == []
    assert os.listdir(out["k"]) == ["a"]
