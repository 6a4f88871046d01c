"""OEE, TEEP and the six big losses against published worked examples."""

from __future__ import annotations

from typing import Any

import pytest

from yugong.platform.components import ComponentInputError
from yugong.platform.components.library.oee import SIX_LOSSES, oee, six_big_losses, teep

MIN = 60.0
HOUR = 3600.0
DAY = 86400.0
T0 = 1_700_000_000.0  # an arbitrary epoch second for the start of the shift


def iv(start_min: float, end_min: float, state: str) -> dict[str, Any]:
    return {"start": T0 + start_min * MIN, "end": T0 + end_min * MIN, "state": state}


# Vorne Industries, "The Fast Guide to OEE" / "Calculating OEE" worksheet (www.oee.com):
# 8 h shift = 480 min, two 15 min breaks and a 30 min meal (planned 420 min), 47 min down
# (run 373 min), ideal run rate 60 pieces/min (ideal cycle 1 s), 19,271 pieces, 423 rejects.
# Published: availability 0.8881, performance 0.8611, quality 0.9780, OEE 0.7479.
VORNE_SHIFT = [
    iv(0, 120, "running"),
    iv(120, 135, "planned_stop"),  # short break
    iv(135, 240, "running"),
    iv(240, 270, "planned_stop"),  # meal
    iv(270, 317, "down"),  # 47 min
    iv(317, 390, "running"),
    iv(390, 405, "planned_stop"),  # short break
    iv(405, 480, "running"),
]
VORNE_COUNTS = {"total_count": 19_271, "reject_count": 423, "ideal_cycle_time": 1.0}


def test_oee_vorne_worked_example() -> None:
    out = oee(intervals=VORNE_SHIFT, **VORNE_COUNTS)
    assert out["planned_time"] == pytest.approx(420 * MIN)
    assert out["run_time"] == pytest.approx(373 * MIN)
    # Published to four decimals.
    assert out["availability"] == pytest.approx(0.8881, abs=5e-5)
    assert out["performance"] == pytest.approx(0.8611, abs=5e-5)
    assert out["quality"] == pytest.approx(0.9780, abs=5e-5)
    assert out["oee"] == pytest.approx(0.7479, abs=5e-5)
    # Vorne's simple formula: fully productive time = good pieces x ideal cycle = 18,848 s.
    assert out["fully_productive_time"] == pytest.approx(18_848.0)
    assert out["oee"] == pytest.approx(18_848.0 / (420 * MIN))


def test_oee_aliases_and_unit_conversion() -> None:
    # "breakdown" is the alias of "down"; an ideal rate of 60/min given as 1/60 min.
    shift = [{**x, "state": "breakdown"} if x["state"] == "down" else x for x in VORNE_SHIFT]
    out = oee(
        intervals=shift,
        total_count=19_271,
        reject_count=423,
        ideal_cycle_time={"value": 1 / 60, "unit": "min"},
    )
    assert out["oee"] == pytest.approx(0.7479, abs=5e-5)


def test_oee_window_clips_intervals() -> None:
    # The same shift with running time outside a window of exactly the shift: the first
    # interval starts 30 min early and another runs after the shift ends.
    padded = [iv(-30, 120, "running"), *VORNE_SHIFT[1:], iv(480, 600, "running")]
    out = oee(intervals=padded, window_start=T0, window_end=T0 + 480 * MIN, **VORNE_COUNTS)
    assert out["planned_time"] == pytest.approx(420 * MIN)
    assert out["availability"] == pytest.approx(0.8881, abs=5e-5)


def test_oee_no_units_counted() -> None:
    out = oee(intervals=VORNE_SHIFT, total_count=0, reject_count=0, ideal_cycle_time=1.0)
    assert out["oee"] == 0.0
    assert out["availability"] == pytest.approx(373 / 420)


# LeanWorx, "TEEP definition, TEEP calculation, OEE vs. TEEP": OEE 60 %.
# Example 1: 24 h a day, 6 days a week -> utilization 85.7 %, TEEP 51.4 %.
# Example 2: 12 h a day less 1 h of breaks, 6 days a week -> utilization 39.3 %, TEEP 23.6 %.
# OEE of 60 % is made here with availability 1, quality 1 and performance 0.6
# (ideal cycle 1 s, count = 0.6 x run time in s).
def test_teep_leanworx_example_1() -> None:
    week = [
        {"start": T0 + d * DAY, "end": T0 + (d + 1) * DAY, "state": "running"} for d in range(6)
    ]
    run = 6 * DAY
    out = teep(
        intervals=week,
        total_count=0.6 * run,
        reject_count=0,
        ideal_cycle_time=1.0,
        window_start=T0,
        window_end=T0 + 7 * DAY,
    )
    assert out["oee"] == pytest.approx(0.60)
    assert out["utilization"] == pytest.approx(0.857, abs=5e-4)
    assert out["teep"] == pytest.approx(0.514, abs=5e-4)
    assert out["all_time"] == pytest.approx(7 * DAY)


