"""Benchmark scenarios: ``python -m xslide.bench SCENARIO [--json out.json] [--markdown]``.

Scenarios (2 predictors, 2 targets, known truth, fixed seed, rows in random order):

- ``small``: grid 10x10x10, 20 rows/bin, window ±1;
- ``medium``: grid 50x20x30, 100 rows/bin (3M rows), window ±1;
- ``sparse``: grid 100x50x50, 10 rows/bin in a random 50% of bins, window ±2;
- ``large``: 100M rows over 50x20x30x18 (18 sectors; window ±1 in the first three dims, none
  across sectors), written once to parquet in ``--data-dir`` and streamed by row groups;
- ``all``: small, medium and sparse (``large`` only when asked: it writes ~6 GB).

Every in-memory scenario times ``make_sliding_window_fit`` end to end (DataFrame in, DataFrame
out, warm: after the numba compile of the first call), without and with the exact median, and
in the same process the **floor** (one ``np.bincount`` over the flat bin ids per input column:
the least work that touches every value once) and the **naive** baseline (each window's rows
gathered explicitly with a boolean mask and fitted with ``np.linalg.lstsq``, timed on a sample
of centers and extrapolated). It also times ``predict`` of the fit at the rows, moved off the
bin centers, with ``method='nearest'`` and ``'linear'`` (rows per second, one core).
``--scale`` shrinks the rows (CI runs ``small --scale 0.01``).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Scenario:
    shape: tuple[int, ...]
    rows_per_bin: int
    window: tuple[int, ...]
    occupancy: float = 1.0


SCENARIOS = {
    "small": Scenario((10, 10, 10), 20, (1, 1, 1)),
    "medium": Scenario((50, 20, 30), 100, (1, 1, 1)),
    "sparse": Scenario((100, 50, 50), 10, (2, 2, 2), occupancy=0.5),
}
LARGE = Scenario((50, 20, 30, 18), 100_000_000 // (50 * 20 * 30 * 18), (1, 1, 1, 0))
DIMS = ("xBin", "yBin", "zBin", "sector")
TARGETS, PREDICTORS = ["y1", "y2"], ["x1", "x2"]
NO_MEDIAN = {"y1": ["mean", "std", "entries"], "y2": ["mean", "std", "entries"]}


def make_rows(
    s: Scenario, seed: int = 42, scale: float = 1.0, bins: np.ndarray | None = None
) -> pd.DataFrame:
    """Rows with 2 predictors, 2 targets and weights: a bin-dependent linear truth plus noise.

    ``bins`` restricts the rows to these flat bins (the large scenario writes them in parts).
    """
    rng = np.random.default_rng(seed)
    n_bins = int(np.prod(s.shape))
    if bins is None:
        bins = np.arange(n_bins)
        if s.occupancy < 1.0:
            bins = np.sort(rng.choice(n_bins, int(n_bins * s.occupancy), replace=False))
    per_bin = max(1, round(s.rows_per_bin * scale))
    flat = np.repeat(bins, per_bin)
    rng.shuffle(flat)  # real data arrive in track order, not bin order
    idx = np.unravel_index(flat, s.shape)
    n = flat.size
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    data = {d: i.astype(np.int64) for d, i in zip(DIMS, idx, strict=False)}
    base = 0.01 * idx[0] - 0.02 * idx[1] + 0.03 * idx[2]
    data.update(
        x1=x1,
        x2=x2,
        y1=base + 2.0 * x1 - 1.0 * x2 + rng.normal(0, 0.1, n),
        y2=-base + 0.5 * x1 + 3.0 * x2 + rng.normal(0, 0.1, n),
        w=rng.uniform(0.5, 2.0, n),
    )
    return pd.DataFrame(data)


def _time(func, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def _peak_allocation_mb(func) -> float:
    """Peak memory allocated while ``func`` runs, above what was allocated before (MB).

    numpy reports its buffers to tracemalloc, so this counts every array the fit creates
    whatever the allocator keeps from earlier runs (RSS would not show reused pages).
    """
    import tracemalloc

    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        func()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - before) / 2**20


def _floor_seconds(df: pd.DataFrame, dims: list[str], shape: tuple[int, ...]) -> float:
    """One np.bincount over the flat bin ids per input column (the flat ids given)."""
    flat = np.ravel_multi_index([df[d].to_numpy() for d in dims], shape)
    columns = [df[c].to_numpy() for c in [*dims, *PREDICTORS, *TARGETS]]

    def once():
        for column in columns:
            np.bincount(flat, weights=column, minlength=int(np.prod(shape)))

    return _time(once, 3)[0]


def _naive_seconds(df, dims, shape, window, n_centers: int, sample: int = 20) -> float:
    """Explicit window gathering and lstsq per center, on a sample, extrapolated."""
    rng = np.random.default_rng(0)
    bins = np.column_stack([df[d].to_numpy() for d in dims])
    observed = np.unique(bins, axis=0)
    centers = observed[rng.choice(len(observed), min(sample, len(observed)), replace=False)]
    x = np.column_stack([np.ones(len(df)), df[PREDICTORS].to_numpy()])
    ys = df[TARGETS].to_numpy()
    half = np.asarray(window)
    t0 = time.perf_counter()
    for center in centers:
        mask = np.all(np.abs(bins - center) <= half, axis=1)
        xw = x[mask]
        for t in range(ys.shape[1]):
            yw = ys[mask, t]
            np.linalg.lstsq(xw, yw, rcond=None)
            yw.mean(), yw.std(ddof=1), np.median(yw)
    return (time.perf_counter() - t0) / len(centers) * n_centers


def _predict_rows_per_s(df, dims, shape, window, repeat: int) -> dict:
    """Rows per second of ``predict``, nearest and linear, at the rows moved off the centers.

    Uniform offsets within each bin make ``method='linear'`` blend 2^D models per row, as it
    does for physical positions, instead of landing on a center.
    """
    import xslide

    fit = xslide.fit(df, dims, TARGETS, PREDICTORS, window, aggregation=["entries"])
    rng = np.random.default_rng(1)
    rows = df[PREDICTORS].copy()
    for dim, size in zip(dims, shape, strict=True):
        rows[dim] = np.clip(df[dim] + rng.uniform(-0.5, 0.5, len(df)), 0, size - 1)
    figures = {}
    for method in ("nearest", "linear"):
        xslide.predict(fit, rows.iloc[:100], method=method)  # compiles the kernel
        seconds, _ = _time(lambda m=method: xslide.predict(fit, rows, method=m), repeat)
        figures[f"predict_{method}_rows_per_s"] = len(rows) / seconds
    return figures


def _fresh_process_seconds(name: str, scale: float) -> float:
    """A new interpreter: import xslide + the first fit, numba's disk cache already warm."""
    s = SCENARIOS[name]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.npz"
        df = make_rows(s, scale=scale)
        np.savez(path, **{c: df[c].to_numpy() for c in df.columns})
        dims = list(DIMS[: len(s.shape)])
        window = dict(zip(dims, s.window, strict=True))
        code = (
            "import time, numpy as np\n"
            f"data = dict(np.load({str(path)!r}))\n"
            "t0 = time.perf_counter()\n"
            "import pandas as pd, xslide\n"
            "df = pd.DataFrame(data)\n"
            f"xslide.make_sliding_window_fit(df, {dims}, {window}, "
            f"{TARGETS}, {PREDICTORS}, aggregation_functions={NO_MEDIAN})\n"
            "print(time.perf_counter() - t0)\n"
        )
        for _ in range(2):  # the first run fills the numba cache, the second is measured
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
    return float(done.stdout.strip().splitlines()[-1])


