"""Benchmark scenarios: ``python -m xslide.bench {small,medium,sparse,all} [--json out.json]``.

Each scenario builds synthetic rows with known truth (fixed seed), warms the numba kernels up,
then times ``make_sliding_window_fit`` end to end (DataFrame in, DataFrame out) without and
with the exact median, and reports throughput and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Scenario:
    shape: tuple[int, int, int]
    rows_per_bin: int
    window: int
    occupancy: float = 1.0


SCENARIOS = {
    "small": Scenario((10, 10, 10), 20, 1),
    "medium": Scenario((50, 20, 30), 100, 1),
    "sparse": Scenario((100, 50, 50), 10, 2, occupancy=0.5),
}
DIMS = ("xBin", "yBin", "zBin")


def make_rows(s: Scenario, seed: int = 42) -> pd.DataFrame:
    """Rows with 2 predictors and 2 targets, linear with a bin-dependent truth plus noise."""
    rng = np.random.default_rng(seed)
    n_bins = int(np.prod(s.shape))
    bins = np.arange(n_bins)
    if s.occupancy < 1.0:
        bins = np.sort(rng.choice(n_bins, int(n_bins * s.occupancy), replace=False))
    flat = np.repeat(bins, s.rows_per_bin)
    idx = np.unravel_index(flat, s.shape)
    n = flat.size
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    data = {d: i.astype(np.int64) for d, i in zip(DIMS, idx, strict=True)}
    base = 0.01 * idx[0] - 0.02 * idx[1] + 0.03 * idx[2]
    data.update(
        x1=x1,
        x2=x2,
        y1=base + 2.0 * x1 - 1.0 * x2 + rng.normal(0, 0.1, n),
        y2=-base + 0.5 * x1 + 3.0 * x2 + rng.normal(0, 0.1, n),
    )
    return pd.DataFrame(data)


def _peak_extra_mb(func) -> float:
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


def _time(func, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = func()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def run(name: str, repeat: int = 5, **window_options) -> dict:
    """Run one scenario and return its figures (``window_options``: boundary, kernel)."""
    import xslide

    s = SCENARIOS[name]
    df = make_rows(s)
    window = dict.fromkeys(DIMS, s.window)
    no_median = {"y1": ["mean", "std", "entries"], "y2": ["mean", "std", "entries"]}

    def fit(aggregation, **options):
        return xslide.make_sliding_window_fit(
            df,
            list(DIMS),
            window,
            ["y1", "y2"],
            ["x1", "x2"],
            aggregation_functions=aggregation,
            **window_options,
            **options,
        )

    t0 = time.perf_counter()
    fit(None)  # compile (or load from the numba cache) every kernel
    first_call = time.perf_counter() - t0
    t_ols, out = _time(lambda: fit(no_median), repeat)
    t_median, _ = _time(lambda: fit(None), max(1, repeat // 2))
    t_clip, _ = _time(lambda: fit(no_median, n_sigma_cut=3.0), 1)
    extra_ols = _peak_extra_mb(lambda: fit(no_median))
    extra_median = _peak_extra_mb(lambda: fit(None))
    n_bins = int(np.prod(s.shape))
    input_mb = df.memory_usage(index=False).sum() / 2**20
    fitted = int(out["y1_intercept"].notna().sum())
    return {
        "scenario": name,
        **window_options,
        "rows": len(df),
        "bins": n_bins,
        "centers": len(out),
        "fitted_pct": 100.0 * fitted / n_bins,
        "first_call_s": first_call,
        "ols_s": t_ols,
        "with_median_s": t_median,
        "n_sigma_cut_s": t_clip,
        "rows_per_s": len(df) / t_ols,
        "bins_per_s": n_bins / t_ols,
        "input_mb": input_mb,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "fit_extra_mb": extra_ols,
        "median_extra_mb": extra_median,
    }


def run_raw(name: str, fitter: str, n_jobs: int) -> dict:
    """Time a statsmodels fitter on one scenario: seconds per 1k windows, serial and parallel."""
    import xslide

    s = SCENARIOS[name]
    df = make_rows(s)
    window = dict.fromkeys(DIMS, s.window)
    aggregation = {"y1": ["entries"], "y2": ["entries"]}

    def fit(jobs: int):
        return xslide.make_sliding_window_fit(
            df,
            list(DIMS),
            window,
            ["y1", "y2"],
            ["x1", "x2"],
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xslide.bench", description=__doc__)
    parser.add_argument("scenario", choices=[*SCENARIOS, "all"])
    parser.add_argument("--repeat", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    parser.add_argument(
        "--fitter",
        choices=["ols", "glm", "rlm"],
        default="ols",
        help="glm/rlm: time statsmodels fits per window, serial and with --n-jobs processes",
    )
    parser.add_argument("--n-jobs", type=int, default=2, help="processes for --fitter glm/rlm")
    parser.add_argument("--boundary", default="truncate", help="boundary mode of the window")
    parser.add_argument("--kernel", default="uniform", help="kernel of the window")
    args = parser.parse_args(argv)
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results = []
    if args.fitter != "ols":
        for name in names:
            r = run_raw(name, args.fitter, args.n_jobs)
            results.append(r)
            print(
                f"{r['scenario']} {r['fitter']}: {r['windows']:,} window fits | serial "
                f"{r['serial_s_per_1k']:.2f} s per 1k windows | n_jobs={r['n_jobs']} "
                f"{r['parallel_s_per_1k']:.2f} s per 1k windows ({r['speedup']:.2f}x)"
            )
        names = []
    for name in names:
        r = run(name, args.repeat, boundary=args.boundary, kernel=args.kernel)
        results.append(r)
        print(
            f"{r['scenario']} ({args.boundary}, {args.kernel}): {r['rows']:,} rows, "
            f"{r['bins']:,} bins, "
            f"{r['fitted_pct']:.1f}% fitted | mean/std/entries+OLS {r['ols_s']:.3f} s "
            f"({r['rows_per_s'] / 1e6:.1f} M rows/s, {r['bins_per_s'] / 1e3:.0f} k bins/s) | "
            f"+median {r['with_median_s']:.3f} s | OLS with n_sigma_cut=3 "
            f"{r['n_sigma_cut_s']:.3f} s | first call {r['first_call_s']:.2f} s | "
            f"input columns {r['input_mb']:.0f} MB, peak allocation of the fit "
            f"{r['fit_extra_mb']:.0f} MB (with median {r['median_extra_mb']:.0f} MB), "
            f"process peak RSS {r['peak_rss_mb']:.0f} MB"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
