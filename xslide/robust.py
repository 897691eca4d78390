"""Robust refits by outlier rejection (``n_sigma_cut``), the way ALICE calibration clips.

Each window is fitted, rows whose |residual| exceeds ``n_sigma_cut`` x rmse are dropped, and the
window is refitted from the rows kept, up to ``max_iter`` times or until the kept rows no longer
change. A numba kernel gathers each window's rows through the bin index, applies the previous
fit's cut and sums the statistics of the rows kept; the closed-form solve of ``solve.py`` does
the rest. The kept set of a pass is a function of the previous fit alone, so nothing per row is
stored between passes, and a window whose sums did not change has converged.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _numba
from ._numba import njit, num_threads, prange, python
from .parallel import bar_blocks, progress_bar
from .rows import WindowIndex, check_no_overflow
from .solve import OK, Solution, solve
from .stats import COUNT, COUNT_POSITIVE, FIRST_MOMENT, SUM_W2, n_stats
from .window import entry_buffers, window_entries


@njit(cache=True, fastmath={"reassoc", "nsz", "arcp"})
def _weighted_dot(w, a, b, n):
    """Σ w a b over the first n entries; reassociation lets the sum run in SIMD lanes (fixed
    order for a given build, so repeated runs are bit-identical)."""
    acc = 0.0
    for r in range(n):
        acc += w[r] * a[r] * b[r]
    return acc


# Fewest windows per call of the clipping kernel when it runs in blocks for a progress bar.
CLIP_BLOCK = 1024


class RowColumns(NamedTuple):
    """The indexed rows in bin order, as the kernel reads them."""

    offsets: np.ndarray  # rows of bin b: offsets[b]:offsets[b + 1]
    xs: np.ndarray  # (q, n) design columns
    ys: np.ndarray  # (t, n) targets, NaN where invalid
    ws: np.ndarray  # (n,) row weights, or a dummy when has_w is False
    has_w: bool
    weighted: bool  # row weights or a non-uniform kernel


class LocalModel(NamedTuple):
    """The local model's design beyond the columns: trend offsets, references, intercept."""

    trend_dims: np.ndarray  # dims whose window offsets are design columns too (trend=1)
    x_ref: np.ndarray  # references of the design columns, zeros for the offsets
    y_ref: np.ndarray
    intercept: bool


class Cut(NamedTuple):
    """The previous fit of every window and target, and the cut in units of its rmse."""

    coef: np.ndarray  # (m, t, p); NaN keeps every row
    rmse: np.ndarray  # (m, t)
    n_sigma: float


