"""API requests/s per tenant (the tenant profile's ``api_requests_per_s``).

The tenant of a request is known only after authentication, which runs inside the route.
Authenticating again here would double the cost of every request, so the middleware learns
each credential's tenant from the request that used it (the principal the authentication
dependency put into the request context) and remembers it by a digest of the credential.
From then on a request with that credential is charged to the tenant's bucket before it
runs and refused with 429 and Retry-After when the bucket is empty. A credential's first
request runs and is charged afterwards (the bucket may go into debt), so a caller gains
nothing by using fresh credentials: each still costs a full authentication and a token.

Device-token ingest (``/{token}/telemetry``) carries no principal: the ingest message and
point limits govern it.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from yugong.api.problems import send_problem
from yugong.security.context import current

MAX_CREDENTIALS = 10_000  # remembered credential digests (least recently used go first)


def _credential(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() or None if scheme.lower() == b"bearer" else None
        if name == b"x-api-key":
            return value.strip() or None
    return None


class ApiRateLimit:
    """ASGI middleware; put it inside ``RequestContextMiddleware`` (added before it).
    ``platform.quotas`` is looked up per request (it exists once the platform started)."""

    def __init__(self, app: ASGIApp, platform: Any) -> None:
        self.app = app
        self.platform = platform
        self._tenants: OrderedDict[bytes, int] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        quotas = getattr(self.platform, "quotas", None)
        if scope["type"] != "http" or quotas is None:
            await self.app(scope, receive, send)
            return
        credential = _credential(scope)
        key = hashlib.blake2b(credential, digest_size=16).digest() if credential else None
        tenant = self._tenants.get(key) if key is not None else None
        if tenant is not None:
            self._tenants.move_to_end(key)  # type: ignore[arg-type]
            refused = quotas.admit_api(tenant)
            if refused is not None:
                await _problem(scope, send, refused)
                return
        status = 0

        async def watch(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        await self.app(scope, receive, watch)
        if key is None:
            return
        if status == 401:  # revoked or expired: nobody may spend the tenant's tokens with it
            self._tenants.pop(key, None)
            return
        if tenant is not None:
            return
        principal = current().principal
        if principal is None or principal.tenant is None:
            return
        self._tenants[key] = principal.tenant
        if len(self._tenants) > MAX_CREDENTIALS:
            self._tenants.popitem(last=False)
        quotas.admit_api(principal.tenant, force=True)


async def _problem(scope: Scope, send: Send, exc: Any) -> None:
    retry_after = (b"retry-after", str(exc.retry_after).encode())
    await send_problem(scope, send, exc.status, exc.title, exc.detail, [retry_after], exc.extra())
