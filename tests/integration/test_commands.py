"""Commands end to end: queued, sent, then acknowledged, failed or timed out; listed and in
the audit log.

- Property writes through a real broker (Mosquitto) to the Yugong edge gateway, which writes
  a real Modbus server's register (Sparkplug DCMD), through the asynchronous API.
- Thing-model services to a device connected to the embedded broker, as ThingsBoard RPC,
  answered (or not) by a real paho client.
- Device online/offline from Sparkplug death and from last-seen time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tests.edge.conftest import FC_HR, ModbusTestServer
from tests.edge.conftest import modbus_server as modbus_server  # fixture
from tests.integration.conftest import Api, Call, make_settings, provisioned, tenant_call
from tests.integration.test_downlink import SETPOINT, modbus_downlink
from yugong.edge.gateway import EdgeGateway
from yugong.infra.db import Database
from yugong.platform.command_models import Command
from yugong.server import BackgroundServer

FINAL = ("acknowledged", "failed", "timed_out")


async def final(call: Call, command: int, timeout: float = 15.0) -> dict[str, Any]:
    """The command's record once it reached a final status."""
    deadline = time.monotonic() + timeout
    while True:
        record = await call("GET", f"/api/v1/commands/{command}", 200)
        if record["status"] in FINAL:
            return dict(record)
        assert time.monotonic() < deadline, f"command {command} still {record['status']}"
        await asyncio.sleep(0.05)


