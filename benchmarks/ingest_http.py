"""HTTP ingest throughput over a real socket (uvicorn in-process): JSON columnar bulk and
Arrow IPC (long form), end to end into DuckDB, beside raw ``store.write`` of the same
samples measured in the same run.

The app is a minimal FastAPI app with the ingest router (auth replaced by a fixed operator
principal) so the figure is ingest, not login.

    python benchmarks/ingest_http.py [--rows N] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))

import httpx
import numpy as np
import orjson
import pyarrow as pa
import uvicorn
from fastapi import FastAPI

from _common import emit, note
from _ingest_rig import PROPS, BenchDirectory, store_url
from yugong.api import problems
from yugong.api.deps import current_principal
from yugong.api.routers import ingest
from yugong.core.samples import make_batch
from yugong.core.settings import Settings
from yugong.infra.bus import InProcessBus
from yugong.infra.timeseries import open_store
from yugong.platform.ingest.service import IngestService
from yugong.platform.ingest.writer import BatchedWriter
from yugong.security.principal import Principal, Role

T0_MS = 1_704_067_200_000
ARROW = "application/vnd.apache.arrow.stream"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def json_body(rows: int, start: int) -> bytes:
    rng = np.random.default_rng(start)
    cols: dict[str, list] = {"ts": list(range(T0_MS + start, T0_MS + start + rows))}
    for k in range(PROPS):
        cols[f"p{k}"] = np.round(rng.normal(50, 10, rows), 3).tolist()
    return orjson.dumps({"device": "dev-1", "columns": cols})


def arrow_body(rows: int, start: int) -> bytes:
    """Long form: rows x PROPS points, device and property dictionary-encoded."""
    n = rows * PROPS
    rng = np.random.default_rng(start)
    ts = np.repeat(np.arange(T0_MS + start, T0_MS + start + rows, dtype=np.int64), PROPS)
    prop = pa.DictionaryArray.from_arrays(
        pa.array(np.tile(np.arange(PROPS, dtype=np.int32), rows)),
        pa.array([f"p{k}" for k in range(PROPS)]),
    )
    dev = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array(["dev-2"]))
    table = pa.table(
        {"device": dev, "property": prop, "ts": ts, "value": np.round(rng.normal(50, 10, n), 3)}
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def raw_batches(rows: int, requests: int, device: int) -> list[pa.Table]:
    out = []
    for r in range(requests):
        n = rows * PROPS
        ts = np.repeat(np.arange(rows, dtype=np.int64) + r * rows, PROPS) * 1000 + 10**15
        series = np.tile(device * 100 + np.arange(PROPS), rows)
        out.append(make_batch(1, series, ts, np.random.default_rng(r).normal(50, 10, n)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000, help="rows per request (x10 points)")
    ap.add_argument("--requests", type=int, default=10)
    args = ap.parse_args()

    store = open_store(store_url())
    directory = BenchDirectory()
    writer = BatchedWriter(store, batch_rows=200_000, flush_ms=200)
    svc = IngestService(directory, writer, InProcessBus())  # type: ignore[arg-type]
    app = FastAPI()
    problems.install(app)
    app.include_router(ingest.router, prefix="/api/v1")
    app.state.ingest = svc
    app.state.settings = Settings(max_request_bytes=256 * 1024 * 1024)
    app.dependency_overrides[current_principal] = lambda: Principal(
        kind="user", id=1, tenant=1, role=Role.OPERATOR, name="bench"
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    flush_loop: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        flush_loop.append(asyncio.get_running_loop())
        await server.serve()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def flush() -> None:
        asyncio.run_coroutine_threadsafe(writer.flush(), flush_loop[0]).result()

    rows, reqs = args.rows, args.requests
    points = rows * PROPS * reqs
    url = f"http://127.0.0.1:{port}/api/v1/telemetry"
    with httpx.Client(timeout=120) as client:
        bodies = [json_body(rows, i * rows) for i in range(reqs)]
        client.post(url, content=json_body(100, 10**9)).raise_for_status()  # warm-up
        t = time.perf_counter()
        for b in bodies:
            client.post(url, content=b).raise_for_status()
        accepted_json = time.perf_counter() - t
        flush()
        json_s = time.perf_counter() - t
        note(
            f"JSON columns: {points} points in {json_s:.2f}s ({sum(map(len, bodies)) / 1e6:.1f} MB)"
        )

        bodies = [arrow_body(rows * 5, i * rows * 5) for i in range(reqs)]
        arrow_points = rows * 5 * PROPS * reqs
        client.post(url, content=arrow_body(100, 10**9), headers={"content-type": ARROW})
        t = time.perf_counter()
        for b in bodies:
            client.post(url, content=b, headers={"content-type": ARROW}).raise_for_status()
        accepted_arrow = time.perf_counter() - t
        flush()
        arrow_s = time.perf_counter() - t
        note(f"Arrow IPC: {arrow_points} points in {arrow_s:.2f}s")

    batches = raw_batches(rows * 5, reqs, device=3)
    t = time.perf_counter()
    for b in batches:
        store.write(b)
    raw_s = time.perf_counter() - t
    server.should_exit = True
    thread.join(10)
    st = writer.stats()
    store.close()
    raw_rate = arrow_points / raw_s
    emit(
        {
            "benchmark": "ingest_http",
            "json_points_per_s": round(points / json_s),
            "json_accept_points_per_s": round(points / accepted_json),
            "arrow_points_per_s": round(arrow_points / arrow_s),
            "arrow_accept_points_per_s": round(arrow_points / accepted_arrow),
            "raw_store_write_points_per_s": round(raw_rate),
            "json_ratio_to_raw": round(points / json_s / raw_rate, 3),
            "arrow_ratio_to_raw": round(arrow_points / arrow_s / raw_rate, 3),
            "points_json": points,
            "points_arrow": arrow_points,
            "failed_rows": st.failed_rows,
            "targets": {"json_points_per_s": 200_000, "arrow_points_per_s": 1_000_000},
        }
    )


if __name__ == "__main__":
    main()
