"""MQTT ingest throughput, end to end into DuckDB, beside each broker's own loopback rate
(publisher -> broker -> subscriber client, no ingest) measured in the same run.

- embedded: amqtt with the device plugins, publishers on v1/devices/me/telemetry
- mosquitto: external mode, the platform subscribed to {prefix}/+/telemetry

Publishers are paho-mqtt clients in threads, QoS 0 or 1.

    python benchmarks/ingest_mqtt.py [--messages N] [--publishers N] [--qos 0|1]
        [--mosquitto host:port]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))

import orjson
import paho.mqtt.client as paho

from _common import emit, note
from _ingest_rig import PROPS, BenchDirectory, store_url
from yugong.core.settings import Settings
from yugong.infra.broker import EmbeddedBroker
from yugong.infra.bus import InProcessBus
from yugong.infra.timeseries import open_store
from yugong.platform.ingest.mqtt import ExternalBrokerIngest
from yugong.platform.ingest.service import IngestService
from yugong.platform.ingest.writer import BatchedWriter

T0_MS = 1_704_067_200_000


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def payloads(n: int, values: int, pub: int) -> list[bytes]:
    """Single-value: {"p0": v}; batched: 100 values as 10 timestamps x 10 properties."""
    if values == 1:
        return [
            b'{"ts":%d,"values":{"p%d":%d.5}}' % (T0_MS + pub * n + i, i % PROPS, i)
            for i in range(n)
        ]
    rows = values // PROPS
    out = []
    for i in range(n):
        base = T0_MS + (pub * n + i) * rows
        out.append(
            orjson.dumps(
                [
                    {"ts": base + r, "values": {f"p{k}": r + k + 0.5 for k in range(PROPS)}}
                    for r in range(rows)
                ]
            )
        )
    return out


def publish_all(
    host: str,
    port: int,
    topic: str,
    users: list[str | None],
    bodies: list[list[bytes]],
    qos: int,
    hold: threading.Event | None = None,
) -> list[threading.Thread]:
    """Each publisher thread sends its bodies; returns once all are sent (acked for QoS 1).
    The clients stay connected until ``hold`` is set (amqtt drops messages it has read but
    not yet handled when a client disconnects), then the threads end."""
    sent = threading.Barrier(len(users) + 1)

    def run(user: str | None, items: list[bytes]) -> None:
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
        if user:
            c.username_pw_set(user)
        c.max_inflight_messages_set(100)
        c.max_queued_messages_set(0)
        c.connect(host, port)
        c.loop_start()
        infos = [c.publish(topic, b, qos=qos) for b in items]
        for info in infos[-1:] if qos == 0 else infos:
            info.wait_for_publish(120)
        sent.wait()
        if hold is not None:
            hold.wait(300)
        c.disconnect()
        c.loop_stop()

    threads = [
        threading.Thread(target=run, args=(u, b), daemon=True)
        for u, b in zip(users, bodies, strict=True)
    ]
    for th in threads:
        th.start()
    sent.wait()
    return threads


def loopback(host: str, port: int, topic: str, n: int, publishers: int, qos: int) -> float:
    """Messages/s from publishers through the broker to one subscriber client."""
    got = 0
    all_in = threading.Event()

    def on_message(*_: object) -> None:
        nonlocal got
        got += 1
        if got >= n * publishers:
            all_in.set()

    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    sub.on_message = on_message
    sub.connect(host, port)
    sub.subscribe(topic, qos=qos)
    sub.loop_start()
    time.sleep(0.3)
    body = b'{"p0":1.5}'
    t = time.perf_counter()
    hold = threading.Event()
    threads = publish_all(
        host, port, topic, [None] * publishers, [[body] * n] * publishers, qos, hold
    )
    all_in.wait(120)
    elapsed = time.perf_counter() - t
    hold.set()
    for th in threads:
        th.join()
    sub.disconnect()
    sub.loop_stop()
    if got < n * publishers:
        note(f"loopback: only {got} of {n * publishers} messages arrived")
    return got / elapsed


async def wait_points(
    svc: IngestService, writer: BatchedWriter, points: int, limit_s: float = 60
) -> None:
    try:
        async with asyncio.timeout(limit_s):
            while sum(s.accepted for s in svc.stats().values()) < points:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        got = sum(s.accepted for s in svc.stats().values())
        note(f"only {got} of {points} points arrived: {svc.stats()}")
        raise
    await writer.flush()


async def embedded(args: argparse.Namespace) -> dict[str, float]:
    from amqtt.broker import Broker
    from amqtt.contexts import BrokerConfig, ListenerConfig

    out: dict[str, float] = {}
    # The broker's own loopback, anonymous, no Yugong plugins.
    port = free_port()
    raw = Broker(
        BrokerConfig(
            listeners={"default": ListenerConfig(bind=f"127.0.0.1:{port}")},
            plugins={"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        )
    )
    await raw.start()
    n = args.messages // args.publishers // 4
    out["amqtt_loopback_msgs_per_s"] = await asyncio.to_thread(
        loopback, "127.0.0.1", port, "bench/loop", n, args.publishers, args.qos
    )
    await raw.shutdown()

    store = open_store(store_url())
    directory = BenchDirectory(devices=args.publishers)
    writer = BatchedWriter(store, batch_rows=50_000, flush_ms=100)
    svc = IngestService(directory, writer, InProcessBus())  # type: ignore[arg-type]
    port = free_port()
    broker = EmbeddedBroker(Settings(mqtt_port=port), directory, svc)
    await broker.start()
    users = [f"tok-{d}" for d in range(1, args.publishers + 1)]
    for label, values, count in (
        ("single", 1, args.messages // 2),
        ("batched", 100, args.messages // 20),
    ):
        per = count // args.publishers
        bodies = [payloads(per, values, p) for p in range(args.publishers)]
        before = sum(s.accepted for s in svc.stats().values())
        t = time.perf_counter()
        hold = threading.Event()
        threads = await asyncio.to_thread(
            publish_all, "127.0.0.1", port, "v1/devices/me/telemetry", users, bodies, args.qos, hold
        )
        await wait_points(svc, writer, before + per * args.publishers * values)
        s = time.perf_counter() - t
        hold.set()
        for th in threads:
            await asyncio.to_thread(th.join)
        out[f"embedded_{label}_msgs_per_s"] = per * args.publishers / s
        out[f"embedded_{label}_points_per_s"] = per * args.publishers * values / s
        note(f"embedded {label}: {per * args.publishers} messages in {s:.2f}s")
    await broker.stop()
    await writer.close()
    store.close()
    return out


async def mosquitto(args: argparse.Namespace) -> dict[str, float]:
    host, port_s = args.mosquitto.split(":")
    port = int(port_s)
    out: dict[str, float] = {}
    prefix = f"yugong-bench/{uuid.uuid4().hex[:8]}/devices"
    n = args.messages // args.publishers
    out["mosquitto_loopback_msgs_per_s"] = await asyncio.to_thread(
        loopback, host, port, f"{prefix}/loop", n // 2, args.publishers, args.qos
    )

    store = open_store(store_url())
    directory = BenchDirectory(devices=args.publishers)
    writer = BatchedWriter(store, batch_rows=50_000, flush_ms=100)
    svc = IngestService(directory, writer, InProcessBus())  # type: ignore[arg-type]
    sub = ExternalBrokerIngest(
        Settings(mqtt_url=f"mqtt://{host}:{port}", mqtt_topic_prefix=prefix), directory, svc
    )  # type: ignore[arg-type]
    await sub.start()
    await asyncio.wait_for(sub.ready.wait(), 10)
    for label, values, count in (
        ("single", 1, args.messages),
        ("batched", 100, args.messages // 10),
    ):
        per = count // args.publishers
        bodies = [payloads(per, values, p) for p in range(args.publishers)]
        before = sum(s.accepted for s in svc.stats().values())
        t = time.perf_counter()
        # Publisher p publishes as device p+1 (the broker's ACLs would enforce that).
        hold = threading.Event()
        threads = await asyncio.gather(
            *[
                asyncio.to_thread(
                    publish_all,
                    host,
                    port,
                    f"{prefix}/{p + 1}/telemetry",
                    [None],
                    [bodies[p]],
                    args.qos,
                    hold,
                )
                for p in range(args.publishers)
            ]
        )
        await wait_points(svc, writer, before + per * args.publishers * values)
        s = time.perf_counter() - t
        hold.set()
        for group in threads:
            for th in group:
                await asyncio.to_thread(th.join)
        out[f"mosquitto_{label}_msgs_per_s"] = per * args.publishers / s
        out[f"mosquitto_{label}_points_per_s"] = per * args.publishers * values / s
        note(f"mosquitto {label}: {per * args.publishers} messages in {s:.2f}s")
    await sub.stop()
    await writer.close()
    store.close()
    return out


async def amain(args: argparse.Namespace) -> None:
    figures: dict[str, object] = {
        "benchmark": "ingest_mqtt",
        "qos": args.qos,
        "publishers": args.publishers,
    }
    res = await embedded(args)
    if args.mosquitto:
        res |= await mosquitto(args)
    figures |= {k: round(v) for k, v in res.items()}
    if "embedded_single_msgs_per_s" in res:
        figures["embedded_single_ratio_to_loopback"] = round(
            res["embedded_single_msgs_per_s"] / res["amqtt_loopback_msgs_per_s"], 3
        )
    if "mosquitto_single_msgs_per_s" in res:
        figures["mosquitto_single_ratio_to_loopback"] = round(
            res["mosquitto_single_msgs_per_s"] / res["mosquitto_loopback_msgs_per_s"], 3
        )
    figures["targets"] = {"batched_points_per_s": 100_000, "mosquitto_single_msgs_per_s": 10_000}
    emit(figures)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument("--qos", type=int, choices=(0, 1), default=0)
    ap.add_argument(
        "--mosquitto", default="127.0.0.1:1883", help="host:port of an external broker; '' to skip"
    )
    asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    main()
