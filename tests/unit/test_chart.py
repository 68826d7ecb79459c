"""The Helm chart: lint-clean, schema-valid manifests, least privilege, restricted pod security.

Everything runs on `helm` taken from a PyPI wheel (tests/helm_tool.py) and needs no cluster.
Each documented value set in charts/kyklos/ci/ is rendered and checked like the defaults.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_validate import utils as kv
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
# tests/ is not a package (pytest's rootdir-relative imports); helm_tool lives there.
sys.path.insert(0, str(REPO / "tests"))
from helm_tool import HelmUnavailableError, resolve_helm  # noqa: E402

CHART = REPO / "charts" / "kyklos"
RELEASE = "kyklos"
NAMESPACE = "kyklos-system"

# None stands for the chart's defaults; the others are the documented value sets.
VALUE_SETS: list[str | None] = [None, *sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))]
OLDEST_KUBERNETES = Version("1.29")
KUBERNETES_VERSIONS = sorted(
    {
        f"{Version(v).major}.{Version(v).minor}"
        for v in kv.all_versions()
        if Version(v) >= OLDEST_KUBERNETES
    },
    key=Version,
)

Manifest = dict[str, Any]


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return resolve_helm()
    except HelmUnavailableError as exc:
        pytest.fail(f"helm is needed for the chart tests: {exc}")


def _values_args(value_set: str | None) -> list[str]:
    return [] if value_set is None else ["-f", str(CHART / "ci" / value_set)]


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False
    )


@cache
def _render_cached(helm: Path, args: tuple[str, ...]) -> tuple[Manifest, ...]:
    proc = run_helm(
        helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--include-crds", *args
    )
    assert proc.returncode == 0, f"helm template {' '.join(args)} failed:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def render(helm: Path, *args: str) -> list[Manifest]:
    """Render the chart with extra helm arguments; return the manifests (deep copies)."""
    return json.loads(json.dumps(_render_cached(helm, tuple(args))))


def by_kind(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [m for m in manifests if m["kind"] == kind]


def one(manifests: list[Manifest], kind: str) -> Manifest:
    found = by_kind(manifests, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def operator_container(manifests: list[Manifest]) -> Manifest:
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    (container,) = [c for c in pod["containers"] if c["name"] == "operator"]
    return container


def env_of(manifests: list[Manifest]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in operator_container(manifests)["env"]}


AGGREGATE_LABELS = {
    f"rbac.authorization.k8s.io/aggregate-to-{r}" for r in ("edit", "admin", "view")
}


def is_user_role(role: Manifest) -> bool:
    """A role for people, aggregated into edit/admin/view (not the operator's own)."""
    return bool(AGGREGATE_LABELS & set(role["metadata"].get("labels", {})))


def operator_roles(manifests: list[Manifest], kind: str) -> list[Manifest]:
    return [role for role in by_kind(manifests, kind) if not is_user_role(role)]


def rules_of(manifests: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    for role in operator_roles(manifests, "ClusterRole") + operator_roles(manifests, "Role"):
        for rule in role.get("rules", []):
            yield role, rule


def granted(manifests: list[Manifest]) -> set[tuple[str, str, str]]:
    """Every (apiGroup, resource, verb) the rendered (Cluster)Roles grant."""
    return {
        (group, resource, verb)
        for _, rule in rules_of(manifests)
        for group in rule.get("apiGroups", [])
        for resource in rule.get("resources", [])
        for verb in rule.get("verbs", [])
    }


# ---------------------------------------------------------------------------- lint, validity


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=lambda v: v or "defaults")
def test_chart_lints_strict(helm: Path, value_set: str | None) -> None:
    proc = run_helm(helm, "lint", "--strict", str(CHART), *_values_args(value_set))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def _crd_schemas(manifests: list[Manifest]) -> dict[tuple[str, str], Manifest]:
    """openAPIV3Schema of each CRD the chart ships, keyed by (apiVersion, kind)."""
    schemas = {}
    for crd in by_kind(manifests, "CustomResourceDefinition"):
        for version in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


# The fields of monitoring.coreos.com/v1 ServiceMonitor this chart sets, with their types
# from prometheus-operator's CRD; kubernetes-validate has no schema for third-party kinds.
SERVICE_MONITOR_SCHEMA: Manifest = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "matchLabels": {
                            "type": "object",
                            "additionalProperties": {"type": "string"},
                        }
                    },
                },
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchNames": {"type": "array", "items": {"type": "string"}}},
                },
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string"},
                            "path": {"type": "string"},
                            "interval": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)(ms|s|m|h|d|w|y))+)$",
                            },
                            "scrapeTimeout": {
                                "type": "string",
                                "pattern": "^(0|(([0-9]+)(ms|s|m|h|d|w|y))+)$",
                            },
                        },
                    },
                },
            },
        }
    },
}


