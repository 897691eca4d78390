"""Windows over the grid (API.md §3): the window spec, the windowed sum of per-bin statistics,
what each boundary mode and kernel does at the edges on every path, empty windows and the trend
terms (the gradient across the window).

The windowed sum is checked against an explicit neighbor loop; whole fits against the oracle,
against statsmodels, and against the explicit expansion of every row into every window it
belongs to (the tool xslide replaces).
"""

from __future__ import annotations

import itertools
import json
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from data import grid_rows_3d
from reference import assert_frames_close, reference_fit

import xslide
from xslide import InvalidWindowSpec, make_sliding_window_fit
from xslide.window import window_sum

DIMS = ["xBin", "yBin", "zBin"]


# ---- the window spec ----


@pytest.mark.parametrize(
    "window, message",
    [
        ({"nope": 1}, "nope"),
        ({"xBin": -1}, ">= 0"),
        ({"xBin": 1.5}, "integer"),
        ({"xBin": True}, "integer"),
        ([1, 1, 1], "dict"),
    ],
)
def test_invalid_window_specs_are_refused(window, message):
    df = grid_rows_3d()
    with pytest.raises(InvalidWindowSpec, match=message):
        make_sliding_window_fit(df, DIMS, window, ["y"], ["x"])
    assert issubclass(InvalidWindowSpec, ValueError)


# ---- the windowed sum ----


def explicit_window_sum(values: np.ndarray, half: Sequence[int]) -> np.ndarray:
    """Sum of every in-grid neighbor within ±half along the leading axes."""
    shape = values.shape[: len(half)]
    out = np.zeros_like(values)
    offsets = list(itertools.product(*[range(-w, w + 1) for w in half]))
    for idx in np.ndindex(*shape):
        for off in offsets:
            nb = tuple(i + o for i, o in zip(idx, off, strict=True))
            if all(0 <= j < n for j, n in zip(nb, shape, strict=True)):
                out[idx] += values[nb]
    return out


@pytest.mark.parametrize(
    ("shape", "half"),
    [
        ((7,), (1,)),
        ((7,), (10,)),  # window larger than the grid
        ((5, 3), (0, 1)),
        ((4, 6), (2, 7)),
        ((3, 4, 5), (1, 0, 2)),
        ((2, 3, 2), (3, 3, 3)),
        ((4, 5, 3, 2), (1, 1, 0)),  # trailing axes are carried along, not summed
    ],
    ids=str,
)
def test_window_sum_equals_explicit_neighbor_loop(
    shape: tuple[int, ...], half: tuple[int, ...]
) -> None:
    values = np.random.default_rng(sum(shape)).normal(size=shape)
    actual = window_sum(values, half)
    assert actual.shape == values.shape
    np.testing.assert_allclose(actual, explicit_window_sum(values, half), rtol=1e-12, atol=1e-13)


def test_window_sum_of_integers_is_exact() -> None:
    values = np.random.default_rng(2).integers(0, 100, (6, 5, 4)).astype(np.float64)
    half = (2, 1, 3)
    np.testing.assert_array_equal(window_sum(values, half), explicit_window_sum(values, half))
    # a window covering the whole grid sums everything at every bin
    total = window_sum(values, (6, 5, 4))
    np.testing.assert_array_equal(total, np.full(values.shape, values.sum()))


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)], ids=str)
def test_window_sum_with_zero_half_widths_is_identity(shape: tuple[int, ...]) -> None:
    values = np.random.default_rng(1).normal(size=(*shape, 3))
    out = window_sum(values, (0,) * len(shape))
    np.testing.assert_array_equal(out, values)


# ---- windows of whole fits ----


