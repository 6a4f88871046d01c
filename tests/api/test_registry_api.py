"""HTTP API of the registry: tenants, assets, products (TSL), devices.

The app here is the registry routers on a bare FastAPI with the project's problem+json
handlers; the caller is chosen per request with an ``X-As`` header standing in for
authentication (which has its own tests)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy import text

from yugong.api import problems
from yugong.api.deps import current_principal
from yugong.api.routers import assets, devices, products, tenants
from yugong.core.samples import SAMPLE_SCHEMA
from yugong.infra.db import Database
from yugong.infra.migrate import upgrade
from yugong.infra.timeseries import TimeSeriesStore, open_store
from yugong.platform.registry import Registry
from yugong.security.principal import Principal, Role

ROOT = Principal("user", 1, None, Role.PLATFORM_ADMIN, "root")

TSL: dict[str, Any] = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"version": "1.0", "productKey": "a1Meter"},
    "properties": [
        {
            "identifier": "Voltage",
            "name": "电压",
            "accessMode": "r",
            "required": False,
            "dataType": {
                "type": "float",
                "specs": {"min": "0", "max": "500", "unit": "V", "unitName": "伏特", "step": "0.1"},
            },
        },
        {
            "identifier": "Switch",
            "name": "开关",
            "accessMode": "rw",
            "required": False,
            "dataType": {"type": "bool", "specs": {"0": "关", "1": "开"}},
        },
    ],
    "events": [
        {
            "identifier": "post",
            "name": "post",
            "type": "info",
            "required": True,
            "desc": "属性上报",
            "method": "thing.event.property.post",
            "outputData": [
                {
                    "identifier": "Voltage",
                    "name": "电压",
                    "dataType": {"type": "float", "specs": {"min": "0", "max": "500"}},
                }
            ],
        },
    ],
    "services": [
        {
            "identifier": "get",
            "name": "get",
            "required": True,
            "callType": "async",
            "method": "thing.service.property.get",
            "inputData": ["Voltage", "Switch"],
            "outputData": [],
        },
    ],
}


class Api:
    def __init__(self, tmp: Path) -> None:
        url = f"sqlite:///{tmp / 'registry.db'}"
        upgrade(url)
        self.db = Database(url)
        self.store: TimeSeriesStore = open_store(f"duckdb:///{tmp / 'ts.duckdb'}")
        self.registry = Registry(self.db)
        ta = self.registry.tenants.create(ROOT, name="Acme")
        tb = self.registry.tenants.create(ROOT, name="Bright")
        self.ta, self.tb = ta.id, tb.id
        self.as_: dict[str, Principal] = {
            "root": ROOT,
            "a": Principal("user", 2, ta.id, Role.TENANT_ADMIN, "alice"),
            "b": Principal("user", 3, tb.id, Role.TENANT_ADMIN, "bob"),
            "viewer": Principal("user", 4, ta.id, Role.VIEWER, "vera"),
        }
        app = FastAPI()
        problems.install(app)
        for module in (tenants, assets, products, devices):
            app.include_router(module.router, prefix="/api/v1")
        app.state.registry = self.registry
        app.state.store = self.store

        def principal(request: Request) -> Principal:
            return self.as_[request.headers.get("X-As", "a")]

        app.dependency_overrides[current_principal] = principal
        self.client = TestClient(app)

    def call(self, method: str, path: str, who: str = "a", **kw: Any) -> Any:
        return self.client.request(method, "/api/v1" + path, headers={"X-As": who}, **kw)

    def close(self) -> None:
        self.client.close()
        self.store.close()
        self.db.dispose()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    a = Api(tmp_path)
    yield a
    a.close()


def _problem(r: Any, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status
    return body


def test_tenants(api: Api) -> None:
    r = api.call(
        "POST",
        "/tenants",
        "root",
        json={"name": "Ceres Foods", "industry": "process", "retention_days": 365},
    )
    assert r.status_code == 201, r.text
    t = r.json()
    assert (t["slug"], t["industry"], t["retention_days"], t["active"]) == (
        "ceres-foods",
        "process",
        365,
        True,
    )
    _problem(api.call("POST", "/tenants", "a", json={"name": "Mine"}), 403)
    body = _problem(api.call("POST", "/tenants", "root", json={"name": "Ceres Foods"}), 409)
    assert body["errors"] == [{"loc": "name", "msg": "already exists"}]
    body = _problem(
        api.call("POST", "/tenants", "root", json={"name": "x", "retention_days": 0}), 422
    )
    assert body["errors"][0]["loc"] == "body.retention_days"

    page = api.call("GET", "/tenants", "root", params={"limit": 2}).json()
    assert page["total"] == 3 and len(page["items"]) == 2
    assert [x["id"] for x in api.call("GET", "/tenants", "a").json()["items"]] == [api.ta]
    _problem(api.call("GET", f"/tenants/{api.tb}", "a"), 404)

    r = api.call("PATCH", f"/tenants/{t['id']}", "root", json={"retention_days": None})
    assert r.status_code == 200 and r.json()["retention_days"] is None
    body = _problem(api.call("PATCH", f"/tenants/{t['id']}", "root", json={"name": None}), 422)
    assert body["errors"][0]["loc"] == "body.name"
    assert api.call("DELETE", f"/tenants/{t['id']}", "root").status_code == 204
    _problem(api.call("GET", f"/tenants/{t['id']}", "root"), 404)


def test_asset_tree(api: Api) -> None:
    site = api.call("POST", "/assets", json={"name": "Suzhou", "kind": "site"}).json()
    ws = api.call(
        "POST", "/assets", json={"name": "Hall A", "kind": "workshop", "parent_id": site["id"]}
    ).json()
    line = api.call(
        "POST",
        "/assets",
        json={"name": "L1", "kind": "line", "parent_id": ws["id"], "attributes": {"takt_s": 42}},
    )
    assert line.status_code == 201 and line.json()["attributes"] == {"takt_s": 42}

    body = _problem(
        api.call("POST", "/assets", json={"name": "L2", "kind": "line", "parent_id": site["id"]}),
        422,
    )
    assert body["errors"] == [
        {"loc": "parent_id", "msg": "the parent of a line must be a workshop, not a site"}
    ]
    body = _problem(api.call("POST", "/assets", json={"name": "X", "kind": "building"}), 422)
    assert body["errors"][0]["loc"] == "body.kind"
    _problem(
        api.call(
            "POST", "/assets", json={"name": "Hall A", "kind": "workshop", "parent_id": site["id"]}
        ),
        409,
    )

    tree = api.call("GET", "/assets/tree").json()
    assert tree == [
        {
            "id": site["id"],
            "kind": "site",
            "name": "Suzhou",
            "attributes": {},
            "children": [
                {
                    "id": ws["id"],
                    "kind": "workshop",
                    "name": "Hall A",
                    "attributes": {},
                    "children": [
                        {
                            "id": line.json()["id"],
                            "kind": "line",
                            "name": "L1",
                            "attributes": {"takt_s": 42},
                            "children": [],
                        }
                    ],
                }
            ],
        }
    ]
    assert api.call("GET", "/assets/tree", "b").json() == []
    assert api.call("GET", "/assets", params={"kind": "workshop"}).json()["total"] == 1
    assert (
        api.call("GET", "/assets", params={"parent_id": site["id"]}).json()["items"][0]["id"]
        == ws["id"]
    )

    r = api.call("PATCH", f"/assets/{ws['id']}", json={"name": "Hall B"})
    assert r.status_code == 200 and r.json()["name"] == "Hall B"
    _problem(api.call("PATCH", f"/assets/{ws['id']}", "b", json={"name": "stolen"}), 404)
    _problem(api.call("DELETE", f"/assets/{ws['id']}"), 409)
    assert api.call("DELETE", f"/assets/{line.json()['id']}").status_code == 204


def test_product_import_export(api: Api) -> None:
    r = api.call("POST", "/products/import", json=TSL, params={"name": "智能电表"})
    assert r.status_code == 201, r.text
    prod = r.json()
    assert (prod["key"], prod["name"], prod["version"], prod["properties"]) == (
        "a1Meter",
        "智能电表",
        1,
        2,
    )
    exported = api.call("GET", f"/products/{prod['id']}/tsl")
    assert exported.status_code == 200
    assert json.dumps(exported.json(), ensure_ascii=False) == json.dumps(TSL, ensure_ascii=False)
    _problem(api.call("GET", f"/products/{prod['id']}/tsl", "b"), 404)

    changed = json.loads(json.dumps(TSL))
    changed["properties"].append(
        {
            "identifier": "Current",
            "name": "电流",
            "accessMode": "r",
            "dataType": {"type": "double", "specs": {"unit": "A"}},
        }
    )
    r = api.call("POST", "/products/import", json=changed)
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["properties"] == 3

    bad = json.loads(json.dumps(TSL))
    bad["properties"][0]["dataType"]["specs"]["min"] = "900"
    body = _problem(api.call("PUT", f"/products/{prod['id']}/tsl", json=bad), 422)
    assert body["errors"] == [{"loc": "properties[0].dataType.specs.min", "msg": "must be <= max"}]
    assert "properties[0].dataType.specs.min" in body["detail"]
    assert api.call("GET", f"/products/{prod['id']}").json()["version"] == 2

    r = api.call("PUT", f"/products/{prod['id']}/tsl", json=TSL)
    assert r.status_code == 200 and r.json()["version"] == 3

    r = api.call("POST", "/products", json={"key": "gw", "name": "Edge", "is_gateway": True})
    assert r.status_code == 201 and r.json()["properties"] == 0
    body = _problem(api.call("POST", "/products", json={"key": "a b", "name": "x"}), 422)
    assert body["errors"][0]["loc"] == "body.key"
    _problem(api.call("POST", "/products", json={"key": "gw", "name": "again"}), 409)
    page = api.call("GET", "/products", params={"search": "edge"}).json()
    assert [p["key"] for p in page["items"]] == ["gw"]
    assert api.call("GET", "/products", params={"is_gateway": "false"}).json()["total"] == 1
    assert api.call("GET", "/products", "b").json()["total"] == 0
    r = api.call("PATCH", f"/products/{prod['id']}", json={"description": "三相表"})
    assert r.json()["description"] == "三相表"
    _problem(api.call("POST", "/products", "viewer", json={"key": "v", "name": "v"}), 403)


def test_devices(api: Api) -> None:
    prod = api.call("POST", "/products/import", json=TSL).json()
    gw_prod = api.call(
        "POST", "/products", json={"key": "gw", "name": "GW", "is_gateway": True}
    ).json()
    gw = api.call("POST", "/devices", json={"name": "gw-1", "product_id": gw_prod["id"]}).json()
    assert gw["is_gateway"] is True
    r = api.call(
        "POST",
        "/devices",
        json={
            "name": "meter-1",
            "product_id": prod["id"],
            "gateway_id": gw["id"],
            "label": "1号表",
        },
    )
    assert r.status_code == 201, r.text
    dev = r.json()
    token = dev.pop("token")
    assert dev["gateway_id"] == gw["id"] and dev["online"] is False
    with api.db.session() as s:
        stored = s.execute(
            text("SELECT token_hash FROM devices WHERE id = :i"), {"i": dev["id"]}
        ).scalar()
    assert stored == hashlib.sha256(token.encode()).hexdigest()

    got = api.call("GET", f"/devices/{dev['id']}").json()
    assert "token" not in got and got == dev

    series = api.call("GET", f"/devices/{dev['id']}/series").json()
    assert [s["property"] for s in series] == ["Voltage", "Switch"]

    for i in range(2, 6):
        api.call("POST", "/devices", json={"name": f"meter-{i}", "product_id": prod["id"]})
    page = api.call(
        "GET", "/devices", params={"product_id": prod["id"], "limit": 2, "offset": 2}
    ).json()
    assert page["total"] == 5 and [d["name"] for d in page["items"]] == ["meter-3", "meter-4"]
    assert api.call("GET", "/devices", params={"search": "1号"}).json()["total"] == 1
    assert api.call("GET", "/devices", params={"gateway_id": gw["id"]}).json()["total"] == 1
    assert api.call("GET", "/devices", params={"online": "true"}).json()["total"] == 0
    body = _problem(api.call("GET", "/devices", params={"limit": 5000}), 422)
    assert body["errors"][0]["loc"] == "query.limit"

    body = _problem(
        api.call("POST", "/devices", json={"name": "meter-1", "product_id": prod["id"]}), 409
    )
    assert body["errors"][0]["loc"] == "name"
    body = _problem(api.call("POST", "/devices", json={"name": "x", "product_id": 9999}), 422)
    assert body["errors"] == [{"loc": "product_id", "msg": "product 9999 not found"}]
    body = _problem(
        api.call("POST", "/devices", json={"name": "x", "product_id": prod["id"], "secret": 1}), 422
    )
    assert body["errors"][0]["loc"] == "body.secret"

    r = api.call("PATCH", f"/devices/{dev['id']}", json={"gateway_id": None, "label": "L"})
    assert r.status_code == 200 and r.json()["gateway_id"] is None and r.json()["label"] == "L"
    _problem(api.call("PATCH", f"/devices/{dev['id']}", json={"is_gateway": None}), 422)

    r = api.call("POST", f"/devices/{dev['id']}/token")
    assert r.status_code == 200
    new = r.json()["token"]
    assert new != token and api.registry.directory.by_token(token) is None
    assert api.registry.directory.by_token(new) is not None
    _problem(api.call("POST", f"/devices/{dev['id']}/token", "viewer"), 403)

    # deleting a device deletes its telemetry
    ids = [s["id"] for s in series]
    api.store.write(
        pa.table(
            {
                "tenant": [api.ta] * 2,
                "series": ids,
                "ts": [1_000_000] * 2,
                "value": [230.0, 1.0],
                "text": [None, None],
                "quality": [0, 0],
            },
            schema=SAMPLE_SCHEMA,
        )
    )
    assert api.store.latest(ids).num_rows == 2
    assert api.call("DELETE", f"/devices/{dev['id']}").status_code == 204
    assert api.store.latest(ids).num_rows == 0
    _problem(api.call("GET", f"/devices/{dev['id']}"), 404)


def test_isolation_over_http(api: Api) -> None:
    prod = api.call("POST", "/products/import", json=TSL).json()
    dev = api.call("POST", "/devices", json={"name": "a-dev", "product_id": prod["id"]}).json()
    site = api.call("POST", "/assets", json={"name": "A site", "kind": "site"}).json()
    for method, path, kw in [
        ("GET", f"/devices/{dev['id']}", {}),
        ("PATCH", f"/devices/{dev['id']}", {"json": {"label": "mine"}}),
        ("DELETE", f"/devices/{dev['id']}", {}),
        ("POST", f"/devices/{dev['id']}/token", {}),
        ("GET", f"/devices/{dev['id']}/series", {}),
        ("GET", f"/products/{prod['id']}", {}),
        ("PUT", f"/products/{prod['id']}/tsl", {"json": TSL}),
        ("DELETE", f"/products/{prod['id']}", {}),
        ("GET", f"/assets/{site['id']}", {}),
        ("DELETE", f"/assets/{site['id']}", {}),
    ]:
        body = _problem(api.call(method, path, "b", **kw), 404)
        assert "not found" in body["detail"]
    assert api.call("GET", "/devices", "b").json()["total"] == 0
    _problem(api.call("GET", "/devices", "b", params={"tenant_id": api.ta}), 403)
    _problem(api.call("POST", "/devices", "b", json={"name": "x", "product_id": prod["id"]}), 422)
    # a platform admin names the tenant to list, and reaches any object by id
    _problem(api.call("GET", "/devices", "root"), 403)
    assert api.call("GET", "/devices", "root", params={"tenant_id": api.ta}).json()["total"] == 1
    assert api.call("GET", f"/devices/{dev['id']}", "root").json()["tenant_id"] == api.ta
    # nothing of A changed
    assert api.call("GET", f"/devices/{dev['id']}").json()["label"] == ""
