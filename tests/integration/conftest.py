"""End-to-end helpers: a whole platform on real sockets or in-process, and a small API
client that sets up tenants, products and devices the way a user would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port
from yugong.core.settings import Settings

ADMIN_PASSWORD = "Platform-Pass-2026!"
USER_PASSWORD = "Tenant-Pass-2026!"

SENSOR_TSL: dict[str, Any] = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "sensor"},
    "properties": [
        {
            "identifier": "temperature",
            "name": "温度",
            "accessMode": "r",
            "dataType": {"type": "float", "specs": {"min": "-40", "max": "125", "unit": "°C"}},
        },
        {
            "identifier": "running",
            "name": "运行",
            "accessMode": "r",
            "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}},
        },
        {
            "identifier": "mode",
            "name": "模式",
            "accessMode": "rw",
            "dataType": {"type": "enum", "specs": {"0": "auto", "1": "manual"}},
        },
        {
            "identifier": "count",
            "name": "计数",
            "accessMode": "r",
            "dataType": {"type": "int", "specs": {"min": "0", "max": "1000000", "step": "1"}},
        },
        {
            "identifier": "label",
            "name": "标签",
            "accessMode": "r",
            "dataType": {"type": "text", "specs": {"length": "64"}},
        },
    ],
    "events": [],
    "services": [],
}


def make_settings(data_dir: Path, database_url: str | None = None, **kw: Any) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        admin_password=ADMIN_PASSWORD,
        http_port=free_port(),
        mqtt_port=free_port(),
        ingest_flush_ms=20,
        secret_key="k" * 40,
        **kw,
    )


@dataclass
class TenantWorld:
    tenant_id: int
    headers: dict[str, str]
    product_id: int
    device_id: int
    token: str


class Api:
    """Calls the API like a script would; fails the test with the problem body on surprise."""

    def __init__(self, client: httpx.Client | Any) -> None:
        self.client = client

    def call(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        expect: int | tuple[int, ...] = 200,
        **kw: Any,
    ) -> Any:
        r = self.client.request(method, path, headers=headers, **kw)
        wanted = (expect,) if isinstance(expect, int) else expect
        assert r.status_code in wanted, f"{method} {path}: {r.status_code} {r.text}"
        if r.headers.get("content-type", "").startswith(
            ("application/json", "application/problem+json")
        ):
            return r.json()
        return r

    def login(self, username: str, password: str) -> dict[str, str]:
        body = self.call(
            "POST", "/api/v1/auth/login", json={"username": username, "password": password}
        )
        return {"Authorization": f"Bearer {body['access_token']}"}

    def admin(self) -> dict[str, str]:
        return self.login("admin", ADMIN_PASSWORD)

    def setup_tenant(self, admin: dict[str, str], name: str) -> TenantWorld:
        tenant = self.call("POST", "/api/v1/tenants", admin, 201, json={"name": name})
        self.call(
            "POST",
            "/api/v1/users",
            admin,
            201,
            json={
                "username": f"{tenant['slug']}-admin",
                "password": USER_PASSWORD,
                "role": "tenant_admin",
                "tenant_id": tenant["id"],
            },
        )
        h = self.login(f"{tenant['slug']}-admin", USER_PASSWORD)
        product = self.call(
            "POST", "/api/v1/products/import", h, 201, params={"name": "Sensor"}, json=SENSOR_TSL
        )
        device = self.call(
            "POST",
            "/api/v1/devices",
            h,
            201,
            json={"name": f"{tenant['slug']}-dev-1", "product_id": product["id"]},
        )
        return TenantWorld(tenant["id"], h, product["id"], device["id"], device["token"])

    def wait_for(self, check: Callable[[], Any], timeout: float = 15.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError("condition not met in time")
            time.sleep(0.05)

    def latest(self, world: TenantWorld, keys: str | None = None) -> dict[str, Any]:
        params = {"keys": keys} if keys else None
        body = self.call(
            "GET", f"/api/v1/devices/{world.device_id}/latest", world.headers, params=params
        )
        return {v["property"]: v for v in body["values"]}


Call = Callable[..., Awaitable[Any]]


async def tenant_call(api: Api, name: str) -> tuple[TenantWorld, Call]:
    """Tenant ``name`` set up by the platform admin, and an awaitable ``call(method, path,
    expect, **kw)`` to the API as that tenant's admin."""
    world = await asyncio.to_thread(api.setup_tenant, api.admin(), name)

    async def call(method: str, path: str, expect: int | tuple[int, ...], **kw: Any) -> Any:
        return await asyncio.to_thread(api.call, method, path, world.headers, expect, **kw)

    return world, call


async def provisioned(call: Call, name: str, prop: str, value: Any) -> int:
    """The id of edge device ``name`` once its ``prop`` reads ``value`` on the platform."""
    deadline = time.monotonic() + 20
    latest: Any = None
    while True:
        assert time.monotonic() < deadline, (
            f"{name} not provisioned with {prop}={value!r}: {latest}"
        )
        page = await call("GET", "/api/v1/devices", 200, params={"search": name})
        if page["items"]:
            device = int(page["items"][0]["id"])
            latest = await call("GET", f"/api/v1/devices/{device}/latest", 200)
            if any(v["property"] == prop and v["value"] == value for v in latest["values"]):
                return device
        await asyncio.sleep(0.2)


@pytest.fixture(params=["embedded", "postgres"])
def backend_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None: embedded SQLite + DuckDB; else a PostgreSQL URL for both stores."""
    if request.param == "embedded":
        yield None
    else:
        yield request.getfixturevalue("pg_url")
