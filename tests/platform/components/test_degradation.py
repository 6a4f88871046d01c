"""Degradation and remaining-useful-life components against published examples."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from yugong.platform.components import ComponentInputError
from yugong.platform.components.library import degradation

# Montgomery & Runger, Applied Statistics and Probability for Engineers, 3rd ed., Table 11-1:
# hydrocarbon level x (%) and oxygen purity y (%). The hydrocarbon level stands in for time:
# the regression does not care what the regressor measures.
HYDROCARBON = [
    *(0.99, 1.02, 1.15, 1.29, 1.46, 1.36, 0.87, 1.23, 1.55, 1.40),
    *(1.19, 1.15, 0.98, 1.01, 1.11, 1.20, 1.26, 1.32, 1.43, 0.95),
]
PURITY = [
    *(90.01, 89.05, 91.43, 93.74, 96.73, 94.45, 87.59, 91.77, 99.42, 93.65),
    *(93.54, 92.52, 90.56, 89.54, 89.85, 90.39, 93.25, 93.41, 94.98, 87.33),
]


def _loc(exc: pytest.ExceptionInfo[ComponentInputError]) -> str:
    return str(exc.value.errors[0].loc)


# --- health index -------------------------------------------------------------------------


def test_health_index_given_references_hand_derived() -> None:
    """Min-max normalisation between healthy and failed references (Lei et al. 2018, §3).

    Feature 0 rises 2 → 10 (healthy 2, failed 10); feature 1 falls 50 → 30 (healthy 50,
    failed 30). Row (6, 45): (6−2)/8 = 0.5 and (45−50)/(30−50) = 0.25; weights 3:1 give
    (3·0.5 + 0.25)/4 = 0.4375. Row (12, 55) clips to (1, 0) → 0.75.
    """
    x = [[2.0, 50.0], [6.0, 45.0], [12.0, 55.0]]
    r = degradation.health_index(
        features=x, healthy=[2.0, 50.0], failed=[10.0, 30.0], weights=[3.0, 1.0]
    )
    assert np.allclose(r["normalised"], [[0, 0], [0.5, 0.25], [1.0, 0.0]])
    assert r["index"].tolist() == pytest.approx([0.0, 0.4375, 0.75])


def test_health_index_baseline_and_observed_failure() -> None:
    """Healthy = mean of the first 2 samples (1.0); failed = the farthest observed value (5)."""
    r = degradation.health_index(features=[0.5, 1.5, 3.0, 5.0], baseline_samples=2)
    assert r["healthy"].tolist() == [1.0]
    assert r["failed"].tolist() == [5.0]
    assert r["index"].tolist() == pytest.approx([0.0, 0.125, 0.5, 1.0])


# --- fit ----------------------------------------------------------------------------------


def test_fit_montgomery_runger_oxygen_purity() -> None:
    """Montgomery & Runger 3rd ed.: Example 11-1 β0 = 74.283, β1 = 14.947; Example 11-2
    σ̂² = 1.18; Table 11-2 se(β0) = 1.593, se(β1) = 1.317, R² = 0.877 (87.7 %); Example 11-4
    12.181 ≤ β1 ≤ 17.713 (t_0.025,18 = 2.101); Example 11-6 88.48 ≤ μ_Y|1.00 ≤ 89.98;
    Example 11-7 86.83 ≤ Y0 ≤ 91.63 at x0 = 1.00%."""
    r = degradation.fit(t=HYDROCARBON, y=PURITY, t_eval=[1.00])
    assert r["a"] == pytest.approx(74.283, abs=5e-4)
    assert r["b"] == pytest.approx(14.947, abs=5e-4)
    assert r["sigma"] ** 2 == pytest.approx(1.18, abs=5e-3)
    assert r["se_a"] == pytest.approx(1.593, abs=5e-4)
    assert r["se_b"] == pytest.approx(1.317, abs=5e-4)
    assert r["r2"] == pytest.approx(0.877, abs=5e-4)
    assert r["dof"] == 18
    assert r["b"] - 2.101 * r["se_b"] == pytest.approx(12.181, abs=2e-3)
    assert r["b"] + 2.101 * r["se_b"] == pytest.approx(17.713, abs=2e-3)
    assert r["mean"][0] == pytest.approx(89.23, abs=5e-3)
    # the book rounds 89.23 ± 0.75; exact limits are 88.486 and 89.975
    assert r["lower"][0] == pytest.approx(88.48, abs=0.01)
    assert r["upper"][0] == pytest.approx(89.98, abs=0.01)
    assert r["pred_lower"][0] == pytest.approx(86.83, abs=0.01)
    assert r["pred_upper"][0] == pytest.approx(91.63, abs=0.01)


def test_fit_exponential_is_the_log_linear_fit() -> None:
    """Noise-free y = 5 + 2·exp(0.03 t) with the offset c = 5 given: a = 2, b = 0.03 exactly;
    the log-scale fit of the published oxygen data gives the same slope as fitting ln(y)."""
    t = np.linspace(0.0, 100.0, 11)
    r = degradation.fit(t=t, y=5.0 + 2.0 * np.exp(0.03 * t), model="exponential", offset=5.0)
    assert r["a"] == pytest.approx(2.0)
    assert r["b"] == pytest.approx(0.03)
    assert r["r2"] == pytest.approx(1.0)
    assert r["upper"] == pytest.approx(r["mean"])
    logged = degradation.fit(t=HYDROCARBON, y=np.log(PURITY).tolist())
    expo = degradation.fit(t=HYDROCARBON, y=PURITY, model="exponential")
    assert expo["b"] == pytest.approx(logged["b"])
    assert expo["a"] == pytest.approx(np.exp(logged["a"]))
    assert expo["se_a"] == pytest.approx(np.exp(logged["a"]) * logged["se_a"])
    assert expo["upper"] == pytest.approx(np.exp(logged["upper"]))


# --- RUL ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("threshold", "band", "edge"),
    [
        (89.98, "confidence", "crossing_earliest"),  # Example 11-6 upper limit at x0 = 1.00
        (88.48, "confidence", "crossing_latest"),  # Example 11-6 lower limit
        (91.63, "prediction", "crossing_earliest"),  # Example 11-7 upper limit
        (86.83, "prediction", "crossing_latest"),  # Example 11-7 lower limit
    ],
)
def test_rul_band_crossing_is_the_inverse_of_the_published_interval(
    threshold: float, band: str, edge: str
) -> None:
    """Montgomery & Runger Examples 11-6/11-7 give the band at x0 = 1.00; read backwards, a
    threshold equal to a published band edge is reached by that edge at x0 = 1.00. With a
    band slope near 15 per unit, the 0.005 rounding of the book moves x0 by under 0.001."""
    r = degradation.rul(t=HYDROCARBON, y=PURITY, threshold=threshold, band=band)
    assert r[edge] == pytest.approx(1.00, abs=1e-3)
    assert r["crossing_earliest"] < r["crossing_time"] < r["crossing_latest"]
    # the point crossing is (threshold − β0)/β1 with the published coefficients
    assert r["crossing_time"] == pytest.approx((threshold - 74.283) / 14.947, abs=1e-4)
    # the fitted trend at the last observation (1.55) is already above every threshold here
    assert r["status"] == "crossed"
    assert r["rul"] == 0.0


def test_rul_exponential_hand_checked() -> None:
    """Noise-free y = 2·exp(0.05 t), t = 0..10, threshold 2e: ln(2e) = ln 2 + 1 is reached at
    t = 1/0.05 = 20, so RUL = 20 − 10 = 10; a zero-width band gives the same bounds."""
    t = np.arange(11.0)
    r = degradation.rul(t=t, y=2.0 * np.exp(0.05 * t), threshold=2.0 * np.e, model="exponential")
    assert r["status"] == "ahead"
    assert r["crossing_time"] == pytest.approx(20.0)
    assert r["rul"] == pytest.approx(10.0)
    assert r["rul_earliest"] == pytest.approx(10.0)
    assert r["rul_latest"] == pytest.approx(10.0)


def test_rul_decreasing_measure_and_band_ordering() -> None:
    """A falling health measure y = 100 − 2t ± 1 reaches 60 near t = 20 (hand: (100−60)/2)."""
    t = np.arange(0.0, 12.0)
    y = 100.0 - 2.0 * t + np.where(np.arange(12) % 2 == 0, 1.0, -1.0)
    r = degradation.rul(t=t, y=y, threshold=60.0, direction="decreasing")
    assert r["status"] == "ahead"
    assert r["crossing_time"] == pytest.approx(20.0, abs=0.3)
    assert r["crossing_earliest"] < r["crossing_time"] < r["crossing_latest"]
    assert r["rul"] == pytest.approx(r["crossing_time"] - 11.0)
    wider = degradation.rul(
        t=t, y=y, threshold=60.0, direction="decreasing", band="prediction", confidence=0.99
    )
    assert wider["crossing_earliest"] < r["crossing_earliest"]
    assert wider["crossing_latest"] > r["crossing_latest"]


def test_rul_never_when_the_trend_moves_away() -> None:
    t = np.arange(10.0)
    r = degradation.rul(t=t, y=5.0 - 0.3 * t, threshold=8.0)
    assert r["status"] == "never"
    assert r["crossing_time"] is None and r["rul"] is None and r["rul_latest"] is None


def test_rul_insignificant_slope_leaves_the_latest_unbounded() -> None:
    """Slope 0.11 ± 0.12 (t = 0.91 < t_0.025,8): b² < t²σ̂²/Sxx, so the far edge of the band
    never reaches the level; the near edge does, where the fitted band's upper limit is 3."""
    t = np.arange(10.0)
    y = 0.05 * t + np.where(np.arange(10) % 2 == 0, -1.0, 1.0)
    r = degradation.rul(t=t, y=y, threshold=3.0)
    assert r["status"] == "ahead"
    assert r["crossing_latest"] is None and r["rul_latest"] is None
    assert r["crossing_earliest"] < r["crossing_time"]
    band = degradation.fit(t=t, y=y, t_eval=[r["crossing_earliest"]])
    assert band["upper"][0] == pytest.approx(3.0)


