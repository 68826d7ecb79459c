"""Profile statistics: exact against NumPy, mergeable when streaming, well-formed always."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from kyklos.logic.profile_stats import CategoricalAccumulator, NumericAccumulator

values_with_nans = hnp.arrays(
    np.float64,
    st.integers(0, 200),
    elements=st.one_of(
        st.floats(-1e6, 1e6, allow_nan=False),
        st.integers(-3, 3).map(float),
        st.just(float("nan")),
    ),
)


@settings(max_examples=200, deadline=None)
@given(values=values_with_nans, bins=st.integers(2, 20))
def test_numeric_profile_is_exact_and_well_formed(values: np.ndarray, bins: int) -> None:
    acc = NumericAccumulator()
    acc.add(values)
    prof = acc.finish(bins)
    finite = values[~np.isnan(values)]
    assert prof.nulls == int(np.isnan(values).sum())
    assert prof.count == finite.size
    assert prof.null_fraction == pytest.approx(prof.nulls / values.size if values.size else 0.0)
    if finite.size == 0:
        assert prof.mean is None and prof.bin_edges == [] and prof.bin_fractions == []
        return
    assert prof.mean == pytest.approx(float(finite.mean()), rel=1e-9, abs=1e-6)
    assert prof.std == pytest.approx(float(finite.std()), rel=1e-7, abs=1e-6)
    assert (prof.min, prof.max) == (finite.min(), finite.max())
    np.testing.assert_allclose(
        prof.bin_edges, np.quantile(finite, np.linspace(0, 1, bins + 1)), rtol=1e-9, atol=1e-9
    )
    assert len(prof.bin_fractions) == bins
    assert sum(prof.bin_fractions) == pytest.approx(1.0, abs=1e-12)
    assert all(b >= a for a, b in zip(prof.bin_edges, prof.bin_edges[1:], strict=False))
    # each fraction is the share of values in (e_i, e_{i+1}] (first bin closed on the left)
    edges = prof.bin_edges
    for i, frac in enumerate(prof.bin_fractions):
        lo_ok = finite >= edges[0] if i == 0 else finite > edges[i]
        assert frac == pytest.approx(float(np.mean(lo_ok & (finite <= edges[i + 1]))), abs=1e-12)
    assert prof.exact_quantiles


@settings(max_examples=100, deadline=None)
@given(values=values_with_nans, cuts=st.lists(st.integers(0, 200), max_size=5))
def test_merging_partial_profiles_equals_one_pass(values: np.ndarray, cuts: list[int]) -> None:
    whole = NumericAccumulator()
    whole.add(values)
    parts = np.split(values, sorted(c for c in cuts if c <= values.size))
    merged = NumericAccumulator()
    for part in parts:
        piece = NumericAccumulator()
        piece.add(part)
        merged.merge(piece)
    a, b = whole.finish(), merged.finish()
    assert (a.count, a.nulls, a.min, a.max) == (b.count, b.nulls, b.min, b.max)
    assert a.bin_edges == b.bin_edges
    assert a.bin_fractions == b.bin_fractions
    if a.count:
        assert b.mean == pytest.approx(a.mean, rel=1e-9, abs=1e-6)
        assert b.std == pytest.approx(a.std, rel=1e-7, abs=1e-6)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), batches=st.integers(1, 30))
def test_compacted_quantiles_stay_close_to_the_true_ranks(seed: int, batches: int) -> None:
    rng = np.random.default_rng(seed)
    data = rng.lognormal(size=20_000)
    acc = NumericAccumulator(capacity=1024)
    for chunk in np.array_split(data, batches):
        acc.add(chunk)
    prof = acc.finish(10)
    assert not prof.exact_quantiles
    assert prof.count == data.size
    assert (prof.min, prof.max) == (data.min(), data.max())
    assert sum(prof.bin_fractions) == pytest.approx(1.0, abs=1e-12)
    assert all(b >= a for a, b in zip(prof.bin_edges, prof.bin_edges[1:], strict=False))
    ranks = np.searchsorted(np.sort(data), prof.bin_edges[1:-1], side="right") / data.size
    np.testing.assert_allclose(ranks, np.linspace(0, 1, 11)[1:-1], atol=0.03)
    assert prof.mean == pytest.approx(float(data.mean()), rel=1e-9)


def test_merging_accumulators_with_different_compaction_weights() -> None:
    rng = np.random.default_rng(3)
    big, small = rng.normal(size=5000), rng.normal(size=300)
    a, b = NumericAccumulator(capacity=512), NumericAccumulator(capacity=512)
    a.add(big)
    b.add(small)
    b.merge(a)  # the lighter one absorbs the heavier
    prof = b.finish(4)
    both = np.concatenate([big, small])
    assert prof.count == both.size
    ranks = np.searchsorted(np.sort(both), prof.bin_edges[1:-1], side="right") / both.size
    np.testing.assert_allclose(ranks, [0.25, 0.5, 0.75], atol=0.05)


categorical_batches = st.lists(
    st.dictionaries(st.sampled_from([f"c{i}" for i in range(12)]), st.integers(1, 50)),
    min_size=1,
    max_size=5,
)


@settings(max_examples=200, deadline=None)
@given(batches=categorical_batches, nulls=st.integers(0, 20), top_k=st.integers(1, 15))
def test_categorical_profile_keeps_top_k_and_an_other_bucket(
    batches: list[dict[str, int]], nulls: int, top_k: int
) -> None:
    acc = CategoricalAccumulator()
    for i, batch in enumerate(batches):
        acc.add_counts(batch, nulls if i == 0 else 0)
    prof = acc.finish(top_k)
    total = Counter[str]()
    for batch in batches:
        total.update(batch)
    n = sum(total.values())
    assert prof.count == n and prof.nulls == nulls and prof.distinct == len(total)
    assert len(prof.top) == min(top_k, len(total))
    counts = [c.count for c in prof.top]
    assert counts == sorted(counts, reverse=True)
    assert all(total[c.value] == c.count for c in prof.top)
    assert prof.other_count == n - sum(counts)
    if n:
        assert sum(c.fraction for c in prof.top) + prof.other_fraction == pytest.approx(1.0)
        # nothing outside the top is more frequent than the least frequent kept category
        kept = {c.value for c in prof.top}
        assert all(v <= min(counts) for k, v in total.items() if k not in kept)
    assert prof.null_fraction == pytest.approx(nulls / (n + nulls) if n + nulls else 0.0)


def test_categorical_ties_are_broken_by_name_so_profiles_are_deterministic() -> None:
    acc = CategoricalAccumulator()
    acc.add_counts({"b": 2, "a": 2, "c": 1})
    prof = acc.finish(2)
    assert [c.value for c in prof.top] == ["a", "b"]
    assert prof.to_dict()["otherCount"] == 1


def test_profile_json_starts_with_the_counts_both_kinds_share() -> None:
    numeric = NumericAccumulator()
    numeric.add(np.array([1.0, np.nan, 3.0, np.nan]))
    categorical = CategoricalAccumulator()
    categorical.add_counts({"a": 2, "b": 1}, nulls=1)
    num, cat = numeric.finish(bins=2).to_dict(), categorical.finish(top_k=5).to_dict()
    assert list(num) == [
        "count", "nulls", "nullFraction", "mean", "std", "min", "max",
        "binEdges", "binFractions", "exactQuantiles",
    ]  # fmt: skip
    assert list(cat) == [
        "count", "nulls", "nullFraction", "distinct", "categories", "otherCount", "otherFraction",
    ]  # fmt: skip
    assert (num["count"], num["nulls"], num["nullFraction"]) == (2, 2, 0.5)
    assert (cat["count"], cat["nulls"], cat["nullFraction"]) == (3, 1, 0.25)
