"""Commands to a device: set a read-write property or call a thing-model service, confirmed
first, then follow the command's status until the device answered (or did not); the
device's recent commands. Sent through the same CommandService the API uses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse

from yugong.core.errors import NotFound, YugongError
from yugong.platform.command_queue import CommandRecord
from yugong.platform.commands import CommandService
from yugong.web.console import PREFIX, Viewer, ViewerDep, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
FINAL = ("acknowledged", "failed", "timed_out")
RECENT = 20
TIMEOUT_S = 10.0
PARAM = "p."  # form fields of a service's arguments: "p.<identifier>"


def _service(request: Request) -> CommandService:
    service: CommandService = request.app.state.commands
    return service


def _typed(data_type: Mapping[str, Any], text: str) -> Any:
    """The form's text as the thing model's type wants it; text that is not one is sent as
    it is, so the thing-model check names the field and what it expects."""
    kind = str(data_type.get("type", ""))
    text = text.strip()
    try:
        if kind in ("int", "enum", "bool"):
            return int(text)
        if kind in ("float", "double"):
            return float(text)
    except ValueError:
        return text
    return text


def _model(request: Request, viewer: Viewer, device_id: int) -> tuple[Any, dict[str, Any]]:
    registry = request.app.state.registry
    device = registry.devices.get(viewer.principal, device_id, tenant_id=viewer.tenant_id)
    product = registry.products.get(viewer.principal, device.product_id, tenant_id=device.tenant_id)
    return device, dict(product.tsl)


def _writable(tsl: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [p for p in tsl.get("properties") or () if p.get("accessMode") == "rw"]


def _inputs(data_type: Mapping[str, Any]) -> dict[str, Any]:
    """How a value of this type is typed in: its input kind, bounds and choices."""
    kind = str(data_type.get("type", ""))
    specs = data_type.get("specs")
    specs = specs if isinstance(specs, Mapping) else {}
    if kind in ("bool", "enum"):
        return {"input": "select", "choices": [(k, str(v)) for k, v in specs.items()]}
    if kind in ("int", "float", "double"):
        step = specs.get("step") or ("1" if kind == "int" else "any")
        return {"input": "number", "min": specs.get("min"), "max": specs.get("max"), "step": step}
    return {"input": "text", "maxlength": specs.get("length")}


def _page(request: Request, viewer: Viewer, device: Any, tsl: Mapping[str, Any]) -> dict[str, Any]:
    props = [{**p, **_inputs(p.get("dataType") or {})} for p in _writable(tsl)]
    services = [
        {
            **s,
            "params": [{**a, **_inputs(a.get("dataType") or {})} for a in s.get("inputData") or ()],
        }
        for s in tsl.get("services") or ()
    ]
    return {"device": device, "props": props, "services": services}


async def _recent(request: Request, viewer: Viewer, device_id: int) -> list[CommandRecord]:
    items, _total = await _service(request).list(viewer.principal, device_id, limit=RECENT)
    return items


@router.get("/devices/{device_id}/commands", response_class=HTMLResponse)
async def commands(request: Request, viewer: ViewerDep, device_id: int) -> HTMLResponse:
    viewer.require("devices:read")
    try:
        device, tsl = await run_in_threadpool(_model, request, viewer, device_id)
        recent = await _recent(request, viewer, device_id)
    except NotFound:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    if request.headers.get("hx-request") == "true" and request.query_params.get("part"):
        return render(request, "_command_rows.html", viewer, device=device, recent=recent)
    context = _page(request, viewer, device, tsl)
    return render(request, "commands.html", viewer, recent=recent, final=FINAL, **context)


@router.post("/devices/{device_id}/commands", response_class=HTMLResponse)
async def send(request: Request, viewer: ViewerDep, device_id: int) -> HTMLResponse:
    """Queue a write or a service call; answered with its status row (which then polls), or
    with the reason it was refused (a thing-model check, no downlink, ...)."""
    viewer.require("devices:write")
    form = {k: str(v) for k, v in (await request.form()).items()}
    kind, name = form.get("kind", ""), form.get("name", "")
    try:
        _device, tsl = await run_in_threadpool(_model, request, viewer, device_id)
    except NotFound:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    error: YugongError | None = None
    record: CommandRecord | None = None
    try:
        if kind == "service":
            service: dict[str, Any] = next(
                (s for s in tsl.get("services") or () if s.get("identifier") == name), {}
            )
            types = {
                a.get("identifier"): a.get("dataType") or {} for a in service.get("inputData") or ()
            }
            params = {
                k[len(PARAM) :]: _typed(types.get(k[len(PARAM) :], {}), v)
                for k, v in form.items()
                if k.startswith(PARAM)
            }
            record = await _service(request).submit(
                viewer.principal, device_id, "service", name, params=params, timeout_s=TIMEOUT_S
            )
        else:
            prop: dict[str, Any] = next(
                (p for p in tsl.get("properties") or () if p.get("identifier") == name), {}
            )
            value = _typed(prop.get("dataType") or {}, form.get("value", ""))
            record = await _service(request).submit(
                viewer.principal, device_id, "write", name, value=value, timeout_s=TIMEOUT_S
            )
    except YugongError as exc:
        error = exc
    response = render(
        request,
        "_command_status.html",
        viewer,
        c=record,
        final=FINAL,
        error=error,
        errors=[f"{e.loc}: {e.msg}" for e in error.errors] if error else [],
    )
    if record is not None:
        response.headers["HX-Trigger"] = "cmd-sent"  # the recent-commands table reloads
    return response


@router.get("/commands/{command_id}", response_class=HTMLResponse)
async def command_status(request: Request, viewer: ViewerDep, command_id: int) -> HTMLResponse:
    viewer.require("devices:read")
    try:
        record = await _service(request).get(viewer.principal, command_id)
    except NotFound:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    response = render(request, "_command_status.html", viewer, c=record, final=FINAL, error=None)
    if record.status in FINAL:
        response.headers["HX-Trigger"] = "cmd-done"
    return response
