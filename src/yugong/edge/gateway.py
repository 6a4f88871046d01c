"""The gateway runtime: connectors -> processing pipeline -> store-and-forward buffer -> uplink.

Connectors call the sink from their device tasks; the sink runs the pipeline (on the event
loop, one batch at a time, so stateful steps need no lock) and queues the result. One writer
task drains the queue and appends everything queued so far as one buffer entry: one
transaction (and fsync) per drain, not per device poll. The bounded queue is the
backpressure: when the disk is slow, device tasks wait at the sink instead of piling up
memory. The uplink reads from the buffer on its own schedule; the buffer is the only hand-off
between them, so an uplink outage never stalls polling.

Health: every ``health.interval`` seconds the gateway appends its own points (device
``health.device``, by default ``<gateway>-health``) straight to the buffer, past the pipeline so
deadbands never hide them.

Protocols register in :data:`CONNECTORS` by module path; a protocol's module is imported only
when a config uses it, so a missing optional dependency breaks that protocol, not startup.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import pyarrow as pa

from yugong.core.timeutil import now_us
from yugong.edge.buffer import BufferFull, StoreForwardBuffer
from yugong.edge.config import GatewayConfig, ResolvedConnector, resolve
from yugong.edge.connectors.base import Connector, Sink, WriteResult, WriteStatus
from yugong.edge.connectors.simulator import Signal, SimulatedDevice
from yugong.edge.processing import Pipeline, build_pipeline
from yugong.edge.samples import edge_batch

log = logging.getLogger("yugong.edge.gateway")

_QUEUE_BATCHES = 1024
_MAX_DRAIN_ROWS = 200_000  # one buffer entry stays a manageable size


# --------------------------------------------------------------------------- connector table
ConnectorFactory = Callable[[ResolvedConnector, Sink], Connector]


def _modbus(rc: ResolvedConnector, sink: Sink) -> Connector:
    from yugong.edge.connectors.modbus import ModbusConnector

    return ModbusConnector(rc.name, rc.profiles, sink, **rc.config.options)


def _simulator(rc: ResolvedConnector, sink: Sink) -> Connector:
    from yugong.edge.connectors.simulator import SimulatorConnector

    # A simulator profile's points become signals with default generators.
    devices = list(rc.simulated) + [
        SimulatedDevice(
            p.name,
            tuple(Signal(pt.property, writable=pt.access == "rw") for pt in p.points),
            p.poll_groups().get("default", 1_000_000) / 1e6 if p.points else 1.0,
        )
        for p in rc.profiles
    ]
    return SimulatorConnector(rc.name, devices, sink, seed=rc.config.seed, **rc.config.options)


def _by_path(module: str, cls: str, options: str | None = None) -> ConnectorFactory:
    """A factory for ``cls(name, profiles, sink, ...)`` in ``module``, imported on first use.

    With ``options`` (the name of the module's pydantic options model), the connector's
    ``options`` mapping is validated into it and passed as ``options=``; without, its keys
    are passed as keyword arguments.
    """

    def factory(rc: ResolvedConnector, sink: Sink) -> Connector:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            raise RuntimeError(
                f"connector {rc.name}: protocol {rc.config.protocol} is not available ({exc})"
            ) from exc
        klass: Any = getattr(mod, cls)
        kwargs: dict[str, Any] = dict(rc.config.options)
        if options is not None and kwargs:
            kwargs = {"options": getattr(mod, options).model_validate(kwargs)}
        connector: Connector = klass(rc.name, rc.profiles, sink, **kwargs)
        return connector

    return factory


#: protocol -> factory; lazy imports keep optional protocols optional.
CONNECTORS: dict[str, ConnectorFactory] = {
    "modbus": _modbus,
    "simulator": _simulator,
    "opcua": _by_path("yugong.edge.connectors.opcua", "OpcUaConnector"),
    "mqtt_json": _by_path(
        "yugong.edge.connectors.mqtt_json", "MqttJsonConnector", "MqttJsonOptions"
    ),
    "http_json": _by_path(
        "yugong.edge.connectors.http_json", "HttpJsonConnector", "HttpJsonOptions"
    ),
}


# --------------------------------------------------------------------------- uplink
@runtime_checkable
class Uplink(Protocol):
    """Forwards what is in the buffer northbound; acks an entry only once it is delivered."""

    async def start(self) -> None: ...

    async def run(self, buffer: StoreForwardBuffer) -> None:
        """Forward from ``buffer`` until cancelled (replaying any backlog first, in order)."""

    async def stop(self) -> None: ...


class NullUplink:
    """Forwards nothing: the buffer keeps every sample (tests, or a gateway that only logs)."""

    async def start(self) -> None:
        return None

    async def run(self, buffer: StoreForwardBuffer) -> None:
        await asyncio.Event().wait()

    async def stop(self) -> None:
        return None


class LogUplink:
    """Drains the buffer into the log (one line per entry) and acks it: a dry run."""

    def __init__(self, batch_rows: int = 10_000, idle_s: float = 0.2) -> None:
        self.batch_rows = batch_rows
        self.idle_s = idle_s
        self.delivered_rows = 0

    async def start(self) -> None:
        return None

    async def run(self, buffer: StoreForwardBuffer) -> None:
        while True:
            entries = await buffer.peek_async(self.batch_rows)
            if not entries:
                await asyncio.sleep(self.idle_s)
                continue
            for entry_id, table in entries:
                log.info("uplink(log): entry %d, %d rows", entry_id, table.num_rows)
                self.delivered_rows += table.num_rows
            await buffer.ack_async(entries[-1][0])

    async def stop(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """What a birth certificate needs to know about one point."""

    point: str
    datatype: str  # profile data type (float64 when the profile does not say)
    unit: str | None
    writable: bool


def build_uplink(gateway: EdgeGateway) -> Uplink:
    """The uplink the config names; Sparkplug's module is imported only when used.

    The Sparkplug module provides ``from_gateway(gateway) -> Uplink``; it reads
    ``gateway.config.uplink``, ``gateway.catalog()`` (births) and calls ``gateway.write``
    for commands.
    """
    kind = gateway.config.uplink.kind
    if kind == "none":
        return NullUplink()
    if kind == "log":
        return LogUplink(gateway.config.uplink.batch_rows)
    # Lazy: the MQTT client and protobuf are loaded only when a Sparkplug uplink is used.
    sparkplug = importlib.import_module("yugong.edge.uplink")
    make: Any = getattr(sparkplug, "from_gateway", None)
    if make is None:
        raise RuntimeError("the Sparkplug uplink (yugong.edge.uplink) has no from_gateway()")
    built: Uplink = make(gateway)
    return built


# --------------------------------------------------------------------------- health
@dataclass(frozen=True, slots=True)
class Health:
    connectors: int
    devices: int
    devices_online: int
    poll_latency_ms_max: float
    poll_latency_ms_avg: float
    points_read: int
    bad_points: int
    errors: int
    dropped_messages: int
    buffer_rows: int
    buffer_batches: int
    buffer_bytes: int
    dropped_rows: int
    refused_rows: int
    sink_dropped_rows: int

    def batch(self, device: str, ts_us: int) -> pa.Table:
        names = list(self.__slots__)
        return edge_batch(device, names, ts_us, [float(getattr(self, n)) for n in names])


# --------------------------------------------------------------------------- the gateway
class EdgeGateway:
    """Runs one gateway config. ``start()``/``stop()``, or ``run()`` until cancelled."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        uplink: Uplink | None = None,
        connectors: Sequence[ResolvedConnector] | None = None,
    ) -> None:
        self.config = config
        self.resolved = list(connectors) if connectors is not None else resolve(config)
        self.pipeline: Pipeline = build_pipeline(config.processing)
        self._uplink = uplink
        self.uplink: Uplink | None = None
        self.buffer: StoreForwardBuffer | None = None
        self.connectors: dict[str, Connector] = {}
        self._owner: dict[str, Connector] = {}  # device -> connector
        self._queue: asyncio.Queue[pa.Table | None] = asyncio.Queue(_QUEUE_BATCHES)
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self.sink_dropped_rows = 0  # rows the buffer refused (policy refuse_new)
        self.pipeline_errors = 0

    # -- lifecycle
    async def start(self) -> None:
        if self._started:
            return
        bc = self.config.buffer
        path = bc.path if bc.path.is_absolute() else self.config.base_dir / bc.path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.buffer = await asyncio.to_thread(
            StoreForwardBuffer,
            path,
            max_bytes=bc.max_bytes,
            policy=bc.policy,
            synchronous=bc.synchronous,
            on_corrupt=bc.on_corrupt,
        )
        self._started = True
        self._tasks.append(asyncio.create_task(self._writer(), name="gateway:buffer-writer"))
        try:
            for rc in self.resolved:
                connector = CONNECTORS[rc.config.protocol](rc, self._sink)
                self.connectors[rc.name] = connector
                for device in rc.device_names:
                    self._owner[device] = connector
            self.uplink = self._uplink or build_uplink(self)
            await self.uplink.start()
            self._tasks.append(asyncio.create_task(self._forward(), name="gateway:uplink"))
            for connector in self.connectors.values():
                await connector.start()
            if self.config.health.interval > 0:
                self._tasks.append(asyncio.create_task(self._health(), name="gateway:health"))
        except BaseException:
            await self.stop()
            raise
        log.info(
            "gateway %s started: %d connectors, %d devices, buffer %s",
            self.config.gateway,
            len(self.connectors),
            len(self._owner),
            path,
        )

    async def stop(self) -> None:
        """Stop polling, flush the pipeline and queue into the buffer, then stop the uplink."""
        if not self._started:
            return
        self._started = False
        for connector in self.connectors.values():
            with contextlib.suppress(Exception):
                await connector.stop()
        for task in self._tasks:
            if task.get_name() == "gateway:health":
                task.cancel()
        try:
            held = self.pipeline.flush()  # open windows: emitted, not lost
            if held.num_rows:
                await self._queue.put(held)
        except Exception:
            log.exception("gateway %s: flushing the pipeline failed", self.config.gateway)
        await self._queue.put(None)  # the writer drains everything before it
        writer = self._tasks[0]
        with contextlib.suppress(asyncio.CancelledError):
            await writer
        if self.buffer is not None and self.config.health.interval > 0:
            with contextlib.suppress(Exception):
                await self._append(self.health().batch(self.config.health_device, now_us()))
        # The uplink first, while its task still runs: it sends an orderly death (Sparkplug
        # NDEATH) so the platform knows at once, not when the keepalive runs out.
        if self.uplink is not None:
            with contextlib.suppress(Exception):
                await self.uplink.stop()
        for task in self._tasks[1:]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.buffer is not None:
            await asyncio.to_thread(self.buffer.close)
        log.info("gateway %s stopped", self.config.gateway)

    async def run(self) -> None:
        """Start, run until cancelled, stop gracefully."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(self.stop())

    async def __aenter__(self) -> EdgeGateway:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- what the uplink announces
    def catalog(self) -> dict[str, list[MetricInfo]]:
        """Device -> its points, for birth certificates (health points included)."""
        out: dict[str, list[MetricInfo]] = {}
        for rc in self.resolved:
            for p in rc.profiles:
                out[p.name] = [
                    MetricInfo(pt.property, pt.type or "float64", pt.unit, pt.access == "rw")
                    for pt in p.points
                ]
            for d in rc.simulated:
                out[d.name] = [MetricInfo(s.point, "float64", None, s.writable) for s in d.signals]
        # Computed and aggregated points are not listed: they are known only once produced,
        # so an uplink must accept points that are not in the catalog.
        out[self.config.health_device] = [
            MetricInfo(n, "float64", None, False) for n in Health.__slots__
        ]
        return out

    # -- downlink
    async def write(self, device: str, point: str, value: float | bool | str) -> WriteResult:
        connector = self._owner.get(device)
        if connector is None:
            return WriteResult(WriteStatus.INVALID, f"unknown device {device!r}")
        return await connector.write(device, point, value)

    # -- data path
    async def _sink(self, batch: pa.Table) -> None:
        try:
            out = self.pipeline(batch)
        except Exception:
            # A processing fault must not lose the raw readings: forward them unprocessed.
            self.pipeline_errors += 1
            if self.pipeline_errors == 1:
                log.exception(
                    "gateway %s: the pipeline failed; forwarding raw", self.config.gateway
                )
            out = batch
        if out.num_rows:
            await self._queue.put(out)

    async def _writer(self) -> None:
        done = False
        while not done:
            first = await self._queue.get()
            if first is None:
                break
            tables, rows = [first], first.num_rows
            while rows < _MAX_DRAIN_ROWS:
                try:
                    nxt = self._queue.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is None:
                    done = True
                    break
                tables.append(nxt)
                rows += nxt.num_rows
            await self._append(pa.concat_tables(tables) if len(tables) > 1 else first)

    async def _append(self, table: pa.Table) -> None:
        assert self.buffer is not None
        try:
            await self.buffer.append_async(table)
        except BufferFull:
            self.sink_dropped_rows += table.num_rows
        except Exception:
            self.sink_dropped_rows += table.num_rows
            log.exception("gateway %s: buffer append failed", self.config.gateway)

    async def _forward(self) -> None:
        assert self.uplink is not None and self.buffer is not None
        while True:
            try:
                await self.uplink.run(self.buffer)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gateway %s: uplink failed; restarting it", self.config.gateway)
                await asyncio.sleep(1.0)

    # -- health
    def health(self) -> Health:
        stats = [c.stats() for c in self.connectors.values()]
        devices = [d for s in stats for d in s.devices.values()]
        online = [d for d in devices if d.available]
        lat = [d.last_poll_latency_ms for d in online]
        bs = self.buffer.stats() if self.buffer is not None else None
        return Health(
            connectors=len(stats),
            devices=len(devices),
            devices_online=len(online),
            poll_latency_ms_max=max(lat, default=0.0),
            poll_latency_ms_avg=sum(lat) / len(lat) if lat else 0.0,
            points_read=sum(d.points_read for d in devices),
            bad_points=sum(d.bad_points for d in devices),
            errors=sum(d.errors for d in devices),
            dropped_messages=sum(d.dropped for d in devices),
            buffer_rows=bs.depth.rows if bs else 0,
            buffer_batches=bs.depth.batches if bs else 0,
            buffer_bytes=bs.depth.bytes if bs else 0,
            dropped_rows=bs.dropped_rows if bs else 0,
            refused_rows=bs.refused_rows if bs else 0,
            sink_dropped_rows=self.sink_dropped_rows,
        )

    async def _health(self) -> None:
        interval = self.config.health.interval
        device = self.config.health_device
        next_at = time.monotonic() + interval
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += interval
            try:
                h = await asyncio.to_thread(self.health)
                await self._queue.put(h.batch(device, now_us()))
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("gateway %s: health metrics failed", self.config.gateway)
