"""Readers: rows in memory, streamed batch by batch, or on dask workers -> ``BinStats``.

Every reader takes the data and one ``ReadSpec`` and returns the additive per-bin statistics.

- **memory** (DataFrame, Dataset of rows, dict of arrays): one pass; the rows stay reachable
  through a ``RowAccess`` for the raw-row paths (median, n_sigma_cut, glm/rlm, callables).
- **stream** (a parquet path, or an iterable of DataFrames / ``pyarrow.RecordBatch``es): every
  batch is binned on the grid known so far (the grid grows when a batch brings new bins, unless
  ``extent`` fixes it) and summed into the same statistics, so each bin's rows are summed in row
  order as in one pass over all rows: bit-identical to the in-memory pass with the same
  reference (numba backend; the numpy backend is equal to rounding), which the first batch
  fixes unless given. A parquet file's statistics give the grid before any row is read (the
  union of its row groups' bin ranges, when nothing else decides it) and the bins of each
  batch, summed into that part of the statistics only; a reader thread decodes the next batch
  while the row pass sums the current one. Memory is bounded by the grid and three batches. A
  progress bar counts the rows read.
- **dask** (a dask DataFrame or a dask-backed Dataset of rows): one dask pass computes the
  extents and the references (unless given); every partition is then streamed on its worker on
  that fixed grid, and the partial statistics are added pairwise up a tree.
- **stats**: a statistics Dataset made by ``bin_stats`` is unpacked, no row is read.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import queue
import threading
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from . import budget
from ._optional import require
from .binning import binning_of, units_of
from .design import HUGE, Design, RowTable, build_design, read_only, reference_of, weights_scale
from .errors import EmptyGridError, InvalidInputTypeError, MissingColumnError, TooLargeError
from .formula import INTERCEPT
from .grid import DEFAULT_MAX_BINS, Grid, box_flat_ids, build_grid, grid_strides, read_bins
from .io import available_columns, count_rows, iter_batches, parse_source
from .options import Input, ReadSpec
from .parallel import may_show, progress_bar
from .result import dataset_to_stats, is_stats_dataset
from .rows import RowAccess
from .stats import BinStats, accumulate, n_stats


def is_stream(data) -> bool:
    """A parquet path or an iterable of batches (not a table, a Dataset or a dict)."""
    if isinstance(data, str | Path):
        return True
    if isinstance(data, pd.DataFrame | xr.Dataset | Mapping | np.ndarray):
        return False
    if type(data).__module__.startswith("dask"):  # dask collections have their own path
        return False
    return isinstance(data, Iterable)


def is_dask_dataframe(data) -> bool:
    """A dask DataFrame (checked without importing dask)."""
    return type(data).__module__.startswith("dask") and hasattr(data, "npartitions")


def is_dask_dataset(data) -> bool:
    """An xarray Dataset of rows whose variables are dask arrays."""
    return isinstance(data, xr.Dataset) and any(
        v.chunks is not None for v in data.data_vars.values()
    )


def describe(data) -> Input:
    """What kind of data this is, and what the options can know of it before reading rows."""
    if is_stats_dataset(data):
        weights = str(data.attrs.get("weights_column", "")) or None
        dims = tuple(str(d) for d in data["rows"].dims)
        targets = tuple(map(str, data["target"].values))
        return Input("stats", None, dims, targets, weights, units_of(data))
    if is_dask_dataframe(data) or is_dask_dataset(data):
        return Input("dask", units=units_of(data))
    if is_stream(data):
        return Input("stream")
    return Input("memory", tuple(RowTable(data).names), units=units_of(data))


def read(data, spec: ReadSpec) -> tuple[BinStats, RowAccess | None]:
    """Reduce ``data`` to per-bin statistics; the row access only for rows in memory."""
    if is_stats_dataset(data):
        return dataset_to_stats(data), None
    if is_dask_dataframe(data):
        return _read_dask(data, spec), None
    if is_dask_dataset(data):  # a dask-backed Dataset of rows: its partitions, on the workers
        return _read_dask(data.to_dask_dataframe(), spec), None
    if is_stream(data):
        return _read_stream(data, spec), None
    return _read_memory(data, spec)


def selection_mask(selection, table: RowTable) -> np.ndarray | None:
    """``selection`` as a positional boolean mask of the table's rows (None: every row).

    A column name (a boolean column of the data), a boolean Series aligned on the index, a
    boolean DataArray along the row dim, or a boolean array of one entry per row.
    """
    if selection is None:
        return None
    if isinstance(selection, str):
        column = table.column(selection, "selection")
        if not pd.api.types.is_bool_dtype(column.dtype):
            raise InvalidInputTypeError(
                f"selection column {selection!r} must be boolean, got {column.dtype}"
            )
        if column.hasnans:
            raise ValueError(f"selection column {selection!r} has missing values; use True/False")
        return column.to_numpy(dtype=bool)
    if isinstance(selection, xr.DataArray):
        if selection.ndim != 1:
            raise ValueError(f"selection must be one-dimensional, got dims {selection.dims}")
        selection = selection.to_series()  # labelled: aligned on the row coordinate below
    if isinstance(selection, pd.Series):
        return _series_mask(selection, table)
    arr = np.asarray(getattr(selection, "values", selection))
    if arr.dtype != np.bool_:
        raise InvalidInputTypeError(
            f"selection must be a boolean Series or boolean array, got dtype {arr.dtype}"
        )
    if arr.ndim != 1 or arr.shape[0] != table.n_rows:
        raise ValueError(
            f"selection must have one entry per row: got shape {arr.shape}, data has "
            f"{table.n_rows} rows"
        )
    return arr


def _series_mask(selection: pd.Series, table: RowTable) -> np.ndarray:
    """A boolean Series aligned on the table's index, as a positional mask."""
    if not pd.api.types.is_bool_dtype(selection.dtype):
        raise InvalidInputTypeError(
            f"selection must be boolean, got a Series of dtype {selection.dtype}"
        )
    index, n_rows = table.index, table.n_rows
    if index is not None and not selection.index.equals(index):
        aligned = (
            len(selection) == n_rows
            and index.is_unique
            and selection.index.is_unique
            and selection.index.isin(index).all()
        )
        if not aligned:
            raise ValueError(
                "selection Series must be aligned with the data: its index does not match "
                f"the data's index ({len(selection)} entries vs {n_rows} rows)"
            )
        selection = selection.reindex(index)
    elif len(selection) != n_rows:
        raise ValueError(f"selection has {len(selection)} entries, the data {n_rows} rows")
    if selection.hasnans:
        raise ValueError("selection has missing values; use True/False for every row")
    return selection.to_numpy(dtype=bool)


