"""Compact summaries the data-plane workers print to their termination message.

A worker (``kyklos worker profile`` / ``kyklos worker drift``) writes one JSON object, at
most ``MAX_SUMMARY_BYTES`` (4 KiB, the kubelet's termination-message limit) encoded as
UTF-8, to its termination-log file and to stdout. Controllers parse it with
``ProfileSummary.parse`` / ``DriftSummary.parse``. Keys are camelCase; unknown top-level
keys are ignored when parsing, so a newer worker may add summary fields without breaking an
older operator (the per-feature items are the status models ``FeatureSummary``,
``ValidationFailure`` and ``FeatureDrift``, which the controllers copy into status as they
are).

The full results live in the artifact store (``profileUri`` / ``reportUri``); the summary
keeps the first features in the order the worker gives them and drops the rest (and sets
``truncated``) when it would exceed the bound.

ProfileSummary (``kyklos worker profile``)::

    {"ok": true, "version": "3f2a...", "versionSource": "sha256", "checksum": "sha256:...",
     "rows": 1000, "features": [{"name": "age", "type": "numeric", "nullFraction": 0.0,
     "mean": 41.2, ...}], "profileUri": ".../profile.json", "sampleUri": ".../sample.parquet",
     "failures": [], "reason": null, "message": null, "truncated": false}

``ok`` is false when a rule failed (``reason`` ValidationFailed or SchemaMismatch,
``failures`` lists each {rule, feature, message}) or the data could not be read
(``reason`` SourceUnreachable, FormatError or EmptySource, ``message`` says why), or the
spec given to the worker was invalid (``reason`` InvalidSpec).

DriftSummary (``kyklos worker drift``)::

    {"ok": true, "driftShare": 0.4, "drifted": false, "featuresChecked": 5,
     "driftedFeatures": 2, "features": [{"name": "age", "method": "psi", "score": 0.31,
     "threshold": 0.2, "drifted": true}], "reportUri": ".../report.json",
     "reason": null, "message": null, "truncated": false}

``features`` lists drifted features first, worst first. On error ``ok`` is false and
``reason`` (see ``DriftErrorReason``) and ``message`` say what went wrong.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from kyklos.api.dataset import FeatureSummary, ValidationFailure, VersionSource
from kyklos.api.drift import FeatureDrift

#: The kubelet keeps at most 4096 bytes of a termination message.
MAX_SUMMARY_BYTES = 4096
#: Longest ``message`` kept in a summary.
MAX_MESSAGE_CHARS = 1024


class ProfileReason(StrEnum):
    """Why a profile run did not produce a usable Dataset (condition reasons)."""

    VALIDATION_FAILED = "ValidationFailed"
    SCHEMA_MISMATCH = "SchemaMismatch"
    SOURCE_UNREACHABLE = "SourceUnreachable"
    FORMAT_ERROR = "FormatError"
    EMPTY_SOURCE = "EmptySource"
    INVALID_SPEC = "InvalidSpec"
    #: The worker itself failed (an unexpected error; the message says which).
    PROFILE_JOB_FAILED = "ProfileJobFailed"


class DriftErrorReason(StrEnum):
    """Why a drift check could not produce a result."""

    SOURCE_UNREACHABLE = "SourceUnreachable"
    FORMAT_ERROR = "FormatError"
    EMPTY_SOURCE = "EmptySource"
    SCHEMA_MISMATCH = "SchemaMismatch"
    INVALID_DATA = "InvalidData"
    INVALID_SPEC = "InvalidSpec"
    #: The worker itself failed (an unexpected error; the message says which).
    CHECK_FAILED = "CheckFailed"


class _Summary(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="ignore", use_enum_values=True
    )

    ok: bool = Field(description="True when the run succeeded and the data is valid.")
    message: str | None = Field(default=None, description="What went wrong, for humans.")
    truncated: bool = Field(
        default=False, description="True when lists were cut to fit the 4 KiB bound."
    )

    @classmethod
    def parse(cls, text: str) -> Self:
        """Parse a termination message (raises pydantic.ValidationError when malformed)."""
        return cls.model_validate_json(text)

    def to_json(self) -> str:
        """Compact JSON, camelCase keys."""
        return self.model_dump_json(by_alias=True)

    def to_termination_message(self) -> str:
        """JSON of at most ``MAX_SUMMARY_BYTES`` bytes, trimming lists from the end."""
        summary = self.model_copy(deep=True)
        if summary.message is not None and len(summary.message) > MAX_MESSAGE_CHARS:
            summary.message = summary.message[: MAX_MESSAGE_CHARS - 3] + "..."
        text = summary.to_json()
        while len(text.encode()) > MAX_SUMMARY_BYTES:
            if not summary._drop_one():
                summary.message = (summary.message or "")[: MAX_MESSAGE_CHARS // 4]
                text = summary.to_json()
                break
            summary.truncated = True
            text = summary.to_json()
        return text

    def _drop_one(self) -> bool:
        """Remove the last item of the longest trimmable list; False when none is left."""
        raise NotImplementedError


class ProfileSummary(_Summary):
    """Result of ``kyklos worker profile``."""

    version: str | None = Field(default=None, description="Content version of the data.")
    version_source: VersionSource | None = Field(
        default=None, description="sha256, etag or size-mtime."
    )
    checksum: str | None = Field(
        default=None, description="sha256:<hex>, the ETag, or size/mtime, per versionSource."
    )
    rows: int | None = Field(default=None, description="Rows read.")
    features: list[FeatureSummary] = Field(
        default_factory=list, description="Compact per-feature profile."
    )
    profile_uri: str | None = Field(default=None, description="URI of the full profile JSON.")
    sample_uri: str | None = Field(
        default=None, description="URI of the reference sample (parquet)."
    )
    failures: list[ValidationFailure] = Field(
        default_factory=list, description="Each rule that failed, with the feature and why."
    )
    reason: ProfileReason | None = Field(default=None, description="Why ok is false.")

    def _drop_one(self) -> bool:
        if not self.features and not self.failures:
            return False
        if len(self.features) >= len(self.failures):
            self.features.pop()
        else:
            self.failures.pop()
        return True


class DriftSummary(_Summary):
    """Result of ``kyklos worker drift``."""

    drift_share: float | None = Field(default=None, description="Fraction of features drifted.")
    drifted: bool | None = Field(
        default=None, description="Whether driftShare reached the threshold."
    )
    features_checked: int | None = Field(default=None, description="Features compared.")
    drifted_features: int | None = Field(default=None, description="Features that drifted.")
    features: list[FeatureDrift] = Field(
        default_factory=list, description="Per-feature results, drifted and worst first."
    )
    report_uri: str | None = Field(default=None, description="URI of the full report JSON.")
    reason: DriftErrorReason | None = Field(default=None, description="Why ok is false.")

    def _drop_one(self) -> bool:
        if not self.features:
            return False
        self.features.pop()
        return True
