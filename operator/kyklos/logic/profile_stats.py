"""Per-feature profile statistics, accumulated batch by batch and mergeable (pure, no I/O).

Numeric features: count, nulls (NaN), mean and population standard deviation (ddof=0,
merged exactly with Chan et al.'s parallel formulas), min, max, and ``bins`` quantile bins:
``bins + 1`` edges at the quantiles 0, 1/bins, ..., 1 (linear interpolation, as
``numpy.quantile``; the first edge is the minimum and the last the maximum) and the
fraction of values in each bin ``[e0, e1], (e1, e2], ..., (e_{k-1}, e_k]``. Edges are
non-decreasing; with heavy ties some are equal and the bins between them are empty.
Fractions always sum to 1.

Quantiles are exact while a feature has at most ``capacity`` non-null values (default
2**21, 16 MiB per feature). Beyond that the retained values are halved by keeping every
other one of the sorted values (alternating the starting offset, deterministically), each
kept value then standing for twice as many; the rank error of an edge stays within a few
``1/capacity`` of the total.

Categorical features: counts per category (any value as its string), nulls, number of
distinct categories, the ``top_k`` most frequent (ties broken by name) with their
fraction of the non-null values, and one "other" bucket with the rest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from kyklos.logic.drift_stats import quantiles_from_sorted

FloatArray = npt.NDArray[np.float64]

#: Non-null values per numeric feature kept exactly before compaction.
DEFAULT_CAPACITY = 2**21
DEFAULT_BINS = 10
DEFAULT_TOP_K = 20


@dataclass(frozen=True)
class FeatureCounts:
    """What every finished feature profile starts with: non-null values and nulls."""

    count: int
    nulls: int

    @property
    def null_fraction(self) -> float:
        """Fraction of rows whose value is null (0 for no rows)."""
        total = self.count + self.nulls
        return self.nulls / total if total else 0.0

    def _counts_dict(self) -> dict[str, Any]:
        return {"count": self.count, "nulls": self.nulls, "nullFraction": self.null_fraction}


@dataclass(frozen=True)
class NumericProfile(FeatureCounts):
    """The finished profile of one numeric feature."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    bin_edges: list[float]
    bin_fractions: list[float]
    exact_quantiles: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (camelCase keys)."""
        return {
            **self._counts_dict(),
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
            "binEdges": self.bin_edges,
            "binFractions": self.bin_fractions,
            "exactQuantiles": self.exact_quantiles,
        }


@dataclass(frozen=True)
class CategoryFrequency:
    """One category's count and fraction of the non-null values."""

    value: str
    count: int
    fraction: float