@cache
def _validate_official(manifest_json: str, version: str) -> str | None:
    """Validate against kubernetes-validate's strict schemas; None when it has no schema."""
    try:
        kv.validate(json.loads(manifest_json), version, strict=True)
    except kv.SchemaNotFoundError:
        return None
    except kv.ValidationError as exc:
        return f"{'.'.join(str(p) for p in exc.path)}: {exc.message}"
    return ""


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=lambda v: v or "defaults")
def test_every_manifest_is_valid_for_each_supported_kubernetes(
    helm: Path, value_set: str | None
) -> None:
    manifests = render(helm, *_values_args(value_set))
    crd_schemas = _crd_schemas(manifests)
    assert KUBERNETES_VERSIONS[0] == "1.29" and len(KUBERNETES_VERSIONS) >= 2
    errors = []
    for manifest in manifests:
        name = f"{manifest['kind']}/{manifest['metadata']['name']}"
        key = (manifest["apiVersion"], manifest["kind"])
        for version in KUBERNETES_VERSIONS:
            result = _validate_official(json.dumps(manifest, sort_keys=True), version)
            if result:
                errors.append(f"{name} on Kubernetes {version}: {result}")
            if result is not None:
                continue
            # No official schema: a custom resource. Judge it by the CRD that defines it,
            # and fail on any kind the chart has no schema for at all.
            if key in crd_schemas:
                schema = crd_schemas[key]
            elif key == ("monitoring.coreos.com/v1", "ServiceMonitor"):
                schema = SERVICE_MONITOR_SCHEMA
            else:
                errors.append(f"{name}: no schema for {key}; add one to this test")
                break
            for error in jsonschema.Draft7Validator(schema).iter_errors(manifest):
                errors.append(f"{name}: {error.json_path}: {error.message}")
            break  # a CRD's schema does not depend on the Kubernetes version
    assert not errors, "\n".join(errors)


# ---------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--set", "replicaCount=-1"], "/replicaCount"),
        (["--set", "logging.level=verbose"], "/logging/level"),
        (["--set", "logging.format=xml"], "/logging/format"),
        (["--set", "artifacts.persistence.enabled=false"], "/artifacts"),
        (["--set", "image.pullPolicy=Sometimes"], "/image/pullPolicy"),
        (["--set", "watchNamespaces[0]=Not_A_Namespace"], "/watchNamespaces/0"),
        (["--set", "metrics.port=70000"], "/metrics/port"),
        (["--set", "resources.limits.memory=lots"], "/resources/limits/memory"),
        (["--set", "artifacts.uri=bucket-without-scheme"], "/artifacts/uri"),
        (["--set", "image.digest=latest"], "/image/digest"),
        (["--set", "replicaCount=two"], "/replicaCount"),
        (["--set", "typo=1"], "typo"),
    ],
    ids=lambda v: v if isinstance(v, str) else v[-1],
)
def test_schema_rejects_bad_values_naming_them(helm: Path, args: list[str], named: str) -> None:
    proc = run_helm(helm, "template", RELEASE, str(CHART), *args)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert "values don't meet the specifications of the schema" in proc.stderr
    assert named in proc.stderr, proc.stderr


def test_artifacts_without_any_store_fail_with_a_message_naming_the_values(helm: Path) -> None:
    proc = run_helm(
        helm, "template", RELEASE, str(CHART), "--set", "artifacts.persistence.enabled=false"
    )
    assert proc.returncode != 0
    for value in ("/artifacts/uri", "/artifacts/existingClaim", "/artifacts/persistence/enabled"):
        assert value in proc.stderr, proc.stderr


