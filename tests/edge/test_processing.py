"""Edge processing steps over real Arrow edge batches."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from yugong.core.errors import InvalidInput
from yugong.core.quality import Quality
from yugong.core.units import unit_factor
from yugong.edge.processing import (
    ComputedPoints,
    Deadband,
    Pipeline,
    PipelineConfig,
    ReportByException,
    UnitConvert,
    WindowAggregate,
    build_pipeline,
)
from yugong.edge.samples import EDGE_SCHEMA, edge_batch

S = 1_000_000  # microseconds per second
G, U, B = int(Quality.GOOD), int(Quality.UNCERTAIN), int(Quality.BAD)


def rows(t: pa.Table) -> list[tuple[Any, ...]]:
    assert t.schema.equals(EDGE_SCHEMA)
    return [
        (r["device"], r["point"], r["ts"] // S, r["value"], r["quality"]) for r in t.to_pylist()
    ]


def values(t: pa.Table) -> list[float | None]:
    return t.column("value").to_pylist()


# ---------------------------------------------------------------- report by exception


def test_rbe_first_value_always_reported_then_absolute_deadband() -> None:
    rbe = ReportByException(Deadband(absolute=1.0))
    out = rbe(edge_batch("d", ["p"] * 5, np.arange(5) * S, [10.0, 10.5, 11.0, 11.1, 8.9]))
    # 10.5 and 11.0 are within 1.0 of 10; 11.1 is beyond; 8.9 is 2.2 below 11.1.
    assert values(out) == [10.0, 11.1, 8.9]
    # The reference is the last REPORTED value, also across batches.
    assert values(rbe(edge_batch("d", ["p"], 9 * S, 9.8))) == []
    assert values(rbe(edge_batch("d", ["p"], 10 * S, 7.8))) == [7.8]


def test_rbe_percent_deadband_is_relative_to_last_reported() -> None:
    rbe = ReportByException(Deadband(percent=5.0))
    out = rbe(edge_batch("d", ["p"] * 5, np.arange(5) * S, [100.0, 104.0, 106.0, 102.0, 0.0]))
    assert values(out) == [100.0, 106.0, 0.0]  # 102 is within 5% of 106 (5.3)
    # From zero, any change is outside a percent deadband.
    assert values(rbe(edge_batch("d", ["p"], 9 * S, 0.001))) == [0.001]


def test_rbe_absolute_or_percent_whichever_is_exceeded() -> None:
    by_percent = ReportByException(Deadband(absolute=10.0, percent=0.2))
    out = by_percent(edge_batch("d", ["p"] * 3, np.arange(3) * S, [1000.0, 1005.0, 1006.0]))
    assert values(out) == [1000.0, 1005.0]  # 5 > 0.2% of 1000; 1 is inside both
    by_absolute = ReportByException(Deadband(absolute=3.0, percent=5.0))
    out = by_absolute(edge_batch("d", ["p"] * 3, np.arange(3) * S, [1000.0, 1002.0, 1004.0]))
    assert values(out) == [1000.0, 1004.0]


def test_rbe_no_deadband_reports_every_change_only() -> None:
    rbe = ReportByException()
    out = rbe(edge_batch("d", ["p"] * 5, np.arange(5) * S, [1.0, 1.0, 2.0, 2.0, 1.0]))
    assert values(out) == [1.0, 2.0, 1.0]


def test_rbe_quality_change_and_missing_values_are_reported() -> None:
    rbe = ReportByException(Deadband(absolute=100.0))
    b = edge_batch(
        "d",
        ["p"] * 6,
        np.arange(6) * S,
        [5.0, 5.0, np.nan, np.nan, 5.0, 5.0],
        quality=[G, U, B, B, G, G],
    )
    out = rbe(b)
    assert [(r[3], r[4]) for r in rows(out)] == [(5.0, G), (5.0, U), (None, B), (5.0, G)]


def test_rbe_heartbeat_reports_after_max_silence() -> None:
    rbe = ReportByException(Deadband(absolute=1.0), heartbeat_s=10)
    ts = np.array([0, 4, 9, 10, 15, 19, 20, 21])
    out = rbe(edge_batch("d", ["p"] * len(ts), ts * S, 1.0))
    assert [r[2] for r in rows(out)] == [0, 10, 20]


def test_rbe_keys_are_independent_and_rows_keep_their_order() -> None:
    rbe = ReportByException(Deadband(absolute=0.5), points={"fast": Deadband(absolute=0.01)})
    b = edge_batch(
        ["a", "b", "a", "a", "b", "a"],
        ["slow", "slow", "fast", "slow", "slow", "fast"],
        [0, 0, 0, S, S, S],
        [1.0, 1.0, 1.0, 1.2, 2.0, 1.02],
    )
    assert rows(rbe(b)) == [
        ("a", "slow", 0, 1.0, G),
        ("b", "slow", 0, 1.0, G),
        ("a", "fast", 0, 1.0, G),
        ("b", "slow", 1, 2.0, G),
        ("a", "fast", 1, 1.02, G),
    ]


def test_rbe_many_points_per_batch_and_unsorted_time() -> None:
    n = 5000
    rbe = ReportByException(Deadband(absolute=0.5))
    points = [f"p{i}" for i in range(n)]
    assert rbe(edge_batch("d", points, 0, np.zeros(n))).num_rows == n
    moved = np.where(np.arange(n) % 3 == 0, 1.0, 0.2)
    out = rbe(edge_batch("d", points, S, moved))
    assert out.num_rows == len(range(0, n, 3))
    # Rows out of time order within a key are compared in time order.
    out2 = rbe(edge_batch("d", ["p1", "p1"], [3 * S, 2 * S], [5.0, 0.3]))
    assert rows(out2) == [("d", "p1", 3, 5.0, G)]


def test_rbe_text_points_report_on_change() -> None:
    rbe = ReportByException(Deadband(absolute=1.0))
    b = edge_batch("d", ["state"] * 4, np.arange(4) * S, text=["run", "run", "stop", "stop"])
    assert rbe(b).column("text").to_pylist() == ["run", "stop"]


def test_rbe_snapshot_and_restore_resume_the_same_decisions() -> None:
    rbe = ReportByException(Deadband(absolute=1.0), heartbeat_s=60)
    rbe(edge_batch("d", ["p", "q"], 0, [10.0, 20.0]))
    again = ReportByException(Deadband(absolute=1.0), heartbeat_s=60)
    again.restore(rbe.snapshot())
    b = edge_batch("d", ["p", "q", "r"], S, [10.5, 22.0, 1.0])
    assert rows(again(b)) == rows(rbe(b)) == [("d", "q", 1, 22.0, G), ("d", "r", 1, 1.0, G)]


# ---------------------------------------------------------------- windows


def test_window_min_max_avg_last_with_start_timestamps() -> None:
    w = WindowAggregate(10, ["min", "max", "avg", "last"])
    out = w(edge_batch("d", ["t"] * 5, np.array([0, 3, 9, 11, 25]) * S, [1, 5, 3, 7, 9]))
    got = {(r[1], r[2]): r[3] for r in rows(out)}
    assert got == {
        ("t_min", 0): 1.0,
        ("t_max", 0): 5.0,
        ("t_avg", 0): 3.0,
        ("t_last", 0): 3.0,
        ("t_min", 10): 7.0,
        ("t_max", 10): 7.0,
        ("t_avg", 10): 7.0,
        ("t_last", 10): 7.0,
    }
    # [20, 30) is still open; the gap window [30, 40) would emit nothing.
    assert rows(w.flush()) == [
        ("d", "t_min", 20, 9.0, G),
        ("d", "t_max", 20, 9.0, G),
        ("d", "t_avg", 20, 9.0, G),
        ("d", "t_last", 20, 9.0, G),
    ]
    assert w.flush().num_rows == 0


def test_window_boundaries_belong_to_the_next_window_and_span_batches() -> None:
    w = WindowAggregate(10, ["avg"], suffix=False)
    assert w(edge_batch("d", ["t", "t"], [0, 10 * S - 1], [1.0, 3.0])).num_rows == 0
    out = w(edge_batch("d", ["t", "t"], [10 * S, 19 * S], [10.0, 20.0]))
    assert rows(out) == [("d", "t", 0, 2.0, G)]
    assert rows(w.flush()) == [("d", "t", 10, 15.0, G)]


def test_window_gaps_emit_nothing() -> None:
    w = WindowAggregate(5, ["last"])
    out = w(edge_batch("d", ["t"] * 3, np.array([1, 2, 31]) * S, [1.0, 2.0, 3.0]))
    assert rows(out) == [("d", "t_last", 0, 2.0, G)]
    assert rows(w.flush()) == [("d", "t_last", 30, 3.0, G)]


def test_window_late_rows_are_dropped_and_counted() -> None:
    w = WindowAggregate(10, ["avg"], suffix=False)
    w(edge_batch("d", ["t", "t"], [1 * S, 12 * S], [1.0, 2.0]))  # closes [0, 10)
    out = w(edge_batch("d", ["t", "t"], [5 * S, 13 * S], [100.0, 4.0]))
    assert out.num_rows == 0 and w.late_dropped == 1
    assert rows(w.flush()) == [("d", "t", 10, 3.0, G)]


def test_window_quiet_points_close_by_watermark_after_lateness() -> None:
    w = WindowAggregate(10, ["avg"], suffix=False, lateness_s=5)
    w(edge_batch(["a", "b"], ["t", "t"], [1 * S, 2 * S], [1.0, 2.0]))
    # Only "a" keeps reporting; "b" closes once the watermark is 5 s past its window's end.
    out = w(edge_batch("a", ["t"], 14 * S, 3.0))
    assert rows(out) == [("a", "t", 0, 1.0, G)]
    out = w(edge_batch("a", ["t"], 15 * S, 3.0))
    assert rows(out) == [("b", "t", 0, 2.0, G)]
    # A row for "b"'s closed window is now late.
    assert w(edge_batch("b", ["t"], 9 * S, 7.0)).num_rows == 0 and w.late_dropped == 1


def test_window_quality_and_windows_without_values() -> None:
    w = WindowAggregate(10, ["avg", "min"])
    b = edge_batch(
        ["a", "a", "b", "b", "c"],
        ["t"] * 5,
        [0, S, 0, S, 0],
        [2.0, np.nan, np.nan, np.nan, 5.0],
        quality=[G, B, B, B, U],
    )
    w(b)
    got = rows(w.flush())
    assert ("a", "t_avg", 0, 2.0, U) in got  # one value, one failed read: uncertain
    assert ("b", "t_avg", 0, None, B) in got  # no value at all: bad, null
    assert ("c", "t_min", 0, 5.0, U) in got


def test_window_only_listed_points_text_passes_through() -> None:
    w = WindowAggregate(10, ["max"], points=["t"])
    b = pa.concat_tables(
        [
            edge_batch("d", ["t", "other"], [0, 0], [1.0, 2.0]),
            edge_batch("d", ["t"], S, text=["oops"]),
        ]
    )
    out = w(b)
    assert rows(out) == [("d", "other", 0, 2.0, G), ("d", "t", 1, None, G)]
    assert out.column("text").to_pylist() == [None, "oops"]


def test_window_snapshot_restore_continues_open_windows() -> None:
    w = WindowAggregate(10, ["avg", "last"])
    w(edge_batch("d", ["t", "t"], [1 * S, 2 * S], [1.0, 3.0]))
    w2 = WindowAggregate(10, ["avg", "last"])
    w2.restore(w.snapshot())
    b = edge_batch("d", ["t", "t"], [3 * S, 11 * S], [5.0, 0.0])
    assert rows(w2(b)) == rows(w(b)) == [("d", "t_avg", 0, 3.0, G), ("d", "t_last", 0, 5.0, G)]


def test_window_rejects_bad_configuration() -> None:
    with pytest.raises(InvalidInput, match="exactly one aggregate"):
        WindowAggregate(10, ["avg", "max"], suffix=False)
    with pytest.raises(InvalidInput, match="unknown aggregates"):
        WindowAggregate(10, ["median"])


# ---------------------------------------------------------------- computed points


def test_computed_point_uses_latest_inputs_and_worst_quality() -> None:
    c = ComputedPoints({"power": "voltage * current * 1.732 * pf / 1000"})
    b = edge_batch(
        "m1",
        ["voltage", "current", "pf", "voltage"],
        [0, 0, 0, 5 * S],
        [400.0, 10.0, 0.9, 410.0],
        quality=[G, U, G, G],
    )
    out = c(b)
    assert out.num_rows == 6  # inputs pass through
    power = [r for r in rows(out) if r[1] == "power"]
    assert [(r[2], r[4]) for r in power] == [(0, U), (5, U)]
    assert power[0][3] == pytest.approx(400 * 10 * 1.732 * 0.9 / 1000)
    assert power[1][3] == pytest.approx(410 * 10 * 1.732 * 0.9 / 1000)
    # Next batch: only current arrives; voltage and pf are held from before.
    power2 = [r for r in rows(c(edge_batch("m1", ["current"], 7 * S, 20.0))) if r[1] == "power"]
    assert power2 == [("m1", "power", 7, pytest.approx(410 * 20 * 1.732 * 0.9 / 1000), G)]


def test_computed_point_waits_for_every_input_and_is_per_device() -> None:
    c = ComputedPoints({"ratio": "a / b"})
    out = c(edge_batch(["x", "y", "y"], ["a", "a", "b"], [0, 0, S], [1.0, 6.0, 3.0]))
    # x has no b yet: nothing invented. y's a is held until b arrives at 1 s.
    assert [r for r in rows(out) if r[1] == "ratio"] == [("y", "ratio", 1, 2.0, G)]
    out = c(edge_batch("x", ["b"], 2 * S, 4.0))
    assert [r for r in rows(out) if r[1] == "ratio"] == [("x", "ratio", 2, 0.25, G)]


def test_computed_points_chain_and_division_by_zero() -> None:
    c = ComputedPoints({"power": "v * i", "per_unit": "power / rated"})
    out = c(edge_batch("d", ["v", "i", "rated"], 0, [2.0, 3.0, 0.0]))
    got = {r[1]: (r[3], r[4]) for r in rows(out)}
    assert got["power"] == (6.0, G)
    assert got["per_unit"] == (math.inf, G)  # division by zero is inf, not an exception
    # 0/0 is undefined: stored as a null value with BAD quality, never as a number.
    out = c(edge_batch("d", ["v"], S, 0.0))
    got = {r[1]: (r[3], r[4]) for r in rows(out)}
    assert got["power"] == (0.0, G)
    assert got["per_unit"] == (None, B)


def test_computed_points_refuse_bad_expressions_naming_the_point() -> None:
    with pytest.raises(InvalidInput, match=r"compute\.points\.power: .*attribute access"):
        ComputedPoints({"power": "v.real * i"})


# ---------------------------------------------------------------- units


@pytest.mark.parametrize(
    ("src", "dst", "value", "expected"),
    [
        ("degF", "degC", 212.0, 100.0),
        ("degF", "degC", 32.0, 0.0),
        ("degF", "degC", -40.0, -40.0),
        ("degC", "K", 0.0, 273.15),
        ("psi", "bar", 14.5037738, 1.0),
        ("kW", "W", 1.5, 1500.0),
        ("kWh", "MJ", 1.0, 3.6),
        ("rpm", "rad/s", 60.0, 2 * math.pi),
        ("m^3/h", "L/s", 3.6, 1.0),
    ],
)
def test_unit_conversion_reference_values(
    src: str, dst: str, value: float, expected: float
) -> None:
    factor, offset = unit_factor(src, dst)
    assert value * factor + offset == pytest.approx(expected, rel=1e-7, abs=1e-9)


def test_unit_convert_applies_per_point_and_keeps_nulls() -> None:
    u = UnitConvert({"temp": ("degF", "degC"), "pressure": ("psi", "bar")})
    b = edge_batch("d", ["temp", "pressure", "other", "temp"], 0, [212.0, 14.5037738, 7.0, np.nan])
    out = values(u(b))
    assert out[0] == pytest.approx(100.0) and out[1] == pytest.approx(1.0)
    assert out[2] == 7.0 and out[3] is None


@pytest.mark.parametrize(
    ("src", "dst", "message"),
    [
        ("degF", "bar", "different dimensions"),
        ("furlongz", "m", "unknown unit"),
        ("dB", "", "not a linear conversion"),
    ],
)
def test_unit_conversion_errors_at_configuration(src: str, dst: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as info:
        UnitConvert({"temp": (src, dst)})
    assert info.value.errors[0].loc == "units.points.temp"


# ---------------------------------------------------------------- pipeline


def test_pipeline_from_config_runs_steps_in_order() -> None:
    cfg = {
        "steps": [
            {"kind": "units", "points": {"temp": {"from": "degF", "to": "degC"}}},
            {"kind": "compute", "points": {"power": "voltage * current / 1000"}},
            {"kind": "report_by_exception", "absolute": 0.5, "points": {"power": {"percent": 1}}},
            {"kind": "window", "name": "avg10", "seconds": 10, "aggregates": ["avg"]},
        ]
    }
    p = build_pipeline(cfg)
    assert [n for n, _ in p.steps] == ["units", "compute", "report_by_exception", "avg10"]
    b = edge_batch(
        "m",
        ["temp", "voltage", "current"] * 2,
        [0, 0, 0, S, S, S],
        [212, 400, 10, 212.5, 400, 10.05],
    )
    assert p(b).num_rows == 0  # everything sits in the open window
    got = {r[1]: r[3] for r in rows(p.flush())}
    # temp 212 -> 100 °C; 212.5 -> 100.28 °C is inside the 0.5 deadband; power 4.0 then
    # 4.02 is inside 1%: only the first values reach the window.
    assert got["temp_avg"] == pytest.approx(100.0)
    assert got["power_avg"] == pytest.approx(4.0)
    assert got["current_avg"] == 10.0
    assert set(p.snapshot()) == {"report_by_exception", "avg10", "compute"}


def test_pipeline_accepts_plain_functions_and_refuses_duplicate_names() -> None:
    def double(t: pa.Table) -> pa.Table:
        v = np.asarray(t.column("value").to_numpy(zero_copy_only=False), dtype=float) * 2
        return t.set_column(3, "value", pa.array(v, pa.float64()))

    p = Pipeline([("double", double), ("rbe", ReportByException())])
    assert values(p(edge_batch("d", ["p"], 0, 2.0))) == [4.0]
    with pytest.raises(InvalidInput, match="duplicate step names"):
        Pipeline([("a", double), ("a", double)])


def test_pipeline_config_errors_name_the_field() -> None:
    with pytest.raises(ValidationError, match="seconds"):
        PipelineConfig.model_validate({"steps": [{"kind": "window", "seconds": 0}]})
    with pytest.raises(ValidationError, match="kind"):
        PipelineConfig.model_validate({"steps": [{"kind": "nope"}]})
    with pytest.raises(InvalidInput, match=r"compute\.points\.x"):
        build_pipeline({"steps": [{"kind": "compute", "points": {"x": "import os"}}]})
