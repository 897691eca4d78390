"""Benchmark scenarios: ``python -m xslide.bench SCENARIO [--json out.json] [--markdown]``.

Scenarios (2 predictors, 2 targets, known truth, fixed seed, rows in random order):

- ``small``: grid 10x10x10, 20 rows/bin, window ±1;
- ``medium``: grid 50x20x30, 100 rows/bin (3M rows), window ±1;
- ``sparse``: grid 100x50x50, 10 rows/bin in a random 50% of bins, window ±2;
- ``large``: 100M rows over 50x20x30x18 (18 sectors; window ±1 in the first three dims, none
  across sectors), written once to parquet in ``--data-dir`` and streamed by row groups;
- ``rolling``: a 1-D series ``t`` of 1M rows (one row per bin, in order), 2 predictors, 1
  target: windows ±50, trailing ``(100, 0)`` and ±1000 (seed API, mean/std/entries,
  ``min_entries=3``), printed next to statsmodels ``RollingOLS(window=101)`` with
  ``params_only=True``, timed once in the same run;
- ``all``: small, medium, sparse and rolling (``large`` only when asked: it writes ~6 GB).

Every in-memory scenario times ``make_sliding_window_fit`` end to end (DataFrame in, DataFrame
out, warm: after the numba compile of the first call): OLS with mean/std/entries, with the exact
median, with the LTM instead (``ltm`` and ``ltm_std``; also as a multiple of the median's time),
weighted, with ``n_sigma_cut=3``; the refit of saved statistics (``bin_stats`` once,
then ``stats.slidewin.fit``: the pipeline after the row pass); and ``predict`` of the fit at
the rows, moved off the bin centers, with ``method='nearest'`` and ``'linear'``. Every row is
also given as a multiple of the **floor**: one parallel pass (numba ``prange`` over row
blocks, every thread) that reads each input column of the scenario once and sums it, the least
work any fit of these rows must do (for ``large``: the parquet read of the columns plus that
pass). The **naive** baseline gathers each window's rows with a boolean mask and fits them with
``np.linalg.lstsq``, timed on a sample of centers and extrapolated.

``--fresh-process`` adds a new interpreter's ``import xslide`` and import + first fit (numba's
disk cache warm); ``--cold`` runs ``xslide demo`` in a new interpreter on empty temporary numba
and xslide caches, then again on the caches it filled, and reports the fit time the demo
prints (``--scale`` scales its 1e6 rows). ``--compare OLD.json NEW.json`` prints before/after
ratios of two saved ``--json`` runs as a markdown table. ``--scale`` shrinks the rows (CI runs
``small --scale 0.01``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
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

from ._numba import njit, num_threads, numba_available, prange


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
ROLLING_ROWS = 1_000_000
#: the rolling scenario's windows: JSON key -> window of ``t``
ROLLING_WINDOWS = {"ols_s": 50, "trailing_s": (100, 0), "wide_window_s": 1000}
LARGE = Scenario((50, 20, 30, 18), 100_000_000 // (50 * 20 * 30 * 18), (1, 1, 1, 0))
DIMS = ("xBin", "yBin", "zBin", "sector")
TARGETS, PREDICTORS = ["y1", "y2"], ["x1", "x2"]
NO_MEDIAN = {"y1": ["mean", "std", "entries"], "y2": ["mean", "std", "entries"]}
WITH_LTM = {t: [*aggs, "ltm", "ltm_std"] for t, aggs in NO_MEDIAN.items()}


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


@njit(cache=True)
def _sum(values: np.ndarray):
    """The sum of ``values`` in one sequential loop (vectorized for integers)."""
    total = values.dtype.type(0)
    for i in range(values.size):
        total += values[i]
    return total


@njit(cache=True, parallel=True)
def _block_sums(columns, n_blocks: int) -> np.ndarray:
    """Per row block, the sum of every column of ``columns`` (a tuple of equal-length arrays
    of one dtype) over that block: one parallel region, the blocks spread over the threads.

    The floor's kernel: it reads every value once, at memory speed, on every thread.
    """
    n = columns[0].size
    out = np.zeros((n_blocks, len(columns)), columns[0].dtype)
    for b in prange(n_blocks):
        start, stop = b * n // n_blocks, (b + 1) * n // n_blocks
        for j in range(len(columns)):
            out[b, j] = _sum(columns[j][start:stop])
    return out


def _one_pass(columns: list[np.ndarray]) -> None:
    """Read each column once: in parallel row blocks with numba, else numpy's sum.

    8-byte columns are read as int64 (their bits summed: the same memory traffic, one kernel
    launch for all of them, no slow float paths); other dtypes get a launch per dtype.
    """
    if not numba_available():
        for column in columns:
            column.sum()
        return
    groups: dict[np.dtype, list[np.ndarray]] = {}
    for column in columns:
        column = column.view(np.int64) if column.dtype.itemsize == 8 else column
        groups.setdefault(column.dtype, []).append(column)
    n_blocks = 4 * num_threads()
    for group in groups.values():
        _block_sums(tuple(group), n_blocks)


def _floor_seconds(df: pd.DataFrame, columns: list[str], repeat: int = 5) -> float:
    """The floor: one parallel pass reading each input column once (the fastest run)."""
    arrays = [np.ascontiguousarray(df[c].to_numpy()) for c in columns]
    _one_pass(arrays)  # compiles (or loads) the kernel for these dtypes
    times = []
    for _ in range(4 * repeat):  # cheap: the fastest of many, as the machine is shared
        t0 = time.perf_counter()
        _one_pass(arrays)
        times.append(time.perf_counter() - t0)
    return min(times)


def _parquet_floor_seconds(path: Path, columns: list[str]) -> float:
    """The large scenario's floor: read the columns from parquet by batches (the stream's
    size, decoded ahead by a reader thread as the stream's are), one pass each."""
    from .io import iter_batches
    from .sources import batch_rows, read_ahead

    first = next(iter_batches(path, columns, 1024, arrow=True))
    _one_pass([c.to_numpy(zero_copy_only=False) for c in first.columns])  # loads the kernel
    t0 = time.perf_counter()
    for batch in read_ahead(iter_batches(path, columns, batch_rows(len(columns)), arrow=True)):
        _one_pass([c.to_numpy(zero_copy_only=False) for c in batch.columns])
    return time.perf_counter() - t0


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
        figures[f"predict_{method}_s"] = seconds
        figures[f"predict_{method}_rows_per_s"] = len(rows) / seconds
    return figures


