"""The dashboard service: widgets checked against the registry with errors naming the field,
own and shared dashboards, who may change them, tenant scope, audit (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from yugong.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from yugong.infra.db import Database
from yugong.platform.dashboards import MAX_WIDGETS, DashboardService
from yugong.platform.registry import Registry
from yugong.security.models import User
from yugong.security.principal import Principal, Role

ROOT = Principal(kind="user", id=1, tenant=None, role=Role.PLATFORM_ADMIN, name="root")
TSL: dict[str, Any] = {
    "profile": {"productKey": "oven"},
    "properties": [
        {
            "identifier": "temp",
            "name": "Temperature",
            "accessMode": "r",
            "dataType": {"type": "float", "specs": {"min": "-50", "max": "500"}},
        },
        {
            "identifier": "running",
            "name": "Running",
            "accessMode": "r",
            "dataType": {"type": "bool", "specs": {"0": "off", "1": "on"}},
        },
        {
            "identifier": "note",
            "name": "Note",
            "accessMode": "r",
            "dataType": {"type": "text", "specs": {"length": "64"}},
        },
    ],
    "events": [],
    "services": [],
}


class Audit:
    def __init__(self) -> None:
        self.actions: list[tuple[str, Any]] = []

    def record(self, action: str, **kw: Any) -> None:
        self.actions.append((action, kw["target_id"]))


class World:
    def __init__(self, db: Database) -> None:
        self.reg = Registry(db)
        self.audit = Audit()
        self.svc = DashboardService(db, self.reg.directory, audit=self.audit)
        self.t = self.reg.tenants.create(ROOT, name="Acme Ovens").id
        self.other_t = self.reg.tenants.create(ROOT, name="Other Works").id
        with db.session() as s:
            users = {}
            for name, tenant, role in (
                ("root", None, Role.PLATFORM_ADMIN),
                ("admin", self.t, Role.TENANT_ADMIN),
                ("ann", self.t, Role.VIEWER),
                ("bob", self.t, Role.OPERATOR),
                ("olga", self.other_t, Role.ENGINEER),
            ):
                u = User(tenant_id=tenant, username=name, role=role.value, password_hash="x")
                s.add(u)
                s.flush()
                users[name] = Principal("user", u.id, tenant, role, name)
        self.root, self.admin = users["root"], users["admin"]
        self.ann, self.bob, self.olga = users["ann"], users["bob"], users["olga"]
        product = self.reg.products.create(self.admin, key="oven", name="Oven", tsl_document=TSL)
        self.device = self.reg.devices.create(self.admin, name="oven-1", product_id=product.id)
        self.dev = self.device.device.id
        other_admin = Principal("user", 999, self.other_t, Role.TENANT_ADMIN, "x")
        p2 = self.reg.products.create(other_admin, key="oven", name="Oven", tsl_document=TSL)
        self.foreign = self.reg.devices.create(other_admin, name="o", product_id=p2.id).device.id

    def widgets(self) -> list[dict[str, Any]]:
        d = self.dev
        return [
            {"kind": "trend", "device": d, "properties": ["temp", "running"], "range": "24h"},
            {"kind": "gauge", "device": d, "property": "temp", "min": 0, "max": 300},
            {"kind": "value", "device": d, "property": "note", "title": "Note"},
            {"kind": "state_timeline", "device": d, "property": "running"},
            {"kind": "table", "devices": [d], "properties": ["temp", "note"]},
            {"kind": "alarms", "limit": 5},
        ]


@pytest.fixture
def w(db: Database) -> World:
    return World(db)


def test_create_stores_clean_widgets_with_defaults(w: World) -> None:
    board = w.svc.create(w.ann, name=" Line 1 ", widgets=w.widgets())
    assert board.name == "Line 1" and not board.shared and board.owner_id == w.ann.id
    assert board.editable
    kinds = [x["kind"] for x in board.widgets]
    assert kinds == ["trend", "gauge", "value", "state_timeline", "table", "alarms"]
    assert board.widgets[1]["min"] == 0 and board.widgets[1]["max"] == 300
    assert board.widgets[3]["range"] == "24h"  # the timeline's default
    assert board.widgets[5] == {"kind": "alarms", "title": "", "limit": 5}
    assert w.svc.get(w.ann, board.id).widgets == board.widgets
    assert w.audit.actions == [("dashboards.create", board.id)]


@pytest.mark.parametrize(
    ("index", "widget", "loc"),
    [
        (2, {"kind": "value", "device": 0, "property": "nope"}, "widgets[2].property"),
        (0, {"kind": "pie"}, "widgets[0].kind"),
        (1, {"kind": "value", "property": "temp"}, "widgets[1].device"),
        (0, {"kind": "gauge", "device": 0, "property": "note"}, "widgets[0].property"),
        (
            0,
            {"kind": "gauge", "device": 0, "property": "temp", "min": 5, "max": 5},
            "widgets[0].max",
        ),
        (0, {"kind": "trend", "device": 0, "properties": []}, "widgets[0].properties"),
        (0, {"kind": "trend", "device": 0, "properties": ["note"]}, "widgets[0].properties[0]"),
        (
            0,
            {"kind": "trend", "device": 0, "properties": ["temp"], "range": "2y"},
            "widgets[0].range",
        ),
        (0, {"kind": "value", "device": 0, "property": "temp", "colour": 1}, "widgets[0].colour"),
        (
            0,
            {"kind": "table", "devices": [0, 123456], "properties": ["temp"]},
            "widgets[0].devices[1]",
        ),
        (0, {"kind": "alarms", "limit": 500}, "widgets[0].limit"),
        (0, {"kind": "value", "device": "x", "property": "temp"}, "widgets[0].device"),
    ],
)
def test_widget_errors_name_the_field(w: World, index: int, widget: dict, loc: str) -> None:
    widgets: list[Any] = [
        {"kind": "value", "device": w.dev, "property": "temp"} for _ in range(index)
    ]
    widget = {
        k: (w.dev if v == 0 else [w.dev if x == 0 else x for x in v] if k == "devices" else v)
        for k, v in widget.items()
    }
    widgets.append(widget)
    with pytest.raises(InvalidInput) as caught:
        w.svc.create(w.ann, name="Bad", widgets=widgets)
    assert caught.value.errors[0].loc == loc, caught.value.detail
    assert loc in caught.value.detail


def test_devices_of_another_tenant_and_too_many_widgets_are_refused(w: World) -> None:
    foreign = [{"kind": "value", "device": w.foreign, "property": "temp"}]
    with pytest.raises(InvalidInput, match=r"widgets\[0\]\.device: no device"):
        w.svc.create(w.ann, name="Foreign", widgets=foreign)
    many = [{"kind": "alarms"}] * (MAX_WIDGETS + 1)
    with pytest.raises(InvalidInput, match="at most 24 widgets"):
        w.svc.create(w.ann, name="Many", widgets=many)
    with pytest.raises(InvalidInput, match="name: is required"):
        w.svc.create(w.ann, name="  ", widgets=[])


def test_own_and_shared_dashboards_and_who_may_change_them(w: World) -> None:
    private = w.svc.create(w.ann, name="Mine", widgets=[])
    shared = w.svc.create(w.ann, name="Ours", widgets=[], shared=True)
    # Bob sees only the shared one, read-only.
    assert [b.name for b in w.svc.list(w.bob)] == ["Ours"]
    assert not w.svc.get(w.bob, shared.id).editable
    with pytest.raises(NotFound):
        w.svc.get(w.bob, private.id)
    with pytest.raises(Forbidden):
        w.svc.update(w.bob, shared.id, name="Taken", widgets=[], shared=True)
    with pytest.raises(Forbidden):
        w.svc.delete(w.bob, shared.id)
    # The same name is fine for someone else, not twice for the same owner.
    w.svc.create(w.bob, name="Mine", widgets=[])
    with pytest.raises(Conflict):
        w.svc.create(w.ann, name="Mine", widgets=[])
    # The owner changes it; a tenant admin sees and may change every one of the tenant.
    renamed = w.svc.update(w.ann, shared.id, name="Ours 2", widgets=w.widgets()[:1], shared=True)
    assert renamed.name == "Ours 2" and len(renamed.widgets) == 1
    assert {b.name for b in w.svc.list(w.admin)} == {"Mine", "Ours 2"} | {"Mine"}
    assert len(w.svc.list(w.admin)) == 3
    w.svc.update(w.admin, private.id, name="Mine", widgets=[], shared=False)
    w.svc.delete(w.admin, private.id)
    with pytest.raises(NotFound):
        w.svc.get(w.ann, private.id)
    assert [a for a, _ in w.audit.actions][-3:] == [
        "dashboards.update",
        "dashboards.update",
        "dashboards.delete",
    ]


def test_tenant_scope(w: World) -> None:
    board = w.svc.create(w.ann, name="Ours", widgets=[], shared=True)
    with pytest.raises(NotFound):
        w.svc.get(w.olga, board.id)
    with pytest.raises(Forbidden):
        w.svc.list(w.olga, tenant_id=w.t)
    assert w.svc.list(w.olga) == []
    # A platform admin names the tenant, sees and changes everything in it.
    assert [b.id for b in w.svc.list(w.root, tenant_id=w.t)] == [board.id]
    made = w.svc.create(w.root, name="Ops", widgets=[], tenant_id=w.t)
    assert made.tenant_id == w.t
    w.svc.delete(w.root, board.id, tenant_id=w.t)
    with pytest.raises(Forbidden):
        w.svc.create(w.root, name="Nowhere", widgets=[])  # no tenant named


def test_an_api_key_reads_but_owns_nothing(w: World) -> None:
    key = Principal("api_key", w.ann.id, w.t, Role.ENGINEER, "integration")
    board = w.svc.create(key, name="Scripted", widgets=[], shared=True)
    assert board.owner_id is None and not board.editable
    assert not w.svc.get(w.ann, board.id).editable  # not Ann's, though the ids match
    assert w.svc.get(w.admin, board.id).editable
