"""Components: the catalog (search by text, category, industry), each component's page with
its documentation, references and ports, and a "try it" form built from the input ports that
invokes it through the ComponentService — on literal values or on a stored series — and shows
the outputs: numbers in a table, arrays drawn on a chart."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from yugong.core.errors import YugongError
from yugong.platform.components.contract import Category, Component, Port
from yugong.web.console import PREFIX, NavItem, Viewer, ViewerDep, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
NAV = [NavItem("components", f"{PREFIX}/components", "components:read")]
RANGES = (3600, 86_400, 604_800, 2_592_000)
SERIES_KINDS = ("series", "quantity")
NUMERIC_TSL = ("int", "float", "double", "bool", "enum")
PICKER_DEVICES = 200
# Outputs that are the x axis of the other arrays of the same length when present.
X_NAMES = ("frequency", "time", "t", "t_eval", "slot", "x")
_SPLIT = re.compile(r"[,\s;]+")

Text = Annotated[str | None, Query(max_length=128)]


def _catalog(request: Request) -> Any:
    return request.app.state.platform.components.catalog


@router.get("/components", response_class=HTMLResponse)
def components(
    request: Request,
    viewer: ViewerDep,
    q: Text = None,
    category: Annotated[str | None, Query(max_length=32)] = None,
    industry: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    viewer.require("components:read")
    catalog = _catalog(request)
    categories = [c.value for c in Category]
    error = None
    try:
        found = catalog.search(
            category=category if category in categories else None,
            industry=industry or None,
            text=q or None,
        )
    except YugongError as exc:
        found, error = [], exc.detail
    template = "_component_rows.html" if request.headers.get("hx-request") else "components.html"
    return render(
        request,
        template,
        viewer,
        found=found,
        q=q or "",
        category=category or "",
        industry=industry or "",
        categories=categories,
        industries=catalog.industries(),
        error=error,
    )


# A component's page and its "try it" form -------------------------------------------------


def _picker(request: Request, viewer: Viewer) -> list[dict[str, Any]]:
    """Devices of the tenant with their numeric properties, for a stored-series input."""
    if viewer.tenant_id is None or not viewer.may("telemetry:read"):
        return []
    registry = request.app.state.registry
    devices = registry.devices.list(
        viewer.principal, tenant_id=viewer.tenant_id, limit=PICKER_DEVICES
    ).items
    models: dict[int, list[dict[str, Any]]] = {}
    out = []
    for d in devices:
        if d.product_id not in models:
            product = registry.products.get(
                viewer.principal, d.product_id, tenant_id=viewer.tenant_id
            )
            models[d.product_id] = [
                p
                for p in product.tsl.get("properties") or []
                if (p.get("dataType") or {}).get("type") in NUMERIC_TSL
            ]
        props = [p["identifier"] for p in models[d.product_id]]
        if props:
            out.append({"id": d.id, "name": d.name, "props": props})
    return out


def _ports(ports: Mapping[str, Port]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "kind": port.kind,
            "unit": port.unit,
            "description": port.description,
            "required": port.required,
            "default": port.default,
            "enum": list(port.enum) if port.enum else None,
            "batch": port.batch,
            "series": port.kind in SERIES_KINDS,
            "bounds": _bounds(port),
        }
        for name, port in ports.items()
    ]


def _bounds(port: Port) -> str:
    parts = []
    for sign, value in (
        ("≥", port.minimum),
        (">", port.exclusive_minimum),
        ("≤", port.maximum),
        ("<", port.exclusive_maximum),
    ):
        if value is not None:
            parts.append(f"{sign} {value:g}")
    return ", ".join(parts)


def _page(
    request: Request,
    viewer: Viewer,
    comp: Component,
    *,
    values: Mapping[str, str] | None = None,
    errors: Mapping[str, str] | None = None,
    error: str | None = None,
    result: dict[str, Any] | None = None,
) -> dict[str, Any]:
    versions = [c.version for c in _catalog(request).versions(comp.name)]
    return {
        "comp": comp,
        "versions": versions,
        "inputs": _ports(comp.inputs),
        "outputs": _ports(comp.outputs),
        "devices": _picker(request, viewer),
        "ranges": RANGES,
        "values": values or {},
        "errors": errors or {},
        "error": error,
        "result": result,
    }


@router.get("/components/{name}", response_class=HTMLResponse)
def component(
    request: Request,
    viewer: ViewerDep,
    name: str,
    version: Annotated[str | None, Query(max_length=32)] = None,
) -> HTMLResponse:
    viewer.require("components:read")
    try:
        comp = _catalog(request).get(name, version)
    except YugongError:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    return render(request, "components_detail.html", viewer, **_page(request, viewer, comp))


class _FormError(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name, self.message = name, message


def _floats(name: str, text: str, t: Any) -> list[float]:
    out = []
    for part in _SPLIT.split(text.strip()):
        if not part:
            continue
        try:
            out.append(float(part))
        except ValueError:
            raise _FormError(name, t("comp.err_numbers", value=part)) from None
    return out


def _literal(name: str, port: Port, text: str, t: Any) -> Any:
    """A typed value from the form's text for one input; None when left empty."""
    text = text.strip()
    if not text:
        return None
    kind = port.kind
    if kind == "number":
        try:
            return float(text)
        except ValueError:
            raise _FormError(name, t("comp.err_number")) from None
    if kind == "integer":
        try:
            return int(text)
        except ValueError:
            raise _FormError(name, t("comp.err_integer")) from None
    if kind == "boolean":
        return text == "true"
    if kind == "text":
        return text
    if kind == "object":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise _FormError(name, t("comp.err_json", detail=str(exc))) from None
    if kind == "series" and port.batch and len(text.splitlines()) > 1:
        return [_floats(name, line, t) for line in text.splitlines() if line.strip()]
    numbers = _floats(name, text, t)
    if kind == "quantity" and len(numbers) == 1 and not _SPLIT.search(text):
        return numbers[0]
    return numbers


