"""The quick-start promise, end to end on real sockets: connect a device over MQTT or HTTP,
query its data back, restart, and find it still there — on embedded storage and on
PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest

from tests.integration.conftest import Api, make_settings
from yugong.server import BackgroundServer


def _publish(port: int, token: str, payloads: list[object]) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"e2e-{time.time_ns()}")
    client.username_pw_set(token)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        for p in payloads:
            client.publish("v1/devices/me/telemetry", orjson.dumps(p), qos=1).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def test_device_to_query_and_back_after_restart(tmp_path: Path, backend_url: str | None) -> None:
    settings = make_settings(tmp_path, backend_url)
    t0 = 1_700_000_000_000
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        world = api.setup_tenant(api.admin(), "Acme Foundry")
        mqtt_port = settings.mqtt_port
        # Every ThingsBoard payload shape over MQTT.
        _publish(
            mqtt_port,
            world.token,
            [
                {"ts": t0, "values": {"temperature": 20.5, "running": True, "label": "start"}},
                [
                    {"ts": t0 + 1000, "values": {"temperature": 21.0, "count": 5}},
                    {"ts": t0 + 2000, "values": {"temperature": 21.5, "mode": 1}},
                ],
            ],
        )
        # ThingsBoard HTTP device API.
        api.call(
            "POST",
            f"/api/v1/{world.token}/telemetry",
            json={"ts": t0 + 3000, "values": {"temperature": 22.0, "count": 6}},
        )
        # A plain key/value message with no ts gets server time.
        _publish(mqtt_port, world.token, [{"running": False}])

        latest = api.wait_for(
            lambda: (
                lambda v: v if v["running"]["value"] is False and v["count"]["value"] == 6 else None
            )(api.latest(world))
        )
        assert latest["temperature"]["value"] == 22.0
        assert latest["temperature"]["ts"] == t0 + 3000
        assert latest["mode"]["value"] == 1 and latest["label"]["value"] == "start"
        assert latest["temperature"]["quality"] == "good"

        raw = api.call(
            "GET",
            f"/api/v1/devices/{world.device_id}/timeseries",
            world.headers,
            params={"keys": "temperature", "start": t0, "end": t0 + 10_000},
        )
        series = raw["series"][0]
        assert series["ts"] == [t0, t0 + 1000, t0 + 2000, t0 + 3000]
        assert series["value"] == [20.5, 21.0, 21.5, 22.0]

        agg = api.call(
            "GET",
            f"/api/v1/devices/{world.device_id}/timeseries",
            world.headers,
            params={
                "keys": "temperature",
                "start": t0,
                "end": t0 + 4000,
                "interval": "2s",
                "agg": "avg,max,count",
            },
        )
        bucket = agg["series"][0]
        assert bucket["bucket"] == [t0, t0 + 2000]
        assert bucket["avg"] == [20.75, 21.75]
        assert bucket["max"] == [21.0, 22.0]
        assert bucket["count"] == [2, 2]

    # Restart on the same storage: everything is still there.
    settings2 = settings.model_copy(
        update={"http_port": settings.http_port, "mqtt_port": settings.mqtt_port}
    )
    with BackgroundServer(settings2) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        h = api.login("acme-foundry-admin", "Tenant-Pass-2026!")
        raw = api.call(
            "GET",
            f"/api/v1/devices/{world.device_id}/timeseries",
            h,
            params={"keys": "temperature,count", "start": t0, "end": t0 + 10_000},
        )
        by_prop = {s["property"]: s for s in raw["series"]}
        assert by_prop["temperature"]["value"] == [20.5, 21.0, 21.5, 22.0]
        assert by_prop["count"]["value"] == [5, 6]
        # And the device still connects with its token.
        _publish(settings2.mqtt_port, world.token, [{"ts": t0 + 5000, "values": {"count": 7}}])
        api.wait_for(
            lambda: (
                api.call(
                    "GET", f"/api/v1/devices/{world.device_id}/latest", h, params={"keys": "count"}
                )["values"][0]["value"]
                == 7
            )
        )


@pytest.mark.parametrize("shape", ["rows", "columns"])
def test_json_ingest_with_a_login(tmp_path: Path, shape: str) -> None:
    settings = make_settings(tmp_path, mqtt_embedded=False)
    t0 = 1_700_000_000_000
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        world = api.setup_tenant(api.admin(), "Beta Works")
        if shape == "rows":
            body: object = [
                {
                    "device": world.device_id,
                    "ts": t0 + i * 1000,
                    "values": {"temperature": float(i)},
                }
                for i in range(100)
            ]
        else:
            body = {
                "device": world.device_id,
                "columns": {
                    "ts": [t0 + i * 1000 for i in range(100)],
                    "temperature": [float(i) for i in range(100)],
                },
            }
        result = api.call("POST", "/api/v1/telemetry", world.headers, json=body)
        assert result["accepted"] == 100
        raw = api.wait_for(
            lambda: (lambda b: b if len(b["series"][0]["ts"]) == 100 else None)(
                api.call(
                    "GET",
                    f"/api/v1/devices/{world.device_id}/timeseries",
                    world.headers,
                    params={"keys": "temperature", "start": t0, "end": t0 + 200_000},
                )
            )
        )
        assert raw["series"][0]["value"] == [float(i) for i in range(100)]
        # Paging: 100 rows in pages of 30.
        seen: list[int] = []
        cursor = None
        while True:
            params = {"keys": "temperature", "start": t0, "end": t0 + 200_000, "limit": 30}
            if cursor:
                params["cursor"] = cursor
            page = api.call(
                "GET", f"/api/v1/devices/{world.device_id}/timeseries", world.headers, params=params
            )
            seen += page["series"][0]["ts"]
            cursor = page["next"]
            if cursor is None:
                break
        assert seen == [t0 + i * 1000 for i in range(100)]


def test_through_an_external_broker(tmp_path: Path, mosquitto: tuple[str, int]) -> None:
    """YUGONG_MQTT_URL set: no embedded broker; the platform subscribes to Mosquitto and a
    device publishes under its id there."""
    host, port = mosquitto
    prefix = f"yugong-test/{time.time_ns()}/devices"
    settings = make_settings(tmp_path, mqtt_url=f"mqtt://{host}:{port}", mqtt_topic_prefix=prefix)
    t0 = 1_700_000_000_000
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        assert srv.platform.mqtt_address is None  # nothing embedded is listening
        api = Api(c)
        world = api.setup_tenant(api.admin(), "Gamma Mill")
        api.wait_for(lambda: srv.platform._subscriber.ready.is_set())
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{time.time_ns()}")
        client.connect(host, port)
        client.loop_start()
        try:
            for i in range(20):
                body = {"ts": t0 + i * 1000, "values": {"temperature": float(i)}}
                client.publish(
                    f"{prefix}/{world.device_id}/telemetry", orjson.dumps(body), qos=1
                ).wait_for_publish(10)
        finally:
            client.disconnect()
            client.loop_stop()
        raw = api.wait_for(
            lambda: (lambda b: b if len(b["series"][0]["ts"]) == 20 else None)(
                api.call(
                    "GET",
                    f"/api/v1/devices/{world.device_id}/timeseries",
                    world.headers,
                    params={"keys": "temperature", "start": t0, "end": t0 + 60_000},
                )
            )
        )
        assert raw["series"][0]["value"] == [float(i) for i in range(20)]
