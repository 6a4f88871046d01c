"""OPC UA subscription throughput: the connector beside a raw asyncua handler, same run.

An asyncua server in another process holds ``--items`` Double variables and rewrites all of
them as fast as it can (every write is a value change, with a source timestamp), writing into
its address space directly so that it produces well over the target. In this process, for
``--seconds`` each, one subscription of ``--items`` monitored items:

- raw: asyncua's own subscription handler whose ``datachange_notification`` only counts;
- connector: the OpcUaConnector in subscription mode, collecting the notifications and
  emitting them as edge batches (Arrow) to a counting sink.

Reported: value changes/s of each and their ratio, and the changes/s the server wrote during
each measurement (a client cannot receive more).
Target: >= 20,000 changes/s through the connector.

    python benchmarks/edge_opcua.py [--items 10000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from typing import IO, Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.dirname(__file__))

from _common import emit, note
from yugong.core.timeutil import now_us

NS = 2


def node(i: int) -> str:
    return f"ns={NS};i={100000 + i}"


# --------------------------------------------------------------------------- server process
_PER_FOLDER = 500  # variables per folder: asyncua checks a new child against all its siblings
_SWEEP_CHUNK = 500  # writes between yields to the server's loop (publishing, sockets)
_REPORT_S = 0.5  # how often the server reports its write count


async def serve(port: int, items: int) -> None:
    """Hold ``items`` Double variables and rewrite all of them, round after round, until stdin
    closes. Reports ``ready`` and then ``written <count>`` lines on stdout.

    Writes go straight into the address space (the call ``Server.write_attribute_value``
    wraps), so each one fires the monitored items' data-change callbacks as any write does.
    The DataValues written are never touched again, so asyncua's per-change defensive
    deep copy of them (in its monitored-item bookkeeping) is made a no-op: that copy cost
    more than the rest of the write path together and would make the server, not the
    client under test, the limit.
    """
    from datetime import UTC

    from asyncua import Server, ua

    class Written(ua.DataValue):
        __slots__ = ()

        def __deepcopy__(self, memo: dict[int, Any]) -> Written:
            return self

    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{port}/bench/")
    idx = await server.register_namespace("urn:yugong:bench")
    assert idx == NS
    root = await server.nodes.objects.add_folder(
        ua.NodeId.from_string(f"ns={idx};s=Bench"), f"{idx}:Bench"
    )
    ids = []
    folder = root
    for i in range(items):
        if i % _PER_FOLDER == 0:
            folder = await root.add_folder(
                ua.NodeId.from_string(f"ns={idx};s=Bench.{i // _PER_FOLDER}"),
                f"{idx}:Group{i // _PER_FOLDER}",
            )
        nid = ua.NodeId.from_string(node(i))
        await folder.add_variable(nid, f"{idx}:v{i}", ua.Variant(0.0, ua.VariantType.Double))
        ids.append(nid)
    await server.start()
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    stop = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed
    write = server.iserver.aspace.write_attribute_value
    value_attr = ua.AttributeIds.Value
    double = ua.VariantType.Double
    written = 0
    value = 0.0
    reported = time.perf_counter()
    while not stop.done():
        value += 1.0
        stamp = ua.DateTime.now(UTC)
        for start in range(0, len(ids), _SWEEP_CHUNK):
            for k, nid in enumerate(ids[start : start + _SWEEP_CHUNK], start):
                await write(
                    nid,
                    value_attr,
                    Written(ua.Variant(value + k, double), SourceTimestamp=stamp),
                )
            written += min(_SWEEP_CHUNK, len(ids) - start)
            await asyncio.sleep(0)
            now = time.perf_counter()
            if now - reported >= _REPORT_S:
                reported = now
                out.write(f"written {written}\n")
                out.flush()
    await server.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- measurements
def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class ServerCount:
    """The server process's ``written <count>`` reports, timed as they arrive."""

    def __init__(self, lines: IO[str]) -> None:
        self.samples: list[tuple[float, int]] = []
        self._thread = threading.Thread(target=self._read, args=(lines,), daemon=True)
        self._thread.start()

    def _read(self, lines: IO[str]) -> None:
        for line in lines:
            if line.startswith("written "):
                self.samples.append((time.perf_counter(), int(line.split()[1])))

    def rate(self, t0: float, t1: float) -> float:
        """Changes/s the server wrote between t0 and t1 (its reports nearest inside)."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return math.nan
        (ta, na), (tb, nb) = inside[0], inside[-1]
        return (nb - na) / (tb - ta)


async def raw(
    endpoint: str, items: int, seconds: float, warmup: float
) -> tuple[float, float, float]:
    from asyncua import Client, ua

    class Counter:
        n = 0

        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            self.n += 1

    handler = Counter()
    client = Client(endpoint, timeout=30)
    await client.connect()
    try:
        sub = await client.create_subscription(100, handler)
        nodes = [client.get_node(node(i)) for i in range(items)]
        for k in range(0, items, 1000):
            await sub.subscribe_data_change(
                nodes[k : k + 1000], sampling_interval=ua.Double(0.0), queuesize=1
            )
        await asyncio.sleep(warmup)
        n0, t0 = handler.n, time.perf_counter()
        await asyncio.sleep(seconds)
        t1 = time.perf_counter()
        rate = (handler.n - n0) / (t1 - t0)
        await sub.delete()
    finally:
        await client.disconnect()
    return rate, t0, t1


async def connector(
    endpoint: str, items: int, seconds: float, warmup: float
) -> tuple[float, float, float, float, float]:
    from yugong.edge.connectors.opcua import OpcUaConnector
    from yugong.edge.profiles import parse_profile

    prof = parse_profile(
        {
            "name": "bench",
            "protocol": "opcua",
            "connection": {"endpoint": endpoint, "timeout": 30, "subscribe": True},
            "interval": "100ms",
            "points": [{"property": f"v{i}", "node": node(i)} for i in range(items)],
        }
    )
    count = [0, 0]  # rows, batches

    def sink(batch: pa.Table) -> None:
        count[0] += batch.num_rows
        count[1] += 1

    async with OpcUaConnector("opcua", [prof], sink) as conn:
        await asyncio.sleep(warmup)
        if not conn.available("bench"):
            raise RuntimeError("connector did not connect")
        n0, b0, t0, c0 = count[0], count[1], time.perf_counter(), cpu_s()
        await asyncio.sleep(seconds)
        t1 = time.perf_counter()
        elapsed = t1 - t0
        rate = (count[0] - n0) / elapsed
        per_batch = (count[0] - n0) / max(1, count[1] - b0)
        cpu = (cpu_s() - c0) / elapsed
        note(f"connector: cpu {cpu:.2f} s/s, {per_batch:,.0f} rows/batch")
    return rate, per_batch, cpu, t0, t1


def _publish_payload(items: int) -> bytes:
    """One encoded publish response carrying a change of every item, as a server sends it."""
    from datetime import UTC

    from asyncua import ua
    from asyncua.ua.ua_binary import struct_to_binary

    now = ua.DateTime.now(UTC)
    notif = ua.DataChangeNotification(
        MonitoredItems=[
            ua.MonitoredItemNotification(
                ClientHandle=i,
                Value=ua.DataValue(ua.Variant(i * 0.5), SourceTimestamp=now, ServerTimestamp=now),
            )
            for i in range(items)
        ]
    )
    result = ua.PublishResult()
    result.NotificationMessage.NotificationData = [notif]
    return struct_to_binary(result)


async def client_capacity(items: int, seconds: float) -> tuple[float, float]:
    """Changes/s this process can take in without a server in the way: decode the same
    publish response again and again, then (a) the raw handler path counts them, (b) the
    connector collects them and converts them into edge batches."""
    from asyncua import ua
    from asyncua.common.node import Node
    from asyncua.common.subscription import Subscription, SubscriptionItemData
    from asyncua.common.utils import Buffer
    from asyncua.ua.ua_binary import struct_from_binary

    from yugong.edge.connectors import opcua
    from yugong.edge.profiles import parse_profile

    payload = _publish_payload(items)
    params = ua.CreateSubscriptionParameters()

    class Counter:
        n = 0

        def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
            self.n += 1

    counter = Counter()
    raw_sub = Subscription(None, params, counter)  # type: ignore[arg-type]
    for i in range(items):
        d = SubscriptionItemData()
        d.client_handle = i
        d.node = Node(None, ua.NodeId.from_string(node(i)))  # type: ignore[arg-type]
        raw_sub._monitored_items[i] = d
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await raw_sub.publish_callback(struct_from_binary(ua.PublishResult, Buffer(payload)))
        if raw_sub._dispatch_tasks:  # one task per change; let them all run
            await asyncio.gather(*raw_sub._dispatch_tasks)
    raw_rate = counter.n / (time.perf_counter() - t0)

    prof = parse_profile(
        {
            "name": "bench",
            "protocol": "opcua",
            "connection": {"endpoint": "opc.tcp://127.0.0.1:1/", "subscribe": True},
            "points": [{"property": f"v{i}", "node": node(i)} for i in range(items)],
        }
    )
    session = opcua.OpcUaSession(prof)
    sub = opcua._CollectingSubscription(None, params)
    rows, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        await sub.publish_callback(struct_from_binary(ua.PublishResult, Buffer(payload)))
        handles, values, codes, stamps = sub.drain()
        batch = session._pts.convert(np.array(handles, np.int64), values, codes, stamps, now_us())
        rows += batch.num_rows
    return raw_rate, rows / (time.perf_counter() - t0)


async def bench(args: argparse.Namespace) -> None:
    logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    port = free_port()
    cmd = [sys.executable, __file__, "--serve", str(port), "--items", str(args.items)]
    # Blocking start is fine here: nothing else runs in this loop yet.
    child = subprocess.Popen(  # noqa: ASYNC220
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("OPC UA server process did not start")
        server = ServerCount(child.stdout)
        endpoint = f"opc.tcp://127.0.0.1:{port}/bench/"
        note(f"server ready: {args.items} items")
        raw_rate, t0, t1 = await raw(endpoint, args.items, args.seconds, args.warmup)
        server_raw = server.rate(t0, t1)
        note(f"raw asyncua handler: {raw_rate:,.0f} changes/s (server wrote {server_raw:,.0f}/s)")
        conn_rate, per_batch, cpu, t0, t1 = await connector(
            endpoint, args.items, args.seconds, args.warmup
        )
        server_conn = server.rate(t0, t1)
        note(f"connector: {conn_rate:,.0f} changes/s (server wrote {server_conn:,.0f}/s)")
        cap_raw, cap_conn = await client_capacity(args.items, min(args.seconds, 5.0))
        note(f"without a server: raw handler {cap_raw:,.0f}/s, connector {cap_conn:,.0f}/s")
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    emit(
        {
            "benchmark": "edge_opcua",
            "items": args.items,
            "seconds": args.seconds,
            "raw_changes_per_s": round(raw_rate),
            "connector_changes_per_s": round(conn_rate),
            "ratio_to_raw": round(conn_rate / raw_rate, 3) if raw_rate else None,
            # Changes/s the server process wrote during each measurement: every write is a
            # change, so a client cannot receive more than this.
            "server_changes_per_s_raw": _round(server_raw),
            "server_changes_per_s_connector": _round(server_conn),
            "rows_per_batch": round(per_batch),
            # The same publish response decoded over and over, no server in the way: what
            # this process can take in (the live figures are bounded by the asyncua server).
            "capacity_raw_changes_per_s": round(cap_raw),
            "capacity_connector_changes_per_s": round(cap_conn),
            # The connector's CPU seconds per second: headroom when the server is the limit.
            "connector_cpu_s_per_s": round(cpu, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "target_changes_per_s": 20_000,
            "meets_target": conn_rate >= 20_000,
            "capacity_meets_target": cap_conn >= 20_000,
        }
    )


def _round(x: float) -> int | None:
    return None if math.isnan(x) else round(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve, args.items))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
