"""The alarms API on a real server: the lifecycle over HTTP, and the live stream (SSE)
receiving the changes the rule engine's transitions make through ``platform.alarms``."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import USER_PASSWORD, Api, TenantWorld, make_settings
from yugong.platform.rules.models import Rule
from yugong.platform.rules.types import Transition
from yugong.server import BackgroundServer

T0 = 1_700_000_000_000_000  # µs
STREAM_S = 5  # each test stream ends after this long


@dataclass
class Env:
    srv: BackgroundServer
    api: Api
    a: TenantWorld
    b: TenantWorld
    rule_a: int
    rule_b: int
    operator: dict[str, str]
    viewer: dict[str, str]
    operator_id: int


def _rule(srv: BackgroundServer, tenant: int, name: str, severity: str) -> int:
    spec = {
        "name": name,
        "target": {"product": "sensor"},
        "severity": severity,
        "condition": {"kind": "threshold", "property": "temperature", "op": ">", "value": 80},
        "clear": {"hysteresis": 2, "manual": False},
    }
    with srv.platform.db.session() as s:
        r = Rule(tenant_id=tenant, name=name, version=1, enabled=True, spec=spec)
        s.add(r)
        s.flush()
        return r.id


def _user(api: Api, w: TenantWorld, name: str, role: str) -> tuple[int, dict[str, str]]:
    body = {"username": name, "password": USER_PASSWORD, "role": role}
    user = api.call("POST", "/api/v1/users", w.headers, 201, json=body)
    return user["id"], api.login(name, USER_PASSWORD)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    settings = make_settings(Path(tmp_path_factory.mktemp("alarms")), mqtt_embedded=False)
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        admin = api.admin()
        a, b = api.setup_tenant(admin, "Alarm Works"), api.setup_tenant(admin, "Other Works")
        op_id, operator = _user(api, a, "alarm-operator", "operator")
        _, viewer = _user(api, a, "alarm-viewer", "viewer")
        yield Env(
            srv,
            api,
            a,
            b,
            _rule(srv, a.tenant_id, "Too hot", "major"),
            _rule(srv, b.tenant_id, "Too hot", "critical"),
            operator,
            viewer,
            op_id,
        )


def _t(env: Env, w: TenantWorld, raised: bool, at_s: float, value: float) -> Transition:
    rule = env.rule_a if w is env.a else env.rule_b
    return Transition(rule, 1, w.tenant_id, w.device_id, raised, T0 + int(at_s * 1e6), value)


def test_lifecycle_over_http(env: Env) -> None:
    api, a = env.api, env.a
    [raised] = env.srv.platform.alarms.apply([_t(env, a, True, 0, 85.0)])
    env.srv.platform.alarms.apply([_t(env, a, True, 1, 86.0)])
    alarm_id = raised.alarm

    page = api.call(
        "GET", "/api/v1/alarms", env.viewer, params={"state": "open", "severity": "major,minor"}
    )
    mine = [x for x in page["items"] if x["id"] == alarm_id]
    assert mine and mine[0]["count"] == 2 and mine[0]["state"] == "active"
    assert mine[0]["device_id"] == a.device_id and mine[0]["name"] == "Too hot"
    assert (
        api.call("GET", "/api/v1/alarms", env.viewer, params={"severity": "critical"})["items"]
        == []
    )
    since = api.call("GET", "/api/v1/alarms", env.viewer, params={"since": "2023-11-14T22:13:21Z"})
    assert alarm_id not in [x["id"] for x in since["items"]]  # raised at 22:13:20
    bad = api.call("GET", "/api/v1/alarms", env.viewer, 422, params={"severity": "urgent"})
    assert "severity" in json.dumps(bad)
    assert api.call("GET", "/api/v1/alarms/summary", env.viewer)["open"]["major"] >= 1

    # Viewers read but do not act; another tenant does not see it.
    api.call("POST", f"/api/v1/alarms/{alarm_id}/ack", env.viewer, 403)
    api.call("GET", f"/api/v1/alarms/{alarm_id}", env.b.headers, 404)
    api.call("POST", f"/api/v1/alarms/{alarm_id}/ack", env.b.headers, 404)

    acked = api.call("POST", f"/api/v1/alarms/{alarm_id}/ack", env.operator)
    assert (acked["state"], acked["acknowledged_by"]) == ("acknowledged", "alarm-operator")
    api.call("POST", f"/api/v1/alarms/{alarm_id}/ack", env.operator, 409)
    note = api.call(
        "POST", f"/api/v1/alarms/{alarm_id}/comments", env.operator, 201, json={"text": "on it"}
    )
    assert (note["kind"], note["text"]) == ("commented", "on it")
    body = {"user_id": env.operator_id}
    assert (
        api.call("POST", f"/api/v1/alarms/{alarm_id}/assign", env.operator, json=body)[
            "assignee_id"
        ]
        == env.operator_id
    )
    api.call(
        "POST", f"/api/v1/alarms/{alarm_id}/assign", env.operator, 422, json={"user_id": 999_999}
    )
    cleared = api.call("POST", f"/api/v1/alarms/{alarm_id}/clear", env.operator)
    assert (cleared["state"], cleared["cleared_by"]) == ("cleared", "alarm-operator")
    history = api.call("GET", f"/api/v1/alarms/{alarm_id}/history", env.viewer)
    assert [h["kind"] for h in history] == [
        "raised",
        "repeated",
        "acknowledged",
        "commented",
        "assigned",
        "cleared",
    ]
    audit = api.call("GET", "/api/v1/audit", a.headers, params={"action": "alarms"})
    actions = {e["action"] for e in audit["items"] if e.get("target_type") == "alarm"}
    assert {"alarms.acknowledged", "alarms.commented", "alarms.assigned"} <= actions


class SseReader:
    """Reads an SSE response in a thread, collecting (event, data) pairs."""

    def __init__(self, client: httpx.Client, headers: dict[str, str], **params: Any) -> None:
        self.events: list[tuple[str, Any]] = []
        self.comments: list[str] = []
        self.status = 0
        self.content_type = ""
        self.opened = threading.Event()
        self._args = (client, headers, params)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        client, headers, params = self._args
        with client.stream("GET", "/api/v1/alarms/stream", headers=headers, params=params) as r:
            self.status, self.content_type = r.status_code, r.headers.get("content-type", "")
            event = "message"
            for line in r.iter_lines():
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    self.opened.set()
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    self.events.append((event, json.loads(line[5:])))
                    event = "message"
        self.opened.set()

    def wait(self, n: int, timeout: float = 10.0) -> list[tuple[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.events) >= n, f"got {self.events}"
        return self.events


def test_stream_receives_raise_and_clear(env: Env) -> None:
    a, b = env.a, env.b
    with httpx.Client(base_url=env.srv.url, timeout=30) as c:
        everything = SseReader(c, env.viewer, timeout=STREAM_S, heartbeat=0.2)
        major = SseReader(c, env.viewer, timeout=STREAM_S, severity="major", device=a.device_id)
        critical = SseReader(c, env.viewer, timeout=STREAM_S, severity="critical")
        for reader in (everything, major, critical):
            assert reader.opened.wait(10)
            assert reader.status == 200 and reader.content_type.startswith("text/event-stream")
        alarms = env.srv.platform.alarms
        # Tenant B's alarm (critical) must not reach tenant A's streams.
        alarms.apply([_t(env, b, True, 0, 99.0)])
        [raised] = alarms.apply([_t(env, a, True, 10, 85.0)])
        [cleared] = alarms.apply([_t(env, a, False, 11, 70.0)])
        got = everything.wait(2)
        assert [(e, d["kind"], d["alarm"]) for e, d in got[:2]] == [
            ("alarm", "raised", raised.alarm),
            ("alarm", "cleared", raised.alarm),
        ]
        first = got[0][1]
        assert (first["tenant"], first["device"], first["severity"], first["state"]) == (
            a.tenant_id,
            a.device_id,
            "major",
            "active",
        )
        assert first["value"] == 85.0 and first["at_us"] == T0 + 10_000_000
        assert [d["kind"] for _, d in major.wait(2)[:2]] == ["raised", "cleared"]
        time.sleep(0.5)
        assert critical.events == []  # B's critical alarm is not A's
        assert "keep-alive" in everything.comments
        assert all(d["tenant"] == a.tenant_id for _, d in everything.events)
        assert cleared.kind == "cleared"
        for reader in (everything, major, critical):  # the server ends each stream
            reader.thread.join(STREAM_S + 10)
            assert not reader.thread.is_alive()


def test_stream_once_and_refusals(env: Env) -> None:
    r = env.api.client.get("/api/v1/alarms/stream", headers=env.viewer, params={"once": "true"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert r.text.startswith("retry:")
    env.api.call("GET", "/api/v1/alarms/stream", None, 401, params={"once": "true"})
    env.api.call(
        "GET",
        "/api/v1/alarms/stream",
        env.viewer,
        403,
        params={"once": "true", "tenant_id": env.b.tenant_id},
    )
    env.api.call(
        "GET", "/api/v1/alarms/stream", env.viewer, 422, params={"severity": "loud", "once": 1}
    )
