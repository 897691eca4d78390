"""Evaluate fitted local models at new rows: the nearest bin's model, or models blended
multilinearly between bin centers.

A row's position along each bin dim is, in bin-label units (bin ``b`` is centered on ``b``
and spans ``[b - 0.5, b + 0.5)``), its bin column (fractional values allowed) or, for dims made
by ``digitize`` when the rows have the physical column, its physical value: mapped through the
bin edges for 'nearest' (the bin that holds it) and through the bin centers for 'linear'
(blending linear in the physical value, also for unequal bins). An integer bin column puts
every row on its bin's center, where 'linear' equals 'nearest'. Rows are placed by bin
label: a row takes the model of the bin whose coordinate value is its bin, whatever the order
of the fit's coordinates; a bin the fit does not hold is off the grid. The prediction is the
local model of the row's bin, ``Σ coef_k · term_k(row)`` (trend terms ``d_{dim}`` use the row's
offset from the bin center), with its standard error from the coefficients' covariance.

A fit may come from a file anyone could have written: its variables, coordinates and the
attributes predict reads are checked first, and a malformed one is refused by name.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
import xarray as xr

from ._numba import njit, num_threads, run_chunks
from .design import RowTable
from .expressions import check_formula
from .formula import INTERCEPT, design_matrix, parse_formula
from .grid import DEFAULT_MAX_BINS
from .window import trend_term_dims

METHODS = ("nearest", "linear")
BOUNDS = ("nan", "clamp")
INVALID = ("nan", "nearest_valid")
# bin labels beyond this are not integers a float64 position can tell apart
_MAX_LABEL = 2**53


def _shown(values, limit: int = 5) -> str:
    """The first few values of a list, for a one-line message."""
    values = [v.item() if isinstance(v, np.generic) else v for v in values]
    more = ", ..." if len(values) > limit else ""
    return "[" + ", ".join(repr(v) for v in values[:limit]) + more + "]"


# ---- the fit, checked ----


class _Axis(NamedTuple):
    """A bin dim of the fit: its labels as stored, and the dense label range they span."""

    name: str
    labels: np.ndarray  # (m,) int64, in the fit's order
    lo: int  # the smallest label
    present: np.ndarray  # (hi - lo + 1,) which labels of the range the fit holds

    @property
    def size(self) -> int:
        return int(self.present.size)


class _Checked(NamedTuple):
    """What predict reads from a fit, checked."""

    axes: list[_Axis]
    terms: list[str]
    targets: list[str]
    trend: list[str]  # the d_{dim} terms that are window offsets
    formula: str


def _names(fit: xr.Dataset, coord: str) -> list[str]:
    """The target or term names of a fit: unique non-empty strings."""
    if coord not in fit.coords:
        raise ValueError(f"fit: dim {coord!r} has no coordinate naming its entries")
    names = fit[coord].values.tolist()
    bad = [v for v in names if not isinstance(v, str) or not v]
    if bad:
        raise ValueError(f"fit: coordinate {coord!r} must hold non-empty strings: {_shown(bad)}")
    repeated = sorted(v for v, n in Counter(names).items() if n > 1)
    if repeated:
        raise ValueError(f"fit: coordinate {coord!r} repeats {_shown(repeated)}")
    if not names:
        raise ValueError(f"fit: coordinate {coord!r} is empty")
    return names


def _bin_labels(fit: xr.Dataset, dim: str) -> np.ndarray:
    """A bin dim's labels as int64: unique finite integers (integral floats accepted)."""
    if dim not in fit.coords:
        raise ValueError(f"fit: bin dim {dim!r} has no coordinate of bin labels")
    values = fit[dim].values
    if values.dtype.kind not in "iuf":
        raise ValueError(
            f"fit: coordinate {dim!r} must hold integer bin labels, got dtype {values.dtype}"
        )
    as_float = values.astype(np.float64)
    if not np.isfinite(as_float).all():
        raise ValueError(f"fit: coordinate {dim!r} holds non-finite bin labels")
    if (as_float != np.round(as_float)).any() or (np.abs(as_float) > _MAX_LABEL).any():
        odd = as_float[(as_float != np.round(as_float)) | (np.abs(as_float) > _MAX_LABEL)]
        raise ValueError(f"fit: coordinate {dim!r} must hold integer bin labels, got {_shown(odd)}")
    labels = values.astype(np.int64)
    unique, counts = np.unique(labels, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"fit: coordinate {dim!r} repeats bin labels {_shown(unique[counts > 1])}")
    return labels


