"""Session-wide fixtures: a Kubernetes cluster (the sandbox, or KYKLOS_TEST_KUBECONFIG), clients,
a namespace per test, the kubelet policy, the real operator as a subprocess, and the audit log.

- ``cluster`` (session): with ``KYKLOS_TEST_KUBECONFIG`` set, that cluster (``is_sandbox`` False);
  otherwise one ``kyklos sandbox serve`` for the whole session (built first, outside any test's
  timeout, if the cache lacks the binaries).
- ``k8s`` (session): a ``kubernetes.client.ApiClient`` for it.
- ``namespace`` (function): a fresh namespace (its ``default`` ServiceAccount exists), deleted after.
- ``kubelet_policy`` (function): a setter swapping the node agent's policy for one test; the
  default is restored afterwards. Skips on a real cluster.
- ``operator`` (function): a factory running ``python -m kyklos run`` as a subprocess, optionally
  with a ServiceAccount's token (``operator.as_service_account(rules)``), stopped with SIGTERM
  at teardown (and asserted to exit).
- ``audit`` (function): the API server's audit log as (verb, apiGroup, resource, subresource)
  sets per user. Skips on a real cluster (its audit log is not ours to read).

Tests marked ``sandbox_only`` are skipped on a real cluster.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import settings as hypothesis_settings

# Hypothesis: under CI=true every property test is derandomised (the same examples on every
# run, no example database), so exploration can never fail a submission at random. Locally
# the "explore" profile searches afresh each run; a counter-example it finds becomes an
# @example beside the test. HYPOTHESIS_PROFILE picks a profile explicitly.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
hypothesis_settings.register_profile("explore", print_blob=True)
hypothesis_settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE")
    or ("ci" if os.environ.get("CI", "").lower() in ("1", "true", "yes") else "explore")
)

POLICY_ANNOTATION = "sandbox.kyklos.io/policy-sha256"
NODE_PREFIX = "sandbox-node-"
SANDBOX_START_TIMEOUT = 300.0
REAL_CLUSTER = bool(os.environ.get("KYKLOS_TEST_KUBECONFIG"))
# KYKLOS_TEST_NODE=real: the session's sandbox runs a real node (kubelet + containerd, needs
# root) instead of the node agent; agent-only tests skip as on any cluster.
REAL_NODE = os.environ.get("KYKLOS_TEST_NODE") == "real" and not REAL_CLUSTER


# --------------------------------------------------------------------------------- cluster


@dataclass
class Cluster:
    """The cluster the tests run against."""

    kubeconfig: Path
    is_sandbox: bool
    data_dir: Path | None = None
    audit_log: Path | None = None
    policy_file: Path | None = None
    default_policy: str = ""
    serve_log: Path | None = None
    process: subprocess.Popen[str] | None = None

    def api_client(self) -> Any:
        """A new ``kubernetes.client.ApiClient`` for this cluster."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def set_kubelet_policy(self, policy: str | Mapping[str, Any], timeout: float = 30.0) -> None:
        """Replace the node agent's policy and wait until every node reports it loaded."""
        if not self.is_sandbox or self.policy_file is None:
            raise RuntimeError("the kubelet policy exists only on the Kyklos sandbox")
        text = policy if isinstance(policy, str) else yaml.safe_dump(dict(policy))
        data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        tmp = self.policy_file.with_name(self.policy_file.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(self.policy_file)  # atomic: the agent never reads half a file
        from kubernetes import client

        with self.api_client() as api:
            core = client.CoreV1Api(api)
            deadline = time.monotonic() + timeout
            while True:
                nodes = [
                    n for n in core.list_node().items if n.metadata.name.startswith(NODE_PREFIX)
                ]
                hashes = {(n.metadata.annotations or {}).get(POLICY_ANNOTATION) for n in nodes}
                if nodes and hashes == {digest}:
                    return
                if time.monotonic() > deadline:
                    tail = self._agent_log_tail()
                    raise AssertionError(
                        f"the node agent did not load the new kubelet policy within {timeout}s "
                        f"(nodes report {sorted(map(str, hashes))}, want {digest}); "
                        f"node agent log:\n{tail}"
                    )
                time.sleep(0.2)

    def restore_default_policy(self) -> None:
        """Put the session's default policy back."""
        self.set_kubelet_policy(self.default_policy)

    def _agent_log_tail(self) -> str:
        if self.data_dir is None:
            return ""
        log = self.data_dir / "controlplane" / "logs" / "node-agent.log"
        try:
            return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        except OSError:
            return "(no log)"


def _default_policy_text() -> str:
    import kyklos.sandbox

    path = Path(kyklos.sandbox.__file__).parent / "default-policy.yaml"
    return path.read_text() if path.exists() else ""


def _needs_cluster(items: Sequence[pytest.Item]) -> bool:
    return any("cluster" in getattr(item, "fixturenames", ()) for item in items)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``sandbox_only`` tests on a real cluster."""
    if not (REAL_CLUSTER or REAL_NODE):
        return
    skip = pytest.mark.skip(
        reason="needs the Kyklos sandbox node agent; KYKLOS_TEST_KUBECONFIG is a real cluster"
        if REAL_CLUSTER
        else "needs the Kyklos sandbox node agent; KYKLOS_TEST_NODE=real runs a real kubelet"
    )
    for item in items:
        if "sandbox_only" in item.keywords:
            item.add_marker(skip)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the control plane before any test runs (so no test timeout covers a cold build)."""
    if REAL_CLUSTER or not _needs_cluster(session.items):
        return
    from kyklos.sandbox.build import BuildError, ensure_built

    reporter = session.config.pluginmanager.get_plugin("terminalreporter")

    def say(line: str) -> None:
        if reporter is not None:
            reporter.write_line(f"sandbox: {line}")

    try:
        ensure_built(say)
        if REAL_NODE:
            from kyklos.sandbox.realnode.build import ensure_node_built

            ensure_node_built(say)
    except BuildError as exc:
        raise pytest.UsageError(f"cannot build the sandbox control plane: {exc}") from None


def _read_first_line(proc: subprocess.Popen[str], timeout: float) -> str | None:
    result: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        result.append(proc.stdout.readline())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return result[0] if result and result[0] else None


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster for the whole session: KYKLOS_TEST_KUBECONFIG, or a sandbox started here."""
    external = os.environ.get("KYKLOS_TEST_KUBECONFIG")
    if external:
        yield Cluster(kubeconfig=Path(external), is_sandbox=False)
        return
    base = tmp_path_factory.mktemp("sandbox")
    data_dir = base / "data"
    kubeconfig = base / "sandbox.kubeconfig"
    serve_log = base / "serve.log"
    default_policy = _default_policy_text()
    policy_file = base / "kubelet-policy.yaml"
    policy_file.write_text(default_policy)
    argv = [
        sys.executable,
        "-m",
        "kyklos.sandbox.cli",
        "serve",
        "--port",
        "0",
        "--kubeconfig",
        str(kubeconfig),
        "--data-dir",
        str(data_dir),
        *(["--node", "real"] if REAL_NODE else ["--kubelet-policy", str(policy_file)]),
    ]
    from kyklos.sandbox.procs import die_with_parent

    with open(serve_log, "w") as log:
        # If pytest itself is killed, serve gets SIGTERM and takes the sandbox down with it.
        proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=die_with_parent()
        )
    first = _read_first_line(proc, SANDBOX_START_TIMEOUT)
    if first is None or not first.startswith("kubeconfig: "):
        proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=60)
        pytest.fail(f"the sandbox did not start; {serve_log}:\n{_tail(serve_log)}", pytrace=False)
    assert Path(first.split(": ", 1)[1].strip()) == kubeconfig
    if REAL_NODE:
        # No registry reaches this machine: the suite's Python image is the Debian python3
        # base `kyklos image build` makes here, under the name the tests use.
        subprocess.run(
            [sys.executable, "-m", "kyklos", "image", "load", "localhost/kyklos/debian-base:bookworm",
             "--as", "python:3.12-slim"],
            check=True,
            timeout=900,
        )  # fmt: skip
        # ... and the suite's long-running server image (sandbox_api.WEB_IMAGE), made here too.
        subprocess.run(
            [sys.executable, "-m", "kyklos", "image", "web", "--load"], check=True, timeout=900
        )
    handle = Cluster(
        kubeconfig=kubeconfig,
        is_sandbox=not REAL_NODE,
        data_dir=data_dir,
        audit_log=data_dir / "controlplane" / "audit.log",
        policy_file=policy_file,
        default_policy=default_policy,
        serve_log=serve_log,
        process=proc,
    )
    try:
        yield handle
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            code = None
        assert code == 0, f"sandbox serve exited with {code}; {serve_log}:\n{_tail(serve_log)}"


@pytest.fixture(scope="session")
def k8s(cluster: Cluster) -> Iterator[Any]:
    """A configured ``kubernetes.client.ApiClient`` for the session's cluster."""
    api = cluster.api_client()
    try:
        yield api
    finally:
        api.close()


def _namespace_name(request: pytest.FixtureRequest) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return f"t-{slug[:48].strip('-')}-{secrets.token_hex(3)}"


@pytest.fixture
def namespace(k8s: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace whose ``default`` ServiceAccount exists; deleted after the test."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(k8s)
    name = _namespace_name(request)
    core.create_namespace(
        client.V1Namespace(
            metadata=client.V1ObjectMeta(name=name, labels={"kyklos.io/test": "true"})
        )
    )
    # Pods are rejected until the ServiceAccount controller has made `default`.
    deadline = time.monotonic() + 60
    while True:
        try:
            core.read_namespaced_service_account("default", name)
            break
        except ApiException as exc:
            if exc.status != 404 or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    try:
        yield name
    finally:
        with contextlib.suppress(ApiException):
            core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def kubelet_policy(cluster: Cluster) -> Iterator[Callable[[str | Mapping[str, Any]], None]]:
    """Swap the node agent's kubelet policy for this test; restores the default afterwards."""
    if not cluster.is_sandbox:
        pytest.skip("the kubelet policy exists only on the Kyklos sandbox (real cluster in use)")
    changed = False

    def set_policy(policy: str | Mapping[str, Any]) -> None:
        nonlocal changed
        changed = True
        cluster.set_kubelet_policy(policy)

    try:
        yield set_policy
    finally:
        if changed:
            cluster.restore_default_policy()


# -------------------------------------------------------------------------------- operator


class _PortTaken(Exception):
    """The operator could not listen on a port picked for it (taken meanwhile)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServiceAccountCredentials:
    """A ServiceAccount bound to a ClusterRole, with a token kubeconfig."""

    namespace: str
    name: str
    kubeconfig: Path

    @property
    def username(self) -> str:
        """The user name the API server (and its audit log) sees."""
        return f"system:serviceaccount:{self.namespace}:{self.name}"


@dataclass
class OperatorProcess:
    """One running operator subprocess."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    kubeconfig: Path
    metrics_port: int
    liveness_url: str
    exit_code: int | None = None

    def log(self) -> str:
        """Everything the operator logged so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM the operator and wait for it to exit; return its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"the operator did not exit within {timeout}s of SIGTERM; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                ) from None
        self.exit_code = self.proc.returncode
        return self.exit_code


@dataclass
class OperatorRunner:
    """Starts the real operator (``python -m kyklos run``) against the test cluster."""

    cluster: Cluster
    k8s: Any
    workdir: Path
    started: list[OperatorProcess] = field(default_factory=list)
    accounts: list[tuple[str, str, str]] = field(default_factory=list)

    def __call__(
        self,
        extra_env: Mapping[str, str] | None = None,
        *,
        kubeconfig: Path | None = None,
        service_account: ServiceAccountCredentials | None = None,
        wait_healthy: bool = True,
        timeout: float = 60.0,
        namespaces: Sequence[str] = (),
        extra_args: Sequence[str] = (),
    ) -> OperatorProcess:
        """Start an operator (as the admin, or as ``service_account``) and wait for /healthz.

        It watches every namespace unless ``namespaces`` names some.
        """
        if service_account is not None:
            kubeconfig = service_account.kubeconfig
        kubeconfig = kubeconfig or self.cluster.kubeconfig
        # A port free when picked may be taken by another process before the operator
        # binds it; the operator then exits 2 naming it, and a second pick is tried.
        for _attempt in range(2):
            try:
                return self._start(
                    extra_env, kubeconfig, wait_healthy, timeout, namespaces, extra_args
                )
            except _PortTaken:
                continue
        return self._start(extra_env, kubeconfig, wait_healthy, timeout, namespaces, extra_args)

    def _start(
        self,
        extra_env: Mapping[str, str] | None,
        kubeconfig: Path,
        wait_healthy: bool,
        timeout: float,
        namespaces: Sequence[str],
        extra_args: Sequence[str],
    ) -> OperatorProcess:
        metrics_port, health_port = free_port(), free_port()
        liveness = f"http://127.0.0.1:{health_port}/healthz"
        log_path = self.workdir / f"operator-{len(self.started) + 1}.log"
        env = {**os.environ, **(extra_env or {})}
        argv = [
            sys.executable,
            "-m",
            "kyklos",
            "run",
            "--kubeconfig",
            str(kubeconfig),
            *([f"--namespace={ns}" for ns in namespaces] or ["--all-namespaces"]),
            "--standalone",
            "--metrics-port",
            str(metrics_port),
            "--liveness",
            liveness,
            *extra_args,
        ]
        from kyklos.sandbox.procs import die_with_parent

        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # no operator outlives a killed test run
            )
        handle = OperatorProcess(proc, log_path, kubeconfig, metrics_port, liveness)
        self.started.append(handle)
        if wait_healthy:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    if proc.returncode == 2 and "address already in use" in _tail(log_path):
                        raise _PortTaken(_tail(log_path))
                    raise AssertionError(
                        f"the operator exited with {proc.returncode} during start-up; "
                        f"log {log_path}:\n{_tail(log_path)}"
                    )
                try:
                    with urllib.request.urlopen(liveness, timeout=2) as resp:
                        if resp.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"the operator's {liveness} did not answer within {timeout}s; "
                        f"log {log_path}:\n{_tail(log_path)}"
                    )
                time.sleep(0.2)
        return handle

    def as_service_account(
        self, cluster_role_rules: Sequence[Mapping[str, Any]], namespace: str = "default"
    ) -> ServiceAccountCredentials:
        """Create a ServiceAccount bound to a ClusterRole with these rules; a token kubeconfig."""
        from kubernetes import client

        name = f"kyklos-test-{secrets.token_hex(4)}"
        core = client.CoreV1Api(self.k8s)
        rbac = client.RbacAuthorizationV1Api(self.k8s)
        core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
        )
        rbac.create_cluster_role(
            {"metadata": {"name": name}, "rules": [dict(rule) for rule in cluster_role_rules]}
        )
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": name},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": name,
                },
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            }
        )
        self.accounts.append((namespace, name, name))
        token = core.create_namespaced_service_account_token(
            name, namespace, {"spec": {"expirationSeconds": 4 * 3600}}
        ).status.token
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(token_kubeconfig(self.k8s, token)))
        path.chmod(0o600)
        return ServiceAccountCredentials(namespace, name, path)

    def cleanup(self) -> list[str]:
        """Stop every operator and delete the accounts; return the problems found."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        problems = []
        for handle in self.started:
            try:
                handle.stop()
            except AssertionError as exc:
                problems.append(str(exc))
        core = client.CoreV1Api(self.k8s)
        rbac = client.RbacAuthorizationV1Api(self.k8s)
        for namespace, account, role in self.accounts:
            with contextlib.suppress(ApiException):
                rbac.delete_cluster_role_binding(role)
            with contextlib.suppress(ApiException):
                rbac.delete_cluster_role(role)
            with contextlib.suppress(ApiException):
                core.delete_namespaced_service_account(account, namespace)
        return problems


def token_kubeconfig(k8s: Any, token: str) -> dict[str, Any]:
    """A kubeconfig for the same API server as ``k8s``, authenticating with a bearer token."""
    conf = k8s.configuration
    cluster: dict[str, Any] = {"server": conf.host}
    if conf.ssl_ca_cert:
        cluster["certificate-authority-data"] = base64.b64encode(
            Path(conf.ssl_ca_cert).read_bytes()
        ).decode()
    elif not conf.verify_ssl:
        cluster["insecure-skip-tls-verify"] = True
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "test", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    }


@pytest.fixture
def operator(cluster: Cluster, k8s: Any, tmp_path: Path) -> Iterator[OperatorRunner]:
    """A factory for real operator subprocesses; each is SIGTERMed (and must exit) afterwards."""
    runner = OperatorRunner(cluster, k8s, tmp_path)
    try:
        yield runner
    finally:
        problems = runner.cleanup()
        assert not problems, "\n".join(problems)


# ----------------------------------------------------------------------------------- audit

Operation = tuple[str, str, str, str]  # (verb, apiGroup, resource, subresource)
#: Recorded in place of 403 when the authorizer (not admission) denied the request.
RBAC_DENIED = -403


@dataclass
class AuditLog:
    """Reads the sandbox API server's audit log (JSON lines, Metadata level).

    Requests are indexed incrementally (only lines appended since the last call are parsed),
    so polling it in a loop stays cheap however long the session's log grows.
    """

    path: Path
    _offset: int = 0
    _by_user: dict[str, list[tuple[Operation, int]]] = field(default_factory=dict)

    def events(self, user: str | None = None) -> Iterator[dict[str, Any]]:
        """Completed requests (optionally of one user), oldest first (reads the whole file)."""
        with open(self.path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                event = _audit_event(line)
                if event is None:
                    continue
                if user is not None and event.get("user", {}).get("username") != user:
                    continue
                yield event

    def operations(self, user: str, *, allowed_only: bool = True) -> set[Operation]:
        """(verb, apiGroup, resource, subresource) the user requested (allowed ones by default)."""
        return {
            op
            for op, code in self._requests(user)
            if not allowed_only or code not in (401, 403, RBAC_DENIED)
        }

    def forbidden(self, user: str) -> set[Operation]:
        """Operations the user attempted and RBAC denied.

        The authorizer's own verdict (the audit annotation ``authorization.k8s.io/decision:
        forbid``) tells an RBAC denial from other 403s, such as admission refusing new
        objects in a namespace that is being terminated.
        """
        return {op for op, code in self._requests(user) if code == RBAC_DENIED}

    def _requests(self, user: str) -> list[tuple[Operation, int]]:
        self._catch_up()
        return self._by_user.get(user, [])

    def _catch_up(self) -> None:
        with open(self.path, "rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1  # a line being written right now waits for the next call
        self._offset += end
        for line in data[:end].decode("utf-8", "replace").splitlines():
            event = _audit_event(line)
            if event is None or not event.get("objectRef"):
                continue  # non-resource URLs (/healthz, /version, discovery)
            ref = event["objectRef"]
            op = (
                event.get("verb", ""),
                ref.get("apiGroup", ""),
                ref.get("resource", ""),
                ref.get("subresource", ""),
            )
            code = int(event.get("responseStatus", {}).get("code", 200))
            decision = (event.get("annotations") or {}).get("authorization.k8s.io/decision")
            if code == 403 and decision == "forbid":
                code = RBAC_DENIED
            username = event.get("user", {}).get("username", "")
            self._by_user.setdefault(username, []).append((op, code))


def _audit_event(line: str) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except json.JSONDecodeError:
        return None  # a line being written right now
    if event.get("stage") not in ("ResponseComplete", "ResponseStarted", "Panic"):
        return None
    return event  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def _audit_log(cluster: Cluster) -> AuditLog | None:
    return AuditLog(cluster.audit_log) if cluster.audit_log is not None else None


@pytest.fixture
def audit(_audit_log: AuditLog | None) -> AuditLog:
    """The API server's audit log (sandbox only)."""
    if _audit_log is None:
        pytest.skip("the audit log is only readable on the Kyklos sandbox (real cluster in use)")
    return _audit_log
