"""Window specifications and windowed sums over the bin dims of a grid of statistics."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, NamedTuple, TypeVar

import numpy as np

from . import _numba
from ._numba import njit, num_threads, run_chunks
from .errors import InvalidWindowSpec
from .stats import COUNT, COUNT_POSITIVE, FIRST_MOMENT, SUM_W2, moment_index, n_stats

T = TypeVar("T")

# A dim's window: a half-width w (offsets -w..+w) or a pair (before, after) (offsets
# -before..+after, e.g. (100, 0) trailing); ``span`` turns either into the pair.
Extent = int | tuple[int, int]


def span(extent: Extent) -> tuple[int, int]:
    """The (before, after) reach of a dim's window: w -> (w, w), a pair as it is."""
    if isinstance(extent, tuple | list | np.ndarray):
        before, after = extent
        return int(before), int(after)
    return int(extent), int(extent)


def spans(extents: Sequence[Extent]) -> tuple[tuple[int, int], ...]:
    """``span`` of every dim."""
    return tuple(span(e) for e in extents)


def window_volume(extents: Sequence[Extent]) -> int:
    """Number of bins in a full (not clipped) window."""
    return int(np.prod([b + a + 1 for b, a in spans(extents)], dtype=np.int64))


#: An axis whose window spans this many bins or more is summed by running sums (add the bin
#: entering, subtract the one leaving: two compensated additions per bin and channel, whatever
#: the window) instead of directly (before + after plain additions per bin). Measured on 1M
#: bins, 9 sums per bin: on a 100x100x100 grid the two cost the same near 9-11 bins per axis
#: and running sums are 1.6x faster at 17 (2.1x at 33, under load); on a 1-D series they are
#: faster from 3 bins on (2.8x at 17). 16 keeps the small windows (the benchmark references'
#: ±1 and ±2) on the direct path, bit for bit as before, and takes every window where running
#: sums clearly win.
RUNNING_FROM = 16
#: Running sums restart from a direct sum every this many steps, so that the rounding of the
#: subtractions cannot build up along a long axis (a restart costs one window's additions).
RUNNING_RESTART = 4096


def window_sum(grid_values: np.ndarray, extents: Sequence[Extent]) -> np.ndarray:
    """Box sums over the leading ``len(extents)`` axes; bins outside the grid count zero.

    An axis whose window spans fewer than ``RUNNING_FROM`` bins is summed directly over its
    before + after + 1 neighbors (``ndimage.correlate1d``, shifted by its ``origin`` for an
    asymmetric window), so no rounding error builds up along the axis; a longer one by
    differences of prefix sums (``_prefix_window_sums``), whose cost does not grow with the
    window. A window of 0 leaves the axis as it is.
    """
    from scipy import ndimage  # here, not at import: ``import xslide`` stays light

    out = grid_values
    for axis, (before, after) in enumerate(spans(extents)):
        size = before + after + 1
        if size >= RUNNING_FROM:
            out = _prefix_window_sums(out, axis, before, after)
        elif before or after:
            out = ndimage.correlate1d(
                out, np.ones(size), axis=axis, mode="constant", cval=0.0,
                origin=before - size // 2,
            )  # fmt: skip
    return out


def _prefix_window_sums(values: np.ndarray, axis: int, before: int, after: int) -> np.ndarray:
    """Box sums of offsets -before..after along ``axis`` as differences of prefix sums, the
    prefix sums restarting every block of ``max(RUNNING_RESTART, window)`` centers, so that
    their rounding stays that of a sum of a few thousand bins (relative 1e-12 or better of
    the window's magnitudes), whatever the length of the axis."""
    moved = np.moveaxis(np.asarray(values, dtype=np.float64), axis, 0)
    n = moved.shape[0]
    out = np.empty_like(moved)
    if not np.all(np.isfinite(moved)):  # inf - inf: sum such an axis directly
        from scipy import ndimage

        size = before + after + 1
        return ndimage.correlate1d(
            values, np.ones(size), axis=axis, mode="constant", cval=0.0,
            origin=before - size // 2,
        )  # fmt: skip
    block = max(RUNNING_RESTART, before + after + 1)
    for start in range(0, n, block):
        stop = min(start + block, n)
        lo, hi = max(start - before, 0), min(stop + after, n)
        prefix = np.zeros((hi - lo + 1, *moved.shape[1:]))
        np.cumsum(moved[lo:hi], axis=0, out=prefix[1:])
        i = np.arange(start, stop)
        upper = np.minimum(i + after + 1, hi) - lo
        lower = np.maximum(i - before, lo) - lo
        out[start:stop] = prefix[upper] - prefix[lower]
    return np.moveaxis(out, 0, axis)


class Kernel(NamedTuple):
    """A window's kernel as the options give it: a named kernel with its width per dim, a
    callable of integer offsets, or an explicit weights array over the whole window."""

    name: str  # a named kernel, 'callable' or 'array' (its name in the attrs)
    value: Any  # the name, the callable or the array
    widths: tuple[float, ...] = ()  # per dim, for the named kernels


