"""Property tests: ``xslide.make_sliding_window_fit`` against the slow oracle in ``reference``.

Hypothesis draws only small structural parameters plus a seed; the data themselves are generated
with numpy from that seed (see ``build_case``), so a failing example is reproduced by calling
``build_case`` with the printed parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, note
from hypothesis import strategies as st
from reference import AGGREGATIONS, assert_frames_close, reference_fit

xslide = pytest.importorskip("xslide")

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


def run_xslide(df: pd.DataFrame, kwargs: dict[str, Any], **extra: Any) -> pd.DataFrame:
    """Call the engine on a copy-checked frame (the input must not be modified)."""
    before = df.copy(deep=True)
    out = xslide.make_sliding_window_fit(df, **kwargs, **extra)
    pd.testing.assert_frame_equal(df, before, check_exact=True)
    return out


@given(params=params_strategy(), backend=st.sampled_from(["auto", "numpy"]))
def test_matches_reference(params: Params, backend: str) -> None:
    """Every output column equals the oracle's, for arbitrary grids, windows, data and options."""
    df, kwargs = build_case(params)
    note(f"{len(df)} rows; kwargs: { {k: v for k, v in kwargs.items() if k != 'selection'} }")
    expected = reference_fit(df, **kwargs)
    actual = run_xslide(df, kwargs, backend=backend)
    assert_frames_close(actual, expected, rtol=1e-9, atol_scale=1e-9)


@given(params=params_strategy())
def test_numba_matches_numpy_and_is_deterministic(params: Params) -> None:
    """The numba backend reproduces the numpy backend, and repeated runs are bit-identical."""
    pytest.importorskip("numba")
    df, kwargs = build_case(params)
    by_numpy = run_xslide(df, kwargs, backend="numpy")
    by_numba = run_xslide(df, kwargs, backend="numba")
    assert_frames_close(by_numba, by_numpy, rtol=1e-12, atol_scale=1e-12)
    for backend, first in [("numpy", by_numpy), ("numba", by_numba)]:
        again = run_xslide(df, kwargs, backend=backend)
        pd.testing.assert_frame_equal(again, first, check_exact=True)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_weights_are_invalid(bad: float) -> None:
    """A row with a non-finite weight (including -inf) is excluded, exactly like a NaN target."""
    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {"g": np.repeat([0, 1], 12), "x": rng.normal(size=24), "y": rng.normal(size=24)}
    )
    df["w"] = rng.uniform(0.5, 2.0, 24)
    df.loc[[3, 15], "w"] = bad
    kwargs: dict[str, Any] = {
        "group_columns": ["g"],
        "window_spec": {},
        "fit_columns": ["y"],
        "predictor_columns": ["x"],
        "weights_column": "w",
    }
    expected = reference_fit(df, **kwargs)
    assert expected.y_entries.tolist() == [11, 11]
    assert_frames_close(run_xslide(df, kwargs), expected)


KERNELS = ["uniform", "gaussian", "epanechnikov", "linear", "callable", "array"]


@given(
    params=params_strategy(),
    modes=st.lists(st.sampled_from(["truncate", "periodic", "mirror", "shrink"]), min_size=4),
    kernel=st.sampled_from(KERNELS),
    # widths >= 1 keep kernel weights within a factor 100 across a ±3 window: narrower kernels
    # make one row dominate a window, where the global reference costs digits (see README)
    width=st.none() | st.sampled_from([1.0, 2.5]),
    clip=st.booleans(),
    trend=st.sampled_from([0, 0, 1]),
)
def test_boundaries_and_kernels_match_reference(params, modes, kernel, width, clip, trend):
    """Every boundary mode (mixed per dim) and kernel, against the oracle's enumeration."""
    df, kwargs = build_case(params)
    dims = kwargs["group_columns"]
    # the declared grid is the full generated extent, so periodic dims wrap where intended
    kwargs["extent"] = {
        d: (lo, lo + n - 1) for d, lo, n in zip(dims, params.offsets, params.extents, strict=True)
    }
    boundary = {}
    window = {}
    for d, mode, n in zip(dims, modes, params.extents, strict=False):
        w = kwargs["window_spec"].get(d, 0)
        if mode == "periodic":
            w = min(w, (n - 1) // 2)
        window[d] = w
        boundary[d] = mode
    kwargs["window_spec"] = window
    half = [window[d] for d in dims]
    extra: dict[str, Any] = {"boundary": boundary}
    if kernel == "callable":
        extra["kernel"] = lambda *o: np.exp(-0.3 * sum(np.abs(x) for x in o))
    elif kernel == "array":
        rng = np.random.default_rng(params.seed)
        weights = rng.uniform(0.0, 2.0, [2 * w + 1 for w in half])
        weights[weights < 0.4] = 0.0
        weights.flat[weights.size // 2] = 1.0  # the center bin always counts
        extra["kernel"] = weights
    else:
        extra["kernel"] = kernel
        if kernel != "uniform" and width is not None:
            extra["kernel_width"] = width
    if clip:
        extra["n_sigma_cut"] = 2.0
    if trend:
        extra["trend"] = 1
    expected = reference_fit(df, **kwargs, **extra)
    actual = run_xslide(df, kwargs, **extra)
    assert_frames_close(actual, expected, rtol=1e-9, atol_scale=1e-9)
