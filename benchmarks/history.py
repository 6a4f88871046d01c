"""Chart history of one day at 1 Hz: the history() call (count, raw read, LTTB to 2000
points) beside the bare store read of the same range, same run.

Writes 86,400 samples of one plant signal (with its bad-quality gaps) into a DuckDB store,
compacts it as history, then measures medians of: ``history()`` for ``points`` (the work of
``GET /devices/{id}/history`` before JSON), ``store.range`` of the day with its columns as
NumPy, LTTB alone on those columns, and writing the answer as JSON. The issue's target: the
one-day 1 Hz chart loads in under 1 s end to end.

    python benchmarks/history.py [--points 2000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(__file__))

from _common import DAY0_US, US, emit, median_ms, note, signal_batches

SECONDS = 86_400
TENANT, DEVICE, SERIES = 1, 1, 1


class OneDevice:
    """The device directory as far as the query service needs it: one device, one property."""

    def __init__(self) -> None:
        from yugong.platform.registry.bindings import DeviceBinding, PropertyBinding

        prop = PropertyBinding("pressure", SERIES, "number", "float", unit="bar")
        self.binding = DeviceBinding(TENANT, DEVICE, "press-1", 1, None, {"pressure": prop})

    def by_id(self, device: int):  # a DeviceBinding or None, as the protocol says
        return self.binding if device == DEVICE else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()

    from yugong.infra.timeseries.duckdb import DuckDBStore
    from yugong.platform.downsample import lttb
    from yugong.platform.history import history
    from yugong.platform.query import QueryService, dumps
    from yugong.security.principal import Principal, Role

    with tempfile.TemporaryDirectory() as tmp:
        store = DuckDBStore(os.path.join(tmp, "ts.duckdb"), compact_interval_s=0)
        for batch in signal_batches(1, SECONDS, tenant=TENANT):
            store.write(batch)
        store.compact()
        note(f"stored {store.stats().rows} samples")
        query = QueryService(OneDevice(), store)  # type: ignore[arg-type]
        viewer = Principal("user", 1, TENANT, Role.VIEWER, "bench")
        start, end = DAY0_US, DAY0_US + SECONDS * US

        def chart() -> list[dict]:
            return history(query, viewer, DEVICE, ["pressure"], start, end, args.points)

        def bare_read() -> tuple:
            table = store.range([SERIES], start, end, limit=SECONDS + 1).table
            return (
                table.column("ts").to_numpy(),
                table.column("value").to_numpy(zero_copy_only=False),
            )

        [series] = chart()
        ts, value = bare_read()
        assert series["mode"] == "lttb", series["mode"]
        assert series["raw_count"] == SECONDS == len(ts)
        repeat, warmup = args.repeat, 2
        figures = {
            "history_ms": median_ms(chart, repeat, warmup),
            "raw_read_ms": median_ms(bare_read, repeat, warmup),
            "lttb_ms": median_ms(lambda: lttb(ts, value, args.points), repeat, warmup),
            "json_ms": median_ms(lambda: dumps({"series": [series]}), repeat, warmup),
            "points": len(series["ts"]),
            "raw_count": series["raw_count"],
        }
        store.close()
    emit(figures)


if __name__ == "__main__":
    main()
