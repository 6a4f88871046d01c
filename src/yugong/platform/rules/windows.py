"""Windowed kinds: ``count`` and ``deviation``.

Both keep, per instance, the samples still inside the window after the latest one (the
*carry*, sorted by instance and time) and answer every new sample's window query at once
with :func:`numpy.searchsorted` over composite (instance, time) keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from yugong.platform.rules.group import Group, Pairs
from yugong.platform.rules.kinds import ThresholdLike
from yugong.platform.rules.types import ActiveRule, Transition
from yugong.platform.rules.vec import (
    FloatArray,
    IntArray,
    Segments,
    changes,
    events,
    latch,
)


class Windowed(Group):
    """The carry of (instance, ts, value) and its export/import per rule."""

    def init_carry(self, window_s: FloatArray) -> None:
        self.win_us = (window_s * 1e6).astype(np.int64)
        self.c_inst = np.zeros(0, dtype=np.int64)
        self.c_ts = np.zeros(0, dtype=np.int64)
        self.c_val = np.zeros(0, dtype=np.float64)

    def keys(self, inst: IntArray, ts: IntArray, *more: tuple[IntArray, IntArray]) -> list[Any]:
        """Composite int64 keys (instance rank, time) for several (inst, ts) arrays at once,
        spaced so that subtracting a window never reaches the previous instance."""
        all_inst = np.concatenate([inst, *(m[0] for m in more)])
        all_ts = np.concatenate([ts, *(m[1] for m in more)])
        if not len(all_ts):
            return [np.zeros(0, np.int64)] * (1 + len(more))
        ranks = np.unique(all_inst)
        t0 = int(all_ts.min())
        m = int(all_ts.max()) - t0 + int(self.win_us.max()) + 1
        if len(ranks) * m >= 2**62:
            raise OverflowError("rule window and time span too large to evaluate at once")
        out = [np.searchsorted(ranks, inst) * m + (ts - t0)]
        out += [np.searchsorted(ranks, mi) * m + (mt - t0) for mi, mt in more]
        return out

    def keep_recent(self, inst: IntArray, ts: IntArray, val: FloatArray) -> None:
        """The new carry: what is still within the window of each instance's latest ts."""
        keep = ts > self.last_ts[inst] - self.win_us[inst]
        self.c_inst, self.c_ts, self.c_val = inst[keep], ts[keep], val[keep]

    def export(self, ri: int) -> dict[str, Any]:
        state = super().export(ri)
        a, b = self.slices[ri]
        m = (self.c_inst >= a) & (self.c_inst < b)
        state["carry"] = [
            self.device[self.c_inst[m]].tolist(),
            self.c_ts[m].tolist(),
            self.c_val[m].tolist(),
        ]
        return state

    def load(self, ri: int, state: dict[str, Any]) -> None:
        super().load(ri, state)
        a, b = self.slices[ri]
        mine = {d: a + k for k, d in enumerate(self.device[a:b].tolist())}
        devs, ts, val = state.get("carry", [[], [], []])
        keep = [k for k, d in enumerate(devs) if d in mine]
        inst = np.asarray([mine[devs[k]] for k in keep], dtype=np.int64)
        drop = (self.c_inst >= a) & (self.c_inst < b)
        ci = np.concatenate([self.c_inst[~drop], inst])
        ct = np.concatenate([self.c_ts[~drop], np.asarray([ts[k] for k in keep], np.int64)])
        cv = np.concatenate([self.c_val[~drop], np.asarray([val[k] for k in keep], float)])
        order = np.lexsort((ct, ci))
        self.c_inst, self.c_ts, self.c_val = ci[order], ct[order], cv[order]


