"""API keys: lifecycle, scope, role ceiling, last-used bookkeeping."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from yugong.core.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from yugong.security.models import ApiKey
from yugong.security.principal import Role

from .conftest import World


def test_lifecycle_create_use_revoke(world: World) -> None:
    sec = world.sec
    dev = world.a[Role.APP_DEVELOPER]
    new = sec.apikeys.create(dev, name="etl job")
    assert new.key.startswith(f"ygk_{new.info.prefix}_")
    assert len(new.info.prefix) == 8 and new.info.role is Role.APP_DEVELOPER
    with sec.db.session() as s:
        row = s.scalars(select(ApiKey)).one()
        assert new.key.split("_", 2)[2] not in (row.secret_hash, row.prefix)  # not stored
    p = sec.authenticate(new.key)
    assert (p.kind, p.id, p.tenant, p.role) == (
        "api_key",
        new.info.id,
        world.tenant_a,
        Role.APP_DEVELOPER,
    )
    [listed] = sec.apikeys.list(dev)
    assert listed.last_used_at is not None and listed.prefix == new.info.prefix
    revoked = sec.apikeys.revoke(dev, new.info.id)
    assert revoked.revoked_at is not None
    with pytest.raises(Unauthorized, match="revoked"):
        sec.authenticate(new.key)
    assert sec.apikeys.list(dev) == []
    assert [k.id for k in sec.apikeys.list(dev, include_revoked=True)] == [new.info.id]


def test_wrong_secret_or_malformed_key_refused(world: World) -> None:
    sec = world.sec
    new = sec.apikeys.create(world.a[Role.TENANT_ADMIN], name="k")
    prefix = new.info.prefix
    for bad in (
        f"ygk_{prefix}_wrongsecret",
        f"ygk_{prefix}",
        "ygk_",
        "ygk_abc_def",
        f"ygk_zzzzzzzz_{new.key.split('_', 2)[2]}",
        new.key[:-1],
    ):
        with pytest.raises(Unauthorized, match="invalid API key"):
            sec.authenticate(bad)


def test_expired_key_refused(world: World) -> None:
    sec = world.sec
    admin = world.a[Role.TENANT_ADMIN]
    with pytest.raises(InvalidInput) as e:
        sec.apikeys.create(admin, name="old", expires_at=datetime.now(UTC) - timedelta(1))
    assert e.value.errors[0].loc == "expires_at"
    with pytest.raises(InvalidInput):
        sec.apikeys.create(admin, name="naive", expires_at=datetime(2100, 1, 1))
    new = sec.apikeys.create(admin, name="soon", expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert sec.authenticate(new.key).role is Role.TENANT_ADMIN
    with sec.db.session() as s:
        s.get_one(ApiKey, new.info.id).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    with pytest.raises(Unauthorized, match="expired"):
        sec.authenticate(new.key)


def test_last_used_is_written_at_most_once_a_minute(world: World) -> None:
    sec = world.sec
    new = sec.apikeys.create(world.a[Role.TENANT_ADMIN], name="k")

    def last_used() -> datetime | None:
        with sec.db.session() as s:
            return s.get_one(ApiKey, new.info.id).last_used_at

    assert last_used() is None
    sec.authenticate(new.key)
    first = last_used()
    assert first is not None
    sec.authenticate(new.key)
    assert last_used() == first  # within the minute: untouched
    with sec.db.session() as s:
        s.get_one(ApiKey, new.info.id).last_used_at = first - timedelta(minutes=2)
    sec.authenticate(new.key)
    later = last_used()
    assert later is not None and later > first - timedelta(minutes=2)
    assert later >= first


def test_key_role_never_exceeds_the_creator(world: World) -> None:
    sec = world.sec
    dev = world.a[Role.APP_DEVELOPER]
    assert sec.apikeys.create(dev, name="ro", role=Role.VIEWER).info.role is Role.VIEWER
    for role in (Role.OPERATOR, Role.ENGINEER, Role.TENANT_ADMIN, Role.PLATFORM_ADMIN):
        with pytest.raises(Forbidden):
            sec.apikeys.create(dev, name="up", role=role)
    admin = world.a[Role.TENANT_ADMIN]
    with pytest.raises(Forbidden):
        sec.apikeys.create(admin, name="up", role=Role.PLATFORM_ADMIN)


def test_roles_without_apikeys_write_cannot_create(world: World) -> None:
    for role in (Role.ENGINEER, Role.OPERATOR, Role.VIEWER):
        with pytest.raises(Forbidden, match="apikeys:write"):
            world.sec.apikeys.create(world.a[role], name="nope")


def test_api_keys_cannot_mint_keys(world: World) -> None:
    sec = world.sec
    key = sec.apikeys.create(world.a[Role.TENANT_ADMIN], name="automation").key
    with pytest.raises(Forbidden):
        sec.apikeys.create(sec.authenticate(key), name="child")


def test_scope_own_keys_and_tenant_admins(world: World) -> None:
    sec = world.sec
    dev_a = world.a[Role.APP_DEVELOPER]
    admin_a, admin_b = world.a[Role.TENANT_ADMIN], world.b[Role.TENANT_ADMIN]
    mine = sec.apikeys.create(dev_a, name="dev key").info
    admins = sec.apikeys.create(admin_a, name="admin key").info
    theirs = sec.apikeys.create(admin_b, name="b key").info
    # a developer sees and revokes only their own
    assert [k.id for k in sec.apikeys.list(dev_a)] == [mine.id]
    with pytest.raises(NotFound):
        sec.apikeys.revoke(dev_a, admins.id)
    # a tenant admin manages every key of the tenant, none of another
    assert {k.id for k in sec.apikeys.list(admin_a)} == {mine.id, admins.id}
    with pytest.raises(NotFound):
        sec.apikeys.revoke(admin_a, theirs.id)
    with pytest.raises(Forbidden):
        sec.apikeys.list(admin_a, tenant_id=world.tenant_b)
    assert sec.apikeys.revoke(admin_a, mine.id).revoked_at is not None
    # the platform admin sees all, or one tenant
    assert {k.id for k in sec.apikeys.list(world.platform)} == {admins.id, theirs.id}
    assert [k.id for k in sec.apikeys.list(world.platform, tenant_id=world.tenant_b)] == [theirs.id]


def test_platform_keys_and_tenant_keys(world: World) -> None:
    sec = world.sec
    p = world.platform
    platform_key = sec.apikeys.create(p, name="ops")
    assert platform_key.info.tenant_id is None
    assert sec.authenticate(platform_key.key).is_platform
    with pytest.raises(InvalidInput):
        sec.apikeys.create(p, name="viewer without tenant", role=Role.VIEWER)
    scoped = sec.apikeys.create(p, name="for a", role=Role.TENANT_ADMIN, tenant_id=world.tenant_a)
    principal = sec.authenticate(scoped.key)
    assert principal.tenant == world.tenant_a and principal.role is Role.TENANT_ADMIN


def test_keys_of_deactivated_users_stop_working(world: World) -> None:
    sec = world.sec
    dev = world.a[Role.APP_DEVELOPER]
    key = sec.apikeys.create(dev, name="k").key
    sec.users.update(world.a[Role.TENANT_ADMIN], dev.id, active=False)
    with pytest.raises(Unauthorized):
        sec.authenticate(key)
    sec.users.delete(world.a[Role.TENANT_ADMIN], dev.id)  # and vanish with their owner
    with pytest.raises(Unauthorized, match="invalid API key"):
        sec.authenticate(key)