def _inputs(form: Mapping[str, str], comp: Component, viewer: Viewer) -> dict[str, Any]:
    """The invoke call's inputs from the form: literal values, or stored-series references."""
    t = viewer.t
    out: dict[str, Any] = {}
    for name, port in comp.inputs.items():
        unit = form.get(f"in.{name}.unit", "").strip()
        if port.kind in SERIES_KINDS and form.get(f"in.{name}.mode") == "series":
            pick = form.get(f"in.{name}.series", "")
            device, _, prop = pick.partition(":")
            if not device.isdigit() or not prop:
                raise _FormError(name, t("comp.err_pick"))
            seconds = int(form.get(f"in.{name}.range", "86400") or 86400)
            end = int(time.time() * 1000)
            ref: dict[str, Any] = {
                "series": {
                    "device": int(device),
                    "property": prop,
                    "start": end - seconds * 1000,
                    "end": end,
                }
            }
            if unit:
                ref["unit"] = unit
            out[name] = ref
            continue
        value = _literal(name, port, form.get(f"in.{name}", ""), t)
        if value is None:
            continue
        out[name] = {"value": value, "unit": unit} if unit and port.numeric else value
    return out


def _plain(value: Any) -> Any:
    """An output as the page shows it: lists of numbers (NaN as None), numbers, text."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, float):
        return None if not math.isfinite(value) else value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return _plain(value.item())
    return value


def _is_numbers(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in value
        )
    )


def result_view(comp: Component, outputs: Mapping[str, Any]) -> dict[str, Any]:
    """Outputs as rows of a table and charts: each numeric array against the matching x
    output (frequency, time...) of the same length when there is one, else its index."""
    plain = {name: _plain(v) for name, v in outputs.items()}
    arrays = {n: v for n, v in plain.items() if _is_numbers(v)}
    rows: list[dict[str, Any]] = []
    charts: list[dict[str, Any]] = []
    x_name = next((n for n in X_NAMES if n in arrays), None)
    for name, value in plain.items():
        port = comp.outputs.get(name)
        unit = port.unit if port is not None else None
        if name in arrays:
            rows.append({"name": name, "unit": unit, "kind": "array", "value": len(value)})
            if name == x_name:
                continue
            x = arrays[x_name] if x_name and len(arrays[x_name]) == len(value) else None
            x_port = comp.outputs.get(x_name) if x is not None and x_name else None
            charts.append(
                {
                    "name": name,
                    "unit": unit,
                    "x": x,
                    "xname": x_name if x is not None else None,
                    "xunit": x_port.unit if x_port is not None else None,
                    "y": value,
                }
            )
        elif isinstance(value, int | float | str | bool) or value is None:
            rows.append({"name": name, "unit": unit, "kind": "scalar", "value": value})
        else:
            text = json.dumps(value, ensure_ascii=False)
            rows.append({"name": name, "unit": unit, "kind": "json", "value": text[:2000]})
    return {"rows": rows, "charts": charts}


@router.post("/components/{name}/{version}/try", response_class=HTMLResponse)
async def try_component(
    request: Request, viewer: ViewerDep, name: str, version: str
) -> HTMLResponse:
    """Run the component on the form's inputs; answered with the form (errors beside their
    input) and the result."""
    viewer.require("components:invoke")
    try:
        comp = _catalog(request).get(name, version)
    except YugongError:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    raw = await request.form()
    values = {k: v for k, v in raw.items() if isinstance(v, str)}
    service = request.app.state.platform.components
    errors: dict[str, str] = {}
    error = None
    result = None
    try:
        inputs = _inputs(values, comp, viewer)
        answer = await service.invoke(viewer.principal, comp.name, comp.version, inputs)
        result = result_view(comp, answer["outputs"]) | {"elapsed": answer["elapsed_ms"]}
    except _FormError as exc:
        errors[exc.name] = exc.message
    except YugongError as exc:
        for err in exc.errors:
            if err.loc.startswith("inputs."):
                port = err.loc.removeprefix("inputs.").split(".")[0].split("[")[0]
                if port in comp.inputs:
                    errors.setdefault(port, err.msg)
                    continue
            error = exc.detail
        if not exc.errors:
            error = exc.detail
    context = _page(request, viewer, comp, values=values, errors=errors, error=error, result=result)
    return render(request, "_component_try.html", viewer, **context)
