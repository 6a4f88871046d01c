"""Units of measure: conversions derived from pint, shared by the edge and the platform."""

from __future__ import annotations

import functools
import math
from typing import Any

from yugong.core.errors import FieldError, InvalidInput


@functools.cache
def unit_registry() -> Any:
    import pint  # imported on first use: building the registry takes a moment

    ureg: Any = pint.UnitRegistry()
    # Reactive power: dimensionally a volt-ampere, named apart so kvar reads as kvar.
    ureg.define("volt_ampere_reactive = volt * ampere = var = VAr")
    return ureg


# A wide span keeps the derived factor accurate; the third probe checks the map is affine.
_PROBES = (0.0, 1000.0, 7.0)


def unit_factor(from_unit: str, to_unit: str, where: str = "units") -> tuple[float, float]:
    """``(factor, offset)`` with ``to = from * factor + offset``, derived with pint."""
    import pint

    ureg = unit_registry()
    try:
        conv = [float(ureg.Quantity(x, from_unit).to(to_unit).magnitude) for x in _PROBES]
    except pint.UndefinedUnitError as exc:
        raise InvalidInput(
            f"{where}: unknown unit {exc.unit_names!r}",
            [FieldError(where, f"unknown unit {exc.unit_names!r}")],
        ) from None
    except pint.DimensionalityError:
        msg = f"cannot convert {from_unit!r} to {to_unit!r}: different dimensions"
        raise InvalidInput(f"{where}: {msg}", [FieldError(where, msg)]) from None
    except (pint.errors.PintError, ValueError, TypeError, AssertionError) as exc:
        msg = f"cannot convert {from_unit!r} to {to_unit!r}: {exc}"
        raise InvalidInput(f"{where}: {msg}", [FieldError(where, msg)]) from None
    offset, factor = conv[0], (conv[1] - conv[0]) / _PROBES[1]
    if not math.isclose(conv[2], offset + _PROBES[2] * factor, rel_tol=1e-9, abs_tol=1e-12):
        msg = f"{from_unit!r} -> {to_unit!r} is not a linear conversion"
        raise InvalidInput(f"{where}: {msg}", [FieldError(where, msg)])
    return factor * _turns_to_cycles(ureg, from_unit, to_unit), offset


def _turns_to_cycles(ureg: Any, from_unit: str, to_unit: str) -> float:
    """The 2π pint leaves between turns and hertz. pint's rpm is an angular velocity
    (2π rad/min, right for rad/s) and its hertz a bare 1/s, so 1,797 rpm would read 188 Hz;
    machine people mean one cycle per revolution (29.95 Hz)."""

    def names(unit: str) -> str:
        return str(ureg.Unit(unit))

    turns = ("revolution", "turn", "cycle")
    src, dst = names(from_unit), names(to_unit)
    if any(t in src for t in turns) and "hertz" in dst:
        return 1 / (2 * math.pi)
    if "hertz" in src and any(t in dst for t in turns):
        return 2 * math.pi
    return 1.0
