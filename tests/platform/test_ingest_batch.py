"""The batched MQTT path: many messages per call, each accepted or refused whole; into a
real DuckDB store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pyarrow as pa
import pytest

from tests.platform._directory import MemoryDirectory, press
from yugong.core.errors import YugongError
from yugong.core.quality import Quality
from yugong.infra.bus import InProcessBus
from yugong.infra.timeseries import TimeSeriesStore, open_store
from yugong.platform.ingest.service import IngestService, Message
from yugong.platform.ingest.writer import BatchedWriter

T0 = 1_700_000_000_000  # ms
END = 2**62


class Rig:
    def __init__(self, store: TimeSeriesStore) -> None:
        self.store = store
        self.directory = MemoryDirectory()
        self.a = self.directory.add(press(1, tenant=7, name="press-a"))
        self.b = self.directory.add(press(2, tenant=8, name="press-b"))
        self.bus = InProcessBus()
        self.writer = BatchedWriter(store, batch_rows=1000, flush_ms=20)
        self.attrs: list[tuple[int, dict]] = []
        self.svc = IngestService(
            self.directory,
            self.writer,
            self.bus,
            max_points_per_request=5,
            attribute_sink=lambda d, a: self.attrs.append((d.device, a)),
        )

    async def rows(self) -> list[tuple[int, int, float | None, str | None, int]]:
        await self.writer.flush()
        series = [d * 100 + k for d in (1, 2) for k in range(1, 8)]
        t = self.store.range(series, 0, END, limit=100_000).table
        return [(r["series"], r["ts"], r["value"], r["text"], r["quality"]) for r in t.to_pylist()]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = open_store(f"duckdb:///{tmp_path / 'ts.duckdb'}")
    r = Rig(store)
    yield r
    await r.writer.close()
    store.close()


def tel(ts_ms: int, **values: object) -> bytes:
    import orjson

    return orjson.dumps({"ts": ts_ms, "values": values})


async def test_bad_messages_are_refused_alone(rig: Rig) -> None:
    a, b = rig.a, rig.b
    drain: list[Message] = [
        (a, tel(T0, temperature=20.5), "telemetry"),  # 0 good
        (a, b"{nope", "telemetry"),  # 1 malformed
        (b, tel(T0, count=3, mode=2), "telemetry"),  # 2 good, other tenant
        (a, tel(T0 + 1, temperature=21.0, count="x"), "telemetry"),  # 3 one bad value
        (a, tel(T0 + 2, pressure=1.0), "telemetry"),  # 4 unknown property
        (b, tel(T0 + 1, mode=7), "telemetry"),  # 5 not in enum
        (a, tel(T0 + 3, temperature=True), "telemetry"),  # 6 a bool for a number
        (b, b'{"fw": "2.1"}', "attributes"),  # 7 good attributes
        (a, b"[1]", "attributes"),  # 8 bad attributes
        (a, tel(T0 + 4, temperature=500.0, note="ok"), "telemetry"),  # 9 out of range
        (b, tel(T0 + 2, count=1.5), "telemetry"),  # 10 not an integer
        (a, tel(T0 + 5, note="x" * 17), "telemetry"),  # 11 too long
        (
            a,
            b'[{"ts":1,"values":{"count":1,"mode":1,"running":1}},'
            b'{"ts":2,"values":{"count":2,"mode":2,"running":0}}]',
            "telemetry",
        ),  # 12 too many points (6 > 5)
    ]
    async with rig.bus.subscribe("samples") as samples:
        out = await rig.svc.ingest_messages(drain)
        assert samples.pending == 1  # type: ignore[attr-defined]
        published = await samples.get()
    reasons = {i: getattr(e, "reason", "?") for i, e in out.rejected}
    assert reasons == {
        1: "malformed",
        3: "wrong_type",
        4: "unknown_property",
        5: "not_in_enum",
        6: "wrong_type",
        8: "malformed",
        10: "not_integer",
        11: "too_long",
        12: "too_many_points",
    }
    assert (out.accepted, out.points, out.out_of_range, out.attributes) == (4, 5, 1, 1)
    assert isinstance(published, pa.Table) and published.num_rows == 5

    # Message 3's good temperature is not stored: refusal is per message, whole.
    assert await rig.rows() == [
        (101, T0 * 1000, 20.5, None, Quality.GOOD),
        (101, (T0 + 4) * 1000, 500.0, None, Quality.UNCERTAIN),
        (105, (T0 + 4) * 1000, None, "ok", Quality.GOOD),
        (202, T0 * 1000, 3.0, None, Quality.GOOD),
        (204, T0 * 1000, 2.0, None, Quality.GOOD),
    ]
    assert rig.attrs == [(2, {"fw": "2.1"})]
    assert set(rig.directory.seen) == {1, 2}

    stats = rig.svc.stats()
    assert (stats[7].accepted, stats[7].out_of_range, stats[7].messages) == (3, 1, 2)
    assert (stats[8].accepted, stats[8].messages, stats[8].attributes) == (2, 1, 1)
    assert stats[7].rejected == {
        "malformed": 2,
        "wrong_type": 2,
        "unknown_property": 1,
        "too_long": 1,
        "too_many_points": 1,
    }
    assert stats[8].rejected == {"not_in_enum": 1, "not_integer": 1}


async def test_refusals_read_as_on_the_single_message_path(rig: Rig) -> None:
    bad: list[Message] = [
        (rig.a, tel(T0, temperature=21.0, count="x"), "telemetry"),
        (rig.a, b'[{"temperature": 1}, {"pressure": 2}]', "telemetry"),
        (rig.b, tel(T0, mode=9), "telemetry"),
        (rig.a, b'{"ts": true, "values": {"count": 1}}', "telemetry"),
        (rig.a, b'[{"running": 1}, {"running": 2}]', "telemetry"),
    ]
    out = await rig.svc.ingest_messages([*bad, (rig.a, tel(T0, count=4), "telemetry")])
    assert [i for i, _ in out.rejected] == [0, 1, 2, 3, 4]
    for (device, payload, _), (_, exc) in zip(bad, out.rejected, strict=True):
        with pytest.raises(YugongError) as single:
            await rig.svc.ingest_telemetry(device, payload)
        assert exc.detail == single.value.detail
        assert exc.errors == single.value.errors
    assert [r[:3] for r in await rig.rows()] == [(102, T0 * 1000, 4.0)]


async def test_values_without_ts_stay_distinct_in_one_drain(rig: Rig) -> None:
    drain: list[Message] = [(rig.a, b'{"count": %d}' % i, "telemetry") for i in range(5)]
    at = [T0 * 1000] * 5  # all read from the socket at the same moment
    out = await rig.svc.ingest_messages(drain, at)
    assert out.points == 5 and not out.rejected
    rows = await rig.rows()
    assert [r[2] for r in rows] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert [r[1] for r in rows] == [T0 * 1000 + i for i in range(5)]


async def test_a_drain_of_only_refusals_writes_nothing(rig: Rig) -> None:
    async with rig.bus.subscribe("samples") as samples:
        out = await rig.svc.ingest_messages(
            [(rig.a, b"null", "telemetry"), (rig.b, tel(T0, nope=1), "telemetry")]
        )
        assert samples.pending == 0  # type: ignore[attr-defined]
    assert (out.accepted, out.points, len(out.rejected)) == (0, 0, 2)
    assert await rig.rows() == []
    assert rig.directory.seen == {}


async def test_many_devices_and_kinds_in_one_drain(rig: Rig) -> None:
    directory = rig.directory
    devices = [directory.add(press(d, tenant=9, name=f"p{d}")) for d in range(10, 40)]
    drain: list[Message] = []
    for k, d in enumerate(devices):
        drain.append(
            (d, tel(T0 + k, temperature=k + 0.5, running=k % 2, note=f"n{k}"), "telemetry")
        )
        drain.append((d, tel(T0 + k, config={"k": k}, changed=T0), "telemetry"))
    drain.append((devices[3], tel(T0, config="{not json"), "telemetry"))
    out = await rig.svc.ingest_messages(drain)
    assert [(i, getattr(e, "reason", "")) for i, e in out.rejected] == [(60, "wrong_type")]
    assert out.points == 30 * 5
    await rig.writer.flush()
    t = rig.store.range([d.device * 100 + 6 for d in devices], 0, END, limit=1000).table
    assert t.column("text").to_pylist() == [f'{{"k":{k}}}' for k in range(30)]


async def test_attribute_sink_runs_off_the_event_loop(tmp_path: Path) -> None:
    import threading

    store = open_store(f"duckdb:///{tmp_path / 'ts.duckdb'}")
    writer = BatchedWriter(store, flush_ms=20)
    directory = MemoryDirectory()
    dev = directory.add(press(1))
    threads: list[threading.Thread] = []
    svc = IngestService(
        directory,
        writer,
        InProcessBus(),
        attribute_sink=lambda d, a: threads.append(threading.current_thread()),
    )
    out = await svc.ingest_messages([(dev, b'{"fw": "1"}', "attributes")])
    assert (out.accepted, out.attributes) == (1, 1)
    assert threads and threads[0] is not threading.current_thread()
    await writer.close()
    store.close()
