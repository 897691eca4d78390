"""Hostile inputs to predict: no crash, no hang, no silent wrong result.

Rows are placed by bin label, rows without a finite position give NaN whatever the bounds,
and a fit read from a file is checked first, each refusal one line naming the culprit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xslide


def curved_rows(n: int = 6000, seed: int = 0) -> pd.DataFrame:
    """Rows whose local model changes strongly from bin to bin: a wrong bin shows at once."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"a": rng.integers(0, 8, n), "b": rng.integers(0, 4, n)})
    df["x"] = rng.normal(size=n)
    df["y"] = df.a**2 - 0.7 * df.b**2 + (1.0 + df.a) * df.x + rng.normal(0, 0.05, n)
    return df


@pytest.fixture(scope="module")
def fit() -> xr.Dataset:
    """One bin dim 'a' (labels 0..7), each bin its own model."""
    return xslide.fit(curved_rows(), dims=["a"], targets=["y"], predictors=["x"], window={})


@pytest.fixture(scope="module")
def trend_fit() -> xr.Dataset:
    """Bin dims 'a' and 'b' with local gradients d_a, d_b."""
    return xslide.fit(
        curved_rows(), ["a", "b"], ["y"], ["x"], {"a": 1, "b": 1}, trend=1, min_entries=5
    )


@pytest.fixture(scope="module")
def digitized() -> xr.Dataset:
    """A digitized dim: rBin from r in [0, 10) in 5 bins, r_center with its edges."""
    rng = np.random.default_rng(2)
    df = pd.DataFrame({"r": rng.uniform(0, 10, 5000), "x": rng.normal(size=5000)})
    df["y"] = np.floor(df.r / 2) ** 2 + (1 + np.floor(df.r / 2)) * df.x
    binned = xslide.digitize(df, {"r": (0, 10, 5)})
    return xslide.fit(binned, ["rBin"], ["y"], ["x"], {})


def model(fit: xr.Dataset, x: float, **bins) -> float:
    """The local model of the labelled bin at x, computed by hand (no trend term)."""
    coef = fit.coef.sel(target="y", **bins)
    return float(coef.sel(term="Intercept") + coef.sel(term="x") * x)


def refused(error, pattern: str, *args, **kwargs) -> None:
    """predict(*args, **kwargs) raises ``error`` with one line matching ``pattern``."""
    with pytest.raises(error, match=pattern) as info:
        xslide.predict(*args, **kwargs)
    assert "\n" not in str(info.value)


# ---- rows are placed by bin label ----


def test_every_other_bin_gives_rows_the_model_of_their_labelled_bin(fit):
    half = fit.isel(a=slice(None, None, 2))  # labels 0, 2, 4, 6
    rows = pd.DataFrame({"a": [0, 2, 4, 6, 1, 3, 5], "x": 0.5})
    for bounds in ("nan", "clamp"):
        out = xslide.predict(half, rows, bounds=bounds)
        expected = [model(fit, 0.5, a=a) for a in (0, 2, 4, 6)]
        np.testing.assert_allclose(out.y_pred.iloc[:4], expected, rtol=1e-12)
        assert out.y_pred.iloc[4:].isna().all()  # bins the fit does not hold are outside
        assert out.attrs["n_outside_grid"] == 3


@pytest.mark.parametrize("order", ["descending", "shuffled"])
@pytest.mark.parametrize("method", ["nearest", "linear"])
def test_coordinates_in_any_order_predict_as_the_sorted_fit(trend_fit, order, method):
    rng = np.random.default_rng(5)
    if order == "descending":
        moved = trend_fit.isel(a=slice(None, None, -1), b=slice(None, None, -1))
    else:
        moved = trend_fit.isel(a=rng.permutation(8), b=rng.permutation(4))
    rows = pd.DataFrame({"a": rng.uniform(-0.5, 7.5, 300), "b": rng.uniform(-0.5, 3.5, 300)})
    rows["x"] = rng.normal(size=300)
    want = xslide.predict(trend_fit, rows, method=method, return_error=True)
    got = xslide.predict(moved, rows, method=method, return_error=True)
    pd.testing.assert_frame_equal(got, want, rtol=1e-12)
    assert np.isfinite(got.y_pred).all()


