"""The benchmark's figures that the README quotes."""

from __future__ import annotations

import json

import pytest

from xslide import bench


def test_bench_reports_predict_rows_per_second(capsys, tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["small", "--scale", "0.05", "--repeat", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "predict at the rows      nearest " in printed and " M rows/s, linear " in printed
    (figures,) = json.loads(out.read_text())
    assert figures["predict_nearest_rows_per_s"] > 0
    assert figures["predict_linear_rows_per_s"] > 0


def _run_markdown_json(capsys, tmp_path, scenario: str, scale: str) -> tuple[str, dict]:
    """One scenario with ``--markdown --json``: the printed text and the saved figures."""
    out = tmp_path / "bench.json"
    args = [scenario, "--scale", scale, "--repeat", "1", "--markdown", "--json", str(out)]
    assert bench.main(args) == 0
    printed = capsys.readouterr().out
    (figures,) = json.loads(out.read_text())
    return printed, figures


def test_every_timed_row_has_its_vs_floor_in_text_markdown_and_json(capsys, tmp_path):
    printed, figures = _run_markdown_json(capsys, tmp_path, "small", "0.01")
    assert figures["floor_s"] > 0 and figures["refit_s"] > 0
    rows = ["ols", "with_median", "with_ltm", "weighted", "n_sigma_cut", "refit"]
    rows += ["predict_nearest", "predict_linear"]
    for row in rows:
        assert figures[f"{row}_vs_floor"] == figures[f"{row}_s"] / figures["floor_s"]
    assert figures["vs_floor"] == figures["ols_vs_floor"]
    text = printed.split("| scenario |")[0]
    labels = ["+ exact median", "+ LTM", "weighted (WLS)", "n_sigma_cut=3", "refit from statistics"]
    for label in [*labels, "predict at the rows"]:
        (line,) = [line for line in text.splitlines() if label in line]
        assert "floor)" in line, line
    assert text.count("floor)") == 6  # and the OLS line says "the floor"
    assert figures["ltm_vs_median"] == figures["with_ltm_s"] / figures["with_median_s"]
    assert "| n_sigma_cut=3 | refit from statistics |" in printed
    for label in ("OLS with n_sigma_cut=3", "refit from statistics", "predict linear"):
        (line,) = [line for line in printed.splitlines() if line.startswith(f"| small | {label}")]
        assert line.endswith("x |"), line


def test_compare_prints_before_after_ratios_of_two_json_runs(capsys, tmp_path):
    old = [
        # written by the code before this benchmark saved predict seconds: derived from rows/s
        {"scenario": "medium", "rows": 3_000_000, "ols_s": 0.110, "with_median_s": 0.9,
         "predict_linear_rows_per_s": 1.5e6, "fit_alloc_mb": 300.0},
        {"scenario": "small", "rows": 20_000, "ols_s": 0.005},
        {"scenario": "medium", "boundary": "reflect", "rows": 3_000_000, "ols_s": 0.2},
    ]  # fmt: skip
    new = [
        {"scenario": "medium", "rows": 3_000_000, "ols_s": 0.040, "with_median_s": 0.3,
         "predict_linear_s": 0.5, "refit_s": 0.01, "fit_alloc_mb": 150.0},
        {"scenario": "medium", "boundary": "reflect", "rows": 3_000_000, "ols_s": 0.1},
        {"scenario": "sparse", "rows": 1_250_000, "ols_s": 0.08},
    ]  # fmt: skip
    paths = []
    for name, runs in (("old", old), ("new", new)):
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(runs))
    assert bench.main(["--compare", *map(str, paths)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "| scenario | measurement | before | after | speedup |",
        "|---|---|---|---|---|",
    ]
    assert lines[2:] == [
        "| medium | mean/std/entries + OLS | 0.11 s | 0.04 s | 2.75x |",
        "| medium | + exact median | 0.9 s | 0.3 s | 3.00x |",
        "| medium | predict linear | 2 s | 0.5 s | 4.00x |",
        "| medium | peak allocation of the fit (MB) | 300 MB | 150 MB | 2.00x |",
        "| medium (reflect) | mean/std/entries + OLS | 0.2 s | 0.1 s | 2.00x |",
    ]  # refit (only after) and sparse/small (only in one run) have no row


def test_floor_pass_reads_every_column(monkeypatch):
    import numpy as np

    columns = [np.arange(1000, dtype=np.int64), np.linspace(0, 1, 1000), np.ones(1000, "f4")]
    bench._one_pass(columns)  # int64 and float64 in one launch, float32 in another
    if bench.numba_available():
        sums = bench._block_sums((columns[0],), 8)
        assert sums.shape == (8, 1) and sums.sum() == columns[0].sum()


@pytest.mark.slow  # compiles every kernel of the demo from scratch
@pytest.mark.needs_numba  # new interpreters, which import numba themselves
def test_cold_reports_the_demo_fit_on_empty_numba_caches(capsys, tmp_path):
    out = tmp_path / "cold.json"
    assert bench.main(["--cold", "--scale", "0.01", "--markdown", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "fit on a cold numba cache" in printed and "| demo | xslide demo fit, cold" in printed
    (figures,) = json.loads(out.read_text())
    assert figures["rows"] == 10_000
    assert figures["demo_cold_fit_s"] > figures["demo_warm_fit_s"] > 0
    assert figures["numba_specialisations"] >= figures["numba_kernels"] > 0


def test_rolling_scenario_times_three_windows_next_to_statsmodels_rolling_ols(capsys, tmp_path):
    printed, figures = _run_markdown_json(capsys, tmp_path, "rolling", "0.005")
    assert figures["scenario"] == "rolling" and figures["rows"] == figures["bins"] == 5_000
    assert figures["fitted_pct"] == 100.0
    for key in ("ols_s", "trailing_s", "wide_window_s", "rolling_ols_s", "floor_s"):
        assert figures[key] > 0, key
    assert figures["wide_vs_ols"] == figures["wide_window_s"] / figures["ols_s"]
    assert figures["trailing_vs_floor"] == figures["trailing_s"] / figures["floor_s"]
    assert "RollingOLS(window=101).fit(params_only=True)" in printed
    assert "| rolling | window ±1000 |" in printed
    assert "| scenario | rows | OLS + mean/std/entries |" not in printed  # no grid summary


def test_all_runs_the_rolling_scenario_too(monkeypatch):
    ran = []
    monkeypatch.setattr(bench, "_run_scenario", lambda name, args: ran.append(name) or [])
    assert bench.main(["all"]) == 0
    assert ran == [*bench.SCENARIOS, "rolling"]
