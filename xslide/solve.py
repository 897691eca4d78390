"""Closed-form weighted least squares per window from its sufficient statistics.

Everything is vectorised over the windows (centers x targets); only the p x p algebra loops, p
being the (small) number of slopes. The slopes solve the centered normal equations
Sxx β = Sxy with a Cholesky factorisation of the correlation-scaled Sxx, whose pivots give the
rank check: a window whose predictors are (numerically) collinear or constant is singular and
gets NaN, never garbage.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import _numba
from ._numba import njit, num_threads, run_chunks
from .stats import COUNT, COUNT_POSITIVE, FIRST_MOMENT, SUM_W2, moment_index, rereference

# Status codes per window and target (also the CF flag values of ``quality_flag``).
OK, EMPTY, INSUFFICIENT, SINGULAR, FIT_FAILED, NOT_A_CENTER = 0, 1, 2, 3, 4, 5
FLAG_MEANINGS = (
    "ok",
    "empty_window",
    "insufficient_stats",
    "singular",
    "fit_failed",
    "not_a_center",
)

# A centered sum of squares below this fraction of its uncentered value is rounding noise.
_ZERO_SPREAD = 1e-13
# Residual sum of squares below this fraction of the total is an exact fit.
_EXACT_FIT = 1e-13
# Smallest Cholesky pivot of the correlation matrix accepted: 1 - R² of a predictor on the others.
_MIN_PIVOT = 1e-10
# Relative rounding error of an accumulated sum (a generous multiple of the float64 epsilon).
_SUM_ROUNDING = 1e-14


@dataclass
class Solution:
    """Per window and target: aggregates and fit results (arrays of shape (m, t) or (m, t, p))."""

    entries: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    stderr: np.ndarray
    r_squared: np.ndarray
    rmse: np.ndarray
    status: np.ndarray
    cov: np.ndarray  # (m, t, p, p) covariance of the coefficients

    def take(self, ids: np.ndarray) -> Solution:
        """The solutions of the windows ``ids``."""
        return Solution(**{name: value[ids] for name, value in self._fields()})

    @classmethod
    def concat(cls, parts: Sequence[Solution]) -> Solution:
        """The solutions of consecutive blocks of windows as one."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in names})

    def updated(
        self, ids: np.ndarray, other: Solution, names: Sequence[str] | None = None
    ) -> Solution:
        """A copy whose windows ``ids`` take ``other``'s values (of the fields ``names``)."""
        fields = dict(self._fields())
        for name in names or fields:
            fields[name] = fields[name].copy()
            fields[name][ids] = getattr(other, name)
        return Solution(**fields)

    def pack(self) -> np.ndarray:
        """One float array (m, t, fields): the scalars, coef, stderr and cov (see ``unpack``)."""
        m, t, p = self.coef.shape
        scalars = [getattr(self, name).astype(np.float64)[..., None] for name in _SCALARS]
        return np.concatenate(
            [*scalars, self.coef, self.stderr, self.cov.reshape(m, t, p * p)], axis=-1
        )

    @classmethod
    def unpack(cls, packed: np.ndarray) -> Solution:
        """The Solution ``pack`` made ``packed`` from."""
        k = len(_SCALARS)
        p = round(float(np.sqrt(1 + packed.shape[-1] - k))) - 1  # width = k + 2p + p²
        fields = {name: packed[..., i] for i, name in enumerate(_SCALARS)}
        fields["entries"] = np.rint(fields["entries"]).astype(np.int64)
        fields["status"] = np.rint(fields["status"]).astype(np.int8)
        return cls(
            **fields,
            coef=packed[..., k : k + p],
            stderr=packed[..., k + p : k + 2 * p],
            cov=packed[..., k + 2 * p :].reshape(*packed.shape[:2], p, p),
        )

    def _fields(self) -> list[tuple[str, np.ndarray]]:
        return [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]


_SCALARS = ("entries", "mean", "std", "r_squared", "rmse", "status")


