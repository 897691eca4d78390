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

Hostile text is bounded before any work, with a one-line refusal instead of a hang or a crash:
an expression has at most ``MAX_LENGTH`` characters, brackets and syntax tree nested at most
``MAX_DEPTH`` levels and at most ``MAX_NODES`` tokens and tree nodes (checked before and after
``ast.parse``, so neither the parser nor the recursive checker can overflow a stack). Integer
arithmetic that would wrap around int64 or divide by zero is refused rather than silently wrong.
A formula's ``**`` exponents are at most ``MAX_FORMULA_DEGREE`` and it expands to at most
``MAX_FORMULA_TERMS`` terms, counted from its structure (read as patsy reads it) before patsy
expands anything: ``(a + b + ... + l)**12`` would make patsy build 4,095 terms.
"""

from __future__ import annotations

import ast
import io
import operator
import re
import tokenize
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

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
_ARITHMETIC = (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow)

#: the longest expression or formula accepted, in characters.
MAX_LENGTH = 10_000
#: the deepest nesting of brackets, of an expression's syntax tree and of a formula's operators
#: (the checker, the evaluator and patsy recurse about two Python frames per level).
MAX_DEPTH = 200
#: the most tokens and syntax-tree nodes in an expression (a formula's Python parts each).
MAX_NODES = 2_000
#: the most terms a formula may expand to (``(a + b + c)**2`` has 6); ``max_terms=`` overrides.
MAX_FORMULA_TERMS = 200
#: the largest exponent of a formula's ``**`` (``(a + b)**2``); ``max_degree=`` overrides.
MAX_FORMULA_DEGREE = 10
_SHOWN = 130  # longer text is shortened in refusals, which stay one readable line
_TOKEN = re.compile(r"\w+|\S")


class ExpressionError(ValueError):
    """An expression uses a construct, a name or a function that is not allowed, or is too big.

    ``reason`` is the message without the leading ``expression '...':`` or ``formula '...':``,
    for callers that name the text themselves (``fit_formula '...': <reason>``).
    """

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = message if reason is None else reason


def _shown(text: str) -> str:
    """``repr(text)``, shortened when long: a refusal names the culprit on one line."""
    if len(text) <= _SHOWN:
        return repr(text)
    return f"{text[:100]!r}... ({len(text):,} characters)"


def _refusal(kind: str, text: str, why: str) -> ExpressionError:
    """``<kind> '<text>': <why>`` as an ExpressionError whose reason is ``why``."""
    return ExpressionError(f"{kind} {_shown(text)}: {why}", why)


def _uses_name(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) for n in ast.walk(node))


def _segment(expression: str, node: ast.AST) -> str:
    text = ast.get_source_segment(expression, node)
    return text if text else type(node).__name__


def _nesting(text: str) -> str | None:
    """Why ``text`` is too long or too deeply bracketed to parse safely, or None."""
    if len(text) > MAX_LENGTH:
        return f"longer than {MAX_LENGTH:,} characters (MAX_LENGTH)"
    depth = deepest = 0
    for char in text:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        return f"brackets nested deeper than {MAX_DEPTH} levels (MAX_DEPTH)"
    return None


def _tree_size(tree: ast.AST) -> str | None:
    """Why a parsed tree is too deep or too big for the recursive checker, or None.

    Walks with an explicit stack: the tree itself may be thousands of levels deep.
    """
    stack, count = [(tree, 1)], 0
    while stack:
        node, depth = stack.pop()
        count += 1
        if depth > MAX_DEPTH:
            return f"nested deeper than {MAX_DEPTH} levels (MAX_DEPTH)"
        if count > MAX_NODES:
            return f"more than {MAX_NODES:,} syntax nodes (MAX_NODES)"
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return None


def _parse(expression: str) -> ast.Expression:
    """Parse an expression whose size is bounded before and after ``ast.parse``."""
    if not isinstance(expression, str):
        raise TypeError(f"an expression must be a string, got {type(expression).__name__}")
    why = _nesting(expression)
    if why is None and len(_TOKEN.findall(expression)) > MAX_NODES:
        why = f"more than {MAX_NODES:,} tokens (MAX_NODES)"
    if why is not None:
        raise _refusal("expression", expression, why)
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except SyntaxError as err:
        raise _refusal("expression", expression, f"not valid syntax: {err.msg}") from None
    except (RecursionError, MemoryError):  # the parser's own guards, whatever the limits
        raise _refusal("expression", expression, "too deeply nested to parse") from None
    why = _tree_size(tree)
    if why is not None:
        raise _refusal("expression", expression, why)
    return tree


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
        return _refusal(
            "expression", self.expression, f"{why}: {_shown(_segment(self.expression, node))}"
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
    ExpressionError (a ValueError), one line naming the offending part or the size limit passed
    (``MAX_LENGTH``, ``MAX_DEPTH``, ``MAX_NODES``).
    """
    checker = _Checker(expression, allowed_names, bare_functions, extra_functions or {})
    checker.visit(_parse(expression))
    return checker.names


