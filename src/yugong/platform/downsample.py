"""Downsampling a time series for a chart: Largest-Triangle-Three-Buckets (LTTB).

S. Steinarsson, "Downsampling Time Series for Visual Representation", MSc thesis,
University of Iceland, 2013. The first and last points are always kept; the points between
are cut into ``threshold - 2`` buckets of (nearly) equal count, and from each bucket the
point is kept that makes the largest triangle with the point kept from the bucket before
and the average of the bucket after. Peaks and troughs make large triangles, so a single
spike survives, which is what a chart must not lose.

Bucket edges use integer arithmetic, ``floor(i * (n - 2) / (threshold - 2)) + 1``, the
thesis' formula without floating-point rounding at the edges.

Gaps: a NaN value (a bad-quality sample, or none) cannot be part of a triangle. When the
series must be reduced, NaN points are dropped first and the line joins across them; when
it already fits (``threshold >= n``) it is returned unchanged, NaN included.

The averages of all buckets are computed at once (``np.add.reduceat``); choosing a point
depends on the one chosen before, so that is one vectorised step per bucket in a Python
loop: a few thousand steps for a chart, never one per sample.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

MIN_THRESHOLD = 2


def lttb_indices(ts: npt.ArrayLike, value: npt.ArrayLike, threshold: int) -> npt.NDArray[np.intp]:
    """Positions (ascending) of the points LTTB keeps, at most ``threshold`` of them.

    ``ts`` must be sorted ascending (int64, any unit); ``value`` float64 of the same length.
    """
    t = np.asarray(ts, dtype=np.int64)
    v = np.asarray(value, dtype=np.float64)
    if t.shape != v.shape or t.ndim != 1:
        raise ValueError("ts and value must be one-dimensional and of the same length")
    if threshold < MIN_THRESHOLD:
        raise ValueError(f"threshold must be at least {MIN_THRESHOLD}")
    n = len(t)
    if threshold >= n:
        return np.arange(n, dtype=np.intp)
    finite = np.flatnonzero(~np.isnan(v))
    if len(finite) <= threshold:
        return finite.astype(np.intp)
    chosen = _lttb_finite(t[finite], v[finite], threshold)
    return finite[chosen].astype(np.intp)


def lttb(
    ts: npt.ArrayLike, value: npt.ArrayLike, threshold: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The points LTTB keeps, as (ts, value) arrays; see :func:`lttb_indices`."""
    t = np.asarray(ts, dtype=np.int64)
    v = np.asarray(value, dtype=np.float64)
    idx = lttb_indices(t, v, threshold)
    if len(idx) == len(t):
        return t, v
    return t[idx], v[idx]


def _lttb_finite(
    t: npt.NDArray[np.int64], v: npt.NDArray[np.float64], threshold: int
) -> npt.NDArray[np.intp]:
    n = len(t)
    # Times relative to the first point: float64 keeps them exact (epoch µs would not be
    # once multiplied in the area formula).
    x = (t - t[0]).astype(np.float64)
    nb = threshold - 2
    if nb == 0:
        return np.array([0, n - 1], dtype=np.intp)
    i = np.arange(nb + 1, dtype=np.int64)
    edges = i * (n - 2) // nb + 1  # bucket k holds [edges[k], edges[k + 1])
    starts = edges[:-1]
    # Average of each bucket, and of the last point as the "bucket" after the last one.
    counts = np.diff(edges).astype(np.float64)
    avg_x = np.append(np.add.reduceat(x[: n - 1], starts) / counts, x[-1])
    avg_y = np.append(np.add.reduceat(v[: n - 1], starts) / counts, v[-1])
    out = np.empty(threshold, dtype=np.intp)
    out[0], out[-1] = 0, n - 1
    a = 0
    for k in range(nb):
        lo, hi = int(edges[k]), int(edges[k + 1])
        ax, ay = x[a], v[a]
        cx, cy = avg_x[k + 1], avg_y[k + 1]
        # Twice the triangle's area; the factor does not change which point is largest.
        area = np.abs((ax - cx) * (v[lo:hi] - ay) - (ax - x[lo:hi]) * (cy - ay))
        a = lo + int(np.argmax(area))
        out[k + 1] = a
    return out
