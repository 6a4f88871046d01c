"""DuckDB time-series store: the embedded default.

Layout
- ``hot``: append-only, every write lands here with a write sequence number (``seq``).
- Latest values: kept in memory (:class:`LatestIndex`, merged once per write batch: newer ts
  wins, equal ts the higher seq) and saved to the ``latest`` table before each compaction
  pass, so ``latest`` table + ``hot`` always rebuild it on open.
- Partition tables ``p_<tenant>_<start>_<gen>``, one per tenant and closed time period,
  sorted by (series, ts) and free of duplicates: the min/max index of each row group then
  skips every other series, and runs of one series compress to a few bits per column.
  The ``catalog`` table lists them. Compaction moves closed hours out of ``hot`` into hourly
  partitions and merges a closed day's hours into one daily partition.

Any row still in ``hot`` is newer than every partition row with the same (series, ts):
compaction moves all rows of a period up to a snapshot sequence at once, under a write lock
that makes sequence order equal commit order. So reads only deduplicate the hot rows and let
them shadow partition rows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from yugong.core.samples import POINT_SCHEMA
from yugong.core.timeutil import now_us
from yugong.infra.timeseries import _shared as sh
from yugong.infra.timeseries._latest import LATEST_SCHEMA, LatestIndex, newest_rows
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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hot (
    tenant INTEGER NOT NULL, series INTEGER NOT NULL, ts BIGINT NOT NULL,
    value DOUBLE, text VARCHAR, quality UTINYINT NOT NULL, seq BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS latest (
    series INTEGER NOT NULL, tenant INTEGER NOT NULL, ts BIGINT NOT NULL,
    value DOUBLE, text VARCHAR, quality UTINYINT NOT NULL, seq BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS catalog (
    tenant INTEGER NOT NULL, start_us BIGINT NOT NULL, end_us BIGINT NOT NULL,
    name VARCHAR NOT NULL, rows BIGINT NOT NULL);
"""

_COLS = "series, ts, value, text, quality"
_RECLAIM_MIN_BYTES = 64 << 20


