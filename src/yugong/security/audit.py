"""The audit log: every change and every login — who, what, when, from where — in one
hash chain, so that editing or deleting any entry is detected (``yugong audit verify``).

Each entry's hash is SHA-256 over the previous entry's hash and the entry's canonical JSON.
An entry is inserted before its predecessor is read, so the database's write lock (SQLite)
or an advisory transaction lock (PostgreSQL) serialises writers: the chain has no forks.

Removing entries from the end leaves a shorter chain that is still consistent, so the head
(last id and hash) is also kept outside the database, in ``{data_dir}/audit.head``, written
after each commit that appended; ``verify()`` reports a chain shorter than that anchor.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from yugong.infra.db import Database, utcnow
from yugong.security.context import current
from yugong.security.models import AuditEntry

log = logging.getLogger("yugong.security.audit")
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
    def __init__(self, db: Database, *, head_file: Path | None = None) -> None:
        self.db = db
        self.head_file = head_file
        self._head_lock = threading.Lock()
        if head_file is not None:
            event.listen(db.sessions, "after_commit", self._after_commit)

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
        if session is not None:
            self._append(session, row)
        else:
            with self.db.session() as s:
                self._append(s, row)

    def _append(self, s: Session, row: AuditEntry) -> None:
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
        # Insert first: on SQLite the insert takes the write lock, so the predecessor read
        # next is the newest one and no other writer can append in between.
        row.prev_hash = GENESIS
        row.hash = "pending-" + uuid.uuid4().hex  # unique placeholder until the id is known
        s.add(row)
        s.flush()
        last = s.scalars(
            select(AuditEntry).where(AuditEntry.id < row.id).order_by(AuditEntry.id.desc()).limit(1)
        ).first()
        row.prev_hash = last.hash if last is not None else GENESIS
        row.hash = entry_hash(row.prev_hash, _fields(row))
        s.info["audit_head"] = (row.id, row.hash)

    # The anchor outside the database ------------------------------------------------------

    def _after_commit(self, s: Session) -> None:
        head = s.info.pop("audit_head", None)
        if head is not None and self.head_file is not None:
            try:
                self._write_head(*head)
            except OSError:  # the change is committed; verify will report the stale anchor
                log.exception("audit anchor %s could not be written", self.head_file)

    def read_head(self) -> tuple[int, str] | None:
        if self.head_file is None or not self.head_file.exists():
            return None
        try:
            ident, digest = self.head_file.read_text().split()
            return int(ident), digest
        except ValueError:
            return None

    def _write_head(self, ident: int, digest: str) -> None:
        assert self.head_file is not None
        with self._head_lock:
            known = self.read_head()
            if known is not None and known[0] >= ident:
                return  # only ever moves forward (commits may finish out of order)
            tmp = self.head_file.with_name(self.head_file.name + ".tmp")
            tmp.write_text(f"{ident} {digest}\n")
            os.replace(tmp, self.head_file)

    def verify(self, batch: int = 5000) -> VerifyResult:
        """Walk the whole chain; the first entry whose hash or link is wrong is reported,
        and a chain that ends before its anchor (entries removed from the end)."""
        prev, n, after = GENESIS, 0, 0
        anchor = self.read_head()
        anchor_seen = False
        with self.db.session() as s:
            while True:
                rows = s.scalars(
                    select(AuditEntry)
                    .where(AuditEntry.id > after)
                    .order_by(AuditEntry.id)
                    .limit(batch)
                ).all()
                if not rows:
                    break
                for e in rows:
                    if e.prev_hash != prev:
                        why = "its link to the entry before is broken (one removed or changed)"
                        return VerifyResult(n, False, e.id, why)
                    if entry_hash(prev, _fields(e)) != e.hash:
                        return VerifyResult(n, False, e.id, "its content was changed")
                    if anchor is not None and e.id == anchor[0]:
                        if e.hash != anchor[1]:
                            why = f"it does not match the anchor in {self.head_file}"
                            return VerifyResult(n, False, e.id, why)
                        anchor_seen = True
                    prev, n, after = e.hash, n + 1, e.id
        if anchor is not None and not anchor_seen:
            why = (
                f"the chain ends at entry {after or 'none'} but {self.head_file} records "
                f"entry {anchor[0]}: entries were removed from the end"
            )
            return VerifyResult(n, False, after + 1 if after < anchor[0] else anchor[0], why)
        return VerifyResult(n, True)

    def list(
        self,
        *,
        tenant_id: int | None = None,
        all_tenants: bool = False,
        since: datetime | None = None,
        action: str | None = None,
        actor: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[AuditEntry], int]:
        """Entries, newest first, with the total matching. ``all_tenants`` is for platform
        callers; otherwise only ``tenant_id``'s entries."""
        from sqlalchemy import func

        q = select(AuditEntry)
        if not all_tenants or tenant_id is not None:
            q = q.where(AuditEntry.tenant_id == tenant_id)
        if since is not None:
            q = q.where(AuditEntry.at >= since)
        if action:
            # "devices" matches every devices.* action; "login" matches exactly.
            q = q.where(
                (AuditEntry.action == action)
                | AuditEntry.action.startswith(action + ".", autoescape=True)
            )
        if actor:
            q = q.where(AuditEntry.actor_name == actor)
        with self.db.session() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = s.scalars(q.order_by(AuditEntry.id.desc()).limit(limit).offset(offset)).all()
            return list(rows), int(total)

    def last_at(self) -> datetime | None:
        with self.db.session() as s:
            e = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(1)).first()
            return e.at if e is not None else None


__all__ = ["GENESIS", "AuditLog", "VerifyResult", "entry_hash"]
