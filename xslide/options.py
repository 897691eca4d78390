"""Fit options: every keyword of ``xslide.fit`` checked once into a frozen ``FitOptions``.

This is the only module that knows the choice lists (boundaries, kernels, aggregates, fitters,
backends, centers) and the defaults. ``xslide.fit``, ``make_sliding_window_fit`` and the command
line all build their options with ``build_options``; every validator raises naming the argument
and what was expected, before any row is read.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, TypeVar, get_args

import numpy as np

from . import _numba
from .budget import default_max_memory
from .design import HUGE
from .errors import InvalidInputTypeError, InvalidWindowSpec, MissingColumnError, PerformanceWarning
from .fitters import RawFitter, make_fitter
from .formula import INTERCEPT, ParsedFormula, checked_formula, parse_formula, uses_column
from .grid import DEFAULT_MAX_BINS
from .parallel import Parallel
from .window import Extent, Kernel, span

Boundary = Literal["truncate", "full", "periodic", "mirror", "shrink", "symmetric"]
KernelName = Literal["uniform", "gaussian", "epanechnikov", "linear"]
Aggregate = Literal["mean", "std", "median", "entries", "ltm", "ltm_std", "mad", "trimmed_mean"]
ClipCenter = Literal["fit", "median"]
ClipScale = Literal["rmse", "mad"]
FitterName = Literal["ols", "wls", "glm", "rlm", "curve_fit"]
Backend = Literal["auto", "numba", "numpy"]
Centers = Literal["observed", "grid"]
SourceKind = Literal["memory", "stream", "dask", "stats"]

BOUNDARIES: tuple[str, ...] = get_args(Boundary)
KERNELS: tuple[str, ...] = get_args(KernelName)
AGGREGATES: tuple[str, ...] = get_args(Aggregate)  # in the order of the output columns
CLIP_CENTERS: tuple[str, ...] = get_args(ClipCenter)
CLIP_SCALES: tuple[str, ...] = get_args(ClipScale)
FITTERS: tuple[str, ...] = get_args(FitterName)
BACKENDS: tuple[str, ...] = get_args(Backend)
CENTERS: tuple[str, ...] = get_args(Centers)
# the spelling of each boundary mode the engine uses
CANONICAL_BOUNDARY = {mode: mode for mode in BOUNDARIES} | {
    "full": "truncate",
    "symmetric": "shrink",
}
# options of fitter='glm' / 'rlm' (statsmodels) and 'curve_fit' (the model and least_squares),
# passed on as keyword arguments
FITTER_KEYWORDS = ("family", "M", "fit_kwargs", "model", "p0", "bounds", "jac")
# the aggregates of aggregation=None (the robust ones are asked for by name)
DEFAULT_AGGREGATES = ("mean", "std", "median", "entries")
# aggregates without the rows in memory (the median and the robust aggregates need them)
REDUCED_AGGREGATES = ("mean", "std", "entries")
# aggregates of the window's sorted values (xslide.aggregates), and their options
ROBUST_AGGREGATES = ("ltm", "ltm_std", "mad", "trimmed_mean")

#: every keyword of ``xslide.fit`` and its default (the public signatures repeat them)
DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "dims": None,
        "targets": None,
        "predictors": (),
        "window": None,
        "formula": None,
        "fitter": "ols",
        "weights": None,
        "selection": None,
        "min_entries": 10,
        "aggregation": None,
        "boundary": "truncate",
        "kernel": "uniform",
        "kernel_width": None,
        "trend": 0,
        "trend_interactions": False,
        "centers": "observed",
        "extent": None,
        "backend": "auto",
        "max_bins": DEFAULT_MAX_BINS,
        "max_memory": None,
        "binning_formulas": None,
        "reference": None,
        "ltm_fraction": 0.8,
        "trim_fraction": 0.1,
        "n_sigma_cut": None,
        "max_iter": None,
        "clip_center": "fit",
        "clip_scale": "rmse",
        "partition_strategy": None,
        "progress": None,
        "chunks": None,
        "trusted_formula": False,
        "units": None,
    }
)
# the keywords that act on rows; a statistics Dataset has none left to act on
ROW_KEYWORDS = (
    "dims",
    "targets",
    "predictors",
    "formula",
    "weights",
    "selection",
    "extent",
    "reference",
)
READ_KEYWORDS = (
    "dims",
    "targets",
    "predictors",
    "weights",
    "selection",
    "extent",
    "backend",
    "max_bins",
    "reference",
)


class Input(NamedTuple):
    """What the options need to know of the data before reading it (``sources.describe``)."""

    kind: SourceKind
    columns: tuple[str, ...] | None = None  # column names, when known without reading rows
    dims: tuple[str, ...] = ()  # a statistics Dataset: its grid dims, targets, weights
    targets: tuple[str, ...] = ()
    weights: str | None = None
    units: Mapping[str, str] = MappingProxyType({})  # recorded by digitize or bin_stats


@dataclass(frozen=True)
class ReadSpec:
    """What a reader needs to reduce rows to per-bin statistics (one signature for all)."""

    dims: tuple[str, ...]
    targets: tuple[str, ...]
    predictors: tuple[str, ...] = ()
    weights: str | None = None
    selection: Any = None
    extent: Mapping[str, tuple[int, int]] | None = None
    max_bins: int = DEFAULT_MAX_BINS
    backend: str = "numpy"
    max_memory: float = field(default_factory=default_max_memory)  # bytes
    reference: Mapping[str, float] | None = None
    formula: ParsedFormula | None = None
    weights_scale: float | None = None  # None: from the rows (a stream: from its first batch)
    progress: bool | None = None  # a bar over a stream's rows (None: on a terminal when long)


@dataclass(frozen=True, eq=False)
class FitOptions:
    """Every option of a fit, validated: how rows are read, windowed, fitted and summarised."""

    read: ReadSpec
    window: Mapping[str, Extent]  # half-width or (before, after) per dim (all dims, grid order)
    boundary: Mapping[str, str]  # canonical mode per dim
    kernel: Kernel  # built on the grid's window by window.kernel_weights
    trend: Mapping[str, int]  # local polynomial order per dim (all dims, in grid order)
    trend_interactions: bool  # d_{a}:d_{b} terms for every pair of trend dims
    min_entries: int
    aggregation: Mapping[str, tuple[str, ...]]
    centers: str
    fitter: str  # the fitter used: 'ols', 'wls', 'glm', 'rlm', 'curve_fit:<f>', 'callable:<f>'
    raw_fitter: RawFitter | None  # None: the closed-form OLS/WLS path
    formula: str  # what predict needs to rebuild the design: a formula, 'callable', 'curve_fit', ''
    n_sigma_cut: float | None
    max_iter: int
    parallel: Parallel
    progress: bool | None
    chunks: Mapping[str, int] | None
    binning_formulas: Mapping[str, str]
    units: Mapping[str, str] = field(default_factory=dict)  # column -> unit, in attrs
    ltm_fraction: float = 0.8  # fraction of the window's weight the LTM block holds at most
    trim_fraction: float = 0.1  # fraction of the weight the trimmed mean cuts from each end
    clip_center: str = "fit"  # n_sigma_cut around the fit's prediction or the window median
    clip_scale: str = "rmse"  # in units of the fit's rmse or of the window's MAD sigma


# ---- one validator per option ----

T = TypeVar("T")
_INT64 = np.iinfo(np.int64)


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def per_dim(
    value,
    dims: Sequence[str],
    name: str,
    check: Callable[[Any, str], T],
    default: Callable[[str], T] | None = None,
    scalar: bool = True,
    error: type[Exception] = ValueError,
) -> dict[str, T]:
    """One value for every dim, or ``{dim: value}``: each checked by ``check(value, label)``.

    Dims left out of a dict get ``default(dim)``, or are left out when ``default`` is None.
    """
    if isinstance(value, Mapping):
        unknown = [d for d in value if d not in dims]
        if unknown:
            raise error(
                f"{name} names {unknown}, which are not bin dims; bin dims are {list(dims)}"
            )
        given = dict(value)
    elif scalar:
        given = dict.fromkeys(dims, value)
    else:
        raise error(f"{name} must be a dict {{dim: value}}, got {type(value).__name__}")
    out = {}
    for d in dims:
        if d in given:
            out[d] = check(given[d], f"{name}[{d!r}]")
        elif default is not None:
            out[d] = default(d)
    return out


def _half_width(value, label: str) -> Extent:
    """A dim's window: a half-width w (offsets -w..w) or (before, after) (offsets
    -before..after; equal parts become the half-width)."""
    if isinstance(value, tuple | list):
        if len(value) != 2 or not all(_is_int(v) and v >= 0 for v in value):
            raise InvalidWindowSpec(
                f"{label} must be a half-width or a pair (before, after) of non-negative "
                f"integers, got {value!r}"
            )
        before, after = int(value[0]), int(value[1])
        return before if before == after else (before, after)
    if not _is_int(value):
        raise InvalidWindowSpec(
            f"{label} must be a non-negative integer half-width or a pair (before, after), "
            f"got {value!r}"
        )
    if value < 0:
        raise InvalidWindowSpec(f"{label} must be >= 0, got {value}")
    return int(value)


def _boundary_mode(value, label: str) -> str:
    if not isinstance(value, str) or value not in BOUNDARIES:
        raise ValueError(
            f"{label}: unknown boundary {value!r}; choose from {', '.join(BOUNDARIES)}"
        )
    return CANONICAL_BOUNDARY[value]


def _positive_number(value, label: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number) or not value > 0:
        raise ValueError(f"{label} must be a positive number, got {value!r}")
    return float(value)


def _chunk_size(value, label: str) -> int:
    if not _is_int(value) or value < 1:
        raise ValueError(f"{label} must be a positive integer, got {value!r}")
    return int(value)


def _extent_range(value, label: str) -> tuple[int, int]:
    try:
        lo, hi = value
    except (TypeError, ValueError):
        raise ValueError(f"{label} must be a pair (lo, hi), got {value!r}") from None
    if not (_is_int(lo) and _is_int(hi)):
        raise InvalidInputTypeError(f"{label} must hold integers, got {value!r}")
    if hi < lo:
        raise ValueError(f"{label} = {value!r} has hi < lo")
    if lo < _INT64.min or hi > _INT64.max:
        raise ValueError(f"{label} = {value!r} is outside the int64 range of bin numbers")
    return int(lo), int(hi)


def check_extent(extent, dims: Sequence[str]) -> dict[str, tuple[int, int]]:
    """``{dim: (lo, hi)}`` with integers lo <= hi; dims left out keep their observed range."""
    if extent is None:
        return {}
    if not isinstance(extent, Mapping):
        raise InvalidInputTypeError(
            f"extent must be a dict {{dim: (lo, hi)}}, got {type(extent).__name__}"
        )
    return per_dim(extent, dims, "extent", _extent_range)


def check_names(value, role: str, allow_empty: bool = False) -> tuple[str, ...]:
    """One column name or a sequence of distinct names."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise InvalidInputTypeError(
            f"{role} must be a column name or a list of column names, got {value!r}"
        )
    if not value and not allow_empty:
        raise ValueError(f"{role} must name at least one column")
    if len(set(value)) != len(value):
        raise ValueError(f"{role} lists a column twice: {list(value)}")
    return tuple(value)


