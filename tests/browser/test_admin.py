"""Administration and platform figures in Debian's chromium: a platform admin reads the
figures and downloads the CSV; a tenant admin creates a user and an API key through the
forms, looks at device credentials and security events. Screenshots of each page."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import shot, sign_in
from tests.integration.conftest import ADMIN_PASSWORD, USER_PASSWORD, Api, TenantWorld
from yugong.server import BackgroundServer


@dataclass
class Works:
    url: str
    api: Api
    world: TenantWorld


@pytest.fixture(scope="module")
def works(console_server: BackgroundServer) -> Iterator[Works]:
    with httpx.Client(base_url=console_server.url, timeout=30) as client:
        api = Api(client)
        root = api.admin()
        world = api.setup_tenant(root, "Weaving Works")
        api.call("PATCH", f"/api/v1/tenants/{world.tenant_id}", root, json={"industry": "textile"})
        yield Works(console_server.url, api, world)


def test_platform_admin_reads_the_figures_and_downloads_them(page: Page, works: Works) -> None:
    sign_in(page.context, works.url, "admin", ADMIN_PASSWORD)
    page.goto(works.url + "/console/platform")
    expect(page.locator('[data-figure="devices"]')).not_to_have_text("0")
    expect(page.locator('tr[data-subtotal="textile"]')).to_be_visible()
    shot(page, "platform-figures")
    with page.expect_download() as info:
        page.locator('a[href="/console/platform.csv"]').click()
    saved = Path(info.value.path())
    content = saved.read_bytes()
    assert content.startswith(b"\xef\xbb\xbf")
    text = content.decode("utf-8-sig")
    assert "Weaving Works" in text and "textile" in text

    page.goto(works.url + "/console/admin/tenants")
    expect(page.locator("#tenants")).to_contain_text("Weaving Works")
    shot(page, "admin-tenants")
    page.locator("#tenants a", has_text="Weaving Works").click()
    expect(page.locator('[data-usage="devices"]')).to_be_visible()
    shot(page, "admin-tenant-usage")
    page.goto(works.url + "/console/admin/profiles")
    page.locator("#pn-name").fill("Pilot")
    page.locator("#pn-max_devices").fill("50")
    page.locator("#pn-name").press("Enter")
    expect(page.locator("#profiles")).to_contain_text("Pilot")
    shot(page, "admin-profiles")


def test_tenant_admin_creates_a_user_and_a_key(page: Page, works: Works) -> None:
    sign_in(page.context, works.url, "weaving-works-admin", USER_PASSWORD)
    page.goto(works.url + "/console/admin")
    expect(page.locator('[data-usage="users"]')).to_be_visible()
    shot(page, "admin-home")

    page.locator('nav.filters a[href="/console/admin/users"]').click()
    expect(page.locator("#new-role option[value='platform_admin']")).to_have_count(0)
    page.locator("#new-username").fill("weaver-1")
    page.locator("#new-display").fill("Weaver One")
    page.locator("#new-password").fill(USER_PASSWORD)
    page.locator("#new-role").select_option("operator")
    page.locator('form[hx-post="/console/admin/users"] button[type="submit"]').click()
    expect(page.locator('tr[data-username="weaver-1"]')).to_be_visible()
    expect(page.locator('[data-outcome="done"]')).to_be_visible()
    shot(page, "admin-users")
    page.locator("#new-username").fill("x!y")
    page.locator("#new-password").fill(USER_PASSWORD)
    page.locator("#new-username").press("Enter")
    expect(page.locator("#err-username")).to_be_visible()
    shot(page, "admin-users-error")

    page.goto(works.url + "/console/admin/apikeys")
    page.locator("#key-name").fill("historian")
    page.locator("#key-role").select_option("viewer")
    page.locator("#key-name").press("Enter")
    key = page.locator("#new-key")
    expect(key).to_be_visible()
    assert key.input_value().startswith("ygk_")
    shot(page, "admin-apikeys")

    page.goto(f"{works.url}/console/admin/credentials?device={works.world.device_id}")
    page.once("dialog", lambda d: d.accept())
    page.locator(f'button[hx-post$="/{works.world.device_id}/token"]').click()
    expect(page.locator("#new-token")).to_be_visible()
    shot(page, "admin-credentials")

    page.goto(works.url + "/console/admin/security")
    expect(page.locator("#events")).to_be_visible()
    shot(page, "admin-security")
