"""The ``xslide demo`` command and the benchmark module run and report sane figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from xslide import bench, cli


def test_demo_prints_a_summary_with_small_errors(capsys):
    assert cli.main(["demo", "--rows", "60000"]) == 0
    out = capsys.readouterr().out
    assert "60,000 rows" in out and "fitted 6,000 bins" in out
    lines = [line.split() for line in out.splitlines() if line.startswith(("    dX", "    dY"))]
    assert [line[0] for line in lines] == ["dX", "dY"]
    rms = [float(line[3]) for line in lines]
    assert all(0 < r < 0.05 for r in rms)


def test_demo_runs_as_a_command():
    done = subprocess.run(
        [sys.executable, "-m", "xslide.cli", "demo", "--rows", "30000"],
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
