"""Sample-by-sample kinds: threshold, rate, state_change, expression, no_data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yugong.core.expr import Expression, compile_expr
from yugong.platform.rules.group import Group, Pairs
from yugong.platform.rules.types import ActiveRule, Transition
from yugong.platform.rules.vec import (
    NEVER,
    OPS,
    FloatArray,
    IntArray,
    Segments,
    changes,
    compare,
    events,
    latch,
)


class ThresholdLike(Group):
    """Parameters of a threshold (op, value or low/high) and the hysteresis, per instance."""

    def __init__(self, rules: Sequence[ActiveRule]) -> None:
        super().__init__(rules)
        codes = [OPS[r.spec.condition.op] for r in self.rules]  # type: ignore[union-attr]
        self.op = np.asarray(codes, dtype=np.int64)[self.inst_rule]
        self.v = self.param("value")
        self.lo = self.param("low")
        self.hi = self.param("high")
        self.h = np.asarray([r.spec.clear.hysteresis for r in self.rules], dtype=np.float64)[
            self.inst_rule
        ]

    def masks(self, inst: IntArray, x: FloatArray) -> tuple[Any, Any]:
        return compare(self.op[inst], self.v[inst], self.lo[inst], self.hi[inst], self.h[inst], x)

    def latch_emit(
        self, p: Pairs, ev: Any, value: FloatArray, detail: dict[str, Any] | None = None
    ) -> list[Transition]:
        seg = Segments(p.inst)
        before = self.active[p.inst]
        state = latch(seg, ev, before)
        at = changes(seg, state, before)
        self.active[p.inst[seg.end_pos]] = state[seg.end_pos]
        return self.emit(p.inst[at], state[at], p.ts[at], value[at], detail)


class Threshold(ThresholdLike):
    """Raised on the first sample that meets the threshold; cleared on the first that is
    beyond it by the hysteresis (values inside the band change nothing)."""

    kind = "threshold"

    def evaluate(self, p: Pairs, text: pa.Array | None) -> list[Transition]:
        r, c = self.masks(p.inst, p.val)
        return self.latch_emit(p, events(r, c), p.val)


class Rate(ThresholdLike):
    """Change per second between consecutive samples of a series (the actual time between
    them, so gaps are honoured); the first sample ever, and samples at the same time as the
    previous, decide nothing."""

    kind = "rate"
    exported = (*Group.exported, "last_val")

    def __init__(self, rules: Sequence[ActiveRule]) -> None:
        super().__init__(rules)
        self.last_val = np.full(self.n, np.nan)
        absolute = [bool(getattr(r.spec.condition, "abs", False)) for r in self.rules]
        self.absolute = np.asarray(absolute, dtype=np.bool_)[self.inst_rule]

    def evaluate(self, p: Pairs, text: pa.Array | None) -> list[Transition]:
        seg = Segments(p.inst)
        pts = seg.previous(p.ts, self.last_ts[p.inst])
        pval = seg.previous(p.val, self.last_val[p.inst])
        dt = (p.ts - pts) / 1e6
        with np.errstate(all="ignore"):
            rate = np.where((pts != NEVER) & (dt > 0), (p.val - pval) / dt, np.nan)
        rate = np.where(self.absolute[p.inst], np.abs(rate), rate)
        r, c = self.masks(p.inst, rate)
        out = self.latch_emit(p, events(r, c), rate, None)
        self.last_val[p.inst[seg.end_pos]] = p.val[seg.end_pos]
        return out


class StateChange(Group):
    """Raised on a sample whose value (number, or text when it has no number) differs from
    the previous one, optionally from/to given values; cleared on the next sample that is
    not such a change (a repeated value, or a change not matching from/to). Consecutive
    matching changes keep the alarm raised."""

    kind = "state_change"
    needs_value = False
    exported = (*Group.exported, "last_num")

    def __init__(self, rules: Sequence[ActiveRule]) -> None:
        super().__init__(rules)
        self.texts: dict[str, int] = {}
        self.names: list[str] = []
        self.last_num = np.full(self.n, np.nan)
        self.last_code = np.full(self.n, -1, dtype=np.int64)
        ends: list[tuple[FloatArray, IntArray]] = []
        for attr in ("from_value", "to_value"):
            given = [getattr(r.spec.condition, attr) for r in self.rules]
            num = np.asarray([_num(g) for g in given], dtype=np.float64)
            code = np.asarray([self._code(g) if isinstance(g, str) else -2 for g in given])
            ends.append((num[self.inst_rule], code.astype(np.int64)[self.inst_rule]))
        (self.from_num, self.from_code), (self.to_num, self.to_code) = ends

    def _code(self, text: str) -> int:
        code = self.texts.get(text)
        if code is None:
            code = self.texts[text] = len(self.names)
            self.names.append(text)
        return code

    def codes(self, rows: IntArray, text: pa.Array | None) -> IntArray:
        if text is None or text.null_count == len(text):
            return np.full(len(rows), -1, dtype=np.int64)
        enc = pc.take(text, pa.array(rows)).dictionary_encode()
        if isinstance(enc, pa.ChunkedArray):
            enc = enc.combine_chunks()
        lut = np.asarray([self._code(t) for t in enc.dictionary.to_pylist()], dtype=np.int64)
        idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        return np.where(idx >= 0, lut[np.maximum(idx, 0)] if len(lut) else -1, -1)

    def evaluate(self, p: Pairs, text: pa.Array | None) -> list[Transition]:
        code = self.codes(p.row, text)
        code = np.where(np.isnan(p.val), code, -1)
        has = ~np.isnan(p.val) | (code >= 0)
        if not has.all():
            p, code = p.take(has), code[has]
            if not len(p):
                return []
        seg = Segments(p.inst)
        pnum = seg.previous(p.val, self.last_num[p.inst])
        pcode = seg.previous(code, self.last_code[p.inst])
        known = ~np.isnan(self.last_num[p.inst]) | (self.last_code[p.inst] >= 0)
        had = seg.previous(np.ones(len(p), bool), known)
        same = ((p.val == pnum) | (np.isnan(p.val) & np.isnan(pnum))) & (code == pcode)
        i = p.inst
        ok_from = _matches(self.from_num[i], self.from_code[i], pnum, pcode)
        ok_to = _matches(self.to_num[i], self.to_code[i], p.val, code)
        ev = np.where(had & ~same & ok_from & ok_to, 1, -1).astype(np.int8)
        before = self.active[i]
        state = latch(seg, ev, before)
        at = changes(seg, state, before)
        last = seg.end_pos
        self.active[i[last]] = state[last]
        self.last_num[i[last]] = p.val[last]
        self.last_code[i[last]] = code[last]
        return self.emit(i[at], state[at], p.ts[at], p.val[at])

    def export(self, ri: int) -> dict[str, Any]:
        state = super().export(ri)
        a, b = self.slices[ri]
        state["last_text"] = [self.names[c] if c >= 0 else None for c in self.last_code[a:b]]
        return state

    def load(self, ri: int, state: dict[str, Any]) -> None:
        super().load(ri, state)
        a, b = self.slices[ri]
        mine = {d: a + k for k, d in enumerate(self.device[a:b].tolist())}
        for d, t in zip(state.get("devices", []), state.get("last_text", []), strict=False):
            if d in mine:
                self.last_code[mine[d]] = self._code(t) if t is not None else -1


class NoData(Group):
    """No sample of the property (or of any property of the device) for ``for``.

    Raised by :meth:`tick` at (last sample + ``for``) and cleared by the next sample; when
    a batch itself holds a gap of at least ``for`` between two samples (history, a dry run,
    or ticks that did not run), the alarm is raised at (earlier + ``for``) and cleared at the
    later sample. A device never heard from counts from the first tick after the rule was
    set. Samples without value and text (bad quality) are not data.
    """

    kind = "no_data"
    needs_value = False
    exported = (*Group.exported, "seen")

    def __init__(self, rules: Sequence[ActiveRule]) -> None:
        super().__init__(rules)
        self.for_us = (self.param("for_s") * 1e6).astype(np.int64)
        self.seen = np.full(self.n, NEVER, dtype=np.int64)

    def reads(self, ri: int, rule: ActiveRule) -> list[str] | None:
        prop = rule.spec.condition.property  # type: ignore[union-attr]
        return None if prop is None else [prop]

    def evaluate(self, p: Pairs, text: pa.Array | None) -> list[Transition]:
        has = ~np.isnan(p.val)
        if text is not None and text.null_count < len(text):
            has |= pc.is_valid(pc.take(text, pa.array(p.row))).to_numpy(zero_copy_only=False)
        p = p.take(has)
        if not len(p):
            return []
        seg = Segments(p.inst)
        i = p.inst
        prev = seg.previous(p.ts, self.seen[i])
        gap = (prev != NEVER) & (p.ts - prev >= self.for_us[i])
        was_active = seg.first & self.active[i]
        raise_at = np.flatnonzero(gap & ~was_active)
        clear_at = np.flatnonzero(gap | was_active)
        inst = np.concatenate([i[raise_at], i[clear_at]])
        raised = np.concatenate([np.ones(len(raise_at), bool), np.zeros(len(clear_at), bool)])
        at = np.concatenate([prev[raise_at] + self.for_us[i[raise_at]], p.ts[clear_at]])
        order = np.lexsort((~raised, at, inst))
        self.active[i] = False
        self.seen[i[seg.end_pos]] = p.ts[seg.end_pos]
        return self.emit(inst[order], raised[order], at[order])

    def tick(self, now_us: int) -> list[Transition]:
        self.seen[self.seen == NEVER] = now_us
        due = np.flatnonzero(~self.active & (now_us - self.seen >= self.for_us))
        self.active[due] = True
        return self.emit(due, np.ones(len(due), bool), self.seen[due] + self.for_us[due])


class ExpressionKind(Group):
    """A boolean expression over several properties of one device, on the device's latest
    value of each; evaluated at every distinct timestamp at which any of them has a sample
    (so properties sent together are seen together). A property without a value yet is NaN;
    a NaN result is false. Raised when it becomes true, cleared when it becomes false."""

    kind = "expression"
    exported = (*Group.exported, "latest")

    def __init__(self, rules: Sequence[ActiveRule]) -> None:
        self.exprs: list[Expression] = [
            compile_expr(r.spec.condition.expression)  # type: ignore[union-attr]
            for r in rules
        ]
        self.props = [sorted(e.names) for e in self.exprs]
        super().__init__(rules)
        width = max((len(n) for n in self.props), default=1) or 1
        self.latest = np.full((self.n, width), np.nan)

    def reads(self, ri: int, rule: ActiveRule) -> list[str] | None:
        return self.props[ri]

    def evaluate(self, p: Pairs, text: pa.Array | None) -> list[Transition]:
        out: list[Transition] = []
        bounds = np.searchsorted(p.inst, [s for sl in self.slices for s in sl])
        for ri, expr in enumerate(self.exprs):
            a, b = int(bounds[2 * ri]), int(bounds[2 * ri + 1])
            if a < b:
                out += self._rule(ri, expr, p.take(np.arange(a, b)))
        return out

    def _rule(self, ri: int, expr: Expression, p: Pairs) -> list[Transition]:
        seg = Segments(p.inst)
        n = len(p)
        pos = np.arange(n)
        last_of_ts = seg.end.copy()  # the last pair of each (instance, ts)
        last_of_ts[:-1] |= p.ts[1:] != p.ts[:-1]
        env: dict[str, Any] = {}
        cols = []
        for k, name in enumerate(self.props[ri]):
            last = np.maximum.accumulate(np.where(p.prop == k, pos, -1))
            col = np.where(last >= seg.start, p.val[np.maximum(last, 0)], self.latest[p.inst, k])
            cols.append(col)
            env[name] = col[last_of_ts]
        ev_idx = np.flatnonzero(last_of_ts)
        result = expr.evaluate(env) if env else np.zeros(len(ev_idx))
        truth = np.broadcast_to((result != 0) & ~np.isnan(result), ev_idx.shape)
        q = p.take(ev_idx)
        qseg = Segments(q.inst)
        before = self.active[q.inst]
        state = latch(qseg, np.where(truth, 1, -1).astype(np.int8), before)
        at = changes(qseg, state, before)
        self.active[q.inst[qseg.end_pos]] = state[qseg.end_pos]
        for k, col in enumerate(cols):
            self.latest[p.inst[seg.end_pos], k] = col[seg.end_pos]
        return self.emit(q.inst[at], state[at], q.ts[at], None)


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan


def _matches(num: FloatArray, code: IntArray, val: FloatArray, vcode: IntArray) -> Any:
    """Per pair: no constraint (code -2 and NaN number), a number, or a text code."""
    any_ = (code == -2) & np.isnan(num)
    return any_ | ((code == -2) & (val == num)) | ((code >= 0) & (vcode == code))
