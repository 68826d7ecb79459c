"""Conformance of pod execution: what the kubelet does and Kyklos relies on.

Tests without a marker run against any cluster (``python:3.12-slim`` and ``nginx`` images --
on the real node a locally built web server, ``sandbox_api.WEB_IMAGE`` -- and tiny
``python -c`` programs); on the sandbox they exercise the node agent's ``process`` and
``serve`` actions. Tests marked ``sandbox_only`` pin the node agent's kubelet policy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from sandbox_api import WEB_IMAGE

PY = "python:3.12-slim"
WAIT = 60.0


# ------------------------------------------------------------------------------- helpers


def core(k8s: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(k8s)


def get_pod(k8s: Any, namespace: str, name: str) -> dict[str, Any] | None:
    """The pod as JSON (camelCase, as the API serves it), or None when it is gone."""
    from kubernetes.client.rest import ApiException

    try:
        resp = core(k8s).read_namespaced_pod(name, namespace, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return dict(json.loads(resp.data))


def wait_pod(
    k8s: Any,
    namespace: str,
    name: str,
    predicate: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = WAIT,
) -> dict[str, Any]:
    """Poll the pod until `predicate` holds; fail with its last status otherwise."""
    deadline = time.monotonic() + timeout
    pod: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        pod = get_pod(k8s, namespace, name)
        if pod is not None and predicate(pod):
            return pod
        time.sleep(0.2)
    status = json.dumps((pod or {}).get("status"), indent=1)
    raise AssertionError(
        f"pod {namespace}/{name}: {what} not reached in {timeout}s; status:\n{status}"
    )


def wait_gone(k8s: Any, namespace: str, name: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while get_pod(k8s, namespace, name) is not None:
        assert time.monotonic() < deadline, f"pod {namespace}/{name} still exists after {timeout}s"
        time.sleep(0.2)


def phase_is(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda pod: pod.get("status", {}).get("phase") in phases


def condition(pod: dict[str, Any], ctype: str) -> dict[str, Any]:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond["type"] == ctype:
            return dict(cond)
    return {}


def container_status(pod: dict[str, Any], name: str = "main", init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    for status in pod.get("status", {}).get(key) or []:
        if status["name"] == name:
            return dict(status)
    return {}


def terminated(pod: dict[str, Any], name: str = "main") -> dict[str, Any]:
    return dict(container_status(pod, name).get("state", {}).get("terminated") or {})


def make_pod(
    name: str,
    code: str | None = None,
    *,
    image: str = PY,
    restart: str = "Never",
    command: list[str] | None = None,
    **container: Any,
) -> dict[str, Any]:
    """A one-container pod; `code` runs with ``python -c``."""
    main: dict[str, Any] = {"name": "main", "image": image}
    if code is not None:
        main["command"] = ["python", "-c", code]
    if command is not None:
        main["command"] = command
    pod_spec = container.pop("pod_spec", {})
    main.update(container)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": restart,
            "terminationGracePeriodSeconds": 5,
            "containers": [main],
            **pod_spec,
        },
    }


def create(k8s: Any, namespace: str, body: dict[str, Any]) -> str:
    core(k8s).create_namespaced_pod(namespace, body)
    return str(body["metadata"]["name"])


# ------------------------------------------------------------------- process: env and files

ENV_PROGRAM = """
import json, os
seen = {k: os.environ.get(k) for k in
        ["POD", "NS", "UID", "NODE", "IP", "APP", "MODE", "PW", "GREETING", "MEM_MI"]}
