"""The commands page over HTTP: a device's read-write properties and services with inputs
fitted to their types; a value the thing model refuses (above max, an unknown property)
shown as the service's error; a real service call to a device on the embedded broker,
answered the ThingsBoard RPC way, followed to "acknowledged" through the status route;
roles and tenant scope."""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tests.integration.conftest import USER_PASSWORD, Api, make_settings
from tests.integration.test_commands import PRESS_TSL, RpcDevice
from tests.web.test_console_access import CHEAP, csrf, sign_in
from yugong.api.app import create_app

HX = {"HX-Request": "true"}
FINAL = ("acknowledged", "failed", "timed_out")
TSL: dict[str, Any] = copy.deepcopy(PRESS_TSL)
TSL["properties"].append(
    {
        "identifier": "target_speed",
        "name": "目标转速",
        "accessMode": "rw",
        "dataType": {"type": "int", "specs": {"min": "0", "max": "3000", "step": "1"}},
    }
)


class World:
    def __init__(self, client: TestClient, headers: dict[str, str], press: dict, other: int):
        self.client, self.app, self.api = client, client.app, Api(client)
        self.headers, self.press, self.other = headers, press, other

    def browser(self, username: str) -> TestClient:
        b = TestClient(self.app, base_url="https://testserver")
        # The app's event loop, where the platform (and its command queue) runs; a client
        # of its own would run each request in a loop of its own, gone once it answered.
        b.portal = self.client.portal
        assert sign_in(b, username, USER_PASSWORD).status_code == 303
        return b


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = make_settings(tmp_path_factory.mktemp("commands-web"))
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver") as client:
        app.state.security.passwords.hasher = PasswordHasher(**CHEAP)
        api = Api(client)
        root = api.admin()
        plant = api.setup_tenant(root, "Press Works")
        other = api.setup_tenant(root, "Press Elsewhere")
        for name, role in (("k-eng", "engineer"), ("k-view", "viewer")):
            body = {
                "username": name,
                "password": USER_PASSWORD,
                "role": role,
                "tenant_id": plant.tenant_id,
            }
            api.call("POST", "/api/v1/users", root, 201, json=body)
        product = api.call(
            "POST",
            "/api/v1/products/import",
            plant.headers,
            201,
            params={"name": "Press"},
            json=TSL,
        )
        press = api.call(
            "POST",
            "/api/v1/devices",
            plant.headers,
            201,
            json={"name": "press-1", "product_id": product["id"]},
        )
        yield World(client, plant.headers, press, other.device_id)


def send(b: TestClient, device: int, data: dict[str, str]) -> Any:
    return b.post(f"/console/devices/{device}/commands", data=data, headers={**csrf(b), **HX})


def recorded(world: World) -> int:
    page = world.api.call("GET", f"/api/v1/devices/{world.press['id']}/commands", world.headers)
    return int(page["total"])


def test_the_page_offers_inputs_fitted_to_the_thing_model(world: World) -> None:
    b = world.browser("k-eng")
    device = b.get(f"/console/devices/{world.press['id']}")
    assert f'href="/console/devices/{world.press["id"]}/commands"' in device.text
    page = b.get(f"/console/devices/{world.press['id']}/commands")
    assert page.status_code == 200
    html = page.text
    # The rw property only (temperature is read-only), as a number with its bounds.
    assert 'value="target_speed"' in html and 'value="temperature"' not in html
    assert re.search(r'type="number" min="0" max="3000" step="1"[^>]*required', html)
    # Services with their arguments: an enum as a select of its specs.
    assert 'name="p.speed"' in html and 'name="p.mode"' in html
    assert '<option value="1">manual (1)</option>' in html
    assert 'hx-confirm="确定将 press-1 的 目标转速 设为 {value}？"' in html
    assert 'hx-confirm="确定在 press-1 上调用 设定转速？"' in html


def test_values_the_thing_model_refuses_are_shown_and_not_sent(world: World) -> None:
    b = world.browser("k-eng")
    before = recorded(world)
    high = send(b, world.press["id"], {"kind": "write", "name": "target_speed", "value": "5000"})
    assert high.status_code == 200 and 'data-status="refused"' in high.text
    assert "value: " in high.text and "3000" in high.text
    unknown = send(b, world.press["id"], {"kind": "write", "name": "nope", "value": "1"})
    assert 'data-status="refused"' in unknown.text
    assert "property: &#39;nope&#39; is not in the device&#39;s thing model" in unknown.text
    read_only = send(b, world.press["id"], {"kind": "write", "name": "temperature", "value": "1"})
    assert "accessMode r, not rw" in read_only.text
    params = {"kind": "service", "name": "setSpeed", "p.speed": "3001", "p.mode": "0"}
    bad = send(b, world.press["id"], params)
    assert "params.speed" in bad.text
    # A valid write to a device not behind a gateway: refused, saying why.
    no_way = send(b, world.press["id"], {"kind": "write", "name": "target_speed", "value": "10"})
    assert 'data-status="refused"' in no_way.text and "not behind a gateway" in no_way.text
    assert recorded(world) == before


def test_a_service_call_is_acknowledged_by_a_device_on_the_broker(world: World) -> None:
    port = world.app.state.platform.mqtt_address[1]
    device = RpcDevice(port, world.press["token"], "press-1")
    try:
        b = world.browser("k-eng")
        params = {"kind": "service", "name": "setSpeed", "p.speed": "1500", "p.mode": "1"}
        sent = send(b, world.press["id"], params)
        assert sent.status_code == 200, sent.text
        assert sent.headers.get("HX-Trigger") == "cmd-sent"
        found = re.search(r'id="cmd-(\d+)" data-status="(\w+)"', sent.text)
        assert found, sent.text
        command = int(found.group(1))
        if found.group(2) not in FINAL:
            assert f'hx-get="/console/commands/{command}" hx-trigger="every 1s"' in sent.text
        # Follow it as the page does until the device answered.
        deadline = time.monotonic() + 15
        while True:
            status = b.get(f"/console/commands/{command}", headers=HX)
            state = re.search(r'data-status="(\w+)"', status.text)
            assert state, status.text
            if state.group(1) in FINAL:
                break
            assert time.monotonic() < deadline, status.text
            time.sleep(0.1)
        assert state.group(1) == "acknowledged", status.text
        assert "hx-trigger" not in status.text  # final: no more polling
        assert "设备已确认" in status.text and '{"applied": 1500}' in status.text
        assert status.headers.get("HX-Trigger") == "cmd-done"
        assert device.requests[-1][1] == {
            "method": "setSpeed",
            "params": {"speed": 1500, "mode": 1},
        }
        rows = b.get(f"/console/devices/{world.press['id']}/commands?part=rows", headers=HX)
        assert f"<td>{command}</td>" in rows.text and 'data-status="acknowledged"' in rows.text
    finally:
        device.close()


def test_viewer_sees_but_may_not_send(world: World) -> None:
    v = world.browser("k-view")
    page = v.get(f"/console/devices/{world.press['id']}/commands")
    assert page.status_code == 200 and "data-command" not in page.text
    assert "您的角色可以查看命令" in page.text
    refused = send(v, world.press["id"], {"kind": "write", "name": "target_speed", "value": "1"})
    assert refused.status_code == 403


def test_another_tenants_device_and_commands_are_not_found(world: World) -> None:
    b = world.browser("k-eng")
    assert b.get(f"/console/devices/{world.other}/commands").status_code == 404
    gone = send(b, world.other, {"kind": "write", "name": "mode", "value": "1"})
    assert gone.status_code == 404
    assert b.get("/console/commands/999999").status_code == 404
