"""A statsmodels ``RollingOLS``/``RollingWLS``-shaped view of a trailing-window fit of a 1-D
series, so that users of statsmodels can switch to xslide and check one against the other.

A 1-D grid with one row per bin is a series; the trailing window ``{dim: (w - 1, 0)}`` holds
the w rows up to each bin, as ``RollingOLS(window=w)``. Truncated windows at the start of the
series are statsmodels' ``expanding=True`` windows; by default statsmodels leaves the first
w - 1 rows empty, and so does the view.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from .formula import INTERCEPT


class RollingView(NamedTuple):
    """Per bin, the results statsmodels' rolling regressions name so (one row per bin)."""

    params: pd.DataFrame  # coefficients: columns 'const' and the predictors
    bse: pd.DataFrame  # their standard errors (inf where no residual degree of freedom is left)
    rsquared: pd.Series  # R² (centered, weighted with the row weights)
    nobs: pd.Series  # valid rows in the window (int; 0 where no model is estimated)


class _Series(NamedTuple):
    """The fit of one target along one dim, rows in bin order."""

    dim: str
    bins: np.ndarray  # (n,)
    terms: list[str]
    coef: np.ndarray  # (n, k)
    stderr: np.ndarray  # (n, k)
    rsquared: np.ndarray  # (n,)
    nobs: np.ndarray  # (n,) rows fitted
    attrs: dict[str, Any]


