"""Ingest throughput: points/s through ``store.write`` vs the raw engine in the same run.

DuckDB: raw = Arrow append of the same batches into a plain table (no sequence, no latest).
PostgreSQL: raw = COPY of the same batches into a plain unindexed table.

    python benchmarks/ingest_store.py [--points N] [--series N] [--backend duckdb|postgres]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid

sys.path.insert(0, os.path.dirname(__file__))

from _common import emit, note, signal_batches
from yugong.infra.timeseries.base import TimeSeriesStore


def run_store(store: TimeSeriesStore, batches: list) -> float:
    t = time.perf_counter()
    for b in batches:
        store.write(b)
    return time.perf_counter() - t


def duckdb_raw(path: str, batches: list) -> float:
    import duckdb

    con = duckdb.connect(path)
    con.execute(
        "CREATE TABLE raw (tenant INTEGER, series INTEGER, ts BIGINT, value DOUBLE, "
        "text VARCHAR, quality UTINYINT)"
    )
    t = time.perf_counter()
    for b in batches:
        con.register("b", b)
        con.execute("INSERT INTO raw SELECT * FROM b")
        con.unregister("b")
    elapsed = time.perf_counter() - t
    con.close()
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=10_000_000)
    ap.add_argument("--series", type=int, default=1_000)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--backend", choices=("duckdb", "postgres"), default="duckdb")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("YUGONG_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = ap.parse_args()
    seconds = max(1, args.points // args.series)
    batches = list(signal_batches(args.series, seconds, rows_per_batch=args.batch))
    points = sum(b.num_rows for b in batches)
    note(f"{points} points in {len(batches)} batches")
    out: dict = {
        "benchmark": "ingest_store",
        "backend": args.backend,
        "points": points,
        "series": args.series,
        "batch_rows": batches[0].num_rows,
    }
    if args.backend == "duckdb":
        from yugong.infra.timeseries.duckdb import DuckDBStore

        with tempfile.TemporaryDirectory() as tmp:
            raw_s = duckdb_raw(os.path.join(tmp, "raw.duckdb"), batches)
            store = DuckDBStore(os.path.join(tmp, "store.duckdb"), compact_interval_s=0)
            store_s = run_store(store, batches)
            store.close()
            # second round, other order, to even out cache warm-up; keep the best of each
            store = DuckDBStore(os.path.join(tmp, "store2.duckdb"), compact_interval_s=0)
            store_s = min(store_s, run_store(store, batches))
            store.close()
            raw_s = min(raw_s, duckdb_raw(os.path.join(tmp, "raw2.duckdb"), batches))
        out["raw_engine"] = "duckdb arrow append into a plain table"
    else:
        import psycopg

        from yugong.infra.timeseries.postgres import PostgresStore, copy_buffer

        admin = args.pg_url
        name = f"yugong_bench_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = admin.rsplit("/", 1)[0] + "/" + name
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("CREATE UNLOGGED TABLE IF NOT EXISTS raw_dummy (x int)")
                conn.execute(
                    "CREATE TABLE raw (tenant int, series int, ts bigint, "
                    "quality smallint, value float8, text text)"
                )
                t = time.perf_counter()
                for b in batches:
                    with conn.cursor().copy("COPY raw FROM STDIN (FORMAT binary)") as cp:
                        cp.write(copy_buffer(b))
                raw_s = time.perf_counter() - t
            store = PostgresStore(url)
            store_s = run_store(store, batches)
            store.close()
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        out["raw_engine"] = "postgresql binary COPY into a plain unindexed table"
    out["store_points_per_s"] = round(points / store_s)
    out["raw_points_per_s"] = round(points / raw_s)
    out["ratio_to_raw"] = round(raw_s / store_s, 3)
    if args.backend == "duckdb":
        out["target"] = ">= 1,000,000 points/s and >= 0.5 of raw"
    emit(out)


if __name__ == "__main__":
    main()
