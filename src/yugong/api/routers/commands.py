"""Commands: write a read-write property or call a thing-model service of a device, and
follow what the device said (the command log)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, cast

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from yugong.api.deps import PrincipalDep
from yugong.platform.command_queue import CommandRecord
from yugong.platform.commands import MAX_TIMEOUT_S, CommandService

router = APIRouter(prefix="/devices", tags=["commands"])
commands_router = APIRouter(prefix="/commands", tags=["commands"])

Status = Literal["queued", "sent", "acknowledged", "failed", "timed_out"]


class WriteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    value: Any = Field(description="The new value; checked against the thing model.")
    timeout_s: float = Field(
        5.0, gt=0, le=MAX_TIMEOUT_S, description="How long to wait for the device's answer."
    )


class WriteResponse(BaseModel):
    status: str = Field(description="'ok' once the device confirmed the write.")
    device_id: int
    property: str
    value: Any


class CommandRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["write", "service"] = Field(
        description="'write' sets a read-write property; 'service' calls a thing-model service."
    )
    name: str = Field(min_length=1, max_length=64, description="Property or service identifier.")
    value: Any = Field(None, description="The value to write (kind 'write').")
    params: dict[str, Any] | None = Field(
        None, description="The service's arguments, checked against its inputData (kind 'service')."
    )
    timeout_s: float = Field(
        10.0, gt=0, le=MAX_TIMEOUT_S, description="How long to wait for the device once sent."
    )
    wait: bool = Field(False, description="Answer with the final record instead of at once.")


class CommandOut(BaseModel):
    id: int
    tenant_id: int
    device_id: int
    kind: str
    name: str
    params: dict[str, Any]
    status: str = Field(description="queued, sent, acknowledged, failed or timed_out.")
    result: dict[str, Any] = Field(
        description="The value written or the service's output; 'error' when it failed."
    )
    timeout_s: float
    created_at: datetime
    sent_at: datetime | None
    done_at: datetime | None
    created_by: str
    rule_id: int | None

    @classmethod
    def of(cls, r: CommandRecord) -> CommandOut:
        return cls(
            id=r.id,
            tenant_id=r.tenant,
            device_id=r.device,
            kind=r.kind,
            name=r.name,
            params=r.params,
            status=r.status,
            result=r.result,
            timeout_s=r.timeout_s,
            created_at=r.created_at,
            sent_at=r.sent_at,
            done_at=r.done_at,
            created_by=r.created_by,
            rule_id=r.rule_id,
        )


class CommandPage(BaseModel):
    items: list[CommandOut]
    total: int
    limit: int
    offset: int


def _service(request: Request) -> CommandService:
    return cast(CommandService, request.app.state.commands)


@router.post(
    "/{device_id}/properties/{identifier}",
    summary="Write a read-write property on the device",
    description=(
        "Sends the value to the device (through its edge gateway) and waits for the answer; "
        "the write is recorded in the command log. 502: the device refused the write (the "
        "problem names its error); 504: no answer in time; 409: the device has no downlink "
        "now (e.g. its edge node is offline)."
    ),
    response_model=WriteResponse,
)
async def write_property(
    request: Request,
    principal: PrincipalDep,
    body: WriteRequest,
    device_id: int,
    identifier: str = Path(description="The property identifier from the thing model."),
) -> WriteResponse:
    out = await _service(request).write_property(
        principal, device_id, identifier, body.value, timeout_s=body.timeout_s
    )
    return WriteResponse(
        status=out.status, device_id=out.device, property=out.property, value=out.value
    )


@router.post(
    "/{device_id}/commands",
    summary="Queue a property write or a service call",
    description=(
        "Checks the command against the thing model, records and queues it (commands to one "
        "device are sent one at a time, in order) and answers 202 with the queued record; "
        "with wait=true, 200 with the final record (acknowledged, failed or timed_out). "
        "409: the device has no downlink now."
    ),
    status_code=202,
    response_model=CommandOut,
)
async def submit_command(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    body: CommandRequest,
    device_id: int,
) -> CommandOut:
    record = await _service(request).submit(
        principal,
        device_id,
        body.kind,
        body.name,
        value=body.value,
        params=body.params,
        timeout_s=body.timeout_s,
        wait=body.wait,
    )
    if body.wait:
        response.status_code = 200
    return CommandOut.of(record)


@router.get(
    "/{device_id}/commands",
    summary="The device's commands, newest first",
    response_model=CommandPage,
)
async def list_commands(
    request: Request,
    principal: PrincipalDep,
    device_id: int,
    status: Status | None = Query(None, description="Only commands in this status."),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
) -> CommandPage:
    items, total = await _service(request).list(
        principal, device_id, status=status, offset=offset, limit=limit
    )
    return CommandPage(
        items=[CommandOut.of(r) for r in items], total=total, limit=limit, offset=offset
    )


@commands_router.get(
    "/{command_id}", summary="One command and its status", response_model=CommandOut
)
async def get_command(request: Request, principal: PrincipalDep, command_id: int) -> CommandOut:
    return CommandOut.of(await _service(request).get(principal, command_id))