def test_service_monitor_without_the_service_fails_naming_both_values(helm: Path) -> None:
    proc = run_helm(
        helm, "template", RELEASE, str(CHART),
        "--set", "metrics.serviceMonitor.enabled=true", "--set", "metrics.service.enabled=false",
    )  # fmt: skip
    assert proc.returncode != 0
    assert (
        "metrics.serviceMonitor.enabled" in proc.stderr and "metrics.service.enabled" in proc.stderr
    )


def test_every_value_in_values_yaml_is_described_by_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def resolve(node: Manifest) -> Manifest:
        while "$ref" in node:
            node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
        return node

    missing = []

    def walk(value: Any, node: Manifest, path: str) -> None:
        node = resolve(node)
        if not isinstance(value, dict) or "properties" not in node:
            return
        for key, child in value.items():
            if key not in node["properties"]:
                missing.append(f"{path}.{key}".lstrip("."))
            else:
                walk(child, node["properties"][key], f"{path}.{key}")

    walk(values, schema, "")
    assert not missing, f"values without a schema entry: {missing}"
    jsonschema.Draft7Validator(schema).validate(values)


# ---------------------------------------------------------------------------- RBAC


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=lambda v: v or "defaults")
def test_rbac_has_no_wildcards_and_no_secret_access(helm: Path, value_set: str | None) -> None:
    manifests = render(helm, *_values_args(value_set))
    assert list(rules_of(manifests)), "no RBAC rules rendered"
    for role, rule in rules_of(manifests):
        where = f"{role['kind']}/{role['metadata']['name']}"
        for field in ("apiGroups", "resources", "verbs"):
            assert all("*" not in item for item in rule.get(field, [])), (
                f"wildcard in {where}: {rule}"
            )
        assert "nonResourceURLs" not in rule, where
        assert "resourceNames" not in rule or rule["resourceNames"], where
        assert "secrets" not in rule.get("resources", []), f"{where} grants access to Secrets"
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), where


# Exactly what the operator needs (templates/_rbac.tpl; checked against the audit log by
# tests/integration/test_rbac_matches_chart.py).
KYKLOS_KINDS = ("datasets", "trainingjobs", "modeldeployments", "driftmonitors")
WRITE = ("get", "list", "watch", "create", "patch", "delete")
EXPECTED_NAMESPACED = (
    {("kyklos.io", kind, verb) for kind in KYKLOS_KINDS for verb in ("get", "list", "watch")}
    | {("kyklos.io", kind, "patch") for kind in KYKLOS_KINDS}
    | {("kyklos.io", "trainingjobs", "create")}
    | {("kyklos.io", f"{kind}/status", "patch") for kind in KYKLOS_KINDS}
    | {("kyklos.io", f"{kind}/finalizers", "update") for kind in KYKLOS_KINDS}
    | {("batch", "jobs", verb) for verb in WRITE}
    | {("", "pods", verb) for verb in ("list", "watch")}
    | {("", "persistentvolumeclaims", verb) for verb in ("get", "create")}
    | {("", "services", verb) for verb in ("get", "list", "watch", "create", "patch")}
    | {("apps", "deployments", verb) for verb in WRITE}
    | {("autoscaling", "horizontalpodautoscalers", verb) for verb in WRITE}
    | {("", "events", "create")}
)
CRD_OBSERVER = {("apiextensions.k8s.io", "customresourcedefinitions", v) for v in ("list", "watch")}
NAMESPACE_OBSERVER = {("", "namespaces", v) for v in ("list", "watch")}


def _peering(resource: str) -> set[tuple[str, str, str]]:
    return {("kopf.dev", resource, v) for v in ("get", "list", "watch", "patch")}


def test_cluster_wide_standalone_grants_exactly_the_documented_rules(helm: Path) -> None:
    manifests = render(helm)
    assert not by_kind(manifests, "Role")
    assert granted(manifests) == EXPECTED_NAMESPACED | CRD_OBSERVER
    binding = one(manifests, "ClusterRoleBinding")
    (cluster_role,) = operator_roles(manifests, "ClusterRole")
    assert binding["roleRef"]["name"] == cluster_role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RELEASE, "namespace": NAMESPACE}
    ]


def test_ha_adds_cluster_peering_permissions(helm: Path) -> None:
    manifests = render(helm, "--set", "replicaCount=2")
    assert granted(manifests) == EXPECTED_NAMESPACED | CRD_OBSERVER | _peering(
        "clusterkopfpeerings"
    )


