"""Pump, fan and compressor models against published worked examples."""

from __future__ import annotations

import numpy as np
import pytest

from yugong.core.units import unit_factor
from yugong.platform.components import ComponentInputError
from yugong.platform.components.library.fluids import (
    compressor_specific_power,
    fan_laws,
    pump_affinity,
    pump_efficiency,
)


def _to(value: float, src: str, dst: str) -> float:
    factor, offset = unit_factor(src, dst)
    return value * factor + offset


def _loc(exc: pytest.ExceptionInfo[ComponentInputError]) -> str:
    return exc.value.errors[0].loc


# pump.affinity ---------------------------------------------------------------------------


def test_pump_affinity_speed_change_pump_school_example() -> None:
    # Pump Industry Australia, "Pump School: predicting performance with speed variations"
    # (Kelair Pumps): 200 L/s, 30 m, 120 kW at 1450 rpm -> 220.69 L/s, 36.53 m, 161.23 kW
    # at 1600 rpm. Published to 2 decimals.
    out = pump_affinity(
        flow={"value": 200.0, "unit": "L/s"},
        head=30.0,
        power=120.0,
        speed=1450.0,
        new_speed=1600.0,
    )
    assert _to(float(out["flow"]), "m**3/h", "L/s") == pytest.approx(220.69, abs=0.005)
    assert float(out["head"]) == pytest.approx(36.53, abs=0.005)
    assert float(out["power"]) == pytest.approx(161.23, abs=0.005)


def test_pump_affinity_impeller_trim_and_vectorised() -> None:
    # Diameter rules (Karassik, Pump Handbook, affinity laws): by hand, a trim from 250 to
    # 225 mm is a ratio 0.9: flow x0.9, head x0.81, power x0.729.
    out = pump_affinity(
        flow=np.array([100.0, 50.0]),
        head=np.array([40.0, 20.0]),
        power=np.array([15.0, 5.0]),
        diameter=250.0,
        new_diameter=225.0,
    )
    np.testing.assert_allclose(out["flow"], [90.0, 45.0])
    np.testing.assert_allclose(out["head"], [32.4, 16.2])
    np.testing.assert_allclose(out["power"], [10.935, 3.645])


def test_pump_affinity_bad_input() -> None:
    with pytest.raises(ComponentInputError) as exc:
        pump_affinity(flow=10.0, head=5.0, power=1.0, new_speed=1200.0)
    assert _loc(exc) == "inputs.speed"
    with pytest.raises(ComponentInputError) as exc:
        pump_affinity(flow=10.0, head=5.0, power=1.0)
    assert _loc(exc) == "inputs.new_speed"
    with pytest.raises(ComponentInputError) as exc:
        pump_affinity(flow=-1.0, head=5.0, power=1.0, speed=1.0, new_speed=2.0)
    assert _loc(exc) == "inputs.flow"
    with pytest.raises(ComponentInputError) as exc:
        pump_affinity(flow={"value": 10.0}, head=5.0, power=1.0, speed=1.0, new_speed=2.0)
    assert _loc(exc) == "inputs.flow"
    with pytest.raises(ComponentInputError) as exc:
        pump_affinity(flow=10.0, head=5.0, power=1.0, speed=[[[1.0]], [[2.0]]], new_speed="x")
    assert _loc(exc) == "inputs.new_speed"


# pump.efficiency ---------------------------------------------------------------------------


def test_pump_efficiency_cengel_cimbala_pumping_power_example() -> None:
    # Çengel & Cimbala, Fluid Mechanics, Ch. 5 example "Pumping power and frictional heating
    # in a pump": 50 L/s of water (1000 kg/m³) raised from 100 to 300 kPa, equal pipe sizes,
    # pump on a 15 kW motor of 90 % efficiency -> shaft 13.5 kW, mechanical energy added
    # Q·ΔP = 10 kW, pump efficiency 74.1 %. The head equivalent of 200 kPa is ΔP/(ρ·g).
    head = 200_000.0 / (1000.0 * 9.80665)
    out = pump_efficiency(
        flow={"value": 50.0, "unit": "L/s"},
        head=head,
        shaft_power=0.90 * 15.0,
        density=1000.0,
    )
    assert float(out["hydraulic_power"]) == pytest.approx(10.0, rel=1e-9)
    assert float(out["efficiency"]) == pytest.approx(0.741, abs=0.0005)


def test_pump_efficiency_default_density_and_arrays() -> None:
    # By hand: ρ = 998.2 kg/m³ (water, 20 °C), Q = 36 m³/h = 0.01 m³/s, H = 10 m:
    # P_h = 998.2 · 9.80665 · 0.01 · 10 = 978.90 W; on 2 kW shaft power η = 0.48945.
    out = pump_efficiency(flow=[36.0, 72.0], head=10.0, shaft_power=[2.0, 4.0])
    np.testing.assert_allclose(out["hydraulic_power"], [0.9789, 1.9578], rtol=1e-4)
    np.testing.assert_allclose(out["efficiency"], [0.48945, 0.48945], rtol=1e-4)


