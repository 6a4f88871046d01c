"""Tenant A can neither read nor write tenant B's data through any endpoint.

The endpoints are taken from the application's own route table, so a new route that takes an
object id is covered (and must be listed below with a body if it needs one)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import SENSOR_TSL, Api, TenantWorld, make_settings
from yugong.server import BackgroundServer

T0 = 1_700_000_000_000
# Bodies that would succeed on one's own objects, so a refusal is about the tenant.
BODIES: dict[tuple[str, str], Any] = {
    ("PATCH", "/api/v1/devices/{device_id}"): {"label": "taken over"},
    ("PATCH", "/api/v1/products/{product_id}"): {"name": "taken over"},
    ("PUT", "/api/v1/products/{product_id}/tsl"): None,  # filled with the sensor model
    ("PATCH", "/api/v1/assets/{asset_id}"): {"name": "taken over"},
    ("PATCH", "/api/v1/tenants/{tenant_id}"): {"name": "taken over"},
    ("PATCH", "/api/v1/users/{user_id}"): {"display_name": "taken over"},
    ("POST", "/api/v1/devices/{device_id}/properties/{identifier}"): {"value": 1},
    ("POST", "/api/v1/alarms/{alarm_id}/assign"): {"user_id": None},
    ("POST", "/api/v1/alarms/{alarm_id}/comments"): {"text": "taken over"},
    ("POST", "/api/v1/devices/{device_id}/commands"): {"kind": "write", "name": "t", "value": 1},
}


def _routes(app: Any) -> list[tuple[str, str]]:
    """Every operation of the published OpenAPI document whose path names an object id."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        if re.search(r"\{(\w+_id|identifier)\}", path):
            out.extend((m.upper(), path) for m in sorted(ops) if m != "parameters")
    return out


