"""Heat exchanger, boiler and IAPWS-IF97 steam models against published reference values."""

from __future__ import annotations

import numpy as np
import pytest

from yugong.platform.components import ComponentInputError
from yugong.platform.components.library.thermal import (
    boiler_efficiency_direct,
    lmtd,
    ntu_method,
    steam_properties,
)


def _loc(exc: pytest.ExceptionInfo[ComponentInputError]) -> str:
    return exc.value.errors[0].loc


def K(value: float) -> dict[str, object]:
    return {"value": value, "unit": "K"}


# heat_exchanger.lmtd -----------------------------------------------------------------------


def test_lmtd_incropera_example_11_1() -> None:
    # Incropera et al., Fundamentals of Heat and Mass Transfer, 6th ed., Example 11.1:
    # counterflow oil cooler, oil 100 -> 60 °C, water 30 -> 40.2 °C: ΔT_lm = 43.2 °C.
    # With U = 37.8 W/m²·K and A = π·0.025 m·66.5 m = 5.223 m² the duty is q = 8524 W.
    out = lmtd(hot_in=100.0, hot_out=60.0, cold_in=30.0, cold_out=40.2, u=37.8, area=5.223)
    assert float(out["lmtd"]) == pytest.approx(43.2, abs=0.05)
    assert float(out["duty"]) == pytest.approx(8.524, rel=0.005)


def test_lmtd_cengel_example_11_4_geothermal_heater() -> None:
    # Çengel & Ghajar, Heat and Mass Transfer, Example 11-4: water 20 -> 80 °C, geothermal
    # water 160 -> 125 °C in counter-flow: ΔT1 = 80 °C, ΔT2 = 105 °C, ΔT_lm = 91.9 °C, and
    # 301 kW at U = 640 W/m²·°C needs A = 5.12 m². Temperatures in K check the unit path.
    out = lmtd(hot_in=K(433.15), hot_out=K(398.15), cold_in=K(293.15), cold_out=K(353.15))
    assert float(out["dt1"]) == pytest.approx(80.0)
    assert float(out["dt2"]) == pytest.approx(105.0)
    assert float(out["lmtd"]) == pytest.approx(91.9, abs=0.05)
    area = 301_000.0 / (640.0 * float(out["lmtd"]))
    assert area == pytest.approx(5.12, abs=0.005)


def test_lmtd_cengel_example_11_5_correction_factor() -> None:
    # Çengel & Ghajar, Example 11-5: 2-shell 4-tube pass glycerin heater, glycerin 20 -> 50 °C,
    # hot water 80 -> 40 °C, F = 0.91 (chart), U = 25 W/m²·°C, A = 3.77 m²:
    # ΔT_lm,CF = 24.7 °C and Q = 2.12 kW.
    out = lmtd(
        hot_in=80.0,
        hot_out=40.0,
        cold_in=20.0,
        cold_out=50.0,
        correction_factor=0.91,
        u=25.0,
        area=3.77,
    )
    assert float(out["lmtd"]) / 0.91 == pytest.approx(24.7, abs=0.05)
    assert float(out["duty"]) == pytest.approx(2.12, abs=0.005)


def test_lmtd_parallel_equal_ends_and_arrays() -> None:
    # Parallel flow (Incropera Eq. 11.15), by hand: 100 -> 60 °C against 30 -> 40 °C gives
    # ΔT1 = 70, ΔT2 = 20, ΔT_lm = 50 / ln 3.5 = 39.912 °C. Equal end differences (counterflow
    # 100 -> 60 against 40 -> 80) take the limit ΔT_lm = ΔT = 20 °C.
    out = lmtd(
        hot_in=np.array([100.0, 100.0]),
        hot_out=60.0,
        cold_in=np.array([30.0, 40.0]),
        cold_out=np.array([40.0, 50.0]),
        arrangement="parallel",
    )
    assert float(out["lmtd"][0]) == pytest.approx(50.0 / np.log(3.5))
    same = lmtd(hot_in=100.0, hot_out=60.0, cold_in=40.0, cold_out=80.0)
    assert float(same["lmtd"]) == pytest.approx(20.0, abs=1e-9)
    assert np.isfinite(same["lmtd"]).all()


