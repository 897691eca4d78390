"""The ``xslide demo`` command and the benchmark module run and report sane figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import xarray as xr

from xslide import bench, cli


def test_demo_recovers_the_field_below_the_noise_and_writes_its_outputs(capsys, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    assert cli.main(["demo", "--rows", "200000", "--out", str(out)]) == 0
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
    assert (tmp_path / "demo-dX.png").stat().st_size > 10_000


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
