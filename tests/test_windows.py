"""Boundaries and kernels (API.md §3): what each does at the edges, on every path."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from reference import assert_frames_close, reference_fit

import xslide
from xslide import InvalidWindowSpec


def field_rows(n_bins: int = 12, per_bin: int = 40, seed: int = 0, slope: float = 0.5):
    """A 1-D field linear in the bin index: y = slope * phi + 2 x + noise."""
    rng = np.random.default_rng(seed)
    phi = np.repeat(np.arange(n_bins), per_bin)
    x = rng.normal(size=phi.size)
    y = slope * phi + 2.0 * x + rng.normal(0, 0.05, phi.size)
    return pd.DataFrame({"phi": phi, "x": x, "y": y})


def fit1d(df, **kwargs):
    options = {"min_entries": 5, **kwargs}
    window = options.pop("window", {"phi": 2})
    return xslide.make_sliding_window_fit(df, ["phi"], window, ["y"], ["x"], **options)


def test_periodic_fits_a_wrapping_field_identically_after_rotation():
    rng = np.random.default_rng(1)
    n, per_bin = 16, 30
    phi = np.repeat(np.arange(n), per_bin)
    x = rng.normal(size=phi.size)
    y = np.sin(2 * np.pi * (phi + 0.5) / n) + x + rng.normal(0, 0.1, phi.size)
    df = pd.DataFrame({"phi": phi, "x": x, "y": y})
    rotated = df.assign(phi=(df.phi + 1) % n)
    a = fit1d(df, boundary="periodic")
    b = fit1d(rotated, boundary="periodic")
    # bin 0 of the original is bin 1 of the rotated data; the last bin wraps to bin 0
    np.testing.assert_allclose(b.y_intercept.to_numpy(), np.roll(a.y_intercept.to_numpy(), 1))
    assert a.n_neighbors_used.eq(5).all() and a.y_entries.eq(5 * per_bin).all()
    truncated = fit1d(df)
    assert truncated.y_entries.iloc[0] == 3 * per_bin  # truncate: the edge window is cut


def test_periodic_wraps_over_the_declared_extent_and_refuses_too_wide_windows():
    df = field_rows(n_bins=6)
    observed = fit1d(df[df.phi >= 1], boundary="periodic")  # observed range 1..5
    declared = fit1d(df[df.phi >= 1], boundary="periodic", extent={"phi": (0, 5)})
    # on the declared period 0..5, the empty bin 0 sits between 5 and 1
    assert observed.y_entries.iloc[0] == 5 * 40 and declared.y_entries.iloc[0] == 4 * 40
    with pytest.raises(InvalidWindowSpec, match="periodic"):
        fit1d(df, boundary="periodic", window={"phi": 3})


def test_shrink_removes_the_edge_bias_of_a_linear_trend_that_truncate_has():
    df = field_rows(slope=0.5)
    truth = 0.5 * np.arange(12)
    truncated = fit1d(df)
    shrunk = fit1d(df, boundary="shrink")
    edge_bias = truncated.y_intercept.to_numpy() - truth
    assert abs(edge_bias[0]) > 0.2 and abs(edge_bias[-1]) > 0.2  # pulled towards the inside
    np.testing.assert_allclose(shrunk.y_intercept.to_numpy(), truth, atol=0.02)
    # the window shrinks symmetrically: 1 bin at the edge, 3 next to it, 5 inside
    assert shrunk.n_neighbors_used.tolist()[:3] == [1, 3, 5]


def test_mirror_reads_edge_bins_twice_and_counts_each_appearance():
    df = field_rows(n_bins=6, per_bin=10)
    out = fit1d(df, boundary="mirror")
    # center 0 with ±2: bins 1, 0, 0, 1, 2 (index -1 reads 0, -2 reads 1)
    assert out.y_entries.iloc[0] == 50 and out.n_rows_aggregated.iloc[0] == 50
    assert out.n_neighbors_used.iloc[0] == 3
    assert out.effective_window_fraction.iloc[0] == pytest.approx(3 / 5)


def test_kernel_weights_multiply_row_weights():
    df = field_rows(n_bins=5, per_bin=20).assign(w=lambda d: 1.0 + d.index % 3)
    out = fit1d(df, kernel="linear", kernel_width=1, weights_column="w", window={"phi": 1})
    rows = df[df.phi <= 1]
    kernel = np.where(rows.phi == 0, 1.0, 0.5)  # linear, width 1: 1 - |o| / 2
    w = rows.w * kernel
    assert out.y_mean.iloc[0] == pytest.approx(np.average(rows.y, weights=w), rel=1e-12)
    assert out.y_entries.iloc[0] == len(rows)


def test_zero_kernel_weights_count_nowhere():
    df = field_rows(n_bins=5, per_bin=10)
    out = fit1d(df, kernel=np.array([0.0, 1.0, 0.0]), window={"phi": 1})
    plain = fit1d(df, window={"phi": 0})
    for column in ("y_entries", "y_mean", "y_slope_x", "n_neighbors_used", "n_rows_aggregated"):
        np.testing.assert_allclose(out[column], plain[column], rtol=1e-12)
    assert out.effective_window_fraction.eq(1.0).all()


def test_weighted_median_under_a_non_uniform_kernel():
    df = pd.DataFrame({"phi": [0, 0, 1, 2, 2], "x": 0.0, "y": [1.0, 2.0, 3.0, 10.0, 11.0]})
    # center 1, linear kernel of width 1: weights 0.5, 0.5, 1, 0.5, 0.5 -> half of 3 is 1.5,
    # reached at y = 3 (cumulative 0.5, 1.0, 2.0)
    out = fit1d(df, kernel="linear", kernel_width=1, window={"phi": 1}, min_entries=1)
    assert out.y_median.tolist()[1] == 3.0
    uniform = fit1d(df, window={"phi": 1}, min_entries=1)
    assert uniform.y_median.tolist()[1] == 3.0
    assert uniform.y_median.tolist()[0] == 2.0  # np.median of 1, 2, 3


def test_hole_filling_fits_an_empty_bin_from_its_neighbours():
    df = field_rows(n_bins=9)
    holed = df[df.phi != 4]
    out = fit1d(holed, centers="grid", boundary="shrink", window={"phi": 1})
    hole = out[out.phi == 4].iloc[0]
    assert hole.y_entries == 80 and hole.quality_flag == ""
    assert hole.y_intercept == pytest.approx(0.5 * 4, abs=0.05)


@pytest.mark.parametrize("fitter", ["glm", "callable"])
def test_raw_row_fitters_see_the_same_kernel_weighted_windows(fitter):
    df = field_rows(n_bins=6, per_bin=15)
    options = {"boundary": "mirror", "kernel": "gaussian", "window": {"phi": 2}}
    fast = fit1d(df, **options)
    if fitter == "glm":
        raw = fit1d(df, fitter="glm", **options)
    else:

        def wls(x, y, w, terms):
            sw = np.sqrt(w)
            coef = np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)[0]
            return dict(zip(terms, coef, strict=True))

        raw = fit1d(df, fit_formula=wls, **options)
    for column in ("y_intercept", "y_slope_x", "y_rmse", "y_r_squared"):
        np.testing.assert_allclose(raw[column], fast[column], rtol=1e-8)


def test_statistics_refit_with_another_boundary_and_kernel():
    df = field_rows(n_bins=8)
    stats = xslide.bin_stats(df, ["phi"], ["y"], ["x"])
    refit = stats.slidewin.fit(window={"phi": 2}, boundary="mirror", kernel="epanechnikov")
    direct = xslide.fit(
        df, ["phi"], ["y"], ["x"], {"phi": 2}, boundary="mirror", kernel="epanechnikov"
    )
    np.testing.assert_allclose(refit.coef.values, direct.coef.values, rtol=1e-12)


def test_boundaries_and_kernels_match_the_oracle_on_a_2d_grid():
    rng = np.random.default_rng(5)
    n = 600
    df = pd.DataFrame({"a": rng.integers(0, 7, n), "b": rng.integers(0, 5, n)})
    df["x"] = rng.normal(size=n)
    df["y"] = 2 * df.x + df.a - df.b + rng.normal(size=n)
    for options in [
        {"boundary": {"a": "mirror", "b": "shrink"}, "kernel": "gaussian"},
        {"boundary": {"a": "periodic", "b": "truncate"}, "kernel": "epanechnikov"},
        {"boundary": "symmetric", "kernel": lambda da, db: 1.0 / (1.0 + da**2 + db**2)},
    ]:
        kwargs = {"min_entries": 3, **options}
        expected = reference_fit(df, ["a", "b"], {"a": 2, "b": 1}, ["y"], ["x"], **kwargs)
        actual = xslide.make_sliding_window_fit(
            df, ["a", "b"], {"a": 2, "b": 1}, ["y"], ["x"], **kwargs
        )
        assert_frames_close(actual, expected)
    modes = json.loads(actual.attrs["boundary_mode_per_dim"])
    assert modes == {"a": "shrink", "b": "shrink"}  # 'symmetric' is recorded by its name


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({"boundary": "wrap"}, ValueError, "boundary"),
        ({"kernel": "box"}, ValueError, "kernel"),
        ({"kernel": np.ones(4)}, ValueError, "shape"),
        ({"kernel": np.array([1.0, -1.0, 1.0])}, ValueError, ">= 0"),
        ({"kernel": "uniform", "kernel_width": 2}, ValueError, "kernel_width"),
        ({"kernel": "gaussian", "kernel_width": 0}, ValueError, "kernel_width"),
        ({"kernel": "gaussian", "fitter": "rlm"}, ValueError, "rlm"),
    ],
)
def test_bad_boundaries_and_kernels_are_refused(options, error, message):
    with pytest.raises(error, match=message):
        fit1d(field_rows(n_bins=4), window={"phi": 1}, **options)


def test_trend_recovers_the_gradient_and_removes_edge_bias():
    df = field_rows(slope=0.5)
    out = fit1d(df, trend=1)
    np.testing.assert_allclose(out.y_slope_d_phi, 0.5, atol=0.03)
    np.testing.assert_allclose(out.y_intercept, 0.5 * np.arange(12), atol=0.02)
    np.testing.assert_allclose(out.y_slope_x, 2.0, atol=0.01)
    assert out.columns.get_loc("y_slope_d_phi") == out.columns.get_loc("y_slope_x") + 1


def test_trend_on_a_flat_field_reproduces_the_plain_fit():
    df = field_rows(slope=0.0, per_bin=200)
    plain = fit1d(df)
    trended = fit1d(df, trend=1)
    assert (trended.y_slope_d_phi.abs() <= 4 * trended.y_slope_d_phi_err).all()
    difference = (trended.y_intercept - plain.y_intercept).abs()
    assert (difference <= 4 * trended.y_intercept_err).all()
    np.testing.assert_allclose(trended.y_slope_x, plain.y_slope_x, rtol=1e-3)


def test_trend_terms_on_the_xarray_result_and_every_path():
    df = field_rows(n_bins=6, per_bin=20, slope=0.3)
    ds = xslide.fit(df, ["phi"], ["y"], ["x"], {"phi": 1}, trend=1)
    assert ds.term.values.tolist() == ["Intercept", "x", "d_phi"]
    fast = fit1d(df, trend=1, window={"phi": 1})
    glm = fit1d(df, trend=1, window={"phi": 1}, fitter="glm")
    np.testing.assert_allclose(glm.y_slope_d_phi, fast.y_slope_d_phi, rtol=1e-8)
    with pytest.raises(ValueError, match="trend"):
        fit1d(df, trend=2)


def test_digitize_bins_physical_columns_and_fits_carry_the_centres(tmp_path):
    rng = np.random.default_rng(2)
    n = 4000
    df = pd.DataFrame({"r": rng.uniform(80, 250, n), "x": rng.normal(size=n)})
    df["y"] = 0.01 * df.r + df.x + rng.normal(0, 0.1, n)
    df.loc[[0, 1], "r"] = [300.0, np.nan]  # outside the edges and missing: no bin
    binned = xslide.digitize(df, {"r": (80, 250, 17)})
    assert "rBin" not in df and binned.rBin.dtype == "Int64"
    assert binned.rBin.isna().sum() == 2 and binned.rBin.max() == 16
    expected = np.floor((df.r[2:] - 80) / 10).clip(upper=16).astype(int)
    np.testing.assert_array_equal(binned.rBin[2:].to_numpy(int), expected.to_numpy())
    ds = xslide.fit(binned, ["rBin"], ["y"], ["x"], {"rBin": 1}, binning_formulas=None)
    np.testing.assert_allclose(ds.r_center.values, 85 + 10 * np.arange(17))
    assert ds.r_center.dims == ("rBin",)
    assert ds.attrs["n_rows_without_bin"] == 2
    formulas = json.loads(ds.attrs["binning_formulas_json"])
    assert formulas == {"rBin": "rBin = digitize(r, edges=linspace(80.0, 250.0, 18))"}
    ds.to_netcdf(tmp_path / "fit.nc")
    own = xslide.make_sliding_window_fit(
        binned, ["rBin"], {}, ["y"], ["x"], binning_formulas={"rBin": "floor((r - 80) / 10)"}
    )
    assert json.loads(own.attrs["binning_formulas_json"]) == {"rBin": "floor((r - 80) / 10)"}


def test_digitize_with_explicit_edges_and_bad_specs():
    df = pd.DataFrame({"z": [-1.0, -0.2, 0.0, 0.7, 1.0, 1.5]})
    binned = xslide.digitize(df, {"z": [-1.0, 0.0, 0.5, 1.0]}, suffix="_bin")
    assert binned.z_bin.tolist() == [0, 0, 1, 2, 2, pd.NA]
    for bad in [(1.0, 0.0, 3), [0.0, 0.0, 1.0], [1.0], (0.0, 1.0, 0)]:
        with pytest.raises(ValueError, match="digitize"):
            xslide.digitize(df, {"z": bad})
    with pytest.raises(KeyError, match="nope"):
        xslide.digitize(df, {"nope": (0, 1, 2)})
