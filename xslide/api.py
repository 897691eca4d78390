"""The xarray-facing functions: ``fit``, ``bin_stats`` and ``combine_stats``."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from .core import (
    Fit,
    Reduced,
    check_names,
    fit_options,
    fit_reduced,
    reduce_rows,
    resolve_backend,
    resolve_model,
)
from .design import RowTable
from .distributed import dask_stats, is_dask_dataframe, is_dask_dataset
from .errors import InvalidWindowSpec
from .fitters import parse_partition
from .grid import DEFAULT_MAX_BINS, Grid
from .result import to_dataset
from .stats import COUNT, COUNT_POSITIVE, SUM_W2, moment_index, n_stats, rereference
from .stream import is_stream, stream_stats

STATS_KIND = "xslide.stats"
ROW_COUNTS = ("n_rows_input", "n_rows_not_selected", "n_rows_without_bin", "n_rows_outside_extent")


def bin_stats(
    data,
    dims: Sequence[str],
    targets: Sequence[str],
    predictors: Sequence[str] = (),
    *,
    weights: str | None = None,
    selection=None,
    extent: Mapping | None = None,
    backend: str = "auto",
    max_bins: int = DEFAULT_MAX_BINS,
    reference: Mapping[str, float] | None = None,
) -> xr.Dataset:
    """Reduce rows to additive per-bin sufficient statistics on the dense grid.

    Parameters
    ----------
    data : pandas DataFrame, xarray Dataset of rows (one dimension), dict of arrays, or a
        stream: a parquet path or an iterable of DataFrames / pyarrow RecordBatches, summed
        batch by batch with memory bounded by the grid (``selection`` then names a boolean
        column; the reference comes from the first batch unless given).
    dims : integer bin columns, the grid dims in order.
    targets, predictors : fit columns and predictor columns.
    weights : optional column of row weights (>= 0).
    selection : boolean Series aligned on the index, or boolean array of len(data).
    extent : ``{dim: (lo, hi)}`` fixing the grid range (rows outside are dropped and counted).
    backend : 'auto', 'numba' or 'numpy'.
    max_bins : refuse a dense grid larger than this.
    reference : ``{column: value}`` shift subtracted before summing (default: a global mean);
        give the same reference to stats you want to add without re-referencing.

    Returns
    -------
    xr.Dataset with ``count``, ``count_positive`` (rows of weight > 0), ``sum_w``, ``sum_w2``,
    ``sum_wy``, ``sum_wy2`` (*dims, target),
    ``sum_wx``, ``sum_wxy`` (*dims, target, term), ``sum_wxx`` (*dims, target, term, term_),
    ``rows`` (*dims) and the references ``x_reference`` (term), ``y_reference`` (target).
    Sums are of the shifted columns (x - x_reference, y - y_reference).
    """
    dims, targets, predictors = check_names(dims, targets, predictors)
    read = _reader(data)
    reduced = read(
        data,
        dims,
        targets,
        predictors,
        weights=weights,
        selection=selection,
        extent=extent,
        max_bins=max_bins,
        backend=resolve_backend(backend),
        reference=reference,
    )
    return stats_to_dataset(reduced)


def fit(
    data,
    dims: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    predictors: Sequence[str] = (),
    window: Mapping[str, int] | None = None,
    *,
    formula=None,
    fitter: str = "ols",
    weights: str | None = None,
    selection=None,
    min_entries: int = 10,
    aggregation=None,
    boundary: str | Mapping[str, str] = "truncate",
    kernel="uniform",
    kernel_width=None,
    trend: int = 0,
    centers: str = "observed",
    extent: Mapping | None = None,
    backend: str = "auto",
    max_bins: int = DEFAULT_MAX_BINS,
    binning_formulas: Mapping[str, str] | None = None,
    reference: Mapping[str, float] | None = None,
    n_sigma_cut: float | None = None,
    max_iter: int | None = None,
    partition_strategy=None,
    progress: bool | None = None,
    chunks: Mapping[str, int] | None = None,
    **fitter_options,
) -> xr.Dataset:
    """Fit ``target ~ predictors`` at every center from the rows of its window.

    Parameters
    ----------
    data : rows (DataFrame, Dataset of rows, dict of arrays) or a statistics Dataset from
        ``bin_stats`` (then dims/targets/predictors come from it and no row is touched).
    dims : integer bin columns; the window slides over them.
    targets : fit columns, each fitted separately with its own valid rows.
    predictors : predictor columns; an ``Intercept`` term is always first.
    window : ``{dim: half_width}``, ±half_width bins; dims left out get 0.
    formula : None, a formula string ``'target ~ x1 + np.log(x2) + x1:x2'`` ('target' stands
        for each target; ``- 1`` drops the intercept; term names as in statsmodels), or a
        callable fitter ``f(X, y, w, terms) -> {term: coef, 'stderr': {term: se}}``.
    fitter : 'ols' / 'wls' (closed form on the window's statistics), 'glm' or 'rlm'
        (statsmodels on the window's rows; ``family=``, ``M=`` and ``fit_kwargs=`` go to it).
    weights : row weights column (the fit is then WLS, mean/std weighted).
    selection : boolean Series aligned on the index or boolean array of len(data).
    min_entries : fit a center only when its window holds at least this many valid rows.
    aggregation : aggregates to compute: None (mean, std, median, entries), a list for every
        target or ``{target: [...]}``.
    boundary : 'truncate' (alias 'full'), 'periodic', 'mirror' or 'shrink' (alias
        'symmetric'), for all dims or ``{dim: mode}``.
    kernel, kernel_width : 'uniform', 'gaussian', 'epanechnikov', 'linear' (width per dim,
        default max(half-width, 1)), a callable of one integer offset array per dim, or an
        explicit weights array of shape (2w + 1, ...). A row's weight is its own weight times
        the kernel weight of its bin's offset.
    trend : 1 adds a term ``d_{dim}`` per windowed dim, the row's bin offset from the center:
        the intercept is then the local value free of the window's gradient bias, and the
        ``d_`` coefficients are the local derivatives per bin.
    centers : 'observed' (bins with rows) or 'grid' (every bin of the dense grid).
    extent : ``{dim: (lo, hi)}`` fixing the grid range.
    backend : 'auto', 'numba' or 'numpy'.
    max_bins, binning_formulas, reference : see ``bin_stats``; formulas are recorded in attrs.
    n_sigma_cut, max_iter : robust refit: drop rows whose |residual| exceeds n_sigma_cut x
        rmse and refit, up to max_iter times (default 3); adds ``n_rejected``.
    partition_strategy : ``{'n_jobs': N}`` (raw-row fits in N processes), ``{'client':
        client}`` or a dask Client, ``{'split_by': [columns]}`` (no window across them).
    progress : progress bar of raw-row fits: True, False, or None (on a terminal when long).
    chunks : ``{dim: size}``: window the statistics chunk by chunk with dask (halo of the
        window's depth, every boundary mode), for grids too large for one array; equal results.

    Returns
    -------
    xr.Dataset on the dense grid: ``coef``/``stderr`` (target, term, *dims), ``mean``,
    ``std``, ``median``, ``entries``, ``r_squared``, ``rmse``, ``n_fitted``, ``quality_flag``
    (target, *dims) and ``n_neighbors_used``, ``n_rows_aggregated``,
    ``effective_window_fraction`` (*dims).
    """
    started = time.perf_counter()
    if is_stats_dataset(data):
        row_options = {
            "dims": dims,
            "targets": targets,
            "predictors": predictors or None,
            "formula": formula,
            "weights": weights,
            "selection": selection,
            "extent": extent,
            "reference": reference,
        }
        given = [name for name, value in row_options.items() if value is not None]
        if given:
            raise TypeError(
                f"{given} act on rows, but data is a statistics Dataset whose rows are already "
                "reduced; pass only window= and fit options, or fit the rows"
            )
        if fitter in ("glm", "rlm") or n_sigma_cut is not None:
            raise ValueError(
                "fitter='glm'/'rlm' and n_sigma_cut need the rows: fit the rows, not statistics"
            )
        if aggregation is None:
            aggregation = ["mean", "std", "entries"]
    elif dims is None or targets is None:
        raise TypeError("fit() needs dims= and targets= when given rows")
    result = run_fit(
        data,
        dims,
        targets,
        predictors,
        window,
        formula=formula,
        fitter=fitter,
        weights=weights,
        selection=selection,
        min_entries=min_entries,
        aggregation=aggregation,
        boundary=boundary,
        kernel=kernel,
        kernel_width=kernel_width,
        trend=trend,
        centers=centers,
        extent=extent,
        backend=backend,
        max_bins=max_bins,
        binning_formulas=binning_formulas,
        reference=reference,
        n_sigma_cut=n_sigma_cut,
        max_iter=max_iter,
        partition_strategy=partition_strategy,
        progress=progress,
        fitter_options=fitter_options,
        chunks=chunks,
    )
    ds = to_dataset(result)
    ds.attrs["computation_time_sec"] = time.perf_counter() - started
    return ds


def run_fit(
    data,
    dims,
    targets,
    predictors,
    window,
    *,
    formula,
    fitter,
    weights,
    selection,
    min_entries,
    aggregation,
    boundary,
    kernel,
    kernel_width,
    trend,
    centers,
    extent,
    backend,
    max_bins,
    binning_formulas,
    reference,
    n_sigma_cut,
    max_iter,
    partition_strategy,
    progress,
    fitter_options: dict,
    chunks=None,
) -> Fit:
    """Validate every option, reduce the rows (unless given statistics) and fit the centers.

    ``partition_strategy['split_by']`` columns become bin dims of half-width 0: the windows
    never cross them, which is fitting each group separately.
    """
    parallel, split_by = parse_partition(partition_strategy)
    rows_in_memory = not (
        is_stats_dataset(data)
        or is_stream(data)
        or is_dask_dataframe(data)
        or is_dask_dataset(data)
    )
    if aggregation is None and not rows_in_memory:
        aggregation = ["mean", "std", "entries"]  # the median needs the rows in memory
    if is_stats_dataset(data):
        reduced = dataset_to_reduced(data)
        weights = reduced.weights
        dims, targets = list(reduced.grid.dims), list(reduced.targets)
        model = resolve_model(fitter, None, weights, targets, [], dict(fitter_options))
    else:
        dims, targets, predictors = check_names(dims, targets, predictors)
        model = resolve_model(fitter, formula, weights, targets, predictors, dict(fitter_options))
    window = dict(window or {}) if isinstance(window, Mapping | None) else window
    for column in split_by:
        if isinstance(window, dict) and window.get(column, 0) != 0:
            raise InvalidWindowSpec(
                f"window_spec[{column!r}] must be 0: partition_strategy splits by {column!r}"
            )
        if column not in dims:
            if is_stats_dataset(data):
                raise ValueError(f"split_by column {column!r} is not a dim of the statistics")
            if rows_in_memory and column not in RowTable(data).names:
                raise KeyError(f"partition_strategy['split_by']: column {column!r} not found")
            dims = [column, *dims]
    options = fit_options(
        dims,
        targets,
        window,
        min_entries=min_entries,
        aggregation=aggregation,
        centers=centers,
        boundary=boundary,
        kernel=kernel,
        kernel_width=kernel_width,
        trend=trend,
        fitter=model.fitter_used,
        binning_formulas=binning_formulas,
        n_sigma_cut=n_sigma_cut,
        max_iter=max_iter,
        raw_fitter=model.raw_fitter,
        parallel=parallel,
        progress=progress,
        chunks=chunks,
    )
    if not is_stats_dataset(data):
        read = _reader(data)
        reduced = read(
            data,
            dims,
            targets,
            model.predictors,
            weights=weights,
            selection=selection,
            extent=extent,
            max_bins=max_bins,
            backend=resolve_backend(backend),
            reference=reference,
            formula=model.formula,
        )
    result = fit_reduced(reduced, options)
    # what predict needs to rebuild the design at new rows
    if model.formula is not None:
        result.attrs["formula"] = model.formula.formula
    elif model.raw_fitter is not None and model.raw_fitter.kind == "callable":
        result.attrs["formula"] = "callable"
    else:
        result.attrs["formula"] = ""
    return result


def _reader(data):
    """How rows become statistics: in memory, streamed batch by batch, or on dask workers."""
    if is_dask_dataframe(data):
        return dask_stats
    if is_dask_dataset(data):  # a dask-backed Dataset of rows: its partitions, on the workers
        return lambda ds, *args, **kwargs: dask_stats(ds.to_dask_dataframe(), *args, **kwargs)
    return stream_stats if is_stream(data) else reduce_rows


def is_stats_dataset(data) -> bool:
    """True for the statistics Dataset produced by ``bin_stats``."""
    return isinstance(data, xr.Dataset) and data.attrs.get("xslide_kind") == STATS_KIND


def stats_to_dataset(reduced: Reduced) -> xr.Dataset:
    """Unpack the packed per-bin statistics into named variables on the grid."""
    grid = reduced.grid
    dims = grid.dims
    p = len(reduced.columns)
    idx = moment_index(p)
    shape = (*grid.shape, len(reduced.targets))
    packed = reduced.stats.reshape((*shape, -1))
    bt = (*dims, "target")

    def moment(a: int, b: int) -> np.ndarray:
        return packed[..., idx[a, b]]

    sum_wx = np.stack([moment(0, j) for j in range(p)], axis=-1)
    sum_wxy = np.stack([moment(j, p) for j in range(p)], axis=-1)
    sum_wxx = np.stack([np.stack([moment(a, b) for b in range(p)], -1) for a in range(p)], -2)
    ds = xr.Dataset(
        {
            "count": (bt, np.rint(packed[..., COUNT]).astype(np.int64)),
            "count_positive": (bt, np.rint(packed[..., COUNT_POSITIVE]).astype(np.int64)),
            "sum_w": (bt, moment(0, 0)),
            "sum_w2": (bt, packed[..., SUM_W2]),
            "sum_wx": ((*bt, "term"), sum_wx),
            "sum_wy": (bt, moment(0, p)),
            "sum_wxx": ((*bt, "term", "term_"), sum_wxx),
            "sum_wxy": ((*bt, "term"), sum_wxy),
            "sum_wy2": (bt, moment(p, p)),
            "rows": (dims, reduced.rows_per_bin.reshape(grid.shape)),
            "x_reference": ("term", np.concatenate([[0.0], reduced.x_ref])),
            "y_reference": ("target", reduced.y_ref),
        },
        coords={
            **grid.coords(),
            "target": list(reduced.targets),
            "term": list(reduced.columns),
            "term_": list(reduced.columns),
        },
        attrs={
            "xslide_kind": STATS_KIND,
            "binning_json": json.dumps(reduced.binning),
            "intercept": int(reduced.intercept),
            "weights_column": reduced.weights or "",
            "backend_used": reduced.backend,
            **{k: v for k, v in reduced.counts.items() if not isinstance(v, dict)},
            **{f"n_rows_invalid_{t}": n for t, n in reduced.counts["n_rows_invalid"].items()},
        },
    )
    return ds


def dataset_to_reduced(ds: xr.Dataset) -> Reduced:
    """Pack a statistics Dataset back into the array layout the pipeline works on."""
    dims = tuple(d for d in ds["rows"].dims)
    terms = tuple(str(t) for t in ds["term"].values)
    targets = tuple(str(t) for t in ds["target"].values)
    p = len(terms)
    idx = moment_index(p)
    grid = Grid(
        dims,
        tuple(int(ds[d].values[0]) for d in dims),
        tuple(int(ds.sizes[d]) for d in dims),
    )
    expected = {
        d: np.arange(lo, lo + n) for d, lo, n in zip(dims, grid.lo, grid.shape, strict=True)
    }
    for d in dims:
        if not np.array_equal(ds[d].values, expected[d]):
            raise ValueError(f"statistics coordinate {d!r} must be consecutive integers")
    order = (*dims, "target")
    stats = np.empty((*grid.shape, len(targets), n_stats(p)))
    stats[..., COUNT] = ds["count"].transpose(*order).values
    stats[..., COUNT_POSITIVE] = ds["count_positive"].transpose(*order).values
    stats[..., SUM_W2] = ds["sum_w2"].transpose(*order).values
    sum_wxx = ds["sum_wxx"].transpose(*order, "term", "term_").values
    sum_wxy = ds["sum_wxy"].transpose(*order, "term").values
    for a in range(p):
        for b in range(a, p):
            stats[..., idx[a, b]] = sum_wxx[..., a, b]
        stats[..., idx[a, p]] = sum_wxy[..., a]
    stats[..., idx[p, p]] = ds["sum_wy2"].transpose(*order).values
    n_invalid = {t: int(ds.attrs.get(f"n_rows_invalid_{t}", 0)) for t in targets}
    counts = {k: int(ds.attrs[k]) for k in ROW_COUNTS if k in ds.attrs}
    counts["n_rows_invalid"] = n_invalid
    return Reduced(
        grid,
        terms,
        targets,
        stats.reshape(grid.size, len(targets), -1),
        ds["rows"].transpose(*dims).values.reshape(-1),
        ds["x_reference"].values[1:].astype(np.float64),
        ds["y_reference"].values.astype(np.float64),
        counts,
        str(ds.attrs.get("backend_used", "numpy")),
        str(ds.attrs.get("weights_column", "")) or None,
        intercept=bool(ds.attrs.get("intercept", 1)),
        binning=json.loads(ds.attrs.get("binning_json", "{}")),
    )


def combine_stats(parts: Sequence[xr.Dataset]) -> xr.Dataset:
    """Add statistics Datasets of disjoint row subsets: the statistics of their union.

    Grids are aligned on the union of their bins (missing bins count zero) and every part is
    re-referenced to the first part's references, so parts built with different references add
    exactly up to rounding.
    """
    parts = list(parts)
    if not parts or not all(is_stats_dataset(p) for p in parts):
        raise TypeError("combine_stats takes a non-empty list of Datasets made by bin_stats")
    first = parts[0]
    for other in parts[1:]:
        for coord in ("term", "target"):
            if list(other[coord].values) != list(first[coord].values):
                raise ValueError(f"cannot combine statistics with different {coord}s")
        if list(other["rows"].dims) != list(first["rows"].dims):
            raise ValueError("cannot combine statistics with different bin dims")
        if other.attrs.get("weights_column") != first.attrs.get("weights_column"):
            raise ValueError(
                "cannot combine weighted and unweighted (or differently weighted) stats"
            )
    dims = list(first["rows"].dims)
    union = {
        d: np.arange(min(int(p[d].min()) for p in parts), max(int(p[d].max()) for p in parts) + 1)
        for d in dims
    }
    target_ref = np.concatenate([first["x_reference"].values, first["y_reference"].values])
    total = None
    for part in parts:
        reduced = dataset_to_reduced(part)
        own_ref = np.concatenate([part["x_reference"].values, part["y_reference"].values])
        n_terms = len(reduced.columns)
        shift = np.zeros((len(reduced.targets), n_terms + 1))
        shift[:, 1:n_terms] = target_ref[1:n_terms] - own_ref[1:n_terms]
        shift[:, n_terms] = target_ref[n_terms:] - own_ref[n_terms:]
        reduced.stats = rereference(reduced.stats, n_terms, shift)
        reduced.x_ref = first["x_reference"].values[1:]
        reduced.y_ref = first["y_reference"].values
        ds = stats_to_dataset(reduced).reindex(union, fill_value=0)
        if total is None:
            total = ds
            continue
        summed = [v for v in ds.data_vars if v not in ("x_reference", "y_reference")]
        for v in summed:
            total[v] = total[v] + ds[v]
        for k in ROW_COUNTS:
            total.attrs[k] = int(total.attrs.get(k, 0)) + int(ds.attrs.get(k, 0))
        for t in total["target"].values:
            key = f"n_rows_invalid_{t}"
            total.attrs[key] = int(total.attrs.get(key, 0)) + int(ds.attrs.get(key, 0))
    return total
