"""The operator's preflight: missing CRDs, unreachable APIs and taken ports are one clear line."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from kyklos.cli import main
from kyklos.controllers import client, operator


def test_missing_crds_name_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_call(method: str, path: str, **_: Any) -> Any:
        raise ApiException(status=404, reason="Not Found")

    monkeypatch.setattr(client, "_call", fake_call)
    with pytest.raises(
        operator.PreflightError, match=r"CRDs are not installed.*kubectl apply -f crds/"
    ):
        operator.preflight(())


def test_denied_reviews_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_call(method: str, path: str, body: Any = None, **_: Any) -> Any:
        if method == "GET":
            return {"kind": "APIResourceList"}
        attrs = body["spec"]["resourceAttributes"]
        return {"status": {"allowed": attrs["verb"] != "patch"}}

    monkeypatch.setattr(client, "_call", fake_call)
    with pytest.raises(operator.PreflightError) as err:
        operator.preflight(("team-a",))
    message = str(err.value)
    assert message.startswith("missing permissions: ")
    assert "patch datasets/status.kyklos.io in namespace team-a" in message
    assert "list" not in message


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 something else is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_listen_problem_names_the_taken_port_and_the_flag_that_picks_it(taken_port: int) -> None:
    metrics = operator.RunOptions(metrics_port=taken_port, liveness=None)
    assert operator.listen_problem(metrics) == (
        f"cannot listen on 0.0.0.0:{taken_port} for metrics "
        "(--metrics-port; KYKLOS_METRICS_PORT with make run): address already in use"
    )
    liveness = operator.RunOptions(
        metrics_port=0, liveness=f"http://127.0.0.1:{taken_port}/healthz"
    )
    assert operator.listen_problem(liveness) == (
        f"cannot listen on 127.0.0.1:{taken_port} for the liveness endpoint "
        "(--liveness; KYKLOS_HEALTH_PORT with make run): address already in use"
    )


@pytest.mark.parametrize(
    ("metrics_port", "liveness", "problem"),
    [
        (0, None, None),  # nothing to serve
        (70000, None, "--metrics-port 70000: not a port (1-65535, or 0 for none)"),
        (0, "https://0.0.0.0:8081/healthz", "only http:// endpoints are served"),
        (0, "http://0.0.0.0:99999/healthz", "--liveness http://0.0.0.0:99999/healthz: "),
    ],
)
def test_listen_problem_rejects_what_no_server_could_listen_on(
    metrics_port: int, liveness: str | None, problem: str | None
) -> None:
    found = operator.listen_problem(
        operator.RunOptions(metrics_port=metrics_port, liveness=liveness)
    )
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_run_exits_2_with_one_line_when_a_port_is_taken(
    taken_port: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\n")
    code = main(
        [
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--metrics-port",
            "0",
            "--liveness",
            f"http://127.0.0.1:{taken_port}/healthz",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"kyklos run: cannot listen on 127.0.0.1:{taken_port} for the liveness endpoint "
        "(--liveness; KYKLOS_HEALTH_PORT with make run): address already in use"
    ]
