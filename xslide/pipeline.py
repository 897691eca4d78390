"""The fit, step by step: statistics -> windowed statistics -> solutions -> ``Fit``.

``run`` is the whole pipeline. Each step is a short function that takes what the previous ones
made and returns new values:

1. ``_plan``: the window on the grid, the centers, the terms (trend terms included);
2. ``_window_and_solve``: windowed statistics at every center and their closed-form solve;
3. ``_clip``: the robust refit without outliers (``n_sigma_cut``), from the rows;
4. ``_raw_fits``: statsmodels glm/rlm or a callable on every window's rows;
5. ``_median`` and ``_robust``: the exact window median and the robust aggregates (LTM, MAD,
   trimmed mean; the median and MAD also center and scale ``n_sigma_cut`` when asked), from
   the rows;
6. ``result.fit_attrs``: the provenance attrs.

Steps 3-5 reach the rows through the bin index only (``rows.RowAccess``).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from functools import partial

import numpy as np

from . import budget
from ._numba import num_threads
from .aggregates import FIELDS, ROBUST_AGGREGATES, Fractions, window_robust_blocks
from .fitters import FitWork, fit_windows
from .grid import Grid
from .options import FitOptions
from .result import Fit, fit_attrs
from .robust import Clipping, LocalModel, RowColumns, clipped_fit
from .rows import RowAccess, WindowIndex, window_medians
from .solve import Solution, solve_local
from .stats import FIRST_MOMENT, BinStats
from .window import (
    MomentLayout,
    Window,
    check_periodic,
    kernel_is_uniform,
    kernel_weights,
    moment_layout,
    neighbor_sums,
    spans,
    trend_terms,
    windowed_sums,
)

# the fields of a Solution that a refit replaces (the aggregates stay those of all rows)
FIT_FIELDS = ("coef", "stderr", "r_squared", "rmse", "status", "cov")


@dataclass(frozen=True, eq=False)
class Plan:
    """What every step shares: the window, the centers and the terms of the model."""

    window: Window
    centers: np.ndarray  # (m,) flat ids of the centers
    layout: MomentLayout  # the moments summed; its trend table adds offset columns
    terms: tuple[str, ...]
    x_ref: np.ndarray  # references of the design columns, zeros for the offsets

    @property
    def trend(self) -> np.ndarray:
        """(k, 2) the dims of each trend column (see ``window.trend_terms``)."""
        return self.layout.trend


def run(stats: BinStats, rows: RowAccess | None, options: FitOptions) -> Fit:
    """Fit every center of the grid from the statistics (and the rows, where a step needs them)."""
    plan = _plan(stats, options)
    solution, n_rows, n_bins = _window_and_solve(stats, plan, options)
    n_fitted, n_rejected = solution.entries, None
    robust = _robust(stats, rows, plan, options, solution)
    if options.n_sigma_cut is not None:
        clipped = _clip(stats, _need(rows), plan, options, robust)
        n_fitted, n_rejected = clipped.entries, solution.entries - clipped.entries
        solution = _refit(solution, clipped)
    failures, warned, terms = {}, {}, plan.terms
    if options.raw_fitter is not None:
        raw = _raw_fits(stats, _need(rows), plan, options, solution.status)
        solution, failures, warned = _refit(solution, raw), raw.failures, raw.warned
        terms = options.raw_fitter.terms or terms  # curve_fit: the model's parameters
    return Fit(
        grid=stats.grid,
        terms=terms,
        targets=stats.targets,
        centers=plan.centers,
        solution=solution,
        n_fitted=n_fitted,
        n_rejected=n_rejected,
        median=_median(stats, rows, plan, options, solution),
        robust=None if robust is None else robust[..., : len(FIELDS) - 1],
        aggregation=options.aggregation,
        n_neighbors_used=n_bins,
        n_rows_aggregated=n_rows,
        window_volume=plan.window.volume,
        attrs=fit_attrs(stats, options, failures, warned),
        binning=stats.binning,
    )


def _need(rows: RowAccess | None) -> RowAccess:
    if rows is None:
        raise ValueError(
            "the median, the robust aggregates (ltm, ltm_std, mad, trimmed_mean), n_sigma_cut "
            "and the raw-row fitters (glm, rlm, curve_fit, callables) need "
            "the rows in memory, and this input is reduced to statistics without them "
            "(a statistics Dataset, a stream or a dask collection): leave those out, or "
            "fit an in-memory table (e.g. one sector at a time)"
        )
    return rows


def _refit(solution: Solution, refit) -> Solution:
    """The solution with the fit results of a refit (clipped or raw-row)."""
    return dataclasses.replace(solution, **{name: getattr(refit, name) for name in FIT_FIELDS})


def _plan(stats: BinStats, options: FitOptions) -> Plan:
    """The window on the grid, the centers, and the terms: a trend adds the terms of a local
    polynomial in the bin offsets from the center (``window.trend_terms``)."""
    grid = stats.grid
    window = _window(grid, options)
    if options.centers == "observed":
        centers = np.flatnonzero(stats.rows_per_bin > 0)
    else:
        centers = np.arange(grid.size)
    orders = [
        options.trend.get(d, 0) if b or a else 0
        for d, (b, a) in zip(grid.dims, spans(options.window[d] for d in grid.dims), strict=True)
    ]
    names, trend = trend_terms(grid.dims, orders, options.trend_interactions)
    terms = (*stats.terms, *names)
    if len(set(terms)) < len(terms):
        raise ValueError(
            f"the trend adds terms {list(names)}, which clash with design terms "
            f"{list(stats.terms)}: rename those predictors"
        )
    layout = moment_layout(len(stats.columns), trend)
    x_ref = np.concatenate([stats.x_ref, np.zeros(len(names))])
    return Plan(window, centers, layout, terms, x_ref)


def _window(grid: Grid, options: FitOptions) -> Window:
    """The window on the grid: a window wider than the grid is built no wider than the grid
    (the bins it reads are the same; mirror reflects, so its reach stays), each array sized
    against ``max_memory`` first. A dim's window is a half-width or (before, after)."""
    extents = tuple(options.window[d] for d in grid.dims)
    modes = tuple(options.boundary[d] for d in grid.dims)
    for dim, n, extent, mode in zip(grid.dims, grid.shape, extents, modes, strict=True):
        if mode == "periodic":
            check_periodic(n, extent, dim)
            if dim not in (options.read.extent or {}) and extent != 0:
                _warn_period(grid, dim)
    half = spans(extents)
    reach = tuple(
        (b, a) if mode == "mirror" else (min(b, n - 1), min(a, n - 1))
        for (b, a), mode, n in zip(half, modes, grid.shape, strict=True)
    )
    _check_window_memory(grid, half, reach, options)
    weights, volume = kernel_weights(options.kernel, half, reach)
    raw = options.raw_fitter
    if raw is not None and raw.kind == "rlm" and not np.all(weights == 1.0):
        raise ValueError(
            "fitter='rlm' takes no weights, so it cannot apply a non-uniform kernel; "
            "use kernel='uniform' or fitter='glm'/'wls'"
        )
    uniform = kernel_is_uniform(options.kernel, half) if reach != half else None
    return Window(
        grid.shape, reach, modes, weights, full_volume=volume, kernel_uniform=uniform,
        full_extents=half,
    )  # fmt: skip


