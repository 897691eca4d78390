"""Physical variables to integer bins: ``digitize`` and the bin centers it records."""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .errors import InvalidInputTypeError, MissingColumnError

BINNING_ATTR = "xslide_binning"
UNITS_ATTR = "xslide_units"


def _edges(column: str, spec) -> np.ndarray:
    """Bin edges from ``(lo, hi, n)`` (n equal bins) or an increasing array of edges."""
    if isinstance(spec, tuple) and len(spec) == 3 and isinstance(spec[2], int | np.integer):
        lo, hi, n = spec
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo and n >= 1):
            raise ValueError(f"digitize[{column!r}] = {spec!r}: need lo < hi and n >= 1 bins")
        return np.linspace(float(lo), float(hi), int(n) + 1)
    edges = np.asarray(spec, dtype=np.float64)
    if edges.ndim != 1 or edges.size < 2 or not np.all(np.isfinite(edges)):
        raise ValueError(
            f"digitize[{column!r}] must be (lo, hi, n_bins) or at least 2 finite edges"
        )
    if np.any(np.diff(edges) <= 0):
        raise ValueError(f"digitize[{column!r}]: edges must be strictly increasing")
    return edges


def digitize(
    df: pd.DataFrame,
    bins: Mapping[str, object],
    suffix: str = "Bin",
    *,
    units: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Add an integer bin column ``{column}{suffix}`` per physical column.

    Parameters
    ----------
    df : the rows; not modified.
    bins : ``{column: (lo, hi, n_bins) | edges}``. Bins are half-open ``[e_i, e_i+1)``, the last
        one closed (as ``np.histogram``); values outside the edges or NaN get a missing bin
        (``<NA>``) and are left out of fits, and counted there (``n_rows_without_bin``).
    suffix : appended to the column name to name its bin column.
    units : ``{column: unit}`` of any columns of ``df`` (e.g. ``{'r': 'cm', 'dX': 'cm'}``),
        recorded in ``df.attrs['xslide_units']``: fits of the result carry them (the
        ``{column}_center`` coordinates, ``attrs['units_json']``) unless given again.

    Returns
    -------
    A copy of ``df`` with nullable-integer bin columns. ``df.attrs['xslide_binning']`` records
    each bin column's source, edges, centers (and unit): fits then carry ``{column}_center``
    coordinates with CF ``bounds`` and the binning in ``attrs['binning_formulas_json']``.

    Examples
    --------
    >>> import numpy as np, pandas as pd, xslide
    >>> df = pd.DataFrame({"r": [85.0, 120.0, 249.9, 300.0]})
    >>> binned = xslide.digitize(df, {"r": (80.0, 250.0, 17)}, units={"r": "cm"})
    >>> binned["rBin"].tolist()
    [0, 4, 16, <NA>]
    >>> binned.attrs["xslide_units"]
    {'r': 'cm'}
    """
    if not isinstance(df, pd.DataFrame):
        raise InvalidInputTypeError(f"digitize takes a pandas DataFrame, got {type(df).__name__}")
    if not isinstance(bins, Mapping) or not bins:
        raise InvalidInputTypeError(
            "bins must be a non-empty dict {column: (lo, hi, n_bins) or edges}"
        )
    from .options import check_units  # options imports much; binning is imported early

    given = check_units(units)
    unknown = [c for c in given if c not in df.columns]
    if unknown:
        raise MissingColumnError(f"digitize: units names {unknown}, which are not columns")
    known = {**units_of(df), **given}
    out = df.copy()
    record = dict(df.attrs.get(BINNING_ATTR, {}))
    for column, spec in bins.items():
        if column not in df.columns:
            raise MissingColumnError(f"digitize: column {column!r} not found in the data")
        edges = _edges(column, spec)
        values = df[column].to_numpy(dtype=np.float64, na_value=np.nan)
        index = np.searchsorted(edges, values, side="right") - 1
        index[values == edges[-1]] = edges.size - 2  # the last bin is closed
        outside = ~np.isfinite(values) | (index < 0) | (index > edges.size - 2)
        name = f"{column}{suffix}"
        out[name] = pd.array(np.where(outside, 0, index), dtype="Int64")
        out.loc[outside, name] = pd.NA
        record[name] = {
            "source": column,
            "edges": edges.tolist(),
            "centers": (0.5 * (edges[:-1] + edges[1:])).tolist(),
            "formula": f"{name} = digitize({column}, edges={_edge_text(edges)})",
            **({"units": known[column]} if column in known else {}),
        }
    out.attrs[BINNING_ATTR] = record
    if known:
        out.attrs[UNITS_ATTR] = known
    return out


def _edge_text(edges: np.ndarray) -> str:
    """Edges as text: linspace when equally spaced, else the list."""
    steps = np.diff(edges)
    if np.allclose(steps, steps[0], rtol=1e-12, atol=0):
        return f"linspace({float(edges[0])!r}, {float(edges[-1])!r}, {edges.size})"
    return repr(edges.tolist())


def binning_of(data, dims) -> dict[str, dict]:
    """The ``digitize`` records of the bin dims among ``data.attrs``."""
    record = getattr(data, "attrs", {}).get(BINNING_ATTR, {})
    return {d: record[d] for d in dims if d in record}


def units_of(data) -> dict[str, str]:
    """The ``{column: unit}`` that ``digitize`` recorded in ``data.attrs`` (or a statistics
    Dataset in ``attrs['units_json']``)."""
    attrs = getattr(data, "attrs", None)
    if not isinstance(attrs, Mapping):
        return {}
    if "units_json" in attrs:
        return dict(json.loads(attrs["units_json"]))
    return dict(attrs.get(UNITS_ATTR, {}))
