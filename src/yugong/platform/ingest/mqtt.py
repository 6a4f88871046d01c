"""Ingest from an external MQTT broker (Mosquitto, EMQX).

The platform subscribes to ``{prefix}/+/telemetry`` and ``{prefix}/+/attributes`` where
``+`` is the global device id. Access tokens never travel in topics: the broker's ACLs
decide which client may publish under which device id, so the topic is the identity.
With ``mqtt_shared_subscription`` the subscriptions are ``$share/yugong/...`` and several
platform processes split the messages between them.

How messages flow: a reader thread owns the connection (MQTT 5, or 3.1.1 with a broker
that does not answer 5; subscribe side only: connect, subscribe, receive, acknowledge, keep
alive). It reads the socket in large chunks, splits them into PUBLISH packets, appends
``(topic, payload, received_us)`` to a queue, then acknowledges the chunk's QoS 1 messages
in one write. The event loop drains the queue, up to ``drain_max`` messages at a time, into
:meth:`IngestService.ingest_messages`: one validation pass, one batch to the writer, one bus
publish per drain.

Why no QoS 1 message is dropped on the way in: the CONNECT announces a Receive Maximum of
65535, so the broker streams QoS 1 messages instead of stopping at its own in-flight limit
(Mosquitto: ``max_inflight_messages`` 20) and parking the rest in its per-client queue,
which drops beyond ``max_queued_messages`` (1000 by default). Reading never waits for
ingest; only when ingest falls ``queue_max`` messages behind does reading pause, and the
backlog then waits in the broker (there the broker's limits apply again). Over MQTT 3.1.1
the broker's in-flight limit applies; raise ``max_inflight_messages`` / ``max_queued_messages``
there, or use several platform processes on a shared subscription.

Durability: a QoS 1 message is acknowledged once it is in this process's queue, before it
is written to the store. If the process dies, messages it had acknowledged but not yet
written (its queue plus the writer's) are lost; the broker redelivers only unacknowledged
ones. While the process is away, the broker keeps QoS 1 messages for it only with a fixed
client ``identifier``: the session is then persistent (clean start off, kept by the broker
for ``SESSION_EXPIRY_S`` after a disconnect) and the broker's queue limits bound how many
messages wait. With a shared subscription, messages of one device may be spread over the
subscribers and arrive out of order between them (points carry their own timestamps).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from yugong.core.errors import YugongError
from yugong.core.ratelog import RateLimitedLog
from yugong.core.settings import Settings
from yugong.platform.ingest.service import IngestService, Message
from yugong.platform.registry.bindings import DeviceBinding, DeviceDirectory

log = logging.getLogger(__name__)
SHARE_GROUP = "yugong"
MAX_BACKOFF_S = 30.0
KEEPALIVE_S = 30
READ_BYTES = 256 * 1024
POLL_S = 0.2  # how often the reader looks up from the socket (stop, keepalive)
CONNACK_TIMEOUT_S = 5.0
RECEIVE_MAXIMUM = 65_535  # QoS 1 messages the broker may have unacknowledged towards us
SESSION_EXPIRY_S = 24 * 3600  # a persistent session outlives a disconnect by this long

_REFUSALS = {  # CONNACK / SUBACK / DISCONNECT codes, 3.1.1 (1-5) and 5 (0x80 and up)
    1: "unacceptable protocol version",
    2: "client identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
    0x80: "unspecified error",
    0x81: "malformed packet",
    0x82: "protocol error",
    0x83: "implementation specific error",
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x88: "server unavailable",
    0x89: "server busy",
    0x8A: "banned",
    0x8B: "server shutting down",
    0x8D: "keep alive timeout",
    0x8E: "session taken over",
    0x8F: "topic filter invalid",
    0x97: "quota exceeded",
    0x9E: "shared subscriptions not supported",
    0x9F: "connection rate exceeded",
}


def _why(code: int) -> str:
    return _REFUSALS.get(code, f"code {code:#x}")


def _name(version: int) -> str:
    return "5" if version == 5 else "3.1.1"


def _skip_properties(body: bytes, p: int) -> int:
    plen, shift = 0, 0
    while True:
        b = body[p]
        p += 1
        plen |= (b & 127) << shift
        shift += 7
        if b < 128:
            return p + plen


class MqttProtocolError(ConnectionError):
    """The broker refused us or sent something this client does not accept."""


@dataclass
class SubscriberStats:
    connects: int = 0
    disconnects: int = 0
    received: int = 0  # PUBLISH packets read from the broker
    messages: int = 0  # handed to ingest and accepted
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp") or not parts.hostname:
            raise ValueError(f"not an MQTT broker URL: {url!r} (mqtt://[user:pass@]host[:port])")
        tls = parts.scheme == "mqtts"
        return cls(
            parts.hostname,
            parts.port or (8883 if tls else 1883),
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            tls,
        )


# MQTT packets (what a subscriber needs), versions 5 and 3.1.1 ------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (128 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def _packet(header: int, body: bytes) -> bytes:
    return bytes([header]) + _varint(len(body)) + body


def connect_packet(
    client_id: str,
    *,
    clean: bool,
    keepalive: int,
    username: str | None,
    password: str | None,
    version: int = 5,
    receive_maximum: int = RECEIVE_MAXIMUM,
    session_expiry_s: int = 0,
) -> bytes:
    """CONNECT. In MQTT 5 ``receive_maximum`` tells the broker how many unacknowledged
    QoS 1 messages it may send us at once (Mosquitto otherwise sends 20, then queues);
    ``session_expiry_s`` is how long the broker keeps the session after a disconnect."""
    flags = (0x02 if clean else 0) | (0x80 if username else 0)
    if username and password is not None:
        flags |= 0x40
    body = _str("MQTT") + bytes([version, flags]) + keepalive.to_bytes(2, "big")
    if version == 5:
        props = b"\x21" + receive_maximum.to_bytes(2, "big")
        if session_expiry_s:
            props += b"\x11" + session_expiry_s.to_bytes(4, "big")
        body += _varint(len(props)) + props
    body += _str(client_id)
    if username:
        body += _str(username)
        if password is not None:
            body += _str(password)
    return _packet(0x10, body)


def subscribe_packet(packet_id: int, topics: list[str], qos: int, version: int = 5) -> bytes:
    body = packet_id.to_bytes(2, "big") + (b"\x00" if version == 5 else b"")
    body += b"".join(_str(t) + bytes([qos]) for t in topics)
    return _packet(0x82, body)


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"

Received = tuple[bytes, bytes, int]  # topic, payload, receive time (epoch µs)


def split_packets(
    data: bytes, received_us: int, out: list[Received], acks: bytearray, version: int = 5
) -> tuple[int, list[tuple[int, bytes]]]:
    """Cut complete packets off ``data``: PUBLISH payloads go to ``out`` (their QoS 1
    acknowledgements to ``acks``), other packets are returned as (type, body). Returns how
    many bytes were used; the rest is an incomplete packet."""
    i, n = 0, len(data)
    v5 = version == 5
    control: list[tuple[int, bytes]] = []
    while i + 1 < n:
        h = data[i]
        j = i + 1
        length = 0
        shift = 0
        while True:
            if j >= n:
                return i, control
            b = data[j]
            j += 1
            length |= (b & 127) << shift
            if b < 128:
                break
            shift += 7
            if shift > 21:
                raise MqttProtocolError("malformed remaining length")
        end = j + length
        if end > n:
            return i, control
        if h >> 4 == 3:  # PUBLISH
            tl = (data[j] << 8) | data[j + 1]
            p = j + 2 + tl
            topic = data[j + 2 : p]
            qos = (h >> 1) & 3
            if qos:
                if qos != 1:  # we subscribe with at most QoS 1
                    raise MqttProtocolError(f"unexpected QoS {qos} message")
                acks += b"\x40\x02"
                acks += data[p : p + 2]
                p += 2
            if v5:  # skip the properties
                b = data[p]
                p += 1
                if b:
                    plen, shift = b & 127, 7
                    while b >= 128:
                        b = data[p]
                        p += 1
                        plen |= (b & 127) << shift
                        shift += 7
                    p += plen
            out.append((topic, data[p:end], received_us))
        else:
            control.append((h >> 4, data[j:end]))
        i = end
    return i, control


# The subscriber ------------------------------------------------------------------------------


class ExternalBrokerIngest:
    """``await start()`` subscribes in the background (reconnecting with backoff);
    ``await stop()`` ingests what was received, then disconnects. ``ready`` is set while
    subscribed.

    ``identifier``: a fixed client id makes the session persistent (the broker keeps the
    subscription and queues QoS 1 messages while this process is away); without one, a
    fresh id and a clean session each time. ``qos``: the subscription's QoS (0 or 1).
    """

    def __init__(
        self,
        settings: Settings,
        directory: DeviceDirectory,
        ingest: IngestService,
        *,
        identifier: str | None = None,
        qos: int = 1,
        drain_max: int = 2000,
        queue_max: int = 200_000,
    ) -> None:
        if not settings.mqtt_url:
            raise ValueError("mqtt_url is not set")
        if qos not in (0, 1):
            raise ValueError(f"qos must be 0 or 1, not {qos!r}")
        if drain_max < 1 or queue_max < drain_max:
            raise ValueError("need drain_max >= 1 and queue_max >= drain_max")
        self.address = BrokerAddress.parse(settings.mqtt_url)
        self.prefix = settings.mqtt_topic_prefix.rstrip("/")
        self.shared = settings.mqtt_shared_subscription
        self.max_payload_bytes = settings.mqtt_max_payload_bytes
        self.directory = directory
        self.ingest = ingest
        self.identifier = identifier
        self.qos = qos
        self.drain_max = drain_max
        self.queue_max = queue_max
        self.ready = asyncio.Event()
        self.stats = SubscriberStats()
        self._rlog = RateLimitedLog(log)  # event loop side
        self._conn_log = RateLimitedLog(log)  # reader thread side
        self._prefix_b = (self.prefix + "/").encode()
        self._version = 5  # falls back to 4 (3.1.1) when the broker refuses 5
        self._queue: deque[Received] = deque()
        self._room = threading.Event()  # set while the queue has room
        self._room.set()
        self._stop = threading.Event()
        self._wake = asyncio.Event()
        self._wake_pending = False
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._consumer: asyncio.Task[None] | None = None

    @property
    def topics(self) -> list[str]:
        share = f"$share/{SHARE_GROUP}/" if self.shared else ""
        return [f"{share}{self.prefix}/+/telemetry", f"{share}{self.prefix}/+/attributes"]

    async def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._closing = False
        self._consumer = asyncio.create_task(self._consume(), name="mqtt-external-ingest")
        self._thread = threading.Thread(target=self._read_forever, name="yugong-mqtt-in")
        self._thread.daemon = True
        self._thread.start()

    async def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop.set()
            self._room.set()
            await asyncio.to_thread(thread.join)
        self.ready.clear()
        if self._consumer is not None:
            self._closing = True  # ingest what was read, then end
            self._wake.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
            self._consumer = None

    # Reader thread -----------------------------------------------------------------------

    def _call(self, fn: Callable[[], object]) -> None:
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(fn)

    def _read_forever(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            subscribed = False
            try:
                for _ in self._session():
                    subscribed = True
                    backoff = 0.5
            except (OSError, MqttProtocolError) as exc:
                if self._stop.is_set():
                    break
                self._call(self.ready.clear)
                self.stats.disconnects += 1
                a = self.address
                what = "connection lost" if subscribed else "unavailable"
                self._conn_log.warning(
                    "conn",
                    f"MQTT broker {a.host}:{a.port} {what} ({exc or type(exc).__name__}); "
                    f"retrying in {backoff:.1f} s",
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            except Exception:
                log.exception("MQTT reader failed; reconnecting")
                self._call(self.ready.clear)
                self.stats.disconnects += 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    def _open(self) -> socket.socket:
        a = self.address
        sock = socket.create_connection((a.host, a.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if a.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=a.host)
        return sock

    def _session(self) -> Iterator[None]:
        """One connection: yields once subscribed, returns on stop, raises when lost."""
        a = self.address
        sock = self._open()
        try:
            client_id = self.identifier or f"yugong-ingest-{uuid.uuid4().hex[:12]}"
            v = self._version
            sock.sendall(
                connect_packet(
                    client_id,
                    clean=self.identifier is None,
                    keepalive=KEEPALIVE_S,
                    username=a.username,
                    password=a.password,
                    version=v,
                    session_expiry_s=0 if self.identifier is None else SESSION_EXPIRY_S,
                )
            )
            sock.settimeout(POLL_S)
            pending = b""
            last_in = last_out = opened = time.monotonic()
            answered = False
            while not self._stop.is_set():
                try:
                    chunk = sock.recv(READ_BYTES)
                except TimeoutError:
                    chunk = None
                now = time.monotonic()
                if chunk is not None:
                    if not chunk:
                        raise ConnectionError("the broker closed the connection")
                    last_in = now
                    data = pending + chunk if pending else chunk
                    got: list[Received] = []
                    acks = bytearray()
                    used, control = split_packets(data, time.time_ns() // 1000, got, acks, v)
                    pending = data[used:]
                    if got:
                        self.stats.received += len(got)
                        self._queue.extend(got)
                        self._notify()
                    if acks:
                        sock.sendall(acks)  # after the hand-over: see the module notes
                        last_out = now
                    for kind, body in control:
                        if kind == 2:  # CONNACK
                            answered = True
                            code = body[1] if len(body) > 1 else -1
                            if code in (1, 0x84) and v == 5:
                                self._version = 4  # a 3.1.1 broker: ask again in 3.1.1
                                raise MqttProtocolError("the broker does not speak MQTT 5")
                            if code:
                                raise MqttProtocolError(f"connection refused: {_why(code)}")
                            sock.sendall(subscribe_packet(1, self.topics, self.qos, v))
                            last_out = now
                        elif kind == 9:  # SUBACK
                            codes = body[_skip_properties(body, 2) if v == 5 else 2 :]
                            if any(c >= 0x80 for c in codes):
                                code = next(c for c in codes if c >= 0x80)
                                raise MqttProtocolError(
                                    f"subscription refused: {_why(code)} (check the broker's "
                                    f"ACL for {', '.join(self.topics)})"
                                )
                            self.stats.connects += 1
                            self._call(self.ready.set)
                            log.info(
                                "subscribed to %s on %s:%d (MQTT %s, QoS %d)",
                                ", ".join(self.topics),
                                a.host,
                                a.port,
                                _name(v),
                                self.qos,
                            )
                            yield
                        elif kind == 14:  # DISCONNECT from the broker (MQTT 5)
                            code = body[0] if body else 0
                            raise ConnectionError(f"the broker disconnected us: {_why(code)}")
                if not answered and now - opened > CONNACK_TIMEOUT_S:
                    raise TimeoutError(f"no answer to CONNECT (MQTT {_name(v)})")
                if now - last_in > KEEPALIVE_S * 1.5:
                    raise TimeoutError(f"no answer from the broker for {now - last_in:.0f} s")
                if now - last_out > KEEPALIVE_S / 2:
                    sock.sendall(PINGREQ)
                    last_out = now
                if len(self._queue) >= self.queue_max:
                    self._wait_for_room()
            with contextlib.suppress(OSError):
                sock.sendall(DISCONNECT)
        finally:
            sock.close()
            if not answered and v == self._version:
                # Some brokers drop or ignore an MQTT 5 CONNECT they do not understand:
                # alternate versions until one is answered, then keep it.
                self._version = 4 if v == 5 else 5

    def _wait_for_room(self) -> None:
        """Ingest is far behind: stop reading (the broker holds the backlog) until it
        catches up to half the queue."""
        self._room.clear()
        if len(self._queue) < self.queue_max // 2:
            self._room.set()
            return
        self._conn_log.warning(
            "behind", f"MQTT ingest is {len(self._queue)} messages behind; pausing reads"
        )
        while not self._stop.is_set() and not self._room.wait(POLL_S):
            pass

    def _notify(self) -> None:
        # One wake-up per chunk at most, and none while one is already on its way.
        if not self._wake_pending:
            self._wake_pending = True
            self._call(self._wake_up)

    def _wake_up(self) -> None:
        self._wake_pending = False
        self._wake.set()

    # Event loop side ---------------------------------------------------------------------

    async def _consume(self) -> None:
        q = self._queue
        while True:
            await self._wake.wait()
            self._wake.clear()
            while q:
                n = min(len(q), self.drain_max)
                batch = [q.popleft() for _ in range(n)]
                await self.handle(batch)
                if len(q) < self.queue_max // 2:
                    self._room.set()
                await asyncio.sleep(0)  # let the rest of the loop run between drains
            if self._closing:
                return

    async def handle(self, batch: list[Received]) -> None:
        """One drain: resolve each message's device from its topic, then ingest them all."""
        items: list[Message] = []
        received: list[int] = []
        devices: dict[bytes, DeviceBinding | None] = {}
        prefix = self._prefix_b
        for topic, payload, at in batch:
            device_id, _, kind_b = topic[len(prefix) :].partition(b"/")
            kind = "telemetry" if kind_b == b"telemetry" else "attributes"
            if (
                not topic.startswith(prefix)
                or kind_b not in (b"telemetry", b"attributes")
                or not device_id.isdigit()
            ):
                self._reject("bad_topic", f"unexpected topic {topic.decode(errors='replace')!r}")
                continue
            if device_id in devices:
                device = devices[device_id]
            else:
                device = devices[device_id] = self.directory.by_id(int(device_id))
            if device is None:
                self._reject("unknown_device", f"message for unknown device id {int(device_id)}")
                continue
            if len(payload) > self.max_payload_bytes:
                self.ingest.count_rejected(device.tenant, "too_large")
                self._reject(
                    "too_large",
                    f"device {device.device}: {len(payload)} bytes, at most "
                    f"{self.max_payload_bytes} accepted",
                )
                continue
            items.append((device, payload, kind))
            received.append(at)
        if not items:
            return
        try:
            outcome = await self.ingest.ingest_messages(items, received)
        except Exception:
            self.stats.rejected["error"] = self.stats.rejected.get("error", 0) + len(items)
            log.exception("ingest of %d MQTT messages failed", len(items))
            return
        self.stats.messages += outcome.accepted
        for i, exc in outcome.rejected:
            device = items[i][0]
            self._reject(_reason(exc), f"device '{device.name}' (id {device.device}): {exc.detail}")

    def _reject(self, reason: str, detail: str) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        self._rlog.warning(reason, f"MQTT message rejected: {detail}")


def _reason(exc: YugongError) -> str:
    return str(getattr(exc, "reason", type(exc).__name__))


__all__ = ["BrokerAddress", "ExternalBrokerIngest", "MqttProtocolError", "SubscriberStats"]
