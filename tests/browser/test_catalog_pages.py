"""Products, edge gateways and components in chromium: browse the products, open the editor
and edit a property; a gateway's health tiles and trend; open a component, try it and see its
chart; screenshots of each page."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import shot, sign_in
from tests.integration.conftest import USER_PASSWORD, Api, TenantWorld
from tests.web.test_gateways_page import HEALTH, _gateway
from yugong.server import BackgroundServer


@dataclass
class Plant:
    url: str
    world: TenantWorld
    gateway_id: int


@pytest.fixture(scope="module")
def plant(console_server: BackgroundServer) -> Iterator[Plant]:
    with httpx.Client(base_url=console_server.url, timeout=30) as client:
        api = Api(client)
        root = api.admin()
        world = api.setup_tenant(root, "Catalog Works")
        body = {
            "username": "eng-cat",
            "password": USER_PASSWORD,
            "role": "engineer",
            "tenant_id": world.tenant_id,
        }
        api.call("POST", "/api/v1/users", root, 201, json=body)
        gw = _gateway(api, world, "edge-7", HEALTH)
        yield Plant(console_server.url, world, gw["id"])


def test_browse_products_and_edit_a_property(page: Page, plant: Plant) -> None:
    sign_in(page.context, plant.url, "eng-cat", USER_PASSWORD)
    page.goto(plant.url + "/console/products")
    page.get_by_role("link", name="sensor", exact=True).click()
    expect(page.locator('tr[data-property="temperature"]')).to_be_visible()
    shot(page, "products-detail")
    page.locator('tr[data-property="temperature"]').get_by_role("link").click()
    expect(page.locator("#prop-name")).to_have_value("温度")
    page.locator("#prop-max").fill("10")
    page.locator("#prop-min").fill("20")
    page.locator("#prop-form button[type=submit]").click()
    expect(page.locator("#err-min")).to_be_visible()
    shot(page, "products-editor-error")
    page.locator("#prop-min").fill("-20")
    page.locator("#prop-form button[type=submit]").click()
    row = page.locator('tr[data-property="temperature"]')
    expect(row).to_contain_text("-20")
    page.goto(plant.url + "/console/products")
    shot(page, "products-list")


def test_try_a_component_and_see_its_chart(page: Page, plant: Plant) -> None:
    sign_in(page.context, plant.url, "eng-cat", USER_PASSWORD)
    page.goto(plant.url + "/console/components")
    page.locator("#comp-q").fill("spectrum")
    expect(page.locator('tr[data-component="vibration.envelope_spectrum"]')).to_be_visible()
    shot(page, "components-catalog")
    page.locator('tr[data-component="vibration.spectrum"] a').click()
    signal = ", ".join(str(((i * 7) % 11) - 5) for i in range(128))
    page.locator("#in-x").fill(signal)
    page.locator("#in-sample_rate").fill("1000")
    page.get_by_role("button", name="运行").click()
    chart = page.locator("[data-chart]")
    expect(chart).to_have_attribute("data-drawn", "65")
    expect(chart.locator("canvas")).to_have_count(1)
    shot(page, "components-try")


def test_gateway_health(page: Page, plant: Plant) -> None:
    sign_in(page.context, plant.url, "eng-cat", USER_PASSWORD)
    page.goto(plant.url + "/console/gateways")
    shot(page, "gateways-list")
    page.get_by_role("link", name="edge-7", exact=True).click()
    expect(page.locator('[data-health="buffer_rows"] .big')).to_have_text("1234")
    expect(page.locator("#gw-buffer")).to_have_attribute("data-shown", "2")
    expect(page.locator("#gw-latency canvas")).to_have_count(1)
    shot(page, "gateways-detail")
