"""Reading sources: URI mapping, formats, typed batches, versions and windows."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import fsspec
import pyarrow as pa
import pytest

from kyklos.worker import io as wio

MakeTable = Callable[..., pa.Table]
Write = Callable[[pa.Table, Path, str], Path]

FEATURES: dict[str, wio.FeatureKind] = {
    "age": "numeric",
    "income": "numeric",
    "city": "categorical",
}


def _read_all(reader: wio.DataReader) -> pa.Table:
    reader.open()
    return pa.Table.from_batches(list(reader.batches()))


def test_pvc_uris_map_under_the_mount_root(pvc_root: Path) -> None:
    assert wio.resolve("pvc://data/a/b.csv").path == str(pvc_root / "data" / "a" / "b.csv")
    with pytest.raises(wio.SourceError, match="escapes the claim"):
        wio.resolve("pvc://data/../../etc/passwd")
    with pytest.raises(wio.SourceError, match="claim name"):
        wio.resolve("pvc:///x.csv")


def test_pvc_root_defaults_to_the_operator_mount(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KYKLOS_PVC_ROOT", raising=False)
    assert wio.resolve("pvc://c/x.csv").path == "/mnt/kyklos/pvc/c/x.csv"


@pytest.mark.parametrize(
    ("uri", "fmt"),
    [
        ("a/b.csv", "csv"),
        ("s3://b/k.PARQUET", "parquet"),
        ("x.pq", "parquet"),
        ("x.jsonl", "jsonl"),
        ("x.ndjson", "jsonl"),
        ("https://h/x.csv?sig=1", "csv"),
    ],
)
def test_format_comes_from_the_extension(uri: str, fmt: str) -> None:
    assert wio.format_for(uri, None) == fmt


def test_an_unknown_extension_without_a_format_is_a_format_error() -> None:
    with pytest.raises(wio.SourceError, match=r"data\.bin: cannot tell the format") as err:
        wio.format_for("data.bin", None)
    assert err.value.reason == "FormatError"
    assert wio.format_for("data.bin", "parquet") == "parquet"


def test_a_missing_cloud_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_s3fs(url: str) -> None:
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec.core, "url_to_fs", no_s3fs)
    with pytest.raises(wio.SourceError, match=r"kyklos\[s3\]") as err:
        wio.resolve("s3://bucket/data.csv")
    assert err.value.reason == "SourceUnreachable"
    with pytest.raises(wio.SourceError, match=r"kyklos\[gcs\]"):
        wio.resolve("gs://bucket/data.csv")


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_every_format_yields_the_same_typed_columns(
    tmp_path: Path, fmt: str, make_table: MakeTable, write: Write
) -> None:
    table = make_table(300, null_every=7)
    path = write(table, tmp_path / f"d.{fmt}", fmt)
    got = _read_all(wio.DataReader(str(path), FEATURES))
    assert got.column_names == ["age", "income", "city"]
    assert got.schema.field("age").type == pa.float64()
    assert got.schema.field("city").type == pa.string()
    assert got.column("city").to_pylist() == table.column("city").to_pylist()
    assert got.column("income").null_count == table.column("income").null_count
    assert got.column("age").to_pylist() == pytest.approx(table.column("age").to_pylist())


@pytest.mark.parametrize("fmt", ["csv", "parquet", "jsonl"])
def test_local_files_are_versioned_by_the_sha256_of_their_bytes(
    tmp_path: Path, fmt: str, make_table: MakeTable, write: Write
) -> None:
    path = write(make_table(50), tmp_path / f"d.{fmt}", fmt)
    reader = wio.DataReader(f"file://{path}", FEATURES)
    _read_all(reader)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert reader.version() == wio.VersionInfo(digest[:16], "sha256", f"sha256:{digest}")


def test_remote_parquet_uses_the_store_etag_or_size_and_mtime() -> None:
    class FakeFs:
        protocol = ("s3",)

        def __init__(self, info: dict[str, object]) -> None:
            self._info = info

        def info(self, path: str) -> dict[str, object]:
            return self._info

    etag = wio._store_version(wio.Location("s3://b/k", FakeFs({"ETag": '"abc"'}), "b/k"))
    assert (etag.source, etag.checksum) == ("etag", "abc")
    stamp = wio._store_version(wio.Location("s3://b/k", FakeFs({"size": 10, "mtime": 5}), "b/k"))
    assert (stamp.source, stamp.checksum) == ("size-mtime", "size=10 mtime=5")
    assert stamp.version != etag.version


def test_missing_columns_and_target_are_reported_not_read(
    tmp_path: Path, make_table: MakeTable, write: Write
) -> None:
    path = write(make_table(20).drop_columns(["income", "label"]), tmp_path / "d.csv", "csv")
    reader = wio.DataReader(str(path), FEATURES, required=("label",))
    reader.open()
    assert reader.columns == ["age", "city"]
    assert reader.missing == ["income", "label"]


def test_a_non_numeric_csv_value_names_the_feature(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("city,age,income\nx,1,2\ny,two,3\n")
    reader = wio.DataReader(str(path), FEATURES)
    reader.open()
    with pytest.raises(wio.FeatureTypeError, match="feature age: value 'two'") as err:
        list(reader.batches())
    assert err.value.feature == "age"


def test_a_non_numeric_jsonl_value_names_the_feature(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text(
        '{"age": 1, "income": 2, "city": "x"}\n{"age": "old", "income": 3, "city": "y"}\n'
    )
    reader = wio.DataReader(str(path), FEATURES)
    reader.open()
    with pytest.raises(wio.FeatureTypeError, match="feature age") as err:
        list(reader.batches())
    assert err.value.feature == "age"


def test_a_string_parquet_column_declared_numeric_must_parse(tmp_path: Path, write: Write) -> None:
    table = pa.table({"age": ["1", "x"], "income": [1.0, 2.0], "city": ["a", "b"]})
    path = write(table, tmp_path / "d.parquet", "parquet")
    reader = wio.DataReader(str(path), FEATURES)
    reader.open()
    with pytest.raises(wio.FeatureTypeError, match="feature age: values do not parse"):
        list(reader.batches())


@pytest.mark.parametrize(
    ("content", "name", "reason"),
    [
        (b"", "d.csv", "EmptySource"),
        (b"", "d.parquet", "EmptySource"),
        (b"not parquet at all", "d.parquet", "FormatError"),
        (b"[1, 2]\n", "d.jsonl", "FormatError"),
        (b"", "d.jsonl", "EmptySource"),
    ],
)
def test_empty_and_malformed_files_have_a_reason(
    tmp_path: Path, content: bytes, name: str, reason: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(wio.SourceError) as err:
        _read_all(wio.DataReader(str(path), FEATURES))
    assert err.value.reason == reason
    assert str(path) in err.value.message


def test_a_missing_file_is_unreachable_and_named(tmp_path: Path) -> None:
    with pytest.raises(wio.SourceError, match=r"nope\.csv: no such file") as err:
        wio.DataReader(str(tmp_path / "nope.csv"), FEATURES).open()
    assert err.value.reason == "SourceUnreachable"


def test_large_csv_files_stream_in_several_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_table: MakeTable, write: Write
) -> None:
    monkeypatch.setattr(wio, "BLOCK_SIZE", 4096)
    path = write(make_table(3000), tmp_path / "d.csv", "csv")
    reader = wio.DataReader(str(path), FEATURES)
    reader.open()
    batches = list(reader.batches())
    assert len(batches) > 5
    assert sum(b.num_rows for b in batches) == 3000
    assert reader.version().checksum == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_window_is_the_latest_files_by_modification_time(
    pvc_root: Path, make_table: MakeTable, write: Write
) -> None:
    folder = pvc_root / "logs" / "scoring"
    for i, name in enumerate(["c.csv", "a.csv", "b.csv", "d.txt"]):
        write(make_table(5), folder / name, "csv")
        os.utime(folder / name, (1000 + i, 1000 + i))
    assert wio.list_window("pvc://logs/scoring/*.csv", 2) == [
        "pvc://logs/scoring/a.csv",
        "pvc://logs/scoring/b.csv",
    ]
    assert wio.list_window("pvc://logs/scoring/*.csv", 10) == [
        f"pvc://logs/scoring/{n}" for n in ("a.csv", "b.csv", "c.csv")
    ]
    with pytest.raises(wio.SourceError, match="no files match") as err:
        wio.list_window("pvc://logs/scoring/*.parquet", 1)
    assert err.value.reason == "EmptySource"


@pytest.fixture
def http_dir(tmp_path: Path) -> Iterator[str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = partial(Quiet, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_sources_are_read_and_hashed(
    tmp_path: Path, http_dir: str, make_table: MakeTable, write: Write
) -> None:
    path = write(make_table(200), tmp_path / "d.csv", "csv")
    reader = wio.DataReader(f"{http_dir}/d.csv", FEATURES)
    got = _read_all(reader)
    assert got.num_rows == 200
    assert reader.version().checksum == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(wio.SourceError) as err:
        wio.DataReader(f"{http_dir}/missing.csv", FEATURES).open()
    assert err.value.reason == "SourceUnreachable"


def test_credentials_in_uris_never_reach_error_messages() -> None:
    uri = "https://alice:hunter2@example.invalid/data.csv?X-Amz-Signature=abc123&Expires=9"
    err = wio.SourceError("SourceUnreachable", f"{uri}: no such file")
    assert "hunter2" not in err.message and "abc123" not in err.message
    assert err.message == "https://***@example.invalid/data.csv?***: no such file"
    assert wio.redact("s3://bucket/key.csv and /plain/path.csv") == (
        "s3://bucket/key.csv and /plain/path.csv"
    )


def test_a_filesystem_that_cannot_connect_is_source_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Some fsspec filesystems (ftp, sftp, ...) connect when created: DNS or refused
    connections surface from url_to_fs as OSError and must not become internal errors."""

    def unreachable(uri: str, **_: object) -> object:
        raise OSError(-2, "Name or service not known")

    monkeypatch.setattr(fsspec.core, "url_to_fs", unreachable)
    with pytest.raises(wio.SourceError) as err:
        wio.resolve("https://nowhere.invalid/x.csv")
    assert err.value.reason == "SourceUnreachable"
    assert "https://nowhere.invalid/x.csv" in str(err.value)


