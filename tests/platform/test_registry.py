"""Registry services on SQLite and PostgreSQL (schema created by the migrations)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from sqlalchemy import text

from yugong.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from yugong.infra.db import Database
from yugong.platform.registry import ChangeEvent, Registry
from yugong.security.principal import Principal, Role

ROOT = Principal(kind="user", id=1, tenant=None, role=Role.PLATFORM_ADMIN, name="root")

TSL: dict[str, Any] = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "meter"},
    "properties": [
        {
            "identifier": "voltage",
            "name": "电压",
            "accessMode": "r",
            "required": True,
            "dataType": {"type": "float", "specs": {"min": "0", "max": "500", "unit": "V"}},
        },
        {
            "identifier": "state",
            "name": "状态",
            "accessMode": "r",
            "required": False,
            "dataType": {"type": "enum", "specs": {"0": "idle", "1": "run"}},
        },
    ],
    "events": [],
    "services": [],
}


class World:
    """A registry with two tenants, an admin principal for each, and change events seen."""

    def __init__(self, db: Database) -> None:
        self.events: list[ChangeEvent] = []
        self.invalidated: list[int | None] = []
        self.reg = Registry(db, on_change=self.invalidated.append, on_event=self.events.append)
        self.ta = self.reg.tenants.create(ROOT, name="Acme Machining", industry="discrete")
        self.tb = self.reg.tenants.create(ROOT, name="Bright Chemicals", industry="process")
        self.a = Principal("user", 10, self.ta.id, Role.TENANT_ADMIN, "alice")
        self.b = Principal("user", 20, self.tb.id, Role.TENANT_ADMIN, "bob")

    def product(self, p: Principal, key: str = "meter", **kw: Any) -> int:
        return self.reg.products.create(p, key=key, name=key.title(), tsl_document=TSL, **kw).id


@pytest.fixture
def w(db: Database) -> World:
    return World(db)


def _locs(exc: pytest.ExceptionInfo[InvalidInput]) -> list[str]:
    return [e.loc for e in exc.value.errors]


# Tenants -----------------------------------------------------------------------------------


def test_tenants_platform_admin_only(w: World) -> None:
    assert (w.ta.slug, w.ta.industry, w.ta.active, w.ta.retention_days) == (
        "acme-machining",
        "discrete",
        True,
        None,
    )
    with pytest.raises(Forbidden):
        w.reg.tenants.create(w.a, name="Mine")
    with pytest.raises(Forbidden):
        w.reg.tenants.update(w.a, w.ta.id, retention_days=30)
    with pytest.raises(Forbidden):
        w.reg.tenants.delete(w.a, w.ta.id)
    with pytest.raises(Conflict) as info:
        w.reg.tenants.create(ROOT, name="Acme Machining")
    assert info.value.errors[0].loc == "name"
    with pytest.raises(Conflict):
        w.reg.tenants.create(ROOT, name="Other", slug="acme-machining")
    with pytest.raises(InvalidInput) as bad:
        w.reg.tenants.create(ROOT, name="愚公机械")
    assert _locs(bad) == ["slug"]
    t = w.reg.tenants.create(ROOT, name="愚公机械", slug="yugong-jixie", retention_days=90)
    assert t.retention_days == 90
    with pytest.raises(InvalidInput) as bad:
        w.reg.tenants.update(ROOT, t.id, retention_days=0)
    assert _locs(bad) == ["retention_days"]
    with pytest.raises(InvalidInput):
        w.reg.tenants.create(ROOT, name="X", slug="Bad Slug")
    updated = w.reg.tenants.update(ROOT, t.id, retention_days=None, active=False)
    assert updated.retention_days is None and not updated.active
    with pytest.raises(Conflict):
        w.reg.tenants.update(ROOT, t.id, name="Acme Machining")
    assert w.reg.tenants.get(ROOT, t.id).name == "愚公机械"


def test_tenant_sees_only_itself(w: World) -> None:
    assert [t.id for t in w.reg.tenants.list(w.a)] == [w.ta.id]
    assert w.reg.tenants.list(ROOT).total == 2
    assert w.reg.tenants.get(w.a, w.ta.id).name == "Acme Machining"
    with pytest.raises(NotFound):
        w.reg.tenants.get(w.a, w.tb.id)


def test_delete_tenant_removes_everything_and_returns_series(w: World, db: Database) -> None:
    site = w.reg.assets.create(w.b, name="Plant", kind="site")
    w.reg.assets.create(w.b, name="Hall", kind="workshop", parent_id=site.id)
    pid = w.product(w.b, is_gateway=True)
    gw = w.reg.devices.create(w.b, name="gw", product_id=pid).device
    w.reg.devices.create(w.b, name="m1", product_id=pid, gateway_id=gw.id, is_gateway=False)
    keep = w.reg.devices.create(w.a, name="m1", product_id=w.product(w.a)).device
    series = w.reg.tenants.delete(ROOT, w.tb.id)
    assert len(series) == 4
    with db.session() as s:
        for table in ("assets", "products", "devices", "series"):
            n = s.execute(
                text(f"SELECT count(*) FROM {table} WHERE tenant_id = :t"), {"t": w.tb.id}
            ).scalar()
            assert n == 0, table
    assert w.events[-1] == ChangeEvent("tenant", "deleted", w.tb.id, w.tb.id, series=tuple(series))
    assert w.invalidated[-1] is None  # a tenant change forgets every cached binding
    assert w.reg.devices.get(w.a, keep.id).name == "m1"
    with pytest.raises(NotFound):
        w.reg.tenants.get(ROOT, w.tb.id)


# Asset tree --------------------------------------------------------------------------------


def test_asset_tree_rules(w: World) -> None:
    site = w.reg.assets.create(w.a, name="Suzhou", kind="site", attributes={"city": "苏州"})
    ws = w.reg.assets.create(w.a, name="Machining", kind="workshop", parent_id=site.id)
    line = w.reg.assets.create(w.a, name="Line 1", kind="line", parent_id=ws.id)
    eq = w.reg.assets.create(w.a, name="CNC-01", kind="equipment", parent_id=line.id)
    assert eq.parent_id == line.id and site.attributes == {"city": "苏州"}

    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"kind": "site", "parent_id": site.id}, "parent_id", "has no parent"),
        ({"kind": "workshop"}, "parent_id", "needs a parent site"),
        ({"kind": "line", "parent_id": site.id}, "parent_id", "must be a workshop, not a site"),
        ({"kind": "equipment", "parent_id": ws.id}, "parent_id", "must be a line"),
        ({"kind": "equipment", "parent_id": 999_999}, "parent_id", "not found"),
        ({"kind": "machine"}, "kind", "site, workshop, line, equipment"),
        ({"kind": "site", "name": "  "}, "name", "must not be empty"),
        ({"kind": "site", "attributes": [1]}, "attributes", "object"),
    ]
    for kwargs, loc, msg in cases:
        with pytest.raises(InvalidInput) as bad:
            w.reg.assets.create(w.a, **{"name": "X", **kwargs})
        assert bad.value.errors[0].loc == loc and msg in bad.value.errors[0].msg, kwargs

    # names are unique among siblings, roots included; the same name elsewhere is fine
    with pytest.raises(Conflict):
        w.reg.assets.create(w.a, name="Suzhou", kind="site")
    with pytest.raises(Conflict):
        w.reg.assets.create(w.a, name="Line 1", kind="line", parent_id=ws.id)
    ws2 = w.reg.assets.create(w.a, name="Assembly", kind="workshop", parent_id=site.id)
    line_b = w.reg.assets.create(w.a, name="Line 1", kind="line", parent_id=ws2.id)
    w.reg.assets.create(w.b, name="Suzhou", kind="site")

    tree = w.reg.assets.tree(w.a)
    assert [n.name for n in tree] == ["Suzhou"]
    assert [n.name for n in tree[0].children] == ["Assembly", "Machining"]
    machining = tree[0].children[1]
    assert machining.children[0].children[0].name == "CNC-01"
    sub = w.reg.assets.tree(w.a, root_id=ws.id)
    assert [n.id for n in sub] == [ws.id]

    # moving keeps the rules: a line moves between workshops, never under a site
    with pytest.raises(Conflict):
        w.reg.assets.update(w.a, line.id, parent_id=ws2.id)  # ws2 already has "Line 1"
    moved = w.reg.assets.update(w.a, line.id, parent_id=ws2.id, name="Line 2")
    assert (moved.parent_id, moved.name) == (ws2.id, "Line 2")
    with pytest.raises(InvalidInput):
        w.reg.assets.update(w.a, line.id, parent_id=site.id)
    assert w.reg.assets.get(w.a, line.id).parent_id == ws2.id  # refused change left nothing

    listing = w.reg.assets.list(w.a, parent_id=ws2.id)
    assert {a.id for a in listing.items} == {line.id, line_b.id}
    assert [a.id for a in w.reg.assets.list(w.a, parent_id=None).items] == [site.id]
    assert w.reg.assets.list(w.a, kind="equipment").total == 1

    # delete: only leaves; devices on a deleted asset stay, unplaced
    with pytest.raises(Conflict):
        w.reg.assets.delete(w.a, line.id)
    dev = w.reg.devices.create(w.a, name="cnc", product_id=w.product(w.a), asset_id=eq.id)
    w.reg.assets.delete(w.a, eq.id)
    assert w.reg.devices.get(w.a, dev.device.id).asset_id is None
    with pytest.raises(NotFound):
        w.reg.assets.get(w.a, eq.id)


# Products and thing models ---------------------------------------------------------------


def test_product_tsl_round_trip_and_validation(w: World) -> None:
    doc = json.loads(json.dumps(TSL))
    doc["properties"][0]["desc"] = "extra keys survive"
    prod, created = w.reg.products.import_tsl(w.a, doc, name="电表")
    assert created and prod.key == "meter" and prod.name == "电表" and prod.version == 1
    exported = w.reg.products.export_tsl(w.a, prod.id)
    assert json.dumps(exported, ensure_ascii=False) == json.dumps(doc, ensure_ascii=False)

    bad = json.loads(json.dumps(TSL))
    bad["properties"][1]["dataType"]["specs"] = {"zero": "idle"}
    with pytest.raises(InvalidInput) as info:
        w.reg.products.update_model(w.a, prod.id, bad)
    assert _locs(info) == ["properties[1].dataType.specs.zero"]
    assert w.reg.products.get(w.a, prod.id).version == 1  # nothing changed

    with pytest.raises(InvalidInput) as info:
        w.reg.products.import_tsl(w.a, {"properties": []})
    assert _locs(info) == ["key"]
    with pytest.raises(InvalidInput) as info:
        w.reg.products.create(w.a, key="has space", name="x")
    assert _locs(info) == ["key"]
    with pytest.raises(Conflict):
        w.reg.products.create(w.a, key="meter", name="again")
    empty = w.reg.products.create(w.a, key="blank", name="Blank")
    assert empty.tsl["profile"] == {"productKey": "blank"} and empty.tsl["properties"] == []


def test_model_change_bumps_version_and_adds_series(w: World) -> None:
    pid = w.product(w.a)
    d1 = w.reg.devices.create(w.a, name="m1", product_id=pid).device
    d2 = w.reg.devices.create(w.a, name="m2", product_id=pid).device
    before = {s.property: s.id for s in w.reg.devices.series(w.a, d1.id)}
    assert set(before) == {"voltage", "state"}

    same = w.reg.products.update_model(w.a, pid, TSL)
    assert same.version == 1

    doc = json.loads(json.dumps(TSL))
    doc["properties"].append(
        {
            "identifier": "current",
            "name": "电流",
            "accessMode": "r",
            "dataType": {"type": "double", "specs": {"unit": "A"}},
        }
    )
    doc["properties"][1]["dataType"] = {"type": "int", "specs": {"min": 0, "max": 9}}
    doc["properties"].pop(0)  # voltage removed from the model: its series and data stay
    w.events.clear()
    w.invalidated.clear()
    rec = w.reg.products.update_model(w.a, pid, doc)
    assert rec.version == 2 and rec.tsl == doc
    assert w.events[-1].devices == (d1.id, d2.id)
    assert w.invalidated == [d1.id, d2.id]
    for d in (d1, d2):
        props = {s.property: s.id for s in w.reg.devices.series(w.a, d.id)}
        assert set(props) == {"voltage", "state", "current"}
    after = {s.property: s.id for s in w.reg.devices.series(w.a, d1.id)}
    assert {k: after[k] for k in before} == before  # existing ids unchanged

    again, created = w.reg.products.import_tsl(w.a, TSL, key="meter", name="Meter v3")
    assert not created and again.version == 3 and again.name == "Meter v3"

    with pytest.raises(Conflict):
        w.reg.products.delete(w.a, pid)
    for d in (d1, d2):
        w.reg.devices.delete(w.a, d.id)
    w.reg.products.delete(w.a, pid)
    assert w.reg.products.list(w.a).total == 0


# Devices -----------------------------------------------------------------------------------


def test_device_token_is_stored_hashed(w: World, db: Database) -> None:
    created = w.reg.devices.create(
        w.a, name="meter-1", product_id=w.product(w.a), label="1# 电表", attributes={"fw": "1.2"}
    )
    token = created.token
    assert len(token) >= 32
    with db.session() as s:
        row = (
            s.execute(text("SELECT * FROM devices WHERE id = :i"), {"i": created.device.id})
            .mappings()
            .one()
        )
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps({k: str(v) for k, v in row.items()})
    assert w.reg.directory.by_token(token) is not None

    new = w.reg.devices.rotate_token(w.a, created.device.id)
    assert new != token
    assert w.reg.directory.by_token(token) is None
    binding = w.reg.directory.by_token(new)
    assert binding is not None and binding.device == created.device.id


def test_device_crud_series_gateways_and_listing(w: World) -> None:
    meter = w.product(w.a)
    gw_prod = w.reg.products.create(w.a, key="edge", name="Edge gateway", is_gateway=True).id
    site = w.reg.assets.create(w.a, name="S", kind="site")
    gw = w.reg.devices.create(w.a, name="gw-1", product_id=gw_prod, asset_id=site.id).device
    assert gw.is_gateway and not gw.online and gw.last_seen_at is None
    devices = [
        w.reg.devices.create(
            w.a,
            name=f"meter-{i:02d}",
            product_id=meter,
            gateway_id=gw.id,
            label="车间电表" if i % 2 else "office",
        ).device
        for i in range(12)
    ]
    series = w.reg.devices.series(w.a, devices[0].id)
    assert [s.property for s in series] == ["voltage", "state"]
    assert all(s.device_id == devices[0].id for s in series)

    with pytest.raises(Conflict):
        w.reg.devices.create(w.a, name="meter-00", product_id=meter)
    w.reg.devices.create(w.b, name="meter-00", product_id=w.product(w.b))  # other tenant: fine
    with pytest.raises(InvalidInput) as bad:
        w.reg.devices.create(w.a, name="x", product_id=meter, gateway_id=devices[0].id)
    assert _locs(bad) == ["gateway_id"] and "not a gateway" in bad.value.errors[0].msg
    with pytest.raises(InvalidInput) as bad:
        w.reg.devices.update(w.a, gw.id, gateway_id=gw.id)
    assert "own gateway" in bad.value.errors[0].msg
    with pytest.raises(Conflict):
        w.reg.devices.update(w.a, gw.id, is_gateway=False)

    page = w.reg.devices.list(w.a, product_id=meter, limit=5, offset=10)
    assert page.total == 12 and [d.name for d in page.items] == ["meter-10", "meter-11"]
    assert w.reg.devices.list(w.a, search="车间").total == 6
    assert w.reg.devices.list(w.a, search="METER-0").total == 10
    assert w.reg.devices.list(w.a, search="%").total == 0  # wildcards are literal
    assert w.reg.devices.list(w.a, gateway_id=gw.id).total == 12
    assert w.reg.devices.list(w.a, asset_id=site.id).items[0].id == gw.id
    assert w.reg.devices.list(w.a, online=True).total == 0
    with pytest.raises(InvalidInput) as bad:
        w.reg.devices.list(w.a, limit=0)
    assert _locs(bad) == ["limit"]

    upd = w.reg.devices.update(
        w.a, devices[0].id, name="renamed", label="L", asset_id=site.id, attributes={"a": 1}
    )
    assert (upd.name, upd.label, upd.asset_id, upd.attributes) == (
        "renamed",
        "L",
        site.id,
        {"a": 1},
    )
    assert w.reg.devices.merge_attributes(w.a, upd.id, {"b": 2}) == {"a": 1, "b": 2}
    binding = w.reg.directory.by_id(upd.id)
    assert binding is not None
    w.reg.store_client_attributes(binding, {"b": 3, "fw": "2.0"})
    assert w.reg.devices.get(w.a, upd.id).attributes == {"a": 1, "b": 3, "fw": "2.0"}
    with pytest.raises(NotFound):
        w.reg.devices.merge_attributes(w.b, upd.id, {"x": 1})
    with pytest.raises(Conflict):
        w.reg.devices.update(w.a, devices[1].id, name="renamed")
    assert w.reg.devices.get_by_name(w.a, "renamed").id == upd.id

    # switching product adds the new product's series, keeps the old ones
    moved = w.reg.devices.update(w.a, devices[1].id, product_id=gw_prod)
    assert moved.product_id == gw_prod

    removed = w.reg.devices.delete(w.a, gw.id)
    assert removed == []  # the gateway product has no properties
    assert w.reg.devices.get(w.a, devices[2].id).gateway_id is None
    gone = w.reg.devices.delete(w.a, devices[2].id)
    assert len(gone) == 2
    assert w.events[-1].series == tuple(gone)
    with pytest.raises(NotFound):
        w.reg.devices.series(w.a, devices[2].id)


# Isolation and permissions ---------------------------------------------------------------


def test_tenant_isolation(w: World) -> None:
    b_site = w.reg.assets.create(w.b, name="B site", kind="site")
    b_prod = w.product(w.b)
    b_dev = w.reg.devices.create(w.b, name="b-dev", product_id=b_prod, asset_id=b_site.id)
    a_prod = w.product(w.a)

    attempts = [
        lambda: w.reg.assets.get(w.a, b_site.id),
        lambda: w.reg.assets.update(w.a, b_site.id, name="mine"),
        lambda: w.reg.assets.delete(w.a, b_site.id),
        lambda: w.reg.products.get(w.a, b_prod),
        lambda: w.reg.products.export_tsl(w.a, b_prod),
        lambda: w.reg.products.update(w.a, b_prod, name="mine"),
        lambda: w.reg.products.update_model(w.a, b_prod, TSL),
        lambda: w.reg.products.delete(w.a, b_prod),
        lambda: w.reg.devices.get(w.a, b_dev.device.id),
        lambda: w.reg.devices.get_by_name(w.a, "b-dev"),
        lambda: w.reg.devices.update(w.a, b_dev.device.id, label="mine"),
        lambda: w.reg.devices.rotate_token(w.a, b_dev.device.id),
        lambda: w.reg.devices.series(w.a, b_dev.device.id),
        lambda: w.reg.devices.delete(w.a, b_dev.device.id),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound):
            attempt()
    # references across tenants read as not found too
    refs: list[dict[str, Any]] = [
        {"product_id": b_prod},
        {"product_id": a_prod, "asset_id": b_site.id},
        {"product_id": a_prod, "gateway_id": b_dev.device.id},
    ]
    for kwargs in refs:
        with pytest.raises(InvalidInput):
            w.reg.devices.create(w.a, name="x", **kwargs)
    with pytest.raises(InvalidInput):
        w.reg.assets.create(w.a, name="w", kind="workshop", parent_id=b_site.id)
    # naming the other tenant explicitly is refused outright
    with pytest.raises(Forbidden):
        w.reg.devices.list(w.a, tenant_id=w.tb.id)
    assert w.reg.assets.list(w.a).total == 0
    assert w.reg.products.list(w.a).total == 1
    assert w.reg.devices.list(w.a).total == 0
    assert w.reg.assets.tree(w.a) == []
    # by token and name the directory answers with B's tenant, never as A's device
    binding = w.reg.directory.by_token(b_dev.token)
    assert binding is not None and binding.tenant == w.tb.id
    assert w.reg.directory.by_name(w.ta.id, "b-dev") is None
    # B's objects are untouched
    assert w.reg.devices.get(w.b, b_dev.device.id).label == ""
    # platform admins reach any tenant by id, and must name one to list
    assert w.reg.devices.get(ROOT, b_dev.device.id).tenant_id == w.tb.id
    with pytest.raises(Forbidden):
        w.reg.devices.list(ROOT)
    assert w.reg.devices.list(ROOT, tenant_id=w.tb.id).total == 1
    with pytest.raises(NotFound):
        w.reg.devices.get(ROOT, b_dev.device.id, tenant_id=w.ta.id)


def test_permissions_by_role(w: World) -> None:
    pid = w.product(w.a)
    dev = w.reg.devices.create(w.a, name="d", product_id=pid).device
    viewer = Principal("user", 30, w.ta.id, Role.VIEWER, "vera")
    operator = Principal("user", 31, w.ta.id, Role.OPERATOR, "otto")
    engineer = Principal("user", 32, w.ta.id, Role.ENGINEER, "erin")
    assert w.reg.devices.get(viewer, dev.id).id == dev.id
    assert w.reg.products.list(viewer).total == 1
    for p in (viewer, operator):
        with pytest.raises(Forbidden):
            w.reg.devices.create(p, name="x", product_id=pid)
        with pytest.raises(Forbidden):
            w.reg.devices.rotate_token(p, dev.id)
        with pytest.raises(Forbidden):
            w.reg.assets.create(p, name="s", kind="site")
    assert w.reg.devices.rotate_token(engineer, dev.id)
    with pytest.raises(Forbidden):
        w.reg.tenants.update(engineer, w.ta.id, name="x")


def test_ids_are_never_reused(w: World) -> None:
    # A reused series id would inherit the samples of a deleted series.
    pid = w.product(w.a)
    d = w.reg.devices.create(w.a, name="newest", product_id=pid).device
    old = w.reg.devices.delete(w.a, d.id)
    again = w.reg.devices.create(w.a, name="newest", product_id=pid).device
    assert again.id > d.id
    assert min(s.id for s in w.reg.devices.series(w.a, again.id)) > max(old)
