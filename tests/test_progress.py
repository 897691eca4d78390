"""Progress on every slow path: a bar when asked (``progress=True`` / ``--progress``), none when
refused, an automatic one on a terminal only once a step has lasted; identical results either
way; the demo says what it does; the raw-row time estimate is close to the measured time.

Bars are recorded by a stand-in for ``tqdm.auto.tqdm`` (what ``parallel.progress_bar`` opens),
or read from the captured stderr where the real bar is the point.
"""

from __future__ import annotations

import io
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from data import grid_rows_3d

import xslide
from xslide import demo, fitters, parallel, robust, rows
from xslide.cli import build_parser, main

DIMS = ["xBin", "yBin", "zBin"]
WINDOW = {"xBin": 1, "yBin": 1, "zBin": 1}


class Bar:
    """What a bar was opened with, and what it was told."""

    def __init__(self, **kwargs) -> None:
        self.kwargs = kwargs
        self.total = kwargs["total"]
        self.descriptions = [kwargs["desc"]]
        self.updates: list[int] = []
        self.closed = False

    def update(self, n: int) -> None:
        self.updates.append(n)

    def set_description(self, desc: str) -> None:
        self.descriptions.append(desc)

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@pytest.fixture
def bars(monkeypatch) -> list[Bar]:
    """Every bar xslide opens, in order (tqdm replaced by ``Bar``)."""
    import tqdm.auto

    made: list[Bar] = []

    def factory(**kwargs) -> Bar:
        made.append(Bar(**kwargs))
        return made[-1]

    monkeypatch.setattr(tqdm.auto, "tqdm", factory)
    return made


def named(made: list[Bar], text: str) -> list[Bar]:
    return [bar for bar in made if text in bar.kwargs["desc"]]


def fit(df: pd.DataFrame, **kwargs) -> xr.Dataset:
    return xslide.fit(df, DIMS, ["y", "z"], ["x"], WINDOW, min_entries=5, **kwargs)


def assert_identical(a: xr.Dataset, b: xr.Dataset) -> None:
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


# ---- the bar itself ----


def test_progress_true_opens_a_bar_at_once_and_false_none(bars):
    with parallel.progress_bar(10, True, "xslide step", " windows") as bar:
        bar.update(10)
    assert parallel.progress_bar(10, False, "xslide step", " windows").__class__ is parallel.NoBar
    (shown,) = bars
    assert shown.kwargs["delay"] == 0 and shown.updates == [10] and shown.closed


