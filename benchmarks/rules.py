"""Rule evaluation throughput: the rule engine on sample batches vs raw NumPy, same run.

1,000 rules of mixed kinds over 10,000 series (5,000 devices with two properties each;
each rule targets 20 devices, as a product-wide rule does), fed 1 Hz plant signals in
batches of ``--batch`` samples, with a tick after every batch. A rule evaluation is one
sample read by one (rule, device) instance. The baseline is raw NumPy doing one comparison
per evaluation on the same (sample, instance) pairs, already gathered (and, second figure,
including finding and gathering them from the batches).

    python benchmarks/rules.py [--rules 1000] [--series 10000] [--batch 50000] [--seconds 120]

Phase two (:func:`latency_phase`, skip with ``--no-latency``): a whole platform on real
sockets ingesting ``--latency-rate`` (50,000) points/s of Arrow telemetry over HTTP with
``--latency-rules`` threshold rules; ``p95_ingest_to_alarm_ms`` is the 95th percentile from
sending a sample that crosses a threshold to its alarm being listed by the alarms API.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))

from _common import US, emit, note, signal_batches
from yugong.platform.rules.engine import RuleEngine
from yugong.platform.rules.spec import RuleSpec
from yugong.platform.rules.types import ActiveRule

MIX = [  # (share, condition)
    (0.30, {"kind": "threshold", "op": ">", "value": 60}),
    (0.20, {"kind": "sustained", "op": ">", "value": 60, "for": "10s"}),
    (0.10, {"kind": "rate", "op": ">", "value": 0.5, "abs": True}),
    (0.10, {"kind": "deviation", "value": 3, "window": "1m", "min_samples": 20}),
    (0.10, {"kind": "count", "op": ">", "value": 60, "count": 5, "window": "30s"}),
    (0.10, {"kind": "state_change"}),
    (0.05, {"kind": "no_data", "for": "10s"}),
    (0.05, {"kind": "expression", "expression": "a > 60 and b < 50"}),
]


def make_rules(n_rules: int, n_series: int, per_rule: int, seed: int = 3) -> list[ActiveRule]:
    rng = np.random.default_rng(seed)
    n_dev = n_series // 2
    # Device d has properties a (series 2d + 1) and b (series 2d + 2).
    kinds = np.repeat(np.arange(len(MIX)), [round(s * n_rules) for s, _ in MIX])
    rules = []
    for rid, k in enumerate(kinds[:n_rules].tolist(), start=1):
        cond: dict[str, Any] = dict(MIX[k][1])
        if cond["kind"] not in ("expression", "no_data"):
            cond["property"] = "a" if rid % 2 else "b"
        devices = rng.choice(n_dev, size=per_rule, replace=False).tolist()
        spec = RuleSpec.model_validate(
            {
                "name": f"rule {rid}",
                "target": {"product": "p"},
                "condition": cond,
                "clear": {"hysteresis": 1} if cond["kind"] == "threshold" else {},
            }
        )
        series = {d: {"a": 2 * d + 1, "b": 2 * d + 2} for d in devices}
        rules.append(ActiveRule(rid, 1, 1, spec, series))
    return rules


def raw_numpy(engine: RuleEngine, batches: list[Any]) -> tuple[float, float, int]:
    """One comparison per (sample, instance) pair: (seconds with the pairs gathered
    beforehand, seconds including finding and gathering them from the batches, pairs)."""
    keys, first, counts = engine._keys, engine._first, engine._counts
    thr = np.random.default_rng(1).uniform(40, 60, len(engine._sub_series))

    def gather(b: Any) -> tuple[Any, Any]:
        series = b.column("series").to_numpy().astype(np.int64)
        k = np.minimum(np.searchsorted(keys, series), len(keys) - 1)
        rows = np.flatnonzero(keys[k] == series)
        c = counts[k[rows]]
        row = np.repeat(rows, c)
        starts = np.repeat(first[k[rows]], c)
        sub = starts + np.arange(int(c.sum())) - np.repeat(np.cumsum(c) - c, c)
        vals = np.asarray(b.column("value").to_numpy(), dtype=np.float64)
        return vals[row], thr[sub]

    t = time.perf_counter()
    work = [gather(b) for b in batches]
    gather_s = time.perf_counter() - t
    t = time.perf_counter()
    hits = 0
    for x, v in work:
        hits += int(np.count_nonzero(x > v))
    compare_s = time.perf_counter() - t
    return compare_s, gather_s + compare_s, sum(len(x) for x, _ in work)


def latency_phase(devices: int, rules: int, rate: int, seconds: int) -> dict[str, Any]:
    """Phase two, on a whole platform (HTTP server, ingest, writer, bus, rule runner,
    alarm service, SQLite/DuckDB under a scratch directory): ``rate`` points/s of Arrow
    telemetry over HTTP, 10 properties per device, ``rules`` threshold rules on single
    devices. Ten times a second one sample in the stream crosses a rule's threshold; its
    latency is from the request carrying it being sent to the alarm being listed by
    ``GET /api/v1/alarms`` (polled every 10 ms)."""
    import io
    import socket
    import tempfile
    import threading
    from pathlib import Path

    import httpx
    import pyarrow as pa

    from yugong.core.settings import Settings
    from yugong.server import BackgroundServer

    def port() -> int:
        with socket.socket() as sk:
            sk.bind(("127.0.0.1", 0))
            return int(sk.getsockname()[1])

    password = "Bench-Pass-2026!"
    tmp = tempfile.TemporaryDirectory(prefix="yugong-rules-")
    settings = Settings(
        data_dir=Path(tmp.name),
        admin_password=password,
        http_port=port(),
        mqtt_port=port(),
        ingest_flush_ms=20,
        secret_key="b" * 40,
    )
    props = [f"p{k}" for k in range(10)]
    tsl = {
        "profile": {"productKey": "bench"},
        "properties": [
            {
                "identifier": p,
                "name": p,
                "accessMode": "r",
                "dataType": {"type": "double", "specs": {"min": "-1e9", "max": "1e9"}},
            }
            for p in props
        ],
        "events": [],
        "services": [],
    }
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=60) as c:

        def call(method: str, path: str, h: dict[str, str] | None = None, **kw: Any) -> Any:
            r = c.request(method, path, headers=h, **kw)
            if r.status_code >= 300:
                raise RuntimeError(f"{method} {path}: {r.status_code} {r.text}")
            return r.json() if r.content else None

        def login(user: str) -> dict[str, str]:
            body = call("POST", "/api/v1/auth/login", json={"username": user, "password": password})
            return {"Authorization": f"Bearer {body['access_token']}"}

        admin = login("admin")
        tenant = call("POST", "/api/v1/tenants", admin, json={"name": "Rules Bench"})
        call(
            "POST",
            "/api/v1/users",
            admin,
            json={
                "username": "operator",
                "password": password,
                "role": "tenant_admin",
                "tenant_id": tenant["id"],
            },
        )
        h = login("operator")
        product = call("POST", "/api/v1/products/import", h, params={"name": "Bench"}, json=tsl)
        ids = [
            call("POST", "/api/v1/devices", h, json={"name": f"d{k}", "product_id": product["id"]})[
                "id"
            ]
            for k in range(devices)
        ]
        for k in range(rules):
            call(
                "POST",
                "/api/v1/rules",
                h,
                json={
                    "name": f"r{k}",
                    "target": {"device": ids[k % devices]},
                    "condition": {
                        "kind": "threshold",
                        "property": props[(k // devices) % 10],
                        "op": ">",
                        "value": 1000 + k,
                    },
                },
            )
        runner = srv.platform.rules_runner
        deadline = time.monotonic() + 60
        while runner is not None and time.monotonic() < deadline:
            if len(getattr(runner, "_active", [])) >= rules:
                break
            time.sleep(0.1)
        note(f"platform ready: {devices} devices, {rules} rules")

        per = rate // 10
        dev = np.repeat(np.asarray(ids, np.int64), 10)
        prop = np.tile(np.asarray(props, object), devices)
        rng = np.random.default_rng(9)
        latencies: list[float] = []
        pending: dict[int, float] = {}
        seen: set[int] = set()
        lock = threading.Lock()
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                got = call("GET", "/api/v1/alarms", h, params={"limit": 200})
                now = time.perf_counter()
                with lock:
                    for a in got["items"]:
                        if a["id"] in seen:
                            continue
                        seen.add(a["id"])
                        sent = pending.pop(a["rule_id"], None)
                        if sent is not None:
                            latencies.append(now - sent)
                time.sleep(0.01)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        t_start = time.perf_counter()
        probes = 0
        for step in range(seconds * 10):
            n = min(per, len(dev))
            pick = rng.integers(0, len(dev), n)
            ts = np.full(n, int(time.time() * 1e6), np.int64) + np.arange(n)
            value = rng.normal(50, 5, n)
            k = step % rules  # the probe: rule k's device and property, over its threshold
            pick[0] = ids.index(ids[k % devices]) * 10 + (k // devices) % 10
            value[0] = 1e6
            table = pa.table(
                {
                    "device": pa.array(dev[pick]),
                    "property": pa.array(prop[pick], pa.string()),
                    "ts": pa.array(ts, pa.timestamp("us")),
                    "value": pa.array(value),
                }
            )
            sink = io.BytesIO()
            with pa.ipc.new_stream(sink, table.schema) as w:
                w.write_table(table)
            rule_id = None
            with lock:
                rule_id = _rule_id(c, h, k, call)
                pending[rule_id] = time.perf_counter()
            call("POST", "/api/v1/telemetry", {**h, "content-type": ARROW}, content=sink.getvalue())
            probes += 1
            wait = t_start + (step + 1) / 10 - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
        sent_rate = probes * per / (time.perf_counter() - t_start)
        time.sleep(2)
        stop.set()
        poller.join()
    tmp.cleanup()
    lat = sorted(latencies)
    return {
        "latency_points_per_s": round(sent_rate),
        "latency_probes": probes,
        "latency_alarms_seen": len(lat),
        "p50_ingest_to_alarm_ms": round(lat[len(lat) // 2] * 1000, 1) if lat else None,
        "p95_ingest_to_alarm_ms": round(lat[int(len(lat) * 0.95)] * 1000, 1) if lat else None,
    }


ARROW = "application/vnd.apache.arrow.stream"
_RULE_IDS: dict[int, int] = {}


def _rule_id(c: Any, h: dict[str, str], k: int, call: Any) -> int:
    """The id of the k-th rule created (by name), looked up once."""
    if not _RULE_IDS:
        offset = 0
        while True:
            page = call("GET", "/api/v1/rules", h, params={"limit": 500, "offset": offset})
            for r in page["items"]:
                _RULE_IDS[int(r["name"][1:])] = r["id"]
            offset += len(page["items"])
            if not page["items"] or offset >= page["total"]:
                break
    return _RULE_IDS[k]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--per-rule", type=int, default=20)
    ap.add_argument("--batch", type=int, default=50000)
    ap.add_argument("--seconds", type=int, default=120)
    ap.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--latency-devices", type=int, default=200)
    ap.add_argument("--latency-rules", type=int, default=1000)
    ap.add_argument("--latency-rate", type=int, default=50_000)
    ap.add_argument("--latency-seconds", type=int, default=20)
    args = ap.parse_args()

    rules = make_rules(args.rules, args.series, args.per_rule)
    engine = RuleEngine()
    t = time.perf_counter()
    engine.set_rules(rules)
    set_s = time.perf_counter() - t
    batches = list(signal_batches(args.series, args.seconds, rows_per_batch=args.batch))
    note(f"{len(rules)} rules, {len(batches)} batches of {batches[0].num_rows} samples")
    warm = min(2, len(batches) - 1)
    for b in batches[:warm]:
        engine.process(b)
    evals0 = engine.evaluations
    transitions = 0
    per_batch: list[float] = []
    t_all = time.perf_counter()
    for b in batches[warm:]:
        t = time.perf_counter()
        out = engine.process(b)
        now = int(b.column("ts").to_numpy().max()) + US
        out += engine.tick(now)
        per_batch.append(time.perf_counter() - t)
        transitions += len(out)
    total_s = time.perf_counter() - t_all
    evals = engine.evaluations - evals0
    raw_s, routed_s, raw_evals = raw_numpy(engine, batches[warm:])
    t = time.perf_counter()
    snap = engine.snapshot()
    snap_s = time.perf_counter() - t
    rate = evals / total_s
    raw_rate = raw_evals / raw_s
    phase2: dict[str, Any] = {"p95_ingest_to_alarm_ms": None}
    if args.latency:
        phase2 = latency_phase(
            args.latency_devices, args.latency_rules, args.latency_rate, args.latency_seconds
        )
    emit(
        {
            "benchmark": "rules",
            "rules": len(rules),
            "series": args.series,
            "batch_samples": batches[0].num_rows,
            "batches": len(per_batch),
            "evaluations": evals,
            "evaluations_per_s": round(rate),
            "target_evaluations_per_s": 1_000_000,
            "batch_ms_p50": round(float(np.median(per_batch)) * 1000, 2),
            "batch_ms_max": round(max(per_batch) * 1000, 2),
            "raw_numpy_evaluations_per_s": round(raw_rate),
            "engine_vs_raw_numpy": round(raw_rate / rate, 1),
            "raw_numpy_with_routing_evaluations_per_s": round(raw_evals / routed_s),
            "engine_vs_raw_numpy_with_routing": round(raw_evals / routed_s / rate, 1),
            "transitions": transitions,
            "late_samples": engine.late,
            "set_rules_ms": round(set_s * 1000, 1),
            "snapshot_ms": round(snap_s * 1000, 1),
            "snapshot_bytes": sum(len(b) for _, b in snap.values()),
            **phase2,
        }
    )


if __name__ == "__main__":
    main()
