"""Drift statistics between a reference and a current sample (pure NumPy/SciPy, no I/O).

Definitions Kyklos uses (and where they match Evidently 0.7, docs/architecture.md §8):

Numeric features. NaNs (nulls) and infinities are dropped and counted as nulls; each
column is sorted once and every statistic is derived from the two sorted arrays (KS from
a few binary searches, Wasserstein-1 from the quantile functions; no merge). Where the definitions match Evidently's (normalised Wasserstein, categorical
JS), ``benchmarks/bench_drift.py`` prints the largest difference from Evidently's scores
(about 1e-15 when measured).

- ``ks``: two-sample Kolmogorov-Smirnov (the p-value is computed only when asked for:
  for large samples with little drift SciPy's exact distribution costs more than all the
  other statistics together). ``statistic`` is sup |F_ref - F_cur| with
  right-continuous empirical CDFs; ``score`` is the two-sided p-value exactly as
  ``scipy.stats.ks_2samp(method="auto")`` computes it (exact when both samples have at
  most 10,000 values, Smirnov's asymptotic ``kstwo.sf(D, round(n*m/(n+m)))`` otherwise).
  Drifted when the p-value is *below* the threshold (default 0.05).
- ``wasserstein``: Wasserstein-1 distance (== ``scipy.stats.wasserstein_distance``)
  divided by ``max(std(reference), 0.001)`` (population std), as Evidently normalises it.
  Drifted when >= threshold (default 0.1).
- ``psi``: population stability index over ``bins`` (default 10) bins whose edges are the
  reference's quantiles (linear interpolation, as ``numpy.quantile``); duplicate edges
  collapse (a constant reference gives two bins: ``<= c`` and ``> c``). Bins are
  ``(-inf, e1], (e1, e2], ..., (ek, +inf)``. Empty bins get the fraction
  ``PSI_EPSILON`` = 1e-4 (Evidently's choice) before the sum
  ``sum((cur - ref) * ln(cur / ref))``. Evidently instead bins into equal-width Sturges
  bins, so the two PSI values differ by design. Drifted when >= threshold (default 0.2).
- ``js``: Jensen-Shannon *distance*, natural log (== ``scipy.spatial.distance.jensenshannon``)
  between the reference and current fractions over the PSI bins (no epsilon).
  Drifted when >= threshold (default 0.1).

Categorical features (counts per category, nulls excluded; the caller counts with a hash
table, e.g. ``pyarrow.compute.value_counts``):

- ``chi2``: goodness-of-fit test of the current counts against the reference frequencies
  (== ``scipy.stats.chisquare(observed, expected)`` with ``expected = ref_freq * n_cur``,
  Evidently's test). Categories seen only in the current sample are handled by giving
  every category the reference fraction ``max(ref_fraction, PSI_EPSILON)`` and
  renormalising, so a new category raises the statistic sharply instead of making it
  infinite. With a single category in total there is nothing to test: statistic 0,
  p-value 1. ``score`` is the p-value; drifted when *below* the threshold (default 0.05).
- ``js``: Jensen-Shannon distance (natural log) over the union of categories (Evidently's
  default for categorical columns). Drifted when >= threshold (default 0.1).
- ``psi``: PSI over the union of categories with the same epsilon for empty categories.

Dataset level: ``drift_share`` = drifted features / features checked; the dataset is
drifted when ``drift_share >= thresholds.drift_share`` (default 0.5).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats
from scipy.special import rel_entr

FloatArray = npt.NDArray[np.float64]

NumericMethod = Literal["psi", "ks", "wasserstein", "js"]
CategoricalMethod = Literal["chi2", "js", "psi"]
Method = Literal["psi", "ks", "wasserstein", "js", "chi2"]

#: Fraction given to an empty bin or category before PSI (and chi-square smoothing).
PSI_EPSILON = 1e-4
#: Floor of the reference standard deviation that normalises Wasserstein-1.
WASSERSTEIN_STD_FLOOR = 1e-3
#: Default number of reference-quantile bins for numeric PSI and JS.
DEFAULT_BINS = 10
#: ``ks_2samp(method="auto")`` is exact up to this many values per sample.
KS_EXACT_MAX_N = 10_000
#: Values per block when bounding the KS statistic (see ``ks_statistic_from_sorted``).
KS_BLOCK = 64
#: ``count_at_most`` first searches every this-many-th value (a power of two).
SEARCH_STRIDE = 64
#: Below this many values (2 MiB) NumPy's searchsorted is as fast (measured).
SEARCH_DIRECT_BELOW = 1 << 18
#: Values per chunk for elementwise passes (1 MiB of float64 stays in cache).
CHUNK = 131_072

#: Methods whose score is a p-value: drifted when the score is *below* the threshold.
P_VALUE_METHODS: frozenset[str] = frozenset({"ks", "chi2"})


class DriftInputError(ValueError):
    """The data cannot be compared (for example a column with no non-null values)."""


@dataclass(frozen=True)
class Thresholds:
    """Per-method drift thresholds and the dataset-level drift share."""

    psi: float = 0.2
    ks: float = 0.05
    wasserstein: float = 0.1
    js: float = 0.1
    chi2: float = 0.05
    drift_share: float = 0.5

    def for_method(self, method: Method) -> float:
        """The threshold of one method."""
        value: float = getattr(self, method)
        return value


@dataclass(frozen=True)
class NumericDrift:
    """Every numeric drift statistic of one feature."""

    reference_count: int
    current_count: int
    reference_nulls: int
    current_nulls: int
    ks_statistic: float
    ks_pvalue: float | None
    wasserstein: float
    wasserstein_normalized: float
    psi: float
    js: float
    bin_edges: list[float] = field(default_factory=list)

    def score(self, method: NumericMethod) -> float:
        """The score the given method is judged on (the p-value for ks)."""
        if method == "ks" and self.ks_pvalue is None:
            raise ValueError("the KS p-value was not computed (ks_pvalue=False)")
        return {
            "ks": self.ks_pvalue if self.ks_pvalue is not None else float("nan"),
            "wasserstein": self.wasserstein_normalized,
            "psi": self.psi,
            "js": self.js,
        }[method]


@dataclass(frozen=True)
class CategoricalDrift:
    """Every categorical drift statistic of one feature."""

    reference_count: int
    current_count: int
    reference_nulls: int
    current_nulls: int
    chi2_statistic: float
    chi2_pvalue: float
    js: float
    psi: float
    unseen_categories: int

    def score(self, method: CategoricalMethod) -> float:
        """The score the given method is judged on (the p-value for chi2)."""
        return {"chi2": self.chi2_pvalue, "js": self.js, "psi": self.psi}[method]


def is_drifted(method: Method, score: float, threshold: float) -> bool:
    """Whether a score trips its threshold (p-values below it; distances at or above it)."""
    if method in P_VALUE_METHODS:
        return score < threshold
    return score >= threshold


def drift_share(drifted: Sequence[bool]) -> float:
    """Fraction of drifted features (0 when there are none)."""
    return sum(drifted) / len(drifted) if drifted else 0.0


def dataset_drifted(share: float, thresholds: Thresholds) -> bool:
    """Whether the dataset as a whole is drifted."""
    return share >= thresholds.drift_share


# --- numeric ---------------------------------------------------------------------------


def sorted_finite(values: npt.ArrayLike) -> tuple[FloatArray, int]:
    """The finite values sorted ascending, and how many NaN/inf values were dropped.

    NumPy sorts -inf first and +inf and NaN last, so the finite values are one slice of
    the sorted array (no separate pass to find them).
    """
    arr = np.sort(np.asarray(values, dtype=np.float64))
    lo = int(np.searchsorted(arr, -np.inf, side="right"))
    hi = int(np.searchsorted(arr, np.inf, side="left"))
    return arr[lo:hi], arr.shape[0] - (hi - lo)


def quantiles_from_sorted(sorted_values: FloatArray, probs: FloatArray) -> FloatArray:
    """Quantiles of an ascending array (``numpy.quantile``'s default linear method)."""
    n = sorted_values.shape[0]
    if n == 0:
        raise DriftInputError("quantiles of an empty array")
    pos = probs * (n - 1)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, n - 1)
    t = pos - lo
    a = sorted_values[lo]
    b = sorted_values[hi]
    # numpy's _lerp: interpolate from the nearer end for accuracy.
    out: FloatArray = np.where(t >= 0.5, b - (b - a) * (1 - t), a + (b - a) * t)
    return out


