"""The assembled platform: per-tenant retention and device online state, on real storage."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import SENSOR_TSL
from yugong.core.settings import Settings
from yugong.core.timeutil import US_PER_S, now_ms
from yugong.platform.runtime import Platform
from yugong.security.principal import SYSTEM

DAY_MS = 86_400_000


@pytest.fixture
async def platform(tmp_path: Path) -> Platform:
    p = Platform(
        Settings(
            data_dir=tmp_path,
            mqtt_embedded=False,
            secret_key="k" * 40,
            admin_password="Platform-Pass-2026!",
            ingest_flush_ms=10,
        )
    )
    await p.start()
    yield p  # type: ignore[misc]
    await p.stop()


def _device(p: Platform, tenant_name: str, retention_days: int | None) -> tuple[int, int]:
    reg = p.registry
    t = reg.tenants.create(SYSTEM, name=tenant_name, retention_days=retention_days)
    product, _ = reg.products.import_tsl(SYSTEM, SENSOR_TSL, tenant_id=t.id)
    d = reg.devices.create(SYSTEM, name="probe", product_id=product.id, tenant_id=t.id)
    return t.id, d.device.id


async def test_retention_drops_only_the_tenants_old_data(platform: Platform) -> None:
    short_tenant, short_dev = _device(platform, "Short Memory", 7)
    keep_tenant, keep_dev = _device(platform, "Keeps Everything", None)
    now = now_ms()
    for dev in (short_dev, keep_dev):
        binding = platform.directory.by_id(dev)
        assert binding is not None
        await platform.ingest.ingest_telemetry(
            binding,
            [
                {"ts": now - 30 * DAY_MS, "values": {"temperature": 1.0}},
                {"ts": now - 1 * DAY_MS, "values": {"temperature": 2.0}},
            ],
        )
    await platform.writer.flush()
    await platform._apply_retention()

    def values(dev: int) -> list[float]:
        binding = platform.directory.by_id(dev)
        assert binding is not None
        series = binding.properties["temperature"].series
        page = platform.store.range([series], (now - 60 * DAY_MS) * 1000, (now + 1) * 1000)
        return page.table.column("value").to_pylist()

    assert values(short_dev) == [2.0]
    assert values(keep_dev) == [1.0, 2.0]
    assert short_tenant != keep_tenant


async def test_devices_come_online_when_heard_and_go_offline(platform: Platform) -> None:
    _tenant, dev = _device(platform, "Live Plant", None)
    assert platform.registry.devices.get(SYSTEM, dev).online is False
    binding = platform.directory.by_id(dev)
    assert binding is not None
    await platform.ingest.ingest_telemetry(binding, {"temperature": 20.0})
    await platform._housekeeping()
    record = platform.registry.devices.get(SYSTEM, dev)
    assert record.online is True and record.last_seen_at is not None
    assert abs(record.last_seen_at.timestamp() * US_PER_S / 1000 - now_ms()) < 60_000
    platform.settings = platform.settings.model_copy(update={"device_offline_after_s": 0.0})
    await platform._housekeeping()
    assert platform.registry.devices.get(SYSTEM, dev).online is False


async def test_commands_a_crashed_run_left_unfinished_fail_at_start(
    platform: Platform, tmp_path: Path
) -> None:
    from sqlalchemy import select

    from yugong.platform.command_models import Command

    _, device = _device(platform, "Commands", None)
    with platform.db.session() as s:
        tenant = platform.registry.devices.get(SYSTEM, device).tenant_id
        for status in ("queued", "sent", "acknowledged"):
            s.add(
                Command(tenant_id=tenant, device_id=device, kind="write", name="t", status=status)
            )
    await platform.stop()
    again = Platform(platform.settings)
    await again.start()
    try:
        with again.db.session() as s:
            rows = s.scalars(select(Command).order_by(Command.id)).all()
            assert [r.status for r in rows] == ["failed", "failed", "acknowledged"]
            assert "restarted" in rows[0].result["error"] and rows[1].done_at is not None
    finally:
        await again.stop()
