"""The connector interface and the machinery every protocol shares.

A connector owns a set of devices. Each device gets one asyncio task that connects (with
capped, jittered exponential backoff), then polls its groups on their intervals, strictly one
request at a time: writes take the same per-device lock, so a device never sees two
outstanding requests. A slow or dead device only stalls its own task.

A failed poll is not silence: the device turns unavailable (logged once, and once again when
it recovers) and every point the poll was meant to read is emitted with BAD quality.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from yugong.core.quality import Quality
from yugong.core.timeutil import now_us
from yugong.edge.samples import edge_batch

log = logging.getLogger("yugong.edge.connectors")

#: Where batches go; may be sync or async. Called from the device's own task.
Sink = Callable[[pa.Table], Awaitable[None] | None]


class PollTimeout(Exception):
    """The device did not answer in time."""


class DeviceUnreachable(Exception):
    """The connection to the device is down or broke during a request."""


# --------------------------------------------------------------------------- write results
class WriteStatus(enum.StrEnum):
    OK = "ok"
    DEVICE_ERROR = "device_error"  # the device answered with an error (e.g. Modbus exception)
    TIMEOUT = "timeout"
    UNAVAILABLE = "unavailable"  # not connected: the request was never sent
    INVALID = "invalid"  # unknown point, read-only point or a value that does not fit


@dataclass(frozen=True, slots=True)
class WriteResult:
    status: WriteStatus
    message: str = ""
    code: int | None = None  # protocol error code, e.g. the Modbus exception code

    @property
    def success(self) -> bool:
        return self.status is WriteStatus.OK

    @classmethod
    def ok(cls) -> WriteResult:
        return cls(WriteStatus.OK)


# --------------------------------------------------------------------------- backoff
@dataclass(slots=True)
class Backoff:
    """Exponential backoff with jitter, capped: initial * factor**n, scaled by [1-jitter, 1]."""

    initial: float = 0.5
    maximum: float = 30.0
    factor: float = 2.0
    jitter: float = 0.3
    attempts: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial or self.factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        if not 0 <= self.jitter < 1:
            raise ValueError("backoff jitter must be in [0, 1)")

    def next_delay(self) -> float:
        base = min(self.maximum, self.initial * self.factor ** min(self.attempts, 64))
        self.attempts += 1
        # Jitter below the cap keeps many devices that dropped together from retrying in step.
        return base * (1.0 - self.jitter * self.rng.random())

    def reset(self) -> None:
        self.attempts = 0


# --------------------------------------------------------------------------- statistics
@dataclass(slots=True)
class DeviceStats:
    polls: int = 0
    errors: int = 0  # failed polls and block errors (device exception responses)
    timeouts: int = 0
    points_read: int = 0  # GOOD samples emitted
    bad_points: int = 0  # BAD samples emitted
    last_poll_latency_ms: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    connects: int = 0
    dropped: int = 0  # messages lost before processing (a full receive queue)
    available: bool = False

    def as_dict(self) -> dict[str, float | int | bool]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(frozen=True, slots=True)
class ConnectorStats:
    connector: str
    devices: dict[str, DeviceStats]

    @property
    def devices_online(self) -> int:
        return sum(1 for d in self.devices.values() if d.available)

    def total(self, name: str) -> float:
        return sum(float(getattr(d, name)) for d in self.devices.values())


# --------------------------------------------------------------------------- poll results
@dataclass(frozen=True, slots=True)
class PollGroup:
    """Points of one device polled together on one interval (0 = as fast as possible)."""

    name: str
    interval_s: float
    points: tuple[str, ...]


@dataclass(slots=True)
class PollResult:
    """What one poll of one group produced: its batches and any per-block errors.

    Block errors (the device answered, but refused one block) make that block's points BAD
    without taking the device offline.
    """

    batches: list[pa.Table] = field(default_factory=list)
    block_errors: list[str] = field(default_factory=list)


class DeviceSession(ABC):
    """The protocol-specific half of a device: connect, poll a group, write a point.

    Methods are only ever called from the device's own task, under its lock, so an
    implementation need not guard against concurrent requests.
    """

    name: str
    groups: Sequence[PollGroup]
    stats: DeviceStats

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection; raise on failure."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def poll(self, group: PollGroup) -> PollResult:
        """Read one group. Raise PollTimeout / DeviceUnreachable when the device is gone."""

    @abstractmethod
    async def write(self, point: str, value: float | bool | str) -> WriteResult: ...

    def bad_batch(self, points: Sequence[str], ts_us: int) -> pa.Table:
        return edge_batch(self.name, list(points), ts_us, quality=Quality.BAD)


# --------------------------------------------------------------------------- the connector
class Connector(ABC):
    """Runs one task per device; subclasses only build the device sessions."""

    kind: str = "connector"

    def __init__(
        self,
        name: str,
        sink: Sink,
        *,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        self.name = name
        self._sink = sink
        self._backoff_factory = backoff
        self._sessions: dict[str, DeviceSession] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._state: dict[str, bool | None] = {}  # None: not yet known
        self._sink_failing = False

    @abstractmethod
    def build_sessions(self) -> Sequence[DeviceSession]:
        """Create one session per configured device (no I/O)."""

    # -- lifecycle
    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        for session in self.build_sessions():
            if session.name in self._sessions:
                raise ValueError(f"{self.name}: device {session.name!r} is configured twice")
            self._sessions[session.name] = session
            self._locks[session.name] = asyncio.Lock()
        for session in self._sessions.values():
            task = asyncio.create_task(
                self._run_device(session), name=f"{self.name}:{session.name}"
            )
            self._tasks.append(task)

    async def stop(self) -> None:
        self._running = False
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for session in self._sessions.values():
            with contextlib.suppress(Exception):
                await session.close()
            session.stats.available = False

    async def __aenter__(self) -> Connector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- queries and commands
    @property
    def devices(self) -> list[str]:
        return list(self._sessions)

    def available(self, device: str) -> bool:
        return self._session(device).stats.available

    def stats(self) -> ConnectorStats:
        return ConnectorStats(
            self.name, {n: _copy_stats(s.stats) for n, s in self._sessions.items()}
        )

    async def write(self, device: str, point: str, value: float | bool | str) -> WriteResult:
        session = self._sessions.get(device)
        if session is None:
            return WriteResult(WriteStatus.INVALID, f"unknown device {device!r}")
        async with self._locks[device]:
            if not session.connected:
                return WriteResult(WriteStatus.UNAVAILABLE, f"device {device!r} is not connected")
            try:
                return await session.write(point, value)
            except PollTimeout as exc:
                session.stats.timeouts += 1
                return WriteResult(WriteStatus.TIMEOUT, str(exc) or "no answer")
            except DeviceUnreachable as exc:
                return WriteResult(WriteStatus.UNAVAILABLE, str(exc))

    def _session(self, device: str) -> DeviceSession:
        try:
            return self._sessions[device]
        except KeyError:
            raise KeyError(f"{self.name}: unknown device {device!r}") from None

    # -- the per-device loop
    async def _emit(self, batch: pa.Table) -> None:
        if batch.num_rows == 0:
            return
        try:
            result = self._sink(batch)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            # A broken sink must not kill the device loop; say so once until it works again.
            if not self._sink_failing:
                self._sink_failing = True
                log.exception("%s: the sink failed; batches are being lost", self.name)
            return
        self._sink_failing = False

    def _set_available(self, session: DeviceSession, up: bool, reason: str = "") -> None:
        # Transitions only: a device that stays down is logged once, not once per poll.
        before = self._state.get(session.name)
        if before is up:
            return
        self._state[session.name] = up
        session.stats.available = up
        if up:
            log.info("%s: device %s is available", self.name, session.name)
        else:
            log.warning("%s: device %s is unavailable: %s", self.name, session.name, reason)

    async def _fail(self, session: DeviceSession, groups: Sequence[PollGroup], reason: str) -> None:
        self._set_available(session, False, reason)
        points = [p for g in groups for p in g.points]
        if points:
            session.stats.bad_points += len(points)
            await self._emit(session.bad_batch(points, now_us()))

    async def _run_device(self, session: DeviceSession) -> None:
        backoff = self._backoff_factory()
        lock = self._locks[session.name]
        groups = list(session.groups)
        loop = asyncio.get_running_loop()
        due = [loop.time()] * len(groups)
        while self._running:
            if not session.connected:
                try:
                    async with lock:
                        await session.connect()
                    session.stats.connects += 1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # any failure to connect is the same to the loop
                    session.stats.errors += 1
                    await self._fail(session, groups, f"connect failed: {_describe(exc)}")
                    await asyncio.sleep(backoff.next_delay())
                    continue
            if not groups:
                self._set_available(session, True)
                await asyncio.sleep(3600)
                continue
            i = min(range(len(groups)), key=due.__getitem__)
            delay = due[i] - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            elif groups[i].interval_s <= 0:
                await asyncio.sleep(0)  # max rate: still let other devices run
            group = groups[i]
            started = time.perf_counter()
            try:
                async with lock:
                    result = await session.poll(group)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                session.stats.polls += 1
                session.stats.errors += 1
                if isinstance(exc, PollTimeout):
                    session.stats.timeouts += 1
                with contextlib.suppress(Exception):
                    await session.close()
                await self._fail(session, [group], _describe(exc))
                await asyncio.sleep(backoff.next_delay())
                continue
            session.stats.polls += 1
            session.stats.last_poll_latency_ms = (time.perf_counter() - started) * 1000.0
            session.stats.errors += len(result.block_errors)
            backoff.reset()
            self._set_available(session, True)
            for batch in result.batches:
                await self._emit(batch)
            # Skip missed slots rather than bursting to catch up after a slow poll.
            due[i] = max(due[i] + group.interval_s, loop.time())


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _copy_stats(stats: DeviceStats) -> DeviceStats:
    return DeviceStats(**stats.as_dict())  # type: ignore[arg-type]
