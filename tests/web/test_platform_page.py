"""The platform figures page and its CSV export over HTTP: the numbers of a known world,
per tenant, per industry and in total; UTF-8 with a byte order mark and translated headers;
platform admins only."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.integration.conftest import (
    ADMIN_PASSWORD,
    USER_PASSWORD,
    Api,
    TenantWorld,
    make_settings,
)
from tests.web.test_console_access import CHEAP, csrf, sign_in
from yugong.api.app import create_app
from yugong.platform.registry.models import Device


class World:
    def __init__(self, app: Any, api: Api, series: list[int]) -> None:
        self.app, self.api = app, api
        self.series = series  # collection points of Mill, Forge and Depot

    def browser(self, username: str, password: str) -> TestClient:
        b = TestClient(self.app, base_url="https://testserver")
        assert sign_in(b, username, password).status_code == 303
        return b


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Steel: Mill (2 devices, 1 online, a series per device and property; its admin plus
    a user who never signed in) and Forge (1 device); Depot without an industry."""
    settings = make_settings(tmp_path_factory.mktemp("figures"), mqtt_embedded=False)
    app = create_app(settings)
    with TestClient(app, base_url="https://testserver") as client:
        app.state.security.passwords.hasher = PasswordHasher(**CHEAP)
        api = Api(client)
        root = api.admin()
        mill = api.setup_tenant(root, "Mill")
        forge = api.setup_tenant(root, "Forge")
        depot = api.setup_tenant(root, "Depot")
        for t in (mill, forge):
            api.call("PATCH", f"/api/v1/tenants/{t.tenant_id}", root, json={"industry": "steel"})
        body = {"name": "mill-dev-2", "product_id": mill.product_id}
        api.call("POST", "/api/v1/devices", mill.headers, 201, json=body)
        user = {"username": "mill-idle", "password": USER_PASSWORD, "role": "viewer"}
        api.call("POST", "/api/v1/users", mill.headers, 201, json=user)
        series = {t.tenant_id: _series(api, t) for t in (mill, forge, depot)}
        assert all(series.values())
        with app.state.registry.db.session() as s:
            s.execute(update(Device).where(Device.id == mill.device_id).values(online=True))
        yield World(app, api, [series[t.tenant_id] for t in (mill, forge, depot)])


def _series(api: Api, world: TenantWorld) -> int:
    """A tenant's collection points as the API lists them, device by device."""
    devices = api.call("GET", "/api/v1/devices", world.headers)["items"]
    return sum(
        len(api.call("GET", f"/api/v1/devices/{d['id']}/series", world.headers)) for d in devices
    )


def test_the_page_shows_the_figures(world: World) -> None:
    b = world.browser("admin", ADMIN_PASSWORD)
    page = b.get("/console/platform")
    assert page.status_code == 200 and "平台数据" in page.text
    for figure, value in (("tenants", 3), ("devices", 4), ("online", 1), ("users", 4)):
        assert f'data-figure="{figure}">{value}<' in page.text, figure
    assert f'data-figure="series">{sum(world.series)}<' in page.text
    assert 'data-figure="apps">0<' in page.text and "未安装 App 运行环境" in page.text
    assert 'data-subtotal="steel"' in page.text and 'data-subtotal=""' in page.text
    assert 'href="/console/platform.csv"' in page.text


def rows_of(content: bytes) -> list[list[str]]:
    assert content.startswith(b"\xef\xbb\xbf")  # the BOM: spreadsheets then read UTF-8
    return list(csv.reader(io.StringIO(content.decode("utf-8-sig"))))


def test_csv_holds_tenants_subtotals_and_total(world: World) -> None:
    b = world.browser("admin", ADMIN_PASSWORD)
    got = b.get("/console/platform.csv")
    assert got.status_code == 200 and got.headers["content-type"].startswith("text/csv")
    assert "attachment" in got.headers["content-disposition"]
    header, *rows = rows_of(got.content)
    assert header == [
        "行类型",
        "租户",
        "行业",
        "设备总数",
        "在线设备",
        "采集点",
        "企业用户",
        "活跃用户",
        "工业组件",
        "机理模型",
        "工业 App",
    ]
    by = {(r[0], r[1] or r[2]): r for r in rows}
    mill, forge, depot = (str(n) for n in world.series)
    assert by[("租户", "Mill")][2:8] == ["steel", "2", "1", mill, "2", "1"]
    assert by[("租户", "Forge")][2:8] == ["steel", "1", "0", forge, "1", "1"]
    steel = str(world.series[0] + world.series[1])
    assert by[("行业小计", "steel")][3:8] == ["3", "1", steel, "3", "2"]
    assert by[("租户", "Depot")][2:8] == ["未指定", "1", "0", depot, "1", "1"]
    assert by[("行业小计", "未指定")][3:8] == ["1", "0", depot, "1", "1"]
    assert [r[0] for r in rows] == ["租户", "租户", "行业小计", "租户", "行业小计", "合计"]
    total = rows[-1]
    assert total[3:8] == ["4", "1", str(sum(world.series)), "4", "3"]
    catalog = world.app.state.platform.components.catalog
    mechanism = len(catalog.search(category="mechanism"))
    assert mechanism > 0 and total[8:] == [str(len(catalog.search())), str(mechanism), "0"]


def test_csv_speaks_the_viewers_language(world: World) -> None:
    b = world.browser("admin", ADMIN_PASSWORD)
    b.post("/console/language", data={"locale": "en"}, headers=csrf(b))
    try:
        header = rows_of(b.get("/console/platform.csv").content)[0]
        assert header[:4] == ["Row", "Tenant", "Industry", "Devices"]
    finally:
        b.post("/console/language", data={"locale": "zh-CN"}, headers=csrf(b))


@pytest.mark.parametrize("path", ["/console/platform", "/console/platform.csv"])
def test_refused_for_tenant_admins(world: World, path: str) -> None:
    b = world.browser("mill-admin", USER_PASSWORD)
    got = b.get(path)
    assert got.status_code == 403 and "无权访问" in got.text
    assert 'href="/console/platform"' not in b.get("/console/").text
