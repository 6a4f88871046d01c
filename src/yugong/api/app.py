"""The HTTP application: API under /api/v1 (OpenAPI at /docs), wired to a running Platform."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from yugong import __version__
from yugong.api import problems
from yugong.api import static as static_assets
from yugong.api.blocking import BlockedAddresses
from yugong.api.limits import BodySizeLimit
from yugong.api.ratelimit import ApiRateLimit
from yugong.api.routers import (
    alarms,
    apikeys,
    assets,
    auth,
    components,
    dashboards,
    devices,
    history,
    ingest,
    notify,
    products,
    query,
    rules,
    security,
    tenant_profiles,
    tenants,
    users,
)
from yugong.api.security_headers import SecurityHeaders
from yugong.core.settings import Settings, load_settings
from yugong.platform.commands import install_commands
from yugong.platform.runtime import Platform
from yugong.security.context import RequestContextMiddleware
from yugong.web.console import install_console

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None, platform: Platform | None = None) -> FastAPI:
    settings = settings or load_settings()
    platform = platform or Platform(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await platform.start()
        state = app.state
        state.platform = platform
        state.settings = settings
        state.db = platform.db
        state.security = platform.security
        state.integrity = platform.integrity
        state.registry = platform.registry
        state.directory = platform.directory
        state.store = platform.store
        state.bus = platform.bus
        state.writer = platform.writer
        state.ingest = platform.ingest
        state.query = platform.query
        try:
            yield
        finally:
            await platform.stop()

    app = FastAPI(
        title="Yugong 愚公",
        version=__version__,
        description="Open industrial internet platform: devices, thing models, telemetry.",
        lifespan=lifespan,
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    problems.install(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(ApiRateLimit, platform=platform)  # per tenant, inside the context
    app.add_middleware(BlockedAddresses)  # refuse blocked source addresses early
    app.add_middleware(RequestContextMiddleware)  # every request has a context
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, refusals too

    for module in (auth, users, apikeys, tenants, assets, products, devices, query):
        app.include_router(module.router, prefix=API_PREFIX)
    app.include_router(history.router, prefix=API_PREFIX)  # chart history, live stream
    app.include_router(tenant_profiles.router, prefix=API_PREFIX)
    app.include_router(rules.router, prefix=API_PREFIX)
    install_commands(app, platform)
    app.include_router(alarms.router, prefix=API_PREFIX)
    app.include_router(notify.router, prefix=API_PREFIX)  # notification targets
    app.include_router(components.router, prefix=API_PREFIX)  # component library
    app.include_router(dashboards.router, prefix=API_PREFIX)  # people's widget dashboards
    app.include_router(security.router, prefix=API_PREFIX)  # audit, events, blocks
    app.include_router(static_assets.router)  # web assets, integrity-checked

    @app.get(f"{API_PREFIX}/health", tags=["system"], summary="Liveness and version")
    async def health() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    install_console(app)  # the web console under /console; "/" leads there

    # Last: the ThingsBoard device API's /{token}/telemetry must not shadow the routes above.
    app.include_router(ingest.router, prefix=API_PREFIX)
    return app
