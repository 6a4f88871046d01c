"""Helpers the benchmark scripts share: a realistic signal generator, timing, JSON output."""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from yugong.core.quality import Quality
from yugong.core.samples import SAMPLE_SCHEMA

US = 1_000_000
# A fixed, closed day so compaction treats it as history: 2024-01-01T00:00:00Z.
DAY0_US = 1_704_067_200 * US


def signal_batches(
    n_series: int,
    seconds: int,
    *,
    start_us: int = DAY0_US,
    tenant: int = 1,
    rows_per_batch: int = 100_000,
    seed: int = 7,
) -> Iterator[pa.Table]:
    """1 Hz samples of ``n_series`` plant signals in time order, ``rows_per_batch`` at a time.

    A third are temperatures (slow drift + daily swing + noise, 0.01 resolution), a third
    pressures/currents (faster noise, 0.001 resolution), a third discrete states (steps between
    a few levels held for minutes). About 0.2% of minutes per series are bad-quality gaps
    (value null), as when a sensor stops answering.
    """
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n_series + 1, dtype=np.int32)
    kind = ids % 3
    base = rng.uniform(20, 80, n_series)
    swing = rng.uniform(0.5, 5, n_series)
    phase = rng.uniform(0, 2 * np.pi, n_series)
    noise = np.where(kind == 0, 0.02, 0.2)
    resolution = np.where(kind == 0, 0.01, 0.001)
    walk = np.zeros(n_series)
    step = max(1, rows_per_batch // n_series)  # seconds per batch
    for t0 in range(0, seconds, step):
        k = min(step, seconds - t0)
        t = t0 + np.arange(k)[:, None]  # (k, 1) seconds since start
        walk_steps = rng.normal(0, 0.002, (k, n_series))
        drift = walk + np.cumsum(walk_steps, axis=0)
        walk = drift[-1]
        analog = (
            base
            + swing * np.sin(2 * np.pi * t / 86_400 + phase)
            + drift
            + rng.normal(0, 1, (k, n_series)) * noise
        )
        analog = np.round(analog / resolution) * resolution
        # Discrete states: a level per 5-minute slot, from a cheap hash of (series, slot).
        slot = (t // 300) * 2_654_435_761 + ids * 40_503
        state = ((slot >> 7) % 4).astype(np.float64)
        values = np.where(kind == 2, state, analog)
        minute = (t // 60) * 1_000_003 + ids * 7_919
        bad = (minute % 499) == 0
        quality = np.where(bad, Quality.BAD, Quality.GOOD).astype(np.uint8)
        ts = start_us + t * US + np.zeros((1, n_series), dtype=np.int64)
        valid = ~bad.reshape(-1)
        value_col = pa.array(values.reshape(-1), pa.float64(), mask=~valid)
        yield pa.Table.from_arrays(
            [
                pa.array(np.full(k * n_series, tenant, np.int32)),
                pa.array(np.tile(ids, k)),
                pa.array(ts.reshape(-1)),
                value_col,
                pa.nulls(k * n_series, pa.string()),
                pa.array(quality.reshape(-1)),
            ],
            schema=SAMPLE_SCHEMA,
        )


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median_ms(fn: Callable[[], Any], repeat: int = 15, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    return round(statistics.median(timed(fn) for _ in range(repeat)) * 1000, 3)


def emit(figures: dict[str, Any]) -> None:
    """The one JSON line a benchmark prints last."""
    sys.stdout.write(json.dumps(figures, sort_keys=False) + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()