def _check_variable(fit: xr.Dataset, name: str, dims: Sequence[str]) -> None:
    """A stored variable has exactly the dims the fit's ``coef`` implies and a numeric dtype."""
    var = fit[name]
    if set(var.dims) != set(dims) or var.ndim != len(dims):
        raise ValueError(
            f"fit: variable {name!r} must have dims {sorted(dims)}, got {list(map(str, var.dims))}"
        )
    if var.dtype.kind not in "iuf":
        raise ValueError(f"fit: variable {name!r} must be numeric, got dtype {var.dtype}")


def _brief(value) -> str:
    """A stored value as a short one-line repr, for a message."""
    text = " ".join(repr(value).split())
    return text if len(text) <= 40 else text[:37] + "..."


def _trend_attr(fit: xr.Dataset) -> bool:
    """The ``trend`` attribute (the highest local polynomial order): whether the
    ``d_{dim}``, ``d2_{dim}`` and ``d_{a}:d_{b}`` terms are window offsets."""
    value = fit.attrs.get("trend", 0)
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.item()  # a one-element attribute as some writers store it
    integer = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not integer or value not in (0, 1, 2):
        raise ValueError(f"fit: attribute 'trend' must be 0, 1 or 2, got {_brief(value)}")
    return value >= 1


def _formula_attr(fit: xr.Dataset) -> str:
    """The ``formula`` attribute: a formula, 'callable' or '' (plain predictors)."""
    formula = fit.attrs.get("formula", "")
    if not isinstance(formula, str):
        raise ValueError(
            f"fit: attribute 'formula' must be a string, got {type(formula).__name__} "
            f"{_brief(formula)}"
        )
    if formula == "curve_fit":
        raise ValueError(
            "fit: a curve_fit fit's local model is the Python function given as model=, which "
            "the fit does not store: evaluate model(x1, ..., *coef) with the fit's coefficients"
        )
    return str(formula)


def _axes(fit: xr.Dataset, dims: Sequence[str], linear: bool) -> list[_Axis]:
    """The bin dims' labels and label ranges; linear blending needs consecutive labels."""
    labels = [_bin_labels(fit, d) for d in dims]
    spans = [int(v.max()) - int(v.min()) + 1 if v.size else 0 for v in labels]
    gaps = [d for d, v, s in zip(dims, labels, spans, strict=True) if s > v.size]
    dense = int(np.prod(spans, dtype=object))
    if gaps and dense > DEFAULT_MAX_BINS:
        raise ValueError(
            f"fit: the bin labels along {gaps} leave gaps and span {dense:,} bins, more than "
            f"{DEFAULT_MAX_BINS:,}: select a consecutive range of bins"
        )
    axes = []
    for d, v, s in zip(dims, labels, spans, strict=True):
        lo = int(v.min()) if v.size else 0
        present = np.zeros(s, dtype=bool)
        present[v - lo] = True
        if linear and not present.all():
            missing = lo + np.flatnonzero(~present)
            raise ValueError(
                f"method='linear' blends neighboring bins, but the fit's bins along {d!r} are not "
                f"consecutive (missing {_shown(missing.tolist())}): use method='nearest' or a "
                "fit with consecutive bins"
            )
        axes.append(_Axis(d, v, lo, present))
    return axes


def _check_fit(fit: xr.Dataset, linear: bool) -> _Checked:
    """Check the variables, coordinates and attributes predict reads from a fit."""
    if not isinstance(fit, xr.Dataset):
        raise TypeError(f"fit must be the Dataset returned by xslide.fit, got {type(fit).__name__}")
    if "coef" not in fit:
        raise ValueError("fit: no variable 'coef': not a Dataset returned by xslide.fit")
    coef_dims = [str(d) for d in fit["coef"].dims]
    for name in ("target", "term"):
        if name not in coef_dims:
            raise ValueError(f"fit: variable 'coef' has no dim {name!r}, got dims {coef_dims}")
    dims = [d for d in coef_dims if d not in ("target", "term")]
    if not dims:
        raise ValueError("fit: variable 'coef' has no bin dim")
    _check_variable(fit, "coef", coef_dims)
    targets, terms = _names(fit, "target"), _names(fit, "term")
    if "cov" in fit:
        _check_variable(fit, "cov", [*coef_dims, "term_"])
        if sorted(_names(fit, "term_")) != sorted(terms):
            raise ValueError("fit: coordinate 'term_' of 'cov' must name the terms of 'term'")
    elif "stderr" in fit:
        _check_variable(fit, "stderr", coef_dims)
    if "quality_flag" in fit:
        _check_variable(fit, "quality_flag", ["target", *dims])
    has_trend = _trend_attr(fit)
    trend = [t for t in terms if has_trend and trend_term_dims(t, list(dims)) is not None]
    axes = _axes(fit, dims, linear)
    # the kernel reads the design columns first, then the trend offsets, whatever the order
    # of the stored terms
    terms = [*(t for t in terms if t not in trend), *trend]
    return _Checked(axes, terms, targets, trend, _formula_attr(fit))


