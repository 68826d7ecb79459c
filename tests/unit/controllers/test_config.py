"""Operator configuration from environment and flags, with errors naming the variable."""

from __future__ import annotations

import pytest

from kyklos.controllers.config import ConfigError, OperatorConfig, worker_config


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


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(None, 3600), ("30m", 1800), ("1h30m", 5400), ("90", 90), ("1500ms", 2), ("0", None)],
)
def test_worker_deadline_is_a_duration_or_seconds_and_reaches_the_worker_config(
    value: str | None, seconds: int | None
) -> None:
    env = {} if value is None else {"KYKLOS_WORKER_DEADLINE": value}
    cfg = OperatorConfig.from_env(env)
    assert cfg.worker_deadline_seconds == seconds
    assert worker_config(cfg).deadline_seconds == seconds


def test_the_worker_deadline_flag_overrides_the_env() -> None:
    cfg = OperatorConfig.from_env(
        {"KYKLOS_WORKER_DEADLINE": "2h"}, overrides={"worker_deadline_seconds": "10m"}
    )
    assert cfg.worker_deadline_seconds == 600


@pytest.mark.parametrize("value", ["soon", "-5", "1.5h", "10 m"])
def test_a_bad_worker_deadline_names_the_variable_and_the_flag(value: str) -> None:
    with pytest.raises(ConfigError, match="KYKLOS_WORKER_DEADLINE/--worker-deadline"):
        OperatorConfig.from_env({"KYKLOS_WORKER_DEADLINE": value})


def test_executor_workers_is_a_setting_with_a_documented_default() -> None:
    from kyklos.controllers.config import DEFAULT_EXECUTOR_WORKERS, ConfigError, OperatorConfig

    assert OperatorConfig.from_env({}).executor_workers == DEFAULT_EXECUTOR_WORKERS == 16
    assert OperatorConfig.from_env({"KYKLOS_EXECUTOR_WORKERS": "4"}).executor_workers == 4
    assert OperatorConfig.from_env({}, {"executor_workers": "64"}).executor_workers == 64
    for bad in ("0", "many", "1000"):
        with pytest.raises(ConfigError, match="KYKLOS_EXECUTOR_WORKERS/--executor-workers"):
            OperatorConfig.from_env({"KYKLOS_EXECUTOR_WORKERS": bad})