def kernel_weights(
    kernel: Kernel, extents: Sequence[Extent], reach: Sequence[Extent] | None = None
) -> tuple[np.ndarray, int]:
    """The kernel weight of every offset ``-before_d <= o_d <= after_d`` of ``reach`` and the
    window's volume.

    ``extents`` is the window per dim (a half-width or (before, after)); ``reach`` (default
    ``extents``) the part of it that can meet the grid: a window wider than the grid is built
    no wider than the grid. The weights have shape (before + after + 1) per dim, the center at
    index ``before``. The volume, the number of offsets of the whole window with a non-zero
    weight, is counted without building the whole window where the kernel is named. Named
    kernels ('uniform', 'gaussian': exp(-(o/h)²/2), 'epanechnikov': 1 - (o/(h+1))², 'linear':
    1 - |o|/(h+1)) are products over dims of profiles of the offset o from the center, so a
    trailing window's kernel is one-sided.
    """
    full_spans = spans(extents)
    reach = full_spans if reach is None else spans(reach)
    if kernel.name in _PROFILES or kernel.name == "uniform":
        return _named_weights(kernel, full_spans, reach)
    shape = tuple(b + a + 1 for b, a in full_spans)
    if callable(kernel.value):
        offsets = np.meshgrid(*[np.arange(-b, a + 1) for b, a in full_spans], indexing="ij")
        try:
            full = np.broadcast_to(np.asarray(kernel.value(*offsets), dtype=np.float64), shape)
        except ValueError as err:
            raise ValueError(
                f"kernel callable must return weights of shape {shape}: {err}"
            ) from None
    else:
        full = np.asarray(kernel.value, dtype=np.float64)
        if full.shape != shape:
            raise ValueError(
                f"kernel array must have shape {shape} (before + after + 1 per dim, "
                f"2 x half-width + 1 for a symmetric window), got {full.shape}"
            )
    if not np.all(np.isfinite(full)) or np.any(full < 0) or not np.any(full > 0):
        raise ValueError("kernel weights must be finite, >= 0 and not all zero")
    center = tuple(
        slice(b - rb, b + ra + 1) for (b, _), (rb, ra) in zip(full_spans, reach, strict=True)
    )
    return np.array(full[center], dtype=np.float64), int(np.count_nonzero(full))


def kernel_is_uniform(kernel: Kernel, extents: Sequence[Extent]) -> bool:
    """Whether every offset of the whole (unclipped) window weighs exactly 1."""
    if kernel.name == "uniform":
        return True
    if kernel.name in _PROFILES:
        # a product of profiles <= 1 that fall with |o|: all 1 only where each profile is 1
        # at its farthest offsets (taken as floats: widths may pass int64)
        profile = _PROFILES[kernel.name]
        return all(
            float(profile(np.float64(max(b, a)), h)) == 1.0
            for (b, a), h in zip(spans(extents), kernel.widths, strict=True)
        )
    weights, _ = kernel_weights(kernel, extents)
    return bool(np.all(weights == 1.0))


def _named_weights(kernel: Kernel, full_spans, reach) -> tuple[np.ndarray, int]:
    """A named kernel over ``-before_d <= o_d <= after_d`` of ``reach``, and its volume over
    the whole window."""
    weights = np.ones(tuple(b + a + 1 for b, a in reach))
    volume = 1
    for axis, ((b, a), (rb, ra)) in enumerate(zip(full_spans, reach, strict=True)):
        if kernel.name == "uniform":
            volume *= b + a + 1
            continue
        profile = _PROFILES[kernel.name]
        h = kernel.widths[axis]
        view = [1] * weights.ndim
        view[axis] = rb + ra + 1
        weights = weights * profile(np.arange(-rb, ra + 1), h).reshape(view)
        volume *= _last_nonzero(profile, h, b) + _last_nonzero(profile, h, a) + 1
    return weights, volume


def _last_nonzero(profile, h: float, w: int) -> int:
    """The largest offset ``o <= w`` of non-zero weight (the profiles fall with ``|o|``)."""
    lo, hi = 0, w  # profile(0) = 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if profile(np.array([float(mid)]), h)[0] > 0:
            lo = mid
        else:
            hi = mid - 1
    return lo


# the per-dim profile of each named kernel: offsets o, width h -> weights
_PROFILES = {
    "gaussian": lambda o, h: np.exp(-0.5 * (o / h) ** 2),
    "epanechnikov": lambda o, h: np.clip(1.0 - (o / (h + 1.0)) ** 2, 0.0, None),
    "linear": lambda o, h: np.clip(1.0 - np.abs(o) / (h + 1.0), 0.0, None),
}


def check_periodic(n: int, extent: Extent, dim: str | None = None) -> None:
    """A periodic window may not be wider than its dim: it would read a bin twice."""
    before, after = span(extent)
    size = before + after + 1
    if size > n:
        name = f" of {dim!r}" if dim else ""
        what = f"half-width {before}" if before == after else f"(before, after) {(before, after)}"
        raise InvalidWindowSpec(
            f"a periodic window of {what} spans {size} bins, more than the "
            f"{n} bins of the dim{name}; give extent= the full period or a smaller window"
        )


