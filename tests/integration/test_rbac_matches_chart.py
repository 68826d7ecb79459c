"""The Helm chart's ClusterRole is exactly what the operator uses, read from the audit log.

The story: a platform team installs the chart with its defaults and a data scientist applies
the churn examples. The real operator runs as a ServiceAccount bound to nothing but the rules
the chart renders, while the examples go through profiling, training, serving and a drift
check. Afterwards the API server's audit log shows every request the operator made:

- none was forbidden, and each is granted by the chart's rules (the chart is enough), and
- every rule the chart grants was used, or is on the documented allow-list below with the
  reason it is granted anyway (the chart is not more than needed).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "kyklos"
EXAMPLES = REPO / "examples"
EXAMPLE_CLAIM = "kyklos-examples"
GROUP, VERSION = "kyklos.io", "v1alpha1"
PLURALS = {
    "Dataset": "datasets",
    "TrainingJob": "trainingjobs",
    "ModelDeployment": "modeldeployments",
    "DriftMonitor": "driftmonitors",
}
SETTLE_TIMEOUT = 420.0

sys.path.insert(0, str(REPO / "tests"))
from helm_tool import resolve_helm  # noqa: E402

Grant = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)

# Granted by the chart although the examples' run does not exercise them. Every entry names
# the code path that needs it; anything granted, unused and not listed here fails the test,
# and so does an entry the chart no longer grants.
ALLOWED_UNUSED: dict[Grant, str] = {
    **{
        ("kyklos.io", f"{plural}/finalizers", "update"): (
            "OwnerReferencesPermissionEnforcement (OpenShift): children set blockOwnerDeletion"
        )
        for plural in PLURALS.values()
    },
    ("kyklos.io", "datasets", "get"): (
        "granted with the other kinds in one rule; the operator reads Datasets from its watch "
        "(the DriftMonitor's index; its GET fallback runs only before the index exists)"
    ),
    ("kyklos.io", "modeldeployments", "patch"): (
        "a DriftMonitor promotes its accepted retrained model (after this run's retraining)"
    ),
    ("kyklos.io", "trainingjobs", "patch"): (
        "`kyklos run` preflight demands list/watch/patch on every kind; TrainingJob handlers "
        "are stateless event handlers, so kopf never patches them"
    ),
    ("batch", "jobs", "patch"): "TrainingJob spec.suspend toggles the Job's suspend",
    ("batch", "jobs", "delete"): "a Dataset re-profiles / a DriftMonitor re-runs its check",
    ("", "services", "patch"): "a ModelDeployment whose runtime port changes",
    ("apps", "deployments", "patch"): "canary steps and promotion (needs a second model)",
    ("apps", "deployments", "delete"): "removing the canary after promotion or rollback",
    **{
        ("autoscaling", "horizontalpodautoscalers", verb): "spec.autoscaling (not in the examples)"
        for verb in ("get", "create", "patch", "delete")
    },
}

# What every authenticated user may do under Kubernetes' default bindings (system:basic-user);
# the operator's preflight uses it to check its own permissions.
DEFAULT_ALLOWED: set[tuple[str, str]] = {
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
}


def render_cluster_role() -> list[dict[str, Any]]:
    """The rules of the ClusterRole the chart renders with its default values."""
    helm = resolve_helm()
    proc = subprocess.run(
        [str(helm), "template", "kyklos", str(CHART), "--namespace", "kyklos-system"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    manifests = [doc for doc in yaml.safe_load_all(proc.stdout) if doc]
    # The operator's role; the user roles aggregated into edit/view are not its (test_user_roles).
    (role,) = [
        m
        for m in manifests
        if m["kind"] == "ClusterRole"
        and not any("aggregate-to-" in label for label in m["metadata"].get("labels", {}))
    ]
    assert not [m for m in manifests if m["kind"] == "Role"], "defaults must be cluster-wide"
    rules: list[dict[str, Any]] = role["rules"]
    return rules


def chart_operator_env() -> dict[str, str]:
    """The KYKLOS_* environment the chart gives the operator container by default."""
    helm = resolve_helm()
    proc = subprocess.run(
        [str(helm), "template", "kyklos", str(CHART), "--show-only", "templates/deployment.yaml"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    deployment = yaml.safe_load(proc.stdout)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container["env"] if e["name"].startswith("KYKLOS_")}


def grants(rules: Iterable[Mapping[str, Any]]) -> set[Grant]:
    """Every (apiGroup, resource, verb) the rules grant."""
    return {
        (group, resource, verb)
        for rule in rules
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def as_grant(operation: tuple[str, str, str, str]) -> Grant:
    verb, group, resource, subresource = operation
    return group, f"{resource}/{subresource}" if subresource else resource, verb


def load_example_data(k8s: Any, namespace: str) -> None:
    """Create the examples' claim and copy examples/data into its volume (sandbox storage)."""
    from kubernetes import client

    core = client.CoreV1Api(k8s)
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": EXAMPLE_CLAIM},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    deadline = time.monotonic() + 60
    while True:
        claim = core.read_namespaced_persistent_volume_claim(EXAMPLE_CLAIM, namespace)
        if claim.status.phase == "Bound":
            break
        assert time.monotonic() < deadline, f"claim {EXAMPLE_CLAIM} not Bound within 60s"
        time.sleep(0.2)
    volume = core.read_persistent_volume(claim.spec.volume_name)
    assert volume.spec.host_path is not None, "sandbox volumes are local directories"
    target = Path(volume.spec.host_path.path)
    for source in sorted((EXAMPLES / "data").iterdir()):
        if source.is_file():
            shutil.copy2(source, target / source.name)


