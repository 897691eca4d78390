"""Outlier rejection (``n_sigma_cut``): equal to the oracle's explicit clip-and-refit loop."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from data import build_case, params_strategy
from hypothesis import given
from hypothesis import strategies as st
from reference import assert_frames_close, reference_fit

import xslide


def outlier_rows(n: int = 30_000, fraction: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """y = 1 + 2 x + N(0, 0.1), with a fraction of gross outliers pushed upwards."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"b": rng.integers(0, 8, n), "c": rng.integers(0, 3, n)})
    df["x"] = rng.normal(size=n)
    df["y"] = 1.0 + 2.0 * df.x + rng.normal(0, 0.1, n)
    bad = rng.random(n) < fraction
    df.loc[bad, "y"] += rng.normal(4.0, 1.0, bad.sum()) + 3.0 * df.x[bad]
    return df


@given(
    params=params_strategy(),
    n_sigma_cut=st.sampled_from([0.8, 1.5, 2.0, 3.0]),
    max_iter=st.integers(1, 4),
)
def test_clipped_fit_matches_the_oracle_loop(params, n_sigma_cut, max_iter):
    df, kwargs = build_case(params)
    expected = reference_fit(df, **kwargs, n_sigma_cut=n_sigma_cut, max_iter=max_iter)
    actual = xslide.make_sliding_window_fit(
        df, **kwargs, n_sigma_cut=n_sigma_cut, max_iter=max_iter
    )
    assert_frames_close(actual, expected, rtol=1e-9, atol_scale=1e-9)


def test_clipping_recovers_the_truth_where_plain_ols_is_biased():
    df = outlier_rows()
    plain = xslide.make_sliding_window_fit(df, ["b", "c"], {"b": 1}, ["y"], ["x"])
    robust = xslide.make_sliding_window_fit(df, ["b", "c"], {"b": 1}, ["y"], ["x"], n_sigma_cut=3.0)
    assert (plain.y_intercept - 1.0).abs().min() > 0.1  # every plain fit is pulled up
    assert (plain.y_slope_x - 2.0).abs().min() > 0.05
    np.testing.assert_allclose(robust.y_intercept, 1.0, atol=0.02)
    np.testing.assert_allclose(robust.y_slope_x, 2.0, atol=0.02)
    np.testing.assert_allclose(robust.y_rmse, 0.1, rtol=0.1)
    share = robust.y_n_rejected / (robust.y_n_fitted + robust.y_n_rejected)
    assert share.between(0.04, 0.08).all()
    assert (robust.y_n_fitted + robust.y_n_rejected == robust.y_entries).all()
    assert (
        list(robust.columns).index("y_n_rejected") == list(robust.columns).index("y_n_fitted") + 1
    )


def test_clipping_leaves_aggregates_of_all_rows():
    df = outlier_rows(n=5000)
    plain = xslide.make_sliding_window_fit(df, ["b"], {}, ["y"], ["x"])
    robust = xslide.make_sliding_window_fit(df, ["b"], {}, ["y"], ["x"], n_sigma_cut=2.5)
    for name in ("y_mean", "y_std", "y_median", "y_entries"):
        pd.testing.assert_series_equal(robust[name], plain[name])


def test_numpy_backend_runs_the_same_clipping_kernel():
    df = outlier_rows(n=600)
    kwargs = {"n_sigma_cut": 2.0, "max_iter": 5, "min_entries": 5}
    fast = xslide.make_sliding_window_fit(df, ["b", "c"], {"c": 1}, ["y"], ["x"], **kwargs)
    slow = xslide.make_sliding_window_fit(
        df, ["b", "c"], {"c": 1}, ["y"], ["x"], backend="numpy", **kwargs
    )
    pd.testing.assert_frame_equal(fast.drop(columns="y_median"), slow.drop(columns="y_median"))


@pytest.mark.parametrize("weights", [None, "w"])
def test_clipped_fits_are_bit_identical_across_backends(weights):
    df = outlier_rows(n=3000)
    df["w"] = np.random.default_rng(1).uniform(0.5, 2.0, len(df))
    kwargs = {"n_sigma_cut": 2.0, "max_iter": 3, "min_entries": 5, "weights_column": weights}
    frames = [
        xslide.make_sliding_window_fit(
            df, ["b", "c"], {"c": 1}, ["y"], ["x"], backend=backend, **kwargs
        )
        for backend in ("numba", "numpy")
    ]
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)


def test_xarray_fit_reports_n_rejected():
    df = outlier_rows(n=5000)
    ds = xslide.fit(df, ["b", "c"], ["y"], ["x"], {"b": 1}, n_sigma_cut=3.0)
    frame = xslide.make_sliding_window_fit(df, ["b", "c"], {"b": 1}, ["y"], ["x"], n_sigma_cut=3.0)
    got = ds.n_rejected.sel(target="y").to_series().reset_index(drop=True)
    np.testing.assert_array_equal(got.to_numpy(), frame.y_n_rejected.to_numpy())
    assert ds.attrs["n_sigma_cut"] == 3.0 and ds.attrs["max_iter"] == 3


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"n_sigma_cut": 0}, ValueError),
        ({"n_sigma_cut": -1.0}, ValueError),
        ({"n_sigma_cut": "3"}, TypeError),
        ({"n_sigma_cut": 3.0, "max_iter": 0}, ValueError),
        ({"max_iter": 2}, TypeError),
    ],
)
def test_bad_clipping_options_are_refused(kwargs, error):
    with pytest.raises(error, match=r"n_sigma_cut|max_iter"):
        xslide.make_sliding_window_fit(outlier_rows(n=100), ["b"], {}, ["y"], ["x"], **kwargs)