# --- bad input ----------------------------------------------------------------------------

BAD: list[tuple[Any, dict[str, Any], str]] = [
    (degradation.health_index, {"features": [[[1.0]]]}, "inputs.features"),
    (degradation.health_index, {"features": [[1.0, 2.0]], "healthy": [1.0]}, "inputs.healthy"),
    (
        degradation.health_index,
        {"features": [1.0, 2.0], "baseline_samples": 5},
        "inputs.baseline_samples",
    ),
    (degradation.health_index, {"features": [1.0, 1.0], "baseline_samples": 1}, "inputs.failed"),
    (degradation.health_index, {"features": [1.0, 2.0], "weights": -1.0}, "inputs.weights"),
    (degradation.fit, {"t": [0.0, 1.0], "y": [1.0, 2.0]}, "inputs.t"),  # too short
    (degradation.fit, {"t": [0.0, 1.0, 2.0], "y": [1.0, 2.0, 3.0, 4.0]}, "inputs.y"),
    (degradation.fit, {"t": [1.0, 1.0, 1.0], "y": [1.0, 2.0, 3.0]}, "inputs.t"),
    (
        degradation.fit,
        {"t": [0.0, 1.0, 2.0], "y": [1.0, -2.0, 3.0], "model": "exponential"},
        "inputs.y",
    ),
    (
        degradation.fit,
        {"t": [0.0, 1.0, 2.0], "y": [1.0, 2.0, 3.0], "confidence": 1.0},
        "inputs.confidence",
    ),
    (degradation.fit, {"t": {"value": [0.0, 1.0, 2.0]}, "y": [1.0, 2.0, 3.0]}, "inputs.t"),
    (
        degradation.rul,
        {"t": [0.0, 1.0, 2.0], "y": [1.0, 2.0, 3.0], "threshold": -1.0, "model": "exponential"},
        "inputs.threshold",
    ),
    (
        degradation.rul,
        {"t": [0.0, 1.0, 2.0], "y": [1.0, 2.0, 3.0], "threshold": 5.0, "direction": "up"},
        "inputs.direction",
    ),
    (degradation.rul, {"t": [0.0, 1.0, 2.0], "y": [1.0, 2.0, 3.0]}, "inputs.threshold"),
]


@pytest.mark.parametrize(
    ("comp", "inputs", "loc"), BAD, ids=[f"{b[2]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_input_names_the_input(comp: Any, inputs: dict[str, Any], loc: str) -> None:
    with pytest.raises(ComponentInputError) as exc:
        comp(**inputs)
    assert _loc(exc) == loc


def test_times_given_in_days_are_converted_to_seconds() -> None:
    r = degradation.rul(
        t={"value": [0.0, 1.0, 2.0, 3.0], "unit": "day"}, y=[0.0, 1.0, 2.0, 3.0], threshold=5.0
    )
    assert r["rul"] == pytest.approx(2 * 86400.0)