def test_watch_namespaces_use_roles_and_a_cluster_role_for_observers_only(helm: Path) -> None:
    manifests = render(helm, "--set", "watchNamespaces={team-a,team-b}", "--set", "replicaCount=2")
    (cluster_role,) = operator_roles(manifests, "ClusterRole")
    assert granted([cluster_role]) == CRD_OBSERVER | NAMESPACE_OBSERVER
    roles = by_kind(manifests, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert granted([role]) == EXPECTED_NAMESPACED | _peering("kopfpeerings")
    bindings = by_kind(manifests, "RoleBinding")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["team-a", "team-b"]
    for binding in bindings:
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": roles[0]["metadata"]["name"],
        }  # fmt: skip
        assert binding["subjects"][0]["namespace"] == NAMESPACE


def test_user_roles_aggregate_into_edit_and_view_without_status_writes(helm: Path) -> None:
    manifests = render(helm)
    users = {r["metadata"]["name"]: r for r in by_kind(manifests, "ClusterRole") if is_user_role(r)}
    assert set(users) == {f"{RELEASE}-edit", f"{RELEASE}-view"}
    edit, view = users[f"{RELEASE}-edit"], users[f"{RELEASE}-view"]
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-admin"] == "true"
    assert view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"] == "true"
    kinds = {"datasets", "trainingjobs", "modeldeployments", "driftmonitors"}
    edit_grants = {
        (r, v) for rule in edit["rules"] for r in rule["resources"] for v in rule["verbs"]
    }
    assert {(k, "create") for k in kinds} <= edit_grants
    assert not {g for g in edit_grants if g[0].endswith("/status")}
    view_grants = {
        (r, v) for rule in view["rules"] for r in rule["resources"] for v in rule["verbs"]
    }
    assert {v for _, v in view_grants} == {"get", "list", "watch"}
    assert {(k, "list") for k in kinds} <= view_grants
    off = render(helm, "--set", "rbac.userRoles=false")
    assert not [r for r in by_kind(off, "ClusterRole") if is_user_role(r)]


def test_rbac_create_false_renders_no_rbac(helm: Path) -> None:
    manifests = render(helm, "--set", "rbac.create=false")
    kinds = {m["kind"] for m in manifests}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=lambda v: v or "defaults")
def test_worker_service_account_has_no_token_and_no_binding(
    helm: Path, value_set: str | None
) -> None:
    manifests = render(helm, *_values_args(value_set))
    worker_name = env_of(manifests).get("KYKLOS_WORKER_SERVICE_ACCOUNT")
    workers = [
        sa for sa in by_kind(manifests, "ServiceAccount") if sa["metadata"]["name"] == worker_name
    ]
    # Without known worker namespaces the chart creates none and hands the operator no name.
    assert bool(workers) == bool(worker_name), f"worker ServiceAccount {worker_name} not rendered"
    for sa in workers:
        assert sa["automountServiceAccountToken"] is False
    for binding in by_kind(manifests, "ClusterRoleBinding") + by_kind(manifests, "RoleBinding"):
        assert all(s["name"] != worker_name for s in binding["subjects"])


# ---------------------------------------------------------------------------- pod security


