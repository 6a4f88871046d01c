"""In-process bus: fan-out, bounded queues that drop the oldest for slow subscribers."""

from __future__ import annotations

import asyncio

import pytest

from yugong.core.samples import make_batch
from yugong.infra.bus import InProcessBus


async def test_fan_out_to_every_subscriber_of_the_topic() -> None:
    bus = InProcessBus()
    a, b, other = bus.subscribe("samples"), bus.subscribe("samples"), bus.subscribe("attributes")
    batch = make_batch(1, [1], [1], [1.0])
    bus.publish("samples", batch)
    assert await a.get() is batch
    assert await b.get() is batch
    assert other.pending == 0
    assert bus.stats().published == {"samples": 1}
    assert bus.stats().subscribers == {"samples": 2, "attributes": 1}


async def test_slow_subscriber_drops_oldest_and_counts() -> None:
    bus = InProcessBus()
    slow = bus.subscribe("samples", maxsize=3)
    fast = bus.subscribe("samples", maxsize=100)
    for i in range(10):
        bus.publish("samples", {"i": i})
    assert slow.dropped == 7 and fast.dropped == 0
    assert [await slow.get() for _ in range(3)] == [{"i": 7}, {"i": 8}, {"i": 9}]
    assert bus.stats().dropped == {"samples": 7}


async def test_async_iteration_waits_and_ends_on_close() -> None:
    bus = InProcessBus()
    received: list[int] = []

    async def consume() -> None:
        async with bus.subscribe("events") as sub:
            async for item in sub:
                received.append(item)
                if item == 2:
                    sub.close()

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    for i in range(3):
        bus.publish("events", i)
        await asyncio.sleep(0)
    await asyncio.wait_for(task, 2)
    assert received == [0, 1, 2]
    assert bus.stats().subscribers == {}
    bus.publish("events", 3)  # nobody listening: fine


async def test_get_can_be_bounded() -> None:
    bus = InProcessBus()
    sub = bus.subscribe("x")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await sub.get()
    with pytest.raises(ValueError, match="maxsize"):
        bus.subscribe("x", maxsize=0)
