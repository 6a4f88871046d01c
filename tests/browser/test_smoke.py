"""The browser-test setup end to end: Debian's chromium opens pages of a running platform,
and the vendored htmx and ECharts load from /static under the platform's CSP and work."""

from __future__ import annotations

import contextlib

from playwright.sync_api import ConsoleMessage, Error, Page

from tests.browser.conftest import shot, sign_in
from tests.integration.conftest import ADMIN_PASSWORD
from yugong.security.integrity import WEB_ASSETS, package_root
from yugong.server import BackgroundServer

VENDOR = package_root() / WEB_ASSETS / "vendor"


def vendored(prefix: str) -> tuple[str, str]:
    """(URL path, version) of the one vendored ``<prefix>-<version>.min.js``."""
    (file,) = VENDOR.glob(f"{prefix}-*.min.js")
    version = file.name.removeprefix(f"{prefix}-").removesuffix(".min.js")
    return f"/static/vendor/{file.name}", version


def test_pages_open_in_debian_chromium(page: Page, console_server: BackgroundServer) -> None:
    base = console_server.url
    r = page.goto(base + "/")
    assert r is not None and r.ok
    assert r.headers["content-type"].startswith("text/html")
    assert "Yugong" in page.title()
    shot(page, "smoke-landing")

    r = page.goto(base + "/api/v1/health")
    assert r is not None and r.status == 200
    assert r.json()["status"] == "ok"

    css = (package_root() / WEB_ASSETS / "yugong.css").read_bytes()
    r = page.goto(base + "/static/yugong.css")
    assert r is not None and r.status == 200
    assert r.headers["content-type"].startswith("text/css")
    assert r.body() == css

    r = page.goto(base + "/static/no-such-file.css")
    assert r is not None and r.status == 404


def test_vendored_htmx_and_echarts_run_under_the_csp(
    page: Page, console_server: BackgroundServer
) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    page.on("console", on_console)
    r = page.goto(console_server.url + "/")
    assert r is not None and "script-src 'self'" in r.headers["content-security-policy"]

    htmx_url, htmx_version = vendored("htmx")
    echarts_url, echarts_version = vendored("echarts")
    # htmx adds its indicator styles as an inline <style>, which the CSP refuses: console
    # pages turn that off (the styles belong in yugong.css), and so does this page.
    page.evaluate(
        """() => {
        const meta = document.createElement('meta');
        meta.name = 'htmx-config';
        meta.content = '{"includeIndicatorStyles": false}';
        document.head.appendChild(meta);
    }"""
    )
    page.add_script_tag(url=htmx_url)
    page.add_script_tag(url=echarts_url)
    assert page.evaluate("window.htmx.version") == htmx_version
    assert page.evaluate("window.echarts.version") == echarts_version

    # ECharts draws on a canvas in headless chromium without a GPU.
    page.evaluate(
        """() => {
        const el = document.createElement('div');
        el.id = 'chart';
        el.style.width = '640px';
        el.style.height = '300px';
        document.body.appendChild(el);
        const chart = echarts.init(el, null, {renderer: 'canvas'});
        chart.setOption({
            animation: false,
            title: {text: 'temperature'},
            xAxis: {type: 'category', data: ['08:00', '09:00', '10:00', '11:00', '12:00']},
            yAxis: {type: 'value'},
            series: [{type: 'line', data: [21.5, 23.1, 24.8, 24.2, 22.9]}],
        });
    }"""
    )
    assert page.locator("#chart canvas").count() >= 1
    painted = page.evaluate(
        """() => {
        const c = document.querySelector('#chart canvas');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0;
        for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
        return n;
    }"""
    )
    assert painted > 1000  # pixels drawn, not an empty canvas
    shot(page, "smoke-echarts")
    assert errors == []


def test_an_unhashed_inline_script_is_blocked_by_the_csp(
    page: Page, console_server: BackgroundServer
) -> None:
    """The policy the console's pages get really holds in this browser: an inline script
    the server did not hash does not run."""
    page.goto(console_server.url + "/")
    with contextlib.suppress(Error):  # chromium may report the refused script as an error
        page.add_script_tag(content="window.injected = true;")
    assert page.evaluate("window.injected === undefined")


def test_sign_in_hands_the_cookie_session_to_the_browser(
    page: Page, console_server: BackgroundServer
) -> None:
    base = console_server.url
    r = page.goto(base + "/api/v1/auth/me")
    assert r is not None and r.status == 401  # no session yet

    sign_in(page.context, base, "admin", ADMIN_PASSWORD)
    r = page.goto(base + "/api/v1/auth/me")
    assert r is not None and r.status == 200
    assert r.json()["role"] == "platform_admin"
    # The session cookie stays out of the page's reach; the CSRF token is the page's to send.
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["yugong_session"]["httpOnly"] is True
    assert cookies["yugong_session"]["sameSite"] == "Strict"
    seen = page.evaluate("document.cookie")
    assert "yugong_csrf=" in seen and "yugong_session" not in seen
