"""The integer bin grid: which bin columns are accepted (integer dtypes, nullable integers whose
missing bins are left out and counted), the grid's extent and its size limit, and ``digitize``,
which turns physical columns into bins and records their centers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from data import grid_rows_3d

import xslide
from xslide import make_sliding_window_fit

DIMS = ["xBin", "yBin", "zBin"]


@pytest.mark.parametrize(
    "make_bad", [lambda s: s.astype(float), lambda s: s > 1, lambda s: s.astype(str), "category"]
)
def test_non_integer_bin_columns_are_rejected(make_bad):
    df = grid_rows_3d()
    df["xBin"] = df.xBin.astype("category") if make_bad == "category" else make_bad(df.xBin)
    with pytest.raises(TypeError, match="xBin"):
        make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"])


def test_nullable_integer_bins_are_accepted_and_missing_bins_left_out_and_counted():
    df = grid_rows_3d()
    expected = make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"])
    df["xBin"] = df.xBin.astype("Int32")
    pd.testing.assert_frame_equal(
        make_sliding_window_fit(df, DIMS, {"xBin": 1}, ["y"], ["x"]), expected, check_dtype=False
    )
    df.loc[[0, 1], "xBin"] = pd.NA
    out = make_sliding_window_fit(df, DIMS, {}, ["y"], ["x"])
    assert out.n_rows_aggregated.sum() == len(df) - 2
    assert out.attrs["n_rows_without_bin"] == 2


def test_extent_fixes_the_grid_and_counts_rows_outside():
    df = grid_rows_3d(shape=(4, 1, 1), per_bin=10)
    out = make_sliding_window_fit(
        df, DIMS, {"xBin": 1}, ["y"], ["x"], centers="grid", extent={"xBin": (1, 5)}
    )
    assert list(out.xBin) == [1, 2, 3, 4, 5]
    assert out.attrs["n_rows_outside_extent"] == 10
    assert list(out.y_entries) == [20, 30, 20, 10, 0]


def test_max_bins_may_be_any_positive_number():
    df = pd.DataFrame({"a": np.arange(40) % 4, "y": np.arange(40.0)})
    plain = make_sliding_window_fit(df, ["a"], {}, ["y"], [])
    for max_bins in (1e8, np.float64(4.0), np.int32(4)):
        pd.testing.assert_frame_equal(
            make_sliding_window_fit(df, ["a"], {}, ["y"], [], max_bins=max_bins), plain,
            check_exact=False,
        )  # fmt: skip
    with pytest.raises(ValueError, match="max_bins=3"):
        make_sliding_window_fit(df, ["a"], {}, ["y"], [], max_bins=3.5)
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="max_bins"):
            make_sliding_window_fit(df, ["a"], {}, ["y"], [], max_bins=bad)


def test_grid_larger_than_max_bins_is_refused_with_advice():
    df = pd.DataFrame({"a": [0, 10_000], "b": [0, 10_000], "y": [1.0, 2.0]})
    with pytest.raises(ValueError, match=r"100,020,001 bins.*extent="):
        make_sliding_window_fit(df, ["a", "b"], {}, ["y"], [])
    with pytest.raises(ValueError, match="max_bins=1,000"):
        make_sliding_window_fit(df, ["a", "b"], {}, ["y"], [], max_bins=1000)


def test_digitize_bins_physical_columns_and_fits_carry_the_centers(tmp_path):
    rng = np.random.default_rng(2)
    n = 4000
    df = pd.DataFrame({"r": rng.uniform(80, 250, n), "x": rng.normal(size=n)})
    df["y"] = 0.01 * df.r + df.x + rng.normal(0, 0.1, n)
    df.loc[[0, 1], "r"] = [300.0, np.nan]  # outside the edges and missing: no bin
    binned = xslide.digitize(df, {"r": (80, 250, 17)})
    assert "rBin" not in df and binned.rBin.dtype == "Int64"
    assert binned.rBin.isna().sum() == 2 and binned.rBin.max() == 16
    expected = np.floor((df.r[2:] - 80) / 10).clip(upper=16).astype(int)
    np.testing.assert_array_equal(binned.rBin[2:].to_numpy(int), expected.to_numpy())
    ds = xslide.fit(binned, ["rBin"], ["y"], ["x"], {"rBin": 1}, binning_formulas=None)
    np.testing.assert_allclose(ds.r_center.values, 85 + 10 * np.arange(17))
    assert ds.r_center.dims == ("rBin",)
    assert ds.attrs["n_rows_without_bin"] == 2
    formulas = json.loads(ds.attrs["binning_formulas_json"])
    assert formulas == {"rBin": "rBin = digitize(r, edges=linspace(80.0, 250.0, 18))"}
    ds.to_netcdf(tmp_path / "fit.nc")
    own = xslide.make_sliding_window_fit(
        binned, ["rBin"], {}, ["y"], ["x"], binning_formulas={"rBin": "floor((r - 80) / 10)"}
    )
    assert json.loads(own.attrs["binning_formulas_json"]) == {"rBin": "floor((r - 80) / 10)"}


def test_digitize_takes_explicit_edges_and_refuses_bad_specs():
    df = pd.DataFrame({"z": [-1.0, -0.2, 0.0, 0.7, 1.0, 1.5]})
    binned = xslide.digitize(df, {"z": [-1.0, 0.0, 0.5, 1.0]}, suffix="_bin")
    assert binned.z_bin.tolist() == [0, 0, 1, 2, 2, pd.NA]
    for bad in [(1.0, 0.0, 3), [0.0, 0.0, 1.0], [1.0], (0.0, 1.0, 0)]:
        with pytest.raises(ValueError, match="digitize"):
            xslide.digitize(df, {"z": bad})
    with pytest.raises(KeyError, match="nope"):
        xslide.digitize(df, {"nope": (0, 1, 2)})


@pytest.mark.needs_numba  # the parallel numba passes against the numpy ones
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("extent", [None, {"a": (2, 6)}, {"a": (0, 30), "b": (-3, 3)}])
def test_grid_passes_in_parallel_equal_the_numpy_ones(monkeypatch, masked, extent):
    from xslide import grid

    rng = np.random.default_rng(5)
    n = 5000
    bins = {"a": rng.integers(-2, 9, n), "b": rng.integers(-5, 5, n)}
    selected = rng.random(n) < 0.8 if masked else None
    missing = rng.random(n) < 0.1 if masked else None
    numpy_made = grid.build_grid(bins, selected, extent, missing=missing)
    monkeypatch.setattr(grid, "_PARALLEL_ROWS", 0)
    monkeypatch.setattr(grid, "_BLOCK_ROWS", 700)  # several blocks
    numba_made = grid.build_grid(bins, selected, extent, missing=missing)
    assert numba_made[0] == numpy_made[0]
    np.testing.assert_array_equal(numba_made[1], numpy_made[1])
    assert numba_made[2] == numpy_made[2]
    assert (numpy_made[1] >= 0).sum() > 0
