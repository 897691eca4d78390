"""Regressions found in review: partial references, predict off the grid, many targets,
trend-like predictor names, digitize through streams, selections by name, split_by errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import xslide


def shifted_batches(seed: int = 0) -> list[pd.DataFrame]:
    """x has mean ~0 in the first batch and ~50 in the second: one shift cannot serve both."""
    rng = np.random.default_rng(seed)
    parts = []
    for centre in (0.0, 50.0):
        n = 4000
        df = pd.DataFrame({"b": rng.integers(0, 4, n), "x": centre + rng.normal(size=n)})
        df["y"] = 1.0 + 2.0 * df.x + rng.normal(0, 0.1, n)
        parts.append(df)
    return parts


def test_a_partial_reference_still_fixes_every_shift_after_the_first_batch():
    parts = shifted_batches()
    memory = xslide.fit(pd.concat(parts, ignore_index=True), ["b"], ["y"], ["x"], {})
    streamed = xslide.fit(parts, ["b"], ["y"], ["x"], {}, reference={"y": 0.0})
    np.testing.assert_allclose(streamed.coef.values, memory.coef.values, rtol=1e-9)


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


def test_quality_flags_of_many_targets():
    rng = np.random.default_rng(2)
    n = 600
    df = pd.DataFrame({"a": rng.integers(0, 3, n), "x": rng.normal(size=n)})
    targets = [f"t{k}" for k in range(26)]
    for t in targets:
        df[t] = rng.normal(size=n)
    df.loc[df.a == 0, "t25"] = np.nan
    out = xslide.make_sliding_window_fit(df, ["a"], {}, targets, ["x"])
    assert out.quality_flag.tolist() == ["insufficient_stats", "", ""]


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


def test_streams_of_digitized_frames_keep_the_bin_centres():
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"r": rng.uniform(0, 10, 6000), "x": rng.normal(size=6000)})
    df["y"] = df.r + df.x
    binned = xslide.digitize(df, {"r": (0, 10, 5)})
    parts = [binned.iloc[:3000], binned.iloc[3000:]]
    streamed = xslide.fit(parts, ["rBin"], ["y"], ["x"], {"rBin": 1})
    assert "r_center" in streamed.coords
    assert np.isfinite(streamed.slidewin.predict(df.iloc[:5]).y_pred).all()


def test_selection_by_column_name_in_memory_and_split_by_errors():
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"a": rng.integers(0, 4, 800), "x": rng.normal(size=800)})
    df["y"] = df.x + rng.normal(size=800)
    df["keep"] = df.x > 0
    by_name = xslide.fit(df, ["a"], ["y"], ["x"], {}, selection="keep")
    by_mask = xslide.fit(df, ["a"], ["y"], ["x"], {}, selection=df.keep)
    np.testing.assert_array_equal(by_name.coef.values, by_mask.coef.values)
    with pytest.raises(KeyError, match="split_by"):
        xslide.fit(df, ["a"], ["y"], ["x"], {}, partition_strategy={"split_by": ["zz"]})