@pytest.mark.parametrize("value_set", VALUE_SETS, ids=lambda v: v or "defaults")
def test_operator_pod_meets_the_restricted_pod_security_standard(
    helm: Path, value_set: str | None
) -> None:
    pod = one(render(helm, *_values_args(value_set)), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert (
        isinstance(pod["securityContext"]["runAsUser"], int)
        and pod["securityContext"]["runAsUser"] > 0
    )
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for container in pod["containers"] + pod.get("initContainers", []):
        ctx = container["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False
        assert ctx["capabilities"] == {"drop": ["ALL"]}
        assert ctx["readOnlyRootFilesystem"] is True
        assert ctx["runAsNonRoot"] is True
        assert isinstance(ctx["runAsUser"], int) and ctx["runAsUser"] > 0
        assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not ctx.get("privileged")
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert "/tmp" in mounts, "a read-only root filesystem needs a writable /tmp"
        volume = next(v for v in pod["volumes"] if v["name"] == mounts["/tmp"])
        assert "emptyDir" in volume
    allowed_volume_types = {
        "emptyDir",
        "configMap",
        "secret",
        "projected",
        "persistentVolumeClaim",
        "name",
    }
    for volume in pod["volumes"]:
        assert set(volume) <= allowed_volume_types, (
            f"volume type not allowed by 'restricted': {volume}"
        )


# ---------------------------------------------------------------------------- operator contract


def test_defaults_run_standalone_cluster_wide_with_per_namespace_claims(helm: Path) -> None:
    manifests = render(helm)
    container = operator_container(manifests)
    assert (
        container["image"]
        == "ghcr.io/kyklos/kyklos:"
        + yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    )
    assert container["args"] == [
        "run", "--all-namespaces", "--standalone",
        "--metrics-port", "8080", "--liveness", "http://0.0.0.0:8081/healthz",
    ]  # fmt: skip
    env = env_of(manifests)
    assert env["KYKLOS_WORKER_IMAGE"] == container["image"]
    assert env["KYKLOS_ARTIFACTS_URI"] == "pvc://kyklos-artifacts"
    assert "KYKLOS_ARTIFACTS_SECRET" not in env
    assert env["KYKLOS_ARTIFACTS_CLAIM_SIZE"] == "10Gi"
    assert "KYKLOS_ARTIFACTS_STORAGE_CLASS" not in env  # the cluster's default class
    # All namespaces and no list: workers use each namespace's default ServiceAccount.
    assert "KYKLOS_WORKER_SERVICE_ACCOUNT" not in env
    assert [sa["metadata"]["name"] for sa in by_kind(manifests, "ServiceAccount")] == [RELEASE]
    assert json.loads(env["KYKLOS_WORKER_RESOURCES"]) == {
        "requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"},
    }  # fmt: skip
    assert (env["KYKLOS_LOG_LEVEL"], env["KYKLOS_LOG_FORMAT"]) == ("info", "json")
    # The operator creates the claim in each namespace it meets; the chart renders none.
    assert not by_kind(manifests, "PersistentVolumeClaim")
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not by_kind(manifests, "PodDisruptionBudget")
    assert not by_kind(manifests, "ClusterKopfPeering") and not by_kind(manifests, "KopfPeering")


def test_probes_and_ports_match_the_operator_flags(helm: Path) -> None:
    container = operator_container(
        render(helm, "--set", "metrics.port=9090", "--set", "healthPort=9091")
    )
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9090, "health": 9091}
    assert container["args"][container["args"].index("--metrics-port") + 1] == "9090"
    assert (
        container["args"][container["args"].index("--liveness") + 1]
        == "http://0.0.0.0:9091/healthz"
    )
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


def test_single_namespace_value_set_watches_only_that_namespace(helm: Path) -> None:
    manifests = render(helm, "-f", str(CHART / "ci" / "single-namespace-values.yaml"))
    args = operator_container(manifests)["args"]
    assert args[1:4] == ["--namespace", "ml-team", "--standalone"]
    assert "--all-namespaces" not in args
    env = env_of(manifests)
    assert (env["KYKLOS_ARTIFACTS_CLAIM_SIZE"], env["KYKLOS_ARTIFACTS_STORAGE_CLASS"]) == (
        "20Gi",
        "standard",
    )
    assert env["KYKLOS_WORKER_SERVICE_ACCOUNT"] == "kyklos-worker"
    assert (env["KYKLOS_LOG_LEVEL"], env["KYKLOS_LOG_FORMAT"]) == ("debug", "text")
    workers = [
        sa
        for sa in by_kind(manifests, "ServiceAccount")
        if sa["metadata"]["name"] == "kyklos-worker"
    ]
    assert [sa["metadata"]["namespace"] for sa in workers] == ["ml-team"]


