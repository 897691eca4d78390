"""Window specifications and windowed sums over the bin dims of a grid of statistics."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import ndimage

from ._numba import njit, num_threads, prange
from .errors import InvalidWindowSpec
from .stats import COUNT, COUNT_POSITIVE, FIRST_MOMENT, SUM_W2, moment_index

BOUNDARY_ALIASES = {
    "truncate": "truncate",
    "full": "truncate",
    "periodic": "periodic",
    "mirror": "mirror",
    "shrink": "shrink",
    "symmetric": "shrink",
}
KERNELS = ("uniform", "gaussian", "epanechnikov", "linear")


def parse_window(window: Mapping | None, dims: Sequence[str]) -> dict[str, int]:
    """Validate ``{dim: half_width}``; dims left out get 0 (no window along them)."""
    if window is None:
        window = {}
    if not isinstance(window, Mapping):
        raise InvalidWindowSpec(
            f"window_spec must be a dict {{dim: half_width}}, got {type(window).__name__}"
        )
    unknown = [d for d in window if d not in dims]
    if unknown:
        raise InvalidWindowSpec(
            f"window_spec names {unknown}, which are not bin dims; bin dims are {list(dims)}"
        )
    out = {}
    for d in dims:
        w = window.get(d, 0)
        if isinstance(w, bool) or not isinstance(w, int | np.integer):
            raise InvalidWindowSpec(
                f"window_spec[{d!r}] must be a non-negative integer half-width, got {w!r}"
            )
        if w < 0:
            raise InvalidWindowSpec(f"window_spec[{d!r}] must be >= 0, got {w}")
        out[d] = int(w)
    return out


def parse_boundary(boundary: str | Mapping, dims: Sequence[str]) -> dict[str, str]:
    """Validate the boundary mode, global or per dim, and return it per dim."""
    per_dim = boundary if isinstance(boundary, Mapping) else dict.fromkeys(dims, boundary)
    unknown = [d for d in per_dim if d not in dims]
    if unknown:
        raise ValueError(f"boundary names {unknown}, which are not bin dims ({list(dims)})")
    out = {}
    for d in dims:
        mode = per_dim.get(d, "truncate")
        if not isinstance(mode, str) or mode not in BOUNDARY_ALIASES:
            raise ValueError(
                f"boundary for {d!r} must be one of 'truncate', 'full', 'periodic', 'mirror', "
                f"'shrink', 'symmetric', got {mode!r}"
            )
        out[d] = BOUNDARY_ALIASES[mode]
    return out


def window_volume(half_widths: Sequence[int]) -> int:
    """Number of bins in a full (not clipped) window."""
    return int(np.prod([2 * w + 1 for w in half_widths], dtype=np.int64))


def window_sum(grid_values: np.ndarray, half_widths: Sequence[int]) -> np.ndarray:
    """Box sums over the leading ``len(half_widths)`` axes; bins outside the grid count zero.

    Each axis is summed directly over its 2w+1 neighbours (``ndimage.correlate1d``), not by a
    running sum, so no rounding error builds up along an axis and windows larger than the grid
    are exact. A half-width of 0 leaves the axis as it is.
    """
    out = grid_values
    for axis, w in enumerate(half_widths):
        if w > 0:
            ones = np.ones(2 * w + 1)
            out = ndimage.correlate1d(out, ones, axis=axis, mode="constant", cval=0.0)
    return out


def kernel_weights(
    kernel, half_widths: Sequence[int], dims: Sequence[str], kernel_width=None
) -> np.ndarray:
    """Kernel weight of every offset of the window, shape (2w_d + 1, ...) over the dims.

    ``kernel``: 'uniform', 'gaussian' (sigma = width), 'epanechnikov' (1 - (o/(width+1))²),
    'linear' (1 - |o|/(width+1)) with ``kernel_width`` per dim (default max(w, 1)); a callable
    taking one integer offset array per dim and returning weights; or an explicit array.
    """
    shape = tuple(2 * w + 1 for w in half_widths)
    offsets = [np.arange(-w, w + 1) for w in half_widths]
    if isinstance(kernel, str):
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {list(KERNELS)}, a callable or an array")
        if kernel == "uniform":
            if kernel_width is not None:
                raise ValueError(
                    "kernel_width applies to the gaussian, epanechnikov and linear kernels"
                )
            return np.ones(shape)
        widths = _kernel_widths(kernel_width, half_widths, dims)
        weights = np.ones(shape)
        for axis, (o, h) in enumerate(zip(offsets, widths, strict=True)):
            if kernel == "gaussian":
                profile = np.exp(-0.5 * (o / h) ** 2)
            elif kernel == "epanechnikov":
                profile = np.clip(1.0 - (o / (h + 1.0)) ** 2, 0.0, None)
            else:
                profile = np.clip(1.0 - np.abs(o) / (h + 1.0), 0.0, None)
            view = [1] * len(shape)
            view[axis] = shape[axis]
            weights = weights * profile.reshape(view)
    else:
        if kernel_width is not None:
            raise ValueError(
                "kernel_width applies to the named kernels, not to a callable or array"
            )
        if callable(kernel):
            grids = np.meshgrid(*offsets, indexing="ij")
            try:
                weights = np.broadcast_to(np.asarray(kernel(*grids), dtype=np.float64), shape)
            except ValueError as err:
                raise ValueError(
                    f"kernel callable must return weights of shape {shape}: {err}"
                ) from None
            weights = weights.copy()
        else:
            weights = np.asarray(kernel, dtype=np.float64)
            if weights.shape != shape:
                raise ValueError(
                    f"kernel array must have shape {shape} (2 x half-width + 1 per dim in "
                    f"{list(dims)}), got {weights.shape}"
                )
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or not np.any(weights > 0):
        raise ValueError("kernel weights must be finite, >= 0 and not all zero")
    return weights


def _kernel_widths(kernel_width, half_widths: Sequence[int], dims: Sequence[str]) -> list[float]:
    default = {d: float(max(w, 1)) for d, w in zip(dims, half_widths, strict=True)}
    if kernel_width is None:
        given = {}
    elif isinstance(kernel_width, Mapping):
        unknown = [d for d in kernel_width if d not in dims]
        if unknown:
            raise ValueError(f"kernel_width names {unknown}, which are not bin dims")
        given = dict(kernel_width)
    else:
        given = dict.fromkeys(dims, kernel_width)
    widths = []
    for d in dims:
        h = given.get(d, default[d])
        if isinstance(h, bool) or not isinstance(h, int | float | np.number) or not h > 0:
            raise ValueError(f"kernel_width[{d!r}] must be a positive number, got {h!r}")
        widths.append(float(h))
    return widths


def neighbour_table(n: int, w: int, mode: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every bin c of a dim: the bins j its window reads and their offsets o.

    Returns ``j`` and ``o`` of shape (n, 2w + 1) and the number of entries used per bin.
    truncate: offsets whose bin lies outside are dropped; periodic: j = (c + o) mod n;
    mirror: reflected at the edges (index -1 reads bin 0), a bin may appear twice; shrink:
    the half-width at c is min(w, c, n - 1 - c), so c stays the window's midpoint.
    """
    centers = np.arange(n)[:, None]
    o = np.broadcast_to(np.arange(-w, w + 1), (n, 2 * w + 1))
    raw = centers + o
    if mode == "periodic":
        if 2 * w + 1 > n:
            raise InvalidWindowSpec(
                f"a periodic window of half-width {w} spans {2 * w + 1} bins, more than the "
                f"{n} bins of the dim; give extent= the full period or a smaller window"
            )
        return raw % n, o.copy(), np.full(n, 2 * w + 1)
    if mode == "mirror":
        folded = raw % (2 * n)
        return np.where(folded < n, folded, 2 * n - 1 - folded), o.copy(), np.full(n, 2 * w + 1)
    if mode == "shrink":
        reach = np.minimum(w, np.minimum(np.arange(n), n - 1 - np.arange(n)))
        keep = np.abs(o) <= reach[:, None]
    else:
        keep = (raw >= 0) & (raw < n)
    j = np.zeros_like(raw)
    off = np.zeros_like(raw)
    length = keep.sum(axis=1)
    for c in range(n):  # n is a grid side: small
        j[c, : length[c]] = raw[c, keep[c]]
        off[c, : length[c]] = o[c, keep[c]]
    return j, off, length