def test_pump_efficiency_bad_input() -> None:
    with pytest.raises(ComponentInputError) as exc:
        pump_efficiency(flow=360.0, head=100.0, shaft_power=1.0)
    assert _loc(exc) == "inputs.shaft_power"
    with pytest.raises(ComponentInputError) as exc:
        pump_efficiency(flow=36.0, head=10.0, shaft_power=0.0)
    assert _loc(exc) == "inputs.shaft_power"
    with pytest.raises(ComponentInputError) as exc:
        pump_efficiency(flow=36.0, head={"value": 10.0, "unit": ""}, shaft_power=2.0)
    assert _loc(exc) == "inputs.head"
    with pytest.raises(ComponentInputError) as exc:
        pump_efficiency(flow=36.0, head={"value": 10.0, "unit": "kg"}, shaft_power=2.0)
    assert _loc(exc) == "inputs.head"


# fan.laws ----------------------------------------------------------------------------------


def test_fan_laws_speed_change_published_example() -> None:
    # Fan-affinity worked example (theprimecalculator.com, fan laws after AMCA 201):
    # 10,000 cfm, 2.0 in. w.g., 5 hp at 1200 rpm; at 1500 rpm: 12,500 cfm, 3.13 in. w.g.,
    # 9.77 hp (published to 3 significant figures).
    out = fan_laws(
        flow={"value": 10_000.0, "unit": "ft**3/min"},
        pressure={"value": 2.0, "unit": "inH2O"},
        power={"value": 5.0, "unit": "hp"},
        speed=1200.0,
        new_speed=1500.0,
    )
    assert _to(float(out["flow"]), "m**3/h", "ft**3/min") == pytest.approx(12_500.0, rel=1e-9)
    # 2.0 · 1.25² = 3.125 exactly, which the example prints rounded half-up as 3.13
    assert _to(float(out["pressure"]), "Pa", "inH2O") == pytest.approx(3.13, abs=0.0051)
    assert _to(float(out["power"]), "kW", "hp") == pytest.approx(9.77, abs=0.005)


def test_fan_laws_diameter_and_density() -> None:
    # AMCA 201 fan laws, by hand: D ratio 1.1 and density ratio 1.0/1.2:
    # flow x1.1³ = 1.331; pressure x(1/1.2)·1.1² = 1.008333;
    # power x(1/1.2)·1.1⁵ = 1.61051/1.2 = 1.342092.
    out = fan_laws(
        flow=1000.0,
        pressure=500.0,
        power=2.0,
        diameter=500.0,
        new_diameter=550.0,
        density=1.2,
        new_density=1.0,
    )
    assert float(out["flow"]) == pytest.approx(1331.0)
    assert float(out["pressure"]) == pytest.approx(504.1667, rel=1e-6)
    assert float(out["power"]) == pytest.approx(2.684183, rel=1e-6)


def test_fan_laws_bad_input() -> None:
    with pytest.raises(ComponentInputError) as exc:
        fan_laws(flow=1.0, pressure=1.0, power=1.0, density=1.2)
    assert _loc(exc) == "inputs.new_density"
    with pytest.raises(ComponentInputError) as exc:
        fan_laws(flow=1.0, pressure=1.0, power=1.0, speed=0.0, new_speed=10.0)
    assert _loc(exc) == "inputs.speed"


# compressor.specific_power -----------------------------------------------------------------


def test_compressor_specific_power_published_example() -> None:
    # Comate "air compressor specific power" example: 132 kW screw compressor, FAD
    # 24 m³/min at 7 bar; package input 153.33 kW -> 6.39 kW/(m³/min); with the 5.29 kW
    # cooling fan, 158.62 kW -> 6.61 kW/(m³/min).
    out = compressor_specific_power(input_power=[153.33, 158.62], free_air_delivery=24.0)
    np.testing.assert_allclose(out["specific_power"], [6.39, 6.61], atol=0.005)
    # CAGI form, by unit conversion only: 1 m³/min = 35.3147 cfm, so
    # 6.609 kW/(m³/min) = 6.609 / 0.353147 = 18.715 kW/100 cfm.
    assert float(out["specific_power_cfm"][1]) == pytest.approx(158.62 / 24 / 0.353147, rel=1e-5)


def test_compressor_specific_power_cfm_input() -> None:
    # August Compressor training example: 900 cfm FAD at 144 kW, i.e. 6.25 cfm/kW,
    # which is 100/6.25 = 16.0 kW/100 cfm.
    out = compressor_specific_power(
        input_power=144.0, free_air_delivery={"value": 900.0, "unit": "ft**3/min"}
    )
    assert float(out["specific_power_cfm"]) == pytest.approx(16.0, rel=1e-9)


def test_compressor_specific_power_bad_input() -> None:
    with pytest.raises(ComponentInputError) as exc:
        compressor_specific_power(input_power=100.0, free_air_delivery=0.0)
    assert _loc(exc) == "inputs.free_air_delivery"
    with pytest.raises(ComponentInputError) as exc:
        compressor_specific_power(input_power=[1.0, np.nan], free_air_delivery=1.0)
    assert _loc(exc) == "inputs.input_power"