def test_automatic_bar_shows_on_a_terminal_only_once_the_step_lasts(bars, monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(parallel.progress_bar(10, None, "xslide step", " rows"), parallel.NoBar)
    monkeypatch.setattr(sys, "stderr", Terminal())
    parallel.progress_bar(10, None, "xslide step", " rows")
    assert [bar.kwargs["delay"] for bar in bars] == [parallel.AUTO_DELAY]


def test_kernels_run_in_one_block_without_a_bar_and_in_large_blocks_with_one():
    ids = np.arange(10_000)
    assert [b.size for b in parallel.bar_blocks(ids, parallel.NoBar(), 100)] == [10_000]
    blocks = parallel.bar_blocks(ids, object(), 1_000)
    assert len(blocks) == 10 and np.array_equal(np.concatenate(blocks), ids)
    assert len(parallel.bar_blocks(ids, object(), 10)) == parallel.BAR_BLOCKS


# ---- in-memory fits: median, n_sigma_cut, raw-row fitters ----


def test_forced_bar_counts_every_window_median_in_blocks_with_identical_results(bars, monkeypatch):
    df = grid_rows_3d(shape=(6, 5, 4), per_bin=6, seed=3)
    monkeypatch.setattr(rows, "MEDIAN_BLOCK", 10)
    shown = fit(df, progress=True)
    (bar,) = named(bars, "xslide median")
    assert bar.total == 120 and sum(bar.updates) == 120 and len(bar.updates) == 12
    bars.clear()
    hidden = fit(df, progress=False)
    assert bars == []
    assert_identical(shown, hidden)


def test_forced_bar_follows_every_n_sigma_cut_pass_with_identical_results(bars, monkeypatch):
    df = grid_rows_3d(shape=(6, 5, 4), per_bin=8, seed=4)
    df.loc[::17, "y"] += 25.0  # outliers: the windows keep clipping for a few passes
    monkeypatch.setattr(robust, "CLIP_BLOCK", 16)
    shown = fit(df, n_sigma_cut=2.0, max_iter=4, aggregation=["mean"], progress=True)
    (bar,) = named(bars, "n_sigma_cut")
    assert bar.descriptions[0] == "xslide n_sigma_cut pass 1"
    assert "xslide n_sigma_cut pass 2" in bar.descriptions
    assert sum(bar.updates) == bar.total > 120 and len(bar.updates) > 8
    bars.clear()
    hidden = fit(df, n_sigma_cut=2.0, max_iter=4, aggregation=["mean"], progress=False)
    assert bars == []
    assert_identical(shown, hidden)


def test_glm_fit_draws_a_bar_on_stderr_when_forced(capfd):
    pytest.importorskip("statsmodels")
    df = grid_rows_3d(shape=(3, 2, 2), per_bin=12)
    fit(df, fitter="glm", aggregation=["mean"], progress=True)
    err = capfd.readouterr().err
    assert "xslide glm" in err and "12/12" in err


def test_progress_none_off_a_terminal_opens_no_bar_on_any_path(bars):
    pytest.importorskip("statsmodels")
    df = grid_rows_3d(shape=(3, 2, 2), per_bin=12)
    fit(df, n_sigma_cut=3.0)
    fit(df, fitter="glm")
    xslide.bin_stats(iter([df[:50], df[50:]]), DIMS, ["y"], ["x"])
    assert bars == []


# ---- reading: streams and whole files ----


@pytest.fixture
def parquet(tmp_path) -> tuple[str, pd.DataFrame]:
    pytest.importorskip("pyarrow")
    df = grid_rows_3d(shape=(4, 3, 5), per_bin=10)
    path = str(tmp_path / "rows.parquet")
    df.to_parquet(path, row_group_size=150)
    return path, df


def test_streamed_parquet_bin_stats_counts_its_rows_against_the_file_total(parquet, bars):
    path, df = parquet
    xslide.bin_stats(path, DIMS, ["y"], ["x"], progress=True)
    (bar,) = bars
    assert bar.kwargs["desc"] == "xslide reading"
    assert bar.total == len(df) == sum(bar.updates)


def test_streamed_batches_count_rows_without_a_total_and_false_draws_none(parquet, capfd):
    _, df = parquet
    xslide.bin_stats(iter([df[:100], df[100:]]), DIMS, ["y"], ["x"], progress=True)
    err = capfd.readouterr().err
    assert "xslide reading" in err and "600 rows" in err
    xslide.fit(iter([df[:100], df[100:]]), DIMS, ["y"], ["x"], WINDOW, progress=False)
    assert capfd.readouterr().err == ""


def test_read_rows_reads_row_group_by_row_group_as_pandas_does(parquet, bars):
    path, _ = parquet
    got = xslide.io.read_rows(path, ["x", "y"], progress=True)
    pd.testing.assert_frame_equal(got, pd.read_parquet(path, columns=["x", "y"]), check_exact=True)
    (bar,) = bars
    assert bar.total == 600 and bar.updates == [150] * 4


def test_read_rows_of_a_root_tree_in_steps_equals_one_read(tmp_path, bars, monkeypatch):
    uproot = pytest.importorskip("uproot")
    df = grid_rows_3d(shape=(4, 3, 5), per_bin=10)
    path = tmp_path / "rows.root"
    with uproot.recreate(path) as file:
        file["tracks"] = {c: df[c].to_numpy() for c in df.columns}
    monkeypatch.setattr(xslide.io, "ROOT_STEP", 250)
    got = xslide.io.read_rows(f"{path}:tracks", ["x", "xBin"], progress=True)
    pd.testing.assert_frame_equal(got, df[["x", "xBin"]], check_exact=True)
    (bar,) = bars
    assert bar.total == 600 and bar.updates == [250, 250, 100]


# ---- the command line ----

CLI = ["--dims", "rBin,zBin", "--window", "rBin=1", "--targets", "dX,dY", "--predictors", "qpt"]


def test_cli_progress_shows_reading_and_n_sigma_cut_of_one_parquet(files, tmp_path, capsys):
    out = str(tmp_path / "fit.nc")
    code = main(["fit", files["parquet"], *CLI, "--n-sigma-cut", "3", "--progress", "--out", out])
    err = capsys.readouterr().err
    assert code == 0
    for bar in ("xslide reading", "xslide n_sigma_cut pass 1", "xslide median"):
        assert bar in err, bar
    assert "4.00k/4.00k" in err  # the rows read, out of the file's total
    quiet = ["--n-sigma-cut", "3", "--no-progress", "--out", out]
    code = main(["fit", files["parquet"], *CLI, *quiet])
    assert code == 0 and "xslide" not in capsys.readouterr().err


def test_cli_progress_shows_the_stream_of_one_file_and_of_several(files, tmp_path, capsys):
    out = str(tmp_path / "fit.nc")
    assert main(["fit", files["parquet"], *CLI, "--progress", "--out", out]) == 0
    assert "xslide reading" in capsys.readouterr().err
    two = [files["parquet"], files["parquet"]]
    assert main(["fit", *two, *CLI, "--progress", "--out", out]) == 0
    err = capsys.readouterr().err
    assert err.count("xslide reading: 100%") == 1 and "8.00k/8.00k" in err
    assert main(["fit", *two, *CLI, "--no-progress", "--out", out]) == 0
    assert capsys.readouterr().err == ""


# ---- the demo ----


def test_demo_steps_say_what_they_do_and_how_long_they_took(capsys):
    with demo._step("generating 20,000 rows"):
        time.sleep(0.01)
    with demo._step("fitting", progress=True):
        print("a bar", file=sys.stderr)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("generating 20,000 rows... ") and out[0].endswith(" s")
    assert out[1] == "fitting..." and out[2].startswith("done in ")


def test_demo_takes_progress_flags(capsys):
    args = build_parser().parse_args(["demo", "--no-progress"])
    assert args.progress is False
    assert build_parser().parse_args(["demo"]).progress is None
    assert main(["demo", "--help"]) == 0
    assert "--progress" in capsys.readouterr().out


@pytest.mark.slow
def test_demo_prints_its_steps_and_draws_bars_when_forced(capsys, tmp_path):
    assert main(["demo", "--rows", "2e4", "--out", str(tmp_path / "d"), "--progress"]) == 0
    captured = capsys.readouterr()
    for step in ("generating 20,000 rows...", "fitting", "done in", "writing"):
        assert step in captured.out, step
    assert "xslide n_sigma_cut pass 1" in captured.err and "xslide median" in captured.err


# ---- the time estimate of raw-row fits ----


def test_time_estimate_leaves_out_the_first_calls_and_spreads_its_sample(monkeypatch):
    calls = []

    def slow_start(x, y, w, terms):
        calls.append(1)
        if len(calls) == 1:
            time.sleep(0.5)  # a first call paying for imports and compilation
        return {"Intercept": float(np.mean(y))}

    sampled = []

    def record(work, todo):
        found = timed_sample(work, todo)
        sampled.append((todo, *found))
        return found

    timed_sample = fitters.timed_sample
    monkeypatch.setattr(fitters, "timed_sample", record)
    monkeypatch.setattr(fitters, "WARN_WINDOWS", 10)
    df = grid_rows_3d(shape=(8, 6, 5), per_bin=3)
    options = {"formula": slow_start, "aggregation": ["mean"]}
    with pytest.warns(xslide.PerformanceWarning, match=r"240 windows .* takes about [\d,]+ s"):
        warned = xslide.fit(df, DIMS, ["y"], [], WINDOW, **options)
    ((todo, windows, _, seconds),) = sampled
    assert seconds < 0.004  # the 0.5 s first call would add 5 ms to each of 100 windows
    assert windows.size == fitters.WARM_WINDOWS + fitters.SAMPLE_WINDOWS
    assert windows[0] == todo[0] and windows[-1] == todo[-1]  # spread over all windows
    monkeypatch.setattr(fitters, "WARN_WINDOWS", 10_000)
    quiet = xslide.fit(df, DIMS, ["y"], [], WINDOW, **options)
    assert_identical(warned, quiet)


@pytest.mark.slow
@pytest.mark.parametrize("fitter", ["rlm", "glm"])
def test_time_estimate_is_within_twice_the_measured_time(monkeypatch, fitter):
    pytest.importorskip("statsmodels")
    rng = np.random.default_rng(0)
    flat = np.repeat(np.arange(40 * 50), 20)
    a, b = np.unravel_index(flat, (40, 50))
    x = rng.normal(size=flat.size)
    df = pd.DataFrame({"aBin": a, "bBin": b, "x": x, "y": 1 + 2 * x + rng.standard_t(3, x.size)})
    estimates, measured = [], []
    timed_sample, fit_windows = fitters.timed_sample, xslide.pipeline.fit_windows

    def record(work, todo):
        found = timed_sample(work, todo)
        estimates.append(found[2] * todo.size)
        return found

    def timed(*args):
        started = time.perf_counter()
        out = fit_windows(*args)
        measured.append(time.perf_counter() - started)
        return out

    monkeypatch.setattr(fitters, "timed_sample", record)
    monkeypatch.setattr(fitters, "WARN_WINDOWS", 10)
    monkeypatch.setattr(xslide.pipeline, "fit_windows", timed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", xslide.PerformanceWarning)
        xslide.fit(df, ["aBin", "bBin"], ["y"], ["x"], {"aBin": 1, "bBin": 1}, fitter=fitter)
    (estimate,), (elapsed,) = estimates, measured
    assert 0.5 < estimate / elapsed < 2.0, (estimate, elapsed)
