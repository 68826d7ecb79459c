"""Property: any one-field mutation of a good manifest gets the same verdict from the
pydantic models and from the rendered CRD (schema + CEL), as the API server would judge it."""

from __future__ import annotations

import copy
from typing import Any

from crd_emulation import kube_problems, pydantic_problems
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from parity_cases import GOOD, Case

from kyklos.api import KINDS
from kyklos.api.crd import render_crd

MODELS = {k.KIND: k for k in KINDS}  # type: ignore[attr-defined]
CRDS = {name: render_crd(model) for name, model in MODELS.items()}
BASES = [case.manifest() for case in GOOD if "status" not in case.manifest()]
BASES_BY_KIND = {doc["kind"]: doc for doc in reversed(BASES)}

# Values that probe types, bounds, enums, patterns and emptiness.
VALUES = st.one_of(
    st.sampled_from([0, 1, -1, 2, 100, 101, 1000, 1001, 65536, 10**8]),
    st.sampled_from([0.0, 0.5, 1.0, 1.5, -0.1]),
    st.booleans(),
    st.none(),
    st.sampled_from(["", "x", "a" * 300, "1h", "30s", "5 minutes", "Canary", "RollingUpdate"]),
    st.sampled_from(["none", "canary", "psi", "max", "csv", "numeric", "Exists", "500m", "1Gi"]),
    st.sampled_from(["s3://b/k", "python:3.12", "Bad_Name", "/healthz", "healthz", "abc-1"]),
    st.just([]),
    st.just({}),
    st.just([{"weight": 50}, {"weight": 10}]),
    st.just({"name": "ok"}),
    st.just(["a", "a"]),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into a manifest (objects and lists), below the spec."""
    out = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*prefix, index))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    doc = copy.deepcopy(draw(st.sampled_from(BASES)))
    path = draw(st.sampled_from([p for p in _paths(doc["spec"], ("spec",))]))
    parent: Any = doc
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["set", "delete", "add"]))
    if action == "delete" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "add" and isinstance(parent[path[-1]], dict):
        # A field name the schema may or may not know: known ones get odd values.
        key = draw(st.sampled_from(["name", "uri", "type", "weight", "extra", "minReplicas"]))
        parent[path[-1]][key] = draw(VALUES)
    else:
        parent[path[-1]] = draw(VALUES)
    return doc["kind"], doc


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
# Found against the real API server: a whole float where a CEL rule reads an integer.
@example(
    (
        "ModelDeployment",
        {
            **BASES_BY_KIND["ModelDeployment"],
            "spec": {
                **BASES_BY_KIND["ModelDeployment"]["spec"],
                "strategy": {"type": "Canary", "steps": [{"weight": 1.0}, {"weight": 50}]},
            },
        },
    )
)
def test_one_field_mutations_get_the_same_verdict(sample: tuple[str, dict[str, Any]]) -> None:
    kind, doc = sample
    kube = kube_problems(CRDS[kind], doc)
    pyd = pydantic_problems(MODELS[kind], doc)
    assert bool(kube) == bool(pyd), f"CRD: {kube}\npydantic: {pyd}\n{doc['spec']}"


def test_fuzz_bases_are_good() -> None:
    assert len(BASES) >= 8
    assert all(isinstance(case, Case) for case in GOOD)