def _fresh_process_seconds(name: str, scale: float) -> dict[str, float]:
    """A new interpreter, numba's disk cache already warm: ``import xslide`` alone, and
    import + the first fit (pandas imported in the timed part: the fit needs it)."""
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
    importing = (
        "import time\nt0 = time.perf_counter()\nimport xslide\nprint(time.perf_counter() - t0)"
    )
    imports = [
        float(subprocess.run([sys.executable, "-c", importing], capture_output=True, text=True,
                             check=True).stdout.split()[-1])
        for _ in range(3)
    ]  # fmt: skip
    return {
        "import_s": min(imports),
        "fresh_process_s": float(done.stdout.strip().splitlines()[-1]),
    }


def run_cold_demo(scale: float = 1.0) -> dict:
    """``xslide demo`` in a new interpreter on empty numba and xslide caches, then again on the
    caches the first run filled: the fit time the demo prints, and the whole command's."""
    rows = max(1000, round(1_000_000 * scale))
    figures: dict = {"scenario": "demo", "rows": rows}
    with tempfile.TemporaryDirectory() as folder:
        env = {
            **os.environ,
            "NUMBA_CACHE_DIR": str(Path(folder) / "numba"),
            "XSLIDE_CACHE_DIR": str(Path(folder) / "xslide"),
        }
        command = [sys.executable, "-m", "xslide.cli", "demo", "--rows", str(rows), "--out",
                   str(Path(folder) / "demo")]  # fmt: skip
        for state in ("cold", "warm"):
            t0 = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
            figures[f"demo_{state}_process_s"] = time.perf_counter() - t0
            found = re.search(r"bins in ([0-9.]+) s", done.stdout)
            if found is None:
                raise RuntimeError(f"xslide demo printed no fit time:\n{done.stdout}")
            figures[f"demo_{state}_fit_s"] = float(found.group(1))
        cache = Path(folder) / "numba"
        figures["numba_specialisations"] = len(list(cache.rglob("*.nbc")))
        figures["numba_kernels"] = len(list(cache.rglob("*.nbi")))
    return figures


