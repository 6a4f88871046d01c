"""Sparkplug B codec: checked against pysparkplug (an independent Sparkplug implementation)."""

from __future__ import annotations

import datetime
import math

import pysparkplug as psp
import pytest
from pysparkplug import _protobuf as psp_pb

from yugong.core.errors import InvalidInput
from yugong.core.quality import Quality
from yugong.edge import sparkplug as sp
from yugong.edge.samples import edge_batch

T = sp.DataType


@pytest.mark.parametrize(
    ("dtype", "value"),
    [
        (T.Int8, -128),
        (T.Int8, 127),
        (T.Int16, -5),
        (T.Int32, -(2**31)),
        (T.Int64, -(2**63)),
        (T.Int64, 2**63 - 1),
        (T.UInt8, 255),
        (T.UInt16, 65535),
        (T.UInt32, 2**32 - 1),
        (T.UInt64, 2**64 - 1),
        (T.Float, 1.5),
        (T.Double, -2.25e300),
        (T.Boolean, True),
        (T.String, "héllo"),
        (T.DateTime, 1_700_000_000_000),
        (T.Bytes, b"\x00\x01"),
    ],
)
def test_value_round_trip_and_foreign_decoder(dtype: sp.DataType, value: object) -> None:
    data = sp.encode_payload(sp.Payload((sp.Metric("m", dtype, value, timestamp=9),), 10, 3))
    ours = sp.decode_payload(data).metric("m")
    assert ours.value == value and ours.datatype is dtype
    theirs = psp.NData.decode(data)
    assert theirs.seq == 3 and theirs.timestamp == 10
    got = theirs.metrics[0].value
    if isinstance(got, datetime.datetime):  # pysparkplug decodes DateTime to datetime
        got = round(got.timestamp() * 1000)
    assert got == value
    assert int(theirs.metrics[0].datatype) == int(dtype)


def test_foreign_payload_decodes() -> None:
    birth = psp.NBirth(
        timestamp=5,
        seq=0,
        metrics=(
            psp.Metric(timestamp=5, name="bdSeq", datatype=psp.DataType.INT64, value=7),
            psp.Metric(timestamp=5, name="t", datatype=psp.DataType.INT16, value=-300, alias=4),
            psp.Metric(timestamp=5, name="n", datatype=psp.DataType.DOUBLE, value=None),
        ),
    )
    p = sp.decode_payload(birth.encode())
    assert p.seq == 0 and p.timestamp == 5
    assert p.metric("bdSeq").value == 7
    assert (p.metric("t").value, p.metric("t").alias) == (-300, 4)
    assert p.metric("n").value is None


def test_properties_read_by_foreign_protobuf() -> None:
    m = sp.Metric("t", T.Double, 1.0, properties={"engUnit": "°C", "readOnly": True, "n": 3})
    raw = psp_pb.Payload()
    raw.ParseFromString(sp.encode_payload(sp.Payload((m,))))
    props = raw.metrics[0].properties
    assert list(props.keys) == ["engUnit", "readOnly", "n"]
    assert props.values[0].string_value == "°C" and props.values[0].type == T.String
    assert props.values[1].boolean_value is True
    assert props.values[2].long_value == 3 and props.values[2].type == T.Int64
    assert sp.decode_payload(raw.SerializeToString()).metric("t").properties["engUnit"] == "°C"


@pytest.mark.parametrize(("dtype", "value"), [(T.Int8, 128), (T.UInt16, -1), (T.Int32, "x")])
def test_bad_values_name_the_metric(dtype: sp.DataType, value: object) -> None:
    with pytest.raises(InvalidInput, match="speed"):
        sp.encode_payload(sp.Payload((sp.Metric("speed", dtype, value),)))


def test_malformed_payload() -> None:
    with pytest.raises(InvalidInput, match="malformed Sparkplug"):
        sp.decode_payload(b"\xff\xff\xff")


