"""The rendered CRDs: checked-in copies match the models, the schemas are structural, and
names, columns and rules are what docs/architecture.md promises."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import celpy
import kubernetes_validate
import pytest
import yaml

from kyklos.api import KINDS
from kyklos.api.crd import (
    CHART_CRD_DIR,
    CRD_DIR,
    check_files,
    main_crds,
    render_crd,
    rendered_files,
)

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests"))
from helm_tool import HelmUnavailableError, resolve_helm  # noqa: E402

CRDS = {k.KIND: render_crd(k) for k in KINDS}  # type: ignore[attr-defined]
# Free-form nodes (x-kubernetes-preserve-unknown-fields) the CRDs are meant to have: none;
# every embedded Kubernetes object (resources, tolerations) has a typed schema.
# Pod affinity is passed through; the API server validates it when the child is created.
INTENDED_PRESERVE_UNKNOWN: set[str] = {
    "TrainingJob.spec.template.affinity",
    "ModelDeployment.spec.runtime.template.affinity",
    "DriftMonitor.spec.retrain.template.template.affinity",
}

# docs/architecture.md section 1.
NAMES = {
    "Dataset": ("datasets", ["dset"]),
    "TrainingJob": ("trainingjobs", ["tj"]),
    "ModelDeployment": ("modeldeployments", ["mdep"]),
    "DriftMonitor": ("driftmonitors", ["dmon"]),
}
COLUMNS = {
    "Dataset": ["Phase", "Version", "Rows", "Age"],
    "TrainingJob": ["Phase", "Dataset", "Accepted", "Metric", "Value", "Verdict", "Age"],
    "ModelDeployment": ["Phase", "Stable", "Canary", "Weight", "Ready", "Age"],
    "DriftMonitor": ["Phase", "Drift Share", "Last Check", "Retrains", "Age"],
}


def _schema(kind: str) -> dict[str, Any]:
    schema: dict[str, Any] = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _nodes(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (properties, items and map values)."""
    out = [(path, node)]
    for name, sub in node.get("properties", {}).items():
        out += _nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        out += _nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _nodes(node["additionalProperties"], f"{path}.*")
    return out


def test_checked_in_crds_and_chart_copies_match_the_models() -> None:
    """crds/ and charts/kyklos/templates/crds/ are what `kyklos crds` renders now."""
    assert check_files(REPO, rendered_files()) == []


@pytest.mark.parametrize("kind", list(CRDS))
def test_schema_is_structural(kind: str) -> None:
    """Every node typed, no references, anyOf only for int-or-string, no additionalProperties
    false, every property described (kubectl explain), free-form nodes only where intended."""
    for path, node in _nodes(_schema(kind)):
        assert "$ref" not in node and "$defs" not in node, path
        assert "title" not in node and "const" not in node, path
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
        else:
            assert node.get("type") in {
                "object",
                "array",
                "string",
                "integer",
                "number",
                "boolean",
            }, path
            assert "anyOf" not in node and "oneOf" not in node and "allOf" not in node, path
        if node.get("x-kubernetes-preserve-unknown-fields"):
            assert f"{kind}{path}" in INTENDED_PRESERVE_UNKNOWN
        if node.get("type") == "object":
            assert (
                "properties" in node
                or "additionalProperties" in node
                or path == ".metadata"
                or node.get("x-kubernetes-preserve-unknown-fields")
            )
        for name, prop in node.get("properties", {}).items():
            if path == "" and name == "metadata":
                continue  # the API server allows only `type: object` there
            assert prop.get("description"), f"{kind}{path}.{name} has no description"
        if "exclusiveMinimum" in node and not isinstance(node["exclusiveMinimum"], bool):
            pytest.fail(f"{path}: JSON Schema numeric exclusiveMinimum left in")
    root = _schema(kind)
    assert root["properties"]["metadata"] == {"type": "object"}
    assert root["required"] == ["spec"]


@pytest.mark.parametrize("kind", list(CRDS))
def test_list_maps_are_keyed_by_required_fields(kind: str) -> None:
    """x-kubernetes-list-type map lists are keyed by fields every item must have."""
    for path, node in _nodes(_schema(kind)):
        if node.get("x-kubernetes-list-type") == "map":
            keys = node["x-kubernetes-list-map-keys"]
            assert set(keys) <= set(node["items"].get("required", [])), path
        if node.get("x-kubernetes-list-type") == "set":
            assert node["items"]["type"] in {"string", "integer", "number", "boolean"}, path


@pytest.mark.parametrize("kind", list(CRDS))
def test_strings_lists_and_maps_in_spec_are_bounded(kind: str) -> None:
    """Bounded spec sizes keep the API server's CEL cost estimate within its limits."""
    spec = _schema(kind)["properties"]["spec"]
    for path, node in _nodes(spec, ".spec"):
        if node.get("type") == "string" and "enum" not in node:
            assert "maxLength" in node, f"{path} is an unbounded string"
        if node.get("type") == "array":
            assert "maxItems" in node, f"{path} is an unbounded list"
        if node.get("type") == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, f"{path} is an unbounded map"


