"""Restricted column expressions: ``'qpt > 0.5 & np.abs(tgl) < 1'`` evaluated without ``eval``.

Command-line selections and formulas come from users, files and shell history, so they are
never handed to Python's ``eval``. An expression is parsed with ``ast`` and accepted only if
it is built from numbers, booleans, column names, calls of pure numpy functions from an
explicit allow-list (``sqrt(x)`` or ``np.sqrt(x)``), and arithmetic, comparison, boolean and
bitwise operators. It is then evaluated by walking the tree, elementwise over numpy columns
(``and``/``or``/``not`` are elementwise like ``&``/``|``/``~``). Anything else (attribute
access other than ``np.<function>``, subscripts, keywords, lambdas, comprehensions, strings,
names starting with ``_``, builtins such as ``open``) is refused with an ``ExpressionError``
(a ``ValueError``) naming the offending part.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Iterable, Mapping

import numpy as np

#: numpy functions an expression may call, by name (bare or as ``np.<name>``).
FUNCTIONS: dict[str, Callable] = {
    name: getattr(np, name)
    for name in (
        "abs", "absolute", "sqrt", "cbrt", "square", "log", "log2", "log10", "log1p", "exp",
        "expm1", "sin", "cos", "tan", "arcsin", "arccos", "arctan", "arctan2", "sinh", "cosh",
        "tanh", "arcsinh", "arccosh", "arctanh", "hypot", "deg2rad", "rad2deg", "floor", "ceil",
        "trunc", "rint", "round", "minimum", "maximum", "fmin", "fmax", "where", "isfinite",
        "isnan", "isinf", "sign", "power", "clip", "mod", "fmod", "logical_and", "logical_or",
        "logical_not", "logical_xor",
    )
}  # fmt: skip
#: numpy constants an expression may read as ``np.<name>``.
CONSTANTS: dict[str, float] = {"pi": np.pi, "e": np.e, "inf": np.inf, "nan": np.nan}

_BINARY: dict[type, Callable] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: np.power,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
}
_UNARY: dict[type, Callable] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: np.invert,
    ast.Not: np.logical_not,
}
_COMPARE: dict[type, Callable] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}
_MAX_LENGTH = 10_000
_EXPONENT = re.compile(r"\s*(\d+\.?\d*|\.\d+)[eE]")  # '1e' of '1e-3': not a formula operator


class ExpressionError(ValueError):
    """An expression uses a construct, a name or a function that is not allowed."""


def _uses_name(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) for n in ast.walk(node))


def _segment(expression: str, node: ast.AST) -> str:
    text = ast.get_source_segment(expression, node)
    return text if text else type(node).__name__


def _parse(expression: str) -> ast.Expression:
    if not isinstance(expression, str):
        raise TypeError(f"an expression must be a string, got {type(expression).__name__}")
    if len(expression) > _MAX_LENGTH:
        raise ExpressionError(f"expression longer than {_MAX_LENGTH} characters")
    try:
        return ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise ExpressionError(f"expression {expression!r} is not valid syntax: {err.msg}") from None


class _Checker(ast.NodeVisitor):
    """Walk a parsed expression, refusing anything outside the grammar; collect column names."""

    def __init__(
        self,
        expression: str,
        allowed_names: Iterable[str] | None,
        bare_functions: bool,
        extra_functions: Mapping[str, Callable],
    ) -> None:
        self.expression = expression
        self.allowed = None if allowed_names is None else set(allowed_names)
        self.numpy = set(FUNCTIONS)
        self.bare = set(extra_functions) | (self.numpy if bare_functions else set())
        # patsy evaluates formulas with Python ints: constant powers could run forever
        self.constant_powers = not extra_functions
        self.names: list[str] = []

    def refuse(self, node: ast.AST, why: str) -> ExpressionError:
        return ExpressionError(
            f"expression {self.expression!r}: {why}: {_segment(self.expression, node)!r}"
        )

    # one method per node type allowed (ast.NodeVisitor dispatches); anything else is refused

    def generic_visit(self, node: ast.AST) -> None:
        raise self.refuse(node, f"{type(node).__name__} is not allowed")

    def visit_Expression(self, node: ast.Expression) -> None:
        self.visit(node.body)

    def visit_Constant(self, node: ast.Constant) -> None:
        value = node.value
        if isinstance(value, bool | float):
            return
        if isinstance(value, int) and abs(value) < 2**63:
            return  # larger ints would become unbounded Python-int arithmetic
        raise self.refuse(node, "only numbers (int64, float) and booleans are allowed")

    def visit_Name(self, node: ast.Name) -> None:
        self.name(node, node.id)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self.numpy_attribute(node) not in CONSTANTS:
            raise self.refuse(
                node,
                f"only np.<function>(...) calls and np.{{{', '.join(CONSTANTS)}}} "
                "may use attribute access",
            )

    def visit_BinOp(self, node: ast.BinOp) -> None:
        if type(node.op) not in _BINARY:
            raise self.refuse(node, f"operator {type(node.op).__name__} is not allowed")
        if isinstance(node.op, ast.Pow) and not self.constant_powers and not _uses_name(node):
            raise self.refuse(node, "a power of constants is not allowed in a formula")
        self.visit(node.left)
        self.visit(node.right)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        if type(node.op) not in _UNARY:
            raise self.refuse(node, f"operator {type(node.op).__name__} is not allowed")
        self.visit(node.operand)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for value in node.values:
            self.visit(value)

    def visit_Compare(self, node: ast.Compare) -> None:
        for op in node.ops:
            if type(op) not in _COMPARE:
                raise self.refuse(node, f"comparison {type(op).__name__} is not allowed")
        self.visit(node.left)
        for value in node.comparators:
            self.visit(value)

    def visit_Call(self, node: ast.Call) -> None:
        self.function(node.func)
        if node.keywords:
            raise self.refuse(node, "keyword arguments are not allowed")
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.refuse(arg, "starred arguments are not allowed")
            self.visit(arg)

    def name(self, node: ast.AST, name: str) -> None:
        if name.startswith("_"):
            raise self.refuse(node, "names starting with '_' are not allowed")
        if name == "np" or name in self.numpy or name in self.bare:
            raise self.refuse(node, "a function or module is not a value")
        if self.allowed is not None and name not in self.allowed:
            raise self.refuse(node, f"unknown column (known: {sorted(self.allowed)})")
        if name not in self.names:
            self.names.append(name)

    def numpy_attribute(self, node: ast.Attribute) -> str:
        if not (isinstance(node.value, ast.Name) and node.value.id == "np"):
            raise self.refuse(node, "attribute access is allowed on np only")
        if node.attr.startswith("_"):
            raise self.refuse(node, "names starting with '_' are not allowed")
        return node.attr

    def function(self, func: ast.AST) -> None:
        if isinstance(func, ast.Attribute):
            name, known = self.numpy_attribute(func), self.numpy
        elif isinstance(func, ast.Name):
            name, known = func.id, self.bare
        else:
            raise self.refuse(func, "only calls of np.<function> are allowed")
        if name.startswith("_"):
            raise self.refuse(func, "names starting with '_' are not allowed")
        if name not in known:
            hint = f"; write np.{name}(...)" if name in self.numpy else ""
            raise self.refuse(
                func, f"function {name!r} is not allowed (see xslide.expressions.FUNCTIONS){hint}"
            )


def check(
    expression: str,
    allowed_names: Iterable[str] | None = None,
    *,
    bare_functions: bool = True,
    extra_functions: Mapping[str, Callable] | None = None,
) -> list[str]:
    """Check ``expression`` against the restricted grammar; return the column names it uses.

    Parameters
    ----------
    expression : the expression text, e.g. ``'(qpt > 0.5) & isfinite(dX)'``.
    allowed_names : the column names it may use; None accepts any name not starting with
        ``_`` (the columns are then checked when evaluating).
    bare_functions : whether ``sqrt(x)`` is accepted besides ``np.sqrt(x)``.
    extra_functions : more callables allowed by bare name (e.g. patsy's ``I``); given, the
        expression is for patsy (Python ints), so powers of constants are refused.

    Returns
    -------
    The column names used, in order of first appearance.

    Raises
    ------
    ExpressionError (a ValueError) naming the offending part.
    """
    checker = _Checker(expression, allowed_names, bare_functions, extra_functions or {})
    checker.visit(_parse(expression))
    return checker.names


def evaluate(expression: str, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate a restricted expression elementwise over numpy columns.

    Parameters
    ----------
    expression : the expression text (see the module docstring for the grammar).
    columns : ``{name: array}``, all of the same length (pandas Series are accepted).

    Returns
    -------
    numpy array of the result (0-d when the expression uses no column).
    """
    check(expression, None)
    try:
        with np.errstate(all="ignore"):
            return np.asarray(_Evaluator(expression, columns).visit(_parse(expression)))
    except (ExpressionError, KeyError):
        raise
    except (TypeError, ValueError, ArithmeticError) as err:
        raise ValueError(f"expression {expression!r} failed on the data: {err}") from None


class _Evaluator(ast.NodeVisitor):
    """Evaluate a checked expression node by node, elementwise over numpy columns."""

    def __init__(self, expression: str, columns: Mapping[str, np.ndarray]) -> None:
        self.expression = expression
        self.columns = columns
        self.values: dict[str, np.ndarray] = {}

    def generic_visit(self, node: ast.AST):
        raise ExpressionError(f"expression {self.expression!r}: cannot evaluate {ast.dump(node)}")

    def visit_Expression(self, node: ast.Expression):
        return self.visit(node.body)

    def visit_Constant(self, node: ast.Constant):
        return np.asarray(node.value)  # numpy scalars: no unbounded Python-int arithmetic

    def visit_Name(self, node: ast.Name):
        if node.id not in self.columns:
            raise KeyError(
                f"expression {self.expression!r}: column {node.id!r} not found; "
                f"available columns: {sorted(map(str, self.columns))}"
            )
        if node.id not in self.values:
            self.values[node.id] = np.asarray(self.columns[node.id])
        return self.values[node.id]

    def visit_Attribute(self, node: ast.Attribute):
        return np.asarray(CONSTANTS[node.attr])

    def visit_BinOp(self, node: ast.BinOp):
        return _BINARY[type(node.op)](self.visit(node.left), self.visit(node.right))

    def visit_UnaryOp(self, node: ast.UnaryOp):
        return _UNARY[type(node.op)](self.visit(node.operand))

    def visit_BoolOp(self, node: ast.BoolOp):
        combine = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        result = self.visit(node.values[0])
        for operand in node.values[1:]:
            result = combine(result, self.visit(operand))
        return result

    def visit_Compare(self, node: ast.Compare):
        result, lhs = None, self.visit(node.left)
        for op, right in zip(node.ops, node.comparators, strict=True):
            rhs = self.visit(right)
            part = _COMPARE[type(op)](lhs, rhs)
            result = part if result is None else np.logical_and(result, part)
            lhs = rhs
        return result

    def visit_Call(self, node: ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id
        return FUNCTIONS[name](*(self.visit(arg) for arg in node.args))


def _split_terms(text: str, expression: str) -> list[str]:
    """Split a formula side at its top-level operators ``+ - * / : **``."""
    terms, depth, start, i = [], 0, 0, 0
    while i < len(text):
        char = text[i]
        if char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
            if depth < 0:
                raise ExpressionError(f"formula {expression!r}: unbalanced parentheses")
        elif depth == 0 and char in "+-*/:" and not _EXPONENT.fullmatch(text[start:i]):
            terms.append(text[start:i])
            step = 2 if text.startswith("**", i) else 1
            i += step
            start = i
            continue
        i += 1
    if depth != 0:
        raise ExpressionError(f"formula {expression!r}: unbalanced parentheses")
    terms.append(text[start:])
    return [term.strip() for term in terms]


def _check_formula_side(text: str, formula: str, allowed: set[str] | None) -> list[str]:
    names: list[str] = []
    for term in _split_terms(text, formula):
        if not term:
            continue  # a leading '-' as in '- 1', or an operator pair
        inner = term[1:-1] if term.startswith("(") and term.endswith(")") else None
        if inner is not None and any(op in inner for op in ":*+-/"):
            try:  # '(a + b):c' - a parenthesised group of terms, or a Python expression
                found = check(
                    inner, allowed, bare_functions=False, extra_functions={"I": _identity}
                )
            except ExpressionError:
                found = _check_formula_side(inner, formula, allowed)
        else:
            found = check(term, allowed, bare_functions=False, extra_functions={"I": _identity})
        names += [n for n in found if n not in names]
    return names


def _identity(value):
    return value


def check_formula(formula: str, allowed_names: Iterable[str] | None = None) -> list[str]:
    """Check a model formula ``'target ~ x + np.log(r) + x:r + I(x**2) - 1'`` term by term.

    Each side of ``~`` is split at the formula operators (``+``, ``-``, ``*``, ``/``, ``:``,
    ``**``, outside parentheses) and every term must be a restricted expression (see
    ``check``) using ``np.<function>`` or ``I(...)``; patsy then evaluates the formula.

    Parameters
    ----------
    formula : the formula text.
    allowed_names : column names it may use (``target`` is always allowed on the left); None
        accepts any name not starting with ``_``.

    Returns
    -------
    The column names used on the right-hand side.
    """
    if not isinstance(formula, str):
        raise TypeError(f"a formula must be a string, got {type(formula).__name__}")
    if formula.count("~") != 1:
        raise ExpressionError(f"formula {formula!r} must have the form 'target ~ terms'")
    lhs, rhs = formula.split("~")
    allowed = None if allowed_names is None else set(allowed_names)
    if not rhs.strip():
        raise ExpressionError(f"formula {formula!r} has no terms on the right-hand side")
    try:
        _check_formula_side(lhs, formula, None if allowed is None else allowed | {"target"})
        return _check_formula_side(rhs, formula, allowed)
    except ExpressionError as err:
        if str(err).startswith("formula "):
            raise
        raise ExpressionError(f"formula {formula!r}: {err}") from None
