"""Hostile expressions and formulas: refused in one line, within a second, before any work.

Every case here hung, crashed with ``RecursionError``/``MemoryError`` or gave a silently wrong
value before the bounds of ``xslide.expressions`` (length, nesting, size, ``**`` degree, number
of formula terms, int64 range). Each refusal is an ``ExpressionError`` (a ``ValueError``) of
one line that names the culprit; a SIGALRM guard turns a hang into a failure, not a stuck run.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xslide
from xslide import expressions
from xslide.expressions import (
    ExpressionError,
    bound_formula,
    check,
    check_formula,
    evaluate,
)
from xslide.formula import ParsedFormula, checked_formula, design_matrix, parse_formula

patsy = pytest.importorskip("patsy")

BLOW_UP = "target ~ (" + "+".join(f"I(qpt*{i})" for i in range(1, 13)) + ")**12"  # 125 chars
TWELVE = "(" + "+".join(f"x{i}" for i in range(12)) + ")"
COLUMNS = {"x": np.array([1.0, 2.0]), "y": np.array([2, 3])}


@contextmanager
def within(seconds: float = 1.0, guard: float = 10.0):
    """Fail (not hang) past ``guard`` seconds; then require the block took under ``seconds``."""

    def stop(signum, frame):
        raise TimeoutError(f"still running after {guard} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, guard)
    start = time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.perf_counter() - start < seconds


def refused(call, *fragments: str, error: type[Exception] = ExpressionError) -> str:
    """Run ``call`` under the guard: it must raise ``error`` in one short line with fragments."""
    with within(), pytest.raises(error) as info:
        call()
    message = str(info.value)
    assert "\n" not in message and len(message) < 600, message
    assert isinstance(info.value, ValueError)
    for fragment in fragments:
        assert fragment in message, message
    return message


# ---- formulas: ** degree and number of terms, counted before patsy expands ----


def test_the_125_character_power_blow_up_is_refused_naming_the_formula_and_the_limit():
    message = refused(lambda: check_formula(BLOW_UP), "'**12'", "degree 10", "MAX_FORMULA_DEGREE")
    assert repr(BLOW_UP) in message  # named in full


def test_many_terms_within_the_degree_limit_are_refused_by_the_term_count():
    refused(lambda: check_formula(f"target ~ {TWELVE}**10"), "more than 200 terms", "max_terms=")
    refused(lambda: check_formula("target ~ a*b*c*d*e*f*g*h"), "more than 200 terms")  # 255
    long_sum = "target ~ " + " + ".join(f"x{i}" for i in range(250))
    refused(lambda: check_formula(long_sum), "more than 200 terms")
    assert bound_formula("target ~ a*b*c*d*e*f*g") == 127


def test_few_terms_built_through_many_products_are_refused_before_patsy_spends_minutes():
    seven = "(a + b + c + d + e + f + g)**7"  # 127 terms, closed under ':'
    assert bound_formula(f"target ~ {seven}:{seven}") == 127  # 16,129 products: patsy ~0.2 s
    chain = "target ~ " + ":".join([seven] * 150)  # patsy: ~30 s for the same 127 terms
    refused(lambda: check_formula(chain), "more than 40,000 products of terms", "max_terms")


def test_the_limits_are_set_by_keyword_or_module_constant(monkeypatch):
    assert bound_formula("target ~ a*b*c*d*e*f*g*h", max_terms=300) == 255
    assert check_formula("target ~ (a + b)**12", max_degree=12) == ["a", "b"]
    refused(lambda: bound_formula("target ~ (a + b + c)**2", max_terms=5), "more than 5 terms")
    monkeypatch.setattr(expressions, "MAX_FORMULA_TERMS", 5)
    monkeypatch.setattr(expressions, "MAX_FORMULA_DEGREE", 2)
    refused(lambda: check_formula("target ~ (a + b + c)**2"), "more than 5 terms")
    refused(lambda: check_formula("target ~ (a + b)**3"), "degree 2")
    refused(lambda: bound_formula("a", max_terms=0), "max_terms", error=ValueError)


@pytest.mark.parametrize(
    ("exponent", "shown"),
    [("c", "'c'"), ("(1 + 1)", "an expression"), ("-2", "an expression"), ("2.5", "'2.5'"),
     ("0", "'0'"), ("True", "'True'"), ("np.log(x)", "'np.log(x)'")],
)  # fmt: skip
def test_a_power_must_be_a_whole_number_from_1_to_the_degree_limit(exponent, shown):
    refused(lambda: check_formula(f"target ~ (a + b)**{exponent}"), "whole number", shown)


def test_a_huge_exponent_is_refused_without_looping():
    refused(lambda: check_formula("target ~ (a + b)**99999999999999999999999"), "degree 10")
    refused(lambda: bound_formula("target ~ x**" + "9" * 5000), "'**")


# a formula grammar with every patsy operator, intercept tricks, groups and powers
_ATOM = st.sampled_from(["a", "b", "c", "np.log(d)", "I(a * 2)", "a", "0", "1"])
_FORMULA = st.recursive(
    _ATOM,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", ":"]), inner).map(" ".join),
        st.tuples(inner, st.integers(1, 4)).map(lambda p: f"({p[0]})**{p[1]}"),
        inner.map(lambda f: f"({f})"),
        st.sampled_from(["-1", "-0", "+a"]),
    ),
    max_leaves=12,
)


@given(_FORMULA)
def test_the_term_count_is_patsys_own(rhs):
    try:
        terms = patsy.ModelDesc.from_formula(rhs).rhs_termlist
    except patsy.PatsyError:
        return  # patsy refuses it itself, quickly
    assert bound_formula(rhs, max_terms=10_000) == sum(1 for term in terms if term.factors)


def test_formulas_are_read_as_patsy_reads_them():
    formula = "target ~ x // 2 + np.log(x + 1):y + (a + b):c - 1"
    assert check_formula(formula) == ["x", "y", "a", "b", "c"]
    assert bound_formula(formula) == len(patsy.ModelDesc.from_formula(formula).rhs_termlist) == 4
    assert check_formula("dX ~ 1e-3*z + x**2") == ["z", "x"]  # '1e-3' is one number
    assert check_formula("target ~ I(I(I(x))) + I(2**x)") == ["x"]


# ---- nesting, size and length: refused before ast.parse or patsy can overflow a stack ----


@pytest.mark.parametrize(
    ("expression", "why"),
    [
        ("-" * 9_999 + "x", "tokens"),
        ("-(" * 3_000 + "x" + ")" * 3_000, "brackets nested deeper than 200"),
        ("(" * 4_999 + "x" + ")" * 4_999, "brackets nested deeper than 200"),
        ("not " * 300 + "x", "nested deeper than 200"),
        ("~" * 300 + "x", "nested deeper than 200"),
        ("x**" * 600 + "x", "nested deeper than 200"),
        ("x+" * 4_999 + "x", "tokens"),
        ("x" + ".a" * 4_900, "tokens"),
        ("np.sqrt(" * 250 + "x" + ")" * 250, "brackets nested deeper than 200"),
        ("x" * 10_001, "longer than 10,000 characters"),
    ],
    ids=["unary-minus", "nested-minus", "parens", "not", "invert", "power-chain", "sum-chain",
         "attribute-chain", "nested-calls", "long-name"],
)  # fmt: skip
def test_deep_or_huge_expressions_are_refused_in_one_line_not_recursion_errors(expression, why):
    message = refused(lambda: check(expression), why, expression[:40])
    assert "characters)" in message  # the culprit is shown shortened, with its length
    refused(lambda: evaluate(expression, COLUMNS), why)


def test_moderate_nesting_is_still_accepted():
    assert evaluate("-(" * 50 + "x" + ")" * 50, COLUMNS).tolist() == [1.0, 2.0]
    assert evaluate(" + ".join(["x"] * 150), COLUMNS).tolist() == [150.0, 300.0]


def test_a_sum_of_nearly_max_terms_in_parentheses_is_not_too_deep():
    formula = "y ~ (" + " + ".join(f"a{i}" for i in range(200)) + ") - a0"
    assert expressions.bound_formula(formula) == 199


@pytest.mark.parametrize(
    ("formula", "why"),
    [
        ("target ~ " + "(" * 3_000 + "x" + ")" * 3_000, "brackets nested deeper than 200"),
        ("target ~ I(" + "-(" * 3_000 + "x" + ")" * 3_001, "brackets nested deeper than 200"),
        ("target ~ " + " + ".join(["x"] * 2_000), "operators nested deeper than 600"),
        ("target ~ " + "+ " * 4_000 + "x", "operators nested deeper than 600"),
        ("target ~ I(" + "I(" * 300 + "x" + ")" * 301, "brackets nested deeper than 200"),
        ("target ~ I(" + "not " * 300 + "x)", "nested deeper than 200"),
        ("target ~ " + "x" * 10_001, "longer than 10,000 characters"),
    ],
    ids=["parens", "nested-minus-in-I", "sum-chain", "unary-plus-chain", "nested-I", "not-in-I",
         "long-name"],
)  # fmt: skip
def test_deep_or_huge_formulas_are_refused_in_one_line(formula, why):
    refused(lambda: check_formula(formula), why, "formula 'target ~ ")
    refused(lambda: checked_formula(formula, trusted=True), why, "fit_formula 'target ~ ")


def test_long_names_are_shown_shortened():
    name = "q" * 5_000
    message = refused(lambda: check(f"{name} > 0", allowed_names=["qpt"]), "unknown column")
    assert "5,004 characters" in message and "5,000 characters" in message
    refused(lambda: check_formula(f"target ~ {name}", ["qpt"]), "unknown column")


# ---- constants and arithmetic: no unbounded integers, no silent int64 wraparound ----


@pytest.mark.parametrize(
    ("expression", "culprit"),
    [
        ("99999999999999999999 + x", "99999999999999999999"),
        pytest.param("9" * 5_000, "4300 digits", id="5000-digits"),
        ("2**64", "'2**64'"),
        ("9223372036854775807 + 1", "int64 range"),
        ("y * 9223372036854775807", "'y * 9223372036854775807'"),
        ("y // 0", "divided by zero"),
        ("y % 0", "'y % 0'"),
        ("np.power(y, 70)", "'np.power(y, 70)'"),
        ("np.abs(-9223372036854775807 - 1)", "int64 range"),
    ],
)
def test_integer_results_are_exact_or_refused(expression, culprit):
    refused(lambda: evaluate(expression, COLUMNS), culprit)


def test_exact_integer_arithmetic_is_kept():
    assert evaluate("2**62 + (y - y)", COLUMNS).tolist() == [2**62, 2**62]
    assert evaluate("(y > 2) + (y > 2)", COLUMNS).tolist() == [0, 2]  # Python's True + True
    assert evaluate("y // 2 * 7 % 5", COLUMNS).dtype == np.int64
    assert evaluate("2.0**64", COLUMNS) == 2.0**64


@pytest.mark.parametrize(
    "formula",
    ["target ~ I(10**400)", "target ~ I(x**10**10)", "target ~ x + 123456789012345678901234"],
)
def test_formula_constants_patsy_would_compute_as_python_ints_are_refused(formula):
    refused(lambda: check_formula(formula), "formula")


# ---- attribute tricks and malformed formulas ----


@pytest.mark.parametrize(
    ("expression", "culprit"),
    [
        ("np.sqrt.__call__(x)", "np.sqrt.__call__"),
        ("np.linalg.inv(x)", "np.linalg"),
        ("np.random.seed(1)", "np.random"),
        ("np.e.real", "np.e.real"),
        ("x.real", "x.real"),
        ("np.sqrt(x).__class__", "np.sqrt(x).__class__"),
        ("getattr(np, 'sqrt')", "getattr"),
        ("(x).__class__.__mro__", "__mro__"),
    ],
)
def test_attribute_tricks_are_refused(expression, culprit):
    refused(lambda: check(expression), culprit)
    refused(lambda: check_formula(f"target ~ I({expression})"), culprit)


@pytest.mark.parametrize(
    ("formula", "why"),
    [
        ("target ~ x +", "ends with an operator"),
        ("target ~ (x", "unbalanced"),
        ("target ~ x)", "unbalanced"),
        ("target ~ ()", "expected a term"),
        ("target ~ (a) b", "expected an operator, not 'b'"),
        ("target ~ (a)(b)", "expected an operator, not '('"),
        ("target ~ x $ y", "cannot read '$'"),
        ("target ~ x # comment", "cannot read '# comment'"),
        ("target ~ I(x) (y)", "only calls of np.<function>"),
        ("target ~ 'a + b'", "only numbers"),
    ],
)
def test_malformed_formulas_are_refused_in_one_line(formula, why):
    refused(lambda: check_formula(formula), why)


@given(st.text(alphabet="ab()+-*/:~ 0123456789.I[]'_%", max_size=40))
def test_any_formula_text_is_accepted_or_refused_never_a_crash(text):
    for formula in (text, f"target ~ {text}"):
        try:
            check_formula(formula)
            bound_formula(formula)
        except ExpressionError as err:
            assert "\n" not in str(err)


@given(st.text(alphabet="xy()+-*/%~<>=&|^ 0123456789.enotand", max_size=40))
def test_any_expression_text_is_evaluated_or_refused_never_a_crash(text):
    try:
        evaluate(text, COLUMNS)
    except (ExpressionError, KeyError) as err:
        assert "\n" not in str(err)


# ---- where formulas are parsed: the API, predict and the command line ----


def test_the_python_api_bounds_formulas_before_patsy(monkeypatch):
    refused(lambda: parse_formula(BLOW_UP, ["y"]), "fit_formula", "degree 10")
    parse_formula(f"target ~ {TWELVE}**2", ["y"])  # 78 terms
    refused(lambda: parse_formula(f"target ~ {TWELVE}**3", ["y"]), "more than 200 terms")
    assert parse_formula(f"target ~ {TWELVE}**3", ["y"], max_terms=300).max_terms == 300

    def no_patsy(*args, **kwargs):
        raise AssertionError("patsy expanded a formula before it was bounded")

    monkeypatch.setattr(patsy.ModelDesc, "from_formula", no_patsy)
    by_hand = ParsedFormula(BLOW_UP, BLOW_UP.split("~")[1])  # never through parse_formula
    refused(lambda: design_matrix(by_hand, lambda n: np.ones(3), ["qpt"]), "degree 10")


def test_the_api_fit_refuses_the_blow_up_before_reading_rows():
    df = pd.DataFrame({"b": [0, 0, 1, 1], "qpt": [1.0, 2.0, 3.0, 4.0], "y": [1.0, 2, 3, 4]})
    refused(lambda: xslide.fit(df, ["b"], ["y"], formula=BLOW_UP), "fit_formula", "degree 10")


def test_checked_formula_holds_the_api_to_the_command_lines_grammar_unless_trusted():
    formula = "target ~ x + np.log(r) + I(x**2)"
    assert checked_formula(formula) == formula
    refused(lambda: checked_formula("target ~ C(x)"), "fit_formula 'target ~ C(x)'", "'C'")
    refused(lambda: checked_formula("target ~ x + __import__('os').getcwd()"), "attribute")
    refused(lambda: checked_formula("target ~ z", allowed_names=["x"]), "unknown column")
    assert checked_formula("target ~ C(x) + center(r)", trusted=True) == "target ~ C(x) + center(r)"
    refused(lambda: checked_formula(BLOW_UP, trusted=True), "fit_formula", "degree 10")
    with pytest.raises(TypeError):
        checked_formula(3)


def test_a_formula_at_the_limits_still_fits_through_patsy():
    names = [f"x{i}" for i in range(199)]
    rows = np.arange(5.0)
    parsed = parse_formula("target ~ " + " + ".join(names), ["y"])
    terms, matrix = design_matrix(parsed, lambda name: rows, names)  # patsy recursion is fine
    assert len(terms) == 200 and matrix.shape == (5, 200)
    terms, _ = design_matrix(parse_formula("target ~ (a + b + c)**3", ["y"]), lambda n: rows, "abc")
    assert len(terms) == 8


def _stored_fit(tmp_path) -> tuple[object, pd.DataFrame]:
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.integers(0, 4, 400), "qpt": rng.normal(size=400)})
    df["y"] = df.a + 2.0 * df.qpt + rng.normal(0, 0.1, 400)
    fit = xslide.fit(df, ["a"], ["y"], formula="target ~ qpt", window={"a": 1})
    fit.attrs["formula"] = BLOW_UP  # what a crafted file stores
    return fit, df


def test_predict_refuses_a_stored_blow_up_formula(tmp_path):
    fit, df = _stored_fit(tmp_path)
    refused(lambda: xslide.predict(fit, df), "degree 10")


def test_the_command_line_predict_refuses_a_crafted_file(tmp_path, capsys):
    pytest.importorskip("netCDF4")
    from xslide.cli import main

    fit, df = _stored_fit(tmp_path)
    fit.to_netcdf(tmp_path / "crafted.nc")
    df.to_csv(tmp_path / "rows.csv", index=False)
    argv = ["predict", str(tmp_path / "crafted.nc"), str(tmp_path / "rows.csv")]
    with within(seconds=5.0):
        code = main([*argv, "--out", str(tmp_path / "p.csv")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1
    assert "refusing the stored formula" in err and "degree 10" in err
    assert not (tmp_path / "p.csv").exists()
