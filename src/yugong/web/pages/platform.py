"""Platform figures for the operator (platform admins): per industry and tenant, connected
and total devices, collection points, enterprise and active users; platform-wide, the
component catalog and its mechanism models. Exportable as CSV for a spreadsheet."""

from __future__ import annotations

import csv
import io
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from yugong.platform.figures import ACTIVE_DAYS, Counts, PlatformFigures, platform_figures
from yugong.web.console import PREFIX, NavItem, Viewer, ViewerDep, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
NAV = [NavItem("platform", f"{PREFIX}/platform", "tenants:write")]
COUNT_COLUMNS = ("devices", "online", "series", "users", "active_users")


def _figures(request: Request, viewer: Viewer) -> PlatformFigures:
    viewer.require("tenants:write")
    platform = getattr(request.app.state, "platform", None)
    components = getattr(platform, "components", None)
    catalog = getattr(components, "catalog", None)
    return platform_figures(viewer.principal, request.app.state.registry.db, catalog)


@router.get("/platform", response_class=HTMLResponse)
def figures_page(request: Request, viewer: ViewerDep) -> HTMLResponse:
    figures = _figures(request, viewer)
    return render(
        request,
        "platform.html",
        viewer,
        fig=figures,
        columns=COUNT_COLUMNS,
        active_days=ACTIVE_DAYS,
    )


def _counts(c: Counts) -> list[Any]:
    return [getattr(c, name) for name in COUNT_COLUMNS]


@router.get("/platform.csv")
def figures_csv(request: Request, viewer: ViewerDep) -> Response:
    """One row per tenant, a subtotal row per industry and a total row carrying the
    platform-wide figures. UTF-8 with a byte order mark, so spreadsheets read Chinese."""
    figures = _figures(request, viewer)
    t = viewer.t
    header = [t("fig.row"), t("fig.tenant"), t("fig.industry")]
    header += [t(f"fig.{name}") for name in COUNT_COLUMNS]
    header += [t("fig.components"), t("fig.mechanism"), t("fig.apps")]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    none = t("fig.no_industry")
    for group in figures.industries:
        industry = group.industry or none
        for row in group.tenants:
            writer.writerow(
                [t("fig.row_tenant"), row.name, industry, *_counts(row.counts), "", "", ""]
            )
        writer.writerow([t("fig.row_industry"), "", industry, *_counts(group.counts), "", "", ""])
    writer.writerow(
        [
            t("fig.row_total"),
            "",
            "",
            *_counts(figures.total),
            figures.components,
            figures.mechanism_models,
            figures.apps,
        ]
    )
    stamp = figures.at.strftime("%Y%m%d-%H%M")
    return Response(
        out.getvalue().encode("utf-8-sig"),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="yugong-figures-{stamp}.csv"'},
    )
