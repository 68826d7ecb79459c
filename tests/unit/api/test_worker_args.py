"""The worker argv is written by the operator's builders and read by the worker from one model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kyklos.api.worker import TERMINATION_LOG, DriftArgs, ProfileArgs, WorkerArgsError


def test_profile_args_round_trip_and_omit_unset_fields() -> None:
    args = ProfileArgs(spec='{"a": 1}', namespace="ns", name="d", artifacts="file:///art")
    argv = args.to_argv()
    assert argv == [
        "profile",
        "--spec",
        '{"a": 1}',
        "--namespace",
        "ns",
        "--name",
        "d",
        "--artifacts",
        "file:///art",
        "--termination-log",
        TERMINATION_LOG,
    ]
    assert ProfileArgs.from_argv(argv[1:]) == args


def test_drift_args_round_trip_with_typed_values() -> None:
    args = DriftArgs(
        spec="{}",
        namespace="ns",
        name="m",
        artifacts="pvc://a",
        reference_profile="p",
        reference_sample="s",
        current_uri="file:///logs/*.csv",
        current_format="csv",
        window=3,
        check_id="7",
        seed=5,
    )
    parsed = DriftArgs.from_argv(args.to_argv()[1:])
    assert parsed == args and parsed.window == 3 and parsed.seed == 5


def test_a_missing_or_unknown_flag_is_named() -> None:
    with pytest.raises(WorkerArgsError, match="--check-id"):
        DriftArgs.from_argv(
            [
                *("--spec", "{}", "--namespace", "n", "--name", "m", "--artifacts", "a"),
                *("--reference-profile", "p", "--reference-sample", "s"),
            ]
        )
    with pytest.raises(WorkerArgsError, match="--bogus"):
        ProfileArgs.from_argv(
            ["--spec", "{}", "--namespace", "n", "--name", "d", "--artifacts", "a", "--bogus", "1"]
        )


def test_bad_values_are_rejected_naming_the_field() -> None:
    argv = DriftArgs(
        spec="{}",
        namespace="n",
        name="m",
        artifacts="a",
        reference_profile="p",
        reference_sample="s",
        check_id="1",
    ).to_argv()[1:]
    with pytest.raises(ValidationError, match="window"):
        DriftArgs.from_argv([*argv, "--window", "0"])
    with pytest.raises(ValidationError, match="current_format"):
        DriftArgs.from_argv([*argv, "--current-format", "xls"])


def test_the_profile_job_the_operator_builds_is_what_the_worker_parses() -> None:
    from kyklos.api.dataset import DatasetSpec
    from kyklos.logic.dataset import build_profile_job
    from kyklos.logic.workerjob import WorkerConfig

    spec = DatasetSpec.model_validate(
        {
            "source": {"uri": "file:///data/x.csv"},
            "schema": {"features": [{"name": "a", "type": "numeric"}]},
        }
    )
    body = {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "d", "namespace": "ns", "uid": "u1", "generation": 1},
    }
    config = WorkerConfig(image="kyklos:test", artifacts_uri="file:///art")
    job = build_profile_job(body, spec, generation=1, run=0, config=config)
    container = job["spec"]["template"]["spec"]["containers"][0]
    argv = [*container.get("command", []), *container.get("args", [])]
    assert argv[:3] == ["kyklos", "worker", "profile"]
    parsed = ProfileArgs.from_argv(argv[3:])
    assert (parsed.namespace, parsed.name, parsed.artifacts) == ("ns", "d", "file:///art")
    assert DatasetSpec.model_validate_json(parsed.spec) == spec
