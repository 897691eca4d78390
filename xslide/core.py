"""The pipeline: rows -> per-bin statistics -> windowed statistics -> solutions per center.

Everything here works on numpy arrays; ``result.py`` turns the per-center arrays into an
``xr.Dataset`` or the seed API's DataFrame.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import metadata

import numpy as np

from . import _numba
from .binning import binning_of
from .chunked import chunked_window_sums
from .design import Design, RowTable, as_name_list, build_design
from .errors import PerformanceWarning
from .fitters import Parallel, RawFitter, check_progress, fit_windows, make_fitter
from .formula import ParsedFormula, parse_formula, uses_column
from .grid import DEFAULT_MAX_BINS, Grid, bin_index, build_grid, read_bins, selection_mask
from .robust import clipped_fit
from .rows import WindowIndex, values_in_bin_order, window_median
from .solve import Solution, solve_in_blocks
from .stats import accumulate
from .window import (
    Window,
    kernel_weights,
    neighbour_sums,
    neighbour_sums_trend,
    parse_boundary,
    parse_window,
    window_sum,
)

AGGREGATES = ("mean", "std", "median", "entries")
FITTERS = ("ols", "wls", "glm", "rlm")


def resolve_backend(backend: str) -> str:
    """'auto' -> numba when it imports; 'numba' without numba warns and falls back to numpy."""
    if backend not in ("auto", "numba", "numpy"):
        raise ValueError(f"backend must be 'auto', 'numba' or 'numpy', got {backend!r}")
    if backend == "numpy":
        return "numpy"
    if _numba.numba_available():
        return "numba"
    if backend == "numba":
        warnings.warn(
            "backend='numba' was asked but numba cannot be imported; using the slower numpy "
            "backend (pip install numba)",
            PerformanceWarning,
            stacklevel=3,
        )
    return "numpy"


@dataclass(frozen=True)
class Model:
    """What is fitted: design columns (predictors or a formula) and the fitter that fits them."""

    predictors: list[str]
    formula: ParsedFormula | None
    raw_fitter: RawFitter | None  # None: the closed-form OLS/WLS path
    fitter_used: str


def resolve_model(
    fitter: str,
    formula,
    weights: str | None,
    targets: Sequence[str],
    predictors: Sequence[str],
    fitter_options: dict,
) -> Model:
    """Check the fitter, the formula or callable and their options; weights make OLS a WLS."""
    if fitter not in FITTERS:
        raise ValueError(f"fitter must be one of {list(FITTERS)}, got {fitter!r}")
    if fitter == "wls" and weights is None:
        raise ValueError("fitter='wls' needs weights_column (the row weights)")
    parsed = None
    if formula is not None and not callable(formula):
        parsed = parse_formula(formula, targets)
        unused = [p for p in predictors if not uses_column(parsed.rhs, p)]
        if unused:
            raise ValueError(
                f"predictor_columns {unused} are not used by fit_formula {formula!r}; "
                "with a formula, the formula alone defines the terms"
            )
        in_rhs = [t for t in targets if uses_column(parsed.rhs, t)]
        if in_rhs:
            raise ValueError(f"fit_formula {formula!r} uses fit columns {in_rhs} as terms")
        predictors = []
    raw = make_fitter(fitter, formula, fitter_options, weights)
    if fitter_options:
        raise TypeError(f"unexpected fitter options {sorted(fitter_options)} for fitter={fitter!r}")
    if raw is not None:
        used = raw.name
    else:
        used = "wls" if weights is not None else "ols"
    return Model(list(predictors), parsed, raw, used)


def check_names(dims, targets, predictors) -> tuple[list[str], list[str], list[str]]:
    """Validate the column-name arguments; a column may play one role only."""
    dims = as_name_list(dims, "group_columns")
    targets = as_name_list(targets, "fit_columns")
    predictors = as_name_list(predictors, "predictor_columns", allow_empty=True)
    clash = set(dims) & (set(targets) | set(predictors))
    if clash:
        raise ValueError(f"bin columns {sorted(clash)} cannot also be fit columns or predictors")
    return dims, targets, predictors


def check_min_entries(min_entries) -> int:
    if isinstance(min_entries, bool) or not isinstance(min_entries, int | np.integer):
        raise TypeError(f"min_entries must be a positive integer, got {min_entries!r}")
    if min_entries < 1:
        raise ValueError(f"min_entries must be >= 1, got {min_entries}")
    return int(min_entries)


def parse_aggregation(aggregation, targets: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """None -> all four aggregates per target; a list -> the same for every target; or a dict."""
    if aggregation is None:
        return dict.fromkeys(targets, AGGREGATES)
    if not isinstance(aggregation, Mapping):
        if isinstance(aggregation, str):
            aggregation = [aggregation]
        aggregation = dict.fromkeys(targets, tuple(aggregation))
    unknown = set(aggregation) - set(targets)
    if unknown:
        raise ValueError(
            f"aggregation_functions names {sorted(unknown)}, "
            f"which are not fit columns {list(targets)}"
        )
    out = {}
    for t in targets:
        names = aggregation.get(t, ())
        if isinstance(names, str):
            names = [names]
        bad = [a for a in names if a not in AGGREGATES]
        if bad:
            raise ValueError(
                f"aggregation_functions[{t!r}] has {bad}; choose from {list(AGGREGATES)}"
            )
        out[t] = tuple(a for a in AGGREGATES if a in names)
    return out


@dataclass(eq=False)
class BinOrdered:
    """Rows of the grid in bin order: the bin index and the columns the raw-row paths read.

    Each column set is copied into bin order on first use only (the median needs no design).
    """

    order: np.ndarray  # row numbers, bin by bin
    offsets: np.ndarray  # rows of bin b: order[offsets[b]:offsets[b + 1]]
    design: Design

    @cached_property
    def xs(self) -> np.ndarray:
        """(q, n) design columns."""
        return np.ascontiguousarray(self.design.x[:, self.order])

    @cached_property
    def ys(self) -> np.ndarray:
        """(t, n) targets, NaN where the row is invalid for that target."""
        d = self.design
        return values_in_bin_order(self.order, d.x, d.y, d.w)

    @cached_property
    def ws(self) -> np.ndarray | None:
        """(n,) weights, or None."""
        return None if self.design.w is None else self.design.w[self.order]


@dataclass
class Reduced:
    """Rows reduced to per-bin statistics, plus what the raw-row paths need to come back."""

    grid: Grid
    columns: tuple[str, ...]  # the constant and the design columns summed in ``stats``
    targets: tuple[str, ...]
    stats: np.ndarray  # (n_bins, t, n_stats)
    rows_per_bin: np.ndarray  # (n_bins,) selected rows in each bin
    x_ref: np.ndarray
    y_ref: np.ndarray
    counts: dict[str, int | dict[str, int]]
    backend: str
    weights: str | None
    intercept: bool = True  # whether the constant is a model term
    binning: dict = field(default_factory=dict)  # digitize records of the bin dims
    # raw-row access (absent when the statistics come from a stats Dataset)
    flat: np.ndarray | None = None
    design: Design | None = None
    _rows: BinOrdered | None = field(default=None, repr=False)

    @property
    def terms(self) -> tuple[str, ...]:
        """Terms of the model, in output order."""
        return self.columns if self.intercept else self.columns[1:]

    def bin_ordered(self) -> BinOrdered:
        """The indexed rows in bin order, built once on first use by the raw-row paths."""
        if self._rows is None:
            if self.flat is None:
                raise ValueError(
                    "the median, n_sigma_cut and the raw-row fitters (glm, rlm, callables) need "
                    "the rows in memory, and this input is reduced to statistics without them "
                    "(a statistics Dataset, a stream or a dask collection): leave those out, or "
                    "fit an in-memory table (e.g. one sector at a time)"
                )
            order, offsets = bin_index(self.flat, self.grid.size, self.backend)
            self._rows = BinOrdered(order, offsets, self.design)
        return self._rows


def reduce_rows(
    data,
    dims: Sequence[str],
    targets: Sequence[str],
    predictors: Sequence[str],
    *,
    weights: str | None = None,
    selection=None,
    extent: Mapping | None = None,
    max_bins: int = DEFAULT_MAX_BINS,
    backend: str = "numba",
    reference: Mapping[str, float] | None = None,
    formula: ParsedFormula | None = None,
) -> Reduced:
    """One pass over the rows: validate bins, build the grid and accumulate statistics."""
    table = RowTable(data)
    bins, missing = read_bins(table, dims)
    if isinstance(selection, str):  # a boolean column of the data, as on streams and dask
        selection = table.column(selection, "selection")
    selected = selection_mask(selection, table.n_rows, table.index)
    grid, flat, counts = build_grid(bins, selected, extent, max_bins, missing)
    rows_per_bin = counts.pop("rows_per_bin")
    design = build_design(table, targets, predictors, weights, flat, reference, formula)
    stats, invalid = accumulate(
        flat, design.x, design.y, design.w, design.x_ref, design.y_ref, grid.size, backend
    )
    counts = {
        "n_rows_input": table.n_rows,
        **counts,
        "n_rows_invalid": {t: int(n) for t, n in zip(targets, invalid, strict=True)},
    }
    return Reduced(
        grid,
        design.columns,
        design.targets,
        stats,
        rows_per_bin,
        design.x_ref,
        design.y_ref,
        counts,
        backend,
        weights,
        intercept=design.intercept,
        binning=binning_of(data, dims),
        flat=flat,
        design=design,
    )


@dataclass
class Fit:
    """Fit results at the centers (flat ids) of a grid, ready to become a Dataset or DataFrame."""

    grid: Grid
    terms: tuple[str, ...]
    targets: tuple[str, ...]
    centers: np.ndarray
    solution: Solution  # aggregates of all valid rows; fit results of the final fit
    n_fitted: np.ndarray  # (m, t) rows in the final fit
    n_rejected: np.ndarray | None  # (m, t) rows dropped by n_sigma_cut, None without it
    median: np.ndarray | None  # (m, t), NaN for targets whose median was not asked
    aggregation: dict[str, tuple[str, ...]]
    n_neighbors_used: np.ndarray  # (m,) distinct bins with rows in each window
    n_rows_aggregated: np.ndarray  # (m,) rows in each window (every appearance counted)
    window_volume: int
    attrs: dict
    binning: dict = field(default_factory=dict)  # digitize records: bin centres per dim


@dataclass(frozen=True)
class FitOptions:
    """Validated options of the window and the fit, checked before any row is read."""

    half_widths: dict[str, int]
    boundary: dict[str, str]
    kernel_weights: np.ndarray  # weight per window offset, shape (2w_d + 1, ...)
    kernel: str  # its name for the attrs
    min_entries: int
    aggregation: dict[str, tuple[str, ...]]
    centers: str
    fitter: str
    binning_formulas: dict[str, str]
    n_sigma_cut: float | None = None
    max_iter: int = 3
    raw_fitter: RawFitter | None = None
    parallel: Parallel = field(default_factory=Parallel)
    progress: bool | None = None
    trend: int = 0
    chunks: dict[str, int] | None = None  # chunk size per bin dim: windowing with dask


def check_chunks(chunks, dims: Sequence[str]) -> dict[str, int] | None:
    """``chunks={dim: size}`` (dims left out: one chunk), positive integers."""
    if chunks is None:
        return None
    if not isinstance(chunks, Mapping):
        raise TypeError(f"chunks must be a dict {{dim: chunk size}}, got {chunks!r}")
    unknown = [d for d in chunks if d not in dims]
    if unknown:
        raise ValueError(f"chunks names {unknown}, which are not bin dims ({list(dims)})")
    for d, size in chunks.items():
        if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
            raise ValueError(f"chunks[{d!r}] must be a positive integer, got {size!r}")
    return {d: int(s) for d, s in chunks.items()}


def check_trend(trend) -> int:
    """``trend`` is 0 (local constant plus predictors) or 1 (plus local gradients)."""
    if isinstance(trend, bool) or trend not in (0, 1):
        raise ValueError(f"trend must be 0 or 1, got {trend!r}")
    return int(trend)


def check_clipping(n_sigma_cut, max_iter) -> tuple[float | None, int]:
    """Validate ``n_sigma_cut`` (None or > 0) and ``max_iter`` (>= 1, only with a cut)."""
    if n_sigma_cut is None:
        if max_iter is not None:
            raise TypeError("max_iter applies to outlier rejection: give n_sigma_cut too")
        return None, 3
    if isinstance(n_sigma_cut, bool) or not isinstance(n_sigma_cut, int | float | np.number):
        raise TypeError(f"n_sigma_cut must be a positive number, got {n_sigma_cut!r}")
    if not np.isfinite(n_sigma_cut) or n_sigma_cut <= 0:
        raise ValueError(f"n_sigma_cut must be a positive number, got {n_sigma_cut!r}")
    max_iter = 3 if max_iter is None else max_iter
    if isinstance(max_iter, bool) or not isinstance(max_iter, int | np.integer) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    return float(n_sigma_cut), int(max_iter)


def fit_options(
    dims: Sequence[str],
    targets: Sequence[str],
    window: Mapping | None,
    *,
    min_entries: int = 10,
    aggregation=None,
    centers: str = "observed",
    boundary="truncate",
    kernel="uniform",
    kernel_width=None,
    fitter: str = "ols",
    binning_formulas: Mapping | None = None,
    n_sigma_cut: float | None = None,
    max_iter: int | None = None,
    raw_fitter: RawFitter | None = None,
    parallel: Parallel | None = None,
    progress: bool | None = None,
    trend: int = 0,
    chunks: Mapping[str, int] | None = None,
) -> FitOptions:
    """Check every option of a fit; raise naming the argument that is wrong."""
    if n_sigma_cut is not None and raw_fitter is not None:
        raise ValueError(
            f"n_sigma_cut applies to the closed-form 'ols'/'wls' fits, not to {raw_fitter.name!r}"
            " (fitter='rlm' is the robust statsmodels alternative)"
        )
    half = parse_window(window, dims)
    boundary_per_dim = parse_boundary(boundary, dims)
    weights = kernel_weights(kernel, [half[d] for d in dims], dims, kernel_width)
    uniform = bool(np.all(weights == 1.0))
    if raw_fitter is not None and raw_fitter.kind == "rlm" and not uniform:
        raise ValueError(
            "fitter='rlm' takes no weights, so it cannot apply a non-uniform kernel; "
            "use kernel='uniform' or fitter='glm'/'wls'"
        )
    if centers not in ("observed", "grid"):
        raise ValueError(f"centers must be 'observed' or 'grid', got {centers!r}")
    if binning_formulas is not None and not isinstance(binning_formulas, Mapping):
        raise TypeError("binning_formulas must be a dict {bin_column: expression}")
    return FitOptions(
        half,
        boundary_per_dim,
        weights,
        kernel if isinstance(kernel, str) else ("callable" if callable(kernel) else "array"),
        check_min_entries(min_entries),
        parse_aggregation(aggregation, targets),
        centers,
        fitter,
        dict(binning_formulas or {}),
        *check_clipping(n_sigma_cut, max_iter),
        raw_fitter,
        parallel or Parallel(),
        check_progress(progress),
        check_trend(trend),
        check_chunks(chunks, dims),
    )


def _box_sums(
    reduced: Reduced, widths: tuple[int, ...], center_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windowed statistics of a uniform, truncated window by box sums over the whole grid."""
    grid = reduced.grid
    dense = reduced.stats.reshape((*grid.shape, -1))
    occupied = (reduced.rows_per_bin > 0).astype(np.float64)
    per_bin = np.concatenate(
        [
            dense,
            reduced.rows_per_bin.astype(np.float64).reshape((*grid.shape, 1)),
            occupied.reshape((*grid.shape, 1)),
        ],
        axis=-1,
    )
    windowed = window_sum(per_bin, widths).reshape(grid.size, -1)[center_ids]
    stats = windowed[:, :-2].reshape(center_ids.size, *reduced.stats.shape[1:])
    return (
        stats,
        np.rint(windowed[:, -2]).astype(np.int64),
        np.rint(windowed[:, -1]).astype(np.int64),
    )


