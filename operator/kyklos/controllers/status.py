"""Status writes and Events for the controllers: write only what changed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from kyklos.controllers import client
from kyklos.logic.conditions import status_patch


def write_status(res: client.Resource, body: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Patch ``/status`` with what differs from the stored status; False when nothing did."""
    change = status_patch(body.get("status"), desired)
    if not change:
        return False
    meta = body["metadata"]
    client.patch(res, meta.get("namespace"), meta["name"], {"status": change}, status=True)
    return True


def emit(body: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
    """Post a Kubernetes Event about ``body`` (Normal, or Warning)."""
    kopf.event(
        body,  # type: ignore[arg-type]
        type="Warning" if warning else "Normal",
        reason=reason,
        message=message[:1024],
    )
