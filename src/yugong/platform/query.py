"""Queries by device and property: resolves series through the device directory, enforces
the caller's tenant, reads the store, and shapes results as columns per series.

Results keep Arrow/NumPy columns until the last step; JSON is written straight from NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from yugong.core.errors import InvalidInput, NotFound
from yugong.core.quality import Quality
from yugong.core.timeutil import US_PER_MS
from yugong.infra.timeseries import AGG_FUNCS, AggFunc, Cursor, Fill, TimeSeriesStore
from yugong.infra.timeseries.base import Order
from yugong.platform.registry.bindings import DeviceBinding, DeviceDirectory, PropertyBinding
from yugong.security.principal import Principal

MAX_SERIES_PER_QUERY = 1_000
MAX_RAW_LIMIT = 1_000_000
MAX_BUCKETS = 1_000_000
_QUALITY_NAMES = np.array([q.name.lower() for q in Quality])
_FILLS = ("none", "null", "previous", "linear")


@dataclass(frozen=True)
class SeriesRef:
    device: DeviceBinding
    prop: PropertyBinding

    def label(self) -> dict[str, Any]:
        return {
            "device": self.device.device,
            "device_name": self.device.name,
            "property": self.prop.identifier,
            "unit": self.prop.unit,
        }


class QueryService:
    def __init__(self, directory: DeviceDirectory, store: TimeSeriesStore) -> None:
        self.directory = directory
        self.store = store

    # Resolution -----------------------------------------------------------------------------

    def device(self, principal: Principal, device: int) -> DeviceBinding:
        binding = self.directory.by_id(device)
        if binding is None or not principal.can_see_tenant(binding.tenant):
            raise NotFound(f"device {device} not found")
        return binding

    def resolve(
        self, principal: Principal, wanted: Sequence[tuple[int, Sequence[str] | None]]
    ) -> list[SeriesRef]:
        """(device id, property identifiers or None for all) -> series, checked."""
        principal.require("telemetry:read")
        refs: list[SeriesRef] = []
        for device_id, props in wanted:
            binding = self.device(principal, device_id)
            names = list(binding.properties) if not props else list(props)
            for name in names:
                prop = binding.properties.get(name)
                if prop is None:
                    raise NotFound(f"device '{binding.name}' has no property '{name}'")
                refs.append(SeriesRef(binding, prop))
        if len(refs) > MAX_SERIES_PER_QUERY:
            raise InvalidInput(
                f"a query may name at most {MAX_SERIES_PER_QUERY} series, "
                f"this one names {len(refs)}"
            )
        return refs

    # Queries --------------------------------------------------------------------------------

    def latest(self, refs: Sequence[SeriesRef]) -> list[dict[str, Any]]:
        table = self.store.latest([r.prop.series for r in refs])
        by_series = {s: i for i, s in enumerate(table.column("series").to_pylist())}
        out = []
        for ref in refs:
            row = by_series.get(ref.prop.series)
            item = ref.label()
            if row is None:
                item.update(ts=None, value=None, quality=None)
            else:
                one = table.slice(row, 1)
                item.update(
                    ts=int(one.column("ts")[0].as_py()) // US_PER_MS,
                    value=_values(ref.prop, one)[0],
                    quality=Quality(one.column("quality")[0].as_py()).name.lower(),
                )
            out.append(item)
        return out

    def raw(
        self,
        refs: Sequence[SeriesRef],
        start_us: int,
        end_us: int,
        *,
        limit: int,
        cursor: str | None,
        order: str,
    ) -> tuple[list[dict[str, Any]], str | None]:
        _check_range(start_us, end_us)
        if not 1 <= limit <= MAX_RAW_LIMIT:
            raise InvalidInput(f"limit must be between 1 and {MAX_RAW_LIMIT}")
        if order not in ("asc", "desc"):
            raise InvalidInput("order must be asc or desc")
        after = None
        if cursor:
            try:
                after = Cursor.decode(cursor)
            except ValueError as exc:
                raise InvalidInput(str(exc)) from None
        direction: Order = "asc" if order == "asc" else "desc"
        page = self.store.range(
            [r.prop.series for r in refs],
            start_us,
            end_us,
            limit=limit,
            after=after,
            order=direction,
        )
        out = []
        for ref, part in _split(refs, page.table):
            item = ref.label()
            item["ts"] = pc.divide(part.column("ts"), US_PER_MS).to_numpy()
            item["value"] = _values(ref.prop, part)
            item["quality"] = _QUALITY_NAMES[part.column("quality").to_numpy()].tolist()
            out.append(item)
        return out, page.next.encode() if page.next else None

    def aggregate(
        self,
        refs: Sequence[SeriesRef],
        start_us: int,
        end_us: int,
        bucket_us: int,
        funcs: Sequence[str],
        fill: str,
    ) -> list[dict[str, Any]]:
        _check_range(start_us, end_us)
        bad = [f for f in funcs if f not in AGG_FUNCS]
        if bad or not funcs:
            raise InvalidInput(
                f"unknown aggregate {', '.join(bad) or '(none)'}: use {', '.join(AGG_FUNCS)}"
            )
        if fill not in _FILLS:
            raise InvalidInput(f"fill must be one of {', '.join(_FILLS)}")
        if bucket_us <= 0 or (end_us - start_us) // bucket_us > MAX_BUCKETS:
            raise InvalidInput(f"interval too small: at most {MAX_BUCKETS} buckets per series")
        numeric = [r for r in refs if r.prop.kind not in ("text", "json")]
        if len(numeric) != len(refs):
            names = [r.prop.identifier for r in refs if r not in numeric]
            raise InvalidInput(f"cannot aggregate non-numeric properties: {', '.join(names)}")
        table = self.store.aggregate(
            [r.prop.series for r in refs],
            start_us,
            end_us,
            bucket_us,
            [cast(AggFunc, f) for f in funcs],
            fill=cast(Fill, fill),  # both checked above
        )
        out = []
        for ref, part in _split(refs, table):
            item = ref.label()
            item["bucket"] = pc.divide(part.column("bucket"), US_PER_MS).to_numpy()
            for f in funcs:
                item[f] = part.column(f).to_numpy(zero_copy_only=False)
            out.append(item)
        return out

    def raw_arrow(
        self, refs: Sequence[SeriesRef], start_us: int, end_us: int, *, limit: int
    ) -> pa.Table:
        _check_range(start_us, end_us)
        return self.store.range(
            [r.prop.series for r in refs], start_us, end_us, limit=min(limit, MAX_RAW_LIMIT)
        ).table


def _check_range(start_us: int, end_us: int) -> None:
    if end_us <= start_us:
        raise InvalidInput("end must be after start")


def _split(refs: Sequence[SeriesRef], table: pa.Table) -> list[tuple[SeriesRef, pa.Table]]:
    """Cut a result sorted by series into one slice per requested series (in request order)."""
    series = table.column("series").to_numpy()
    out = []
    for ref in refs:
        idx = np.flatnonzero(series == ref.prop.series)
        part = table.take(pa.array(idx)) if len(idx) else table.slice(0, 0)
        out.append((ref, part))
    return out


def _values(prop: PropertyBinding, table: pa.Table) -> Any:
    """The value column shaped by the property's type: floats stay NumPy (NaN -> null in
    JSON), integers and bools become lists with None for gaps, text stays text."""
    if prop.kind == "number":
        return table.column("value").to_numpy(zero_copy_only=False)
    if prop.kind in ("integer", "enum", "date"):
        return pc.cast(table.column("value"), pa.int64(), safe=False).to_pylist()
    if prop.kind == "bool":
        return pc.not_equal(table.column("value"), 0.0).to_pylist()
    if prop.kind == "json":
        return [None if t is None else orjson.loads(t) for t in table.column("text").to_pylist()]
    return table.column("text").to_pylist()


def dumps(obj: Any) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
