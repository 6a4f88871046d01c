"""Energy management: specific energy consumption, time-of-use tariff cost, load factor, power
factor and CO2 from a grid emission factor."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np
import numpy.typing as npt

from yugong.platform.components import Category, Port, bad_input, component

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]

MINUTES_PER_DAY = 1440


@component(
    "energy.specific_consumption",
    "1.0.0",
    Category.MECHANISM,
    title="Specific energy consumption (energy per unit of production)",
    industries=("general", "energy", "process", "discrete", "metallurgy", "chemical"),
    references=(
        "ISO 50006:2014, Energy management systems - Measuring energy performance using energy "
        "baselines and energy performance indicators, 4.4 and Annex C (ratio EnPI: energy "
        "consumption / production)",
    ),
    inputs={
        "energy": Port.series("kWh", "Energy consumed in each period", minimum=0, batch=True),
        "production": Port.series(
            None,
            "Production in each period, in the caller's unit (pieces, t, m**3 ...)",
            exclusive_minimum=0,
            batch=True,
        ),
    },
    outputs={
        "sec": Port.series("kWh", "Energy per unit of production in each period", batch=True),
        "total": Port.quantity(
            "kWh", "Energy per unit of production over all periods (one per row)"
        ),
    },
)
def specific_consumption(energy: FloatArray, production: FloatArray) -> dict[str, Any]:
    """SEC = energy / production, per period and over all periods.

    The total is sum(energy) / sum(production), the production-weighted mean of the per-period
    values, not their plain mean. With 2-D input each row is one meter or line, and ``total``
    has one value per row. The unit of the result is kWh per unit of ``production``.

    Reference: ISO 50006:2014 defines this ratio energy performance indicator; test values are
    hand-derived divisions.
    """
    if energy.shape != production.shape:
        raise bad_input(
            "production", f"shape {production.shape} differs from energy shape {energy.shape}"
        )
    total = energy.sum(axis=-1) / production.sum(axis=-1)
    return {"sec": energy / production, "total": total if total.ndim else float(total)}


_HHMM = re.compile(r"^(?:([01]\d|2[0-3]):([0-5]\d)|24:00)$")
_PERIODS_SCHEMA = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1},
            "start": {"type": "string", "pattern": _HHMM.pattern},
            "end": {"type": "string", "pattern": _HHMM.pattern},
            "price": {"type": "number"},
        },
        "required": ["name", "start", "end", "price"],
    },
}
_TOTALS_SCHEMA = {"type": "object", "additionalProperties": {"type": "number"}}


def _minute(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return (int(hours) * 60 + int(minutes)) % MINUTES_PER_DAY


def _check_periods(periods: list[dict[str, Any]]) -> None:
    """Refuse periods that overlap or leave a minute of the day uncovered."""
    count = np.zeros(MINUTES_PER_DAY, dtype=np.intp)
    owner = np.full(MINUTES_PER_DAY, -1, dtype=np.intp)
    for i, period in enumerate(periods):
        start, end = _minute(period["start"]), _minute(period["end"])
        length = (end - start) % MINUTES_PER_DAY or MINUTES_PER_DAY  # start == end: all day
        minutes = (start + np.arange(length)) % MINUTES_PER_DAY
        taken = owner[minutes]
        clash = taken[count[minutes] > 0]
        if clash.size:
            at = int(minutes[np.argmax(count[minutes] > 0)])
            raise bad_input(
                "periods",
                f"periods[{i}] ({period['name']}) overlaps periods[{int(clash[0])}] "
                f"at {at // 60:02d}:{at % 60:02d}",
            )
        count[minutes] += 1
        owner[minutes] = i
    if (count == 0).any():
        at = int(np.argmax(count == 0))
        raise bad_input(
            "periods", f"the periods do not cover 24 h: {at // 60:02d}:{at % 60:02d} is in none"
        )


def _period_changes(
    periods: list[dict[str, Any]], tz: dt.tzinfo, t_first: float, t_last: float
) -> tuple[FloatArray, IntArray]:
    """Epoch seconds at which each period begins on every local day spanning the data."""
    first = dt.datetime.fromtimestamp(t_first, tz).date() - dt.timedelta(days=1)
    last = dt.datetime.fromtimestamp(t_last, tz).date() + dt.timedelta(days=1)
    starts = [divmod(_minute(p["start"]), 60) for p in periods]
    epochs: list[float] = []
    labels: list[int] = []
    # One loop step per local day and period: local clock times map to epochs through the
    # zone's rules, which keeps daylight-saving days right.
    for day in range((last - first).days + 1):
        date = first + dt.timedelta(days=day)
        for i, (hour, minute) in enumerate(starts):
            local = dt.datetime(date.year, date.month, date.day, hour, minute, tzinfo=tz)
            epochs.append(local.timestamp())
            labels.append(i)
    order = np.argsort(epochs, kind="stable")
    return np.asarray(epochs)[order], np.asarray(labels, dtype=np.intp)[order]


@component(
    "energy.tariff_cost",
    "1.0.0",
    Category.MECHANISM,
    title="Energy and cost under time-of-use (peak/flat/valley) tariffs",
    industries=("general", "energy", "process", "discrete", "metallurgy", "chemical"),
    references=(
        "NDRC, Notice on further improving the time-of-use electricity pricing mechanism "
        "(Fa Gai Jia Ge [2021] No. 1093): peak, flat and valley periods set by each province",
    ),
    inputs={
        "time": Port.series("s", "Sample times, epoch seconds, strictly increasing", min_length=2),
        "power": Port.series("kW", "Active power at each sample time", min_length=2),
        "periods": Port.object(
            "Tariff periods: a list of {name, start 'HH:MM', end 'HH:MM', price per kWh} "
            "covering the 24 h day exactly once; end before start wraps past midnight",
            schema=_PERIODS_SCHEMA,
        ),
        "timezone": Port.text("IANA time zone the periods' clock times are in").optional(
            "Asia/Shanghai"
        ),
    },
    outputs={
        "energy": Port.number("kWh", "Total energy"),
        "cost": Port.number(None, "Total cost, in the currency of the prices"),
        "energy_by_period": Port.object("Energy (kWh) by period name", _TOTALS_SCHEMA),
        "cost_by_period": Port.object("Cost by period name", _TOTALS_SCHEMA),
    },
)
def tariff_cost(
    time: FloatArray, power: FloatArray, periods: list[dict[str, Any]], timezone: str
) -> dict[str, Any]:
    """Energy from power samples by the trapezoid rule, priced by time-of-use period.

    Power is taken to vary linearly between samples (trapezoid rule). Every period boundary
    inside the data is inserted into the time grid, with power interpolated there, so a
    segment that crosses a boundary is split exactly and each part is priced in its own
    period. Periods with the same name (e.g. a morning and an evening peak) are summed under
    that name. Clock times are local to ``timezone`` (default Asia/Shanghai); daylight-saving
    changes are followed through the zone's rules.

    Reference: the period structure follows the NDRC 2021 time-of-use notice, under which each
    province sets its own peak, flat and valley hours and prices; the tests use a hand-checked
    schedule (valley 22:00-08:00, peak 08:00-12:00 and 18:00-22:00, flat 12:00-18:00).
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if power.shape != time.shape:
        raise bad_input("power", f"{power.size} samples but {time.size} sample times")
    steps = np.diff(time)
    if (steps <= 0).any():
        i = int(np.argmax(steps <= 0)) + 1
        raise bad_input("time", f"not strictly increasing at index {i}")
    try:
        tz = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad_input("timezone", f"unknown time zone {timezone!r}") from None
    _check_periods(periods)
    change_at, change_to = _period_changes(periods, tz, float(time[0]), float(time[-1]))
    inside = change_at[(change_at > time[0]) & (change_at < time[-1])]
    grid = np.union1d(time, inside)
    p = np.interp(grid, time, power)
    segment_kwh = 0.5 * (p[:-1] + p[1:]) * np.diff(grid) / 3600.0
    middle = 0.5 * (grid[:-1] + grid[1:])
    period = change_to[np.searchsorted(change_at, middle, side="right") - 1]

    names = list(dict.fromkeys(str(x["name"]) for x in periods))
    name_of = np.array([names.index(str(x["name"])) for x in periods], dtype=np.intp)
    price = np.array([float(x["price"]) for x in periods])
    kwh = np.bincount(name_of[period], weights=segment_kwh, minlength=len(names))
    cost = np.bincount(name_of[period], weights=segment_kwh * price[period], minlength=len(names))
    return {
        "energy": float(segment_kwh.sum()),
        "cost": float(cost.sum()),
        "energy_by_period": dict(zip(names, kwh.tolist(), strict=True)),
        "cost_by_period": dict(zip(names, cost.tolist(), strict=True)),
    }


