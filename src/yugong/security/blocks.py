"""Blocking offenders for a while, and answering security events automatically.

:class:`Blocks` keeps blocks in the ``blocks`` table (an IP address, a device id or a user
name, until a time) and answers ``is_blocked`` from memory: the cache is reloaded from the
table every few seconds, so blocks made or lifted by another process or the CLI apply too.

:class:`Detection` listens to :class:`~yugong.security.events.SecurityEvents` and answers:

========================  ===============================================  =============
events                    threshold (sliding 10 minutes)                   blocks
========================  ===============================================  =============
``login_failed``          more than ``block_failed_logins_per_ip`` from     the address
                          one address
``acl_violation``         more than ``ACL_VIOLATIONS`` (10) by one device   the device
``malformed_flood``       ``MALFORMED_FLOODS`` (2) for one device (the      the device
                          flood went on past a minute)
========================  ===============================================  =============

Each block lasts ``block_duration_s``, is itself recorded as a ``blocked`` event, and is
an alarm. Alarms are also raised by every ``critical`` event (e.g. ``tampered_file``): the
event's ``detail.alarm`` is set and a message goes on the platform bus topic
``security.alarm`` (the general alarm engine of issue 5 will take these over).

Loopback addresses (127.0.0.1, ::1) are never blocked unless ``block_loopback`` is set, so
an operator on the machine cannot be locked out by a script gone wrong there.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select

from yugong.core.errors import InvalidInput, NotFound
from yugong.infra.db import Database, utcnow
from yugong.security.events import EventInfo, SecurityEvents
from yugong.security.models import Block, SecurityEvent

log = logging.getLogger("yugong.security.blocks")

BlockKind = Literal["ip", "device", "username"]
KINDS: tuple[str, ...] = ("ip", "device", "username")
WINDOW_S = 600.0
ACL_VIOLATIONS = 10
MALFORMED_FLOODS = 2
REFRESH_S = 5.0
ALARM_TOPIC = "security.alarm"


@dataclass(frozen=True, slots=True)
class BlockInfo:
    id: int
    kind: str
    value: str
    tenant_id: int | None
    reason: str
    created_at: datetime
    until: datetime
    lifted_at: datetime | None

    @property
    def active(self) -> bool:
        return self.lifted_at is None and self.until > utcnow()


def _info(b: Block) -> BlockInfo:
    return BlockInfo(
        b.id, b.kind, b.value, b.tenant_id, b.reason, b.created_at, b.until, b.lifted_at
    )


def is_loopback(value: str) -> bool:
    try:
        return ipaddress.ip_address(value).is_loopback
    except ValueError:
        return False


class Blocks:
    def __init__(self, db: Database, *, block_loopback: bool = False) -> None:
        self.db = db
        self.block_loopback = block_loopback
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], datetime] = {}
        self._loaded_at = float("-inf")

    def block(
        self,
        kind: str,
        value: str,
        reason: str,
        duration_s: float,
        tenant_id: int | None = None,
    ) -> BlockInfo:
        """Block ``value`` for ``duration_s`` seconds; an active block of the same value is
        extended (never shortened) rather than duplicated."""
        kind, value = _check(kind, value)
        if duration_s <= 0:
            raise InvalidInput("a block's duration must be positive (seconds)")
        if kind == "ip" and is_loopback(value) and not self.block_loopback:
            raise InvalidInput(
                f"{value} is a loopback address and is never blocked (setting block_loopback)"
            )
        now = utcnow()
        until = now + timedelta(seconds=duration_s)
        with self.db.session() as s:
            row = s.scalars(
                select(Block)
                .where(Block.kind == kind, Block.value == value, Block.lifted_at.is_(None))
                .where(Block.until > now)
                .order_by(Block.id.desc())
                .limit(1)
            ).first()
            if row is None:
                row = Block(kind=kind, value=value, tenant_id=tenant_id, reason=reason[:255])
                row.created_at, row.until = now, until
                s.add(row)
            else:
                row.until = max(row.until, until)
                row.reason = reason[:255]
            s.flush()
            info = _info(row)
        with self._lock:
            self._active[(kind, value)] = info.until
        return info

    def is_blocked(self, kind: str, value: str) -> datetime | None:
        """Until when ``value`` is blocked, or None. Cheap: answered from memory."""
        if self.stale:
            self.refresh()
        until = self._active.get((kind, value))
        if until is None or until <= utcnow():
            return None
        return until

    @property
    def stale(self) -> bool:
        """The cache is due to be reloaded from the table (see ``refresh``)."""
        return time.monotonic() - self._loaded_at > REFRESH_S

    def refresh(self) -> None:
        now = utcnow()
        try:
            with self.db.session() as s:
                rows = s.execute(
                    select(Block.kind, Block.value, func.max(Block.until))
                    .where(Block.lifted_at.is_(None), Block.until > now)
                    .group_by(Block.kind, Block.value)
                ).all()
        except Exception:
            log.exception("blocks could not be reloaded; keeping the ones known")
            return
        with self._lock:
            self._active = {(k, v): u for k, v, u in rows}
            self._loaded_at = time.monotonic()

    def get(self, block_id: int) -> BlockInfo:
        with self.db.session() as s:
            row = s.get(Block, block_id)
            if row is None:
                raise NotFound(f"block {block_id} not found")
            return _info(row)

    def lift(self, block_id: int) -> BlockInfo:
        with self.db.session() as s:
            row = s.get(Block, block_id)
            if row is None:
                raise NotFound(f"block {block_id} not found")
            if row.lifted_at is None:
                row.lifted_at = utcnow()
            info = _info(row)
        self.refresh()
        return info

    def list(
        self,
        *,
        tenant_id: int | None = None,
        all_tenants: bool = False,
        active: bool | None = True,
        kind: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[BlockInfo], int]:
        q = select(Block)
        if not all_tenants or tenant_id is not None:
            q = q.where(Block.tenant_id == tenant_id)
        if kind is not None:
            q = q.where(Block.kind == kind)
        now = utcnow()
        if active is True:
            q = q.where(Block.lifted_at.is_(None), Block.until > now)
        elif active is False:
            q = q.where((Block.lifted_at.is_not(None)) | (Block.until <= now))
        with self.db.session() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = s.scalars(q.order_by(Block.id.desc()).limit(limit).offset(offset)).all()
            return [_info(r) for r in rows], int(total)


def _check(kind: str, value: str) -> tuple[str, str]:
    if kind not in KINDS:
        raise InvalidInput(f"block kind must be one of {', '.join(KINDS)}, not {kind!r}")
    value = value.strip()
    if not value or len(value) > 128:
        raise InvalidInput("the blocked value must be 1 to 128 characters")
    if kind == "ip":
        try:
            value = str(ipaddress.ip_address(value))
        except ValueError as exc:
            raise InvalidInput(f"{value!r} is not an IP address") from exc
    if kind == "device" and not value.isdigit():
        raise InvalidInput(f"a device is blocked by its id, not {value!r}")
    return kind, value


AlarmSink = Callable[[dict[str, Any]], None]


class Detection:
    """Counts events in sliding windows, blocks offenders, raises alarms."""

    def __init__(
        self,
        events: SecurityEvents,
        blocks: Blocks,
        *,
        failed_logins_per_ip: int,
        duration_s: float,
    ) -> None:
        self.events = events
        self.blocks = blocks
        self.failed_logins_per_ip = failed_logins_per_ip
        self.duration_s = duration_s
        self.alarm_sink: AlarmSink | None = None
        self.alarms_raised = 0
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, str], deque[float]] = defaultdict(deque)
        events.subscribe(self.on_event, repeats=True)

    def on_event(self, e: EventInfo) -> None:
        if e.count == 1 and e.severity == "critical":
            self.alarm(e)
        rule = self._rule(e)
        if rule is None:
            return
        kind, value, limit = rule
        if self._count((e.kind, value)) > limit:
            self._block(kind, value, e, limit)

    def _rule(self, e: EventInfo) -> tuple[BlockKind, str, int] | None:
        if e.kind == "login_failed" and e.source_ip:
            if is_loopback(e.source_ip) and not self.blocks.block_loopback:
                return None
            return "ip", e.source_ip, self.failed_logins_per_ip
        if e.device_id is not None and e.kind == "acl_violation":
            return "device", str(e.device_id), ACL_VIOLATIONS
        if e.device_id is not None and e.kind == "malformed_flood":
            return "device", str(e.device_id), MALFORMED_FLOODS - 1
        return None

    def _count(self, key: tuple[str, str]) -> int:
        now = time.monotonic()
        with self._lock:
            q = self._seen[key]
            q.append(now)
            while q and now - q[0] > WINDOW_S:
                q.popleft()
            if len(self._seen) > 50_000:  # forget quiet sources
                self._seen = defaultdict(
                    deque, {k: v for k, v in self._seen.items() if v and now - v[-1] < WINDOW_S}
                )
            return len(q)

    def _block(self, kind: BlockKind, value: str, e: EventInfo, limit: int) -> None:
        if self.blocks.is_blocked(kind, value) is not None:
            return
        reason = f"{e.kind}: more than {limit} in {int(WINDOW_S // 60)} minutes"
        info = self.blocks.block(kind, value, reason, self.duration_s, e.tenant_id)
        with self._lock:
            self._seen.pop((e.kind, value), None)
        self.events.record(
            "blocked",
            "critical",
            tenant_id=e.tenant_id,
            source_ip=value if kind == "ip" else None,
            device_id=e.device_id if kind == "device" else None,
            subject=f"{kind}:{value}",
            detail={"block_id": info.id, "reason": reason, "until": info.until.isoformat()},
        )  # critical: raises the alarm through on_event

    def alarm(self, e: EventInfo) -> None:
        """Mark the event and publish it on ``security.alarm``."""
        self.alarms_raised += 1
        try:
            with self.events.db.session() as s:
                row = s.get(SecurityEvent, e.id)
                if row is not None:
                    row.detail = {**(row.detail or {}), "alarm": True}
        except Exception:
            log.exception("could not mark security event %s as an alarm", e.id)
        message = {
            "event_id": e.id,
            "kind": e.kind,
            "severity": e.severity,
            "tenant_id": e.tenant_id,
            "source_ip": e.source_ip,
            "subject": e.subject,
            "device_id": e.device_id,
            "detail": e.detail,
        }
        log.error("security alarm: %s", message)
        if self.alarm_sink is not None:
            try:
                self.alarm_sink(message)
            except Exception:
                log.exception("security alarm could not be published")


__all__ = [
    "ALARM_TOPIC",
    "BlockInfo",
    "Blocks",
    "Detection",
    "is_loopback",
]
