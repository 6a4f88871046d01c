"""Vectorised building blocks of the rule engine.

Every kind works on *pairs* (one sample read by one rule instance, an instance being a rule
on one device) sorted by ``(instance, ts)``: a segment is the run of pairs of one instance.
State is carried between batches in per-instance NumPy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
AnyArray = npt.NDArray[Any]

NEVER = np.iinfo(np.int64).min  # "no timestamp yet"

# Comparison codes of threshold-like conditions.
OPS: dict[str, int] = {">": 0, ">=": 1, "<": 2, "<=": 3, "inside": 4, "outside": 5}


class Segments:
    """Where each instance's pairs begin and end in an ``(instance, ts)``-sorted array."""

    __slots__ = ("end", "end_pos", "first", "n", "start", "start_pos")

    def __init__(self, inst: IntArray) -> None:
        n = len(inst)
        self.n = n
        self.first = np.ones(n, dtype=bool)
        self.end = np.ones(n, dtype=bool)
        if n > 1:
            np.not_equal(inst[1:], inst[:-1], out=self.first[1:])
            self.end[:-1] = self.first[1:]
        pos = np.arange(n, dtype=np.int64)
        self.start_pos = pos[self.first]
        self.end_pos = pos[self.end]
        # For every pair, the position where its segment starts.
        self.start = np.maximum.accumulate(np.where(self.first, pos, 0)) if n else pos

    def previous(self, values: AnyArray, carried: AnyArray) -> AnyArray:
        """``values`` shifted by one inside each segment; a segment's first pair gets
        ``carried`` (already gathered per pair)."""
        out = np.empty_like(values)
        if self.n:
            out[1:] = values[:-1]
            out[self.first] = carried[self.first]
        return out


def latch(seg: Segments, event: npt.NDArray[np.int8], initial: BoolArray) -> BoolArray:
    """The alarm state after every pair: set by ``event > 0``, reset by ``event < 0``, kept
    by ``0`` (the hysteresis band); ``initial`` is the state before each pair's segment
    (gathered per pair)."""
    n = seg.n
    pos = np.arange(n, dtype=np.int64)
    last = np.maximum.accumulate(np.where(event != 0, pos, -1)) if n else pos
    decided = last >= seg.start
    return np.where(decided, event[np.maximum(last, 0)] > 0, initial)


def changes(seg: Segments, state: BoolArray, initial: BoolArray) -> IntArray:
    """Positions where ``state`` differs from the state before that pair."""
    before = seg.previous(state, initial)
    return np.flatnonzero(state != before)


def compare(
    op: AnyArray, v: FloatArray, lo: FloatArray, hi: FloatArray, h: FloatArray, x: FloatArray
) -> tuple[BoolArray, BoolArray]:
    """(raise, clear) masks of a threshold with hysteresis ``h``, parameters per pair.

    ``>`` v raises above v and clears at or below v - h (and the mirrors for the other
    ops); ``inside`` raises within [lo, hi] and clears outside [lo - h, hi + h];
    ``outside`` raises outside [lo, hi] and clears within [lo + h, hi - h]. NaN neither
    raises nor clears.
    """
    with np.errstate(invalid="ignore"):
        conds = [op == 0, op == 1, op == 2, op == 3, op == 4]
        raise_ = np.select(
            conds,
            [x > v, x >= v, x < v, x <= v, (x >= lo) & (x <= hi)],
            default=(x < lo) | (x > hi),
        )
        clear = np.select(
            conds,
            [x <= v - h, x < v - h, x >= v + h, x > v + h, (x < lo - h) | (x > hi + h)],
            default=(x >= lo + h) & (x <= hi - h),
        )
    return raise_.astype(bool), clear.astype(bool)


def events(raise_: BoolArray, clear: BoolArray) -> npt.NDArray[np.int8]:
    return np.where(raise_, 1, np.where(clear, -1, 0)).astype(np.int8)


def window_keys(inst: IntArray, ts: IntArray, span_extra: int) -> tuple[IntArray, int, int] | None:
    """Composite sort keys ``inst * M + (ts - t0)`` that keep instances apart even after
    subtracting up to ``span_extra``; None when they would overflow int64."""
    if len(ts) == 0:
        return np.zeros(0, dtype=np.int64), 1, 0
    t0 = int(ts.min())
    m = int(ts.max()) - t0 + span_extra + 1
    if (int(inst.max()) + 1) * m >= 2**62:
        return None
    return inst * m + (ts - t0), m, t0
