"""Browser tests: Debian's chromium driven by Playwright against a whole platform on real
sockets. Playwright's own browser builds are never used (nor downloaded): the browser is
``/usr/bin/chromium`` (or ``$YUGONG_CHROMIUM``), which ``make test`` installs when it can.
Without it these tests skip; with CI=true they fail.

Screenshots go to ``test-output/screenshots/``: ``shot(page, name)`` for pages reviewers
look at, and one per failed test, named after it."""

from __future__ import annotations

import os
import re
from collections.abc import Generator, Iterator
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)

from tests.conftest import need_programs
from tests.integration.conftest import make_settings
from yugong.server import BackgroundServer

DEFAULT_CHROMIUM = "/usr/bin/chromium"
# No sandbox: tests run as root in containers, where chromium's sandbox cannot start. The
# rest keeps the browser from reaching out to the network on its own.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
VIEWPORT = ViewportSize(width=1366, height=800)

_reports = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item, so fixtures can tell a failed test."""
    report = yield
    item.stash.setdefault(_reports, {})[report.when] = report
    return report


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "page"


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot in test-output/screenshots/<name>.png; returns its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{_safe(name)}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def browser_cookies(jar: CookieJar, url: str) -> list[Any]:
    """The cookies an httpx client received, for ``BrowserContext.add_cookies``, keeping
    HttpOnly and SameSite as the server set them."""
    out: list[Any] = []
    for c in jar:
        cookie: dict[str, Any] = {"name": c.name, "value": c.value or "", "url": url}
        cookie["httpOnly"] = c.has_nonstandard_attr("HttpOnly")
        same_site = str(c.get_nonstandard_attr("SameSite") or "").capitalize()
        if same_site in ("Strict", "Lax", "None"):
            cookie["sameSite"] = same_site
        out.append(cookie)
    return out


def sign_in(context: BrowserContext, base_url: str, username: str, password: str) -> None:
    """Sign in through the API with a cookie session (``?cookie=true``) and hand its
    cookies to the browser context, as if the user had signed in on a page."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        r = client.post(
            "/api/v1/auth/login",
            params={"cookie": "true"},
            json={"username": username, "password": password},
        )
        assert r.status_code == 200, f"sign-in as {username}: {r.status_code} {r.text}"
        context.add_cookies(browser_cookies(client.cookies.jar, base_url))


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = os.environ.get("YUGONG_CHROMIUM", DEFAULT_CHROMIUM)
    need_programs(path)
    return path


# Package scope, not session: Playwright's sync API keeps its event loop marked as running
# in the main thread while it is started, which breaks every asyncio test run after it.
# One browser serves all the tests under tests/browser and is gone before the next package.
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    pw = sync_playwright().start()
    try:
        yield pw
    finally:
        pw.stop()


@pytest.fixture(scope="package")
def browser(chromium_path: str, playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS
    )
    try:
        yield browser
    finally:
        browser.close()


@pytest.fixture(scope="module")
def console_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    """A whole platform over plain HTTP on 127.0.0.1 (a fresh data dir has no TLS files);
    its platform admin signs in with tests.integration.conftest.ADMIN_PASSWORD."""
    settings = make_settings(tmp_path_factory.mktemp("console"), mqtt_embedded=False)
    with BackgroundServer(settings) as srv:
        assert srv.url.startswith("http://"), srv.url
        yield srv


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(locale="en-US", viewport=VIEWPORT)
    page = context.new_page()
    try:
        yield page
    finally:
        reports = request.node.stash.get(_reports, {})
        if any(r.failed for r in reports.values()):
            try:
                shot(page, request.node.name)
            except Exception as exc:  # the test's own failure is the one to report
                print(f"no screenshot of {request.node.name}: {exc}")
        context.close()
