"""MQTT/JSON connector against the running Mosquitto, each test under its own topic prefix.

Broker loss is provoked with a TCP relay between the connector and Mosquitto that the test
cuts and restores; the relay only copies bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiomqtt
import orjson
import pytest

from tests.conftest import free_port, until
from tests.edge.conftest import Collector
from yugong.core.quality import Quality
from yugong.edge.connectors.base import Backoff, WriteStatus
from yugong.edge.connectors.mqtt_json import (
    MqttJsonConnector,
    MqttJsonOptions,
    MqttJsonSession,
    TopicPattern,
)
from yugong.edge.profiles import DeviceProfile, parse_profile

FAST = MqttJsonOptions(wait=0.05, log_every=60.0)


@pytest.fixture
def prefix() -> str:
    return f"yg-test/{uuid.uuid4().hex[:10]}"


def profile(host: str, port: int, topic: str, name: str = "plant") -> DeviceProfile:
    return parse_profile(
        {
            "name": name,
            "protocol": "mqtt_json",
            "connection": {"host": host, "port": port, "topic": topic},
            "points": [
                {"property": "temp", "path": "$.sensors.temp", "unit": "°C"},
                {"property": "state", "path": "$.state", "type": "string", "length": 16},
                {"property": "running", "path": "$.run", "type": "bool"},
            ],
        }
    )


async def publish(broker: tuple[str, int], *messages: tuple[str, Any]) -> None:
    async with aiomqtt.Client(*broker) as client:
        for topic, doc in messages:
            payload = doc if isinstance(doc, bytes) else orjson.dumps(doc)
            await client.publish(topic, payload, qos=1)


def test_topic_patterns() -> None:
    p = TopicPattern.parse("plant/{device}/+/status/#")
    assert p.filter == "plant/+/+/status/#"
    assert p.names == ("device",)
    assert p.match("plant/press-1/line2/status") == {"device": "press-1"}
    assert p.match("plant/press-1/line2/status/a/b") == {"device": "press-1"}
    assert p.match("plant/press-1/line2/state") is None
    exact = TopicPattern.parse("a/{device}/b")
    assert exact.match("a/x/b/c") is None and exact.match("a/x") is None
    for bad, why in [
        ("a/#/b", "'#' must be the last"),
        ("a/dev{device}", "takes a whole segment"),
        ("a/{x}/{x}", "appears twice"),
        ("", "non-empty"),
    ]:
        with pytest.raises(ValueError, match=why):
            TopicPattern.parse(bad)


async def test_device_captured_from_topic(mosquitto: tuple[str, int], prefix: str) -> None:
    sink = Collector()
    prof = profile(*mosquitto, f"{prefix}/plant/{{device}}/status")
    conn = MqttJsonConnector("mqtt", [prof], sink, options=FAST)
    async with conn:
        await until(lambda: conn.available("plant"))
        before = time.time_ns() // 1000
        await publish(
            mosquitto,
            (f"{prefix}/plant/press-1/status", {"sensors": {"temp": 21.5}, "run": True}),
            (f"{prefix}/plant/press-2/status", {"sensors": {"temp": 30}, "state": "idle"}),
            (f"{prefix}/plant/press-3/other", {"sensors": {"temp": 99}}),  # not subscribed
        )
        await until(lambda: len(sink.rows()) >= 4)
        await asyncio.sleep(0.1)
        after = time.time_ns() // 1000
    rows = sink.rows()
    got = {(r["device"], r["point"]): (r["value"], r["text"]) for r in rows}
    assert got == {
        ("press-1", "temp"): (21.5, None),
        ("press-1", "running"): (1.0, None),
        ("press-2", "temp"): (30.0, None),
        ("press-2", "state"): (None, "idle"),
    }
    assert all(r["quality"] == Quality.GOOD for r in rows)
    assert all(before <= r["ts"] <= after for r in rows)  # receive time
    stats = conn.stats().devices["plant"]
    assert stats.points_read == 4 and stats.bytes_received > 0


async def test_wildcards_timestamps_and_fixed_device(
    mosquitto: tuple[str, int], prefix: str
) -> None:
    sink = Collector()
    prof = profile(*mosquitto, f"{prefix}/line/+/sensors/#", name="line-1")
    opts = FAST.model_copy(update={"timestamp_path": "$.ts", "timestamp_unit": "ms"})
    async with MqttJsonConnector("mqtt", [prof], sink, options=opts) as conn:
        await until(lambda: conn.available("line-1"))
        await publish(
            mosquitto,
            (f"{prefix}/line/a/sensors/x/y", {"ts": 1_700_000_000_000, "sensors": {"temp": 1}}),
            (f"{prefix}/line/b/sensors", {"ts": 1_700_000_001_000, "sensors": {"temp": 2}}),
        )
        await until(lambda: len(sink.rows()) >= 2)
    assert [(r["device"], r["ts"], r["value"]) for r in sink.rows()] == [
        ("line-1", 1_700_000_000_000_000, 1.0),
        ("line-1", 1_700_000_001_000_000, 2.0),
    ]


async def test_wrong_json_is_counted_and_logged_rate_limited(
    mosquitto: tuple[str, int], prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="yugong.edge.connectors")
    quiet, loud = Collector(), Collector()
    prof = profile(*mosquitto, f"{prefix}/plant/{{device}}/status")
    report = FAST.model_copy(update={"report_missing": True})
    a = MqttJsonConnector("a", [prof], quiet, options=FAST)
    b = MqttJsonConnector("b", [prof], loud, options=report)
    async with a, b:
        await until(lambda: a.available("plant") and b.available("plant"))
        await publish(
            mosquitto,
            *[(f"{prefix}/plant/p1/status", b"{not json") for _ in range(3)],
            (f"{prefix}/plant/p1/status", {"sensors": {"temp": 5}}),
        )
        await until(lambda: a.bad_messages("plant") == 3 and b.bad_messages("plant") == 3)
        await until(lambda: len(quiet.rows()) >= 1 and len(loud.rows()) >= 12)
        assert a.available("plant")  # a bad payload is not a broken connection
    # Without report_missing only the good message's value; with it, BAD for everything absent.
    assert [(r["point"], r["quality"]) for r in quiet.rows()] == [("temp", Quality.GOOD)]
    loud_rows = [(r["device"], r["point"], r["quality"]) for r in loud.rows()]
    assert loud_rows.count(("p1", "temp", Quality.BAD)) == 3
    assert ("p1", "temp", Quality.GOOD) in loud_rows
    assert ("p1", "state", Quality.BAD) in loud_rows  # missing from the good message
    warnings = [r.getMessage() for r in caplog.records if "bad message" in r.getMessage()]
    assert len(warnings) == 2  # once per connector, the repeats are rate-limited
    assert "not JSON" in warnings[0]
    assert a.stats().devices["plant"].errors == 3


class Relay:
    """A TCP relay to the broker that can be cut (all connections dropped) and restored."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


