"""OPC UA connector (asyncua): read polling, subscriptions, browse and write.

Polling reads every point of a group in one Read request. Subscriptions create one
subscription per device with a monitored item per point (sampling interval from the point's
group, deadband as a DataChangeFilter); publish responses are collected as plain lists by a
publish callback (no task or handler call per change) and each poll of the subscription group
drains them into one edge batch. Either way the DataValues of a request become one batch:
values, status severities and timestamps are converted column by column (Arrow/NumPy), with
a per-element fallback only for values that are not plain numbers.

Security: policy None or Basic256Sha256 (Sign / SignAndEncrypt) with a client certificate
and private key, optionally the server's certificate; user/password or anonymous.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from asyncua import Client, ua
from asyncua.client.ua_client import UaClientState
from asyncua.common.subscription import Subscription
from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256

from yugong.core.quality import Quality
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
from yugong.edge.profiles import DeviceProfile, OpcUaConnection, Point
from yugong.edge.samples import EDGE_SCHEMA

log = logging.getLogger("yugong.edge.connectors.opcua")

SUBSCRIPTION_GROUP = "subscription"
_ITEMS_PER_REQUEST = 1000  # monitored items created per CreateMonitoredItems request
_TS_TYPE = pa.timestamp("us", tz="UTC")


def status_name(code: int) -> str:
    """The symbolic name of an OPC UA status code, e.g. BadNotWritable."""
    try:
        return str(ua.status_codes.get_name_and_doc(code)[0])
    except KeyError:
        return f"0x{code:08X}"


def _quality(codes: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint8]:
    # The two top bits of a status code are its severity: 00 good, 01 uncertain, 1x bad.
    severity = codes >> 30
    return np.where(
        severity == 0, Quality.GOOD, np.where(severity == 1, Quality.UNCERTAIN, Quality.BAD)
    ).astype(np.uint8)


def _as_float(v: Any) -> float:
    if isinstance(v, bool | int | float) and not isinstance(v, str):
        return float(v)
    return math.nan


def _is_number(v: Any) -> bool:
    return isinstance(v, bool | int | float)


# --------------------------------------------------------------------------- points
@dataclass(frozen=True, slots=True)
class _Points:
    """The device's points as columns, indexed by row (= client handle of monitored items)."""

    properties: list[str]
    node_ids: list[ua.NodeId]
    device: pa.Array  # the device name, one per point
    point: pa.Array
    scale: npt.NDArray[np.float64]
    offset: npt.NDArray[np.float64]
    is_text: npt.NDArray[np.bool_]  # profile says string: always text

    def convert(
        self,
        rows: npt.NDArray[np.int64],
        raw: Sequence[Any],
        codes: Sequence[int],
        stamps: Sequence[datetime | None],
        received_us: int,
    ) -> pa.Table:
        """DataValues of the given rows (parallel lists) -> one edge batch."""
        n = len(rows)
        quality = _quality(np.fromiter(codes, np.uint32, n))
        ts_arr = pa.array(stamps, _TS_TYPE).cast(pa.int64()).fill_null(received_us)
        text_rows = self.is_text[rows]
        try:
            # The common case: every value is a number or a bool (None makes this fail).
            values = np.asarray(raw, dtype=np.float64)
            if values.shape != (n,):
                raise ValueError("not scalars")
            text: list[str | None] | None = None
        except (TypeError, ValueError):
            values = np.fromiter((_as_float(v) for v in raw), np.float64, n)
            text = [None if v is None or _is_number(v) else _to_text(v) for v in raw]
        if text_rows.any():
            if text is None:
                text = [None] * n
            for i in np.flatnonzero(text_rows).tolist():
                v = raw[i]
                text[i] = None if v is None else _to_text(v)
            values[text_rows] = np.nan
        values = values * self.scale[rows] + self.offset[rows]
        values[quality == Quality.BAD] = np.nan
        if text is not None:
            text = [None if q == Quality.BAD else t for t, q in zip(text, quality, strict=True)]
        take = pa.array(rows)
        return pa.Table.from_arrays(
            [
                self.device.take(take),
                self.point.take(take),
                ts_arr,
                pa.array(values, pa.float64(), from_pandas=True),
                pa.nulls(n, pa.string()) if text is None else pa.array(text, pa.string()),
                pa.array(quality),
            ],
            schema=EDGE_SCHEMA,
        )


