"""Tenants: one enterprise each. Only platform admins create, change or delete them."""

from __future__ import annotations

import builtins
import re
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from yugong.core.errors import Conflict, FieldError, Forbidden, NotFound
from yugong.infra.db import Database
from yugong.security.principal import Principal

from .. import quotas_profiles as quotas
from ._common import UNSET, Notify, check_paging, clean_name, invalid, unique_violation
from .models import Asset, Device, Product, Series, Tenant
from .records import ChangeEvent, Listing, TenantRecord

_SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


def _record(t: Tenant) -> TenantRecord:
    return TenantRecord(
        t.id, t.name, t.slug, t.industry, t.retention_days, t.active, t.created_at, t.profile_id
    )


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:64].strip("-")


def _slug(value: Any, name: str) -> str:
    if value is None:
        derived = slugify(name)
        if not derived:
            raise invalid("slug", "is required when the name has no latin letters or digits")
        return derived
    if not isinstance(value, str) or not _SLUG.match(value):
        raise invalid(
            "slug", "must be 1-64 lowercase letters, digits or '-', not starting or ending with '-'"
        )
    return value


def _industry(value: Any) -> str | None:
    if value is None:
        return None
    return clean_name(value, "industry", 64)


def _retention(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid("retention_days", "must be a whole number of days >= 1 (or null to keep)")
    return value


class TenantService:
    def __init__(self, db: Database, notify: Notify) -> None:
        self._db = db
        self._notify = notify

    @staticmethod
    def _require_platform(p: Principal, what: str) -> None:
        p.require("tenants:write")
        if not p.is_platform:
            raise Forbidden(f"only a platform admin may {what} tenants")

    @staticmethod
    def _get(s: Session, p: Principal, tenant_id: int) -> Tenant:
        t = s.get(Tenant, tenant_id)
        if t is None or not p.can_see_tenant(t.id):
            raise NotFound(f"tenant {tenant_id} not found")
        return t

    @staticmethod
    def _check_unique(s: Session, name: str, slug: str, exclude: int | None = None) -> None:
        for col, value, loc in ((Tenant.name, name, "name"), (Tenant.slug, slug, "slug")):
            q = select(Tenant.id).where(col == value)
            if exclude is not None:
                q = q.where(Tenant.id != exclude)
            if s.scalar(q) is not None:
                raise Conflict(
                    f"a tenant with {loc} {value!r} already exists",
                    [FieldError(loc, "already exists")],
                )

    def create(
        self,
        p: Principal,
        *,
        name: str,
        slug: str | None = None,
        industry: str | None = None,
        retention_days: int | None = None,
        active: bool = True,
    ) -> TenantRecord:
        self._require_platform(p, "create")
        name = clean_name(name, "name")
        slug_ = _slug(slug, name)
        t = Tenant(
            name=name,
            slug=slug_,
            industry=_industry(industry),
            retention_days=_retention(retention_days),
            active=bool(active),
        )
        with self._db.session() as s:
            self._check_unique(s, name, slug_)
            quotas.check_retention(s, t.retention_days, None)  # the default profile's maximum
            with unique_violation("a tenant with this name or slug already exists", "name"):
                s.add(t)
                s.flush()
            rec = _record(t)
        self._notify(ChangeEvent("tenant", "created", rec.id, rec.id))
        return rec

    def get(self, p: Principal, tenant_id: int) -> TenantRecord:
        p.require("tenants:read")
        with self._db.session() as s:
            return _record(self._get(s, p, tenant_id))

    def list(self, p: Principal, *, limit: int = 100, offset: int = 0) -> Listing[TenantRecord]:
        p.require("tenants:read")
        check_paging(limit, offset)
        q = select(Tenant)
        if not p.is_platform:
            q = q.where(Tenant.id == p.tenant_for())
        with self._db.session() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = s.scalars(q.order_by(Tenant.id).limit(limit).offset(offset)).all()
            return Listing([_record(t) for t in rows], total, limit, offset)

    def update(
        self,
        p: Principal,
        tenant_id: int,
        *,
        name: str = UNSET,
        slug: str = UNSET,
        industry: str | None = UNSET,
        retention_days: int | None = UNSET,
        active: bool = UNSET,
        profile_id: int | None = UNSET,
    ) -> TenantRecord:
        self._require_platform(p, "change")
        with self._db.session() as s:
            t = self._get(s, p, tenant_id)
            with s.no_autoflush:  # check the new values before the database sees them
                if name is not UNSET:
                    t.name = clean_name(name, "name")
                if slug is not UNSET:
                    t.slug = _slug(slug, t.name)
                if industry is not UNSET:
                    t.industry = _industry(industry)
                if retention_days is not UNSET:
                    t.retention_days = _retention(retention_days)
                if active is not UNSET:
                    t.active = bool(active)
                if profile_id is not UNSET:
                    quotas.set_profile(s, t, profile_id)
                elif retention_days is not UNSET:
                    quotas.check_retention(s, t.retention_days, t.profile_id)
                self._check_unique(s, t.name, t.slug, exclude=t.id)
            with unique_violation("a tenant with this name or slug already exists", "name"):
                s.flush()
            rec = _record(t)
        self._notify(ChangeEvent("tenant", "updated", rec.id, rec.id))
        return rec

    def delete(self, p: Principal, tenant_id: int) -> builtins.list[int]:
        """Delete a tenant and everything in it; returns the deleted series ids (the caller
        deletes their samples from the time-series store)."""
        self._require_platform(p, "delete")
        with self._db.session() as s:
            t = self._get(s, p, tenant_id)
            series = list(s.scalars(select(Series.id).where(Series.tenant_id == t.id)))
            # Children first: the self-references (gateways, parent assets) go in one
            # statement each, so they never dangle between statements.
            for model in (Series, Device, Product, Asset):
                s.execute(delete(model).where(model.tenant_id == t.id))
            s.delete(t)
        self._notify(ChangeEvent("tenant", "deleted", tenant_id, tenant_id, series=tuple(series)))
        return series
