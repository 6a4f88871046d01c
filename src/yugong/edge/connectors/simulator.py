"""Simulator connector: signal generators on an interval, for demos and tests.

Each simulated device holds a set of signals; every tick evaluates all of a device's signals
at once (NumPy over the signals of one kind) and emits one edge batch. Writes set a signal's
value (a setpoint), which generators then continue from.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from yugong.core.timeutil import now_us
from yugong.edge.connectors.base import (
    Connector,
    DeviceSession,
    DeviceStats,
    PollGroup,
    PollResult,
    Sink,
    WriteResult,
    WriteStatus,
)
from yugong.edge.samples import edge_batch


class Waveform(enum.StrEnum):
    SINE = "sine"
    RAMP = "ramp"  # sawtooth from low to high over the period
    RANDOM_WALK = "random_walk"
    SQUARE = "square"  # alternates between states (low/high, or `states`) every half period
    COUNTER = "counter"  # increments by `step` per tick, wrapping at `high`
    CONSTANT = "constant"


@dataclass(frozen=True, slots=True)
class Signal:
    point: str
    waveform: Waveform = Waveform.SINE
    low: float = 0.0
    high: float = 1.0
    period_s: float = 60.0
    step: float = 1.0  # counter increment, or random-walk standard deviation per tick
    states: tuple[float, ...] = ()  # square/state: the cycle of states (defaults to low, high)
    writable: bool = False

    def __post_init__(self) -> None:
        if not self.point:
            raise ValueError("signal needs a point name")
        if self.high < self.low:
            raise ValueError(f"signal {self.point!r}: high must be >= low")
        if self.period_s <= 0:
            raise ValueError(f"signal {self.point!r}: period_s must be > 0")


@dataclass(frozen=True, slots=True)
class SimulatedDevice:
    name: str
    signals: tuple[Signal, ...]
    interval_s: float = 1.0

    def __post_init__(self) -> None:
        names = [s.point for s in self.signals]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"device {self.name!r}: duplicate points {sorted(dup)}")
        if self.interval_s < 0:
            raise ValueError(f"device {self.name!r}: interval_s must be >= 0")


@dataclass(slots=True)
class _State:
    walk: np.ndarray
    count: np.ndarray
    override: dict[int, float] = field(default_factory=dict)


class SimulatorSession(DeviceSession):
    def __init__(self, device: SimulatedDevice, seed: int | None = None) -> None:
        self.name = device.name
        self.device = device
        self.groups = [
            PollGroup("default", device.interval_s, tuple(s.point for s in device.signals))
        ]
        self.stats = DeviceStats()
        self._rng = np.random.default_rng(seed)
        sig = device.signals
        self._low = np.array([s.low for s in sig], dtype=np.float64)
        self._high = np.array([s.high for s in sig], dtype=np.float64)
        self._period = np.array([s.period_s for s in sig], dtype=np.float64)
        self._step = np.array([s.step for s in sig], dtype=np.float64)
        self._kind = np.array([list(Waveform).index(s.waveform) for s in sig], dtype=np.int8)
        self._index = {s.point: i for i, s in enumerate(sig)}
        self._state = _State(walk=(self._low + self._high) / 2.0, count=self._low.copy())
        self._connected = False
        self._t0 = now_us()

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        self._connected = False

    def values_at(self, ts_us: int) -> np.ndarray:
        t = (ts_us - self._t0) / 1e6
        low, high, period, kind = self._low, self._high, self._period, self._kind
        span = high - low
        phase = np.mod(t, period) / period
        out = np.empty(len(kind), dtype=np.float64)
        k = list(Waveform)
        m = kind == k.index(Waveform.SINE)
        out[m] = low[m] + span[m] * (0.5 + 0.5 * np.sin(2 * math.pi * phase[m]))
        m = kind == k.index(Waveform.RAMP)
        out[m] = low[m] + span[m] * phase[m]
        m = kind == k.index(Waveform.SQUARE)
        out[m] = np.where(phase[m] < 0.5, low[m], high[m])
        m = kind == k.index(Waveform.CONSTANT)
        out[m] = low[m]
        m = kind == k.index(Waveform.RANDOM_WALK)
        st = self._state
        st.walk[m] = np.clip(
            st.walk[m] + self._rng.normal(0.0, 1.0, int(m.sum())) * self._step[m], low[m], high[m]
        )
        out[m] = st.walk[m]
        m = kind == k.index(Waveform.COUNTER)
        st.count[m] = st.count[m] + self._step[m]
        wrap = m & (st.count > high)
        st.count[wrap] = low[wrap]
        out[m] = st.count[m]
        # Multi-state signals cycle through their states, one per period fraction.
        for i, s in enumerate(self.device.signals):
            if s.waveform is Waveform.SQUARE and s.states:
                out[i] = s.states[int(phase[i] * len(s.states)) % len(s.states)]
        for i, v in st.override.items():
            out[i] = v
        return out

    async def poll(self, group: PollGroup) -> PollResult:
        ts = now_us()
        values = self.values_at(ts)
        self.stats.points_read += len(values)
        return PollResult(batches=[edge_batch(self.name, list(group.points), ts, values)])

    async def write(self, point: str, value: float | bool | str) -> WriteResult:
        i = self._index.get(point)
        if i is None:
            return WriteResult(WriteStatus.INVALID, f"device {self.name!r} has no point {point!r}")
        if not self.device.signals[i].writable:
            return WriteResult(WriteStatus.INVALID, f"point {point!r} is read-only")
        try:
            v = float(value)
        except (TypeError, ValueError):
            return WriteResult(WriteStatus.INVALID, f"point {point!r}: {value!r} is not a number")
        sig = self.device.signals[i]
        if sig.waveform in (Waveform.RANDOM_WALK, Waveform.COUNTER):
            # Generators that carry state continue from the written value.
            self._state.walk[i] = v
            self._state.count[i] = v
        else:
            self._state.override[i] = v
        return WriteResult.ok()


class SimulatorConnector(Connector):
    kind = "simulator"

    def __init__(
        self, name: str, devices: Sequence[SimulatedDevice], sink: Sink, *, seed: int | None = None
    ) -> None:
        super().__init__(name, sink)
        self._devices = list(devices)
        self._seed = seed

    def build_sessions(self) -> list[DeviceSession]:
        return [
            SimulatorSession(d, None if self._seed is None else self._seed + i)
            for i, d in enumerate(self._devices)
        ]
