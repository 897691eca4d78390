"""Raw-row fitters: statsmodels GLM / RLM and user callables, fitted window by window.

The oracle for every raw-row fit is statsmodels itself, run on the rows of each window gathered
explicitly (rows whose bins lie within the window of the center, selected and finite).
"""

from __future__ import annotations

import json
import re
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from reference import assert_frames_close, reference_fit

import xslide
import xslide.fitters

DIMS = ["a", "b"]
WINDOW = {"a": 1, "b": 1}
PREDICTORS = ["x", "z"]
FIT_COLUMNS = [
    "y_intercept",
    "y_slope_x",
    "y_slope_z",
    "y_intercept_err",
    "y_slope_x_err",
    "y_slope_z_err",
    "y_r_squared",
    "y_rmse",
]


def grid_rows(shape=(5, 4), per_bin=14, seed=0, counts=False) -> pd.DataFrame:
    """Rows on a 2-D bin grid, shuffled: y linear in (x, z) with noise, or Poisson counts."""
    rng = np.random.default_rng(seed)
    a, b = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    a = np.repeat(a.ravel(), per_bin)
    b = np.repeat(b.ravel(), per_bin)
    n = a.size
    x = rng.normal(size=n)
    z = rng.uniform(-1.0, 1.0, n)
    if counts:
        y = rng.poisson(np.exp(0.5 + 0.1 * a + 0.4 * x - 0.3 * z)).astype(np.float64)
    else:
        y = 1.0 + 0.3 * a - 0.2 * b + 2.0 * x - z + rng.standard_t(3, n) * 0.5
    df = pd.DataFrame({"a": a, "b": b, "x": x, "z": z, "y": y, "w": rng.uniform(0.5, 2.0, n)})
    return df.iloc[rng.permutation(n)].reset_index(drop=True)


def window_rows(df, center, window, columns, selection=None) -> pd.DataFrame:
    """The rows of one window: bins within ±window of the center, selected, all columns finite."""
    mask = np.ones(len(df), dtype=bool)
    for dim, value in center.items():
        mask &= (df[dim] - value).abs().to_numpy() <= window.get(dim, 0)
    if selection is not None:
        mask &= np.asarray(selection, dtype=bool)
    mask &= np.isfinite(df[list(columns)].to_numpy(dtype=np.float64)).all(axis=1)
    return df[mask]


def statsmodels_fit(rows, kind, weights=None, fit_kwargs=None, **model_options):
    """statsmodels on gathered rows: coef, stderr, rmse (from response-scale fitted values)."""
    x = np.column_stack([np.ones(len(rows)), rows[PREDICTORS].to_numpy()])
    y = rows["y"].to_numpy()
    w = None if weights is None else rows[weights].to_numpy()
    if kind == "glm":
        model = sm.GLM(y, x, var_weights=w, **model_options)
    else:
        model = sm.RLM(y, x, **model_options)
    result = model.fit(**(fit_kwargs or {}))
    w = np.ones_like(y) if w is None else w
    rmse = np.sqrt(np.sum(w * (y - result.fittedvalues) ** 2) / np.sum(w))
    return np.asarray(result.params), np.asarray(result.bse), rmse


def expected_from_statsmodels(df, out, kind, weights=None, selection=None, **options):
    """Per output row: statsmodels coef, stderr and rmse on that center's gathered rows."""
    coef, stderr, rmse = [], [], []
    for a, b in zip(out["a"], out["b"], strict=True):
        rows = window_rows(df, {"a": a, "b": b}, WINDOW, ["y", *PREDICTORS, "w"], selection)
        c, e, r = statsmodels_fit(rows, kind, weights, **options)
        coef.append(c)
        stderr.append(e)
        rmse.append(r)
    return np.array(coef), np.array(stderr), np.array(rmse)


def fit(df, **kwargs) -> pd.DataFrame:
    kwargs.setdefault("min_entries", 5)
    return xslide.make_sliding_window_fit(df, DIMS, WINDOW, ["y"], PREDICTORS, **kwargs)


def coefficient_columns(out, target="y") -> tuple[np.ndarray, np.ndarray]:
    terms = ["intercept", "slope_x", "slope_z"]
    coef = out[[f"{target}_{t}" for t in terms]].to_numpy()
    stderr = out[[f"{target}_{t}_err" for t in terms]].to_numpy()
    return coef, stderr


