"""The auth, users and API-key routers over HTTP, on a small app with SQLite."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyotp
import pytest
from argon2 import PasswordHasher
from argon2.profiles import CHEAPEST
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from yugong.api import problems
from yugong.api.routers import apikeys, auth, users
from yugong.core.settings import Settings
from yugong.infra.db import Database
from yugong.infra.migrate import upgrade
from yugong.platform.registry.models import Tenant
from yugong.security.bootstrap import ensure_platform_admin
from yugong.security.context import RequestContextMiddleware
from yugong.security.models import ApiKey, SecurityEvent
from yugong.security.passwords import Passwords
from yugong.security.principal import SYSTEM, Role
from yugong.security.service import Security

API = "/api/v1"
PW = "correct horse battery"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[FastAPI]:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    upgrade(url)
    db = Database(url)
    settings = Settings(data_dir=tmp_path, secret_key="s" * 40, admin_password="root password 1")
    hasher = PasswordHasher.from_parameters(CHEAPEST)
    ensure_platform_admin(db, settings, passwords=Passwords(hasher))
    sec = Security(db, settings, hasher=hasher)
    with db.session() as s:
        s.add_all([Tenant(name="A", slug="a"), Tenant(name="B", slug="b")])
    for tenant, prefix in ((1, "a"), (2, "b")):
        for role in (Role.TENANT_ADMIN, Role.VIEWER, Role.APP_DEVELOPER):
            sec.users.create(
                SYSTEM, username=f"{prefix}-{role.value}", password=PW, role=role, tenant_id=tenant
            )
    application = FastAPI()
    application.add_middleware(RequestContextMiddleware)
    problems.install(application)
    for module in (auth, users, apikeys):
        application.include_router(module.router, prefix=API)
    application.state.settings = settings
    application.state.db = db
    application.state.security = sec
    yield application
    db.dispose()


@pytest.fixture
def client(app: FastAPI) -> TestClient:
    return TestClient(app)


def login(client: TestClient, username: str, password: str = PW) -> dict:
    r = client.post(f"{API}/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return r.json()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def as_user(client: TestClient, username: str) -> dict[str, str]:
    return bearer(login(client, username)["access_token"])


def assert_problem(r, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["detail"]
    return body


# Auth ----------------------------------------------------------------------------------------


def test_login_and_me(client: TestClient) -> None:
    tokens = login(client, "admin", "root password 1")
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] == 1800
    me = client.get(f"{API}/auth/me", headers=bearer(tokens["access_token"])).json()
    assert me["kind"] == "user" and me["role"] == "platform_admin" and me["tenant_id"] is None
    assert "tenants:write" in me["permissions"]
    viewer = client.get(f"{API}/auth/me", headers=as_user(client, "a-viewer")).json()
    assert viewer["tenant_id"] == 1 and "users:write" not in viewer["permissions"]


def test_failed_login_is_generic_401(client: TestClient) -> None:
    for username, password in (("a-viewer", "wrong password"), ("nobody", PW)):
        r = client.post(f"{API}/auth/login", json={"username": username, "password": password})
        body = assert_problem(r, 401)
        assert body["detail"] == "invalid username or password"
        assert r.headers["www-authenticate"] == "Bearer"
    r = client.post(f"{API}/auth/login", json={"username": "a-viewer"})
    assert assert_problem(r, 422)["errors"][0]["loc"] == "body.password"


def test_oauth2_form_login(client: TestClient) -> None:
    r = client.post(f"{API}/auth/token", data={"username": "a-viewer", "password": PW})
    assert r.status_code == 200, r.text
    assert client.get(f"{API}/auth/me", headers=bearer(r.json()["access_token"])).status_code == 200
    r = client.post(f"{API}/auth/token", data={"username": "a-viewer", "password": "nope"})
    assert_problem(r, 401)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
        {"Authorization": "Bearer not-a-token"},
        {"Authorization": "Bearer ygk_abcdefgh_nope"},
        {"X-API-Key": "ygk_abcdefgh_nope"},
    ],
)
def test_missing_or_bad_credentials_401(client: TestClient, headers: dict[str, str]) -> None:
    r = client.get(f"{API}/auth/me", headers=headers)
    assert_problem(r, 401)
    assert r.headers["www-authenticate"] == "Bearer"


def test_refresh_rotation_and_reuse_over_http(client: TestClient) -> None:
    first = login(client, "a-viewer")
    r = client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert r.status_code == 200, r.text
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    r = client.post(f"{API}/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert_problem(r, 401)
    r = client.post(f"{API}/auth/refresh", json={"refresh_token": second["refresh_token"]})
    assert_problem(r, 401)  # the family is gone


def test_logout(client: TestClient) -> None:
    tokens = login(client, "a-viewer")
    r = client.post(
        f"{API}/auth/logout",
        json={"refresh_token": tokens["refresh_token"]},
        headers=bearer(tokens["access_token"]),
    )
    assert r.status_code == 204
    r = client.post(f"{API}/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_problem(r, 401)
    other = login(client, "a-viewer")
    assert (
        client.post(f"{API}/auth/logout", headers=bearer(other["access_token"])).status_code == 204
    )
    r = client.post(f"{API}/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert_problem(r, 401)


# Users ---------------------------------------------------------------------------------------


def test_user_crud_by_tenant_admin(client: TestClient) -> None:
    h = as_user(client, "a-tenant_admin")
    r = client.post(
        f"{API}/users",
        headers=h,
        json={
            "username": "dave",
            "password": "plant floor passphrase",
            "role": "operator",
            "email": "dave@example.com",
            "locale": "en",
        },
    )
    assert r.status_code == 201, r.text
    dave = r.json()
    assert dave["tenant_id"] == 1 and "password_hash" not in dave and "password" not in dave
    names = {u["username"] for u in client.get(f"{API}/users", headers=h).json()}
    assert names == {"a-tenant_admin", "a-viewer", "a-app_developer", "dave"}
    r = client.patch(f"{API}/users/{dave['id']}", headers=h, json={"role": "engineer"})
    assert r.json()["role"] == "engineer"
    assert client.get(f"{API}/users/{dave['id']}", headers=h).json()["email"] == "dave@example.com"
    assert client.delete(f"{API}/users/{dave['id']}", headers=h).status_code == 204
    assert_problem(client.get(f"{API}/users/{dave['id']}", headers=h), 404)


def test_user_rules_enforced_over_http(client: TestClient) -> None:
    admin_a = as_user(client, "a-tenant_admin")
    viewer = as_user(client, "a-viewer")
    new = {"username": "eve", "password": "eve's passphrase", "role": "viewer"}
    assert_problem(client.post(f"{API}/users", headers=viewer, json=new), 403)
    body = assert_problem(
        client.post(f"{API}/users", headers=admin_a, json=new | {"password": "short"}), 422
    )
    assert body["errors"][0]["loc"] == "password"
    body = assert_problem(
        client.post(f"{API}/users", headers=admin_a, json=new | {"role": "wizard"}), 422
    )
    assert body["errors"][0]["loc"] == "body.role"
    assert_problem(
        client.post(f"{API}/users", headers=admin_a, json=new | {"role": "platform_admin"}), 403
    )
    assert_problem(client.post(f"{API}/users", headers=admin_a, json=new | {"tenant_id": 2}), 403)
    b_users = client.get(f"{API}/users", headers=as_user(client, "b-tenant_admin")).json()
    b_viewer = next(u for u in b_users if u["username"] == "b-viewer")
    assert_problem(client.get(f"{API}/users/{b_viewer['id']}", headers=admin_a), 404)
    assert_problem(client.get(f"{API}/users", headers=admin_a, params={"tenant_id": 2}), 403)
    root = bearer(login(client, "admin", "root password 1")["access_token"])
    r = client.get(f"{API}/users", headers=root, params={"tenant_id": 2})
    assert {u["tenant_id"] for u in r.json()} == {2}


def test_own_profile_and_password(client: TestClient) -> None:
    tokens = login(client, "a-viewer")
    h = bearer(tokens["access_token"])
    assert client.get(f"{API}/users/me", headers=h).json()["username"] == "a-viewer"
    r = client.patch(f"{API}/users/me", headers=h, json={"locale": "en", "display_name": "V"})
    assert r.json()["locale"] == "en"
    body = assert_problem(client.patch(f"{API}/users/me", headers=h, json={"locale": "fr"}), 422)
    assert body["errors"][0]["loc"] == "body.locale"
    r = client.post(
        f"{API}/users/me/password",
        headers=h,
        json={"current_password": PW, "new_password": "a fresh passphrase"},
    )
    assert r.status_code == 200, r.text
    fresh = r.json()
    assert_problem(client.get(f"{API}/auth/me", headers=h), 401)  # old token is dead
    assert client.get(f"{API}/auth/me", headers=bearer(fresh["access_token"])).status_code == 200
    login(client, "a-viewer", "a fresh passphrase")


# API keys ------------------------------------------------------------------------------------


def test_api_key_lifecycle_over_http(client: TestClient) -> None:
    h = as_user(client, "a-app_developer")
    r = client.post(f"{API}/apikeys", headers=h, json={"name": "grafana", "role": "viewer"})
    assert r.status_code == 201, r.text
    created = r.json()
    key = created["key"]
    assert key.startswith("ygk_" + created["prefix"] + "_")
    listed = client.get(f"{API}/apikeys", headers=h).json()
    assert [k["prefix"] for k in listed] == [created["prefix"]]
    assert "key" not in listed[0] and "secret_hash" not in listed[0]
    for headers in ({"X-API-Key": key}, bearer(key)):
        me = client.get(f"{API}/auth/me", headers=headers).json()
        assert me["kind"] == "api_key" and me["role"] == "viewer" and me["tenant_id"] == 1
    assert client.get(f"{API}/apikeys", headers=h).json()[0]["last_used_at"] is not None
    r = client.get(f"{API}/auth/me", headers={"X-API-Key": key, **as_user(client, "a-viewer")})
    assert_problem(r, 401)  # two credentials at once: ambiguous
    r = client.delete(f"{API}/apikeys/{created['id']}", headers=h)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert_problem(client.get(f"{API}/auth/me", headers={"X-API-Key": key}), 401)


def test_api_key_rules_over_http(client: TestClient) -> None:
    dev = as_user(client, "a-app_developer")
    assert_problem(
        client.post(f"{API}/apikeys", headers=dev, json={"name": "x", "role": "tenant_admin"}), 403
    )
    assert_problem(
        client.post(f"{API}/apikeys", headers=as_user(client, "a-viewer"), json={"name": "x"}), 403
    )
    body = assert_problem(
        client.post(
            f"{API}/apikeys", headers=dev, json={"name": "x", "expires_at": "2000-01-01T00:00:00Z"}
        ),
        422,
    )
    assert body["errors"][0]["loc"] == "expires_at"
    theirs = client.post(
        f"{API}/apikeys", headers=as_user(client, "b-tenant_admin"), json={"name": "b"}
    ).json()
    assert_problem(
        client.delete(f"{API}/apikeys/{theirs['id']}", headers=as_user(client, "a-tenant_admin")),
        404,
    )
    # a key can read but not write users when its role says so
    viewer_key = client.post(
        f"{API}/apikeys", headers=dev, json={"name": "ro", "role": "viewer"}
    ).json()["key"]
    kh = {"X-API-Key": viewer_key}
    assert client.get(f"{API}/users", headers=kh).status_code == 200
    assert_problem(
        client.post(
            f"{API}/users",
            headers=kh,
            json={"username": "zed", "password": "zed passphrase", "role": "viewer"},
        ),
        403,
    )


def test_openapi_declares_the_auth_schemes(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} >= {"http", "apiKey"}
    assert schema["paths"]["/api/v1/auth/me"]["get"]["security"]


# Lockout, TOTP, sessions -------------------------------------------------------------------


def user_id(client: TestClient, username: str) -> int:
    users = client.get(f"{API}/users", headers=as_user(client, "a-tenant_admin")).json()
    return next(u["id"] for u in users if u["username"] == username)


def totp_code(secret: str, ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * ahead)


def test_lockout_over_http(client: TestClient, app: FastAPI) -> None:
    uid = user_id(client, "a-viewer")
    admin = as_user(client, "a-tenant_admin")
    for name in ("a-viewer", "ghost"):
        for _ in range(5):
            r = client.post(f"{API}/auth/login", json={"username": name, "password": "nope"})
            assert assert_problem(r, 401)["detail"] == "invalid username or password"
    answers = [
        client.post(f"{API}/auth/login", json={"username": name, "password": PW})
        for name in ("a-viewer", "ghost")
    ]
    bodies = [assert_problem(r, 429) for r in answers]
    for r, body in zip(answers, bodies, strict=True):
        assert 1 <= int(r.headers["retry-after"]) <= 30
        assert body["retry_after"] == int(r.headers["retry-after"])
    assert bodies[0] == bodies[1]  # an existing and an unknown name read the same
    assert client.get(f"{API}/users/{uid}", headers=admin).json()["locked_until"] is not None
    r = client.post(f"{API}/users/{uid}/unlock", headers=as_user(client, "a-app_developer"))
    assert_problem(r, 403)
    r = client.post(f"{API}/users/{uid}/unlock", headers=as_user(client, "b-tenant_admin"))
    assert_problem(r, 404)
    r = client.post(f"{API}/users/{uid}/unlock", headers=admin)
    assert r.status_code == 200 and r.json()["locked_until"] is None
    login(client, "a-viewer")
    with app.state.db.session() as s:
        rows = s.scalars(select(SecurityEvent).where(SecurityEvent.kind == "login_failed")).all()
    assert {(e.subject, e.source_ip) for e in rows} == {
        ("a-viewer", "testclient"),
        ("ghost", "testclient"),
    }


def test_totp_over_http(client: TestClient) -> None:
    tokens = login(client, "a-viewer")
    h = bearer(tokens["access_token"])
    assert client.get(f"{API}/auth/me", headers=h).json()["totp_enabled"] is False
    setup = client.post(f"{API}/auth/totp/setup", headers=h).json()
    assert setup["uri"].startswith("otpauth://totp/") and "issuer=Yugong" in setup["uri"]
    secret = setup["secret"]
    r = client.post(f"{API}/auth/totp/enable", headers=h, json={"code": "000000"})
    if totp_code(secret) != "000000":
        assert assert_problem(r, 422)["errors"][0]["loc"] == "code"
    r = client.post(f"{API}/auth/totp/enable", headers=h, json={"code": totp_code(secret)})
    assert r.status_code == 200 and r.json() == {"totp_enabled": True}
    assert client.get(f"{API}/auth/me", headers=h).json()["totp_enabled"] is True

    r = client.post(f"{API}/auth/login", json={"username": "a-viewer", "password": PW})
    body = assert_problem(r, 401)
    assert body["second_factor"] == "totp" and "second factor" in body["detail"]
    code = totp_code(secret, ahead=1)
    r = client.post(
        f"{API}/auth/login", json={"username": "a-viewer", "password": PW, "totp": code}
    )
    assert r.status_code == 200, r.text
    r = client.post(
        f"{API}/auth/login", json={"username": "a-viewer", "password": PW, "totp": code}
    )
    assert assert_problem(r, 401)["second_factor"] == "totp"  # a code works once
    # the OAuth2 form takes the code as an extra field
    r = client.post(
        f"{API}/auth/token",
        data={"username": "a-viewer", "password": PW, "totp": totp_code(secret, ahead=-1)},
    )
    assert_problem(r, 401)  # older than the code already used: a replay too

    # an admin resets it (a lost phone); the user signs in with the password alone
    uid = user_id(client, "a-viewer")
    assert_problem(
        client.post(f"{API}/users/{uid}/totp:reset", headers=as_user(client, "b-tenant_admin")),
        404,
    )
    r = client.post(f"{API}/users/{uid}/totp:reset", headers=as_user(client, "a-tenant_admin"))
    assert r.status_code == 200 and r.json()["totp_enabled"] is False
    h = bearer(login(client, "a-viewer")["access_token"])

    # and the user may turn it on and off again
    secret = client.post(f"{API}/auth/totp/setup", headers=h).json()["secret"]
    client.post(f"{API}/auth/totp/enable", headers=h, json={"code": totp_code(secret)})
    r = client.post(
        f"{API}/auth/totp/disable",
        headers=h,
        json={"password": "wrong password", "code": totp_code(secret, ahead=1)},
    )
    assert assert_problem(r, 422)["errors"][0]["loc"] == "password"
    r = client.post(
        f"{API}/auth/totp/disable",
        headers=h,
        json={"password": PW, "code": totp_code(secret, ahead=1)},
    )
    assert r.status_code == 200 and r.json() == {"totp_enabled": False}
    login(client, "a-viewer")


def test_sessions_over_http(client: TestClient) -> None:
    first, second = login(client, "a-viewer"), login(client, "a-viewer")
    h = bearer(second["access_token"])
    listed = client.get(f"{API}/auth/sessions", headers=h).json()
    assert len(listed) == 2 and {"id", "started_at", "refreshed_at", "expires_at"} <= set(listed[0])
    assert listed[0]["started_at"] >= listed[1]["started_at"]  # newest first
    others = [s for s in listed if s["id"] != listed[0]["id"]]
    r = client.delete(f"{API}/auth/sessions/{others[0]['id']}", headers=h)
    assert r.status_code == 204
    assert_problem(client.delete(f"{API}/auth/sessions/{others[0]['id']}", headers=h), 404)
    refused = [
        client.post(f"{API}/auth/refresh", json={"refresh_token": t["refresh_token"]})
        for t in (first, second)
    ]
    assert sorted(r.status_code for r in refused) == [200, 401]  # only the ended one fails
    assert len(client.get(f"{API}/auth/sessions", headers=h).json()) == 1

    # an admin ends all of them
    fresh = login(client, "a-viewer")
    uid = user_id(client, "a-viewer")
    url = f"{API}/users/{uid}/sessions:revoke"
    assert_problem(client.post(url, headers=as_user(client, "a-app_developer")), 403)
    assert_problem(client.post(url, headers=as_user(client, "b-tenant_admin")), 404)
    assert client.post(url, headers=as_user(client, "a-tenant_admin")).status_code == 204
    r = client.post(f"{API}/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert_problem(r, 401)
    assert client.get(f"{API}/auth/sessions", headers=h).json() == []
    # access tokens already issued stay valid until they expire (documented)
    assert client.get(f"{API}/auth/me", headers=h).status_code == 200


def test_api_key_expiry_and_revoked_listing(client: TestClient, app: FastAPI) -> None:
    h = as_user(client, "a-app_developer")
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = client.post(
        f"{API}/apikeys", headers=h, json={"name": "short", "role": "viewer", "expires_at": soon}
    ).json()
    kh = {"X-API-Key": created["key"]}
    assert client.get(f"{API}/auth/me", headers=kh).status_code == 200
    with app.state.db.session() as s:
        s.get_one(ApiKey, created["id"]).expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert "expired" in assert_problem(client.get(f"{API}/auth/me", headers=kh), 401)["detail"]
    other = client.post(f"{API}/apikeys", headers=h, json={"name": "gone"}).json()
    client.delete(f"{API}/apikeys/{other['id']}", headers=h)
    assert_problem(client.get(f"{API}/auth/me", headers={"X-API-Key": other["key"]}), 401)
    live = client.get(f"{API}/apikeys", headers=h).json()
    assert [k["name"] for k in live] == ["short"]  # revoked keys are hidden by default
    assert live[0]["last_used_at"] is not None
    every = client.get(f"{API}/apikeys", headers=h, params={"include_revoked": True}).json()
    assert {k["name"]: k["revoked_at"] is not None for k in every} == {
        "short": False,
        "gone": True,
    }
