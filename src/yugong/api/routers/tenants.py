"""Tenants (enterprises). Platform admins manage them; other callers see their own."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from yugong.api.deps import Limit, Offset, PrincipalDep, RegistryDep

router = APIRouter(prefix="/tenants", tags=["tenants"])


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    slug: str
    industry: str | None
    retention_days: int | None
    active: bool
    created_at: datetime
    profile_id: int | None = None  # None: the default tenant profile


class TenantPage(BaseModel):
    items: list[TenantOut]
    total: int
    limit: int
    offset: int


class TenantCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    slug: str | None = Field(
        None, max_length=64, description="URL-safe id; derived from a latin name if omitted."
    )
    industry: str | None = Field(
        None, max_length=64, description='e.g. "discrete", "process", or any industry tag.'
    )
    retention_days: int | None = Field(
        None, ge=1, description="Days of telemetry to keep; null keeps everything."
    )
    active: bool = True


class TenantUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=128)
    slug: str | None = Field(None, max_length=64)
    industry: str | None = Field(None, max_length=64)
    retention_days: int | None = Field(None, ge=1)
    active: bool | None = Field(None)
    profile_id: int | None = Field(
        None, description="Tenant profile (resource limits); null: the default profile."
    )

    @field_validator("name", "slug", "active", mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        # Omit a field to leave it unchanged; null is only meaningful where allowed.
        if v is None:
            raise ValueError("may not be null")
        return v


@router.get("", summary="List tenants")
def list_tenants(
    principal: PrincipalDep, registry: RegistryDep, limit: Limit = 100, offset: Offset = 0
) -> TenantPage:
    page = registry.tenants.list(principal, limit=limit, offset=offset)
    return TenantPage(
        items=[TenantOut.model_validate(t) for t in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a tenant")
def create_tenant(body: TenantCreate, principal: PrincipalDep, registry: RegistryDep) -> TenantOut:
    return TenantOut.model_validate(registry.tenants.create(principal, **body.model_dump()))


@router.get("/{tenant_id}", summary="Get a tenant")
def get_tenant(tenant_id: int, principal: PrincipalDep, registry: RegistryDep) -> TenantOut:
    return TenantOut.model_validate(registry.tenants.get(principal, tenant_id))


@router.patch("/{tenant_id}", summary="Change a tenant")
def update_tenant(
    tenant_id: int, body: TenantUpdate, principal: PrincipalDep, registry: RegistryDep
) -> TenantOut:
    changes = body.model_dump(exclude_unset=True)
    return TenantOut.model_validate(registry.tenants.update(principal, tenant_id, **changes))


@router.delete(
    "/{tenant_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a tenant with all its assets, products, devices and telemetry",
)
def delete_tenant(
    tenant_id: int, request: Request, principal: PrincipalDep, registry: RegistryDep
) -> None:
    series = registry.tenants.delete(principal, tenant_id)
    store = getattr(request.app.state, "store", None)
    if store is not None and series:
        store.delete_series(tenant_id, series)
