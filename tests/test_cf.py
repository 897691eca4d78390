"""CF-complete output: long_name everywhere, units where known, bounds, compressed netCDF."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from test_optional import hide

import xslide
from xslide import cli, io
from xslide.errors import InvalidInputTypeError, MissingColumnError
from xslide.solve import FLAG_MEANINGS

UNITS = {"r": "cm", "dX": "cm", "dY": "cm", "qpt": "1/GeV"}
PHYSICAL = ("mean", "std", "median", "rmse", "r_center", "target_units")
COUNTS = ("entries", "n_fitted", "n_rejected", "n_neighbors_used", "n_rows_aggregated")


def rows(n: int = 3000) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"r": rng.uniform(85, 245, n), "z": rng.integers(0, 6, n)})
    df["qpt"] = rng.normal(size=n)
    df["dX"] = 0.01 * df.r + 0.1 * df.qpt + rng.normal(0, 0.1, n)
    df["dY"] = -0.02 * df.r + rng.normal(0, 0.1, n)
    return df


def digitized_fit(**keywords) -> xr.Dataset:
    """A digitized fit with units, every kind of flag and the robust refit's counts."""
    binned = xslide.digitize(rows(), {"r": (85.0, 245.0, 8)}, units={"r": "cm", "dX": "cm"})
    options = {
        "window": {"rBin": 1},
        "units": {"qpt": "1/GeV", "dY": "cm"},
        "centers": "grid",
        "extent": {"z": (0, 7)},  # bins 6, 7 hold no row: empty windows
        "n_sigma_cut": 3.0,
        "trend": 1,
    }
    return xslide.fit(binned, ["rBin", "z"], ["dX", "dY"], ["qpt"], **(options | keywords))


def assert_described(ds: xr.Dataset) -> None:
    """Every variable and coordinate has a long_name; physical and count ones have units."""
    for name, variable in ds.variables.items():
        assert variable.attrs.get("long_name"), name
    for name in (*PHYSICAL, *COUNTS, "r_squared", "effective_window_fraction"):
        if name in ds.variables and name != "target_units":
            assert "units" in ds[name].attrs, name


def test_every_variable_and_coordinate_of_a_fit_has_long_name_and_units():
    fit = digitized_fit()
    assert_described(fit)
    assert json.loads(fit.attrs["units_json"]) == UNITS
    for name in ("mean", "std", "median", "rmse"):
        assert fit[name].attrs["units"] == "cm", name
    for name in (*COUNTS, "r_squared", "effective_window_fraction"):
        assert fit[name].attrs["units"] == "1", name
    assert fit["r_center"].attrs["units"] == "cm"
    assert fit["rBin"].attrs["long_name"] == "bin number of r"
    assert "term_" in fit["term_"].attrs["long_name"] or "cov" in fit["term_"].attrs["long_name"]
    assert fit["target_units"].values.tolist() == ["cm", "cm"]
    # the per-(target, term) units of coef/stderr: targets in cm, qpt in 1/GeV, offsets per bin
    assert fit["coef_units"].sel(target="dX").values.tolist() == ["cm", "cm GeV", "cm"]
    assert "units" not in fit["coef"].attrs  # they differ by term: coef_units says which


