"""The command line end to end: files written here, fitted by ``xslide fit``/``predict``, reopened
and compared with the Python API on the same rows; ``xslide demo`` and the benchmark command.

Exit codes: 0 success, 2 bad arguments (including expressions the restricted checker refuses),
1 data errors (missing file, unknown column).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xslide
from xslide import bench
from xslide.cli import main

pq = pytest.importorskip("pyarrow.parquet")
uproot = pytest.importorskip("uproot")

DIMS = ["rBin", "zBin"]
TARGETS = ["dX", "dY"]
STREAM_AGGREGATES = ["mean", "std", "entries"]  # what a streamed fit computes by default
BASE = ["--dims", "rBin,zBin", "--window", "rBin=1", "--targets", "dX,dY"]


@pytest.fixture(scope="module")
def rows(track_table) -> pd.DataFrame:
    return track_table


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def api_fit(df: pd.DataFrame, **kwargs) -> xr.Dataset:
    options = {"targets": TARGETS, "predictors": ["qpt"], "window": {"rBin": 1}, **kwargs}
    return xslide.fit(df, dims=DIMS, **options)


def assert_same_fit(got: xr.Dataset, want: xr.Dataset, rtol: float = 1e-9) -> None:
    for name in ("coef", "stderr", "mean", "std"):
        np.testing.assert_allclose(
            got[name].values, want[name].values, rtol=rtol, atol=1e-12, err_msg=name
        )
    for name in ("entries", "n_fitted", "quality_flag", "n_rows_aggregated"):
        np.testing.assert_array_equal(got[name].values, want[name].values, err_msg=name)


# ---- fit: inputs and outputs ----


def test_parquet_streamed_to_netcdf_equals_the_python_api(rows, files, tmp_path, capsys):
    out = tmp_path / "fit.nc"
    code, stdout, _ = run(capsys, "fit", files["parquet"], *BASE, "--predictors", "qpt",
                          "--out", out)  # fmt: skip
    assert code == 0
    assert f"{len(rows):,} rows" in stdout and str(out) in stdout
    with xr.open_dataset(out) as fit:
        assert_same_fit(fit, api_fit(rows, aggregation=STREAM_AGGREGATES))
        assert fit.attrs["read_mode"] == "stream"
        assert json.loads(fit.attrs["input_files_json"]) == [files["parquet"]]
        assert json.loads(fit.attrs["window_spec_json"]) == {"rBin": 1, "zBin": 0}


def test_csv_streamed_in_chunks_with_selection_to_zarr(rows, files, tmp_path, capsys):
    pytest.importorskip("zarr")
    out = tmp_path / "fit.zarr"
    code, _, _ = run(capsys, "fit", files["csv"], *BASE, "--predictors", "qpt",
                     "--selection", "qpt > 0.5", "--chunk-rows", 700, "--out", out)  # fmt: skip
    assert code == 0
    want = api_fit(rows, selection=rows.qpt > 0.5, aggregation=STREAM_AGGREGATES)
    fit = xr.open_zarr(out).load()
    assert_same_fit(fit, want)
    assert fit.attrs["n_rows_not_selected"] == int((rows.qpt <= 0.5).sum())
    assert fit.attrs["selection_expression"] == "qpt > 0.5"


def test_selection_on_a_single_parquet_equals_the_python_selection(rows, files, tmp_path, capsys):
    out = tmp_path / "fit.nc"
    selection = "(abs(qpt) < 1.5) & (np.sqrt(r) > 10) | (zBin == 3)"
    code, _, _ = run(capsys, "fit", files["parquet"], *BASE, "--predictors", "qpt",
                     "--selection", selection, "--chunk-rows", 1500, "--out", out)  # fmt: skip
    assert code == 0
    mask = ((rows.qpt.abs() < 1.5) & (np.sqrt(rows.r) > 10)) | (rows.zBin == 3)
    with xr.open_dataset(out) as fit:
        assert_same_fit(fit, api_fit(rows, selection=mask, aggregation=STREAM_AGGREGATES))


def test_root_tree_to_root_output_is_a_drawable_table(rows, files, tmp_path, capsys):
    out = tmp_path / "fit.root"
    code, _, _ = run(capsys, "fit", files["root"], *BASE, "--predictors", "qpt",
                     "--chunk-rows", 1000, "--out", out)  # fmt: skip
    assert code == 0
    want = api_fit(rows, aggregation=STREAM_AGGREGATES)
    with uproot.open(out) as file:
        assert file.classnames()["xslide;1"] == "TTree"
        table = file["xslide"].arrays(library="pd")
        attrs = json.loads(str(file["xslide_attrs"]))
    assert attrs["fitter_used"] == "ols" and "insufficient_stats" in attrs["quality_flag_meanings"]
    at = {d: xr.DataArray(table[d].to_numpy(), dims="row") for d in DIMS}
    assert len(table) == 32  # every observed bin is a center
    for t in TARGETS:
        for term in ("Intercept", "qpt"):
            coef = want.coef.sel(target=t, term=term).sel(at).values
            stderr = want.stderr.sel(target=t, term=term).sel(at).values
            np.testing.assert_allclose(table[f"{t}_coef_{term}"], coef, rtol=1e-9)
            np.testing.assert_allclose(table[f"{t}_stderr_{term}"], stderr, rtol=1e-9)
        np.testing.assert_array_equal(table[f"{t}_entries"], want.entries.sel(target=t).sel(at))
        np.testing.assert_array_equal(table[f"{t}_quality_flag"], 0)


def test_parquet_output_layout_and_metadata(rows, files, tmp_path, capsys):
    out = tmp_path / "fit.parquet"
    code, _, _ = run(capsys, "fit", files["parquet"], *BASE, "--formula",
                     "target ~ qpt + np.log(r)", "--out", out)  # fmt: skip
    assert code == 0
    table = pd.read_parquet(out)
    want = api_fit(rows, predictors=[], formula="target ~ qpt + np.log(r)",
                   aggregation=STREAM_AGGREGATES)  # fmt: skip
    assert list(table.columns[:8]) == [
        "rBin", "zBin",
        "dX_coef_Intercept", "dX_coef_qpt", "dX_coef_np_log_r_",
        "dX_stderr_Intercept", "dX_stderr_qpt", "dX_stderr_np_log_r_",
    ]  # fmt: skip
    for column in ("dX_entries", "dX_mean", "dX_r_squared", "dX_quality_flag", "n_rows_aggregated"):
        assert column in table.columns
    at = {d: xr.DataArray(table[d].to_numpy(), dims="row") for d in DIMS}
    np.testing.assert_allclose(
        table["dY_coef_np_log_r_"], want.coef.sel(target="dY", term="np.log(r)").sel(at), rtol=1e-9
    )
    assert json.loads(table.attrs["terms_json"])["np_log_r_"] == "np.log(r)"
    assert table.attrs["formula"] == "target ~ qpt + np.log(r)"
    meta = json.loads(pq.read_schema(out).metadata[b"xslide"])
    assert meta["window_spec_json"] == '{"rBin": 1, "zBin": 0}'


def test_several_inputs_are_one_stream(rows, tmp_path, capsys):
    first, second = tmp_path / "a.parquet", tmp_path / "b.csv"
    rows.iloc[:2500].to_parquet(first)
    rows.iloc[2500:].to_csv(second, index=False)
    out = tmp_path / "fit.nc"
    code, _, _ = run(capsys, "fit", first, second, *BASE, "--predictors", "qpt", "--out", out)
    assert code == 0
    with xr.open_dataset(out) as fit:
        assert_same_fit(fit, api_fit(rows, aggregation=STREAM_AGGREGATES))
        assert fit.attrs["n_rows_input"] == len(rows)


def test_median_reads_the_rows_into_memory_and_equals_the_api(rows, files, tmp_path, capsys):
    out = tmp_path / "fit.nc"
    code, _, _ = run(capsys, "fit", files["csv"], *BASE, "--predictors", "qpt",
                     "--aggregations", "mean,median,entries", "--selection", "w > 1",
                     "--out", out)  # fmt: skip
    assert code == 0
    want = api_fit(rows, selection=rows.w > 1, aggregation=["mean", "median", "entries"])
    with xr.open_dataset(out) as fit:
        assert fit.attrs["read_mode"] == "memory"
        np.testing.assert_array_equal(fit["median"].values, want["median"].values)
        np.testing.assert_array_equal(fit["coef"].values, want["coef"].values)


def test_window_options_map_onto_the_api_keywords(rows, files, tmp_path, capsys):
    out = tmp_path / "fit.nc"
    code, _, _ = run(capsys, "fit", files["parquet"], "--dims", "rBin,zBin",
                     "--window", "rBin=2,zBin=1", "--targets", "dX", "--predictors", "qpt,r",
                     "--weights", "w", "--boundary", "rBin=shrink,zBin=periodic",
                     "--kernel", "gaussian", "--kernel-width", "rBin=1.5,zBin=1",
                     "--trend", "1", "--centers", "grid", "--min-entries", "30",
                     "--n-sigma-cut", "3", "--max-iter", "2", "--extent", "zBin=0:3",
                     "--out", out)  # fmt: skip
    assert code == 0
    want = xslide.fit(
        rows, dims=DIMS, targets=["dX"], predictors=["qpt", "r"],
        window={"rBin": 2, "zBin": 1}, weights="w",
        boundary={"rBin": "shrink", "zBin": "periodic"}, kernel="gaussian",
        kernel_width={"rBin": 1.5, "zBin": 1.0}, trend=1, centers="grid", min_entries=30,
        n_sigma_cut=3.0, max_iter=2, extent={"zBin": (0, 3)},
    )  # fmt: skip
    with xr.open_dataset(out) as fit:
        assert list(fit.term.values) == ["Intercept", "qpt", "r", "d_rBin", "d_zBin"]
        assert_same_fit(fit, want, rtol=1e-12)
        np.testing.assert_array_equal(fit["n_rejected"].values, want["n_rejected"].values)
        assert fit.attrs["kernel"] == want.attrs["kernel"]


# ---- fit: errors ----


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("xslide: error: ")
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_file_is_a_data_error(tmp_path, capsys):
    code, _, err = run(capsys, "fit", tmp_path / "nope.parquet", *BASE, "--out", tmp_path / "f.nc")
    assert code == 1
    assert_one_line_error(err, "nope.parquet", "no such file")


def test_unknown_column_is_a_data_error(files, tmp_path, capsys):
    code, _, err = run(capsys, "fit", files["csv"], *BASE, "--predictors", "qpt,eta",
                       "--out", tmp_path / "f.nc")  # fmt: skip
    assert code == 1
    assert_one_line_error(err, "['eta'] not found")
    code, _, err = run(capsys, "fit", files["root"], *BASE, "--selection", "eta > 0",
                       "--out", tmp_path / "f.nc")  # fmt: skip
    assert code == 1
    assert_one_line_error(err, "['eta'] not found")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--window", "rBin=x"], "half-width of 'rBin'"),
        (["--window", "rBin"], "dim=half_width"),
        (["--window", "rBin=-1"], ">= 0"),
        (["--window", "phiBin=1"], "--window names ['phiBin'], which are not bin dims"),
        (["--boundary", "rBin=bouncy"], "unknown boundary 'bouncy'"),
        (["--kernel", "triangle"], "invalid choice"),
        (["--aggregations", "mean,mode"], "'mode'"),
        (["--selection", "__import__('os')"], "__import__"),
        (["--selection", "qpt.__class__ == 1"], "attribute access"),
        (["--selection", "open('f')"], "'open' is not allowed"),
        (["--formula", "target ~ qpt + __import__('os').getcwd()"], "attribute access"),
        (["--predictors", "qpt", "--formula", "target ~ qpt"], "not allowed with"),
        (["--fitter", "wls"], "needs --weights"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(files, tmp_path, capsys, argv, fragment):
    base = ["--dims", "rBin,zBin", "--targets", "dX"]
    code, _, err = run(capsys, "fit", files["parquet"], *base, *argv, "--out", tmp_path / "f.nc")
    assert code == 2
    assert_one_line_error(err, fragment)
    assert not (tmp_path / "f.nc").exists()


def test_a_missing_numba_is_warned_once(files, tmp_path, capsys, monkeypatch):
    import xslide._numba

    monkeypatch.setattr(xslide._numba, "numba_available", lambda: False)
    code, _, err = run(capsys, "fit", files["parquet"], *BASE, "--backend", "numba",
                       "--out", tmp_path / "f.nc")  # fmt: skip
    assert code == 0
    warned = [line for line in err.splitlines() if line.startswith("xslide: warning:")]
    assert len(warned) == 1 and "numba" in warned[0]


def test_pickle_and_unknown_formats_are_refused(files, tmp_path, capsys):
    (tmp_path / "rows.pkl").write_bytes(b"not read")
    code, _, err = run(capsys, "fit", tmp_path / "rows.pkl", *BASE, "--out", tmp_path / "f.nc")
    assert code == 2
    assert_one_line_error(err, "pickle")
    code, _, err = run(capsys, "fit", files["csv"], *BASE, "--out", tmp_path / "f.pkl")
    assert code == 2
    assert_one_line_error(err, "unknown output format")


def test_debug_shows_the_traceback(tmp_path, capsys):
    code, _, err = run(capsys, "fit", tmp_path / "nope.csv", *BASE, "--out", tmp_path / "f.nc",
                       "--debug")  # fmt: skip
    assert code == 1
    assert "Traceback" in err and err.strip().endswith("no such file")


def test_help_shows_examples(capsys):
    code, out, _ = run(capsys, "fit", "--help")
    assert code == 0
    assert "examples:" in out and "xslide fit rows.parquet --dims" in out
    assert "exit codes:" in out
    code, out, _ = run(capsys, "predict", "--help")
    assert code == 0 and "xslide predict fit.nc rows.parquet" in out


# ---- predict ----


def test_predict_end_to_end_equals_the_api(rows, files, tmp_path, capsys):
    fit_path, out = tmp_path / "fit.nc", tmp_path / "pred.parquet"
    assert run(capsys, "fit", files["parquet"], *BASE, "--predictors", "qpt", "--in-memory",
               "--min-entries", 200, "--out", fit_path)[0] == 0  # fmt: skip
    new = rows.iloc[:500].copy()
    new.loc[new.index[:7], "rBin"] = 20  # outside the grid
    new_path = tmp_path / "new.csv"
    new.to_csv(new_path, index=False)
    code, stdout, _ = run(capsys, "predict", fit_path, new_path, "--method", "linear",
                          "--bounds", "nan", "--errors", "--out", out)  # fmt: skip
    assert code == 0
    got = pd.read_parquet(out)
    with xr.open_dataset(fit_path) as fit:
        want = xslide.predict(fit.load(), new, method="linear", return_error=True)
    assert list(got.columns) == [*new.columns, "dX_pred", "dY_pred", "dX_pred_err", "dY_pred_err"]
    pd.testing.assert_frame_equal(got[list(new.columns)], new.reset_index(drop=True))
    for column in want.columns:
        np.testing.assert_allclose(got[column], want[column], rtol=1e-12, equal_nan=True)
    assert np.isnan(got["dX_pred"][:7]).all() and np.isfinite(got["dX_pred"][7:]).all()
    assert f"{want.attrs['n_outside_grid']:,} outside the grid" in stdout
    assert want.attrs["n_outside_grid"] == 7


def test_predict_refuses_a_fit_whose_stored_formula_is_not_a_safe_expression(
    rows, tmp_path, capsys
):
    fit = api_fit(rows)
    fit.attrs["formula"] = "target ~ qpt + __import__('os').getcwd()"
    fit.to_netcdf(tmp_path / "evil.nc")
    rows.to_parquet(tmp_path / "rows.parquet")
    code, _, err = run(capsys, "predict", tmp_path / "evil.nc", tmp_path / "rows.parquet",
                       "--out", tmp_path / "p.csv")  # fmt: skip
    assert code == 1
    assert_one_line_error(err, "refusing the stored formula")
    assert not (tmp_path / "p.csv").exists()


def test_predict_errors(files, tmp_path, capsys):
    code, _, err = run(capsys, "predict", tmp_path / "none.nc", files["csv"],
                       "--out", tmp_path / "p.csv")  # fmt: skip
    assert code == 1
    assert_one_line_error(err, "no such file")
    code, _, err = run(capsys, "predict", tmp_path / "fit.csv", files["csv"],
                       "--out", tmp_path / "p.csv")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "a fit is read from .nc, .zarr, .parquet, .root")


def test_rlm_with_a_named_norm_reads_into_memory_and_equals_the_api(rows, files, tmp_path, capsys):
    sm = pytest.importorskip("statsmodels.api")
    out = tmp_path / "fit.nc"
    code, _, _ = run(capsys, "fit", files["parquet"], *BASE, "--predictors", "qpt",
                     "--fitter", "rlm", "--norm", "tukey", "--min-entries", "50",
                     "--out", out)  # fmt: skip
    assert code == 0
    want = api_fit(rows, fitter="rlm", M=sm.robust.norms.TukeyBiweight(), min_entries=50)
    with xr.open_dataset(out) as fit:
        assert fit.attrs["read_mode"] == "memory" and fit.attrs["fitter_used"] == "rlm"
        np.testing.assert_allclose(fit["coef"].values, want["coef"].values, rtol=1e-9)


# ---- demo and bench ----


@pytest.mark.slow
def test_demo_recovers_the_field_below_the_noise_and_writes_its_outputs(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    assert main(["demo", "--rows", "200000", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "200,000 rows" in printed and "fitted" in printed
    table = [
        line.split()
        for line in printed.splitlines()
        if line.split()[:1] in (["dX"], ["dY"], ["dZ"])
    ]
    assert [row[0] for row in table] == ["dX", "dY", "dZ"]
    for _, rms, noise, _stderr, rejected in table:
        assert float(rms) < float(noise) / 3  # the map is far more precise than one row
        assert 1.0 < float(rejected) < 5.0  # about the 3% outliers the model plants
    fit = xr.open_dataset(f"{out}.nc")
    assert {"r_center", "y2x_center", "z2x_center"} <= set(fit.coords)
    # a file a colleague can read without the README, 3x smaller than the 58 MB of round 1
    # (the grid, not the row count, sets its size)
    assert os.path.getsize(f"{out}.nc") < 58e6 / 3
    for name, variable in fit.variables.items():
        assert variable.attrs.get("long_name"), name
    for name in ("mean", "std", "median", "rmse", "r_center", "y2x_center", "z2x_center"):
        assert fit[name].attrs.get("units"), name
    assert fit.coef_units.sel(target="dX", term="Intercept") == "cm"
    assert (tmp_path / "demo-dX.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.needs_numba  # a new interpreter, which imports numba itself
def test_demo_runs_as_a_command(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "xslide.cli",
            "demo",
            "--rows",
            "30000",
            "--out",
            str(tmp_path / "d"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "fitted" in done.stdout


def test_bench_small_scenario_reports_figures(capsys, tmp_path):
    out = tmp_path / "bench.json"
    args = ["small", "--scale", "0.01", "--repeat", "1", "--markdown", "--json", str(out)]
    assert bench.main(args) == 0
    printed = capsys.readouterr().out
    assert "x the floor" in printed and "| small | 1,000 |" in printed
    (figures,) = json.loads(out.read_text())
    assert figures["rows"] == 1_000 and figures["bins"] == 1000
    # one row per bin: the 8 corner windows hold 8 rows, fewer than min_entries
    assert figures["fitted_pct"] == pytest.approx(99.2)
    assert figures["skipped_pct"] == pytest.approx(0.8)
    assert figures["ols_s"] > 0 and figures["floor_s"] > 0 and figures["naive_s"] > 0
    assert 1 <= figures["avg_window_bins"] <= 27


@pytest.mark.parametrize("rows", ["-5", "0", "2.5", "1e20", "many"])
def test_demo_refuses_a_bad_row_count_with_exit_2(capsys, tmp_path, rows):
    code, _, err = run(capsys, "demo", "--rows", rows, "--out", tmp_path / "d")
    assert code == 2
    assert_one_line_error(err, "--rows")


def test_version_is_printed(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"xslide {xslide.__version__}"


def test_numeric_options_accept_scientific_notation_and_the_summary_counts_centers(
    files, tmp_path, capsys
):
    out = tmp_path / "fit.nc"
    code, stdout, _ = run(capsys, "fit", files["parquet"], *BASE, "--min-entries", "1e2",
                          "--chunk-rows", "5e3", "--out", out)  # fmt: skip
    assert code == 0
    with xr.open_dataset(out) as ds:
        assert ds.attrs["min_entries"] == 100
        flags = ds.quality_flag.load()
    for target in ("dX", "dY"):
        flag = flags.sel(target=target)
        fitted, centers = int((flag == 0).sum()), int((flag != 5).sum())
        assert f"{target} {fitted:,} of {centers:,} bins ({100 * fitted / centers:.1f} %)" in stdout


def test_a_fractional_integer_option_is_refused_with_exit_2(files, tmp_path, capsys):
    code, _, err = run(capsys, "fit", files["parquet"], *BASE, "--min-entries", "2.5",
                       "--out", tmp_path / "f.nc")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "--min-entries")


# ---- --digitize: float columns from the command line ----

EDGES_R = (90.0, 240.0, 8)  # r is uniform in 85..250: some rows fall outside


def digitized_api_fit(rows: pd.DataFrame, bins: dict, **kwargs) -> xr.Dataset:
    """The Python API on the same rows: digitize (the file's own rBin set aside), then fit."""
    binned = xslide.digitize(rows.drop(columns="rBin"), bins)
    options = {"targets": ["dX"], "predictors": ["qpt"], "window": {"rBin": 1}, **kwargs}
    return xslide.fit(binned, dims=DIMS, **options)


@pytest.mark.parametrize(
    ("kind", "extra", "aggregation"),
    [
        ("parquet", [], STREAM_AGGREGATES),
        ("csv", ["--chunk-rows", "700"], STREAM_AGGREGATES),
        ("root", ["--chunk-rows", "1000"], STREAM_AGGREGATES),
        ("parquet", ["--in-memory"], None),
    ],
)
def test_digitize_bins_float_columns_with_physical_centers(
    rows, files, tmp_path, capsys, kind, extra, aggregation
):
    out = tmp_path / "fit.nc"
    code, stdout, err = run(capsys, "fit", files[kind], "--digitize", "r=90:240:8",
                            "--dims", "rBin,zBin", "--window", "rBin=1", "--targets", "dX",
                            "--predictors", "qpt", *extra, "--out", out)  # fmt: skip
    assert code == 0, err
    keywords = {} if aggregation is None else {"aggregation": aggregation}
    want = digitized_api_fit(rows, {"r": EDGES_R}, **keywords)
    outside = int(((rows.r < 90) | (rows.r > 240)).sum())
    assert outside > 0
    assert f"r {outside:,} outside the --digitize edges" in stdout
    with xr.open_dataset(out) as fit:
        np.testing.assert_allclose(fit.coef.values, want.coef.values, rtol=1e-9)
        np.testing.assert_allclose(fit.r_center.values, want.r_center.values)
        np.testing.assert_allclose(fit.r_center.attrs["edges"], np.linspace(90, 240, 9))
        assert "digitize(r" in json.loads(fit.attrs["binning_formulas_json"])["rBin"]
        assert json.loads(fit.attrs["n_rows_outside_digitize_json"]) == {"r": outside}
        assert fit.attrs["n_rows_without_bin"] == outside


def test_digitize_takes_explicit_edges_and_the_selection_sees_the_new_bins(
    rows, files, tmp_path, capsys
):
    out = tmp_path / "fit.nc"
    edges = [85.0, 100.0, 130.0, 180.0, 250.0]
    code, _, err = run(capsys, "fit", files["parquet"], "--digitize", "r=85/100/130/180/250",
                       "--dims", "rBin,zBin", "--targets", "dX", "--predictors", "qpt",
                       "--selection", "rBin >= 1", "--out", out)  # fmt: skip
    assert code == 0, err
    binned = xslide.digitize(rows.drop(columns="rBin"), {"r": edges})
    want = xslide.fit(binned, dims=DIMS, targets=["dX"], predictors=["qpt"],
                      selection=binned.rBin.fillna(-1) >= 1,
                      aggregation=STREAM_AGGREGATES)  # fmt: skip
    with xr.open_dataset(out) as fit:
        assert fit.rBin.values.tolist() == [1, 2, 3]
        np.testing.assert_allclose(fit.r_center, [115.0, 155.0, 215.0])
        np.testing.assert_allclose(fit.coef.values, want.coef.values, rtol=1e-9)


def test_a_float_dims_column_points_at_digitize(files, tmp_path, capsys):
    for kind in ("parquet", "csv", "root"):
        code, _, err = run(capsys, "fit", files[kind], "--dims", "r,zBin", "--targets", "dX",
                           "--out", tmp_path / "f.nc")  # fmt: skip
        assert code == 1
        assert_one_line_error(err, "rows.", "--dims column 'r' holds float64",
                              "--digitize r=lo:hi:n", "rBin in --dims")  # fmt: skip
        assert "xslide.digitize" not in err


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--digitize", "r=250:85:10"], "--digitize r=250:85:10: need finite lo < hi"),
        (["--digitize", "r=85:250"], "expected lo:hi:n"),
        (["--digitize", "r=85:250:2.5"], "argument --digitize: expected a whole number"),
        (["--digitize", "r=85/85/250"], "increasing edges"),
        (["--digitize", "r"], "column=lo:hi:n"),
        (["--digitize", "r=1:2:3,r=1:2:4"], "twice"),
        (["--digitize", "qpt=-3:3:6"], "makes qptBin, which --dims does not list"),
        (["--digitize", "zBin=0:4:4"], "--dims names ['zBin'], which --digitize bins"),
        (["--digitize", "r=85:250:4", "--dims", "rBin", "--dask-workers", "2"],
         "--digitize is not available with --dask-workers"),
    ],
)  # fmt: skip
def test_bad_digitize_values_and_combinations_exit_2(files, tmp_path, capsys, argv, fragment):
    base = ["--dims", "rBin,zBin", "--targets", "dX"]
    if "--dims" in argv:
        base = ["--targets", "dX"]
    code, _, err = run(capsys, "fit", files["parquet"], *base, *argv, "--out", tmp_path / "f.nc")
    assert code == 2
    assert_one_line_error(err, fragment)


