"""Electric motors: three-phase input power, efficiency, load, synchronous speed and slip."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from yugong.platform.components import Category, Port, bad_input, component

FloatArray = npt.NDArray[np.float64]
SQRT3 = float(np.sqrt(3.0))


def _all_or_none(names: tuple[str, ...], values: tuple[Any, ...]) -> bool:
    """True when every value is given, False when none is; a partial group is refused."""
    given = [v is not None for v in values]
    if all(given):
        return True
    if any(given):
        missing = names[given.index(False)]
        others = ", ".join(n for n, g in zip(names, given, strict=True) if g)
        raise bad_input(missing, f"missing: needed with {others}")
    return False


@component(
    "motor.three_phase",
    "1.0.0",
    Category.MECHANISM,
    title="Three-phase induction motor: input power, efficiency, load, slip",
    industries=("general", "discrete", "process", "water", "hvac", "energy", "mining"),
    references=(
        "US DOE Motor Challenge fact sheet 'Determining Electric Motor Load and Efficiency' "
        "(DOE/GO-10097-517), Eq. 1 input power and Eq. 4 slip load, with its worked examples",
        "IEEE Std 1459-2010, 3.2 (three-phase active power P = √3·V·I·PF, balanced system)",
        "NEMA MG 1, synchronous speed 120·f/p and slip definitions",
    ),
    inputs={
        "voltage": Port.quantity(
            "V", "Line-to-line RMS voltage, mean of the three phases", exclusive_minimum=0
        ).optional(None),
        "current": Port.quantity(
            "A", "Line RMS current, mean of the three phases", minimum=0
        ).optional(None),
        "power_factor": Port.quantity(None, "Power factor (0-1)", minimum=0, maximum=1).optional(
            None
        ),
        "output_power": Port.quantity("kW", "Measured shaft output power", minimum=0).optional(
            None
        ),
        "rated_power": Port.quantity(
            "kW", "Nameplate rated shaft output", exclusive_minimum=0
        ).optional(None),
        "frequency": Port.quantity("Hz", "Supply frequency", exclusive_minimum=0).optional(None),
        "poles": Port.integer("Number of poles (even)", minimum=2).optional(None),
        "speed": Port.quantity("rpm", "Measured shaft speed", minimum=0).optional(None),
        "rated_speed": Port.quantity(
            "rpm", "Nameplate full-load speed", exclusive_minimum=0
        ).optional(None),
    },
    outputs={
        "input_power": Port.quantity("kW", "Electrical input power √3·V·I·PF").optional(None),
        "efficiency": Port.quantity(None, "Shaft output / electrical input").optional(None),
        "load": Port.quantity(None, "Shaft output / rated output").optional(None),
        "synchronous_speed": Port.quantity("rpm", "Synchronous speed 120·f/p").optional(None),
        "slip": Port.quantity(None, "Slip (ns − n)/ns").optional(None),
        "slip_load": Port.quantity(
            None, "Load estimated by the slip method (ns − n)/(ns − n_rated)"
        ).optional(None),
        "slip_output_power": Port.quantity(
            "kW", "Shaft output estimated by the slip method, slip_load × rated_power"
        ).optional(None),
    },
)
def three_phase_motor(
    voltage: FloatArray | None,
    current: FloatArray | None,
    power_factor: FloatArray | None,
    output_power: FloatArray | None,
    rated_power: FloatArray | None,
    frequency: FloatArray | None,
    poles: int | None,
    speed: FloatArray | None,
    rated_speed: FloatArray | None,
) -> dict[str, FloatArray]:
    """Three-phase motor quantities from whichever measurements are given.

    - input_power = √3·V·I·PF / 1000 (kW) from voltage, current and power_factor together
      (DOE fact sheet Eq. 1, line values averaged over the phases);
    - efficiency = output_power / input_power when output_power is also given;
    - load = output_power / rated_power;
    - synchronous_speed = 120·f/p from frequency and poles; slip = (ns − n)/ns with speed;
    - slip method (DOE Eq. 4): slip_load = (ns − n)/(ns − n_rated), and
      slip_output_power = slip_load × rated_power. The slip method is rough (nameplate slip
      carries a manufacturing tolerance and slip varies with voltage²), as the fact sheet
      warns.

    Outputs that the given inputs cannot determine are left out.

    Reference values: DOE fact sheet examples, 469.7 V, 37 A, PF 0.763 gives 22.9 kW input;
    ns 1800 rpm, nameplate 1750 rpm, measured 1770 rpm on a 25 hp motor gives 60 % load and
    15 hp output.
    """
    out: dict[str, FloatArray] = {}
    if _all_or_none(("voltage", "current", "power_factor"), (voltage, current, power_factor)):
        assert voltage is not None and current is not None and power_factor is not None
        out["input_power"] = SQRT3 * voltage * current * power_factor / 1000.0
    if output_power is not None:
        if "input_power" in out:
            p_in = out["input_power"]
            if np.any(p_in <= 0):
                raise bad_input("current", "input power is zero: efficiency is undefined")
            eff = np.asarray(output_power / p_in, dtype=np.float64)
            if np.any(eff > 1.0):
                raise bad_input("output_power", "output exceeds electrical input power")
            out["efficiency"] = eff
        if rated_power is not None:
            out["load"] = output_power / rated_power
    if _all_or_none(("frequency", "poles"), (frequency, poles)):
        assert frequency is not None and poles is not None
        if poles % 2:
            raise bad_input("poles", f"a motor has an even number of poles, got {poles}")
        ns = 120.0 * frequency / poles
        out["synchronous_speed"] = ns
        if speed is not None:
            out["slip"] = (ns - speed) / ns
        if rated_speed is not None:
            if np.any(rated_speed >= ns):
                raise bad_input("rated_speed", "full-load speed must be below synchronous speed")
            if speed is not None:
                out["slip_load"] = (ns - speed) / (ns - rated_speed)
                if rated_power is not None:
                    out["slip_output_power"] = out["slip_load"] * rated_power
    elif speed is not None or rated_speed is not None:
        raise bad_input("frequency", "missing: the slip needs frequency and poles")
    if not out:
        raise bad_input("voltage", "give voltage, current and power_factor, or frequency and poles")
    return out