async def test_modbus_commands_queued_sent_and_answered(
    tmp_path: Path, mosquitto: tuple[str, int], modbus_server: ModbusTestServer
) -> None:
    settings, gateway = await modbus_downlink(tmp_path, mosquitto, modbus_server)
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        _, call = await tenant_call(api, "Downlink Plant")

        async def command(device: int, expect: int, **body: Any) -> Any:
            return await call("POST", f"/api/v1/devices/{device}/commands", expect, json=body)

        async with EdgeGateway(gateway) as gw:
            device = await provisioned(call, "plc-dl", "level", 7)

            # Queued at once (202), then sent, then acknowledged with the register changed.
            queued = await command(device, 202, kind="write", name="setpoint", value=321)
            assert queued["status"] == "queued" and queued["params"] == {"value": 321}
            assert queued["sent_at"] is None and queued["created_by"].endswith("-admin")
            done = await final(call, queued["id"])
            assert done["status"] == "acknowledged", done
            assert done["result"] == {"value": 321}
            assert done["created_at"] <= done["sent_at"] <= done["done_at"]
            assert await modbus_server.get(FC_HR, SETPOINT, 1) == [321]

            # Several to one device: one at a time, in order; the last one wins.
            ids = [
                (await command(device, 202, kind="write", name="setpoint", value=v))["id"]
                for v in (11, 12, 13)
            ]
            records = [await final(call, i) for i in ids]
            assert [r["status"] for r in records] == ["acknowledged"] * 3
            for earlier, later in itertools.pairwise(records):
                assert earlier["done_at"] <= later["sent_at"]
            assert await modbus_server.get(FC_HR, SETPOINT, 1) == [13]

            # The device refuses: failed, with the device's reason.
            refused = await command(device, 200, kind="write", name="refused", value=1, wait=True)
            assert refused["status"] == "failed"
            assert refused["result"]["write_status"] == "device_error"
            assert "exception 2" in refused["result"]["error"]

            # A device slower than the command's timeout: timed_out.
            modbus_server.delay_s = 1.5
            late = await command(
                device, 200, kind="write", name="setpoint", value=99, timeout_s=0.3, wait=True
            )
            assert late["status"] == "timed_out" and "no answer" in late["result"]["error"]
            modbus_server.delay_s = 0.0
            # The edge still answers that write late (Sparkplug answers carry no request id):
            # let it pass before the next write of the same metric.
            await asyncio.sleep(1.5)

            # The thing model is checked before anything is recorded, naming the field.
            bad = await command(device, 422, kind="write", name="setpoint", value="high")
            assert bad["errors"][0]["loc"] == "value"
            bad = await command(device, 422, kind="write", name="level", value=1)
            assert bad["errors"][0]["loc"] == "property"
            bad = await command(device, 422, kind="reboot", name="setpoint", value=1)
            assert "kind" in bad["errors"][0]["loc"]

            # The synchronous write is recorded too.
            ok = await call(
                "POST", f"/api/v1/devices/{device}/properties/setpoint", 200, json={"value": 55}
            )
            assert ok["value"] == 55

            # Listed newest first, filtered by status.
            page = await call("GET", f"/api/v1/devices/{device}/commands", 200)
            assert page["total"] == 7
            assert [i["params"]["value"] for i in page["items"]] == [55, 99, 1, 13, 12, 11, 321]
            failed = await call(
                "GET", f"/api/v1/devices/{device}/commands", 200, params={"status": "failed"}
            )
            assert [i["name"] for i in failed["items"]] == ["refused"]
            timed = await call(
                "GET", f"/api/v1/devices/{device}/commands", 200, params={"status": "timed_out"}
            )
            assert [i["id"] for i in timed["items"]] == [late["id"]]
            await call("GET", f"/api/v1/devices/{device}/commands", 422, params={"status": "x"})
            one = await call(
                "GET", f"/api/v1/devices/{device}/commands", 200, params={"limit": 1, "offset": 1}
            )
            assert [i["params"]["value"] for i in one["items"]] == [99] and one["total"] == 7

            # Every command is in the audit log, naming the device and the value.
            audit = await call("GET", "/api/v1/audit", 200, params={"action": "commands"})
            writes = [e for e in audit["items"] if e["action"] == "commands.write"]
            assert len(writes) == 7
            assert {e["detail"]["command"] for e in writes} >= {queued["id"], late["id"]}
            assert all(e["target_id"] == str(device) for e in writes)
            # Online from its data (last-seen times are written every few seconds).
            deadline = time.monotonic() + 10
            while not (await call("GET", f"/api/v1/devices/{device}", 200))["online"]:
                assert time.monotonic() < deadline, "the device did not come online"
                await asyncio.sleep(0.2)

            # Queued behind a slow one when the edge node goes away: both fail, saying why.
            modbus_server.delay_s = 2.0
            slow = await command(device, 202, kind="write", name="setpoint", value=1, timeout_s=5)
            behind = await command(device, 202, kind="write", name="setpoint", value=2)
            await asyncio.sleep(0.3)  # the first is out, waiting for the device
            assert gw.uplink is not None
            await gw.uplink.stop()
            slow_done, behind_done = await final(call, slow["id"]), await final(call, behind["id"])
            modbus_server.delay_s = 0.0
            assert slow_done["status"] == "failed", slow_done
            assert "went offline" in slow_done["result"]["error"]
            assert behind_done["status"] == "failed" and behind_done["sent_at"] is None
            assert "edge node 'gw-dl' is offline" in behind_done["result"]["error"]

        # Sparkplug death: the device shows offline; new commands are refused (409).
        deadline = time.monotonic() + 10
        while (await call("GET", f"/api/v1/devices/{device}", 200))["online"]:
            assert time.monotonic() < deadline, "the device did not go offline on its death"
            await asyncio.sleep(0.1)
        gone = await command(device, 409, kind="write", name="setpoint", value=3)
        assert "offline" in gone["detail"]
        assert (await call("GET", f"/api/v1/devices/{device}/commands", 200))["total"] == 9

        # Another tenant sees none of it.
        other = await asyncio.to_thread(api.setup_tenant, api.admin(), "Other Plant")
        r = await asyncio.to_thread(
            c.get, f"/api/v1/commands/{queued['id']}", headers=other.headers
        )
        assert r.status_code == 404


PRESS_TSL: dict[str, Any] = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "press"},
    "properties": [
        {
            "identifier": "temperature",
            "name": "温度",
            "accessMode": "r",
            "dataType": {"type": "float", "specs": {"min": "-40", "max": "125"}},
        }
    ],
    "events": [],
    "services": [
        {
            "identifier": "setSpeed",
            "name": "设定转速",
            "callType": "sync",
            "inputData": [
                {
                    "identifier": "speed",
                    "name": "转速",
                    "dataType": {"type": "int", "specs": {"min": "0", "max": "3000"}},
                },
                {
                    "identifier": "mode",
                    "name": "模式",
                    "dataType": {"type": "enum", "specs": {"0": "auto", "1": "manual"}},
                },
            ],
            "outputData": [
                {
                    "identifier": "applied",
                    "name": "实际",
                    "dataType": {"type": "int", "specs": {"min": "0", "max": "3000"}},
                }
            ],
        },
        {
            "identifier": "reboot",
            "name": "重启",
            "callType": "async",
            "inputData": [],
            "outputData": [],
        },
    ],
}


