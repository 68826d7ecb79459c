"""Drift statistics agree with SciPy's reference functions and handle NaNs and constants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats
from scipy.spatial.distance import jensenshannon

from kyklos.logic import drift_stats as ds

# SciPy's own ks_2samp (the reference we compare against) warns when it falls back to
# its asymptotic p-value; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:ks_2samp. Exact calculation unsuccessful")

TOL = 1e-9

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
small_samples = hnp.arrays(np.float64, st.integers(1, 60), elements=finite)
# Few distinct values: many ties, the hard case for CDF-based statistics.
tied_samples = hnp.arrays(np.float64, st.integers(1, 60), elements=st.integers(-3, 3).map(float))


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= TOL * max(1.0, abs(b))


@settings(max_examples=200, deadline=None)
@given(ref=st.one_of(small_samples, tied_samples), cur=st.one_of(small_samples, tied_samples))
def test_ks_and_wasserstein_agree_with_scipy_on_small_samples(
    ref: np.ndarray, cur: np.ndarray
) -> None:
    result = ds.numeric_drift(ref, cur)
    expected = stats.ks_2samp(ref, cur)
    assert _close(result.ks_statistic, float(expected.statistic))
    assert _close(result.ks_pvalue, float(expected.pvalue))
    assert _close(result.wasserstein, float(stats.wasserstein_distance(ref, cur)))


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(10_001, 40_000),
    m=st.integers(500, 40_000),
    shift=st.floats(0.0, 0.2),
    rounded=st.booleans(),
)
def test_ks_and_wasserstein_agree_with_scipy_on_large_samples(
    seed: int, n: int, m: int, shift: float, rounded: bool
) -> None:
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=n)
    cur = rng.normal(loc=shift, size=m)
    if rounded:  # heavy ties
        ref, cur = np.round(ref, 1), np.round(cur, 1)
    result = ds.numeric_drift(ref, cur)
    expected = stats.ks_2samp(ref, cur)
    assert _close(result.ks_statistic, float(expected.statistic))
    assert _close(result.ks_pvalue, float(expected.pvalue))
    assert _close(result.wasserstein, float(stats.wasserstein_distance(ref, cur)))


@settings(max_examples=100, deadline=None)
@given(ref=st.one_of(small_samples, tied_samples), cur=st.one_of(small_samples, tied_samples))
def test_wasserstein_is_normalised_by_the_reference_std_with_a_floor(
    ref: np.ndarray, cur: np.ndarray
) -> None:
    result = ds.numeric_drift(ref, cur)
    norm = max(float(np.std(ref)), 1e-3)
    assert _close(result.wasserstein_normalized, stats.wasserstein_distance(ref, cur) / norm)


@settings(max_examples=100, deadline=None)
@given(ref=st.one_of(small_samples, tied_samples), cur=st.one_of(small_samples, tied_samples))
def test_psi_and_js_use_reference_quantile_bins(ref: np.ndarray, cur: np.ndarray) -> None:
    bins = 10
    result = ds.numeric_drift(ref, cur, bins=bins)
    # Independent path: numpy.quantile for the edges, a per-value loop for bin membership.
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))

    def counts(x: np.ndarray) -> np.ndarray:
        out = np.zeros(edges.size + 1, dtype=np.int64)
        for v in x:
            out[int(np.sum(edges < v))] += 1
        return out

    rc, cc = counts(ref), counts(cur)
    assert result.bin_edges == pytest.approx(list(edges), rel=TOL, abs=TOL)
    rf = np.where(rc == 0, 1e-4, rc / rc.sum())
    cf = np.where(cc == 0, 1e-4, cc / cc.sum())
    assert _close(result.psi, float(np.sum((cf - rf) * np.log(cf / rf))))
    assert _close(result.js, float(jensenshannon(rc, cc)))


@settings(max_examples=100, deadline=None)
@given(
    values=hnp.arrays(np.float64, st.integers(1, 50), elements=finite),
    probs=hnp.arrays(np.float64, st.integers(1, 12), elements=st.floats(0, 1)),
)
def test_quantiles_from_sorted_match_numpy_quantile(values: np.ndarray, probs: np.ndarray) -> None:
    got = ds.quantiles_from_sorted(np.sort(values), probs)
    np.testing.assert_allclose(got, np.quantile(values, probs), rtol=TOL, atol=TOL)


def test_nans_are_dropped_and_counted() -> None:
    rng = np.random.default_rng(1)
    ref, cur = rng.normal(size=300), rng.normal(0.3, size=200)
    ref_nan = np.concatenate([ref, [np.nan] * 7])
    cur_nan = np.concatenate([[np.nan] * 3, cur])
    with_nans = ds.numeric_drift(ref_nan, cur_nan)
    without = ds.numeric_drift(ref, cur)
    assert (with_nans.reference_nulls, with_nans.current_nulls) == (7, 3)
    assert (with_nans.reference_count, with_nans.current_count) == (300, 200)
    assert with_nans.ks_pvalue == without.ks_pvalue
    assert with_nans.psi == without.psi
    assert with_nans.wasserstein == without.wasserstein


def test_an_all_nan_column_is_an_input_error_naming_the_side() -> None:
    with pytest.raises(ds.DriftInputError, match="current has no non-null values"):
        ds.numeric_drift([1.0, 2.0], [np.nan, np.nan])
    with pytest.raises(ds.DriftInputError, match="reference has no non-null values"):
        ds.numeric_drift([np.nan], [1.0])


def test_identical_constant_columns_show_no_drift() -> None:
    result = ds.numeric_drift(np.full(500, 3.0), np.full(400, 3.0))
    assert result.ks_statistic == 0.0
    assert result.ks_pvalue == 1.0
    assert result.wasserstein == 0.0
    assert result.psi == 0.0
    assert result.js == 0.0
    for method in ("psi", "ks", "wasserstein", "js"):
        score = result.score(method)  # type: ignore[arg-type]
        assert not ds.is_drifted(method, score, ds.Thresholds().for_method(method))  # type: ignore[arg-type]


def test_a_constant_reference_against_a_moved_current_is_drift_by_every_method() -> None:
    result = ds.numeric_drift(np.full(500, 3.0), np.full(400, 4.0))
    assert result.bin_edges == [3.0]
    assert _close(result.wasserstein, 1.0)
    # the std floor keeps the normalised distance finite
    assert _close(result.wasserstein_normalized, 1.0 / 1e-3)
    t = ds.Thresholds()
    for method in ("psi", "ks", "wasserstein", "js"):
        assert ds.is_drifted(method, result.score(method), t.for_method(method))  # type: ignore[arg-type]


def test_shifted_normal_drifts_and_same_distribution_does_not() -> None:
    rng = np.random.default_rng(7)
    ref = rng.normal(size=20_000)
    same = ds.numeric_drift(ref, rng.normal(size=20_000))
    moved = ds.numeric_drift(ref, rng.normal(loc=1.0, size=20_000))
    t = ds.Thresholds()
    assert same.psi < t.psi and moved.psi >= t.psi
    assert same.ks_pvalue > 1e-3 and moved.ks_pvalue < t.ks
    assert same.wasserstein_normalized < t.wasserstein <= moved.wasserstein_normalized


# --- categorical ---------------------------------------------------------------------

cat_counts = st.dictionaries(st.sampled_from("abcdefgh"), st.integers(1, 500), min_size=1)


@settings(max_examples=200, deadline=None)
@given(ref=cat_counts, cur=cat_counts)
def test_categorical_js_agrees_with_scipy_over_the_union(
    ref: dict[str, int], cur: dict[str, int]
) -> None:
    result = ds.categorical_drift(ref, cur)
    union = sorted(set(ref) | set(cur))
    p = np.array([ref.get(c, 0) for c in union], float)
    q = np.array([cur.get(c, 0) for c in union], float)
    assert _close(result.js, float(jensenshannon(p, q)))
    pf = np.where(p == 0, 1e-4, p / p.sum())
    qf = np.where(q == 0, 1e-4, q / q.sum())
    assert _close(result.psi, float(np.sum((qf - pf) * np.log(qf / pf))))
    assert result.unseen_categories == len(set(cur) - set(ref))


@settings(max_examples=200, deadline=None)
@given(ref=cat_counts, cur=cat_counts)
def test_chi2_is_scipy_goodness_of_fit_against_reference_frequencies(
    ref: dict[str, int], cur: dict[str, int]
) -> None:
    # Only categories both sides know, and reference fractions above the epsilon floor:
    # then Kyklos's test is exactly scipy.stats.chisquare(observed, ref_freq * n_cur).
    cur = {k: v for k, v in cur.items() if k in ref} or {next(iter(ref)): 1}
    result = ds.categorical_drift(ref, cur)
    cats = list(ref)
    observed = np.array([cur.get(c, 0) for c in cats], float)
    ref_arr = np.array([ref[c] for c in cats], float)
    expected = ref_arr / ref_arr.sum() * observed.sum()
    if len(cats) == 1:
        assert (result.chi2_statistic, result.chi2_pvalue) == (0.0, 1.0)
        return
    scipy_result = stats.chisquare(observed, expected)
    assert _close(result.chi2_statistic, float(scipy_result.statistic))
    assert _close(result.chi2_pvalue, float(scipy_result.pvalue))


def test_chi2_with_unseen_categories_matches_scipy_on_the_smoothed_expectation() -> None:
    ref = {"a": 500, "b": 300}
    cur = {"a": 400, "b": 300, "new": 100}
    result = ds.categorical_drift(ref, cur)
    _, ref_arr, cur_arr = ds.aligned_counts(ref, cur)
    expected = ds.chi2_expected(ref_arr, int(cur_arr.sum()))
    scipy_result = stats.chisquare(cur_arr.astype(float), expected)
    assert np.isfinite(result.chi2_statistic)
    assert _close(result.chi2_statistic, float(scipy_result.statistic))
    assert _close(result.chi2_pvalue, float(scipy_result.pvalue))
    assert result.unseen_categories == 1
    assert ds.is_drifted("chi2", result.chi2_pvalue, ds.Thresholds().chi2)


def test_count_categories_counts_strings_and_nulls() -> None:
    counts, nulls = ds.count_categories(["a", None, "b", "a", float("nan"), 3])
    assert counts == {"a": 2, "b": 1, "3": 1}
    assert nulls == 2


def test_empty_categorical_side_is_an_input_error() -> None:
    with pytest.raises(ds.DriftInputError, match="current"):
        ds.categorical_drift({"a": 1}, {})


def test_drift_direction_and_share() -> None:
    assert ds.is_drifted("ks", 0.01, 0.05) and not ds.is_drifted("ks", 0.2, 0.05)
    assert ds.is_drifted("chi2", 0.0, 0.05)
    assert ds.is_drifted("psi", 0.2, 0.2) and not ds.is_drifted("psi", 0.19, 0.2)
    assert ds.drift_share([True, False, False, True]) == 0.5
    assert ds.drift_share([]) == 0.0
    assert ds.dataset_drifted(0.5, ds.Thresholds())
    assert not ds.dataset_drifted(0.49, ds.Thresholds())


def test_the_ks_pvalue_can_be_skipped_without_changing_the_other_statistics() -> None:
    rng = np.random.default_rng(5)
    ref, cur = rng.normal(size=12_000), rng.normal(0.05, size=11_000)
    full = ds.numeric_drift(ref, cur)
    quick = ds.numeric_drift(ref, cur, ks_pvalue=False)
    assert quick.ks_pvalue is None
    assert _close(quick.ks_statistic, full.ks_statistic)
    assert (quick.psi, quick.js, quick.wasserstein) == (full.psi, full.js, full.wasserstein)
    with pytest.raises(ValueError, match="p-value was not computed"):
        quick.score("ks")


def test_ties_across_both_samples_count_only_at_the_end_of_each_run() -> None:
    # Stable merge puts ref's 1.0 before cur's 1.0: a partial count inside the run
    # would wrongly give |F_ref - F_cur| = 1 there.
    ref = np.array([1.0, 2.0])
    cur = np.array([1.0, 2.0])
    assert ds.ks_wasserstein_from_sorted(ref, cur) == (0.0, 0.0)
    ref = np.array([1.0, 1.0, 2.0, 3.0, 3.0, 3.0])
    cur = np.array([1.0, 3.0, 3.0, 4.0])
    ks, w1 = ds.ks_wasserstein_from_sorted(ref, cur)
    assert _close(ks, float(stats.ks_2samp(ref, cur).statistic))
    assert _close(w1, float(stats.wasserstein_distance(ref, cur)))


def test_infinities_are_dropped_like_nulls() -> None:
    ref = np.array([1.0, 2.0, np.inf, 3.0, -np.inf])
    cur = np.array([1.5, 2.5, np.nan])
    result = ds.numeric_drift(ref, cur)
    assert (result.reference_nulls, result.current_nulls) == (2, 1)
    assert _close(result.wasserstein, float(stats.wasserstein_distance([1, 2, 3], [1.5, 2.5])))


@settings(max_examples=200, deadline=None)
@given(
    ref=st.one_of(small_samples, tied_samples),
    cur=st.one_of(small_samples, tied_samples),
    block=st.integers(1, 4),
)
def test_ks_statistic_bounded_by_blocks_is_exact(
    ref: np.ndarray, cur: np.ndarray, block: int
) -> None:
    # Small blocks make the block bounds (and the merge fallback) run on small samples.
    ref, cur = np.sort(ref), np.sort(cur)
    ks = ds.ks_statistic_from_sorted(ref, cur, block=block)
    assert ks == ds.ks_statistic_from_sorted(ref, cur, block=10**6)  # direct, no blocks
    assert _close(ks, float(stats.ks_2samp(ref, cur).statistic))


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    m=st.integers(1, 3_000),
    factor=st.sampled_from([1, 2, 3]),
    extra=st.integers(0, 5),
    rounded=st.booleans(),
)
def test_wasserstein_over_quantile_cells_agrees_with_scipy_for_related_sizes(
    seed: int, m: int, factor: int, extra: int, rounded: bool
) -> None:
    # Equal sizes, multiples and near-multiples: cells that coincide, nest or straddle.
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=factor * m + extra)
    cur = rng.normal(loc=0.1, size=m)
    if rounded:
        ref, cur = np.round(ref, 1), np.round(cur, 1)
    for a, b in ((ref, cur), (cur, ref)):
        w1 = ds.wasserstein_from_sorted(np.sort(a), np.sort(b))
        assert _close(w1, float(stats.wasserstein_distance(a, b)))


def test_nearly_identical_samples_fall_back_to_a_merge_with_the_same_statistic() -> None:
    # Identical samples: every block's bound beats the best value (0), so no pruning.
    ref = np.sort(np.random.default_rng(7).normal(size=20_000))
    assert ds.ks_statistic_from_sorted(ref, ref.copy()) == 0.0
    cur = np.sort(np.concatenate([ref[:-1], [ref[-1] + 1.0]]))
    assert ds._largest_cdf_excess(ref, cur, ds.KS_BLOCK) is None  # pruning gave up
    ks = ds.ks_statistic_from_sorted(ref, cur)
    assert ks == 1 / 20_000
    assert _close(ks, float(stats.ks_2samp(ref, cur).statistic))


@settings(max_examples=100, deadline=None)
@given(
    values=hnp.arrays(np.float64, st.integers(0, 800), elements=st.integers(-40, 40).map(float)),
    keys=hnp.arrays(np.float64, st.integers(0, 300), elements=st.integers(-45, 45).map(float)),
)
def test_count_at_most_is_searchsorted_right(values: np.ndarray, keys: np.ndarray) -> None:
    # Heavy ties and keys beyond both ends; the two-level search even for small arrays.
    values, keys = np.sort(values), np.sort(keys)
    expected = np.searchsorted(values, keys, side="right")
    assert np.array_equal(ds.count_at_most(values, keys, direct_below=0), expected)


def test_columns_too_large_for_the_cache_give_scipy_statistics() -> None:
    # Beyond SEARCH_DIRECT_BELOW values the KS counts take the two-level search.
    rng = np.random.default_rng(11)
    n, m = ds.SEARCH_DIRECT_BELOW + 12_345, ds.SEARCH_DIRECT_BELOW - 999
    ref, cur = np.round(rng.normal(size=n), 2), np.round(rng.normal(0.01, size=m), 2)
    result = ds.numeric_drift(ref, cur, ks_pvalue=False)
    assert result.ks_statistic == ds._ks_statistic_by_merge(np.sort(ref), np.sort(cur))
    assert _close(result.ks_statistic, float(stats.ks_2samp(ref, cur).statistic))
    assert _close(result.wasserstein, float(stats.wasserstein_distance(ref, cur)))