# ---- options that exclude each other: exit 2 ----


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--scheduler", "tcp://127.0.0.1:1", "--dask-workers", "2"], "exclude each other"),
        (["--scheduler", "tcp://127.0.0.1:1", "--in-memory"], "--in-memory reads the rows"),
        (["--dask-workers", "2", "--aggregations", "mean,median"], "--aggregations median"),
        (["--dask-workers", "2", "--n-sigma-cut", "3"], "--n-sigma-cut reads the rows"),
        (["--selection", "qpt + 1"], "--selection 'qpt + 1' gives float64 values"),
        (["--aggregations", "mean,mean"], "argument --aggregations: 'mean' given twice"),
    ],
)
def test_bad_combinations_exit_2_naming_the_flags(files, tmp_path, capsys, argv, fragment):
    code, _, err = run(capsys, "fit", files["parquet"], *BASE, *argv, "--out", tmp_path / "f.nc")
    assert code == 2
    assert_one_line_error(err, fragment)
    assert not (tmp_path / "f.nc").exists()


def test_predict_target_errors_name_the_flag_and_the_fit(rows, tmp_path, capsys):
    fit_path, rows_path = tmp_path / "fit.nc", tmp_path / "rows.parquet"
    api_fit(rows).to_netcdf(fit_path)
    rows.to_parquet(rows_path)
    code, _, err = run(capsys, "predict", fit_path, rows_path, "--targets", "dX,dX",
                       "--out", tmp_path / "p.csv")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, "argument --targets: 'dX' given twice")
    code, _, err = run(capsys, "predict", fit_path, rows_path, "--targets", "dZ",
                       "--out", tmp_path / "p.csv")  # fmt: skip
    assert code == 1
    assert_one_line_error(err, "--targets ['dZ'] were not fitted in", "fit.nc")


