"""Dashboards in Debian's chromium: build a dashboard with a trend and a value widget bound to
a device with data, share it, save, reload and see it drawn; another user of the tenant sees
the shared dashboard and cannot edit it. Screenshots go to test-output/."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import VIEWPORT, shot, sign_in
from tests.integration.conftest import USER_PASSWORD, Api, TenantWorld
from yugong.server import BackgroundServer


@dataclass
class Plant:
    url: str
    world: TenantWorld
    admin: str
    last: float


@pytest.fixture(scope="module")
def plant(console_server: BackgroundServer) -> Iterator[Plant]:
    with httpx.Client(base_url=console_server.url, timeout=30) as client:
        api = Api(client)
        root = api.admin()
        world = api.setup_tenant(root, "Dash Browser Works")
        tenant = api.call("GET", f"/api/v1/tenants/{world.tenant_id}", root)
        body = {
            "username": "dash-viewer",
            "password": USER_PASSWORD,
            "role": "viewer",
            "tenant_id": world.tenant_id,
        }
        api.call("POST", "/api/v1/users", root, 201, json=body)
        # Two hours of samples, one a minute, ending now.
        now = int(time.time() * 1000)
        rows = [
            {"ts": now - 7_200_000 + i * 60_000, "values": {"temperature": 20.5 + (i % 30) / 2}}
            for i in range(121)
        ]
        api.call("POST", f"/api/v1/{world.token}/telemetry", json=rows)
        last = rows[-1]["values"]["temperature"]
        yield Plant(console_server.url, world, f"{tenant['slug']}-admin", last)


def test_build_and_save_a_dashboard(page: Page, browser: Browser, plant: Plant) -> None:
    sign_in(page.context, plant.url, plant.admin, USER_PASSWORD)
    page.goto(plant.url + "/console/dashboards")
    shot(page, "dashboards-empty-list")
    page.locator("#dash-new").click()
    expect(page).to_have_url(plant.url + "/console/dashboards/new")

    page.locator("#dash-name").fill("Line 1 overview")
    page.locator("#dash-shared").check()
    device = str(plant.world.device_id)
    # A trend of the temperature over the last 6 hours.
    page.locator("#dash-kind").select_option("trend")
    page.locator("#dash-device").select_option(device)
    page.locator("#dash-property").select_option(["temperature"])
    page.locator("#dash-range").select_option("6h")
    page.locator("#dash-title").fill("Temperature trend")
    page.locator("#dash-add-widget").click()
    # Its current value, added with the keyboard alone.
    page.locator("#dash-kind").select_option("value")
    page.locator("#dash-property").select_option("temperature")
    page.locator("#dash-add-widget").focus()
    page.keyboard.press("Enter")
    # A gauge, added and then removed again.
    page.locator("#dash-kind").select_option("gauge")
    page.locator("#dash-add-widget").click()
    expect(page.locator("#dash-widgets li")).to_have_count(3)
    page.locator("#dash-widgets li").nth(2).locator("[data-remove]").click()
    expect(page.locator("#dash-widgets li")).to_have_count(2)
    # Move the value first, then back.
    page.locator("#dash-widgets li").nth(1).locator('[data-move="-1"]').click()
    expect(page.locator("#dash-widgets li").first).not_to_contain_text("Temperature trend")
    page.locator("#dash-widgets li").first.locator('[data-move="1"]').click()
    expect(page.locator("#dash-widgets li").first).to_contain_text("Temperature trend")
    shot(page, "dashboards-editor")

    page.locator("#dash-save").click()
    expect(page).to_have_url(re.compile(re.escape(plant.url) + r"/console/dashboards/\d+$"))
    board_url = page.url
    page.reload()
    expect(page.locator("h1")).to_contain_text("Line 1 overview")
    sections = page.locator("#dash-board section")
    expect(sections).to_have_count(2)
    expect(sections.first.locator("h2")).to_have_text("Temperature trend")
    chart = page.locator('[data-dash-chart="trend"]')
    expect(chart.locator("canvas")).to_have_count(1)
    expect(chart).to_have_attribute("data-shown", re.compile(r"^[1-9]\d*$"))
    value = sections.nth(1).locator('[data-dash-value="temperature"]')
    expect(value).to_have_text(str(plant.last))
    expect(page.locator("#dash-edit")).to_be_visible()
    shot(page, "dashboards-view")

    # A bad save shows the reason in the editor.
    page.locator("#dash-edit").click()
    page.locator("#dash-name").fill(" ")
    page.locator("#dash-save").click()
    expect(page.locator("#dash-result [role=alert]")).to_contain_text("name")
    shot(page, "dashboards-editor-error")

    # Another user of the tenant: sees it, shared, read-only.
    other = browser.new_context(locale="en-US", viewport=VIEWPORT)
    try:
        viewer = other.new_page()
        sign_in(other, plant.url, "dash-viewer", USER_PASSWORD)
        viewer.goto(plant.url + "/console/dashboards")
        expect(viewer.get_by_role("link", name="Line 1 overview")).to_be_visible()
        expect(viewer.locator("#dash-new")).to_be_visible()  # may make its own
        viewer.get_by_role("link", name="Line 1 overview").click()
        expect(viewer).to_have_url(board_url)
        expect(viewer.locator("#dash-edit")).to_have_count(0)
        expect(viewer.locator('[data-dash-value="temperature"]')).to_have_text(str(plant.last))
        shot(viewer, "dashboards-shared-read-only")
        refused = viewer.goto(board_url + "/edit")
        assert refused is not None and refused.status == 403
    finally:
        other.close()
