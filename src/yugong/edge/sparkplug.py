"""Sparkplug B 3.0 codec: topics, payloads, metric types, seq/bdSeq, edge batches to DATA.

Shared by the gateway's edge node (:mod:`yugong.edge.uplink`) and the platform's primary host.

Payloads are the Eclipse Tahu ``sparkplug_b.proto`` (package ``org.eclipse.tahu.protobuf``)
built here from its field table into a private descriptor pool. Why not a Sparkplug library:
the ones on PyPI pin ``paho-mqtt<2`` (the platform needs paho 2), and a private pool keeps
our classes from colliding with any other copy of the same ``.proto`` loaded in the process.
Extension fields (``*_value`` extensions, ``extensions N to max``) are not declared; protobuf
keeps them as unknown fields, so foreign payloads using them still decode.

Conventions (spec 3.0): timestamps are epoch milliseconds; ``seq`` runs 0..255 and wraps; the
NBIRTH carries ``seq`` 0 and metric ``bdSeq`` (Int64), which the NDEATH will repeats; signed
integers travel as two's complement in the unsigned ``int_value``/``long_value`` fields.
Quality has no field of its own: a reading that is not GOOD carries the property ``Quality``
(Int32, OPC DA codes GOOD=192, UNCERTAIN=64, BAD=0) and a BAD one is sent with ``is_null``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from google.protobuf.message import Message as _PbMessage

from yugong.core.errors import FieldError, InvalidInput
from yugong.core.quality import Quality
from yugong.edge.samples import EDGE_SCHEMA

__all__ = [
    "BDSEQ",
    "NAMESPACE",
    "QUALITY_PROPERTY",
    "REBIRTH",
    "DataType",
    "MessageType",
    "Metric",
    "Payload",
    "PbPayload",
    "SeqCounter",
    "Topic",
    "data_messages",
    "datatype_for",
    "decode_payload",
    "encode_data_by_device",
    "encode_payload",
    "metric_from_pb",
    "metric_value",
    "next_seq",
    "parse_pb",
    "parse_state",
    "payload_from_pb",
    "state_payload",
    "state_topic",
]

NAMESPACE = "spBv1.0"
BDSEQ = "bdSeq"
REBIRTH = "Node Control/Rebirth"
QUALITY_PROPERTY = "Quality"
# OPC DA quality codes, the convention Sparkplug hosts (e.g. Ignition) read from "Quality".
_OPC_QUALITY = {Quality.GOOD: 192, Quality.UNCERTAIN: 64, Quality.BAD: 0}
_QUALITY_FROM_OPC = {192: Quality.GOOD, 64: Quality.UNCERTAIN, 0: Quality.BAD}


class MessageType(enum.StrEnum):
    NBIRTH = "NBIRTH"
    NDEATH = "NDEATH"
    DBIRTH = "DBIRTH"
    DDEATH = "DDEATH"
    NDATA = "NDATA"
    DDATA = "DDATA"
    NCMD = "NCMD"
    DCMD = "DCMD"
    STATE = "STATE"


_DEVICE_TYPES = frozenset(
    {MessageType.DBIRTH, MessageType.DDEATH, MessageType.DDATA, MessageType.DCMD}
)


class DataType(enum.IntEnum):
    """Sparkplug B metric data types (spec 3.0, section 6.4.16)."""

    Unknown = 0
    Int8 = 1
    Int16 = 2
    Int32 = 3
    Int64 = 4
    UInt8 = 5
    UInt16 = 6
    UInt32 = 7
    UInt64 = 8
    Float = 9
    Double = 10
    Boolean = 11
    String = 12
    DateTime = 13
    Text = 14
    UUID = 15
    DataSet = 16
    Bytes = 17
    File = 18
    Template = 19
    PropertySet = 20
    PropertySetList = 21


_INT32_TYPES = frozenset({DataType.Int8, DataType.Int16, DataType.Int32})
_UINT32_TYPES = frozenset({DataType.UInt8, DataType.UInt16, DataType.UInt32})
_INT_BITS = {DataType.Int8: 8, DataType.Int16: 16, DataType.Int32: 32, DataType.Int64: 64}
_UINT_BITS = {DataType.UInt8: 8, DataType.UInt16: 16, DataType.UInt32: 32, DataType.UInt64: 64}
_KNOWN_TYPES = frozenset(int(t) for t in DataType)
_LONG_TYPES = frozenset({DataType.Int64, DataType.UInt64, DataType.DateTime})
_STRING_TYPES = frozenset({DataType.String, DataType.Text, DataType.UUID})
_BYTES_TYPES = frozenset({DataType.Bytes, DataType.File})
_NUMERIC_TYPES = _INT32_TYPES | _UINT32_TYPES | _LONG_TYPES | {DataType.Float, DataType.Double}

# Profile point types (yugong.edge.profiles.DataType) to Sparkplug types.
_PROFILE_TYPES = {
    "bool": DataType.Boolean,
    "bit": DataType.Boolean,
    "int16": DataType.Int16,
    "uint16": DataType.UInt16,
    "int32": DataType.Int32,
    "uint32": DataType.UInt32,
    "int64": DataType.Int64,
    "uint64": DataType.UInt64,
    "float32": DataType.Float,
    "float64": DataType.Double,
    "string": DataType.String,
}


def datatype_for(point_type: str | None, *, scaled: bool = False) -> DataType:
    """The Sparkplug type for a profile point type; a scaled point is a Double, an untyped
    one (e.g. an OPC UA node read as whatever it is) a Double too."""
    if point_type is None or (scaled and point_type not in ("bool", "bit", "string")):
        return DataType.Double
    try:
        return _PROFILE_TYPES[point_type]
    except KeyError:
        raise InvalidInput(
            f"no Sparkplug type for point type {point_type!r}", [FieldError("type", "unknown")]
        ) from None


# --------------------------------------------------------------------------- protobuf schema
_T = descriptor_pb2.FieldDescriptorProto
_OPT, _REP = _T.LABEL_OPTIONAL, _T.LABEL_REPEATED
_SCALARS = {
    "uint32": _T.TYPE_UINT32,
    "uint64": _T.TYPE_UINT64,
    "float": _T.TYPE_FLOAT,
    "double": _T.TYPE_DOUBLE,
    "bool": _T.TYPE_BOOL,
    "string": _T.TYPE_STRING,
    "bytes": _T.TYPE_BYTES,
}
_PKG = "org.eclipse.tahu.protobuf"
# message -> [(name, number, type, repeated, oneof)]; message types are named relative to Payload.
_VALUE_ONEOF = [
    ("int_value", "uint32"),
    ("long_value", "uint64"),
    ("float_value", "float"),
    ("double_value", "double"),
    ("boolean_value", "bool"),
    ("string_value", "string"),
]
_MESSAGES: dict[str, list[tuple[str, int, str, bool, str | None]]] = {
    "Template.Parameter": [
        ("name", 1, "string", False, None),
        ("type", 2, "uint32", False, None),
        *[(n, 3 + i, t, False, "value") for i, (n, t) in enumerate(_VALUE_ONEOF)],
    ],
    "Template": [
        ("version", 1, "string", False, None),
        ("metrics", 2, "Metric", True, None),
        ("parameters", 3, "Template.Parameter", True, None),
        ("template_ref", 4, "string", False, None),
        ("is_definition", 5, "bool", False, None),
    ],
    "DataSet.DataSetValue": [
        (n, 1 + i, t, False, "value") for i, (n, t) in enumerate(_VALUE_ONEOF)
    ],
    "DataSet.Row": [("elements", 1, "DataSet.DataSetValue", True, None)],
    "DataSet": [
        ("num_of_columns", 1, "uint64", False, None),
        ("columns", 2, "string", True, None),
        ("types", 3, "uint32", True, None),
        ("rows", 4, "DataSet.Row", True, None),
    ],
    "PropertyValue": [
        ("type", 1, "uint32", False, None),
        ("is_null", 2, "bool", False, None),
        *[(n, 3 + i, t, False, "value") for i, (n, t) in enumerate(_VALUE_ONEOF)],
        ("propertyset_value", 9, "PropertySet", False, "value"),
        ("propertysets_value", 10, "PropertySetList", False, "value"),
    ],
    "PropertySet": [
        ("keys", 1, "string", True, None),
        ("values", 2, "PropertyValue", True, None),
    ],
    "PropertySetList": [("propertyset", 1, "PropertySet", True, None)],
    "MetaData": [
        ("is_multi_part", 1, "bool", False, None),
        ("content_type", 2, "string", False, None),
        ("size", 3, "uint64", False, None),
        ("seq", 4, "uint64", False, None),
        ("file_name", 5, "string", False, None),
        ("file_type", 6, "string", False, None),
        ("md5", 7, "string", False, None),
        ("description", 8, "string", False, None),
    ],
    "Metric": [
        ("name", 1, "string", False, None),
        ("alias", 2, "uint64", False, None),
        ("timestamp", 3, "uint64", False, None),
        ("datatype", 4, "uint32", False, None),
        ("is_historical", 5, "bool", False, None),
        ("is_transient", 6, "bool", False, None),
        ("is_null", 7, "bool", False, None),
        ("metadata", 8, "MetaData", False, None),
        ("properties", 9, "PropertySet", False, None),
        *[(n, 10 + i, t, False, "value") for i, (n, t) in enumerate(_VALUE_ONEOF)],
        ("bytes_value", 16, "bytes", False, "value"),
        ("dataset_value", 17, "DataSet", False, "value"),
        ("template_value", 18, "Template", False, "value"),
    ],
}
_PAYLOAD_FIELDS = [
    ("timestamp", 1, "uint64", False, None),
    ("metrics", 2, "Metric", True, None),
    ("seq", 3, "uint64", False, None),
    ("uuid", 4, "string", False, None),
    ("body", 5, "bytes", False, None),
]


def _fill(
    msg: descriptor_pb2.DescriptorProto, fields: Iterable[tuple[str, int, str, bool, str | None]]
) -> None:
    oneofs: dict[str, int] = {}
    for name, number, typ, repeated, oneof in fields:
        f = msg.field.add(name=name, number=number, label=_REP if repeated else _OPT)
        if typ in _SCALARS:
            f.type = _SCALARS[typ]
        else:
            f.type = _T.TYPE_MESSAGE
            f.type_name = f".{_PKG}.Payload.{typ}"
        if oneof is not None:
            if oneof not in oneofs:
                oneofs[oneof] = len(msg.oneof_decl)
                msg.oneof_decl.add(name=oneof)
            f.oneof_index = oneofs[oneof]


def _build_payload_class() -> type[_PbMessage]:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="yugong/sparkplug_b.proto", package=_PKG, syntax="proto2"
    )
    payload = fdp.message_type.add(name="Payload")
    _fill(payload, _PAYLOAD_FIELDS)
    payload.extension_range.add(start=6, end=536870912)
    nested: dict[str, descriptor_pb2.DescriptorProto] = {}
    for path in sorted(_MESSAGES, key=lambda p: p.count(".")):
        parent_name, _, leaf = path.rpartition(".")
        parent = nested[parent_name] if parent_name else payload
        nested[path] = parent.nested_type.add(name=leaf)
        _fill(nested[path], _MESSAGES[path])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PKG}.Payload"))


PbPayload: type[_PbMessage] = _build_payload_class()
"""The generated ``org.eclipse.tahu.protobuf.Payload`` class (for callers needing raw access)."""


# --------------------------------------------------------------------------- topics
@dataclass(frozen=True, slots=True)
class Topic:
    """``spBv1.0/{group}/{type}/{edge node}[/{device}]``, or ``spBv1.0/STATE/{host id}``
    (then ``group_id`` holds the host id and the node id is empty)."""

    group_id: str
    message_type: MessageType
    edge_node_id: str = ""
    device_id: str | None = None

    def __post_init__(self) -> None:
        parts = [self.group_id, self.edge_node_id, self.device_id or ""]
        if any(c in p for p in parts for c in "/+#"):
            raise InvalidInput(
                f"Sparkplug ids may not contain '/', '+' or '#': {parts}",
                [FieldError("topic", "invalid id")],
            )
        if self.message_type is not MessageType.STATE:
            if not self.group_id or not self.edge_node_id:
                raise InvalidInput(
                    "group and edge node ids are required", [FieldError("topic", "missing id")]
                )
            if (self.message_type in _DEVICE_TYPES) != bool(self.device_id):
                raise InvalidInput(
                    f"{self.message_type}: device id required for D* messages only",
                    [FieldError("topic", "device id")],
                )

    def __str__(self) -> str:
        if self.message_type is MessageType.STATE:
            return f"{NAMESPACE}/STATE/{self.group_id}"
        base = f"{NAMESPACE}/{self.group_id}/{self.message_type}/{self.edge_node_id}"
        return f"{base}/{self.device_id}" if self.device_id else base

    @classmethod
    def parse(cls, topic: str) -> Topic:
        parts = topic.split("/")
        if len(parts) < 3 or parts[0] != NAMESPACE:
            raise InvalidInput(
                f"not a Sparkplug B topic: {topic!r}", [FieldError("topic", "namespace")]
            )
        if parts[1] == "STATE" and len(parts) == 3:
            return cls(parts[2], MessageType.STATE)
        if len(parts) not in (4, 5):
            raise InvalidInput(
                f"not a Sparkplug B topic: {topic!r}", [FieldError("topic", "levels")]
            )
        try:
            mtype = MessageType(parts[2])
        except ValueError:
            raise InvalidInput(
                f"unknown Sparkplug message type {parts[2]!r} in {topic!r}",
                [FieldError("topic", "message type")],
            ) from None
        return cls(parts[1], mtype, parts[3], parts[4] if len(parts) == 5 else None)


def state_topic(host_id: str) -> str:
    return str(Topic(host_id, MessageType.STATE))


def state_payload(online: bool, timestamp_ms: int) -> bytes:
    """The primary host's STATE body (spec 3.0: JSON, retained, QoS 1)."""
    return json.dumps({"online": online, "timestamp": timestamp_ms}).encode()


