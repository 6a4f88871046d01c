"""Products: the list, a product's thing model as tables, and its editor — a property form
that builds the TSL, a raw TSL JSON editor, TSL import (a file) and export (a download).
Every change goes through the ProductService, so it is validated exactly as the API's
PUT /products/{id}/tsl and POST /products/import are."""

from __future__ import annotations

import copy
import json
import re
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response

from yugong.core.errors import NotFound, YugongError
from yugong.platform.registry.records import ProductRecord
from yugong.web.console import PREFIX, NavItem, Viewer, ViewerDep, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
NAV = [NavItem("products", f"{PREFIX}/products", "products:read")]
PAGE = 50
# Types the property form builds; struct and array properties are edited as raw TSL.
FORM_TYPES = ("int", "float", "double", "bool", "enum", "text", "date")
NUMERIC = ("int", "float", "double")
ACCESS = ("r", "rw")
MAX_IMPORT_BYTES = 2 * 1024 * 1024
_PROP_LOC = re.compile(r"^properties\[(\d+)\]\.?(.*)$")
# Where a validation error of the built property is shown: its path -> the form field.
_FIELD_OF = {
    "identifier": "identifier",
    "name": "name",
    "accessMode": "access",
    "dataType": "type",
    "dataType.type": "type",
    "dataType.specs.min": "min",
    "dataType.specs.max": "max",
    "dataType.specs.step": "step",
    "dataType.specs.unit": "unit",
}

Search = Annotated[str | None, Query(max_length=128)]
Short = Annotated[str, Form(max_length=128)]


def _listing(request: Request, viewer: Viewer, q: str | None, offset: int) -> dict[str, Any]:
    listing = request.app.state.registry.products.list(
        viewer.principal,
        tenant_id=viewer.tenant_id,
        search=q or None,
        limit=PAGE,
        offset=max(0, offset),
    )
    return {
        "products": listing.items,
        "total": listing.total,
        "q": q or "",
        "offset": listing.offset,
        "page": PAGE,
    }


@router.get("/products", response_class=HTMLResponse)
def products(
    request: Request, viewer: ViewerDep, q: Search = None, offset: int = 0
) -> HTMLResponse:
    viewer.require("products:read")
    template = "_product_rows.html" if request.headers.get("hx-request") else "products.html"
    context = _listing(request, viewer, q, offset) if viewer.tenant_id is not None else {}
    return render(request, template, viewer, imp=_import_form(), **context)


def _get(request: Request, viewer: Viewer, product_id: int) -> ProductRecord:
    rec: ProductRecord = request.app.state.registry.products.get(
        viewer.principal, product_id, tenant_id=viewer.tenant_id
    )
    return rec


def _not_found(request: Request, viewer: Viewer) -> HTMLResponse:
    return render(request, "error.html", viewer, status_code=404, kind="not_found")


# The model: tables, the property form, the raw editor -----------------------------------


def _blank_form() -> dict[str, Any]:
    return {
        "original": "",
        "identifier": "",
        "name": "",
        "type": "float",
        "unit": "",
        "min": "",
        "max": "",
        "step": "",
        "access": "r",
        "enum": "",
    }


def _form_of(prop: dict[str, Any]) -> dict[str, Any]:
    """The form's fields for an existing property."""
    dt = prop.get("dataType") or {}
    specs = dt.get("specs")
    specs = specs if isinstance(specs, dict) else {}
    kind = str(dt.get("type", "float"))
    form = _blank_form()
    form.update(
        original=prop.get("identifier", ""),
        identifier=prop.get("identifier", ""),
        name=prop.get("name", ""),
        type=kind,
        access=prop.get("accessMode", "rw"),
    )
    if kind in NUMERIC:
        for key in ("unit", "min", "max", "step"):
            value = specs.get(key)
            form[key] = "" if value is None else str(value)
    elif kind in ("bool", "enum"):
        form["enum"] = "\n".join(f"{k}={v}" for k, v in specs.items())
    return form


