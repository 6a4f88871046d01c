"""External broker mode: the platform subscribes to Mosquitto; a real client publishes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from tests.conftest import free_port
from tests.platform._directory import MemoryDirectory, press
from yugong.core.settings import Settings
from yugong.infra.bus import InProcessBus
from yugong.infra.timeseries import TimeSeriesStore, open_store
from yugong.platform.ingest.mqtt import BrokerAddress, ExternalBrokerIngest
from yugong.platform.ingest.service import IngestService
from yugong.platform.ingest.writer import BatchedWriter

pytestmark = pytest.mark.mosquitto
END = 2**62
T0 = 1_700_000_000_000


class Rig:
    def __init__(self, store: TimeSeriesStore, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.prefix = f"yugong-test/{uuid.uuid4().hex[:10]}/devices"
        self.store = store
        self.directory = MemoryDirectory()
        self.directory.add(press(41, tenant=5, name="m-41"))
        self.attrs: list[dict] = []
        self.writer = BatchedWriter(store, batch_rows=10_000, flush_ms=20)
        self.ingest = IngestService(
            self.directory,
            self.writer,
            InProcessBus(),
            attribute_sink=lambda d, a: self.attrs.append(a),
        )

    def subscriber(self, shared: bool = False) -> ExternalBrokerIngest:
        settings = Settings(
            mqtt_url=f"mqtt://{self.host}:{self.port}",
            mqtt_topic_prefix=self.prefix,
            mqtt_shared_subscription=shared,
            mqtt_max_payload_bytes=2048,
        )
        return ExternalBrokerIngest(settings, self.directory, self.ingest)

    def rows(self) -> list[dict]:
        return self.store.range(list(range(4101, 4108)), 0, END).table.to_pylist()


@pytest.fixture
async def rig(mosquitto: tuple[str, int], tmp_path: Path) -> AsyncIterator[Rig]:
    store = open_store(f"duckdb:///{tmp_path / 'ts.duckdb'}")
    r = Rig(store, *mosquitto)
    yield r
    await r.writer.close()
    store.close()


async def settle(subs: list[ExternalBrokerIngest], messages: int, rejected: int = 0) -> None:
    async with asyncio.timeout(10):
        while (
            sum(s.stats.messages for s in subs) < messages
            or sum(sum(s.stats.rejected.values()) for s in subs) < rejected
        ):
            await asyncio.sleep(0.01)


async def test_telemetry_and_attributes_through_mosquitto(rig: Rig) -> None:
    sub = rig.subscriber()
    await sub.start()
    try:
        await asyncio.wait_for(sub.ready.wait(), 10)
        async with aiomqtt.Client(rig.host, rig.port) as c:
            await c.publish(
                f"{rig.prefix}/41/telemetry",
                b'{"ts": %d, "values": {"temperature": 1.5}}' % T0,
                qos=1,
            )
            await c.publish(
                f"{rig.prefix}/41/telemetry",
                b'[{"ts": %d, "values": {"count": 3, "running": true}}]' % T0,
                qos=1,
            )
            await c.publish(f"{rig.prefix}/41/attributes", b'{"fw": "3"}', qos=1)
            await c.publish(f"{rig.prefix}/99/telemetry", b'{"temperature": 1}', qos=1)
            await c.publish(f"{rig.prefix}/41/telemetry", b'{"temperature": "x"}', qos=1)
            await c.publish(f"{rig.prefix}/41/telemetry", b"[" * 3000, qos=1)
        await settle([sub], 3, rejected=3)
    finally:
        await sub.stop()
    await rig.writer.flush()
    assert [(r["series"], r["value"]) for r in rig.rows()] == [
        (4101, 1.5),
        (4102, 3.0),
        (4103, 1.0),
    ]
    assert rig.attrs == [{"fw": "3"}]
    assert sub.stats.rejected == {"unknown_device": 1, "wrong_type": 1, "too_large": 1}
    assert rig.ingest.stats()[5].rejected == {"wrong_type": 1, "too_large": 1}


async def test_shared_subscription_splits_the_load(rig: Rig) -> None:
    subs = [rig.subscriber(shared=True), rig.subscriber(shared=True)]
    assert subs[0].topics[0] == f"$share/yugong/{rig.prefix}/+/telemetry"
    for s in subs:
        await s.start()
    try:
        for s in subs:
            await asyncio.wait_for(s.ready.wait(), 10)
        async with aiomqtt.Client(rig.host, rig.port) as c:
            for i in range(40):
                await c.publish(
                    f"{rig.prefix}/41/telemetry",
                    b'{"ts": %d, "values": {"count": %d}}' % (T0 + i, i),
                    qos=1,
                )
        await settle(subs, 40)
    finally:
        for s in subs:
            await s.stop()
    await rig.writer.flush()
    assert len(rig.rows()) == 40  # each message ingested exactly once
    assert all(s.stats.messages > 0 for s in subs)


async def test_reconnects_after_an_unreachable_broker(rig: Rig) -> None:
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{free_port()}")
    sub = ExternalBrokerIngest(settings, rig.directory, rig.ingest)
    await sub.start()
    async with asyncio.timeout(5):
        while sub.stats.disconnects < 2:  # retried with backoff, still running
            await asyncio.sleep(0.05)
    assert not sub.ready.is_set()
    await sub.stop()


def test_broker_url_parsing() -> None:
    a = BrokerAddress.parse("mqtts://user:p%40ss@broker.example:8884")
    assert (a.host, a.port, a.username, a.password, a.tls) == (
        "broker.example",
        8884,
        "user",
        "p@ss",
        True,
    )
    assert BrokerAddress.parse("mqtt://h").port == 1883
    with pytest.raises(ValueError, match="not an MQTT broker URL"):
        BrokerAddress.parse("http://h")
