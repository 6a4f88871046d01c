"""Signal utilities: resampling onto a regular grid, interpolation at new times, rolling
statistics and unit conversion.

Times are epoch seconds. Values may be one series, or a 2-D array with one series per row
sharing the same time stamps; results are computed for every row in one vectorised call.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from yugong.platform.components import Category, Port, bad_input, component

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

NIST_SP811 = (
    "NIST Special Publication 811 (2008 edition), Guide for the Use of the International "
    "System of Units (SI), Appendix B.8 and B.9 (conversion factors)"
)
MAX_BUCKETS = 10_000_000  # keeps a tiny interval over a long span from exhausting memory


def _check_same_length(time: FloatArray, values: FloatArray) -> None:
    if values.shape[-1] != time.shape[0]:
        raise bad_input(
            "values",
            f"has {values.shape[-1]} samples per series but time has {time.shape[0]}",
        )


def _first_decrease(time: FloatArray, strict: bool) -> int | None:
    step = np.diff(time)
    bad = step <= 0 if strict else step < 0
    return int(np.argmax(bad)) + 1 if bad.any() else None


# Resampling -------------------------------------------------------------------------------

AGGREGATIONS = ("mean", "min", "max", "first", "last", "sum")


@component(
    "signal.resample",
    "1.0.0",
    Category.STATISTICAL,
    title="Resample irregular samples onto a regular time grid",
    industries=("general",),
    references=(
        "Definition: bucket k holds samples with start + k·interval <= t < start + "
        "(k+1)·interval and takes their mean/min/max/first/last/sum",
    ),
    inputs={
        "time": Port.series("s", "Sample times, epoch seconds, non-decreasing", min_length=1),
        "values": Port.series(
            None, "Sample values; one series per row sharing the time stamps", batch=True
        ),
        "interval": Port.number("s", "Grid interval (bucket width)", exclusive_minimum=0),
        "how": Port.text("Aggregation within each bucket", enum=AGGREGATIONS).optional("mean"),
        "start": Port.number(
            "s", "Start of the first bucket (default: first time floored to the interval)"
        ).optional(None),
    },
    outputs={
        "time": Port.series("s", "Bucket start times, epoch seconds"),
        "values": Port.series(None, "Aggregated value per bucket; NaN for an empty bucket"),
        "count": Port.series(None, "Number of samples in each bucket"),
    },
)
def resample(
    time: FloatArray, values: FloatArray, interval: float, how: str, start: float | None
) -> dict[str, Any]:
    """Aggregate samples into fixed buckets ``[start + k·interval, start + (k+1)·interval)``.

    The grid runs from ``start`` (by default the first time rounded down to a multiple of the
    interval, so grids of different series line up) to the bucket holding the last sample.
    Buckets without samples are NaN for every aggregation, sum included: no data is not zero.
    Each aggregation is one ``ufunc.reduceat`` over the runs of equal bucket index.
    """
    _check_same_length(time, values)
    at = _first_decrease(time, strict=False)
    if at is not None:
        raise bad_input(
            "time", f"must be non-decreasing: index {at} is earlier than index {at - 1}"
        )
    if start is None:
        start = float(np.floor(time[0] / interval) * interval)
    elif start > time[0]:
        raise bad_input("start", f"{start:g} s is after the first sample ({time[0]:g} s)")
    n_buckets = int((time[-1] - start) // interval) + 1
    if n_buckets > MAX_BUCKETS:
        raise bad_input(
            "interval", f"{interval:g} s makes {n_buckets} buckets (at most {MAX_BUCKETS})"
        )
    bucket = ((time - start) // interval).astype(np.int64)
    # Rounding can put a sample exactly on the last edge into a bucket past the grid.
    np.minimum(bucket, n_buckets - 1, out=bucket)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    occupied = bucket[starts]
    count = np.diff(np.r_[starts, bucket.size])

    if how == "mean":
        agg = np.add.reduceat(values, starts, axis=-1) / count
    elif how == "sum":
        agg = np.add.reduceat(values, starts, axis=-1)
    elif how == "min":
        agg = np.minimum.reduceat(values, starts, axis=-1)
    elif how == "max":
        agg = np.maximum.reduceat(values, starts, axis=-1)
    elif how == "first":
        agg = values[..., starts]
    else:
        agg = values[..., starts + count - 1]

    out = np.full((*values.shape[:-1], n_buckets), np.nan)
    out[..., occupied] = agg
    counts = np.zeros(n_buckets, dtype=np.int64)
    counts[occupied] = count
    return {
        "time": start + interval * np.arange(n_buckets, dtype=np.float64),
        "values": out,
        "count": counts,
    }


# Interpolation ----------------------------------------------------------------------------


@component(
    "signal.interpolate",
    "1.0.0",
    Category.STATISTICAL,
    title="Interpolate samples at new times (linear, previous, nearest) with a gap limit",
    industries=("general",),
    references=(
        "Definitions: linear v = v_i + (v_{i+1} - v_i)(t - t_i)/(t_{i+1} - t_i); previous "
        "(sample and hold) v = v_i; nearest v = v of the closer of t_i, t_{i+1}",
    ),
    inputs={
        "time": Port.series("s", "Sample times, epoch seconds, increasing", min_length=1),
        "values": Port.series(
            None, "Sample values; one series per row sharing the time stamps", batch=True
        ),
        "new_time": Port.series("s", "Times to interpolate at, epoch seconds, any order"),
        "method": Port.text(
            "linear, previous (sample and hold) or nearest",
            enum=("linear", "previous", "nearest"),
        ).optional("linear"),
        "max_gap": Port.number(
            "s", "Longest gap between samples to bridge (none: no limit)", exclusive_minimum=0
        ).optional(None),
    },
    outputs={
        "values": Port.series(
            None, "Values at new_time; NaN outside the data or across a gap above max_gap"
        ),
    },
)
def interpolate(
    time: FloatArray,
    values: FloatArray,
    new_time: FloatArray,
    method: str,
    max_gap: float | None,
) -> dict[str, Any]:
    """Values at ``new_time`` from samples at ``time``, for every row of ``values``.

    Linear and nearest need samples on both sides, so they are NaN before the first and after
    the last sample, and NaN inside a gap between samples longer than ``max_gap``. Previous
    holds the last sample: NaN before the first sample, and NaN once more than ``max_gap``
    has passed since the sample held. A new time equal to a sample time always returns that
    sample.
    """
    _check_same_length(time, values)
    at = _first_decrease(time, strict=True)
    if at is not None:
        raise bad_input("time", f"must be increasing: index {at} is not after index {at - 1}")
    n = time.size
    # right: first sample after t; left: the sample at or before t (-1 before the first).
    right = np.searchsorted(time, new_time, side="right")
    left = right - 1
    li = np.clip(left, 0, n - 1)
    ri = np.clip(right, 0, n - 1)
    t_left = time[li]
    exact = (left >= 0) & (t_left == new_time)
    inside = (left >= 0) & (right < n)

    if method == "previous":
        out = values[..., li]
        valid = left >= 0
        if max_gap is not None:
            valid &= (new_time - t_left) <= max_gap
    else:
        t_right = time[ri]
        span = np.where(inside, t_right - t_left, 1.0)
        valid = inside.copy()
        if max_gap is not None:
            valid &= span <= max_gap
        if method == "linear":
            w = (new_time - t_left) / span
            out = values[..., li] * (1.0 - w) + values[..., ri] * w
        else:
            # Ties go to the later sample.
            take_right = (t_right - new_time) <= (new_time - t_left)
            out = values[..., np.where(take_right, ri, li)]
        out = np.where(exact, values[..., li], out)
    valid |= exact
    return {"values": np.where(valid, out, np.nan)}


# Rolling statistics -----------------------------------------------------------------------


def _rolling_sum(d: FloatArray, window: int) -> FloatArray:
    """Sums over each trailing window of ``window`` samples (valid part: n - window + 1)."""
    c = np.cumsum(d, axis=-1)
    out = c[..., window - 1 :].copy()
    out[..., 1:] -= c[..., :-window]
    return out


@component(
    "signal.rolling",
    "1.0.0",
    Category.STATISTICAL,
    title="Rolling mean, standard deviation, min, max or median over N samples",
    industries=("general",),
    references=(
        "Definitions over the trailing window x[i-N+1..i]: mean, sample standard deviation "
        "(n - 1 divisor), minimum, maximum, median",
    ),
    inputs={
        "values": Port.series(None, "Series; one per row for a batch", min_length=1, batch=True),
        "window": Port.integer("Window length N in samples", minimum=1),
        "statistic": Port.text(
            "Statistic over each window", enum=("mean", "std", "min", "max", "median")
        ).optional("mean"),
    },
    outputs={
        "values": Port.series(
            None, "Statistic of the window ending at each sample; NaN for the first N - 1"
        ),
    },
)
def rolling(values: FloatArray, window: int, statistic: str) -> dict[str, Any]:
    """Trailing-window statistic, aligned with the input: output i covers x[i-N+1..i].

    The first N - 1 outputs have no full window and are NaN. Mean and standard deviation use
    cumulative sums of the series less its mean (which keeps the cancellation error small for
    signals riding on a large offset); the standard deviation uses the n - 1 divisor and
    needs N >= 2. Minimum, maximum and median use SciPy's ndimage filters (O(n) for min/max).
    """
    n = values.shape[-1]
    if window > n:
        raise bad_input("window", f"{window} samples is longer than the series ({n})")
    if statistic == "std" and window < 2:
        raise bad_input("window", "the standard deviation needs a window of at least 2 samples")
    out = np.full(values.shape, np.nan)
    valid = out[..., window - 1 :]
    if statistic in ("mean", "std"):
        d = values - values.mean(axis=-1, keepdims=True)
        s1 = _rolling_sum(d, window)
        if statistic == "mean":
            valid[...] = s1 / window + values.mean(axis=-1, keepdims=True)
        else:
            s2 = _rolling_sum(d * d, window)
            var = (s2 - s1 * s1 / window) / (window - 1)
            valid[...] = np.sqrt(np.maximum(var, 0.0))
    else:
        import scipy.ndimage

        # ndimage windows are centred; this origin makes each window end at its sample.
        origin = (window - 1) // 2
        if statistic == "median":
            kw: dict[str, Any] = {
                "size": window,
                "origin": origin,
                "axes": (values.ndim - 1,),
                "mode": "nearest",
            }
            if window % 2:
                full = scipy.ndimage.median_filter(values, **kw)
            else:
                # An even window's median is the mean of its two middle values.
                full = scipy.ndimage.rank_filter(values, window // 2 - 1, **kw)
                full += scipy.ndimage.rank_filter(values, window // 2, **kw)
                full *= 0.5
        else:
            filt = (
                scipy.ndimage.minimum_filter1d
                if statistic == "min"
                else scipy.ndimage.maximum_filter1d
            )
            full = filt(values, size=window, axis=-1, origin=origin, mode="nearest")
        valid[...] = full[..., window - 1 :]
    return {"values": out}


# Unit conversion ----------------------------------------------------------------------------


@component(
    "signal.convert_units",
    "1.0.0",
    Category.MECHANISM,
    title="Convert values between units of measure",
    industries=("general",),
    references=(NIST_SP811,),
    inputs={
        "values": Port.quantity(None, "Values in from_unit"),
        "from_unit": Port.text("Unit of the values, e.g. psi, degF, hp, m**3/h"),
        "to_unit": Port.text("Unit wanted, of the same dimension"),
    },
    outputs={"values": Port.quantity(None, "Values in to_unit")},
)
def convert_units(values: FloatArray, from_unit: str, to_unit: str) -> dict[str, Any]:
    """values·factor + offset, the conversion derived with pint (NIST SP 811 factors).

    Temperatures such as degC and degF are absolute, so the offset applies; convert a
    temperature difference with delta_degC / delta_degF. Rotational speed in rpm converts to
    Hz through pint's definition rpm = 2π rad/min, i.e. to rad/s; use revolution/s for the
    rotation frequency.
    """
    import pint

    from yugong.core.errors import InvalidInput
    from yugong.core.units import unit_factor, unit_registry

    ureg = unit_registry()
    for name, unit in (("from_unit", from_unit), ("to_unit", to_unit)):
        try:
            ureg.parse_units(unit)
        except (pint.errors.PintError, ValueError, TypeError, AttributeError, SyntaxError):
            raise bad_input(name, f"unknown unit {unit!r}") from None
    try:
        factor, offset = unit_factor(from_unit, to_unit, "inputs.to_unit")
    except InvalidInput as exc:
        raise bad_input("to_unit", exc.detail.split(": ", 1)[-1]) from None
    out = values * factor + offset
    return {"values": float(out) if out.ndim == 0 else out}