seen["cfg"] = open("/etc/cfg/mode").read()
seen["secret"] = open("/etc/sec/password").read()
open("/scratch/x", "w").write("x")
seen["scratch"] = os.listdir("/scratch")
seen["cwd"] = os.getcwd()
open("/dev/termination-log", "w").write(json.dumps(seen))
"""


def test_process_container_sees_env_volumes_and_writes_termination_message(
    k8s: Any, namespace: str
) -> None:
    c = core(k8s)
    c.create_namespaced_config_map(
        namespace, {"metadata": {"name": "cfg"}, "data": {"mode": "fast"}}
    )
    c.create_namespaced_secret(
        namespace, {"metadata": {"name": "db"}, "stringData": {"password": "s3cret"}}
    )
    field = lambda p: {"valueFrom": {"fieldRef": {"fieldPath": p}}}  # noqa: E731
    env = [
        {"name": "POD", **field("metadata.name")},
        {"name": "NS", **field("metadata.namespace")},
        {"name": "UID", **field("metadata.uid")},
        {"name": "NODE", **field("spec.nodeName")},
        {"name": "IP", **field("status.podIP")},
        {"name": "APP", **field("metadata.labels['app']")},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "mode"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        {"name": "GREETING", "value": "hello-$(MODE)"},
        {
            "name": "MEM_MI",
            "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}},
        },
    ]
    body = make_pod(
        "env",
        ENV_PROGRAM,
        env=env,
        workingDir="/scratch",
        resources={"limits": {"memory": "256Mi", "cpu": "500m"}},
        volumeMounts=[
            {"name": "cfg", "mountPath": "/etc/cfg"},
            {"name": "sec", "mountPath": "/etc/sec", "readOnly": True},
            {"name": "scratch", "mountPath": "/scratch"},
        ],
        pod_spec={
            "volumes": [
                {"name": "cfg", "configMap": {"name": "cfg"}},
                {"name": "sec", "secret": {"secretName": "db"}},
                {"name": "scratch", "emptyDir": {}},
            ]
        },
    )
    body["metadata"]["labels"] = {"app": "envtest"}
    create(k8s, namespace, body)
    pod = wait_pod(k8s, namespace, "env", phase_is("Succeeded", "Failed"), "completion")
    term = terminated(pod)
    assert pod["status"]["phase"] == "Succeeded", term
    assert term["exitCode"] == 0 and term["reason"] == "Completed"
    seen = json.loads(term["message"])
    assert seen["POD"] == "env"
    assert seen["NS"] == namespace
    assert seen["UID"] == pod["metadata"]["uid"]
    assert seen["NODE"] == pod["spec"]["nodeName"]
    assert seen["IP"] == pod["status"]["podIP"]
    assert seen["APP"] == "envtest"
    assert seen["MODE"] == "fast"
    assert seen["PW"] == "s3cret"
    assert seen["GREETING"] == "hello-fast"
    assert seen["MEM_MI"] == "256"
    assert seen["cfg"] == "fast"
    assert seen["secret"] == "s3cret"
    assert seen["scratch"] == ["x"]
    assert seen["cwd"] == "/scratch"


def test_indexed_job_pods_read_their_completion_index(k8s: Any, namespace: str) -> None:
    from kubernetes import client

    index_env = {
        "name": "INDEX",
        "valueFrom": {
            "fieldRef": {
                "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
            }
        },
    }
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "indexed"},
        "spec": {
            "completionMode": "Indexed",
            "completions": 3,
            "parallelism": 3,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "main",
                            "image": PY,
                            "command": [
                                "python",
                                "-c",
                                "import os; open('/dev/termination-log','w').write("
                                "'index=' + os.environ['INDEX'])",
                            ],
                            "env": [index_env],
                        }
                    ],
                }
            },
        },
    }
    client.BatchV1Api(k8s).create_namespaced_job(namespace, job)
    deadline = time.monotonic() + WAIT
    messages: set[str] = set()
    while time.monotonic() < deadline:
        pods = json.loads(
            core(k8s)
            .list_namespaced_pod(
                namespace, label_selector="job-name=indexed", _preload_content=False
            )
            .data
        )["items"]
        messages = {
            terminated(p).get("message", "")
            for p in pods
            if p.get("status", {}).get("phase") == "Succeeded"
        }
        if len(messages) == 3:
            break
        time.sleep(0.3)
    assert messages == {"index=0", "index=1", "index=2"}


def test_nonzero_exit_is_error_and_never_policy_fails_the_pod(k8s: Any, namespace: str) -> None:
    create(k8s, namespace, make_pod("bad", "import sys; print('boom'); sys.exit(3)"))
    pod = wait_pod(k8s, namespace, "bad", phase_is("Failed", "Succeeded"), "a terminal phase")
    assert pod["status"]["phase"] == "Failed"
    term = terminated(pod)
    assert term["exitCode"] == 3
    assert term["reason"] == "Error"
    assert term["startedAt"] and term["finishedAt"]
    assert container_status(pod)["restartCount"] == 0
    assert condition(pod, "Ready")["status"] == "False"


def test_fallback_to_logs_on_error_uses_the_log_tail(k8s: Any, namespace: str) -> None:
    code = "import sys\nfor i in range(100): print('line', i)\nsys.exit(1)"
    create(
        k8s,
        namespace,
        make_pod("fallback", code, terminationMessagePolicy="FallbackToLogsOnError"),
    )
    pod = wait_pod(k8s, namespace, "fallback", phase_is("Failed"), "Failed")
    lines = terminated(pod)["message"].splitlines()
    assert lines[-1] == "line 99"
    assert lines[0] == "line 20", "the kubelet keeps the last 80 lines"


def test_termination_message_over_4_kib_is_truncated_to_its_last_4096_bytes(
    k8s: Any, namespace: str
) -> None:
    code = "open('/dev/termination-log','w').write('a' * 1000 + 'b' * 5000)"
    create(k8s, namespace, make_pod("long", code))
    pod = wait_pod(k8s, namespace, "long", phase_is("Succeeded", "Failed"), "completion")
    message = terminated(pod)["message"]
    assert len(message) == 4096
    assert set(message) == {"b"}


def test_custom_termination_message_path(k8s: Any, namespace: str) -> None:
    code = "open('/tmp/kyklos-result.json','w').write('{\"ok\": 1}')"
    create(
        k8s,
        namespace,
        make_pod("custom", code, terminationMessagePath="/tmp/kyklos-result.json"),
    )
    pod = wait_pod(k8s, namespace, "custom", phase_is("Succeeded", "Failed"), "completion")
    assert terminated(pod)["message"] == '{"ok": 1}'


def test_command_that_cannot_start_reports_start_error(k8s: Any, namespace: str) -> None:
    create(k8s, namespace, make_pod("nostart", command=["no-such-executable-kyklos", "--x"]))
    pod = wait_pod(k8s, namespace, "nostart", phase_is("Failed"), "Failed")
    term = terminated(pod)
    assert term["exitCode"] == 128
    assert term["reason"] == "StartError"
    assert "no-such-executable-kyklos" in term["message"]


def test_on_failure_restarts_a_failing_container(k8s: Any, namespace: str) -> None:
    create(k8s, namespace, make_pod("retry", "import sys; sys.exit(2)", restart="OnFailure"))
    pod = wait_pod(
        k8s,
        namespace,
        "retry",
        lambda p: container_status(p).get("restartCount", 0) >= 1,
        "a restart",
    )
    status = container_status(pod)
    assert status["lastState"]["terminated"]["exitCode"] == 2
    assert pod["status"]["phase"] in ("Running", "Pending")


def test_on_failure_does_not_restart_a_successful_container(k8s: Any, namespace: str) -> None:
    create(k8s, namespace, make_pod("once", "print('done')", restart="OnFailure"))
    pod = wait_pod(k8s, namespace, "once", phase_is("Succeeded", "Failed"), "completion")
    assert pod["status"]["phase"] == "Succeeded"
    assert container_status(pod)["restartCount"] == 0


def test_always_restarts_a_container_that_exits_zero(k8s: Any, namespace: str) -> None:
    create(k8s, namespace, make_pod("loop", "print('bye')", restart="Always"))
    pod = wait_pod(
        k8s,
        namespace,
        "loop",
        lambda p: container_status(p).get("restartCount", 0) >= 1,
        "a restart",
    )
    assert pod["status"]["phase"] == "Running"
    assert container_status(pod)["lastState"]["terminated"]["reason"] == "Completed"


def test_active_deadline_fails_the_pod_with_deadline_exceeded(k8s: Any, namespace: str) -> None:
    body = make_pod(
        "deadline", "import time; time.sleep(600)", pod_spec={"activeDeadlineSeconds": 2}
    )
    create(k8s, namespace, body)
    pod = wait_pod(k8s, namespace, "deadline", phase_is("Failed"), "Failed")
    assert pod["status"]["reason"] == "DeadlineExceeded"


def test_init_containers_run_first_in_order(k8s: Any, namespace: str) -> None:
    def init(name: str) -> dict[str, Any]:
        return {
            "name": name,
            "image": PY,
            "command": ["python", "-c", f"open('/work/order','a').write('{name} ')"],
            "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        }

    body = make_pod(
        "inits",
        "open('/dev/termination-log','w').write(open('/work/order').read())",
        volumeMounts=[{"name": "work", "mountPath": "/work"}],
        pod_spec={
            "initContainers": [init("first"), init("second")],
            "volumes": [{"name": "work", "emptyDir": {}}],
        },
    )
    create(k8s, namespace, body)
    pod = wait_pod(k8s, namespace, "inits", phase_is("Succeeded", "Failed"), "completion")
    assert terminated(pod)["message"] == "first second "
    for name in ("first", "second"):
        state = container_status(pod, name, init=True)["state"]["terminated"]
        assert state["reason"] == "Completed"
    assert condition(pod, "Initialized")["status"] == "True"


def test_failing_init_container_fails_a_never_pod(k8s: Any, namespace: str) -> None:
    body = make_pod(
        "initfail",
        "print('main must not run')",
        pod_spec={
            "initContainers": [
                {"name": "setup", "image": PY, "command": ["python", "-c", "raise SystemExit(4)"]}
            ]
        },
    )
    create(k8s, namespace, body)
    pod = wait_pod(k8s, namespace, "initfail", phase_is("Failed", "Succeeded"), "Failed")
    assert pod["status"]["phase"] == "Failed"
    setup = container_status(pod, "setup", init=True)["state"]["terminated"]
    assert setup["exitCode"] == 4
    assert "terminated" not in container_status(pod).get("state", {})
    assert condition(pod, "Initialized")["status"] == "False"


def test_missing_secret_blocks_the_container_until_it_exists(k8s: Any, namespace: str) -> None:
    env = [{"name": "PW", "valueFrom": {"secretKeyRef": {"name": "later", "key": "pw"}}}]
    code = "import os; open('/dev/termination-log','w').write(os.environ['PW'])"
    create(k8s, namespace, make_pod("blocked", code, env=env))
    pod = wait_pod(
        k8s,
        namespace,
        "blocked",
        lambda p: (
            container_status(p).get("state", {}).get("waiting", {}).get("reason")
            == "CreateContainerConfigError"
        ),
        "CreateContainerConfigError",
    )
    assert 'secret "later" not found' in container_status(pod)["state"]["waiting"]["message"]
    assert pod["status"]["phase"] == "Pending"
    core(k8s).create_namespaced_secret(
        namespace, {"metadata": {"name": "later"}, "stringData": {"pw": "now"}}
    )
    pod = wait_pod(k8s, namespace, "blocked", phase_is("Succeeded", "Failed"), "completion")
    assert terminated(pod)["message"] == "now"


SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == '/ready' else 404); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(('', int(sys.argv[1])), H).serve_forever()
"""


