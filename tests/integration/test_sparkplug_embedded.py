"""Sparkplug B through the embedded broker: the Yugong edge gateway, logged in with a gateway
device's token, is an edge node of the platform's in-process primary host — no external
broker. Identity is the token: the edge node id must be the gateway device's name."""

from __future__ import annotations

import asyncio
import queue
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt

from tests.integration.conftest import Api, make_settings
from yugong.edge.config import parse_config
from yugong.edge.gateway import EdgeGateway
from yugong.edge.sparkplug import BDSEQ, DataType, Metric, Payload, encode_payload
from yugong.server import BackgroundServer

GROUP = "plant"


def _client(port: int, token: str, name: str) -> tuple[mqtt.Client, queue.Queue[Any]]:
    """A connected paho client; its received messages and SUBACK codes go to the queue."""
    got: queue.Queue[Any] = queue.Queue()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name)
    c.username_pw_set(token)
    c.on_message = lambda _c, _u, msg: got.put((msg.topic, bytes(msg.payload), msg.retain))
    c.on_subscribe = lambda _c, _u, _mid, codes, _p: got.put(
        ("suback", [int(x.value) for x in codes])
    )
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c, got


def _next(got: queue.Queue[Any], kind: str | None = None, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        item = got.get(timeout=max(0.01, deadline - time.monotonic()))
        if kind is None or item[0] == kind:
            return item


def _nbirth() -> bytes:
    ms = int(time.time() * 1000)
    metrics = (Metric(BDSEQ, DataType.UInt64, 0), Metric("Temp", DataType.Double, 1.5))
    return encode_payload(Payload(metrics=metrics, timestamp=ms, seq=0))


def test_edge_gateway_through_the_embedded_broker(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "platform")
    port = settings.mqtt_port
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        world = api.setup_tenant(api.admin(), "Edge Works")
        gw = api.call(
            "POST",
            "/api/v1/devices",
            world.headers,
            201,
            json={"name": "gw-line-1", "product_id": world.product_id, "is_gateway": True},
        )
        broker = srv.platform._broker

        # The gateway may see the primary host's STATE (retained), nothing of other nodes.
        watcher, got = _client(port, gw["token"], "gw-watch")
        try:
            watcher.subscribe([("spBv1.0/STATE/+", 1), (f"spBv1.0/{GROUP}/NCMD/someone-else", 1)])
            assert _next(got, "suback")[1] == [1, 0x80]
            topic, payload, retained = _next(got)
            assert topic == f"spBv1.0/STATE/{settings.sparkplug_host_id}" and retained
            assert orjson.loads(payload)["online"] is True
        finally:
            watcher.loop_stop()
            watcher.disconnect()

        edge = parse_config(
            {
                "gateway": "gw-line-1",
                "connectors": [
                    {
                        "name": "sim",
                        "protocol": "simulator",
                        "simulated": [
                            {
                                "name": "kiln-1",
                                "interval": 0.1,
                                "signals": [
                                    {
                                        "point": "batches",
                                        "waveform": "counter",
                                        "low": 0,
                                        "high": 1e9,
                                    }
                                ],
                            }
                        ],
                    }
                ],
                "buffer": {"path": str(tmp_path / "edge.sqlite"), "max_bytes": "16MiB"},
                "uplink": {
                    "kind": "sparkplug",
                    "broker": f"mqtt://127.0.0.1:{port}",
                    "username": gw["token"],
                    "group_id": GROUP,
                    # waits for the host's STATE online: data flowing proves it arrived
                    "host_id": settings.sparkplug_host_id,
                },
                "health": {"interval": 0.5},
            }
        )

        def kiln() -> dict | None:
            page = api.call("GET", "/api/v1/devices", world.headers, params={"search": "kiln-1"})
            return page["items"][0] if page["items"] else None

        async def run_edge_until_data() -> None:
            async with EdgeGateway(edge):
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    device = await asyncio.to_thread(kiln)
                    if device is not None:
                        latest = await asyncio.to_thread(
                            api.call, "GET", f"/api/v1/devices/{device['id']}/latest", world.headers
                        )
                        values = {v["property"]: v["value"] for v in latest["values"]}
                        if (values.get("batches") or 0) >= 5:
                            return
                    await asyncio.sleep(0.2)
                raise AssertionError("the edge node's data did not reach the platform")

        asyncio.run(run_edge_until_data())
        device = kiln()
        assert device is not None and device["gateway_id"] == gw["id"]
        assert srv.platform.sparkplug.stats.births >= 2  # NBIRTH + DBIRTH
        # The orderly stop published NDEATH: the node and its device are offline.
        api.wait_for(
            lambda: not api.call("GET", f"/api/v1/devices/{gw['id']}", world.headers)["online"]
        )

        # The gateway's token with another edge node id: refused, nothing provisioned.
        impostor, _ = _client(port, gw["token"], "gw-impostor")
        try:
            impostor.publish(
                f"spBv1.0/{GROUP}/NBIRTH/other-node", _nbirth(), qos=1
            ).wait_for_publish(5)
            api.wait_for(lambda: broker.stats().refused_identity >= 1)
        finally:
            impostor.loop_stop()
            impostor.disconnect()

        # A device that is not a gateway may neither publish nor subscribe to Sparkplug.
        refused = broker.stats().refused_topics
        plain, got = _client(port, world.token, "plain-device")
        try:
            plain.subscribe("spBv1.0/STATE/+", qos=1)
            assert _next(got, "suback")[1] == [0x80]
            name = "edge-works-dev-1"
            plain.publish(f"spBv1.0/{GROUP}/NBIRTH/{name}", _nbirth(), qos=1).wait_for_publish(5)
            api.wait_for(lambda: broker.stats().refused_topics >= refused + 2)
        finally:
            plain.loop_stop()
            plain.disconnect()

        names = {d["name"] for d in api.call("GET", "/api/v1/devices", world.headers)["items"]}
        assert "other-node" not in names
        plain_dev = api.call("GET", f"/api/v1/devices/{world.device_id}", world.headers)
        assert plain_dev["is_gateway"] is False and plain_dev["gateway_id"] is None
        assert srv.platform.sparkplug.stats.rejected.get("not_gateway") is None


def _drop(c: mqtt.Client) -> None:
    """Lose the connection without DISCONNECT: the broker publishes the client's will."""
    sock = c.socket()
    c.loop_stop()
    assert sock is not None
    sock.close()


def test_wills_through_the_embedded_broker(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "platform")
    port = settings.mqtt_port
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        world = api.setup_tenant(api.admin(), "Will Works")
        gw = api.call(
            "POST",
            "/api/v1/devices",
            world.headers,
            201,
            json={"name": "gw-will", "product_id": world.product_id, "is_gateway": True},
        )
        host = srv.platform.sparkplug

        # A plain device's will forging the host's STATE is dropped at connect.
        forger = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="forger")
        forger.username_pw_set(world.token)
        state = f"spBv1.0/STATE/{settings.sparkplug_host_id}"
        forger.will_set(state, orjson.dumps({"online": False, "timestamp": 1}), 1, retain=True)
        forger.connect("127.0.0.1", port)
        forger.loop_start()
        time.sleep(0.3)  # connected
        _drop(forger)

        # The edge node's will (NDEATH) ends its session: the gateway goes offline.
        node = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gw-will-node")
        node.username_pw_set(gw["token"])
        death = encode_payload(Payload(metrics=(Metric(BDSEQ, DataType.UInt64, 0),)))
        node.will_set(f"spBv1.0/{GROUP}/NDEATH/gw-will", death, 1)
        node.connect("127.0.0.1", port)
        node.loop_start()
        node.publish(f"spBv1.0/{GROUP}/NBIRTH/gw-will", _nbirth(), qos=1).wait_for_publish(5)

        def temp() -> Any:
            latest = api.call("GET", f"/api/v1/devices/{gw['id']}/latest", world.headers)
            return {v["property"]: v["value"] for v in latest["values"]}.get("Temp")

        assert api.wait_for(lambda: temp() == 1.5)  # the birth's value
        assert host.stats.deaths == 0
        _drop(node)
        api.wait_for(lambda: host.stats.deaths >= 1)
        api.wait_for(lambda: temp() is None)  # marked stale by the death
        assert not api.call("GET", f"/api/v1/devices/{gw['id']}", world.headers)["online"]

        # The retained STATE still says the host is online.
        watcher, got = _client(port, gw["token"], "gw-will-watch")
        try:
            watcher.subscribe(state, qos=1)
            _, payload, _ = _next(got, state)
            assert orjson.loads(payload)["online"] is True
        finally:
            watcher.loop_stop()
            watcher.disconnect()