def _to_text(v: Any) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, ua.LocalizedText):
        return v.Text or ""
    if isinstance(v, bytes):
        return v.hex()
    return str(v)


def _points(device: str, points: Sequence[Point]) -> _Points:
    node_ids: list[ua.NodeId] = []
    for p in points:
        try:
            node_ids.append(ua.NodeId.from_string(p.node or ""))
        except Exception as exc:
            raise ValueError(
                f"device {device}: point {p.property}: bad node id {p.node!r}"
            ) from exc
    n = len(points)
    return _Points(
        properties=[p.property for p in points],
        node_ids=node_ids,
        device=pa.array([device] * n, pa.string()),
        point=pa.array([p.property for p in points], pa.string()),
        scale=np.array([p.scale for p in points], np.float64),
        offset=np.array([p.offset for p in points], np.float64),
        is_text=np.array([p.type == "string" for p in points], np.bool_),
    )


# --------------------------------------------------------------------------- client setup
def _cert_uri(path: Path) -> str | None:
    """The application URI in a certificate's subjectAltName (servers check it matches)."""
    from cryptography import x509

    data = path.read_bytes()
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        cert = x509.load_der_x509_certificate(data)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


async def open_client(conn: OpcUaConnection) -> Client:
    """Connect a client with the connection's security and identity; raise on failure."""
    client = Client(conn.endpoint, timeout=conn.timeout)
    if conn.username is not None:
        client.set_user(conn.username)
        client.set_password(conn.password or "")
    if conn.security_policy == "Basic256Sha256":
        if conn.certificate is None or conn.private_key is None:
            raise ValueError("security policy Basic256Sha256 needs certificate and private_key")
        mode = (
            ua.MessageSecurityMode.Sign
            if conn.security_mode == "Sign"
            else ua.MessageSecurityMode.SignAndEncrypt
        )
        uri = _cert_uri(conn.certificate)
        if uri:
            client.application_uri = uri
        await client.set_security(
            SecurityPolicyBasic256Sha256,
            certificate=str(conn.certificate),
            private_key=str(conn.private_key),
            server_certificate=None
            if conn.server_certificate is None
            else str(conn.server_certificate),
            mode=mode,
        )
    try:
        async with asyncio.timeout(conn.timeout * 2 + 1):
            await client.connect()
    except BaseException:
        await _disconnect(client)
        raise
    return client


async def _disconnect(client: Client) -> None:
    try:
        async with asyncio.timeout(1.0):
            await client.disconnect()
    except Exception:  # a dead server cannot be told goodbye; drop the socket
        try:
            client.disconnect_socket()
        except Exception:
            log.debug("closing the socket failed", exc_info=True)


def _describe_ua(exc: BaseException) -> str:
    if isinstance(exc, ua.UaStatusCodeError):
        return f"{status_name(exc.code)}: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --------------------------------------------------------------------------- subscription