@pytest.mark.parametrize("kind", list(CRDS))
def test_names_scope_version_and_subresources(kind: str) -> None:
    """Group, version, plural, short names and categories as docs/architecture.md section 1 says."""
    crd = CRDS[kind]
    plural, short = NAMES[kind]
    assert crd["metadata"]["name"] == f"{plural}.kyklos.io"
    spec = crd["spec"]
    assert spec["group"] == "kyklos.io" and spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind and spec["names"]["plural"] == plural
    assert spec["names"]["shortNames"] == short
    assert spec["names"]["categories"] == ["kyklos", "ml"]
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    scale = {
        "scale": {
            "specReplicasPath": ".spec.replicas",
            "statusReplicasPath": ".status.replicas",
            "labelSelectorPath": ".status.selector",
        }
    }
    # Only a ModelDeployment scales (`kubectl scale mdep/x`, an HPA or KEDA on /scale).
    assert version["subresources"] == {"status": {}, **(scale if kind == "ModelDeployment" else {})}
    assert [c["name"] for c in version["additionalPrinterColumns"]] == COLUMNS[kind]


def test_printer_columns_point_at_existing_fields() -> None:
    """Each printer column's JSONPath names a field of the schema with the column's type."""
    kinds = {"string": "string", "integer": "integer", "number": "number", "date": "string"}
    for kind in CRDS:
        schema = _schema(kind)
        for column in CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]:
            json_path = column["jsonPath"]
            if json_path == ".metadata.creationTimestamp":
                continue
            node = schema
            # ".status.conditions[?(@.type==...)].status": drop the filter, walk the rest.
            plain = re.sub(r"\[\?\(.*?\)\]", "[]", json_path)
            for part in plain.lstrip(".").split("."):
                node = node["properties"][part.removesuffix("[]")]
                if part.endswith("[]"):
                    node = node["items"]
            assert node["type"] == kinds[column["type"]], f"{kind} {column['name']}"
    accepted = CRDS["TrainingJob"]["spec"]["versions"][0]["additionalPrinterColumns"][2]
    assert accepted["jsonPath"] == '.status.conditions[?(@.type=="ModelAccepted")].status'


def test_cel_rules_compile_and_carry_messages() -> None:
    """Every x-kubernetes-validations rule parses as CEL and has a human message."""
    env = celpy.Environment()
    count = 0
    for kind in CRDS:
        for path, node in _nodes(_schema(kind)):
            for rule in node.get("x-kubernetes-validations", []):
                env.compile(rule["rule"])
                assert len(rule["message"]) > 10, f"{kind}{path}"
                count += 1
    # 8 before pod templates, plus 3 rules (env, volume name, volume source) in each of the
    # three TrainingJob specs (TrainingJob, DriftMonitor's retrain template) and serving runtime.
    assert count == 8 + 3 * 3


def test_training_job_root_has_the_immutability_transition_rule() -> None:
    """The one transition rule sits at the root and compares every spec field but suspend."""
    from kyklos.api.training import TrainingJobSpec

    (rule,) = _schema("TrainingJob")["x-kubernetes-validations"]
    guard = "!has(oldSelf.status) || !has(oldSelf.status.startTime) || ("
    assert rule["rule"].startswith(guard)
    fields = {str(f.alias) for f in TrainingJobSpec.model_fields.values()}
    compared = set(re.findall(r"self\.spec\.(\w+) == oldSelf", rule["rule"]))
    assert compared == fields - {"suspend"}
    assert rule["message"] == (
        "spec is immutable once the training has started (only suspend may change); "
        "create a new TrainingJob to re-run"
    )


@pytest.mark.parametrize("kind", list(CRDS))
def test_crd_is_a_valid_apiextensions_object(kind: str) -> None:
    """The CRD passes the Kubernetes OpenAPI schema of CustomResourceDefinition (strict)."""
    kubernetes_validate.validate(CRDS[kind], "1.33", strict=True)


def test_defaults_fill_nested_objects() -> None:
    """Object fields with model defaults get `default: {}` so nested defaults apply."""
    strategy = _schema("ModelDeployment")["properties"]["spec"]["properties"]["strategy"]
    assert strategy["default"] == {}
    assert strategy["properties"]["type"]["default"] == "RollingUpdate"
    gt_zero = _schema("DriftMonitor")["properties"]["spec"]["properties"]["thresholds"]
    share = gt_zero["properties"]["driftShare"]
    assert (share["minimum"], share["exclusiveMinimum"]) == (0, True)


# --- kyklos crds / kyklos crds --check ------------------------------------------------------


def _copy_generated(tmp_path: Path) -> Path:
    for folder in (CRD_DIR, CHART_CRD_DIR):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


