"""KYKLOS_WORKER_POD_TEMPLATE: the operator-level pod override of worker Jobs."""

from __future__ import annotations

import json

import pytest

from kyklos.controllers.config import ConfigError, OperatorConfig, worker_config


def test_a_valid_template_reaches_the_worker_config() -> None:
    text = json.dumps({"tolerations": [{"key": "batch", "operator": "Exists"}]})
    cfg = OperatorConfig.from_env({"KYKLOS_WORKER_POD_TEMPLATE": text})
    template = worker_config(cfg).pod_template
    assert template is not None and template.tolerations is not None
    assert OperatorConfig.from_env({"KYKLOS_WORKER_POD_TEMPLATE": "{}"}).worker_pod_template is None
    assert OperatorConfig.from_env({}).worker_pod_template is None


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('{"hostNetwork": true}', "hostNetwork"),
        ('{"container": {"env": [{"name": "KYKLOS_RUN", "value": "x"}]}}', "container.env.0"),
        ("not json", "KYKLOS_WORKER_POD_TEMPLATE"),
    ],
)
def test_a_bad_template_is_refused_naming_the_variable_and_field(text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        OperatorConfig.from_env({"KYKLOS_WORKER_POD_TEMPLATE": text})
    assert str(caught.value).startswith("KYKLOS_WORKER_POD_TEMPLATE")
    assert named in str(caught.value)
