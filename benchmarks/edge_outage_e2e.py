"""An uplink outage end to end: simulated devices -> edge gateway (own process) -> TCP proxy
(own process) -> Mosquitto -> platform (this process) -> store.

The devices produce ``--devices`` x ``--points`` points/s (10,000 by default), each point a
counter stepping by one per poll, so its values are sequence numbers. After ``--before-s``
the proxy drops every connection and refuses new ones for ``--outage-s`` (default 5 min),
then forwards again. Reported:

- replay rate: rows/s arriving in the store from the restore until the chain caught up
  (newest sample of every probed point less than 2 s old), backlog and live data together;
- after ``--after-s`` more the gateway stops (gracefully); the store must then hold, per
  point, each sequence number at most once, and store plus what is still in the gateway's
  buffer must be exactly 1..N — 0 lost, 0 duplicated.

    python benchmarks/edge_outage_e2e.py [--outage-s 300] [--devices 100] [--points 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from _common import emit, note
from _edge_rig import (
    Proxy,
    gateway_config,
    gateway_process,
    platform,
    store_rows,
    store_values,
    wait_drained,
)
from yugong.edge.buffer import StoreForwardBuffer


def buffered_values(path: Path) -> dict[tuple[str, str], list[np.ndarray]]:
    """Values still held in the gateway's buffer, per (device, point)."""
    out: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    with StoreForwardBuffer(path, max_bytes=1 << 40) as buf:
        after = 0
        while entries := buf.peek(100_000, after_id=after):
            for entry_id, table in entries:
                after = entry_id
                g = table.group_by(["device", "point"]).aggregate([("value", "list")])
                for d, p, v in zip(
                    g.column("device").to_pylist(),
                    g.column("point").to_pylist(),
                    g.column("value_list").to_pylist(),
                    strict=True,
                ):
                    out[(d, p)].append(np.array(v, dtype=np.float64))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outage-s", type=float, default=300.0)
    ap.add_argument("--devices", type=int, default=100)
    ap.add_argument("--points", type=int, default=100)
    ap.add_argument("--before-s", type=float, default=10.0)
    ap.add_argument("--after-s", type=float, default=10.0)
    ap.add_argument("--catchup-timeout-s", type=float, default=600.0)
    args = ap.parse_args()
    rate = args.devices * args.points  # every device polled once a second

    with tempfile.TemporaryDirectory(prefix="yugong-edge-outage-") as tmp:
        work = Path(tmp)
        run = f"{time.time_ns()}"
        proxy = Proxy()
        try:
            with platform(work / "platform", run) as rig:
                cfg, devices, points = gateway_config(
                    rig,
                    work,
                    devices=args.devices,
                    points=args.points,
                    interval_s=1.0,
                    broker=("127.0.0.1", proxy.port),
                )
                with gateway_process(cfg):
                    series = rig.wait_series(devices, points)
                    ids = list(series.values())
                    time.sleep(args.before_s)
                    rows_cut, t_cut = store_rows(rig, ids), time.perf_counter()
                    proxy.cut()
                    note(f"uplink cut after {rows_cut:,} rows; outage {args.outage_s:.0f} s")
                    time.sleep(args.outage_s)
                    rows_restore, t_restore = store_rows(rig, ids), time.perf_counter()
                    proxy.restore()
                    note(f"uplink restored ({rows_restore - rows_cut:,} rows during the cut)")
                    # Caught up: fewer than 2 s of production missing from the store (death
                    # marks make `latest` look fresh, so rows are counted, not timestamps).
                    deadline = t_restore + args.catchup_timeout_s
                    caught_up = True
                    t_first, rows_first = 0.0, rows_restore
                    while True:
                        time.sleep(0.25)
                        rows_now = store_rows(rig, ids)
                        if not t_first and rows_now > rows_restore:  # reconnected, flowing
                            t_first, rows_first = time.perf_counter(), rows_now
                        produced = (time.perf_counter() - t_cut) * rate
                        behind_s = (produced - (rows_now - rows_cut)) / rate
                        if behind_s < 2.0:
                            break
                        if time.perf_counter() > deadline:
                            note(f"not caught up in time: still {behind_s:.1f} s behind")
                            caught_up = False
                            break
                    t_caught = time.perf_counter()
                    rows_caught = store_rows(rig, ids)
                    reconnect_s = t_first - t_restore
                    replay_s = t_caught - t_first
                    replay = (rows_caught - rows_first) / max(replay_s, 1e-9)
                    note(
                        f"flowing {reconnect_s:.1f} s after the restore, caught up "
                        f"{replay_s:.1f} s later: {replay:,.0f} points/s"
                    )
                    time.sleep(args.after_s)
                # The gateway stopped: what it still held is in its buffer file.
                wait_drained(rig, ids)
                held = buffered_values(work / "edge-buffer.sqlite")
                lost = dup = stored = expected = in_buffer = nulls = 0
                values = store_values(rig, ids)
                for key, s in series.items():
                    v = values[s]
                    nulls += int(np.isnan(v).sum())  # e.g. bad-quality marks of a death
                    v = v[~np.isnan(v)]
                    stored += v.size
                    u = np.unique(v)
                    dup += v.size - u.size
                    extra = held.get(key)
                    if extra:
                        b = np.concatenate(extra)
                        in_buffer += b.size
                        u = np.union1d(u, b)
                    n = int(u.max()) if u.size else 0
                    expected += n
                    lost += n - int(np.isin(np.arange(1, n + 1), u).sum())
                    lost += int((u < 1).sum() + (u != np.round(u)).sum())  # not a sequence no.
        finally:
            proxy.close()
    note(
        f"stored {stored:,} of {expected:,} produced, {in_buffer:,} still buffered; "
        f"lost {lost}, duplicated {dup}, {nulls} null rows"
    )
    emit(
        {
            "benchmark": "edge_outage_e2e",
            "devices": args.devices,
            "points_per_device": args.points,
            "rate_points_per_s": rate,
            "outage_s": args.outage_s,
            "rows_during_outage": rows_restore - rows_cut,
            "produced": expected,
            "stored": stored,
            "still_buffered": in_buffer,
            "null_rows": nulls,
            "lost": lost,
            "duplicated": dup,
            "caught_up": caught_up,
            "reconnect_s": round(reconnect_s, 2),
            "replay_s": round(replay_s, 2),
            "replay_points_per_s": round(replay),
            "targets_met": lost == 0 and dup == 0 and caught_up,
        }
    )


if __name__ == "__main__":
    main()