@dataclass(frozen=True, eq=False)
class Window:
    """A window on a grid: half-width and boundary per dim and the kernel weight per offset."""

    shape: tuple[int, ...]
    half: tuple[int, ...]
    modes: tuple[str, ...]
    weights: np.ndarray  # (2w_d + 1, ...) kernel weight per offset

    @property
    def is_box(self) -> bool:
        """Uniform weights and truncated edges: plain box sums do the windowing."""
        return all(m == "truncate" for m in self.modes) and bool(np.all(self.weights == 1.0))

    @property
    def volume(self) -> int:
        """Offsets of the window with a non-zero kernel weight."""
        return int(np.count_nonzero(self.weights))

    @cached_property
    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per dim neighbour bins and offsets, padded: (D, max n, L), (D, max n, L), (D, max n)."""
        n_max = max(self.shape)
        width = max(2 * w + 1 for w in self.half)
        j = np.zeros((len(self.shape), n_max, width), dtype=np.int64)
        o = np.zeros_like(j)
        length = np.zeros((len(self.shape), n_max), dtype=np.int64)
        for d, n in enumerate(self.shape):
            jd, od, ld = self.dim_table(d)
            j[d, :n, : jd.shape[1]] = jd
            o[d, :n, : od.shape[1]] = od
            length[d, :n] = ld
        return j, o, length

    def dim_table(self, d: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Neighbour bins, offsets and counts of every bin along dim ``d``."""
        return neighbour_table(self.shape[d], self.half[d], self.modes[d])

    @cached_property
    def strides(self) -> tuple[np.ndarray, np.ndarray]:
        """C-order strides of the grid and of the kernel weights array."""
        return _c_strides(self.shape), _c_strides(self.weights.shape)


