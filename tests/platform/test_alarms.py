"""The alarm service on SQLite and PostgreSQL: lifecycle from the engine's transitions and
from people, history and audit, queries and their filters, tenant isolation, the bus."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import until
from yugong.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from yugong.infra.bus import InProcessBus, InProcessSubscription
from yugong.infra.db import Database
from yugong.platform.alarms.queries import AlarmFilter
from yugong.platform.alarms.service import AlarmService
from yugong.platform.registry import Registry
from yugong.platform.rules.models import Rule
from yugong.platform.rules.spec import RuleSpec
from yugong.platform.rules.types import ALARMS_TOPIC, AlarmChange, Transition
from yugong.security.audit import AuditLog
from yugong.security.models import AuditEntry, User
from yugong.security.principal import SYSTEM, Principal, Role

ROOT = Principal(kind="user", id=1, tenant=None, role=Role.PLATFORM_ADMIN, name="root")
T0 = 1_700_000_000_000_000  # µs
S = 1_000_000

TSL: dict[str, Any] = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "oven"},
    "properties": [
        {
            "identifier": "temp",
            "name": "Temperature",
            "accessMode": "r",
            "dataType": {"type": "float", "specs": {"min": "-40", "max": "500"}},
        }
    ],
    "events": [],
    "services": [],
}


class World:
    """Tenant A: site > workshop > line with oven-1 on the line, site-2 with oven-2; tenant B
    with oven-b. Rules: A auto-clearing (major), A manual (critical), A disabled, B's."""

    def __init__(self, db: Database) -> None:
        self.db = db
        reg = Registry(db)
        self.ta = reg.tenants.create(ROOT, name="Acme Ovens").id
        self.tb = reg.tenants.create(ROOT, name="Bright Ovens").id
        a = lambda **kw: reg.assets.create(ROOT, tenant_id=self.ta, **kw).id  # noqa: E731
        self.site = a(name="Site", kind="site")
        self.workshop = a(name="Hall", kind="workshop", parent_id=self.site)
        self.line = a(name="Line", kind="line", parent_id=self.workshop)
        self.site2 = a(name="Site 2", kind="site")
        pa = reg.products.create(ROOT, key="oven", name="Oven", tsl_document=TSL, tenant_id=self.ta)
        pb = reg.products.create(ROOT, key="oven", name="Oven", tsl_document=TSL, tenant_id=self.tb)

        def device(name: str, tenant: int, product: int, asset: int | None) -> int:
            return reg.devices.create(
                ROOT, name=name, product_id=product, asset_id=asset, tenant_id=tenant
            ).device.id

        self.d1 = device("oven-1", self.ta, pa.id, self.line)
        self.d2 = device("oven-2", self.ta, pa.id, self.site2)
        self.db_dev = device("oven-b", self.tb, pb.id, None)
        self.r_auto = self.rule(self.ta, "Oven too hot", "major")
        self.r_manual = self.rule(self.ta, "Oven door forced", "critical", manual=True)
        self.r_off = self.rule(self.ta, "Switched off", "minor", enabled=False)
        self.r_b = self.rule(self.tb, "B too hot", "warning")
        self.u_a = self.user(self.ta, "ann")
        self.u_b = self.user(self.tb, "ben")
        self.op = Principal("user", self.u_a, self.ta, Role.OPERATOR, "ann")
        self.viewer = Principal("user", 900, self.ta, Role.VIEWER, "vic")
        self.b_admin = Principal("user", self.u_b, self.tb, Role.TENANT_ADMIN, "ben")
        self.bus = InProcessBus()
        self.sub = self.bus.subscribe(ALARMS_TOPIC, maxsize=10_000)
        self.svc = AlarmService(db, self.bus, reg.directory, AuditLog(db))

    def rule(
        self, tenant: int, name: str, severity: str, *, manual: bool = False, enabled: bool = True
    ) -> int:
        spec = RuleSpec.model_validate(
            {
                "name": name,
                "target": {"product": "oven"},
                "severity": severity,
                "condition": {"kind": "threshold", "property": "temp", "op": ">", "value": 80},
                "clear": {"hysteresis": 2, "manual": manual},
            }
        ).model_dump(mode="json", by_alias=True)
        with self.db.session() as s:
            r = Rule(tenant_id=tenant, name=name, version=3, enabled=enabled, spec=spec)
            s.add(r)
            s.flush()
            return r.id

    def user(self, tenant: int, name: str) -> int:
        with self.db.session() as s:
            u = User(tenant_id=tenant, username=name, role="operator", password_hash="x")
            s.add(u)
            s.flush()
            return u.id

    def t(
        self, rule: int, device: int, raised: bool, at_s: float, value: float | None = None
    ) -> Transition:
        tenant = self.tb if rule == self.r_b else self.ta
        return Transition(rule, 3, tenant, device, raised, T0 + int(at_s * S), value)

    def published(self) -> list[AlarmChange]:
        out = []
        while self.sub.pending:
            out.append(self.sub._items.popleft())
        return out


