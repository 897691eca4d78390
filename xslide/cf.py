"""CF metadata of the output Datasets: ``long_name`` everywhere, ``units`` where known, bounds.

The user's units (``units={'dX': 'cm', 'qpt': '1/GeV'}``) are recorded in
``attrs['units_json']``, the authority for every unit. From them:

- per-target variables in the target's unit (``mean``, ``std``, ``median``, the robust
  ``ltm``, ``ltm_std``, ``mad``, ``trimmed_mean``, and ``rmse``) get a
  CF ``units`` attr when all targets share one unit; the coordinate ``target_units`` (target)
  gives each target's unit in any case;
- ``coef`` and ``stderr`` have one unit per (target, term), given by the coordinate
  ``coef_units`` (target, term): the target's unit for ``Intercept`` and the ``d_{dim}`` trend
  terms (per bin), ``target unit / predictor unit`` for a predictor column, '' where unknown
  (formula terms such as ``np.log(r)``); they get a ``units`` attr only when all agree.
  ``cov`` of (term, term_) is in ``coef_units[term] * coef_units[term_]``;
- counts and fractions have units '1'; ``quality_flag`` has CF ``flag_values`` and
  ``flag_meanings``; bin numbers have none;
- ``{x}_center`` coordinates carry the unit of ``x`` and CF ``bounds`` (``{x}_center_bounds``,
  (dim, nv), the lower and upper bin edge, in the unit of ``{x}_center`` as CF says).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

import numpy as np
import xarray as xr

from .aggregates import ROBUST_AGGREGATES
from .formula import INTERCEPT
from .solve import FLAG_MEANINGS
from .window import trend_term_dims

DIMENSIONLESS = "1"
BOUNDS_DIM = "nv"
# name: (long_name, unit rule); the rule is a unit, 'target' (the target's unit), 'coef'
# (per (target, term), see the module docstring) or None (no unit)
FIT_VARIABLES: Mapping[str, tuple[str, str | None]] = {
    "coef": ("local model coefficients", "coef"),
    "stderr": ("standard errors of the coefficients", "coef"),
    "cov": ("covariance of the coefficients of term and term_", None),
    "mean": ("mean of the target in the window", "target"),
    "std": ("standard deviation of the target in the window", "target"),
    "median": ("median of the target in the window", "target"),
    **{name: (long_name, "target") for name, long_name in ROBUST_AGGREGATES.items()},
    "entries": ("valid rows of the target in the window", DIMENSIONLESS),
    "r_squared": ("coefficient of determination of the local fit", DIMENSIONLESS),
    "rmse": ("root mean square residual of the local fit", "target"),
    "n_fitted": ("rows in the final local fit", DIMENSIONLESS),
    "n_rejected": ("rows rejected by n_sigma_cut", DIMENSIONLESS),
    "quality_flag": ("fit quality per target", None),
    "n_neighbors_used": ("bins of the window that hold rows", DIMENSIONLESS),
    "n_rows_aggregated": ("rows in the window (a bin read twice counts twice)", DIMENSIONLESS),
    "effective_window_fraction": ("fraction of the window's bins that hold rows", DIMENSIONLESS),
}
STATS_VARIABLES: Mapping[str, tuple[str, str | None]] = {
    "count": ("valid rows of the target in the bin", DIMENSIONLESS),
    "count_positive": ("valid rows of weight > 0 in the bin", DIMENSIONLESS),
    "sum_w": ("sum of the row weights", None),
    "sum_w2": ("sum of the squared row weights", None),
    "sum_wx": ("weighted sum of the shifted term values", None),
    "sum_wy": ("weighted sum of the shifted target", None),
    "sum_wxx": ("weighted sum of the products of shifted term values (term, term_)", None),
    "sum_wxy": ("weighted sum of shifted term value times shifted target", None),
    "sum_wy2": ("weighted sum of the squared shifted target", None),
    "rows": ("selected rows in the bin", DIMENSIONLESS),
    "x_reference": ("value subtracted from each term before summing", None),
    "y_reference": ("value subtracted from each target before summing", "target"),
}
LABELS = {
    "target": "fitted column",
    "term": "model term",
    "term_": "model term, second index of cov (the covariance is term x term_)",
    "target_units": "unit of each target",
    "coef_units": "unit of coef and stderr per target and term",
}


def _wrap(unit: str) -> str:
    """A unit as a factor of a quotient: parenthesized unless one plain symbol."""
    return unit if re.fullmatch(r"[A-Za-z0-9_.]+", unit) else f"({unit})"


def quotient(numerator: str, denominator: str) -> str:
    """``numerator / denominator`` as a UDUNITS string; '' when either is unknown."""
    if not numerator or not denominator:
        return ""
    if denominator == DIMENSIONLESS:
        return numerator
    if numerator == denominator:
        return DIMENSIONLESS
    inverse = re.fullmatch(r"1\s*/\s*([A-Za-z0-9_.]+)", denominator)
    if inverse:  # cm / (1/GeV) reads better as cm GeV
        return inverse[1] if numerator == DIMENSIONLESS else f"{numerator} {inverse[1]}"
    return f"{numerator}/{_wrap(denominator)}"


def term_unit(term: str, units: Mapping[str, str], dims) -> str:
    """The unit of a term's values: 1 for the intercept and the trend terms (bin offsets and
    their products: ``d_{dim}``, ``d2_{dim}``, ``d_{a}:d_{b}``), the column's unit for a plain
    predictor, '' (unknown) for any other formula term."""
    if term == INTERCEPT or trend_term_dims(term, list(dims)) is not None:
        return DIMENSIONLESS
    return units.get(term, "")


def _same(values) -> str:
    """The one unit all entries share, '' when they differ or one is unknown."""
    values = set(np.asarray(values, dtype=object).ravel().tolist())
    return values.pop() if len(values) == 1 else ""


def _set(attrs: dict, long_name: str, unit: str | None) -> None:
    attrs["long_name"] = long_name
    if unit:
        attrs["units"] = unit


def units_in(ds: xr.Dataset) -> dict[str, str]:
    """The ``{column: unit}`` recorded in a Dataset's ``attrs['units_json']``."""
    return dict(json.loads(ds.attrs.get("units_json", "{}")))


