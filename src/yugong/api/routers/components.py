"""The component library: catalog (list, search, detail) and invocation on literal inputs or
on stored series."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Body, Depends, Query, Request, Response

from yugong.api.deps import PrincipalDep
from yugong.core.errors import InvalidInput
from yugong.platform.components.contract import Category
from yugong.platform.components.service import ComponentService
from yugong.platform.query import dumps

router = APIRouter(tags=["components"])


def get_components(request: Request) -> ComponentService:
    return cast(ComponentService, request.app.state.platform.components)


ComponentsDep = Annotated[ComponentService, Depends(get_components)]

InvokeBody = Annotated[
    dict[str, Any],
    Body(
        description=(
            "`inputs`: input name -> a value, `{value, unit}`, or a stored series "
            "`{series: {device, property, start, end, field}, unit}`."
        ),
        examples=[
            {"inputs": {"p": {"value": 3000, "unit": "W"}, "q": 4}},
            {
                "inputs": {
                    "samples": {
                        "series": {
                            "device": 1,
                            "property": "diameter",
                            "start": "2026-11-01T00:00:00Z",
                            "end": "2026-11-02T00:00:00Z",
                        }
                    },
                    "lsl": 73.95,
                    "usl": 74.05,
                }
            },
        ],
    ),
]


def json_response(body: Any) -> Response:
    return Response(dumps(body), media_type="application/json")


@router.get("/components", summary="List and search the component catalog")
async def list_components(
    principal: PrincipalDep,
    svc: ComponentsDep,
    category: Annotated[str | None, Query(description="mechanism, statistical, ...")] = None,
    industry: Annotated[str | None, Query(description="An industry tag, e.g. energy")] = None,
    q: Annotated[str | None, Query(description="Words to find in name and documentation")] = None,
    all_versions: bool = False,
) -> Response:
    principal.require("components:read")
    found = svc.catalog.search(
        category=category, industry=industry, text=q, all_versions=all_versions
    )
    return json_response(
        {
            "components": [c.describe(full=False) for c in found],
            "categories": [c.value for c in Category],
            "industries": svc.catalog.industries(),
        }
    )


@router.get("/components/{name}", summary="A component's newest version, with all versions")
async def component_latest(principal: PrincipalDep, svc: ComponentsDep, name: str) -> Response:
    principal.require("components:read")
    comp = svc.catalog.get(name)
    versions = [c.version for c in svc.catalog.versions(name)]
    return json_response(comp.describe() | {"versions": versions})


@router.get("/components/{name}/{version}", summary="One version of a component")
async def component_detail(
    principal: PrincipalDep, svc: ComponentsDep, name: str, version: str
) -> Response:
    principal.require("components:read")
    return json_response(svc.catalog.get(name, version).describe())


@router.post("/components/{name}/{version}:invoke", summary="Run a component")
async def invoke_component(
    principal: PrincipalDep, svc: ComponentsDep, name: str, version: str, body: InvokeBody
) -> Response:
    unknown = sorted(set(body) - {"inputs"})
    if unknown:
        raise InvalidInput(f'unknown key {", ".join(unknown)}: send {{"inputs": {{...}}}}')
    inputs = body.get("inputs", {})
    return json_response(await svc.invoke(principal, name, version, inputs))