@component(
    "energy.load_factor",
    "1.0.0",
    Category.MECHANISM,
    title="Load factor (average load / peak load)",
    industries=("general", "energy", "power"),
    references=(
        "V. K. Mehta, R. Mehta, Principles of Power System, 4th ed., S. Chand, ch. 3, "
        "Example 3.3 (100 MW for 2 h, 50 MW for 6 h, shut down the rest of the day: "
        "load factor 20.8 %)",
        "IEEE Std 100, The Authoritative Dictionary of IEEE Standards Terms: load factor",
    ),
    inputs={
        "load": Port.series(
            "kW",
            "Average demand in each of a run of equal-length intervals (e.g. 15 min or 1 h)",
            minimum=0,
            batch=True,
        ),
    },
    outputs={
        "load_factor": Port.quantity(None, "Average load / peak load (one per row)"),
        "average": Port.quantity("kW", "Average load"),
        "peak": Port.quantity("kW", "Peak (maximum interval) load"),
    },
)
def load_factor(load: FloatArray) -> dict[str, Any]:
    """Load factor = average load / peak load over the period.

    ``load`` is the demand of equal-length intervals (meter interval demand or an hourly load
    curve), so the average load is the plain mean; the peak is the largest interval demand.
    With 2-D input each row is one load curve.

    Reference values: Mehta & Mehta, Principles of Power System, Example 3.3: 100 MW for 2 h
    and 50 MW for 6 h a day: 500 MWh / (100 MW x 24 h) = 20.8 %.
    """
    peak = load.max(axis=-1)
    if (peak <= 0).any():
        row = int(np.argmax(np.atleast_1d(peak) <= 0))
        where = f" in row {row}" if load.ndim == 2 else ""
        raise bad_input("load", f"peak load is zero{where}: load factor undefined")
    average = load.mean(axis=-1)
    lf = average / peak
    if load.ndim == 1:
        return {"load_factor": float(lf), "average": float(average), "peak": float(peak)}
    return {"load_factor": lf, "average": average, "peak": peak}


