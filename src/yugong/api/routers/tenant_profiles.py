"""Tenant profiles (resource limits; platform admins) and each tenant's usage."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from fastapi import APIRouter, Request, status
from pydantic import BaseModel, ConfigDict, Field, field_validator

from yugong.api.deps import PrincipalDep
from yugong.platform.quotas import QuotaService

router = APIRouter(tags=["tenant profiles"])


def _quotas(request: Request) -> QuotaService:
    return cast(QuotaService, request.app.state.platform.quotas)


class _Limits(BaseModel):
    max_devices: int | None = Field(None, ge=0, description="Devices; null: unlimited.")
    max_users: int | None = Field(None, ge=0, description="Users of the tenant.")
    max_api_keys: int | None = Field(None, ge=0, description="Active API keys.")
    max_stored_bytes: int | None = Field(
        None, ge=0, description="Time-series bytes; over it ingest is refused (507)."
    )
    max_retention_days: int | None = Field(
        None, ge=1, description="Upper bound of the tenant's retention_days."
    )
    messages_per_s: float | None = Field(None, gt=0, description="Ingest messages/s, tenant.")
    points_per_s: float | None = Field(None, gt=0, description="Ingest data points/s, tenant.")
    device_messages_per_s: float | None = Field(None, gt=0, description="Per device.")
    device_points_per_s: float | None = Field(None, gt=0, description="Per device.")
    api_requests_per_s: float | None = Field(None, gt=0, description="API requests/s, tenant.")


class ProfileOut(_Limits):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    description: str
    is_default: bool
    created_at: datetime
    tenants: int = Field(description="Tenants using the profile.")


class ProfileCreate(_Limits):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    description: str = Field("", max_length=512)
    is_default: bool = Field(False, description="Make this the default profile.")


class ProfileUpdate(_Limits):
    """Send only what changes; a limit set to null becomes unlimited."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=128)
    description: str | None = Field(None, max_length=512)
    is_default: bool | None = Field(None, description="true: make this the default profile.")

    @field_validator("name", "description", "is_default", mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("may not be null")
        return v


@router.get("/tenant-profiles", summary="List tenant profiles")
def list_profiles(request: Request, principal: PrincipalDep) -> list[ProfileOut]:
    return [ProfileOut.model_validate(p) for p in _quotas(request).profiles.list(principal)]


@router.post(
    "/tenant-profiles", status_code=status.HTTP_201_CREATED, summary="Create a tenant profile"
)
def create_profile(body: ProfileCreate, request: Request, principal: PrincipalDep) -> ProfileOut:
    rec = _quotas(request).profiles.create(principal, **body.model_dump())
    return ProfileOut.model_validate(rec)


@router.get("/tenant-profiles/{profile_id}", summary="Get a tenant profile")
def get_profile(profile_id: int, request: Request, principal: PrincipalDep) -> ProfileOut:
    return ProfileOut.model_validate(_quotas(request).profiles.get(principal, profile_id))


@router.patch("/tenant-profiles/{profile_id}", summary="Change a tenant profile's limits")
def update_profile(
    profile_id: int, body: ProfileUpdate, request: Request, principal: PrincipalDep
) -> ProfileOut:
    changes = body.model_dump(exclude_unset=True)
    rec = _quotas(request).profiles.update(principal, profile_id, **changes)
    return ProfileOut.model_validate(rec)


@router.delete(
    "/tenant-profiles/{profile_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a tenant profile (its tenants move to the default profile)",
)
def delete_profile(profile_id: int, request: Request, principal: PrincipalDep) -> None:
    _quotas(request).profiles.delete(principal, profile_id)


class Usage(BaseModel):
    tenant_id: int
    limits: dict[str, Any] = Field(description="The effective limits (null: unlimited).")
    usage: dict[str, Any] = Field(
        description="Counts, stored bytes (an estimate) and rates over the last minute."
    )
    storage_full: bool = Field(description="Ingest refused: over max_stored_bytes.")
    refused: dict[str, int] = Field(
        description="Requests, messages or creations refused per limit since the server started."
    )
    since: float = Field(description="When the counters started (epoch seconds).")


@router.get(
    "/tenants/{tenant_id}/usage",
    tags=["tenants"],
    summary="A tenant's limits, usage and refusals (tenant admin or platform admin)",
)
def tenant_usage(tenant_id: int, request: Request, principal: PrincipalDep) -> Usage:
    return Usage(**_quotas(request).usage(principal, tenant_id))
