"""Streaming: per-bin statistics accumulated batch by batch, memory bounded by the grid.

Sources are a parquet file (read by row groups, only the needed columns) or any iterable of
pandas DataFrames / ``pyarrow.RecordBatch``es. Every batch is binned on the grid known so far
(the grid grows when a batch brings new bins, unless ``extent`` fixes it) and its rows are
summed into the same statistics array, so each bin's rows are summed in row order exactly as
in one pass over all rows: the result is bit-identical to the in-memory pass with the same
reference. The reference is taken from the first batch unless given. Raw-row paths (median,
n_sigma_cut, glm/rlm, callables) need the rows and are refused on streams.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ._optional import require
from .binning import binning_of
from .core import Reduced
from .design import RowTable, build_design
from .formula import ParsedFormula
from .grid import DEFAULT_MAX_BINS, Grid, build_grid, read_bins
from .stats import accumulate, n_stats

# Rows per batch read from a parquet file: large enough to keep the numba pass efficient,
# small enough that the decoded batch and its copies stay a few tens of MB.
PARQUET_BATCH_ROWS = 1 << 18


def is_stream(data) -> bool:
    """A parquet path or an iterable of batches (not a table, a Dataset or a dict)."""
    if isinstance(data, str | Path):
        return True
    if isinstance(data, pd.DataFrame | xr.Dataset | Mapping | np.ndarray):
        return False
    if type(data).__module__.startswith("dask"):  # dask collections have their own path
        return False
    return isinstance(data, Iterable)


def _columns_of(batch) -> dict:
    """A pyarrow batch as numpy columns (no copy where arrow allows it); columns with nulls
    become pandas Series so that integer bins keep a nullable integer dtype."""
    out = {}
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if column.null_count:
            out[name] = column.to_pandas()
        else:
            out[name] = column.to_numpy(zero_copy_only=False)
    return out


def _batches(source, columns: Sequence[str]) -> Iterator:
    if isinstance(source, str | Path):
        # pre_buffer reads ahead and keeps column chunks alive: memory would grow with the file
        parquet = require("pyarrow.parquet", "reading parquet files").ParquetFile(
            source, pre_buffer=False
        )
        chosen = list(columns) or None
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=chosen):
            yield _columns_of(batch)
        return
    for batch in source:
        if isinstance(batch, pd.DataFrame):
            yield batch
        elif hasattr(batch, "columns") and hasattr(batch, "schema"):  # pyarrow batch/table
            yield _columns_of(batch)
        else:
            raise TypeError(
                "a stream must yield pandas DataFrames or pyarrow RecordBatches, "
                f"got {type(batch).__name__}"
            )


def _selection(table: RowTable, selection) -> np.ndarray | None:
    if selection is None:
        return None
    if not isinstance(selection, str):
        raise TypeError(
            "on a stream, selection must name a boolean column of the batches, "
            f"got {type(selection).__name__}"
        )
    column = table.column(selection, "selection")
    if not pd.api.types.is_bool_dtype(column.dtype):
        raise TypeError(f"selection column {selection!r} must be boolean, got {column.dtype}")
    if column.hasnans:
        raise ValueError(f"selection column {selection!r} has missing values; use True/False")
    return column.to_numpy(dtype=bool)


def _grow(stats: np.ndarray, rows: np.ndarray, old: Grid, new: Grid):
    """Place the statistics of grid ``old`` inside the larger grid ``new``."""
    dense = np.zeros((*new.shape, *stats.shape[1:]))
    dense_rows = np.zeros(new.shape, dtype=rows.dtype)
    where = tuple(
        slice(lo - new_lo, lo - new_lo + n)
        for lo, n, new_lo in zip(old.lo, old.shape, new.lo, strict=True)
    )
    dense[where] = stats.reshape((*old.shape, *stats.shape[1:]))
    dense_rows[where] = rows.reshape(old.shape)
    return dense.reshape(new.size, *stats.shape[1:]), dense_rows.reshape(-1)


def _union(a: Grid, b: Grid) -> Grid:
    lo = tuple(min(x, y) for x, y in zip(a.lo, b.lo, strict=True))
    hi = tuple(max(x, y) for x, y in zip(a.hi, b.hi, strict=True))
    return Grid(a.dims, lo, tuple(h - low + 1 for low, h in zip(lo, hi, strict=True)))


def stream_stats(
    source,
    dims: Sequence[str],
    targets: Sequence[str],
    predictors: Sequence[str],
    *,
    weights: str | None = None,
    selection: str | None = None,
    extent: Mapping | None = None,
    max_bins: int = DEFAULT_MAX_BINS,
    backend: str = "numba",
    reference: Mapping[str, float] | None = None,
    formula: ParsedFormula | None = None,
) -> Reduced:
    """Per-bin statistics of a stream of row batches (see the module docstring)."""
    needed = [*dims, *targets, *predictors]
    needed += [c for c in (weights, selection) if isinstance(c, str)]
    if formula is not None:
        needed = None  # a formula may use any column
    grid = stats = rows = None
    reference = dict(reference or {})
    counts = {"n_rows_input": 0, "n_rows_not_selected": 0, "n_rows_without_bin": 0}
    counts["n_rows_outside_extent"] = 0
    invalid_total = np.zeros(len(targets), dtype=np.int64)
    design = None
    binning = None  # digitize records, from the first batch that is a DataFrame
    for batch in _batches(source, needed or []):
        table = RowTable(batch)
        bins, missing = read_bins(table, dims)
        selected = _selection(table, selection)
        try:
            batch_grid, _, batch_counts = build_grid(bins, selected, extent, max_bins, missing)
        except ValueError as err:
            if "no rows left" not in str(err):
                raise
            batch_grid = None  # nothing of this batch falls on the grid
            batch_counts = _counts_without_grid(selected, missing, table.n_rows)
        batch_counts.pop("rows_per_bin", None)
        for key, value in batch_counts.items():
            counts[key] += value
        counts["n_rows_input"] += table.n_rows
        if batch_grid is None:
            continue
        target_grid = batch_grid if grid is None else _union(grid, batch_grid)
        if target_grid.size > max_bins:
            raise ValueError(
                f"the streamed grid grew to {target_grid.size:,} bins, more than "
                f"max_bins={max_bins:,}; fix it with extent="
            )
        if grid is not None and target_grid != grid:
            stats, rows = _grow(stats, rows, grid, target_grid)
        grid = target_grid
        fixed = {d: (lo, hi) for d, lo, hi in zip(grid.dims, grid.lo, grid.hi, strict=True)}
        _, flat, fixed_counts = build_grid(bins, selected, fixed, max_bins, missing)
        design = build_design(table, targets, predictors, weights, flat, reference, formula)
        names = [*design.columns[1:], *design.targets]
        if any(name not in reference for name in names):
            # the first batch fixes every reference not given, for every later batch
            found = dict(zip(names, [*design.x_ref, *design.y_ref], strict=True))
            reference = {**found, **reference}
        if binning is None:
            binning = binning_of(batch, dims)
        if stats is None:
            stats = np.zeros((grid.size, len(targets), n_stats(design.x.shape[0] + 1)))
            rows = np.zeros(grid.size, dtype=np.int64)
        _, invalid = accumulate(
            flat, design.x, design.y, design.w, design.x_ref, design.y_ref, grid.size, backend,
            out=stats,
        )  # fmt: skip
        invalid_total += invalid
        rows += fixed_counts["rows_per_bin"]
    if grid is None or design is None:
        raise ValueError("the stream holds no row inside the grid (after selection/extent)")
    counts["n_rows_invalid"] = {t: int(n) for t, n in zip(targets, invalid_total, strict=True)}
    return Reduced(
        grid,
        design.columns,
        design.targets,
        stats,
        rows,
        design.x_ref,
        design.y_ref,
        counts,
        backend,
        weights,
        intercept=design.intercept,
        binning=binning or {},
    )


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
