"""Hostile files and interruptions: no crash, no hang, no silent wrong result, no destroyed file.

Outputs (``write_fit``, ``write_rows`` and the command line's ``--out``) are written to a hidden
temporary sibling and renamed in place only once complete: an error or a Ctrl-C (simulated by
a ``KeyboardInterrupt`` raised from inside the writing library) leaves the previous file byte for
byte, and no temporary behind. A bad ``--out`` (missing directory, an input, a directory where a
file would go, ...) is refused before any row is read, exit 2; unreadable inputs are named.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xslide
from xslide import cli
from xslide.cli import main
from xslide.io import OutputPathError, write_fit, write_rows

pq = pytest.importorskip("pyarrow.parquet")
uproot = pytest.importorskip("uproot")

BASE = ["--dims", "rBin,zBin", "--window", "rBin=1", "--targets", "dX,dY", "--predictors", "qpt"]


@pytest.fixture(scope="module")
def rows(track_table) -> pd.DataFrame:
    return track_table


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


def snapshot(path: Path) -> bytes | dict[str, bytes]:
    """A file's bytes, or every file of a directory by relative path."""
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}
    return path.read_bytes()


def assert_no_temporary(folder: Path, *expected: str) -> None:
    """The folder holds exactly ``expected``: no hidden temporary or set-aside store."""
    assert sorted(os.listdir(folder)) == sorted(expected)


# ---- what the writing libraries are made to do halfway through ----


def _fail_after(monkeypatch, owner, name: str, error: BaseException, calls: int = 1) -> None:
    """``owner.name`` works ``calls`` times (something is written), then raises ``error``."""
    original = getattr(owner, name)
    count = [0]

    def broken(*args, **kwargs):
        count[0] += 1
        if count[0] > calls:
            raise error
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, broken)


def _half_csv(self, path_or_buf=None, *args, **kwargs):
    Path(path_or_buf).write_text("rBin,zBin\n1,")
    raise _half_csv.error


def break_writer(monkeypatch, suffix: str, error: BaseException) -> None:
    """Make the library writing ``suffix`` fail with ``error`` after it has written a part."""
    if suffix in (".nc", ".zarr"):
        from xarray.backends.common import ArrayWriter

        _fail_after(monkeypatch, ArrayWriter, "add", error, calls=2)
    elif suffix == ".parquet":
        _fail_after(monkeypatch, pq.ParquetWriter, "write_table", error, calls=0)
    elif suffix == ".root":
        from uproot.writing.writable import WritableTree

        _fail_after(monkeypatch, WritableTree, "extend", error, calls=0)
    else:
        _half_csv.error = error
        monkeypatch.setattr(pd.DataFrame, "to_csv", _half_csv)


def previous_output(tmp_path: Path, name: str, fit: xr.Dataset, rows: pd.DataFrame) -> Path:
    """An output written by an earlier run, in a folder of its own."""
    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / name
    if name.endswith(".csv"):
        rows.iloc[:10].to_csv(path, index=False)
    elif name.startswith("pred"):
        write_rows(rows.iloc[:10], path)
    else:
        write_fit(fit, path)
    return path


FIT_OUTPUTS = ["fit.nc", "fit.zarr", "fit.parquet", "fit.root"]
ROWS_OUTPUTS = ["pred.parquet", "pred.csv", "pred.root"]


# ---- Ctrl-C and errors while writing: the previous file stays, no temporary is left ----


@pytest.mark.parametrize("name", FIT_OUTPUTS)
def test_fit_interrupted_while_writing_keeps_the_previous_file(
    name, rows, files, old_fit, tmp_path, capsys, monkeypatch
):
    if name.endswith(".zarr"):
        pytest.importorskip("zarr")
    out = previous_output(tmp_path, name, old_fit, rows)
    before = snapshot(out)
    break_writer(monkeypatch, out.suffix, KeyboardInterrupt())
    code, stdout, err = run(capsys, "fit", files["parquet"], *BASE, "--out", out)
    assert code == 130
    assert err == "xslide: interrupted\n" and stdout == ""
    assert snapshot(out) == before
    assert_no_temporary(out.parent, name)


