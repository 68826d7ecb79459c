"""Names, labels and owner references of the children Kyklos creates (deterministic)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"

MAX_NAME = 63


def owner_label(kind: str) -> str:
    """The label naming a child's owner of ``kind``: ``kyklos.io/<kind-lowercase>``."""
    return f"kyklos.io/{kind.lower()}"


def child_labels(kind: str, owner_name: str, component: str | None = None) -> dict[str, str]:
    """Labels every child carries (docs/architecture.md §1), plus an optional component."""
    labels = {
        MANAGED_BY: "kyklos",
        PART_OF: "kyklos",
        owner_label(kind): label_value(owner_name),
    }
    if component:
        labels[COMPONENT] = component
    return labels


def label_value(value: str) -> str:
    """A valid label value for ``value`` (names over 63 characters are shortened with a hash)."""
    return value if len(value) <= MAX_NAME else child_name(value, "", limit=MAX_NAME)


def child_name(owner_name: str, suffix: str, limit: int = MAX_NAME) -> str:
    """``<owner>-<suffix>``, shortened deterministically with a hash to fit ``limit``."""
    name = f"{owner_name}-{suffix}" if suffix else owner_name
    if len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = limit - len(digest) - 1 - (len(suffix) + 1 if suffix else 0)
    head = owner_name[: max(keep, 1)].rstrip("-.")
    return f"{head}-{digest}-{suffix}" if suffix else f"{head}-{digest}"


def owner_reference(owner: Mapping[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to the custom resource ``owner`` (a body with apiVersion/kind/metadata)."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }
