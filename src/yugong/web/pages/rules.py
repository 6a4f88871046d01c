"""Rules: the tenant's rules with enable/disable; a form to create and edit one that builds the
rule spec and hands it to the same RuleService the API uses (so its errors are the API's,
shown beside their fields); the spec as YAML, the version history, and a dry-run on stored
history drawn on a chart."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Annotated, Any

import yaml
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response

from yugong.core.errors import NotFound, YugongError
from yugong.platform.rules.service import RuleRecord, RuleService
from yugong.platform.rules.spec import SEVERITIES
from yugong.web.console import PREFIX, NavItem, Viewer, ViewerDep, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
NAV = [NavItem("rules", f"{PREFIX}/rules", "rules:read")]
PAGE = 200
PICKS = 500
KINDS = (
    "threshold",
    "sustained",
    "rate",
    "deviation",
    "expression",
    "no_data",
    "state_change",
    "count",
)
OPS = (
    (">", "gt"),
    (">=", "ge"),
    ("<", "lt"),
    ("<=", "le"),
    ("inside", "inside"),
    ("outside", "outside"),
)
TARGETS = ("device", "product", "asset")
# The condition fields each kind takes; the others stay out of the spec (the spec forbids
# unknown fields, so a hidden field's leftover value must not reach the service).
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "threshold": ("property", "op", "value", "low", "high"),
    "sustained": ("property", "op", "value", "low", "high", "for"),
    "rate": ("property", "op", "value", "abs"),
    "deviation": ("property", "value", "window", "min_samples"),
    "expression": ("expression",),
    "no_data": ("property", "for"),
    "state_change": ("property", "from", "to"),
    "count": ("property", "op", "value", "low", "high", "count", "window"),
}
CONDITION_FIELDS = tuple(dict.fromkeys(f for fs in KIND_FIELDS.values() for f in fs))
# For the form's show/hide: each field and the kinds that take it ("value": "threshold ...").
FIELD_KINDS = {f: " ".join(k for k, fs in KIND_FIELDS.items() if f in fs) for f in CONDITION_FIELDS}
NUMBER_FIELDS = ("value", "low", "high", "count", "min_samples")
RANGES = {"hour": 3600, "day": 86_400, "week": 7 * 86_400}
Range = Annotated[str, Query(alias="range", pattern="^(hour|day|week)$")]


def _rules(request: Request) -> RuleService:
    service: RuleService = request.app.state.platform.rules
    return service


# Form <-> spec ------------------------------------------------------------------------------


def _number(text: str) -> Any:
    """A number when the text is one; else the text, so the spec's own check names it."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def build_spec(form: Mapping[str, str], base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The rule spec the form describes. ``base`` (the stored spec when editing) keeps what
    the form does not edit: actions and the enabled switch."""
    f = {k: (v or "").strip() for k, v in form.items()}
    spec: dict[str, Any] = {"name": f.get("name", "")}
    if f.get("description"):
        spec["description"] = f["description"]
    kind_of_target = f.get("target_kind", "")
    target: dict[str, Any] = {}
    if kind_of_target in TARGETS and f.get(kind_of_target):
        value = f[kind_of_target]
        target[kind_of_target] = value if kind_of_target == "product" else _number(value)
    spec["target"] = target
    spec["severity"] = f.get("severity") or "warning"
    kind = f.get("kind", "")
    condition: dict[str, Any] = {"kind": kind}
    for name in KIND_FIELDS.get(kind, ()):
        raw = f.get(name, "")
        if name == "abs":
            if raw:
                condition["abs"] = True
        elif not raw:
            continue
        elif name in NUMBER_FIELDS or name in ("from", "to"):
            condition[name] = _number(raw)
        else:
            condition[name] = raw
    spec["condition"] = condition
    clear: dict[str, Any] = {}
    if f.get("hysteresis"):
        clear["hysteresis"] = _number(f["hysteresis"])
    if f.get("manual"):
        clear["manual"] = True
    if clear:
        spec["clear"] = clear
    if base is not None:
        if base.get("actions"):
            spec["actions"] = list(base["actions"])
        spec["enabled"] = bool(base.get("enabled", True))
    else:
        spec["enabled"] = bool(f.get("enabled"))
    return spec


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "on" if value else ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def spec_form(spec: Mapping[str, Any]) -> dict[str, str]:
    """The form's fields for a stored spec."""
    target = spec.get("target") or {}
    kind_of_target = next((k for k in TARGETS if target.get(k) is not None), "product")
    condition = spec.get("condition") or {}
    clear = spec.get("clear") or {}
    form = {
        "name": _text(spec.get("name")),
        "description": _text(spec.get("description")),
        "target_kind": kind_of_target,
        kind_of_target: _text(target.get(kind_of_target)),
        "severity": _text(spec.get("severity") or "warning"),
        "kind": _text(condition.get("kind") or "threshold"),
        "hysteresis": _text(clear.get("hysteresis")) if clear.get("hysteresis") else "",
        "manual": _text(bool(clear.get("manual"))),
        "enabled": _text(bool(spec.get("enabled", True))),
    }
    for name in CONDITION_FIELDS:
        if name in condition:
            form[name] = _text(condition[name])
    return form


