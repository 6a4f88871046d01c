"""The registry's device directory: cached bindings, invalidation, last-seen flushing."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, text

from yugong.core.timeutil import now_us
from yugong.infra.db import Database
from yugong.platform.registry import Registry, RegistryDirectory
from yugong.platform.registry.bindings import DeviceDirectory, PropertyBinding
from yugong.security.principal import Principal, Role

ROOT = Principal(kind="user", id=1, tenant=None, role=Role.PLATFORM_ADMIN, name="root")

TSL: dict[str, Any] = {
    "properties": [
        {
            "identifier": "temp",
            "name": "Temperature",
            "accessMode": "r",
            "dataType": {"type": "float", "specs": {"min": "-40", "max": "120", "unit": "°C"}},
        },
        {
            "identifier": "count",
            "name": "Count",
            "accessMode": "r",
            "dataType": {"type": "int", "specs": {"min": "0", "max": "1000000"}},
        },
        {
            "identifier": "running",
            "name": "Running",
            "accessMode": "rw",
            "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}},
        },
        {
            "identifier": "mode",
            "name": "Mode",
            "accessMode": "rw",
            "dataType": {"type": "enum", "specs": {"0": "auto", "1": "manual", "3": "service"}},
        },
        {
            "identifier": "program",
            "name": "Program",
            "accessMode": "rw",
            "dataType": {"type": "text", "specs": {"length": "64"}},
        },
        {
            "identifier": "serviced",
            "name": "Serviced",
            "accessMode": "r",
            "dataType": {"type": "date", "specs": {}},
        },
        {
            "identifier": "pos",
            "name": "Position",
            "accessMode": "r",
            "dataType": {
                "type": "struct",
                "specs": [{"identifier": "x", "name": "X", "dataType": {"type": "double"}}],
            },
        },
        {
            "identifier": "loads",
            "name": "Loads",
            "accessMode": "r",
            "dataType": {"type": "array", "specs": {"size": 3, "item": {"type": "double"}}},
        },
    ],
}


class Rig:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.reg = Registry(db)
        self.tenant = self.reg.tenants.create(ROOT, name="Acme").id
        self.p = Principal("user", 2, self.tenant, Role.TENANT_ADMIN, "alice")
        self.product = self.reg.products.create(self.p, key="cnc", name="CNC", tsl_document=TSL).id
        gw_product = self.reg.products.create(self.p, key="gw", name="GW", is_gateway=True).id
        self.gw = self.reg.devices.create(self.p, name="gw", product_id=gw_product)
        self.dev = self.reg.devices.create(
            self.p, name="cnc-1", product_id=self.product, gateway_id=self.gw.device.id
        )
        self.statements: list[str] = []
        event.listen(db.engine, "before_cursor_execute", self._count)

    def _count(self, _conn: Any, _cur: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)


@pytest.fixture
def rig(db: Database) -> Rig:
    return Rig(db)


def test_bindings_from_the_thing_model(rig: Rig) -> None:
    d: DeviceDirectory = rig.reg.directory  # satisfies the protocol ingest uses
    b = d.by_token(rig.dev.token)
    assert b is not None
    assert (b.tenant, b.device, b.name, b.product, b.gateway) == (
        rig.tenant,
        rig.dev.device.id,
        "cnc-1",
        rig.product,
        rig.gw.device.id,
    )
    series = {s.property: s.id for s in rig.reg.devices.series(rig.p, rig.dev.device.id)}
    props = b.properties
    assert {k: v.series for k, v in props.items()} == series
    assert props["temp"] == PropertyBinding(
        "temp", series["temp"], "number", "float", min=-40, max=120, unit="°C"
    )
    assert (props["count"].kind, props["count"].min, props["count"].max) == (
        "integer",
        0,
        1_000_000,
    )
    assert props["running"].kind == "bool" and props["running"].writable
    assert props["mode"].kind == "enum" and props["mode"].enum_values == frozenset({0, 1, 3})
    assert props["program"].kind == "text" and props["program"].max_length == 64
    assert props["serviced"].kind == "date"
    assert props["pos"].kind == "json" and props["loads"].kind == "json"
    assert props["loads"].tsl_type == "array"
    assert d.by_id(rig.dev.device.id) == b
    assert d.by_name(rig.tenant, "cnc-1") == b
    assert d.by_name(rig.tenant + 1, "cnc-1") is None
    assert d.by_id(999_999) is None
    assert d.by_token("not-a-token") is None


def test_lookups_are_cached_including_misses(rig: Rig) -> None:
    d = rig.reg.directory
    d.by_token(rig.dev.token)
    d.by_token("wrong")
    rig.statements.clear()
    for _ in range(3):
        assert d.by_token(rig.dev.token) is not None
        assert d.by_id(rig.dev.device.id) is not None
        assert d.by_name(rig.tenant, "cnc-1") is not None
        assert d.by_token("wrong") is None
    assert rig.statements == []
    d.invalidate(rig.dev.device.id)
    assert d.by_id(rig.dev.device.id) is not None
    assert rig.statements, "an invalidated device is read again"


def test_model_change_invalidates_bindings(rig: Rig) -> None:
    d = rig.reg.directory
    stale = RegistryDirectory(rig.db)  # not wired to the services: keeps what it cached
    before = d.by_id(rig.dev.device.id)
    assert before is not None and stale.by_id(rig.dev.device.id) == before
    doc = json.loads(json.dumps(TSL))
    doc["properties"][0]["dataType"]["specs"]["max"] = "200"
    doc["properties"].append(
        {"identifier": "rpm", "name": "RPM", "accessMode": "r", "dataType": {"type": "int"}}
    )
    rig.reg.products.update_model(rig.p, rig.product, doc)

    after = d.by_id(rig.dev.device.id)
    assert after is not None
    assert after.properties["temp"].max == 200 and "rpm" in after.properties
    assert after.properties["rpm"].series not in {p.series for p in before.properties.values()}
    assert d.by_token(rig.dev.token) == after
    old = stale.by_id(rig.dev.device.id)
    assert old is not None and "rpm" not in old.properties
    stale.invalidate()
    fresh = stale.by_id(rig.dev.device.id)
    assert fresh is not None and "rpm" in fresh.properties


def test_changes_reach_the_directory(rig: Rig) -> None:
    d = rig.reg.directory
    dev_id = rig.dev.device.id
    assert d.by_token(rig.dev.token) is not None
    rig.reg.devices.update(rig.p, dev_id, name="cnc-renamed", gateway_id=None)
    b = d.by_token(rig.dev.token)
    assert b is not None and b.name == "cnc-renamed" and b.gateway is None
    assert d.by_name(rig.tenant, "cnc-1") is None
    assert d.by_name(rig.tenant, "cnc-renamed") == b

    # a token that missed is found once a registry change made it valid
    assert d.by_token("late-token") is None
    new = rig.reg.devices.rotate_token(rig.p, dev_id)
    assert d.by_token(rig.dev.token) is None
    assert d.by_token(new) is not None

    # an inactive tenant's devices do not resolve
    rig.reg.tenants.update(ROOT, rig.tenant, active=False)
    assert d.by_token(new) is None and d.by_id(dev_id) is None
    rig.reg.tenants.update(ROOT, rig.tenant, active=True)
    assert d.by_id(dev_id) is not None

    rig.reg.devices.delete(rig.p, dev_id)
    assert d.by_id(dev_id) is None and d.by_token(new) is None


def test_touch_flush_and_offline(rig: Rig) -> None:
    d = rig.reg.directory
    gw, dev = rig.gw.device.id, rig.dev.device.id
    assert d.flush_seen() == 0
    old = now_us() - 600 * 1_000_000
    recent = now_us()
    d.touch([gw, dev], old)
    d.touch([dev], recent)
    d.touch([dev], old)  # an older report does not move last-seen back
    rig.statements.clear()
    assert d.flush_seen() == 2
    assert len([s for s in rig.statements if s.lstrip().upper().startswith("UPDATE")]) == 1
    assert d.flush_seen() == 0

    g = rig.reg.devices.get(rig.p, gw)
    v = rig.reg.devices.get(rig.p, dev)
    assert g.online and v.online
    assert g.last_seen_at is not None and v.last_seen_at is not None
    assert abs(g.last_seen_at - datetime.fromtimestamp(old / 1e6, UTC)) < timedelta(milliseconds=1)
    assert abs(v.last_seen_at - datetime.fromtimestamp(recent / 1e6, UTC)) < timedelta(
        milliseconds=1
    )
    assert rig.reg.devices.list(rig.p, online=True).total == 2

    assert d.mark_offline_after(60) == [gw]
    assert not rig.reg.devices.get(rig.p, gw).online
    assert rig.reg.devices.get(rig.p, dev).online
    assert d.mark_offline_after(60) == []

    # a touch not yet flushed counts as seen
    d.touch([gw], now_us())
    assert d.mark_offline_after(60) == []
    assert rig.reg.devices.get(rig.p, gw).online
    with rig.db.session() as s:
        online = s.execute(text("SELECT count(*) FROM devices WHERE online")).scalar()
    assert online == 2


def test_concurrent_lookups_share_one_binding(rig: Rig) -> None:
    d = rig.reg.directory
    results: list[Any] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            b = d.by_token(rig.dev.token)
            with lock:
                results.append(b)
            d.invalidate(rig.dev.device.id)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 200 and all(r == results[0] and r is not None for r in results)
