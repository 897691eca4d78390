"""A drop-in for O2DPG's sliding-window fit: its 2026 keyword API on xslide's engine.

Physicists call ``make_sliding_window_fit(*, df, gb_columns, fit_columns, linear_columns,
window_spec, ...)`` of O2DPG's ``groupby_regression_sliding_window``; this module accepts the
same keywords and returns the same frame (column names with the suffix, ``attrs`` metadata
keys), so switching is one import line::

    from xslide.o2dpg import make_sliding_window_fit

The fit itself is ``xslide.make_sliding_window_fit``: the upstream names are mapped onto
xslide's (boundary ``full`` -> ``truncate``, ``symmetric`` -> ``shrink``), and the upstream
radial kernels, functions of ``u² = Σ_d (o_d / h_d)²`` that reach 0 at ``u = 1``, are passed
as an explicit weights array over the window's offsets. Options the upstream function accepts
but this one cannot honor are refused with one line naming them, never ignored.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from numbers import Real

import numpy as np
import pandas as pd

from . import expressions
from .compat import make_sliding_window_fit as _xslide_fit
from .errors import InvalidInputTypeError, InvalidWindowSpec, MissingColumnError
from .result import column_safe

#: upstream boundary name -> xslide boundary mode.
BOUNDARIES: dict[str, str] = {"full": "truncate", "symmetric": "shrink", "periodic": "periodic"}

#: upstream radial kernel name -> its weight as a function of u² = Σ_d (o_d / h_d)².
RADIAL_KERNELS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "gaussian": lambda u2: np.exp(-0.5 * u2),
    "epanechnikov": lambda u2: np.maximum(0.0, 1.0 - u2),
    "linear": lambda u2: np.maximum(0.0, 1.0 - np.sqrt(u2)),
}

ALGORITHMS = ("recompute", "incremental")
AGGREGATES_OF_AGG_COLUMNS = ("mean", "std")


def make_sliding_window_fit(  # noqa: PLR0913  (the upstream signature, keyword for keyword)
    *,
    df: pd.DataFrame,
    gb_columns: Sequence[str],
    fit_columns: Sequence[str],
    linear_columns: Sequence[str | tuple[str, str]],
    window_spec: Mapping[str, int],
    weights: str | None = None,
    suffix: str = "_sw",
    selection=None,
    fit_intercept: bool = True,
    min_stat: int = 10,
    cast_dtype: str | None = "float64",
    backend: str = "auto",
    algorithm: str = "recompute",
    boundary: str | Mapping[str, str] = "full",
    kernel: str | Callable = "uniform",
    kernel_width: float | Mapping[str, float] | None = None,
    aggregation_functions=None,
    agg_columns: Sequence[str] | None = None,
    agg_median: bool = False,
    binning_formulas: Mapping[str, str] | None = None,
    partition_strategy=None,
    return_metadata: bool = False,
    verbose: bool = False,
    **kwargs,
) -> pd.DataFrame | tuple[pd.DataFrame, dict]:
    """O2DPG's sliding-window fit, same keywords and output, computed by xslide.

    Parameters
    ----------
    df : pandas DataFrame of rows.
    gb_columns : integer bin columns; the window slides over them.
    fit_columns : targets, each fitted on its own valid rows.
    linear_columns : predictors: column names, or ``(name, expression)`` tuples evaluated as
        restricted expressions (``xslide.expressions``) into a new column ``name``.
    window_spec : ``{dim: w}``, ±w bins; dims left out get 0.
    weights : row weights column (WLS; mean/std of ``agg_columns`` weighted too).
    suffix : appended to every output column but the bin columns (default ``'_sw'``).
    selection : boolean Series or array of ``len(df)``, positional as upstream.
    fit_intercept : False fits through the origin (no intercept columns).
    min_stat : fit a center only when its window holds at least this many valid rows.
    cast_dtype : dtype of the float output columns (None or ``''``: keep float64).
    backend : 'auto', 'numpy' or 'numba' (equal results).
    algorithm : 'recompute' or 'incremental': the same closed-form fit in xslide, recorded.
    boundary : 'full' (truncate), 'symmetric' (shrink) or 'periodic' (wrap over the bins of
        the selected rows), for all dims or ``{dim: mode}`` (dims left out: 'full').
    kernel : 'uniform', or the radial 'gaussian' ``exp(-u²/2)``, 'epanechnikov'
        ``max(0, 1 - u²)``, 'linear' ``max(0, 1 - u)`` with ``u² = Σ_d (o_d / h_d)²``, or a
        callable ``f(offset_vector, width_vector) -> weight``.
    kernel_width : ``h_d``: a number for every dim or ``{dim: h}``; default ``max(w_d, 1)``.
    aggregation_functions : refused (upstream ignores it): use ``agg_columns``.
    agg_columns : columns whose window mean and std (``{c}_mean``, ``{c}_std``) are added,
        weighted by kernel times row weight.
    agg_median : also add ``{c}_median`` of each agg column.
    binning_formulas : ``{bin_column: text}``, recorded in ``attrs['xslide_attrs']``.
    partition_strategy : passed to xslide (no effect on this closed-form fit);
        ``split_by`` is refused.
    return_metadata : return ``(frame, metadata)`` instead of the frame.
    verbose : show xslide's progress bars.
    **kwargs : refused, naming them (upstream ignores unknown keywords silently).

    Returns
    -------
    pandas DataFrame, one row per bin with selected rows, sorted by ``gb_columns``: the bin
    columns, ``{c}_mean``, ``{c}_std`` (``{c}_median``) per agg column, per target
    ``{t}_intercept``, ``{t}_intercept_err``, ``{t}_slope_{p}``, ``{t}_slope_{p}_err``,
    ``{t}_rmse``, ``{t}_n_fitted``, then ``quality_flag``, ``n_neighbors_used``,
    ``n_rows_aggregated``, ``effective_window_fraction``, all but the bin columns with the
    suffix; ``attrs`` hold upstream's metadata (``version``, ``formulas``, ``columns``,
    ``parameters``, ``window_spec``, ``boundary_mode``, ``kernel``, ``kernel_width``, ...)
    plus ``xslide_attrs``, xslide's own provenance.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from xslide.o2dpg import make_sliding_window_fit
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"rBin": rng.integers(0, 5, 2000), "x": rng.normal(size=2000)})
    >>> df["y"] = 0.5 * df.rBin + 2.0 * df.x + rng.normal(0, 0.01, 2000)
    >>> out = make_sliding_window_fit(
    ...     df=df, gb_columns=["rBin"], fit_columns=["y"], linear_columns=["x"],
    ...     window_spec={"rBin": 1}, kernel="gaussian",
    ... )
    >>> out["y_slope_x_sw"].round(1).tolist()
    [2.0, 2.0, 2.0, 2.0, 2.0]
    >>> out.attrs["kernel"], out.attrs["boundary_mode"]
    ('gaussian', {'rBin': 'full'})
    """
    started = time.perf_counter()
    _refuse_unsupported(kwargs, aggregation_functions, algorithm, partition_strategy)
    if not isinstance(df, pd.DataFrame):
        raise InvalidInputTypeError(f"df must be a pandas DataFrame, got {type(df).__name__}")
    for name, value in (("gb_columns", gb_columns), ("fit_columns", fit_columns)):
        if isinstance(value, str):
            raise InvalidInputTypeError(f"{name} must be a list of column names, got {value!r}")
    gb_columns, fit_columns = list(gb_columns), list(fit_columns)
    rows, predictors, column_map = _linear_columns(df, linear_columns)
    window = _full_window(window_spec, gb_columns)
    modes = _boundary_modes(boundary, gb_columns)
    widths = _kernel_widths(kernel, kernel_width, window, gb_columns)
    mask = _selection_mask(selection, len(df))
    common = {
        "weights_column": weights,
        "selection": mask,
        "backend": backend,
        "partition_strategy": partition_strategy,
        "binning_formulas": binning_formulas,
        "boundary": {d: BOUNDARIES[m] for d, m in modes.items()},
        "kernel": kernel_array(kernel, window, widths),
        "kernel_width": None,
        "extent": _periodic_extent(rows, mask, modes),
        "progress": True if verbose else None,
    }
    fitted = _xslide_fit(
        rows,
        gb_columns,
        window,
        fit_columns,
        predictors,
        fit_formula=_formula(predictors, fit_intercept),
        aggregation_functions=[],
        min_entries=min_stat,
        **common,
    )
    columns = {d: fitted[d].to_numpy() for d in gb_columns}
    if agg_columns:
        columns |= _agg_frame(
            rows, gb_columns, window, list(agg_columns), agg_median, common, len(fitted)
        )
    columns |= _fit_columns(fitted, fit_columns, predictors, fit_intercept)
    out = pd.DataFrame(columns, index=fitted.index)
    out = out.rename(columns={c: f"{c}{suffix}" for c in out.columns if c not in gb_columns})
    out = _cast(out, cast_dtype)
    metadata = _metadata(
        gb_columns=gb_columns,
        fit_columns=fit_columns,
        predictors=predictors,
        column_map=column_map,
        suffix=suffix,
        fit_intercept=fit_intercept,
        options={
            "weights": weights,
            "min_stat": min_stat,
            "window": window,
            "modes": modes,
            "kernel": kernel,
            "widths": widths,
            "algorithm": algorithm,
            "agg_columns": list(agg_columns or []),
            "agg_median": agg_median,
        },
        fitted=fitted,
    )
    metadata["computation_time_sec"] = time.perf_counter() - started
    out.attrs.update(metadata)
    return (out, metadata) if return_metadata else out


def kernel_array(
    kernel: str | Callable, window: Mapping[str, int], widths: Mapping[str, float]
) -> str | np.ndarray:
    """Upstream's kernel as xslide's explicit weights over the window's offsets.

    Upstream weighs the bin at offset ``o`` from the center by a function of the scaled
    distance ``u² = Σ_d (o_d / h_d)²`` (radial, zero at ``u = 1``), or by a callable
    ``f(offset_vector, width_vector)``; xslide takes an array of shape ``(2w_d + 1, ...)``
    in offset order ``-w..w`` per dim (``window``'s order). 'uniform' stays a name.

    Parameters
    ----------
    kernel : 'uniform', 'gaussian', 'epanechnikov', 'linear' or an upstream callable.
    window : ``{dim: w}`` for every bin column, in the bin columns' order.
    widths : ``{dim: h}`` for every bin column.

    Returns
    -------
    'uniform', or the weights array.

    Examples
    --------
    >>> from xslide.o2dpg import kernel_array
    >>> kernel_array("epanechnikov", {"rBin": 2}, {"rBin": 2.0}).tolist()
    [0.0, 0.75, 1.0, 0.75, 0.0]
    >>> kernel_array("linear", {"rBin": 1, "zBin": 1}, {"rBin": 1.0, "zBin": 1.0}).round(2).tolist()
    [[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    _check_kernel(kernel)
    if isinstance(kernel, str) and kernel == "uniform":
        return "uniform"
    dims = list(window)
    offsets = np.meshgrid(*[np.arange(-window[d], window[d] + 1) for d in dims], indexing="ij")
    if callable(kernel):
        vectors = np.stack(offsets, axis=-1).astype(np.float64).reshape(-1, len(dims))
        h = np.array([widths[d] for d in dims], dtype=np.float64)
        values = [float(kernel(vector, h)) for vector in vectors]
        return np.asarray(values, dtype=np.float64).reshape(offsets[0].shape)
    u2 = sum((o / widths[d]) ** 2 for o, d in zip(offsets, dims, strict=True))
    return RADIAL_KERNELS[kernel](np.asarray(u2, dtype=np.float64))


def _refuse_unsupported(kwargs, aggregation_functions, algorithm, partition_strategy) -> None:
    """One line naming any option the drop-in cannot honor (upstream would ignore it)."""
    if kwargs:
        raise InvalidInputTypeError(
            f"make_sliding_window_fit() got unsupported keywords {sorted(kwargs)}; "
            "use xslide.make_sliding_window_fit for xslide's own options"
        )
    if aggregation_functions is not None:
        raise ValueError(
            "aggregation_functions is not supported (upstream ignores it): list the columns "
            "in agg_columns= (with agg_median=True for the median)"
        )
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {list(ALGORITHMS)}, got {algorithm!r}")
    if isinstance(partition_strategy, Mapping) and "split_by" in partition_strategy:
        raise ValueError(
            "partition_strategy split_by is not supported by the drop-in; "
            "use xslide.make_sliding_window_fit"
        )


def _linear_columns(df: pd.DataFrame, linear_columns) -> tuple[pd.DataFrame, list[str], dict]:
    """The rows with expression columns added, the predictor names and name -> expression."""
    if isinstance(linear_columns, str | tuple):
        raise InvalidInputTypeError("linear_columns must be a list of names or (name, expr)")
    names, column_map, added = [], {}, {}
    for item in linear_columns:
        if isinstance(item, str):
            names.append(item)
            column_map[item] = item
            continue
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise InvalidInputTypeError(
                f"linear_columns entries must be names or (name, expression), got {item!r}"
            )
        name, expression = item
        if not name.isidentifier() or name in df.columns or name in column_map:
            raise ValueError(
                f"linear_columns name {name!r} must be a new identifier, not a column of df"
            )
        used = expressions.check(str(expression), [str(c) for c in df.columns])
        values = expressions.evaluate(str(expression), {c: df[c].to_numpy() for c in used})
        added[name] = np.broadcast_to(np.asarray(values, dtype=np.float64), (len(df),))
        names.append(name)
        column_map[name] = str(expression)
    if len(set(names)) != len(names):
        raise ValueError(f"linear_columns has duplicates: {names}")
    return (df.assign(**added) if added else df), names, column_map


def _full_window(window_spec: Mapping[str, int], gb_columns: list[str]) -> dict[str, int]:
    """``{dim: w}`` for every bin column in their order (xslide checks the values)."""
    if not isinstance(window_spec, Mapping):
        raise InvalidInputTypeError(
            f"window_spec must be a dict {{dim: w}}, got {type(window_spec).__name__}"
        )
    unknown = sorted(set(window_spec) - set(gb_columns))
    if unknown:
        raise InvalidWindowSpec(f"window_spec names {unknown}, not in gb_columns {gb_columns}")
    window = {d: window_spec.get(d, 0) for d in gb_columns}
    for d, w in window.items():
        if isinstance(w, bool) or not isinstance(w, int | np.integer) or w < 0:
            raise InvalidWindowSpec(f"window_spec for {d!r} must be an integer >= 0, got {w!r}")
    return {d: int(w) for d, w in window.items()}


def _boundary_modes(boundary, gb_columns: list[str]) -> dict[str, str]:
    """Upstream boundary name per bin column (dims left out of a dict: 'full')."""
    given = boundary if isinstance(boundary, Mapping) else dict.fromkeys(gb_columns, boundary)
    unknown = sorted(set(given) - set(gb_columns))
    if unknown:
        raise ValueError(f"boundary names {unknown}, not in gb_columns {gb_columns}")
    modes = {d: given.get(d, "full") for d in gb_columns}
    for d, mode in modes.items():
        if mode not in BOUNDARIES:
            raise ValueError(f"boundary for {d!r} must be one of {list(BOUNDARIES)}, got {mode!r}")
    return modes


def _check_kernel(kernel) -> None:
    """Upstream's kernels: a radial name, 'uniform' or a callable of (offset, width)."""
    if callable(kernel) or (isinstance(kernel, str) and kernel in ("uniform", *RADIAL_KERNELS)):
        return
    shown = repr(kernel) if isinstance(kernel, str) else f"a {type(kernel).__name__}"
    raise ValueError(
        f"kernel must be one of {['uniform', *RADIAL_KERNELS]} or a callable, got {shown}"
    )


def _kernel_widths(kernel, kernel_width, window: dict[str, int], gb_columns) -> dict[str, float]:
    """``h_d`` per bin column: upstream's default ``max(w_d, 1)``, a number or a dict."""
    _check_kernel(kernel)
    widths = {d: float(max(window[d], 1)) for d in gb_columns}
    if kernel_width is None:
        return widths
    if isinstance(kernel_width, Mapping):
        unknown = sorted(set(kernel_width) - set(gb_columns))
        if unknown:
            raise ValueError(f"kernel_width names {unknown}, not in gb_columns {gb_columns}")
        given = dict(kernel_width)
    else:
        given = dict.fromkeys(gb_columns, kernel_width)
    for d, h in given.items():
        if isinstance(h, bool) or not isinstance(h, Real) or not (h > 0 and math.isfinite(h)):
            raise ValueError(f"kernel_width for {d!r} must be a finite number > 0, got {h!r}")
        widths[d] = float(h)
    return widths


def _selection_mask(selection, n_rows: int) -> np.ndarray | None:
    """Upstream's selection: a boolean Series or array of ``len(df)``, read by position."""
    if selection is None:
        return None
    mask = np.asarray(getattr(selection, "values", selection))
    if mask.dtype != np.bool_ or mask.shape != (n_rows,):
        raise ValueError(
            f"selection must be a boolean mask of len(df) = {n_rows}, "
            f"got dtype {mask.dtype} and shape {mask.shape}"
        )
    return mask


def _periodic_extent(rows: pd.DataFrame, mask, modes: Mapping[str, str]) -> dict | None:
    """The period of each periodic dim: upstream wraps over the selected rows' bins."""
    periodic = [d for d, mode in modes.items() if mode == "periodic"]
    if not periodic:
        return None
    extent = {}
    for d in periodic:
        values = rows[d] if d in rows.columns else None
        if values is None:
            return None  # xslide names the missing column
        values = values[mask] if mask is not None else values
        if values.notna().any():
            extent[d] = (int(values.min()), int(values.max()))
    return extent or None


def _formula(predictors: list[str], fit_intercept: bool) -> str | None:
    """None (xslide's ``target ~ predictors``), or the formula without the intercept."""
    if fit_intercept:
        return None
    if not predictors:
        raise ValueError("fit_intercept=False needs at least one linear column")
    unsafe = [p for p in predictors if not p.isidentifier()]
    if unsafe:
        raise ValueError(f"fit_intercept=False needs identifier linear_columns, got {unsafe}")
    return "target ~ " + " + ".join(predictors) + " - 1"


def _agg_frame(rows, gb_columns, window, agg_columns, agg_median: bool, common, n_centers) -> dict:
    """``{c}_mean``, ``{c}_std`` (``{c}_median``) of each agg column over the windows.

    Each agg column is its own target of an intercept-only xslide fit (a bin column, which
    xslide cannot take as a target, under a private name), so a row counts wherever that
    column is finite, as upstream.
    """
    aggregates = [*AGGREGATES_OF_AGG_COLUMNS, *(["median"] if agg_median else [])]
    taken = set(rows.columns)
    private = {}
    for i, c in enumerate(dict.fromkeys(agg_columns)):
        if c not in rows.columns:
            raise MissingColumnError(f"agg_columns names {c!r}, not a column of df")
        name = f"agg{i}"
        while name in taken:
            name = f"_{name}"
        taken.add(name)
        private[c] = name
    if n_centers == 0:  # nothing to fit: xslide has said so once already
        return {f"{c}_{a}": np.empty(0) for c in private for a in aggregates}
    keep = [*gb_columns, *([common["weights_column"]] if common["weights_column"] else [])]
    values = {n: _as_float(rows[c], "agg_columns") for c, n in private.items()}
    table = rows[list(dict.fromkeys(keep))].assign(**values)
    stats = _xslide_fit(
        table,
        gb_columns,
        window,
        list(private.values()),
        [],
        aggregation_functions=aggregates,
        min_entries=1,
        **common,
    )
    return {
        f"{c}_{a}": stats[f"{n}_{a}"].to_numpy() for c, n in private.items() for a in aggregates
    }


def _as_float(column: pd.Series, argument: str) -> np.ndarray:
    """A numeric column as float64 (missing values NaN), refused naming it otherwise."""
    try:
        return column.to_numpy(dtype=np.float64, na_value=np.nan)
    except (TypeError, ValueError):
        raise InvalidInputTypeError(
            f"{argument} column {column.name!r} must be numeric, got {column.dtype}"
        ) from None


def _fit_columns(fitted: pd.DataFrame, fit_columns, predictors, fit_intercept) -> dict:
    """xslide's fit columns under upstream's names and order; then the diagnostics."""
    columns = {}
    terms = (["intercept"] if fit_intercept else []) + [
        f"slope_{column_safe(p)}" for p in predictors
    ]
    for t in fit_columns:
        for term in terms:
            columns[f"{t}_{term}"] = fitted[f"{t}_{term}"].to_numpy()
            columns[f"{t}_{term}_err"] = fitted[f"{t}_{term}_err"].to_numpy()
        columns[f"{t}_rmse"] = fitted[f"{t}_rmse"].to_numpy()
        columns[f"{t}_n_fitted"] = fitted[f"{t}_n_fitted"].to_numpy()
    columns["quality_flag"] = fitted["quality_flag"].array  # keeps pandas' string dtype
    for name in ("n_neighbors_used", "n_rows_aggregated", "effective_window_fraction"):
        columns[name] = fitted[name].to_numpy()
    return columns


def _cast(out: pd.DataFrame, cast_dtype) -> pd.DataFrame:
    """The float columns as ``cast_dtype`` (a float dtype), as upstream."""
    if not cast_dtype:
        return out
    try:
        dtype = np.dtype(cast_dtype)
    except TypeError:
        dtype = None
    if dtype is None or dtype.kind != "f":
        raise ValueError(f"cast_dtype must be a float dtype such as 'float32', got {cast_dtype!r}")
    floats = out.select_dtypes(include=[np.floating]).columns
    return out.astype(dict.fromkeys(floats, dtype)) if len(floats) else out


def _metadata(
    *, gb_columns, fit_columns, predictors, column_map, suffix, fit_intercept, options, fitted
) -> dict:
    """Upstream's metadata keys (``version``, ``formulas``, ``columns``, ``parameters``, the
    window's settings), naming the columns this frame has; xslide's attrs under
    ``xslide_attrs``."""
    coefficients, errors, quality, formulas = {}, {}, {}, {}
    for t in fit_columns:
        names = (["intercept"] if fit_intercept else []) + [
            f"slope_{column_safe(p)}" for p in predictors
        ]
        coefficients[t] = [f"{t}_{n}{suffix}" for n in names]
        errors[t] = [f"{t}_{n}_err{suffix}" for n in names]
        quality[t] = [f"{t}_rmse{suffix}", f"{t}_n_fitted{suffix}"]
        terms = [f"{t}_intercept{suffix}"] if fit_intercept else []
        terms += [f"{t}_slope_{column_safe(p)}{suffix}*{p}" for p in predictors]
        if terms:
            formulas[f"{t}_pred{suffix}"] = " + ".join(terms)
    kernel = options["kernel"]
    metadata = {
        "version": "1.0",
        "formulas": formulas,
        "residual_formulas": {},
        "pull_formulas": {},
        "columns": {
            "gb_columns": list(gb_columns),
            "fit_columns": list(fit_columns),
            "linear_columns": list(predictors),
            "coefficients": coefficients,
            "errors": errors,
            "quality": quality,
        },
        "parameters": {
            "suffix": suffix,
            "fit_intercept": fit_intercept,
            "min_stat": options["min_stat"],
            "fit_type": "sliding_window",
            "weights_column": options["weights"],
        },
        "window_spec": dict(options["window"]),
        "boundary_mode": dict(options["modes"]),
        "kernel": kernel if isinstance(kernel, str) else "custom",
        "kernel_width": dict(options["widths"]),
        "algorithm": options["algorithm"],
        "backend_used": f"xslide_{fitted.attrs.get('backend_used', 'unknown')}",
        "n_bins": len(fitted),
        "computation_time_sec": 0.0,
        "python_version": sys.version,
        "agg_columns": options["agg_columns"],
        "agg_median": options["agg_median"],
    }
    if any(name != expression for name, expression in column_map.items()):
        metadata["linear_column_map"] = dict(column_map)
        metadata["linear_columns_normalized"] = list(predictors)
    metadata["xslide_attrs"] = dict(fitted.attrs)
    return metadata
