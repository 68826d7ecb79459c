"""Writing and reading worker artifacts (JSON, parquet) under the artifact store URI.

The store is any URI ``kyklos.worker.io.resolve`` understands (``pvc://`` maps to the
claim's mount). Layout, relative to the store root::

    <ns>/Dataset/<name>/<version>/profile.json      full profile
    <ns>/Dataset/<name>/<version>/sample.parquet    seeded reference sample
    <ns>/DriftMonitor/<name>/<check-id>/report.json full drift report

Local writes go to a temporary file first and are renamed into place, so a reader never
sees half an artifact.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kyklos.worker.io import SourceError, describe_error, resolve


def join(base: str, *parts: str) -> str:
    """Join a store URI and path segments with single slashes."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def dataset_dir(store: str, namespace: str, name: str, version: str) -> str:
    """Where a Dataset version's profile and sample live."""
    return join(store, namespace, "Dataset", name, version)


def drift_report_uri(store: str, namespace: str, name: str, check_id: str) -> str:
    """Where one drift check's report lives."""
    return join(store, namespace, "DriftMonitor", name, check_id, "report.json")


def _write_bytes(uri: str, data: bytes) -> None:
    loc = resolve(uri)
    try:
        if loc.is_local:
            directory = os.path.dirname(loc.path)
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, loc.path)
            except BaseException:
                os.unlink(tmp)
                raise
        else:
            with loc.fs.open(loc.path, "wb") as f:
                f.write(data)
    except OSError as err:
        raise SourceError(
            "SourceUnreachable", f"{uri}: cannot write artifact ({describe_error(err)})"
        ) from None


def finite_or_none(document: Any) -> Any:
    """A copy of a JSON-like document with NaN and infinities replaced by null."""
    if isinstance(document, float):
        return document if math.isfinite(document) else None
    if isinstance(document, dict):
        return {k: finite_or_none(v) for k, v in document.items()}
    if isinstance(document, list | tuple):
        return [finite_or_none(v) for v in document]
    return document


def write_json(uri: str, document: Any) -> None:
    """Write a JSON document; NaN and infinities become null (JSON has neither)."""
    _write_bytes(uri, json.dumps(finite_or_none(document), indent=1, allow_nan=False).encode())


def write_parquet(uri: str, table: pa.Table) -> None:
    """Write a table as parquet (zstd)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    _write_bytes(uri, sink.getvalue().to_pybytes())


def read_json(uri: str) -> Any:
    """Read a JSON artifact."""
    loc = resolve(uri)
    try:
        with loc.fs.open(loc.path, "rb") as f:
            return json.loads(f.read())
    except FileNotFoundError:
        raise SourceError("SourceUnreachable", f"{uri}: no such artifact") from None
    except (OSError, ValueError) as err:
        raise SourceError(
            "FormatError", f"{uri}: unreadable JSON ({describe_error(err)})"
        ) from None


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    """Read a parquet artifact (optionally only some columns)."""
    loc = resolve(uri)
    try:
        with loc.fs.open(loc.path, "rb") as f:
            return pq.read_table(f, columns=columns)
    except FileNotFoundError:
        raise SourceError("SourceUnreachable", f"{uri}: no such artifact") from None
    except (OSError, pa.ArrowInvalid) as err:
        raise SourceError(
            "FormatError", f"{uri}: unreadable parquet ({describe_error(err)})"
        ) from None
