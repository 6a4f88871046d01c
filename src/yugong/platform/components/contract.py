"""The component contract: a Python function over NumPy arrays plus its description.

A component is declared with :func:`component`::

    @component(
        "energy.power_factor", "1.0.0", Category.MECHANISM,
        title="Power factor from P and Q",
        industries=("general", "energy"),
        references=("IEEE Std 1459-2010, 3.1.1",),
        inputs={
            "p": Port.quantity("kW", "Active power"),
            "q": Port.quantity("kvar", "Reactive power"),
        },
        outputs={"pf": Port.quantity(None, "Power factor")},
    )
    def power_factor(p, q):
        \"\"\"...\"\"\"
        return {"pf": p / np.hypot(p, q)}

Calling the resulting :class:`Component` checks and converts every input (shape, unit, domain)
before the function runs, so the function only sees clean arrays in the declared units, and a
caller sees an error that names the input at fault.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from yugong.core.errors import FieldError, InvalidInput
from yugong.core.units import unit_factor

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
VERSION_PATTERN = re.compile(r"^\d+\.\d+\.\d+$")

Kind = Literal["number", "integer", "quantity", "series", "text", "boolean", "object"]
FloatArray = npt.NDArray[np.float64]


class Category(StrEnum):
    """What a component's knowledge comes from."""

    MECHANISM = "mechanism"  # physics and engineering first principles
    STATISTICAL = "statistical"
    DATA_DRIVEN = "data-driven"  # learned from data
    HYBRID = "hybrid"  # mechanism and data together


class ComponentInputError(InvalidInput):
    """An input the component cannot work with; ``loc`` names it (``inputs.<name>``)."""


def bad_input(name: str, msg: str) -> ComponentInputError:
    """The error for input ``name``: raise it from a component for out-of-domain values."""
    return ComponentInputError(f"input '{name}': {msg}", [FieldError(f"inputs.{name}", msg)])