def _arrow(cur: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    cur.complete()  # a pending execute() result would block the relation API
    table: pa.Table = cur.sql(sql).to_arrow_table()
    return table


class DuckDBStore(TimeSeriesStore):
    """Time series in one DuckDB file (or ``:memory:``).

    ``compact_interval_s``: period of the background compaction thread (0: only on
    ``compact()``). ``grace_s``: how long after an hour ends late samples are still awaited
    before the hour is compacted. ``late_merge_s``: how long late samples for an already
    merged day may wait in ``hot`` before the day's partition is rewritten with them.
    """

    def __init__(
        self,
        path: str,
        *,
        compact_interval_s: float = 30,
        grace_s: float = 300,
        late_merge_s: float = 3600,
        threads: int | None = None,
    ) -> None:
        self.path = path
        config: dict[str, Any] = {}
        if threads:
            config["threads"] = threads
        self._con = duckdb.connect(path, config=config)
        if path and not path.startswith(":memory:"):
            self._con = self._reclaim_space(self._con, path, config)
        self._grace_us = int(grace_s * 1e6)
        self._late_merge_us = int(late_merge_s * 1e6)
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()
        self._write_lock = threading.Lock()  # seq order == commit order
        self._maint_lock = threading.Lock()  # one maintenance operation at a time
        self._late_seen: dict[tuple[int, int], int] = {}  # (tenant, day) -> first seen, µs
        self._closed = False
        self._con.execute(_SCHEMA)
        row = self._con.execute(
            "SELECT greatest((SELECT max(seq) FROM hot), (SELECT max(seq) FROM latest))"
        ).fetchone()
        self._next_seq = int(row[0] or 0) + 1 if row else 1
        self._latest = LatestIndex()
        self._latest.replace(_arrow(self._con, "SELECT * FROM latest"))
        self._latest.merge(
            _arrow(
                self._con,
                (
                    "SELECT series, tenant, ts, value, text, quality, seq FROM hot QUALIFY "
                    "row_number() OVER (PARTITION BY series ORDER BY ts DESC, seq DESC) = 1"
                ),
            )
        )
        self._latest_saved = self._next_seq  # seq the saved ``latest`` table is current to
        gen = self._con.execute(
            "SELECT max(CAST(split_part(name, '_', 4) AS BIGINT)) FROM catalog"
        ).fetchone()
        self._gen = int(gen[0] or 0) if gen else 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if compact_interval_s > 0:
            self._thread = threading.Thread(
                target=self._compact_loop,
                args=(compact_interval_s,),
                name="yugong-ts-compact",
                daemon=True,
            )
            self._thread.start()

    # -- plumbing --------------------------------------------------------------------------

    @staticmethod
    def _reclaim_space(
        con: duckdb.DuckDBPyConnection, path: str, config: dict[str, Any]
    ) -> duckdb.DuckDBPyConnection:
        """Rewrite the file when most of it is free blocks (DuckDB reuses freed blocks but
        never shrinks the file; compaction frees whole tables). Done at open, while the
        store is the only user; the original stays untouched until the atomic rename."""
        row = con.execute(
            "SELECT total_blocks, free_blocks, block_size, database_name "
            "FROM pragma_database_size()"
        ).fetchall()
        if not row:
            return con
        total, free, block, name = row[0]
        if free * 2 <= total or free * block < _RECLAIM_MIN_BYTES:
            return con
        fresh = path + ".rewrite"
        for leftover in (fresh, fresh + ".wal"):
            if os.path.exists(leftover):
                os.remove(leftover)
        con.execute("ATTACH ? AS yg_fresh", [fresh])
        con.execute(f'COPY FROM DATABASE "{name}" TO yg_fresh')
        con.execute("DETACH yg_fresh")
        con.close()
        os.replace(fresh, path)
        log.info("rewrote %s: %d of %d blocks were free", path, free, total)
        return duckdb.connect(path, config=config)

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """One DuckDB connection per thread (cursors share the database and its cache)."""
        if self._closed:
            raise RuntimeError("the time-series store is closed")
        cur: duckdb.DuckDBPyConnection | None = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._con.cursor()
            self._local.cur = cur
            with self._cursors_lock:
                self._cursors.append(cur)
        return cur

    @contextlib.contextmanager
    def _tx(self) -> Iterator[duckdb.DuckDBPyConnection]:
        cur = self._cursor()
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
        except BaseException:
            cur.execute("ROLLBACK")
            raise
        cur.execute("COMMIT")

    def _compact_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.compact()
            except Exception:  # keep the thread alive; the next pass retries
                log.exception("time-series compaction failed")

    # -- writes ----------------------------------------------------------------------------

    def write(self, batch: pa.Table) -> int:
        table = sh.prepare_batch(batch)
        n = table.num_rows
        if n == 0:
            return 0
        cur = self._cursor()
        newest = newest_rows(table.column("series").to_numpy(), table.column("ts").to_numpy())
        with self._write_lock:
            seq0 = self._next_seq
            seq = np.arange(seq0, seq0 + n, dtype=np.int64)
            table = table.append_column("seq", pa.array(seq))
            cur.complete()  # a pending execute() result would block register()
            cur.register("_yg_batch", table)
            try:
                cur.execute("INSERT INTO hot SELECT * FROM _yg_batch")
            finally:
                cur.unregister("_yg_batch")
            self._next_seq = seq0 + n
            self._latest.merge(table.take(newest).select(LATEST_SCHEMA.names))
        return n

    # -- reads -----------------------------------------------------------------------------

    def latest(self, series: Sequence[int]) -> pa.Table:
        ids = sh.series_array(series)
        if not ids.size:
            return POINT_SCHEMA.empty_table()
        return self._latest.get(ids)

    def _source(
        self,
        cur: duckdb.DuckDBPyConnection,
        ids: npt.NDArray[np.int32],
        start_us: int,
        end_us: int,
        extra: str = "TRUE",
    ) -> str:
        """SQL yielding the deduplicated samples of ``ids`` in [start, end): hot rows
        (newest write per key) plus partition rows no hot row shadows."""
        where = (
            f"series IN ({sh.in_list(ids)}) AND ts >= {int(start_us)} "
            f"AND ts < {int(end_us)} AND {extra}"
        )
        tenants = self._latest.tenants(ids)
        parts: list[str] = []
        if tenants:
            parts = [
                r[0]
                for r in cur.execute(
                    "SELECT name FROM catalog WHERE tenant IN ({}) AND start_us < ? AND end_us > ? "
                    "ORDER BY start_us".format(",".join(str(int(t)) for t in tenants)),
                    [int(end_us), int(start_us)],
                ).fetchall()
            ]
        hot = (
            f"SELECT {_COLS} FROM (SELECT {_COLS}, seq FROM hot WHERE {where}) "
            "QUALIFY row_number() OVER (PARTITION BY series, ts ORDER BY seq DESC) = 1"
        )
        if not parts:
            return hot
        cold = " UNION ALL ".join(f"SELECT {_COLS} FROM {p} WHERE {where}" for p in parts)
        return (
            f"WITH h AS MATERIALIZED ({hot}) "
            f"SELECT * FROM h UNION ALL "
            f"SELECT * FROM ({cold}) c ANTI JOIN h USING (series, ts)"
        )

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
        with self._tx() as cur:
            src = self._source(cur, ids, start_us, end_us, sh.cursor_predicate(after, order))
            table = _arrow(
                cur,
                f"SELECT * FROM ({src}) ORDER BY series {direction}, "
                f"ts {direction} LIMIT {int(limit) + 1}",
            )
        return sh.to_page(table, limit)

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
        exprs = {**sh.AGG_SQL, "first": "arg_min(value, ts)", "last": "arg_max(value, ts)"}
        cols = ", ".join(f'{exprs[f]} AS "{f}"' for f in funcs)
        if ids.size:
            with self._tx() as cur:
                src = self._source(cur, ids, start_us, end_us)
                table = _arrow(
                    cur,
                    f"SELECT series, ts - ((ts % {b}) + {b}) % {b} AS bucket, {cols} "
                    f"FROM ({src}) WHERE quality <= 1 AND value IS NOT NULL "
                    "GROUP BY ALL ORDER BY series, bucket",
                )
        else:
            table = sh.agg_schema(funcs).empty_table()
        return sh.shape_aggregates(table, ids, start_us, end_us, b, funcs, fill)

    # -- maintenance -----------------------------------------------------------------------

    def _new_name(self, tenant: int, start_us: int) -> str:
        self._gen += 1
        t = f"n{-tenant}" if tenant < 0 else str(tenant)
        s = f"n{-start_us}" if start_us < 0 else str(start_us)
        return f"p_{t}_{s}_{self._gen}"

    def compact(self) -> None:
        with self._maint_lock:
            if self._closed:
                return
            with self._write_lock:
                snapshot = self._next_seq - 1  # every seq up to here is committed
                latest = self._latest.snapshot()
            now = now_us()
            cur = self._cursor()
            if self._latest_saved <= snapshot:
                # Saved before hot rows move out: ``latest`` table + ``hot`` stay complete.
                with self._tx() as tx:
                    tx.complete()
                    tx.register("_yg_latest", latest)
                    tx.execute("DELETE FROM latest")
                    tx.execute("INSERT INTO latest SELECT * FROM _yg_latest")
                    tx.unregister("_yg_latest")
                self._latest_saved = snapshot + 1
            H = sh.HOUR_US
            hours = cur.execute(
                f"SELECT tenant, (ts - ((ts % {H}) + {H}) % {H}) // {H} AS h, "
                f"count(*) FROM hot WHERE seq <= {snapshot} GROUP BY ALL ORDER BY ALL"
            ).fetchall()
            parts = cur.execute(
                "SELECT tenant, start_us, end_us, name, rows FROM catalog"
            ).fetchall()
            daily = {(t, s): (name, rows) for t, s, e, name, rows in parts if e - s == sh.DAY_US}
            late: dict[tuple[int, int], int] = {}
            for tenant, hour, count in hours:
                start = hour * sh.HOUR_US
                if start + sh.HOUR_US + self._grace_us > now:
                    continue  # still open: late samples may come
                day = sh.bucket_floor(start, sh.DAY_US)
                if (tenant, day) in daily:
                    late[(tenant, day)] = late.get((tenant, day), 0) + count
                else:
                    self._move_hot(tenant, start, start + sh.HOUR_US, snapshot)
            for (tenant, day), count in late.items():
                first_seen = self._late_seen.setdefault((tenant, day), now)
                rows = daily[(tenant, day)][1]
                if count >= max(100_000, rows // 100) or now - first_seen >= self._late_merge_us:
                    self._move_hot(tenant, day, day + sh.DAY_US, snapshot)
                    self._late_seen.pop((tenant, day), None)
            self._merge_days(now)
            with contextlib.suppress(duckdb.Error):  # busy: the next pass checkpoints
                cur.execute("CHECKPOINT")

    def _move_hot(self, tenant: int, start: int, end: int, snapshot: int) -> None:
        """Rewrite the partition of [start, end) with the hot rows of that period."""
        with self._tx() as cur:
            old = cur.execute(
                "SELECT name FROM catalog WHERE tenant = ? AND start_us = ? AND end_us = ?",
                [tenant, start, end],
            ).fetchall()
            name = self._new_name(tenant, start)
            where = f"tenant = {tenant} AND ts >= {start} AND ts < {end} AND seq <= {snapshot}"
            hot = (
                f"SELECT {_COLS} FROM (SELECT {_COLS}, seq FROM hot WHERE {where}) "
                "QUALIFY row_number() OVER (PARTITION BY series, ts ORDER BY seq DESC) = 1"
            )
            if old:
                src = (
                    f"WITH h AS MATERIALIZED ({hot}) SELECT * FROM h UNION ALL "
                    f"SELECT * FROM {old[0][0]} ANTI JOIN h USING (series, ts)"
                )
            else:
                src = hot
            cur.execute(f"CREATE TABLE {name} AS SELECT * FROM ({src}) ORDER BY series, ts")
            self._register(cur, name, tenant, start, end, [o[0] for o in old])
            cur.execute(f"DELETE FROM hot WHERE {where}")

    def _merge_days(self, now: int) -> None:
        """Fold the hourly partitions of each closed day into one daily partition."""
        cur = self._cursor()
        rows = cur.execute(
            f"SELECT tenant, start_us - ((start_us % {sh.DAY_US}) + {sh.DAY_US}) % {sh.DAY_US} "
            f"AS day, list(name ORDER BY start_us) FROM catalog WHERE end_us - start_us = "
            f"{sh.HOUR_US} GROUP BY ALL"
        ).fetchall()
        for tenant, day, names in rows:
            if day + sh.DAY_US + self._grace_us > now:
                continue
            with self._tx() as tx:
                name = self._new_name(tenant, day)
                union = " UNION ALL ".join(f"SELECT {_COLS} FROM {n}" for n in names)
                tx.execute(f"CREATE TABLE {name} AS SELECT * FROM ({union}) ORDER BY series, ts")
                self._register(tx, name, tenant, day, day + sh.DAY_US, names)

    @staticmethod
    def _register(
        cur: duckdb.DuckDBPyConnection,
        name: str,
        tenant: int,
        start: int,
        end: int,
        replaced: list[str],
    ) -> None:
        count = cur.execute(f"SELECT count(*) FROM {name}").fetchone()
        for old in replaced:
            cur.execute(f"DROP TABLE {old}")
            cur.execute("DELETE FROM catalog WHERE name = ?", [old])
        cur.execute(
            "INSERT INTO catalog VALUES (?, ?, ?, ?, ?)",
            [tenant, start, end, name, count[0] if count else 0],
        )

    def drop_before(self, tenant: int, cutoff_us: int) -> None:
        tenant, cutoff = int(tenant), int(cutoff_us)
        with self._maint_lock:
            with self._tx() as cur:
                for name, end in cur.execute(
                    "SELECT name, end_us FROM catalog WHERE tenant = ? AND start_us < ?",
                    [tenant, cutoff],
                ).fetchall():
                    if end <= cutoff:
                        cur.execute(f"DROP TABLE {name}")
                        cur.execute("DELETE FROM catalog WHERE name = ?", [name])
                    else:
                        cur.execute(f"DELETE FROM {name} WHERE ts < {cutoff}")
                        cur.execute(
                            f"UPDATE catalog SET rows = (SELECT count(*) FROM {name}) "
                            "WHERE name = ?",
                            [name],
                        )
            with self._tx() as cur:
                cur.execute("DELETE FROM hot WHERE tenant = ? AND ts < ?", [tenant, cutoff])
            self._latest.remove(tenant, before_us=cutoff)
            self._forget_latest(f"tenant = {tenant} AND ts < {cutoff}")

    def delete_series(self, tenant: int, series: Sequence[int]) -> None:
        ids = sh.series_array(series)
        if not ids.size:
            return
        tenant, where = int(tenant), f"series IN ({sh.in_list(ids)})"
        with self._maint_lock:
            with self._tx() as cur:
                for (name,) in cur.execute(
                    "SELECT name FROM catalog WHERE tenant = ?", [tenant]
                ).fetchall():
                    deleted = cur.execute(f"DELETE FROM {name} WHERE {where}").fetchone()
                    if deleted and deleted[0]:
                        cur.execute(
                            "UPDATE catalog SET rows = rows - ? WHERE name = ?", [deleted[0], name]
                        )
            with self._tx() as cur:
                cur.execute(f"DELETE FROM hot WHERE tenant = {tenant} AND {where}")
            self._latest.remove(tenant, series=ids)
            self._forget_latest(f"tenant = {tenant} AND {where}")

    def _forget_latest(self, where: str) -> None:
        with self._tx() as cur:
            cur.execute(f"DELETE FROM latest WHERE {where}")

    def stats(self) -> StoreStats:
        cur = self._cursor()
        row = cur.execute(
            "SELECT (SELECT coalesce(sum(rows), 0) FROM catalog), (SELECT count(*) FROM hot)"
        ).fetchone()
        cold, hot = (int(row[0]), int(row[1])) if row else (0, 0)
        if self.path in ("", ":memory:") or self.path.startswith(":memory:"):
            size = cur.execute(
                "SELECT used_blocks * block_size FROM pragma_database_size()"
            ).fetchone()
            on_disk = int(size[0]) if size else 0
        else:
            on_disk = sum(
                os.path.getsize(p) for p in (self.path, self.path + ".wal") if os.path.exists(p)
            )
        return StoreStats(rows=cold + hot, bytes_on_disk=on_disk, hot_rows=hot)

    def stored_bytes(self, tenant: int) -> int:
        """Estimate: the tenant's rows (partitions and ``hot``) times the database's bytes
        per row; partitions share one file, so there is no per-tenant file size."""
        row = (
            self._cursor()
            .execute(
                "SELECT (SELECT coalesce(sum(rows), 0) FROM catalog WHERE tenant = ?), "
                "(SELECT count(*) FROM hot WHERE tenant = ?)",
                [int(tenant), int(tenant)],
            )
            .fetchone()
        )
        mine = int(row[0]) + int(row[1]) if row else 0
        stats = self.stats()
        return stats.bytes_on_disk * mine // stats.rows if stats.rows and mine else 0

    def close(self) -> None:
        if self._closed:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._maint_lock, self._write_lock:
            self._closed = True
            with self._cursors_lock:
                for cur in self._cursors:
                    with contextlib.suppress(duckdb.Error):
                        cur.close()
                self._cursors.clear()
            self._con.close()
