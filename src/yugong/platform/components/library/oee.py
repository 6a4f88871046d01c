"""Overall equipment effectiveness: OEE, TEEP and the six big losses from machine-state
intervals and production counters.

Machine states (the ``state`` of each interval):

===============  ===========================================================================
state            meaning and where the time goes
===============  ===========================================================================
``running``      producing; run time
``minor_stop``   short stop or idling inside a run (alias ``idle``); run time, counted as the
                 "idling and minor stops" performance loss
``down``         unplanned stop, equipment failure (alias ``breakdown``); availability loss
``setup``        changeover, setup and adjustment; availability loss
``planned_stop`` breaks, meals, planned maintenance, no production scheduled; outside planned
                 production time (lowers utilization, not OEE)
===============  ===========================================================================

Time that no interval covers is treated as not scheduled, like ``planned_stop``. Definitions
follow Nakajima (1988) and the Vorne Industries OEE guide:

* planned production time = all time - planned stops
* run time = planned production time - down - setup
* availability = run time / planned production time
* performance = ideal cycle time x total count / run time
* quality = good count / total count
* OEE = availability x performance x quality = ideal cycle time x good count / planned time
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from yugong.platform.components import Category, Port, bad_input, component

FloatArray = npt.NDArray[np.float64]

# Each accepted state and the class it counts as.
STATE_CLASS = {
    "running": "running",
    "minor_stop": "minor_stop",
    "idle": "minor_stop",
    "down": "down",
    "breakdown": "down",
    "setup": "setup",
    "planned_stop": "planned_stop",
}
_CLASSES = ("running", "minor_stop", "down", "setup", "planned_stop")

NAKAJIMA = (
    "Nakajima, S. (1988) Introduction to TPM: Total Productive Maintenance. "
    "Productivity Press, ch. 2 (the six big losses and overall equipment effectiveness)"
)
VORNE = (
    "Vorne Industries, The Fast Guide to OEE (2002-2008) and 'Calculating OEE' worksheet, "
    "www.oee.com: 8 h shift example, A 88.81 %, P 86.11 %, Q 97.80 %, OEE 74.79 %"
)

INTERVALS = Port.object(
    "Machine-state intervals: a list of {start, end (epoch s), state}; state is one of "
    + ", ".join(STATE_CLASS),
    schema={
        "type": "array",
        "minItems": 1,
        "items": {
            "type": "object",
            "properties": {
                "start": {"type": "number"},
                "end": {"type": "number"},
                "state": {"type": "string", "enum": list(STATE_CLASS)},
            },
            "required": ["start", "end", "state"],
        },
    },
)
COUNTER_INPUTS: dict[str, Port] = {
    "intervals": INTERVALS,
    "total_count": Port.number(None, "Units produced in the window, good and rejected", minimum=0),
    "reject_count": Port.number(None, "Units rejected (scrap and rework)", minimum=0),
    "ideal_cycle_time": Port.number(
        "s", "Ideal (theoretical fastest) cycle time per unit", exclusive_minimum=0
    ),
    "window_start": Port.number("s", "Start of the window to clip to, epoch s").optional(None),
    "window_end": Port.number("s", "End of the window to clip to, epoch s").optional(None),
}


@dataclass(frozen=True)
class _Times:
    """Seconds spent in each state class inside the window, and the window length."""

    by_class: dict[str, float]
    all_time: float

    @property
    def planned(self) -> float:
        return sum(self.by_class[c] for c in ("running", "minor_stop", "down", "setup"))

    @property
    def run(self) -> float:
        return self.by_class["running"] + self.by_class["minor_stop"]


def _state_times(
    intervals: list[dict[str, Any]], window_start: float | None, window_end: float | None
) -> _Times:
    start = np.array([iv["start"] for iv in intervals], dtype=np.float64)
    end = np.array([iv["end"] for iv in intervals], dtype=np.float64)
    klass = np.array([_CLASSES.index(STATE_CLASS[iv["state"]]) for iv in intervals])
    if not (np.isfinite(start).all() and np.isfinite(end).all()):
        i = int(np.argmax(~(np.isfinite(start) & np.isfinite(end))))
        raise bad_input(f"intervals[{i}]", "start and end must be finite")
    backwards = end < start
    if backwards.any():
        i = int(np.argmax(backwards))
        raise bad_input(f"intervals[{i}]", f"end {end[i]:g} is before start {start[i]:g}")
    order = np.argsort(start, kind="stable")
    s_sorted, e_sorted = start[order], end[order]
    # An interval overlaps an earlier one when it starts before the latest end seen so far.
    latest_end = np.maximum.accumulate(e_sorted)
    overlap = s_sorted[1:] < latest_end[:-1]
    if overlap.any():
        k = int(np.argmax(overlap))
        later = int(order[k + 1])
        earlier = int(order[int(np.argmax(e_sorted[: k + 1]))])
        raise bad_input(f"intervals[{later}]", f"overlaps intervals[{earlier}]")

    lo = float(start.min()) if window_start is None else window_start
    hi = float(end.max()) if window_end is None else window_end
    if hi <= lo:
        where = "intervals" if window_start is None and window_end is None else "window_end"
        raise bad_input(where, f"window end {hi:g} is not after window start {lo:g}")
    duration = np.clip(end, lo, hi) - np.clip(start, lo, hi)
    per_class = np.bincount(klass, weights=duration, minlength=len(_CLASSES))
    return _Times(dict(zip(_CLASSES, per_class.tolist(), strict=True)), hi - lo)


@dataclass(frozen=True)
class _Oee:
    availability: float
    performance: float
    quality: float
    oee: float
    planned: float
    run: float
    net_run: float
    fully_productive: float


def _oee(times: _Times, total: float, rejects: float, ideal_cycle_time: float) -> _Oee:
    if rejects > total:
        raise bad_input("reject_count", f"{rejects:g} rejects exceed the total count {total:g}")
    planned, run = times.planned, times.run
    if planned <= 0:
        raise bad_input("intervals", "no planned production time inside the window")
    if total > 0 and run <= 0:
        raise bad_input("total_count", f"{total:g} units counted but no run time")
    net_run = ideal_cycle_time * total
    # Performance above 100 % means the ideal cycle time or the count is wrong.
    if net_run > run * (1 + 1e-9):
        raise bad_input(
            "ideal_cycle_time",
            f"{total:g} units at {ideal_cycle_time:g} s need {net_run:g} s but the run time is "
            f"{run:g} s (performance above 100 %)",
        )
    good = total - rejects
    availability = run / planned
    performance = net_run / run if run > 0 else 0.0
    # With nothing counted, nothing good was made: quality is reported as 0.
    quality = good / total if total > 0 else 0.0
    return _Oee(
        availability=availability,
        performance=performance,
        quality=quality,
        oee=availability * performance * quality,
        planned=planned,
        run=run,
        net_run=net_run,
        fully_productive=ideal_cycle_time * good,
    )


@component(
    "oee.oee",
    "1.0.0",
    Category.STATISTICAL,
    title="Overall equipment effectiveness from machine states and counters",
    industries=("general", "discrete", "automotive", "food", "pharma", "textile"),
    references=(NAKAJIMA, VORNE),
    inputs=COUNTER_INPUTS,
    outputs={
        "availability": Port.number(None, "Run time / planned production time"),
        "performance": Port.number(None, "Ideal cycle time x total count / run time"),
        "quality": Port.number(None, "Good count / total count"),
        "oee": Port.number(None, "Availability x performance x quality"),
        "planned_time": Port.number("s", "Planned production time"),
        "run_time": Port.number("s", "Run (operating) time: planned time less down and setup"),
        "fully_productive_time": Port.number("s", "Ideal cycle time x good count"),
    },
)
def oee(
    intervals: list[dict[str, Any]],
    total_count: float,
    reject_count: float,
    ideal_cycle_time: float,
    window_start: float | None,
    window_end: float | None,
) -> dict[str, float]:
    """OEE = availability x performance x quality (Nakajima 1988).

    Planned production time is the time in ``running``, ``minor_stop``, ``down`` and ``setup``
    intervals, clipped to the optional window; run time is ``running`` plus ``minor_stop``.
    Performance above 100 % is refused as bad input: it means the ideal cycle time or the count
    is wrong. With no units counted, performance and quality are reported as 0.

    Reference values: Vorne Industries OEE worked example (8 h shift, two 15 min breaks and a
    30 min meal, 47 min down, ideal rate 60 per minute, 19,271 pieces, 423 rejects):
    availability 88.81 %, performance 86.11 %, quality 97.80 %, OEE 74.79 %.
    """
    times = _state_times(intervals, window_start, window_end)
    r = _oee(times, total_count, reject_count, ideal_cycle_time)
    return {
        "availability": r.availability,
        "performance": r.performance,
        "quality": r.quality,
        "oee": r.oee,
        "planned_time": r.planned,
        "run_time": r.run,
        "fully_productive_time": r.fully_productive,
    }


@component(
    "oee.teep",
    "1.0.0",
    Category.STATISTICAL,
    title="Total effective equipment performance (OEE x utilization)",
    industries=("general", "discrete", "automotive", "food", "pharma", "textile"),
    references=(
        NAKAJIMA,
        "Vorne Industries, www.oee.com 'TEEP': TEEP = OEE x utilization, utilization = "
        "planned production time / all time",
        "LeanWorx, 'TEEP definition, TEEP calculation, OEE vs. TEEP', examples 1 and 2 "
        "(OEE 60 %: 24 h x 6 d/week gives TEEP 51.4 %; 11 h x 6 d/week gives 39.3 % and 23.6 %)",
    ),
    inputs=COUNTER_INPUTS,
    outputs={
        "teep": Port.number(None, "OEE x utilization"),
        "utilization": Port.number(None, "Planned production time / all time"),
        "oee": Port.number(None, "Overall equipment effectiveness"),
        "all_time": Port.number("s", "Calendar time of the window"),
        "planned_time": Port.number("s", "Planned production time"),
    },
)
def teep(
    intervals: list[dict[str, Any]],
    total_count: float,
    reject_count: float,
    ideal_cycle_time: float,
    window_start: float | None,
    window_end: float | None,
) -> dict[str, float]:
    """TEEP = OEE x utilization, utilization = planned production time / all time.

    All time is the window (``window_start`` to ``window_end``); where either is absent, the
    earliest start or latest end of the intervals. Time no interval covers counts as not
    scheduled, so give a window of whole calendar time (e.g. a week) and record only the
    scheduled intervals.

    Reference values: LeanWorx TEEP examples, OEE 60 %: a machine run 24 h a day 6 days a week
    has utilization 6/7 = 85.7 % and TEEP 51.4 %; run 12 h a day less 1 h of breaks, 6 days a
    week, utilization 39.3 % and TEEP 23.6 %.
    """
    times = _state_times(intervals, window_start, window_end)
    r = _oee(times, total_count, reject_count, ideal_cycle_time)
    utilization = r.planned / times.all_time
    return {
        "teep": r.oee * utilization,
        "utilization": utilization,
        "oee": r.oee,
        "all_time": times.all_time,
        "planned_time": r.planned,
    }


SIX_LOSSES = (
    "equipment_failure",
    "setup_adjustment",
    "idling_minor_stops",
    "reduced_speed",
    "process_defects",
    "reduced_yield",
)
_LOSS_SCHEMA = {
    "type": "object",
    "properties": {name: {"type": "number"} for name in SIX_LOSSES},
    "required": list(SIX_LOSSES),
}


@component(
    "oee.six_big_losses",
    "1.0.0",
    Category.STATISTICAL,
    title="The six big losses of equipment time",
    industries=("general", "discrete", "automotive", "food", "pharma", "textile"),
    references=(NAKAJIMA, VORNE, "Vorne Industries, www.oee.com 'Six Big Losses'"),
    inputs={
        **COUNTER_INPUTS,
        "startup_rejects": Port.number(
            None, "Of the rejects, those made during startup or warm-up (reduced yield)", minimum=0
        ).optional(0.0),
    },
    outputs={
        "loss_time": Port.object("Time lost to each of the six losses, s", _LOSS_SCHEMA),
        "loss_share": Port.object("Each loss as a share of planned production time", _LOSS_SCHEMA),
        "fully_productive_time": Port.number("s", "Ideal cycle time x good count"),
        "planned_time": Port.number("s", "Planned production time"),
        "oee": Port.number(None, "Fully productive time / planned production time"),
    },
)
def six_big_losses(
    intervals: list[dict[str, Any]],
    total_count: float,
    reject_count: float,
    ideal_cycle_time: float,
    window_start: float | None,
    window_end: float | None,
    startup_rejects: float,
) -> dict[str, Any]:
    """Planned production time split into Nakajima's six big losses and fully productive time.

    Mapping (the six losses plus fully productive time sum to planned production time):

    * equipment failure (availability) = time in ``down`` / ``breakdown``
    * setup and adjustment (availability) = time in ``setup``
    * idling and minor stops (performance) = time in ``minor_stop`` / ``idle``
    * reduced speed (performance) = run time - minor stops - ideal cycle time x total count
    * process defects (quality) = ideal cycle time x (rejects - startup rejects)
    * reduced yield (quality) = ideal cycle time x startup rejects
    * fully productive time = ideal cycle time x good count

    Quality losses are valued at the ideal cycle time, as in the Vorne OEE guide. A reduced
    speed loss below zero (units made faster than ideal during the running time) is refused.
    """
    if startup_rejects > reject_count:
        raise bad_input(
            "startup_rejects", f"{startup_rejects:g} exceeds the reject count {reject_count:g}"
        )
    times = _state_times(intervals, window_start, window_end)
    r = _oee(times, total_count, reject_count, ideal_cycle_time)
    minor = times.by_class["minor_stop"]
    reduced_speed = r.run - minor - r.net_run
    if reduced_speed < -1e-9 * max(r.run, 1.0):
        raise bad_input(
            "ideal_cycle_time",
            f"{total_count:g} units at {ideal_cycle_time:g} s need {r.net_run:g} s but only "
            f"{r.run - minor:g} s were spent running outside minor stops",
        )
    losses = np.array(
        [
            times.by_class["down"],
            times.by_class["setup"],
            minor,
            max(reduced_speed, 0.0),
            ideal_cycle_time * (reject_count - startup_rejects),
            ideal_cycle_time * startup_rejects,
        ]
    )
    shares = losses / r.planned
    return {
        "loss_time": dict(zip(SIX_LOSSES, losses.tolist(), strict=True)),
        "loss_share": dict(zip(SIX_LOSSES, shares.tolist(), strict=True)),
        "fully_productive_time": r.fully_productive,
        "planned_time": r.planned,
        "oee": r.fully_productive / r.planned,
    }
