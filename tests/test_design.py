"""From rows to the model's inputs: columns looked up by name, selections (boolean arrays,
Series aligned on the index, column names), rows whose target, predictor or weight is not finite
(left out of that target only, and counted), and weights that are negative or missing."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from data import grid_rows_3d

import xslide
from xslide import make_sliding_window_fit

DIMS = ["xBin", "yBin", "zBin"]


# ---- columns ----


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
        "df": grid_rows_3d(),
        "group_columns": DIMS,
        "window_spec": {},
        "fit_columns": ["y"],
        "predictor_columns": ["x"],
    }
    args.update(kwargs)
    with pytest.raises(KeyError, match=column):
        make_sliding_window_fit(**args)


# ---- selections ----


def test_selection_of_the_wrong_length_or_dtype_is_refused():
    df = grid_rows_3d()
    with pytest.raises(ValueError, match="selection"):
        make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"], selection=np.ones(3, bool))
    with pytest.raises(TypeError, match="selection"):
        make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"], selection=np.ones(len(df)))


def test_selection_series_is_aligned_on_the_index():
    df = grid_rows_3d()
    mask = pd.Series(df.x > 0, index=df.index)
    expected = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"], selection=mask)
    shuffled = mask.sample(frac=1.0, random_state=1)
    got = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"], selection=shuffled)
    pd.testing.assert_frame_equal(got, expected)
    with pytest.raises(ValueError, match="aligned"):
        bad = pd.Series(mask.to_numpy(), index=mask.index + 10_000)
        make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"], selection=bad)


def test_selection_equals_fitting_the_selected_rows_only():
    df = grid_rows_3d()
    sel = (df.x2 > 0).to_numpy()
    got = make_sliding_window_fit(df, DIMS, {"zBin": 1}, ["y"], ["x"], selection=sel)
    expected = make_sliding_window_fit(
        df[sel].reset_index(drop=True), DIMS, {"zBin": 1}, ["y"], ["x"]
    )
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-12)
    assert got.attrs["n_rows_not_selected"] == int((~sel).sum())


def test_selection_by_column_name_equals_selection_by_mask():
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"a": rng.integers(0, 4, 800), "x": rng.normal(size=800)})
    df["y"] = df.x + rng.normal(size=800)
    df["keep"] = df.x > 0
    by_name = xslide.fit(df, ["a"], ["y"], ["x"], {}, selection="keep")
    by_mask = xslide.fit(df, ["a"], ["y"], ["x"], {}, selection=df.keep)
    np.testing.assert_array_equal(by_name.coef.values, by_mask.coef.values)


# ---- invalid values and weights ----


def test_nan_rows_leave_only_their_target_and_are_counted():
    df = grid_rows_3d(shape=(2, 1, 1), per_bin=20)
    df.loc[[0, 1, 2], "y"] = [np.nan, np.inf, -np.inf]
    df.loc[25, "x"] = np.nan  # predictor NaN: out of both targets
    out = make_sliding_window_fit(df, DIMS, {}, ["y", "z"], ["x"])
    assert list(out.y_entries) == [17, 19]
    assert list(out.z_entries) == [20, 19]
    assert list(out.n_rows_aggregated) == [20, 20]
    assert json.loads(out.attrs["n_rows_invalid_json"]) == {"y": 4, "z": 1}


def test_negative_weights_and_wls_without_weights_are_refused():
    df = grid_rows_3d()
    df.loc[5, "w"] = -1.0
    with pytest.raises(ValueError, match="negative"):
        make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"], weights_column="w")
    with pytest.raises(ValueError, match="weights_column"):
        make_sliding_window_fit(grid_rows_3d(), DIMS, {}, ["y"], ["x"], fitter="wls")
