"""Kubelet policy of the sandbox node agent: which container image gets which behaviour.

A policy is a YAML mapping with three optional keys::

    nodes:                       # capacity of every sandbox Node
      cpu: "4"
      memory: 16Gi
      pods: 110
      ephemeralStorage: 100Gi
      extendedResources: {nvidia.com/gpu: 2}
      labels: {example.com/pool: gpu}
    crashLoopBackOff:            # restart back-off (kubelet: 10 s doubling to 300 s)
      initialSeconds: 10
      maxSeconds: 300
    rules:                       # first rule whose `image` glob matches wins
      - image: "*kyklos*"
        action: process
        entrypoint: [kyklos]

Actions: ``process`` (run the container's command as a local process), ``succeed``,
``fail``, ``serve``, ``crashloop``, ``pending``. ``action`` may also be a mapping keyed by
the pod's restartPolicy (``{Always: serve, Never: succeed}``). When a rule has no
``action``, when the mapping lacks the pod's restartPolicy, or when an image matches no
rule, the default behaviour applies: ``serve`` for restartPolicy Always (long-running
pods become Ready), ``succeed`` otherwise (Jobs' pods complete).

Scripted actions behave like a container that exits: ``succeed`` exits 0 after
``duration``; ``fail`` exits ``exitCode`` (default 1) after ``duration`` with ``reason``
(default Error); the restartPolicy then decides about restarts exactly as for a real
process, so ``succeed`` under restartPolicy Always is restarted like any container. A
``crashloop`` container exits ``exitCode`` after ``duration`` and is always restarted
with back-off, whatever the restartPolicy. ``serve`` runs until stopped and is Ready
``readyAfter`` seconds after it started. ``pending`` never starts (waiting ``reason``,
default ContainerCreating).
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

ACTIONS = ("process", "succeed", "fail", "serve", "crashloop", "pending")
RESTART_POLICIES = ("Always", "OnFailure", "Never")

#: Fields a rule may carry, by the action they configure.
_ACTION_FIELDS: dict[str, frozenset[str]] = {
    "process": frozenset({"entrypoint"}),
    "succeed": frozenset({"duration", "terminationMessage"}),
    "fail": frozenset({"duration", "terminationMessage", "exitCode", "reason"}),
    "serve": frozenset({"readyAfter"}),
    "crashloop": frozenset({"duration", "terminationMessage", "exitCode"}),
    "pending": frozenset({"reason", "message"}),
}
_RULE_FIELDS = frozenset({"image", "action"}).union(*_ACTION_FIELDS.values())
_NODE_FIELDS = frozenset(
    {"cpu", "memory", "pods", "ephemeralStorage", "extendedResources", "labels"}
)
_TOP_FIELDS = frozenset({"nodes", "crashLoopBackOff", "rules"})

DEFAULT_POLICY_PATH = os.path.join(os.path.dirname(__file__), "default-policy.yaml")


class PolicyError(ValueError):
    """A policy file is malformed; the message is one line naming the file and field."""


@dataclass(frozen=True)
class Rule:
    """One policy rule: an image glob and the behaviour of matching containers."""

    image: str
    # restartPolicy -> action; "*" is the rule's plain `action`.
    actions: dict[str, str] = field(default_factory=dict)
    entrypoint: tuple[str, ...] = ()
    duration: float = 0.0
    termination_message: str = ""
    exit_code: int = 1
    reason: str = ""
    message: str = ""
    ready_after: float = 0.0

    def action_for(self, restart_policy: str) -> str:
        """The action for a pod with `restart_policy`, falling back to the default."""
        if restart_policy in self.actions:
            return self.actions[restart_policy]
        if "*" in self.actions:
            return self.actions["*"]
        return default_action(restart_policy)


@dataclass(frozen=True)
class NodeResources:
    """Capacity (and allocatable) of every sandbox Node."""

    cpu: str = "4"
    memory: str = "16Gi"
    pods: str = "110"
    ephemeral_storage: str = "100Gi"
    extended: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    def as_capacity(self) -> dict[str, str]:
        """The Node's status.capacity mapping."""
        cap = {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": self.pods,
            "ephemeral-storage": self.ephemeral_storage,
        }
        cap.update(self.extended)
        return cap


