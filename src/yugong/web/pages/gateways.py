"""Edge gateways: the tenant's gateway devices with status; per gateway its child devices and
the health the gateway publishes about itself (device ``<gateway>-health``, see
yugong.edge.gateway.Health): connectors, devices, poll latency, buffer depth, dropped counts,
as tiles with a small trend of poll latency and buffer depth."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from yugong.core.errors import NotFound
from yugong.platform.registry.records import DeviceRecord
from yugong.web.console import PREFIX, NavItem, Viewer, ViewerDep, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
NAV = [NavItem("gateways", f"{PREFIX}/gateways", "devices:read")]
SCAN = 1000  # gateways (and devices behind one) listed at most
# The health points, in the order of the tiles; "warn" ones are worth a look when not 0.
HEALTH = (
    ("connectors", False),
    ("devices", False),
    ("devices_online", False),
    ("poll_latency_ms_avg", False),
    ("poll_latency_ms_max", False),
    ("points_read", False),
    ("bad_points", True),
    ("errors", True),
    ("dropped_messages", True),
    ("buffer_rows", False),
    ("buffer_batches", False),
    ("buffer_bytes", False),
    ("dropped_rows", True),
    ("refused_rows", True),
    ("sink_dropped_rows", True),
)
TREND = ("poll_latency_ms_avg", "poll_latency_ms_max", "buffer_rows")


def health_name(gateway: str) -> str:
    """The health device's default name (the edge config's ``health.device``)."""
    return f"{gateway}-health"


def gateway_devices(request: Request, viewer: Viewer) -> list[DeviceRecord]:
    devices = request.app.state.registry.devices
    page = devices.list(viewer.principal, tenant_id=viewer.tenant_id, is_gateway=True, limit=SCAN)
    return list(page.items)


@router.get("/gateways", response_class=HTMLResponse)
def gateways(request: Request, viewer: ViewerDep) -> HTMLResponse:
    viewer.require("devices:read")
    if viewer.tenant_id is None:
        return render(request, "gateways.html", viewer, rows=None)
    devices = request.app.state.registry.devices
    rows = []
    for g in gateway_devices(request, viewer):
        children = devices.list(
            viewer.principal, tenant_id=viewer.tenant_id, gateway_id=g.id, limit=1
        ).total
        rows.append({"g": g, "children": children})
    return render(request, "gateways.html", viewer, rows=rows)


def gateway_health(
    request: Request, viewer: Viewer, gateway: DeviceRecord, children: list[DeviceRecord]
) -> tuple[DeviceRecord | None, dict[str, Any]]:
    """The gateway's health device and its latest values (empty without telemetry:read)."""
    name = health_name(gateway.name)
    device = next((d for d in children if d.name == name), None)
    if device is None:
        try:
            device = request.app.state.registry.devices.get_by_name(
                viewer.principal, name, tenant_id=viewer.tenant_id
            )
        except NotFound:
            return None, {}
    if not viewer.may("telemetry:read"):
        return device, {}
    query = request.app.state.query
    refs = query.resolve(viewer.principal, [(device.id, None)])
    return device, {v["property"]: v for v in query.latest(refs)}


@router.get("/gateways/{device_id}", response_class=HTMLResponse)
def gateway(request: Request, viewer: ViewerDep, device_id: int) -> HTMLResponse:
    viewer.require("devices:read")
    devices = request.app.state.registry.devices
    try:
        g = devices.get(viewer.principal, device_id, tenant_id=viewer.tenant_id)
    except NotFound:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    if not g.is_gateway:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    children = devices.list(
        viewer.principal, tenant_id=g.tenant_id, gateway_id=g.id, limit=SCAN
    ).items
    health, latest = gateway_health(request, viewer, g, children)
    tiles = [
        {"key": key, "warn": warn, "v": latest.get(key)} for key, warn in HEALTH if key in latest
    ]
    trend = [key for key in TREND if key in latest]
    return render(
        request,
        "gateways_detail.html",
        viewer,
        g=g,
        children=[c for c in children if health is None or c.id != health.id],
        health=health,
        health_name=health_name(g.name),
        tiles=tiles,
        trend=trend,
    )
