"""The closed-form solve per window from its sufficient statistics: coefficients, errors, r² and
rmse against statsmodels and explicit fits; ``min_entries``; insufficient, singular and empty
windows and their quality flags; solving the centers in blocks.

Large offsets and near-singular designs are in ``test_numerics``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from data import grid_rows_3d

import xslide
from xslide import make_sliding_window_fit

DIMS = ["xBin", "yBin", "zBin"]


# ---- values ----


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


def test_window_zero_equals_per_group_statsmodels_ols():
    df = grid_rows_3d(shape=(3, 2, 2), per_bin=15)
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


def test_weighted_fit_equals_statsmodels_wls_and_aggregates_are_weighted():
    df = grid_rows_3d(shape=(1, 1, 1), per_bin=50)
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


def test_intercept_only_model_fits_the_mean_with_its_standard_error():
    df = grid_rows_3d(shape=(3, 1, 1))
    out = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], [])
    np.testing.assert_allclose(out.y_intercept, out.y_mean, rtol=1e-12)
    np.testing.assert_allclose(out.y_intercept_err, out.y_std / np.sqrt(out.y_entries), rtol=1e-10)
    assert (out.y_r_squared == 0).all()


# ---- min_entries, singular windows and quality flags ----


def test_min_entries_enforced_per_window():
    df = grid_rows_3d(shape=(3, 1, 1), per_bin=4)
    out = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"], min_entries=10)
    # edge windows hold 8 rows, the middle one 12
    assert list(out.y_n_fitted) == [8, 12, 8]
    assert list(out.quality_flag) == ["insufficient_stats", "", "insufficient_stats"]
    assert out.y_intercept.isna().tolist() == [True, False, True]
    assert out.y_mean.notna().all()  # aggregates do not depend on min_entries


@pytest.mark.parametrize("value", [0, -3])
def test_min_entries_must_be_positive(value):
    with pytest.raises(ValueError, match="min_entries"):
        make_sliding_window_fit(grid_rows_3d(), DIMS, {}, ["y"], ["x"], min_entries=value)


def test_windows_below_min_entries_are_not_fitted_but_keep_their_aggregates():
    df = grid_rows_3d(shape=(5, 2, 1), per_bin=1)
    out = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"], min_entries=10)
    assert (out.quality_flag == "insufficient_stats").all()
    assert out.y_intercept.isna().all() and out.y_slope_x_err.isna().all()
    assert (out.y_n_fitted >= 2).all() and out.y_mean.notna().all()


def test_constant_predictor_window_is_singular_not_garbage():
    df = grid_rows_3d(shape=(2, 1, 1), per_bin=20)
    df.loc[df.xBin == 0, "x"] = 4.2
    out = make_sliding_window_fit(df, DIMS, {}, ["y", "z"], ["x"])
    first = out.iloc[0]
    assert first.quality_flag == "singular_y,singular_z"
    assert np.isnan(first.y_slope_x) and np.isnan(first.y_intercept_err)
    assert first.y_n_fitted == 20 and first.y_mean == pytest.approx(df.y[:20].mean())
    assert out.iloc[1].quality_flag == ""


def flag_rows() -> pd.DataFrame:
    """Three bins along xBin: a good one, a thin one and one whose predictor is constant."""
    rng = np.random.default_rng(7)
    n_good, n_thin, n_flat = 20, 3, 12
    x = np.concatenate([rng.normal(size=n_good), rng.normal(size=n_thin), np.full(n_flat, 2.5)])
    n = x.size
    return pd.DataFrame(
        {
            "xBin": np.repeat([0, 1, 3], [n_good, n_thin, n_flat]).astype(np.int64),
            "yBin": np.zeros(n, dtype=np.int64),
            "x": x,
            "y": 1.0 + 2.0 * x + rng.normal(0, 0.1, n),
        }
    )


def test_quality_flag_codes_match_the_situation() -> None:
    df = flag_rows()
    fit = xslide.fit(
        df,
        dims=["xBin", "yBin"],
        targets=["y"],
        predictors=["x"],
        window={},
        centers="grid",
        min_entries=5,
    )
    code = fit.quality_flag.sel(target="y", yBin=0)
    assert code.sel(xBin=0).item() == 0  # ok
    assert code.sel(xBin=1).item() == 2  # 3 rows < min_entries: insufficient_stats
    assert code.sel(xBin=2).item() == 1  # no rows in the window: empty_window
    assert code.sel(xBin=3).item() == 3  # constant predictor: singular
    coef = fit.coef.sel(target="y", yBin=0)
    assert np.isfinite(coef.sel(xBin=0).values).all()
    assert coef.sel(xBin=0, term="x").item() == pytest.approx(2.0, abs=0.1)
    for b in (1, 2, 3):
        assert np.isnan(coef.sel(xBin=b).values).all()
    # n_fitted still counts the window's rows when the fit is skipped or singular
    np.testing.assert_array_equal(fit.n_fitted.sel(target="y", yBin=0).values, [20, 3, 0, 12])
    # the mean of the singular bin is still an ordinary mean
    flat_y = df.loc[df.xBin == 3, "y"]
    assert fit["mean"].sel(target="y", xBin=3, yBin=0).item() == pytest.approx(flat_y.mean())

    observed = xslide.fit(df, dims=["xBin", "yBin"], targets=["y"], predictors=["x"], min_entries=5)
    assert observed.quality_flag.sel(target="y", xBin=2, yBin=0).item() == 5


# ---- solving in blocks ----


def test_solving_in_blocks_of_centers_changes_nothing(monkeypatch):
    df = grid_rows_3d(shape=(6, 5, 4), per_bin=6)
    expected = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y", "z"], ["x"], min_entries=3)
    monkeypatch.setattr(xslide.solve, "SOLVE_BLOCK", 7)
    blocked = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y", "z"], ["x"], min_entries=3)
    blocked.attrs = expected.attrs = {}
    pd.testing.assert_frame_equal(blocked, expected, check_exact=True)
