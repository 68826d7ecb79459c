"""Kubernetes-style conditions and status diffs, as plain data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to post about an object (one per transition; reasons as conditions)."""

    reason: str
    message: str
    warning: bool = False


def rfc3339(moment: datetime) -> str:
    """Format a timezone-aware datetime as Kubernetes writes timestamps (second precision, Z)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: Sequence[Mapping[str, Any]] | None,
    *,
    type: str,
    status: str,
    reason: str,
    message: str,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Return a new conditions list with ``type`` set.

    ``lastTransitionTime`` is kept unless the condition's status changes, as the Kubernetes
    API conventions ask; the order of existing conditions is kept.
    """
    result: list[dict[str, Any]] = []
    found = False
    for existing in conditions or ():
        if existing.get("type") != type:
            result.append(dict(existing))
            continue
        found = True
        changed = existing.get("status") != status
        result.append(
            {
                "type": type,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": rfc3339(now)
                if changed or not existing.get("lastTransitionTime")
                else existing["lastTransitionTime"],
                "observedGeneration": generation,
            }
        )
    if not found:
        result.append(
            {
                "type": type,
                "status": status,
                "reason": reason,
                "message": message,
                "lastTransitionTime": rfc3339(now),
                "observedGeneration": generation,
            }
        )
    return [_drop_none(c) for c in result]


def get_condition(
    conditions: Sequence[Mapping[str, Any]] | None, type: str
) -> Mapping[str, Any] | None:
    """Return the condition of ``type``, or None."""
    for condition in conditions or ():
        if condition.get("type") == type:
            return condition
    return None


def condition_is(conditions: Sequence[Mapping[str, Any]] | None, type: str, status: str) -> bool:
    """Whether condition ``type`` exists with ``status``."""
    condition = get_condition(conditions, type)
    return condition is not None and condition.get("status") == status


def status_patch(stored: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """Return the JSON merge patch that turns ``stored`` status into ``desired``.

    Keys missing from ``desired`` are left alone (another writer may own them); a key whose
    desired value is None is removed. An empty dict means nothing to write. Lists (such as
    ``conditions``) are written whole because a merge patch replaces lists.
    """
    stored = stored or {}
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        current = stored.get(key)
        if value is None:
            if key in stored:
                patch[key] = None
        elif isinstance(value, Mapping) and isinstance(current, Mapping):
            nested = status_patch(current, value)
            if nested:
                patch[key] = nested
        elif current != value:
            patch[key] = value
    return patch


def apply_merge_patch(target: Mapping[str, Any] | None, patch: Mapping[str, Any]) -> dict[str, Any]:
    """``target`` after a JSON merge patch (RFC 7386): what the server stores after the write."""
    result = dict(target or {})
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = apply_merge_patch(result[key], value)
        else:
            result[key] = value
    return result


def status_after(stored: Mapping[str, Any] | None, desired: Mapping[str, Any]) -> dict[str, Any]:
    """The status the server holds after ``write_status(stored -> desired)``."""
    return apply_merge_patch(stored, status_patch(stored, desired))


def spec_error(exc: ValidationError, root: str = "spec") -> str:
    """The one way Kyklos names a spec problem: ``spec.<field>: <why>`` (+ how many more)."""
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return (
        f"{root}.{where}: {first.get('msg', 'invalid')}{more}"
        if where
        else f"{root}: {first.get('msg', 'invalid')}{more}"
    )


def invalid_spec_status(
    stored: Mapping[str, Any] | None,
    *,
    message: str,
    generation: int | None,
    now: datetime,
    phase: str | None = None,
) -> dict[str, Any]:
    """The status of an object whose spec the logic cannot use: Ready=False InvalidSpec."""
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": set_condition(
            (stored or {}).get("conditions"),
            type="Ready",
            status="False",
            reason="InvalidSpec",
            message=message,
            generation=generation,
            now=now,
        ),
    }
    if phase is not None:
        status["phase"] = phase
    return status


@dataclass(frozen=True)
class SpecRejection:
    """A spec the logic cannot use: the status (Ready=False InvalidSpec) and its Event."""

    status: dict[str, Any]
    event: Event


SpecT = TypeVar("SpecT", bound=BaseModel)


def validate_spec(
    model: type[SpecT], body: Mapping[str, Any], now: datetime, *, phase: str | None = None
) -> tuple[SpecT, None] | tuple[None, SpecRejection]:
    """``body``'s spec as ``model``, or (None, the InvalidSpec status and Event naming the field)."""
    try:
        return model.model_validate(body.get("spec") or {}), None
    except ValidationError as exc:
        message = spec_error(exc)
    status = invalid_spec_status(
        body.get("status") or {},
        message=message,
        generation=(body.get("metadata") or {}).get("generation"),
        now=now,
        phase=phase,
    )
    return None, SpecRejection(status, Event("InvalidSpec", message, warning=True))


#: Phases that announce trouble: their transition Events are Warnings.
TROUBLE_PHASES = frozenset({"Error", "Failed", "Degraded", "RolledBack"})


def phase_event(
    stored: Mapping[str, Any] | None, desired: Mapping[str, Any], events: Sequence[Event]
) -> Event | None:
    """The Event announcing a phase change that none of ``events`` announces already.

    Its reason is the ``Ready`` condition's (Events use the conditions' reason strings) and
    its message says which phase changed to which and why. None when the phase is unchanged
    or another Event of the same decision tells the story.
    """
    old, new = (stored or {}).get("phase"), desired.get("phase")
    if not new or old == new or events:
        return None
    ready = get_condition(desired.get("conditions"), "Ready") or {}
    reason = str(ready.get("reason") or new)
    detail = f": {ready['message']}" if ready.get("message") else ""
    return Event(reason, f"{old or 'new'} -> {new}{detail}"[:1024], warning=new in TROUBLE_PHASES)


def _drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}
