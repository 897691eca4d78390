"""Named behaviours of ``make_sliding_window_fit`` (the seed API, API.md §1): the DataFrame's
columns and their order, the quality-flag strings, attrs, options refused, determinism and the
fallback without numba.

What each stage computes is pinned in its own module (``test_grid``, ``test_design``,
``test_window``, ``test_solve``, ...); this module pins the seed API's face.
"""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from data import grid_rows_3d
from reference import assert_frames_close, reference_fit

import xslide
from xslide import PerformanceWarning, make_sliding_window_fit

DIMS = ["xBin", "yBin", "zBin"]


def test_basic_3d_window_matches_the_oracle():
    df = grid_rows_3d()
    window = {"xBin": 1, "yBin": 1, "zBin": 1}
    out = make_sliding_window_fit(df, DIMS, window, ["y"], ["x", "x2"])
    assert len(out) == 4 * 3 * 5
    assert_frames_close(out, reference_fit(df, DIMS, window, ["y"], ["x", "x2"]))


def test_aggregation_values_of_one_window():
    df = grid_rows_3d()
    out = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"]).set_index(DIMS)
    rows = df[(df.xBin.between(0, 2)) & (df.yBin == 1) & (df.zBin == 2)]
    got = out.loc[(1, 1, 2)]
    assert got["y_entries"] == len(rows) == 36
    assert got["y_mean"] == pytest.approx(rows.y.mean(), rel=1e-12)
    assert got["y_std"] == pytest.approx(rows.y.std(ddof=1), rel=1e-10)
    assert got["y_median"] == np.median(rows.y)


def test_multi_target_column_names_and_order():
    df = grid_rows_3d().rename(columns={"x2": "x-2"})
    out = make_sliding_window_fit(df, DIMS, {}, ["y", "z"], ["x", "x-2"])
    aggregates = [f"{t}_{a}" for t in ("y", "z") for a in ("mean", "std", "median", "entries")]
    fits = []
    for t in ("y", "z"):
        fits += [f"{t}_intercept", f"{t}_slope_x", f"{t}_slope_x_2", f"{t}_intercept_err"]
        fits += [f"{t}_slope_x_err", f"{t}_slope_x_2_err", f"{t}_r_squared", f"{t}_rmse"]
        fits += [f"{t}_n_fitted"]
    tail = ["quality_flag", "n_neighbors_used", "n_rows_aggregated", "effective_window_fraction"]
    assert list(out.columns) == DIMS + aggregates + fits + tail
    assert out[["z_slope_x"]].mean().item() == pytest.approx(-1.0, abs=0.1)


def test_aggregation_functions_choose_columns():
    out = make_sliding_window_fit(
        grid_rows_3d(), DIMS, {}, ["y", "z"], ["x"], aggregation_functions={"y": ["median"]}
    )
    assert "y_median" in out and "y_mean" not in out and "z_mean" not in out
    with pytest.raises(ValueError, match="mode"):
        make_sliding_window_fit(
            grid_rows_3d(), DIMS, {}, ["y"], ["x"], aggregation_functions={"y": ["mode"]}
        )


def test_quality_flags_stay_readable_with_many_targets():
    rng = np.random.default_rng(2)
    n = 600
    df = pd.DataFrame({"a": rng.integers(0, 3, n), "x": rng.normal(size=n)})
    targets = [f"t{k}" for k in range(26)]
    for t in targets:
        df[t] = rng.normal(size=n)
    df.loc[df.a == 0, "t25"] = np.nan
    out = xslide.make_sliding_window_fit(df, ["a"], {}, targets, ["x"])
    assert out.quality_flag.tolist() == ["insufficient_stats", "", ""]


def test_attrs_record_the_run():
    out = make_sliding_window_fit(
        grid_rows_3d(), DIMS, {"xBin": 1}, ["y"], ["x"], binning_formulas={"xBin": "floor(r/5)"}
    )
    attrs = out.attrs
    assert json.loads(attrs["window_spec_json"]) == {"xBin": 1, "yBin": 0, "zBin": 0}
    assert json.loads(attrs["binning_formulas_json"]) == {"xBin": "floor(r/5)"}
    assert json.loads(attrs["boundary_mode_per_dim"]) == dict.fromkeys(DIMS, "truncate")
    assert attrs["backend_used"] in ("numba", "numpy")
    assert attrs["fitter_used"] == "ols"
    assert attrs["computation_time_sec"] > 0
    assert attrs["statsmodels_version"] == sm.__version__
    assert attrs["xslide_version"] == xslide.__version__


def test_unknown_options_are_refused_not_ignored():
    with pytest.raises(TypeError, match="windoww"):
        make_sliding_window_fit(grid_rows_3d(), DIMS, {}, ["y"], ["x"], windoww=3)
    with pytest.raises(ValueError, match="fitter"):
        make_sliding_window_fit(grid_rows_3d(), DIMS, {}, ["y"], ["x"], fitter="lasso")
    with pytest.raises(ValueError, match="centers"):
        make_sliding_window_fit(grid_rows_3d(), DIMS, {}, ["y"], ["x"], centers="all")
    with pytest.raises(ValueError, match="backend"):
        make_sliding_window_fit(grid_rows_3d(), DIMS, {}, ["y"], ["x"], backend="gpu")


def test_results_identical_run_to_run():
    df = grid_rows_3d()
    a = make_sliding_window_fit(df, DIMS, {"xBin": 2, "zBin": 1}, ["y", "z"], ["x", "x2"])
    b = make_sliding_window_fit(df, DIMS, {"xBin": 2, "zBin": 1}, ["y", "z"], ["x", "x2"])
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_performance_warning_when_numba_is_missing(monkeypatch):
    monkeypatch.setattr(xslide._numba, "HAVE_NUMBA", False)
    df = grid_rows_3d()
    with pytest.warns(PerformanceWarning, match="numba"):
        out = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"], backend="numba")
    assert out.attrs["backend_used"] == "numpy"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auto = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"])  # no warning
    assert auto.attrs["backend_used"] == "numpy"
    assert_frames_close(out, auto, rtol=1e-13)


@pytest.mark.without_numba_only
def test_the_without_numba_pass_runs_xslide_without_numba():
    import xslide._numba

    assert sys.modules["numba"] is None
    assert xslide._numba.HAVE_NUMBA is False
    out = make_sliding_window_fit(grid_rows_3d(), DIMS, {"xBin": 1}, ["y"], ["x"])
    assert out.attrs["backend_used"] == "numpy"
