"""The embedded MQTT broker (amqtt) speaking ThingsBoard's device API.

A device connects with one of its credentials: its access token as the MQTT username (the
password is then ignored, as ThingsBoard does), its MQTT username and password (argon2;
a verified pair is remembered briefly so a reconnect storm does not burn CPU), or, over
TLS, the client certificate bound to it (found by the SHA-256 of its DER; an expired one is
refused). Anonymous clients, unknown credentials, wrong passwords, refused certificates and
devices or addresses under an active block are refused, each recorded as a security event
with the client's address. With TLS files configured the broker also listens for MQTT over
TLS (TLS 1.2+) on ``mqtt_tls_port``; the plain port stays open only with ``mqtt_plain``.

A device may publish only to
``v1/devices/me/telemetry`` and ``v1/devices/me/attributes`` (and its answers to server-side
RPC on ``v1/devices/me/rpc/response/{id}``, handed to the command service) and subscribe
only to the topics ThingsBoard SDKs subscribe to at connect. RPC requests go to the one
device's sessions (:meth:`EmbeddedBroker.send_to_device`), never fanned out. Devices never
receive each other's messages: ``v1/devices/me/...`` names a different device for every
client, so anything the platform sends a device goes to that client's session alone.

amqtt speaks MQTT 3.1.1 only and listens on a loopback port; :class:`~yugong.infra.mqtt5.
MqttFront` owns the public address and speaks MQTT 5 and 3.1.1 to devices.

Sparkplug B 3.0, in-process: a gateway device may publish its edge node's births, data and
deaths (``spBv1.0/{group}/N*/{name}``, ``spBv1.0/{group}/D*/{name}/{device}``, its will too)
where ``{name}`` is its own device name; the gate hands them straight to the platform's
Sparkplug host with the gateway's tenant. It may subscribe to (and receive) the hosts' STATE
and its own NCMD/DCMD only; the host's STATE and commands are published into the broker
(:meth:`EmbeddedBroker.publish`). A device's will on a topic it may not publish is dropped at
connect.

Every refused publish or subscribe (and a gateway speaking for a device that is not behind
it) is an ``acl_violation`` security event naming the device and topic. MQTT 5 clients get
reason code 0x87 (not authorized) in PUBACK/PUBREC and 0x80 in SUBACK; 3.1.1 clients get
0x80 in SUBACK and their refused messages are dropped. More than ``malformed_flood_per_min`` refused
payloads a minute from one device is a ``malformed_flood`` event.

Three amqtt plugins share one :class:`DeviceGate`: authentication, topic checking and a
packet hook that hands each PUBLISH to ingest. The hand-off happens when amqtt's reader
parses the packet, before it acknowledges it, in a task of its own that a disconnect does
not cancel (amqtt's later "message broadcast" event is skipped for messages still queued
when the client leaves, which lost acknowledged QoS 1 messages). Validation and the
writer's backpressure never stall the broker's read loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import socket
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext, BrokerConfig, ListenerConfig, ListenerType
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.packet import MQTTPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.publish import PublishPacket
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin, BaseTopicPlugin
from amqtt.session import Session
from cryptography import x509

from yugong.core.errors import YugongError
from yugong.core.ratelog import RateLimitedLog
from yugong.core.settings import Settings
from yugong.core.timeutil import now_us
from yugong.infra.mqtt5 import MqttFront

log = logging.getLogger(__name__)

TELEMETRY_TOPIC = "v1/devices/me/telemetry"
ATTRIBUTES_TOPIC = "v1/devices/me/attributes"
PUBLISH_TOPICS = frozenset({TELEMETRY_TOPIC, ATTRIBUTES_TOPIC})
# A device's answer to a server-side RPC: the request id is the last level.
RPC_RESPONSE_PREFIX = "v1/devices/me/rpc/response/"
SUBSCRIBE_TOPICS = frozenset(
    {
        ATTRIBUTES_TOPIC,
        "v1/devices/me/attributes/response/+",
        "v1/devices/me/rpc/request/+",
        "v1/devices/me/rpc/response/+",
    }
)


class Device(Protocol):
    """What the broker needs of a device binding."""

    @property
    def tenant(self) -> int: ...

    @property
    def device(self) -> int: ...

    @property
    def name(self) -> str: ...


class TokenDirectory(Protocol):
    def by_token(self, token: str) -> Any: ...

    # Also used when present: by_username(username), by_fingerprint(sha256 hex), by_id(id).


class EventSink(Protocol):
    """Security events (``yugong.security.events.SecurityEvents``)."""

    @property
    def record(self) -> Callable[..., int]:
        """``record(kind, severity, *, tenant_id, source_ip, subject, device_id, detail)``"""


class PasswordVerifier(Protocol):
    def verify(self, stored_hash: str | None, password: str) -> bool: ...


Blocked = Callable[[str, str], object]  # (kind "device" | "ip", value) -> truthy: blocked now
VERIFIED_TTL_S = 60.0  # a verified MQTT password is trusted this long without argon2
_MINUTE = 60.0
# Refusals that say nothing about the payload's shape: not counted towards a flood.
_NOT_MALFORMED = frozenset(
    {
        "rate_limited",
        "storage_full",
        "not_child",
        "not_gateway",
        "unknown_device",
        "unknown_product",
    }
)


class Ingest(Protocol):
    """The ingest service, as far as the broker uses it."""

    def ingest_telemetry(self, device: Any, payload: bytes) -> Awaitable[Any]: ...

    def ingest_attributes(self, device: Any, payload: bytes) -> Awaitable[Any]: ...

    def count_rejected(self, tenant: int, reason: str) -> None: ...


class GatewayHandler(Protocol):
    """The ThingsBoard gateway API, as far as the broker uses it."""

    def handle(self, gateway: Any, topic: str, payload: bytes) -> Awaitable[Any]: ...


class SparkplugHandler(Protocol):
    """The platform's Sparkplug host, as far as the broker uses it."""

    def handle(
        self, topic: str, payload: bytes, received_us: int | None = None, *, tenant: int | None
    ) -> Awaitable[Any]: ...


