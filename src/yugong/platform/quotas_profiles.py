"""Tenant profiles: the resource limits a tenant may use, and the checks made when a tenant
adds something countable (devices, users, API keys) or sets its retention.

A NULL limit is no limit. A tenant without a profile uses the profile marked
``is_default`` (created by the migration, named "default"); that profile cannot be
deleted, and deleting any other profile moves its tenants back to the default.

Over a count limit the service raises :class:`QuotaExceeded`, **409 Conflict**: the request
is well formed and the caller may make it, but it conflicts with the tenant's current state
and succeeds once something is removed or the limit is raised (403 would wrongly say the
caller is not allowed at all; 422 that the input is wrong; 429 that waiting helps).
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from yugong.core.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound
from yugong.infra.db import Database, utcnow
from yugong.platform.registry.models import Device, Tenant, TenantProfile
from yugong.security.models import ApiKey, User
from yugong.security.principal import Principal

Countable = Literal["devices", "users", "api_keys"]
INT_LIMITS = ("max_devices", "max_users", "max_api_keys", "max_stored_bytes", "max_retention_days")
RATE_LIMITS = (
    "messages_per_s",
    "points_per_s",
    "device_messages_per_s",
    "device_points_per_s",
    "api_requests_per_s",
)
LIMIT_FIELDS = INT_LIMITS + RATE_LIMITS


class RefusalWatcher(Protocol):
    def count_refusal(self, engine: Any, tenant: int, limit: str) -> None: ...


# The running quota services, told of every count-limit refusal (for the usage report).
watchers: weakref.WeakSet[RefusalWatcher] = weakref.WeakSet()


class QuotaExceeded(Conflict):
    """A count limit of the tenant's profile is reached (409)."""

    title = "Quota exceeded"
    reason = "quota_exceeded"


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitValues:
    """The limits a profile sets (``None``: unlimited), one field per name in
    :data:`LIMIT_FIELDS`; keyword-only, so they follow the fields of a subclass."""

    max_devices: int | None = None
    max_users: int | None = None
    max_api_keys: int | None = None
    max_stored_bytes: int | None = None
    max_retention_days: int | None = None
    messages_per_s: float | None = None
    points_per_s: float | None = None
    device_messages_per_s: float | None = None
    device_points_per_s: float | None = None
    api_requests_per_s: float | None = None


@dataclass(frozen=True, slots=True)
class Limits(LimitValues):
    """The effective limits of one tenant (``None``: unlimited)."""

    profile_id: int
    profile: str

    @classmethod
    def of(cls, p: TenantProfile) -> Limits:
        return cls(p.id, p.name, **{f: getattr(p, f) for f in LIMIT_FIELDS})

    def as_dict(self) -> dict[str, Any]:
        values = {f: getattr(self, f) for f in LIMIT_FIELDS}
        return {"profile_id": self.profile_id, "profile": self.profile, **values}


UNLIMITED = Limits(0, "none")


@dataclass(frozen=True)
class ProfileRecord(LimitValues):
    id: int
    name: str
    description: str
    is_default: bool
    created_at: datetime
    tenants: int


def _record(s: Session, p: TenantProfile) -> ProfileRecord:
    mine = Tenant.profile_id == p.id
    q = select(func.count()).select_from(Tenant)
    q = q.where(or_(mine, Tenant.profile_id.is_(None)) if p.is_default else mine)
    return ProfileRecord(
        p.id,
        p.name,
        p.description,
        p.is_default,
        p.created_at,
        int(s.scalar(q) or 0),
        **{f: getattr(p, f) for f in LIMIT_FIELDS},
    )


# Reading limits inside a transaction ---------------------------------------------------------


def profile_of(s: Session, tenant: int) -> TenantProfile | None:
    """The tenant's profile, or the default one; ``None`` only if neither exists."""
    pid = s.scalar(select(Tenant.profile_id).where(Tenant.id == tenant))
    if pid is not None:
        p = s.get(TenantProfile, pid)
        if p is not None:
            return p
    return default_profile(s)