def test_teep_leanworx_example_2() -> None:
    week: list[dict[str, Any]] = []
    for d in range(6):
        day = T0 + d * DAY
        week += [
            {"start": day + 6 * HOUR, "end": day + 12 * HOUR, "state": "running"},
            {"start": day + 12 * HOUR, "end": day + 13 * HOUR, "state": "planned_stop"},
            {"start": day + 13 * HOUR, "end": day + 18 * HOUR, "state": "running"},
        ]
    run = 6 * 11 * HOUR
    out = teep(
        intervals=week,
        total_count=0.6 * run,
        reject_count=0,
        ideal_cycle_time=1.0,
        window_start=T0,
        window_end=T0 + 7 * DAY,
    )
    assert out["utilization"] == pytest.approx(0.393, abs=5e-4)
    assert out["teep"] == pytest.approx(0.236, abs=5e-4)


def test_teep_vorne_shift_in_a_day() -> None:
    # Hand derivation from the Vorne example: one 480 min shift in a 24 h day,
    # utilization = 420 / 1440, TEEP = OEE x utilization = 0.74794 x 0.29167.
    out = teep(intervals=VORNE_SHIFT, window_start=T0, window_end=T0 + DAY, **VORNE_COUNTS)
    assert out["utilization"] == pytest.approx(420 / 1440)
    assert out["teep"] == pytest.approx(0.7479 * 420 / 1440, abs=5e-5)
    # Without a window, all time is the span of the intervals: 480 min.
    assert teep(intervals=VORNE_SHIFT, **VORNE_COUNTS)["utilization"] == pytest.approx(420 / 480)


# Six big losses, hand-checked 8 h example (Nakajima's classes, Vorne's valuation of quality
# losses at the ideal cycle time). Shift 0-480 min:
#   30 min planned break, 30 min setup, 120 min running, 30 min down, 240 min running,
#   10 min minor stop, 20 min running.
# planned = 480 - 30 = 450 min = 27,000 s; run = 380 + 10 = 390 min = 23,400 s.
# Ideal cycle 2 s, 10,800 units -> net run 21,600 s;
# reduced speed = 23,400 - 600 - 21,600 = 1,200 s.
# 150 rejects of which 50 at startup: process defects 100 x 2 = 200 s, reduced yield 50 x 2 = 100 s.
# Fully productive = 10,650 good x 2 s = 21,300 s.
# Sum: 1,800 + 1,800 + 600 + 1,200 + 200 + 100 + 21,300 = 27,000 s = planned time.
SIX_SHIFT = [
    iv(0, 30, "planned_stop"),
    iv(30, 60, "setup"),
    iv(60, 180, "running"),
    iv(180, 210, "down"),
    iv(210, 450, "running"),
    iv(450, 460, "minor_stop"),
    iv(460, 480, "running"),
]
SIX_EXPECTED = {
    "equipment_failure": 1_800.0,
    "setup_adjustment": 1_800.0,
    "idling_minor_stops": 600.0,
    "reduced_speed": 1_200.0,
    "process_defects": 200.0,
    "reduced_yield": 100.0,
}


def test_six_big_losses_hand_checked() -> None:
    out = six_big_losses(
        intervals=SIX_SHIFT,
        total_count=10_800,
        reject_count=150,
        startup_rejects=50,
        ideal_cycle_time=2.0,
    )
    assert out["planned_time"] == pytest.approx(27_000.0)
    assert out["fully_productive_time"] == pytest.approx(21_300.0)
    for name in SIX_LOSSES:
        assert out["loss_time"][name] == pytest.approx(SIX_EXPECTED[name]), name
        assert out["loss_share"][name] == pytest.approx(SIX_EXPECTED[name] / 27_000.0), name
    total = sum(out["loss_time"].values()) + out["fully_productive_time"]
    assert total == pytest.approx(out["planned_time"])
    # OEE = 21,300 / 27,000 = 0.78889 = A 0.86667 x P 0.92308 x Q 0.98611.
    assert out["oee"] == pytest.approx(21_300 / 27_000)
    cross = oee(intervals=SIX_SHIFT, total_count=10_800, reject_count=150, ideal_cycle_time=2.0)
    assert cross["oee"] == pytest.approx(out["oee"])


def test_six_big_losses_vorne_shift() -> None:
    # The Vorne example: 47 min equipment failure, no setup or minor stops, so the whole
    # performance loss is reduced speed: 22,380 - 19,271 = 3,109 s; rejects 423 s.
    out = six_big_losses(intervals=VORNE_SHIFT, **VORNE_COUNTS)
    assert out["loss_time"]["equipment_failure"] == pytest.approx(47 * MIN)
    assert out["loss_time"]["reduced_speed"] == pytest.approx(373 * MIN - 19_271)
    assert out["loss_time"]["process_defects"] == pytest.approx(423.0)
    assert out["loss_time"]["reduced_yield"] == 0.0
    assert out["oee"] == pytest.approx(0.7479, abs=5e-5)