def test_topics() -> None:
    t = sp.Topic.parse("spBv1.0/plant/DDATA/gw1/pump")
    assert (t.group_id, t.message_type, t.edge_node_id, t.device_id) == (
        "plant",
        sp.MessageType.DDATA,
        "gw1",
        "pump",
    )
    assert str(t) == "spBv1.0/plant/DDATA/gw1/pump"
    assert str(sp.Topic("g", sp.MessageType.NBIRTH, "n")) == "spBv1.0/g/NBIRTH/n"
    assert sp.state_topic("scada") == "spBv1.0/STATE/scada"
    assert sp.Topic.parse("spBv1.0/STATE/scada").group_id == "scada"
    for bad in (
        "spAv1.0/g/NDATA/n",
        "spBv1.0/g/NOPE/n",
        "spBv1.0/g/DDATA/n",
        "spBv1.0/g/NDATA/n/d",
    ):
        with pytest.raises(InvalidInput):
            sp.Topic.parse(bad)
    with pytest.raises(InvalidInput):
        sp.Topic("a/b", sp.MessageType.NDATA, "n")


def test_state() -> None:
    assert sp.parse_state(sp.state_payload(True, 42)) == (True, 42)
    for bad in (b"nope", b'{"online": "yes", "timestamp": 1}', b'{"online": true}'):
        with pytest.raises(InvalidInput, match="STATE"):
            sp.parse_state(bad)


def test_seq_wraps() -> None:
    c = sp.SeqCounter()
    assert c.reset() == 0
    assert [c.next() for _ in range(256)][-2:] == [255, 0]
    assert sp.next_seq(255) == 0


def test_batch_to_ddata_per_device() -> None:
    batch = edge_batch(
        ["b", "a", "b", "a", "a"],
        ["x", "y", "x", "s", "flag"],
        [1_000_999, 2_000_000, 3_000_000, 4_000_000, 5_000_000],
        [1.5, -7.0, math.nan, 0.0, 1.0],
        text=[None, None, None, "hi", None],
        quality=[Quality.GOOD, Quality.UNCERTAIN, Quality.BAD, Quality.GOOD, Quality.GOOD],
    )
    types = {
        ("a", "y"): T.Int16,
        ("b", "x"): T.Double,
        ("a", "s"): T.String,
        ("a", "flag"): T.Boolean,
    }
    seq = sp.SeqCounter(254)
    out = sp.encode_data_by_device(batch, types, seq=seq, timestamp_ms=77, aliases={("b", "x"): 9})
    assert [(d, s) for d, _, s in out] == [("a", 255), ("b", 0)]
    a = psp.DData.decode(out[0][1])
    assert [(m.name, m.value, m.timestamp) for m in a.metrics] == [
        ("y", -7, 2000),
        ("s", "hi", 4000),
        ("flag", True, 5000),
    ]
    ours_a = sp.decode_payload(out[0][1])
    assert ours_a.metric("y").quality is Quality.UNCERTAIN
    assert ours_a.metric("s").quality is Quality.GOOD
    b = sp.decode_payload(out[1][1])
    assert [(m.alias, m.name, m.value, m.timestamp) for m in b.metrics] == [
        (9, None, 1.5, 1000),
        (9, None, None, 3000),
    ]
    assert b.metrics[1].quality is Quality.BAD and b.timestamp == 77


def test_batch_with_unborn_metric() -> None:
    batch = edge_batch("a", ["y", "ghost"], 1_000, [1.0, 2.0])
    with pytest.raises(InvalidInput, match="ghost"):
        sp.data_messages(batch, {("a", "y"): T.Double}, timestamp_ms=1)
    skipped: list[tuple[str, str]] = []
    msgs = sp.data_messages(batch, {("a", "y"): T.Double}, timestamp_ms=1, skipped=skipped)
    assert skipped == [("a", "ghost")] and len(msgs[0][1].metrics) == 1


def test_profile_types() -> None:
    assert sp.datatype_for("uint16") is T.UInt16
    assert sp.datatype_for("uint16", scaled=True) is T.Double
    assert sp.datatype_for("bit", scaled=True) is T.Boolean
    assert sp.datatype_for(None) is T.Double
    with pytest.raises(InvalidInput):
        sp.datatype_for("complex")
