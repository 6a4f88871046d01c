"""Modbus polling throughput: the connector beside a raw pymodbus block-read loop.

``--devices`` pymodbus TCP servers run in another process (``--server-procs`` processes),
each with ``--points`` holding-register points: a float32/int16 mix (60% float32). In this
process, for ``--seconds`` each:

- raw: one AsyncModbusTcpClient per device reading the same register blocks back to back
  (no decoding, no batches) — what pymodbus alone sustains over the same servers;
- connector: the ModbusConnector polling every device at maximum rate, decoding each block
  (NumPy) into edge batches handed to a counting sink.

Reported: points/s of each, their ratio, CPU seconds per second and peak RSS of this (the
polling) process. Targets: >= 100,000 points/s, >= 60% of raw, RSS <= 200 MB.

    python benchmarks/edge_modbus.py [--devices 100] [--points 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import time
from typing import Any

import pyarrow as pa

sys.path.insert(0, os.path.dirname(__file__))

from _common import emit, note

FLOAT_SHARE = 0.6


def layout(points: int) -> list[dict[str, Any]]:
    """Point definitions: float32 first, then int16, packed from register 0."""
    n_float = round(points * FLOAT_SHARE)
    out: list[dict[str, Any]] = []
    addr = 0
    for i in range(points):
        typ = "float32" if i < n_float else "int16"
        out.append({"property": f"p{i}", "register": "holding", "address": addr, "type": typ})
        addr += 2 if typ == "float32" else 1
    return out


def registers_used(points: int) -> int:
    n_float = round(points * FLOAT_SHARE)
    return n_float * 2 + (points - n_float)


# --------------------------------------------------------------------------- server process
async def serve(ports: list[int], n_regs: int) -> None:
    import logging
    import struct

    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import SimData, SimDevice
    from pymodbus.simulator.simdata import DataType

    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    servers = []
    for k, port in enumerate(ports):
        words: list[int] = []
        for i in range(n_regs):
            words.append(struct.unpack(">H", struct.pack(">h", (i * 7 + k) % 30000))[0])
        dev = SimDevice(
            id=1,
            simdata=(
                [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                [SimData(0, values=words, datatype=DataType.REGISTERS)],
                [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
            ),
            use_bit_addressing=True,
        )
        srv = ModbusTcpServer(dev, address=("127.0.0.1", port))
        await srv.serve_forever(background=True)
        servers.append(srv)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until closed


def free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [int(s.getsockname()[1]) for s in socks]
    for s in socks:
        s.close()
    return ports


def start_servers(ports: list[int], n_regs: int, procs: int) -> list[subprocess.Popen[str]]:
    children = []
    for i in range(procs):
        mine = ports[i::procs]
        cmd = [sys.executable, __file__, "--serve", ",".join(map(str, mine)), "--regs", str(n_regs)]
        children.append(
            subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        )
    for child in children:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("Modbus server process did not start")
    return children


# --------------------------------------------------------------------------- measurements
def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def raw_loop(ports: list[int], blocks: list[tuple[int, int, int]], seconds: float) -> float:
    """Points/s of plain block reads; `blocks` = (start, count, points covered)."""
    from pymodbus.client import AsyncModbusTcpClient

    clients = [AsyncModbusTcpClient("127.0.0.1", port=p, timeout=3, retries=0) for p in ports]
    for c in clients:
        if not await c.connect():
            raise RuntimeError("raw client cannot connect")
    done = [0]
    stop = time.perf_counter() + seconds

    async def run(c: AsyncModbusTcpClient) -> None:
        while time.perf_counter() < stop:
            for start, count, covered in blocks:
                r = await c.read_holding_registers(start, count=count, device_id=1)
                if r.isError():
                    raise RuntimeError(f"raw read failed: {r}")
                done[0] += covered

    t0 = time.perf_counter()
    await asyncio.gather(*(run(c) for c in clients))
    elapsed = time.perf_counter() - t0
    for c in clients:
        c.close()
    return done[0] / elapsed


async def connector_loop(ports: list[int], points: int, seconds: float) -> tuple[float, int]:
    from yugong.edge.connectors.modbus import ModbusConnector
    from yugong.edge.profiles import parse_profile

    pts = layout(points)
    profiles = [
        parse_profile(
            {
                "name": f"dev-{i}",
                "protocol": "modbus_tcp",
                "connection": {"host": "127.0.0.1", "port": p, "timeout": 3},
                "interval": "1ms",  # as fast as the device answers
                "points": pts,
            }
        )
        for i, p in enumerate(ports)
    ]
    rows = [0]

    def sink(batch: pa.Table) -> None:
        rows[0] += batch.num_rows

    conn = ModbusConnector("bench", profiles, sink)
    await conn.start()
    for _ in range(600):  # up to 30 s for every device to connect
        if conn.stats().devices_online == len(ports):
            break
        await asyncio.sleep(0.05)
    else:
        raise RuntimeError("not every device came online")
    start_rows, t0 = rows[0], time.perf_counter()
    await asyncio.sleep(seconds)
    got, elapsed = rows[0] - start_rows, time.perf_counter() - t0
    stats = conn.stats()
    await conn.stop()
    bad = int(stats.total("bad_points"))
    return got / elapsed, bad


async def bench(args: argparse.Namespace) -> None:
    from yugong.edge.profiles import parse_profile
    from yugong.edge.registers import plan

    n_regs = registers_used(args.points)
    ports = free_ports(args.devices)
    children = start_servers(ports, n_regs, args.server_procs)
    try:
        prof = parse_profile(
            {
                "name": "probe",
                "protocol": "modbus_tcp",
                "connection": {"host": "127.0.0.1", "port": 502},
                "points": layout(args.points),
            }
        )
        blocks = [(b.start, b.count, len(b.points)) for b in plan(prof.points)]
        note(f"{args.devices} devices x {args.points} points = {len(blocks)} blocks/device")

        c0, t0 = cpu_s(), time.perf_counter()
        raw = await raw_loop(ports, blocks, args.seconds)
        raw_cpu = (cpu_s() - c0) / (time.perf_counter() - t0)
        note(f"raw pymodbus: {raw:,.0f} points/s, {raw_cpu:.2f} CPU s/s")

        c0, t0 = cpu_s(), time.perf_counter()
        rate, bad = await connector_loop(ports, args.points, args.seconds)
        cpu = (cpu_s() - c0) / (time.perf_counter() - t0)
        note(f"connector: {rate:,.0f} points/s, {cpu:.2f} CPU s/s, {bad} bad points")
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
            child.wait(timeout=10)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ratio = rate / raw if raw else 0.0
    emit(
        {
            "benchmark": "edge_modbus",
            "devices": args.devices,
            "points_per_device": args.points,
            "seconds": args.seconds,
            "points_per_s": round(rate),
            "raw_points_per_s": round(raw),
            "ratio_to_raw": round(ratio, 3),
            "cpu_s_per_s": round(cpu, 3),
            "raw_cpu_s_per_s": round(raw_cpu, 3),
            "peak_rss_mb": round(rss_mb, 1),
            "bad_points": bad,
            "targets_met": rate >= 100_000 and ratio >= 0.6 and rss_mb <= 200,
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--server-procs", type=int, default=1)
    ap.add_argument("--serve", help=argparse.SUPPRESS)
    ap.add_argument("--regs", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve([int(p) for p in args.serve.split(",")], args.regs))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