def test_trend_offsets_are_measured_from_the_labelled_bin_center(trend_fit):
    backwards = trend_fit.isel(a=slice(None, None, -1))
    got = xslide.predict(backwards, pd.DataFrame({"a": [3.3], "b": [1], "x": [0.5]}))
    coef = trend_fit.coef.sel(target="y", a=3, b=1)
    want = coef.sel(term="Intercept") + 0.5 * coef.sel(term="x") + 0.3 * coef.sel(term="d_a")
    assert got.y_pred.iloc[0] == pytest.approx(float(want), rel=1e-12)


def test_stored_term_order_does_not_matter(trend_fit):
    shuffled = trend_fit.isel(term=[3, 0, 2, 1], term_=[3, 0, 2, 1])  # d_b, Intercept, d_a, x
    rows = pd.DataFrame({"a": [0.2, 3.4, 6.9], "b": [2.6, 0.0, 1.3], "x": [1.0, -0.5, 2.0]})
    want = xslide.predict(trend_fit, rows, method="linear", return_error=True)
    got = xslide.predict(shuffled, rows, method="linear", return_error=True)
    pd.testing.assert_frame_equal(got, want, rtol=1e-12)


def test_linear_refuses_a_fit_with_gaps_naming_the_dim(fit):
    rows = pd.DataFrame({"a": [0.5], "x": [0.0]})
    gappy = fit.isel(a=[0, 1, 2, 5])
    pattern = r"^method='linear' .* along 'a' are not consecutive \(missing \[3, 4\]\)"
    refused(ValueError, pattern, gappy, rows, method="linear")


def test_nearest_valid_lends_the_nearest_bin_by_label(fit):
    holed = fit.isel(a=[0, 4, 5]).copy(deep=True)
    holed["coef"].loc[{"a": 4}] = np.nan  # bin 4 unfitted: bin 5 is one label away, bin 0 four
    rows = pd.DataFrame({"a": [4, 0], "x": [1.0, 1.0]})
    out = xslide.predict(holed, rows, invalid="nearest_valid")
    np.testing.assert_allclose(out.y_pred, [model(fit, 1.0, a=5), model(fit, 1.0, a=0)])
    assert out.attrs["n_invalid"] == 1 and out.attrs["n_outside_grid"] == 0


def test_a_digitized_fit_with_a_gap_places_physical_values_by_label(digitized):
    gappy = digitized.isel(rBin=[0, 2, 3, 4])  # labels 0, 2, 3, 4: r in [2, 4) has no model
    rows = pd.DataFrame({"r": [1.0, 3.0, 5.0, 9.9], "x": 1.0})
    out = xslide.predict(gappy, rows)
    want = [model(digitized, 1.0, rBin=b) for b in (0, 2, 4)]
    np.testing.assert_allclose(out.y_pred.iloc[[0, 2, 3]], want, rtol=1e-12)
    assert np.isnan(out.y_pred.iloc[1]) and out.attrs["n_outside_grid"] == 1


def test_labels_spanning_a_huge_range_with_gaps_are_refused_not_allocated(fit):
    far = fit.isel(a=[0, 1]).assign_coords(a=[0, 10**12])
    refused(
        ValueError,
        r"^fit: the bin labels along \['a'\] leave gaps",
        far,
        pd.DataFrame({"a": [0], "x": [0.0]}),
    )


# ---- rows without a finite position ----


@pytest.mark.parametrize("bounds", ["nan", "clamp"])
@pytest.mark.parametrize("method", ["nearest", "linear"])
def test_rows_without_a_finite_position_give_nan_whatever_the_bounds(fit, bounds, method):
    rows = {
        "float": pd.DataFrame({"a": [np.nan, np.inf, -np.inf, 3.0], "x": 1.0}),
        "nullable": pd.DataFrame({"a": pd.array([None, None, None, 3], "Int64"), "x": 1.0}),
    }
    for frame in rows.values():
        out = xslide.predict(fit, frame, bounds=bounds, method=method, return_error=True)
        assert out.y_pred.iloc[:3].isna().all() and out.y_pred_err.iloc[:3].isna().all()
        assert out.y_pred.iloc[3] == pytest.approx(model(fit, 1.0, a=3), rel=1e-12)
        assert out.attrs["n_outside_grid"] == 3