def field_of(loc: str) -> str:
    """The form field an error's ``loc`` points at ("" for the form as a whole)."""
    parts = loc.split(".")
    if parts[0] == "spec":  # dry-run errors name the spec
        parts = parts[1:]
    if not parts:
        return ""
    head = parts[0]
    if head == "target":
        return "target"
    if head == "condition":
        if len(parts) == 1 or parts[1] == "kind":
            return "kind"
        return parts[1] if parts[1] in CONDITION_FIELDS else "kind"
    if head == "clear":
        return parts[1] if len(parts) > 1 and parts[1] in ("hysteresis", "manual") else ""
    if head in ("name", "description", "severity", "enabled"):
        return head
    return ""


def form_errors(exc: YugongError) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in exc.errors:
        out.setdefault(field_of(e.loc), []).append(e.msg)
    if not exc.errors:
        out[""] = [exc.detail]
    return out


# Page data ----------------------------------------------------------------------------------


def _target_words(spec: Mapping[str, Any]) -> tuple[str, str]:
    target = spec.get("target") or {}
    kind = next((k for k in TARGETS if target.get(k) is not None), "")
    return kind, _text(target.get(kind)) if kind else ""


def _picks(request: Request, viewer: Viewer) -> dict[str, Any]:
    """Devices, products, assets and known properties for the form's pickers."""
    registry = request.app.state.registry
    p, tenant = viewer.principal, viewer.tenant_id
    devices = registry.devices.list(p, tenant_id=tenant, limit=PICKS).items
    products = registry.products.list(p, tenant_id=tenant, limit=PICKS).items
    assets = (
        registry.assets.list(p, tenant_id=tenant, limit=PICKS).items
        if viewer.may("assets:read")
        else []
    )
    props = sorted(
        {
            str(prop.get("identifier"))
            for product in products
            for prop in (product.tsl.get("properties") or ())
            if prop.get("identifier")
        }
    )
    return {"devices": devices, "products": products, "assets": assets, "properties": props}


def _form_context(
    request: Request,
    viewer: Viewer,
    form: Mapping[str, str],
    errors: Mapping[str, list[str]] | None = None,
    rule: RuleRecord | None = None,
) -> dict[str, Any]:
    return {
        "form": form,
        "errors": errors or {},
        "rule": rule,
        "kinds": KINDS,
        "kind_fields": KIND_FIELDS,
        "field_kinds": FIELD_KINDS,
        "ops": OPS,
        "severities": SEVERITIES,
        "targets": TARGETS,
        **_picks(request, viewer),
    }


def _row(r: RuleRecord) -> dict[str, Any]:
    target_kind, target = _target_words(r.spec)
    condition = r.spec.get("condition") or {}
    return {
        "r": r,
        "kind": condition.get("kind", ""),
        "target_kind": target_kind,
        "target": target,
        "severity": r.spec.get("severity", "warning"),
    }


def _not_found(request: Request, viewer: Viewer) -> HTMLResponse:
    return render(request, "error.html", viewer, status_code=404, kind="not_found")


def _hx_redirect(target: str) -> Response:
    return Response(status_code=204, headers={"HX-Redirect": target})


# Routes -------------------------------------------------------------------------------------


@router.get("/rules", response_class=HTMLResponse)
def rules(request: Request, viewer: ViewerDep) -> HTMLResponse:
    viewer.require("rules:read")
    page = _rules(request).list(viewer.principal, tenant_id=viewer.tenant_id, limit=PAGE)
    return render(
        request,
        "rules.html",
        viewer,
        rows=[_row(r) for r in page.items],
        total=page.total,
    )


@router.get("/rules/new", response_class=HTMLResponse)
def new_rule(request: Request, viewer: ViewerDep) -> HTMLResponse:
    viewer.require("rules:write")
    form = {"target_kind": "product", "severity": "warning", "kind": "threshold", "op": ">"}
    form["enabled"] = "on"
    return render(request, "rules_new.html", viewer, **_form_context(request, viewer, form))


@router.post("/rules", response_class=HTMLResponse)
async def create_rule(request: Request, viewer: ViewerDep) -> Response:
    viewer.require("rules:write")
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        spec = build_spec(form)
        made = await run_in_threadpool(
            _rules(request).create, viewer.principal, spec, tenant_id=viewer.tenant_id
        )
    except YugongError as exc:
        context = _form_context(request, viewer, form, form_errors(exc))
        return render(request, "_rule_form.html", viewer, **context)
    return _hx_redirect(f"{PREFIX}/rules/{made.id}")


