"""API keys: create (the plain key is shown once), list, revoke."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field

from yugong.api.deps import PrincipalDep, SecurityDep
from yugong.security.apikeys import ApiKeyInfo
from yugong.security.principal import Role

router = APIRouter(prefix="/apikeys", tags=["api keys"])


class ApiKeyOut(BaseModel):
    id: int
    tenant_id: int | None
    created_by: int
    name: str
    role: Role
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")

    @classmethod
    def of(cls, info: ApiKeyInfo) -> ApiKeyOut:
        return cls(**asdict(info))


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself. Shown only now: store it safely.")


class ApiKeyCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    role: Role | None = Field(None, description="Default: the caller's role. Never higher.")
    expires_at: datetime | None = Field(None, description="ISO 8601 with a time zone.")
    tenant_id: int | None = Field(None, description="Platform admins only: the tenant.")


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create an API key")
def create_key(body: ApiKeyCreate, principal: PrincipalDep, security: SecurityDep) -> ApiKeyCreated:
    new = security.apikeys.create(principal, **body.model_dump())
    return ApiKeyCreated(key=new.key, **asdict(new.info))


@router.get("", summary="List API keys")
def list_keys(
    principal: PrincipalDep,
    security: SecurityDep,
    tenant_id: int | None = None,
    include_revoked: bool = False,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ApiKeyOut]:
    keys = security.apikeys.list(
        principal, tenant_id=tenant_id, include_revoked=include_revoked, limit=limit, offset=offset
    )
    return [ApiKeyOut.of(k) for k in keys]


@router.delete("/{key_id}", summary="Revoke an API key")
def revoke_key(key_id: int, principal: PrincipalDep, security: SecurityDep) -> ApiKeyOut:
    return ApiKeyOut.of(security.apikeys.revoke(principal, key_id))
