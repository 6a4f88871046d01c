"""Fixtures for the access-layer tests: a migrated database (SQLite, and PostgreSQL when
it runs), two tenants, and a :class:`Security` with argon2 at its cheapest cost."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST

from tests.conftest import migrated_db
from yugong.core.settings import Settings
from yugong.infra.db import Database
from yugong.infra.migrate import sqlalchemy_url, upgrade
from yugong.platform.registry.models import Tenant
from yugong.security.principal import SYSTEM, Principal, Role
from yugong.security.service import Security

PASSWORD = "correct horse battery"
SECRET = "s" * 40


def cheap_hasher() -> PasswordHasher:
    return PasswordHasher.from_parameters(CHEAPEST)


def make_db(url: str) -> Database:
    upgrade(url)
    return Database(sqlalchemy_url(url))


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with migrated_db(request, tmp_path) as database:
        yield database


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Iterator[Database]:
    database = make_db(f"sqlite:///{tmp_path / 'registry.db'}")
    try:
        yield database
    finally:
        database.dispose()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, secret_key=SECRET)


@pytest.fixture
def sec(db: Database, settings: Settings) -> Security:
    return Security(db, settings, hasher=cheap_hasher())


@dataclass
class World:
    """Two tenants, each with one user per role, and a platform admin."""

    sec: Security
    tenant_a: int
    tenant_b: int
    platform: Principal
    a: dict[Role, Principal]
    b: dict[Role, Principal]


def add_tenant(db: Database, slug: str) -> int:
    with db.session() as s:
        t = Tenant(name=slug.upper(), slug=slug)
        s.add(t)
        s.flush()
        return t.id


def add_user(sec: Security, username: str, role: Role, tenant: int | None) -> Principal:
    info = sec.users.create(
        SYSTEM, username=username, password=PASSWORD, role=role, tenant_id=tenant
    )
    return Principal(
        kind="user", id=info.id, tenant=info.tenant_id, role=info.role, name=info.username
    )


@pytest.fixture
def world(sec: Security) -> World:
    ta, tb = add_tenant(sec.db, "a"), add_tenant(sec.db, "b")
    tenant_roles = [r for r in Role if r is not Role.PLATFORM_ADMIN]
    a = {r: add_user(sec, f"a-{r.value}", r, ta) for r in tenant_roles}
    b = {r: add_user(sec, f"b-{r.value}", r, tb) for r in tenant_roles}
    platform = add_user(sec, "root", Role.PLATFORM_ADMIN, None)
    return World(sec, ta, tb, platform, a, b)
