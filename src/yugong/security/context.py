"""Who is calling and from where, for code that is not handed it: the audit log, security
events, blocks and rate limits.

The HTTP middleware (:class:`RequestContextMiddleware`) puts a fresh, mutable
:class:`RequestContext` into a context variable per request; the authentication dependency
fills in the principal. Handlers and services running in FastAPI's thread pool get a copy of
the context that still points at the same object, so they see the principal too. Outside a
request (CLI, background jobs, MQTT) :func:`current` is the system context unless the caller
sets one with :func:`acting`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

from yugong.core.asgi import HttpMiddleware, client_ip
from yugong.security.principal import SYSTEM, Principal


@dataclass(slots=True)
class RequestContext:
    source_ip: str | None = None
    principal: Principal | None = None
    channel: str = "system"  # http, mqtt, cli, system


_context: ContextVar[RequestContext | None] = ContextVar("yugong_request", default=None)


def current() -> RequestContext:
    ctx = _context.get()
    return ctx if ctx is not None else RequestContext(principal=SYSTEM)


def actor() -> Principal:
    """The principal the current work is done for (system when nobody is known)."""
    p = current().principal
    return p if p is not None else SYSTEM


@contextlib.contextmanager
def acting(
    principal: Principal | None, source_ip: str | None = None, channel: str = "system"
) -> Iterator[RequestContext]:
    """Run a block on behalf of ``principal`` (e.g. an MQTT device, a CLI user)."""
    ctx = RequestContext(source_ip, principal, channel)
    token = _context.set(ctx)
    try:
        yield ctx
    finally:
        _context.reset(token)


class RequestContextMiddleware(HttpMiddleware):
    """Sets the request context (client address) for every HTTP request."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _context.set(RequestContext(client_ip(scope), None, "http"))
        try:
            await self.app(scope, receive, send)
        finally:
            _context.reset(token)


__all__ = ["RequestContext", "RequestContextMiddleware", "acting", "actor", "current"]
