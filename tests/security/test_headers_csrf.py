"""Web threat protection on the whole application: security headers on every answer (the
Swagger UI page still loads under its policy), and CSRF protection for cookie sessions."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from yugong.api.app import create_app
from yugong.api.csrf import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE
from yugong.core.settings import Settings
from yugong.platform.runtime import Platform

ADMIN_PASSWORD = "Root-Pass-2026!headers"


def platform_settings(data_dir: Path, **kw: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        secret_key="h" * 40,
        admin_password=ADMIN_PASSWORD,
        mqtt_embedded=False,
        **kw,
    )


@contextmanager
def running_app(settings: Settings, **client_kw: Any) -> Iterator[TestClient]:
    """The whole platform (SQLite, DuckDB, no broker) behind FastAPI's TestClient."""
    app = create_app(settings, Platform(settings))
    with TestClient(app, **client_kw) as client:
        yield client


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = platform_settings(tmp_path_factory.mktemp("headers"), max_request_bytes=1 << 20)
    with running_app(settings) as c:
        yield c


def csp(r: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in r.headers["content-security-policy"].split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def test_headers_on_json_html_errors_and_refusals(client: TestClient) -> None:
    answers = [
        client.get("/api/v1/health"),
        client.get("/"),
        client.get("/api/v1/devices"),  # 401 problem
        client.get("/no/such/page"),  # 404
        client.post("/api/v1/telemetry", content=b"x" * (2 << 20)),  # 413
    ]
    assert [r.status_code for r in answers] == [200, 200, 401, 404, 413]
    for r in answers:
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert "camera=()" in r.headers["permissions-policy"]
        policy = csp(r)
        assert policy["default-src"] == ["'self'"]
        assert policy["frame-ancestors"] == ["'none'"]
        assert policy["object-src"] == ["'none'"]
        assert policy["base-uri"] == ["'self'"]
        assert "'unsafe-inline'" not in policy["script-src"]
        assert "strict-transport-security" not in r.headers  # plain HTTP


def test_hsts_only_over_https(tmp_path: Path) -> None:
    with running_app(platform_settings(tmp_path), base_url="https://testserver") as c:
        r = c.get("/api/v1/health")
    assert r.headers["strict-transport-security"].startswith("max-age=31536000")


def _sha(body: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"


def test_console_needs_no_inline_code(client: TestClient) -> None:
    # "/" leads to the console; its pages carry no inline script or style, so the strict
    # base policy holds with nothing added.
    r = client.get("/", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/console/"
    page = client.get("/console/login")
    assert page.status_code == 200
    assert not re.findall(r"<style|<script(?![^>]*src=)|style=", page.text)
    assert csp(page)["script-src"] == ["'self'"] and csp(page)["style-src"] == ["'self'"]


def test_swagger_ui_loads_under_its_policy(client: TestClient) -> None:
    """Everything the /docs page needs is allowed by the policy it is sent with: its
    external script and style sheet, its inline script (by hash), the OpenAPI document."""
    r = client.get("/docs")
    assert r.status_code == 200
    policy = csp(r)

    def origin(url: str) -> str:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "'self'"

    scripts = re.findall(r'<script src="([^"]+)"', r.text)
    sheets = re.findall(r'<link[^>]+rel="stylesheet"[^>]+href="([^"]+)"', r.text)
    sheets += re.findall(r'<link[^>]+href="([^"]+)"[^>]+rel="stylesheet"', r.text)
    icons = re.findall(r'<link rel="shortcut icon" href="([^"]+)"', r.text)
    assert scripts and sheets
    assert all(origin(u) in policy["script-src"] for u in scripts)
    assert all(origin(u) in policy["style-src"] for u in sheets)
    assert all(origin(u) in policy["img-src"] for u in icons)
    inline = re.findall(r"<script>(.*?)</script>", r.text, re.S)
    assert inline and all(_sha(s) in policy["script-src"] for s in inline)
    spec_url = re.search(r"url: '([^']+)'", r.text)
    assert spec_url is not None and origin(spec_url.group(1)) in policy["connect-src"]
    assert client.get(spec_url.group(1)).status_code == 200
    # Only this page gets the CDN: the API's own pages do not.
    assert "https://cdn.jsdelivr.net" not in csp(client.get("/"))["script-src"]


# CSRF -----------------------------------------------------------------------------------------


def cookie_login(client: TestClient) -> str:
    r = client.post(
        "/api/v1/auth/login",
        params={"cookie": "true"},
        json={"username": "admin", "password": ADMIN_PASSWORD},
    )
    assert r.status_code == 200, r.text
    set_cookie = r.headers.get_list("set-cookie")
    session = next(c for c in set_cookie if c.startswith(SESSION_COOKIE + "="))
    csrf = next(c for c in set_cookie if c.startswith(CSRF_COOKIE + "="))
    assert "HttpOnly" in session and "samesite=strict" in session.lower()
    assert "HttpOnly" not in csrf and "samesite=strict" in csrf.lower()
    return client.cookies[CSRF_COOKIE]


def test_cookie_session_needs_the_csrf_token_on_unsafe_methods(tmp_path: Path) -> None:
    with running_app(platform_settings(tmp_path)) as c:
        token = cookie_login(c)
        assert c.get("/api/v1/auth/me").json()["name"] == "admin"  # safe method: cookie only
        assert c.get("/api/v1/tenants").status_code == 200

        refused = c.post("/api/v1/tenants", json={"name": "Forged"})
        assert refused.status_code == 403
        assert CSRF_HEADER in refused.json()["detail"]
        wrong = c.post("/api/v1/tenants", json={"name": "Forged"}, headers={CSRF_HEADER: "0" * 64})
        assert wrong.status_code == 403 and "does not match" in wrong.json()["detail"]
        names = [t["name"] for t in c.get("/api/v1/tenants").json()["items"]]
        assert "Forged" not in names  # nothing was created by the refused requests

        ok = c.post("/api/v1/tenants", json={"name": "Real"}, headers={CSRF_HEADER: token})
        assert ok.status_code == 201, ok.text

        # A bearer token carries no ambient authority: no CSRF token needed.
        bearer = c.post(
            "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["access_token"]
        c.cookies.clear()
        r = c.post(
            "/api/v1/tenants",
            json={"name": "Scripted"},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        assert r.status_code == 201


def test_csrf_token_of_another_session_is_refused(tmp_path: Path) -> None:
    with running_app(platform_settings(tmp_path)) as c:
        first = cookie_login(c)
        c.cookies.clear()
        cookie_login(c)  # a second session, with its own token
        r = c.post("/api/v1/tenants", json={"name": "Mixed"}, headers={CSRF_HEADER: first})
        assert r.status_code == 403


def test_cookies_are_secure_over_https(tmp_path: Path) -> None:
    with running_app(platform_settings(tmp_path), base_url="https://testserver") as c:
        r = c.post(
            "/api/v1/auth/login",
            params={"cookie": "true"},
            json={"username": "admin", "password": ADMIN_PASSWORD},
        )
        assert all("Secure" in h for h in r.headers.get_list("set-cookie"))
        r = c.post("/api/v1/auth/logout", headers={CSRF_HEADER: c.cookies[CSRF_COOKIE]})
        assert r.status_code == 204
        assert SESSION_COOKIE not in c.cookies