def test_lmtd_bad_input() -> None:
    # temperature cross: counterflow cold outlet above hot inlet
    with pytest.raises(ComponentInputError) as exc:
        lmtd(hot_in=100.0, hot_out=60.0, cold_in=30.0, cold_out=110.0)
    assert _loc(exc) == "inputs.cold_out"
    # parallel flow cannot heat the cold stream above the hot outlet
    with pytest.raises(ComponentInputError) as exc:
        lmtd(hot_in=100.0, hot_out=60.0, cold_in=30.0, cold_out=70.0, arrangement="parallel")
    assert _loc(exc) == "inputs.cold_out"
    with pytest.raises(ComponentInputError) as exc:
        lmtd(hot_in=60.0, hot_out=100.0, cold_in=30.0, cold_out=40.0)
    assert _loc(exc) == "inputs.hot_out"
    with pytest.raises(ComponentInputError) as exc:
        lmtd(hot_in=100.0, hot_out=60.0, cold_in=30.0, cold_out=40.0, u=100.0)
    assert _loc(exc) == "inputs.area"
    with pytest.raises(ComponentInputError) as exc:
        lmtd(hot_in={"value": 100.0}, hot_out=60.0, cold_in=30.0, cold_out=40.0)
    assert _loc(exc) == "inputs.hot_in"
    with pytest.raises(ComponentInputError) as exc:
        lmtd(hot_in=100.0, hot_out=60.0, cold_in=30.0, cold_out=40.0, arrangement="cross")
    assert _loc(exc) == "inputs.arrangement"
    with pytest.raises(ComponentInputError) as exc:
        lmtd(hot_in=100.0, hot_out=60.0, cold_in=30.0, cold_out=40.0, correction_factor=1.5)
    assert _loc(exc) == "inputs.correction_factor"


# heat_exchanger.ntu ------------------------------------------------------------------------


def test_ntu_counterflow_cengel_example_11_8() -> None:
    # Çengel & Ghajar, Example 11-8 (Example 11-4 by ε-NTU): C = 0.583, ε = 0.429 -> NTU =
    # 0.651 (published to 3 figures; inputs are themselves rounded, hence rel 0.5 %).
    inv = ntu_method(capacity_ratio=0.583, effectiveness=0.429)
    assert float(inv["ntu"]) == pytest.approx(0.651, rel=0.005)
    fwd = ntu_method(capacity_ratio=0.583, ntu=0.651)
    assert float(fwd["effectiveness"]) == pytest.approx(0.429, rel=0.005)


def test_ntu_shell_and_tube_cengel_example_11_9() -> None:
    # Çengel & Ghajar, Example 11-9: oil cooler, 1 shell pass and 8 tube passes, NTU = 0.853,
    # C = 0.764 -> ε = 0.47 read from the effectiveness chart (chart precision about ±0.01).
    out = ntu_method(capacity_ratio=0.764, ntu=0.853, arrangement="shell_and_tube")
    assert float(out["effectiveness"]) == pytest.approx(0.47, abs=0.01)
    back = ntu_method(
        capacity_ratio=0.764, effectiveness=out["effectiveness"], arrangement="shell_and_tube"
    )
    assert float(back["ntu"]) == pytest.approx(0.853, rel=1e-9)


