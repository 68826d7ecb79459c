"""`kyklos worker fetch-model` copies a model from a real store, or says which store failed."""

from __future__ import annotations

import functools
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from kyklos.api.modelfetch import FetchModelArgs, ModelFetchSummary
from kyklos.worker.cli import main as worker_main
from kyklos.worker.fetch_model import fetch_model


@pytest.fixture
def http_store(tmp_path: Path) -> Iterator[str]:
    """A real HTTP server on loopback serving ``tmp_path/store``."""
    root = tmp_path / "store"
    (root / "iris").mkdir(parents=True)
    (root / "iris" / "model.json").write_text('{"weights": [1, 2]}')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_args_round_trip() -> None:
    args = FetchModelArgs(uri="s3://m/iris/", dest="/mnt/kyklos/model", termination_log="/t")
    argv = args.to_argv()
    assert argv[0] == "fetch-model"
    assert FetchModelArgs.from_argv(argv[1:]) == args


def test_a_directory_is_copied_recursively(tmp_path: Path) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "model.json").write_text("{}")
    (src / "sub" / "weights.bin").write_bytes(b"\0" * 10)
    summary = fetch_model(f"file://{src}", str(tmp_path / "dest"))
    assert summary.ok and summary.files == 2 and summary.bytes == 12
    assert (tmp_path / "dest" / "sub" / "weights.bin").read_bytes() == b"\0" * 10


def test_a_file_over_http_lands_under_its_name(http_store: str, tmp_path: Path) -> None:
    summary = fetch_model(f"{http_store}/iris/model.json", str(tmp_path / "dest"))
    assert summary.ok, summary
    assert json.loads((tmp_path / "dest" / "model.json").read_text()) == {"weights": [1, 2]}


def test_the_cli_writes_the_termination_message(http_store: str, tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    argv = FetchModelArgs(
        uri=f"{http_store}/iris/model.json", dest=str(tmp_path / "d"), termination_log=str(log)
    ).to_argv()
    assert worker_main(argv) == 0
    summary = ModelFetchSummary.from_termination_message(log.read_text())
    assert summary is not None and summary.ok and summary.files == 1


def test_an_unreachable_store_fails_naming_it_without_credentials(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = tmp_path / "termination-log"
    uri = f"http://alice:s3cr3t@127.0.0.1:{port}/iris/model.json"
    argv = FetchModelArgs(uri=uri, dest=str(tmp_path / "d"), termination_log=str(log)).to_argv()
    assert worker_main(argv) == 1
    text = log.read_text()
    assert "s3cr3t" not in text
    summary = ModelFetchSummary.from_termination_message(text)
    assert summary is not None and not summary.ok
    assert summary.reason == "ModelFetchFailed"
    assert f"127.0.0.1:{port}/iris/model.json" in (summary.message or "")


def test_a_missing_model_fails(http_store: str, tmp_path: Path) -> None:
    summary = fetch_model(f"{http_store}/nope/model.json", str(tmp_path / "d"))
    assert not summary.ok and summary.reason == "ModelFetchFailed"
    assert "/nope/model.json" in (summary.message or "")
