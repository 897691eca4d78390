"""The xarray-facing functions: ``fit``, ``bin_stats`` and ``combine_stats``.

Each is thin: build the options (``options.py``), pick the source (``sources.py``), run the
pipeline (``pipeline.py``) and shape the result (``result.py``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from . import pipeline, sources
from .binning import units_of
from .errors import InvalidInputTypeError
from .options import (
    DEFAULT_MAX_BINS,
    Backend,
    Boundary,
    Centers,
    ClipCenter,
    ClipScale,
    FitOptions,
    FitterName,
    build_options,
    build_read_spec,
    check_units,
)
from .result import (
    ROW_COUNTS,
    Fit,
    dataset_to_stats,
    is_stats_dataset,
    stats_to_dataset,
    to_dataset,
)


def bin_stats(  # noqa: PLR0913  (the documented public signature)
    data,
    dims: Sequence[str],
    targets: Sequence[str],
    predictors: Sequence[str] = (),
    *,
    weights: str | None = None,
    selection=None,
    extent: Mapping | None = None,
    backend: Backend = "auto",
    max_bins: int = DEFAULT_MAX_BINS,
    reference: Mapping[str, float] | None = None,
    max_memory: float | None = None,
    units: Mapping[str, str] | None = None,
    progress: bool | None = None,
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
    max_memory : bytes xslide may plan to allocate (default: half the machine's memory); larger
        arrays (statistics, windows, the fit on the grid) are refused before they are made.
    reference : ``{column: value}`` shift subtracted before summing (default: a global mean);
        give the same reference to stats you want to add without re-referencing.
    units : ``{column: unit}`` (e.g. ``{'dX': 'cm', 'qpt': '1/GeV'}``), recorded in
        ``attrs['units_json']`` (over those ``digitize`` recorded) and carried to fits of
        the statistics.
    progress : a progress bar over the rows of a stream: True, False, or None (on a terminal,
        once reading has lasted a few seconds).

    Returns
    -------
    xr.Dataset with ``count``, ``count_positive`` (rows of weight > 0), ``sum_w``, ``sum_w2``,
    ``sum_wy``, ``sum_wy2`` (*dims, target),
    ``sum_wx``, ``sum_wxy`` (*dims, target, term), ``sum_wxx`` (*dims, target, term, term_),
    ``rows`` (*dims) and the references ``x_reference`` (term), ``y_reference`` (target).
    Sums are of the shifted columns (x - x_reference, y - y_reference), and of the weights
    times ``attrs['weights_scale']`` (1, or a power of two for weights near 1e±160).

    Examples
    --------
    >>> import numpy as np, pandas as pd, xslide
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"rBin": rng.integers(0, 5, 2000), "x": rng.normal(size=2000)})
    >>> df["y"] = 0.5 * df.rBin + 2.0 * df.x + rng.normal(0, 0.01, 2000)
    >>> stats = xslide.bin_stats(df, ["rBin"], ["y"], ["x"])
    >>> int(stats["count"].sum()), stats.sizes["rBin"]
    (2000, 5)
    >>> refit = xslide.fit(stats, window={"rBin": 2})  # another window, no row read again
    >>> refit.coef.sel(target="y", term="x").round(1).values.tolist()
    [2.0, 2.0, 2.0, 2.0, 2.0]
    """
    spec = build_read_spec(
        {
            "dims": dims,
            "targets": targets,
            "predictors": predictors,
            "weights": weights,
            "selection": selection,
            "extent": extent,
            "backend": backend,
            "max_bins": max_bins,
            "reference": reference,
            "max_memory": max_memory,
            "progress": progress,
        }
    )
    given = {**units_of(data), **check_units(units)}
    stats, _ = sources.read(data, spec)
    recorded = {r["source"]: r["units"] for r in stats.binning.values() if "units" in r}
    return stats_to_dataset(stats, {**recorded, **given})