def without_time(attrs: dict) -> dict:
    return {k: v for k, v in attrs.items() if k != "computation_time_sec"}


# --- GLM -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [None, "w"])
def test_glm_gaussian_equals_closed_form_ols(weights):
    df = grid_rows()
    ols = fit(df, weights_column=weights)
    glm = fit(df, fitter="glm", weights_column=weights)
    assert (glm.quality_flag == "").all()
    assert glm.attrs["fitter_used"] == "glm"
    assert glm.attrs["fit_failures_json"] == "{}"
    assert_frames_close(glm, ols, rtol=1e-8, atol_scale=1e-10)
    # and the closed form itself is the row-level oracle
    expected = reference_fit(df, DIMS, WINDOW, ["y"], PREDICTORS, weights, min_entries=5)
    assert_frames_close(glm, expected, rtol=1e-8, atol_scale=1e-10)


def test_glm_gaussian_explicit_family_equals_default():
    df = grid_rows(shape=(3, 3))
    default = fit(df, fitter="glm")
    explicit = fit(df, fitter="glm", family=sm.families.Gaussian())
    pd.testing.assert_frame_equal(default, explicit, check_exact=True)


def test_glm_poisson_equals_statsmodels_on_the_window_rows():
    df = grid_rows(counts=True)
    out = fit(df, fitter="glm", family=sm.families.Poisson())
    assert len(out) == 20
    assert (out.quality_flag == "").all()
    coef, stderr, rmse = expected_from_statsmodels(df, out, "glm", family=sm.families.Poisson())
    actual_coef, actual_stderr = coefficient_columns(out)
    np.testing.assert_allclose(actual_coef, coef, rtol=1e-6)
    np.testing.assert_allclose(actual_stderr, stderr, rtol=1e-6)
    np.testing.assert_allclose(out.y_rmse, rmse, rtol=1e-6)
    assert out.y_r_squared.isna().all()  # r² is defined for Gaussian/identity only
    np.testing.assert_allclose(coef[:, 1], 0.4, atol=0.15)  # sanity: the true slope of x


@pytest.mark.parametrize("family", [sm.families.Gaussian(), sm.families.Poisson()])
def test_glm_with_var_weights_selection_and_invalid_rows_equals_statsmodels(family):
    df = grid_rows(counts=isinstance(family, sm.families.Poisson), seed=3)
    df.loc[::17, "x"] = np.nan
    df.loc[5::23, "y"] = np.inf
    df.loc[7::29, "w"] = np.nan
    selection = pd.Series(np.arange(len(df)) % 5 != 0, index=df.index)
    out = fit(df, fitter="glm", family=family, weights_column="w", selection=selection)
    assert (out.quality_flag == "").all()
    coef, stderr, rmse = expected_from_statsmodels(
        df, out, "glm", weights="w", selection=selection, family=family
    )
    actual_coef, actual_stderr = coefficient_columns(out)
    np.testing.assert_allclose(actual_coef, coef, rtol=1e-6)
    np.testing.assert_allclose(actual_stderr, stderr, rtol=1e-6)
    np.testing.assert_allclose(out.y_rmse, rmse, rtol=1e-6)
    n_valid = [
        len(window_rows(df, {"a": a, "b": b}, WINDOW, ["y", "x", "z", "w"], selection))
        for a, b in zip(out.a, out.b, strict=True)
    ]
    np.testing.assert_array_equal(out.y_n_fitted, n_valid)
    if isinstance(family, sm.families.Gaussian):
        expected = reference_fit(df, DIMS, WINDOW, ["y"], PREDICTORS, "w", selection, 5)
        np.testing.assert_allclose(out.y_r_squared, expected.y_r_squared, rtol=1e-8)
    else:
        assert out.y_r_squared.isna().all()


def test_glm_fit_kwargs_reach_statsmodels_fit():
    df = grid_rows(shape=(3, 3), counts=True)
    family = sm.families.Poisson()
    out = fit(df, fitter="glm", family=family, fit_kwargs={"scale": "X2"})
    coef, stderr, _ = expected_from_statsmodels(
        df, out, "glm", family=family, fit_kwargs={"scale": "X2"}
    )
    _, default_stderr, _ = expected_from_statsmodels(df, out, "glm", family=family)
    actual_coef, actual_stderr = coefficient_columns(out)
    np.testing.assert_allclose(actual_coef, coef, rtol=1e-6)
    np.testing.assert_allclose(actual_stderr, stderr, rtol=1e-6)
    assert not np.allclose(actual_stderr, default_stderr, rtol=1e-3)  # the option mattered