def fit_reduced(reduced: Reduced, options: FitOptions) -> Fit:
    """Window the statistics and solve every center."""
    grid = reduced.grid
    half, aggregation, centers = options.half_widths, options.aggregation, options.centers
    widths = tuple(half[d] for d in grid.dims)
    n_targets = len(reduced.targets)
    window = Window(
        grid.shape,
        widths,
        tuple(options.boundary[d] for d in grid.dims),
        options.kernel_weights,
    )
    if centers == "observed":
        center_ids = np.flatnonzero(reduced.rows_per_bin > 0)
    else:
        center_ids = np.arange(grid.size)
    # trend=1: one local-derivative term per windowed dim, its column the bin's offset
    trend_dims = np.flatnonzero(np.asarray(widths) > 0) if options.trend else np.empty(0, int)
    terms = (*reduced.terms, *(f"d_{grid.dims[d]}" for d in trend_dims))
    if len(set(terms)) < len(terms):
        raise ValueError(
            f"trend=1 adds terms {[f'd_{grid.dims[d]}' for d in trend_dims]}, which clash with "
            f"design terms {list(reduced.terms)}: rename those predictors"
        )
    x_ref = np.concatenate([reduced.x_ref, np.zeros(trend_dims.size)])
    n_columns = len(reduced.columns) + trend_dims.size
    solution = None
    if options.chunks is not None:  # windowed and solved chunk by chunk (dask)
        sizes = tuple(options.chunks.get(d, n) for d, n in zip(grid.dims, grid.shape, strict=True))
        solved, rows_in, bins_in = chunked_window_sums(
            reduced.stats, reduced.rows_per_bin, window, sizes, len(reduced.columns),
            bool(trend_dims.size),
            {"x_ref": reduced.x_ref, "y_ref": reduced.y_ref,
             "min_entries": options.min_entries, "intercept": reduced.intercept},
        )  # fmt: skip
        solution = Solution(
            **{name: getattr(solved, name)[center_ids] for name in Solution.__dataclass_fields__}
        )
        n_rows_aggregated, n_neighbors_used = rows_in[center_ids], bins_in[center_ids]
    elif trend_dims.size:
        at_centers, n_rows_aggregated, n_neighbors_used = neighbour_sums_trend(
            window, center_ids, reduced.stats, reduced.rows_per_bin, len(reduced.columns)
        )
    elif window.is_box:
        at_centers, n_rows_aggregated, n_neighbors_used = _box_sums(reduced, widths, center_ids)
    else:
        at_centers, n_rows_aggregated, n_neighbors_used = neighbour_sums(
            window, center_ids, reduced.stats, reduced.rows_per_bin
        )
    if solution is None:
        solution = solve_in_blocks(
            at_centers, n_columns, x_ref, reduced.y_ref, options.min_entries, reduced.intercept
        )

    n_fitted, n_rejected = solution.entries, None
    if options.n_sigma_cut is not None:
        rows = reduced.bin_ordered()
        index = WindowIndex(window, rows.offsets)
        clipped, _ = clipped_fit(
            center_ids,
            index,
            rows.xs,
            rows.ys,
            rows.ws,
            trend_dims,
            x_ref,
            reduced.y_ref,
            reduced.intercept,
            options.min_entries,
            options.n_sigma_cut,
            options.max_iter,
            int(solution.entries.max(initial=0)),
            reduced.backend,
        )
        for name in ("coef", "stderr", "r_squared", "rmse", "status", "cov"):
            setattr(solution, name, getattr(clipped, name))
        n_fitted, n_rejected = clipped.entries, solution.entries - clipped.entries

    failures = warned = None
    if options.raw_fitter is not None:
        rows = reduced.bin_ordered()
        index = WindowIndex(window, rows.offsets)
        (
            solution.coef,
            solution.stderr,
            solution.cov,
            solution.r_squared,
            solution.rmse,
            solution.status,
            failures,
            warned,
        ) = fit_windows(
            options.raw_fitter,
            index,
            center_ids,
            solution.status,
            rows.xs,
            rows.ys,
            rows.ws,
            trend_dims,
            reduced.intercept,
            terms,
            options.parallel,
            options.progress,
        )

    median = None
    wants_median = [t for t, name in enumerate(reduced.targets) if "median" in aggregation[name]]
    if wants_median:
        rows = reduced.bin_ordered()
        index = WindowIndex(window, rows.offsets)
        max_count = int(solution.entries[:, wants_median].max(initial=0))
        median = np.full((center_ids.size, n_targets), np.nan)
        ys = rows.ys[wants_median]
        client = options.parallel.client
        if client is not None:  # blocks of centers, each with its halo rows, on the workers
            blocks = np.array_split(center_ids, max(1, 4 * len(client.nthreads())))
            futures = []
            for block in blocks:
                local, positions = index.halo(block)
                arguments = (block, local, ys[:, positions], max_count, reduced.backend)
                futures.append(client.submit(window_median, *arguments, pure=False))
            median[:, wants_median] = np.concatenate(client.gather(futures))
        else:
            median[:, wants_median] = window_median(
                center_ids, index, ys, max_count, reduced.backend
            )

    attrs = {
        "xslide_version": _version("xslide"),
        "statsmodels_version": _version("statsmodels"),
        "window_spec_json": json.dumps(half),
        "binning_formulas_json": json.dumps(
            {
                **{d: record["formula"] for d, record in reduced.binning.items()},
                **options.binning_formulas,  # the user's own words win
            }
        ),
        "boundary_mode_per_dim": json.dumps(options.boundary),
        "kernel": options.kernel,
        "trend": options.trend,
        "centers": centers,
        "min_entries": options.min_entries,
        "backend_used": reduced.backend,
        "fitter_used": options.fitter,
        "n_sigma_cut": options.n_sigma_cut if options.n_sigma_cut is not None else "none",
        "max_iter": options.max_iter if options.n_sigma_cut is not None else "none",
        "weights_column": reduced.weights or "",
        **{k: v for k, v in reduced.counts.items() if not isinstance(v, dict)},
        "n_rows_invalid_json": json.dumps(reduced.counts["n_rows_invalid"]),
        "fit_failures_json": json.dumps(dict(failures or {})),
        "fit_warnings_json": json.dumps(dict(warned or {})),
    }
    return Fit(
        grid,
        terms,
        reduced.targets,
        center_ids,
        solution,
        n_fitted,
        n_rejected,
        median,
        aggregation,
        n_neighbors_used,
        n_rows_aggregated,
        window.volume,
        attrs,
        reduced.binning,
    )


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
