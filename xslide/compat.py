"""The seed API: ``make_sliding_window_fit``, returning a pandas DataFrame (API.md §1)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pandas as pd

from .core import (
    check_names,
    fit_options,
    fit_reduced,
    reduce_rows,
    resolve_backend,
    resolve_fitter,
)
from .grid import DEFAULT_MAX_BINS
from .result import to_frame

# Keyword arguments of later features: accepted names, refused with a clear message for now.
_LATER_KWARGS = {
    "kernel_width": "kernels other than 'uniform'",
    "trend": "local spatial trends (trend=1)",
    "progress": "progress bars of the raw-row fitters",
}
_KWARGS = (
    "boundary",
    "kernel",
    "centers",
    "extent",
    "max_bins",
    "reference",
    "n_sigma_cut",
    "max_iter",
)


def make_sliding_window_fit(
    df: pd.DataFrame,
    group_columns: Sequence[str],
    window_spec: Mapping[str, int],
    fit_columns: Sequence[str],
    predictor_columns: Sequence[str],
    fit_formula=None,
    fitter: str = "ols",
    aggregation_functions: Mapping[str, Sequence[str]] | None = None,
    weights_column: str | None = None,
    selection=None,
    binning_formulas: Mapping[str, str] | None = None,
    min_entries: int = 10,
    backend: str = "auto",
    partition_strategy=None,
    **kwargs,
) -> pd.DataFrame:
    """Sliding-window group-by regression: one output row per center bin.

    Parameters
    ----------
    df : the rows.
    group_columns : integer bin columns; the window slides over them.
    window_spec : ``{bin_column: half_width}`` (±half_width bins); columns left out get 0.
    fit_columns : targets, each fitted separately on its own valid rows.
    predictor_columns : predictors of ``target ~ predictors`` (an intercept is always added).
    fit_formula : None (formula strings and callables are not implemented yet).
    fitter : 'ols' or 'wls' ('glm'/'rlm' are not implemented yet). Weights make the fit WLS.
    aggregation_functions : ``{target: ['mean', 'std', 'median', 'entries']}``; default all four.
    weights_column : row weights (>= 0; NaN excludes the row).
    selection : boolean Series aligned on ``df.index`` or boolean array of len(df).
    binning_formulas : ``{bin_column: expression}`` recorded in ``attrs``.
    min_entries : fit a center only when its window has at least this many valid rows.
    backend : 'auto', 'numba' or 'numpy' (equal results).
    partition_strategy : not implemented yet (must be None).
    **kwargs : ``boundary`` ('truncate'), ``kernel`` ('uniform'), ``centers``
        ('observed' or 'grid'), ``extent`` ({dim: (lo, hi)}), ``max_bins``, ``reference``,
        ``n_sigma_cut`` (refit without rows whose |residual| > n_sigma_cut x rmse; adds
        ``{t}_n_rejected``) and ``max_iter`` (most refits, default 3).

    Returns
    -------
    pandas.DataFrame sorted by the group columns, columns and ``attrs`` as API.md §1.
    """
    started = time.perf_counter()
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    if fit_formula is not None:
        kind = "callable fitters" if callable(fit_formula) else "formula strings"
        raise NotImplementedError(
            f"fit_formula: {kind} are not implemented yet; use predictor_columns"
        )
    if partition_strategy is not None:
        raise NotImplementedError(
            "partition_strategy (parallel raw-row fits) is not implemented yet"
        )
    for key in kwargs:
        if key in _LATER_KWARGS:
            raise NotImplementedError(f"{key}=: {_LATER_KWARGS[key]} are not implemented yet")
        if key not in _KWARGS:
            raise TypeError(
                f"make_sliding_window_fit() got an unexpected keyword argument {key!r}; "
                f"known: {list(_KWARGS)}"
            )
    dims, targets, predictors = check_names(group_columns, fit_columns, predictor_columns)
    options = fit_options(
        dims,
        targets,
        window_spec,
        min_entries=min_entries,
        aggregation=aggregation_functions,
        centers=kwargs.get("centers", "observed"),
        boundary=kwargs.get("boundary", "truncate"),
        kernel=kwargs.get("kernel", "uniform"),
        fitter=resolve_fitter(fitter, weights_column),
        binning_formulas=binning_formulas,
        n_sigma_cut=kwargs.get("n_sigma_cut"),
        max_iter=kwargs.get("max_iter"),
    )
    reduced = reduce_rows(
        df,
        dims,
        targets,
        predictors,
        weights=weights_column,
        selection=selection,
        extent=kwargs.get("extent"),
        max_bins=kwargs.get("max_bins", DEFAULT_MAX_BINS),
        backend=resolve_backend(backend),
        reference=kwargs.get("reference"),
    )
    result = fit_reduced(reduced, options)
    frame = to_frame(result)
    frame.attrs["computation_time_sec"] = time.perf_counter() - started
    return frame
