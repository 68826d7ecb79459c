"""``kyklos worker drift``: compare a current window of data against a Dataset's reference.

Contract (the DriftMonitor controller relies on it)::

    kyklos worker drift --spec '<DriftMonitor spec JSON>' --namespace NS --name NAME \\
        --artifacts URI --reference-profile URI --reference-sample URI \\
        (--current-uri URI_OR_GLOB [--current-format F] [--window N] | --current-sample URI) \\
        --check-id ID [--seed 0] [--termination-log PATH]

- Parses ``--spec`` with ``kyklos.api.drift.DriftMonitorSpec``.
- Reference: the pinned Dataset version's ``profile.json`` (feature names and types) and
  ``sample.parquet``. Features checked: ``spec.features``, default every feature of the
  reference profile.
- Current: ``--current-sample`` (another Dataset's sample.parquet), or the latest
  ``--window`` files (by modification time; default ``current.source.window`` of the spec)
  matching ``--current-uri`` (default ``current.source.uri``), read in batches.
- Both sides are sampled to ``spec.sampleSize`` rows with a seeded uniform sample
  (``--seed``), so a re-run on the same data gives the same numbers.
- Every statistic of ``kyklos.logic.drift_stats`` is computed per feature; the configured
  ``method`` per feature type and its threshold decide ``drifted``; ``driftShare`` is the
  fraction of drifted features and the monitor trips at ``thresholds.driftShare``.
- Writes ``<artifacts>/<ns>/DriftMonitor/<name>/<check-id>/report.json`` and prints a
  ``kyklos.api.reports.DriftSummary`` (< 4 KiB JSON; drifted features first, worst first)
  to the termination log and stdout.

Exit status: 0 the check ran (drifted or not); 1 the data cannot be compared (reason
EmptySource: no files or no rows in the window; SchemaMismatch: a feature is missing or
has the wrong type; InvalidData: a column with no non-null values); 2 a source or artifact
could not be read, or the spec is invalid (SourceUnreachable, FormatError, InvalidSpec).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa

from kyklos.api.drift import DriftMonitorSpec, FeatureDrift
from kyklos.api.reports import DriftErrorReason, DriftSummary
from kyklos.logic import drift_stats as ds
from kyklos.worker import artifacts
from kyklos.worker.exit_status import EXIT_INVALID_DATA, EXIT_OK, EXIT_UNREADABLE
from kyklos.worker.io import (
    DataReader,
    FeatureKind,
    FeatureTypeError,
    SourceError,
    list_window,
    redact,
    typed_column,
)
from kyklos.worker.profile import category_counts, numeric_values
from kyklos.worker.sampling import SeededSampler

_CHECK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_DATA_REASONS = {
    DriftErrorReason.EMPTY_SOURCE,
    DriftErrorReason.SCHEMA_MISMATCH,
    DriftErrorReason.INVALID_DATA,
}


class DriftCheckError(Exception):
    """The check cannot produce a result; carries the summary reason."""

    def __init__(self, reason: DriftErrorReason, message: str) -> None:
        message = redact(message)
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class CurrentInput:
    """Where the current data comes from: files (URI or glob + window) or a sample."""

    uri: str | None = None
    format: str | None = None
    window: int | None = None
    sample_uri: str | None = None


@dataclass
class DriftRun:
    """The outcome of one check: summary, exit status and the full report."""

    summary: DriftSummary
    exit_code: int
    report: dict[str, Any] | None = None


def run_drift(
    spec: DriftMonitorSpec,
    namespace: str,
    name: str,
    store: str,
    *,
    reference_profile: str,
    reference_sample: str,
    current: CurrentInput,
    check_id: str,
    seed: int = 0,
) -> DriftRun:
    """Run one drift check and write its report."""
    try:
        if not _CHECK_ID.match(check_id):
            raise DriftCheckError(
                DriftErrorReason.INVALID_SPEC,
                f"--check-id {check_id!r}: use letters, digits, '.', '_' and '-'",
            )
        return _run(
            spec,
            namespace,
            name,
            store,
            reference_profile,
            reference_sample,
            current,
            check_id,
            seed,
        )
    except DriftCheckError as err:
        code = EXIT_INVALID_DATA if err.reason in _DATA_REASONS else EXIT_UNREADABLE
        return DriftRun(DriftSummary(ok=False, reason=err.reason, message=err.message), code)
    except SourceError as err:
        reason = DriftErrorReason(err.reason)
        code = EXIT_INVALID_DATA if reason in _DATA_REASONS else EXIT_UNREADABLE
        return DriftRun(DriftSummary(ok=False, reason=reason, message=err.message), code)


def _reference_kinds(profile: Any, uri: str) -> dict[str, FeatureKind]:
    try:
        return {
            str(f["name"]): "numeric" if f["type"] == "numeric" else "categorical"
            for f in profile["features"]
        }
    except (KeyError, TypeError):
        raise DriftCheckError(
            DriftErrorReason.INVALID_SPEC, f"{uri}: not a Kyklos Dataset profile"
        ) from None


def _run(
    spec: DriftMonitorSpec,
    namespace: str,
    name: str,
    store: str,
    reference_profile: str,
    reference_sample: str,
    current: CurrentInput,
    check_id: str,
    seed: int,
) -> DriftRun:
    profile = artifacts.read_json(reference_profile)
    kinds = _reference_kinds(profile, reference_profile)
    features = list(spec.features) if spec.features else list(kinds)
    unknown = [f for f in features if f not in kinds]
    if unknown:
        raise DriftCheckError(
            DriftErrorReason.SCHEMA_MISMATCH,
            f"features {', '.join(unknown)} are not in the reference Dataset's schema",
        )
    wanted = {f: kinds[f] for f in features}

    ref_table = _read_sample(reference_sample, wanted, "reference sample")
    ref_table = _subsample(ref_table, spec.sample_size, seed)
    cur_table, sources = _read_current(spec, current, wanted, seed)
    if cur_table.num_rows == 0:
        raise DriftCheckError(DriftErrorReason.EMPTY_SOURCE, "the current window has no rows")

    # The API's enums and the logic ring's Literals spell the same method names.
    method_numeric = cast(ds.NumericMethod, str(spec.method.numeric))
    method_categorical = cast(ds.CategoricalMethod, str(spec.method.categorical))
    t = spec.thresholds
    thresholds = ds.Thresholds(
        psi=t.psi,
        ks=t.ks,
        wasserstein=t.wasserstein,
        js=t.js,
        chi2=t.chi2,
        drift_share=t.drift_share,
    )
    results, details = compare_tables(
        ref_table, cur_table, wanted, method_numeric, method_categorical, thresholds
    )
    share = ds.drift_share([r.drifted for r in results])
    tripped = ds.dataset_drifted(share, thresholds)
    report_uri = artifacts.drift_report_uri(store, namespace, name, check_id)
    report = {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "DriftReport",
        "namespace": namespace,
        "name": name,
        "checkId": check_id,
        "seed": seed,
        "reference": {
            "profileUri": redact(reference_profile),
            "sampleUri": redact(reference_sample),
            "version": profile.get("version") if isinstance(profile, dict) else None,
            "rows": ref_table.num_rows,
        },
        "current": {"sources": [redact(u) for u in sources], "rows": cur_table.num_rows},
        "thresholds": _camel(thresholds.__dict__),
        "driftShare": share,
        "drifted": tripped,
        "features": [details[r.name] | {"name": r.name} for r in results],
    }
    artifacts.write_json(report_uri, report)
    summary = DriftSummary(
        ok=True,
        drift_share=share,
        drifted=tripped,
        features_checked=len(results),
        drifted_features=sum(r.drifted for r in results),
        features=[r.model_copy(update={"score": _json_float(r.score)}) for r in results],
        report_uri=report_uri,
    )
    return DriftRun(summary, EXIT_OK, report)


def compare_tables(
    ref_table: pa.Table,
    cur_table: pa.Table,
    kinds: dict[str, FeatureKind],
    method_numeric: ds.NumericMethod,
    method_categorical: ds.CategoricalMethod,
    thresholds: ds.Thresholds,
) -> tuple[list[FeatureDrift], dict[str, dict[str, Any]]]:
    """Per-feature drift of two typed tables: results (drifted and worst first) and details.

    Numeric columns are sorted once each (``drift_stats.numeric_drift``); categorical
    columns are counted with Arrow's hash-based ``value_counts``.
    """
    results: list[FeatureDrift] = []
    details: dict[str, dict[str, Any]] = {}
    for feature, kind in kinds.items():
        try:
            if kind == "numeric":
                num = ds.numeric_drift(
                    numeric_values(_column(ref_table, feature)),
                    numeric_values(_column(cur_table, feature)),
                    ks_pvalue=method_numeric == "ks",
                )
                method: ds.Method = method_numeric
                score = num.score(method_numeric)
                details[feature] = {"type": kind} | _camel(num.__dict__)
            else:
                ref_counts, ref_nulls = category_counts(_column(ref_table, feature))
                cur_counts, cur_nulls = category_counts(_column(cur_table, feature))
                cat = ds.categorical_drift(
                    ref_counts, cur_counts, reference_nulls=ref_nulls, current_nulls=cur_nulls
                )
                method = method_categorical
                score = cat.score(method_categorical)
                details[feature] = {"type": kind} | _camel(cat.__dict__)
        except ds.DriftInputError as err:
            raise DriftCheckError(
                DriftErrorReason.INVALID_DATA, f"feature {feature}: {err}"
            ) from None
        threshold = thresholds.for_method(method)
        drifted = ds.is_drifted(method, score, threshold)
        results.append(
            FeatureDrift(
                name=feature, method=method, score=score, threshold=threshold, drifted=drifted
            )
        )
        details[feature] |= {
            "method": method,
            "score": score,
            "threshold": threshold,
            "drifted": drifted,
        }
    results.sort(key=lambda r: (not r.drifted, -_severity(r), r.name))
    return results, details


def _severity(result: FeatureDrift) -> float:
    """How far past (or short of) its threshold a score is; larger is worse."""
    score, threshold = result.score or 0.0, result.threshold or 0.0
    if result.method in ds.P_VALUE_METHODS:
        return threshold / max(score, 1e-300)
    return score / threshold if threshold > 0 else score


def _json_float(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _camel(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        head, *rest = key.split("_")
        out[head + "".join(p.title() for p in rest)] = value
    return out


def _column(table: pa.Table, name: str) -> pa.Array:
    column = table.column(name)
    if isinstance(column, pa.ChunkedArray):
        # combine_chunks copies even a single chunk
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


def _typed_table(table: pa.Table, kinds: dict[str, FeatureKind], what: str) -> pa.Table:
    missing = [f for f in kinds if f not in table.column_names]
    if missing:
        raise DriftCheckError(
            DriftErrorReason.SCHEMA_MISMATCH, f"{what} lacks feature(s) {', '.join(missing)}"
        )
    try:
        arrays = [typed_column(f, k, table.column(f)) for f, k in kinds.items()]
    except FeatureTypeError as err:
        raise DriftCheckError(DriftErrorReason.SCHEMA_MISMATCH, f"{what}: {err.message}") from None
    return pa.Table.from_arrays(arrays, names=list(kinds))


def _read_sample(uri: str, kinds: dict[str, FeatureKind], what: str) -> pa.Table:
    table = artifacts.read_parquet(uri)
    return _typed_table(table, kinds, f"{what} {uri}")


def _subsample(table: pa.Table, k: int, seed: int) -> pa.Table:
    if table.num_rows <= k:
        return table
    sampler = SeededSampler(k, seed)
    sampler.add(table)
    return sampler.table()


def _read_current(
    spec: DriftMonitorSpec, current: CurrentInput, kinds: dict[str, FeatureKind], seed: int
) -> tuple[pa.Table, list[str]]:
    if current.sample_uri:
        table = _read_sample(current.sample_uri, kinds, "current sample")
        return _subsample(table, spec.sample_size, seed), [current.sample_uri]
    source = spec.current.source
    uri = current.uri or (source.uri if source else None)
    if not uri:
        raise DriftCheckError(
            DriftErrorReason.INVALID_SPEC,
            "no current data: pass --current-uri or --current-sample (spec.current.source unset)",
        )
    window = current.window or (source.window if source else 1)
    fmt = current.format or (source.format if source else None)
    files = list_window(uri, window)
    sampler = SeededSampler(spec.sample_size, seed)
    schema = pa.schema(
        [(f, pa.float64() if k == "numeric" else pa.string()) for f, k in kinds.items()]
    )
    for file_uri in files:
        reader = DataReader(file_uri, kinds, fmt)
        reader.open()
        if reader.missing:
            raise DriftCheckError(
                DriftErrorReason.SCHEMA_MISMATCH,
                f"{file_uri} lacks feature(s) {', '.join(reader.missing)}",
            )
        try:
            for batch in reader.batches():
                sampler.add(batch.select(list(kinds)))
        except FeatureTypeError as err:
            raise DriftCheckError(
                DriftErrorReason.SCHEMA_MISMATCH, f"{file_uri}: {err.message}"
            ) from None
    return sampler.table(schema), files
