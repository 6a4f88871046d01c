"""Time-series queries: latest values, raw ranges with paging, time-bucket aggregates.

JSON answers carry one object per series with its columns (``ts`` in epoch ms); send
``Accept: application/vnd.apache.arrow.stream`` for Arrow IPC (ts in µs).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from yugong.api.deps import PrincipalDep
from yugong.core.errors import InvalidInput
from yugong.core.timeutil import US_PER_S, now_us, parse_duration_us, to_us
from yugong.platform.query import QueryService, SeriesRef, dumps

router = APIRouter(tags=["telemetry"])
ARROW_STREAM = "application/vnd.apache.arrow.stream"
DAY_US = 86_400 * US_PER_S

KeysQ = Annotated[
    str | None,
    Query(description="Comma-separated property identifiers; all properties when omitted."),
]
TimeQ = Annotated[str | None, Query(description="Epoch ms or ISO 8601.")]


def _service(request: Request) -> QueryService:
    return request.app.state.query


def _keys(keys: str | None) -> list[str] | None:
    return [k.strip() for k in keys.split(",") if k.strip()] if keys else None


def _time(value: str | int | None, default: int, name: str) -> int:
    if value is None:
        return default
    try:
        return to_us(value)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}") from None


def _window(start: str | int | None, end: str | int | None) -> tuple[int, int]:
    end_us = _time(end, now_us(), "end")
    return _time(start, end_us - DAY_US, "start"), end_us


def _json(body: Any) -> Response:
    return Response(dumps(body), media_type="application/json")


def _wants_arrow(request: Request) -> bool:
    return ARROW_STREAM in request.headers.get("accept", "")


def _arrow(table: pa.Table) -> Response:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return Response(sink.getvalue().to_pybytes(), media_type=ARROW_STREAM)


async def _run_series_query(
    request: Request,
    refs: list[SeriesRef],
    start_us: int,
    end_us: int,
    *,
    interval: str | None,
    agg: str,
    fill: str,
    limit: int,
    cursor: str | None,
    order: str,
) -> Response:
    svc = _service(request)
    if interval:
        try:
            bucket = parse_duration_us(interval)
        except ValueError as exc:
            raise InvalidInput(f"interval: {exc}") from None
        funcs = [f.strip() for f in agg.split(",") if f.strip()]
        rows = await asyncio.to_thread(svc.aggregate, refs, start_us, end_us, bucket, funcs, fill)
        return _json({"interval": interval, "series": rows})
    if _wants_arrow(request):
        table = await asyncio.to_thread(svc.raw_arrow, refs, start_us, end_us, limit=limit)
        return _arrow(table)
    rows, next_cursor = await asyncio.to_thread(
        svc.raw, refs, start_us, end_us, limit=limit, cursor=cursor, order=order
    )
    return _json({"series": rows, "next": next_cursor})


@router.get("/devices/{device_id}/latest", summary="Latest value of each property")
async def device_latest(
    request: Request, principal: PrincipalDep, device_id: int, keys: KeysQ = None
) -> Response:
    svc = _service(request)
    refs = svc.resolve(principal, [(device_id, _keys(keys))])
    return _json({"values": await asyncio.to_thread(svc.latest, refs)})


@router.get("/devices/{device_id}/timeseries", summary="Raw samples or time-bucket aggregates")
async def device_timeseries(
    request: Request,
    principal: PrincipalDep,
    device_id: int,
    keys: KeysQ = None,
    start: TimeQ = None,
    end: TimeQ = None,
    interval: Annotated[
        str | None,
        Query(description="Bucket size, e.g. 1m, 15m, 1h: aggregates instead of raw samples."),
    ] = None,
    agg: Annotated[str, Query(description="avg,min,max,sum,count,first,last")] = "avg",
    fill: Annotated[str, Query(description="none, null, previous or linear")] = "none",
    limit: Annotated[int, Query(ge=1, le=1_000_000)] = 10_000,
    cursor: Annotated[str | None, Query(description="'next' of the previous page")] = None,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "asc",
) -> Response:
    refs = _service(request).resolve(principal, [(device_id, _keys(keys))])
    start_us, end_us = _window(start, end)
    return await _run_series_query(
        request,
        refs,
        start_us,
        end_us,
        interval=interval,
        agg=agg,
        fill=fill,
        limit=limit,
        cursor=cursor,
        order=order,
    )


class SeriesSelector(BaseModel):
    device: int
    properties: list[str] | None = Field(None, description="All properties when omitted.")


class LatestQuery(BaseModel):
    series: list[SeriesSelector] = Field(..., min_length=1)


class RangeQuery(LatestQuery):
    start: int | str | None = None
    end: int | str | None = None
    interval: str | None = None
    agg: str = "avg"
    fill: str = "none"
    limit: int = Field(10_000, ge=1, le=1_000_000)
    cursor: str | None = None
    order: str = Field("asc", pattern="^(asc|desc)$")


@router.post("/query/latest", summary="Latest values of many devices' properties")
async def query_latest(request: Request, principal: PrincipalDep, body: LatestQuery) -> Response:
    svc = _service(request)
    refs = svc.resolve(principal, [(s.device, s.properties) for s in body.series])
    return _json({"values": await asyncio.to_thread(svc.latest, refs)})


@router.post("/query/timeseries", summary="Raw samples or aggregates of many series at once")
async def query_timeseries(request: Request, principal: PrincipalDep, body: RangeQuery) -> Response:
    refs = _service(request).resolve(principal, [(s.device, s.properties) for s in body.series])
    start_us, end_us = _window(body.start, body.end)
    return await _run_series_query(
        request,
        refs,
        start_us,
        end_us,
        interval=body.interval,
        agg=body.agg,
        fill=body.fill,
        limit=body.limit,
        cursor=body.cursor,
        order=body.order,
    )
