"""Degradation and remaining useful life: a health index from features, linear and exponential
degradation trends with confidence bands, and the time the trend reaches a failure threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from yugong.platform.components import Category, Port, bad_input, component

FloatArray = npt.NDArray[np.float64]

_REGRESSION_REFS = (
    "Montgomery D.C., Runger G.C., Applied Statistics and Probability for Engineers, 3rd ed., "
    "Wiley 2003, Section 11-2 to 11-6, Examples 11-1 (oxygen purity vs hydrocarbon level), "
    "11-4 (CI on slope), 11-6 (CI on mean response), 11-7 (prediction interval)",
    "NIST/SEMATECH e-Handbook of Statistical Methods, 4.1.4.1 Linear least squares regression",
)


@component(
    "degradation.health_index",
    "1.0.0",
    Category.STATISTICAL,
    title="Health index from condition features (0 = healthy, 1 = failed)",
    industries=("general", "discrete", "process", "energy", "power", "mining"),
    references=(
        "Lei Y., Li N., Guo L., Li N., Yan T., Lin J. (2018) Machinery health prognostics: a "
        "systematic review from data acquisition to RUL prediction, Mechanical Systems and "
        "Signal Processing 104, 799-834, Section 3 (health indicator construction)",
    ),
    inputs={
        "features": Port.series(
            None,
            "Features over time: 1-D (one feature) or 2-D with rows = time, cols = features",
            batch=True,
        ),
        "healthy": Port.quantity(
            None, "Healthy reference per feature (default: mean of the first baseline samples)"
        ).optional(None),
        "failed": Port.quantity(
            None, "Failed reference per feature (default: value farthest from healthy)"
        ).optional(None),
        "baseline_samples": Port.integer(
            "Samples averaged for the healthy reference when it is not given", minimum=1
        ).optional(10),
        "weights": Port.quantity(None, "Weight per feature (default: equal)", minimum=0).optional(
            None
        ),
    },
    outputs={
        "index": Port.series(None, "Health index per time, 0 (healthy) .. 1 (failed)"),
        "normalised": Port.series(None, "Each feature scaled to 0..1, rows = time"),
        "healthy": Port.series(None, "Healthy reference used per feature"),
        "failed": Port.series(None, "Failed reference used per feature"),
    },
)
def health_index(
    features: FloatArray,
    healthy: FloatArray | None,
    failed: FloatArray | None,
    baseline_samples: int,
    weights: FloatArray | None,
) -> dict[str, Any]:
    """HI_t = Σ_j w_j·clip((x_tj − h_j)/(f_j − h_j), 0, 1) / Σ_j w_j.

    Min-max normalisation of each feature between its healthy value h_j and its failed value
    f_j, clipped to 0..1, then a weighted mean (Lei et al. 2018, Section 3: health indicators
    are normalised so that features with different units and directions can be fused and a
    failure threshold applies). A feature that falls as the machine degrades works too: give
    f_j < h_j. Without ``healthy`` the mean of the first ``baseline_samples`` rows is used;
    without ``failed`` the observed value farthest from h_j, so the worst sample scores 1.
    """
    data = features[:, None] if features.ndim == 1 else features
    n_time, n_feat = data.shape
    if n_feat < 1 or n_time < 1:
        raise bad_input("features", f"needs at least one sample and one feature, got {data.shape}")

    def per_feature(name: str, value: FloatArray | None) -> FloatArray | None:
        if value is None:
            return None
        vec = np.asarray(value, dtype=np.float64)
        if vec.ndim == 0:  # one value for every feature
            return np.full(n_feat, float(vec))
        if vec.shape != (n_feat,):
            raise bad_input(name, f"needs one value per feature ({n_feat}), got shape {vec.shape}")
        return vec

    h, f = per_feature("healthy", healthy), per_feature("failed", failed)
    w = per_feature("weights", weights)
    if w is None:
        w = np.ones(n_feat)
    if h is None:
        if baseline_samples > n_time:
            raise bad_input(
                "baseline_samples", f"{baseline_samples} is more than the {n_time} samples given"
            )
        h = data[:baseline_samples].mean(axis=0)
    if f is None:
        far = np.argmax(np.abs(data - h), axis=0)
        f = data[far, np.arange(n_feat)]
    span = f - h
    if np.any(span == 0):
        j = int(np.argmax(span == 0))
        raise bad_input("failed", f"feature {j}: the failed reference equals the healthy one")
    if w.sum() <= 0:
        raise bad_input("weights", "at least one weight must be positive")
    norm = np.clip((data - h) / span, 0.0, 1.0)
    index = norm @ w / w.sum()
    return {
        "index": index,
        "normalised": norm[:, 0] if features.ndim == 1 else norm,
        "healthy": h,
        "failed": f,
    }


@dataclass(frozen=True)
class _Line:
    """A least-squares line u = β0 + β1·t (u = y, or ln(y − c) for the exponential model)."""

    b0: float
    b1: float
    se_b0: float
    se_b1: float
    s2: float  # residual mean square σ̂² = SSE/(n − 2)
    r2: float
    n: int
    t_mean: float
    sxx: float
    fitted: FloatArray

    def tq(self, confidence: float) -> float:
        from scipy.stats import t as student_t

        return float(student_t.ppf(0.5 + confidence / 2.0, self.n - 2))

    def band(self, t0: FloatArray, confidence: float, prediction: bool) -> FloatArray:
        """Half-width of the confidence (or prediction) band at t0 (Montgomery & Runger 11-6)."""
        extra = 1.0 if prediction else 0.0
        var = self.s2 * (extra + 1.0 / self.n + (t0 - self.t_mean) ** 2 / self.sxx)
        return np.asarray(self.tq(confidence) * np.sqrt(var), dtype=np.float64)


def _transform(y: FloatArray, model: str, offset: float) -> FloatArray:
    if model == "linear":
        return y
    shifted = y - offset
    if np.any(shifted <= 0):
        i = int(np.argmax(shifted <= 0))
        raise bad_input("y", f"exponential model needs y > offset ({offset:g}); y[{i}] = {y[i]:g}")
    return np.asarray(np.log(shifted), dtype=np.float64)


def _untransform(u: FloatArray, model: str, offset: float) -> FloatArray:
    return u if model == "linear" else np.asarray(offset + np.exp(u), dtype=np.float64)


def _fit_line(t: FloatArray, u: FloatArray) -> _Line:
    if t.shape != u.shape:
        raise bad_input("y", f"has {u.size} values but t has {t.size}")
    n = t.size
    t_mean, u_mean = float(t.mean()), float(u.mean())
    dt = t - t_mean
    sxx = float(dt @ dt)
    if sxx == 0:
        raise bad_input("t", "all times are equal; a trend needs at least two distinct times")
    b1 = float(dt @ (u - u_mean)) / sxx
    b0 = u_mean - b1 * t_mean
    fitted = b0 + b1 * t
    sse = float(np.sum((u - fitted) ** 2))
    sst = float(np.sum((u - u_mean) ** 2))
    s2 = sse / (n - 2)
    return _Line(
        b0=b0,
        b1=b1,
        se_b0=float(np.sqrt(s2 * (1.0 / n + t_mean**2 / sxx))),
        se_b1=float(np.sqrt(s2 / sxx)),
        s2=s2,
        r2=1.0 - sse / sst if sst > 0 else 1.0,
        n=n,
        t_mean=t_mean,
        sxx=sxx,
        fitted=fitted,
    )


_MODEL = Port.text(
    "Trend: 'linear' y = a + b·t or 'exponential' y = c + a·exp(b·t)",
    enum=("linear", "exponential"),
).optional("linear")
_OFFSET = Port.number(None, "Fixed offset c of the exponential model").optional(0.0)
_CONFIDENCE = Port.number(
    None, "Confidence level of the band", exclusive_minimum=0, exclusive_maximum=1
).optional(0.95)


@component(
    "degradation.fit",
    "1.0.0",
    Category.STATISTICAL,
    title="Linear or exponential degradation trend with confidence and prediction bands",
    industries=("general", "discrete", "process", "energy", "power", "mining"),
    references=(
        *_REGRESSION_REFS,
        "Gebraeel N.Z., Lawley M.A., Li R., Ryan J.K. (2005) Residual-life distributions from "
        "component degradation signals: a Bayesian approach, IIE Transactions 37(6) 543-557 "
        "(exponential degradation model, fitted on the log scale)",
    ),
    inputs={
        "t": Port.series("s", "Observation times", min_length=3),
        "y": Port.series(None, "Degradation measure (or health index) at t", min_length=3),
        "model": _MODEL,
        "offset": _OFFSET,
        "confidence": _CONFIDENCE,
        "t_eval": Port.series("s", "Times for the fitted trend and bands (default: t)").optional(
            None
        ),
    },
    outputs={
        "a": Port.number(None, "Intercept a (linear) or amplitude a (exponential)"),
        "b": Port.number(None, "Slope b per s (linear) or growth rate b in 1/s (exponential)"),
        "se_a": Port.number(None, "Standard error of a"),
        "se_b": Port.number(None, "Standard error of b"),
        "r2": Port.number(None, "Coefficient of determination (log scale for exponential)"),
        "sigma": Port.number(None, "Residual standard deviation (log scale for exponential)"),
        "dof": Port.integer("Residual degrees of freedom n − 2"),
        "fitted": Port.series(None, "Fitted trend at t"),
        "t_eval": Port.series("s", "Times of the band"),
        "mean": Port.series(None, "Fitted trend at t_eval"),
        "lower": Port.series(None, "Lower confidence limit of the mean at t_eval"),
        "upper": Port.series(None, "Upper confidence limit of the mean at t_eval"),
        "pred_lower": Port.series(None, "Lower prediction limit of a new observation"),
        "pred_upper": Port.series(None, "Upper prediction limit of a new observation"),
    },
)
def fit(
    t: FloatArray,
    y: FloatArray,
    model: str,
    offset: float,
    confidence: float,
    t_eval: FloatArray | None,
) -> dict[str, Any]:
    """Least-squares trend with a t-based confidence band for the mean and a prediction band.

    Linear: y = a + b·t, b = Sxy/Sxx, a = ȳ − b·t̄, σ̂² = SSE/(n − 2), se(b) = √(σ̂²/Sxx),
    se(a) = √(σ̂²(1/n + t̄²/Sxx)); at t0 the mean's band is ŷ0 ± t_{α/2,n−2}·√(σ̂²(1/n +
    (t0 − t̄)²/Sxx)) and a new observation's adds 1 inside the root (Montgomery & Runger,
    Sections 11-2 to 11-6). Example 11-1 (oxygen purity) gives a = 74.283, b = 14.947,
    σ̂² = 1.18, R² = 0.877; Example 11-6 gives 88.48 ≤ μ ≤ 89.98 at t0 = 1.00.

    Exponential: y = c + a·exp(b·t) with c fixed (``offset``, default 0) is fitted as the
    line ln(y − c) = ln a + b·t, which needs y > c: the errors are taken as multiplicative,
    as in Gebraeel et al. (2005). The bands are those of the log-scale line mapped back, so
    they are asymmetric; se(a) = a·se(ln a) (delta method); R² and ``sigma`` are on the log
    scale.
    """
    line = _fit_line(t, _transform(y, model, offset))
    times = t if t_eval is None else t_eval
    u0 = line.b0 + line.b1 * times
    conf = line.band(times, confidence, prediction=False)
    pred = line.band(times, confidence, prediction=True)
    a = line.b0 if model == "linear" else float(np.exp(line.b0))
    se_a = line.se_b0 if model == "linear" else a * line.se_b0
    return {
        "a": a,
        "b": line.b1,
        "se_a": se_a,
        "se_b": line.se_b1,
        "r2": line.r2,
        "sigma": float(np.sqrt(line.s2)),
        "dof": line.n - 2,
        "fitted": _untransform(line.fitted, model, offset),
        "t_eval": times,
        "mean": _untransform(u0, model, offset),
        "lower": _untransform(u0 - conf, model, offset),
        "upper": _untransform(u0 + conf, model, offset),
        "pred_lower": _untransform(u0 - pred, model, offset),
        "pred_upper": _untransform(u0 + pred, model, offset),
    }


def _band_crossings(
    line: _Line, level: float, confidence: float, prediction: bool
) -> tuple[float | None, float | None]:
    """Times at which the band's upper and lower edges reach ``level`` (failure upward).

    The threshold lies inside the band where (β0 + β1·t − level)² ≤ q²σ̂²(g + 1/n + τ²/Sxx),
    τ = t − t̄, g = 1 for the prediction band: a quadratic Aτ² + Bτ + C ≤ 0 with
    A = β1² − q²σ̂²/Sxx. Each root belongs to the edge on which the level sits. With A > 0
    (slope significant at this confidence) the set is a bounded interval: the upper edge
    reaches the level first, the lower edge last. With A ≤ 0 the lower edge may never reach
    it (latest = None) and the earliest is the upper edge's upward crossing, if any.
    """
    q2s2 = line.tq(confidence) ** 2 * line.s2
    g = (1.0 if prediction else 0.0) + 1.0 / line.n
    m = line.b0 + line.b1 * line.t_mean - level
    a_, b_, c_ = line.b1**2 - q2s2 / line.sxx, 2.0 * m * line.b1, m**2 - q2s2 * g
    # B² − 4AC rewritten as 4q²σ̂²(m²/Sxx + g·A): exact, and never negative through rounding
    # when the band has (nearly) zero width.
    disc = 4.0 * q2s2 * (m**2 / line.sxx + g * a_)
    if a_ > 0:
        root = float(np.sqrt(max(disc, 0.0)))
        return (-b_ - root) / (2 * a_) + line.t_mean, (-b_ + root) / (2 * a_) + line.t_mean
    if a_ == 0:
        roots = np.array([-c_ / b_]) if b_ != 0 else np.array([])
    elif disc < 0:
        roots = np.array([])
    else:
        root = np.sqrt(disc)
        roots = np.array([(-b_ - root) / (2 * a_), (-b_ + root) / (2 * a_)])
    # level above the trend at the root: the upper edge reaches it there
    upper_edge = roots[m + line.b1 * roots <= 0]
    earliest = float(upper_edge.max()) + line.t_mean if upper_edge.size else None
    return earliest, None


@component(
    "degradation.rul",
    "1.0.0",
    Category.STATISTICAL,
    title="Remaining useful life: when the degradation trend reaches a failure threshold",
    industries=("general", "discrete", "process", "energy", "power", "mining"),
    references=(
        *_REGRESSION_REFS,
        "Gebraeel N.Z., Lawley M.A., Li R., Ryan J.K. (2005) Residual-life distributions from "
        "component degradation signals: a Bayesian approach, IIE Transactions 37(6) 543-557",
        "Draper N.R., Smith H., Applied Regression Analysis, 3rd ed., Wiley 1998, Section 3.2 "
        "(inverse regression: the x at which the band reaches a given y)",
    ),
    inputs={
        "t": Port.series("s", "Observation times", min_length=3),
        "y": Port.series(None, "Degradation measure (or health index) at t", min_length=3),
        "threshold": Port.number(None, "Failure threshold on y"),
        "direction": Port.text(
            "Failure when y rises to the threshold ('increasing') or falls to it",
            enum=("increasing", "decreasing"),
        ).optional("increasing"),
        "model": _MODEL,
        "offset": _OFFSET,
        "confidence": _CONFIDENCE,
        "band": Port.text(
            "Band that bounds the crossing: of the mean trend or of a new observation",
            enum=("confidence", "prediction"),
        ).optional("confidence"),
    },
    outputs={
        "status": Port.text("'ahead', 'crossed' (trend already past it) or 'never'"),
        "crossing_time": Port.number("s", "Time the fitted trend reaches the threshold (or null)"),
        "crossing_earliest": Port.number("s", "Time the band's near edge reaches it (or null)"),
        "crossing_latest": Port.number("s", "Time the band's far edge reaches it (or null)"),
        "rul": Port.number("s", "Remaining useful life after the last observation (or null)"),
        "rul_earliest": Port.number("s", "Shortest remaining life within the band (or null)"),
        "rul_latest": Port.number("s", "Longest remaining life within the band (or null)"),
    },
)
def rul(
    t: FloatArray,
    y: FloatArray,
    threshold: float,
    direction: str,
    model: str,
    offset: float,
    confidence: float,
    band: str,
) -> dict[str, Any]:
    """Crossing time t* of the fitted trend with the threshold, its band and the RUL.

    The trend is fitted as in ``degradation.fit`` (exponential on the log scale, so the
    threshold is compared as ln(threshold − c)); t* = (u* − β0)/β1. The interval is the set of
    times at which the threshold lies inside the confidence band of the mean (or the
    prediction band): the near edge reaches it first (``crossing_earliest``), the far edge
    last (``crossing_latest``), the inverse-regression interval of Draper & Smith 3.2.
    RUL = t* − last observation time, and likewise for the band, never below 0.

    status 'never': the trend moves away from (or parallel to) the threshold, so it is never
    reached; every time and RUL is null (JSON has no infinity). status 'crossed': the fitted
    trend is already past the threshold at the last observation; RUL is 0. When the slope is
    not significant at the chosen confidence the band cannot bound the crossing from above:
    ``crossing_latest`` and ``rul_latest`` are null.
    """
    u = _transform(y, model, offset)
    if model == "exponential" and threshold <= offset:
        raise bad_input("threshold", f"exponential model needs threshold > offset ({offset:g})")
    level = threshold if model == "linear" else float(np.log(threshold - offset))
    sign = 1.0 if direction == "increasing" else -1.0
    # Work with failure upward: mirror everything for a falling measure.
    line = _fit_line(t, sign * u)
    level *= sign
    t_last = float(t.max())
    now = line.b0 + line.b1 * t_last
    nothing: dict[str, Any] = dict.fromkeys(
        (
            "crossing_time",
            "crossing_earliest",
            "crossing_latest",
            "rul",
            "rul_earliest",
            "rul_latest",
        ),
        None,
    )
    if now >= level:
        status = "crossed"
    elif line.b1 > 0:
        status = "ahead"
    else:
        return {"status": "never", **nothing}
    crossing = (level - line.b0) / line.b1 if line.b1 != 0 else None
    earliest, latest = _band_crossings(line, level, confidence, band == "prediction")

    def remaining(at: float | None) -> float | None:
        return None if at is None else max(0.0, at - t_last)

    return {
        "status": status,
        "crossing_time": crossing,
        "crossing_earliest": earliest,
        "crossing_latest": latest,
        "rul": remaining(crossing) if crossing is not None else 0.0,
        "rul_earliest": remaining(earliest),
        "rul_latest": remaining(latest),
    }
