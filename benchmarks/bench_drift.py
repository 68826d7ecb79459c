"""Per-feature drift: Kyklos's engine vs Evidently vs a naive SciPy loop vs the floor.

Run: ``.venv/bin/python benchmarks/bench_drift.py [--small-only]``. Prints wall times,
ratios and peak memory side by side; nothing is asserted. Targets: Kyklos >= 10x faster
than Evidently, within 3x of the floor, peak extra memory < 2x the input arrays.

Cases: 100k reference x 100k current rows, 20 numeric + 5 categorical columns; and
1M x 1M rows, 20 numeric columns. Data is in memory before timing starts.

- kyklos: ``kyklos.worker.drift.compare_tables`` (what ``kyklos worker drift`` runs) with
  the default methods (psi, js), all statistics for every feature: numeric PSI, KS
  statistic, Wasserstein-1, JS from one sort per column (the KS p-value, as in
  production, only when a feature is judged by ks); categorical chi-square, JS, PSI from
  Arrow hash counts.
- evidently: ``Report([DataDriftPreset()]).run(current, reference)`` of Evidently 0.7.x in
  its own virtualenv ``benchmarks/.venv-evidently`` (pandas < 3; not a Kyklos dependency),
  created on first use with pip; the column is skipped, with the reason, when that fails.
- naive: a straightforward SciPy pass per column (ks_2samp, wasserstein_distance,
  np.quantile + np.histogram PSI, jensenshannon; np.unique counts + chisquare).
- floor: one sort of each numeric column (both sides), one hash count (Arrow
  value_counts) of each categorical column; columns are taken without a copy, as the
  engine takes them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import stats
from scipy.spatial.distance import jensenshannon

from kyklos.logic import drift_stats as ds
from kyklos.worker.drift import compare_tables
from kyklos.worker.io import FeatureKind

HERE = Path(__file__).resolve().parent
EVIDENTLY_VENV = HERE / ".venv-evidently"
EVIDENTLY_SCRIPT = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2]); repeat = int(sys.argv[3])
num = [c for c in ref.columns if c.startswith("num_")]
cat = [c for c in ref.columns if c.startswith("cat_")]
definition = DataDefinition(numerical_columns=num, categorical_columns=cat)
r = Dataset.from_pandas(ref, data_definition=definition)
c = Dataset.from_pandas(cur, data_definition=definition)
best = float("inf")
for _ in range(repeat):
    t = time.perf_counter()
    snapshot = Report([DataDriftPreset()]).run(c, r)
    best = min(best, time.perf_counter() - t)
values = {m["config"]["column"]: m["value"] for m in snapshot.dict()["metrics"]
          if "column" in m.get("config", {})}
print(json.dumps({"seconds": best, "values": values}))
"""


def make_tables(rows: int, numeric: int, categorical: int) -> tuple[pa.Table, pa.Table]:
    """Reference and current tables; half the numeric and some categorical columns shift."""
    rng = np.random.default_rng(0)
    cities = np.array([f"city_{j}" for j in range(50)])
    ref: dict[str, pa.Array] = {}
    cur: dict[str, pa.Array] = {}
    for i in range(numeric):
        ref[f"num_{i}"] = pa.array(rng.normal(i, 1 + i, rows))
        shift = 0.2 * (1 + i) if i % 2 else 0.0
        cur[f"num_{i}"] = pa.array(rng.normal(i + shift, 1 + i, rows))
    for i in range(categorical):
        ref[f"cat_{i}"] = pa.array(cities[rng.zipf(1.5, rows) % 50])
        cur[f"cat_{i}"] = pa.array(cities[(rng.zipf(1.5, rows) + (i % 2)) % 50])
    return pa.table(ref), pa.table(cur)


def kinds_of(table: pa.Table) -> dict[str, FeatureKind]:
    return {n: ("numeric" if n.startswith("num_") else "categorical") for n in table.column_names}


def kyklos_engine(ref: pa.Table, cur: pa.Table) -> None:
    compare_tables(ref, cur, kinds_of(ref), "psi", "js", ds.Thresholds())


