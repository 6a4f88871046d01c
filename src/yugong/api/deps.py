"""FastAPI dependencies, as ``Annotated`` aliases: ``principal: PrincipalDep`` in a handler
means "authenticated caller, or 401".

The application object carries ``app.state.settings``, ``app.state.db`` and
``app.state.security`` (a :class:`yugong.security.service.Security`).
"""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import Depends, Query, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from yugong.core.errors import Unauthorized
from yugong.core.settings import Settings
from yugong.infra.db import Database
from yugong.platform.registry.service import Registry
from yugong.security.context import current
from yugong.security.principal import Principal
from yugong.security.service import Security

# Declared for the OpenAPI document ("Authorize" button); errors are raised below so they
# come out as problem+json with WWW-Authenticate.
_bearer = HTTPBearer(
    auto_error=False,
    bearerFormat="JWT or ygk_ API key",
    description="An access token from POST /api/v1/auth/login, or an API key.",
)
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key (ygk_...).")


def get_settings(request: Request) -> Settings:
    return cast(Settings, request.app.state.settings)


def get_db(request: Request) -> Database:
    return cast(Database, request.app.state.db)


def get_security(request: Request) -> Security:
    return cast(Security, request.app.state.security)


def get_registry(request: Request) -> Registry:
    return cast(Registry, request.app.state.registry)


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[Registry, Depends(get_registry)]

# Query parameters shared by the list endpoints.
TenantQuery = Annotated[int | None, Query(description="Platform admins: the tenant to act on.")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]
DbDep = Annotated[Database, Depends(get_db)]
SecurityDep = Annotated[Security, Depends(get_security)]


def current_principal(
    request: Request,
    security: SecurityDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    """The caller, from ``Authorization: Bearer <access token | ygk_ key>`` or
    ``X-API-Key: ygk_...``. A plain ``def``: it reads the database, so FastAPI runs it in
    its thread pool rather than on the event loop."""
    if request.headers.get("authorization") and bearer is None:
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    if bearer is not None and api_key is not None:
        raise Unauthorized("send either Authorization or X-API-Key, not both")
    credential = bearer.credentials if bearer is not None else api_key
    if not credential:
        # The browser console's cookie session; unsafe methods must carry the CSRF token.
        from yugong.api.csrf import SESSION_COOKIE, check_csrf

        credential = request.cookies.get(SESSION_COOKIE)
        if credential:
            check_csrf(request, security.settings.signing_key(), credential)
    if not credential:
        raise Unauthorized("authentication required")
    principal = security.authenticate(credential)
    request.state.principal = principal
    current().principal = principal  # for the audit log and events (same request object)
    return principal


PrincipalDep = Annotated[Principal, Depends(current_principal)]
