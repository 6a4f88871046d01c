"""The platform as a Sparkplug B 3.0 primary host application.

The host subscribes to ``spBv1.0/#`` on the platform's external broker and publishes its
state on ``spBv1.0/STATE/{host_id}``: ``{"online": true, "timestamp": ms}`` retained, with
the same topic's ``{"online": false, ...}`` as its MQTT will, so edge nodes that wait for
the primary host see it come and go.

Which tenant a Sparkplug group belongs to: an explicit mapping ``group_id -> tenant slug``
given to the host (``groups``). A group that is not mapped is refused and counted
(``stats.unknown_group``): the broker's ACLs decide who may publish under a group, and the
mapping decides which tenant that group may write into, so nothing lands in a tenant unless an
operator said so.

In-process (the embedded broker, ``publish`` given): the broker hands each message of an
authenticated gateway device to :meth:`SparkplugHost.handle` with that device's tenant, and the
host's STATE and commands go out through ``publish``; a non-empty ``groups`` mapping must then
map the group to that same tenant.

Auto-provisioning (within the tenant, like the ThingsBoard gateway API):
- an edge node is a gateway device named after its ``edge_node_id``; its NBIRTH metrics
  form the thing model of a product ``sp.{node}``;
- each device behind it (DBIRTH) is a device named after its ``device_id``, behind that
  gateway, with the product ``sp.{node}.{device}``, or the product whose key a DBIRTH string
  metric ``Properties/Product`` names (devices sharing a product key share the model: a birth
  adds or updates its metrics' properties and never removes another device's);
- a metric becomes a property: its name with characters outside ``[A-Za-z0-9_]`` replaced
  by ``_`` as identifier, the Sparkplug datatype mapped to a TSL type (integers -> int, Float
  -> float, Double -> double, Boolean -> bool, String/Text/UUID -> text, DateTime -> date;
  other types are not stored), the ``engUnit`` property as unit, writable when the metric's
  ``writable`` property is true or its ``readOnly`` property is false. ``bdSeq`` and
  ``Node Control/*`` metrics are protocol, not data;
- a device that already exists keeps its product (the birth's metrics are merged into that
  product's model); a device of the tenant with the same name that is not behind this edge
  node, or an existing device named like the edge node that is not a gateway, is refused.

Data: births and NDATA/DDATA values are ingested with the metric's timestamp or else the
payload's; the DATA of messages that arrive together goes to ``IngestService.ingest_entries``
as one batch (each message still accepted or refused whole).
Aliases from the births decode DATA. ``seq`` is checked per edge node (0..255, wrapping): a
gap, DATA from a node or device without a birth, or a birth out of order makes the host
publish an NCMD ``Node Control/Rebirth`` (at most once per ``rebirth_interval_s`` per node).

Death: an NDEATH whose ``bdSeq`` matches the node's last NBIRTH (an older session's will is
ignored) takes the gateway and every device behind it offline; a DDEATH takes one device
offline. Their metrics' latest values are marked stale by writing one BAD-quality sample per
series at the death time (the host's receive time), so "latest value" queries show the value
is no longer current while the history keeps the last good value.

A null or BAD-quality metric (codec property ``Quality``) is stored as a BAD sample. Refusals
are counted in ``stats.rejected`` under a reason (``malformed``, ``bad_topic``, ``not_child``,
``not_gateway``, ``stale_death``, ingest's own reasons such as ``wrong_type``).
Messages are handled in arrival order (seq needs it; DATA queued before a birth or death is
written before it is handled); births provision in a worker thread so the event loop keeps
running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import update

from yugong.core.errors import Conflict, FieldError, InvalidInput, YugongError
from yugong.core.quality import Quality
from yugong.core.ratelog import RateLimitedLog
from yugong.core.samples import make_batch
from yugong.core.settings import Settings
from yugong.core.timeutil import now_us
from yugong.edge.sparkplug import (
    BDSEQ,
    NAMESPACE,
    QUALITY_PROPERTY,
    REBIRTH,
    DataType,
    MessageType,
    Metric,
    Payload,
    Topic,
    encode_payload,
    metric_from_pb,
    metric_value,
    parse_pb,
    payload_from_pb,
    state_payload,
    state_topic,
)
from yugong.platform.ingest.mqtt import BrokerAddress
from yugong.platform.ingest.payloads import TelemetryEntry
from yugong.platform.ingest.service import SAMPLES_TOPIC, IngestService
from yugong.platform.ingest.validate import Rejected
from yugong.platform.registry.bindings import DeviceBinding
from yugong.platform.registry.models import Device
from yugong.platform.registry.service import Registry
from yugong.security.principal import SYSTEM

log = logging.getLogger(__name__)

PRODUCT_METRIC = "Properties/Product"
_NOT_IDENT = re.compile(r"[^A-Za-z0-9_]")
_NOT_KEY = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass
class HostStats:
    messages: int = 0
    births: int = 0
    data: int = 0  # DATA messages ingested
    points: int = 0
    deaths: int = 0
    seq_gaps: int = 0
    rebirths_requested: int = 0
    unknown_group: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> messages


@dataclass
class _Metric:
    identifier: str
    datatype: int
    name: str = ""
    alias: int | None = None


@dataclass(frozen=True)
class WriteAnswer:
    """What the edge node reported for a DCMD write: ``status`` is the edge's write status
    (``ok``, ``device_error``, ``timeout``, ``unavailable``, ``invalid``)."""

    status: str
    message: str = ""


@dataclass
class _DeviceState:
    device: int  # registry device id
    by_name: dict[str, _Metric] = field(default_factory=dict)
    by_alias: dict[int, _Metric] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)  # metrics of types the store cannot hold
    skipped_aliases: set[int] = field(default_factory=set)
    by_identifier: dict[str, _Metric] = field(default_factory=dict)


@dataclass(slots=True)
class _Data:
    """One message's values, waiting to be ingested with its neighbours."""

    topic: Topic
    state: _DeviceState
    entries: list[TelemetryEntry]
    answer: Payload | None  # decoded when it carries write answers someone waits for
    is_data: bool  # NDATA/DDATA (not a birth's values)


