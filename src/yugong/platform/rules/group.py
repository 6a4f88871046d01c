"""The base of the engine's per-kind evaluators.

A :class:`Group` holds every active rule of one condition kind. Each (rule, device) pair is
an *instance* with a row in the group's NumPy state arrays; the engine hands the group the
samples its instances read as *pairs* (instance, property index, ts, value, batch row), and
the group returns the transitions. Instances of one rule are contiguous, so a rule's state is
a slice of the arrays (what :meth:`Group.export` and :meth:`Group.load` move around).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from yugong.platform.rules.types import ActiveRule, Transition
from yugong.platform.rules.vec import NEVER, BoolArray, FloatArray, IntArray


@dataclass(slots=True)
class Pairs:
    """Samples as read by instances, sorted by (instance, ts, arrival)."""

    inst: IntArray
    prop: IntArray
    ts: IntArray
    val: FloatArray
    row: IntArray  # row in the batch (for the text column)

    def take(self, idx: IntArray | BoolArray) -> Pairs:
        return Pairs(self.inst[idx], self.prop[idx], self.ts[idx], self.val[idx], self.row[idx])

    def __len__(self) -> int:
        return len(self.inst)


class Group:
    """Rules of one kind; subclasses implement :meth:`evaluate` (and :meth:`tick`)."""

    kind: ClassVar[str]
    needs_value: ClassVar[bool] = True  # drop pairs without a numeric value first
    exported: ClassVar[tuple[str, ...]] = ("last_ts", "active")  # per-instance arrays

    def __init__(self, rules: Sequence[ActiveRule]) -> None:
        self.rules = list(rules)
        devices: list[int] = []
        inst_rule: list[int] = []
        series: list[int] = []
        sub_inst: list[int] = []
        sub_prop: list[int] = []
        self.slices: list[tuple[int, int]] = []
        for ri, rule in enumerate(self.rules):
            start = len(devices)
            names = self.reads(ri, rule)
            for device in sorted(rule.series):
                mapping = rule.series[device]
                wanted = sorted(mapping) if names is None else names
                found = [(k, mapping[n]) for k, n in enumerate(wanted) if n in mapping]
                if not found:
                    continue
                for k, s in found:
                    series.append(s)
                    sub_inst.append(len(devices))
                    sub_prop.append(k)
                devices.append(device)
                inst_rule.append(ri)
            self.slices.append((start, len(devices)))
        self.n = len(devices)
        self.device = np.asarray(devices, dtype=np.int64)
        self.inst_rule = np.asarray(inst_rule, dtype=np.int64)
        self.sub_series = np.asarray(series, dtype=np.int64)
        self.sub_inst = np.asarray(sub_inst, dtype=np.int64)
        self.sub_prop = np.asarray(sub_prop, dtype=np.int64)
        self.manual = np.asarray([r.spec.clear.manual for r in self.rules], dtype=bool)
        self.last_ts = np.full(self.n, NEVER, dtype=np.int64)
        self.active = np.zeros(self.n, dtype=bool)
        self.late = 0

    # ------------------------------------------------------------------ per kind

    def reads(self, ri: int, rule: ActiveRule) -> list[str] | None:
        """The property names an instance reads (None: every property of the device)."""
        return [str(getattr(rule.spec.condition, "property", ""))]

    def param(self, name: str, default: float = np.nan) -> FloatArray:
        """A condition field as a per-instance float array."""
        per_rule = np.asarray(
            [_float(getattr(r.spec.condition, name, None), default) for r in self.rules],
            dtype=np.float64,
        )
        return per_rule[self.inst_rule] if self.n else np.zeros(0)

    def evaluate(self, p: Pairs, text: pa.Array | None) -> list[Transition]:
        raise NotImplementedError

    def tick(self, now_us: int) -> list[Transition]:
        return []

    # ------------------------------------------------------------------ driving

    def process(self, p: Pairs, text: pa.Array | None) -> list[Transition]:
        order = np.lexsort((p.ts, p.inst))
        p = p.take(order)
        if self.needs_value:
            p = p.take(~np.isnan(p.val))
        late = p.ts < self.last_ts[p.inst]
        if late.any():
            self.late += int(late.sum())
            p = p.take(~late)
        if not len(p):
            return []
        out = self.evaluate(p, text)
        ends = np.flatnonzero(np.append(p.inst[1:] != p.inst[:-1], True))
        self.last_ts[p.inst[ends]] = p.ts[ends]
        return out

    def emit(
        self,
        inst: IntArray,
        raised: BoolArray,
        at: IntArray,
        value: FloatArray | None = None,
        detail: dict[str, Any] | None = None,
    ) -> list[Transition]:
        """Transitions for the given instances; cleared ones of manual rules are dropped."""
        keep = raised | ~self.manual[self.inst_rule[inst]]
        out: list[Transition] = []
        vals = value.tolist() if value is not None else [None] * len(inst)
        for i, r, t, v, k in zip(
            inst.tolist(), raised.tolist(), at.tolist(), vals, keep.tolist(), strict=True
        ):
            if not k:
                continue
            rule = self.rules[int(self.inst_rule[i])]
            out.append(
                Transition(
                    rule=rule.id,
                    version=rule.version,
                    tenant=rule.tenant,
                    device=int(self.device[i]),
                    raised=r,
                    at_us=int(t),
                    value=None if v is None or v != v else float(v),
                    detail={"kind": self.kind, **(detail or {})},
                )
            )
        return out

    # ------------------------------------------------------------------ state

    def export(self, ri: int) -> dict[str, Any]:
        a, b = self.slices[ri]
        state: dict[str, Any] = {"devices": self.device[a:b].tolist()}
        for name in self.exported:
            state[name] = getattr(self, name)[a:b].tolist()
        return state

    def load(self, ri: int, state: dict[str, Any]) -> None:
        a, b = self.slices[ri]
        mine = {d: a + k for k, d in enumerate(self.device[a:b].tolist())}
        pairs = [(mine[d], k) for k, d in enumerate(state.get("devices", [])) if d in mine]
        if not pairs:
            return
        dst = np.asarray([p[0] for p in pairs], dtype=np.int64)
        src = np.asarray([p[1] for p in pairs], dtype=np.int64)
        for name in self.exported:
            arr = getattr(self, name)
            arr[dst] = np.asarray(state[name], dtype=arr.dtype)[src]


def _float(v: Any, default: float) -> float:
    if v is None or isinstance(v, str):
        return default
    return float(v)
