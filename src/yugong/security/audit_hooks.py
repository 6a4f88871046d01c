"""Every change audited without each service remembering to: a session hook collects the
rows of the registry and access tables that a flush inserted, updated or deleted, and just
before the transaction commits appends one audit entry per row to the chain, in the same
transaction (a rolled-back change leaves no entry; a committed one always has its entry).

Entries read ``<table>.create|update|delete`` with the row's id and tenant, and the changed
columns with their new values; secrets (hashes, sealed seeds) appear only as ``"***"``.
Columns that move on their own (last seen, last login, failure counters) are not changes
anyone made and are not audited; nor are attributes a device reports about itself (only
users and API keys changing them are). Changes made with bulk SQL statements (e.g. the
registry's last-seen flush) bypass the ORM and are, on purpose, not seen here.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import Session, UOWTransaction

from yugong.infra.db import Database
from yugong.security.audit import AuditLog
from yugong.security.context import current

AUDITED = frozenset(
    {"tenants", "tenant_profiles", "assets", "products", "devices", "users", "api_keys"}
)
SECRET_COLUMNS = frozenset(
    {"token_hash", "password_hash", "totp_secret", "mqtt_password_hash", "secret_hash"}
)
# Columns that change by themselves, not by anybody's decision.
VOLATILE: dict[str, frozenset[str]] = {
    "users": frozenset({"last_login_at", "failed_logins", "locked_until"}),
    "api_keys": frozenset({"last_used_at"}),
    "devices": frozenset({"online", "last_seen_at"}),
}
MASK = "***"
_MAX_TEXT = 200
_PENDING = "yugong_audit_pending"


def _value(column: str, v: Any) -> Any:
    """A JSON-safe, bounded picture of a value; secrets never leave the row."""
    if column in SECRET_COLUMNS:
        return None if v is None else MASK
    if v is None or isinstance(v, bool | int | str):
        return v[:_MAX_TEXT] if isinstance(v, str) else v
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, datetime):
        return v.isoformat()
    return "(changed)"  # JSON documents (models, attributes): too big to copy here


def _tenant_of(table: str, obj: Any) -> int | None:
    if table == "tenants":
        return getattr(obj, "id", None)
    tenant = getattr(obj, "tenant_id", None)
    return tenant if isinstance(tenant, int) else None


def _changes(obj: Any, op: str) -> dict[str, Any]:
    state = inspect(obj)
    out: dict[str, Any] = {}
    for attr in state.mapper.column_attrs:
        key = attr.key
        if op == "create":
            v = state.dict.get(key)  # what was set; no loads during a flush
            if v is not None:
                out[key] = _value(key, v)
        elif op == "update":
            hist = state.attrs[key].load_history()
            if hist.has_changes():
                out[key] = _value(key, hist.added[0] if hist.added else None)
    return out


class AuditHooks:
    """Attached once per :class:`Database`; see the module docstring."""

    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.audit = audit
        event.listen(db.sessions, "after_flush", self._after_flush)
        event.listen(db.sessions, "before_commit", self._before_commit)
        event.listen(db.sessions, "after_rollback", self._after_rollback)

    def _after_flush(self, s: Session, _flush: UOWTransaction) -> None:
        pending: list[tuple[str, str, Any, dict[str, Any]]] = s.info.setdefault(_PENDING, [])
        for op, objs in (("create", s.new), ("update", s.dirty), ("delete", s.deleted)):
            for obj in objs:
                table = getattr(obj, "__tablename__", None)
                if table not in AUDITED:
                    continue
                if op == "update" and not s.is_modified(obj, include_collections=False):
                    continue
                changes = _changes(obj, op)
                if op == "update":
                    changes = {k: v for k, v in changes.items() if k not in VOLATILE.get(table, ())}
                    if not changes or self._device_reported(table, changes):
                        continue
                pending.append((table, op, obj, changes))

    @staticmethod
    def _device_reported(table: str, changes: dict[str, Any]) -> bool:
        """A device's own attribute report (ingest path): no user or key is acting."""
        if table != "devices" or set(changes) != {"attributes"}:
            return False
        p = current().principal
        return p is None or p.kind not in ("user", "api_key")

    def _before_commit(self, s: Session) -> None:
        s.flush()  # the last changes, so new rows have their ids
        pending = s.info.pop(_PENDING, None)
        if not pending:
            return
        for table, op, obj, changes in pending:
            ident = inspect(obj).identity
            target = ident[0] if ident else getattr(obj, "id", None)
            detail: dict[str, Any] = {"changes": changes} if changes else {}
            name = getattr(obj, "username", None) or getattr(obj, "name", None)
            if isinstance(name, str):
                detail["name"] = name[:_MAX_TEXT]
            self.audit.record(
                f"{table}.{op}",
                tenant_id=_tenant_of(table, obj),
                target_type=table,
                target_id=target,
                detail=detail,
                session=s,
            )
        s.info.pop(_PENDING, None)  # the entries' own flushes added nothing audited

    def _after_rollback(self, s: Session) -> None:
        s.info.pop(_PENDING, None)


def install(db: Database, audit: AuditLog) -> AuditHooks:
    """Attach the hooks to ``db`` once, however many services are built over it."""
    hooks: AuditHooks | None = getattr(db, "_audit_hooks", None)
    if hooks is None:
        hooks = AuditHooks(db, audit)
        db._audit_hooks = hooks  # type: ignore[attr-defined]
    return hooks


__all__ = ["AUDITED", "MASK", "SECRET_COLUMNS", "AuditHooks", "install"]