# Bad input ------------------------------------------------------------------------------


def _loc(exc: pytest.ExceptionInfo[ComponentInputError]) -> str:
    return exc.value.errors[0].loc


def test_rejects_end_before_start_naming_index() -> None:
    bad = [iv(0, 60, "running"), iv(90, 70, "down")]
    with pytest.raises(ComponentInputError) as exc:
        oee(intervals=bad, **VORNE_COUNTS)
    assert _loc(exc) == "inputs.intervals[1]"


def test_rejects_overlap_naming_index() -> None:
    bad = [iv(0, 60, "running"), iv(100, 120, "running"), iv(50, 90, "down")]
    with pytest.raises(ComponentInputError) as exc:
        oee(intervals=bad, **VORNE_COUNTS)
    assert _loc(exc) == "inputs.intervals[2]"
    assert "intervals[0]" in exc.value.errors[0].msg


def test_rejects_unknown_state() -> None:
    with pytest.raises(ComponentInputError) as exc:
        oee(intervals=[iv(0, 60, "sleeping")], **VORNE_COUNTS)
    assert _loc(exc) == "inputs.intervals[0].state"


def test_rejects_intervals_not_a_list() -> None:
    with pytest.raises(ComponentInputError) as exc:
        oee(intervals={"start": 0, "end": 1, "state": "running"}, **VORNE_COUNTS)
    assert _loc(exc) == "inputs.intervals"


def test_rejects_more_rejects_than_total() -> None:
    with pytest.raises(ComponentInputError) as exc:
        oee(intervals=VORNE_SHIFT, total_count=10, reject_count=11, ideal_cycle_time=1.0)
    assert _loc(exc) == "inputs.reject_count"


def test_rejects_performance_above_one() -> None:
    with pytest.raises(ComponentInputError) as exc:
        oee(intervals=VORNE_SHIFT, total_count=19_271, reject_count=0, ideal_cycle_time=2.0)
    assert _loc(exc) == "inputs.ideal_cycle_time"


def test_rejects_no_planned_time() -> None:
    with pytest.raises(ComponentInputError) as exc:
        oee(intervals=[iv(0, 60, "planned_stop")], **VORNE_COUNTS)
    assert _loc(exc) == "inputs.intervals"


def test_rejects_bad_window() -> None:
    with pytest.raises(ComponentInputError) as exc:
        teep(intervals=VORNE_SHIFT, window_start=T0 + 10, window_end=T0, **VORNE_COUNTS)
    assert _loc(exc) == "inputs.window_end"


def test_rejects_negative_count_and_zero_cycle() -> None:
    with pytest.raises(ComponentInputError) as exc:
        oee(intervals=VORNE_SHIFT, total_count=-1, reject_count=0, ideal_cycle_time=1.0)
    assert _loc(exc) == "inputs.total_count"
    with pytest.raises(ComponentInputError) as exc:
        oee(intervals=VORNE_SHIFT, total_count=1, reject_count=0, ideal_cycle_time=0.0)
    assert _loc(exc) == "inputs.ideal_cycle_time"


def test_rejects_array_where_number_expected() -> None:
    with pytest.raises(ComponentInputError) as exc:
        oee(intervals=VORNE_SHIFT, total_count=[1, 2], reject_count=0, ideal_cycle_time=1.0)
    assert _loc(exc) == "inputs.total_count"


def test_rejects_missing_unit() -> None:
    with pytest.raises(ComponentInputError) as exc:
        oee(
            intervals=VORNE_SHIFT,
            total_count=19_271,
            reject_count=423,
            ideal_cycle_time={"value": 1.0},
        )
    assert _loc(exc) == "inputs.ideal_cycle_time"
    assert "missing unit" in exc.value.errors[0].msg


def test_rejects_startup_rejects_above_rejects() -> None:
    with pytest.raises(ComponentInputError) as exc:
        six_big_losses(
            intervals=SIX_SHIFT,
            total_count=10_800,
            reject_count=10,
            startup_rejects=20,
            ideal_cycle_time=2.0,
        )
    assert _loc(exc) == "inputs.startup_rejects"


def test_rejects_reduced_speed_below_zero() -> None:
    # All counted units fit in the run time only if the minor stop were production time.
    shift = [iv(0, 50, "running"), iv(50, 60, "minor_stop")]
    with pytest.raises(ComponentInputError) as exc:
        six_big_losses(intervals=shift, total_count=3_300, reject_count=0, ideal_cycle_time=1.0)
    assert _loc(exc) == "inputs.ideal_cycle_time"
