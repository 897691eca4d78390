"""Files in and out (``xslide.io``): batches of rows from parquet, CSV and ROOT, formats refused,
and fits written to and read back from netCDF.

The command line over these files is in ``test_cli``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from data import holed_grid_rows, track_rows, write_track_files

import xslide

DIMS = ["rBin", "zBin"]  # of the track rows
TARGETS = ["dX", "dY"]
FLAG_MEANINGS = "ok empty_window insufficient_stats singular fit_failed not_a_center"


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return track_rows()


@pytest.fixture(scope="module")
def files(rows, tmp_path_factory) -> dict[str, str]:
    pytest.importorskip("pyarrow.parquet")
    pytest.importorskip("uproot")
    return write_track_files(rows, tmp_path_factory.mktemp("inputs"))


def api_fit(df: pd.DataFrame, **kwargs) -> xr.Dataset:
    options = {"targets": TARGETS, "predictors": ["qpt"], "window": {"rBin": 1}, **kwargs}
    return xslide.fit(df, dims=DIMS, **options)


def fit_rows(data, window, **kwargs) -> xr.Dataset:
    """``xslide.fit`` of the holed grid's rows (targets y, z; predictors x, x2)."""
    return xslide.fit(
        data,
        dims=["xBin", "yBin"],
        targets=["y", "z"],
        predictors=["x", "x2"],
        window=window,
        **kwargs,
    )


# ---- rows in ----


def test_iter_batches_chains_inputs_in_chunks_and_read_rows_reads_all(rows, files):
    from xslide import io

    sizes = [len(b) for b in io.iter_batches([files["csv"], files["root"]], ["dX"], 1500)]
    assert sizes == [1500, 1500, 1000, 1500, 1500, 1000]
    whole = io.read_rows(files["root"], ["rBin", "dX"])
    pd.testing.assert_frame_equal(whole, rows[["rBin", "dX"]])
    with pytest.raises(KeyError, match=r"\['eta'\] not found"):
        next(io.iter_batches(files["parquet"], ["dX", "eta"]))


def test_io_refuses_pickle_and_unknown_suffixes(rows, tmp_path):
    from xslide import io

    for reader in (io.read_rows, io.parse_source):
        with pytest.raises(ValueError, match="pickle"):
            reader(tmp_path / "rows.pkl")
        with pytest.raises(ValueError, match="unknown input format"):
            reader(tmp_path / "rows.txt")
    fit = api_fit(rows)
    with pytest.raises(ValueError, match="pickle"):
        io.write_fit(fit, tmp_path / "fit.pickle")
    with pytest.raises(ValueError, match="unknown fit output format"):
        io.write_fit(fit, tmp_path / "fit.h5")
    with pytest.raises(ValueError, match="pickle"):
        io.open_fit(tmp_path / "fit.pkl")


# ---- fits out ----


def test_fit_round_trips_through_netcdf(tmp_path: Path) -> None:
    rows = holed_grid_rows()
    fit = fit_rows(rows, {"xBin": 1, "yBin": 1}, weights="w", binning_formulas={"xBin": "a+b"})
    path = tmp_path / "fit.nc"
    fit.to_netcdf(path)
    with xr.open_dataset(path) as reopened:
        reopened = reopened.load()
    assert set(reopened.data_vars) == set(fit.data_vars)
    assert list(reopened["target"].values) == ["y", "z"]
    assert list(reopened["term"].values) == ["Intercept", "x", "x2"]
    for v in fit.data_vars:
        assert reopened[v].dims == fit[v].dims, v
        if np.issubdtype(fit[v].dtype, np.integer):
            assert reopened[v].dtype == fit[v].dtype, v
            xr.testing.assert_identical(reopened[v], fit[v])
        else:
            xr.testing.assert_allclose(reopened[v], fit[v], rtol=0, atol=0)
    for key, value in fit.attrs.items():
        assert reopened.attrs[key] == value, key
    flag = reopened["quality_flag"]
    np.testing.assert_array_equal(flag.attrs["flag_values"], np.arange(6))
    assert flag.attrs["flag_meanings"] == FLAG_MEANINGS
