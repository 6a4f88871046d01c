"""Acme's tool wear components: registered through a callable entry point."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from yugong.platform.components import Category, Component, Port, bad_input, component


@component(
    "acme.wear_rate",
    "0.3.0",
    Category.HYBRID,
    title="Tool wear rate and time to the wear limit",
    industries=("discrete", "automotive"),
    references=("ISO 3685:1993, Tool-life testing with single-point turning tools, 7.2",),
    inputs={
        "hours": Port.series("h", "Cutting time at each measurement", min_length=2),
        "wear": Port.series("mm", "Flank wear VB at each measurement", minimum=0),
        "limit": Port.number("mm", "Wear limit", exclusive_minimum=0).optional(0.3),
    },
    outputs={
        "rate": Port.number("mm/h", "Wear rate (least squares slope)"),
        "hours_left": Port.number("h", "Cutting time until the wear limit"),
    },
)
def wear_rate(
    hours: npt.NDArray[np.float64], wear: npt.NDArray[np.float64], limit: float
) -> dict[str, Any]:
    """Flank wear grows about linearly in the steady wear zone; VB 0.3 mm is the ISO 3685
    tool-life criterion for uniform wear."""
    if hours.shape != wear.shape:
        raise bad_input("wear", f"{wear.size} values for {hours.size} times")
    slope, _ = np.polyfit(hours, wear, 1)
    left = (limit - wear[-1]) / slope if slope > 0 else float("inf")
    return {"rate": float(slope), "hours_left": float(max(left, 0.0))}


def components() -> list[Component]:
    return [wear_rate]
