"""Property tests: ``xslide.make_sliding_window_fit`` against the slow oracle in ``reference``.

Hypothesis draws only small structural parameters plus a seed; the data themselves are generated
with numpy from that seed (see ``build_case``), so a failing example is reproduced by calling
``build_case`` with the printed parameters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from data import Params, build_case, params_strategy
from hypothesis import given, note
from hypothesis import strategies as st
from reference import assert_frames_close, reference_fit

xslide = pytest.importorskip("xslide")


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
@pytest.mark.needs_numba
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
    trend=st.sampled_from([0, 0, 1, 2, "mixed"]),
    interactions=st.booleans(),
)
def test_boundaries_and_kernels_match_reference(
    params, modes, kernel, width, clip, trend, interactions
):
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
    if trend == "mixed":  # order 2 and 1 in turn over the windowed dims
        trend = {d: 2 - k % 2 for k, d in enumerate(d for d in dims if window[d] > 0)}
    if trend:
        extra["trend"] = trend
        extra["trend_interactions"] = interactions
    expected = reference_fit(df, **kwargs, **extra)
    actual = run_xslide(df, kwargs, **extra)
    assert_frames_close(actual, expected, rtol=1e-9, atol_scale=1e-9)
