"""Rules on a real server: defined over HTTP, fed by HTTP ingest, transitions reaching the
alarm service; a restart in the middle of a sustained duration; dry-run equal to live."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.integration.conftest import Api, make_settings
from tests.platform.test_rules_service import FakeEngine
from yugong.platform.rules import runner as runner_mod
from yugong.platform.rules.runner import alarms_of
from yugong.platform.rules.types import Transition
from yugong.server import BackgroundServer


@pytest.fixture(autouse=True)
def engine(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real engine when installed; else the stand-in from the service tests."""
    try:
        from yugong.platform.rules.engine import RuleEngine  # noqa: F401
    except ImportError:
        monkeypatch.setattr(runner_mod, "default_engine", FakeEngine)


class Recorder:
    """Sees every transition the runner hands over, and passes it on to the alarm service."""

    def __init__(self, platform: Any) -> None:
        self.platform = platform
        self.got: list[Transition] = []
        self.changes: list[Any] = []

    def apply(self, transitions: list[Transition]) -> list[Any]:
        self.got += transitions
        alarms = getattr(self.platform, "alarms", None)
        out = alarms.apply(transitions) if alarms is not None else []
        self.changes += out
        return list(out)


def server(data_dir: Path, settings: Any = None) -> tuple[BackgroundServer, Recorder]:
    srv = BackgroundServer(settings or make_settings(data_dir))
    recorder = Recorder(srv.platform)
    srv.platform.transition_sink = recorder  # type: ignore[attr-defined]
    return srv, recorder


def now_ms() -> int:
    return int(time.time() * 1000)


def test_rules_over_http_live_equals_dry_run(tmp_path: Path) -> None:
    srv, rec = server(tmp_path)
    with srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        world = api.setup_tenant(api.admin(), "Rule Plant")
        h = world.headers
        bad = {
            "name": "broken",
            "target": {"product": "sensor"},
            "condition": {"kind": "rate", "property": "label", "op": ">", "value": 1},
        }
        problem = api.call("POST", "/api/v1/rules", h, 422, json=bad)
        assert [e["loc"] for e in problem["errors"]] == ["condition.property"]
        spec = {
            "name": "Too hot",
            "target": {"product": "sensor"},
            "severity": "major",
            "condition": {"kind": "threshold", "property": "temperature", "op": ">", "value": 50},
        }
        rule = api.call("POST", "/api/v1/rules", h, 201, json=spec)
        assert rule["version"] == 1 and rule["enabled"]
        held = {
            "name": "Hot for 2 s",
            "target": {"device": world.device_id},
            "condition": {**spec["condition"], "kind": "sustained", "for": "2s"},
        }
        sustained = api.call("POST", "/api/v1/rules", h, 201, json=held)
        assert api.call("GET", "/api/v1/rules", h)["total"] == 2

        # Two hot spells, in order, as a device sends them (with its own timestamps).
        base = now_ms() - 120_000
        temps = [20.0] * 5 + [60.0 + i for i in range(5)] + [20.0] * 5 + [80.0] * 3 + [30.0] * 2
        points = [
            {"ts": base + i * 1000, "values": {"temperature": t}} for i, t in enumerate(temps)
        ]
        for k in range(0, len(points), 4):
            api.call("POST", f"/api/v1/{world.token}/telemetry", json=points[k : k + 4])
        api.wait_for(lambda: len(rec.got) >= 8)

        def live_of(rule_id: int) -> list[Any]:
            return alarms_of([t for t in rec.got if t.rule == rule_id])

        live = live_of(rule["id"])
        assert [(a.device, a.raised_at_us, a.cleared_at_us) for a in live] == [
            (world.device_id, (base + 5000) * 1000, (base + 10_000) * 1000),
            (world.device_id, (base + 15_000) * 1000, (base + 18_000) * 1000),
        ]
        assert [(a.raised_at_us, a.cleared_at_us) for a in live_of(sustained["id"])] == [
            ((base + 7000) * 1000, (base + 10_000) * 1000),
            ((base + 17_000) * 1000, (base + 18_000) * 1000),
        ]
        # The transitions reached the alarm service: it raised an alarm for the rule.
        assert any(ch.kind == "raised" and ch.rule == rule["id"] for ch in rec.changes)

        # Dry-run reads the store: wait until the writer has stored every sample.
        binding = srv.platform.directory.by_id(world.device_id)
        sid = binding.properties["temperature"].series
        stored = lambda: srv.platform.store.range([sid], 0, 2**62).table.num_rows  # noqa: E731
        api.wait_for(lambda: stored() == len(points))
        for rid in (rule["id"], sustained["id"]):
            body = {"rule_id": rid, "start": base - 1000, "end": base + 60_000}
            dry = api.call("POST", "/api/v1/rules:dry-run", h, json=body)["alarms"]
            assert [(a["device"], a["raised_at_us"], a["cleared_at_us"]) for a in dry] == [
                (a.device, a.raised_at_us, a.cleared_at_us) for a in live_of(rid)
            ]
            # The deciding value too (the sample holding then, whatever the batches).
            assert [a["value"] for a in dry] == [a.value for a in live_of(rid)]
        # A draft spec, never stored, over the same history.
        draft = {**spec, "name": "draft", "condition": {**spec["condition"], "value": 70}}
        dry2 = api.call(
            "POST",
            "/api/v1/rules:dry-run",
            h,
            json={"spec": draft, "start": base, "end": base + 60_000},
        )["alarms"]
        assert [a["raised_at_us"] for a in dry2] == [(base + 15_000) * 1000]

        # Versions, enable/disable, export and import (YAML).
        spec2 = {**spec, "severity": "critical"}
        assert api.call("PUT", f"/api/v1/rules/{rule['id']}", h, json=spec2)["version"] == 2
        versions = api.call("GET", f"/api/v1/rules/{rule['id']}/versions", h)
        assert [v["version"] for v in versions] == [1, 2]
        assert not api.call("POST", f"/api/v1/rules/{rule['id']}/disable", h)["enabled"]
        assert api.call("POST", f"/api/v1/rules/{rule['id']}/enable", h)["enabled"]
        exported = api.call("GET", "/api/v1/rules:export", h).text
        docs = yaml.safe_load(exported)
        assert docs[0]["severity"] == "critical"
        docs.append(
            {**spec, "name": "Too cold", "condition": {**spec["condition"], "op": "<", "value": 0}}
        )
        made = api.call(
            "POST",
            "/api/v1/rules:import",
            {**h, "content-type": "application/yaml"},
            content=yaml.safe_dump(docs),
        )
        assert [(r["name"], r["version"]) for r in made] == [
            ("Too hot", 2),
            ("Hot for 2 s", 1),
            ("Too cold", 1),
        ]
        api.call("DELETE", f"/api/v1/rules/{made[2]['id']}", h, 204)
        api.call("GET", f"/api/v1/rules/{made[2]['id']}", h, 404)
        # Every change is in the audit log, with who made it.
        audit = api.call("GET", "/api/v1/audit", h, params={"action": "rules", "limit": 50})
        actions = [entry["action"] for entry in audit["items"]]
        for action in ("rules.create", "rules.update", "rules.disable", "rules.delete"):
            assert action in actions, actions