@pytest.mark.parametrize("name", ROWS_OUTPUTS)
def test_predict_interrupted_while_writing_keeps_the_previous_file(
    name, rows, files, old_fit, tmp_path, capsys, monkeypatch
):
    fit_path = tmp_path / "fit.nc"
    write_fit(old_fit, fit_path)
    out = previous_output(tmp_path, name, old_fit, rows)
    before = snapshot(out)
    break_writer(monkeypatch, out.suffix, KeyboardInterrupt())
    code, _, err = run(capsys, "predict", fit_path, files["csv"], "--out", out)
    assert code == 130
    assert err == "xslide: interrupted\n"
    assert snapshot(out) == before
    assert_no_temporary(out.parent, name)


@pytest.mark.parametrize("name", FIT_OUTPUTS + ROWS_OUTPUTS)
def test_a_failed_write_keeps_the_previous_file_and_names_it(
    name, rows, files, old_fit, tmp_path, capsys, monkeypatch
):
    if name.endswith(".zarr"):
        pytest.importorskip("zarr")
    out = previous_output(tmp_path, name, old_fit, rows)
    before = snapshot(out)
    break_writer(monkeypatch, out.suffix, OSError(28, "No space left on device"))
    if name.startswith("fit"):
        code, _, err = run(capsys, "fit", files["parquet"], *BASE, "--out", out)
    else:
        write_fit(old_fit, tmp_path / "fit.nc")
        code, _, err = run(capsys, "predict", tmp_path / "fit.nc", files["csv"], "--out", out)
    assert code == 1
    assert_one_line_error(err, str(out), "No space left on device", "not written")
    assert snapshot(out) == before
    assert_no_temporary(out.parent, name)


def test_write_fit_that_fails_on_the_data_keeps_the_previous_netcdf(old_fit, tmp_path):
    out = previous_output(tmp_path, "fit.nc", old_fit, pd.DataFrame())
    before = snapshot(out)
    bad = old_fit.copy()
    bad["note"] = xr.DataArray(np.array([{"a": 1}, 2], dtype=object), dims="other")
    with pytest.raises((TypeError, ValueError)):
        write_fit(bad, out)
    assert snapshot(out) == before
    assert_no_temporary(out.parent, "fit.nc")
    xr.testing.assert_identical(xslide.io.open_fit(out), xslide.io.open_fit(out))