def example_resources() -> list[dict[str, Any]]:
    """Every Kyklos resource in examples/, in dependency order."""
    docs = [
        doc
        for path in sorted(EXAMPLES.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]
    order = list(PLURALS)
    resources = [d for d in docs if d.get("apiVersion") == f"{GROUP}/{VERSION}"]
    assert {d["kind"] for d in resources} == set(PLURALS), "examples/ lacks a Kyklos kind"
    return sorted(resources, key=lambda d: order.index(d["kind"]))


def _status(custom: Any, namespace: str, kind: str, name: str) -> dict[str, Any]:
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURALS[kind], name)
    status: dict[str, Any] = obj.get("status") or {}
    status["_generation"] = obj["metadata"].get("generation")
    return status


def _ready(status: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def _settled(kind: str, status: Mapping[str, Any]) -> bool:
    """Whether a resource went as far as the examples take it."""
    if kind == "DriftMonitor":
        return bool(status.get("lastCheckTime"))
    return _ready(status) or status.get("phase") in ("Failed", "RolledBack", "Degraded")


def wait_until_settled(
    k8s: Any,
    namespace: str,
    resources: Sequence[Mapping[str, Any]],
    operator_problem: Callable[[], str | None],
) -> dict[str, dict[str, Any]]:
    """Wait until each example resource is handled and settled; return the last statuses."""
    from kubernetes import client

    custom = client.CustomObjectsApi(k8s)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        statuses = {
            f"{r['kind']}/{r['metadata']['name']}": _status(
                custom, namespace, r["kind"], r["metadata"]["name"]
            )
            for r in resources
        }
        if all(
            _settled(key.split("/")[0], status) and status.get("observedGeneration")
            for key, status in statuses.items()
        ):
            return statuses
        problem = operator_problem()
        assert problem is None, problem
        if time.monotonic() > deadline:
            return statuses
        time.sleep(2)


@pytest.mark.slow
@pytest.mark.sandbox_only
def test_the_operator_uses_exactly_what_the_chart_grants(
    cluster: Any, k8s: Any, crds_installed: None, namespace: str, operator: Any, audit: Any
) -> None:
    from kubernetes import client

    rules = render_cluster_role()
    granted = grants(rules)
    load_example_data(k8s, namespace)
    account = operator.as_service_account(rules, namespace=namespace)
    running = operator(chart_operator_env(), service_account=account)

    custom = client.CustomObjectsApi(k8s)
    resources = example_resources()
    for resource in resources:
        custom.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[resource["kind"]], resource
        )
    statuses = wait_until_settled(
        k8s,
        namespace,
        resources,
        lambda: (
            None
            if running.proc.poll() is None
            else f"the operator exited:\n{running.log()[-3000:]}"
        ),
    )
    # Deleting the examples exercises the finalizer (clean-up) paths too.
    for resource in reversed(resources):
        with contextlib.suppress(client.exceptions.ApiException):
            custom.delete_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[resource["kind"]], resource["metadata"]["name"]
            )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(
        custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
        for plural in PLURALS.values()
    ):
        time.sleep(1)
    assert running.stop() == 0, running.log()[-3000:]

    progress = "\n".join(
        f"  {key}: phase={s.get('phase')} ready={_ready(s)} observedGeneration="
        f"{s.get('observedGeneration')}/{s.get('_generation')}"
        for key, s in statuses.items()
    )
    forbidden = audit.forbidden(account.username)
    assert not forbidden, (
        f"the chart's ClusterRole lacks permissions the operator used: {sorted(forbidden)}\n"
        f"{progress}"
    )
    used = {
        as_grant(op)
        for op in audit.operations(account.username)
        if (op[1], op[2]) not in DEFAULT_ALLOWED
    }
    assert used, "the audit log shows no request of the operator's ServiceAccount"
    beyond = used - granted
    assert not beyond, f"used but not granted by the chart (allowed elsewhere?): {sorted(beyond)}"
    unexplained = granted - used - set(ALLOWED_UNUSED)
    assert not unexplained, (
        "the chart grants more than the operator used and the allow-list explains: "
        f"{sorted(unexplained)}\nexample progress:\n{progress}\n"
        f"operator log tail:\n{running.log()[-2000:]}"
    )
    # The allow-list must not go stale: an entry for something no longer granted is an error.
    stale = set(ALLOWED_UNUSED) - granted
    assert not stale, f"allow-list entries the chart no longer grants: {sorted(stale)}"


