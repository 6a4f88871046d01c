"""From the rule engine's transitions to alarm rows and their history, inside the caller's
transaction: the part of the alarm service that runs for every batch the engine decides on.

Transitions of rules that are unknown, disabled or deleted, or that name a device outside the
rule's tenant, are dropped (and counted). A raise opens an alarm unless one is open for
(rule, device), which then counts up; a clear closes the open one, unless the rule's spec
says ``clear: {manual: true}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from yugong.platform.alarms.models import Alarm, AlarmEvent
from yugong.platform.alarms.records import OPEN_STATES, at_us, change_of
from yugong.platform.registry.models import Device
from yugong.platform.rules.models import Rule
from yugong.platform.rules.types import AlarmChange, Transition

RULE_ACTOR = "rule"
OpenAlarms = dict[tuple[int | None, int | None], Alarm]


@dataclass
class Pending:
    """A change made in the current transaction, published once it commits."""

    alarm: Alarm
    kind: str
    state: str
    at: datetime
    actor: str
    value: float | None = None
    text: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class ApplyStats:
    applied: int = 0
    dropped: int = 0  # transitions of unknown, disabled or deleted rules, or foreign devices


def from_transitions(
    s: Session, transitions: Sequence[Transition], stats: ApplyStats
) -> list[Pending]:
    """Apply ``transitions`` in order to the alarms in ``s``; the changes made."""
    rule_ids = sorted({t.rule for t in transitions})
    device_ids = sorted({t.device for t in transitions})
    rules = {r.id: r for r in s.scalars(select(Rule).where(Rule.id.in_(rule_ids)))}
    devices = {
        r.id: r
        for r in s.execute(
            select(Device.id, Device.tenant_id, Device.asset_id).where(Device.id.in_(device_ids))
        )
    }
    open_alarms: OpenAlarms = {
        (a.rule_id, a.device_id): a
        for a in s.scalars(
            select(Alarm).where(
                Alarm.rule_id.in_(rule_ids),
                Alarm.device_id.in_(device_ids),
                Alarm.state.in_(OPEN_STATES),
            )
        )
    }
    pending: list[Pending] = []
    for t in transitions:
        rule, device = rules.get(t.rule), devices.get(t.device)
        if (
            rule is None
            or not rule.enabled
            or rule.tenant_id != t.tenant
            or device is None
            or device.tenant_id != t.tenant
        ):
            stats.dropped += 1
            continue
        stats.applied += 1
        if t.raised:
            pending.append(_raised(s, open_alarms, rule, device.asset_id, t))
        else:
            done = _rule_cleared(open_alarms, rule, t)
            if done is not None:
                pending.append(done)
    return pending


def _raised(
    s: Session, open_alarms: OpenAlarms, rule: Rule, asset: int | None, t: Transition
) -> Pending:
    when = at_us(t.at_us)
    key = (t.rule, t.device)
    alarm = open_alarms.get(key)
    if alarm is None:
        spec = rule.spec or {}
        alarm = Alarm(
            tenant_id=t.tenant,
            rule_id=t.rule,
            rule_version=t.version,
            device_id=t.device,
            asset_id=asset,
            name=rule.name,
            severity=str(spec.get("severity", "warning")),
            state="active",
            acknowledged=False,
            count=1,
            value=t.value,
            raised_at=when,
            last_at=when,
            detail=dict(t.detail),
        )
        s.add(alarm)
        open_alarms[key] = alarm
        return Pending(alarm, "raised", "active", when, RULE_ACTOR, t.value, None, t.detail)
    return repeated(alarm, when, RULE_ACTOR, t.value, t.detail)


def repeated(
    alarm: Alarm, when: datetime, actor: str, value: float | None, detail: dict[str, Any]
) -> Pending:
    """Raised again while open: count up."""
    alarm.count += 1
    alarm.last_at = max(alarm.last_at, when)
    alarm.value = value
    extra = {**detail, "count": alarm.count}
    return Pending(alarm, "repeated", alarm.state, when, actor, value, None, extra)


def _rule_cleared(open_alarms: OpenAlarms, rule: Rule, t: Transition) -> Pending | None:
    key = (t.rule, t.device)
    alarm = open_alarms.get(key)
    if alarm is None or _manual_clear(rule):
        return None
    when = at_us(t.at_us)
    alarm.state = "cleared"
    alarm.cleared_at = when
    alarm.cleared_by = RULE_ACTOR
    del open_alarms[key]
    return Pending(alarm, "cleared", "cleared", when, RULE_ACTOR, t.value, None, t.detail)


def commit(s: Session, pending: Sequence[Pending]) -> list[AlarmChange]:
    """Write the history rows of ``pending`` (new alarms get their ids here) and return
    the bus messages; the caller's transaction commits them."""
    if not pending:
        return []
    s.flush()
    changes: list[AlarmChange] = []
    for p in pending:
        s.add(
            AlarmEvent(
                alarm_id=p.alarm.id,
                at=p.at,
                kind=p.kind,
                actor=p.actor,
                text=p.text,
                detail=_event_detail(p),
            )
        )
        changes.append(
            change_of(
                p.alarm,
                p.kind,
                p.at,
                p.actor,
                value=p.value,
                detail={**p.detail, "text": p.text} if p.text is not None else p.detail,
                state=p.state,
            )
        )
    s.flush()
    return changes


def _manual_clear(rule: Rule) -> bool:
    clear = (rule.spec or {}).get("clear") or {}
    return bool(clear.get("manual", False))


def _event_detail(p: Pending) -> dict[str, Any]:
    out = dict(p.detail)
    if p.value is not None:
        out.setdefault("value", p.value)
    out.setdefault("state", p.state)
    return out


__all__ = ["RULE_ACTOR", "ApplyStats", "Pending", "commit", "from_transitions", "repeated"]
