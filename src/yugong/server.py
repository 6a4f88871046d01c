"""Run the platform under uvicorn, with an optional job started once the server is up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import uvicorn

from yugong.api.app import create_app
from yugong.core.settings import Settings
from yugong.platform.runtime import Platform

AfterStart = Callable[[Platform], Awaitable[None]]


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions", "passlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def serve(settings: Settings, after_start: AfterStart | None = None) -> None:
    platform = Platform(settings)
    app = create_app(settings, platform)
    config = uvicorn.Config(app, host=settings.http_host, port=settings.http_port,
                            log_config=None, lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():
        await asyncio.sleep(0.05)
    if serving.done():  # failed to start: surface the reason
        await serving
        raise SystemExit(1)
    job = asyncio.create_task(after_start(platform)) if after_start else None
    try:
        await serving
    finally:
        if job is not None:
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await job
