"""Dashboards: the viewer's own and the tenant's shared ones; a dashboard's widgets (charts fed
by the history API, values by the latest-values API, alarms by the alarm API, refreshed in the
browser); an editor to compose one from widgets bound to the tenant's devices."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import HTMLResponse

from yugong.core.errors import NotFound, YugongError
from yugong.platform.dashboards import KINDS, RANGES, DashboardRecord
from yugong.web.console import PREFIX, NavItem, Viewer, ViewerDep, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
NAV = [NavItem("dashboards", f"{PREFIX}/dashboards", "dashboards:read")]
MAX_DEVICES = 500  # offered in the editor's device picker
RANGE_MS = {"15m": 900_000, "1h": 3_600_000, "6h": 21_600_000, "24h": 86_400_000}
RANGE_MS |= {"7d": 7 * 86_400_000, "30d": 30 * 86_400_000}


def _service(request: Request) -> Any:
    return request.app.state.platform.dashboards


def _devices(request: Request, viewer: Viewer) -> list[dict[str, Any]]:
    """The tenant's devices with their properties, for the editor's pickers and the names
    shown on widgets."""
    if not viewer.may("devices:read") or viewer.tenant_id is None:
        return []
    registry = request.app.state.registry
    listing = registry.devices.list(viewer.principal, tenant_id=viewer.tenant_id, limit=MAX_DEVICES)
    directory = request.app.state.platform.directory
    out = []
    for d in listing.items:
        binding = directory.by_id(d.id)
        props = binding.properties if binding is not None else {}
        out.append(
            {
                "id": d.id,
                "name": d.name,
                "properties": [{"id": k, "kind": p.kind} for k, p in sorted(props.items())],
            }
        )
    return out


def _api_tenant(viewer: Viewer) -> str:
    """A platform admin names the tenant in API calls; tenant users act on their own."""
    return f"tenant_id={viewer.tenant_id}" if viewer.tenants else ""


@router.get("/dashboards", response_class=HTMLResponse)
def dashboards(request: Request, viewer: ViewerDep) -> HTMLResponse:
    viewer.require("dashboards:read")
    boards = _service(request).list(viewer.principal, tenant_id=viewer.tenant_id)
    return render(request, "dashboards.html", viewer, boards=boards, me=viewer.principal.id)


def _editor(
    request: Request, viewer: Viewer, board: DashboardRecord | None, status_code: int = 200
) -> HTMLResponse:
    return render(
        request,
        "dashboards_edit.html",
        viewer,
        board=board,
        kinds=KINDS,
        ranges=RANGES,
        devices=_devices(request, viewer),
        widgets_json=json.dumps(board.widgets if board else [], ensure_ascii=False),
        status_code=status_code,
    )


@router.get("/dashboards/new", response_class=HTMLResponse)
def new_dashboard(request: Request, viewer: ViewerDep) -> HTMLResponse:
    viewer.require("dashboards:write")
    return _editor(request, viewer, None)


def _board(request: Request, viewer: Viewer, dashboard_id: int) -> DashboardRecord | None:
    try:
        board: DashboardRecord = _service(request).get(
            viewer.principal, dashboard_id, tenant_id=viewer.tenant_id
        )
    except NotFound:
        return None
    return board


@router.get("/dashboards/{dashboard_id}", response_class=HTMLResponse)
def dashboard(request: Request, viewer: ViewerDep, dashboard_id: int) -> HTMLResponse:
    viewer.require("dashboards:read")
    board = _board(request, viewer, dashboard_id)
    if board is None:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    names = {d["id"]: d["name"] for d in _devices(request, viewer)}
    return render(
        request,
        "dashboards_view.html",
        viewer,
        board=board,
        names=names,
        range_ms=RANGE_MS,
        api_tenant=_api_tenant(viewer),
    )


@router.get("/dashboards/{dashboard_id}/edit", response_class=HTMLResponse)
def edit_dashboard(request: Request, viewer: ViewerDep, dashboard_id: int) -> HTMLResponse:
    viewer.require("dashboards:write")
    board = _board(request, viewer, dashboard_id)
    if board is None:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    if not board.editable:
        return render(request, "error.html", viewer, status_code=403, kind="forbidden")
    return _editor(request, viewer, board)


def _redirect(target: str) -> Response:
    return Response(status_code=200, headers={"HX-Redirect": target})


@router.post("/dashboards/save", response_class=HTMLResponse)
def save(
    request: Request,
    viewer: ViewerDep,
    name: Annotated[str, Form(max_length=128)] = "",
    widgets: Annotated[str, Form(max_length=200_000)] = "[]",
    shared: Annotated[str | None, Form(max_length=8)] = None,
    dashboard_id: Annotated[str | None, Form(max_length=20)] = None,
) -> Response:
    """Create or replace a dashboard; a refusal is answered 200 with the error shown, so
    htmx swaps it into the editor."""
    viewer.require("dashboards:write")
    service = _service(request)
    try:
        parsed = json.loads(widgets or "[]")
    except ValueError:
        return render(request, "_dash_error.html", viewer, error=viewer.t("dash.bad_widgets"))
    try:
        if dashboard_id and dashboard_id.isdigit():
            board = service.update(
                viewer.principal,
                int(dashboard_id),
                name=name,
                widgets=parsed,
                shared=bool(shared),
                tenant_id=viewer.tenant_id,
            )
        else:
            board = service.create(
                viewer.principal,
                name=name,
                widgets=parsed,
                shared=bool(shared),
                tenant_id=viewer.tenant_id,
            )
    except YugongError as exc:
        return render(request, "_dash_error.html", viewer, error=exc.detail)
    return _redirect(f"{PREFIX}/dashboards/{board.id}")


@router.post("/dashboards/{dashboard_id}/delete", response_class=HTMLResponse)
def delete(request: Request, viewer: ViewerDep, dashboard_id: int) -> Response:
    viewer.require("dashboards:write")
    try:
        _service(request).delete(viewer.principal, dashboard_id, tenant_id=viewer.tenant_id)
    except YugongError as exc:
        return render(request, "_dash_error.html", viewer, error=exc.detail)
    return _redirect(f"{PREFIX}/dashboards")