def shrunk_span(
    g: np.ndarray, before: int, after: int, n_global: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shrink's window at global bins ``g`` of a dim of ``n_global`` bins: the largest window of
    the same shape that fits, (before, after) scaled by the largest r <= 1 with
    g - r·before >= 0 and g + r·after <= n_global - 1, each rounded down.

    A symmetric window keeps its midpoint at g (min(w, g, n_global - 1 - g) on each side);
    a trailing one (after = 0) becomes (min(before, g), 0). Exact integer arithmetic: r is the
    smaller of the ratios room / reach of the two sides (and 1).
    """
    g = np.asarray(g, dtype=np.int64)
    # r = num / den: start at 1 and lower it to each side's room / reach where smaller
    num = np.ones_like(g)
    den = np.ones_like(g)
    for room, reach in ((g, before), (n_global - 1 - g, after)):
        if reach > 0:
            lower = room * den < num * reach
            num = np.where(lower, room, num)
            den = np.where(lower, reach, den)
    return before * num // den, after * num // den


def neighbor_table(
    n: int,
    extent: Extent,
    mode: str,
    origin: int = 0,
    n_global: int | None = None,
    full: Extent | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every bin c of a dim: the bins j its window reads and their offsets o.

    ``extent`` is the half-width w (offsets -w..w) or (before, after) (offsets
    -before..after). The dim may be a chunk: its ``n`` bins start at bin ``origin`` of a dim of
    ``n_global`` bins (the whole dim by default), so that the edges are the grid's, not the
    chunk's; a chunk of a periodic dim carries its wrapped halo, so its neighbors are found
    inside it. Returns ``j`` and ``o`` of shape (n, before + after + 1), in offset order and
    padded with zeros, and the number of entries used per bin. truncate: offsets whose bin lies
    outside are dropped; periodic: j = (c + o) mod n; mirror: reflected at the edges (index -1
    reads bin 0), a bin may appear twice; shrink: the largest window of the same shape as
    ``full`` (the unclipped window, when ``extent`` is clipped to the grid; default
    ``extent``) that fits (``shrunk_span``; min(w, c, n - 1 - c) per side for a symmetric
    window, so c stays its midpoint).
    """
    before, after = span(extent)
    n_global = n if n_global is None else n_global
    if mode == "periodic":
        check_periodic(n_global, (before, after))
    g = origin + np.arange(n)[:, None]  # global bin of every cell
    o = np.broadcast_to(np.arange(-before, after + 1), (n, before + after + 1))
    u = g + o
    if mode == "mirror":
        folded = u % (2 * n_global)
        u = np.where(folded < n_global, folded, 2 * n_global - 1 - folded)
    local = u - origin
    inside = (local >= 0) & (local < n)
    if mode == "periodic":
        local = np.where(inside, local, u % n_global - origin)
        inside = (local >= 0) & (local < n)
    if mode == "shrink":
        left, right = shrunk_span(g, *span(extent if full is None else full), n_global)
        left, right = np.minimum(left, before), np.minimum(right, after)
        inside &= (o >= -left) & (o <= right)
    # the kept entries of every row first, in offset order; zeros after them
    order = np.argsort(~inside, axis=1, kind="stable")
    kept = np.take_along_axis(inside, order, axis=1)
    j = np.where(kept, np.take_along_axis(local, order, axis=1), 0).astype(np.int64)
    off = np.where(kept, np.take_along_axis(o, order, axis=1), 0).astype(np.int64)
    return j, off, inside.sum(axis=1).astype(np.int64)


@dataclass(frozen=True, eq=False)
class Window:
    """A window on a grid: its reach and boundary per dim and the kernel weight per offset.

    The reach per dim is a half-width w or (before, after): offsets -before..+after. The grid
    may be a chunk of a larger grid (``origin``: its first bin's global place per dim,
    ``global_shape``: the whole grid's shape), whose edges decide mirror and shrink.
    """

    shape: tuple[int, ...]
    extents: tuple[Extent, ...]  # per dim: w or (before, after)
    modes: tuple[str, ...]
    weights: np.ndarray  # (before_d + after_d + 1, ...) kernel weight per offset
    origin: tuple[int, ...] | None = None
    global_shape: tuple[int, ...] | None = None
    full_volume: int | None = None  # non-zero offsets of a window wider than its grid
    # the unclipped window per dim, whose shape shrink keeps (default: ``extents``)
    full_extents: tuple[Extent, ...] | None = None
    kernel_uniform: bool | None = None  # every offset of the unclipped window weighs 1

    @cached_property
    def spans(self) -> tuple[tuple[int, int], ...]:
        """(before, after) per dim."""
        return spans(self.extents)

    @property
    def symmetric(self) -> bool:
        """Every dim reaches as far before its center as after it."""
        return all(b == a for b, a in self.spans)

    @property
    def weighted(self) -> bool:
        """A non-uniform kernel: the median is then the lower weighted median, also where
        the window is clipped to a grid so narrow that the offsets left weigh the same."""
        if self.kernel_uniform is not None:
            return not self.kernel_uniform
        return not bool(np.all(self.weights == 1.0))

    @property
    def is_box(self) -> bool:
        """Uniform weights and truncated edges: plain box sums do the windowing."""
        return all(m == "truncate" for m in self.modes) and bool(np.all(self.weights == 1.0))

    @property
    def volume(self) -> int:
        """Offsets of the window with a non-zero kernel weight (before clipping to the grid)."""
        if self.full_volume is not None:
            return self.full_volume
        return int(np.count_nonzero(self.weights))

    @cached_property
    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per dim neighbor bins and offsets, padded: (D, max n, L), (D, max n, L), (D, max n)."""
        n_max = max(self.shape)
        width = max(b + a + 1 for b, a in self.spans)
        j = np.zeros((len(self.shape), n_max, width), dtype=np.int64)
        o = np.zeros_like(j)
        length = np.zeros((len(self.shape), n_max), dtype=np.int64)
        origin = self.origin or (0,) * len(self.shape)
        n_global = self.global_shape or self.shape
        for d, n in enumerate(self.shape):
            full = None if self.full_extents is None else self.full_extents[d]
            jd, od, ld = neighbor_table(
                n, self.spans[d], self.modes[d], origin[d], n_global[d], full
            )
            j[d, :n, : jd.shape[1]] = jd
            o[d, :n, : od.shape[1]] = od
            length[d, :n] = ld
        return j, o, length

    @cached_property
    def kernel_tables(self) -> WindowTables:
        """The window as the numba kernels read it."""
        nb_j, nb_o, nb_len = self.tables
        return WindowTables(
            np.asarray(self.shape, dtype=np.int64),
            _c_strides(self.shape),
            nb_j,
            nb_o,
            nb_len,
            np.asarray([b for b, _ in self.spans], dtype=np.int64),
            np.ascontiguousarray(self.weights.ravel()),
            _c_strides(self.weights.shape),
        )


class WindowTables(NamedTuple):
    """A window as numba kernels take it: one argument instead of eight arrays."""

    shape: np.ndarray  # (D,) bins per dim
    strides: np.ndarray  # (D,) C-order strides of the grid
    nb_j: np.ndarray  # (D, max n, L) neighbor bins per dim and bin, padded
    nb_o: np.ndarray  # (D, max n, L) their offsets
    nb_len: np.ndarray  # (D, max n) entries used
    before: np.ndarray  # (D,) reach before the center: the kernel index of offset o is o + before
    kweights: np.ndarray  # kernel weight per offset, flat
    kstrides: np.ndarray  # (D,) C-order strides of the kernel weights


def _c_strides(shape: Sequence[int]) -> np.ndarray:
    strides = np.ones(len(shape), dtype=np.int64)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    return strides


@njit(cache=True)
def entry_buffers(tables):
    """Work arrays of ``window_entries``: pos, cur, bins, weights and offsets."""
    n_dims = tables.shape.shape[0]
    max_entries = tables.kweights.shape[0]
    return (
        np.empty(n_dims, dtype=np.int64),
        np.empty(n_dims, dtype=np.int64),
        np.empty(max_entries, dtype=np.int64),
        np.empty(max_entries),
        np.empty((max_entries, n_dims), dtype=np.int64),
    )


@njit(cache=True)
def window_entries(center, tables, buffers):
    """List the bins of the window around ``center`` with a non-zero kernel weight.

    Fills the ``bins``, ``weights`` and ``offsets`` of ``buffers`` (from ``entry_buffers``; one
    row of per-dim offsets per entry) and returns the count. A bin read twice (mirror) is
    listed twice.
    """
    strides, nb_j, nb_o, nb_len = tables.strides, tables.nb_j, tables.nb_o, tables.nb_len
    before, kweights, kstrides = tables.before, tables.kweights, tables.kstrides
    pos, cur, bins, weights, offsets = buffers
    n_dims = tables.shape.shape[0]
    rest = center
    for d in range(n_dims):
        pos[d] = rest // strides[d]
        rest -= pos[d] * strides[d]
        cur[d] = 0
        if nb_len[d, pos[d]] == 0:
            return 0
    n = 0
    while True:
        b = 0
        k = 0
        for d in range(n_dims):
            b += nb_j[d, pos[d], cur[d]] * strides[d]
            k += (nb_o[d, pos[d], cur[d]] + before[d]) * kstrides[d]
        wt = kweights[k]
        if wt != 0.0:
            bins[n] = b
            weights[n] = wt
            for d in range(n_dims):
                offsets[n, d] = nb_o[d, pos[d], cur[d]]
            n += 1
        d = n_dims - 1
        while d >= 0:
            cur[d] += 1
            if cur[d] < nb_len[d, pos[d]]:
                break
            cur[d] = 0
            d -= 1
        if d < 0:
            return n


def trend_layout(n_columns: int, n_trend: int) -> np.ndarray:
    """How each packed moment of the trend-augmented design comes from a bin's moments.

    The augmented z' = (1, design columns, offsets o_1..o_D, target) of a row in a bin at
    window offset o is the bin's z with the constant offsets inserted, so each moment is a bin
    moment times a product of offsets: rows of (source slot, offset index or -1, offset index
    or -1) per packed slot of z', from FIRST_MOMENT on.
    """
    size = n_columns + 1
    source = moment_index(n_columns)

    def origin(p: int) -> tuple[int, int]:
        """(column of z, offset index) of position p of z'; one of them is -1."""
        if p < n_columns:
            return p, -1
        if p < n_columns + n_trend:
            return -1, p - n_columns
        return size - 1, -1

    rows = []
    total = size + n_trend
    for a in range(total):
        for b in range(a, total):
            (ca, oa), (cb, ob) = origin(a), origin(b)
            # a missing z column is the constant 1 (column 0) times the offset
            rows.append((source[max(ca, 0), max(cb, 0)], oa, ob))
    return np.asarray(rows, dtype=np.int64)


@njit(cache=True, nogil=True)
def _neighbor_sums(  # noqa: PLR0913  (numba kernel: its outputs are arguments)
    c, n_chunks, centers, tables, stats, rows, moments, out, out_rows, out_bins
):
    """``neighbor_sums`` of chunk c's centers."""
    n_bins, n_targets, _ = stats.shape
    m = centers.shape[0]
    trend, layout = moments.trend, moments.table
    n_slots = layout.shape[0]
    buffers = entry_buffers(tables)
    _, _, bins, weights, offsets = buffers
    seen = np.full(n_bins, -1, dtype=np.int64)
    factor = np.empty(trend.shape[0] + 1)
    factor[trend.shape[0]] = 1.0  # index -1: no offset
    for i in range(c * m // n_chunks, (c + 1) * m // n_chunks):
        n = window_entries(centers[i], tables, buffers)
        out[i] = 0.0
        total_rows = 0
        distinct = 0
        for e in range(n):
            b = bins[e]
            wt = weights[e]
            if rows[b] == 0:
                continue
            total_rows += rows[b]
            if seen[b] != i:
                seen[b] = i
                distinct += 1
            trend_values(offsets, e, trend, factor)
            for t in range(n_targets):
                s = stats[b, t]
                o = out[i, t]
                o[COUNT] += s[COUNT]
                o[COUNT_POSITIVE] += s[COUNT_POSITIVE]
                o[SUM_W2] += wt * wt * s[SUM_W2]
                for k in range(n_slots):
                    o[FIRST_MOMENT + k] += (
                        wt * factor[layout[k, 1]] * factor[layout[k, 2]] * s[layout[k, 0]]
                    )
        out_rows[i] = total_rows
        out_bins[i] = distinct


@njit(cache=True, inline="always")
def trend_values(offsets, e, trend, out):
    """The trend columns of entry e at window offsets ``offsets[e]`` (one per dim) into
    ``out[:k]``: each the product of the offsets of its dims (``trend`` row (a, b), b = -1
    for one dim)."""
    for j in range(trend.shape[0]):
        value = float(offsets[e, trend[j, 0]])
        if trend[j, 1] >= 0:
            value *= offsets[e, trend[j, 1]]
        out[j] = value


def trend_columns(offsets: np.ndarray, trend: np.ndarray) -> np.ndarray:
    """``trend_values`` of many rows: (n, k) trend columns of rows at window offsets (n, D)."""
    offsets = np.asarray(offsets, dtype=np.float64).reshape(-1, offsets.shape[-1])
    columns = offsets[:, trend[:, 0]]
    second = trend[:, 1] >= 0
    columns[:, second] *= offsets[:, trend[second, 1]]
    return columns


def trend_terms(
    dims: Sequence[str], orders: Sequence[int], interactions: bool
) -> tuple[tuple[str, ...], np.ndarray]:
    """The trend terms of a local polynomial of ``orders[d]`` (0, 1 or 2) per dim: their names
    and their (k, 2) table of dims (see ``trend_values``).

    ``d_{dim}`` (the offset) for every dim of order >= 1, then ``d2_{dim}`` (the offset
    squared) for every dim of order 2, then with ``interactions`` ``d_{a}:d_{b}`` for every
    pair of dims of order >= 1: intercept = the local value, ``d_`` = the first derivative
    per bin, ``d2_`` = half the second derivative per bin².
    """
    linear = [d for d, order in enumerate(orders) if order >= 1]
    rows = [(d, -1) for d in linear] + [(d, d) for d, order in enumerate(orders) if order == 2]
    if interactions:
        rows += [(a, b) for i, a in enumerate(linear) for b in linear[i + 1 :]]
    names = tuple(
        f"d_{dims[a]}" if b < 0 else f"d2_{dims[a]}" if a == b else f"d_{dims[a]}:d_{dims[b]}"
        for a, b in rows
    )
    return names, np.asarray(rows, dtype=np.int64).reshape(len(rows), 2)


def trend_term_dims(term: str, dims: Sequence[str]) -> tuple[int, int] | None:
    """The dims (a, b) of a trend term's column, as in ``trend_terms`` (b = -1 for ``d_{dim}``),
    from its name; None for another term."""
    if term.startswith("d2_") and term[3:] in dims:
        return dims.index(term[3:]), dims.index(term[3:])
    first, colon, second = term.partition(":")
    if colon and first.startswith("d_") and second.startswith("d_"):
        if first[2:] in dims and second[2:] in dims:
            return dims.index(first[2:]), dims.index(second[2:])
        return None
    if term.startswith("d_") and term[2:] in dims:
        return dims.index(term[2:]), -1
    return None


class MomentLayout(NamedTuple):
    """How the windowed moments come from the bins' moments (see ``trend_layout``)."""

    trend: np.ndarray  # (k, 2) int64: the dims whose offsets multiply into each trend column
    table: np.ndarray  # (slots, 3) int64: source slot, offset index or -1, offset index or -1


def moment_layout(n_columns: int, trend: np.ndarray) -> MomentLayout:
    """The layout of the design of ``n_columns`` columns, augmented by the trend columns of
    ``trend`` (see ``trend_terms``); without trend every moment maps to itself."""
    trend = np.asarray(trend, dtype=np.int64).reshape(-1, 2)
    if trend.shape[0]:
        return MomentLayout(trend, trend_layout(n_columns, trend.shape[0]))
    moments = np.arange(FIRST_MOMENT, n_stats(n_columns), dtype=np.int64)
    return MomentLayout(trend, np.column_stack([moments, np.full((moments.size, 2), -1)]))


def neighbor_sums(
    window: Window, centers: np.ndarray, sums: np.ndarray, rows: np.ndarray, layout: MomentLayout
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windowed statistics at ``centers`` for any boundary, kernel and trend, by visiting the
    neighbor bins of every window.

    Each neighbor bin adds its counts, its Σw² times the kernel weight squared and its moments
    times the kernel weight (and the offsets the layout asks for). Returns the sums
    (m, t, n_stats'), the rows in each window (every appearance counted) and the distinct bins
    with rows in each window.
    """
    m = centers.size
    out = np.empty((m, sums.shape[1], FIRST_MOMENT + layout.table.shape[0]))
    out_rows = np.zeros(m, dtype=np.int64)
    out_bins = np.zeros(m, dtype=np.int64)
    if m == 0:
        return out, out_rows, out_bins
    n_chunks = max(1, min(num_threads() * 4, m))
    run_chunks(
        _neighbor_sums,
        n_chunks,
        centers.astype(np.int64),
        window.kernel_tables,
        sums,
        rows.astype(np.int64),
        layout,
        out,
        out_rows,
        out_bins,
    )
    return out, out_rows, out_bins


def _box_sums(
    sums: np.ndarray, rows: np.ndarray, window: Window, centers: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windowed statistics of a uniform, truncated window by box sums over the whole grid."""
    if _numba.numba_available():
        return _box_sums_at_centers(sums, rows, window, centers)
    windowed = _box_sums_scipy(sums, rows, window, centers)
    return (
        windowed[:, :-2].reshape(centers.size, *sums.shape[1:]),
        np.rint(windowed[:, -2]).astype(np.int64),
        np.rint(windowed[:, -1]).astype(np.int64),
    )


def _box_sums_scipy(sums, rows, window: Window, centers: np.ndarray) -> np.ndarray:
    """(m, channels) box sums at the centers: the sums, the rows and the bins with rows."""
    shape = window.shape
    per_bin = np.concatenate(
        [
            sums.reshape((*shape, -1)),
            rows.astype(np.float64).reshape((*shape, 1)),
            (rows > 0).astype(np.float64).reshape((*shape, 1)),
        ],
        axis=-1,
    )
    return window_sum(per_bin, window.spans).reshape(rows.size, -1)[centers]


def _box_sums_at_centers(
    sums: np.ndarray,
    rows: np.ndarray,
    window: Window,
    centers: np.ndarray,
    running_from: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``_box_sums`` in one parallel numba pass, bit-identical to the ``correlate1d`` path for
    symmetric windows.

    Each thread takes a range of slabs (bins of the first dim): the first dim's sums of its
    slab, the middle dims' sums within it, and the last dim's sums at the slab's centers only.
    Every value is added in ``ndimage.correlate1d``'s order for a symmetric window (the
    center, then the pairs ``x[i - k] + x[i + k]`` from the widest in), so the results equal it
    bit for bit for any thread count, and no array of the whole grid's windowed sums is made.
    An asymmetric window adds its one-sided offsets in the same loop (the side it does not
    reach counts as outside), equal to ``correlate1d`` up to rounding.

    An axis whose window spans ``running_from`` bins or more (default ``RUNNING_FROM``) is
    summed by running sums instead (``_running_axis``): each step adds the bin entering the
    window and subtracts the one leaving it, so the cost per bin does not grow with the window.
    """
    n_bins, m = rows.size, centers.size
    flat = np.ascontiguousarray(sums.reshape(n_bins, -1), dtype=np.float64)
    extra = np.empty((n_bins, 2))
    extra[:, 0] = rows
    extra[:, 1] = rows > 0
    out = np.empty((m, flat.shape[1]))
    n_rows = np.empty(m, dtype=np.int64)
    n_with_rows = np.empty(m, dtype=np.int64)
    if m:
        centers = centers.astype(np.int64)
        if np.all(centers[1:] >= centers[:-1]):
            dest = np.arange(m, dtype=np.int64)
        else:
            dest = np.argsort(centers, kind="stable").astype(np.int64)
            centers = centers[dest]
        shape = np.asarray(window.shape, dtype=np.int64)
        reach = np.asarray(window.spans, dtype=np.int64).reshape(len(window.shape), 2)
        running_from = RUNNING_FROM if running_from is None else running_from
        running = reach.sum(axis=1) + 1 >= running_from  # per dim: running or direct sums
        reach = np.column_stack([reach, running]).astype(np.int64)
        n_chunks = max(1, min(num_threads() * 2, int(shape[0])))
        if shape.size == 1:  # a series
            counts = (n_rows, n_with_rows)
            run_chunks(_series_chunk, n_chunks, flat, extra, reach, centers, dest, out, counts)
            return out.reshape(m, *sums.shape[1:]), n_rows, n_with_rows
        run_chunks(
            _box_sums_numba, n_chunks, flat, extra, shape, reach, centers, dest, out, n_rows,
            n_with_rows,
        )  # fmt: skip
    return out.reshape(m, *sums.shape[1:]), n_rows, n_with_rows


@njit(cache=True, inline="always")
def _all_finite(acc):
    """Whether every running sum is finite: an inf or NaN that left the window cannot be
    subtracted (inf - inf is NaN), so the window is then summed anew."""
    for f in range(acc.size):
        if not np.isfinite(acc.flat[f]):
            return False
    return True


@njit(cache=True, inline="always")
def _compensated(acc, comp, f):
    """Channel f of a compensated sum: an inf (or NaN) sum as it is, as a direct sum has it
    (its compensation is NaN then)."""
    return acc[f] + comp[f] if np.isfinite(acc[f]) else acc[f]


@njit(cache=True, inline="always")
def _neumaier(acc, comp, f, value):
    """Add ``value`` to channel f of the compensated sum (``acc``, ``comp``): Neumaier's
    variant of Kahan summation, exact to about one rounding of the final sum."""
    total = acc[f] + value
    if abs(acc[f]) >= abs(value):
        comp[f] += (acc[f] - total) + value
    else:
        comp[f] += (value - total) + acc[f]
    acc[f] = total


@njit(cache=True)
def _running_axis(src, dst, before, after):
    """``_axis_sums`` by compensated running sums: along the middle axis of ``src`` (outer, n,
    inner) each step adds the bin entering the window and subtracts the one leaving it,
    restarting from a direct sum every ``RUNNING_RESTART`` steps."""
    outer, n, inner = src.shape
    acc = np.empty(inner)
    comp = np.empty(inner)
    for o in range(outer):
        for i in range(n):
            if i % RUNNING_RESTART != 0:
                if i + after < n:
                    for f in range(inner):
                        _neumaier(acc, comp, f, src[o, i + after, f])
                if i - before - 1 >= 0:
                    for f in range(inner):
                        _neumaier(acc, comp, f, -src[o, i - before - 1, f])
            if i % RUNNING_RESTART == 0 or not _all_finite(acc):
                acc[:] = 0.0
                comp[:] = 0.0
                for j in range(max(i - before, 0), min(i + after + 1, n)):
                    for f in range(inner):
                        _neumaier(acc, comp, f, src[o, j, f])
            for f in range(inner):
                dst[o, i, f] = _compensated(acc, comp, f)


@njit(cache=True)
def _add_slab(flat, extra, s, n_slab, sign, acc, comp):
    """Add slab s of the first dim (its sums and the two extra channels), times ``sign``, to
    the compensated sums (``acc``, ``comp``) of shape (bins of a slab, channels)."""
    n_sums = flat.shape[1]
    for j in range(n_slab):
        b = s * n_slab + j
        for f in range(n_sums):
            _neumaier(acc[j], comp[j], f, sign * flat[b, f])
        for f in range(2):
            _neumaier(acc[j], comp[j], n_sums + f, sign * extra[b, f])


@njit(cache=True)
def _first_axis_running(flat, extra, i0, n0, reach, state, dst):
    """``_first_axis`` by compensated running sums: ``state`` = (acc, comp, at) holds the
    sums of the last slab computed (at[0], -1 for none) and the steps since a direct sum
    (at[1]); slides forward when that is cheaper than a direct sum of the window."""
    acc, comp, at = state
    before, after = reach[0], reach[1]
    n_slab = dst.shape[0]
    fresh = at[0] < 0 or i0 < at[0] or i0 - at[0] > before + after or at[1] >= RUNNING_RESTART
    while not fresh and at[0] < i0:
        at[0] += 1
        at[1] += 1
        if at[0] + after < n0:
            _add_slab(flat, extra, at[0] + after, n_slab, 1.0, acc, comp)
        if at[0] - before - 1 >= 0:
            _add_slab(flat, extra, at[0] - before - 1, n_slab, -1.0, acc, comp)
    if fresh or not _all_finite(acc):
        acc[:] = 0.0
        comp[:] = 0.0
        for s in range(max(i0 - before, 0), min(i0 + after + 1, n0)):
            _add_slab(flat, extra, s, n_slab, 1.0, acc, comp)
        at[0], at[1] = i0, 0
    for j in range(n_slab):
        for f in range(dst.shape[1]):
            dst[j, f] = _compensated(acc[j], comp[j], f)


@njit(cache=True)
def _axis_sums(src, dst, before, after):
    """Box sums of offsets -before..after along the middle axis of ``src`` (outer, n, inner)
    into ``dst``, zeros outside, in ``correlate1d``'s order of additions."""
    outer, n, inner = src.shape
    for o in range(outer):
        for i in range(n):
            for f in range(inner):
                dst[o, i, f] = src[o, i, f]
            for k in range(max(before, after), 0, -1):
                lo = i - k if k <= before else -1
                hi = i + k if k <= after else n
                if lo >= 0 and hi < n:
                    for f in range(inner):
                        dst[o, i, f] += src[o, lo, f] + src[o, hi, f]
                elif lo >= 0:
                    for f in range(inner):
                        dst[o, i, f] += src[o, lo, f] + 0.0
                elif hi < n:
                    for f in range(inner):
                        dst[o, i, f] += 0.0 + src[o, hi, f]


@njit(cache=True)
def _first_axis(flat, extra, i0, n0, reach, dst):
    """The first dim's box sums (offsets -reach[0]..reach[1]) of slab ``i0`` (bins of a slab,
    channels) into ``dst``."""
    n_slab, n_sums = dst.shape[0], flat.shape[1]
    for j in range(n_slab):
        b = i0 * n_slab + j
        for f in range(n_sums):
            dst[j, f] = flat[b, f]
        dst[j, n_sums] = extra[b, 0]
        dst[j, n_sums + 1] = extra[b, 1]
    for k in range(max(reach[0], reach[1]), 0, -1):
        lo = i0 - k if k <= reach[0] else -1
        hi = i0 + k if k <= reach[1] else n0
        if lo >= 0 and hi < n0:
            for j in range(n_slab):
                left, right = lo * n_slab + j, hi * n_slab + j
                for f in range(n_sums):
                    dst[j, f] += flat[left, f] + flat[right, f]
                for f in range(2):
                    dst[j, n_sums + f] += extra[left, f] + extra[right, f]
        elif lo >= 0 or hi < n0:
            one = lo if lo >= 0 else hi
            for j in range(n_slab):
                b = one * n_slab + j
                for f in range(n_sums):
                    dst[j, f] += flat[b, f] + 0.0
                for f in range(2):
                    dst[j, n_sums + f] += extra[b, f] + 0.0


@njit(cache=True)
def _last_axis(src, i, n, reach, dst):
    """Box sums of offsets -reach[0]..reach[1] along the first axis of ``src`` (n, channels)
    at ``i``."""
    channels = src.shape[1]
    for f in range(channels):
        dst[f] = src[i, f]
    for k in range(max(reach[0], reach[1]), 0, -1):
        lo = i - k if k <= reach[0] else -1
        hi = i + k if k <= reach[1] else n
        if lo >= 0 and hi < n:
            for f in range(channels):
                dst[f] += src[lo, f] + src[hi, f]
        elif lo >= 0 or hi < n:
            one = lo if lo >= 0 else hi
            for f in range(channels):
                dst[f] += src[one, f] + 0.0


@njit(cache=True, nogil=True)
def _series_chunk(c, n_chunks, flat, extra, reach, centers, dest, out, counts):  # noqa: PLR0913  (numba kernel: its outputs are arguments)
    """The box sums of a 1-D grid at chunk c's centers (``_box_sums_numba`` for a series: one
    bin per slab, so no buffers and no views per bin)."""
    n = flat.shape[0]
    lo = np.searchsorted(centers, c * n // n_chunks)
    hi = np.searchsorted(centers, (c + 1) * n // n_chunks)
    if reach[0, 2]:
        _series_running(flat, extra, reach[0], centers[lo:hi], dest[lo:hi], out, counts)
    else:
        _series_direct(flat, extra, reach[0], centers[lo:hi], dest[lo:hi], out, counts)


@njit(cache=True, inline="always")
def _series_value(flat, extra, j, f):
    """Channel f of bin j: its sums, then the rows and whether it has rows."""
    n_sums = flat.shape[1]
    return flat[j, f] if f < n_sums else extra[j, f - n_sums]


@njit(cache=True)
def _series_direct(flat, extra, reach, centers, dest, out, counts):
    """Box sums of a 1-D grid at ``centers`` into row ``dest[k]`` of the outputs, each
    summed directly in ``correlate1d``'s order (as ``_last_axis``, bit for bit)."""
    n, n_sums = flat.shape
    before, after = reach[0], reach[1]
    value = np.empty(n_sums + 2)
    for k in range(centers.shape[0]):
        i, o = centers[k], dest[k]
        for f in range(n_sums + 2):
            value[f] = _series_value(flat, extra, i, f)
        for r in range(max(before, after), 0, -1):
            left = i - r if r <= before else -1
            right = i + r if r <= after else n
            if left >= 0 and right < n:
                for f in range(n_sums):
                    value[f] += flat[left, f] + flat[right, f]
                for f in range(2):
                    value[n_sums + f] += extra[left, f] + extra[right, f]
            elif left >= 0 or right < n:
                one = left if left >= 0 else right
                for f in range(n_sums):
                    value[f] += flat[one, f] + 0.0
                for f in range(2):
                    value[n_sums + f] += extra[one, f] + 0.0
        for f in range(n_sums):
            out[o, f] = value[f]
        for f in range(2):
            counts[f][o] = np.rint(value[n_sums + f])


@njit(cache=True)
def _series_running(flat, extra, reach, centers, dest, out, counts):
    """``_series_direct`` by compensated running sums (as ``_running_axis``), sliding from
    one center to the next, or summing directly where the next one is a window away."""
    n, n_sums = flat.shape
    before, after = reach[0], reach[1]
    acc = np.zeros(n_sums + 2)
    comp = np.zeros(n_sums + 2)
    at, steps = -1, 0
    for k in range(centers.shape[0]):
        i, o = centers[k], dest[k]
        fresh = at < 0 or i - at > before + after or steps >= RUNNING_RESTART
        while not fresh and at < i:
            at += 1
            steps += 1
            if at + after < n:
                _add_series_bin(flat, extra, at + after, 1.0, acc, comp)
            if at - before - 1 >= 0:
                _add_series_bin(flat, extra, at - before - 1, -1.0, acc, comp)
        if fresh or not _all_finite(acc):
            acc[:] = 0.0
            comp[:] = 0.0
            for j in range(max(i - before, 0), min(i + after + 1, n)):
                _add_series_bin(flat, extra, j, 1.0, acc, comp)
            at, steps = i, 0
        for f in range(n_sums):
            out[o, f] = _compensated(acc, comp, f)
        for f in range(2):
            counts[f][o] = np.rint(acc[n_sums + f] + comp[n_sums + f])


@njit(cache=True, inline="always")
def _add_series_bin(flat, extra, j, sign, acc, comp):
    """Add bin j of a 1-D grid (its sums and the two extra channels), times ``sign``, to the
    compensated sums (``acc``, ``comp``)."""
    n_sums = flat.shape[1]
    for f in range(n_sums):
        _neumaier(acc, comp, f, sign * flat[j, f])
    _neumaier(acc, comp, n_sums, sign * extra[j, 0])
    _neumaier(acc, comp, n_sums + 1, sign * extra[j, 1])


@njit(cache=True, nogil=True)
def _box_sums_numba(  # noqa: PLR0913  (numba kernel: its outputs are arguments)
    c, n_chunks, flat, extra, shape, reach, centers, dest, out, n_rows, n_with_rows
):
    """The box sums at the centers in chunk c's slabs (see ``_box_sums_at_centers``)."""
    n_dims = shape.shape[0]
    n0 = shape[0]
    n_slab = 1
    for d in range(1, n_dims):
        n_slab *= shape[d]
    n_sums = flat.shape[1]
    channels = n_sums + 2
    last = n_dims - 1
    n_last = shape[last]
    buffers = (np.empty((n_slab, channels)), np.empty((n_slab, channels)))
    at_center = np.empty(channels)
    state = (np.empty((n_slab, channels)), np.empty((n_slab, channels)), np.full(2, -1))
    first = np.searchsorted(centers, c * n0 // n_chunks * n_slab)
    for i0 in range(c * n0 // n_chunks, (c + 1) * n0 // n_chunks):
        end = np.searchsorted(centers, (i0 + 1) * n_slab)
        if end == first:
            continue
        if reach[0, 2]:
            _first_axis_running(flat, extra, i0, n0, reach[0], state, buffers[0])
        else:
            _first_axis(flat, extra, i0, n0, reach[0], buffers[0])
        current = 0
        outer = 1
        for d in range(1, last):
            inner = channels
            for e in range(d + 1, n_dims):
                inner *= shape[e]
            if reach[d, 0] > 0 or reach[d, 1] > 0:
                src = buffers[current].reshape((outer, shape[d], inner))
                dst = buffers[1 - current].reshape((outer, shape[d], inner))
                if reach[d, 2]:
                    _running_axis(src, dst, reach[d, 0], reach[d, 1])
                else:
                    _axis_sums(src, dst, reach[d, 0], reach[d, 1])
                current = 1 - current
            outer *= shape[d]
        src = buffers[current]
        summed = n_dims == 1
        if not summed and reach[last, 2]:  # the whole slab's last axis, then read the centers
            lines = src.reshape((n_slab // n_last, n_last, channels))
            out_lines = buffers[1 - current].reshape(lines.shape)
            _running_axis(lines, out_lines, reach[last, 0], reach[last, 1])
            src = buffers[1 - current]
            summed = True
        for k in range(first, end):
            local = centers[k] - i0 * n_slab
            if summed:
                at_center[:] = src[local]
            else:
                i = local % n_last
                line = src[local - i : local - i + n_last]
                _last_axis(line, i, n_last, reach[last], at_center)
            o = dest[k]
            out[o] = at_center[:n_sums]
            n_rows[o] = np.rint(at_center[n_sums])
            n_with_rows[o] = np.rint(at_center[n_sums + 1])
        first = end


def windowed_sums(
    sums: np.ndarray,
    rows: np.ndarray,
    window: Window,
    centers: np.ndarray,
    layout: MomentLayout,
    solve: Callable[[np.ndarray], T],
    chunks: tuple[int, ...] | None = None,
) -> tuple[T, np.ndarray, np.ndarray]:
    """The windowed statistics at ``centers``, handed to ``solve``; and per window the rows
    (every appearance counted) and the distinct bins with rows.

    The one place that picks how windows are summed: box sums (uniform kernel, truncated
    edges, no trend), the neighbor loop (any boundary, kernel or trend), or chunk by chunk
    with dask when ``chunks`` (chunk size per dim) is given, where ``solve`` runs on every
    chunk so that the windowed statistics of the whole grid never exist at once.

    Parameters
    ----------
    sums, rows : per-bin packed statistics (n_bins, t, n_stats) and rows per bin.
    window : the window on the grid.
    centers : (m,) flat ids of the window centers.
    layout : the moments to sum (``moment_layout``: with or without trend terms).
    solve : windowed statistics (k, t, n_stats') -> their solution.
    """
    if chunks is not None:
        from .chunked import chunked_windowed_sums

        return chunked_windowed_sums(sums, rows, window, centers, layout, solve, chunks)
    if layout.trend.shape[0] == 0 and window.is_box:
        at_centers, n_rows, n_bins = _box_sums(sums, rows, window, centers)
    else:
        at_centers, n_rows, n_bins = neighbor_sums(window, centers, sums, rows, layout)
    return solve(at_centers), n_rows, n_bins
