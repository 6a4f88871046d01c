"""The safe expression language: grammar, limits, vectorised semantics."""

from __future__ import annotations

import math

import numpy as np
import pytest

from yugong.core.errors import InvalidInput
from yugong.core.expr import MAX_LENGTH, MAX_NODES, ExprError, compile_expr


def refused(text: str) -> ExprError:
    with pytest.raises(ExprError) as info:
        compile_expr(text)
    assert isinstance(info.value, InvalidInput)
    assert info.value.errors and info.value.errors[0].loc == "expression"
    return info.value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("7 // 2 + 7 % 2", 4.0),
        ("2 ** 10", 1024.0),
        ("-3 + +1", -2.0),
        ("1 < 2 <= 2 < 3", 1.0),
        ("1 < 2 > 3", 0.0),
        ("True and not False", 1.0),
        ("0 or 5 == 5", 1.0),
        ("10 if 1 > 2 else 20", 20.0),
        ("clip(15, 0, 10) + clip(-1, 0, 10)", 10.0),
        ("hypot(3, 4)", 5.0),
        ("min(3, 1, 2) + max(3, 1, 2)", 4.0),
        ("round(2.567, 2)", 2.57),
        ("floor(-1.5) + ceil(1.2)", 0.0),
        ("where(1, 2, 3)", 2.0),
        ("sqrt(16) + log10(1000) + exp(0)", 8.0),
        ("pi", math.pi),
        ("isnan(nan)", 1.0),
    ],
)
def test_accepted_constructs_evaluate_like_python(text: str, expected: float) -> None:
    e = compile_expr(text)
    assert e.names == frozenset()
    assert float(e.evaluate({})) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("a.b", "attribute access is not allowed", 1),
        ("x + y.__class__", "attribute access is not allowed", 5),
        ("x[0]", "subscript is not allowed", 1),
        ("__import__('os')", "unknown function '__import__'", 1),
        ("open('f')", "unknown function 'open'", 1),
        ("lambda: 1", "lambda is not allowed", 1),
        ("[i for i in x]", "list comprehension is not allowed", 1),
        ("(i for i in x)", "generator expression is not allowed", 1),
        ("x + 'a'", "string literal is not allowed", 5),
        ("max(x, key=y)", "keyword argument to max() is not allowed", 12),
        ("x in y", "'in' is not allowed", 6),
        ("x is None", "'is' is not allowed", 6),
        ("x & 1", "bitwise '&' is not allowed", 1),
        ("~x", "bitwise '~' is not allowed", 1),
        ("(x := 1)", "assignment expression (:=) is not allowed", 2),
        ("f'{x}'", "f-string is not allowed", 1),
        ("(1, 2)", "tuple is not allowed", 1),
        ("{1: 2}", "dict is not allowed", 1),
        ("__x + 1", "name '__x' is not allowed", 1),
        ("x.real()", "call of attribute access is not allowed", 1),
        ("2 ** 1000", "exponent 1000 exceeds 64", 6),
        ("x ** -100", "exponent 100 exceeds 64", 7),
        ("1e300 * x", "constant 1e+300 exceeds", 1),
        ("99999999999999999999", "exceeds", 1),
        ("sqrt(1, 2)", "sqrt() takes 1 arguments, got 2", 1),
        ("clip(x)", "clip() takes 3 arguments, got 1", 1),
        ("round(x, y)", "round() digits must be an integer literal", 10),
        ("1 +", "syntax error", None),
        ("", "empty expression", None),
    ],
)
def test_refused_constructs_name_the_construct_and_column(
    text: str, message: str, column: int | None
) -> None:
    err = refused(text)
    assert message in err.detail
    if column is not None:
        assert err.column == column
        assert f"column {column}" in err.detail