@dataclass(frozen=True)
class CategoricalProfile(FeatureCounts):
    """The finished profile of one categorical feature."""

    distinct: int
    top: list[CategoryFrequency]
    other_count: int
    other_fraction: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (camelCase keys)."""
        return {
            **self._counts_dict(),
            "distinct": self.distinct,
            "categories": [
                {"value": c.value, "count": c.count, "fraction": c.fraction} for c in self.top
            ],
            "otherCount": self.other_count,
            "otherFraction": self.other_fraction,
        }


@dataclass
class NumericAccumulator:
    """Mergeable running profile of one numeric feature.

    ``count``, ``mean``, ``m2``, ``min`` and ``max`` are brought up to date lazily (batches
    kept whole are folded in one pass when needed); read results from ``finish()``.
    """

    capacity: int = DEFAULT_CAPACITY
    count: int = 0
    nulls: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = float("inf")
    max: float = float("-inf")
    weight: int = 1
    _chunks: list[FloatArray] = field(default_factory=list)
    _retained: int = 0
    _compactions: int = 0
    _unfolded: list[FloatArray] = field(default_factory=list)

    def add(self, values: npt.ArrayLike) -> None:
        """Add a batch of values; NaN counts as null."""
        arr = np.asarray(values, dtype=np.float64)
        nan_mask = np.isnan(arr)
        nulls = int(nan_mask.sum())
        if nulls:
            arr = arr[~nan_mask]
        self.nulls += nulls
        if arr.size == 0:
            return
        if self.weight > 1:
            # The batch is about to be thinned: take its moments while they are exact.
            self._fold(arr)
            arr = self._thin(np.sort(arr), self.weight)
        else:
            # Kept whole: its moments are taken later, in one pass over all such batches.
            self._unfolded.append(arr)
        self._chunks.append(arr)
        self._retained += arr.size
        self._compact_if_full()

    def merge(self, other: NumericAccumulator) -> None:
        """Fold another accumulator of the same feature into this one."""
        self.nulls += other.nulls
        other._fold_pending()
        if other.count == 0:
            return
        self._fold_pending()
        self._merge_moments(other.count, other.mean, other.m2, other.min, other.max)
        theirs = other._values_sorted()
        if other.weight < self.weight:
            theirs = self._thin(theirs, self.weight // other.weight)
        elif other.weight > self.weight:
            mine = self._thin(self._values_sorted(), other.weight // self.weight)
            self._chunks = [mine]
            self._retained = mine.size
            self.weight = other.weight
        self._chunks.append(theirs)
        self._retained += theirs.size
        self._compact_if_full()

    def finish(self, bins: int = DEFAULT_BINS) -> NumericProfile:
        """The profile: moments, extremes and ``bins`` quantile bins."""
        self._fold_pending()
        if self.count == 0:
            return NumericProfile(0, self.nulls, None, None, None, None, [], [], True)
        values = self._values_sorted()
        edges = quantiles_from_sorted(values, np.linspace(0.0, 1.0, bins + 1))
        # The retained values may have lost the extremes to compaction; the true ones are known.
        edges[0], edges[-1] = self.min, self.max
        edges = np.maximum.accumulate(edges)
        cum = np.searchsorted(values, edges[1:-1], side="right")
        counts = np.diff(np.concatenate(([0], cum, [values.size])))
        return NumericProfile(
            count=self.count,
            nulls=self.nulls,
            mean=self.mean,
            std=float(np.sqrt(max(self.m2, 0.0) / self.count)),
            min=self.min,
            max=self.max,
            bin_edges=[float(e) for e in edges],
            bin_fractions=[float(c) / values.size for c in counts],
            exact_quantiles=self.weight == 1,
        )

    def _fold(self, arr: FloatArray) -> None:
        """Add the exact moments and extremes of some values."""
        mean = float(arr.mean())
        deviations = arr - mean
        self._merge_moments(
            arr.size,
            mean,
            float(np.vecdot(deviations, deviations)),
            float(arr.min()),
            float(arr.max()),
        )

    def _fold_pending(self) -> None:
        """Fold the kept-whole batches whose moments were not taken yet."""
        if self._unfolded:
            pending = self._unfolded
            self._unfolded = []
            self._fold(np.concatenate(pending) if len(pending) > 1 else pending[0])

    def _merge_moments(self, n: int, mean: float, m2: float, lo: float, hi: float) -> None:
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def _values_sorted(self) -> FloatArray:
        if not self._chunks:
            return np.empty(0, dtype=np.float64)
        if len(self._chunks) > 1:
            values = np.concatenate(self._chunks)
            values.sort()
        else:
            values = np.sort(self._chunks[0])
        self._chunks = [values]
        return values

    def _thin(self, sorted_values: FloatArray, factor: int) -> FloatArray:
        """Keep every ``factor``-th sorted value, alternating the offset between calls."""
        offset = self._compactions % factor
        self._compactions += 1
        return sorted_values[offset::factor]

    def _compact_if_full(self) -> None:
        if self._retained <= self.capacity:
            return
        self._fold_pending()
        values = self._values_sorted()
        while values.size > self.capacity:
            values = self._thin(values, 2)
            self.weight *= 2
        self._chunks = [values]
        self._retained = values.size


@dataclass
class CategoricalAccumulator:
    """Mergeable running profile of one categorical feature."""

    counts: Counter[str] = field(default_factory=Counter)
    nulls: int = 0

    def add_counts(self, counts: Mapping[str, int], nulls: int = 0) -> None:
        """Add a batch already counted per category (e.g. by a hash count)."""
        self.counts.update(counts)
        self.nulls += nulls

    def merge(self, other: CategoricalAccumulator) -> None:
        """Fold another accumulator of the same feature into this one."""
        self.add_counts(other.counts, other.nulls)

    def finish(self, top_k: int = DEFAULT_TOP_K) -> CategoricalProfile:
        """The profile: the ``top_k`` categories by count (then name) and an "other" bucket."""
        total = sum(self.counts.values())
        ordered = sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))
        top = [CategoryFrequency(v, c, c / total) for v, c in ordered[:top_k]]
        other = total - sum(c.count for c in top)
        return CategoricalProfile(
            count=total,
            nulls=self.nulls,
            distinct=len(self.counts),
            top=top,
            other_count=other,
            other_fraction=other / total if total else 0.0,
        )
