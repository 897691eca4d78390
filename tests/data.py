"""Row builders shared by the test modules: small random DataFrames on integer bin grids, the
track-like rows behind the CLI and io tests (and the files holding them), and the hypothesis
cases of the property tests.

Every builder is deterministic in its seed. ``reference.py`` is the row-level oracle; this module
only makes data.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import strategies as st
from reference import AGGREGATIONS

# ---- a dense 3-D grid (xBin x yBin x zBin), every bin filled ----


def grid_rows_3d(shape=(4, 3, 5), per_bin=12, seed=0) -> pd.DataFrame:
    """Rows on a dense 3-D grid: y = 1 + 2 x - 0.5 x2 + bin trend + noise, plus a second target."""
    rng = np.random.default_rng(seed)
    flat = np.repeat(np.arange(int(np.prod(shape))), per_bin)
    a, b, c = np.unravel_index(flat, shape)
    n = flat.size
    x, x2 = rng.normal(size=n), rng.uniform(-1, 1, n)
    return pd.DataFrame(
        {
            "xBin": a,
            "yBin": b,
            "zBin": c,
            "x": x,
            "x2": x2,
            "y": 1 + 2 * x - 0.5 * x2 + 0.1 * a + rng.normal(0, 0.3, n),
            "z": -x + 0.2 * c + rng.normal(0, 0.5, n),
            "w": rng.uniform(0.5, 2.0, n),
        }
    )


# ---- a 6 x 5 grid with holes (xBin -2..3, yBin 3..7) ----

LO = {"xBin": -2, "yBin": 3}
HI = {"xBin": 3, "yBin": 7}
# Bins left without rows: holes inside the grid, away from the edges that fix the extent.
HOLES = [(0, 5), (1, 5), (2, 4)]


def holed_grid_rows(seed: int = 1, rows_per_bin: int = 7, weights: bool = True) -> pd.DataFrame:
    """Rows on a 6 x 5 grid (xBin -2..3, yBin 3..7) with holes, a few NaNs and weights."""
    rng = np.random.default_rng(seed)
    cells = [
        (i, j)
        for i in range(LO["xBin"], HI["xBin"] + 1)
        for j in range(LO["yBin"], HI["yBin"] + 1)
        if (i, j) not in HOLES
    ]
    counts = rng.integers(rows_per_bin - 3, rows_per_bin + 4, len(cells))
    bins = np.repeat(np.array(cells), counts, axis=0)
    bins = bins[rng.permutation(len(bins))]
    n = len(bins)
    x = rng.normal(1.0, 2.0, n)
    x2 = rng.uniform(-3.0, 5.0, n)
    data = {
        "xBin": bins[:, 0].astype(np.int64),
        "yBin": bins[:, 1].astype(np.int64),
        "x": x,
        "x2": x2,
        "y": 2.0 + 0.5 * x - 1.5 * x2 + 0.1 * bins[:, 0] + rng.normal(0, 0.7, n),
        "z": -4.0 + 0.2 * x + 0.3 * x2 + rng.normal(0, 1.3, n),
    }
    data["z"][rng.random(n) < 0.08] = np.nan  # z loses rows that y keeps
    data["x2"][rng.random(n) < 0.02] = np.nan  # lost by both targets
    if weights:
        data["w"] = rng.uniform(0.3, 3.0, n)
    return pd.DataFrame(data)


# ---- track-like rows (rBin x zBin, residuals dX, dY) and the files the CLI reads ----


def track_rows() -> pd.DataFrame:
    """4000 rows on an 8 x 4 (rBin, zBin) grid: dX, dY linear in qpt (and r, the bins)."""
    rng = np.random.default_rng(7)
    n = 4000
    df = pd.DataFrame(
        {
            "rBin": rng.integers(0, 8, n),
            "zBin": rng.integers(0, 4, n),
            "qpt": rng.normal(0.0, 1.0, n),
            "r": rng.uniform(85.0, 250.0, n),
            "w": rng.uniform(0.5, 2.0, n),
        }
    )
    df["dX"] = 0.1 * df.rBin + 0.3 * df.qpt + 0.01 * df.r + rng.normal(0, 0.1, n)
    df["dY"] = -0.2 * df.zBin + 0.2 * df.qpt + rng.normal(0, 0.1, n)
    return df


def write_track_files(rows: pd.DataFrame, folder) -> dict[str, str]:
    """``rows`` as parquet (row groups of 1000), CSV and a ROOT tree ``tracks``; their paths."""
    import uproot

    paths = {k: str(folder / f"rows.{k}") for k in ("parquet", "csv", "root")}
    rows.to_parquet(paths["parquet"], row_group_size=1000)
    rows.to_csv(paths["csv"], index=False)
    with uproot.recreate(paths["root"]) as file:
        tree = file.mktree("tracks", {c: rows[c].dtype for c in rows.columns})
        tree.extend({c: rows[c].to_numpy() for c in rows.columns})
    paths["root"] += ":tracks"
    return paths


# ---- hypothesis cases: structural parameters drawn, data generated from a seed ----


MAX_BINS = 300


BAD_VALUES = np.array([np.nan, np.inf, -np.inf])


@dataclass(frozen=True)
class Params:
    """Structural parameters of one generated test case (data come from ``seed``)."""

    seed: int
    extents: tuple[int, ...]  # bins per dimension
    offsets: tuple[int, ...]  # first bin index per dimension
    windows: tuple[int | None, ...]  # half-width per dimension, None = left out of window_spec
    layout: str  # "dense", "sparse", "single_bin", "single_row"
    max_rows_per_bin: int
    n_predictors: int
    discrete_predictor: bool  # first predictor takes few distinct values (exact singularities)
    collinear: bool  # last predictor = 2 * first predictor
    n_targets: int
    weights: str  # "none", "positive", "zeros"
    selection: str  # "none", "series", "array"
    bad_fraction: float  # fraction of NaN/inf cells in targets, predictors, weights
    min_entries: int | None
    centers: str | None
    extent_pad: tuple[tuple[int, int], ...] | None  # extent = data range padded by these
    aggregations: tuple[str, ...] | None
    odd_names: bool


@st.composite
def params_strategy(draw: st.DrawFn) -> Params:
    """Draw case parameters, keeping the dense grid at most ``MAX_BINS`` bins."""
    ndim = draw(st.integers(1, 4))
    extents = []
    budget = MAX_BINS
    for _ in range(ndim):
        n = draw(st.integers(1, min(12, budget)))
        extents.append(n)
        budget //= n
    n_predictors = draw(st.integers(0, 3))
    extent_pad = draw(
        st.none() | st.tuples(*[st.tuples(st.integers(-2, 2), st.integers(-2, 2))] * ndim)
    )
    return Params(
        seed=draw(st.integers(0, 2**32 - 1)),
        extents=tuple(extents),
        offsets=tuple(draw(st.integers(-30, 30)) for _ in range(ndim)),
        windows=tuple(draw(st.none() | st.integers(0, 3)) for _ in range(ndim)),
        layout=draw(st.sampled_from(["dense", "sparse", "single_bin", "single_row"])),
        max_rows_per_bin=draw(st.integers(1, 8)),
        n_predictors=n_predictors,
        discrete_predictor=n_predictors > 0 and draw(st.booleans()),
        collinear=n_predictors > 1 and draw(st.integers(0, 4)) == 0,
        n_targets=draw(st.integers(1, 3)),
        weights=draw(st.sampled_from(["none", "positive", "zeros"])),
        selection=draw(st.sampled_from(["none", "series", "array"])),
        bad_fraction=draw(st.sampled_from([0.0, 0.05, 0.2])),
        min_entries=draw(st.none() | st.integers(1, 12)),
        centers=draw(st.sampled_from([None, "observed", "grid"])),
        extent_pad=extent_pad,
        aggregations=draw(
            st.none()
            | st.lists(st.sampled_from(AGGREGATIONS), min_size=1, unique=True).map(
                lambda a: tuple(x for x in AGGREGATIONS if x in a)
            )
        ),
        odd_names=draw(st.booleans()),
    )


def build_case(p: Params) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Generate the frame and the keyword arguments shared by xslide and the oracle."""
    rng = np.random.default_rng(p.seed)
    ndim = len(p.extents)
    n_bins = int(np.prod(p.extents))

    # Rows per bin of the dense grid.
    counts = np.zeros(n_bins, dtype=np.int64)
    if p.layout in ("dense", "sparse"):
        occupied = rng.random(n_bins) < (0.9 if p.layout == "dense" else 0.25)
        counts[occupied] = rng.integers(1, p.max_rows_per_bin + 1, occupied.sum())
    elif p.layout == "single_bin":
        counts[rng.integers(n_bins)] = rng.integers(1, p.max_rows_per_bin + 1)
    if counts.sum() == 0:
        counts[rng.integers(n_bins)] = 1
    flat = np.repeat(np.arange(n_bins), counts)
    rng.shuffle(flat)
    n = len(flat)
    idx = np.column_stack(np.unravel_index(flat, p.extents))

    groups = [f"g{d}" for d in range(ndim)]
    preds = [f"x{j}" for j in range(p.n_predictors)]
    if p.odd_names:
        preds = [name for name, _ in zip(["x.a", "x-b", "x c d"], preds, strict=False)]
    targets = [f"y{k}" for k in range(p.n_targets)]

    data: dict[str, Any] = {"label": rng.choice(["a", "b", "c"], n)}
    for d, name in enumerate(groups):
        data[name] = (idx[:, d] + p.offsets[d]).astype(np.int64)
    x = rng.normal(size=(n, p.n_predictors)) * rng.uniform(0.1, 10, p.n_predictors)
    x += rng.uniform(-3, 3, p.n_predictors) * np.abs(x).max(initial=1.0)
    if p.discrete_predictor:
        x[:, 0] = rng.integers(0, 3, n).astype(np.float64)
    if p.collinear:
        x[:, -1] = 2.0 * x[:, 0]
    for j, name in enumerate(preds):
        data[name] = x[:, j]
    for name in targets:
        noise = rng.normal(size=n) * rng.uniform(0.1, 2.0)
        data[name] = rng.uniform(-5, 5) + x @ rng.normal(size=p.n_predictors) + noise
    weights_column = None
    if p.weights != "none":
        w = rng.uniform(0.2, 5.0, n)
        if p.weights == "zeros":
            w[rng.random(n) < 0.25] = 0.0
        weights_column = "wt"
        data[weights_column] = w
    data["unused"] = rng.normal(size=n)
    for name in [*targets, *preds, *([weights_column] if weights_column else [])]:
        bad = rng.random(n) < p.bad_fraction
        # -inf weights are covered by test_nonfinite_weights_are_invalid.
        choices = BAD_VALUES[:2] if name == weights_column else BAD_VALUES
        data[name][bad] = rng.choice(choices, bad.sum())
    index = pd.RangeIndex(n) if rng.random() < 0.5 else pd.Index(rng.permutation(n) * 3 + 1000)
    df = pd.DataFrame(data, index=index)

    mask = np.ones(n, dtype=bool)
    selection: pd.Series | np.ndarray | None = None
    if p.selection != "none":
        mask = rng.random(n) < rng.uniform(0.4, 0.95)
        mask[rng.integers(n)] = True
        selection = pd.Series(mask, index=df.index) if p.selection == "series" else mask

    kwargs: dict[str, Any] = {
        "group_columns": groups,
        "window_spec": {g: w for g, w in zip(groups, p.windows, strict=True) if w is not None},
        "fit_columns": targets,
        "predictor_columns": preds,
        "weights_column": weights_column,
        "selection": selection,
    }
    if p.min_entries is not None:
        kwargs["min_entries"] = p.min_entries
    if p.centers is not None:
        kwargs["centers"] = p.centers
    if p.aggregations is not None:
        kwargs["aggregation_functions"] = list(p.aggregations)
    if p.extent_pad is not None:
        sel_bins = df.loc[mask, groups].to_numpy()
        extent = {}
        inside = np.ones(len(sel_bins), dtype=bool)
        for d, (g, (pad_lo, pad_hi)) in enumerate(zip(groups, p.extent_pad, strict=True)):
            lo = int(sel_bins[:, d].min()) - pad_lo
            hi = max(lo, int(sel_bins[:, d].max()) + pad_hi)
            extent[g] = (lo, hi)
            inside &= (sel_bins[:, d] >= lo) & (sel_bins[:, d] <= hi)
        # An observed-centers run with no selected row left has no defined output; skip extent.
        if inside.any() or p.centers == "grid":
            kwargs["extent"] = extent
    return df, kwargs