class _CollectingSubscription(Subscription):
    """A subscription whose publish callback only appends to column lists."""

    def __init__(self, server: Any, params: ua.CreateSubscriptionParameters) -> None:
        super().__init__(server, params, handler=None, queue_maxsize=1)
        self.handles: list[int] = []
        self.values: list[Any] = []
        self.codes: list[int] = []
        self.stamps: list[datetime | None] = []
        self.lost: str | None = None  # set when the server reports the subscription gone
        self.received = 0

    async def publish_callback(self, publish_result: ua.PublishResult) -> None:
        self.last_publish_at = asyncio.get_running_loop().time()
        data = publish_result.NotificationMessage.NotificationData
        if not data:
            return
        handles, values, codes, stamps = self.handles, self.values, self.codes, self.stamps
        for notif in data:
            if isinstance(notif, ua.DataChangeNotification):
                for item in notif.MonitoredItems:
                    dv = item.Value
                    handles.append(item.ClientHandle)
                    variant = dv.Value
                    values.append(None if variant is None else variant.Value)
                    status = dv.StatusCode
                    codes.append(0 if status is None else status.value)
                    stamps.append(dv.SourceTimestamp or dv.ServerTimestamp)
                self.received += len(notif.MonitoredItems)
            elif isinstance(notif, ua.StatusChangeNotification) and not notif.Status.is_good():
                self.lost = status_name(notif.Status.value)

    def drain(self) -> tuple[list[int], list[Any], list[int], list[datetime | None]]:
        out = self.handles, self.values, self.codes, self.stamps
        self.handles, self.values, self.codes, self.stamps = [], [], [], []
        return out


def _filter(p: Point) -> ua.DataChangeFilter | None:
    db = p.deadband
    if db is None:
        return None
    flt = ua.DataChangeFilter()
    flt.Trigger = ua.DataChangeTrigger.StatusValue
    if db.absolute is not None:
        flt.DeadbandType = ua.DeadbandType.Absolute
        flt.DeadbandValue = float(db.absolute)
    else:
        flt.DeadbandType = ua.DeadbandType.Percent  # of the node's EURange, by the server
        flt.DeadbandValue = float(db.percent or 0.0)
    return flt