def check_stats_memory(grid: Grid, design: Design, spec: ReadSpec) -> None:
    """Refuse per-bin statistics larger than ``max_memory`` before they are allocated."""
    n_sums = n_stats(len(design.xs) + 1)
    n_bytes = budget.size(grid.size, len(spec.targets), n_sums, budget.FLOAT)
    shape = dict(zip(grid.dims, grid.shape, strict=True))
    budget.check(
        n_bytes,
        f"the per-bin statistics (grid {shape}, {len(spec.targets)} targets x {n_sums} sums)",
        spec.max_memory,
        "restrict the grid with extent=, use coarser bins, or fewer predictors or targets",
    )


# ---- rows in memory ----


def _read_memory(data, spec: ReadSpec) -> tuple[BinStats, RowAccess]:
    """One pass over the rows: validate bins, build the grid and accumulate statistics."""
    table = RowTable(data)
    bins, missing = read_bins(table, spec.dims)
    selected = selection_mask(spec.selection, table)
    grid, flat, counts = build_grid(
        bins, selected, spec.extent, spec.max_bins, missing, spec.max_memory
    )
    design = build_design(table, spec, flat)
    check_stats_memory(grid, design, spec)
    sums, invalid, rows_per_bin = accumulate(flat, design, grid.size, spec.backend)
    counts = {
        "n_rows_input": table.n_rows,
        **counts,
        "n_rows_invalid": dict(zip(spec.targets, map(int, invalid), strict=True)),
    }
    stats = _bin_stats(grid, design, sums, rows_per_bin, counts, spec, binning_of(data, spec.dims))
    return stats, RowAccess(flat, design, grid.size, spec.backend)


def _bin_stats(grid, design: Design, sums, rows, counts, spec: ReadSpec, binning) -> BinStats:
    return BinStats(
        grid,
        design.columns,
        design.targets,
        sums,
        rows,
        design.x_ref,
        design.y_ref,
        counts,
        spec.backend,
        spec.weights,
        intercept=design.intercept,
        binning=binning or {},
        weights_scale=design.weights_scale,
    )


# ---- streams ----


def _columns_of(batch) -> dict:
    """A pyarrow batch as numpy columns (no copy where arrow allows it); columns with nulls
    become pandas Series so that integer bins keep a nullable integer dtype."""
    out = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if column.null_count and column.type.id in _ARROW_INTEGERS:
            # arrow would make floats of them: keep integers, nulls as <NA> (no bin)
            values = column.fill_null(0).to_numpy(zero_copy_only=False)
            missing = column.is_null().to_numpy(zero_copy_only=False)
            out[name] = pd.Series(pd.arrays.IntegerArray(values, missing))
        elif column.null_count:
            out[name] = column.to_pandas()
        else:  # a Series on the array itself (pandas would copy a bare array)
            out[name] = pd.Series(column.to_numpy(zero_copy_only=False), copy=False)
    return out


