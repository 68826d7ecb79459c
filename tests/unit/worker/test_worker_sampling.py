"""The seeded sample is uniform, bounded, ordered and independent of batch boundaries."""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from kyklos.worker.sampling import SeededSampler


def _sample(n: int, k: int, cuts: list[int], seed: int = 0) -> list[int]:
    table = pa.table({"row": np.arange(n)})
    sampler = SeededSampler(k, seed)
    bounds = [0, *sorted(c for c in cuts if c < n), n]
    for lo, hi in itertools.pairwise(bounds):
        sampler.add(table.slice(lo, hi - lo).to_batches()[0] if hi > lo else table.slice(0, 0))
    return sampler.table().column("row").to_pylist()


@settings(max_examples=100, deadline=None)
@given(n=st.integers(0, 500), k=st.integers(1, 80), cuts=st.lists(st.integers(0, 500)))
def test_the_sample_does_not_depend_on_how_the_stream_is_batched(
    n: int, k: int, cuts: list[int]
) -> None:
    one_pass = _sample(n, k, [])
    batched = _sample(n, k, cuts)
    assert batched == one_pass
    assert len(one_pass) == min(n, k)
    assert one_pass == sorted(set(one_pass))  # distinct rows, in original order


def test_another_seed_gives_another_sample() -> None:
    assert _sample(1000, 50, [], seed=0) != _sample(1000, 50, [], seed=1)


def test_the_sample_is_roughly_uniform() -> None:
    rows = np.array(_sample(100_000, 5000, [33_333, 66_666]))
    thirds = np.histogram(rows, bins=[0, 33_333, 66_666, 100_000])[0]
    assert np.all(np.abs(thirds - 5000 / 3) < 200)


def test_an_empty_stream_gives_an_empty_table_with_the_schema() -> None:
    schema = pa.schema([("x", pa.float64())])
    assert SeededSampler(10).table(schema).schema == schema
