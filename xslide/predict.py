"""Evaluate fitted local models at new rows: the nearest bin's model, or models blended
multilinearly between bin centers.

A row's position along each bin dim is its bin column (fractional values allowed) or, for dims
made by ``digitize``, its physical value mapped through the bin edges. The prediction is the
local model of the row's bin, ``Σ coef_k · term_k(row)`` (trend terms ``d_{dim}`` use the row's
offset from the bin center), with its standard error from the coefficients' covariance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from ._numba import njit
from .design import RowTable
from .expressions import check_formula
from .formula import INTERCEPT, design_matrix, parse_formula

METHODS = ("nearest", "linear")
BOUNDS = ("nan", "clamp")
INVALID = ("nan", "nearest_valid")


def _positions(fit: xr.Dataset, table: RowTable, dims: Sequence[str]):
    """(n, D) positions in bin-index units from 0, and a mask of rows outside the grid."""
    n = table.n_rows
    positions = np.empty((n, len(dims)))
    outside = np.zeros(n, dtype=bool)
    for k, d in enumerate(dims):
        bins = fit[d].values
        center = next(
            (c for c in fit.coords if str(c).endswith("_center") and fit[c].dims == (d,)), None
        )
        source = str(center)[: -len("_center")] if center is not None else None
        if source is not None and source in table.names:
            edges = np.asarray(fit[center].attrs["edges"], dtype=np.float64)
            value = table.numeric(source, "rows")
            # fractional edge index: bin b spans [b, b + 1), its center sits at b + 0.5
            index = np.interp(value, edges, np.arange(edges.size), left=np.nan, right=np.nan)
            positions[:, k] = index - 0.5 - bins[0]
            outside |= ~np.isfinite(index)
            low, high = edges[0], edges[-1]
            clamped = np.interp(np.clip(value, low, high), edges, np.arange(edges.size))
            positions[~np.isfinite(index), k] = (clamped - 0.5 - bins[0])[~np.isfinite(index)]
            # inside the edges but on bins the fitted grid does not cover: outside too
            beyond = (positions[:, k] < -0.5) | (positions[:, k] > bins.size - 0.5)
            outside |= beyond
            positions[:, k] = np.clip(positions[:, k], -0.5, bins.size - 0.5)
        elif d in table.names:
            value = table.numeric(d, "rows")
            positions[:, k] = value - bins[0]
            outside |= ~((value >= bins[0] - 0.5) & (value <= bins[-1] + 0.5))
        else:
            raise KeyError(
                f"rows: need column {d!r}"
                + (f" or {source!r}" if source else "")
                + " to place each row on the grid"
            )
    bad = ~np.isfinite(positions).all(axis=1)
    return positions, outside | bad


def _design(fit: xr.Dataset, table: RowTable, terms: Sequence[str], trend: Sequence[str]):
    """(n, p) values of the non-trend terms at each row."""
    formula = str(fit.attrs.get("formula", ""))
    plain = [t for t in terms if t not in trend]
    if formula and formula != "callable":
        # the formula comes with the fit, maybe from a file: patsy would eval any Python in it
        check_formula(formula, table.names)
        names, matrix = design_matrix(
            parse_formula(formula, ["target"]),
            lambda name: table.numeric(name, "rows"),
            table.names,
        )
        columns = dict(zip(names, matrix.T, strict=True))
        return (
            np.column_stack([columns[t] for t in plain]) if plain else np.empty((table.n_rows, 0))
        )
    out = np.empty((table.n_rows, len(plain)))
    for k, term in enumerate(plain):
        out[:, k] = 1.0 if term == INTERCEPT else table.numeric(term, "rows")
    return out


class _Models(NamedTuple):
    """The fitted local models on the grid, as the kernel reads them."""

    shape: np.ndarray  # (D,) bins per dim
    strides: np.ndarray  # (D,) C-order strides
    coef: np.ndarray  # (n_bins, t, p)
    cov: np.ndarray  # (n_bins, t, p, p)
    usable: np.ndarray  # (n_bins, t) finite coefficients
    nearest_valid: np.ndarray  # (t, n_bins) the nearest usable bin, -1 when none
    trend_dims: np.ndarray  # dims of the d_{dim} terms, after the design columns


class _Mode(NamedTuple):
    linear: bool  # blend the corner bins' models (else the nearest bin's)
    clamp: bool  # move positions outside the grid to its edge
    replace_invalid: bool  # use the nearest usable bin's model for unusable bins


def _models(fit: xr.Dataset, targets, dims, terms, trend) -> _Models:
    """The fit's coefficients, covariances and nearest usable bins as the kernel reads them."""
    order = ["target", "term"]
    coef = fit.coef.sel(target=targets).transpose(*dims, *order).values
    shape = coef.shape[: len(dims)]
    coef = coef.reshape(-1, len(targets), len(terms))
    if "cov" in fit:
        cov = fit["cov"].sel(target=targets).transpose(*dims, "target", "term", "term_").values
        cov = cov.reshape(-1, len(targets), len(terms), len(terms))
    else:  # no covariance stored: the standard errors alone
        stderr = fit.stderr.sel(target=targets).transpose(*dims, *order).values
        cov = np.zeros((*coef.shape, len(terms)))
        diag = np.arange(len(terms))
        cov[..., diag, diag] = stderr.reshape(coef.shape) ** 2
    usable = np.isfinite(coef).all(axis=-1)
    nearest_valid = np.full((len(targets), usable.shape[0]), -1, dtype=np.int64)
    for t in range(len(targets)):
        valid = usable[:, t].reshape(shape)
        if valid.any():
            _, index = ndimage.distance_transform_edt(~valid, return_indices=True)
            nearest_valid[t] = np.ravel_multi_index(tuple(index), shape).ravel()
    strides = np.array(
        [int(np.prod(shape[k + 1 :], dtype=np.int64)) for k in range(len(shape))], dtype=np.int64
    )
    trend_dims = np.array([dims.index(t[2:]) for t in trend], dtype=np.int64)
    return _Models(
        np.asarray(shape, dtype=np.int64), strides, coef, cov, usable, nearest_valid, trend_dims
    )


