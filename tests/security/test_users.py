"""User administration: the permission matrix and tenant scope enforced in the service."""

from __future__ import annotations

import pytest

from yugong.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from yugong.security.permissions import allowed
from yugong.security.principal import Role

from .conftest import PASSWORD, World, add_tenant


def test_only_users_write_roles_can_create(world: World) -> None:
    users = world.sec.users
    for role, p in world.a.items():
        name = f"new-by-{role.value}"
        if allowed(role, "users:write"):
            info = users.create(p, username=name, password=PASSWORD, role=Role.VIEWER)
            assert info.tenant_id == world.tenant_a and info.role is Role.VIEWER
        else:
            with pytest.raises(Forbidden, match="users:write"):
                users.create(p, username=name, password=PASSWORD, role=Role.VIEWER)


def test_every_tenant_role_reads_its_own_tenant_only(world: World) -> None:
    users = world.sec.users
    for p in world.a.values():
        listed = users.list(p)
        assert {u.tenant_id for u in listed} == {world.tenant_a}
        assert {u.username for u in listed} >= {f"a-{r.value}" for r in world.a}
    # platform admin sees all, or one tenant on request
    assert {u.tenant_id for u in users.list(world.platform)} == {
        None,
        world.tenant_a,
        world.tenant_b,
    }
    assert {u.tenant_id for u in users.list(world.platform, tenant_id=world.tenant_b)} == {
        world.tenant_b
    }


def test_tenant_admin_cannot_reach_another_tenant(world: World) -> None:
    users = world.sec.users
    admin_a = world.a[Role.TENANT_ADMIN]
    victim = world.b[Role.VIEWER]
    with pytest.raises(Forbidden):
        users.list(admin_a, tenant_id=world.tenant_b)
    with pytest.raises(Forbidden):
        users.create(
            admin_a,
            username="intruder",
            password=PASSWORD,
            role=Role.VIEWER,
            tenant_id=world.tenant_b,
        )
    with pytest.raises(NotFound):
        users.get(admin_a, victim.id)
    with pytest.raises(NotFound):
        users.update(admin_a, victim.id, active=False)
    with pytest.raises(NotFound):
        users.update(admin_a, victim.id, password="taken over now")
    with pytest.raises(NotFound):
        users.delete(admin_a, victim.id)
    with pytest.raises(NotFound):  # platform admins are not in a tenant either
        users.get(admin_a, world.platform.id)
    assert users.get(world.platform, victim.id).active


def test_no_one_grants_more_than_they_hold(world: World) -> None:
    users = world.sec.users
    admin_a = world.a[Role.TENANT_ADMIN]
    with pytest.raises(Forbidden):
        users.create(admin_a, username="boss", password=PASSWORD, role=Role.PLATFORM_ADMIN)
    peer = users.create(admin_a, username="peer-admin", password=PASSWORD, role=Role.TENANT_ADMIN)
    assert peer.role is Role.TENANT_ADMIN
    with pytest.raises(Forbidden):
        users.update(admin_a, world.a[Role.VIEWER].id, role=Role.PLATFORM_ADMIN)
    with pytest.raises(Forbidden, match="own role"):
        users.update(admin_a, admin_a.id, role=Role.VIEWER)
    with pytest.raises(Forbidden):
        users.update(admin_a, admin_a.id, active=False)
    with pytest.raises(Forbidden):
        users.delete(admin_a, admin_a.id)


def test_platform_admin_places_users(world: World) -> None:
    users = world.sec.users
    p = world.platform
    with pytest.raises(InvalidInput) as e:
        users.create(p, username="floating", password=PASSWORD, role=Role.VIEWER)
    assert e.value.errors[0].loc == "tenant_id"
    with pytest.raises(InvalidInput):
        users.create(
            p,
            username="odd-admin",
            password=PASSWORD,
            role=Role.PLATFORM_ADMIN,
            tenant_id=world.tenant_a,
        )
    with pytest.raises(NotFound):
        users.create(p, username="ghost", password=PASSWORD, role=Role.VIEWER, tenant_id=9999)
    second = users.create(p, username="root2", password=PASSWORD, role=Role.PLATFORM_ADMIN)
    assert second.tenant_id is None
    with pytest.raises(InvalidInput):  # a tenant user cannot become platform admin
        users.update(p, world.a[Role.VIEWER].id, role=Role.PLATFORM_ADMIN)
    assert users.count_platform_admins() == 2


def test_bad_input_names_the_field(world: World) -> None:
    users = world.sec.users
    admin = world.a[Role.TENANT_ADMIN]
    cases = [
        (dict(username="x"), "username"),
        (dict(username="has space"), "username"),
        (dict(username="okname", password="short"), "password"),
        (dict(username="okname", password="okname-and-more"), "password"),
        (dict(username="okname", email="not-an-email"), "email"),
        (dict(username="okname", locale="fr"), "locale"),
        (dict(username="okname", role="wizard"), "role"),
    ]
    for overrides, loc in cases:
        args: dict = dict(password=PASSWORD, role=Role.VIEWER) | overrides
        with pytest.raises(InvalidInput) as e:
            users.create(admin, **args)
        assert e.value.errors[0].loc == loc, (overrides, e.value)
    with pytest.raises(Conflict):
        users.create(admin, username="b-viewer", password=PASSWORD, role=Role.VIEWER)


def test_update_and_delete(world: World) -> None:
    users = world.sec.users
    admin = world.a[Role.TENANT_ADMIN]
    u = users.create(
        admin,
        username="carol",
        password=PASSWORD,
        role=Role.OPERATOR,
        email="carol@example.com",
        display_name="Carol",
        locale="en",
    )
    assert (u.email, u.display_name, u.locale) == ("carol@example.com", "Carol", "en")
    u = users.update(admin, u.id, display_name="卡罗尔", email="", role=Role.ENGINEER)
    assert (u.display_name, u.email, u.role) == ("卡罗尔", None, Role.ENGINEER)
    users.update(admin, u.id, password="reset by admin 1")
    world.sec.sessions.login("carol", "reset by admin 1")
    users.delete(admin, u.id)
    with pytest.raises(NotFound):
        users.get(admin, u.id)


def test_everyone_manages_their_own_profile(world: World) -> None:
    users = world.sec.users
    viewer = world.a[Role.VIEWER]
    assert users.get(viewer, viewer.id).username == "a-viewer"
    me = users.update_me(viewer, locale="en", display_name="Vee")
    assert (me.locale, me.display_name) == ("en", "Vee")
    with pytest.raises(Forbidden):
        users.update(viewer, viewer.id, locale="zh-CN")
    with pytest.raises(InvalidInput) as e:
        users.change_password(viewer, "wrong current", "a new passphrase")
    assert e.value.errors[0].loc == "current_password"
    with pytest.raises(InvalidInput) as e:
        users.change_password(viewer, PASSWORD, "short")
    assert e.value.errors[0].loc == "new_password"
    with pytest.raises(InvalidInput):
        users.change_password(viewer, PASSWORD, PASSWORD)


def test_deleting_a_tenant_removes_its_users(world: World) -> None:
    from yugong.platform.registry.models import Tenant

    tc = add_tenant(world.sec.db, "c")
    u = world.sec.users.create(
        world.platform, username="c-user", password=PASSWORD, role=Role.VIEWER, tenant_id=tc
    )
    with world.sec.db.session() as s:
        s.delete(s.get(Tenant, tc))
    with pytest.raises(NotFound):
        world.sec.users.get(world.platform, u.id)