def _warn_period(grid: Grid, dim: str) -> None:
    """A periodic dim without an extent wraps over the bins that happen to hold rows."""
    d = grid.dims.index(dim)
    warnings.warn(
        f"boundary 'periodic' on {dim!r} takes the bins with rows, {grid.lo[d]}..{grid.hi[d]} "
        f"({grid.shape[d]} bins), as the period; give extent={{{dim!r}: (first, last)}} for the "
        "full period (recorded in attrs['period_json'])",
        UserWarning,
        stacklevel=7,  # the user's call of fit / make_sliding_window_fit
    )


def _check_window_memory(grid: Grid, half, reach, options: FitOptions) -> None:
    """The kernel (a callable is evaluated on the whole window) and the neighbor tables."""
    limit, remedy = options.read.max_memory, "use a smaller window"
    if options.kernel.name == "callable":
        n_bytes = budget.size((b + a + 1 for b, a in half), len(half) + 2, budget.FLOAT)
        budget.check(n_bytes, f"the kernel callable's window {_listed(half)}", limit, remedy)
    n_bytes = budget.size((b + a + 1 for b, a in reach), budget.FLOAT)
    if not _box_sums_only(options):
        n_bytes += budget.size(2 * len(reach) + 1, max(grid.shape),
                               max(b + a + 1 for b, a in reach), budget.FLOAT)  # fmt: skip
    budget.check(n_bytes, f"the window {_listed(reach)} on grid {grid.shape}", limit, remedy)


