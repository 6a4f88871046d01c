"""Refuses HTTP requests from a blocked source address (403, as a problem document) before
any handler runs. Loopback is exempt unless ``block_loopback`` is set (see
:mod:`yugong.security.blocks`)."""

from __future__ import annotations

import asyncio

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

from yugong.api.problems import PROBLEM_JSON
from yugong.security.blocks import Blocks


class BlockedAddresses:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        security = getattr(scope["app"].state, "security", None) if "app" in scope else None
        client = scope.get("client")
        if security is not None and client:
            blocks: Blocks = security.blocks
            if blocks.stale:
                await asyncio.to_thread(blocks.refresh)  # keep the table read off the loop
            until = blocks.is_blocked("ip", client[0])
            if until is not None:
                await self._refuse(scope, send, client[0], until.isoformat())
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(scope: Scope, send: Send, ip: str, until: str) -> None:
        body = orjson.dumps(
            {
                "type": "about:blank",
                "title": "Address blocked",
                "status": 403,
                "detail": f"requests from {ip} are blocked until {until} "
                "after repeated security events; ask an administrator to lift the block",
                "instance": scope.get("path", ""),
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", PROBLEM_JSON.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
