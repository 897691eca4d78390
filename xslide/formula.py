"""Formula strings: ``'target ~ x1 + np.log(x2) + x1:x2'`` -> one design matrix for all targets.

The right-hand side is parsed once by patsy (the formula engine statsmodels uses by default, so
term names match statsmodels'), evaluated once over all rows, and its columns feed the
sufficient-statistics fast path like plain predictor columns. ``target`` stands for each fit
column and may appear on the left-hand side only.

Every formula is bounded before patsy expands it (``expressions.bound_formula``: ``**``
degree, number of terms, nesting), trusted or not; ``checked_formula`` also holds a formula
from the Python API to the restricted grammar the command line uses, unless it is trusted.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ._optional import require
from .expressions import ExpressionError, _shown, bound_formula, check_formula

INTERCEPT = "Intercept"
_TARGET = re.compile(r"(?<![\w.])target(?![\w])")


@dataclass(frozen=True)
class ParsedFormula:
    """The right-hand side of a formula and whether it keeps the intercept."""

    formula: str
    rhs: str
    max_terms: int | None = None  # the size limits it was checked with (None: the defaults)
    max_degree: int | None = None


def _api_error(formula: str, err: ExpressionError) -> ExpressionError:
    """An expressions refusal in the Python API's words: ``fit_formula '...': <reason>``."""
    return ExpressionError(f"fit_formula {_shown(formula)}: {err.reason}", err.reason)


def checked_formula(
    formula: str,
    *,
    trusted: bool = False,
    allowed_names: Sequence[str] | None = None,
    max_terms: int | None = None,
    max_degree: int | None = None,
) -> str:
    """Check a formula from the Python API as the command line checks its ``--formula``.

    patsy evaluates a formula's Python parts with ``eval``: unless ``trusted``, they must be
    restricted expressions (``expressions.check_formula``: columns, numbers, ``np.<function>``,
    ``I(...)``). Trusted or not, the formula's size is bounded (``expressions.bound_formula``).

    Parameters
    ----------
    formula : ``'target ~ terms'``.
    trusted : skip the grammar check, for formulas written in code that need more of patsy
        (``C(x)``, ``center(x)``, ``bs(x, 4)``); the size bounds still apply.
    allowed_names : the column names it may use; None accepts any.
    max_terms, max_degree : the size limits (None: ``MAX_FORMULA_TERMS``/``MAX_FORMULA_DEGREE``).

    Returns
    -------
    The formula, unchanged.

    Raises
    ------
    ExpressionError (a ValueError), one line: ``fit_formula '...': <reason>``.
    """
    if not isinstance(formula, str):
        raise TypeError(f"fit_formula must be a string or a callable, got {formula!r}")
    if trusted:
        try:
            bound_formula(formula, max_terms=max_terms, max_degree=max_degree)
        except ExpressionError as err:
            raise _api_error(formula, err) from None
        return formula
    try:
        bound_formula(formula, max_terms=max_terms, max_degree=max_degree)
    except ExpressionError as err:
        raise _api_error(formula, err) from None
    try:
        check_formula(formula, allowed_names, max_terms=max_terms, max_degree=max_degree)
    except ExpressionError as err:  # the grammar, not the size: trusting the formula would do
        raise ExpressionError(
            f"{_api_error(formula, err)}; pass trusted_formula=True for a formula written in code"
        ) from None
    return formula


