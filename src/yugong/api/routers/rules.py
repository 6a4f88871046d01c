"""Stream rules: define (JSON or YAML), version, enable and disable, dry-run on history."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from yugong.api.deps import Limit, Offset, PrincipalDep, TenantQuery
from yugong.core.errors import FieldError, InvalidInput
from yugong.core.timeutil import to_us, us_to_iso
from yugong.platform.rules.runner import WouldBeAlarm
from yugong.platform.rules.service import RuleRecord, RuleService, RuleVersionRecord

router = APIRouter(tags=["rules"])
MAX_IMPORT_BYTES = 1_000_000


def get_rules(request: Request) -> RuleService:
    return cast(RuleService, request.app.state.platform.rules)


RulesDep = Annotated[RuleService, Depends(get_rules)]

SpecBody = Annotated[
    dict[str, Any],
    Body(
        description="A rule spec (see the rule spec reference).",
        examples=[
            {
                "name": "Spindle too hot",
                "target": {"product": "cnc-machine"},
                "severity": "major",
                "condition": {
                    "kind": "sustained",
                    "property": "spindle_temp",
                    "op": ">",
                    "value": 80,
                    "for": "5m",
                },
                "clear": {"hysteresis": 2},
            }
        ],
    ),
]


class RuleOut(BaseModel):
    id: int
    tenant_id: int
    name: str
    version: int
    enabled: bool
    spec: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, r: RuleRecord) -> RuleOut:
        return cls(
            id=r.id,
            tenant_id=r.tenant_id,
            name=r.name,
            version=r.version,
            enabled=r.enabled,
            spec=dict(r.spec),
            created_at=r.created_at,
            updated_at=r.updated_at,
        )


class RulePage(BaseModel):
    items: list[RuleOut]
    total: int
    limit: int
    offset: int


class VersionOut(BaseModel):
    version: int
    spec: dict[str, Any]
    created_at: datetime
    created_by: str

    @classmethod
    def of(cls, v: RuleVersionRecord) -> VersionOut:
        return cls(
            version=v.version, spec=dict(v.spec), created_at=v.created_at, created_by=v.created_by
        )


class DryRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_id: int | None = Field(None, description="A stored rule (its current version) ...")
    spec: dict[str, Any] | None = Field(None, description="... or a spec not stored yet.")
    start: int | str = Field(description="Epoch ms or ISO 8601.")
    end: int | str = Field(description="Epoch ms or ISO 8601 (exclusive).")


class WouldBeAlarmOut(BaseModel):
    device: int
    raised_at: str
    cleared_at: str | None
    raised_at_us: int
    cleared_at_us: int | None
    value: float | None

    @classmethod
    def of(cls, a: WouldBeAlarm) -> WouldBeAlarmOut:
        cleared = a.cleared_at_us
        return cls(
            device=a.device,
            raised_at=us_to_iso(a.raised_at_us),
            cleared_at=us_to_iso(cleared) if cleared is not None else None,
            raised_at_us=a.raised_at_us,
            cleared_at_us=cleared,
            value=a.value,
        )


class DryRunOut(BaseModel):
    alarms: list[WouldBeAlarmOut]


def _time(value: int | str, loc: str) -> int:
    try:
        return to_us(value)
    except ValueError as exc:
        raise InvalidInput(f"{loc}: {exc}", [FieldError(loc, str(exc))]) from None


@router.get("/rules", summary="List rules")
def list_rules(
    principal: PrincipalDep,
    rules: RulesDep,
    enabled: bool | None = None,
    search: Annotated[str | None, Query(max_length=128, description="In the name.")] = None,
    tenant_id: TenantQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> RulePage:
    page = rules.list(
        principal, tenant_id=tenant_id, enabled=enabled, search=search, limit=limit, offset=offset
    )
    return RulePage(
        items=[RuleOut.of(r) for r in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post("/rules", status_code=status.HTTP_201_CREATED, summary="Create a rule")
def create_rule(
    spec: SpecBody, principal: PrincipalDep, rules: RulesDep, tenant_id: TenantQuery = None
) -> RuleOut:
    return RuleOut.of(rules.create(principal, spec, tenant_id=tenant_id))


@router.post(
    "/rules:import",
    summary="Import rules (YAML or JSON)",
    description="One rule or a list, as YAML (`application/yaml`) or JSON. A rule whose name "
    "exists is updated (a new version), others are created; nothing is written unless every "
    "rule is valid.",
    openapi_extra={
        "requestBody": {
            "content": {
                "application/yaml": {"schema": {"type": "string"}},
                "application/json": {"schema": {}},
            },
            "required": True,
        }
    },
)
async def import_rules(
    request: Request, principal: PrincipalDep, rules: RulesDep, tenant_id: TenantQuery = None
) -> list[RuleOut]:
    body = await request.body()
    if len(body) > MAX_IMPORT_BYTES:
        raise InvalidInput(
            "body too large", [FieldError("body", f"at most {MAX_IMPORT_BYTES} bytes")]
        )
    ctype = request.headers.get("content-type", "")
    fmt: Literal["json", "yaml"] | None = "json" if "json" in ctype else None
    out = await asyncio.to_thread(rules.import_text, principal, body, fmt=fmt, tenant_id=tenant_id)
    return [RuleOut.of(r) for r in out]


@router.get(
    "/rules:export",
    summary="Export rules (YAML or JSON)",
    response_class=Response,
    responses={200: {"content": {"application/yaml": {}, "application/json": {}}}},
)
def export_rules(
    principal: PrincipalDep,
    rules: RulesDep,
    format: Literal["yaml", "json"] = "yaml",
    tenant_id: TenantQuery = None,
) -> Response:
    text = rules.export_text(principal, fmt=format, tenant_id=tenant_id)
    media = "application/json" if format == "json" else "application/yaml"
    return Response(text, media_type=media)


@router.post(
    "/rules:dry-run",
    summary="What a rule would have raised",
    description="Runs the rule (stored, by `rule_id`, or a `spec`) over the stored history "
    "from `start` to `end` with the live engine, and lists the alarms it would have raised.",
)
def dry_run(
    body: DryRunIn, principal: PrincipalDep, rules: RulesDep, tenant_id: TenantQuery = None
) -> DryRunOut:
    if (body.rule_id is None) == (body.spec is None):
        raise InvalidInput(
            "give exactly one of rule_id or spec", [FieldError("rule_id", "or spec, not both")]
        )
    rule: Any = body.rule_id if body.rule_id is not None else body.spec
    found = rules.dry_run(
        principal, rule, _time(body.start, "start"), _time(body.end, "end"), tenant_id=tenant_id
    )
    return DryRunOut(alarms=[WouldBeAlarmOut.of(a) for a in found])


@router.get("/rules/{rule_id}", summary="Get a rule")
def get_rule(
    rule_id: int, principal: PrincipalDep, rules: RulesDep, tenant_id: TenantQuery = None
) -> RuleOut:
    return RuleOut.of(rules.get(principal, rule_id, tenant_id=tenant_id))


@router.put("/rules/{rule_id}", summary="Replace a rule's spec (a new version)")
def update_rule(
    rule_id: int,
    spec: SpecBody,
    principal: PrincipalDep,
    rules: RulesDep,
    tenant_id: TenantQuery = None,
) -> RuleOut:
    return RuleOut.of(rules.update(principal, rule_id, spec, tenant_id=tenant_id))


@router.delete(
    "/rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    summary="Delete a rule",
)
def delete_rule(
    rule_id: int, principal: PrincipalDep, rules: RulesDep, tenant_id: TenantQuery = None
) -> None:
    rules.delete(principal, rule_id, tenant_id=tenant_id)


@router.get("/rules/{rule_id}/versions", summary="Every version of a rule")
def rule_versions(
    rule_id: int, principal: PrincipalDep, rules: RulesDep, tenant_id: TenantQuery = None
) -> list[VersionOut]:
    return [VersionOut.of(v) for v in rules.versions(principal, rule_id, tenant_id=tenant_id)]


@router.post("/rules/{rule_id}/enable", summary="Enable a rule")
def enable_rule(
    rule_id: int, principal: PrincipalDep, rules: RulesDep, tenant_id: TenantQuery = None
) -> RuleOut:
    return RuleOut.of(rules.set_enabled(principal, rule_id, True, tenant_id=tenant_id))


@router.post("/rules/{rule_id}/disable", summary="Disable a rule")
def disable_rule(
    rule_id: int, principal: PrincipalDep, rules: RulesDep, tenant_id: TenantQuery = None
) -> RuleOut:
    return RuleOut.of(rules.set_enabled(principal, rule_id, False, tenant_id=tenant_id))