def test_windows_equal_the_explicit_expansion_of_rows_into_every_window():
    """The tool we replace copies every row into every window it belongs to, then groups."""
    rng = np.random.default_rng(7)
    n = 400
    df = pd.DataFrame({"u": rng.integers(0, 6, n), "v": rng.integers(0, 4, n)})
    df["x"] = rng.normal(size=n)
    df["y"] = 3 * df.x + df.u - df.v + rng.normal(size=n)
    expanded = []
    for du in (-1, 0, 1):
        for dv in (-2, -1, 0, 1, 2):
            copy = df.assign(cu=df.u + du, cv=df.v + dv)
            expanded.append(copy[copy.cu.between(0, 5) & copy.cv.between(0, 3)])
    windows = pd.concat(expanded).groupby(["cu", "cv"])
    out = make_sliding_window_fit(df, ["u", "v"], {"u": 1, "v": 2}, ["y"], ["x"], min_entries=3)
    observed = df.groupby(["u", "v"]).size().index
    assert list(zip(out.u, out.v, strict=True)) == list(observed)
    for (u, v), rows in windows:
        if (u, v) not in observed:
            continue
        got = out[(out.u == u) & (out.v == v)].iloc[0]
        slope, intercept = np.polyfit(rows.x, rows.y, 1)
        assert got.y_entries == len(rows)
        assert got.y_slope_x == pytest.approx(slope, rel=1e-10)
        assert got.y_intercept == pytest.approx(intercept, rel=1e-9, abs=1e-12)
        assert got.y_median == np.median(rows.y)
        assert got.y_std == pytest.approx(rows.y.std(), rel=1e-10)


def test_windows_are_truncated_at_the_grid_edges_by_default():
    df = grid_rows_3d(shape=(3, 3, 1), per_bin=5)
    out = make_sliding_window_fit(df, DIMS, {"xBin": 1, "yBin": 1}, ["y"], ["x"]).set_index(DIMS)
    assert out.loc[(0, 0, 0), "n_neighbors_used"] == 4
    assert out.loc[(0, 1, 0), "n_neighbors_used"] == 6
    assert out.loc[(1, 1, 0), "n_neighbors_used"] == 9
    assert out.loc[(0, 0, 0), "n_rows_aggregated"] == 20
    assert out.loc[(0, 0, 0), "effective_window_fraction"] == pytest.approx(4 / 9)


def test_a_window_larger_than_a_single_bin_grid_holds_that_bin_only():
    df = grid_rows_3d(shape=(1, 1, 1), per_bin=30)
    out = make_sliding_window_fit(df, DIMS, {"xBin": 3, "yBin": 2}, ["y"], ["x"])
    assert len(out) == 1
    assert out.n_neighbors_used.item() == 1
    assert out.effective_window_fraction.item() == pytest.approx(1 / 35)
    ols = sm.OLS(df.y, sm.add_constant(df.x)).fit()
    assert out.y_slope_x.item() == pytest.approx(ols.params["x"], rel=1e-10)


def test_empty_windows_are_flagged_on_the_full_grid():
    df = pd.DataFrame({"b": [0] * 12 + [9] * 12, "x": np.arange(24.0), "y": np.arange(24.0)})
    out = make_sliding_window_fit(df, ["b"], {"b": 1}, ["y"], ["x"], centers="grid")
    assert list(out.b) == list(range(10))
    empty = out[out.b.between(2, 7)]
    assert (empty.quality_flag == "empty_window").all()
    assert (empty.y_entries == 0).all() and empty.y_intercept.isna().all()
    assert empty.y_mean.isna().all() and (empty.n_rows_aggregated == 0).all()
    assert out.loc[out.b == 1, "quality_flag"].item() == ""  # borrows bin 0's 12 rows


# ---- boundaries and kernels ----


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


def test_hole_filling_fits_an_empty_bin_from_its_neighbors():
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


# ---- trend terms ----


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
        fit1d(df, trend=3)


def test_a_periodic_dim_without_extent_warns_of_its_period_and_records_it():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"phi": rng.integers(0, 71, 2000), "y": rng.normal(size=2000)})
    with pytest.warns(UserWarning, match=r"'phi'.*0\.\.70 \(71 bins\).*extent="):
        ds = xslide.fit(df, ["phi"], ["y"], window={"phi": 1}, boundary="periodic")
    assert ds.attrs["period_json"] == '{"phi": [0, 70]}'
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = xslide.fit(
            df, ["phi"], ["y"], window={"phi": 1}, boundary="periodic", extent={"phi": (0, 71)}
        )
    assert full.attrs["period_json"] == '{"phi": [0, 71]}'
