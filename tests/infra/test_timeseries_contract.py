"""The time-series store contract, run against every backend (DuckDB file, PostgreSQL)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from yugong.core.errors import InvalidInput
from yugong.core.quality import Quality
from yugong.core.samples import POINT_SCHEMA, make_batch
from yugong.infra.timeseries.base import Cursor, TimeSeriesStore

S = 1_000_000  # µs per second
T0 = 1_704_067_200 * S  # 2024-01-01T00:00:00Z: a closed day, so compaction moves it


@pytest.fixture(params=["duckdb", "postgres"])
def opener(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], TimeSeriesStore]]:
    """Opens the store (again, for reopen tests); every store opened is closed after."""
    opened: list[TimeSeriesStore] = []
    if request.param == "duckdb":
        from yugong.infra.timeseries.duckdb import DuckDBStore

        path = str(tmp_path / "ts.duckdb")

        def make() -> TimeSeriesStore:
            return DuckDBStore(path, compact_interval_s=0, late_merge_s=0)
    else:
        from yugong.infra.timeseries.postgres import PostgresStore

        url = request.getfixturevalue("pg_url")

        def make() -> TimeSeriesStore:
            return PostgresStore(url, compact_interval_s=0)

    def open_() -> TimeSeriesStore:
        store = make()
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Callable[[], TimeSeriesStore]) -> TimeSeriesStore:
    return opener()


def rows(table: pa.Table) -> list[tuple]:
    return [tuple(r.values()) for r in table.to_pylist()]


def all_rows(
    store: TimeSeriesStore, series: list[int], start: int = T0 - 10 * S, end: int = T0 + 86_400 * S
) -> list[tuple]:
    return rows(store.range(series, start, end, limit=1_000_000).table)


# -- writes and reads --------------------------------------------------------------------------


def test_round_trip_numbers_bools_text_and_bad_quality(store: TimeSeriesStore) -> None:
    store.write(make_batch(1, [1, 1], [T0, T0 + S], [21.5, -3.25]))
    store.write(make_batch(1, [2, 2], [T0, T0 + S], [True, False]))
    store.write(make_batch(1, [3, 3], [T0, T0 + S], text=["running", ""]))
    store.write(make_batch(1, [4], [T0], None, quality=Quality.BAD))
    store.write(make_batch(1, [5], [T0], [1.0], quality=Quality.UNCERTAIN))
    page = store.range([1, 2, 3, 4, 5], T0, T0 + 10 * S)
    assert page.table.schema == POINT_SCHEMA
    assert page.next is None
    assert rows(page.table) == [
        (1, T0, 21.5, None, 0),
        (1, T0 + S, -3.25, None, 0),
        (2, T0, 1.0, None, 0),
        (2, T0 + S, 0.0, None, 0),
        (3, T0, None, "running", 0),
        (3, T0 + S, None, "", 0),
        (4, T0, None, None, 2),
        (5, T0, 1.0, None, 1),
    ]


def test_write_returns_rows_and_accepts_empty_batch(store: TimeSeriesStore) -> None:
    assert store.write(make_batch(1, [1, 2, 3], T0, [1, 2, 3])) == 3
    assert store.write(make_batch(1, [], [], [])) == 0


@pytest.mark.parametrize(
    ("batch", "loc"),
    [
        (pa.table({"tenant": [1], "ts": [T0], "value": [1.0], "quality": [0]}), "batch"),
        (
            pa.table(
                {
                    "tenant": pa.array([1], pa.int32()),
                    "series": pa.array([None], pa.int32()),
                    "ts": [T0],
                    "quality": pa.array([0], pa.uint8()),
                }
            ),
            "batch.series",
        ),
        (make_batch(1, [1], [T0], [1.0], quality=7), "batch.quality"),
    ],
)
def test_bad_batch_is_refused_naming_the_field(
    store: TimeSeriesStore, batch: pa.Table, loc: str
) -> None:
    with pytest.raises(InvalidInput) as info:
        store.write(batch)
    assert info.value.errors[0].loc == loc
    assert store.range([1], T0 - S, T0 + S).table.num_rows == 0


def test_later_write_wins_across_and_within_batches(store: TimeSeriesStore) -> None:
    store.write(make_batch(1, [1, 1], [T0, T0 + S], [1.0, 2.0]))
    store.write(make_batch(1, [1], [T0], [10.0]))
    store.write(make_batch(1, [1, 1, 1], [T0 + S, T0 + S, T0 + S], [3.0, 4.0, 5.0]))
    assert all_rows(store, [1]) == [(1, T0, 10.0, None, 0), (1, T0 + S, 5.0, None, 0)]
    store.compact()
    assert all_rows(store, [1]) == [(1, T0, 10.0, None, 0), (1, T0 + S, 5.0, None, 0)]
    # A later write over compacted data (hot shadows the partition), then compacted again.
    store.write(make_batch(1, [1], [T0], None, quality=Quality.BAD))
    assert all_rows(store, [1]) == [(1, T0, None, None, 2), (1, T0 + S, 5.0, None, 0)]
    assert rows(store.aggregate([1], T0, T0 + 2 * S, 2 * S, ["count", "avg"])) == [(1, T0, 1, 5.0)]
    store.compact()
    assert all_rows(store, [1]) == [(1, T0, None, None, 2), (1, T0 + S, 5.0, None, 0)]


def test_out_of_order_samples_are_sorted(store: TimeSeriesStore) -> None:
    store.write(make_batch(1, [1, 1, 1], [T0 + 5 * S, T0 + S, T0 + 3 * S], [5, 1, 3]))
    store.write(make_batch(1, [1], [T0 + 2 * S], [2]))
    assert [r[1] for r in all_rows(store, [1])] == [T0 + S, T0 + 2 * S, T0 + 3 * S, T0 + 5 * S]
    assert rows(store.latest([1])) == [(1, T0 + 5 * S, 5.0, None, 0)]


def test_latest_of_many_series(store: TimeSeriesStore) -> None:
    n = 300
    ids = np.arange(1, n + 1)
    store.write(make_batch(1, ids, T0, ids * 1.0))
    store.write(make_batch(1, ids, T0 + S, ids * 2.0))
    store.write(make_batch(1, ids[:10], T0 - S, 0.0))  # older: must not replace
    store.write(make_batch(1, [7], [T0 + S], [77.0]))  # same ts, later write: replaces
    store.write(make_batch(2, [9999], [T0], text=["on"]))
    got = store.latest([*ids.tolist(), 424242, 9999])  # 424242 has no data
    assert got.schema == POINT_SCHEMA
    assert got.num_rows == n + 1
    expect = {int(i): 2.0 * i for i in ids} | {7: 77.0}
    for r in got.to_pylist():
        if r["series"] == 9999:
            assert (r["ts"], r["text"]) == (T0, "on")
        else:
            assert (r["ts"], r["value"]) == (T0 + S, expect[r["series"]])
    assert store.latest([424242]).num_rows == 0
    assert store.latest([]).num_rows == 0


# -- range paging --------------------------------------------------------------------------


def test_range_limit_paging_and_cursor(store: TimeSeriesStore) -> None:
    store.write(
        make_batch(1, [1] * 5 + [2] * 5, [T0 + i * S for i in range(5)] * 2, np.arange(10.0))
    )
    seen: list[tuple] = []
    after: Cursor | None = None
    pages = 0
    while True:
        page = store.range([2, 1], T0, T0 + 5 * S, limit=3, after=after)
        seen += rows(page.table)
        pages += 1
        if page.next is None:
            break
        after = Cursor.decode(page.next.encode())
    assert pages == 4
    assert [(r[0], r[1]) for r in seen] == [(s, T0 + i * S) for s in (1, 2) for i in range(5)]
    # Half-open: end excluded, start included.
    assert [r[1] for r in all_rows(store, [1], T0 + S, T0 + 3 * S)] == [T0 + S, T0 + 2 * S]


def test_range_descending_pages(store: TimeSeriesStore) -> None:
    store.write(
        make_batch(1, [1] * 4 + [2] * 4, [T0 + i * S for i in range(4)] * 2, np.arange(8.0))
    )
    first = store.range([1, 2], T0, T0 + 10 * S, limit=5, order="desc")
    assert [(r[0], r[1]) for r in rows(first.table)] == [
        (2, T0 + 3 * S),
        (2, T0 + 2 * S),
        (2, T0 + S),
        (2, T0),
        (1, T0 + 3 * S),
    ]
    assert first.next == Cursor(1, T0 + 3 * S)
    second = store.range([1, 2], T0, T0 + 10 * S, limit=5, order="desc", after=first.next)
    assert [r[1] for r in rows(second.table)] == [T0 + 2 * S, T0 + S, T0]
    assert second.next is None


def test_range_checks_arguments(store: TimeSeriesStore) -> None:
    with pytest.raises(InvalidInput, match="end"):
        store.range([1], T0, T0)
    with pytest.raises(InvalidInput, match="limit"):
        store.range([1], T0, T0 + S, limit=0)


# -- aggregates ----------------------------------------------------------------------------


def _agg_data(store: TimeSeriesStore) -> None:
    # series 1, 10 s buckets from T0: [0,10): 1@0 3@4 2@8 ; [10,20): empty ; [20,30): 10@25
    # plus a bad sample in bucket 0 and an uncertain one in bucket 3 ([30,40)): 7@30
    store.write(
        make_batch(
            1, [1, 1, 1, 1], [T0 + 8 * S, T0, T0 + 4 * S, T0 + 25 * S], [2.0, 1.0, 3.0, 10.0]
        )
    )
    store.write(make_batch(1, [1], [T0 + 5 * S], None, quality=Quality.BAD))
    store.write(make_batch(1, [1], [T0 + 6 * S], [1000.0], quality=Quality.BAD))
    store.write(make_batch(1, [1], [T0 + 30 * S], [7.0], quality=Quality.UNCERTAIN))
    store.write(make_batch(1, [1], [T0 + 31 * S], text=["note"]))


FUNCS = ("avg", "min", "max", "sum", "count", "first", "last")


def test_every_aggregate_by_hand(store: TimeSeriesStore) -> None:
    _agg_data(store)
    got = store.aggregate([1], T0, T0 + 40 * S, 10 * S, FUNCS)
    assert got.column_names == ["series", "bucket", *FUNCS]
    assert got.schema.field("count").type == pa.int64()
    assert rows(got) == [
        (1, T0, 2.0, 1.0, 3.0, 6.0, 3, 1.0, 2.0),
        (1, T0 + 20 * S, 10.0, 10.0, 10.0, 10.0, 1, 10.0, 10.0),
        (1, T0 + 30 * S, 7.0, 7.0, 7.0, 7.0, 1, 7.0, 7.0),
    ]


def test_buckets_are_epoch_aligned_and_clipped_to_range(store: TimeSeriesStore) -> None:
    _agg_data(store)
    # Start mid-bucket: the bucket keeps its aligned label but only counts samples >= start.
    got = store.aggregate([1], T0 + 3 * S, T0 + 26 * S, 10 * S, ["count", "sum"])
    assert rows(got) == [(1, T0, 2, 5.0), (1, T0 + 20 * S, 1, 10.0)]


@pytest.mark.parametrize(
    ("fill", "expect"),
    [
        ("none", [(T0, 2.0, 3), (T0 + 20 * S, 10.0, 1), (T0 + 30 * S, 7.0, 1)]),
        (
            "null",
            [
                (T0 - 10 * S, None, 0),
                (T0, 2.0, 3),
                (T0 + 10 * S, None, 0),
                (T0 + 20 * S, 10.0, 1),
                (T0 + 30 * S, 7.0, 1),
                (T0 + 40 * S, None, 0),
            ],
        ),
        (
            "previous",
            [
                (T0 - 10 * S, None, 0),
                (T0, 2.0, 3),
                (T0 + 10 * S, 2.0, 0),
                (T0 + 20 * S, 10.0, 1),
                (T0 + 30 * S, 7.0, 1),
                (T0 + 40 * S, 7.0, 0),
            ],
        ),
        (
            "linear",
            [
                (T0 - 10 * S, None, 0),
                (T0, 2.0, 3),
                (T0 + 10 * S, 6.0, 0),
                (T0 + 20 * S, 10.0, 1),
                (T0 + 30 * S, 7.0, 1),
                (T0 + 40 * S, None, 0),
            ],
        ),
    ],
)
def test_fill_modes_across_a_gap(store: TimeSeriesStore, fill: str, expect: list) -> None:
    _agg_data(store)
    got = store.aggregate([1], T0 - 10 * S, T0 + 50 * S, 10 * S, ["avg", "count"], fill=fill)  # type: ignore[arg-type]
    assert [r[1:] for r in rows(got)] == expect


def test_linear_fill_over_several_buckets_and_many_series(store: TimeSeriesStore) -> None:
    store.write(make_batch(1, [1, 1, 2], [T0, T0 + 40 * S, T0 + 20 * S], [0.0, 8.0, 5.0]))
    got = store.aggregate([2, 1, 3], T0, T0 + 50 * S, 10 * S, ["max"], fill="linear")
    by_series: dict[int, list] = {}
    for s, _, v in rows(got):
        by_series.setdefault(s, []).append(v)
    assert by_series == {
        1: [0.0, 2.0, 4.0, 6.0, 8.0],
        2: [None, None, 5.0, None, None],
        3: [None] * 5,
    }


def test_multi_series_aggregate(store: TimeSeriesStore) -> None:
    store.write(
        make_batch(1, [1, 2, 1, 2], [T0, T0, T0 + 60 * S, T0 + 61 * S], [1.0, 10.0, 3.0, 30.0])
    )
    got = store.aggregate([1, 2], T0, T0 + 120 * S, 60 * S, ["avg", "last"])
    assert rows(got) == [
        (1, T0, 1.0, 1.0),
        (1, T0 + 60 * S, 3.0, 3.0),
        (2, T0, 10.0, 10.0),
        (2, T0 + 60 * S, 30.0, 30.0),
    ]


def test_aggregate_checks_arguments(store: TimeSeriesStore) -> None:
    with pytest.raises(InvalidInput, match="bucket"):
        store.aggregate([1], T0, T0 + S, 0)
    with pytest.raises(InvalidInput, match="median"):
        store.aggregate([1], T0, T0 + S, S, ["median"])  # type: ignore[list-item]
    with pytest.raises(InvalidInput, match="fill"):
        store.aggregate([1], T0, T0 + S, S, fill="spline")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="bucket"):
        store.aggregate([1], T0, T0 + 86_400 * 365 * S, 1, fill="null")


# -- maintenance ---------------------------------------------------------------------------


def test_retention_per_tenant(store: TimeSeriesStore) -> None:
    day = 86_400 * S
    for d in range(3):
        store.write(make_batch(1, [1, 1], [T0 + d * day, T0 + d * day + 7200 * S], float(d)))
        store.write(make_batch(2, [2], [T0 + d * day], float(d)))
    store.compact()
    cutoff = T0 + day + 3600 * S  # inside day 1
    store.drop_before(1, cutoff)
    span = (T0 - day, T0 + 4 * day)
    assert [r[1] for r in all_rows(store, [1], *span)] == [
        T0 + day + 7200 * S,
        T0 + 2 * day,
        T0 + 2 * day + 7200 * S,
    ]
    assert len(all_rows(store, [2], *span)) == 3  # the other tenant keeps everything
    assert rows(store.latest([1]))[0][1] == T0 + 2 * day + 7200 * S
    store.drop_before(1, T0 + 10 * day)
    assert all_rows(store, [1], *span) == []
    assert store.latest([1]).num_rows == 0
    assert store.latest([2]).num_rows == 1


def test_delete_series(store: TimeSeriesStore) -> None:
    store.write(make_batch(1, [1, 2, 1, 2], [T0, T0, T0 + S, T0 + S], 1.0))
    store.compact()
    store.write(make_batch(1, [1], [T0 + 2 * S], 2.0))
    store.delete_series(1, [1])
    assert all_rows(store, [1]) == []
    assert store.latest([1]).num_rows == 0
    assert len(all_rows(store, [2])) == 2
    store.write(make_batch(1, [1], [T0 + 5 * S], 5.0))  # the id can be used again
    assert all_rows(store, [1]) == [(1, T0 + 5 * S, 5.0, None, 0)]


def _queries(store: TimeSeriesStore) -> list:
    ids = [1, 2, 3]
    start, end = T0 - 3600 * S, T0 + 3 * 3600 * S
    return [
        all_rows(store, ids, start, end),
        rows(store.range(ids, start, end, limit=7, order="desc").table),
        rows(store.latest(ids)),
        # Float sums may differ in the last bit with summation order: compare rounded.
        [
            tuple(round(v, 9) if isinstance(v, float) else v for v in r)
            for r in rows(store.aggregate(ids, start, end, 600 * S, FUNCS, fill="previous"))
        ],
    ]


def test_compaction_keeps_results_identical(store: TimeSeriesStore) -> None:
    rng = np.random.default_rng(3)
    for _ in range(4):  # overlapping, out-of-order batches spanning three hours
        n = 3000
        ts = T0 + rng.integers(0, 3 * 3600, n) * S
        q = np.where(rng.random(n) < 0.05, Quality.BAD, Quality.GOOD)
        store.write(
            make_batch(1, rng.integers(1, 4, n), ts, rng.normal(size=n).round(2), quality=q)
        )
    before = _queries(store)
    store.compact()
    assert _queries(store) == before
    assert store.stats().hot_rows == 0
    store.write(make_batch(1, [1, 2], [T0 + 60 * S, T0 + 61 * S], [100.0, 200.0]))
    before = _queries(store)
    store.compact()
    assert _queries(store) == before


def test_data_survives_close_and_reopen(opener: Callable[[], TimeSeriesStore]) -> None:
    store = opener()
    store.write(make_batch(1, [1, 2], [T0, T0], [1.0, 2.0]))
    store.compact()
    store.write(make_batch(1, [1], [T0 + S], [3.0], text=None))
    store.write(make_batch(1, [1], [T0 + S], [4.0]))
    store.close()
    again = opener()
    assert all_rows(again, [1, 2]) == [
        (1, T0, 1.0, None, 0),
        (1, T0 + S, 4.0, None, 0),
        (2, T0, 2.0, None, 0),
    ]
    assert rows(again.latest([1, 2])) == [(1, T0 + S, 4.0, None, 0), (2, T0, 2.0, None, 0)]
    # Writes after reopen still win over what was there.
    again.write(make_batch(1, [1], [T0 + S], [5.0]))
    assert rows(again.latest([1])) == [(1, T0 + S, 5.0, None, 0)]
    assert all_rows(again, [1])[-1] == (1, T0 + S, 5.0, None, 0)


def test_concurrent_writes_during_compaction_lose_nothing(store: TimeSeriesStore) -> None:
    batches, per = 20, 1000
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for b in range(batches):
                sec = b * per + np.arange(per)  # distinct keys over ~11 hours
                store.write(make_batch(1, 1 + sec % 5, T0 + sec * 2 * S, sec * 1.0))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=writer)
    thread.start()
    while thread.is_alive():
        store.compact()
    thread.join()
    store.compact()
    assert not errors
    got = store.range([1, 2, 3, 4, 5], T0, T0 + 86_400 * S, limit=1_000_000).table
    assert got.num_rows == batches * per
    assert sorted(got.column("value").to_pylist()) == [float(i) for i in range(batches * per)]
    assert store.stats().rows == batches * per