def _targets(fitted: list[str], targets) -> list[str]:
    """The targets to predict: fitted ones, each once (a single name is accepted)."""
    if targets is None:
        return fitted
    targets = [targets] if isinstance(targets, str) else list(targets)
    if not targets:
        raise ValueError(f"targets is empty: name fitted targets among {fitted}, or None for all")
    unknown = [t for t in targets if not isinstance(t, str) or t not in fitted]
    if unknown:
        raise KeyError(f"targets {unknown} were not fitted; fitted: {fitted}")
    repeated = sorted(t for t, n in Counter(targets).items() if n > 1)
    if repeated:
        raise ValueError(f"targets name {repeated} more than once")
    return targets


# ---- rows on the grid ----


def _center_coord(fit: xr.Dataset, dim: str) -> str | None:
    """The ``{x}_center`` coordinate ``digitize`` recorded along a bin dim, if any."""
    return next(
        (str(c) for c in fit.coords if str(c).endswith("_center") and fit[c].dims == (dim,)),
        None,
    )


def _edges(fit: xr.Dataset, center: str, axis: _Axis) -> np.ndarray:
    """The bin edges of a digitized dim: finite, increasing, and matching its bin centers."""
    where = f"fit: attribute 'edges' of coordinate {center!r}"
    raw = fit[center].attrs.get("edges")
    if raw is None:
        raise ValueError(f"{where} is missing: rows cannot be placed by physical value")
    try:
        edges = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where} must hold numbers, got {_brief(raw)}") from None
    if fit[center].dtype.kind not in "iuf":
        raise ValueError(f"fit: coordinate {center!r} must hold numbers, got {fit[center].dtype}")
    centers = fit[center].values.astype(np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.isfinite(edges).all():
        raise ValueError(f"{where} must be a 1-D array of at least 2 finite values")
    if (np.diff(edges) <= 0).any():
        raise ValueError(f"{where} must be strictly increasing")
    # as digitize records them: the middle of each bin's edges, NaN for bins beyond the edges
    covered = (axis.labels >= 0) & (axis.labels < edges.size - 1)
    middle = 0.5 * (edges[:-1] + edges[1:])
    expected = np.where(covered, middle[np.where(covered, axis.labels, 0)], np.nan)
    scale = float(np.abs(edges).max())
    if not np.allclose(centers, expected, rtol=1e-9, atol=1e-12 * scale, equal_nan=True):
        raise ValueError(f"{where} does not match the bin centers of {center!r}")
    return edges


def position_column(fit: xr.Dataset, dim: str, names: Sequence[str]) -> tuple[str, bool] | None:
    """The column that places rows along a bin dim, and whether it is the physical value of a
    ``digitize``d dim (else the bin column); None when the rows have neither.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xslide
    >>> from xslide.predict import position_column
    >>> df = xslide.digitize(pd.DataFrame({"r": np.linspace(0, 9.9, 100), "y": 1.0}),
    ...                      {"r": (0.0, 10.0, 5)})
    >>> fit = xslide.fit(df, dims=["rBin"], targets=["y"])
    >>> position_column(fit, "rBin", ["r", "rBin"]), position_column(fit, "rBin", ["rBin"])
    (('r', True), ('rBin', False))
    """
    center = _center_coord(fit, dim)
    source = center[: -len("_center")] if center is not None else None
    if source is not None and source in names:
        return source, True
    return (dim, False) if dim in names else None


def _physical_positions(value: np.ndarray, edges: np.ndarray, linear: bool) -> np.ndarray:
    """Physical values in bin-label units (bin b centered on b, spanning [b - 0.5, b + 0.5)):
    through the edges for 'nearest' (a row takes the bin that holds it); through the bin
    centers for 'linear', so blending is linear in the physical value between centers, also
    for bins of unequal widths. ±inf beyond the edges."""
    n = edges.size - 1
    if linear:
        knots = np.concatenate([edges[:1], 0.5 * (edges[:-1] + edges[1:]), edges[-1:]])
        labels = np.concatenate([[-0.5], np.arange(n, dtype=np.float64), [n - 0.5]])
    else:
        knots, labels = edges, np.arange(edges.size) - 0.5
    return np.interp(value, knots, labels, left=-np.inf, right=np.inf)


def _label_values(fit: xr.Dataset, table: RowTable, axis: _Axis, linear: bool) -> np.ndarray:
    """Each row's position along a bin dim in bin-label units (bin b spans [b - 0.5, b + 0.5));
    NaN for rows without a finite value, ±inf beyond a digitized dim's edges."""
    center = _center_coord(fit, axis.name)
    source = center[: -len("_center")] if center is not None else None
    if source is not None and source in table.names:
        edges = _edges(fit, center, axis)
        value = table.numeric(source, "rows")
        index = _physical_positions(value, edges, linear)
        index[~np.isfinite(value)] = np.nan
        return index
    if axis.name in table.names:
        value = np.array(table.numeric(axis.name, "rows"), dtype=np.float64)
        value[~np.isfinite(value)] = np.nan
        return value
    raise KeyError(
        f"rows: need column {axis.name!r}"
        + (f" or {source!r}" if source else "")
        + " to place each row on the grid"
    )


class _Placed(NamedTuple):
    """Rows on the dense label grid."""

    positions: np.ndarray  # (n, D) in dense bin-index units (label - lo)
    outside: np.ndarray  # (n,) beyond the grid, on a bin the fit lacks, or without a position
    dropped: np.ndarray  # (n,) rows that get NaN: outside, except beyond the grid when clamped


def _place(
    fit: xr.Dataset, table: RowTable, axes: Sequence[_Axis], clamp: bool, linear: bool
) -> _Placed:
    """Place each row by bin label; clamping moves rows beyond the grid to its edge, but a row
    without a position or on a bin the fit does not hold gets NaN whatever the bounds."""
    n = table.n_rows
    positions = np.zeros((n, len(axes)))
    beyond = np.zeros(n, dtype=bool)
    lacking = np.zeros(n, dtype=bool)  # no position, or a bin the fit does not hold
    for k, axis in enumerate(axes):
        value = _label_values(fit, table, axis, linear) - axis.lo
        lacking |= np.isnan(value)
        if axis.size == 0:
            lacking[:] = True
            continue
        beyond |= (value < -0.5) | (value > axis.size - 0.5)
        value = np.clip(value, -0.5, axis.size - 0.5)  # only clamped rows use it
        nearest = np.clip(np.floor(np.nan_to_num(value) + 0.5), 0, axis.size - 1).astype(np.int64)
        lacking |= ~axis.present[nearest]
        positions[:, k] = np.nan_to_num(value)
    outside = beyond | lacking
    return _Placed(positions, outside, lacking if clamp else outside)


# ---- the models ----


def _design(table: RowTable, formula: str, terms: Sequence[str], trend: Sequence[str]):
    """(n, p) values of the non-trend terms at each row."""
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
        unknown = [t for t in plain if t not in columns]
        if unknown:
            raise ValueError(f"fit: terms {unknown} are not terms of its formula {formula!r}")
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
    trend: np.ndarray  # (k, 2) dims of the trend terms' columns, after the design columns


def _dense(fit: xr.Dataset, name: str, axes: Sequence[_Axis], order: dict) -> np.ndarray:
    """A variable ordered as (*bin dims, *order) on the dense label ranges of the bin dims,
    NaN on labels the fit does not hold (whatever the order of its coordinates)."""
    var = fit[name].sel(order).transpose(*[a.name for a in axes], *order)
    out = np.full((*(a.size for a in axes), *var.shape[len(axes) :]), np.nan)
    out[np.ix_(*(a.labels - a.lo for a in axes))] = var.values
    return out


def _covariance(fit: xr.Dataset, axes, targets, terms, coef_shape) -> np.ndarray:
    """(n_bins, t, p, p) covariance of the coefficients: stored, from the standard errors, or
    zero when the fit has neither (then predict gives no errors)."""
    p = len(terms)
    if "cov" in fit:
        order = {"target": targets, "term": terms, "term_": terms}
        return _dense(fit, "cov", axes, order).reshape(-1, len(targets), p, p)
    cov = np.zeros((*coef_shape, p))
    if "stderr" in fit:
        stderr = _dense(fit, "stderr", axes, {"target": targets, "term": terms})
        diag = np.arange(p)
        cov[..., diag, diag] = stderr.reshape(coef_shape) ** 2
    return cov


def _models(fit: xr.Dataset, checked: _Checked, targets: Sequence[str]) -> _Models:
    """The fit's coefficients, covariances and nearest usable bins as the kernel reads them."""
    axes, terms = checked.axes, checked.terms
    shape = tuple(a.size for a in axes)
    coef = _dense(fit, "coef", axes, {"target": targets, "term": terms})
    coef = coef.reshape(-1, len(targets), len(terms))
    cov = _covariance(fit, axes, targets, terms, coef.shape)
    usable = np.isfinite(coef).all(axis=-1)
    if "quality_flag" in fit:  # a bin flagged as not fitted is not used, whatever its coef
        flag = _dense(fit, "quality_flag", axes, {"target": targets})
        usable &= flag.reshape(-1, len(targets)) == 0
    nearest_valid = np.full((len(targets), usable.shape[0]), -1, dtype=np.int64)
    from scipy import ndimage  # here, not at import: ``import xslide`` stays light

    for t in range(len(targets)):
        valid = usable[:, t].reshape(shape)
        if valid.any():  # distances in label units: labels the fit lacks are never lent
            _, index = ndimage.distance_transform_edt(~valid, return_indices=True)
            nearest_valid[t] = np.ravel_multi_index(tuple(index), shape).ravel()
    strides = np.array(
        [int(np.prod(shape[k + 1 :], dtype=np.int64)) for k in range(len(shape))], dtype=np.int64
    )
    dims = [a.name for a in axes]
    trend = np.array([trend_term_dims(t, dims) for t in checked.trend], dtype=np.int64)
    return _Models(
        np.asarray(shape, dtype=np.int64), strides, coef, cov, usable, nearest_valid,
        trend.reshape(-1, 2),
    )  # fmt: skip


class _Mode(NamedTuple):
    linear: bool  # blend the corner bins' models (else the nearest bin's)
    replace_invalid: bool  # use the nearest usable bin's model for unusable bins
    with_error: bool = True  # also the standard errors (p² work per corner)


# fewer rows per thread chunk of predict are not worth a thread
_ROW_BLOCK = 4096


def _predict_rows(positions, design, models, mode, pred, err, flags):
    """Every row's prediction; chunks of rows on the threads (each row on its own: the same
    results for any thread count)."""
    n_rows = positions.shape[0]
    n_chunks = max(1, min(4 * num_threads(), -(-n_rows // _ROW_BLOCK)))
    run_chunks(_predict_block, n_chunks, positions, design, models, mode, pred, err, flags)


@njit(cache=True, nogil=True)
def _predict_block(c, n_chunks, positions, design, models, mode, pred, err, flags):  # noqa: C901, PLR0913  (numba kernel)
    """The predictions of the rows of chunk c."""
    shape, strides, coef, cov, usable, nearest_valid, trend = models
    linear, replace_invalid, with_error = mode
    n_dims = positions.shape[1]
    n_targets = coef.shape[1]
    n_plain = design.shape[1]
    n_trend = trend.shape[0]
    p = n_plain + n_trend
    base = np.empty(n_dims, dtype=np.int64)
    frac = np.empty(n_dims)
    g = np.empty(p)
    u = np.empty(n_dims)
    n_rows = positions.shape[0]
    for i in range(c * n_rows // n_chunks, (c + 1) * n_rows // n_chunks):
        for d in range(n_dims):
            v = positions[i, d]
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
                if n_trend:  # the row's offsets from the center of the model's bin
                    rest = flat
                    for d in range(n_dims):
                        idx = rest // strides[d]
                        rest -= idx * strides[d]
                        u[d] = positions[i, d] - idx
                    for k in range(n_trend):  # the products of window.trend_values
                        v = u[trend[k, 0]]
                        if trend[k, 1] >= 0:
                            v *= u[trend[k, 1]]
                        g[n_plain + k] = v
                value = 0.0
                for a in range(p):
                    value += coef[flat, t, a] * g[a]
                total += weight * value
                if with_error:
                    variance = 0.0
                    for a in range(p):
                        for b in range(p):
                            variance += g[a] * cov[flat, t, a, b] * g[b]
                    error += abs(weight) * np.sqrt(max(variance, 0.0))
            pred[i, t] = total
            err[i, t] = error if total == total else np.nan


def _check_options(method: str, bounds: str, invalid: str) -> None:
    """The choices of predict, each refused by name."""
    for name, value, choices in (
        ("method", method, METHODS),
        ("bounds", bounds, BOUNDS),
        ("invalid", invalid, INVALID),
    ):
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def _evaluate(placed: _Placed, design: np.ndarray, models: _Models, mode: _Mode):
    """Predictions, errors and flags of every row (NaN for the rows placed off the grid)."""
    n_rows, n_targets = placed.positions.shape[0], models.coef.shape[1]
    pred = np.full((n_rows, n_targets), np.nan)
    err = np.full_like(pred, np.nan)
    flags = np.zeros(n_rows, dtype=np.int64)
    rows_in = np.flatnonzero(~placed.dropped)
    if rows_in.size:
        sub_pred = np.empty((rows_in.size, n_targets))
        sub_err = np.empty_like(sub_pred)
        sub_flags = np.zeros(rows_in.size, dtype=np.int64)
        _predict_rows(
            np.ascontiguousarray(placed.positions[rows_in]),
            np.ascontiguousarray(design[rows_in]),
            models,
            mode,
            sub_pred,
            sub_err,
            sub_flags,
        )
        pred[rows_in], err[rows_in], flags[rows_in] = sub_pred, sub_err, sub_flags
    return pred, err, flags


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
    fit : the Dataset of ``xslide.fit`` (or reopened from netCDF/zarr). Rows are placed by bin
        label, so a selection of it (``fit.isel(a=slice(None, None, 2))``, coordinates in any
        order) predicts with the models of the bins it holds; rows on bins it lacks are outside.
    rows : DataFrame, Dataset of rows or dict of arrays with, per bin dim, the bin column
        (fractional positions allowed) or the physical column a ``digitize`` dim came from,
        and the model's predictor columns.
    targets : which targets to predict (default: all).
    method : 'nearest' (the model of the row's bin) or 'linear' (models blended multilinearly
        between the surrounding bin centers; continuous across bin edges, exact for a linear
        field; extrapolated linearly in the half bin beyond the outermost centers). Blending
        needs a position between centers: a fractional bin column or the physical column of
        a ``digitize``d dim; rows with integer bin columns sit on centers, where 'linear'
        equals 'nearest'. It needs consecutive bin labels: a fit with gaps along a dim is
        refused for 'linear'.
    bounds : rows beyond the grid give NaN ('nan') or are moved to its edge ('clamp'). Rows
        without a finite position (NaN, ±inf, <NA>) or on a bin label the fit does not hold
        give NaN either way.
    invalid : bins without a valid fit (non-finite coefficients, or a ``quality_flag`` other
        than 0) give NaN ('nan') or lend the model of the nearest fitted bin ('nearest_valid').
    return_error : also return ``{t}_pred_err``, the standard error of the prediction from the
        coefficients' covariance (blended corners add their errors: a conservative bound).

    Returns
    -------
    DataFrame aligned with the rows, columns ``{t}_pred`` (and ``{t}_pred_err``); ``attrs``
    count ``n_outside_grid`` (beyond the grid, on a bin the fit lacks, or without a position)
    and ``n_invalid`` (rows that met an unfitted bin).

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
    _check_options(method, bounds, invalid)
    checked = _check_fit(fit, linear=method == "linear")
    targets = _targets(checked.targets, targets)
    if return_error and "cov" not in fit and "stderr" not in fit:
        raise ValueError("fit: no variable 'cov' nor 'stderr': return_error needs one of them")
    table = RowTable(rows)
    placed = _place(fit, table, checked.axes, clamp=bounds == "clamp", linear=method == "linear")
    design = _design(table, checked.formula, checked.terms, checked.trend)
    models = _models(fit, checked, targets)
    mode = _Mode(method == "linear", invalid == "nearest_valid", return_error)
    pred, err, flags = _evaluate(placed, design, models, mode)
    columns = {f"{t}_pred": pred[:, k] for k, t in enumerate(targets)}
    if return_error:
        columns.update({f"{t}_pred_err": err[:, k] for k, t in enumerate(targets)})
    out = pd.DataFrame(columns, index=table.index)
    out.attrs.update(
        n_outside_grid=int(placed.outside.sum()),
        n_invalid=int(((flags & 2) > 0).sum()),
        method=method,
        bounds=bounds,
        invalid=invalid,
    )
    return out