def _c_strides(shape: Sequence[int]) -> np.ndarray:
    strides = np.ones(len(shape), dtype=np.int64)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * shape[d + 1]
    return strides


@njit(cache=True)
def entry_buffers(n_dims, max_entries):
    """Work arrays of ``window_entries``: pos, cur, bins, weights and offsets."""
    return (
        np.empty(n_dims, dtype=np.int64),
        np.empty(n_dims, dtype=np.int64),
        np.empty(max_entries, dtype=np.int64),
        np.empty(max_entries),
        np.empty((max_entries, n_dims), dtype=np.int64),
    )


@njit(cache=True)
def window_entries(
    center, shape, strides, nb_j, nb_o, nb_len, half, kweights, kstrides,
    pos, cur, bins, weights, offsets,
):  # fmt: skip
    """List the bins of the window around ``center`` with a non-zero kernel weight.

    Fills ``bins``, ``weights`` and ``offsets`` (one row of per-dim offsets per entry) and
    returns the count. A bin read twice (mirror) is listed twice.
    """
    n_dims = shape.shape[0]
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
            k += (nb_o[d, pos[d], cur[d]] + half[d]) * kstrides[d]
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


def neighbour_sums(
    window: Window, centers: np.ndarray, stats: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windowed statistics at ``centers`` for any boundary and kernel, by visiting neighbours.

    Each neighbour bin adds its counts, its Σw² times the kernel weight squared and its moments
    times the kernel weight. Returns the sums (m, t, n_stats), the rows in each window (every
    appearance counted) and the distinct bins with rows in each window.
    """
    n_moments = stats.shape[2] - FIRST_MOMENT
    identity = np.column_stack(
        [np.arange(FIRST_MOMENT, stats.shape[2]), np.full((n_moments, 2), -1)]
    ).astype(np.int64)
    return _run_neighbour_sums(window, centers, stats, rows, np.empty(0, np.int64), identity)


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


@njit(cache=True, parallel=True)
def _neighbour_sums(
    centers, shape, strides, nb_j, nb_o, nb_len, half, kweights, kstrides, max_entries,
    stats, rows, trend_dims, layout, n_chunks, out, out_rows, out_bins,
):  # fmt: skip
    n_bins, n_targets, _ = stats.shape
    n_dims = shape.shape[0]
    m = centers.shape[0]
    n_slots = layout.shape[0]
    for c in prange(n_chunks):
        pos, cur, bins, weights, offsets = entry_buffers(n_dims, max_entries)
        seen = np.full(n_bins, -1, dtype=np.int64)
        factor = np.empty(trend_dims.shape[0] + 1)
        factor[trend_dims.shape[0]] = 1.0  # index -1: no offset
        for i in range(c * m // n_chunks, (c + 1) * m // n_chunks):
            n = window_entries(
                centers[i], shape, strides, nb_j, nb_o, nb_len, half, kweights, kstrides,
                pos, cur, bins, weights, offsets,
            )  # fmt: skip
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
                for d in range(trend_dims.shape[0]):
                    factor[d] = offsets[e, trend_dims[d]]
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


def neighbour_sums_trend(
    window: Window, centers: np.ndarray, stats: np.ndarray, rows: np.ndarray, n_columns: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Like ``neighbour_sums``, for the design augmented by the offsets of the windowed dims.

    The sums are those of z' = (1, design columns, offsets, target): ``solve`` then fits the
    local-linear model whose offset terms are the local derivatives along each windowed dim.
    """
    trend_dims = np.flatnonzero(np.asarray(window.half) > 0).astype(np.int64)
    layout = trend_layout(n_columns, trend_dims.size)
    return _run_neighbour_sums(window, centers, stats, rows, trend_dims, layout)


def _run_neighbour_sums(window, centers, stats, rows, trend_dims, layout):
    """Call the neighbour kernel: ``layout`` maps each output moment to a bin moment and the
    offsets multiplying it (see ``trend_layout``; without trend every moment maps to itself)."""
    m = centers.size
    out = np.empty((m, stats.shape[1], FIRST_MOMENT + layout.shape[0]))
    out_rows = np.zeros(m, dtype=np.int64)
    out_bins = np.zeros(m, dtype=np.int64)
    if m == 0:
        return out, out_rows, out_bins
    nb_j, nb_o, nb_len = window.tables
    strides, kstrides = window.strides
    _neighbour_sums(
        centers.astype(np.int64), np.asarray(window.shape, dtype=np.int64), strides,
        nb_j, nb_o, nb_len, np.asarray(window.half, dtype=np.int64),
        window.weights.ravel(), kstrides, window.weights.size, stats,
        rows.astype(np.int64), trend_dims, layout, max(1, min(num_threads() * 4, m)),
        out, out_rows, out_bins,
    )  # fmt: skip
    return out, out_rows, out_bins
