"""Server-Sent Events from a bus subscription: the one loop the live streams share (alarm
changes, device values) — an opening that sets the reconnect delay, a keep-alive comment
when nothing happened for a while, an optional end, and the subscription always closed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

import orjson
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from yugong.infra.bus import Subscription

RETRY_MS = 2000


def opening(name: str) -> bytes:
    """The first bytes: the client reconnects after RETRY_MS, and the stream says what it is."""
    return f"retry: {RETRY_MS}\n: {name}\n\n".encode()


def message(body: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + orjson.dumps(body, default=str) + b"\n\n"


async def from_bus(
    sub: Subscription,
    first: bytes,
    render: Callable[[Any], Iterable[bytes]],
    *,
    heartbeat: float,
    end_after: float | None = None,
) -> AsyncIterator[bytes]:
    """``first``, then ``render(item)`` for each item the subscription delivers, with a
    keep-alive comment every ``heartbeat`` seconds of quiet, until ``end_after`` seconds (if
    given) or the bus closes."""
    loop = asyncio.get_running_loop()
    deadline = None if end_after is None else loop.time() + end_after
    try:
        yield first
        while True:
            left = heartbeat if deadline is None else min(heartbeat, deadline - loop.time())
            if left <= 0:
                return
            try:
                item = await asyncio.wait_for(sub.get(), left)
            except TimeoutError:
                if deadline is None or loop.time() < deadline:
                    yield b": keep-alive\n\n"
                continue
            except StopAsyncIteration:
                return
            for chunk in render(item):
                yield chunk
    finally:
        sub.close()  # also when the client went away and the response was cancelled


def response(body: AsyncIterator[bytes], sub: Subscription | None = None) -> StreamingResponse:
    """The streaming answer; with ``sub``, closed afterwards even if the body never started."""
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        background=BackgroundTask(sub.close) if sub is not None else None,
    )
