"""The pod template merge: a user's restricted override onto the pod Kyklos builds.

One pure function, used by every builder that makes pods from a user's resource
(training Jobs, serving Deployments). Who wins, field by field:

- Kyklos: its env names, volume names, mount paths, selector labels and node-selector keys
  (the pod must still be Kyklos's pod: the right model, the right data, the right Service);
- the template: scalars Kyklos only defaults (serviceAccountName, priorityClassName,
  runtimeClassName, affinity) and securityContext keys (vendor server images need another
  user or a writable root filesystem), and resource requests/limits per resource name;
- both: tolerations, imagePullSecrets, envFrom, extra env, volumes and mounts are added.

Reserved names are rejected at admission (``kyklos.api.podtemplate``); the merge still
drops a clash rather than trusting that, so a pod is never built with two volumes of one name.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from kyklos.api.podtemplate import PodTemplate

#: Pod-spec scalars the template sets when given (Kyklos's value is only a default).
_POD_SCALARS = ("serviceAccountName", "priorityClassName", "runtimeClassName")


def _merged_list(
    ours: list[dict[str, Any]] | None, theirs: list[dict[str, Any]] | None, key: str | None
) -> list[dict[str, Any]] | None:
    """``ours`` then the entries of ``theirs`` not already there (same ``key``, or equal)."""
    out = list(ours or [])
    for item in theirs or []:
        if key is not None and any(o.get(key) == item.get(key) for o in out):
            continue
        if key is None and item in out:
            continue
        out.append(item)
    return out or None


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value


def _merge_container(container: dict[str, Any], overrides: Mapping[str, Any]) -> None:
    _set(container, "env", _merged_list(container.get("env"), overrides.get("env"), "name"))
    _set(
        container, "envFrom", _merged_list(container.get("envFrom"), overrides.get("envFrom"), None)
    )
    if "resources" in overrides:
        resources = dict(container.get("resources") or {})
        for part in ("requests", "limits"):
            if part in overrides["resources"]:
                resources[part] = {**(resources.get(part) or {}), **overrides["resources"][part]}
        container["resources"] = resources
    if "securityContext" in overrides:
        container["securityContext"] = {
            **(container.get("securityContext") or {}),
            **overrides["securityContext"],
        }
    if "volumeMounts" in overrides:
        ours = container.get("volumeMounts") or []
        names = {m["name"] for m in ours}
        paths = {m["mountPath"] for m in ours}
        extra = [
            m
            for m in overrides["volumeMounts"]
            if m["name"] not in names and m["mountPath"] not in paths
        ]
        _set(container, "volumeMounts", [*ours, *extra] or None)


def apply_pod_template(
    pod_template: Mapping[str, Any], template: PodTemplate | None, container_name: str
) -> dict[str, Any]:
    """``pod_template`` (``{metadata, spec}`` as Kyklos built it) with ``template`` merged in.

    ``container_name`` names the container the template's ``container`` overrides apply to
    (the trainer or the model server; sidecars and init containers stay as built).
    """
    out = copy.deepcopy(dict(pod_template))
    if template is None:
        return out
    over = template.model_dump(mode="json", by_alias=True, exclude_none=True)
    metadata = out.setdefault("metadata", {})
    for part in ("labels", "annotations"):
        theirs = (over.get("metadata") or {}).get(part)
        if theirs:
            metadata[part] = {**theirs, **(metadata.get(part) or {})}
    spec = out.setdefault("spec", {})
    for key in _POD_SCALARS:
        if key in over:
            spec[key] = over[key]
    if "serviceAccountName" in over and spec.get("automountServiceAccountToken") is False:
        # Kyklos withholds the token of a default account; a named account is asked for.
        del spec["automountServiceAccountToken"]
    if "affinity" in over and "affinity" not in spec:
        spec["affinity"] = over["affinity"]
    if "nodeSelector" in over:
        spec["nodeSelector"] = {**over["nodeSelector"], **(spec.get("nodeSelector") or {})}
    _set(spec, "tolerations", _merged_list(spec.get("tolerations"), over.get("tolerations"), None))
    _set(
        spec,
        "imagePullSecrets",
        _merged_list(spec.get("imagePullSecrets"), over.get("imagePullSecrets"), "name"),
    )
    if "securityContext" in over:
        spec["securityContext"] = {**(spec.get("securityContext") or {}), **over["securityContext"]}
    _set(spec, "volumes", _merged_list(spec.get("volumes"), over.get("volumes"), "name"))
    if "container" in over:
        for container in spec.get("containers") or []:
            if container.get("name") == container_name:
                _merge_container(container, over["container"])
    return out
