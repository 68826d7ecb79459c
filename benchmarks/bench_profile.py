"""Profile a 1,000,000-row x 20-column CSV with Kyklos vs the floor of parsing it once.

Run: ``.venv/bin/python benchmarks/bench_profile.py [--rows N] [--keep]``. Prints wall times
and ratios side by side; nothing is asserted (target: Kyklos within 2x of the floor).

- floor: ``pyarrow.csv.read_csv`` of the file (all 20 columns, multithreaded), once.
- kyklos: ``kyklos.worker.profile.run_profile`` end to end: schema check, streaming
  parse, sha256 of the bytes, per-feature profile (exact quantile bins), seeded sample,
  profile.json and sample.parquet written.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv

from kyklos.api.dataset import DatasetSpec
from kyklos.worker.profile import run_profile

NUMERIC, CATEGORICAL = 15, 5


def generate(path: Path, rows: int) -> None:
    """Write a CSV with 15 numeric and 5 categorical columns (some nulls)."""
    rng = np.random.default_rng(0)
    columns: dict[str, pa.Array] = {}
    for i in range(NUMERIC):
        values = rng.normal(i, 1 + i, rows)
        values[rng.random(rows) < 0.01] = np.nan
        columns[f"num_{i}"] = pa.array(values, from_pandas=True)
    cities = np.array([f"city_{j}" for j in range(50)])
    for i in range(CATEGORICAL):
        columns[f"cat_{i}"] = pa.array(cities[rng.zipf(1.5, rows) % 50])
    pa_csv.write_csv(pa.table(columns), path)


def timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="kyklos-bench-profile-"))
    try:
        data = work / "data.csv"
        t = timed(lambda: generate(data, args.rows))
        size_mb = data.stat().st_size / 1e6
        print(
            f"data: {args.rows:,} rows x {NUMERIC + CATEGORICAL} columns, "
            f"{size_mb:.0f} MB CSV (generated in {t:.1f}s)"
        )
        spec = DatasetSpec.model_validate(
            {
                "source": {"uri": data.as_uri()},
                "schema": {
                    "features": [{"name": f"num_{i}", "type": "numeric"} for i in range(NUMERIC)]
                    + [{"name": f"cat_{i}", "type": "categorical"} for i in range(CATEGORICAL)]
                },
                "profile": {"sampleSize": 10_000, "bins": 10},
            }
        )
        floor, kyklos = [], []
        for r in range(args.repeat):
            floor.append(timed(lambda: pa_csv.read_csv(data)))

            def profile() -> None:
                run = run_profile(spec, "bench", "data", str(work / "store"))
                assert run.exit_code == 0, run.summary

            kyklos.append(timed(profile))
            print(f"  run {r + 1}: floor {floor[-1]:.2f}s  kyklos {kyklos[-1]:.2f}s")
        f, k = min(floor), min(kyklos)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print()
        print(f"{'':24}{'seconds':>10}{'x floor':>10}")
        print(f"{'floor (pyarrow parse)':24}{f:>10.2f}{1.0:>10.2f}")
        print(f"{'kyklos profile':24}{k:>10.2f}{k / f:>10.2f}   (target <= 2.00)")
        print(f"process peak RSS {peak:.0f} MiB")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
