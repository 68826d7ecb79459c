"""Duration strings: parsing, errors naming the field, formatting."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kyklos.api.common import DURATION_PATTERN
from kyklos.logic.durations import duration_seconds, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("5m", 300), ("1h", 3600), ("1h30m", 5400), ("2d", 172800), ("250ms", 0.25)],
)
def test_parse(text: str, seconds: float) -> None:
    assert duration_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5", "m", "1.5h", "-1s", "5 m", "1x", "h1"])
def test_malformed_names_the_field(bad: str) -> None:
    with pytest.raises(ValueError, match=r"^retrain\.cooldown: "):
        parse_duration(bad, "retrain.cooldown")


@given(st.integers(min_value=1, max_value=10**7))
def test_format_round_trips_and_matches_the_api_pattern(seconds: int) -> None:
    text = format_duration(seconds)
    assert re.match(DURATION_PATTERN, text)
    assert duration_seconds(text) == seconds
