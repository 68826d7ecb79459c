"""Reading data for the workers: URIs through fsspec, csv/parquet/jsonl in batches.

URIs:

- ``/abs/path`` and ``file:///abs/path``: the local filesystem.
- ``pvc://<claim>/<path>``: ``$KYKLOS_PVC_ROOT/<claim>/<path>`` (default root
  ``/mnt/kyklos/pvc``), where the operator mounts each claim into the worker pod.
- ``s3://bucket/key`` and ``gs://bucket/key``: need the ``s3`` / ``gcs`` extras (s3fs,
  gcsfs); credentials come from the environment (AWS_ACCESS_KEY_ID, ...,
  GOOGLE_APPLICATION_CREDENTIALS), which fsspec reads. They are never logged.
- ``https://`` / ``http://``: plain GET (aiohttp).

Formats: ``csv`` (header row), ``parquet``, ``jsonl`` (one JSON object per line); taken
from the extension when not given (``.csv``, ``.tsv`` is not supported; ``.parquet``,
``.pq``; ``.jsonl``, ``.ndjson``, ``.json``).

Only the declared features are read, as typed columns: numeric -> float64 (null -> NaN
downstream), categorical -> string (any scalar becomes its string form). Files are read in
batches (CSV and JSONL in 4 MiB blocks, parquet by row group), never all at once.

Version: CSV and JSONL are read front to back, so the worker hashes the bytes as they pass
(``versionSource: sha256``). Parquet is read by random access; a local parquet file is
hashed in a separate pass (``sha256``); a remote one uses the store's ETag (``etag``) or,
without one, its size and modification time (``size-mtime``).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import posixpath
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

# Re-exported: the workers import redact from here.
from kyklos.logic.redaction import redact as redact

FeatureKind = Literal["numeric", "categorical"]
Format = Literal["csv", "parquet", "jsonl"]

PVC_ROOT_ENV = "KYKLOS_PVC_ROOT"
DEFAULT_PVC_ROOT = "/mnt/kyklos/pvc"
BLOCK_SIZE = 4 << 20
PARQUET_BATCH_ROWS = 1 << 17
_HASH_CHUNK = 8 << 20

_EXTENSIONS: dict[str, Format] = {
    ".csv": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
_EXTRAS = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}


class SourceError(Exception):
    """The data cannot be read; ``reason`` is SourceUnreachable, FormatError or EmptySource.

    The message is redacted (see ``redact``): it ends up in status, Events and logs.
    """

    def __init__(self, reason: str, message: str) -> None:
        message = redact(message)
        super().__init__(message)
        self.reason = reason
        self.message = message


class FeatureTypeError(Exception):
    """A declared feature's values do not have the declared type."""

    def __init__(self, feature: str, message: str) -> None:
        super().__init__(message)
        self.feature = feature
        self.message = message


@dataclass(frozen=True)
class VersionInfo:
    """Content version of a source and how it was obtained."""

    version: str
    source: Literal["sha256", "etag", "size-mtime"]
    checksum: str


@dataclass(frozen=True)
class Location:
    """A URI resolved to an fsspec filesystem and a path on it."""

    uri: str
    fs: Any
    path: str

    @property
    def is_local(self) -> bool:
        """Whether the path is on the local filesystem."""
        protocol = self.fs.protocol
        protocols = (protocol,) if isinstance(protocol, str) else tuple(protocol)
        return "file" in protocols or "local" in protocols


def pvc_root() -> Path:
    """Where the operator mounts claims into the worker pod."""
    return Path(os.environ.get(PVC_ROOT_ENV, DEFAULT_PVC_ROOT))


def local_path_for_pvc(uri: str) -> str:
    """``pvc://<claim>/<path>`` -> ``$KYKLOS_PVC_ROOT/<claim>/<path>``."""
    rest = uri[len("pvc://") :]
    claim, _, inner = rest.partition("/")
    if not claim:
        raise SourceError("SourceUnreachable", f"{uri}: a pvc:// URI needs a claim name")
    if ".." in inner.split("/"):
        raise SourceError("SourceUnreachable", f"{uri}: path escapes the claim ('..')")
    inner_norm = posixpath.normpath("/" + inner).lstrip("/")
    return (
        str(pvc_root() / claim / inner_norm)
        if inner_norm not in ("", ".")
        else str(pvc_root() / claim)
    )