@pytest.fixture
async def relay(mosquitto: tuple[str, int]) -> AsyncIterator[Relay]:
    r = Relay(mosquitto)
    await r.start()
    try:
        yield r
    finally:
        await r.cut()


async def test_broker_loss_is_unavailable_then_reconnects(
    mosquitto: tuple[str, int], prefix: str, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="yugong.edge.connectors")
    sink = Collector()
    prof = profile("127.0.0.1", relay.port, f"{prefix}/plant/{{device}}/status")
    conn = MqttJsonConnector(
        "mqtt", [prof], sink, options=FAST, backoff=lambda: Backoff(initial=0.05, maximum=0.2)
    )
    topic = f"{prefix}/plant/p1/status"
    async with conn:
        await until(lambda: conn.available("plant"))
        await publish(mosquitto, (topic, {"sensors": {"temp": 1}}))
        await until(lambda: len(sink.rows()) == 1)
        await relay.cut()
        await until(lambda: not conn.available("plant"))
        await asyncio.sleep(0.5)  # several reconnect attempts fail meanwhile
        bad = [r for r in sink.rows() if r["quality"] == Quality.BAD]
        # Every point of every device heard from turns BAD, with no value.
        assert {(r["device"], r["point"]) for r in bad} == {
            ("p1", "temp"),
            ("p1", "state"),
            ("p1", "running"),
        }
        assert all(r["value"] is None for r in bad)
        await relay.start()
        await until(lambda: conn.available("plant"))
        await publish(mosquitto, (topic, {"sensors": {"temp": 2}}))
        await until(lambda: sink.rows()[-1]["value"] == 2.0)
    stats = conn.stats().devices["plant"]
    assert stats.connects >= 2
    down = [r for r in caplog.records if "unavailable" in r.getMessage()]
    up = [r for r in caplog.records if "is available" in r.getMessage()]
    assert len(down) == 1 and "broker" in down[0].getMessage()
    assert len(up) == 2


