"""Backend-specific layout: DuckDB partitions and compaction, PostgreSQL partitions."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np
import psycopg
import pytest

from yugong.core.samples import make_batch
from yugong.core.timeutil import now_us
from yugong.infra.timeseries.base import open_store
from yugong.infra.timeseries.duckdb import DuckDBStore
from yugong.infra.timeseries.postgres import PostgresStore

S = 1_000_000
H = 3600 * S
D = 24 * H
T0 = 1_704_067_200 * S  # 2024-01-01, a closed day


def catalog(path: str) -> list[tuple[int, int, int, int]]:
    with duckdb.connect(path, read_only=True) as con:
        return [
            tuple(r)
            for r in con.execute(
                "SELECT tenant, start_us, end_us, rows FROM catalog ORDER BY tenant, start_us"
            ).fetchall()
        ]


def test_closed_days_become_one_sorted_partition_per_tenant(tmp_path: Path) -> None:
    path = str(tmp_path / "ts.duckdb")
    store = DuckDBStore(path, compact_interval_s=0)
    store.write(make_batch(1, [2, 1, 2, 1], [T0 + 5 * H, T0 + 5 * H, T0, T0 + D], 1.0))
    store.write(make_batch(7, [9], [T0], 1.0))
    store.compact()
    assert store.stats().hot_rows == 0
    assert store.stats().rows == 5
    store.close()
    assert catalog(path) == [(1, T0, T0 + D, 3), (1, T0 + D, T0 + 2 * D, 1), (7, T0, T0 + D, 1)]
    with duckdb.connect(path, read_only=True) as con:
        name = con.execute(
            "SELECT name FROM catalog WHERE tenant = 1 AND start_us = ?", [T0]
        ).fetchall()[0][0]
        assert con.execute(f"SELECT series, ts FROM {name}").fetchall() == [
            (1, T0 + 5 * H),
            (2, T0),
            (2, T0 + 5 * H),
        ]


def test_open_hours_stay_hot_and_closed_hours_of_today_go_hourly(tmp_path: Path) -> None:
    path = str(tmp_path / "ts.duckdb")
    store = DuckDBStore(path, compact_interval_s=0, grace_s=0)
    now = now_us()
    store.write(make_batch(1, [1, 1], [now, now - 2 * H], 1.0))
    store.compact()
    assert store.stats().hot_rows == 1  # the current hour is still open
    assert store.range([1], now - 3 * H, now + S).table.num_rows == 2
    store.close()
    (tenant, start, end, rows), *_ = catalog(path)
    assert (tenant, rows) == (1, 1)
    assert end - start in (H, D)  # hourly, or daily when the hour was yesterday's
    assert start <= now - 2 * H < end


def test_late_rows_for_a_merged_day_wait_then_merge(tmp_path: Path) -> None:
    path = str(tmp_path / "ts.duckdb")
    store = DuckDBStore(path, compact_interval_s=0, late_merge_s=3600)
    store.write(make_batch(1, np.ones(10, int), T0 + np.arange(10) * S, 1.0))
    store.compact()
    store.write(make_batch(1, [1], [T0 + 3 * S], 9.0))
    store.compact()
    assert store.stats().hot_rows == 1  # one late row: not worth rewriting the day yet
    assert store.range([1], T0, T0 + D).table.column("value").to_pylist()[3] == 9.0
    store._late_merge_us = 0  # the waiting time has passed
    store.compact()
    assert store.stats().hot_rows == 0
    assert store.range([1], T0, T0 + D).table.column("value").to_pylist()[3] == 9.0
    store.close()
    assert catalog(path) == [(1, T0, T0 + D, 10)]


def test_retention_drops_whole_partitions(tmp_path: Path) -> None:
    path = str(tmp_path / "ts.duckdb")
    store = DuckDBStore(path, compact_interval_s=0)
    for d in range(3):
        store.write(make_batch(1, [1, 1], [T0 + d * D, T0 + d * D + H], 1.0))
    store.compact()
    store.drop_before(1, T0 + D + 30 * 60 * S)
    store.close()
    assert catalog(path) == [(1, T0 + D, T0 + 2 * D, 1), (1, T0 + 2 * D, T0 + 3 * D, 2)]
    with duckdb.connect(path, read_only=True) as con:
        tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
    assert len([t for t in tables if t.startswith("p_")]) == 2


def test_background_thread_compacts_and_stops_on_close(tmp_path: Path) -> None:
    store = DuckDBStore(str(tmp_path / "ts.duckdb"), compact_interval_s=0.05)
    store.write(make_batch(1, [1, 2], [T0, T0], 1.0))
    deadline = time.monotonic() + 20
    while store.stats().hot_rows and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.stats().hot_rows == 0
    store.close()
    assert store._thread is not None and not store._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        store.write(make_batch(1, [1], [T0], 1.0))


def test_open_store_urls(tmp_path: Path) -> None:
    store = open_store(f"duckdb:///{tmp_path}/a.duckdb")
    assert isinstance(store, DuckDBStore)
    store.write(make_batch(1, [1], [T0], 1.0))
    assert store.stats().bytes_on_disk > 0
    store.close()
    # Three slashes: a path relative to the working directory, as SQLAlchemy reads SQLite URLs.
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        rel = open_store("duckdb:///rel.duckdb")
        rel.close()
    finally:
        os.chdir(cwd)
    assert (tmp_path / "rel.duckdb").exists()
    mem = open_store("duckdb://:memory:")
    mem.write(make_batch(1, [1], [T0], 1.0))
    assert mem.latest([1]).num_rows == 1
    mem.close()


def test_postgres_daily_partitions_and_retention(pg_url: str) -> None:
    store = PostgresStore(pg_url, compact_interval_s=0)
    for d in range(3):
        store.write(make_batch(1, [1], [T0 + d * D], 1.0))
    store.write(make_batch(2, [2], [T0 + D], 1.0))
    with psycopg.connect(pg_url) as conn:

        def parts() -> list[str]:
            return sorted(
                r[0]
                for r in conn.execute(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'ts_samples'::regclass"
                ).fetchall()
            )

        day0 = T0 // D
        assert parts() == [f"ts_samples_d{day0 + d}" for d in range(3)]
        store.drop_before(1, T0 + 2 * D)
        conn.commit()
        # Day 0 held only tenant 1: dropped whole. Day 1 is shared with tenant 2: kept.
        assert parts() == [f"ts_samples_d{day0 + d}" for d in (1, 2)]
        assert conn.execute("SELECT tenant, ts FROM ts_samples ORDER BY ts").fetchall() == [
            (2, T0 + D),
            (1, T0 + 2 * D),
        ]
    store.close()
    reopened = PostgresStore(pg_url, compact_interval_s=0)
    assert not reopened.timescale
    assert reopened.range([1, 2], T0, T0 + 3 * D).table.num_rows == 2
    reopened.close()


def test_mostly_free_file_is_rewritten_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yugong.infra.timeseries.duckdb as mod

    path = str(tmp_path / "ts.duckdb")
    store = DuckDBStore(path, compact_interval_s=0)
    n = 600_000
    store.write(
        make_batch(
            1,
            np.arange(n) % 50,
            T0 + np.arange(n) * (3 * D // n),
            np.random.default_rng(1).random(n),
        )
    )
    store.compact()
    store.drop_before(1, T0 + 2 * D)  # two of three daily partitions go: their blocks free
    store.compact()
    expect = store.range([7], T0, T0 + 3 * D, limit=n).table
    store.close()
    before = Path(path).stat().st_size
    monkeypatch.setattr(mod, "_RECLAIM_MIN_BYTES", 0)
    again = DuckDBStore(path, compact_interval_s=0)
    assert Path(path).stat().st_size < before
    assert again.range([7], T0, T0 + 3 * D, limit=n).table.equals(expect)
    assert again.latest([7]).num_rows == 1
    again.close()