def resolve(uri: str) -> Location:
    """Map a URI to an fsspec filesystem and path (pvc:// mapped to the mount root)."""
    if uri.startswith("pvc://"):
        return Location(uri, fsspec.filesystem("file"), local_path_for_pvc(uri))
    protocol = uri.split("://", 1)[0] if "://" in uri else "file"
    if protocol in _EXTRAS:
        try:
            fs, path = fsspec.core.url_to_fs(uri)
        except ImportError as err:
            extra = _EXTRAS[protocol]
            raise SourceError(
                "SourceUnreachable",
                f"{uri}: reading {protocol}:// needs the '{extra}' extra "
                f"(pip install 'kyklos[{extra}]'): {err}",
            ) from None
        return Location(uri, fs, path)
    try:
        # Some filesystems connect when created: DNS or refused connections are OSErrors.
        with _unreachable_on_os_error(uri):
            fs, path = fsspec.core.url_to_fs(uri)
    except (ValueError, ImportError) as err:
        raise SourceError("SourceUnreachable", f"{uri}: unsupported URI ({err})") from None
    return Location(uri, fs, path)


def format_for(uri: str, declared: str | None) -> Format:
    """The declared format, or the one the URI's extension implies."""
    if declared:
        if declared not in ("csv", "parquet", "jsonl"):
            raise SourceError("FormatError", f"{uri}: unknown format {declared!r}")
        return cast(Format, declared)
    name = uri.split("?", 1)[0].lower()
    for ext, fmt in _EXTENSIONS.items():
        if name.endswith(ext):
            return fmt
    raise SourceError(
        "FormatError",
        f"{uri}: cannot tell the format from the extension; set format (csv, parquet, jsonl)",
    )


def describe_error(err: BaseException) -> str:
    """The first line of an exception's message (never a traceback)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _open(loc: Location) -> Any:
    try:
        return loc.fs.open(loc.path, "rb")
    except FileNotFoundError:
        raise SourceError("SourceUnreachable", f"{loc.uri}: no such file") from None
    except IsADirectoryError:
        raise SourceError("SourceUnreachable", f"{loc.uri}: is a directory") from None
    except PermissionError:
        raise SourceError("SourceUnreachable", f"{loc.uri}: permission denied") from None
    except (OSError, ValueError) as err:
        raise SourceError("SourceUnreachable", f"{loc.uri}: {describe_error(err)}") from None


@contextmanager
def _unreachable_on_os_error(uri: str) -> Iterator[None]:
    """Report an I/O failure while reading an open file as SourceUnreachable."""
    try:
        yield
    except OSError as err:
        raise SourceError("SourceUnreachable", f"{uri}: {describe_error(err)}") from None


class _HashingReader(io.RawIOBase):
    """A read-only stream that feeds every byte it returns into sha256."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self._inner = inner
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        data: bytes = self._inner.read(-1 if size is None else size)
        self.sha256.update(data)
        self.bytes_read += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def drain(self) -> None:
        """Hash whatever the parser did not need (trailing bytes)."""
        while self.read(_HASH_CHUNK):
            pass


def _version_from_sha(digest: str) -> VersionInfo:
    return VersionInfo(version=digest[:16], source="sha256", checksum=f"sha256:{digest}")


def _hash_file(loc: Location) -> VersionInfo:
    """The sha256 version of a whole file, read in a pass of its own."""
    sha = hashlib.sha256()
    with _open(loc) as f:
        while chunk := f.read(_HASH_CHUNK):
            sha.update(chunk)
    return _version_from_sha(sha.hexdigest())