class Count(ThresholdLike, Windowed):
    """More than ``count`` samples meeting the threshold within ``window`` (the window
    (t - window, t] at every sample t). Raised at the sample that makes the count exceed it;
    cleared at a sample where it no longer does, or by :meth:`tick` at the time the oldest
    match needed left the window."""

    kind = "count"

    def __init__(self, rules: Sequence[ActiveRule]) -> None:
        super().__init__(rules)
        self.limit = self.param("count").astype(np.int64)
        self.init_carry(self.param("window_s"))

    def evaluate(self, p: Pairs, text: pa.Array | None) -> list[Transition]:
        r, _ = self.masks(p.inst, p.val)
        m_inst = np.concatenate([self.c_inst, p.inst[r]])
        m_ts = np.concatenate([self.c_ts, p.ts[r]])
        order = np.lexsort((m_ts, m_inst))
        m_inst, m_ts = m_inst[order], m_ts[order]
        qk, mk = self.keys(p.inst, p.ts, (m_inst, m_ts))
        hi = np.searchsorted(mk, qk, side="right")
        lo = np.searchsorted(mk, qk - self.win_us[p.inst], side="right")
        count = (hi - lo).astype(np.float64)
        ev = np.where(count > self.limit[p.inst], 1, -1).astype(np.int8)
        out = self.latch_emit(p, ev, count)
        seg = Segments(p.inst)
        self.last_ts[p.inst[seg.end_pos]] = p.ts[seg.end_pos]
        self.keep_recent(m_inst, m_ts, np.zeros(len(m_ts)))
        return out

    def tick(self, now_us: int) -> list[Transition]:
        due: list[int] = []
        at: list[int] = []
        for inst in np.flatnonzero(self.active).tolist():
            a, b = np.searchsorted(self.c_inst, [inst, inst + 1])
            ts = self.c_ts[a:b]
            need = int(self.limit[inst]) + 1
            drop_at = int(ts[-need]) + int(self.win_us[inst]) if len(ts) >= need else now_us
            if now_us >= drop_at:
                due.append(inst)
                at.append(drop_at)
        idx = np.asarray(due, dtype=np.int64)
        self.active[idx] = False
        return self.emit(idx, np.zeros(len(idx), bool), np.asarray(at, np.int64))


class Deviation(Windowed):
    """The z-score of a sample against the mean and (population) standard deviation of the
    same series' samples in the ``window`` before it, once ``min_samples`` are in that
    window. Raised when |z| > ``value``; cleared when |z| <= ``value`` - hysteresis. A flat
    window (deviation 0) gives z = 0 for the same value and infinity for any other."""

    kind = "deviation"

    def __init__(self, rules: Sequence[ActiveRule]) -> None:
        super().__init__(rules)
        self.z = self.param("value")
        self.min_samples = self.param("min_samples").astype(np.int64)
        self.h = np.asarray([r.spec.clear.hysteresis for r in self.rules], float)[self.inst_rule]
        self.init_carry(self.param("window_s"))

    def evaluate(self, p: Pairs, text: pa.Array | None) -> list[Transition]:
        nc = len(self.c_inst)
        inst = np.concatenate([self.c_inst, p.inst])
        ts = np.concatenate([self.c_ts, p.ts])
        val = np.concatenate([self.c_val, p.val])
        new = np.concatenate([np.zeros(nc, bool), np.ones(len(p), bool)])
        order = np.lexsort((ts, inst))  # stable: the carry before new samples at equal ts
        inst, ts, val, new = inst[order], ts[order], val[order], new[order]
        (keys,) = self.keys(inst, ts)
        lo = np.searchsorted(keys, keys - self.win_us[inst], side="right")
        hi = np.arange(len(keys))
        seg = Segments(inst)
        d = val - val[seg.start]  # relative to the segment's first value, for precision
        s1 = np.concatenate([[0.0], np.cumsum(d)])
        s2 = np.concatenate([[0.0], np.cumsum(d * d)])
        n = hi - lo
        with np.errstate(all="ignore"):
            mean = (s1[hi] - s1[lo]) / n
            var = np.maximum((s2[hi] - s2[lo]) / n - mean * mean, 0.0)
            std = np.sqrt(var)
            diff = np.abs(d - mean)
            z = np.where(
                std > 0, diff / std, np.where(diff > 1e-12 * (1 + np.abs(mean)), np.inf, 0)
            )
        ready = n >= self.min_samples[inst]
        r = ready & (z > self.z[inst])
        c = ready & (z <= self.z[inst] - self.h[inst])
        q = np.flatnonzero(new)
        qi = inst[q]
        qseg = Segments(qi)
        before = self.active[qi]
        state = latch(qseg, events(r[q], c[q]), before)
        at = changes(qseg, state, before)
        self.active[qi[qseg.end_pos]] = state[qseg.end_pos]
        self.last_ts[qi[qseg.end_pos]] = ts[q][qseg.end_pos]
        self.keep_recent(inst, ts, val)
        return self.emit(qi[at], state[at], ts[q][at], val[q][at])