def evaluate(expression: str, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate a restricted expression elementwise over numpy columns.

    Integer arithmetic stays exact (booleans count as 0 and 1, as in Python); where its result
    would wrap around int64 or divide by zero, the expression is refused, not silently wrong.

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
        raise _refusal("expression", expression, f"failed on the data: {err}") from None


def _no_bool(value: np.ndarray) -> np.ndarray:
    """Booleans as 0/1 integers for arithmetic (numpy's ``True + True`` is True, Python's 2)."""
    return value.astype(np.int64) if value.dtype == np.bool_ else value


def _as_float(value: np.ndarray) -> np.ndarray:
    return value.astype(np.float64) if value.dtype.kind in "iu" else value


class _Evaluator(ast.NodeVisitor):
    """Evaluate a checked expression node by node, elementwise over numpy columns."""

    def __init__(self, expression: str, columns: Mapping[str, np.ndarray]) -> None:
        self.expression = expression
        self.columns = columns
        self.values: dict[str, np.ndarray] = {}

    def generic_visit(self, node: ast.AST):
        raise _refusal("expression", self.expression, f"cannot evaluate {type(node).__name__}")

    def visit_Expression(self, node: ast.Expression):
        return self.visit(node.body)

    def visit_Constant(self, node: ast.Constant):
        return np.asarray(node.value)  # numpy scalars: no unbounded Python-int arithmetic

    def visit_Name(self, node: ast.Name):
        if node.id not in self.columns:
            raise KeyError(
                f"expression {_shown(self.expression)}: column {node.id!r} not found; "
                f"available columns: {sorted(map(str, self.columns))}"
            )
        if node.id not in self.values:
            self.values[node.id] = np.asarray(self.columns[node.id])
        return self.values[node.id]

    def visit_Attribute(self, node: ast.Attribute):
        return np.asarray(CONSTANTS[node.attr])

    def visit_BinOp(self, node: ast.BinOp):
        func = _BINARY[type(node.op)]
        left, right = self.visit(node.left), self.visit(node.right)
        if isinstance(node.op, _ARITHMETIC):
            return self.exact(node, func, _no_bool(left), _no_bool(right))
        return func(left, right)

    def visit_UnaryOp(self, node: ast.UnaryOp):
        func, value = _UNARY[type(node.op)], self.visit(node.operand)
        if isinstance(node.op, ast.USub | ast.UAdd):
            return self.exact(node, func, _no_bool(value))
        return func(value)

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
        return self.exact(node, FUNCTIONS[name], *(self.visit(arg) for arg in node.args))

    def exact(self, node: ast.AST, func: Callable, *args: np.ndarray) -> np.ndarray:
        """``func(*args)``, refused where an integer result is not the true value.

        numpy's int64 arithmetic wraps around (``2**64`` is 0) and gives 0 for ``x // 0``:
        the same operation in float64 tells (a relative 1e-9 covers its rounding).
        """
        result = np.asarray(func(*args))
        if result.dtype.kind not in "iu":
            return result
        approx = np.asarray(func(*(_as_float(np.asarray(a)) for a in args)), dtype=np.float64)
        close = np.abs(approx - result) <= 1e-9 * np.abs(approx) + 0.5
        if np.all(np.isfinite(approx) & close):
            return result
        raise _refusal(
            "expression",
            self.expression,
            "integer arithmetic out of the int64 range or divided by zero in "
            f"{_shown(_segment(self.expression, node))}; write a float (2.0) to compute in float64",
        )


# ---- formulas: read as patsy reads them, bounded before patsy expands anything ----

_PRECEDENCE = {"+": 100, "-": 100, "*": 200, "/": 200, ":": 300, "**": 500}  # patsy's
_UNARY_PRECEDENCE = 100  # patsy's unary '+' and '-'
_OPEN, _CLOSE = ("(", "[", "{"), (")", "]", "}")
_PYTHON_TOKENS = (tokenize.NAME, tokenize.NUMBER, tokenize.OP, tokenize.STRING)


class _Token(NamedTuple):
    """A formula token: kind 'atom' (a Python expression), 'op', 'unary', '(' or ')'."""

    kind: str
    text: str


class _Expr(NamedTuple):
    """A formula value as patsy's ``IntermediateExpr`` holds it, with its kind and depth."""

    kind: str  # 'atom', 'zero', 'one', 'number' (as patsy's tokens) or 'group'
    terms: tuple[frozenset[str], ...]  # each term as its set of factors, deduplicated
    intercept: bool
    removed: bool
    depth: int
    text: str = ""


def _formula_error(formula: str, why: str) -> ExpressionError:
    return _refusal("formula", formula, why)


def _python_tokens(code: str, formula: str) -> list[tuple[str, int, int]]:
    """Python's tokens of one line of formula, as patsy reads them: (text, start, end)."""
    pieces = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(code).readline):
            if token.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
                continue
            if token.type == tokenize.ERRORTOKEN and token.string == " ":
                continue  # Python 3.11 marks the space before an unreadable character
            if token.type not in _PYTHON_TOKENS or token.start[0] != 1:
                raise _formula_error(formula, f"cannot read {_shown(token.string)}")
            pieces.append((token.string, token.start[1], token.end[1]))
    except (tokenize.TokenError, SyntaxError) as err:
        unclosed = "EOF" in str(err) or "parenthes" in str(err)
        why = "unbalanced parentheses" if unclosed else f"cannot be read: {err}"
        raise _formula_error(formula, why) from None
    return pieces