@pytest.fixture
def w(db: Database) -> World:
    return World(db)


def test_raise_repeat_and_clear_by_the_rule(w: World) -> None:
    [raised] = w.svc.apply([w.t(w.r_auto, w.d1, True, 0, 85.0)])
    assert (raised.kind, raised.state, raised.severity, raised.name, raised.actor) == (
        "raised",
        "active",
        "major",
        "Oven too hot",
        "rule",
    )
    assert (raised.rule, raised.device, raised.tenant, raised.value) == (
        w.r_auto,
        w.d1,
        w.ta,
        85.0,
    )
    assert raised.at_us == T0
    alarm = w.svc.get(w.op, raised.alarm)
    assert (alarm.asset_id, alarm.rule_version, alarm.count, alarm.state) == (
        w.line,
        3,
        1,
        "active",
    )

    # Raised again while open: one alarm, counted; and the first raise is still the raise time.
    again = w.svc.apply([w.t(w.r_auto, w.d1, True, 5, 90.0), w.t(w.r_auto, w.d1, True, 9, 91.0)])
    assert [c.kind for c in again] == ["repeated", "repeated"]
    assert {c.alarm for c in again} == {raised.alarm}
    alarm = w.svc.get(w.op, raised.alarm)
    assert (alarm.count, alarm.value) == (3, 91.0)
    assert alarm.raised_at.timestamp() == T0 / S and alarm.last_at.timestamp() == T0 / S + 9

    [cleared] = w.svc.apply([w.t(w.r_auto, w.d1, False, 12, 77.0)])
    assert (cleared.kind, cleared.state, cleared.alarm) == ("cleared", "cleared", raised.alarm)
    alarm = w.svc.get(w.op, raised.alarm)
    assert (alarm.state, alarm.cleared_by, alarm.acknowledged) == ("cleared", "rule", False)
    assert alarm.cleared_at is not None and alarm.cleared_at.timestamp() == T0 / S + 12
    # A clear with nothing open changes nothing; a new raise opens a new alarm.
    assert w.svc.apply([w.t(w.r_auto, w.d1, False, 13)]) == []
    [fresh] = w.svc.apply([w.t(w.r_auto, w.d1, True, 20, 88.0)])
    assert fresh.kind == "raised" and fresh.alarm != raised.alarm
    # Everything returned went on the bus, in order.
    assert w.published() == [raised, *again, cleared, fresh]


def test_one_batch_many_devices_and_raise_then_clear(w: World) -> None:
    changes = w.svc.apply(
        [
            w.t(w.r_auto, w.d1, True, 0, 81.0),
            w.t(w.r_auto, w.d2, True, 0, 82.0),
            w.t(w.r_auto, w.d2, False, 1, 70.0),
            w.t(w.r_manual, w.d1, True, 1, 1.0),
        ]
    )
    assert [(c.kind, c.state, c.device) for c in changes] == [
        ("raised", "active", w.d1),
        ("raised", "active", w.d2),
        ("cleared", "cleared", w.d2),
        ("raised", "active", w.d1),
    ]
    assert changes[1].alarm == changes[2].alarm
    assert len({changes[0].alarm, changes[1].alarm, changes[3].alarm}) == 3
    assert changes[3].severity == "critical"
    assert [e.kind for e in w.svc.history(w.op, changes[1].alarm)] == ["raised", "cleared"]


