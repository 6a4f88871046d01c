"""Devices: a list with status, filter and search; a device's thing model, latest values,
live trend and history chart."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from yugong.core.errors import NotFound
from yugong.web.console import PREFIX, NavItem, Viewer, ViewerDep, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
NAV = [NavItem("devices", f"{PREFIX}/devices", "devices:read")]
PAGE = 50
NUMERIC = ("int", "float", "double", "enum", "bool")


def _rows(
    request: Request, viewer: Viewer, q: str | None, status: str | None, offset: int
) -> dict[str, Any]:
    online = {"online": True, "offline": False}.get(status or "")
    listing = request.app.state.registry.devices.list(
        viewer.principal,
        tenant_id=viewer.tenant_id,
        search=q or None,
        online=online,
        limit=PAGE,
        offset=max(0, offset),
    )
    return {
        "devices": listing.items,
        "total": listing.total,
        "q": q or "",
        "status": status or "",
        "offset": listing.offset,
        "page": PAGE,
    }


Search = Annotated[str | None, Query(max_length=128)]
Status = Annotated[str | None, Query(pattern="^(online|offline)?$")]


@router.get("/devices", response_class=HTMLResponse)
def devices(
    request: Request, viewer: ViewerDep, q: Search = None, status: Status = None, offset: int = 0
) -> HTMLResponse:
    viewer.require("devices:read")
    template = "_device_rows.html" if request.headers.get("hx-request") else "devices.html"
    return render(request, template, viewer, **_rows(request, viewer, q, status, offset))


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def device(request: Request, viewer: ViewerDep, device_id: int) -> HTMLResponse:
    viewer.require("devices:read")
    registry = request.app.state.registry
    try:
        record = registry.devices.get(viewer.principal, device_id, tenant_id=viewer.tenant_id)
    except NotFound:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    product = registry.products.get(viewer.principal, record.product_id, tenant_id=record.tenant_id)
    props = list(product.tsl.get("properties", []))
    latest: dict[str, dict[str, object]] = {}
    if viewer.may("telemetry:read") and props:
        query = request.app.state.query
        refs = query.resolve(viewer.principal, [(device_id, None)])
        latest = {v["property"]: v for v in query.latest(refs)}
    numeric = [p["identifier"] for p in props if p.get("dataType", {}).get("type") in NUMERIC]
    return render(
        request,
        "device.html",
        viewer,
        device=record,
        product=product,
        props=props,
        latest=latest,
        numeric=numeric,
    )
