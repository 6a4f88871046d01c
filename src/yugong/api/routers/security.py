"""The audit log, security events and blocks, for administrators.

Tenant admins see their own tenant's entries and events and may block or unblock their own
devices; platform admins see everything (or one tenant with ``tenant_id``) and may also
block addresses and user names.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status
from pydantic import BaseModel, Field
from sqlalchemy import func, select

from yugong.api.deps import PrincipalDep, SecurityDep
from yugong.core.errors import Forbidden, NotFound
from yugong.platform.registry.models import Device
from yugong.security.blocks import BlockInfo
from yugong.security.models import AuditEntry, SecurityEvent
from yugong.security.principal import Principal

router = APIRouter(tags=["security"])

Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
TenantQuery = Annotated[int | None, Query(description="Platform admins: only this tenant.")]
Since = Annotated[datetime | None, Query(description="ISO 8601 with a time zone.")]


def _scope(p: Principal, action: str, tenant_id: int | None) -> tuple[int | None, bool]:
    """(tenant, all tenants?) the caller may read: its own tenant, or any for platform."""
    p.require(action)
    if p.tenant is not None:
        if tenant_id is not None and tenant_id != p.tenant:
            raise Forbidden("not allowed to read another tenant's security records")
        return p.tenant, False
    return tenant_id, True


# Audit log ----------------------------------------------------------------------------------


class AuditOut(BaseModel):
    id: int
    at: datetime
    tenant_id: int | None
    actor_kind: str
    actor_id: int | None
    actor_name: str
    source_ip: str | None
    action: str
    target_type: str | None
    target_id: str | None
    outcome: str
    detail: dict[str, Any]
    hash: str = Field(description="SHA-256 over the previous entry's hash and this entry.")


class AuditPage(BaseModel):
    items: list[AuditOut]
    total: int


def _audit_out(e: AuditEntry) -> AuditOut:
    return AuditOut(
        id=e.id,
        at=e.at,
        tenant_id=e.tenant_id,
        actor_kind=e.actor_kind,
        actor_id=e.actor_id,
        actor_name=e.actor_name,
        source_ip=e.source_ip,
        action=e.action,
        target_type=e.target_type,
        target_id=e.target_id,
        outcome=e.outcome,
        detail=e.detail or {},
        hash=e.hash,
    )


@router.get("/audit", summary="The audit log, newest first")
def list_audit(
    principal: PrincipalDep,
    security: SecurityDep,
    tenant_id: TenantQuery = None,
    since: Since = None,
    action: Annotated[
        str | None, Query(max_length=64, description="e.g. login, or devices (every devices.*)")
    ] = None,
    actor: Annotated[str | None, Query(max_length=128, description="Actor name.")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> AuditPage:
    tenant, every = _scope(principal, "audit:read", tenant_id)
    rows, total = security.audit.list(
        tenant_id=tenant,
        all_tenants=every,
        since=since,
        action=action,
        actor=actor,
        limit=limit,
        offset=offset,
    )
    return AuditPage(items=[_audit_out(e) for e in rows], total=total)


# Security events ----------------------------------------------------------------------------


class EventOut(BaseModel):
    id: int
    at: datetime
    tenant_id: int | None
    kind: str
    severity: str
    source_ip: str | None
    subject: str | None
    device_id: int | None
    count: int = Field(description="Repeats folded into this event.")
    alarm: bool = Field(description="Raised an alarm (critical, or a threshold crossed).")
    detail: dict[str, Any]


class EventPage(BaseModel):
    items: list[EventOut]
    total: int


@router.get("/security/events", summary="Security events, newest first")
def list_events(
    principal: PrincipalDep,
    security: SecurityDep,
    tenant_id: TenantQuery = None,
    kind: Annotated[str | None, Query(max_length=64)] = None,
    severity: Literal["info", "warning", "critical"] | None = None,
    since: Since = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> EventPage:
    tenant, every = _scope(principal, "security:read", tenant_id)
    q = select(SecurityEvent)
    if not every or tenant is not None:
        q = q.where(SecurityEvent.tenant_id == tenant)
    if kind:
        q = q.where(SecurityEvent.kind == kind)
    if severity:
        q = q.where(SecurityEvent.severity == severity)
    if since is not None:
        q = q.where(SecurityEvent.at >= since)
    with security.db.session() as s:
        total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
        rows = s.scalars(q.order_by(SecurityEvent.id.desc()).limit(limit).offset(offset)).all()
        items = [
            EventOut(
                id=e.id,
                at=e.at,
                tenant_id=e.tenant_id,
                kind=e.kind,
                severity=e.severity,
                source_ip=e.source_ip,
                subject=e.subject,
                device_id=e.device_id,
                count=e.count,
                alarm=bool((e.detail or {}).get("alarm")),
                detail=e.detail or {},
            )
            for e in rows
        ]
    return EventPage(items=items, total=int(total))


# Blocks -------------------------------------------------------------------------------------


class BlockOut(BaseModel):
    id: int
    kind: str
    value: str
    tenant_id: int | None
    reason: str
    created_at: datetime
    until: datetime
    lifted_at: datetime | None
    active: bool

    @classmethod
    def of(cls, b: BlockInfo) -> BlockOut:
        return cls(**asdict(b), active=b.active)


class BlockPage(BaseModel):
    items: list[BlockOut]
    total: int


class BlockIn(BaseModel):
    kind: Literal["ip", "device", "username"] = Field(
        description="Tenant admins may block only their own devices."
    )
    value: str = Field(min_length=1, max_length=128, description="Address, device id, or name.")
    reason: str = Field(min_length=1, max_length=255)
    duration_s: float | None = Field(
        None, gt=0, le=366 * 86_400, description="Default: the block_duration_s setting."
    )


def _device_tenant(security: Any, device_id: str) -> int:
    with security.db.session() as s:
        d = s.get(Device, int(device_id)) if device_id.isdigit() else None
        if d is None:
            raise NotFound(f"device {device_id} not found")
        return int(d.tenant_id)


@router.get("/security/blocks", summary="Blocked addresses, devices and user names")
def list_blocks(
    principal: PrincipalDep,
    security: SecurityDep,
    tenant_id: TenantQuery = None,
    active: Annotated[
        bool | None, Query(description="true: in force (default); false: ended; omit: all")
    ] = True,
    limit: Limit = 100,
    offset: Offset = 0,
) -> BlockPage:
    tenant, every = _scope(principal, "security:read", tenant_id)
    rows, total = security.blocks.list(
        tenant_id=tenant, all_tenants=every, active=active, limit=limit, offset=offset
    )
    return BlockPage(items=[BlockOut.of(b) for b in rows], total=total)


@router.post("/security/blocks", status_code=status.HTTP_201_CREATED, summary="Block")
def create_block(body: BlockIn, principal: PrincipalDep, security: SecurityDep) -> BlockOut:
    principal.require("security:write")
    tenant: int | None = None
    if body.kind == "device":
        tenant = _device_tenant(security, body.value.strip())
        if not principal.can_see_tenant(tenant):
            raise NotFound(f"device {body.value} not found")
    elif principal.tenant is not None:
        raise Forbidden("tenant admins may block only their own devices")
    duration = body.duration_s or security.settings.block_duration_s
    info = security.blocks.block(body.kind, body.value, body.reason, duration, tenant)
    security.audit.record(
        "security.block",
        tenant_id=tenant,
        target_type=f"block:{info.kind}",
        target_id=info.id,
        detail={"value": info.value, "reason": info.reason, "until": info.until.isoformat()},
    )
    return BlockOut.of(info)


@router.delete("/security/blocks/{block_id}", summary="Lift a block")
def lift_block(block_id: int, principal: PrincipalDep, security: SecurityDep) -> BlockOut:
    principal.require("security:write")
    info = security.blocks.get(block_id)
    if principal.tenant is not None and info.tenant_id != principal.tenant:
        raise NotFound(f"block {block_id} not found")
    info = security.blocks.lift(block_id)
    security.audit.record(
        "security.unblock",
        tenant_id=info.tenant_id,
        target_type=f"block:{info.kind}",
        target_id=info.id,
        detail={"value": info.value},
    )
    return BlockOut.of(info)
