"""External broker mode: the platform subscribes to Mosquitto; a real client publishes."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
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
from yugong.platform.ingest.mqtt import BrokerAddress, ExternalBrokerIngest, connect_packet
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

    def subscriber(
        self, shared: bool = False, identifier: str | None = None, **options: int
    ) -> ExternalBrokerIngest:
        settings = Settings(
            mqtt_url=f"mqtt://{self.host}:{self.port}",
            mqtt_topic_prefix=self.prefix,
            mqtt_shared_subscription=shared,
            mqtt_max_payload_bytes=2048,
        )
        return ExternalBrokerIngest(
            settings, self.directory, self.ingest, identifier=identifier, **options
        )

    def rows(self) -> list[dict]:
        return self.store.range(list(range(4101, 4108)), 0, END).table.to_pylist()


@pytest.fixture
async def rig(mosquitto: tuple[str, int], tmp_path: Path) -> AsyncIterator[Rig]:
    store = open_store(f"duckdb:///{tmp_path / 'ts.duckdb'}")
    r = Rig(store, *mosquitto)
    yield r
    await r.writer.close()
    store.close()


async def settle(
    subs: list[ExternalBrokerIngest], messages: int, rejected: int = 0, limit_s: float = 10
) -> None:
    async with asyncio.timeout(limit_s):
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


# A device-side publisher in its own process, so it runs at full speed beside the subscriber.
PUBLISHER = """
import sys, paho.mqtt.client as paho
host, port, topic = sys.argv[1], int(sys.argv[2]), sys.argv[3]
n, t0 = int(sys.argv[4]), int(sys.argv[5])
c = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
c.max_inflight_messages_set(200)
c.max_queued_messages_set(0)
c.connect(host, port)
c.loop_start()
body = b'{"ts":%d,"values":{"count":%d}}'
infos = [c.publish(topic, body % (t0 + i, (t0 + i) % 10**6), qos=1) for i in range(n)]
for info in infos:
    info.wait_for_publish(60)
c.disconnect()
c.loop_stop()
print(sum(i.is_published() for i in infos))
"""


async def publish_fast(rig: Rig, n: int, publishers: int = 1) -> int:
    """Publish ``n`` QoS 1 messages for device 41 from each of ``publishers`` processes, as
    fast as the broker takes them; returns how many the broker acknowledged."""
    topic = f"{rig.prefix}/41/telemetry"

    def run(p: int) -> int:
        args = [sys.executable, "-c", PUBLISHER, rig.host, str(rig.port), topic, str(n)]
        args.append(str(T0 + p * n))
        out = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
        return int(out.stdout.strip())

    counts = await asyncio.gather(*[asyncio.to_thread(run, p) for p in range(publishers)])
    return sum(counts)


async def test_qos1_burst_loses_nothing(rig: Rig) -> None:
    # Well past Mosquitto's default per-client queue (max_queued_messages 1000): nothing
    # may be dropped on the way to the platform.
    n = 20_000
    sub = rig.subscriber()
    await sub.start()
    try:
        await asyncio.wait_for(sub.ready.wait(), 10)
        assert await publish_fast(rig, n // 4, publishers=4) == n
        await settle([sub], n, limit_s=20)
    finally:
        await sub.stop()
    await rig.writer.flush()
    stored = rig.store.range([4102], 0, END, limit=2 * n).table
    assert stored.num_rows == n
    assert sorted(stored.column("value").to_pylist()) == [float(i) for i in range(n)]
    assert sub.stats.received == n and sub.stats.rejected == {}


async def test_reading_pauses_while_ingest_is_behind(rig: Rig) -> None:
    # A tiny queue: the reader stops reading whenever ingest is 100 messages behind and the
    # backlog waits in the broker; nothing is lost.
    n = 3000
    sub = rig.subscriber(drain_max=20, queue_max=100)
    await sub.start()
    try:
        await asyncio.wait_for(sub.ready.wait(), 10)
        assert await publish_fast(rig, n) == n
        await settle([sub], n, limit_s=20)
    finally:
        await sub.stop()
    await rig.writer.flush()
    assert len(rig.store.range([4102], 0, END, limit=2 * n).table) == n


async def test_persistent_session_gets_what_was_sent_while_away(rig: Rig) -> None:
    ident = f"yugong-test-{uuid.uuid4().hex[:10]}"
    try:
        first = rig.subscriber(identifier=ident)
        await first.start()
        await asyncio.wait_for(first.ready.wait(), 10)
        await first.stop()
        assert await publish_fast(rig, 300) == 300  # while nobody is subscribed
        again = rig.subscriber(identifier=ident)
        await again.start()
        try:
            await settle([again], 300)
        finally:
            await again.stop()
    finally:
        # End the broker-side session (clean start, no expiry).
        with socket.create_connection((rig.host, rig.port), timeout=5) as s:
            s.sendall(connect_packet(ident, clean=True, keepalive=5, username=None, password=None))
            s.recv(64)
    await rig.writer.flush()
    assert len(rig.store.range([4102], 0, END, limit=1000).table) == 300


async def test_falls_back_to_mqtt_3_1_1(rig: Rig) -> None:
    # amqtt speaks only 3.1.1 and does not answer an MQTT 5 CONNECT.
    from amqtt.broker import Broker
    from amqtt.contexts import BrokerConfig, ListenerConfig

    port = free_port()
    broker = Broker(
        BrokerConfig(
            listeners={"default": ListenerConfig(bind=f"127.0.0.1:{port}")},
            plugins={"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        )
    )
    await broker.start()
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{port}", mqtt_topic_prefix=rig.prefix)
    sub = ExternalBrokerIngest(settings, rig.directory, rig.ingest)
    await sub.start()
    try:
        await asyncio.wait_for(sub.ready.wait(), 20)
        async with aiomqtt.Client("127.0.0.1", port) as c:
            await c.publish(
                f"{rig.prefix}/41/telemetry", b'{"ts": %d, "values": {"count": 7}}' % T0, qos=1
            )
        await settle([sub], 1)
    finally:
        await sub.stop()
        await broker.shutdown()
    await rig.writer.flush()
    assert [(r["series"], r["value"]) for r in rig.rows()] == [(4102, 7.0)]


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
