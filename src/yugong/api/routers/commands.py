"""Commands: write a read-write property of a device and get the device's answer."""

from __future__ import annotations

from typing import Any, cast

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, ConfigDict, Field

from yugong.api.deps import PrincipalDep
from yugong.platform.commands import MAX_TIMEOUT_S, CommandService

router = APIRouter(prefix="/devices", tags=["commands"])


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


@router.post(
    "/{device_id}/properties/{identifier}",
    summary="Write a read-write property on the device",
    description=(
        "Sends the value to the device (through its edge gateway) and waits for the answer. "
        "502: the device refused the write (the problem names its error); 504: no answer in "
        "time; 409: the device has no downlink now (e.g. its edge node is offline)."
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
    commands = cast(CommandService, request.app.state.commands)
    out = await commands.write_property(
        principal, device_id, identifier, body.value, timeout_s=body.timeout_s
    )
    return WriteResponse(
        status=out.status, device_id=out.device, property=out.property, value=out.value
    )
