"""The integer bin grid: validation of bin columns, extents, flat bin ids and the bin index."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import budget
from ._numba import njit, numba_available, run_chunks
from .errors import EmptyGridError, InvalidInputTypeError, TooLargeError

DEFAULT_MAX_BINS = 50_000_000


@dataclass(frozen=True)
class Grid:
    """A dense, C-ordered grid of integer bins: dim d spans lo[d] .. lo[d] + shape[d] - 1."""

    dims: tuple[str, ...]
    lo: tuple[int, ...]
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Bins of the grid, a Python integer (int64 products would wrap)."""
        return math.prod(self.shape)

    @property
    def hi(self) -> tuple[int, ...]:
        return tuple(lo + n - 1 for lo, n in zip(self.lo, self.shape, strict=True))

    def coords(self) -> dict[str, np.ndarray]:
        """Integer bin labels per dim."""
        return {
            d: np.arange(lo, lo + n, dtype=np.int64)
            for d, lo, n in zip(self.dims, self.lo, self.shape, strict=True)
        }

    def unravel(self, flat: np.ndarray) -> list[np.ndarray]:
        """Bin labels per dim of flat bin ids."""
        idx = np.unravel_index(flat, self.shape)
        return [i.astype(np.int64) + lo for i, lo in zip(idx, self.lo, strict=True)]


def bin_values(name: str, values) -> tuple[np.ndarray, np.ndarray | None]:
    """Return a bin column as int64 and the mask of rows without a bin (nullable integers).

    Anything that is not an integer column is refused. Rows with a missing bin (``<NA>`` of a
    nullable integer column, e.g. ``digitize`` outside its edges) are left out and counted.
    """
    dtype = getattr(values, "dtype", None)
    if isinstance(dtype, pd.CategoricalDtype) or not pd.api.types.is_integer_dtype(dtype):
        raise InvalidInputTypeError(
            f"bin column {name!r} must have an integer dtype, got {dtype}; "
            "bin a physical variable first (xslide.digitize, np.floor or pd.cut(...).cat.codes)"
        )
    missing = None
    if isinstance(values, pd.Series | pd.Index) and isinstance(dtype, np.dtype):
        values = values.to_numpy()  # a numpy integer dtype holds no <NA>: no isna pass
    if isinstance(values, pd.Series | pd.Index):
        if values.hasnans:
            missing = values.isna().to_numpy()
        if pd.api.types.is_unsigned_integer_dtype(dtype):
            _check_int64(name, values.max())
        values = values.to_numpy(dtype=np.int64, na_value=0)
    elif pd.api.types.is_unsigned_integer_dtype(dtype) and np.size(values):
        _check_int64(name, np.max(values))
    return np.asarray(values).astype(np.int64, copy=False), missing


def _check_int64(name: str, largest) -> None:
    """Unsigned bins beyond the int64 range would wrap to negative bins: refuse them."""
    if largest is not pd.NA and int(largest) > np.iinfo(np.int64).max:
        raise ValueError(
            f"bin column {name!r} holds bins up to {int(largest)}, beyond the int64 range of "
            "bin numbers; subtract an offset first"
        )


