"""The ThingsBoard gateway MQTT API, spoken by ThingsBoard's own gateway SDK, unchanged."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import paho.mqtt.client as mqtt
from tb_gateway_mqtt import TBGatewayMqttClient

from tests.integration.conftest import Api, make_settings
from yugong.server import BackgroundServer

T0 = 1_700_000_000_000


def test_gateway_speaks_for_its_children(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        world = api.setup_tenant(api.admin(), "Delta Line")
        gw = api.call(
            "POST",
            "/api/v1/devices",
            world.headers,
            201,
            json={"name": "edge-gw-1", "product_id": world.product_id, "is_gateway": True},
        )

        client = TBGatewayMqttClient("127.0.0.1", settings.mqtt_port, username=gw["token"])
        client.connect()
        try:
            client.gw_connect_device("press-7", "sensor")
            client.gw_send_telemetry("press-7", {"ts": T0, "values": {"temperature": 61.5}})
            client.gw_send_telemetry("press-7", [{"ts": T0 + 1000, "values": {"count": 3}}])
            client.gw_send_attributes("press-7", {"firmware": "2.4.1"})
            # Data for a device never connected is provisioned with the "default" product,
            # which this tenant lacks: refused by name, nothing created.
            client.gw_send_telemetry("ghost-1", {"ts": T0, "values": {"temperature": 1.0}})
            # The tenant's own device that is not behind this gateway: refused.
            client.gw_send_telemetry(
                f"{'delta-line'}-dev-1", {"ts": T0, "values": {"temperature": -5.0}}
            )

            def child() -> dict | None:
                page = api.call(
                    "GET", "/api/v1/devices", world.headers, params={"search": "press-7"}
                )
                return page["items"][0] if page["items"] else None

            press = api.wait_for(child)
            assert press["gateway_id"] == gw["id"]
            latest = api.wait_for(
                lambda: (lambda v: v if v["count"]["value"] == 3 else None)(
                    {
                        x["property"]: x
                        for x in api.call(
                            "GET", f"/api/v1/devices/{press['id']}/latest", world.headers
                        )["values"]
                    }
                )
            )
            assert latest["temperature"]["value"] == 61.5
            assert latest["temperature"]["ts"] == T0
            api.wait_for(
                lambda: api.call("GET", f"/api/v1/devices/{press['id']}", world.headers)[
                    "attributes"
                ].get("firmware")
            )
        finally:
            client.disconnect()

        names = [d["name"] for d in api.call("GET", "/api/v1/devices", world.headers)["items"]]
        assert "ghost-1" not in names
        mine = api.latest(world)
        assert mine["temperature"]["value"] is None  # the refused value never landed

        # A device that is not a gateway may not use the gateway topics at all.
        plain = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="not-a-gateway")
        plain.username_pw_set(world.token)
        plain.connect("127.0.0.1", settings.mqtt_port)
        plain.loop_start()
        try:
            plain.publish(
                "v1/gateway/telemetry",
                orjson.dumps({"press-7": {"ts": T0 + 5000, "values": {"temperature": 99.0}}}),
                qos=1,
            )
            time.sleep(1.0)
        finally:
            plain.disconnect()
            plain.loop_stop()
        latest = {
            x["property"]: x
            for x in api.call("GET", f"/api/v1/devices/{press['id']}/latest", world.headers)[
                "values"
            ]
        }
        assert latest["temperature"]["value"] == 61.5
