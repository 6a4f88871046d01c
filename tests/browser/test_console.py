"""The console in Debian's chromium: sign in with the keyboard, find a device and watch its
live trend move, read its history chart, acknowledge an alarm, switch language, and be
refused a page the role may not see. Screenshots of each page go to test-output/."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import shot
from tests.integration.conftest import USER_PASSWORD, Api, TenantWorld
from yugong.server import BackgroundServer


@dataclass
class Plant:
    url: str
    api: Api
    world: TenantWorld
    device_name: str


@pytest.fixture(scope="module")
def plant(console_server: BackgroundServer) -> Iterator[Plant]:
    with httpx.Client(base_url=console_server.url, timeout=30) as client:
        api = Api(client)
        root = api.admin()
        world = api.setup_tenant(root, "Browser Works")
        for name, role in (("eng-web", "engineer"), ("viewer-web", "viewer")):
            body = {
                "username": name,
                "password": USER_PASSWORD,
                "role": role,
                "tenant_id": world.tenant_id,
            }
            api.call("POST", "/api/v1/users", root, 201, json=body)
        rule = {
            "name": "Too hot",
            "target": {"product": "sensor"},
            "severity": "major",
            "condition": {"kind": "threshold", "property": "temperature", "op": ">", "value": 90},
        }
        api.call("POST", "/api/v1/rules", world.headers, 201, json=rule)
        # A day of history at one sample a minute, for the history chart.
        now = int(time.time() * 1000)
        rows = [
            {"ts": now - 86_400_000 + i * 60_000, "values": {"temperature": 20 + (i % 60) / 3}}
            for i in range(1440)
        ]
        api.call("POST", f"/api/v1/{world.token}/telemetry", json=rows)
        device = api.call("GET", f"/api/v1/devices/{world.device_id}", world.headers)
        yield Plant(console_server.url, api, world, device["name"])


def send(plant: Plant, value: float) -> None:
    body = {"ts": int(time.time() * 1000), "values": {"temperature": value}}
    plant.api.call("POST", f"/api/v1/{plant.world.token}/telemetry", json=body)


def sign_in_with_keyboard(page: Page, url: str, username: str) -> None:
    """The sign-in page speaks the browser's language; the console then the user's (zh-CN)."""
    page.goto(url + "/console/")
    expect(page).to_have_url(url + "/console/login?next=/console/")
    page.keyboard.press("Tab")  # the skip link comes first
    page.get_by_label("Username").focus()  # the browser asks for English
    page.keyboard.type(username)
    page.keyboard.press("Tab")
    page.keyboard.type(USER_PASSWORD)
    page.keyboard.press("Enter")
    expect(page).to_have_url(url + "/console/")


def test_sign_in_find_a_device_and_watch_it(page: Page, plant: Plant) -> None:
    shot_login = page.goto(plant.url + "/console/login")
    assert shot_login is not None and shot_login.status == 200
    shot(page, "login")
    sign_in_with_keyboard(page, plant.url, "eng-web")
    expect(page.get_by_role("heading", name="工厂总览")).to_be_visible()
    shot(page, "overview")

    page.get_by_role("link", name="设备", exact=True).click()
    page.get_by_label("搜索").fill(plant.device_name)
    row_link = page.get_by_role("link", name=plant.device_name)
    expect(row_link).to_be_visible()
    shot(page, "devices")
    row_link.click()
    expect(page.get_by_role("heading", name=plant.device_name)).to_be_visible()

    live = page.locator("#live-chart")
    expect(live).to_be_visible()
    stop = threading.Event()

    def feed() -> None:
        value = 30.0
        while not stop.is_set():
            send(plant, value)
            value += 0.5
            time.sleep(0.3)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        page.wait_for_function(
            "() => Number(document.getElementById('live-chart').dataset.points) >= 3",
            timeout=15_000,
        )
        first = int(live.get_attribute("data-points") or 0)
        page.wait_for_function(
            f"() => Number(document.getElementById('live-chart').dataset.points) > {first}",
            timeout=15_000,
        )
    finally:
        stop.set()
        feeder.join()
    expect(page.locator("#live-status")).to_have_text("正在接收实时数据")

    history = page.locator("#history-chart")
    page.wait_for_function(
        "() => document.getElementById('history-chart').dataset.mode !== undefined",
        timeout=15_000,
    )
    assert history.get_attribute("data-mode") in ("raw", "lttb", "minmax")
    assert int(history.get_attribute("data-shown") or 0) > 100
    shot(page, "device")


def test_acknowledge_an_alarm(page: Page, plant: Plant) -> None:
    send(plant, 95.0)  # above the rule's 90: an alarm
    sign_in_with_keyboard(page, plant.url, "eng-web")
    page.get_by_role("link", name="告警", exact=True).click()
    row = page.locator("tr[data-state='active']", has_text="Too hot")
    expect(row).to_be_visible(timeout=15_000)
    shot(page, "alarms")
    row.get_by_role("button", name="确认").click()
    expect(page.locator("tr[data-state='acknowledged']", has_text="Too hot")).to_be_visible()


def test_switch_language(page: Page, plant: Plant) -> None:
    sign_in_with_keyboard(page, plant.url, "eng-web")
    page.get_by_label("语言").select_option("en")
    page.get_by_role("button", name="切换").click()
    expect(page.get_by_role("heading", name="Plant overview")).to_be_visible()
    expect(page.get_by_role("link", name="Devices", exact=True)).to_be_visible()
    shot(page, "overview-en")
    page.get_by_label("Language").select_option("zh-CN")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_role("heading", name="工厂总览")).to_be_visible()


def test_a_viewer_is_refused_the_audit_log(page: Page, plant: Plant) -> None:
    sign_in_with_keyboard(page, plant.url, "viewer-web")
    expect(page.get_by_role("link", name="审计日志")).to_have_count(0)  # not in the menu
    response = page.goto(plant.url + "/console/audit")
    assert response is not None and response.status == 403
    expect(page.get_by_role("heading", name="无权访问")).to_be_visible()
    shot(page, "refused")
