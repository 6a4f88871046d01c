"""Secrets at rest, the request context, and security events folding."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from yugong.core.settings import Settings
from yugong.infra.db import Database
from yugong.security.audit import AuditLog, VerifyResult
from yugong.security.context import acting, actor, current
from yugong.security.events import SecurityEvents
from yugong.security.models import AuditEntry, SecurityEvent
from yugong.security.principal import SYSTEM, Principal, Role
from yugong.security.secrets import SecretBox, SecretError


def test_sealed_secrets_open_only_with_their_key_and_place(settings: Settings) -> None:
    box = SecretBox.from_settings(settings)
    sealed = box.seal("JBSWY3DPEHPK3PXP", "user:7:totp")
    assert sealed.startswith("v1:") and "JBSWY3DP" not in sealed
    assert box.open(sealed, "user:7:totp") == "JBSWY3DPEHPK3PXP"
    assert box.seal("x", "c") != box.seal("x", "c")  # a fresh nonce each time
    with pytest.raises(SecretError):
        box.open(sealed, "user:8:totp")  # copied to another row
    tampered = sealed[:-4] + ("AAAA" if not sealed.endswith("AAAA") else "BBBB")
    with pytest.raises(SecretError):
        box.open(tampered, "user:7:totp")
    other = SecretBox.from_settings(settings.model_copy(update={"data_key": "k" * 40}))
    with pytest.raises(SecretError):
        other.open(sealed, "user:7:totp")
    with pytest.raises(SecretError, match="unknown format"):
        box.open("plain text", "user:7:totp")


def test_context_defaults_to_system_and_acting_sets_it() -> None:
    assert actor() is SYSTEM and current().source_ip is None
    p = Principal(kind="device", id=5, tenant=2, role=Role.OPERATOR, name="pump-1")
    with acting(p, "10.0.0.9", "mqtt") as ctx:
        assert actor() is p and current() is ctx and ctx.channel == "mqtt"
    assert actor() is SYSTEM


def test_repeated_events_fold_into_one_row_with_a_count(sqlite_db: Database) -> None:
    events = SecurityEvents(sqlite_db, fold_s=60)
    seen: list[str] = []
    events.subscribe(lambda e: seen.append(e.kind))
    first = events.record("login_failed", tenant_id=1, source_ip="10.0.0.1", subject="bob")
    for _ in range(4):
        assert (
            events.record("login_failed", tenant_id=1, source_ip="10.0.0.1", subject="bob") == first
        )
    other = events.record("login_failed", tenant_id=1, source_ip="10.0.0.2", subject="bob")
    assert other != first
    with sqlite_db.session() as s:
        rows = {r.id: r.count for r in s.scalars(select(SecurityEvent))}
    assert rows == {first: 5, other: 1}
    assert seen == ["login_failed", "login_failed"]  # listeners hear new events, not repeats


def test_audit_chain_detects_edits_and_deletions(db: Database) -> None:
    audit = AuditLog(db)
    p = Principal(kind="user", id=3, tenant=1, role=Role.ENGINEER, name="eve")
    with acting(p, "192.0.2.7", "http"):
        for i in range(5):
            audit.record("devices.update", target_type="device", target_id=i, detail={"n": i})
    audit.record("login", outcome="refused", actor_kind="user", actor_name="mallory")
    assert audit.verify() == VerifyResult(6, True)
    with db.session() as s:
        rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
        assert [r.actor_name for r in rows] == ["eve"] * 5 + ["mallory"]
        assert rows[0].source_ip == "192.0.2.7" and rows[0].tenant_id == 1
        third = rows[2].id
        rows[2].detail = {"n": 99}  # an edit
    bad = audit.verify()
    assert not bad.ok and bad.first_bad == third and "changed" in bad.reason
    with db.session() as s:
        s.get(AuditEntry, third).detail = {"n": 2}  # type: ignore[union-attr]
    assert audit.verify().ok
    with db.session() as s:
        s.delete(s.get(AuditEntry, third))  # a deletion
    bad = audit.verify()
    assert not bad.ok and bad.first_bad == third + 1 and "link" in bad.reason