@router.get("/rules/{rule_id}", response_class=HTMLResponse)
def rule_page(request: Request, viewer: ViewerDep, rule_id: int) -> HTMLResponse:
    viewer.require("rules:read")
    service = _rules(request)
    try:
        rule = service.get(viewer.principal, rule_id, tenant_id=viewer.tenant_id)
        versions = service.versions(viewer.principal, rule_id, tenant_id=viewer.tenant_id)
    except NotFound:
        return _not_found(request, viewer)
    return render(
        request,
        "rules_edit.html",
        viewer,
        versions=list(reversed(versions)),
        spec_yaml=yaml.safe_dump(dict(rule.spec), sort_keys=False, allow_unicode=True),
        row=_row(rule),
        chart_property=_chart_property(rule.spec),
        ranges=tuple(RANGES),
        dry_devices=_dry_run_devices(request, viewer, rule),
        **_form_context(request, viewer, spec_form(rule.spec), rule=rule),
    )


@router.post("/rules/{rule_id}", response_class=HTMLResponse)
async def update_rule(request: Request, viewer: ViewerDep, rule_id: int) -> Response:
    viewer.require("rules:write")
    service = _rules(request)
    form = {k: str(v) for k, v in (await request.form()).items()}
    try:
        rule = await run_in_threadpool(
            service.get, viewer.principal, rule_id, tenant_id=viewer.tenant_id
        )
    except NotFound:
        return _not_found(request, viewer)
    try:
        spec = build_spec(form, base=rule.spec)
        await run_in_threadpool(
            service.update, viewer.principal, rule_id, spec, tenant_id=viewer.tenant_id
        )
    except YugongError as exc:
        context = _form_context(request, viewer, form, form_errors(exc), rule=rule)
        return render(request, "_rule_form.html", viewer, **context)
    return _hx_redirect(f"{PREFIX}/rules/{rule_id}")


@router.post("/rules/{rule_id}/{action}", response_class=HTMLResponse)
def switch_rule(request: Request, viewer: ViewerDep, rule_id: int, action: str) -> HTMLResponse:
    """Enable or disable, answered with the rule's list row as it now is."""
    viewer.require("rules:write")
    if action not in ("enable", "disable"):
        return _not_found(request, viewer)
    service = _rules(request)
    error = None
    try:
        service.set_enabled(
            viewer.principal, rule_id, action == "enable", tenant_id=viewer.tenant_id
        )
    except NotFound:
        return _not_found(request, viewer)
    except YugongError as exc:
        error = exc.detail
    rule = service.get(viewer.principal, rule_id, tenant_id=viewer.tenant_id)
    return render(request, "_rule_row.html", viewer, error=error, **_row(rule))


# Dry-run ------------------------------------------------------------------------------------


def _chart_property(spec: Mapping[str, Any]) -> str:
    """The property whose history the dry-run chart shows."""
    condition = spec.get("condition") or {}
    if condition.get("property"):
        return str(condition["property"])
    if condition.get("kind") == "expression":
        from yugong.core.expr import compile_expr

        names = sorted(compile_expr(str(condition.get("expression", ""))).names)
        return names[0] if names else ""
    return ""


def _dry_run_devices(request: Request, viewer: Viewer, rule: RuleRecord) -> list[Any]:
    """The devices a dry-run can be shown for: those the rule's target covers."""
    registry = request.app.state.registry
    p, tenant = viewer.principal, viewer.tenant_id
    kind, value = _target_words(rule.spec)
    if kind == "device":
        try:
            return [registry.devices.get(p, int(value), tenant_id=tenant)]
        except (NotFound, ValueError):
            return []
    if kind == "product":
        product = next(
            (
                x
                for x in registry.products.list(p, tenant_id=tenant, limit=PICKS).items
                if x.key == value
            ),
            None,
        )
        if product is None:
            return []
        return list(
            registry.devices.list(p, tenant_id=tenant, product_id=product.id, limit=PICKS).items
        )
    return list(registry.devices.list(p, tenant_id=tenant, limit=PICKS).items)


@router.get("/rules/{rule_id}/dry-run")
async def dry_run(
    request: Request, viewer: ViewerDep, rule_id: int, device: int, span: Range = "day"
) -> JSONResponse:
    """What the stored rule would have raised on one device over the last hour, day or week:
    JSON for the page's chart (the property's history comes from the history API)."""
    if not viewer.may("rules:read"):
        return JSONResponse({"detail": viewer.t("rules.forbidden")}, status_code=403)
    end_ms = int(time.time() * 1000)
    start_ms = end_ms - RANGES[span] * 1000
    service = _rules(request)
    try:
        rule = await run_in_threadpool(
            service.get, viewer.principal, rule_id, tenant_id=viewer.tenant_id
        )
        found = await run_in_threadpool(
            service.dry_run,
            viewer.principal,
            rule_id,
            start_ms * 1000,
            end_ms * 1000,
            tenant_id=viewer.tenant_id,
        )
    except YugongError as exc:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status)
    alarms = [
        {
            "raised_at": a.raised_at_us // 1000,
            "cleared_at": a.cleared_at_us // 1000 if a.cleared_at_us is not None else None,
            "value": a.value,
        }
        for a in found
        if a.device == device
    ]
    return JSONResponse(
        {
            "device": device,
            "property": _chart_property(rule.spec),
            "start": start_ms,
            "end": end_ms,
            "alarms": alarms,
            "history": f"/api/v1/devices/{device}/history",
        }
    )
