"""The Modbus connector against a real pymodbus server (TCP, and RTU framing over TCP)."""

from __future__ import annotations

import logging
import struct
from typing import Any

import pytest

from tests.conftest import until
from tests.edge.conftest import (
    FC_COIL,
    FC_DI,
    FC_HR,
    FC_IR,
    SERIAL_BAUD,
    Collector,
    ModbusTestServer,
)
from yugong.core.quality import Quality
from yugong.edge.connectors.base import Backoff, PollTimeout, WriteStatus
from yugong.edge.connectors.modbus import ModbusConnector, ModbusSession
from yugong.edge.profiles import DeviceProfile, parse_profile

FC_WRITE_COIL, FC_WRITE_REG, FC_WRITE_COILS, FC_WRITE_REGS = 5, 6, 15, 16


def profile(
    port: int,
    points: list[dict[str, Any]],
    *,
    name: str = "plc-1",
    protocol: str = "modbus_tcp",
    timeout: float = 1.0,
    max_gap: int = 10,
    interval: str = "50ms",
) -> DeviceProfile:
    return parse_profile(
        {
            "name": name,
            "protocol": protocol,
            "connection": {
                "host": "127.0.0.1",
                "port": port,
                "unit_id": 1,
                "timeout": timeout,
                "max_gap": max_gap,
            },
            "interval": interval,
            "points": points,
        }
    )


def words(fmt: str, value: float) -> list[int]:
    data = struct.pack(fmt, value)
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


FAST = lambda: Backoff(initial=0.02, maximum=0.1)  # noqa: E731


def readings(sink: Collector) -> dict[str, tuple[float | None, int]]:
    """(value, quality) of the last row of each point."""
    return {point: (r["value"], r["quality"]) for point, r in sink.latest().items()}


MIXED_POINTS: list[dict[str, Any]] = [
    {"property": "flow", "register": "holding", "address": 0, "type": "float32"},
    {"property": "level", "register": "holding", "address": 2, "type": "int16"},
    {"property": "energy", "register": "holding", "address": 3, "type": "uint32", "scale": 0.1},
    {"property": "temp", "register": "input", "address": 10, "type": "int16", "scale": 0.5},
    {"property": "pressure", "register": "input", "address": 11, "type": "float32"},
    {"property": "running", "register": "coil", "address": 5, "type": "bool"},
    {"property": "fault", "register": "coil", "address": 7, "type": "bool"},
    {"property": "door", "register": "discrete_input", "address": 3, "type": "bool"},
]


async def test_reads_every_table_match_the_datastore(modbus_server: ModbusTestServer) -> None:
    s = modbus_server
    await s.set(FC_HR, 0, words(">f", 12.5) + words(">h", -42) + words(">I", 123456))
    await s.set(FC_IR, 10, words(">h", -7) + words(">f", 3.25))
    await s.set(FC_COIL, 5, [True, False, False])
    await s.set(FC_DI, 3, [True])
    sink = Collector()
    async with ModbusConnector("mb", [profile(s.port, MIXED_POINTS)], sink, backoff=FAST) as conn:
        await until(lambda: len(sink.latest()) == len(MIXED_POINTS))
        st = conn.stats().devices["plc-1"]
        assert conn.available("plc-1")
    got = readings(sink)
    assert got == {
        "flow": (12.5, Quality.GOOD),
        "level": (-42.0, Quality.GOOD),
        "energy": (pytest.approx(12345.6), Quality.GOOD),
        "temp": (-3.5, Quality.GOOD),
        "pressure": (3.25, Quality.GOOD),
        "running": (1.0, Quality.GOOD),
        "fault": (0.0, Quality.GOOD),
        "door": (1.0, Quality.GOOD),
    }
    assert st.polls >= 1 and st.points_read >= len(MIXED_POINTS)
    assert st.bytes_sent > 0 and st.bytes_received > st.bytes_sent
    # One timestamp per block: the two coils share one, holding and input differ from it.
    t = sink.table().slice(0, len(MIXED_POINTS)).to_pylist()
    ts = {r["point"]: r["ts"] for r in t}
    assert ts["running"] == ts["fault"]
    assert ts["flow"] == ts["level"] == ts["energy"]


async def test_rtu_framing_over_tcp(modbus_rtu_server: ModbusTestServer) -> None:
    s = modbus_rtu_server
    await s.set(FC_HR, 20, words(">i", -100000))
    prof = profile(
        s.port,
        [{"property": "count", "register": "holding", "address": 20, "type": "int32"}],
        protocol="modbus_rtu_over_tcp",
    )
    session = ModbusSession(prof)
    await session.connect()
    try:
        result = await session.poll(session.groups[0])
    finally:
        await session.close()
    assert result.batches[0].column("value").to_pylist() == [-100000.0]


