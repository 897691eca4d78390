"""Numerical robustness of ``xslide.make_sliding_window_fit`` against the oracle.

Large offsets relative to the spread must not cost precision (the oracle centers its fits, see
``test_reference.test_oracle_exact_for_large_offsets``), and a (near-)constant or collinear
predictor must be flagged ``singular_{target}`` with NaN coefficients instead of garbage.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from reference import assert_frames_close, reference_fit

xslide = pytest.importorskip("xslide")

OFFSET = 1e4  # offsets in units of the spread
RTOL = 1e-7


def offset_data(seed: int, weighted: bool, per_bin_offset: bool) -> pd.DataFrame:
    """2-D binned data whose targets and predictors sit ~1e4 spreads away from zero.

    With ``per_bin_offset`` the offset also changes from bin to bin (by up to 5e3 spreads), so
    no single global reference point removes it.
    """
    rng = np.random.default_rng(seed)
    n = 1500
    g0 = rng.integers(0, 6, n)
    g1 = rng.integers(-2, 3, n)
    shift = 1.0 + 0.1 * (g0 - 2 * g1) if per_bin_offset else np.ones(n)
    spreads = np.array([0.3, 2.0])
    u = rng.normal(size=(n, 2))
    df = pd.DataFrame({"g0": g0 + 100, "g1": g1})
    df["x1"] = spreads[0] * (OFFSET * shift + u[:, 0])
    df["x2"] = spreads[1] * (OFFSET * shift + u[:, 1])
    signal = u @ [0.8, -1.1] + 0.5 * rng.normal(size=n)
    df["y"] = 7.0 * (OFFSET * shift + signal)
    df["z"] = 0.01 * (-OFFSET * shift + rng.normal(size=n))
    if weighted:
        df["w"] = rng.uniform(0.5, 2.0, n)
    return df


@pytest.mark.parametrize("per_bin_offset", [False, True], ids=["global", "per-bin"])
@pytest.mark.parametrize("weighted", [False, True], ids=["ols", "wls"])
@pytest.mark.parametrize("window", [0, 1])
def test_large_offsets_match_reference(window: int, weighted: bool, per_bin_offset: bool) -> None:
    """Offsets of 1e4 spreads in targets and predictors keep rtol 1e-7 agreement."""
    df = offset_data(seed=window + 2 * weighted, weighted=weighted, per_bin_offset=per_bin_offset)
    kwargs: dict[str, Any] = {
        "group_columns": ["g0", "g1"],
        "window_spec": {"g0": window, "g1": window},
        "fit_columns": ["y", "z"],
        "predictor_columns": ["x1", "x2"],
        "weights_column": "w" if weighted else None,
    }
    expected = reference_fit(df, **kwargs)
    assert (expected.quality_flag == "").all()
    actual = xslide.make_sliding_window_fit(df, **kwargs)
    assert_frames_close(actual, expected, rtol=RTOL, atol_scale=RTOL)


def singular_data() -> pd.DataFrame:
    """Five bins of 20 rows; bins 1-4 each hide a different kind of degenerate predictor."""
    rng = np.random.default_rng(11)
    n_per = 20
    b = np.repeat(np.arange(5), n_per)
    x1 = rng.normal(size=5 * n_per)
    x2 = rng.normal(size=5 * n_per)
    jitter = rng.normal(size=n_per)
    x1[b == 1] = 3.0  # exactly constant
    x1[b == 2] = 3.0 + 1e-15 * jitter  # constant up to a few ulps
    x2[b == 3] = 2.0 * x1[b == 3]  # exactly collinear with x1
    x1[b == 4] = 1e4 + 1e-12 * jitter  # constant up to a few ulps at a large offset
    y = 1.0 + 2.0 * x1 - x2 + rng.normal(size=5 * n_per)
    return pd.DataFrame({"b": b, "x1": x1, "x2": x2, "y": y, "w": rng.uniform(0.5, 2, 5 * n_per)})


@pytest.mark.parametrize("weights_column", [None, "w"])
def test_near_constant_or_collinear_predictor_is_singular(weights_column: str | None) -> None:
    """A degenerate window is flagged singular_y with NaN fit results, not garbage."""
    df = singular_data()
    kwargs: dict[str, Any] = {
        "group_columns": ["b"],
        "window_spec": {},
        "fit_columns": ["y"],
        "predictor_columns": ["x1", "x2"],
        "weights_column": weights_column,
    }
    expected = reference_fit(df, **kwargs)
    assert expected.quality_flag.tolist() == [""] + ["singular_y"] * 4  # the oracle agrees
    actual = xslide.make_sliding_window_fit(df, **kwargs)
    assert actual.quality_flag.tolist() == [""] + ["singular_y"] * 4
    fit_cols = [
        c
        for c in actual.columns
        if c.startswith("y_") and c.endswith(("_err", "_rmse", "_squared"))
    ]
    fit_cols += ["y_intercept", "y_slope_x1", "y_slope_x2"]
    assert actual.loc[1:, fit_cols].isna().all().all(), actual.loc[1:, fit_cols]
    assert actual.loc[0, fit_cols].notna().all()
    assert actual.y_n_fitted.tolist() == [20] * 5
    # Bin 4 sits 1e4 spreads away from the others: compare at the large-offset tolerance.
    assert_frames_close(actual, expected, rtol=RTOL, atol_scale=RTOL)


def test_single_constant_predictor_window_in_sliding_fit() -> None:
    """Only the windows that see nothing but the constant bin are singular."""
    df = singular_data()
    df = df[df.b <= 1]  # bin 0 regular, bin 1 with x1 exactly constant
    kwargs: dict[str, Any] = {
        "group_columns": ["b"],
        "window_spec": {"b": 1},
        "fit_columns": ["y"],
        "predictor_columns": ["x1"],
        "min_entries": 5,
        "centers": "grid",
        "extent": {"b": (0, 3)},
    }
    expected = reference_fit(df, **kwargs)
    assert expected.quality_flag.tolist() == ["", "", "singular_y", "empty_window"]
    assert_frames_close(xslide.make_sliding_window_fit(df, **kwargs), expected)


@pytest.mark.slow  # 300 small fits: ~5 s
def test_underdetermined_windows_are_singular() -> None:
    """A window with fewer valid rows than coefficients (n < p) is always singular.

    Three rows and three predictors, placed far from the rest of the data, so that rounding in
    the window's centered cross products cannot hide the missing rank.
    """
    missed = []
    for seed in range(300):
        rng = np.random.default_rng(seed)
        x_far = rng.normal(size=(3, 3)) + rng.uniform(-40, 40, 3)
        x = np.vstack([x_far, rng.normal(size=(30, 3))])
        df = pd.DataFrame(x, columns=["x0", "x1", "x2"])
        df["b"] = np.repeat([0, 1], [3, 30])
        df["y"] = rng.normal(size=33)
        out = xslide.make_sliding_window_fit(
            df, ["b"], {}, ["y"], ["x0", "x1", "x2"], min_entries=1
        )
        if out.quality_flag[0] != "singular_y" or not np.isnan(out.y_intercept[0]):
            missed.append(seed)
    assert not missed, f"n < p windows not flagged singular for seeds {missed}"
