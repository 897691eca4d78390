"""Raw-row fitters: statsmodels GLM and RLM, non-linear models (``curve_fit``) and user
callables, fitted window by window.

These need the rows themselves. Each window's rows are found through the bin index (the
bin-ordered arrays of ``rows.RowAccess``), its design rows are taken from the design matrix
built once over all rows, and the fitter runs on those arrays: no DataFrame is copied or
re-indexed and no formula is parsed per window. Windows are independent, so they run serially,
in a process pool or on a dask cluster with identical results (a curve_fit window warm-starts
from its neighbor's solution within a chain of centers that no block of work splits).
"""

from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ._optional import require
from .curve import CurveModel, SingularFitError, chain_of, make_curve_model
from .errors import FitFailedWarning, InvalidInputTypeError, PerformanceWarning
from .parallel import Parallel, progress_bar, split
from .rows import WindowIndex
from .solve import FIT_FAILED, OK, SINGULAR
from .window import trend_columns

# Windows beyond which a raw-row fit warns with its expected duration.
WARN_WINDOWS = 100_000
# Windows timed for that estimate, spread evenly over all of them (edge windows hold fewer rows
# and robust fits iterate more or less), after a few untimed ones that pay the first calls.
SAMPLE_WINDOWS = 100
WARM_WINDOWS = 3


@dataclass(frozen=True)
class RawFitter:
    """How one window is fitted from its rows: 'glm', 'rlm', 'curve_fit' or a user callable."""

    kind: str
    model_options: Mapping = field(default_factory=dict)
    fit_options: Mapping = field(default_factory=dict)
    func: Callable | None = None
    curve: CurveModel | None = None  # the model of kind 'curve_fit'

    @property
    def name(self) -> str:
        if self.curve is not None:
            return f"curve_fit:{_callable_name(self.curve.func)}"
        return self.kind if self.func is None else f"callable:{_callable_name(self.func)}"

    @property
    def terms(self) -> tuple[str, ...] | None:
        """The terms this fitter defines itself (curve_fit: the model's parameters); None:
        those of the design."""
        return None if self.curve is None else self.curve.params

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        w: np.ndarray | None,
        terms: Sequence[str],
        start: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        """Coefficients, standard errors, their covariance, r² and rmse of one window (x
        includes the constant, except for curve_fit: the predictors only, and ``start`` a
        neighbor's solution). A callable gives no covariances: they count as zero."""
        if self.curve is not None:
            return self.curve.fit(x, y, w, start)
        if self.kind == "callable":
            coef, stderr = _call_user(self.func, x, y, w, terms)
            cov = np.diag(stderr**2)
            fitted, r2_defined = x @ coef, True
        else:
            sm = require("statsmodels.api", f"fitter={self.kind!r}")
            if self.kind == "glm":
                model = sm.GLM(y, x, var_weights=w, **self.model_options)
                family = model.family
                r2_defined = isinstance(family, sm.families.Gaussian) and isinstance(
                    family.link, sm.families.links.Identity
                )
            else:
                model = sm.RLM(y, x, **self.model_options)
                r2_defined = False
            result = model.fit(**self.fit_options)
            coef = np.asarray(result.params, dtype=np.float64)
            stderr = np.asarray(result.bse, dtype=np.float64)
            cov = np.asarray(result.cov_params(), dtype=np.float64)
            fitted = np.asarray(result.fittedvalues, dtype=np.float64)
            if not np.all(np.isfinite(coef)):
                raise FloatingPointError("non-finite coefficients")
        weights = np.ones_like(y) if w is None else w
        sum_w = weights.sum()
        rss = float(np.sum(weights * (y - fitted) ** 2))
        rmse = math.sqrt(rss / sum_w) if sum_w > 0 else math.nan
        r2 = math.nan
        if r2_defined:
            has_constant = bool(np.any(np.all(x == 1.0, axis=0)))
            center = np.sum(weights * y) / sum_w if has_constant else 0.0
            tss = float(np.sum(weights * (y - center) ** 2))
            r2 = 1.0 - rss / tss if tss > 0 else math.nan
        return coef, stderr, cov, r2, rmse


def _callable_name(func: Callable) -> str:
    return getattr(func, "__qualname__", None) or type(func).__name__


