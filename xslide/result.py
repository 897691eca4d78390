"""Turn per-center fit arrays into the public results: an xr.Dataset or the seed DataFrame."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import xarray as xr

from .core import Fit
from .formula import INTERCEPT
from .solve import EMPTY, FIT_FAILED, FLAG_MEANINGS, INSUFFICIENT, NOT_A_CENTER, SINGULAR


def column_safe(name: str) -> str:
    """A term name as used inside DataFrame column names: non-alphanumerics -> '_'."""
    return re.sub(r"[^0-9A-Za-z]", "_", name)


def _dense(fit: Fit, values: np.ndarray, fill) -> np.ndarray:
    """Scatter per-center values (m, ...) into the grid (n_bins, ...), ``fill`` elsewhere."""
    out = np.full((fit.grid.size, *values.shape[1:]), fill, dtype=values.dtype)
    out[fit.centers] = values
    return out


def to_dataset(fit: Fit) -> xr.Dataset:
    """The fit as an ``xr.Dataset`` on the dense grid (API.md §2)."""
    grid = fit.grid
    dims = grid.dims

    def per_target(values: np.ndarray, fill) -> tuple:
        dense = _dense(fit, values, fill)  # (n_bins, t)
        return ("target", *dims), np.moveaxis(dense, -1, 0).reshape((-1, *grid.shape))

    def per_term(values: np.ndarray) -> tuple:
        dense = _dense(fit, values, np.nan)  # (n_bins, t, p)
        return ("target", "term", *dims), np.moveaxis(dense, 0, -1).reshape(
            (*values.shape[1:], *grid.shape)
        )

    sol = fit.solution
    wanted = {a for names in fit.aggregation.values() for a in names}
    cov = np.moveaxis(_dense(fit, sol.cov, np.nan), 0, -1).reshape(
        (*sol.cov.shape[1:], *grid.shape)
    )
    data_vars = {
        "coef": per_term(sol.coef),
        "stderr": per_term(sol.stderr),
        "cov": (("target", "term", "term_", *dims), cov),
    }
    if "mean" in wanted:
        data_vars["mean"] = per_target(sol.mean, np.nan)
    if "std" in wanted:
        data_vars["std"] = per_target(sol.std, np.nan)
    if "median" in wanted:
        data_vars["median"] = per_target(fit.median, np.nan)
    if "entries" in wanted:
        data_vars["entries"] = per_target(sol.entries, 0)
    data_vars.update(
        r_squared=per_target(sol.r_squared, np.nan),
        rmse=per_target(sol.rmse, np.nan),
        n_fitted=per_target(fit.n_fitted, 0),
        **({} if fit.n_rejected is None else {"n_rejected": per_target(fit.n_rejected, 0)}),
        quality_flag=per_target(sol.status, np.int8(NOT_A_CENTER)),
        n_neighbors_used=(dims, _dense(fit, fit.n_neighbors_used, 0).reshape(grid.shape)),
        n_rows_aggregated=(dims, _dense(fit, fit.n_rows_aggregated, 0).reshape(grid.shape)),
        effective_window_fraction=(
            dims,
            _dense(fit, fit.n_neighbors_used / fit.window_volume, np.nan).reshape(grid.shape),
        ),
    )
    coords = {
        **grid.coords(),
        "target": list(fit.targets),
        "term": list(fit.terms),
        "term_": list(fit.terms),
    }
    for dim, record in fit.binning.items():
        centers = np.asarray(record["centers"])
        bins = coords[dim]
        inside = (bins >= 0) & (bins < centers.size)
        values = np.where(inside, centers[np.clip(bins, 0, centers.size - 1)], np.nan)
        coords[f"{record['source']}_center"] = (dim, values, {"edges": record["edges"]})
    ds = xr.Dataset(data_vars, coords=coords, attrs=dict(fit.attrs))
    # Aggregates a target did not ask for stay NaN rather than silently computed.
    for name in ("mean", "std", "median"):
        if name in ds:
            skip = [t for t in fit.targets if name not in fit.aggregation[t]]
            if skip:
                ds[name].loc[{"target": skip}] = np.nan
    ds["quality_flag"].attrs.update(
        flag_values=np.arange(len(FLAG_MEANINGS), dtype=np.int8),
        flag_meanings=" ".join(FLAG_MEANINGS),
        long_name="fit quality per target",
    )
    ds["coef"].attrs["long_name"] = "local model coefficients"
    ds["stderr"].attrs["long_name"] = "standard errors of the coefficients"
    return ds


def quality_strings(status: np.ndarray, targets: tuple[str, ...]) -> np.ndarray:
    """The seed API's comma-joined quality flag per center from per-target status codes."""
    n_codes = len(FLAG_MEANINGS)
    if n_codes ** status.shape[1] < 2**62:  # one integer per center: a fast unique
        packed = status.astype(np.int64) @ (n_codes ** np.arange(status.shape[1], dtype=np.int64))
        codes, inverse = np.unique(packed, return_inverse=True)
        combos = [(code // n_codes ** np.arange(status.shape[1])) % n_codes for code in codes]
    else:  # too many targets to pack: unique rows
        combos, inverse = np.unique(status, axis=0, return_inverse=True)
    labels = []
    for combo in combos:
        if np.all(combo == EMPTY):
            labels.append("empty_window")
            continue
        parts = []
        if np.any((combo == EMPTY) | (combo == INSUFFICIENT)):
            parts.append("insufficient_stats")
        parts += [f"singular_{t}" for t, s in zip(targets, combo, strict=True) if s == SINGULAR]
        parts += [f"fit_failed_{t}" for t, s in zip(targets, combo, strict=True) if s == FIT_FAILED]
        labels.append(",".join(parts))
    return np.asarray(labels, dtype=object)[inverse.ravel()]


def to_frame(fit: Fit) -> pd.DataFrame:
    """The fit as the seed API's DataFrame: one row per center, columns as API.md §1."""
    sol = fit.solution
    columns: dict[str, np.ndarray] = dict(
        zip(fit.grid.dims, fit.grid.unravel(fit.centers), strict=True)
    )
    aggregates = {"mean": sol.mean, "std": sol.std, "median": fit.median, "entries": sol.entries}
    for t, target in enumerate(fit.targets):
        for name in fit.aggregation[target]:
            columns[f"{target}_{name}"] = aggregates[name][:, t]
    names = [
        "intercept" if term == INTERCEPT else f"slope_{column_safe(term)}" for term in fit.terms
    ]
    for t, target in enumerate(fit.targets):
        for k, name in enumerate(names):
            columns[f"{target}_{name}"] = sol.coef[:, t, k]
        for k, name in enumerate(names):
            columns[f"{target}_{name}_err"] = sol.stderr[:, t, k]
        columns[f"{target}_r_squared"] = sol.r_squared[:, t]
        columns[f"{target}_rmse"] = sol.rmse[:, t]
        columns[f"{target}_n_fitted"] = fit.n_fitted[:, t]
        if fit.n_rejected is not None:
            columns[f"{target}_n_rejected"] = fit.n_rejected[:, t]
    columns["quality_flag"] = quality_strings(sol.status, fit.targets)
    columns["n_neighbors_used"] = fit.n_neighbors_used
    columns["n_rows_aggregated"] = fit.n_rows_aggregated
    columns["effective_window_fraction"] = fit.n_neighbors_used / fit.window_volume
    frame = pd.DataFrame(columns)
    frame.attrs.update(fit.attrs)
    return frame