# --------------------------------------------------------------------------- session
class OpcUaSession(DeviceSession):
    """One OPC UA server from a device profile: polled groups or one subscription."""

    def __init__(self, profile: DeviceProfile, *, subscribe: bool | None = None) -> None:
        if not isinstance(profile.connection, OpcUaConnection):
            raise ValueError(f"device {profile.name}: protocol {profile.protocol} is not opcua")
        self.name = profile.name
        self.profile = profile
        self.conn: OpcUaConnection = profile.connection
        self.subscribe = self.conn.subscribe if subscribe is None else subscribe
        self.stats = DeviceStats()
        self._pts = _points(self.name, profile.points)
        self._row = {p: i for i, p in enumerate(self._pts.properties)}
        intervals = profile.poll_groups()
        self._interval_ms = np.array(
            [intervals[p.group or ""] / 1000.0 for p in profile.points], np.float64
        )
        self._group_rows: dict[str, npt.NDArray[np.int64]] = {}
        if self.subscribe:
            # Changes are collected as they are published; the group's poll hands them on
            # at the fastest sampling interval (and notices a lost connection).
            flush = float(self._interval_ms.min()) / 1000.0 if len(self._interval_ms) else 1.0
            self._group_rows[SUBSCRIPTION_GROUP] = np.arange(len(self._pts.properties))
            self.groups = [PollGroup(SUBSCRIPTION_GROUP, flush, tuple(self._pts.properties))]
        else:
            groups: list[PollGroup] = []
            for g, us in intervals.items():
                rows = [i for i, p in enumerate(profile.points) if p.group == g]
                self._group_rows[g] = np.array(rows, np.int64)
                groups.append(PollGroup(g, us / 1e6, tuple(self._pts.properties[i] for i in rows)))
            self.groups = groups
        self._client: Client | None = None
        self._sub: _CollectingSubscription | None = None
        self._failed_items: list[int] = []  # monitored items the server refused: BAD once
        self._vtypes: dict[int, ua.VariantType] = {}  # row -> variant type for writes

    # -- connection
    @property
    def connected(self) -> bool:
        c = self._client
        return c is not None and c.uaclient.state is UaClientState.CONNECTED

    async def connect(self) -> None:
        await self.close()
        try:
            self._client = await open_client(self.conn)
        except (TimeoutError, OSError) as exc:
            raise DeviceUnreachable(
                f"cannot connect to {self.conn.endpoint}: {_describe_ua(exc)}"
            ) from exc
        if self.subscribe:
            try:
                await self._create_subscription()
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        client, self._client, self._sub = self._client, None, None
        if client is not None:
            await _disconnect(client)

    async def _create_subscription(self) -> None:
        client = self._client
        assert client is not None
        params = ua.CreateSubscriptionParameters()
        params.RequestedPublishingInterval = self.groups[0].interval_s * 1000.0
        params.RequestedLifetimeCount = 10000
        params.RequestedMaxKeepAliveCount = client.get_keepalive_count(
            params.RequestedPublishingInterval
        )
        params.MaxNotificationsPerPublish = 0  # no limit: a publish carries every change
        params.PublishingEnabled = True
        params.Priority = 0
        sub = _CollectingSubscription(client.uaclient.session, params)
        await sub.init()
        requests: list[ua.MonitoredItemCreateRequest] = []
        for row, (p, node_id) in enumerate(
            zip(self.profile.points, self._pts.node_ids, strict=True)
        ):
            rv = ua.ReadValueId()
            rv.NodeId = node_id
            rv.AttributeId = ua.AttributeIds.Value
            mp = ua.MonitoringParameters()
            mp.ClientHandle = row
            mp.SamplingInterval = float(self._interval_ms[row])
            mp.QueueSize = 1
            mp.DiscardOldest = True
            flt = _filter(p)
            if flt is not None:
                mp.Filter = flt
            mir = ua.MonitoredItemCreateRequest()
            mir.ItemToMonitor = rv
            mir.MonitoringMode = ua.MonitoringMode.Reporting
            mir.RequestedParameters = mp
            requests.append(mir)
        failed: list[int] = []
        for start in range(0, len(requests), _ITEMS_PER_REQUEST):
            chunk = requests[start : start + _ITEMS_PER_REQUEST]
            results = await sub.create_monitored_items(chunk)
            for k, res in enumerate(results):
                if isinstance(res, ua.StatusCode):
                    row = start + k
                    failed.append(row)
                    log.warning(
                        "device %s: cannot monitor %s (%s): %s",
                        self.name,
                        self._pts.properties[row],
                        self.profile.points[row].node,
                        status_name(res.value),
                    )
        self._failed_items = failed
        self._sub = sub

    # -- reads
    async def read_datavalues(self, rows: npt.NDArray[np.int64]) -> list[ua.DataValue]:
        client = self._require()
        params = ua.ReadParameters()
        params.TimestampsToReturn = ua.TimestampsToReturn.Both
        ids = self._pts.node_ids
        for r in rows.tolist():
            rv = ua.ReadValueId()
            rv.NodeId = ids[r]
            rv.AttributeId = ua.AttributeIds.Value
            params.NodesToRead.append(rv)
        return await self._call(client.uaclient.read(params))

    async def poll(self, group: PollGroup) -> PollResult:
        if self.subscribe:
            return self._drain()
        rows = self._group_rows[group.name]
        dvs = await self.read_datavalues(rows)
        received = now_us()
        batch = self._pts.convert(
            rows,
            [None if dv.Value is None else dv.Value.Value for dv in dvs],
            [0 if dv.StatusCode is None else dv.StatusCode.value for dv in dvs],
            [dv.SourceTimestamp or dv.ServerTimestamp for dv in dvs],
            received,
        )
        self._count(batch)
        return PollResult(batches=[batch])

    def _drain(self) -> PollResult:
        sub = self._sub
        if not self.connected or sub is None:
            raise DeviceUnreachable("connection lost")
        if sub.lost is not None:
            raise DeviceUnreachable(f"subscription lost: {sub.lost}")
        result = PollResult()
        now = now_us()
        if self._failed_items:
            failed, self._failed_items = self._failed_items, []
            result.block_errors.append(f"{len(failed)} monitored items refused by the server")
            bad = self.bad_batch([self._pts.properties[r] for r in failed], now)
            self.stats.bad_points += bad.num_rows
            result.batches.append(bad)
        handles, values, codes, stamps = sub.drain()
        if handles:
            batch = self._pts.convert(np.array(handles, np.int64), values, codes, stamps, now)
            self._count(batch)
            result.batches.append(batch)
        return result

    def _count(self, batch: pa.Table) -> None:
        q = batch.column("quality").to_numpy()
        bad = int(np.count_nonzero(q == Quality.BAD))
        self.stats.points_read += batch.num_rows - bad
        self.stats.bad_points += bad

    def _require(self) -> Client:
        if self._client is None or not self.connected:
            raise DeviceUnreachable("not connected")
        return self._client

    async def _call(self, request: Any) -> Any:
        try:
            async with asyncio.timeout(self.conn.timeout * 2 + 1):
                return await request
        except TimeoutError as exc:
            raise PollTimeout(f"no answer within {self.conn.timeout:g} s") from exc
        except (ConnectionError, OSError) as exc:
            raise DeviceUnreachable(str(exc) or "connection lost") from exc
        except ua.UaStatusCodeError as exc:
            # A service-level refusal (the session or channel is gone) ends the connection.
            raise DeviceUnreachable(_describe_ua(exc)) from exc

    # -- writes
    async def write(self, point: str, value: float | bool | str) -> WriteResult:
        row = self._row.get(point)
        if row is None:
            return WriteResult(WriteStatus.INVALID, f"device {self.name} has no point {point!r}")
        p = self.profile.points[row]
        if p.access != "rw":
            return WriteResult(WriteStatus.INVALID, f"{point} is read-only in the profile")
        vtype = await self._variant_type(row)
        try:
            variant = _variant(p, value, vtype)
        except (TypeError, ValueError) as exc:
            return WriteResult(WriteStatus.INVALID, f"{point}: {exc}")
        client = self._require()
        params = ua.WriteParameters()
        wv = ua.WriteValue()
        wv.NodeId = self._pts.node_ids[row]
        wv.AttributeId = ua.AttributeIds.Value
        wv.Value = ua.DataValue(variant)
        params.NodesToWrite.append(wv)
        results: list[ua.StatusCode] = await self._call(client.uaclient.write(params))
        status = results[0]
        if not status.is_good():
            self.stats.errors += 1
            name = status_name(status.value)
            return WriteResult(
                WriteStatus.DEVICE_ERROR,
                f"device {self.name} refused {point}: {name}",
                code=status.value,
            )
        return WriteResult.ok()

    async def _variant_type(self, row: int) -> ua.VariantType | None:
        # The server checks the variant type against the node's; take it from the node's value.
        if row not in self._vtypes:
            dvs = await self.read_datavalues(np.array([row], np.int64))
            variant = dvs[0].Value
            if variant is None or variant.Value is None:
                return None
            self._vtypes[row] = variant.VariantType
        return self._vtypes[row]


