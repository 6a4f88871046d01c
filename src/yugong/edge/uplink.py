"""The gateway's uplink: a Sparkplug B 3.0 edge node over MQTT (paho-mqtt 2).

Session (one per MQTT connection): NDEATH with the session's ``bdSeq`` is the MQTT will;
after CONNACK the node subscribes to its NCMD/DCMD topics (and the primary host's STATE
when configured, waiting for ``online``), publishes NBIRTH (``seq`` 0, ``bdSeq``,
``Node Control/Rebirth``) then one DBIRTH per device with every metric (type, alias,
``engUnit``, ``readOnly``), then forwards the store-and-forward buffer as DDATA.

Delivery choice: Sparkplug publishes DATA at QoS 0, which cannot back store-and-forward.
By default DATA goes out at QoS 1 and a buffer entry is acked only once the broker's PUBACK
for every payload built from it has arrived; a lost connection leaves it in the buffer and
the next session replays it, oldest first, behind a fresh birth. Payloads of a partly
confirmed entry that were already confirmed are not sent again. A payload in flight when the
link drops may still reach the broker once (at-least-once at that single edge).
Sequence numbers are taken at the moment of publishing, so ``seq`` is contiguous on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from yugong.core.errors import FieldError, InvalidInput
from yugong.edge.buffer import StoreForwardBuffer
from yugong.edge.connectors.base import Backoff, WriteResult, WriteStatus
from yugong.edge.profiles import DeviceProfile
from yugong.edge.sparkplug import (
    BDSEQ,
    REBIRTH,
    DataType,
    MessageType,
    Metric,
    Payload,
    SeqCounter,
    Topic,
    data_messages,
    datatype_for,
    decode_payload,
    encode_payload,
    parse_state,
    state_topic,
)

__all__ = ["DeviceSpec", "EdgeNode", "EdgeNodeConfig", "MetricSpec", "OnWrite", "UplinkStats"]

log = logging.getLogger(__name__)

OnWrite = Callable[[str, str, Any], "WriteResult | Awaitable[WriteResult]"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    point: str  # thing-model property identifier, the metric name
    datatype: DataType
    unit: str | None = None
    writable: bool = False
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    name: str
    metrics: Sequence[MetricSpec]

    @classmethod
    def from_profile(cls, profile: DeviceProfile, name: str | None = None) -> DeviceSpec:
        """The device's metrics from its profile's points (a scaled point is a Double)."""
        metrics = [
            MetricSpec(
                p.property,
                datatype_for(p.type, scaled=p.scale != 1.0 or p.offset != 0.0),
                p.unit,
                p.access == "rw",
            )
            for p in profile.points
        ]
        return cls(name or profile.name, metrics)


@dataclass(frozen=True, slots=True)
class EdgeNodeConfig:
    """The edge node's own settings, resolved (the gateway YAML's ``uplink`` section maps to
    this through :func:`from_gateway`)."""

    host: str
    group_id: str
    edge_node_id: str
    port: int = 1883
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    tls_insecure: bool = False  # skip host name check (test rigs only)
    mqtt_version: Literal["3.1.1", "5"] = "3.1.1"
    keepalive: int = 30
    connect_timeout: float = 10.0
    primary_host_id: str | None = None  # wait for its STATE online before publishing
    data_qos: Literal[0, 1] = 1  # 1: buffer acked on PUBACK (see module doc)
    batch_rows: int = 5000
    use_aliases: bool = True
    poll_interval: float = 0.5  # buffer re-check when nobody calls notify()
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    bdseq: int = 0  # first session's bdSeq

    def __post_init__(self) -> None:
        errors = []
        for name in ("group_id", "edge_node_id"):
            value = getattr(self, name)
            if not value or any(c in value for c in "/+#"):
                errors.append(FieldError(name, "required, without '/', '+' or '#'"))
        if not 1 <= self.port <= 65535:
            errors.append(FieldError("port", "must be 1..65535"))
        if (self.cert_file is None) != (self.key_file is None):
            errors.append(FieldError("cert_file", "client certificate and key go together"))
        if self.batch_rows <= 0:
            errors.append(FieldError("batch_rows", "must be positive"))
        if not 0 <= self.bdseq <= 255:
            errors.append(FieldError("bdseq", "must be 0..255"))
        if errors:
            raise InvalidInput("invalid uplink configuration", errors)


@dataclass(slots=True)
class UplinkStats:
    sessions: int = 0
    births: int = 0
    published_payloads: int = 0
    published_rows: int = 0
    acked_entries: int = 0
    skipped_rows: int = 0  # rows for metrics that were never born
    commands: int = 0
    writes_failed: int = 0


class _Lost(ConnectionError):
    pass


_BDSEQ_KEY = "sparkplug.bdseq"  # the bdSeq of the last session's will, kept in the buffer


class EdgeNode:
    """One Sparkplug edge node. ``await node.run()`` until cancelled or :meth:`stop`."""

    def __init__(
        self,
        config: EdgeNodeConfig,
        devices: Iterable[DeviceSpec],
        buffer: StoreForwardBuffer,
        *,
        on_write: OnWrite | None = None,
    ) -> None:
        self.config = config
        self.buffer = buffer
        self.on_write = on_write
        self.stats = UplinkStats()
        # Spec: each new MQTT session's bdSeq is the previous one's plus one, also across
        # restarts, so a late will of the last run can never end this run's session.
        used = buffer.get_state(_BDSEQ_KEY)
        self.bdseq = config.bdseq if used is None else (int(used) + 1) % 256
        self._seq = SeqCounter()
        self._devices: dict[str, DeviceSpec] = {}
        self._datatypes: dict[tuple[str, str], DataType] = {}
        self._aliases: dict[tuple[str, str], int] = {}
        self._by_alias: dict[int, tuple[str, str]] = {}
        self.set_devices(devices)
        self._notify = asyncio.Event()
        self._stopping = False
        self._stop_event = asyncio.Event()
        self._client: mqtt.Client | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected: asyncio.Future[None] | None = None
        self._lost: asyncio.Event = asyncio.Event()
        self._host_online = asyncio.Event()
        self._inbox: asyncio.Queue[mqtt.MQTTMessage] = asyncio.Queue()
        self._partial: tuple[int, int] = (0, 0)  # (entry id, payloads confirmed)
        self._rebirth = asyncio.Event()
        self._unknown_logged: set[tuple[str, str]] = set()
        self.online = False  # born and forwarding
        self._last_error = ""  # paho's last error log line (TLS alerts show up only there)

    # ------------------------------------------------------------------ devices
    def set_devices(self, devices: Iterable[DeviceSpec]) -> None:
        """Replace the device set; call :meth:`request_rebirth` to announce it."""
        self._devices = {d.name: d for d in devices}
        self._datatypes = {
            (d.name, m.point): m.datatype for d in self._devices.values() for m in d.metrics
        }
        keys = sorted(self._datatypes)
        self._aliases = {k: i + 1 for i, k in enumerate(keys)} if self.config.use_aliases else {}
        self._by_alias = {a: k for k, a in self._aliases.items()}

    def request_rebirth(self) -> None:
        self._rebirth.set()

    def notify(self) -> None:
        """New data is in the buffer (saves waiting for the next poll)."""
        self._notify.set()

    def stop(self) -> None:
        self._stopping = True
        self._stop_event.set()
        self._lost.set()
        self._notify.set()

    # ------------------------------------------------------------------ topics
    def _topic(self, mtype: MessageType, device: str | None = None) -> str:
        return str(Topic(self.config.group_id, mtype, self.config.edge_node_id, device))

    def _death_payload(self) -> bytes:
        return encode_payload(
            Payload(metrics=(Metric(BDSEQ, DataType.Int64, self.bdseq),), timestamp=_now_ms())
        )

    # ------------------------------------------------------------------ run loop
    async def run(self) -> None:
        backoff = Backoff(self.config.reconnect_initial, self.config.reconnect_max)
        logged_down = False
        while not self._stopping:
            sessions = self.stats.sessions
            try:
                await self._session(backoff)
            except (ConnectionError, OSError, TimeoutError, ssl.SSLError) as exc:
                where = f"{self.config.host}:{self.config.port}"
                if self.stats.sessions > sessions:
                    log.warning("uplink to %s lost: %s", where, exc)
                elif not logged_down:  # once per outage, not per retry
                    log.warning("uplink to %s unavailable: %s", where, exc)
                logged_down = True
            finally:
                self.online = False
            if self._stopping:
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff.next_delay()):
                    await self._stop_event.wait()

    def _make_client(self) -> mqtt.Client:
        cfg = self.config
        proto = mqtt.MQTTv5 if cfg.mqtt_version == "5" else mqtt.MQTTv311
        client_id = cfg.client_id or f"{cfg.group_id}-{cfg.edge_node_id}"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=proto,
            clean_session=None if proto == mqtt.MQTTv5 else True,
        )
        client.will_set(self._topic(MessageType.NDEATH), self._death_payload(), qos=1, retain=False)
        if cfg.username is not None:
            client.username_pw_set(cfg.username, cfg.password)
        if cfg.tls:
            client.tls_set(
                ca_certs=str(cfg.ca_file) if cfg.ca_file else None,
                certfile=str(cfg.cert_file) if cfg.cert_file else None,
                keyfile=str(cfg.key_file) if cfg.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
            client.tls_insecure_set(cfg.tls_insecure)
        client.max_inflight_messages_set(100)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_log = self._on_log
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    async def _session(self, backoff: Backoff) -> None:
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._lost = asyncio.Event()
        self._connected = loop.create_future()
        self._host_online.clear()
        self._inbox = asyncio.Queue()
        self._last_error = ""
        client = self._make_client()
        self._client = client
        try:
            await asyncio.to_thread(self.buffer.set_state, _BDSEQ_KEY, str(self.bdseq))
            await asyncio.to_thread(
                client.connect, self.config.host, self.config.port, self.config.keepalive
            )
            client.loop_start()
            try:
                await asyncio.wait_for(asyncio.shield(self._connected), self.config.connect_timeout)
            except TimeoutError:
                raise TimeoutError(
                    f"the broker did not accept the connection within "
                    f"{self.config.connect_timeout:g}s (no CONNACK)"
                ) from None
            backoff.reset()
            self.stats.sessions += 1
            log.info(
                "uplink connected to %s:%s (bdSeq %d)",
                self.config.host,
                self.config.port,
                self.bdseq,
            )
            cfg = self.config
            base = f"spBv1.0/{cfg.group_id}"
            subs = [
                (f"{base}/NCMD/{cfg.edge_node_id}", 1),
                (f"{base}/DCMD/{cfg.edge_node_id}/+", 1),
            ]
            if cfg.primary_host_id:
                subs.append((state_topic(cfg.primary_host_id), 1))
            client.subscribe(subs)
            tasks = [
                asyncio.create_task(self._forward(), name="uplink-forward"),
                asyncio.create_task(self._commands(), name="uplink-commands"),
            ]
            lost = asyncio.create_task(self._lost.wait())
            try:
                done, _ = await asyncio.wait([*tasks, lost], return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    if t is not lost and t.exception() is not None:
                        raise t.exception()  # type: ignore[misc]
            finally:
                for t in [*tasks, lost]:
                    t.cancel()
                await asyncio.gather(*tasks, lost, return_exceptions=True)
            if not self._stopping:
                raise _Lost("connection lost")
            # Orderly stop: say so (the will is only for unexpected loss).
            with contextlib.suppress(Exception):
                info = client.publish(self._topic(MessageType.NDEATH), self._death_payload(), qos=1)
                await asyncio.to_thread(info.wait_for_publish, 2.0)
            client.disconnect()
        finally:
            self._fail_pending(_Lost("connection closed"))
            await asyncio.to_thread(client.loop_stop)
            with contextlib.suppress(Exception):
                client.socket() and client.disconnect()
            self._client = None
            if self._connected is not None and self._connected.done():
                self.bdseq = (self.bdseq + 1) % 256  # the next session is a new birth/death pair

    # ------------------------------------------------------------------ paho callbacks (thread)
    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(fn, *args)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._call(self._connect_result, rc)

    def _connect_result(self, rc: Any) -> None:
        fut = self._connected
        if fut is None or fut.done():
            return
        if rc.is_failure:
            fut.set_exception(ConnectionRefusedError(f"broker refused the connection: {rc}"))
        else:
            fut.set_result(None)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        self._call(self._lost.set)
        self._call(self._fail_pending, _Lost(f"disconnected: {rc}"))
        self._call(self._closed_before_connack, self._last_error or str(rc))

    def _on_log(self, client: Any, userdata: Any, level: int, buf: str) -> None:
        if level == mqtt.MQTT_LOG_ERR:
            self._last_error = buf

    def _closed_before_connack(self, reason: str) -> None:
        # E.g. a TLS 1.3 broker rejecting the client certificate after the handshake: fail
        # the attempt now rather than wait out connect_timeout.
        fut = self._connected
        if fut is None or fut.done():
            return
        hint = " (TLS: does the broker accept this client certificate?)" if self.config.tls else ""
        fut.set_exception(
            _Lost(f"the broker closed the connection before accepting it: {reason}{hint}")
        )
        fut.exception()  # retrieved here if nobody awaits it any more

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        # Resolved in the loop thread, where _send registered the mid before this can run.
        self._call(self._published, mid)

    def _published(self, mid: int) -> None:
        fut = self._pending.pop(mid, None)
        if fut is not None and not fut.done():
            fut.set_result(None)

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._call(self._inbox.put_nowait, msg)

    def _fail_pending(self, exc: Exception) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # retrieved: a failed payload is retried from the buffer

    # ------------------------------------------------------------------ publishing
    def _send(self, topic: str, payload: bytes, qos: int) -> asyncio.Future[None]:
        """Publish now (synchronously queued to paho, so call order is wire order); the
        future resolves on PUBACK (QoS 1) or at once (QoS 0)."""
        client = self._client
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if client is None or self._lost.is_set():
            raise _Lost("not connected")
        info = client.publish(topic, payload, qos=qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise _Lost(f"publish failed: {mqtt.error_string(info.rc)}")
        if qos == 0:
            fut.set_result(None)
        else:
            self._pending[info.mid] = fut
        self.stats.published_payloads += 1
        return fut

    def _send_pb(
        self, mtype: MessageType, device: str | None, pb: Any, qos: int
    ) -> asyncio.Future[None]:
        pb.seq = self._seq.next()
        return self._send(self._topic(mtype, device), pb.SerializeToString(), qos)

    def _send_payload(
        self, mtype: MessageType, device: str | None, payload: Payload, qos: int
    ) -> asyncio.Future[None]:
        seq = self._seq.reset() if mtype is MessageType.NBIRTH else self._seq.next()
        data = encode_payload(Payload(payload.metrics, payload.timestamp, seq))
        return self._send(self._topic(mtype, device), data, qos)

    async def _birth(self) -> None:
        now = _now_ms()
        node = Payload(
            metrics=(
                Metric(BDSEQ, DataType.Int64, self.bdseq, timestamp=now),
                Metric(REBIRTH, DataType.Boolean, False, timestamp=now),
            ),
            timestamp=now,
        )
        futs = [self._send_payload(MessageType.NBIRTH, None, node, 1)]
        for dev in sorted(self._devices.values(), key=lambda d: d.name):
            metrics = []
            for m in dev.metrics:
                props: dict[str, Any] = dict(m.properties)
                if m.unit:
                    props["engUnit"] = m.unit
                props["readOnly"] = not m.writable
                metrics.append(
                    Metric(
                        m.point,
                        m.datatype,
                        None,
                        alias=self._aliases.get((dev.name, m.point)),
                        timestamp=now,
                        properties=props,
                    )
                )
            futs.append(
                self._send_payload(MessageType.DBIRTH, dev.name, Payload(tuple(metrics), now), 1)
            )
        await asyncio.gather(*futs)
        self.stats.births += 1
        self.online = True
        log.info(
            "uplink born: node %s with %d devices", self.config.edge_node_id, len(self._devices)
        )

    async def _forward(self) -> None:
        cfg = self.config
        if cfg.primary_host_id:
            await self._host_online.wait()
        await self._birth()
        while True:
            if cfg.primary_host_id and not self._host_online.is_set():
                self.online = False
                await self._host_online.wait()
                self._rebirth.set()
            if self._rebirth.is_set():
                self._rebirth.clear()
                await self._birth()
            entries = await self.buffer.peek_async(cfg.batch_rows)
            if not entries:
                self._notify.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(cfg.poll_interval):
                        await self._notify.wait()
                continue
            for entry_id, table in entries:
                skipped: list[tuple[str, str]] = []
                msgs = data_messages(
                    table,
                    self._datatypes,
                    timestamp_ms=_now_ms(),
                    aliases=self._aliases or None,
                    skipped=skipped,
                )
                self._log_skipped(skipped)
                done = self._partial[1] if self._partial[0] == entry_id else 0
                futs = [
                    self._send_pb(MessageType.DDATA, dev, pb, cfg.data_qos)
                    for dev, pb in msgs[done:]
                ]
                for i, fut in enumerate(futs):
                    await fut
                    self._partial = (entry_id, done + i + 1)
                    self.stats.published_rows += len(msgs[done + i][1].metrics)
                await self.buffer.ack_async(entry_id)
                self.stats.acked_entries += 1
                self._partial = (0, 0)

    def _log_skipped(self, skipped: list[tuple[str, str]]) -> None:
        if not skipped:
            return
        self.stats.skipped_rows += len(skipped)
        new = set(skipped) - self._unknown_logged
        if new:
            self._unknown_logged |= new
            log.warning("uplink drops data of metrics not in any birth: %s", sorted(new))

    # ------------------------------------------------------------------ commands
    async def _commands(self) -> None:
        while True:
            msg = await self._inbox.get()
            try:
                await self._handle(msg)
            except InvalidInput as exc:
                log.warning("uplink ignores message on %s: %s", msg.topic, exc.detail)

    async def _handle(self, msg: mqtt.MQTTMessage) -> None:
        topic = Topic.parse(msg.topic)
        if topic.message_type is MessageType.STATE:
            online, _ts = parse_state(bytes(msg.payload))
            if online:
                self._host_online.set()
            else:
                self._host_online.clear()
                log.info("primary host %s is offline; holding data", topic.group_id)
            return
        payload = decode_payload(bytes(msg.payload))
        self.stats.commands += 1
        if topic.message_type is MessageType.NCMD:
            for m in payload.metrics:
                if m.name == REBIRTH and m.value:
                    log.info("uplink rebirth requested by NCMD")
                    self._rebirth.set()
                    self._notify.set()
            return
        if topic.message_type is MessageType.DCMD and topic.device_id is not None:
            for m in payload.metrics:
                await self._write(topic.device_id, m)

    async def _write(self, device: str, metric: Metric) -> None:
        point = metric.name
        if point is None and metric.alias is not None:
            key = self._by_alias.get(metric.alias)
            point = key[1] if key and key[0] == device else None
        spec = next(
            (
                m
                for m in self._devices.get(device, DeviceSpec(device, ())).metrics
                if m.point == point
            ),
            None,
        )
        if point is None or spec is None:
            result = WriteResult(
                WriteStatus.INVALID,
                f"no metric {metric.name or metric.alias!r} on device {device!r}",
            )
        elif not spec.writable:
            result = WriteResult(WriteStatus.INVALID, f"{device}.{point} is read-only")
        elif self.on_write is None:
            result = WriteResult(WriteStatus.UNAVAILABLE, "this gateway takes no writes")
        else:
            try:
                res = self.on_write(device, point, metric.value)
                result = await res if inspect.isawaitable(res) else res
            except Exception as exc:  # a connector bug must not kill the command loop
                log.exception("write %s.%s failed", device, point)
                result = WriteResult(WriteStatus.DEVICE_ERROR, str(exc))
        if not result.success:
            self.stats.writes_failed += 1
            log.warning(
                "write %s.%s = %r: %s %s",
                device,
                point,
                metric.value,
                result.status,
                result.message,
            )
        else:
            log.info("write %s.%s = %r: ok", device, point, metric.value)
        if spec is None or point is None:
            return
        props: dict[str, Any] = {"writeStatus": str(result.status.value)}
        if result.message:
            props["writeMessage"] = result.message
        report = Metric(
            point,
            spec.datatype,
            metric.value if result.success else None,
            alias=self._aliases.get((device, point)),
            timestamp=_now_ms(),
            properties=props,
            # A failed write's null is not a reading: hosts must not store it as one.
            is_transient=not result.success,
        )
        with contextlib.suppress(_Lost):
            await self._send_payload(
                MessageType.DDATA, device, Payload((report,), _now_ms()), self.config.data_qos
            )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


# --------------------------------------------------------------------------- gateway runtime
class SparkplugUplink:
    """The gateway runtime's uplink: an :class:`EdgeNode` fed from the gateway's buffer."""

    def __init__(
        self,
        config: EdgeNodeConfig,
        devices: Sequence[DeviceSpec],
        on_write: Callable[[str, str, Any], Awaitable[WriteResult] | WriteResult],
    ) -> None:
        self.config = config
        self.devices = devices
        self.on_write = on_write
        self.node: EdgeNode | None = None

    async def start(self) -> None:
        return None

    async def run(self, buffer: StoreForwardBuffer) -> None:
        self.node = EdgeNode(self.config, self.devices, buffer, on_write=self.on_write)
        await self.node.run()

    async def stop(self) -> None:
        if self.node is not None:
            self.node.stop()


def from_gateway(gateway: Any) -> SparkplugUplink:
    """Build the uplink from a running gateway's YAML settings (``uplink:``) and its catalog
    of devices and points (for the births); commands go to ``gateway.write``."""
    from urllib.parse import urlsplit

    up = gateway.config.uplink
    url = urlsplit(up.broker)
    tls = url.scheme in ("mqtts", "ssl") or up.tls is not None

    def file(path: Path | None) -> Path | None:  # relative to the config file, like profiles
        return path if path is None or path.is_absolute() else gateway.config.base_dir / path

    config = EdgeNodeConfig(
        host=url.hostname or "127.0.0.1",
        port=url.port or (8883 if tls else 1883),
        group_id=up.group_id,
        edge_node_id=up.edge_node_id or gateway.config.gateway,
        client_id=up.client_id,
        username=up.username,
        password=up.password,
        tls=tls,
        ca_file=file(up.tls.ca_file) if up.tls else None,
        cert_file=file(up.tls.cert_file) if up.tls else None,
        key_file=file(up.tls.key_file) if up.tls else None,
        tls_insecure=bool(up.tls and up.tls.insecure),
        primary_host_id=up.host_id,
        batch_rows=up.batch_rows,
    )
    devices = [
        DeviceSpec(
            name,
            [MetricSpec(m.point, datatype_for(m.datatype), m.unit, m.writable) for m in metrics],
        )
        for name, metrics in gateway.catalog().items()
    ]
    return SparkplugUplink(config, devices, gateway.write)
