"""Robust refits by outlier rejection (``n_sigma_cut``), the way ALICE calibration clips.

Each window is fitted, rows whose |residual| exceeds ``n_sigma_cut`` x rmse are dropped, and the
window is refitted from the rows kept, up to ``max_iter`` times or until the kept rows no longer
change. The cut's center may be the window median instead of the fit (``clip_center``) and its
scale the window's MAD sigma instead of the rmse (``clip_scale``): both from all the window's
rows, so with both the cut is fixed and one refit is all there is.

A numba kernel gathers each window's rows through the bin index, applies the previous
fit's cut and sums the statistics of the rows kept; the closed-form solve of ``solve.py`` does
the rest. The kept set of a pass is a function of the previous fit alone, so nothing per row is
stored between passes, and a window whose sums did not change has converged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from . import _numba
from ._numba import njit, num_threads, python, run_chunks
from .parallel import bar_blocks, progress_bar
from .rows import WindowIndex
from .solve import OK, Solution, solve_local
from .stats import COUNT, COUNT_POSITIVE, FIRST_MOMENT, SUM_W2, n_stats
from .window import entry_buffers, trend_values, window_entries

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

    trend: np.ndarray  # (k, 2) dims of each trend column (``window.trend_terms``)
    x_ref: np.ndarray  # references of the design columns, zeros for the offsets
    y_ref: np.ndarray
    intercept: bool


class Cut(NamedTuple):
    """The previous fit of every window and target (or the window medians), and the cut in
    units of the scale (the previous fit's rmse or the window's MAD sigma)."""

    coef: np.ndarray  # (m, t, p); NaN keeps every row
    rmse: np.ndarray  # (m, t) the scale of the cut
    n_sigma: float
    median: np.ndarray  # (m, t) the center of every row's cut, when ``by_median``
    by_median: bool


@njit(cache=True)
def _add_row(s, z, size, w):
    """Add one row, its z (the first ``size`` entries) weighing w, to the statistics s."""
    s[COUNT] += 1.0
    s[COUNT_POSITIVE] += 1.0 if w > 0.0 else 0.0
    s[SUM_W2] += w * w
    k = FIRST_MOMENT
    for a in range(size):
        wa = w * z[a]
        for b in range(a, size):
            s[k] += wa * z[b]
            k += 1


@njit(cache=True, nogil=True)
def _rejected_moments(c, n_chunks, centers, tables, columns, model, cut, max_bin, out):  # noqa: PLR0913  (numba kernel)
    """Statistics of the rows of each of chunk c's windows beyond ``cut`` x rmse of the
    previous fit (zero where the cut keeps every row): the kept rows' are the window's less
    these.

    The prediction of a row sums its terms in the order of the model, so that a row lies
    beyond the cut exactly when its residual says so; the rows of a bin are checked in one
    vectorised sweep, and only a bin holding rows beyond the cut is read again.
    """
    offsets, ys = columns.offsets, columns.ys
    coef, rmse = cut.coef, cut.rmse
    size = columns.xs.shape[0] + model.trend.shape[0] + 2
    m = centers.shape[0]
    buffers = entry_buffers(tables)
    bins, kw, nb_offsets = buffers[2], buffers[3], buffers[4]
    pred = np.empty(max_bin)
    z = np.empty(size)
    z[0] = 1.0
    factors = np.empty((bins.shape[0], model.trend.shape[0] + 1))
    for i in range(c * m // n_chunks, (c + 1) * m // n_chunks):
        n_entries = window_entries(centers[i], tables, buffers)
        for e in range(n_entries):  # the trend columns of each bin, once for every target
            trend_values(nb_offsets, e, model.trend, factors[e])
        for t in range(ys.shape[0]):
            s = out[i, t]
            s[:] = 0.0
            limit = cut.n_sigma * rmse[i, t]
            if not limit > 0.0:  # NaN (no previous fit) or an exact fit: keep every row
                continue
            ct = coef[i, t]
            for e in range(n_entries):
                start = offsets[bins[e]]
                n = offsets[bins[e] + 1] - start
                if n == 0:
                    continue
                if cut.by_median:
                    pred[:n] = cut.median[i, t]
                else:
                    _predict(pred, n, columns.xs, start, ct, model, factors, e)
                _add_beyond(s, z, pred, columns, model, limit, t, start, n, kw[e], factors, e)


@njit(cache=True)
def _add_beyond(s, z, pred, columns, model, limit, t, start, n, kw, factors, e):  # noqa: PLR0913
    """Add to s the rows start..start + n of one bin of the window, its entry e (kernel weight
    kw, trend columns ``factors[e]``), that lie beyond the cut around their centers ``pred``."""
    xs, ys, ws, has_w, weighted = (
        columns.xs,
        columns.ys,
        columns.ws,
        columns.has_w,
        columns.weighted,
    )
    trend, x_ref, y_ref, _ = model
    q, n_trend, size = xs.shape[0], trend.shape[0], z.shape[0]
    p = pred[:n]  # contiguous 1-D views: the sweeps below vectorise
    y = ys[t, start : start + n]
    beyond = 0
    for r in range(n):
        beyond += np.int64(abs(y[r] - p[r]) > limit)
    if beyond == 0:
        return
    for r in range(n):
        yv = ys[t, start + r]
        if not abs(yv - pred[r]) > limit:
            continue
        for k in range(q):
            z[1 + k] = xs[k, start + r] - x_ref[k]
        for d in range(n_trend):
            z[1 + q + d] = factors[e, d]
        z[size - 1] = yv - y_ref[t]
        w = (ws[start + r] if has_w else 1.0) * kw if weighted else 1.0
        _add_row(s, z, size, w)


@njit(cache=True)
def _predict(pred, n, xs, start, ct, model, factors, e):
    """pred[:n] = the fit's prediction of the rows start.. of ``xs`` (entry e of the window,
    trend columns ``factors[e]``), each summed intercept first, then term by term, then the
    trend terms (elementwise, so the loops vectorise)."""
    intercept = model.intercept
    lead = 1 if intercept else 0
    first = ct[0] if intercept else 0.0
    for r in range(n):
        pred[r] = first
    q = xs.shape[0]
    p = pred[:n]  # contiguous 1-D views: the sweeps vectorise
    for k in range(q):
        ck = ct[lead + k]
        xk = xs[k, start : start + n]
        for r in range(n):
            p[r] += ck * xk[r]
    for d in range(model.trend.shape[0]):
        o = ct[lead + q + d] * factors[e, d]
        for r in range(n):
            pred[r] += o


class Clipping(NamedTuple):
    """How to clip: the cut in units of the scale, the most refits, the fewest rows; and the
    window medians and MAD sigmas where they center (``clip_center='median'``) or scale
    (``clip_scale='mad'``) the cut instead of the previous fit and its rmse."""

    n_sigma_cut: float
    max_iter: int
    min_entries: int
    median: np.ndarray | None = None  # (m, t)
    mad: np.ndarray | None = None  # (m, t)


def clipped_fit(
    centers: np.ndarray,
    index: WindowIndex,
    columns: RowColumns,
    model: LocalModel,
    clipping: Clipping,
    window_stats: Callable[[np.ndarray], np.ndarray],
    progress: bool | None = None,
) -> tuple[Solution, np.ndarray]:
    """Fit every window with iterative outlier rejection.

    Parameters
    ----------
    centers : (m,) flat ids of the window centers.
    index : where each window's rows lie.
    columns : the indexed rows in bin order (``RowColumns``).
    model : trend terms, references and intercept of the local model.
    clipping : the cut, the most refits and ``min_entries``.
    window_stats : the statistics of every valid row of the windows of the centers it is
        given, (k, t, n_stats(q + 1)) in the model's layout (the first pass: no row is cut
        yet; the plain fit's windowed sums).
    progress : a bar over the windows of every pass: True, False or None (on a terminal when
        long); with a bar the kernel runs in blocks of windows (identical results).

    Returns
    -------
    The solution of the last fit of every window (its ``entries`` are the rows kept) and the
    number of passes each window needed.
    """
    m, n_targets = centers.size, columns.ys.shape[0]
    q = columns.xs.shape[0] + model.trend.shape[0]  # design columns, the trend included
    # one compiled kernel for both backends, so they agree bit for bit; plain Python where
    # numba is missing
    cut_kernel = _rejected_moments if _numba.numba_available() else python(_rejected_moments)
    n_terms = q + int(model.intercept)
    x_ref, y_ref, intercept = model.x_ref, model.y_ref, model.intercept
    min_entries, max_iter = clipping.min_entries, clipping.max_iter
    max_bin = max(int(np.diff(columns.offsets).max(initial=0)), 1)

    def all_rows(bar) -> np.ndarray:
        """Pass 1: every window's statistics from its bins' (no row is cut yet)."""
        out = np.empty((m, n_targets, n_stats(q + 1)))
        for block in bar_blocks(np.arange(m), bar, CLIP_BLOCK):
            part = slice(block[0], block[-1] + 1) if block.size else slice(0, 0)
            out[part] = window_stats(centers[part])
            bar.update(block.size)
        return out

    def moments(ids: np.ndarray, coef: np.ndarray, rmse: np.ndarray, bar) -> np.ndarray:
        """The statistics of the rows within the cut: all the window's less those beyond."""
        out = np.empty((ids.size, n_targets, n_stats(q + 1)))
        for block in bar_blocks(np.arange(ids.size), bar, CLIP_BLOCK):
            part = slice(block[0], block[-1] + 1) if block.size else slice(0, 0)
            cut = Cut(
                coef[part], rmse[part], float(clipping.n_sigma_cut),
                medians[ids[part]], clipping.median is not None,
            )  # fmt: skip
            run_chunks(
                cut_kernel, _chunks(block.size), centers[ids[part]], index.tables, columns,
                model, cut, max_bin, out[part],
            )  # fmt: skip
            bar.update(block.size)
        return np.subtract(everything[ids], out, out=out)

    def fit(stats: np.ndarray) -> Solution:
        return solve_local(stats, q + 1, model.trend.shape[0], x_ref, y_ref, min_entries, intercept)

    # The parameters that decided each window's kept rows; NaN keeps every row. A target whose
    # refit fails (too few rows kept) or fits exactly (rmse 0: nothing left to clip) keeps the
    # parameters that led there, so it stays put.
    cut_coef = np.full((m, n_targets, n_terms), np.nan)
    cut_rmse = np.full((m, n_targets), np.nan)
    medians = np.zeros((m, n_targets)) if clipping.median is None else clipping.median
    by_mad = clipping.mad is not None
    with progress_bar(m, progress, "xslide n_sigma_cut pass 1", " windows", scale=True) as bar:
        everything = all_rows(bar)
        current = everything.copy()
        result = fit(current)
        passes = np.ones(m, dtype=np.int64)
        active = np.arange(m)
        for n_pass in range(2, max_iter + 2):
            # a window clips once its fit succeeded; by the rmse, once it leaves a residual
            ok = result.status[active] == OK
            if not by_mad:
                ok &= result.rmse[active] > 0
            active, ok = active[ok.any(axis=1)], ok[ok.any(axis=1)]
            if active.size == 0:
                break
            cut_coef[active] = np.where(ok[..., None], result.coef[active], cut_coef[active])
            scale = clipping.mad[active] if by_mad else result.rmse[active]
            cut_rmse[active] = np.where(ok, scale, cut_rmse[active])
            _next_pass(bar, n_pass, active.size)
            again = moments(active, cut_coef[active], cut_rmse[active], bar)
            changed = np.any(again != current[active], axis=(1, 2))
            active = active[changed]
            current[active] = again[changed]
            result = result.updated(active, fit(again[changed]))
            passes[active] += 1
    return result, passes


def _chunks(size: int) -> int:
    """Thread chunks for a block of ``size`` windows (a few per thread, to balance them)."""
    return max(1, min(num_threads() * 4, size))


def _next_pass(bar, n_pass: int, n_windows: int) -> None:
    """One bar for every pass: it grows by the windows still clipping."""
    bar.total = (bar.total or 0) + n_windows
    bar.set_description(f"xslide n_sigma_cut pass {n_pass}")
    bar.refresh()