_INT_TYPES = {
    ua.VariantType.SByte,
    ua.VariantType.Byte,
    ua.VariantType.Int16,
    ua.VariantType.UInt16,
    ua.VariantType.Int32,
    ua.VariantType.UInt32,
    ua.VariantType.Int64,
    ua.VariantType.UInt64,
}


def _variant(p: Point, value: float | bool | str, vtype: ua.VariantType | None) -> ua.Variant:
    """The value to write, as the node's type; engineering units back to raw."""
    if vtype is None:
        return ua.Variant(value)
    if vtype == ua.VariantType.Boolean:
        if isinstance(value, str):
            raise ValueError(f"{value!r} is not a boolean")
        return ua.Variant(bool(value), vtype)
    if vtype in (ua.VariantType.String, ua.VariantType.LocalizedText):
        text = str(value)
        return ua.Variant(
            ua.LocalizedText(text) if vtype == ua.VariantType.LocalizedText else text, vtype
        )
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    raw = (float(value) - p.offset) / p.scale
    if vtype in _INT_TYPES:
        if not float(raw).is_integer():
            raise ValueError(f"{value!r} is not a whole number for a {vtype.name} node")
        return ua.Variant(int(raw), vtype)
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        return ua.Variant(float(raw), vtype)
    raise ValueError(f"writing {vtype.name} nodes is not supported")


