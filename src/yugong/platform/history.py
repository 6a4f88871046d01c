"""Chart data for one device: the history of its numeric properties reduced to about as many
points as a chart can show, and the live values of its properties as batches arrive.

History, per series, by how many samples the range holds:

- at most ``points``: the raw samples (``mode: "raw"``);
- at most ``MAX_LTTB_RAW`` (2,000,000): the raw samples read and reduced with LTTB to
  ``points`` (``mode: "lttb"``, see :mod:`yugong.platform.downsample`);
- more: the store's time-bucket minimum and maximum, with at most ``points / 2`` buckets
  (``mode: "minmax"``). Each bucket gives two points, at the start and at the middle of
  the bucket's part inside the range; the minimum comes first when the bucket's first and
  last samples say it most likely came first (a rising bucket), else the maximum. Empty
  buckets give no points.

``raw_count`` is the number of samples read (raw, lttb) or the number of samples with a
value in the range (minmax). Values are floats (NaN, a sample without a value, is null in
JSON); ``ts`` is epoch ms.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa

from yugong.core.errors import FieldError, InvalidInput
from yugong.core.timeutil import US_PER_MS
from yugong.infra.timeseries import AggFunc, TimeSeriesStore
from yugong.platform.downsample import lttb
from yugong.platform.query import QueryService, SeriesRef
from yugong.platform.registry.bindings import PropertyBinding
from yugong.security.principal import Principal

DEFAULT_POINTS = 2_000
MIN_POINTS = 10
MAX_POINTS = 10_000
MAX_LTTB_RAW = 2_000_000
NUMERIC_KINDS = frozenset({"number", "integer", "bool", "enum", "date"})
_MINMAX_FUNCS: tuple[AggFunc, ...] = ("min", "max", "first", "last", "count")


# Resolution -------------------------------------------------------------------------------


def device_refs(
    query: QueryService,
    principal: Principal,
    device_id: int,
    keys: Sequence[str] | None,
    *,
    numeric: bool,
) -> list[SeriesRef]:
    """The device's series named by ``keys`` (all, or all numeric ones, when None), after
    the permission and tenant checks of :meth:`QueryService.resolve`. An unknown key, or a
    non-numeric one when ``numeric``, is invalid input naming it."""
    refs = query.resolve(principal, [(device_id, None)])  # telemetry:read, tenant
    if keys is None:
        return [r for r in refs if not numeric or r.prop.kind in NUMERIC_KINDS]
    by_name = {r.prop.identifier: r for r in refs}
    out: list[SeriesRef] = []
    for key in dict.fromkeys(keys):  # once each, in the order asked
        ref = by_name.get(key)
        if ref is None:
            device = refs[0].device.name if refs else str(device_id)
            raise InvalidInput(
                f"device '{device}' has no property '{key}'",
                [FieldError("keys", f"unknown property '{key}'")],
            )
        if numeric and ref.prop.kind not in NUMERIC_KINDS:
            raise InvalidInput(
                f"property '{key}' is not numeric ({ref.prop.tsl_type}): no chart history",
                [FieldError("keys", f"'{key}' is not numeric")],
            )
        out.append(ref)
    return out


# History ----------------------------------------------------------------------------------


def history(
    query: QueryService,
    principal: Principal,
    device_id: int,
    keys: Sequence[str] | None,
    start_us: int,
    end_us: int,
    points: int = DEFAULT_POINTS,
    *,
    max_lttb_raw: int = MAX_LTTB_RAW,
) -> list[dict[str, Any]]:
    """One chart series per numeric property (see the module's description). Blocking:
    call from a worker thread when on the event loop."""
    if not MIN_POINTS <= points <= MAX_POINTS:
        raise InvalidInput(
            f"points must be between {MIN_POINTS} and {MAX_POINTS}",
            [FieldError("points", f"must be between {MIN_POINTS} and {MAX_POINTS}")],
        )
    if end_us <= start_us:
        raise InvalidInput("end must be after start", [FieldError("end", "must be after start")])
    refs = device_refs(query, principal, device_id, keys, numeric=True)
    return [
        series_history(query.store, ref, start_us, end_us, points, max_lttb_raw=max_lttb_raw)
        for ref in refs
    ]


def series_history(
    store: TimeSeriesStore,
    ref: SeriesRef,
    start_us: int,
    end_us: int,
    points: int,
    *,
    max_lttb_raw: int = MAX_LTTB_RAW,
) -> dict[str, Any]:
    series = ref.prop.series
    out = ref.label()
    if _count(store, series, start_us, end_us) <= max_lttb_raw:
        # One more row than allowed tells that samples without a value pushed it over.
        table = store.range([series], start_us, end_us, limit=max_lttb_raw + 1).table
        if table.num_rows <= max_lttb_raw:
            ts = table.column("ts").to_numpy()
            value = table.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
            mode = "raw"
            if len(ts) > points:
                ts, value = lttb(ts, value, points)
                mode = "lttb"
            out.update(ts=ts // US_PER_MS, value=value, mode=mode, raw_count=table.num_rows)
            return out
    ts, value, count = _minmax(store, series, start_us, end_us, points // 2)
    out.update(ts=ts // US_PER_MS, value=value, mode="minmax", raw_count=count)
    return out


def minmax_bucket_us(start_us: int, end_us: int, buckets: int) -> int:
    """A bucket size, in whole ms, for which the epoch-aligned buckets overlapping
    [start, end) number at most ``buckets`` (>= 2): ``buckets - 1`` of them span the range,
    and alignment adds at most one."""
    if buckets < 2:
        raise ValueError("at least two buckets")
    size = -(-(end_us - start_us) // (buckets - 1))
    return -(-size // US_PER_MS) * US_PER_MS


def _count(store: TimeSeriesStore, series: int, start_us: int, end_us: int) -> int:
    """Samples with a value in the range: one or two buckets of the store's count."""
    table = store.aggregate([series], start_us, end_us, end_us - start_us, ("count",))
    return int(np.sum(table.column("count").to_numpy())) if table.num_rows else 0


def _minmax(
    store: TimeSeriesStore, series: int, start_us: int, end_us: int, buckets: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], int]:
    size = minmax_bucket_us(start_us, end_us, buckets)
    table = store.aggregate([series], start_us, end_us, size, _MINMAX_FUNCS)
    col = {f: table.column(f).to_numpy(zero_copy_only=False) for f in _MINMAX_FUNCS}
    lo, hi, first, last = (col[f].astype(np.float64) for f in ("min", "max", "first", "last"))
    bucket = table.column("bucket").to_numpy().astype(np.int64)
    # Rising (first near the minimum, last near the maximum): the minimum came first.
    min_first = np.abs(first - lo) + np.abs(last - hi) <= np.abs(first - hi) + np.abs(last - lo)
    # At the start and the middle of the bucket's part inside the range (whole ms).
    t0 = np.maximum(bucket, start_us)
    t1 = t0 + (np.minimum(bucket + size, end_us) - t0) // 2 // US_PER_MS * US_PER_MS
    ts = np.column_stack([t0, t1]).reshape(-1)
    value = np.column_stack([np.where(min_first, lo, hi), np.where(min_first, hi, lo)]).reshape(-1)
    return ts, value, int(np.sum(col["count"]))