def parse_state(data: bytes) -> tuple[bool, int]:
    """``(online, timestamp_ms)`` of a STATE message; malformed bodies are InvalidInput."""
    try:
        doc = json.loads(data)
        online, ts = doc["online"], doc["timestamp"]
    except (ValueError, TypeError, KeyError) as exc:
        raise InvalidInput(
            f"malformed STATE payload: {exc}", [FieldError("payload", "STATE")]
        ) from exc
    if not isinstance(online, bool) or not isinstance(ts, int):
        raise InvalidInput(
            "STATE needs boolean online and integer timestamp", [FieldError("payload", "STATE")]
        )
    return online, ts


# --------------------------------------------------------------------------- seq
def next_seq(seq: int) -> int:
    return (seq + 1) % 256


@dataclass(slots=True)
class SeqCounter:
    """The node's message sequence: NBIRTH resets it to 0, every later message takes the
    next value, 255 wraps to 0."""

    value: int = 255

    def reset(self) -> int:
        self.value = 0
        return 0

    def next(self) -> int:
        self.value = next_seq(self.value)
        return self.value


# --------------------------------------------------------------------------- payload model
@dataclass(frozen=True, slots=True)
class Metric:
    """One metric. ``value`` None means null; ``properties`` map a key to a value whose
    Sparkplug type is inferred (str -> String, bool -> Boolean, int -> Int64, float -> Double)
    or given as ``(DataType, value)``."""

    name: str | None
    datatype: DataType
    value: Any = None
    alias: int | None = None
    timestamp: int | None = None  # ms
    properties: Mapping[str, Any] = field(default_factory=dict)
    is_historical: bool = False
    is_transient: bool = False

    @property
    def quality(self) -> Quality:
        q = self.properties.get(QUALITY_PROPERTY)
        if isinstance(q, tuple):
            q = q[1]
        if q is None:
            return Quality.GOOD
        return _QUALITY_FROM_OPC.get(int(q), Quality.UNCERTAIN)