# --------------------------------------------------------------------------- browse
@dataclass(frozen=True, slots=True)
class DiscoveredNode:
    """A variable found by browsing, with what a profile point needs."""

    node_id: str  # e.g. ns=2;s=Spindle.Speed
    browse_name: str  # e.g. 2:Speed
    path: str  # browse names from the start node, joined by "/"
    data_type: str  # e.g. Double, Boolean, String
    access_level: str  # "r", "rw", "w" or ""

    @property
    def writable(self) -> bool:
        return "w" in self.access_level


async def browse(
    client: Client, start: str = "i=85", *, max_depth: int = 10, include_ns0: bool = False
) -> list[DiscoveredNode]:
    """Every variable under ``start`` (default: Objects), breadth first, one request per level.

    Namespace 0 (the server's own diagnostics) is skipped unless ``include_ns0``.
    """
    level: list[tuple[ua.NodeId, str]] = [(ua.NodeId.from_string(start), "")]
    seen: set[ua.NodeId] = {level[0][0]}
    found: list[tuple[ua.NodeId, str, str]] = []
    for _ in range(max_depth):
        if not level:
            break
        params = ua.BrowseParameters()
        params.View = ua.ViewDescription()
        for node_id, _path in level:
            desc = ua.BrowseDescription()
            desc.NodeId = node_id
            desc.BrowseDirection = ua.BrowseDirection.Forward
            desc.ReferenceTypeId = ua.NodeId(ua.Int32(ua.ObjectIds.HierarchicalReferences))
            desc.IncludeSubtypes = True
            desc.NodeClassMask = ua.NodeClass.Object | ua.NodeClass.Variable
            desc.ResultMask = ua.BrowseResultMask.All
            params.NodesToBrowse.append(desc)
        results = await client.uaclient.browse(params)
        nxt: list[tuple[ua.NodeId, str]] = []
        for (_parent, path), res in zip(level, results, strict=True):
            for ref in res.References:
                nid = ref.NodeId
                if nid in seen or (nid.NamespaceIndex == 0 and not include_ns0):
                    continue
                seen.add(nid)
                bn = ref.BrowseName
                name = f"{bn.NamespaceIndex}:{bn.Name}"
                child = f"{path}/{name}" if path else name
                if ref.NodeClass == ua.NodeClass.Variable:
                    found.append((nid, name, child))
                nxt.append((nid, child))
        level = nxt
    if not found:
        return []
    attrs = await _read_attrs(
        client,
        [n for n, _, _ in found],
        [ua.AttributeIds.DataType, ua.AttributeIds.UserAccessLevel],
    )
    dtypes = [dv.Value.Value if dv.Value is not None else None for dv in attrs[0]]
    names = await _type_names(client, dtypes)
    out: list[DiscoveredNode] = []
    for (nid, name, path), dt, acc in zip(found, dtypes, attrs[1], strict=True):
        level_bits = int(acc.Value.Value) if acc.Value is not None and acc.Value.Value else 0
        access = ("r" if level_bits & ua.AccessLevel.CurrentRead.mask else "") + (
            "w" if level_bits & ua.AccessLevel.CurrentWrite.mask else ""
        )
        out.append(
            DiscoveredNode(nid.to_string(), name, path, names.get(dt, "") if dt else "", access)
        )
    return out


