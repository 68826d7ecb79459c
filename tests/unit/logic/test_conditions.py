"""Conditions keep lastTransitionTime unless status flips; status patches write only diffs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kyklos.logic.conditions import condition_is, set_condition, status_patch

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_new_condition_gets_transition_time_and_generation() -> None:
    conds = set_condition(
        None, type="Ready", status="False", reason="Waiting", message="m", generation=3, now=T0
    )
    assert conds == [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Waiting",
            "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": 3,
        }
    ]


def test_same_status_keeps_transition_time_but_updates_reason() -> None:
    first = set_condition(
        None, type="Ready", status="False", reason="A", message="a", generation=1, now=T0
    )
    later = set_condition(
        first,
        type="Ready",
        status="False",
        reason="B",
        message="b",
        generation=2,
        now=T0 + timedelta(hours=1),
    )
    assert later[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert later[0]["reason"] == "B" and later[0]["observedGeneration"] == 2


def test_flipped_status_moves_transition_time() -> None:
    first = set_condition(
        None, type="Ready", status="False", reason="A", message="", generation=1, now=T0
    )
    flipped = set_condition(
        first,
        type="Ready",
        status="True",
        reason="Ok",
        message="",
        generation=1,
        now=T0 + timedelta(minutes=5),
    )
    assert flipped[0]["lastTransitionTime"] == "2026-01-01T00:05:00Z"
    assert condition_is(flipped, "Ready", "True")


def test_other_conditions_keep_their_order() -> None:
    conds = set_condition(
        None, type="Ready", status="True", reason="r", message="", generation=1, now=T0
    )
    conds = set_condition(
        conds, type="Drifted", status="False", reason="r", message="", generation=1, now=T0
    )
    conds = set_condition(
        conds, type="Ready", status="False", reason="x", message="", generation=1, now=T0
    )
    assert [c["type"] for c in conds] == ["Ready", "Drifted"]


def test_status_patch_empty_when_nothing_changed() -> None:
    stored = {"phase": "Ready", "rows": 3, "conditions": [{"type": "Ready"}], "extra": 1}
    assert (
        status_patch(stored, {"phase": "Ready", "rows": 3, "conditions": [{"type": "Ready"}]}) == {}
    )


def test_status_patch_nested_and_removals() -> None:
    stored = {"phase": "Ready", "nested": {"a": 1, "b": 2}, "gone": "x"}
    patch = status_patch(
        stored, {"phase": "Failed", "nested": {"a": 1, "b": 3}, "gone": None, "new": []}
    )
    assert patch == {"phase": "Failed", "nested": {"b": 3}, "gone": None, "new": []}


def test_phase_event_announces_an_unannounced_phase_change_with_the_ready_reason() -> None:
    from kyklos.logic.conditions import Event, phase_event

    desired = {
        "phase": "Failed",
        "conditions": [{"type": "Ready", "status": "False", "reason": "Boom", "message": "why"}],
    }
    event = phase_event({"phase": "Running"}, desired, [])
    assert event == Event("Boom", "Running -> Failed: why", warning=True)
    assert phase_event({"phase": "Failed"}, desired, []) is None
    assert phase_event({"phase": "Running"}, desired, [Event("Other", "x")]) is None
    assert phase_event(None, {"phase": "Pending"}, []) == Event("Pending", "new -> Pending")


def test_one_spec_error_format_names_the_field_and_counts_the_rest() -> None:
    import pytest
    from pydantic import BaseModel, ValidationError

    from kyklos.logic.conditions import spec_error

    class Spec(BaseModel):
        a: int
        b: int

    with pytest.raises(ValidationError) as one:
        Spec.model_validate({"a": "x", "b": 1})
    assert (
        spec_error(one.value)
        == "spec.a: Input should be a valid integer, unable to parse string as an integer"
    )
    with pytest.raises(ValidationError) as two:
        Spec.model_validate({})
    assert spec_error(two.value) == "spec.a: Field required (and 1 more)"