def reference_bin_edges(sorted_reference: FloatArray, bins: int = DEFAULT_BINS) -> FloatArray:
    """Interior bin edges: distinct reference quantiles at 1/bins, ..., (bins-1)/bins.

    A constant reference yields its single value, i.e. two bins ``<= c`` and ``> c``.
    """
    if bins < 2:
        raise DriftInputError(f"bins must be at least 2, got {bins}")
    probs = np.linspace(0.0, 1.0, bins + 1)[1:-1]
    return np.unique(quantiles_from_sorted(sorted_reference, probs))


def bin_counts(sorted_values: FloatArray, interior_edges: FloatArray) -> npt.NDArray[np.int64]:
    """Counts in the bins ``(-inf, e1], (e1, e2], ..., (ek, +inf)`` of an ascending array."""
    cum = np.searchsorted(sorted_values, interior_edges, side="right")
    bounds = np.concatenate(([0], cum, [sorted_values.shape[0]])).astype(np.int64)
    return np.diff(bounds)


def fractions_with_epsilon(
    counts: npt.NDArray[np.int64], epsilon: float = PSI_EPSILON
) -> FloatArray:
    """Counts as fractions, with empty bins set to ``epsilon``."""
    frac = counts / counts.sum()
    return np.where(counts == 0, epsilon, frac)


