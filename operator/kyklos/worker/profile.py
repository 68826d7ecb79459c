"""``kyklos worker profile``: validate, version and profile one Dataset source.

Contract (the Dataset controller relies on it)::

    kyklos worker profile --spec '<Dataset spec JSON>' --namespace NS --name NAME \\
        --artifacts URI [--termination-log PATH] [--seed 0]

- Parses ``--spec`` with ``kyklos.api.dataset.DatasetSpec``.
- Reads ``spec.source`` (see ``kyklos.worker.io`` for URIs, formats and versions) in
  batches; checks that every declared feature (and ``schema.target``) is present, that
  numeric features parse as numbers (categorical ones are read as strings), then the
  rules ``validation.minRows`` and ``maxNullFraction`` (per feature, overridable per
  feature).
- Writes ``<artifacts>/<ns>/Dataset/<name>/<version>/profile.json`` (the full profile,
  also when a rule failed) and, when the data is valid,
  ``<artifacts>/<ns>/Dataset/<name>/<version>/sample.parquet``: a seeded uniform sample of
  up to ``profile.sampleSize`` rows of the declared features, the reference that drift
  checks compare against.
- Prints a ``kyklos.api.reports.ProfileSummary`` (< 4 KiB JSON) to the termination log
  and stdout.

Exit status: 0 valid; 1 the data broke a rule (reason ValidationFailed, SchemaMismatch,
or EmptySource for a source with no rows); 2 the source could not be read or the spec is
invalid (reason SourceUnreachable, FormatError, InvalidSpec). Problems are reported as
one line on stderr, never a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kyklos.api.dataset import DatasetSpec, FeatureSummary, ValidationFailure
from kyklos.api.reports import ProfileReason, ProfileSummary
from kyklos.logic.profile_stats import (
    CategoricalAccumulator,
    CategoricalProfile,
    NumericAccumulator,
    NumericProfile,
)
from kyklos.worker import artifacts
from kyklos.worker.exit_status import EXIT_INVALID_DATA, EXIT_OK, EXIT_UNREADABLE
from kyklos.worker.io import DataReader, FeatureKind, FeatureTypeError, SourceError, redact
from kyklos.worker.sampling import SeededSampler


@dataclass
class ProfileRun:
    """The outcome of one profile run: the summary, the exit status and the full profile."""

    summary: ProfileSummary
    exit_code: int
    profile: dict[str, Any] | None = None
    sample: pa.Table | None = field(default=None, repr=False)


def category_counts(column: pa.Array) -> tuple[dict[str, int], int]:
    """Per-category counts of a string array (hash count) and its null count."""
    counts: dict[str, int] = {}
    struct = pc.value_counts(column)
    values = struct.field("values").to_pylist()
    numbers = struct.field("counts").to_pylist()
    for value, count in zip(values, numbers, strict=True):
        if value is not None:
            counts[value] = int(count)
    return counts, column.null_count


def numeric_values(column: pa.Array) -> np.ndarray[Any, np.dtype[np.float64]]:
    """A float64 array as NumPy, nulls as NaN (Arrow converts them so)."""
    out: np.ndarray[Any, np.dtype[np.float64]] = column.to_numpy(zero_copy_only=False)
    return out


def _failed(reason: ProfileReason, message: str, code: int) -> ProfileRun:
    return ProfileRun(ProfileSummary(ok=False, reason=reason, message=message), code)


def run_profile(
    spec: DatasetSpec, namespace: str, name: str, store: str, *, seed: int = 0
) -> ProfileRun:
    """Validate, version and profile the Dataset's source; write the artifacts."""
    kinds: dict[str, FeatureKind] = {
        f.name: "numeric" if f.type == "numeric" else "categorical" for f in spec.schema_.features
    }
    target = spec.schema_.target
    try:
        reader = DataReader(
            spec.source.uri,
            kinds,
            spec.source.format,
            required=(target,) if target else (),
        )
        reader.open()
    except SourceError as err:
        return _source_failure(err)

    failures = [
        ValidationFailure(
            rule="schema",
            feature=missing,
            message=f"{'target' if missing == target else 'feature'} {missing} "
            f"is not in {redact(spec.source.uri)}",
        )
        for missing in reader.missing
    ]
    numeric = {n: NumericAccumulator() for n in reader.columns if kinds[n] == "numeric"}
    categorical = {n: CategoricalAccumulator() for n in reader.columns if kinds[n] != "numeric"}
    sampler = SeededSampler(spec.profile.sample_size, seed)
    rows = 0
    try:
        for batch in reader.batches():
            rows += batch.num_rows
            for col_name, num_acc in numeric.items():
                num_acc.add(numeric_values(batch.column(col_name)))
            for col_name, cat_acc in categorical.items():
                cat_acc.add_counts(*category_counts(batch.column(col_name)))
            sampler.add(batch)
        version = reader.version()
    except SourceError as err:
        return _source_failure(err)
    except FeatureTypeError as err:
        failures.append(ValidationFailure(rule="type", feature=err.feature, message=err.message))
        summary = ProfileSummary(
            ok=False,
            reason=ProfileReason.SCHEMA_MISMATCH,
            message=err.message,
            failures=failures,
        )
        return ProfileRun(summary, EXIT_INVALID_DATA)

    profiles: dict[str, NumericProfile | CategoricalProfile] = {}
    for col_name, num_acc in numeric.items():
        profiles[col_name] = num_acc.finish(spec.profile.bins)
    for col_name, cat_acc in categorical.items():
        profiles[col_name] = cat_acc.finish(spec.profile.top_k)

    # Rows are counted while reading the declared columns; with none present there was
    # nothing to count, and the schema failures already say why.
    rows_known = bool(reader.columns)
    if rows_known and rows < spec.validation.min_rows:
        failures.append(
            ValidationFailure(
                rule="minRows",
                message=f"{rows} rows, fewer than validation.minRows={spec.validation.min_rows}",
            )
        )
    for feature in spec.schema_.features:
        prof = profiles.get(feature.name)
        if prof is None or rows == 0:
            continue
        limit = (
            feature.max_null_fraction
            if feature.max_null_fraction is not None
            else spec.validation.max_null_fraction
        )
        if prof.null_fraction > limit:
            failures.append(
                ValidationFailure(
                    rule="maxNullFraction",
                    feature=feature.name,
                    message=f"feature {feature.name}: null fraction {prof.null_fraction:.4g} "
                    f"exceeds {limit:g}",
                )
            )

    base = artifacts.dataset_dir(store, namespace, name, version.version)
    profile_uri = artifacts.join(base, "profile.json")
    sample_uri = artifacts.join(base, "sample.parquet")
    ok = not failures and rows > 0
    sample = sampler.table() if ok else None
    document = {
        "apiVersion": "kyklos.io/v1alpha1",
        "kind": "DatasetProfile",
        "namespace": namespace,
        "name": name,
        "source": {"uri": redact(spec.source.uri), "format": reader.format},
        "version": version.version,
        "versionSource": version.source,
        "checksum": version.checksum,
        "rows": rows if rows_known else None,
        "target": target,
        "features": [
            {"name": f.name, "type": f.type, "present": f.name in profiles}
            | (profiles[f.name].to_dict() if f.name in profiles else {})
            for f in spec.schema_.features
        ],
        "sample": {
            "uri": sample_uri if ok else None,
            "rows": sample.num_rows if sample is not None else 0,
            "seed": seed,
        },
        "failures": [f.model_dump(by_alias=True) for f in failures],
    }
    try:
        artifacts.write_json(profile_uri, document)
        if sample is not None:
            artifacts.write_parquet(sample_uri, sample)
    except SourceError as err:
        return _source_failure(err)

    if failures:
        reason = (
            ProfileReason.SCHEMA_MISMATCH
            if any(f.rule in ("schema", "type") for f in failures)
            else ProfileReason.EMPTY_SOURCE
            if rows == 0
            else ProfileReason.VALIDATION_FAILED
        )
        message = "; ".join(f.message for f in failures[:3])
    elif rows == 0:
        reason, message = ProfileReason.EMPTY_SOURCE, f"{redact(spec.source.uri)}: no rows"
    else:
        reason, message = None, None
    summary = ProfileSummary(
        ok=ok,
        version=version.version,
        version_source=version.source,
        checksum=version.checksum,
        rows=rows if rows_known else None,
        features=[_feature_summary(n, kinds[n], p) for n, p in profiles.items()],
        profile_uri=profile_uri,
        sample_uri=sample_uri if ok else None,
        failures=failures,
        reason=reason,
        message=message,
    )
    return ProfileRun(summary, EXIT_OK if ok else EXIT_INVALID_DATA, document, sample)


def _source_failure(err: SourceError) -> ProfileRun:
    reason = ProfileReason(err.reason)
    code = EXIT_INVALID_DATA if reason == ProfileReason.EMPTY_SOURCE else EXIT_UNREADABLE
    return _failed(reason, err.message, code)


def _feature_summary(
    name: str, kind: FeatureKind, prof: NumericProfile | CategoricalProfile
) -> FeatureSummary:
    if isinstance(prof, NumericProfile):
        return FeatureSummary(
            name=name,
            type=kind,
            null_fraction=prof.null_fraction,
            mean=_finite(prof.mean),
            std=_finite(prof.std),
            min=_finite(prof.min),
            max=_finite(prof.max),
        )
    return FeatureSummary(
        name=name, type=kind, null_fraction=prof.null_fraction, categories=prof.distinct
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and np.isfinite(value) else None