@dataclass(frozen=True)
class Port:
    """One input or output: its kind, unit and domain; rendered as JSON Schema with ``x-unit``.

    Kinds: ``number`` (one float), ``integer``, ``quantity`` (a float or an array of floats,
    broadcast by NumPy), ``series`` (a 1-D array; with ``batch`` a 2-D array is a batch of
    series, one per row), ``text``, ``boolean``, ``object`` (any JSON checked by ``schema``).
    """

    kind: Kind
    description: str
    unit: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    min_length: int | None = None
    batch: bool = False
    allow_nan: bool = False
    enum: tuple[str, ...] | None = None
    schema: Mapping[str, Any] | None = None
    default: Any = None
    required: bool = True

    # Short constructors: the unit first, since nearly every physical port has one.
    @classmethod
    def number(cls, unit: str | None, description: str, **kw: Any) -> Port:
        return cls("number", description, unit, **kw)

    @classmethod
    def quantity(cls, unit: str | None, description: str, **kw: Any) -> Port:
        return cls("quantity", description, unit, **kw)

    @classmethod
    def series(cls, unit: str | None, description: str, **kw: Any) -> Port:
        return cls("series", description, unit, **kw)

    @classmethod
    def integer(cls, description: str, **kw: Any) -> Port:
        return cls("integer", description, **kw)

    @classmethod
    def text(cls, description: str, **kw: Any) -> Port:
        return cls("text", description, **kw)

    @classmethod
    def boolean(cls, description: str, **kw: Any) -> Port:
        return cls("boolean", description, **kw)

    @classmethod
    def object(cls, description: str, schema: Mapping[str, Any], **kw: Any) -> Port:
        return cls("object", description, schema=schema, **kw)

    def optional(self, default: Any) -> Port:
        """The same port, not required, taking ``default`` when absent."""
        return replace(self, required=False, default=default)

    @property
    def numeric(self) -> bool:
        return self.kind in ("number", "quantity", "series")

    def json_schema(self) -> dict[str, Any]:
        bounds: dict[str, Any] = {
            key: value
            for key, value in (
                ("minimum", self.minimum),
                ("maximum", self.maximum),
                ("exclusiveMinimum", self.exclusive_minimum),
                ("exclusiveMaximum", self.exclusive_maximum),
            )
            if value is not None
        }
        out: dict[str, Any]
        if self.kind == "object":
            out = dict(self.schema or {})
        elif self.kind == "integer":
            out = {"type": "integer", **bounds}
        elif self.kind == "text":
            out = {"type": "string", **({"enum": list(self.enum)} if self.enum else {})}
        elif self.kind == "boolean":
            out = {"type": "boolean"}
        elif self.kind == "number":
            out = {"type": "number", **bounds}
        else:
            items: dict[str, Any] = {"type": "number", **bounds}
            array: dict[str, Any] = {"type": "array", "items": items}
            if self.min_length:
                array["minItems"] = self.min_length
            if self.kind == "quantity":
                out = {"oneOf": [items, array]}
            elif self.batch:
                out = {"oneOf": [array, {"type": "array", "items": array}]}
            else:
                out = array
        out["description"] = self.description
        if self.unit is not None:
            out["x-unit"] = self.unit
        if not self.required and self.default is not None:
            out["default"] = self.default
        return out

    # Input checking ------------------------------------------------------------------------

    def coerce(self, name: str, value: Any) -> Any:
        """``value`` as the function receives it, or an error naming ``name``."""
        if self.numeric:
            return self._coerce_numeric(name, value)
        if self.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise bad_input(name, f"expected an integer, got {_what(value)}")
            self._check_bounds(name, np.asarray([int(value)], dtype=np.float64))
            return int(value)
        if self.kind == "text":
            if not isinstance(value, str):
                raise bad_input(name, f"expected text, got {_what(value)}")
            if self.enum and value not in self.enum:
                raise bad_input(name, f"{value!r} is not one of {', '.join(self.enum)}")
            return value
        if self.kind == "boolean":
            if not isinstance(value, bool | np.bool_):
                raise bad_input(name, f"expected true or false, got {_what(value)}")
            return bool(value)
        return _check_object(name, value, self.schema or {})

    def _coerce_numeric(self, name: str, value: Any) -> Any:
        given_unit: str | None = None
        if isinstance(value, Mapping):
            if "value" not in value:
                keys = ", ".join(sorted(map(str, value))) or "none"
                raise bad_input(name, f"expected a value or {{value, unit}}, got keys {keys}")
            if "unit" not in value or value["unit"] in (None, ""):
                raise bad_input(
                    name, f"missing unit: give 'unit' with 'value' (expects {self.unit or '1'})"
                )
            given_unit = str(value["unit"])
            value = value["value"]
        if isinstance(value, bool):
            raise bad_input(name, "expected a number, got a boolean")
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise bad_input(name, f"expected numbers, got {_what(value)}") from None
        arr = self._check_shape(name, arr)
        if given_unit is not None:
            arr = self._convert(name, arr, given_unit)
        if not self.allow_nan and arr.size and not np.isfinite(arr).all():
            where = np.argwhere(~np.isfinite(arr))[0]
            at = ", ".join(str(int(i)) for i in where)
            raise bad_input(name, f"not a finite number at index {at}" if at else "not finite")
        self._check_bounds(name, arr)
        return float(arr) if self.kind == "number" else arr

    def _check_shape(self, name: str, arr: FloatArray) -> FloatArray:
        if self.kind == "number":
            if arr.ndim != 0:
                raise bad_input(name, f"expected one number, got an array of shape {arr.shape}")
            return arr
        if self.kind == "series":
            allowed = (1, 2) if self.batch else (1,)
            if arr.ndim not in allowed:
                expects = "a 1-D or 2-D array" if self.batch else "a 1-D array"
                raise bad_input(name, f"expected {expects}, got shape {arr.shape}")
            if self.min_length and arr.shape[-1] < self.min_length:
                raise bad_input(
                    name, f"needs at least {self.min_length} samples, got {arr.shape[-1]}"
                )
        elif self.min_length and arr.ndim and arr.shape[-1] < self.min_length:
            raise bad_input(name, f"needs at least {self.min_length} values, got {arr.shape[-1]}")
        return arr

    def _convert(self, name: str, arr: FloatArray, given: str) -> FloatArray:
        if self.unit is None:
            if given in ("1", "dimensionless", "percent", "%"):
                return arr / 100.0 if given in ("percent", "%") else arr
            raise bad_input(
                name, f"takes plain numbers (no unit conversion); send the values without {given!r}"
            )
        target = self.unit
        if given == target:
            return arr
        try:
            factor, offset = unit_factor(given, target, f"inputs.{name}")
        except InvalidInput as exc:
            msg = exc.detail.split(": ", 1)[-1]
            raise bad_input(name, msg) from None
        return arr * factor + offset

    def _check_bounds(self, name: str, arr: FloatArray) -> None:
        checks = (
            (self.minimum, np.less, "below the minimum"),
            (self.maximum, np.greater, "above the maximum"),
            (self.exclusive_minimum, np.less_equal, "must be greater than"),
            (self.exclusive_maximum, np.greater_equal, "must be less than"),
        )
        unit = f" {self.unit}" if self.unit else ""
        for bound, outside, words in checks:
            if bound is None or not arr.size:
                continue
            bad = outside(arr, bound)
            if bad.any():
                idx = np.argwhere(bad)[0]
                at = f" at index {', '.join(str(int(i)) for i in idx)}" if idx.size else ""
                val = float(arr[tuple(idx)])
                raise bad_input(name, f"{val:g}{unit}{at} is {words} {bound:g}{unit}")


