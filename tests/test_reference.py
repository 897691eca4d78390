"""Checks of the test oracle itself (``reference.reference_fit``), independent of xslide.

The oracle is compared with statsmodels WLS/OLS, numpy/pandas statistics, exact rational
arithmetic and small hand-worked examples, so that it can be trusted as the ground truth.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from reference import assert_frames_close, reference_fit

RTOL = 1e-10


def close(actual: float, expected: float, rtol: float = RTOL) -> bool:
    """Relative closeness with a tiny absolute floor, NaN == NaN."""
    if math.isnan(expected):
        return math.isnan(actual)
    return math.isclose(actual, expected, rel_tol=rtol, abs_tol=1e-13)


def make_data(
    seed: int, n_pred: int, weights: str, n_bins: tuple[int, int] = (3, 4)
) -> pd.DataFrame:
    """Random binned data: ~25 rows per bin, a few NaN/inf cells, optional weights."""
    rng = np.random.default_rng(seed)
    n = 25 * n_bins[0] * n_bins[1]
    df = pd.DataFrame(
        {
            "g0": rng.integers(0, n_bins[0], n) - 1,
            "g1": rng.integers(0, n_bins[1], n) + 5,
        }
    )
    x = rng.normal(size=(n, n_pred)) * rng.uniform(0.5, 3, n_pred) + rng.uniform(-3, 3, n_pred)
    for j in range(n_pred):
        df[f"x.{j}"] = x[:, j]
    df["y"] = 1.5 + x @ rng.normal(size=n_pred) + rng.normal(size=n)
    df["z"] = rng.normal(size=n) * 10 - 4
    if weights != "none":
        w = rng.uniform(0.2, 4.0, n)
        if weights == "zeros":
            w[rng.random(n) < 0.2] = 0.0
        df["w"] = w
    for col in df.columns[2:]:
        df.loc[rng.random(n) < 0.03, col] = rng.choice([np.nan, np.inf, -np.inf])
    return df


@pytest.mark.parametrize("weights", ["none", "positive", "zeros"])
@pytest.mark.parametrize("n_pred", [0, 1, 2])
def test_window_zero_matches_statsmodels(n_pred: int, weights: str) -> None:
    """With a zero window every bin is an ordinary per-group regression."""
    df = make_data(seed=10 * n_pred + len(weights), n_pred=n_pred, weights=weights)
    preds = [f"x.{j}" for j in range(n_pred)]
    wcol = None if weights == "none" else "w"
    out = reference_fit(df, ["g0", "g1"], {}, ["y", "z"], preds, weights_column=wcol, min_entries=3)
    assert len(out) == 12
    slope_names = [f"slope_x_{j}" for j in range(n_pred)]
    for _, row in out.iterrows():
        rows = df[(df.g0 == row.g0) & (df.g1 == row.g1)]
        for t in ["y", "z"]:
            cols = [t, *preds] + ([wcol] if wcol else [])
            valid = rows[np.isfinite(rows[cols]).all(axis=1)]
            y = valid[t].to_numpy()
            w = valid[wcol].to_numpy() if wcol else np.ones(len(valid))
            exog = sm.add_constant(
                valid[preds].to_numpy().reshape(len(valid), -1), has_constant="add"
            )
            model = sm.WLS(y, exog, weights=w) if wcol else sm.OLS(y, exog)
            res = model.fit()
            assert row[f"{t}_entries"] == len(valid) == row[f"{t}_n_fitted"]
            assert close(row[f"{t}_mean"], np.average(y, weights=w))
            std = np.sqrt(np.cov(y, aweights=w)) if wcol else pd.Series(y).std(ddof=1)
            assert close(row[f"{t}_std"], float(std))
            assert close(row[f"{t}_median"], float(pd.Series(y).median()))
            names = ["intercept", *slope_names]
            for k, name in enumerate(names):
                assert close(row[f"{t}_{name}"], res.params[k]), (t, name)
                assert close(row[f"{t}_{name}_err"], res.bse[k]), (t, name)
            assert close(row[f"{t}_r_squared"], res.rsquared)
            assert close(row[f"{t}_rmse"], np.sqrt(res.ssr / w.sum()))
        assert row.quality_flag == ""
        assert row.n_rows_aggregated == len(rows)
        assert row.n_neighbors_used == 1
        assert row.effective_window_fraction == 1.0


@pytest.mark.parametrize("weights", ["none", "zeros"])
def test_pooled_window_matches_statsmodels(weights: str) -> None:
    """A ±1 window pools the rows of neighboring bins; bins beyond the grid do not exist."""
    df = make_data(seed=7, n_pred=2, weights=weights, n_bins=(1, 5))
    wcol = None if weights == "none" else "w"
    out = reference_fit(
        df, ["g1"], {"g1": 1}, ["y"], ["x.0", "x.1"], weights_column=wcol, min_entries=3
    )
    assert out.g1.tolist() == [5, 6, 7, 8, 9]
    for _, row in out.iterrows():
        rows = df[(df.g1 - row.g1).abs() <= 1]
        cols = ["y", "x.0", "x.1"] + ([wcol] if wcol else [])
        valid = rows[np.isfinite(rows[cols]).all(axis=1)]
        w = valid[wcol].to_numpy() if wcol else np.ones(len(valid))
        exog = sm.add_constant(valid[["x.0", "x.1"]].to_numpy())
        res = sm.WLS(valid.y.to_numpy(), exog, weights=w).fit()
        assert row.y_entries == len(valid)
        assert close(row.y_intercept, res.params[0])
        assert close(row.y_slope_x_1, res.params[2])
        assert close(row.y_slope_x_0_err, res.bse[1])
        assert close(row.y_r_squared, res.rsquared)
        assert row.n_rows_aggregated == len(rows)
        edge = row.g1 in (5, 9)
        assert row.n_neighbors_used == (2 if edge else 3)
        assert row.effective_window_fraction == pytest.approx(2 / 3 if edge else 1.0)


def exact_wls(
    x: np.ndarray, y: np.ndarray, w: np.ndarray
) -> tuple[list[Fraction], list[Fraction], Fraction, Fraction, Fraction]:
    """Exact WLS in rational arithmetic: coefficients, (X^T W X)^-1 diagonal, rss, tss, sum_w."""
    n, k = x.shape
    p = k + 1
    rows = [[Fraction(1)] + [Fraction(float(v)) for v in x[i]] for i in range(n)]
    yf = [Fraction(float(v)) for v in y]
    wf = [Fraction(float(v)) for v in w]
    # Augmented system [X^T W X | X^T W y | I] reduced by Gauss-Jordan.
    mat = [
        [sum(wf[i] * rows[i][a] * rows[i][b] for i in range(n)) for b in range(p)]
        + [sum(wf[i] * rows[i][a] * yf[i] for i in range(n))]
        + [Fraction(int(a == b)) for b in range(p)]
        for a in range(p)
    ]
    for col in range(p):
        pivot = next(r for r in range(col, p) if mat[r][col] != 0)
        mat[col], mat[pivot] = mat[pivot], mat[col]
        inv = 1 / mat[col][col]
        mat[col] = [v * inv for v in mat[col]]
        for r in range(p):
            if r != col and mat[r][col] != 0:
                f = mat[r][col]
                mat[r] = [a - f * b for a, b in zip(mat[r], mat[col], strict=True)]
    coef = [mat[a][p] for a in range(p)]
    inv_diag = [mat[a][p + 1 + a] for a in range(p)]
    resid = [yf[i] - sum(c * v for c, v in zip(coef, rows[i], strict=True)) for i in range(n)]
    rss = sum(wf[i] * resid[i] ** 2 for i in range(n))
    sum_w = sum(wf)
    y_bar = sum(wf[i] * yf[i] for i in range(n)) / sum_w
    tss = sum(wf[i] * (yf[i] - y_bar) ** 2 for i in range(n))
    return coef, inv_diag, rss, tss, sum_w


@pytest.mark.parametrize("offset", [0.0, 1e4, 1e6])
def test_oracle_exact_for_large_offsets(offset: float) -> None:
    """The oracle stays accurate (vs exact rationals) when data sit far from zero."""
    rng = np.random.default_rng(3)
    n = 30
    x = offset * np.array([2.0, 3.0]) + rng.normal(size=(n, 2)) * [1.0, 0.5]
    y = offset * 5.0 + x @ [0.7, -1.3] + rng.normal(size=n)
    w = rng.uniform(0.5, 2.0, n)
    df = pd.DataFrame({"g": 0, "x1": x[:, 0], "x2": x[:, 1], "y": y, "w": w})
    row = reference_fit(df, ["g"], {}, ["y"], ["x1", "x2"], weights_column="w").iloc[0]
    coef, inv_diag, rss, tss, sum_w = exact_wls(x, y, w)
    names = ["y_intercept", "y_slope_x1", "y_slope_x2"]
    sigma2 = rss / (n - 3)
    for k, name in enumerate(names):
        assert close(row[name], float(coef[k]), rtol=1e-9), name
        assert close(row[f"{name}_err"], math.sqrt(float(sigma2 * inv_diag[k])), rtol=1e-9), name
    assert close(row.y_r_squared, float(1 - rss / tss), rtol=1e-9)
    assert close(row.y_rmse, math.sqrt(float(rss / sum_w)), rtol=1e-9)
    exact_mean = sum(Fraction(float(a)) * Fraction(float(b)) for a, b in zip(w, y, strict=True))
    assert close(row.y_mean, float(exact_mean / sum_w), rtol=1e-14)


def test_hand_worked_windows_and_flags() -> None:
    """Small 1-D case worked out by hand: truncation, grid centers, flags, counters."""
    df = pd.DataFrame(
        {
            "b": [0, 0, 1, 1, 1, 4, 4, 4, 6],
            "x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 1.0],
            "y": [1.0, 2.0, np.nan, 4.0, 5.0, 6.0, 7.0, 9.0, 3.0],
        }
    )
    out = reference_fit(df, ["b"], {"b": 1}, ["y"], ["x"], min_entries=3, centers="grid")
    assert out.b.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert out.n_rows_aggregated.tolist() == [5, 5, 3, 3, 3, 4, 1]
    assert out.n_neighbors_used.tolist() == [2, 2, 1, 1, 1, 2, 1]
    assert np.allclose(out.effective_window_fraction, np.array([2, 2, 1, 1, 1, 2, 1]) / 3)
    assert out.y_entries.tolist() == [4, 4, 2, 3, 3, 4, 1]
    assert out.y_n_fitted.tolist() == out.y_entries.tolist()
    # bin 4 alone: x constant -> singular; bin 6: one row -> insufficient.
    assert out.quality_flag.tolist() == [
        "",
        "",
        "insufficient_stats",
        "singular_y",
        "singular_y",
        "",
        "insufficient_stats",
    ]
    assert out.y_mean[0] == pytest.approx(3.0)  # rows 1, 2, 4, 5
    assert out.y_median[0] == pytest.approx(3.0)
    assert out.y_std[0] == pytest.approx(np.std([1, 2, 4, 5], ddof=1))
    # Rows x=0,1,3,4 / y=1,2,4,5: exact fit y = 1 + x.
    assert out.y_intercept[0] == pytest.approx(1.0)
    assert out.y_slope_x[0] == pytest.approx(1.0)
    assert out.y_rmse[0] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(out.y_intercept[3]) and np.isnan(out.y_rmse[3])
    assert out.y_mean[3] == pytest.approx(22 / 3)
    assert out.y_std[6] != out.y_std[6]  # NaN with a single entry
    assert out.y_mean[6] == 3.0

    observed = reference_fit(df, ["b"], {"b": 1}, ["y"], ["x"], min_entries=3)
    assert observed.b.tolist() == [0, 1, 4, 6]
    assert_frames_close(observed, out[out.b.isin([0, 1, 4, 6])].reset_index(drop=True))


def test_hand_worked_empty_window_selection_extent() -> None:
    """empty_window, selection as Series/array, extent dropping rows, column layout."""
    df = pd.DataFrame(
        {
            "i": [0, 0, 1, 2, 2],
            "j": [-3, -2, -3, -3, -2],
            "p-1": [1.0, 2.0, 3.0, 4.0, 5.0],
            "u": [np.nan, 1.0, 2.0, 3.0, 4.0],
            "v": [np.nan, 1.0, np.nan, 3.0, np.nan],
        },
        index=[10, 11, 12, 13, 14],
    )
    kwargs = {"min_entries": 1, "centers": "grid"}
    out = reference_fit(df, ["i", "j"], {}, ["u", "v"], ["p-1"], **kwargs)
    assert list(out.columns) == [
        "i",
        "j",
        *[f"u_{a}" for a in ["mean", "std", "median", "entries"]],
        *[f"v_{a}" for a in ["mean", "std", "median", "entries"]],
        *[f"u_{a}" for a in ["intercept", "slope_p_1", "intercept_err", "slope_p_1_err"]],
        *["u_r_squared", "u_rmse", "u_n_fitted"],
        *[f"v_{a}" for a in ["intercept", "slope_p_1", "intercept_err", "slope_p_1_err"]],
        *["v_r_squared", "v_rmse", "v_n_fitted"],
        *["quality_flag", "n_neighbors_used", "n_rows_aggregated", "effective_window_fraction"],
    ]
    assert list(zip(out.i, out.j, strict=True)) == [(i, j) for i in range(3) for j in (-3, -2)]
    # (0,-3): u and v NaN -> empty_window although one row is aggregated.
    # (0,-2): one row each, x single value -> singular for both targets.
    # (1,-3): v NaN -> insufficient_stats + singular_u; (1,-2): no rows at all.
    assert out.quality_flag.tolist() == [
        "empty_window",
        "singular_u,singular_v",
        "insufficient_stats,singular_u",
        "empty_window",
        "singular_u,singular_v",
        "insufficient_stats,singular_u",
    ]
    assert out.n_rows_aggregated.tolist() == [1, 1, 1, 0, 1, 1]
    assert out.n_neighbors_used.tolist() == [1, 1, 1, 0, 1, 1]

    sel = pd.Series([True, True, False, True, True], index=df.index)
    by_series = reference_fit(df, ["i", "j"], {"i": 2}, ["u"], ["p-1"], selection=sel)
    by_array = reference_fit(df, ["i", "j"], {"i": 2}, ["u"], ["p-1"], selection=sel.to_numpy())
    assert_frames_close(by_series, by_array)
    assert by_series.n_rows_aggregated.tolist() == [2, 2, 2, 2]
    assert by_series.n_neighbors_used.tolist() == [2, 2, 2, 2]
    assert by_series.effective_window_fraction.tolist() == [0.4] * 4

    clipped = reference_fit(
        df, ["i", "j"], {"i": 1}, ["u"], ["p-1"], extent={"i": (1, 3), "j": (-3, -3)}, **kwargs
    )
    assert list(zip(clipped.i, clipped.j, strict=True)) == [(1, -3), (2, -3), (3, -3)]
    assert clipped.n_rows_aggregated.tolist() == [2, 2, 1]
    assert clipped.u_entries.tolist() == [2, 2, 1]
    assert clipped.u_mean.tolist() == [2.5, 2.5, 3.0]

    subset = reference_fit(
        df, ["i", "j"], {}, ["u"], ["p-1"], aggregation_functions=["mean", "entries"]
    )
    assert [c for c in subset.columns if c.startswith("u_")][:2] == ["u_mean", "u_entries"]


def test_assert_frames_close_reports_column_and_row() -> None:
    """The comparison helper fails loudly and names the column and row."""
    df = make_data(seed=1, n_pred=1, weights="none")
    expected = reference_fit(df, ["g0", "g1"], {"g0": 1}, ["y"], ["x.0"], min_entries=3)
    assert_frames_close(expected.copy(), expected)
    bumped = expected.copy()
    bumped.loc[4, "y_slope_x_0"] *= 1 + 1e-6
    with pytest.raises(AssertionError, match=r"'y_slope_x_0' differs at row 4"):
        assert_frames_close(bumped, expected)
    nan_moved = expected.copy()
    nan_moved.loc[2, "y_std"] = np.nan
    with pytest.raises(AssertionError, match="y_std"):
        assert_frames_close(nan_moved, expected)
    as_float = expected.astype({"y_entries": float})
    with pytest.raises(AssertionError, match="not integer"):
        assert_frames_close(as_float, expected)
    with pytest.raises(AssertionError, match="column mismatch"):
        assert_frames_close(expected.iloc[:, ::-1], expected)