def test_http_readiness_probe_gates_ready(k8s: Any, namespace: str) -> None:
    from conftest import free_port

    def server(name: str, path: str) -> dict[str, Any]:
        port = free_port()
        return make_pod(
            name,
            restart="Always",
            command=["python", "-c", SERVER, str(port)],
            ports=[{"containerPort": port, "name": "http"}],
            readinessProbe={"httpGet": {"path": path, "port": "http"}, "periodSeconds": 1},
        )

    create(k8s, namespace, server("good", "/ready"))
    create(k8s, namespace, server("wrong", "/missing"))
    pod = wait_pod(
        k8s, namespace, "good", lambda p: condition(p, "Ready").get("status") == "True", "Ready"
    )
    assert container_status(pod, "main")["ready"] is True
    assert condition(pod, "ContainersReady")["status"] == "True"
    wrong = wait_pod(k8s, namespace, "wrong", phase_is("Running"), "Running")
    assert condition(wrong, "Ready")["status"] == "False"
    assert condition(wrong, "Ready")["reason"] == "ContainersNotReady"


def test_long_running_pod_becomes_ready_with_kubelet_conditions(k8s: Any, namespace: str) -> None:
    create(k8s, namespace, make_pod("web", image=WEB_IMAGE, restart="Always"))
    pod = wait_pod(
        k8s, namespace, "web", lambda p: condition(p, "Ready").get("status") == "True", "Ready"
    )
    status = pod["status"]
    assert status["phase"] == "Running"
    for ctype in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
        assert condition(pod, ctype)["status"] == "True", ctype
        assert condition(pod, ctype)["lastTransitionTime"]
    main = container_status(pod, "main")
    assert main["started"] is True
    assert main["state"]["running"]["startedAt"]
    assert main["image"].endswith(WEB_IMAGE)
    assert main["imageID"] and main["containerID"]
    assert status["podIP"] and status["hostIP"] and status["startTime"]
    assert status["podIPs"] == [{"ip": status["podIP"]}]
    assert status["qosClass"] == "BestEffort"
    assert status["observedGeneration"] == pod["metadata"]["generation"]
    events = core(k8s).list_namespaced_event(
        namespace, field_selector="involvedObject.name=web,involvedObject.kind=Pod"
    )
    started = [e for e in events.items if e.reason == "Started"]
    assert started and started[0].source.component == "kubelet"
    assert started[0].involved_object.field_path == "spec.containers{main}"
    assert condition(pod, "Ready")["observedGeneration"] == pod["metadata"]["generation"]