def _formula_tokens(side: str, formula: str) -> list[_Token]:
    """patsy's tokens of one side of a formula: operators, brackets and Python expressions.

    Mirrors ``patsy.parse_formula._tokenize_formula``: a Python expression runs until a
    formula operator or a ')' outside its own brackets, so ``np.log(x + 1)`` is one atom,
    ``1e-3`` a number and ``x // 2`` one expression.
    """
    code = side.replace("\n", " ").strip()
    pieces = _python_tokens(code, formula)
    tokens, i = [], 0
    while i < len(pieces):
        text = pieces[i][0]
        if text in _PRECEDENCE or text in ("(", ")"):
            tokens.append(_Token("op" if text in _PRECEDENCE else text, text))
            i += 1
            continue
        j, level = i, 0
        while j < len(pieces) and not (level == 0 and pieces[j][0] in (*_PRECEDENCE, ")")):
            level += (pieces[j][0] in _OPEN) - (pieces[j][0] in _CLOSE)
            if level < 0:
                raise _formula_error(formula, "unbalanced parentheses")
            j += 1
        if level:
            raise _formula_error(formula, "unbalanced parentheses")
        tokens.append(_Token("atom", code[pieces[i][1] : pieces[j - 1][2]]))
        i = j
    return tokens


def _precedence(token: _Token) -> int:
    return _UNARY_PRECEDENCE if token.kind == "unary" else _PRECEDENCE[token.text]


