"""Notification targets: webhooks and e-mail senders that rule actions deliver to.

Secrets (a webhook's HMAC key, an SMTP password) are write-only: responses say only
whether one is set. Each target's GET carries its delivery log since the server started.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Literal, cast

from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from yugong.api.deps import Limit, Offset, PrincipalDep, TenantQuery
from yugong.platform.notify.service import NotifyService
from yugong.platform.notify.targets import TargetInfo

router = APIRouter(prefix="/notification-targets", tags=["notifications"])


def _notify(request: Request) -> NotifyService:
    return cast(NotifyService, request.app.state.platform.notify)


class Delivery(BaseModel):
    queued: int
    delivered: int
    failed: int = Field(description="Given up: refused for good or out of attempts.")
    retries: int
    dropped: int = Field(description="Lost because the target's queue was full.")
    pending: int
    last_ok: bool | None
    last_status: int | None = Field(description="HTTP status or SMTP reply code.")
    last_error: str
    last_at: float | None = Field(description="Epoch seconds of the last try.")


class TargetOut(BaseModel):
    id: int
    tenant_id: int
    name: str
    kind: Literal["webhook", "email"]
    config: dict[str, Any]
    has_secret: bool = Field(description="A secret is set (it is never returned).")
    created_at: datetime
    delivery: Delivery


class TargetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    kind: Literal["webhook", "email"]
    config: dict[str, Any] = Field(
        description="webhook: {url, headers, timeout_s}; email: {host, port, security "
        "(starttls|ssl|none), username, from, to, timeout_s}."
    )
    secret: str | None = Field(
        None,
        max_length=1024,
        description="webhook: the HMAC key (required, 16+ characters); email: the SMTP password.",
    )
    tenant_id: int | None = Field(None, description="Platform admins: the tenant.")


class TargetUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=128)
    config: dict[str, Any] | None = Field(None, description="Replaces the whole config.")
    secret: str | None = Field(None, max_length=1024, description="A new secret.")


class TestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    to: list[str] | None = Field(None, description="e-mail: recipients (default config.to).")


class TestResult(BaseModel):
    ok: bool
    status: int | None = Field(description="HTTP status or SMTP reply code, when there was one.")
    error: str
    elapsed_ms: float


def _out(notify: NotifyService, info: TargetInfo) -> TargetOut:
    return TargetOut(
        id=info.id,
        tenant_id=info.tenant_id,
        name=info.name,
        kind=cast(Literal["webhook", "email"], info.kind),
        config=info.config,
        has_secret=info.has_secret,
        created_at=info.created_at,
        delivery=Delivery(**notify.log(info.id)),
    )


@router.get("", summary="List notification targets")
async def list_targets(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    tenant_id: TenantQuery = None,
    kind: Literal["webhook", "email"] | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[TargetOut]:
    notify = _notify(request)
    items, total = await asyncio.to_thread(
        notify.targets.list, principal, tenant_id=tenant_id, kind=kind, limit=limit, offset=offset
    )
    response.headers["X-Total-Count"] = str(total)
    return [_out(notify, i) for i in items]


@router.post("", status_code=status.HTTP_201_CREATED, summary="Create a notification target")
async def create_target(body: TargetCreate, request: Request, principal: PrincipalDep) -> TargetOut:
    notify = _notify(request)
    info = await asyncio.to_thread(lambda: notify.targets.create(principal, **body.model_dump()))
    return _out(notify, info)


@router.get("/{target_id}", summary="Get a notification target and its delivery log")
async def get_target(
    target_id: int, request: Request, principal: PrincipalDep, tenant_id: TenantQuery = None
) -> TargetOut:
    notify = _notify(request)
    info = await asyncio.to_thread(notify.targets.get, principal, target_id, tenant_id=tenant_id)
    return _out(notify, info)


@router.patch("/{target_id}", summary="Change a notification target")
async def update_target(
    target_id: int,
    body: TargetUpdate,
    request: Request,
    principal: PrincipalDep,
    tenant_id: TenantQuery = None,
) -> TargetOut:
    notify = _notify(request)
    changes = body.model_dump(exclude_unset=True)
    info = await asyncio.to_thread(
        lambda: notify.targets.update(principal, target_id, tenant_id=tenant_id, **changes)
    )
    return _out(notify, info)


@router.delete(
    "/{target_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a notification target",
)
async def delete_target(
    target_id: int, request: Request, principal: PrincipalDep, tenant_id: TenantQuery = None
) -> Response:
    notify = _notify(request)
    await asyncio.to_thread(notify.targets.delete, principal, target_id, tenant_id=tenant_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{target_id}/test", summary="Send a test notification now (one try, no retries)")
async def test_target(
    target_id: int,
    request: Request,
    principal: PrincipalDep,
    body: TestRequest | None = None,
    tenant_id: TenantQuery = None,
) -> TestResult:
    result = await _notify(request).test(
        principal, target_id, tenant_id=tenant_id, to=body.to if body is not None else None
    )
    return TestResult(**result)