@pytest.fixture(scope="module")
def two_tenants(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = make_settings(Path(tmp_path_factory.mktemp("iso")), mqtt_embedded=False)
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        admin = api.admin()
        a = api.setup_tenant(admin, "Tenant A")
        b = api.setup_tenant(admin, "Tenant B")
        for w in (a, b):
            api.call(
                "POST",
                f"/api/v1/{w.token}/telemetry",
                json={"ts": T0, "values": {"temperature": 10.0 + w.tenant_id}},
            )
        b_asset = api.call(
            "POST", "/api/v1/assets", b.headers, 201, json={"name": "B site", "kind": "site"}
        )
        b_user = api.call("GET", "/api/v1/auth/me", b.headers)
        b_key = api.call("POST", "/api/v1/apikeys", b.headers, 201, json={"name": "b-key"})
        api.wait_for(lambda: api.latest(b)["temperature"]["value"] is not None)
        ids = {
            "device_id": b.device_id,
            "product_id": b.product_id,
            "asset_id": b_asset["id"],
            "tenant_id": b.tenant_id,
            "user_id": b_user["id"],
            "key_id": b_key.get("id") or b_key["info"]["id"],
            "identifier": "mode",  # the sensor model's read-write property
            "alarm_id": srv.platform.alarms.raise_alarm(
                b.tenant_id, name="B alarm", severity="major", device=b.device_id
            ).alarm,
        }
        yield api, a, b, ids, srv.app


def test_every_id_route_refuses_the_other_tenant(two_tenants: Any) -> None:
    api, a, b, ids, app = two_tenants
    routes = _routes(app)
    assert len(routes) >= 15, routes
    checked = []
    for method, path in routes:
        names = re.findall(r"\{(\w+)\}", path)
        if any(n not in ids for n in names):
            continue
        url = path.format(**ids)
        body = BODIES.get((method, path))
        if (method, path) == ("PUT", "/api/v1/products/{product_id}/tsl"):
            body = SENSOR_TSL
        r = api.client.request(
            method,
            url,
            headers=a.headers,
            json=body if method in ("POST", "PUT", "PATCH") else None,
        )
        assert r.status_code in (403, 404), (
            f"{method} {url} as tenant A -> {r.status_code} {r.text}"
        )
        assert r.headers["content-type"].startswith("application/problem+json")
        checked.append(f"{method} {path}")
    assert len(checked) >= 15, checked
    _b_is_intact(api, b)
    alarm = api.call("GET", f"/api/v1/alarms/{ids['alarm_id']}", b.headers)
    assert (alarm["state"], alarm["acknowledged"], alarm["assignee_id"]) == ("active", False, None)
    history = api.call("GET", f"/api/v1/alarms/{ids['alarm_id']}/history", b.headers)
    assert [e["kind"] for e in history] == ["raised"]


def test_lists_show_only_ones_own(two_tenants: Any) -> None:
    api, a, b, _ids, _ = two_tenants
    for path in (
        "/api/v1/devices",
        "/api/v1/products",
        "/api/v1/assets",
        "/api/v1/users",
        "/api/v1/apikeys",
    ):
        body = api.call("GET", path, a.headers)
        items = body["items"] if isinstance(body, dict) else body
        assert all(i.get("tenant_id", a.tenant_id) == a.tenant_id for i in items), path
        r = api.client.get(path, headers=a.headers, params={"tenant_id": b.tenant_id})
        assert r.status_code in (403, 404), f"{path}?tenant_id=B -> {r.status_code}"
    tenants = api.call("GET", "/api/v1/tenants", a.headers, expect=(200, 403))
    if isinstance(tenants, dict) and "items" in tenants:
        assert [t["id"] for t in tenants["items"]] == [a.tenant_id]


def test_telemetry_and_queries_refuse_the_other_tenant(two_tenants: Any) -> None:
    api, a, b, _ids, _ = two_tenants
    h = a.headers
    for method, path, body in [
        (
            "POST",
            "/api/v1/telemetry",
            [{"device": b.device_id, "ts": T0 + 1, "values": {"temperature": 99.0}}],
        ),
        (
            "POST",
            "/api/v1/telemetry",
            {"device": b.device_id, "columns": {"ts": [T0 + 2], "temperature": [99.0]}},
        ),
        (
            "POST",
            "/api/v1/telemetry",
            [{"device": "tenant-b-dev-1", "ts": T0 + 3, "values": {"temperature": 99.0}}],
        ),
        ("POST", "/api/v1/query/latest", {"series": [{"device": b.device_id}]}),
        (
            "POST",
            "/api/v1/query/timeseries",
            {"series": [{"device": b.device_id}], "start": T0 - 1, "end": T0 + 10},
        ),
        ("GET", f"/api/v1/devices/{b.device_id}/latest", None),
        ("GET", f"/api/v1/devices/{b.device_id}/timeseries", None),
    ]:
        r = api.client.request(method, path, headers=h, json=body)
        if path == "/api/v1/telemetry" and r.status_code == 422:
            # "Unknown device", exactly as for a device that does not exist anywhere.
            ghost = api.client.request(method, path, headers=h, json=_swap(body, b))
            assert ghost.status_code == 422
            assert ghost.json()["errors"] == r.json()["errors"]
            assert (
                ghost.json()["detail"].split("device")[0] == r.json()["detail"].split("device")[0]
            )
            continue
        assert r.status_code in (403, 404), f"{method} {path} -> {r.status_code} {r.text}"
    # A's own device token cannot write to B either: the token is the identity.
    r = api.client.post(
        f"/api/v1/{a.token}/telemetry",
        json={"values": {"temperature": 55.0}, "device": b.device_id},
    )
    assert r.status_code in (200, 422)
    _b_is_intact(api, b)


def _swap(body: Any, b: TenantWorld) -> Any:
    """The same request naming a device that exists in no tenant."""
    text = httpx.Request("POST", "/", json=body).content.decode()
    text = text.replace(f'"device":{b.device_id}', '"device":987654')
    text = text.replace('"tenant-b-dev-1"', '"no-such-device"')
    import json

    return json.loads(text)


def _b_is_intact(api: Api, b: TenantWorld) -> None:
    latest = api.latest(b)
    assert latest["temperature"]["value"] == 10.0 + b.tenant_id
    assert latest["temperature"]["ts"] == T0
    device = api.call("GET", f"/api/v1/devices/{b.device_id}", b.headers)
    assert device["label"] == "" and device["name"] == "tenant-b-dev-1"
    product = api.call("GET", f"/api/v1/products/{b.product_id}", b.headers)
    assert product["name"] == "Sensor"
    r = api.client.post(
        f"/api/v1/{b.token}/telemetry",
        json={"ts": T0, "values": {"temperature": 10.0 + b.tenant_id}},
    )
    assert r.status_code == 200, "B's token still works"