def read_bins(table, dims) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The bin columns of a row table as int64, and the rows missing any of them (or None)."""
    bins, missing = {}, None
    for d in dims:
        bins[d], absent = bin_values(d, table.column(d, "group_columns"))
        if absent is not None:
            missing = absent if missing is None else missing | absent
    return bins, missing


def build_grid(
    bins: Mapping[str, np.ndarray],
    selected: np.ndarray | None,
    extent: Mapping[str, tuple[int, int]] | None = None,
    max_bins: int = DEFAULT_MAX_BINS,
    missing: np.ndarray | None = None,
    max_memory: float = math.inf,
) -> tuple[Grid, np.ndarray, dict[str, int]]:
    """Fix the grid and give every row its flat bin id (-1: not selected or outside the extent).

    ``extent`` (checked by ``options.check_extent``) fixes the range of the dims it names.

    Returns the grid, the flat ids and the counts of rows left out (``n_rows_not_selected``,
    ``n_rows_without_bin`` (selected, but a bin column is missing), ``n_rows_outside_extent``);
    the rows of every bin are counted by the statistics pass (``stats.accumulate``).
    """
    dims = tuple(bins)
    n_rows = len(next(iter(bins.values()))) if bins else 0
    given = dict(extent or {})
    columns = tuple(_read_only(bins[d]) for d in dims)
    use_mask = selected is not None or missing is not None
    keep, n_not_selected, n_without_bin = _NO_MASK, 0, 0
    if use_mask:
        keep = np.ones(n_rows, dtype=bool) if selected is None else selected.copy()
        n_not_selected = int(n_rows - keep.sum())
        if missing is not None:
            n_without_bin = int((keep & missing).sum())
            keep &= ~missing
    has_given = np.array([d in given for d in dims])
    lo_given = np.array([given[d][0] if d in given else 0 for d in dims], dtype=np.int64)
    hi_given = np.array([given[d][1] if d in given else 0 for d in dims], dtype=np.int64)
    in_numpy = n_rows < _PARALLEL_ROWS or not numba_available()
    every_row = not use_mask and not has_given.any()  # every row is inside the grid
    if every_row and n_rows:
        lo, hi = _column_range(columns, in_numpy)
        n_inside = n_rows
    elif in_numpy:
        lo, hi, n_inside = _observed_range_numpy(columns, keep if use_mask else None, given, dims)
    else:
        lo, hi, n_inside = _observed_range(
            columns, use_mask, keep, has_given, lo_given, hi_given, _n_blocks(n_rows)
        )
    n_outside = int(n_rows - n_not_selected - n_without_bin - n_inside)
    if n_inside == 0 and not has_given.all():
        raise EmptyGridError("no rows left to bin: the selection (and extent) excludes every row")
    lo = np.where(has_given, lo_given, lo)
    hi = np.where(has_given, hi_given, hi)
    shape = [int(h) - int(low) + 1 for low, h in zip(lo, hi, strict=True)]  # no int64 wrap
    grid = Grid(dims, tuple(int(v) for v in lo), tuple(shape))
    sizes = dict(zip(dims, shape, strict=True))
    if grid.size > max_bins:
        raise TooLargeError(
            f"the dense grid would have {grid.size:,} bins (shape {sizes}), "
            f"more than max_bins={max_bins:,}; restrict it with extent=, use coarser bins, "
            "or raise max_bins if the memory allows"
        )
    budget.check(
        grid.size * budget.FLOAT, f"the row counts of the grid (shape {sizes})", max_memory,
        "restrict it with extent= or use coarser bins",
    )  # fmt: skip
    strides = np.cumprod((1, *shape[:0:-1]))[::-1].astype(np.int64)
    # int32 ids halve the largest per-row array the pipeline keeps, when the grid allows it
    flat = np.empty(n_rows, dtype=np.int32 if grid.size < 2**31 - 1 else np.int64)
    shape = np.asarray(shape, dtype=np.int64)
    if in_numpy:
        _flat_ids_numpy(columns, keep if use_mask else None, lo, shape, strides, flat)
    elif every_row:
        run_chunks(_flat_ids_inside, _n_blocks(n_rows), columns, lo, strides, flat)
    else:
        _flat_ids(columns, use_mask, keep, lo, shape, strides, flat, _n_blocks(n_rows))
    counts = {
        "n_rows_not_selected": n_not_selected,
        "n_rows_without_bin": n_without_bin,
        "n_rows_outside_extent": n_outside,
    }
    return grid, flat, counts


_NO_MASK = np.ones(1, dtype=bool)  # every row is kept (use_mask False: never read)

# fewer rows are binned by numpy (a parallel launch would cost more than the work)
_PARALLEL_ROWS = 100_000

# rows per block of the passes over row blocks in parallel (exact whatever the blocks: they
# write their own rows, or reduce integers)
_BLOCK_ROWS = 1 << 16


def _n_blocks(n_rows: int) -> int:
    return max(1, min(n_rows // _BLOCK_ROWS, 64))


def _read_only(values: np.ndarray) -> np.ndarray:
    """A read-only contiguous int64 view: one numba type for every column, whatever pandas gives."""
    view = np.ascontiguousarray(values, dtype=np.int64).view()
    view.flags.writeable = False
    return view


def _column_range(columns: tuple[np.ndarray, ...], in_numpy: bool) -> tuple[np.ndarray, ...]:
    """Per-dim min and max of every row's bin: one parallel pass over the columns with
    numba (numpy reads each column twice)."""
    if in_numpy:
        lo = np.array([column.min() for column in columns], dtype=np.int64)
        hi = np.array([column.max() for column in columns], dtype=np.int64)
        return lo, hi
    n_blocks = _n_blocks(columns[0].shape[0])
    found = np.empty((n_blocks, 2, len(columns)), dtype=np.int64)
    run_chunks(_column_range_block, n_blocks, columns, found)
    return found[:, 0].min(axis=0), found[:, 1].max(axis=0)


@njit(cache=True, nogil=True)
def _min_max(values):
    """The smallest and largest of ``values`` (a slice: the loop vectorizes)."""
    lo = hi = values[0]
    for i in range(values.shape[0]):
        v = values[i]
        lo = v if v < lo else lo
        hi = v if v > hi else hi
    return lo, hi


@njit(cache=True, nogil=True)
def _column_range_block(k, n_blocks, columns, found):
    """Per-dim min and max of row block k into ``found[k]`` (a block is never empty)."""
    n_rows = columns[0].shape[0]
    start, stop = k * n_rows // n_blocks, (k + 1) * n_rows // n_blocks
    for d in range(len(columns)):
        found[k, 0, d], found[k, 1, d] = _min_max(columns[d][start:stop])


@njit(cache=True, nogil=True)
def _add_scaled(acc, values, origin, stride):
    """acc += (values - origin) * stride, element by element (slices: the loop vectorizes)."""
    for i in range(acc.shape[0]):
        acc[i] += (values[i] - origin) * stride


@njit(cache=True, nogil=True)
def _flat_ids_inside(k, n_blocks, columns, lo, strides, flat):
    """Block k of ``flat`` when every row lies inside the grid (no selection, no extent):
    no test per row, each column added in turn over short runs of rows."""
    n_rows = columns[0].shape[0]
    start, stop = k * n_rows // n_blocks, (k + 1) * n_rows // n_blocks
    acc = np.empty(_RUN, dtype=np.int64)
    for first in range(start, stop, _RUN):
        last = min(first + _RUN, stop)
        run = acc[: last - first]
        run[:] = 0
        for d in range(len(columns)):
            _add_scaled(run, columns[d][first:last], lo[d], strides[d])
        out = flat[first:last]
        for i in range(run.shape[0]):
            out[i] = run[i]


_RUN = 2048  # rows of one run of ``_flat_ids_inside`` (its sums stay in the L1 cache)


@njit(cache=True, nogil=True)
def _observed_range_block(  # noqa: PLR0913  (numba kernel)
    k, n_blocks, columns, use_mask, keep, has_given, lo_given, hi_given, found
):
    """Per-dim min/max of the bins of block k's kept rows inside the given extents, and their
    number, into ``found[k]`` = (count, lo..., hi...)."""
    n_dims = len(columns)
    n_rows = columns[0].shape[0]
    start, stop = k * n_rows // n_blocks, (k + 1) * n_rows // n_blocks
    lo = np.full(n_dims, np.iinfo(np.int64).max)
    hi = np.full(n_dims, np.iinfo(np.int64).min)
    inside = 0
    for i in range(start, stop):
        if use_mask and not keep[i]:
            continue
        ok = True
        for d in range(n_dims):
            v = columns[d][i]
            if has_given[d] and (v < lo_given[d] or v > hi_given[d]):
                ok = False
        if not ok:
            continue
        inside += 1
        for d in range(n_dims):
            v = columns[d][i]
            lo[d] = min(lo[d], v)
            hi[d] = max(hi[d], v)
    found[k, 0] = inside
    found[k, 1 : 1 + n_dims] = lo
    found[k, 1 + n_dims :] = hi


def _observed_range(columns, use_mask, keep, has_given, lo_given, hi_given, n_blocks):
    """Per-dim min/max of the bins of kept rows inside the given extents; rows counted.
    Row blocks in parallel, each with its own min/max, then reduced (exact)."""
    n_dims = len(columns)
    found = np.empty((n_blocks, 1 + 2 * n_dims), dtype=np.int64)
    run_chunks(
        _observed_range_block, n_blocks, columns, use_mask, keep, has_given, lo_given,
        hi_given, found,
    )  # fmt: skip
    return (
        found[:, 1 : 1 + n_dims].min(axis=0),
        found[:, 1 + n_dims :].max(axis=0),
        found[:, 0].sum(),
    )


@njit(cache=True, nogil=True)
def _flat_ids_block(k, n_blocks, columns, use_mask, keep, lo, shape, strides, flat):  # noqa: PLR0913  (numba kernel)
    """Fill block k of ``flat`` with the C-order flat bin id of every kept row inside the
    grid, -1 for the others."""
    n_dims = len(columns)
    n_rows = columns[0].shape[0]
    start, stop = k * n_rows // n_blocks, (k + 1) * n_rows // n_blocks
    for i in range(start, stop):
        flat[i] = -1
        if use_mask and not keep[i]:
            continue
        b = 0
        for d in range(n_dims):
            j = columns[d][i] - lo[d]
            if j < 0 or j >= shape[d]:
                b = -1
                break
            b += j * strides[d]
        flat[i] = b


def _flat_ids(columns, use_mask, keep, lo, shape, strides, flat, n_blocks):
    """``_flat_ids_block`` over every row block, in parallel."""
    run_chunks(_flat_ids_block, n_blocks, columns, use_mask, keep, lo, shape, strides, flat)


def box_flat_ids(
    bins: Mapping[str, np.ndarray],
    keep: np.ndarray | None,
    lo: tuple[int, ...],
    shape: tuple[int, ...],
    strides: np.ndarray,
) -> np.ndarray:
    """Flat ids ``Σ (bin - lo) · strides`` of the kept rows inside the box ``lo`` .. ``lo +
    shape - 1``, -1 for the other rows.

    With a box of a grid and the grid's strides, these are the grid's flat ids less the id of
    the box's first bin: a stream sums a batch into that part of the grid's statistics.
    """
    columns = tuple(_read_only(values) for values in bins.values())
    n_rows = columns[0].shape[0]
    lo_, shape_ = np.asarray(lo, dtype=np.int64), np.asarray(shape, dtype=np.int64)
    span = int(sum((n - 1) * int(s) for n, s in zip(shape, strides, strict=True))) + 1
    flat = np.empty(n_rows, dtype=np.int32 if span < 2**31 - 1 else np.int64)
    if n_rows < _PARALLEL_ROWS or not numba_available():
        _flat_ids_numpy(columns, keep, lo_, shape_, strides, flat)
    else:
        use_mask = keep is not None
        mask = keep if use_mask else _NO_MASK
        _flat_ids(columns, use_mask, mask, lo_, shape_, strides, flat, _n_blocks(n_rows))
    return flat


def grid_strides(shape: tuple[int, ...]) -> np.ndarray:
    """C-order strides of a grid's dims, in bins."""
    return np.cumprod((1, *shape[:0:-1]))[::-1].astype(np.int64)