def psi_from_counts(
    reference_counts: npt.NDArray[np.int64], current_counts: npt.NDArray[np.int64]
) -> float:
    """Population stability index of two aligned count vectors (natural log, epsilon)."""
    ref = fractions_with_epsilon(reference_counts)
    cur = fractions_with_epsilon(current_counts)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def js_distance_from_counts(
    reference_counts: npt.NDArray[np.int64], current_counts: npt.NDArray[np.int64]
) -> float:
    """Jensen-Shannon distance (natural log) of two aligned count vectors.

    Computed as ``scipy.spatial.distance.jensenshannon`` does, without its input checks.
    """
    p = reference_counts / reference_counts.sum()
    q = current_counts / current_counts.sum()
    m = (p + q) / 2.0
    left = _rel_entr_sum(p, m)
    right = _rel_entr_sum(q, m)
    js = (left + right) / 2.0
    return float(math.sqrt(max(js, 0.0)))


def _rel_entr_sum(p: FloatArray, m: FloatArray) -> float:
    return float(np.sum(rel_entr(p, m)))


def ks_wasserstein_from_sorted(
    sorted_reference: FloatArray, sorted_current: FloatArray
) -> tuple[float, float]:
    """KS statistic and Wasserstein-1 distance of two ascending arrays, without a merge."""
    return (
        ks_statistic_from_sorted(sorted_reference, sorted_current),
        wasserstein_from_sorted(sorted_reference, sorted_current),
    )


def ks_statistic_from_sorted(a: FloatArray, b: FloatArray, *, block: int = KS_BLOCK) -> float:
    """sup |F_a - F_b| (right-continuous empirical CDFs) of two ascending arrays.

    ``F_a - F_b`` rises only at values of ``a``, so its maximum is
    ``max_i ((i+1)*m - #(b <= a_i)*n) / (n*m)`` (at the last of equal values the count
    ``i+1`` is complete; earlier ones only give less), and symmetrically for ``F_b - F_a``.
    The integers are exact and divided once (SciPy subtracts two rounded CDFs, so it can
    differ in the last bits). A binary search for every ``#(b <= a_i)`` would cost more
    than the sort, so ``a`` is cut into blocks of ``block`` values and only the last value
    of each is counted: inside a block, ``i+1`` is below the block's last index and
    ``#(b <= a_i)`` at least the previous block's count, which bounds every value. Only
    the blocks whose bound beats the best exact value are counted in full (usually a few
    percent). When that is most of them (nearly identical samples), one linear merge of
    both arrays is cheaper.
    """
    n = a.shape[0]
    m = b.shape[0]
    if n == 0 or m == 0:
        return 0.0
    plus = _largest_cdf_excess(a, b, block)
    minus = _largest_cdf_excess(b, a, block) if plus is not None else None
    if plus is None or minus is None:
        return _ks_statistic_by_merge(a, b)
    return max(plus, minus) / (float(n) * float(m))


