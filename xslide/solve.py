"""Closed-form weighted least squares per window from its sufficient statistics.

Everything is vectorised over the windows (centers x targets); only the p x p algebra loops, p
being the (small) number of slopes. The slopes solve the centered normal equations
Sxx β = Sxy with a Cholesky factorisation of the correlation-scaled Sxx, whose pivots give the
rank check: a window whose predictors are (numerically) collinear or constant is singular and
gets NaN, never garbage.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .stats import COUNT, SUM_W2, moment_index

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
_EXACT_FIT = 1e-11
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


def solve(
    stats: np.ndarray, n_terms: int, x_ref: np.ndarray, y_ref: np.ndarray, min_entries: int
) -> Solution:
    """Fit ``target ~ terms`` in every window from its windowed statistics.

    Parameters
    ----------
    stats : (m, t, n_stats) windowed packed statistics (see ``stats.py``).
    n_terms : number of design terms p, the intercept first.
    x_ref : (p - 1,) references of the predictors; y_ref : (t,) references of the targets.
    min_entries : windows with fewer valid rows are not fitted (status INSUFFICIENT).
    """
    m, n_targets = stats.shape[:2]
    q = n_terms - 1
    idx = moment_index(n_terms)
    ny = n_terms  # position of the target in z
    with np.errstate(divide="ignore", invalid="ignore"):
        count = np.rint(stats[..., COUNT]).astype(np.int64)
        sum_w = stats[..., idx[0, 0]]
        sum_w2 = stats[..., SUM_W2]
        sum_wy = stats[..., idx[0, ny]]
        sum_wyy = stats[..., idx[ny, ny]]
        has_weight = sum_w > 0
        mean_shifted = np.where(has_weight, sum_wy / sum_w, np.nan)
        syy = sum_wyy - sum_wy * mean_shifted
        syy = np.where((syy <= _ZERO_SPREAD * sum_wyy) | (count < 2), 0.0, syy)
        dof_w = sum_w - sum_w2 / sum_w
        # effective dof: no spread can be estimated from one effective row (dof_w ~ 0)
        std = np.where((count >= 2) & (dof_w > 1e-12 * sum_w), np.sqrt(syy / dof_w), np.nan)
        mean = mean_shifted + y_ref

        # Centered scatter of the predictors and their cross products with the target.
        sx = np.empty((m, n_targets, q))
        sxy = np.empty((m, n_targets, q))
        for j in range(q):
            sx[..., j] = stats[..., idx[0, 1 + j]]
            sxy[..., j] = stats[..., idx[1 + j, ny]] - sx[..., j] * mean_shifted
        xbar = sx / sum_w[..., None]
        sxx = np.empty((m, n_targets, q, q))
        raw_xx = np.empty((m, n_targets, q))
        for a in range(q):
            raw_xx[..., a] = stats[..., idx[1 + a, 1 + a]]
            for b in range(a, q):
                v = stats[..., idx[1 + a, 1 + b]] - sx[..., a] * xbar[..., b]
                sxx[..., a, b] = sxx[..., b, a] = v

        diag = np.diagonal(sxx, axis1=-2, axis2=-1).copy()
        singular = ~has_weight | np.any(diag <= _ZERO_SPREAD * raw_xx, axis=-1)
        scale = np.sqrt(np.where(singular[..., None], 1.0, diag))
        corr = sxx / (scale[..., :, None] * scale[..., None, :])
        # A centered sum of squares computed from uncentered sums is only known to
        # _SUM_ROUNDING * raw / centered (relative): when the window's mean is far from the
        # reference, the correlations are uncertain and a pivot below that is no evidence of rank.
        uncertainty = np.where(singular[..., None], 0.0, _SUM_ROUNDING * raw_xx / scale**2)
        min_pivot = np.maximum(_MIN_PIVOT, 10.0 * uncertainty.max(axis=-1, initial=0.0))
        chol, ok = _cholesky(np.where(singular[..., None, None], np.eye(q), corr), min_pivot)
        singular |= ~ok
        rhs = sxy / scale
        beta_scaled = _cho_solve(chol, rhs)
        beta = beta_scaled / scale
        inv_corr_diag, inv_corr = _cho_inverse(chol)

        rss = syy - np.sum(beta * sxy, axis=-1)
        exact = count <= n_terms
        # rss comes from a difference of sums: below this fraction of syy it is rounding noise
        # (an exact fit, e.g. through zero-weight rows), and reported as 0.
        rss = np.where(exact | (rss <= _EXACT_FIT * syy), 0.0, rss)
        intercept = mean - np.sum((xbar + x_ref) * beta, axis=-1)

        sigma2 = np.where(exact, np.nan, rss / (count - n_terms))
        cov_beta = sigma2[..., None, None] * inv_corr / (scale[..., :, None] * scale[..., None, :])
        xmean = xbar + x_ref
        var_intercept = sigma2 / sum_w + np.einsum("...a,...ab,...b->...", xmean, cov_beta, xmean)
        stderr = np.concatenate(
            [np.sqrt(var_intercept)[..., None], np.sqrt(sigma2[..., None] * inv_corr_diag) / scale],
            axis=-1,
        )
        coef = np.concatenate([intercept[..., None], beta], axis=-1)
        r_squared = np.where(syy > 0, 1.0 - rss / syy, np.nan)
        rmse = np.sqrt(rss / sum_w)

    status = np.full((m, n_targets), OK, dtype=np.int8)
    status[singular] = SINGULAR
    status[count < min_entries] = INSUFFICIENT
    status[count == 0] = EMPTY
    failed = status != OK
    coef[failed] = np.nan
    stderr[failed] = np.nan
    r_squared[failed] = np.nan
    rmse[failed] = np.nan
    mean[count == 0] = np.nan
    return Solution(count, mean, std, coef, stderr, r_squared, rmse, status)


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