#: the aggregates the windowed sums give (the others read the window's rows)
_SUMMED_AGGREGATES = frozenset({"mean", "std", "entries"})


def _box_sums_only(options: FitOptions) -> bool:
    """Whether the fit reads its windows by box sums alone (``Window.is_box``, no trend, no
    step that reads rows): then no neighbor tables are built, so a long window on a long
    series needs no memory for them."""
    return (
        options.kernel.name == "uniform"
        and all(mode == "truncate" for mode in options.boundary.values())
        and not any(options.trend.values())
        and options.n_sigma_cut is None
        and options.raw_fitter is None
        and options.chunks is None
        and all(set(names) <= _SUMMED_AGGREGATES for names in options.aggregation.values())
    )


def _listed(reach) -> list:
    """Per dim the half-width, or [before, after] where the window is asymmetric (messages)."""
    return [b if b == a else [b, a] for b, a in reach]


def _window_and_solve(
    stats: BinStats, plan: Plan, options: FitOptions
) -> tuple[Solution, np.ndarray, np.ndarray]:
    """Windowed statistics at every center, solved in closed form."""
    n_columns = len(stats.columns) + plan.trend.shape[0]
    _check_fit_memory(stats, plan, options)
    solve = partial(
        _solve,
        n_columns=n_columns,
        n_trend=plan.trend.shape[0],
        x_ref=plan.x_ref,
        y_ref=stats.y_ref,
        min_entries=options.min_entries,
        intercept=stats.intercept,
    )
    chunks = None
    if options.chunks is not None:
        chunks = tuple(
            options.chunks.get(d, n) for d, n in zip(stats.grid.dims, stats.grid.shape, strict=True)
        )
    return windowed_sums(
        stats.sums, stats.rows_per_bin, plan.window, plan.centers, plan.layout, solve, chunks
    )


def _check_fit_memory(stats: BinStats, plan: Plan, options: FitOptions) -> None:
    """The windowed sums and the fit on the grid (a few copies of each on the way)."""
    n_sums = FIRST_MOMENT + plan.layout.table.shape[0]
    p = len(plan.terms)
    per_bin_and_target = 3 * n_sums + 2 * (p * p + 2 * p + 8)
    n_bytes = budget.size(stats.grid.size, len(stats.targets), per_bin_and_target, budget.FLOAT)
    shape = dict(zip(stats.grid.dims, stats.grid.shape, strict=True))
    budget.check(
        n_bytes,
        f"the windowed sums and the fit of grid {shape} ({len(stats.targets)} targets, {p} terms)",
        options.read.max_memory,
        "restrict the grid with extent=, use coarser bins, fewer predictors, or chunks=",
    )


def _solve(sums, *, n_columns, n_trend, x_ref, y_ref, min_entries, intercept) -> Solution:
    return solve_local(sums, n_columns, n_trend, x_ref, y_ref, min_entries, intercept)


def _clip(
    stats: BinStats, rows: RowAccess, plan: Plan, options: FitOptions, robust: np.ndarray | None
) -> Solution:
    """The fit of every window after outlier rejection (around the fit or the window median,
    in units of the rmse or the window's MAD sigma: ``robust`` holds those two)."""
    index = WindowIndex(plan.window, rows.offsets)
    ws = rows.ws
    columns = RowColumns(
        rows.offsets,
        rows.xs,
        rows.ys,
        np.ones(1) if ws is None else ws,
        ws is not None,
        ws is not None or index.weighted,
    )
    model = LocalModel(plan.trend, plan.x_ref, stats.y_ref, stats.intercept)
    median = mad = None
    if options.clip_center == "median":
        median = robust[..., FIELDS.index("median")]
    if options.clip_scale == "mad":
        mad = robust[..., FIELDS.index("mad")]
    clipping = Clipping(options.n_sigma_cut, options.max_iter, options.min_entries, median, mad)
    # no window's rows are gathered (they are read bin by bin): no row buffers to size
    clipped, _ = clipped_fit(
        plan.centers, index, columns, model, clipping,
        lambda centers: neighbor_sums(
            plan.window, centers, stats.sums, stats.rows_per_bin, plan.layout
        )[0],
        options.progress,
    )  # fmt: skip
    return clipped