def test_acknowledge_then_clear(w: World) -> None:
    [r] = w.svc.apply([w.t(w.r_auto, w.d1, True, 0, 85.0)])
    w.published()
    acked = w.svc.acknowledge(w.op, r.alarm)
    assert (acked.state, acked.acknowledged, acked.acknowledged_by) == ("acknowledged", True, "ann")
    with pytest.raises(Conflict, match="already acknowledged"):
        w.svc.acknowledge(w.op, r.alarm)
    # Still open: a repeat counts up and keeps the acknowledgement.
    [rep] = w.svc.apply([w.t(w.r_auto, w.d1, True, 3, 86.0)])
    assert (rep.kind, rep.state) == ("repeated", "acknowledged")
    [c] = w.svc.apply([w.t(w.r_auto, w.d1, False, 6, 70.0)])
    assert c.state == "cleared"
    alarm = w.svc.get(w.op, r.alarm)
    assert (alarm.state, alarm.acknowledged, alarm.count) == ("cleared", True, 2)
    kinds = [(x.kind, x.state, x.actor) for x in w.published()]
    assert kinds == [
        ("acknowledged", "acknowledged", "ann"),
        ("repeated", "acknowledged", "rule"),
        ("cleared", "cleared", "rule"),
    ]


def test_clear_then_acknowledge(w: World) -> None:
    [r] = w.svc.apply([w.t(w.r_auto, w.d1, True, 0, 85.0)])
    w.svc.apply([w.t(w.r_auto, w.d1, False, 1, 70.0)])
    alarm = w.svc.acknowledge(w.op, r.alarm)
    assert (alarm.state, alarm.acknowledged) == ("cleared", True)
    with pytest.raises(Conflict, match="already cleared"):
        w.svc.clear(w.op, r.alarm)
    assert [e.kind for e in w.svc.history(w.op, r.alarm)] == ["raised", "cleared", "acknowledged"]


def test_manual_clear_rule_waits_for_a_person(w: World) -> None:
    [r] = w.svc.apply([w.t(w.r_manual, w.d1, True, 0, 1.0)])
    assert w.svc.apply([w.t(w.r_manual, w.d1, False, 5, 0.0)]) == []
    assert w.svc.get(w.op, r.alarm).state == "active"
    # Still the same open alarm when it triggers again.
    [rep] = w.svc.apply([w.t(w.r_manual, w.d1, True, 9, 1.0)])
    assert (rep.kind, rep.alarm) == ("repeated", r.alarm)
    with pytest.raises(Forbidden):
        w.svc.clear(w.viewer, r.alarm)
    cleared = w.svc.clear(w.op, r.alarm)
    assert (cleared.state, cleared.cleared_by, cleared.acknowledged) == ("cleared", "ann", False)
    [change] = w.published()[-1:]
    assert (change.kind, change.actor, change.state) == ("cleared", "ann", "cleared")


def test_transitions_of_disabled_deleted_or_foreign_rules_are_dropped(w: World) -> None:
    before = w.svc.stats.dropped
    changes = w.svc.apply(
        [
            w.t(w.r_off, w.d1, True, 0, 1.0),  # disabled
            Transition(99_999, 1, w.ta, w.d1, True, T0),  # no such rule
            Transition(w.r_b, 3, w.ta, w.d1, True, T0),  # B's rule claimed for A
            Transition(w.r_auto, 3, w.ta, w.db_dev, True, T0),  # B's device under A's rule
        ]
    )
    assert changes == [] and w.published() == []
    assert w.svc.stats.dropped - before == 4
    # A rule deleted while its alarm is open: the alarm stays, its clears are dropped.
    [r] = w.svc.apply([w.t(w.r_auto, w.d1, True, 0, 85.0)])
    with w.db.session() as s:
        s.delete(s.get(Rule, w.r_auto))
    assert w.svc.apply([w.t(w.r_auto, w.d1, False, 1)]) == []
    alarm = w.svc.get(w.op, r.alarm)
    assert (alarm.state, alarm.rule_id) == ("active", None)


