"""Logic both time-series backends share: input checks, bucket grids and gap fill.

Backends run the storage-specific SQL; everything that is plain array work (validating a
batch, the epoch-aligned bucket grid, filling empty buckets, cutting pages) lives here once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from yugong.core.errors import FieldError, InvalidInput
from yugong.core.quality import Quality
from yugong.core.samples import POINT_SCHEMA, conform
from yugong.infra.timeseries.base import AGG_FUNCS, AggFunc, Cursor, Fill, Order, Page

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
# A fill grid larger than this (series x buckets) is refused instead of exhausting memory.
MAX_FILL_CELLS = 20_000_000
FILLS: tuple[Fill, ...] = ("none", "null", "previous", "linear")


def _invalid(loc: str, msg: str) -> InvalidInput:
    return InvalidInput(f"{loc}: {msg}", [FieldError(loc, msg)])


def prepare_batch(batch: pa.Table | pa.RecordBatch) -> pa.Table:
    """Conform a write batch to SAMPLE_SCHEMA and refuse what cannot be stored."""
    try:
        table = conform(batch)
    except (ValueError, pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise _invalid("batch", str(exc)) from None
    for name in ("tenant", "series", "ts", "quality"):
        if table.column(name).null_count:
            raise _invalid(f"batch.{name}", "must not contain nulls")
    if table.num_rows and pc.max(table.column("quality")).as_py() > Quality.BAD:
        raise _invalid("batch.quality", "must be 0 (good), 1 (uncertain) or 2 (bad)")
    return table


def series_array(series: Sequence[int]) -> npt.NDArray[np.int32]:
    """Requested series ids: unique, sorted, int32."""
    arr = np.asarray(series, dtype=np.int64)
    if arr.ndim != 1:
        raise _invalid("series", "must be a list of series ids")
    if arr.size and (arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max):
        raise _invalid("series", "series ids are 32-bit integers")
    return np.unique(arr).astype(np.int32)


def check_range(start_us: int, end_us: int) -> None:
    if start_us >= end_us:
        raise _invalid("end", "must be after start")


def check_range_args(limit: int, order: Order) -> None:
    if limit <= 0:
        raise _invalid("limit", "must be positive")
    if order not in ("asc", "desc"):
        raise _invalid("order", "must be asc or desc")


def check_agg_args(bucket_us: int, funcs: Sequence[AggFunc], fill: Fill) -> tuple[AggFunc, ...]:
    if bucket_us <= 0:
        raise _invalid("bucket", "must be positive")
    if not funcs:
        raise _invalid("funcs", "name at least one aggregate")
    for f in funcs:
        if f not in AGG_FUNCS:
            raise _invalid("funcs", f"unknown aggregate {f!r}: use {', '.join(AGG_FUNCS)}")
    if len(set(funcs)) != len(funcs):
        raise _invalid("funcs", "an aggregate is named twice")
    if fill not in FILLS:
        raise _invalid("fill", f"unknown fill {fill!r}: use {', '.join(FILLS)}")
    return tuple(funcs)


def bucket_floor(ts: int, bucket_us: int) -> int:
    """Start of the epoch-aligned bucket holding ``ts`` (floor, also before 1970)."""
    return ts - ts % bucket_us  # Python's % floors


def cursor_predicate(after: Cursor | None, order: Order) -> str:
    """SQL for "(series, ts) comes after the cursor" in the given order."""
    if after is None:
        return "TRUE"
    op = ">" if order == "asc" else "<"
    s, t = int(after.series), int(after.ts)
    return f"(series {op} {s} OR (series = {s} AND ts {op} {t}))"


def in_list(series: npt.NDArray[np.int32]) -> str:
    """A literal IN list: integers only, so nothing user-typed reaches the SQL text, and the
    engine can push it into min/max pruning."""
    return ",".join(str(int(s)) for s in series)


def to_page(table: pa.Table, limit: int) -> Page:
    """Cut a result fetched with ``limit + 1`` rows into a page and its continuation."""
    table = table.cast(POINT_SCHEMA) if table.schema != POINT_SCHEMA else table
    if table.num_rows <= limit:
        return Page(table, None)
    table = table.slice(0, limit)
    last = limit - 1
    nxt = Cursor(int(table.column("series")[last].as_py()), int(table.column("ts")[last].as_py()))
    return Page(table, nxt)


def agg_schema(funcs: Sequence[AggFunc]) -> pa.Schema:
    fields = [
        pa.field("series", pa.int32(), nullable=False),
        pa.field("bucket", pa.int64(), nullable=False),
    ]
    fields += [pa.field(f, pa.int64() if f == "count" else pa.float64()) for f in funcs]
    return pa.schema(fields)


def shape_aggregates(
    table: pa.Table,
    series: npt.NDArray[np.int32],
    start_us: int,
    end_us: int,
    bucket_us: int,
    funcs: Sequence[AggFunc],
    fill: Fill,
) -> pa.Table:
    """Turn the engine's non-empty buckets (sorted by series, bucket) into the final result,
    filling empty buckets on the full epoch-aligned grid when asked."""
    schema = agg_schema(funcs)
    table = table.select(schema.names).cast(schema)
    if fill == "none":
        return table
    first = bucket_floor(start_us, bucket_us)
    nb = (bucket_floor(end_us - 1, bucket_us) - first) // bucket_us + 1
    ns = len(series)
    if nb * ns > MAX_FILL_CELLS:
        raise _invalid(
            "bucket",
            f"{nb * ns} filled buckets asked for; use a larger bucket, "
            "a shorter range or fill=none",
        )
    row = np.searchsorted(series, table.column("series").to_numpy())
    col = (table.column("bucket").to_numpy() - first) // bucket_us
    cells = row * nb + col
    out: list[pa.Array] = [
        pa.array(np.repeat(series, nb), pa.int32()),
        pa.array(np.tile(first + np.arange(nb, dtype=np.int64) * bucket_us, ns), pa.int64()),
    ]
    for f in funcs:
        if f == "count":
            counts = np.zeros(ns * nb, dtype=np.int64)
            counts[cells] = table.column("count").to_numpy()
            out.append(pa.array(counts))
            continue
        flat_in = np.full(ns * nb, np.nan)
        flat_in[cells] = table.column(f).to_numpy(zero_copy_only=False)
        grid = flat_in.reshape(ns, nb)
        if fill == "previous":
            grid = _ffill(grid)
        elif fill == "linear":
            grid = _interpolate(grid)
        flat = grid.reshape(-1)
        out.append(pa.array(flat, pa.float64(), mask=np.isnan(flat)))
    return pa.Table.from_arrays(out, schema=schema)


def _ffill(grid: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Carry each row's last value forward (vectorised over all rows)."""
    nb = grid.shape[1]
    idx = np.where(~np.isnan(grid), np.arange(nb), -1)
    np.maximum.accumulate(idx, axis=1, out=idx)
    filled = np.take_along_axis(grid, np.maximum(idx, 0), axis=1)
    filled[idx < 0] = np.nan
    return filled


def _interpolate(grid: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Linear interpolation between each row's neighbouring values; edges stay empty."""
    nb = grid.shape[1]
    pos = np.arange(nb)
    valid = ~np.isnan(grid)
    prev = np.where(valid, pos, -1)
    np.maximum.accumulate(prev, axis=1, out=prev)
    nxt = np.where(valid, pos, nb)
    nxt = np.minimum.accumulate(nxt[:, ::-1], axis=1)[:, ::-1]
    inside = (prev >= 0) & (nxt < nb)
    p = np.clip(prev, 0, nb - 1)
    n = np.clip(nxt, 0, nb - 1)
    vp = np.take_along_axis(grid, p, axis=1)
    vn = np.take_along_axis(grid, n, axis=1)
    span = np.where(n > p, n - p, 1)
    result = vp + (vn - vp) * (pos - p) / span
    return np.where(valid, grid, np.where(inside, result, np.nan))


AGG_SQL = {
    "avg": "avg(value)",
    "min": "min(value)",
    "max": "max(value)",
    "sum": "sum(value)",
    "count": "count(value)",
}