def test_every_command_has_a_description_examples_and_exit_codes(capsys):
    for command, example in [
        ([], "xslide predict FIT INPUT"),
        (["fit"], "--digitize r=85:245:32"),
        (["predict"], "xslide predict fit.parquet"),
        (["demo"], "xslide demo --rows 2e5"),
    ]:
        code, out, _ = run(capsys, *command, "--help")
        assert code == 0
        assert "examples:" in out or "commands:" in out, command
        assert example in out and "exit codes:" in out, command
        description = out.split("\n\n")[1]
        assert not description.startswith(("positional", "options")), command


# ---- predict: positions, and every fit format ----


def predict_cli(capsys, fit_path, rows_path, out, *argv) -> tuple[pd.DataFrame, str, str]:
    code, stdout, err = run(capsys, "predict", fit_path, rows_path, *argv, "--out", out)
    assert code == 0, err
    return pd.read_parquet(out), stdout, err


def test_linear_predict_is_exact_between_physical_centers_of_unequal_bins(tmp_path, capsys):
    edges = [0.0, 1.0, 3.0, 4.0, 7.0, 8.0]
    centers = 0.5 * (np.array(edges[:-1]) + np.array(edges[1:]))
    half = 0.5 * np.diff(edges)
    offsets = np.linspace(-0.9, 0.9, 10)  # symmetric: each bin's mean r is its center
    r = (centers[:, None] + half[:, None] * offsets[None, :]).ravel()
    pd.DataFrame({"r": r, "y": 2.0 * r + 1.0}).to_parquet(tmp_path / "rows.parquet")
    fit_path = tmp_path / "fit.nc"
    code, _, err = run(capsys, "fit", tmp_path / "rows.parquet", "--digitize",
                       "r=0/1/3/4/7/8", "--dims", "rBin", "--targets", "y", "--min-entries", 5,
                       "--out", fit_path)  # fmt: skip
    assert code == 0, err
    new_r = np.array([0.5, 1.2, 2.9, 3.1, 5.0, 6.9, 7.5])
    pd.DataFrame({"r": new_r}).to_parquet(tmp_path / "new.parquet")
    linear, stdout, _ = predict_cli(capsys, fit_path, tmp_path / "new.parquet",
                                    tmp_path / "l.parquet", "--method", "linear")  # fmt: skip
    nearest, _, _ = predict_cli(capsys, fit_path, tmp_path / "new.parquet",
                                tmp_path / "n.parquet")  # fmt: skip
    assert "placed by r (physical)" in stdout
    np.testing.assert_allclose(linear.y_pred, 2 * new_r + 1, rtol=1e-12)
    # nearest: the bin holding the row (by its edges), not the nearest center
    holding = np.searchsorted(edges, new_r, side="right") - 1
    np.testing.assert_allclose(nearest.y_pred, 2 * centers[holding] + 1, rtol=1e-12)
    assert np.abs(linear.y_pred - nearest.y_pred).max() > 0.5


