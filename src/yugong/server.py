"""Run the platform under uvicorn, with an optional job started once the server is up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import uvicorn

from yugong.api.app import create_app
from yugong.core.settings import Settings
from yugong.platform.runtime import Platform
from yugong.security.pki import CertReloader, inspect, server_ssl_context, tls_files

T = TypeVar("T")
log = logging.getLogger(__name__)
AfterStart = Callable[[Platform], Coroutine[Any, Any, None]]


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    for noisy in ("amqtt", "transitions", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class _Server(uvicorn.Server):
    """uvicorn that ends the after-start job before the platform stops (the job's clients
    would otherwise see their broker vanish under them)."""

    job: asyncio.Task[None] | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await _end(self.job)
        await super().shutdown(sockets)


class _Config(uvicorn.Config):
    """uvicorn's config serving our own SSLContext: TLS 1.2+ only, and one live context
    that a certificate rotation reloads in place."""

    context: ssl.SSLContext | None = None

    def load(self) -> None:
        super().load()
        if self.context is not None:
            self.ssl = self.context


def http_url(settings: Settings) -> str:
    """The server's base URL: https:// when TLS files are configured or made by certs init."""
    scheme = "https" if tls_files(settings) is not None else "http"
    return f"{scheme}://{settings.http_host}:{settings.http_port}"


def _uvicorn_config(app: Any, settings: Settings) -> tuple[_Config, CertReloader | None]:
    files = tls_files(settings)
    config = _Config(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        lifespan="on",
        access_log=False,
        ssl_certfile=files.cert_file if files else None,
        ssl_keyfile=files.key_file if files else None,
    )
    if files is None:
        return config, None
    cert = inspect(files.cert_file)
    if cert.expired or cert.days_left < 30:
        log.warning(
            "TLS certificate %s %s %s: run `yugong certs rotate`",
            files.cert_file,
            "expired on" if cert.expired else "expires on",
            f"{cert.not_after:%Y-%m-%d}",
        )
    # HTTPS asks no client certificate (people sign in); devices present theirs over MQTT.
    config.context = server_ssl_context(files.cert_file, files.key_file)
    return config, CertReloader(config.context, files.cert_file, files.key_file)


def _watch(reloader: CertReloader | None, platform: Platform) -> asyncio.Task[None] | None:
    """Reload rotated certificate files periodically and on SIGHUP (main thread only), into
    the HTTPS context and the embedded broker's MQTT over TLS context alike."""
    if reloader is None:
        return None
    broker_context = getattr(getattr(platform, "_broker", None), "ssl_context", None)
    if isinstance(broker_context, ssl.SSLContext):
        tls = tls_files(platform.settings)
        if tls is not None and (tls.cert_file, tls.key_file) == (
            reloader.cert_file,
            reloader.key_file,
        ):
            reloader.add(broker_context, tls.ca_file)
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
        asyncio.get_running_loop().add_signal_handler(
            signal.SIGHUP, lambda: reloader.check(force=True)
        )
    return asyncio.create_task(reloader.watch())


async def _end(job: asyncio.Task[None] | None) -> None:
    if job is not None and not job.done():
        job.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await job


async def serve(settings: Settings, after_start: AfterStart | None = None) -> None:
    platform = Platform(settings)
    app = create_app(settings, platform)
    config, reloader = _uvicorn_config(app, settings)
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    while not server.started and not serving.done():  # noqa: ASYNC110 - uvicorn has no event
        await asyncio.sleep(0.05)
    if serving.done():  # uvicorn logged why; leave with its exit status, not a traceback
        try:
            await serving
        except SystemExit as exc:
            raise SystemExit(
                f"yugong: the server could not start (status {exc.code}); see the log above"
            ) from None
        raise SystemExit(1)
    if after_start is not None:
        server.job = asyncio.create_task(after_start(platform))
    watcher = _watch(reloader, platform)
    try:
        await serving
    finally:
        await _end(watcher)
        await _end(server.job)


class BackgroundServer:
    """The whole platform (HTTP and MQTT on real sockets) in a background thread, for
    end-to-end tests and benchmarks: ``with BackgroundServer(settings) as srv: srv.url``."""

    def __init__(self, settings: Settings, *, start_timeout_s: float = 60.0) -> None:
        self.settings = settings
        self.platform = Platform(settings)
        self.url = http_url(settings)
        self.reloader: CertReloader | None = None
        self._timeout = start_timeout_s
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop

    def __enter__(self) -> BackgroundServer:
        self.app = create_app(self.settings, self.platform)
        config, self.reloader = _uvicorn_config(self.app, self.settings)
        self._server = uvicorn.Server(config)
        # uvicorn installs no signal handlers outside the main thread.

        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            server = self._server
            assert server is not None
            serving = asyncio.create_task(server.serve())
            while not server.started and not serving.done():  # noqa: ASYNC110 - no event
                await asyncio.sleep(0.02)
            watcher = _watch(self.reloader, self.platform) if server.started else None
            try:
                await serving
            finally:
                await _end(watcher)

        def run() -> None:
            try:
                asyncio.run(serve())
            except BaseException as exc:  # reported to the starting thread
                self._error = exc

        self._thread = threading.Thread(target=run, name="yugong-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {self._error!r}")
            time.sleep(0.02)
        return self

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's event loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def __exit__(self, *exc: object) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=60)