def check_columns(dims, targets, predictors) -> tuple[tuple[str, ...], ...]:
    """The column-name arguments; a column may play one role only."""
    dims = check_names(dims, "group_columns")
    targets = check_names(targets, "fit_columns")
    predictors = check_names(predictors, "predictor_columns", allow_empty=True)
    if set(dims) & (set(targets) | set(predictors)):
        clash = sorted(set(dims) & (set(targets) | set(predictors)))
        raise ValueError(f"bin columns {clash} cannot also be fit columns or predictors")
    if set(targets) & set(predictors):
        overlap = sorted(set(targets) & set(predictors))
        raise ValueError(f"columns {overlap} are both fit columns and predictors")
    if INTERCEPT in predictors:
        raise ValueError(f"{INTERCEPT!r} is added automatically; do not list it as a predictor")
    return dims, targets, predictors


def check_min_entries(value) -> int:
    if not _is_int(value):
        raise InvalidInputTypeError(f"min_entries must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"min_entries must be >= 1, got {value}")
    return int(value)


def check_aggregation(aggregation, targets: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """None -> mean, std, median, entries per target; a list -> the same for every target; or
    a dict."""
    if aggregation is None:
        return dict.fromkeys(targets, DEFAULT_AGGREGATES)
    if isinstance(aggregation, str):
        aggregation = [aggregation]
    if not isinstance(aggregation, Mapping):
        aggregation = dict.fromkeys(targets, tuple(aggregation))
    unknown = set(aggregation) - set(targets)
    if unknown:
        raise ValueError(
            f"aggregation_functions names {sorted(unknown)}, which are not fit columns "
            f"{list(targets)}"
        )
    out = {}
    for t in targets:
        names = aggregation.get(t, ())
        names = [names] if isinstance(names, str) else names
        bad = [a for a in names if a not in AGGREGATES]
        if bad:
            raise ValueError(
                f"aggregation_functions[{t!r}] has {bad}; choose from {list(AGGREGATES)}"
            )
        out[t] = tuple(a for a in AGGREGATES if a in names)
    return out


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _trend_order(value, label: str) -> int:
    if not _is_int(value) or value not in (0, 1, 2):
        raise ValueError(f"{label} must be 0, 1 or 2 (the local polynomial order), got {value!r}")
    return int(value)


def check_trend(trend, interactions, half: Mapping[str, Extent]) -> tuple[dict[str, int], bool]:
    """The local polynomial order per dim and whether it has the cross terms.

    ``trend`` is 0 (local constant plus predictors), 1 (plus local gradients ``d_{dim}``) or 2
    (plus ``d2_{dim}``) for every windowed dim, or ``{dim: order}`` (dims left out: 0), where
    each dim of order >= 1 needs a window (a half-width or before + after >= 1) to estimate its
    terms.
    """
    dims = list(half)
    if isinstance(trend, Mapping):
        orders = per_dim(trend, dims, "trend", _trend_order, default=lambda d: 0)
        flat = [d for d in dims if orders[d] and half[d] == 0]
        if flat:
            raise ValueError(
                f"trend[{flat[0]!r}]={orders[flat[0]]} needs a window along {flat[0]!r}, but "
                f"window_spec[{flat[0]!r}] is 0: give it a half-width >= 1 or leave it out"
            )
    else:
        order = _trend_order(trend, "trend")
        orders = {d: order if half[d] != 0 else 0 for d in dims}
    if not isinstance(interactions, bool | np.bool_):
        raise InvalidInputTypeError(
            f"trend_interactions must be True or False, got {interactions!r}"
        )
    if interactions and (
        trend == 0 if not isinstance(trend, Mapping) else not any(orders.values())
    ):
        raise ValueError("trend_interactions=True needs a trend: trend=1 or 2, or {dim: order}")
    return orders, bool(interactions)


def check_clipping(n_sigma_cut, max_iter) -> tuple[float | None, int]:
    """``n_sigma_cut`` (None or > 0) and ``max_iter`` (>= 1, only with a cut; default 3)."""
    if n_sigma_cut is None:
        if max_iter is not None:
            raise InvalidInputTypeError(
                "max_iter applies to outlier rejection: give n_sigma_cut too"
            )
        return None, 3
    if isinstance(n_sigma_cut, bool) or not isinstance(n_sigma_cut, int | float | np.number):
        raise InvalidInputTypeError(f"n_sigma_cut must be a positive number, got {n_sigma_cut!r}")
    if not np.isfinite(n_sigma_cut) or n_sigma_cut <= 0:
        raise ValueError(f"n_sigma_cut must be a positive number, got {n_sigma_cut!r}")
    max_iter = 3 if max_iter is None else max_iter
    if not _is_int(max_iter) or max_iter < 1:
        raise ValueError(f"max_iter must be an integer >= 1, got {max_iter!r}")
    return float(n_sigma_cut), int(max_iter)


def check_clip_options(
    center, scale, n_sigma_cut: float | None, max_iter_given: bool
) -> tuple[str, str]:
    """``clip_center`` and ``clip_scale``: other than 'fit'/'rmse' only with ``n_sigma_cut``;
    with 'median' and 'mad' the cut is fixed by the window's rows, so ``max_iter`` is refused."""
    center = check_choice(center, "clip_center", CLIP_CENTERS)
    scale = check_choice(scale, "clip_scale", CLIP_SCALES)
    if n_sigma_cut is None and (center, scale) != ("fit", "rmse"):
        raise ValueError(
            "clip_center and clip_scale shape the n_sigma_cut clipping: give n_sigma_cut too"
        )
    if (center, scale) == ("median", "mad") and max_iter_given:
        raise ValueError(
            "max_iter does not apply to clip_center='median' with clip_scale='mad': that cut "
            "does not depend on any fit (one cut, one fit); leave max_iter out"
        )
    return center, scale


def check_fraction(value, name: str, lo: float, hi: float, closed: str) -> float:
    """A number between lo and hi; ``closed`` says which ends are allowed: 'right' (lo, hi]
    or 'left' [lo, hi)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise InvalidInputTypeError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if closed == "right":
        inside, interval = lo < value <= hi, f"({lo:g}, {hi:g}]"
    else:
        inside, interval = lo <= value < hi, f"[{lo:g}, {hi:g})"
    if not inside:
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def check_robust_options(kw: Mapping, aggregation: Mapping[str, tuple[str, ...]]) -> dict:
    """``ltm_fraction`` in (0, 1] and ``trim_fraction`` in [0, 0.5), each only with the
    aggregates it shapes (a changed option that nothing reads is refused, not ignored)."""
    asked = {a for names in aggregation.values() for a in names}
    ltm = check_fraction(kw["ltm_fraction"], "ltm_fraction", 0.0, 1.0, "right")
    trim = check_fraction(kw["trim_fraction"], "trim_fraction", 0.0, 0.5, "left")
    if ltm != DEFAULTS["ltm_fraction"] and not asked & {"ltm", "ltm_std"}:
        raise ValueError("ltm_fraction shapes the 'ltm' and 'ltm_std' aggregates: ask for one")
    if trim != DEFAULTS["trim_fraction"] and "trimmed_mean" not in asked:
        raise ValueError("trim_fraction shapes the 'trimmed_mean' aggregate: ask for it")
    return {"ltm_fraction": ltm, "trim_fraction": trim}


def check_flag(value, name: str) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise InvalidInputTypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_progress(progress) -> bool | None:
    if progress is not None and not isinstance(progress, bool):
        raise InvalidInputTypeError(
            f"progress must be True, False or None (automatic), got {progress!r}"
        )
    return progress


def check_max_memory(max_memory) -> float:
    """Bytes xslide may plan to allocate: a positive number, None for half the machine's."""
    if max_memory is None:
        return default_max_memory()
    if isinstance(max_memory, bool) or not isinstance(max_memory, int | float | np.number):
        raise InvalidInputTypeError(f"max_memory must be a number of bytes, got {max_memory!r}")
    if not max_memory > 0:
        raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
    return max_memory


def check_reference(reference) -> dict[str, float]:
    """``{column: value}`` with finite real values: a shift of inf would void every row."""
    if not isinstance(reference, Mapping):
        raise InvalidInputTypeError(
            f"reference must be a dict {{column: value}}, got {reference!r}"
        )
    out = {}
    for column, value in reference.items():
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            raise InvalidInputTypeError(f"reference[{column!r}] must be a number, got {value!r}")
        if not np.isfinite(value) or abs(value) >= HUGE:
            raise ValueError(
                f"reference[{column!r}] must be a finite, moderate number, got {value!r}"
            )
        out[column] = float(value)
    return out


def check_max_bins(max_bins) -> int | float:
    """The most bins a dense grid may have: a positive number (``1e8`` reads well)."""
    if isinstance(max_bins, bool) or not isinstance(max_bins, int | float | np.number):
        raise InvalidInputTypeError(f"max_bins must be a positive number, got {max_bins!r}")
    if not max_bins >= 1:  # NaN too
        raise ValueError(f"max_bins must be >= 1, got {max_bins!r}")
    return int(max_bins) if _is_int(max_bins) else float(max_bins)


def check_units(units, name: str = "units") -> dict[str, str]:
    """``{column: unit}`` with non-empty strings (e.g. ``{'dX': 'cm', 'qpt': '1/GeV'}``)."""
    if units is None:
        return {}
    if not isinstance(units, Mapping):
        raise InvalidInputTypeError(
            f"{name} must be a dict {{column: unit string}}, got {type(units).__name__}"
        )
    for column, unit in units.items():
        if not isinstance(column, str):
            raise InvalidInputTypeError(f"{name} keys must be column names, got {column!r}")
        if not isinstance(unit, str) or not unit.strip():
            raise InvalidInputTypeError(
                f"{name}[{column!r}] must be a non-empty unit string such as 'cm', got {unit!r}"
            )
    return {column: unit.strip() for column, unit in units.items()}


def check_binning_formulas(formulas) -> dict[str, str]:
    if formulas is not None and not isinstance(formulas, Mapping):
        raise InvalidInputTypeError("binning_formulas must be a dict {bin_column: expression}")
    return dict(formulas or {})


def resolve_backend(backend) -> str:
    """'auto' -> numba when it imports; 'numba' without numba warns and falls back to numpy."""
    check_choice(backend, "backend", BACKENDS)
    if backend == "numpy":
        return "numpy"
    if _numba.numba_available():
        return "numba"
    if backend == "numba":
        warnings.warn(
            "backend='numba' was asked but numba cannot be imported; using the slower numpy "
            "backend (pip install numba)",
            PerformanceWarning,
            stacklevel=4,
        )
    return "numpy"


def parse_partition(partition_strategy) -> tuple[Parallel, list[str]]:
    """Split ``partition_strategy`` into where raw-row work runs and the ``split_by`` columns."""
    if partition_strategy is None:
        return Parallel(), []
    if not isinstance(partition_strategy, Mapping):
        if Parallel.is_client(partition_strategy):
            return Parallel(client=partition_strategy), []
        raise InvalidInputTypeError(
            "partition_strategy must be a dict like {'split_by': [...], 'n_jobs': N} "
            f"or a dask Client, got {type(partition_strategy).__name__}"
        )
    unknown = set(partition_strategy) - {"split_by", "n_jobs", "client"}
    if unknown:
        raise ValueError(
            f"partition_strategy has unknown keys {sorted(unknown)}; "
            "known: 'split_by', 'n_jobs', 'client'"
        )
    n_jobs = partition_strategy.get("n_jobs", 1)
    if not _is_int(n_jobs) or n_jobs < 1:
        raise ValueError(f"partition_strategy['n_jobs'] must be an integer >= 1, got {n_jobs!r}")
    client = partition_strategy.get("client")
    if client is not None and not Parallel.is_client(client):
        raise InvalidInputTypeError(
            "partition_strategy['client'] must be a dask.distributed Client"
        )
    split_by = partition_strategy.get("split_by", [])
    split_by = [split_by] if isinstance(split_by, str) else split_by
    if not isinstance(split_by, Sequence) or not all(isinstance(c, str) for c in split_by):
        raise InvalidInputTypeError("partition_strategy['split_by'] must be a list of column names")
    return Parallel(int(n_jobs), client), list(split_by)


# ---- the kernel ----


def check_kernel(kernel, kernel_width, half: Mapping[str, Extent]) -> Kernel:
    """The kernel: a named one with its width per dim, a callable, or an array (its shape is
    checked where the window is built)."""
    dims = list(half)
    if isinstance(kernel, str):
        check_choice(kernel, "kernel", KERNELS)
        if kernel == "uniform" and kernel_width is not None:
            raise ValueError(
                "kernel_width applies to the gaussian, epanechnikov and linear kernels"
            )
        widths = per_dim(
            {} if kernel_width is None else kernel_width,
            dims,
            "kernel_width",
            _positive_number,
            default=lambda d: float(max(*span(half[d]), 1)),
        )
        return Kernel(kernel, kernel, tuple(widths.values()))
    if kernel_width is not None:
        raise ValueError("kernel_width applies to the named kernels, not to a callable or array")
    if callable(kernel):
        return Kernel("callable", kernel)
    if not isinstance(kernel, np.ndarray | list | tuple):
        raise ValueError(
            f"kernel must be one of {list(KERNELS)}, a callable of offsets or a weights array, "
            f"got {kernel!r}"
        )
    return Kernel("array", np.asarray(kernel))


def is_uniform(kernel: Kernel, half: Mapping[str, Extent]) -> bool | None:
    """Whether every offset of the window weighs the same (None: a callable, unknown yet)."""
    if kernel.name == "callable":
        return None
    if kernel.name == "array":
        return bool(np.all(kernel.value == 1.0))
    return kernel.name == "uniform" or not any(half.values())


# ---- the builder ----


def _keywords(keywords: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keywords with defaults filled in, and the statsmodels options apart."""
    given = dict(keywords)
    fitter_options = {k: given.pop(k) for k in FITTER_KEYWORDS if k in given}
    unknown = sorted(set(given) - set(DEFAULTS))
    if unknown:
        raise InvalidInputTypeError(
            f"unexpected keyword argument(s) {unknown}; known: {[*DEFAULTS, *FITTER_KEYWORDS]}"
        )
    return {**DEFAULTS, **given}, fitter_options


def _given(name: str, value) -> bool:
    """Whether a row keyword was given (an empty predictor list is the default's spelling)."""
    if name == "predictors" and isinstance(value, list | tuple) and not value:
        return False
    return value is not None


def _refuse_row_keywords(kw: dict[str, Any]) -> None:
    """A statistics Dataset has no rows left for the row options to act on."""
    given = [k for k in ROW_KEYWORDS if _given(k, kw[k])]
    if given:
        raise InvalidInputTypeError(
            f"{given} act on rows, but data is a statistics Dataset whose rows are already "
            "reduced; pass only window= and fit options, or fit the rows"
        )
    if kw["fitter"] in ("glm", "rlm", "curve_fit") or kw["n_sigma_cut"] is not None:
        raise ValueError(
            "fitter='glm'/'rlm'/'curve_fit' and n_sigma_cut need the rows: fit the rows, "
            "not statistics"
        )


@dataclass(frozen=True)
class _Model:
    """What is fitted: design columns (predictors or a formula) and the fitter fitting them."""

    predictors: tuple[str, ...]
    formula: ParsedFormula | None
    raw_fitter: RawFitter | None
    fitter: str
    formula_attr: str


def _model(
    kw: dict, targets: tuple[str, ...], predictors: tuple[str, ...], fitter_options
) -> _Model:
    """Check the fitter, the formula or callable and their options; weights make OLS a WLS."""
    fitter, formula, weights = kw["fitter"], kw["formula"], kw["weights"]
    check_choice(fitter, "fitter", FITTERS)
    if fitter == "wls" and weights is None:
        raise ValueError("fitter='wls' needs weights_column (the row weights)")
    parsed = None
    if formula is not None and not callable(formula):
        checked = checked_formula(
            formula, trusted=check_flag(kw["trusted_formula"], "trusted_formula")
        )
        parsed = parse_formula(checked, targets)
        unused = [p for p in predictors if not uses_column(parsed.rhs, p)]
        if unused:
            raise ValueError(
                f"predictor_columns {unused} are not used by fit_formula {formula!r}; "
                "with a formula, the formula alone defines the terms"
            )
        in_rhs = [t for t in targets if uses_column(parsed.rhs, t)]
        if in_rhs:
            raise ValueError(f"fit_formula {formula!r} uses fit columns {in_rhs} as terms")
        predictors = ()
    options = dict(fitter_options)
    raw = make_fitter(fitter, formula, options, weights, predictors)
    if options:
        raise InvalidInputTypeError(
            f"unexpected fitter options {sorted(options)} for fitter={fitter!r}"
        )
    used = raw.name if raw is not None else ("wls" if weights is not None else "ols")
    if parsed is not None:
        formula_attr = parsed.formula
    else:
        formula_attr = raw.kind if raw is not None and raw.kind in ("callable", "curve_fit") else ""
    return _Model(predictors, parsed, raw, used, formula_attr)


def _split_dims(split_by: list[str], dims: tuple[str, ...], kw: dict, source: Input) -> tuple:
    """``split_by`` columns become leading bin dims of half-width 0: no window crosses them."""
    window = kw["window"]
    for column in split_by:
        if isinstance(window, Mapping) and window.get(column, 0) != 0:
            raise InvalidWindowSpec(
                f"window_spec[{column!r}] must be 0: partition_strategy splits by {column!r}"
            )
        if column in dims:
            continue
        if source.kind == "stats":
            raise ValueError(f"split_by column {column!r} is not a dim of the statistics")
        if source.columns is not None and column not in source.columns:
            raise MissingColumnError(f"partition_strategy['split_by']: column {column!r} not found")
        dims = (column, *dims)
    return dims


def build_read_spec(
    keywords: Mapping[str, Any], formula: ParsedFormula | None = None, reads_rows: bool = True
) -> ReadSpec:
    """The reader's options (``bin_stats`` and the row part of ``fit``).

    ``reads_rows`` False (statistics in): the backend is checked but not resolved, so no
    warning speaks of a row pass that will not happen.
    """
    kw = {**DEFAULTS, **keywords}
    dims, targets, predictors = check_columns(kw["dims"], kw["targets"], kw["predictors"])
    weights, reference = kw["weights"], kw["reference"]
    if weights is not None and not isinstance(weights, str):
        raise InvalidInputTypeError(f"weights_column must be a column name, got {weights!r}")
    if reference is not None:
        reference = check_reference(reference)
    backend = kw["backend"]
    backend = resolve_backend(backend) if reads_rows else check_choice(backend, "backend", BACKENDS)
    return ReadSpec(
        dims=dims,
        targets=targets,
        predictors=predictors,
        weights=weights,
        selection=kw["selection"],
        extent=check_extent(kw["extent"], dims),
        max_bins=check_max_bins(kw["max_bins"]),
        backend=backend,
        max_memory=check_max_memory(kw["max_memory"]),
        reference=reference,
        formula=formula,
        progress=check_progress(kw["progress"]),
    )


def _window_options(kw: dict, dims: tuple[str, ...]) -> dict[str, Any]:
    """Half-widths, boundaries, kernel and chunks per dim."""
    half = per_dim(
        kw["window"] or {},
        dims,
        "window_spec",
        _half_width,
        default=lambda d: 0,
        scalar=False,
        error=InvalidWindowSpec,
    )
    boundary = per_dim(kw["boundary"], dims, "boundary", _boundary_mode, lambda d: "truncate")
    chunks = kw["chunks"]
    if chunks is not None:
        if not isinstance(chunks, Mapping):
            raise InvalidInputTypeError(
                f"chunks must be a dict {{dim: chunk size}}, got {chunks!r}"
            )
        chunks = per_dim(chunks, dims, "chunks", _chunk_size)
    return {
        "window": half,
        "boundary": boundary,
        "kernel": check_kernel(kw["kernel"], kw["kernel_width"], half),
        "chunks": chunks,
    }


def _trend_options(kw: dict, half: Mapping[str, int]) -> dict[str, Any]:
    orders, interactions = check_trend(kw["trend"], kw["trend_interactions"], half)
    return {"trend": orders, "trend_interactions": interactions}


def build_options(keywords: Mapping[str, Any], source: Input) -> FitOptions:
    """Check every keyword of a fit (``DEFAULTS`` fills the rest) into ``FitOptions``.

    Unknown keywords are refused; statsmodels options (``family``, ``M``, ``fit_kwargs``) go to
    the glm/rlm fitter. ``source`` says what kind of data will be read (see ``Input``).
    """
    kw, fitter_options = _keywords(keywords)
    if source.kind == "stats":
        _refuse_row_keywords(kw)
        kw.update(dims=source.dims, targets=source.targets, weights=source.weights)
        if kw["aggregation"] is None:
            kw["aggregation"] = list(REDUCED_AGGREGATES)
    elif kw["dims"] is None or kw["targets"] is None:
        raise InvalidInputTypeError("fit() needs dims= and targets= when given rows")
    if kw["aggregation"] is None and source.kind != "memory":
        kw["aggregation"] = list(REDUCED_AGGREGATES)  # the median needs the rows in memory
    dims, targets, predictors = check_columns(kw["dims"], kw["targets"], kw["predictors"])
    model = _model(kw, targets, predictors, fitter_options)
    parallel, split_by = parse_partition(kw["partition_strategy"])
    dims = _split_dims(split_by, dims, kw, source)
    n_sigma_cut, max_iter = check_clipping(kw["n_sigma_cut"], kw["max_iter"])
    clip_center, clip_scale = check_clip_options(
        kw["clip_center"], kw["clip_scale"], n_sigma_cut, kw["max_iter"] is not None
    )
    if (clip_center, clip_scale) == ("median", "mad"):
        max_iter = 1  # the cut depends on the window's rows alone: one cut, one fit
    if n_sigma_cut is not None and model.raw_fitter is not None:
        raise ValueError(
            f"n_sigma_cut applies to the closed-form 'ols'/'wls' fits, not to "
            f"{model.raw_fitter.name!r} (fitter='rlm' is the robust statsmodels alternative)"
        )
    if model.raw_fitter is not None and model.raw_fitter.curve is not None and kw["trend"]:
        raise ValueError(
            "trend applies to the linear fitters, not to fitter='curve_fit': the model is all "
            "that is fitted (give it the predictors it needs)"
        )
    windowing = _window_options(kw, dims)
    uniform = is_uniform(windowing["kernel"], windowing["window"])
    if model.raw_fitter is not None and model.raw_fitter.kind == "rlm" and uniform is False:
        raise ValueError(
            "fitter='rlm' takes no weights, so it cannot apply a non-uniform kernel; "
            "use kernel='uniform' or fitter='glm'/'wls'"
        )
    aggregation = check_aggregation(kw["aggregation"], targets)
    read = build_read_spec(
        {**kw, "dims": dims, "targets": targets, "predictors": model.predictors},
        model.formula,
        reads_rows=source.kind != "stats",
    )
    return FitOptions(
        read=read,
        **windowing,
        **_trend_options(kw, windowing["window"]),
        min_entries=check_min_entries(kw["min_entries"]),
        aggregation=aggregation,
        **check_robust_options(kw, aggregation),
        centers=check_choice(kw["centers"], "centers", CENTERS),
        fitter=model.fitter,
        raw_fitter=model.raw_fitter,
        formula=model.formula_attr,
        n_sigma_cut=n_sigma_cut,
        max_iter=max_iter,
        clip_center=clip_center,
        clip_scale=clip_scale,
        parallel=parallel,
        progress=read.progress,
        binning_formulas=check_binning_formulas(kw["binning_formulas"]),
        # the user's units win over those the data recorded (digitize, bin_stats)
        units={
            **check_units(source.units, "the units the data recorded"),
            **check_units(kw["units"]),
        },
    )
