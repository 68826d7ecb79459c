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
        self._table: pa.Table | None = None
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
        if self._keys.size >= self.k:
            idx = np.flatnonzero(keys < self._keys.max())
            if idx.size == 0:
                return
        else:
            idx = np.arange(n)
        cand = batch.take(pa.array(idx))
        cand_table = pa.Table.from_batches([cand]) if isinstance(cand, pa.RecordBatch) else cand
        table = cand_table if self._table is None else pa.concat_tables([self._table, cand_table])
        all_keys = np.concatenate([self._keys, keys[idx]])
        all_ids = np.concatenate([self._row_ids, idx + offset])
        if all_keys.size > self.k:
            keep = np.argpartition(all_keys, self.k - 1)[: self.k]
            table = table.take(pa.array(keep))
            all_keys, all_ids = all_keys[keep], all_ids[keep]
        self._table, self._keys, self._row_ids = table, all_keys, all_ids

    def table(self, schema: pa.Schema | None = None) -> pa.Table:
        """The sample in original row order (empty, with the stream's or the given schema)."""
        if self._table is None:
            schema = schema or self._schema
            return pa.table({}) if schema is None else schema.empty_table()
        order = np.argsort(self._row_ids, kind="stable")
        return self._table.take(pa.array(order)).combine_chunks()