@dataclass
class _NodeState:
    tenant: int
    gateway: _DeviceState | None = None  # set by NBIRTH
    bd_seq: int | None = None
    seq: int | None = None
    devices: dict[str, _DeviceState] = field(default_factory=dict)
    rebirth_asked: float = 0.0  # monotonic time of the last request


def identifier_for(metric_name: str) -> str:
    """A TSL property identifier for a Sparkplug metric name (``Motor/Speed`` ->
    ``Motor_Speed``); long names keep their start and a hash so they stay distinct."""
    ident = _NOT_IDENT.sub("_", metric_name) or "_"
    if len(ident) > 50:
        ident = f"{ident[:41]}_{uuid.uuid5(uuid.NAMESPACE_URL, metric_name).hex[:8]}"
    return ident


def product_key(node: str, device: str | None = None) -> str:
    raw = f"sp.{node}" if device is None else f"sp.{node}.{device}"
    key = _NOT_KEY.sub("_", raw)
    if len(key) > 64:
        key = f"{key[:55]}_{uuid.uuid5(uuid.NAMESPACE_URL, raw).hex[:8]}"
    return key


# Thing models from births -------------------------------------------------------------------

_TSL_TYPES: dict[DataType, str] = {
    **dict.fromkeys(
        (
            DataType.Int8,
            DataType.Int16,
            DataType.Int32,
            DataType.Int64,
            DataType.UInt8,
            DataType.UInt16,
            DataType.UInt32,
            DataType.UInt64,
        ),
        "int",
    ),
    DataType.Float: "float",
    DataType.Double: "double",
    DataType.Boolean: "bool",
    DataType.String: "text",
    DataType.Text: "text",
    DataType.UUID: "text",
    DataType.DateTime: "date",
}
_SIGNED_BITS: dict[int, int] = {
    DataType.Int8: 8,
    DataType.Int16: 16,
    DataType.Int32: 32,
    DataType.Int64: 64,
}
_DRAIN = 1000  # messages handled (and their DATA ingested) together at most
_UNIT_KEYS = ("engUnit", "EngUnit", "Engineering Units", "unit")


def _is_protocol(name: str) -> bool:
    return name == BDSEQ or name.startswith("Node Control/")


def tsl_property(metric: Metric) -> dict[str, Any] | None:
    """The TSL property a birth metric describes, or None for a type the store cannot hold."""
    t = _TSL_TYPES.get(metric.datatype)
    if t is None or metric.name is None:
        return None
    props = metric.properties
    specs: dict[str, Any] = {}
    if t in ("int", "float", "double"):
        unit = next((props[k] for k in _UNIT_KEYS if isinstance(props.get(k), str)), None)
        if unit:
            specs["unit"] = unit
    elif t == "bool":
        specs = {"0": "false", "1": "true"}
    writable = props.get("writable") is True or props.get("readOnly") is False
    return {
        "identifier": identifier_for(metric.name),
        "name": metric.name,
        "accessMode": "rw" if writable else "r",
        "dataType": {"type": t, "specs": specs},
    }