def _arrow_integer_ids() -> frozenset:
    """Arrow's integer type ids (pyarrow is imported only where batches come from it)."""
    try:
        import pyarrow as pa
    except ImportError:
        return frozenset()
    types = (pa.int8(), pa.int16(), pa.int32(), pa.int64(),
             pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64())  # fmt: skip
    return frozenset(t.id for t in types)


_ARROW_INTEGERS = _arrow_integer_ids()


def _batches(source, spec: ReadSpec, plan: _Plan) -> Iterator[tuple[object, tuple | None]]:
    """The batches of a stream as tables ``RowTable`` reads, each with the box of bins its
    rows lie in (from a parquet file's row-group statistics; None: anywhere on the grid)."""
    if isinstance(source, str | Path):
        path = parse_source(source, default="parquet")  # no suffix: parquet, as ever
        yield from read_ahead(_file_batches(path, _columns_to_read(path, spec), plan))
        return
    for batch in source:
        if isinstance(batch, pd.DataFrame):
            yield batch, None
        elif hasattr(batch, "columns") and hasattr(batch, "schema"):  # pyarrow batch/table
            yield _columns_of(batch), None
        else:
            raise InvalidInputTypeError(
                "a stream must yield pandas DataFrames or pyarrow RecordBatches, "
                f"got {type(batch).__name__}"
            )


def _columns_to_read(path, spec: ReadSpec) -> list[str] | None:
    """The columns of a file a stream reads (all of them for a formula: it may use any)."""
    if spec.formula is not None:
        return None
    columns = [*spec.dims, *spec.targets, *spec.predictors]
    columns += [c for c in (spec.weights, spec.selection) if isinstance(c, str)]
    # a missing column is refused by the table, naming its role (e.g. weights_column)
    known = set(available_columns(path))
    return [c for c in dict.fromkeys(columns) if c in known]


# decoded bytes of one batch read from a file: large batches spare per-batch work, and the
# read-ahead keeps at most three alive
_BATCH_BYTES = 32 << 20


