"""In-process publish/subscribe for sample batches and small events.

Publishing never blocks the publisher: every subscriber has its own bounded queue and a
subscriber that falls behind loses its oldest items (counted in ``dropped``). The
:class:`Bus` protocol is deliberately small so a NATS JetStream bus can stand in for
:class:`InProcessBus` when several processes share the stream.

Topics in use: ``"samples"`` (Arrow tables in ``SAMPLE_SCHEMA``) and ``"attributes"``
(``{"tenant", "device", "attributes"}`` dicts).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol

DEFAULT_QUEUE = 1024


class Subscription(Protocol):
    """An async iterator of items on one topic; close it (or use ``async with``) when done."""

    topic: str

    @property
    def dropped(self) -> int: ...

    def __aiter__(self) -> AsyncIterator[Any]: ...

    async def __anext__(self) -> Any: ...

    async def get(self) -> Any: ...

    def close(self) -> None: ...

    async def __aenter__(self) -> Subscription: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Bus(Protocol):
    def publish(self, topic: str, item: Any) -> None:
        """Hand ``item`` to every current subscriber of ``topic``; never blocks."""

    def subscribe(self, topic: str, *, maxsize: int = DEFAULT_QUEUE) -> Subscription: ...

    def stats(self) -> BusStats: ...


@dataclass(frozen=True)
class BusStats:
    published: dict[str, int]  # items published per topic
    subscribers: dict[str, int]  # open subscriptions per topic
    dropped: dict[str, int]  # items dropped for slow subscribers, per topic (open ones)


class InProcessSubscription:
    """One subscriber's bounded queue. Used from the event loop that owns the bus."""

    def __init__(self, bus: InProcessBus, topic: str, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("subscription maxsize must be at least 1")
        self.topic = topic
        self._bus = bus
        self._items: deque[Any] = deque(maxlen=maxsize)
        self._ready = asyncio.Event()
        self._dropped = 0
        self._closed = False

    @property
    def dropped(self) -> int:
        return self._dropped

    @property
    def pending(self) -> int:
        return len(self._items)

    def _offer(self, item: Any) -> None:
        if len(self._items) == self._items.maxlen:
            self._dropped += 1  # deque(maxlen) discards the oldest on append
        self._items.append(item)
        self._ready.set()

    async def get(self) -> Any:
        """The next item (wrap in ``asyncio.timeout`` to bound the wait); raises
        ``StopAsyncIteration`` once closed."""
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        return await self.get()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._bus._remove(self)
            self._ready.set()

    async def __aenter__(self) -> InProcessSubscription:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class InProcessBus:
    """Fan-out inside one process. ``publish`` must be called on the event loop thread."""

    def __init__(self) -> None:
        self._subs: dict[str, list[InProcessSubscription]] = {}
        self._published: dict[str, int] = {}

    def publish(self, topic: str, item: Any) -> None:
        self._published[topic] = self._published.get(topic, 0) + 1
        for sub in self._subs.get(topic, ()):
            sub._offer(item)

    def subscribe(self, topic: str, *, maxsize: int = DEFAULT_QUEUE) -> InProcessSubscription:
        sub = InProcessSubscription(self, topic, maxsize)
        # Copy-on-write so publish can iterate without a lock or a copy.
        self._subs[topic] = [*self._subs.get(topic, []), sub]
        return sub

    def _remove(self, sub: InProcessSubscription) -> None:
        remaining = [s for s in self._subs.get(sub.topic, []) if s is not sub]
        if remaining:
            self._subs[sub.topic] = remaining
        else:
            self._subs.pop(sub.topic, None)

    def stats(self) -> BusStats:
        return BusStats(
            published=dict(self._published),
            subscribers={t: len(s) for t, s in self._subs.items()},
            dropped={t: sum(x.dropped for x in s) for t, s in self._subs.items()},
        )