def test_linear_predict_interpolates_fractional_bin_positions(tmp_path, capsys):
    bins = np.repeat(np.arange(6), 12)
    pd.DataFrame({"rBin": bins, "y": 3.0 * bins + 1.0}).to_csv(tmp_path / "rows.csv", index=False)
    fit_path = tmp_path / "fit.parquet"
    code, _, err = run(capsys, "fit", tmp_path / "rows.csv", "--dims", "rBin", "--targets", "y",
                       "--out", fit_path)  # fmt: skip
    assert code == 0, err
    position = np.array([0.0, 0.25, 1.5, 3.7, 5.0])
    pd.DataFrame({"rBin": position}).to_csv(tmp_path / "new.csv", index=False)
    linear, stdout, err = predict_cli(capsys, fit_path, tmp_path / "new.csv",
                                      tmp_path / "l.parquet", "--method", "linear")  # fmt: skip
    assert "placed by rBin (bin)" in stdout and "warning" not in err
    nearest, _, _ = predict_cli(capsys, fit_path, tmp_path / "new.csv", tmp_path / "n.parquet")
    np.testing.assert_allclose(linear.y_pred, 3 * position + 1, rtol=1e-12)
    np.testing.assert_allclose(nearest.y_pred, 3 * np.floor(position + 0.5) + 1, rtol=1e-12)
    # whole bin labels sit on the centers: linear is nearest there, and the command says so
    _, _, err = predict_cli(capsys, fit_path, tmp_path / "rows.csv", tmp_path / "w.parquet",
                            "--method", "linear")  # fmt: skip
    assert "xslide: warning: --method linear: every row" in err


