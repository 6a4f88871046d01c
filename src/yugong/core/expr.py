"""A small, safe expression language evaluated over NumPy arrays.

Computed points at the edge and rule conditions on the platform are written as Python-like
expressions (``voltage * current * 1.732 * pf / 1000``, ``temp > 80 and not door_open``).
The text is parsed with :mod:`ast` and only a whitelist of node types is accepted: numbers,
``True``/``False``, names, ``+ - * / // % **``, unary ``-``/``+``, chained comparisons,
``and``/``or``/``not``, ``a if c else b`` and calls to :data:`FUNCTIONS` with positional
arguments. Anything else (attributes, subscripts, strings, lambdas, comprehensions, keyword
arguments, ...) is refused with an :class:`ExprError` naming the construct and its column.
Nothing is ever passed to ``eval``/``exec``.

The accepted tree is compiled once into nested closures. Evaluation is vectorised: every name
is bound to a NumPy array (or a scalar) and the whole expression runs element-wise.

Semantics worth knowing:

- Numbers are float64; booleans are 1.0/0.0 in the result.
- Division by zero and domain errors do not raise: ``1/0`` is ``inf``, ``0/0`` and
  ``sqrt(-1)`` are ``NaN`` (IEEE 754 under ``np.errstate(all="ignore")``).
- NaN propagates through arithmetic and functions; comparisons with NaN are false; in a
  boolean context (``and``, ``or``, ``not``) NaN counts as false; a NaN condition of
  ``a if c else b`` or ``where(c, a, b)`` gives NaN (an unknown condition picks neither side).
- ``pi``, ``nan`` and ``inf`` are reserved constants, not point names.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from yugong.core.errors import FieldError, InvalidInput

Array = npt.NDArray[Any]
Value = Array | float
Env = Mapping[str, "npt.ArrayLike | float"]
_Node = Callable[[Env], Value]

MAX_LENGTH = 2000  # characters of expression text
MAX_NODES = 300  # expression nodes (names, constants, operations, calls) after parsing
MAX_CONSTANT = 1e15  # absolute value of a literal number
MAX_EXPONENT = 64.0  # absolute value of a literal exponent after ``**``

CONSTANTS: dict[str, float] = {"pi": math.pi, "nan": math.nan, "inf": math.inf}


class ExprError(InvalidInput):
    """An expression that is malformed, uses a refused construct, or lacks an input."""

    column: int | None = None


def _error(text: str, msg: str, node: ast.AST | int | None = None) -> ExprError:
    col = node if isinstance(node, int) or node is None else getattr(node, "col_offset", None)
    where = f" at column {col + 1}" if col is not None else ""
    err = ExprError(
        f"expression {text!r}: {msg}{where}", [FieldError("expression", f"{msg}{where}")]
    )
    err.column = None if col is None else col + 1
    return err


# ---------------------------------------------------------------- vectorised primitives


def _num(x: Value) -> Value:
    """Arithmetic operand as float64 (booleans become 0/1)."""
    if isinstance(x, np.ndarray):
        return x if x.dtype == np.float64 else x.astype(np.float64)
    return float(x)


def _truth(x: Value) -> Array:
    """Boolean-context value: non-zero and not NaN."""
    a = np.asarray(x)
    if a.dtype == np.bool_:
        return a
    af = a.astype(np.float64, copy=False)
    return (af != 0) & ~np.isnan(af)


def _select(c: Value, a: Value, b: Value) -> Array:
    ca = np.asarray(c)
    out = np.where(_truth(ca), _num(a), _num(b))
    if ca.dtype != np.bool_:
        cf = ca.astype(np.float64, copy=False)
        out = np.where(np.isnan(cf), np.nan, out)
    return np.asarray(out, dtype=np.float64)


def _round(x: Value, ndigits: Value = 0.0) -> Array:
    return np.round(_num(x), int(ndigits))


def _fold(f: Callable[[Value, Value], Value]) -> Callable[..., Value]:
    def call(*args: Value) -> Value:
        acc = _num(args[0])
        for a in args[1:]:
            acc = f(acc, _num(a))
        return acc

    return call


@dataclass(frozen=True)
class Function:
    fn: Callable[..., Value]
    min_args: int
    max_args: int


def _f1(f: Callable[[Any], Any]) -> Function:
    return Function(lambda x: f(_num(x)), 1, 1)


FUNCTIONS: dict[str, Function] = {
    "abs": _f1(np.abs),
    "sqrt": _f1(np.sqrt),
    "exp": _f1(np.exp),
    "log": _f1(np.log),
    "log10": _f1(np.log10),
    "log2": _f1(np.log2),
    "sin": _f1(np.sin),
    "cos": _f1(np.cos),
    "tan": _f1(np.tan),
    "asin": _f1(np.arcsin),
    "acos": _f1(np.arccos),
    "atan": _f1(np.arctan),
    "sinh": _f1(np.sinh),
    "cosh": _f1(np.cosh),
    "tanh": _f1(np.tanh),
    "degrees": _f1(np.degrees),
    "radians": _f1(np.radians),
    "floor": _f1(np.floor),
    "ceil": _f1(np.ceil),
    "trunc": _f1(np.trunc),
    "sign": _f1(np.sign),
    "isnan": Function(lambda x: np.isnan(_num(x)), 1, 1),
    "atan2": Function(lambda y, x: np.arctan2(_num(y), _num(x)), 2, 2),
    "hypot": Function(lambda x, y: np.hypot(_num(x), _num(y)), 2, 2),
    "pow": Function(lambda x, y: np.power(_num(x), _num(y)), 2, 2),
    "round": Function(_round, 1, 2),
    "min": Function(_fold(np.minimum), 1, 16),
    "max": Function(_fold(np.maximum), 1, 16),
    "clip": Function(lambda x, lo, hi: np.minimum(np.maximum(_num(x), _num(lo)), _num(hi)), 3, 3),
    "where": Function(_select, 3, 3),
}

_BINOPS: dict[type[ast.operator], tuple[str, Callable[[Any, Any], Any]]] = {
    ast.Add: ("+", np.add),
    ast.Sub: ("-", np.subtract),
    ast.Mult: ("*", np.multiply),
    ast.Div: ("/", np.true_divide),
    ast.FloorDiv: ("//", np.floor_divide),
    ast.Mod: ("%", np.mod),
    ast.Pow: ("**", np.power),
}

_CMPOPS: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}

# What a refused node is called in the error message.
_CONSTRUCTS: dict[type[ast.AST], str] = {
    ast.Attribute: "attribute access",
    ast.Subscript: "subscript",
    ast.Lambda: "lambda",
    ast.ListComp: "list comprehension",
    ast.SetComp: "set comprehension",
    ast.DictComp: "dict comprehension",
    ast.GeneratorExp: "generator expression",
    ast.List: "list",
    ast.Tuple: "tuple",
    ast.Set: "set",
    ast.Dict: "dict",
    ast.JoinedStr: "f-string",
    ast.NamedExpr: "assignment expression (:=)",
    ast.Starred: "starred argument",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Slice: "slice",
    ast.In: "'in'",
    ast.NotIn: "'not in'",
    ast.Is: "'is'",
    ast.IsNot: "'is not'",
    ast.BitAnd: "bitwise '&'",
    ast.BitOr: "bitwise '|'",
    ast.BitXor: "bitwise '^'",
    ast.LShift: "shift '<<'",
    ast.RShift: "shift '>>'",
    ast.MatMult: "matrix product '@'",
    ast.Invert: "bitwise '~'",
}


def _describe(node: ast.AST) -> str:
    return _CONSTRUCTS.get(type(node), type(node).__name__)


# ---------------------------------------------------------------- compiler


class _Compiler:
    def __init__(self, text: str) -> None:
        self.text = text
        self.names: set[str] = set()

    def refuse(self, node: ast.AST, what: str | None = None) -> ExprError:
        return _error(self.text, f"{what or _describe(node)} is not allowed", node)

    def compile(self, node: ast.AST) -> _Node:
        match node:
            case ast.Constant(value=v):
                return self.constant(node, v)
            case ast.Name(id=name):
                return self.name(node, name)
            case ast.BinOp(left=left, op=op, right=right):
                return self.binop(node, left, op, right)
            case ast.UnaryOp(op=op, operand=operand):
                return self.unary(node, op, operand)
            case ast.Compare(left=left, ops=ops, comparators=comps):
                return self.compare(left, ops, comps)
            case ast.BoolOp(op=op, values=values):
                return self.boolop(op, values)
            case ast.IfExp(test=test, body=body, orelse=orelse):
                c, a, b = self.compile(test), self.compile(body), self.compile(orelse)
                return lambda env: _select(c(env), a(env), b(env))
            case ast.Call():
                return self.call(node)
        raise self.refuse(node)

    def constant(self, node: ast.AST, v: object) -> _Node:
        if isinstance(v, bool):
            b = bool(v)
            return lambda env: b
        if isinstance(v, int | float):
            if not abs(v) <= MAX_CONSTANT:
                raise _error(self.text, f"constant {v!r} exceeds {MAX_CONSTANT:g}", node)
            f = float(v)
            return lambda env: f
        if isinstance(v, str):
            raise self.refuse(node, "string literal")
        raise self.refuse(node, f"constant {type(v).__name__}")

    def name(self, node: ast.AST, name: str) -> _Node:
        if name in CONSTANTS:
            c = CONSTANTS[name]
            return lambda env: c
        if name.startswith("__"):
            raise self.refuse(node, f"name {name!r}")
        self.names.add(name)

        def lookup(env: Env) -> Value:
            try:
                v = env[name]
            except KeyError:
                raise _error(self.text, f"unknown name {name!r}", node) from None
            return v if isinstance(v, float | int | bool | np.ndarray) else np.asarray(v)

        return lookup

    def binop(self, node: ast.AST, left: ast.expr, op: ast.operator, right: ast.expr) -> _Node:
        if type(op) not in _BINOPS:
            raise self.refuse(node, _describe(op))
        if isinstance(op, ast.Pow):
            exp = right.operand if isinstance(right, ast.UnaryOp) else right
            if (
                isinstance(exp, ast.Constant)
                and isinstance(exp.value, int | float)
                and abs(exp.value) > MAX_EXPONENT
            ):
                raise _error(self.text, f"exponent {exp.value!r} exceeds {MAX_EXPONENT:g}", exp)
        f = _BINOPS[type(op)][1]
        a, b = self.compile(left), self.compile(right)
        return lambda env: f(_num(a(env)), _num(b(env)))

    def unary(self, node: ast.AST, op: ast.unaryop, operand: ast.expr) -> _Node:
        x = self.compile(operand)
        if isinstance(op, ast.USub):
            return lambda env: np.negative(_num(x(env)))
        if isinstance(op, ast.UAdd):
            return lambda env: _num(x(env))
        if isinstance(op, ast.Not):
            return lambda env: ~_truth(x(env))
        raise self.refuse(node, _describe(op))

    def compare(self, left: ast.expr, ops: list[ast.cmpop], comps: list[ast.expr]) -> _Node:
        for op, comp in zip(ops, comps, strict=True):
            if type(op) not in _CMPOPS:
                raise self.refuse(comp, _describe(op))
        terms = [self.compile(left), *(self.compile(c) for c in comps)]
        fns = [_CMPOPS[type(op)] for op in ops]

        def run(env: Env) -> Value:
            # ``a < b < c`` is ``a < b and b < c`` with ``b`` evaluated once.
            prev = _num(terms[0](env))
            out: Array | None = None
            for f, term in zip(fns, terms[1:], strict=True):
                cur = _num(term(env))
                r = np.asarray(f(prev, cur))
                out = r if out is None else out & r
                prev = cur
            assert out is not None
            return out

        return run

    def boolop(self, op: ast.boolop, values: list[ast.expr]) -> _Node:
        parts = [self.compile(v) for v in values]
        f = np.logical_and if isinstance(op, ast.And) else np.logical_or

        def run(env: Env) -> Value:
            acc = _truth(parts[0](env))
            for p in parts[1:]:
                acc = f(acc, _truth(p(env)))
            return acc

        return run

    def call(self, node: ast.Call) -> _Node:
        if not isinstance(node.func, ast.Name):
            raise self.refuse(node.func, f"call of {_describe(node.func)}")
        fname = node.func.id
        spec = FUNCTIONS.get(fname)
        if spec is None:
            known = ", ".join(sorted(FUNCTIONS))
            raise _error(self.text, f"unknown function {fname!r} (known: {known})", node)
        if node.keywords:
            raise self.refuse(node.keywords[0].value, f"keyword argument to {fname}()")
        n = len(node.args)
        if not spec.min_args <= n <= spec.max_args:
            want = (
                str(spec.min_args)
                if spec.min_args == spec.max_args
                else f"{spec.min_args} to {spec.max_args}"
            )
            raise _error(self.text, f"{fname}() takes {want} arguments, got {n}", node)
        if fname == "round" and n == 2:
            nd = node.args[1]
            if not (isinstance(nd, ast.Constant) and type(nd.value) is int):
                raise _error(self.text, "round() digits must be an integer literal", nd)
        args = [self.compile(a) for a in node.args]
        fn = spec.fn
        return lambda env: fn(*(a(env) for a in args))


# ---------------------------------------------------------------- public API


@dataclass(frozen=True)
class Expression:
    """A compiled expression; evaluate it as often as needed."""

    text: str
    names: frozenset[str]
    _run: _Node

    def evaluate(self, env: Env) -> Array:
        """Evaluate element-wise; names bind to arrays (broadcast together) or scalars.

        Returns float64 (booleans as 0/1), shaped by broadcasting the inputs (0-d if all
        inputs are scalars). Division by zero gives inf/NaN, never an exception.
        """
        with np.errstate(all="ignore"):
            try:
                out = self._run(env)
            except ValueError as exc:  # shape mismatch between bound arrays
                raise _error(self.text, f"inputs cannot be combined: {exc}") from None
        return np.asarray(out, dtype=np.float64)

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


def compile_expr(text: str) -> Expression:
    """Parse, check and compile ``text``; raise :class:`ExprError` on anything refused."""
    if not isinstance(text, str):
        raise ExprError("expression must be a string", [FieldError("expression", "not text")])
    text = text.strip()  # ``ast`` refuses leading blanks; columns count from the first glyph
    if len(text) > MAX_LENGTH:
        raise _error(text[:40] + "...", f"longer than {MAX_LENGTH} characters")
    if not text:
        raise _error(text, "empty expression")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise _error(text, f"syntax error: {exc.msg}", (exc.offset or 1) - 1) from None
    count = sum(1 for n in ast.walk(tree) if isinstance(n, ast.expr))
    if count > MAX_NODES:
        raise _error(text, f"too complex: {count} syntax nodes, at most {MAX_NODES}")
    comp = _Compiler(text)
    run = comp.compile(tree.body)
    return Expression(text, frozenset(comp.names), run)