class _DroppingFile:
    """A binary file whose connection drops at the ``fail_on``-th read (1-based)."""

    def __init__(self, data: bytes, fail_on: int) -> None:
        self._data, self._pos, self._reads, self._fail_on = data, 0, 0, fail_on

    def read(self, size: int = -1) -> bytes:
        self._reads += 1
        if self._reads >= self._fail_on:
            raise OSError(104, "Connection reset by peer")
        end = len(self._data) if size < 0 else self._pos + size
        chunk, self._pos = self._data[self._pos : end], min(end, len(self._data))
        return chunk

    def __enter__(self) -> _DroppingFile:
        return self

    def __exit__(self, *_: object) -> None:
        return None


@pytest.mark.parametrize(
    ("fmt", "stage"), [("csv", "header"), ("csv", "batches"), ("jsonl", "batches")]
)
def test_a_connection_dropped_while_reading_is_source_unreachable(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    stage: str,
    make_table: MakeTable,
    write: Write,
) -> None:
    path = write(make_table(50), tmp_path / f"d.{fmt}", fmt)
    reader = wio.DataReader(f"file://{path}", FEATURES)
    if stage == "batches":
        reader.open()
    data = path.read_bytes()
    fail_on = 1 if stage == "header" else 2  # the parser's first block arrives, then the drop
    monkeypatch.setattr(wio, "_open", lambda loc: _DroppingFile(data, fail_on))
    with pytest.raises(wio.SourceError) as err:
        if stage == "header":
            reader.open()
        else:
            list(reader.batches())
    assert err.value.reason == "SourceUnreachable"
    assert err.value.message == f"file://{path}: [Errno 104] Connection reset by peer"


@pytest.mark.parametrize(
    ("kind", "column", "message"),
    [
        (
            "numeric",
            pa.array(["1", "x"]),
            "feature f: values do not parse as numbers "
            "(Failed to parse string: 'x' as a scalar of type double)",
        ),
        (
            "categorical",
            pa.array([[1, 2], [3]]),
            "feature f: values cannot be read as categories "
            "(Unsupported cast from list<item: int64> to utf8 using function cast_string)",
        ),
    ],
)
def test_a_column_that_does_not_cast_is_a_type_error_of_its_feature(
    kind: wio.FeatureKind, column: pa.Array, message: str
) -> None:
    with pytest.raises(wio.FeatureTypeError) as err:
        wio.typed_column("f", kind, column)
    assert (err.value.feature, err.value.message) == ("f", message)
