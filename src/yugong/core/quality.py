"""Sample quality, after OPC UA's StatusCode severity (good / uncertain / bad)."""

from enum import IntEnum


class Quality(IntEnum):
    """Stored as one unsigned byte per sample."""

    GOOD = 0
    UNCERTAIN = 1
    BAD = 2

    @classmethod
    def parse(cls, value: "str | int | Quality") -> "Quality":
        if isinstance(value, Quality):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown quality {value!r}: use good, uncertain or bad") from None