def solve(
    stats: np.ndarray,
    n_columns: int,
    x_ref: np.ndarray,
    y_ref: np.ndarray,
    min_entries: int,
    intercept: bool = True,
) -> Solution:
    """Fit ``target ~ terms`` in every window from its windowed statistics.

    Parameters
    ----------
    stats : (m, t, n_stats) windowed packed statistics (see ``stats.py``).
    n_columns : the constant plus the q design columns summed in ``stats``.
    x_ref : (q,) references of the design columns; y_ref : (t,) references of the targets.
    min_entries : windows with fewer valid rows are not fitted (status INSUFFICIENT).
    intercept : whether the constant is a model term; without it the model goes through the
        origin and r² is uncentered, as in statsmodels.
    """
    if _numba.numba_available():
        return _solve_compiled(stats, n_columns, x_ref, y_ref, min_entries, intercept)
    q = n_columns - 1
    n_terms = q + int(intercept)
    idx = moment_index(n_columns)
    with np.errstate(divide="ignore", invalid="ignore"):
        target = _target_moments(stats, idx, n_columns, y_ref)
        if intercept:
            # Centered scatter of the design columns and their cross products with the target.
            sx = stats[..., idx[0, 1 : q + 1]]
            xbar = sx / target.sum_w[..., None]
            sxx = _matrix(stats, idx, q) - sx[..., :, None] * xbar[..., None, :]
            sxy = _cross(stats, idx, q) - sx * target.mean_shifted[..., None]
            tss = target.syy
        else:
            # Through the origin: the sums of the unshifted columns.
            shift = np.concatenate([[0.0], -x_ref, [0.0]])
            shift = np.broadcast_to(shift, (stats.shape[1], n_columns + 1)).copy()
            shift[:, -1] = -y_ref
            stats = rereference(stats, n_columns, shift)
            sxx, sxy = _matrix(stats, idx, q), _cross(stats, idx, q)
            tss = stats[..., idx[n_columns, n_columns]]
        diagonal = np.arange(1, q + 1)
        raw_diag = stats[..., idx[diagonal, diagonal]]
        # fewer informative rows than terms can never determine the fit, whatever rounding says
        usable = target.informative >= n_terms
        beta, inv_sxx, singular = _normal_solve(sxx, sxy, raw_diag, usable)
        rss = tss - np.sum(beta * sxy, axis=-1)
        # As many informative rows as terms fit exactly; otherwise rss comes from a difference
        # of sums, and below this fraction of tss it is rounding noise.
        exact = target.informative <= n_terms
        rss = np.where(exact | (rss <= _EXACT_FIT * tss), 0.0, rss)
        count = target.count
        sigma2 = np.where(count <= n_terms, np.nan, rss / (count - n_terms))
        cov_beta = sigma2[..., None, None] * inv_sxx
        se_beta = np.sqrt(np.diagonal(cov_beta, axis1=-2, axis2=-1))
        if intercept:
            coef, stderr, cov = _with_intercept(
                target, beta, cov_beta, se_beta, sigma2, xbar + x_ref
            )
        else:
            coef, stderr, cov = beta, se_beta, cov_beta
        r_squared = np.where(tss > 0, 1.0 - rss / tss, np.nan)
        rmse = np.sqrt(rss / target.sum_w)
    solution = Solution(
        count,
        target.mean,
        target.std,
        coef,
        stderr,
        r_squared,
        rmse,
        # any non-finite sum makes the total non-finite (one reduction, no mask of every sum)
        _status(count, singular, min_entries, ~np.isfinite(stats.sum(axis=-1))),
        cov,
    )
    return _blank_failed(solution)


class _TargetMoments(NamedTuple):
    """Per window and target: counts, weights and the target's mean, spread and std."""

    count: np.ndarray
    informative: np.ndarray  # rows of weight > 0
    sum_w: np.ndarray
    mean_shifted: np.ndarray  # mean of y - y_ref
    syy: np.ndarray  # centered sum of squares of y
    std: np.ndarray
    mean: np.ndarray