def test_ntu_limits_and_round_trip() -> None:
    # Incropera Eq. 11.35a: at Cr = 0 every arrangement gives ε = 1 − e^(−NTU);
    # balanced counterflow (Cr = 1) gives ε = NTU/(1 + NTU) (Incropera Table 11.3).
    ntu = np.array([0.0, 0.5, 1.0, 3.0])
    for arrangement in ("counterflow", "parallel", "shell_and_tube"):
        out = ntu_method(capacity_ratio=0.0, ntu=ntu, arrangement=arrangement)
        np.testing.assert_allclose(out["effectiveness"], -np.expm1(-ntu), atol=1e-12)
    bal = ntu_method(capacity_ratio=1.0, ntu=ntu)
    np.testing.assert_allclose(bal["effectiveness"], ntu / (1 + ntu))
    cr = np.array([0.2, 0.5, 0.9, 1.0])
    for arrangement in ("counterflow", "parallel", "shell_and_tube"):
        eps = ntu_method(capacity_ratio=cr, ntu=1.5, arrangement=arrangement)["effectiveness"]
        back = ntu_method(capacity_ratio=cr, effectiveness=eps, arrangement=arrangement)
        np.testing.assert_allclose(back["ntu"], 1.5, rtol=1e-9)


def test_ntu_bad_input() -> None:
    # parallel flow cannot pass ε = 1/(1 + Cr) = 0.5 at Cr = 1
    with pytest.raises(ComponentInputError) as exc:
        ntu_method(capacity_ratio=1.0, effectiveness=0.6, arrangement="parallel")
    assert _loc(exc) == "inputs.effectiveness"
    with pytest.raises(ComponentInputError) as exc:
        ntu_method(capacity_ratio=0.5, ntu=1.0, effectiveness=0.5)
    assert _loc(exc) == "inputs.ntu"
    with pytest.raises(ComponentInputError) as exc:
        ntu_method(capacity_ratio=1.5, ntu=1.0)
    assert _loc(exc) == "inputs.capacity_ratio"
    with pytest.raises(ComponentInputError) as exc:
        ntu_method(capacity_ratio={"value": 0.5}, ntu=1.0)
    assert _loc(exc) == "inputs.capacity_ratio"


# steam.properties --------------------------------------------------------------------------

# IAPWS R7-97(2012) verification values: (T K, p MPa, v m³/kg, h kJ/kg, s kJ/kg·K, cp kJ/kg·K)
IF97_PT = [
    pytest.param(300, 3, 0.100215168e-2, 0.115331273e3, 0.392294792, 0.417301218e1, id="T5-1"),
    pytest.param(300, 80, 0.971180894e-3, 0.184142828e3, 0.368563852, 0.401008987e1, id="T5-2"),
    pytest.param(500, 3, 0.120241800e-2, 0.975542239e3, 0.258041912e1, 0.465580682e1, id="T5-3"),
    pytest.param(
        300, 0.0035, 0.394913866e2, 0.254991145e4, 0.852238967e1, 0.191300162e1, id="T15-1"
    ),
    pytest.param(
        700, 0.0035, 0.923015898e2, 0.333568375e4, 0.101749996e2, 0.208141274e1, id="T15-2"
    ),
    pytest.param(700, 30, 0.542946619e-2, 0.263149474e4, 0.517540298e1, 0.103505092e2, id="T15-3"),
    pytest.param(1500, 0.5, 0.138455090e1, 0.521976855e4, 0.965408875e1, 0.261609445e1, id="T42-1"),
    pytest.param(2000, 30, 0.311385219e-1, 0.657122604e4, 0.853640523e1, 0.288569882e1, id="T42-3"),
]


@pytest.mark.parametrize(("t", "p", "v", "h", "s", "cp"), IF97_PT)
def test_steam_properties_if97_verification_tables(
    t: float, p: float, v: float, h: float, s: float, cp: float
) -> None:
    # Tables 5 (region 1), 15 (region 2) and 42 (region 5), published to 9 significant figures
    out = steam_properties(pressure=p, temperature=K(t))
    assert out["specific_volume"] == pytest.approx(v, rel=1e-8)
    assert out["enthalpy"] == pytest.approx(h, rel=1e-8)
    assert out["entropy"] == pytest.approx(s, rel=1e-8)
    assert out["cp"] == pytest.approx(cp, rel=1e-8)


