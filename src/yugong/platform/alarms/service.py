"""The alarm service: turns the rule engine's transitions into alarms, lets people
acknowledge, clear, assign and comment on them, answers queries, and publishes every
change on the bus topic ``"alarms"`` (:data:`~yugong.platform.rules.types.ALARMS_TOPIC`).

Lifecycle: an alarm opens ``active``; people acknowledge it (``acknowledged``) and it is
cleared by its rule (hysteresis is the engine's business) or by a person (``cleared``). An
alarm cleared before anyone acknowledged it can still be acknowledged: its state stays
``cleared`` and ``acknowledged`` becomes true. At most one alarm is open (active or
acknowledged) per rule and device: a rule raising again while one is open counts up
(``count``, ``last_at``, a ``repeated`` change) instead of opening another. A rule whose
spec says ``clear: {manual: true}`` never clears its alarms; people do.

Everything a person does is in the alarm's history (``alarm_events``) and in the audit log,
in the same transaction as the change.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import threading
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from yugong.core.errors import Conflict, FieldError, InvalidInput, NotFound
from yugong.infra.bus import Bus
from yugong.infra.db import Database, utcnow
from yugong.platform.alarms import queries
from yugong.platform.alarms.changes import ApplyStats, Pending, commit, from_transitions, repeated
from yugong.platform.alarms.models import Alarm, AlarmEvent
from yugong.platform.alarms.queries import AlarmFilter
from yugong.platform.alarms.records import (
    OPEN_STATES,
    AlarmEventRecord,
    AlarmRecord,
    at_us,
)
from yugong.platform.registry._common import get_scoped, invalid
from yugong.platform.registry.models import Device, Tenant
from yugong.platform.registry.records import Listing
from yugong.platform.rules.models import Rule
from yugong.platform.rules.spec import SEVERITIES
from yugong.platform.rules.types import ALARMS_TOPIC, AlarmChange, Transition
from yugong.security.models import User
from yugong.security.principal import Principal

if TYPE_CHECKING:
    from yugong.platform.registry.bindings import DeviceDirectory
    from yugong.security.audit import AuditLog

log = logging.getLogger(__name__)
READ = "alarms:read"
WRITE = "alarms:write"
MAX_COMMENT = 4000
MAX_NAME = 128


class AlarmService:
    """Alarms of every tenant over the metadata database. ``loop`` is the event loop that
    owns ``bus``: calls from other threads hand their messages to it."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        directory: DeviceDirectory | None = None,
        audit: AuditLog | None = None,
        *,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.db = db
        self.bus = bus
        self.directory = directory
        self.audit = audit
        self.loop = loop
        self.stats = ApplyStats()
        # One writer at a time in this process: "one open alarm per rule and device" is
        # checked, then written, inside this lock and one transaction.
        self._lock = threading.Lock()

    # From the rule engine -----------------------------------------------------------------

    def apply(self, transitions: Sequence[Transition]) -> list[AlarmChange]:
        """Turn the engine's transitions into alarm changes, in one transaction, and publish
        them. Transitions of rules that are unknown, disabled or deleted are dropped."""
        if not transitions:
            return []
        with self._lock, self.db.session() as s:
            changes = commit(s, from_transitions(s, transitions, self.stats))
        self._publish(changes)
        return changes

    # For other code (actions, integrations) ------------------------------------------------

    def raise_alarm(
        self,
        tenant: int,
        *,
        name: str,
        severity: str,
        device: int | None = None,
        rule: int | None = None,
        rule_version: int | None = None,
        value: float | None = None,
        at: int | None = None,
        detail: dict[str, Any] | None = None,
        actor: str = "system",
    ) -> AlarmChange:
        """Raise an alarm from code. One stays open per (rule, device) — or, without a rule,
        per (name, device) — and raising it again counts up. ``at`` is epoch µs."""
        name = _text(name, "name", MAX_NAME)
        if severity not in SEVERITIES:
            raise invalid("severity", f"{severity!r} is not one of {', '.join(SEVERITIES)}")
        when = at_us(at) if at is not None else utcnow()
        with self._lock, self.db.session() as s:
            if s.get(Tenant, tenant) is None:
                raise NotFound(
                    f"tenant {tenant} not found", [FieldError("tenant", "no such tenant")]
                )
            asset = self._device_asset(s, tenant, device)
            found = s.get(Rule, rule) if rule is not None else None
            if rule is not None and (found is None or found.tenant_id != tenant):
                raise NotFound(f"rule {rule} not found", [FieldError("rule", "no such rule")])
            q = select(Alarm).where(
                Alarm.tenant_id == tenant,
                Alarm.state.in_(OPEN_STATES),
                Alarm.device_id.is_(None) if device is None else Alarm.device_id == device,
            )
            q = (
                q.where(Alarm.rule_id == rule)
                if rule is not None
                else q.where(Alarm.rule_id.is_(None), Alarm.name == name)
            )
            alarm = s.scalars(q.order_by(Alarm.id).limit(1)).first()
            if alarm is None:
                alarm = Alarm(
                    tenant_id=tenant,
                    rule_id=rule,
                    rule_version=rule_version,
                    device_id=device,
                    asset_id=asset,
                    name=name,
                    severity=severity,
                    state="active",
                    acknowledged=False,
                    count=1,
                    value=value,
                    raised_at=when,
                    last_at=when,
                    detail=dict(detail or {}),
                )
                s.add(alarm)
                p = Pending(alarm, "raised", "active", when, actor, value, None, detail or {})
            else:
                p = repeated(alarm, when, actor, value, detail or {})
            changes = commit(s, [p])
        self._publish(changes)
        return changes[0]

    @staticmethod
    def _device_asset(s: Session, tenant: int, device: int | None) -> int | None:
        if device is None:
            return None
        row = s.execute(
            select(Device.tenant_id, Device.asset_id).where(Device.id == device)
        ).first()
        if row is None or row.tenant_id != tenant:
            raise NotFound(f"device {device} not found", [FieldError("device", "no such device")])
        return row.asset_id

    # What people do ------------------------------------------------------------------------

    def acknowledge(
        self, p: Principal, alarm_id: int, *, tenant_id: int | None = None
    ) -> AlarmRecord:
        p.require(WRITE)
        with self._lock, self.db.session() as s:
            a = get_scoped(s, Alarm, p, alarm_id, tenant_id, "alarm")
            if a.acknowledged:
                raise Conflict(f"alarm {alarm_id} is already acknowledged (by {a.acknowledged_by})")
            now = utcnow()
            a.acknowledged, a.acknowledged_at, a.acknowledged_by = True, now, p.name
            if a.state == "active":
                a.state = "acknowledged"
            changes = self._human(s, p, a, "acknowledged", now)
            rec = AlarmRecord.of(a)
        self._publish(changes)
        return rec

    def clear(self, p: Principal, alarm_id: int, *, tenant_id: int | None = None) -> AlarmRecord:
        """Clear by hand (the way to end an alarm of a ``clear: {manual: true}`` rule)."""
        p.require(WRITE)
        with self._lock, self.db.session() as s:
            a = get_scoped(s, Alarm, p, alarm_id, tenant_id, "alarm")
            if a.state == "cleared":
                raise Conflict(f"alarm {alarm_id} is already cleared (by {a.cleared_by})")
            now = utcnow()
            a.state, a.cleared_at, a.cleared_by = "cleared", now, p.name
            changes = self._human(s, p, a, "cleared", now)
            rec = AlarmRecord.of(a)
        self._publish(changes)
        return rec

    def assign(
        self, p: Principal, alarm_id: int, user_id: int | None, *, tenant_id: int | None = None
    ) -> AlarmRecord:
        """Give the alarm to a user of its tenant, or to nobody (``None``)."""
        p.require(WRITE)
        with self._lock, self.db.session() as s:
            a = get_scoped(s, Alarm, p, alarm_id, tenant_id, "alarm")
            if user_id is not None:
                user = s.get(User, user_id)
                if user is None or user.tenant_id != a.tenant_id or not user.active:
                    raise InvalidInput(
                        f"user {user_id} is not an active user of the alarm's tenant",
                        [FieldError("user_id", "no such active user in the tenant")],
                    )
            before = a.assignee_id
            a.assignee_id = user_id
            detail = {"assignee_id": user_id, "previous_assignee_id": before}
            changes = self._human(s, p, a, "assigned", utcnow(), detail=detail)
            rec = AlarmRecord.of(a)
        self._publish(changes)
        return rec

    def comment(
        self, p: Principal, alarm_id: int, text: str, *, tenant_id: int | None = None
    ) -> AlarmEventRecord:
        p.require(WRITE)
        body = _text(text, "text", MAX_COMMENT)
        with self._lock, self.db.session() as s:
            a = get_scoped(s, Alarm, p, alarm_id, tenant_id, "alarm")
            changes = self._human(s, p, a, "commented", utcnow(), text=body)
            event = s.scalars(
                select(AlarmEvent)
                .where(AlarmEvent.alarm_id == a.id)
                .order_by(AlarmEvent.id.desc())
                .limit(1)
            ).one()
            rec = AlarmEventRecord.of(event)
        self._publish(changes)
        return rec

    def _human(
        self,
        s: Session,
        p: Principal,
        a: Alarm,
        kind: str,
        when: datetime,
        *,
        text: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> list[AlarmChange]:
        pending = Pending(a, kind, a.state, when, p.name, None, text, dict(detail or {}))
        changes = commit(s, [pending])
        if self.audit is not None:
            audit_detail: dict[str, Any] = {"state": a.state, **(detail or {})}
            if text is not None:
                audit_detail["text"] = text[:200]
            self.audit.record(
                f"alarms.{kind}",
                tenant_id=a.tenant_id,
                target_type="alarm",
                target_id=a.id,
                actor_kind=p.kind,
                actor_id=p.id,
                actor_name=p.name,
                detail=audit_detail,
                session=s,
            )
        return changes

    # Queries -----------------------------------------------------------------------------

    def get(self, p: Principal, alarm_id: int, *, tenant_id: int | None = None) -> AlarmRecord:
        p.require(READ)
        with self.db.session() as s:
            return AlarmRecord.of(get_scoped(s, Alarm, p, alarm_id, tenant_id, "alarm"))

    def history(
        self, p: Principal, alarm_id: int, *, tenant_id: int | None = None
    ) -> builtins.list[AlarmEventRecord]:
        """Everything that happened to the alarm, oldest first."""
        p.require(READ)
        with self.db.session() as s:
            a = get_scoped(s, Alarm, p, alarm_id, tenant_id, "alarm")
            rows = s.scalars(
                select(AlarmEvent).where(AlarmEvent.alarm_id == a.id).order_by(AlarmEvent.id)
            ).all()
            return [AlarmEventRecord.of(e) for e in rows]

    def list(
        self,
        p: Principal,
        *,
        tenant_id: int | None = None,
        filters: AlarmFilter | None = None,
        limit: int = 100,
        offset: int = 0,
        before: int | None = None,
    ) -> Listing[AlarmRecord]:
        """Alarms of one tenant, newest first. ``before`` (an alarm id) pages by cursor."""
        p.require(READ)
        tenant = p.tenant_for(tenant_id)
        f = filters or AlarmFilter()
        queries.check_filter(f)
        queries.check_page(limit, offset, before)
        with self.db.session() as s:
            rows, total = queries.page(s, queries.filtered(s, tenant, f), limit, offset, before)
            return Listing([AlarmRecord.of(a) for a in rows], total, limit, offset)

    def summary(self, p: Principal, *, tenant_id: int | None = None) -> dict[str, Any]:
        """Open alarms of the tenant by severity (and those not yet acknowledged)."""
        p.require(READ)
        tenant = p.tenant_for(tenant_id)
        with self.db.session() as s:
            return queries.summary(s, tenant)

    # Publish ----------------------------------------------------------------------------

    def _publish(self, changes: Sequence[AlarmChange]) -> None:
        if not changes:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if self.loop is None or running is self.loop:
            self._publish_now(changes)
        elif not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self._publish_now, list(changes))
        else:
            log.warning("event loop closed: %d alarm changes not published", len(changes))

    def _publish_now(self, changes: Sequence[AlarmChange]) -> None:
        for change in changes:
            self.bus.publish(ALARMS_TOPIC, change)


def _text(value: Any, loc: str, max_len: int) -> str:
    if not isinstance(value, str):
        raise invalid(loc, "must be a string")
    text = value.strip()
    if not text:
        raise invalid(loc, "must not be empty")
    if len(text) > max_len:
        raise invalid(loc, f"must be at most {max_len} characters")
    return text


__all__ = ["AlarmService", "ApplyStats"]
