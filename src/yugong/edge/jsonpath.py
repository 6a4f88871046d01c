"""A small, safe subset of JSON path, and the mapping of JSON documents to edge points.

Paths select one value: ``$.a.b[0].c``, ``a.b`` (the ``$`` is optional), ``$['odd key']``,
``$.list[-1]``. There are no wildcards, filters or expressions: a path is parsed once into a
tuple of keys and indexes and applied by walking the document, so nothing is ever evaluated.

:class:`JsonPointMap` applies the paths of a device's points to a document and collects the
readings as columns, so a connector builds one Arrow batch per burst of documents.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa

from yugong.core.quality import Quality
from yugong.core.timeutil import US_PER_MS, US_PER_S, to_us
from yugong.edge.profiles import Point
from yugong.edge.samples import EDGE_SCHEMA


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: What a path yields when the document has nothing there.
MISSING: Final = _Missing()


class JsonPathError(ValueError):
    """A path outside the supported subset; the message names the path and the position."""


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_INDEX = re.compile(r"\[\s*(-?\d+)\s*\]")
_QUOTED = re.compile(r"""\[\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*\]""")
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True, slots=True)
class JsonPath:
    """A compiled path: keys (str) and list indexes (int), applied in order."""

    text: str
    steps: tuple[str | int, ...]

    def get(self, doc: Any) -> Any:
        """The value at this path, or :data:`MISSING` when any step does not exist."""
        node = doc
        for step in self.steps:
            if isinstance(step, str):
                if not isinstance(node, dict):
                    return MISSING
                node = node.get(step, MISSING)
                if node is MISSING:
                    return MISSING
            else:
                if not isinstance(node, list) or not -len(node) <= step < len(node):
                    return MISSING
                node = node[step]
        return node

    def __str__(self) -> str:
        return self.text


def compile_path(text: str) -> JsonPath:
    """Parse ``text``; raise :class:`JsonPathError` naming where it goes wrong."""
    if not isinstance(text, str) or not text.strip():
        raise JsonPathError("a JSON path must be a non-empty string such as $.temperature")
    src = text.strip()
    i = 0
    steps: list[str | int] = []
    if src.startswith("$"):
        i = 1
    elif src[0] not in "[":
        src = "." + src  # ``a.b`` is ``$.a.b``
    while i < len(src):
        c = src[i]
        if c == ".":
            m = _NAME.match(src, i + 1)
            if m is None:
                raise JsonPathError(f"JSON path {text!r}: expected a key name after '.' at {i}")
            steps.append(m.group(0))
            i = m.end()
        elif c == "[":
            if m := _INDEX.match(src, i):
                steps.append(int(m.group(1)))
            elif m := _QUOTED.match(src, i):
                raw = m.group(1) if m.group(1) is not None else m.group(2)
                steps.append(_ESCAPE.sub(r"\1", raw))
            else:
                raise JsonPathError(
                    f"JSON path {text!r}: expected [number] or ['key'] at {i} "
                    "(wildcards, slices and filters are not supported)"
                )
            i = m.end()
        else:
            raise JsonPathError(f"JSON path {text!r}: unexpected {c!r} at {i}")
    return JsonPath(text, tuple(steps))


# --------------------------------------------------------------------------- timestamps
TimestampUnit = Literal["auto", "s", "ms", "us"]
_UNIT_US: dict[str, int] = {"s": US_PER_S, "ms": US_PER_MS, "us": 1}


def timestamp_us(value: Any, unit: TimestampUnit = "auto") -> int:
    """A JSON timestamp (epoch number in ``unit`` or ISO 8601 text) in epoch microseconds."""
    if isinstance(value, bool) or value is None or value is MISSING:
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, int | float) and unit != "auto":
        if not math.isfinite(value):
            raise ValueError(f"not a timestamp: {value!r}")
        return round(value * _UNIT_US[unit])
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"not a timestamp: {value!r}")
        # Epoch seconds, milliseconds or microseconds, told apart by magnitude (1e11 s is
        # the year 5138; 1e14 ms is the year 5138 too).
        scale = US_PER_S if abs(value) < 1e11 else US_PER_MS if abs(value) < 1e14 else 1
        return round(value * scale)
    if isinstance(value, str):
        return to_us(value)
    raise ValueError(f"not a timestamp: {value!r}")


# --------------------------------------------------------------------------- point mapping
@dataclass(slots=True)
class Columns:
    """Readings collected column by column; :meth:`table` makes one edge batch of them."""

    device: list[str] = field(default_factory=list)
    point: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    value: list[float | None] = field(default_factory=list)
    text: list[str | None] = field(default_factory=list)
    quality: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.point)

    def add(
        self, device: str, point: str, ts: int, value: float | None, text: str | None, q: int
    ) -> None:
        self.device.append(device)
        self.point.append(point)
        self.ts.append(ts)
        self.value.append(value)
        self.text.append(text)
        self.quality.append(q)

    def add_bad(self, device: str, points: Sequence[str], ts: int) -> None:
        for p in points:
            self.add(device, p, ts, None, None, Quality.BAD)

    def table(self) -> pa.Table:
        return pa.Table.from_arrays(
            [
                pa.array(self.device, pa.string()),
                pa.array(self.point, pa.string()),
                pa.array(np.asarray(self.ts, dtype=np.int64)),
                pa.array(self.value, pa.float64()),
                pa.array(self.text, pa.string()),
                pa.array(np.asarray(self.quality, dtype=np.uint8)),
            ],
            schema=EDGE_SCHEMA,
        )


@dataclass(frozen=True, slots=True)
class _Target:
    prop: str
    path: JsonPath
    kind: Literal["number", "bool", "string"]
    scale: float
    offset: float
    length: int | None  # strings: at most this many characters are kept


class JsonPointMap:
    """The points of one device profile, each with its compiled path.

    ``report_missing``: a point absent from a document (or null) is emitted with BAD quality;
    otherwise it is simply not reported (many JSON sources send partial documents).
    A value of the wrong kind (text where a number is expected) is always BAD: the source
    sent something, and it is not usable.
    """

    def __init__(
        self,
        points: Sequence[Point],
        *,
        report_missing: bool = False,
        timestamp_path: str | None = None,
        timestamp_unit: TimestampUnit = "auto",
    ) -> None:
        targets: list[_Target] = []
        for p in points:
            if not p.path:
                raise JsonPathError(f"point {p.property}: needs path (e.g. $.temperature)")
            try:
                path = compile_path(p.path)
            except JsonPathError as exc:
                raise JsonPathError(f"point {p.property}: {exc}") from None
            kind: Literal["number", "bool", "string"] = (
                "string"
                if p.type == "string"
                else "bool"
                if p.type in ("bool", "bit")
                else "number"
            )
            targets.append(_Target(p.property, path, kind, p.scale, p.offset, p.length))
        self._targets = tuple(targets)
        self.points: tuple[str, ...] = tuple(t.prop for t in targets)
        self.report_missing = report_missing
        self._ts_path = compile_path(timestamp_path) if timestamp_path else None
        self._ts_unit: TimestampUnit = timestamp_unit

    def timestamp(self, doc: Any, received_us: int) -> int:
        """The document's own timestamp when configured (ValueError if unusable), else receipt."""
        if self._ts_path is None:
            return received_us
        raw = self._ts_path.get(doc)
        if raw is MISSING:
            raise ValueError(f"no timestamp at {self._ts_path}")
        return timestamp_us(raw, self._ts_unit)

    def extract(self, doc: Any, device: str, ts: int, out: Columns) -> int:
        """Append the readings ``doc`` holds for ``device``; returns how many were BAD."""
        bad = 0
        for t in self._targets:
            raw = t.path.get(doc)
            if raw is MISSING or raw is None:
                if self.report_missing:
                    out.add(device, t.prop, ts, None, None, Quality.BAD)
                    bad += 1
                continue
            value, text = _convert(t, raw)
            if value is None and text is None:
                out.add(device, t.prop, ts, None, None, Quality.BAD)
                bad += 1
            else:
                out.add(device, t.prop, ts, value, text, Quality.GOOD)
        return bad


def _convert(t: _Target, raw: Any) -> tuple[float | None, str | None]:
    """JSON value -> (value, text); (None, None) when it does not fit the point."""
    if t.kind == "string":
        if isinstance(raw, str):
            text = raw
        elif isinstance(raw, bool | int | float):
            text = str(raw).lower() if isinstance(raw, bool) else str(raw)
        else:
            return None, None
        return None, text[: t.length] if t.length is not None else text
    if isinstance(raw, bool):
        return float(raw), None
    if t.kind == "bool":
        if isinstance(raw, int | float):
            return (1.0 if raw else 0.0), None
        if isinstance(raw, str) and raw.strip().lower() in _BOOL_TEXT:
            return _BOOL_TEXT[raw.strip().lower()], None
        return None, None
    if isinstance(raw, int | float):
        v = float(raw)
    elif isinstance(raw, str):
        try:
            v = float(raw)  # many devices send numbers as text
        except ValueError:
            return None, None
    else:
        return None, None
    if not math.isfinite(v):
        return None, None
    return v * t.scale + t.offset, None


_BOOL_TEXT: dict[str, float] = {
    "true": 1.0,
    "false": 0.0,
    "on": 1.0,
    "off": 0.0,
    "1": 1.0,
    "0": 0.0,
}
