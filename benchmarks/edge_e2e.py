"""End to end through the edge: simulated devices -> Yugong edge gateway (own process,
Sparkplug B uplink) -> Mosquitto -> platform (primary host, this process) -> store.

- max rate: ``--devices`` x ``--points`` counters polled every ``--max-interval`` seconds
  (100,000 points/s by default, more than the chain carries, while leaving the gateway's
  event loop time to forward); reported: rows/s arriving in the store over ``--seconds``
  after warm-up. Target >= 50,000 points/s.
- paced: the same devices polled once a second (``--devices`` x ``--points`` points/s,
  10,000 by default); latency = time a sample became visible through ``store.latest``
  minus its ts (set when the device was polled), sampled on one point per device every
  ``--probe-ms``. Target p95 < 2 s.
- beside: Mosquitto's own loopback msgs/s (1 kB, QoS 0), measured in the same run.

    python benchmarks/edge_e2e.py [--devices 100] [--points 100] [--seconds 15]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from _common import emit, note
from _edge_rig import (
    PlatformRig,
    gateway_config,
    gateway_process,
    mosquitto_loopback,
    now,
    platform,
    store_latest_ts,
    store_rows,
    wait_drained,
)


def max_rate(rig: PlatformRig, work: Path, args: argparse.Namespace) -> float:
    work.mkdir()
    cfg, devices, points = gateway_config(
        rig, work, devices=args.devices, points=args.points, interval_s=args.max_interval
    )
    with gateway_process(cfg):
        ids = list(rig.wait_series(devices, points).values())
        time.sleep(args.warmup)
        r0, t0 = store_rows(rig, ids), time.perf_counter()
        time.sleep(args.seconds)
        r1, t1 = store_rows(rig, ids), time.perf_counter()
    wait_drained(rig, ids)  # the next phase starts on an idle chain
    return (r1 - r0) / (t1 - t0)


def paced(rig: PlatformRig, work: Path, args: argparse.Namespace) -> tuple[np.ndarray, float]:
    work.mkdir()
    cfg, devices, points = gateway_config(
        rig, work, devices=args.devices, points=args.points, interval_s=1.0
    )
    with gateway_process(cfg):
        series = rig.wait_series(devices, points)
        ids = list(series.values())
        probes = [series[(d, points[0])] for d in devices]
        time.sleep(args.warmup)
        seen = store_latest_ts(rig, probes)
        lat: list[np.ndarray] = []
        r0, t0 = store_rows(rig, ids), time.perf_counter()
        stop = t0 + args.seconds
        while time.perf_counter() < stop:
            time.sleep(args.probe_ms / 1000)
            ts = store_latest_ts(rig, probes)
            at = now()
            fresh = ts > seen
            if fresh.any():
                lat.append((at - ts[fresh]) / 1e6)
            seen = np.maximum(seen, ts)
        rate = (store_rows(rig, ids) - r0) / (time.perf_counter() - t0)
    return (np.concatenate(lat) if lat else np.empty(0)), rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=5.0)
    ap.add_argument("--max-interval", type=float, default=0.1)
    ap.add_argument("--probe-ms", type=float, default=20.0)
    args = ap.parse_args()

    loopback = mosquitto_loopback()
    note(f"mosquitto loopback: {loopback:,.0f} msgs/s (1 kB, QoS 0)")
    with tempfile.TemporaryDirectory(prefix="yugong-edge-e2e-") as tmp:
        run = f"{time.time_ns()}"
        with platform(Path(tmp) / "platform", run) as rig:
            rate = max_rate(rig, Path(tmp) / "max", args)
            note(f"max rate: {rate:,.0f} points/s into the store")
            lat, paced_rate = paced(rig, Path(tmp) / "paced", args)
    p50 = float(np.percentile(lat, 50)) if lat.size else float("nan")
    p95 = float(np.percentile(lat, 95)) if lat.size else float("nan")
    note(
        f"paced: {paced_rate:,.0f} points/s, latency p50 {p50:.3f} s, p95 {p95:.3f} s "
        f"({lat.size} samples)"
    )
    emit(
        {
            "benchmark": "edge_e2e",
            "devices": args.devices,
            "points_per_device": args.points,
            "seconds": args.seconds,
            "max_points_per_s": round(rate),
            "paced_points_per_s": round(paced_rate),
            "latency_p50_s": round(p50, 3),
            "latency_p95_s": round(p95, 3),
            "latency_samples": int(lat.size),
            "mosquitto_loopback_msgs_per_s": round(loopback),
            "targets_met": rate >= 50_000 and p95 < 2.0,
        }
    )


if __name__ == "__main__":
    main()