@njit(cache=True)
def _predict_rows(positions, design, models, mode, pred, err, flags):  # noqa: C901  (numba kernel)
    shape, strides, coef, cov, usable, nearest_valid, trend_dims = models
    linear, clamp, replace_invalid = mode
    n_rows, n_dims = positions.shape
    n_targets = coef.shape[1]
    n_plain = design.shape[1]
    n_trend = trend_dims.shape[0]
    p = n_plain + n_trend
    base = np.empty(n_dims, dtype=np.int64)
    frac = np.empty(n_dims)
    g = np.empty(p)
    pos = np.empty(n_dims)
    for i in range(n_rows):
        for d in range(n_dims):
            v = positions[i, d]
            if clamp:
                v = min(max(v, 0.0), shape[d] - 1.0)
            pos[d] = v
            if linear and shape[d] > 1:
                b = min(max(int(np.floor(v)), 0), shape[d] - 2)
                base[d] = b
                frac[d] = v - b  # outside [0, 1] in an edge half-bin: linear extrapolation
            else:
                base[d] = min(max(int(np.floor(v + 0.5)), 0), shape[d] - 1)
                frac[d] = 0.0
        for k in range(n_plain):
            g[k] = design[i, k]
        n_corners = 1
        if linear:
            for d in range(n_dims):
                if shape[d] > 1:
                    n_corners *= 2
        for t in range(n_targets):
            total = 0.0
            error = 0.0
            for corner in range(n_corners):
                weight = 1.0
                flat = 0
                bit = 0
                for d in range(n_dims):
                    j = base[d]
                    if linear and shape[d] > 1:
                        if (corner >> bit) & 1:
                            j += 1
                            weight *= frac[d]
                        else:
                            weight *= 1.0 - frac[d]
                        bit += 1
                    flat += j * strides[d]
                if not usable[flat, t]:
                    flags[i] |= 2
                    if not replace_invalid:
                        total = np.nan
                        break
                    flat = nearest_valid[t, flat]
                    if flat < 0:
                        total = np.nan
                        break
                for k in range(n_trend):
                    center = 0
                    rest = flat
                    for d in range(n_dims):
                        idx = rest // strides[d]
                        rest -= idx * strides[d]
                        if d == trend_dims[k]:
                            center = idx
                    g[n_plain + k] = pos[trend_dims[k]] - center
                value = 0.0
                variance = 0.0
                for a in range(p):
                    value += coef[flat, t, a] * g[a]
                    for b in range(p):
                        variance += g[a] * cov[flat, t, a, b] * g[b]
                total += weight * value
                error += abs(weight) * np.sqrt(max(variance, 0.0))
            pred[i, t] = total
            err[i, t] = error if total == total else np.nan


