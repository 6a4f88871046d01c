"""Dashboards: people compose them from widgets bound to devices and properties; saved per
user, shared within the tenant."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from yugong.api.deps import PrincipalDep, TenantQuery
from yugong.platform.dashboards import MAX_WIDGETS, DashboardRecord, DashboardService

router = APIRouter(tags=["dashboards"])


def get_dashboards(request: Request) -> DashboardService:
    return cast(DashboardService, request.app.state.platform.dashboards)


DashboardsDep = Annotated[DashboardService, Depends(get_dashboards)]


class DashboardIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=128, examples=["Line 1"])
    shared: bool = Field(False, description="Shown (read-only) to everyone of the tenant.")
    # Checked by the service, which names the field of each problem (widgets[2].property).
    widgets: list[dict[str, Any]] = Field(
        default_factory=list,
        max_length=MAX_WIDGETS,
        description="Widgets in order: kind trend | gauge | value | state_timeline | table | "
        "alarms, bound to a device (table: devices) and property (trend, table: properties).",
        examples=[
            [
                {"kind": "trend", "device": 1, "properties": ["temperature"], "range": "1h"},
                {"kind": "gauge", "device": 1, "property": "temperature", "min": 0, "max": 120},
            ]
        ],
    )


class DashboardOut(BaseModel):
    id: int
    tenant_id: int
    owner_id: int | None
    name: str
    shared: bool
    widgets: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    editable: bool = Field(description="Whether the caller may change or delete it.")

    @classmethod
    def of(cls, d: DashboardRecord) -> DashboardOut:
        return cls(
            id=d.id,
            tenant_id=d.tenant_id,
            owner_id=d.owner_id,
            name=d.name,
            shared=d.shared,
            widgets=d.widgets,
            created_at=d.created_at,
            updated_at=d.updated_at,
            editable=d.editable,
        )


@router.get("/dashboards", summary="List dashboards: the caller's own and the shared ones")
def list_dashboards(
    principal: PrincipalDep, dashboards: DashboardsDep, tenant_id: TenantQuery = None
) -> list[DashboardOut]:
    return [DashboardOut.of(d) for d in dashboards.list(principal, tenant_id=tenant_id)]


@router.post("/dashboards", status_code=status.HTTP_201_CREATED, summary="Create a dashboard")
def create_dashboard(
    body: DashboardIn,
    principal: PrincipalDep,
    dashboards: DashboardsDep,
    tenant_id: TenantQuery = None,
) -> DashboardOut:
    d = dashboards.create(
        principal, name=body.name, widgets=body.widgets, shared=body.shared, tenant_id=tenant_id
    )
    return DashboardOut.of(d)


@router.get("/dashboards/{dashboard_id}", summary="Get a dashboard")
def get_dashboard(
    dashboard_id: int,
    principal: PrincipalDep,
    dashboards: DashboardsDep,
    tenant_id: TenantQuery = None,
) -> DashboardOut:
    return DashboardOut.of(dashboards.get(principal, dashboard_id, tenant_id=tenant_id))


@router.put("/dashboards/{dashboard_id}", summary="Replace a dashboard (owner or admin)")
def update_dashboard(
    dashboard_id: int,
    body: DashboardIn,
    principal: PrincipalDep,
    dashboards: DashboardsDep,
    tenant_id: TenantQuery = None,
) -> DashboardOut:
    d = dashboards.update(
        principal,
        dashboard_id,
        name=body.name,
        widgets=body.widgets,
        shared=body.shared,
        tenant_id=tenant_id,
    )
    return DashboardOut.of(d)


@router.delete(
    "/dashboards/{dashboard_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a dashboard (owner or admin)",
)
def delete_dashboard(
    dashboard_id: int,
    principal: PrincipalDep,
    dashboards: DashboardsDep,
    tenant_id: TenantQuery = None,
) -> Response:
    dashboards.delete(principal, dashboard_id, tenant_id=tenant_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
