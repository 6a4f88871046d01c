"""Property tests for everything that parses what a device or user sends.

Arbitrary bytes and JSON never raise anything but the documented error types (PayloadError
/ InvalidInput / YugongError); valid generated payloads come back as the values given.
Parsers: ThingsBoard telemetry and attributes, the TB gateway API (through a real registry
and ingest), the Sparkplug B decoder, and the expression language.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from yugong.core.errors import YugongError
from yugong.core.expr import ExprError, compile_expr
from yugong.edge.sparkplug import DataType, Metric, Payload, decode_payload, encode_payload
from yugong.infra.bus import InProcessBus
from yugong.infra.db import Database
from yugong.infra.migrate import sqlalchemy_url, upgrade
from yugong.infra.timeseries import open_store
from yugong.platform.ingest.gateway import GatewayService
from yugong.platform.ingest.payloads import PayloadError, parse_attributes, parse_telemetry
from yugong.platform.ingest.service import IngestService
from yugong.platform.ingest.writer import BatchedWriter
from yugong.platform.registry.bindings import DeviceBinding
from yugong.platform.registry.service import Registry
from yugong.security.principal import SYSTEM

FUZZ = settings(max_examples=300, deadline=None, database=None)

# JSON values as orjson reads them back (finite floats; integers within 64 bits).
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
keys = st.text(min_size=1, max_size=12)
# Timestamps in ms that are not taken for µs (below 10^14) and past 1970.
ms = st.integers(min_value=0, max_value=99_999_999_999_999)


def as_bytes(doc: Any) -> bytes:
    return orjson.dumps(doc)


# ThingsBoard telemetry and attributes ----------------------------------------------------


@FUZZ
@given(st.binary(max_size=200))
@example(b'{"ts": 1e400, "values": {}}')
@example(b'{"ts": -1e400, "values": {"a": 1}}')
@example(b'{"ts": "9999-12-31T23:59:59-23:59", "values": {}}')
@example(b'{"ts": "0001-01-01T00:00:00+23:59", "values": {}}')
def test_telemetry_bytes_raise_only_payload_errors(raw: bytes) -> None:
    try:
        parse_telemetry(raw)
    except PayloadError as exc:
        assert exc.detail  # says what is wrong


@FUZZ
@given(json_values | st.dictionaries(st.sampled_from(["ts", "values", "a"]), json_values))
def test_telemetry_json_raises_only_payload_errors(doc: Any) -> None:
    try:
        parse_telemetry(as_bytes(doc))
    except PayloadError as exc:
        assert exc.detail


@FUZZ
@given(st.dictionaries(keys, scalars, min_size=1, max_size=6))
def test_flat_telemetry_round_trips(values: dict[str, Any]) -> None:
    (entry,) = parse_telemetry(as_bytes(values))
    assert entry.ts_us is None and entry.values == values


@FUZZ
@given(st.lists(st.tuples(ms, st.dictionaries(keys, scalars, max_size=5)), min_size=1, max_size=5))
def test_ts_values_telemetry_round_trips(items: list[tuple[int, dict[str, Any]]]) -> None:
    doc = [{"ts": ts, "values": values} for ts, values in items]
    entries = parse_telemetry(as_bytes(doc))
    assert [(e.ts_us, e.values) for e in entries] == [(ts * 1000, v) for ts, v in items]


@FUZZ
@given(st.binary(max_size=120) | json_values.map(as_bytes))
def test_attributes_raise_only_payload_errors(raw: bytes) -> None:
    try:
        parse_attributes(raw)
    except PayloadError as exc:
        assert exc.detail


@FUZZ
@given(st.dictionaries(keys, json_values, max_size=6))
def test_attributes_round_trip(attrs: dict[str, Any]) -> None:
    assert parse_attributes(as_bytes(attrs)) == attrs


# The ThingsBoard gateway API, through a real registry, ingest and store ------------------


@dataclass
class GatewayRig:
    loop: asyncio.AbstractEventLoop
    gateway: GatewayService
    binding: DeviceBinding
    child: str
    writer: BatchedWriter

    def handle(self, topic: str, payload: bytes) -> int:
        return self.loop.run_until_complete(self.gateway.handle(self.binding, topic, payload))


@pytest.fixture(scope="module")
def gateway_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayRig]:
    folder: Path = tmp_path_factory.mktemp("gateway")
    url = f"sqlite:///{folder / 'registry.db'}"
    upgrade(url)
    db = Database(sqlalchemy_url(url))
    registry = Registry(db)
    tenant = registry.tenants.create(SYSTEM, name="Fuzz").id
    tsl = {
        "properties": [
            {
                "identifier": "temperature",
                "name": "T",
                "accessMode": "r",
                "dataType": {"type": "float", "specs": {"min": "-40", "max": "125"}},
            }
        ]
    }
    gw_product = registry.products.create(
        SYSTEM, key="gw", name="Gateway", is_gateway=True, tenant_id=tenant
    )
    product = registry.products.create(
        SYSTEM, key="default", name="Sensor", tsl_document=tsl, tenant_id=tenant
    )
    gw = registry.devices.create(SYSTEM, name="gw-1", product_id=gw_product.id, tenant_id=tenant)
    registry.devices.create(
        SYSTEM, name="child-1", product_id=product.id, gateway_id=gw.device.id, tenant_id=tenant
    )
    store = open_store(f"duckdb:///{folder / 'ts.duckdb'}")
    loop = asyncio.new_event_loop()
    writer = BatchedWriter(store, batch_rows=10_000, flush_ms=50)
    loop.run_until_complete(writer.start())
    ingest = IngestService(
        registry.directory,
        writer,
        InProcessBus(),
        attribute_sink=registry.store_client_attributes,
    )
    binding = registry.directory.by_id(gw.device.id)
    assert binding is not None
    try:
        yield GatewayRig(loop, GatewayService(ingest, registry), binding, "child-1", writer)
    finally:
        loop.run_until_complete(writer.close())
        loop.close()
        store.close()
        db.dispose()


topics = st.sampled_from(
    ["v1/gateway/connect", "v1/gateway/disconnect", "v1/gateway/telemetry", "v1/gateway/attributes"]
)


@settings(FUZZ, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    topic=topics,
    raw=st.binary(max_size=120)
    | json_values.map(as_bytes)
    | st.dictionaries(st.sampled_from(["child-1", "device", "type", "x"]), json_values).map(
        as_bytes
    ),
)
def test_gateway_raises_only_yugong_errors(gateway_rig: GatewayRig, topic: str, raw: bytes) -> None:
    try:
        gateway_rig.handle(topic, raw)
    except YugongError as exc:
        assert exc.detail


@settings(FUZZ, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    samples=st.lists(
        st.tuples(ms, st.floats(min_value=-40, max_value=125, allow_nan=False)),
        min_size=1,
        max_size=4,
    )
)
def test_gateway_telemetry_for_its_child_is_accepted(
    gateway_rig: GatewayRig, samples: list[tuple[int, float]]
) -> None:
    doc = {gateway_rig.child: [{"ts": ts, "values": {"temperature": v}} for ts, v in samples]}
    assert gateway_rig.handle("v1/gateway/telemetry", as_bytes(doc)) == 1


# Sparkplug B --------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_sparkplug_bytes_raise_only_invalid_input(raw: bytes) -> None:
    try:
        decode_payload(raw)
    except YugongError as exc:
        assert exc.detail


def _ranged(dtype: DataType, bits: int, signed: bool) -> st.SearchStrategy[Metric]:
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    return st.builds(
        Metric, name=keys, datatype=st.just(dtype), value=st.integers(lo, hi) | st.none()
    )


metrics = st.one_of(
    _ranged(DataType.Int8, 8, True),
    _ranged(DataType.Int16, 16, True),
    _ranged(DataType.Int32, 32, True),
    _ranged(DataType.Int64, 64, True),
    _ranged(DataType.UInt8, 8, False),
    _ranged(DataType.UInt16, 16, False),
    _ranged(DataType.UInt32, 32, False),
    _ranged(DataType.UInt64, 64, False),
    st.builds(
        Metric,
        name=keys,
        datatype=st.just(DataType.Double),
        value=st.floats(allow_nan=False) | st.none(),
        timestamp=ms | st.none(),
    ),
    st.builds(Metric, name=keys, datatype=st.just(DataType.Boolean), value=st.booleans()),
    st.builds(Metric, name=keys, datatype=st.just(DataType.String), value=st.text(max_size=30)),
)


@FUZZ
@given(
    metrics=st.lists(metrics, max_size=6),
    timestamp=ms | st.none(),
    seq=st.integers(0, 255) | st.none(),
)
def test_sparkplug_round_trips(
    metrics: list[Metric], timestamp: int | None, seq: int | None
) -> None:
    sent = Payload(metrics=tuple(metrics), timestamp=timestamp, seq=seq)
    got = decode_payload(encode_payload(sent))
    assert got.timestamp == timestamp and got.seq == seq
    assert [(m.name, m.datatype, m.value, m.timestamp) for m in got.metrics] == [
        (m.name, m.datatype, m.value, m.timestamp) for m in metrics
    ]


# The expression language ----------------------------------------------------------------------

EXPR_TOKENS = [
    "a", "b", "x1", "pi", "nan", "inf", "1", "0", "2.5", "1e308", "9" * 40, "True",
    "+", "-", "*", "/", "//", "%", "**", "<", "<=", "==", "!=", "and", "or", "not",
    "if", "else", "(", ")", ",", " ", "abs", "sqrt", "log", "min", "max", "round", "where",
    "clip", "pow", "atan2", "'s'", ".", "[", "]", "lambda", ":", "__import__",
]  # fmt: skip
expr_texts = st.text(max_size=80) | st.lists(st.sampled_from(EXPR_TOKENS), max_size=30).map("".join)


@pytest.mark.filterwarnings("ignore::SyntaxWarning")  # ast.parse on generated text
@FUZZ
@given(expr_texts)
@example("(" * 250 + "1" + ")" * 250)
@example("-" * 1900 + "1")
@example("not " * 400 + "a")
@example("a" + "**a" * 290)
@example("round(a, 99999999999999999999)")
@example("9" * 400 + "**2")
def test_expressions_raise_only_expr_errors_and_evaluate(text: str) -> None:
    try:
        expr = compile_expr(text)
    except ExprError as exc:
        assert exc.detail
        return
    env = {name: np.array([0.0, 1.5, -2.0, math.nan]) for name in expr.names}
    try:
        out = expr.evaluate(env)
    except ExprError as exc:
        assert exc.detail
        return
    assert out.dtype == np.float64
