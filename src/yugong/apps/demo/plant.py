"""Simulated machines publishing telemetry over MQTT with the ThingsBoard device API
(access token as username, ``v1/devices/me/telemetry``), one connection per machine."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass

import aiomqtt
import numpy as np
import orjson

from yugong.apps.demo.signals import MachineSim

log = logging.getLogger(__name__)
TELEMETRY_TOPIC = "v1/devices/me/telemetry"


@dataclass(frozen=True)
class SimDevice:
    name: str
    product: str
    token: str


def _jsonable(value: np.generic) -> float | int | bool:
    return value.item()


async def _publish_loop(
    host: str,
    port: int,
    device: SimDevice,
    queue: asyncio.Queue[dict[str, object]],
    tls: ssl.SSLContext | None = None,
) -> None:
    delay = 1.0
    while True:
        try:
            async with aiomqtt.Client(
                host,
                port,
                username=device.token,
                identifier=f"sim-{device.name}",
                tls_context=tls,
            ) as client:
                delay = 1.0
                while True:
                    values = await queue.get()
                    payload = {"ts": int(time.time() * 1000), "values": values}
                    await client.publish(TELEMETRY_TOPIC, orjson.dumps(payload), qos=0)
        except aiomqtt.MqttError as exc:
            log.warning(
                "simulated %s lost its MQTT connection (%s); retrying in %.0fs",
                device.name,
                exc,
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


async def run_plant(
    host: str,
    port: int,
    devices: list[SimDevice],
    *,
    interval_s: float = 1.0,
    seed: int = 7,
    tls: ssl.SSLContext | None = None,
) -> None:
    """Publish forever (cancel to stop): every ``interval_s`` each machine sends one message
    (over TLS with ``tls``, a client context that verifies the broker)."""
    by_product: dict[str, list[SimDevice]] = {}
    for d in devices:
        by_product.setdefault(d.product, []).append(d)
    rng = np.random.default_rng(seed)
    sims = {p: MachineSim(p, len(ds), rng) for p, ds in by_product.items()}
    queues = {d.name: asyncio.Queue[dict[str, object]](maxsize=10) for d in devices}
    tasks = [
        asyncio.create_task(_publish_loop(host, port, d, queues[d.name], tls)) for d in devices
    ]
    log.info(
        "simulated plant: %d machines publishing every %.1fs to %s:%d%s",
        len(devices),
        interval_s,
        host,
        port,
        " over TLS" if tls else "",
    )
    try:
        while True:
            for product, ds in by_product.items():
                columns = sims[product].step(interval_s)
                for i, d in enumerate(ds):
                    q = queues[d.name]
                    if q.full():  # a disconnected machine keeps only its newest readings
                        q.get_nowait()
                    q.put_nowait({k: _jsonable(v[i]) for k, v in columns.items()})
            await asyncio.sleep(interval_s)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
