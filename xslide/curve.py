"""Non-linear models per window: ``fitter='curve_fit'`` with ``model=f(x1, ..., *params)``.

Each window's rows are fitted by ``scipy.optimize.least_squares`` on the weighted residuals
sqrt(w) (f - y), w = kernel x row weight: the fit ``scipy.optimize.curve_fit`` makes with
``sigma = 1 / sqrt(w)``. The parameters' covariance is (JᵀJ)⁻¹ of the weighted residuals'
Jacobian at the solution, scaled by the residual variance Σw r² / (n - p), so a linear model
fitted this way gives the closed-form WLS coefficients and standard errors.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidInputTypeError

# least_squares' convergence tolerances unless fit_kwargs says otherwise: tighter than its
# defaults (1e-8), so a window's solution does not depend on where its search started
TOLERANCES = {"ftol": 1e-10, "xtol": 1e-10, "gtol": 1e-10}
# least_squares arguments xslide sets itself (the model, start, bounds and jac keywords), and a
# robust loss, under which the covariance from the Jacobian would not hold
RESERVED = ("fun", "x0", "jac", "bounds", "args", "kwargs", "loss", "f_scale")
JAC_METHODS = ("2-point", "3-point", "cs")
# a window warm-starts from the solution of its neighbor at bin - 1 of the grid's last dim,
# in chains of this many bins; blocks of work never split a chain, so every way of running
# the windows (serially, in processes, on dask) starts each window the same way
CHAIN_LENGTH = 16


class NotConvergedError(RuntimeError):
    """least_squares stopped without meeting its tolerances (e.g. max_nfev reached)."""


class SingularFitError(ArithmeticError):
    """The window does not determine the parameters: fewer rows than parameters, or a
    rank-deficient Jacobian at the solution."""


@dataclass(frozen=True, eq=False)
class CurveModel:
    """A model ``y = func(x1, ..., *params)`` and how each window's least squares runs."""

    func: Callable
    params: tuple[str, ...]
    n_predictors: int
    p0: np.ndarray | Callable  # fixed start, or a callable of the window's rows
    lower: np.ndarray
    upper: np.ndarray
    jac: Callable | str
    options: Mapping = field(default_factory=dict)  # least_squares keywords

    @property
    def warm_starts(self) -> bool:
        """A fixed p0 starts a chain of windows; a callable p0 starts every window."""
        return not callable(self.p0)

    @property
    def bounded(self) -> bool:
        return bool(np.isfinite(self.lower).any() or np.isfinite(self.upper).any())

    def start(self, columns: tuple[np.ndarray, ...], y: np.ndarray) -> np.ndarray:
        """Where this window's search starts when no neighbor's solution is at hand."""
        if not callable(self.p0):
            return self.p0
        return check_p0(self.p0(*columns, y), self.params, "the p0 callable's return value")

    def evaluate(self, columns: tuple[np.ndarray, ...], params: np.ndarray, n: int) -> np.ndarray:
        """The model at the window's rows, checked to be one value per row."""
        out = np.asarray(self.func(*columns, *params), dtype=np.float64)
        if out.shape != (n,):
            if out.ndim > 1 or out.size not in (1, n):
                raise ValueError(f"model returned shape {out.shape} for a window of {n} rows")
            out = np.broadcast_to(out, (n,))
        return out

    def jacobian(
        self, columns: tuple[np.ndarray, ...], params: np.ndarray, n: int, sqrt_w
    ) -> np.ndarray:
        """The user's jac: d model / d params, (n, p), times sqrt(w) like the residuals."""
        out = np.asarray(self.jac(*columns, *params), dtype=np.float64)
        if out.shape != (n, len(self.params)):
            raise ValueError(
                f"jac returned shape {out.shape}; expected (rows, parameters) = "
                f"({n}, {len(self.params)})"
            )
        return out if sqrt_w is None else sqrt_w[:, None] * out

    def fit(
        self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, start: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        """Coefficients, standard errors, covariance, r² and rmse of one window's rows.

        ``x`` (n, predictors), ``w`` the kernel x row weights (None: all 1), ``start`` a
        neighbor's solution (None: p0; a search from it that does not converge is run again
        from p0). Raises SingularFitError or NotConvergedError.
        """
        n, p = y.size, len(self.params)
        if n < p:
            raise SingularFitError(f"{n} rows cannot determine {p} parameters")
        columns = tuple(x[:, j] for j in range(self.n_predictors))
        if start is not None:
            try:
                return self._solve(columns, y, w, start)
            except NotConvergedError:
                pass
        return self._solve(columns, y, w, self.start(columns, y))

    def _solve(self, columns, y: np.ndarray, w: np.ndarray | None, x0: np.ndarray):
        """least_squares from ``x0`` and the statistics of its solution."""
        from scipy.optimize import least_squares  # scipy loads on the paths that use it

        n = y.size
        sqrt_w = None if w is None else np.sqrt(w)

        def residuals(params: np.ndarray) -> np.ndarray:
            r = self.evaluate(columns, params, n) - y
            return r if sqrt_w is None else sqrt_w * r

        jac = self.jac
        if callable(jac):

            def jac(params: np.ndarray) -> np.ndarray:
                return self.jacobian(columns, params, n, sqrt_w)

        options = {**TOLERANCES, "method": "trf" if self.bounded else "lm", **self.options}
        result = least_squares(residuals, x0, jac=jac, bounds=(self.lower, self.upper), **options)
        if not result.success:
            raise NotConvergedError(result.message)
        coef = np.asarray(result.x, dtype=np.float64)
        rss = float(np.sum(result.fun**2))
        cov = _covariance(np.asarray(result.jac, dtype=np.float64), rss, n)
        return (coef, np.sqrt(np.diagonal(cov)), cov, *_goodness(y, w, rss))


def _covariance(jac: np.ndarray, rss: float, n: int) -> np.ndarray:
    """(JᵀJ)⁻¹ Σw r² / (n - p) from the SVD of the Jacobian, as curve_fit computes it; a
    rank-deficient Jacobian leaves the parameters undetermined."""
    p = jac.shape[1]
    _, s, vt = np.linalg.svd(jac, full_matrices=False)
    tiny = np.finfo(float).eps * max(jac.shape)
    if s.size < p or not np.all(np.isfinite(s)) or s[-1] <= tiny * s[0]:
        raise SingularFitError("the Jacobian at the solution is rank-deficient")
    scale = rss / (n - p) if n > p else math.nan
    return (vt.T / s**2) @ vt * scale


def _goodness(y: np.ndarray, w: np.ndarray | None, rss: float) -> tuple[float, float]:
    """r² about the (weighted) mean and rmse = sqrt(Σw r² / Σw), as the other fitters."""
    weights = np.ones_like(y) if w is None else w
    sum_w = float(weights.sum())
    if not sum_w > 0:
        return math.nan, math.nan
    center = float(np.sum(weights * y)) / sum_w
    tss = float(np.sum(weights * (y - center) ** 2))
    r2 = 1.0 - rss / tss if tss > 0 else math.nan
    return r2, math.sqrt(rss / sum_w)


# ---- building the model from the keywords ----


def model_parameters(model: Callable, predictors: Sequence[str]) -> tuple[str, ...]:
    """The names of the parameters: the model's positional arguments after the predictors."""
    name = getattr(model, "__name__", type(model).__name__)
    try:
        signature = inspect.signature(model)
    except (TypeError, ValueError):
        raise InvalidInputTypeError(
            f"model: cannot read the signature of {name!r}; wrap it in a def "
            "f(x1, ..., a, b, ...) naming its parameters"
        ) from None
    positional = []
    for parameter in signature.parameters.values():
        required = parameter.default is parameter.empty
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise ValueError(
                f"model {name!r} takes *{parameter.name}: name its parameters, e.g. "
                "f(x, a, b, c), they become the fit's terms"
            )
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and required:
            raise ValueError(f"model {name!r} has a required keyword-only {parameter.name!r}")
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            positional.append(parameter.name)
    params = tuple(positional[len(predictors) :])
    if not params:
        raise ValueError(
            f"model {name!r} takes {len(positional)} positional arguments: the "
            f"{len(predictors)} predictors {list(predictors)} first, then at least one parameter"
        )
    return params


def check_p0(p0, params: tuple[str, ...], label: str = "p0") -> np.ndarray:
    """Start values: a sequence of one number per parameter, or ``{parameter: value}``."""
    if isinstance(p0, Mapping):
        unknown = sorted(set(p0) - set(params))
        missing = [name for name in params if name not in p0]
        if unknown or missing:
            raise ValueError(
                f"{label} must give every parameter {list(params)}: unknown {unknown}, "
                f"missing {missing}"
            )
        p0 = [p0[name] for name in params]
    try:
        values = np.asarray(p0, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidInputTypeError(
            f"{label} must be numbers, one per parameter {list(params)}, got {p0!r}"
        ) from None
    if values.shape != (len(params),) or not np.all(np.isfinite(values)):
        raise ValueError(
            f"{label} must be {len(params)} finite numbers, one per parameter {list(params)}, "
            f"got {p0!r}"
        )
    return values


def check_bounds(bounds, params: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(lower, upper)`` (scalars or one per parameter) or ``{parameter: (lo, hi)}``."""
    p = len(params)
    if bounds is None:
        return np.full(p, -np.inf), np.full(p, np.inf)
    if isinstance(bounds, Mapping):
        unknown = sorted(set(bounds) - set(params))
        if unknown:
            raise ValueError(f"bounds names {unknown}, which are not parameters {list(params)}")
        pairs = [bounds.get(name, (-np.inf, np.inf)) for name in params]
        bounds = ([pair[0] for pair in pairs], [pair[1] for pair in pairs])
    try:
        lower, upper = bounds
        lower = np.broadcast_to(np.asarray(lower, dtype=np.float64), (p,)).copy()
        upper = np.broadcast_to(np.asarray(upper, dtype=np.float64), (p,)).copy()
    except (TypeError, ValueError):
        raise ValueError(
            f"bounds must be (lower, upper), each a number or {p} numbers, or "
            f"{{parameter: (lo, hi)}}, got {bounds!r}"
        ) from None
    if np.isnan(lower).any() or np.isnan(upper).any() or not np.all(lower < upper):
        raise ValueError(f"bounds must have lower < upper for every parameter, got {bounds!r}")
    return lower, upper


def feasible_start(lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """The default start, as curve_fit's: 1, moved inside the bounds where they exclude it."""
    start = np.ones(lower.size)
    both = np.isfinite(lower) & np.isfinite(upper)
    start[both] = 0.5 * (lower[both] + upper[both])
    only_lower = np.isfinite(lower) & ~np.isfinite(upper)
    start[only_lower] = lower[only_lower] + 1.0
    only_upper = ~np.isfinite(lower) & np.isfinite(upper)
    start[only_upper] = upper[only_upper] - 1.0
    return start


def check_least_squares_options(options) -> dict:
    """``fit_kwargs``: keywords of least_squares, minus those xslide sets itself."""
    if not isinstance(options, Mapping):
        raise InvalidInputTypeError(
            "fit_kwargs must be a dict of keyword arguments for scipy.optimize.least_squares"
        )
    reserved = sorted(set(options) & set(RESERVED))
    if reserved:
        raise ValueError(
            f"fit_kwargs {reserved} cannot be given with fitter='curve_fit': the model, p0, "
            "bounds and jac keywords set them, and a robust loss would void the standard errors"
        )
    return dict(options)


def make_curve_model(options: dict, predictors: Sequence[str]) -> CurveModel:
    """The curve_fit model from the keywords ``model``, ``p0``, ``bounds``, ``jac`` and
    ``fit_kwargs`` (removed from ``options``)."""
    model = options.pop("model", None)
    if not callable(model):
        raise InvalidInputTypeError(
            "fitter='curve_fit' needs model=f(x1, ..., a, b, ...), a vectorised function of the "
            f"predictor columns and the parameters, got {model!r}"
        )
    if not predictors:
        raise ValueError(
            "fitter='curve_fit' needs predictor_columns: they are the model's first arguments"
        )
    params = model_parameters(model, predictors)
    lower, upper = check_bounds(options.pop("bounds", None), params)
    p0 = options.pop("p0", None)
    if p0 is None:
        p0 = feasible_start(lower, upper)
    elif not callable(p0):
        p0 = check_p0(p0, params)
        if np.any(p0 < lower) or np.any(p0 > upper):
            raise ValueError(f"p0 {p0.tolist()} lies outside the bounds")
    jac = options.pop("jac", None)
    jac = "2-point" if jac is None else jac
    if not callable(jac) and jac not in JAC_METHODS:
        raise ValueError(
            f"jac must be a callable jac(x1, ..., a, b, ...) -> (rows, parameters) or one of "
            f"{list(JAC_METHODS)}, got {jac!r}"
        )
    fit_options = check_least_squares_options(options.pop("fit_kwargs", None) or {})
    bounded = np.isfinite(lower).any() or np.isfinite(upper).any()
    if bounded and fit_options.get("method") == "lm":
        raise ValueError("fit_kwargs method='lm' cannot handle bounds: use 'trf' or 'dogbox'")
    return CurveModel(model, params, len(predictors), p0, lower, upper, jac, fit_options)


def chain_of(centers: np.ndarray, n_last: int) -> np.ndarray:
    """The warm-start chain of each center: runs of ``CHAIN_LENGTH`` bins along the last dim."""
    per_row = -(-n_last // CHAIN_LENGTH)
    return (centers // n_last) * per_row + (centers % n_last) // CHAIN_LENGTH