@pytest.mark.parametrize("name", ["fit.nc", "fit.zarr"])
def test_write_fit_interrupted_keeps_the_previous_fit_readable(
    name, rows, old_fit, tmp_path, monkeypatch
):
    if name.endswith(".zarr"):
        pytest.importorskip("zarr")
    out = previous_output(tmp_path, name, old_fit, rows)
    new = xslide.fit(rows, dims=["rBin", "zBin"], targets=["dX", "dY"], predictors=["qpt"])
    break_writer(monkeypatch, out.suffix, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        write_fit(new, out)
    monkeypatch.undo()
    assert_no_temporary(out.parent, name)
    reopened = xslide.io.open_fit(out)
    assert list(reopened.target.values) == ["dX"]  # the old fit, whole
    np.testing.assert_array_equal(reopened.coef.values, old_fit.coef.values)
    write_fit(new, out)  # and the next write goes through, replacing it
    assert list(xslide.io.open_fit(out).target.values) == ["dX", "dY"]
    assert_no_temporary(out.parent, name)


def test_replacing_a_zarr_store_leaves_only_the_new_store(rows, old_fit, tmp_path):
    pytest.importorskip("zarr")
    out = previous_output(tmp_path, "fit.zarr", old_fit, rows)
    (out / "stale_variable").mkdir()  # a variable of the old store the new one does not have
    (out / "stale_variable" / ".zarray").write_text("{}")
    new = xslide.fit(rows, dims=["rBin", "zBin"], targets=["dY"], predictors=["qpt"])
    assert write_fit(new, out) == out
    assert not (out / "stale_variable").exists()
    assert list(xslide.io.open_fit(out).target.values) == ["dY"]
    assert_no_temporary(out.parent, "fit.zarr")


def test_a_ctrl_c_during_the_store_swap_is_delivered_once_the_swap_is_done(
    rows, old_fit, tmp_path, monkeypatch
):
    pytest.importorskip("zarr")
    out = previous_output(tmp_path, "fit.zarr", old_fit, rows)
    new = xslide.fit(rows, dims=["rBin", "zBin"], targets=["dY"], predictors=["qpt"])
    rename = os.rename

    def interrupted_rename(source, destination):
        rename(source, destination)
        signal.raise_signal(signal.SIGINT)  # a real Ctrl-C, between the two renames

    monkeypatch.setattr(os, "rename", interrupted_rename)
    with pytest.raises(KeyboardInterrupt):
        write_fit(new, out)
    monkeypatch.undo()
    assert list(xslide.io.open_fit(out).target.values) == ["dY"]
    assert_no_temporary(out.parent, "fit.zarr")


@pytest.mark.parametrize("phase", ["reading", "fitting"])
def test_interrupt_while_reading_or_fitting_exits_130_and_keeps_the_previous_file(
    phase, rows, files, old_fit, tmp_path, capsys, monkeypatch
):
    out = previous_output(tmp_path, "fit.nc", old_fit, rows)
    before = snapshot(out)
    if phase == "reading":
        _fail_after(monkeypatch, pd.io.parsers.readers.TextFileReader, "__next__",
                    KeyboardInterrupt(), calls=1)  # fmt: skip
    else:
        _fail_after(monkeypatch, xslide, "fit", KeyboardInterrupt(), calls=0)
    code, _, err = run(capsys, "fit", files["csv"], *BASE, "--chunk-rows", 1000, "--out", out)
    assert code == 130 and err == "xslide: interrupted\n"
    assert snapshot(out) == before
    assert_no_temporary(out.parent, "fit.nc")


@pytest.mark.slow
@pytest.mark.needs_numba  # a new interpreter, which imports numba itself
@pytest.mark.parametrize("name", ["fit.nc", "fit.zarr"])
def test_a_real_ctrl_c_during_a_large_write_neither_hangs_nor_leaves_files(name, tmp_path):
    """A SIGINT while xarray writes: its global netCDF lock, left taken by the interrupt, made
    the closing of the file wait forever; zarr 3 went on writing in its own thread."""
    if name.endswith(".zarr"):
        pytest.importorskip("zarr")
    folder = tmp_path / "out"
    folder.mkdir()
    engine = "netcdf4" if name.endswith(".nc") else "zarr"
    script = textwrap.dedent(
        f"""
        import os, signal, threading, time
        from pathlib import Path
        import numpy as np, xarray as xr
        from xslide.io import write_fit

        out = Path({str(folder / name)!r})
        write_fit(xr.Dataset({{"old": ("x", np.arange(3.0))}}), out)
        big = xr.Dataset({{f"v{{i}}": ("x", np.random.rand(4_000_000)) for i in range(8)}})

        def writing():
            # a temporary appeared, or (written in place) the file or store changed
            if any(n.startswith(".") for n in os.listdir(out.parent)):
                return True
            return (out / "v0").exists() if out.is_dir() else out.stat().st_size > 100_000

        def interrupt_once_writing():
            while not writing():
                time.sleep(0.002)
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt_once_writing, daemon=True).start()
        try:
            write_fit(big, out)
            print("finished")
        except KeyboardInterrupt:
            print("interrupted")
        time.sleep(0.5)  # anything still writing in the background would show now
        print(sorted(os.listdir(out.parent)))
        print(list(xr.open_dataset(out, engine={engine!r})))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(xslide.__file__).parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:3] == ["interrupted", str([name]), "['old']"], done.stdout


# ---- a bad --out is refused before any row is read, exit 2, naming it ----


def test_out_in_a_missing_directory_is_refused_before_reading(tmp_path, capsys):
    out = tmp_path / "no" / "such" / "fit.nc"
    code, _, err = run(capsys, "fit", tmp_path / "missing.parquet", *BASE, "--out", out)
    assert code == 2  # not 1 for the missing input: --out is checked first
    assert_one_line_error(err, str(out), "does not exist")
    assert not (tmp_path / "no").exists()  # no directory created


def test_out_under_a_regular_file_is_refused(files, tmp_path, capsys):
    (tmp_path / "plain").write_text("a file")
    out = tmp_path / "plain" / "fit.nc"
    code, _, err = run(capsys, "fit", files["parquet"], *BASE, "--out", out)
    assert code == 2
    assert_one_line_error(err, str(out), "is not a directory")
    assert (tmp_path / "plain").read_text() == "a file"


def by_the_mode_bits(monkeypatch) -> None:
    """``os.access`` as for a user who is not root (root may write anywhere)."""
    access = os.access

    def access_by_mode(path, mode, **kwargs):
        if mode & os.W_OK and not os.stat(path).st_mode & 0o222:
            return False
        return access(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access_by_mode)


def test_out_in_a_read_only_directory_is_refused(files, tmp_path, capsys, monkeypatch):
    by_the_mode_bits(monkeypatch)
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, _, err = run(capsys, "fit", files["parquet"], *BASE, "--out", folder / "fit.nc")
    finally:
        folder.chmod(0o755)
    assert code == 2
    assert_one_line_error(err, str(folder / "fit.nc"), "not writable")
    assert_no_temporary(folder)


def test_a_read_only_out_is_not_replaced(files, tmp_path, capsys, monkeypatch):
    by_the_mode_bits(monkeypatch)
    out = tmp_path / "fit.nc"
    out.write_text("protected")
    out.chmod(0o444)
    code, _, err = run(capsys, "fit", files["parquet"], *BASE, "--out", out)
    assert code == 2
    assert_one_line_error(err, str(out), "read-only")
    assert out.read_text() == "protected"


def test_the_permissions_of_a_replaced_file_are_kept(rows, tmp_path):
    out = tmp_path / "rows.csv"
    out.write_text("old")
    out.chmod(0o640)
    write_rows(rows.iloc[:3], out)
    assert out.stat().st_mode & 0o777 == 0o640
    assert len(pd.read_csv(out)) == 3


def test_a_long_out_name_gets_a_temporary_the_file_system_takes(rows, tmp_path):
    out = tmp_path / f"{'r' * 240}.csv"
    write_rows(rows.iloc[:3], out)
    assert_no_temporary(tmp_path, out.name)


def test_a_directory_that_is_not_a_zarr_store_is_not_replaced(files, tmp_path, capsys):
    keep = tmp_path / "keep.zarr"
    (keep / "sub").mkdir(parents=True)
    (keep / "notes.txt").write_text("mine")
    (keep / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before = snapshot(keep)
    code, _, err = run(capsys, "fit", files["parquet"], *BASE, "--out", keep)
    assert code == 2
    assert_one_line_error(err, str(keep), "not a zarr store")
    assert snapshot(keep) == before
    assert_no_temporary(tmp_path, "keep.zarr")


def test_a_regular_file_is_not_replaced_by_a_zarr_store(files, tmp_path, capsys):
    out = tmp_path / "fit.zarr"
    out.write_text("not a store")
    code, _, err = run(capsys, "fit", files["parquet"], *BASE, "--out", out)
    assert code == 2
    assert_one_line_error(err, str(out), "is a file")
    assert out.read_text() == "not a store"


@pytest.mark.parametrize("command", ["fit.nc", "fit.parquet", "fit.root", "predict.csv"])
def test_a_directory_is_not_replaced_by_a_file(command, files, old_fit, tmp_path, capsys):
    out = tmp_path / f"out.{command.split('.')[1]}"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    if command.startswith("fit"):
        code, _, err = run(capsys, "fit", files["parquet"], *BASE, "--out", out)
    else:
        write_fit(old_fit, tmp_path / "model.nc")
        code, _, err = run(capsys, "predict", tmp_path / "model.nc", files["csv"], "--out", out)
    assert code == 2
    assert_one_line_error(err, str(out), "is a directory")
    assert (out / "keep.txt").read_text() == "mine"


def same_as(path: Path, how: str, tmp_path: Path) -> Path:
    """Another name of ``path``: itself, a roundabout spelling, a symlink or a hard link."""
    if how == "same":
        return path
    if how == "spelled":
        (tmp_path / "elsewhere").mkdir(exist_ok=True)
        return tmp_path / "elsewhere" / ".." / path.relative_to(tmp_path)
    link = tmp_path / f"link-{how}{path.suffix}"
    if how == "symlink":
        link.symlink_to(path)
    else:
        os.link(path, link)
    return link


@pytest.mark.parametrize("how", ["same", "spelled", "symlink", "hardlink"])
def test_out_that_is_the_input_is_refused(how, rows, tmp_path, capsys):
    rows_path = tmp_path / "rows.parquet"
    rows.to_parquet(rows_path)
    before = rows_path.read_bytes()
    out = same_as(rows_path, how, tmp_path)
    code, _, err = run(capsys, "fit", rows_path, *BASE, "--out", out)
    assert code == 2
    assert_one_line_error(err, str(out), "is the input")
    assert rows_path.read_bytes() == before


def test_out_that_is_a_root_input_is_refused(files, tmp_path, capsys):
    path = Path(files["root"].split(":")[0])
    before = path.read_bytes()
    code, _, err = run(capsys, "fit", files["root"], *BASE, "--out", path)
    assert code == 2
    assert_one_line_error(err, "is the input", files["root"])
    assert path.read_bytes() == before


def test_predict_out_that_is_an_input_is_refused(rows, old_fit, tmp_path, capsys):
    write_fit(old_fit, tmp_path / "fit.nc")
    rows_path = tmp_path / "rows.csv"
    rows.to_csv(rows_path, index=False)
    before = rows_path.read_bytes()
    code, _, err = run(capsys, "predict", tmp_path / "fit.nc", rows_path, "--out", rows_path)
    assert code == 2
    assert_one_line_error(err, str(rows_path), "is the input")
    assert rows_path.read_bytes() == before


def test_out_with_a_suffix_and_no_name_is_refused_before_reading(tmp_path, capsys):
    code, _, err = run(capsys, "fit", tmp_path / "missing.parquet", *BASE,
                       "--out", tmp_path / ".nc")  # fmt: skip
    assert code == 2
    assert_one_line_error(err, ".nc", "unknown fit output format")


def test_out_fit_nc_is_written_as_fit_nc(files, tmp_path, capsys):
    out = tmp_path / "d3.nc"
    code, stdout, _ = run(capsys, "fit", files["parquet"], *BASE, "--out", out)
    assert code == 0 and stdout.strip().endswith(f"wrote {out}")
    assert_no_temporary(tmp_path, "d3.nc")


def test_demo_out_with_the_nc_suffix_is_not_doubled(tmp_path, capsys, monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "demo", lambda args: seen.append(args.out) or 0)
    assert run(capsys, "demo", "--rows", 100, "--out", tmp_path / "d3.nc")[0] == 0
    assert run(capsys, "demo", "--rows", 100, "--out", tmp_path / "d4")[0] == 0
    assert seen == [str(tmp_path / "d3"), str(tmp_path / "d4")]


def test_demo_out_in_a_missing_directory_is_refused_before_fitting(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "demo", lambda args: pytest.fail("the demo ran"))
    code, _, err = run(capsys, "demo", "--rows", 100, "--out", tmp_path / "nodir" / "d3")
    assert code == 2
    assert_one_line_error(err, "nodir", "does not exist")


def test_library_writers_refuse_a_missing_directory_and_a_non_store(old_fit, rows, tmp_path):
    with pytest.raises(OutputPathError, match="does not exist"):
        write_fit(old_fit, tmp_path / "nodir" / "fit.nc")
    with pytest.raises(OutputPathError, match="does not exist"):
        write_rows(rows, tmp_path / "nodir" / "rows.csv")
    (tmp_path / "keep.zarr").mkdir()
    (tmp_path / "keep.zarr" / "notes.txt").write_text("mine")
    with pytest.raises(OutputPathError, match="not a zarr store"):
        write_fit(old_fit, tmp_path / "keep.zarr")
    assert (tmp_path / "keep.zarr" / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "nodir").exists()


def test_a_symlinked_out_replaces_the_file_it_points_to(rows, tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    write_rows(rows.iloc[:3], link)
    assert link.is_symlink()
    pd.testing.assert_frame_equal(pd.read_csv(real), rows.iloc[:3].reset_index(drop=True))
    assert_no_temporary(tmp_path, "real.csv", "link.csv")


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
