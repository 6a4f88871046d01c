"""Chart data for one device: downsampled history of its numeric properties, and a live
stream of its values as they are ingested (Server-Sent Events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse

from yugong.api import sse
from yugong.api.deps import PrincipalDep
from yugong.core.errors import FieldError, InvalidInput
from yugong.core.timeutil import US_PER_S, now_us, to_us
from yugong.infra.bus import Bus
from yugong.platform.history import (
    DEFAULT_POINTS,
    MAX_POINTS,
    MIN_POINTS,
    DeviceStream,
    device_refs,
    history,
)
from yugong.platform.ingest.service import SAMPLES_TOPIC
from yugong.platform.query import QueryService, dumps

router = APIRouter(tags=["telemetry"])
DAY_US = 86_400 * US_PER_S
STREAM_QUEUE = 1_000  # batches; a stream that falls behind skips the oldest
MAX_STREAM_S = 24 * 3600.0
_OPENING = sse.opening("device stream")

KeysQ = Annotated[
    str | None,
    Query(description="Comma-separated property identifiers; all (numeric) when omitted."),
]
TimeQ = Annotated[str | None, Query(description="Epoch ms or ISO 8601.")]


def _service(request: Request) -> QueryService:
    return cast(QueryService, request.app.state.query)


def _keys(keys: str | None) -> list[str] | None:
    return [k.strip() for k in keys.split(",") if k.strip()] if keys else None


def _time(value: str | None, default: int, name: str) -> int:
    if value is None:
        return default
    try:
        return to_us(value)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}", [FieldError(name, str(exc))]) from None


@router.get(
    "/devices/{device_id}/history",
    summary="History for a chart: raw, LTTB-downsampled or min/max per bucket",
    description=(
        "One series per numeric property, at most `points` points each: the raw samples "
        "when the range holds no more (`mode: raw`); up to 2,000,000 samples reduced with "
        "Largest-Triangle-Three-Buckets (`lttb`); beyond that the minimum and maximum of "
        "at most `points / 2` time buckets, two points per bucket (`minmax`). `raw_count` "
        "says how many samples the range held. The range defaults to the last 24 hours."
    ),
)
async def device_history(
    request: Request,
    principal: PrincipalDep,
    device_id: int,
    keys: KeysQ = None,
    start: TimeQ = None,
    end: TimeQ = None,
    points: Annotated[int, Query(ge=MIN_POINTS, le=MAX_POINTS)] = DEFAULT_POINTS,
) -> Response:
    end_us = _time(end, now_us(), "end")
    start_us = _time(start, end_us - DAY_US, "start")
    rows = await asyncio.to_thread(
        history, _service(request), principal, device_id, _keys(keys), start_us, end_us, points
    )
    return Response(dumps({"series": rows}), media_type="application/json")


@router.get(
    "/devices/{device_id}/stream",
    summary="Live values of the device (Server-Sent Events)",
    description=(
        "One event per ingested batch that carries the device's chosen properties, its data "
        '`{"ts": ms, "values": {"property": value}}` with the newest value of each in that '
        "batch; a comment line as keep-alive every `heartbeat` seconds (15). "
        "`once=true`: one snapshot then close (the current latest values as one event). "
        "`timeout` (seconds) ends the stream after that long."
    ),
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def device_stream(
    request: Request,
    principal: PrincipalDep,
    device_id: int,
    keys: KeysQ = None,
    once: bool = False,
    end_after: Annotated[
        float | None,
        Query(alias="timeout", gt=0, le=MAX_STREAM_S, description="End after this many seconds."),
    ] = None,
    heartbeat: Annotated[float, Query(ge=0.05, le=300)] = 15.0,
) -> StreamingResponse:
    svc = _service(request)
    refs = device_refs(svc, principal, device_id, _keys(keys), numeric=False)
    picker = DeviceStream(refs)
    if once:
        snapshot = await asyncio.to_thread(picker.snapshot, svc)
        return sse.response(_snapshot_events(snapshot))
    # Subscribed before the answer starts, so nothing ingested after this call is missed.
    sub = cast(Bus, request.app.state.bus).subscribe(SAMPLES_TOPIC, maxsize=STREAM_QUEUE)

    def render(batch: Any) -> list[bytes]:
        body = picker.event(batch)
        return [sse.message(body)] if body is not None else []

    events = sse.from_bus(sub, _OPENING, render, heartbeat=heartbeat, end_after=end_after)
    return sse.response(events, sub)


async def _snapshot_events(snapshot: dict[str, Any]) -> AsyncIterator[bytes]:
    yield _OPENING
    yield sse.message(snapshot)
