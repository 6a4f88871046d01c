"""The embedded MQTT broker (amqtt) speaking ThingsBoard's device API.

A device connects with its access token as the MQTT username (the password is ignored, as
ThingsBoard does; anonymous clients are refused). It may publish only to
``v1/devices/me/telemetry`` and ``v1/devices/me/attributes`` and subscribe only to the
topics ThingsBoard SDKs subscribe to at connect. Devices never receive each other's
messages: ``v1/devices/me/...`` names a different device for every client, so anything the
platform sends a device goes to that client's session alone.

amqtt speaks MQTT 3.1.1 only and listens on a loopback port; :class:`~yugong.infra.mqtt5.
MqttFront` owns the public address and speaks MQTT 5 and 3.1.1 to devices.

Sparkplug B 3.0, in-process: a gateway device may publish its edge node's births, data and
deaths (``spBv1.0/{group}/N*/{name}``, ``spBv1.0/{group}/D*/{name}/{device}``, its will too)
where ``{name}`` is its own device name; the gate hands them straight to the platform's
Sparkplug host with the gateway's tenant. It may subscribe to (and receive) the hosts' STATE
and its own NCMD/DCMD only; the host's STATE and commands are published into the broker
(:meth:`EmbeddedBroker.publish`). A device's will on a topic it may not publish is dropped at
connect.

Three amqtt plugins share one :class:`DeviceGate`: authentication, topic checking and a
packet hook that hands each PUBLISH to ingest. The hand-off happens when amqtt's reader
parses the packet, before it acknowledges it, in a task of its own that a disconnect does
not cancel (amqtt's later "message broadcast" event is skipped for messages still queued
when the client leaves, which lost acknowledged QoS 1 messages). Validation and the
writer's backpressure never stall the broker's read loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any, Protocol

from amqtt.broker import Broker
from amqtt.contexts import Action, BaseContext, BrokerConfig, ListenerConfig, ListenerType
from amqtt.mqtt.disconnect import DisconnectPacket
from amqtt.mqtt.packet import MQTTPacket
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.mqtt.publish import PublishPacket
from amqtt.plugins.base import BaseAuthPlugin, BasePlugin, BaseTopicPlugin
from amqtt.session import Session

from yugong.core.errors import YugongError
from yugong.core.ratelog import RateLimitedLog
from yugong.core.settings import Settings
from yugong.core.timeutil import now_us
from yugong.infra.mqtt5 import MqttFront

log = logging.getLogger(__name__)

TELEMETRY_TOPIC = "v1/devices/me/telemetry"
ATTRIBUTES_TOPIC = "v1/devices/me/attributes"
PUBLISH_TOPICS = frozenset({TELEMETRY_TOPIC, ATTRIBUTES_TOPIC})
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
    ) -> None:
        self.directory = directory
        self.ingest = ingest
        self.gateway = gateway
        self.sparkplug = sparkplug
        self.max_payload_bytes = max_payload_bytes
        self.devices: dict[str, Device] = {}
        self.stats = BrokerStats()
        self.rlog = RateLimitedLog(log)
        # amqtt sees the front's loopback hop: its local port -> the client's address
        self.peers: dict[int, str] = {}
        self._order: dict[str, asyncio.Lock] = {}  # client id -> its messages, one at a time

    def peer(self, session: Session) -> str:
        real = self.peers.get(session.remote_port or 0)
        return real or f"{session.remote_address}:{session.remote_port}"

    def dropped(self, reason: str, peer: str, detail: str) -> None:
        """The front closed a connection before the broker saw the bad bytes."""
        self._count(self.stats.dropped, reason)
        self.rlog.warning(f"drop:{reason}", f"MQTT connection from {peer} closed: {detail}")

    def _count(self, table: dict[str, int], reason: str) -> None:
        table[reason] = table.get(reason, 0) + 1

    async def authenticate(self, session: Session) -> bool:
        token = session.username
        client = session.client_id or ""
        if not token:
            self._count(self.stats.refused_connections, "anonymous")
            self.rlog.warning(
                "anon",
                f"MQTT connection from {self.peer(session)} refused: no access token (username)",
            )
            self.devices.pop(client, None)
            return False
        # The directory may read the database on a cache miss: keep that off the loop.
        device = await asyncio.to_thread(self.directory.by_token, token)
        if device is None:
            self._count(self.stats.refused_connections, "unknown_token")
            self.rlog.warning(
                "token",
                f"MQTT connection from {self.peer(session)} refused: unknown access token",
            )
            self.devices.pop(client, None)
            return False
        self.devices[client] = device
        self.stats.connections += 1
        if session.will_flag and not self.allowed(session, session.will_topic, Action.PUBLISH):
            # The broker would publish it unchecked (e.g. a forged STATE): drop it.
            session.will_flag = False
        return True

    def device_of(self, session: Session | None) -> Device | None:
        if session is None or not session.client_id:
            return None
        device = self.devices.get(session.client_id)
        if device is None and session.username:
            # A session taken over by a reconnect may have lost its entry: the token is
            # still the identity.
            device = self.directory.by_token(session.username)
            if device is not None:
                self.devices[session.client_id] = device
        return device

    def allowed(self, session: Session | None, topic: str | None, action: Action | None) -> bool:
        device = self.device_of(session)
        if device is None or topic is None:
            return False
        gateway = self.gateway is not None and getattr(device, "is_gateway", False)
        if topic.startswith(SPARKPLUG + "/"):
            return self._sparkplug_allowed(device, topic, action)
        if action == Action.PUBLISH:
            ok = topic in PUBLISH_TOPICS or (gateway and topic in GATEWAY_PUBLISH_TOPICS)
        elif action == Action.SUBSCRIBE:
            ok = topic in SUBSCRIBE_TOPICS or (gateway and topic in GATEWAY_SUBSCRIBE_TOPICS)
        else:  # RECEIVE: nothing fans out between devices
            return False
        if not ok:
            self.stats.refused_topics += 1
            self.rlog.warning(
                f"topic:{device.device}",
                f"device '{device.name}' (id {device.device}) may not {action} '{topic}'",
            )
        return ok

    def _sparkplug_allowed(self, device: Device, topic: str, action: Action | None) -> bool:
        if self.sparkplug is not None and getattr(device, "is_gateway", False):
            if sparkplug_allowed(device.name, topic, action):
                return True
            parts = topic.split("/")
            if action == Action.PUBLISH and len(parts) in (4, 5) and parts[3] != device.name:
                self.stats.refused_identity += 1
                self.rlog.warning(
                    f"identity:{device.device}",
                    f"gateway '{device.name}' (id {device.device}) may not publish as Sparkplug "
                    f"edge node '{parts[3]}': the edge node id must be the gateway's name",
                )
                return False
        if action == Action.RECEIVE:
            return False  # nothing else fans out: not worth a log line
        self.stats.refused_topics += 1
        self.rlog.warning(
            f"topic:{device.device}",
            f"device '{device.name}' (id {device.device}) may not {action} '{topic}'",
        )
        return False

    async def on_publish(self, session: Session | None, topic: str, data: bytes) -> None:
        sparkplug = topic.startswith(SPARKPLUG + "/")
        if topic not in PUBLISH_TOPICS and topic not in GATEWAY_PUBLISH_TOPICS and not sparkplug:
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
            elif self.gateway is not None and getattr(device, "is_gateway", False):
                await self.gateway.handle(device, topic, data)
            else:
                return  # a non-gateway's gateway topic: refused by the topic plugin
            self.stats.messages += 1
        except YugongError as exc:  # counted per tenant by the service
            self._reject(device, str(getattr(exc, "reason", type(exc).__name__)), exc.detail)
        except Exception:
            self._count(self.stats.rejected, "error")
            log.exception("ingest of an MQTT message from device %s failed", device.device)

    def _reject(self, device: Device, reason: str, detail: str) -> None:
        self._count(self.stats.rejected, reason)
        self.rlog.warning(
            f"{device.device}:{reason}",
            f"MQTT message from device '{device.name}' (id {device.device}) rejected: {detail}",
        )

    def forget(self, session: Session | None) -> None:
        # A takeover may race with this; device_of() recovers from the session's token.
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
    """``await start()`` listens on ``settings.mqtt_host:mqtt_port``; ``await stop()``.

    amqtt runs on a free loopback port behind :class:`MqttFront`, which owns the public
    address and speaks MQTT 5 as well as 3.1.1."""

    def __init__(
        self,
        settings: Settings,
        directory: TokenDirectory,
        ingest: Ingest,
        *,
        gateway: GatewayHandler | None = None,
    ) -> None:
        self.host = settings.mqtt_host
        self.port = settings.mqtt_port
        self.gate = DeviceGate(
            directory, ingest, max_payload_bytes=settings.mqtt_max_payload_bytes, gateway=gateway
        )
        self.internal_port = 0
        self._broker: Broker | None = None
        self._front: MqttFront | None = None
        self._outbox: asyncio.Queue[tuple[str, bytes, bool]] = asyncio.Queue()
        self._sender: asyncio.Task[None] | None = None

    def attach_sparkplug(self, host: SparkplugHandler) -> None:
        """Hand gateway devices' Sparkplug messages to ``host`` (before ``start()``)."""
        self.gate.sparkplug = host

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
        self._front = MqttFront(
            self.host,
            self.port,
            ("127.0.0.1", self.internal_port),
            max_payload_bytes=self.gate.max_payload_bytes,
            on_refused=self.gate.dropped,
            levels=self.gate.stats.protocol_levels,
        )
        self.gate.peers = self._front.peers
        try:
            await self._front.start()
        except BaseException:
            await self._broker.shutdown()
            self._broker = None
            raise
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self._sender is not None:
            with suppress(TimeoutError):  # the platform's last words (STATE offline)
                await asyncio.wait_for(self._outbox.join(), 2.0)
            self._sender.cancel()
            with suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        if self._front is not None:
            await self._front.stop()
            self._front = None
        if self._broker is not None:
            # amqtt waits for the plugin tasks already fired: every parsed PUBLISH is ingested
            await self._broker.shutdown()
            self._broker = None

    def stats(self) -> BrokerStats:
        return self.gate.stats


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
