"""The ``xslide demo`` command and the benchmark module run and report sane figures."""

from __future__ import annotations

import subprocess
import sys

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
    assert (
        bench.main(["small", "--scale", "0.1", "--repeat", "1", "--markdown", "--json", str(out)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "x the floor" in printed and "| small | 2,000 |" in printed
    (figures,) = __import__("json").loads(out.read_text())
    assert figures["rows"] == 2_000 and figures["bins"] == 1000
    assert figures["fitted_pct"] == 100.0 and figures["skipped_pct"] == 0.0
    assert figures["ols_s"] > 0 and figures["floor_s"] > 0 and figures["naive_s"] > 0
    assert 1 <= figures["avg_window_bins"] <= 27
