"""Child names are deterministic and valid; labels and owner references as docs/architecture.md §1 says."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from kyklos.logic.naming import child_labels, child_name, owner_reference

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_short_names_are_plain() -> None:
    assert child_name("churn", "stable") == "churn-stable"


@given(st.from_regex(r"[a-z][a-z0-9-]{0,240}[a-z0-9]", fullmatch=True))
def test_long_names_fit_63_deterministically_and_keep_the_suffix(owner: str) -> None:
    name = child_name(owner, "canary")
    assert len(name) <= 63
    assert name.endswith("-canary")
    assert DNS_LABEL.match(name)
    assert child_name(owner, "canary") == name


def test_labels_on_every_child() -> None:
    assert child_labels("TrainingJob", "fit", "trainer") == {
        "app.kubernetes.io/managed-by": "kyklos",
        "app.kubernetes.io/part-of": "kyklos",
        "kyklos.io/trainingjob": "fit",
        "app.kubernetes.io/component": "trainer",
    }


def test_owner_reference_is_controller_and_blocks_deletion() -> None:
    body = {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "d", "uid": "u1"},
    }
    assert owner_reference(body) == {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "Dataset",
        "name": "d",
        "uid": "u1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
