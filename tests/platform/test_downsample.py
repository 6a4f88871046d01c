"""LTTB downsampling: small examples worked by hand, the guarantees a chart relies on (size,
ends, spikes), gaps, and agreement with a plain transcription of the thesis' algorithm."""

from __future__ import annotations

from fractions import Fraction
from math import floor

import numpy as np
import pytest

from yugong.platform.downsample import lttb, lttb_indices

T0_US = 1_790_000_000_000_000


def reference_lttb(ts: list[int], values: list[float], threshold: int) -> list[int]:
    """Steinarsson's algorithm as published (one loop per point), on exact fractions so the
    bucket edges are those of the definition: indices of the points kept."""
    n = len(ts)
    if threshold >= n:
        return list(range(n))
    every = Fraction(n - 2, threshold - 2)
    a = 0
    kept = [0]
    for i in range(threshold - 2):
        avg_start = floor((i + 1) * every) + 1
        avg_end = min(floor((i + 2) * every) + 1, n)
        count = avg_end - avg_start
        avg_x = sum(ts[j] - ts[0] for j in range(avg_start, avg_end)) / count
        avg_y = sum(values[j] for j in range(avg_start, avg_end)) / count
        ax, ay = ts[a] - ts[0], values[a]
        max_area, next_a = -1.0, -1
        for j in range(floor(i * every) + 1, floor((i + 1) * every) + 1):
            bx, by = ts[j] - ts[0], values[j]
            area = abs((ax - avg_x) * (by - ay) - (ax - bx) * (avg_y - ay)) * 0.5
            if area > max_area:
                max_area, next_a = area, j
        kept.append(next_a)
        a = next_a
    kept.append(n - 1)
    return kept


def test_one_bucket_keeps_the_peak() -> None:
    # Worked by hand: a = (0, 0), the "next bucket" is the last point (4, 0); the areas of
    # points 1..3 are 2|y|: the peak at index 2 wins.
    ts = np.arange(5, dtype=np.int64)
    v = np.array([0.0, 1.0, 5.0, 2.0, 0.0])
    assert lttb_indices(ts, v, 3).tolist() == [0, 2, 4]
    out_ts, out_v = lttb(ts, v, 3)
    assert out_ts.tolist() == [0, 2, 4] and out_v.tolist() == [0.0, 5.0, 0.0]


def test_two_buckets_worked_by_hand() -> None:
    # Buckets [1, 4) and [4, 7). Bucket 1 against a = (0, 0) and the average of bucket 2,
    # (5, -2/3): doubled areas |5y + 2x/3| = 10.67, 6.33, 2 -> index 1. Bucket 2 against
    # a = (1, 2) and the last point (7, 0): |14 - 6y - 2x| = 6, 22, 4 -> index 5.
    ts = np.arange(8, dtype=np.int64)
    v = np.array([0.0, 2.0, 1.0, 0.0, 0.0, -3.0, 1.0, 0.0])
    assert lttb_indices(ts, v, 4).tolist() == [0, 1, 5, 7]


def test_threshold_two_keeps_the_ends_only() -> None:
    v = np.array([1.0, 9.0, -9.0, 2.0])
    assert lttb_indices(np.arange(4), v, 2).tolist() == [0, 3]
    with pytest.raises(ValueError, match="at least 2"):
        lttb_indices(np.arange(4), v, 1)
    with pytest.raises(ValueError, match="same length"):
        lttb_indices(np.arange(4), v[:3], 3)


def test_threshold_at_or_above_length_returns_the_input() -> None:
    ts = T0_US + np.arange(50, dtype=np.int64) * 1_000_000
    v = np.random.default_rng(1).normal(size=50)
    v[7] = np.nan  # kept as it is: a gap for the chart
    for threshold in (50, 51, 10_000):
        out_ts, out_v = lttb(ts, v, threshold)
        assert np.array_equal(out_ts, ts)
        assert np.array_equal(out_v, v, equal_nan=True)


@pytest.mark.parametrize(("n", "threshold"), [(1_000, 3), (1_000, 100), (86_400, 2_000)])
def test_size_ends_and_order(n: int, threshold: int) -> None:
    rng = np.random.default_rng(n + threshold)
    ts = T0_US + np.cumsum(rng.integers(1, 5_000_000, n))  # irregular spacing, epoch µs
    v = np.cumsum(rng.normal(size=n))
    idx = lttb_indices(ts, v, threshold)
    assert len(idx) == threshold
    assert idx[0] == 0 and idx[-1] == n - 1
    assert np.all(np.diff(idx) > 0)
    out_ts, out_v = lttb(ts, v, threshold)
    assert out_ts[0] == ts[0] and out_ts[-1] == ts[-1]
    assert np.array_equal(out_v, v[idx])


def test_a_single_spike_survives() -> None:
    n = 100_000
    rng = np.random.default_rng(3)
    v = 20.0 + rng.normal(0, 0.1, n)
    v[31_337] = 95.0  # one sample, far above the rest
    v[77_777] = -40.0  # and one far below
    ts = T0_US + np.arange(n, dtype=np.int64) * 1_000_000
    idx = lttb_indices(ts, v, 500)
    assert 31_337 in idx and 77_777 in idx
    out = lttb(ts, v, 500)[1]
    assert out.max() == 95.0 and out.min() == -40.0


def test_nan_points_are_dropped_when_reducing() -> None:
    n = 1_000
    v = np.sin(np.arange(n) / 20.0)
    v[:5] = np.nan  # the series starts with a gap
    v[400:450] = np.nan
    v[-3:] = np.nan  # and ends with one
    ts = np.arange(n, dtype=np.int64)
    idx = lttb_indices(ts, v, 100)
    assert len(idx) == 100
    assert not np.isnan(v[idx]).any()
    assert idx[0] == 5 and idx[-1] == n - 4  # the first and last points with a value
    finite = np.flatnonzero(~np.isnan(v))
    expected = finite[reference_lttb(ts[finite].tolist(), v[finite].tolist(), 100)]
    assert idx.tolist() == expected.tolist()
    # Fewer values than the threshold: all of them, none of the gaps.
    few = np.full(200, np.nan)
    few[[3, 50, 120]] = [1.0, 2.0, 3.0]
    assert lttb_indices(np.arange(200), few, 10).tolist() == [3, 50, 120]


@pytest.mark.parametrize("seed", range(6))
def test_agrees_with_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(10, 4_000))
    threshold = int(rng.integers(3, n))
    ts = T0_US + np.cumsum(rng.integers(1, 10_000_000, n))
    v = rng.normal(size=n) * rng.choice([1.0, 100.0]) + np.cumsum(rng.normal(size=n))
    assert lttb_indices(ts, v, threshold).tolist() == reference_lttb(
        ts.tolist(), v.tolist(), threshold
    )
