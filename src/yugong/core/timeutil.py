"""Timestamps. Internally every timestamp is int64 microseconds since the Unix epoch (UTC).

At the edges people and devices send milliseconds (ThingsBoard's convention) or ISO 8601;
microseconds are accepted where they are unambiguous.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

US_PER_MS = 1_000
US_PER_S = 1_000_000
# Epoch milliseconds stay below 1e14 until the year 5138; epoch microseconds are above it
# since 1973. So an integer at or above this is read as microseconds.
_MICROS_THRESHOLD = 100_000_000_000_000


def now_us() -> int:
    return time.time_ns() // 1_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def to_us(value: int | float | str | datetime) -> int:
    """One timestamp to epoch microseconds: int/float ms (or µs when large), ISO 8601, datetime."""
    if isinstance(value, bool):
        raise ValueError("a timestamp cannot be a boolean")
    if isinstance(value, int):
        return value if abs(value) >= _MICROS_THRESHOLD else value * US_PER_MS
    if isinstance(value, float):
        if value != value:  # NaN
            raise ValueError("a timestamp cannot be NaN")
        return int(value) if abs(value) >= _MICROS_THRESHOLD else round(value * US_PER_MS)
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(dt.timestamp() * US_PER_S)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return to_us(int(text))
        try:
            dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not a timestamp: {value!r} (use epoch ms or ISO 8601)") from None
        return to_us(dt)
    raise ValueError(f"not a timestamp: {value!r}")


def ms_array_to_us(values: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Vectorised :func:`to_us` for integer arrays (ms, or µs when large)."""
    arr = np.asarray(values, dtype=np.int64)
    return np.where(np.abs(arr) >= _MICROS_THRESHOLD, arr, arr * US_PER_MS)


def us_to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / US_PER_S, tz=UTC)


def us_to_iso(us: int) -> str:
    return us_to_datetime(us).isoformat().replace("+00:00", "Z")


def parse_duration_us(text: str | int) -> int:
    """``"1m"``, ``"15s"``, ``"2h"``, ``"1d"``, ``"500ms"`` or seconds as int -> microseconds."""
    if isinstance(text, int):
        return text * US_PER_S
    units = {
        "us": 1,
        "ms": US_PER_MS,
        "s": US_PER_S,
        "m": 60 * US_PER_S,
        "h": 3600 * US_PER_S,
        "d": 86400 * US_PER_S,
        "w": 7 * 86400 * US_PER_S,
    }
    t = text.strip().lower()
    for unit in ("us", "ms", "s", "m", "h", "d", "w"):
        if t.endswith(unit) and t[: -len(unit)].replace(".", "", 1).isdigit():
            amount = float(t[: -len(unit)])
            if amount <= 0:
                break
            return int(amount * units[unit])
    raise ValueError(f"not a duration: {text!r} (use e.g. 500ms, 15s, 1m, 2h, 1d)")
