"""ThingsBoard device payloads (``v1/devices/me/telemetry`` and ``.../attributes``).

Telemetry comes in four shapes, all accepted here::

    {"temperature": 21.5, "running": true}
    {"ts": 1700000000000, "values": {"temperature": 21.5}}
    [{"temperature": 21.5}, {"temperature": 21.7}]
    [{"ts": 1700000000000, "values": {...}}, {"ts": 1700000001000, "values": {...}}]

Values are numbers, booleans, strings, JSON objects/arrays (for struct and array
properties) or null (a value the device could not read: stored with bad quality).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from yugong.core.errors import FieldError, InvalidInput
from yugong.core.timeutil import to_us
from yugong.platform.registry.bindings import DeviceBinding

# Stores client attributes on the device; the registry provides it.
AttributeSink = Callable[[DeviceBinding, dict[str, Any]], None]


@dataclass(frozen=True)
class TelemetryEntry:
    ts_us: int | None  # None: the server's receive time
    values: dict[str, Any]


class PayloadError(InvalidInput):
    """The payload is not JSON or not one of the accepted shapes."""

    reason = "malformed"


def _fail(loc: str, msg: str) -> PayloadError:
    return PayloadError(f"{loc}: {msg}" if loc else msg, [FieldError(loc or "body", msg)])


def loads(raw: bytes | bytearray | memoryview | str) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _fail("", f"malformed JSON: {exc}") from None


def _entry(item: Any, loc: str) -> TelemetryEntry:
    if not isinstance(item, dict):
        raise _fail(loc, f"must be an object, not {_json_type(item)}")
    if "ts" in item and "values" in item:
        extra = set(item) - {"ts", "values"}
        if extra:
            raise _fail(
                loc,
                "an object with 'ts' and 'values' may have no other keys "
                f"(found {', '.join(sorted(extra))})",
            )
        values = item["values"]
        if not isinstance(values, dict):
            raise _fail(loc, f"'values' must be an object, not {_json_type(values)}")
        return TelemetryEntry(_ts(item["ts"], loc), values)
    return TelemetryEntry(None, item)


def _ts(value: Any, loc: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise _fail(
            f"{loc}.ts" if loc else "ts", f"must be epoch milliseconds, not {_json_type(value)}"
        )
    try:
        return to_us(value)
    except ValueError as exc:
        raise _fail(f"{loc}.ts" if loc else "ts", str(exc)) from None


def _json_type(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def parse_telemetry(raw: bytes | bytearray | memoryview | str | Any) -> list[TelemetryEntry]:
    """Parse a telemetry payload (raw JSON, or already decoded) into entries."""
    doc = loads(raw) if isinstance(raw, bytes | bytearray | memoryview | str) else raw
    if isinstance(doc, list):
        if not doc:
            raise _fail("", "empty array: nothing to ingest")
        return [_entry(item, f"item {i}") for i, item in enumerate(doc)]
    return [_entry(doc, "")]


def parse_attributes(raw: bytes | bytearray | memoryview | str | Any) -> dict[str, Any]:
    """Parse a client-attributes payload: one JSON object of key -> value."""
    doc = loads(raw) if isinstance(raw, bytes | bytearray | memoryview | str) else raw
    if not isinstance(doc, dict):
        raise _fail("", f"attributes must be a JSON object, not {_json_type(doc)}")
    for key in doc:
        if not key:
            raise _fail("", "attribute names must not be empty")
    return doc
