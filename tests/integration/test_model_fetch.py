"""A model server reads an object-store model that an init container downloaded for it.

The story: the model lives on an HTTP store (a real server on loopback that the test runs,
standing in for s3/gs, which go through the same fsspec call). The ModelDeployment names it
with `spec.model.uri` and the store's credentials with `spec.model.secretRef`. The serving
pod's init container (`kyklos worker fetch-model`, the real worker, run as a process by the
sandbox's kubelet) copies the model into an emptyDir; the server, a real Python process,
answers with what it finds at `KYKLOS_MODEL_PATH` and whether the store's token reached it
(it must not: credentials go to the init container only). Then a second model names a store
that does not answer: its rollout says `ModelFetchFailed` naming the store, without the
password in the URI.
"""

from __future__ import annotations

import functools
import http.server
import json
import socket
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kyklos_testing import Kyklos

pytestmark = pytest.mark.sandbox_only

PLURAL = "modeldeployments"
TIMEOUT = 120.0
SERVER = textwrap.dedent(
    """
    import http.server, json, os, pathlib, sys
    model = pathlib.Path(os.environ["KYKLOS_MODEL_PATH"], "model.json").read_text()
    body = json.dumps({"model": json.loads(model), "tokenVisible": "STORE_TOKEN" in os.environ})
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(body.encode())
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
).strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    """An HTTP model store on loopback with models/iris/model.json."""
    root = tmp_path / "store"
    (root / "models" / "iris").mkdir(parents=True)
    (root / "models" / "iris" / "model.json").write_text(json.dumps({"weights": [4, 2]}))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def kyklos(k8s: Any, namespace: str, crds_installed: None, operator: Any) -> Kyklos:
    operator()
    return Kyklos(k8s, namespace)


def _model_deployment(name: str, uri: str, port: int) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {
            "model": {"uri": uri, "secretRef": {"name": "store-creds"}},
            "runtime": {
                "image": "python:3.12",
                "command": ["python", "-c", SERVER, str(port)],
                "port": port,
                "healthPath": "/",
            },
            # The server listens on runtime.port itself: no serving proxy in front.
            "observability": {"proxy": False},
            "progressDeadlineSeconds": 300,
        },
    }


def test_the_server_reads_the_model_the_init_container_downloaded(
    k8s: Any, namespace: str, kyklos: Kyklos, store: str
) -> None:
    from kubernetes import client

    client.CoreV1Api(k8s).create_namespaced_secret(
        namespace, {"metadata": {"name": "store-creds"}, "stringData": {"STORE_TOKEN": "t0k"}}
    )
    port = _free_port()
    kyklos.create(PLURAL, _model_deployment("iris", f"{store}/models/iris/model.json", port))
    kyklos.wait_status(
        PLURAL, "iris", lambda s: s.get("phase") == "Available", timeout=TIMEOUT, what="Available"
    )
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as response:
        answer = json.loads(response.read())
    assert answer == {"model": {"weights": [4, 2]}, "tokenVisible": False}
    pods = (
        client.CoreV1Api(k8s)
        .list_namespaced_pod(namespace, label_selector="kyklos.io/modeldeployment=iris")
        .items
    )
    (pod,) = [p for p in pods if p.status.phase == "Running"]
    (init,) = pod.spec.init_containers
    assert [e.secret_ref.name for e in init.env_from] == ["store-creds"]
    assert not pod.spec.containers[0].env_from
    (fetched,) = pod.status.init_container_statuses
    summary = json.loads(fetched.state.terminated.message)
    assert summary["ok"] is True and summary["files"] == 1

    # A store that does not answer: the rollout names it, never the password.
    dead = f"http://reader:pa55w0rd@127.0.0.1:{_free_port()}/models/iris/model.json"
    kyklos.create(PLURAL, _model_deployment("broken", dead, _free_port()))

    def fetch_failed(status: dict[str, Any]) -> bool:
        ready = next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})
        return ready.get("reason") == "ModelFetchFailed"

    status = kyklos.wait_status(
        PLURAL, "broken", fetch_failed, timeout=TIMEOUT, what="Ready=False ModelFetchFailed"
    )
    (ready,) = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert ready["status"] == "False"
    assert "127.0.0.1" in ready["message"] and "/models/iris/model.json" in ready["message"]
    assert "pa55w0rd" not in ready["message"]
    events = (
        client.CoreV1Api(k8s)
        .list_namespaced_event(namespace, field_selector="involvedObject.name=broken")
        .items
    )
    warnings = [e for e in events if e.reason == "ModelFetchFailed"]
    assert warnings and warnings[0].type == "Warning"
    assert all("pa55w0rd" not in (e.message or "") for e in warnings)
