"""Streaming statistics: batch by batch, bounded memory, bit-identical to the in-memory pass."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import xslide
import xslide._numba
from xslide.bench import DIMS, SCENARIOS, make_rows
from xslide.options import ReadSpec

REFERENCE = {"x1": 0.1, "x2": -0.2, "y1": 0.3, "y2": 0.0}
ARGS = (list(DIMS[:3]), ["y1", "y2"], ["x1", "x2"])
SPEC = ReadSpec(tuple(DIMS[:3]), ("y1", "y2"), ("x1", "x2"))


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    df = make_rows(SCENARIOS["small"], seed=3)
    df.loc[[5, 17], "y1"] = np.nan
    df["w"] = np.random.default_rng(0).uniform(0.5, 2.0, len(df))
    df["good"] = df.x2 > -1.5
    return df


def batches(df: pd.DataFrame, size: int, order=None) -> list[pd.DataFrame]:
    starts = list(range(0, len(df), size))
    if order is not None:
        starts = [starts[i] for i in order]
    return [df.iloc[s : s + size] for s in starts]


def assert_same_stats(a, b, exact: bool) -> None:
    # bit-identical where the numba pass adds rows one by one, in order, into the same sums;
    # the numpy pass (no numba) adds each batch's np.bincount sums: equal to rounding
    exact = exact and xslide._numba.HAVE_NUMBA
    for name in a.data_vars:
        if exact:
            np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)
        else:
            np.testing.assert_allclose(
                a[name].values, b[name].values, rtol=1e-12, atol=1e-9, err_msg=name
            )


def test_streamed_batches_equal_the_in_memory_pass_bit_for_bit(rows):
    memory = xslide.bin_stats(rows, *ARGS, weights="w", reference=REFERENCE)
    streamed = xslide.bin_stats(iter(batches(rows, 3000)), *ARGS, weights="w", reference=REFERENCE)
    assert_same_stats(memory, streamed, exact=True)
    assert streamed.attrs["n_rows_input"] == len(rows)
    assert streamed.attrs["n_rows_invalid_y1"] == 2


def test_any_batch_order_gives_the_same_sums_to_rounding(rows):
    memory = xslide.bin_stats(rows, *ARGS, reference=REFERENCE)
    order = np.random.default_rng(1).permutation(7)
    shuffled = xslide.bin_stats(batches(rows, 3000, order), *ARGS, reference=REFERENCE)
    assert_same_stats(memory, shuffled, exact=False)


def test_parquet_and_record_batches(rows, tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), path, row_group_size=4000)
    memory = xslide.bin_stats(rows, *ARGS, reference=REFERENCE, selection=rows.good.to_numpy())
    from_file = xslide.bin_stats(str(path), *ARGS, reference=REFERENCE, selection="good")
    assert_same_stats(memory, from_file, exact=True)
    record_batches = pa.Table.from_pandas(rows, preserve_index=False).to_batches(5000)
    from_batches = xslide.bin_stats(record_batches, *ARGS, reference=REFERENCE, selection="good")
    assert_same_stats(memory, from_batches, exact=True)
    assert from_file.attrs["n_rows_not_selected"] == int((~rows.good).sum())


@pytest.mark.parametrize("name", ["rows.parq", "rows_without_suffix"])
def test_a_parquet_path_streams_whatever_its_suffix(rows, tmp_path, name):
    pytest.importorskip("pyarrow")
    path = tmp_path / name
    rows.to_parquet(path, engine="pyarrow")
    memory = xslide.bin_stats(rows, *ARGS, reference=REFERENCE)
    assert_same_stats(memory, xslide.bin_stats(path, *ARGS, reference=REFERENCE), exact=True)


def test_a_column_missing_from_a_parquet_path_is_named_with_its_role(rows, tmp_path):
    pytest.importorskip("pyarrow")
    path = tmp_path / "rows.parquet"
    rows.to_parquet(path, engine="pyarrow")
    with pytest.raises(KeyError, match="weights_column: column 'nope' not found"):
        xslide.bin_stats(path, *ARGS, weights="nope")


def test_the_grid_grows_when_a_batch_brings_new_bins(rows):
    ordered = rows.sort_values(list(DIMS[:3]), kind="stable")
    memory = xslide.bin_stats(ordered, *ARGS, reference=REFERENCE)
    streamed = xslide.bin_stats(batches(ordered, 2500), *ARGS, reference=REFERENCE)
    assert_same_stats(memory, streamed, exact=True)
    fixed = xslide.bin_stats(
        batches(ordered, 2500), *ARGS, reference=REFERENCE, extent={"xBin": (2, 5)}
    )
    assert fixed.xBin.values.tolist() == [2, 3, 4, 5]
    assert fixed.attrs["n_rows_outside_extent"] == int((~ordered.xBin.between(2, 5)).sum())


def test_fit_of_a_stream_equals_the_in_memory_fit_without_the_median(rows):
    window = {"xBin": 1, "zBin": 1}
    streamed = xslide.fit(batches(rows, 3000), *ARGS, window)
    memory = xslide.fit(rows, *ARGS, window, aggregation=["mean", "std", "entries"])
    assert "median" not in streamed
    for name in ("coef", "stderr", "mean", "std", "entries", "r_squared"):
        np.testing.assert_allclose(streamed[name], memory[name], rtol=1e-10, err_msg=name)
    with pytest.raises(ValueError, match="rows in memory"):
        xslide.fit(batches(rows, 3000), *ARGS, window, aggregation=["median"])
    with pytest.raises(ValueError, match="rows in memory"):
        xslide.fit(batches(rows, 3000), *ARGS, window, n_sigma_cut=3.0)


def test_bad_streams_are_refused(rows):
    with pytest.raises(TypeError, match="DataFrames or pyarrow"):
        xslide.bin_stats([rows.to_numpy()], *ARGS)
    with pytest.raises(TypeError, match="selection"):
        xslide.bin_stats(batches(rows, 5000), *ARGS, selection=rows.good.to_numpy())
    with pytest.raises(ValueError, match="no row"):
        xslide.bin_stats(batches(rows, 5000), *ARGS, extent={"xBin": (50, 60)})


# ---- references and bin centers across batches ----


def shifted_batches(seed: int = 0) -> list[pd.DataFrame]:
    """x has mean ~0 in the first batch and ~50 in the second: one shift cannot serve both."""
    rng = np.random.default_rng(seed)
    parts = []
    for center in (0.0, 50.0):
        n = 4000
        df = pd.DataFrame({"b": rng.integers(0, 4, n), "x": center + rng.normal(size=n)})
        df["y"] = 1.0 + 2.0 * df.x + rng.normal(0, 0.1, n)
        parts.append(df)
    return parts


def test_a_partial_reference_still_fixes_every_shift_after_the_first_batch():
    parts = shifted_batches()
    memory = xslide.fit(pd.concat(parts, ignore_index=True), ["b"], ["y"], ["x"], {})
    streamed = xslide.fit(parts, ["b"], ["y"], ["x"], {}, reference={"y": 0.0})
    np.testing.assert_allclose(streamed.coef.values, memory.coef.values, rtol=1e-9)


def test_streams_of_digitized_frames_keep_the_bin_centers():
    rng = np.random.default_rng(4)
    df = pd.DataFrame({"r": rng.uniform(0, 10, 6000), "x": rng.normal(size=6000)})
    df["y"] = df.r + df.x
    binned = xslide.digitize(df, {"r": (0, 10, 5)})
    parts = [binned.iloc[:3000], binned.iloc[3000:]]
    streamed = xslide.fit(parts, ["rBin"], ["y"], ["x"], {"rBin": 1})
    assert "r_center" in streamed.coords
    assert np.isfinite(streamed.slidewin.predict(df.iloc[:5]).y_pred).all()


# ---- parquet files: the grid and each row group's bins from the file's statistics ----


@pytest.fixture(scope="module")
def sorted_file(tmp_path_factory):
    """210k rows in bin order (a bin's rows in row order), some without a bin, in row groups
    of 30k rows: the parallel passes run, and row groups cover few bins each."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    df = make_rows(SCENARIOS["medium"], seed=5, scale=0.07)
    df = df.sort_values(list(DIMS[:3]), kind="stable", ignore_index=True)
    df["y1"] = df.y1.where(df.index % 997 != 0)  # a few invalid rows
    table = pa.Table.from_pandas(df, preserve_index=False)
    missing = np.zeros(len(df), dtype=bool)
    missing[::1013] = True
    table = table.set_column(1, "yBin", pa.array(df.yBin.to_numpy(), mask=missing))
    path = tmp_path_factory.mktemp("sorted") / "sorted.parquet"
    pq.write_table(table, path, row_group_size=30_000)
    frame = table.to_pandas()
    frame["yBin"] = frame.yBin.astype("Int64")
    return path, frame


@pytest.mark.parametrize("batch_bytes", [64 << 20, 8 << 20, 1 << 20])
def test_a_parquet_file_in_bin_order_streams_bit_for_bit(sorted_file, monkeypatch, batch_bytes):
    from xslide import sources

    path, frame = sorted_file
    monkeypatch.setattr(sources, "_BATCH_BYTES", batch_bytes)  # batches across row groups
    plan = sources._plan(str(path), dataclasses.replace(SPEC, dims=tuple(DIMS[:3])))
    assert plan.grid is not None and len(plan.boxes) == 7
    parts = []

    def spy(flat, design, n_bins, *args):
        parts.append(n_bins)
        return accumulate(flat, design, n_bins, *args)

    accumulate = sources.accumulate
    monkeypatch.setattr(sources, "accumulate", spy)
    memory = xslide.bin_stats(frame, *ARGS, reference=REFERENCE)
    streamed = xslide.bin_stats(str(path), *ARGS, reference=REFERENCE)
    assert_same_stats(memory, streamed, exact=True)
    if batch_bytes < 64 << 20:  # each batch is summed into the bins of its row groups only
        assert len(parts) > 2 and max(parts[1:]) < plan.grid.size  # parts[0]: in memory
    for key in ("n_rows_input", "n_rows_without_bin", "n_rows_invalid_y1"):
        assert streamed.attrs[key] == memory.attrs[key] > 0
    extent = {"xBin": (3, 20), "yBin": (-2, 12), "zBin": (0, 40)}
    memory = xslide.bin_stats(frame, *ARGS, reference=REFERENCE, extent=extent)
    streamed = xslide.bin_stats(str(path), *ARGS, reference=REFERENCE, extent=extent)
    assert_same_stats(memory, streamed, exact=True)
    assert streamed.attrs["n_rows_outside_extent"] == memory.attrs["n_rows_outside_extent"] > 0


@pytest.mark.parametrize("wrong", ["boxes", "grid", "loose"])
def test_wrong_row_group_statistics_never_change_the_result(sorted_file, monkeypatch, wrong):
    from xslide import sources

    path, frame = sorted_file
    real = sources._row_group_boxes

    def shrunk(source, dims):  # every row group claims the first bins only
        starts, boxes = real(source, dims)
        if wrong == "grid":
            return starts, [((0, 0, 0), (1, 1, 1))] * len(boxes)
        if wrong == "loose":  # a wider grid than the rows': cropped to theirs
            return starts, [((-2, 0, -1), (b[1][0], b[1][1] + 3, b[1][2])) for b in boxes]
        return starts, [(b[0], b[0]) for b in boxes]

    monkeypatch.setattr(sources, "_row_group_boxes", shrunk)
    monkeypatch.setattr(sources, "_BATCH_BYTES", 1 << 20)
    memory = xslide.bin_stats(frame, *ARGS, reference=REFERENCE)
    streamed = xslide.bin_stats(str(path), *ARGS, reference=REFERENCE)
    assert_same_stats(memory, streamed, exact=True)
    assert streamed.attrs["n_rows_outside_extent"] == 0


def test_a_failing_batch_stops_the_reader_thread(sorted_file, tmp_path, monkeypatch):
    import threading

    from xslide import sources

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    _, frame = sorted_file
    frame = frame.assign(w=1.0)
    frame.loc[150_000, "w"] = -1.0
    path = tmp_path / "negative.parquet"
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path, row_group_size=30_000)
    monkeypatch.setattr(sources, "_BATCH_BYTES", 1 << 20)
    with pytest.raises(ValueError, match="negative weights"):
        xslide.bin_stats(str(path), *ARGS, weights="w")
    assert not [t for t in threading.enumerate() if t.name == "xslide-read-ahead"]
    items = sources.read_ahead(iter([1, 2, 3]))
    assert next(items) == 1
    items.close()  # the caller stops early: the reader stops too
    assert not [t for t in threading.enumerate() if t.name == "xslide-read-ahead"]

    def failing():
        yield 1
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        list(sources.read_ahead(failing()))


def test_row_groups_without_bins_are_counted_once(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    df = make_rows(SCENARIOS["small"], seed=6)
    table = pa.Table.from_pandas(df, preserve_index=False)
    missing = np.arange(len(df)) < 5000  # the first row group: no row has every bin
    table = table.set_column(0, "xBin", pa.array(df.xBin.to_numpy(), mask=missing))
    path = tmp_path / "holes.parquet"
    pq.write_table(table, path, row_group_size=5000)
    frame = table.to_pandas()
    frame["xBin"] = frame.xBin.astype("Int64")
    memory = xslide.bin_stats(frame, *ARGS, reference=REFERENCE)
    for batch_bytes in (1 << 20, 5000 * 8 * 7):  # one batch, or one per row group
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr("xslide.sources._BATCH_BYTES", batch_bytes)
            streamed = xslide.bin_stats(str(path), *ARGS, reference=REFERENCE)
        assert_same_stats(memory, streamed, exact=True)
        assert streamed.attrs["n_rows_without_bin"] == 5000
        assert streamed.attrs["n_rows_input"] == len(df)
