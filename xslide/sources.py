"""Readers: rows in memory, streamed batch by batch, or on dask workers -> ``BinStats``.

Every reader takes the data and one ``ReadSpec`` and returns the additive per-bin statistics.

- **memory** (DataFrame, Dataset of rows, dict of arrays): one pass; the rows stay reachable
  through a ``RowAccess`` for the raw-row paths (median, n_sigma_cut, glm/rlm, callables).
- **stream** (a parquet path, or an iterable of DataFrames / ``pyarrow.RecordBatch``es): every
  batch is binned on the grid known so far (the grid grows when a batch brings new bins, unless
  ``extent`` fixes it) and summed into the same statistics, so each bin's rows are summed in row
  order as in one pass over all rows: bit-identical to the in-memory pass with the same
  reference (numba backend; the numpy backend is equal to rounding), which the first batch
  fixes unless given. Memory is bounded by the grid. A progress bar counts the rows read.
- **dask** (a dask DataFrame or a dask-backed Dataset of rows): one dask pass computes the
  extents and the references (unless given); every partition is then streamed on its worker on
  that fixed grid, and the partial statistics are added pairwise up a tree.
- **stats**: a statistics Dataset made by ``bin_stats`` is unpacked, no row is read.
"""

from __future__ import annotations

import dataclasses
import math
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
from .grid import DEFAULT_MAX_BINS, Grid, build_grid, read_bins
from .io import CHUNK_ROWS, available_columns, count_rows, iter_batches, parse_source
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
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
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


def _batches(source, spec: ReadSpec) -> Iterator:
    """The batches of a stream as tables ``RowTable`` reads."""
    if isinstance(source, str | Path):
        path = parse_source(source, default="parquet")  # no suffix: parquet, as ever
        columns = None
        if spec.formula is None:  # a formula may use any column
            columns = [*spec.dims, *spec.targets, *spec.predictors]
            columns += [c for c in (spec.weights, spec.selection) if isinstance(c, str)]
            # a missing column is refused by the table, naming its role (e.g. weights_column)
            known = set(available_columns(path))
            columns = [c for c in dict.fromkeys(columns) if c in known]
        # pre_buffer is off there: reading ahead would keep column chunks alive
        for batch in iter_batches(path, columns, CHUNK_ROWS, arrow=True):
            yield batch if isinstance(batch, pd.DataFrame) else _columns_of(batch)
        return
    for batch in source:
        if isinstance(batch, pd.DataFrame):
            yield batch
        elif hasattr(batch, "columns") and hasattr(batch, "schema"):  # pyarrow batch/table
            yield _columns_of(batch)
        else:
            raise InvalidInputTypeError(
                "a stream must yield pandas DataFrames or pyarrow RecordBatches, "
                f"got {type(batch).__name__}"
            )


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

    def __init__(self, spec: ReadSpec) -> None:
        self.spec = spec
        self.reference = dict(spec.reference or {})
        self.weights_scale = spec.weights_scale
        self.stats: BinStats | None = None
        self.counts = dict.fromkeys(
            ("n_rows_input", "n_rows_not_selected", "n_rows_without_bin", "n_rows_outside_extent"),
            0,
        )
        self.invalid = np.zeros(len(spec.targets), dtype=np.int64)

    def add(self, batch) -> None:
        """Bin one batch on the grid (grown to hold it) and add its rows' statistics."""
        spec, table = self.spec, RowTable(batch)
        bins, missing = read_bins(table, spec.dims)
        selected = selection_mask(spec.selection, table)
        self.counts["n_rows_input"] += table.n_rows
        try:
            batch_grid, _, counts = build_grid(
                bins, selected, spec.extent, spec.max_bins, missing, spec.max_memory
            )
        except EmptyGridError:  # nothing of this batch falls on the grid
            for key, value in _counts_without_grid(selected, missing, table.n_rows).items():
                self.counts[key] += value
            return
        for key, value in counts.items():
            self.counts[key] += value
        grid = self._grid_for(batch_grid)
        fixed = dict(zip(grid.dims, zip(grid.lo, grid.hi, strict=True), strict=True))
        _, flat, _ = build_grid(bins, selected, fixed, spec.max_bins, missing, spec.max_memory)
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
        sums, rows = self.stats.sums, self.stats.rows_per_bin
        _, invalid, _ = accumulate(flat, design, grid.size, spec.backend, sums, rows)
        self.invalid += invalid

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
    stream = _Stream(spec)
    dtypes: dict[str, str] = {}
    total = _stream_rows(source) if may_show(spec.progress) else None
    with progress_bar(total, spec.progress, "xslide reading", " rows", scale=True) as bar:
        for number, batch in enumerate(_batches(source, spec), start=1):
            before = stream.counts["n_rows_input"]
            try:
                stream.add(batch)
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
