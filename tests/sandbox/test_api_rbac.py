"""RBAC is real: a ServiceAccount token gets exactly its ClusterRole, and the audit log shows it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from sandbox_api import wait_for

READ_CONFIGMAPS = [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}]


def test_service_account_gets_its_role_and_403_beyond_it(
    operator: Any, namespace: str, k8s: Any
) -> None:
    client.CoreV1Api(k8s).create_namespaced_config_map(namespace, {"metadata": {"name": "c"}})
    creds = operator.as_service_account(READ_CONFIGMAPS)
    with config.new_client_from_config(config_file=str(creds.kubeconfig)) as api:
        core = client.CoreV1Api(api)
        assert core.read_namespaced_config_map("c", namespace).metadata.name == "c"
        with pytest.raises(ApiException) as info:
            core.create_namespaced_config_map(namespace, {"metadata": {"name": "d"}})
        assert info.value.status == 403
        with pytest.raises(ApiException) as info:
            core.list_namespaced_secret(namespace)
        assert info.value.status == 403


def test_self_subject_access_review_reflects_the_role(operator: Any, namespace: str) -> None:
    creds = operator.as_service_account(READ_CONFIGMAPS)
    with config.new_client_from_config(config_file=str(creds.kubeconfig)) as api:
        authz = client.AuthorizationV1Api(api)

        def allowed(verb: str, resource: str) -> bool:
            review = authz.create_self_subject_access_review(
                {
                    "spec": {
                        "resourceAttributes": {
                            "namespace": namespace,
                            "verb": verb,
                            "resource": resource,
                        }
                    }
                }
            )
            return bool(review.status.allowed)

        assert allowed("list", "configmaps")
        assert not allowed("delete", "configmaps")
        assert not allowed("get", "secrets")


def test_audit_log_records_the_service_account_operations(
    operator: Any, audit: Any, namespace: str, k8s: Any
) -> None:
    client.CoreV1Api(k8s).create_namespaced_config_map(namespace, {"metadata": {"name": "c"}})
    creds = operator.as_service_account(READ_CONFIGMAPS)
    with config.new_client_from_config(config_file=str(creds.kubeconfig)) as api:
        core = client.CoreV1Api(api)
        core.read_namespaced_config_map("c", namespace)
        core.list_namespaced_config_map(namespace)
        with pytest.raises(ApiException):
            core.patch_namespaced_config_map("c", namespace, {"data": {"a": "b"}})
    assert Path(audit.path).exists()
    expected = {("get", "", "configmaps", ""), ("list", "", "configmaps", "")}
    # The audit event is written as the response completes; give the writer a moment.
    wait_for(lambda: audit.operations(creds.username) == expected, timeout=10, what="audit")
    assert audit.operations(creds.username) == expected
    assert audit.forbidden(creds.username) == {("patch", "", "configmaps", "")}