class RpcDevice:
    """A device on the embedded broker answering server-side RPC the ThingsBoard way:
    ``setSpeed`` answers ``{"applied": speed}`` (speed 13: an error; speed 2999: an answer
    that does not fit outputData); ``reboot`` is never answered."""

    def __init__(self, port: int, token: str, name: str) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
        self.client.username_pw_set(token)
        self.client.on_connect = lambda c, *_: c.subscribe("v1/devices/me/rpc/request/+", 1)
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()
        assert self.subscribed.wait(10), f"{name} did not subscribe"

    def _on_message(self, client: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        request_id = msg.topic.rsplit("/", 1)[1]
        body = json.loads(msg.payload)
        self.requests.append((msg.topic, body))
        if body["method"] != "setSpeed":
            return
        speed = body["params"]["speed"]
        answer: Any = {"applied": speed}
        if speed == 13:
            answer = {"error": "speed 13 is locked out"}
        elif speed == 2999:
            answer = {"applied": "fast"}
        client.publish(f"v1/devices/me/rpc/response/{request_id}", json.dumps(answer), qos=1)

    def telemetry(self, values: dict[str, Any]) -> None:
        self.client.publish("v1/devices/me/telemetry", json.dumps(values), qos=1).wait_for_publish(
            5
        )

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def statuses(items: Iterable[dict[str, Any]]) -> list[str]:
    return [i["status"] for i in items]


async def test_services_over_mqtt_rpc_and_online_state(tmp_path: Path) -> None:
    # Longer than the platform's last-seen flush (5 s), so "online" is observable.
    settings = make_settings(tmp_path, device_offline_after_s=6.0)
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        _, call = await tenant_call(api, "Press Shop")

        product = await call(
            "POST", "/api/v1/products/import", 201, params={"name": "Press"}, json=PRESS_TSL
        )
        made = [
            await call(
                "POST", "/api/v1/devices", 201, json={"name": n, "product_id": product["id"]}
            )
            for n in ("press-1", "press-2")
        ]
        press, bystander_id = made[0]["id"], made[1]["id"]

        async def service(expect: int, **body: Any) -> Any:
            body = {"kind": "service", "name": "setSpeed", **body}
            return await call("POST", f"/api/v1/devices/{press}/commands", expect, json=body)

        # Not connected yet: nothing to send to (409), nothing recorded.
        absent = await service(409, params={"speed": 100, "mode": 0})
        assert "not connected" in absent["detail"]

        port = srv.platform.mqtt_address[1]
        device = await asyncio.to_thread(RpcDevice, port, made[0]["token"], "press-1")
        bystander = await asyncio.to_thread(RpcDevice, port, made[1]["token"], "press-2")
        try:
            # Answered: acknowledged, the output kept as the result.
            done = await service(200, params={"speed": 1500, "mode": 1}, wait=True)
            assert done["status"] == "acknowledged", done
            assert done["result"] == {"output": {"applied": 1500}}
            assert done["params"] == {"speed": 1500, "mode": 1}
            topic, body = device.requests[-1]
            assert topic == f"v1/devices/me/rpc/request/{done['id']}"
            assert body == {"method": "setSpeed", "params": {"speed": 1500, "mode": 1}}

            # Queued (202), then answered.
            queued = await service(202, params={"speed": 10, "mode": 0})
            assert queued["status"] == "queued"
            assert (await final(call, queued["id"]))["result"]["output"] == {"applied": 10}

            # The device refuses, or answers outside outputData: failed with the reason.
            refused = await service(200, params={"speed": 13, "mode": 0}, wait=True)
            assert refused["status"] == "failed"
            assert refused["result"]["error"] == "speed 13 is locked out"
            odd = await service(200, params={"speed": 2999, "mode": 0}, wait=True)
            assert odd["status"] == "failed"
            assert odd["result"]["errors"][0]["loc"] == "output.applied"

            # Not answered in time: timed_out.
            mute = await call(
                "POST",
                f"/api/v1/devices/{press}/commands",
                200,
                json={"kind": "service", "name": "reboot", "timeout_s": 0.5, "wait": True},
            )
            assert mute["status"] == "timed_out" and "no answer" in mute["result"]["error"]
            assert device.requests[-1][1] == {"method": "reboot", "params": {}}

            # Params are checked against inputData, naming the parameter.
            bad = await service(422, params={"speed": 3001, "mode": 0})
            assert bad["errors"][0]["loc"] == "params.speed" and "3000" in bad["errors"][0]["msg"]
            bad = await service(422, params={"speed": 1.5, "mode": 0})
            assert bad["errors"][0]["loc"] == "params.speed"
            bad = await service(422, params={"speed": 100})
            assert bad["errors"] == [{"loc": "params.mode", "msg": "is required"}]
            bad = await service(422, params={"speed": 100, "mode": 7})
            assert bad["errors"][0]["loc"] == "params.mode"
            bad = await service(422, params={"speed": 100, "mode": 0, "force": True})
            assert bad["errors"][0]["loc"] == "params.force"
            bad = await service(422, params={"speed": "fast", "mode": 0})
            assert bad["errors"][0]["loc"] == "params.speed"
            unknown = await call(
                "POST",
                f"/api/v1/devices/{press}/commands",
                404,
                json={"kind": "service", "name": "explode"},
            )
            assert unknown["errors"][0]["loc"] == "name"

            # Only this device got requests; the log and the audit log have every call.
            assert bystander.requests == []
            page = await call("GET", f"/api/v1/devices/{press}/commands", 200)
            assert statuses(page["items"]) == [
                "timed_out",
                "failed",
                "failed",
                "acknowledged",
                "acknowledged",
            ]
            assert (await call("GET", f"/api/v1/devices/{bystander_id}/commands", 200))[
                "total"
            ] == 0
            audit = await call("GET", "/api/v1/audit", 200, params={"action": "commands"})
            calls = [e for e in audit["items"] if e["action"] == "commands.service"]
            assert len(calls) == 5

            # Online on data, offline after device_offline_after_s of silence.
            deadline = time.monotonic() + 15
            while not (await call("GET", f"/api/v1/devices/{press}", 200))["online"]:
                assert time.monotonic() < deadline, "the device did not come online on data"
                await asyncio.to_thread(device.telemetry, {"temperature": 21.5})
                await asyncio.sleep(0.5)
            silent = time.monotonic()
            while (await call("GET", f"/api/v1/devices/{press}", 200))["online"]:
                assert time.monotonic() < silent + 20, "the device did not go offline when silent"
                await asyncio.sleep(0.2)
            assert time.monotonic() - silent > 2, "offline too soon after its last data"
        finally:
            await asyncio.to_thread(bystander.close)
            await asyncio.to_thread(device.close)

        # Gone from the broker: service calls are refused, saying why.
        deadline = time.monotonic() + 10
        while True:
            gone = await service(
                (200, 409), params={"speed": 5, "mode": 0}, timeout_s=0.5, wait=True
            )
            if "detail" in gone:
                assert "not connected" in gone["detail"]
                break
            assert time.monotonic() < deadline, "the disconnected device still takes calls"
            await asyncio.sleep(0.1)

        # Back again, a call in flight when the platform stops: failed, saying so.
        device = await asyncio.to_thread(RpcDevice, port, made[0]["token"], "press-1b")
        try:
            body = {"kind": "service", "name": "reboot", "timeout_s": 60}
            pending = await call("POST", f"/api/v1/devices/{press}/commands", 202, json=body)
            deadline = time.monotonic() + 10
            while (await call("GET", f"/api/v1/commands/{pending['id']}", 200))["status"] != (
                "sent"
            ):
                assert time.monotonic() < deadline, "the call was not sent"
                await asyncio.sleep(0.05)
        finally:
            await asyncio.to_thread(device.close)
    db = Database(settings.registry_url)
    try:
        with db.session() as s:
            row = s.get(Command, pending["id"])
            assert row is not None and row.status == "failed" and row.done_at is not None
            assert row.result == {"error": "the platform stopped before the command finished"}
    finally:
        db.dispose()
