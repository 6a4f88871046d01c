"""Telemetry ingest over HTTP.

- ThingsBoard's device HTTP API: ``POST /{token}/telemetry`` and ``/{token}/attributes``
  with the same payloads devices send over MQTT; the access token in the path is the
  identity.
- ``POST /telemetry`` for people and scripts (permission ``telemetry:write``): JSON rows or
  columns, or an Arrow IPC stream (``Content-Type: application/vnd.apache.arrow.stream``)
  in long form (device, property, ts, value [, text]) or wide form (ts + one column per
  property, with ``?device=``).

A request is accepted whole or refused whole. Answer: ``{"accepted": n, "out_of_range": m}``.
Include this router after the others: ``/{token}/telemetry`` would otherwise shadow any
two-segment ``.../telemetry`` route registered later.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, cast

import pyarrow as pa
from fastapi import APIRouter, Query, Request, Response

from yugong.api.deps import PrincipalDep
from yugong.core.errors import FieldError, InvalidInput, PayloadTooLarge, Unauthorized
from yugong.platform.ingest.payloads import loads
from yugong.platform.ingest.service import IngestResult, IngestService
from yugong.platform.registry.bindings import DeviceBinding

router = APIRouter(tags=["telemetry"])
ARROW_STREAM = "application/vnd.apache.arrow.stream"
DEFAULT_MAX_BYTES = 64 * 1024 * 1024


def _service(request: Request) -> IngestService:
    return cast(IngestService, request.app.state.ingest)


def _max_bytes(request: Request) -> int:
    settings = getattr(request.app.state, "settings", None)
    return int(getattr(settings, "max_request_bytes", DEFAULT_MAX_BYTES))


async def _body(request: Request) -> bytes:
    limit = _max_bytes(request)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes; at most {limit} accepted")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _answer(result: IngestResult) -> Response:
    body = b'{"accepted":%d,"out_of_range":%d}' % (result.accepted, result.out_of_range)
    return Response(body, media_type="application/json")


async def _device_by_token(request: Request, token: str) -> DeviceBinding:
    # A cache miss reads the registry database: not on the event loop.
    device = await asyncio.to_thread(_service(request).directory.by_token, token)
    if device is None:
        raise Unauthorized("unknown device access token")
    return device


def _read_arrow(body: bytes) -> pa.Table:
    try:
        return pa.ipc.open_stream(pa.py_buffer(body)).read_all()
    except (pa.ArrowInvalid, OSError) as exc:
        raise InvalidInput(
            f"not an Arrow IPC stream: {exc}", [FieldError("body", "expected an Arrow IPC stream")]
        ) from None


def _device_key(device: str) -> int | str:
    return int(device) if device.isdigit() else device


@router.post(
    "/telemetry",
    summary="Write telemetry (JSON rows or columns, or Arrow IPC)",
    responses={
        200: {"content": {"application/json": {"example": {"accepted": 3, "out_of_range": 0}}}}
    },
)
async def write_telemetry(
    request: Request,
    principal: PrincipalDep,
    device: Annotated[
        str | None,
        Query(description="Arrow wide form: the device (name or id) every column belongs to."),
    ] = None,
    tenant_id: Annotated[int | None, Query(description="Platform callers: the tenant.")] = None,
) -> Response:
    principal.require("telemetry:write")
    tenant = principal.tenant_for(tenant_id)
    svc = _service(request)
    body = await _body(request)
    if ARROW_STREAM in request.headers.get("content-type", ""):
        table = _read_arrow(body)
        if device is not None:
            binding = svc.resolve_device(tenant, _device_key(device))
            return _answer(await svc.ingest_arrow_wide(binding, table))
        return _answer(await svc.ingest_arrow(tenant, table))
    doc: Any = loads(body)
    return _answer(await svc.ingest_json(tenant, doc))


@router.post("/{token}/telemetry", summary="ThingsBoard device API: post telemetry")
async def device_telemetry(request: Request, token: str) -> Response:
    device = await _device_by_token(request, token)
    body = await _body(request)
    return _answer(await _service(request).ingest_telemetry(device, body))


@router.post("/{token}/attributes", summary="ThingsBoard device API: post client attributes")
async def device_attributes(request: Request, token: str) -> Response:
    device = await _device_by_token(request, token)
    body = await _body(request)
    n = await _service(request).ingest_attributes(device, body)
    return Response(b'{"updated":%d}' % n, media_type="application/json")
