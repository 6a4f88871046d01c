"""Login, access tokens, refresh rotation and reuse detection, logout (SQLite and
PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from yugong.core.errors import Unauthorized
from yugong.security.models import RefreshToken, User
from yugong.security.principal import SYSTEM, Role
from yugong.security.service import Security
from yugong.security.sessions import LOGIN_FAILED

from .conftest import PASSWORD, World


def test_login_returns_a_working_pair(world: World) -> None:
    sec = world.sec
    pair = sec.sessions.login("a-engineer", PASSWORD)
    assert pair.token_type == "bearer" and pair.expires_in == 30 * 60
    p = sec.authenticate(pair.access_token)
    assert (p.kind, p.id, p.tenant, p.role) == (
        "user",
        world.a[Role.ENGINEER].id,
        world.tenant_a,
        Role.ENGINEER,
    )
    assert sec.users.me(p).last_login_at is not None


def test_login_failures_all_read_the_same(world: World) -> None:
    sec = world.sec
    with pytest.raises(Unauthorized) as wrong:
        sec.sessions.login("a-engineer", "not the password")
    with pytest.raises(Unauthorized) as missing:
        sec.sessions.login("nobody-here", PASSWORD)
    sec.users.update(world.a[Role.TENANT_ADMIN], world.a[Role.VIEWER].id, active=False)
    with pytest.raises(Unauthorized) as inactive:
        sec.sessions.login("a-viewer", PASSWORD)
    assert wrong.value.detail == missing.value.detail == inactive.value.detail == LOGIN_FAILED


def test_login_rehashes_with_current_parameters(world: World) -> None:
    stronger = Security(
        world.sec.db,
        world.sec.settings,
        hasher=PasswordHasher(time_cost=2, memory_cost=1024, parallelism=1),
    )
    stronger.sessions.login("a-viewer", PASSWORD)
    with world.sec.db.session() as s:
        stored = s.scalars(select(User.password_hash).where(User.username == "a-viewer")).one()
    assert "t=2" in stored and not stronger.passwords.needs_rehash(stored)
    world.sec.sessions.login("a-viewer", PASSWORD)  # and the new hash still verifies


def test_refresh_rotates_and_old_token_is_spent(world: World) -> None:
    sec = world.sec
    first = sec.sessions.login("a-operator", PASSWORD)
    second = sec.sessions.refresh(first.refresh_token)
    assert second.refresh_token != first.refresh_token
    assert sec.authenticate(second.access_token).id == world.a[Role.OPERATOR].id
    third = sec.sessions.refresh(second.refresh_token)
    with sec.db.session() as s:
        rows = s.scalars(select(RefreshToken).order_by(RefreshToken.issued_at)).all()
    family = {r.family for r in rows}
    assert len(rows) == 3 and len(family) == 1
    chained = {r.jti: r.replaced_by for r in rows}
    assert sum(v is None for v in chained.values()) == 1  # only the newest is live
    assert third.refresh_token


def test_reusing_a_rotated_token_ends_the_whole_family(world: World) -> None:
    sec = world.sec
    stolen = sec.sessions.login("a-operator", PASSWORD)
    legit = sec.sessions.refresh(stolen.refresh_token)
    other_session = sec.sessions.login("a-operator", PASSWORD)
    with pytest.raises(Unauthorized, match="already used"):
        sec.sessions.refresh(stolen.refresh_token)
    # the legitimate successor is dead too...
    with pytest.raises(Unauthorized):
        sec.sessions.refresh(legit.refresh_token)
    # ...but an unrelated session of the same user is not
    assert sec.sessions.refresh(other_session.refresh_token).access_token


def test_expired_refresh_token_refused(world: World) -> None:
    sec = world.sec
    pair = sec.sessions.login("a-viewer", PASSWORD)
    with sec.db.session() as s:
        row = s.scalars(select(RefreshToken)).one()
        row.expires_at = row.expires_at - timedelta(days=30)
    with pytest.raises(Unauthorized, match="expired"):
        sec.sessions.refresh(pair.refresh_token)


def test_unknown_refresh_token_refused(world: World) -> None:
    sec = world.sec
    p = world.a[Role.VIEWER]
    forged = sec.codec.encode(sec.codec.claims("refresh", p.id, p.tenant, p.role, family="x"))
    with pytest.raises(Unauthorized):
        sec.sessions.refresh(forged)
    access = sec.sessions.login("a-viewer", PASSWORD).access_token
    with pytest.raises(Unauthorized):
        sec.sessions.refresh(access)


def test_logout_one_session_or_all(world: World) -> None:
    sec = world.sec
    p = world.a[Role.VIEWER]
    one = sec.sessions.login("a-viewer", PASSWORD)
    two = sec.sessions.login("a-viewer", PASSWORD)
    assert sec.sessions.logout(p, one.refresh_token) == 1
    with pytest.raises(Unauthorized, match="session ended"):
        sec.sessions.refresh(one.refresh_token)
    two = sec.sessions.refresh(two.refresh_token)
    assert sec.sessions.logout(p) == 1
    with pytest.raises(Unauthorized):
        sec.sessions.refresh(two.refresh_token)


def test_logout_with_someone_elses_token_refused(world: World) -> None:
    sec = world.sec
    theirs = sec.sessions.login("b-viewer", PASSWORD)
    with pytest.raises(Unauthorized):
        sec.sessions.logout(world.a[Role.VIEWER], theirs.refresh_token)
    assert sec.sessions.refresh(theirs.refresh_token).access_token


def test_deactivation_and_role_change_take_effect_at_once(world: World) -> None:
    sec = world.sec
    pair = sec.sessions.login("a-engineer", PASSWORD)
    uid = world.a[Role.ENGINEER].id
    sec.users.update(world.a[Role.TENANT_ADMIN], uid, role=Role.VIEWER)
    assert sec.authenticate(pair.access_token).role is Role.VIEWER
    with pytest.raises(Unauthorized):  # role changes end refresh sessions
        sec.sessions.refresh(pair.refresh_token)
    sec.users.update(world.a[Role.TENANT_ADMIN], uid, active=False)
    with pytest.raises(Unauthorized):
        sec.authenticate(pair.access_token)


def test_password_change_ends_sessions(world: World) -> None:
    sec = world.sec
    p = world.a[Role.ENGINEER]
    pair = sec.sessions.login("a-engineer", PASSWORD)
    sec.users.change_password(p, PASSWORD, "a brand new passphrase")
    with pytest.raises(Unauthorized, match="password"):
        sec.authenticate(pair.access_token)
    with pytest.raises(Unauthorized):
        sec.sessions.refresh(pair.refresh_token)
    with pytest.raises(Unauthorized):
        sec.sessions.login("a-engineer", PASSWORD)
    fresh = sec.sessions.issue(p)  # what the API hands back right after the change
    assert sec.authenticate(fresh.access_token).id == p.id
    assert sec.sessions.login("a-engineer", "a brand new passphrase").access_token


def test_only_users_hold_sessions(world: World) -> None:
    with pytest.raises(Unauthorized):
        world.sec.sessions.issue(SYSTEM)


def test_purge_expired(world: World) -> None:
    sec = world.sec
    sec.sessions.login("a-viewer", PASSWORD)
    assert sec.sessions.purge_expired() == 0
    with sec.db.session() as s:
        exp = s.scalars(select(RefreshToken.expires_at)).one()
    assert sec.sessions.purge_expired(exp + timedelta(seconds=1)) == 1
