"""Plausible machine signals, one NumPy step for all machines of a kind at once."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class MachineSim:
    """State of ``n`` machines of one product; ``step()`` returns one sample per property."""

    product: str
    n: int
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))
    t: float = 0.0

    def __post_init__(self) -> None:
        self.phase = self.rng.uniform(0, 2 * np.pi, self.n)
        self.state = np.ones(self.n, dtype=np.int64)
        self.count = self.rng.integers(1000, 5000, self.n)
        self.energy = self.rng.uniform(1e4, 1e5, self.n)
        self.temp = self.rng.uniform(35, 45, self.n)

    def step(self, dt: float = 1.0) -> dict[str, np.ndarray]:
        self.t += dt
        r = self.rng
        if self.product == "cnc-machine":
            flip = r.random(self.n) < 0.01
            self.state = np.where(flip, r.choice([0, 1, 1, 1, 2, 3], self.n), self.state)
            running = self.state == 1
            speed = np.where(running, 8000 + 1500 * np.sin(self.t / 60 + self.phase), 0.0)
            load = np.where(
                running, 55 + 10 * np.sin(self.t / 17 + self.phase) + r.normal(0, 2, self.n), 0.0
            )
            self.temp += np.where(running, 0.02, -0.03) + r.normal(0, 0.02, self.n)
            self.temp = np.clip(self.temp, 22, 85)
            self.count += (running & (r.random(self.n) < 0.2)).astype(np.int64)
            vib = np.where(running, 2.2 + 0.4 * r.standard_normal(self.n) ** 2, 0.1)
            return {
                "spindle_speed": speed.round(0),
                "spindle_load": load.clip(0).round(1),
                "temperature": self.temp.round(1),
                "vibration": vib.round(2),
                "state": self.state.copy(),
                "part_count": self.count.copy(),
            }
        if self.product == "air-compressor":
            cycle = np.sin(self.t / 45 + self.phase)
            running = cycle > -0.3
            pressure = np.where(running, 0.72 + 0.06 * cycle, 0.65) + r.normal(0, 0.003, self.n)
            current = np.where(running, 180 + 25 * cycle + r.normal(0, 3, self.n), 0.0)
            self.temp += np.where(running, 0.03, -0.02) + r.normal(0, 0.02, self.n)
            self.temp = np.clip(self.temp, 40, 95)
            return {
                "discharge_pressure": pressure.round(3),
                "motor_current": current.round(1),
                "oil_temperature": self.temp.round(1),
                "running": running,
            }
        # energy meter
        p = 250 + 80 * np.sin(2 * np.pi * self.t / 3600 + self.phase) + r.normal(0, 5, self.n)
        q = 0.45 * p + r.normal(0, 3, self.n)
        self.energy += p * dt / 3600
        pf = p / np.hypot(p, q)
        return {
            "active_power": p.round(2),
            "reactive_power": q.round(2),
            "voltage": (400 + r.normal(0, 1.5, self.n)).round(1),
            "power_factor": pf.round(3),
            "energy": self.energy.round(2),
        }
