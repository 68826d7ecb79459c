"""Operator configuration from environment and flags, with errors naming the variable."""

from __future__ import annotations

import pytest

from kyklos.controllers.config import ConfigError, OperatorConfig


def test_defaults() -> None:
    cfg = OperatorConfig.from_env({})
    assert cfg.artifacts_uri == "pvc://kyklos-artifacts"
    assert cfg.worker_image.startswith("ghcr.io/kyklos/kyklos:")
    assert cfg.worker_resources["requests"]["cpu"] == "100m"


def test_worker_image_defaults_to_the_operator_image() -> None:
    assert OperatorConfig.from_env({"KYKLOS_OPERATOR_IMAGE": "reg/k:1"}).worker_image == "reg/k:1"


def test_flags_override_env() -> None:
    cfg = OperatorConfig.from_env(
        {"KYKLOS_ARTIFACTS_URI": "s3://a"},
        overrides={"artifacts_uri": "file:///x", "log_level": None},
    )
    assert cfg.artifacts_uri == "file:///x"
    assert cfg.log_level == "info"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"KYKLOS_LOG_LEVEL": "loud"}, "KYKLOS_LOG_LEVEL"),
        ({"KYKLOS_LOG_FORMAT": "xml"}, "KYKLOS_LOG_FORMAT"),
        ({"KYKLOS_WORKER_RESOURCES": "{nope"}, "KYKLOS_WORKER_RESOURCES"),
        ({"KYKLOS_WORKER_RESOURCES": '{"cpu": 1}'}, "KYKLOS_WORKER_RESOURCES"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        OperatorConfig.from_env(env)
