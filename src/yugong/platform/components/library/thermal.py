"""Thermal equipment: heat exchangers (LMTD, ε-NTU), boiler direct efficiency, and water and
steam properties by IAPWS-IF97 (through the maintained ``iapws`` package)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from yugong.platform.components import Category, Port, bad_input, component

FloatArray = npt.NDArray[np.float64]
KELVIN = 273.15
# iapws evaluates one state at a time, so arrays are looped in Python: capped to keep a call
# within about a second.
MAX_STATES = 10_000
IF97_REFERENCE = (
    "IAPWS R7-97(2012), Revised Release on the IAPWS Industrial Formulation 1997 for the "
    "Thermodynamic Properties of Water and Steam (verification Tables 5, 15, 35, 36, 42)"
)


# Heat exchangers -------------------------------------------------------------------------


def _first(mask: npt.NDArray[np.bool_]) -> str:
    if mask.ndim == 0:
        return ""
    return f" at index {int(np.argmax(mask.ravel()))}"


@component(
    "heat_exchanger.lmtd",
    "1.0.0",
    Category.MECHANISM,
    title="Heat exchanger log-mean temperature difference and duty",
    industries=("general", "process", "chemical", "energy", "power", "hvac", "food", "oil_gas"),
    references=(
        "Incropera, DeWitt, Bergman & Lavine, Fundamentals of Heat and Mass Transfer, 6th ed., "
        "Eqs. 11.15 and 11.18 and Example 11.1 (counterflow oil cooler, ΔT_lm = 43.2 °C)",
        "Çengel & Ghajar, Heat and Mass Transfer, Example 11-4 (counter-flow geothermal "
        "water heater, ΔT_lm = 91.9 °C, A = 5.12 m²) and Example 11-5 (2-shell 4-tube "
        "glycerin heater, F = 0.91, Q = 2.12 kW)",
    ),
    inputs={
        "hot_in": Port.quantity("degC", "Hot stream inlet temperature"),
        "hot_out": Port.quantity("degC", "Hot stream outlet temperature"),
        "cold_in": Port.quantity("degC", "Cold stream inlet temperature"),
        "cold_out": Port.quantity("degC", "Cold stream outlet temperature"),
        "arrangement": Port.text(
            "Flow arrangement the ΔT are taken for", enum=("counterflow", "parallel")
        ).optional("counterflow"),
        "correction_factor": Port.quantity(
            None,
            "LMTD correction factor F for multipass / cross flow (1 = pure counterflow)",
            exclusive_minimum=0,
            maximum=1,
        ).optional(1.0),
        "u": Port.quantity(
            "W/(m**2*K)", "Overall heat transfer coefficient U", exclusive_minimum=0
        ).optional(None),
        "area": Port.quantity("m**2", "Heat transfer area A", exclusive_minimum=0).optional(None),
    },
    outputs={
        "lmtd": Port.quantity("K", "Log-mean temperature difference (times F when given)"),
        "dt1": Port.quantity("K", "End temperature difference ΔT1"),
        "dt2": Port.quantity("K", "End temperature difference ΔT2"),
        "duty": Port.quantity("kW", "Heat duty U·A·F·ΔT_lm, when U and A are given").optional(None),
    },
)
def lmtd(
    hot_in: FloatArray,
    hot_out: FloatArray,
    cold_in: FloatArray,
    cold_out: FloatArray,
    arrangement: str,
    correction_factor: FloatArray | float,
    u: FloatArray | None,
    area: FloatArray | None,
) -> dict[str, FloatArray]:
    """ΔT_lm = (ΔT1 − ΔT2) / ln(ΔT1/ΔT2), and Q = U·A·F·ΔT_lm when U and A are given.

    Counterflow: ΔT1 = T_h,in − T_c,out, ΔT2 = T_h,out − T_c,in; parallel flow:
    ΔT1 = T_h,in − T_c,in, ΔT2 = T_h,out − T_c,out (Incropera Eqs. 11.15, 11.18). For
    shell-and-tube or cross flow give the counterflow temperatures and the correction factor F
    read from the chart for that geometry. When ΔT1 ≈ ΔT2 the limit ΔT_lm = ΔT1 is used.
    A temperature cross (an end ΔT of zero or less) has no LMTD and is refused.

    Reference values: Incropera Example 11.1, oil 100 → 60 °C, water 30 → 40.2 °C in
    counterflow: ΔT_lm = 43.2 °C; Çengel Example 11-4: ΔT_lm = 91.9 °C, A = 5.12 m² for
    301 kW at U = 640 W/m²·K; Çengel Example 11-5: F = 0.91, Q = 2.12 kW.
    """
    bad = hot_out > hot_in
    if np.any(bad):
        raise bad_input("hot_out", "hot stream outlet is above its inlet" + _first(bad))
    bad = cold_out < cold_in
    if np.any(bad):
        raise bad_input("cold_out", "cold stream outlet is below its inlet" + _first(bad))
    if arrangement == "parallel":
        dt1, dt2 = hot_in - cold_in, hot_out - cold_out
    else:
        dt1, dt2 = hot_in - cold_out, hot_out - cold_in
    dt1 = np.asarray(dt1, dtype=np.float64)
    dt2 = np.asarray(dt2, dtype=np.float64)
    cross = (dt1 <= 0) | (dt2 <= 0)
    if np.any(cross):
        raise bad_input(
            "cold_out",
            f"temperature cross in {arrangement}: an end temperature difference is zero or "
            "negative" + _first(cross),
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = np.log(dt1 / dt2)
        # (ΔT1 − ΔT2)/ln(ΔT1/ΔT2) → mean as the ratio → 1; the mean is exact to O(ln²)
        near = np.abs(log_ratio) < 1e-6
        lm = np.where(near, 0.5 * (dt1 + dt2), (dt1 - dt2) / np.where(near, 1.0, log_ratio))
    lm = lm * correction_factor
    out: dict[str, FloatArray] = {"lmtd": lm, "dt1": dt1, "dt2": dt2}
    if (u is None) != (area is None):
        missing = "area" if area is None else "u"
        raise bad_input(missing, "missing: the duty needs both u and area")
    if u is not None and area is not None:
        out["duty"] = u * area * lm / 1000.0
    return out


def _shell_limit(cr: FloatArray) -> FloatArray:
    """Effectiveness of one shell pass as NTU → ∞."""
    return np.asarray(2.0 / (1.0 + cr + np.sqrt(1.0 + cr**2)), dtype=np.float64)


def effectiveness_of(ntu: FloatArray, cr: FloatArray, arrangement: str) -> FloatArray:
    """ε(NTU, Cr), Incropera Table 11.3 (Eqs. 11.28a, 11.29a, 11.30a)."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if arrangement == "parallel":
            eps = -np.expm1(-ntu * (1.0 + cr)) / (1.0 + cr)
        elif arrangement == "counterflow":
            x = np.exp(-ntu * (1.0 - cr))
            balanced = np.abs(1.0 - cr) < 1e-9
            eps = np.where(
                balanced, ntu / (1.0 + ntu), (1.0 - x) / np.where(balanced, 1.0, 1.0 - cr * x)
            )
        else:
            root = np.sqrt(1.0 + cr**2)
            # (1 + e^-y)/(1 − e^-y) = coth(y/2); at NTU = 0 this is ∞ and ε = 0
            coth = 1.0 / np.tanh(0.5 * ntu * root)
            eps = 2.0 / (1.0 + cr + root * coth)
    return np.asarray(eps, dtype=np.float64)