SPARKPLUG = "spBv1.0"
_NODE_PUBLISH = frozenset({"NBIRTH", "NDATA", "NDEATH"})
_DEVICE_PUBLISH = frozenset({"DBIRTH", "DDATA", "DDEATH"})


def _literal(level: str) -> bool:
    return bool(level) and "+" not in level and "#" not in level


def sparkplug_allowed(name: str, topic: str, action: Action | None) -> bool:
    """May the gateway device ``name`` use the Sparkplug ``topic``? It publishes only as the
    edge node of its own name; it subscribes to / receives STATE and its own commands."""
    parts = topic.split("/")
    if len(parts) < 3 or parts[0] != SPARKPLUG:
        return False
    if action == Action.PUBLISH:
        if not all(_literal(p) for p in parts):
            return False
        if len(parts) == 4 and parts[2] in _NODE_PUBLISH:
            return parts[3] == name
        return len(parts) == 5 and parts[2] in _DEVICE_PUBLISH and parts[3] == name
    if action not in (Action.SUBSCRIBE, Action.RECEIVE):
        return False
    last = parts[-1]
    last_ok = _literal(last) or (action == Action.SUBSCRIBE and last == "+")
    if len(parts) == 3:
        return parts[1] == "STATE" and last_ok
    if parts[2] == "STATE" or not _literal(parts[1]):
        return False
    if len(parts) == 4:
        return parts[2] == "NCMD" and parts[3] == name
    return len(parts) == 5 and parts[2] == "DCMD" and parts[3] == name and last_ok


GATEWAY_PUBLISH_TOPICS = frozenset(
    f"v1/gateway/{t}" for t in ("connect", "disconnect", "telemetry", "attributes")
)
GATEWAY_SUBSCRIBE_TOPICS = frozenset(
    f"v1/gateway/{t}" for t in ("attributes", "attributes/response", "rpc")
)


@dataclass
class BrokerStats:
    connections: int = 0  # accepted
    refused_connections: dict[str, int] = field(default_factory=dict)  # reason -> count
    refused_topics: int = 0  # publishes / subscribes outside the device API
    refused_identity: int = 0  # Sparkplug publishes as an edge node other than the gateway
    acl_violations: int = 0  # refused publishes / subscribes / gateway acts, all recorded
    malformed_floods: int = 0  # devices over malformed_flood_per_min in a minute
    sparkplug_messages: int = 0  # handed to the Sparkplug host
    messages: int = 0  # publishes handed to ingest
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> messages refused
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> connections closed
    protocol_levels: dict[int, int] = field(default_factory=dict)  # 4 = 3.1.1, 5 = MQTT 5