def count(s: Session, tenant: int, kind: Countable) -> int:
    """How many of ``kind`` the tenant has (API keys: those neither revoked nor expired)."""
    if kind == "devices":
        q = select(func.count()).select_from(Device).where(Device.tenant_id == tenant)
    elif kind == "users":
        q = select(func.count()).select_from(User).where(User.tenant_id == tenant)
    elif kind == "api_keys":
        q = (
            select(func.count())
            .select_from(ApiKey)
            .where(
                ApiKey.tenant_id == tenant,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > utcnow()),
            )
        )
    else:
        raise ValueError(f"not a countable resource: {kind!r}")
    return int(s.scalar(q) or 0)


def check_can_add(s: Session, tenant: int | None, kind: Countable, adding: int = 1) -> None:
    """Raise :class:`QuotaExceeded` if the tenant may not have ``adding`` more of ``kind``.
    Call it in the transaction that adds them. Platform-wide rows (no tenant) are free."""
    if tenant is None:
        return
    profile = profile_of(s, tenant)
    limit = getattr(profile, f"max_{kind}", None) if profile is not None else None
    if limit is None:
        return
    used = count(s, tenant, kind)
    if used + adding > limit:
        for w in list(watchers):
            w.count_refusal(s.get_bind(), tenant, f"max_{kind}")
        what = kind.replace("_", " ")
        raise QuotaExceeded(
            f"tenant {tenant} has {used} {what}; its profile '{profile.name}' allows at most "  # type: ignore[union-attr]
            f"{limit} (max_{kind})",
            [FieldError(f"max_{kind}", f"limit {limit}, in use {used}")],
        )


def default_profile(s: Session) -> TenantProfile | None:
    return s.scalars(select(TenantProfile).where(TenantProfile.is_default.is_(True))).first()


def check_retention(s: Session, retention_days: int | None, profile_id: int | None) -> None:
    """A tenant's retention may not exceed its profile's ``max_retention_days``.
    ``None`` (keep) is allowed: the retention job then keeps the profile's maximum.
    ``profile_id`` None: the default profile."""
    if retention_days is None:
        return
    profile = s.get(TenantProfile, profile_id) if profile_id is not None else default_profile(s)
    cap = profile.max_retention_days if profile is not None else None
    if profile is None or cap is None:
        return
    if retention_days > cap:
        raise InvalidInput(
            f"retention_days: {retention_days} days exceeds the maximum of {cap} days of "
            f"tenant profile '{profile.name}' (max_retention_days)",
            [FieldError("retention_days", f"at most {cap}")],
        )


def effective_retention(retention_days: int | None, limits: Limits) -> int | None:
    """The days the retention job keeps: the smaller of the tenant's and the profile's."""
    cap = limits.max_retention_days
    if cap is None:
        return retention_days
    return cap if retention_days is None else min(retention_days, cap)


# Profile CRUD (platform admins) --------------------------------------------------------------


def _require_platform(p: Principal, action: str) -> None:
    p.require(action)
    if not p.is_platform:
        raise Forbidden("only a platform admin may manage tenant profiles")


def _clean(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key in ("name", "description"):
            if not isinstance(value, str) or (key == "name" and not value.strip()):
                raise InvalidInput(
                    f"{key} must be a non-empty string", [FieldError(key, "invalid")]
                )
            value = value.strip()
            limit = 128 if key == "name" else 512
            if len(value) > limit:
                raise InvalidInput(f"{key} is longer than {limit}", [FieldError(key, "too long")])
        elif key in INT_LIMITS:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise InvalidInput(
                    f"{key} must be a whole number >= 0 or null (unlimited)",
                    [FieldError(key, "expected an integer >= 0 or null")],
                )
            if key == "max_retention_days" and value == 0:
                raise InvalidInput(
                    "max_retention_days must be >= 1 or null", [FieldError(key, "at least 1")]
                )
        elif key in RATE_LIMITS:
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not value > 0
            ):
                raise InvalidInput(
                    f"{key} must be a number > 0 or null (unlimited)",
                    [FieldError(key, "expected a number > 0 or null")],
                )
            value = float(value) if value is not None else None
        elif key == "is_default":
            if value is not True:
                raise InvalidInput(
                    "is_default can only be set to true (make another profile the default to "
                    "change it)",
                    [FieldError("is_default", "only true")],
                )
        else:
            raise InvalidInput(f"unknown field {key!r}", [FieldError(key, "unknown")])
        out[key] = value
    return out


