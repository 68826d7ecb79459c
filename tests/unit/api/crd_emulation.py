"""The API server's judgement of a custom resource, emulated offline for the parity tests.

What kube-apiserver does with a create (or update) of a custom resource, in its order:
unknown fields are errors (kubectl sends ``fieldValidation=Strict``), nulls of non-nullable
fields are dropped, structural defaults are applied (recursively, into defaulted values),
the OpenAPI schema is checked, ``x-kubernetes-list-type`` map/set uniqueness is checked, and
only when those found no error, every ``x-kubernetes-validations`` CEL rule is evaluated
with ``self`` (and on update ``oldSelf``) bound to its node. Decoding turns whole floats
(``8080.0``) into integers, as apimachinery's JSON decoder does. The CEL side uses cel-python
with the Kubernetes list-library functions the CRDs use registered with their Kubernetes
semantics. The pydantic side validates exactly as ``kyklos.api.common.validate_wire``.

A manifest's ``status`` is validated with the rest of the object, which is what the API
server does when the status is written through the ``/status`` subresource (a create
drops it; the integration test writes such statuses through /status).

Every error is a (path, message) pair; a path is a tuple of keys and indexes from the
object's root, so tests can check that errors name the field at fault.
"""

from __future__ import annotations

import copy
import functools
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import celpy
import jsonschema
from celpy import celtypes
from pydantic import BaseModel, ValidationError

from kyklos.api.common import as_decoded, validate_wire

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Problem:
    """One reason a side rejected a document."""

    path: Path
    message: str
    source: str  # "schema", "list-type", "cel" or "pydantic"
    rule: str = ""  # the JSON Schema keyword or the CEL rule text

    def dotted(self) -> str:
        return ".".join(str(p) for p in self.path)


# --- Kubernetes CEL list library (k8s.io/apiserver/pkg/cel/library/lists.go) --------------


def _is_sorted(items: celtypes.ListType) -> celtypes.BoolType:
    """``<list<T>>.isSorted()``: true when each element is <= the next (T comparable)."""
    values = list(items)
    return celtypes.BoolType(all(a <= b for a, b in itertools.pairwise(values)))


CEL_FUNCTIONS: dict[str, Any] = {"isSorted": _is_sorted}
_ENV = celpy.Environment()


@functools.cache
def _program(rule: str) -> celpy.Runner:
    return _ENV.program(_ENV.compile(rule), functions=CEL_FUNCTIONS)


def evaluate_rule(rule: str, self_value: Any, old_value: Any = None) -> bool:
    """Evaluate one CEL rule as the API server does; an evaluation error counts as a failure."""
    activation: dict[str, Any] = {"self": celpy.json_to_cel(self_value)}
    if old_value is not None:
        activation["oldSelf"] = celpy.json_to_cel(old_value)
    try:
        result = _program(rule).evaluate(activation)
    except celpy.CELEvalError:
        return False
    return isinstance(result, celtypes.BoolType) and bool(result)


# --- structural defaulting and null pruning ----------------------------------------------


def default_and_prune_nulls(schema: dict[str, Any], value: Any) -> Any:
    """Structural defaulting as in apiextensions-apiserver.

    Null object fields and map values are dropped first (then defaulted when the schema has
    a default); nulls in lists are kept, and fail the type check -- as measured on
    kube-apiserver v1.37.2.
    """
    if isinstance(value, dict):
        if "properties" in schema:
            props = schema["properties"]
            for key in list(value):
                if value[key] is None and not props.get(key, {}).get("nullable"):
                    del value[key]
            for key, sub in props.items():
                if key not in value and "default" in sub:
                    value[key] = copy.deepcopy(sub["default"])
                if key in value:
                    value[key] = default_and_prune_nulls(sub, value[key])
        elif isinstance(schema.get("additionalProperties"), dict):
            sub = schema["additionalProperties"]
            for key in list(value):
                if value[key] is None and not sub.get("nullable"):
                    del value[key]
                else:
                    value[key] = default_and_prune_nulls(sub, value[key])
    elif isinstance(value, list) and "items" in schema:
        return [default_and_prune_nulls(schema["items"], v) for v in value]
    return value


# --- OpenAPI schema -> jsonschema ---------------------------------------------------------


