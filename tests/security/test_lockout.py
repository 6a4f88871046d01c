"""Lockout after repeated failed logins, with growing back-off, on SQLite and PostgreSQL;
the password policy taken from settings."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from yugong.core.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from yugong.core.settings import Settings
from yugong.infra.db import utcnow
from yugong.security.context import acting
from yugong.security.models import AuditEntry, SecurityEvent, User
from yugong.security.principal import SYSTEM, Role
from yugong.security.service import Security
from yugong.security.sessions import LOCKED, LOGIN_FAILED, LockoutPolicy, LoginLocked

from .conftest import PASSWORD, SECRET, World, cheap_hasher

AFTER, BASE, MAX = 3, 10.0, 35.0


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        secret_key=SECRET,
        login_lockout_after=AFTER,
        login_lockout_base_s=BASE,
        login_lockout_max_s=MAX,
    )


def fail(sec: Security, username: str, times: int) -> None:
    for _ in range(times):
        with pytest.raises(Unauthorized) as e:
            sec.sessions.login(username, "not the password")
        assert e.value.detail == LOGIN_FAILED


def expire_lock(sec: Security, username: str) -> None:
    with sec.db.session() as s:
        user = s.scalars(select(User).where(User.username == username)).one()
        assert user.locked_until is not None
        user.locked_until = utcnow() - timedelta(seconds=1)


def locked_for(sec: Security, username: str) -> float:
    with sec.db.session() as s:
        until = s.scalars(select(User.locked_until).where(User.username == username)).one()
    assert until is not None
    return (until - utcnow()).total_seconds()


def test_policy_doubles_and_caps() -> None:
    p = LockoutPolicy(after=3, base_s=10, max_s=35)
    assert [p.lock_for(n) for n in range(1, 7)] == [None, None, 10, 20, 35, 35]
    assert p.lock_for(10_000) == 35  # no overflow however long an attack runs


def test_lock_after_threshold_and_correct_password_still_refused(world: World) -> None:
    sec = world.sec
    fail(sec, "a-viewer", AFTER)
    with pytest.raises(LoginLocked) as e:
        sec.sessions.login("a-viewer", PASSWORD)
    assert e.value.status == 429 and e.value.detail == LOCKED
    assert BASE - 2 <= e.value.retry_after <= BASE
    # the lock does not grow while it lasts: attempts during it are not counted
    with pytest.raises(LoginLocked):
        sec.sessions.login("a-viewer", "still wrong")
    with sec.db.session() as s:
        assert s.scalars(select(User.failed_logins).where(User.username == "a-viewer")).one() == 3
    # other accounts are unaffected
    assert sec.sessions.login("a-engineer", PASSWORD).access_token


def test_back_off_grows_and_is_capped(world: World) -> None:
    sec = world.sec
    fail(sec, "a-operator", AFTER)
    assert BASE - 2 <= locked_for(sec, "a-operator") <= BASE
    for expected in (2 * BASE, MAX, MAX):
        expire_lock(sec, "a-operator")
        fail(sec, "a-operator", 1)
        assert expected - 2 <= locked_for(sec, "a-operator") <= expected


def test_success_resets_the_count(world: World) -> None:
    sec = world.sec
    fail(sec, "a-engineer", AFTER - 1)
    sec.sessions.login("a-engineer", PASSWORD)
    fail(sec, "a-engineer", AFTER - 1)  # would lock if the count had not been reset
    assert sec.sessions.login("a-engineer", PASSWORD).access_token
    with sec.db.session() as s:
        user = s.scalars(select(User).where(User.username == "a-engineer")).one()
        assert (user.failed_logins, user.locked_until) == (0, None)


def test_unknown_usernames_lock_the_same_way(world: World) -> None:
    sec = world.sec
    fail(sec, "a-viewer", AFTER)
    fail(sec, "no-such-user", AFTER)
    with pytest.raises(LoginLocked) as known:
        sec.sessions.login("a-viewer", PASSWORD)
    with pytest.raises(LoginLocked) as unknown:
        sec.sessions.login("no-such-user", PASSWORD)
    assert known.value.detail == unknown.value.detail
    assert known.value.extra().keys() == unknown.value.extra().keys()
    assert abs(known.value.retry_after - unknown.value.retry_after) <= 1


def test_events_and_audit_of_every_attempt(world: World) -> None:
    sec = world.sec
    with acting(None, "203.0.113.9", "http"):
        fail(sec, "a-viewer", AFTER)
        with pytest.raises(LoginLocked):
            sec.sessions.login("a-viewer", PASSWORD)
    sec.sessions.login("a-engineer", PASSWORD)
    with sec.db.session() as s:
        events = s.scalars(select(SecurityEvent).order_by(SecurityEvent.id)).all()
        audit = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "login").order_by(AuditEntry.id)
        ).all()
        viewer_id = s.scalars(select(User.id).where(User.username == "a-viewer")).one()
    failed = [e for e in events if e.kind == "login_failed"]
    assert failed and all(
        (e.source_ip, e.subject, e.tenant_id) == ("203.0.113.9", "a-viewer", world.tenant_a)
        for e in failed
    )
    assert sum(e.count for e in failed) == AFTER + 1  # three wrong passwords, one while locked
    locks = [e for e in events if e.kind == "account_locked"]
    assert len(locks) == 1 and locks[0].severity == "critical"
    assert [(a.outcome, a.actor_name) for a in audit] == [("refused", "a-viewer")] * (AFTER + 1) + [
        ("ok", "a-engineer")
    ]
    assert audit[0].target_id == str(viewer_id) and audit[0].source_ip == "203.0.113.9"
    assert audit[-2].detail["reason"] == "locked"
    assert sec.audit.verify().ok


def test_admin_unlock(world: World) -> None:
    sec = world.sec
    uid = world.a[Role.VIEWER].id
    fail(sec, "a-viewer", AFTER)
    assert sec.users.get(world.a[Role.TENANT_ADMIN], uid).locked_until is not None
    with pytest.raises(Forbidden):
        sec.users.unlock(world.a[Role.ENGINEER], uid)
    with pytest.raises(NotFound):
        sec.users.unlock(world.b[Role.TENANT_ADMIN], uid)
    with pytest.raises(LoginLocked):
        sec.sessions.login("a-viewer", PASSWORD)
    info = sec.users.unlock(world.a[Role.TENANT_ADMIN], uid)
    assert info.locked_until is None
    assert sec.sessions.login("a-viewer", PASSWORD).access_token
    with sec.db.session() as s:
        entry = s.scalars(select(AuditEntry).where(AuditEntry.action == "users.unlock")).one()
    assert entry.target_id == str(uid) and entry.detail == {"was_locked": True}


def test_password_policy_comes_from_settings(db, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    strict = Settings(
        data_dir=tmp_path, secret_key=SECRET, password_min_length=14, password_min_classes=3
    )
    sec = Security(db, strict, hasher=cheap_hasher())
    with pytest.raises(InvalidInput) as e:
        sec.users.create(SYSTEM, username="root", password="lowercase only!", role="platform_admin")
    assert "at least 3 of" in e.value.detail
    with pytest.raises(InvalidInput, match="at least 14"):
        sec.users.create(SYSTEM, username="root", password="Short1!", role="platform_admin")
    sec.users.create(SYSTEM, username="root", password="Mixed Case 2026", role="platform_admin")