#: the timed rows of a scenario, in print order: JSON key, label (every one has a "vs floor")
ROWS = [
    ("ols_s", "mean/std/entries + OLS"),
    ("with_median_s", "+ exact median"),
    ("with_ltm_s", "+ LTM (ltm, ltm_std) instead of the median"),
    ("weighted_s", "weighted (WLS)"),
    ("n_sigma_cut_s", "OLS with n_sigma_cut=3"),
    ("refit_s", "refit from statistics"),
    ("predict_nearest_s", "predict nearest"),
    ("predict_linear_s", "predict linear"),
    ("stream_s", "stream from parquet"),
    ("fit_from_stats_s", "fit from statistics"),
    ("trailing_s", "trailing window (100, 0)"),
    ("wide_window_s", "window ±1000"),
    ("rolling_ols_s", "statsmodels RollingOLS(window=101), params_only"),
]
#: further figures ``--compare`` shows (lower is better), without a floor
OTHER_FIGURES = [
    ("first_call_s", "first call (numba compile or cache load)"),
    ("import_s", "fresh process: import xslide"),
    ("fresh_process_s", "fresh process, warm numba cache: import + first fit"),
    ("demo_cold_fit_s", "xslide demo fit, cold numba cache"),
    ("demo_warm_fit_s", "xslide demo fit, warm numba cache (new process)"),
    ("floor_s", "floor (one parallel pass over the columns)"),
    ("fit_alloc_mb", "peak allocation of the fit (MB)"),
    ("peak_rss_mb", "process peak RSS (MB)"),
]


def _with_ratios(figures: dict) -> dict:
    """Add ``KEY_vs_floor`` (time / floor) for every timed row present."""
    floor = figures.get("floor_s")
    for key, _ in ROWS:
        if floor and key in figures:
            figures[key.removesuffix("_s") + "_vs_floor"] = figures[key] / floor
    return figures