async def test_unreachable_broker_is_unavailable(prefix: str) -> None:
    port = free_port()  # nothing listens here
    sink = Collector()
    prof = profile("127.0.0.1", port, f"{prefix}/x")
    conn = MqttJsonConnector(
        "mqtt", [prof], sink, options=FAST, backoff=lambda: Backoff(initial=0.05, maximum=0.1)
    )
    async with conn:
        await until(lambda: conn.stats().devices["plant"].errors >= 2)
        assert not conn.available("plant")
    assert {r["point"] for r in sink.rows()} == {"temp", "state", "running"}
    assert {r["quality"] for r in sink.rows()} == {Quality.BAD}


async def test_write_publishes_to_the_command_topic(
    mosquitto: tuple[str, int], prefix: str
) -> None:
    prof = profile(*mosquitto, f"{prefix}/plant/{{device}}/status")
    opts = FAST.model_copy(update={"command_topic": f"{prefix}/plant/{{device}}/set"})
    sink = Collector()
    async with (
        aiomqtt.Client(*mosquitto) as listener,
        MqttJsonConnector("mqtt", [prof], sink, options=opts) as conn,
    ):
        await listener.subscribe(f"{prefix}/plant/+/set", qos=1)
        await until(lambda: conn.available("plant"))
        await publish(mosquitto, (f"{prefix}/plant/p7/status", {"sensors": {"temp": 1}}))
        await until(lambda: len(sink.rows()) == 1)
        result = await conn.write("p7", "temp", 42.5)
        assert result.success, result
        message = await asyncio.wait_for(anext(aiter(listener.messages)), 5)
        assert message.topic.value == f"{prefix}/plant/p7/set"
        assert orjson.loads(message.payload) == {"temp": 42.5}
        unknown = await conn.write("p7", "nope", 1)
        assert unknown.status is WriteStatus.INVALID
    readonly = MqttJsonConnector("m", [prof], Collector(), options=FAST)
    async with readonly:
        await until(lambda: readonly.available("plant"))
        result = await readonly.write("plant", "temp", 1)
    assert result.status is WriteStatus.INVALID and "read-only" in result.message


async def test_a_flood_drops_the_oldest_messages_counted_and_logged_once(
    mosquitto: tuple[str, int], prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="yugong.edge.connectors")
    prof = profile(*mosquitto, f"{prefix}/plant/{{device}}/status")
    session = MqttJsonSession(prof, FAST.model_copy(update={"max_queue": 5}))
    await session.connect()
    try:
        docs = [(f"{prefix}/plant/p1/status", {"sensors": {"temp": i}}) for i in range(20)]
        await publish(mosquitto, *docs)
        size = sum(len(orjson.dumps(d)) for _, d in docs)
        await until(lambda: session.stats.bytes_received == size)  # none polled yet
        assert session.stats.dropped == 15
        result = await session.poll(session.groups[0])
        temps = [r["value"] for t in result.batches for r in t.to_pylist() if r["point"] == "temp"]
        assert temps == [15.0, 16.0, 17.0, 18.0, 19.0]  # the newest are kept
    finally:
        await session.close()
    drops = [r for r in caplog.records if "dropping the oldest" in r.getMessage()]
    assert len(drops) == 1 and "queue of 5 full" in drops[0].getMessage()
