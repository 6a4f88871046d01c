"""Connector machinery: backoff, availability (logged once), BAD samples, serial access,
statistics; and the simulator connector."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tests.conftest import until
from yugong.core.quality import Quality
from yugong.edge.connectors.base import (
    Backoff,
    Connector,
    DeviceSession,
    DeviceStats,
    DeviceUnreachable,
    PollGroup,
    PollResult,
    PollTimeout,
    WriteResult,
    WriteStatus,
)
from yugong.edge.connectors.simulator import (
    Signal,
    SimulatedDevice,
    SimulatorConnector,
    SimulatorSession,
    Waveform,
)
from yugong.edge.samples import EDGE_SCHEMA, edge_batch


# --------------------------------------------------------------------------- backoff
def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    b = Backoff(initial=0.1, maximum=1.0, factor=2.0, jitter=0.25, rng=random.Random(7))
    delays = [b.next_delay() for _ in range(8)]
    bases = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for d, base in zip(delays, bases, strict=True):
        assert base * 0.75 <= d <= base
    assert len(set(delays[4:])) > 1  # jittered, not in lock-step
    b.reset()
    assert b.next_delay() <= 0.1


def test_backoff_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial=2.0, maximum=1.0)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.5)


# --------------------------------------------------------------------------- a scripted device
class ScriptedSession(DeviceSession):
    """A device whose health the test switches: up, refusing connections, or hanging."""

    def __init__(self, name: str, interval_s: float = 0.01) -> None:
        self.name = name
        self.groups = [PollGroup("g", interval_s, ("x", "y"))]
        self.stats = DeviceStats()
        self.up = True
        self.hang = False
        self._connected = False
        self.in_flight = 0
        self.max_in_flight = 0
        self.value = 1.0

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        if not self.up:
            raise DeviceUnreachable("connection refused")
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    async def _request(self) -> None:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.002)
            if self.hang:
                raise PollTimeout("no answer")
            if not self.up:
                self._connected = False
                raise DeviceUnreachable("connection reset")
        finally:
            self.in_flight -= 1

    async def poll(self, group: PollGroup) -> PollResult:
        await self._request()
        return PollResult([edge_batch(self.name, list(group.points), 1, [self.value] * 2)])

    async def write(self, point: str, value: float | bool | str) -> WriteResult:
        await self._request()
        self.value = float(value)
        return WriteResult.ok()


class ScriptedConnector(Connector):
    def __init__(self, sessions: list[ScriptedSession], sink: Callable[[pa.Table], None]) -> None:
        super().__init__(
            "scripted", sink, backoff=lambda: Backoff(initial=0.01, maximum=0.05, jitter=0.2)
        )
        self.scripted = sessions

    def build_sessions(self) -> list[DeviceSession]:
        return list(self.scripted)


async def test_failure_is_availability_bad_samples_and_one_log_line_each_way(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="yugong.edge")
    dev = ScriptedSession("d1")
    batches: list[pa.Table] = []
    async with ScriptedConnector([dev], batches.append) as conn:
        await until(lambda: conn.available("d1"))
        dev.up = False
        await until(lambda: dev.stats.bad_points >= 10)  # several failed attempts
        assert not conn.available("d1")
        dev.up = True
        await until(lambda: conn.available("d1"))
        n = len(batches)
        await until(lambda: len(batches) > n)
    table = pa.concat_tables(batches)
    assert table.schema == EDGE_SCHEMA
    bad = table.filter(pc.equal(table["quality"], Quality.BAD))
    assert bad.num_rows >= 10 and bad["value"].null_count == bad.num_rows
    assert set(bad["point"].to_pylist()) == {"x", "y"}  # every point of the failed poll
    assert batches[-1]["quality"].to_pylist() == [Quality.GOOD, Quality.GOOD]
    msgs = [r.getMessage() for r in caplog.records if r.name.startswith("yugong.edge")]
    assert sum("unavailable" in m for m in msgs) == 1
    assert sum(m.endswith("is available") for m in msgs) == 2  # first connect + recovery


async def test_timeouts_are_counted_and_device_comes_back() -> None:
    dev = ScriptedSession("d1")
    async with ScriptedConnector([dev], lambda b: None) as conn:
        await until(lambda: conn.available("d1"))
        dev.hang = True
        await until(lambda: conn.stats().devices["d1"].timeouts >= 2)
        assert not conn.available("d1")
        dev.hang = False
        await until(lambda: conn.available("d1"))
        st = conn.stats().devices["d1"]
    assert st.errors >= st.timeouts >= 2
    assert st.connects >= 3  # the connection is re-opened after each timeout


async def test_device_is_accessed_serially_and_a_dead_device_blocks_nobody() -> None:
    live, dead = ScriptedSession("live", interval_s=0), ScriptedSession("dead")
    dead.up = False
    async with ScriptedConnector([live, dead], lambda b: None) as conn:
        # Hammer the live device with writes while its poll loop runs at full rate.
        results = await asyncio.gather(*(conn.write("live", "x", i) for i in range(50)))
        await until(lambda: conn.stats().devices["live"].polls >= 20)
        st = conn.stats()
    assert all(r.success for r in results)
    assert live.max_in_flight == 1  # never two outstanding requests on one device
    assert st.devices_online == 1 and not st.devices["dead"].available
    unknown = await conn.write("nope", "x", 1)
    assert unknown.status is WriteStatus.INVALID
    down = await conn.write("dead", "x", 1)
    assert down.status is WriteStatus.UNAVAILABLE


async def test_stats_are_a_snapshot() -> None:
    dev = ScriptedSession("d1")
    async with ScriptedConnector([dev], lambda b: None) as conn:
        await until(lambda: conn.stats().devices["d1"].polls >= 3)
        snap = conn.stats()
        polls = snap.devices["d1"].polls
        await until(lambda: conn.stats().devices["d1"].polls > polls + 2)
    assert snap.devices["d1"].polls == polls
    assert snap.total("polls") == polls
    assert snap.devices["d1"].last_poll_latency_ms > 0


# --------------------------------------------------------------------------- simulator
def sim_device(interval_s: float = 0.01) -> SimulatedDevice:
    return SimulatedDevice(
        "sim-1",
        (
            Signal("sine", Waveform.SINE, low=10, high=20, period_s=1.0),
            Signal("ramp", Waveform.RAMP, low=0, high=100, period_s=2.0),
            Signal("walk", Waveform.RANDOM_WALK, low=-5, high=5, step=0.5, writable=True),
            Signal("square", Waveform.SQUARE, low=0, high=1, period_s=0.5),
            Signal("state", Waveform.SQUARE, period_s=3.0, states=(1, 2, 3)),
            Signal("count", Waveform.COUNTER, low=0, high=1000, step=1),
            Signal("sp", Waveform.CONSTANT, low=42, high=42, writable=True),
        ),
        interval_s=interval_s,
    )


def test_simulated_signals_stay_in_their_ranges() -> None:
    s = SimulatorSession(sim_device(), seed=1)
    t0 = 1_700_000_000_000_000
    rows = np.array([s.values_at(t0 + i * 37_000) for i in range(200)])
    sine, ramp, walk, square, state, count, sp = rows.T
    assert sine.min() >= 10 and sine.max() <= 20 and sine.max() - sine.min() > 9
    assert ramp.min() >= 0 and ramp.max() < 100
    assert walk.min() >= -5 and walk.max() <= 5 and np.std(np.diff(walk)) > 0
    assert set(np.unique(square)) == {0.0, 1.0}
    assert set(np.unique(state)) <= {1.0, 2.0, 3.0} and len(np.unique(state)) >= 2
    assert list(count[:5]) == [1, 2, 3, 4, 5]
    assert set(sp) == {42.0}


def test_simulated_device_checks_its_config() -> None:
    with pytest.raises(ValueError, match="duplicate points"):
        SimulatedDevice("d", (Signal("a"), Signal("a")))
    with pytest.raises(ValueError, match="'a': high must be >= low"):
        Signal("a", low=2, high=1)


async def test_simulator_connector_emits_batches_and_takes_writes() -> None:
    batches: list[pa.Table] = []
    async with SimulatorConnector("sim", [sim_device()], batches.append, seed=3) as conn:
        await until(lambda: len(batches) >= 3)
        assert (await conn.write("sim-1", "sp", 7.5)).success
        ro = await conn.write("sim-1", "sine", 1)
        assert ro.status is WriteStatus.INVALID and "read-only" in ro.message
        nan = await conn.write("sim-1", "sp", "lots")
        assert nan.status is WriteStatus.INVALID
        n = len(batches)
        await until(lambda: len(batches) > n)
        st = conn.stats().devices["sim-1"]
    last = dict(
        zip(batches[-1]["point"].to_pylist(), batches[-1]["value"].to_pylist(), strict=True)
    )
    assert last["sp"] == 7.5
    assert all(b.schema == EDGE_SCHEMA and b.num_rows == 7 for b in batches)
    assert set(pa.concat_tables(batches)["quality"].to_pylist()) == {Quality.GOOD}
    assert st.available and st.polls >= 4


async def test_a_failing_sink_is_logged_once_and_polling_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = [0]

    def sink(batch: pa.Table) -> None:
        calls[0] += 1
        raise RuntimeError("disk full")

    dev = ScriptedSession("d1")
    async with ScriptedConnector([dev], sink) as conn:
        await until(lambda: calls[0] >= 5)
        assert conn.available("d1")
    failures = [r for r in caplog.records if "sink failed" in r.getMessage()]
    assert len(failures) == 1
