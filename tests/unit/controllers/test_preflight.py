"""The operator's preflight: missing CRDs and unreachable APIs are one clear line."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kyklos.controllers import client, operator


def test_missing_crds_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_call(method: str, path: str, **_: Any) -> Any:
        raise ApiException(status=404, reason="Not Found")

    monkeypatch.setattr(client, "_call", fake_call)
    with pytest.raises(
        operator.PreflightError, match=r"CRDs are not installed.*kubectl apply -f crds/"
    ):
        operator.preflight(())


def test_denied_reviews_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_call(method: str, path: str, body: Any = None, **_: Any) -> Any:
        if method == "GET":
            return {"kind": "APIResourceList"}
        attrs = body["spec"]["resourceAttributes"]
        return {"status": {"allowed": attrs["verb"] != "patch"}}

    monkeypatch.setattr(client, "_call", fake_call)
    with pytest.raises(operator.PreflightError) as err:
        operator.preflight(("team-a",))
    message = str(err.value)
    assert message.startswith("missing permissions: ")
    assert "patch datasets/status.kyklos.io in namespace team-a" in message
    assert "list" not in message