def parse_formula(
    formula: str,
    targets: Sequence[str],
    *,
    max_terms: int | None = None,
    max_degree: int | None = None,
) -> ParsedFormula:
    """Check the shape of ``formula``: ``target ~ rhs`` with ``target`` on the left only.

    Its size is bounded too (``expressions.bound_formula``, with ``max_terms``/``max_degree``
    or the defaults), before patsy ever expands it.
    """
    if not isinstance(formula, str):
        raise TypeError(f"fit_formula must be a string or a callable, got {formula!r}")
    if formula.count("~") != 1:
        raise ValueError(f"fit_formula {formula!r} must have the form 'target ~ terms'")
    lhs, rhs = (part.strip() for part in formula.split("~"))
    single = len(targets) == 1 and lhs == targets[0]
    if lhs != "target" and not single:
        raise ValueError(
            f"fit_formula {formula!r}: the left-hand side must be 'target', which stands for "
            f"each of fit_columns {list(targets)}"
        )
    if _TARGET.search(rhs):
        raise ValueError(f"fit_formula {formula!r}: 'target' may appear on the left-hand side only")
    if not rhs:
        raise ValueError(f"fit_formula {formula!r} has no terms on the right-hand side")
    parsed = ParsedFormula(formula, rhs, max_terms, max_degree)
    _bounded(parsed)
    return parsed


def _bounded(parsed: ParsedFormula) -> None:
    """Refuse a right-hand side patsy would expand beyond the limits (before patsy runs)."""
    try:
        bound_formula(parsed.rhs, max_terms=parsed.max_terms, max_degree=parsed.max_degree)
    except ExpressionError as err:
        raise _api_error(parsed.formula, err) from None


def _one_line(err: Exception) -> str:
    """patsy's message without its caret diagram (a refusal stays one line)."""
    if isinstance(err, RecursionError):
        return "nested too deeply for patsy"
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def uses_column(rhs: str, column: str) -> bool:
    """Whether ``column`` appears as a whole name in the formula's right-hand side."""
    return re.search(rf"(?<![\w.]){re.escape(column)}(?![\w])", rhs) is not None


class _Columns(Mapping):
    """Columns looked up by patsy on demand, as float64 arrays."""

    def __init__(self, lookup: Callable[[str], np.ndarray], names: Sequence[str]) -> None:
        self._lookup = lookup
        self._names = list(names)

    def __getitem__(self, name: str) -> np.ndarray:
        if name not in self._names:
            raise KeyError(name)
        return self._lookup(name)

    def __iter__(self):
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def design_matrix(
    parsed: ParsedFormula, lookup: Callable[[str], np.ndarray], names: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """Evaluate the right-hand side over all rows: term names and the (n, p) design matrix.

    Rows whose terms are NaN/inf are kept (they become invalid rows, counted per target).
    """
    patsy = require("patsy", "formula strings (fit_formula='target ~ ...')")
    _bounded(parsed)  # a ParsedFormula may be built by hand: patsy must never see it unbounded
    env = patsy.EvalEnvironment([{"np": np}])
    try:
        terms = patsy.ModelDesc.from_formula(parsed.rhs).rhs_termlist
    except (patsy.PatsyError, RecursionError) as err:
        raise ValueError(f"fit_formula {parsed.formula!r}: {_one_line(err)}") from None
    if not any(term.factors for term in terms):  # 'target ~ 1': nothing for patsy to evaluate
        n_rows = len(lookup(names[0])) if names else 0
        return ([INTERCEPT], np.ones((n_rows, 1))) if terms else ([], np.empty((n_rows, 0)))
    try:
        with np.errstate(all="ignore"):
            matrix = patsy.dmatrix(
                parsed.rhs,
                _Columns(lookup, names),
                eval_env=env,
                NA_action=patsy.NAAction(NA_types=[]),
                return_type="matrix",
            )
    except (patsy.PatsyError, RecursionError) as err:
        raise ValueError(f"fit_formula {parsed.formula!r}: {_one_line(err)}") from None
    info = matrix.design_info
    categorical = [f.name() for f, i in info.factor_infos.items() if i.type == "categorical"]
    if categorical:
        raise ValueError(
            f"fit_formula {parsed.formula!r}: categorical terms {categorical} (C(), strings or "
            "booleans) are not supported; encode them as numeric columns"
        )
    return list(info.column_names), np.asarray(matrix, dtype=np.float64)
