"""The rule engine: pure, synchronous and vectorised.

::

    engine = RuleEngine()
    engine.set_rules(active_rules)            # ActiveRule: targets resolved to series
    transitions = engine.process(batch)       # one SAMPLE_SCHEMA table
    transitions += engine.tick(now_us)        # time-driven: no_data, sustained, count
    saved = engine.snapshot()                 # rule id -> (version, state bytes)
    engine.restore(saved)                     # after a restart, before or after set_rules

How a batch is evaluated: every (rule, device) pair is an *instance* of its kind's
evaluator (:mod:`.kinds`, :mod:`.sustained`, :mod:`.windows`), with its state in NumPy
arrays. The batch's series ids are looked up in the sorted subscription table with
:func:`numpy.searchsorted`, each sample is repeated once per instance that reads it (a
*rule evaluation*), and each kind computes its conditions for all its pairs at once, sorted
by (instance, ts), walking only where an alarm state changes.

Order and late samples: inside a batch, samples are applied in time order per series
(whatever their order in the batch; equal times keep batch order). A sample older than the
latest one an instance has already seen (``ts <`` last seen; for kinds reading several
properties, the latest of the device's properties) is ignored and counted in
:attr:`RuleEngine.late`. Samples without a value (bad quality) are ignored, except by
``state_change`` and ``no_data``, which also take text.

Manual clearing: for rules with ``clear.manual`` the engine never emits a cleared
transition; it still tracks the condition, so the next time it becomes true after being
false a new ``raised`` transition is emitted (the alarm service counts it as a repeat).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from yugong.platform.rules.group import Group, Pairs
from yugong.platform.rules.kinds import ExpressionKind, NoData, Rate, StateChange, Threshold
from yugong.platform.rules.sustained import Sustained
from yugong.platform.rules.types import ActiveRule, Transition
from yugong.platform.rules.windows import Count, Deviation

log = logging.getLogger(__name__)

KINDS: dict[str, type[Group]] = {
    g.kind: g
    for g in (Threshold, Sustained, Rate, Deviation, ExpressionKind, NoData, StateChange, Count)
}
STATE_FORMAT = 1


class RuleEngine:
    def __init__(self) -> None:
        self.groups: list[Group] = []
        self.rules: dict[int, ActiveRule] = {}
        self._where: dict[int, tuple[int, int]] = {}  # rule id -> (group, index in group)
        self._pending: dict[int, tuple[int, bytes]] = {}  # restored, rule not set yet
        self.evaluations = 0  # samples x instances that read them, since start
        self._build_routes()

    # ------------------------------------------------------------------ rules

    def set_rules(self, rules: Sequence[ActiveRule]) -> None:
        """Replace the active rules; a rule whose (id, version) is unchanged keeps its state
        (for the devices it still covers), others start afresh."""
        enabled = [r for r in rules if r.spec.enabled]
        if len(enabled) == len(self.rules) and all(self.rules.get(r.id) == r for r in enabled):
            return  # the same rules on the same devices: nothing to rebuild
        versions = {r.id: r.version for r in enabled}
        keep = {
            rid: self._export(rid)
            for rid, r in self.rules.items()
            if versions.get(rid) == r.version
        }
        by_kind: dict[str, list[ActiveRule]] = {}
        for rule in enabled:
            by_kind.setdefault(rule.spec.condition.kind, []).append(rule)
        self.groups = [KINDS[k](rs) for k, rs in sorted(by_kind.items())]
        self.rules = {r.id: r for rs in by_kind.values() for r in rs}
        self._where = {
            r.id: (gi, ri) for gi, g in enumerate(self.groups) for ri, r in enumerate(g.rules)
        }
        for rid, blob in keep.items():
            self._import(rid, blob)
        for rid, (version, blob) in list(self._pending.items()):
            if rid in self.rules and self.rules[rid].version == version:
                self._import(rid, blob)
                del self._pending[rid]
        self._build_routes()

    def _build_routes(self) -> None:
        series = [g.sub_series for g in self.groups]
        gid = [np.full(len(g.sub_series), k, np.int64) for k, g in enumerate(self.groups)]
        inst = [g.sub_inst for g in self.groups]
        prop = [g.sub_prop for g in self.groups]
        tenant = [
            np.asarray([r.tenant for r in g.rules], np.int64)[g.inst_rule[g.sub_inst]]
            for g in self.groups
        ]
        s = np.concatenate(series) if series else np.zeros(0, np.int64)
        order = np.argsort(s, kind="stable")
        self._sub_series = s[order]
        self._sub_group = (np.concatenate(gid) if gid else s)[order]
        self._sub_inst = (np.concatenate(inst) if inst else s)[order]
        self._sub_prop = (np.concatenate(prop) if prop else s)[order]
        self._sub_tenant = (np.concatenate(tenant) if tenant else s)[order]
        self._keys, self._first, counts = np.unique(
            self._sub_series, return_index=True, return_counts=True
        )
        self._counts = counts.astype(np.int64)

    # ------------------------------------------------------------------ evaluation

    def process(self, batch: pa.Table) -> list[Transition]:
        """Evaluate one batch of samples (``SAMPLE_SCHEMA``); the transitions it decides,
        in time order."""
        if batch.num_rows == 0 or not len(self._keys):
            return []
        series = batch.column("series").to_numpy().astype(np.int64, copy=False)
        k = np.minimum(np.searchsorted(self._keys, series), len(self._keys) - 1)
        rows = np.flatnonzero(self._keys[k] == series)
        if not len(rows):
            return []
        counts = self._counts[k[rows]]
        total = int(counts.sum())
        row = np.repeat(rows, counts)
        offset = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        sub = np.repeat(self._first[k[rows]], counts) + offset
        # Series ids are unique across tenants; a rule still never reads another tenant's.
        tenant = _column(batch, "tenant", np.int64)[row]
        mine = self._sub_tenant[sub] == tenant
        if not mine.all():
            row, sub = row[mine], sub[mine]
        self.evaluations += len(sub)
        ts = _column(batch, "ts", np.int64)[row]
        val = _values(batch)[row]
        group, inst, prop = self._sub_group[sub], self._sub_inst[sub], self._sub_prop[sub]
        text_col = batch.column("text")
        text = text_col.combine_chunks() if text_col.null_count < batch.num_rows else None
        late = self.late
        out: list[Transition] = []
        for gi, g in enumerate(self.groups):
            m = group == gi
            if m.any():
                out += g.process(Pairs(inst[m], prop[m], ts[m], val[m], row[m]), text)
        if self.late > late:
            log.debug("rules: %d late samples ignored in a batch", self.late - late)
        out.sort(key=lambda t: (t.at_us, not t.raised))
        return out

    def tick(self, now_us: int) -> list[Transition]:
        """Time-driven transitions up to ``now_us``: no_data, sustained runs completing
        without a new sample, count windows emptying."""
        out: list[Transition] = []
        for g in self.groups:
            out += g.tick(now_us)
        out.sort(key=lambda t: (t.at_us, not t.raised))
        return out

    @property
    def late(self) -> int:
        """Samples ignored because an instance had already seen a later one."""
        return sum(g.late for g in self.groups)

    # ------------------------------------------------------------------ state

    def snapshot(self) -> dict[int, tuple[int, bytes]]:
        """Each active rule's state: rule id -> (version, bytes)."""
        return {rid: (r.version, self._export(rid)) for rid, r in self.rules.items()}

    def restore(self, saved: Mapping[int, tuple[int, bytes]]) -> None:
        """Load saved state into rules with the same (id, version); state of rules not set
        yet is kept and applied when :meth:`set_rules` brings them."""
        for rid, (version, blob) in saved.items():
            rule = self.rules.get(rid)
            if rule is not None and rule.version == version:
                self._import(rid, blob)
            else:
                self._pending[rid] = (version, blob)

    def _export(self, rid: int) -> bytes:
        gi, ri = self._where[rid]
        g = self.groups[gi]
        state = {"format": STATE_FORMAT, "kind": g.kind, **g.export(ri)}
        return json.dumps(state, separators=(",", ":")).encode()

    def _import(self, rid: int, blob: bytes) -> None:
        gi, ri = self._where[rid]
        g = self.groups[gi]
        try:
            state = json.loads(blob)
        except ValueError:
            log.warning("rule %d: unreadable saved state ignored", rid)
            return
        if state.get("format") != STATE_FORMAT or state.get("kind") != g.kind:
            log.warning("rule %d: saved state of another format or kind ignored", rid)
            return
        g.load(ri, state)


def _column(batch: pa.Table, name: str, dtype: type) -> np.ndarray:
    col = batch.column(name)
    arr = col.to_numpy() if col.num_chunks != 1 else col.chunk(0).to_numpy()
    return np.asarray(arr, dtype=dtype)


def _values(batch: pa.Table) -> np.ndarray:
    """The value column as float64, NaN where null."""
    col = batch.column("value")
    return np.asarray(col.to_numpy(), dtype=np.float64)


__all__ = ["KINDS", "RuleEngine"]