# Live values ------------------------------------------------------------------------------


class DeviceStream:
    """Picks one device's chosen series out of ingested sample batches: the newest sample of
    each (the later row on equal times, as the store keeps it) as one event body
    ``{"ts": ms, "values": {property: value}}``, or None when the batch has none of them."""

    def __init__(self, refs: Sequence[SeriesRef]) -> None:
        self.refs = list(refs)
        self._props = {r.prop.series: r.prop for r in self.refs}
        self._ids = np.array(sorted(self._props), dtype=np.int32)

    def event(self, batch: pa.Table) -> dict[str, Any] | None:
        if not batch.num_rows or not self._ids.size:
            return None
        series = batch.column("series").to_numpy()
        rows = np.flatnonzero(np.isin(series, self._ids))
        if not rows.size:
            return None
        s = series[rows]
        ts = batch.column("ts").to_numpy()[rows]
        order = np.lexsort((rows, ts, s))  # by series, then time, then arrival
        s_sorted = s[order]
        last = order[np.append(s_sorted[1:] != s_sorted[:-1], True)]
        picked = batch.take(pa.array(rows[last])).select(["series", "ts", "value", "text"])
        values: dict[str, Any] = {}
        for sid, value, text in zip(
            picked.column("series").to_pylist(),
            picked.column("value").to_pylist(),
            picked.column("text").to_pylist(),
            strict=True,
        ):
            prop = self._props[sid]
            values[prop.identifier] = shaped(prop, value, text)
        return {"ts": int(ts[last].max()) // US_PER_MS, "values": values}

    def snapshot(self, query: QueryService) -> dict[str, Any]:
        """The current latest values as one event body (``ts`` the newest of them, or None
        when none of the series has a sample yet). Blocking."""
        rows = query.latest(self.refs) if self.refs else []
        have = [r for r in rows if r["ts"] is not None]
        return {
            "ts": max((r["ts"] for r in have), default=None),
            "values": {r["property"]: _plain(r["value"]) for r in have},
        }


def shaped(prop: PropertyBinding, value: float | None, text: str | None) -> Any:
    """One stored sample as the property's type: the same shapes the query answers use."""
    if prop.kind in ("text", "json"):
        if text is None or prop.kind == "text":
            return text
        return orjson.loads(text)
    if value is None or value != value:  # no value, or NaN
        return None
    if prop.kind == "number":
        return value
    if prop.kind == "bool":
        return value != 0.0
    return int(value)


def _plain(value: Any) -> Any:
    """NumPy scalars (from the query service's columns) as plain Python values."""
    return value.item() if isinstance(value, np.generic) else value
