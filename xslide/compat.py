"""The seed API: ``make_sliding_window_fit``, returning a pandas DataFrame (API.md §1)."""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Mapping, Sequence

import pandas as pd

from . import api, sources
from .errors import EmptyGridError, InvalidInputTypeError
from .options import Backend, FitOptions, FitterName, build_options
from .result import to_frame
from .window import span


def make_sliding_window_fit(  # noqa: PLR0913  (the seed API's documented signature)
    df: pd.DataFrame,
    group_columns: Sequence[str],
    window_spec: Mapping[str, int],
    fit_columns: Sequence[str],
    predictor_columns: Sequence[str],
    fit_formula=None,
    fitter: FitterName = "ols",
    aggregation_functions: Mapping[str, Sequence[str]] | None = None,
    weights_column: str | None = None,
    selection=None,
    binning_formulas: Mapping[str, str] | None = None,
    min_entries: int = 10,
    backend: Backend = "auto",
    partition_strategy=None,
    **kwargs,
) -> pd.DataFrame:
    """Sliding-window group-by regression: one output row per center bin.

    Parameters
    ----------
    df : the rows: a pandas DataFrame, or a dask DataFrame (statistics computed per partition
        on the workers; the median and raw-row fitters then need a pandas selection).
    group_columns : integer bin columns; the window slides over them.
    window_spec : ``{bin_column: half_width}`` (±half_width bins) or ``{bin_column: (before,
        after)}`` (offsets -before..+after, e.g. ``(100, 0)`` the trailing 101 bins); columns
        left out get 0.
    fit_columns : targets, each fitted separately on its own valid rows.
    predictor_columns : predictors of ``target ~ predictors`` (an intercept is always added).
    fit_formula : None (``target ~ predictor_columns``), a formula string such as
        ``'target ~ x1 + np.log(x2) + x1:x2'`` ('target' stands for each fit column, ``- 1``
        drops the intercept; term names as in statsmodels), or a callable fitter
        ``f(X, y, w, terms) -> {term: coef, 'stderr': {term: se}}`` run on each window's rows.
    fitter : 'ols' or 'wls' (closed form; weights make the fit WLS), 'glm' (statsmodels GLM,
        ``family=``; weights are var_weights), 'rlm' (statsmodels RLM, ``M=``) or
        'curve_fit' (``model=f(x1, ..., a, b, ...)``, non-linear in its parameters a, b, ...,
        the predictor columns its first arguments; columns ``{t}_slope_a``, ...).
    aggregation_functions : ``{target: ['mean', 'std', 'median', 'entries']}``; default all four.
    weights_column : row weights (>= 0; NaN excludes the row).
    selection : boolean Series aligned on ``df.index`` or boolean array of len(df).
    binning_formulas : ``{bin_column: expression}`` recorded in ``attrs``.
    min_entries : fit a center only when its window has at least this many valid rows.
    backend : 'auto', 'numba' or 'numpy' (equal results).
    partition_strategy : ``{'n_jobs': N}`` runs raw-row fits (glm, rlm, curve_fit, callables) in N
        processes, ``{'client': client}`` (or a dask Client) on a dask cluster, with results
        identical to the serial run; ``{'split_by': [columns]}`` fits groups independently
        (no window across them; columns not in group_columns are added as leading groups).
    **kwargs : ``boundary`` ('truncate', 'periodic', 'mirror', 'shrink'; global or per dim),
        ``kernel`` ('uniform', 'gaussian', 'epanechnikov', 'linear', a callable of offsets or a
        weights array) and ``kernel_width``, ``trend`` (1: local-linear terms ``d_{dim}`` in
        the bin offsets, so the intercept is free of edge bias; 2: also local-quadratic
        ``d2_{dim}``; or ``{dim: order}``), ``trend_interactions`` (``d_{a}:d_{b}``), ``centers``
        ('observed' or 'grid'), ``extent`` ({dim: (lo, hi)}), ``max_bins``, ``reference``,
        ``n_sigma_cut`` (refit without rows whose |residual| > n_sigma_cut x rmse; adds
        ``{t}_n_rejected``), ``max_iter`` (most refits, default 3), ``progress`` (True,
        False or None: progress bars of the slow steps on a terminal), ``units``
        (``{column: unit}``, recorded in ``attrs['units_json']``), and the
        statsmodels options ``family`` (glm), ``M`` (rlm) and ``fit_kwargs`` (for ``.fit()``),
        and curve_fit's ``model``, ``p0`` (start values, or a callable ``p0(x1, ..., y)`` of
        the window's rows), ``bounds`` ((lower, upper) or ``{param: (lo, hi)}``), ``jac``
        and ``fit_kwargs`` (for ``scipy.optimize.least_squares``).

    Returns
    -------
    pandas.DataFrame sorted by the group columns, columns and ``attrs`` as API.md §1.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xslide
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"rBin": rng.integers(0, 5, 2000), "x": rng.normal(size=2000)})
    >>> df["y"] = 0.5 * df.rBin + 2.0 * df.x + rng.normal(0, 0.01, 2000)
    >>> out = xslide.make_sliding_window_fit(df, ["rBin"], {"rBin": 1}, ["y"], ["x"])
    >>> len(out), out["y_slope_x"].round(1).tolist()
    (5, [2.0, 2.0, 2.0, 2.0, 2.0])
    >>> out["quality_flag"].tolist()
    ['', '', '', '', '']
    """
    started = time.perf_counter()
    if not (isinstance(df, pd.DataFrame) or sources.is_dask_dataframe(df)):
        raise InvalidInputTypeError(
            f"df must be a pandas or dask DataFrame, got {type(df).__name__}"
        )
    keywords = {
        "dims": group_columns,
        "targets": fit_columns,
        "predictors": predictor_columns,
        "window": window_spec,
        "formula": fit_formula,
        "fitter": fitter,
        "aggregation": aggregation_functions,
        "weights": weights_column,
        "selection": selection,
        "binning_formulas": binning_formulas,
        "min_entries": min_entries,
        "backend": backend,
        "partition_strategy": partition_strategy,
    }
    clash = sorted(set(kwargs) & set(keywords))
    if clash:
        raise InvalidInputTypeError(
            f"make_sliding_window_fit() takes {clash} under their seed names"
        )
    options = build_options({**keywords, **kwargs}, sources.describe(df))
    try:
        fit = api.run(df, options)
    except EmptyGridError as err:
        fit = _empty_fit(df, options, err)
    frame = to_frame(fit)
    frame.attrs["computation_time_sec"] = time.perf_counter() - started
    return frame


def _empty_fit(df, options: FitOptions, err: EmptyGridError):
    """No row is left to bin: the seed contract's empty result (every column) and a warning.

    The fit runs on a placeholder grid where no row falls (the given extents, else bins 0 to
    before + after of each dim, room for any window): its observed centers are none.
    """
    extent = {d: (0, sum(span(options.window[d]))) for d in options.read.dims}
    read = dataclasses.replace(options.read, extent=extent | dict(options.read.extent or {}))
    fit = api.run(df, dataclasses.replace(options, read=read, centers="observed"))
    fit.attrs["centers"] = options.centers  # as asked: the placeholder grid is not the user's
    warnings.warn(f"no row is left to fit ({err}): the result is empty", UserWarning, stacklevel=3)
    return fit
