"""Statistical process control: Shewhart X̄-R, X̄-S and individuals (I-MR) control charts,
process capability and performance indices (Cp, Cpk, Pp, Ppk), and the Western Electric and
Nelson run rules.

Control-chart constants for subgroup sizes n = 2..25 are the published table values of
Montgomery, *Introduction to Statistical Quality Control*, 7th ed., Appendix Table VI ("Factors
for constructing variables control charts"), which are the same factors ASTM E2587 tabulates.
They are kept as printed (three decimals, four for c4) so that limits reproduce worked examples;
E2 = 3/d2 is derived from the printed d2.

Measurements keep their own unit: every port is dimensionless and limits, means and ranges come
back in whatever unit the data were given in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from yugong.platform.components import Category, Port, bad_input, component

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]

MONTGOMERY = (
    "Montgomery, D.C. (2013) Introduction to Statistical Quality Control, 7th ed., Wiley: "
    "ch. 6 (control charts for variables) and Appendix Table VI (control chart factors)"
)
ASTM_E2587 = (
    "ASTM E2587, Standard Practice for Use of Control Charts in Statistical Process Control "
    "(factors for X̄-R, X̄-S and individuals charts)"
)
NIST_HANDBOOK = (
    "NIST/SEMATECH e-Handbook of Statistical Methods, 6.3.2 (variables control charts) and "
    "6.1.6 (process capability), https://www.itl.nist.gov/div898/handbook/"
)
WESTERN_ELECTRIC = (
    "Western Electric Co. (1956) Statistical Quality Control Handbook, Section I-B "
    "(tests for unnatural patterns); Montgomery 7th ed. ch. 5 (sensitizing rules)"
)
NELSON = (
    "Nelson, L.S. (1984) The Shewhart Control Chart - Tests for Special Causes. Journal of "
    "Quality Technology 16(4):237-239"
)

# --- Control chart constants ---------------------------------------------------------------

SUBGROUP_SIZES = np.arange(2, 26)
N_MIN, N_MAX = 2, 25

# Montgomery 7th ed., Appendix Table VI, rows n = 2..25, as printed.
CONSTANTS: dict[str, FloatArray] = {
    "A2": np.array([
        1.880, 1.023, 0.729, 0.577, 0.483, 0.419, 0.373, 0.337, 0.308, 0.285, 0.266, 0.249,
        0.235, 0.223, 0.212, 0.203, 0.194, 0.187, 0.180, 0.173, 0.167, 0.162, 0.157, 0.153,
    ]),
    "A3": np.array([
        2.659, 1.954, 1.628, 1.427, 1.287, 1.182, 1.099, 1.032, 0.975, 0.927, 0.886, 0.850,
        0.817, 0.789, 0.763, 0.739, 0.718, 0.698, 0.680, 0.663, 0.647, 0.633, 0.619, 0.606,
    ]),
    "c4": np.array([
        0.7979, 0.8862, 0.9213, 0.9400, 0.9515, 0.9594, 0.9650, 0.9693, 0.9727, 0.9754,
        0.9776, 0.9794, 0.9810, 0.9823, 0.9835, 0.9845, 0.9854, 0.9862, 0.9869, 0.9876,
        0.9882, 0.9887, 0.9892, 0.9896,
    ]),
    "B3": np.array([
        0.0, 0.0, 0.0, 0.0, 0.030, 0.118, 0.185, 0.239, 0.284, 0.321, 0.354, 0.382,
        0.406, 0.428, 0.448, 0.466, 0.482, 0.497, 0.510, 0.523, 0.534, 0.545, 0.555, 0.565,
    ]),
    "B4": np.array([
        3.267, 2.568, 2.266, 2.089, 1.970, 1.882, 1.815, 1.761, 1.716, 1.679, 1.646, 1.618,
        1.594, 1.572, 1.552, 1.534, 1.518, 1.503, 1.490, 1.477, 1.466, 1.455, 1.445, 1.435,
    ]),
    "d2": np.array([
        1.128, 1.693, 2.059, 2.326, 2.534, 2.704, 2.847, 2.970, 3.078, 3.173, 3.258, 3.336,
        3.407, 3.472, 3.532, 3.588, 3.640, 3.689, 3.735, 3.778, 3.819, 3.858, 3.895, 3.931,
    ]),
    "d3": np.array([
        0.853, 0.888, 0.880, 0.864, 0.848, 0.833, 0.820, 0.808, 0.797, 0.787, 0.778, 0.770,
        0.763, 0.756, 0.750, 0.744, 0.739, 0.734, 0.729, 0.724, 0.720, 0.716, 0.712, 0.708,
    ]),
    "D3": np.array([
        0.0, 0.0, 0.0, 0.0, 0.0, 0.076, 0.136, 0.184, 0.223, 0.256, 0.283, 0.307,
        0.328, 0.347, 0.363, 0.378, 0.391, 0.403, 0.415, 0.425, 0.434, 0.443, 0.451, 0.459,
    ]),
    "D4": np.array([
        3.267, 2.574, 2.282, 2.114, 2.004, 1.924, 1.864, 1.816, 1.777, 1.744, 1.717, 1.693,
        1.672, 1.653, 1.637, 1.622, 1.608, 1.597, 1.585, 1.575, 1.566, 1.557, 1.548, 1.541,
    ]),
}  # fmt: skip
# Individuals chart factor: X limits are x̄ ± E2·MR̄ with moving ranges of span n.
CONSTANTS["E2"] = 3.0 / CONSTANTS["d2"]
for _table in CONSTANTS.values():
    _table.setflags(write=False)


def control_constant(symbol: str, n: int) -> float:
    """The factor ``symbol`` (A2, A3, B3, B4, c4, d2, d3, D3, D4, E2) for subgroup size n."""
    if symbol not in CONSTANTS:
        raise KeyError(f"no control chart constant {symbol!r}; have {', '.join(CONSTANTS)}")
    if not N_MIN <= n <= N_MAX:
        raise ValueError(f"subgroup size {n} is outside the table (2..25)")
    return float(CONSTANTS[symbol][n - N_MIN])


# --- Shared ports and helpers ----------------------------------------------------------------

SUBGROUPS = Port.series(
    None,
    "Subgroups as a 2-D array: one row per subgroup (in time order), n columns of "
    "measurements (2 <= n <= 25), in the measurement's own unit",
    min_length=2,
    batch=True,
)
INDICES = Port.object(
    "Indices (0-based) of the points beyond a control limit",
    schema={"type": "array", "items": {"type": "integer", "minimum": 0}},
)


def _subgroup_matrix(x: FloatArray) -> FloatArray:
    if x.ndim != 2:
        raise bad_input(
            "subgroups", f"expected a 2-D array (subgroups x samples), got shape {x.shape}"
        )
    m, n = x.shape
    if n > N_MAX:
        raise bad_input("subgroups", f"subgroup size {n} is above {N_MAX}, the table's limit")
    if m < 2:
        raise bad_input("subgroups", f"needs at least 2 subgroups, got {m}")
    return x


def _beyond(points: FloatArray, lcl: float, ucl: float) -> list[int]:
    return [int(i) for i in np.flatnonzero((points > ucl) | (points < lcl))]


def _moving_ranges(x: FloatArray) -> FloatArray:
    return np.abs(x[..., 1:] - x[..., :-1])


def _ranges(groups: FloatArray) -> FloatArray:
    """Range along the last axis; a running max/min over the n <= 25 columns is several times
    faster than ``np.ptp`` when that axis is short and the others are long."""
    hi = groups[..., 0].copy()
    lo = hi.copy()
    for j in range(1, groups.shape[-1]):
        np.maximum(hi, groups[..., j], out=hi)
        np.minimum(lo, groups[..., j], out=lo)
    return hi - lo


# --- Control charts --------------------------------------------------------------------------

CHART_OUTPUTS_COMMON: dict[str, Port] = {
    "xbar_center": Port.number(None, "X̄ chart centre line: the grand mean x̿"),
    "xbar_ucl": Port.number(None, "X̄ chart upper control limit"),
    "xbar_lcl": Port.number(None, "X̄ chart lower control limit"),
    "means": Port.series(None, "Subgroup means x̄ᵢ"),
    "sigma": Port.number(None, "Within-subgroup standard deviation estimate σ̂"),
    "xbar_out_of_control": INDICES,
}


@component(
    "spc.xbar_r",
    "1.0.0",
    Category.STATISTICAL,
    title="X̄-R control chart limits",
    industries=("general", "discrete", "process", "automotive"),
    references=(MONTGOMERY + "; Example 6.1, Table 6.3 (piston rings)", ASTM_E2587),
    inputs={"subgroups": SUBGROUPS},
    outputs={
        **CHART_OUTPUTS_COMMON,
        "r_center": Port.number(None, "R chart centre line: the average range R̄"),
        "r_ucl": Port.number(None, "R chart upper control limit D4·R̄"),
        "r_lcl": Port.number(None, "R chart lower control limit D3·R̄"),
        "ranges": Port.series(None, "Subgroup ranges Rᵢ"),
        "r_out_of_control": INDICES,
    },
)
def xbar_r(subgroups: FloatArray) -> dict[str, Any]:
    """Trial control limits for the X̄ and R charts from m subgroups of size n (2..25).

    x̿ = mean of the subgroup means, R̄ = mean range; X̄ chart x̿ ± A2·R̄; R chart
    LCL = D3·R̄, UCL = D4·R̄; σ̂ = R̄/d2. Constants from Montgomery Appendix Table VI.
    ``xbar_out_of_control`` and ``r_out_of_control`` list the subgroups (0-based rows)
    strictly beyond a limit.

    Checked against Montgomery (7th ed.) Example 6.1: 25 subgroups of 5 piston-ring inside
    diameters (Table 6.3) give x̿ = 74.001 mm, R̄ = 0.023 mm, X̄ limits 73.988..74.014 mm and
    an R chart UCL of 0.049 mm.
    """
    x = _subgroup_matrix(subgroups)
    n = x.shape[1]
    means = x.mean(axis=1)
    ranges = _ranges(x)
    center, r_bar = float(means.mean()), float(ranges.mean())
    if r_bar == 0.0:
        raise bad_input("subgroups", "every subgroup range is 0: the data show no variation")
    a2, d3_, d4 = (control_constant(s, n) for s in ("A2", "D3", "D4"))
    ucl, lcl = center + a2 * r_bar, center - a2 * r_bar
    r_ucl, r_lcl = d4 * r_bar, d3_ * r_bar
    return {
        "xbar_center": center,
        "xbar_ucl": ucl,
        "xbar_lcl": lcl,
        "means": means,
        "sigma": r_bar / control_constant("d2", n),
        "xbar_out_of_control": _beyond(means, lcl, ucl),
        "r_center": r_bar,
        "r_ucl": r_ucl,
        "r_lcl": r_lcl,
        "ranges": ranges,
        "r_out_of_control": _beyond(ranges, r_lcl, r_ucl),
    }


@component(
    "spc.xbar_s",
    "1.0.0",
    Category.STATISTICAL,
    title="X̄-S control chart limits",
    industries=("general", "discrete", "process", "automotive"),
    references=(MONTGOMERY + "; Example 6.3 (piston rings, X̄ and s charts)", ASTM_E2587),
    inputs={"subgroups": SUBGROUPS},
    outputs={
        **CHART_OUTPUTS_COMMON,
        "s_center": Port.number(None, "S chart centre line: the average standard deviation s̄"),
        "s_ucl": Port.number(None, "S chart upper control limit B4·s̄"),
        "s_lcl": Port.number(None, "S chart lower control limit B3·s̄"),
        "stdevs": Port.series(None, "Subgroup sample standard deviations sᵢ (n - 1 divisor)"),
        "s_out_of_control": INDICES,
    },
)
def xbar_s(subgroups: FloatArray) -> dict[str, Any]:
    """Trial control limits for the X̄ and S charts from m subgroups of size n (2..25).

    sᵢ is each subgroup's sample standard deviation (divisor n - 1) and s̄ their mean;
    X̄ chart x̿ ± A3·s̄; S chart LCL = B3·s̄, UCL = B4·s̄; σ̂ = s̄/c4. Constants from
    Montgomery Appendix Table VI.

    Checked against Montgomery (7th ed.) Example 6.3, the piston-ring data of Example 6.1:
    s̄ = 0.0094 mm, X̄ limits 73.988..74.014 mm, S chart UCL 0.0196 mm, LCL 0.
    """
    x = _subgroup_matrix(subgroups)
    n = x.shape[1]
    means = x.mean(axis=1)
    stdevs = x.std(axis=1, ddof=1)
    center, s_bar = float(means.mean()), float(stdevs.mean())
    if s_bar == 0.0:
        raise bad_input("subgroups", "every subgroup standard deviation is 0: no variation")
    a3, b3, b4 = (control_constant(s, n) for s in ("A3", "B3", "B4"))
    ucl, lcl = center + a3 * s_bar, center - a3 * s_bar
    s_ucl, s_lcl = b4 * s_bar, b3 * s_bar
    return {
        "xbar_center": center,
        "xbar_ucl": ucl,
        "xbar_lcl": lcl,
        "means": means,
        "sigma": s_bar / control_constant("c4", n),
        "xbar_out_of_control": _beyond(means, lcl, ucl),
        "s_center": s_bar,
        "s_ucl": s_ucl,
        "s_lcl": s_lcl,
        "stdevs": stdevs,
        "s_out_of_control": _beyond(stdevs, s_lcl, s_ucl),
    }


@component(
    "spc.i_mr",
    "1.0.0",
    Category.STATISTICAL,
    title="Individuals and moving range (I-MR) control chart limits",
    industries=("general", "process", "chemical", "pharma", "energy"),
    references=(
        MONTGOMERY + "; Example 6.5 (mortgage loan processing costs)",
        NIST_HANDBOOK + "; 6.3.2.2 individuals chart example",
        ASTM_E2587,
    ),
    inputs={
        "values": Port.series(
            None, "Individual measurements in time order, in their own unit", min_length=2
        )
    },
    outputs={
        "x_center": Port.number(None, "Individuals chart centre line: the mean x̄"),
        "x_ucl": Port.number(None, "Individuals chart upper control limit x̄ + E2·MR̄"),
        "x_lcl": Port.number(None, "Individuals chart lower control limit x̄ - E2·MR̄"),
        "mr_center": Port.number(None, "Moving range chart centre line MR̄"),
        "mr_ucl": Port.number(None, "Moving range chart upper control limit D4·MR̄"),
        "mr_lcl": Port.number(None, "Moving range chart lower control limit D3·MR̄ = 0"),
        "moving_ranges": Port.series(None, "Moving ranges |xᵢ - xᵢ₋₁|, i = 1..N-1"),
        "sigma": Port.number(None, "Standard deviation estimate MR̄/d2 = MR̄/1.128"),
        "x_out_of_control": INDICES,
        "mr_out_of_control": Port.object(
            "Indices (0-based, into values) of the later point of each moving range above its UCL",
            schema={"type": "array", "items": {"type": "integer", "minimum": 1}},
        ),
    },
)
def i_mr(values: FloatArray) -> dict[str, Any]:
    """Control limits for individual measurements with moving ranges of span 2.

    MRᵢ = |xᵢ - xᵢ₋₁|, MR̄ their mean; individuals chart x̄ ± 3·MR̄/d2 (E2 = 3/1.128 = 2.66);
    MR chart UCL = D4·MR̄ = 3.267·MR̄, LCL = 0; σ̂ = MR̄/1.128.

    Checked against Montgomery (7th ed.) Example 6.5 (20 weekly loan processing costs:
    x̄ = 300.5, MR̄ = 7.79, limits 279.78..321.22, MR UCL 25.45) and the NIST/SEMATECH
    e-Handbook 6.3.2.2 example (10 batches: x̄ = 50.81, MR̄ = 1.8778, limits
    45.8159..55.8041).
    """
    mr = _moving_ranges(values)
    center, mr_bar = float(values.mean()), float(mr.mean())
    if mr_bar == 0.0:
        raise bad_input("values", "every moving range is 0: the data show no variation")
    e2, d4 = control_constant("E2", 2), control_constant("D4", 2)
    ucl, lcl = center + e2 * mr_bar, center - e2 * mr_bar
    mr_ucl = d4 * mr_bar
    return {
        "x_center": center,
        "x_ucl": ucl,
        "x_lcl": lcl,
        "mr_center": mr_bar,
        "mr_ucl": mr_ucl,
        "mr_lcl": 0.0,  # D3 = 0 for n = 2
        "moving_ranges": mr,
        "sigma": mr_bar / control_constant("d2", 2),
        "x_out_of_control": _beyond(values, lcl, ucl),
        "mr_out_of_control": [int(i) + 1 for i in np.flatnonzero(mr > mr_ucl)],
    }


# --- Process capability ----------------------------------------------------------------------

PER_ROW = "one value per row for a batch"


def _per_row(description: str) -> Port:
    return Port.quantity(None, f"{description}; {PER_ROW}")


def _maybe_per_row(description: str) -> Port:
    return Port.quantity(None, f"{description}; {PER_ROW}; null when the limit is not given")


@component(
    "spc.capability",
    "1.0.0",
    Category.STATISTICAL,
    title="Process capability and performance indices Cp, Cpk, Pp, Ppk",
    industries=("general", "discrete", "process", "automotive", "pharma", "food"),
    references=(
        MONTGOMERY + "; Example 6.1 continued, capability of the piston-ring process (Cp = 1.68)",
        NIST_HANDBOOK + "; 6.1.6 example (USL 20, LSL 8, μ 16, σ 2: Cp 1.00, Cpk 0.667)",
        "ISO 22514-2:2017 Statistical methods in process management - Capability and "
        "performance - Part 2: Process capability and performance of time-dependent process "
        "models",
    ),
    inputs={
        "samples": Port.series(
            None,
            "Measurements in time order; a 2-D array is a batch of independent series, one per row",
            min_length=2,
            batch=True,
        ),
        "lsl": Port.number(
            None, "Lower specification limit (omit for an upper-only spec)"
        ).optional(None),
        "usl": Port.number(None, "Upper specification limit (omit for a lower-only spec)").optional(
            None
        ),
        "subgroup_size": Port.integer(
            "Rational subgroup size n: 1 = individuals (σ within = MR̄/1.128); n >= 2 cuts "
            "each series into consecutive subgroups of n (σ within = R̄/d2)",
            minimum=1,
            maximum=N_MAX,
        ).optional(1),
    },
    outputs={
        "mean": _per_row("Process mean x̄"),
        "sigma_within": _per_row("Within-subgroup σ: MR̄/1.128, or R̄/d2(n) with subgroups"),
        "sigma_overall": _per_row("Overall σ: sample standard deviation (n - 1 divisor)"),
        "cp": _maybe_per_row("Cp = (USL - LSL)/(6 σ within), two-sided specs only"),
        "cpu": _maybe_per_row("Cpu = (USL - x̄)/(3 σ within)"),
        "cpl": _maybe_per_row("Cpl = (x̄ - LSL)/(3 σ within)"),
        "cpk": _per_row("Cpk = min(Cpu, Cpl) over the limits given"),
        "pp": _maybe_per_row("Pp = (USL - LSL)/(6 σ overall), two-sided specs only"),
        "ppu": _maybe_per_row("Ppu = (USL - x̄)/(3 σ overall)"),
        "ppl": _maybe_per_row("Ppl = (x̄ - LSL)/(3 σ overall)"),
        "ppk": _per_row("Ppk = min(Ppu, Ppl) over the limits given"),
    },
)
def capability(
    samples: FloatArray, lsl: float | None, usl: float | None, subgroup_size: int
) -> dict[str, Any]:
    """Capability (within σ) and performance (overall σ) indices against specification limits.

    Cp-family indices use the within-subgroup σ: with ``subgroup_size`` 1 the average moving
    range of span 2 over 1.128 (d2 for n = 2), otherwise each series is cut into consecutive
    subgroups of that size and σ = R̄/d2(n). Pp-family indices use the overall sample standard
    deviation (n - 1 divisor). With only one limit, Cp and Pp are undefined (null) and Cpk/Ppk
    are the one-sided Cpu/Ppu or Cpl/Ppl.

    Batch: a 2-D ``samples`` (e.g. 10,000 series x 1,000 samples) is computed in one
    vectorised pass and every output has one value per row.

    Checked against Montgomery (7th ed.), Example 6.1 continued (piston rings, 74.000 ± 0.05 mm,
    σ̂ = R̄/d2 = 0.0099 mm, Cp = 1.68) and the NIST/SEMATECH e-Handbook 6.1.6 example
    (USL = 20, LSL = 8, μ = 16, σ = 2: Cp = 1.00, Cpk = 0.667).
    """
    if lsl is None and usl is None:
        raise bad_input("usl", "give a lower (lsl) or an upper (usl) specification limit")
    if lsl is not None and usl is not None and not usl > lsl:
        raise bad_input("usl", f"usl {usl:g} must be above lsl {lsl:g}")
    x = np.atleast_2d(samples)
    length = x.shape[1]
    mean = x.mean(axis=1)
    dev = x - mean[:, None]
    sigma_overall = np.sqrt(np.einsum("ij,ij->i", dev, dev) / (length - 1))
    if subgroup_size == 1:
        sigma_within = _moving_ranges(x).mean(axis=1) / control_constant("d2", 2)
    else:
        if length < subgroup_size or length % subgroup_size:
            raise bad_input(
                "samples",
                f"{length} samples per series do not divide into subgroups of "
                f"{subgroup_size}; give a whole number of subgroups",
            )
        groups = x.reshape(x.shape[0], -1, subgroup_size)
        r_bar = _ranges(groups).mean(axis=1)
        sigma_within = r_bar / control_constant("d2", subgroup_size)
    flat = (sigma_within == 0.0) | (sigma_overall == 0.0)
    if flat.any():
        row = int(np.flatnonzero(flat)[0])
        where = f"series {row}" if samples.ndim == 2 else "the series"
        raise bad_input("samples", f"{where} shows no variation: capability is undefined")

    def one(value: FloatArray | None) -> Any:
        if value is None:
            return None
        return float(value[0]) if samples.ndim == 1 else value

    def indices(sigma: FloatArray) -> tuple[Any, ...]:
        upper = (usl - mean) / (3.0 * sigma) if usl is not None else None
        lower = (mean - lsl) / (3.0 * sigma) if lsl is not None else None
        spread = (usl - lsl) / (6.0 * sigma) if usl is not None and lsl is not None else None
        if upper is None:
            k = lower
        elif lower is None:
            k = upper
        else:
            k = np.minimum(upper, lower)
        return one(spread), one(upper), one(lower), one(k)

    cp, cpu, cpl, cpk = indices(sigma_within)
    pp, ppu, ppl, ppk = indices(sigma_overall)
    return {
        "mean": one(mean),
        "sigma_within": one(sigma_within),
        "sigma_overall": one(sigma_overall),
        "cp": cp,
        "cpu": cpu,
        "cpl": cpl,
        "cpk": cpk,
        "pp": pp,
        "ppu": ppu,
        "ppl": ppl,
        "ppk": ppk,
    }


# --- Run rules -------------------------------------------------------------------------------


def _window_count(flags: BoolArray, width: int) -> IntArray:
    """How many of the last ``width`` flags (ending at each index) are set; fewer at the start."""
    csum = np.concatenate(([0], np.cumsum(flags, dtype=np.intp)))
    end = np.arange(1, flags.size + 1)
    return csum[end] - csum[np.maximum(end - width, 0)]


def _run_end(flags: BoolArray, length: int) -> BoolArray:
    """True where ``length`` consecutive flags end."""
    return _window_count(flags, length) >= length


def _k_of_w(above: BoolArray, below: BoolArray, k: int, w: int) -> BoolArray:
    """A point beyond the zone completing k of the last w beyond it on the same side."""
    return (above & (_window_count(above, w) >= k)) | (below & (_window_count(below, w) >= k))


def _same_side_run(z: FloatArray, length: int) -> BoolArray:
    return _run_end(z > 0, length) | _run_end(z < 0, length)


def _trend(values: FloatArray, points: int) -> BoolArray:
    """``points`` in a row steadily increasing or decreasing (ties break the run)."""
    step = np.diff(values)
    run = _run_end(step > 0, points - 1) | _run_end(step < 0, points - 1)
    return np.concatenate(([False], run))


def _alternating(values: FloatArray, points: int) -> BoolArray:
    """``points`` in a row alternating up and down."""
    step = np.diff(values)
    flip = (step[:-1] * step[1:]) < 0  # the step into point i+1 and out of it differ in sign
    return np.concatenate(([False, False], _run_end(flip, points - 2)))


def _standardise(
    values: FloatArray, center: float | None, sigma: float | None
) -> tuple[FloatArray, float, float]:
    c = float(values.mean()) if center is None else center
    if sigma is None:
        s = float(_moving_ranges(values).mean()) / control_constant("d2", 2)
        if s == 0.0:
            raise bad_input("values", "no variation to estimate sigma from; give sigma")
    else:
        s = sigma
    return (values - c) / s, c, s


def _fired(flags: BoolArray) -> list[int]:
    return [int(i) for i in np.flatnonzero(flags)]


RULE_VALUES = Port.series(None, "Plotted points in time order, in their own unit", min_length=2)
RULE_CENTER = Port.number(None, "Centre line; default the mean of the values").optional(None)
RULE_SIGMA = Port.number(
    None,
    "Standard deviation of a plotted point (for an X̄ chart σ/√n, i.e. (UCL - CL)/3); "
    "default MR̄/1.128 from the values",
    exclusive_minimum=0,
).optional(None)


def _rule_port(text: str) -> Port:
    return Port.object(
        f"Indices (0-based) of the points completing the pattern: {text}",
        schema={"type": "array", "items": {"type": "integer", "minimum": 0}},
    )


USED_PORTS: dict[str, Port] = {
    "center": Port.number(None, "Centre line used"),
    "sigma": Port.number(None, "Sigma used"),
    "violations": _rule_port("any rule"),
}

WE_RULES = {
    "rule_1": "one point beyond 3σ",
    "rule_2": "2 of 3 successive points beyond 2σ, same side",
    "rule_3": "4 of 5 successive points beyond 1σ, same side",
    "rule_4": "8 successive points on the same side of the centre line",
}
NELSON_RULES = {
    "rule_1": "one point beyond 3σ (beyond zone A)",
    "rule_2": "9 points in a row on the same side of the centre line",
    "rule_3": "6 points in a row steadily increasing or decreasing",
    "rule_4": "14 points in a row alternating up and down",
    "rule_5": "2 of 3 points in a row beyond 2σ (zone A or beyond), same side",
    "rule_6": "4 of 5 points in a row beyond 1σ (zone B or beyond), same side",
    "rule_7": "15 points in a row within 1σ (zone C), either side",
    "rule_8": "8 points in a row beyond 1σ (none in zone C), either side",
}


def _result(rules: dict[str, BoolArray], center: float, sigma: float) -> dict[str, Any]:
    out: dict[str, Any] = {name: _fired(flags) for name, flags in rules.items()}
    out["violations"] = _fired(np.logical_or.reduce(list(rules.values())))
    return out | {"center": center, "sigma": sigma}


@component(
    "spc.western_electric",
    "1.0.0",
    Category.STATISTICAL,
    title="Western Electric run rules 1-4",
    industries=("general", "discrete", "process"),
    references=(WESTERN_ELECTRIC, MONTGOMERY),
    inputs={"values": RULE_VALUES, "center": RULE_CENTER, "sigma": RULE_SIGMA},
    outputs={**{k: _rule_port(v) for k, v in WE_RULES.items()}, **USED_PORTS},
)
def western_electric(
    values: FloatArray, center: float | None, sigma: float | None
) -> dict[str, Any]:
    """Points of a control chart that break the Western Electric zone rules.

    With zones measured from the centre line in units of σ (Western Electric Statistical
    Quality Control Handbook, 1956; Montgomery 7th ed. ch. 5, sensitizing rules):

    1. one point plots outside the 3σ control limits;
    2. two out of three consecutive points plot beyond the 2σ warning limits, on one side;
    3. four out of five consecutive points plot beyond 1σ, on one side;
    4. eight consecutive points plot on one side of the centre line.

    Each rule lists the index of the point completing the pattern: a point that is itself
    beyond the zone and makes k of the last w so (rules 2, 3), or the last of the run
    (rule 4; a longer run flags every further point). "Beyond" is strict, and a point on the
    centre line belongs to neither side. Without ``center`` and ``sigma`` the mean and the
    individuals-chart estimate MR̄/1.128 are used.
    """
    z, c, s = _standardise(values, center, sigma)
    rules = {
        "rule_1": np.abs(z) > 3,
        "rule_2": _k_of_w(z > 2, z < -2, 2, 3),
        "rule_3": _k_of_w(z > 1, z < -1, 4, 5),
        "rule_4": _same_side_run(z, 8),
    }
    return _result(rules, c, s)


@component(
    "spc.nelson",
    "1.0.0",
    Category.STATISTICAL,
    title="Nelson tests for special causes 1-8",
    industries=("general", "discrete", "process"),
    references=(NELSON, MONTGOMERY),
    inputs={"values": RULE_VALUES, "center": RULE_CENTER, "sigma": RULE_SIGMA},
    outputs={**{k: _rule_port(v) for k, v in NELSON_RULES.items()}, **USED_PORTS},
)
def nelson(values: FloatArray, center: float | None, sigma: float | None) -> dict[str, Any]:
    """Points of a control chart that fail Nelson's eight tests for special causes.

    Nelson (1984), Journal of Quality Technology 16(4):237-239, with zones A (2σ-3σ),
    B (1σ-2σ) and C (within 1σ) on each side of the centre line:

    1. one point beyond zone A;
    2. nine points in a row in zone C or beyond (on one side of the centre line);
    3. six points in a row steadily increasing or decreasing;
    4. fourteen points in a row alternating up and down;
    5. two out of three points in a row in zone A or beyond (same side);
    6. four out of five points in a row in zone B or beyond (same side);
    7. fifteen points in a row in zone C (above and below the centre line);
    8. eight points in a row on both sides of the centre line with none in zone C.

    Each rule lists the index of the point completing the pattern (every further point of a
    longer run is listed too). "Beyond" a zone boundary is strict, so zone C is |z| <= 1; a
    point on the centre line belongs to neither side; equal consecutive values break a trend
    and an alternation. Rule 8 takes points beyond 1σ on either side, in any order. Without
    ``center`` and ``sigma`` the mean and MR̄/1.128 are used.
    """
    z, c, s = _standardise(values, center, sigma)
    rules = {
        "rule_1": np.abs(z) > 3,
        "rule_2": _same_side_run(z, 9),
        "rule_3": _trend(values, 6),
        "rule_4": _alternating(values, 14),
        "rule_5": _k_of_w(z > 2, z < -2, 2, 3),
        "rule_6": _k_of_w(z > 1, z < -1, 4, 5),
        "rule_7": _run_end(np.abs(z) <= 1, 15),
        "rule_8": _run_end(np.abs(z) > 1, 8),
    }
    return _result(rules, c, s)
