"""Raw-row paths: statistics that need the rows themselves, reached through the bin index.

The bin index (``grid.bin_index``) lists the rows of every bin contiguously, so the rows of a
window are one contiguous run per neighbor bin of arrays laid out in bin order. Nothing is
copied per window but into one reusable buffer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import NamedTuple

import numpy as np

from ._numba import njit, num_threads, python, run_chunks
from .design import SUMMABLE, Design, usable
from .grid import bin_index
from .parallel import Parallel, bar_blocks, progress_bar, split
from .window import Window, entry_buffers, window_entries

# Fewest centers per call of the median kernel when it runs in blocks for a progress bar.
MEDIAN_BLOCK = 2048


@dataclass(eq=False)
class RowAccess:
    """The rows of a grid in bin order, for the raw-row paths; each part is built on first use.

    ``flat`` is every row's flat bin id (-1: off the grid); the bin index lists the rows of
    bin b as ``order[offsets[b]:offsets[b + 1]]``, and the columns are copied into that order
    only when a path reads them (the median needs no design).
    """

    flat: np.ndarray
    design: Design
    n_bins: int
    backend: str

    @cached_property
    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        return bin_index(self.flat, self.n_bins, self.backend)

    @property
    def order(self) -> np.ndarray:
        """Row numbers, bin by bin."""
        return self._index[0]

    @property
    def offsets(self) -> np.ndarray:
        """Rows of bin b: ``order[offsets[b]:offsets[b + 1]]``."""
        return self._index[1]

    @cached_property
    def xs(self) -> np.ndarray:
        """(q, n) design columns."""
        if self.backend == "numba":
            return in_bin_order(self.flat, self.offsets, self.design.x)
        return np.ascontiguousarray(self.design.x[:, self.order])

    @cached_property
    def ys(self) -> np.ndarray:
        """(t, n) targets, NaN where the row is invalid for that target."""
        if self.backend == "numba":
            targets = np.arange(self.design.y.shape[0])
            return _gather_targets(self.flat, self.offsets, self.design, targets, runs=False)[0]
        return values_in_bin_order(self.order, self.design)

    def target_runs(self, targets: list[int]) -> TargetRuns:
        """The valid values of ``targets`` per bin (the median's layout)."""
        if self.backend == "numba":
            values, counts = _gather_targets(
                self.flat, self.offsets, self.design, np.asarray(targets, np.int64), runs=True
            )
            return TargetRuns.of(values, counts)
        return target_runs(self.ys[targets], self.offsets, self.backend)

    @cached_property
    def ws(self) -> np.ndarray | None:
        """(n,) weights, or None."""
        if self.design.w is None:
            return None
        if self.backend == "numba":
            return in_bin_order(self.flat, self.offsets, self.design.w[None])[0]
        return self.design.w[self.order]


def in_bin_order(flat: np.ndarray, offsets: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``columns[:, order]`` (numba): rows read in sequence and written to their bin's next
    place, in bin-range parts on the threads (a gather from rows in random order waits on
    memory for every value)."""
    out = np.empty((columns.shape[0], offsets[-1]))
    n_parts = max(1, min(num_threads(), offsets.size - 1))
    run_chunks(_scatter_columns, n_parts, flat, offsets, np.ascontiguousarray(columns), out)
    return out


@njit(cache=True, nogil=True)
def _scatter_columns(part, n_parts, flat, offsets, columns, out):
    """``in_bin_order`` of part ``part`` of the bins."""
    n_bins = offsets.shape[0] - 1
    lo, hi = part * n_bins // n_parts, (part + 1) * n_bins // n_parts
    cursor = offsets[lo:hi].copy()
    for row in range(flat.shape[0]):
        b = flat[row]
        if b >= lo and b < hi:
            for k in range(columns.shape[0]):
                out[k, cursor[b - lo]] = columns[k, row]
            cursor[b - lo] += 1


def values_in_bin_order(order: np.ndarray, design: Design) -> np.ndarray:
    """Targets of the indexed rows in bin order, (t, n_indexed); NaN where the row is not valid
    for the target by ``design.usable`` (the rule of the statistics pass, so every raw-row pass
    sees exactly the rows the statistics counted)."""
    ys = design.y[:, order]
    good = np.ones(order.size, dtype=bool)
    for row, ref in zip(design.x, design.x_ref, strict=True):
        good &= usable(row[order] - ref)
    if design.w is not None:
        good &= np.isfinite(design.w[order])
    for t, ref in enumerate(design.y_ref):
        ys[t, ~(good & usable(ys[t] - ref))] = np.nan
    return ys


class TargetRuns(NamedTuple):
    """Target values in bin order, each bin's run with its valid values first, then NaN.

    Bin b holds ``values[t, offsets[b]:offsets[b + 1]]``: its ``counts[t, b]`` valid values
    (in no particular order), then NaN. A window's values are then a few runs, those of
    neighbouring bins one after the other where the bins hold no invalid rows.
    """

    values: np.ndarray  # (t, n)
    counts: np.ndarray  # (t, n_bins) valid values per bin
    before: np.ndarray  # (t, n_bins + 1) valid values in the bins before bin b

    @classmethod
    def of(cls, values: np.ndarray, counts: np.ndarray) -> TargetRuns:
        """The runs of ``values`` with ``counts`` valid values per bin."""
        before = np.zeros((counts.shape[0], counts.shape[1] + 1), dtype=np.int64)
        np.cumsum(counts, axis=1, out=before[:, 1:])
        return cls(values, counts, before)


def target_runs(ys: np.ndarray, offsets: np.ndarray, backend: str) -> TargetRuns:
    """``TargetRuns`` of targets in bin order with NaN for invalid rows (``ys``)."""
    if backend == "numba":
        values = ys.astype(np.float64, copy=True)
        counts = np.empty((ys.shape[0], offsets.size - 1), dtype=np.int64)
        n_chunks = max(1, min(num_threads() * 4, offsets.size - 1))
        run_chunks(_compact_runs, n_chunks, values, offsets, counts)
        return TargetRuns.of(values, counts)
    bins = np.repeat(np.arange(offsets.size - 1), np.diff(offsets))
    values = np.empty_like(ys, dtype=np.float64)
    counts = np.empty((ys.shape[0], offsets.size - 1), dtype=np.int64)
    for t, row in enumerate(ys):
        values[t] = row[np.lexsort((np.isnan(row), bins))]  # NaN last in each bin
        counts[t] = np.bincount(bins[~np.isnan(row)], minlength=offsets.size - 1)
    return TargetRuns.of(values, counts)


@njit(cache=True, nogil=True)
def _compact_runs(c, n_chunks, values, offsets, counts):
    """Move the valid values of each run of chunk c's bins to its front (in order, NaN
    after them) in every row of ``values``, and count them."""
    n_bins = offsets.shape[0] - 1
    for b in range(c * n_bins // n_chunks, (c + 1) * n_bins // n_chunks):
        start, stop = offsets[b], offsets[b + 1]
        for t in range(values.shape[0]):
            n = start
            for r in range(start, stop):
                v = values[t, r]
                if v == v:
                    values[t, n] = v
                    n += 1
            values[t, n:stop] = np.nan
            counts[t, b] = n - start


def _gather_targets(
    flat: np.ndarray, offsets: np.ndarray, design: Design, targets: np.ndarray, runs: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``values_in_bin_order`` of ``targets`` (numba) and the valid values per bin; with ``runs``
    the ``TargetRuns`` layout (each bin's valid values first, then NaN)."""
    values = np.empty((targets.size, offsets[-1]))
    counts = np.zeros((targets.size, offsets.size - 1), dtype=np.int64)
    w = np.ones(1) if design.w is None else design.w
    n_parts = max(1, min(num_threads(), offsets.size - 1))
    run_chunks(
        _scatter_targets, n_parts, flat, offsets, design.x, design.y, targets, design.x_ref,
        design.y_ref, w, design.w is not None, runs, values, counts,
    )  # fmt: skip
    return values, counts


@njit(cache=True, nogil=True)
def _scatter_targets(  # noqa: PLR0913  (numba kernel: its outputs are arguments)
    part, n_parts, flat, offsets, x, y, targets, x_ref, y_ref, w, has_w, runs, values, counts
):
    """Passes over the rows in row order (reads in sequence, writes scattered), one per part
    of the bins: each row's target values go to its bin's next place, NaN for an invalid one;
    with ``runs``, to the next place of the bin's valid values of that target (NaN fill the
    rest: the ``TargetRuns`` layout). Rows keep their order within a bin,
    as in the bin index; every bin is written by one thread (the same result for any count)."""
    n_targets = targets.shape[0]
    n_bins = offsets.shape[0] - 1
    lo, hi = part * n_bins // n_parts, (part + 1) * n_bins // n_parts
    for row in range(flat.shape[0]):
        b = flat[row]
        if b < lo or b >= hi:
            continue
        good = not has_w or np.isfinite(w[row])
        for j in range(x.shape[0]):
            good &= abs(x[j, row] - x_ref[j]) < SUMMABLE
        place = offsets[b] + counts[0, b]  # without runs, counts[0] counts the rows
        for t in range(n_targets):
            v = y[targets[t], row]
            valid = good and abs(v - y_ref[targets[t]]) < SUMMABLE
            if runs and valid:
                values[t, offsets[b] + counts[t, b]] = v
                counts[t, b] += 1
            elif not runs:
                values[t, place] = v if valid else np.nan
        if not runs:
            counts[0, b] += 1
    _finish_bins(values, offsets, counts, lo, hi, runs)


@njit(cache=True)
def _finish_bins(values, offsets, counts, lo, hi, runs):
    """Bins lo..hi of ``_scatter_targets``: fill the runs with NaN, or count the valid
    values."""
    for b in range(lo, hi):
        start, stop = offsets[b], offsets[b + 1]
        for t in range(values.shape[0]):
            if runs:
                values[t, start + counts[t, b] : stop] = np.nan
            else:
                counts[t, b] = 0
                for r in range(start, stop):
                    counts[t, b] += values[t, r] == values[t, r]


@njit(cache=True)
def _select(a, n, k):
    """Rearrange a[:n] so that a[k] is the k-th smallest and a[:k] <= a[k] <= a[k+1:n].

    Wirth's selection: both scans stop on values equal to the pivot, so many duplicates
    (integer-valued targets) cost no more than distinct values.
    """
    lo, hi = 0, n - 1
    while lo < hi:
        # median of three as the pivot value
        x, y, z = a[lo], a[k], a[hi]
        if x > y:
            x, y = y, x
        if y > z:
            y = z if x <= z else x
        pivot = y
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while pivot < a[j]:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if j < k:
            lo = i
        if k < i:
            hi = j


@njit(cache=True)
def _median_of(a, n):
    """Median of a[:n] (mean of the two middle values for even n); reorders a."""
    if n == 0:
        return np.nan
    k = (n - 1) // 2
    _select(a, n, k)
    if n % 2 == 1:
        return a[k]
    return 0.5 * (a[k] + _smallest(a, k + 1, n))


@njit(cache=True)
def _smallest(a, start, stop):
    """min(a[start:stop]): after selecting rank k, the rank k + 1 is the smallest above it."""
    value = a[start]
    for j in range(start + 1, stop):
        if a[j] < value:
            value = a[j]
    return value


# The guided selection of ``_runs_median``: a bracket around the previous window's median
# should hold about _GUIDE_A * sqrt(n) values (the ranks of a neighbouring window's median
# move by about the root of the values that change); below _GUIDE_MIN values, or after
# _GUIDE_TRIES missed brackets, the whole window is selected among.
_GUIDE_A = 2.0
_GUIDE_MIN = 32
_GUIDE_TRIES = 3
_LONG_RUNS = 64  # mean run length from which the runs are read in place, not copied first


@njit(cache=True)
def _gather_runs(values, starts, lengths, n_runs, buf):
    """Copy the runs one after the other to ``buf``; their count."""
    n = 0
    for j in range(n_runs):
        run = values[starts[j] : starts[j] + lengths[j]]
        to = buf[n : n + run.shape[0]]
        for r in range(run.shape[0]):
            to[r] = run[r]
        n += run.shape[0]
    return n


@njit(cache=True)
def _count(a, n, lo, hi):
    """How many of a[:n] lie below ``lo``, and how many at or below ``hi``."""
    below = 0
    upto = 0
    for i in range(n):  # vectorized
        v = a[i]
        below += v < lo
        upto += v <= hi
    return below, upto


@njit(cache=True)
def _copy_inside(a, n, lo, hi, out):
    """Copy the values of a[:n] within [lo, hi] to ``out``; their count."""
    m = 0
    for i in range(n):
        v = a[i]
        out[m] = v  # branchless: out has room for all n
        m += (v >= lo) & (v <= hi)
    return m


@njit(cache=True)
def _count_runs(values, starts, lengths, n_runs, lo, hi):
    """``_count`` over the runs."""
    below = 0
    upto = 0
    for j in range(n_runs):
        b, u = _count(values[starts[j] :], lengths[j], lo, hi)
        below += b
        upto += u
    return below, upto


@njit(cache=True)
def _copy_runs(values, starts, lengths, n_runs, lo, hi, out):
    """``_copy_inside`` over the runs."""
    m = 0
    for j in range(n_runs):
        m += _copy_inside(values[starts[j] :], lengths[j], lo, hi, out[m:])
    return m


@njit(cache=True)
def _middle(buf, m, kk, odd):
    """The median from ``buf[:m]`` whose rank kk is the median's first middle rank."""
    _select(buf, m, kk)
    if odd:
        return buf[kk]
    return 0.5 * (buf[kk] + _smallest(buf, kk + 1, m))


@njit(cache=True)
def _runs_median(values, starts, lengths, n_runs, n, guide, buf, middle):
    """Median of the n values of the runs ``values[starts[j]:starts[j] + lengths[j]]``.

    Short runs are first copied to ``buf`` (one run). Neighbouring windows share most of
    their values, so their medians are close: ``guide`` holds the last median found and a
    half-width (its third entry 1 once set). Counting passes (vectorized) try the bracket
    around it, moving it towards the median when the median lies outside; only the values
    inside a bracket that holds the median are copied (to ``middle``) and selected among.
    Without a guide, or when the tries miss, all the values are selected among and the guide
    is set from them. Exact either way: the order statistics of ``_median_of``. Updates
    ``guide``.
    """
    if n == 0:
        return np.nan
    gathered = n < _LONG_RUNS * n_runs
    if gathered:  # one run in buf (the run list is the caller's work array)
        _gather_runs(values, starts, lengths, n_runs, buf)
        values, starts[0], lengths[0], n_runs = buf, 0, n, 1
    k = (n - 1) // 2
    k_hi = k + 1 - n % 2  # second middle rank for even n
    want = _GUIDE_A * np.sqrt(n)  # values wanted inside the bracket
    if n >= _GUIDE_MIN and guide[2] == 1.0:
        step = guide[1]
        lo, hi = guide[0] - step, guide[0] + step
        for _ in range(_GUIDE_TRIES):
            below, upto = _count_runs(values, starts, lengths, n_runs, lo, hi)
            if below > k:  # the median lies below the bracket
                step = 2.0 * step
                lo, hi = lo - step, lo
            elif k_hi >= upto:  # above it
                step = 2.0 * step
                lo, hi = hi, hi + step
            else:
                m = _copy_runs(values, starts, lengths, n_runs, lo, hi, middle)
                median = _middle(middle, m, k - below, k == k_hi)
                guide[0] = median
                guide[1] = 0.5 * (hi - lo) * want / m  # the width of ``want`` values here
                return median
    if not gathered:
        _gather_runs(values, starts, lengths, n_runs, buf)
    median = _middle(buf, n, k, k == k_hi)
    if n >= _GUIDE_MIN:  # the half-width of the ranks k..k + want / 2
        upper = buf[k + 1 :]
        r = min(int(0.5 * want), n - k - 2)
        _select(upper, n - k - 1, r)
        guide[0] = median
        guide[1] = upper[r] - median
        guide[2] = 1.0
    return median


@njit(cache=True)
def _weighted_lower_median(values, weights, n):
    """Smallest value whose cumulative weight reaches half the total weight; reorders both.

    A weighted quickselect: three-way partitions around a median-of-three pivot keep the part
    holding the half-weight point, so the cost is linear rather than a sort's.
    """
    if n == 0:
        return np.nan
    # half the total, less a rounding margin: a cumulative weight that equals half exactly in
    # exact arithmetic must count as reaching it whatever order the sums were taken in
    target = 0.5 * weights[:n].sum() * (1.0 - 1e-12)
    lo, hi = 0, n - 1
    below = 0.0  # weight of the values known to lie below values[lo:hi + 1]
    while lo < hi:
        a, b, c = values[lo], values[(lo + hi) // 2], values[hi]
        if a > b:
            a, b = b, a
        if b > c:
            b = c if a <= c else a
        pivot = b
        lt, i, gt = lo, lo, hi
        while i <= gt:
            v = values[i]
            if v < pivot:
                values[i], values[lt] = values[lt], v
                weights[i], weights[lt] = weights[lt], weights[i]
                lt += 1
                i += 1
            elif v > pivot:
                values[i], values[gt] = values[gt], v
                weights[i], weights[gt] = weights[gt], weights[i]
                gt -= 1
            else:
                i += 1
        w_less = weights[lo:lt].sum()
        if below + w_less >= target:
            hi = lt - 1
            continue
        w_equal = weights[lt : gt + 1].sum()
        if below + w_less + w_equal >= target:
            return pivot
        below += w_less + w_equal
        lo = gt + 1
    return values[lo]


class WindowIndex:
    """Where the rows of any window lie: a ``Window`` and the bin index offsets.

    A window is a list of neighbor bins with kernel weights (a bin read twice under the
    mirror boundary is listed twice); the rows of bin b are ``offsets[b]:offsets[b + 1]`` of
    the bin-ordered rows.
    """

    def __init__(self, window: Window, offsets: np.ndarray) -> None:
        self.window = window
        self.offsets = offsets
        self.tables = window.kernel_tables
        self.weighted = window.weighted

    def entries(self, center: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Neighbor bins, kernel weights and per-dim offsets of the window around ``center``."""
        # the plain-Python allocation: compiled code returning fresh arrays to Python fails in
        # some dask worker processes (numba: 'NRT_adapt_ndarray_to_python', 'descr' is NULL)
        buffers = python(entry_buffers)(self.tables)
        n = window_entries(center, self.tables, buffers)
        _, _, bins, weights, offsets = buffers
        return bins[:n], weights[:n], offsets[:n]

    def halo(self, centers: np.ndarray) -> tuple[WindowIndex, np.ndarray]:
        """The index of just the rows the windows of ``centers`` read, and their positions.

        A block of centers shipped to a worker needs only its halo: the rows of the bins its
        windows reach. The returned index places those rows (``positions`` into the full
        bin-ordered arrays, to slice them with) where the windows of ``centers`` look for them.
        """
        needed = np.zeros(self.offsets.size - 1, dtype=bool)
        for center in centers:
            needed[self.entries(int(center))[0]] = True
        counts = np.where(needed, np.diff(self.offsets), 0)
        local = np.zeros_like(self.offsets)
        np.cumsum(counts, out=local[1:])
        bins = np.flatnonzero(needed)
        lengths = counts[bins]
        starts = np.repeat(self.offsets[bins] - local[bins], lengths)
        positions = starts + np.arange(lengths.sum())
        return WindowIndex(self.window, local), positions

    def positions(self, center: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bin-ordered positions of the window's rows, their kernel weights and bin offsets."""
        bins, weights, offsets = self.entries(center)
        counts = self.offsets[bins + 1] - self.offsets[bins]
        starts = np.repeat(self.offsets[bins] - np.cumsum(counts) + counts, counts)
        positions = starts + np.arange(counts.sum())
        return positions, np.repeat(weights, counts), np.repeat(offsets, counts, axis=0)


@njit(cache=True)
def _run_buffers(n_dims, n_targets, max_entries):
    """Work arrays of ``_window_runs``: pos, cur, starts, lengths, n_runs and ends."""
    return (
        np.empty(n_dims, dtype=np.int64),
        np.empty(n_dims, dtype=np.int64),
        np.empty((n_targets, max_entries), dtype=np.int64),
        np.empty((n_targets, max_entries), dtype=np.int64),
        np.empty(n_targets, dtype=np.int64),
        np.empty(n_targets, dtype=np.int64),
    )


@njit(cache=True)
def _add_run(t, start, length, starts, lengths, n_runs, ends):
    """Add a run of target t (``_window_runs``), extending the last one if it ends there."""
    if length == 0:
        return
    if start == ends[t]:
        lengths[t, n_runs[t] - 1] += length
    else:
        starts[t, n_runs[t]] = start
        lengths[t, n_runs[t]] = length
        n_runs[t] += 1
    ends[t] = start + length


@njit(cache=True)
def _add_bins(t, first, end, offsets, counts, starts, lengths, n_runs, ends):  # noqa: PLR0913
    """Add the bins first..end of target t to its runs one by one."""
    for b in range(first, end + 1):
        _add_run(t, offsets[b], counts[t, b], starts, lengths, n_runs, ends)


@njit(cache=True)
def _window_runs(center, tables, box, general, offsets, runs, work):
    """The runs of every target's valid values in the window around ``center`` (the bins of
    a non-zero kernel weight) into ``work`` (``_run_buffers``): ``starts[t, :n_runs[t]]`` and
    ``lengths[t, :n_runs[t]]``; returns 1, or 0 for an empty window.

    ``_box_runs`` where it applies (``box``: the kernel weighs every offset), else
    (``general`` not None) ``_entry_runs``. Where the window's boundaries keep every row of
    bins consecutive and ``box`` holds, ``general`` is None (numba then compiles no other
    path), and -1 is returned where ``_box_runs`` does not apply (never).
    """
    _, _, _, _, n_runs, ends = work
    n_runs[:] = 0
    ends[:] = -1
    listed = _box_runs(center, tables, offsets, runs, work) if box else -1
    if listed >= 0 or general is None:
        return listed
    return _entry_runs(center, tables, offsets, runs, work)


@njit(cache=True)
def _entry_runs(center, tables, offsets, runs, work):
    """``_window_runs`` by the bins of ``window_entries``, each added as a run (a run that
    starts where the last one ended extends it)."""
    _, counts, _ = runs
    _, _, starts, lengths, n_runs, ends = work
    entries = entry_buffers(tables)
    n_entries = window_entries(center, tables, entries)
    bins = entries[2]
    for e in range(n_entries):
        for t in range(counts.shape[0]):
            _add_run(t, offsets[bins[e]], counts[t, bins[e]], starts, lengths, n_runs, ends)
    return int(n_entries > 0)


@njit(cache=True)
def _place(center, tables, pos, cur):
    """The center's place per dim into ``pos`` (``cur`` zeroed); False where the window of
    some dim is empty there."""
    strides, nb_len = tables.strides, tables.nb_len
    rest = center
    for d in range(strides.shape[0]):
        pos[d] = rest // strides[d]
        rest -= pos[d] * strides[d]
        cur[d] = 0
        if nb_len[d, pos[d]] == 0:
            return False
    return True


@njit(cache=True)
def _consecutive(j, n):
    """j[:n] is j[0], j[0] + 1, ..."""
    for e in range(1, n):
        if j[e] != j[0] + e:
            return False
    return True


@njit(cache=True)
def _box_runs(center, tables, offsets, runs, work):
    """``_window_runs`` of a window whose kernel weighs every offset, where its bins along the
    last dim (stride 1) are consecutive: each row of them is one run of a target where no bin
    of the row but the last holds invalid rows (its valid values lie one after the other).
    Returns 1, 0 for an empty window, or -1 where the bins are not consecutive. The row loop
    calls nothing in the common case (a call passing arrays costs more than the row)."""
    strides, nb_j, nb_len = tables.strides, tables.nb_j, tables.nb_len
    pos, cur, starts, lengths, n_runs, ends = work
    _, counts, before = runs
    last = strides.shape[0] - 1
    if not _place(center, tables, pos, cur):
        return 0
    j = nb_j[last, pos[last]]
    n_row = nb_len[last, pos[last]]
    if not _consecutive(j, n_row):
        return -1
    while True:
        first = j[0]
        for d in range(last):
            first += nb_j[d, pos[d], cur[d]] * strides[d]
        end = first + n_row - 1  # the row's last bin
        for t in range(counts.shape[0]):
            if before[t, end] - before[t, first] != offsets[end] - offsets[first]:
                _add_bins(t, first, end, offsets, counts, starts, lengths, n_runs, ends)
                continue
            length = before[t, end + 1] - before[t, first]
            if length == 0:
                continue
            if offsets[first] == ends[t]:
                lengths[t, n_runs[t] - 1] += length
            else:
                starts[t, n_runs[t]] = offsets[first]
                lengths[t, n_runs[t]] = length
                n_runs[t] += 1
            ends[t] = offsets[first] + length
        d = last - 1
        while d >= 0:
            cur[d] += 1
            if cur[d] < nb_len[d, pos[d]]:
                break
            cur[d] = 0
            d -= 1
        if d < 0:
            return 1


@njit(cache=True, nogil=True)
def _window_median_chunk(  # noqa: PLR0913  (numba kernel: its outputs are arguments)
    c, n_chunks, centers, tables, general, offsets, runs, max_count, out, overflow
):
    """The medians of the windows of chunk c of the centers into ``out``; ``overflow[c]``
    True where a window held more rows than the buffers (that window is left NaN, see
    check_no_overflow), or could not be listed (``_window_runs``). Each target's selection is
    guided by its last median (``_runs_median``), so the centers of a chunk are taken in
    order. ``general``: see ``_window_runs``."""
    m = centers.shape[0]
    lo, hi = c * m // n_chunks, (c + 1) * m // n_chunks
    values = runs[0]
    n_targets = values.shape[0]
    buf = np.empty(max_count)
    middle = np.empty(max_count)
    guides = np.zeros((n_targets, 3))  # per target: see _runs_median
    work = _run_buffers(tables.strides.shape[0], n_targets, tables.kweights.shape[0])
    _, _, starts, lengths, n_runs, _ = work
    box = tables.kweights.min() != 0.0
    for i in range(lo, hi):
        listed = _window_runs(centers[i], tables, box, general, offsets, runs, work)
        if listed <= 0:  # empty, or (never) not listed: an internal error
            overflow[c] |= listed < 0
            out[i] = np.nan
            continue
        for t in range(n_targets):
            n = lengths[t, : n_runs[t]].sum()
            if n > max_count:  # never past the buffers
                overflow[c] = True
                out[i, t] = np.nan
            else:
                out[i, t] = _runs_median(
                    values[t], starts[t], lengths[t], n_runs[t], n, guides[t], buf, middle
                )


@njit(cache=True)
def _list_runs(t, n_entries, buffers, offsets, counts, starts, lengths, run_weights):
    """The runs of target t's valid values in the window's bins (``window_entries`` into
    ``buffers``) with their kernel weights; returns their number."""
    bins, weights = buffers[2], buffers[3]
    n_runs = 0
    for e in range(n_entries):
        length = counts[t, bins[e]]
        if length > 0:
            starts[n_runs] = offsets[bins[e]]
            lengths[n_runs] = length
            run_weights[n_runs] = weights[e]
            n_runs += 1
    return n_runs


@njit(cache=True, nogil=True)
def _weighted_median_chunk(  # noqa: PLR0913  (numba kernel: its outputs are arguments)
    c, n_chunks, centers, tables, offsets, runs, max_count, out, overflow
):
    """``_window_median_chunk`` for a non-uniform kernel: lower weighted medians (a kernel of
    its own, so that an unweighted fit never compiles this one)."""
    m = centers.shape[0]
    lo, hi = c * m // n_chunks, (c + 1) * m // n_chunks
    values, counts, _ = runs
    buf = np.empty(max_count)
    wbuf = np.empty(max_count)
    buffers = entry_buffers(tables)
    bins = buffers[2]
    starts = np.empty(bins.shape[0], dtype=np.int64)
    lengths = np.empty(bins.shape[0], dtype=np.int64)
    run_weights = np.empty(bins.shape[0])
    for i in range(lo, hi):
        n_entries = window_entries(centers[i], tables, buffers)
        for t in range(values.shape[0]):
            n_runs = _list_runs(
                t, n_entries, buffers, offsets, counts, starts, lengths, run_weights
            )
            if lengths[:n_runs].sum() > max_count:  # never past the buffers
                overflow[c] = True
                out[i, t] = np.nan
            else:
                out[i, t] = _weighted_runs_median(
                    values[t], starts, lengths, n_runs, run_weights, buf, wbuf
                )


@njit(cache=True)
def _weighted_runs_median(values, starts, lengths, n_runs, run_weights, buf, wbuf):
    """Lower weighted median of the runs' values, those of run j weighing ``run_weights[j]``."""
    n = 0
    for j in range(n_runs):
        s = starts[j]
        for r in range(lengths[j]):
            buf[n] = values[s + r]
            wbuf[n] = run_weights[j]
            n += 1
    return _weighted_lower_median(buf, wbuf, n)


def window_median(
    centers: np.ndarray,
    index: WindowIndex,
    ys: np.ndarray | TargetRuns,
    max_count: int,
    backend: str,
) -> np.ndarray:
    """Exact median of each window's valid target values, (m, t); NaN for empty windows.

    With a non-uniform kernel it is the lower weighted median under the kernel weights (row
    weights are ignored, as for ``np.median``).

    Parameters
    ----------
    centers : (m,) flat ids of the window centers.
    index : where each window's rows lie (``WindowIndex``).
    ys : the targets' ``TargetRuns``, or ``values_in_bin_order`` output (NaN for invalid rows).
    max_count : an upper bound of the valid values in any window (sizes the buffer).
    """
    n_targets = (ys.values if isinstance(ys, TargetRuns) else ys).shape[0]
    out = np.empty((centers.size, n_targets))
    if centers.size == 0:
        return out
    if backend == "numba":
        runs = ys if isinstance(ys, TargetRuns) else target_runs(ys, index.offsets, backend)
        n_chunks = max(1, min(num_threads() * 4, centers.size))
        overflow = np.zeros(n_chunks, dtype=np.bool_)
        args = (index.tables, index.offsets, runs, max(int(max_count), 1), out, overflow)
        if index.weighted:
            run_chunks(_weighted_median_chunk, n_chunks, centers.astype(np.int64), *args)
        else:
            window = index.window
            rows_kept = all(mode in ("truncate", "shrink") for mode in window.modes)
            general = None if rows_kept and window.weights.min() != 0.0 else True
            run_chunks(
                _window_median_chunk,
                n_chunks,
                centers.astype(np.int64),
                args[0],
                general,
                *args[1:],
            )
        check_no_overflow(overflow)
        return out
    if isinstance(ys, TargetRuns):
        ys = ys.values  # NaN marks the invalid rows in this layout too
    for i, center in enumerate(centers):
        positions, weights, _ = index.positions(int(center))
        for t in range(ys.shape[0]):
            values = ys[t, positions]
            valid = ~np.isnan(values)
            v, w = values[valid], weights[valid]
            if not v.size:
                out[i, t] = np.nan
            elif index.weighted:
                order = np.argsort(v, kind="mergesort")
                cumulative = np.cumsum(w[order])
                half = 0.5 * w.sum() * (1.0 - 1e-12)  # see _weighted_lower_median
                out[i, t] = v[order][np.searchsorted(cumulative, half)]
            else:
                out[i, t] = np.median(v)
    return out


def check_no_overflow(overflow: np.ndarray) -> None:
    """A kernel found more valid rows in a window than its statistics counted: a broken
    invariant (one validity rule for every pass), reported instead of writing past a buffer."""
    if overflow.any():
        raise RuntimeError(
            "xslide internal error: a window holds more valid rows than its statistics count; "
            "please report it with the data that triggers it"
        )


def _median_block(work: tuple, block: np.ndarray) -> np.ndarray:
    index, ys, max_count, backend = work
    return window_median(block, index, ys, max_count, backend)


def _median_halo(work: tuple, block: np.ndarray) -> tuple:
    """The rows the windows of ``block`` read, for a cluster worker."""
    index, runs, max_count, backend = work
    local, positions = index.halo(block)
    shipped = np.diff(local.offsets) > 0  # bins outside the halo are empty there
    counts = np.where(shipped, runs.counts, 0)
    return local, TargetRuns.of(runs.values[:, positions], counts), max_count, backend


def window_medians(
    centers: np.ndarray,
    index: WindowIndex,
    runs: TargetRuns,
    max_count: int,
    backend: str,
    parallel: Parallel,
    progress: bool | None = None,
) -> np.ndarray:
    """``window_median`` here (in blocks of centers when a progress bar may show), or in
    blocks with their halo rows on a cluster."""
    work = (index, runs, max_count, backend)
    with progress_bar(centers.size, progress, "xslide median", " windows", scale=True) as bar:
        if parallel.client is None:
            blocks = bar_blocks(centers, bar, MEDIAN_BLOCK)
            ship = None
        else:
            blocks, ship = split(centers, 4 * parallel.workers), _median_halo
        local = Parallel() if parallel.client is None else parallel  # numba threads here
        parts = list(local.map(_median_block, work, blocks, ship=ship, bar=bar))
    return np.concatenate(parts) if parts else np.empty((0, runs.values.shape[0]))