def test_assign_comment_history_and_audit(w: World) -> None:
    [r] = w.svc.apply([w.t(w.r_auto, w.d1, True, 0, 85.0)])
    assert w.svc.assign(w.op, r.alarm, w.u_a).assignee_id == w.u_a
    with pytest.raises(InvalidInput) as bad:
        w.svc.assign(w.op, r.alarm, w.u_b)  # a user of another tenant
    assert [e.loc for e in bad.value.errors] == ["user_id"]
    with pytest.raises(InvalidInput):
        w.svc.assign(w.op, r.alarm, 123_456)
    note = w.svc.comment(w.op, r.alarm, "  checking the thermocouple  ")
    assert (note.kind, note.text, note.actor) == ("commented", "checking the thermocouple", "ann")
    for empty in ("", "   "):
        with pytest.raises(InvalidInput) as bad:
            w.svc.comment(w.op, r.alarm, empty)
        assert [e.loc for e in bad.value.errors] == ["text"]
    with pytest.raises(Forbidden):
        w.svc.comment(w.viewer, r.alarm, "viewers only read")
    with pytest.raises(Forbidden):
        w.svc.acknowledge(w.viewer, r.alarm)
    w.svc.acknowledge(w.op, r.alarm)
    assert w.svc.assign(w.op, r.alarm, None).assignee_id is None
    w.svc.clear(w.op, r.alarm)

    history = w.svc.history(w.viewer, r.alarm)
    assert [(e.kind, e.actor) for e in history] == [
        ("raised", "rule"),
        ("assigned", "ann"),
        ("commented", "ann"),
        ("acknowledged", "ann"),
        ("assigned", "ann"),
        ("cleared", "ann"),
    ]
    assert history[1].detail["assignee_id"] == w.u_a
    assert history[2].text == "checking the thermocouple"
    with w.db.session() as s:
        rows = s.scalars(
            select(AuditEntry).where(AuditEntry.target_type == "alarm").order_by(AuditEntry.id)
        ).all()
        audited = [(e.action, e.target_id, e.actor_name, e.tenant_id) for e in rows]
    assert audited == [
        (f"alarms.{k}", str(r.alarm), "ann", w.ta)
        for k in ("assigned", "commented", "acknowledged", "assigned", "cleared")
    ]
    # The stream saw every human change with its actor; the comment carries its text.
    people = [c for c in w.published() if c.actor == "ann"]
    assert [c.kind for c in people] == [
        "assigned",
        "commented",
        "acknowledged",
        "assigned",
        "cleared",
    ]
    assert people[1].detail["text"] == "checking the thermocouple"


def test_filters(w: World) -> None:
    a1 = w.svc.apply([w.t(w.r_auto, w.d1, True, 0, 85.0)])[0].alarm  # line, major
    a2 = w.svc.apply([w.t(w.r_manual, w.d2, True, 100, 1.0)])[0].alarm  # site 2, critical
    a3 = w.svc.apply([w.t(w.r_auto, w.d2, True, 200, 90.0)])[0].alarm  # site 2, major
    w.svc.apply([w.t(w.r_auto, w.d2, False, 250, 60.0)])  # a3 cleared
    w.svc.acknowledge(w.op, a2)
    b1 = w.svc.apply([w.t(w.r_b, w.db_dev, True, 0, 85.0)])[0].alarm

    def ids(**kw: Any) -> list[int]:
        return [a.id for a in w.svc.list(w.op, filters=AlarmFilter(**kw))]

    assert ids() == [a3, a2, a1]  # newest first, tenant A only
    assert b1 not in ids()
    assert ids(severity=("major",)) == [a3, a1]
    assert ids(severity=("critical", "minor")) == [a2]
    assert ids(state=("active",)) == [a1]
    assert ids(state=("open",)) == [a2, a1]
    assert ids(state=("cleared",)) == [a3]
    assert ids(state=("acknowledged", "cleared")) == [a3, a2]
    assert ids(device=w.d2) == [a3, a2]
    assert ids(rule=w.r_manual) == [a2]
    assert ids(asset=w.site) == [a1]  # the device is on a line under the site
    assert ids(asset=w.workshop) == [a1]
    assert ids(asset=w.line) == [a1]
    assert ids(asset=w.site2) == [a3, a2]
    assert ids(since_us=T0 + 100 * S) == [a3, a2]
    assert ids(since_us=T0 + 50 * S, until_us=T0 + 150 * S) == [a2]
    assert ids(until_us=T0 + 100 * S) == [a1]
    assert ids(severity=("major",), asset=w.site2, state=("cleared",)) == [a3]
    w.svc.assign(w.op, a1, w.u_a)
    assert ids(assignee=w.u_a) == [a1]

    # Paging: by offset and by cursor; total counts every match.
    page = w.svc.list(w.op, limit=2)
    assert ([a.id for a in page], page.total) == ([a3, a2], 3)
    page2 = w.svc.list(w.op, limit=2, before=a2)
    assert ([a.id for a in page2], page2.total) == ([a1], 3)
    assert [a.id for a in w.svc.list(w.op, limit=2, offset=2)] == [a1]

    for bad, loc in (
        (AlarmFilter(severity=("urgent",)), "severity"),
        (AlarmFilter(state=("closed",)), "state"),
        (AlarmFilter(since_us=T0, until_us=T0), "until"),
    ):
        with pytest.raises(InvalidInput) as err:
            w.svc.list(w.op, filters=bad)
        assert [e.loc for e in err.value.errors] == [loc]
    with pytest.raises(InvalidInput):
        w.svc.list(w.op, limit=0)
    with pytest.raises(NotFound):
        w.svc.list(w.op, filters=AlarmFilter(asset=999_999))

    summary = w.svc.summary(w.viewer)
    assert summary["open"] == {"critical": 1, "major": 1, "minor": 0, "warning": 0}
    assert summary["unacknowledged"] == {"critical": 0, "major": 1, "minor": 0, "warning": 0}
    assert summary["total"] == 2
    assert w.svc.summary(w.b_admin)["open"]["warning"] == 1