def merge_model(
    document: Mapping[str, Any], properties: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """``document`` with ``properties`` added or, where type, unit or access changed,
    replaced; properties the birth does not mention are kept."""
    doc = dict(document)
    existing = list(doc.get("properties") or [])
    index = {p.get("identifier"): i for i, p in enumerate(existing)}
    for new in properties:
        i = index.get(new["identifier"])
        if i is None:
            index[new["identifier"]] = len(existing)
            existing.append(dict(new))
            continue
        old = existing[i]
        old_dt, new_dt = old.get("dataType") or {}, new["dataType"]
        same = (
            old_dt.get("type") == new_dt["type"]
            and old.get("accessMode", "rw") == new["accessMode"]
            and (old_dt.get("specs") or {}).get("unit") == new_dt["specs"].get("unit")
        )
        if not same:
            existing[i] = dict(new)
    doc["properties"] = existing
    return doc


# The MQTT connection ------------------------------------------------------------------------

Received = tuple[str, bytes, int]  # topic, payload, receive time (epoch µs)
Publish = Callable[[str, bytes, bool], None]  # topic, payload, retain: in-process outbound


class _Link:
    """A paho client in its own thread: subscribes, keeps STATE and the will, reconnects.
    Messages go to the event loop in arrival order; Sparkplug's seq rules need that order."""

    def __init__(
        self,
        address: BrokerAddress,
        client_id: str,
        host_id: str,
        loop: asyncio.AbstractEventLoop,
        queue: asyncio.Queue[Received],
    ) -> None:
        import paho.mqtt.client as mqtt

        self._loop = loop
        self._queue = queue
        self.ready = asyncio.Event()
        self.connects = 0
        self.state_topic = state_topic(host_id)
        # Spec 3.0: the will's timestamp is the one of the online STATE that follows it.
        self._born_ms = time.time_ns() // 1_000_000
        kwargs: dict[str, Any] = {}
        api = getattr(mqtt, "CallbackAPIVersion", None)
        if api is not None:  # paho 2; paho 1 has only the one callback style
            kwargs["callback_api_version"] = api.VERSION2
        c = mqtt.Client(client_id=client_id, clean_session=True, **kwargs)
        if address.username:
            c.username_pw_set(address.username, address.password)
        if address.tls:
            c.tls_set()
        c.will_set(self.state_topic, state_payload(False, self._born_ms), qos=1, retain=True)
        c.reconnect_delay_set(1, 30)
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect
        self._client = c
        self._address = address

    def start(self) -> None:
        self._client.connect_async(self._address.host, self._address.port, keepalive=30)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        self._client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self, timeout_s: float = 2.0) -> None:
        with contextlib.suppress(Exception):
            info = self._client.publish(
                self.state_topic, state_payload(False, self._born_ms), qos=1, retain=True
            )
            info.wait_for_publish(timeout_s)
        self._client.disconnect()
        self._client.loop_stop()

    # paho thread ------------------------------------------------------------------------

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, rc: Any, *_: Any) -> None:
        code = getattr(rc, "value", rc)
        if code:
            log.warning("Sparkplug host: broker refused the connection (%s)", rc)
            return
        # Spec 3.0 host order: subscribe (spBv1.0/# covers our own STATE), then go online.
        client.subscribe(f"{NAMESPACE}/#", qos=1)
        client.publish(self.state_topic, state_payload(True, self._born_ms), qos=1, retain=True)

    def _on_subscribe(self, *_: Any) -> None:
        self.connects += 1
        self._loop.call_soon_threadsafe(self.ready.set)

    def _on_disconnect(self, *args: Any) -> None:
        self._loop.call_soon_threadsafe(self.ready.clear)
        log.info("Sparkplug host: disconnected from the broker; reconnecting")

    def _on_message(self, _client: Any, _userdata: Any, msg: Any) -> None:
        item = (msg.topic, bytes(msg.payload), time.time_ns() // 1000)
        with contextlib.suppress(RuntimeError):  # the loop is closing
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)


# The host ------------------------------------------------------------------------------------