def test_physical_values_without_a_finite_value_give_nan_when_clamped(digitized):
    rows = pd.DataFrame({"r": [np.nan, np.inf, -np.inf, 1e6, -1e6], "x": 1.0})
    out = xslide.predict(digitized, rows, bounds="clamp")
    assert out.y_pred.iloc[:3].isna().all()
    edge = [model(digitized, 1.0, rBin=4), model(digitized, 1.0, rBin=0)]
    np.testing.assert_allclose(out.y_pred.iloc[3:], edge, rtol=1e-12)  # finite: to the edge
    assert out.attrs["n_outside_grid"] == 5


@pytest.mark.parametrize("method", ["nearest", "linear"])
def test_clamp_moves_rows_to_the_grid_edge_so_predictions_stay_continuous(trend_fit, method):
    at_edge = pd.DataFrame({"a": [7.5, -0.5], "b": [3.5, 1.2], "x": [0.7, -0.2]})
    beyond = at_edge.assign(a=[40.0, -9.0], b=[3.5 + 1e-9, 1.2])
    want = xslide.predict(trend_fit, at_edge, method=method)
    got = xslide.predict(trend_fit, beyond, method=method, bounds="clamp")
    np.testing.assert_allclose(got.y_pred, want.y_pred, rtol=1e-9)
    assert want.attrs["n_outside_grid"] == 0 and got.attrs["n_outside_grid"] == 2


# ---- stored attributes, variables and coordinates ----


@pytest.mark.parametrize("value", ["yes", "1", 3, 0.5, True, [0, 1]])
def test_a_malformed_trend_attribute_is_refused_by_name(fit, value):
    crafted = fit.copy()
    crafted.attrs["trend"] = value
    refused(
        ValueError,
        r"^fit: attribute 'trend' must be 0, 1 or 2",
        crafted,
        pd.DataFrame({"a": [1], "x": [0.0]}),
    )


def test_a_crafted_file_is_refused_by_name_and_a_selected_one_predicts_by_label(fit, tmp_path):
    from xslide.io import open_fit

    crafted = fit.copy()
    crafted.attrs["trend"] = "yes"
    crafted.to_netcdf(tmp_path / "crafted.nc")
    rows = pd.DataFrame({"a": [4, 5], "x": [1.0, 1.0]})
    refused(
        ValueError,
        r"^fit: attribute 'trend' must be 0, 1 or 2, got 'yes'$",
        open_fit(tmp_path / "crafted.nc"),
        rows,
    )
    fit.isel(a=slice(None, None, -2)).to_netcdf(tmp_path / "odd.nc")  # labels 7, 5, 3, 1
    out = xslide.predict(open_fit(tmp_path / "odd.nc"), rows)
    assert np.isnan(out.y_pred.iloc[0])
    assert out.y_pred.iloc[1] == pytest.approx(model(fit, 1.0, a=5), rel=1e-12)


def test_a_formula_attribute_that_is_not_a_string_is_refused_by_name(fit):
    crafted = fit.copy()
    crafted.attrs["formula"] = np.array([1, 2])
    refused(
        ValueError,
        r"^fit: attribute 'formula' must be a string",
        crafted,
        pd.DataFrame({"a": [1], "x": [0.0]}),
    )


@pytest.mark.parametrize(
    "edges, message",
    [
        (None, "is missing"),
        ([[0.0, 2.0], [4.0, 6.0]], "1-D array"),
        ([0.0, 2.0, np.nan, 6.0, 8.0, 10.0], "finite"),
        ([10.0, 8.0, 6.0, 4.0, 2.0, 0.0], "strictly increasing"),
        (["low", "high"], "hold numbers"),
        ([0.0, 2.0, 4.0], "does not match"),  # 2 bins for labels 0..4
        ([0.0, 2.5, 4.0, 6.0, 8.0, 10.0], "does not match"),
    ],
)
def test_malformed_edges_are_refused_by_name(digitized, edges, message):
    crafted = digitized.copy(deep=True)
    if edges is None:
        del crafted["r_center"].attrs["edges"]
    else:
        crafted["r_center"].attrs["edges"] = edges
    pattern = rf"^fit: attribute 'edges' of coordinate 'r_center'.*{message}"
    refused(ValueError, pattern, crafted, pd.DataFrame({"r": [3.0], "x": [0.0]}))
    # the bin column alone needs no edges
    out = xslide.predict(crafted, pd.DataFrame({"rBin": [1], "x": [1.0]}))
    assert out.y_pred.iloc[0] == pytest.approx(model(digitized, 1.0, rBin=1), rel=1e-12)


