"""The batched writer against a real DuckDB store: flush by size and by time, flush()
durability, backpressure, write errors counted."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from yugong.core.errors import Unavailable
from yugong.core.samples import make_batch
from yugong.infra.timeseries import TimeSeriesStore, open_store
from yugong.platform.ingest.writer import BatchedWriter

END = 2**62


def batch(n: int, series: int = 1, start: int = 0) -> pa.Table:
    return make_batch(1, np.full(n, series), start + np.arange(n), np.arange(n, dtype=float))


def count(store: TimeSeriesStore, series: Sequence[int] = (1,)) -> int:
    return store.range(list(series), 0, END, limit=1_000_000).table.num_rows


async def until(predicate, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[TimeSeriesStore]:
    s = open_store(f"duckdb:///{tmp_path / 'ts.duckdb'}")
    yield s
    s.close()


async def test_flushes_by_size(store: TimeSeriesStore) -> None:
    w = BatchedWriter(store, batch_rows=100, flush_ms=600_000)
    await w.submit(batch(60))
    await asyncio.sleep(0.1)
    assert count(store) == 0  # below batch_rows and far from flush_ms
    await w.submit(batch(60, start=60))
    await until(lambda: count(store) == 120)
    assert w.stats().batches == 1
    await w.close()


async def test_flushes_by_time(store: TimeSeriesStore) -> None:
    w = BatchedWriter(store, batch_rows=1_000_000, flush_ms=50)
    w.submit_nowait(batch(10))
    await until(lambda: count(store) == 10)
    await w.close()


async def test_flush_waits_until_durable_and_keeps_order(store: TimeSeriesStore) -> None:
    w = BatchedWriter(store, batch_rows=1000, flush_ms=600_000)
    for i in range(25):  # the same (series, ts) rewritten: the last submit must win
        await w.submit(make_batch(1, [1, 2], [5, 5], [float(i), float(i)]))
    await w.flush()
    latest = store.range([1, 2], 0, END).table
    assert latest.column("value").to_pylist() == [24.0, 24.0]
    st = w.stats()
    assert (st.submitted_rows, st.written_rows, st.queued_rows) == (50, 50, 0)
    await w.close()
    with pytest.raises(Unavailable, match="closed"):
        w.submit_nowait(batch(1))


class GatedStore:
    """The real store behind a gate the test opens, to hold the writer mid-write."""

    def __init__(self, store: TimeSeriesStore) -> None:
        self.store = store
        self.gate = threading.Event()

    def write(self, b: pa.Table) -> int:
        self.gate.wait(10)
        return self.store.write(b)


async def test_backpressure(store: TimeSeriesStore) -> None:
    gated = GatedStore(store)
    w = BatchedWriter(gated, batch_rows=100, flush_ms=1, max_queue_rows=300)  # type: ignore[arg-type]
    w.submit_nowait(batch(100, start=0))  # taken by the worker, which blocks at the gate
    await until(lambda: w.stats().queued_rows == 0)
    w.submit_nowait(batch(200, start=100))
    w.submit_nowait(batch(100, start=300))  # queue now full: 300 rows waiting
    with pytest.raises(Unavailable, match="overloaded"):
        w.submit_nowait(batch(1, start=400))
    waiting = asyncio.create_task(w.submit(batch(50, start=400)))
    await asyncio.sleep(0.1)
    assert not waiting.done()
    gated.gate.set()
    await asyncio.wait_for(waiting, 10)
    await w.flush()
    assert count(store) == 450
    await w.close()


async def test_write_errors_are_retried_once_then_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = open_store(f"duckdb:///{tmp_path / 'x.duckdb'}")
    w = BatchedWriter(store, batch_rows=10, flush_ms=10)
    store.close()  # every write now fails for real
    await w.submit(batch(7))
    await w.flush()  # returns: the rows are accounted for (as failed)
    st = w.stats()
    assert (st.failed_rows, st.failed_batches, st.retries, st.written_rows) == (7, 1, 1, 0)
    assert st.last_error
    assert "failed twice" in caplog.text
    await w.close()