def run(name: str, repeat: int = 5, scale: float = 1.0, **window_options) -> dict:
    """Run one in-memory scenario and return its figures (``window_options``: boundary, kernel)."""
    import xslide

    s = SCENARIOS[name]
    dims = list(DIMS[: len(s.shape)])
    window = dict(zip(dims, s.window, strict=True))
    df = make_rows(s, scale=scale)

    def fit(aggregation, rows=df, **options):
        return xslide.make_sliding_window_fit(
            rows,
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
    fit(WITH_LTM)
    t_ltm, _ = _time(lambda: fit(WITH_LTM), max(1, repeat // 2))
    fit(NO_MEDIAN, weights_column="w")
    t_weighted, _ = _time(lambda: fit(NO_MEDIAN, weights_column="w"), repeat)
    fit(NO_MEDIAN, df.iloc[: min(len(df), 20_000)], n_sigma_cut=3.0)  # compiles its kernels
    t_clip, _ = _time(lambda: fit(NO_MEDIAN, n_sigma_cut=3.0), 1)
    stats = xslide.bin_stats(df, dims, TARGETS, PREDICTORS)
    stats.slidewin.fit(window=window, **window_options)
    t_refit, _ = _time(lambda: stats.slidewin.fit(window=window, **window_options), repeat)
    n_bins = int(np.prod(s.shape))
    floor = _floor_seconds(df, [*dims, *PREDICTORS, *TARGETS], max(5, repeat))
    naive = _naive_seconds(df, dims, s.shape, s.window, len(out))
    predict = _predict_rows_per_s(df, dims, s.shape, window, max(1, repeat // 2))
    return _with_ratios(
        {
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
            "with_ltm_s": t_ltm,
            "ltm_vs_median": t_ltm / t_median,
            "weighted_s": t_weighted,
            "weights_cost": t_weighted / t_ols,
            "n_sigma_cut_s": t_clip,
            "refit_s": t_refit,
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
    )


def make_series(scale: float = 1.0, seed: int = 42) -> pd.DataFrame:
    """The rolling scenario's rows: one per bin of ``t``, in order; a linear truth whose
    slopes drift slowly along ``t``, plus noise."""
    rng = np.random.default_rng(seed)
    n = max(4_000, round(ROLLING_ROWS * scale))
    t = np.arange(n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    drift = np.sin(t / 5_000.0)
    y = 1.0 + (2.0 + drift) * x1 - x2 + rng.normal(0, 0.1, n)
    return pd.DataFrame({"t": t, "x1": x1, "x2": x2, "y1": y})


def _rolling_ols_seconds(df: pd.DataFrame) -> float:
    """statsmodels ``RollingOLS`` over the trailing 101 rows, ``params_only=True`` (once)."""
    from statsmodels.regression.rolling import RollingOLS

    exog = np.column_stack([np.ones(len(df)), df[PREDICTORS].to_numpy()])
    t0 = time.perf_counter()
    RollingOLS(df["y1"].to_numpy(), exog, window=101).fit(params_only=True)
    return time.perf_counter() - t0


def run_rolling(repeat: int = 5, scale: float = 1.0, **window_options) -> dict:
    """The rolling scenario: a 1-D series with windows ±50, trailing (100, 0) and ±1000, and
    statsmodels ``RollingOLS`` on the same rows (``window_options``: boundary, kernel)."""
    import xslide

    df = make_series(scale)

    def fit(window):
        return xslide.make_sliding_window_fit(
            df, ["t"], {"t": window}, ["y1"], PREDICTORS,
            aggregation_functions={"y1": ["mean", "std", "entries"]}, min_entries=3,
            **window_options,
        )  # fmt: skip

    t0 = time.perf_counter()
    fit(50)  # compiles (or loads from the numba disk cache) every kernel
    figures: dict = {"scenario": "rolling", **{k: str(v) for k, v in window_options.items()}}
    figures.update(rows=len(df), bins=len(df), first_call_s=time.perf_counter() - t0)
    for key, window in ROLLING_WINDOWS.items():
        fit(window)
        times = []
        for _ in range(max(1, repeat)):  # the fastest run, as the machine is shared
            t0 = time.perf_counter()
            out = fit(window)
            times.append(time.perf_counter() - t0)
        figures[key] = min(times)
        if key == "ols_s":
            figures["fitted_pct"] = 100.0 * float(out["y1_intercept"].notna().mean())
    figures["wide_vs_ols"] = figures["wide_window_s"] / figures["ols_s"]
    figures["rolling_ols_s"] = _rolling_ols_seconds(df)
    figures["rolling_ols_vs_ols"] = figures["rolling_ols_s"] / figures["ols_s"]
    figures["rows_per_s"] = len(df) / figures["ols_s"]
    figures["floor_s"] = _floor_seconds(df, ["t", *PREDICTORS, "y1"], max(5, repeat))
    figures["vs_floor"] = figures["ols_s"] / figures["floor_s"]
    return _with_ratios(figures)


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

    # warm, as every scenario: numba loads its kernels and xarray its lazy imports on a first
    # batch of the file (one-off costs of a fresh process, not of streaming)
    pq = _optional("pyarrow.parquet")
    first = pq.ParquetFile(path).iter_batches(
        batch_size=1 << 18, columns=[*dims, *TARGETS, *PREDICTORS]
    )
    xslide.bin_stats([next(first)], dims, TARGETS, PREDICTORS)
    first.close()
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
    floor = _parquet_floor_seconds(path, [*dims, *PREDICTORS, *TARGETS])
    return _with_ratios(
        {
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
            "floor_s": floor,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
    )


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


def _floor_note(r: dict, key: str) -> str:
    """``  (N.Nx floor)`` for a timed row of a run that has a floor."""
    ratio = r.get(key.removesuffix("_s") + "_vs_floor")
    return f"  ({_times(ratio)} floor)" if ratio is not None else ""


def _times(ratio: float) -> str:
    """A ratio as ``2.3x`` (``1,038x`` when large)."""
    return f"{ratio:.1f}x" if ratio < 100 else f"{ratio:,.0f}x"


def _describe_rolling(r: dict) -> str:
    """The text lines of the ``rolling`` scenario."""
    options = ", ".join(str(r[k]) for k in ("boundary", "kernel") if k in r)
    return "\n".join(
        [
            f"rolling{f' ({options})' if options else ''}: {r['rows']:,} rows of a 1-D "
            f"series (one per bin), 2 predictors, {r['fitted_pct']:.1f}% fitted (±50)",
            f"  floor                    {r['floor_s']:.3g} s  (one parallel pass reading "
            "each input column once)",
            f"  window ±50               {r['ols_s']:.3f} s  ({r['rows_per_s'] / 1e6:.1f} M "
            f"rows/s){_floor_note(r, 'ols_s')}",
            f"  trailing (100, 0)        {r['trailing_s']:.3f} s" + _floor_note(r, "trailing_s"),
            f"  window ±1000             {r['wide_window_s']:.3f} s  "
            f"({r['wide_vs_ols']:.2f}x the ±50 time){_floor_note(r, 'wide_window_s')}",
            f"  statsmodels RollingOLS(window=101).fit(params_only=True)  "
            f"{r['rolling_ols_s']:.2f} s  ({_times(r['rolling_ols_vs_ols'])} the ±50 time)",
            f"  first call (numba)       {r['first_call_s']:.2f} s",
        ]
    )


def _describe(r: dict) -> str:
    if "dask_workers" in r:
        return (
            f"large on dask, {r['dask_workers']} worker(s): {r['rows']:,} rows -> statistics in "
            f"{r['stats_s']:.1f} s ({r['rows_per_s'] / 1e6:.1f} M rows/s incl. parquet), peak "
            f"RSS per worker {r['peak_rss_per_worker_mb']:.0f} MB"
        )
    if r["scenario"] == "demo":
        return (
            f"xslide demo, {r['rows']:,} rows, new process: fit on a cold numba cache "
            f"{r['demo_cold_fit_s']:.2f} s (command {r['demo_cold_process_s']:.1f} s; "
            f"{r['numba_specialisations']} specialisations of {r['numba_kernels']} kernels "
            f"compiled), on the warm cache {r['demo_warm_fit_s']:.2f} s (command "
            f"{r['demo_warm_process_s']:.1f} s)"
        )
    if r["scenario"] == "rolling":
        return _describe_rolling(r)
    if r["scenario"] == "large":
        return (
            f"large: {r['rows']:,} rows streamed from parquet, {r['bins']:,} bins, "
            f"{r['fitted_pct']:.1f}% fitted, {r['skipped_pct']:.1f}% below min_entries, "
            f"{r['avg_window_bins']:.1f} bins per window | stream {r['stream_s']:.1f} s "
            f"({r['stream_rows_per_s'] / 1e6:.1f} M rows/s incl. parquet decoding; row pass "
            f"alone {r['stats_pass_rows_per_s'] / 1e6:.1f} M rows/s){_floor_note(r, 'stream_s')}"
            f" | fit from stats {r['fit_from_stats_s']:.2f} s | floor (parquet read + one "
            f"pass) {r['floor_s']:.1f} s | peak RSS {r['peak_rss_mb']:.0f} MB"
        )
    options = ", ".join(str(r[k]) for k in ("boundary", "kernel") if k in r)
    fresh = ""
    if "fresh_process_s" in r:
        fresh = (
            f"; fresh process, warm cache: import {r['import_s']:.2f} s, import + first fit "
            f"{r['fresh_process_s']:.2f} s"
        )
    return "\n".join(
        [
            f"{r['scenario']}{f' ({options})' if options else ''}: {r['rows']:,} rows, "
            f"{r['bins']:,} bins, {r['fitted_pct']:.1f}% fitted, {r['skipped_pct']:.1f}% of "
            f"centers below min_entries, {r['avg_window_bins']:.1f} bins per window",
            f"  floor                    {r['floor_s']:.3g} s  (one parallel pass reading each "
            "input column once)",
            f"  mean/std/entries + OLS   {r['ols_s']:.3f} s  ({r['rows_per_s'] / 1e6:.1f} M "
            f"rows/s, {r['bins_per_s'] / 1e3:.0f} k bins/s); {_times(r['vs_floor'])} the floor; "
            f"naive gathering ~{r['naive_s']:.1f} s = {r['naive_vs_ols']:,.0f}x slower",
            f"  + exact median           {r['with_median_s']:.3f} s"
            + _floor_note(r, "with_median_s"),
            f"  + LTM, not the median    {r['with_ltm_s']:.3f} s ({r['ltm_vs_median']:.2f}x the "
            "median's time)" + _floor_note(r, "with_ltm_s"),
            f"  weighted (WLS)           {r['weighted_s']:.3f} s ({r['weights_cost']:.2f}x)"
            + _floor_note(r, "weighted_s"),
            f"  OLS with n_sigma_cut=3   {r['n_sigma_cut_s']:.3f} s"
            + _floor_note(r, "n_sigma_cut_s"),
            f"  refit from statistics    {r['refit_s']:.3f} s{_floor_note(r, 'refit_s')}",
            f"  predict at the rows      nearest {r['predict_nearest_rows_per_s'] / 1e6:.1f} M "
            f"rows/s, linear {r['predict_linear_rows_per_s'] / 1e6:.1f} M rows/s  ("
            f"{_times(r['predict_nearest_vs_floor'])}, {_times(r['predict_linear_vs_floor'])} "
            "floor)",
            f"  first call (numba)       {r['first_call_s']:.2f} s{fresh}",
            f"  memory: input columns {r['input_mb']:.0f} MB, peak allocation of the fit "
            f"{r['fit_alloc_mb']:.0f} MB ({r['median_alloc_mb']:.0f} MB with the median), "
            f"process peak RSS {r['peak_rss_mb']:.0f} MB",
        ]
    )


def _markdown(results: list[dict]) -> str:
    """The scenarios' summary table, then every measured row with its time and vs floor."""
    head = (
        "| scenario | rows | OLS + mean/std/entries | + median | weighted | n_sigma_cut=3 | "
        "refit from statistics | vs floor | naive / xslide | fit allocation (input) |\n"
        "|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in results:
        if "with_median_s" not in r:  # the grid scenarios' summary (not large nor rolling)
            continue
        lines.append(
            f"| {r['scenario']} | {r['rows']:,} | {r['ols_s']:.3f} s | "
            f"{r['with_median_s']:.3f} s | {r['weights_cost']:.2f}x | "
            f"{r['n_sigma_cut_s']:.3f} s | {r['refit_s']:.3f} s | {_times(r['vs_floor'])} | "
            f"{r['naive_vs_ols']:,.0f}x | {r['fit_alloc_mb']:.0f} MB ({r['input_mb']:.0f} MB) |"
        )
    lines = [*lines, ""] if len(lines) > 1 else []  # no summary without an in-memory run
    lines += ["| scenario | measurement | time | vs floor |", "|---|---|---|---|"]
    for r in results:
        for key, label in [*ROWS, *OTHER_FIGURES[:5]]:
            if key not in r:
                continue
            ratio = r.get(key.removesuffix("_s") + "_vs_floor")
            shown = _times(ratio) if ratio is not None else "—"
            lines.append(f"| {_label(r)} | {label} | {r[key]:.4g} s | {shown} |")
        if "floor_s" in r:
            lines.append(f"| {_label(r)} | floor | {r['floor_s']:.4g} s | 1.0x |")
    return "\n".join(lines)


def _label(r: dict) -> str:
    """The scenario of a run with its window options, e.g. ``medium (reflect)``."""
    options = ", ".join(str(r[k]) for k in ("boundary", "kernel", "dask_workers") if k in r)
    return f"{r['scenario']} ({options})" if options else r["scenario"]


def _comparable(r: dict) -> dict:
    """A run's figures with the predict seconds derived from rows/s where an older JSON lacks
    them (so runs of the code before the seconds were saved compare too)."""
    r = dict(r)
    for method in ("nearest", "linear"):
        rate = r.get(f"predict_{method}_rows_per_s")
        if f"predict_{method}_s" not in r and rate:
            r[f"predict_{method}_s"] = r["rows"] / rate
    return r


def compare(old: list[dict], new: list[dict]) -> str:
    """Before/after table of two ``--json`` runs: every figure both have, per scenario, with
    the speedup (before / after: above 1 is faster or smaller)."""
    before = {_label(r): _comparable(r) for r in old}
    lines = ["| scenario | measurement | before | after | speedup |", "|---|---|---|---|---|"]
    for r in map(_comparable, new):
        base = before.get(_label(r))
        if base is None:
            continue
        for key, label in [*ROWS, *OTHER_FIGURES]:
            if key in r and key in base and r[key] > 0:
                unit = " MB" if key.endswith("_mb") else " s"
                lines.append(
                    f"| {_label(r)} | {label} | {base[key]:.4g}{unit} | {r[key]:.4g}{unit} | "
                    f"{base[key] / r[key]:.2f}x |"
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


def _window_options(args: argparse.Namespace) -> dict[str, str]:
    """The boundary and kernel the arguments ask for, where not the default."""
    options = {}
    if args.boundary != "truncate":
        options["boundary"] = args.boundary
    if args.kernel != "uniform":
        options["kernel"] = args.kernel
    return options


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
    if name == "rolling":
        r = run_rolling(args.repeat, args.scale, **_window_options(args))
        print(_describe(r))
        return [r]
    if name == "large" and args.dask_workers:
        return _run_large_dask(args)
    if name == "large":
        r = run_large(Path(args.data_dir), args.scale)
    else:
        r = run(name, args.repeat, args.scale, **_window_options(args))
        if args.fresh_process:
            r.update(_fresh_process_seconds(name, args.scale))
    print(_describe(r))
    return [r]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m xslide.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("scenario", nargs="?", choices=[*SCENARIOS, "rolling", "large", "all"])
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the rows")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument("--markdown", action="store_true", help="print a results table")
    parser.add_argument("--data-dir", default=".", help="where the large scenario's parquet is")
    parser.add_argument("--fresh-process", action="store_true", help="time import + first fit")
    parser.add_argument(
        "--cold", action="store_true", help="time xslide demo's fit on empty numba caches"
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("OLD", "NEW"),
        help="print before/after ratios of two --json runs (markdown) and exit",
    )
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
    if args.compare:
        old, new = (json.loads(Path(path).read_text()) for path in args.compare)
        print(compare(old, new))
        return 0
    if args.scenario is None and not args.cold:
        parser.error("name a scenario (or --cold, or --compare OLD NEW)")
    if args.scenario == "rolling" and args.fitter != "ols":
        parser.error("--fitter glm/rlm times the grid scenarios (small, medium, sparse)")
    names = [args.scenario]
    if args.scenario == "all":  # rolling has no statsmodels fitter per window to time
        names = [*SCENARIOS, *(["rolling"] if args.fitter == "ols" else [])]
    results = []
    for name in names if args.scenario else []:
        results += _run_scenario(name, args)
    if args.cold:
        results.append(run_cold_demo(args.scale))
        print(_describe(results[-1]))
    if args.markdown:
        print(_markdown(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
