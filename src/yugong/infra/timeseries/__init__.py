"""Time-series storage: one interface, DuckDB and PostgreSQL backends."""

from yugong.infra.timeseries.base import (
    AGG_FUNCS,
    AggFunc,
    Cursor,
    Fill,
    Page,
    StoreStats,
    TimeSeriesStore,
    open_store,
)

__all__ = [
    "AGG_FUNCS",
    "AggFunc",
    "Cursor",
    "Fill",
    "Page",
    "StoreStats",
    "TimeSeriesStore",
    "open_store",
]