@component(
    "energy.power_factor",
    "1.0.0",
    Category.MECHANISM,
    title="Power factor from active and reactive power",
    industries=("general", "energy", "power"),
    references=(
        "IEEE Std 1459-2010, Definitions for the measurement of electric power quantities under "
        "sinusoidal, nonsinusoidal, balanced, or unbalanced conditions, 3.1.1 (PF = P / S, "
        "S = sqrt(P**2 + Q**2))",
        "C. K. Alexander, M. N. O. Sadiku, Fundamentals of Electric Circuits, McGraw-Hill, "
        "sec. 11.6, Example 11.13 (S = 240 VA, pf = 0.866 leading)",
    ),
    inputs={
        "p": Port.quantity("kW", "Active power P", minimum=0),
        "q": Port.quantity("kvar", "Reactive power Q (negative when leading/capacitive)"),
    },
    outputs={
        "pf": Port.quantity(None, "Power factor P / S"),
        "s": Port.quantity("kVA", "Apparent power S"),
        "angle": Port.quantity("degree", "Power factor angle atan2(Q, P); negative is leading"),
    },
)
def power_factor(p: FloatArray, q: FloatArray) -> dict[str, Any]:
    """Power factor PF = P / S with S = sqrt(P**2 + Q**2) (IEEE 1459-2010, sinusoidal case).

    The sign of Q (and of ``angle``) tells lagging (Q > 0, inductive) from leading (Q < 0,
    capacitive); PF itself is not signed. P = Q = 0 has no power factor and is refused.

    Reference values: Alexander & Sadiku, Example 11.13: v = 120 cos(100 pi t - 20 deg) V,
    i = 4 cos(100 pi t + 10 deg) A gives S = 240 VA and pf = cos(-30 deg) = 0.866 leading;
    the power triangle P = 3 kW, Q = 4 kvar gives S = 5 kVA and pf = 0.6.
    """
    try:
        p, q = np.broadcast_arrays(p, q)
    except ValueError:
        raise bad_input("q", f"shape {np.shape(q)} does not match p shape {np.shape(p)}") from None
    s = np.hypot(p, q)
    if (s == 0).any():
        at = np.argwhere(s == 0)
        where = f" at index {', '.join(str(int(i)) for i in at[0])}" if s.ndim else ""
        raise bad_input("p", f"P and Q are both zero{where}: power factor undefined")
    pf = p / s
    angle = np.degrees(np.arctan2(q, p))
    if s.ndim == 0:
        return {"pf": float(pf), "s": float(s), "angle": float(angle)}
    return {"pf": pf, "s": s, "angle": angle}