@dataclass(frozen=True, slots=True)
class Payload:
    metrics: tuple[Metric, ...] = ()
    timestamp: int | None = None  # ms
    seq: int | None = None
    uuid: str | None = None
    body: bytes | None = None

    def metric(self, name: str) -> Metric:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)


def _set_value(target: Any, dtype: DataType, value: Any, where: str) -> None:
    """Put ``value`` into the oneof field matching ``dtype`` (metric or property value)."""
    try:
        if dtype in _INT_BITS or dtype in _UINT_BITS:
            signed = dtype in _INT_BITS
            bits = _INT_BITS[dtype] if signed else _UINT_BITS[dtype]
            n = int(value)
            lo, hi = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
            if not lo <= n < hi:
                raise OverflowError(f"out of range [{lo}, {hi})")
            # Two's complement at the type's own width (as Eclipse Tahu encodes).
            if bits == 64:
                target.long_value = n & 0xFFFFFFFFFFFFFFFF
            else:
                target.int_value = n & ((1 << bits) - 1)
        elif dtype is DataType.DateTime:
            target.long_value = int(value)
        elif dtype is DataType.Float:
            target.float_value = float(value)
        elif dtype is DataType.Double:
            target.double_value = float(value)
        elif dtype is DataType.Boolean:
            target.boolean_value = bool(value)
        elif dtype in _STRING_TYPES:
            target.string_value = str(value)
        elif dtype in _BYTES_TYPES:
            target.bytes_value = bytes(value)
        else:
            raise InvalidInput(
                f"{where}: data type {dtype.name} is not supported", [FieldError(where, "datatype")]
            )
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(
            f"{where}: {value!r} is not a valid {dtype.name}: {exc}", [FieldError(where, "value")]
        ) from exc


