"""The platform's figures for its operator: per tenant and per industry, connected and total
devices, collection points (series), enterprise users and active users; platform-wide, the
component catalog's size and its mechanism models. Every count is one grouped SQL query, so
the cost does not grow with the number of devices loaded into Python."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Integer, case, func, select

from yugong.core.errors import Forbidden
from yugong.infra.db import Database, utcnow
from yugong.platform.components import Catalog
from yugong.platform.components.contract import Category
from yugong.platform.registry.models import Device, Series, Tenant
from yugong.security.models import User
from yugong.security.principal import Principal

ACTIVE_DAYS = 30  # a user who signed in within this many days is active


@dataclass(frozen=True)
class Counts:
    """The figures of one tenant, one industry or the whole platform."""

    tenants: int = 0
    devices: int = 0
    online: int = 0
    series: int = 0
    users: int = 0
    active_users: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.tenants + other.tenants,
            self.devices + other.devices,
            self.online + other.online,
            self.series + other.series,
            self.users + other.users,
            self.active_users + other.active_users,
        )


@dataclass(frozen=True)
class TenantRow:
    tenant_id: int
    name: str
    industry: str | None
    counts: Counts


@dataclass(frozen=True)
class IndustryRow:
    industry: str | None  # None: tenants without an industry
    counts: Counts
    tenants: list[TenantRow] = field(default_factory=list)


@dataclass(frozen=True)
class PlatformFigures:
    industries: list[IndustryRow]  # by industry name, tenants without one last
    total: Counts
    components: int  # components in the catalog (newest version of each)
    mechanism_models: int  # of those, category "mechanism"
    apps: int  # no app runtime is installed yet: always 0
    at: datetime


def _by_tenant(rows: Iterable[tuple[Any, ...]]) -> dict[int, tuple[int, ...]]:
    return {int(r[0]): tuple(int(v or 0) for v in r[1:]) for r in rows}


def tenant_counts(db: Database, *, now: datetime | None = None) -> list[TenantRow]:
    """Every tenant's figures, by tenant id."""
    since = (now or utcnow()) - timedelta(days=ACTIVE_DAYS)
    online = func.sum(case((Device.online.is_(True), 1), else_=0)).cast(Integer)
    active = func.sum(case((User.last_login_at >= since, 1), else_=0)).cast(Integer)
    with db.session() as s:
        tenants = s.execute(select(Tenant.id, Tenant.name, Tenant.industry).order_by(Tenant.id))
        tenant_list = [(int(i), str(n), ind) for i, n, ind in tenants]
        devices = _by_tenant(
            s.execute(
                select(Device.tenant_id, func.count(), online).group_by(Device.tenant_id)
            ).all()
        )
        series = _by_tenant(
            s.execute(select(Series.tenant_id, func.count()).group_by(Series.tenant_id)).all()
        )
        users = _by_tenant(
            s.execute(
                select(User.tenant_id, func.count(), active)
                .where(User.tenant_id.is_not(None))
                .group_by(User.tenant_id)
            ).all()
        )
    out = []
    for tid, name, industry in tenant_list:
        d = devices.get(tid, (0, 0))
        u = users.get(tid, (0, 0))
        counts = Counts(1, d[0], d[1], series.get(tid, (0,))[0], u[0], u[1])
        out.append(TenantRow(tid, name, industry, counts))
    return out


def catalog_counts(catalog: Catalog | None) -> tuple[int, int]:
    """(components, mechanism models) of the catalog, newest version of each component."""
    if catalog is None:
        return 0, 0
    return len(catalog.search()), len(catalog.search(category=Category.MECHANISM.value))


def platform_figures(
    p: Principal, db: Database, catalog: Catalog | None, *, now: datetime | None = None
) -> PlatformFigures:
    """The figures of every tenant grouped by industry: platform admins only."""
    p.require("tenants:write")
    if not p.is_platform:
        raise Forbidden("only a platform admin may see the platform's figures")
    groups: dict[str | None, list[TenantRow]] = {}
    for row in tenant_counts(db, now=now):
        groups.setdefault(row.industry or None, []).append(row)
    named = sorted((k for k in groups if k is not None), key=str.casefold)
    order: list[str | None] = [*named]
    if None in groups:
        order.append(None)
    industries = []
    total = Counts()
    for key in order:
        rows = groups[key]
        subtotal = sum((r.counts for r in rows), Counts())
        industries.append(IndustryRow(key, subtotal, rows))
        total = total + subtotal
    components, mechanism = catalog_counts(catalog)
    return PlatformFigures(industries, total, components, mechanism, 0, now or utcnow())


__all__ = [
    "ACTIVE_DAYS",
    "Counts",
    "IndustryRow",
    "PlatformFigures",
    "TenantRow",
    "catalog_counts",
    "platform_figures",
    "tenant_counts",
]