def test_ha_value_set_peers_replicas_with_a_budget_and_a_service_monitor(helm: Path) -> None:
    manifests = render(helm, "-f", str(CHART / "ci" / "ha-servicemonitor-values.yaml"))
    deployment = one(manifests, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    args = operator_container(manifests)["args"]
    assert args[args.index("--peering") + 1] == "kyklos" and "--standalone" not in args
    peering = one(manifests, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "kyklos"
    assert {c["metadata"]["name"] for c in by_kind(manifests, "CustomResourceDefinition")} >= {
        "clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev",
    }  # fmt: skip
    pdb = one(manifests, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 2
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert (
        pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
        and pod["tolerations"]
        and pod["affinity"]
    )

    monitor = one(manifests, "ServiceMonitor")
    service = one(manifests, "Service")
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert service["spec"]["selector"].items() <= pod_labels(deployment).items()
    workers = [
        sa["metadata"]["namespace"]
        for sa in by_kind(manifests, "ServiceAccount")
        if sa["metadata"]["name"] == "kyklos-worker"
    ]
    assert workers == ["team-a", "team-b"]


def pod_labels(deployment: Manifest) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


def test_object_store_value_set_uses_the_uri_and_secret_and_no_claim(helm: Path) -> None:
    manifests = render(helm, "-f", str(CHART / "ci" / "object-store-values.yaml"))
    env = env_of(manifests)
    assert env["KYKLOS_ARTIFACTS_URI"] == "s3://ml-artifacts/kyklos"
    assert env["KYKLOS_ARTIFACTS_SECRET"] == "kyklos-s3-credentials"
    assert "KYKLOS_ARTIFACTS_CLAIM_SIZE" not in env
    digest = "sha256:" + "0123456789abcdef" * 4
    image = f"registry.example.com/mirror/kyklos@{digest}"
    assert operator_container(manifests)["image"] == image
    assert env["KYKLOS_WORKER_IMAGE"] == image
    pod = one(manifests, "Deployment")["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    worker_sas = [
        sa
        for sa in by_kind(manifests, "ServiceAccount")
        if sa["metadata"]["name"] == env["KYKLOS_WORKER_SERVICE_ACCOUNT"]
    ]
    assert [sa["metadata"]["namespace"] for sa in worker_sas] == ["team-a", "team-b"]
    for sa in worker_sas:
        role = sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        assert role.endswith("role/kyklos-worker")
    assert json.loads(env["KYKLOS_WORKER_RESOURCES"])["limits"] == {"memory": "4Gi"}


def test_existing_claim_is_used_and_not_created(helm: Path) -> None:
    manifests = render(helm, "--set", "artifacts.existingClaim=shared-artifacts")
    assert env_of(manifests)["KYKLOS_ARTIFACTS_URI"] == "pvc://shared-artifacts"
    assert not by_kind(manifests, "PersistentVolumeClaim")


def test_a_user_managed_worker_service_account_is_named_but_not_created(helm: Path) -> None:
    manifests = render(
        helm,
        "--set",
        "worker.serviceAccount.create=false",
        "--set",
        "worker.serviceAccount.name=ml-worker",
    )
    assert env_of(manifests)["KYKLOS_WORKER_SERVICE_ACCOUNT"] == "ml-worker"
    assert all(sa["metadata"]["name"] != "ml-worker" for sa in by_kind(manifests, "ServiceAccount"))


def test_worker_image_can_differ_from_the_operator_image(helm: Path) -> None:
    manifests = render(
        helm,
        "--set",
        "worker.image.repository=example.org/kyklos-worker",
        "--set",
        "image.tag=1.2.3",
    )
    assert operator_container(manifests)["image"] == "ghcr.io/kyklos/kyklos:1.2.3"
    assert env_of(manifests)["KYKLOS_WORKER_IMAGE"] == "example.org/kyklos-worker:1.2.3"


def test_watch_namespaces_with_ha_create_a_peering_object_per_namespace(helm: Path) -> None:
    manifests = render(helm, "--set", "watchNamespaces={team-a,team-b}", "--set", "replicaCount=2")
    args = operator_container(manifests)["args"]
    assert args[:5] == ["run", "--namespace", "team-a", "--namespace", "team-b"]
    peerings = by_kind(manifests, "KopfPeering")
    assert sorted((p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings) == [
        ("team-a", "kyklos"), ("team-b", "kyklos"),
    ]  # fmt: skip
    assert not by_kind(manifests, "ClusterKopfPeering")


def test_all_objects_carry_the_recommended_labels(helm: Path) -> None:
    for manifest in render(
        helm, "--set", "replicaCount=2", "--set", "metrics.serviceMonitor.enabled=true"
    ):
        if manifest["kind"] == "CustomResourceDefinition":
            # kopf.dev: shared with other kopf operators (crds/, never owned by a release);
            # kyklos.io: generated identical to the repository's crds/ (guarded below).
            continue
        labels = manifest["metadata"].get("labels", {})
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/part-of",
        ):
            assert key in labels, f"{manifest['kind']}/{manifest['metadata']['name']} lacks {key}"


# ---------------------------------------------------------------------------- kyklos.io CRDs


def _generated_crd_templates() -> list[Path]:
    return sorted((CHART / "templates" / "crds").glob("*.kyklos.io.yaml"))


def test_kyklos_crds_follow_install_and_keep(helm: Path) -> None:
    """The generated templates/crds/ match crds/ and obey crds.install and crds.keep."""
    templates = _generated_crd_templates()
    assert {p.name for p in templates} == {p.name for p in (REPO / "crds").glob("*.kyklos.io.yaml")}
    assert len(templates) == len(KYKLOS_KINDS)
    rendered = [
        c
        for c in by_kind(render(helm), "CustomResourceDefinition")
        if c["spec"]["group"] == "kyklos.io"
    ]
    assert len(rendered) == len(templates)
    for crd in rendered:
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        repo_copy = yaml.safe_load((REPO / "crds" / f"{crd['metadata']['name']}.yaml").read_text())
        assert crd["spec"] == repo_copy["spec"], f"{crd['metadata']['name']} differs from crds/"
    not_kept = by_kind(render(helm, "--set", "crds.keep=false"), "CustomResourceDefinition")
    assert all(
        "helm.sh/resource-policy" not in (c["metadata"].get("annotations") or {})
        for c in not_kept
        if c["spec"]["group"] == "kyklos.io"
    )
    not_installed = by_kind(render(helm, "--set", "crds.install=false"), "CustomResourceDefinition")
    assert not [c for c in not_installed if c["spec"]["group"] == "kyklos.io"]


def test_chart_refuses_clusters_older_than_the_oldest_validated_version(helm: Path) -> None:
    older = f"{OLDEST_KUBERNETES.major}.{OLDEST_KUBERNETES.minor - 1}.0"
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--kube-version", older)
    assert proc.returncode != 0 and "requires kubeVersion" in proc.stderr, proc.stderr
    oldest = f"{OLDEST_KUBERNETES.major}.{OLDEST_KUBERNETES.minor}.0"
    assert run_helm(helm, "template", RELEASE, str(CHART), "--kube-version", oldest).returncode == 0


# ---------------------------------------------------------------------------- helm_tool


def test_helm_is_extracted_once_and_again_when_its_wheel_changes(tmp_path: Path) -> None:
    from helm_tool import helm_binary

    helm = helm_binary(tmp_path)
    version = subprocess.run(
        [str(helm), "version", "--short"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("v")
    first = helm.stat().st_mtime_ns
    assert helm_binary(tmp_path) == helm and helm.stat().st_mtime_ns == first  # reused
    (tmp_path / "helm.source").write_text("some-older-wheel==0\n")
    helm_binary(tmp_path)
    assert helm.stat().st_mtime_ns != first  # a different wheel: extracted again


def test_mlflow_tracking_uri_reaches_the_operator_only_when_set(helm: Path) -> None:
    assert "KYKLOS_MLFLOW_TRACKING_URI" not in env_of(render(helm))
    manifests = render(helm, "--set", "mlflow.trackingUri=http://mlflow.mlflow.svc:5000")
    assert env_of(manifests)["KYKLOS_MLFLOW_TRACKING_URI"] == "http://mlflow.mlflow.svc:5000"
    proc = run_helm(helm, "template", RELEASE, str(CHART), "--set", "mlflow.trackingUri=ftp://x")
    assert proc.returncode != 0 and "trackingUri" in proc.stderr


def test_worker_pod_template_reaches_the_operator_as_json_only_when_set(helm: Path) -> None:
    assert "KYKLOS_WORKER_POD_TEMPLATE" not in env_of(render(helm))
    manifests = render(helm, "--set", "worker.podTemplate.nodeSelector.pool=batch")
    assert json.loads(env_of(manifests)["KYKLOS_WORKER_POD_TEMPLATE"]) == {
        "nodeSelector": {"pool": "batch"}
    }