# --- RLM -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "norm", [None, sm.robust.norms.TukeyBiweight()], ids=["HuberT-default", "TukeyBiweight"]
)
def test_rlm_equals_statsmodels_on_the_window_rows(norm):
    df = grid_rows(seed=1)
    df.loc[::11, "y"] += 8.0  # outliers, where the norms differ from least squares
    options = {} if norm is None else {"M": norm}
    out = fit(df, fitter="rlm", **options)
    assert (out.quality_flag == "").all()
    assert out.attrs["fitter_used"] == "rlm"
    coef, stderr, rmse = expected_from_statsmodels(
        df, out, "rlm", M=norm or sm.robust.norms.HuberT()
    )
    actual_coef, actual_stderr = coefficient_columns(out)
    np.testing.assert_allclose(actual_coef, coef, rtol=1e-6)
    np.testing.assert_allclose(actual_stderr, stderr, rtol=1e-6)
    np.testing.assert_allclose(out.y_rmse, rmse, rtol=1e-6)
    assert out.y_r_squared.isna().all()
    ols = fit(df)
    assert np.abs(out.y_intercept - ols.y_intercept).min() > 1e-3  # robust != least squares


def test_rlm_fit_kwargs_reach_statsmodels_fit():
    df = grid_rows(shape=(3, 3), seed=2)
    df.loc[::7, "y"] -= 6.0
    out = fit(df, fitter="rlm", fit_kwargs={"maxiter": 1})
    coef, stderr, _ = expected_from_statsmodels(df, out, "rlm", fit_kwargs={"maxiter": 1})
    converged, _, _ = expected_from_statsmodels(df, out, "rlm")
    actual_coef, actual_stderr = coefficient_columns(out)
    np.testing.assert_allclose(actual_coef, coef, rtol=1e-6)
    np.testing.assert_allclose(actual_stderr, stderr, rtol=1e-6)
    assert not np.allclose(actual_coef, converged, rtol=1e-6)


# --- windows the closed-form check refuses ------------------------------------------------------


def flagged_rows(seed: int = 4) -> pd.DataFrame:
    """Bin 0: 3 rows (insufficient), bin 1: constant x (singular), bins 2 and 3: fine."""
    rng = np.random.default_rng(seed)
    b = np.repeat([0, 1, 2, 3], [3, 12, 12, 12])
    x = rng.normal(size=b.size)
    x[b == 1] = 0.5
    z = rng.normal(size=b.size)
    y = 1.0 + x - 2.0 * z + rng.normal(0, 0.3, b.size)
    return pd.DataFrame({"b": b, "x": x, "z": z, "y": y})


@pytest.mark.parametrize("fitter", ["glm", "rlm", "callable"])
def test_insufficient_and_singular_windows_are_flagged_and_never_fitted(fitter, monkeypatch):
    df = flagged_rows()
    sizes = []
    kwargs = {}
    if fitter == "callable":

        def least_squares(x, y, w, terms):
            sizes.append(len(y))
            return dict(zip(terms, np.linalg.lstsq(x, y, rcond=None)[0], strict=True))

        kwargs["fit_formula"] = least_squares
    else:
        kwargs["fitter"] = fitter
        name = fitter.upper()
        real = getattr(sm, name)

        def spy(endog, exog, **options):
            sizes.append(len(endog))
            return real(endog, exog, **options)

        monkeypatch.setattr(sm, name, spy)

    out = xslide.make_sliding_window_fit(df, ["b"], {}, ["y"], PREDICTORS, min_entries=5, **kwargs)
    ols = xslide.make_sliding_window_fit(df, ["b"], {}, ["y"], PREDICTORS, min_entries=5)
    assert out.quality_flag.tolist() == ["insufficient_stats", "singular_y", "", ""]
    assert out.quality_flag.tolist() == ols.quality_flag.tolist()
    assert out.y_n_fitted.tolist() == [3, 12, 12, 12]
    assert sizes == [12, 12]  # only the two good windows reached the fitter
    for column in FIT_COLUMNS:
        if (column == "y_r_squared" and fitter == "rlm") or (
            column.endswith("_err") and fitter == "callable"
        ):
            continue  # not defined for RLM / not returned by this callable
        assert out[column].iloc[:2].isna().all(), column
        assert out[column].iloc[2:].notna().all(), column
    assert out.attrs["fit_failures_json"] == "{}"


