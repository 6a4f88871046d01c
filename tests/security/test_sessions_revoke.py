"""Listing and ending sessions (refresh-token families), one's own and, for admins,
another user's (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from yugong.core.errors import Forbidden, NotFound, Unauthorized
from yugong.security.models import AuditEntry
from yugong.security.principal import Role

from .conftest import PASSWORD, World


def test_list_shows_each_login_once(world: World) -> None:
    sec, p = world.sec, world.a[Role.OPERATOR]
    assert sec.sessions.list_sessions(p) == []
    first = sec.sessions.login("a-operator", PASSWORD)
    second = sec.sessions.login("a-operator", PASSWORD)
    sec.sessions.login("a-viewer", PASSWORD)  # someone else's
    rotated = sec.sessions.refresh(first.refresh_token)
    sec.sessions.refresh(rotated.refresh_token)
    listed = sec.sessions.list_sessions(p)
    assert len(listed) == 2
    fam = {sec.codec.decode(t.refresh_token, "refresh").family: t for t in (first, second)}
    assert {s.id for s in listed} == set(fam)
    by_id = {s.id: s for s in listed}
    refreshed = by_id[sec.codec.decode(first.refresh_token, "refresh").family]
    fresh = by_id[sec.codec.decode(second.refresh_token, "refresh").family]
    assert refreshed.refreshed_at is not None and refreshed.refreshed_at >= refreshed.started_at
    assert fresh.refreshed_at is None and fresh.expires_at > fresh.started_at


def test_ending_one_session_refuses_its_refresh_token(world: World) -> None:
    sec, p = world.sec, world.a[Role.OPERATOR]
    doomed = sec.sessions.login("a-operator", PASSWORD)
    kept = sec.sessions.login("a-operator", PASSWORD)
    doomed_id = sec.codec.decode(doomed.refresh_token, "refresh").family
    assert doomed_id is not None
    sec.sessions.revoke_session(p, doomed_id)
    with pytest.raises(Unauthorized, match="session ended"):
        sec.sessions.refresh(doomed.refresh_token)
    assert sec.sessions.refresh(kept.refresh_token).access_token
    kept_id = sec.codec.decode(kept.refresh_token, "refresh").family
    assert [s.id for s in sec.sessions.list_sessions(p)] == [kept_id]
    # documented: an access token already issued lives on until it expires
    assert sec.authenticate(doomed.access_token).id == p.id
    with pytest.raises(NotFound):  # already ended
        sec.sessions.revoke_session(p, doomed_id)


def test_cannot_end_someone_elses_session(world: World) -> None:
    sec = world.sec
    theirs = sec.sessions.login("a-viewer", PASSWORD)
    fam = sec.codec.decode(theirs.refresh_token, "refresh").family
    assert fam is not None
    with pytest.raises(NotFound):
        sec.sessions.revoke_session(world.a[Role.OPERATOR], fam)
    with pytest.raises(NotFound):
        sec.sessions.revoke_session(world.a[Role.OPERATOR], "no-such-session")
    assert sec.sessions.refresh(theirs.refresh_token).access_token


def test_admin_ends_every_session_of_a_user(world: World) -> None:
    sec = world.sec
    target = world.a[Role.ENGINEER]
    pairs = [sec.sessions.login("a-engineer", PASSWORD) for _ in range(2)]
    bystander = sec.sessions.login("a-viewer", PASSWORD)
    with pytest.raises(Forbidden):
        sec.users.revoke_sessions(world.a[Role.ENGINEER], target.id)
    with pytest.raises(NotFound):
        sec.users.revoke_sessions(world.b[Role.TENANT_ADMIN], target.id)
    assert sec.users.revoke_sessions(world.a[Role.TENANT_ADMIN], target.id) == 2
    for pair in pairs:
        with pytest.raises(Unauthorized):
            sec.sessions.refresh(pair.refresh_token)
    assert sec.sessions.list_sessions(target) == []
    assert sec.sessions.refresh(bystander.refresh_token).access_token
    assert sec.users.revoke_sessions(world.platform, target.id) == 0
    with sec.db.session() as s:
        entries = s.scalars(
            select(AuditEntry).where(AuditEntry.action == "users.revoke_sessions")
        ).all()
    assert [e.detail["revoked_tokens"] for e in entries] == [2, 0]
    assert entries[0].tenant_id == world.tenant_a


def test_only_users_have_sessions(world: World) -> None:
    key = world.sec.apikeys.create(world.a[Role.TENANT_ADMIN], name="k")
    principal = world.sec.authenticate(key.key)
    with pytest.raises(Unauthorized):
        world.sec.sessions.list_sessions(principal)