def test_steam_properties_saturation_and_arrays() -> None:
    # IAPWS-IF97 Table 36: T_s(0.1 MPa) = 372.755919 K, T_s(1 MPa) = 453.035632 K,
    # T_s(10 MPa) = 584.149488 K. Pressures given in kPa check the unit path.
    out = steam_properties(
        pressure={"value": [100.0, 1000.0, 10_000.0], "unit": "kPa"}, quality=1.0
    )
    np.testing.assert_allclose(
        np.asarray(out["temperature"]) + 273.15,
        [372.755919, 453.035632, 584.149488],
        rtol=1e-8,
    )
    assert out["phase"] == ["vapour", "vapour", "vapour"]
    # on the saturation line h is linear in x: h(0.5) = (h' + h'') / 2 (definition of x)
    sat = steam_properties(pressure=1.0, quality=[0.0, 0.5, 1.0])
    h = sat["enthalpy"]
    assert h[1] == pytest.approx(0.5 * (h[0] + h[2]), rel=1e-9)
    assert sat["phase"][1] == "two-phase"
    assert sat["cp"][1] is None and sat["cp"][0] > 0
    # 2-D arrays keep their shape
    grid = steam_properties(pressure=[[3.0], [80.0]], temperature=K(300.0))
    assert np.shape(grid["enthalpy"]) == (2, 1)
    assert grid["phase"] == [["liquid"], ["liquid"]]


def test_steam_properties_bad_input() -> None:
    with pytest.raises(ComponentInputError) as exc:
        steam_properties(pressure=150.0, temperature=300.0)
    assert _loc(exc) == "inputs.pressure"
    with pytest.raises(ComponentInputError) as exc:
        steam_properties(pressure=1.0, temperature=2500.0)
    assert _loc(exc) == "inputs.temperature"
    with pytest.raises(ComponentInputError) as exc:
        steam_properties(pressure=30.0, quality=0.5)
    assert _loc(exc) == "inputs.pressure"
    with pytest.raises(ComponentInputError) as exc:
        steam_properties(pressure=1.0)
    assert _loc(exc) == "inputs.temperature"
    with pytest.raises(ComponentInputError) as exc:
        steam_properties(pressure=1.0, quality=1.5)
    assert _loc(exc) == "inputs.quality"
    with pytest.raises(ComponentInputError) as exc:
        steam_properties(pressure=np.full(10_001, 1.0), temperature=100.0)
    assert _loc(exc) == "inputs.pressure"
    with pytest.raises(ComponentInputError) as exc:
        steam_properties(pressure={"value": 1.0}, temperature=100.0)
    assert _loc(exc) == "inputs.pressure"


# boiler.efficiency_direct ------------------------------------------------------------------


def test_boiler_direct_bee_example_given_enthalpies() -> None:
    # BEE, Energy Efficiency in Thermal Utilities, Ch. 2 Boilers, direct-method example:
    # 8 TPH steam, 1.8 TPH coal, GCV 3200 kcal/kg, h_steam 665 kcal/kg, h_fw 85 kcal/kg:
    # η = 8 × (665 − 85) / (1.8 × 3200) = 80.5 %.
    out = boiler_efficiency_direct(
        steam_flow={"value": 8.0, "unit": "t/h"},
        fuel_flow={"value": 1.8, "unit": "t/h"},
        gcv={"value": 3200.0, "unit": "kcal/kg"},
        h_steam={"value": 665.0, "unit": "kcal/kg"},
        h_feedwater={"value": 85.0, "unit": "kcal/kg"},
    )
    # exact 4640 / 5760 = 0.80556, which the guide book prints as 80.5 %
    assert out["efficiency"] == pytest.approx(0.805, abs=0.001)


