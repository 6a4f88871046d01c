"""Blocking: blocks in the table and in memory, automatic blocks from security events,
alarms on the platform bus, a blocked address refused over HTTP, and the events and blocks
API with tenant scoping."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.security.conftest import World
from tests.security.test_headers_csrf import ADMIN_PASSWORD, platform_settings, running_app
from yugong.core.errors import InvalidInput, NotFound
from yugong.infra.db import utcnow
from yugong.security.blocks import ACL_VIOLATIONS, ALARM_TOPIC, Blocks
from yugong.security.models import SecurityEvent


def test_block_lookup_extend_and_lift(world: World) -> None:
    blocks = world.sec.blocks
    b = blocks.block("ip", "203.0.113.9", "test", 60)
    until = blocks.is_blocked("ip", "203.0.113.9")
    assert until is not None and until > utcnow() + timedelta(seconds=50)
    assert blocks.is_blocked("ip", "203.0.113.10") is None
    again = blocks.block("ip", "203.0.113.9", "again", 600)
    assert again.id == b.id and again.until > b.until  # extended, not duplicated

    other = Blocks(world.sec.db)  # another process: sees it from the table
    assert other.is_blocked("ip", "203.0.113.9") is not None
    blocks.lift(b.id)
    assert blocks.is_blocked("ip", "203.0.113.9") is None
    other.refresh()
    assert other.is_blocked("ip", "203.0.113.9") is None
    items, total = blocks.list(all_tenants=True, active=False)
    assert total == 1 and items[0].lifted_at is not None


def test_bad_blocks_are_refused_clearly(world: World) -> None:
    blocks = world.sec.blocks
    with pytest.raises(InvalidInput, match="loopback"):
        blocks.block("ip", "127.0.0.1", "no", 60)
    with pytest.raises(InvalidInput, match="not an IP address"):
        blocks.block("ip", "example.com", "no", 60)
    with pytest.raises(InvalidInput, match="kind must be one of"):
        blocks.block("planet", "x", "no", 60)
    with pytest.raises(InvalidInput, match="positive"):
        blocks.block("device", "7", "no", 0)
    with pytest.raises(NotFound):
        blocks.lift(9999)
    assert blocks.list(all_tenants=True, active=None)[1] == 0  # nothing stored


def test_failed_logins_from_one_address_block_it_and_raise_an_alarm(world: World) -> None:
    sec = world.sec
    alarms: list[dict[str, Any]] = []
    sec.detection.alarm_sink = alarms.append
    limit = sec.settings.block_failed_logins_per_ip
    for i in range(limit):  # folded into few rows, but every one counts
        sec.events.record("login_failed", source_ip="198.51.100.23", subject=f"user{i % 2}")
    assert sec.blocks.is_blocked("ip", "198.51.100.23") is None
    sec.events.record("login_failed", source_ip="198.51.100.23", subject="user0")
    assert sec.blocks.is_blocked("ip", "198.51.100.23") is not None
    assert [a["kind"] for a in alarms] == ["blocked"]
    assert alarms[0]["subject"] == "ip:198.51.100.23"
    with sec.db.session() as s:
        blocked = s.get(SecurityEvent, alarms[0]["event_id"])
        assert blocked is not None and blocked.detail["alarm"] is True

    for _ in range(limit + 5):  # loopback is exempt
        sec.events.record("login_failed", source_ip="127.0.0.1", subject="x")
    assert sec.blocks.is_blocked("ip", "127.0.0.1") is None


def test_acl_violations_block_the_device_and_critical_events_alarm(world: World) -> None:
    sec = world.sec
    alarms: list[dict[str, Any]] = []
    sec.detection.alarm_sink = alarms.append
    for _ in range(ACL_VIOLATIONS + 1):
        sec.events.record("acl_violation", tenant_id=world.tenant_a, device_id=42, subject="t")
    assert sec.blocks.is_blocked("device", "42") is not None
    items, _ = sec.blocks.list(tenant_id=world.tenant_a)
    assert [(b.kind, b.value) for b in items] == [("device", "42")]

    sec.events.record("tampered_file", "critical", subject="yugong/x.py")
    assert [a["kind"] for a in alarms] == ["blocked", "tampered_file"]


# Over HTTP, on the whole platform -----------------------------------------------------------


def login(c: TestClient, username: str, password: str) -> dict[str, str]:
    r = c.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_blocked_address_gets_403_and_alarm_reaches_the_bus(tmp_path: Path) -> None:
    settings = platform_settings(tmp_path)
    attacker = ("203.0.113.66", 40000)
    with running_app(settings, client=attacker) as c:
        app: Any = c.app
        platform = app.state.platform
        sub = platform.bus.subscribe(ALARM_TOPIC)
        root = login(c, "admin", ADMIN_PASSWORD)
        r = c.post(
            "/api/v1/security/blocks",
            headers=root,
            json={"kind": "ip", "value": "203.0.113.66", "reason": "manual test"},
        )
        assert r.status_code == 201, r.text
        refused = c.get("/api/v1/health")
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert "203.0.113.66 are blocked until" in refused.json()["detail"]
        assert refused.headers["x-frame-options"] == "DENY"  # refusals get headers too

        # The block is audited; lifting it from elsewhere lets the address back in.
        platform.security.blocks.lift(r.json()["id"])
        assert c.get("/api/v1/health").status_code == 200
        assert platform.security.audit.list(all_tenants=True, action="security")[1] == 1

        # A critical event raises an alarm on the bus.
        platform.security.events.record("tampered_file", "critical", subject="f.py")

        async def next_alarm() -> Any:
            return await asyncio.wait_for(sub.get(), 5)

        alarm = c.portal.call(next_alarm)  # type: ignore[union-attr]
        assert alarm["kind"] == "tampered_file" and alarm["severity"] == "critical"
        sub.close()


def test_events_and_blocks_api_scoping(tmp_path: Path) -> None:
    with running_app(platform_settings(tmp_path)) as c:
        app: Any = c.app
        sec = app.state.security
        root = login(c, "admin", ADMIN_PASSWORD)
        ids = []
        for name in ("A", "B"):
            t = c.post("/api/v1/tenants", headers=root, json={"name": name}).json()
            ids.append(t["id"])
            r = c.post(
                "/api/v1/users",
                headers=root,
                json={
                    "username": f"{name.lower()}-admin",
                    "password": "Tenant-Pass-2026!q",
                    "role": "tenant_admin",
                    "tenant_id": t["id"],
                },
            )
            assert r.status_code == 201, r.text
        a = login(c, "a-admin", "Tenant-Pass-2026!q")
        sec.events.record("unknown_device", tenant_id=ids[0], subject="ghost")
        sec.events.record("bad_credentials", tenant_id=ids[1], subject="intruder")

        mine = c.get("/api/v1/security/events", headers=a).json()
        assert [e["kind"] for e in mine["items"]] == ["unknown_device"]
        assert (
            c.get("/api/v1/security/events", headers=a, params={"tenant_id": ids[1]}).status_code
            == 403
        )
        every = c.get("/api/v1/security/events", headers=root, params={"kind": "bad_credentials"})
        assert [e["subject"] for e in every.json()["items"]] == ["intruder"]
        crit = c.get("/api/v1/security/events", headers=root, params={"severity": "critical"})
        assert crit.json()["total"] == 0

        # Tenant admins block only their own devices.
        assert (
            c.post(
                "/api/v1/security/blocks",
                headers=a,
                json={"kind": "ip", "value": "192.0.2.1", "reason": "no"},
            ).status_code
            == 403
        )
        assert (
            c.post(
                "/api/v1/security/blocks",
                headers=a,
                json={"kind": "device", "value": "999", "reason": "no"},
            ).status_code
            == 404
        )
        bad = c.post(
            "/api/v1/security/blocks",
            headers=root,
            json={"kind": "ip", "value": "not-an-ip", "reason": "typo"},
        )
        assert bad.status_code == 422 and "not an IP address" in bad.json()["detail"]
        other = sec.blocks.block("device", "12345", "theirs", 60, ids[1])
        assert c.get("/api/v1/security/blocks", headers=a).json()["total"] == 0
        assert c.delete(f"/api/v1/security/blocks/{other.id}", headers=a).status_code == 404
        assert sec.blocks.is_blocked("device", "12345") is not None
        lifted = c.delete(f"/api/v1/security/blocks/{other.id}", headers=root)
        assert lifted.status_code == 200 and lifted.json()["active"] is False


def test_brute_force_over_http_blocks_the_address(tmp_path: Path) -> None:
    settings = platform_settings(tmp_path, block_failed_logins_per_ip=3, login_lockout_after=50)
    with running_app(settings, client=("203.0.113.77", 41000)) as c:
        wrong = {"username": "admin", "password": "Not-The-Password-1!"}
        codes = [c.post("/api/v1/auth/login", json=wrong).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 401]
        r = c.post("/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
        assert r.status_code == 403 and "203.0.113.77" in r.json()["detail"]
        app: Any = c.app
        sec = app.state.security
        items, _ = sec.blocks.list(all_tenants=True)
        assert [(b.kind, b.value) for b in items] == [("ip", "203.0.113.77")]
        assert "login_failed" in items[0].reason
