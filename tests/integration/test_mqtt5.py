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

import orjson
import paho.mqtt.client as paho
import pytest
from paho.mqtt.properties import Properties
from paho.mqtt.packettypes import PacketTypes

from tests.integration.test_mqtt_embedded import TOKEN, Rig
from tests.conftest import free_port
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


def publish(version: int, topic: str, payload: bytes, qos: int = 0, pid: int = 0,
            props: bytes = b"\x00") -> bytes:
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


async def raw(rig: Rig, version: int, client_id: str, username: str | None = TOKEN
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
async def test_qos1_messages_acknowledged_then_disconnect_all_stored(rig: Rig, version: int
                                                                      ) -> None:
    clients, per_client = 20, 50

    async def device(n: int) -> None:
        reader, writer, _ = await raw(rig, version, f"burst-{n}")
        writer.write(b"".join(
            publish(version, TELEMETRY,
                    b'{"ts": %d, "values": {"count": %d}}' % (T0 + n * per_client + i, i),
                    qos=1, pid=i + 1)
            for i in range(per_client)))
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
        writer.write(b"".join(
            publish(4, TELEMETRY,
                    b'{"ts": %d, "values": {"count": %d}}' % (T0 + n * per_client + i, i))
            for i in range(per_client)) + disconnect(4))
        await writer.drain()
        writer.close()
        await closed(reader)

    await asyncio.gather(*(device(n) for n in range(clients)))
    assert await stored(rig, 102, clients * per_client) == clients * per_client