def _helm(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(resolve_helm()), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_the_chart_installs_upgrades_and_uninstalls_on_a_real_api_server(
    cluster: Any, k8s: Any, namespace: str
) -> None:
    """A platform team's install: every object is accepted, HA peering works on the first
    install, scaling down removes it, and uninstalling keeps the CRDs (and users' data)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    release = f"kyklos-{namespace[-6:]}"
    # Watching only the test namespace keeps this operator away from other tests' resources;
    # --take-ownership (and --force-conflicts for server-side apply) adopts the CRDs other
    # tests may have applied already. An image the
    # sandbox's kubelet policy only pretends to run: this test is about the objects.
    common = [
        CHART.as_posix(),
        "--namespace", namespace,
        "--take-ownership",
        "--force-conflicts",
        "--set", f"watchNamespaces={{{namespace}}}",
        "--set", "image.repository=registry.invalid/placeholder",
    ]  # fmt: skip
    install = _helm(cluster.kubeconfig, "install", release, *common, "--set", "replicaCount=2")
    assert install.returncode == 0, install.stderr
    try:
        ext = client.ApiextensionsV1Api(k8s)
        crds = {c.metadata.name for c in ext.list_custom_resource_definition().items}
        assert {f"{plural}.kyklos.io" for plural in PLURALS.values()} <= crds
        assert {"kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"} <= crds
        custom = client.CustomObjectsApi(k8s)
        peering = custom.get_namespaced_custom_object(
            "kopf.dev", "v1", namespace, "kopfpeerings", "kyklos"
        )
        assert peering["metadata"]["name"] == "kyklos"
        apps = client.AppsV1Api(k8s)
        deployment = apps.read_namespaced_deployment(release, namespace)
        assert deployment.spec.replicas == 2
        policy = client.PolicyV1Api(k8s)
        assert (
            policy.read_namespaced_pod_disruption_budget(release, namespace).spec.min_available == 1
        )
        rbac = client.RbacAuthorizationV1Api(k8s)
        assert rbac.read_namespaced_role(release, namespace).rules
        assert rbac.read_cluster_role(release).rules

        upgrade = _helm(cluster.kubeconfig, "upgrade", release, *common, "--set", "replicaCount=1")
        assert upgrade.returncode == 0, upgrade.stderr
        assert apps.read_namespaced_deployment(release, namespace).spec.strategy.type == "Recreate"
        with pytest.raises(ApiException) as gone:
            custom.get_namespaced_custom_object(
                "kopf.dev", "v1", namespace, "kopfpeerings", "kyklos"
            )
        assert gone.value.status == 404
        with pytest.raises(ApiException) as no_pdb:
            policy.read_namespaced_pod_disruption_budget(release, namespace)
        assert no_pdb.value.status == 404
    finally:
        uninstall = _helm(cluster.kubeconfig, "uninstall", release, "--namespace", namespace)
    assert uninstall.returncode == 0, uninstall.stderr
    assert "kept due to the resource policy" in uninstall.stdout + uninstall.stderr
    crds = {c.metadata.name for c in ext.list_custom_resource_definition().items}
    assert {f"{plural}.kyklos.io" for plural in PLURALS.values()} <= crds
    with pytest.raises(ApiException) as no_role:
        rbac.read_cluster_role(release)
    assert no_role.value.status == 404


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _deployment_problem(k8s: Any, namespace: str, name: str) -> str | None:
    """None while the operator Deployment is healthy, else what is wrong with its pods."""
    from kubernetes import client

    pods = client.CoreV1Api(k8s).list_namespaced_pod(
        namespace,
        label_selector=f"app.kubernetes.io/component=operator,app.kubernetes.io/instance={name}",
    )
    for pod in pods.items:
        for status in pod.status.container_statuses or []:
            if status.restart_count > 3:
                return f"operator pod {pod.metadata.name} restarted {status.restart_count} times"
    return None


@pytest.mark.slow
@pytest.mark.sandbox_only
def test_the_chart_installed_operator_runs_the_examples_in_its_namespace(
    cluster: Any, k8s: Any, namespace: str, audit: Any
) -> None:
    """The operator as the chart deploys it: its image (the sandbox runs `kyklos` for it), its
    arguments and environment, its ServiceAccount and the namespace-mode RBAC (a Role plus
    the observers' ClusterRole) take the examples from data to a served, drift-checked model."""
    from kubernetes import client

    release = f"kyklos-{namespace[-6:]}"
    user = f"system:serviceaccount:{namespace}:{release}"
    # Free ports: the sandbox runs pods as host processes, without network namespaces.
    install = _helm(
        cluster.kubeconfig,
        "install", release, CHART.as_posix(),
        "--namespace", namespace,
        "--take-ownership",
        "--force-conflicts",
        "--set", f"watchNamespaces={{{namespace}}}",
        "--set", f"metrics.port={_free_port()}",
        "--set", f"healthPort={_free_port()}",
        "--set", "logging.format=text",
    )  # fmt: skip
    assert install.returncode == 0, install.stderr
    try:
        apps = client.AppsV1Api(k8s)
        deadline = time.monotonic() + 180
        while (apps.read_namespaced_deployment(release, namespace).status.ready_replicas or 0) < 1:
            problem = _deployment_problem(k8s, namespace, release)
            assert problem is None, problem
            assert time.monotonic() < deadline, "the operator Deployment is not ready after 180s"
            time.sleep(1)
        load_example_data(k8s, namespace)
        custom = client.CustomObjectsApi(k8s)
        resources = example_resources()
        for resource in resources:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[resource["kind"]], resource
            )
        statuses = wait_until_settled(
            k8s, namespace, resources, lambda: _deployment_problem(k8s, namespace, release)
        )
        # Read before uninstalling: helm deletes the Role while the operator pod is still
        # shutting down, and the 403s of those last seconds are not missing permissions.
        denied = audit.forbidden(user)
    finally:
        uninstall = _helm(cluster.kubeconfig, "uninstall", release, "--namespace", namespace)
    assert uninstall.returncode == 0, uninstall.stderr
    for key, status in statuses.items():
        kind = key.split("/")[0]
        if kind == "DriftMonitor":
            assert status.get("lastCheckTime"), f"{key} never checked: {status}"
        else:
            assert _ready(status), f"{key} is not Ready: {status}"
    assert audit.operations(user), f"no request of {user} in the audit log"
    assert not denied, f"namespace-mode RBAC lacks: {sorted(denied)}"


def render_chart(*args: str) -> list[dict[str, Any]]:
    """Render the chart with extra helm arguments; the manifests, CRDs included."""
    proc = subprocess.run(
        [str(resolve_helm()), "template", "kyklos", str(CHART), "--include-crds", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def _create_all(k8s: Any, manifests: Iterable[Mapping[str, Any]]) -> None:
    """Create objects through the dynamic client, tolerating ones that already exist."""
    from kubernetes import dynamic
    from kubernetes.client.rest import ApiException

    dyn = dynamic.DynamicClient(k8s)
    for manifest in manifests:
        api = dyn.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        try:
            api.create(body=dict(manifest), namespace=manifest["metadata"].get("namespace"))
        except ApiException as exc:
            if exc.status != 409:
                raise


class _Replica:
    """One `kyklos run --peering` process, as a pod of the chart's HA Deployment runs it."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log: Path) -> None:
        self.log_path = log
        self.health = argv[argv.index("--liveness") + 1]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, env=dict(env), start_new_session=True
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_healthy(self, timeout: float = 60) -> None:
        import urllib.error
        import urllib.request

        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, f"replica exited:\n{self.log()[-3000:]}"
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(self.health, timeout=2) as resp,
            ):
                if resp.status == 200:
                    return
            assert time.monotonic() < deadline, f"{self.health} silent:\n{self.log()[-3000:]}"
            time.sleep(0.3)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _wait_ready(k8s: Any, namespace: str, resource: Mapping[str, Any], timeout: float) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(k8s)
    kind, name = resource["kind"], resource["metadata"]["name"]
    deadline = time.monotonic() + timeout
    while not _ready(_status(custom, namespace, kind, name)):
        assert time.monotonic() < deadline, f"{kind}/{name} not Ready within {timeout}s"
        time.sleep(1)


@pytest.mark.slow
@pytest.mark.sandbox_only
def test_ha_replicas_elect_one_active_operator_and_fail_over(
    cluster: Any,
    k8s: Any,
    crds_installed: None,
    namespace: str,
    operator: Any,
    audit: Any,
    tmp_path: Path,
) -> None:
    """`replicaCount: 2` as the chart renders it: the peering CRD and object, the arguments,
    and the namespace-mode RBAC. One replica acts, the other stands by, and takes over when
    the first stops."""
    from kubernetes import client

    manifests = render_chart(
        "--namespace", namespace,
        "--set", "replicaCount=2",
        "--set", f"watchNamespaces={{{namespace}}}",
    )  # fmt: skip
    _create_all(
        k8s,
        [
            m
            for m in manifests
            if m["kind"] == "CustomResourceDefinition" and "kopf" in m["spec"]["group"]
        ],
    )
    ext = client.ApiextensionsV1Api(k8s)
    deadline = time.monotonic() + 60
    while not any(
        c.type == "Established" and c.status == "True"
        for c in ext.read_custom_resource_definition("kopfpeerings.kopf.dev").status.conditions
        or []
    ):
        assert time.monotonic() < deadline, "kopfpeerings.kopf.dev not Established"
        time.sleep(0.2)
    # The peering object can be created only once discovery serves the new kind.
    deadline = time.monotonic() + 60
    while True:
        try:
            _create_all(k8s, [m for m in manifests if m["kind"] == "KopfPeering"])
            # The worker ServiceAccount the chart creates in each watched namespace (the
            # operator names it in every worker pod).
            _create_all(k8s, [m for m in manifests if m["kind"] == "ServiceAccount"])
            break
        except Exception:
            assert time.monotonic() < deadline, "cannot create the KopfPeering"
            time.sleep(0.5)
    rules = [
        rule
        for m in manifests
        if m["kind"] in ("ClusterRole", "Role")
        and not any("aggregate-to-" in label for label in m["metadata"].get("labels", {}))
        for rule in m["rules"]
    ]
    account = operator.as_service_account(rules, namespace=namespace)
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = list(container["args"])
    assert args[args.index("--peering") + 1] == "kyklos"
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]}}
    env.pop("TMPDIR", None)

    replicas = []
    for index in range(2):
        argv = list(args)
        argv[argv.index("--metrics-port") + 1] = str(_free_port())
        argv[argv.index("--liveness") + 1] = f"http://127.0.0.1:{_free_port()}/healthz"
        replicas.append(
            _Replica(
                [sys.executable, "-m", "kyklos", *argv, "--kubeconfig", str(account.kubeconfig)],
                env,
                tmp_path / f"replica-{index}.log",
            )
        )
    try:
        for replica in replicas:
            replica.wait_healthy()
        custom = client.CustomObjectsApi(k8s)
        deadline = time.monotonic() + 60
        while True:
            peering = custom.get_namespaced_custom_object(
                "kopf.dev", "v1", namespace, "kopfpeerings", "kyklos"
            )
            peers = peering.get("status") or {}
            if len(peers) == 2:
                break
            assert time.monotonic() < deadline, f"peers never both announced: {peers}"
            time.sleep(0.5)
        priorities = {p["priority"] for p in peers.values()}
        assert len(priorities) == 2, f"equal priorities pause every replica: {peers}"

        load_example_data(k8s, namespace)
        first, second = [r for r in example_resources() if r["kind"] == "Dataset"][:2]
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "datasets", first)
        _wait_ready(k8s, namespace, first, timeout=180)
        acting = [r for r in replicas if first["metadata"]["name"] in r.log()]
        assert len(acting) == 1, "exactly one replica must handle the Dataset"
        active = acting[0]
        standby = next(r for r in replicas if r is not active)
        assert "Pausing all operators" not in active.log() + standby.log()

        # The standby may have acted alone before its peer started: count, do not search.
        resumed = standby.log().count("Resuming operations")
        assert active.stop() == 0, active.log()[-3000:]
        deadline = time.monotonic() + 90
        while standby.log().count("Resuming operations") == resumed:
            assert time.monotonic() < deadline, (
                f"the standby never took over:\n{standby.log()[-3000:]}"
            )
            time.sleep(0.5)
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "datasets", second)
        _wait_ready(k8s, namespace, second, timeout=180)
        assert second["metadata"]["name"] in standby.log()
    finally:
        codes = [replica.stop() for replica in replicas]
    assert codes == [0, 0], [r.log()[-2000:] for r in replicas]
    assert not audit.forbidden(account.username), sorted(audit.forbidden(account.username))