# The national grid average emission factor for 2022 published by the Ministry of Ecology and
# Environment for greenhouse-gas reporting (0.5703 tCO2/MWh = 0.5703 kg/kWh).
CHINA_GRID_2022 = 0.5703


@component(
    "energy.co2",
    "1.0.0",
    Category.MECHANISM,
    title="CO2 emissions of electricity use from a grid emission factor",
    industries=("general", "energy", "power", "process", "discrete"),
    references=(
        "Ministry of Ecology and Environment of China, Notice on the management of greenhouse "
        "gas emission reporting of power generation enterprises 2023-2025 (Huan Ban Qi Hou Han "
        "[2023] No. 43): national grid average emission factor 0.5703 tCO2/MWh",
        "GHG Protocol Scope 2 Guidance (2015), location-based method: emissions = "
        "electricity use x grid average emission factor",
    ),
    inputs={
        "energy": Port.quantity("kWh", "Electricity consumed", minimum=0),
        "factor": Port.quantity(
            "kg/kWh", "Grid emission factor, kg CO2 per kWh", minimum=0
        ).optional(CHINA_GRID_2022),
    },
    outputs={
        "co2": Port.quantity("kg", "CO2 emitted, kg"),
        "co2_t": Port.quantity("t", "CO2 emitted, t"),
    },
)
def co2(energy: FloatArray, factor: FloatArray | float) -> dict[str, Any]:
    """Emissions = electricity use x grid emission factor (location-based, GHG Protocol).

    The default factor is China's 2022 national grid average, 0.5703 kgCO2/kWh, set by the
    Ministry of Ecology and Environment (Huan Ban Qi Hou Han [2023] No. 43). Other published
    factors differ in scope, e.g. the MEE/NBS announcement of 2022 electricity CO2 factors
    (December 2024) gives a national average of 0.5366 kgCO2/kWh; pass ``factor`` to use one
    (e.g. {"value": 0.5366, "unit": "t/MWh"}).

    Reference values: hand-derived products, e.g. 1 MWh x 0.5703 t/MWh = 570.3 kg.
    """
    try:
        kg = np.multiply(energy, factor, dtype=np.float64)
    except ValueError:
        raise bad_input(
            "factor", f"shape {np.shape(factor)} does not match energy shape {np.shape(energy)}"
        ) from None
    if kg.ndim == 0:
        return {"co2": float(kg), "co2_t": float(kg) / 1000.0}
    return {"co2": kg, "co2_t": kg / 1000.0}