def naive_scipy(ref: dict[str, np.ndarray], cur: dict[str, np.ndarray]) -> None:
    for name, r in ref.items():
        c = cur[name]
        if r.dtype.kind == "f":
            stats.ks_2samp(r, c)
            stats.wasserstein_distance(r, c)
            edges = np.unique(np.quantile(r, np.linspace(0, 1, 11)))
            edges[0], edges[-1] = -np.inf, np.inf
            rh, ch = np.histogram(r, edges)[0], np.histogram(c, edges)[0]
            rf = np.where(rh == 0, 1e-4, rh / rh.sum())
            cf = np.where(ch == 0, 1e-4, ch / ch.sum())
            float(np.sum((cf - rf) * np.log(cf / rf)))
            jensenshannon(rh, ch)
        else:
            rv, rc = np.unique(r, return_counts=True)
            cv, cc = np.unique(c, return_counts=True)
            cats = np.union1d(rv, cv)
            rcount = np.zeros(cats.size)
            ccount = np.zeros(cats.size)
            rcount[np.searchsorted(cats, rv)] = rc
            ccount[np.searchsorted(cats, cv)] = cc
            expected = np.maximum(rcount / rcount.sum(), 1e-4)
            expected = expected / expected.sum() * ccount.sum()
            stats.chisquare(ccount, expected)
            jensenshannon(rcount, ccount)


def floor(ref: pa.Table, cur: pa.Table) -> None:
    for name in ref.column_names:
        for table in (ref, cur):
            chunks = table.column(name)
            # combine_chunks copies even a single chunk; the engine does not pay for that.
            col = chunks.chunk(0) if chunks.num_chunks == 1 else chunks.combine_chunks()
            if name.startswith("num_"):
                np.sort(col.to_numpy())
            else:
                pc.value_counts(col)


