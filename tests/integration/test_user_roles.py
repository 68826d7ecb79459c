"""A namespace's `edit` and `view` users work with Kyklos resources through the chart's roles.

The story: the platform team installs the chart, which ships `<release>-edit` and
`<release>-view` aggregated into Kubernetes' built-in `edit`/`admin` and `view` ClusterRoles.
Alice is bound to `edit` in her team's namespace, Bob to `view`; nobody writes RBAC by hand.
Alice creates, changes and deletes all four kinds but cannot write their status (the
operator's); Bob reads them and their status and creates nothing. Both go through the real
API server's RBAC with ServiceAccount tokens.
"""

from __future__ import annotations

import contextlib
import copy
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

# pyproject's pytest pythonpath puts tests/ (conftest, helm_tool), tests/integration and
# tests/unit/api (parity_cases) on the path.
from kyklos_testing import wait_for
from parity_cases import DATASET, DEPLOYMENT, DRIFT, TRAINING

from conftest import token_kubeconfig
from helm_tool import resolve_helm

REPO = Path(__file__).resolve().parents[2]

GROUP, VERSION = "kyklos.io", "v1alpha1"
DOCUMENTS = {
    "datasets": DATASET,
    "trainingjobs": TRAINING,
    "modeldeployments": DEPLOYMENT,
    "driftmonitors": DRIFT,
}


def _user_roles(release: str) -> list[dict[str, Any]]:
    """The chart's user ClusterRoles, rendered for ``release`` with the default values."""
    proc = subprocess.run(
        [str(resolve_helm()), "template", release, str(REPO / "charts" / "kyklos"),
         "--show-only", "templates/clusterrole-users.yaml"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


@pytest.fixture
def user_roles(k8s: Any) -> Iterator[list[str]]:
    """Install the chart's user roles under a release name of this test; remove them after."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    rbac = client.RbacAuthorizationV1Api(k8s)
    roles = _user_roles(f"ur-{secrets.token_hex(3)}")
    names = [r["metadata"]["name"] for r in roles]
    try:
        for role in roles:
            rbac.create_cluster_role(role)
        yield names
    finally:
        for name in names:
            with contextlib.suppress(ApiException):
                rbac.delete_cluster_role(name)


def _user(k8s: Any, namespace: str, name: str, cluster_role: str, workdir: Path) -> Any:
    """A ServiceAccount bound to ``cluster_role`` in ``namespace`` only; its API client."""
    from kubernetes import client, config

    core = client.CoreV1Api(k8s)
    core.create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    client.RbacAuthorizationV1Api(k8s).create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": f"{name}-{cluster_role}"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": cluster_role,
            },
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
        },
    )  # fmt: skip
    token = core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    path = workdir / f"{name}.kubeconfig"
    path.write_text(yaml.safe_dump(token_kubeconfig(k8s, token)))
    return config.new_client_from_config(config_file=str(path))


def _status(call: Any) -> int:
    """The HTTP status of an API call: 200-ish on success, the error's status otherwise."""
    from kubernetes.client.rest import ApiException

    try:
        call()
    except ApiException as exc:
        return int(exc.status)
    return 200


def _aggregated(k8s: Any, built_in: str) -> bool:
    """Whether the aggregation controller has folded Kyklos rules into ``built_in``."""
    from kubernetes import client

    rules = client.RbacAuthorizationV1Api(k8s).read_cluster_role(built_in).rules or []
    return any(
        "kyklos.io" in (r.api_groups or []) and "trainingjobs" in (r.resources or []) for r in rules
    )


def test_edit_user_creates_all_four_kinds_and_cannot_touch_status(
    k8s: Any, crds_installed: None, namespace: str, user_roles: list[str], tmp_path: Path
) -> None:
    from kubernetes import client

    edit_role, view_role = user_roles
    for built_in, role in (("edit", edit_role), ("admin", edit_role), ("view", view_role)):
        wait_for(
            lambda b=built_in: _aggregated(k8s, b),
            timeout=60,
            what=f"the {role} rules aggregated into the built-in {built_in} ClusterRole",
        )
    alice = client.CustomObjectsApi(_user(k8s, namespace, "alice", "edit", tmp_path))
    bob = client.CustomObjectsApi(_user(k8s, namespace, "bob", "view", tmp_path))
    admin = client.CustomObjectsApi(k8s)

    for plural, document in DOCUMENTS.items():
        body = copy.deepcopy(document)
        body["metadata"] = {"name": f"alice-{plural[:-1]}"}
        name = body["metadata"]["name"]
        # Aggregated rules reach the authorizer a moment after the built-in role changes.
        wait_for(
            lambda p=plural, b=body: (
                _status(
                    lambda: alice.create_namespaced_custom_object(GROUP, VERSION, namespace, p, b)
                )
                != 403
            ),
            timeout=30,
            what=f"alice (edit) may create {plural}",
        )
        got = alice.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        assert (
            got["spec"]
            == admin.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)["spec"]
        )
        assert (
            _status(
                lambda p=plural, n=name: alice.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, p, n, {"metadata": {"labels": {"team": "a"}}}
                )
            )
            == 200
        ), f"alice (edit) may patch {plural}"
        assert (
            _status(
                lambda p=plural, n=name: alice.patch_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, p, n, {"status": {"phase": "Failed"}}
                )
            )
            == 403
        ), f"alice (edit) must not write {plural}/status"

        # Bob reads the resource and its status, and changes nothing.
        assert bob.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]
        assert (
            _status(
                lambda p=plural, n=name: bob.get_namespaced_custom_object_status(
                    GROUP, VERSION, namespace, p, n
                )
            )
            == 200
        ), f"bob (view) may read {plural}/status"
        other = copy.deepcopy(body)
        other["metadata"] = {"name": f"bob-{plural[:-1]}"}
        assert (
            _status(
                lambda p=plural, b=other: bob.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, p, b
                )
            )
            == 403
        ), f"bob (view) must not create {plural}"
        assert (
            _status(
                lambda p=plural, n=name: bob.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, p, n, {"metadata": {"labels": {"team": "b"}}}
                )
            )
            == 403
        ), f"bob (view) must not patch {plural}"

        assert (
            _status(
                lambda p=plural, n=name: alice.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, p, n
                )
            )
            == 200
        ), f"alice (edit) may delete {plural}"

    # Outside her namespace Alice is nobody.
    assert (
        _status(lambda: alice.list_namespaced_custom_object(GROUP, VERSION, "default", "datasets"))
        == 403
    )
