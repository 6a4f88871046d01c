"""The platform as Sparkplug B primary host, against the real Mosquitto.

The edge side is played by pysparkplug's payload classes (a Sparkplug implementation that is
not ours) over a plain paho connection, so the host is checked against foreign encodings.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pysparkplug as psp  # a Sparkplug implementation that is not ours (installed by make)
import pytest

from yugong.core.errors import NotFound
from yugong.core.quality import Quality
from yugong.core.settings import Settings
from yugong.edge.sparkplug import DataType as YDataType
from yugong.edge.sparkplug import Metric as YMetric
from yugong.edge.sparkplug import Payload as YPayload
from yugong.edge.sparkplug import decode_payload, encode_payload
from yugong.platform.ingest.sparkplug_host import SparkplugHost
from yugong.platform.runtime import Platform
from yugong.security.principal import SYSTEM

pytestmark = pytest.mark.timeout(30)


@dataclass
class World:
    platform: Platform
    host: SparkplugHost
    tenant: int
    group: str
    node: str
    edge: mqtt.Client
    got: list[tuple[str, bytes, bool]]  # what the edge client received: topic, payload, retain

    def publish(self, kind: str, payload: bytes, device: str | None = None) -> None:
        topic = f"spBv1.0/{self.group}/{kind}/{self.node}" + (f"/{device}" if device else "")
        self.edge.publish(topic, payload, qos=1).wait_for_publish(5)


def _client(host: str, port: int, got: list[tuple[str, bytes, bool]]) -> mqtt.Client:
    c = mqtt.Client(
        callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
        client_id=f"edge-{uuid.uuid4().hex[:8]}",
    )
    c.on_message = lambda _c, _u, m: got.append((m.topic, bytes(m.payload), bool(m.retain)))
    c.connect(host, port)
    c.loop_start()
    return c


@pytest.fixture
async def world(tmp_path: Path, mosquitto: tuple[str, int]) -> AsyncIterator[World]:
    host, port = mosquitto
    settings = Settings(
        data_dir=tmp_path,
        mqtt_embedded=False,
        secret_key="k" * 40,
        admin_password="Platform-Pass-2026!",
        ingest_flush_ms=10,
    )
    platform = Platform(settings)
    await platform.start()
    group = f"g{uuid.uuid4().hex[:10]}"
    tenant = platform.registry.tenants.create(SYSTEM, name=f"Plant {group}", slug=group)
    sp = SparkplugHost(
        settings,
        platform.registry,
        platform.ingest,
        groups={group: tenant.slug},
        host_id=f"host-{group}",
        broker_url=f"mqtt://{host}:{port}",
        rebirth_interval_s=0.0,
    )
    await sp.start()
    await asyncio.wait_for(sp.ready.wait(), 10)
    got: list[tuple[str, bytes, bool]] = []
    edge = _client(host, port, got)
    edge.subscribe(f"spBv1.0/{group}/NCMD/#", qos=1)
    w = World(platform, sp, tenant.id, group, "node1", edge, got)
    try:
        yield w
    finally:
        edge.loop_stop()
        edge.disconnect()
        await sp.stop()
        await platform.stop()


def _ms() -> int:
    return time.time_ns() // 1_000_000


async def _until(check: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _nbirth(bd_seq: int = 0) -> bytes:
    return psp.NBirth(
        timestamp=_ms(),
        seq=0,
        metrics=(
            psp.Metric(timestamp=_ms(), name="bdSeq", datatype=psp.DataType.INT64, value=bd_seq),
            psp.Metric(
                timestamp=_ms(),
                name="Node Control/Rebirth",
                datatype=psp.DataType.BOOLEAN,
                value=False,
            ),
            psp.Metric(timestamp=_ms(), name="Uptime", datatype=psp.DataType.INT64, value=5),
        ),
    ).encode(include_dtypes=True)


def _dbirth(seq: int) -> bytes:
    return psp.DBirth(
        timestamp=_ms(),
        seq=seq,
        metrics=(
            psp.Metric(
                timestamp=_ms(),
                name="Motor/Speed",
                datatype=psp.DataType.DOUBLE,
                value=1450.0,
                alias=1,
            ),
            psp.Metric(
                timestamp=_ms(), name="Running", datatype=psp.DataType.BOOLEAN, value=True, alias=2
            ),
            psp.Metric(
                timestamp=_ms(), name="Temp", datatype=psp.DataType.INT16, value=-5, alias=3
            ),
        ),
    ).encode(include_dtypes=True)


def _ddata(seq: int, ts: int, speed: float, temp: int) -> bytes:
    # Alias only, no datatype: the host decodes them from the birth.
    return psp.DData(
        timestamp=_ms(),
        seq=seq,
        metrics=(
            psp.Metric(timestamp=ts, name=None, datatype=psp.DataType.DOUBLE, value=speed, alias=1),
            psp.Metric(timestamp=ts, name=None, datatype=psp.DataType.INT16, value=temp, alias=3),
        ),
    ).encode(include_dtypes=False)


async def _values(w: World, device: str, prop: str) -> list[tuple[float | None, int]]:
    await w.platform.writer.flush()
    b = w.platform.directory.by_name(w.tenant, device)
    if b is None:
        return []
    page = w.platform.store.range([b.properties[prop].series], 0, (_ms() + 60_000) * 1000)
    t = page.table
    return list(zip(t.column("value").to_pylist(), t.column("quality").to_pylist(), strict=True))


async def test_births_provision_and_data_is_stored(world: World) -> None:
    w = world
    w.publish("NBIRTH", _nbirth())
    w.publish("DBIRTH", _dbirth(1), "Pump1")
    t0 = _ms() - 1000
    w.publish("DDATA", _ddata(2, t0, 1500.5, -12), "Pump1")
    w.publish("DDATA", _ddata(3, t0 + 1, 1510.0, 7), "Pump1")

    async def speeds() -> list[float | None]:
        return [v for v, _ in await _values(w, "Pump1", "Motor_Speed")]

    deadline = time.monotonic() + 10
    while (got := await speeds()) != [1500.5, 1510.0, 1450.0]:
        assert time.monotonic() < deadline, got
        await asyncio.sleep(0.05)
    assert [v for v, _ in await _values(w, "Pump1", "Temp")] == [-12.0, 7.0, -5.0]

    reg = w.platform.registry
    gateway = reg.devices.get_by_name(SYSTEM, "node1", tenant_id=w.tenant)
    pump = reg.devices.get_by_name(SYSTEM, "Pump1", tenant_id=w.tenant)
    assert gateway.is_gateway and pump.gateway_id == gateway.id
    model = reg.products.get(SYSTEM, pump.product_id, tenant_id=w.tenant)
    assert model.key == "sp.node1.Pump1"
    types = {p["identifier"]: p["dataType"]["type"] for p in model.tsl["properties"]}
    assert types == {"Motor_Speed": "double", "Running": "bool", "Temp": "int"}
    node_model = reg.products.get(SYSTEM, gateway.product_id, tenant_id=w.tenant)
    assert [p["identifier"] for p in node_model.tsl["properties"]] == ["Uptime"]
    assert [v for v, _ in await _values(w, "node1", "Uptime")] == [5.0]
    assert w.host.stats.seq_gaps == 0 and w.host.stats.rebirths_requested == 0


async def test_a_birth_without_values_leaves_the_stored_values_alone(world: World) -> None:
    """A rebirth whose metrics are null only declares them: the latest value stays good."""
    w = world
    w.publish("NBIRTH", _nbirth())
    w.publish("DBIRTH", _dbirth(1), "Pump1")
    t0 = _ms() - 1000
    w.publish("DDATA", _ddata(2, t0, 1500.5, -12), "Pump1")
    await _until(lambda: w.host.stats.data == 1, "the DDATA")
    w.publish("NBIRTH", _nbirth(bd_seq=1))
    # Nulls with and without metric properties (the Yugong edge gateway sends readOnly).
    now = _ms()
    reborn = encode_payload(
        YPayload(
            timestamp=now,
            seq=1,
            metrics=(
                YMetric(
                    "Motor/Speed",
                    YDataType.Double,
                    None,
                    alias=1,
                    timestamp=now,
                    properties={"readOnly": False, "engUnit": "rpm"},
                ),
                YMetric("Temp", YDataType.Int16, None, alias=3, timestamp=now),
            ),
        )
    )
    w.publish("DBIRTH", reborn, "Pump1")
    await _until(lambda: w.host.stats.births == 4, "the rebirth")
    assert await _values(w, "Pump1", "Motor_Speed") == [(1500.5, 0), (1450.0, 0)]
    b = w.platform.directory.by_name(w.tenant, "Pump1")
    assert b is not None
    latest = w.platform.store.latest([b.properties["Temp"].series])
    assert latest.column("value").to_pylist() == [-5.0]  # the first birth's, newer than t0
    assert latest.column("quality").to_pylist() == [0]


async def test_units_and_writable_come_from_birth_properties(world: World) -> None:
    w = world
    w.publish("NBIRTH", _nbirth())
    dbirth = YPayload(
        timestamp=_ms(),
        seq=1,
        metrics=(
            YMetric("Properties/Product", YDataType.String, "meter-v2"),
            YMetric("Power", YDataType.Float, 3.5, properties={"engUnit": "kW"}),
            YMetric("Setpoint", YDataType.Int32, 40, properties={"writable": True}),
        ),
    )
    w.publish("DBIRTH", encode_payload(dbirth), "Meter7")
    reg = w.platform.registry

    def meter() -> Any:
        try:
            return reg.devices.get_by_name(SYSTEM, "Meter7", tenant_id=w.tenant)
        except Exception:
            return None

    dev = await _until(meter, "Meter7 to be provisioned")
    product = reg.products.get(SYSTEM, dev.product_id, tenant_id=w.tenant)
    assert product.key == "meter-v2"
    props = {p["identifier"]: p for p in product.tsl["properties"]}
    assert props["Power"]["dataType"] == {"type": "float", "specs": {"unit": "kW"}}
    assert props["Power"]["accessMode"] == "r"
    assert props["Setpoint"]["accessMode"] == "rw"
    assert "Properties_Product" not in props


async def test_seq_gap_and_data_before_birth_ask_for_rebirth(world: World) -> None:
    w = world

    def rebirths() -> list[Any]:
        out = []
        for topic, payload, _ in list(w.got):
            if topic == f"spBv1.0/{w.group}/NCMD/node1":
                out.append(decode_payload(payload).metric("Node Control/Rebirth").value)
        return out

    # DATA from a node the host never saw born.
    w.publish("DDATA", _ddata(7, _ms(), 1.0, 1), "Pump1")
    assert await _until(rebirths, "a rebirth request") == [True]
    w.publish("NBIRTH", _nbirth())
    w.publish("DBIRTH", _dbirth(1), "Pump1")
    w.publish("DDATA", _ddata(2, _ms() + 1000, 2.0, 2), "Pump1")
    w.publish("DDATA", _ddata(5, _ms() + 2000, 3.0, 3), "Pump1")  # 3 and 4 were lost
    assert await _until(lambda: len(rebirths()) == 2 and rebirths(), "a second request")
    assert w.host.stats.seq_gaps == 1
    # The gap's message itself is still stored.
    assert [v for v, _ in await _values(w, "Pump1", "Motor_Speed")][-2:] == [2.0, 3.0]


async def test_death_takes_devices_offline_and_marks_values_stale(world: World) -> None:
    w = world
    reg = w.platform.registry
    w.publish("NBIRTH", _nbirth(bd_seq=3))
    w.publish("DBIRTH", _dbirth(1), "Pump1")
    w.publish("DDATA", _ddata(2, _ms(), 1600.0, 20), "Pump1")

    def online(name: str) -> bool:
        try:
            return reg.devices.get_by_name(SYSTEM, name, tenant_id=w.tenant).online
        except NotFound:  # not provisioned yet
            return False

    async def heard() -> bool:
        await asyncio.to_thread(w.platform.directory.flush_seen)
        return online("Pump1") and online("node1")

    deadline = time.monotonic() + 10
    while not await heard():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)

    # A will from an older session (bdSeq 2) changes nothing.
    stale_will = psp.NDeath(
        timestamp=_ms(),
        bd_seq_metric=psp.Metric(
            timestamp=_ms(), name="bdSeq", datatype=psp.DataType.INT64, value=2
        ),
    )
    w.publish("NDEATH", stale_will.encode())
    will = psp.NDeath(
        timestamp=_ms(),
        bd_seq_metric=psp.Metric(
            timestamp=_ms(), name="bdSeq", datatype=psp.DataType.INT64, value=3
        ),
    )
    w.publish("NDEATH", will.encode())
    await _until(lambda: w.host.stats.deaths == 1, "the death to be handled")
    assert w.host.stats.rejected.get("stale_death") == 1
    assert not online("Pump1") and not online("node1")
    speed = await _values(w, "Pump1", "Motor_Speed")
    assert speed[-1] == (None, Quality.BAD)
    assert (1600.0, Quality.GOOD) in speed
    b = w.platform.directory.by_name(w.tenant, "Pump1")
    assert b is not None
    latest = w.platform.store.latest([b.properties["Running"].series])
    assert latest.column("quality").to_pylist() == [Quality.BAD]


async def test_device_death_and_unknown_group(world: World, mosquitto: tuple[str, int]) -> None:
    w = world
    w.publish("NBIRTH", _nbirth())
    w.publish("DBIRTH", _dbirth(1), "Pump1")
    w.publish("DDEATH", psp.DDeath(timestamp=_ms(), seq=2).encode(), "Pump1")
    await _until(lambda: w.host.stats.deaths == 1, "the device death")
    assert [v for v, _ in await _values(w, "Pump1", "Running")][-1] is None
    reg = w.platform.registry
    assert not reg.devices.get_by_name(SYSTEM, "Pump1", tenant_id=w.tenant).online

    other = f"x{uuid.uuid4().hex[:8]}"
    w.edge.publish(f"spBv1.0/{other}/NBIRTH/n1", _nbirth(), qos=1).wait_for_publish(5)
    await _until(lambda: w.host.stats.unknown_group == 1, "the unknown group to be counted")
    assert reg.devices.list(SYSTEM, tenant_id=w.tenant, search="n1").total == 0


async def test_state_is_retained_online_and_offline_after_stop(
    world: World, mosquitto: tuple[str, int]
) -> None:
    host, port = mosquitto
    topic = f"spBv1.0/STATE/host-{world.group}"

    async def retained() -> dict[str, Any]:
        got: list[tuple[str, bytes, bool]] = []
        c = _client(host, port, got)
        try:
            c.subscribe(topic, qos=1)
            msgs = await _until(lambda: [m for m in got if m[0] == topic], "the retained STATE")
        finally:
            c.loop_stop()
            c.disconnect()
        assert msgs[0][2], "STATE must be retained"
        doc: dict[str, Any] = json.loads(msgs[0][1])
        return doc

    doc = await retained()
    assert doc["online"] is True and isinstance(doc["timestamp"], int)
    await world.host.stop()
    doc = await retained()
    assert doc["online"] is False