def test_predict_reads_parquet_and_root_fits_as_the_netcdf(rows, files, tmp_path, capsys):
    fits = {}
    for suffix in (".nc", ".parquet", ".root"):
        fits[suffix] = tmp_path / f"fit{suffix}"
        code, _, err = run(capsys, "fit", files["parquet"], "--digitize", "r=90:240:8",
                           "--dims", "rBin,zBin", "--window", "rBin=1", "--targets", "dX,dY",
                           "--formula", "target ~ qpt + I(qpt**2)", "--trend", "1",
                           "--min-entries", 40, "--out", fits[suffix])  # fmt: skip
        assert code == 0, err
    new = rows.iloc[:400].drop(columns="rBin")
    new_path = tmp_path / "new.parquet"
    new.to_parquet(new_path)
    from xslide.io import open_fit

    reference = open_fit(fits[".nc"])
    for suffix in (".parquet", ".root"):
        back = open_fit(fits[suffix])
        xr.testing.assert_allclose(back, reference, rtol=1e-14)
        timing = "computation_time_sec"  # three fits, three timings
        assert {k: v for k, v in back.attrs.items() if k != timing} == {
            k: v for k, v in reference.attrs.items() if k != timing
        }
        assert back.r_center.attrs["edges"].tolist() == reference.r_center.attrs["edges"].tolist()
        for method in ("nearest", "linear"):
            argv = ["--method", method, "--errors", "--invalid", "nearest_valid"]
            got, _, _ = predict_cli(capsys, fits[suffix], new_path, tmp_path / "g.parquet", *argv)
            want, _, _ = predict_cli(capsys, fits[".nc"], new_path, tmp_path / "w.parquet", *argv)
            for column in ("dX_pred", "dY_pred", "dX_pred_err", "dY_pred_err"):
                assert np.isfinite(want[column]).mean() > 0.8
                np.testing.assert_allclose(got[column], want[column], rtol=1e-12, equal_nan=True)


