"""Check one property's values against its binding, a whole column at a time.

Input columns come as Python lists (decoded JSON), NumPy arrays or Arrow arrays. Lists are
checked by the set of their element types (one C-level pass) and converted once; arrays by
dtype. Errors name the property, the device and where the first bad value is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from yugong.core.errors import FieldError, InvalidInput
from yugong.core.quality import Quality
from yugong.platform.registry.bindings import PropertyBinding

Where = Callable[[int], str]  # index in the column -> "index 3" / "item 2" / ""

_KIND_WORDS = {
    "number": "a number",
    "integer": "an integer",
    "bool": "true/false (or 0/1)",
    "enum": "one of the enum keys",
    "date": "epoch milliseconds",
    "text": "a string",
    "json": "a JSON object or array",
}


@dataclass
class Rejected(InvalidInput):
    """A message or request refused whole; ``reason`` is the counter it is filed under."""

    reason: str = "invalid"


@dataclass
class Checked:
    """A validated column: ``value`` (NaN = none) or ``text``; quality per row."""

    value: npt.NDArray[np.float64] | None
    text: pa.Array | None
    quality: npt.NDArray[np.uint8]
    out_of_range: int

    def __len__(self) -> int:
        return len(self.quality)


def index_where(i: int) -> str:
    return f"index {i}"


def reject(reason: str, device: str, prop: str, msg: str, where: str = "") -> Rejected:
    at = f" at {where}" if where else ""
    detail = f"property '{prop}' of device '{device}': {msg}{at}"
    return Rejected(detail, [FieldError(f"values.{prop}", f"{msg}{at}")], reason=reason)


def _type_word(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value[:40]!r}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def check_column(
    prop: PropertyBinding,
    values: Sequence[Any] | npt.NDArray[Any] | pa.Array | pa.ChunkedArray,
    device: str,
    where: Where = index_where,
) -> Checked:
    """Validate and convert one property's values; raises :class:`Rejected`."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return _check_arrow(prop, values, device, where)
    if isinstance(values, np.ndarray):
        if values.dtype.kind in "biuf":
            return _check_numeric(prop, values, device, where)
        values = values.tolist()
    return _check_list(prop, list(values), device, where)


# Lists (decoded JSON) ------------------------------------------------------------------------


def _first(values: list[Any], bad: set[type]) -> int:
    return next(i for i, v in enumerate(values) if type(v) in bad)


def _refuse_types(
    prop: PropertyBinding, values: list[Any], bad: set[type], device: str, where: Where
) -> None:
    """Reject the column at its first value of a type the property cannot hold."""
    if bad:
        i = _first(values, bad)
        raise reject(
            "wrong_type",
            device,
            prop.identifier,
            f"expected {_KIND_WORDS[prop.kind]}, got {_type_word(values[i])}",
            where(i),
        )


def _check_list(prop: PropertyBinding, values: list[Any], device: str, where: Where) -> Checked:
    types = set(map(type, values))
    types.discard(type(None))
    kind = prop.kind
    if kind in ("text", "json"):
        allowed: set[type] = {str} if kind == "text" else {str, dict, list}
        _refuse_types(prop, values, types - allowed, device, where)
        if kind == "json" and types - {str}:
            values = [orjson.dumps(v).decode() if isinstance(v, dict | list) else v for v in values]
        return _check_text(prop, pa.array(values, type=pa.string()), device, where)
    numeric: set[type] = {int, float, bool} if kind == "bool" else {int, float}
    _refuse_types(prop, values, types - numeric, device, where)
    try:
        arr = np.array(values, dtype=np.float64)  # None -> NaN, True -> 1.0
    except OverflowError:
        raise reject("wrong_type", device, prop.identifier, "number out of range") from None
    return _check_numeric(prop, arr, device, where, bools=bool in types)


# Numbers ------------------------------------------------------------------------------------


