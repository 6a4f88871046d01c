"""ThingsBoard telemetry and attribute payload shapes."""

from __future__ import annotations

import pytest

from yugong.core.errors import InvalidInput
from yugong.platform.ingest.payloads import parse_attributes, parse_telemetry


def test_flat_object() -> None:
    (entry,) = parse_telemetry(b'{"temperature": 21.5, "running": true, "note": "ok"}')
    assert entry.ts_us is None
    assert entry.values == {"temperature": 21.5, "running": True, "note": "ok"}


def test_ts_values_object_in_ms() -> None:
    (entry,) = parse_telemetry(b'{"ts": 1700000000123, "values": {"temperature": 1}}')
    assert entry.ts_us == 1_700_000_000_123_000
    assert entry.values == {"temperature": 1}


def test_large_ts_is_microseconds() -> None:
    (entry,) = parse_telemetry('{"ts": 1700000000123456, "values": {"t": 1}}')
    assert entry.ts_us == 1_700_000_000_123_456


def test_list_of_flat_and_ts_objects_mixed() -> None:
    entries = parse_telemetry(
        b'[{"a": 1}, {"ts": 1700000000000, "values": {"a": 2, "cfg": {"x": [1, 2]}}}]'
    )
    assert [e.ts_us for e in entries] == [None, 1_700_000_000_000_000]
    assert entries[1].values["cfg"] == {"x": [1, 2]}


def test_flat_object_may_hold_null_and_nested_json() -> None:
    (entry,) = parse_telemetry(b'{"a": null, "b": [1, 2], "c": {"d": 1}}')
    assert entry.values == {"a": None, "b": [1, 2], "c": {"d": 1}}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"a": 1', "malformed JSON"),
        (b"[]", "empty array"),
        (b"42", "must be an object, not a number"),
        (b'[{"a": 1}, 3]', "item 1: must be an object"),
        (
            b'[{"a": 1}, {"a": 1}, {"a": 1}, {"ts": 1, "values": [1]}]',
            "item 3: 'values' must be an object",
        ),
        (b'{"ts": "yesterday", "values": {}}', "ts: not a timestamp"),
        (b'{"ts": true, "values": {}}', "ts: must be epoch milliseconds, not a boolean"),
        (b'{"ts": 1, "values": {}, "x": 1}', "may have no other keys (found x)"),
    ],
)
def test_bad_shapes_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_telemetry(raw)
    assert message in err.value.detail


def test_attributes() -> None:
    assert parse_attributes(b'{"fw": "1.2", "serial": 7}') == {"fw": "1.2", "serial": 7}
    with pytest.raises(InvalidInput, match="attributes must be a JSON object, not an array"):
        parse_attributes(b"[1]")
    with pytest.raises(InvalidInput, match="malformed JSON"):
        parse_attributes(b"{")