def _target_moments(stats, idx, ny: int, y_ref) -> _TargetMoments:
    """The target's aggregates of every window (``ny``: the target's place in z)."""
    count = np.rint(stats[..., COUNT]).astype(np.int64)
    # rows that carry weight: a zero-weight row adds no information to any estimate
    informative = np.rint(stats[..., COUNT_POSITIVE]).astype(np.int64)
    sum_w = stats[..., idx[0, 0]]
    sum_w2 = stats[..., SUM_W2]
    sum_wy = stats[..., idx[0, ny]]
    sum_wyy = stats[..., idx[ny, ny]]
    has_weight = sum_w > 0
    mean_shifted = np.where(has_weight, sum_wy / sum_w, np.nan)
    syy = sum_wyy - sum_wy * mean_shifted
    syy = np.where((syy <= _ZERO_SPREAD * sum_wyy) | (informative < 2), 0.0, syy)
    dof_w = sum_w - sum_w2 / sum_w
    std = np.where(informative >= 2, np.sqrt(syy / dof_w), np.nan)
    mean = mean_shifted + y_ref
    return _TargetMoments(count, informative, sum_w, mean_shifted, syy, std, mean)


def _with_intercept(target: _TargetMoments, beta, cov_beta, se_beta, sigma2, xmean):
    """Coefficients, standard errors and covariance with the intercept = mean - x̄·β first."""
    const = target.mean - np.sum(xmean * beta, axis=-1)
    var_const = sigma2 / target.sum_w + np.einsum("...a,...ab,...b->...", xmean, cov_beta, xmean)
    coef = np.concatenate([const[..., None], beta], axis=-1)
    stderr = np.concatenate([np.sqrt(var_const)[..., None], se_beta], axis=-1)
    # Cov(intercept, β) = -Cov(β) x̄
    cross = -np.einsum("...ab,...b->...a", cov_beta, xmean)
    m, n_targets, q = beta.shape
    cov = np.empty((m, n_targets, q + 1, q + 1))
    cov[..., 0, 0] = var_const
    cov[..., 0, 1:] = cross
    cov[..., 1:, 0] = cross
    cov[..., 1:, 1:] = cov_beta
    return coef, stderr, cov


def _status(count, singular, min_entries: int, overflowed) -> np.ndarray:
    """Per window and target: empty, too few rows, singular, or sums that overflowed (their
    results would be garbage: failed, NaN), else OK."""
    status = np.full(count.shape, OK, dtype=np.int8)
    status[singular] = SINGULAR
    status[overflowed] = FIT_FAILED
    status[count < min_entries] = INSUFFICIENT
    status[count == 0] = EMPTY
    return status


def _blank_failed(solution: Solution) -> Solution:
    """NaN fit results where the fit failed, NaN mean where the window is empty (in place)."""
    failed = solution.status != OK
    for name in ("coef", "stderr", "cov", "r_squared", "rmse"):
        getattr(solution, name)[failed] = np.nan
    solution.mean[solution.entries == 0] = np.nan
    overflowed = solution.status == FIT_FAILED
    solution.mean[overflowed] = np.nan
    solution.std[overflowed] = np.nan
    return solution


def _matrix(stats: np.ndarray, idx: np.ndarray, q: int) -> np.ndarray:
    """(m, t, q, q) Σw x xᵀ of the design columns from packed statistics."""
    return stats[..., idx[1 : q + 1, 1 : q + 1]]


def _cross(stats: np.ndarray, idx: np.ndarray, q: int) -> np.ndarray:
    """(m, t, q) Σw x y of the design columns from packed statistics."""
    return stats[..., idx[1 : q + 1, q + 1]]


