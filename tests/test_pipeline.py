"""The xarray pipeline (API.md §2): ``xslide.fit`` on rows (DataFrame or Dataset) and on
statistics, the ``Dataset.slidewin`` accessor and refits from statistics.

Values are checked against the slow row-level oracle (``reference.reference_fit``) and against
the seed API's DataFrame (``xslide.make_sliding_window_fit``); layout, centers, CF flag
attributes and attrs are checked on the Dataset itself (its netCDF round trip is in ``test_io``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from data import HI, HOLES, LO, holed_grid_rows
from reference import assert_frames_close, fit_column_names, quality_flag, reference_fit

import xslide

DIMS = ["xBin", "yBin"]


TARGETS = ["y", "z"]


PREDICTORS = ["x", "x2"]


FLAG_MEANINGS = "ok empty_window insufficient_stats singular fit_failed not_a_center"


CODE_NAMES = {0: "ok", 1: "empty", 2: "insufficient", 3: "singular", 4: "fit_failed"}


FIT_VARS_BY_TARGET = ["mean", "std", "median", "entries", "r_squared", "rmse", "n_fitted"]


PER_BIN_VARS = ["n_neighbors_used", "n_rows_aggregated", "effective_window_fraction"]


REFIT_VARS = ["coef", "stderr", "mean", "std", "entries", "r_squared", "rmse", "n_fitted"]


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return holed_grid_rows()


def sel_centers(da: xr.DataArray, centers: pd.DataFrame) -> np.ndarray:
    """Values of ``da`` at the center bins listed (one per row) in ``centers``."""
    points = {d: xr.DataArray(centers[d].to_numpy(), dims="center") for d in DIMS}
    return da.sel(points).values


def frame_like_oracle(
    fit: xr.Dataset,
    expected: pd.DataFrame,
    targets: Sequence[str],
    predictors: Sequence[str],
    aggregations: Sequence[str] = ("mean", "std", "median", "entries"),
) -> pd.DataFrame:
    """Read the fit Dataset at the oracle's centers into a frame with the oracle's columns."""
    centers = expected[DIMS]
    out: dict[str, np.ndarray] = {d: centers[d].to_numpy() for d in DIMS}
    for t in targets:
        for a in aggregations:
            out[f"{t}_{a}"] = sel_centers(fit[a].sel(target=t), centers)
    codes = []
    for t in targets:
        terms = ["Intercept", *predictors]
        coef = [sel_centers(fit.coef.sel(target=t, term=k), centers) for k in terms]
        err = [sel_centers(fit.stderr.sel(target=t, term=k), centers) for k in terms]
        extra = [sel_centers(fit[v].sel(target=t), centers) for v in ("r_squared", "rmse")]
        n_fitted = sel_centers(fit.n_fitted.sel(target=t), centers)
        values = [*coef, *err, *extra, n_fitted]
        for name, value in zip(fit_column_names(t, predictors), values, strict=True):
            out[name] = value
        codes.append(sel_centers(fit.quality_flag.sel(target=t), centers))
    per_center = np.stack(codes, axis=1)  # (center, target)
    out["quality_flag"] = np.array(
        [quality_flag([CODE_NAMES[int(c)] for c in combo], targets) for combo in per_center],
        dtype=object,
    )
    for v in PER_BIN_VARS:
        out[v] = sel_centers(fit[v], centers)
    return pd.DataFrame(out)[list(expected.columns)]


def fit_rows(data, window: Mapping[str, int], **kwargs) -> xr.Dataset:
    return xslide.fit(
        data, dims=DIMS, targets=TARGETS, predictors=PREDICTORS, window=window, **kwargs
    )


def without_timing(ds: xr.Dataset) -> xr.Dataset:
    out = ds.copy()
    out.attrs = {k: v for k, v in ds.attrs.items() if k != "computation_time_sec"}
    return out


# --------------------------------------------------------------------------------------------
# Layout of the fit Dataset and its values
# --------------------------------------------------------------------------------------------


def test_fit_returns_dataset_on_dense_grid_with_documented_dims(rows: pd.DataFrame) -> None:
    fit = fit_rows(rows, {"xBin": 1, "yBin": 1})
    assert isinstance(fit, xr.Dataset)
    for d in DIMS:
        np.testing.assert_array_equal(fit[d].values, np.arange(LO[d], HI[d] + 1))
        assert np.issubdtype(fit[d].dtype, np.integer)
    assert list(fit["target"].values) == TARGETS
    assert list(fit["term"].values) == ["Intercept", *PREDICTORS]
    assert fit["coef"].dims == ("target", "term", *DIMS)
    assert fit["stderr"].dims == ("target", "term", *DIMS)
    for v in [*FIT_VARS_BY_TARGET, "quality_flag"]:
        assert fit[v].dims == ("target", *DIMS), v
    for v in PER_BIN_VARS:
        assert fit[v].dims == tuple(DIMS), v
    assert fit.sizes == {"target": 2, "term": 3, "term_": 3, "xBin": 6, "yBin": 5}
    assert fit["cov"].dims == ("target", "term", "term_", *DIMS)
    for v in ("entries", "n_fitted", "quality_flag", "n_neighbors_used", "n_rows_aggregated"):
        assert np.issubdtype(fit[v].dtype, np.integer), v


@pytest.mark.parametrize("weighted", [False, True], ids=["ols", "wls"])
@pytest.mark.parametrize("window", [{}, {"xBin": 1}, {"xBin": 1, "yBin": 2}], ids=str)
def test_fit_values_at_observed_bins_equal_oracle(
    rows: pd.DataFrame, window: dict[str, int], weighted: bool
) -> None:
    weights = "w" if weighted else None
    fit = fit_rows(rows, window, weights=weights, min_entries=5)
    expected = reference_fit(
        rows, DIMS, window, TARGETS, PREDICTORS, weights_column=weights, min_entries=5
    )
    assert len(expected) == 30 - len(HOLES)
    actual = frame_like_oracle(fit, expected, TARGETS, PREDICTORS)
    assert_frames_close(actual, expected)


def test_fit_matches_make_sliding_window_fit_dataframe(rows: pd.DataFrame) -> None:
    window = {"xBin": 1, "yBin": 1}
    fit = fit_rows(rows, window, weights="w")
    frame = xslide.make_sliding_window_fit(
        rows, DIMS, window, TARGETS, PREDICTORS, weights_column="w"
    )
    row = frame[(frame.xBin == 1) & (frame.yBin == 6)].iloc[0]
    point = {"xBin": 1, "yBin": 6}
    assert fit.coef.sel(target="y", term="x", **point).item() == pytest.approx(
        row["y_slope_x"], rel=1e-12
    )
    assert fit.stderr.sel(target="z", term="Intercept", **point).item() == pytest.approx(
        row["z_intercept_err"], rel=1e-12
    )
    assert fit.n_fitted.sel(target="z", **point).item() == row["z_n_fitted"]
    # Every column of the DataFrame, read back from the Dataset at the same centers.
    actual = frame_like_oracle(fit, frame, TARGETS, PREDICTORS)
    assert_frames_close(actual, frame, rtol=1e-12, atol_scale=0.0)


# --------------------------------------------------------------------------------------------
# Centers: the observed bins or the whole grid
# --------------------------------------------------------------------------------------------


def test_bins_without_rows_are_not_a_center_with_observed_centers(rows: pd.DataFrame) -> None:
    fit = fit_rows(rows, {"xBin": 1, "yBin": 1}, min_entries=3)
    for i, j in HOLES:
        at = fit.sel(xBin=i, yBin=j)
        np.testing.assert_array_equal(at.quality_flag.values, [5, 5])
        assert np.isnan(at.coef.values).all()
        assert np.isnan(at.stderr.values).all()
        assert np.isnan(at["mean"].values).all()
        assert np.isnan(at.r_squared.values).all()
        # a bin that is not a center has no window: nothing aggregated there
        assert at.n_rows_aggregated.item() == 0
        assert np.isnan(at.effective_window_fraction.item())
    observed = fit.quality_flag.sel(target="y").values != 5
    assert observed.sum() == 30 - len(HOLES)
    assert (fit.quality_flag.sel(target="y").values[observed] == 0).all()


def test_grid_centers_fill_holes_and_equal_oracle(rows: pd.DataFrame) -> None:
    window = {"xBin": 1, "yBin": 1}
    fit = fit_rows(rows, window, centers="grid", min_entries=10)
    expected = reference_fit(rows, DIMS, window, TARGETS, PREDICTORS, centers="grid")
    assert len(expected) == 30
    assert_frames_close(frame_like_oracle(fit, expected, TARGETS, PREDICTORS), expected)
    for i, j in HOLES:
        at = fit.sel(xBin=i, yBin=j)
        np.testing.assert_array_equal(at.quality_flag.values, [0, 0])
        assert np.isfinite(at.coef.values).all()
        assert at.entries.sel(target="y").item() >= 10
    # with observed centers the same bins carry nothing, the other bins are unchanged
    observed = fit_rows(rows, window, centers="observed", min_entries=10)
    keep = observed.quality_flag.sel(target="y") != 5
    xr.testing.assert_allclose(observed.coef.where(keep), fit.coef.where(keep), rtol=1e-14)


def test_grid_center_with_empty_window_is_flagged_empty(rows: pd.DataFrame) -> None:
    fit = fit_rows(rows, {}, centers="grid", min_entries=3)
    for i, j in HOLES:
        at = fit.sel(xBin=i, yBin=j)
        np.testing.assert_array_equal(at.quality_flag.values, [1, 1])
        np.testing.assert_array_equal(at.entries.values, [0, 0])
        assert at.n_rows_aggregated.item() == 0
        assert at.n_neighbors_used.item() == 0
        assert np.isnan(at.coef.values).all()


# --------------------------------------------------------------------------------------------
# quality_flag's CF attributes, and the attrs of a run
# --------------------------------------------------------------------------------------------


def test_quality_flag_has_cf_flag_attributes(rows: pd.DataFrame) -> None:
    flag = fit_rows(rows, {"xBin": 1})["quality_flag"]
    np.testing.assert_array_equal(flag.attrs["flag_values"], np.arange(6))
    assert flag.attrs["flag_meanings"] == FLAG_MEANINGS
    assert len(flag.attrs["flag_values"]) == len(flag.attrs["flag_meanings"].split(" "))


def test_fit_attrs_record_the_run(rows: pd.DataFrame) -> None:
    fit = fit_rows(
        rows,
        {"xBin": 2},
        weights="w",
        backend="numpy",
        binning_formulas={"xBin": "floor(x)", "yBin": "floor(x2)"},
    )
    for key in (
        "window_spec_json",
        "binning_formulas_json",
        "boundary_mode_per_dim",
        "backend_used",
        "fitter_used",
        "computation_time_sec",
        "statsmodels_version",
        "xslide_version",
    ):
        assert key in fit.attrs, key
    assert json.loads(fit.attrs["window_spec_json"]) == {"xBin": 2, "yBin": 0}
    assert json.loads(fit.attrs["binning_formulas_json"]) == {
        "xBin": "floor(x)",
        "yBin": "floor(x2)",
    }
    assert json.loads(fit.attrs["boundary_mode_per_dim"]) == {
        "xBin": "truncate",
        "yBin": "truncate",
    }
    assert fit.attrs["backend_used"] == "numpy"
    assert fit.attrs["fitter_used"] == "wls"
    assert fit.attrs["xslide_version"] == xslide.__version__
    assert float(fit.attrs["computation_time_sec"]) >= 0.0


# --------------------------------------------------------------------------------------------
# The accessor on rows and on statistics
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [None, "w"])
def test_accessor_fit_on_rows_dataset_equals_fit_of_dataframe(
    rows: pd.DataFrame, weights: str | None
) -> None:
    ds = rows.to_xarray()
    window = {"xBin": 1, "yBin": 1}
    via_accessor = ds.slidewin.fit(
        dims=DIMS, targets=TARGETS, predictors=PREDICTORS, window=window, weights=weights
    )
    direct = fit_rows(rows, window, weights=weights)
    xr.testing.assert_identical(without_timing(via_accessor), without_timing(direct))
    assert np.isfinite(via_accessor.coef.sel(target="y", xBin=0, yBin=4).values).all()


@pytest.mark.parametrize("weights", [None, "w"])
def test_refit_from_stats_equals_fit_from_rows(rows: pd.DataFrame, weights: str | None) -> None:
    stats = rows.to_xarray().slidewin.stats(
        dims=DIMS, targets=TARGETS, predictors=PREDICTORS, weights=weights
    )
    # two different windows from the same statistics, never touching the rows again
    for window in ({"xBin": 1, "yBin": 1}, {"xBin": 0, "yBin": 2}):
        refit = stats.slidewin.fit(window=window, min_entries=8)
        from_rows = fit_rows(rows, window, weights=weights, min_entries=8)
        assert "median" not in refit.data_vars
        for v in REFIT_VARS:
            xr.testing.assert_allclose(refit[v], from_rows[v], rtol=1e-12, atol=0)
        for v in ("quality_flag", "n_neighbors_used", "n_rows_aggregated", "entries"):
            xr.testing.assert_equal(refit[v], from_rows[v])
        assert refit.attrs["fitter_used"] == ("wls" if weights else "ols")
        assert refit.attrs["window_spec_json"] == from_rows.attrs["window_spec_json"]
        assert np.isfinite(refit.coef.sel(xBin=0, yBin=4).values).all()


def test_refit_windows_differ_from_each_other(rows: pd.DataFrame) -> None:
    stats = xslide.bin_stats(rows, DIMS, TARGETS, PREDICTORS)
    small = stats.slidewin.fit(window={"xBin": 1}, min_entries=3)
    large = stats.slidewin.fit(window={"xBin": 2, "yBin": 2}, min_entries=3)
    at = {"xBin": 0, "yBin": 4}
    assert large.entries.sel(target="y", **at) > small.entries.sel(target="y", **at)
    assert large.n_rows_aggregated.sel(**at) == rows[(rows.yBin <= 6) & (rows.xBin <= 2)].shape[0]


def test_median_cannot_be_refitted_from_stats(rows: pd.DataFrame) -> None:
    stats = xslide.bin_stats(rows, DIMS, TARGETS, PREDICTORS)
    with pytest.raises(ValueError, match="median"):
        stats.slidewin.fit(window={"xBin": 1}, aggregation=["mean", "median"])
    with pytest.raises(ValueError, match="median"):
        xslide.fit(stats, window={"xBin": 1}, aggregation={"y": ["median"]})


@pytest.mark.parametrize(
    "kwargs",
    [{"dims": DIMS}, {"targets": TARGETS}, {"predictors": PREDICTORS}],
    ids=["dims", "targets", "predictors"],
)
def test_stats_dataset_fit_refuses_row_arguments(rows: pd.DataFrame, kwargs: dict) -> None:
    stats = xslide.bin_stats(rows, DIMS, TARGETS, PREDICTORS)
    with pytest.raises(TypeError):
        stats.slidewin.fit(window={"xBin": 1}, **kwargs)
    with pytest.raises(TypeError):
        xslide.fit(stats, window={"xBin": 1}, **kwargs)


@pytest.mark.parametrize(
    "selection", [np.ones(5, bool), pd.Series([True] * 5)], ids=["array", "series"]
)
def test_stats_dataset_fit_names_a_selection_it_cannot_apply(rows, selection) -> None:
    stats = xslide.bin_stats(rows, DIMS, TARGETS, PREDICTORS)
    with pytest.raises(TypeError, match=r"\['selection'\] act on rows"):
        xslide.fit(stats, window={"xBin": 1}, selection=selection)


def test_stats_dataset_fit_takes_an_empty_predictor_list_as_none(rows) -> None:
    stats = xslide.bin_stats(rows, DIMS, TARGETS, PREDICTORS)
    plain = xslide.fit(stats, window={"xBin": 1})
    xr.testing.assert_equal(xslide.fit(stats, window={"xBin": 1}, predictors=[]).coef, plain.coef)


def test_stats_dataset_fit_checks_the_backend_without_warning_of_a_row_pass(rows) -> None:
    stats = xslide.bin_stats(rows, DIMS, TARGETS, PREDICTORS)
    with pytest.raises(ValueError, match="backend"):
        xslide.fit(stats, window={"xBin": 1}, backend="gpu")


def test_stats_of_a_stats_dataset_is_a_type_error(rows: pd.DataFrame) -> None:
    stats = rows.to_xarray().slidewin.stats(dims=DIMS, targets=TARGETS, predictors=PREDICTORS)
    with pytest.raises(TypeError):
        stats.slidewin.stats(dims=DIMS, targets=TARGETS, predictors=PREDICTORS)


def test_fit_of_rows_without_dims_is_a_type_error(rows: pd.DataFrame) -> None:
    with pytest.raises(TypeError):
        xslide.fit(rows, targets=TARGETS, window={"xBin": 1})
    with pytest.raises(TypeError):
        rows.to_xarray().slidewin.fit(dims=DIMS, window={"xBin": 1})


# --------------------------------------------------------------------------------------------
# selection, weights, extent and bin coordinates on the Dataset path
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["dataarray", "ndarray"])
def test_selection_on_dataset_path_equals_oracle(rows: pd.DataFrame, kind: str) -> None:
    ds = rows.to_xarray()
    mask = ds["x"] > 0.0
    selection = mask if kind == "dataarray" else mask.values
    window = {"xBin": 1}
    fit = ds.slidewin.fit(
        dims=DIMS,
        targets=TARGETS,
        predictors=PREDICTORS,
        window=window,
        selection=selection,
        min_entries=5,
    )
    expected = reference_fit(
        rows, DIMS, window, TARGETS, PREDICTORS, selection=mask.values, min_entries=5
    )
    assert_frames_close(frame_like_oracle(fit, expected, TARGETS, PREDICTORS), expected)
    assert fit.attrs["n_rows_not_selected"] == int((~mask.values).sum())
    # the selection really changed the result
    unselected = fit_rows(rows, window, min_entries=5)
    assert not np.allclose(
        fit.n_rows_aggregated.values, unselected.n_rows_aggregated.values, equal_nan=True
    )


def test_weights_as_variable_name_on_dataset_path_equals_oracle(rows: pd.DataFrame) -> None:
    ds = rows.to_xarray()
    window = {"xBin": 1, "yBin": 1}
    fit = ds.slidewin.fit(
        dims=DIMS, targets=TARGETS, predictors=PREDICTORS, window=window, weights="w"
    )
    expected = reference_fit(rows, DIMS, window, TARGETS, PREDICTORS, weights_column="w")
    assert_frames_close(frame_like_oracle(fit, expected, TARGETS, PREDICTORS), expected)
    assert fit.attrs["fitter_used"] == "wls"
    assert fit.attrs["weights_column"] == "w"
    unweighted = fit_rows(rows, window)
    assert not np.allclose(fit["mean"].values, unweighted["mean"].values, equal_nan=True)


def test_selection_dataarray_is_aligned_on_the_row_coordinate(rows: pd.DataFrame) -> None:
    ds = rows.to_xarray()
    shuffled = ds.isel(index=np.random.default_rng(0).permutation(ds.sizes["index"]))
    mask = ds["x"] > 0.0  # labelled by the original row coordinate
    kwargs = {"dims": DIMS, "targets": TARGETS, "predictors": PREDICTORS, "window": {}}
    aligned = ds.slidewin.fit(selection=mask, min_entries=2, **kwargs)
    from_shuffled = shuffled.slidewin.fit(selection=mask, min_entries=2, **kwargs)
    xr.testing.assert_equal(from_shuffled.n_rows_aggregated, aligned.n_rows_aggregated)


def test_extent_with_grid_centers_on_dataset_path_equals_oracle(rows: pd.DataFrame) -> None:
    extent = {"xBin": (-3, 4), "yBin": (4, 6)}  # wider along xBin, narrower along yBin
    window = {"xBin": 1, "yBin": 1}
    fit = xslide.fit(
        rows.to_xarray(),
        dims=DIMS,
        targets=TARGETS,
        predictors=PREDICTORS,
        window=window,
        centers="grid",
        extent=extent,
        min_entries=5,
    )
    np.testing.assert_array_equal(fit["xBin"].values, np.arange(-3, 5))
    np.testing.assert_array_equal(fit["yBin"].values, np.arange(4, 7))
    expected = reference_fit(
        rows, DIMS, window, TARGETS, PREDICTORS, centers="grid", extent=extent, min_entries=5
    )
    assert_frames_close(frame_like_oracle(fit, expected, TARGETS, PREDICTORS), expected)
    outside = int(((rows.yBin < 4) | (rows.yBin > 6)).sum())
    assert fit.attrs["n_rows_outside_extent"] == outside > 0


def test_bin_columns_stored_as_coordinates_are_found(rows: pd.DataFrame) -> None:
    ds = rows.to_xarray().set_coords(DIMS)
    kwargs = {"dims": DIMS, "targets": TARGETS, "predictors": PREDICTORS, "window": {"xBin": 1}}
    from_coords = ds.slidewin.fit(min_entries=2, **kwargs)
    expected = xslide.fit(rows, min_entries=2, **kwargs)
    xr.testing.assert_identical(without_timing(from_coords), without_timing(expected))
