"""Anomaly detection components against published examples."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from yugong.platform.components import ComponentInputError
from yugong.platform.components.library import anomaly

# Montgomery, Introduction to Statistical Quality Control, 6th ed., Table 9.1: 20 observations
# from N(10, 1), then 10 after the mean moved to 11. Used by Examples 9.1 (CUSUM) and 9.2 (EWMA).
TABLE_9_1 = [
    *(9.45, 7.99, 9.29, 11.66, 12.16, 10.18, 8.04, 11.46, 9.20, 10.34),
    *(9.03, 11.47, 10.51, 9.40, 10.08, 9.37, 10.62, 10.31, 8.52, 10.84),
    *(10.90, 9.33, 12.29, 11.50, 10.60, 11.08, 10.38, 11.62, 11.31, 10.52),
]
# Montgomery Table 9.2, column C+_i, periods 1 to 29 (two decimals as printed).
TABLE_9_2_C_PLUS = [
    *(0.0, 0.0, 0.0, 1.16, 2.82, 2.50, 0.04, 1.00, 0.0, 0.0, 0.0, 0.97, 0.98, 0.0, 0.0),
    *(0.0, 0.12, 0.0, 0.0, 0.34, 0.74, 0.0, 1.79, 2.79, 2.89, 3.47, 3.35, 4.47, 5.28),
]


def _loc(exc: pytest.ExceptionInfo[ComponentInputError]) -> str:
    return str(exc.value.errors[0].loc)


# --- robust z-score -----------------------------------------------------------------------


def test_robust_zscore_hand_derived() -> None:
    """Iglewicz & Hoaglin (1993) / NIST e-Handbook 1.3.5.17 formula, worked by hand.

    x = 2.1 2.6 2.4 2.5 2.3 2.1 2.3 2.6 8.2 8.3: sorted, the middle pair is 2.4, 2.5 so the
    median is 2.45; the absolute deviations sorted are 0.05 0.05 0.15 0.15 0.15 0.15 0.35 0.35
    5.75 5.85, so MAD = 0.15. z(8.2) = 0.6745·5.75/0.15 = 25.856, z(2.1) = 0.6745·(−0.35)/0.15
    = −1.5738; only 8.2 and 8.3 exceed 3.5.
    """
    x = [2.1, 2.6, 2.4, 2.5, 2.3, 2.1, 2.3, 2.6, 8.2, 8.3]
    r = anomaly.robust_zscore(x=x)
    assert r["median"] == pytest.approx(2.45)
    assert r["mad"] == pytest.approx(0.15)
    assert r["z"][8] == pytest.approx(0.6745 * 5.75 / 0.15)
    assert r["z"][0] == pytest.approx(-0.6745 * 0.35 / 0.15)
    assert r["outlier"].tolist() == [False] * 8 + [True, True]
    assert r["n_outliers"] == 2
    assert r["scale"] == "mad"


def test_robust_zscore_mad_zero_falls_back_to_mean_absolute_deviation() -> None:
    """IBM SPSS rule for MAD = 0: z = (x − median)/(1.253314·MeanAD), by hand.

    x = 1 1 1 1 5: median 1, MAD 0, MeanAD = 4/5 = 0.8, z(5) = 4/(1.253314·0.8) = 3.98942.
    """
    r = anomaly.robust_zscore(x=[1.0, 1.0, 1.0, 1.0, 5.0])
    assert r["scale"] == "meanad"
    assert r["z"].tolist() == pytest.approx([0, 0, 0, 0, 4 / (1.253314 * 0.8)])
    assert r["outlier"].tolist() == [False] * 4 + [True]
    constant = anomaly.robust_zscore(x=[3.0, 3.0, 3.0])
    assert constant["z"].tolist() == [0.0, 0.0, 0.0]
    assert constant["n_outliers"] == 0


def test_robust_zscore_batch_rows_are_independent() -> None:
    rows = [[2.1, 2.6, 2.4, 2.5, 2.3, 2.1, 2.3, 2.6, 8.2, 8.3], [1, 1, 1, 1, 5, 1, 1, 1, 1, 1]]
    r = anomaly.robust_zscore(x=rows, threshold=3.0)
    for i, row in enumerate(rows):
        one = anomaly.robust_zscore(x=row, threshold=3.0)
        assert r["z"][i].tolist() == pytest.approx(one["z"].tolist())
        assert r["median"][i] == pytest.approx(one["median"])
    assert r["scale"] == ["mad", "meanad"]
    assert r["n_outliers"].tolist() == [2, 1]


# --- EWMA ---------------------------------------------------------------------------------


def test_ewma_montgomery_example_9_2() -> None:
    """Montgomery 6th ed. Example 9.2: λ = 0.1, L = 2.7, μ0 = 10, σ = 1 on Table 9.1.

    Published: z1 = 9.945, z2 = 9.7495; UCL/LCL 10.27/9.73 at period 1 and 10.36/9.64 at
    period 2; steady-state limits 10.62/9.38. The first signal follows from the limits:
    z28 = 10.573 < UCL28 = 10.619 < z29 = 10.647 (derived here from the recursion, so the
    EWMA signals at 29, the period the book's CUSUM of Example 9.1 also signals).
    """
    r = anomaly.ewma(x=TABLE_9_1, mu0=10.0, sigma=1.0, lam=0.1, L=2.7)
    assert r["z"][:2].tolist() == pytest.approx([9.945, 9.7495], abs=5e-5)
    assert r["ucl"][:2].tolist() == pytest.approx([10.27, 10.36], abs=0.005)
    assert r["lcl"][:2].tolist() == pytest.approx([9.73, 9.64], abs=0.005)
    assert r["ucl"][-1] == pytest.approx(10.62, abs=0.005)
    assert r["lcl"][-1] == pytest.approx(9.38, abs=0.005)
    assert r["first_signal"] == 29
    assert not r["out_of_control"][:28].any()
    steady = anomaly.ewma(x=TABLE_9_1, mu0=10.0, sigma=1.0, lam=0.1, L=2.7, steady_state=True)
    assert steady["ucl"][0] == pytest.approx(10.62, abs=0.005)


def test_ewma_batch_and_lambda_one_is_shewhart() -> None:
    """λ = 1 makes z_i = x_i with limits μ0 ± Lσ (Montgomery 9.2.1: the Shewhart chart)."""
    x = np.array([TABLE_9_1, (np.array(TABLE_9_1) - 1.0).tolist()])
    r = anomaly.ewma(x=x, mu0=10.0, sigma=1.0, lam=1.0, L=3.0)
    assert np.allclose(r["z"], x)
    assert np.allclose(r["ucl"], 13.0) and np.allclose(r["lcl"], 7.0)
    # Table 9.1 stays within 7.99..12.29; shifted down by 1, 7.99 becomes 6.99 < 7 at period 2.
    assert r["first_signal"].tolist() == [0, 2]


# --- CUSUM --------------------------------------------------------------------------------


def test_cusum_montgomery_example_9_1() -> None:
    """Montgomery 6th ed. Example 9.1 / Table 9.2: k = 0.5, h = 5, μ0 = 10, σ = 1.

    Published: C+ for periods 1..29 (Table 9.2), C− = 0.05, 1.56, 1.77 for periods 1..3, the
    first signal at period 29 with C+ = 5.28 and N+ = 7, and the new mean
    μ̂ = 10 + 0.5 + 5.28/7 = 11.25.
    """
    r = anomaly.cusum(x=TABLE_9_1, mu0=10.0, sigma=1.0, k=0.5, h=5.0)
    assert np.round(r["c_plus"][:29], 2).tolist() == pytest.approx(TABLE_9_2_C_PLUS, abs=1e-9)
    assert r["c_minus"][:3].tolist() == pytest.approx([0.05, 1.56, 1.77], abs=1e-9)
    assert r["first_signal"] == 29
    assert r["n_plus"][28] == 7
    assert r["shifted_mean"] == pytest.approx(11.25, abs=0.005)


def test_cusum_vectorised_identity_matches_the_recursion() -> None:
    """C_i = S_i − min(0, S_1..S_i) equals max(0, C_{i−1} + d_i), checked against the loop."""
    rng = np.random.default_rng(7)
    x = rng.normal(0.0, 1.0, (3, 200))
    r = anomaly.cusum(x=x, mu0=0.0, sigma=1.0, k=0.5, h=4.0)
    for row, c_plus, c_minus in zip(x, r["c_plus"], r["c_minus"], strict=True):
        up, down, ups, downs = 0.0, 0.0, [], []
        for v in row:
            up, down = max(0.0, up + v - 0.5), max(0.0, down - 0.5 - v)
            ups.append(up)
            downs.append(down)
        assert c_plus.tolist() == pytest.approx(ups, abs=1e-9)
        assert c_minus.tolist() == pytest.approx(downs, abs=1e-9)


def test_cusum_downward_shift_and_no_signal() -> None:
    """Mirror of Example 9.1: 20 − x shifts the mean down, so C− reproduces Table 9.2's C+."""
    mirrored = 20.0 - np.array(TABLE_9_1)
    r = anomaly.cusum(x=[mirrored, np.full(30, 10.0)], mu0=10.0, sigma=1.0)
    assert np.round(r["c_minus"][0][:29], 2).tolist() == pytest.approx(TABLE_9_2_C_PLUS)
    assert r["first_signal"].tolist() == [29, 0]
    assert r["shifted_mean"][0] == pytest.approx(20 - 11.25, abs=0.005)
    assert r["shifted_mean"][1] is None


# --- isolation forest ---------------------------------------------------------------------


def _planted() -> np.ndarray:
    rng = np.random.default_rng(42)
    x = rng.normal(0.0, 1.0, (300, 3))
    x[[10, 150, 280]] = [[8.0, 8.0, 8.0], [-9.0, 7.0, 0.0], [0.0, -8.0, 9.0]]
    return x


def test_isolation_forest_planted_outliers_score_highest() -> None:
    """Behavioural test (no published numbers apply to a random forest): three points planted
    far from a seeded normal cloud get the three highest scores, above the 0.5 line of Liu,
    Ting & Zhou (2008), while the cloud's median score stays below it."""
    r = anomaly.isolation_forest(x=_planted(), random_state=3)
    top = set(np.argsort(-r["score"])[:3].tolist())
    assert top == {10, 150, 280}
    assert (r["score"][[10, 150, 280]] > 0.5).all()
    assert np.median(r["score"]) < 0.5
    assert r["threshold"] == pytest.approx(0.5)
    assert r["anomaly"][[10, 150, 280]].all()


def test_isolation_forest_reproducible_and_contamination() -> None:
    x = _planted()
    a = anomaly.isolation_forest(x=x, random_state=5, contamination=0.01)
    b = anomaly.isolation_forest(x=x, random_state=5, contamination=0.01)
    assert np.array_equal(a["score"], b["score"])
    assert int(a["anomaly"].sum()) == 3  # 1 % of 300
    one_feature = anomaly.isolation_forest(x=np.r_[np.linspace(0, 1, 50), 30.0], random_state=0)
    assert int(np.argmax(one_feature["score"])) == 50


# --- seasonal baseline --------------------------------------------------------------------

DAY = 86400.0
HOUR = 3600.0


def _daily_history(start: float, days: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Hourly samples of 10 + hour-of-day, plus day d adding (d − 2)·0.5 for d = 0..4.

    Analytic answer per hour slot h: the five values are 10 + h + {−1, −0.5, 0, 0.5, 1}, so
    the median is 10 + h and MAD = 0.5 (deviations 1, 0.5, 0, 0.5, 1); σ̂ = 1.4826·0.5.
    """
    d, h = np.divmod(np.arange(days * 24), 24)
    return start + d * DAY + h * HOUR, 10.0 + h + (d - 2) * 0.5


def test_seasonal_baseline_analytic_daily_pattern() -> None:
    """Synthetic daily pattern with an analytic median and MAD per hour (hand-derived)."""
    t, y = _daily_history(start=1_700_006_400.0)  # 2023-11-15 00:00 UTC
    t_eval = np.array([1_700_006_400.0 + 10 * DAY + 7 * HOUR, 1_700_006_400.0 + 11 * DAY])
    r = anomaly.seasonal_baseline(t=t, y=y, t_eval=t_eval, y_eval=[17.5, 20.0], k=3.0)
    assert r["slot"].tolist() == [7, 0]
    assert r["baseline"].tolist() == pytest.approx([17.0, 10.0])
    half = 3.0 * 1.4826 * 0.5
    assert r["upper"].tolist() == pytest.approx([17.0 + half, 10.0 + half])
    assert r["anomaly"].tolist() == [False, True]
    assert r["slot_baseline"] == pytest.approx([10.0 + h for h in range(24)])
    assert r["slot_count"].tolist() == [5] * 24


def test_seasonal_baseline_mean_statistic() -> None:
    """Mean of 10 + h + {−1, −0.5, 0, 0.5, 1} is 10 + h; sample std = √(2.5/4) = 0.7906."""
    t, y = _daily_history(start=0.0)
    r = anomaly.seasonal_baseline(t=t, y=y, statistic="mean", k=2.0)
    assert r["slot_baseline"] == pytest.approx([10.0 + h for h in range(24)])
    assert r["slot_spread"] == pytest.approx([np.sqrt(2.5 / 4)] * 24)
    assert not r["anomaly"].any()


def test_seasonal_baseline_time_zone_and_daylight_saving() -> None:
    """Slots follow the local clock: Shanghai is UTC+8 all year; Berlin moves at DST."""
    t = np.array([0.0, 16 * HOUR])  # 1970-01-01 00:00 and 16:00 UTC
    r = anomaly.seasonal_baseline(t=t, y=[1.0, 2.0], timezone="Asia/Shanghai")
    assert r["slot"].tolist() == [8, 0]
    # 2024-03-31 00:30 UTC is 01:30 CET; 01:30 UTC is 03:30 CEST (clocks went 02:00 → 03:00).
    before, after = 1_711_845_000.0, 1_711_848_600.0
    r = anomaly.seasonal_baseline(t=[before, after], y=[1.0, 1.0], timezone="Europe/Berlin")
    assert r["slot"].tolist() == [1, 3]


def test_seasonal_baseline_weekly_slots_start_monday() -> None:
    """period = 1 week, 1-day slots: 2024-01-01 was a Monday (slot 0), 2024-01-07 a Sunday."""
    monday, sunday = 1_704_067_200.0, 1_704_067_200.0 + 6 * DAY + 12 * HOUR
    r = anomaly.seasonal_baseline(t=[monday, sunday], y=[1.0, 2.0], period=7 * DAY, slot=DAY)
    assert r["slot"].tolist() == [0, 6]


# --- bad input ----------------------------------------------------------------------------

BAD: list[tuple[Any, dict[str, Any], str]] = [
    (anomaly.robust_zscore, {"x": [[[1.0, 2.0, 3.0]]]}, "inputs.x"),  # 3-D
    (anomaly.robust_zscore, {"x": [1.0, 2.0]}, "inputs.x"),  # too short
    (anomaly.robust_zscore, {"x": {"value": [1.0, 2.0, 3.0]}}, "inputs.x"),  # no unit
    (anomaly.robust_zscore, {"x": [1.0, 2.0, 3.0], "threshold": 0.0}, "inputs.threshold"),
    (anomaly.ewma, {"x": [1.0, 2.0], "mu0": 0.0, "sigma": 0.0}, "inputs.sigma"),
    (anomaly.ewma, {"x": [1.0], "mu0": 0.0, "sigma": 1.0, "lam": 1.5}, "inputs.lam"),
    (anomaly.ewma, {"x": [1.0], "mu0": {"value": 1.0}, "sigma": 1.0}, "inputs.mu0"),
    (anomaly.cusum, {"x": [1.0, float("nan")], "mu0": 0.0, "sigma": 1.0}, "inputs.x"),
    (anomaly.cusum, {"x": [1.0], "mu0": 0.0, "sigma": 1.0, "h": -1.0}, "inputs.h"),
    (anomaly.isolation_forest, {"x": [1.0]}, "inputs.x"),
    (anomaly.isolation_forest, {"x": [1.0, 2.0, 3.0], "max_samples": 10}, "inputs.max_samples"),
    (anomaly.isolation_forest, {"x": [1.0, 2.0], "contamination": 0.9}, "inputs.contamination"),
    (anomaly.seasonal_baseline, {"t": [0.0, 1.0], "y": [1.0]}, "inputs.y"),
    (anomaly.seasonal_baseline, {"t": [0.0], "y": [1.0], "slot": 7000.0}, "inputs.slot"),
    (
        anomaly.seasonal_baseline,
        {"t": [0.0], "y": [1.0], "timezone": "Mars/Base"},
        "inputs.timezone",
    ),
    (
        anomaly.seasonal_baseline,
        {"t": [0.0], "y": [1.0], "t_eval": [HOUR], "y_eval": [1.0]},
        "inputs.t_eval",
    ),  # slot 1 has no history
    (anomaly.seasonal_baseline, {"t": [0.0], "y": [1.0], "t_eval": [0.0]}, "inputs.y_eval"),
    (anomaly.seasonal_baseline, {"t": {"value": [0.0]}, "y": [1.0]}, "inputs.t"),
]


@pytest.mark.parametrize(
    ("comp", "inputs", "loc"), BAD, ids=[b[2] + f"-{i}" for i, b in enumerate(BAD)]
)
def test_bad_input_names_the_input(comp: Any, inputs: dict[str, Any], loc: str) -> None:
    with pytest.raises(ComponentInputError) as exc:
        comp(**inputs)
    assert _loc(exc) == loc


def test_time_given_in_hours_is_converted() -> None:
    r = anomaly.seasonal_baseline(t={"value": [1.0], "unit": "h"}, y=[1.0])
    assert r["slot"].tolist() == [1]
