"""Query latency of the time-series store vs the same query on a plain table, same run.

Builds (once, cached by parameters) a store of ``--series`` x ``--hours`` of 1 Hz plant
signals written through ``store.write`` and compacted, plus a plain table of the same rows
in arrival order. Then measures the median of: latest of every series, one series in
1-minute buckets (avg/min/max), one series raw; and bytes per point on disk.

    python benchmarks/query.py [--series 1000] [--hours 24] [--backend duckdb|postgres]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))

from _common import DAY0_US, US, emit, median_ms, note, signal_batches


def build_duckdb(store_path: str, raw_path: str, series: int, seconds: int) -> dict:
    import duckdb

    from yugong.infra.timeseries.duckdb import DuckDBStore

    tmp_store, tmp_raw = store_path + ".building", raw_path + ".building"
    for p in (tmp_store, tmp_raw, tmp_store + ".wal", tmp_raw + ".wal"):
        if os.path.exists(p):
            os.remove(p)
    store = DuckDBStore(tmp_store, compact_interval_s=0)
    raw = duckdb.connect(tmp_raw)
    raw.execute(
        "CREATE TABLE raw (tenant INTEGER, series INTEGER, ts BIGINT, value DOUBLE, "
        "text VARCHAR, quality UTINYINT)"
    )
    t0 = time.perf_counter()
    write_s = 0.0
    points = 0
    for batch in signal_batches(series, seconds):
        t = time.perf_counter()
        store.write(batch)
        write_s += time.perf_counter() - t
        raw.register("b", batch)
        raw.execute("INSERT INTO raw SELECT * FROM b")
        raw.unregister("b")
        points += batch.num_rows
    note(f"written {points} points in {time.perf_counter() - t0:.0f}s")
    t = time.perf_counter()
    store.compact()
    compact_s = time.perf_counter() - t
    note(f"compacted in {compact_s:.0f}s")
    store.close()
    raw.execute("CHECKPOINT")
    raw.close()
    os.replace(tmp_raw, raw_path)
    size = os.path.getsize(tmp_store)
    os.replace(tmp_store, store_path)
    # The file right after the build still holds the blocks the emptied hot table and the
    # merged hourly partitions freed; the store rewrites such a file at its next open.
    return {
        "build_write_points_per_s": round(points / write_s),
        "build_compact_s": round(compact_s, 1),
        "bytes_per_point_before_reopen": round(size / points, 3),
    }


def run_duckdb(args: argparse.Namespace, seconds: int) -> dict:
    import duckdb

    from yugong.infra.timeseries.duckdb import DuckDBStore

    cache = os.path.join(args.cache_dir, f"query_duckdb_{args.series}x{args.hours}h")
    os.makedirs(cache, exist_ok=True)
    store_path, raw_path = os.path.join(cache, "store.duckdb"), os.path.join(cache, "raw.duckdb")
    out: dict = {}
    if args.rebuild or not (os.path.exists(store_path) and os.path.exists(raw_path)):
        out.update(build_duckdb(store_path, raw_path, args.series, seconds))
    else:
        note(f"using cached {cache}")
    t = time.perf_counter()
    store = DuckDBStore(store_path, compact_interval_s=0)
    out["open_s"] = round(time.perf_counter() - t, 2)
    raw = duckdb.connect(raw_path, read_only=True)
    ids = list(range(1, args.series + 1))
    one = args.series // 2 + 1
    start, end = DAY0_US, DAY0_US + seconds * US
    st = store.stats()
    points = st.rows
    out["points"] = points
    out["hot_rows"] = st.hot_rows
    out["latest_ms"] = median_ms(lambda: store.latest(ids))
    out["raw_latest_ms"] = median_ms(
        lambda: raw.sql(
            "SELECT series, arg_max(ts, ts), arg_max(value, ts), arg_max(quality, ts) FROM raw "
            "GROUP BY series"
        ).to_arrow_table(),
        repeat=5,
        warmup=1,
    )
    out["buckets_1m_ms"] = median_ms(
        lambda: store.aggregate([one], start, end, 60 * US, ("avg", "min", "max"))
    )
    out["raw_buckets_1m_ms"] = median_ms(
        lambda: raw.sql(
            f"SELECT ts // 60000000 * 60000000 AS bucket, avg(value), min(value), max(value) "
            f"FROM raw WHERE series = {one} AND ts >= {start} AND ts < {end} AND quality <= 1 "
            "GROUP BY 1 ORDER BY 1"
        ).to_arrow_table(),
        repeat=5,
        warmup=1,
    )
    page = store.range([one], start, end, limit=seconds + 1)
    assert page.table.num_rows == seconds, page.table.num_rows
    out["raw_range_rows"] = page.table.num_rows
    out["range_ms"] = median_ms(lambda: store.range([one], start, end, limit=seconds + 1))
    out["raw_range_ms"] = median_ms(
        lambda: raw.sql(
            f"SELECT series, ts, value, text, quality FROM raw WHERE series = {one} AND "
            f"ts >= {start} AND ts < {end} ORDER BY ts"
        ).to_arrow_table(),
        repeat=5,
        warmup=1,
    )
    out["bytes_per_point"] = round(st.bytes_on_disk / points, 3)
    used = (
        store._cursor()
        .execute("SELECT used_blocks * block_size FROM pragma_database_size()")
        .fetchall()[0][0]
    )
    out["bytes_per_point_used_blocks"] = round(used / points, 3)
    out["raw_bytes_per_point"] = round(os.path.getsize(raw_path) / points, 3)
    store.close()
    raw.close()
    return out


def run_postgres(args: argparse.Namespace, seconds: int) -> dict:
    import psycopg

    from yugong.infra.timeseries.postgres import PostgresStore, copy_buffer

    name = f"yugong_bench_q_{args.series}x{args.hours}h"
    admin = args.pg_url
    url = admin.rsplit("/", 1)[0] + "/" + name
    out: dict = {}
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if exists and args.rebuild:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            exists = None
        if not exists:
            conn.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(url, autocommit=True) as conn:
        built = conn.execute("SELECT to_regclass('bench_done')").fetchone()
        if not (built and built[0]):
            conn.execute("DROP TABLE IF EXISTS raw")
            conn.execute(
                "CREATE TABLE raw (tenant int, series int, ts bigint, "
                "quality smallint, value float8, text text)"
            )
            store = PostgresStore(url)
            t0, write_s, points = time.perf_counter(), 0.0, 0
            for batch in signal_batches(args.series, seconds):
                t = time.perf_counter()
                store.write(batch)
                write_s += time.perf_counter() - t
                with conn.cursor().copy("COPY raw FROM STDIN (FORMAT binary)") as cp:
                    cp.write(copy_buffer(batch))
                points += batch.num_rows
            note(f"written {points} points in {time.perf_counter() - t0:.0f}s")
            store.compact()
            store.close()
            conn.execute("VACUUM ANALYZE raw")
            conn.execute("CREATE TABLE bench_done ()")
            out["build_write_points_per_s"] = round(points / write_s)
    store = PostgresStore(url)
    conn = psycopg.connect(url, autocommit=True)
    ids = list(range(1, args.series + 1))
    one = args.series // 2 + 1
    start, end = DAY0_US, DAY0_US + seconds * US
    st = store.stats()
    out["points"] = st.rows
    out["latest_ms"] = median_ms(lambda: store.latest(ids))
    out["raw_latest_ms"] = median_ms(
        lambda: conn.execute(
            "SELECT DISTINCT ON (series) series, ts, value, quality FROM raw "
            "ORDER BY series, ts DESC"
        ).fetchall(),
        repeat=3,
        warmup=1,
    )
    out["buckets_1m_ms"] = median_ms(
        lambda: store.aggregate([one], start, end, 60 * US, ("avg", "min", "max"))
    )
    out["raw_buckets_1m_ms"] = median_ms(
        lambda: conn.execute(
            "SELECT ts / 60000000 * 60000000 AS bucket, avg(value), min(value), max(value) "
            "FROM raw WHERE series = %s AND ts >= %s AND ts < %s AND quality <= 1 GROUP BY 1 "
            "ORDER BY 1",
            [one, start, end],
        ).fetchall(),
        repeat=3,
        warmup=1,
    )
    out["range_ms"] = median_ms(lambda: store.range([one], start, end, limit=seconds + 1))
    out["raw_range_ms"] = median_ms(
        lambda: conn.execute(
            "SELECT series, ts, value, text, quality FROM raw WHERE series = %s AND ts >= %s "
            "AND ts < %s ORDER BY ts",
            [one, start, end],
        ).fetchall(),
        repeat=3,
        warmup=1,
    )
    out["bytes_per_point"] = round(st.bytes_on_disk / max(st.rows, 1), 3)
    size = conn.execute("SELECT pg_total_relation_size('raw')").fetchone()
    out["raw_bytes_per_point"] = round(size[0] / max(st.rows, 1), 3) if size else None
    out["raw_engine"] = "postgresql plain table without index (sequential scans)"
    conn.close()
    store.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int)
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--backend", choices=("duckdb", "postgres"), default="duckdb")
    ap.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "yugong-bench"))
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument(
        "--pg-url",
        default=os.environ.get("YUGONG_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
    )
    args = ap.parse_args()
    if args.series is None:  # PostgreSQL builds ~10x slower: a smaller default
        args.series = 1000 if args.backend == "duckdb" else 100
    seconds = args.hours * 3600
    result: dict = {
        "benchmark": "query",
        "backend": args.backend,
        "series": args.series,
        "hours": args.hours,
    }
    if args.backend == "duckdb":
        result.update(run_duckdb(args, seconds))
        result["raw_engine"] = "duckdb plain table in arrival order"
        result["targets"] = {
            "latest_ms": 20,
            "buckets_1m_ms": 30,
            "range_ms": 100,
            "bytes_per_point": 4,
        }
    else:
        result.update(run_postgres(args, seconds))
        if args.series != 1000 or args.hours != 24:
            result["note"] = "smaller than the DuckDB default size, to build in minutes"
    emit(result)


if __name__ == "__main__":
    main()