async def test_rtu_on_a_serial_line(modbus_serial_server: tuple[ModbusTestServer, str]) -> None:
    s, tty = modbus_serial_server
    await s.set(FC_HR, 5, words(">f", -2.5))
    prof = parse_profile(
        {
            "name": "rtu-1",
            "protocol": "modbus_rtu",
            "connection": {"serial_port": tty, "baudrate": SERIAL_BAUD, "timeout": 1},
            "interval": "20ms",
            "points": [
                {"property": "t", "register": "holding", "address": 5, "type": "float32"},
                {
                    "property": "sp",
                    "register": "holding",
                    "address": 9,
                    "type": "int16",
                    "access": "rw",
                },
            ],
        }
    )
    sink = Collector()
    async with ModbusConnector("mb", [prof], sink, backoff=FAST) as conn:
        await until(lambda: len(sink.latest()) == 2)
        assert (await conn.write("rtu-1", "sp", 321)).success
    assert readings(sink)["t"] == (-2.5, Quality.GOOD)
    assert await s.get(FC_HR, 9, 1) == [321]


async def test_coalescing_shows_as_request_count(modbus_server: ModbusTestServer) -> None:
    s = modbus_server
    points = [
        {"property": f"r{a}", "register": "holding", "address": a, "type": "int16"}
        for a in (0, 1, 2, 5, 9, 200, 201)
    ] + [
        {"property": "c1", "register": "coil", "address": 1, "type": "bool"},
        {"property": "c90", "register": "coil", "address": 90, "type": "bool"},
    ]
    session = ModbusSession(profile(s.port, points, max_gap=10))
    # 0..9 merge (gaps <= 10), 200..201 is another block; coils 1 and 90 are within 16*10 bits.
    assert [(b.space, b.start, b.count) for b in session.blocks] == [
        ("coil", 1, 90),
        ("holding", 0, 10),
        ("holding", 200, 2),
    ]
    await session.connect()
    try:
        before = dict(s.requests)
        result = await session.poll(session.groups[0])
    finally:
        await session.close()
    assert s.requests[FC_HR] - before.get(FC_HR, 0) == 2
    assert s.requests[FC_COIL] - before.get(FC_COIL, 0) == 1
    assert sum(b.num_rows for b in result.batches) == len(points)


async def test_writes_use_fc_5_6_16_and_15(modbus_server: ModbusTestServer) -> None:
    s = modbus_server
    points = [
        {"property": "run", "register": "coil", "address": 4, "type": "bool", "access": "rw"},
        {"property": "sp", "register": "holding", "address": 30, "type": "int16", "access": "rw"},
        {
            "property": "speed",
            "register": "holding",
            "address": 40,
            "type": "float32",
            "access": "rw",
        },
        {"property": "ro", "register": "holding", "address": 50, "type": "int16"},
    ]
    sink = Collector()
    prof = profile(s.port, points, interval="10s")
    async with ModbusConnector("mb", [prof], sink, backoff=FAST) as conn:
        await until(lambda: conn.available("plc-1"))
        before = dict(s.requests)
        assert (await conn.write("plc-1", "run", True)).success
        assert (await conn.write("plc-1", "sp", -12)).success
        assert (await conn.write("plc-1", "speed", 1500.5)).success
        ro = await conn.write("plc-1", "ro", 1)
        assert ro.status is WriteStatus.INVALID and "read-only" in ro.message
        bad = await conn.write("plc-1", "sp", 70000)
        assert bad.status is WriteStatus.INVALID and "sp" in bad.message
        unknown = await conn.write("plc-1", "nope", 1)
        assert unknown.status is WriteStatus.INVALID
    delta = {fc: s.requests[fc] - before.get(fc, 0) for fc in (5, 6, 15, 16)}
    assert delta == {FC_WRITE_COIL: 1, FC_WRITE_REG: 1, FC_WRITE_COILS: 0, FC_WRITE_REGS: 1}
    assert (await s.get(FC_COIL, 4, 1))[0] is True
    assert await s.get(FC_HR, 30, 1) == words(">h", -12)
    assert await s.get(FC_HR, 40, 2) == words(">f", 1500.5)

    # Devices that only implement the "multiple" functions: FC 15 and FC 16 throughout.
    async with ModbusConnector("mb", [prof], sink, backoff=FAST, multiple_writes=True) as conn:
        await until(lambda: conn.available("plc-1"))
        before = dict(s.requests)
        assert (await conn.write("plc-1", "run", False)).success
        assert (await conn.write("plc-1", "sp", 7)).success
    delta = {fc: s.requests[fc] - before.get(fc, 0) for fc in (5, 6, 15, 16)}
    assert delta == {FC_WRITE_COIL: 0, FC_WRITE_REG: 0, FC_WRITE_COILS: 1, FC_WRITE_REGS: 1}
    assert (await s.get(FC_COIL, 4, 1))[0] is False
    assert await s.get(FC_HR, 30, 1) == [7]


