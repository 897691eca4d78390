"""Hostile files and interruptions: no crash, no hang, no silent wrong result, no destroyed file.

Outputs (``write_fit``, ``write_rows`` and the command line's ``--out``) are written to a hidden
temporary sibling and renamed in place only once complete: an error or a Ctrl-C (simulated by
a ``KeyboardInterrupt`` raised from inside the writing library) leaves the previous file byte for
byte, and no temporary behind. A bad ``--out`` (missing directory, an input, a directory where a
file would go, ...) is refused before any row is read, exit 2; unreadable inputs are named.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from data import track_rows, write_track_files

import xslide
from xslide.cli import main
from xslide.io import write_fit

pq = pytest.importorskip("pyarrow.parquet")
uproot = pytest.importorskip("uproot")

BASE = ["--dims", "rBin,zBin", "--window", "rBin=1", "--targets", "dX,dY", "--predictors", "qpt"]


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return track_rows()


@pytest.fixture(scope="module")
def files(rows, tmp_path_factory) -> dict[str, str]:
    return write_track_files(rows, tmp_path_factory.mktemp("inputs"))


@pytest.fixture(scope="module")
def old_fit(rows) -> xr.Dataset:
    """The fit already on disk before each write: of other options than the new one."""
    return xslide.fit(rows, dims=["rBin", "zBin"], targets=["dX"], predictors=[], window={})


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("xslide: error: ") and "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_no_temporary(folder: Path, *expected: str) -> None:
    """The folder holds exactly ``expected``: no hidden temporary or set-aside store."""
    assert sorted(os.listdir(folder)) == sorted(expected)


# ---- unreadable inputs: one line naming the file, exit 1 ----


def truncated(path: str, folder: Path) -> Path:
    raw = Path(path).read_bytes()
    cut = folder / f"cut{Path(path).suffix}"
    cut.write_bytes(raw[: len(raw) // 2])
    return cut


@pytest.mark.parametrize("mode", [[], ["--in-memory"], ["--selection", "qpt > 0"]])
def test_a_truncated_parquet_is_named(mode, files, tmp_path, capsys):
    cut = truncated(files["parquet"], tmp_path)
    code, _, err = run(capsys, "fit", cut, *BASE, *mode, "--out", tmp_path / "fit.nc")
    assert code == 1
    assert_one_line_error(err, str(cut), "parquet")
    assert_no_temporary(tmp_path, "cut.parquet")


def test_a_parquet_with_a_damaged_row_group_is_named(files, tmp_path, capsys):
    raw = bytearray(Path(files["parquet"]).read_bytes())
    raw[4:2004] = bytes(2000)  # the first pages, the footer left whole
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(bytes(raw))
    code, _, err = run(capsys, "fit", bad, *BASE, "--out", tmp_path / "fit.nc")
    assert code == 1
    assert_one_line_error(err, str(bad))


@pytest.mark.parametrize("mode", [[], ["--in-memory"]])
def test_an_empty_csv_is_named(mode, files, tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    code, _, err = run(capsys, "fit", empty, *BASE, *mode, "--out", tmp_path / "fit.nc")
    assert code == 1
    assert_one_line_error(err, str(empty))
    code, _, err = run(capsys, "fit", files["csv"], empty, *BASE, *mode,
                       "--out", tmp_path / "fit.nc")  # fmt: skip
    assert code == 1
    assert_one_line_error(err, str(empty))
    assert not (tmp_path / "fit.nc").exists()


@pytest.mark.parametrize("mode", [[], ["--in-memory"]])
def test_a_csv_with_a_header_only(mode, rows, files, tmp_path, capsys):
    header = tmp_path / "header.csv"
    rows.iloc[:0].to_csv(header, index=False)
    code, _, err = run(capsys, "fit", header, *BASE, *mode, "--out", tmp_path / "a.nc")
    assert code == 1
    assert_one_line_error(err, "no rows in", str(header))
    # among other inputs it adds no rows, and does not turn their columns into objects
    code, _, _ = run(capsys, "fit", header, files["csv"], *BASE, *mode, "--out", tmp_path / "b.nc")
    assert code == 0
    code, _, _ = run(capsys, "fit", files["csv"], *BASE, *mode, "--out", tmp_path / "c.nc")
    assert code == 0
    with xr.open_dataset(tmp_path / "b.nc") as got, xr.open_dataset(tmp_path / "c.nc") as want:
        np.testing.assert_array_equal(got.coef.values, want.coef.values)


def test_a_truncated_root_file_is_named(files, tmp_path, capsys):
    cut = truncated(files["root"].split(":")[0], tmp_path)
    code, _, err = run(capsys, "fit", f"{cut}:tracks", *BASE, "--out", tmp_path / "fit.nc")
    assert code == 1
    assert_one_line_error(err, str(cut))


def test_a_truncated_fit_is_named_by_predict(old_fit, files, tmp_path, capsys):
    write_fit(old_fit, tmp_path / "fit.nc")
    cut = truncated(str(tmp_path / "fit.nc"), tmp_path)
    code, _, err = run(capsys, "predict", cut, files["csv"], "--out", tmp_path / "p.csv")
    assert code == 1
    assert_one_line_error(err, str(cut))
    assert not (tmp_path / "p.csv").exists()