def _read_operand(token: _Token, out: list, stack: list, formula: str) -> bool:
    """A token where a term is expected; whether a term is still expected after it."""
    if token.kind == "atom":
        out.append(token)
        return False
    if token.kind == "(":
        stack.append(token)
    elif token.text in ("+", "-"):
        stack.append(_Token("unary", token.text))
    else:
        raise _formula_error(formula, f"expected a term, not {token.text!r}")
    return True


def _read_operator(token: _Token, out: list, stack: list, formula: str) -> bool:
    """A token after a term: ')' or a binary operator; whether a term is expected next."""
    if token.kind == ")":
        while stack and stack[-1].kind != "(":
            out.append(stack.pop())
        if not stack:
            raise _formula_error(formula, "unbalanced parentheses")
        stack.pop()
        return False
    if token.kind != "op":  # '(a) b', '(a)(b)'
        raise _formula_error(formula, f"expected an operator, not {_shown(token.text)}")
    while stack and stack[-1].kind != "(" and _precedence(token) <= _precedence(stack[-1]):
        out.append(stack.pop())
    stack.append(token)
    return True


def _postfix(tokens: list[_Token], formula: str) -> list[_Token]:
    """Formula tokens in postfix order, by patsy's precedences (all left-associative)."""
    out: list[_Token] = []
    stack: list[_Token] = []
    want_operand = True
    for token in tokens:
        read = _read_operand if want_operand else _read_operator
        want_operand = read(token, out, stack, formula)
    if want_operand:
        raise _formula_error(formula, "ends with an operator, not a term")
    if any(token.kind == "(" for token in stack):
        raise _formula_error(formula, "unbalanced parentheses")
    return out + stack[::-1]


def _atom(text: str) -> _Expr:
    """A Python expression of a formula, classified as patsy's tokenizer does."""
    code = text.strip()
    if code in ("0", "1"):
        return _Expr("zero" if code == "0" else "one", (), code == "1", code == "0", 1, code)
    for kind in (int, float):
        try:
            kind(code)
            return _Expr("number", (), False, False, 1, code)
        except ValueError:
            pass
    return _Expr("atom", (frozenset({"".join(code.split())}),), False, False, 1, code)


def _unique(terms: Iterable[frozenset[str]]) -> tuple[frozenset[str], ...]:
    return tuple(dict.fromkeys(terms))


class _Limits:
    """The limits one formula is read with, and the work spent on products of terms so far."""

    def __init__(self, formula: str, max_terms: int, max_degree: int) -> None:
        self.formula, self.max_terms, self.max_degree = formula, max_terms, max_degree
        self.products = 0

    def too_many(self) -> ExpressionError:
        return _formula_error(
            self.formula,
            f"expands to more than {self.max_terms} terms, the limit "
            "(max_terms=, MAX_FORMULA_TERMS)",
        )

    def interaction(self, left: tuple, right: tuple) -> tuple[frozenset[str], ...]:
        """Every term of ``left`` with every term of ``right``, within a budget of products.

        patsy spends about 10 µs a product: ``F:F:F:...`` with ``F = (a+b+c+d+e+f+g)**7``
        stays at 127 terms but costs 16,129 products a ``:``. ``max_terms**2`` products in
        all (40,000, under a second in patsy) is far above what a model of ``max_terms``
        terms needs.
        """
        self.products += len(left) * len(right)
        if self.products > self.max_terms**2:
            raise _formula_error(
                self.formula,
                f"expands through more than {self.max_terms**2:,} products of terms, the "
                "limit (max_terms**2; max_terms=, MAX_FORMULA_TERMS)",
            )
        return _unique(a | b for a in left for b in right)


def _sum(op: str, left: _Expr, right: _Expr, depth: int) -> _Expr:
    """``left + right`` or ``left - right`` with patsy's intercept rules."""
    if right.kind == "zero":  # '+ 0' removes the intercept, '- 0' keeps it
        return _Expr("group", left.terms, op == "-", op == "+", depth)
    if op == "-" and right.kind == "one":
        return _Expr("group", left.terms, False, True, depth)
    if op == "+":
        terms = _unique(left.terms + right.terms)
        flags = (True, False) if right.intercept else (left.intercept, left.removed)
    else:
        terms = tuple(term for term in left.terms if term not in set(right.terms))
        flags = (False, True) if right.intercept else (left.intercept, left.removed)
    return _Expr("group", terms, *flags, depth)