def run(name: str, repeat: int = 5, scale: float = 1.0, **window_options) -> dict:
    """Run one in-memory scenario and return its figures (``window_options``: boundary, kernel)."""
    import xslide

    s = SCENARIOS[name]
    dims = list(DIMS[: len(s.shape)])
    window = dict(zip(dims, s.window, strict=True))
    df = make_rows(s, scale=scale)

    def fit(aggregation, **options):
        return xslide.make_sliding_window_fit(
            df,
            dims,
            window,
            TARGETS,
            PREDICTORS,
            aggregation_functions=aggregation,
            **window_options,
            **options,
        )

    t0 = time.perf_counter()
    fit(None)  # compiles (or loads from the numba disk cache) every kernel
    first_call = time.perf_counter() - t0
    t_ols, out = _time(lambda: fit(NO_MEDIAN), repeat)
    t_median, _ = _time(lambda: fit(None), max(1, repeat // 2))
    fit(NO_MEDIAN, weights_column="w")
    t_weighted, _ = _time(lambda: fit(NO_MEDIAN, weights_column="w"), repeat)
    t_clip, _ = _time(lambda: fit(NO_MEDIAN, n_sigma_cut=3.0), 1)
    n_bins = int(np.prod(s.shape))
    floor = _floor_seconds(df, dims, s.shape)
    naive = _naive_seconds(df, dims, s.shape, s.window, len(out))
    predict = _predict_rows_per_s(df, dims, s.shape, window, max(1, repeat // 2))
    return {
        "scenario": name,
        **{k: str(v) for k, v in window_options.items()},
        "rows": len(df),
        "bins": n_bins,
        "fitted_pct": 100.0 * int(out["y1_intercept"].notna().sum()) / n_bins,
        "skipped_pct": 100.0 * float(out.quality_flag.str.contains("insufficient").mean()),
        "avg_window_bins": float(out.n_neighbors_used.mean()),
        "first_call_s": first_call,
        "ols_s": t_ols,
        "with_median_s": t_median,
        "weighted_s": t_weighted,
        "weights_cost": t_weighted / t_ols,
        "n_sigma_cut_s": t_clip,
        "rows_per_s": len(df) / t_ols,
        "bins_per_s": n_bins / t_ols,
        "floor_s": floor,
        "vs_floor": t_ols / floor,
        "naive_s": naive,
        "naive_vs_ols": naive / t_ols,
        **predict,
        "input_mb": df.memory_usage(index=False).sum() / 2**20,
        "fit_alloc_mb": _peak_allocation_mb(lambda: fit(NO_MEDIAN)),
        "median_alloc_mb": _peak_allocation_mb(lambda: fit(None)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run_large_dask(data_dir: Path, workers: int, scale: float = 1.0) -> dict:
    """The large scenario's statistics on a local dask cluster of ``workers`` processes."""
    import xslide

    path = Path(data_dir) / f"large_{scale:g}.parquet"
    if not path.exists():
        code = f"from xslide.bench import write_large; write_large({str(path)!r}, {scale!r})"
        subprocess.run([sys.executable, "-c", code], check=True)
    distributed = _optional("distributed")
    dd = _optional("dask.dataframe")
    dims = list(DIMS)
    with (
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        # two row groups (2M rows) per partition: a worker holds one partition at a time
        ddf = dd.read_parquet(path, columns=[*dims, *PREDICTORS, *TARGETS], split_row_groups=2)
        xslide.bin_stats(ddf.partitions[:2], dims, TARGETS, PREDICTORS)  # warm the workers
        t0 = time.perf_counter()
        stats = xslide.bin_stats(ddf, dims, TARGETS, PREDICTORS)
        elapsed = time.perf_counter() - t0
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    rows = int(stats.attrs["n_rows_input"])
    return {
        "scenario": "large",
        "dask_workers": workers,
        "rows": rows,
        "stats_s": elapsed,
        "rows_per_s": rows / elapsed,
        "peak_rss_per_worker_mb": max(peaks.values()),
    }


def run_large(data_dir: Path, scale: float = 1.0) -> dict:
    """Write the large scenario to parquet once, then stream it: time, throughput, peak RSS."""
    import xslide
    from xslide import sources as stream

    path = Path(data_dir) / f"large_{scale:g}.parquet"
    if not path.exists():  # in a child process: its memory must not count as the stream's
        code = f"from xslide.bench import write_large; write_large({str(path)!r}, {scale!r})"
        subprocess.run([sys.executable, "-c", code], check=True)
    s = LARGE
    dims = list(DIMS)
    window = dict(zip(dims, s.window, strict=True))
    accumulate_seconds = []
    original = stream.accumulate

    def timed(*args, **kwargs):
        t0 = time.perf_counter()
        result = original(*args, **kwargs)
        accumulate_seconds.append(time.perf_counter() - t0)
        return result

    stream.accumulate = timed  # instrument the row pass alone
    try:
        t0 = time.perf_counter()
        stats = xslide.bin_stats(str(path), dims, TARGETS, PREDICTORS)
        t_stream = time.perf_counter() - t0
    finally:
        stream.accumulate = original
    t0 = time.perf_counter()
    fit = xslide.fit(stats, window=window)
    t_fit = time.perf_counter() - t0
    rows = int(stats.attrs["n_rows_input"])
    return {
        "scenario": "large",
        "rows": rows,
        "bins": int(np.prod(s.shape)),
        "fitted_pct": float((fit.quality_flag.sel(target="y1") == 0).mean() * 100),
        "skipped_pct": float((fit.quality_flag.sel(target="y1") == 2).mean() * 100),
        "avg_window_bins": float(fit.n_neighbors_used.mean()),
        "stream_s": t_stream,
        "stream_rows_per_s": rows / t_stream,
        "stats_pass_rows_per_s": rows / sum(accumulate_seconds),
        "fit_from_stats_s": t_fit,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def write_large(path: str, scale: float = 1.0) -> None:
    """Write the large scenario to parquet in parts (memory bounded by one part)."""
    pa = _optional("pyarrow")
    pq = _optional("pyarrow.parquet")
    s = LARGE
    path = Path(path)
    partial = path.with_suffix(".partial")
    writer = None
    for k, bins in enumerate(np.array_split(np.arange(int(np.prod(s.shape))), 20)):
        table = pa.Table.from_pandas(make_rows(s, seed=k, scale=scale, bins=bins))
        writer = writer or pq.ParquetWriter(partial, table.schema)
        writer.write_table(table, row_group_size=1 << 20)
    writer.close()
    partial.replace(path)


def _optional(module: str):
    """Import an optional module with a clear message (pyarrow for the large scenario)."""
    from ._optional import require

    return require(module, "the large benchmark scenario (parquet)")


def run_raw(name: str, fitter: str, n_jobs: int, scale: float = 1.0) -> dict:
    """Time a statsmodels fitter on one scenario: seconds per 1k windows, serial and parallel."""
    import xslide

    s = SCENARIOS[name]
    dims = list(DIMS[: len(s.shape)])
    df = make_rows(s, scale=scale)
    window = dict(zip(dims, s.window, strict=True))
    aggregation = {"y1": ["entries"], "y2": ["entries"]}

    def fit(jobs: int):
        return xslide.make_sliding_window_fit(
            df,
            dims,
            window,
            TARGETS,
            PREDICTORS,
            fitter=fitter,
            aggregation_functions=aggregation,
            partition_strategy={"n_jobs": jobs},
            progress=False,
        )

    t_serial, out = _time(lambda: fit(1), 1)
    t_parallel, _ = _time(lambda: fit(n_jobs), 1)
    windows = len(out) * 2  # one fit per center and target
    return {
        "scenario": name,
        "fitter": fitter,
        "windows": windows,
        "serial_s_per_1k": 1000 * t_serial / windows,
        "n_jobs": n_jobs,
        "parallel_s_per_1k": 1000 * t_parallel / windows,
        "speedup": t_serial / t_parallel,
    }


def _describe(r: dict) -> str:
    if "dask_workers" in r:
        return (
            f"large on dask, {r['dask_workers']} worker(s): {r['rows']:,} rows -> statistics in "
            f"{r['stats_s']:.1f} s ({r['rows_per_s'] / 1e6:.1f} M rows/s incl. parquet), peak "
            f"RSS per worker {r['peak_rss_per_worker_mb']:.0f} MB"
        )
    if r["scenario"] == "large":
        return (
            f"large: {r['rows']:,} rows streamed from parquet, {r['bins']:,} bins, "
            f"{r['fitted_pct']:.1f}% fitted, {r['skipped_pct']:.1f}% below min_entries, "
            f"{r['avg_window_bins']:.1f} bins per window | stream {r['stream_s']:.1f} s "
            f"({r['stream_rows_per_s'] / 1e6:.1f} M rows/s incl. parquet decoding; row pass "
            f"alone {r['stats_pass_rows_per_s'] / 1e6:.1f} M rows/s) | fit from stats "
            f"{r['fit_from_stats_s']:.2f} s | peak RSS {r['peak_rss_mb']:.0f} MB"
        )
    options = ", ".join(str(r[k]) for k in ("boundary", "kernel") if k in r)
    return "\n".join(
        [
            f"{r['scenario']}{f' ({options})' if options else ''}: {r['rows']:,} rows, "
            f"{r['bins']:,} bins, {r['fitted_pct']:.1f}% fitted, {r['skipped_pct']:.1f}% of "
            f"centers below min_entries, {r['avg_window_bins']:.1f} bins per window",
            f"  mean/std/entries + OLS   {r['ols_s']:.3f} s  ({r['rows_per_s'] / 1e6:.1f} M "
            f"rows/s, {r['bins_per_s'] / 1e3:.0f} k bins/s); {r['vs_floor']:.1f}x the floor "
            f"({r['floor_s']:.3f} s); naive gathering ~{r['naive_s']:.1f} s = "
            f"{r['naive_vs_ols']:,.0f}x slower",
            f"  + exact median           {r['with_median_s']:.3f} s",
            f"  weighted (WLS)           {r['weighted_s']:.3f} s ({r['weights_cost']:.2f}x)",
            f"  OLS with n_sigma_cut=3   {r['n_sigma_cut_s']:.3f} s",
            f"  predict at the rows      nearest {r['predict_nearest_rows_per_s'] / 1e6:.1f} M "
            f"rows/s, linear {r['predict_linear_rows_per_s'] / 1e6:.1f} M rows/s",
            f"  first call (numba)       {r['first_call_s']:.2f} s"
            + (f"; fresh process {r['fresh_process_s']:.2f} s" if "fresh_process_s" in r else ""),
            f"  memory: input columns {r['input_mb']:.0f} MB, peak allocation of the fit "
            f"{r['fit_alloc_mb']:.0f} MB ({r['median_alloc_mb']:.0f} MB with the median), "
            f"process peak RSS {r['peak_rss_mb']:.0f} MB",
        ]
    )


def _markdown(results: list[dict]) -> str:
    head = (
        "| scenario | rows | OLS + mean/std/entries | + median | weighted | vs floor | "
        "naive / xslide | fit allocation (input) |\n|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in results:
        if r["scenario"] == "large" or "ols_s" not in r:
            continue
        lines.append(
            f"| {r['scenario']} | {r['rows']:,} | {r['ols_s']:.3f} s | "
            f"{r['with_median_s']:.3f} s | {r['weights_cost']:.2f}x | {r['vs_floor']:.1f}x | "
            f"{r['naive_vs_ols']:,.0f}x | {r['fit_alloc_mb']:.0f} MB ({r['input_mb']:.0f} MB) |"
        )
    return "\n".join(lines)


def _run_large_dask(args: argparse.Namespace) -> list[dict]:
    """The large scenario on each number of dask workers, and the scaling efficiency."""
    runs = []
    for workers in args.dask_workers:
        r = run_large_dask(Path(args.data_dir), workers, args.scale)
        print(_describe(r))
        runs.append(r)
    base = runs[0]["rows_per_s"] / runs[0]["dask_workers"]
    for run_ in runs[1:]:
        efficiency = run_["rows_per_s"] / (base * run_["dask_workers"])
        print(f"  scaling efficiency at {run_['dask_workers']} workers: {efficiency:.0%}")
    return runs


def _run_scenario(name: str, args: argparse.Namespace) -> list[dict]:
    """Run one scenario as the arguments say, print it and return its figures."""
    if args.fitter != "ols":
        r = run_raw(name, args.fitter, args.n_jobs, args.scale)
        print(
            f"{r['scenario']} {r['fitter']}: {r['windows']:,} window fits | serial "
            f"{r['serial_s_per_1k']:.2f} s per 1k windows | n_jobs={r['n_jobs']} "
            f"{r['parallel_s_per_1k']:.2f} s per 1k windows ({r['speedup']:.2f}x)"
        )
        return [r]
    if name == "large" and args.dask_workers:
        return _run_large_dask(args)
    if name == "large":
        r = run_large(Path(args.data_dir), args.scale)
    else:
        options = {}
        if args.boundary != "truncate":
            options["boundary"] = args.boundary
        if args.kernel != "uniform":
            options["kernel"] = args.kernel
        r = run(name, args.repeat, args.scale, **options)
        if args.fresh_process:
            r["fresh_process_s"] = _fresh_process_seconds(name, args.scale)
    print(_describe(r))
    return [r]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xslide.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", choices=[*SCENARIOS, "large", "all"])
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the rows")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--markdown", action="store_true", help="print a results table")
    parser.add_argument("--data-dir", default=".", help="where the large scenario's parquet is")
    parser.add_argument("--fresh-process", action="store_true", help="time import + first fit")
    parser.add_argument(
        "--fitter",
        choices=["ols", "glm", "rlm"],
        default="ols",
        help="glm/rlm: time statsmodels fits per window, serial and with --n-jobs processes",
    )
    parser.add_argument("--n-jobs", type=int, default=2, help="processes for --fitter glm/rlm")
    parser.add_argument(
        "--dask-workers", type=int, nargs="*", help="large: statistics on N dask workers (1 2)"
    )
    parser.add_argument("--boundary", default="truncate", help="boundary mode of the window")
    parser.add_argument("--kernel", default="uniform", help="kernel of the window")
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results = []
    for name in names:
        results += _run_scenario(name, args)
    if args.markdown:
        print(_markdown(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