def _call_user(
    func: Callable, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, terms: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Run a user fitter and read its mapping ``{term: coef, 'stderr': {term: se}}``."""
    out = func(x, y, w, list(terms))
    if not isinstance(out, Mapping):
        raise TypeError(f"a callable fitter must return a mapping, got {type(out).__name__}")
    unknown = set(out) - set(terms) - {"stderr"}
    if unknown:
        raise KeyError(f"the callable fitter returned unknown terms {sorted(unknown)}")
    # a term left out is NaN (a partial model); one given as NaN/inf means the window failed
    bad = [t for t in terms if t in out and not np.isfinite(float(out[t]))]
    if bad:
        raise FloatingPointError(f"the callable fitter returned non-finite coefficients {bad}")
    coef = np.array([float(out.get(term, np.nan)) for term in terms])
    errors = out.get("stderr", {})
    stderr = np.array([float(errors.get(term, np.nan)) for term in terms])
    with np.errstate(invalid="ignore"):
        if np.any(stderr < 0) or np.any(np.isinf(stderr)):  # NaN: not given
            raise FloatingPointError(
                f"the callable fitter returned invalid standard errors {stderr}"
            )
    return coef, stderr


def make_fitter(
    fitter: str, fit_formula, options: dict, weights: str | None, predictors: Sequence[str] = ()
) -> RawFitter | None:
    """The raw-row fitter asked for (None for the closed-form OLS/WLS path).

    ``options`` holds the fitter's keyword arguments given to the public function
    (``family=`` for glm, ``M=`` for rlm, ``fit_kwargs=`` for ``.fit()``; ``model=``, ``p0=``,
    ``bounds=``, ``jac=`` and ``fit_kwargs=`` for curve_fit); used ones are removed.
    """
    if callable(fit_formula):
        if fitter not in ("ols", "wls"):
            raise ValueError(
                f"fitter={fitter!r} cannot be combined with a callable fit_formula: the callable "
                "is the fitter (weights reach it as its third argument)"
            )
        return RawFitter("callable", func=fit_formula)
    if fitter == "curve_fit":
        if fit_formula is not None:
            raise ValueError(
                "fitter='curve_fit' takes no fit_formula: model= is the model, and "
                "predictor_columns are its first arguments"
            )
        return RawFitter("curve_fit", curve=make_curve_model(options, predictors))
    if fitter not in ("glm", "rlm"):
        return None
    model_key = "family" if fitter == "glm" else "M"
    other = "M" if fitter == "glm" else "family"
    if other in options:
        raise InvalidInputTypeError(
            f"{other}= applies to fitter={'rlm' if other == 'M' else 'glm'!r}"
        )
    model_options = {model_key: options.pop(model_key)} if model_key in options else {}
    fit_kwargs = options.pop("fit_kwargs", None) or {}
    if not isinstance(fit_kwargs, Mapping):
        raise InvalidInputTypeError(
            "fit_kwargs must be a dict of keyword arguments for statsmodels' .fit()"
        )
    if fitter == "rlm" and weights is not None:
        raise ValueError(
            "fitter='rlm' takes no row weights (statsmodels RLM has none); "
            "drop weights_column or use fitter='glm' (var_weights) or 'wls'"
        )
    require("statsmodels.api", f"fitter={fitter!r}")
    return RawFitter(fitter, model_options, dict(fit_kwargs))


@dataclass
class FitWork:
    """What fitting windows needs: the fitter, the windows and their rows in bin order."""

    fitter: RawFitter
    index: WindowIndex
    centers: np.ndarray
    status: np.ndarray  # (m, t) windows/targets to fit are OK
    xs: np.ndarray
    ys: np.ndarray
    ws: np.ndarray | None
    trend: np.ndarray  # (k, 2) dims of each trend column (``window.trend_terms``)
    intercept: bool
    terms: tuple[str, ...]


@dataclass
class RawFitResult:
    """Raw-row fits of m windows: per window and target, and why fits failed or warned."""

    coef: np.ndarray  # (m, t, p)
    stderr: np.ndarray  # (m, t, p)
    cov: np.ndarray  # (m, t, p, p)
    r_squared: np.ndarray  # (m, t)
    rmse: np.ndarray  # (m, t)
    status: np.ndarray  # (m, t): FIT_FAILED where the fitter raised
    failures: Counter = field(default_factory=Counter)  # exception type -> count
    warned: Counter = field(default_factory=Counter)  # warning category -> count
    first_error: str = ""  # the first failure, as 'Type: message' (its first line)

    @classmethod
    def unfitted(cls, status: np.ndarray, p: int) -> RawFitResult:
        """NaN results for windows of the given status, none fitted yet."""
        m, n_targets = status.shape
        return cls(
            np.full((m, n_targets, p), np.nan),
            np.full((m, n_targets, p), np.nan),
            np.full((m, n_targets, p, p), np.nan),
            np.full((m, n_targets), np.nan),
            np.full((m, n_targets), np.nan),
            status.copy(),
        )

    def put(self, ids: np.ndarray, part: RawFitResult) -> None:
        """Place the results of the windows ``ids`` and add up their counters."""
        for name in ("coef", "stderr", "cov", "r_squared", "rmse", "status"):
            getattr(self, name)[ids] = getattr(part, name)
        self.failures.update(part.failures)
        self.warned.update(part.warned)
        self.first_error = self.first_error or part.first_error


def _window_design(work: FitWork, positions, offsets, valid) -> np.ndarray:
    """The design matrix of a window's valid rows: constant, columns, trend columns (the
    products of the bin offsets of ``window.trend_terms``); a curve_fit model takes the
    predictor columns alone."""
    rows = positions[valid]
    x = work.xs[:, rows].T
    if work.fitter.curve is not None:
        return x
    if work.trend.shape[0]:
        x = np.column_stack([x, trend_columns(offsets[valid], work.trend)])
    if work.intercept:
        x = np.column_stack([np.ones(rows.size), x])
    return x


class _WarmStarts:
    """The last solution of each target, to start the next center's curve_fit search from:
    only where that center is the neighbor at bin + 1 in the same chain (``curve.chain_of``)."""

    def __init__(self, work: FitWork) -> None:
        curve = work.fitter.curve
        self.enabled = curve is not None and curve.warm_starts
        self.n_last = work.index.window.shape[-1]
        self.last: dict[int, tuple[int, np.ndarray]] = {}

    def start(self, center: int, t: int) -> np.ndarray | None:
        previous = self.last.get(t) if self.enabled else None
        if previous is None or previous[0] != center - 1:
            return None
        same = chain_of(np.array([center - 1, center]), self.n_last)
        return previous[1] if same[0] == same[1] else None

    def keep(self, center: int, t: int, coef: np.ndarray) -> None:
        if self.enabled:
            self.last[t] = (center, coef)


def _fit_block(work: FitWork, ids: np.ndarray) -> RawFitResult:
    """Fit the windows ``ids`` (positions into ``work.centers``); a failure flags its window."""
    out = RawFitResult.unfitted(work.status[ids], len(work.terms))
    warm = _WarmStarts(work)
    for k, i in enumerate(ids):
        todo = np.flatnonzero(out.status[k] == OK)
        if todo.size == 0:
            continue
        center = int(work.centers[i])
        positions, kernel, offsets = work.index.positions(center)
        for t in todo:
            valid = ~np.isnan(work.ys[t, positions])
            rows = positions[valid]
            w = None if work.ws is None else work.ws[rows]
            if work.index.weighted:
                w = kernel[valid] if w is None else w * kernel[valid]
            x = _window_design(work, positions, offsets, valid)
            fitted = _fit_one(work, out, (k, t), (x, work.ys[t, rows], w), warm.start(center, t))
            if fitted is not None:
                warm.keep(center, t, fitted[0])
                (
                    out.coef[k, t],
                    out.stderr[k, t],
                    out.cov[k, t],
                    out.r_squared[k, t],
                    out.rmse[k, t],
                ) = fitted
    return out


def _fit_one(work: FitWork, out: RawFitResult, at: tuple[int, int], data, start):
    """One window and target: the fit, or None with its status and failure recorded."""
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fitted = work.fitter.fit(*data, work.terms, start)
        for item in caught:
            out.warned[item.category.__name__] += 1
    except SingularFitError:  # the parameters are not determined: as a singular linear fit
        out.status[at] = SINGULAR
        return None
    except Exception as err:  # a failed window is flagged, never fatal
        out.status[at] = FIT_FAILED
        out.failures[type(err).__name__] += 1
        if not out.first_error:
            lines = str(err).strip().splitlines() or [""]
            out.first_error = f"{type(err).__name__}: {lines[0]}"
        return None
    return fitted


def _halo_work(work: FitWork, ids: np.ndarray) -> FitWork:
    """The work of the centers ``ids`` with just the rows their windows read."""
    local, positions = work.index.halo(work.centers[ids])
    return FitWork(
        work.fitter,
        local,
        work.centers,
        work.status,
        work.xs[:, positions],
        work.ys[:, positions],
        None if work.ws is None else work.ws[positions],
        work.trend,
        work.intercept,
        work.terms,
    )


def timed_sample(work: FitWork, todo: np.ndarray) -> tuple[np.ndarray, RawFitResult, float]:
    """Fit a sample of the windows ``todo`` and time it: the windows fitted, their results and
    the seconds per window.

    The first windows are fitted untimed: they pay for what is done once (compiling the window
    lookup, statsmodels' first calls), which would otherwise be counted for every window. The
    timed ones are spread evenly over ``todo``.
    """
    n_picks = WARM_WINDOWS + SAMPLE_WINDOWS
    picks = np.unique(np.linspace(0, todo.size - 1, n_picks).round().astype(np.int64))
    n_warm = min(WARM_WINDOWS, picks.size - 1)
    warm, timed = todo[picks[:n_warm]], todo[picks[n_warm:]]
    done = RawFitResult.unfitted(work.status[todo[picks]], len(work.terms))
    done.put(np.arange(n_warm), _fit_block(work, warm))
    started = time.perf_counter()
    part = _fit_block(work, timed)
    seconds = (time.perf_counter() - started) / timed.size
    done.put(np.arange(n_warm, picks.size), part)
    return todo[picks], done, seconds


def _warn_duration(work: FitWork, todo: np.ndarray, parallel: Parallel):
    """Fit a sample of the windows and warn how long all of them will take; return the
    windows fitted and their results."""
    sample, done, per_window = timed_sample(work, todo)
    total = per_window * todo.size
    workers = parallel.workers
    shared = f", about {total / workers:,.0f} s on {workers} workers" if workers > 1 else ""
    warnings.warn(
        f"fitting {todo.size:,} windows with {work.fitter.name!r} row by row takes about "
        f"{total:,.0f} s on one core{shared}; the closed-form fitter 'ols'/'wls' is the fast "
        "path for linear models",
        PerformanceWarning,
        stacklevel=5,
    )
    return sample, done


def _warn_failures(work: FitWork, out: RawFitResult) -> None:
    """Failed windows are flagged, and said once: how many, why, and the first message."""
    n_failed = sum(out.failures.values())
    if not n_failed:
        return
    n_fits = int((work.status == OK).sum())
    reasons = ", ".join(f"{name} x{count:,}" for name, count in out.failures.most_common())
    warnings.warn(
        f"{n_failed:,} of {n_fits:,} window fits with {work.fitter.name!r} failed ({reasons}) "
        f"and are flagged fit_failed; the first: {out.first_error}",
        FitFailedWarning,
        stacklevel=7,  # the user's call of fit / make_sliding_window_fit
    )


def fit_windows(work: FitWork, parallel: Parallel, progress: bool | None) -> RawFitResult:
    """Fit every window and target whose status is OK with ``work.fitter`` (curve_fit also
    those singular for the linear design: its model decides what the rows determine)."""
    if work.fitter.curve is not None:
        work = replace(work, status=np.where(work.status == SINGULAR, OK, work.status))
    out = RawFitResult.unfitted(work.status, len(work.terms))
    todo = np.flatnonzero((work.status == OK).any(axis=1))
    if todo.size > WARN_WINDOWS:
        sample, done = _warn_duration(work, todo, parallel)
        out.put(sample, done)
        todo = np.setdiff1d(todo, sample, assume_unique=True)
    if todo.size:
        _fit_all(work, todo, out, parallel, progress)
    _warn_failures(work, out)
    return out


def _fit_all(work: FitWork, todo, out: RawFitResult, parallel: Parallel, progress) -> None:
    """Fit the windows ``todo`` in blocks, serially or in parallel, with a progress bar."""
    serial = parallel.client is None and parallel.n_jobs == 1
    n_blocks = max(1, todo.size // 64) if serial else 8 * parallel.workers
    if work.fitter.curve is not None:  # warm-start chains stay whole
        blocks = split_at(todo, chain_of(work.centers[todo], work.index.window.shape[-1]), n_blocks)
    else:
        blocks = split(todo, n_blocks)
    with progress_bar(todo.size, progress, f"xslide {work.fitter.name}", " windows") as bar:
        results = parallel.map(_fit_block, work, blocks, ship=_halo_work, bar=bar)
        for block, part in zip(blocks, results, strict=True):
            out.put(block, part)


def split_at(ids: np.ndarray, groups: np.ndarray, n_parts: int) -> list[np.ndarray]:
    """``ids`` in at most ``n_parts`` consecutive blocks of about equal size that never split
    a run of equal ``groups``."""
    starts = np.flatnonzero(np.diff(groups)) + 1
    if starts.size == 0 or n_parts <= 1:
        return [ids] if ids.size else []
    wanted = np.arange(1, n_parts) * (ids.size / n_parts)
    cuts = np.unique(starts[np.minimum(np.searchsorted(starts, wanted), starts.size - 1)])
    return [part for part in np.split(ids, cuts) if part.size]