def rolling_ols_view(
    fit: xr.Dataset | pd.DataFrame,
    target: str | None = None,
    *,
    min_nobs: int | None = None,
    expanding: bool = False,
) -> RollingView:
    """The trailing-window fit of a 1-D series as ``RollingOLS``/``RollingWLS`` results.

    ``RollingOLS(y, add_constant(X), window=w).fit()`` (``RollingWLS`` with ``weights=``)
    and ``xslide.fit(df, [dim], [y], X, window={dim: (w - 1, 0)}, min_entries=1)`` (with
    ``weights=``) fit the same windows when the series has one row per bin (statsmodels counts
    rows, xslide bins): this view gives xslide's results the names, columns and empty rows of
    statsmodels', so that they can be compared directly.

    Parameters
    ----------
    fit : the fit of ``xslide.fit`` (Dataset) or ``make_sliding_window_fit`` (DataFrame) over
        one bin dim, with a trailing window ``(before, 0)``, truncated edges and the uniform
        kernel.
    target : the fitted target (default: the only one).
    min_nobs : the fewest valid rows a window needs (statsmodels' ``min_nobs``; default the
        number of coefficients). Fit with ``min_entries`` at most this, or xslide leaves
        windows empty that statsmodels estimates.
    expanding : as statsmodels: False leaves the first ``window - 1`` bins empty, True
        estimates them (from ``min_nobs`` rows on), from their truncated windows.

    Returns
    -------
    RollingView
        ``params`` and ``bse`` (DataFrames: one row per bin, indexed by the bin, columns
        ``const`` then the predictors), ``rsquared`` and ``nobs`` (Series); NaN (``nobs`` 0)
        where statsmodels estimates no model, and ``bse`` inf where a window holds as many
        rows as coefficients (no residual degree of freedom), as statsmodels.

    Examples
    --------
    >>> import numpy as np, pandas as pd, statsmodels.api as sm, xslide
    >>> from statsmodels.regression.rolling import RollingOLS
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"t": np.arange(50), "x": rng.normal(size=50)})
    >>> df["y"] = 1.0 + 2.0 * df.x + rng.normal(0.0, 0.1, 50)
    >>> fit = xslide.fit(df, ["t"], ["y"], ["x"], window={"t": (9, 0)}, min_entries=1)
    >>> view = xslide.rolling_ols_view(fit)
    >>> view.params.columns.tolist(), int(view.nobs.iloc[-1])
    (['const', 'x'], 10)
    >>> statsmodels = RollingOLS(df.y, sm.add_constant(df[["x"]]), window=10).fit()
    >>> bool(np.allclose(view.params, statsmodels.params, rtol=1e-9, equal_nan=True))
    True
    >>> bool(np.allclose(view.bse, statsmodels.bse, rtol=1e-9, equal_nan=True))
    True
    """
    series = _as_series(fit, target)
    window = _trailing_window(series)
    k = len(series.terms)
    if min_nobs is None:
        min_nobs = k
    if isinstance(min_nobs, bool) or not isinstance(min_nobs, int | np.integer):
        raise ValueError(f"min_nobs must be an integer, got {min_nobs!r}")
    if not k <= min_nobs <= window:
        raise ValueError(
            f"min_nobs must be between the {k} coefficients and the window of {window} bins, "
            f"got {min_nobs}"
        )
    if not isinstance(expanding, bool | np.bool_):
        raise ValueError(f"expanding must be True or False, got {expanding!r}")
    position = series.bins - series.bins[0] if series.bins.size else series.bins
    first = min_nobs if expanding else window  # statsmodels' first estimated window holds this
    estimated = (position >= first - 1) & (series.nobs >= min_nobs)
    index = pd.Index(series.bins, name=series.dim)
    columns = ["const" if term == INTERCEPT else term for term in series.terms]

    def frame(values: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(np.where(estimated[:, None], values, np.nan), index, columns)

    # a window of exactly k rows: statsmodels divides its (rounding-size) residuals by zero
    # degrees of freedom; xslide leaves the errors NaN
    exact = (series.nobs == k)[:, None] & np.isfinite(series.coef)
    return RollingView(
        params=frame(series.coef),
        bse=frame(np.where(exact, np.inf, series.stderr)),
        rsquared=pd.Series(np.where(estimated, series.rsquared, np.nan), index, name="rsquared"),
        nobs=pd.Series(np.where(estimated, series.nobs, 0).astype(np.int64), index, name="nobs"),
    )


def _trailing_window(series: _Series) -> int:
    """The window's length in bins; only a trailing, truncated, uniform window is RollingOLS's."""
    attrs = series.attrs
    try:
        extent = json.loads(attrs["window_spec_json"])[series.dim]
        boundary = json.loads(attrs["boundary_mode_per_dim"])[series.dim]
    except (KeyError, TypeError, ValueError):
        raise ValueError(
            "rolling_ols_view needs the fit's attrs (window_spec_json, boundary_mode_per_dim): "
            "pass the fit as xslide returned it"
        ) from None
    before, after = (extent, extent) if isinstance(extent, int) else extent
    if after != 0:
        raise ValueError(
            f"rolling_ols_view needs a trailing window {{{series.dim!r}: (before, 0)}}, as "
            f"RollingOLS; this fit's window is {extent!r}"
        )
    if boundary != "truncate" or attrs.get("kernel", "uniform") != "uniform":
        raise ValueError(
            "rolling_ols_view needs boundary='truncate' and kernel='uniform', as RollingOLS; "
            f"this fit has {boundary!r} and {attrs.get('kernel')!r}"
        )
    return before + 1


def _as_series(fit, target: str | None) -> _Series:
    """One target's coefficients, errors, R² and rows fitted along the fit's one bin dim."""
    if isinstance(fit, xr.Dataset) and "coef" in fit:
        return _dataset_series(fit, target)
    if isinstance(fit, pd.DataFrame) and "window_spec_json" in fit.attrs:
        return _frame_series(fit, target)
    raise ValueError(
        "fit must be the Dataset of xslide.fit or the DataFrame of make_sliding_window_fit, "
        f"got {type(fit).__name__}"
    )


def _pick(target: str | None, targets: list[str]) -> str:
    if target is None and len(targets) == 1:
        return targets[0]
    if target not in targets:
        raise ValueError(f"target must be one of {targets}, got {target!r}")
    return target


def _one_dim(dims: list[str]) -> str:
    if len(dims) != 1:
        raise ValueError(
            f"rolling_ols_view needs a fit over one bin dim (a series), this fit has {dims}"
        )
    return dims[0]


def _dataset_series(ds: xr.Dataset, target: str | None) -> _Series:
    dim = _one_dim([d for d in ds.coef.dims if d not in ("target", "term")])
    t = _pick(target, [str(v) for v in ds.target.values])
    one = ds.sel(target=t).sortby(dim)
    return _Series(
        dim,
        one[dim].to_numpy(),
        [str(v) for v in one.term.values],
        one.coef.transpose(dim, "term").to_numpy(),
        one.stderr.transpose(dim, "term").to_numpy(),
        one.r_squared.to_numpy(),
        one.n_fitted.to_numpy(),
        dict(ds.attrs),
    )


def _frame_series(frame: pd.DataFrame, target: str | None) -> _Series:
    dim = _one_dim(list(json.loads(frame.attrs["window_spec_json"])))
    targets = [c.removesuffix("_intercept") for c in frame.columns if c.endswith("_intercept")]
    t = _pick(target, targets)
    one = frame.sort_values(dim)
    slopes = [c for c in one.columns if c.startswith(f"{t}_slope_") and not c.endswith("_err")]
    coef = [f"{t}_intercept", *slopes]
    return _Series(
        dim,
        one[dim].to_numpy(),
        [INTERCEPT, *(c.removeprefix(f"{t}_slope_") for c in slopes)],
        one[coef].to_numpy(dtype=np.float64),
        one[[f"{c}_err" for c in coef]].to_numpy(dtype=np.float64),
        one[f"{t}_r_squared"].to_numpy(dtype=np.float64),
        one[f"{t}_n_fitted"].to_numpy(),
        dict(frame.attrs),
    )
