"""Warnings that cannot flood the log: one line per key per interval, the rest counted."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """One log line per key per ``interval_s``; the lines held back are counted in the next."""

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self.logger = logger
        self.interval_s = interval_s
        self._last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, msg: str) -> None:
        now = time.monotonic()
        last, held = self._last.get(key, (0.0, 0))
        if now - last < self.interval_s:
            self._last[key] = (last, held + 1)
            return
        if len(self._last) > 10_000:  # bound memory under a flood of distinct keys
            self._last.clear()
        self._last[key] = (now, 0)
        more = f" ({held} similar messages suppressed)" if held else ""
        self.logger.warning("%s%s", msg, more)
