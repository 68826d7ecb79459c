"""Worker summaries: stable camelCase JSON, round-trip, and the 4 KiB bound."""

from __future__ import annotations

import json

from kyklos.api.dataset import FeatureSummary, ValidationFailure
from kyklos.api.drift import FeatureDrift
from kyklos.api.reports import MAX_SUMMARY_BYTES, DriftSummary, ProfileSummary


def _profile(n_features: int, n_failures: int = 0) -> ProfileSummary:
    return ProfileSummary(
        ok=n_failures == 0,
        version="0123456789abcdef",
        version_source="sha256",
        checksum="sha256:" + "0" * 64,
        rows=1000,
        features=[
            FeatureSummary(
                name=f"feature_number_{i}",
                type="numeric",
                null_fraction=0.01,
                mean=1.5,
                std=0.25,
                min=-3.0,
                max=7.0,
            )
            for i in range(n_features)
        ],
        profile_uri="pvc://artifacts/ns/Dataset/d/0123456789abcdef/profile.json",
        failures=[
            ValidationFailure(rule="maxNullFraction", feature=f"f{i}", message="too many nulls")
            for i in range(n_failures)
        ],
        reason="ValidationFailed" if n_failures else None,
    )


def test_profile_summary_uses_the_documented_camel_case_keys() -> None:
    data = json.loads(_profile(1, 1).to_termination_message())
    assert {
        "ok",
        "version",
        "versionSource",
        "checksum",
        "rows",
        "features",
        "profileUri",
        "sampleUri",
        "failures",
        "reason",
        "message",
        "truncated",
    } <= set(data)
    assert data["versionSource"] == "sha256"
    assert data["features"][0]["nullFraction"] == 0.01
    assert data["failures"][0] == {
        "rule": "maxNullFraction",
        "feature": "f0",
        "message": "too many nulls",
    }
    assert data["reason"] == "ValidationFailed"


def test_profile_summary_round_trips_and_ignores_unknown_keys() -> None:
    summary = _profile(3, 2)
    data = json.loads(summary.to_termination_message())
    data["addedByANewerWorker"] = 1
    parsed = ProfileSummary.parse(json.dumps(data))
    assert parsed == summary


def test_a_large_profile_summary_is_trimmed_to_4_kib_and_says_so() -> None:
    text = _profile(200, 50).to_termination_message()
    assert len(text.encode()) <= MAX_SUMMARY_BYTES
    parsed = ProfileSummary.parse(text)
    assert parsed.truncated
    assert parsed.features and parsed.failures  # both lists keep their first items
    assert parsed.features[0].name == "feature_number_0"
    assert parsed.failures[0].feature == "f0"


def test_a_small_summary_is_not_marked_truncated() -> None:
    assert not ProfileSummary.parse(_profile(2).to_termination_message()).truncated


def test_drift_summary_keeps_the_worst_features_first_within_the_bound() -> None:
    summary = DriftSummary(
        ok=True,
        drift_share=0.75,
        drifted=True,
        features_checked=300,
        drifted_features=225,
        features=[
            FeatureDrift(
                name=f"sensor_reading_{i:03d}",
                method="psi",
                score=1.0 / (i + 1),
                threshold=0.2,
                drifted=i < 225,
            )
            for i in range(300)
        ],
        report_uri="pvc://artifacts/ns/DriftMonitor/m/check-1/report.json",
    )
    text = summary.to_termination_message()
    assert len(text.encode()) <= MAX_SUMMARY_BYTES
    data = json.loads(text)
    assert data["driftShare"] == 0.75 and data["truncated"] is True
    assert data["features"][0] == {
        "name": "sensor_reading_000",
        "method": "psi",
        "score": 1.0,
        "threshold": 0.2,
        "drifted": True,
    }
    assert DriftSummary.parse(text).features_checked == 300


def test_an_error_summary_with_a_huge_message_still_fits() -> None:
    summary = DriftSummary(ok=False, reason="EmptySource", message="x" * 100_000)
    text = summary.to_termination_message()
    assert len(text.encode()) <= MAX_SUMMARY_BYTES
    parsed = DriftSummary.parse(text)
    assert parsed.reason == "EmptySource" and parsed.message and parsed.message.endswith("...")