def ntu_of(eps: FloatArray, cr: FloatArray, arrangement: str) -> FloatArray:
    """NTU(ε, Cr), Incropera Table 11.4 (Eqs. 11.28b, 11.29b, 11.30b); ε must be reachable."""
    if arrangement == "parallel":
        limit = 1.0 / (1.0 + cr)
    elif arrangement == "counterflow":
        limit = np.ones_like(eps * cr)
    else:
        limit = _shell_limit(cr)
    beyond = eps >= limit
    if np.any(beyond):
        raise bad_input(
            "effectiveness",
            f"not reachable by a {arrangement} exchanger at this capacity ratio "
            f"(must be below {float(np.min(limit)):.4g})" + _first(np.asarray(beyond)),
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        if arrangement == "parallel":
            ntu = -np.log1p(-eps * (1.0 + cr)) / (1.0 + cr)
        elif arrangement == "counterflow":
            balanced = np.abs(1.0 - cr) < 1e-9
            safe = np.where(balanced, 0.5, cr)
            general = np.log((eps - 1.0) / (eps * safe - 1.0)) / (safe - 1.0)
            ntu = np.where(balanced, eps / (1.0 - eps), general)
        else:
            root = np.sqrt(1.0 + cr**2)
            e = (2.0 / eps - (1.0 + cr)) / root
            ntu = -np.log((e - 1.0) / (e + 1.0)) / root
    return np.asarray(ntu, dtype=np.float64)


@component(
    "heat_exchanger.ntu",
    "1.0.0",
    Category.MECHANISM,
    title="Heat exchanger effectiveness-NTU relations (and inverse)",
    industries=("general", "process", "chemical", "energy", "power", "hvac", "food", "oil_gas"),
    references=(
        "Incropera, DeWitt, Bergman & Lavine, Fundamentals of Heat and Mass Transfer, 6th ed., "
        "Tables 11.3 and 11.4 (parallel flow, counterflow, shell-and-tube one shell pass)",
        "Çengel & Ghajar, Heat and Mass Transfer, Example 11-8 (counter-flow, C = 0.583, "
        "ε = 0.429, NTU = 0.651) and Example 11-9 (1-shell 8-tube oil cooler, NTU = 0.853, "
        "C = 0.764, ε ≈ 0.47 read from the chart)",
    ),
    inputs={
        "capacity_ratio": Port.quantity(None, "Cr = C_min / C_max (0-1)", minimum=0, maximum=1),
        "arrangement": Port.text(
            "Flow arrangement", enum=("counterflow", "parallel", "shell_and_tube")
        ).optional("counterflow"),
        "ntu": Port.quantity(
            None, "Number of transfer units UA/C_min (give this or effectiveness)", minimum=0
        ).optional(None),
        "effectiveness": Port.quantity(
            None, "Effectiveness q/q_max (give this or ntu)", minimum=0, exclusive_maximum=1
        ).optional(None),
    },
    outputs={
        "effectiveness": Port.quantity(None, "Effectiveness ε = q / q_max"),
        "ntu": Port.quantity(None, "Number of transfer units NTU = UA / C_min"),
    },
)
def ntu_method(
    capacity_ratio: FloatArray,
    arrangement: str,
    ntu: FloatArray | None,
    effectiveness: FloatArray | None,
) -> dict[str, FloatArray]:
    """Effectiveness from NTU and Cr, or NTU from effectiveness and Cr.

    Counterflow ε = [1 − e^(−N(1−Cr))]/[1 − Cr·e^(−N(1−Cr))] (ε = N/(1+N) at Cr = 1);
    parallel ε = [1 − e^(−N(1+Cr))]/(1+Cr); shell-and-tube with one shell pass and 2, 4, ...
    tube passes ε = 2{1 + Cr + √(1+Cr²)·[1 + e^(−N√(1+Cr²))]/[1 − e^(−N√(1+Cr²))]}⁻¹.
    All reduce to ε = 1 − e^(−N) at Cr = 0 (boiling or condensing stream). The inverse uses
    the closed forms of Incropera Table 11.4; an effectiveness the arrangement cannot reach
    at that Cr (e.g. ε ≥ 1/(1+Cr) in parallel flow) is refused.

    Reference values: Çengel Example 11-8, C = 0.583 and ε = 0.429 need NTU = 0.651 in
    counterflow; Çengel Example 11-9, NTU = 0.853 and C = 0.764 in a 1-shell-pass,
    8-tube-pass exchanger give ε ≈ 0.47 (chart reading).
    """
    if (ntu is None) == (effectiveness is None):
        raise bad_input("ntu", "give exactly one of ntu or effectiveness")
    if ntu is not None:
        eps = effectiveness_of(ntu, capacity_ratio, arrangement)
        return {"effectiveness": eps, "ntu": np.asarray(ntu * np.ones_like(eps))}
    assert effectiveness is not None
    n = ntu_of(effectiveness, capacity_ratio, arrangement)
    return {"effectiveness": np.asarray(effectiveness * np.ones_like(n)), "ntu": n}


# Water and steam -------------------------------------------------------------------------

_PHASE_REGION = {1: "liquid", 2: "vapour", 3: "supercritical", 4: "two-phase", 5: "vapour"}


def _if97_states(
    pressure_mpa: FloatArray,
    temperature_k: FloatArray | None,
    quality: FloatArray | None,
    p_name: str = "pressure",
    t_name: str = "temperature",
) -> dict[str, Any]:
    """IAPWS-IF97 states over broadcast arrays: h, s, rho, cp, T (K), region.

    iapws is scalar, so this loops in Python; arrays are capped at MAX_STATES points.
    """
    from iapws import IAPWS97

    second = temperature_k if temperature_k is not None else quality
    assert second is not None
    p, x2 = np.broadcast_arrays(np.asarray(pressure_mpa, float), np.asarray(second, float))
    if p.size > MAX_STATES:
        raise bad_input(p_name, f"at most {MAX_STATES} states per call, got {p.size}")
    if temperature_k is not None:
        t = x2
        hot = t > 1073.15
        too_high_p = np.where(hot, p > 50.0, p > 100.0)
        if np.any(too_high_p):
            raise bad_input(
                p_name,
                "outside IAPWS-IF97: p ≤ 100 MPa up to 800 °C, p ≤ 50 MPa up to 2000 °C"
                + _first(too_high_p),
            )
        out_t = (t < 273.15) | (t > 2273.15)
        if np.any(out_t):
            raise bad_input(t_name, "outside IAPWS-IF97: 0 °C to 2000 °C" + _first(out_t))
    else:
        # saturation exists from the triple point to the critical point
        out_p = (p < 611.657e-6) | (p > 22.064)
        if np.any(out_p):
            raise bad_input(
                p_name, "saturation needs 0.000611657 MPa ≤ p ≤ 22.064 MPa" + _first(out_p)
            )
    n = p.size
    h, s, rho, cp, tk = (np.empty(n) for _ in range(5))
    region = np.empty(n, dtype=np.int64)
    for i, (pi, vi) in enumerate(zip(p.ravel(), x2.ravel(), strict=True)):
        kw = {"T": float(vi)} if temperature_k is not None else {"x": float(vi)}
        try:
            st = IAPWS97(P=float(pi), **kw)
        except (NotImplementedError, ValueError, TypeError) as exc:
            raise bad_input(p_name, f"no IAPWS-IF97 state at index {i}: {exc}") from None
        if not getattr(st, "status", 1) or st.h is None:
            raise bad_input(p_name, f"no IAPWS-IF97 state at index {i}: {st.msg}")
        h[i], s[i], rho[i], tk[i] = st.h, st.s, st.rho, st.T
        cp[i] = np.nan if st.cp is None else st.cp
        region[i] = st.region
    shape = p.shape
    return {
        "h": h.reshape(shape),
        "s": s.reshape(shape),
        "rho": rho.reshape(shape),
        "cp": cp.reshape(shape),
        "T": tk.reshape(shape),
        "region": region.reshape(shape),
    }


def _plain(a: npt.NDArray[Any]) -> Any:
    """An array as returned to callers: a float for a 0-d array, else the array."""
    return a.item() if a.ndim == 0 else a


@component(
    "steam.properties",
    "1.0.0",
    Category.MECHANISM,
    title="Water and steam properties (IAPWS-IF97)",
    industries=("general", "energy", "power", "process", "chemical", "food", "pharma"),
    references=(IF97_REFERENCE, "iapws Python package (J. J. Romera), IAPWS97 class"),
    inputs={
        "pressure": Port.quantity("MPa", "Absolute pressure", exclusive_minimum=0),
        "temperature": Port.quantity("degC", "Temperature (give this or quality)").optional(None),
        "quality": Port.quantity(
            None,
            "Vapour mass fraction x on the saturation line (give this or temperature)",
            minimum=0,
            maximum=1,
        ).optional(None),
    },
    outputs={
        "enthalpy": Port.quantity("kJ/kg", "Specific enthalpy h"),
        "entropy": Port.quantity("kJ/(kg*K)", "Specific entropy s"),
        "density": Port.quantity("kg/m**3", "Density ρ"),
        "specific_volume": Port.quantity("m**3/kg", "Specific volume v = 1/ρ"),
        "cp": Port.quantity(
            "kJ/(kg*K)", "Isobaric heat capacity c_p; null inside the two-phase region"
        ),
        "temperature": Port.quantity("degC", "Temperature (the saturation temperature for x)"),
        "region": Port.quantity(None, "IAPWS-IF97 region 1-5 (4 = saturation)"),
        "phase": Port.object(
            "liquid, vapour, supercritical or two-phase: text for one state, a list for many",
            {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]},
        ),
    },
)
def steam_properties(
    pressure: FloatArray, temperature: FloatArray | None, quality: FloatArray | None
) -> dict[str, Any]:
    """Water and steam properties from (p, T) or (p, x) by IAPWS-IF97.

    Evaluated by the maintained ``iapws`` package (IAPWS97(P=MPa, T=K) or (P, x)). Regions:
    1 compressed liquid, 2 superheated vapour, 3 near-critical, 4 saturation (the quality
    path), 5 high-temperature steam above 800 °C. Valid for 0-800 °C up to 100 MPa and
    800-2000 °C up to 50 MPa; anything outside is refused. iapws evaluates one state at a
    time, so arrays are looped in Python and capped at 10,000 states per call. c_p is
    undefined inside the two-phase region (0 < x < 1) and is returned as null there.

    Reference values: IAPWS-IF97 verification tables, e.g. Table 5, T = 300 K, p = 3 MPa:
    v = 0.100215168e-2 m³/kg, h = 0.115331273e3 kJ/kg; Table 15, T = 300 K,
    p = 0.0035 MPa: h = 0.254991145e4 kJ/kg; Table 35/36 saturation p = 1 MPa:
    T_s = 0.453035632e3 K.
    """
    if (temperature is None) == (quality is None):
        raise bad_input("temperature", "give exactly one of temperature or quality")
    t_k = None if temperature is None else np.asarray(temperature, float) + KELVIN
    st = _if97_states(pressure, t_k, quality)
    cp = st["cp"]
    cp_out: Any
    if np.isfinite(cp).all():
        cp_out = _plain(cp)
    elif cp.ndim == 0:
        cp_out = None
    else:
        cells = cp.astype(object)
        cells[np.isnan(cp)] = None
        cp_out = cells.tolist()
    region = st["region"]
    phases = [_PHASE_REGION[int(r)] for r in region.ravel()]
    return {
        "enthalpy": _plain(st["h"]),
        "entropy": _plain(st["s"]),
        "density": _plain(st["rho"]),
        "specific_volume": _plain(1.0 / st["rho"]),
        "cp": cp_out,
        "temperature": _plain(st["T"] - KELVIN),
        "region": int(region) if region.ndim == 0 else region.tolist(),
        "phase": phases[0]
        if region.ndim == 0
        else np.asarray(phases).reshape(region.shape).tolist(),
    }