def _check_object(name: str, value: Any, schema: Mapping[str, Any]) -> Any:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        loc = f"inputs.{name}{path}"
        raise ComponentInputError(
            f"input '{name}{path}': {error.message}", [FieldError(loc, error.message)]
        )
    return value


def _what(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return type(value).__name__


@dataclass(frozen=True)
class Component:
    """A named, versioned function over arrays with its inputs, outputs and documentation."""

    name: str
    version: str
    category: Category
    title: str
    func: Callable[..., Mapping[str, Any]]
    inputs: Mapping[str, Port]
    outputs: Mapping[str, Port]
    industries: tuple[str, ...] = ("general",)
    references: tuple[str, ...] = ()
    doc: str = ""
    origin: str = field(default="", compare=False)  # the distribution that provided it

    @property
    def key(self) -> tuple[str, str]:
        return self.name, self.version

    @property
    def summary(self) -> str:
        return self.doc.strip().split("\n\n", 1)[0].replace("\n", " ") if self.doc else self.title

    def prepare(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Checked and converted arguments for ``func``; unknown or missing inputs refused."""
        unknown = sorted(set(inputs) - set(self.inputs))
        if unknown:
            expects = ", ".join(self.inputs)
            raise ComponentInputError(
                f"unknown input {', '.join(repr(u) for u in unknown)}; {self.name} takes {expects}",
                [FieldError(f"inputs.{u}", "unknown input") for u in unknown],
            )
        args: dict[str, Any] = {}
        for name, port in self.inputs.items():
            if name in inputs and inputs[name] is not None:
                args[name] = port.coerce(name, inputs[name])
            elif port.required:
                raise bad_input(name, f"missing ({port.description})")
            else:
                args[name] = port.default
        return args

    def __call__(self, **inputs: Any) -> dict[str, Any]:
        """Run on checked inputs; the result holds every declared output."""
        result = dict(self.func(**self.prepare(inputs)))
        missing = [
            name for name, port in self.outputs.items() if port.required and name not in result
        ]
        extra = sorted(set(result) - set(self.outputs))
        if missing or extra:
            raise RuntimeError(
                f"component {self.name} {self.version} broke its contract: "
                f"missing outputs {missing}, undeclared outputs {extra}"
            )
        return result

    def input_schema(self) -> dict[str, Any]:
        return _object_schema(self.inputs)

    def output_schema(self) -> dict[str, Any]:
        return _object_schema(self.outputs)

    def describe(self, *, full: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "category": self.category.value,
            "title": self.title,
            "summary": self.summary,
            "industries": list(self.industries),
        }
        if full:
            out |= {
                "documentation": self.doc.strip(),
                "references": list(self.references),
                "inputs": self.input_schema(),
                "outputs": self.output_schema(),
                "origin": self.origin,
            }
        return out


def _object_schema(ports: Mapping[str, Port]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: port.json_schema() for name, port in ports.items()},
        "required": [name for name, port in ports.items() if port.required],
        "additionalProperties": False,
    }


def component(
    name: str,
    version: str,
    category: Category,
    *,
    title: str,
    inputs: Mapping[str, Port],
    outputs: Mapping[str, Port],
    industries: tuple[str, ...] = ("general",),
    references: tuple[str, ...] = (),
) -> Callable[[Callable[..., Mapping[str, Any]]], Component]:
    """Declare a component; the decorated function's docstring is its documentation."""
    if not NAME_PATTERN.match(name):
        raise ValueError(f"component name {name!r}: lowercase words joined by dots, e.g. spc.cpk")
    if not VERSION_PATTERN.match(version):
        raise ValueError(f"component {name}: version {version!r} is not MAJOR.MINOR.PATCH")

    def wrap(func: Callable[..., Mapping[str, Any]]) -> Component:
        return Component(
            name=name,
            version=version,
            category=Category(category),
            title=title,
            func=func,
            inputs=dict(inputs),
            outputs=dict(outputs),
            industries=tuple(industries),
            references=tuple(references),
            doc=_dedent(func.__doc__ or ""),
        )

    return wrap


def _dedent(doc: str) -> str:
    import inspect

    return inspect.cleandoc(doc)
