"""Overview of a tenant: devices online and offline, data points per second, open alarms by
severity, gateways, and the latest alarm events."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from yugong.platform.alarms.queries import AlarmFilter
from yugong.platform.registry.records import DeviceRecord
from yugong.web.console import PREFIX, NavItem, Viewer, ViewerDep, render
from yugong.web.pages.gateways import gateway_devices, gateway_health

router = APIRouter(prefix=PREFIX, include_in_schema=False)
DROPS = ("dropped_messages", "dropped_rows", "refused_rows", "sink_dropped_rows")
NAV = [NavItem("overview", f"{PREFIX}/", "devices:read")]
# (tenant) -> (monotonic time, accepted points): the rate is the change between two looks.
_last_seen: dict[int, tuple[float, int]] = {}


def figures(request: Request, viewer: Viewer) -> dict[str, Any]:
    tenant = viewer.tenant_id
    if tenant is None:
        return {"tenant": None}
    p = viewer.principal
    devices = request.app.state.registry.devices
    total = devices.list(p, tenant_id=tenant, limit=1).total
    online = devices.list(p, tenant_id=tenant, online=True, limit=1).total
    gateways = [_with_health(request, viewer, g) for g in gateway_devices(request, viewer)]
    out: dict[str, Any] = {
        "tenant": tenant,
        "devices": total,
        "online": online,
        "offline": total - online,
        "gateways": gateways,
        "rate": _rate(request, tenant),
        "alarms": None,
        "recent": [],
    }
    if viewer.may("alarms:read"):
        alarms = request.app.state.platform.alarms
        out["alarms"] = alarms.summary(p, tenant_id=tenant)
        recent = alarms.list(p, tenant_id=tenant, filters=AlarmFilter(), limit=8)
        out["recent"] = recent.items
    return out


def _with_health(request: Request, viewer: Viewer, g: DeviceRecord) -> dict[str, Any]:
    """A gateway with the few health figures worth a glance: poll latency, buffer, drops."""
    _, latest = gateway_health(request, viewer, g, [])

    def value(key: str) -> float | None:
        v = latest.get(key, {}).get("value")
        return float(v) if isinstance(v, int | float) else None

    dropped = [value(k) for k in DROPS]
    return {
        "g": g,
        "latency": value("poll_latency_ms_avg"),
        "buffer": value("buffer_rows"),
        "dropped": sum(d for d in dropped if d is not None) if any(dropped) else None,
    }


def _rate(request: Request, tenant: int) -> float | None:
    stats = request.app.state.ingest.stats().get(tenant)
    accepted = stats.accepted if stats is not None else 0
    now = time.monotonic()
    before = _last_seen.get(tenant)
    _last_seen[tenant] = (now, accepted)
    if before is None or now - before[0] < 0.5:
        return None
    return max(0.0, (accepted - before[1]) / (now - before[0]))


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, viewer: ViewerDep) -> HTMLResponse:
    viewer.require("devices:read")
    return render(request, "overview.html", viewer, f=figures(request, viewer))


@router.get("/overview/figures", response_class=HTMLResponse)
def overview_figures(request: Request, viewer: ViewerDep) -> HTMLResponse:
    """The figures alone, refreshed by the page every few seconds."""
    viewer.require("devices:read")
    return render(request, "_overview_figures.html", viewer, f=figures(request, viewer))