# Boilers ---------------------------------------------------------------------------------


@component(
    "boiler.efficiency_direct",
    "1.0.0",
    Category.MECHANISM,
    title="Boiler efficiency by the direct (input-output) method",
    industries=("general", "energy", "power", "process", "chemical", "food", "textile"),
    references=(
        "Bureau of Energy Efficiency (India), Energy Efficiency in Thermal Utilities, "
        "Ch. 2 Boilers, 2.5 direct method and its worked example (coal fired, 8 TPH steam, "
        "1.8 TPH coal, GCV 3200 kcal/kg: 80.5 %)",
        "ASME PTC 4-2013 Fired Steam Generators, 5.2 input-output method",
        IF97_REFERENCE,
    ),
    inputs={
        "steam_flow": Port.quantity("kg/h", "Steam generated", minimum=0),
        "fuel_flow": Port.quantity("kg/h", "Fuel fired", exclusive_minimum=0),
        "gcv": Port.quantity("kJ/kg", "Gross calorific value of the fuel", exclusive_minimum=0),
        "h_steam": Port.quantity("kJ/kg", "Steam enthalpy (or give steam_pressure)").optional(None),
        "h_feedwater": Port.quantity(
            "kJ/kg", "Feedwater enthalpy (or give feedwater_temperature)"
        ).optional(None),
        "steam_pressure": Port.quantity(
            "kPa", "Steam absolute pressure, for enthalpy by IAPWS-IF97", exclusive_minimum=0
        ).optional(None),
        "steam_temperature": Port.quantity(
            "degC", "Superheated steam temperature; absent means dry saturated steam"
        ).optional(None),
        "feedwater_temperature": Port.quantity(
            "degC", "Feedwater temperature, for enthalpy by IAPWS-IF97"
        ).optional(None),
        "feedwater_pressure": Port.quantity(
            "kPa", "Feedwater absolute pressure (default: steam_pressure)", exclusive_minimum=0
        ).optional(None),
    },
    outputs={
        "efficiency": Port.quantity(None, "Boiler efficiency (0-1), GCV basis"),
        "heat_output": Port.quantity("kW", "Heat absorbed by the steam"),
        "heat_input": Port.quantity("kW", "Fuel heat input"),
        "h_steam": Port.quantity("kJ/kg", "Steam enthalpy used"),
        "h_feedwater": Port.quantity("kJ/kg", "Feedwater enthalpy used"),
    },
)
def boiler_efficiency_direct(
    steam_flow: FloatArray,
    fuel_flow: FloatArray,
    gcv: FloatArray,
    h_steam: FloatArray | None,
    h_feedwater: FloatArray | None,
    steam_pressure: FloatArray | None,
    steam_temperature: FloatArray | None,
    feedwater_temperature: FloatArray | None,
    feedwater_pressure: FloatArray | None,
) -> dict[str, Any]:
    """η = m_steam·(h_steam − h_feedwater) / (m_fuel·GCV).

    Enthalpies are taken as given, or computed by IAPWS-IF97: steam from steam_pressure
    (absolute) and steam_temperature, or dry saturated steam at steam_pressure when no
    temperature is given; feedwater from feedwater_temperature at feedwater_pressure
    (default: steam_pressure). Gauge readings must be converted to absolute first. Blowdown
    and wetness are not accounted for (as the direct method states). An efficiency of 1 or
    more means the inputs disagree and is refused.

    Reference values: BEE Energy Efficiency in Thermal Utilities, Ch. 2 example: 8 t/h of dry
    saturated steam at 10 kg/cm²(g) (665 kcal/kg) from 85 °C feedwater (85 kcal/kg) with
    1.8 t/h of coal of GCV 3200 kcal/kg: η = 8 × (665 − 85) / (1.8 × 3200) = 80.5 %.
    """
    if h_steam is None:
        if steam_pressure is None:
            raise bad_input("h_steam", "missing: give h_steam or steam_pressure")
        t_k = None if steam_temperature is None else steam_temperature + KELVIN
        x = None if steam_temperature is not None else np.ones_like(steam_pressure)
        st = _if97_states(steam_pressure / 1000.0, t_k, x, "steam_pressure", "steam_temperature")
        if t_k is not None and np.any(st["region"] == 1):
            raise bad_input("steam_temperature", "below saturation: that is liquid, not steam")
        h_steam = st["h"]
    if h_feedwater is None:
        if feedwater_temperature is None:
            raise bad_input("h_feedwater", "missing: give h_feedwater or feedwater_temperature")
        p_fw = feedwater_pressure if feedwater_pressure is not None else steam_pressure
        if p_fw is None:
            raise bad_input("feedwater_pressure", "missing: needed with feedwater_temperature")
        fw = _if97_states(
            p_fw / 1000.0,
            feedwater_temperature + KELVIN,
            None,
            "feedwater_pressure",
            "feedwater_temperature",
        )
        h_feedwater = fw["h"]
    gain = np.asarray(h_steam - h_feedwater, dtype=np.float64)
    if np.any(gain <= 0):
        raise bad_input("h_feedwater", "feedwater enthalpy is not below the steam enthalpy")
    q_out = steam_flow * gain / 3600.0
    q_in = fuel_flow * gcv / 3600.0
    eff = np.asarray(q_out / q_in, dtype=np.float64)
    if np.any(eff >= 1.0):
        raise bad_input("fuel_flow", "heat output is not below the fuel heat input")
    return {
        "efficiency": _plain(eff),
        "heat_output": q_out,
        "heat_input": q_in,
        "h_steam": h_steam,
        "h_feedwater": h_feedwater,
    }
