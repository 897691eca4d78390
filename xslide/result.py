"""The public results: the fit as an xr.Dataset or the seed DataFrame, and statistics as a
Dataset and back."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from . import cf
from .aggregates import ROBUST_AGGREGATES
from .formula import INTERCEPT
from .grid import Grid
from .solve import (
    EMPTY,
    FIT_FAILED,
    FLAG_MEANINGS,
    INSUFFICIENT,
    NOT_A_CENTER,
    SINGULAR,
    Solution,
)
from .stats import COUNT, COUNT_POSITIVE, SUM_W2, BinStats, moment_index, n_stats

if TYPE_CHECKING:
    from .options import FitOptions

STATS_KIND = "xslide.stats"
_TEXT = pd.Series([""]).dtype
ROW_COUNTS = ("n_rows_input", "n_rows_not_selected", "n_rows_without_bin", "n_rows_outside_extent")


@dataclass(frozen=True, eq=False)
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
    robust: np.ndarray | None  # (m, t, 4) ltm, ltm_std, mad, trimmed_mean (NaN: not asked)
    aggregation: Mapping[str, tuple[str, ...]]
    n_neighbors_used: np.ndarray  # (m,) distinct bins with rows in each window
    n_rows_aggregated: np.ndarray  # (m,) rows in each window (every appearance counted)
    window_volume: int
    attrs: Mapping
    binning: Mapping = field(default_factory=dict)  # digitize records: bin centers per dim


@functools.cache  # reading package metadata costs a millisecond per call
def version(package: str) -> str:
    """The installed version of ``package``, or 'not installed'."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def column_safe(name: str) -> str:
    """A term name as used inside DataFrame column names: non-alphanumerics -> '_'."""
    return re.sub(r"[^0-9A-Za-z]", "_", name)


def _dense(fit: Fit, values: np.ndarray, fill) -> np.ndarray:
    """Scatter per-center values (m, ...) into the grid (n_bins, ...), ``fill`` elsewhere."""
    centers = fit.centers
    if centers.size == fit.grid.size and centers.size and centers[0] == 0:
        return values  # every bin is a center (sorted, unique): already dense, no scatter
    out = np.full((fit.grid.size, *values.shape[1:]), fill, dtype=values.dtype)
    out[centers] = values
    return out


def _fit_variables(fit: Fit) -> dict[str, tuple]:
    """Every variable of the fit Dataset as (dims, dense values on the grid)."""
    grid, dims, sol = fit.grid, fit.grid.dims, fit.solution

    def per_target(values: np.ndarray, fill) -> tuple:
        dense = _dense(fit, values, fill)  # (n_bins, t)
        return ("target", *dims), np.moveaxis(dense, -1, 0).reshape((-1, *grid.shape))

    def per_term(values: np.ndarray, term_dims=("term",)) -> tuple:
        dense = _dense(fit, values, np.nan)  # (n_bins, t, p, ...)
        shape = (*values.shape[1:], *grid.shape)
        return ("target", *term_dims, *dims), np.moveaxis(dense, 0, -1).reshape(shape)

    def per_bin(values: np.ndarray, fill) -> tuple:
        return dims, _dense(fit, values, fill).reshape(grid.shape)

    wanted = {a for names in fit.aggregation.values() for a in names}
    aggregates = {
        name: (values, 0 if name == "entries" else np.nan)
        for name, values in aggregate_values(fit).items()
    }
    return {
        "coef": per_term(sol.coef),
        "stderr": per_term(sol.stderr),
        "cov": per_term(sol.cov, ("term", "term_")),
        **{name: per_target(*aggregates[name]) for name in aggregates if name in wanted},
        "r_squared": per_target(sol.r_squared, np.nan),
        "rmse": per_target(sol.rmse, np.nan),
        "n_fitted": per_target(fit.n_fitted, 0),
        **({} if fit.n_rejected is None else {"n_rejected": per_target(fit.n_rejected, 0)}),
        "quality_flag": per_target(sol.status, np.int8(NOT_A_CENTER)),
        "n_neighbors_used": per_bin(fit.n_neighbors_used, 0),
        "n_rows_aggregated": per_bin(fit.n_rows_aggregated, 0),
        "effective_window_fraction": per_bin(fit.n_neighbors_used / fit.window_volume, np.nan),
    }


