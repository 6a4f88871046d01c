"""Token buckets and rate meters keyed by an integer (a tenant or a device id).

A bucket holds up to ``rate * burst_s`` tokens (at least one) and refills continuously at
``rate`` per second. The rate is passed with every call rather than stored, so a changed
limit applies at once and an unlimited key (rate ``None``) costs nothing. A cost larger
than the bucket is let through when the bucket is full and leaves it in debt, so bulk
requests are admitted at the configured average rate instead of never.

Each key holds two floats; no per-point objects. All operations are O(1) per bucket touched
and thread-safe (one lock per :class:`Buckets` set).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Charge:
    """One bucket to draw from: which table (index), which key, at what rate, how much."""

    table: int
    key: int
    rate: float
    cost: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """The first charge that did not fit and how long until it would."""

    charge: Charge
    wait_s: float

    @property
    def retry_after(self) -> int:
        """Whole seconds for a Retry-After header (at least 1)."""
        return max(1, math.ceil(self.wait_s))


class Buckets:
    """Several tables of token buckets drawn from atomically: :meth:`take` either charges
    every bucket of a request or none of them."""

    def __init__(self, tables: int, *, burst_s: float = 1.0, clock: Clock = time.monotonic):
        if burst_s <= 0:
            raise ValueError("burst_s must be > 0")
        self.burst_s = burst_s
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [tokens, last refill time]
        self._tables: list[dict[int, list[float]]] = [{} for _ in range(tables)]

    def capacity(self, rate: float) -> float:
        return max(rate * self.burst_s, 1.0)

    def _level(self, charge: Charge, now: float) -> list[float]:
        table = self._tables[charge.table]
        state = table.get(charge.key)
        cap = self.capacity(charge.rate)
        if state is None:
            state = table[charge.key] = [cap, now]
        else:
            state[0] = min(cap, state[0] + (now - state[1]) * charge.rate)
            state[1] = now
        return state

    def take(self, charges: Sequence[Charge], *, force: bool = False) -> Refusal | None:
        """Draw every charge, or none and return why. ``force`` draws regardless (the cost
        was already incurred, e.g. a request counted after it ran) and never refuses."""
        now = self._clock()
        with self._lock:
            states = [self._level(c, now) for c in charges]
            if not force:
                for c, state in zip(charges, states, strict=True):
                    need = min(c.cost, self.capacity(c.rate))
                    if state[0] < need:
                        return Refusal(c, (need - state[0]) / c.rate)
            for c, state in zip(charges, states, strict=True):
                state[0] -= c.cost
        return None

    def forget(self, table: int, key: int) -> None:
        with self._lock:
            self._tables[table].pop(key, None)

    def clear(self) -> None:
        with self._lock:
            for table in self._tables:
                table.clear()


class RateMeter:
    """Events per second over the last ``window_s`` whole seconds, per key: a ring of
    one-second slots (two small lists per key)."""

    def __init__(self, window_s: int = 60, *, clock: Clock = time.monotonic) -> None:
        self.window = window_s
        self._clock = clock
        self._lock = threading.Lock()
        self._rings: dict[int, tuple[list[int], list[int]]] = {}  # key -> (stamps, counts)

    def add(self, key: int, n: int = 1) -> None:
        sec = int(self._clock())
        slot = sec % self.window
        with self._lock:
            ring = self._rings.get(key)
            if ring is None:
                ring = self._rings[key] = ([-1] * self.window, [0] * self.window)
            stamps, counts = ring
            if stamps[slot] != sec:
                stamps[slot] = sec
                counts[slot] = 0
            counts[slot] += n

    def rate(self, key: int) -> float:
        """Average per second over the window (the current, partial second included)."""
        sec = int(self._clock())
        with self._lock:
            ring = self._rings.get(key)
            if ring is None:
                return 0.0
            stamps, counts = ring
            total = sum(c for s, c in zip(stamps, counts, strict=True) if sec - s < self.window)
        return total / self.window


class Streaks:
    """Consecutive seconds in which a key was refused: a device refused in every second for
    ``after_s`` seconds is persistently over its limit."""

    def __init__(self, after_s: int, *, clock: Clock = time.monotonic) -> None:
        self.after_s = after_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state: dict[int, list[int]] = {}  # key -> [last refused second, streak]

    def strike(self, key: int) -> bool:
        """Record a refusal; True when the streak has reached ``after_s`` seconds (the
        streak then starts again, so a reconnecting offender is judged afresh)."""
        if self.after_s <= 0:
            return False
        sec = int(self._clock())
        with self._lock:
            state = self._state.get(key)
            if state is None:
                self._state[key] = [sec, 1]
                return self.after_s <= 1
            if sec == state[0]:
                return False
            state[1] = state[1] + 1 if sec == state[0] + 1 else 1
            state[0] = sec
            if state[1] >= self.after_s:
                del self._state[key]
                return True
            return False


@dataclass(frozen=True, slots=True)
class Anomaly:
    key: int
    per_min: int  # messages in the minute that just ended
    baseline: float  # the key's usual messages a minute


class RateAnomalies:
    """A key (device) suddenly sending far more than it usually does: each whole minute's
    count is compared with an exponentially weighted baseline of the minutes before it.

    A minute counts as anomalous when it is over ``factor`` times the baseline and over
    ``min_per_min`` (small absolute jumps are noise); a key needs ``warmup_min`` minutes of
    history first. Anomalous minutes do not raise the baseline, so a flood stays visible.
    Cost per message: one dict lookup and an add."""

    def __init__(
        self,
        *,
        factor: float = 10.0,
        min_per_min: int = 600,
        warmup_min: int = 5,
        alpha: float = 0.1,
        clock: Clock = time.monotonic,
    ) -> None:
        self.factor = factor
        self.min_per_min = min_per_min
        self.warmup_min = warmup_min
        self.alpha = alpha
        self._clock = clock
        self._lock = threading.Lock()
        # key -> [minute, count this minute, baseline, minutes of history]
        self._state: dict[int, list[float]] = {}

    def add(self, key: int, n: int = 1) -> Anomaly | None:
        """Count ``n`` messages; returns the anomaly when a closed minute was one."""
        minute = int(self._clock() // 60)
        with self._lock:
            st = self._state.get(key)
            if st is None:
                self._state[key] = [minute, n, 0.0, 0]
                return None
            if st[0] == minute:
                st[1] += n
                return None
            found = self._close(key, st, minute)
            st[0], st[1] = minute, n
            return found

    def _close(self, key: int, st: list[float], minute: int) -> Anomaly | None:
        count, baseline, history = st[1], st[2], st[3]
        idle = int(minute - st[0] - 1)  # whole minutes with no message at all
        found = None
        if (
            history >= self.warmup_min
            and count > self.min_per_min
            and count > self.factor * max(baseline, 1.0)
        ):
            found = Anomaly(key, int(count), baseline)
        else:
            baseline = count if history == 0 else baseline + self.alpha * (count - baseline)
        baseline *= (1 - self.alpha) ** min(idle, 100)
        st[2], st[3] = baseline, history + 1 + idle
        return found


__all__ = ["Anomaly", "Buckets", "Charge", "RateAnomalies", "RateMeter", "Refusal", "Streaks"]