def _largest_cdf_excess(a: FloatArray, b: FloatArray, block: int) -> int | None:
    """``max_i ((i+1)*m - #(b <= a_i)*n)`` for ascending a and b; None if pruning fails."""
    n = a.shape[0]
    m = b.shape[0]
    if n <= 4 * block:
        idx = np.arange(n, dtype=np.int64)
        return int(np.max((idx + 1) * m - count_at_most(b, a) * n))
    ends = np.arange(block - 1, n + block - 1, block, dtype=np.int64)
    ends[-1] = n - 1
    below_end = count_at_most(b, a[ends])
    best = int(np.max((ends + 1) * m - below_end * n))
    bound = ends * m
    bound[1:] -= below_end[:-1] * n
    candidates = np.flatnonzero(bound > best)
    if candidates.shape[0] * block > n // 4:
        return None
    if candidates.shape[0]:
        idx = (candidates[:, None] * block + np.arange(block, dtype=np.int64)).ravel()
        if idx[-1] >= n:
            idx = idx[idx < n]
        inside = (idx + 1) * m - count_at_most(b, a[idx]) * n
        best = max(best, int(np.max(inside)))
    return best


def count_at_most(
    sorted_values: FloatArray, keys: FloatArray, *, direct_below: int = SEARCH_DIRECT_BELOW
) -> npt.NDArray[np.int64]:
    """``numpy.searchsorted(sorted_values, keys, side="right")`` for ascending keys.

    NumPy's binary search narrows each key from the previous key's position to the end,
    touching a new cache line at most of its ~20 steps when the array is out of cache.
    Arrays of ``direct_below`` values or more are searched in two levels instead: the keys
    are placed among every ``SEARCH_STRIDE``-th value (a small array that stays in cache),
    then six vectorised halving steps finish inside those windows.
    """
    m = sorted_values.shape[0]
    stride = SEARCH_STRIDE
    if m < max(direct_below, 4 * stride):
        out: npt.NDArray[np.int64] = np.searchsorted(sorted_values, keys, side="right")
        return out
    coarse = np.ascontiguousarray(sorted_values[stride - 1 :: stride])
    count: npt.NDArray[np.int64] = np.searchsorted(coarse, keys, side="right") * stride
    # #(sorted_values <= key) lies in [count, count + stride - 1]: binary lifting.
    step = stride // 2
    while step:
        probe = count + (step - 1)
        inside = probe < m
        np.minimum(probe, m - 1, out=probe)
        inside &= sorted_values[probe] <= keys
        count += step * inside
        step //= 2
    return count


def _ks_statistic_by_merge(a: FloatArray, b: FloatArray) -> float:
    """sup |F_a - F_b| from one linear merge of the two ascending arrays.

    Each value is paired with its step (``m`` for a, ``-n`` for b) as a complex number;
    NumPy's stable sort (timsort) of two ascending runs is a linear merge that carries the
    steps along, and one cumulative sum gives ``n*m*(F_a - F_b)`` exactly (integers in
    float64). The largest magnitude is taken only at the last position of each run of
    equal values, where the counts are complete.
    """
    n = a.shape[0]
    m = b.shape[0]
    pairs = np.empty(n + m, dtype=np.complex128)
    pairs.real[:n] = a
    pairs.real[n:] = b
    pairs.imag[:n] = float(m)
    pairs.imag[n:] = -float(n)
    pairs.sort(kind="stable")
    diff = np.cumsum(pairs.imag)
    np.abs(diff, out=diff)
    run_ends = np.diff(pairs.real) > 0
    # The last position is always 0 (both CDFs are 1), so it can be left out of the max.
    return float(np.max(diff[:-1], where=run_ends, initial=0.0)) / (float(n) * float(m))