@dataclass(frozen=True)
class Policy:
    """A parsed kubelet policy."""

    rules: tuple[Rule, ...] = ()
    nodes: NodeResources = field(default_factory=NodeResources)
    backoff_initial: float = 10.0
    backoff_max: float = 300.0
    sha256: str = ""

    def rule_for(self, image: str) -> Rule:
        """The first rule whose glob matches `image`, or the default rule."""
        for rule in self.rules:
            if fnmatch.fnmatchcase(image, rule.image):
                return rule
        return Rule(image="*")


def default_action(restart_policy: str) -> str:
    """Behaviour of an unmatched image: long-running pods serve, others succeed."""
    return "serve" if restart_policy == "Always" else "succeed"


def load_policy(path: str | None = None) -> Policy:
    """Read and validate the policy at `path` (the packaged default when None)."""
    path = path or DEFAULT_POLICY_PATH
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise PolicyError(f"{path}: cannot read policy: {e.strerror}") from None
    return parse_policy(data, path)


def parse_policy(data: bytes, source: str = "policy") -> Policy:
    """Validate policy bytes; raise PolicyError naming `source` and the field at fault."""
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise PolicyError(f"{source}: invalid YAML{where}: {problem}") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: the policy must be a mapping with 'rules', got {_kind(doc)}")
    _no_unknown(doc, _TOP_FIELDS, source, "")
    rules_doc = doc.get("rules", [])
    if rules_doc is None:
        rules_doc = []
    if not isinstance(rules_doc, list):
        raise PolicyError(f"{source}: rules: must be a list, got {_kind(rules_doc)}")
    rules = tuple(_parse_rule(r, f"rules[{i}]", source) for i, r in enumerate(rules_doc))
    nodes = _parse_nodes(doc.get("nodes"), source)
    initial, maximum = _parse_backoff(doc.get("crashLoopBackOff"), source)
    return Policy(
        rules=rules,
        nodes=nodes,
        backoff_initial=initial,
        backoff_max=maximum,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _no_unknown(doc: dict[Any, Any], allowed: frozenset[str], source: str, where: str) -> None:
    for key in doc:
        if key not in allowed:
            prefix = f"{where}." if where else ""
            raise PolicyError(
                f"{source}: {prefix}{key}: unknown field (allowed: {', '.join(sorted(allowed))})"
            )


def _number(value: object, source: str, where: str, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PolicyError(f"{source}: {where}: must be a number of seconds, got {_kind(value)}")
    if value < minimum:
        raise PolicyError(f"{source}: {where}: must be >= {minimum:g}, got {value}")
    return float(value)


def _string(value: object, source: str, where: str) -> str:
    if not isinstance(value, str):
        raise PolicyError(f"{source}: {where}: must be a string, got {_kind(value)}")
    return value


def _parse_action(value: object, source: str, where: str) -> dict[str, str]:
    if isinstance(value, str):
        if value not in ACTIONS:
            raise PolicyError(
                f"{source}: {where}: unknown action {value!r} (expected one of {', '.join(ACTIONS)})"
            )
        return {"*": value}
    if isinstance(value, dict):
        out: dict[str, str] = {}
        for policy, action in value.items():
            if policy not in RESTART_POLICIES:
                raise PolicyError(
                    f"{source}: {where}.{policy}: unknown restartPolicy "
                    f"(expected {', '.join(RESTART_POLICIES)})"
                )
            out.update({policy: _parse_action(action, source, f"{where}.{policy}")["*"]})
        return out
    raise PolicyError(
        f"{source}: {where}: must be an action name or a mapping by restartPolicy, "
        f"got {_kind(value)}"
    )


def _parse_rule(doc: object, where: str, source: str) -> Rule:
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: {where}: must be a mapping, got {_kind(doc)}")
    _no_unknown(doc, _RULE_FIELDS, source, where)
    if "image" not in doc:
        raise PolicyError(f"{source}: {where}.image: required (a glob such as '*kyklos*')")
    image = _string(doc["image"], source, f"{where}.image")
    if not image:
        raise PolicyError(f"{source}: {where}.image: must not be empty")
    actions = _parse_action(doc["action"], source, f"{where}.action") if "action" in doc else {}
    # A field only makes sense for an action the rule can take.
    possible = set(actions.values()) if actions else {"serve", "succeed"}
    allowed = frozenset({"image", "action"}).union(*(_ACTION_FIELDS[a] for a in possible))
    for key in doc:
        if key not in allowed:
            raise PolicyError(
                f"{source}: {where}.{key}: not used by action {'/'.join(sorted(possible))}"
            )
    kwargs: dict[str, Any] = {"image": image, "actions": actions}
    if "entrypoint" in doc:
        ep = doc["entrypoint"]
        if not isinstance(ep, list) or not ep or not all(isinstance(x, str) and x for x in ep):
            raise PolicyError(
                f"{source}: {where}.entrypoint: must be a non-empty list of strings, e.g. [kyklos]"
            )
        kwargs["entrypoint"] = tuple(ep)
    if "duration" in doc:
        kwargs["duration"] = _number(doc["duration"], source, f"{where}.duration")
    if "readyAfter" in doc:
        kwargs["ready_after"] = _number(doc["readyAfter"], source, f"{where}.readyAfter")
    if "terminationMessage" in doc:
        msg = doc["terminationMessage"]
        if not isinstance(msg, str):
            raise PolicyError(f"{source}: {where}.terminationMessage: must be a string")
        kwargs["termination_message"] = msg
    if "exitCode" in doc:
        code = doc["exitCode"]
        if isinstance(code, bool) or not isinstance(code, int) or not 1 <= code <= 255:
            raise PolicyError(
                f"{source}: {where}.exitCode: must be an integer 1..255, got {code!r}"
            )
        kwargs["exit_code"] = code
    if "reason" in doc:
        reason = _string(doc["reason"], source, f"{where}.reason")
        if not reason or not reason[0].isupper() or not reason.isalnum():
            raise PolicyError(f"{source}: {where}.reason: must be CamelCase, got {reason!r}")
        kwargs["reason"] = reason
    if "message" in doc:
        kwargs["message"] = _string(doc["message"], source, f"{where}.message")
    return Rule(**kwargs)


def _quantity(value: object, source: str, where: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise PolicyError(f"{source}: {where}: must be a quantity such as 4 or 16Gi")
    text = str(value)
    try:
        from kubernetes.utils.quantity import parse_quantity

        if parse_quantity(text) < 0:
            raise ValueError(text)
    except ValueError:
        raise PolicyError(
            f"{source}: {where}: invalid quantity {text!r} (e.g. 4, 500m, 16Gi)"
        ) from None
    return text


def _parse_nodes(doc: object, source: str) -> NodeResources:
    if doc is None:
        return NodeResources()
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: nodes: must be a mapping, got {_kind(doc)}")
    _no_unknown(doc, _NODE_FIELDS, source, "nodes")
    kwargs: dict[str, Any] = {}
    for key, attr in (
        ("cpu", "cpu"),
        ("memory", "memory"),
        ("pods", "pods"),
        ("ephemeralStorage", "ephemeral_storage"),
    ):
        if key in doc:
            kwargs[attr] = _quantity(doc[key], source, f"nodes.{key}")
    ext = doc.get("extendedResources") or {}
    if not isinstance(ext, dict):
        raise PolicyError(f"{source}: nodes.extendedResources: must be a mapping name -> count")
    extended: dict[str, str] = {}
    for name, count in ext.items():
        where = f"nodes.extendedResources.{name}"
        if not isinstance(name, str) or "/" not in name:
            raise PolicyError(
                f"{source}: {where}: name must be domain-qualified, e.g. nvidia.com/gpu"
            )
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise PolicyError(f"{source}: {where}: must be a whole number >= 0, got {count!r}")
        extended[name] = str(count)
    kwargs["extended"] = extended
    labels = doc.get("labels") or {}
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise PolicyError(f"{source}: nodes.labels: must be a mapping of strings to strings")
    kwargs["labels"] = dict(labels)
    return NodeResources(**kwargs)


def _parse_backoff(doc: object, source: str) -> tuple[float, float]:
    if doc is None:
        return 10.0, 300.0
    if not isinstance(doc, dict):
        raise PolicyError(f"{source}: crashLoopBackOff: must be a mapping, got {_kind(doc)}")
    _no_unknown(doc, frozenset({"initialSeconds", "maxSeconds"}), source, "crashLoopBackOff")
    initial = _number(doc.get("initialSeconds", 10.0), source, "crashLoopBackOff.initialSeconds")
    maximum = _number(doc.get("maxSeconds", 300.0), source, "crashLoopBackOff.maxSeconds")
    if maximum < initial:
        raise PolicyError(
            f"{source}: crashLoopBackOff.maxSeconds: must be >= initialSeconds ({initial:g})"
        )
    return initial, maximum
