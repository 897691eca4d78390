"""Predict: local models evaluated at new rows (nearest bin or multilinear between centers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

import xslide


def linear_field(n: int = 30_000, noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.integers(0, 8, n), "b": rng.integers(0, 5, n)})
    df["x"] = rng.normal(size=n)
    df["y"] = 1.0 + 0.5 * df.a - 0.3 * df.b + 2.0 * df.x + rng.normal(0, noise + 1e-12, n)
    return df


def truth(rows: pd.DataFrame) -> np.ndarray:
    return (1.0 + 0.5 * rows.a - 0.3 * rows.b + 2.0 * rows.x).to_numpy()


def test_nearest_is_the_bin_model_at_bin_centers():
    df = linear_field(noise=0.1)
    fit = xslide.fit(df, ["a", "b"], ["y"], ["x"], {"a": 1, "b": 1})
    rows = pd.DataFrame({"a": [0, 3, 7], "b": [4, 2, 0], "x": [0.5, -1.0, 2.0]})
    pred = fit.slidewin.predict(rows)
    coef = fit.coef.sel(target="y")
    expected = [
        float(coef.sel(term="Intercept", a=a, b=b) + coef.sel(term="x", a=a, b=b) * x)
        for a, b, x in rows.itertuples(index=False)
    ]
    np.testing.assert_allclose(pred.y_pred, expected, rtol=1e-12)
    off_center = fit.slidewin.predict(rows.assign(a=rows.a + 0.3))
    np.testing.assert_allclose(off_center.y_pred, expected, rtol=1e-12)  # same bin


def test_linear_is_continuous_across_bin_edges_and_exact_for_a_linear_field():
    df = linear_field()
    fit = xslide.fit(df, ["a", "b"], ["y"], ["x"], {"a": 1, "b": 1}, trend=1)
    rng = np.random.default_rng(1)
    rows = pd.DataFrame({"a": rng.uniform(-0.5, 7.5, 500), "b": rng.uniform(-0.5, 4.5, 500)})
    rows["x"] = rng.normal(size=500)
    pred = fit.slidewin.predict(rows, method="linear")
    np.testing.assert_allclose(pred.y_pred, truth(rows), atol=1e-8)
    edge = pd.DataFrame({"a": [2.5 - 1e-9, 2.5 + 1e-9], "b": [1.2, 1.2], "x": [0.3, 0.3]})
    noisy = xslide.fit(linear_field(noise=0.5), ["a", "b"], ["y"], ["x"], {"a": 1})
    values = noisy.slidewin.predict(edge, method="linear").y_pred.to_numpy()
    assert abs(values[0] - values[1]) < 1e-6  # no jump where nearest would switch bins
    jump = noisy.slidewin.predict(edge).y_pred.to_numpy()
    assert abs(jump[0] - jump[1]) > 1e-4


def test_bounds_and_invalid_bins_are_counted():
    df = linear_field(noise=0.1)
    df = df[~((df.a == 3) & (df.b == 2))]  # a hole: no model there with observed centers
    fit = xslide.fit(df, ["a", "b"], ["y"], ["x"], {"a": 1, "b": 1})
    rows = pd.DataFrame({"a": [3, 9, -2, 1], "b": [2, 1, 1, 1], "x": [0.0, 0.0, 0.0, 0.0]})
    out = fit.slidewin.predict(rows)
    assert np.isnan(out.y_pred.iloc[:3]).all() and np.isfinite(out.y_pred.iloc[3])
    assert out.attrs["n_outside_grid"] == 2 and out.attrs["n_invalid"] == 1
    clamped = fit.slidewin.predict(rows, bounds="clamp", invalid="nearest_valid")
    assert np.isfinite(clamped.y_pred).all()
    edge = fit.slidewin.predict(pd.DataFrame({"a": [7], "b": [1], "x": [0.0]}))
    assert clamped.y_pred.iloc[1] == pytest.approx(edge.y_pred.iloc[0])


def test_prediction_error_propagates_the_covariance_like_statsmodels():
    df = linear_field(noise=0.3)
    fit = xslide.fit(df, ["a", "b"], ["y"], ["x"], {})
    rows = df[(df.a == 2) & (df.b == 1)]
    ols = sm.OLS(rows.y, sm.add_constant(rows.x)).fit()
    cov = fit["cov"].sel(target="y", a=2, b=1).values
    np.testing.assert_allclose(cov, ols.cov_params().to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(
        np.sqrt(np.diag(cov)), fit.stderr.sel(target="y", a=2, b=1).values, rtol=1e-12
    )
    new = pd.DataFrame({"a": [2, 2], "b": [1, 1], "x": [0.0, 1.5]})
    out = fit.slidewin.predict(new, return_error=True)
    expected = ols.get_prediction(sm.add_constant(new.x, has_constant="add")).se_mean
    np.testing.assert_allclose(out.y_pred_err, expected, rtol=1e-9)


def test_digitized_dims_take_physical_positions():
    rng = np.random.default_rng(3)
    # two rows 2.5 either side of every bin center: each bin's mean r is its center exactly
    centers = np.repeat(105.0 + 10 * np.arange(10), 200)
    df = pd.DataFrame({"r": centers + np.tile([-2.5, 2.5], 1000), "x": rng.normal(size=2000)})
    df["y"] = 0.02 * centers + df.x  # linear in r at the bin level, exactly
    binned = xslide.digitize(df, {"r": (100, 200, 10)})
    fit = xslide.fit(binned, ["rBin"], ["y"], ["x"], {"rBin": 1}, trend=1)
    rows = pd.DataFrame({"r": [101.0, 155.0, 199.0, 250.0], "x": [0.0, 1.0, -1.0, 0.0]})
    out = xslide.predict(fit, rows, method="linear")
    np.testing.assert_allclose(out.y_pred[:3], 0.02 * rows.r[:3] + rows.x[:3], atol=1e-8)
    assert np.isnan(out.y_pred.iloc[3]) and out.attrs["n_outside_grid"] == 1


def test_linear_blends_in_the_physical_value_between_centers_of_unequal_bins():
    edges = [0.0, 1.0, 3.0, 4.0, 7.0, 8.0]
    centers = 0.5 * (np.array(edges[:-1]) + np.array(edges[1:]))
    offsets = np.array([-0.4, 0.4]) * np.diff(edges)[:, None]  # each bin's mean r: its center
    r = (centers[:, None] + offsets).ravel()
    binned = xslide.digitize(pd.DataFrame({"r": r, "y": 2 * r + 1}), {"r": edges})
    fit = xslide.fit(binned, ["rBin"], ["y"], min_entries=1)
    rows = pd.DataFrame({"r": [0.5, 1.2, 2.9, 3.1, 5.0, 7.5]})
    linear = xslide.predict(fit, rows, method="linear")
    np.testing.assert_allclose(linear.y_pred, 2 * rows.r + 1, rtol=1e-12)
    # nearest: the model of the bin that holds the row (2.9 is in [1, 3), nearer center 3.5)
    nearest = xslide.predict(fit, rows, method="nearest")
    np.testing.assert_allclose(nearest.y_pred, 2 * centers[[0, 1, 1, 2, 3, 4]] + 1, rtol=1e-12)


def test_formula_fits_predict_through_their_terms(tmp_path):
    df = linear_field(noise=0.05)
    df["y"] += 0.4 * df.x**2
    fit = xslide.fit(df, ["a"], ["y"], formula="target ~ x + I(x**2)", window={"a": 1})
    path = tmp_path / "fit.nc"
    fit.to_netcdf(path)
    reopened = xr_open(path)
    rows = pd.DataFrame({"a": [3, 3], "x": [0.0, 2.0]})
    out = reopened.slidewin.predict(rows)
    coef = fit.coef.sel(target="y", a=3).values
    np.testing.assert_allclose(out.y_pred, coef[0] + coef[1] * rows.x + coef[2] * rows.x**2)


def xr_open(path):
    import xarray as xr

    with xr.open_dataset(path) as ds:
        return ds.load()


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"method": "cubic"}, ValueError),
        ({"bounds": "wrap"}, ValueError),
        ({"invalid": "zero"}, ValueError),
        ({"targets": ["nope"]}, KeyError),
    ],
)
def test_bad_predict_options(kwargs, error):
    df = linear_field(n=2000, noise=0.1)
    fit = xslide.fit(df, ["a"], ["y"], ["x"], {"a": 1})
    with pytest.raises(error):
        fit.slidewin.predict(df, **kwargs)
    with pytest.raises(KeyError, match="'a'"):
        fit.slidewin.predict(df.drop(columns="a"))


def test_a_formula_read_with_a_fit_is_checked_before_it_is_evaluated(tmp_path):
    df = linear_field(n=2000, noise=0.1)
    fit = xslide.fit(df, ["a"], ["y"], formula="target ~ x", window={"a": 1})
    marker = tmp_path / "PWNED"
    fit.attrs["formula"] = f"target ~ x + I(x * 0 + len(open({str(marker)!r}, 'w').write('x')))"
    with pytest.raises(ValueError):
        xslide.predict(fit, df)
    assert not marker.exists()


def test_predict_by_physical_value_refuses_bins_the_fit_does_not_cover():
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"r": rng.uniform(2, 10, 4000), "x": rng.normal(size=4000)})
    df["y"] = df.r + df.x
    binned = xslide.digitize(df, {"r": (0, 10, 5)})  # bin 0 (r < 2) holds no row
    fit = xslide.fit(binned, ["rBin"], ["y"], ["x"], {"rBin": 1})
    assert fit.rBin.values.tolist() == [1, 2, 3, 4]
    out = fit.slidewin.predict(pd.DataFrame({"r": [0.5, 1.9, 5.0], "x": 0.0}))
    assert np.isnan(out.y_pred.iloc[:2]).all() and np.isfinite(out.y_pred.iloc[2])
    assert out.attrs["n_outside_grid"] == 2


def test_a_predictor_named_like_a_trend_term_is_a_plain_predictor():
    rng = np.random.default_rng(3)
    n = 3000
    df = pd.DataFrame({"a": rng.integers(0, 6, n), "d_a": rng.normal(size=n)})
    df["y"] = 3.0 * df.d_a + rng.normal(0, 0.1, n)
    fit = xslide.fit(df, ["a"], ["y"], ["d_a"], {"a": 1})
    pred = fit.slidewin.predict(df)
    coef = fit.coef.sel(target="y").sel(a=df.a.to_xarray()).values
    np.testing.assert_allclose(pred.y_pred, coef[0] + coef[1] * df.d_a, rtol=1e-12)
    with pytest.raises(ValueError, match="clash"):
        xslide.fit(df, ["a"], ["y"], ["d_a"], {"a": 1}, trend=1)
