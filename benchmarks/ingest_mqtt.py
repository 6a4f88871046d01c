"""MQTT ingest throughput, end to end into DuckDB, beside each broker's own loopback rate
(publisher -> broker -> subscriber client, no ingest) measured in the same run.

- embedded: amqtt with the device plugins behind the MQTT 5 front, publishers on
  v1/devices/me/telemetry; front_loopback is amqtt's loopback through that front
- mosquitto: external mode, the platform subscribed to {prefix}/+/telemetry, at each QoS
  asked for. Publishers (paho-mqtt) run in their own processes; the loopback is the same
  publishers into a counting subscriber process. Rates count what is in the store after
  the flush, and ``*_lost`` is messages sent minus messages stored.

Embedded-broker publishers are paho-mqtt clients in threads.

    python benchmarks/ingest_mqtt.py [--messages N] [--publishers N] [--qos 0,1]
        [--mosquitto host:port] [--skip-embedded]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import threading
import time
import uuid
from typing import Any

sys.path.insert(0, os.path.dirname(__file__))

import orjson
import paho.mqtt.client as paho
import pyarrow as pa
import pyarrow.compute

from _common import emit, note
from _ingest_rig import PROPS, BenchDirectory, store_url
from yugong.core.settings import Settings
from yugong.infra.broker import EmbeddedBroker
from yugong.infra.bus import InProcessBus
from yugong.infra.mqtt5 import MqttFront
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


def payloads(n: int, values: int, pub: int, t0_ms: int = T0_MS) -> list[bytes]:
    """Single-value: {"p0": v}; batched: 100 values as 10 timestamps x 10 properties."""
    if values == 1:
        return [
            b'{"ts":%d,"values":{"p%d":%d.5}}' % (t0_ms + pub * n + i, i % PROPS, i)
            for i in range(n)
        ]
    rows = values // PROPS
    out = []
    for i in range(n):
        base = t0_ms + (pub * n + i) * rows
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
    svc: IngestService, writer: BatchedWriter, points: int, idle_s: float = 60
) -> None:
    """Until ``points`` are accepted, or none arrived for ``idle_s`` (some were lost)."""
    last, since = -1, time.perf_counter()
    while (got := sum(s.accepted for s in svc.stats().values())) < points:
        if got != last:
            last, since = got, time.perf_counter()
        elif time.perf_counter() - since > idle_s:
            note(f"only {got} of {points} points arrived: {svc.stats()}")
            break
        await asyncio.sleep(0.01)
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
    # The same through the MQTT 5 front the embedded broker listens behind (3.1.1 spliced).
    front = MqttFront("127.0.0.1", free_port(), ("127.0.0.1", port), max_payload_bytes=1 << 20)
    await front.start()
    out["front_loopback_msgs_per_s"] = await asyncio.to_thread(
        loopback, "127.0.0.1", front.port, "bench/loop", n, args.publishers, args.qos
    )
    await front.stop()
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


# Mosquitto: publishers and the loopback subscriber run in their own processes, so they
# take no GIL time from ingest; only the platform's subscriber runs in this process.


def _publisher_proc(
    host: str,
    port: int,
    topic: str,
    per: int,
    values: int,
    pub: int,
    base_ms: int,
    qos: int,
    ready: Any,
    go: Any,
    done: Any,
) -> None:
    bodies = payloads(per, values, pub, base_ms)
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    c.max_inflight_messages_set(100)
    c.max_queued_messages_set(0)
    c.connect(host, port)
    c.loop_start()
    ready.put(pub)
    go.wait(60)
    infos = [c.publish(topic, b, qos=qos) for b in bodies]
    for info in infos[-1:] if qos == 0 else infos:
        info.wait_for_publish(300)
    done.put((pub, sum(1 for i in infos if i.is_published())))
    c.disconnect()
    c.loop_stop()


def _counting_subscriber(
    host: str, port: int, topic: str, expect: int, qos: int, ready: Any, result: Any
) -> None:
    """The cheapest consumer: read, split into packets, acknowledge, count."""
    import socket

    from yugong.platform.ingest.mqtt import connect_packet, split_packets, subscribe_packet

    sock = socket.create_connection((host, port))
    sock.sendall(
        connect_packet("bench-loop", clean=True, keepalive=60, username=None, password=None)
    )
    sock.sendall(subscribe_packet(1, [topic], qos))
    sock.settimeout(15)
    pending = b""
    got = 0
    last = 0.0
    signalled = False
    try:
        while got < expect:
            chunk = sock.recv(1 << 18)
            if not chunk:
                break
            data = pending + chunk
            out: list[tuple[bytes, bytes, int]] = []
            acks = bytearray()
            used, control = split_packets(data, 0, out, acks)
            pending = data[used:]
            if acks:
                sock.sendall(acks)
            if out:
                got += len(out)
                last = time.time()
            if not signalled and any(kind == 9 for kind, _ in control):
                ready.put(-1)
                signalled = True
    except TimeoutError:
        pass
    result.put((got, last))
    sock.close()


def _run_publishers(
    ctx: Any, host: str, port: int, topics: list[str], per: int, values: int, base_ms: int, qos: int
) -> tuple[list[Any], Any, Any]:
    ready, done, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [
        ctx.Process(
            target=_publisher_proc,
            args=(host, port, t, per, values, p, base_ms, qos, ready, go, done),
            daemon=True,
        )
        for p, t in enumerate(topics)
    ]
    for pr in procs:
        pr.start()
    for _ in procs:
        ready.get(timeout=60)
    return procs, go, done


def mosquitto_loopback(
    ctx: Any, host: str, port: int, prefix: str, per: int, publishers: int, qos: int
) -> tuple[float, int]:
    """Messages/s from the publisher processes through Mosquitto to a counting subscriber
    process, and how many were lost."""
    expect = per * publishers
    ready, result = ctx.Queue(), ctx.Queue()
    sub = ctx.Process(
        target=_counting_subscriber,
        args=(host, port, f"{prefix}/+/loop", expect, qos, ready, result),
        daemon=True,
    )
    sub.start()
    ready.get(timeout=60)
    topics = [f"{prefix}/{p + 1}/loop" for p in range(publishers)]
    procs, go, _ = _run_publishers(ctx, host, port, topics, per, 1, T0_MS, qos)
    t = time.time()
    go.set()
    got, last = result.get(timeout=600)
    for pr in [*procs, sub]:
        pr.join(30)
    return got / max(last - t, 1e-9), expect - got


def stored(store: Any, publishers: int, base_ms: int, end_ms: int) -> int:
    series = [d * 100 + k for d in range(1, publishers + 1) for k in range(PROPS)]
    t = store.aggregate(series, base_ms * 1000, end_ms * 1000, 10**15, ("count",))
    return int(pa.compute.sum(t.column("count")).as_py() or 0)


async def mosquitto(args: argparse.Namespace, qos: int, phase: int) -> dict[str, float]:
    host, port_s = args.mosquitto.split(":")
    port = int(port_s)
    out: dict[str, float] = {}
    ctx = multiprocessing.get_context("spawn")
    prefix = f"yugong-bench/{uuid.uuid4().hex[:8]}/devices"
    n = args.messages // args.publishers
    rate, lost = await asyncio.to_thread(
        mosquitto_loopback, ctx, host, port, prefix, n, args.publishers, qos
    )
    out[f"mosquitto_q{qos}_loopback_msgs_per_s"] = rate
    out[f"mosquitto_q{qos}_loopback_lost"] = lost

    store = open_store(store_url())
    directory = BenchDirectory(devices=args.publishers)
    writer = BatchedWriter(store, batch_rows=50_000, flush_ms=100)
    svc = IngestService(directory, writer, InProcessBus())  # type: ignore[arg-type]
    sub = ExternalBrokerIngest(
        Settings(mqtt_url=f"mqtt://{host}:{port}", mqtt_topic_prefix=prefix),
        directory,  # type: ignore[arg-type]
        svc,
        qos=qos,
    )
    await sub.start()
    await asyncio.wait_for(sub.ready.wait(), 10)
    for k, (label, values, count) in enumerate(
        (("single", 1, args.messages), ("batched", 100, args.messages // 10))
    ):
        per = count // args.publishers
        total = per * args.publishers
        base_ms = T0_MS + (phase * 2 + k) * 10**9
        topics = [f"{prefix}/{p + 1}/telemetry" for p in range(args.publishers)]
        procs, go, done = await asyncio.to_thread(
            _run_publishers, ctx, host, port, topics, per, values, base_ms, qos
        )
        before = sum(s.accepted for s in svc.stats().values())
        t = time.perf_counter()
        go.set()
        sent = 0
        for _ in procs:
            sent += int((await asyncio.to_thread(done.get, True, 600))[1])
        await wait_points(svc, writer, before + total * values, idle_s=5)
        s = time.perf_counter() - t
        for pr in procs:
            await asyncio.to_thread(pr.join, 30)
        got = stored(store, args.publishers, base_ms, base_ms + 10**9)
        out[f"mosquitto_q{qos}_{label}_msgs_per_s"] = got / values / s
        out[f"mosquitto_q{qos}_{label}_points_per_s"] = got / s
        out[f"mosquitto_q{qos}_{label}_lost"] = total - got // values
        note(
            f"mosquitto QoS {qos} {label}: {sent} of {total} messages published, "
            f"{got} of {total * values} points stored, in {s:.2f}s"
        )
    await sub.stop()
    await writer.close()
    store.close()
    ratio = (
        out[f"mosquitto_q{qos}_single_msgs_per_s"] / out[f"mosquitto_q{qos}_loopback_msgs_per_s"]
    )
    out[f"mosquitto_q{qos}_single_ratio_to_loopback"] = ratio
    return out


async def amain(args: argparse.Namespace) -> None:
    qos_list = [int(q) for q in str(args.qos).split(",")]
    figures: dict[str, object] = {
        "benchmark": "ingest_mqtt",
        "qos": qos_list,
        "publishers": args.publishers,
        "messages": args.messages,
    }
    res: dict[str, float] = {}
    if not args.skip_embedded:
        args.qos = qos_list[0]
        res |= await embedded(args)
    if args.mosquitto:
        for phase, qos in enumerate(qos_list):
            res |= await mosquitto(args, qos, phase)
    figures |= {k: round(v, 3) if "ratio" in k else round(v) for k, v in res.items()}
    if "embedded_single_msgs_per_s" in res:
        figures["embedded_single_ratio_to_loopback"] = round(
            res["embedded_single_msgs_per_s"] / res["amqtt_loopback_msgs_per_s"], 3
        )
    figures["targets"] = {
        "batched_points_per_s": 100_000,
        "mosquitto_q0_single_msgs_per_s": 10_000,
        "lost": 0,
    }
    emit(figures)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=40_000)
    ap.add_argument("--publishers", type=int, default=4)
    ap.add_argument(
        "--qos", default="0,1", help="QoS levels to run, e.g. 0 or 0,1 (embedded: the first)"
    )
    ap.add_argument(
        "--mosquitto", default="127.0.0.1:1883", help="host:port of an external broker; '' to skip"
    )
    ap.add_argument("--skip-embedded", action="store_true", help="only the external broker")
    asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    main()
