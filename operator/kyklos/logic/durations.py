"""Parse the Go-style duration strings the API accepts (``30s``, ``5m``, ``1h30m``, ``2d``)."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"([0-9]+)(ms|s|m|h|d)")
_WHOLE = re.compile(r"^([0-9]+(ms|s|m|h|d))+$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str, field: str = "duration") -> timedelta:
    """Return the duration ``text`` denotes; ValueError naming ``field`` when malformed."""
    if not isinstance(text, str) or not _WHOLE.match(text):
        raise ValueError(f"{field}: {text!r} is not a duration like 30s, 5m, 1h30m or 2d")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


def duration_seconds(text: str, field: str = "duration") -> float:
    """Return the duration ``text`` denotes, in seconds."""
    return parse_duration(text, field).total_seconds()


def format_duration(seconds: float) -> str:
    """Render seconds as the shortest duration string (``90`` -> ``1m30s``)."""
    whole = round(seconds)
    if whole <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)