async def test_illegal_address_is_a_device_error_and_bad_block(
    modbus_server: ModbusTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    s = modbus_server
    await s.set(FC_HR, 0, [11])
    points = [
        {"property": "ok", "register": "holding", "address": 0, "type": "int16"},
        # beyond the server's 1000 registers: the device answers "illegal data address"
        {
            "property": "gone",
            "register": "holding",
            "address": 1500,
            "type": "int16",
            "access": "rw",
        },
        {"property": "gone2", "register": "holding", "address": 1501, "type": "int16"},
    ]
    sink = Collector()
    caplog.set_level(logging.INFO, logger="yugong.edge")
    async with ModbusConnector("mb", [profile(s.port, points)], sink, backoff=FAST) as conn:
        await until(lambda: conn.stats().devices["plc-1"].polls >= 3)
        result = await conn.write("plc-1", "gone", 5)
        assert conn.available("plc-1")  # the device answered: it is up, one block is not
        st = conn.stats().devices["plc-1"]
    assert result.status is WriteStatus.DEVICE_ERROR and result.code == 2
    assert "ILLEGAL_ADDRESS" in result.message
    rows = sink.table().to_pylist()
    by_point: dict[str, set[tuple[float | None, int]]] = {}
    for r in rows:
        by_point.setdefault(r["point"], set()).add((r["value"], r["quality"]))
    assert by_point["ok"] == {(11.0, Quality.GOOD)}
    assert by_point["gone"] == by_point["gone2"] == {(None, Quality.BAD)}
    assert st.errors >= 3 and st.bad_points >= 6
    block_logs = [r for r in caplog.records if "ILLEGAL_ADDRESS" in r.getMessage()]
    assert len(block_logs) == 1  # once, not every poll


async def test_server_down_then_back(
    modbus_server: ModbusTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    s = modbus_server
    await s.set(FC_HR, 0, [1, 2])
    points = [
        {"property": "a", "register": "holding", "address": 0, "type": "int16"},
        {"property": "b", "register": "holding", "address": 1, "type": "int16"},
    ]
    sink = Collector()
    caplog.set_level(logging.INFO, logger="yugong.edge")
    async with ModbusConnector("mb", [profile(s.port, points)], sink, backoff=FAST) as conn:
        await until(lambda: conn.available("plc-1"))
        await s.stop()
        await until(lambda: not conn.available("plc-1"))
        n = len(sink.batches)
        await until(lambda: conn.stats().devices["plc-1"].bad_points >= 6)  # several attempts
        bad = sink.table().slice(sum(b.num_rows for b in sink.batches[:n]) - 2).to_pylist()
        await s.start()
        await s.set(FC_HR, 0, [1, 2])
        await until(lambda: conn.available("plc-1"))
        good_after = len(sink.batches)
        await until(lambda: len(sink.batches) > good_after)
    assert all(r["quality"] == Quality.BAD and r["value"] is None for r in bad[2:])
    assert {r["point"] for r in bad[2:]} == {"a", "b"}
    last = sink.batches[-1].to_pylist()
    assert [(r["value"], r["quality"]) for r in last] == [(1.0, 0), (2.0, 0)]
    ours = [r.getMessage() for r in caplog.records if r.name.startswith("yugong.edge")]
    assert len([m for m in ours if "unavailable" in m]) == 1
    # first connect plus recovery: exactly one line each
    assert len([m for m in ours if m.endswith("is available")]) == 2


async def test_timeout_marks_device_down_and_write_times_out(
    modbus_server: ModbusTestServer,
) -> None:
    s = modbus_server
    points = [
        {"property": "a", "register": "holding", "address": 0, "type": "int16", "access": "rw"}
    ]
    prof = profile(s.port, points, timeout=0.2, interval="10s")
    sink = Collector()
    async with ModbusConnector("mb", [prof], sink, backoff=FAST) as conn:
        await until(lambda: conn.available("plc-1"))
        s.delay_s = 0.6
        result = await conn.write("plc-1", "a", 3)
        assert result.status is WriteStatus.TIMEOUT
        assert conn.stats().devices["plc-1"].timeouts == 1

    session = ModbusSession(prof)
    await session.connect()
    try:
        with pytest.raises(PollTimeout):
            await session.poll(session.groups[0])
    finally:
        await session.close()

    s.delay_s = 0.6
    async with ModbusConnector("mb", [profile(s.port, points, timeout=0.2)], sink) as conn:
        await until(lambda: conn.stats().devices["plc-1"].timeouts >= 1)
        assert not conn.available("plc-1")
        assert sink.batches[-1].column("quality").to_pylist() == [Quality.BAD]


async def test_slow_device_does_not_delay_others(
    modbus_server: ModbusTestServer, modbus_rtu_server: ModbusTestServer
) -> None:
    slow, fast = modbus_server, modbus_rtu_server
    slow.delay_s = 0.3
    pt = [{"property": "a", "register": "holding", "address": 0, "type": "int16"}]
    profiles = [
        profile(slow.port, pt, name="slow", interval="10ms"),
        profile(fast.port, pt, name="fast", protocol="modbus_rtu_over_tcp", interval="10ms"),
    ]
    async with ModbusConnector("mb", profiles, Collector(), backoff=FAST) as conn:
        await until(lambda: conn.stats().devices["slow"].polls >= 2)
        st = conn.stats()
    # While the slow device answered twice, the fast one kept its own pace.
    assert st.devices["fast"].polls >= 10
    assert st.devices["slow"].timeouts == 0
