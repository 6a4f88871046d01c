"""The whole path of the edge layer: a device polled by the Yugong edge gateway, forwarded as
a Sparkplug B edge node through a real broker (Mosquitto) to the platform as primary host,
stored, and queried over the API — auto-provisioned from the births."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import httpx

from tests.integration.conftest import Api, make_settings
from yugong.edge.config import parse_config
from yugong.edge.gateway import EdgeGateway
from yugong.server import BackgroundServer


def test_device_to_gateway_to_broker_to_platform(
    tmp_path: Path, mosquitto: tuple[str, int]
) -> None:
    host, port = mosquitto
    run = f"t{time.time_ns()}"
    group, host_id = f"grp-{run}", f"host-{run}"
    settings = make_settings(
        tmp_path / "platform",
        mqtt_url=f"mqtt://{host}:{port}",
        mqtt_topic_prefix=f"yugong-test/{run}/devices",
        sparkplug_groups={group: "edge-plant"},
        sparkplug_host_id=host_id,
    )
    gateway = parse_config(
        {
            "gateway": "gw-e2e",
            "connectors": [
                {
                    "name": "sim",
                    "protocol": "simulator",
                    "simulated": [
                        {
                            "name": "mixer-1",
                            "interval": 0.1,
                            "signals": [
                                {"point": "batches", "waveform": "counter", "low": 0, "high": 1e9}
                            ],
                        }
                    ],
                }
            ],
            "buffer": {"path": str(tmp_path / "edge-buffer.sqlite"), "max_bytes": "64MiB"},
            "uplink": {
                "kind": "sparkplug",
                "broker": f"mqtt://{host}:{port}",
                "group_id": group,
                "edge_node_id": "gw-e2e",
                "host_id": host_id,
            },
            "health": {"interval": 0.5},
        }
    )
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        world = api.setup_tenant(api.admin(), "Edge Plant")  # slug edge-plant

        async def run_gateway_until_data() -> None:
            async with EdgeGateway(gateway):

                def mixer() -> dict | None:
                    page = api.call(
                        "GET", "/api/v1/devices", world.headers, params={"search": "mixer-1"}
                    )
                    return page["items"][0] if page["items"] else None

                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    device = await asyncio.to_thread(mixer)
                    if device is not None:
                        latest = await asyncio.to_thread(
                            api.call, "GET", f"/api/v1/devices/{device['id']}/latest", world.headers
                        )
                        values = {v["property"]: v["value"] for v in latest["values"]}
                        if values.get("batches") is not None and values["batches"] >= 5:
                            return
                    await asyncio.sleep(0.2)
                raise AssertionError("the gateway's data did not reach the platform")

        asyncio.run(run_gateway_until_data())
        devices = {d["name"]: d for d in api.call("GET", "/api/v1/devices", world.headers)["items"]}
        # The edge node became a gateway device; its device sits behind it.
        assert devices["gw-e2e"]["is_gateway"] is True
        assert devices["mixer-1"]["gateway_id"] == devices["gw-e2e"]["id"]
        with contextlib.suppress(KeyError):
            assert srv.platform.sparkplug.stats.births >= 1
