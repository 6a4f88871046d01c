"""Store-and-forward through an uplink outage, at the buffer level (the uplink comes later).

Outage: ``--seconds`` of data at ``--rate`` points/s (default 5 min at 10,000/s = 3,000,000
points) appended as batches of ``--batch`` points, fast-forwarded (as fast as the buffer
takes them). Restore: replay with peek/ack while a live producer keeps appending at
``--rate`` points/s in real time, until the backlog and the live data are delivered.
Every point's ts encodes its global sequence number, so the delivered stream is checked
for loss, duplicates and order. Raw = the same IPC blobs inserted into a plain SQLite table
(same WAL and synchronous settings) without budget, counters or checksums.

    python benchmarks/edge_outage.py [--seconds 300] [--rate 10000] [--batch 1000]
                                     [--synchronous full|normal]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import threading
import time

import numpy as np
import pyarrow as pa

sys.path.insert(0, os.path.dirname(__file__))

from _common import emit, note
from yugong.edge.buffer import StoreForwardBuffer
from yugong.edge.samples import EDGE_SCHEMA

T0 = 1_704_067_200_000_000  # 2024-01-01T00:00:00Z in µs
DEVICES = 100


class Source:
    """Plant-like points: 100 devices × N properties, smooth signals with noise at 0.01."""

    def __init__(self, batch: int, rate: int) -> None:
        per_device = max(1, batch // DEVICES)
        self.batch = batch
        self.step_us = 1_000_000 // rate  # the rate fixes each point's ts from its sequence
        names = [(f"plc-{d:03d}", f"p{p:02d}") for d in range(DEVICES) for p in range(per_device)]
        names = (names * (batch // len(names) + 1))[:batch]
        self.device = pa.array([d for d, _ in names], pa.string())
        self.point = pa.array([p for _, p in names], pa.string())
        self.text = pa.nulls(batch, pa.string())
        self.quality = pa.array(np.zeros(batch, np.uint8))
        rng = np.random.default_rng(7)
        self.base = rng.uniform(20, 80, batch)
        self.noise = rng.normal(0, 0.05, (64, batch))

    def make(self, n: int) -> pa.Table:
        """Batch number ``n``: points n*batch .. (n+1)*batch-1."""
        seq = n * self.batch + np.arange(self.batch, dtype=np.int64)
        value = np.round(self.base + 2 * np.sin(n / 500) + self.noise[n % 64], 2)
        return pa.Table.from_arrays(
            [
                self.device,
                self.point,
                pa.array(T0 + seq * self.step_us),
                pa.array(value),
                self.text,
                self.quality,
            ],
            schema=EDGE_SCHEMA,
        )


def ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="zstd")
    with pa.ipc.new_stream(sink, EDGE_SCHEMA, options=options) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def raw_sqlite(path: str, blobs: list[bytes], synchronous: str) -> float:
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    con.execute("CREATE TABLE raw (id INTEGER PRIMARY KEY AUTOINCREMENT, data BLOB)")
    t = time.perf_counter()
    for blob in blobs:
        con.execute("BEGIN IMMEDIATE")
        con.execute("INSERT INTO raw (data) VALUES (?)", (blob,))
        con.execute("COMMIT")
    elapsed = time.perf_counter() - t
    con.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=300)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1_000)
    ap.add_argument("--peek-rows", type=int, default=10_000)
    ap.add_argument("--synchronous", choices=["full", "normal"], default="full")
    ap.add_argument("--max-bytes", type=int, default=2 * 1024**3)
    args = ap.parse_args()

    src = Source(args.batch, args.rate)
    n_outage = args.seconds * args.rate // args.batch
    outage = [src.make(n) for n in range(n_outage)]
    tmp = tempfile.mkdtemp(prefix="yugong-outage-")
    buf = StoreForwardBuffer(
        os.path.join(tmp, "buffer.db"), max_bytes=args.max_bytes, synchronous=args.synchronous
    )

    # -- outage: everything goes to the buffer ------------------------------------------
    note(f"outage: {n_outage} batches of {args.batch} points ({args.synchronous} sync)")
    t = time.perf_counter()
    for table in outage:
        buf.append(table)
    append_s = time.perf_counter() - t
    backlog = buf.depth()
    file_bytes = buf.file_bytes()
    note(f"  appended in {append_s:.1f} s, {backlog.bytes / backlog.rows:.2f} payload B/point")

    blobs = [ipc(table) for table in outage[: min(n_outage, 1000)]]
    raw_s = raw_sqlite(os.path.join(tmp, "raw.db"), blobs, args.synchronous)
    raw_rate = len(blobs) * args.batch / raw_s
    del outage, blobs

    # -- restore: replay while live data keeps arriving in real time --------------------
    stop = threading.Event()
    live_batches = 0
    period = args.batch / args.rate

    def live() -> None:
        nonlocal live_batches
        next_at = time.perf_counter()
        while not stop.is_set():
            buf.append(src.make(n_outage + live_batches))
            live_batches += 1
            next_at += period
            stop.wait(max(0.0, next_at - time.perf_counter()))

    delivered: list[np.ndarray] = []
    producer = threading.Thread(target=live, daemon=True)
    producer.start()
    t = time.perf_counter()
    replay_points = 0
    while True:
        entries = buf.peek(args.peek_rows)
        if not entries:
            break  # backlog and live data caught up
        for _, table in entries:
            delivered.append(table.column("ts").to_numpy())
            replay_points += table.num_rows
        buf.ack(entries[-1][0])  # the uplink acks after the broker's PUBACK
    replay_s = time.perf_counter() - t
    stop.set()
    producer.join()
    while entries := buf.peek(args.peek_rows):  # what arrived while stopping
        delivered.extend(tb.column("ts").to_numpy() for _, tb in entries)
        buf.ack(entries[-1][0])

    # -- verify by sequence number ------------------------------------------------------
    seq = (np.concatenate(delivered) - T0) // src.step_us
    expected = (n_outage + live_batches) * args.batch
    unique = np.unique(seq)
    lost = expected - int(np.isin(np.arange(expected), unique).sum())
    duplicated = int(seq.size - unique.size)
    in_order = bool(np.all(np.diff(seq) > 0))
    stats = buf.stats()
    buf.close()

    emit(
        {
            "benchmark": "edge_outage",
            "level": "buffer",
            "synchronous": args.synchronous,
            "outage_points": n_outage * args.batch,
            "live_points": live_batches * args.batch,
            "append_points_per_s": round(n_outage * args.batch / append_s),
            "raw_sqlite_points_per_s": round(raw_rate),
            "append_ratio_to_raw": round(n_outage * args.batch / append_s / raw_rate, 3),
            "replay_points_per_s": round(replay_points / replay_s),
            "replay_s": round(replay_s, 2),
            "lost": lost,
            "duplicated": duplicated,
            "in_order": in_order,
            "dropped": stats.dropped_rows,
            "payload_bytes_per_point": round(backlog.bytes / backlog.rows, 2),
            "file_bytes_per_point": round(file_bytes / backlog.rows, 2),
        }
    )


if __name__ == "__main__":
    main()