@njit(cache=True, parallel=True)
def _kept_moments(  # noqa: C901, PLR0913  (numba kernel: its outputs are arguments)
    centers, tables, columns, model, cut, max_count, n_chunks, out, overflow
):
    """Statistics of each window's rows within ``cut`` x rmse of the previous fit (or all).

    The kept rows of a window are gathered into a column buffer z = (1, x - x_ref, y - y_ref)
    with their weights (row weight x kernel weight), then every moment Σ w z_a z_b is one
    vectorised dot product.
    """
    offsets, xs, ys, ws = columns.offsets, columns.xs, columns.ys, columns.ws
    has_w, weighted = columns.has_w, columns.weighted
    trend_dims, x_ref, y_ref, intercept = model
    coef, rmse = cut.coef, cut.rmse
    q = xs.shape[0]
    n_trend = trend_dims.shape[0]
    n_targets = ys.shape[0]
    size = q + n_trend + 2
    m = centers.shape[0]
    lead = 1 if intercept else 0
    for c in prange(n_chunks):
        buffers = entry_buffers(tables)
        bins, kw, nb_offsets = buffers[2], buffers[3], buffers[4]
        z = np.empty((size, max_count))
        z[0, :] = 1.0
        wz = np.ones(max_count)
        for i in range(c * m // n_chunks, (c + 1) * m // n_chunks):
            n_entries = window_entries(centers[i], tables, buffers)
            for t in range(n_targets):
                limit = cut.n_sigma * rmse[i, t]
                clip = limit > 0.0  # NaN (no previous fit) or an exact fit: keep every row
                n = 0
                informative = 0.0
                sum_w2 = 0.0
                for e in range(n_entries):
                    for r in range(offsets[bins[e]], offsets[bins[e] + 1]):
                        yv = ys[t, r]
                        if yv != yv:
                            continue
                        if n == max_count:  # never past the buffers: reported, see below
                            overflow[c] = True
                            break
                        if clip:
                            pred = coef[i, t, 0] if intercept else 0.0
                            for k in range(q):
                                pred += coef[i, t, lead + k] * xs[k, r]
                            for d in range(n_trend):
                                pred += coef[i, t, lead + q + d] * nb_offsets[e, trend_dims[d]]
                            if abs(yv - pred) > limit:
                                continue
                        for k in range(q):
                            z[1 + k, n] = xs[k, r] - x_ref[k]
                        for d in range(n_trend):
                            z[1 + q + d, n] = nb_offsets[e, trend_dims[d]]
                        z[size - 1, n] = yv - y_ref[t]
                        if weighted:
                            w = (ws[r] if has_w else 1.0) * kw[e]
                            wz[n] = w
                            informative += 1.0 if w > 0.0 else 0.0
                            sum_w2 += w * w
                        n += 1
                s = out[i, t]
                s[COUNT] = n
                s[COUNT_POSITIVE] = informative if weighted else n
                s[SUM_W2] = sum_w2 if weighted else n
                k = FIRST_MOMENT
                for a in range(size):
                    for b in range(a, size):
                        s[k] = _weighted_dot(wz, z[a], z[b], n)
                        k += 1


class Clipping(NamedTuple):
    """How to clip: the cut in units of the window's rmse, the most refits, the fewest rows."""

    n_sigma_cut: float
    max_iter: int
    min_entries: int


def clipped_fit(
    centers: np.ndarray,
    index: WindowIndex,
    columns: RowColumns,
    model: LocalModel,
    clipping: Clipping,
    max_count: int,
    backend: str,
    progress: bool | None = None,
) -> tuple[Solution, np.ndarray]:
    """Fit every window with iterative outlier rejection.

    Parameters
    ----------
    centers : (m,) flat ids of the window centers.
    index : where each window's rows lie.
    columns : the indexed rows in bin order (``RowColumns``).
    model : trend dims, references and intercept of the local model.
    clipping : the cut, the most refits and ``min_entries``.
    max_count : an upper bound of the valid rows in any window (sizes the buffers).
    backend : unused: the compiled kernel serves both backends, so they agree bit for bit; it
        runs as plain Python only where numba is missing.
    progress : a bar over the windows of every pass: True, False or None (on a terminal when
        long); with a bar the kernel runs in blocks of windows (identical results).

    Returns
    -------
    The solution of the last fit of every window (its ``entries`` are the rows kept) and the
    number of passes each window needed.
    """
    m, n_targets = centers.size, columns.ys.shape[0]
    q = columns.xs.shape[0] + model.trend_dims.size  # design columns, the offsets included
    max_count = max(int(max_count), 1)
    # one compiled kernel for both backends (bit-identical results); plain Python without numba
    kernel = _kept_moments if _numba.numba_available() else python(_kept_moments)
    n_terms = q + int(model.intercept)
    x_ref, y_ref, intercept = model.x_ref, model.y_ref, model.intercept
    min_entries, max_iter = clipping.min_entries, clipping.max_iter

    def moments(ids: np.ndarray, coef: np.ndarray, rmse: np.ndarray, bar) -> np.ndarray:
        out = np.empty((ids.size, n_targets, n_stats(q + 1)))
        for block in bar_blocks(np.arange(ids.size), bar, CLIP_BLOCK):
            part = slice(block[0], block[-1] + 1) if block.size else slice(0, 0)
            n_chunks = max(1, min(num_threads() * 4, block.size))
            cut = Cut(coef[part], rmse[part], float(clipping.n_sigma_cut))
            overflow = np.zeros(n_chunks, dtype=np.bool_)
            kernel(
                centers[ids[part]], index.tables, columns, model, cut, max_count, n_chunks,
                out[part], overflow,
            )  # fmt: skip
            check_no_overflow(overflow)
            bar.update(block.size)
        return out

    def fit(stats: np.ndarray) -> Solution:
        return solve(stats, q + 1, x_ref, y_ref, min_entries, intercept)

    # The parameters that decided each window's kept rows; NaN keeps every row. A target whose
    # refit fails (too few rows kept) or fits exactly (rmse 0: nothing left to clip) keeps the
    # parameters that led there, so it stays put.
    cut_coef = np.full((m, n_targets, n_terms), np.nan)
    cut_rmse = np.full((m, n_targets), np.nan)
    with progress_bar(m, progress, "xslide n_sigma_cut pass 1", " windows", scale=True) as bar:
        current = moments(np.arange(m), cut_coef, cut_rmse, bar)
        result = fit(current)
        passes = np.ones(m, dtype=np.int64)
        active = np.arange(m)
        for n_pass in range(2, max_iter + 2):
            ok = (result.status[active] == OK) & (result.rmse[active] > 0)
            active, ok = active[ok.any(axis=1)], ok[ok.any(axis=1)]
            if active.size == 0:
                break
            cut_coef[active] = np.where(ok[..., None], result.coef[active], cut_coef[active])
            cut_rmse[active] = np.where(ok, result.rmse[active], cut_rmse[active])
            _next_pass(bar, n_pass, active.size)
            again = moments(active, cut_coef[active], cut_rmse[active], bar)
            changed = np.any(again != current[active], axis=(1, 2))
            active = active[changed]
            current[active] = again[changed]
            result = result.updated(active, fit(again[changed]))
            passes[active] += 1
    return result, passes


def _next_pass(bar, n_pass: int, n_windows: int) -> None:
    """One bar for every pass: it grows by the windows still clipping."""
    bar.total = (bar.total or 0) + n_windows
    bar.set_description(f"xslide n_sigma_cut pass {n_pass}")
    bar.refresh()