async def _read_attrs(
    client: Client, nodes: list[ua.NodeId], attrs: list[ua.AttributeIds]
) -> list[list[ua.DataValue]]:
    params = ua.ReadParameters()
    for attr in attrs:
        for nid in nodes:
            rv = ua.ReadValueId()
            rv.NodeId = nid
            rv.AttributeId = attr
            params.NodesToRead.append(rv)
    dvs = await client.uaclient.read(params)
    n = len(nodes)
    return [dvs[i * n : (i + 1) * n] for i in range(len(attrs))]


async def _type_names(client: Client, dtypes: Iterable[ua.NodeId | None]) -> dict[ua.NodeId, str]:
    """Data type node ids -> names: built-in types directly, others by their BrowseName."""
    out: dict[ua.NodeId, str] = {}
    unknown: list[ua.NodeId] = []
    for dt in {d for d in dtypes if isinstance(d, ua.NodeId)}:
        if dt.NamespaceIndex == 0 and isinstance(dt.Identifier, int) and 0 < dt.Identifier <= 25:
            out[dt] = ua.VariantType(dt.Identifier).name
        else:
            unknown.append(dt)
    if unknown:
        (names,) = await _read_attrs(client, unknown, [ua.AttributeIds.BrowseName])
        for dt, dv in zip(unknown, names, strict=True):
            qn = dv.Value.Value if dv.Value is not None else None
            out[dt] = qn.Name if isinstance(qn, ua.QualifiedName) else dt.to_string()
    return out


async def browse_endpoint(conn: OpcUaConnection, start: str = "i=85") -> list[DiscoveredNode]:
    """Connect with the connection's settings, browse from ``start``, disconnect."""
    client = await open_client(conn)
    try:
        return await browse(client, start)
    finally:
        await _disconnect(client)


def profile_points(nodes: Iterable[DiscoveredNode]) -> list[dict[str, Any]]:
    """Profile point entries for discovered variables (property names from browse names)."""
    out: list[dict[str, Any]] = []
    used: set[str] = set()
    for n in nodes:
        base = "".join(c if c.isalnum() else "_" for c in n.path.split("/")[-1].split(":", 1)[-1])
        if not base or not (base[0].isalpha() or base[0] == "_"):
            base = f"p_{base}"
        prop, k = base[:64], 2
        while prop in used:
            prop, k = f"{base[:60]}_{k}", k + 1
        used.add(prop)
        entry: dict[str, Any] = {"property": prop, "node": n.node_id}
        if n.data_type in ("String", "LocalizedText"):
            entry["type"] = "string"
            entry["length"] = 255  # characters; profiles ask for a length on strings
        if n.writable:
            entry["access"] = "rw"
        out.append(entry)
    return out


# --------------------------------------------------------------------------- connector
class OpcUaConnector(Connector):
    """OPC UA servers, one client (and at most one subscription) per device."""

    kind = "opcua"

    def __init__(
        self,
        name: str,
        profiles: Sequence[DeviceProfile],
        sink: Sink,
        *,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        super().__init__(name, sink, backoff=backoff)
        wrong = [p.name for p in profiles if p.protocol != "opcua"]
        if wrong:
            raise ValueError(f"{name}: not OPC UA devices: {', '.join(wrong)}")
        self._profiles = list(profiles)
        # asyncua logs each failed connect and lost socket; availability is reported here
        # once per transition, so keep its chatter out unless someone asked for it.
        alog = logging.getLogger("asyncua")
        if alog.level == logging.NOTSET:
            alog.setLevel(logging.CRITICAL)

    def build_sessions(self) -> list[DeviceSession]:
        return [OpcUaSession(p) for p in self._profiles]

    def session(self, device: str) -> OpcUaSession:
        s = self._session(device)
        assert isinstance(s, OpcUaSession)
        return s

    async def browse(self, device: str, start: str = "i=85") -> list[DiscoveredNode]:
        """Browse a connected device's address space (under its lock, between polls)."""
        session = self.session(device)
        async with self._locks[device]:
            return await browse(session._require(), start)