# --- callables -----------------------------------------------------------------------------------


def test_callable_results_land_in_their_columns():
    df = grid_rows(shape=(3, 3))

    def fixed(x, y, w, terms):
        return {"Intercept": 1.5, "x": -2.0, "z": 0.25, "stderr": {"Intercept": 0.1, "z": 0.3}}

    out = fit(df, fit_formula=fixed)
    assert (out.quality_flag == "").all()
    assert (
        out.attrs["fitter_used"]
        == "callable:test_callable_results_land_in_their_columns.<locals>.fixed"
    )
    assert (out.y_intercept == 1.5).all()
    assert (out.y_slope_x == -2.0).all()
    assert (out.y_slope_z == 0.25).all()
    assert (out.y_intercept_err == 0.1).all()
    assert out.y_slope_x_err.isna().all()  # no stderr given for x
    assert (out.y_slope_z_err == 0.3).all()
    # r² and rmse come from the linear prediction X @ coef on the window rows
    for _, row in out.iterrows():
        rows = window_rows(df, {"a": row.a, "b": row.b}, WINDOW, ["y", *PREDICTORS])
        resid = rows.y - (1.5 - 2.0 * rows.x + 0.25 * rows.z)
        tss = np.sum((rows.y - rows.y.mean()) ** 2)
        np.testing.assert_allclose(row.y_rmse, np.sqrt(np.mean(resid**2)), rtol=1e-12)
        np.testing.assert_allclose(row.y_r_squared, 1 - np.sum(resid**2) / tss, rtol=1e-12)


def test_callable_missing_terms_are_nan():
    df = grid_rows(shape=(2, 2))
    out = fit(df, fit_formula=lambda x, y, w, terms: {"x": 3.0})
    assert (out.y_slope_x == 3.0).all()
    assert (out.quality_flag == "").all()
    assert out.attrs["fit_failures_json"] == "{}"
    assert out.y_intercept.isna().all() and out.y_slope_z.isna().all()
    assert out[[c for c in out.columns if c.endswith("_err")]].isna().all().all()


def test_callable_weighted_least_squares_equals_closed_form_wls_and_receives_the_window():
    df = grid_rows(shape=(4, 3), seed=5)
    received = []

    def wls(x, y, w, terms):
        received.append((x.copy(), y.copy(), None if w is None else w.copy(), list(terms)))
        sqrt_w = np.sqrt(w)
        coef = np.linalg.lstsq(x * sqrt_w[:, None], y * sqrt_w, rcond=None)[0]
        return dict(zip(terms, coef, strict=True))

    out = fit(df, fit_formula=wls, weights_column="w")
    wls_closed = fit(df, weights_column="w")
    assert len(received) == len(out) == 12
    for column in ["y_intercept", "y_slope_x", "y_slope_z", "y_r_squared", "y_rmse"]:
        np.testing.assert_allclose(out[column], wls_closed[column], rtol=1e-8, err_msg=column)
    assert out.y_intercept_err.isna().all()

    # each call got the center's window rows: X with the constant first, y, w and the terms
    for (x, y, w, terms), (_, row) in zip(received, out.iterrows(), strict=True):
        assert terms == ["Intercept", "x", "z"]
        rows = window_rows(df, {"a": row.a, "b": row.b}, WINDOW, ["y", "x", "z", "w"])
        assert x.shape == (len(rows), 3) and y.shape == w.shape == (len(rows),)
        assert (x[:, 0] == 1.0).all()
        got = np.column_stack([x[:, 1:], y, w])
        want = rows[["x", "z", "y", "w"]].to_numpy()
        np.testing.assert_array_equal(got[np.lexsort(got.T)], want[np.lexsort(want.T)])