def metric_value(pb: Any, dtype: int) -> Any:
    """The Python value of a protobuf metric/property value, signed types sign-extended."""
    which = pb.WhichOneof("value")
    if which is None or getattr(pb, "is_null", False):
        return None
    raw = getattr(pb, which)
    bits = _INT_BITS.get(DataType(dtype)) if dtype in _KNOWN_TYPES else None
    if bits is not None and isinstance(raw, int):
        raw &= (1 << bits) - 1
        if raw >= 1 << (bits - 1):
            raw -= 1 << bits
    elif (
        which == "dataset_value" or which == "template_value" or which.endswith("propertyset_value")
    ):
        return raw  # the protobuf message itself
    return raw


def _property_type(value: Any) -> tuple[DataType, Any]:
    if isinstance(value, tuple):
        return DataType(value[0]), value[1]
    if isinstance(value, bool):
        return DataType.Boolean, value
    if isinstance(value, int):
        return DataType.Int64, value
    if isinstance(value, float):
        return DataType.Double, value
    return DataType.String, str(value)


def _fill_metric(pb: Any, m: Metric) -> None:
    if m.name is not None:
        pb.name = m.name
    if m.alias is not None:
        pb.alias = m.alias
    if m.timestamp is not None:
        pb.timestamp = m.timestamp
    pb.datatype = int(m.datatype)
    if m.is_historical:
        pb.is_historical = True
    if m.is_transient:
        pb.is_transient = True
    if m.properties:
        props = pb.properties
        for key, raw in m.properties.items():
            dtype, value = _property_type(raw)
            props.keys.append(key)
            pv = props.values.add(type=int(dtype))
            if value is None:
                pv.is_null = True
            else:
                _set_value(pv, dtype, value, f"{m.name}.properties.{key}")
    if m.value is None:
        pb.is_null = True
    else:
        _set_value(pb, m.datatype, m.value, m.name or f"alias {m.alias}")