def test_units_without_digitize_and_without_any_unit():
    df = rows()
    df["rBin"] = (df.r // 20).astype(int)
    plain = xslide.fit(df, ["rBin"], ["dX"], ["qpt"])
    for name, variable in plain.variables.items():
        assert variable.attrs.get("long_name"), name
    assert json.loads(plain.attrs["units_json"]) == {}
    assert "units" not in plain["mean"].attrs and "coef_units" not in plain.coords
    assert plain["n_fitted"].attrs["units"] == "1"
    same = xslide.fit(df, ["rBin"], ["dX"], units={"dX": "cm"})  # Intercept only: one unit
    assert same["coef"].attrs["units"] == "cm" and same["stderr"].attrs["units"] == "cm"


def test_targets_of_different_units_leave_units_to_target_units():
    df = rows()
    df["rBin"] = (df.r // 20).astype(int)
    fit = xslide.fit(df, ["rBin"], ["dX", "dY"], units={"dX": "cm", "dY": "mrad"})
    assert "units" not in fit["mean"].attrs
    assert fit["target_units"].values.tolist() == ["cm", "mrad"]


def test_given_units_win_over_the_recorded_ones():
    binned = xslide.digitize(rows(), {"r": (85.0, 245.0, 8)}, units={"r": "cm"})
    fit = xslide.fit(binned, ["rBin"], ["dX"], units={"r": "mm"})
    assert fit["r_center"].attrs["units"] == "mm"
    assert json.loads(fit.attrs["units_json"])["r"] == "mm"


@pytest.mark.parametrize(
    ("units", "error", "match"),
    [
        (["cm"], InvalidInputTypeError, "units must be a dict"),
        ({"dX": 3}, InvalidInputTypeError, r"units\['dX'\] must be a non-empty unit string"),
        ({"dX": " "}, InvalidInputTypeError, r"units\['dX'\]"),
        ({1: "cm"}, InvalidInputTypeError, "keys must be column names"),
    ],
)
def test_bad_units_are_refused_naming_the_entry(units, error, match):
    df = rows()
    df["rBin"] = (df.r // 20).astype(int)
    with pytest.raises(error, match=match):
        xslide.fit(df, ["rBin"], ["dX"], units=units)
    with pytest.raises(error, match=match):
        xslide.bin_stats(df, ["rBin"], ["dX"], units=units)
    with pytest.raises(error, match=match):
        xslide.make_sliding_window_fit(df, ["rBin"], {}, ["dX"], [], units=units)
    with pytest.raises(error, match=match):
        xslide.digitize(df, {"r": (85.0, 245.0, 8)}, units=units)


def test_digitize_refuses_units_of_missing_columns():
    with pytest.raises(MissingColumnError, match="'rr'"):
        xslide.digitize(rows(), {"r": (85.0, 245.0, 8)}, units={"rr": "cm"})


def test_seed_api_and_accessor_carry_units():
    df = rows()
    df["rBin"] = (df.r // 20).astype(int)
    frame = xslide.make_sliding_window_fit(df, ["rBin"], {}, ["dX"], ["qpt"], units=UNITS)
    assert json.loads(frame.attrs["units_json"]) == UNITS
    fit = df.to_xarray().slidewin.fit(["rBin"], ["dX"], ["qpt"], units={"dX": "cm"})
    assert fit["mean"].attrs["units"] == "cm"
    stats = df.to_xarray().slidewin.stats(["rBin"], ["dX"], ["qpt"], units={"dX": "cm"})
    assert json.loads(stats.attrs["units_json"]) == {"dX": "cm"}


def test_statistics_carry_long_names_and_units_to_refits_and_combinations():
    binned = xslide.digitize(rows(), {"r": (85.0, 245.0, 8)}, units={"r": "cm"})
    parts = [
        xslide.bin_stats(part, ["rBin"], ["dX"], ["qpt"], units={"dX": "cm"})
        for part in (binned[:1000], binned[1000:])
    ]
    for stats in parts:
        for name, variable in stats.variables.items():
            assert variable.attrs.get("long_name"), name
        assert stats["count"].attrs["units"] == "1"
    total = xslide.combine_stats(parts)
    assert json.loads(total.attrs["units_json"]) == {"r": "cm", "dX": "cm"}
    refit = xslide.fit(total, window={"rBin": 1})
    assert refit["mean"].attrs["units"] == "cm"
    assert refit["r_center"].attrs["units"] == "cm"  # the unit travelled in binning_json


def test_cf_xarray_decodes_the_flags_and_the_bounds():
    cf_xarray = pytest.importorskip("cf_xarray")
    assert cf_xarray
    fit = digitized_fit()
    flags = fit["quality_flag"]
    assert flags.cf.is_flag_variable
    decoded = flags.cf.flags
    assert list(decoded.data_vars) == list(FLAG_MEANINGS)
    np.testing.assert_array_equal((flags.cf == "ok").values, (flags == 0).values)
    assert int(decoded["empty_window"].sum()) > 0 and int(decoded["ok"].sum()) > 0
    assert fit.cf.bounds == {"r_center": ["r_center_bounds"]}
    assert "units" not in fit["r_center_bounds"].attrs  # CF: inherited from r_center
    bounds = fit.cf.get_bounds("r_center")
    assert bounds.dims == ("rBin", "nv")
    edges = np.linspace(85.0, 245.0, 9)
    np.testing.assert_array_equal(bounds.values, np.stack([edges[:-1], edges[1:]], axis=1))
    np.testing.assert_allclose(bounds.mean("nv"), fit["r_center"])


def test_netcdf_round_trip_keeps_everything_and_compresses_large_variables(tmp_path):
    fit = digitized_fit()
    path = io.write_fit(fit, tmp_path / "fit.nc")
    back = io.open_fit(path)
    assert set(back.variables) == set(fit.variables)
    for name, variable in fit.variables.items():
        assert back[name].dims == variable.dims, name
        for key, value in variable.attrs.items():
            np.testing.assert_array_equal(back[name].attrs[key], value, err_msg=f"{name} {key}")
        if variable.dtype.kind in "iuf":
            assert back[name].dtype == variable.dtype, name
            np.testing.assert_array_equal(back[name].values, variable.values, err_msg=name)
        else:
            assert back[name].values.tolist() == variable.values.tolist(), name
    assert back.attrs == fit.attrs
    assert_described(back)
    with xr.open_dataset(path) as raw:
        assert raw["cov"].encoding["zlib"] and raw["cov"].encoding["shuffle"]
        assert not raw["coef"].encoding.get("zlib")  # small: left plain
        assert not raw["r_center"].encoding.get("zlib")
    # the Dataset asks for compression itself: a plain to_netcdf compresses as well
    fit.to_netcdf(tmp_path / "plain.nc")
    with xr.open_dataset(tmp_path / "plain.nc") as plain:
        assert plain["cov"].encoding["zlib"]


def large_fit() -> xr.Dataset:
    """A fit whose coef, stderr and cov are large enough to be compressed."""
    df = rows(20000)
    df["rBin"] = (df.r // 2).astype(int)
    return xslide.fit(df, ["rBin", "z"], ["dX", "dY"], ["qpt"], extent={"z": (0, 200)})


def test_significant_digits_trade_exactness_for_size(tmp_path):
    fit = large_fit()
    exact = io.write_fit(fit, tmp_path / "exact.nc")
    rounded = io.write_fit(fit, tmp_path / "rounded.nc", significant_digits=4)
    assert rounded.stat().st_size < exact.stat().st_size
    back = io.open_fit(rounded)
    np.testing.assert_allclose(back["coef"], fit["coef"], rtol=1e-3)
    np.testing.assert_array_equal(back["n_fitted"], fit["n_fitted"])  # integers stay exact
    with pytest.raises(ValueError, match="significant_digits"):
        io.write_fit(fit, tmp_path / "x.nc", significant_digits=0)
    with pytest.raises(ValueError, match="needs netcdf_format='NETCDF4'"):
        io.write_fit(fit, tmp_path / "x.nc", netcdf_format="NETCDF3_64BIT", significant_digits=3)
    with pytest.raises(ValueError, match="netcdf_format must be one of"):
        io.write_fit(fit, tmp_path / "x.nc", netcdf_format="HDF4")


def test_compression_makes_a_fit_several_times_smaller_than_netcdf3(tmp_path):
    fit = large_fit()
    small = io.write_fit(fit, tmp_path / "small.nc")  # mostly empty bins: NaN compresses
    large = io.write_fit(fit, tmp_path / "large.nc", netcdf_format="NETCDF3_64BIT")
    assert large.stat().st_size > 3 * small.stat().st_size


def test_without_netcdf4_netcdf3_is_written_only_when_asked(monkeypatch, tmp_path):
    fit = digitized_fit()
    hide(monkeypatch, "netCDF4")
    with pytest.raises(ImportError, match=r"xslide\[io\]") as err:
        io.write_fit(fit, tmp_path / "fit.nc")
    assert "NETCDF3_64BIT" in str(err.value)
    assert not list(tmp_path.iterdir())  # refused before anything was written
    path = io.write_fit(fit, tmp_path / "fit.nc", netcdf_format="NETCDF3_64BIT")
    with xr.open_dataset(path, engine="scipy") as back:
        assert back.attrs["units_json"] == fit.attrs["units_json"]
        assert back["n_fitted"].dtype == np.int32  # NETCDF3 has no 64-bit integers
        np.testing.assert_array_equal(back["n_fitted"], fit["n_fitted"])
        assert back["mean"].attrs["units"] == "cm"


def test_cli_records_units_and_refuses_netcdf4_without_the_library(monkeypatch, tmp_path, capsys):
    df = rows()
    df["rBin"] = (df.r // 20).astype(int)
    df.to_parquet(tmp_path / "rows.parquet")
    argv = ["fit", str(tmp_path / "rows.parquet"), "--dims", "rBin", "--targets", "dX"]
    argv += ["--predictors", "qpt", "--units", "dX=cm,qpt=1/GeV"]
    assert cli.main([*argv, "--out", str(tmp_path / "fit.nc")]) == 0
    fit = io.open_fit(tmp_path / "fit.nc")
    assert json.loads(fit.attrs["units_json"]) == {"dX": "cm", "qpt": "1/GeV"}
    assert fit["coef_units"].values.tolist() == [["cm", "cm GeV"]]
    code = cli.main([*argv, "--significant-digits", "3", "--netcdf-format", "NETCDF3_64BIT",
                     "--out", str(tmp_path / "f3.nc")])  # fmt: skip
    assert code == 2
    assert "--netcdf-format 'NETCDF4'" in capsys.readouterr().err
    code = cli.main([*argv, "--significant-digits", "3", "--out", str(tmp_path / "f.parquet")])
    assert code == 2  # rounding is never dropped silently
    assert "--significant-digits applies to .nc outputs only" in capsys.readouterr().err
    hide(monkeypatch, "netCDF4")
    assert cli.main([*argv, "--out", str(tmp_path / "g.nc")]) == 1
    err = capsys.readouterr().err
    assert "xslide[io]" in err and "--netcdf-format NETCDF3_64BIT" in err
    netcdf3 = ["--netcdf-format", "NETCDF3_64BIT", "--out", str(tmp_path / "g.nc")]
    assert cli.main([*argv, *netcdf3]) == 0


def test_parquet_and_root_tables_carry_the_units_of_their_columns(tmp_path):
    fit = digitized_fit()
    io.write_fit(fit, tmp_path / "fit.parquet")
    attrs = pd.read_parquet(tmp_path / "fit.parquet").attrs
    units = json.loads(attrs["column_units_json"])
    assert units["r_center"] == "cm" and units["dX_mean"] == "cm"
    assert units["dX_coef_qpt"] == "cm GeV" and units["dX_n_fitted"] == "1"
    assert json.loads(attrs["units_json"]) == UNITS


@pytest.mark.parametrize("suffix", [".parquet", ".root"])
def test_fit_tables_with_units_open_back_with_their_unit_coordinates(tmp_path, suffix):
    pytest.importorskip("pyarrow" if suffix == ".parquet" else "uproot")
    fit = digitized_fit()
    io.write_fit(fit, tmp_path / f"fit{suffix}")
    back = io.open_fit(tmp_path / f"fit{suffix}")  # coef_units (target, term) travels too
    assert back.coef_units.dims == ("target", "term")
    np.testing.assert_array_equal(back.coef_units.values, fit.coef_units.values)
    np.testing.assert_array_equal(back.target_units.values, fit.target_units.values)
    xr.testing.assert_allclose(back.coef, fit.coef)
    again = xslide.predict(back, rows(200), method="linear")
    np.testing.assert_allclose(
        again.dX_pred, xslide.predict(fit, rows(200), method="linear").dX_pred
    )