def _unit_coords(ds: xr.Dataset, units: Mapping[str, str], dims) -> tuple[str, str]:
    """Add ``target_units`` and ``coef_units``; return the units all targets / coefficients
    share ('' when none)."""
    targets = [str(t) for t in ds["target"].values]
    target_units = [units.get(t, "") for t in targets]
    ds.coords["target_units"] = ("target", np.asarray(target_units, dtype=str))
    if "coef" not in ds:  # statistics: terms have no fitted coefficients
        return _same(target_units), ""
    per_term = [term_unit(str(k), units, dims) for k in ds["term"].values]
    coef_units = [[quotient(u, k) for k in per_term] for u in target_units]
    ds.coords["coef_units"] = (("target", "term"), np.asarray(coef_units, dtype=str))
    return _same(target_units), _same(coef_units)


def describe(ds: xr.Dataset, dims, variables: Mapping[str, tuple[str, str | None]]) -> None:
    """Give every variable and coordinate of a fit or statistics Dataset its long_name and
    units (in place; units from ``attrs['units_json']``)."""
    units = units_in(ds)
    target_unit = coef_unit = ""
    if units:
        target_unit, coef_unit = _unit_coords(ds, units, dims)
    rules = {"target": target_unit, "coef": coef_unit}
    for name, (long_name, rule) in variables.items():
        if name in ds:
            _set(ds[name].attrs, long_name, rules.get(rule, rule) if rule else None)
    if "quality_flag" in ds:
        ds["quality_flag"].attrs.update(
            flag_values=np.arange(len(FLAG_MEANINGS), dtype=np.int8),
            flag_meanings=" ".join(FLAG_MEANINGS),
        )
    for name, long_name in LABELS.items():
        if name in ds.coords:
            ds[name].attrs["long_name"] = long_name
    for dim in dims:
        ds[dim].attrs.setdefault("long_name", f"bin number of {dim}")


def center_coords(dim: str, bins: np.ndarray, record: Mapping, unit: str | None) -> dict:
    """``{x}_center`` (the physical bin center along ``dim``) and its CF bounds
    ``{x}_center_bounds`` (dim, nv): NaN for bins outside the digitized range."""
    source = record["source"]
    edges = np.asarray(record["edges"], dtype=np.float64)
    centers = np.asarray(record["centers"], dtype=np.float64)
    inside = (bins >= 0) & (bins < centers.size)
    index = np.clip(bins, 0, centers.size - 1)
    values = np.where(inside, centers[index], np.nan)
    bounds = np.where(inside[:, None], np.stack([edges[index], edges[index + 1]], axis=1), np.nan)
    name = f"{source}_center"
    attrs = {"long_name": f"{source} at the bin center", "edges": record["edges"]}
    attrs |= {"units": unit} if unit else {}
    # no units: CF bounds inherit their coordinate's (and xarray drops a copy on writing)
    bound_attrs = {"long_name": f"{source} at the bin edges (lower, upper)"}
    return {
        name: (dim, values, {**attrs, "bounds": f"{name}_bounds"}),
        f"{name}_bounds": ((dim, BOUNDS_DIM), bounds, bound_attrs),
    }
