"""SPC components checked against published values.

Sources:
- Montgomery, D.C., Introduction to Statistical Quality Control, 7th ed. (Wiley 2013):
  Appendix Table VI (factors for variables control charts); Example 6.1 with Table 6.3
  (25 subgroups of 5 piston-ring inside diameters, mm): x̿ = 74.001, R̄ = 0.023,
  X̄ chart 73.988..74.014, R chart UCL 0.049, the process in control; continuing the
  example, its capability against specs 74.000 ± 0.05 mm: σ̂ = R̄/d2 = 0.0099, Cp = 1.68;
  Example 6.3 (X̄ and s charts on the same data): s̄ = 0.0094, X̄ chart 73.988..74.014,
  s chart UCL 0.0196, LCL 0;
  Example 6.5 (20 weekly mortgage-loan processing costs): x̄ = 300.5, MR̄ = 7.79,
  individuals chart 279.78..321.22, MR chart UCL 25.45.
- NIST/SEMATECH e-Handbook of Statistical Methods: 6.3.2.2 individuals chart example
  (10 batches: x̄ = 50.81, MR̄ = 1.8778, UCL 55.8041, LCL 45.8159, MR UCL 3.267 x 1.8778);
  6.1.6 capability example (USL 20, LSL 8, μ 16, σ 2: Cp = 1.00, Cpk = 0.6667,
  Cpu = 0.6667, Cpl = 1.3333).
- Western Electric Co., Statistical Quality Control Handbook (1956), tests for unnatural
  patterns; Montgomery 7th ed. ch. 5 (sensitizing rules).
- Nelson, L.S. (1984) The Shewhart Control Chart - Tests for Special Causes, Journal of
  Quality Technology 16(4):237-239.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from scipy import special, stats

from yugong.platform.components import ComponentInputError
from yugong.platform.components.library import spc


def _loc(exc: pytest.ExceptionInfo[ComponentInputError]) -> str:
    return exc.value.errors[0].loc


# Montgomery 7th ed., Table 6.3: inside diameter (mm) of forged piston rings, 25 samples of 5.
PISTON_RINGS = np.array([
    [74.030, 74.002, 74.019, 73.992, 74.008],
    [73.995, 73.992, 74.001, 74.011, 74.004],
    [73.988, 74.024, 74.021, 74.005, 74.002],
    [74.002, 73.996, 73.993, 74.015, 74.009],
    [73.992, 74.007, 74.015, 73.989, 74.014],
    [74.009, 73.994, 73.997, 73.985, 73.993],
    [73.995, 74.006, 73.994, 74.000, 74.005],
    [73.985, 74.003, 73.993, 74.015, 73.988],
    [74.008, 73.995, 74.009, 74.005, 74.004],
    [73.998, 74.000, 73.990, 74.007, 73.995],
    [73.994, 73.998, 73.994, 73.995, 73.990],
    [74.004, 74.000, 74.007, 74.000, 73.996],
    [73.983, 74.002, 73.998, 73.997, 74.012],
    [74.006, 73.967, 73.994, 74.000, 73.984],
    [74.012, 74.014, 73.998, 73.999, 74.007],
    [74.000, 73.984, 74.005, 73.998, 73.996],
    [73.994, 74.012, 73.986, 74.005, 74.007],
    [74.006, 74.010, 74.018, 74.003, 74.000],
    [73.984, 74.002, 74.003, 74.005, 73.997],
    [74.000, 74.010, 74.013, 74.020, 74.003],
    [73.982, 74.001, 74.015, 74.005, 73.996],
    [74.004, 73.999, 73.990, 74.006, 74.009],
    [74.010, 73.989, 73.990, 74.009, 74.014],
    [74.015, 74.008, 73.993, 74.000, 74.010],
    [73.982, 73.984, 73.995, 74.017, 74.013],
])  # fmt: skip
# Table 6.3's x̄ᵢ and Rᵢ columns (Σx̄ᵢ = 1850.028, ΣRᵢ = 0.581) and Table 6.4's sᵢ column
# (Σsᵢ = 0.2351), as printed.
PISTON_MEANS = [
    74.010, 74.001, 74.008, 74.003, 74.003, 73.996, 74.000, 73.997, 74.004, 73.998, 73.994,
    74.001, 73.998, 73.990, 74.006, 73.997, 74.001, 74.007, 73.998, 74.009, 74.000, 74.002,
    74.002, 74.005, 73.998,
]  # fmt: skip
PISTON_RANGES = [
    0.038, 0.019, 0.036, 0.022, 0.026, 0.024, 0.012, 0.030, 0.014, 0.017, 0.008, 0.011,
    0.029, 0.039, 0.016, 0.021, 0.026, 0.018, 0.021, 0.020, 0.033, 0.019, 0.025, 0.022,
    0.035,
]  # fmt: skip
PISTON_STDEVS = [
    0.0148, 0.0075, 0.0147, 0.0091, 0.0122, 0.0087, 0.0055, 0.0123, 0.0055, 0.0063, 0.0029,
    0.0042, 0.0105, 0.0153, 0.0073, 0.0078, 0.0106, 0.0070, 0.0085, 0.0080, 0.0122, 0.0074,
    0.0119, 0.0087, 0.0162,
]  # fmt: skip

# Montgomery 7th ed., Example 6.5: weekly cost of processing mortgage loan applications.
LOAN_COSTS = np.array([
    310, 288, 297, 298, 307, 303, 294, 297, 308, 306,
    294, 299, 297, 299, 314, 295, 293, 306, 301, 304,
], dtype=float)  # fmt: skip

# NIST/SEMATECH e-Handbook 6.3.2.2: individuals chart example, 10 batches.
NIST_INDIVIDUALS = np.array([49.6, 47.6, 49.9, 51.3, 47.8, 51.2, 52.6, 52.4, 53.6, 52.1])


# Control chart constants ------------------------------------------------------------------

# (symbol, n, value printed in Montgomery 7th ed. Appendix Table VI)
PUBLISHED_FACTORS = [
    ("A2", 2, 1.880),
    ("A2", 5, 0.577),
    ("A2", 25, 0.153),
    ("A3", 5, 1.427),
    ("A3", 10, 0.975),
    ("c4", 2, 0.7979),
    ("c4", 5, 0.9400),
    ("c4", 25, 0.9896),
    ("B3", 5, 0.0),
    ("B3", 6, 0.030),
    ("B4", 5, 2.089),
    ("B4", 6, 1.970),
    ("d2", 2, 1.128),
    ("d2", 5, 2.326),
    ("d2", 10, 3.078),
    ("d2", 25, 3.931),
    ("d3", 2, 0.853),
    ("d3", 5, 0.864),
    ("D3", 6, 0.0),
    ("D3", 7, 0.076),
    ("D4", 2, 3.267),
    ("D4", 5, 2.114),
    ("D4", 7, 1.924),
]


@pytest.mark.parametrize(("symbol", "n", "value"), PUBLISHED_FACTORS, ids=lambda p: str(p))
def test_constants_match_montgomery_table_vi(symbol: str, n: int, value: float) -> None:
    assert spc.control_constant(symbol, n) == value


def test_e2_is_2_66_for_moving_ranges_of_two() -> None:
    # Montgomery 7th ed. individuals chart (Example 6.5): limits x̄ ± 3·MR̄/d2 = x̄ ± 2.66·MR̄.
    assert spc.control_constant("E2", 2) == pytest.approx(2.66, abs=5e-3)
    assert spc.control_constant("E2", 2) == 3 / 1.128


def _exact_factors() -> dict[str, np.ndarray]:
    """The factors from their defining formulas (normal theory), independent of the table.

    c4 = sqrt(2/(n-1)) Γ(n/2)/Γ((n-1)/2); d2 = E[R]/σ = ∫ 1 - Φⁿ - (1-Φ)ⁿ dx;
    E[R²]/σ² = 2 ∬_{x<y} 1 - Φ(y)ⁿ - (1-Φ(x))ⁿ + (Φ(y)-Φ(x))ⁿ dx dy, d3² = E[R²] - d2².
    """
    n = spc.SUBGROUP_SIZES.astype(float)
    c4 = np.sqrt(2 / (n - 1)) * np.exp(special.gammaln(n / 2) - special.gammaln((n - 1) / 2))
    grid = np.linspace(-9.0, 9.0, 1801)
    h = grid[1] - grid[0]
    cdf = stats.norm.cdf(grid)
    d2 = np.array([np.trapezoid(1 - cdf**k - (1 - cdf) ** k, dx=h) for k in n])
    fx, fy = cdf[:, None], cdf[None, :]
    # x < y, the diagonal at half weight (the trapezoid rule over the triangle)
    upper = np.triu(np.ones((grid.size, grid.size)), 1) + 0.5 * np.eye(grid.size)
    er2 = np.array(
        [2 * h * h * np.sum(upper * (1 - fy**k - (1 - fx) ** k + (fy - fx) ** k)) for k in n]
    )
    d3 = np.sqrt(er2 - d2**2)
    k3 = 3 * np.sqrt(1 - c4**2) / c4
    return {
        "A2": 3 / (d2 * np.sqrt(n)),
        "A3": 3 / (c4 * np.sqrt(n)),
        "c4": c4,
        "B3": np.maximum(0, 1 - k3),
        "B4": 1 + k3,
        "d2": d2,
        "d3": d3,
        "D3": np.maximum(0, 1 - 3 * d3 / d2),
        "D4": 1 + 3 * d3 / d2,
    }


def test_whole_table_agrees_with_the_defining_formulas() -> None:
    # Catches a mistyped entry anywhere in the table. The printed factors are rounded to three
    # decimals (c4 to four), and a few were computed from rounded d2 and d3 (e.g. D4 = 2.574 at
    # n = 3 where the exact value is 2.5746), so they agree to about 1e-3 (c4 to 1e-4).
    exact = _exact_factors()
    assert exact["d2"][0] == pytest.approx(2 / np.sqrt(np.pi), abs=1e-6)  # d2(2) = 2/√π
    for symbol, values in exact.items():
        tol = 1e-4 if symbol == "c4" else 1e-3
        np.testing.assert_allclose(spc.CONSTANTS[symbol], values, atol=tol, err_msg=symbol)
    assert spc.CONSTANTS["d2"].shape == spc.SUBGROUP_SIZES.shape == (24,)


def test_constants_are_read_only_and_bounded() -> None:
    with pytest.raises(ValueError):
        spc.CONSTANTS["A2"][0] = 0.0
    with pytest.raises(ValueError):
        spc.control_constant("A2", 26)
    with pytest.raises(KeyError):
        spc.control_constant("Z9", 5)


# X̄-R ------------------------------------------------------------------------------------


def test_xbar_r_montgomery_example_6_1() -> None:
    out = spc.xbar_r(subgroups=PISTON_RINGS)
    # The table's columns, printed to 0.001 mm.
    np.testing.assert_allclose(out["means"], PISTON_MEANS, atol=6e-4)
    np.testing.assert_allclose(out["ranges"], PISTON_RANGES, atol=1e-9)
    assert np.round(out["means"], 3).sum() == pytest.approx(1850.028, abs=1e-9)
    assert out["ranges"].sum() == pytest.approx(0.581, abs=1e-9)
    # Published to 0.001 mm, computed in the book from the rounded R̄ = 0.023.
    assert out["xbar_center"] == pytest.approx(74.001, abs=5e-4)
    assert out["r_center"] == pytest.approx(0.023, abs=5e-4)
    assert out["xbar_ucl"] == pytest.approx(74.014, abs=1e-3)
    assert out["xbar_lcl"] == pytest.approx(73.988, abs=1e-3)
    assert out["r_ucl"] == pytest.approx(0.049, abs=5e-4)
    assert out["r_lcl"] == 0.0  # D3 = 0 for n = 5
    # "there is no indication of an out-of-control condition" on either chart
    assert out["xbar_out_of_control"] == []
    assert out["r_out_of_control"] == []
    # The exact relations with the table's n = 5 factors.
    assert out["xbar_ucl"] == pytest.approx(out["xbar_center"] + 0.577 * out["r_center"])
    assert out["r_ucl"] == pytest.approx(2.114 * out["r_center"])
    assert out["sigma"] == pytest.approx(out["r_center"] / 2.326)


def test_xbar_r_flags_subgroups_beyond_the_limits() -> None:
    # Hand derivation, n = 2 (A2 = 1.880, D4 = 3.267):
    # nine subgroups (0, 1) and one (10, 11): x̿ = (9·0.5 + 10.5)/10 = 1.5, R̄ = 1,
    # UCL = 1.5 + 1.88 = 3.38 -> subgroup 9 (mean 10.5) is above; every range 1 < 3.267.
    out = spc.xbar_r(subgroups=[[0.0, 1.0]] * 9 + [[10.0, 11.0]])
    assert out["xbar_ucl"] == pytest.approx(3.38)
    assert out["xbar_out_of_control"] == [9]
    assert out["r_out_of_control"] == []
    # Nine (0, 1) and one (0, 5): R̄ = 1.4, R UCL = 3.267·1.4 = 4.5738 < 5 -> subgroup 9;
    # x̿ = 0.7, X̄ UCL = 0.7 + 1.88·1.4 = 3.332 > 2.5, so the means are in control.
    out = spc.xbar_r(subgroups=[[0.0, 1.0]] * 9 + [[0.0, 5.0]])
    assert out["r_ucl"] == pytest.approx(4.5738)
    assert out["r_out_of_control"] == [9]
    assert out["xbar_out_of_control"] == []


# X̄-S ------------------------------------------------------------------------------------


def test_xbar_s_montgomery_example_6_3() -> None:
    out = spc.xbar_s(subgroups=PISTON_RINGS)
    np.testing.assert_allclose(out["stdevs"], PISTON_STDEVS, atol=5e-5)  # printed to 1e-4
    assert np.round(out["stdevs"], 4).sum() == pytest.approx(0.2351, abs=1e-9)
    assert out["s_center"] == pytest.approx(0.0094, abs=5e-5)
    assert out["xbar_center"] == pytest.approx(74.001, abs=5e-4)
    # 74.001 ± 1.427(0.0094), published to 0.001 mm; s chart B4·s̄ = 2.089(0.0094) = 0.0196.
    assert out["xbar_ucl"] == pytest.approx(74.014, abs=1e-3)
    assert out["xbar_lcl"] == pytest.approx(73.988, abs=1e-3)
    assert out["s_ucl"] == pytest.approx(0.0196, abs=5e-5)
    assert out["s_lcl"] == 0.0  # B3 = 0 for n = 5
    # σ̂ = s̄/c4 = 0.0094/0.9400 = 0.01
    assert out["sigma"] == pytest.approx(0.01, abs=5e-5)
    assert out["xbar_out_of_control"] == []
    assert out["s_out_of_control"] == []


def test_xbar_s_flags_a_wide_subgroup() -> None:
    # Hand derivation, n = 2: s of (a, b) is |a - b|/√2. Nine (0, 1) and one (0, 5):
    # s̄ = (9 + 5)/(10√2) = 0.98995, S UCL = B4·s̄ = 3.267·0.98995 = 3.2342 < 5/√2 = 3.5355.
    out = spc.xbar_s(subgroups=[[0.0, 1.0]] * 9 + [[0.0, 5.0]])
    assert out["s_center"] == pytest.approx(1.4 / np.sqrt(2))
    assert out["s_ucl"] == pytest.approx(3.267 * 1.4 / np.sqrt(2))
    assert out["s_out_of_control"] == [9]


# I-MR -------------------------------------------------------------------------------------


def test_i_mr_montgomery_example_6_5() -> None:
    out = spc.i_mr(values=LOAN_COSTS)
    assert out["moving_ranges"].shape == (19,)
    assert out["x_center"] == pytest.approx(300.5, abs=5e-3)
    assert out["mr_center"] == pytest.approx(7.79, abs=5e-3)
    # Published to two decimals.
    assert out["x_ucl"] == pytest.approx(321.22, abs=5e-3)
    assert out["x_lcl"] == pytest.approx(279.78, abs=5e-3)
    assert out["mr_ucl"] == pytest.approx(25.45, abs=5e-3)
    assert out["mr_lcl"] == 0.0
    assert out["x_out_of_control"] == []
    assert out["mr_out_of_control"] == []


def test_i_mr_nist_handbook_6_3_2_2() -> None:
    out = spc.i_mr(values=NIST_INDIVIDUALS)
    np.testing.assert_allclose(
        out["moving_ranges"], [2.0, 2.3, 1.4, 3.5, 3.4, 1.4, 0.2, 1.2, 1.5], atol=1e-12
    )
    assert out["x_center"] == pytest.approx(50.81, abs=1e-9)
    assert out["mr_center"] == pytest.approx(1.8778, abs=5e-5)
    assert out["x_ucl"] == pytest.approx(55.8041, abs=5e-5)
    assert out["x_lcl"] == pytest.approx(45.8159, abs=5e-5)
    assert out["mr_ucl"] == pytest.approx(3.267 * 1.8778, abs=1e-3)


def test_i_mr_flags_a_jump() -> None:
    # Hand derivation: 0, 1, 0, 1, ... (20 values) then 10. x̄ = 20/21 = 0.95238;
    # moving ranges nineteen 1s and one 9: MR̄ = 28/20 = 1.4.
    # UCL = 0.95238 + (3/1.128)·1.4 = 4.6757 < 10; MR UCL = 3.267·1.4 = 4.5738 < 9.
    out = spc.i_mr(values=[0.0, 1.0] * 10 + [10.0])
    assert out["x_ucl"] == pytest.approx(20 / 21 + 3 / 1.128 * 1.4)
    assert out["x_out_of_control"] == [20]
    assert out["mr_out_of_control"] == [20]  # the later point of the range |10 - 1|


# Capability -------------------------------------------------------------------------------


def test_capability_montgomery_piston_rings() -> None:
    # Example 6.1 continued: specs 74.000 ± 0.05 mm, σ̂ = R̄/d2 = 0.023/2.326 = 0.0099,
    # Cp = 0.10/(6·0.0099) = 1.68. The book rounds R̄ to 0.023 (exact 0.02324) and σ̂ to
    # 0.0099 (exact 0.00999), so Cp agrees to about 0.02.
    out = spc.capability(samples=PISTON_RINGS.ravel(), lsl=73.95, usl=74.05, subgroup_size=5)
    assert out["sigma_within"] == pytest.approx(0.0099, abs=1e-4)
    assert out["sigma_within"] == pytest.approx(np.ptp(PISTON_RINGS, axis=1).mean() / 2.326)
    assert out["cp"] == pytest.approx(1.68, abs=0.02)
    assert isinstance(out["cp"], float)
    # Overall σ is the sample standard deviation of all 125 rings.
    assert out["sigma_overall"] == pytest.approx(PISTON_RINGS.std(ddof=1))


def _alternating(mean: float, half_step: float, n: int = 1000) -> np.ndarray:
    return mean + half_step * (-1.0) ** np.arange(n)


def _with_mean_and_std(mean: float, std: float, n: int = 1000, seed: int = 1) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=n)
    return mean + std * (v - v.mean()) / v.std(ddof=1)


def test_capability_nist_6_1_6_within_sigma_from_moving_ranges() -> None:
    # NIST 6.1.6: USL 20, LSL 8, μ 16, σ 2 -> Cp = 12/12 = 1.00, Cpk = min(4/6, 8/6) = 0.6667.
    # Alternating 16 ± 1.128 has every moving range 2.256, so σ within = 2.256/1.128 = 2.
    out = spc.capability(samples=_alternating(16.0, 1.128), lsl=8.0, usl=20.0)
    assert out["mean"] == pytest.approx(16.0)
    assert out["sigma_within"] == pytest.approx(2.0)
    assert out["cp"] == pytest.approx(1.00, abs=5e-5)
    assert out["cpk"] == pytest.approx(0.6667, abs=5e-5)
    assert out["cpu"] == pytest.approx(0.6667, abs=5e-5)
    assert out["cpl"] == pytest.approx(1.3333, abs=5e-5)


def test_capability_nist_6_1_6_overall_sigma() -> None:
    # The same example with σ as the overall sample standard deviation: a series rescaled to
    # mean 16 and standard deviation 2 exactly gives Pp = 1.00, Ppk = 0.6667.
    out = spc.capability(samples=_with_mean_and_std(16.0, 2.0), lsl=8.0, usl=20.0)
    assert out["sigma_overall"] == pytest.approx(2.0)
    assert out["pp"] == pytest.approx(1.00, abs=5e-5)
    assert out["ppk"] == pytest.approx(0.6667, abs=5e-5)
    assert out["ppu"] == pytest.approx(0.6667, abs=5e-5)
    assert out["ppl"] == pytest.approx(1.3333, abs=5e-5)


def test_capability_one_sided() -> None:
    # NIST 6.1.6 with one limit at a time: Cpk is the one-sided index; Cp is undefined.
    upper = spc.capability(samples=_alternating(16.0, 1.128), usl=20.0)
    assert upper["cp"] is None and upper["pp"] is None
    assert upper["cpl"] is None and upper["ppl"] is None
    assert upper["cpk"] == upper["cpu"] == pytest.approx(0.6667, abs=5e-5)
    lower = spc.capability(samples=_alternating(16.0, 1.128), lsl=8.0)
    assert lower["cp"] is None and lower["cpu"] is None
    assert lower["cpk"] == lower["cpl"] == pytest.approx(1.3333, abs=5e-5)


def test_capability_batch_equals_per_row() -> None:
    rng = np.random.default_rng(7)
    rows = np.vstack([
        _alternating(16.0, 1.128, 500),
        _with_mean_and_std(16.0, 2.0, 500),
        rng.normal(15.0, 1.5, 500),
        rng.normal(12.0, 0.8, 500) + np.linspace(0, 2, 500),  # drifting: overall > within
    ])  # fmt: skip
    for kwargs in (
        {"lsl": 8.0, "usl": 20.0},
        {"usl": 20.0},
        {"lsl": 8.0, "usl": 20.0, "subgroup_size": 5},
    ):
        batch = spc.capability(samples=rows, **kwargs)
        for i, row in enumerate(rows):
            single = spc.capability(samples=row, **kwargs)
            for name, value in single.items():
                if value is None:
                    assert batch[name] is None
                else:
                    assert batch[name].shape == (4,)
                    assert batch[name][i] == pytest.approx(value, rel=1e-12), name


def test_capability_batch_10000_by_1000() -> None:
    # Its speed is measured by benchmarks/components.py; here, the batch's answers.
    samples = np.random.default_rng(3).normal(10.0, 1.0, size=(10_000, 1_000))
    for subgroup_size in (1, 5):
        out = spc.capability(samples=samples, lsl=6.0, usl=14.0, subgroup_size=subgroup_size)
        assert out["cpk"].shape == (10_000,)
        # Normal data, σ = 1, specs ±4σ: every Cp near 8/6.
        assert np.median(out["cp"]) == pytest.approx(4 / 3, rel=0.02)


# Run rules --------------------------------------------------------------------------------

# A background that breaks no rule: points in zone C with one beyond 1σ every sixth point
# (no 15 in zone C), sides + - - + - - (no runs), and two rises in a row each period (no
# alternation of 14, no trend of 6).
BASE = np.tile([0.5, -0.5, -0.2, 1.5, -0.5, -0.2], 5)  # 30 points, centre 0, σ 1


def _series(changes: dict[int, float]) -> np.ndarray:
    x = BASE.copy()
    for i, v in changes.items():
        x[i] = v
    return x


def _only(rules: dict[str, Any], names: tuple[str, ...], fired: dict[str, list[int]]) -> None:
    got = {name: rules[name] for name in names}
    assert got == {name: fired.get(name, []) for name in names}


WE = ("rule_1", "rule_2", "rule_3", "rule_4")
NELSON = tuple(f"rule_{i}" for i in range(1, 9))

# Each pattern (values changed in BASE) and the rule it completes at one index.
ONE_BEYOND_3 = {12: 3.5}
TWO_OF_THREE_BEYOND_2 = {12: 2.5, 14: 2.5}  # 12, 14 above 2σ; 13 is not
FOUR_OF_FIVE_BEYOND_1 = {12: 1.5, 13: 1.2, 14: 0.3, 16: 1.3}  # 12, 13, 15, 16 above 1σ
EIGHT_ONE_SIDE = dict(zip(range(12, 20), [0.5, 0.2, 0.4, 1.5, 0.3, 0.6, 0.2, 0.4], strict=True))
NINE_ONE_SIDE = {11: 0.3, **EIGHT_ONE_SIDE}  # 10 and 20 are below the centre line
SIX_RISING = dict(zip(range(12, 18), [-0.6, -0.4, -0.1, 0.2, 0.5, 0.8], strict=True))
# 6 ties with 5 (so the alternation starts there) and 20 ties with 19 (so it stops).
FOURTEEN_ALTERNATING = {
    **dict(zip(range(6, 20), [-0.2, 0.5, -0.5, 0.6, -0.4, 1.5, -0.5, 0.5, -0.6, 0.4, -0.5, 1.5,
                              -0.3, 0.5], strict=True)),
    20: 0.5,
}  # fmt: skip
FIFTEEN_IN_ZONE_C = {9: 0.4, 15: 0.4, 19: -1.5}  # points 4..18 within 1σ; 3 and 19 beyond
EIGHT_BEYOND_1 = dict(zip(range(12, 20), [1.5, -1.5, 1.2, -1.2, 1.5, -1.5, 1.3, -1.3], strict=True))


def test_background_breaks_no_rule() -> None:
    assert spc.western_electric(values=BASE, center=0.0, sigma=1.0)["violations"] == []
    assert spc.nelson(values=BASE, center=0.0, sigma=1.0)["violations"] == []


@pytest.mark.parametrize(
    ("changes", "fired"),
    [
        # WE 1: "A single point falls outside of the 3-sigma limit."
        pytest.param(ONE_BEYOND_3, {"rule_1": [12]}, id="we1-one-beyond-3-sigma"),
        # WE 2: "Two out of three successive points fall in Zone A or beyond" (one side).
        pytest.param(TWO_OF_THREE_BEYOND_2, {"rule_2": [14]}, id="we2-two-of-three-beyond-2"),
        # WE 3: "Four out of five successive points fall in Zone B or beyond" (one side).
        pytest.param(FOUR_OF_FIVE_BEYOND_1, {"rule_3": [16]}, id="we3-four-of-five-beyond-1"),
        # WE 4: "Eight successive points fall in Zone C or beyond" (one side).
        pytest.param(EIGHT_ONE_SIDE, {"rule_4": [19]}, id="we4-eight-on-one-side"),
    ],
)
def test_western_electric_rules(changes: dict[int, float], fired: dict[str, list[int]]) -> None:
    out = spc.western_electric(values=_series(changes), center=0.0, sigma=1.0)
    _only(out, WE, fired)
    assert out["violations"] == sorted({i for v in fired.values() for i in v})


@pytest.mark.parametrize(
    ("changes", "fired"),
    [
        # Nelson (1984), the eight tests, zones A/B/C as 2-3σ, 1-2σ, 0-1σ:
        # 1 "One point beyond Zone A"
        pytest.param(ONE_BEYOND_3, {"rule_1": [12]}, id="n1-one-beyond-zone-a"),
        # 2 "Nine points in a row in Zone C or beyond" (on one side of the centreline)
        pytest.param(NINE_ONE_SIDE, {"rule_2": [19]}, id="n2-nine-on-one-side"),
        # 3 "Six points in a row steadily increasing or decreasing"
        pytest.param(SIX_RISING, {"rule_3": [17]}, id="n3-six-increasing"),
        # 4 "Fourteen points in a row alternating up and down"
        pytest.param(FOURTEEN_ALTERNATING, {"rule_4": [19]}, id="n4-fourteen-alternating"),
        # 5 "Two out of three points in a row in Zone A or beyond"
        pytest.param(TWO_OF_THREE_BEYOND_2, {"rule_5": [14]}, id="n5-two-of-three-zone-a"),
        # 6 "Four out of five points in a row in Zone B or beyond"
        pytest.param(FOUR_OF_FIVE_BEYOND_1, {"rule_6": [16]}, id="n6-four-of-five-zone-b"),
        # 7 "Fifteen points in a row in Zone C (above and below the centerline)"
        pytest.param(FIFTEEN_IN_ZONE_C, {"rule_7": [18]}, id="n7-fifteen-in-zone-c"),
        # 8 "Eight points in a row on both sides of the centerline with none in Zone C"
        pytest.param(EIGHT_BEYOND_1, {"rule_8": [19]}, id="n8-eight-outside-zone-c"),
    ],
)
def test_nelson_rules(changes: dict[int, float], fired: dict[str, list[int]]) -> None:
    out = spc.nelson(values=_series(changes), center=0.0, sigma=1.0)
    _only(out, NELSON, fired)


def test_patterns_one_short_do_not_fire() -> None:
    # Each pattern one point short: the point that completed it is moved so it no longer counts.
    assert (
        spc.western_electric(values=_series({12: 3.0}), center=0.0, sigma=1.0)["violations"] == []
    )  # on the 3σ limit is not beyond it
    short = {
        "rule_2": {12: 2.5, 14: 0.4},
        "rule_3": {**FOUR_OF_FIVE_BEYOND_1, 16: 0.9},
        "rule_4": {**EIGHT_ONE_SIDE, 19: -0.4},
    }
    for rule, changes in short.items():
        out = spc.western_electric(values=_series(changes), center=0.0, sigma=1.0)
        assert out[rule] == [], rule
    nelson_short = {
        "rule_2": {**NINE_ONE_SIDE, 19: -0.4},
        "rule_3": {**SIX_RISING, 17: 0.4},
        "rule_4": {**FOURTEEN_ALTERNATING, 19: -0.3},  # 18 -> 19 no longer rises
        "rule_7": {**FIFTEEN_IN_ZONE_C, 18: 1.5},
        "rule_8": {**EIGHT_BEYOND_1, 19: -0.9},
    }
    for rule, changes in nelson_short.items():
        out = spc.nelson(values=_series(changes), center=0.0, sigma=1.0)
        assert out[rule] == [], rule


def test_same_side_is_required() -> None:
    # Two of three beyond 2σ but on opposite sides is not WE rule 2.
    out = spc.western_electric(values=_series({12: 2.5, 13: -2.5}), center=0.0, sigma=1.0)
    assert out["rule_2"] == []
    # Eight beyond 1σ alternating sides is Nelson 8 but not 6 (four of five on one side).
    out = spc.nelson(values=_series(EIGHT_BEYOND_1), center=0.0, sigma=1.0)
    assert out["rule_6"] == []


def test_longer_runs_flag_every_further_point() -> None:
    # 10 points above the centre line: the run of 8 ends at 7, 8 and 9 (WE 4); a steady rise
    # of 8 points completes six-in-a-row at 5, 6 and 7 (Nelson 3).
    assert spc.western_electric(values=[0.1] * 10, center=0.0, sigma=1.0)["rule_4"] == [7, 8, 9]
    rise = np.linspace(-0.7, 0.7, 8)
    assert spc.nelson(values=rise, center=0.0, sigma=1.0)["rule_3"] == [5, 6, 7]
    # Equal neighbours break a trend.
    assert spc.nelson(values=[0, 1, 2, 2, 3, 4, 5], center=0.0, sigma=9.0)["rule_3"] == []
    # Two of three at the very start: the pattern is complete at the second point.
    assert spc.western_electric(values=[2.5, 2.5, 0.0], center=0.0, sigma=1.0)["rule_2"] == [1]


def test_rules_default_to_individuals_chart_estimates() -> None:
    # Montgomery Example 6.5: centre 300.5, σ̂ = MR̄/1.128 = 7.79/1.128 = 6.91, no signal.
    out = spc.western_electric(values=LOAN_COSTS)
    assert out["center"] == pytest.approx(300.5)
    assert out["sigma"] == pytest.approx(6.91, abs=5e-3)
    assert out["rule_1"] == []
    limits = spc.i_mr(values=LOAN_COSTS)
    assert out["center"] + 3 * out["sigma"] == pytest.approx(limits["x_ucl"])
    nelson = spc.nelson(values=LOAN_COSTS)
    assert nelson["sigma"] == out["sigma"]


def test_rules_vectorised_on_a_long_series() -> None:
    x = np.random.default_rng(11).normal(size=200_000)
    out = spc.nelson(values=x, center=0.0, sigma=1.0)
    # Rule 1 is exactly the points beyond 3σ; about 0.27 % of normal points.
    assert out["rule_1"] == [int(i) for i in np.flatnonzero(np.abs(x) > 3)]
    assert 0.002 < len(out["rule_1"]) / x.size < 0.0035
    # Brute-force check of rule 6 on a slice against its definition.
    z = x[:3000]
    want = [
        i
        for i in range(z.size)
        for side in (1, -1)
        if side * z[i] > 1 and sum(side * z[max(0, i - 4) : i + 1] > 1) >= 4
    ]
    got = spc.nelson(values=z, center=0.0, sigma=1.0)["rule_6"]
    assert got == sorted(set(want))


# Bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("component", "kwargs", "loc"),
    [
        (spc.xbar_r, {"subgroups": [74.0, 74.1, 73.9]}, "inputs.subgroups"),  # 1-D
        (spc.xbar_r, {"subgroups": np.zeros((2, 2, 2))}, "inputs.subgroups"),  # 3-D
        (spc.xbar_r, {"subgroups": np.ones((10, 26))}, "inputs.subgroups"),  # n > 25
        (spc.xbar_r, {"subgroups": [[1.0], [2.0]]}, "inputs.subgroups"),  # n = 1
        (spc.xbar_r, {"subgroups": [[1.0, 2.0]]}, "inputs.subgroups"),  # one subgroup
        (spc.xbar_r, {"subgroups": [[1.0, 1.0], [2.0, 2.0]]}, "inputs.subgroups"),  # R̄ = 0
        (spc.xbar_r, {"subgroups": [[1.0, np.nan], [2.0, 3.0]]}, "inputs.subgroups"),
        (spc.xbar_r, {"subgroups": {"value": PISTON_RINGS.tolist()}}, "inputs.subgroups"),
        (spc.xbar_s, {"subgroups": [1.0, 2.0]}, "inputs.subgroups"),
        (spc.xbar_s, {"subgroups": [[3.0, 3.0], [2.0, 2.0]]}, "inputs.subgroups"),
        (spc.i_mr, {"values": [1.0]}, "inputs.values"),
        (spc.i_mr, {"values": [[1.0, 2.0], [3.0, 4.0]]}, "inputs.values"),
        (spc.i_mr, {"values": [5.0, 5.0, 5.0]}, "inputs.values"),
        (spc.i_mr, {"values": {"value": [1.0, 2.0, 4.0]}}, "inputs.values"),
        (spc.capability, {"samples": [1.0, 2.0, 4.0]}, "inputs.usl"),  # no limit
        (spc.capability, {"samples": [1.0, 2.0, 4.0], "lsl": 5.0, "usl": 5.0}, "inputs.usl"),
        (spc.capability, {"samples": np.zeros((2, 2, 3)), "usl": 1.0}, "inputs.samples"),
        (spc.capability, {"samples": [1.0, 2.0, 4.0], "usl": 5.0, "subgroup_size": 2},
         "inputs.samples"),
        (spc.capability, {"samples": [1.0, 2.0, 4.0], "usl": 5.0, "subgroup_size": 0},
         "inputs.subgroup_size"),
        (spc.capability, {"samples": [1.0, 2.0, 4.0], "usl": 5.0, "subgroup_size": 26},
         "inputs.subgroup_size"),
        (spc.capability, {"samples": [[1.0, 2.0], [3.0, 3.0]], "usl": 5.0}, "inputs.samples"),
        (spc.capability, {"samples": [1.0, 2.0, 4.0], "usl": {"value": 5.0}}, "inputs.usl"),
        (spc.capability, {"samples": {"value": [1.0, 2.0]}, "usl": 5.0}, "inputs.samples"),
        (spc.western_electric, {"values": [1.0, 2.0], "sigma": 0.0}, "inputs.sigma"),
        (spc.western_electric, {"values": [2.0, 2.0, 2.0]}, "inputs.values"),
        (spc.western_electric, {"values": [[1.0, 2.0]]}, "inputs.values"),
        (spc.nelson, {"values": [1.0, 2.0], "sigma": -1.0}, "inputs.sigma"),
        (spc.nelson, {"values": [1.0, 2.0], "center": {"value": 1.0}}, "inputs.center"),
        (spc.nelson, {"values": [1.0, 2.0], "sigma": 1.0, "colour": "red"}, "inputs.colour"),
    ],
)  # fmt: skip
def test_bad_input_names_the_input(component: Any, kwargs: dict[str, Any], loc: str) -> None:
    with pytest.raises(ComponentInputError) as exc:
        component(**kwargs)
    assert _loc(exc) == loc


def test_bad_input_messages() -> None:
    with pytest.raises(ComponentInputError, match="missing unit"):
        spc.i_mr(values={"value": [1.0, 2.0, 4.0]})
    with pytest.raises(ComponentInputError, match="series 1 shows no variation"):
        spc.capability(samples=[[1.0, 2.0], [3.0, 3.0]], usl=5.0)
    with pytest.raises(ComponentInputError, match="subgroups of 2"):
        spc.capability(samples=[1.0, 2.0, 4.0], usl=5.0, subgroup_size=2)
    with pytest.raises(ComponentInputError, match="above 25"):
        spc.xbar_r(subgroups=np.ones((10, 26)))


# Descriptions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "component", [spc.xbar_r, spc.xbar_s, spc.i_mr, spc.capability, spc.western_electric,
                  spc.nelson],
    ids=lambda c: c.name,
)  # fmt: skip
def test_descriptions_are_complete(component: Any) -> None:
    described = component.describe()
    json.dumps(described)
    assert described["name"].startswith("spc.")
    assert described["category"] == "statistical"
    assert described["references"]
    assert described["documentation"]