def test_crds_writes_every_file_and_check_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`kyklos crds` into an empty root writes 8 files; `--check` then exits 0."""
    assert main_crds(tmp_path, check=False) == 0
    assert len(list((tmp_path / CRD_DIR).glob("*.yaml"))) == 4
    assert len(list((tmp_path / CHART_CRD_DIR).glob("*.yaml"))) == 4
    assert main_crds(tmp_path, check=True) == 0
    assert "8 files match" in capsys.readouterr().out


def test_check_names_the_tampered_file_and_prints_a_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hand-edited chart copy makes `--check` exit 1 with the file and a unified diff."""
    root = _copy_generated(tmp_path)
    target = root / CHART_CRD_DIR / "trainingjobs.kyklos.io.yaml"
    target.write_text(target.read_text().replace("minimum: 1\n", "minimum: 0\n", 1))
    assert main_crds(root, check=True) == 1
    out = capsys.readouterr()
    text = out.out + out.err
    assert "charts/kyklos/templates/crds/trainingjobs.kyklos.io.yaml: differs" in text
    assert "-                    minimum: 0" in text or "-  " in text
    assert "+" in text and "@@" in text
    assert "crds/datasets.kyklos.io.yaml" not in text.replace("templates/crds/datasets", "")


def test_check_reports_missing_and_stale_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A deleted CRD and an extra *.kyklos.io.yaml are both reported."""
    root = _copy_generated(tmp_path)
    (root / CRD_DIR / "datasets.kyklos.io.yaml").unlink()
    (root / CRD_DIR / "widgets.kyklos.io.yaml").write_text("kind: CustomResourceDefinition\n")
    assert main_crds(root, check=True) == 1
    err = capsys.readouterr().err
    assert "crds/datasets.kyklos.io.yaml: missing" in err
    assert "crds/widgets.kyklos.io.yaml: not rendered from any model" in err


def test_unwritable_output_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An output root that is a file yields exit 2 and one line, not a traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main_crds(blocker, check=False) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kyklos crds: ")


def _strip_helm(text: str, keep: bool) -> str:
    """Evaluate the two conditionals of a generated chart template by hand."""
    lines = text.splitlines(keepends=True)
    assert lines[0] == "{{- if .Values.crds.install }}\n" and lines[-1] == "{{- end }}\n"
    out, skipping = [], False
    for line in lines[1:-1]:
        if line.strip() == "{{- if .Values.crds.keep }}":
            skipping = not keep
        elif line.strip() == "{{- end }}":
            skipping = False
        elif not skipping:
            out.append(line)
    return "".join(out)


@pytest.mark.parametrize("kind", list(CRDS))
def test_chart_copy_is_the_same_document(kind: str) -> None:
    """The chart template holds the crds/ document, plus the keep annotation when asked."""
    name = f"{NAMES[kind][0]}.kyklos.io.yaml"
    plain = (REPO / CRD_DIR / name).read_text()
    template = (REPO / CHART_CRD_DIR / name).read_text()
    assert _strip_helm(template, keep=False) == plain
    kept = yaml.safe_load(_strip_helm(template, keep=True))
    assert kept["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}
    del kept["metadata"]["annotations"]
    assert kept == yaml.safe_load(plain)


def test_helm_renders_crds_by_values() -> None:
    """`helm template`: CRDs kept by default, no annotation with crds.keep=false, none
    with crds.install=false."""
    try:
        helm = str(resolve_helm())
    except HelmUnavailableError as exc:
        pytest.skip(f"helm unavailable: {exc}")
    chart = str(REPO / "charts" / "kyklos")

    def crds(*sets: str) -> list[dict[str, Any]]:
        args = [helm, "template", "k", chart, *(a for s in sets for a in ("--set", s))]
        out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
        docs = [d for d in yaml.safe_load_all(out) if d]
        return [d for d in docs if d["kind"] == "CustomResourceDefinition"]

    default = crds()
    assert sorted(d["metadata"]["name"] for d in default) == sorted(
        f"{p}.kyklos.io" for p, _ in NAMES.values()
    )
    assert all(d["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for d in default)
    by_name = {d["metadata"]["name"]: d for d in crds("crds.keep=false")}
    for kind, crd in CRDS.items():
        assert by_name[crd["metadata"]["name"]] == crd, kind
    assert crds("crds.install=false") == []


def test_renderer_refuses_what_a_structural_schema_cannot_say() -> None:
    """A model the renderer cannot make structural fails with the field path, not silently."""
    from typing import ClassVar

    from pydantic import Field

    from kyklos.api.common import KyklosModel
    from kyklos.api.crd import CrdRenderError, openapi_schema

    class LooseSpec(KyklosModel):
        """Spec with a three-way union."""

        value: int | str | float = Field(description="Anything.")

    class Loose(KyklosModel):
        """A kind whose spec cannot be structural."""

        KIND: ClassVar[str] = "Loose"
        spec: LooseSpec = Field(description="Spec.")

    with pytest.raises(CrdRenderError, match=r"Loose\.spec\.value: a union of 3 types"):
        openapi_schema(Loose)

    class FreeSpec(KyklosModel):
        """Spec with an untyped map."""

        anything: dict[str, Any] = Field(description="Free-form.")

    class Free(KyklosModel):
        """A kind with a free-form map."""

        spec: FreeSpec = Field(description="Spec.")

    with pytest.raises(
        CrdRenderError, match=r"Free\.spec\.anything: object without properties or a value schema"
    ):
        openapi_schema(Free)
