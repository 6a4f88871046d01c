"""The rule service: validation naming the field, versions, target resolution, import and
export, saved state, the dry-run replay and the runner's hand-over (on SQLite)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml

from tests.conftest import migrated_db
from yugong.cli import main
from yugong.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from yugong.core.samples import SAMPLE_SCHEMA
from yugong.infra.bus import InProcessBus
from yugong.infra.db import Database
from yugong.infra.timeseries import open_store
from yugong.platform.registry import Registry
from yugong.platform.rules import runner as runner_mod
from yugong.platform.rules.runner import RuleRunner, alarms_of, replay
from yugong.platform.rules.service import RuleService
from yugong.platform.rules.types import ActiveRule, Transition
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
            "identifier": "power",
            "name": "Power",
            "accessMode": "r",
            "dataType": {"type": "int", "specs": {"min": "0", "max": "100000"}},
        },
        {
            "identifier": "mode",
            "name": "Mode",
            "accessMode": "rw",
            "dataType": {"type": "enum", "specs": {"0": "auto", "1": "manual"}},
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


# A stand-in for the engine when the real one is not installed: threshold and sustained
# ``>`` on one property, state kept per device, snapshot as JSON.
class FakeEngine:
    def __init__(self) -> None:
        self.rules: dict[int, ActiveRule] = {}
        self.by_series: dict[int, list[tuple[int, int]]] = {}
        self.state: dict[int, dict[int, dict[str, Any]]] = {}

    def set_rules(self, rules: Sequence[ActiveRule]) -> None:
        old = {r.id: r.version for r in self.rules.values()}
        self.rules = {r.id: r for r in rules}
        self.by_series = {}
        for r in rules:
            if old.get(r.id) not in (None, r.version):
                self.state.pop(r.id, None)
            for device, props in r.series.items():
                for sid in props.values():
                    self.by_series.setdefault(sid, []).append((r.id, device))

    def _dev(self, rule: int, device: int) -> dict[str, Any]:
        per = self.state.setdefault(rule, {})
        return per.setdefault(device, {"raised": False, "since": None})

    def process(self, batch: pa.Table) -> list[Transition]:
        out: list[Transition] = []
        order = np.argsort(batch.column("ts").to_numpy(), kind="stable")
        series = batch.column("series").to_numpy()[order]
        ts = batch.column("ts").to_numpy()[order]
        values = batch.column("value").to_numpy(zero_copy_only=False)[order]
        for sid, t, v in zip(series.tolist(), ts.tolist(), values.tolist(), strict=True):
            for rid, device in self.by_series.get(sid, ()):
                if self.rules[rid].spec.name.startswith("explode"):
                    raise RuntimeError("a broken rule")
                out += self._sample(self.rules[rid], device, t, v)
        return out

    def _sample(self, rule: ActiveRule, device: int, t: int, v: float) -> list[Transition]:
        c: Any = rule.spec.condition
        st = self._dev(rule.id, device)
        on = v > c.value
        out: list[Transition] = []
        if c.kind == "sustained":
            if on:
                st["since"] = st["since"] if st["since"] is not None else t
                due = st["since"] + int(c.for_s * 1e6)
                if not st["raised"] and t >= due:
                    st["raised"] = True
                    out.append(Transition(rule.id, rule.version, rule.tenant, device, True, due, v))
                st["last"] = v
                return out
            st["since"] = None
        if on and not st["raised"]:
            st["raised"] = True
            out.append(Transition(rule.id, rule.version, rule.tenant, device, True, t, v))
        elif not on and st["raised"]:
            st["raised"] = False
            out.append(Transition(rule.id, rule.version, rule.tenant, device, False, t, v))
        return out

    def tick(self, now_us: int) -> list[Transition]:
        out: list[Transition] = []
        for rid, devices in self.state.items():
            rule = self.rules.get(rid)
            if rule is None or rule.spec.condition.kind != "sustained":
                continue
            due_s = rule.spec.condition.for_s  # type: ignore[union-attr]
            for device, st in devices.items():
                if st["since"] is None or st["raised"]:
                    continue
                due = st["since"] + int(due_s * 1e6)
                if now_us >= due:
                    st["raised"] = True
                    out.append(
                        Transition(
                            rid, rule.version, rule.tenant, device, True, due, st.get("last")
                        )
                    )
        return out

    def snapshot(self) -> dict[int, tuple[int, bytes]]:
        return {
            rid: (self.rules[rid].version, json.dumps(devs).encode())
            for rid, devs in self.state.items()
            if rid in self.rules
        }

    def restore(self, state: dict[int, tuple[int, bytes]]) -> None:
        for rid, (version, blob) in state.items():
            rule = self.rules.get(rid)
            if rule is not None and rule.version == version:
                self.state[rid] = {int(d): s for d, s in json.loads(blob).items()}


def engine_factory() -> Any:
    """The real engine when it is installed, else the stand-in."""
    try:
        from yugong.platform.rules.engine import RuleEngine
    except ImportError:
        return FakeEngine()
    return RuleEngine()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    class _Param:
        param = "sqlite"

    with migrated_db(_Param(), tmp_path) as database:  # type: ignore[arg-type]
        yield database


class World:
    def __init__(self, db: Database) -> None:
        self.reg = Registry(db)
        self.rules = RuleService(db)
        self.t = self.reg.tenants.create(ROOT, name="Acme Ovens")
        self.other = self.reg.tenants.create(ROOT, name="Other Works")
        self.admin = Principal("user", 10, self.t.id, Role.TENANT_ADMIN, "alice")
        self.product = self.reg.products.create(
            self.admin, key="oven", name="Oven", tsl_document=TSL
        ).id
        reg, a = self.reg, self.admin
        self.site = reg.assets.create(a, name="Site", kind="site").id
        self.shop = reg.assets.create(a, name="Shop", kind="workshop", parent_id=self.site).id
        self.line = reg.assets.create(a, name="Line", kind="line", parent_id=self.shop).id
        self.elsewhere = reg.assets.create(a, name="Far", kind="site").id
        self.d1 = self.device("oven-1", self.line)
        self.d2 = self.device("oven-2", self.shop)
        self.d3 = self.device("oven-3", self.elsewhere)

    def device(self, name: str, asset: int | None = None) -> int:
        creds = self.reg.devices.create(
            self.admin, name=name, product_id=self.product, asset_id=asset
        )
        return creds.device.id

    def series(self, device: int) -> dict[str, int]:
        return {s.property: s.id for s in self.reg.devices.series(self.admin, device)}


@pytest.fixture
def w(db: Database) -> World:
    return World(db)


def spec(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "Oven too hot",
        "target": {"product": "oven"},
        "severity": "major",
        "condition": {"kind": "threshold", "property": "temp", "op": ">", "value": 200},
        "clear": {"hysteresis": 5},
    }
    return {**base, **over}


def locs(exc: pytest.ExceptionInfo[InvalidInput]) -> list[str]:
    return [e.loc for e in exc.value.errors]


# Validation ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "loc", "words"),
    [
        ({"severity": "fatal"}, "severity", "critical"),
        ({"name": ""}, "name", "at least 1"),
        ({"target": {"product": "oven", "device": 1}}, "target", "exactly one"),
        ({"target": {"product": "kiln"}}, "target.product", "no product"),
        ({"target": {"asset": 999_999}}, "target.asset", "not found"),
        (
            {"condition": {"kind": "threshold", "property": "humidity", "op": ">", "value": 1}},
            "condition.property",
            "'humidity' is not in",
        ),
        (
            {"condition": {"kind": "threshold", "property": "note", "op": ">", "value": 1}},
            "condition.property",
            "needs a number",
        ),
        (
            {"condition": {"kind": "rate", "property": "mode", "op": ">", "value": 1}},
            "condition.property",
            "is enum",
        ),
        (
            {"condition": {"kind": "threshold", "property": "temp", "op": ">"}},
            "condition",
            "needs a value",
        ),
        (
            {
                "condition": {
                    "kind": "sustained",
                    "property": "temp",
                    "op": ">",
                    "value": 1,
                    "for": "soon",
                }
            },
            "condition.for",
            "",
        ),
        (
            {"condition": {"kind": "expression", "expression": "temp > humidity"}},
            "condition.expression",
            "humidity",
        ),
        ({"condition": {"kind": "magic", "property": "temp"}}, "condition", ""),
        ({"actions": [{"kind": "webhook"}]}, "actions.0.target", "notification target"),
        ({"colour": "red"}, "colour", "not permitted"),
    ],
)
def test_validation_names_the_field(w: World, change: dict[str, Any], loc: str, words: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        w.rules.create(w.admin, spec(**change))
    assert loc in locs(exc), exc.value
    assert words in str(exc.value.errors) + exc.value.detail


def test_device_of_another_tenant_is_not_a_target(w: World) -> None:
    other = Principal("user", 20, w.other.id, Role.TENANT_ADMIN, "bob")
    with pytest.raises(InvalidInput) as exc:
        w.rules.create(other, spec(target={"device": w.d1}))
    assert locs(exc) == ["target.device"]


def test_permissions_and_tenant_scope(w: World) -> None:
    viewer = Principal("user", 11, w.t.id, Role.VIEWER, "vic")
    engineer = Principal("user", 12, w.t.id, Role.ENGINEER, "eng")
    with pytest.raises(Forbidden):
        w.rules.create(viewer, spec())
    rule = w.rules.create(engineer, spec())
    assert w.rules.get(viewer, rule.id).name == "Oven too hot"
    bob = Principal("user", 20, w.other.id, Role.TENANT_ADMIN, "bob")
    with pytest.raises(NotFound):
        w.rules.get(bob, rule.id)
    with pytest.raises(NotFound):
        w.rules.delete(bob, rule.id)
    assert w.rules.list(bob).total == 0
    with pytest.raises(Conflict) as exc:
        w.rules.create(engineer, spec())
    assert exc.value.errors[0].loc == "name"


# Versions -----------------------------------------------------------------------------------


def test_versions_enable_disable_delete(w: World) -> None:
    rule = w.rules.create(w.admin, spec())
    assert rule.version == 1 and rule.enabled
    same = w.rules.update(w.admin, rule.id, spec())
    assert same.version == 1  # nothing changed, no new version
    hotter = spec(condition={"kind": "threshold", "property": "temp", "op": ">", "value": 250})
    v2 = w.rules.update(w.admin, rule.id, hotter)
    assert v2.version == 2 and v2.spec["condition"]["value"] == 250
    off = w.rules.set_enabled(w.admin, rule.id, False)
    assert off.version == 2 and not off.enabled
    assert w.rules.active_rules() == []
    assert w.rules.set_enabled(w.admin, rule.id, True).enabled
    versions = w.rules.versions(w.admin, rule.id)
    assert [v.version for v in versions] == [1, 2]
    assert versions[0].spec["condition"]["value"] == 200
    assert versions[0].created_by == "alice"
    assert w.rules.list(w.admin, enabled=True).total == 1
    w.rules.delete(w.admin, rule.id)
    with pytest.raises(NotFound):
        w.rules.get(w.admin, rule.id)


def test_state_of_another_version_is_discarded(w: World) -> None:
    rule = w.rules.create(w.admin, spec())
    w.rules.save_state({rule.id: (1, b"state-v1"), 999_999: (1, b"gone")})
    assert w.rules.load_state() == {rule.id: (1, b"state-v1")}
    w.rules.update(
        w.admin,
        rule.id,
        spec(condition={"kind": "threshold", "property": "temp", "op": ">", "value": 1}),
    )
    assert w.rules.load_state() == {}
    w.rules.save_state({rule.id: (2, b"state-v2")})
    assert w.rules.load_state() == {rule.id: (2, b"state-v2")}


# Target resolution --------------------------------------------------------------------------


def test_targets_resolve_to_devices_and_series(w: World) -> None:
    by_product = w.rules.create(w.admin, spec(name="p"))
    by_asset = w.rules.create(w.admin, spec(name="a", target={"asset": w.shop}))
    by_device = w.rules.create(w.admin, spec(name="d", target={"device": w.d3}))
    expr = w.rules.create(
        w.admin,
        spec(
            name="e",
            target={"asset": w.site},
            condition={"kind": "expression", "expression": "temp > 100 and power > 10"},
        ),
    )
    silent = w.rules.create(
        w.admin, spec(name="n", target={"device": w.d1}, condition={"kind": "no_data", "for": 60})
    )
    active = {r.id: r for r in w.rules.active_rules()}
    s1, s2, s3 = w.series(w.d1), w.series(w.d2), w.series(w.d3)
    assert active[by_product.id].series == {
        w.d1: {"temp": s1["temp"]},
        w.d2: {"temp": s2["temp"]},
        w.d3: {"temp": s3["temp"]},
    }
    # The workshop and the line below it; not the other site.
    assert active[by_asset.id].series == {w.d1: {"temp": s1["temp"]}, w.d2: {"temp": s2["temp"]}}
    assert active[by_device.id].series == {w.d3: {"temp": s3["temp"]}}
    assert active[expr.id].series[w.d1] == {"temp": s1["temp"], "power": s1["power"]}
    assert set(active[expr.id].series) == {w.d1, w.d2}
    assert active[silent.id].series == {w.d1: s1}  # no property: all of them
    # A device added later is covered at the next resolution.
    d4 = w.device("oven-4", w.line)
    again = {r.id: r for r in w.rules.active_rules(tenant=w.t.id)}
    assert set(again[by_asset.id].series) == {w.d1, w.d2, d4}
    assert w.rules.active_rules(tenant=w.other.id) == []


# Import / export ----------------------------------------------------------------------------


def test_import_export_round_trip(w: World) -> None:
    doc = [
        spec(
            name="hot",
            condition={
                "kind": "sustained",
                "property": "temp",
                "op": ">",
                "value": 80,
                "for": "5m",
            },
        ),
        spec(
            name="idle",
            target={"asset": w.site},
            condition={"kind": "no_data", "for": "10m"},
            severity="warning",
        ),
    ]
    made = w.rules.import_text(w.admin, yaml.safe_dump(doc))
    assert [r.name for r in made] == ["hot", "idle"]
    assert made[0].spec["condition"]["for"] == 300.0
    text = w.rules.export_text(w.admin, fmt="yaml")
    exported = yaml.safe_load(text)
    assert [d["name"] for d in exported] == ["hot", "idle"]
    # Importing the export changes nothing; the JSON export reads back the same.
    again = w.rules.import_text(w.admin, text)
    assert [r.version for r in again] == [1, 1]
    as_json = w.rules.export_text(w.admin, fmt="json")
    assert json.loads(as_json) == exported
    # A changed rule in the file becomes a new version of the rule with that name.
    exported[0]["condition"]["value"] = 90
    updated = w.rules.import_text(w.admin, json.dumps(exported), fmt="json")
    assert [r.version for r in updated] == [2, 1]
    # One invalid rule: nothing written, and the error names which one and where.
    bad = [
        spec(name="new-one"),
        spec(name="broken", condition={"kind": "rate", "property": "note", "op": ">", "value": 1}),
    ]
    with pytest.raises(InvalidInput) as exc:
        w.rules.import_text(w.admin, yaml.safe_dump(bad))
    assert locs(exc) == ["[1].condition.property"]
    assert w.rules.list(w.admin).total == 2
    with pytest.raises(InvalidInput) as exc:
        w.rules.import_text(w.admin, "name: [unclosed")
    assert locs(exc) == ["body"]
    single = w.rules.import_text(w.admin, yaml.safe_dump(spec(name="single")))
    assert single[0].name == "single"


def test_cli_import_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("YUGONG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("YUGONG_CONFIG", raising=False)
    assert main(["tenant", "create", "Kiln Works"]) == 0
    model = tmp_path / "oven.json"
    model.write_text(json.dumps(TSL), encoding="utf-8")
    assert main(["product", "import", str(model), "--tenant", "kiln-works"]) == 0
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        yaml.safe_dump(
            [
                spec(),
                spec(
                    name="cold",
                    condition={"kind": "threshold", "property": "temp", "op": "<", "value": 0},
                ),
            ]
        )
    )
    capsys.readouterr()
    assert main(["rules", "import", str(rules), "--tenant", "kiln-works"]) == 0
    out = capsys.readouterr().out
    assert "'Oven too hot': version 1" in out and "'cold': version 1" in out
    exported = tmp_path / "out.json"
    assert main(["rules", "export", "--tenant", "kiln-works", "-o", str(exported)]) == 0
    assert [r["name"] for r in json.loads(exported.read_text())] == ["Oven too hot", "cold"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(spec(target={"product": "kiln"})))
    assert main(["rules", "import", str(bad), "--tenant", "kiln-works"]) != 0
    assert "target.product" in capsys.readouterr().err


# Dry-run replay and the runner ----------------------------------------------------------------


def _batch(tenant: int, rows: list[tuple[int, int, float]]) -> pa.Table:
    n = len(rows)
    return pa.table(
        {
            "tenant": pa.array([tenant] * n, pa.int32()),
            "series": pa.array([r[0] for r in rows], pa.int32()),
            "ts": pa.array([r[1] for r in rows], pa.int64()),
            "value": pa.array([r[2] for r in rows], pa.float64()),
            "text": pa.array([None] * n, pa.string()),
            "quality": pa.array([0] * n, pa.uint8()),
        },
        schema=SAMPLE_SCHEMA,
    )


T0 = 1_700_000_000_000_000


def test_replay_reads_history_in_time_order_across_pages(
    w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(f"duckdb:///{tmp_path / 'ts.duckdb'}")
    try:
        s1, s2 = w.series(w.d1)["temp"], w.series(w.d2)["temp"]
        # Device 1 hot 10 s .. 20 s; device 2 hot 15 s .. 40 s; one sample every second.
        rows = []
        for i in range(60):
            rows.append((s1, T0 + i * 1_000_000, 250.0 if 10 <= i < 20 else 20.0))
            rows.append((s2, T0 + i * 1_000_000 + 500_000, 300.0 + i if 15 <= i < 40 else 20.0))
        store.write(_batch(w.t.id, rows))
        monkeypatch.setattr(runner_mod, "PAGE_ROWS", 7)  # many pages
        rule = w.rules.create(w.admin, spec())
        active = w.rules.active_rules()[0]
        found = replay(active, store, T0, T0 + 60_000_000, engine_factory=engine_factory)
        assert [(a.device, a.raised_at_us, a.cleared_at_us, a.value) for a in found] == [
            (w.d1, T0 + 10_000_000, T0 + 20_000_000, 250.0),
            (w.d2, T0 + 15_500_000, T0 + 40_500_000, 315.0),
        ]
        # Live: the same samples as batches in arrival order give the same alarms.
        live = engine_factory()
        live.set_rules([active])
        transitions = []
        for k in range(0, len(rows), 10):
            transitions += live.process(_batch(w.t.id, rows[k : k + 10]))
        assert alarms_of(transitions) == found
        # Through the service: by id, and as a spec not stored yet.
        store_service = RuleService(w.rules._db, store=store)
        assert store_service.dry_run(w.admin, rule.id, T0, T0 + 60_000_000) == found
        draft = spec(name="draft", target={"device": w.d2})
        assert [a.device for a in store_service.dry_run(w.admin, draft, T0, T0 + 60_000_000)] == [
            w.d2
        ]
        with pytest.raises(InvalidInput) as exc:
            store_service.dry_run(w.admin, spec(target={"product": "x"}), T0, T0 + 1)
        assert locs(exc) == ["spec.target.product"]
        with pytest.raises(InvalidInput) as exc:
            store_service.dry_run(w.admin, rule.id, T0, T0)
        assert locs(exc) == ["end"]
    finally:
        store.close()


class Sink:
    def __init__(self) -> None:
        self.got: list[Transition] = []

    def apply(self, transitions: list[Transition]) -> list[Any]:
        self.got += transitions
        return []


async def _until(cond: Any, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not cond():
        assert loop.time() < end, "condition not met in time"
        await asyncio.sleep(0.01)


def test_runner_hands_over_transitions_and_survives_a_failing_rule(w: World) -> None:
    rule = w.rules.create(w.admin, spec())
    broken = w.rules.create(w.admin, spec(name="explode", target={"device": w.d1}))
    s1, s2 = w.series(w.d1)["temp"], w.series(w.d2)["temp"]
    engine = FakeEngine()
    sink = Sink()

    async def run() -> None:
        bus = InProcessBus()
        runner = RuleRunner(w.rules, bus, sink, engine=engine, tick_s=0.05, queue_batches=10)
        await runner.start()
        assert set(engine.rules) == {rule.id, broken.id}
        bus.publish("samples", _batch(w.t.id, [(s1, T0, 500.0)]))
        await _until(lambda: runner.stats.failures >= 1)
        # The failing rule is suspended; the other one still evaluates every batch.
        assert runner.stats.quarantined == {broken.id: 1}
        assert set(engine.rules) == {rule.id}
        bus.publish("samples", _batch(w.t.id, [(s2, T0 + 1, 500.0)]))
        bus.publish("samples", _batch(w.t.id, [(s1, T0 + 2, 600.0)]))
        await _until(lambda: any(t.device == w.d2 for t in sink.got))
        assert runner.stats.failures == 1
        assert all(t.rule == rule.id for t in sink.got)
        # Its next version runs again; a new rule reaches the engine without a restart.
        w.rules.update(w.admin, broken.id, spec(name="mended", target={"device": w.d1}))
        w.rules.create(
            w.admin,
            spec(
                name="cold",
                condition={"kind": "threshold", "property": "temp", "op": ">", "value": -100},
            ),
        )
        await _until(lambda: len(engine.rules) == 3)
        await runner.stop()
        assert w.rules.load_state()[rule.id][0] == 1  # saved at stop

    asyncio.run(run())
