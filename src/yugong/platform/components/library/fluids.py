"""Fluid machinery: pump affinity laws and efficiency, fan laws, compressor specific power.

Every model is a closed-form similarity or power balance, vectorised over NumPy arrays.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from yugong.platform.components import Category, Port, bad_input, component

FloatArray = npt.NDArray[np.float64]
G_STANDARD = 9.80665  # m/s², standard gravity (CGPM 1901)
CFM_PER_M3_MIN = 1.0 / (0.3048**3)  # ft³/min per m³/min, from the exact foot


def _ratio(
    old: FloatArray | None, new: FloatArray | None, old_name: str, new_name: str
) -> FloatArray | float:
    """``new / old``, 1 when neither is given; one without the other is refused."""
    if old is None and new is None:
        return 1.0
    if old is None:
        raise bad_input(old_name, f"missing: needed with {new_name}")
    if new is None:
        raise bad_input(new_name, f"missing: needed with {old_name}")
    return np.asarray(new / old, dtype=np.float64)


def _need_a_pair(*values: FloatArray | None) -> None:
    if all(v is None for v in values):
        raise bad_input("new_speed", "give at least one old/new pair to scale the operating point")


_POSITIVE = {"exclusive_minimum": 0.0}


@component(
    "pump.affinity",
    "1.0.0",
    Category.MECHANISM,
    title="Centrifugal pump affinity laws (speed and impeller diameter)",
    industries=("general", "water", "process", "hvac", "energy"),
    references=(
        "Hydraulic Institute, ANSI/HI 1.6 Rotodynamic Centrifugal Pump Tests, affinity rules",
        "Karassik et al., Pump Handbook, 4th ed., McGraw-Hill (2008), Ch. 2 affinity laws",
        "Pump Industry Australia, Pump School: predicting performance with speed variations "
        "(Kelair Pumps worked example, 1450 to 1600 rpm)",
    ),
    inputs={
        "flow": Port.quantity("m**3/h", "Flow rate Q1 at the known point", minimum=0),
        "head": Port.quantity("m", "Total head H1 at the known point", minimum=0),
        "power": Port.quantity("kW", "Shaft power P1 at the known point", minimum=0),
        "speed": Port.quantity("rpm", "Known speed N1", **_POSITIVE).optional(None),
        "new_speed": Port.quantity("rpm", "New speed N2", **_POSITIVE).optional(None),
        "diameter": Port.quantity("mm", "Known impeller diameter D1", **_POSITIVE).optional(None),
        "new_diameter": Port.quantity(
            "mm", "New (trimmed) impeller diameter D2", **_POSITIVE
        ).optional(None),
    },
    outputs={
        "flow": Port.quantity("m**3/h", "Flow rate Q2"),
        "head": Port.quantity("m", "Total head H2"),
        "power": Port.quantity("kW", "Shaft power P2"),
    },
)
def pump_affinity(
    flow: FloatArray,
    head: FloatArray,
    power: FloatArray,
    speed: FloatArray | None,
    new_speed: FloatArray | None,
    diameter: FloatArray | None,
    new_diameter: FloatArray | None,
) -> dict[str, FloatArray]:
    """Scale a pump operating point to a new speed and/or impeller diameter.

    Q2 = Q1·(N2/N1)·(D2/D1), H2 = H1·(N2/N1)²·(D2/D1)², P2 = P1·(N2/N1)³·(D2/D1)³.
    The diameter rules are the impeller-trim form for a small cut on the same casing;
    efficiency is taken as unchanged. Give speed with new_speed, diameter with
    new_diameter, or both pairs.

    Reference values: Pump Industry Australia "Pump School" speed-change example, 200 L/s at
    30 m and 120 kW at 1450 rpm becomes 220.69 L/s, 36.53 m, 161.23 kW at 1600 rpm.
    """
    _need_a_pair(speed, new_speed, diameter, new_diameter)
    rn = _ratio(speed, new_speed, "speed", "new_speed")
    rd = _ratio(diameter, new_diameter, "diameter", "new_diameter")
    r = rn * rd
    return {"flow": flow * r, "head": head * r**2, "power": power * r**3}


@component(
    "pump.efficiency",
    "1.0.0",
    Category.MECHANISM,
    title="Pump hydraulic power and efficiency (ρ·g·Q·H over shaft power)",
    industries=("general", "water", "process", "hvac", "energy"),
    references=(
        "Çengel & Cimbala, Fluid Mechanics: Fundamentals and Applications, Ch. 5 worked "
        "example 'Pumping power and frictional heating in a pump' (15 kW motor, 90 %, "
        "50 L/s, 100 to 300 kPa: pump efficiency 74.1 %)",
        "ISO 9906:2012 Rotodynamic pumps, hydraulic performance acceptance tests, 3.1 "
        "(pump power output P_u = ρ·g·Q·H)",
    ),
    inputs={
        "flow": Port.quantity("m**3/h", "Volume flow rate Q", minimum=0),
        "head": Port.quantity("m", "Total (net) head H", minimum=0),
        "shaft_power": Port.quantity("kW", "Shaft (brake) power into the pump", **_POSITIVE),
        "density": Port.quantity(
            "kg/m**3", "Liquid density ρ (default: water at 20 °C)", **_POSITIVE
        ).optional(998.2),
    },
    outputs={
        "hydraulic_power": Port.quantity("kW", "Hydraulic (water) power ρ·g·Q·H"),
        "efficiency": Port.quantity(None, "Pump efficiency, hydraulic / shaft power (0-1)"),
    },
)
def pump_efficiency(
    flow: FloatArray, head: FloatArray, shaft_power: FloatArray, density: FloatArray | float
) -> dict[str, FloatArray]:
    """Hydraulic power P_h = ρ·g·Q·H with g = 9.80665 m/s², and η = P_h / P_shaft.

    An efficiency above 1 means the measurements disagree (flow, head or power wrong) and is
    refused rather than returned.

    Reference values: Çengel & Cimbala, Fluid Mechanics, Ch. 5 example "Pumping power and
    frictional heating in a pump": 50 L/s raised from 100 to 300 kPa by a pump on a 15 kW
    motor of 90 % efficiency (13.5 kW shaft) has a mechanical efficiency of 74.1 %.
    """
    p_h = density * G_STANDARD * (flow / 3600.0) * head / 1000.0
    eff = np.asarray(p_h / shaft_power, dtype=np.float64)
    if np.any(eff > 1.0):
        at = int(np.argmax(eff > 1.0)) if eff.ndim else 0
        raise bad_input(
            "shaft_power",
            f"hydraulic power exceeds shaft power (efficiency {float(eff.flat[at]):.3g}) "
            f"at index {at}; check flow, head and power",
        )
    return {"hydraulic_power": p_h, "efficiency": eff}


@component(
    "fan.laws",
    "1.0.0",
    Category.MECHANISM,
    title="Fan laws for speed, diameter and gas density changes",
    industries=("general", "hvac", "energy", "process", "mining"),
    references=(
        "AMCA Publication 201-02 (R2011), Fans and Systems, Fan laws",
        "ASHRAE Handbook—HVAC Systems and Equipment (2020), Ch. 21 Fans, Table 2 Fan laws",
        "Fan affinity worked example (theprimecalculator.com): 10,000 cfm at 2.0 in. w.g. "
        "and 5 hp at 1200 rpm becomes 12,500 cfm, 3.13 in. w.g., 9.77 hp at 1500 rpm",
    ),
    inputs={
        "flow": Port.quantity("m**3/h", "Volume flow rate Q1", minimum=0),
        "pressure": Port.quantity("Pa", "Fan pressure p1 (static or total)", minimum=0),
        "power": Port.quantity("kW", "Fan shaft power P1", minimum=0),
        "speed": Port.quantity("rpm", "Known speed N1", **_POSITIVE).optional(None),
        "new_speed": Port.quantity("rpm", "New speed N2", **_POSITIVE).optional(None),
        "diameter": Port.quantity("mm", "Known wheel diameter D1", **_POSITIVE).optional(None),
        "new_diameter": Port.quantity("mm", "New wheel diameter D2", **_POSITIVE).optional(None),
        "density": Port.quantity("kg/m**3", "Known gas density ρ1", **_POSITIVE).optional(None),
        "new_density": Port.quantity("kg/m**3", "New gas density ρ2", **_POSITIVE).optional(None),
    },
    outputs={
        "flow": Port.quantity("m**3/h", "Volume flow rate Q2"),
        "pressure": Port.quantity("Pa", "Fan pressure p2"),
        "power": Port.quantity("kW", "Fan shaft power P2"),
    },
)
def fan_laws(
    flow: FloatArray,
    pressure: FloatArray,
    power: FloatArray,
    speed: FloatArray | None,
    new_speed: FloatArray | None,
    diameter: FloatArray | None,
    new_diameter: FloatArray | None,
    density: FloatArray | None,
    new_density: FloatArray | None,
) -> dict[str, FloatArray]:
    """Scale a fan operating point between geometrically similar points of rating.

    Q2 = Q1·(N2/N1)·(D2/D1)³, p2 = p1·(ρ2/ρ1)·(N2/N1)²·(D2/D1)²,
    P2 = P1·(ρ2/ρ1)·(N2/N1)³·(D2/D1)⁵ (AMCA 201, fan laws 1 to 3), for incompressible flow
    (fan pressure rise small against absolute pressure). Give any of the old/new pairs.

    Reference values: fan-law worked example, 10,000 cfm, 2.0 in. w.g., 5 hp at 1200 rpm
    gives 12,500 cfm, 3.13 in. w.g. and 9.77 hp at 1500 rpm.
    """
    _need_a_pair(speed, new_speed, diameter, new_diameter, density, new_density)
    rn = _ratio(speed, new_speed, "speed", "new_speed")
    rd = _ratio(diameter, new_diameter, "diameter", "new_diameter")
    rr = _ratio(density, new_density, "density", "new_density")
    return {
        "flow": flow * rn * rd**3,
        "pressure": pressure * rr * rn**2 * rd**2,
        "power": power * rr * rn**3 * rd**5,
    }


@component(
    "compressor.specific_power",
    "1.0.0",
    Category.MECHANISM,
    title="Air compressor specific power (kW per m³/min and per 100 cfm)",
    industries=("general", "discrete", "process", "automotive", "energy"),
    references=(
        "ISO 1217:2009 Displacement compressors, acceptance tests, Annex C (specific energy "
        "requirement at full load)",
        "CAGI Rotary Compressor Performance Verification data sheet, item 'Specific package "
        "input power at rated capacity' in kW/100 cfm",
        "Comate specific-power example: 132 kW screw compressor, 24 m³/min FAD, package "
        "input 153.33 kW gives 6.39 kW/(m³/min); with a 5.29 kW fan 158.62 kW gives 6.61",
    ),
    inputs={
        "input_power": Port.quantity("kW", "Total package input power", minimum=0),
        "free_air_delivery": Port.quantity(
            "m**3/min", "Free air delivery (FAD) at inlet conditions", **_POSITIVE
        ),
    },
    outputs={
        "specific_power": Port.quantity("kW/(m**3/min)", "Input power per m³/min of FAD"),
        "specific_power_cfm": Port.quantity(
            "kW/(hectocubic_foot/min)", "Input power per 100 cfm of FAD (CAGI form)"
        ),
    },
)
def compressor_specific_power(
    input_power: FloatArray, free_air_delivery: FloatArray
) -> dict[str, FloatArray]:
    """Specific power = package input power / free air delivery.

    Given in kW/(m³/min) and in the CAGI data-sheet form kW/100 cfm, with
    1 m³/min = 35.3147 cfm (from the exact international foot, 0.3048 m).

    Reference values: Comate example, 158.62 kW at 24 m³/min FAD = 6.61 kW/(m³/min).
    """
    sp = input_power / free_air_delivery
    return {"specific_power": sp, "specific_power_cfm": sp * 100.0 / CFM_PER_M3_MIN}