def test_graceful_delete_stops_the_container_and_removes_the_pod(k8s: Any, namespace: str) -> None:
    code = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(0))\ntime.sleep(600)"
    body = make_pod(
        "graceful", code, restart="Always", pod_spec={"terminationGracePeriodSeconds": 60}
    )
    create(k8s, namespace, body)
    wait_pod(k8s, namespace, "graceful", phase_is("Running"), "Running")
    start = time.monotonic()
    core(k8s).delete_namespaced_pod("graceful", namespace)
    wait_gone(k8s, namespace, "graceful", timeout=50)
    assert time.monotonic() - start < 50, "a process that exits on SIGTERM does not wait its grace"


def test_pvc_of_the_default_class_becomes_bound(k8s: Any, namespace: str) -> None:
    from kubernetes import client

    claim = {
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    c = core(k8s)
    c.create_namespaced_persistent_volume_claim(namespace, claim)
    # A consumer, so that classes binding WaitForFirstConsumer (kind's) bind as well.
    consumer = make_pod(
        "consumer",
        "print('mounted')",
        volumeMounts=[{"name": "d", "mountPath": "/mnt/data"}],
        pod_spec={"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "data"}}]},
    )
    create(k8s, namespace, consumer)
    classes = client.StorageV1Api(k8s).list_storage_class().items
    defaults = [
        sc.metadata.name
        for sc in classes
        if (sc.metadata.annotations or {}).get("storageclass.kubernetes.io/is-default-class")
        == "true"
    ]
    assert defaults, "the cluster has a default StorageClass"
    deadline = time.monotonic() + WAIT
    while True:
        pvc = c.read_namespaced_persistent_volume_claim("data", namespace)
        if pvc.status.phase == "Bound":
            break
        assert time.monotonic() < deadline, f"claim not Bound: {pvc.status}"
        time.sleep(0.3)
    assert pvc.spec.storage_class_name in defaults
    assert pvc.spec.volume_name


# ------------------------------------------------------------- sandbox only: kubelet policy


@pytest.mark.sandbox_only
def test_pvc_volume_is_a_directory_shared_by_pods_and_reclaimed(k8s: Any, namespace: str) -> None:
    c = core(k8s)
    claim = {
        "metadata": {"name": "shared"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
    }
    c.create_namespaced_persistent_volume_claim(namespace, claim)
    mount = {"volumeMounts": [{"name": "d", "mountPath": "/mnt/data"}]}
    vol = {"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "shared"}}]}
    write = make_pod("writer", "open('/mnt/data/f','w').write('kept')", **mount, pod_spec=vol)
    create(k8s, namespace, write)
    wait_pod(k8s, namespace, "writer", phase_is("Succeeded"), "Succeeded")
    read = make_pod(
        "reader",
        "open('/dev/termination-log','w').write(open('/mnt/data/f').read())",
        **mount,
        pod_spec=vol,
    )
    create(k8s, namespace, read)
    pod = wait_pod(k8s, namespace, "reader", phase_is("Succeeded", "Failed"), "completion")
    assert terminated(pod)["message"] == "kept"
    pv_name = c.read_namespaced_persistent_volume_claim("shared", namespace).spec.volume_name
    pv = c.read_persistent_volume(pv_name)
    assert pv.spec.capacity["storage"] == "2Gi"
    for name in ("writer", "reader"):
        c.delete_namespaced_pod(name, namespace)
    c.delete_namespaced_persistent_volume_claim("shared", namespace)
    deadline = time.monotonic() + WAIT
    names: list[str] = [pv_name]
    while pv_name in names:
        assert time.monotonic() < deadline, f"{pv_name} was not reclaimed"
        time.sleep(0.3)
        names = [v.metadata.name for v in c.list_persistent_volume().items]


@pytest.mark.sandbox_only
def test_scripted_fail_reports_exit_code_reason_and_message(
    k8s: Any, namespace: str, kubelet_policy: Callable[[Any], None]
) -> None:
    kubelet_policy(
        {
            "rules": [
                {
                    "image": "example.com/fails:*",
                    "action": "fail",
                    "exitCode": 42,
                    "reason": "OOMKilled",
                    "terminationMessage": "out of memory",
                }
            ]
        }
    )
    create(k8s, namespace, make_pod("scripted", image="example.com/fails:1"))
    pod = wait_pod(k8s, namespace, "scripted", phase_is("Failed"), "Failed")
    term = terminated(pod)
    assert (term["exitCode"], term["reason"], term["message"]) == (42, "OOMKilled", "out of memory")


@pytest.mark.sandbox_only
def test_unmatched_image_gets_the_default_behaviour(
    k8s: Any, namespace: str, kubelet_policy: Callable[[Any], None]
) -> None:
    kubelet_policy({"rules": [{"image": "only-this-image", "action": "fail"}]})
    create(k8s, namespace, make_pod("job-like", image="busybox:1.36", restart="Never"))
    create(k8s, namespace, make_pod("server-like", image="busybox:1.36", restart="Always"))
    job = wait_pod(k8s, namespace, "job-like", phase_is("Succeeded", "Failed"), "completion")
    assert job["status"]["phase"] == "Succeeded"
    server = wait_pod(
        k8s,
        namespace,
        "server-like",
        lambda p: condition(p, "Ready").get("status") == "True",
        "Ready",
    )
    assert server["status"]["phase"] == "Running"


@pytest.mark.sandbox_only
def test_crashloop_backs_off_restarts_and_is_never_ready(
    k8s: Any, namespace: str, kubelet_policy: Callable[[Any], None]
) -> None:
    kubelet_policy(
        {
            "crashLoopBackOff": {"initialSeconds": 0.5, "maxSeconds": 1},
            "rules": [{"image": "example.com/crash:*", "action": "crashloop", "exitCode": 1}],
        }
    )
    create(k8s, namespace, make_pod("crash", image="example.com/crash:1", restart="Always"))
    seen_backoff = False
    deadline = time.monotonic() + WAIT
    while True:
        pod = get_pod(k8s, namespace, "crash")
        assert pod is not None
        status = container_status(pod)
        waiting = status.get("state", {}).get("waiting", {})
        if waiting.get("reason") == "CrashLoopBackOff":
            seen_backoff = True
            assert "back-off" in waiting["message"]
            assert status["lastState"]["terminated"]["exitCode"] == 1
        assert status.get("ready") is not True
        assert condition(pod, "Ready").get("status") != "True"
        if seen_backoff and status.get("restartCount", 0) >= 3:
            break
        assert time.monotonic() < deadline, f"no crash loop: {json.dumps(pod['status'])}"
        time.sleep(0.1)
    assert pod["status"]["phase"] == "Running"


@pytest.mark.sandbox_only
def test_pending_action_never_starts_the_container(
    k8s: Any, namespace: str, kubelet_policy: Callable[[Any], None]
) -> None:
    kubelet_policy({"rules": [{"image": "example.com/stuck:*", "action": "pending"}]})
    create(k8s, namespace, make_pod("stuck", image="example.com/stuck:1", restart="Always"))
    pod = wait_pod(
        k8s,
        namespace,
        "stuck",
        lambda p: bool(container_status(p).get("state", {}).get("waiting")),
        "a waiting container",
    )
    assert pod["status"]["phase"] == "Pending"
    assert container_status(pod)["state"]["waiting"]["reason"] == "ContainerCreating"
    assert container_status(pod)["started"] is False
    assert condition(pod, "PodScheduled")["status"] == "True"


@pytest.mark.sandbox_only
def test_serve_is_ready_only_after_ready_after(
    k8s: Any, namespace: str, kubelet_policy: Callable[[Any], None]
) -> None:
    kubelet_policy({"rules": [{"image": "example.com/slow:*", "action": "serve", "readyAfter": 2}]})
    create(k8s, namespace, make_pod("slow", image="example.com/slow:1", restart="Always"))
    running = wait_pod(k8s, namespace, "slow", phase_is("Running"), "Running")
    ready = wait_pod(
        k8s, namespace, "slow", lambda p: condition(p, "Ready").get("status") == "True", "Ready"
    )
    started = container_status(running)["state"]["running"]["startedAt"]
    became_ready = condition(ready, "Ready")["lastTransitionTime"]
    assert became_ready > started, "Ready only after readyAfter has passed"


@pytest.mark.sandbox_only
def test_extended_resources_from_the_policy_make_gpu_pods_schedulable(
    k8s: Any, namespace: str, kubelet_policy: Callable[[Any], None]
) -> None:
    kubelet_policy({"nodes": {"extendedResources": {"nvidia.com/gpu": 2}}})
    node = core(k8s).read_node("sandbox-node-1")
    assert node.status.capacity["nvidia.com/gpu"] == "2"
    assert node.status.allocatable["nvidia.com/gpu"] == "2"
    body = make_pod("gpu", "print('trained')", resources={"limits": {"nvidia.com/gpu": "1"}})
    create(k8s, namespace, body)
    pod = wait_pod(k8s, namespace, "gpu", phase_is("Succeeded", "Failed"), "completion")
    assert pod["status"]["phase"] == "Succeeded"
    kubelet_policy({"nodes": {"cpu": "2"}})
    node = core(k8s).read_node("sandbox-node-1")
    assert "nvidia.com/gpu" not in node.status.capacity, "a resource the policy drops goes away"
    assert node.status.capacity["cpu"] == "2"


@pytest.mark.sandbox_only
def test_process_ignoring_sigterm_is_killed_after_its_grace_period(
    k8s: Any, namespace: str
) -> None:
    marker = f"kyklos-ignore-term-{namespace}"
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"MARK = {marker!r}\ntime.sleep(600)"
    )
    body = make_pod("stubborn", code, pod_spec={"terminationGracePeriodSeconds": 2})
    create(k8s, namespace, body)
    wait_pod(k8s, namespace, "stubborn", phase_is("Running"), "Running")
    assert _processes_with(marker), "the pod's process runs on this machine"
    core(k8s).delete_namespaced_pod("stubborn", namespace)
    wait_gone(k8s, namespace, "stubborn")
    assert not _processes_with(marker), "the process was SIGKILLed after the grace period"


@pytest.mark.sandbox_only
def test_settled_pod_gets_no_status_writes(k8s: Any, namespace: str) -> None:
    create(k8s, namespace, make_pod("quiet", image="nginx:1.27", restart="Always"))
    pod = wait_pod(
        k8s, namespace, "quiet", lambda p: condition(p, "Ready").get("status") == "True", "Ready"
    )
    version = pod["metadata"]["resourceVersion"]
    time.sleep(3)
    again = get_pod(k8s, namespace, "quiet")
    assert again is not None and again["metadata"]["resourceVersion"] == version


def _processes_with(marker: str) -> list[int]:
    import os

    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


@pytest.mark.sandbox_only
def test_host_path_volume_is_the_host_directory(k8s: Any, namespace: str, tmp_path: Any) -> None:
    host = tmp_path / "host"
    host.mkdir()
    (host / "in.txt").write_text("from the host")
    code = (
        "open('/mnt/host/out.txt','w').write('from the pod')\n"
        "open('/dev/termination-log','w').write(open('/mnt/host/in.txt').read())"
    )
    body = make_pod(
        "hostpath",
        code,
        volumeMounts=[{"name": "h", "mountPath": "/mnt/host"}],
        pod_spec={"volumes": [{"name": "h", "hostPath": {"path": str(host), "type": "Directory"}}]},
    )
    create(k8s, namespace, body)
    pod = wait_pod(k8s, namespace, "hostpath", phase_is("Succeeded", "Failed"), "completion")
    assert terminated(pod)["message"] == "from the host"
    assert (host / "out.txt").read_text() == "from the pod"


@pytest.mark.sandbox_only
def test_process_pod_reaches_the_api_as_its_service_account(k8s: Any, namespace: str) -> None:
    code = """
import os, ssl, urllib.error, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount/"
host = os.environ["KUBERNETES_SERVICE_HOST"]
port = os.environ["KUBERNETES_SERVICE_PORT"]
ns = open(sa + "namespace").read()
request = urllib.request.Request(
    f"https://{host}:{port}/api/v1/namespaces/{ns}/pods",
    headers={"Authorization": "Bearer " + open(sa + "token").read()},
)
try:
    urllib.request.urlopen(request, context=ssl.create_default_context(cafile=sa + "ca.crt"))
    message = "allowed"
except urllib.error.HTTPError as e:
    message = f"{e.code} {e.read().decode()}"
open("/dev/termination-log", "w").write(message)
"""
    create(k8s, namespace, make_pod("incluster", code))
    pod = wait_pod(k8s, namespace, "incluster", phase_is("Succeeded", "Failed"), "completion")
    message = terminated(pod)["message"]
    assert message.startswith("403 "), message
    assert f"system:serviceaccount:{namespace}:default" in message
