"""Validation against the thing model, atomic rejection, counters; into a real DuckDB store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tests.platform._directory import MemoryDirectory, press
from yugong.core.errors import InvalidInput, PayloadTooLarge
from yugong.core.quality import Quality
from yugong.infra.bus import InProcessBus
from yugong.infra.timeseries import TimeSeriesStore, open_store
from yugong.platform.ingest.service import IngestService
from yugong.platform.ingest.writer import BatchedWriter

T0 = 1_700_000_000_000  # ms
END = 2**62


class Rig:
    def __init__(self, store: TimeSeriesStore) -> None:
        self.store = store
        self.directory = MemoryDirectory()
        self.dev = self.directory.add(press(1, tenant=7), token="tok-1")
        self.other = self.directory.add(press(2, tenant=8, name="press-2"))
        self.bus = InProcessBus()
        self.writer = BatchedWriter(store, batch_rows=1000, flush_ms=20)
        self.attrs: list[tuple[int, dict]] = []
        self.svc = IngestService(
            self.directory,
            self.writer,
            self.bus,
            max_points_per_request=1000,
            attribute_sink=lambda d, a: self.attrs.append((d.device, a)),
        )

    async def rows(self, *series: int) -> pa.Table:
        await self.writer.flush()
        return self.store.range(list(series), 0, END).table

    async def total(self) -> int:
        await self.writer.flush()
        return self.store.range(
            [101, 102, 103, 104, 105, 106, 107], 0, END, limit=100_000
        ).table.num_rows


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = open_store(f"duckdb:///{tmp_path / 'ts.duckdb'}")
    r = Rig(store)
    yield r
    await r.writer.close()
    store.close()


async def test_every_kind_is_stored(rig: Rig) -> None:
    result = await rig.svc.ingest_telemetry(
        rig.dev,
        (
            b'{"ts": %d, "values": {"temperature": 21.5, "count": 3, "running": true, "mode": 2,'
            b' "note": "hello", "config": {"a": [1, 2]}, "changed": %d}}' % (T0, T0)
        ),
    )
    assert result.accepted == 7 and result.out_of_range == 0
    t = await rig.rows(*range(101, 108))
    got = {r["series"]: r for r in t.to_pylist()}
    assert got[101]["value"] == 21.5 and got[101]["ts"] == T0 * 1000
    assert got[103]["value"] == 1.0 and got[104]["value"] == 2.0
    assert got[105]["text"] == "hello" and got[105]["value"] is None
    assert got[106]["text"] == '{"a":[1,2]}'
    assert {r["quality"] for r in got.values()} == {Quality.GOOD}
    assert rig.directory.seen[1] > 0


async def test_missing_ts_is_server_time_and_null_is_bad(rig: Rig) -> None:
    await rig.svc.ingest_telemetry(rig.dev, b'{"temperature": null, "running": 0}')
    t = await rig.rows(101, 103)
    rows = t.to_pylist()
    assert rows[0]["quality"] == Quality.BAD and rows[0]["value"] is None
    assert rows[1]["value"] == 0.0 and rows[1]["quality"] == Quality.GOOD
    assert abs(rows[0]["ts"] - rows[1]["ts"]) == 0 and rows[0]["ts"] > T0 * 1000


@pytest.mark.parametrize(
    ("payload", "reason", "message"),
    [
        (
            b'{"temperature": 1, "tmp": 2}',
            "unknown_property",
            "unknown property 'tmp' for device 'press-1'",
        ),
        (
            b'{"temperature": "hot"}',
            "wrong_type",
            "property 'temperature' of device 'press-1': expected a number, got the string 'hot'",
        ),
        (b'{"temperature": true}', "wrong_type", "expected a number, got a boolean"),
        (b'{"running": 2}', "wrong_type", "expected true/false (or 0/1), got 2"),
        (b'{"running": "yes"}', "wrong_type", "expected true/false (or 0/1), got the string"),
        (
            b'{"count": 1.5}',
            "not_integer",
            "property 'count' of device 'press-1': expected an integer, got 1.5",
        ),
        (b'{"mode": 5}', "not_in_enum", "5 is not one of the enum keys (0, 1, 2)"),
        (b'{"note": "this note is far too long"}', "too_long", "25 characters, at most 16"),
        (b'{"note": 5}', "wrong_type", "expected a string, got the number 5"),
        (b'{"config": 5}', "wrong_type", "expected a JSON object or array"),
        (b'[{"temperature": 1}, {"temperature": 2}, {"count": -1.25}]', "not_integer", "at item 2"),
    ],
)
async def test_rejections_name_the_problem_and_store_nothing(
    rig: Rig, payload: bytes, reason: str, message: str
) -> None:
    with pytest.raises(InvalidInput) as err:
        await rig.svc.ingest_telemetry(rig.dev, payload)
    assert message in err.value.detail
    assert err.value.reason == reason  # type: ignore[attr-defined]
    assert await rig.total() == 0
    assert rig.svc.stats()[7].rejected == {reason: 1}
    assert rig.svc.stats()[7].accepted == 0


async def test_malformed_json_counted(rig: Rig) -> None:
    with pytest.raises(InvalidInput, match="malformed JSON"):
        await rig.svc.ingest_telemetry(rig.dev, b"{nope")
    assert rig.svc.stats()[7].rejected == {"malformed": 1}


async def test_out_of_range_stored_uncertain_and_counted(rig: Rig) -> None:
    result = await rig.svc.ingest_telemetry(
        rig.dev,
        b'[{"ts": %d, "values": {"temperature": 150}},'
        b' {"ts": %d, "values": {"temperature": 20, "count": -3}}]' % (T0, T0 + 1),
    )
    assert result.accepted == 3 and result.out_of_range == 2
    t = await rig.rows(101, 102)
    assert t.column("quality").to_pylist() == [Quality.UNCERTAIN, Quality.GOOD, Quality.UNCERTAIN]
    assert t.column("value").to_pylist() == [150.0, 20.0, -3.0]
    st = rig.svc.stats()[7]
    assert (st.accepted, st.out_of_range, st.messages) == (3, 2, 1)


async def test_too_many_points(rig: Rig) -> None:
    ts = np.arange(1001, dtype=np.int64)
    with pytest.raises(PayloadTooLarge, match="1001 points"):
        await rig.svc.ingest_columns(rig.dev, {"temperature": (ts, np.zeros(1001))})
    assert rig.svc.stats()[7].rejected == {"too_many_points": 1}


async def test_columns_bulk_reports_first_bad_index(rig: Rig) -> None:
    ts = (T0 + np.arange(5)) * 1000
    with pytest.raises(InvalidInput, match=r"property 'count' .* got 2\.5 at index 3"):
        await rig.svc.ingest_columns(
            rig.dev, {"temperature": (ts, np.arange(5.0)), "count": (ts, [1, 2, 3, 2.5, 4])}
        )
    with pytest.raises(InvalidInput, match=r"got the string 'x' at index 2"):
        await rig.svc.ingest_columns(rig.dev, {"temperature": (ts, [1, 2, "x", 3, 4])})
    with pytest.raises(InvalidInput, match=r"3 values but 5 timestamps"):
        await rig.svc.ingest_columns(rig.dev, {"temperature": (ts, [1, 2, 3])})
    assert await rig.total() == 0
    result = await rig.svc.ingest_columns(
        rig.dev,
        {
            "temperature": (ts, np.array([1.0, 2.0, 500.0, np.nan, 4.0])),
            "running": (ts, np.array([True, False, True, True, False])),
            "note": (ts, pa.array(["a", "b", None, "d", "e"])),
        },
    )
    assert result.accepted == 15 and result.out_of_range == 1
    t = await rig.rows(101)
    assert t.column("quality").to_pylist() == [0, 0, 1, 2, 0]


async def test_arrow_long_form(rig: Rig) -> None:
    n = 6
    table = pa.table(
        {
            "device": ["press-1"] * n,
            "property": ["temperature", "count", "temperature", "note", "running", "mode"],
            "ts": pa.array([T0 + i for i in range(n)], pa.int64()),
            "value": [20.0, 5.0, 130.0, None, 1.0, 1.0],
            "text": [None, None, None, "hi", None, None],
        }
    )
    result = await rig.svc.ingest_arrow(7, table)
    assert (result.accepted, result.out_of_range) == (6, 1)
    t = await rig.rows(101, 102, 103, 104, 105)
    assert t.num_rows == 6
    assert t.filter(pa.compute.equal(t["series"], 105)).column("text").to_pylist() == ["hi"]


async def test_arrow_by_device_id_with_timestamp_type(rig: Rig) -> None:
    table = pa.table(
        {
            "device": pa.array([1, 1], pa.int64()),
            "property": ["temperature", "temperature"],
            "ts": pa.array([T0 * 1000, T0 * 1000 + 5], pa.timestamp("us", "UTC")),
            "value": [1.0, 2.0],
        }
    )
    assert (await rig.svc.ingest_arrow(7, table)).accepted == 2
    assert (await rig.rows(101)).column("ts").to_pylist() == [T0 * 1000, T0 * 1000 + 5]


async def test_arrow_rejections_are_atomic(rig: Rig) -> None:
    good = {"ts": pa.array([T0, T0 + 1], pa.int64()), "value": [1.0, 2.0]}
    cases = [
        (
            {"device": ["press-1", "press-2"], "property": ["temperature"] * 2},
            "unknown device 'press-2' (row 1)",
        ),  # press-2 belongs to tenant 8
        ({"device": [1, 2], "property": ["temperature"] * 2}, "unknown device 2"),
        (
            {"device": ["press-1"] * 2, "property": ["temperature", "tmp"]},
            "unknown property 'tmp' for device 'press-1' (row 1)",
        ),
        (
            {"device": ["press-1"] * 2, "property": ["count", "running"]},
            "expected true/false (or 0/1), got 2 at row 1",
        ),
    ]
    for cols, message in cases:
        with pytest.raises(InvalidInput) as err:
            await rig.svc.ingest_arrow(7, pa.table({**cols, **good}))
        assert message in err.value.detail
    with pytest.raises(InvalidInput, match="lacks column"):
        await rig.svc.ingest_arrow(7, pa.table({"ts": [1]}))
    assert await rig.total() == 0


async def test_samples_and_attributes_published_on_bus(rig: Rig) -> None:
    async with rig.bus.subscribe("samples") as samples, rig.bus.subscribe("attributes") as attrs:
        await rig.svc.ingest_telemetry(rig.dev, {"temperature": 3})
        batch = await samples.get()
        assert batch.column("series").to_pylist() == [101]
        assert await rig.svc.ingest_attributes(rig.dev, b'{"fw": "1.0"}') == 1
        assert await attrs.get() == {"tenant": 7, "device": 1, "attributes": {"fw": "1.0"}}
    assert rig.attrs == [(1, {"fw": "1.0"})]
    assert rig.svc.stats()[7].attributes == 1