def test_limits_on_length_and_node_count() -> None:
    assert compile_expr(" + ".join(["x"] * 100)).evaluate({"x": 1.0}) == 100.0
    assert "longer than" in refused("x + " * (MAX_LENGTH // 4) + "x").detail
    too_many = " + ".join(["x"] * (MAX_NODES // 2 + 10))
    assert len(too_many) < MAX_LENGTH
    assert "too complex" in refused(too_many).detail


def test_names_are_collected_and_reserved_constants_are_not_names() -> None:
    e = compile_expr("voltage * current * 1.732 * pf / 1000 + pi * 0")
    assert e.names == frozenset({"voltage", "current", "pf"})


def test_vectorised_evaluation_matches_scalar_math() -> None:
    rng = np.random.default_rng(7)
    v = rng.uniform(200, 420, 1000)
    i = rng.uniform(0, 50, 1000)
    pf = rng.uniform(0.6, 1.0, 1000)
    text = "sqrt(v * i) + log(pf) - abs(v - 300) / 7 if v > 300 and i < 40 else hypot(v, i) % 13"
    e = compile_expr(text)
    out = e.evaluate({"v": v, "i": i, "pf": pf})
    assert out.dtype == np.float64 and out.shape == (1000,)
    for k in range(0, 1000, 37):
        a, b, c = v[k], i[k], pf[k]
        want = (
            math.sqrt(a * b) + math.log(c) - abs(a - 300) / 7
            if a > 300 and b < 40
            else math.hypot(a, b) % 13
        )
        assert out[k] == pytest.approx(want, rel=1e-12)


def test_scalars_broadcast_with_arrays() -> None:
    e = compile_expr("voltage * current * 1.732 * pf / 1000")
    out = e.evaluate(
        {"voltage": np.array([400.0, 230.0]), "current": np.array([10.0, 5.0]), "pf": 0.9}
    )
    np.testing.assert_allclose(out, [400 * 10 * 1.732 * 0.9 / 1000, 230 * 5 * 1.732 * 0.9 / 1000])
    assert compile_expr("x + 1").evaluate({"x": 2}).shape == ()


def test_division_by_zero_and_domain_errors_give_inf_and_nan() -> None:
    x = np.array([1.0, -1.0, 0.0, 4.0])
    out = compile_expr("x / 0").evaluate({"x": x})
    assert out[0] == math.inf and out[1] == -math.inf and math.isnan(out[2])
    assert np.isnan(compile_expr("sqrt(x - 5) + log(x - 5) + acos(x * 2)").evaluate({"x": x})).all()
    assert compile_expr("log(x - 4)").evaluate({"x": x})[3] == -math.inf
    assert np.isnan(compile_expr("x // 0 + x % 0").evaluate({"x": np.array([3.0])}))[0]


def test_nan_propagates_through_arithmetic_and_is_false_in_comparisons() -> None:
    x = np.array([np.nan, 2.0])
    np.testing.assert_array_equal(compile_expr("x * 2 + 1").evaluate({"x": x}), [np.nan, 5.0])
    np.testing.assert_array_equal(compile_expr("x > 1").evaluate({"x": x}), [0.0, 1.0])
    np.testing.assert_array_equal(compile_expr("x != x").evaluate({"x": x}), [1.0, 0.0])
    # In a boolean context NaN counts as false.
    np.testing.assert_array_equal(compile_expr("x and 1").evaluate({"x": x}), [0.0, 1.0])
    np.testing.assert_array_equal(compile_expr("not x").evaluate({"x": x}), [1.0, 0.0])
    # A NaN condition picks neither branch.
    np.testing.assert_array_equal(compile_expr("1 if x else 2").evaluate({"x": x}), [np.nan, 1.0])
    np.testing.assert_array_equal(compile_expr("where(x, 1, 2)").evaluate({"x": x}), [np.nan, 1])
    np.testing.assert_array_equal(compile_expr("min(x, 1)").evaluate({"x": x}), [np.nan, 1.0])


def test_boolean_logic_is_element_wise() -> None:
    a = np.array([True, True, False, False])
    b = np.array([1.0, 0.0, 1.0, 0.0])
    np.testing.assert_array_equal(compile_expr("a and b").evaluate({"a": a, "b": b}), [1, 0, 0, 0])
    np.testing.assert_array_equal(compile_expr("a or b").evaluate({"a": a, "b": b}), [1, 1, 1, 0])
    np.testing.assert_array_equal(compile_expr("a + b").evaluate({"a": a, "b": b}), [2, 1, 1, 0])
    np.testing.assert_array_equal(
        compile_expr("b * 10 if a else -b").evaluate({"a": a, "b": b}), [10, 0, -1, 0]
    )


def test_chained_comparison_evaluates_each_term_once_per_pair() -> None:
    x = np.array([0.0, 5.0, 10.0, 11.0])
    np.testing.assert_array_equal(compile_expr("0 < x <= 10").evaluate({"x": x}), [0, 1, 1, 0])


def test_unknown_name_at_evaluation_is_a_clear_error() -> None:
    e = compile_expr("a + b")
    with pytest.raises(ExprError, match=r"unknown name 'b' at column 5"):
        e.evaluate({"a": 1.0})


def test_arrays_that_cannot_broadcast_are_a_clear_error() -> None:
    with pytest.raises(ExprError, match="inputs cannot be combined"):
        compile_expr("a + b").evaluate({"a": np.ones(3), "b": np.ones(4)})
