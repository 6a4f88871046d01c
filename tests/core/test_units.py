"""Unit conversions the plant floor relies on, beyond pint's defaults."""

from __future__ import annotations

import math

import pytest

from yugong.core.units import unit_factor


@pytest.mark.parametrize(
    ("src", "dst", "value", "expected"),
    [
        ("rpm", "Hz", 1797.0, 29.95),  # one cycle per revolution
        ("Hz", "rpm", 50.0, 3000.0),
        ("kHz", "rpm", 0.05, 3000.0),
        ("rpm", "rad/s", 60.0, 2 * math.pi),  # angular velocity keeps its 2π
        ("rpm", "revolution/s", 1797.0, 29.95),
        ("1/min", "Hz", 1797.0, 29.95),
        ("var", "kvar", 4000.0, 4.0),
        ("kVAr", "var", 1.5, 1500.0),
    ],
)
def test_conversions(src: str, dst: str, value: float, expected: float) -> None:
    factor, offset = unit_factor(src, dst)
    assert value * factor + offset == pytest.approx(expected)
