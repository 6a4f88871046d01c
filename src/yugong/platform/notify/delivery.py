"""Delivery with retries: one bounded queue and one worker per target.

A message is tried until it is delivered, refused for good, or out of attempts. Between
tries the worker waits an exponential back-off with jitter (half to all of it), or what the
peer asked for (``Retry-After``), whichever is longer, capped. A target whose queue is full (a dead
endpoint) drops its oldest waiting message, counted and logged, so memory stays bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Attempt:
    """The result of one try: ``ok``; or not, and whether trying again may help
    (``retry``), after at least ``retry_after_s`` when the peer said so."""

    ok: bool
    status: int | None = None  # HTTP status or SMTP reply code, when there was one
    error: str = ""
    retry: bool = False
    retry_after_s: float | None = None


@dataclass(frozen=True, slots=True)
class Backoff:
    attempts: int = 5  # tries in all, the first included
    base_s: float = 1.0
    cap_s: float = 60.0
    max_retry_after_s: float = 300.0  # a longer Retry-After is cut to this

    def delay(self, failures: int, retry_after_s: float | None = None) -> float:
        """Seconds before the next try after ``failures`` failed tries (>= 1)."""
        ceiling = min(self.cap_s, self.base_s * 2 ** (failures - 1))
        wait = random.uniform(ceiling / 2, ceiling)
        if retry_after_s is not None:
            wait = max(wait, min(retry_after_s, self.max_retry_after_s))
        return wait


@dataclass
class DeliveryLog:
    """What happened to one target's messages since the server started."""

    queued: int = 0
    delivered: int = 0
    failed: int = 0  # gave up: refused for good or out of attempts
    retries: int = 0
    dropped: int = 0  # the queue was full
    last_status: int | None = None
    last_error: str = ""
    last_ok: bool | None = None
    last_at: float | None = None  # epoch seconds of the last try
    pending: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "queued": self.queued,
            "delivered": self.delivered,
            "failed": self.failed,
            "retries": self.retries,
            "dropped": self.dropped,
            "pending": self.pending,
            "last_ok": self.last_ok,
            "last_status": self.last_status,
            "last_error": self.last_error,
            "last_at": self.last_at,
        }


Send = Callable[[], Awaitable[Attempt]]


@dataclass
class _Queue:
    items: deque[tuple[str, Send]]
    task: asyncio.Task[None] | None = None


class Deliveries:
    """Per-target queues and workers. ``submit`` never blocks; ``close`` stops the workers
    (messages still waiting are abandoned and counted as dropped)."""

    def __init__(self, backoff: Backoff | None = None, *, queue_size: int = 1000) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.backoff = backoff or Backoff()
        self.queue_size = queue_size
        self._queues: dict[int, _Queue] = {}
        self._logs: dict[int, DeliveryLog] = {}
        self._idle: dict[int, asyncio.Event] = {}
        self._closed = False

    def log(self, target: int) -> DeliveryLog:
        return self._logs.setdefault(target, DeliveryLog())

    def submit(self, target: int, what: str, send: Send) -> None:
        """Queue ``send`` (one message, tried with retries) for ``target``."""
        if self._closed:
            raise RuntimeError("deliveries are closed")
        q = self._queues.get(target)
        if q is None:
            q = self._queues[target] = _Queue(deque())
        stats = self.log(target)
        if len(q.items) >= self.queue_size:
            old, _ = q.items.popleft()
            stats.dropped += 1
            log.warning(
                "notification target %s: queue full (%d), dropped %s (%d dropped so far)",
                target,
                self.queue_size,
                old,
                stats.dropped,
            )
        q.items.append((what, send))
        stats.queued += 1
        stats.pending = len(q.items)
        self._idle.setdefault(target, asyncio.Event()).clear()
        if q.task is None or q.task.done():
            q.task = asyncio.create_task(self._work(target, q), name=f"notify-{target}")

    async def run(self, target: int, what: str, send: Send) -> tuple[Attempt, int]:
        """Try ``send`` now with retries, outside the queue; the last try and the count."""
        return await self._deliver(target, what, send)

    async def wait_idle(self, target: int) -> None:
        """Until ``target`` has nothing waiting or in flight (for tests and shutdown)."""
        event = self._idle.get(target)
        if event is not None:
            await event.wait()

    async def _work(self, target: int, q: _Queue) -> None:
        stats = self.log(target)
        while q.items:
            what, send = q.items.popleft()
            stats.pending = len(q.items)
            try:
                await self._deliver(target, what, send)
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in a sender must not stop the queue
                log.exception("notification target %s: delivery of %s crashed", target, what)
                stats.failed += 1
        stats.pending = 0
        self._idle.setdefault(target, asyncio.Event()).set()

    async def _deliver(self, target: int, what: str, send: Send) -> tuple[Attempt, int]:
        stats = self.log(target)
        tries = 0
        while True:
            tries += 1
            try:
                result = await send()
            except Exception as exc:  # senders return Attempts; anything else is a bug
                log.exception("notification target %s: sending %s raised", target, what)
                result = Attempt(ok=False, error=f"{type(exc).__name__}: {exc}")
            stats.last_ok, stats.last_status = result.ok, result.status
            stats.last_error, stats.last_at = result.error, time.time()
            if result.ok:
                stats.delivered += 1
                return result, tries
            if not result.retry or tries >= self.backoff.attempts:
                stats.failed += 1
                log.warning(
                    "notification target %s: gave up on %s after %d tries: %s",
                    target,
                    what,
                    tries,
                    result.error or result.status,
                )
                return result, tries
            stats.retries += 1
            await asyncio.sleep(self.backoff.delay(tries, result.retry_after_s))

    async def close(self) -> None:
        self._closed = True
        for target, q in self._queues.items():
            if q.items:
                self.log(target).dropped += len(q.items)
                q.items.clear()
            if q.task is not None:
                q.task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await q.task


__all__ = ["Attempt", "Backoff", "Deliveries", "DeliveryLog", "Send"]
