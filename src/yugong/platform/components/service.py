"""Invoking components for callers of the platform: literal inputs, or stored series the
platform resolves (device, property, time range) within the caller's tenant.

A stored-series input is written in place of a value::

    {"series": {"device": 12, "property": "vibration", "start": "2026-11-01T00:00:00Z",
                "end": "2026-11-02T00:00:00Z", "field": "value"}, "unit": "mm/s"}

``field`` is ``value`` (default) or ``time`` (epoch seconds); ``unit`` overrides the unit the
thing model gives the property. Samples of bad quality are left out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from yugong.core.errors import FieldError, InvalidInput, YugongError
from yugong.core.quality import Quality
from yugong.core.timeutil import US_PER_S, to_us
from yugong.platform.components.catalog import Catalog
from yugong.platform.components.contract import Component, bad_input
from yugong.platform.query import MAX_RAW_LIMIT, QueryService
from yugong.security.principal import Principal

log = logging.getLogger(__name__)
SERIES_FIELDS = ("value", "time")
_SERIES_KEYS = {"device", "property", "start", "end", "field"}


class ComponentFailed(YugongError):
    status = 500
    title = "Component failed"


class ComponentService:
    """The catalog plus invocation; CPU-heavy runs go to worker threads, a few at a time."""

    def __init__(self, catalog: Catalog, query: QueryService | None = None) -> None:
        self.catalog = catalog
        self.query = query
        self._slots = asyncio.Semaphore(max(1, os.cpu_count() or 1))

    async def invoke(
        self,
        principal: Principal | None,
        name: str,
        version: str | None,
        inputs: Mapping[str, Any],
    ) -> dict[str, Any]:
        """Run one component; ``principal`` None means a standalone service (literal inputs)."""
        if principal is not None:
            principal.require("components:invoke")
        comp = self.catalog.get(name, version)
        if not isinstance(inputs, Mapping):
            raise InvalidInput("inputs: expected an object of input name -> value")
        async with self._slots:
            args = await asyncio.to_thread(self._resolve, principal, comp, inputs)
            started = time.perf_counter()
            outputs = await asyncio.to_thread(run, comp, args)
            elapsed = time.perf_counter() - started
        return {
            "component": comp.name,
            "version": comp.version,
            "outputs": plain(outputs),
            "elapsed_ms": round(elapsed * 1000, 3),
        }

    def _resolve(
        self, principal: Principal | None, comp: Component, inputs: Mapping[str, Any]
    ) -> dict[str, Any]:
        resolved = dict(inputs)
        for name, value in inputs.items():
            if isinstance(value, Mapping) and "series" in value:
                if principal is None or self.query is None:
                    raise bad_input(name, "stored series are resolved by the platform only")
                port = comp.inputs.get(name)
                if port is None or not port.numeric:
                    raise bad_input(name, "this input does not take a series")
                resolved[name] = self._series(principal, name, value, port.unit)
        return resolved

    def _series(
        self, principal: Principal, name: str, ref: Mapping[str, Any], want_unit: str | None
    ) -> Any:
        assert self.query is not None
        spec = ref["series"]
        if not isinstance(spec, Mapping):
            raise bad_input(name, "series: expected {device, property, start, end}")
        unknown = sorted(set(map(str, spec)) - _SERIES_KEYS)
        if unknown:
            raise bad_input(name, f"series: unknown key {', '.join(unknown)}")
        for key in ("device", "property", "start", "end"):
            if key not in spec:
                raise bad_input(name, f"series: missing '{key}'")
        field = spec.get("field", "value")
        if field not in SERIES_FIELDS:
            raise bad_input(name, f"series.field: {field!r} is not one of value, time")
        device, prop = spec["device"], spec["property"]
        if isinstance(device, bool) or not isinstance(device, int) or not isinstance(prop, str):
            raise bad_input(name, "series: device is a device id, property an identifier")
        try:
            start_us, end_us = to_us(spec["start"]), to_us(spec["end"])
        except (ValueError, TypeError) as exc:
            raise bad_input(name, f"series: {exc}") from None
        if end_us <= start_us:
            raise bad_input(name, "series: end must be after start")
        (sref,) = self.query.resolve(principal, [(device, [prop])])
        if sref.prop.kind not in ("number", "integer", "bool", "enum"):
            raise bad_input(
                name, f"series: property '{prop}' holds {sref.prop.tsl_type}, not numbers"
            )
        table = self.query.raw_arrow([sref], start_us, end_us, limit=MAX_RAW_LIMIT + 1)
        if table.num_rows > MAX_RAW_LIMIT:
            raise bad_input(
                name,
                f"series: more than {MAX_RAW_LIMIT:,} samples in the range; narrow the range "
                "or resample first",
            )
        table = _usable(table)
        if not table.num_rows:
            raise bad_input(name, f"series: device {device} '{prop}' has no samples in the range")
        if field == "time":
            seconds = table.column("ts").to_numpy() / US_PER_S
            return {"value": seconds, "unit": "s"} if want_unit else seconds
        values = table.column("value").to_numpy(zero_copy_only=False).astype(np.float64)
        unit = ref.get("unit") or sref.prop.unit
        if want_unit is None:
            return values
        if not unit:
            raise bad_input(
                name,
                f"missing unit: device {device} '{prop}' has no unit in its thing model; "
                f"give 'unit' beside 'series' (the component expects {want_unit})",
            )
        return {"value": values, "unit": unit}


def _usable(table: pa.Table) -> pa.Table:
    """Samples worth computing on: not bad quality, with a value."""
    keep = pc.and_(
        pc.not_equal(table.column("quality"), Quality.BAD.value),
        pc.is_valid(table.column("value")),
    )
    return table.filter(keep)


def plain(value: Any) -> Any:
    """Outputs as JSON can carry them: NumPy scalars and 0-d arrays as numbers, other arrays
    contiguous (written straight from memory), anything else as lists; NaN becomes null."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return value.item()
        if value.dtype.kind in "fiub":
            return np.ascontiguousarray(value)
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def run(comp: Component, args: Mapping[str, Any]) -> dict[str, Any]:
    """Call the component; a failure inside it is logged and reported, never a crash."""
    try:
        return comp(**args)
    except YugongError:
        raise
    except Exception as exc:
        log.exception("component %s %s failed", comp.name, comp.version)
        raise ComponentFailed(
            f"component {comp.name} {comp.version} failed: {type(exc).__name__}: {exc}",
            [FieldError("component", str(exc))],
        ) from None