def test_boiler_direct_bee_example_with_if97_enthalpies() -> None:
    # Same example with the enthalpies from IAPWS-IF97 instead of the guide book's steam
    # table: 10 kg/cm²(g) = 10 × 98.0665 + 101.325 = 1082.0 kPa absolute, dry saturated; feed
    # water at 85 °C. IF97 gives 2780 kJ/kg (664 kcal/kg) and 357 kJ/kg (85.2 kcal/kg), so η
    # stays at the published 80.5 % within 0.2 points.
    out = boiler_efficiency_direct(
        steam_flow={"value": 8.0, "unit": "t/h"},
        fuel_flow={"value": 1.8, "unit": "t/h"},
        gcv={"value": 3200.0, "unit": "kcal/kg"},
        steam_pressure=10 * 98.0665 + 101.325,
        feedwater_temperature=85.0,
    )
    assert out["efficiency"] == pytest.approx(0.805, abs=0.002)
    assert float(out["h_steam"]) == pytest.approx(665.0 * 4.1868, rel=0.002)


def test_boiler_direct_superheated_and_arrays() -> None:
    # Feedwater from IAPWS-IF97 Table 5: h(3 MPa, 300 K) = 115.331273 kJ/kg. By hand with a
    # given steam enthalpy of 3000 kJ/kg: 10 t/h of steam on 1 t/h of 40 000 kJ/kg fuel
    # gives η = 10 · (3000 − 115.331273) / 40 000 = 0.72117.
    out = boiler_efficiency_direct(
        steam_flow=[10_000.0, 5_000.0],
        fuel_flow=1000.0,
        gcv=40_000.0,
        h_steam=3000.0,
        feedwater_temperature=K(300.0),
        feedwater_pressure=3000.0,
    )
    np.testing.assert_allclose(
        out["efficiency"], [10 * 2884.668727 / 40_000, 5 * 2884.668727 / 40_000], rtol=1e-8
    )
    # Superheated steam from IAPWS-IF97 Table 15: h(30 MPa, 700 K) = 2631.49474 kJ/kg
    sh = boiler_efficiency_direct(
        steam_flow=10_000.0,
        fuel_flow=1000.0,
        gcv=40_000.0,
        steam_pressure=30_000.0,
        steam_temperature=K(700.0),
        h_feedwater=115.331273,
    )
    assert float(sh["h_steam"]) == pytest.approx(2631.49474, rel=1e-8)
    assert sh["efficiency"] == pytest.approx(10 * (2631.49474 - 115.331273) / 40_000, rel=1e-8)


def test_boiler_direct_bad_input() -> None:
    with pytest.raises(ComponentInputError) as exc:
        boiler_efficiency_direct(steam_flow=1.0, fuel_flow=1.0, gcv=1.0, h_feedwater=100.0)
    assert _loc(exc) == "inputs.h_steam"
    with pytest.raises(ComponentInputError) as exc:
        boiler_efficiency_direct(
            steam_flow=10_000.0, fuel_flow=100.0, gcv=40_000.0, h_steam=2800.0, h_feedwater=400.0
        )
    assert _loc(exc) == "inputs.fuel_flow"
    with pytest.raises(ComponentInputError) as exc:
        boiler_efficiency_direct(
            steam_flow=1.0, fuel_flow=1.0, gcv=1.0, h_steam=2800.0, feedwater_temperature=85.0
        )
    assert _loc(exc) == "inputs.feedwater_pressure"
    with pytest.raises(ComponentInputError) as exc:
        boiler_efficiency_direct(
            steam_flow=1.0,
            fuel_flow=1.0,
            gcv=1.0,
            steam_pressure=1000.0,
            steam_temperature=100.0,
            h_feedwater=100.0,
        )
    assert _loc(exc) == "inputs.steam_temperature"
    with pytest.raises(ComponentInputError) as exc:
        boiler_efficiency_direct(
            steam_flow=1.0, fuel_flow=0.0, gcv=1.0, h_steam=2800.0, h_feedwater=100.0
        )
    assert _loc(exc) == "inputs.fuel_flow"
    with pytest.raises(ComponentInputError) as exc:
        boiler_efficiency_direct(
            steam_flow=1.0, fuel_flow=1.0, gcv={"value": 1.0}, h_steam=2800.0, h_feedwater=1.0
        )
    assert _loc(exc) == "inputs.gcv"