def test_callable_gets_no_weights_without_weights_column():
    df = grid_rows(shape=(2, 2))
    seen = []

    def record(x, y, w, terms):
        seen.append(w)
        return {"Intercept": 0.0}

    fit(df, fit_formula=record)
    assert seen == [None] * 4


def test_callable_exception_flags_only_that_window_and_target():
    df = grid_rows(shape=(3, 3), seed=6)
    df["y2"] = df.y
    broken = (df.a == 2) & (df.b == 1)
    df.loc[broken, "y2"] += 1000.0  # windows containing this bin make the callable raise

    def picky(x, y, w, terms):
        if y.max() > 500:
            raise ZeroDivisionError("refused")
        return dict(zip(terms, np.linalg.lstsq(x, y, rcond=None)[0], strict=True))

    with pytest.warns(xslide.FitFailedWarning, match="6 of 18 window fits"):
        out = xslide.make_sliding_window_fit(
            df, DIMS, WINDOW, ["y", "y2"], PREDICTORS, fit_formula=picky, min_entries=5
        )
    touches = ((out.a - 2).abs() <= 1) & ((out.b - 1).abs() <= 1)
    assert touches.sum() == 6
    assert out.quality_flag.tolist() == ["fit_failed_y2" if t else "" for t in touches]
    assert json.loads(out.attrs["fit_failures_json"]) == {"ZeroDivisionError": 6}
    assert out.loc[touches, "y2_intercept"].isna().all()
    assert out.loc[touches, "y2_rmse"].isna().all()
    assert out.loc[~touches, "y2_intercept"].notna().all()
    assert out.y_intercept.notna().all()  # the other target is unaffected
    assert (out.loc[touches, "y2_n_fitted"] == out.loc[touches, "y_n_fitted"]).all()


def test_callable_returning_an_unknown_term_is_a_failed_fit():
    df = grid_rows(shape=(2, 2))
    with pytest.warns(xslide.FitFailedWarning, match="unknown terms"):
        out = fit(df, fit_formula=lambda x, y, w, terms: {"Intercept": 1.0, "bogus": 2.0})
    assert (out.quality_flag == "fit_failed_y").all()
    assert json.loads(out.attrs["fit_failures_json"]) == {"KeyError": 4}
    assert out.y_intercept.isna().all()


# --- parallel execution --------------------------------------------------------------------------


def test_process_pool_gives_bit_identical_results():
    df = grid_rows(shape=(5, 6), per_bin=10, seed=7)
    df.loc[::9, "y"] -= 5.0
    serial = fit(df, fitter="rlm", M=sm.robust.norms.TukeyBiweight())
    pooled = fit(
        df, fitter="rlm", M=sm.robust.norms.TukeyBiweight(), partition_strategy={"n_jobs": 2}
    )
    assert serial.y_intercept.notna().all()
    pd.testing.assert_frame_equal(pooled, serial, check_exact=True)
    assert without_time(pooled.attrs) == without_time(serial.attrs)


@pytest.mark.slow
def test_dask_client_gives_bit_identical_results():
    distributed = pytest.importorskip("distributed")
    df = grid_rows(shape=(4, 4), per_bin=10, seed=8, counts=True)
    family = sm.families.Poisson()
    serial = fit(df, fitter="glm", family=family, weights_column="w")
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        direct = fit(df, fitter="glm", family=family, weights_column="w", partition_strategy=client)
        keyed = fit(
            df,
            fitter="glm",
            family=family,
            weights_column="w",
            partition_strategy={"client": client},
        )
    assert serial.y_intercept.notna().all()
    for other in (direct, keyed):
        pd.testing.assert_frame_equal(other, serial, check_exact=True)
        assert without_time(other.attrs) == without_time(serial.attrs)


# --- split_by ------------------------------------------------------------------------------------


def split_rows(seed: int = 9) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 360
    df = pd.DataFrame(
        {"s": rng.integers(0, 3, n), "b": rng.integers(0, 6, n), "x": rng.normal(size=n)}
    )
    df["z"] = rng.normal(size=n)
    df["y"] = df.s * 2.0 + (1.0 + df.s) * df.x - df.z + rng.normal(0, 0.2, n)
    return df


