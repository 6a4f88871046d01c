"""Edge gateways in the console: the tenant's gateways, a gateway's devices and the health
it publishes about itself (device ``<gateway>-health``) as tiles; another tenant's gateway
is not found."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from tests.integration.conftest import USER_PASSWORD, Api, TenantWorld, make_settings
from tests.web.test_console_access import CHEAP, sign_in
from yugong.api.app import create_app
from yugong.edge.gateway import Health
from yugong.web.pages.gateways import health_name

HEALTH_TSL: dict[str, Any] = {
    "profile": {"productKey": "edge-health"},
    "properties": [
        {"identifier": n, "name": n, "accessMode": "r", "dataType": {"type": "double"}}
        for n in Health.__slots__
    ],
}
GATEWAY_TSL: dict[str, Any] = {"profile": {"productKey": "edge-gw"}, "properties": []}


class Env:
    def __init__(self, app: Any, api: Api, world: TenantWorld, gw: dict, other_gw: dict) -> None:
        self.app, self.api, self.world, self.gw, self.other_gw = app, api, world, gw, other_gw

    def browser(self, username: str) -> TestClient:
        b = TestClient(self.app, base_url="https://testserver")
        assert sign_in(b, username, USER_PASSWORD).status_code == 303
        return b


def _gateway(api: Api, world: TenantWorld, name: str, health: dict[str, float] | None) -> dict:
    h = world.headers
    gw_product = api.call(
        "POST", "/api/v1/products/import", h, 201, params={"name": "Gateway"}, json=GATEWAY_TSL
    )
    api.call("PATCH", f"/api/v1/products/{gw_product['id']}", h, json={"is_gateway": True})
    gw = api.call(
        "POST", "/api/v1/devices", h, 201, json={"name": name, "product_id": gw_product["id"]}
    )
    api.call(
        "POST",
        "/api/v1/devices",
        h,
        201,
        json={"name": f"{name}-plc-1", "product_id": world.product_id, "gateway_id": gw["id"]},
    )
    if health is not None:
        hp = api.call(
            "POST", "/api/v1/products/import", h, 201, params={"name": "Health"}, json=HEALTH_TSL
        )
        hd = api.call(
            "POST",
            "/api/v1/devices",
            h,
            201,
            json={"name": health_name(name), "product_id": hp["id"], "gateway_id": gw["id"]},
        )
        now = int(time.time() * 1000)
        rows = [
            {"ts": now - 60_000, "values": {**health, "buffer_rows": 3}},
            {"ts": now, "values": health},
        ]
        api.call("POST", f"/api/v1/{hd['token']}/telemetry", json=rows)
    return dict(gw)


HEALTH = {
    "connectors": 2,
    "devices": 5,
    "devices_online": 4,
    "poll_latency_ms_avg": 12.25,
    "poll_latency_ms_max": 48.5,
    "buffer_rows": 1234,
    "dropped_rows": 7,
}


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    app = create_app(make_settings(tmp_path_factory.mktemp("gateways"), mqtt_embedded=False))
    with TestClient(app, base_url="https://testserver") as client:
        app.state.security.passwords.hasher = PasswordHasher(**CHEAP)
        api = Api(client)
        root = api.admin()
        world = api.setup_tenant(root, "Gateway Works")
        other = api.setup_tenant(root, "Gateway Other")
        api.call(
            "POST",
            "/api/v1/users",
            root,
            201,
            json={
                "username": "g-viewer",
                "password": USER_PASSWORD,
                "role": "viewer",
                "tenant_id": world.tenant_id,
            },
        )
        gw = _gateway(api, world, "edge-1", HEALTH)
        other_gw = _gateway(api, other, "edge-9", None)
        yield Env(app, api, world, gw, other_gw)


def test_gateway_list_shows_the_tenants_gateways(env: Env) -> None:
    page = env.browser("g-viewer").get("/console/gateways")
    assert page.status_code == 200
    assert f'href="/console/gateways/{env.gw["id"]}"' in page.text
    assert "edge-9" not in page.text


def test_gateway_health_values_are_shown(env: Env) -> None:
    page = env.browser("g-viewer").get(f"/console/gateways/{env.gw['id']}")
    assert page.status_code == 200
    text = page.text
    assert "edge-1-plc-1" in text  # the device behind it
    for key, shown in (
        ("connectors", "2"),
        ("devices_online", "4"),
        ("poll_latency_ms_avg", "12.2"),
        ("poll_latency_ms_max", "48.5"),
        ("buffer_rows", "1234"),
        ("dropped_rows", "7"),
    ):
        start = text.index(f'data-health="{key}"')
        assert f'<span class="big">{shown}' in text[start : start + 400], key
    assert 'id="gw-latency"' in text and "/static/gateways.js" in text
    # The dropped count is flagged.
    start = text.index('data-health="dropped_rows"')
    assert "sev-major" in text[start - 60 : start]


def test_another_tenants_gateway_is_not_found(env: Env) -> None:
    b = env.browser("g-viewer")
    assert b.get(f"/console/gateways/{env.other_gw['id']}").status_code == 404
    # A device that is not a gateway has no gateway page either.
    assert b.get(f"/console/gateways/{env.world.device_id}").status_code == 404


def test_overview_shows_each_gateways_health_at_a_glance(env: Env) -> None:
    page = env.browser("g-viewer").get("/console/")
    assert page.status_code == 200
    row = page.text[page.text.index(f'href="/console/gateways/{env.gw["id"]}"') :]
    row = row[: row.index("</tr>")]
    # Average poll latency, buffered rows, and every kind of drop added up.
    assert "<td>12.2</td>" in row and "<td>1234</td>" in row
    assert '<td class="error">7</td>' in row
    assert "edge-9" not in page.text
