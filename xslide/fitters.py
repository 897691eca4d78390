"""Raw-row fitters: statsmodels GLM and RLM, and user callables, fitted window by window.

These need the rows themselves. Each window's rows are found through the bin index (the
bin-ordered arrays of ``core.BinOrdered``), its design rows are taken from the design matrix
built once over all rows, and the fitter runs on those arrays: no DataFrame is copied or
re-indexed and no formula is parsed per window. Windows are independent, so they run serially,
in a process pool or on a dask cluster with identical results.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context

import numpy as np

from ._optional import require
from .errors import PerformanceWarning
from .rows import WindowIndex
from .solve import FIT_FAILED, OK

# Windows beyond which a raw-row fit warns with its expected duration.
WARN_WINDOWS = 100_000
_SAMPLE_WINDOWS = 20
# Windows beyond which the automatic progress bar appears (on a terminal only).
PROGRESS_WINDOWS = 2_000


@dataclass(frozen=True)
class RawFitter:
    """How one window is fitted from its rows: 'glm', 'rlm' or a user callable."""

    kind: str
    model_options: Mapping = field(default_factory=dict)
    fit_options: Mapping = field(default_factory=dict)
    func: Callable | None = None

    @property
    def name(self) -> str:
        return self.kind if self.func is None else f"callable:{_callable_name(self.func)}"

    def fit(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, terms: Sequence[str]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        """Coefficients, standard errors, their covariance, r² and rmse of one window (x
        includes the constant). A callable gives no covariances: they count as zero."""
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
    coef = np.array([float(out.get(term, np.nan)) for term in terms])
    errors = out.get("stderr", {})
    stderr = np.array([float(errors.get(term, np.nan)) for term in terms])
    return coef, stderr


def make_fitter(fitter: str, fit_formula, options: dict, weights: str | None) -> RawFitter | None:
    """The raw-row fitter asked for (None for the closed-form OLS/WLS path).

    ``options`` holds the statsmodels keyword arguments given to the public function
    (``family=`` for glm, ``M=`` for rlm, ``fit_kwargs=`` for ``.fit()``); used ones are removed.
    """
    if callable(fit_formula):
        if fitter not in ("ols", "wls"):
            raise ValueError(
                f"fitter={fitter!r} cannot be combined with a callable fit_formula: the callable "
                "is the fitter (weights reach it as its third argument)"
            )
        return RawFitter("callable", func=fit_formula)
    if fitter not in ("glm", "rlm"):
        return None
    model_key = "family" if fitter == "glm" else "M"
    other = "M" if fitter == "glm" else "family"
    if other in options:
        raise TypeError(f"{other}= applies to fitter={'rlm' if other == 'M' else 'glm'!r}")
    model_options = {model_key: options.pop(model_key)} if model_key in options else {}
    fit_kwargs = options.pop("fit_kwargs", None) or {}
    if not isinstance(fit_kwargs, Mapping):
        raise TypeError("fit_kwargs must be a dict of keyword arguments for statsmodels' .fit()")
    if fitter == "rlm" and weights is not None:
        raise ValueError(
            "fitter='rlm' takes no row weights (statsmodels RLM has none); "
            "drop weights_column or use fitter='glm' (var_weights) or 'wls'"
        )
    require("statsmodels.api", f"fitter={fitter!r}")
    return RawFitter(fitter, model_options, dict(fit_kwargs))


@dataclass
class _Work:
    """Everything a worker needs to fit windows: shipped once per worker."""

    fitter: RawFitter
    index: WindowIndex
    centers: np.ndarray
    status: np.ndarray  # (m, t) windows/targets to fit are OK
    xs: np.ndarray
    ys: np.ndarray
    ws: np.ndarray | None
    trend_dims: np.ndarray  # dims whose window offsets are design columns (trend=1)
    intercept: bool
    terms: tuple[str, ...]


@dataclass
class _Chunk:
    """Results of a block of windows."""

    ids: np.ndarray
    coef: np.ndarray
    stderr: np.ndarray
    cov: np.ndarray
    r_squared: np.ndarray
    rmse: np.ndarray
    status: np.ndarray
    failures: Counter
    warned: Counter


def _fit_chunk(work: _Work, ids: np.ndarray) -> _Chunk:
    n_targets = work.ys.shape[0]
    p = len(work.terms)
    coef = np.full((ids.size, n_targets, p), np.nan)
    stderr = np.full_like(coef, np.nan)
    cov = np.full((ids.size, n_targets, p, p), np.nan)
    r_squared = np.full((ids.size, n_targets), np.nan)
    rmse = np.full_like(r_squared, np.nan)
    status = work.status[ids].copy()
    failures: Counter = Counter()
    warned: Counter = Counter()
    for k, i in enumerate(ids):
        todo = np.flatnonzero(status[k] == OK)
        if todo.size == 0:
            continue
        positions, kernel, offsets = work.index.positions(int(work.centers[i]))
        for t in todo:
            valid = ~np.isnan(work.ys[t, positions])
            rows = positions[valid]
            x = work.xs[:, rows].T
            if work.trend_dims.size:
                x = np.column_stack([x, offsets[valid][:, work.trend_dims]])
            if work.intercept:
                x = np.column_stack([np.ones(rows.size), x])
            w = None if work.ws is None else work.ws[rows]
            if work.index.weighted:
                w = kernel[valid] if w is None else w * kernel[valid]
            try:
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    fitted = work.fitter.fit(x, work.ys[t, rows], w, work.terms)
                for item in caught:
                    warned[item.category.__name__] += 1
            except Exception as err:  # a failed window is flagged, never fatal
                status[k, t] = FIT_FAILED
                failures[type(err).__name__] += 1
                continue
            coef[k, t], stderr[k, t], cov[k, t], r_squared[k, t], rmse[k, t] = fitted
    return _Chunk(ids, coef, stderr, cov, r_squared, rmse, status, failures, warned)


def _halo_work(work: _Work, ids: np.ndarray) -> _Work:
    """The work of the centers ``ids`` with just the rows their windows read."""
    local, positions = work.index.halo(work.centers[ids])
    return _Work(
        work.fitter, local, work.centers, work.status, work.xs[:, positions],
        work.ys[:, positions], None if work.ws is None else work.ws[positions],
        work.trend_dims, work.intercept, work.terms,
    )  # fmt: skip


_WORKER: _Work | None = None


def _init_worker(work: _Work) -> None:
    global _WORKER
    _WORKER = work


def _fit_chunk_in_worker(ids: np.ndarray) -> _Chunk:
    assert _WORKER is not None
    return _fit_chunk(_WORKER, ids)


@dataclass(frozen=True)
class Parallel:
    """Where raw-row fits run: serially, in ``n_jobs`` processes or on a dask client."""

    n_jobs: int = 1
    client: object | None = None


def parse_partition(partition_strategy) -> tuple[Parallel, list[str]]:
    """Split ``partition_strategy`` into how to run in parallel and the ``split_by`` columns."""
    if partition_strategy is None:
        return Parallel(), []
    if not isinstance(partition_strategy, Mapping):
        if hasattr(partition_strategy, "submit") and hasattr(partition_strategy, "gather"):
            return Parallel(client=partition_strategy), []
        raise TypeError(
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
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs < 1:
        raise ValueError(f"partition_strategy['n_jobs'] must be an integer >= 1, got {n_jobs!r}")
    client = partition_strategy.get("client")
    if client is not None and not (hasattr(client, "submit") and hasattr(client, "gather")):
        raise TypeError("partition_strategy['client'] must be a dask.distributed Client")
    split_by = partition_strategy.get("split_by", [])
    if isinstance(split_by, str):
        split_by = [split_by]
    if not isinstance(split_by, Sequence) or not all(isinstance(c, str) for c in split_by):
        raise TypeError("partition_strategy['split_by'] must be a list of column names")
    return Parallel(n_jobs, client), list(split_by)


def check_progress(progress) -> bool | None:
    if progress is not None and not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None (automatic), got {progress!r}")
    return progress


def _mp_context():
    """Worker processes: forked where the platform allows (no re-import, state shared
    copy-on-write; the workers run no numba threads), spawned elsewhere."""
    import multiprocessing

    if "fork" in multiprocessing.get_all_start_methods():
        return get_context("fork")
    return get_context("spawn")


def _chunks(ids: np.ndarray, n_parts: int) -> list[np.ndarray]:
    return [part for part in np.array_split(ids, max(1, min(n_parts, ids.size))) if part.size]


def fit_windows(
    fitter: RawFitter,
    index: WindowIndex,
    centers: np.ndarray,
    status: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    ws: np.ndarray | None,
    trend_dims: np.ndarray,
    intercept: bool,
    terms: tuple[str, ...],
    parallel: Parallel,
    progress: bool | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, Counter, Counter]:
    """Fit every window and target whose status is OK with ``fitter``.

    Returns coef, stderr (m, t, p), cov (m, t, p, p), r_squared, rmse, status (m, t;
    FIT_FAILED where the fitter raised) and counters of failure reasons and of warnings.
    """
    work = _Work(fitter, index, centers, status, xs, ys, ws, trend_dims, intercept, terms)
    todo = np.flatnonzero((status == OK).any(axis=1))
    m, n_targets, p = centers.size, ys.shape[0], len(terms)
    out = _Chunk(
        np.arange(m),
        np.full((m, n_targets, p), np.nan),
        np.full((m, n_targets, p), np.nan),
        np.full((m, n_targets, p, p), np.nan),
        np.full((m, n_targets), np.nan),
        np.full((m, n_targets), np.nan),
        status.copy(),
        Counter(),
        Counter(),
    )
    if todo.size == 0:
        return _unpack(out)
    done: list[_Chunk] = []
    if todo.size > WARN_WINDOWS:
        started = time.perf_counter()
        done.append(_fit_chunk(work, todo[:_SAMPLE_WINDOWS]))
        per_window = (time.perf_counter() - started) / _SAMPLE_WINDOWS
        workers = parallel.n_jobs if parallel.client is None else "the cluster's"
        warnings.warn(
            f"fitting {todo.size:,} windows with {fitter.name!r} row by row takes about "
            f"{per_window * todo.size:,.0f} s on one core ({workers} workers share it); "
            "the closed-form fitter 'ols'/'wls' is the fast path for linear models",
            PerformanceWarning,
            stacklevel=4,
        )
        todo = todo[_SAMPLE_WINDOWS:]
    show = (
        progress
        if progress is not None
        else (todo.size >= PROGRESS_WINDOWS and sys.stderr.isatty())
    )
    bar = _progress_bar(todo.size, show, fitter.name)
    try:
        if parallel.client is not None:
            # each block of centers travels with its halo rows only, not the whole table
            parts = _chunks(todo, 8 * max(1, len(parallel.client.nthreads())))
            futures = [
                parallel.client.submit(_fit_chunk, _halo_work(work, part), part, pure=False)
                for part in parts
            ]
            for future, part in zip(futures, parts, strict=True):
                done.append(future.result())
                bar.update(part.size)
        elif parallel.n_jobs > 1:
            parts = _chunks(todo, 8 * parallel.n_jobs)
            with ProcessPoolExecutor(
                parallel.n_jobs,
                mp_context=_mp_context(),
                initializer=_init_worker,
                initargs=(work,),
            ) as pool:
                for chunk in pool.map(_fit_chunk_in_worker, parts):
                    done.append(chunk)
                    bar.update(chunk.ids.size)
        else:
            for part in _chunks(todo, max(1, todo.size // 64)):
                done.append(_fit_chunk(work, part))
                bar.update(part.size)
    finally:
        bar.close()
    for chunk in done:
        for name in ("coef", "stderr", "cov", "r_squared", "rmse", "status"):
            getattr(out, name)[chunk.ids] = getattr(chunk, name)
        out.failures.update(chunk.failures)
        out.warned.update(chunk.warned)
    return _unpack(out)


def _unpack(chunk: _Chunk):
    return (
        chunk.coef,
        chunk.stderr,
        chunk.cov,
        chunk.r_squared,
        chunk.rmse,
        chunk.status,
        chunk.failures,
        chunk.warned,
    )


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, show: bool, name: str):
    if not show:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"xslide {name}", unit="window")
