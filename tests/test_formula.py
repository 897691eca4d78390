"""Formula strings: one design over all rows, the fast path, statsmodels' term names."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from hypothesis import given
from hypothesis import strategies as st

import xslide

FORMULAS = [
    "target ~ x1",
    "target ~ x1 + x2",
    "target ~ x1 + np.log(x2) + x1:x2",
    "target ~ x1 + I(x1**2)",
    "target ~ x1 * x2",
    "target ~ x1 + x2 - 1",
    "target ~ np.exp(x1 / 4) + I(x2 - x1) - 1",
    "target ~ 1",
]


def make_rows(seed: int, n_bins: int = 6, per_bin: int = 12, nan_share: float = 0.0):
    rng = np.random.default_rng(seed)
    b = np.repeat(np.arange(n_bins), rng.integers(1, per_bin + 1, n_bins))
    rng.shuffle(b)
    n = b.size
    df = pd.DataFrame({"b": b, "x1": rng.normal(1.0, 1.0, n), "x2": rng.uniform(0.2, 3.0, n)})
    df["y"] = 1.0 + 0.5 * df.x1 - np.log(df.x2) + rng.normal(0, 0.3, n)
    df["z"] = 2.0 - df.x1 * df.x2 + rng.normal(0, 0.5, n)
    df["w"] = rng.uniform(0.5, 2.0, n)
    for col in ("x1", "x2", "y", "w"):
        df.loc[rng.random(n) < nan_share, col] = np.nan
    return df


def statsmodels_window(df, formula, target, center, half, weights):
    """statsmodels' formula WLS on the rows gathered explicitly for one window."""
    rows = df[(df.b - center).abs() <= half]
    if weights:
        rows = rows[np.isfinite(rows.w)]
    model = smf.wls(
        formula.replace("target", target),
        rows,
        weights=rows.w if weights else np.ones(len(rows)),
    )
    return model.fit()


@given(
    seed=st.integers(0, 2**32 - 1),
    formula=st.sampled_from(FORMULAS),
    half=st.integers(0, 2),
    weights=st.booleans(),
    nan_share=st.sampled_from([0.0, 0.1]),
)
def test_formula_fast_path_equals_statsmodels_formula_fit(seed, formula, half, weights, nan_share):
    df = make_rows(seed, nan_share=nan_share)
    out = xslide.make_sliding_window_fit(
        df,
        ["b"],
        {"b": half},
        ["y", "z"],
        [],
        fit_formula=formula,
        weights_column="w" if weights else None,
        min_entries=6,
    )
    checked = 0
    for _, row in out.iterrows():
        for target in ("y", "z"):
            if row.quality_flag != "":
                continue
            result = statsmodels_window(df, formula, target, row.b, half, weights)
            assert row[f"{target}_n_fitted"] == result.nobs
            for term, value in result.params.items():
                name = "intercept" if term == "Intercept" else "slope_" + _safe(term)
                assert row[f"{target}_{name}"] == pytest.approx(value, rel=1e-8, abs=1e-10)
                assert row[f"{target}_{name}_err"] == pytest.approx(
                    result.bse[term], rel=1e-7, abs=1e-10
                )
            if len(result.params) > (1 if "Intercept" in result.params else 0):
                assert row[f"{target}_r_squared"] == pytest.approx(result.rsquared, rel=1e-8)
            w = result.model.weights
            rmse = np.sqrt(np.sum(w * result.resid**2) / np.sum(w))
            assert row[f"{target}_rmse"] == pytest.approx(rmse, rel=1e-8)
            checked += 1
    assert checked > 0 or out.quality_flag.ne("").all()


def _safe(term: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in term)


def test_term_names_follow_statsmodels_and_columns_are_sanitised():
    df = make_rows(1)
    formula = "target ~ x1 + np.log(x2) + x1:x2 + I(x1**2)"
    fit = xslide.fit(df, ["b"], ["y"], formula=formula, window={"b": 1}, min_entries=5)
    expected = smf.ols(formula.replace("target", "y"), df).fit().params.index.tolist()
    assert fit.term.values.tolist() == expected
    frame = xslide.make_sliding_window_fit(
        df, ["b"], {"b": 1}, ["y"], [], fit_formula=formula, min_entries=5
    )
    assert "y_slope_np_log_x2_" in frame and "y_slope_I_x1____2__err" in frame
    np.testing.assert_allclose(
        fit.coef.sel(target="y", term="np.log(x2)").values, frame["y_slope_np_log_x2_"]
    )


def test_no_intercept_model_has_no_intercept_columns_and_uncentered_r2():
    df = make_rows(2)
    frame = xslide.make_sliding_window_fit(
        df, ["b"], {}, ["y"], [], fit_formula="target ~ x1 + x2 - 1", min_entries=3
    )
    assert "y_intercept" not in frame and "y_intercept_err" not in frame
    rows = df[df.b == frame.b.iloc[0]]
    result = smf.ols("y ~ x1 + x2 - 1", rows).fit()
    assert frame.y_slope_x1.iloc[0] == pytest.approx(result.params["x1"], rel=1e-9)
    assert frame.y_r_squared.iloc[0] == pytest.approx(result.rsquared, rel=1e-9)