def encode_payload(payload: Payload) -> bytes:
    pb: Any = PbPayload()
    if payload.timestamp is not None:
        pb.timestamp = payload.timestamp
    if payload.seq is not None:
        pb.seq = payload.seq
    if payload.uuid is not None:
        pb.uuid = payload.uuid
    if payload.body is not None:
        pb.body = payload.body
    for m in payload.metrics:
        _fill_metric(pb.metrics.add(), m)
    return bytes(pb.SerializeToString())


def _decode_properties(ps: Any) -> dict[str, Any]:
    return {k: metric_value(v, v.type) for k, v in zip(ps.keys, ps.values, strict=False)}


def parse_pb(data: bytes) -> Any:
    """The protobuf message of a Sparkplug B payload; anything protobuf cannot parse is
    InvalidInput. Hot paths read metrics from it directly; :func:`payload_from_pb` makes the
    plain :class:`Payload`."""
    pb: Any = PbPayload()
    try:
        pb.ParseFromString(data)
    except DecodeError as exc:
        raise InvalidInput(
            f"malformed Sparkplug B payload: {exc}", [FieldError("payload", "protobuf")]
        ) from exc
    return pb


def metric_from_pb(m: Any) -> Metric:
    return Metric(
        name=m.name if m.HasField("name") else None,
        datatype=DataType(m.datatype)
        if m.datatype in DataType._value2member_map_
        else DataType.Unknown,
        value=metric_value(m, m.datatype),
        alias=m.alias if m.HasField("alias") else None,
        timestamp=m.timestamp if m.HasField("timestamp") else None,
        properties=_decode_properties(m.properties) if m.HasField("properties") else {},
        is_historical=m.is_historical,
        is_transient=m.is_transient,
    )


def payload_from_pb(pb: Any) -> Payload:
    return Payload(
        metrics=tuple(metric_from_pb(m) for m in pb.metrics),
        timestamp=pb.timestamp if pb.HasField("timestamp") else None,
        seq=pb.seq if pb.HasField("seq") else None,
        uuid=pb.uuid if pb.HasField("uuid") else None,
        body=pb.body if pb.HasField("body") else None,
    )


def decode_payload(data: bytes) -> Payload:
    """Parse a Sparkplug B payload; anything protobuf cannot parse is InvalidInput."""
    return payload_from_pb(parse_pb(data))


