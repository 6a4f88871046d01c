"""The console over HTTP: sign-in (failure, lockout, second factor), pages by role, tenant
scope, the language switch remembered per user, and catalogs that cover every template."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tests.integration.conftest import ADMIN_PASSWORD, USER_PASSWORD, Api, make_settings
from yugong.api.app import create_app
from yugong.api.csrf import CSRF_COOKIE
from yugong.security.principal import Role
from yugong.security.totp import code_at, current_step
from yugong.web.console import NAV

WEB = Path(__file__).resolve().parents[2] / "src" / "yugong" / "web"
CHEAP = {"time_cost": 1, "memory_cost": 8, "parallelism": 1}


class World:
    def __init__(self, app: Any, client: TestClient, api: Api, tenant: dict) -> None:
        self.app, self.client, self.api, self.tenant = app, client, api, tenant

    def browser(self) -> TestClient:
        """A fresh cookie jar on the same app, as a second browser would be."""
        return TestClient(self.app, base_url="https://testserver")


def sign_in(client: TestClient, username: str, password: str, **extra: str) -> Any:
    body = {"username": username, "password": password, **extra}
    return client.post("/console/login", data=body, follow_redirects=False)


def csrf(client: TestClient) -> dict[str, str]:
    return {"X-CSRF-Token": client.cookies.get(CSRF_COOKIE) or ""}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = make_settings(tmp_path_factory.mktemp("console"), mqtt_embedded=False)
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver") as client:
        app.state.security.passwords.hasher = PasswordHasher(**CHEAP)
        api = Api(client)
        root = api.admin()
        tenant = api.call("POST", "/api/v1/tenants", root, 201, json={"name": "Console Works"})
        for role in Role:
            if role is Role.PLATFORM_ADMIN:
                continue
            body = {
                "username": f"c-{role.value.replace('_', '-')}",
                "password": USER_PASSWORD,
                "role": role.value,
                "tenant_id": tenant["id"],
            }
            api.call("POST", "/api/v1/users", root, 201, json=body)
        yield World(app, client, api, tenant)


def test_sign_in_and_out(world: World) -> None:
    b = world.browser()
    page = b.get("/console/devices", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/console/login?next=/console/devices"
    form = b.get(page.headers["location"])
    assert 'name="password"' in form.text and "登录" in form.text  # Chinese by default

    wrong = sign_in(b, "c-viewer", "not-the-password", next="/console/devices")
    assert wrong.status_code == 401 and "用户名或密码错误" in wrong.text
    ok = sign_in(b, "c-viewer", USER_PASSWORD, next="/console/devices")
    assert ok.status_code == 303 and ok.headers["location"] == "/console/devices"
    assert "设备" in b.get("/console/devices").text
    # A next pointing away from the console is not followed.
    away = sign_in(world.browser(), "c-viewer", USER_PASSWORD, next="https://evil.example/")
    assert away.headers["location"] == "/console/"

    out = b.post("/console/logout", headers={**csrf(b), "HX-Request": "true"})
    assert out.status_code == 204 and out.headers["HX-Redirect"] == "/console/login"
    assert b.get("/console/devices", follow_redirects=False).status_code == 303


def test_unsafe_requests_need_the_csrf_token(world: World) -> None:
    b = world.browser()
    sign_in(b, "c-operator", USER_PASSWORD)
    refused = b.post("/console/language", data={"locale": "en"})
    assert refused.status_code == 403 and "CSRF" in refused.text


def test_lockout_and_second_factor(world: World) -> None:
    api, root = world.api, world.api.admin()
    body = {
        "username": "c-locked",
        "password": USER_PASSWORD,
        "role": "viewer",
        "tenant_id": world.tenant["id"],
    }
    api.call("POST", "/api/v1/users", root, 201, json=body)
    b = world.browser()
    for _ in range(world.app.state.settings.login_lockout_after):
        sign_in(b, "c-locked", "wrong-password-x")
    locked = sign_in(b, "c-locked", USER_PASSWORD)
    assert locked.status_code == 429 and "分钟后再试" in locked.text

    user = {
        "username": "c-totp",
        "password": USER_PASSWORD,
        "role": "viewer",
        "tenant_id": world.tenant["id"],
    }
    api.call("POST", "/api/v1/users", root, 201, json=user)
    h = api.login("c-totp", USER_PASSWORD)
    secret = api.call("POST", "/api/v1/auth/totp/setup", h)["secret"]
    step = current_step()
    api.call("POST", "/api/v1/auth/totp/enable", h, json={"code": code_at(secret, step)})
    b = world.browser()
    asked = sign_in(b, "c-totp", USER_PASSWORD)
    assert asked.status_code == 200 and 'name="code"' in asked.text
    bad = sign_in(b, "c-totp", USER_PASSWORD, code="000000")
    assert 'name="code"' in bad.text and "验证码不正确" in bad.text
    # The enabling code is spent: the next step's code (allowed drift) signs in.
    good = sign_in(b, "c-totp", USER_PASSWORD, code=code_at(secret, step + 1))
    assert good.status_code == 303


@pytest.mark.parametrize("role", [r for r in Role if r is not Role.PLATFORM_ADMIN])
def test_pages_follow_the_permission_matrix(world: World, role: Role) -> None:
    from yugong.security.permissions import allowed

    b = world.browser()
    assert sign_in(b, f"c-{role.value.replace('_', '-')}", USER_PASSWORD).status_code == 303
    home = b.get("/console/").text
    for item in NAV:
        page = b.get(item.path)
        if allowed(role, item.action):
            assert page.status_code == 200, f"{role} {item.path}: {page.status_code}"
            assert f'href="{item.path}"' in home
        else:
            assert page.status_code == 403, f"{role} {item.path}: {page.status_code}"
            assert "无权访问" in page.text
            assert f'href="{item.path}"' not in home  # not offered in the menu either


def test_platform_admin_picks_a_tenant(world: World) -> None:
    b = world.browser()
    sign_in(b, "admin", ADMIN_PASSWORD)
    page = b.get(f"/console/devices?tenant={world.tenant['id']}")
    assert page.status_code == 200
    assert f'<option value="{world.tenant["id"]}" selected>Console Works</option>' in page.text


def test_language_is_remembered_per_user(world: World) -> None:
    b = world.browser()
    sign_in(b, "c-engineer", USER_PASSWORD)
    assert "工厂总览" in b.get("/console/").text
    switched = b.post(
        "/console/language", data={"locale": "en"}, headers=csrf(b), follow_redirects=False
    )
    assert switched.status_code == 303
    assert "Plant overview" in b.get("/console/").text
    # Another browser without the cookie: the saved choice follows the user.
    other = world.browser()
    sign_in(other, "c-engineer", USER_PASSWORD)
    assert "Plant overview" in other.get("/console/").text
    bad = b.post("/console/language", data={"locale": "fr"}, headers=csrf(b))
    assert bad.status_code == 422
    b.post("/console/language", data={"locale": "zh-CN"}, headers=csrf(b))


def test_another_tenants_device_is_not_found(world: World) -> None:
    api, root = world.api, world.api.admin()
    other = api.setup_tenant(root, "Console Other")
    b = world.browser()
    sign_in(b, "c-viewer", USER_PASSWORD)
    page = b.get(f"/console/devices/{other.device_id}")
    assert page.status_code == 404 and "未找到" in page.text


# Catalogs ---------------------------------------------------------------------------------

KEY_CALL = re.compile(r"""\bt\(\s*["']([a-z_][a-z0-9_.]*[a-z0-9])["']""")
PREFIX_CALL = re.compile(r"""\bt\(\s*["']([a-z_.]+[._])["']\s*~""")
# Text a template may show as it is: language names in their own language, symbols.
ALLOWED_TEXT = {"简体中文", "English", "—", "·", "(", ")", "#", "%"}


def catalogs() -> dict[str, dict[str, str]]:
    from yugong.web.i18n import catalog

    return {d.name: dict(catalog(d.name)) for d in (WEB / "i18n").iterdir() if d.is_dir()}


def test_every_part_is_translated_in_both_languages() -> None:
    parts = {loc: {p.name for p in (WEB / "i18n" / loc).glob("*.json")} for loc in ("en", "zh-CN")}
    assert parts["en"] == parts["zh-CN"]
    for name in parts["en"]:
        en = json.loads((WEB / "i18n" / "en" / name).read_text("utf-8"))
        zh = json.loads((WEB / "i18n" / "zh-CN" / name).read_text("utf-8"))
        assert set(en) == set(zh), f"{name}: {sorted(set(en) ^ set(zh))}"


def test_catalogs_hold_the_same_keys_and_placeholders() -> None:
    cats = catalogs()
    assert set(cats) == {"en", "zh-CN"}
    assert set(cats["en"]) == set(cats["zh-CN"])
    for key, text in cats["en"].items():
        assert set(re.findall(r"{(\w+)}", text)) == set(
            re.findall(r"{(\w+)}", cats["zh-CN"][key])
        ), key


def test_every_text_used_is_in_the_catalogs() -> None:
    keys = set(catalogs()["en"])
    sources = [
        *(WEB / "templates").glob("*.html"),
        *(WEB / "pages").glob("*.py"),
        WEB / "console.py",
    ]
    used = {k for f in sources for k in KEY_CALL.findall(f.read_text("utf-8"))}
    assert used, "no t() calls found"
    assert not used - keys, f"missing from the catalogs: {sorted(used - keys)}"
    for prefix in {p for f in sources for p in PREFIX_CALL.findall(f.read_text("utf-8"))}:
        assert any(k.startswith(prefix) for k in keys), prefix


def test_templates_write_no_text_of_their_own() -> None:
    for template in (WEB / "templates").glob("*.html"):
        html = template.read_text("utf-8")
        html = re.sub(r"{#.*?#}|{%.*?%}|{{.*?}}", " ", html, flags=re.S)
        html = re.sub(r"<(script|style)\b.*?</\1>", " ", html, flags=re.S)
        text = re.sub(r"<[^>]+>", " ", html)
        words = [w for w in text.split() if w not in ALLOWED_TEXT and re.search(r"\w", w)]
        assert not words, f"{template.name} writes text outside the catalogs: {words[:10]}"
        for attr in re.findall(r'(?:placeholder|aria-label|title|alt)="([^"{]+)"', html):
            assert not attr.strip(), f"{template.name}: untranslated attribute {attr!r}"
