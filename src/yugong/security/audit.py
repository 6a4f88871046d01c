"""The audit log: every change and every login — who, what, when, from where — in one
hash chain, so that editing or deleting any entry is detected (``yugong audit verify``).

Each entry's hash is SHA-256 over the previous entry's hash and the entry's canonical JSON.
Entries are appended under a lock (one writer per process; on PostgreSQL an advisory
transaction lock serialises writers across processes), so the chain has no forks.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from yugong.infra.db import Database, utcnow
from yugong.security.context import current
from yugong.security.models import AuditEntry

GENESIS = "0" * 64
_LOCK_KEY = 0x59_47_41_55  # advisory lock id for the audit chain (PostgreSQL)


def entry_hash(prev: str, fields: dict[str, Any]) -> str:
    body = orjson.dumps(fields, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev.encode() + body).hexdigest()


def _fields(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at.isoformat(),
        "tenant_id": e.tenant_id,
        "actor_kind": e.actor_kind,
        "actor_id": e.actor_id,
        "actor_name": e.actor_name,
        "source_ip": e.source_ip,
        "action": e.action,
        "target_type": e.target_type,
        "target_id": e.target_id,
        "outcome": e.outcome,
        "detail": e.detail,
    }


@dataclass(frozen=True, slots=True)
class VerifyResult:
    entries: int
    ok: bool
    first_bad: int | None = None  # id of the first entry that does not fit the chain
    reason: str = ""


class AuditLog:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()

    def record(
        self,
        action: str,
        *,
        outcome: str = "ok",
        tenant_id: int | None = None,
        target_type: str | None = None,
        target_id: str | int | None = None,
        detail: dict[str, Any] | None = None,
        actor_kind: str | None = None,
        actor_id: int | None = None,
        actor_name: str | None = None,
        session: Session | None = None,
    ) -> None:
        """Append one entry. The actor and source address come from the request context
        unless given (e.g. a login, where nobody is authenticated yet). With ``session``
        the entry commits (or rolls back) with the change it describes."""
        ctx = current()
        p = ctx.principal
        if tenant_id is None and p is not None:
            tenant_id = p.tenant
        row = AuditEntry(
            at=utcnow(),
            tenant_id=tenant_id,
            actor_kind=actor_kind or (p.kind if p is not None else "system"),
            actor_id=actor_id if actor_id is not None else (p.id if p is not None else None),
            actor_name=actor_name or (p.name if p is not None else "system"),
            source_ip=ctx.source_ip,
            action=action,
            target_type=target_type,
            target_id=None if target_id is None else str(target_id),
            outcome=outcome,
            detail=detail or {},
        )
        with self._lock:
            if session is not None:
                self._append(session, row)
            else:
                with self.db.session() as s:
                    self._append(s, row)

    def _append(self, s: Session, row: AuditEntry) -> None:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        last = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).first()
        row.prev_hash = last.hash if last is not None else GENESIS
        row.hash = GENESIS  # placeholder until the id is known
        s.add(row)
        s.flush()
        row.hash = entry_hash(row.prev_hash, _fields(row))

    def verify(self, batch: int = 5000) -> VerifyResult:
        """Walk the whole chain; the first entry whose hash or link is wrong is reported."""
        prev, n, after = GENESIS, 0, 0
        with self.db.session() as s:
            while True:
                rows = s.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.id > after)
                    .order_by(AuditEntry.id)
                    .limit(batch)
                ).all()
                if not rows:
                    return VerifyResult(n, True)
                for e in rows:
                    if e.prev_hash != prev:
                        why = "its link to the entry before is broken (one removed or changed)"
                        return VerifyResult(n, False, e.id, why)
                    if entry_hash(prev, _fields(e)) != e.hash:
                        return VerifyResult(n, False, e.id, "its content was changed")
                    prev, n, after = e.hash, n + 1, e.id

    def last_at(self) -> datetime | None:
        with self.db.session() as s:
            e = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).first()
            return e.at if e is not None else None


__all__ = ["GENESIS", "AuditLog", "VerifyResult", "entry_hash"]
