"""Devices through the embedded broker (amqtt behind the MQTT 5 front): real MQTT clients
(aiomqtt, and the unmodified ThingsBoard device SDK), data checked in a real DuckDB store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiomqtt
import pytest

from tests.conftest import free_port
from tests.platform._directory import MemoryDirectory, press
from yugong.core.settings import Settings
from yugong.infra.broker import EmbeddedBroker
from yugong.infra.bus import InProcessBus
from yugong.infra.timeseries import TimeSeriesStore, open_store
from yugong.platform.ingest.service import IngestService
from yugong.platform.ingest.writer import BatchedWriter

TOKEN = "A1_TEST_TOKEN"
T0 = 1_700_000_000_000
END = 2**62
TELEMETRY = "v1/devices/me/telemetry"


class Rig:
    def __init__(self, store: TimeSeriesStore, port: int) -> None:
        self.port = port
        self.store = store
        self.directory = MemoryDirectory()
        self.dev = self.directory.add(press(1, tenant=3), token=TOKEN)
        self.attrs: list[dict] = []
        self.writer = BatchedWriter(store, batch_rows=10_000, flush_ms=20)
        self.ingest = IngestService(
            self.directory,
            self.writer,
            InProcessBus(),
            attribute_sink=lambda d, a: self.attrs.append(a),
        )
        settings = Settings(mqtt_host="127.0.0.1", mqtt_port=port, mqtt_max_payload_bytes=4096)
        self.broker = EmbeddedBroker(settings, self.directory, self.ingest)

    def client(self, username: str | None = TOKEN, **kw) -> aiomqtt.Client:  # type: ignore[no-untyped-def]
        return aiomqtt.Client("127.0.0.1", self.port, username=username, **kw)

    async def settled(self, messages: int, rejected: int = 0) -> None:
        """Wait until the broker has handed over / refused this many messages."""
        async with asyncio.timeout(10):
            while (
                self.broker.stats().messages < messages
                or sum(self.broker.stats().rejected.values()) < rejected
            ):
                await asyncio.sleep(0.01)
        await self.writer.flush()

    def rows(self, *series: int) -> list[dict]:
        return self.store.range(
            list(series) or list(range(101, 108)), 0, END, limit=100_000
        ).table.to_pylist()


def _code(granted: object) -> int:
    return int(getattr(granted, "value", granted))  # type: ignore[call-overload]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = open_store(f"duckdb:///{tmp_path / 'ts.duckdb'}")
    r = Rig(store, free_port())
    await r.broker.start()
    yield r
    await r.broker.stop()
    await r.writer.close()
    store.close()


async def test_every_payload_shape_arrives_in_the_store(rig: Rig) -> None:
    async with rig.client() as c:
        await c.publish(TELEMETRY, b'{"temperature": 20.5, "running": true}', qos=1)
        await c.publish(TELEMETRY, b'{"ts": %d, "values": {"temperature": 21}}' % T0, qos=1)
        await c.publish(
            TELEMETRY,
            b'[{"ts": %d, "values": {"count": 1}},'
            b' {"ts": %d, "values": {"count": 2}}]' % (T0, T0 + 1),
            qos=0,
        )
        await c.publish(TELEMETRY, b'[{"note": "a"}, {"config": {"k": [1]}}]', qos=1)
        await c.publish("v1/devices/me/attributes", b'{"fw": "2.1"}', qos=1)
    await rig.settled(5)
    rows = rig.rows()
    assert len(rows) == 7
    assert [r["value"] for r in rig.rows(101)] == [21.0, 20.5]  # T0 sorts before "now"
    assert [r["value"] for r in rig.rows(102)] == [1.0, 2.0]
    assert rig.rows(106)[0]["text"] == '{"k":[1]}'
    assert rig.attrs == [{"fw": "2.1"}]
    assert rig.ingest.stats()[3].accepted == 7


async def test_unknown_and_missing_token_refused_at_connect(rig: Rig) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with rig.client(username="WRONG"):
            pass
    with pytest.raises(aiomqtt.MqttError):
        async with rig.client(username=None):
            pass
    refused = rig.broker.stats().refused_connections
    assert refused == {"unknown_token": 1, "anonymous": 1}


async def test_other_topics_refused_and_nothing_leaks_between_devices(rig: Rig) -> None:
    other = rig.directory.add(press(2, tenant=3, name="press-2"), token="OTHER")
    assert other.device == 2
    async with rig.client() as a, rig.client(username="OTHER") as b:
        ok = await b.subscribe("v1/devices/me/attributes", qos=1)  # allowed: SDKs do
        refused = await b.subscribe("v1/devices/me/telemetry", qos=1)
        assert [_code(x) for x in ok] == [1]
        assert [_code(x) for x in refused] == [0x80]
        await a.publish("v1/devices/press-2/telemetry", b'{"temperature": 1}', qos=1)
        await a.publish("v1/devices/me/attributes", b'{"secret": 1}', qos=1)
        await rig.settled(1)
        with pytest.raises(TimeoutError):  # b never sees a's attributes
            async with asyncio.timeout(0.3):
                async for _ in b.messages:
                    pass
    assert rig.rows() == []
    assert rig.broker.stats().refused_topics >= 2


async def test_malformed_and_oversized_payloads_do_not_kill_the_broker(rig: Rig) -> None:
    async with rig.client() as c:
        await c.publish(TELEMETRY, b'{"temperature": ', qos=1)
        await c.publish(TELEMETRY, b'{"temperature": 1, "tmp": 2}', qos=1)
        await c.publish(TELEMETRY, b'{"note": "%s"}' % (b"x" * 5000), qos=1)
        await rig.settled(0, rejected=3)
        assert rig.rows() == []
        await c.publish(TELEMETRY, b'{"temperature": 5}', qos=1)
    await rig.settled(1, rejected=3)
    assert [r["value"] for r in rig.rows()] == [5.0]
    assert rig.broker.stats().rejected == {"malformed": 1, "unknown_property": 1, "too_large": 1}
    assert rig.ingest.stats()[3].rejected == {"malformed": 1, "unknown_property": 1, "too_large": 1}


async def test_thingsboard_device_sdk(rig: Rig) -> None:
    from tb_device_mqtt import TBDeviceMqttClient

    def run() -> None:
        sdk = TBDeviceMqttClient("127.0.0.1", port=rig.port, username=TOKEN)
        sdk.connect()  # MQTT 5, exactly as the SDK's users connect
        try:
            for _ in range(200):
                if sdk.is_connected():
                    break
                asyncio.run(asyncio.sleep(0.02))
            assert sdk.is_connected()
            shapes = [
                {"temperature": 30.0},
                {"ts": T0, "values": {"temperature": 31.0, "running": False}},
                [{"count": 7}, {"mode": 1}],
                [{"ts": T0 + 1, "values": {"note": "sdk"}}],
            ]
            for shape in shapes:
                sdk.send_telemetry(shape).get()
            sdk.send_attributes({"firmware": "1.0"}).get()
        finally:
            sdk.disconnect()
            sdk.stop()

    await asyncio.to_thread(run)
    await rig.settled(5)
    assert {r["series"] for r in rig.rows()} == {101, 102, 103, 104, 105}
    assert len(rig.rows()) == 6
    assert rig.attrs == [{"firmware": "1.0"}]
    assert rig.broker.stats().protocol_levels == {5: 1}