class Profiles:
    """CRUD of tenant profiles and their assignment to tenants. ``changed(tenant | None)``
    is called after each commit (None: any tenant may be affected)."""

    def __init__(self, db: Database, changed: Any = None) -> None:
        self.db = db
        self._changed = changed or (lambda tenant: None)

    @staticmethod
    def _get(s: Session, profile_id: int) -> TenantProfile:
        p = s.get(TenantProfile, profile_id)
        if p is None:
            raise NotFound(f"tenant profile {profile_id} not found")
        return p

    @staticmethod
    def _check_name(s: Session, name: str, exclude: int | None = None) -> None:
        q = select(TenantProfile.id).where(TenantProfile.name == name)
        if exclude is not None:
            q = q.where(TenantProfile.id != exclude)
        if s.scalar(q) is not None:
            raise Conflict(
                f"a tenant profile named {name!r} already exists",
                [FieldError("name", "already exists")],
            )

    def list(self, p: Principal) -> list[ProfileRecord]:
        _require_platform(p, "tenants:write")
        with self.db.session() as s:
            rows = s.scalars(select(TenantProfile).order_by(TenantProfile.id)).all()
            return [_record(s, r) for r in rows]

    def get(self, p: Principal, profile_id: int) -> ProfileRecord:
        _require_platform(p, "tenants:write")
        with self.db.session() as s:
            return _record(s, self._get(s, profile_id))

    def create(self, p: Principal, **values: Any) -> ProfileRecord:
        _require_platform(p, "tenants:write")
        if "name" not in values:
            raise InvalidInput("name is required", [FieldError("name", "required")])
        make_default = values.pop("is_default", False) is True
        clean = _clean(values)
        with self.db.session() as s:
            self._check_name(s, clean["name"])
            if make_default:
                s.execute(update(TenantProfile).values(is_default=False))
                clean["is_default"] = True
            row = TenantProfile(**clean)
            s.add(row)
            s.flush()
            rec = _record(s, row)
        self._changed(None)
        return rec

    def update(self, p: Principal, profile_id: int, **values: Any) -> ProfileRecord:
        _require_platform(p, "tenants:write")
        clean = _clean(values)
        with self.db.session() as s:
            row = self._get(s, profile_id)
            if "name" in clean:
                self._check_name(s, clean["name"], exclude=row.id)
            if clean.pop("is_default", False) and not row.is_default:
                s.execute(update(TenantProfile).values(is_default=False))
                row.is_default = True
            for key, value in clean.items():
                setattr(row, key, value)
            s.flush()
            rec = _record(s, row)
        self._changed(None)
        return rec

    def delete(self, p: Principal, profile_id: int) -> None:
        """Delete a profile; its tenants move to the default profile."""
        _require_platform(p, "tenants:write")
        with self.db.session() as s:
            row = self._get(s, profile_id)
            if row.is_default:
                raise Conflict(
                    f"tenant profile {row.name!r} is the default and cannot be deleted; make "
                    "another profile the default first",
                    [FieldError("is_default", "the default profile")],
                )
            s.execute(update(Tenant).where(Tenant.profile_id == row.id).values(profile_id=None))
            s.delete(row)
        self._changed(None)

    def assign(self, p: Principal, tenant_id: int, profile_id: int | None) -> None:
        """Give a tenant a profile (None: the default). Checked like a tenant update."""
        _require_platform(p, "tenants:write")
        with self.db.session() as s:
            t = s.get(Tenant, tenant_id)
            if t is None:
                raise NotFound(f"tenant {tenant_id} not found")
            set_profile(s, t, profile_id)
        self._changed(tenant_id)


def set_profile(s: Session, tenant: Tenant, profile_id: int | None) -> None:
    """Point ``tenant`` at a profile after checking it exists and allows its retention."""
    if profile_id is not None and s.get(TenantProfile, profile_id) is None:
        raise NotFound(
            f"tenant profile {profile_id} not found", [FieldError("profile_id", "not found")]
        )
    check_retention(s, tenant.retention_days, profile_id)
    tenant.profile_id = profile_id


def all_limits(db: Database) -> dict[int, Limits]:
    """Every tenant's effective limits, in one read."""
    with db.session() as s:
        rows = list(s.scalars(select(TenantProfile)))
        profiles = {p.id: Limits.of(p) for p in rows}
        default = next((Limits.of(p) for p in rows if p.is_default), UNLIMITED)
        return {
            int(tid): profiles.get(pid, default) if pid is not None else default
            for tid, pid in s.execute(select(Tenant.id, Tenant.profile_id))
        }