def test_bin_centers_that_are_not_numbers_are_refused_by_name(digitized):
    crafted = digitized.assign_coords(r_center=("rBin", ["a", "b", "c", "d", "e"]))
    crafted["r_center"].attrs["edges"] = digitized["r_center"].attrs["edges"]
    refused(
        ValueError,
        r"^fit: coordinate 'r_center' must hold numbers",
        crafted,
        pd.DataFrame({"r": [3.0], "x": [0.0]}),
    )


def _misshape(name: str):
    """Builders of fits with one variable missing, misshaped or of the wrong dtype."""
    return {
        "coef missing": lambda f: f.drop_vars("coef"),
        "coef without term": lambda f: f.assign(coef=f.coef.isel(term=0)),
        "coef of strings": lambda f: f.assign(coef=f.coef.astype(str)),
        "cov misshaped": lambda f: f.assign(cov=f["cov"].isel(term_=0)),
        "stderr misshaped": lambda f: f.drop_vars("cov").assign(stderr=f.stderr.isel(target=0)),
        "quality_flag misshaped": lambda f: f.assign(quality_flag=f.quality_flag.isel(a=0)),
        "term_ not the terms": lambda f: f.assign_coords(term_=["Intercept", "w"]),
    }[name]


@pytest.mark.parametrize(
    "case, culprit",
    [
        ("coef missing", "no variable 'coef'"),
        ("coef without term", "variable 'coef' has no dim 'term'"),
        ("coef of strings", "variable 'coef' must be numeric"),
        ("cov misshaped", "variable 'cov' must have dims"),
        ("stderr misshaped", "variable 'stderr' must have dims"),
        ("quality_flag misshaped", "variable 'quality_flag' must have dims"),
        ("term_ not the terms", "coordinate 'term_'"),
    ],
)
def test_missing_or_misshaped_variables_are_refused_by_name(fit, case, culprit):
    refused(
        ValueError, rf"^fit: {culprit}", _misshape(case)(fit), pd.DataFrame({"a": [1], "x": [0.0]})
    )


def test_a_fit_without_cov_or_stderr_predicts_values_but_no_errors(fit):
    bare = fit.drop_vars(["cov", "stderr"])
    rows = pd.DataFrame({"a": [1, 6], "x": [0.5, -1.0]})
    out = xslide.predict(bare, rows)
    np.testing.assert_allclose(out.y_pred, [model(fit, 0.5, a=1), model(fit, -1.0, a=6)])
    refused(ValueError, r"^fit: no variable 'cov' nor 'stderr'", bare, rows, return_error=True)


@pytest.mark.parametrize(
    "terms, culprit",
    [
        ([0, 1], "must hold non-empty strings"),
        (["x", "x"], "repeats"),
        (["", "x"], "must hold non-empty"),
    ],
)
def test_bad_term_names_are_refused_by_name(fit, terms, culprit):
    crafted = fit.assign_coords(term=terms, term_=terms)
    refused(
        ValueError,
        rf"^fit: coordinate 'term' {culprit}",
        crafted,
        pd.DataFrame({"a": [1], "x": [0.0]}),
    )


@pytest.mark.parametrize(
    "labels, culprit",
    [
        (np.arange(8) + 0.5, "must hold integer bin labels"),
        (np.r_[np.nan, np.arange(1.0, 8.0)], "holds non-finite bin labels"),
        ([str(v) for v in range(8)], "must hold integer bin labels, got dtype"),
        ([0, 0, 1, 2, 3, 4, 5, 6], "repeats bin labels"),
        (np.r_[0.0, 1e300, np.arange(2.0, 8.0)], "must hold integer bin labels"),
        (None, "has no coordinate"),
    ],
)
def test_bad_bin_coordinates_are_refused_by_name(fit, labels, culprit):
    crafted = fit.drop_vars("a") if labels is None else fit.assign_coords(a=labels)
    refused(
        ValueError,
        rf"^fit: (coordinate|bin dim) 'a' {culprit}",
        crafted,
        pd.DataFrame({"a": [1], "x": [0.0]}),
    )