def test_target_is_replaced_as_a_whole_token_only():
    df = make_rows(3).rename(columns={"x1": "dX_target2"})
    df["dX"] = df.y
    out = xslide.make_sliding_window_fit(
        df, ["b"], {"b": 1}, ["dX"], [], fit_formula="target ~ dX_target2", min_entries=5
    )
    assert "dX_slope_dX_target2" in out
    single = xslide.make_sliding_window_fit(
        df, ["b"], {"b": 1}, ["dX"], ["dX_target2"], min_entries=5
    )
    pd.testing.assert_series_equal(out.dX_slope_dX_target2, single.dX_slope_dX_target2)


def test_formula_equals_predictor_columns_for_a_plain_linear_model():
    df = make_rows(4, nan_share=0.05)
    by_formula = xslide.make_sliding_window_fit(
        df, ["b"], {"b": 1}, ["y", "z"], ["x1", "x2"], fit_formula="target ~ x1 + x2"
    )
    by_columns = xslide.make_sliding_window_fit(df, ["b"], {"b": 1}, ["y", "z"], ["x1", "x2"])
    by_formula.attrs = by_columns.attrs = {}
    pd.testing.assert_frame_equal(by_formula, by_columns, check_exact=False, rtol=1e-12)


def test_rows_where_a_term_is_nan_are_left_out_and_counted():
    df = make_rows(5)
    df.loc[df.index[:3], "x2"] = -1.0  # np.log(-1) is NaN: the row cannot be fitted
    out = xslide.make_sliding_window_fit(
        df, ["b"], {}, ["y"], [], fit_formula="target ~ np.log(x2)", min_entries=2
    )
    assert out.y_entries.sum() == len(df) - 3
    assert out.attrs["n_rows_invalid_json"] == '{"y": 3}'


@pytest.mark.parametrize(
    "formula, predictors, message",
    [
        ("target ~ x1 +", [], "fit_formula"),
        ("target ~ nope", [], "nope"),
        ("y ~ x1", [], "left-hand side"),
        ("target ~ x1 ~ x2", [], "form"),
        ("target ~ x1 + target", [], "left-hand side only"),
        ("target ~ C(b)", [], "function 'C' is not allowed"),
        ("target ~ x1", ["x2"], "not used"),
        ("target ~ x1 + z", [], "fit columns"),
    ],
)
def test_bad_formulas_are_refused_before_any_work(monkeypatch, formula, predictors, message):
    def no_work(*args, **kwargs):
        raise AssertionError("the statistics pass ran before the formula was checked")

    monkeypatch.setattr(xslide.sources, "accumulate", no_work)
    with pytest.raises(ValueError, match=message):
        xslide.make_sliding_window_fit(
            make_rows(6), ["b"], {}, ["y", "z"], predictors, fit_formula=formula
        )


def test_a_trusted_formula_skips_the_grammar_check_but_not_the_size_bound():
    rows = make_rows(6)
    with pytest.raises(ValueError, match="categorical"):  # patsy's own C(): refused by xslide
        xslide.make_sliding_window_fit(
            rows, ["b"], {}, ["y"], [], fit_formula="target ~ C(b)", trusted_formula=True
        )
    fit = xslide.make_sliding_window_fit(
        rows, ["b"], {}, ["y"], [], fit_formula="target ~ np.abs(x1)", trusted_formula=True
    )
    assert "y_slope_np_abs_x1_" in fit.columns
    huge = "target ~ (" + " + ".join(f"I(x1*{k})" for k in range(1, 13)) + ")**12"
    with pytest.raises(ValueError, match="12"):
        xslide.make_sliding_window_fit(
            rows, ["b"], {}, ["y"], [], fit_formula=huge, trusted_formula=True
        )


def test_formula_feeds_the_raw_row_fitters_and_clipping():
    df = make_rows(7, per_bin=30)
    formula = "target ~ x1 + I(x1**2)"
    fast = xslide.make_sliding_window_fit(df, ["b"], {"b": 1}, ["y"], [], fit_formula=formula)
    glm = xslide.make_sliding_window_fit(
        df, ["b"], {"b": 1}, ["y"], [], fit_formula=formula, fitter="glm"
    )
    for column in ("y_intercept", "y_slope_x1", "y_slope_I_x1____2_", "y_slope_x1_err"):
        np.testing.assert_allclose(glm[column], fast[column], rtol=1e-8)
    clipped = xslide.make_sliding_window_fit(
        df, ["b"], {"b": 1}, ["y"], [], fit_formula=formula, n_sigma_cut=2.0
    )
    assert (clipped.y_n_rejected > 0).any()
    assert list(clipped.columns) == [*fast.columns[:-4], "y_n_rejected", *fast.columns[-4:]]


def test_formulas_without_patsy_say_what_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "patsy", None)
    with pytest.raises(ImportError, match=r"formula strings.*pip install 'xslide\[stats\]'"):
        xslide.make_sliding_window_fit(
            make_rows(8), ["b"], {}, ["y"], [], fit_formula="target ~ x1"
        )
    plain = xslide.make_sliding_window_fit(make_rows(8), ["b"], {}, ["y"], ["x1"], min_entries=2)
    assert plain.y_slope_x1.notna().any()
