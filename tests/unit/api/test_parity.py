"""One truth for validity: the pydantic models and the rendered CRDs (OpenAPI schema + CEL)
accept and reject the same manifests, and both name the field at fault.

The API server side is emulated in crd_emulation.py (strict field validation, null pruning,
structural defaulting, jsonschema, list-type uniqueness, CEL via cel-python).
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from crd_emulation import (
    Problem,
    evaluate_rule,
    kube_defaulted,
    kube_problems,
    names_path,
    pydantic_problems,
)
from parity_cases import BAD, DELETE, GOOD, TRAINING, Case, path_of, set_path
from pydantic import BaseModel

from kyklos.api import KINDS, TrainingJob
from kyklos.api.common import API_VERSION, drop_none, validate_wire
from kyklos.api.crd import render_crd
from kyklos.api.training import validate_update

MODELS: dict[str, type[BaseModel]] = {k.KIND: k for k in KINDS}  # type: ignore[attr-defined]
CRDS = {name: render_crd(model) for name, model in MODELS.items()}


def _render(problems: list[Problem]) -> str:
    return "; ".join(f"{p.dotted()}: {p.message}" for p in problems) or "accepted"


def test_enough_cases() -> None:
    """The issue asks for at least 30 bad and 10 good manifests."""
    assert len(BAD) >= 30 and len(GOOD) >= 10
    assert len({c.id for c in BAD + GOOD}) == len(BAD) + len(GOOD)


@pytest.mark.parametrize("case", GOOD, ids=lambda c: c.id)
def test_good_manifest_accepted_by_both(case: Case) -> None:
    """A valid manifest passes the pydantic model and the CRD, and both default it alike."""
    doc = case.manifest()
    kube = kube_problems(CRDS[case.kind], doc)
    pyd = pydantic_problems(MODELS[case.kind], doc)
    assert not kube, _render(kube)
    assert not pyd, _render(pyd)
    # The API server stores the defaulted object; pydantic fills in the same defaults.
    stored = kube_defaulted(CRDS[case.kind], doc)
    body = {k: v for k, v in doc.items() if k in ("spec", "status")}
    model = validate_wire(MODELS[case.kind], body)
    dumped = drop_none(model.model_dump(mode="json", by_alias=True))
    assert dumped["spec"] == stored["spec"]
    # Round trip: what the operator writes from a model (e.g. a retraining TrainingJob built
    # from a DriftMonitor's template) is accepted by the CRD and parses back to the same model.
    written = {"apiVersion": doc["apiVersion"], "kind": doc["kind"], "metadata": {}, **dumped}
    assert kube_problems(CRDS[case.kind], written) == []
    assert validate_wire(MODELS[case.kind], dumped) == model


@pytest.mark.parametrize("case", BAD, ids=lambda c: c.id)
def test_bad_manifest_rejected_by_both_naming_the_field(case: Case) -> None:
    """An invalid manifest fails both sides, and each names the field at fault."""
    doc = case.manifest()
    kube = kube_problems(CRDS[case.kind], doc)
    pyd = pydantic_problems(MODELS[case.kind], doc)
    expected = path_of(case.at)
    assert kube, f"the CRD accepts {case.id}"
    assert pyd, f"the pydantic model accepts {case.id}"
    assert names_path(kube, expected), f"CRD errors do not name {case.at}: {_render(kube)}"
    assert names_path(pyd, expected), f"pydantic errors do not name {case.at}: {_render(pyd)}"


def _crd_rules(node: Any) -> list[str]:
    rules: list[str] = []
    if isinstance(node, dict):
        rules += [r["rule"] for r in node.get("x-kubernetes-validations", [])]
        for value in node.values():
            rules += _crd_rules(value)
    elif isinstance(node, list):
        for value in node:
            rules += _crd_rules(value)
    return rules


def test_bad_cases_cover_every_cel_rule_and_schema_keyword() -> None:
    """Every create-time CEL rule and every kind of schema constraint is exercised."""
    triggered: set[str] = set()
    for case in BAD:
        for problem in kube_problems(CRDS[case.kind], case.manifest()):
            triggered.add(problem.rule)
    all_rules = {r for crd in CRDS.values() for r in _crd_rules(crd) if "oldSelf" not in r}
    assert all_rules - triggered == set()
    keywords = {"required", "unknown", "type", "enum", "pattern", "minimum", "maximum"}
    keywords |= {"minLength", "maxLength", "minItems", "maxItems", "maxProperties", "anyOf"}
    keywords |= {"map", "set"}  # x-kubernetes-list-type uniqueness
    assert keywords - triggered == set()


# --- the one transition rule: TrainingJob spec immutable once started ----------------------


def _started(doc: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    doc["status"] = {"phase": "Running", "startTime": "2026-11-23T10:00:00Z"}
    return doc


TRANSITIONS = [
    ("not-started-spec-change", TRAINING, {"spec.workers": 4}, True),
    ("started-spec-change", _started(TRAINING), {"spec.workers": 4}, False),
    ("started-label-change", _started(TRAINING), {"metadata.labels": {"a": "b"}}, True),
    # A running job may be suspended and resumed; nothing else changes.
    ("started-suspend-change", _started(TRAINING), {"spec.suspend": True}, True),
    (
        "started-suspend-and-image-change",
        _started(TRAINING),
        {"spec.suspend": True, "spec.image": "trainer:2"},
        False,
    ),
    (
        "started-template-added",
        _started(TRAINING),
        {"spec.template": {"hostNetwork": False}},
        False,
    ),
    ("started-optional-removed", _started(TRAINING), {"spec.queueName": DELETE}, False),
    (
        "pending-status-spec-change",
        {**TRAINING, "status": {"phase": "Pending"}},
        {"spec.workers": 3},
        True,
    ),
]


@pytest.mark.parametrize(
    ("old", "changes", "allowed"),
    [(t[1], t[2], t[3]) for t in TRANSITIONS],
    ids=[t[0] for t in TRANSITIONS],
)
def test_training_spec_immutable_once_started(
    old: dict[str, Any], changes: dict[str, Any], allowed: bool
) -> None:
    """The CRD's transition rule and kyklos.api.training.validate_update agree."""
    new = copy.deepcopy(old)
    for dotted, value in changes.items():
        set_path(new, dotted, value)
    kube = kube_problems(CRDS["TrainingJob"], new, old=old)
    body = {k: v for k, v in new.items() if k in ("spec", "status")}
    old_body = {k: v for k, v in old.items() if k in ("spec", "status")}
    try:
        validate_update(validate_wire(TrainingJob, old_body), validate_wire(TrainingJob, body))
        pydantic_allowed = True
    except ValueError as exc:
        pydantic_allowed = False
        assert str(exc).startswith("spec: spec is immutable once the training has started")
    assert (not kube) == allowed == pydantic_allowed, _render(kube)
    if not allowed:
        assert kube[0].path == ("spec",)
        assert "create a new TrainingJob" in kube[0].message


def test_is_sorted_has_kubernetes_semantics() -> None:
    """The harness's isSorted() is non-strict ascending, like the Kubernetes list library."""
    assert evaluate_rule("self.isSorted()", [1, 2, 2, 3])
    assert not evaluate_rule("self.isSorted()", [2, 1])
    assert evaluate_rule("self.isSorted()", [])
    assert evaluate_rule("self.isSorted()", ["a", "b"])


def test_retrain_template_becomes_a_valid_training_job() -> None:
    """A DriftMonitor's retrain.template, dumped as the operator will, is a valid TrainingJob."""
    monitors = [c.manifest() for c in GOOD if c.kind == "DriftMonitor"]
    templates = [m["spec"]["retrain"]["template"] for m in monitors if "retrain" in m["spec"]]
    assert templates
    for template in templates:
        spec = validate_wire(MODELS["TrainingJob"], {"spec": template}).model_dump(
            mode="json", by_alias=True, exclude_none=True
        )["spec"]
        job = {"apiVersion": API_VERSION, "kind": "TrainingJob", "metadata": {}, "spec": spec}
        assert kube_problems(CRDS["TrainingJob"], job) == []