def _degree(exponent: _Expr, formula: str, max_degree: int) -> int:
    """The exponent of ``**``: a whole number from 1 to ``max_degree``, as written."""
    try:
        degree = int(exponent.text) if exponent.kind in ("one", "number") else 0
    except ValueError:
        degree = 0
    if degree < 1:
        raise _formula_error(
            formula,
            f"the exponent of '**' must be a whole number from 1 to {max_degree}, "
            f"not {_shown(exponent.text) if exponent.text else 'an expression'}",
        )
    if degree > max_degree:
        raise _formula_error(
            formula,
            f"{_shown('**' + exponent.text)} is above the limit of degree {max_degree} "
            "(max_degree=, MAX_FORMULA_DEGREE)",
        )
    return degree


def _product(op: str, left: _Expr, right: _Expr, limits: _Limits) -> tuple:
    """The terms of ``left * right``, ``left / right``, ``left : right`` or ``left ** n``."""
    if op == ":":
        return limits.interaction(left.terms, right.terms)
    if op == "*":
        return _unique(left.terms + right.terms + limits.interaction(left.terms, right.terms))
    if op == "/":
        nested = (frozenset().union(*left.terms),)
        return _unique(left.terms + limits.interaction(nested, right.terms))
    degree, terms = _degree(right, limits.formula, limits.max_degree), left.terms
    power = terms
    for _ in range(1, min(len(left.terms), degree)):  # as patsy: (a + b)**5 is (a + b)**2
        power = limits.interaction(left.terms, power)
        terms = _unique(terms + power)
        if len(terms) > limits.max_terms:
            raise limits.too_many()
    return terms


def _apply(token: _Token, left: _Expr | None, right: _Expr, limits: _Limits) -> _Expr:
    """One formula operator on its operands (``left`` is None for a unary one)."""
    if left is None:
        if token.text == "+":
            return right._replace(kind="group", depth=right.depth + 1)
        # patsy: '-0' adds the intercept, '-1' removes it (anything else is its error)
        return _Expr("group", (), right.kind == "zero", right.kind == "one", right.depth + 1)
    depth = 1 + max(left.depth, right.depth)
    if token.text in ("+", "-"):
        return _sum(token.text, left, right, depth)
    return _Expr("group", _product(token.text, left, right, limits), False, False, depth)


def _expand(postfix: list[_Token], limits: _Limits) -> int:
    """Count the terms patsy would build, refusing as soon as a limit is passed.

    Each step keeps at most ``max_terms`` terms and all steps together at most
    ``max_terms**2`` products of terms, whatever the formula asks for.
    """
    stack: list[_Expr] = []
    for token in postfix:
        if token.kind == "atom":
            stack.append(_atom(token.text))
            continue
        right = stack.pop()
        value = _apply(token, None if token.kind == "unary" else stack.pop(), right, limits)
        if len(value.terms) > limits.max_terms:
            raise limits.too_many()
        # a sum of max_terms terms is that deep already: only nesting beyond it is refused
        deepest = MAX_DEPTH + 2 * limits.max_terms
        if value.depth > deepest:
            raise _formula_error(limits.formula, f"operators nested deeper than {deepest} levels")
        stack.append(value)
    return len(stack[0].terms) if stack else 0