def test_restart_in_the_middle_of_a_sustained_duration(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    srv, rec = server(tmp_path, settings)
    with srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        world = api.setup_tenant(api.admin(), "Restart Plant")
        spec = {
            "name": "Hot for 6 s",
            "target": {"device": world.device_id},
            "condition": {
                "kind": "sustained",
                "property": "temperature",
                "op": ">",
                "value": 50,
                "for": "6s",
            },
        }
        api.call("POST", "/api/v1/rules", world.headers, 201, json=spec)
        runner = srv.platform.rules_runner
        assert runner is not None
        api.wait_for(lambda: runner.stats.refreshes >= 2)  # the new rule is running
        t0 = now_ms()
        api.call(
            "POST",
            f"/api/v1/{world.token}/telemetry",
            json={"ts": t0, "values": {"temperature": 90}},
        )
        api.wait_for(lambda: runner.stats.rows >= 1)
        time.sleep(2.5)  # well inside the 6 s
    assert rec.got == []

    srv2, rec2 = server(tmp_path, settings)
    with srv2, httpx.Client(base_url=srv2.url, timeout=30) as c:
        api = Api(c)
        deadline = time.monotonic() + 20
        while not rec2.got and time.monotonic() < deadline:
            api.call(
                "POST",
                f"/api/v1/{world.token}/telemetry",
                json={"ts": now_ms(), "values": {"temperature": 91}},
            )
            time.sleep(0.25)
        assert rec2.got, "the sustained alarm never fired after the restart"
        raised = rec2.got[0]
        assert raised.raised and raised.device == world.device_id
        # The duration counted from the sample before the restart, not from the first after.
        elapsed_s = (raised.at_us - t0 * 1000) / 1e6
        assert 6.0 <= elapsed_s <= 7.5, elapsed_s
