"""Rules and commands in Debian's chromium: create a threshold rule in the form (a wrong
value first, refused beside its field), dry-run it over ingested history and see the chart
with the would-be alarm marked; then send commands to a device on the embedded broker with
the confirmation accepted, and see each one's status (refused, acknowledged, timed out).
Screenshots go to test-output/screenshots/."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import shot, sign_in
from tests.integration.conftest import USER_PASSWORD, Api, TenantWorld, make_settings
from tests.integration.test_commands import PRESS_TSL, RpcDevice
from yugong.server import BackgroundServer

TSL: dict[str, Any] = copy.deepcopy(PRESS_TSL)
TSL["properties"].append(
    {
        "identifier": "target_speed",
        "name": "目标转速",
        "accessMode": "rw",
        "dataType": {"type": "int", "specs": {"min": "0", "max": "3000", "step": "1"}},
    }
)


@dataclass
class Plant:
    url: str
    api: Api
    world: TenantWorld
    press: dict[str, Any]
    mqtt_port: int


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    """A whole platform with its embedded MQTT broker (for a device answering commands)."""
    settings = make_settings(tmp_path_factory.mktemp("rules-browser"))
    with (
        BackgroundServer(settings) as srv,
        httpx.Client(base_url=srv.url, timeout=30) as client,
    ):
        api = Api(client)
        root = api.admin()
        world = api.setup_tenant(root, "Rule Browser Works")
        body = {
            "username": "eng-rules",
            "password": USER_PASSWORD,
            "role": "engineer",
            "tenant_id": world.tenant_id,
        }
        api.call("POST", "/api/v1/users", root, 201, json=body)
        # The last hour at a sample a minute: 20 degrees, 95 for five minutes, 20 again.
        now = int(time.time() * 1000)
        rows = [
            {
                "ts": now - 3_000_000 + i * 60_000,
                "values": {"temperature": 95.0 if 20 <= i < 25 else 20.0 + (i % 5)},
            }
            for i in range(45)
        ]
        api.call("POST", f"/api/v1/{world.token}/telemetry", json=rows)
        api.wait_for(
            lambda: (
                len(
                    api.call(
                        "GET",
                        f"/api/v1/devices/{world.device_id}/history",
                        world.headers,
                        params={"keys": "temperature", "start": now - 3_600_000, "end": now},
                    )["series"][0]["ts"]
                )
                >= 45
            )
        )
        product = api.call(
            "POST",
            "/api/v1/products/import",
            world.headers,
            201,
            params={"name": "Press"},
            json=TSL,
        )
        press = api.call(
            "POST",
            "/api/v1/devices",
            world.headers,
            201,
            json={"name": "press-7", "product_id": product["id"]},
        )
        assert srv.platform.mqtt_address is not None
        yield Plant(srv.url, api, world, press, srv.platform.mqtt_address[1])


def test_create_a_rule_and_dry_run_it_on_the_chart(page: Page, plant: Plant) -> None:
    sign_in(page.context, plant.url, "eng-rules", USER_PASSWORD)
    page.goto(plant.url + "/console/rules")
    page.get_by_role("link", name="新建规则").click()
    expect(page).to_have_url(plant.url + "/console/rules/new")

    page.locator("#rule-name").fill("Spindle too hot")
    page.locator("#rule-target-kind").select_option("product")
    page.locator("#rule-product").select_option("sensor")
    page.locator("#rule-severity").select_option("major")
    # The fields follow the kind: a sustained rule asks for a duration, a threshold not.
    page.locator("#rule-kind").select_option("sustained")
    expect(page.locator("#rule-for")).to_be_visible()
    page.locator("#rule-kind").select_option("threshold")
    expect(page.locator("#rule-for")).to_be_hidden()
    page.locator("#rule-property").fill("temperature")
    page.locator("#rule-op").select_option(">")
    page.locator("#rule-value").fill("hot")
    page.locator("#rule-hysteresis").fill("2")
    page.get_by_role("button", name="创建规则").click()
    # Refused by the rule service, the error beside the value field.
    error = page.locator('[data-error-for="value"]')
    expect(error).to_contain_text("valid number")
    expect(page.locator("#rule-value")).to_have_attribute("aria-invalid", "true")
    shot(page, "rules-form-error")

    page.locator("#rule-value").fill("80")
    page.get_by_role("button", name="创建规则").click()
    expect(page).to_have_url(re.compile(r".*/console/rules/\d+$"))
    expect(page.locator("h1")).to_have_text("Spindle too hot")
    expect(page.locator("#rule-yaml")).to_contain_text("property: temperature")

    page.locator("#dry-device").select_option(str(plant.world.device_id))
    page.locator("#dry-range").select_option("hour")
    page.get_by_role("button", name="运行").click()
    chart = page.locator("#dry-run-chart")
    expect(chart).to_have_attribute("data-alarms", "1")
    expect(page.locator("#dry-run-status")).to_have_text("本会产生 1 条告警。")
    expect(page.locator("#dry-run-alarms tbody tr")).to_have_count(1)
    assert int(chart.get_attribute("data-points") or 0) >= 45
    # ECharts drew the line with the marked area and point.
    marked = page.evaluate(
        """() => {
            const el = document.getElementById('dry-run-chart');
            const opt = echarts.getInstanceByDom(el).getOption();
            const s = opt.series[0];
            return [s.markArea.data.length, s.markPoint.data.length, s.data.length];
        }"""
    )
    assert marked[0] == 1 and marked[1] == 1 and marked[2] >= 45, marked
    shot(page, "rules-dry-run")

    page.goto(plant.url + "/console/rules")
    row = page.locator("tr", has_text="Spindle too hot")
    row.get_by_role("button", name="停用").click()
    expect(row.locator(".status")).to_have_text("已停用")
    shot(page, "rules-list")


def test_commands_with_confirmation(page: Page, plant: Plant) -> None:
    sign_in(page.context, plant.url, "eng-rules", USER_PASSWORD)
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    device = RpcDevice(plant.mqtt_port, plant.press["token"], "press-7")
    try:
        page.goto(f"{plant.url}/console/devices/{plant.press['id']}")
        page.get_by_role("link", name="命令").click()
        expect(page.locator("h1")).to_have_text("命令：press-7")

        # A rw property: confirmed with the value typed; this device is not behind a
        # gateway, so the write is refused, saying why.
        page.get_by_label("目标转速 的新值").fill("120")
        page.get_by_role("button", name="设置").click()
        refused = page.locator("#cmd-prop-1 [data-status]")
        expect(refused).to_have_attribute("data-status", "refused")
        expect(refused).to_contain_text("not behind a gateway")
        assert asked[-1] == "确定将 press-7 的 目标转速 设为 120？"

        # A service the device answers: acknowledged, with its output.
        page.locator("#cmd-svc-1-1").fill("1500")
        page.locator("#cmd-svc-1-2").select_option("1")
        page.get_by_role("button", name="调用").first.click()
        status = page.locator("#cmd-svc-1 [data-status]")
        expect(status).to_have_attribute("data-status", "acknowledged", timeout=20_000)
        expect(status).to_contain_text("设备已确认")
        expect(status).to_contain_text('{"applied": 1500}')
        assert asked[-1] == "确定在 press-7 上调用 设定转速？"

        # A service the device never answers: timed out, shown as an error.
        page.get_by_role("button", name="调用").nth(1).click()
        mute = page.locator("#cmd-svc-2 [data-status]")
        expect(mute).to_have_attribute("data-status", "timed_out", timeout=30_000)
        expect(mute).to_contain_text("超时")
        expect(page.locator("#cmd-recent tbody tr")).to_have_count(2)
        shot(page, "commands")
    finally:
        device.close()
