"""PostgreSQL time-series store (psycopg 3).

``ts_samples`` is range-partitioned by time into daily partitions created on demand
(``ts_samples_d<day number>``), or a TimescaleDB hypertable with daily chunks when that
extension is available. The primary key (series, ts) makes one series' range an index range
scan and gives last-write-wins through ``INSERT ... ON CONFLICT DO UPDATE``.

Writes: the batch is deduplicated and sorted by (series, ts) in NumPy (the later row wins),
encoded vectorised into PostgreSQL's binary COPY format, copied into a temporary staging
table and merged with one upsert; ``ts_latest`` gets one upsert per batch with the newest row
of each series. Partitions hold every tenant, so retention deletes a tenant's rows in chunks
and drops a partition outright only when nobody else has rows in it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
import pyarrow as pa

from yugong.core.samples import POINT_SCHEMA
from yugong.core.timeutil import now_us
from yugong.infra.timeseries import _shared as sh
from yugong.infra.timeseries.base import (
    AggFunc,
    Cursor,
    Fill,
    Order,
    Page,
    StoreStats,
    TimeSeriesStore,
)

log = logging.getLogger(__name__)

_COLUMNS = (
    "tenant int NOT NULL, series int NOT NULL, ts bigint NOT NULL, "
    "quality smallint NOT NULL, value float8, text text"
)
_COPY_COLS = "tenant, series, ts, quality, value, text"
_DELETE_CHUNK = 50_000

_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_TRAILER = b"\xff\xff"
# Fixed-width head of each COPY record: field count, then (length, value) of the four
# non-null columns, then the length word of ``value`` (8, or -1 when null).
_HEAD = np.dtype(
    [
        ("n", ">i2"),
        ("l1", ">i4"),
        ("tenant", ">i4"),
        ("l2", ">i4"),
        ("series", ">i4"),
        ("l3", ">i4"),
        ("ts", ">i8"),
        ("l4", ">i4"),
        ("quality", ">i2"),
        ("l5", ">i4"),
    ]
)


def _scatter(pieces: list[tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]], n: int) -> bytes:
    """Concatenate per-row variable-length pieces row by row, vectorised.

    Each piece is (bytes of all rows back to back, byte length per row)."""
    lengths = np.zeros(n, dtype=np.int64)
    for _, ln in pieces:
        lengths += ln
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    out = np.empty(int(lengths.sum()), dtype=np.uint8)
    at = starts.copy()
    for data, ln in pieces:
        if data.size:
            src_start = np.zeros(n, dtype=np.int64)
            np.cumsum(ln[:-1], out=src_start[1:])
            dest = np.arange(data.size, dtype=np.int64) + np.repeat(at - src_start, ln)
            out[dest] = data
        at += ln
    return out.tobytes()


def copy_buffer(table: pa.Table) -> bytes:
    """A batch (SAMPLE_SCHEMA) as a binary COPY stream for columns ``_COPY_COLS``."""
    n = table.num_rows
    head = np.empty(n, dtype=_HEAD)
    head["n"], head["l1"], head["l2"], head["l3"], head["l4"] = 6, 4, 4, 8, 2
    head["tenant"] = table.column("tenant").to_numpy()
    head["series"] = table.column("series").to_numpy()
    head["ts"] = table.column("ts").to_numpy()
    head["quality"] = table.column("quality").to_numpy()
    value = table.column("value").combine_chunks()
    has_value = value.is_valid().to_numpy(zero_copy_only=False)
    head["l5"] = np.where(has_value, 8, -1)
    vbytes = value.to_numpy(zero_copy_only=False)[has_value].astype(">f8").view(np.uint8)
    text = table.column("text").combine_chunks()
    if text.null_count == n:
        tlen = np.full(n, -1, dtype=">i4")
        tbytes = np.empty(0, dtype=np.uint8)
        tsize = np.zeros(n, dtype=np.int64)
    else:
        text = text.cast(pa.large_string())
        offsets = np.frombuffer(text.buffers()[1], dtype=np.int64)[
            text.offset : text.offset + n + 1
        ]
        tsize = np.diff(offsets)
        has_text = text.is_valid().to_numpy(zero_copy_only=False)
        tlen = np.where(has_text, tsize, -1).astype(">i4")
        tbytes = np.frombuffer(text.buffers()[2], dtype=np.uint8)[offsets[0] : offsets[-1]]
    fixed = np.int64(_HEAD.itemsize)
    body = _scatter(
        [
            (head.view(np.uint8), np.full(n, fixed)),
            (vbytes, np.where(has_value, 8, 0).astype(np.int64)),
            (tlen.view(np.uint8), np.full(n, 4, dtype=np.int64)),
            (tbytes, tsize.astype(np.int64)),
        ],
        n,
    )
    return _HEADER + body + _TRAILER


def _dedup_sorted(table: pa.Table) -> tuple[pa.Table, npt.NDArray[np.intp]]:
    """Sort by (series, ts) keeping the later row of equal keys; also the index (into the
    result) of each series' newest row."""
    series = table.column("series").to_numpy()
    ts = table.column("ts").to_numpy()
    order = np.argsort(ts, kind="stable")
    order = order[np.argsort(series[order], kind="stable")]
    s, t = series[order], ts[order]
    last_of_key = np.r_[(s[1:] != s[:-1]) | (t[1:] != t[:-1]), True]
    keep = order[last_of_key]
    out = table.take(keep)
    s = s[last_of_key]
    newest = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    return out, newest


