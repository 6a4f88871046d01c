"""The rule engine: every condition kind with its edge cases, state across restarts, many
rules and devices in one batch (checked against a sample-by-sample reference)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from yugong.core.samples import SAMPLE_SCHEMA
from yugong.platform.rules.engine import RuleEngine
from yugong.platform.rules.spec import RuleSpec
from yugong.platform.rules.types import ActiveRule, Transition

S = 1_000_000
T0 = 1_700_000_000 * S
Row = tuple[int, float, float | str | None]  # series, seconds after T0, value (or text)


def batch(rows: Sequence[Row]) -> pa.Table:
    series = [r[0] for r in rows]
    ts = [T0 + round(r[1] * S) for r in rows]
    value = [float(r[2]) if isinstance(r[2], int | float) else None for r in rows]
    text = [r[2] if isinstance(r[2], str) else None for r in rows]
    quality = [0 if r[2] is not None else 2 for r in rows]
    return pa.Table.from_arrays(
        [
            pa.array([1] * len(rows), pa.int32()),
            pa.array(series, pa.int32()),
            pa.array(ts, pa.int64()),
            pa.array(value, pa.float64()),
            pa.array(text, pa.string()),
            pa.array(quality, pa.uint8()),
        ],
        schema=SAMPLE_SCHEMA,
    )


def rule(
    condition: dict[str, Any],
    *,
    rid: int = 1,
    version: int = 1,
    clear: dict[str, Any] | None = None,
    series: dict[int, dict[str, int]] | None = None,
) -> ActiveRule:
    spec = RuleSpec.model_validate(
        {
            "name": f"r{rid}",
            "target": {"product": "p"},
            "condition": condition,
            "clear": clear or {},
        }
    )
    return ActiveRule(rid, version, 1, spec, series or {7: {"t": 10}})


def engine(*rules: ActiveRule) -> RuleEngine:
    e = RuleEngine()
    e.set_rules(list(rules))
    return e


def brief(ts: Sequence[Transition]) -> list[tuple[str, float]]:
    """('+' raised / '-' cleared, seconds after T0)."""
    return [("+" if t.raised else "-", (t.at_us - T0) / S) for t in ts]


def feed(
    e: RuleEngine,
    values: Sequence[float | None],
    series: int = 10,
    step: float = 1.0,
    start: float = 0.0,
) -> list[tuple[str, float]]:
    return brief(e.process(batch([(series, start + k * step, v) for k, v in enumerate(values)])))


# ---------------------------------------------------------------------------- threshold


@pytest.mark.parametrize(
    ("cond", "values", "expected"),
    [
        ({"op": ">", "value": 80}, [79, 80, 81, 80, 81], [("+", 2), ("-", 3), ("+", 4)]),
        ({"op": ">=", "value": 80}, [79, 80, 81, 79.9], [("+", 1), ("-", 3)]),
        ({"op": "<", "value": 10}, [11, 10, 9, 10], [("+", 2), ("-", 3)]),
        ({"op": "<=", "value": 10}, [11, 10, 9, 10.1], [("+", 1), ("-", 3)]),
        (
            {"op": "inside", "low": 5, "high": 10},
            [4, 5, 10, 10.5, 7],
            [("+", 1), ("-", 3), ("+", 4)],
        ),
        (
            {"op": "outside", "low": 5, "high": 10},
            [7, 4.9, 5, 11, 10],
            [("+", 1), ("-", 2), ("+", 3), ("-", 4)],
        ),
    ],
)
def test_threshold_ops(cond: dict[str, Any], values: list[float], expected: list[Any]) -> None:
    e = engine(rule({"kind": "threshold", "property": "t", **cond}))
    assert feed(e, values) == expected


def test_threshold_hysteresis_does_not_flap() -> None:
    flapping = [79, 80.5, 79.5, 80.5, 78.5, 81, 79, 78, 80.5]
    plain = engine(rule({"kind": "threshold", "property": "t", "op": ">", "value": 80}))
    assert len(feed(plain, flapping)) == 7  # without hysteresis every crossing counts
    e = engine(
        rule(
            {"kind": "threshold", "property": "t", "op": ">", "value": 80}, clear={"hysteresis": 2}
        )
    )
    assert feed(e, flapping) == [("+", 1), ("-", 7), ("+", 8)]


def test_hysteresis_below_and_ranges() -> None:
    e = engine(
        rule(
            {"kind": "threshold", "property": "t", "op": "<", "value": 10}, clear={"hysteresis": 1}
        )
    )
    assert feed(e, [9, 10.5, 9.5, 11, 9]) == [("+", 0), ("-", 3), ("+", 4)]
    e = engine(
        rule(
            {"kind": "threshold", "property": "t", "op": "outside", "low": 0, "high": 10},
            clear={"hysteresis": 1},
        )
    )
    assert feed(e, [11, 9.5, 9, 12]) == [("+", 0), ("-", 2), ("+", 3)]


def test_out_of_order_in_batch_and_late_across_batches() -> None:
    r = rule({"kind": "threshold", "property": "t", "op": ">", "value": 80})
    rows: list[Row] = [(10, k, v) for k, v in enumerate([70, 85, 70, 90, 70])]
    ordered = engine(r).process(batch(rows))
    shuffled = engine(r).process(batch([rows[k] for k in (4, 2, 0, 3, 1)]))
    assert brief(shuffled) == brief(ordered) == [("+", 1), ("-", 2), ("+", 3), ("-", 4)]
    e = engine(r)
    e.process(batch(rows))
    assert e.late == 0
    # Older than what the series already saw: ignored and counted, even though 99 > 80.
    assert e.process(batch([(10, 2.5, 99), (10, 3.5, 99)])) == []
    assert e.late == 2
    assert feed(e, [95], start=6) == [("+", 6)]


def test_bad_quality_samples_are_ignored() -> None:
    e = engine(rule({"kind": "threshold", "property": "t", "op": ">", "value": 80}))
    assert feed(e, [90, None, 70]) == [("+", 0), ("-", 2)]


def test_manual_clear_never_emits_cleared() -> None:
    e = engine(
        rule({"kind": "threshold", "property": "t", "op": ">", "value": 80}, clear={"manual": True})
    )
    assert feed(e, [90, 95, 70, 91]) == [("+", 0), ("+", 3)]


# ---------------------------------------------------------------------------- sustained

SUSTAINED = {"kind": "sustained", "property": "t", "op": ">", "value": 80, "for": "10s"}


def test_sustained_raised_when_duration_complete() -> None:
    e = engine(rule(SUSTAINED))
    # Above from t=8, seen until 16: not complete yet (a value holds until the next sample).
    assert feed(e, [70, 70, 81, 82, 83], step=4) == []
    assert feed(e, [84], start=20) == [("+", 18)]
    e = engine(rule(SUSTAINED))
    got = feed(e, [70, 81, 85, 90, 88, 70], step=3)  # above from 3 to 15
    assert got == [("+", 13), ("-", 15)]


def test_sustained_interrupted_resets() -> None:
    e = engine(rule(SUSTAINED))
    # Above for 8 s, one sample below, above for 8 s again: never 10 s without a break.
    values = [81] * 9 + [79] + [81] * 9
    assert feed(e, values) == []
    # The run from t=10 completes at t=20 once a later sample shows it held.
    assert feed(e, [81, 81], start=19) == [("+", 20)]


def test_sustained_completes_on_tick_and_clears_with_hysteresis() -> None:
    e = engine(rule(SUSTAINED, clear={"hysteresis": 3}))
    assert feed(e, [70, 81, 82]) == []
    assert brief(e.tick(T0 + 10 * S)) == []  # 9 s so far
    assert brief(e.tick(T0 + 11 * S)) == [("+", 11)]
    assert brief(e.tick(T0 + 30 * S)) == []  # raised once
    assert feed(e, [79, 78, 77.5, 77, 90], start=20) == [("-", 23)]


def test_sustained_run_spanning_batches_and_gaps() -> None:
    e = engine(rule(SUSTAINED))
    assert feed(e, [81, 82], start=0) == []
    # A gap: the value held from 1 s to 30 s; the run completed at 10 s.
    assert feed(e, [70], start=30) == [("+", 10), ("-", 30)]


def test_sustained_restart_in_the_middle_of_a_duration() -> None:
    r = rule(SUSTAINED)
    e = engine(r)
    assert feed(e, [70, 81, 82, 83]) == []  # running since 1 s
    saved = e.snapshot()
    # A new process: restore before the rules are set (as at start-up) ...
    fresh = RuleEngine()
    fresh.restore(saved)
    fresh.set_rules([r])
    assert feed(fresh, [84, 85], start=4) == []
    assert brief(fresh.tick(T0 + 11 * S)) == [("+", 11)]
    # ... and without the saved state the run starts over.
    cold = engine(r)
    assert feed(cold, [84, 85], start=4) == []
    assert brief(cold.tick(T0 + 11 * S)) == []
    assert brief(cold.tick(T0 + 14 * S)) == [("+", 14)]


def test_restore_ignores_other_versions() -> None:
    e = engine(rule(SUSTAINED))
    feed(e, [81, 82])
    saved = e.snapshot()
    newer = engine(rule(SUSTAINED, version=2))
    newer.restore(saved)
    assert brief(newer.tick(T0 + 20 * S)) == []


# ---------------------------------------------------------------------------- rate


def test_rate_uses_actual_time_between_samples() -> None:
    e = engine(rule({"kind": "rate", "property": "t", "op": ">", "value": 2}))
    # +10 over 10 s (1/s), then +10 over 2 s (5/s), then a gap: +30 over 30 s (1/s).
    rows: list[Row] = [(10, 0, 0), (10, 10, 10), (10, 12, 20), (10, 42, 50)]
    got = e.process(batch(rows))
    assert brief(got) == [("+", 12), ("-", 42)]
    assert got[0].value == pytest.approx(5.0)


def test_rate_abs_first_sample_and_same_time() -> None:
    e = engine(rule({"kind": "rate", "property": "t", "op": ">=", "value": 3, "abs": True}))
    assert e.process(batch([(10, 0, 100)])) == []  # nothing to compare with
    got = e.process(batch([(10, 1, 96), (10, 1, 0), (10, 2, 95)]))
    # -4/s raises (magnitude); the duplicate time decides nothing; then 95 - 0 = 95/s.
    assert brief(got) == [("+", 1)]
    assert brief(e.process(batch([(10, 3, 95)]))) == [("-", 3)]


# ---------------------------------------------------------------------------- deviation


def test_deviation_after_min_samples_and_clears_within_band() -> None:
    e = engine(
        rule({"kind": "deviation", "property": "t", "value": 3, "window": "1m", "min_samples": 10})
    )
    assert feed(e, [200.0], start=-100) == []  # no baseline yet: no alarm
    assert feed(e, [49, 51] * 4 + [200], start=1) == []  # 8 samples < min_samples
    assert feed(e, [49, 51] * 15, start=70) == []  # mean 50, deviation 1: z = 1
    got = feed(e, [60.0, 50.2, 49.9], start=100)
    assert got == [("+", 100), ("-", 101)]


def test_deviation_window_slides() -> None:
    e = engine(
        rule({"kind": "deviation", "property": "t", "value": 3, "window": "10s", "min_samples": 5})
    )
    feed(e, [50, 51, 49, 50, 51, 49, 50, 51], start=0)
    # Long after, the old samples left the window: too few to judge, no alarm.
    assert feed(e, [90], start=100) == []
    # A new baseline around 90 forms; 90.5 is no deviation from it.
    assert feed(e, [91, 89, 90, 91, 89, 90.5], start=101) == []


# ---------------------------------------------------------------------------- expression


def test_expression_over_several_properties() -> None:
    r = rule(
        {"kind": "expression", "expression": "temp > 80 and door < 1"},
        series={7: {"temp": 10, "door": 11}, 8: {"temp": 20, "door": 21}},
    )
    e = engine(r)
    rows: list[Row] = [
        (10, 0, 85),  # door unknown (NaN): false
        (11, 1, 0),  # now true (85 and door closed)
        (10, 2, 90),
        (11, 2, 1),  # same time: seen together, false; no blip
        (11, 3, 0),
        (20, 3, 85),
        (21, 3, 0),  # the other device
        (10, 4, 70),
    ]
    got = e.process(batch(rows))
    assert [(t.device, *b) for t, b in zip(got, brief(got), strict=True)] == [
        (7, "+", 1),
        (7, "-", 2),
        (7, "+", 3),
        (8, "+", 3),
        (7, "-", 4),
    ]
    # The latest values are kept: only door changes, temp is still 70.
    assert brief(e.process(batch([(11, 5, 1), (10, 6, 99)]))) == []


def test_expression_nan_is_false() -> None:
    e = engine(
        rule(
            {"kind": "expression", "expression": "sqrt(t) > 1 or t / 0 > 1"}, series={7: {"t": 10}}
        )
    )
    assert feed(e, [-4, 0, 4]) == [("+", 2)]


# ---------------------------------------------------------------------------- no_data


def test_no_data_tick_and_recovery() -> None:
    e = engine(
        rule({"kind": "no_data", "for": "30s"}, series={7: {"a": 10, "b": 11}, 8: {"a": 20}})
    )
    e.process(batch([(10, 0, 1), (20, 0, 1)]))
    assert brief(e.tick(T0 + 20 * S)) == []
    e.process(batch([(11, 25, 1)]))  # any property of device 7 counts
    got = e.tick(T0 + 40 * S)
    assert [(t.device, *b) for t, b in zip(got, brief(got), strict=True)] == [(8, "+", 30)]
    assert brief(e.tick(T0 + 50 * S)) == []  # raised once
    got = e.process(batch([(20, 52, None), (20, 53, 1)]))  # bad quality is not data
    assert [(t.device, *b) for t, b in zip(got, brief(got), strict=True)] == [(8, "-", 53)]


def test_no_data_gap_inside_a_batch_and_property() -> None:
    e = engine(
        rule({"kind": "no_data", "property": "a", "for": "10s"}, series={7: {"a": 10, "b": 11}})
    )
    # b's samples do not count for a rule on a; the gap 5 -> 30 is longer than 10 s.
    got = e.process(batch([(10, 0, 1), (10, 5, 1), (11, 12, 1), (10, 30, 1), (10, 35, 1)]))
    assert brief(got) == [("+", 15), ("-", 30)]


def test_no_data_device_never_heard_from() -> None:
    e = engine(rule({"kind": "no_data", "for": "10s"}))
    assert brief(e.tick(T0)) == []  # the clock starts at the first tick
    assert brief(e.tick(T0 + 10 * S)) == [("+", 10)]


# ---------------------------------------------------------------------------- state_change


def test_state_change_any_and_from_to() -> None:
    e = engine(rule({"kind": "state_change", "property": "t"}))
    assert feed(e, [1, 1, 2, 2, 3, 1]) == [("+", 2), ("-", 3), ("+", 4)]
    e = engine(rule({"kind": "state_change", "property": "t", "from": 1, "to": 3}))
    assert feed(e, [1, 2, 1, 3, 3, 1, 3, 2]) == [("+", 3), ("-", 4), ("+", 6), ("-", 7)]


def test_state_change_text_values_and_restart() -> None:
    r = rule({"kind": "state_change", "property": "t", "to": "fault"})
    e = engine(r)
    got = e.process(batch([(10, 0, "run"), (10, 1, "run"), (10, 2, "fault"), (10, 3, "idle")]))
    assert brief(got) == [("+", 2), ("-", 3)]
    fresh = RuleEngine()
    fresh.set_rules([r])
    fresh.restore(e.snapshot())
    # The last state ("idle") survived: a change to fault raises at once.
    assert brief(fresh.process(batch([(10, 4, "fault")]))) == [("+", 4)]


# ---------------------------------------------------------------------------- count


def test_count_in_window() -> None:
    e = engine(
        rule(
            {"kind": "count", "property": "t", "op": ">", "value": 80, "count": 2, "window": "10s"}
        )
    )
    # Matches at 0, 3, 6 -> 3 within 10 s at t=6; at t=11 only 3 and 6 remain.
    got = e.process(batch([(10, 0, 90), (10, 3, 90), (10, 4, 10), (10, 6, 90), (10, 11, 10)]))
    assert brief(got) == [("+", 6), ("-", 11)]
    assert got[0].value == 3
    # Three more matches; then no sample: the count drops when the 2nd-newest's window ends.
    assert feed(e, [90, 90, 90], start=20) == [("+", 22)]
    assert brief(e.tick(T0 + 25 * S)) == []
    assert brief(e.tick(T0 + 40 * S)) == [("-", 30)]


def test_count_window_survives_restart() -> None:
    r = rule({"kind": "count", "property": "t", "op": ">", "value": 80, "count": 2, "window": "1m"})
    e = engine(r)
    feed(e, [90, 90])
    fresh = RuleEngine()
    fresh.set_rules([r])
    fresh.restore(e.snapshot())
    assert feed(fresh, [90], start=5) == [("+", 5)]


# ---------------------------------------------------------------------------- rule sets


def test_set_rules_keeps_state_of_unchanged_rules_only() -> None:
    a = rule(SUSTAINED, rid=1)
    b = rule({**SUSTAINED, "for": "5s"}, rid=2)
    e = engine(a, b)
    feed(e, [81, 82, 83])
    e.set_rules([a, rule({**SUSTAINED, "for": "5s"}, rid=2, version=2)])
    got = e.tick(T0 + 10 * S)
    assert [(t.rule, t.version) for t in got] == [(1, 1)]  # rule 2 started afresh


def test_disabled_rules_do_nothing() -> None:
    r = rule({"kind": "threshold", "property": "t", "op": ">", "value": 1})
    off = ActiveRule(r.id, r.version, 1, r.spec.model_copy(update={"enabled": False}), r.series)
    assert engine(off).process(batch([(10, 0, 5)])) == []


def _reference(values: np.ndarray, op: str, v: float, h: float) -> list[tuple[bool, int]]:
    """Sample by sample, as a person would: (raised, index) for one series."""
    out, active = [], False
    for k, x in enumerate(values):
        hit = x > v if op == ">" else x < v
        clear = x <= v - h if op == ">" else x >= v + h
        if not active and hit:
            active = True
            out.append((True, k))
        elif active and clear:
            active = False
            out.append((False, k))
    return out


def test_many_rules_and_devices_in_one_batch() -> None:
    rng = np.random.default_rng(5)
    n_dev, n_rules, n_t = 300, 40, 50
    series = {d: {"t": 1000 + d} for d in range(n_dev)}
    rules = []
    params = []
    for rid in range(1, n_rules + 1):
        devs = rng.choice(n_dev, size=60, replace=False).tolist()
        op = ">" if rid % 2 else "<"
        v, h = float(rng.uniform(40, 60)), float(rng.choice([0, 1, 5]))
        rules.append(
            rule(
                {"kind": "threshold", "property": "t", "op": op, "value": v},
                rid=rid,
                clear={"hysteresis": h},
                series={d: series[d] for d in devs},
            )
        )
        params.append((rid, devs, op, v, h))
    values = rng.normal(50, 10, (n_t, n_dev))
    rows: list[Row] = [(1000 + d, t, float(values[t, d])) for t in range(n_t) for d in range(n_dev)]
    order = rng.permutation(len(rows))
    e = engine(*rules)
    half = len(rows) // 2
    # Two batches cut by arrival, each in a random order; nothing arrives late here.
    first = sorted(rows, key=lambda r: r[1])
    got = e.process(batch([first[k] for k in order if k < half]))
    got += e.process(batch([first[k] for k in order if k >= half]))
    assert e.evaluations == n_t * 60 * n_rules
    expected = set()
    for rid, devs, op, v, h in params:
        for d in devs:
            for raised, k in _reference(values[:, d], op, v, h):
                expected.add((rid, d, raised, T0 + k * S))
    assert {(t.rule, t.device, t.raised, t.at_us) for t in got} == expected
    assert len(got) == len(expected) > 500


def test_samples_of_another_tenant_are_not_read() -> None:
    e = engine(rule({"kind": "threshold", "property": "t", "op": ">", "value": 80}))
    other = batch([(10, 0, 99)])
    other = other.set_column(0, "tenant", pa.array([2], pa.int32()))
    assert e.process(other) == []
    assert e.evaluations == 0
    assert feed(e, [99], start=1) == [("+", 1)]


def test_setting_the_same_rules_again_keeps_everything() -> None:
    r = rule(SUSTAINED)
    e = engine(r)
    feed(e, [81, 82])
    groups = e.groups
    e.set_rules([r])
    assert e.groups is groups
    assert brief(e.tick(T0 + 10 * S)) == [("+", 10)]
    # Another device added to the target: the rule keeps its state for device 7.
    e.set_rules([rule(SUSTAINED, series={7: {"t": 10}, 8: {"t": 20}})])
    assert e.groups is not groups
    assert feed(e, [70], series=10, start=12) == [("-", 12)]


def _ref_sustained(
    ts: list[int], x: list[float], v: float, h: float, for_us: int
) -> list[tuple[bool, int]]:
    """Sample by sample with held values: a run of samples above v since `since` completes
    at since + for if the next sample comes no earlier."""
    out: list[tuple[bool, int]] = []
    active, since = False, None
    for t, val in zip(ts, x, strict=True):
        if not active and since is not None and t - since >= for_us:
            out.append((True, since + for_us))
            active = True
        since = (t if since is None else since) if val > v else None
        if active and val <= v - h:
            out.append((False, t))
            active = False
    return out


def _ref_count(ts: list[int], x: list[float], v: float, n: int, w: int) -> list[tuple[bool, int]]:
    out: list[tuple[bool, int]] = []
    active = False
    for k, t in enumerate(ts):
        c = sum(1 for j in range(k + 1) if ts[j] > t - w and x[j] > v)
        if c > n and not active:
            out.append((True, t))
            active = True
        elif c <= n and active:
            out.append((False, t))
            active = False
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sustained_and_count_match_a_reference_over_random_batches(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_dev, n_t = 40, 120
    series = {d: {"t": 100 + d} for d in range(n_dev)}
    sus = rule({**SUSTAINED, "for": "7s"}, rid=1, clear={"hysteresis": 2}, series=series)
    cnt = rule(
        {"kind": "count", "property": "t", "op": ">", "value": 80, "count": 3, "window": "9s"},
        rid=2,
        series=series,
    )
    # Irregular times per device (gaps up to 6 s); values wandering around 80.
    times = {d: np.cumsum(rng.integers(1, 7, n_t)).tolist() for d in range(n_dev)}
    vals = {d: (80 + np.cumsum(rng.normal(0, 2, n_t))).round(1).tolist() for d in range(n_dev)}
    rows: list[Row] = [(100 + d, times[d][k], vals[d][k]) for d in range(n_dev) for k in range(n_t)]
    rows.sort(key=lambda r: r[1])
    e = engine(sus, cnt)
    got: list[Transition] = []
    cuts = sorted(rng.choice(len(rows), 8, replace=False).tolist())
    for a, b in zip([0, *cuts], [*cuts, len(rows)], strict=True):
        part = rows[a:b]
        got += e.process(batch([part[k] for k in rng.permutation(len(part))]))
    assert e.late == 0
    expected = set()
    for d in range(n_dev):
        ts = [T0 + t * S for t in times[d]]
        for raised, at in _ref_sustained(ts, vals[d], 80, 2, 7 * S):
            expected.add((1, d, raised, at))
        for raised, at in _ref_count(ts, vals[d], 80, 3, 9 * S):
            expected.add((2, d, raised, at))
    assert {(t.rule, t.device, t.raised, t.at_us) for t in got} == expected
    assert sum(1 for t in got if t.rule == 1) > 20


def test_deviation_baseline_and_rate_survive_restart() -> None:
    dev = rule(
        {"kind": "deviation", "property": "t", "value": 3, "window": "1m", "min_samples": 10},
        rid=1,
    )
    rate = rule({"kind": "rate", "property": "t", "op": ">", "value": 5}, rid=2)
    e = engine(dev, rate)
    feed(e, [49, 51] * 10)
    fresh = RuleEngine()
    fresh.restore(e.snapshot())
    fresh.set_rules([dev, rate])
    # The baseline (mean 50, deviation 1) and the last value (51 at 19 s) came back.
    got = fresh.process(batch([(10, 20, 70)]))
    assert sorted((t.rule, t.raised, (t.at_us - T0) / S) for t in got) == [
        (1, True, 20.0),
        (2, True, 20.0),
    ]
    cold = engine(dev, rate)
    assert cold.process(batch([(10, 20, 70)])) == []


def test_state_change_first_value_after_bad_quality_is_no_change() -> None:
    e = engine(rule({"kind": "state_change", "property": "t"}))
    assert feed(e, [None]) == []
    assert feed(e, [5, 5, 6], start=1) == [("+", 3)]
