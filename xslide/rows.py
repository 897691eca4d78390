"""Raw-row paths: statistics that need the rows themselves, reached through the bin index.

The bin index (``grid.bin_index``) lists the rows of every bin contiguously, so the rows of a
window are a few contiguous runs (one per line of bins along the last dim) of an array of
target values laid out in bin order. Nothing is copied per window but into one reusable buffer.
"""

from __future__ import annotations

import numpy as np

from ._numba import njit, num_threads, prange


def values_in_bin_order(
    order: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray | None
) -> np.ndarray:
    """Targets of the indexed rows in bin order, (t, n_indexed); NaN where a row is invalid."""
    ys = y[:, order]
    bad = np.zeros(order.size, dtype=bool)
    for row in x:
        bad |= ~np.isfinite(row[order])
    if w is not None:
        bad |= ~np.isfinite(w[order])
    ys[:, bad] = np.nan
    ys[~np.isfinite(ys)] = np.nan
    return ys


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


_SAMPLE = 256  # sample size of the bracketing step
_BRACKET = 24  # half-width of the bracket in sample ranks (3 standard deviations)


@njit(cache=True)
def _median_bracketed(a, n, sample, middle):
    """Median of a[:n], selecting only among the values inside a bracket around it.

    A stratified sample of the values gives two order statistics that bracket the median with
    high probability; one branchless pass counts the values below the bracket and copies those
    inside it, and the selection runs on that small copy. When the bracket misses the median
    (rarely), the full selection runs instead. Exact either way.
    """
    if n < 4 * _SAMPLE:
        return _median_of(a, n)
    k = (n - 1) // 2
    k_hi = k + 1 - n % 2  # second middle rank for even n
    for i in range(_SAMPLE):
        sample[i] = a[(i * n) // _SAMPLE]
    ks = (k * _SAMPLE) // n
    r_lo = max(ks - _BRACKET, 0)
    r_hi = min(ks + _BRACKET, _SAMPLE - 1)
    _select(sample, _SAMPLE, r_lo)
    lo = sample[r_lo]
    upper = sample[r_lo + 1 :]
    _select(upper, _SAMPLE - r_lo - 1, r_hi - r_lo - 1)
    hi = upper[r_hi - r_lo - 1]
    below = 0
    m = 0
    for i in range(n):
        v = a[i]
        below += v < lo
        middle[m] = v
        m += (v >= lo) & (v <= hi)
    if below > k or k_hi >= below + m:
        return _median_of(a, n)
    kk = k - below
    _select(middle, m, kk)
    if k_hi == k:
        return middle[kk]
    return 0.5 * (middle[kk] + _smallest(middle, kk + 1, m))


class WindowIndex:
    """Where the rows of any window lie in bin order: the grid, the window and the bin index.

    A window is a box of bins; its rows are one contiguous run of the bin-ordered rows per line
    of bins along the last dim (truncate boundary: the box is clipped to the grid).
    """

    def __init__(self, shape, half_widths, offsets: np.ndarray) -> None:
        self.shape = np.asarray(shape, dtype=np.int64)
        self.half = np.asarray(half_widths, dtype=np.int64)
        self.offsets = offsets
        self.strides = np.ones(len(shape), dtype=np.int64)
        for d in range(len(shape) - 2, -1, -1):
            self.strides[d] = self.strides[d + 1] * self.shape[d + 1]
        lines = 1
        for w, n in zip(half_widths[:-1], shape[:-1], strict=True):
            lines *= min(2 * w + 1, n)
        self.max_runs = max(lines, 1)

    def scratch(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per-thread work arrays of ``_window_runs``: lo, hi, cursor and the runs."""
        d = self.shape.size
        return (
            np.empty(d, dtype=np.int64),
            np.empty(d, dtype=np.int64),
            np.empty(d, dtype=np.int64),
            np.empty((self.max_runs, 2), dtype=np.int64),
        )

    def positions(self, center: int) -> np.ndarray:
        """Positions in the bin-ordered rows of the window around ``center``."""
        lo, hi, cur, runs = self.scratch()
        n_runs = _window_runs(
            center, self.shape, self.strides, self.half, self.offsets, lo, hi, cur, runs
        )
        return np.concatenate([np.arange(r0, r1) for r0, r1 in runs[:n_runs]])


@njit(cache=True)
def _window_runs(center, shape, strides, half, offsets, lo, hi, cur, runs):
    """Fill ``runs`` with the [start, stop) ranges of bin-ordered rows of a window; count them."""
    n_dims = shape.shape[0]
    rest = center
    for d in range(n_dims):
        pos = rest // strides[d]
        rest -= pos * strides[d]
        lo[d] = max(0, pos - half[d])
        hi[d] = min(shape[d] - 1, pos + half[d])
        cur[d] = lo[d]
    last = n_dims - 1
    n_runs = 0
    while True:
        base = 0
        for d in range(last):
            base += cur[d] * strides[d]
        runs[n_runs, 0] = offsets[base + lo[last]]
        runs[n_runs, 1] = offsets[base + hi[last] + 1]
        n_runs += 1
        # odometer over all dims but the last
        d = last - 1
        while d >= 0:
            cur[d] += 1
            if cur[d] <= hi[d]:
                break
            cur[d] = lo[d]
            d -= 1
        if d < 0:
            return n_runs


@njit(cache=True, parallel=True)
def _window_median_numba(
    centers, shape, strides, half, offsets, max_runs, ys, max_count, n_chunks, out
):
    n_targets = ys.shape[0]
    n_dims = shape.shape[0]
    m = centers.shape[0]
    for c in prange(n_chunks):
        buf = np.empty((n_targets, max_count))
        sample = np.empty(_SAMPLE)
        middle = np.empty(max_count)
        lo = np.empty(n_dims, dtype=np.int64)
        hi = np.empty(n_dims, dtype=np.int64)
        cur = np.empty(n_dims, dtype=np.int64)
        runs = np.empty((max_runs, 2), dtype=np.int64)
        for i in range(c * m // n_chunks, (c + 1) * m // n_chunks):
            n_runs = _window_runs(centers[i], shape, strides, half, offsets, lo, hi, cur, runs)
            for t in range(n_targets):
                k = 0
                for j in range(n_runs):
                    for r in range(runs[j, 0], runs[j, 1]):
                        v = ys[t, r]
                        if v == v:
                            buf[t, k] = v
                            k += 1
                out[i, t] = _median_bracketed(buf[t], k, sample, middle)


def window_median(
    centers: np.ndarray,
    index: WindowIndex,
    ys: np.ndarray,
    max_count: int,
    backend: str,
) -> np.ndarray:
    """Exact median of each window's valid target values, (m, t); NaN for empty windows.

    Parameters
    ----------
    centers : (m,) flat ids of the window centers.
    index : where each window's rows lie (``WindowIndex``).
    ys : ``values_in_bin_order`` output, NaN for invalid rows.
    max_count : an upper bound of the valid values in any window (sizes the buffer).
    """
    out = np.empty((centers.size, ys.shape[0]))
    if centers.size == 0:
        return out
    if backend == "numba":
        n_chunks = max(1, min(num_threads() * 4, centers.size))
        _window_median_numba(
            centers.astype(np.int64),
            index.shape,
            index.strides,
            index.half,
            index.offsets,
            index.max_runs,
            ys,
            max(int(max_count), 1),
            n_chunks,
            out,
        )
        return out
    for i, center in enumerate(centers):
        values = ys[:, index.positions(int(center))]
        for t in range(ys.shape[0]):
            v = values[t][~np.isnan(values[t])]
            out[i, t] = np.median(v) if v.size else np.nan
    return out