class SparkplugHost:
    """``await start()`` then ``await stop()``; ``ready`` is set while subscribed."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        ingest: IngestService,
        *,
        groups: Mapping[str, str],
        host_id: str = "yugong",
        broker_url: str | None = None,
        client_id: str | None = None,
        rebirth_interval_s: float = 5.0,
        publish: Publish | None = None,
    ) -> None:
        url = broker_url or settings.mqtt_url
        if not url and publish is None:
            raise ValueError("the Sparkplug host needs an MQTT broker (settings.mqtt_url)")
        if "/" in host_id or "+" in host_id or "#" in host_id:
            raise ValueError(f"host id may not contain '/', '+' or '#': {host_id!r}")
        # In-process (embedded broker): messages come through handle(), replies go to publish.
        self._publish = publish
        self.address = BrokerAddress.parse(url) if url and publish is None else None
        self.registry = registry
        self.ingest = ingest
        self.groups = dict(groups)
        self.host_id = host_id
        self.client_id = client_id or f"yugong-sparkplug-{uuid.uuid4().hex[:8]}"
        self.rebirth_interval_s = rebirth_interval_s
        self.stats = HostStats()
        self._nodes: dict[tuple[str, str], _NodeState] = {}
        self._tenants: dict[str, int] = {}
        self._rlog = RateLimitedLog(log)
        self._queue: asyncio.Queue[Received] = asyncio.Queue()
        self._link: _Link | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        # Downlink: registry device -> (node key, Sparkplug device id; None for the node).
        self._where: dict[int, tuple[tuple[str, str], str | None]] = {}
        self._pending: dict[_WriteKey, asyncio.Future[WriteAnswer]] = {}
        self._write_locks: dict[_WriteKey, asyncio.Lock] = {}
        self._ready = asyncio.Event()  # in-process mode
        self._born_ms = time.time_ns() // 1_000_000

    @property
    def ready(self) -> asyncio.Event:
        if self._publish is not None:
            return self._ready
        if self._link is None:
            raise RuntimeError("the Sparkplug host is not started")
        return self._link.ready

    async def start(self) -> None:
        if self._publish is not None:
            self._publish(state_topic(self.host_id), state_payload(True, self._born_ms), True)
            self._ready.set()
            return
        assert self.address is not None
        self._link = _Link(
            self.address, self.client_id, self.host_id, asyncio.get_running_loop(), self._queue
        )
        self._link.start()
        self._task = asyncio.create_task(self._consume(), name="sparkplug-host")

    async def stop(self) -> None:
        """Go offline (STATE), handle what already arrived, then end. Idempotent."""
        if self._publish is not None and not self._stopped:
            self._stopped = True
            self._ready.clear()
            self._publish(state_topic(self.host_id), state_payload(False, self._born_ms), True)
        if self._link is not None and not self._stopped:
            self._stopped = True
            await asyncio.to_thread(self._link.stop)
        if self._task is not None:
            await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _consume(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _DRAIN and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self.handle_many(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    # Messages ------------------------------------------------------------------------------

    async def handle(
        self,
        topic: str,
        payload: bytes,
        received_us: int | None = None,
        *,
        tenant: int | None = None,
    ) -> None:
        """Handle one Sparkplug message. ``tenant``: the publisher's own tenant, known when
        the broker authenticated it (then a non-empty ``groups`` mapping must map the group
        to that same tenant)."""
        at = received_us if received_us is not None else now_us()
        await self.handle_many([(topic, payload, at)], tenant=tenant)

    async def handle_many(self, messages: Sequence[Received], *, tenant: int | None = None) -> None:
        """Handle messages in arrival order. DATA of consecutive messages is ingested as one
        batch, written before the next birth or death is handled."""
        data: list[_Data] = []
        for topic, payload, at in messages:
            try:
                item = await self._one(topic, payload, at, tenant, data)
            except Exception:
                self._count("error")
                log.exception("Sparkplug message on %s failed", topic)
                continue
            if item is not None:
                data.append(item)
        await self._flush(data)

    async def _one(
        self, topic: str, payload: bytes, at: int, tenant: int | None, data: list[_Data]
    ) -> _Data | None:
        """One message: DATA comes back to be ingested with its neighbours; anything else
        is handled here, after the DATA before it is written."""
        try:
            t = Topic.parse(topic)
        except YugongError:
            self._reject("bad_topic", f"unexpected topic {topic!r}")
            return None
        kind = t.message_type
        if kind in (MessageType.STATE, MessageType.NCMD, MessageType.DCMD):
            return None  # other hosts' state and commands (ours included) are not data
        self.stats.messages += 1
        if tenant is not None and self.groups:
            if await self._tenant(t.group_id) != tenant:
                tenant = None
        elif tenant is None:
            tenant = await self._tenant(t.group_id)
        if tenant is None:
            self.stats.unknown_group += 1
            self._rlog.warning(
                f"group:{t.group_id}",
                f"Sparkplug group {t.group_id!r} is not mapped to a tenant; message refused",
            )
            return None
        try:
            pb = parse_pb(payload)
        except YugongError as exc:
            self._reject("malformed", f"{topic}: {exc.detail}")
            return None
        key = (t.group_id, t.edge_node_id)
        node = self._nodes.get(key)
        if node is None or node.tenant != tenant:
            node = self._nodes[key] = _NodeState(tenant)
        if kind in (MessageType.NDATA, MessageType.DDATA):
            if not self._in_sequence(t, node, pb):
                return None
            state = node.gateway if t.device_id is None else node.devices.get(t.device_id)
            if state is None:
                self._ask_rebirth(t, node, "DATA before its birth")
                return None
            return self._data(t, node, state, pb, at)
        await self._flush(data)
        data.clear()
        if kind is MessageType.NBIRTH:
            await self._nbirth(t, node, pb, at)
        elif kind is MessageType.NDEATH:
            await self._ndeath(t, node, payload_from_pb(pb), at)
        elif not self._in_sequence(t, node, pb):
            return None
        elif kind is MessageType.DBIRTH:
            await self._dbirth(t, node, pb, at)
        elif kind is MessageType.DDEATH:
            await self._ddeath(t, node, at)
        return None

    def _in_sequence(self, t: Topic, node: _NodeState, pb: Any) -> bool:
        """Check ``seq`` after NBIRTH; False when the message cannot be used at all."""
        if node.gateway is None:
            self._ask_rebirth(t, node, f"{t.message_type} before NBIRTH")
            return False
        if not pb.HasField("seq"):
            self._reject("malformed", f"{t}: {t.message_type} without seq")
            return False
        seq = int(pb.seq)
        expected = (node.seq + 1) % 256 if node.seq is not None else seq
        node.seq = seq
        if seq != expected:
            # Something was lost: the host's view may be wrong, so ask for all of it again.
            # The message itself is still good data under the births we know.
            self.stats.seq_gaps += 1
            self._ask_rebirth(t, node, f"seq {seq}, expected {expected}")
        return True

    async def _nbirth(self, t: Topic, node: _NodeState, pb: Any, at: int) -> None:
        p = payload_from_pb(pb)
        try:
            bd = p.metric(BDSEQ).value
        except KeyError:
            self._reject("malformed", f"{t}: NBIRTH without bdSeq")
            return
        metrics = [m for m in p.metrics if m.name is not None and not _is_protocol(m.name)]
        try:
            state = await asyncio.to_thread(
                self._provision, node.tenant, t.edge_node_id, None, metrics, None
            )
        except YugongError as exc:
            self._reject(str(getattr(exc, "reason", "refused")), f"{t}: {exc.detail}")
            return
        node.gateway = state
        self._where[state.device] = ((t.group_id, t.edge_node_id), None)
        node.bd_seq = int(bd) if bd is not None else None
        node.seq = p.seq if p.seq is not None else 0
        node.devices.clear()  # a new session: devices are born again after it
        self.stats.births += 1
        await self._flush([self._data(t, node, state, pb, at, birth=True)])

    async def _dbirth(self, t: Topic, node: _NodeState, pb: Any, at: int) -> None:
        assert node.gateway is not None and t.device_id is not None
        metrics = [m for m in payload_from_pb(pb).metrics if m.name is not None]
        product = next(
            (m.value for m in metrics if m.name == PRODUCT_METRIC and isinstance(m.value, str)),
            None,
        )
        metrics = [m for m in metrics if m.name != PRODUCT_METRIC]
        try:
            state = await asyncio.to_thread(
                self._provision,
                node.tenant,
                t.device_id,
                node.gateway.device,
                metrics,
                product or product_key(t.edge_node_id, t.device_id),
            )
        except YugongError as exc:
            self._reject(str(getattr(exc, "reason", "refused")), f"{t}: {exc.detail}")
            return
        node.devices[t.device_id] = state
        self._where[state.device] = ((t.group_id, t.edge_node_id), t.device_id)
        self.stats.births += 1
        await self._flush([self._data(t, node, state, pb, at, birth=True)])

    async def _ndeath(self, t: Topic, node: _NodeState, p: Payload, at: int) -> None:
        try:
            bd = p.metric(BDSEQ).value
        except KeyError:
            bd = None
        if node.gateway is None or (node.bd_seq is not None and bd != node.bd_seq):
            # A will from a session we no longer (or never) saw born: nothing to end.
            self._count("stale_death")
            return
        devices = [node.gateway.device, *(d.device for d in node.devices.values())]
        node.gateway, node.seq, node.bd_seq = None, None, None
        self._fail_pending(t, None, f"edge node '{t.edge_node_id}' went offline")
        node.devices.clear()
        await self._dead(node.tenant, devices, at)

    async def _ddeath(self, t: Topic, node: _NodeState, at: int) -> None:
        assert t.device_id is not None
        state = node.devices.pop(t.device_id, None)
        self._fail_pending(t, t.device_id, f"device '{t.device_id}' went offline")
        if state is not None:
            await self._dead(node.tenant, [state.device], at)

    async def _dead(self, tenant: int, devices: list[int], at: int) -> None:
        """Devices offline; each of their series gets a BAD sample at ``at`` (stale)."""
        self.stats.deaths += 1
        series: list[int] = []
        for d in devices:
            b = self.ingest.directory.by_id(d)
            if b is not None:
                series.extend(pb.series for pb in b.properties.values())
        if series:
            batch = make_batch(tenant, np.asarray(series, dtype=np.int32), at, quality=Quality.BAD)
            await self.ingest.writer.submit(batch)
            self.ingest.bus.publish(SAMPLES_TOPIC, batch)
        await asyncio.to_thread(self._offline, devices)

    def _offline(self, devices: list[int]) -> None:
        # Touches already queued would set them online again: write those first.
        self.registry.directory.flush_seen()
        with self.registry.db.session() as s:
            s.execute(
                update(Device)
                .where(Device.id.in_(devices))
                .values(online=False)
                .execution_options(synchronize_session=False)
            )

    def _data(
        self,
        t: Topic,
        node: _NodeState,
        state: _DeviceState,
        pb: Any,
        at: int,
        *,
        birth: bool = False,
    ) -> _Data:
        """A message's values by timestamp (the metric's, else the payload's); a metric the
        birth did not declare asks for a rebirth (the edge node's model changed under us)."""
        default_ms = pb.timestamp if pb.HasField("timestamp") else at // 1000
        by_ts: dict[int, dict[str, Any]] = {}
        unknown = 0
        answers = False
        for raw in pb.metrics:
            if raw.HasField("name"):
                name = raw.name
                if _is_protocol(name) or name == PRODUCT_METRIC or name in state.skipped:
                    continue
                meta = state.by_name.get(name)
            else:
                meta = state.by_alias.get(raw.alias) if raw.HasField("alias") else None
            if meta is None:
                if not raw.HasField("alias") or raw.alias not in state.skipped_aliases:
                    unknown += 1
                continue
            if raw.HasField("properties"):  # quality or a write's answer: the full decode
                m = metric_from_pb(raw)
                status = _write_status(m)
                answers = answers or status is not None
                if status not in (None, "ok"):
                    continue  # a failed write's null is the edge's answer, not a reading
                value = _stored(m.value, m.quality, m.datatype, meta.datatype)
                said_bad = QUALITY_PROPERTY in m.properties
            else:
                own = raw.datatype
                value = _stored(metric_value(raw, own), Quality.GOOD, own, meta.datatype)
                said_bad = False
            if value is None and birth and not said_bad:
                continue  # a birth's null declares the metric; it is not a reading
            ts = (raw.timestamp if raw.HasField("timestamp") else default_ms) * 1000
            values = by_ts.get(ts)
            if values is None:
                values = by_ts[ts] = {}
            values[meta.identifier] = value
        if unknown and not birth:
            self._ask_rebirth(t, node, f"{unknown} metric(s) not in the birth")
        entries = [TelemetryEntry(ts, values) for ts, values in by_ts.items()]
        answer = payload_from_pb(pb) if answers and self._pending and not birth else None
        return _Data(t, state, entries, answer, not birth)

    async def _flush(self, data: list[_Data]) -> None:
        """Ingest the values of these messages as one batch (each accepted or refused
        whole), then hand write answers to their waiting callers."""
        if not data:
            return
        items: list[tuple[DeviceBinding, list[TelemetryEntry]]] = []
        where: list[_Data] = []
        for d in data:
            binding = self.ingest.directory.by_id(d.state.device)
            if binding is None:
                self._reject("unknown_device", f"{d.topic}: device {d.state.device} is gone")
            elif d.entries:
                items.append((binding, d.entries))
                where.append(d)
            else:
                self.ingest.directory.touch([binding.device], now_us())
        if items:
            outcome = await self.ingest.ingest_entries(items)
            self.stats.points += outcome.points
            for i, exc in outcome.rejected:
                detail = getattr(exc, "detail", str(exc))
                self._reject(str(getattr(exc, "reason", "invalid")), f"{where[i].topic}: {detail}")
        for d in data:
            self.stats.data += d.is_data
            if d.answer is not None:
                self._answer(d.topic, d.state, d.answer)

    def _ask_rebirth(self, t: Topic, node: _NodeState, why: str) -> None:
        now = time.monotonic()
        if node.rebirth_asked and now - node.rebirth_asked < self.rebirth_interval_s:
            return
        node.rebirth_asked = now
        if self._link is None and self._publish is None:
            return
        ms = time.time_ns() // 1_000_000
        cmd = Payload(
            metrics=(Metric(REBIRTH, DataType.Boolean, True, timestamp=ms),), timestamp=ms
        )
        topic = Topic(t.group_id, MessageType.NCMD, t.edge_node_id)
        if self._publish is not None:
            self._publish(str(topic), encode_payload(cmd), False)
        elif self._link is not None:
            self._link.publish(str(topic), encode_payload(cmd))
        self.stats.rebirths_requested += 1
        log.info("Sparkplug: asked %s/%s for a rebirth (%s)", t.group_id, t.edge_node_id, why)

    # Downlink -------------------------------------------------------------------------------

    def downlink(self, device: int) -> str | None:
        """Why ``device`` cannot take writes through this host now, or None when it can."""
        where = self._where.get(device)
        if where is None:
            return "it is not a device behind a Sparkplug edge node seen by this platform"
        (group, edge), name = where
        node = self._nodes.get((group, edge))
        if name is None:
            return f"it is Sparkplug edge node '{edge}' itself; only its devices take writes"
        if node is None or node.gateway is None:
            return f"its Sparkplug edge node '{edge}' is offline"
        state = node.devices.get(name)
        if state is None or state.device != device:
            return f"device '{name}' is offline on Sparkplug edge node '{edge}'"
        if self._publish is None and (self._link is None or not self._link.ready.is_set()):
            return "the platform is not connected to the MQTT broker"
        return None

    async def write(
        self, device: int, identifier: str, value: Any, timeout_s: float
    ) -> WriteAnswer:
        """Publish a DCMD setting one metric of ``device`` and wait for the edge node's
        answer (a DDATA of that metric carrying ``writeStatus``). Raises :class:`Conflict`
        when the device has no downlink now or goes offline while waiting, and
        :class:`TimeoutError` when no answer comes in ``timeout_s``. Writes to the same
        metric are sent one at a time: the answer carries no request id."""
        why = self.downlink(device)
        if why is not None:
            raise Conflict(f"device {device} cannot take writes: {why}")
        (group, edge), name = self._where[device]
        assert name is not None
        key: _WriteKey = (group, edge, name, identifier)
        lock = self._write_locks.setdefault(key, asyncio.Lock())
        async with lock:
            why = self.downlink(device)  # it may have gone while we queued
            if why is not None:
                raise Conflict(f"device {device} cannot take writes: {why}")
            meta = self._nodes[(group, edge)].devices[name].by_identifier.get(identifier)
            if meta is None:
                raise Conflict(
                    f"device '{name}' declared no metric for property '{identifier}' in its birth",
                    [FieldError("property", "not a metric of the device's Sparkplug birth")],
                )
            future: asyncio.Future[WriteAnswer] = asyncio.get_running_loop().create_future()
            self._pending[key] = future
            try:
                ms = time.time_ns() // 1_000_000
                # After a birth the alias stands for the name (Sparkplug 3.0 aliasing).
                metric = Metric(
                    None if meta.alias is not None else meta.name,
                    DataType(meta.datatype),
                    value,
                    alias=meta.alias,
                    timestamp=ms,
                )
                try:
                    encoded = encode_payload(Payload((metric,), ms))
                except YugongError as exc:  # the value does not fit the metric's datatype
                    raise InvalidInput(
                        f"property '{identifier}' of device '{name}': {exc.detail}",
                        [FieldError("value", f"does not fit {DataType(meta.datatype).name}")],
                    ) from None
                topic = Topic(group, MessageType.DCMD, edge, name)
                if self._publish is not None:
                    self._publish(str(topic), encoded, False)
                else:
                    assert self._link is not None
                    self._link.publish(str(topic), encoded)
                return await asyncio.wait_for(future, timeout_s)
            finally:
                if self._pending.get(key) is future:
                    del self._pending[key]

    def _answer(self, t: Topic, state: _DeviceState, p: Payload) -> None:
        for m in p.metrics:
            status = _write_status(m)
            if status is None:
                continue
            meta = state.by_name.get(m.name) if m.name is not None else None
            if meta is None and m.alias is not None:
                meta = state.by_alias.get(m.alias)
            if meta is None:
                continue
            key = (t.group_id, t.edge_node_id, t.device_id or "", meta.identifier)
            future = self._pending.pop(key, None)
            if future is not None and not future.done():
                message = m.properties.get("writeMessage")
                if isinstance(message, tuple):
                    message = message[1]
                future.set_result(WriteAnswer(status, str(message or "")))

    def _fail_pending(self, t: Topic, device: str | None, why: str) -> None:
        for key in [k for k in self._pending if k[:2] == (t.group_id, t.edge_node_id)]:
            if device is None or key[2] == device:
                future = self._pending.pop(key)
                if not future.done():
                    future.set_exception(Conflict(why))

    async def _tenant(self, group: str) -> int | None:
        slug = self.groups.get(group)
        if slug is None:
            return None
        tenant = self._tenants.get(slug)
        if tenant is None:
            tenant = await asyncio.to_thread(self._find_tenant, slug)
            if tenant is not None:
                self._tenants[slug] = tenant
        return tenant

    def _find_tenant(self, slug: str) -> int | None:
        offset = 0
        while True:
            page = self.registry.tenants.list(SYSTEM, limit=500, offset=offset)
            for t in page.items:
                if t.slug == slug:
                    return t.id if t.active else None
            offset += len(page.items)
            if not page.items or offset >= page.total:
                return None

    # Provisioning (worker thread) -----------------------------------------------------------

    def _provision(
        self,
        tenant: int,
        name: str,
        gateway: int | None,
        metrics: Sequence[Metric],
        key: str | None,
    ) -> _DeviceState:
        """Find or create the device (a gateway when ``gateway`` is None) and bring its thing
        model up to the birth's metrics. ``key`` names the product of a new child device."""
        props = {}
        for m in metrics:
            prop = tsl_property(m)
            if prop is not None:
                props[prop["identifier"]] = prop
        node = gateway is None
        binding = self.registry.directory.by_name(tenant, name)
        if binding is not None:
            if node and not binding.is_gateway:
                raise _refuse(
                    "not_gateway",
                    f"device '{name}' exists and is not a gateway; it cannot be edge node '{name}'",
                )
            if not node and binding.gateway != gateway:
                raise _refuse("not_child", f"device '{name}' is not behind this edge node")
            self._update_model(tenant, binding.product, list(props.values()))
            device = binding.device
        else:
            product = self._product(tenant, key or product_key(name), name, node)
            self._update_model(tenant, product, list(props.values()))
            try:
                device = self.registry.devices.create(
                    SYSTEM,
                    name=name,
                    product_id=product,
                    gateway_id=gateway,
                    is_gateway=node,
                    tenant_id=tenant,
                ).device.id
            except Conflict:  # created meanwhile by someone else: use it if it fits
                return self._provision(tenant, name, gateway, metrics, key)
            log.info(
                "Sparkplug: provisioned %s '%s' in tenant %d",
                "edge node" if node else "device",
                name,
                tenant,
            )
        state = _DeviceState(device)
        for m in metrics:
            assert m.name is not None
            if m.datatype not in _TSL_TYPES:
                state.skipped.add(m.name)
                if m.alias is not None:
                    state.skipped_aliases.add(m.alias)
                continue
            meta = _Metric(identifier_for(m.name), int(m.datatype), m.name, m.alias)
            state.by_name[m.name] = meta
            state.by_identifier[meta.identifier] = meta
            if m.alias is not None:
                state.by_alias[m.alias] = meta
        return state

    def _product(self, tenant: int, key: str, name: str, is_gateway: bool) -> int:
        products = self.registry.products
        found = products.list(SYSTEM, tenant_id=tenant, search=key, limit=1000)
        for pr in found.items:
            if pr.key == key:
                return pr.id
        try:
            return products.create(
                SYSTEM, key=key, name=name, is_gateway=is_gateway, tenant_id=tenant
            ).id
        except Conflict:
            return self._product(tenant, key, name, is_gateway)

    def _update_model(self, tenant: int, product: int, props: list[dict[str, Any]]) -> None:
        if not props:
            return
        rec = self.registry.products.get(SYSTEM, product, tenant_id=tenant)
        doc = merge_model(rec.tsl, props)
        if doc != rec.tsl:
            self.registry.products.update_model(SYSTEM, product, doc, tenant_id=tenant)

    # Counting ------------------------------------------------------------------------------

    def _count(self, reason: str) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1

    def _reject(self, reason: str, detail: str) -> None:
        self._count(reason)
        self._rlog.warning(reason, f"Sparkplug message refused: {detail}")


_WriteKey = tuple[str, str, str, str]  # group, edge node, device, property identifier


def _write_status(m: Metric) -> str | None:
    status = m.properties.get("writeStatus")
    if isinstance(status, tuple):
        status = status[1]
    return str(status) if status is not None else None


def _refuse(reason: str, msg: str) -> Rejected:
    return Rejected(msg, [FieldError("device", msg)], reason=reason)


def _stored(v: Any, quality: Quality, own: int, datatype: int) -> Any:
    """The value ingest stores for a metric of birth type ``datatype`` that arrived as
    ``v`` of type ``own``: None (BAD) for a null or BAD-quality reading."""
    if v is None or quality == Quality.BAD:
        return None
    if datatype == DataType.Boolean:
        return bool(v)
    bits = _SIGNED_BITS.get(datatype)
    if bits is not None and own == DataType.Unknown and isinstance(v, int):
        # DATA may leave the type to the birth; signed values then arrive unsigned.
        v &= (1 << bits) - 1
        return v - (1 << bits) if v >= 1 << (bits - 1) else v
    if isinstance(v, bytes | bytearray):
        return None
    return v


__all__ = [
    "HostStats",
    "SparkplugHost",
    "WriteAnswer",
    "identifier_for",
    "merge_model",
    "product_key",
    "tsl_property",
]