def wasserstein_from_sorted(a: FloatArray, b: FloatArray) -> float:
    """Wasserstein-1 distance of two ascending arrays as the area between quantile functions.

    ``W1 = integral over u in (0, 1) of |Q_a(u) - Q_b(u)|`` (equal to the area between the
    CDFs that SciPy sums). With n >= m, the quantile cell ``[i/n, (i+1)/n)`` of ``a`` lies
    within at most two cells of ``b``: ``j = floor(i*m/n)`` and ``j+1``, the latter for the
    last ``w`` of its ``m`` parts (in units of ``1/(n*m)``, ``w = max(i*m mod n - (n-m), 0)``).
    Equal sizes pair the i-th values; no merge, no search. Worked through in chunks, so the
    temporaries stay in cache instead of costing a column-sized allocation each.
    """
    n = a.shape[0]
    m = b.shape[0]
    if n < m:
        a, b, n, m = b, a, m, n
    if m == 0:
        return 0.0
    if n == m:
        buffer = np.empty(min(n, CHUNK))
        total = 0.0
        for lo in range(0, n, CHUNK):
            gap = buffer[: min(CHUNK, n - lo)]
            np.subtract(a[lo : lo + CHUNK], b[lo : lo + CHUNK], out=gap)
            np.abs(gap, out=gap)
            total += float(np.sum(gap))
        return total / float(n)
    total = 0.0
    for lo in range(0, n, CHUNK):
        part = a[lo : lo + CHUNK]
        straddle = np.arange(lo * m, (lo + part.shape[0]) * m, m, dtype=np.int64)  # i*m
        cell = straddle // n
        straddle -= cell * n  # i*m mod n
        straddle -= n - m
        np.maximum(straddle, 0, out=straddle)
        second = straddle.astype(np.float64)
        first = float(m) - second
        gap = np.abs(part - b[cell])
        total += float(np.vecdot(first, gap))
        np.minimum(cell + 1, m - 1, out=cell)
        np.subtract(part, b[cell], out=gap)
        np.abs(gap, out=gap)
        total += float(np.vecdot(second, gap))
    return total / (float(n) * float(m))


def _population_std(values: FloatArray) -> float:
    """``numpy.std`` (ddof=0) in fewer passes: mean, then dot products of deviations."""
    n = values.shape[0]
    mean = values.mean()
    buffer = np.empty(min(n, CHUNK))
    total = 0.0
    for lo in range(0, n, CHUNK):
        deviations = buffer[: min(CHUNK, n - lo)]
        np.subtract(values[lo : lo + CHUNK], mean, out=deviations)
        total += float(np.vecdot(deviations, deviations))
    return math.sqrt(total / n)


def ks_pvalue_for(
    sorted_reference: FloatArray, sorted_current: FloatArray, statistic: float
) -> tuple[float, float]:
    """The KS statistic and two-sided p-value exactly as ``scipy.stats.ks_2samp`` gives them.

    Up to 10,000 values per side SciPy's exact method runs on the sorted arrays (its
    statistic is returned, rounded to the lattice it uses); beyond, Smirnov's asymptotic
    distribution ``kstwo.sf(D, round(n*m/(n+m)))``. For large samples with little drift
    this costs more than every other statistic together, hence callers may skip it.
    """
    n = sorted_reference.shape[0]
    m = sorted_current.shape[0]
    if max(n, m) <= KS_EXACT_MAX_N:
        with warnings.catch_warnings():
            # SciPy warns when it falls back from exact to asymptotic; the value is still right.
            warnings.simplefilter("ignore", RuntimeWarning)
            res = stats.ks_2samp(sorted_reference, sorted_current)
        return float(res.statistic), float(res.pvalue)
    big, small = sorted([float(n), float(m)], reverse=True)
    en = big * small / (big + small)
    p = float(stats.kstwo.sf(statistic, np.round(en)))
    return statistic, min(max(p, 0.0), 1.0)


def numeric_drift(
    reference: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    bins: int = DEFAULT_BINS,
    ks_pvalue: bool = True,
) -> NumericDrift:
    """All numeric drift statistics of one feature (NaNs dropped and counted).

    ``ks_pvalue=False`` skips the KS p-value (``ks_pvalue`` is then None).
    """
    ref_sorted, ref_nulls = sorted_finite(reference)
    cur_sorted, cur_nulls = sorted_finite(current)
    return numeric_drift_sorted(
        ref_sorted, cur_sorted, ref_nulls, cur_nulls, bins=bins, ks_pvalue=ks_pvalue
    )


