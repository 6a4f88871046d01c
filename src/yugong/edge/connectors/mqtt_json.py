"""MQTT/JSON connector: subscribe to a third-party broker and map topics and JSON paths to points.

One session per device profile, one MQTT connection per session. The profile's topic is a
pattern: MQTT wildcards (``+``, ``#`` last) and named segments such as
``plant/{device}/status``; a ``{device}`` segment names the device each message belongs to
(otherwise every message belongs to the profile's device). The profile's points apply to every
message; each point's JSON path picks its value.

Messages are received by a reader task and handed to the base connector's loop in bursts: a
"poll" waits briefly for the first message, then drains everything queued into one batch.
A lost broker connection fails the poll, so availability, BAD samples, backoff and
reconnection all come from the base connector. A payload that is not JSON (or has no usable
timestamp) is counted and logged at most once a minute; it becomes BAD samples only when the
options say a missing value is reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import ssl
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import aiomqtt
import orjson
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from yugong.core.quality import Quality
from yugong.core.ratelog import RateLimitedLog
from yugong.core.timeutil import now_us
from yugong.edge.connectors.base import (
    Backoff,
    Connector,
    DeviceSession,
    DeviceStats,
    DeviceUnreachable,
    PollGroup,
    PollResult,
    PollTimeout,
    Sink,
    WriteResult,
    WriteStatus,
)
from yugong.edge.jsonpath import Columns, JsonPointMap, TimestampUnit
from yugong.edge.profiles import DeviceProfile, MqttJsonConnection
from yugong.edge.samples import edge_batch

log = logging.getLogger("yugong.edge.connectors.mqtt_json")


class MqttJsonOptions(BaseModel):
    """Options MqttJsonConnection does not carry (yet)."""

    model_config = ConfigDict(extra="forbid")

    report_missing: bool = False  # absent path or unusable payload -> BAD samples
    timestamp_path: str | None = None  # the message's own timestamp; else receive time
    timestamp_unit: TimestampUnit = "auto"
    qos: Literal[0, 1, 2] = 1
    client_id: str | None = None  # default: yugong-<device>-<random>
    keepalive: int = Field(30, ge=5)
    wait: float = Field(0.5, gt=0)  # how long one poll waits for the first message
    max_burst: int = Field(10_000, ge=1)  # messages turned into one batch at most
    # Messages held between the broker and the next poll; beyond, the oldest are dropped
    # (counted and logged) so a flood cannot exhaust the gateway's memory.
    max_queue: int = Field(100_000, ge=1)
    # Writes publish {"<point>": value} here; ``{device}`` is replaced. None: read-only.
    command_topic: str | None = None
    log_every: float = Field(60.0, ge=0)  # seconds between repeated bad-payload warnings


# --------------------------------------------------------------------------- topic patterns
_CAPTURE = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


@dataclass(frozen=True, slots=True)
class TopicPattern:
    """``plant/{device}/+/status``: the subscription filter plus named segment captures."""

    text: str
    segments: tuple[str, ...]  # "+" / "#" / literal / "{name}"
    filter: str

    @classmethod
    def parse(cls, text: str) -> TopicPattern:
        if not text or "\x00" in text:
            raise ValueError("an MQTT topic pattern must be a non-empty string")
        segments = tuple(text.split("/"))
        names: list[str] = []
        out: list[str] = []
        for i, seg in enumerate(segments):
            if m := _CAPTURE.match(seg):
                if m.group(1) in names:
                    raise ValueError(f"topic {text!r}: {{{m.group(1)}}} appears twice")
                names.append(m.group(1))
                out.append("+")
            elif seg == "#":
                if i != len(segments) - 1:
                    raise ValueError(f"topic {text!r}: '#' must be the last segment")
                out.append("#")
            elif seg == "+":
                out.append("+")
            elif any(c in seg for c in "+#{}"):
                raise ValueError(
                    f"topic {text!r}: segment {seg!r} mixes wildcards or braces with text "
                    "(a wildcard or {name} takes a whole segment)"
                )
            else:
                out.append(seg)
        return cls(text, segments, "/".join(out))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.group(1) for s in self.segments if (m := _CAPTURE.match(s)))

    def match(self, topic: str) -> dict[str, str] | None:
        """The captured segments, or None when ``topic`` does not match."""
        parts = topic.split("/")
        captured: dict[str, str] = {}
        for i, seg in enumerate(self.segments):
            if seg == "#":
                return captured
            if i >= len(parts):
                return None
            if seg == "+":
                continue
            if m := _CAPTURE.match(seg):
                captured[m.group(1)] = parts[i]
            elif seg != parts[i]:
                return None
        return captured if len(parts) == len(self.segments) else None


# --------------------------------------------------------------------------- the session
class MqttJsonSession(DeviceSession):
    def __init__(self, profile: DeviceProfile, options: MqttJsonOptions) -> None:
        conn = profile.connection
        if not isinstance(conn, MqttJsonConnection):
            raise ValueError(f"{profile.name}: not an mqtt_json profile ({profile.protocol})")
        self.name = profile.name
        self.conn = conn
        self.options = options
        self.pattern = TopicPattern.parse(conn.topic)
        self.captures_device = "device" in self.pattern.names
        self.mapping = JsonPointMap(
            profile.points,
            report_missing=options.report_missing,
            timestamp_path=options.timestamp_path,
            timestamp_unit=options.timestamp_unit,
        )
        self.groups = [PollGroup("messages", 0.0, self.mapping.points)]
        self.stats = DeviceStats()
        self.bad_messages = 0  # payloads that were not JSON or had no usable timestamp
        self.devices_seen: set[str] = set()
        self._client: aiomqtt.Client | None = None
        self._reader: asyncio.Task[None] | None = None
        self._queue: deque[tuple[str, bytes, int]] = deque(maxlen=options.max_queue)
        self._arrived = asyncio.Event()
        self._lost: str | None = None
        self._warn = RateLimitedLog(log, options.log_every)

    @property
    def connected(self) -> bool:
        return self._client is not None and self._lost is None

    def _tls(self) -> ssl.SSLContext | None:
        if not self.conn.tls:
            return None
        ctx = ssl.create_default_context(
            cafile=str(self.conn.ca_file) if self.conn.ca_file else None
        )
        return ctx

    async def connect(self) -> None:
        await self.close()
        ident = self.options.client_id or f"yugong-{self.name}-{uuid.uuid4().hex[:8]}"
        client = aiomqtt.Client(
            self.conn.host,
            self.conn.port,
            username=self.conn.username,
            password=self.conn.password,
            identifier=ident,
            keepalive=self.options.keepalive,
            tls_context=self._tls(),
            timeout=10.0,
        )
        try:
            await client.__aenter__()
        except aiomqtt.MqttError as exc:
            raise DeviceUnreachable(
                f"broker {self.conn.host}:{self.conn.port}: {exc or type(exc).__name__}"
            ) from exc
        try:
            await client.subscribe(self.pattern.filter, qos=self.options.qos)
        except aiomqtt.MqttError as exc:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
            raise DeviceUnreachable(f"subscribe {self.pattern.filter!r}: {exc}") from exc
        self._lost = None
        self._client = client
        self._reader = asyncio.create_task(self._read(client), name=f"mqtt-json:{self.name}")

    async def _read(self, client: aiomqtt.Client) -> None:
        try:
            async for message in client.messages:
                payload = message.payload
                if isinstance(payload, bytes | bytearray):
                    data = bytes(payload)
                else:
                    data = b"" if payload is None else str(payload).encode()
                if len(self._queue) == self._queue.maxlen:  # append drops the oldest
                    self.stats.dropped += 1
                    self._warn.warning(
                        "queue-full",
                        f"{self.name}: messages arrive faster than they are processed; "
                        f"queue of {self._queue.maxlen} full, dropping the oldest "
                        f"({self.stats.dropped} so far)",
                    )
                self._queue.append((message.topic.value, data, now_us()))
                self.stats.bytes_received += len(data)
                self._arrived.set()
        except aiomqtt.MqttError as exc:
            self._lost = f"broker connection lost: {exc}"
        self._lost = self._lost or "broker connection closed"
        self._arrived.set()

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        client, self._client = self._client, None
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)

    async def poll(self, group: PollGroup) -> PollResult:
        if not self._queue:
            if self._lost is not None:
                raise DeviceUnreachable(self._lost)
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), self.options.wait)
            if not self._queue:
                if self._lost is not None:
                    raise DeviceUnreachable(self._lost)
                return PollResult()
        out = Columns()
        n = min(len(self._queue), self.options.max_burst)
        for _ in range(n):
            topic, payload, received = self._queue.popleft()
            self._decode(topic, payload, received, out)
        return PollResult(batches=[out.table()] if len(out) else [])

    def _decode(self, topic: str, payload: bytes, received: int, out: Columns) -> None:
        captured = self.pattern.match(topic)
        if captured is None:  # a retained message of an older subscription, say
            return
        device = captured.get("device", self.name) if self.captures_device else self.name
        if not device:
            self._bad(topic, "empty device segment", None, received, out)
            return
        self.devices_seen.add(device)
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            self._bad(topic, f"not JSON ({exc})", device, received, out)
            return
        try:
            ts = self.mapping.timestamp(doc, received)
        except ValueError as exc:
            self._bad(topic, str(exc), device, received, out)
            return
        before = len(out)
        bad = self.mapping.extract(doc, device, ts, out)
        self.stats.bad_points += bad
        self.stats.points_read += len(out) - before - bad

    def _bad(self, topic: str, why: str, device: str | None, ts: int, out: Columns) -> None:
        self.bad_messages += 1
        self.stats.errors += 1
        self._warn.warning(self.name, f"{self.name}: bad message on {topic}: {why}")
        if self.options.report_missing and device:
            out.add_bad(device, self.mapping.points, ts)
            self.stats.bad_points += len(self.mapping.points)

    def bad_batch(self, points: Sequence[str], ts_us: int) -> pa.Table:
        # A lost broker makes every device this profile has heard from BAD, not just its name.
        devices = sorted(self.devices_seen) if self.captures_device else [self.name]
        rows = [(d, p) for d in devices for p in points]
        return edge_batch([d for d, _ in rows], [p for _, p in rows], ts_us, quality=Quality.BAD)

    async def write(self, point: str, value: float | bool | str) -> WriteResult:
        return await self.write_device(self.name, point, value)

    async def write_device(self, device: str, point: str, value: float | bool | str) -> WriteResult:
        topic = self.options.command_topic
        if topic is None:
            return WriteResult(WriteStatus.INVALID, f"{self.name}: no command_topic; read-only")
        if point not in self.mapping.points:
            return WriteResult(WriteStatus.INVALID, f"{device} has no point {point!r}")
        client = self._client
        if client is None or self._lost is not None:
            raise DeviceUnreachable("not connected to the broker")
        try:
            await client.publish(
                topic.replace("{device}", device),
                orjson.dumps({point: value}),
                qos=max(1, self.options.qos),
                timeout=10.0,
            )
        except aiomqtt.MqttCodeError as exc:
            return WriteResult(WriteStatus.DEVICE_ERROR, str(exc), getattr(exc, "rc", None))
        except aiomqtt.MqttError as exc:
            if "timed out" in str(exc).lower():
                raise PollTimeout(str(exc)) from exc
            raise DeviceUnreachable(str(exc)) from exc
        return WriteResult.ok()


# --------------------------------------------------------------------------- the connector
class MqttJsonConnector(Connector):
    kind = "mqtt_json"

    def __init__(
        self,
        name: str,
        profiles: Sequence[DeviceProfile],
        sink: Sink,
        *,
        options: MqttJsonOptions | Mapping[str, MqttJsonOptions] | None = None,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        """``options`` applies to every profile, or is looked up by profile (device) name."""
        super().__init__(name, sink, backoff=backoff)
        self._profiles = list(profiles)
        self._options = options
        for p in self._profiles:  # fail before anything connects
            TopicPattern.parse(self._conn(p).topic)

    @staticmethod
    def _conn(profile: DeviceProfile) -> MqttJsonConnection:
        if not isinstance(profile.connection, MqttJsonConnection):
            raise ValueError(f"{profile.name}: not an mqtt_json profile ({profile.protocol})")
        return profile.connection

    def options_for(self, device: str) -> MqttJsonOptions:
        if isinstance(self._options, MqttJsonOptions):
            return self._options
        if self._options is not None and device in self._options:
            return self._options[device]
        return MqttJsonOptions()

    def build_sessions(self) -> list[DeviceSession]:
        return [MqttJsonSession(p, self.options_for(p.name)) for p in self._profiles]

    def bad_messages(self, profile: str) -> int:
        session = self._session(profile)
        assert isinstance(session, MqttJsonSession)
        return session.bad_messages

    def dropped_messages(self, profile: str) -> int:
        session = self._session(profile)
        assert isinstance(session, MqttJsonSession)
        return session.stats.dropped

    async def write(self, device: str, point: str, value: float | bool | str) -> WriteResult:
        # A device captured from the topic is written through the session that heard it.
        if device not in self._sessions:
            for name, session in self._sessions.items():
                if isinstance(session, MqttJsonSession) and device in session.devices_seen:
                    async with self._locks[name]:
                        try:
                            return await session.write_device(device, point, value)
                        except PollTimeout as exc:
                            return WriteResult(WriteStatus.TIMEOUT, str(exc))
                        except DeviceUnreachable as exc:
                            return WriteResult(WriteStatus.UNAVAILABLE, str(exc))
        return await super().write(device, point, value)