def per_group(df, groups, column="s", **kwargs) -> pd.DataFrame:
    parts = []
    for value in sorted(df[column].unique()):
        part = xslide.make_sliding_window_fit(
            df[df[column] == value].reset_index(drop=True),
            groups,
            {"b": 1},
            ["y"],
            PREDICTORS,
            min_entries=5,
            **kwargs,
        )
        if column not in groups:
            part.insert(0, column, np.int64(value))
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize("fitter", ["ols", "rlm"])
def test_split_by_a_bin_column_equals_fitting_each_value_separately(fitter):
    df = split_rows()
    out = xslide.make_sliding_window_fit(
        df,
        ["s", "b"],
        {"b": 1},
        ["y"],
        PREDICTORS,
        fitter=fitter,
        min_entries=5,
        partition_strategy={"split_by": ["s"]},
    )
    expected = per_group(df, ["s", "b"], fitter=fitter)
    assert len(out) == 18
    assert out.y_intercept.notna().all()
    assert_frames_close(out, expected, rtol=1e-10, atol_scale=1e-12)
    assert json.loads(out.attrs["window_spec_json"]) == {"s": 0, "b": 1}
    if fitter == "ols":
        oracle = reference_fit(df, ["s", "b"], {"b": 1}, ["y"], PREDICTORS, min_entries=5)
        assert_frames_close(out, oracle, rtol=1e-9)


def test_split_by_a_column_outside_the_groups_prepends_it():
    df = split_rows(seed=10)
    out = xslide.make_sliding_window_fit(
        df,
        ["b"],
        {"b": 1},
        ["y"],
        PREDICTORS,
        min_entries=5,
        partition_strategy={"split_by": ["s"]},
    )
    assert list(out.columns[:2]) == ["s", "b"]
    assert out.s.dtype == np.int64
    expected = per_group(df, ["b"])
    assert_frames_close(out, expected, rtol=1e-10, atol_scale=1e-12)
    oracle = reference_fit(df, ["s", "b"], {"b": 1}, ["y"], PREDICTORS, min_entries=5)
    assert_frames_close(out, oracle, rtol=1e-9)


@pytest.mark.parametrize("groups", [["s", "b"], ["b"]])
def test_split_by_refuses_a_window_across_its_column(groups):
    df = split_rows()
    with pytest.raises(xslide.InvalidWindowSpec, match="'s'"):
        xslide.make_sliding_window_fit(
            df, groups, {"b": 1, "s": 1}, ["y"], PREDICTORS, partition_strategy={"split_by": "s"}
        )


@pytest.mark.parametrize("column", [PREDICTORS[0], "y"])
def test_split_by_a_predictor_or_target_is_refused_by_name(column):
    df = split_rows()
    with pytest.raises(ValueError, match=rf"bin columns \['{column}'\] cannot also be"):
        xslide.make_sliding_window_fit(
            df, ["b"], {}, ["y"], PREDICTORS, partition_strategy={"split_by": [column]}
        )


# --- missing statsmodels -------------------------------------------------------------------------


@pytest.mark.parametrize("fitter", ["glm", "rlm"])
def test_missing_statsmodels_names_the_fitter_and_the_install_command(fitter, monkeypatch):
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    monkeypatch.setitem(sys.modules, "statsmodels.api", None)
    df = grid_rows(shape=(2, 2))
    with pytest.raises(ImportError) as info:
        fit(df, fitter=fitter)
    message = str(info.value)
    assert f"fitter='{fitter}'" in message
    assert "statsmodels" in message
    assert "pip install 'xslide[stats]'" in message


def test_ols_works_without_statsmodels(monkeypatch):
    monkeypatch.setitem(sys.modules, "statsmodels", None)
    monkeypatch.setitem(sys.modules, "statsmodels.api", None)
    df = grid_rows(shape=(3, 3))
    out = fit(df, weights_column="w")
    expected = reference_fit(df, DIMS, WINDOW, ["y"], PREDICTORS, "w", min_entries=5)
    assert_frames_close(out, expected, rtol=1e-9)


# --- performance warning and progress bar --------------------------------------------------------


def test_many_raw_windows_warn_with_the_expected_duration(monkeypatch):
    df = grid_rows(shape=(5, 6), per_bin=8, seed=11)
    quiet = fit(df, fitter="rlm")
    monkeypatch.setattr(xslide.fitters, "WARN_WINDOWS", 10)
    with pytest.warns(xslide.PerformanceWarning) as caught:
        loud = fit(df, fitter="rlm")
    assert len(caught) == 1
    message = str(caught[0].message)
    assert re.search(r"fitting 30 windows with 'rlm' row by row takes about [\d,]+ s", message)
    assert "'ols'/'wls'" in message
    pd.testing.assert_frame_equal(loud, quiet, check_exact=True)