def numeric_drift_sorted(
    ref_sorted: FloatArray,
    cur_sorted: FloatArray,
    ref_nulls: int = 0,
    cur_nulls: int = 0,
    *,
    bins: int = DEFAULT_BINS,
    ks_pvalue: bool = True,
) -> NumericDrift:
    """All numeric drift statistics from two ascending NaN-free arrays."""
    if ref_sorted.shape[0] == 0:
        raise DriftInputError("reference has no non-null values")
    if cur_sorted.shape[0] == 0:
        raise DriftInputError("current has no non-null values")
    ks_d, w1 = ks_wasserstein_from_sorted(ref_sorted, cur_sorted)
    ks_p: float | None = None
    if ks_pvalue:
        ks_d, ks_p = ks_pvalue_for(ref_sorted, cur_sorted, ks_d)
    norm = max(_population_std(ref_sorted), WASSERSTEIN_STD_FLOOR)
    edges = reference_bin_edges(ref_sorted, bins)
    ref_counts = bin_counts(ref_sorted, edges)
    cur_counts = bin_counts(cur_sorted, edges)
    return NumericDrift(
        reference_count=int(ref_sorted.shape[0]),
        current_count=int(cur_sorted.shape[0]),
        reference_nulls=ref_nulls,
        current_nulls=cur_nulls,
        ks_statistic=ks_d,
        ks_pvalue=ks_p,
        wasserstein=w1,
        wasserstein_normalized=w1 / norm,
        psi=psi_from_counts(ref_counts, cur_counts),
        js=js_distance_from_counts(ref_counts, cur_counts),
        bin_edges=[float(e) for e in edges],
    )


# --- categorical -----------------------------------------------------------------------


def count_categories(values: Iterable[object]) -> tuple[dict[str, int], int]:
    """Category counts (as strings) and the number of nulls (None or NaN) of a sequence."""
    counts: Counter[str] = Counter()
    nulls = 0
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            nulls += 1
        else:
            counts[str(v)] += 1
    return dict(counts), nulls


def aligned_counts(
    reference: Mapping[str, int], current: Mapping[str, int]
) -> tuple[list[str], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The union of categories (reference first, then new ones sorted) and aligned counts."""
    categories = list(reference)
    categories += sorted(c for c in current if c not in reference)
    ref = np.fromiter((reference.get(c, 0) for c in categories), np.int64, len(categories))
    cur = np.fromiter((current.get(c, 0) for c in categories), np.int64, len(categories))
    return categories, ref, cur


def chi2_goodness_of_fit(
    reference_counts: npt.NDArray[np.int64], current_counts: npt.NDArray[np.int64]
) -> tuple[float, float]:
    """Chi-square goodness of fit of current counts against reference frequencies.

    Reference fractions are floored at ``PSI_EPSILON`` and renormalised so that categories
    unseen in the reference give a large but finite statistic.
    """
    k = reference_counts.shape[0]
    if k <= 1:
        return 0.0, 1.0
    ref_frac = np.maximum(reference_counts / reference_counts.sum(), PSI_EPSILON)
    ref_frac = ref_frac / ref_frac.sum()
    n_cur = float(current_counts.sum())
    expected = ref_frac * n_cur
    statistic = float(np.sum((current_counts - expected) ** 2 / expected))
    pvalue = float(stats.chi2.sf(statistic, k - 1))
    return statistic, pvalue


def chi2_expected(reference_counts: npt.NDArray[np.int64], current_total: int) -> FloatArray:
    """The expected current counts the chi-square test uses (for checking against SciPy)."""
    ref_frac = np.maximum(reference_counts / reference_counts.sum(), PSI_EPSILON)
    out: FloatArray = ref_frac / ref_frac.sum() * float(current_total)
    return out


def categorical_drift(
    reference: Mapping[str, int],
    current: Mapping[str, int],
    *,
    reference_nulls: int = 0,
    current_nulls: int = 0,
) -> CategoricalDrift:
    """All categorical drift statistics of one feature from per-category counts."""
    categories, ref, cur = aligned_counts(reference, current)
    if ref.sum() == 0:
        raise DriftInputError("reference has no non-null values")
    if cur.sum() == 0:
        raise DriftInputError("current has no non-null values")
    chi_stat, chi_p = chi2_goodness_of_fit(ref, cur)
    return CategoricalDrift(
        reference_count=int(ref.sum()),
        current_count=int(cur.sum()),
        reference_nulls=reference_nulls,
        current_nulls=current_nulls,
        chi2_statistic=chi_stat,
        chi2_pvalue=chi_p,
        js=js_distance_from_counts(ref, cur),
        psi=psi_from_counts(ref, cur),
        unseen_categories=len(categories) - len(reference),
    )