def _store_version(loc: Location) -> VersionInfo:
    """ETag when the store has one, else size and modification time."""
    try:
        info = loc.fs.info(loc.path)
    except (OSError, ValueError) as err:
        raise SourceError("SourceUnreachable", f"{loc.uri}: {describe_error(err)}") from None
    for key in ("ETag", "etag", "md5Hash", "md5"):
        if info.get(key):
            etag = str(info[key]).strip('"')
            digest = hashlib.sha256(etag.encode()).hexdigest()
            return VersionInfo(version=digest[:16], source="etag", checksum=etag)
    mtime = next(
        (info[k] for k in ("mtime", "LastModified", "updated", "last_modified") if info.get(k)),
        "",
    )
    stamp = f"size={info.get('size')} mtime={mtime}"
    return VersionInfo(
        version=hashlib.sha256(stamp.encode()).hexdigest()[:16],
        source="size-mtime",
        checksum=stamp,
    )


def typed_column(name: str, kind: FeatureKind, column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Cast one column to float64 (numeric) or string (categorical)."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if kind == "numeric":
        if pa.types.is_floating(arr.type) and arr.type == pa.float64():
            return arr
        if not (
            pa.types.is_integer(arr.type)
            or pa.types.is_floating(arr.type)
            or pa.types.is_decimal(arr.type)
            or pa.types.is_boolean(arr.type)
            or pa.types.is_string(arr.type)
            or pa.types.is_large_string(arr.type)
            or pa.types.is_null(arr.type)
        ):
            raise FeatureTypeError(name, f"feature {name}: type {arr.type} is not numeric")
        return _cast_feature(name, arr, pa.float64(), "values do not parse as numbers")
    if pa.types.is_string(arr.type):
        return arr
    return _cast_feature(name, arr, pa.string(), "values cannot be read as categories")


def _cast_feature(name: str, arr: pa.Array, to: pa.DataType, failure: str) -> pa.Array:
    """Cast one feature's column; a value that does not cast is the feature's type error."""
    try:
        return pc.cast(arr, to)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as err:
        raise FeatureTypeError(name, f"feature {name}: {failure} ({describe_error(err)})") from None


class DataReader:
    """Reads the declared features of one file in typed batches.

    ``open()`` finds which declared features are missing; ``batches()`` yields record
    batches holding the present ones; ``version()`` is valid once the batches are consumed.
    """

    def __init__(
        self,
        uri: str,
        features: Mapping[str, FeatureKind],
        fmt: str | None = None,
        *,
        required: tuple[str, ...] = (),
    ) -> None:
        self.uri = uri
        self.features = dict(features)
        self.required = required
        self.format: Format = format_for(uri, fmt)
        self.location = resolve(uri)
        self.columns: list[str] = []
        self.missing: list[str] = []
        self._file_columns: list[str] = []
        self._version: VersionInfo | None = None

    # -- discovery ---------------------------------------------------------------------

    def open(self) -> None:
        """Read the header (CSV), footer (parquet) or first record (JSONL)."""
        names = {
            "csv": self._csv_header,
            "parquet": self._parquet_columns,
            "jsonl": self._jsonl_keys,
        }[self.format]()
        self._file_columns = names
        wanted = [*self.features, *(r for r in self.required if r not in self.features)]
        self.columns = [n for n in self.features if n in names]
        self.missing = [n for n in wanted if n not in names]

    def _csv_header(self) -> list[str]:
        with _open(self.location) as f, _unreachable_on_os_error(self.uri):
            head = f.read(1 << 20)
        if not head.strip():
            raise SourceError("EmptySource", f"{self.uri}: the file is empty")
        first = head.split(b"\n", 1)[0].rstrip(b"\r")
        try:
            return next(csv.reader([first.decode("utf-8-sig")]))
        except (UnicodeDecodeError, csv.Error, StopIteration) as err:
            raise SourceError(
                "FormatError", f"{self.uri}: the first line is not a CSV header ({err})"
            ) from None

    def _parquet_columns(self) -> list[str]:
        with _open(self.location) as f:
            try:
                schema = pq.ParquetFile(f).schema_arrow
            except (pa.ArrowInvalid, OSError) as err:
                size = self._size()
                if size == 0:
                    raise SourceError("EmptySource", f"{self.uri}: the file is empty") from None
                raise SourceError(
                    "FormatError", f"{self.uri}: not a parquet file ({describe_error(err)})"
                ) from None
        return list(schema.names)

    def _jsonl_keys(self) -> list[str]:
        with _open(self.location) as f:
            keys: list[str] = []
            for raw in f:
                line = raw.strip()
                if not line:
                    continue
                try:
                    record = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError) as err:
                    raise SourceError(
                        "FormatError", f"{self.uri}: line 1 is not JSON ({err})"
                    ) from None
                if not isinstance(record, dict):
                    raise SourceError("FormatError", f"{self.uri}: line 1 is not a JSON object")
                keys = list(record)
                break
            else:
                raise SourceError("EmptySource", f"{self.uri}: the file is empty")
        # A key absent from the first record may still appear later; JSONL has no header.
        return keys + [n for n in self.features if n not in keys]

    def _size(self) -> int | None:
        try:
            size = self.location.fs.size(self.location.path)
        except (OSError, ValueError):
            return None
        return int(size) if size is not None else None

    # -- reading -----------------------------------------------------------------------

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Typed batches of the present declared features."""
        if not self.columns:
            return iter(())
        return {
            "csv": self._csv_batches,
            "parquet": self._parquet_batches,
            "jsonl": self._jsonl_batches,
        }[self.format]()

    @contextmanager
    def _hashed_stream(self) -> Iterator[_HashingReader]:
        """The file as a stream hashed as the parser reads it; stamps the version at the end.

        An OSError while the body reads is SourceUnreachable. The version is set only when
        the body ran to the end (a parser error or an abandoned generator leaves it unset).
        """
        with _open(self.location) as raw:
            stream = _HashingReader(raw)
            with _unreachable_on_os_error(self.uri):
                yield stream
            stream.drain()
            self._version = _version_from_sha(stream.sha256.hexdigest())

    @staticmethod
    def _arrow_type(kind: FeatureKind) -> pa.DataType:
        return pa.float64() if kind == "numeric" else pa.string()

    def _typed(self, table: pa.Table | pa.RecordBatch) -> pa.RecordBatch:
        arrays = [typed_column(n, self.features[n], table.column(n)) for n in self.columns]
        return pa.RecordBatch.from_arrays(arrays, names=self.columns)

    def _csv_batches(self) -> Iterator[pa.RecordBatch]:
        types = {n: self._arrow_type(self.features[n]) for n in self.columns}
        with self._hashed_stream() as stream:
            try:
                reader = pa_csv.open_csv(
                    stream,
                    read_options=pa_csv.ReadOptions(block_size=BLOCK_SIZE),
                    convert_options=pa_csv.ConvertOptions(
                        column_types=types,
                        include_columns=self.columns,
                        strings_can_be_null=True,
                    ),
                )
                yield from reader
            except pa.ArrowInvalid as err:
                raise self._csv_error(err) from None

    def _csv_error(self, err: pa.ArrowInvalid) -> Exception:
        text = describe_error(err)
        match = re.search(r"conversion error to (\w+): invalid value '([^']*)'", text)
        column = re.search(r"In CSV column #(\d+)", text)
        row = re.search(r"Row #(\d+)", text)
        if match and column:
            idx = int(column.group(1))
            # pyarrow numbers columns as they are in the file, not among the included ones.
            name = self._file_columns[idx] if idx < len(self._file_columns) else f"#{idx}"
            where = f" at row {int(row.group(1)) - 1}" if row else ""
            return FeatureTypeError(
                name, f"feature {name}: value {match.group(2)!r}{where} is not a number"
            )
        return SourceError("FormatError", f"{self.uri}: malformed CSV ({text})")

    def _parquet_batches(self) -> Iterator[pa.RecordBatch]:
        with _open(self.location) as f:
            try:
                pfile = pq.ParquetFile(f)
                for batch in pfile.iter_batches(
                    batch_size=PARQUET_BATCH_ROWS, columns=self.columns
                ):
                    yield self._typed(batch)
            except (pa.ArrowInvalid, OSError) as err:
                raise SourceError(
                    "FormatError", f"{self.uri}: unreadable parquet ({describe_error(err)})"
                ) from None
        self._version = self._parquet_version()

    def _parquet_version(self) -> VersionInfo:
        if not self.location.is_local:
            return _store_version(self.location)
        return _hash_file(self.location)

    def _jsonl_batches(self) -> Iterator[pa.RecordBatch]:
        # Parse every declared column as a string-or-number-agnostic type: read with
        # inference restricted to the declared fields, then cast per feature.
        schema = pa.schema([(n, self._arrow_type(self.features[n])) for n in self.columns])
        with self._hashed_stream() as stream:
            try:
                reader = pa_json.open_json(
                    stream,
                    read_options=pa_json.ReadOptions(block_size=BLOCK_SIZE),
                    parse_options=pa_json.ParseOptions(
                        explicit_schema=schema, unexpected_field_behavior="ignore"
                    ),
                )
                for batch in reader:
                    yield self._typed(batch)
            except pa.ArrowInvalid as err:
                raise self._jsonl_error(err) from None

    def _jsonl_error(self, err: pa.ArrowInvalid) -> Exception:
        text = describe_error(err)
        column = re.search(r"Column\(/([^)]*)\)", text)
        if column and column.group(1) in self.features:
            name = column.group(1)
            want = "a number" if self.features[name] == "numeric" else "a string"
            return FeatureTypeError(name, f"feature {name}: a value is not {want} ({text})")
        return SourceError("FormatError", f"{self.uri}: malformed JSON lines ({text})")

    def version(self) -> VersionInfo:
        """The content version (after ``batches()`` was consumed, or from the store)."""
        if self._version is None:
            if self.format == "parquet":
                self._version = self._parquet_version()
            else:
                # Nothing was read (no declared column present): hash the file anyway.
                self._version = _hash_file(self.location)
        return self._version


def list_window(uri_or_glob: str, window: int) -> list[str]:
    """The latest ``window`` files (by modification time) matching a URI or glob, as URIs."""
    loc = resolve(uri_or_glob)
    try:
        paths = sorted(loc.fs.glob(loc.path)) if fsspec_has_magic(loc.path) else [loc.path]
        infos = [(p, loc.fs.info(p)) for p in paths]
    except FileNotFoundError:
        infos = []
    except (OSError, ValueError) as err:
        raise SourceError("SourceUnreachable", f"{uri_or_glob}: {describe_error(err)}") from None
    files = [(p, i) for p, i in infos if i.get("type") != "directory"]
    if not files:
        raise SourceError("EmptySource", f"{uri_or_glob}: no files match")

    def mtime(info: Mapping[str, Any]) -> float:
        for key in ("mtime", "LastModified", "updated", "created"):
            value = info.get(key)
            if value is None:
                continue
            if hasattr(value, "timestamp"):
                return float(value.timestamp())
            try:
                return float(value)
            except (TypeError, ValueError):
                continue
        return 0.0

    # Newest first; the path breaks ties so the window is deterministic.
    files.sort(key=lambda pi: (-mtime(pi[1]), pi[0]))
    chosen = sorted(p for p, _ in files[:window])
    return [_to_uri(uri_or_glob, loc, p) for p in chosen]


def fsspec_has_magic(path: str) -> bool:
    """Whether a path contains glob characters."""
    return any(c in path for c in "*?[")


def _to_uri(original: str, loc: Location, path: str) -> str:
    """Turn a path the filesystem returned back into a URI of the original's kind."""
    if original.startswith("pvc://"):
        rel = os.path.relpath(path, pvc_root())
        return f"pvc://{rel}"
    if loc.is_local:
        return path
    unstrip = getattr(loc.fs, "unstrip_protocol", None)
    return str(unstrip(path)) if unstrip else path
