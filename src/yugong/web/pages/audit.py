"""The audit log: who did what, newest first (administrators only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from yugong.web.console import PREFIX, NavItem, ViewerDep, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
NAV = [NavItem("audit", f"{PREFIX}/audit", "audit:read")]
PAGE = 50


@router.get("/audit", response_class=HTMLResponse)
def audit(request: Request, viewer: ViewerDep, offset: int = 0) -> HTMLResponse:
    viewer.require("audit:read")
    log = request.app.state.security.audit
    entries, total = log.list(tenant_id=viewer.tenant_id, limit=PAGE, offset=max(0, offset))
    return render(
        request, "audit.html", viewer, entries=entries, total=total, offset=offset, page=PAGE
    )
