"""What the alarm service hands back: immutable records, never live ORM rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from yugong.platform.alarms.models import Alarm, AlarmEvent
from yugong.platform.rules.types import AlarmChange

STATES: tuple[str, ...] = ("active", "acknowledged", "cleared")
OPEN_STATES: tuple[str, ...] = ("active", "acknowledged")
# Filter words for ``state``: one of the states, or "open" (active or acknowledged).
STATE_FILTERS: tuple[str, ...] = (*STATES, "open")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def at_us(us: int) -> datetime:
    """Epoch microseconds as an aware datetime, exactly (no float rounding)."""
    return _EPOCH + timedelta(microseconds=us)


def us_of(dt: datetime) -> int:
    """An aware datetime as epoch microseconds, exactly."""
    return (dt - _EPOCH) // timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    id: int
    tenant_id: int
    rule_id: int | None
    rule_version: int | None
    device_id: int | None
    asset_id: int | None
    name: str
    severity: str
    state: str
    acknowledged: bool
    count: int
    value: float | None
    raised_at: datetime
    last_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    cleared_at: datetime | None
    cleared_by: str | None
    assignee_id: int | None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, a: Alarm) -> AlarmRecord:
        return cls(
            id=a.id,
            tenant_id=a.tenant_id,
            rule_id=a.rule_id,
            rule_version=a.rule_version,
            device_id=a.device_id,
            asset_id=a.asset_id,
            name=a.name,
            severity=a.severity,
            state=a.state,
            acknowledged=bool(a.acknowledged),
            count=a.count,
            value=a.value,
            raised_at=a.raised_at,
            last_at=a.last_at,
            acknowledged_at=a.acknowledged_at,
            acknowledged_by=a.acknowledged_by,
            cleared_at=a.cleared_at,
            cleared_by=a.cleared_by,
            assignee_id=a.assignee_id,
            detail=dict(a.detail or {}),
        )


@dataclass(frozen=True, slots=True)
class AlarmEventRecord:
    id: int
    alarm_id: int
    at: datetime
    kind: str
    actor: str
    text: str | None
    detail: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, e: AlarmEvent) -> AlarmEventRecord:
        return cls(e.id, e.alarm_id, e.at, e.kind, e.actor, e.text, dict(e.detail or {}))


def change_of(
    a: Alarm,
    kind: str,
    at: datetime,
    actor: str,
    *,
    value: float | None = None,
    detail: dict[str, Any] | None = None,
    state: str | None = None,
) -> AlarmChange:
    """The bus message for ``kind`` having just happened to ``a`` (its id already known);
    ``state`` is the alarm's state right after it, when ``a`` has moved on since."""
    return AlarmChange(
        alarm=a.id,
        tenant=a.tenant_id,
        rule=a.rule_id,
        device=a.device_id,
        kind=kind,
        state=state or a.state,
        severity=a.severity,
        name=a.name,
        at_us=us_of(at),
        value=value,
        actor=actor,
        detail=dict(detail or {}),
    )


def change_json(change: AlarmChange) -> dict[str, Any]:
    """An alarm change as a JSON object (the SSE stream's event data)."""
    return {
        "alarm": change.alarm,
        "tenant": change.tenant,
        "rule": change.rule,
        "device": change.device,
        "kind": change.kind,
        "state": change.state,
        "severity": change.severity,
        "name": change.name,
        "at_us": change.at_us,
        "value": change.value,
        "actor": change.actor,
        "detail": change.detail,
    }


__all__ = [
    "OPEN_STATES",
    "STATES",
    "STATE_FILTERS",
    "AlarmEventRecord",
    "AlarmRecord",
    "at_us",
    "change_json",
    "change_of",
    "us_of",
]