def strict_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The CRD schema for jsonschema's Draft 4 validator, with unknown fields as errors.

    Draft 4 has OpenAPI v3.0's boolean ``exclusiveMinimum``; ``x-kubernetes-*`` and
    ``nullable`` keys are ignored by jsonschema (nulls were pruned before).
    """
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "properties":
            out[key] = {k: strict_json_schema(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = strict_json_schema(value)
        elif key == "anyOf":
            out[key] = [strict_json_schema(v) for v in value]
        else:
            out[key] = value
    if "properties" in schema:
        out["additionalProperties"] = False
    return out


def _schema_problems(schema: dict[str, Any], doc: Any) -> Iterator[Problem]:
    validator = jsonschema.Draft4Validator(strict_json_schema(schema))
    for error in validator.iter_errors(doc):
        path: Path = tuple(error.absolute_path)
        if error.validator == "required":
            missing = [k for k in error.validator_value if k not in error.instance]
            for key in missing:
                yield Problem((*path, key), error.message, "schema", "required")
            continue
        if error.validator == "additionalProperties":
            known = set(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in known:
                    yield Problem((*path, key), f"unknown field {key!r}", "schema", "unknown")
            continue
        yield Problem(path, error.message, "schema", str(error.validator))


def _list_type_problems(schema: dict[str, Any], value: Any, path: Path) -> Iterator[Problem]:
    """Duplicate keys of ``x-kubernetes-list-type`` map lists and duplicate set items."""
    if isinstance(value, list):
        list_type = schema.get("x-kubernetes-list-type")
        seen: set[Any] = set()
        for index, item in enumerate(value):
            if list_type == "set":
                key: Any = repr(item)
            elif list_type == "map" and isinstance(item, dict):
                key = tuple(repr(item.get(k)) for k in schema["x-kubernetes-list-map-keys"])
            else:
                key = None
            if key is not None:
                if key in seen:
                    yield Problem((*path, index), "Duplicate value", "list-type", list_type or "")
                seen.add(key)
            yield from _list_type_problems(schema.get("items", {}), item, (*path, index))
    elif isinstance(value, dict):
        props = schema.get("properties")
        for key, item in value.items():
            sub = props.get(key) if props is not None else schema.get("additionalProperties")
            if isinstance(sub, dict):
                yield from _list_type_problems(sub, item, (*path, key))


def _field_path(path: Path, field_path: str | None) -> Path:
    if not field_path:
        return path
    return (*path, *re.findall(r"[A-Za-z0-9_]+", field_path))


def _cel_problems(schema: dict[str, Any], value: Any, old: Any, path: Path) -> Iterator[Problem]:
    for rule in schema.get("x-kubernetes-validations", []):
        text = rule["rule"]
        if "oldSelf" in text and old is None:
            continue  # transition rules are checked on update only
        if not evaluate_rule(text, value, old):
            yield Problem(_field_path(path, rule.get("fieldPath")), rule["message"], "cel", text)
    if isinstance(value, dict):
        props = schema.get("properties")
        for key, item in value.items():
            sub = props.get(key) if props is not None else schema.get("additionalProperties")
            old_item = old.get(key) if isinstance(old, dict) else None
            if isinstance(sub, dict):
                yield from _cel_problems(sub, item, old_item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            # Only the root carries a transition rule; list items are not correlated here.
            yield from _cel_problems(schema.get("items", {}), item, None, (*path, index))


def crd_schema(crd: dict[str, Any]) -> dict[str, Any]:
    """The openAPIV3Schema of a CRD's only version."""
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _unknown_fields(schema: dict[str, Any], value: Any, path: Path) -> Iterator[Problem]:
    """Strict field validation happens while decoding, before nulls are pruned."""
    if isinstance(value, dict):
        props = schema.get("properties")
        for key, item in value.items():
            if props is not None and key not in props:
                yield Problem((*path, key), f"unknown field {key!r}", "schema", "unknown")
                continue
            sub = props[key] if props is not None else schema.get("additionalProperties")
            if isinstance(sub, dict):
                yield from _unknown_fields(sub, item, (*path, key))
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _unknown_fields(schema["items"], item, (*path, index))


def kube_problems(
    crd: dict[str, Any], manifest: dict[str, Any], old: dict[str, Any] | None = None
) -> list[Problem]:
    """Why the API server would reject this create (or, with ``old``, update); [] if accepted."""
    schema = crd_schema(crd)
    decoded = as_decoded(manifest)  # whole floats are integers after decoding
    unknown = list(_unknown_fields(schema, decoded, ()))
    if unknown:
        return unknown  # a strict decoding error ends the request before validation
    doc = default_and_prune_nulls(schema, copy.deepcopy(decoded))
    problems = list(_schema_problems(schema, doc))
    problems += _list_type_problems(schema, doc, ())
    if problems:
        return problems  # the API server skips CEL when the object is structurally invalid
    old_doc = default_and_prune_nulls(schema, as_decoded(old)) if old is not None else None
    return list(_cel_problems(schema, doc, old_doc, ()))


def kube_defaulted(crd: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    """The object as the API server would store it (defaults applied, nulls dropped)."""
    result: dict[str, Any] = default_and_prune_nulls(crd_schema(crd), as_decoded(manifest))
    return result


# --- the pydantic side --------------------------------------------------------------------

_RELATIVE_PATH = re.compile(r"^(?:Value error, )?([A-Za-z][A-Za-z0-9_.]*): ")


def pydantic_problems(kind: type[BaseModel], manifest: dict[str, Any]) -> list[Problem]:
    """Why the pydantic model rejects the manifest's spec/status; [] if it accepts them."""
    body = {k: v for k, v in manifest.items() if k not in ("apiVersion", "kind", "metadata")}
    try:
        validate_wire(kind, body)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            path: Path = tuple(error["loc"])
            # Cross-field validators name the field relative to their model ("steps: ...").
            match = _RELATIVE_PATH.match(error["msg"])
            if match and error["type"] == "value_error":
                path = (*path, *match.group(1).split("."))
            problems.append(Problem(path, error["msg"], "pydantic", error["type"]))
        return problems
    return []


def names_path(problems: list[Problem], expected: Path) -> bool:
    """Whether some problem is reported at ``expected`` or below it."""
    return any(p.path[: len(expected)] == expected for p in problems)