def aggregate_values(fit: Fit) -> dict[str, np.ndarray | None]:
    """Every aggregate's (m, t) values by name (None: computed for no target)."""
    sol = fit.solution
    robust = {
        name: None if fit.robust is None else fit.robust[..., k]
        for k, name in enumerate(ROBUST_AGGREGATES)
    }
    return {
        "mean": sol.mean,
        "std": sol.std,
        "median": fit.median,
        "entries": sol.entries,
        **robust,
    }


def _fit_coords(fit: Fit) -> dict:
    """The bin dims, targets and terms, and the physical bin centers of digitized dims."""
    coords = {
        **fit.grid.coords(),
        "target": list(fit.targets),
        "term": list(fit.terms),
        "term_": list(fit.terms),
    }
    units = json.loads(fit.attrs.get("units_json", "{}"))
    for dim, record in fit.binning.items():
        coords |= cf.center_coords(dim, coords[dim], record, units.get(record["source"]))
        coords[dim] = (dim, coords[dim], {"long_name": f"bin number of {record['source']}"})
    return coords


def to_dataset(fit: Fit) -> xr.Dataset:
    """The fit as an ``xr.Dataset`` on the dense grid (API.md §2)."""
    ds = xr.Dataset(_fit_variables(fit), coords=_fit_coords(fit), attrs=dict(fit.attrs))
    # Aggregates a target did not ask for stay NaN rather than silently computed.
    for name in ("mean", "std", "median", *ROBUST_AGGREGATES):
        if name in ds:
            skip = [t for t in fit.targets if name not in fit.aggregation[t]]
            if skip:
                ds[name].loc[{"target": skip}] = np.nan
    cf.describe(ds, fit.grid.dims, cf.FIT_VARIABLES)
    compress(ds)
    return ds


#: variables of at least this many values are written compressed
COMPRESS_MIN_SIZE = 1024


def compress(ds: xr.Dataset) -> None:
    """Ask for zlib compression of the large numeric variables (in place, as ``encoding``):
    ``ds.to_netcdf`` with netCDF4 or h5netcdf then compresses them; other writers ignore it."""
    for variable in ds.variables.values():
        if variable.size >= COMPRESS_MIN_SIZE and variable.dtype.kind in "iufb":
            variable.encoding.update(zlib=True, complevel=4, shuffle=True)


