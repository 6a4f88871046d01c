"""The time-series store interface. Backends: DuckDB (embedded default) and PostgreSQL.

Contract every backend keeps (and ``tests/infra/test_timeseries_contract.py`` checks):
- ``write`` takes a batch in :data:`yugong.core.samples.SAMPLE_SCHEMA`; timestamps are
  epoch microseconds. Out-of-order samples are accepted.
- The same (series, ts) written twice: the later write wins; within one batch the later row
  wins. Deterministic.
- Results are Arrow tables in :data:`yugong.core.samples.POINT_SCHEMA` order
  (``series, ts, value, text, quality``), sorted by series then time unless said otherwise.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

AggFunc = Literal["avg", "min", "max", "sum", "count", "first", "last"]
AGG_FUNCS: tuple[AggFunc, ...] = ("avg", "min", "max", "sum", "count", "first", "last")
Fill = Literal["none", "null", "previous", "linear"]
Order = Literal["asc", "desc"]


@dataclass(frozen=True)
class Cursor:
    """Where the next page of a range query starts (exclusive)."""

    series: int
    ts: int

    def encode(self) -> str:
        return f"{self.series}:{self.ts}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            series, ts = text.split(":")
            return cls(int(series), int(ts))
        except ValueError:
            raise ValueError(f"not a page cursor: {text!r}") from None


@dataclass(frozen=True)
class Page:
    table: pa.Table  # POINT_SCHEMA columns
    next: Cursor | None  # None when there is nothing more


@dataclass(frozen=True)
class StoreStats:
    rows: int
    bytes_on_disk: int
    hot_rows: int  # rows not yet compacted into sorted partitions


class TimeSeriesStore(ABC):
    """One store per process; thread-safe. Methods block: call them from a worker thread
    (``asyncio.to_thread``) when on the event loop."""

    @abstractmethod
    def write(self, batch: pa.Table) -> int:
        """Append a batch; returns rows written."""

    @abstractmethod
    def latest(self, series: Sequence[int]) -> pa.Table:
        """The newest sample of each series that has one (POINT_SCHEMA, one row per series)."""

    @abstractmethod
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
        """Raw samples with start_us <= ts < end_us, sorted by (series, ts) in ``order``;
        at most ``limit`` rows, continue with ``after=page.next``."""

    @abstractmethod
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
        """Time buckets aligned to the epoch: columns ``series, bucket`` (bucket start, µs)
        then one float64 column per func (``count`` is int64). Only good and uncertain
        samples with a numeric value count. ``fill``: ``none`` omits empty buckets; ``null``
        emits them with nulls; ``previous`` carries the last value forward; ``linear``
        interpolates between neighbours (count stays 0 in filled buckets)."""

    @abstractmethod
    def drop_before(self, tenant: int, cutoff_us: int) -> None:
        """Retention: remove the tenant's samples older than ``cutoff_us`` without stalling
        writes (whole time partitions where possible)."""

    @abstractmethod
    def delete_series(self, tenant: int, series: Sequence[int]) -> None:
        """Remove all samples of the given series (device deleted)."""

    @abstractmethod
    def compact(self) -> None:
        """Run one round of background maintenance now (sorting, merging partitions)."""

    @abstractmethod
    def stats(self) -> StoreStats: ...

    def stored_bytes(self, tenant: int) -> int:
        """Bytes the tenant's samples take (an estimate; see each backend)."""
        raise NotImplementedError

    @abstractmethod
    def close(self) -> None: ...


def open_store(url: str, **options: Any) -> TimeSeriesStore:
    """``duckdb:///relative/file.duckdb``, ``duckdb:////absolute/file.duckdb`` (as SQLAlchemy
    spells SQLite paths), ``duckdb://:memory:``, or ``postgresql://...``. ``options`` go to
    the backend's constructor (e.g. ``compact_interval_s``)."""
    if url.startswith("duckdb://"):
        from yugong.infra.timeseries.duckdb import DuckDBStore

        path = url.removeprefix("duckdb:///") if url.startswith("duckdb:///") else url[9:]
        return DuckDBStore(path or ":memory:", **options)
    if url.startswith(("postgresql", "postgres://")):
        from yugong.infra.timeseries.postgres import PostgresStore

        return PostgresStore(url, **options)
    raise ValueError(f"unknown time-series store URL {url!r}: use duckdb:///path or postgresql://")