def test_integral_float_bin_labels_are_labels(fit):
    floats = fit.assign_coords(a=fit.a.values.astype(float)).isel(a=slice(None, None, -1))
    out = xslide.predict(floats, pd.DataFrame({"a": [1, 6], "x": [1.0, 1.0]}))
    np.testing.assert_allclose(out.y_pred, [model(fit, 1.0, a=1), model(fit, 1.0, a=6)])


def test_a_quality_flag_other_than_ok_makes_a_bin_unfitted(fit):
    flagged = fit.copy(deep=True)
    flagged["quality_flag"].loc[{"a": 3}] = 3  # singular, whatever the coefficients say
    rows = pd.DataFrame({"a": [3, 4], "x": [1.0, 1.0]})
    out = xslide.predict(flagged, rows)
    assert np.isnan(out.y_pred.iloc[0]) and out.attrs["n_invalid"] == 1
    lent = xslide.predict(flagged, rows, invalid="nearest_valid")
    assert np.isfinite(lent.y_pred).all()


def test_a_formula_fit_whose_terms_its_formula_does_not_make_is_refused(fit):
    df = curved_rows(2000)
    formula_fit = xslide.fit(df, ["a"], ["y"], formula="target ~ x", window={"a": 1})
    crafted = formula_fit.assign_coords(term=["Intercept", "w"], term_=["Intercept", "w"])
    refused(ValueError, r"^fit: terms \['w'\] are not terms of its formula", crafted, df)


# ---- targets ----


def test_targets_are_checked_and_a_single_name_is_a_target(fit):
    named = fit.assign_coords(target=["dy"])
    rows = pd.DataFrame({"a": [2], "x": [1.0]})
    out = xslide.predict(named, rows, targets="dy")  # not the characters 'd' and 'y'
    assert list(out.columns) == ["dy_pred"]
    refused(ValueError, r"^targets is empty", named, rows, targets=[])
    refused(ValueError, r"^targets name \['dy'\] more than once", named, rows, targets=["dy", "dy"])
    refused(ValueError, r"^fit: coordinate 'target' is empty", fit.isel(target=slice(0, 0)), rows)
    refused(ValueError, r"^fit: dim 'target' has no coordinate", fit.drop_vars("target"), rows)
    refused(
        KeyError, r"targets \['z'\] were not fitted; fitted: \['dy'\]", named, rows, targets="z"
    )


# ---- degenerate fits and rows ----


@pytest.mark.parametrize("method", ["nearest", "linear"])
def test_a_fit_without_fitted_bins_gives_nan(fit, method):
    unfitted = fit.assign(coef=fit.coef * np.nan)
    rows = pd.DataFrame({"a": [0, 3.2, 9], "x": 1.0})
    out = xslide.predict(unfitted, rows, method=method, bounds="clamp", invalid="nearest_valid")
    assert out.y_pred.isna().all() and out.attrs["n_invalid"] == 3


@pytest.mark.parametrize("bounds", ["nan", "clamp"])
@pytest.mark.parametrize("method", ["nearest", "linear"])
def test_a_fit_without_bins_gives_nan(fit, bounds, method):
    empty = fit.isel(a=slice(0, 0))
    out = xslide.predict(empty, pd.DataFrame({"a": [0, 3], "x": 1.0}), method=method, bounds=bounds)
    assert out.y_pred.isna().all() and out.attrs["n_outside_grid"] == 2


@pytest.mark.parametrize(
    "rows",
    [
        pd.DataFrame({"a": pd.Series([], dtype="int64"), "x": pd.Series([], dtype="float64")}),
        {"a": np.empty(0), "x": np.empty(0)},
    ],
)
def test_zero_rows_give_an_empty_frame_with_the_columns(fit, rows):
    for method in ("nearest", "linear"):
        out = xslide.predict(fit, rows, method=method, return_error=True)
        assert list(out.columns) == ["y_pred", "y_pred_err"] and len(out) == 0


def test_rows_without_a_predictor_or_with_a_non_numeric_one_are_refused_by_name(fit):
    refused(KeyError, r"rows: column 'x' not found", fit, pd.DataFrame({"a": [1, 2]}))
    refused(
        TypeError,
        r"rows: column 'x' must be numeric",
        fit,
        pd.DataFrame({"a": [1, 2], "x": ["p", "q"]}),
    )
    refused(
        TypeError,
        r"rows: column 'a' must be numeric",
        fit,
        pd.DataFrame({"a": ["1", "2"], "x": [0.0, 1.0]}),
    )
