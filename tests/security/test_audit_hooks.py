"""Every change to the registry and access tables is audited automatically, in the change's
own transaction; the chain detects edits, deletions and a truncated tail; the CLI and the
API expose it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text

from tests.security.conftest import PASSWORD, SECRET, World, add_tenant
from yugong.api import problems
from yugong.api.routers import auth, security
from yugong.cli import main as cli_main
from yugong.infra.db import utcnow
from yugong.platform.registry.models import Asset
from yugong.security.audit_hooks import MASK
from yugong.security.context import acting
from yugong.security.models import AuditEntry, User
from yugong.security.principal import SYSTEM, Role
from yugong.security.service import Security


def entries(sec: Security, action: str | None = None) -> list[AuditEntry]:
    rows, _ = sec.audit.list(all_tenants=True, action=action, limit=1000)
    return list(reversed(rows))


def test_create_update_delete_are_audited_with_actor_ip_and_columns(world: World) -> None:
    sec = world.sec
    admin = world.a[Role.TENANT_ADMIN]
    with acting(admin, "198.51.100.7", "http"), sec.db.session() as s:
        asset = Asset(tenant_id=world.tenant_a, kind="site", name="Plant 1", attributes={})
        s.add(asset)
    with acting(admin, "198.51.100.7", "http"), sec.db.session() as s:
        row = s.get(Asset, asset.id)
        assert row is not None
        row.name = "Plant One"
    with acting(admin, "198.51.100.8", "http"), sec.db.session() as s:
        s.delete(s.get(Asset, asset.id))

    created, updated, deleted = (
        entries(sec, f"assets.{op}")[-1] for op in ("create", "update", "delete")
    )
    for e in (created, updated, deleted):
        assert e.target_type == "assets" and e.target_id == str(asset.id)
        assert e.tenant_id == world.tenant_a
        assert (e.actor_kind, e.actor_id, e.actor_name) == ("user", admin.id, admin.name)
    assert created.source_ip == "198.51.100.7" and deleted.source_ip == "198.51.100.8"
    assert created.detail["changes"]["name"] == "Plant 1"
    assert updated.detail["changes"] == {"name": "Plant One"}  # only what changed
    assert sec.audit.verify().ok


def test_secrets_are_masked_and_volatile_columns_not_audited(world: World) -> None:
    sec = world.sec
    viewer = world.a[Role.VIEWER]
    created = next(e for e in entries(sec, "users.create") if e.target_id == str(viewer.id))
    assert created.detail["changes"]["password_hash"] == MASK
    with sec.db.session() as s:
        stored_hash = s.get(User, viewer.id).password_hash  # type: ignore[union-attr]
    assert stored_hash not in str([e.detail for e in entries(sec)])

    before = len(entries(sec))
    with sec.db.session() as s:  # what a login changes: not an audited change
        u = s.get(User, viewer.id)
        assert u is not None
        u.last_login_at, u.failed_logins = utcnow(), 3
    assert len(entries(sec)) == before

    with sec.db.session() as s:
        u = s.get(User, viewer.id)
        assert u is not None
        u.password_hash, u.role = "argon2-something-secret", "operator"
    last = entries(sec, "users.update")[-1]
    assert last.detail["changes"] == {"password_hash": MASK, "role": "operator"}


def test_rolled_back_change_leaves_no_entry_and_unaudited_tables_are_skipped(
    world: World,
) -> None:
    sec = world.sec
    before = len(entries(sec))
    with pytest.raises(RuntimeError), sec.db.session() as s:
        s.add(Asset(tenant_id=world.tenant_a, kind="site", name="never", attributes={}))
        s.flush()
        raise RuntimeError("abort")
    sec.events.record("login_failed", source_ip="192.0.2.1")  # security_events: not audited
    sec.sessions.login("a-viewer", PASSWORD)  # refresh_tokens: not audited
    tables = {e.action.split(".")[0] for e in entries(sec)[before:]}
    assert not tables & {"assets", "refresh_tokens", "security_events"}, tables
    assert sec.audit.verify().ok


def test_verify_detects_edit_delete_and_truncated_tail(world: World) -> None:
    sec = world.sec
    for i in range(3):
        add_tenant(sec.db, f"t{i}")
    rows = entries(sec)
    assert len(rows) >= 5 and sec.audit.verify().ok
    victim = rows[2]

    with sec.db.engine.begin() as c:  # an edit straight in the database
        c.execute(
            text("UPDATE audit_log SET actor_name = 'nobody' WHERE id = :i"), {"i": victim.id}
        )
    bad = sec.audit.verify()
    assert not bad.ok and bad.first_bad == victim.id and "changed" in bad.reason
    with sec.db.engine.begin() as c:
        c.execute(
            text("UPDATE audit_log SET actor_name = :n WHERE id = :i"),
            {"n": victim.actor_name, "i": victim.id},
        )
    assert sec.audit.verify().ok

    with sec.db.engine.begin() as c:  # a deletion in the middle
        c.execute(text("DELETE FROM audit_log WHERE id = :i"), {"i": victim.id})
    bad = sec.audit.verify()
    assert not bad.ok and bad.first_bad == rows[3].id and "link" in bad.reason


def test_truncated_tail_is_reported_against_the_anchor(world: World) -> None:
    sec = world.sec
    last = entries(sec)[-1]
    assert sec.audit.read_head() == (last.id, last.hash)
    with sec.db.engine.begin() as c:
        c.execute(text("DELETE FROM audit_log WHERE id = :i"), {"i": last.id})
    bad = sec.audit.verify()
    assert not bad.ok and "removed from the end" in bad.reason and str(last.id) in bad.reason


def test_cli_verify_and_tail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("YUGONG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("YUGONG_SECRET_KEY", SECRET)
    assert cli_main(["tenant", "create", "Audit Co"]) == 0
    assert cli_main(["audit", "verify"]) == 0
    assert "1 entries" in capsys.readouterr().out
    assert cli_main(["audit", "tail", "-n", "5"]) == 0
    assert "tenants.create" in capsys.readouterr().out

    import sqlite3

    with sqlite3.connect(tmp_path / "registry.db") as c:
        c.execute("UPDATE audit_log SET detail = '{}' WHERE id = 1")
    assert cli_main(["audit", "verify"]) == 1
    assert "BROKEN at entry 1" in capsys.readouterr().err


# The API ------------------------------------------------------------------------------------


@pytest.fixture
def client(world: World) -> Iterator[TestClient]:
    app = FastAPI()
    problems.install(app)
    app.include_router(auth.router, prefix="/api/v1")
    app.include_router(security.router, prefix="/api/v1")
    app.state.security = world.sec
    app.state.settings = world.sec.settings
    app.state.db = world.sec.db
    yield TestClient(app)


def login(client: TestClient, username: str) -> dict[str, str]:
    r = client.post("/api/v1/auth/login", json={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_api_audit_is_scoped_filtered_and_paged(world: World, client: TestClient) -> None:
    with acting(world.b[Role.TENANT_ADMIN], "203.0.113.5", "http"), world.sec.db.session() as s:
        s.add(Asset(tenant_id=world.tenant_b, kind="site", name="B site", attributes={}))

    a_admin = login(client, "a-tenant_admin")
    body = client.get("/api/v1/audit", headers=a_admin, params={"limit": 1000}).json()
    assert body["total"] > 0 and {e["tenant_id"] for e in body["items"]} == {world.tenant_a}
    assert (
        client.get(
            "/api/v1/audit", headers=a_admin, params={"tenant_id": world.tenant_b}
        ).status_code
        == 403
    )
    viewer = login(client, "a-viewer")
    assert client.get("/api/v1/audit", headers=viewer).status_code == 403

    root = login(client, "root")
    everything = client.get("/api/v1/audit", headers=root, params={"limit": 1000}).json()
    assert {world.tenant_a, world.tenant_b} <= {e["tenant_id"] for e in everything["items"]}
    mine = client.get(
        "/api/v1/audit", headers=root, params={"action": "assets", "actor": "b-tenant_admin"}
    ).json()
    assert [e["action"] for e in mine["items"]] == ["assets.create"]
    assert mine["items"][0]["source_ip"] == "203.0.113.5"
    page = client.get("/api/v1/audit", headers=root, params={"limit": 2, "offset": 1}).json()
    assert len(page["items"]) == 2 and page["total"] == everything["total"]
    assert page["items"][0]["id"] == everything["items"][1]["id"]  # newest first
    later = (utcnow() + timedelta(hours=1)).isoformat()
    assert client.get("/api/v1/audit", headers=root, params={"since": later}).json()["total"] == 0


def test_system_changes_have_the_system_actor(sec: Security) -> None:
    with acting(SYSTEM, None, "cli"):
        add_tenant(sec.db, "sys")
    e = entries(sec, "tenants.create")[-1]
    assert (e.actor_kind, e.actor_name, e.source_ip) == ("system", "system", None)


# Secrets at rest: key rotation (audited like any change) ------------------------------------


def test_rotate_key_reseals_every_secret_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from yugong.core.settings import Settings
    from yugong.infra.db import Database
    from yugong.infra.migrate import upgrade
    from yugong.security.secrets import SecretBox, SecretError, derive_key
    from yugong.security.totp import seal_context

    old_key, new_key = "o" * 40, "n" * 40
    settings = Settings(data_dir=tmp_path, secret_key=old_key)
    upgrade(settings.registry_url)
    db = Database(settings.registry_url)
    sec = Security(db, settings)
    ids = [
        sec.users.create(
            SYSTEM,
            username=f"rotor{i}",
            password=PASSWORD,
            role=Role.PLATFORM_ADMIN,
            tenant_id=None,
        ).id
        for i in range(2)
    ]
    with db.session() as s:
        for i in ids:
            u = s.get(User, i)
            assert u is not None
            u.totp_secret = sec.box.seal(f"SEED{i}", seal_context(i))
    monkeypatch.setenv("YUGONG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("YUGONG_SECRET_KEY", old_key)
    monkeypatch.setenv("YUGONG_DATA_KEY", new_key)

    # A value that opens with neither key stops the rotation; nothing changes.
    with db.session() as s:
        stray = s.get(User, ids[1])
        assert stray is not None
        good = stray.totp_secret
        stray.totp_secret = SecretBox(derive_key("x" * 40)).seal("SEED1", seal_context(ids[1]))
    with db.session() as s:
        before = {i: s.get(User, i).totp_secret for i in ids}  # type: ignore[union-attr]
    monkeypatch.setenv("YUGONG_OLD_DATA_KEY", old_key)
    assert cli_main(["secrets", "rotate-key"]) == 1
    assert f"row {ids[1]} opens with neither key" in capsys.readouterr().err
    with db.session() as s:
        assert {i: s.get(User, i).totp_secret for i in ids} == before  # type: ignore[union-attr]
        s.get(User, ids[1]).totp_secret = good  # type: ignore[union-attr]

    assert cli_main(["secrets", "rotate-key"]) == 0
    assert "2 secrets re-sealed" in capsys.readouterr().out
    new_box = SecretBox(derive_key(new_key))
    with db.session() as s:
        for i in ids:
            sealed = s.get(User, i).totp_secret  # type: ignore[union-attr]
            assert new_box.open(sealed, seal_context(i)) == f"SEED{i}"
            with pytest.raises(SecretError):
                sec.box.open(sealed, seal_context(i))
    assert cli_main(["secrets", "rotate-key"]) == 0  # again: nothing left to do
    assert "0 secrets re-sealed under the new key, 2 already were" in capsys.readouterr().out
    last = entries(sec, "users.update")[-1]
    assert last.detail["changes"] == {"totp_secret": MASK}
    db.dispose()