def test_tenant_isolation(w: World) -> None:
    a1 = w.svc.apply([w.t(w.r_auto, w.d1, True, 0, 85.0)])[0].alarm
    b1 = w.svc.apply([w.t(w.r_b, w.db_dev, True, 0, 85.0)])[0].alarm
    for call in (
        lambda: w.svc.get(w.b_admin, a1),
        lambda: w.svc.history(w.b_admin, a1),
        lambda: w.svc.acknowledge(w.b_admin, a1),
        lambda: w.svc.clear(w.b_admin, a1),
        lambda: w.svc.assign(w.b_admin, a1, w.u_b),
        lambda: w.svc.comment(w.b_admin, a1, "not mine"),
    ):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(Forbidden):
        w.svc.list(w.b_admin, tenant_id=w.ta)
    with pytest.raises(Forbidden):
        w.svc.summary(w.b_admin, tenant_id=w.ta)
    # An asset of another tenant is not found either.
    with pytest.raises(NotFound):
        w.svc.list(w.b_admin, filters=AlarmFilter(asset=w.site))
    assert [a.id for a in w.svc.list(w.b_admin)] == [b1]
    # A platform admin names the tenant, and then sees it.
    with pytest.raises(Forbidden):
        w.svc.list(ROOT)
    assert [a.id for a in w.svc.list(ROOT, tenant_id=w.ta)] == [a1]
    with pytest.raises(NotFound):
        w.svc.get(ROOT, a1, tenant_id=w.tb)
    assert w.svc.get(ROOT, a1).id == a1
    assert w.svc.get(w.op, a1).state == "active"  # untouched by B's attempts


def test_raise_and_clear_from_code(w: World) -> None:
    first = w.svc.raise_alarm(w.ta, name="Cooling water low", severity="minor", device=w.d2)
    again = w.svc.raise_alarm(
        w.ta, name="Cooling water low", severity="minor", device=w.d2, value=3.0
    )
    assert (first.kind, again.kind, again.alarm) == ("raised", "repeated", first.alarm)
    other = w.svc.raise_alarm(w.ta, name="Cooling water low", severity="minor", device=w.d1)
    assert other.alarm != first.alarm
    alarm = w.svc.get(w.op, first.alarm)
    assert (alarm.rule_id, alarm.asset_id, alarm.count, alarm.severity) == (
        None,
        w.site2,
        2,
        "minor",
    )
    with pytest.raises(NotFound):
        w.svc.raise_alarm(w.ta, name="x", severity="minor", device=w.db_dev)
    with pytest.raises(NotFound):
        w.svc.raise_alarm(w.ta, name="x", severity="minor", rule=w.r_b)  # B's rule
    with pytest.raises(NotFound):
        w.svc.raise_alarm(999_999, name="x", severity="minor")
    with pytest.raises(InvalidInput) as bad:
        w.svc.raise_alarm(w.ta, name="x", severity="fatal")
    assert [e.loc for e in bad.value.errors] == ["severity"]
    assert w.svc.clear(SYSTEM, first.alarm).cleared_by == "system"
    fresh = w.svc.raise_alarm(w.ta, name="Cooling water low", severity="minor", device=w.d2)
    assert fresh.kind == "raised" and fresh.alarm != first.alarm


async def test_apply_from_a_worker_thread_publishes_on_the_loop(db: Database) -> None:
    w = World(db)
    svc = AlarmService(db, w.bus, None, None, loop=asyncio.get_running_loop())
    sub: InProcessSubscription = w.bus.subscribe(ALARMS_TOPIC)
    changes = await asyncio.to_thread(svc.apply, [w.t(w.r_auto, w.d1, True, 0, 85.0)])
    got = await asyncio.wait_for(sub.get(), 5)
    assert got == changes[0] and got.kind == "raised"
    await asyncio.to_thread(svc.acknowledge, w.op, got.alarm)
    await until(lambda: sub.pending, "the acknowledgement on the bus")
    assert (await sub.get()).kind == "acknowledged"
