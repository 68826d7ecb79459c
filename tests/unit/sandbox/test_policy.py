"""Kubelet policy parsing: good files, rule matching, and malformed files named precisely."""

from __future__ import annotations

from pathlib import Path

import pytest

from kyklos.sandbox.policy import (
    DEFAULT_POLICY_PATH,
    PolicyError,
    Rule,
    load_policy,
    parse_policy,
)


def test_default_policy_loads_and_is_documented() -> None:
    policy = load_policy(None)
    assert policy.rules, "the default policy has rules"
    text = Path(DEFAULT_POLICY_PATH).read_text()
    assert text.lstrip().startswith("#"), "the default policy explains itself in comments"
    assert len(policy.sha256) == 64


def test_default_policy_runs_kyklos_and_python_as_processes() -> None:
    policy = load_policy(None)
    kyklos = policy.rule_for("ghcr.io/example/kyklos:0.1.0")
    assert kyklos.action_for("Never") == "process"
    assert kyklos.entrypoint == ("kyklos",)
    assert policy.rule_for("python:3.12-slim").action_for("OnFailure") == "process"
    assert policy.rule_for("registry.local/my-python-trainer:1").action_for("Never") == "process"


def test_default_policy_jobs_succeed_and_long_running_pods_serve() -> None:
    policy = load_policy(None)
    nginx = policy.rule_for("nginx:1.27")
    assert nginx.action_for("Never") == "succeed"
    assert nginx.action_for("OnFailure") == "succeed"
    assert nginx.action_for("Always") == "serve"
    assert nginx.ready_after > 0


def test_first_matching_rule_wins() -> None:
    policy = parse_policy(
        b"""
rules:
  - image: "busybox*"
    action: fail
    exitCode: 3
  - image: "*"
    action: succeed
"""
    )
    assert policy.rule_for("busybox:1.36").action_for("Never") == "fail"
    assert policy.rule_for("busybox:1.36").exit_code == 3
    assert policy.rule_for("alpine").action_for("Never") == "succeed"


def test_unmatched_image_gets_default_behaviour_by_restart_policy() -> None:
    policy = parse_policy(b"rules: [{image: 'busybox*', action: crashloop}]")
    rule = policy.rule_for("nginx")
    assert rule == Rule(image="*")
    assert rule.action_for("Always") == "serve"
    assert rule.action_for("Never") == "succeed"
    assert rule.action_for("OnFailure") == "succeed"


def test_action_by_restart_policy_falls_back_to_default_for_missing_keys() -> None:
    policy = parse_policy(b"rules: [{image: '*', action: {Never: fail}, exitCode: 2}]")
    rule = policy.rule_for("x")
    assert rule.action_for("Never") == "fail"
    assert rule.action_for("Always") == "serve"


def test_nodes_and_backoff_are_parsed() -> None:
    policy = parse_policy(
        b"""
nodes:
  cpu: "8"
  memory: 32Gi
  extendedResources: {nvidia.com/gpu: 2}
  labels: {pool: gpu}
crashLoopBackOff: {initialSeconds: 0.5, maxSeconds: 2}
"""
    )
    cap = policy.nodes.as_capacity()
    assert cap["cpu"] == "8"
    assert cap["memory"] == "32Gi"
    assert cap["nvidia.com/gpu"] == "2"
    assert cap["pods"] == "110"
    assert policy.nodes.labels == {"pool": "gpu"}
    assert (policy.backoff_initial, policy.backoff_max) == (0.5, 2.0)


def test_empty_file_is_an_empty_policy() -> None:
    policy = parse_policy(b"")
    assert policy.rules == ()
    assert policy.rule_for("anything").action_for("Always") == "serve"


