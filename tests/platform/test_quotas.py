"""Tenant quotas: token buckets, profiles, count and retention limits, ingest admission,
stored bytes (SQLite and PostgreSQL registries; DuckDB and PostgreSQL time-series stores)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from sqlalchemy import select

from tests.conftest import migrated_db
from tests.security.conftest import add_tenant, add_user, cheap_hasher, make_db
from yugong.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from yugong.core.samples import SAMPLE_SCHEMA
from yugong.core.settings import Settings
from yugong.infra.db import Database
from yugong.infra.timeseries import open_store
from yugong.platform.quotas import IngestRateLimited, QuotaService, StorageFull
from yugong.platform.quotas_profiles import QuotaExceeded
from yugong.platform.ratelimit import Buckets, Charge, RateAnomalies, RateMeter, Streaks
from yugong.platform.registry.models import Tenant
from yugong.platform.registry.service import Registry
from yugong.security.events import SecurityEvents
from yugong.security.models import SecurityEvent
from yugong.security.principal import SYSTEM, Principal, Role
from yugong.security.service import Security

TSL = {
    "properties": [
        {"identifier": "t", "name": "t", "accessMode": "r", "dataType": {"type": "float"}}
    ],
    "events": [],
    "services": [],
}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# Buckets ---------------------------------------------------------------------------------------


def test_bucket_allows_a_burst_then_refuses_with_the_wait_and_refills() -> None:
    clock = Clock()
    b = Buckets(1, clock=clock)
    c = Charge(0, 7, rate=10.0, cost=1)
    assert all(b.take([c]) is None for _ in range(10))  # burst: one second's worth
    refusal = b.take([c])
    assert refusal is not None and refusal.charge == c
    assert refusal.wait_s == pytest.approx(0.1)
    assert refusal.retry_after == 1
    clock.now += 0.25  # 2.5 tokens back
    assert b.take([c]) is None and b.take([c]) is None
    assert b.take([c]) is not None


def test_bucket_charges_all_or_nothing_and_keys_are_independent() -> None:
    clock = Clock()
    b = Buckets(2, clock=clock)
    tenant = Charge(0, 1, rate=100.0, cost=1)
    device = Charge(1, 5, rate=2.0, cost=1)
    assert b.take([tenant, device]) is None
    assert b.take([tenant, device]) is None
    refused = b.take([tenant, device])
    assert refused is not None and refused.charge.table == 1  # the device is over
    # The refused request took nothing from the tenant: 98 more fit.
    assert all(b.take([tenant]) is None for _ in range(98))
    assert b.take([tenant]) is not None
    # Another device (and another tenant) is untouched.
    assert b.take([Charge(1, 6, 2.0, 1)]) is None
    assert b.take([Charge(0, 2, 100.0, 1)]) is None


def test_bucket_lets_a_large_cost_through_when_full_and_then_waits_it_off() -> None:
    clock = Clock()
    b = Buckets(1, clock=clock)
    big = Charge(0, 1, rate=100.0, cost=1000)
    assert b.take([big]) is None  # full bucket: admitted, 900 in debt
    small = Charge(0, 1, rate=100.0, cost=1)
    refusal = b.take([small])
    assert refusal is not None and refusal.wait_s == pytest.approx(9.01)
    clock.now += 9.02
    assert b.take([small]) is None


def test_bucket_force_charges_without_refusing() -> None:
    clock = Clock()
    b = Buckets(1, clock=clock)
    c = Charge(0, 1, rate=1.0, cost=1)
    assert b.take([c]) is None
    assert b.take([c], force=True) is None
    assert b.take([c]) is not None
    with pytest.raises(ValueError, match="burst_s"):
        Buckets(1, burst_s=0)


def test_burst_seconds_scale_the_bucket() -> None:
    b = Buckets(1, burst_s=3.0, clock=Clock())
    c = Charge(0, 1, rate=10.0, cost=1)
    assert sum(b.take([c]) is None for _ in range(40)) == 30


def test_rate_meter_averages_over_the_window() -> None:
    clock = Clock()
    m = RateMeter(10, clock=clock)
    for _ in range(5):
        m.add(1, 20)
        clock.now += 1
    assert m.rate(1) == pytest.approx(10.0)  # 100 over a 10 s window
    assert m.rate(2) == 0.0
    clock.now += 10
    assert m.rate(1) == 0.0


def test_streaks_need_consecutive_seconds() -> None:
    clock = Clock()
    s = Streaks(3, clock=clock)
    assert not s.strike(1)
    assert not s.strike(1)  # same second
    clock.now += 1
    assert not s.strike(1)
    clock.now += 2  # a quiet second breaks the streak
    assert not s.strike(1)
    clock.now += 1
    assert not s.strike(1)
    clock.now += 1
    assert s.strike(1)
    assert not Streaks(0).strike(1)


# Service ---------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with migrated_db(request, tmp_path) as database:
        yield database


@pytest.fixture
def quotas(db: Database) -> QuotaService:
    return QuotaService(db, disconnect_after_s=2)


def _tenant_admin(tenant: int) -> Principal:
    return Principal("user", 99, tenant, Role.TENANT_ADMIN, "ta")


def test_profile_crud_and_the_default_profile(db: Database, quotas: QuotaService) -> None:
    a = add_tenant(db, "a")
    default = next(p for p in quotas.profiles.list(SYSTEM) if p.is_default)
    assert default.name == "default" and default.tenants == 1
    assert quotas.limits(a).profile == "default"

    small = quotas.profiles.create(SYSTEM, name="small", max_devices=2, messages_per_s=50)
    assert small.max_devices == 2 and small.messages_per_s == 50.0 and small.tenants == 0
    quotas.profiles.assign(SYSTEM, a, small.id)
    assert quotas.limits(a).max_devices == 2  # the cache was invalidated
    quotas.profiles.update(SYSTEM, small.id, max_devices=5, messages_per_s=None)
    assert quotas.limits(a).max_devices == 5 and quotas.limits(a).messages_per_s is None
    assert quotas.profiles.get(SYSTEM, small.id).tenants == 1

    with pytest.raises(Conflict) as conflict:
        quotas.profiles.create(SYSTEM, name="small")
    assert conflict.value.status == 409
    with pytest.raises(InvalidInput, match="max_devices"):
        quotas.profiles.update(SYSTEM, small.id, max_devices=-1)
    with pytest.raises(InvalidInput, match="points_per_s"):
        quotas.profiles.update(SYSTEM, small.id, points_per_s=0)
    with pytest.raises(Forbidden):
        quotas.profiles.create(_tenant_admin(a), name="mine")
    with pytest.raises(Forbidden):
        quotas.profiles.list(_tenant_admin(a))

    # The default cannot go; deleting another moves its tenants to the default.
    with pytest.raises(Conflict, match="default"):
        quotas.profiles.delete(SYSTEM, default.id)
    quotas.profiles.delete(SYSTEM, small.id)
    with pytest.raises(NotFound):
        quotas.profiles.get(SYSTEM, small.id)
    with db.session() as s:
        assert s.scalar(select(Tenant.profile_id).where(Tenant.id == a)) is None
    assert quotas.limits(a).profile == "default"

    # Another profile can become the default.
    big = quotas.profiles.create(SYSTEM, name="big", is_default=True, max_users=9)
    assert [p.name for p in quotas.profiles.list(SYSTEM) if p.is_default] == ["big"]
    assert quotas.limits(a).max_users == 9 and big.tenants == 1


def test_count_limits_refuse_with_409_naming_the_limit(db: Database, quotas: QuotaService) -> None:
    a, b = add_tenant(db, "a"), add_tenant(db, "b")
    tight = quotas.profiles.create(SYSTEM, name="tight", max_devices=1, max_users=1, max_api_keys=1)
    quotas.profiles.assign(SYSTEM, a, tight.id)
    reg = Registry(db, on_event=quotas.on_registry_event)
    product = {t: reg.products.create(SYSTEM, tenant_id=t, key="s", name="S").id for t in (a, b)}
    reg.devices.create(SYSTEM, tenant_id=a, name="d1", product_id=product[a])
    with pytest.raises(QuotaExceeded) as exc:
        reg.devices.create(SYSTEM, tenant_id=a, name="d2", product_id=product[a])
    assert exc.value.status == 409
    assert "max_devices" in exc.value.detail and "has 1 devices" in exc.value.detail
    for i in range(3):  # tenant b is unlimited
        reg.devices.create(SYSTEM, tenant_id=b, name=f"d{i}", product_id=product[b])

    sec = Security(
        db, Settings(data_dir=Path("/nonexistent"), secret_key="s" * 40), hasher=cheap_hasher()
    )
    sec.users.create(
        SYSTEM, username="user-1", password="correct horse battery", role=Role.VIEWER, tenant_id=a
    )
    with pytest.raises(QuotaExceeded, match="max_users"):
        sec.users.create(
            SYSTEM,
            username="user-2",
            password="correct horse battery",
            role=Role.VIEWER,
            tenant_id=a,
        )
    root = add_user(sec, "root", Role.PLATFORM_ADMIN, None)
    key = sec.apikeys.create(root, name="k1", role=Role.VIEWER, tenant_id=a)
    with pytest.raises(QuotaExceeded, match="max_api_keys"):
        sec.apikeys.create(root, name="k2", role=Role.VIEWER, tenant_id=a)
    sec.apikeys.revoke(root, key.info.id)  # a revoked key no longer counts
    sec.apikeys.create(root, name="k3", role=Role.VIEWER, tenant_id=a)

    assert quotas.refused(a) == {"max_devices": 1, "max_users": 1, "max_api_keys": 1}
    assert quotas.refused(b) == {}
    usage = quotas.usage(_tenant_admin(a), a)
    assert usage["usage"]["devices"] == 1 and usage["usage"]["users"] == 1
    assert usage["usage"]["api_keys"] == 1 and usage["limits"]["max_devices"] == 1
    with pytest.raises(Forbidden):
        quotas.usage(_tenant_admin(a), b)
    with pytest.raises(Forbidden):
        quotas.usage(Principal("user", 98, a, Role.VIEWER, "v"), a)


def test_retention_is_capped_by_the_profile(db: Database, quotas: QuotaService) -> None:
    reg = Registry(db, on_event=quotas.on_registry_event)
    t = reg.tenants.create(SYSTEM, name="T", retention_days=400)
    short = quotas.profiles.create(SYSTEM, name="short", max_retention_days=30)
    with pytest.raises(InvalidInput, match="400 days exceeds the maximum of 30"):
        reg.tenants.update(SYSTEM, t.id, profile_id=short.id)
    assert reg.tenants.get(SYSTEM, t.id).profile_id is None  # nothing changed
    rec = reg.tenants.update(SYSTEM, t.id, profile_id=short.id, retention_days=20)
    assert rec.profile_id == short.id and rec.retention_days == 20
    with pytest.raises(InvalidInput, match="retention_days"):
        reg.tenants.update(SYSTEM, t.id, retention_days=31)
    # Keeping everything means "as long as the profile allows".
    assert reg.tenants.update(SYSTEM, t.id, retention_days=None).retention_days is None
    assert quotas.retention_days(t.id, None) == 30
    reg.tenants.update(SYSTEM, t.id, retention_days=20)
    with pytest.raises(NotFound, match="profile 999"):
        reg.tenants.update(SYSTEM, t.id, profile_id=999)
    # The retention job keeps the smaller of the two.
    assert quotas.retention_days(t.id, 20) == 20
    quotas.profiles.update(SYSTEM, short.id, max_retention_days=10)
    assert quotas.retention_days(t.id, 20) == 10
    assert quotas.retention_days(t.id, None) == 10


def test_ingest_admission_per_tenant_and_device_isolated_and_reported(
    db: Database, quotas: QuotaService
) -> None:
    a, b = add_tenant(db, "a"), add_tenant(db, "b")
    prof = quotas.profiles.create(
        SYSTEM, name="p", messages_per_s=5, device_messages_per_s=3, points_per_s=100
    )
    quotas.profiles.assign(SYSTEM, a, prof.id)
    sec = Security(db, Settings(data_dir=Path("/nonexistent"), secret_key="s" * 40))
    quotas.events = sec.events

    for _ in range(3):
        quotas.admit_ingest(a, 1, 1, 2)
    with pytest.raises(IngestRateLimited) as exc:
        quotas.admit_ingest(a, 1, 1, 2)  # device 1: 3/s
    assert exc.value.status == 429 and exc.value.limit == "device_messages_per_s"
    assert exc.value.retry_after >= 1 and "device 1" in exc.value.detail
    quotas.admit_ingest(a, 2, 1, 2)
    quotas.admit_ingest(a, 2, 1, 2)
    with pytest.raises(IngestRateLimited, match="messages_per_s = 5/s"):
        quotas.admit_ingest(a, 3, 1, 2)  # the tenant's 5/s
    with pytest.raises(IngestRateLimited, match="points_per_s"):
        quotas.admit_ingest(a, None, 0, 500)
    for _ in range(200):  # tenant b: unlimited, whatever a does
        quotas.admit_ingest(b, 9, 1, 10)

    assert quotas.refused(a) == {
        "device_messages_per_s": 1,
        "messages_per_s": 1,
        "points_per_s": 1,
    }
    assert quotas.refused(b) == {}
    assert quotas.flush_events() == 3
    assert quotas.flush_events() == 0
    with db.session() as s:
        rows = s.scalars(select(SecurityEvent).where(SecurityEvent.kind == "rate_limited")).all()
        assert {(r.tenant_id, r.subject) for r in rows} == {
            (a, "device_messages_per_s"),
            (a, "messages_per_s"),
            (a, "points_per_s"),
        }


def test_persistent_offender_is_marked_for_disconnect(db: Database) -> None:
    a = add_tenant(db, "a")
    clock = Clock()
    quotas = QuotaService(db, disconnect_after_s=2)
    quotas.buckets = Buckets(5, clock=clock)
    quotas.streaks = Streaks(2, clock=clock)
    prof = quotas.profiles.create(SYSTEM, name="p", device_messages_per_s=1)
    quotas.profiles.assign(SYSTEM, a, prof.id)
    quotas.admit_ingest(a, 1)
    with pytest.raises(IngestRateLimited) as first:
        quotas.admit_ingest(a, 1)
    assert not first.value.disconnect
    clock.now += 1.0
    quotas.admit_ingest(a, 1)  # refilled
    with pytest.raises(IngestRateLimited) as second:
        quotas.admit_ingest(a, 1)  # refused in a second consecutive second
    assert second.value.disconnect


def _samples(tenant: int, series: int, n: int) -> pa.Table:
    return pa.Table.from_arrays(
        [
            pa.array(np.full(n, tenant, dtype=np.int32)),
            pa.array(np.full(n, series, dtype=np.int32)),
            pa.array(np.arange(n, dtype=np.int64) * 1000 + 1_700_000_000_000_000),
            pa.array(np.random.default_rng(1).random(n)),
            pa.nulls(n, pa.string()),
            pa.array(np.zeros(n, dtype=np.uint8)),
        ],
        schema=SAMPLE_SCHEMA,
    )


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_stored_bytes_and_the_storage_limit(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    db = make_db(f"sqlite:///{tmp_path / 'registry.db'}")
    url = (
        f"duckdb:///{tmp_path / 'ts.duckdb'}"
        if backend == "duckdb"
        else request.getfixturevalue("pg_url")
    )
    store = open_store(url, compact_interval_s=0)
    try:
        a, b = add_tenant(db, "a"), add_tenant(db, "b")
        store.write(_samples(a, 1, 20_000))
        store.write(_samples(b, 2, 2_000))
        size_a, size_b = store.stored_bytes(a), store.stored_bytes(b)
        assert size_a > size_b > 0
        assert store.stored_bytes(999) == 0

        quotas = QuotaService(db, store=store)
        prof = quotas.profiles.create(SYSTEM, name="p", max_stored_bytes=size_b * 2)
        quotas.profiles.assign(SYSTEM, a, prof.id)
        quotas.profiles.assign(SYSTEM, b, prof.id)
        quotas.refresh_storage()
        with pytest.raises(StorageFull) as exc:
            quotas.admit_ingest(a, 1, 1, 1)
        assert exc.value.status == 507 and "max_stored_bytes" in exc.value.detail
        quotas.admit_ingest(b, 2, 1, 1)  # under the limit
        assert quotas.usage(SYSTEM, a)["storage_full"] is True
        assert quotas.refused(a) == {"max_stored_bytes": 1}

        store.delete_series(a, [1])  # usage drops: ingest resumes
        quotas.refresh_storage()
        quotas.admit_ingest(a, 1, 1, 1)
    finally:
        store.close()
        db.dispose()


async def test_batched_mqtt_and_sparkplug_paths_drop_and_count_over_limit_messages(
    db: Database, tmp_path: Path
) -> None:
    """ingest_messages (external broker) and ingest_entries (Sparkplug host) refuse the
    messages over a limit alone: counted as rate_limited, not stored; others pass."""
    import orjson

    from tests.platform._directory import MemoryDirectory, press
    from yugong.infra.bus import InProcessBus
    from yugong.platform.ingest.payloads import TelemetryEntry
    from yugong.platform.ingest.service import IngestService
    from yugong.platform.ingest.writer import BatchedWriter

    limited, free = add_tenant(db, "a"), add_tenant(db, "b")
    quotas = QuotaService(db)
    prof = quotas.profiles.create(SYSTEM, name="p", device_messages_per_s=2)
    quotas.profiles.assign(SYSTEM, limited, prof.id)
    store = open_store(f"duckdb:///{tmp_path / 'ts.duckdb'}", compact_interval_s=0)
    directory = MemoryDirectory()
    a = directory.add(press(1, tenant=limited, name="a"))
    b = directory.add(press(2, tenant=free, name="b"))
    writer = BatchedWriter(store, batch_rows=1000, flush_ms=20)
    svc = IngestService(directory, writer, InProcessBus(), guard=quotas)  # type: ignore[arg-type]
    try:
        msg = orjson.dumps({"temperature": 20.0})
        out = await svc.ingest_messages([(a, msg, "telemetry")] * 4 + [(b, msg, "telemetry")] * 4)
        assert out.accepted == 6
        reasons = [(i, getattr(e, "reason", None)) for i, e in out.rejected]
        assert reasons == [(2, "rate_limited"), (3, "rate_limited")]
        entries = [TelemetryEntry(None, {"temperature": 1.0})]
        out = await svc.ingest_entries([(a, entries), (b, entries)])
        assert out.accepted == 1 and out.rejected[0][0] == 0
        stats = svc.stats()
        assert stats[limited].rejected == {"rate_limited": 3}
        assert free not in stats or not stats[free].rejected
        await writer.flush()
        assert store.range([101], 0, 2**62).table.num_rows <= 2
        assert quotas.refused(limited) == {"device_messages_per_s": 3}
    finally:
        await writer.close()
        store.close()


def test_a_device_flooding_far_over_its_usual_rate_is_an_anomaly() -> None:
    clock = Clock()
    a = RateAnomalies(factor=10, min_per_min=100, warmup_min=3, clock=clock)
    found = []
    for minute in range(8):  # a steady 50 messages a minute
        clock.now = minute * 60.0
        found += [x for x in (a.add(7, 1) for _ in range(50)) if x]
    assert found == []
    clock.now = 8 * 60.0
    for _ in range(2000):  # forty times its usual rate
        a.add(7)
    clock.now = 9 * 60.0
    flood = a.add(7)  # the minute closes
    assert flood is not None and flood.key == 7 and flood.per_min == 2000
    assert 45 < flood.baseline <= 50
    for _ in range(2000):  # still flooding: still anomalous (the baseline did not follow)
        a.add(7)
    clock.now = 10 * 60.0
    assert a.add(7) is not None
    b = RateAnomalies(factor=10, min_per_min=100, warmup_min=3, clock=clock)
    for _ in range(5000):  # a new device has no usual rate yet: nothing to compare
        b.add(8)
    clock.now = 11 * 60.0
    assert b.add(8) is None


def test_rate_anomalies_become_security_events(db: Database) -> None:
    tenant = add_tenant(db, "anomalous")
    quotas = QuotaService(db, events=SecurityEvents(db), anomaly_min_per_min=100)
    clock = Clock()
    quotas.anomalies = RateAnomalies(factor=10, min_per_min=100, warmup_min=2, clock=clock)
    for minute in range(4):
        clock.now = minute * 60.0
        for _ in range(20):
            quotas.admit_ingest(tenant, 42, 1, 1)
    clock.now = 4 * 60.0
    for _ in range(1000):
        quotas.admit_ingest(tenant, 42, 1, 1)
    clock.now = 5 * 60.0
    quotas.admit_ingest(tenant, 42, 1, 1)
    assert quotas.flush_events() == 1
    with db.session() as s:
        row = s.scalars(select(SecurityEvent).where(SecurityEvent.kind == "rate_anomaly")).one()
        assert (row.tenant_id, row.device_id) == (tenant, 42)
        assert row.detail["messages_per_min"] == 1000 and row.detail["usual_per_min"] <= 20
