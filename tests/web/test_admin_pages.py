"""The administration pages over HTTP: users and roles (never granting above one's own role),
API keys and device tokens shown once, MQTT credentials, security events and blocks,
tenants, tenant profiles and usage (platform admins), and refusals for other roles."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tests.integration.conftest import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    Api,
    TenantWorld,
    make_settings,
)
from tests.web.test_console_access import CHEAP, csrf, sign_in
from yugong.api.app import create_app

HX = {"HX-Request": "true"}


class World:
    def __init__(self, app: Any, api: Api, plant: TenantWorld, other: TenantWorld) -> None:
        self.app, self.api, self.plant, self.other = app, api, plant, other

    def browser(self, username: str, password: str = USER_PASSWORD) -> TestClient:
        b = TestClient(self.app, base_url="https://testserver")
        assert sign_in(b, username, password).status_code == 303
        return b


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = make_settings(tmp_path_factory.mktemp("admin"), mqtt_embedded=False)
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver") as client:
        app.state.security.passwords.hasher = PasswordHasher(**CHEAP)
        api = Api(client)
        root = api.admin()
        plant = api.setup_tenant(root, "Admin Works")
        other = api.setup_tenant(root, "Admin Other")
        body = {
            "username": "adm-operator",
            "password": USER_PASSWORD,
            "role": "operator",
            "tenant_id": plant.tenant_id,
        }
        api.call("POST", "/api/v1/users", root, 201, json=body)
        yield World(app, api, plant, other)


def post(b: TestClient, path: str, data: dict[str, str] | None = None) -> Any:
    return b.post(path, data=data or {}, headers={**csrf(b), **HX})


def test_tenant_admin_creates_users_but_never_above_its_role(world: World) -> None:
    b = world.browser("admin-works-admin")
    page = b.get("/console/admin/users")
    assert page.status_code == 200
    assert 'value="engineer"' in page.text and 'value="platform_admin"' not in page.text
    assert 'aria-current="page"' in page.text and "用户与角色" in page.text

    made = post(
        b,
        "/console/admin/users",
        {"username": "adm-new", "password": USER_PASSWORD, "role": "engineer"},
    )
    assert made.status_code == 200 and "已创建用户 adm-new" in made.text
    assert 'data-username="adm-new"' in made.text
    # The audit log names who acted in the console, as it does for the API.
    entries, _ = world.app.state.security.audit.list(tenant_id=world.plant.tenant_id, limit=20)
    created = [e for e in entries if e.action == "users.create" and e.target_id]
    assert created and created[0].actor_name == "admin-works-admin"
    assert "<html" not in made.text  # htmx gets the section alone

    # A forged form asking for a platform admin is refused, shown in the page.
    forged = post(
        b,
        "/console/admin/users",
        {"username": "adm-root", "password": USER_PASSWORD, "role": "platform_admin"},
    )
    assert forged.status_code == 200 and 'role="alert"' in forged.text
    assert 'data-username="adm-root"' not in forged.text
    # A bad username is named beside its field; what was typed stays.
    bad = post(
        b, "/console/admin/users", {"username": "x!", "password": USER_PASSWORD, "role": "viewer"}
    )
    assert 'id="err-username"' in bad.text and 'value="x!"' in bad.text
    weak = post(
        b, "/console/admin/users", {"username": "adm-weak", "password": "a", "role": "viewer"}
    )
    assert 'id="err-password"' in weak.text

    users = world.api.call("GET", "/api/v1/users", world.plant.headers)
    new = next(u for u in users if u["username"] == "adm-new")
    changed = post(b, f"/console/admin/users/{new['id']}/role", {"role": "viewer"})
    assert "角色已更改" in changed.text
    off = post(b, f"/console/admin/users/{new['id']}/deactivate")
    assert "用户已停用" in off.text
    got = world.api.call("GET", f"/api/v1/users/{new['id']}", world.plant.headers)
    assert got["role"] == "viewer" and got["active"] is False
    # Another tenant's user is not found, whatever the action.
    others = world.api.call("GET", "/api/v1/users", world.other.headers)
    refused = post(b, f"/console/admin/users/{others[0]['id']}/delete")
    assert 'role="alert"' in refused.text
    gone = post(b, f"/console/admin/users/{new['id']}/delete")
    assert "用户已删除" in gone.text and 'data-username="adm-new"' not in gone.text


def test_api_key_is_shown_once_and_works(world: World) -> None:
    b = world.browser("admin-works-admin")
    made = post(b, "/console/admin/apikeys", {"name": "historian", "role": "viewer"})
    assert made.status_code == 200 and "已创建 API 密钥 historian" in made.text
    key = re.search(r'value="(ygk_[^"]+)"', made.text)
    assert key is not None
    headers = {"Authorization": f"Bearer {key.group(1)}"}
    world.api.call("GET", "/api/v1/devices", headers)
    again = b.get("/console/admin/apikeys")
    assert "historian" in again.text and key.group(1) not in again.text
    too_high = post(b, "/console/admin/apikeys", {"name": "root", "role": "platform_admin"})
    assert 'role="alert"' in too_high.text
    past = post(
        b, "/console/admin/apikeys", {"name": "old", "role": "viewer", "expires": "2001-01-01"}
    )
    assert 'id="err-kexp"' in past.text

    keys = world.api.call("GET", "/api/v1/apikeys", world.plant.headers)
    kid = next(k["id"] for k in keys if k["name"] == "historian")
    revoked = post(b, f"/console/admin/apikeys/{kid}/revoke")
    assert "已吊销" in revoked.text
    world.api.call("GET", "/api/v1/devices", headers, 401)


def test_device_token_rotated_and_mqtt_credentials(world: World) -> None:
    b = world.browser("admin-works-admin")
    dev = world.plant.device_id
    page = b.get(f"/console/admin/credentials?device={dev}")
    assert page.status_code == 200 and f'data-device="{dev}"' in page.text
    rotated = post(b, f"/console/admin/credentials/{dev}/token")
    token = re.search(r'id="new-token" readonly size="40" value="([^"]+)"', rotated.text)
    assert token is not None and token.group(1) != world.plant.token
    body = {"temperature": 21.5}
    world.api.call("POST", f"/api/v1/{world.plant.token}/telemetry", None, 401, json=body)
    world.api.call("POST", f"/api/v1/{token.group(1)}/telemetry", None, (200, 202), json=body)
    world.plant.token = token.group(1)

    short = post(b, f"/console/admin/credentials/{dev}/mqtt", {"username": "m1", "password": "x"})
    assert 'id="err-mpass"' in short.text
    mqtt = {"username": "adm-m1", "password": "long-enough-pw"}
    ok = post(b, f"/console/admin/credentials/{dev}/mqtt", mqtt)
    assert "已设置 MQTT" in ok.text and 'data-kinds="token,mqtt"' in ok.text
    fp = "ab" * 32
    bound = post(b, f"/console/admin/credentials/{dev}/x509", {"fingerprint": fp})
    assert fp in bound.text and "x509" in bound.text
    post(b, f"/console/admin/credentials/{dev}/x509_delete")
    removed = post(b, f"/console/admin/credentials/{dev}/mqtt_delete")
    assert 'data-kinds="token"' in removed.text
    # Another tenant's device is not found.
    foreign = b.get(f"/console/admin/credentials?device={world.other.device_id}")
    assert 'role="alert"' in foreign.text and "data-device=" not in foreign.text


def test_security_events_are_listed_and_filtered(world: World) -> None:
    wrong = TestClient(world.app, base_url="https://testserver")
    sign_in(wrong, "admin-works-admin", "not-the-password")
    b = world.browser("admin-works-admin")
    page = b.get("/console/admin/security")
    assert page.status_code == 200 and 'data-kind="login_failed"' in page.text
    only = b.get("/console/admin/security?severity=critical")
    assert 'data-kind="login_failed"' not in only.text
    kind = b.get("/console/admin/security?kind=login_failed")
    assert 'data-kind="login_failed"' in kind.text
    # The other tenant's admin does not see this tenant's events.
    other = world.browser("admin-other-admin").get("/console/admin/security")
    assert 'data-kind="login_failed"' not in other.text


def test_blocks_are_listed_and_lifted(world: World) -> None:
    root = world.api.admin()
    body = {"kind": "device", "value": str(world.plant.device_id), "reason": "test"}
    block = world.api.call("POST", "/api/v1/security/blocks", root, 201, json=body)
    b = world.browser("admin-works-admin")
    assert f'id="block-{block["id"]}"' in b.get("/console/admin/security").text
    lifted = post(b, f"/console/admin/security/blocks/{block['id']}/lift")
    assert "已解除" in lifted.text and f'id="block-{block["id"]}"' not in lifted.text


@pytest.mark.parametrize(
    "path",
    [
        "/console/admin",
        "/console/admin/users",
        "/console/admin/apikeys",
        "/console/admin/credentials",
        "/console/admin/security",
        "/console/admin/tenants",
    ],
)
def test_an_operator_is_refused(world: World, path: str) -> None:
    b = world.browser("adm-operator")
    page = b.get(path)
    assert page.status_code == 403 and "无权访问" in page.text
    assert 'href="/console/admin"' not in b.get("/console/").text


def test_an_operator_cannot_act_either(world: World) -> None:
    b = world.browser("adm-operator")
    made = post(
        b,
        "/console/admin/users",
        {"username": "op-made", "password": USER_PASSWORD, "role": "viewer"},
    )
    assert made.status_code == 403
    assert post(b, f"/console/admin/credentials/{world.plant.device_id}/token").status_code == 403


def test_tenant_admin_sees_usage_but_not_tenants(world: World) -> None:
    b = world.browser("admin-works-admin")
    home = b.get("/console/admin")
    assert home.status_code == 200 and 'data-usage="devices"' in home.text
    assert 'href="/console/admin/tenants"' not in home.text
    assert 'href="/console/audit"' in home.text  # the audit log stays where it is
    assert b.get("/console/admin/tenants").status_code == 403
    assert b.get("/console/admin/profiles").status_code == 403


def test_platform_admin_manages_tenants_and_profiles(world: World) -> None:
    b = world.browser("admin", ADMIN_PASSWORD)
    tenants = b.get("/console/admin/tenants")
    assert tenants.status_code == 200 and "Admin Works" in tenants.text
    profile = post(
        b, "/console/admin/profiles", {"name": "Small", "max_devices": "5", "points_per_s": "2.5"}
    )
    assert "已创建配置 Small" in profile.text
    bad = post(b, "/console/admin/profiles", {"name": "Bad", "max_users": "lots"})
    assert 'id="err-pn-max_users"' in bad.text and 'value="lots"' in bad.text
    profiles = world.api.call("GET", "/api/v1/tenant-profiles", world.api.admin())
    small = next(p for p in profiles if p["name"] == "Small")
    assert small["max_devices"] == 5 and small["points_per_s"] == 2.5

    made = post(
        b,
        "/console/admin/tenants",
        {"name": "Steel Mill", "industry": "steel", "profile_id": str(small["id"])},
    )
    assert "已创建租户 Steel Mill" in made.text
    dup = post(b, "/console/admin/tenants", {"name": "Steel Mill"})
    assert 'id="err-tname"' in dup.text
    mill = next(
        t
        for t in world.api.call("GET", "/api/v1/tenants", world.api.admin())["items"]
        if t["name"] == "Steel Mill"
    )
    assert mill["industry"] == "steel" and mill["profile_id"] == small["id"]

    page = b.get(f"/console/admin/tenants/{mill['id']}")
    assert page.status_code == 200 and 'data-usage="devices"' in page.text
    row = re.search(r'data-usage="devices">.*?</tr>', page.text, re.S)
    assert row is not None and "<td>0</td><td>5</td>" in row.group(0)
    edited = post(
        b,
        f"/console/admin/tenants/{mill['id']}",
        {"name": "Steel Mill", "industry": "metals", "profile_id": "", "active": "on"},
    )
    assert "已保存" in edited.text
    again = world.api.call("GET", f"/api/v1/tenants/{mill['id']}", world.api.admin())
    assert again["industry"] == "metals" and again["profile_id"] is None

    edit = post(b, f"/console/admin/profiles/{small['id']}", {"name": "Small", "max_devices": ""})
    assert "已保存" in edit.text
    assert (
        world.api.call("GET", f"/api/v1/tenant-profiles/{small['id']}", world.api.admin())[
            "max_devices"
        ]
        is None
    )
    assert b.get("/console/admin/tenants/999999").status_code == 404
