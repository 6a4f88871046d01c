"""Devices: a list with status, filter and search; a device's thing model, latest values,
live trend and history chart."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from yugong.core.errors import NotFound
from yugong.platform.registry.records import AssetNode
from yugong.web.console import PREFIX, NavItem, Viewer, ViewerDep, render

router = APIRouter(prefix=PREFIX, include_in_schema=False)
NAV = [NavItem("devices", f"{PREFIX}/devices", "devices:read")]
PAGE = 50
NUMERIC = ("int", "float", "double", "enum", "bool")


def _subtree(nodes: Sequence[AssetNode], wanted: int) -> list[int] | None:
    """The asset ``wanted`` and everything under it, or None when it is not in the tree."""
    for node in nodes:
        if node.id == wanted:
            out, stack = [], [node]
            while stack:
                n = stack.pop()
                out.append(n.id)
                stack.extend(n.children)
            return out
        found = _subtree(node.children, wanted)
        if found is not None:
            return found
    return None


def _rows(
    request: Request,
    viewer: Viewer,
    q: str | None,
    status: str | None,
    offset: int,
    asset: int | None = None,
) -> dict[str, Any]:
    online = {"online": True, "offline": False}.get(status or "")
    tree: list[AssetNode] = []
    if viewer.may("assets:read") and viewer.tenant_id is not None:
        tree = request.app.state.registry.assets.tree(viewer.principal, tenant_id=viewer.tenant_id)
    asset_ids = _subtree(tree, asset) if asset is not None else None
    if asset is not None and asset_ids is None:
        asset_ids = []  # not an asset of this tenant: nothing to list
    listing = request.app.state.registry.devices.list(
        viewer.principal,
        tenant_id=viewer.tenant_id,
        search=q or None,
        online=online,
        limit=PAGE,
        offset=max(0, offset),
        asset_ids=asset_ids,
    )
    return {
        "devices": listing.items,
        "total": listing.total,
        "q": q or "",
        "status": status or "",
        "offset": listing.offset,
        "page": PAGE,
        "tree": tree,
        "asset": asset,
    }


Search = Annotated[str | None, Query(max_length=128)]
Status = Annotated[str | None, Query(pattern="^(online|offline)?$")]


@router.get("/devices", response_class=HTMLResponse)
def devices(
    request: Request,
    viewer: ViewerDep,
    q: Search = None,
    status: Status = None,
    offset: int = 0,
    asset: int | None = None,
) -> HTMLResponse:
    viewer.require("devices:read")
    template = "_device_rows.html" if request.headers.get("hx-request") else "devices.html"
    return render(request, template, viewer, **_rows(request, viewer, q, status, offset, asset))


@router.get("/devices/{device_id}", response_class=HTMLResponse)
def device(request: Request, viewer: ViewerDep, device_id: int) -> HTMLResponse:
    viewer.require("devices:read")
    registry = request.app.state.registry
    try:
        record = registry.devices.get(viewer.principal, device_id, tenant_id=viewer.tenant_id)
    except NotFound:
        return render(request, "error.html", viewer, status_code=404, kind="not_found")
    product = registry.products.get(viewer.principal, record.product_id, tenant_id=record.tenant_id)
    props = list(product.tsl.get("properties", []))
    latest: dict[str, dict[str, object]] = {}
    if viewer.may("telemetry:read") and props:
        query = request.app.state.query
        refs = query.resolve(viewer.principal, [(device_id, None)])
        latest = {v["property"]: v for v in query.latest(refs)}
    numeric = [p["identifier"] for p in props if p.get("dataType", {}).get("type") in NUMERIC]
    return render(
        request,
        "device.html",
        viewer,
        device=record,
        product=product,
        props=props,
        latest=latest,
        numeric=numeric,
    )