def _limit(value: int | None, default: int, name: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _read_side(side: str, formula: str, max_terms: int | None, max_degree: int | None):
    """One side of a formula: its Python expressions (atoms) and its number of terms."""
    tokens = _formula_tokens(side, formula)
    if not tokens:
        return [], 0
    limits = _Limits(
        formula,
        _limit(max_terms, MAX_FORMULA_TERMS, "max_terms"),
        _limit(max_degree, MAX_FORMULA_DEGREE, "max_degree"),
    )
    terms = _expand(_postfix(tokens, formula), limits)
    return [token.text for token in tokens if token.kind == "atom"], terms


def _sides(formula: str) -> tuple[str, str]:
    """``lhs ~ rhs`` split at its one ``~``, refused when too long or too deeply bracketed."""
    if not isinstance(formula, str):
        raise TypeError(f"a formula must be a string, got {type(formula).__name__}")
    why = _nesting(formula)
    if why is not None:
        raise _formula_error(formula, why)
    if formula.count("~") != 1:
        raise _formula_error(formula, "must have the form 'target ~ terms'")
    lhs, rhs = formula.split("~")
    return lhs, rhs


def bound_formula(
    formula: str, *, max_terms: int | None = None, max_degree: int | None = None
) -> int:
    """Refuse a formula that patsy would expand too far; return its number of terms.

    Counted from the formula's structure, read as patsy reads it, before patsy sees it: each
    ``**`` exponent must be a whole number from 1 to ``max_degree``, the right-hand side must
    expand to at most ``max_terms`` terms (the intercept not counted), its operators nest at
    most ``MAX_DEPTH`` levels and its Python parts are bounded in size as expressions are. Their
    grammar is not checked (see ``check_formula``), so this also bounds trusted formulas.

    Parameters
    ----------
    formula : ``'target ~ terms'``, or the right-hand side alone (no ``~``).
    max_terms, max_degree : the limits; None uses ``MAX_FORMULA_TERMS``/``MAX_FORMULA_DEGREE``.

    Raises
    ------
    ExpressionError (a ValueError), one line naming the formula and the limit.
    """
    if isinstance(formula, str) and "~" not in formula:
        why = _nesting(formula)
        if why is not None:
            raise _formula_error(formula, why)
        rhs = formula
    else:
        rhs = _sides(formula)[1]
    atoms, terms = _read_side(rhs, formula, max_terms, max_degree)
    for atom in atoms:  # patsy compiles each: its size is bounded, whatever its grammar
        try:
            _parse(atom)
        except ExpressionError as err:
            raise _formula_error(formula, str(err)) from None
    return terms


def _identity(value):
    return value


def _check_atoms(atoms: list[str], formula: str, allowed: set[str] | None) -> list[str]:
    """The column names of a formula's Python expressions, each checked as an expression."""
    names: list[str] = []
    for atom in atoms:
        try:
            found = check(atom, allowed, bare_functions=False, extra_functions={"I": _identity})
        except ExpressionError as err:
            raise _formula_error(formula, str(err)) from None
        names += [name for name in found if name not in names]
    return names


def check_formula(
    formula: str,
    allowed_names: Iterable[str] | None = None,
    *,
    max_terms: int | None = None,
    max_degree: int | None = None,
) -> list[str]:
    """Check a model formula ``'target ~ x + np.log(r) + x:r + I(x**2) - 1'``, bounded.

    The formula is read as patsy reads it: formula operators (``+``, ``-``, ``*``, ``/``,
    ``:``, ``**``) outside the brackets of Python expressions, and every Python expression
    must be a restricted expression (see ``check``) using ``np.<function>`` or ``I(...)``;
    patsy then evaluates the formula. Its size is bounded first (see ``bound_formula``).

    Parameters
    ----------
    formula : the formula text.
    allowed_names : column names it may use (``target`` is always allowed on the left); None
        accepts any name not starting with ``_``.
    max_terms, max_degree : the size limits; None uses ``MAX_FORMULA_TERMS`` and
        ``MAX_FORMULA_DEGREE``.

    Returns
    -------
    The column names used on the right-hand side.

    Raises
    ------
    ExpressionError (a ValueError), one line naming the formula and the offending part.
    """
    lhs, rhs = _sides(formula)
    if not rhs.strip():
        raise _formula_error(formula, "has no terms on the right-hand side")
    allowed = None if allowed_names is None else set(allowed_names)
    lhs_atoms = _read_side(lhs, formula, None, None)[0]
    rhs_atoms = _read_side(rhs, formula, max_terms, max_degree)[0]
    _check_atoms(lhs_atoms, formula, None if allowed is None else allowed | {"target"})
    return _check_atoms(rhs_atoms, formula, allowed)