def predict(
    fit: xr.Dataset,
    rows,
    *,
    targets: Sequence[str] | None = None,
    method: str = "nearest",
    bounds: str = "nan",
    invalid: str = "nan",
    return_error: bool = False,
) -> pd.DataFrame:
    """Evaluate each row's local model.

    Parameters
    ----------
    fit : the Dataset of ``xslide.fit`` (or reopened from netCDF/zarr).
    rows : DataFrame, Dataset of rows or dict of arrays with, per bin dim, the bin column
        (fractional positions allowed) or the physical column a ``digitize`` dim came from,
        and the model's predictor columns.
    targets : which targets to predict (default: all).
    method : 'nearest' (the model of the row's bin) or 'linear' (models blended multilinearly
        between the surrounding bin centers; continuous across bin edges, exact for a linear
        field; extrapolated linearly in the half bin beyond the outermost centers).
    bounds : rows outside the grid give NaN ('nan') or are moved to its edge ('clamp').
    invalid : bins without a valid fit give NaN ('nan') or lend the model of the nearest
        fitted bin ('nearest_valid').
    return_error : also return ``{t}_pred_err``, the standard error of the prediction from the
        coefficients' covariance (blended corners add their errors: a conservative bound).

    Returns
    -------
    DataFrame aligned with the rows, columns ``{t}_pred`` (and ``{t}_pred_err``); ``attrs``
    count ``n_outside_grid`` and ``n_invalid`` (rows that met an unfitted bin).

    Examples
    --------
    >>> import numpy as np, pandas as pd, xslide
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"rBin": rng.integers(0, 5, 2000), "x": rng.normal(size=2000)})
    >>> df["y"] = 0.5 * df.rBin + 2.0 * df.x + rng.normal(0, 0.01, 2000)
    >>> fit = xslide.fit(df, dims=["rBin"], targets=["y"], predictors=["x"])  # window 0
    >>> pred = xslide.predict(fit, df)
    >>> bool((pred["y_pred"] - df["y"]).abs().max() < 0.1)
    True
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    if bounds not in BOUNDS:
        raise ValueError(f"bounds must be one of {list(BOUNDS)}, got {bounds!r}")
    if invalid not in INVALID:
        raise ValueError(f"invalid must be one of {list(INVALID)}, got {invalid!r}")
    if not isinstance(fit, xr.Dataset) or "coef" not in fit:
        raise TypeError("fit must be the Dataset returned by xslide.fit")
    all_targets = [str(t) for t in fit.target.values]
    targets = all_targets if targets is None else list(targets)
    unknown = [t for t in targets if t not in all_targets]
    if unknown:
        raise KeyError(f"targets {unknown} were not fitted; fitted: {all_targets}")
    dims = [str(d) for d in fit.coef.dims if d not in ("target", "term")]
    terms = [str(t) for t in fit.term.values]
    # the fit says whether its d_{dim} terms are window offsets (trend=1) or plain predictors
    has_trend = int(fit.attrs.get("trend", 0)) == 1
    trend = [t for t in terms if has_trend and t.startswith("d_") and t[2:] in dims]
    table = RowTable(rows)
    positions, outside = _positions(fit, table, dims)
    design = _design(fit, table, terms, trend)
    models = _models(fit, targets, dims, terms, trend)
    pred = np.full((table.n_rows, len(targets)), np.nan)
    err = np.full_like(pred, np.nan)
    flags = np.zeros(table.n_rows, dtype=np.int64)
    inside = ~outside if bounds == "nan" else np.ones(table.n_rows, dtype=bool)
    rows_in = np.flatnonzero(inside)
    sub_pred = np.empty((rows_in.size, len(targets)))
    sub_err = np.empty_like(sub_pred)
    sub_flags = np.zeros(rows_in.size, dtype=np.int64)
    mode = _Mode(method == "linear", bounds == "clamp", invalid == "nearest_valid")
    _predict_rows(
        np.ascontiguousarray(positions[rows_in]),
        np.ascontiguousarray(design[rows_in]),
        models,
        mode,
        sub_pred,
        sub_err,
        sub_flags,
    )
    pred[rows_in], err[rows_in], flags[rows_in] = sub_pred, sub_err, sub_flags
    columns = {f"{t}_pred": pred[:, k] for k, t in enumerate(targets)}
    if return_error:
        columns.update({f"{t}_pred_err": err[:, k] for k, t in enumerate(targets)})
    out = pd.DataFrame(columns, index=table.index)
    out.attrs.update(
        n_outside_grid=int(outside.sum()),
        n_invalid=int(((flags & 2) > 0).sum()),
        method=method,
        bounds=bounds,
        invalid=invalid,
    )
    return out