def test_crafted_fit_tables_are_refused_in_one_line(rows, tmp_path, capsys):
    import pyarrow as pa

    fit_path = tmp_path / "fit.parquet"
    from xslide.io import write_fit

    write_fit(api_fit(rows), fit_path)
    table = pq.read_table(fit_path)
    meta = json.loads(table.schema.metadata[b"xslide"])
    layout = json.loads(meta["dataset_json"])
    rows.to_parquet(tmp_path / "rows.parquet")

    def crafted(name: str, metadata: bytes | None, frame: pa.Table = table) -> str:
        path = tmp_path / name
        stored = {} if metadata is None else {b"xslide": metadata}
        pq.write_table(frame.replace_schema_metadata(stored), path)
        code, _, err = run(capsys, "predict", path, tmp_path / "rows.parquet",
                           "--out", tmp_path / "p.csv")  # fmt: skip
        assert code == 1
        assert_one_line_error(err, str(path))
        return err

    def with_layout(**changes) -> bytes:
        return json.dumps({**meta, "dataset_json": json.dumps({**layout, **changes})}).encode()

    original = table.schema.metadata[b"xslide"]
    assert "no 'xslide' metadata" in crafted("none.parquet", None)
    assert "not valid JSON" in crafted("json.parquet", b"{" * 100_000)
    deep = json.dumps({**meta, "dataset_json": "[" * 100_000}).encode()
    assert "not valid JSON" in crafted("deep.parquet", deep)
    huge_coords = {
        **layout["coords"],
        "rBin": {"dims": ["rBin"], "values": list(range(10**5))},
        "zBin": {"dims": ["zBin"], "values": list(range(10**3))},
    }
    assert "more than" in crafted("huge.parquet", with_layout(coords=huge_coords))
    coef = {**layout["data_vars"]["coef"], "dtype": "object"}
    evil = with_layout(data_vars={**layout["data_vars"], "coef": coef})
    assert "dtype 'object'" in crafted("dtype.parquet", evil)
    moved = table.set_column(0, "rBin", pa.array(table["rBin"].to_numpy() + 100))
    assert "labels its coordinate does not list" in crafted("labels.parquet", original, moved)
    dropped = table.drop(["dX_coef_qpt"])
    assert "column 'dX_coef_qpt' is missing" in crafted("column.parquet", original, dropped)
    # variables on other dims (e.g. cell bounds) are not in the table: they are left out
    bounds = {"dims": ["zBin", "nv"], "dtype": "float64", "attrs": {}}
    path = tmp_path / "bounds.parquet"
    extra = with_layout(data_vars={**layout["data_vars"], "zBin_bounds": bounds})
    pq.write_table(table.replace_schema_metadata({b"xslide": extra}), path)
    code, _, err = run(capsys, "predict", path, tmp_path / "rows.parquet",
                       "--out", tmp_path / "p.csv")  # fmt: skip
    assert code == 0, err
    # a ROOT file without the attrs string is not a fit
    with uproot.recreate(tmp_path / "bare.root") as file:
        file.mktree("xslide", {"rBin": np.int64})
    code, _, err = run(capsys, "predict", tmp_path / "bare.root", tmp_path / "rows.parquet",
                       "--out", tmp_path / "p.csv")  # fmt: skip
    assert code == 1
    assert_one_line_error(err, "bare.root", "TObjString 'xslide_attrs'")