def best_of(fn: Callable[[], None], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def kyklos_peak_memory(ref: pa.Table, cur: pa.Table) -> tuple[int, int]:
    """Peak bytes allocated by the engine (NumPy via tracemalloc + Arrow's pool)."""
    pool = pa.default_memory_pool()
    arrow_before = pool.bytes_allocated()
    tracemalloc.start()
    kyklos_engine(ref, cur)
    _, numpy_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    arrow_peak = max(pool.max_memory() - arrow_before, 0)
    return numpy_peak, arrow_peak


def ensure_evidently() -> tuple[Path | None, str]:
    python = EVIDENTLY_VENV / "bin" / "python"
    if not python.exists():
        print("creating benchmarks/.venv-evidently (Evidently 0.7.x, pandas<3) ...", flush=True)
        try:
            subprocess.run(
                ["python3", "-m", "venv", str(EVIDENTLY_VENV)], check=True, capture_output=True
            )
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    "evidently>=0.7,<0.8",
                    "pandas<3",
                    "pyarrow",
                ],
                check=True,
                capture_output=True,
            )
        except (subprocess.CalledProcessError, OSError) as err:
            return None, f"cannot install Evidently: {err}"
    probe = subprocess.run(
        [str(python), "-c", "import evidently, pyarrow; print(evidently.__version__)"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return None, "Evidently does not import: " + (probe.stderr.strip().splitlines() or ["?"])[
            -1
        ]
    return python, probe.stdout.strip()


def run_evidently(
    python: Path, ref: pa.Table, cur: pa.Table, repeat: int, timeout: float
) -> tuple[float | None, str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="kyklos-bench-drift-") as tmp:
        rp, cp = Path(tmp) / "ref.parquet", Path(tmp) / "cur.parquet"
        pq.write_table(ref, rp)
        pq.write_table(cur, cp)
        try:
            proc = subprocess.run(
                [str(python), "-c", EVIDENTLY_SCRIPT, str(rp), str(cp), str(repeat)],
                capture_output=True,
                text=True,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return None, f"did not finish within {timeout:.0f}s (so: > {timeout:.0f}s)", {}
    if proc.returncode != 0:
        return None, "Evidently failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1], {}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return float(result["seconds"]), "", {k: float(v) for k, v in result["values"].items()}


def bench(
    label: str,
    rows: int,
    numeric: int,
    categorical: int,
    repeat: int,
    evidently: tuple[Path | None, str],
    evidently_timeout: float,
) -> None:
    ref, cur = make_tables(rows, numeric, categorical)
    input_bytes = ref.nbytes + cur.nbytes
    print(
        f"\n== {label}: {rows:,} x {rows:,} rows, {numeric} numeric + {categorical} "
        f"categorical; input arrays {input_bytes / 2**20:.0f} MiB"
    )
    ref_np = {n: ref.column(n).to_numpy() for n in ref.column_names}
    cur_np = {n: cur.column(n).to_numpy() for n in cur.column_names}
    # the naive pass counts categories as NumPy string arrays (what most scripts do)
    ref_np = {n: (v.astype(str) if v.dtype == object else v) for n, v in ref_np.items()}
    cur_np = {n: (v.astype(str) if v.dtype == object else v) for n, v in cur_np.items()}

    times: dict[str, float | None] = {}
    # Interleaved, best of each: the machine is shared, and the ratio matters most here.
    kyklos_runs, floor_runs = [], []
    for _ in range(repeat):
        kyklos_runs.append(best_of(lambda: kyklos_engine(ref, cur), 1))
        floor_runs.append(best_of(lambda: floor(ref, cur), 1))
    times["kyklos"], times["floor"] = min(kyklos_runs), min(floor_runs)
    print(f"  kyklos {times['kyklos']:.3f}s, floor {times['floor']:.3f}s", flush=True)
    times["naive scipy"] = best_of(lambda: naive_scipy(ref_np, cur_np), max(1, repeat - 1))
    print(f"  naive scipy {times['naive scipy']:.3f}s", flush=True)
    note = ""
    ev_values: dict[str, float] = {}
    python, why = evidently
    if python is None:
        times["evidently"], note = None, why
    else:
        times["evidently"], note, ev_values = run_evidently(python, ref, cur, 1, evidently_timeout)
    k = times["kyklos"]
    assert k is not None
    print(f"{'engine':16}{'seconds':>10}{'vs kyklos':>12}")
    for name in ("kyklos", "evidently", "naive scipy", "floor"):
        t = times[name]
        if t is None:
            print(f"{name:16}{'skipped':>10}   {note}")
        else:
            print(f"{name:16}{t:>10.3f}{t / k:>11.1f}x")
    f = times["floor"]
    assert f is not None
    e = times["evidently"]
    print(f"kyklos / floor = {k / f:.2f} (target <= 3)", end="")
    print(f";  evidently / kyklos = {e / k:.1f} (target >= 10)" if e else "")
    if ev_values:
        # Same definitions (docs/architecture.md §8): Wasserstein / reference std, JS distance (ln).
        _, details = compare_tables(ref, cur, kinds_of(ref), "wasserstein", "js", ds.Thresholds())
        diffs = [abs(details[c]["score"] - v) for c, v in ev_values.items() if c in details]
        print(
            f"agreement with Evidently's per-column scores ({len(diffs)} columns): "
            f"max |difference| = {max(diffs):.2e}"
        )
    numpy_peak, arrow_peak = kyklos_peak_memory(ref, cur)
    print(
        f"kyklos peak extra memory: {(numpy_peak + arrow_peak) / 2**20:.0f} MiB "
        f"(NumPy {numpy_peak / 2**20:.0f}, Arrow {arrow_peak / 2**20:.0f}) = "
        f"{(numpy_peak + arrow_peak) / input_bytes:.2f}x the input arrays (target < 2)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-only", action="store_true", help="skip the 1M x 1M case")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument(
        "--evidently-timeout", type=float, default=1200, help="seconds per Evidently run"
    )
    args = parser.parse_args()
    evidently = (None, "--no-evidently") if args.no_evidently else ensure_evidently()
    if evidently[0] is not None:
        print(f"evidently {evidently[1]} (benchmarks/.venv-evidently)")
    else:
        print(f"evidently column skipped: {evidently[1]}")
    bench("mixed", 100_000, 20, 5, args.repeat, evidently, args.evidently_timeout)
    if not args.small_only:
        bench(
            "large numeric",
            1_000_000,
            20,
            0,
            max(1, args.repeat - 1),
            evidently,
            args.evidently_timeout,
        )


if __name__ == "__main__":
    main()
