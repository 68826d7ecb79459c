"""Status writes and Events for the controllers: write only what changed."""

from __future__ import annotations

import logging
import socket
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from kyklos.controllers import client
from kyklos.logic.conditions import rfc3339, status_patch

log = logging.getLogger("kyklos.status")

EVENTS = client.Resource("", "v1", "events", "Event")


def write_status(
    res: client.Resource,
    body: Mapping[str, Any],
    desired: Mapping[str, Any],
    *,
    precondition: bool = False,
) -> bool:
    """Patch ``/status`` with what differs from the stored status; False when nothing was written.

    Nothing is written when nothing differs or the object no longer exists. With ``precondition`` the patch carries ``body``'s resourceVersion, so a stale ``body``
    gets ApiException 409 instead of overwriting (and re-announcing) a newer status.
    """
    change = status_patch(body.get("status"), desired)
    if not change:
        return False
    meta = body["metadata"]
    patch: dict[str, Any] = {"status": change}
    if precondition:
        patch["metadata"] = {"resourceVersion": meta["resourceVersion"]}
    # None: the object is gone, so nothing was written (and no Event should follow).
    return client.patch(res, meta.get("namespace"), meta["name"], patch, status=True) is not None


def emit(body: Mapping[str, Any], reason: str, message: str, *, warning: bool = False) -> None:
    """Post a Kubernetes Event about ``body`` (Normal, or Warning); a failure is logged, not raised.

    Posted directly: ``kopf.event`` is a no-op while kopf's log-to-Event posting is disabled
    (``settings.posting.enabled = False`` in ``kyklos.controllers.operator``).
    """
    meta = body["metadata"]
    namespace = meta.get("namespace") or "default"
    now = rfc3339(datetime.now(UTC))
    event = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "type": "Warning" if warning else "Normal",
        "reason": reason,
        "message": message[:1024],
        "source": {"component": "kyklos"},
        "reportingComponent": "kyklos",
        "reportingInstance": socket.gethostname()[:128],
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
    try:
        client.create(EVENTS, namespace, event)
    except (ApiException, HTTPError) as exc:
        log.warning("cannot post Event %s about %s/%s: %s", reason, namespace, meta["name"], exc)