def _normal_solve(
    sxx: np.ndarray, sxy: np.ndarray, raw_diag: np.ndarray, usable: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Solve Sxx β = Sxy per window with a rank check; returns β, Sxx⁻¹ and a singular mask.

    ``raw_diag`` are the sums of squares Sxx's diagonal was computed from (its rounding scale).
    """
    q = sxx.shape[-1]
    diag = np.diagonal(sxx, axis1=-2, axis2=-1)
    singular = ~usable | np.any(diag <= _ZERO_SPREAD * raw_diag, axis=-1)
    scale = np.sqrt(np.where(singular[..., None], 1.0, diag))
    outer = scale[..., :, None] * scale[..., None, :]
    corr = sxx / outer
    # A centered sum of squares computed from uncentered sums is only known to
    # _SUM_ROUNDING * raw / centered (relative): when the window's mean is far from the
    # reference, the correlations are uncertain and a pivot below that is no evidence of rank.
    uncertainty = np.where(singular[..., None], 0.0, _SUM_ROUNDING * raw_diag / scale**2)
    min_pivot = np.maximum(_MIN_PIVOT, 10.0 * uncertainty.max(axis=-1, initial=0.0))
    chol, ok = _cholesky(np.where(singular[..., None, None], np.eye(q), corr), min_pivot)
    singular |= ~ok
    beta = _cho_solve(chol, sxy / scale) / scale
    _, inv_corr = _cho_inverse(chol)
    inv = inv_corr / outer
    # one step of iterative refinement: the factor of an ill-conditioned Sxx loses digits that
    # the residual of the normal equations gives back (NIST Longley: LRE 11.97 -> 12.2); the
    # correction is small, so Sxx⁻¹ (needed for the covariance anyway) solves it well enough
    residual = sxy - np.sum(sxx * beta[..., None, :], axis=-1)
    beta = beta + np.sum(inv * residual[..., None, :], axis=-1)
    return beta, inv, singular


def _cholesky(a: np.ndarray, min_pivot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched lower Cholesky factor of (..., q, q) correlation matrices and a full-rank mask."""
    q = a.shape[-1]
    low = np.zeros_like(a)
    ok = np.ones(a.shape[:-2], dtype=bool)
    for j in range(q):
        pivot = a[..., j, j] - np.sum(low[..., j, :j] ** 2, axis=-1)
        ok &= pivot > min_pivot
        root = np.sqrt(np.where(ok, pivot, 1.0))
        low[..., j, j] = root
        for i in range(j + 1, q):
            low[..., i, j] = (
                a[..., i, j] - np.sum(low[..., i, :j] * low[..., j, :j], axis=-1)
            ) / root
    return low, ok


def _cho_solve(low: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve L Lᵀ x = rhs for batched factors."""
    q = low.shape[-1]
    z = np.empty_like(rhs)
    for i in range(q):
        z[..., i] = (rhs[..., i] - np.sum(low[..., i, :i] * z[..., :i], axis=-1)) / low[..., i, i]
    x = np.empty_like(rhs)
    for i in reversed(range(q)):
        x[..., i] = (z[..., i] - np.sum(low[..., i + 1 :, i] * x[..., i + 1 :], axis=-1)) / low[
            ..., i, i
        ]
    return x


def _cho_inverse(low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Diagonal and full inverse of L Lᵀ for batched factors (q is small)."""
    q = low.shape[-1]
    inv = np.empty_like(low)
    for j in range(q):
        e = np.zeros(low.shape[:-1])
        e[..., j] = 1.0
        inv[..., :, j] = _cho_solve(low, e)
    return np.diagonal(inv, axis1=-2, axis2=-1), inv


# Centers solved at once: bounds the solve's temporaries (a few kB per center) on large grids.
SOLVE_BLOCK = 1 << 16


def solve_in_blocks(stats: np.ndarray, *args) -> Solution:
    """``solve`` block by block of centers: the same results, with bounded memory. The
    compiled solve makes no temporaries of the windows: it solves them all at once (blocks
    would only cost a copy of every result)."""
    if stats.shape[0] <= SOLVE_BLOCK or _numba.numba_available():
        return solve(stats, *args)
    parts = [solve(stats[k : k + SOLVE_BLOCK], *args) for k in range(0, len(stats), SOLVE_BLOCK)]
    return Solution.concat(parts)


def solve_local(stats: np.ndarray, n_columns: int, n_trend: int, *args) -> Solution:
    """``solve_in_blocks`` of a local model whose last ``n_trend`` design columns are trend
    terms (``window.trend_terms``; ``args``: x_ref, y_ref, min_entries, intercept).

    A trend column that is zero on every row of a window (the window has no extent along its
    dims: a shrunk window at the grid's edge) cannot be estimated, and would make the window
    singular: that window is fitted without the term, which is fixed at 0 (coefficient,
    standard error and covariance 0), the fit of a local polynomial of lower order there, as
    a least-squares solver's minimum-norm solution would give it.
    """
    out = solve_in_blocks(stats, n_columns, *args)
    if n_trend == 0 or stats.shape[0] == 0:
        return out
    idx = moment_index(n_columns)
    first = n_columns - n_trend  # z position of the first trend column
    diagonal = stats[..., [idx[first + j, first + j] for j in range(n_trend)]]
    flat = (diagonal == 0.0) & (stats[..., COUNT] > 0.0)[..., None]  # (m, t, n_trend)
    if not flat.any():
        return out
    # each window's pattern of flat columns as one integer (bit j: trend column j)
    codes = (flat * (1 << np.arange(n_trend, dtype=np.int64))).sum(axis=-1)
    for t in range(stats.shape[1]):
        for code in np.unique(codes[:, t]):
            if code:
                ids = np.flatnonzero(codes[:, t] == code)
                dropped = (code >> np.arange(n_trend)) & 1 == 1
                _refit_without(out, stats, ids, t, first, dropped, args)
    return out


def _refit_without(
    out: Solution, stats: np.ndarray, ids: np.ndarray, t: int, first: int, dropped, args
) -> None:
    """Solve windows ``ids`` of target t without the ``dropped`` trend columns (z positions
    first + j) and write their results into ``out``, those terms fixed at 0."""
    x_ref, y_ref, min_entries, intercept = args
    n_columns = first + dropped.size
    kept = [*range(first), *(first + np.flatnonzero(~dropped))]  # z columns, y last
    size = len(kept) + 1
    idx, small = moment_index(n_columns), moment_index(len(kept))
    z = [*kept, n_columns]
    slots = np.empty(FIRST_MOMENT + size * (size + 1) // 2, dtype=np.int64)
    slots[:FIRST_MOMENT] = np.arange(FIRST_MOMENT)
    for a in range(size):
        for b in range(a, size):
            slots[small[a, b]] = idx[z[a], z[b]]
    reduced = stats[ids, t : t + 1][..., slots]
    part = solve_in_blocks(
        reduced, len(kept), np.asarray(x_ref)[np.asarray(kept[1:], dtype=np.int64) - 1],
        np.asarray(y_ref)[t : t + 1], min_entries, intercept,
    )  # fmt: skip
    lead = int(intercept)
    terms = [*range(lead), *(lead + np.asarray(kept[1:], dtype=np.int64) - 1)]
    for name in _SCALARS:
        getattr(out, name)[ids, t] = getattr(part, name)[:, 0]
    for name in ("coef", "stderr"):
        values = np.zeros((ids.size, getattr(out, name).shape[-1]))
        values[:, terms] = getattr(part, name)[:, 0]
        getattr(out, name)[ids, t] = values
    cov = np.zeros((ids.size, *out.cov.shape[-2:]))
    cov[:, np.ix_(terms, terms)[0], np.ix_(terms, terms)[1]] = part.cov[:, 0]
    failed = part.status[:, 0] != OK
    for name in ("coef", "stderr"):
        getattr(out, name)[ids[failed], t] = np.nan
    cov[failed] = np.nan
    out.cov[ids, t] = cov


# ---- the same solve, compiled: one loop over windows, no temporaries of the whole grid ----


def _solve_compiled(
    stats: np.ndarray,
    n_columns: int,
    x_ref: np.ndarray,
    y_ref: np.ndarray,
    min_entries: int,
    intercept: bool,
) -> Solution:
    """``solve`` by a parallel numba loop over the windows (same rules, same results)."""
    m, n_targets, _ = stats.shape
    q = n_columns - 1
    p = q + int(intercept)
    stats = np.ascontiguousarray(stats, dtype=np.float64)
    fit_stats = stats
    if not intercept:  # through the origin: the sums of the unshifted columns
        shift = np.concatenate([[0.0], -np.asarray(x_ref, dtype=np.float64), [0.0]])
        shift = np.broadcast_to(shift, (n_targets, n_columns + 1)).copy()
        shift[:, -1] = -np.asarray(y_ref)
        fit_stats = rereference(stats, n_columns, shift)
    out = Solution(
        np.empty((m, n_targets), dtype=np.int64),
        np.empty((m, n_targets)),
        np.empty((m, n_targets)),
        np.empty((m, n_targets, p)),
        np.empty((m, n_targets, p)),
        np.empty((m, n_targets)),
        np.empty((m, n_targets)),
        np.empty((m, n_targets), dtype=np.int8),
        np.empty((m, n_targets, p, p)),
    )
    if m:
        refs = (
            np.ascontiguousarray(x_ref, dtype=np.float64),
            np.ascontiguousarray(y_ref, dtype=np.float64),
        )
        n_chunks = max(1, min(4 * num_threads(), m))
        run_chunks(
            _solve_chunk,
            n_chunks,
            stats,
            fit_stats,
            moment_index(n_columns).astype(np.int64),
            refs,
            (intercept, min_entries),
            (out.entries, out.mean, out.std, out.r_squared, out.rmse, out.status),
            (out.coef, out.stderr, out.cov),
        )
    return out


@njit(cache=True, error_model="numpy", inline="always")
def _cholesky_one(low, min_pivot):
    """Lower Cholesky factor of one correlation matrix, in place (its lower triangle; the
    upper one is left as it is); False when a pivot is not above ``min_pivot``."""
    q = low.shape[0]
    ok = True
    for j in range(q):
        acc = 0.0
        for k in range(j):
            acc += low[j, k] ** 2
        pivot = low[j, j] - acc
        ok = ok and pivot > min_pivot
        root = np.sqrt(pivot) if ok else 1.0
        low[j, j] = root
        for i in range(j + 1, q):
            acc = 0.0
            for k in range(j):
                acc += low[i, k] * low[j, k]
            low[i, j] = (low[i, j] - acc) / root
    return ok


@njit(cache=True, error_model="numpy", inline="always")
def _cho_solve_one(low, x):
    """Solve L Lᵀ x = rhs in place (``x`` holds rhs) for the lower triangle of ``low``."""
    q = low.shape[0]
    for i in range(q):
        acc = 0.0
        for k in range(i):
            acc += low[i, k] * x[k]
        x[i] = (x[i] - acc) / low[i, i]
    for i in range(q - 1, -1, -1):
        acc = 0.0
        for k in range(i + 1, q):
            acc += low[k, i] * x[k]
        x[i] = (x[i] - acc) / low[i, i]


@njit(cache=True, error_model="numpy", inline="always")
def _min_pivot(raw_diag, scale, singular):
    """``_normal_solve``'s smallest accepted pivot: 1e-10, or more where the correlations are
    uncertain (NaN propagates, as np.max and np.maximum do)."""
    worst = 0.0
    if not singular:
        for a in range(scale.shape[0]):
            u = _SUM_ROUNDING * raw_diag[a] / scale[a] ** 2
            if worst == worst and not u <= worst:
                worst = u
    worst *= 10.0
    return worst if worst > _MIN_PIVOT or worst != worst else _MIN_PIVOT


@njit(cache=True, error_model="numpy", inline="always")
def _factor(sxx, raw_diag, usable, scale, low, inv, step):
    """One window's rank check and factor (see ``_normal_solve``): the scales, the Cholesky
    factor of the correlation matrix (built in ``low``) and Sxx⁻¹; returns singular."""
    q = sxx.shape[0]
    singular = not usable
    for a in range(q):
        singular = singular or sxx[a, a] <= _ZERO_SPREAD * raw_diag[a]
    for a in range(q):
        scale[a] = np.sqrt(1.0 if singular else sxx[a, a])
    for a in range(q):
        for b in range(q):
            low[a, b] = (1.0 if a == b else 0.0) if singular else sxx[a, b] / (scale[a] * scale[b])
    singular = not _cholesky_one(low, _min_pivot(raw_diag, scale, singular)) or singular
    for j in range(q):
        for a in range(q):
            step[a] = 1.0 if a == j else 0.0
        _cho_solve_one(low, step)
        for a in range(q):
            inv[a, j] = step[a] / (scale[a] * scale[j])
    return singular


@njit(cache=True, error_model="numpy", inline="always")
def _slopes(sxx, sxy, scale, low, beta, step, inv):
    """β of one window from its factor, with one step of iterative refinement solved with
    Sxx⁻¹ ``inv`` (see ``_normal_solve``: no second pair of triangular solves, whose
    divisions cost the solve 15%); ``step`` is work space."""
    q = sxx.shape[0]
    for a in range(q):
        beta[a] = sxy[a] / scale[a]
    _cho_solve_one(low, beta)
    for a in range(q):
        beta[a] /= scale[a]
    for a in range(q):
        acc = 0.0
        for b in range(q):
            acc += sxx[a, b] * beta[b]
        step[a] = sxy[a] - acc
    for a in range(q):
        acc = 0.0
        for b in range(q):
            acc += inv[a, b] * step[b]
        beta[a] += acc


@njit(cache=True, error_model="numpy", inline="always")
def _same_design(fit_stats, i, t, ny):
    """Whether target t's design moments equal target t - 1's in window i (both targets valid
    on the same rows): its factor is then the same, bit for bit, and is reused. (Elements
    are read, not rows: a view per window costs numba two atomic reference counts.)"""
    if fit_stats[i, t - 1, COUNT_POSITIVE] != fit_stats[i, t, COUNT_POSITIVE]:
        return False
    k = FIRST_MOMENT
    for a in range(ny):
        for _ in range(a, ny):
            if fit_stats[i, t - 1, k] != fit_stats[i, t, k]:
                return False
            k += 1
        k += 1  # the moment with the target
    return True


@njit(cache=True, error_model="numpy", inline="always")
def _blank(coef, stderr, cov, i, t):
    """NaN fit results of window i, target t."""
    p = coef.shape[2]
    for a in range(p):
        coef[i, t, a] = np.nan
        stderr[i, t, a] = np.nan
        for b in range(p):
            cov[i, t, a, b] = np.nan


@njit(cache=True, error_model="numpy", inline="always")
def _status_one(count, singular, min_entries, overflowed):
    """``_status`` of one window and target."""
    if count == 0:
        return EMPTY
    if count < min_entries:
        return INSUFFICIENT
    if overflowed:
        return FIT_FAILED
    return SINGULAR if singular else OK


@njit(cache=True, error_model="numpy", nogil=True)
def _solve_chunk(c, n_chunks, stats, fit_stats, idx, refs, setup, scalars, terms):  # noqa: C901, PLR0913  (numba kernel)
    """The closed-form solve of chunk c of the windows (each window solved by one thread: the
    same result for any thread count)."""
    m = stats.shape[0]
    lo, hi = c * m // n_chunks, (c + 1) * m // n_chunks
    x_ref, y_ref = refs
    intercept, min_entries = setup
    entries, mean_out, std_out, r2_out, rmse_out, status_out = scalars
    coef_out, stderr_out, cov_out = terms
    _, n_targets, n_values = stats.shape
    ny = idx.shape[0] - 1
    q = ny - 1
    n_terms = q + (1 if intercept else 0)
    lead = 1 if intercept else 0
    scale = np.empty(q)
    low = np.empty((q, q))
    beta = np.empty(q)
    step = np.empty(q)
    inv = np.empty((q, q))
    sx = np.empty(q)
    xbar = np.empty(q)
    sxx = np.empty((q, q))
    sxy = np.empty(q)
    raw_diag = np.empty(q)
    singular = True
    for i in range(lo, hi):
        for t in range(n_targets):
            count = np.int64(np.rint(stats[i, t, COUNT]))
            informative = np.int64(np.rint(stats[i, t, COUNT_POSITIVE]))
            sum_w = stats[i, t, idx[0, 0]]
            sum_wy = stats[i, t, idx[0, ny]]
            sum_wyy = stats[i, t, idx[ny, ny]]
            mean_shifted = sum_wy / sum_w if sum_w > 0 else np.nan
            syy = sum_wyy - sum_wy * mean_shifted
            if syy <= _ZERO_SPREAD * sum_wyy or informative < 2:
                syy = 0.0
            dof_w = sum_w - stats[i, t, SUM_W2] / sum_w
            std = np.sqrt(syy / dof_w) if informative >= 2 else np.nan
            mean = mean_shifted + y_ref[t]
            for a in range(q):
                raw_diag[a] = fit_stats[i, t, idx[1 + a, 1 + a]]
                if intercept:
                    sx[a] = fit_stats[i, t, idx[0, 1 + a]]
                    xbar[a] = sx[a] / sum_w
            for a in range(q):
                for b in range(q):
                    sxx[a, b] = fit_stats[i, t, idx[1 + a, 1 + b]]
                    if intercept:
                        sxx[a, b] -= sx[a] * xbar[b]
                sxy[a] = fit_stats[i, t, idx[1 + a, ny]]
                if intercept:
                    sxy[a] -= sx[a] * mean_shifted
            tss = syy if intercept else fit_stats[i, t, idx[ny, ny]]
            if t == 0 or not _same_design(fit_stats, i, t, ny):
                usable = informative >= n_terms
                singular = _factor(sxx, raw_diag, usable, scale, low, inv, step)
            _slopes(sxx, sxy, scale, low, beta, step, inv)
            explained = 0.0
            for a in range(q):
                explained += beta[a] * sxy[a]
            rss = tss - explained
            if informative <= n_terms or rss <= _EXACT_FIT * tss:
                rss = 0.0
            sigma2 = np.nan if count <= n_terms else rss / (count - n_terms)
            total = 0.0
            for k in range(n_values):
                total += fit_stats[i, t, k]
            status = _status_one(count, singular, min_entries, not np.isfinite(total))
            entries[i, t] = count
            status_out[i, t] = status
            failed = status != OK
            mean_out[i, t] = np.nan if count == 0 or status == FIT_FAILED else mean
            std_out[i, t] = np.nan if status == FIT_FAILED else std
            r2_out[i, t] = np.nan if failed or not tss > 0 else 1.0 - rss / tss
            rmse_out[i, t] = np.nan if failed else np.sqrt(rss / sum_w)
            if failed:
                _blank(coef_out, stderr_out, cov_out, i, t)
                continue
            for a in range(q):
                coef_out[i, t, lead + a] = beta[a]
                for b in range(q):
                    cov_out[i, t, lead + a, lead + b] = sigma2 * inv[a, b]
                stderr_out[i, t, lead + a] = np.sqrt(cov_out[i, t, lead + a, lead + a])
            if intercept:
                const = mean
                var_const = sigma2 / sum_w
                for a in range(q):
                    xmean = xbar[a] + x_ref[a]
                    const -= xmean * beta[a]
                    cross = 0.0
                    for b in range(q):
                        cross += cov_out[i, t, 1 + a, 1 + b] * (xbar[b] + x_ref[b])
                    var_const += xmean * cross
                    cov_out[i, t, 0, 1 + a] = -cross
                    cov_out[i, t, 1 + a, 0] = -cross
                coef_out[i, t, 0] = const
                stderr_out[i, t, 0] = np.sqrt(var_const)
                cov_out[i, t, 0, 0] = var_const