# --------------------------------------------------------------------------- edge batches
def data_messages(
    batch: pa.Table,
    datatypes: Mapping[tuple[str, str], DataType],
    *,
    timestamp_ms: int,
    aliases: Mapping[tuple[str, str], int] | None = None,
    skipped: list[tuple[str, str]] | None = None,
) -> list[tuple[str, Any]]:
    """An edge batch (:data:`EDGE_SCHEMA`) as one DDATA protobuf message per device (sorted by
    device name), ``seq`` left unset so the sender numbers them at publish time.

    Columns are converted once (vectorised ms timestamps, null masks); each row still gets
    one protobuf metric, which is inherent to the format. ``datatypes`` gives each
    ``(device, point)``'s birth type; a row for a point not in it is refused (it was never
    born), or, when ``skipped`` is given, left out and its key appended there. With
    ``aliases`` metrics carry the alias instead of the name (spec: smaller DATA).
    """
    if batch.schema.remove_metadata() != EDGE_SCHEMA:
        batch = batch.select(EDGE_SCHEMA.names).cast(EDGE_SCHEMA)
    out: list[tuple[str, Any]] = []
    if batch.num_rows == 0:
        return out
    dev_col = batch.column("device").combine_chunks()
    uniq = sorted(pc.unique(dev_col).to_pylist())
    enc = pc.index_in(dev_col, value_set=pa.array(uniq, pa.string())).to_numpy()
    order = np.argsort(enc, kind="stable")
    bounds = np.searchsorted(enc[order], np.arange(len(uniq) + 1))
    points = batch.column("point").to_pylist()
    ts_ms = (batch.column("ts").to_numpy() // 1000).tolist()
    value_arr = batch.column("value").combine_chunks()
    values = value_arr.fill_null(0.0).to_numpy(zero_copy_only=False).tolist()
    value_null = value_arr.is_null().to_numpy(zero_copy_only=False).tolist()
    texts = batch.column("text").to_pylist()
    quality = batch.column("quality").to_numpy().tolist()
    with_value = _NUMERIC_TYPES | {DataType.Boolean}
    for d, device in enumerate(uniq):
        pb: Any = PbPayload()
        pb.timestamp = timestamp_ms
        for i in order[bounds[d] : bounds[d + 1]].tolist():
            key = (device, points[i])
            dtype = datatypes.get(key)
            if dtype is None:
                if skipped is None:
                    raise InvalidInput(
                        f"metric {points[i]!r} of device {device!r} was not in its birth",
                        [FieldError("point", "not born")],
                    )
                skipped.append(key)
                continue
            m = pb.metrics.add()
            alias = aliases.get(key) if aliases is not None else None
            if alias is None:
                m.name = points[i]
            else:
                m.alias = alias
            m.timestamp = ts_ms[i]
            m.datatype = dtype
            q = quality[i]
            if q != Quality.GOOD:
                props = m.properties
                props.keys.append(QUALITY_PROPERTY)
                props.values.add(type=DataType.Int32, int_value=_OPC_QUALITY.get(Quality(q), 0))
            if dtype in _STRING_TYPES:
                if texts[i] is None or q == Quality.BAD:
                    m.is_null = True
                else:
                    m.string_value = texts[i]
            elif value_null[i] or q == Quality.BAD or dtype not in with_value:
                m.is_null = True
            else:
                v = values[i]
                if dtype is DataType.Double:
                    m.double_value = v
                elif dtype is DataType.Float:
                    m.float_value = v
                elif dtype is DataType.Boolean:
                    m.boolean_value = v != 0.0
                else:
                    _set_value(m, dtype, round(v), points[i])
        if len(pb.metrics):
            out.append((device, pb))
    return out


def encode_data_by_device(
    batch: pa.Table,
    datatypes: Mapping[tuple[str, str], DataType],
    *,
    seq: SeqCounter,
    timestamp_ms: int,
    aliases: Mapping[tuple[str, str], int] | None = None,
) -> list[tuple[str, bytes, int]]:
    """:func:`data_messages` serialised, each taking the next ``seq``:
    ``(device, payload, seq)`` triples."""
    out: list[tuple[str, bytes, int]] = []
    for device, pb in data_messages(batch, datatypes, timestamp_ms=timestamp_ms, aliases=aliases):
        pb.seq = seq.next()
        out.append((device, bytes(pb.SerializeToString()), int(pb.seq)))
    return out