def batch_rows(n_columns: int) -> int:
    """Rows of the batches a stream reads from a file of ``n_columns`` columns to read."""
    return max(1, min(_BATCH_BYTES // (8 * max(n_columns, 1)), 1 << 20))


def _file_batches(path, columns: list[str] | None, plan: _Plan) -> Iterator:
    """A file's batches with their row group's box (``_batches``)."""
    width = len(columns) if columns is not None else len(available_columns(path))
    rows = batch_rows(width)
    first = 0
    # pre_buffer is off there: reading ahead would keep column chunks alive
    for batch in iter_batches(path, columns, rows, arrow=True):
        box = _box_of_rows(plan, first, first + len(batch)) if plan.boxes else None
        first += len(batch)
        yield (batch if isinstance(batch, pd.DataFrame) else _columns_of(batch)), box


def _box_of_rows(plan: _Plan, start: int, stop: int) -> tuple | None:
    """The union of the boxes of the row groups that rows start .. stop - 1 belong to (a
    batch may span row groups); None: anywhere on the grid."""
    first = bisect.bisect_right(plan.starts, start) - 1
    last = bisect.bisect_right(plan.starts, max(start, stop - 1)) - 1
    boxes = [b for b in plan.boxes[first : last + 1] if b is not None]
    if not boxes:  # no row of these groups is on the grid: any box will do
        return None
    lo = tuple(map(min, *(b[0] for b in boxes))) if len(boxes) > 1 else boxes[0][0]
    hi = tuple(map(max, *(b[1] for b in boxes))) if len(boxes) > 1 else boxes[0][1]
    return lo, hi


class _Failed(NamedTuple):
    error: BaseException


_DONE = object()


def read_ahead(items: Iterator, depth: int = 1) -> Iterator:
    """The items of ``items``, made by a reader thread while the caller works on the one
    before: pyarrow decodes without the GIL, so reading overlaps the row pass. At most
    ``depth`` items wait; the reader's errors are raised here, and it stops when the caller
    does."""
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def read() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as err:  # raised again in the caller's thread
            put(_Failed(err))
        finally:
            getattr(items, "close", lambda: None)()  # the file, closed by its reader

    reader = threading.Thread(target=read, name="xslide-read-ahead", daemon=True)
    reader.start()
    try:
        while (item := waiting.get()) is not _DONE:
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        reader.join()


class _Plan(NamedTuple):
    """What a stream knows of its grid before reading a row."""

    grid: Grid | None  # the grid, when fixed (else it grows with the batches)
    from_extent: bool = False  # fixed by extent (rows outside are dropped, not binned)
    starts: tuple[int, ...] = ()  # a parquet file's first row of every row group
    boxes: tuple = ()  # per row group, (lo, hi) of its bins on the grid (None: no row on it)


def _plan(source, spec: ReadSpec) -> _Plan:
    """The grid ``extent`` fixes in every dim, else the one a parquet file's statistics give
    (the union of its row groups' bin ranges: the grid the batches would grow to), and the
    box of every row group; ``_Plan(None)`` where neither is known."""
    extent = spec.extent or {}
    grid = None
    if all(d in extent for d in spec.dims):
        lo = tuple(extent[d][0] for d in spec.dims)
        shape = tuple(extent[d][1] - extent[d][0] + 1 for d in spec.dims)
        grid = Grid(tuple(spec.dims), lo, shape)
        if grid.size > spec.max_bins or not spec.dims:  # refused as ever, batch by batch
            return _Plan(None)
    elif extent or spec.selection is not None:  # the rows kept decide the grid
        return _Plan(None)
    if not isinstance(source, str | Path):
        return _Plan(grid, grid is not None)
    path = parse_source(source, default="parquet")
    boxes = _row_group_boxes(path, spec.dims) if path.kind == "parquet" else None
    if boxes is None:
        return _Plan(grid, grid is not None)
    starts, boxes = boxes
    if grid is None:
        known = [b for b in boxes if b is not None]
        if not known or not spec.dims:
            return _Plan(None)
        lo = tuple(min(b[0][k] for b in known) for k in range(len(spec.dims)))
        hi = tuple(max(b[1][k] for b in known) for k in range(len(spec.dims)))
        grid = Grid(tuple(spec.dims), lo, tuple(h - low + 1 for low, h in zip(lo, hi, strict=True)))
        if grid.size > spec.max_bins:  # the stream refuses it as ever
            return _Plan(None)
        return _Plan(grid, False, starts, tuple(boxes))
    return _Plan(grid, True, starts, tuple(b and _clip(b, grid) for b in boxes))


def _clip(box, grid: Grid):
    """A row group's box inside the grid (None: they do not meet)."""
    lo = tuple(max(a, b) for a, b in zip(box[0], grid.lo, strict=True))
    hi = tuple(min(a, b) for a, b in zip(box[1], grid.hi, strict=True))
    return (lo, hi) if all(a <= b for a, b in zip(lo, hi, strict=True)) else None


def _row_group_boxes(source, dims) -> tuple[tuple[int, ...], list] | None:
    """The first row and the (lo, hi) bins of every row group of a parquet file, from its
    statistics; None when a dim is not a signed integer column with min/max in every row group
    (row groups without rows or with every bin missing have no box)."""
    pq = require("pyarrow.parquet", "reading parquet files")
    pa = require("pyarrow", "reading parquet files")
    try:
        file = pq.ParquetFile(source.path)
        meta, schema = file.metadata, file.schema_arrow
    except Exception:  # the reading itself reports the file's problems
        return None
    if meta.num_row_groups == 0 or any(
        d not in schema.names or not pa.types.is_signed_integer(schema.field(d).type) for d in dims
    ):
        return None
    group = meta.row_group(0)
    position = {group.column(j).path_in_schema: j for j in range(group.num_columns)}
    if any(d not in position for d in dims):
        return None
    starts, boxes, first = [], [], 0
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        starts.append(first)
        first += group.num_rows
        found = [group.column(position[d]).statistics for d in dims]
        if any(s is None for s in found):
            return None
        if any(not s.has_min_max for s in found):
            if not any(s.null_count == group.num_rows for s in found):
                return None  # no statistics: the bins could be anywhere
            boxes.append(None)  # no row with every bin
            continue
        boxes.append((tuple(int(s.min) for s in found), tuple(int(s.max) for s in found)))
    return tuple(starts), boxes


def _grow(stats: BinStats, new: Grid) -> BinStats:
    """Place the statistics inside the larger grid ``new``."""
    old = stats.grid
    sums = np.zeros((*new.shape, *stats.sums.shape[1:]))
    rows = np.zeros(new.shape, dtype=stats.rows_per_bin.dtype)
    where = tuple(
        slice(lo - new_lo, lo - new_lo + n)
        for lo, n, new_lo in zip(old.lo, old.shape, new.lo, strict=True)
    )
    sums[where] = stats.sums.reshape((*old.shape, *stats.sums.shape[1:]))
    rows[where] = stats.rows_per_bin.reshape(old.shape)
    return dataclasses.replace(
        stats,
        grid=new,
        sums=sums.reshape(new.size, *stats.sums.shape[1:]),
        rows_per_bin=rows.reshape(-1),
    )


def _cropped(stats: BinStats) -> BinStats:
    """The statistics on the smallest grid that holds every bin with rows: the grid the
    batches would have grown to."""
    old = stats.grid
    rows = stats.rows_per_bin.reshape(old.shape)
    where = []
    for axis in range(len(old.shape)):
        used = np.flatnonzero(rows.any(axis=tuple(a for a in range(rows.ndim) if a != axis)))
        where.append(slice(int(used[0]), int(used[-1]) + 1))
    shape = tuple(w.stop - w.start for w in where)
    if shape == old.shape:
        return stats
    lo = tuple(low + w.start for low, w in zip(old.lo, where, strict=True))
    sums = stats.sums.reshape((*old.shape, *stats.sums.shape[1:]))[tuple(where)]
    return dataclasses.replace(
        stats,
        grid=Grid(old.dims, lo, shape),
        sums=np.ascontiguousarray(sums).reshape(math.prod(shape), *stats.sums.shape[1:]),
        rows_per_bin=np.ascontiguousarray(rows[tuple(where)]).reshape(-1),
    )


def _union(a: Grid, b: Grid) -> Grid:
    lo = tuple(min(x, y) for x, y in zip(a.lo, b.lo, strict=True))
    hi = tuple(max(x, y) for x, y in zip(a.hi, b.hi, strict=True))
    return Grid(a.dims, lo, tuple(h - low + 1 for low, h in zip(lo, hi, strict=True)))


def _counts_without_grid(selected, missing, n_rows: int) -> dict[str, int]:
    """Row counts of a batch none of whose rows falls on the grid."""
    chosen = np.ones(n_rows, dtype=bool) if selected is None else selected
    without_bin = 0 if missing is None else int((chosen & missing).sum())
    not_selected = int(n_rows - chosen.sum())
    return {
        "n_rows_not_selected": not_selected,
        "n_rows_without_bin": without_bin,
        "n_rows_outside_extent": n_rows - not_selected - without_bin,
    }


class _Stream:
    """The running state of a stream: the grid so far, its statistics and the row counts."""

    def __init__(self, spec: ReadSpec, plan: _Plan | None = None) -> None:
        self.spec = spec
        self.plan = plan or _Plan(None)
        # a grid from a file's statistics may be loose: cropped to the bins with rows at the end
        self.crop = self.plan.grid is not None and not self.plan.from_extent
        self.reference = dict(spec.reference or {})
        self.weights_scale = spec.weights_scale
        self.stats: BinStats | None = None
        self.counts = dict.fromkeys(
            ("n_rows_input", "n_rows_not_selected", "n_rows_without_bin", "n_rows_outside_extent"),
            0,
        )
        self.invalid = np.zeros(len(spec.targets), dtype=np.int64)

    def add(self, batch, box: tuple | None = None) -> None:
        """Bin one batch on the grid (grown to hold it) and add its rows' statistics.

        ``box`` bounds the bins of the batch's rows (a parquet row group's statistics): on a
        fixed grid they are summed into that part of the statistics only, so the row pass
        scans the batch for far fewer bin ranges when the file is ordered by bin.
        """
        spec, table = self.spec, RowTable(batch)
        bins, missing = read_bins(table, spec.dims)
        selected = selection_mask(spec.selection, table)
        self.counts["n_rows_input"] += table.n_rows
        placed = None
        if self.plan.grid is not None:
            placed = self._on_fixed_grid(bins, selected, missing, box)
        if self.plan.grid is None:  # no plan, or the file's statistics were wrong
            placed = self._on_grown_grid(bins, selected, missing)
        if placed is None:  # nothing of this batch falls on the grid
            return
        grid, flat, part = placed
        design = build_design(table, dataclasses.replace(spec, reference=self.reference), flat)
        design = self._common_weights_scale(design)
        names = [*design.columns[1:], *design.targets]
        # the first batch with a finite value of a column fixes its reference for every later
        # batch (a batch without one has no valid row of it: its shift is immaterial)
        found = dict(zip(names, [*design.x_ref, *design.y_ref], strict=True))
        found = {k: v for k, v in found.items() if k not in design.undetermined}
        self.reference = {**found, **self.reference}
        check_stats_memory(grid, design, spec)
        if self.stats is None:
            sums = np.zeros((grid.size, len(spec.targets), n_stats(len(design.xs) + 1)))
            rows = np.zeros(grid.size, dtype=np.int64)
            self.stats = _bin_stats(
                grid, design, sums, rows, {}, spec, binning_of(batch, spec.dims)
            )
        sums, rows = self.stats.sums[part], self.stats.rows_per_bin[part]
        _, invalid, _ = accumulate(flat, design, len(rows), spec.backend, sums, rows)
        self.invalid += invalid

    def _on_grown_grid(self, bins, selected, missing):
        """The grid grown to hold the batch's bins, the batch's flat ids on it and the part
        of the grid they index (all of it); None, rows counted, when none is on the grid."""
        spec = self.spec
        try:
            batch_grid, _, counts = build_grid(
                bins, selected, spec.extent, spec.max_bins, missing, spec.max_memory
            )
        except EmptyGridError:
            n_rows = len(next(iter(bins.values())))
            for key, value in _counts_without_grid(selected, missing, n_rows).items():
                self.counts[key] += value
            return None
        for key, value in counts.items():
            self.counts[key] += value
        grid = self._grid_for(batch_grid)
        fixed = dict(zip(grid.dims, zip(grid.lo, grid.hi, strict=True), strict=True))
        _, flat, _ = build_grid(bins, selected, fixed, spec.max_bins, missing, spec.max_memory)
        return grid, flat, slice(0, grid.size)

    def _on_fixed_grid(self, bins, selected, missing, box):
        """On the planned grid: the batch's flat ids relative to the first bin of its box and
        the part of the grid they index; None, rows counted, when none is on the grid. A row
        outside a grid that the file's statistics promised would hold it drops the plan
        (None, nothing counted): the grid grows from this batch on."""
        grid = self.plan.grid
        n_rows = len(next(iter(bins.values())))
        keep = (
            selected if missing is None else ~missing if selected is None else selected & ~missing
        )
        n_not_selected = 0 if selected is None else n_rows - int(np.count_nonzero(selected))
        n_without_bin = (
            0 if missing is None else n_rows - n_not_selected - int(np.count_nonzero(keep))
        )
        strides = grid_strides(grid.shape)
        # a row outside the box is looked for on the whole grid (statistics are trusted to
        # save time, never to drop a row)
        for lo, hi in (box, (grid.lo, grid.hi)) if box else ((grid.lo, grid.hi),):
            shape = tuple(h - low + 1 for low, h in zip(lo, hi, strict=True))
            flat = box_flat_ids(bins, keep, lo, shape, strides)
            left_out = int(np.count_nonzero(flat < 0))
            n_outside = left_out - n_not_selected - n_without_bin
            if not n_outside:
                break
        if n_outside and not self.plan.from_extent:  # the file's statistics were wrong
            self.plan = _Plan(None)
            return None
        self.counts["n_rows_not_selected"] += n_not_selected
        self.counts["n_rows_without_bin"] += n_without_bin
        self.counts["n_rows_outside_extent"] += n_outside
        if left_out == n_rows and not self.plan.from_extent:
            return None  # as a grown grid would: no statistics for a batch without bins
        first = sum((low - g) * int(s) for low, g, s in zip(lo, grid.lo, strides, strict=True))
        span = sum((n - 1) * int(s) for n, s in zip(shape, strides, strict=True)) + 1
        return grid, flat, slice(first, first + span)

    def _common_weights_scale(self, design: Design) -> Design:
        """One weights scale for all batches: the smallest any batch needed (the statistics so
        far rescaled to it; exact, powers of two), unless the spec fixes it."""
        own = design.weights_scale
        scale = own if self.weights_scale is None else min(self.weights_scale, own)
        if self.stats is not None and scale != self.stats.weights_scale:
            self.stats = self.stats.rescaled(scale)
        self.weights_scale = scale
        if own == scale or design.w is None:
            return design
        w = read_only(design.w * (scale / own))
        return dataclasses.replace(design, w=w, weights_scale=scale)

    def _grid_for(self, batch_grid: Grid) -> Grid:
        """The grid so far grown to hold ``batch_grid`` (its statistics moved along)."""
        if self.stats is None:
            return batch_grid
        grid = _union(self.stats.grid, batch_grid)
        if grid.size > self.spec.max_bins:
            raise ValueError(
                f"the streamed grid grew to {grid.size:,} bins, more than "
                f"max_bins={self.spec.max_bins:,}; fix it with extent="
            )
        if grid != self.stats.grid:
            self.stats = _grow(self.stats, grid)
        return grid

    def result(self) -> BinStats:
        invalid = dict(zip(self.spec.targets, map(int, self.invalid), strict=True))
        if self.stats is None:  # no row on the grid: the all-empty grid, when extent gives one
            return _empty_stats(self.spec, {**self.counts, "n_rows_invalid": invalid})
        stats = self.stats
        if self.crop:
            stats = _cropped(stats)
        # a reference fixed after the first batch (none of its values was finite) is the one
        # every sum of that column was taken with
        x_ref = [
            self.reference.get(c, r) for c, r in zip(stats.columns[1:], stats.x_ref, strict=True)
        ]
        y_ref = [self.reference.get(t, r) for t, r in zip(stats.targets, stats.y_ref, strict=True)]
        return dataclasses.replace(
            stats,
            counts={**self.counts, "n_rows_invalid": invalid},
            x_ref=np.asarray(x_ref, dtype=np.float64),
            y_ref=np.asarray(y_ref, dtype=np.float64),
        )


def _empty_stats(spec: ReadSpec, counts: dict) -> BinStats:
    """The statistics of no row on the grid ``extent`` fixes in every dim (else no grid)."""
    extent = spec.extent or {}
    if spec.formula is not None or any(d not in extent for d in spec.dims):
        raise EmptyGridError("the stream holds no row inside the grid (after selection/extent)")
    lo = tuple(extent[d][0] for d in spec.dims)
    grid = Grid(tuple(spec.dims), lo, tuple(extent[d][1] - extent[d][0] + 1 for d in spec.dims))
    n_sums = n_stats(len(spec.predictors) + 1)
    budget.check(
        budget.size(grid.size, len(spec.targets), n_sums, budget.FLOAT),
        f"the per-bin statistics of the empty grid {dict(zip(grid.dims, grid.shape, strict=True))}",
        spec.max_memory, "restrict extent=",
    )  # fmt: skip
    reference = spec.reference or {}
    return BinStats(
        grid, (INTERCEPT, *spec.predictors), tuple(spec.targets),
        np.zeros((grid.size, len(spec.targets), n_sums)), np.zeros(grid.size, dtype=np.int64),
        np.array([reference.get(p, 0.0) for p in spec.predictors], dtype=np.float64),
        np.array([reference.get(t, 0.0) for t in spec.targets], dtype=np.float64),
        counts, spec.backend, spec.weights, weights_scale=spec.weights_scale or 1.0,
    )  # fmt: skip


def _read_stream(source, spec: ReadSpec) -> BinStats:
    """Per-bin statistics of a stream of row batches (see the module docstring)."""
    if spec.selection is not None and not isinstance(spec.selection, str):
        raise InvalidInputTypeError(
            "on a stream, selection must name a boolean column of the batches, "
            f"got {type(spec.selection).__name__}"
        )
    plan = _plan(source, spec)
    stream = _Stream(spec, plan)
    dtypes: dict[str, str] = {}
    total = _stream_rows(source) if may_show(spec.progress) else None
    with progress_bar(total, spec.progress, "xslide reading", " rows", scale=True) as bar:
        for number, (batch, box) in enumerate(_batches(source, spec, plan), start=1):
            before = stream.counts["n_rows_input"]
            try:
                stream.add(batch, box)
            except (InvalidInputTypeError, MissingColumnError) as err:
                raise type(err)(f"batch {number}: {err}{_type_change(dtypes, batch)}") from None
            if not dtypes:
                dtypes = _dtypes(batch)
            bar.update(stream.counts["n_rows_input"] - before)
    return stream.result()


def _stream_rows(source) -> int | None:
    """The rows a stream holds, when known without reading them: a parquet file's metadata,
    or the ``total_rows`` the command line's chained inputs carry; None for other iterables."""
    if isinstance(source, str | Path):
        return count_rows([parse_source(source, default="parquet")])
    total = getattr(source, "total_rows", None)
    return int(total) if isinstance(total, int) else None


def _dtypes(batch) -> dict[str, str]:
    """The dtype of every column of a batch, by name."""
    if isinstance(batch, pd.DataFrame):
        return {str(c): str(t) for c, t in batch.dtypes.items()}
    return {str(c): str(getattr(v, "dtype", type(v).__name__)) for c, v in batch.items()}


def _type_change(first: dict[str, str], batch) -> str:
    """Which columns changed type since the first batch, for a refusal's message."""
    changed = [
        f"{column!r} was {first[column]} in the first batch, is {dtype}"
        for column, dtype in _dtypes(batch).items()
        if column in first and first[column] != dtype
    ]
    return f" (columns changed type between batches: {'; '.join(changed)})" if changed else ""


# ---- dask ----


_WEIGHTS_RANGE = "__xslide_weights_range__"


class _Empty(NamedTuple):
    """A partition none of whose rows falls on the grid."""

    n_rows: int


def _partition(pdf: pd.DataFrame, spec: ReadSpec) -> BinStats | _Empty:
    try:
        return _read_stream([pdf], spec)
    except EmptyGridError:
        return _Empty(len(pdf))


def _add(a: BinStats | _Empty, b: BinStats | _Empty) -> BinStats | _Empty:
    """Sum two partial results."""
    if isinstance(a, _Empty):
        a, b = b, a
    if not isinstance(b, _Empty):
        return a.add(b)
    if isinstance(a, _Empty):
        return _Empty(a.n_rows + b.n_rows)
    counts = dict(a.counts)
    counts["n_rows_input"] += b.n_rows
    counts["n_rows_outside_extent"] += b.n_rows
    return dataclasses.replace(a, counts=counts)


def _fixed_grid_and_references(ddf, spec: ReadSpec, dask) -> ReadSpec:
    """One dask pass for the extents, the weights' range and fallback references; the
    references the user did not give come from the first partition, as for a stream."""
    chosen = ddf[ddf[spec.selection]] if spec.selection else ddf
    extent = dict(spec.extent or {})
    todo = {d: (chosen[d].min(), chosen[d].max()) for d in spec.dims if d not in extent}
    missing = [c for c in (*spec.predictors, *spec.targets) if c not in (spec.reference or {})]
    if spec.formula is None:
        for column in missing:  # the fallback: a partition without a usable value
            values = chosen[column]
            todo[column] = values[abs(values) < HUGE].mean()
    if spec.weights is not None and spec.weights_scale is None:
        w = chosen[spec.weights]
        positive = w[(w > 0) & (w < np.inf)]
        todo[_WEIGHTS_RANGE] = (positive.max(), positive.min())
    (computed,) = dask.compute(todo)
    weights_range = computed.pop(_WEIGHTS_RANGE, None)
    if weights_range is not None:  # one scale for every partition, as for rows in memory
        values = np.asarray(weights_range, dtype=np.float64)
        spec = dataclasses.replace(spec, weights_scale=weights_scale(values, np.isfinite(values)))
    for d in spec.dims:
        if d in computed:
            lo, hi = computed.pop(d)
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise EmptyGridError(
                    "the dask DataFrame holds no row to bin (after selection): give extent= "
                    "for an empty grid"
                )
            extent[d] = (int(lo), int(hi))
    size = math.prod(hi - lo + 1 for lo, hi in extent.values())
    if size > spec.max_bins:
        raise TooLargeError(
            f"the dense grid would have {size:,} bins, more than max_bins={spec.max_bins:,}; "
            "restrict it with extent= or raise max_bins"
        )
    reference = dict(spec.reference or {})
    if spec.formula is None and missing:
        reference |= _first_partition_references(chosen, missing, computed)
    # a partition's own grid is the fixed one: the bins limit was checked just above
    return dataclasses.replace(
        spec, extent=extent, reference=reference or None, max_bins=DEFAULT_MAX_BINS * 1000
    )


def _first_partition_references(chosen, columns, fallback: dict) -> dict[str, float]:
    """References from the first partition's rows (robust, see design.reference_of); a column
    without a usable value there takes the dask-wide mean of its usable values, else 0."""
    first = chosen.partitions[0].compute()
    everything = np.ones(len(first), dtype=bool)
    out = {}
    for column in columns:
        values = first[column].to_numpy(dtype=np.float64, na_value=np.nan)
        ref = reference_of(values, np.arange(len(first)), everything)
        if not np.isfinite(ref):
            ref = float(fallback[column]) if np.isfinite(fallback[column]) else 0.0
        out[column] = ref
    return out


def _read_dask(ddf, spec: ReadSpec) -> BinStats:
    """Per-bin statistics of a dask DataFrame (see the module docstring)."""
    dask = require("dask", "dask DataFrame input")
    if spec.selection is not None and not isinstance(spec.selection, str):
        raise InvalidInputTypeError("with a dask DataFrame, selection must name a boolean column")
    missing = [c for c in [*spec.dims, *spec.targets, *spec.predictors] if c not in ddf.columns]
    if spec.formula is None and missing:
        raise MissingColumnError(f"columns {missing} not found in the dask DataFrame")
    spec = _fixed_grid_and_references(ddf, spec, dask)
    spec = dataclasses.replace(spec, progress=False)  # no bar on the workers
    partitions = ddf.to_delayed()
    if spec.formula is not None:
        # formula terms exist only once evaluated: the first partition fixes the references
        # that were not given (the user's own win)
        first = _partition(partitions[0].compute(), dataclasses.replace(spec, reference=None))
        if not isinstance(first, _Empty):
            names = [*first.columns[1:], *first.targets]
            found = dict(zip(names, [*first.x_ref, *first.y_ref], strict=True))
            spec = dataclasses.replace(spec, reference={**found, **(spec.reference or {})})
    parts = [dask.delayed(_partition)(part, spec) for part in partitions]
    while len(parts) > 1:  # a tree: partial statistics are added pairwise
        parts = [
            dask.delayed(_add)(parts[k], parts[k + 1]) if k + 1 < len(parts) else parts[k]
            for k in range(0, len(parts), 2)
        ]
    (total,) = dask.compute(parts[0])
    if isinstance(total, _Empty):
        raise EmptyGridError("the dask DataFrame holds no row inside the grid")
    return total
