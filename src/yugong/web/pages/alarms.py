"""Alarms: filter by state and severity, acknowledge, clear, comment, assign; the list
refreshes itself when the alarm stream reports a change."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse

from yugong.core.errors import YugongError
from yugong.platform.alarms.queries import AlarmFilter
from yugong.web.console import PREFIX, NavItem, Viewer, ViewerDep, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
NAV = [NavItem("alarms", f"{PREFIX}/alarms", "alarms:read")]
SEVERITIES = ("critical", "major", "minor", "warning")
STATES = ("open", "active", "acknowledged", "cleared")
PAGE = 50

State = Annotated[str | None, Query(pattern="^(open|active|acknowledged|cleared)?$")]
Severity = Annotated[str | None, Query(pattern="^(critical|major|minor|warning)?$")]


def _listing(request: Request, viewer: Viewer, state: str | None, severity: str | None) -> dict:
    alarms = request.app.state.platform.alarms
    f = AlarmFilter(
        state=(state,) if state else ("open",), severity=(severity,) if severity else ()
    )
    page = alarms.list(viewer.principal, tenant_id=viewer.tenant_id, filters=f, limit=PAGE)
    return {
        "alarms": page.items,
        "total": page.total,
        "state": state or "open",
        "severity": severity or "",
        "states": STATES,
        "severities": SEVERITIES,
        "users": _assignees(request, viewer),
    }


def _assignees(request: Request, viewer: Viewer) -> list[Any]:
    """Who an alarm can be given to (for those who may list users)."""
    if not viewer.may("users:read"):
        return []
    users = request.app.state.security.users
    return [
        u for u in users.list(viewer.principal, tenant_id=viewer.tenant_id, limit=500) if u.active
    ]


@router.get("/alarms", response_class=HTMLResponse)
def alarms(
    request: Request, viewer: ViewerDep, state: State = None, severity: Severity = None
) -> HTMLResponse:
    viewer.require("alarms:read")
    template = "_alarm_rows.html" if request.headers.get("hx-request") else "alarms.html"
    return render(request, template, viewer, **_listing(request, viewer, state, severity))


@router.post("/alarms/{alarm_id}/{action}", response_class=HTMLResponse)
def act(
    request: Request,
    viewer: ViewerDep,
    alarm_id: int,
    action: str,
    text: Annotated[str | None, Form(max_length=4000)] = None,
    assignee: Annotated[str | None, Form(max_length=20)] = None,
) -> HTMLResponse:
    """One change to one alarm, answered with its row as it now is."""
    viewer.require("alarms:write")
    service = request.app.state.platform.alarms
    p, tenant = viewer.principal, viewer.tenant_id
    error = None
    try:
        if action == "ack":
            service.acknowledge(p, alarm_id, tenant_id=tenant)
        elif action == "clear":
            service.clear(p, alarm_id, tenant_id=tenant)
        elif action == "comment":
            service.comment(p, alarm_id, text or "", tenant_id=tenant)
        elif action == "assign":
            who = int(assignee) if assignee and assignee.isdigit() else None
            service.assign(p, alarm_id, who, tenant_id=tenant)
        else:
            return render(request, "error.html", viewer, status_code=404, kind="not_found")
    except YugongError as exc:
        error = exc.detail
    alarm = service.get(p, alarm_id, tenant_id=tenant)
    users = _assignees(request, viewer)
    return render(request, "_alarm_row.html", viewer, a=alarm, users=users, error=error)