def _check_numeric(
    prop: PropertyBinding,
    arr: npt.NDArray[Any],
    device: str,
    where: Where,
    *,
    bools: bool | None = None,
) -> Checked:
    kind = prop.kind
    if bools is None:
        bools = arr.dtype.kind == "b"
    if kind in ("text", "json"):
        i = 0 if not len(arr) else int(np.argmax(~np.isnan(arr.astype(np.float64))))
        raise reject(
            "wrong_type",
            device,
            prop.identifier,
            f"expected {_KIND_WORDS[kind]}, got a number",
            where(i),
        )
    if bools and kind != "bool":
        raise reject(
            "wrong_type",
            device,
            prop.identifier,
            f"expected {_KIND_WORDS[kind]}, got a boolean",
            where(0),
        )
    v = arr.astype(np.float64, copy=False)
    valid = ~np.isnan(v)
    if kind == "bool":
        bad = valid & (v != 0.0) & (v != 1.0)
        if bad.any():
            i = int(np.argmax(bad))
            raise reject(
                "wrong_type",
                device,
                prop.identifier,
                f"expected true/false (or 0/1), got {v[i]:g}",
                where(i),
            )
    elif kind in ("integer", "enum"):
        bad = valid & (v != np.floor(v))
        if bad.any():
            i = int(np.argmax(bad))
            raise reject(
                "not_integer",
                device,
                prop.identifier,
                f"expected an integer, got {float(v[i])!r}",
                where(i),
            )
        if kind == "enum" and prop.enum_values is not None:
            bad = valid & ~np.isin(v, np.fromiter(prop.enum_values, np.float64))
            if bad.any():
                i = int(np.argmax(bad))
                keys = ", ".join(str(k) for k in sorted(prop.enum_values))
                raise reject(
                    "not_in_enum",
                    device,
                    prop.identifier,
                    f"{int(v[i])} is not one of the enum keys ({keys})",
                    where(i),
                )
    quality = np.where(valid, np.uint8(Quality.GOOD), np.uint8(Quality.BAD)).astype(np.uint8)
    out = 0
    if prop.min is not None or prop.max is not None:
        oor = np.zeros(len(v), dtype=bool)
        if prop.min is not None:
            oor |= v < prop.min
        if prop.max is not None:
            oor |= v > prop.max
        out = int(oor.sum())
        if out:
            quality[oor] = Quality.UNCERTAIN
    return Checked(v, None, quality, out)


# Arrow --------------------------------------------------------------------------------------


def _check_arrow(prop: PropertyBinding, arr: pa.Array, device: str, where: Where) -> Checked:
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if prop.kind not in ("text", "json"):
            valid = arr.is_valid().to_numpy(zero_copy_only=False)
            i = int(np.argmax(valid)) if valid.any() else 0
            raise reject(
                "wrong_type",
                device,
                prop.identifier,
                f"expected {_KIND_WORDS[prop.kind]}, got a string",
                where(i),
            )
        return _check_text(prop, arr.cast(pa.string()), device, where)
    if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
        v = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        return _check_numeric(prop, v, device, where, bools=pa.types.is_boolean(t))
    if pa.types.is_null(t):
        n = len(arr)
        return Checked(np.full(n, np.nan), None, np.full(n, Quality.BAD, np.uint8), 0)
    raise reject(
        "wrong_type",
        device,
        prop.identifier,
        f"expected {_KIND_WORDS[prop.kind]}, got a column of type {t}",
    )


# Text ---------------------------------------------------------------------------------------


def _check_text(prop: PropertyBinding, arr: pa.Array, device: str, where: Where) -> Checked:
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    if prop.max_length is not None and len(arr):
        lengths = pc.fill_null(pc.utf8_length(arr), 0).to_numpy(zero_copy_only=False)
        bad = lengths > prop.max_length
        if bad.any():
            i = int(np.argmax(bad))
            raise reject(
                "too_long",
                device,
                prop.identifier,
                f"{int(lengths[i])} characters, at most {prop.max_length} allowed",
                where(i),
            )
    if prop.kind == "json" and len(arr):
        for i, s in enumerate(arr.to_pylist()):
            if s is None:
                continue
            try:
                orjson.loads(s)
            except orjson.JSONDecodeError:
                raise reject(
                    "wrong_type", device, prop.identifier, "expected JSON text", where(i)
                ) from None
    quality = np.where(valid, np.uint8(Quality.GOOD), np.uint8(Quality.BAD)).astype(np.uint8)
    return Checked(None, arr, quality, 0)
