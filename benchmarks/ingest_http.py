"""HTTP bulk ingest through the whole application on a real socket: login (JWT), JSON
columnar bulk and Arrow IPC long form, validated against the thing model and written to
DuckDB; beside raw ``store.write`` of the same samples measured in the same run.

    python benchmarks/ingest_http.py [--rows N] [--requests N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(__file__))

import httpx
import numpy as np
import orjson
import pyarrow as pa

from _common import emit, note
from yugong.core.samples import make_batch
from yugong.core.settings import Settings
from yugong.server import BackgroundServer

T0_MS = 1_704_067_200_000
ARROW = "application/vnd.apache.arrow.stream"
PROPS = 10
PASSWORD = "Bench-Pass-2026!"
TSL = {
    "properties": [
        {
            "identifier": f"p{k}",
            "name": f"P{k}",
            "accessMode": "r",
            "dataType": {"type": "double", "specs": {"min": "-1e9", "max": "1e9"}},
        }
        for k in range(PROPS)
    ],
    "events": [],
    "services": [],
}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def json_body(device: str, rows: int, start: int) -> bytes:
    rng = np.random.default_rng(start)
    cols: dict[str, list] = {"ts": list(range(T0_MS + start, T0_MS + start + rows))}
    for k in range(PROPS):
        cols[f"p{k}"] = np.round(rng.normal(50, 10, rows), 3).tolist()
    return orjson.dumps({"device": device, "columns": cols})


def arrow_body(device: str, rows: int, start: int) -> bytes:
    """Long form: rows x PROPS points, device and property dictionary-encoded."""
    n = rows * PROPS
    rng = np.random.default_rng(start)
    ts = np.repeat(np.arange(T0_MS + start, T0_MS + start + rows, dtype=np.int64), PROPS)
    prop = pa.DictionaryArray.from_arrays(
        pa.array(np.tile(np.arange(PROPS, dtype=np.int32), rows)),
        pa.array([f"p{k}" for k in range(PROPS)]),
    )
    dev = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([device]))
    table = pa.table(
        {"device": dev, "property": prop, "ts": ts, "value": np.round(rng.normal(50, 10, n), 3)}
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def raw_batches(tenant: int, series: list[int], rows: int, requests: int) -> list[pa.Table]:
    out = []
    for r in range(requests):
        n = rows * PROPS
        ts = (np.repeat(np.arange(rows, dtype=np.int64) + r * rows, PROPS) + T0_MS) * 1000
        ids = np.tile(np.asarray(series), rows)
        out.append(make_batch(tenant, ids, ts, np.random.default_rng(r).normal(50, 10, n)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000, help="rows per JSON request (x10 points)")
    ap.add_argument("--requests", type=int, default=10)
    args = ap.parse_args()
    scratch = tempfile.TemporaryDirectory(prefix="yugong-bench-http-")
    data = Path(scratch.name)
    settings = Settings(
        data_dir=data,
        mqtt_embedded=False,
        http_port=free_port(),
        admin_password=PASSWORD,
        secret_key="b" * 40,
        max_request_bytes=512 * 1024 * 1024,
        ingest_batch_rows=200_000,
        timeseries_compact_interval_s=0,
    )
    rows, reqs = args.rows, args.requests
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=300) as c:
        token = c.post("/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
        h = {"Authorization": f"Bearer {token.json()['access_token']}"}
        tenant = c.post("/api/v1/tenants", headers=h, json={"name": "Bench"}).json()["id"]
        product = c.post(
            "/api/v1/products/import",
            headers=h,
            json=TSL,
            params={"key": "bench", "tenant_id": tenant},
        ).json()["id"]
        for name in ("dev-1", "dev-2", "dev-3"):
            c.post(
                "/api/v1/devices",
                headers=h,
                json={"name": name, "product_id": product, "tenant_id": tenant},
            ).raise_for_status()
        series = [s["id"] for s in c.get("/api/v1/devices/3/series", headers=h).json()]
        # Ingest as the plant's own engineer, as a plant's scripts would.
        c.post(
            "/api/v1/users",
            headers=h,
            json={
                "username": "engineer",
                "password": PASSWORD,
                "role": "engineer",
                "tenant_id": tenant,
            },
        ).raise_for_status()
        token = c.post("/api/v1/auth/login", json={"username": "engineer", "password": PASSWORD})
        h = {"Authorization": f"Bearer {token.json()['access_token']}"}

        def post(body: bytes, ctype: str) -> None:
            r = c.post("/api/v1/telemetry", content=body, headers={**h, "content-type": ctype})
            r.raise_for_status()

        points = rows * PROPS * reqs
        bodies = [json_body("dev-1", rows, i * rows) for i in range(reqs)]
        post(json_body("dev-1", 100, 10**9), "application/json")  # warm-up
        t = time.perf_counter()
        for b in bodies:
            post(b, "application/json")
        accepted_json = time.perf_counter() - t
        srv.call(srv.platform.writer.flush())
        json_s = time.perf_counter() - t
        note(
            f"JSON columns: {points} points in {json_s:.2f}s ({sum(map(len, bodies)) / 1e6:.1f} MB)"
        )

        arrow_points = rows * 5 * PROPS * reqs
        bodies = [arrow_body("dev-2", rows * 5, i * rows * 5) for i in range(reqs)]
        post(arrow_body("dev-2", 100, 10**9), ARROW)
        t = time.perf_counter()
        for b in bodies:
            post(b, ARROW)
        accepted_arrow = time.perf_counter() - t
        srv.call(srv.platform.writer.flush())
        arrow_s = time.perf_counter() - t
        note(f"Arrow IPC: {arrow_points} points in {arrow_s:.2f}s")

        batches = raw_batches(tenant, series, rows * 5, reqs)
        store = srv.platform.store
        t = time.perf_counter()
        for b in batches:
            store.write(b)
        raw_s = time.perf_counter() - t
        failed = srv.platform.writer.stats().failed_rows
    raw_rate = arrow_points / raw_s
    emit(
        {
            "benchmark": "ingest_http",
            "app": "full application: JWT login, thing-model validation, batched writer, DuckDB",
            "json_points_per_s": round(points / json_s),
            "json_accept_points_per_s": round(points / accepted_json),
            "arrow_points_per_s": round(arrow_points / arrow_s),
            "arrow_accept_points_per_s": round(arrow_points / accepted_arrow),
            "raw_store_write_points_per_s": round(raw_rate),
            "json_ratio_to_raw": round(points / json_s / raw_rate, 3),
            "arrow_ratio_to_raw": round(arrow_points / arrow_s / raw_rate, 3),
            "points_json": points,
            "points_arrow": arrow_points,
            "failed_rows": failed,
            "targets": {"json_points_per_s": 200_000, "arrow_points_per_s": 1_000_000},
        }
    )


if __name__ == "__main__":
    main()