def quality_strings(status: np.ndarray, targets: tuple[str, ...]):
    """The seed API's comma-joined quality flag per center from per-target status codes, as
    the string array pandas gives text columns (also when there is no row)."""
    n_codes = len(FLAG_MEANINGS)
    n_combos = n_codes ** status.shape[1]
    if n_combos <= _TABLE_COMBOS:  # one small integer per center: a table, no sort
        packed = np.zeros(status.shape[0], dtype=np.int64)
        for t in range(status.shape[1]):
            packed += status[:, t] * np.int64(n_codes**t)
        seen = np.bincount(packed, minlength=n_combos) > 0
        codes = np.flatnonzero(seen)
        inverse = (np.cumsum(seen) - 1)[packed]  # the rank of each center's code
        combos = [(code // n_codes ** np.arange(status.shape[1])) % n_codes for code in codes]
    elif n_combos < 2**62:  # one integer per center: a fast unique
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
    # the few labels become strings once, then every center takes its own (no object array)
    return pd.array(labels, dtype=_TEXT).take(inverse.ravel())


_TABLE_COMBOS = 1 << 16  # flag combinations (6 ** targets) looked up in a table, at most


def to_frame(fit: Fit) -> pd.DataFrame:
    """The fit as the seed API's DataFrame: one row per center, columns as API.md §1."""
    sol = fit.solution
    columns: dict[str, np.ndarray] = dict(
        zip(fit.grid.dims, fit.grid.unravel(fit.centers), strict=True)
    )
    aggregates = aggregate_values(fit)
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


def _periods(grid: Grid, boundary: Mapping[str, str]) -> dict[str, list[int]]:
    """The first and last bin of every periodic dim: the period its windows wrap over."""
    return {
        d: [lo, hi]
        for d, lo, hi in zip(grid.dims, grid.lo, grid.hi, strict=True)
        if boundary[d] == "periodic"
    }


def _robust_attrs(options: FitOptions) -> dict:
    """The options of the robust aggregates, where one is asked for."""
    asked = {a for names in options.aggregation.values() for a in names}
    attrs = {}
    if asked & {"ltm", "ltm_std"}:
        attrs["ltm_fraction"] = options.ltm_fraction
    if "trimmed_mean" in asked:
        attrs["trim_fraction"] = options.trim_fraction
    return attrs


def fit_attrs(stats: BinStats, options: FitOptions, failures: Mapping, warned: Mapping) -> dict:
    """Provenance of a fit: versions, options, row counts, failures; netCDF-serialisable."""
    binning = {d: record["formula"] for d, record in stats.binning.items()}
    recorded = {r["source"]: r["units"] for r in stats.binning.values() if "units" in r}
    clipping = options.n_sigma_cut is not None
    return {
        "xslide_version": version("xslide"),
        "statsmodels_version": version("statsmodels"),
        "window_spec_json": json.dumps(dict(options.window)),
        # the user's own words win over the digitize records
        "binning_formulas_json": json.dumps({**binning, **options.binning_formulas}),
        "boundary_mode_per_dim": json.dumps(dict(options.boundary)),
        "period_json": json.dumps(_periods(stats.grid, options.boundary)),
        "kernel": options.kernel.name,
        "trend": max(options.trend.values(), default=0),  # the highest local order
        "trend_json": json.dumps({d: k for d, k in options.trend.items() if k}),
        "trend_interactions": int(options.trend_interactions),
        "centers": options.centers,
        "min_entries": options.min_entries,
        "backend_used": stats.backend,
        "fitter_used": options.fitter,
        "n_sigma_cut": options.n_sigma_cut if clipping else "none",
        "max_iter": options.max_iter if clipping else "none",
        "clip_center": options.clip_center if clipping else "none",
        "clip_scale": options.clip_scale if clipping else "none",
        **_robust_attrs(options),
        "weights_column": stats.weights or "",
        **{k: v for k, v in stats.counts.items() if not isinstance(v, Mapping)},
        "n_rows_invalid_json": json.dumps(stats.counts["n_rows_invalid"]),
        "fit_failures_json": json.dumps(dict(failures)),
        "fit_warnings_json": json.dumps(dict(warned)),
        "formula": options.formula,
        "units_json": json.dumps({**recorded, **options.units}),
    }


# ---- statistics <-> Dataset ----


def is_stats_dataset(data) -> bool:
    """True for the statistics Dataset produced by ``bin_stats``."""
    return isinstance(data, xr.Dataset) and data.attrs.get("xslide_kind") == STATS_KIND


def stats_to_dataset(stats: BinStats, units: Mapping[str, str] | None = None) -> xr.Dataset:
    """Unpack the packed per-bin statistics into named variables on the grid."""
    grid = stats.grid
    dims = grid.dims
    p = len(stats.columns)
    idx = moment_index(p)
    packed = stats.sums.reshape((*grid.shape, len(stats.targets), -1))
    bt = (*dims, "target")

    def moment(a: int, b: int) -> np.ndarray:
        return packed[..., idx[a, b]]

    # one gather per variable (np.take: 15x faster than stacking strided moments)
    sum_wxx = np.take(packed, idx[:p, :p], axis=-1)
    data_vars = {
        "count": (bt, np.rint(packed[..., COUNT]).astype(np.int64)),
        "count_positive": (bt, np.rint(packed[..., COUNT_POSITIVE]).astype(np.int64)),
        "sum_w": (bt, moment(0, 0)),
        "sum_w2": (bt, packed[..., SUM_W2]),
        "sum_wx": ((*bt, "term"), np.take(packed, idx[0, :p], axis=-1)),
        "sum_wy": (bt, moment(0, p)),
        "sum_wxx": ((*bt, "term", "term_"), sum_wxx),
        "sum_wxy": ((*bt, "term"), np.take(packed, idx[:p, p], axis=-1)),
        "sum_wy2": (bt, moment(p, p)),
        "rows": (dims, stats.rows_per_bin.reshape(grid.shape)),
        "x_reference": ("term", np.concatenate([[0.0], stats.x_ref])),
        "y_reference": ("target", stats.y_ref),
    }
    coords = {
        **grid.coords(),
        "target": list(stats.targets),
        "term": list(stats.columns),
        "term_": list(stats.columns),
    }
    attrs = {
        "xslide_kind": STATS_KIND,
        "binning_json": json.dumps(stats.binning),
        "intercept": int(stats.intercept),
        "weights_column": stats.weights or "",
        "weights_scale": stats.weights_scale,
        "backend_used": stats.backend,
        **{k: v for k, v in stats.counts.items() if not isinstance(v, Mapping)},
        **{f"n_rows_invalid_{t}": n for t, n in stats.counts["n_rows_invalid"].items()},
        "units_json": json.dumps(dict(units or {})),
    }
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    cf.describe(ds, dims, cf.STATS_VARIABLES)
    compress(ds)
    return ds


def _stats_grid(ds: xr.Dataset) -> Grid:
    dims = tuple(d for d in ds.variables["rows"].dims)
    labels = [np.asarray(ds.variables[d].values) for d in dims]
    grid = Grid(dims, tuple(int(v[0]) for v in labels), tuple(v.size for v in labels))
    for d, lo, n, v in zip(dims, grid.lo, grid.shape, labels, strict=True):
        if not np.array_equal(v, np.arange(lo, lo + n)):
            raise ValueError(f"statistics coordinate {d!r} must be consecutive integers")
    return grid


def _interleave(pieces: list[tuple[int, np.ndarray]], n_bins: int, shape: tuple[int, int]):
    """(n_bins, t, n_stats) float64 from pieces (first slot, values (..., t, width)) that
    cover the slots.

    Block by block of bins, so that the block being filled stays in cache while every piece
    is written into it (``np.stack`` writes each statistic over the whole grid: on a large
    grid that is one pass through memory per statistic).
    """
    out = np.empty((n_bins, *shape))
    flat = [(k, part.reshape(n_bins, shape[0], part.shape[-1])) for k, part in pieces]
    step = max(1, _INTERLEAVE_BYTES // (out.itemsize * shape[0] * shape[1]))
    for start in range(0, n_bins, step):
        block = out[start : start + step]
        for k, part in flat:
            block[..., k : k + part.shape[-1]] = part[start : start + step]
    return out


_INTERLEAVE_BYTES = 1 << 20  # of statistics filled per block of bins (within the L2 cache)


def dataset_to_stats(ds: xr.Dataset) -> BinStats:
    """Pack a statistics Dataset back into the array layout the pipeline works on."""
    grid = _stats_grid(ds)
    terms = tuple(str(t) for t in ds.variables["term"].values)
    targets = tuple(str(t) for t in ds.variables["target"].values)
    p = len(terms)
    idx = moment_index(p)
    order = (*grid.dims, "target")

    def values(name: str, *extra: str) -> np.ndarray:  # xarray's Variable: no index overhead
        return ds.variables[name].transpose(*order, *extra).values

    # the packed slots of z_a's moments, Σw z_a z_b for b >= a, are consecutive: each row of
    # Σw x xᵀ from its diagonal on is one piece, its moment with the target the next
    sum_wxx, sum_wxy = values("sum_wxx", "term", "term_"), values("sum_wxy", "term")
    pieces = [
        (COUNT, values("count")[..., None]),
        (COUNT_POSITIVE, values("count_positive")[..., None]),
        (SUM_W2, values("sum_w2")[..., None]),
        *[(idx[a, a], sum_wxx[..., a, a:]) for a in range(p)],
        *[(idx[a, p], sum_wxy[..., a, None]) for a in range(p)],
        (idx[p, p], values("sum_wy2")[..., None]),
    ]
    sums = _interleave(pieces, grid.size, (len(targets), n_stats(p)))
    counts = {k: int(ds.attrs[k]) for k in ROW_COUNTS if k in ds.attrs}
    counts["n_rows_invalid"] = {t: int(ds.attrs.get(f"n_rows_invalid_{t}", 0)) for t in targets}
    return BinStats(
        grid,
        terms,
        targets,
        sums.reshape(grid.size, len(targets), -1),
        ds.variables["rows"].transpose(*grid.dims).values.reshape(-1),
        ds["x_reference"].values[1:].astype(np.float64),
        ds["y_reference"].values.astype(np.float64),
        counts,
        str(ds.attrs.get("backend_used", "numpy")),
        str(ds.attrs.get("weights_column", "")) or None,
        intercept=bool(ds.attrs.get("intercept", 1)),
        binning=json.loads(ds.attrs.get("binning_json", "{}")),
        weights_scale=float(ds.attrs.get("weights_scale", 1.0)),
    )
