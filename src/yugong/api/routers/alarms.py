"""Alarms: list and filter, one alarm and its history, acknowledge, clear, assign, comment,
a summary of the open ones, and a live stream of changes (Server-Sent Events)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from yugong.api import sse
from yugong.api.deps import Limit, Offset, PrincipalDep, TenantQuery
from yugong.core.errors import FieldError, InvalidInput
from yugong.core.timeutil import to_us
from yugong.infra.bus import Bus
from yugong.platform.alarms.queries import AlarmFilter, check_filter
from yugong.platform.alarms.records import AlarmEventRecord, AlarmRecord, change_json
from yugong.platform.alarms.service import READ, AlarmService
from yugong.platform.rules.types import ALARMS_TOPIC, AlarmChange

router = APIRouter(prefix="/alarms", tags=["alarms"])
STREAM_QUEUE = 10_000
OPENING = sse.opening("alarm stream")
MAX_STREAM_S = 24 * 3600.0


class AlarmOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: int
    rule_id: int | None
    rule_version: int | None
    device_id: int | None
    asset_id: int | None
    name: str
    severity: str = Field(description="critical, major, minor or warning")
    state: str = Field(description="active, acknowledged or cleared")
    acknowledged: bool
    count: int = Field(description="How many times the rule raised it while it was open.")
    value: float | None
    raised_at: datetime
    last_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    cleared_at: datetime | None
    cleared_by: str | None = Field(description="'rule', or the name of who cleared it.")
    assignee_id: int | None
    detail: dict[str, Any]


class AlarmPage(BaseModel):
    items: list[AlarmOut]
    total: int
    limit: int
    offset: int
    next_before: int | None = Field(
        description="Pass as 'before' for the next page (None: this was the last)."
    )


class AlarmEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    alarm_id: int
    at: datetime
    kind: str = Field(description="raised, repeated, acknowledged, assigned, commented or cleared")
    actor: str
    text: str | None
    detail: dict[str, Any]


class AssignRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: int | None = Field(description="A user of the alarm's tenant, or null: nobody.")


class CommentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=4000)


class SummaryOut(BaseModel):
    tenant_id: int
    open: dict[str, int] = Field(description="Open (active or acknowledged) alarms by severity.")
    unacknowledged: dict[str, int] = Field(description="Active alarms by severity.")
    total: int


def _service(request: Request) -> AlarmService:
    return cast(AlarmService, request.app.state.platform.alarms)


def _out(rec: AlarmRecord) -> AlarmOut:
    return AlarmOut.model_validate(rec)


def _time(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    try:
        return to_us(value)
    except ValueError as exc:
        raise InvalidInput(f"{name}: {exc}", [FieldError(name, str(exc))]) from None


def _words(values: list[str] | None) -> tuple[str, ...]:
    """Repeated parameters and comma lists alike: ``severity=major,minor``."""
    return tuple(w.strip() for v in values or () for w in v.split(",") if w.strip())


SeverityQ = Annotated[
    list[str] | None, Query(description="critical, major, minor, warning (repeat or commas)")
]
TimeQ = Annotated[str | None, Query(description="Epoch ms or ISO 8601; by time raised.")]


@router.get("", summary="List alarms, newest first", response_model=AlarmPage)
async def list_alarms(
    request: Request,
    principal: PrincipalDep,
    tenant_id: TenantQuery = None,
    asset: Annotated[int | None, Query(description="The asset and everything under it.")] = None,
    device: int | None = None,
    severity: SeverityQ = None,
    state: Annotated[
        list[str] | None, Query(description="active, acknowledged, cleared, or open")
    ] = None,
    since: TimeQ = None,
    until: TimeQ = None,
    rule: int | None = None,
    assignee: int | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
    before: Annotated[int | None, Query(ge=1, description="Cursor: alarms below this id.")] = None,
) -> AlarmPage:
    f = AlarmFilter(
        asset=asset,
        device=device,
        severity=_words(severity),
        state=_words(state),
        since_us=_time(since, "since"),
        until_us=_time(until, "until"),
        rule=rule,
        assignee=assignee,
    )
    page = await asyncio.to_thread(
        _service(request).list,
        principal,
        tenant_id=tenant_id,
        filters=f,
        limit=limit,
        offset=offset,
        before=before,
    )
    items = [_out(r) for r in page.items]
    last = items[-1].id if items and len(items) == limit else None
    return AlarmPage(
        items=items, total=page.total, limit=page.limit, offset=page.offset, next_before=last
    )


@router.get("/summary", summary="Open alarms by severity", response_model=SummaryOut)
async def summary(
    request: Request, principal: PrincipalDep, tenant_id: TenantQuery = None
) -> SummaryOut:
    body = await asyncio.to_thread(_service(request).summary, principal, tenant_id=tenant_id)
    return SummaryOut(**body)


@router.get(
    "/stream",
    summary="Live alarm changes (Server-Sent Events)",
    description=(
        "One `alarm` event per change of an alarm of the caller's tenant, its data a JSON "
        "alarm change; a comment line as heartbeat. `once=true` ends the stream after the "
        "opening comment; `timeout` (seconds) ends it after that long. If the stream fell "
        "behind and changes were lost, a `dropped` event says how many (re-read the list)."
    ),
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream(
    request: Request,
    principal: PrincipalDep,
    tenant_id: TenantQuery = None,
    severity: SeverityQ = None,
    device: int | None = None,
    once: bool = False,
    end_after: Annotated[
        float | None,
        Query(alias="timeout", gt=0, le=MAX_STREAM_S, description="End after this many seconds."),
    ] = None,
    heartbeat: Annotated[float, Query(ge=0.05, le=300)] = 15.0,
) -> StreamingResponse:
    principal.require(READ)
    tenant = principal.tenant_for(tenant_id)
    severities = frozenset(_words(severity))
    check_filter(AlarmFilter(severity=tuple(severities)))
    bus = cast(Bus, request.app.state.platform.bus)
    sub = bus.subscribe(ALARMS_TOPIC, maxsize=STREAM_QUEUE)  # before the answer starts

    def wanted(c: AlarmChange) -> bool:
        return (
            c.tenant == tenant
            and (not severities or c.severity in severities)
            and (device is None or c.device == device)
        )

    if once:
        sub.close()
        return sse.response(_just(OPENING))
    seen_dropped = 0

    def render(change: object) -> list[bytes]:
        nonlocal seen_dropped
        out = []
        if sub.dropped > seen_dropped:
            lost, seen_dropped = sub.dropped - seen_dropped, sub.dropped
            out.append(sse.message({"dropped": lost}, "dropped"))
        if isinstance(change, AlarmChange) and wanted(change):
            out.append(sse.message(change_json(change), "alarm"))
        return out

    events = sse.from_bus(sub, OPENING, render, heartbeat=heartbeat, end_after=end_after)
    return sse.response(events, sub)


async def _just(first: bytes) -> AsyncIterator[bytes]:
    yield first


@router.get("/{alarm_id}", summary="One alarm", response_model=AlarmOut)
async def get_alarm(
    request: Request, principal: PrincipalDep, alarm_id: int, tenant_id: TenantQuery = None
) -> AlarmOut:
    rec = await asyncio.to_thread(_service(request).get, principal, alarm_id, tenant_id=tenant_id)
    return _out(rec)


@router.get("/{alarm_id}/history", summary="The alarm's history, oldest first")
async def history(
    request: Request, principal: PrincipalDep, alarm_id: int, tenant_id: TenantQuery = None
) -> list[AlarmEventOut]:
    rows: list[AlarmEventRecord] = await asyncio.to_thread(
        _service(request).history, principal, alarm_id, tenant_id=tenant_id
    )
    return [AlarmEventOut.model_validate(e) for e in rows]


@router.post("/{alarm_id}/ack", summary="Acknowledge the alarm", response_model=AlarmOut)
async def acknowledge(
    request: Request, principal: PrincipalDep, alarm_id: int, tenant_id: TenantQuery = None
) -> AlarmOut:
    svc = _service(request)
    return _out(await asyncio.to_thread(svc.acknowledge, principal, alarm_id, tenant_id=tenant_id))


@router.post("/{alarm_id}/clear", summary="Clear the alarm by hand", response_model=AlarmOut)
async def clear(
    request: Request, principal: PrincipalDep, alarm_id: int, tenant_id: TenantQuery = None
) -> AlarmOut:
    svc = _service(request)
    return _out(await asyncio.to_thread(svc.clear, principal, alarm_id, tenant_id=tenant_id))


@router.post("/{alarm_id}/assign", summary="Assign the alarm to a user", response_model=AlarmOut)
async def assign(
    request: Request,
    principal: PrincipalDep,
    alarm_id: int,
    body: AssignRequest,
    tenant_id: TenantQuery = None,
) -> AlarmOut:
    svc = _service(request)
    rec = await asyncio.to_thread(
        svc.assign, principal, alarm_id, body.user_id, tenant_id=tenant_id
    )
    return _out(rec)


@router.post(
    "/{alarm_id}/comments",
    summary="Comment on the alarm",
    status_code=status.HTTP_201_CREATED,
    response_model=AlarmEventOut,
)
async def comment(
    request: Request,
    principal: PrincipalDep,
    alarm_id: int,
    body: CommentRequest,
    tenant_id: TenantQuery = None,
) -> AlarmEventOut:
    svc = _service(request)
    rec = await asyncio.to_thread(svc.comment, principal, alarm_id, body.text, tenant_id=tenant_id)
    return AlarmEventOut.model_validate(rec)
