"""One batched writer between ingest and the time-series store.

Ingest hands over Arrow tables as they arrive; a single worker thread concatenates them and
calls ``store.write`` when ``batch_rows`` rows are waiting or the oldest has waited
``flush_ms``. A single writer keeps the store's "later write wins" order and lets the store
see large batches. When more than ``max_queue_rows`` rows wait, ``submit`` waits and
``submit_nowait`` refuses, which pushes back on whoever is sending.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

import pyarrow as pa

from yugong.core.errors import Unavailable
from yugong.core.samples import SAMPLE_SCHEMA, conform
from yugong.infra.timeseries.base import TimeSeriesStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WriterStats:
    submitted_rows: int
    written_rows: int
    failed_rows: int
    failed_batches: int
    retries: int
    queued_rows: int
    batches: int
    last_error: str | None


_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


def _wake(loop: asyncio.AbstractEventLoop, fut: asyncio.Future[None]) -> None:
    def _set() -> None:
        if not fut.done():
            fut.set_result(None)

    with contextlib.suppress(RuntimeError):  # the waiter's loop is gone
        loop.call_soon_threadsafe(_set)


class BatchedWriter:
    def __init__(
        self,
        store: TimeSeriesStore,
        *,
        batch_rows: int = 50_000,
        flush_ms: int = 200,
        max_queue_rows: int = 5_000_000,
    ) -> None:
        if batch_rows < 1 or flush_ms < 1 or max_queue_rows < batch_rows:
            raise ValueError("need batch_rows >= 1, flush_ms >= 1 and max_queue_rows >= batch_rows")
        self.store = store
        self.batch_rows = batch_rows
        self.flush_s = flush_ms / 1000
        self.max_queue_rows = max_queue_rows
        self._cond = threading.Condition()
        self._queue: deque[tuple[pa.Table, float]] = deque()  # (table, enqueued at)
        self._queued = 0
        self._submitted = 0  # cumulative rows accepted
        self._done = 0  # cumulative rows written or given up on
        self._flush_to = 0  # write without waiting until _done reaches this
        self._flush_waiters: list[tuple[int, _Waiter]] = []
        self._space_waiters: list[_Waiter] = []
        self._closed = False
        self._written = self._failed_rows = self._failed_batches = 0
        self._retries = self._batches = 0
        self._last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name="yugong-writer", daemon=True)

    async def start(self) -> None:
        """Start the worker thread (also started by the first submit)."""
        with self._cond:
            self._ensure_started()

    def _ensure_started(self) -> None:
        if not self._thread.is_alive() and not self._closed:
            self._thread.start()

    # Producer side ------------------------------------------------------------------------

    def _put(self, table: pa.Table) -> bool:
        """Queue ``table`` unless that would overflow; raises when closed."""
        n = table.num_rows
        with self._cond:
            if self._closed:
                raise Unavailable("the ingest writer is closed")
            # An empty queue takes anything, so one oversized table cannot wait forever.
            if self._queued and self._queued + n > self.max_queue_rows:
                return False
            self._ensure_started()
            self._queue.append((table, time.monotonic()))
            self._queued += n
            self._submitted += n
            if self._queued >= self.batch_rows or len(self._queue) == 1:
                self._cond.notify()
            return True

    @staticmethod
    def _prepare(table: pa.Table) -> pa.Table:
        return table if table.schema.equals(SAMPLE_SCHEMA) else conform(table)

    def submit_nowait(self, table: pa.Table) -> None:
        """Queue a batch or raise :class:`Unavailable` when the queue is full."""
        table = self._prepare(table)
        if table.num_rows and not self._put(table):
            raise Unavailable(
                f"ingest is overloaded: {self._queued} rows waiting to be written; retry shortly"
            )

    async def submit(self, table: pa.Table) -> None:
        """Queue a batch, waiting while the queue is full."""
        table = self._prepare(table)
        if not table.num_rows:
            return
        loop = asyncio.get_running_loop()
        while not self._put(table):
            fut: asyncio.Future[None] = loop.create_future()
            with self._cond:
                full = self._queued and self._queued + table.num_rows > self.max_queue_rows
                if not full:
                    continue
                self._space_waiters.append((loop, fut))
            await fut

    async def flush(self) -> None:
        """Return once every row submitted before this call is written (or counted failed)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            target = self._submitted
            if self._done >= target:
                return
            self._flush_to = max(self._flush_to, target)
            self._flush_waiters.append((target, (loop, fut)))
            self._cond.notify()
        await fut

    async def close(self) -> None:
        """Write what is queued, then stop the worker."""
        await self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify()
            started = self._thread.ident is not None
        if started:
            await asyncio.to_thread(self._thread.join)

    def stats(self) -> WriterStats:
        with self._cond:
            return WriterStats(
                submitted_rows=self._submitted,
                written_rows=self._written,
                failed_rows=self._failed_rows,
                failed_batches=self._failed_batches,
                retries=self._retries,
                queued_rows=self._queued,
                batches=self._batches,
                last_error=self._last_error,
            )

    # Worker side --------------------------------------------------------------------------

    def _due(self) -> float | None:
        """Seconds until the queue must be written (0 = now), or None when empty."""
        if not self._queue:
            return None
        if self._queued >= self.batch_rows or self._flush_to > self._done or self._closed:
            return 0.0
        return max(0.0, self._queue[0][1] + self.flush_s - time.monotonic())

    def _take(self) -> tuple[list[pa.Table], int]:
        tables: list[pa.Table] = []
        rows = 0
        while self._queue and rows < self.batch_rows:
            table, _ = self._queue.popleft()
            tables.append(table)
            rows += table.num_rows
        self._queued -= rows
        waiters, self._space_waiters = self._space_waiters, []
        for w in waiters:
            _wake(*w)
        return tables, rows

    def _run(self) -> None:
        while True:
            with self._cond:
                while (wait := self._due()) != 0.0:
                    if wait is None and self._closed:
                        return
                    self._cond.wait(wait)
                tables, rows = self._take()
            self._write(pa.concat_tables(tables) if len(tables) > 1 else tables[0], rows)
            with self._cond:
                self._done += rows
                ready = [w for t, w in self._flush_waiters if t <= self._done]
                self._flush_waiters = [(t, w) for t, w in self._flush_waiters if t > self._done]
            for w in ready:
                _wake(*w)

    def _write(self, batch: pa.Table, rows: int) -> None:
        for attempt in (1, 2):
            try:
                self.store.write(batch)
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                with self._cond:
                    self._last_error = reason
                    if attempt == 1:
                        self._retries += 1
                if attempt == 1:
                    log.warning(
                        "time-series write of %d rows failed, retrying once: %s", rows, reason
                    )
                    continue
                with self._cond:
                    self._failed_rows += rows
                    self._failed_batches += 1
                log.error(
                    "time-series write of %d rows failed twice; %d rows lost so far: %s",
                    rows,
                    self._failed_rows,
                    reason,
                )
                return
            with self._cond:
                self._written += rows
                self._batches += 1
            return
