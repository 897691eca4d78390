"""Named behaviours of ``make_sliding_window_fit`` (the seed API, API.md §1)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from reference import assert_frames_close, reference_fit

import xslide
from xslide import InvalidWindowSpec, PerformanceWarning, make_sliding_window_fit


def grid_rows(shape=(4, 3, 5), per_bin=12, seed=0) -> pd.DataFrame:
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


DIMS = ["xBin", "yBin", "zBin"]


def test_basic_3d_window_matches_explicit_gathering():
    df = grid_rows()
    window = {"xBin": 1, "yBin": 1, "zBin": 1}
    out = make_sliding_window_fit(df, DIMS, window, ["y"], ["x", "x2"])
    assert len(out) == 4 * 3 * 5
    assert_frames_close(out, reference_fit(df, DIMS, window, ["y"], ["x", "x2"]))


def test_aggregation_values_of_one_window():
    df = grid_rows()
    out = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"]).set_index(DIMS)
    rows = df[(df.xBin.between(0, 2)) & (df.yBin == 1) & (df.zBin == 2)]
    got = out.loc[(1, 1, 2)]
    assert got["y_entries"] == len(rows) == 36
    assert got["y_mean"] == pytest.approx(rows.y.mean(), rel=1e-12)
    assert got["y_std"] == pytest.approx(rows.y.std(ddof=1), rel=1e-10)
    assert got["y_median"] == np.median(rows.y)


def test_linear_fit_recovers_known_coefficients():
    rng = np.random.default_rng(3)
    n = 20_000
    df = pd.DataFrame({"b": rng.integers(0, 5, n), "x": rng.uniform(-3, 3, n)})
    df["y"] = 2.0 * df.x + rng.normal(0, 0.01, n)
    out = make_sliding_window_fit(df, ["b"], {"b": 1}, ["y"], ["x"])
    np.testing.assert_allclose(out["y_slope_x"], 2.0, atol=5e-4)
    np.testing.assert_allclose(out["y_intercept"], 0.0, atol=1e-3)
    assert (out["y_r_squared"] > 0.9999).all()
    np.testing.assert_allclose(out["y_rmse"], 0.01, rtol=0.05)


def test_empty_windows_are_flagged_on_the_full_grid():
    df = pd.DataFrame({"b": [0] * 12 + [9] * 12, "x": np.arange(24.0), "y": np.arange(24.0)})
    out = make_sliding_window_fit(df, ["b"], {"b": 1}, ["y"], ["x"], centers="grid")
    assert list(out.b) == list(range(10))
    empty = out[out.b.between(2, 7)]
    assert (empty.quality_flag == "empty_window").all()
    assert (empty.y_entries == 0).all() and empty.y_intercept.isna().all()
    assert empty.y_mean.isna().all() and (empty.n_rows_aggregated == 0).all()
    assert out.loc[out.b == 1, "quality_flag"].item() == ""  # borrows bin 0's 12 rows


def test_min_entries_enforced_per_window():
    df = grid_rows(shape=(3, 1, 1), per_bin=4)
    out = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"], min_entries=10)
    # edge windows hold 8 rows, the middle one 12
    assert list(out.y_n_fitted) == [8, 12, 8]
    assert list(out.quality_flag) == ["insufficient_stats", "", "insufficient_stats"]
    assert out.y_intercept.isna().tolist() == [True, False, True]
    assert out.y_mean.notna().all()  # aggregates do not depend on min_entries


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
def test_invalid_window_spec(window, message):
    df = grid_rows()
    with pytest.raises(InvalidWindowSpec, match=message):
        make_sliding_window_fit(df, DIMS, window, ["y"], ["x"])
    assert issubclass(InvalidWindowSpec, ValueError)


@pytest.mark.parametrize(
    "kwargs, column",
    [
        ({"group_columns": ["xBin", "nope"]}, "nope"),
        ({"fit_columns": ["ghost"]}, "ghost"),
        ({"predictor_columns": ["missing_x"]}, "missing_x"),
        ({"weights_column": "wgt"}, "wgt"),
    ],
)
def test_missing_columns_are_named(kwargs, column):
    args = {
        "df": grid_rows(),
        "group_columns": DIMS,
        "window_spec": {},
        "fit_columns": ["y"],
        "predictor_columns": ["x"],
    }
    args.update(kwargs)
    with pytest.raises(KeyError, match=column):
        make_sliding_window_fit(**args)


@pytest.mark.parametrize(
    "make_bad", [lambda s: s.astype(float), lambda s: s > 1, lambda s: s.astype(str), "category"]
)
def test_non_integer_bins_rejected(make_bad):
    df = grid_rows()
    df["xBin"] = df.xBin.astype("category") if make_bad == "category" else make_bad(df.xBin)
    with pytest.raises(TypeError, match="xBin"):
        make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"])


def test_nullable_integer_bins_accepted_and_missing_bins_left_out_and_counted():
    df = grid_rows()
    expected = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"])
    df["xBin"] = df.xBin.astype("Int32")
    pd.testing.assert_frame_equal(
        make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"]), expected, check_dtype=False
    )
    df.loc[[0, 1], "xBin"] = pd.NA
    out = make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"])
    assert out.n_rows_aggregated.sum() == len(df) - 2
    assert out.attrs["n_rows_without_bin"] == 2


@pytest.mark.parametrize("value", [0, -3])
def test_min_entries_must_be_positive(value):
    with pytest.raises(ValueError, match="min_entries"):
        make_sliding_window_fit(grid_rows(), DIMS, {}, ["y"], ["x"], min_entries=value)


def test_selection_length_mismatch():
    df = grid_rows()
    with pytest.raises(ValueError, match="selection"):
        make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"], selection=np.ones(3, bool))
    with pytest.raises(TypeError, match="selection"):
        make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"], selection=np.ones(len(df)))


def test_selection_series_is_aligned_on_the_index():
    df = grid_rows()
    mask = pd.Series(df.x > 0, index=df.index)
    expected = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"], selection=mask)
    shuffled = mask.sample(frac=1.0, random_state=1)
    got = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"], selection=shuffled)
    pd.testing.assert_frame_equal(got, expected)
    with pytest.raises(ValueError, match="aligned"):
        bad = pd.Series(mask.to_numpy(), index=mask.index + 10_000)
        make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"], selection=bad)


def test_selection_filters_rows():
    df = grid_rows()
    sel = (df.x2 > 0).to_numpy()
    got = make_sliding_window_fit(df, DIMS, {"zBin": 1}, ["y"], ["x"], selection=sel)
    expected = make_sliding_window_fit(
        df[sel].reset_index(drop=True), DIMS, {"zBin": 1}, ["y"], ["x"]
    )
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
    assert got.attrs["n_rows_not_selected"] == int((~sel).sum())


def test_single_bin_dataset():
    df = grid_rows(shape=(1, 1, 1), per_bin=30)
    out = make_sliding_window_fit(df, DIMS, {"xBin": 3, "yBin": 2}, ["y"], ["x"])
    assert len(out) == 1
    assert out.n_neighbors_used.item() == 1
    assert out.effective_window_fraction.item() == pytest.approx(1 / 35)
    ols = sm.OLS(df.y, sm.add_constant(df.x)).fit()
    assert out.y_slope_x.item() == pytest.approx(ols.params["x"], rel=1e-10)


def test_all_bins_sparse():
    df = grid_rows(shape=(5, 2, 1), per_bin=1)
    out = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"], min_entries=10)
    assert (out.quality_flag == "insufficient_stats").all()
    assert out.y_intercept.isna().all() and out.y_slope_x_err.isna().all()
    assert (out.y_n_fitted >= 2).all() and out.y_mean.notna().all()


def test_boundary_bins_are_truncated():
    df = grid_rows(shape=(3, 3, 1), per_bin=5)
    out = make_sliding_window_fit(df, DIMS, {"xBin": 1, "yBin": 1}, ["y"], ["x"]).set_index(DIMS)
    assert out.loc[(0, 0, 0), "n_neighbors_used"] == 4
    assert out.loc[(0, 1, 0), "n_neighbors_used"] == 6
    assert out.loc[(1, 1, 0), "n_neighbors_used"] == 9
    assert out.loc[(0, 0, 0), "n_rows_aggregated"] == 20
    assert out.loc[(0, 0, 0), "effective_window_fraction"] == pytest.approx(4 / 9)


def test_multi_target_column_names_and_order():
    df = grid_rows().rename(columns={"x2": "x-2"})
    out = make_sliding_window_fit(df, DIMS, {}, ["y", "z"], ["x", "x-2"])
    aggregates = [f"{t}_{a}" for t in ("y", "z") for a in ("mean", "std", "median", "entries")]
    fits = []
    for t in ("y", "z"):
        fits += [f"{t}_intercept", f"{t}_slope_x", f"{t}_slope_x_2", f"{t}_intercept_err"]
        fits += [f"{t}_slope_x_err", f"{t}_slope_x_2_err", f"{t}_r_squared", f"{t}_rmse"]
        fits += [f"{t}_n_fitted"]
    tail = ["quality_flag", "n_neighbors_used", "n_rows_aggregated", "effective_window_fraction"]
    assert list(out.columns) == DIMS + aggregates + fits + tail
    assert out[["z_slope_x"]].mean().item() == pytest.approx(-1.0, abs=0.1)


def test_aggregation_functions_choose_columns():
    out = make_sliding_window_fit(
        grid_rows(), DIMS, {}, ["y", "z"], ["x"], aggregation_functions={"y": ["median"]}
    )
    assert "y_median" in out and "y_mean" not in out and "z_mean" not in out
    with pytest.raises(ValueError, match="mode"):
        make_sliding_window_fit(
            grid_rows(), DIMS, {}, ["y"], ["x"], aggregation_functions={"y": ["mode"]}
        )


def test_weighted_aggregation():
    df = grid_rows(shape=(1, 1, 1), per_bin=50)
    out = make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"], weights_column="w")
    w, y = df.w.to_numpy(), df.y.to_numpy()
    mean = np.average(y, weights=w)
    var = np.sum(w * (y - mean) ** 2) / (w.sum() - np.sum(w**2) / w.sum())
    assert out.y_mean.item() == pytest.approx(mean, rel=1e-12)
    assert out.y_std.item() == pytest.approx(np.sqrt(var), rel=1e-10)
    assert out.y_median.item() == np.median(y)  # the median ignores row weights
    wls = sm.WLS(df.y, sm.add_constant(df.x), weights=df.w).fit()
    assert out.y_slope_x.item() == pytest.approx(wls.params["x"], rel=1e-10)
    assert out.y_slope_x_err.item() == pytest.approx(wls.bse["x"], rel=1e-9)
    assert out.y_r_squared.item() == pytest.approx(wls.rsquared, rel=1e-9)
    assert out.attrs["fitter_used"] == "wls"


def test_negative_weights_and_wls_without_weights_are_refused():
    df = grid_rows()
    df.loc[5, "w"] = -1.0
    with pytest.raises(ValueError, match="negative"):
        make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"], weights_column="w")
    with pytest.raises(ValueError, match="weights_column"):
        make_sliding_window_fit(grid_rows(), DIMS, {}, ["y"], ["x"], fitter="wls")


def test_nan_rows_leave_only_their_target_and_are_counted():
    df = grid_rows(shape=(2, 1, 1), per_bin=20)
    df.loc[[0, 1, 2], "y"] = [np.nan, np.inf, -np.inf]
    df.loc[25, "x"] = np.nan  # predictor NaN: out of both targets
    out = make_sliding_window_fit(df, DIMS, {}, ["y", "z"], ["x"])
    assert list(out.y_entries) == [17, 19]
    assert list(out.z_entries) == [20, 19]
    assert list(out.n_rows_aggregated) == [20, 20]
    assert json.loads(out.attrs["n_rows_invalid_json"]) == {"y": 4, "z": 1}


def test_metadata_present():
    out = make_sliding_window_fit(
        grid_rows(), DIMS, {"xBin": 1}, ["y"], ["x"], binning_formulas={"xBin": "floor(r/5)"}
    )
    attrs = out.attrs
    assert json.loads(attrs["window_spec_json"]) == {"xBin": 1, "yBin": 0, "zBin": 0}
    assert json.loads(attrs["binning_formulas_json"]) == {"xBin": "floor(r/5)"}
    assert json.loads(attrs["boundary_mode_per_dim"]) == dict.fromkeys(DIMS, "truncate")
    assert attrs["backend_used"] in ("numba", "numpy")
    assert attrs["fitter_used"] == "ols"
    assert attrs["computation_time_sec"] > 0
    assert attrs["statsmodels_version"] == sm.__version__
    assert attrs["xslide_version"] == xslide.__version__


def test_performance_warning_when_numba_is_missing(monkeypatch):
    monkeypatch.setattr(xslide._numba, "HAVE_NUMBA", False)
    df = grid_rows()
    with pytest.warns(PerformanceWarning, match="numba"):
        out = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"], backend="numba")
    assert out.attrs["backend_used"] == "numpy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"])  # no warning
    assert auto.attrs["backend_used"] == "numpy"
    assert_frames_close(out, auto, rtol=1e-13)


def test_window_zero_equals_per_group_statsmodels_ols():
    df = grid_rows(shape=(3, 2, 2), per_bin=15)
    out = make_sliding_window_fit(df, DIMS, {}, ["y"], ["x", "x2"]).set_index(DIMS)
    for key, rows in df.groupby(DIMS):
        ols = sm.OLS(rows.y, sm.add_constant(rows[["x", "x2"]])).fit()
        got = out.loc[key]
        np.testing.assert_allclose(
            [got.y_intercept, got.y_slope_x, got.y_slope_x2], ols.params.to_numpy(), rtol=1e-10
        )
        np.testing.assert_allclose(
            [got.y_intercept_err, got.y_slope_x_err, got.y_slope_x2_err],
            ols.bse.to_numpy(),
            rtol=1e-9,
        )
        assert got.y_r_squared == pytest.approx(ols.rsquared, rel=1e-9)
        assert got.y_rmse == pytest.approx(np.sqrt(np.mean(ols.resid**2)), rel=1e-9)
        assert got.y_n_fitted == ols.nobs


def test_small_2d_case_against_full_explicit_expansion():
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


def test_constant_predictor_window_is_singular_not_garbage():
    df = grid_rows(shape=(2, 1, 1), per_bin=20)
    df.loc[df.xBin == 0, "x"] = 4.2
    out = make_sliding_window_fit(df, DIMS, {}, ["y", "z"], ["x"])
    first = out.iloc[0]
    assert first.quality_flag == "singular_y,singular_z"
    assert np.isnan(first.y_slope_x) and np.isnan(first.y_intercept_err)
    assert first.y_n_fitted == 20 and first.y_mean == pytest.approx(df.y[:20].mean())
    assert out.iloc[1].quality_flag == ""


def test_grid_larger_than_max_bins_is_refused_with_advice():
    df = pd.DataFrame({"a": [0, 10_000], "b": [0, 10_000], "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"100,020,001 bins.*extent="):
        make_sliding_window_fit(df, ["a", "b"], {}, ["y"], [])
    with pytest.raises(ValueError, match="max_bins=1,000"):
        make_sliding_window_fit(df, ["a", "b"], {}, ["y"], [], max_bins=1000)


def test_extent_fixes_the_grid_and_counts_rows_outside():
    df = grid_rows(shape=(4, 1, 1), per_bin=10)
    out = make_sliding_window_fit(
        df, DIMS, {"xBin": 1}, ["y"], ["x"], centers="grid", extent={"xBin": (1, 5)}
    )
    assert list(out.xBin) == [1, 2, 3, 4, 5]
    assert out.attrs["n_rows_outside_extent"] == 10
    assert list(out.y_entries) == [20, 30, 20, 10, 0]


def test_unknown_options_are_refused_not_ignored():
    with pytest.raises(TypeError, match="windoww"):
        make_sliding_window_fit(grid_rows(), DIMS, {}, ["y"], ["x"], windoww=3)
    with pytest.raises(ValueError, match="fitter"):
        make_sliding_window_fit(grid_rows(), DIMS, {}, ["y"], ["x"], fitter="lasso")
    with pytest.raises(ValueError, match="centers"):
        make_sliding_window_fit(grid_rows(), DIMS, {}, ["y"], ["x"], centers="all")
    with pytest.raises(ValueError, match="backend"):
        make_sliding_window_fit(grid_rows(), DIMS, {}, ["y"], ["x"], backend="gpu")


def test_results_identical_run_to_run():
    df = grid_rows()
    a = make_sliding_window_fit(df, DIMS, {"xBin": 2, "zBin": 1}, ["y", "z"], ["x", "x2"])
    b = make_sliding_window_fit(df, DIMS, {"xBin": 2, "zBin": 1}, ["y", "z"], ["x", "x2"])
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_intercept_only_model():
    df = grid_rows(shape=(3, 1, 1))
    out = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], [])
    np.testing.assert_allclose(out.y_intercept, out.y_mean, rtol=1e-12)
    np.testing.assert_allclose(out.y_intercept_err, out.y_std / np.sqrt(out.y_entries), rtol=1e-10)
    assert (out.y_r_squared == 0).all()


def test_solving_in_blocks_of_centers_changes_nothing(monkeypatch):
    df = grid_rows(shape=(6, 5, 4), per_bin=6)
    expected = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y", "z"], ["x"], min_entries=3)
    monkeypatch.setattr(xslide.solve, "SOLVE_BLOCK", 7)
    blocked = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y", "z"], ["x"], min_entries=3)
    blocked.attrs = expected.attrs = {}
    pd.testing.assert_frame_equal(blocked, expected, check_exact=True)