def test_no_performance_warning_at_or_below_the_threshold(monkeypatch):
    df = grid_rows(shape=(2, 3))
    monkeypatch.setattr(xslide.fitters, "WARN_WINDOWS", 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xslide.PerformanceWarning)
        out = fit(df, fitter="glm")
    assert len(out) == 6


def test_progress_true_draws_a_bar_on_stderr_and_false_draws_nothing(capfd):
    df = grid_rows(shape=(3, 4))
    shown = fit(df, fitter="rlm", progress=True)
    captured = capfd.readouterr()
    assert "xslide rlm" in captured.err
    assert "12/12" in captured.err
    assert captured.out == ""
    hidden = fit(df, fitter="rlm", progress=False)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    pd.testing.assert_frame_equal(shown, hidden, check_exact=True)


def test_progress_none_is_silent_off_a_terminal(capfd):
    df = grid_rows(shape=(2, 2))
    fit(df, fitter="glm", progress=None)
    assert capfd.readouterr().err == ""


# --- bad options ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"fitter": "rlm", "weights_column": "w"}, ValueError, "weights"),
        ({"fitter": "glm", "M": sm.robust.norms.HuberT()}, TypeError, "M="),
        ({"fitter": "rlm", "family": sm.families.Gaussian()}, TypeError, "family="),
        ({"fitter": "ols", "family": sm.families.Gaussian()}, TypeError, "family"),
        ({"fitter": "glm", "n_sigma_cut": 3.0}, ValueError, "n_sigma_cut"),
        ({"fit_formula": lambda x, y, w, t: {}, "n_sigma_cut": 3.0}, ValueError, "n_sigma_cut"),
        ({"partition_strategy": {"jobs": 2}}, ValueError, "jobs"),
        ({"partition_strategy": {"n_jobs": 0}}, ValueError, "n_jobs"),
        ({"partition_strategy": "split"}, TypeError, "partition_strategy"),
        ({"fit_formula": lambda x, y, w, t: {}, "fitter": "glm"}, ValueError, "callable"),
        ({"fit_formula": lambda x, y, w, t: {}, "fitter": "rlm"}, ValueError, "callable"),
        ({"fitter": "glm", "fit_kwargs": ["maxiter"]}, TypeError, "fit_kwargs"),
        ({"fitter": "glm", "progress": "yes"}, TypeError, "progress"),
    ],
)
def test_bad_fitter_options_are_refused(kwargs, error, pattern):
    df = grid_rows(shape=(2, 2))
    with pytest.raises(error, match=pattern):
        fit(df, **kwargs)


def test_split_by_an_unknown_column_is_a_key_error():
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"a": rng.integers(0, 4, 800), "x": rng.normal(size=800)})
    df["y"] = df.x + rng.normal(size=800)
    with pytest.raises(KeyError, match="split_by"):
        xslide.fit(df, ["a"], ["y"], ["x"], {}, partition_strategy={"split_by": ["zz"]})


def test_failed_windows_are_said_once_with_count_reasons_and_first_message():
    df = grid_rows(shape=(4, 3), seed=2)

    def fragile(x, y, w, terms):
        if y.mean() > 0:
            raise ZeroDivisionError("the window's mean is positive\nsecond line")
        return {"Intercept": float(y.mean())}

    with pytest.warns(xslide.FitFailedWarning) as caught:
        out = fit(df, fit_formula=fragile)
    assert len(caught) == 1
    n_failed = int(out.quality_flag.str.contains("fit_failed").sum())
    message = str(caught[0].message)
    assert n_failed > 0 and message.startswith(f"{n_failed} of {len(out)} window fits")
    assert "ZeroDivisionError x" in message
    assert message.endswith("ZeroDivisionError: the window's mean is positive")


def test_windows_that_all_succeed_warn_nothing():
    df = grid_rows(shape=(3, 3), seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", xslide.FitFailedWarning)
        fit(df, fit_formula=lambda x, y, w, terms: {"Intercept": float(y.mean())})
