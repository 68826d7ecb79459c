"""Every manifest in examples/ is valid against the generated CRDs and the pydantic models,
and the story's cross-references (datasets, training job, deployment) resolve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from crd_emulation import kube_problems, pydantic_problems

from kyklos.api import KINDS
from kyklos.api.common import API_VERSION

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
MODELS = {k.KIND: k for k in KINDS}  # type: ignore[attr-defined]
CRDS = {
    kind: yaml.safe_load((REPO / "crds" / f"{model.PLURAL}.kyklos.io.yaml").read_text())  # type: ignore[attr-defined]
    for kind, model in MODELS.items()
}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((f"{path.name}:{doc['metadata']['name']}", doc))
    return docs


DOCS = _documents()


def test_one_example_per_kind_at_least() -> None:
    assert {doc["kind"] for _, doc in DOCS} == set(MODELS)
    assert all(doc["apiVersion"] == API_VERSION for _, doc in DOCS)


@pytest.mark.parametrize(("name", "doc"), DOCS, ids=[n for n, _ in DOCS])
def test_example_is_valid(name: str, doc: dict[str, Any]) -> None:
    """The checked-in CRD (schema + CEL) and the pydantic model both accept the example."""
    kube = kube_problems(CRDS[doc["kind"]], doc)
    assert kube == [], f"{name}: {kube}"
    pyd = pydantic_problems(MODELS[doc["kind"]], doc)
    assert pyd == [], f"{name}: {pyd}"


def test_examples_reference_each_other() -> None:
    """Every datasetRef, fromTrainingJob and modelDeploymentRef names an example object."""
    names: dict[str, set[str]] = {kind: set() for kind in MODELS}
    for _, doc in DOCS:
        names[doc["kind"]].add(doc["metadata"]["name"])
    for name, doc in DOCS:
        spec = doc["spec"]
        if doc["kind"] == "TrainingJob":
            assert spec["datasetRef"]["name"] in names["Dataset"], name
        if doc["kind"] == "ModelDeployment":
            assert spec["model"]["fromTrainingJob"] in names["TrainingJob"], name
        if doc["kind"] == "DriftMonitor":
            assert spec["modelDeploymentRef"]["name"] in names["ModelDeployment"], name
            assert spec["reference"]["datasetRef"]["name"] in names["Dataset"], name
            assert spec["current"]["datasetRef"]["name"] in names["Dataset"], name
            assert spec["retrain"]["template"]["datasetRef"]["name"] in names["Dataset"], name


def test_example_sources_are_the_example_data_files() -> None:
    """The Datasets read pvc://kyklos-examples/<file> for files that exist in examples/data."""
    for name, doc in DOCS:
        if doc["kind"] != "Dataset":
            continue
        uri = doc["spec"]["source"]["uri"]
        assert uri.startswith("pvc://kyklos-examples/"), name
        assert (EXAMPLES / "data" / uri.removeprefix("pvc://kyklos-examples/")).is_file(), name
