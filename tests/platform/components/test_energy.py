"""Energy components against published and hand-checked reference values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from yugong.platform.components import ComponentInputError
from yugong.platform.components.library.energy import (
    co2,
    load_factor,
    power_factor,
    specific_consumption,
    tariff_cost,
)

HOUR = 3600.0
DAY = 86_400.0
# 2024-01-01 00:00 in Asia/Shanghai (UTC+8) = 2023-12-31 16:00 UTC.
MIDNIGHT_SHANGHAI = 1_704_038_400.0


def _loc(exc: pytest.ExceptionInfo[ComponentInputError]) -> str:
    return exc.value.errors[0].loc


# Specific energy consumption (ISO 50006:2014 ratio EnPI); values are hand-derived divisions.


def test_specific_consumption_per_period_and_total() -> None:
    out = specific_consumption(energy=[1200.0, 900.0, 1500.0], production=[100.0, 60.0, 150.0])
    np.testing.assert_allclose(out["sec"], [12.0, 15.0, 10.0])
    # Total is production-weighted: 3600 kWh / 310 t, not the mean of 12, 15 and 10.
    assert out["total"] == pytest.approx(3600.0 / 310.0)


def test_specific_consumption_batch_rows_and_units() -> None:
    energy = {"value": [[1.2, 0.9, 1.5], [1.0, 1.0, 1.0]], "unit": "MWh"}
    out = specific_consumption(energy=energy, production=[[100, 60, 150], [10, 20, 20]])
    np.testing.assert_allclose(out["sec"], [[12.0, 15.0, 10.0], [100.0, 50.0, 50.0]])
    np.testing.assert_allclose(out["total"], [3600.0 / 310.0, 3000.0 / 50.0])


def test_specific_consumption_bad_input() -> None:
    with pytest.raises(ComponentInputError) as exc:
        specific_consumption(energy=[1.0, 2.0], production=[1.0, 2.0, 3.0])
    assert _loc(exc) == "inputs.production"
    with pytest.raises(ComponentInputError) as exc:
        specific_consumption(energy=[1.0, 2.0], production=[1.0, 0.0])
    assert _loc(exc) == "inputs.production"
    with pytest.raises(ComponentInputError) as exc:
        specific_consumption(energy=[[[1.0]]], production=[[[1.0]]])
    assert _loc(exc) == "inputs.energy"
    with pytest.raises(ComponentInputError) as exc:
        specific_consumption(energy={"value": [1.0, 2.0]}, production=[1.0, 2.0])
    assert _loc(exc) == "inputs.energy"


# Time-of-use tariff: a hand-checked peak/flat/valley schedule of the kind provinces set under
# the NDRC 2021 time-of-use notice (not any one province's published prices):
# valley 22:00-08:00 at 0.3, peak 08:00-12:00 and 18:00-22:00 at 1.0, flat 12:00-18:00 at 0.6.
PERIODS: list[dict[str, Any]] = [
    {"name": "valley", "start": "22:00", "end": "08:00", "price": 0.3},
    {"name": "peak", "start": "08:00", "end": "12:00", "price": 1.0},
    {"name": "flat", "start": "12:00", "end": "18:00", "price": 0.6},
    {"name": "peak", "start": "18:00", "end": "22:00", "price": 1.0},
]


def test_tariff_constant_load_one_local_day() -> None:
    # 100 kW for 24 h: valley 10 h = 1000 kWh (300), peak 8 h = 800 kWh (800),
    # flat 6 h = 600 kWh (360); total 2400 kWh and 1460.
    t = MIDNIGHT_SHANGHAI + np.arange(25) * HOUR
    out = tariff_cost(time=t, power=np.full(25, 100.0), periods=PERIODS)
    assert out["energy_by_period"] == pytest.approx({"valley": 1000, "peak": 800, "flat": 600})
    assert out["cost_by_period"] == pytest.approx({"valley": 300, "peak": 800, "flat": 360})
    assert out["energy"] == pytest.approx(2400.0)
    assert out["cost"] == pytest.approx(1460.0)


def test_tariff_ramp_split_exactly_at_boundaries() -> None:
    # Two samples: power ramps 0 -> 240 kW over the day, P = 10 h kW at local hour h, so the
    # energy from hour a to b is 5 (b**2 - a**2) kWh (trapezoid exact for a linear ramp).
    # valley [0, 8] + [22, 24] = 320 + 460 = 780; peak [8, 12] + [18, 22] = 400 + 800 = 1200;
    # flat [12, 18] = 900. Cost = 780 x 0.3 + 1200 x 1.0 + 900 x 0.6 = 1974.
    t = [MIDNIGHT_SHANGHAI, MIDNIGHT_SHANGHAI + DAY]
    out = tariff_cost(time=t, power=[0.0, 240.0], periods=PERIODS, timezone="Asia/Shanghai")
    assert out["energy_by_period"] == pytest.approx({"valley": 780, "peak": 1200, "flat": 900})
    assert out["energy"] == pytest.approx(2880.0)
    assert out["cost"] == pytest.approx(1974.0)


def test_tariff_clock_times_follow_the_time_zone() -> None:
    # The same ramp read in UTC: it starts at 16:00 local, so with x hours elapsed
    # flat x in [0, 2] and [20, 24]: 20 + 880 = 900; peak [2, 6] and [16, 20]: 160 + 720 = 880;
    # valley [6, 16]: 1100.
    t = [MIDNIGHT_SHANGHAI, MIDNIGHT_SHANGHAI + DAY]
    out = tariff_cost(time=t, power=[0.0, 240.0], periods=PERIODS, timezone="UTC")
    assert out["energy_by_period"] == pytest.approx({"valley": 1100, "peak": 880, "flat": 900})
    assert out["cost"] == pytest.approx(1100 * 0.3 + 880 * 1.0 + 900 * 0.6)


def test_tariff_daylight_saving_day() -> None:
    # Europe/Berlin, 2024-03-31 has 23 h (02:00 -> 03:00). 10 kW from local 00:00 to 24:00:
    # valley 00:00-08:00 is 7 h real time (70 kWh) plus 22:00-24:00 (20 kWh) = 90 kWh;
    # peak 8 h = 80 kWh; flat 6 h = 60 kWh; total 23 h = 230 kWh.
    start = 1_711_839_600.0  # 2024-03-31 00:00 CET = 2024-03-30 23:00 UTC
    t = start + np.arange(24) * HOUR  # 23 h of real time: local 00:00 to 24:00
    out = tariff_cost(time=t, power=np.full(24, 10.0), periods=PERIODS, timezone="Europe/Berlin")
    assert out["energy_by_period"] == pytest.approx({"valley": 90, "peak": 80, "flat": 60})


def test_tariff_unit_conversion() -> None:
    t = MIDNIGHT_SHANGHAI + np.arange(25) * HOUR
    out = tariff_cost(time=t, power={"value": np.full(25, 100_000.0), "unit": "W"}, periods=PERIODS)
    assert out["energy"] == pytest.approx(2400.0)


def test_tariff_rejects_overlapping_periods() -> None:
    periods = [*PERIODS[:3], {"name": "peak", "start": "17:00", "end": "22:00", "price": 1.0}]
    with pytest.raises(ComponentInputError) as exc:
        tariff_cost(time=[0.0, 60.0], power=[1.0, 1.0], periods=periods)
    assert _loc(exc) == "inputs.periods"
    assert "periods[3]" in exc.value.errors[0].msg and "17:00" in exc.value.errors[0].msg


def test_tariff_rejects_gap_in_periods() -> None:
    with pytest.raises(ComponentInputError) as exc:
        tariff_cost(time=[0.0, 60.0], power=[1.0, 1.0], periods=PERIODS[:3])
    assert _loc(exc) == "inputs.periods"
    assert "18:00" in exc.value.errors[0].msg


def test_tariff_rejects_bad_period_fields() -> None:
    bad = [{"name": "all", "start": "25:00", "end": "00:00", "price": 1.0}]
    with pytest.raises(ComponentInputError) as exc:
        tariff_cost(time=[0.0, 60.0], power=[1.0, 1.0], periods=bad)
    assert _loc(exc) == "inputs.periods[0].start"


def test_tariff_rejects_bad_series() -> None:
    with pytest.raises(ComponentInputError) as exc:
        tariff_cost(time=[0.0, 60.0, 30.0], power=[1.0, 1.0, 1.0], periods=PERIODS)
    assert _loc(exc) == "inputs.time"
    with pytest.raises(ComponentInputError) as exc:
        tariff_cost(time=[0.0, 60.0], power=[1.0, 1.0, 1.0], periods=PERIODS)
    assert _loc(exc) == "inputs.power"
    with pytest.raises(ComponentInputError) as exc:
        tariff_cost(time=[0.0, 60.0], power=[[1.0, 1.0]], periods=PERIODS)
    assert _loc(exc) == "inputs.power"
    with pytest.raises(ComponentInputError) as exc:
        tariff_cost(time=[0.0, 60.0], power={"value": [1.0, 1.0]}, periods=PERIODS)
    assert _loc(exc) == "inputs.power"
    with pytest.raises(ComponentInputError) as exc:
        tariff_cost(time=[0.0, 60.0], power=[1.0, 1.0], periods=PERIODS, timezone="Mars/Base")
    assert _loc(exc) == "inputs.timezone"


# Load factor: Mehta & Mehta, Principles of Power System, Example 3.3: a station delivers
# 100 MW for 2 h and 50 MW for 6 h and is shut down the rest of each day: load factor 20.8 %.
MEHTA_3_3 = [100.0] * 2 + [50.0] * 6 + [0.0] * 16  # MW, hourly


def test_load_factor_mehta_example_3_3() -> None:
    out = load_factor(load={"value": MEHTA_3_3, "unit": "MW"})
    assert out["load_factor"] == pytest.approx(0.208, abs=5e-4)
    assert out["peak"] == pytest.approx(100_000.0)  # kW
    assert out["average"] == pytest.approx(500_000.0 / 24)  # 500 MWh a day


def test_load_factor_batch_rows() -> None:
    # Row 2 is a flat load: load factor 1 by definition.
    out = load_factor(load=[MEHTA_3_3, [7.0] * 24])
    np.testing.assert_allclose(out["load_factor"], [500.0 / 2400.0, 1.0])
    np.testing.assert_allclose(out["peak"], [100.0, 7.0])


def test_load_factor_bad_input() -> None:
    with pytest.raises(ComponentInputError) as exc:
        load_factor(load=[0.0, 0.0])
    assert _loc(exc) == "inputs.load"
    with pytest.raises(ComponentInputError) as exc:
        load_factor(load=[1.0, -2.0])
    assert _loc(exc) == "inputs.load"
    with pytest.raises(ComponentInputError) as exc:
        load_factor(load=5.0)
    assert _loc(exc) == "inputs.load"
    with pytest.raises(ComponentInputError) as exc:
        load_factor(load={"value": [1.0, 2.0]})
    assert _loc(exc) == "inputs.load"


# Power factor.


def test_power_factor_alexander_sadiku_example_11_13() -> None:
    # v = 120 cos(100 pi t - 20 deg) V, i = 4 cos(100 pi t + 10 deg) A:
    # S = (120 / sqrt 2)(4 / sqrt 2) = 240 VA, pf = cos(-30 deg) = 0.866 leading,
    # so P = 240 cos 30 deg W and Q = -240 sin 30 deg = -120 var.
    p = {"value": 240 * np.cos(np.radians(30)), "unit": "W"}
    q = -0.120
    out = power_factor(p=p, q=q)
    assert out["s"] == pytest.approx(0.240)
    assert out["pf"] == pytest.approx(0.866, abs=5e-4)
    assert out["angle"] == pytest.approx(-30.0)  # leading


def test_power_factor_power_triangle_3_4_5() -> None:
    # Power triangle P = 3 kW, Q = 4 kvar: S = 5 kVA, pf = 0.6 (IEEE 1459 definition).
    out = power_factor(p=[3.0, 4.0], q=[4.0, 3.0])
    np.testing.assert_allclose(out["s"], [5.0, 5.0])
    np.testing.assert_allclose(out["pf"], [0.6, 0.8])


def test_power_factor_bad_input() -> None:
    with pytest.raises(ComponentInputError) as exc:
        power_factor(p=0.0, q=0.0)
    assert _loc(exc) == "inputs.p"
    with pytest.raises(ComponentInputError) as exc:
        power_factor(p=-1.0, q=0.0)
    assert _loc(exc) == "inputs.p"
    with pytest.raises(ComponentInputError) as exc:
        power_factor(p=[1.0, 2.0], q=[1.0, 2.0, 3.0])
    assert _loc(exc) == "inputs.q"
    with pytest.raises(ComponentInputError) as exc:
        power_factor(p={"value": 3.0}, q=4.0)
    assert _loc(exc) == "inputs.p"


# CO2: emissions = energy x factor. Default 0.5703 tCO2/MWh, China's 2022 national grid
# average (MEE, Huan Ban Qi Hou Han [2023] No. 43); hand-derived products.


def test_co2_default_china_grid_factor() -> None:
    out = co2(energy={"value": 1.0, "unit": "MWh"})
    assert out["co2"] == pytest.approx(570.3)
    assert out["co2_t"] == pytest.approx(0.5703)


def test_co2_override_factor_and_arrays() -> None:
    # The MEE/NBS announcement of 2022 electricity factors: national average 0.5366 kg/kWh.
    out = co2(energy=[1000.0, 2500.0], factor={"value": 0.5366, "unit": "t/MWh"})
    np.testing.assert_allclose(out["co2"], [536.6, 1341.5])
    np.testing.assert_allclose(out["co2_t"], [0.5366, 1.3415])


def test_co2_bad_input() -> None:
    with pytest.raises(ComponentInputError) as exc:
        co2(energy=-1.0)
    assert _loc(exc) == "inputs.energy"
    with pytest.raises(ComponentInputError) as exc:
        co2(energy=[1.0, 2.0], factor=[0.5, 0.6, 0.7])
    assert _loc(exc) == "inputs.factor"
    with pytest.raises(ComponentInputError) as exc:
        co2(energy={"value": 1.0})
    assert _loc(exc) == "inputs.energy"
    with pytest.raises(ComponentInputError) as exc:
        co2(energy={"value": 1.0, "unit": "kg"})
    assert _loc(exc) == "inputs.energy"
