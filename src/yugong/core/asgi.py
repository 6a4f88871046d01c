"""What the platform's own ASGI middleware share: HTTP requests only, and the client's
address."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class HttpMiddleware:
    """An ASGI middleware that acts on HTTP requests (:meth:`handle`); every other scope
    (lifespan, websocket) passes through untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


def client_ip(scope: Scope) -> str | None:
    """The address the request came from (None when the server does not know it)."""
    client = scope.get("client")
    return client[0] if client else None