def fit(  # noqa: PLR0913  (the documented public signature)
    data,
    dims: Sequence[str] | None = None,
    targets: Sequence[str] | None = None,
    predictors: Sequence[str] = (),
    window: Mapping[str, int | tuple[int, int]] | None = None,
    *,
    formula=None,
    fitter: FitterName = "ols",
    weights: str | None = None,
    selection=None,
    min_entries: int = 10,
    aggregation=None,
    ltm_fraction: float = 0.8,
    trim_fraction: float = 0.1,
    boundary: Boundary | Mapping[str, Boundary] = "truncate",
    kernel="uniform",
    kernel_width=None,
    trend: int | Mapping[str, int] = 0,
    trend_interactions: bool = False,
    centers: Centers = "observed",
    extent: Mapping | None = None,
    backend: Backend = "auto",
    max_bins: int = DEFAULT_MAX_BINS,
    max_memory: float | None = None,
    binning_formulas: Mapping[str, str] | None = None,
    reference: Mapping[str, float] | None = None,
    n_sigma_cut: float | None = None,
    max_iter: int | None = None,
    clip_center: ClipCenter = "fit",
    clip_scale: ClipScale = "rmse",
    partition_strategy=None,
    progress: bool | None = None,
    chunks: Mapping[str, int] | None = None,
    trusted_formula: bool = False,
    units: Mapping[str, str] | None = None,
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
    window : ``{dim: half_width}``, ±half_width bins, or ``{dim: (before, after)}``, offsets
        -before..+after (``(100, 0)``: the trailing 101 bins); dims left out get 0.
    formula : None, a formula string ``'target ~ x1 + np.log(x2) + x1:x2'`` ('target' stands
        for each target; ``- 1`` drops the intercept; term names as in statsmodels), or a
        callable fitter ``f(X, y, w, terms) -> {term: coef, 'stderr': {term: se}}``.
    fitter : 'ols' / 'wls' (closed form on the window's statistics), 'glm' or 'rlm'
        (statsmodels on the window's rows; ``family=``, ``M=`` and ``fit_kwargs=`` go to it),
        or 'curve_fit': a non-linear ``model=f(x1, ..., a, b, ...)`` of the predictors,
        fitted on each window's rows by scipy's least_squares (``p0=``, ``bounds=``,
        ``jac=``; ``fit_kwargs=`` go to least_squares); the terms are its parameters.
    weights : row weights column (the fit is then WLS, mean/std weighted).
    selection : boolean Series aligned on the index or boolean array of len(data).
    min_entries : fit a center only when its window holds at least this many valid rows.
    aggregation : aggregates to compute: None (mean, std, median, entries), a list for every
        target or ``{target: [...]}``; the robust ``ltm``, ``ltm_std`` (least trimmed mean and
        its sigma), ``mad`` (1.4826 x median absolute deviation) and ``trimmed_mean`` are
        asked for by name (docs/contract.md, "Robust aggregates").
    ltm_fraction : the LTM keeps the contiguous block of the sorted values holding at most
        this fraction of the window (0.8: floor(0.8 n) values) with the smallest spread.
    trim_fraction : the trimmed mean cuts this fraction from each end (0.1), in [0, 0.5).
    boundary : 'truncate' (alias 'full'), 'periodic', 'mirror' or 'shrink' (alias
        'symmetric'), for all dims or ``{dim: mode}``.
    kernel, kernel_width : 'uniform', 'gaussian', 'epanechnikov', 'linear' (width per dim,
        default max(half-width, 1), or max(before, after, 1)), functions of the offset from the
        center (a trailing window's kernel is one-sided); a callable of one integer offset
        array per dim; or an explicit weights array of shape (2w + 1, ...), (before + after +
        1, ...) for (before, after). A row's weight is its own weight times the kernel weight
        of its bin's offset.
    trend : the order of a local polynomial in the bin offsets from the center, for every
        windowed dim or ``{dim: order}`` (each needs a window along its dim): 1 adds a term
        ``d_{dim}`` (the row's bin offset), 2 also ``d2_{dim}`` (the offset squared). The
        intercept is then the local value free of the window's gradient (and, with 2,
        curvature) bias; ``d_`` is the local first derivative per bin, ``d2_`` half the second
        derivative per bin². Where a shrunk window has no extent along a dim (at the edge),
        its terms are fixed at 0 there.
    trend_interactions : also ``d_{a}:d_{b}`` (the product of two offsets) for every pair of
        dims with a trend.
    centers : 'observed' (bins with rows) or 'grid' (every bin of the dense grid).
    extent : ``{dim: (lo, hi)}`` fixing the grid range.
    backend : 'auto', 'numba' or 'numpy'.
    max_bins, max_memory, binning_formulas, reference : see ``bin_stats``; formulas are
        recorded in attrs.
    n_sigma_cut, max_iter : robust refit: drop rows whose |residual| exceeds n_sigma_cut x
        rmse and refit, up to max_iter times (default 3); adds ``n_rejected``.
    clip_center, clip_scale : what n_sigma_cut measures a row against: 'fit' (the previous
        fit's prediction) or 'median' (the window median), in units of 'rmse' (the previous
        fit's) or 'mad' (the window's MAD sigma); 'median' with 'mad' is ALICE's habit: one
        cut of all the window's rows, then one fit.
    partition_strategy : ``{'n_jobs': N}`` (raw-row fits in N processes), ``{'client':
        client}`` or a dask Client, ``{'split_by': [columns]}`` (no window across them).
    progress : progress bars of the slow steps (reading a stream, n_sigma_cut passes, the
        window median, raw-row fits): True, False, or None (on a terminal, for a step that has
        lasted a few seconds).
    trusted_formula : formula strings are checked like the command line's (columns, numbers,
        ``np.<function>``, ``I(...)``: patsy evaluates them with ``eval``); True skips that
        check for a formula written in code that needs more of patsy (``C(x)``, ``bs(x, 4)``).
        Either way its size is bounded (200 terms, powers up to 10).
    chunks : ``{dim: size}``: window the statistics chunk by chunk with dask (halo of the
        window's depth, every boundary mode), for grids too large for one array; equal results.
    units : ``{column: unit}`` of targets, predictors and digitized columns (e.g.
        ``{'dX': 'cm', 'r': 'cm', 'qpt': '1/GeV'}``), over those the data recorded
        (``digitize``, ``bin_stats``): recorded in ``attrs['units_json']`` and as CF
        ``units`` of the variables and ``{x}_center`` coordinates where well defined.

    Returns
    -------
    xr.Dataset on the dense grid: ``coef``/``stderr`` (target, term, *dims), ``mean``,
    ``std``, ``median``, ``entries``, ``r_squared``, ``rmse``, ``n_fitted``, ``quality_flag``
    (target, *dims) and ``n_neighbors_used``, ``n_rows_aggregated``,
    ``effective_window_fraction`` (*dims); every variable and coordinate has a ``long_name``
    (``term_`` is the second term index of ``cov``), units as the ``xslide.cf`` docstring.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xslide
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"rBin": rng.integers(0, 5, 2000), "x": rng.normal(size=2000)})
    >>> df["y"] = 0.5 * df.rBin + 2.0 * df.x + rng.normal(0, 0.01, 2000)
    >>> fit = xslide.fit(df, dims=["rBin"], targets=["y"], predictors=["x"], window={"rBin": 1})
    >>> fit.coef.sel(target="y", term="x").round(1).values.tolist()
    [2.0, 2.0, 2.0, 2.0, 2.0]
    >>> int(fit.n_neighbors_used.sel(rBin=0)), int(fit.n_neighbors_used.sel(rBin=2))
    (2, 3)
    """
    started = time.perf_counter()
    # the keywords as given: options.py checks each one
    keywords = {k: v for k, v in locals().items() if k not in ("data", "fitter_options", "started")}
    options = build_options({**keywords, **fitter_options}, sources.describe(data))
    ds = to_dataset(run(data, options))
    ds.attrs["computation_time_sec"] = time.perf_counter() - started
    return ds


def run(data, options: FitOptions) -> Fit:
    """Read ``data`` as ``options`` say and run the pipeline (``fit`` without the Dataset)."""
    stats, rows = sources.read(data, options.read)
    return pipeline.run(stats, rows, options)


def combine_stats(parts: Sequence[xr.Dataset]) -> xr.Dataset:
    """Add statistics Datasets of disjoint row subsets: the statistics of their union.

    Grids are aligned on the union of their bins (missing bins count zero) and every part is
    re-referenced to the first part's references, so parts built with different references add
    exactly up to rounding.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xslide
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"rBin": rng.integers(0, 5, 2000), "x": rng.normal(size=2000)})
    >>> df["y"] = 0.5 * df.rBin + 2.0 * df.x + rng.normal(0, 0.01, 2000)
    >>> parts = [xslide.bin_stats(part, ["rBin"], ["y"], ["x"]) for part in (df[:800], df[800:])]
    >>> total = xslide.combine_stats(parts)
    >>> int(total["count"].sum())
    2000
    >>> whole = xslide.bin_stats(df, ["rBin"], ["y"], ["x"])
    >>> bool(np.allclose(xslide.fit(total).coef, xslide.fit(whole).coef, rtol=1e-12))
    True
    """
    parts = list(parts)
    if not parts or not all(is_stats_dataset(p) for p in parts):
        raise InvalidInputTypeError(
            "combine_stats takes a non-empty list of Datasets made by bin_stats"
        )
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
    total = None
    x_ref, y_ref = first["x_reference"].values[1:], first["y_reference"].values
    # the smallest scale: the part with the largest weights sets it, the others scale down
    scale = min(float(p.attrs.get("weights_scale", 1.0)) for p in parts)
    for part in parts:
        stats = dataset_to_stats(part).rereferenced(x_ref, y_ref).rescaled(scale)
        ds = stats_to_dataset(stats, units_of(first)).reindex(union, fill_value=0)
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
