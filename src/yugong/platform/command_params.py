"""Check a thing-model service's arguments (``inputData``) and answer (``outputData``).

Every declared parameter is required and nothing undeclared is accepted. Each value must fit
its TSL data type: ``int`` (a whole number), ``float``/``double`` (a finite number), both
within ``min``/``max``; ``bool`` (true/false or 0/1); ``enum`` (one of the declared keys);
``text`` (a string, at most ``length`` characters); ``date`` (a non-negative epoch in ms);
``struct`` (an object with its ``fields``, checked the same way); ``array`` (a list of at
most ``size`` items of its ``item`` type). Errors name the parameter, e.g.
``params.speed: must be <= 3000``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from yugong.core.errors import FieldError
from yugong.core.tsl import DataType, Param

__all__ = ["check_params"]


def check_params(declared: Sequence[Param], given: Any, where: str) -> list[FieldError]:
    """What is wrong with ``given`` (an object of parameter values) against ``declared``;
    an empty list when it fits. ``where`` prefixes every location (``params``, ``result``)."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        return [FieldError(where, f"must be an object, got {_kind(given)}")]
    errors: list[FieldError] = []
    names = {p.identifier for p in declared}
    for key in given:
        if key not in names:
            allowed = ", ".join(sorted(names)) or "none"
            errors.append(FieldError(f"{where}.{key}", f"not declared (declared: {allowed})"))
    for p in declared:
        loc = f"{where}.{p.identifier}"
        if p.identifier not in given:
            errors.append(FieldError(loc, "is required"))
        elif p.data_type is not None:
            errors.extend(_check(p.data_type, given[p.identifier], loc))
    return errors


def _check(dt: DataType, v: Any, loc: str) -> list[FieldError]:
    t = dt.type
    if t in ("int", "float", "double", "date"):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            return [FieldError(loc, f"expected a number ({t}), got {_kind(v)}")]
        if t in ("int", "date") and v != int(v):
            return [FieldError(loc, f"expected a whole number ({t}), got {v!r}")]
        if t == "date":
            return [] if v >= 0 else [FieldError(loc, "a date is epoch milliseconds >= 0")]
        if dt.min is not None and v < dt.min:
            return [FieldError(loc, f"must be >= {dt.min:g}, got {v!r}")]
        if dt.max is not None and v > dt.max:
            return [FieldError(loc, f"must be <= {dt.max:g}, got {v!r}")]
        return []
    if t == "bool":
        if v in (True, False) and not isinstance(v, float):
            return []
        return [FieldError(loc, f"expected true/false (bool), got {v!r}")]
    if t == "enum":
        keys = sorted(dt.enum or {})
        if isinstance(v, bool) or not isinstance(v, int) or v not in keys:
            return [FieldError(loc, f"expected one of {keys} (enum), got {v!r}")]
        return []
    if t == "text":
        if not isinstance(v, str):
            return [FieldError(loc, f"expected a string (text), got {_kind(v)}")]
        if dt.length is not None and len(v) > dt.length:
            return [FieldError(loc, f"at most {dt.length} characters, got {len(v)}")]
        return []
    if t == "struct":
        return check_params(dt.fields or (), v, loc)
    # array
    if not isinstance(v, list):
        return [FieldError(loc, f"expected a list (array), got {_kind(v)}")]
    if dt.size is not None and len(v) > dt.size:
        return [FieldError(loc, f"at most {dt.size} items, got {len(v)}")]
    errors: list[FieldError] = []
    if dt.item is not None:
        for i, item in enumerate(v):
            errors.extend(_check(dt.item, item, f"{loc}[{i}]"))
    return errors


def _kind(v: Any) -> str:
    return "null" if v is None else type(v).__name__