def test_sha256_is_of_the_file_bytes(tmp_path: Path) -> None:
    import hashlib

    data = b"rules: []\n"
    path = tmp_path / "p.yaml"
    path.write_bytes(data)
    assert load_policy(str(path)).sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: [{image: '*', action: procss}]", "rules[0].action: unknown action 'procss'"),
        ("rules: [{action: succeed}]", "rules[0].image: required"),
        ("rules: [{image: 5, action: succeed}]", "rules[0].image: must be a string"),
        ("rules: [{image: '', action: succeed}]", "rules[0].image: must not be empty"),
        (
            "rules: [{image: a, action: succeed}, {image: b, action: fail, exitCode: 0}]",
            "rules[1].exitCode: must be an integer 1..255",
        ),
        ("rules: [{image: a, action: fail, exitCode: 300}]", "rules[0].exitCode"),
        ("rules: [{image: a, action: serve, readyAfter: -1}]", "rules[0].readyAfter: must be >= 0"),
        (
            "rules: [{image: a, action: serve, readyAfter: soon}]",
            "rules[0].readyAfter: must be a number",
        ),
        (
            "rules: [{image: a, action: succeed, duration: true}]",
            "rules[0].duration: must be a number",
        ),
        (
            "rules: [{image: a, action: process, entrypoint: kyklos}]",
            "rules[0].entrypoint: must be a non-empty list",
        ),
        ("rules: [{image: a, action: process, entrypoint: []}]", "rules[0].entrypoint"),
        (
            "rules: [{image: a, action: succeed, exitCode: 2}]",
            "rules[0].exitCode: not used by action succeed",
        ),
        ("rules: [{image: a, action: serve, colour: red}]", "rules[0].colour: unknown field"),
        (
            "rules: [{image: a, action: {Sometimes: serve}}]",
            "rules[0].action.Sometimes: unknown restartPolicy",
        ),
        (
            "rules: [{image: a, action: {Never: nap}}]",
            "rules[0].action.Never: unknown action 'nap'",
        ),
        (
            "rules: [{image: a, action: [serve]}]",
            "rules[0].action: must be an action name or a mapping",
        ),
        (
            "rules: [{image: a, action: fail, reason: 'not camel'}]",
            "rules[0].reason: must be CamelCase",
        ),
        (
            "rules: [{image: a, action: succeed, terminationMessage: 5}]",
            "rules[0].terminationMessage: must be a string",
        ),
        ("rules: [oops]", "rules[0]: must be a mapping"),
        ("rules: {image: a}", "rules: must be a list"),
        ("- image: a", "the policy must be a mapping"),
        ("rulez: []", "rulez: unknown field"),
        ("nodes: {cpu: lots}", "nodes.cpu: invalid quantity 'lots'"),
        ("nodes: {memory: [1]}", "nodes.memory: must be a quantity"),
        ("nodes: {gpus: 1}", "nodes.gpus: unknown field"),
        (
            "nodes: {extendedResources: {gpu: 1}}",
            "nodes.extendedResources.gpu: name must be domain-qualified",
        ),
        (
            "nodes: {extendedResources: {nvidia.com/gpu: -1}}",
            "nodes.extendedResources.nvidia.com/gpu: must be a whole number",
        ),
        ("nodes: {labels: {a: 1}}", "nodes.labels: must be a mapping of strings"),
        (
            "crashLoopBackOff: {initialSeconds: 5, maxSeconds: 1}",
            "crashLoopBackOff.maxSeconds: must be >= initialSeconds",
        ),
        ("crashLoopBackOff: {initial: 5}", "crashLoopBackOff.initial: unknown field"),
        ("rules: [{image: a\n  action: b", "invalid YAML at line"),
    ],
)
def test_malformed_policy_names_the_field_at_fault(text: str, expected: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text.encode(), "kubelet-policy.yaml")
    message = str(info.value)
    assert message.startswith("kubelet-policy.yaml: ")
    assert expected in message
    assert "\n" not in message, "one line, no traceback"


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read policy"):
        load_policy(str(tmp_path / "absent.yaml"))
