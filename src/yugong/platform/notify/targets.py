"""Notification targets of a tenant: webhooks and e-mail senders (CRUD, tenant-scoped).

- ``webhook``: ``config`` ``{url, headers}``; the HMAC key is the target's secret.
- ``email``: ``config`` ``{host, port, security (starttls | ssl | none), username, from, to,
  timeout_s}``; the SMTP password is the target's secret.

Secrets are sealed at rest with the platform's box, bound to the row
(``notification:<id>``), and never returned: callers see only ``has_secret``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from yugong.core.errors import Conflict, FieldError, InvalidInput, NotFound
from yugong.infra.db import Database
from yugong.platform.registry._common import check_paging, clean_name, get_scoped, scope
from yugong.platform.rules.models import NotificationTarget
from yugong.security.audit import AuditLog
from yugong.security.principal import Principal
from yugong.security.secrets import SecretBox

READ, WRITE = "notify:read", "notify:write"
Kind = Literal["webhook", "email"]
KINDS: tuple[str, ...] = ("webhook", "email")
SECURITY_MODES = ("starttls", "ssl", "none")
MIN_SECRET = 16
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
# Headers the platform sets itself.
_RESERVED = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "x-yugong-signature",
        "x-yugong-timestamp",
        "x-yugong-delivery",
        "x-yugong-event",
    }
)


def seal_context(target_id: int) -> str:
    return f"notification:{target_id}"


@dataclass(frozen=True, slots=True)
class TargetInfo:
    id: int
    tenant_id: int
    name: str
    kind: str
    config: dict[str, Any]
    has_secret: bool
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ResolvedTarget:
    """A target ready to send: settings and the opened secret. Never logged."""

    id: int
    tenant_id: int
    name: str
    kind: str
    config: dict[str, Any]
    secret: str | None

    def __repr__(self) -> str:
        return f"ResolvedTarget(id={self.id}, name={self.name!r}, kind={self.kind!r})"


def _bad(loc: str, msg: str) -> InvalidInput:
    return InvalidInput(f"{loc}: {msg}", [FieldError(loc, msg)])


def _webhook(config: dict[str, Any]) -> dict[str, Any]:
    unknown = set(config) - {"url", "headers", "timeout_s"}
    if unknown:
        raise _bad(
            f"config.{sorted(unknown)[0]}", "not a webhook setting (url, headers, timeout_s)"
        )
    url = config.get("url")
    if not isinstance(url, str) or not url:
        raise _bad("config.url", "required: the http(s) URL to POST to")
    if len(url) > 2048 or re.search(r"[\s\x00-\x1f\x7f]", url):
        raise _bad("config.url", "must be at most 2048 characters, without spaces")
    try:
        parts = urlsplit(url)
        host, _port = parts.hostname, parts.port  # a bad port raises here
    except ValueError as exc:
        raise _bad("config.url", f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not host:
        raise _bad("config.url", "must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise _bad("config.url", "must not carry credentials; use headers")
    headers = config.get("headers") or {}
    if not isinstance(headers, dict):
        raise _bad("config.headers", "must be an object of header names to text")
    for name, value in headers.items():
        if not isinstance(name, str) or not _HEADER.match(name):
            raise _bad("config.headers", f"{name!r} is not a valid header name")
        if name.lower() in _RESERVED:
            raise _bad(f"config.headers.{name}", "set by the platform; cannot be overridden")
        if not isinstance(value, str) or re.search(r"[\r\n\x00]", value):
            raise _bad(f"config.headers.{name}", "must be text on one line")
    return {"url": url, "headers": dict(headers), "timeout_s": _timeout(config)}


def _timeout(config: dict[str, Any]) -> float:
    t = config.get("timeout_s", 10.0)
    if isinstance(t, bool) or not isinstance(t, int | float) or not 0 < t <= 60:
        raise _bad("config.timeout_s", "must be a number of seconds in (0, 60]")
    return float(t)


def clean_addresses(value: Any, loc: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        raise _bad(loc, "must be a list of e-mail addresses")
    for a in value:
        if not _ADDRESS.match(a):
            raise _bad(loc, f"{a!r} is not an e-mail address")
    return list(value)


def _email(config: dict[str, Any]) -> dict[str, Any]:
    allowed = {"host", "port", "security", "username", "from", "to", "timeout_s"}
    unknown = set(config) - allowed
    if unknown:
        raise _bad(
            f"config.{sorted(unknown)[0]}", f"not an e-mail setting ({', '.join(sorted(allowed))})"
        )
    raw = config.get("host")
    host = raw.strip() if isinstance(raw, str) else ""
    if not host or len(host) > 253 or re.search(r"[\s/\x00-\x1f]", host):
        raise _bad("config.host", "required: the SMTP server's host name")
    security = config.get("security", "starttls")
    if security not in SECURITY_MODES:
        raise _bad("config.security", f"one of {', '.join(SECURITY_MODES)}")
    port = config.get("port", 465 if security == "ssl" else 587)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise _bad("config.port", "must be a port number 1..65535")
    username = config.get("username")
    if username is not None and (not isinstance(username, str) or not username):
        raise _bad("config.username", "must be non-empty text or null")
    sender = config.get("from")
    if not isinstance(sender, str) or not _ADDRESS.match(sender):
        raise _bad("config.from", "required: the sender's e-mail address")
    return {
        "host": host,
        "port": port,
        "security": security,
        "username": username,
        "from": sender,
        "to": clean_addresses(config.get("to"), "config.to"),
        "timeout_s": _timeout(config),
    }


def clean_config(kind: str, config: Any) -> dict[str, Any]:
    if kind not in KINDS:
        raise _bad("kind", f"one of {', '.join(KINDS)}")
    if not isinstance(config, dict):
        raise _bad("config", "must be an object")
    return _webhook(config) if kind == "webhook" else _email(config)


def _check_secret(kind: str, secret: str | None, required: bool) -> None:
    if secret is None:
        if required and kind == "webhook":
            raise _bad("secret", f"required: the HMAC key, at least {MIN_SECRET} characters")
        return
    if not isinstance(secret, str) or not secret:
        raise _bad("secret", "must be non-empty text")
    if kind == "webhook" and len(secret) < MIN_SECRET:
        raise _bad("secret", f"an HMAC key has at least {MIN_SECRET} characters")


def _info(row: NotificationTarget) -> TargetInfo:
    return TargetInfo(
        row.id,
        row.tenant_id,
        row.name,
        row.kind,
        dict(row.config),
        row.secret is not None,
        row.created_at,
    )


class NotificationTargets:
    def __init__(self, db: Database, box: SecretBox, audit: AuditLog | None = None) -> None:
        self.db = db
        self.box = box
        self.audit = audit

    def _audit(self, s: Session, action: str, row: NotificationTarget, **detail: Any) -> None:
        if self.audit is not None:
            self.audit.record(
                f"notification_target.{action}",
                tenant_id=row.tenant_id,
                target_type="notification_target",
                target_id=row.id,
                detail={"name": row.name, "kind": row.kind, **detail},
                session=s,
            )

    def _unique(self, s: Session, tenant: int, name: str, skip: int | None = None) -> None:
        q = select(NotificationTarget.id).where(
            NotificationTarget.tenant_id == tenant, NotificationTarget.name == name
        )
        found = s.scalars(q).first()
        if found is not None and found != skip:
            raise Conflict(
                f"a notification target named '{name}' exists", [FieldError("name", "taken")]
            )

    def create(
        self,
        p: Principal,
        *,
        name: str,
        kind: str,
        config: dict[str, Any],
        secret: str | None = None,
        tenant_id: int | None = None,
    ) -> TargetInfo:
        p.require(WRITE)
        tenant = p.tenant_for(tenant_id)
        name = clean_name(name, "name")
        cleaned = clean_config(kind, config)
        _check_secret(kind, secret, required=True)
        with self.db.session() as s:
            self._unique(s, tenant, name)
            row = NotificationTarget(tenant_id=tenant, name=name, kind=kind, config=cleaned)
            s.add(row)
            s.flush()
            if secret is not None:
                row.secret = self.box.seal(secret, seal_context(row.id))
            self._audit(s, "create", row)
            return _info(row)

    def list(
        self,
        p: Principal,
        *,
        tenant_id: int | None = None,
        kind: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[list[TargetInfo], int]:
        p.require(READ)
        check_paging(limit, offset)
        tenant = scope(p, tenant_id)
        q = select(NotificationTarget)
        if tenant is not None:
            q = q.where(NotificationTarget.tenant_id == tenant)
        if kind is not None:
            q = q.where(NotificationTarget.kind == kind)
        with self.db.session() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = s.scalars(q.order_by(NotificationTarget.id).limit(limit).offset(offset))
            return [_info(r) for r in rows], total

    def get(self, p: Principal, target_id: int, *, tenant_id: int | None = None) -> TargetInfo:
        p.require(READ)
        with self.db.session() as s:
            return _info(self._row(s, p, target_id, tenant_id))

    def _row(
        self, s: Session, p: Principal, target_id: int, tenant_id: int | None
    ) -> NotificationTarget:
        return get_scoped(s, NotificationTarget, p, target_id, tenant_id, "notification target")

    def update(
        self,
        p: Principal,
        target_id: int,
        *,
        tenant_id: int | None = None,
        name: str | None = None,
        config: dict[str, Any] | None = None,
        secret: str | None = None,
    ) -> TargetInfo:
        """Change the name, replace the whole ``config``, or set a new secret."""
        p.require(WRITE)
        with self.db.session() as s:
            row = self._row(s, p, target_id, tenant_id)
            changed: list[str] = []
            if name is not None:
                row.name = clean_name(name, "name")
                self._unique(s, row.tenant_id, row.name, skip=row.id)
                changed.append("name")
            if config is not None:
                row.config = clean_config(row.kind, config)
                changed.append("config")
            if secret is not None:
                _check_secret(row.kind, secret, required=False)
                row.secret = self.box.seal(secret, seal_context(row.id))
                changed.append("secret")
            self._audit(s, "update", row, changed=changed)
            return _info(row)

    def delete(self, p: Principal, target_id: int, *, tenant_id: int | None = None) -> None:
        p.require(WRITE)
        with self.db.session() as s:
            row = self._row(s, p, target_id, tenant_id)
            self._audit(s, "delete", row)
            s.delete(row)

    # For delivery ---------------------------------------------------------------------------

    def resolve(self, tenant: int, name: str) -> ResolvedTarget:
        """The tenant's target of that name, its secret opened (actions: no principal)."""
        with self.db.session() as s:
            row = s.scalars(
                select(NotificationTarget).where(
                    NotificationTarget.tenant_id == tenant, NotificationTarget.name == name
                )
            ).first()
            if row is None:
                raise NotFound(f"notification target '{name}' not found in tenant {tenant}")
            return self._resolved(row)

    def resolve_id(
        self, p: Principal, target_id: int, tenant_id: int | None = None
    ) -> ResolvedTarget:
        with self.db.session() as s:
            return self._resolved(self._row(s, p, target_id, tenant_id))

    def only_of_kind(self, tenant: int, kind: str) -> ResolvedTarget | None:
        """The tenant's single target of ``kind``, if there is exactly one."""
        with self.db.session() as s:
            rows = list(
                s.scalars(
                    select(NotificationTarget)
                    .where(NotificationTarget.tenant_id == tenant, NotificationTarget.kind == kind)
                    .limit(2)
                )
            )
            return self._resolved(rows[0]) if len(rows) == 1 else None

    def _resolved(self, row: NotificationTarget) -> ResolvedTarget:
        secret = None if row.secret is None else self.box.open(row.secret, seal_context(row.id))
        return ResolvedTarget(row.id, row.tenant_id, row.name, row.kind, dict(row.config), secret)


__all__ = [
    "KINDS",
    "READ",
    "WRITE",
    "NotificationTargets",
    "ResolvedTarget",
    "TargetInfo",
    "clean_addresses",
    "clean_config",
    "seal_context",
]
