"""Dask DataFrames in: per-partition statistics by the same kernel, summed by a tree reduction.

One pass of dask computes the grid extent and the global references (unless given); then every
partition is reduced to per-bin statistics on that fixed grid with those references, on the
workers, and the partial statistics are added pairwise up a tree. The result is the additive
statistics of all rows, as from an in-memory table (equal to rounding), with memory per worker
bounded by one partition plus the grid. Raw-row paths (median, n_sigma_cut, glm/rlm, callables)
need every window's rows at once and are refused on dask input: compute a selection to pandas
(for example one sector at a time) for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ._optional import require
from .core import Reduced
from .formula import ParsedFormula
from .grid import DEFAULT_MAX_BINS


def is_dask_dataframe(data) -> bool:
    """A dask DataFrame (checked without importing dask)."""
    return type(data).__module__.startswith("dask") and hasattr(data, "npartitions")


def is_dask_dataset(data) -> bool:
    """An xarray Dataset of rows whose variables are dask arrays."""
    import xarray as xr

    return isinstance(data, xr.Dataset) and any(
        v.chunks is not None for v in data.data_vars.values()
    )


def _partition(pdf, dims, targets, predictors, weights, selection, extent, reference, formula,
               backend):  # fmt: skip
    from .stream import stream_stats

    try:
        return stream_stats(
            [pdf], dims, targets, predictors, weights=weights, selection=selection,
            extent=extent, max_bins=DEFAULT_MAX_BINS * 1000, backend=backend,
            reference=reference, formula=formula,
        )  # fmt: skip
    except ValueError as err:
        if "no row inside the grid" not in str(err):
            raise
        return {"n_rows_input": len(pdf), "empty": True}


def _add(a, b):
    """Sum two partial results (a Reduced, or the row counts of a partition off the grid)."""
    if isinstance(a, dict):
        a, b = b, a
    if isinstance(b, dict):  # b has no row on the grid
        if isinstance(a, dict):
            return {"n_rows_input": a["n_rows_input"] + b["n_rows_input"], "empty": True}
        a.counts["n_rows_input"] += b["n_rows_input"]
        a.counts["n_rows_outside_extent"] += b["n_rows_input"]
        return a
    a.stats = a.stats + b.stats
    a.rows_per_bin = a.rows_per_bin + b.rows_per_bin
    for key, value in b.counts.items():
        if isinstance(value, dict):
            a.counts[key] = {t: a.counts[key][t] + n for t, n in value.items()}
        else:
            a.counts[key] += value
    return a


def dask_stats(
    ddf,
    dims: Sequence[str],
    targets: Sequence[str],
    predictors: Sequence[str],
    *,
    weights: str | None = None,
    selection: str | None = None,
    extent: Mapping | None = None,
    max_bins: int = DEFAULT_MAX_BINS,
    backend: str = "numba",
    reference: Mapping[str, float] | None = None,
    formula: ParsedFormula | None = None,
) -> Reduced:
    """Per-bin statistics of a dask DataFrame (see the module docstring)."""
    dask = require("dask", "dask DataFrame input (pip install 'xslide[dask]')")
    if selection is not None and not isinstance(selection, str):
        raise TypeError("with a dask DataFrame, selection must name a boolean column")
    missing = [c for c in [*dims, *targets, *predictors] if c not in ddf.columns]
    if formula is None and missing:
        raise KeyError(f"columns {missing} not found in the dask DataFrame")
    chosen = ddf[ddf[selection]] if selection else ddf
    extent = dict(extent or {})
    todo = {}
    for d in dims:
        if d not in extent:
            todo[d] = (chosen[d].min(), chosen[d].max())
    reference = dict(reference or {})
    if formula is None:
        for column in [*predictors, *targets]:
            if column not in reference:
                values = chosen[column]
                todo[column] = values[np.isfinite(values)].mean()
    (computed,) = dask.compute(todo)  # one pass over the data for extents and references
    for d in dims:
        if d in computed:
            lo, hi = computed[d]
            extent[d] = (int(lo), int(hi))
    for column, value in computed.items():
        if column not in dims:
            reference[column] = float(value) if np.isfinite(value) else 0.0
    size = int(np.prod([hi - lo + 1 for lo, hi in extent.values()]))
    if size > max_bins:
        raise ValueError(
            f"the dense grid would have {size:,} bins, more than max_bins={max_bins:,}; "
            "restrict it with extent= or raise max_bins"
        )
    partitions = ddf.to_delayed()
    if formula is not None:
        # formula terms exist only once evaluated: the first partition fixes the references
        # that were not given (the user's own win)
        first = _partition(
            partitions[0].compute(), dims, targets, predictors, weights, selection, extent,
            None, formula, backend,
        )  # fmt: skip
        if not isinstance(first, dict):
            names = [*first.columns[1:], *first.targets]
            found = dict(zip(names, [*first.x_ref, *first.y_ref], strict=True))
            reference = {**found, **reference}
    arguments = (dims, targets, predictors, weights, selection, extent, reference or None)
    parts = [dask.delayed(_partition)(part, *arguments, formula, backend) for part in partitions]
    while len(parts) > 1:  # a tree: partial statistics are added pairwise
        parts = [
            dask.delayed(_add)(parts[k], parts[k + 1]) if k + 1 < len(parts) else parts[k]
            for k in range(0, len(parts), 2)
        ]
    (total,) = dask.compute(parts[0])
    if isinstance(total, dict):
        raise ValueError("the dask DataFrame holds no row inside the grid")
    return total
