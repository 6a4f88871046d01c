"""The downlink end to end: a write through the platform API goes as a Sparkplug DCMD
through a real broker (Mosquitto) to the Yugong edge gateway, which writes a real Modbus
server's register or a real OPC UA server's node and answers; the API reports the device's
answer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx

from tests.edge.conftest import FC_HR, ModbusTestServer
from tests.edge.conftest import modbus_server as modbus_server  # fixture
from tests.edge.opcua_server import OpcUaTestServer, node_id
from tests.edge.opcua_server import opcua_server as opcua_server  # fixture
from tests.integration.conftest import Api, make_settings, provisioned, tenant_call
from yugong.edge.config import parse_config
from yugong.edge.gateway import EdgeGateway
from yugong.platform.commands import install_commands
from yugong.server import BackgroundServer

SETPOINT, REFUSED = 10, 1500  # the test server's tables end at 999: 1500 is refused


def modbus_connector(port: int) -> dict[str, Any]:
    return {
        "name": "plcs",
        "protocol": "modbus",
        "devices": [
            {
                "name": "plc-dl",
                "protocol": "modbus_tcp",
                "connection": {"host": "127.0.0.1", "port": port, "timeout": 1},
                "interval": "200ms",
                "points": [
                    {"property": "level", "register": "holding", "address": 0, "type": "uint16"},
                    {
                        "property": "setpoint",
                        "register": "holding",
                        "address": SETPOINT,
                        "type": "uint16",
                        "access": "rw",
                    },
                    {
                        "property": "refused",
                        "register": "holding",
                        "address": REFUSED,
                        "type": "uint16",
                        "access": "rw",
                    },
                ],
            }
        ],
    }


def gateway_config(
    tmp_path: Path, connector: dict[str, Any], broker: tuple[str, int], run: str
) -> Any:
    host, port = broker
    return parse_config(
        {
            "gateway": "gw-dl",
            "connectors": [connector],
            "buffer": {"path": str(tmp_path / "edge-buffer.sqlite"), "max_bytes": "64MiB"},
            "uplink": {
                "kind": "sparkplug",
                "broker": f"mqtt://{host}:{port}",
                "group_id": f"grp-{run}",
                "edge_node_id": "gw-dl",
                "host_id": f"host-{run}",
            },
            "health": {"interval": 0.5},
        }
    )


def platform_settings(tmp_path: Path, broker: tuple[str, int], run: str) -> Any:
    host, port = broker
    return make_settings(
        tmp_path / "platform",
        mqtt_url=f"mqtt://{host}:{port}",
        mqtt_topic_prefix=f"yugong-test/{run}/devices",
        sparkplug_groups={f"grp-{run}": "downlink-plant"},
        sparkplug_host_id=f"host-{run}",
    )


async def modbus_downlink(
    tmp_path: Path, broker: tuple[str, int], modbus_server: ModbusTestServer
) -> tuple[Any, Any]:
    """The platform's settings and the gateway's configuration for a fresh run against
    ``broker``, the gateway reading ``modbus_server`` (whose level register now holds 7)."""
    run = f"t{time.time_ns()}"
    await modbus_server.set(FC_HR, 0, [7])
    gateway = gateway_config(tmp_path, modbus_connector(modbus_server.port), broker, run)
    return platform_settings(tmp_path, broker, run), gateway


async def test_write_reaches_the_modbus_register_and_errors_come_back(
    tmp_path: Path, mosquitto: tuple[str, int], modbus_server: ModbusTestServer
) -> None:
    settings, gateway = await modbus_downlink(tmp_path, mosquitto, modbus_server)
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        install_commands(srv.app, srv.platform)
        world, call = await tenant_call(Api(c), "Downlink Plant")

        async def write(device: int, prop: str, expect: int | tuple[int, ...], **body: Any) -> Any:
            path = f"/api/v1/devices/{device}/properties/{prop}"
            return await call("POST", path, expect, json=body)

        async with EdgeGateway(gateway) as gw:
            device = await provisioned(call, "plc-dl", "level", 7)

            # The write lands in the register and the API says so.
            ok = await write(device, "setpoint", 200, value=1234, timeout_s=5)
            assert ok["status"] == "ok" and ok["value"] == 1234
            assert await modbus_server.get(FC_HR, SETPOINT, 1) == [1234]

            # The device refuses: 502 naming the Modbus exception.
            problem = await write(device, "refused", 502, value=1)
            assert "exception 2" in problem["detail"] and "ILLEGAL" in problem["detail"]
            assert problem["write_status"] == "device_error"

            # The thing model is checked before anything is sent, naming the field.
            bad = await write(device, "level", 422, value=1)
            assert bad["errors"][0]["loc"] == "property"
            bad = await write(device, "setpoint", 422, value="high")
            assert bad["errors"][0]["loc"] == "value"
            bad = await write(device, "nope", 404, value=1)
            assert bad["errors"][0]["loc"] == "property"
            # A value its metric (UInt16 from the birth) cannot hold: refused, naming it.
            bad = await write(device, "setpoint", 422, value=70000)
            assert bad["errors"][0]["loc"] == "value"
            assert await modbus_server.get(FC_HR, SETPOINT, 1) == [1234]

            # A device slower than the caller's patience: 504, and the API returns.
            modbus_server.delay_s = 1.5
            late = await write(device, "setpoint", 504, value=99, timeout_s=0.3)
            assert "no answer" in late["detail"]
            modbus_server.delay_s = 0.0
            assert gw.uplink is not None
            await gw.uplink.stop()

        # The edge node goes offline (orderly: its NDEATH): writes get 409 naming it.
        # The uplink is stopped first, as a gateway shutting down should do.
        sparkplug = srv.platform.sparkplug
        deadline = time.monotonic() + 10
        while sparkplug.stats.deaths == 0:
            assert time.monotonic() < deadline, "the edge node's death did not arrive"
            await asyncio.sleep(0.05)
        problem = await write(device, "setpoint", 409, value=5, timeout_s=1)
        assert "edge node 'gw-dl' is offline" in problem["detail"]

        # A device connected straight to the platform has no downlink: 409 saying why,
        # after the thing model checks (its "mode" is an rw enum 0/1, "temperature" is r).
        plain = await write(world.device_id, "mode", 409, value=1)
        assert "no downlink" in plain["detail"]
        bad = await write(world.device_id, "mode", 422, value=5)
        assert bad["errors"][0]["loc"] == "value"
        bad = await write(world.device_id, "temperature", 422, value=20)
        assert bad["errors"][0]["loc"] == "property"


async def test_write_reaches_the_opcua_node_and_refusals_come_back(
    tmp_path: Path, mosquitto: tuple[str, int], opcua_server: OpcUaTestServer
) -> None:
    run = f"t{time.time_ns()}"
    settings = platform_settings(tmp_path, mosquitto, run)
    connector = {
        "name": "cncs",
        "protocol": "opcua",
        "devices": [
            {
                "name": "cnc-dl",
                "protocol": "opcua",
                "connection": {"endpoint": opcua_server.endpoint, "timeout": 2},
                "interval": "200ms",
                "points": [
                    {"property": "speed", "node": node_id("Spindle.Speed"), "access": "rw"},
                    {
                        "property": "program",
                        "node": node_id("Program"),
                        "type": "string",
                        "length": 32,
                        "access": "rw",
                    },
                    # Writable in the profile, read-only on the server: the server refuses.
                    {"property": "load", "node": node_id("Spindle.Load"), "access": "rw"},
                ],
            }
        ],
    }
    gateway = gateway_config(tmp_path, connector, mosquitto, run)
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        install_commands(srv.app, srv.platform)
        _, call = await tenant_call(Api(c), "Downlink Plant")

        async def write(device: int, prop: str, expect: int, **body: Any) -> Any:
            path = f"/api/v1/devices/{device}/properties/{prop}"
            return await call("POST", path, expect, json=body)

        async with EdgeGateway(gateway):
            device = await provisioned(call, "cnc-dl", "speed", 1200.0)

            ok = await write(device, "speed", 200, value=1875.5, timeout_s=5)
            assert ok["status"] == "ok" and ok["value"] == 1875.5
            assert await opcua_server.get("Spindle.Speed") == 1875.5
            ok = await write(device, "program", 200, value="O2024", timeout_s=5)
            assert await opcua_server.get("Program") == "O2024"

            problem = await write(device, "load", 502, value=99.0, timeout_s=5)
            assert problem["write_status"] == "device_error"
            assert "BadNotWritable" in problem["detail"]
            assert await opcua_server.get("Spindle.Load") == 10.0

            # The new value is what the platform then reads back from the device.
            await provisioned(call, "cnc-dl", "speed", 1875.5)
