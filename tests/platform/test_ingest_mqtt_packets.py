"""The external-broker subscriber's packet reader: MQTT 5 and 3.1.1 PUBLISH framing, QoS 1
acknowledgements, packets split across reads."""

from __future__ import annotations

import random

import pytest

from yugong.platform.ingest.mqtt import (
    MqttProtocolError,
    connect_packet,
    split_packets,
    subscribe_packet,
)


def remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        n, d = divmod(n, 128)
        out.append(d | (128 if n else 0))
        if not n:
            return bytes(out)


def publish(
    topic: bytes, payload: bytes, qos: int, pid: int, v5: bool, props: bytes = b""
) -> bytes:
    body = len(topic).to_bytes(2, "big") + topic
    if qos:
        body += pid.to_bytes(2, "big")
    if v5:
        body += remaining(len(props)) + props
    body += payload
    return bytes([0x30 | qos << 1]) + remaining(len(body)) + body


def stream(v5: bool) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    rng = random.Random(5)
    data, expect, acks = bytearray(), [], bytearray()
    for i in range(300):
        topic = b"yg/devices/%d/telemetry" % (i % 7)
        payload = b'{"p": %d}' % i + b" " * rng.choice([0, 3, 200, 20_000])  # 1-3 byte lengths
        qos = i % 2
        props = b"\x01\x01" if v5 and i % 3 == 0 else b""  # payload format indicator
        data += publish(topic, payload, qos, 1000 + i, v5, props)
        expect.append((topic, payload))
        if qos:
            acks += b"\x40\x02" + (1000 + i).to_bytes(2, "big")
        if i == 150:
            data += b"\xd0\x00"  # PINGRESP in between
    return bytes(data), expect, bytes(acks)


@pytest.mark.parametrize("version", [5, 4])
def test_packets_split_across_reads(version: int) -> None:
    data, expect, expect_acks = stream(version == 5)
    rng = random.Random(version)
    got: list[tuple[bytes, bytes, int]] = []
    acks = bytearray()
    controls = []
    pending = b""
    i = 0
    while i < len(data):
        step = rng.choice([1, 2, 7, 300, 70_000])
        buf = pending + data[i : i + step]
        i += step
        used, control = split_packets(buf, 42, got, acks, version)
        pending = buf[used:]
        controls += control
    assert pending == b""
    assert [(t, p) for t, p, _ in got] == expect
    assert {at for _, _, at in got} == {42}
    assert bytes(acks) == expect_acks
    assert controls == [(13, b"")]


def test_refuses_what_a_subscriber_cannot_take() -> None:
    with pytest.raises(MqttProtocolError, match="QoS 2"):
        split_packets(publish(b"t", b"x", 2, 1, True), 0, [], bytearray())
    with pytest.raises(MqttProtocolError, match="remaining length"):
        split_packets(b"\x30\xff\xff\xff\xff\x01", 0, [], bytearray())


def test_connect_and_subscribe_encoding() -> None:
    v5 = connect_packet(
        "c1", clean=False, keepalive=30, username="u", password="p", session_expiry_s=60
    )
    # header, length, "MQTT", level 5, flags (user, password, no clean start), keepalive,
    # properties (receive maximum 65535, session expiry 60), client id, user, password
    assert v5 == (
        b"\x10\x1d\x00\x04MQTT\x05\xc0\x00\x1e"
        b"\x08\x21\xff\xff\x11\x00\x00\x00\x3c"
        b"\x00\x02c1\x00\x01u\x00\x01p"
    )
    v4 = connect_packet("c1", clean=True, keepalive=30, username=None, password=None, version=4)
    assert v4 == b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x1e\x00\x02c1"
    assert subscribe_packet(1, ["a/+"], 1) == b"\x82\x09\x00\x01\x00\x00\x03a/+\x01"
    assert subscribe_packet(1, ["a/+"], 1, version=4) == b"\x82\x08\x00\x01\x00\x03a/+\x01"
