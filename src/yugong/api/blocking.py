"""Refuses HTTP requests from a blocked source address (403, as a problem document) before
any handler runs. Loopback is exempt unless ``block_loopback`` is set (see
:mod:`yugong.security.blocks`)."""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Scope, Send

from yugong.api.problems import send_problem
from yugong.core.asgi import HttpMiddleware, client_ip
from yugong.security.blocks import Blocks


class BlockedAddresses(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        security = getattr(scope["app"].state, "security", None) if "app" in scope else None
        ip = client_ip(scope)
        if security is not None and ip is not None:
            blocks: Blocks = security.blocks
            if blocks.stale:
                await asyncio.to_thread(blocks.refresh)  # keep the table read off the loop
            until = blocks.is_blocked("ip", ip)
            if until is not None:
                detail = (
                    f"requests from {ip} are blocked until {until.isoformat()} "
                    "after repeated security events; ask an administrator to lift the block"
                )
                await send_problem(scope, send, 403, "Address blocked", detail)
                return
        await self.app(scope, receive, send)
