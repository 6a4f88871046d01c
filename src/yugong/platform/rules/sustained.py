"""``sustained``: a threshold that holds for ``for`` without interruption.

A value holds until the next sample of the series. A run of samples meeting the threshold
that starts at ``t0`` completes at ``t0 + for`` if no sample in between breaks it: the alarm
is raised *at* ``t0 + for`` — by the batch holding the breaking (or a later) sample, or by
:meth:`Sustained.tick` when no sample came. One sample not meeting the threshold resets
the run. Once raised, the alarm clears at the first sample beyond the threshold by the
hysteresis. A run in progress survives a restart (``since`` is part of the state).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from yugong.platform.rules.group import Group, Pairs
from yugong.platform.rules.kinds import ThresholdLike
from yugong.platform.rules.types import ActiveRule, Transition
from yugong.platform.rules.vec import NEVER, Segments


class Sustained(ThresholdLike):
    kind = "sustained"
    exported = (*Group.exported, "since", "last_val")

    def __init__(self, rules: Sequence[ActiveRule]) -> None:
        super().__init__(rules)
        self.for_us = (self.param("for_s") * 1e6).astype(np.int64)
        self.since = np.full(self.n, NEVER, dtype=np.int64)  # start of the open run
        self.last_val = np.full(self.n, np.nan)

    def evaluate(self, p: Pairs, text: pa.Array | None) -> list[Transition]:
        seg = Segments(p.inst)
        i, ts, n = p.inst, p.ts, len(p)
        r, c = self.masks(i, p.val)
        pos = np.arange(n)
        begin = r & ~seg.previous(r, np.zeros(n, bool))
        b = np.flatnonzero(begin)
        carried = seg.first[b] & (self.since[i[b]] != NEVER)
        start_t = np.where(carried, self.since[i[b]], ts[b])
        # The pair that breaks each run (first pair not meeting the threshold after it).
        notr = np.flatnonzero(~r)
        k = np.searchsorted(notr, b)
        e = notr[np.minimum(k, len(notr) - 1)] if len(notr) else np.zeros(len(b), np.int64)
        closed = (k < len(notr)) & (i[e] == i[b]) if len(notr) else np.zeros(len(b), bool)
        seg_no = np.cumsum(seg.first) - 1
        seg_last = seg.end_pos[seg_no[b]]
        held_until = np.where(closed, ts[e], ts[seg_last])
        # A run carried in from the last batch that the first pair here breaks.
        x = seg.start_pos[~r[seg.start_pos] & (self.since[i[seg.start_pos]] != NEVER)]
        if len(x):
            b = np.concatenate([b, x])
            start_t = np.concatenate([start_t, self.since[i[x]]])
            held_until = np.concatenate([held_until, ts[x]])
            order = np.argsort(b, kind="stable")
            b, start_t, held_until = b[order], start_t[order], held_until[order]
        complete = start_t + self.for_us[i[b]]
        runs = np.flatnonzero(held_until >= complete)
        cpos = np.flatnonzero(c)

        out: list[tuple[int, bool, int, float]] = []  # instance, raised, at, value

        def first_clear(cursor: int, inst: int) -> int:
            q = int(np.searchsorted(cpos, cursor))
            return int(cpos[q]) if q < len(cpos) and i[cpos[q]] == inst else -1

        walked = np.unique(i[b[runs]])
        for inst in walked.tolist():
            active = bool(self.active[inst])
            sk = int(np.searchsorted(i[seg.start_pos], inst))
            cursor, last = int(seg.start_pos[sk]), int(seg.end_pos[sk])
            for run in runs[i[b[runs]] == inst].tolist():
                at = int(b[run])
                if active:
                    hit = first_clear(cursor, inst)
                    if 0 <= hit < at:
                        out.append((inst, False, int(ts[hit]), float(p.val[hit])))
                        active, cursor = False, hit + 1
                if not active:
                    # The value held up to the moment the duration completed (the last
                    # sample before it, as tick() reports it).
                    held = cursor + int(
                        np.searchsorted(ts[cursor : last + 1], complete[run], side="left")
                    )
                    value = float(p.val[max(held - 1, at)])
                    out.append((inst, True, int(complete[run]), value))
                    active, cursor = True, at
            if active:
                hit = first_clear(cursor, inst)
                if hit >= 0:
                    out.append((inst, False, int(ts[hit]), float(p.val[hit])))
                    active = False
            self.active[inst] = active
        # Instances already raised with no completed run here: the first clearing sample.
        firsts = seg.start_pos
        starts = firsts[self.active[i[firsts]] & ~np.isin(i[firsts], walked)]
        if len(starts) and len(cpos):
            hits = cpos[np.minimum(np.searchsorted(cpos, starts), len(cpos) - 1)]
            hits = hits[(hits >= starts) & (i[hits] == i[starts])]
            out += [(int(i[h]), False, int(ts[h]), float(p.val[h])) for h in hits.tolist()]
            self.active[i[hits]] = False
        # The run open at the end of each segment, if any.
        st = np.zeros(n, dtype=np.int64)
        st[b[r[b]]] = start_t[r[b]]
        last_begin = np.maximum.accumulate(np.where(begin, pos, 0))
        ends = seg.end_pos
        self.since[i[ends]] = np.where(r[ends], st[last_begin[ends]], NEVER)
        self.last_val[i[ends]] = p.val[ends]
        return self.emit(
            np.asarray([o[0] for o in out], dtype=np.int64),
            np.asarray([o[1] for o in out], dtype=bool),
            np.asarray([o[2] for o in out], dtype=np.int64),
            np.asarray([o[3] for o in out], dtype=np.float64),
        )

    def tick(self, now_us: int) -> list[Transition]:
        due = np.flatnonzero(
            ~self.active & (self.since != NEVER) & (now_us - self.since >= self.for_us)
        )
        self.active[due] = True
        return self.emit(
            due, np.ones(len(due), bool), self.since[due] + self.for_us[due], self.last_val[due]
        )