def _raw_fits(
    stats: BinStats, rows: RowAccess, plan: Plan, options: FitOptions, status: np.ndarray
):
    """statsmodels glm/rlm or the user's callable on the rows of every window still OK."""
    work = FitWork(
        options.raw_fitter,
        WindowIndex(plan.window, rows.offsets),
        plan.centers,
        status,
        rows.xs,
        rows.ys,
        rows.ws,
        plan.trend,
        stats.intercept,
        options.raw_fitter.terms or plan.terms,
    )
    return fit_windows(work, options.parallel, options.progress)


def _check_row_buffers(max_count: int, per_row: int, options: FitOptions) -> None:
    """The buffers of the raw-row passes: each thread's chunk gathers a whole window's rows."""
    n_chunks = 4 * num_threads()
    n_bytes = budget.size(n_chunks, max_count, per_row, budget.FLOAT)
    budget.check(
        n_bytes,
        f"the raw-row buffers of windows of up to {max_count:,} rows",
        options.read.max_memory,
        "use a smaller window or coarser bins, or leave out the median and n_sigma_cut",
    )


def _median(
    stats: BinStats, rows: RowAccess | None, plan: Plan, options: FitOptions, solution: Solution
) -> np.ndarray | None:
    """The exact median of every window, for the targets that ask for it (NaN for others)."""
    wanted = [t for t, name in enumerate(stats.targets) if "median" in options.aggregation[name]]
    if not wanted:
        return None
    rows = _need(rows)
    max_count = int(solution.entries[:, wanted].max(initial=0))
    _check_row_buffers(max_count, 2 * len(wanted) + 2, options)
    median = np.full((plan.centers.size, len(stats.targets)), np.nan)
    median[:, wanted] = window_medians(
        plan.centers,
        WindowIndex(plan.window, rows.offsets),
        rows.target_runs(wanted),
        max_count,
        stats.backend,
        options.parallel,
        options.progress,
    )
    return median


def _robust(
    stats: BinStats, rows: RowAccess | None, plan: Plan, options: FitOptions, solution: Solution
) -> np.ndarray | None:
    """The robust aggregates and the median of every window (``aggregates.FIELDS``), (m, t, 5),
    for the targets that ask for one (every target where n_sigma_cut clips around the median
    or in units of the MAD); NaN for the others. None when none is asked."""
    robust_clip = options.n_sigma_cut is not None and (
        options.clip_center == "median" or options.clip_scale == "mad"
    )
    wanted = [
        t
        for t, name in enumerate(stats.targets)
        if robust_clip or set(options.aggregation[name]) & set(ROBUST_AGGREGATES)
    ]
    if not wanted:
        return None
    rows = _need(rows)
    max_count = int(solution.entries[:, wanted].max(initial=0))
    _check_row_buffers(max_count, 12, options)  # _robust_chunk: 9 rows of buffers, 3 of prefix
    out = np.full((plan.centers.size, len(stats.targets), len(FIELDS)), np.nan)
    asked = {a for name in stats.targets for a in options.aggregation[name]}
    need = tuple(f for f in ROBUST_AGGREGATES if f in asked)
    if robust_clip and options.clip_scale == "mad":
        need = (*need, "mad")
    if robust_clip and options.clip_center == "median":
        need = (*need, "median")
    out[:, wanted] = window_robust_blocks(
        plan.centers,
        WindowIndex(plan.window, rows.offsets),
        rows.target_runs(wanted) if stats.backend == "numba" else rows.ys[wanted],
        max_count,
        stats.backend,
        Fractions(options.ltm_fraction, options.trim_fraction, need),
        options.parallel,
        options.progress,
    )
    return out