def _day_name(day: int) -> str:
    return f"ts_samples_d{day}" if day >= 0 else f"ts_samples_dn{-day}"


class PostgresStore(TimeSeriesStore):
    def __init__(self, url: str, *, compact_interval_s: float = 300) -> None:
        self.url = url
        self._local = threading.local()
        self._conns: list[psycopg.Connection[Any]] = []
        self._conns_lock = threading.Lock()
        self._days: set[int] = set()
        self._days_lock = threading.Lock()
        self._closed = False
        with self._conn() as conn:
            self.timescale = self._create_schema(conn)
            if not self.timescale:
                self._days.update(self._existing_days(conn))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if compact_interval_s > 0:
            self._thread = threading.Thread(
                target=self._loop,
                args=(compact_interval_s,),
                name="yugong-ts-maintain",
                daemon=True,
            )
            self._thread.start()

    # -- plumbing --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """This thread's connection, in a transaction committed on success."""
        if self._closed:
            raise RuntimeError("the time-series store is closed")
        conn: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = psycopg.connect(self.url, autocommit=True)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        with conn.transaction():
            yield conn

    def _loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.compact()
            except Exception:
                log.exception("time-series maintenance failed")

    @staticmethod
    def _create_schema(conn: psycopg.Connection[Any]) -> bool:
        # Serialise concurrent first opens of the same database.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('yugong.ts_schema'))")
        exists = conn.execute("SELECT to_regclass('ts_samples')").fetchone()
        timescale = False
        if exists and exists[0]:
            row = (
                conn.execute(
                    "SELECT 1 FROM pg_extension e WHERE e.extname = 'timescaledb' AND EXISTS ("
                    "SELECT 1 FROM timescaledb_information.hypertables "
                    "WHERE hypertable_name = 'ts_samples')"
                ).fetchone()
                if conn.execute(
                    "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'"
                ).fetchone()
                else None
            )
            timescale = row is not None
        else:
            available = conn.execute(
                "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
            ).fetchone()
            if available:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                conn.execute(f"CREATE TABLE ts_samples ({_COLUMNS}, PRIMARY KEY (series, ts))")
                conn.execute(
                    "SELECT create_hypertable('ts_samples', by_range('ts', %s))", [sh.DAY_US]
                )
                timescale = True
            else:
                conn.execute(
                    f"CREATE TABLE ts_samples ({_COLUMNS}, PRIMARY KEY (series, ts)) "
                    "PARTITION BY RANGE (ts)"
                )
        conn.execute(
            "CREATE TABLE IF NOT EXISTS ts_latest (series int PRIMARY KEY, "
            "tenant int NOT NULL, ts bigint NOT NULL, quality smallint NOT NULL, "
            "value float8, text text)"
        )
        conn.execute("CREATE INDEX IF NOT EXISTS ts_latest_tenant ON ts_latest (tenant)")
        return timescale

    @staticmethod
    def _existing_days(conn: psycopg.Connection[Any]) -> list[int]:
        rows = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'ts_samples'::regclass"
        ).fetchall()
        days = []
        for (name,) in rows:
            tail = name.removeprefix("ts_samples_d")
            days.append(-int(tail[1:]) if tail.startswith("n") else int(tail))
        return days

    def _ensure_days(self, ts: npt.NDArray[np.int64]) -> None:
        """Create the daily partitions these timestamps fall in (DDL only on a new day)."""
        if self.timescale or not ts.size:
            return
        lo, hi = int(ts.min()) // sh.DAY_US, int(ts.max()) // sh.DAY_US
        days = range(lo, hi + 1) if hi - lo < 4 else np.unique(ts // sh.DAY_US).tolist()
        missing = [d for d in days if d not in self._days]
        if not missing:
            return
        with self._days_lock:
            for day in missing:
                if day in self._days:
                    continue
                # Own connection and transaction: a racing creator just makes this a no-op.
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(
                        f"CREATE TABLE IF NOT EXISTS {_day_name(day)} PARTITION OF ts_samples "
                        f"FOR VALUES FROM ({day * sh.DAY_US}) TO ({(day + 1) * sh.DAY_US})"
                    )
                self._days.add(day)

    # -- writes ----------------------------------------------------------------------------

    def write(self, batch: pa.Table) -> int:
        table = sh.prepare_batch(batch)
        n = table.num_rows
        if n == 0:
            return 0
        rows, newest = _dedup_sorted(table)
        self._ensure_days(rows.column("ts").to_numpy())
        data = copy_buffer(rows)
        head = copy_buffer(rows.take(newest))
        with self._conn() as conn:
            conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS ts_stage ({_COLUMNS}) ON COMMIT DELETE ROWS"
            )
            conn.execute(
                f"CREATE TEMP TABLE IF NOT EXISTS ts_stage_latest ({_COLUMNS}) "
                "ON COMMIT DELETE ROWS"
            )
            with conn.cursor() as cur:
                with cur.copy(f"COPY ts_stage ({_COPY_COLS}) FROM STDIN (FORMAT binary)") as cp:
                    cp.write(data)
                with cur.copy(
                    f"COPY ts_stage_latest ({_COPY_COLS}) FROM STDIN (FORMAT binary)"
                ) as cp:
                    cp.write(head)
                cur.execute(
                    f"INSERT INTO ts_samples ({_COPY_COLS}) SELECT {_COPY_COLS} FROM ts_stage "
                    "ON CONFLICT (series, ts) DO UPDATE SET tenant = EXCLUDED.tenant, "
                    "quality = EXCLUDED.quality, value = EXCLUDED.value, text = EXCLUDED.text"
                )
                # Equal ts: this batch is the later write, so >=.
                cur.execute(
                    f"INSERT INTO ts_latest ({_COPY_COLS}) SELECT {_COPY_COLS} "
                    "FROM ts_stage_latest ON CONFLICT (series) DO UPDATE SET "
                    "tenant = EXCLUDED.tenant, ts = EXCLUDED.ts, quality = EXCLUDED.quality, "
                    "value = EXCLUDED.value, text = EXCLUDED.text "
                    "WHERE EXCLUDED.ts >= ts_latest.ts"
                )
        return n

    # -- reads -----------------------------------------------------------------------------

    @staticmethod
    def _points(rows: list[tuple[Any, ...]]) -> pa.Table:
        if not rows:
            return POINT_SCHEMA.empty_table()
        cols = list(zip(*rows, strict=True))
        return pa.Table.from_arrays(
            [pa.array(c, type=f.type) for c, f in zip(cols, POINT_SCHEMA, strict=True)],
            schema=POINT_SCHEMA,
        )

    def latest(self, series: Sequence[int]) -> pa.Table:
        ids = sh.series_array(series)
        if not ids.size:
            return POINT_SCHEMA.empty_table()
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT series, ts, value, text, quality FROM ts_latest "
                "WHERE series = ANY(%s) ORDER BY series",
                [ids.tolist()],
            ).fetchall()
        return self._points(rows)

    def range(
        self,
        series: Sequence[int],
        start_us: int,
        end_us: int,
        *,
        limit: int = 10_000,
        after: Cursor | None = None,
        order: Order = "asc",
    ) -> Page:
        ids = sh.series_array(series)
        sh.check_range(start_us, end_us)
        sh.check_range_args(limit, order)
        if not ids.size:
            return Page(POINT_SCHEMA.empty_table(), None)
        direction = "ASC" if order == "asc" else "DESC"
        sql = (
            f"SELECT series, ts, value, text, quality FROM ts_samples WHERE "
            f"series = ANY(%s) AND ts >= %s AND ts < %s AND "
            f"{sh.cursor_predicate(after, order)} "
            f"ORDER BY series {direction}, ts {direction} LIMIT {int(limit) + 1}"
        )
        with self._conn() as conn:
            table = self._copy_out(conn, sql, [ids.tolist(), int(start_us), int(end_us)])
        return sh.to_page(table, limit)

    @staticmethod
    def _copy_out(conn: psycopg.Connection[Any], sql: str, params: list[Any]) -> pa.Table:
        """Run a point query through binary COPY and decode it with NumPy: every column is
        fixed-width there (value as NaN + null flag); text goes by a second, usually empty,
        query in the same snapshot."""
        inner = psycopg.ClientCursor(conn).mogrify(sql, params)
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        fixed = (
            f"SELECT series, ts, coalesce(value, 'NaN'::float8), value IS NULL, quality, "
            f"text IS NOT NULL FROM ({inner}) q"
        )
        buf = bytearray()
        with conn.cursor() as cur, cur.copy(f"COPY ({fixed}) TO STDOUT (FORMAT binary)") as cp:
            for chunk in cp:
                buf += chunk
        rec = np.dtype(
            [
                ("n", ">i2"),
                ("l1", ">i4"),
                ("series", ">i4"),
                ("l2", ">i4"),
                ("ts", ">i8"),
                ("l3", ">i4"),
                ("value", ">f8"),
                ("l4", ">i4"),
                ("isnull", "u1"),
                ("l5", ">i4"),
                ("quality", ">i2"),
                ("l6", ">i4"),
                ("hastext", "u1"),
            ]
        )
        body = memoryview(buf)[19 : len(buf) - 2]  # header (no extension), trailer
        arr = np.frombuffer(body, dtype=rec)
        n = len(arr)
        texts: pa.Array = pa.nulls(n, pa.string())
        has_text = arr["hastext"].astype(bool)
        if has_text.any():
            rows = conn.execute(f"SELECT text FROM ({inner}) q WHERE text IS NOT NULL").fetchall()
            col = np.full(n, None, dtype=object)
            col[has_text] = [r[0] for r in rows]
            texts = pa.array(col.tolist(), pa.string())
        isnull = arr["isnull"].astype(bool)
        return pa.Table.from_arrays(
            [
                pa.array(arr["series"].astype(np.int32)),
                pa.array(arr["ts"].astype(np.int64)),
                pa.array(arr["value"].astype(np.float64), mask=isnull),
                texts,
                pa.array(arr["quality"].astype(np.uint8)),
            ],
            schema=POINT_SCHEMA,
        )

    def aggregate(
        self,
        series: Sequence[int],
        start_us: int,
        end_us: int,
        bucket_us: int,
        funcs: Sequence[AggFunc] = ("avg",),
        *,
        fill: Fill = "none",
    ) -> pa.Table:
        ids = sh.series_array(series)
        sh.check_range(start_us, end_us)
        funcs = sh.check_agg_args(bucket_us, funcs, fill)
        b = int(bucket_us)
        exprs = {
            **sh.AGG_SQL,
            "first": "(array_agg(value ORDER BY ts))[1]",
            "last": "(array_agg(value ORDER BY ts DESC))[1]",
        }
        cols = ", ".join(f"{exprs[f]}" for f in funcs)
        schema = sh.agg_schema(funcs)
        if ids.size:
            with self._conn() as conn:
                rows = conn.execute(
                    f"SELECT series, ts - ((ts %% {b}) + {b}) %% {b} AS bucket, {cols} "
                    "FROM ts_samples WHERE series = ANY(%s) AND ts >= %s AND ts < %s "
                    "AND quality <= 1 AND value IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2",
                    [ids.tolist(), int(start_us), int(end_us)],
                ).fetchall()
            table = (
                pa.Table.from_arrays(
                    [
                        pa.array(c, type=f.type)
                        for c, f in zip(zip(*rows, strict=True), schema, strict=True)
                    ],
                    schema=schema,
                )
                if rows
                else schema.empty_table()
            )
        else:
            table = schema.empty_table()
        return sh.shape_aggregates(table, ids, start_us, end_us, b, funcs, fill)

    # -- maintenance -----------------------------------------------------------------------

    def compact(self) -> None:
        """Create yesterday's to tomorrow's partitions ahead, so writes rarely wait on DDL."""
        today = now_us() // sh.DAY_US
        self._ensure_days(np.array([(today - 1) * sh.DAY_US, (today + 1) * sh.DAY_US]))

    def _chunked_delete(self, table: str, where: str, params: list[Any]) -> None:
        """Delete in short transactions so writers are never held up for long."""
        while True:
            with self._conn() as conn:
                cur = conn.execute(
                    f"DELETE FROM {table} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {table} "
                    f"WHERE {where} LIMIT {_DELETE_CHUNK}))",
                    params,
                )
                if cur.rowcount < _DELETE_CHUNK:
                    return

    def drop_before(self, tenant: int, cutoff_us: int) -> None:
        tenant, cutoff = int(tenant), int(cutoff_us)
        if self.timescale:
            self._chunked_delete("ts_samples", "tenant = %s AND ts < %s", [tenant, cutoff])
        else:
            with self._conn() as conn:
                days = sorted(self._existing_days(conn))
            for day in days:
                start, end = day * sh.DAY_US, (day + 1) * sh.DAY_US
                if start >= cutoff:
                    continue
                name = _day_name(day)
                if end <= cutoff:
                    with self._conn() as conn:
                        others = conn.execute(
                            f"SELECT 1 FROM {name} WHERE tenant <> %s LIMIT 1", [tenant]
                        ).fetchone()
                    if not others:
                        self._drop_partition(day)
                        continue
                self._chunked_delete(name, "tenant = %s AND ts < %s", [tenant, cutoff])
        with self._conn() as conn:
            conn.execute("DELETE FROM ts_latest WHERE tenant = %s AND ts < %s", [tenant, cutoff])

    def _drop_partition(self, day: int) -> None:
        # DETACH CONCURRENTLY does not block writers of other partitions; it cannot run in
        # a transaction block, hence the autocommit connection of its own.
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE ts_samples DETACH PARTITION {_day_name(day)} CONCURRENTLY")
            conn.execute(f"DROP TABLE {_day_name(day)}")
        with self._days_lock:
            self._days.discard(day)

    def delete_series(self, tenant: int, series: Sequence[int]) -> None:
        ids = sh.series_array(series)
        if not ids.size:
            return
        params = [int(tenant), ids.tolist()]
        self._chunked_delete("ts_samples", "tenant = %s AND series = ANY(%s)", params)
        with self._conn() as conn:
            conn.execute("DELETE FROM ts_latest WHERE tenant = %s AND series = ANY(%s)", params)

    def stats(self) -> StoreStats:
        """``rows`` is exact for small tables and the planner's estimate for large ones."""
        with self._conn() as conn:
            row = conn.execute(
                "SELECT coalesce(sum(c.reltuples) FILTER (WHERE c.reltuples > 0), 0), "
                "coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "WHERE c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = "
                "'ts_samples'::regclass) OR c.relname IN ('ts_samples', 'ts_latest')"
            ).fetchone()
            estimate, size = (int(row[0]), int(row[1])) if row else (0, 0)
            if estimate < 1_000_000:
                exact = conn.execute("SELECT count(*) FROM ts_samples").fetchone()
                estimate = int(exact[0]) if exact else 0
        return StoreStats(rows=estimate, bytes_on_disk=size, hot_rows=0)

    def stored_bytes(self, tenant: int) -> int:
        """Estimate: the tenant's share of the rows of ``ts_samples`` times the size of its
        partitions with their indexes (``pg_total_relation_size``). The share is counted
        exactly below a million rows and from a 1 % block sample above."""
        stats = self.stats()
        if not stats.rows:
            return 0
        with self._conn() as conn:
            if stats.rows < 1_000_000:
                row = conn.execute(
                    "SELECT count(*) FROM ts_samples WHERE tenant = %s", [int(tenant)]
                ).fetchone()
                share = (int(row[0]) if row else 0) / stats.rows
            else:
                row = conn.execute(
                    "SELECT count(*) FILTER (WHERE tenant = %s)::float8 / greatest(count(*), 1) "
                    "FROM ts_samples TABLESAMPLE SYSTEM (1)",
                    [int(tenant)],
                ).fetchone()
                share = float(row[0]) if row else 0.0
        return int(stats.bytes_on_disk * share)

    def close(self) -> None:
        if self._closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._closed = True
        with self._conns_lock:
            for conn in self._conns:
                with contextlib.suppress(psycopg.Error):
                    conn.close()
            self._conns.clear()
