"""Deterministic seeded row sampling over a stream of record batches.

Every row gets a uniform key from ``numpy.random.default_rng(seed)`` in row order; the
sample is the ``k`` rows with the smallest keys (a uniform sample without replacement),
returned in their original row order. The result depends only on the rows, their order
and the seed, not on how the stream was cut into batches.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


class SeededSampler:
    """Keeps a uniform seeded sample of at most ``k`` rows of a batch stream."""

    def __init__(self, k: int, seed: int = 0) -> None:
        self.k = k
        self.rows_seen = 0
        self._rng = np.random.default_rng(seed)
        self._keys = np.empty(0, dtype=np.float64)
        self._row_ids = np.empty(0, dtype=np.int64)
        self._parts: list[pa.Table] = []
        self._threshold = np.inf
        self._schema: pa.Schema | None = None

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Offer the next rows of the stream."""
        n = batch.num_rows
        if self._schema is None:
            self._schema = batch.schema
        keys = self._rng.random(n)
        offset = self.rows_seen
        self.rows_seen += n
        if self.k <= 0 or n == 0:
            return
        idx = np.flatnonzero(keys < self._threshold)
        if idx.size == 0:
            return
        cand = batch.take(pa.array(idx)) if idx.size < n else batch
        self._parts.append(
            pa.Table.from_batches([cand]) if isinstance(cand, pa.RecordBatch) else cand
        )
        self._keys = np.concatenate([self._keys, keys[idx]])
        self._row_ids = np.concatenate([self._row_ids, idx + offset])
        if self._keys.size >= self.k:
            # Only rows below the k-th smallest key so far can still make the sample.
            self._threshold = float(np.partition(self._keys, self.k - 1)[self.k - 1])
        if self._keys.size > 4 * self.k:
            self._prune()

    def _prune(self) -> None:
        """Drop the rows that can no longer be in the sample (cheap keys first, then rows)."""
        table = pa.concat_tables(self._parts)
        if self._keys.size > self.k:
            keep = np.argpartition(self._keys, self.k - 1)[: self.k]
            table = table.take(pa.array(keep))
            self._keys, self._row_ids = self._keys[keep], self._row_ids[keep]
        self._parts = [table]

    def table(self, schema: pa.Schema | None = None) -> pa.Table:
        """The sample in original row order (empty, with the stream's or the given schema)."""
        if not self._parts:
            schema = schema or self._schema
            return pa.table({}) if schema is None else schema.empty_table()
        self._prune()
        order = np.argsort(self._row_ids, kind="stable")
        return self._parts[0].take(pa.array(order)).combine_chunks()