class DeviceGate:
    """State the broker plugins share: client id -> device, counters, ingest."""

    def __init__(
        self,
        directory: TokenDirectory,
        ingest: Ingest,
        *,
        max_payload_bytes: int,
        gateway: GatewayHandler | None = None,
        sparkplug: SparkplugHandler | None = None,
        events: EventSink | None = None,
        blocked: Blocked | None = None,
        passwords: PasswordVerifier | None = None,
        malformed_flood_per_min: int = 100,
    ) -> None:
        self.directory = directory
        self.ingest = ingest
        self.gateway = gateway
        self.sparkplug = sparkplug
        self.events = events
        self.blocked = blocked
        self._passwords = passwords
        self.max_payload_bytes = max_payload_bytes
        self.malformed_flood_per_min = malformed_flood_per_min
        self.devices: dict[str, Device] = {}
        # (device id, request id, payload): a device's RPC answer, for the command service
        self.rpc_response: Callable[[int, str, bytes], None] | None = None
        self.stats = BrokerStats()
        self.rlog = RateLimitedLog(log)
        # amqtt sees the front's loopback hop: its local port -> the client's address, and
        # the DER of the certificate a TLS client presented
        self.peers: dict[int, str] = {}
        self.certs: dict[int, bytes] = {}
        self._port_device: dict[int, Device] = {}  # local port -> authenticated device
        self._order: dict[str, asyncio.Lock] = {}  # client id -> its messages, one at a time
        # (local port, MQTT 5 reason) -> closed?: set by the broker, for rate limits
        self.kick: Callable[[int, int], bool] | None = None
        # username -> (stored hash, keyed digest of the password that verified, expiry)
        self._verified: dict[str, tuple[str, bytes, float]] = {}
        self._verified_key = secrets.token_bytes(32)
        self._malformed: dict[int, tuple[float, int]] = {}  # device -> (window start, count)
        self._event_sent: dict[tuple[Any, ...], float] = {}
        self._event_lock = threading.Lock()

    @property
    def passwords(self) -> PasswordVerifier:
        if self._passwords is None:
            from yugong.security.passwords import Passwords

            self._passwords = Passwords()
        return self._passwords

    def peer(self, session: Session) -> str:
        real = self.peers.get(session.remote_port or 0)
        return real or f"{session.remote_address}:{session.remote_port}"

    def dropped(self, reason: str, peer: str, detail: str) -> None:
        """The front closed a connection before the broker saw the bad bytes (or the TLS
        handshake failed)."""
        self._count(self.stats.dropped, reason)
        self.rlog.warning(f"drop:{reason}", f"MQTT connection from {peer} closed: {detail}")
        if reason == "bad_certificate":
            # No certificate to name (the handshake failed): the refusal names the case,
            # so an expired certificate and a foreign CA are told apart, not folded together.
            self.event(
                "bad_certificate",
                source_ip=_ip(peer),
                subject=f"tls: {detail}"[:128],
                detail={"channel": "mqtt", "reason": detail},
            )

    def _count(self, table: dict[str, int], reason: str) -> None:
        table[reason] = table.get(reason, 0) + 1

    def event(self, kind: str, severity: str = "warning", **kw: Any) -> None:
        """Record a security event off the event loop; the same (kind, subject, source,
        device) at most once a second (the stats count every occurrence)."""
        if self.events is None:
            return
        key = (kind, kw.get("subject"), kw.get("source_ip"), kw.get("device_id"))
        now = time.monotonic()
        with self._event_lock:
            if now - self._event_sent.get(key, float("-inf")) < 1.0:
                return
            if len(self._event_sent) > 10_000:
                self._event_sent.clear()
            self._event_sent[key] = now
        record = self.events.record
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            record(kind, severity, **kw)  # a worker thread already
            return
        with suppress(RuntimeError):  # the loop's executor is gone while shutting down
            loop.run_in_executor(None, lambda: record(kind, severity, **kw))

    async def authenticate(self, session: Session) -> bool:
        client = session.client_id or ""
        peer = self.peer(session)
        port = session.remote_port or 0
        # The directory may read the database and argon2 is slow: keep both off the loop.
        device, reason = await asyncio.to_thread(
            self._identify, self.certs.get(port), session.username, session.password, peer
        )
        if device is None:
            self._count(self.stats.refused_connections, reason)
            self.devices.pop(client, None)
            return False
        self.devices[client] = device
        self._port_device[port] = device
        session.yugong_device = device.device  # the identity for device_of() after a takeover
        self.stats.connections += 1
        if session.will_flag and not self.allowed(session, session.will_topic, Action.PUBLISH):
            # The broker would publish it unchecked (e.g. a forged STATE): drop it.
            session.will_flag = False
        return True

    def _identify(
        self, cert: bytes | None, username: str | None, password: str | None, peer: str
    ) -> tuple[Device | None, str]:
        """The device behind the credentials, or None and why (recorded as an event)."""
        ip = _ip(peer)
        device: Device | None = None
        if cert:
            device, reason = self._by_certificate(cert, ip)
            if device is None and not username:
                return None, reason
        if device is None:
            if not username:
                self._refuse("anonymous", "unknown_device", ip, "no credentials", peer)
                return None, "anonymous"
            device, reason = self._by_username(username, password, ip, peer)
            if device is None:
                return None, reason
        if self.blocked is not None and (
            self.blocked("device", str(device.device)) or self.blocked("ip", ip)
        ):
            self.rlog.warning(
                f"blocked:{device.device}",
                f"MQTT connection from {peer} refused: device '{device.name}' "
                f"(id {device.device}) or its address is blocked",
            )
            self.event(
                "blocked",
                "info",
                tenant_id=device.tenant,
                source_ip=ip,
                subject=device.name,
                device_id=device.device,
                detail={"channel": "mqtt"},
            )
            return None, "blocked"
        return device, "ok"

    def _by_certificate(self, der: bytes, ip: str) -> tuple[Device | None, str]:
        fingerprint = hashlib.sha256(der).hexdigest()
        by_fingerprint = getattr(self.directory, "by_fingerprint", None)
        device = by_fingerprint(fingerprint) if by_fingerprint is not None else None
        if device is None:
            self._refuse(
                "unknown_certificate",
                "bad_certificate",
                ip,
                f"client certificate {fingerprint[:16]}... is bound to no device",
                ip,
                subject=fingerprint,
            )
            return None, "unknown_certificate"
        not_after = _not_after(der)
        if not_after is None or not_after <= datetime.now(UTC):
            self._refuse(
                "expired_certificate",
                "bad_certificate",
                ip,
                f"client certificate of device '{device.name}' expired at {not_after}",
                ip,
                subject=fingerprint,
                device=device,
            )
            return None, "expired_certificate"
        return device, "ok"

    def _by_username(
        self, username: str, password: str | None, ip: str, peer: str
    ) -> tuple[Device | None, str]:
        # Directories without MQTT usernames (test doubles, older ones) know only tokens.
        by_username = getattr(self.directory, "by_username", None)
        device = by_username(username) if by_username is not None else None
        if device is not None:
            stored = getattr(device, "mqtt_password_hash", None)
            if password is not None and stored and self._password_ok(username, stored, password):
                return device, "ok"
            self._refuse(
                "bad_password",
                "bad_credentials",
                ip,
                f"wrong password for MQTT username '{username}'",
                peer,
                subject=username,
                device=device,
            )
            return None, "bad_password"
        device = self.directory.by_token(username)
        if device is None:
            # The username may be a mistyped token: store a digest, never the text.
            digest = hashlib.sha256(username.encode()).hexdigest()[:16]
            self._refuse(
                "unknown_token",
                "unknown_device",
                ip,
                "unknown access token",  # nor an MQTT username
                peer,
                detail={"credential_sha256": digest},
            )
            return None, "unknown_token"
        return device, "ok"

    def _password_ok(self, username: str, stored: str, password: str) -> bool:
        digest = hmac.new(self._verified_key, password.encode(), "sha256").digest()
        now = time.monotonic()
        seen = self._verified.get(username)
        if (
            seen is not None
            and seen[0] == stored
            and seen[2] > now
            and hmac.compare_digest(seen[1], digest)
        ):
            return True
        if not self.passwords.verify(stored, password):
            return False
        if len(self._verified) > 10_000:
            self._verified.clear()
        self._verified[username] = (stored, digest, now + VERIFIED_TTL_S)
        return True

    def _refuse(
        self,
        reason: str,
        kind: str,
        ip: str,
        why: str,
        peer: str,
        *,
        subject: str | None = None,
        device: Device | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.rlog.warning(f"refused:{reason}", f"MQTT connection from {peer} refused: {why}")
        self.event(
            kind,
            tenant_id=device.tenant if device is not None else None,
            source_ip=ip,
            subject=subject if subject is not None else (device.name if device else None),
            device_id=device.device if device is not None else None,
            detail={"channel": "mqtt", "reason": reason, **(detail or {})},
        )

    def device_of(self, session: Session | None) -> Device | None:
        if session is None or not session.client_id:
            return None
        device = self.devices.get(session.client_id)
        if device is None:
            # A session taken over by a reconnect may have lost its entry: the device it
            # authenticated as is still its identity.
            known = getattr(session, "yugong_device", None)
            by_id = getattr(self.directory, "by_id", None)
            if isinstance(known, int) and by_id is not None:
                device = by_id(known)
            elif session.username:
                device = self.directory.by_token(session.username)
            if device is not None:
                self.devices[session.client_id] = device
        return device

    def allowed(self, session: Session | None, topic: str | None, action: Action | None) -> bool:
        device = self.device_of(session)
        if device is None or topic is None:
            return False
        return self.check(device, topic, action, self.peer(session) if session else "?")

    def may_publish(self, port: int, topic: str) -> bool:
        """The front's question for an MQTT 5 client's PUBLISH (by its local port towards
        amqtt); an unknown connection is left to amqtt."""
        device = self._port_device.get(port)
        if device is None:
            return True
        return self.check(device, topic, Action.PUBLISH, self.peers.get(port, "?"))

    def check(self, device: Device, topic: str, action: Action | None, peer: str) -> bool:
        """May ``device`` do ``action`` on ``topic``? A refusal is an ACL violation."""
        gateway = self.gateway is not None and getattr(device, "is_gateway", False)
        if topic.startswith(SPARKPLUG + "/"):
            return self._sparkplug_allowed(device, topic, action, peer)
        if action == Action.PUBLISH:
            ok = topic in PUBLISH_TOPICS or (gateway and topic in GATEWAY_PUBLISH_TOPICS)
            ok = ok or _rpc_response_id(topic) is not None
        elif action == Action.SUBSCRIBE:
            ok = topic in SUBSCRIBE_TOPICS or (gateway and topic in GATEWAY_SUBSCRIBE_TOPICS)
        else:  # RECEIVE: nothing fans out between devices
            return False
        if not ok:
            self.stats.refused_topics += 1
            self.violation(
                device,
                topic,
                str(action),
                peer,
                f"device '{device.name}' (id {device.device}) may not {action} '{topic}'",
            )
        return ok

    def violation(self, device: Device, topic: str, action: str, peer: str, why: str) -> None:
        self.stats.acl_violations += 1
        self.rlog.warning(f"topic:{device.device}", why)
        self.event(
            "acl_violation",
            tenant_id=device.tenant,
            source_ip=_ip(peer),
            subject=topic[:128],  # repeats on one topic fold; each topic is its own event
            device_id=device.device,
            detail={"topic": topic[:256], "action": action, "reason": why[:512]},
        )

    def _sparkplug_allowed(
        self, device: Device, topic: str, action: Action | None, peer: str
    ) -> bool:
        if self.sparkplug is not None and getattr(device, "is_gateway", False):
            if sparkplug_allowed(device.name, topic, action):
                return True
            parts = topic.split("/")
            if action == Action.PUBLISH and len(parts) in (4, 5) and parts[3] != device.name:
                self.stats.refused_identity += 1
                self.violation(
                    device,
                    topic,
                    str(action),
                    peer,
                    f"gateway '{device.name}' (id {device.device}) may not publish as Sparkplug "
                    f"edge node '{parts[3]}': the edge node id must be the gateway's name",
                )
                return False
        if action == Action.RECEIVE:
            return False  # nothing else fans out: not worth a log line
        self.stats.refused_topics += 1
        self.violation(
            device,
            topic,
            str(action),
            peer,
            f"device '{device.name}' (id {device.device}) may not {action} '{topic}'",
        )
        return False

    async def on_publish(self, session: Session | None, topic: str, data: bytes) -> None:
        sparkplug = topic.startswith(SPARKPLUG + "/")
        rpc = _rpc_response_id(topic) is not None
        if (
            topic not in PUBLISH_TOPICS
            and topic not in GATEWAY_PUBLISH_TOPICS
            and not sparkplug
            and not rpc
        ):
            return  # refused (and counted) by the topic plugin
        received_us = now_us()  # before waiting for the client's earlier messages
        # amqtt runs each packet's hook as a task of its own: one client's messages are
        # handled in the order they arrived (a gateway's connect before its telemetry).
        key = session.client_id if session is not None else None
        if not key:
            await self._handle(session, topic, data, received_us)
            return
        lock = self._order.setdefault(key, asyncio.Lock())
        async with lock:
            await self._handle(session, topic, data, received_us)

    async def on_will(self, session: Session, topic: str, data: bytes) -> None:
        """A client left without DISCONNECT: its Sparkplug will (NDEATH) is data for the host;
        it follows the client's earlier messages."""
        if topic.startswith(SPARKPLUG + "/"):
            await self.on_publish(session, topic, data)

    async def _handle(
        self, session: Session | None, topic: str, data: bytes, received_us: int
    ) -> None:
        device = self.device_of(session)
        if device is None:
            return
        if len(data) > self.max_payload_bytes:
            self._reject(
                device, "too_large", f"{len(data)} bytes, at most {self.max_payload_bytes} accepted"
            )
            self.ingest.count_rejected(device.tenant, "too_large")
            return
        try:
            if topic == TELEMETRY_TOPIC:
                await self.ingest.ingest_telemetry(device, data)
            elif topic == ATTRIBUTES_TOPIC:
                await self.ingest.ingest_attributes(device, data)
            elif topic.startswith(SPARKPLUG + "/"):
                if self.sparkplug is None or not getattr(device, "is_gateway", False):
                    return
                if not sparkplug_allowed(device.name, topic, Action.PUBLISH):
                    return  # refused (and counted) by the topic plugin
                await self.sparkplug.handle(topic, data, received_us, tenant=device.tenant)
                self.stats.sparkplug_messages += 1
            elif (request_id := _rpc_response_id(topic)) is not None:
                if self.rpc_response is not None:
                    self.rpc_response(device.device, request_id, data)
            elif self.gateway is not None and getattr(device, "is_gateway", False):
                await self.gateway.handle(device, topic, data)
            else:
                return  # a non-gateway's gateway topic: refused by the topic plugin
            self.stats.messages += 1
        except YugongError as exc:  # counted per tenant by the service
            reason = str(getattr(exc, "reason", type(exc).__name__))
            self._reject(device, reason, exc.detail)
            if getattr(exc, "disconnect", False):  # persistently over its rate limit
                self.disconnect(session, device, exc.detail)
            if reason == "not_child":  # a gateway speaking for a device not behind it
                self.violation(device, topic, "publish", self.peer(session), exc.detail)
        except Exception:
            self._count(self.stats.rejected, "error")
            log.exception("ingest of an MQTT message from device %s failed", device.device)

    def disconnect(self, session: Session | None, device: Device, detail: str) -> None:
        """Close a device's connection: MQTT 5 clients get DISCONNECT 0x96 "Message rate
        too high" first, 3.1.1 clients a plain close."""
        if self.kick is None or session is None:
            return
        if self.kick(session.remote_port or 0, 0x96):
            self._count(self.stats.dropped, "rate_limited")
            self.rlog.warning(
                f"kick:{device.device}",
                f"device '{device.name}' (id {device.device}) disconnected: {detail}",
            )

    def _reject(self, device: Device, reason: str, detail: str) -> None:
        self._count(self.stats.rejected, reason)
        self.rlog.warning(
            f"{device.device}:{reason}",
            f"MQTT message from device '{device.name}' (id {device.device}) rejected: {detail}",
        )
        if reason not in _NOT_MALFORMED:
            self._count_malformed(device)

    def _count_malformed(self, device: Device) -> None:
        """One more refused payload; the one that crosses the limit within a minute is a
        malformed_flood event (once per minute and device)."""
        now = time.monotonic()
        start, n = self._malformed.get(device.device, (now, 0))
        if now - start >= _MINUTE:
            start, n = now, 0
        n += 1
        self._malformed[device.device] = (start, n)
        if n == self.malformed_flood_per_min + 1:
            self.stats.malformed_floods += 1
            self.event(
                "malformed_flood",
                tenant_id=device.tenant,
                subject=device.name,
                device_id=device.device,
                detail={"per_minute_limit": self.malformed_flood_per_min, "channel": "mqtt"},
            )

    def forget(self, session: Session | None) -> None:
        # A takeover may race with this; device_of() recovers from the session's token.
        if session is not None:
            self._port_device.pop(session.remote_port or 0, None)
        if session is not None and session.client_id:
            self.devices.pop(session.client_id, None)
            lock = self._order.get(session.client_id)
            if lock is not None and not lock.locked():
                del self._order[session.client_id]


def _gate(context: BaseContext) -> DeviceGate:
    gate = getattr(context.config, "gate", None)
    if not isinstance(gate, DeviceGate):
        raise TypeError("Yugong broker plugins need a DeviceGate in their config ('gate')")
    return gate


class DeviceAuthPlugin(BaseAuthPlugin):
    @dataclass
    class Config:
        gate: Any = None

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.gate = _gate(context)

    async def authenticate(self, *, session: Session) -> bool | None:
        return await self.gate.authenticate(session)


class DeviceTopicPlugin(BaseTopicPlugin):
    @dataclass
    class Config:
        gate: Any = None

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.gate = _gate(context)

    async def topic_filtering(
        self,
        *,
        session: Session | None = None,
        topic: str | None = None,
        action: Action | None = None,
    ) -> bool | None:
        return self.gate.allowed(session, topic, action)


class IngestPlugin(BasePlugin[BaseContext]):
    @dataclass
    class Config:
        gate: Any = None

    def __init__(self, context: BaseContext) -> None:
        super().__init__(context)
        self.gate = _gate(context)

    async def on_mqtt_packet_received(
        self, *, packet: MQTTPacket[Any, Any, Any], session: Session | None = None
    ) -> None:
        # Fired by the connection's reader for every packet, before the PUBLISH is handled
        # (and acknowledged); runs as its own task, which the client leaving never cancels.
        if not isinstance(packet, PublishPacket) or session is None:
            return
        topic = packet.topic_name
        if topic is None:
            return
        if packet.qos == 2 and packet.dup_flag and packet.packet_id in session.inflight_in:
            return  # a QoS 2 retransmission already handed over
        await self.gate.on_publish(session, topic, bytes(packet.data or b""))

    async def on_broker_client_disconnected(
        self, *, client_id: str, client_session: Session
    ) -> None:
        self.gate.forget(client_session)


class _Broker(Broker):
    """amqtt's broker, handing a client's will to the gate when it leaves without DISCONNECT
    (amqtt publishes wills without the packet hook)."""

    def __init__(self, config: BrokerConfig, gate: DeviceGate) -> None:
        super().__init__(config)
        self.gate = gate

    async def _handle_disconnect(
        self,
        client_session: Session,
        handler: BrokerProtocolHandler,
        disconnect_waiter: asyncio.Future[Any],
    ) -> None:
        result = None
        if disconnect_waiter.done() and not disconnect_waiter.cancelled():
            result = disconnect_waiter.exception() or disconnect_waiter.result()
        topic, message = client_session.will_topic, client_session.will_message
        abrupt = not isinstance(result, DisconnectPacket)
        if abrupt and client_session.will_flag and topic and message is not None:
            try:
                await self.gate.on_will(client_session, topic, bytes(message))
            except Exception:
                log.exception("the will of MQTT client %s failed", client_session.client_id)
        await super()._handle_disconnect(client_session, handler, disconnect_waiter)


class EmbeddedBroker:
    """``await start()`` listens on ``settings.mqtt_host:mqtt_port`` and, with TLS files
    configured, on ``mqtt_tls_port`` with TLS (then the plain port only with
    ``mqtt_plain``); ``await stop()``.

    amqtt runs on a free loopback port behind :class:`MqttFront`, which owns the public
    addresses and speaks MQTT 5 as well as 3.1.1."""

    def __init__(
        self,
        settings: Settings,
        directory: TokenDirectory,
        ingest: Ingest,
        *,
        gateway: GatewayHandler | None = None,
        events: EventSink | None = None,
        blocked: Blocked | None = None,
        passwords: PasswordVerifier | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = settings.mqtt_host
        self.port = settings.mqtt_port
        self.tls_port = settings.mqtt_tls_port
        if ssl_context is None:
            from yugong.security.pki import server_ssl_context, tls_files

            tls = tls_files(settings)
            if tls is not None:
                ssl_context = server_ssl_context(tls.cert_file, tls.key_file, tls.ca_file)
        self.ssl_context = ssl_context
        self.plain = ssl_context is None or settings.mqtt_plain
        self.gate = DeviceGate(
            directory,
            ingest,
            max_payload_bytes=settings.mqtt_max_payload_bytes,
            gateway=gateway,
            events=events,
            blocked=blocked,
            passwords=passwords,
            malformed_flood_per_min=settings.malformed_flood_per_min,
        )
        self.internal_port = 0
        self._broker: Broker | None = None
        self._fronts: list[MqttFront] = []
        self.gate.kick = self._kick
        self._outbox: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None
        self._direct: set[asyncio.Future[Any]] = set()  # publishes to one device's session

    def attach_sparkplug(self, host: SparkplugHandler) -> None:
        """Hand gateway devices' Sparkplug messages to ``host`` (before ``start()``)."""
        self.gate.sparkplug = host

    def attach_rpc(self, handler: Callable[[int, str, bytes], None]) -> None:
        """Hand devices' answers on ``v1/devices/me/rpc/response/{id}`` to ``handler``."""
        self.gate.rpc_response = handler

    def _device_sessions(self, device: int, topic: str) -> list[tuple[Session, Any]]:
        """The connected sessions of ``device`` subscribed to a filter matching ``topic``."""
        broker = self._broker
        if broker is None:
            return []
        found = []
        for session, handler in list(broker._sessions.values()):
            dev = self.gate.devices.get(session.client_id or "")
            if dev is None or dev.device != device:
                continue
            if session.transitions.state != "connected" or handler is None:
                continue
            if any(
                broker._matches(topic, flt) and any(s is session for s, _ in subs)
                for flt, subs in broker._subscriptions.items()
            ):
                found.append((session, handler))
        return found

    def rpc_ready(self, device: int) -> str | None:
        """Why ``device`` cannot take an RPC request now, or None when it can."""
        if self._broker is None:
            return "the embedded MQTT broker is not running"
        if not any(d.device == device for d in self.gate.devices.values()):
            return "the device is not connected to the MQTT broker"
        if not self._device_sessions(device, "v1/devices/me/rpc/request/0"):
            return "the device is not subscribed to v1/devices/me/rpc/request/+"
        return None

    def send_to_device(self, device: int, topic: str, payload: bytes) -> bool:
        """Publish ``topic`` to ``device``'s own sessions only (QoS 1); False when it has
        none subscribed to it."""
        targets = self._device_sessions(device, topic)
        for _session, handler in targets:
            task = asyncio.ensure_future(handler.mqtt_publish(topic, payload, 1, retain=False))
            self._direct.add(task)
            task.add_done_callback(self._direct.discard)
        return bool(targets)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish into the broker from the platform (Sparkplug STATE, NCMD/DCMD), in order;
        subscribers get it if the topic plugin lets them receive it."""
        self._outbox.put_nowait((topic, payload, retain))

    async def _send(self) -> None:
        while True:
            topic, payload, retain = await self._outbox.get()
            try:
                if self._broker is not None:
                    qos = 1 if retain else 0
                    if retain:
                        await self._broker.retain_message(None, topic, payload, qos)
                    await self._broker.internal_message_broadcast(topic, payload, qos)
            except Exception:
                log.exception("publishing %s into the embedded broker failed", topic)
            finally:
                self._outbox.task_done()

    def config(self) -> BrokerConfig:
        cfg = {"gate": self.gate}
        return BrokerConfig(
            listeners={
                "default": ListenerConfig(
                    type=ListenerType.TCP, bind=f"127.0.0.1:{self.internal_port}"
                )
            },
            plugins={
                f"{__name__}.DeviceAuthPlugin": cfg,
                f"{__name__}.DeviceTopicPlugin": cfg,
                f"{__name__}.IngestPlugin": cfg,
            },
        )

    async def start(self) -> None:
        self.internal_port = _free_loopback_port()
        self._broker = _Broker(self.config(), self.gate)
        await self._broker.start()
        self._sender = asyncio.create_task(self._send(), name="broker-outbox")
        listeners: list[tuple[int, ssl.SSLContext | None]] = []
        if self.plain:
            listeners.append((self.port, None))
        if self.ssl_context is not None:
            listeners.append((self.tls_port, self.ssl_context))
        try:
            for port, context in listeners:
                front = MqttFront(
                    self.host,
                    port,
                    ("127.0.0.1", self.internal_port),
                    max_payload_bytes=self.gate.max_payload_bytes,
                    on_refused=self.gate.dropped,
                    levels=self.gate.stats.protocol_levels,
                    ssl_context=context,
                    peers=self.gate.peers,  # both fronts file their connections here
                    certs=self.gate.certs,
                    acl=self.gate.may_publish,
                )
                await front.start()
                self._fronts.append(front)
                if context is None:
                    self.port = front.port
                else:
                    self.tls_port = front.port
        except BaseException:
            for front in self._fronts:
                await front.stop()
            self._fronts = []
            await self._broker.shutdown()
            self._broker = None
            raise
        if self.plain:
            log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)
        if self.ssl_context is not None:
            log.info("embedded MQTT broker listening with TLS on %s:%d", self.host, self.tls_port)

    def _kick(self, local_port: int, reason: int) -> bool:
        return any(front.disconnect(local_port, reason) for front in self._fronts)

    @property
    def address(self) -> tuple[str, int] | None:
        """The plain MQTT address; None when only TLS is offered."""
        return (self.host, self.port) if self.plain else None

    @property
    def tls_address(self) -> tuple[str, int] | None:
        return (self.host, self.tls_port) if self.ssl_context is not None else None

    async def stop(self) -> None:
        if self._sender is not None:
            with suppress(TimeoutError):  # the platform's last words (STATE offline)
                await asyncio.wait_for(self._outbox.join(), 2.0)
            self._sender.cancel()
            with suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        for front in self._fronts:
            await front.stop()
        self._fronts = []
        if self._broker is not None:
            # amqtt waits for the plugin tasks already fired: every parsed PUBLISH is ingested
            await self._broker.shutdown()
            self._broker = None

    def stats(self) -> BrokerStats:
        return self.gate.stats


def _rpc_response_id(topic: str) -> str | None:
    """The request id of ``v1/devices/me/rpc/response/{id}``; None for any other topic."""
    if not topic.startswith(RPC_RESPONSE_PREFIX):
        return None
    rest = topic[len(RPC_RESPONSE_PREFIX) :]
    return rest if rest and _literal(rest) and "/" not in rest else None


def _ip(peer: str) -> str:
    """The address part of "ip:port" (IPv6 addresses keep their colons)."""
    return peer.rsplit(":", 1)[0] if ":" in peer else peer


def _not_after(der: bytes) -> datetime | None:
    """When the certificate expires; None if it cannot be read (refused then)."""
    try:
        return x509.load_der_x509_certificate(der).not_valid_after_utc
    except ValueError:
        return None


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
