"""Anomaly detection: robust z-score, EWMA and CUSUM control charts, isolation forest and a
seasonal (time-of-day / day-of-week) baseline."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from yugong.platform.components import Category, Port, bad_input, component

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

# 0.6745 = Φ⁻¹(0.75): MAD/0.6745 estimates σ for normal data (Iglewicz & Hoaglin 1993).
_MAD_CONSTANT = 0.6745
# sqrt(π/2): mean absolute deviation × 1.253314 estimates σ for normal data (IBM SPSS practice).
_MEANAD_CONSTANT = 1.253314
# σ ≈ 1.4826 · MAD for normal data (consistency factor 1/Φ⁻¹(0.75)).
_MAD_TO_SIGMA = 1.4826


def _per_row(values: npt.NDArray[Any], one_d: bool) -> Any:
    """A per-row result as a scalar for a single series, else as an array (one per row)."""
    return values.reshape(-1)[0].item() if one_d else values


def _first_signal(signal: BoolArray) -> IntArray:
    """1-based number of the first flagged observation per row, 0 when none is flagged."""
    first = np.argmax(signal, axis=-1) + 1
    return np.where(signal.any(axis=-1), first, 0).astype(np.int64)


@component(
    "anomaly.robust_zscore",
    "1.0.0",
    Category.STATISTICAL,
    title="Robust (modified) z-score with the median and MAD",
    industries=("general", "discrete", "process", "energy"),
    references=(
        "Iglewicz B., Hoaglin D.C. (1993) How to Detect and Handle Outliers, ASQC Basic "
        "References in Quality Control vol. 16, modified z-score M = 0.6745(x - median)/MAD, "
        "outliers |M| > 3.5",
        "NIST/SEMATECH e-Handbook of Statistical Methods, 1.3.5.17 Detection of Outliers",
        "IBM SPSS Statistics documentation, modified z-score when MAD = 0: "
        "(x - median)/(1.253314 MeanAD)",
    ),
    inputs={
        "x": Port.series(
            None, "Values; a 2-D array is a batch, one series per row", min_length=3, batch=True
        ),
        "threshold": Port.number(None, "Flag |z| above this value", exclusive_minimum=0).optional(
            3.5
        ),
    },
    outputs={
        "z": Port.series(None, "Modified z-score per value (same shape as x)"),
        "outlier": Port.series(None, "True where |z| > threshold"),
        "median": Port.quantity(None, "Median per series"),
        "mad": Port.quantity(None, "Median absolute deviation from the median per series"),
        "scale": Port.text("How z was scaled per series: 'mad' or 'meanad' (MAD was 0)"),
        "n_outliers": Port.quantity(None, "Number of flagged values per series"),
    },
)
def robust_zscore(x: FloatArray, threshold: float) -> dict[str, Any]:
    """Modified z-score z = 0.6745·(x − median)/MAD, outliers where |z| > threshold (3.5).

    Iglewicz & Hoaglin (1993) recommend the modified z-score because the median and the
    median absolute deviation (MAD) are not dragged by the outliers being looked for (the
    mean and standard deviation are, which masks outliers). NIST/SEMATECH e-Handbook 1.3.5.17
    quotes the rule.

    MAD = 0 (more than half the values are equal): the score falls back to
    (x − median)/(1.253314·MeanAD), MeanAD the mean absolute deviation from the median, as the
    IBM SPSS documentation does; ``scale`` reports 'meanad' for such series. When every value
    equals the median both spreads are 0 and every score is 0 (nothing stands out).

    A 2-D ``x`` is a batch: each row is scored independently, in one vectorised call.
    """
    one_d = x.ndim == 1
    rows = np.atleast_2d(x)
    med = np.median(rows, axis=-1, keepdims=True)
    dev = rows - med
    mad = np.median(np.abs(dev), axis=-1, keepdims=True)
    mean_ad = np.mean(np.abs(dev), axis=-1, keepdims=True)
    use_mad = mad > 0
    scale = np.where(use_mad, mad / _MAD_CONSTANT, _MEANAD_CONSTANT * mean_ad)
    z = np.divide(dev, scale, out=np.zeros_like(dev), where=scale > 0)
    outlier = np.abs(z) > threshold
    how = np.where(use_mad[:, 0], "mad", "meanad")
    return {
        "z": z[0] if one_d else z,
        "outlier": outlier[0] if one_d else outlier,
        "median": _per_row(med[:, 0], one_d),
        "mad": _per_row(mad[:, 0], one_d),
        "scale": str(how[0]) if one_d else how.tolist(),
        "n_outliers": _per_row(outlier.sum(axis=-1), one_d),
    }


@component(
    "anomaly.ewma",
    "1.0.0",
    Category.STATISTICAL,
    title="EWMA control chart statistic and limits",
    industries=("general", "discrete", "process", "chemical", "pharma"),
    references=(
        "Montgomery D.C., Introduction to Statistical Quality Control, 6th ed., Wiley 2009, "
        "Section 9.2.1, Eqs. 9.22-9.25 and Example 9.2 (Table 9.1 data, lambda=0.1, L=2.7)",
        "Roberts S.W. (1959) Control chart tests based on geometric moving averages, "
        "Technometrics 1(3) 239-250",
    ),
    inputs={
        "x": Port.series(
            None, "Individual observations; 2-D = batch, one series per row", batch=True
        ),
        "mu0": Port.number(None, "Target (in-control mean) μ0, also the starting value z0"),
        "sigma": Port.number(None, "In-control standard deviation σ", exclusive_minimum=0),
        "lam": Port.number(None, "Smoothing constant λ", exclusive_minimum=0, maximum=1).optional(
            0.1
        ),
        "L": Port.number(
            None, "Width of the limits in multiples of σ_z", exclusive_minimum=0
        ).optional(3.0),
        "steady_state": Port.boolean(
            "Use the asymptotic limits instead of the exact time-varying ones"
        ).optional(False),
    },
    outputs={
        "z": Port.series(None, "EWMA statistic z_i"),
        "ucl": Port.series(None, "Upper control limit per observation"),
        "lcl": Port.series(None, "Lower control limit per observation"),
        "out_of_control": Port.series(None, "True where z_i is outside the limits"),
        "first_signal": Port.quantity(None, "1-based number of the first signal, 0 if none"),
    },
)
def ewma(
    x: FloatArray, mu0: float, sigma: float, lam: float, L: float, steady_state: bool
) -> dict[str, Any]:
    """EWMA z_i = λ·x_i + (1 − λ)·z_{i−1} with z_0 = μ0, limits μ0 ± L·σ·√(λ/(2−λ)·(1−(1−λ)^{2i})).

    Montgomery, Introduction to SQC, Section 9.2.1: the exact limits widen over the first
    observations towards the asymptotic μ0 ± L·σ·√(λ/(2−λ)) (``steady_state`` uses those).
    The recursion is a first-order IIR filter, run by scipy.signal.lfilter along each row.
    Example 9.2 (λ = 0.1, L = 2.7, μ0 = 10, σ = 1 on the Table 9.1 data) gives z1 = 9.945,
    UCL1 = 10.27, LCL1 = 9.73 and steady-state limits 10.62 / 9.38.
    ``first_signal`` is the 1-based number of the first observation outside the limits.
    """
    from scipy.signal import lfilter

    one_d = x.ndim == 1
    rows = np.atleast_2d(x)
    zi = np.full((rows.shape[0], 1), (1.0 - lam) * mu0)
    z = np.asarray(lfilter([lam], [1.0, lam - 1.0], rows, axis=-1, zi=zi)[0], dtype=np.float64)
    i = np.arange(1, rows.shape[-1] + 1, dtype=np.float64)
    growth = np.ones_like(i) if steady_state else 1.0 - (1.0 - lam) ** (2.0 * i)
    half = L * sigma * np.sqrt(lam / (2.0 - lam) * growth)
    ucl = np.broadcast_to(mu0 + half, rows.shape)
    lcl = np.broadcast_to(mu0 - half, rows.shape)
    out = (z > ucl) | (z < lcl)
    first = _first_signal(out)
    return {
        "z": z[0] if one_d else z,
        "ucl": (ucl[0] if one_d else ucl).copy(),
        "lcl": (lcl[0] if one_d else lcl).copy(),
        "out_of_control": out[0] if one_d else out,
        "first_signal": _per_row(first, one_d),
    }


def _running_excess(steps: FloatArray) -> FloatArray:
    """C_i = max(0, C_{i−1} + d_i), C_0 = 0, without a loop over samples.

    With S_i = d_1 + … + d_i and S_0 = 0, C_i = S_i − min(0, S_1, …, S_i): the sum restarts
    from zero exactly where the partial sums reach a new minimum (Lindley's recursion).
    """
    s = np.cumsum(steps, axis=-1)
    return np.asarray(s - np.minimum.accumulate(np.minimum(s, 0.0), axis=-1), dtype=np.float64)


def _run_length(c: FloatArray) -> IntArray:
    """Consecutive periods since the sum was last zero (Montgomery's N+ / N− counters)."""
    i = np.arange(1, c.shape[-1] + 1)
    last_zero = np.maximum.accumulate(np.where(c == 0.0, i, 0), axis=-1)
    return (i - last_zero).astype(np.int64)


@component(
    "anomaly.cusum",
    "1.0.0",
    Category.STATISTICAL,
    title="Tabular CUSUM (upper and lower cumulative sums)",
    industries=("general", "discrete", "process", "chemical", "pharma"),
    references=(
        "Montgomery D.C., Introduction to Statistical Quality Control, 6th ed., Wiley 2009, "
        "Section 9.1.2, Eqs. 9.2-9.3, Example 9.1 and Table 9.2 (k=0.5, h=5)",
        "Page E.S. (1954) Continuous inspection schemes, Biometrika 41(1/2) 100-115",
    ),
    inputs={
        "x": Port.series(
            None, "Individual observations; 2-D = batch, one series per row", batch=True
        ),
        "mu0": Port.number(None, "Target (in-control mean) μ0"),
        "sigma": Port.number(None, "In-control standard deviation σ", exclusive_minimum=0),
        "k": Port.number(None, "Reference value k in σ units (K = kσ)", minimum=0).optional(0.5),
        "h": Port.number(
            None, "Decision interval h in σ units (H = hσ)", exclusive_minimum=0
        ).optional(5.0),
    },
    outputs={
        "c_plus": Port.series(None, "Upper CUSUM C+_i"),
        "c_minus": Port.series(None, "Lower CUSUM C−_i"),
        "n_plus": Port.series(None, "Consecutive periods with C+ > 0"),
        "n_minus": Port.series(None, "Consecutive periods with C− > 0"),
        "out_of_control": Port.series(None, "True where C+ > H or C− > H"),
        "first_signal": Port.quantity(None, "1-based number of the first signal, 0 if none"),
        "shifted_mean": Port.quantity(
            None, "Estimate of the new mean at the first signal (null without a signal)"
        ),
    },
)
def cusum(x: FloatArray, mu0: float, sigma: float, k: float, h: float) -> dict[str, Any]:
    """C+_i = max(0, x_i − (μ0 + K) + C+_{i−1}), C−_i = max(0, (μ0 − K) − x_i + C−_{i−1}).

    Montgomery, Introduction to SQC, Section 9.1.2, with K = k·σ and H = h·σ; both sums start
    at 0 and the chart signals where either exceeds H. The recursion runs without a loop:
    C_i = S_i − min(0, S_1 … S_i) with S the cumulative sum of the increments. At the first
    signal the new mean is estimated as μ0 + K + C+/N+ (upward) or μ0 − K − C−/N− (downward),
    N the number of periods since the sum was last zero (Montgomery Eq. 9.4). Example 9.1 on
    the Table 9.1 data signals at observation 29 with C+ = 5.28, N+ = 7 and μ̂ = 11.25.
    """
    one_d = x.ndim == 1
    rows = np.atleast_2d(x)
    big_k, big_h = k * sigma, h * sigma
    c_plus = _running_excess(rows - (mu0 + big_k))
    c_minus = _running_excess((mu0 - big_k) - rows)
    n_plus, n_minus = _run_length(c_plus), _run_length(c_minus)
    out = (c_plus > big_h) | (c_minus > big_h)
    first = _first_signal(out)
    at = np.maximum(first - 1, 0)[:, None]
    cp, cm = np.take_along_axis(c_plus, at, -1)[:, 0], np.take_along_axis(c_minus, at, -1)[:, 0]
    np_, nm = np.take_along_axis(n_plus, at, -1)[:, 0], np.take_along_axis(n_minus, at, -1)[:, 0]
    up = cp > big_h
    # N ≥ 1 wherever the sum is positive; the floor only guards rows without a signal.
    est = np.where(up, mu0 + big_k + cp / np.maximum(np_, 1), mu0 - big_k - cm / np.maximum(nm, 1))
    shifted: list[float | None] = [
        float(v) if f > 0 else None for v, f in zip(est, first, strict=True)
    ]
    return {
        "c_plus": c_plus[0] if one_d else c_plus,
        "c_minus": c_minus[0] if one_d else c_minus,
        "n_plus": n_plus[0] if one_d else n_plus,
        "n_minus": n_minus[0] if one_d else n_minus,
        "out_of_control": out[0] if one_d else out,
        "first_signal": _per_row(first, one_d),
        "shifted_mean": shifted[0] if one_d else shifted,
    }


@component(
    "anomaly.isolation_forest",
    "1.0.0",
    Category.DATA_DRIVEN,
    title="Isolation forest anomaly scores",
    industries=("general", "discrete", "process", "energy", "power"),
    references=(
        "Liu F.T., Ting K.M., Zhou Z.-H. (2008) Isolation Forest, Proc. 8th IEEE ICDM, "
        "413-422, anomaly score s(x, n) = 2^(-E[h(x)]/c(n))",
        "scikit-learn sklearn.ensemble.IsolationForest",
    ),
    inputs={
        "x": Port.series(
            None,
            "Samples: a 1-D array of one feature, or 2-D with rows = samples, cols = features",
            batch=True,
        ),
        "contamination": Port.number(
            None,
            "Expected share of anomalies (null = 'auto': flag s > 0.5)",
            exclusive_minimum=0,
            maximum=0.5,
        ).optional(None),
        "n_estimators": Port.integer("Number of isolation trees", minimum=1).optional(100),
        "max_samples": Port.integer(
            "Sub-sample size per tree (null = min(256, n))", minimum=2
        ).optional(None),
        "random_state": Port.integer("Seed, for reproducible results", minimum=0).optional(0),
    },
    outputs={
        "score": Port.series(None, "Anomaly score s in (0, 1] per sample; higher = more anomalous"),
        "anomaly": Port.series(None, "True for samples flagged as anomalies"),
        "threshold": Port.number(None, "Score above which a sample is flagged"),
    },
)
def isolation_forest(
    x: FloatArray,
    contamination: float | None,
    n_estimators: int,
    max_samples: int | None,
    random_state: int,
) -> dict[str, Any]:
    """Isolation forest (Liu, Ting & Zhou 2008) with scikit-learn's IsolationForest.

    Anomalies are few and different, so random axis-parallel splits isolate them in fewer
    steps: the score s(x, n) = 2^(−E[h(x)]/c(n)) is close to 1 for anomalies and well below
    0.5 for normal points. ``score`` is that s (scikit-learn's ``-score_samples``). Without
    ``contamination`` a sample is flagged when s > 0.5 (the paper's rule, scikit-learn's
    'auto'); with it, the threshold is the score quantile that flags that share of samples.
    A 1-D ``x`` is one feature; a 2-D ``x`` has one sample per row. The forest is random:
    the same ``random_state`` gives the same result.
    """
    from sklearn.ensemble import IsolationForest

    samples = x[:, None] if x.ndim == 1 else x
    if samples.shape[0] < 2:
        raise bad_input("x", f"needs at least 2 samples (rows), got {samples.shape[0]}")
    if samples.shape[1] < 1:
        raise bad_input("x", "needs at least 1 feature (column)")
    if max_samples is not None and max_samples > samples.shape[0]:
        raise bad_input(
            "max_samples", f"{max_samples} is more than the {samples.shape[0]} samples given"
        )
    forest = IsolationForest(
        n_estimators=n_estimators,
        max_samples="auto" if max_samples is None else max_samples,
        contamination="auto" if contamination is None else contamination,
        random_state=random_state,
    ).fit(samples)
    score = -np.asarray(forest.score_samples(samples), dtype=np.float64)
    return {
        "score": score,
        "anomaly": np.asarray(forest.predict(samples) == -1),
        "threshold": float(-forest.offset_),
    }


# Local time is counted from Monday 1970-01-05 00:00, so a weekly period starts on Monday.
_MONDAY = 4 * 86400.0
# Offsets are resolved per 15 minutes: every time-zone transition in use falls on a quarter hour.
_QUARTER_HOUR = 900.0


def _utc_offsets(t: FloatArray, timezone: str) -> FloatArray:
    """UTC offset (s) of each epoch time in ``timezone``, daylight saving included.

    zoneinfo has no vectorised form, so the offset is looked up once per distinct UTC day
    (both ends); only days whose ends differ (a transition day) are resolved per quarter hour.
    """
    if timezone in ("UTC", "Etc/UTC"):
        return np.zeros_like(t)
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise bad_input("timezone", f"unknown time zone {timezone!r}") from None

    def offset(instant: float) -> float:
        delta = datetime.fromtimestamp(instant, UTC).astimezone(zone).utcoffset()
        return delta.total_seconds() if delta is not None else 0.0

    def lookup(instants: FloatArray) -> FloatArray:
        return np.array([offset(float(s)) for s in instants], dtype=np.float64)

    day = np.floor(t / 86400.0)
    days, inverse = np.unique(day, return_inverse=True)
    start, end = lookup(days * 86400.0), lookup(days * 86400.0 + 86399.0)
    offsets = start[inverse]
    moving = (start != end)[inverse]
    if moving.any():
        quarter = np.floor(t[moving] / _QUARTER_HOUR)
        quarters, q_inverse = np.unique(quarter, return_inverse=True)
        offsets[moving] = lookup(quarters * _QUARTER_HOUR)[q_inverse]
    return offsets


def _slots(t: FloatArray, period: float, slot: float, timezone: str) -> IntArray:
    local = t + _utc_offsets(t, timezone) - _MONDAY
    return np.floor(np.mod(local, period) / slot).astype(np.int64)


def _group_median(
    groups: IntArray, values: FloatArray, n_groups: int
) -> tuple[FloatArray, IntArray]:
    """Median of ``values`` per group (NaN for an empty group) and the group sizes."""
    order = np.lexsort((values, groups))
    ordered = values[order]
    counts = np.bincount(groups, minlength=n_groups).astype(np.int64)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    lo = starts + np.maximum(counts - 1, 0) // 2
    hi = starts + counts // 2
    med = np.full(n_groups, np.nan)
    has = counts > 0
    med[has] = 0.5 * (ordered[lo[has]] + ordered[hi[has]])
    return med, counts


@component(
    "anomaly.seasonal_baseline",
    "1.0.0",
    Category.STATISTICAL,
    title="Seasonal baseline per time-of-day / day-of-week slot with a band",
    industries=("general", "energy", "power", "water", "hvac", "process"),
    references=(
        "NIST/SEMATECH e-Handbook of Statistical Methods, 6.4.4.3 Seasonality (seasonal "
        "subseries: a level per season slot)",
        "Rousseeuw P.J., Croux C. (1993) Alternatives to the median absolute deviation, JASA "
        "88(424) 1273-1283 (sigma = 1.4826 MAD for normal data)",
    ),
    inputs={
        "t": Port.series("s", "History times, epoch seconds", min_length=1),
        "y": Port.series(None, "History values"),
        "t_eval": Port.series("s", "Times to evaluate, epoch seconds (default: t)").optional(None),
        "y_eval": Port.series(None, "Values to check at t_eval (default: y)").optional(None),
        "period": Port.number(
            "s", "Season length (86400 = daily, 604800 = weekly)", exclusive_minimum=0
        ).optional(86400.0),
        "slot": Port.number("s", "Slot length inside the period", exclusive_minimum=0).optional(
            3600.0
        ),
        "timezone": Port.text("IANA time zone that defines the local clock").optional("UTC"),
        "statistic": Port.text("Baseline per slot", enum=("median", "mean")).optional("median"),
        "k": Port.number(
            None, "Band half-width in robust σ (or σ for 'mean')", exclusive_minimum=0
        ).optional(3.0),
    },
    outputs={
        "slot": Port.series(None, "Slot number of each evaluated time"),
        "baseline": Port.series(None, "Baseline at each evaluated time"),
        "lower": Port.series(None, "Lower band edge at each evaluated time"),
        "upper": Port.series(None, "Upper band edge at each evaluated time"),
        "anomaly": Port.series(None, "True where y_eval is outside the band"),
        "slot_baseline": Port.series(None, "Baseline per slot (null for a slot without history)"),
        "slot_spread": Port.series(None, "σ estimate per slot (null without history)"),
        "slot_count": Port.series(None, "History samples per slot"),
    },
)
def seasonal_baseline(
    t: FloatArray,
    y: FloatArray,
    t_eval: FloatArray | None,
    y_eval: FloatArray | None,
    period: float,
    slot: float,
    timezone: str,
    statistic: str,
    k: float,
) -> dict[str, Any]:
    """Baseline and band per season slot, and a flag where a value leaves the band.

    Each time is placed on the local clock of ``timezone`` (daylight saving included) and
    given slot floor(((local time − Monday 1970-01-05 00:00) mod period) / slot): with the
    defaults slot h is the hour of day starting at local h:00; with period = 604800 slot 0 is
    Monday 00:00-01:00. Per slot of the history, the baseline is the median (or the mean) and
    the spread is σ̂ = 1.4826·MAD (or the sample standard deviation for 'mean', n − 1); the
    band is baseline ± k·σ̂. This is the seasonal-subseries view of NIST e-Handbook 6.4.4.3.
    The period must be a whole number of slots; every evaluated slot needs history.
    """
    if t.shape != y.shape:
        raise bad_input("y", f"has {y.size} values but t has {t.size}")
    if (t_eval is None) != (y_eval is None):
        missing = "y_eval" if y_eval is None else "t_eval"
        raise bad_input(missing, "give t_eval and y_eval together")
    if t_eval is None or y_eval is None:
        t_eval, y_eval = t, y
    elif t_eval.shape != y_eval.shape:
        raise bad_input("y_eval", f"has {y_eval.size} values but t_eval has {t_eval.size}")
    n_slots_f = period / slot
    n_slots = round(n_slots_f)
    if n_slots < 1 or abs(n_slots_f - n_slots) > 1e-9 * n_slots_f:
        raise bad_input("slot", f"period {period:g} s is not a whole number of {slot:g} s slots")

    hist = _slots(t, period, slot, timezone)
    if statistic == "median":
        base, counts = _group_median(hist, y, n_slots)
        mad, _ = _group_median(hist, np.abs(y - base[hist]), n_slots)
        spread = _MAD_TO_SIGMA * mad
    else:
        counts = np.bincount(hist, minlength=n_slots).astype(np.int64)
        with np.errstate(invalid="ignore", divide="ignore"):
            base = np.bincount(hist, weights=y, minlength=n_slots) / counts
            sq = np.bincount(hist, weights=(y - base[hist]) ** 2, minlength=n_slots)
            spread = np.sqrt(sq / np.maximum(counts - 1, 0))
        base = np.where(counts > 0, base, np.nan)
        spread = np.where(counts > 1, spread, np.where(counts == 1, 0.0, np.nan))

    ev = _slots(t_eval, period, slot, timezone)
    empty = counts[ev] == 0
    if empty.any():
        where = int(np.argmax(empty))
        raise bad_input("t_eval", f"slot {int(ev[where])} (index {where}) has no history")
    b, half = base[ev], k * spread[ev]
    lower, upper = b - half, b + half

    def nullable(a: FloatArray) -> list[float | None]:
        return [None if np.isnan(v) else float(v) for v in a]

    return {
        "slot": ev,
        "baseline": b,
        "lower": lower,
        "upper": upper,
        "anomaly": (y_eval < lower) | (y_eval > upper),
        "slot_baseline": nullable(base),
        "slot_spread": nullable(spread),
        "slot_count": counts,
    }
