"""The platform's figures counted in SQL on a small known world: devices and those online,
collection points, users and active users per tenant, grouped by industry with subtotals;
the catalog's components and mechanism models; platform admins only."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.conftest import migrated_db
from yugong.core.errors import Forbidden
from yugong.infra.db import Database, utcnow
from yugong.platform.components import Catalog
from yugong.platform.figures import Counts, catalog_counts, platform_figures, tenant_counts
from yugong.platform.registry.models import Device, Product, Series, Tenant
from yugong.security.models import User
from yugong.security.principal import Principal, Role

PLATFORM = Principal(kind="user", id=1, tenant=None, role=Role.PLATFORM_ADMIN, name="root")
NOW = utcnow()


@pytest.fixture(params=["sqlite"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with migrated_db(request, tmp_path) as database:
        yield database


def _world(db: Database) -> dict[str, int]:
    """Steel: A (3 devices, 2 online, 4 series, 3 users of whom 1 active) and B (1 device,
    no series, 1 active user); C without an industry and nothing in it."""
    with db.session() as s:
        tenants = {
            name: Tenant(name=name, slug=name.lower(), industry=industry)
            for name, industry in (("A", "steel"), ("B", "steel"), ("C", None))
        }
        s.add_all(tenants.values())
        s.flush()
        n = 0

        def device(tenant: Tenant, online: bool) -> Device:
            nonlocal n
            n += 1
            product = Product(tenant_id=tenant.id, key=f"p{n}", name=f"P{n}", tsl={})
            s.add(product)
            s.flush()
            d = Device(
                tenant_id=tenant.id,
                product_id=product.id,
                name=f"d{n}",
                token_hash=f"{n:064x}",
                online=online,
            )
            s.add(d)
            s.flush()
            return d

        a = [device(tenants["A"], True), device(tenants["A"], True), device(tenants["A"], False)]
        device(tenants["B"], False)
        for i, prop in enumerate(("t", "p", "q", "r")):
            s.add(Series(tenant_id=tenants["A"].id, device_id=a[i % 2].id, property=prop))

        def user(name: str, tenant: Tenant | None, days_ago: int | None) -> None:
            seen = None if days_ago is None else NOW - timedelta(days=days_ago)
            s.add(
                User(
                    username=name,
                    tenant_id=tenant.id if tenant else None,
                    role="viewer",
                    password_hash="x",
                    last_login_at=seen,
                )
            )

        user("a1", tenants["A"], 1)
        user("a2", tenants["A"], 40)
        user("a3", tenants["A"], None)
        user("b1", tenants["B"], 29)
        user("root2", None, 1)  # a platform admin belongs to no tenant: not counted
        s.flush()
        return {k: v.id for k, v in tenants.items()}


def test_counts_per_tenant(db: Database) -> None:
    ids = _world(db)
    rows = {r.name: r for r in tenant_counts(db, now=NOW)}
    assert rows["A"].tenant_id == ids["A"]
    assert rows["A"].counts == Counts(1, 3, 2, 4, 3, 1)
    assert rows["B"].counts == Counts(1, 1, 0, 0, 1, 1)
    assert rows["C"].counts == Counts(1, 0, 0, 0, 0, 0)


def test_grouped_by_industry_with_totals(db: Database) -> None:
    _world(db)
    fig = platform_figures(PLATFORM, db, None, now=NOW)
    assert [g.industry for g in fig.industries] == ["steel", None]
    steel, none = fig.industries
    assert [r.name for r in steel.tenants] == ["A", "B"]
    assert steel.counts == Counts(2, 4, 2, 4, 4, 2)
    assert none.counts == Counts(1, 0, 0, 0, 0, 0)
    assert fig.total == Counts(3, 4, 2, 4, 4, 2)
    assert (fig.components, fig.mechanism_models, fig.apps) == (0, 0, 0)


def test_catalog_counts_newest_versions_and_mechanism_models() -> None:
    every = Catalog.discover()
    mechanism = [c for c in every.components.values() if c.category == "mechanism"][:2]
    other = [c for c in every.components.values() if c.category != "mechanism"][:1]
    assert len(mechanism) == 2 and other, "the built-in library has both kinds"
    small = Catalog()
    for comp in (*mechanism, *other):
        small.add(comp)
    assert catalog_counts(small) == (3, 2)
    assert catalog_counts(None) == (0, 0)


@pytest.mark.parametrize("role", [Role.TENANT_ADMIN, Role.VIEWER])
def test_only_platform_admins(db: Database, role: Role) -> None:
    p = Principal(kind="user", id=2, tenant=1, role=role, name="x")
    with pytest.raises(Forbidden):
        platform_figures(p, db, None)
