"""The first platform admin of a fresh installation."""

from __future__ import annotations

from pathlib import Path

import pytest

from yugong.core.errors import Conflict, InvalidInput
from yugong.core.settings import Settings
from yugong.infra.db import Database
from yugong.security.bootstrap import ensure_platform_admin
from yugong.security.passwords import PasswordPolicy, Passwords
from yugong.security.principal import SYSTEM, Role
from yugong.security.service import Security

from .conftest import SECRET, add_tenant, cheap_hasher


def _settings(tmp_path: Path, **kw: str) -> Settings:
    return Settings(data_dir=tmp_path, secret_key=SECRET, **kw)


def test_generates_a_password_once(db: Database, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    pw = Passwords(cheap_hasher())
    generated = ensure_platform_admin(db, settings, passwords=pw)
    assert generated is not None and len(generated) >= 20
    assert ensure_platform_admin(db, settings, passwords=pw) is None  # already there
    sec = Security(db, settings, hasher=cheap_hasher())
    principal = sec.authenticate(sec.sessions.login("admin", generated).access_token)
    assert principal.is_platform and principal.role is Role.PLATFORM_ADMIN
    assert sec.users.count_platform_admins() == 1


def test_uses_the_configured_password(sqlite_db: Database, tmp_path: Path) -> None:
    settings = _settings(tmp_path, admin_username="root", admin_password="configured secret 1")
    assert ensure_platform_admin(sqlite_db, settings, passwords=Passwords(cheap_hasher())) is None
    sec = Security(sqlite_db, settings, hasher=cheap_hasher())
    assert sec.sessions.login("root", "configured secret 1").access_token


def test_weak_configured_password_refused(sqlite_db: Database, tmp_path: Path) -> None:
    settings = _settings(tmp_path, admin_password="admin")
    with pytest.raises(InvalidInput) as e:
        ensure_platform_admin(sqlite_db, settings, passwords=Passwords(cheap_hasher()))
    assert e.value.errors[0].loc == "admin_password"
    sec = Security(sqlite_db, settings, hasher=cheap_hasher())
    assert sec.users.count_platform_admins() == 0


def test_name_taken_by_a_tenant_user(sqlite_db: Database, tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    sec = Security(sqlite_db, settings, hasher=cheap_hasher())
    tenant = add_tenant(sqlite_db, "acme")
    sec.users.create(
        SYSTEM,
        username="admin",
        password="tenant boss pass",
        role=Role.TENANT_ADMIN,
        tenant_id=tenant,
    )
    with pytest.raises(Conflict, match="YUGONG_ADMIN_USERNAME"):
        ensure_platform_admin(sqlite_db, settings, passwords=Passwords(cheap_hasher()))


def test_the_deployment_policy_applies_to_the_bootstrap_admin(
    sqlite_db: Database, tmp_path: Path
) -> None:
    strict = Settings(data_dir=tmp_path, secret_key=SECRET, password_min_classes=4)
    with pytest.raises(InvalidInput, match="at least 4 of") as e:
        ensure_platform_admin(
            sqlite_db,
            strict.model_copy(update={"admin_password": "only-lower-and-dash"}),
            passwords=Passwords(cheap_hasher()),
        )
    assert e.value.errors[0].loc == "admin_password"
    generated = ensure_platform_admin(sqlite_db, strict, passwords=Passwords(cheap_hasher()))
    assert generated is not None and PasswordPolicy.from_settings(strict).problems(generated) == []
