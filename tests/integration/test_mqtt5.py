"""The embedded broker's public front: MQTT 5 and 3.1.1 clients (the unmodified ThingsBoard
device SDK, paho in both versions, raw sockets for what clients never send), and no
acknowledged message lost when a device disconnects right after publishing."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tests.conftest import free_port
from tests.integration.test_mqtt_embedded import TOKEN, Rig
from yugong.infra.timeseries import open_store

T0 = 1_700_000_000_000
TELEMETRY = "v1/devices/me/telemetry"
ATTRIBUTES = "v1/devices/me/attributes"


# --- a deliberately tiny MQTT codec, independent of the one under test -------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def connect(version: int, client_id: str, username: str | None = TOKEN) -> bytes:
    flags = 0x02 | (0x80 if username else 0)
    body = _str("MQTT") + bytes([version, flags]) + struct.pack("!H", 30)
    if version == 5:
        body += b"\x00"  # no properties
    body += _str(client_id) + (_str(username) if username else b"")
    return _packet(0x10, body)


def publish(
    version: int, topic: str, payload: bytes, qos: int = 0, pid: int = 0, props: bytes = b"\x00"
) -> bytes:
    body = _str(topic) + (struct.pack("!H", pid) if qos else b"")
    if version == 5:
        body += props
    return _packet(0x30 | (qos << 1), body + payload)


def disconnect(version: int, reason: int | None = None) -> bytes:
    if version == 5 and reason is not None:
        return _packet(0xE0, bytes([reason, 0]))
    return b"\xe0\x00"


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first, await reader.readexactly(length)


async def raw(
    rig: Rig, version: int, client_id: str, username: str | None = TOKEN
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A raw connection past CONNECT; returns the CONNACK body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.port)
    writer.write(connect(version, client_id, username))
    first, body = await asyncio.wait_for(read_packet(reader), 5)
    assert first == 0x20, hex(first)
    return reader, writer, body


async def closed(reader: asyncio.StreamReader) -> list[tuple[int, bytes]]:
    """Every packet until the server closes the connection."""
    got: list[tuple[int, bytes]] = []
    async with asyncio.timeout(5):
        while True:
            try:
                got.append(await read_packet(reader))
            except (asyncio.IncompleteReadError, ConnectionError):
                return got


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = open_store(f"duckdb:///{tmp_path / 'ts.duckdb'}")
    r = Rig(store, free_port())
    await r.broker.start()
    yield r
    await r.broker.stop()
    await r.writer.close()
    store.close()


async def stored(rig: Rig, series: int, want: int) -> int:
    """Rows of ``series`` once ``want`` arrived, or what arrived within a few seconds."""
    deadline = time.monotonic() + 5
    while True:
        await rig.writer.flush()
        n = len(rig.rows(series))
        if n >= want or time.monotonic() > deadline:
            return n
        await asyncio.sleep(0.05)


# --- problem 2: the tail of a burst must not be dropped at disconnect --------------------


@pytest.mark.parametrize("version", [4, 5])
async def test_qos1_messages_acknowledged_then_disconnect_all_stored(
    rig: Rig, version: int
) -> None:
    clients, per_client = 20, 50

    async def device(n: int) -> None:
        reader, writer, _ = await raw(rig, version, f"burst-{n}")
        writer.write(
            b"".join(
                publish(
                    version,
                    TELEMETRY,
                    b'{"ts": %d, "values": {"count": %d}}' % (T0 + n * per_client + i, i),
                    qos=1,
                    pid=i + 1,
                )
                for i in range(per_client)
            )
        )
        acked = 0
        while acked < per_client:
            first, _ = await asyncio.wait_for(read_packet(reader), 5)
            acked += first == 0x40
        writer.write(disconnect(version))  # and gone at once
        writer.close()

    await asyncio.gather(*(device(n) for n in range(clients)))
    assert await stored(rig, 102, clients * per_client) == clients * per_client


async def test_qos0_burst_then_disconnect_all_stored(rig: Rig) -> None:
    """QoS 0 carries no acknowledgement; what the broker still promises: every PUBLISH that
    reached it before the client's DISCONNECT is ingested, even if the client closes the
    socket in the same breath."""
    clients, per_client = 20, 50

    async def device(n: int) -> None:
        reader, writer, _ = await raw(rig, 4, f"burst0-{n}")
        writer.write(
            b"".join(
                publish(
                    4,
                    TELEMETRY,
                    b'{"ts": %d, "values": {"count": %d}}' % (T0 + n * per_client + i, i),
                )
                for i in range(per_client)
            )
            + disconnect(4)
        )
        await writer.drain()
        writer.close()
        await closed(reader)

    await asyncio.gather(*(device(n) for n in range(clients)))
    assert await stored(rig, 102, clients * per_client) == clients * per_client


# --- problem 1: MQTT 5 and 3.1.1 clients side by side ------------------------------------


class PahoDevice:
    """A paho client in its own network thread, recording what the broker answered."""

    def __init__(self, rig: Rig, protocol: int, token: str = TOKEN, keepalive: int = 60) -> None:
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            protocol=protocol,
            client_id=f"paho-{protocol}-{time.monotonic_ns()}",
        )
        self.client.username_pw_set(token)
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.unsubscribed = threading.Event()
        self.closed = threading.Event()
        self.reason: Any = None
        self.granted: list[int] = []
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_unsubscribe = lambda c, u, mid, codes, p: self.unsubscribed.set()
        self.client.on_disconnect = lambda c, u, f, rc, p: self.closed.set()
        self.client.connect("127.0.0.1", rig.port, keepalive=keepalive)
        self.client.loop_start()

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        self.reason = reason
        self.connected.set()

    def _on_subscribe(self, c: Any, u: Any, mid: int, codes: list[Any], props: Any) -> None:
        self.granted = [int(getattr(x, "value", x)) for x in codes]
        self.subscribed.set()

    def publish(
        self, payload: bytes, qos: int = 1, topic: str = TELEMETRY, props: Properties | None = None
    ) -> None:
        info = self.client.publish(topic, payload, qos=qos, properties=props)
        info.wait_for_publish(5)
        assert info.is_published()

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311])
async def test_paho_both_versions_publish_subscribe_ping(rig: Rig, protocol: int) -> None:
    def run() -> None:
        dev = PahoDevice(rig, protocol, keepalive=1)
        try:
            assert dev.connected.wait(5) and not dev.reason.is_failure
            dev.publish(b'{"ts": %d, "values": {"temperature": 40.5}}' % T0, qos=1)
            dev.publish(b'{"ts": %d, "values": {"temperature": 41.5}}' % (T0 + 1), qos=0)
            dev.publish(b'{"fw": "3.0"}', topic=ATTRIBUTES)
            dev.client.subscribe([(ATTRIBUTES, 1), (TELEMETRY, 1)])
            assert dev.subscribed.wait(5)
            assert dev.granted == [1, 0x80]  # devices may not listen to telemetry
            dev.client.unsubscribe([ATTRIBUTES, "v1/devices/me/rpc/request/+"])
            assert dev.unsubscribed.wait(5)
            time.sleep(2.2)  # two keep-alive periods: paho pings, the broker answers
            assert dev.client.is_connected() and not dev.closed.is_set()
            dev.publish(b'{"ts": %d, "values": {"temperature": 42.5}}' % (T0 + 2), qos=1)
        finally:
            dev.stop()

    await asyncio.to_thread(run)
    await rig.settled(4)
    assert [r["value"] for r in rig.rows(101)] == [40.5, 41.5, 42.5]
    assert rig.attrs == [{"fw": "3.0"}]
    assert rig.broker.stats().protocol_levels == {5 if protocol == paho.MQTTv5 else 4: 1}


async def test_wrong_token_refused_with_mqtt5_reason_and_real_address_logged(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # amqtt refuses a failed login as "not authorized", which MQTT 5 spells 0x87.
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.port)
    local_port = writer.get_extra_info("sockname")[1]
    writer.write(connect(5, "raw-wrong", "WRONG"))
    assert await closed(reader) == [(0x20, b"\x00\x87\x00")]
    writer.close()
    # The log names the device's own address, not the front's hop to amqtt.
    refusal = [r.getMessage() for r in caplog.records if "unknown access token" in r.getMessage()]
    assert refusal == [f"MQTT connection from 127.0.0.1:{local_port} refused: unknown access token"]

    def run() -> int:
        dev = PahoDevice(rig, paho.MQTTv5, token="WRONG")
        try:
            assert dev.connected.wait(5)
            assert dev.reason.is_failure
            return int(dev.reason.value)
        finally:
            dev.client.loop_stop()

    assert await asyncio.to_thread(run) == 0x87
    assert rig.broker.stats().refused_connections == {"unknown_token": 2}


async def test_raw_v5_session_translates_every_packet_type(rig: Rig) -> None:
    reader, writer, connack = await raw(rig, 5, "raw-v5")
    assert connack == b"\x00\x00\x00"  # accepted, and nothing advertised
    # SUBSCRIBE with a property and v5 options (no-local, retain handling) on one filter.
    writer.write(
        _packet(
            0x82,
            struct.pack("!H", 7) + b"\x02\x0b\x05" + _str(ATTRIBUTES) + bytes([0x01 | 0x04 | 0x20]),
        )
    )
    assert await read_packet(reader) == (0x90, struct.pack("!H", 7) + b"\x00\x01")
    writer.write(
        _packet(
            0xA2,
            struct.pack("!H", 8) + b"\x00" + _str(ATTRIBUTES) + _str("v1/devices/me/rpc/request/+"),
        )
    )
    assert await read_packet(reader) == (0xB0, struct.pack("!H", 8) + b"\x00\x00\x00")
    writer.write(b"\xc0\x00")
    assert await read_packet(reader) == (0xD0, b"")
    # QoS 1 with properties (payload format, user property) and QoS 2 with none.
    props = b"\x09\x01\x01\x26\x00\x01k\x00\x01v"
    writer.write(
        publish(5, TELEMETRY, b'{"ts": %d, "values": {"count": 1}}' % T0, qos=1, pid=9, props=props)
    )
    assert await read_packet(reader) == (0x40, struct.pack("!H", 9))
    writer.write(
        publish(5, TELEMETRY, b'{"ts": %d, "values": {"count": 2}}' % (T0 + 1), qos=2, pid=10)
    )
    assert await read_packet(reader) == (0x50, struct.pack("!H", 10))
    writer.write(_packet(0x62, struct.pack("!H", 10) + b"\x00\x00"))  # PUBREL, reason+props
    assert await read_packet(reader) == (0x70, struct.pack("!H", 10))
    writer.write(disconnect(5, 0))
    assert await closed(reader) == []
    writer.close()
    await rig.settled(2)
    assert [r["value"] for r in rig.rows(102)] == [1.0, 2.0]


async def test_topic_alias_resolved_or_refused(rig: Rig) -> None:
    def alias(n: int) -> Properties:
        p = Properties(PacketTypes.PUBLISH)
        p.TopicAlias = n
        return p

    def run() -> None:
        dev = PahoDevice(rig, paho.MQTTv5)
        try:
            assert dev.connected.wait(5)
            # The broker offers no aliases (no Topic Alias Maximum); paho sends one anyway
            # when asked to, as a careless client would: the front resolves it.
            dev.publish(b'{"ts": %d, "values": {"count": 5}}' % T0, props=alias(3))
        finally:
            dev.stop()

    await asyncio.to_thread(run)
    reader, writer, _ = await raw(rig, 5, "alias")
    writer.write(
        publish(
            5,
            TELEMETRY,
            b'{"ts": %d, "values": {"count": 6}}' % (T0 + 1),
            qos=1,
            pid=1,
            props=b"\x03\x23\x00\x02",
        )
    )
    writer.write(
        publish(
            5,
            "",
            b'{"ts": %d, "values": {"count": 7}}' % (T0 + 2),
            qos=1,
            pid=2,
            props=b"\x03\x23\x00\x02",
        )
    )
    assert [await read_packet(reader) for _ in range(2)] == [
        (0x40, b"\x00\x01"),
        (0x40, b"\x00\x02"),
    ]
    writer.write(publish(5, TELEMETRY, b"{}", qos=1, pid=3, props=b"\x03\x23\x10\x00"))
    assert await closed(reader) == [(0xE0, b"\x94\x00")]  # alias 4096 was never offered
    writer.close()
    await rig.settled(3)
    assert [r["value"] for r in rig.rows(102)] == [5.0, 6.0, 7.0]


async def test_malformed_v5_packet_closes_only_that_connection(rig: Rig) -> None:
    good_r, good_w, _ = await raw(rig, 5, "good")
    cases = [
        (publish(5, TELEMETRY, b"{}", qos=1, pid=1, props=b"\x02\x7f\x00"), 0x81),  # no such prop
        (_packet(0x82, struct.pack("!H", 1) + b"\x00" + b"\x00\x09v1/"), 0x81),  # cut filter
        (_packet(0xF0, b"\x00"), 0x8C),  # AUTH: enhanced authentication unsupported
        (_packet(0x20, b"\x00\x00"), 0x82),  # CONNACK is not sent by clients
        (b"\x30\xff\xff\xff\xff\x01", 0x81),  # remaining length of five bytes
    ]
    for i, (bad, reason) in enumerate(cases):
        reader, writer, _ = await raw(rig, 5, f"bad-{i}")
        writer.write(bad)
        assert await closed(reader) == [(0xE0, bytes([reason, 0]))], i
        writer.close()
    # A CONNECT that is not one: refused before the broker sees it, the v5 way.
    reader, writer = await asyncio.open_connection("127.0.0.1", rig.port)
    writer.write(_packet(0x10, _str("MQTT") + b"\x05\x83\x00\x1e\x00" + _str("x")))
    assert await closed(reader) == [(0x20, b"\x00\x81\x00")]  # reserved flag set
    writer.close()
    good_w.write(publish(5, TELEMETRY, b'{"ts": %d, "values": {"count": 3}}' % T0, qos=1, pid=4))
    assert await read_packet(good_r) == (0x40, b"\x00\x04")
    good_w.write(disconnect(5))
    good_w.close()
    await rig.settled(1)
    assert [r["value"] for r in rig.rows(102)] == [3.0]
    assert rig.broker.stats().dropped == {"malformed": 6}


@pytest.mark.parametrize("version", [4, 5])
async def test_oversize_refused(rig: Rig, version: int) -> None:
    # A little over the limit: that message is refused, the connection carries on.
    reader, writer, _ = await raw(rig, version, "big")
    writer.write(publish(version, TELEMETRY, b'{"note": "%s"}' % (b"x" * 5000), qos=1, pid=1))
    writer.write(
        publish(version, TELEMETRY, b'{"ts": %d, "values": {"count": 8}}' % T0, qos=1, pid=2)
    )
    assert [await read_packet(reader) for _ in range(2)] == [
        (0x40, b"\x00\x01"),
        (0x40, b"\x00\x02"),
    ]
    # Far over: a 200 MB remaining length closes the connection before anything buffers it.
    writer.write(b"\x32" + _varint(200_000_000) + _str(TELEMETRY) + b"\x00\x03")
    expected = [(0xE0, b"\x95\x00")] if version == 5 else []
    assert await closed(reader) == expected
    writer.close()
    await rig.settled(1, rejected=1)
    assert [r["value"] for r in rig.rows(102)] == [8.0]
    assert rig.broker.stats().rejected == {"too_large": 1}
    assert rig.broker.stats().dropped == {"too_large": 1}


def test_broker_packets_translated_to_mqtt5() -> None:
    from yugong.infra.mqtt5 import DropConnection, V5Translator

    t = V5Translator()
    # PUBLISH QoS 1 and QoS 0 gain an empty property block after the packet id / topic.
    assert t.from_broker(0x32, _str("a/b") + b"\x00\x05hi") == _packet(
        0x32, _str("a/b") + b"\x00\x05\x00hi"
    )
    assert t.from_broker(0x30, _str("a/b") + b"hi") == _packet(0x30, _str("a/b") + b"\x00hi")
    # CONNACK codes: 3.1.1 return code -> MQTT 5 reason code.
    assert t.from_broker(0x20, b"\x01\x00") == b"\x20\x03\x01\x00\x00"
    assert t.from_broker(0x40, b"\x00\x07") == b"\x40\x02\x00\x07"
    # A DISCONNECT asking for the will ends the link without telling the broker.
    with pytest.raises(DropConnection):
        t.from_client(0xE0, b"\x04\x00")
    assert t.from_client(0xE0, b"\x00\x00") == b"\xe0\x00"
