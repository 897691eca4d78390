"""Saved outputs of the benchmark scenarios, to hold every speed-up to today's numbers.

``python tests/bench_reference.py save`` recomputes the cases below
and stores a fixed sample of every output column in ``tests/data/bench_reference.npz``;
``tests/test_bench_reference.py`` recomputes them and compares at rtol 1e-12. Save again only
for a change that is meant to change the numbers, and say so in the commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

import xslide
from xslide.bench import DIMS, PREDICTORS, SCENARIOS, TARGETS, make_rows

PATH = Path(__file__).parent / "data" / "bench_reference.npz"
#: output rows kept per case (a fixed random sample of the centers)
SAMPLE = 400

# (scenario, row scale, options): the benchmark scenarios on every path the speed work touches
CASES = {
    "small_ols": ("small", 1.0, {}),
    "medium_ols": ("medium", 0.05, {}),
    "medium_median_weighted": ("medium", 0.05, {"weights_column": "w"}),
    "medium_clip": ("medium", 0.05, {"n_sigma_cut": 3.0}),
    "medium_trend_shrink": ("medium", 0.05, {"trend": 1, "boundary": "shrink"}),
    "medium_gaussian_periodic": ("medium", 0.05, {"kernel": "gaussian", "boundary": "periodic"}),
    "medium_mirror_grid": ("medium", 0.05, {"boundary": "mirror", "centers": "grid"}),
    "sparse_ols": ("sparse", 0.3, {}),
    "sparse_epanechnikov_trend": ("sparse", 0.3, {"kernel": "epanechnikov", "trend": 1}),
}


def compute(case: str) -> pd.DataFrame:
    """The seed-API output of one case, numeric columns only, on the sampled centers."""
    name, scale, options = CASES[case]
    s = SCENARIOS[name]
    dims = list(DIMS[: len(s.shape)])
    window = dict(zip(dims, s.window, strict=True))
    df = make_rows(s, scale=scale)
    if options.get("boundary") == "periodic":
        options = {**options, "extent": {d: (0, n - 1) for d, n in zip(dims, s.shape, strict=True)}}
    out = xslide.make_sliding_window_fit(df, dims, window, TARGETS, PREDICTORS, **options)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(out), min(SAMPLE, len(out)), replace=False))
    numeric = [c for c in out.columns if out[c].dtype.kind in "biuf"]
    return out.iloc[rows][numeric].reset_index(drop=True)


def save() -> None:
    arrays = {}
    for case in CASES:
        frame = compute(case)
        for column in frame.columns:
            arrays[f"{case}/{column}"] = frame[column].to_numpy()
        print(f"{case}: {frame.shape[1]} columns x {len(frame)} centers", flush=True)
    PATH.parent.mkdir(exist_ok=True)
    np.savez_compressed(PATH, **arrays)


if __name__ == "__main__":
    if sys.argv[1:] != ["save"]:
        print(__doc__)
        sys.exit(2)
    save()