def _editable(prop: dict[str, Any]) -> bool:
    return (prop.get("dataType") or {}).get("type") in FORM_TYPES


def _model(
    request: Request,
    viewer: Viewer,
    rec: ProductRecord,
    *,
    form: dict[str, Any] | None = None,
    errors: dict[str, str] | None = None,
    form_error: str | None = None,
    raw: str | None = None,
    raw_errors: list[str] | None = None,
    saved: str | None = None,
) -> dict[str, Any]:
    return {
        "product": rec,
        "props": list(rec.tsl.get("properties") or []),
        "events": list(rec.tsl.get("events") or []),
        "services": list(rec.tsl.get("services") or []),
        "form": form or _blank_form(),
        "errors": errors or {},
        "form_error": form_error,
        "raw": raw if raw is not None else json.dumps(rec.tsl, indent=2, ensure_ascii=False),
        "raw_errors": raw_errors or [],
        "saved": saved,
        "types": FORM_TYPES,
        "access_modes": ACCESS,
        "editable": _editable,
    }


@router.get("/products/{product_id}", response_class=HTMLResponse)
def product(
    request: Request,
    viewer: ViewerDep,
    product_id: int,
    edit: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """A product's page; ``?edit=<identifier>`` opens that property in the form."""
    viewer.require("products:read")
    try:
        rec = _get(request, viewer, product_id)
    except NotFound:
        return _not_found(request, viewer)
    form = None
    if edit:
        found = next(
            (p for p in rec.tsl.get("properties") or [] if p.get("identifier") == edit), None
        )
        form = _form_of(found) if found is not None and _editable(found) else None
    context = _model(request, viewer, rec, form=form)
    template = (
        "_product_model.html" if request.headers.get("hx-request") else "products_detail.html"
    )
    return render(request, template, viewer, **context)


def _number(text: str, kind: str) -> Any:
    """A number from the form as the TSL holds it; text that is no number is passed on as
    it is, so the model's own validation names the field."""
    text = text.strip()
    try:
        value = float(text)
    except ValueError:
        return text
    if kind == "int" and value.is_integer():
        return int(value)
    return (
        int(value) if value.is_integer() and "." not in text and "e" not in text.lower() else value
    )


def _labels(text: str) -> dict[str, str] | None:
    """``value=label`` lines (or ``;``-separated) as an enum's specs; None if malformed."""
    out: dict[str, str] = {}
    for part in re.split(r"[\n;]", text):
        part = part.strip()
        if not part:
            continue
        if "=" not in part:
            return None
        key, label = part.split("=", 1)
        out[key.strip()] = label.strip()
    return out


def _build_property(form: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    """The TSL property the form describes, keeping what the form does not show (desc,
    required, unitName...) from the property it edits."""
    prop = copy.deepcopy(before) if before is not None else {}
    prop["identifier"] = form["identifier"].strip()
    prop["name"] = form["name"].strip()
    prop["accessMode"] = form["access"]
    kind = form["type"]
    old_dt = prop.get("dataType") or {}
    old_specs = old_dt.get("specs") if old_dt.get("type") == kind else None
    if kind in NUMERIC:
        specs: Any = dict(old_specs) if isinstance(old_specs, dict) else {}
        for key in ("min", "max", "step", "unit"):
            value = form[key].strip()
            if not value:
                specs.pop(key, None)
            else:
                specs[key] = value if key == "unit" else _number(value, kind)
    elif kind in ("bool", "enum"):
        specs = _labels(form["enum"]) or {}
    elif kind == "text":
        specs = dict(old_specs) if isinstance(old_specs, dict) else {}
    else:
        specs = {}
    prop["dataType"] = {"type": kind, "specs": specs}
    return prop


def _field_errors(exc: YugongError, index: int) -> tuple[dict[str, str], list[str]]:
    """The service's errors by form field (those of the edited property), and the rest."""
    by_field: dict[str, str] = {}
    other: list[str] = []
    for err in exc.errors or []:
        m = _PROP_LOC.match(err.loc)
        field = None
        if m and int(m.group(1)) == index:
            rest = m.group(2)
            field = _FIELD_OF.get(rest)
            if field is None and rest.startswith("dataType.specs"):
                field = "enum"
        elif "duplicate identifier" in err.msg:
            field = "identifier"
        if field is not None:
            by_field.setdefault(field, err.msg)
        else:
            other.append(f"{err.loc}: {err.msg}")
    if not exc.errors:
        other.append(exc.detail)
    return by_field, other


@router.post("/products/{product_id}/properties", response_class=HTMLResponse)
def save_property(
    request: Request,
    viewer: ViewerDep,
    product_id: int,
    identifier: Annotated[str, Form(max_length=64)] = "",
    name: Short = "",
    type: Annotated[str, Form(max_length=16)] = "float",
    unit: Annotated[str, Form(max_length=64)] = "",
    min: Annotated[str, Form(max_length=64)] = "",
    max: Annotated[str, Form(max_length=64)] = "",
    step: Annotated[str, Form(max_length=64)] = "",
    access: Annotated[str, Form(max_length=4)] = "r",
    enum: Annotated[str, Form(max_length=8000)] = "",
    original: Annotated[str, Form(max_length=64)] = "",
) -> HTMLResponse:
    """Add a property, or replace the one named ``original``; answered with the model."""
    viewer.require("products:write")
    t = viewer.t
    try:
        rec = _get(request, viewer, product_id)
    except NotFound:
        return _not_found(request, viewer)
    form = {
        "original": original,
        "identifier": identifier,
        "name": name,
        "type": type,
        "unit": unit,
        "min": min,
        "max": max,
        "step": step,
        "access": access,
        "enum": enum,
    }
    errors: dict[str, str] = {}
    if type not in FORM_TYPES:
        errors["type"] = t("prod.err_type")
    if access not in ACCESS:
        errors["access"] = t("prod.err_access")
    if type in ("bool", "enum") and _labels(enum) is None:
        errors["enum"] = t("prod.err_enum_line")
    props = [copy.deepcopy(p) for p in rec.tsl.get("properties") or []]
    index = next(
        (i for i, p in enumerate(props) if original and p.get("identifier") == original), None
    )
    if original and index is None:
        errors["identifier"] = t("prod.err_gone", identifier=original)
    if errors:
        context = _model(request, viewer, rec, form=form, errors=errors)
        return render(request, "_product_model.html", viewer, **context)
    built = _build_property(form, props[index] if index is not None else None)
    if index is None:
        props.append(built)
        index = len(props) - 1
    else:
        props[index] = built
    document = {**copy.deepcopy(dict(rec.tsl)), "properties": props}
    service = request.app.state.registry.products
    try:
        rec = service.update_model(
            viewer.principal, product_id, document, tenant_id=viewer.tenant_id
        )
    except YugongError as exc:
        by_field, other = _field_errors(exc, index)
        context = _model(
            request,
            viewer,
            rec,
            form=form,
            errors=by_field,
            form_error="; ".join(other) or None,
        )
        return render(request, "_product_model.html", viewer, **context)
    saved = t("prod.saved_property", identifier=built["identifier"])
    return render(
        request, "_product_model.html", viewer, **_model(request, viewer, rec, saved=saved)
    )


@router.post("/products/{product_id}/properties/{identifier}/delete", response_class=HTMLResponse)
def delete_property(
    request: Request, viewer: ViewerDep, product_id: int, identifier: str
) -> HTMLResponse:
    viewer.require("products:write")
    try:
        rec = _get(request, viewer, product_id)
    except NotFound:
        return _not_found(request, viewer)
    props = [p for p in rec.tsl.get("properties") or [] if p.get("identifier") != identifier]
    document = {**copy.deepcopy(dict(rec.tsl)), "properties": props}
    service = request.app.state.registry.products
    try:
        rec = service.update_model(
            viewer.principal, product_id, document, tenant_id=viewer.tenant_id
        )
    except YugongError as exc:
        context = _model(request, viewer, rec, form_error=exc.detail)
        return render(request, "_product_model.html", viewer, **context)
    saved = viewer.t("prod.removed_property", identifier=identifier)
    return render(
        request, "_product_model.html", viewer, **_model(request, viewer, rec, saved=saved)
    )


def _problems(exc: YugongError) -> list[str]:
    return [f"{e.loc}: {e.msg}" if e.loc else e.msg for e in exc.errors] or [exc.detail]


@router.post("/products/{product_id}/tsl", response_class=HTMLResponse)
def save_tsl(
    request: Request,
    viewer: ViewerDep,
    product_id: int,
    document: Annotated[str, Form(max_length=MAX_IMPORT_BYTES)] = "",
) -> HTMLResponse:
    """Replace the whole model with the raw TSL JSON; nothing changes on any error."""
    viewer.require("products:write")
    try:
        rec = _get(request, viewer, product_id)
    except NotFound:
        return _not_found(request, viewer)
    try:
        parsed = json.loads(document)
    except ValueError as exc:
        problem = viewer.t("prod.err_json", detail=str(exc))
        context = _model(request, viewer, rec, raw=document, raw_errors=[problem])
        return render(request, "_product_model.html", viewer, **context)
    service = request.app.state.registry.products
    try:
        rec = service.update_model(viewer.principal, product_id, parsed, tenant_id=viewer.tenant_id)
    except YugongError as exc:
        context = _model(request, viewer, rec, raw=document, raw_errors=_problems(exc))
        return render(request, "_product_model.html", viewer, **context)
    saved = viewer.t("prod.saved_model", version=rec.version)
    return render(
        request, "_product_model.html", viewer, **_model(request, viewer, rec, saved=saved)
    )


# Import and export --------------------------------------------------------------------------


def _import_form(key: str = "", name: str = "", errors: list[str] | None = None) -> dict[str, Any]:
    return {"key": key, "name": name, "errors": errors or []}


@router.post("/products/import", response_class=HTMLResponse)
async def import_tsl(
    request: Request,
    viewer: ViewerDep,
    file: Annotated[UploadFile | None, File()] = None,
    key: Annotated[str, Form(max_length=64)] = "",
    name: Annotated[str, Form(max_length=128)] = "",
) -> Response:
    """A TSL file creates the product (key from the form or ``profile.productKey``) or
    replaces the model of the product with that key, as POST /api/v1/products/import."""
    viewer.require("products:write")
    t = viewer.t

    def refused(*problems: str) -> HTMLResponse:
        imp = _import_form(key, name, list(problems))
        return render(request, "_product_import.html", viewer, imp=imp)

    if file is None or not file.filename:
        return refused(t("prod.err_no_file"))
    data = await file.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        return refused(t("prod.err_too_big", size=MAX_IMPORT_BYTES // 1024))
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return refused(t("prod.err_json", detail=str(exc)))
    service = request.app.state.registry.products
    try:
        rec, _created = service.import_tsl(
            viewer.principal,
            document,
            key=key.strip() or None,
            name=name.strip() or None,
            tenant_id=viewer.tenant_id,
        )
    except YugongError as exc:
        return refused(*_problems(exc))
    target = f"{PREFIX}/products/{rec.id}"
    return Response(status_code=204, headers={"HX-Redirect": target})


@router.get("/products/{product_id}/tsl.json")
def export_tsl(request: Request, viewer: ViewerDep, product_id: int) -> Response:
    """The thing model as a file to save, exactly as GET /api/v1/products/{id}/tsl."""
    viewer.require("products:read")
    service = request.app.state.registry.products
    try:
        rec = _get(request, viewer, product_id)
        doc = service.export_tsl(viewer.principal, product_id, tenant_id=viewer.tenant_id)
    except NotFound:
        return _not_found(request, viewer)
    filename = re.sub(r"[^A-Za-z0-9_.\-]", "_", rec.key) + ".tsl.json"
    return JSONResponse(doc, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
