"""The OPC UA connector against a real asyncua server on a free 127.0.0.1 port."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.conftest import until
from tests.edge.conftest import Collector
from tests.edge.opcua_server import (
    CertPair,
    OpcUaTestServer,
    node_id,
    opcua_server,
    secure_opcua_server,
)
from yugong.core.quality import Quality
from yugong.edge.connectors.base import Backoff, WriteStatus
from yugong.edge.connectors.opcua import (
    OpcUaConnector,
    browse_endpoint,
    open_client,
    profile_points,
)
from yugong.edge.profiles import DeviceProfile, OpcUaConnection, parse_profile

__all__ = ["opcua_server", "secure_opcua_server"]  # fixtures used by name

FAST = lambda: Backoff(initial=0.05, maximum=0.2)  # noqa: E731


def profile(
    endpoint: str,
    points: list[dict[str, Any]],
    *,
    interval: str = "50ms",
    **conn: Any,
) -> DeviceProfile:
    return parse_profile(
        {
            "name": "cnc-1",
            "protocol": "opcua",
            "connection": {"endpoint": endpoint, "timeout": 1.0, **conn},
            "interval": interval,
            "points": points,
        }
    )


POINTS: list[dict[str, Any]] = [
    {"property": "speed", "node": node_id("Spindle.Speed"), "access": "rw"},
    {"property": "running", "node": node_id("Running")},
    {"property": "program", "node": node_id("Program"), "type": "string", "length": 64},
    {"property": "parts", "node": node_id("PartCount"), "access": "rw"},
    {"property": "temp_f", "node": node_id("Temperature"), "scale": 1.8, "offset": 32},
    {"property": "serial", "node": node_id("Serial"), "access": "rw"},
]


async def test_polling_reads_numbers_bools_strings(opcua_server: OpcUaTestServer) -> None:
    sink = Collector()
    prof = profile(opcua_server.endpoint, POINTS)
    async with OpcUaConnector("opcua", [prof], sink, backoff=FAST) as conn:
        await until(lambda: len(sink.batches) >= 2)
        latest = sink.latest()
        assert latest["speed"]["value"] == 1200.0
        assert latest["running"]["value"] == 1.0
        assert latest["program"]["text"] == "O1000" and latest["program"]["value"] is None
        assert latest["parts"]["value"] == 7.0
        assert latest["temp_f"]["value"] == pytest.approx(21.5 * 1.8 + 32)
        assert latest["serial"]["text"] == "SN-42"
        assert {r["quality"] for r in sink.rows()} == {Quality.GOOD}
        # One read request per poll: every point of the group in one batch.
        assert all(b.num_rows == len(POINTS) for b in sink.batches)
        await opcua_server.set("Spindle.Speed", 2400.0)
        await until(lambda: sink.latest()["speed"]["value"] == 2400.0)
        st = conn.stats().devices["cnc-1"]
        assert st.available and st.points_read >= 2 * len(POINTS) and st.bad_points == 0
    # An unknown node is BAD without taking the device down.
    sink = Collector()
    points = [*POINTS[:2], {"property": "ghost", "node": "ns=2;s=Cnc.Nope"}]
    async with OpcUaConnector("opcua", [profile(opcua_server.endpoint, points)], sink) as conn:
        await until(lambda: len(sink.batches) >= 1)
        latest = sink.latest()
        assert latest["ghost"]["quality"] == Quality.BAD and latest["ghost"]["value"] is None
        assert latest["speed"]["quality"] == Quality.GOOD
        assert conn.available("cnc-1")


async def test_subscription_delivers_changes_with_deadband(
    opcua_server: OpcUaTestServer,
) -> None:
    sink = Collector()
    points: list[dict[str, Any]] = [
        {"property": "load", "node": node_id("Spindle.Load"), "deadband": {"absolute": 5.0}},
        {"property": "speed", "node": node_id("Spindle.Speed")},
        {"property": "running", "node": node_id("Running")},
    ]
    prof = profile(opcua_server.endpoint, points, subscribe=True)
    async with OpcUaConnector("opcua", [prof], sink, backoff=FAST) as conn:
        # Initial values of every monitored item arrive first.
        await until(lambda: {"load", "speed", "running"} <= set(sink.latest()))
        loads = [12.0, 13.0, 20.0, 21.0, 30.0]  # from 10: only 20 (>5 from 10) and 30 pass
        for v in loads:
            await opcua_server.set("Spindle.Load", v)
            await opcua_server.set("Spindle.Speed", 1000.0 + v)
            await asyncio.sleep(0.08)
        await opcua_server.set("Running", False)
        await until(lambda: sink.latest()["running"]["value"] == 0.0)
        await until(lambda: sink.latest()["speed"]["value"] == 1030.0)
        seen_load = [r["value"] for r in sink.rows() if r["point"] == "load"]
        assert seen_load == [10.0, 20.0, 30.0]
        seen_speed = [r["value"] for r in sink.rows() if r["point"] == "speed"]
        assert seen_speed == [1200.0, *[1000.0 + v for v in loads]]
        assert conn.available("cnc-1")
        # Changes arrive batched: fewer batches than changes.
        assert len(sink.batches) < len(sink.rows())


async def browse_checks(opcua_server: OpcUaTestServer) -> None:
    conn = OpcUaConnection(endpoint=opcua_server.endpoint)
    nodes = {n.node_id: n for n in await browse_endpoint(conn)}
    speed = nodes[node_id("Spindle.Speed")]
    assert speed.browse_name == "2:Spindle.Speed"
    assert speed.path == "2:Cnc/2:Spindle.Speed"
    assert speed.data_type == "Double" and speed.access_level == "rw"
    serial = nodes[node_id("Serial")]
    assert serial.data_type == "String" and serial.access_level == "r"
    assert nodes[node_id("Running")].data_type == "Boolean"
    assert nodes[node_id("PartCount")].data_type == "Int32"
    assert all(not n.node_id.startswith("i=") for n in nodes.values())  # ns 0 skipped
    # Discovered nodes make a valid profile.
    points = profile_points(nodes.values())
    prof = profile(opcua_server.endpoint, points)
    assert prof.point("Spindle_Speed").access == "rw"
    assert prof.point("Serial").type == "string"


async def test_browse_then_write_ok_refused_and_invalid(opcua_server: OpcUaTestServer) -> None:
    await browse_checks(opcua_server)
    sink = Collector()
    prof = profile(opcua_server.endpoint, POINTS, interval="1s")
    async with OpcUaConnector("opcua", [prof], sink, backoff=FAST) as conn:
        await until(lambda: conn.available("cnc-1"))
        assert (await conn.write("cnc-1", "speed", 1500.5)).success
        assert await opcua_server.get("Spindle.Speed") == 1500.5
        assert (await conn.write("cnc-1", "parts", 42)).success
        assert await opcua_server.get("PartCount") == 42
        refused = await conn.write("cnc-1", "serial", "SN-1")
        assert refused.status is WriteStatus.DEVICE_ERROR
        assert "BadNotWritable" in refused.message and refused.code is not None
        assert await opcua_server.get("Serial") == "SN-42"
        ro = await conn.write("cnc-1", "running", False)
        assert ro.status is WriteStatus.INVALID and "read-only" in ro.message
        frac = await conn.write("cnc-1", "parts", 1.5)
        assert frac.status is WriteStatus.INVALID and "whole number" in frac.message
        assert (await conn.write("cnc-1", "nope", 1)).status is WriteStatus.INVALID


async def test_server_down_bad_samples_logged_once_then_recovery(
    opcua_server: OpcUaTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="yugong.edge.connectors")
    sink = Collector()
    prof = profile(opcua_server.endpoint, POINTS[:3])
    async with OpcUaConnector("opcua", [prof], sink, backoff=FAST) as conn:
        await until(lambda: conn.available("cnc-1"))
        await opcua_server.stop()
        await until(lambda: not conn.available("cnc-1"))
        await until(
            lambda: sum(1 for r in sink.rows() if r["quality"] == Quality.BAD) >= 6, timeout=8
        )
        bad = [r for r in sink.rows() if r["quality"] == Quality.BAD]
        assert {r["point"] for r in bad} == {"speed", "running", "program"}
        assert all(r["value"] is None for r in bad)
        down = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(down) == 1 and "cnc-1" in down[0].getMessage()
        await opcua_server.start()
        await until(lambda: conn.available("cnc-1"), timeout=8)
        n = len(sink.batches)
        await until(lambda: len(sink.batches) > n + 1)
        assert sink.batches[-1].column("quality").to_pylist() == [Quality.GOOD] * 3
        up = [r for r in caplog.records if r.getMessage().endswith("is available")]
        assert len(up) == 2  # first connect and the recovery
        assert len([r for r in caplog.records if "unavailable" in r.getMessage()]) == 1


async def test_subscription_server_down_goes_bad_and_resubscribes(
    opcua_server: OpcUaTestServer,
) -> None:
    sink = Collector()
    prof = profile(opcua_server.endpoint, POINTS[:2], subscribe=True)
    async with OpcUaConnector("opcua", [prof], sink, backoff=FAST) as conn:
        await until(lambda: set(sink.latest()) == {"speed", "running"})
        await opcua_server.stop()
        await until(lambda: not conn.available("cnc-1"), timeout=8)
        assert {r["quality"] for r in sink.latest().values()} == {Quality.BAD}
        await opcua_server.start()
        await until(lambda: conn.available("cnc-1"), timeout=8)
        await opcua_server.set("Spindle.Speed", 99.0)
        await until(lambda: sink.latest()["speed"]["value"] == 99.0)


async def test_basic256sha256_with_user_password(
    secure_opcua_server: tuple[OpcUaTestServer, CertPair],
) -> None:
    server, cert = secure_opcua_server
    secure = {
        "security_policy": "Basic256Sha256",
        "security_mode": "SignAndEncrypt",
        "certificate": str(cert.cert),
        "private_key": str(cert.key),
        "username": "operator",
    }
    sink = Collector()
    prof = profile(server.endpoint, POINTS[:2], password="s3cret", **secure)
    async with OpcUaConnector("opcua", [prof], sink, backoff=FAST) as conn:
        await until(lambda: len(sink.batches) >= 1)
        assert sink.latest()["speed"]["value"] == 1200.0
        assert (await conn.write("cnc-1", "speed", 10.0)).success
    # A wrong password is refused, and says so.
    wrong = profile(server.endpoint, POINTS[:2], password="nope", **secure).connection
    assert isinstance(wrong, OpcUaConnection)
    with pytest.raises(Exception, match=r"BadUserAccessDenied|BadIdentityTokenRejected"):
        await open_client(wrong)
    # Anonymous without security is not offered by this server.
    with pytest.raises(Exception):  # noqa: B017 - any refusal; asyncua's type varies
        await open_client(OpcUaConnection(endpoint=server.endpoint, timeout=1.0))


def test_bad_node_id_names_the_point() -> None:
    from yugong.edge.connectors.opcua import OpcUaSession

    prof = profile("opc.tcp://127.0.0.1:1/", [{"property": "x", "node": "not a node id"}])
    with pytest.raises(ValueError, match="point x: bad node id"):
        OpcUaSession(prof)
