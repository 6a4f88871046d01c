"""One component as its own microservice (``yugong component serve NAME``): its description at
``/``, ``POST /invoke`` on literal inputs, and an OpenAPI document built from its ports."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import FastAPI, Request, Response

from yugong.api import problems
from yugong.api.limits import BodySizeLimit
from yugong.api.security_headers import SecurityHeaders
from yugong.core.errors import InvalidInput, Unauthorized
from yugong.platform.components.catalog import Catalog
from yugong.platform.components.contract import Component
from yugong.platform.components.service import ComponentService
from yugong.platform.query import dumps

MAX_BODY_BYTES = 64 * 1024 * 1024  # a few million samples as JSON


def create_component_app(comp: Component, *, token: str | None = None) -> FastAPI:
    """The service for ``comp``; with ``token`` every call but ``/health`` needs
    ``Authorization: Bearer <token>``."""
    service = ComponentService(Catalog({comp.key: comp}))
    app = FastAPI(
        title=f"{comp.name} {comp.version}",
        version=comp.version,
        summary=comp.title,
        description=comp.doc,
        docs_url="/docs",
        redoc_url=None,
    )
    problems.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(SecurityHeaders)

    def check(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized("this component service needs its bearer token")

    @app.get("/health", tags=["system"], summary="Liveness")
    async def health() -> dict[str, str]:
        return {"status": "ok", "component": comp.name, "version": comp.version}

    @app.get("/", tags=["component"], summary="What this component is, its inputs and outputs")
    async def describe(request: Request) -> Response:
        check(request)
        return Response(dumps(comp.describe()), media_type="application/json")

    request_schema = {
        "type": "object",
        "properties": {"inputs": comp.input_schema()},
        "required": ["inputs"],
        "additionalProperties": False,
    }
    response_schema = {
        "type": "object",
        "properties": {
            "component": {"type": "string"},
            "version": {"type": "string"},
            "outputs": comp.output_schema(),
            "elapsed_ms": {"type": "number"},
        },
    }

    @app.post(
        "/invoke",
        tags=["component"],
        summary=f"Run {comp.name}",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request_schema}},
            },
            "responses": {
                "200": {
                    "description": "The outputs",
                    "content": {"application/json": {"schema": response_schema}},
                }
            },
        },
    )
    async def invoke(request: Request) -> Response:
        check(request)
        body = await _json_body(request)
        unknown = sorted(set(body) - {"inputs"})
        if unknown:
            raise InvalidInput(f'unknown key {", ".join(unknown)}: send {{"inputs": {{...}}}}')
        result = await service.invoke(None, comp.name, comp.version, body.get("inputs", {}))
        return Response(dumps(result), media_type="application/json")

    return app


async def _json_body(request: Request) -> dict[str, Any]:
    import orjson

    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise InvalidInput('body: expected an object {"inputs": {...}}')
    return body