def _observed_range_numpy(columns, keep, given, dims):
    """``_observed_range`` by numpy: for few rows, and without numba."""
    ok = np.ones(columns[0].shape[0], dtype=bool) if keep is None else keep.copy()
    for d, column in zip(dims, columns, strict=True):
        if d in given:
            ok &= (column >= given[d][0]) & (column <= given[d][1])
    n_inside = int(ok.sum())
    if not n_inside:
        return np.zeros(len(columns), dtype=np.int64), np.zeros(len(columns), dtype=np.int64), 0
    lo = np.array([column[ok].min() for column in columns], dtype=np.int64)
    hi = np.array([column[ok].max() for column in columns], dtype=np.int64)
    return lo, hi, n_inside


def _flat_ids_numpy(columns, keep, lo, shape, strides, flat):
    """``_flat_ids`` by numpy: for few rows, and without numba."""
    ids = np.zeros(flat.shape[0], dtype=np.int64)
    ok = np.ones(flat.shape[0], dtype=bool) if keep is None else keep.copy()
    for d, column in enumerate(columns):
        j = column - lo[d]
        ok &= (j >= 0) & (j < shape[d])
        ids += j * strides[d]
    ids[~ok] = -1
    flat[:] = ids


@njit(cache=True)
def _counting_sort(flat: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(n_bins + 1, dtype=np.int64)
    for b in flat:
        if b >= 0:
            offsets[b + 1] += 1
    for i in range(n_bins):
        offsets[i + 1] += offsets[i]
    cursor = offsets[:-1].copy()
    order = np.empty(offsets[n_bins], dtype=np.int64)
    for row in range(flat.shape[0]):
        b = flat[row]
        if b >= 0:
            order[cursor[b]] = row
            cursor[b] += 1
    return order, offsets


def bin_index(flat: np.ndarray, n_bins: int, backend: str) -> tuple[np.ndarray, np.ndarray]:
    """CSR bin index: rows of bin b are ``order[offsets[b]:offsets[b + 1]]``, in row order."""
    if backend == "numba":
        return _counting_sort(flat, n_bins)
    inside = flat >= 0
    order = np.flatnonzero(inside)[np.argsort(flat[inside], kind="stable")]
    offsets = np.zeros(n_bins + 1, dtype=np.int64)
    np.cumsum(np.bincount(flat[inside], minlength=n_bins), out=offsets[1:])
    return order, offsets
