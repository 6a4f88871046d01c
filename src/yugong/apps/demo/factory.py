"""The demo's simulated factory floor: Modbus TCP PLCs and an OPC UA server of CNC machines.

It runs in its own process (spawned), so its servers and signal updates never compete with
the platform's event loop. Every PLC is a pymodbus TCP server on its own 127.0.0.1 port; the
register maps below are what the demo's edge gateway profiles read (see ``edge.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing as mp
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

UNIT = 1
FC_COIL, FC_DI, FC_HR = 1, 2, 3
TABLE_SIZE = 64
OPCUA_NS = "urn:yugong:demo:cnc"

#: PLC kind -> float32 holding registers (property -> first register address).
FLOAT_MAPS: dict[str, dict[str, int]] = {
    "pump": {"speed": 0, "flow": 2, "pressure": 4},
    "motor": {"current": 0, "temperature": 2, "vibration": 4},
    "meter": {"voltage": 0, "current": 2, "power": 4, "energy": 6},
}
#: Pump bits: the running coil and the fault discrete input, both at address 0.
PUMP_RUNNING_COIL = 0
PUMP_FAULT_INPUT = 0
#: CNC variables on the OPC UA server: name -> variant type name.
CNC_VARIABLES = {"SpindleSpeed": "Double", "State": "Int32", "PartCount": "Int32"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class FactoryLayout:
    """Where each simulated machine listens: device name -> Modbus port, and the CNCs."""

    pumps: dict[str, int] = field(default_factory=dict)
    motors: dict[str, int] = field(default_factory=dict)
    meters: dict[str, int] = field(default_factory=dict)
    cncs: tuple[str, ...] = ()
    opcua_port: int = 0
    period_s: float = 1.0  # seconds between signal updates

    @property
    def opcua_endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.opcua_port}/yugong/demo"

    def plcs(self) -> list[tuple[str, str, int]]:
        """(kind, device name, port) of every PLC."""
        out = [("pump", n, p) for n, p in self.pumps.items()]
        out += [("motor", n, p) for n, p in self.motors.items()]
        return out + [("meter", n, p) for n, p in self.meters.items()]

    @property
    def device_count(self) -> int:
        return len(self.pumps) + len(self.motors) + len(self.meters) + len(self.cncs)


def make_layout(
    *, pumps: int = 2, motors: int = 2, meters: int = 1, cncs: int = 2, period_s: float = 1.0
) -> FactoryLayout:
    """A layout on free 127.0.0.1 ports (names are unique within the demo tenant)."""
    return FactoryLayout(
        pumps={f"pump-{i:02d}": _free_port() for i in range(1, pumps + 1)},
        motors={f"motor-{i:02d}": _free_port() for i in range(1, motors + 1)},
        meters={f"meter-{i:02d}": _free_port() for i in range(1, meters + 1)},
        cncs=tuple(f"cnc-ua-{i:02d}" for i in range(1, cncs + 1)),
        opcua_port=_free_port(),
        period_s=period_s,
    )


def float_registers(values: np.ndarray) -> list[int]:
    """float32 values -> big-endian register words (high word first)."""
    raw = np.asarray(values, dtype=">f4").tobytes()
    return list(struct.unpack(f">{len(raw) // 2}H", raw))


# ------------------------------------------------------------------------------- signals
class _Signals:
    """One NumPy step for all machines of each kind: state changes, load cycles, drifts."""

    def __init__(self, layout: FactoryLayout, seed: int = 11) -> None:
        self.r = np.random.default_rng(seed)
        self.t = 0.0
        n_p, n_m, n_e, n_c = (
            len(layout.pumps),
            len(layout.motors),
            len(layout.meters),
            len(layout.cncs),
        )
        self.pump_on = np.ones(n_p, dtype=bool)
        self.pump_phase = self.r.uniform(0, 2 * np.pi, n_p)
        self.motor_temp = self.r.uniform(35, 45, n_m)
        self.motor_phase = self.r.uniform(0, 2 * np.pi, n_m)
        self.energy = self.r.uniform(1e4, 1e5, n_e)
        self.meter_phase = self.r.uniform(0, 2 * np.pi, n_e)
        self.cnc_state = np.ones(n_c, dtype=np.int64)
        self.parts = self.r.integers(1000, 5000, n_c)
        self.cnc_phase = self.r.uniform(0, 2 * np.pi, n_c)

    def step(self, dt: float) -> dict[str, dict[str, np.ndarray]]:
        self.t += dt
        r, t = self.r, self.t
        # Pumps: occasional stop/start; a stopped pump has no flow and falls to static head.
        n = self.pump_on.size
        self.pump_on ^= r.random(n) < 0.01 * dt
        fault = ~self.pump_on & (r.random(n) < 0.3)
        cycle = np.sin(t / 40 + self.pump_phase)
        speed = np.where(self.pump_on, 1450 + 40 * cycle + r.normal(0, 3, n), 0.0)
        flow = np.where(self.pump_on, 120 + 25 * cycle + r.normal(0, 1.5, n), 0.0)
        pressure = np.where(self.pump_on, 4.2 + 0.4 * cycle, 0.8) + r.normal(0, 0.02, n)
        # Motors: current follows a load cycle; winding temperature drifts with it.
        m = self.motor_temp.size
        load = 0.6 + 0.3 * np.sin(t / 30 + self.motor_phase)
        current = 45 * load + r.normal(0, 0.8, m)
        self.motor_temp += (40 + 40 * load - self.motor_temp) * 0.01 * dt + r.normal(0, 0.05, m)
        vibration = 1.8 + 1.2 * load + 0.3 * r.standard_normal(m) ** 2
        # Energy meters: a slow daily-like power curve integrated into kWh.
        e = self.energy.size
        power = 250 + 80 * np.sin(2 * np.pi * t / 3600 + self.meter_phase) + r.normal(0, 5, e)
        self.energy += power * dt / 3600
        voltage = 400 + r.normal(0, 1.5, e)
        meter_current = power * 1000 / (np.sqrt(3) * voltage * 0.9)
        # CNCs: state 1 = running; idle/setup/alarm now and then; parts count while running.
        c = self.cnc_state.size
        flip = r.random(c) < 0.01 * dt
        self.cnc_state = np.where(flip, r.choice([0, 1, 1, 1, 2, 3], c), self.cnc_state)
        running = self.cnc_state == 1
        self.parts += (running & (r.random(c) < 0.2 * dt)).astype(np.int64)
        spindle = np.where(running, 8000 + 1500 * np.sin(t / 60 + self.cnc_phase), 0.0)
        return {
            "pump": {
                "speed": speed,
                "flow": flow.clip(0),
                "pressure": pressure,
                "running": self.pump_on.copy(),
                "fault": fault,
            },
            "motor": {"current": current, "temperature": self.motor_temp, "vibration": vibration},
            "meter": {
                "voltage": voltage,
                "current": meter_current,
                "power": power,
                "energy": self.energy,
            },
            "cnc": {
                "SpindleSpeed": spindle.round(0),
                "State": self.cnc_state,
                "PartCount": self.parts,
            },
        }


# ------------------------------------------------------------------------------- servers
async def _modbus_server(port: int) -> Any:
    from pymodbus.server import ModbusTcpServer
    from pymodbus.simulator import SimData, SimDevice
    from pymodbus.simulator.simdata import DataType

    bits = SimData(0, count=TABLE_SIZE, values=False, datatype=DataType.BITS)
    regs = SimData(0, count=TABLE_SIZE, values=0, datatype=DataType.REGISTERS)
    device = SimDevice(id=UNIT, simdata=([bits], [bits], [regs], [regs]), use_bit_addressing=True)
    server = ModbusTcpServer(device, address=("127.0.0.1", port))
    await server.serve_forever(background=True)
    return server


async def _opcua_server(layout: FactoryLayout) -> tuple[Any, dict[str, dict[str, Any]]]:
    from asyncua import Server, ua

    server = Server()
    await server.init()
    server.set_endpoint(layout.opcua_endpoint)
    server.set_server_name("Yugong demo CNC cell")
    idx = await server.register_namespace(OPCUA_NS)
    nodes: dict[str, dict[str, Any]] = {}
    for name in layout.cncs:
        obj = await server.nodes.objects.add_object(
            ua.NodeId.from_string(f"ns={idx};s={name}"), f"{idx}:{name}"
        )
        nodes[name] = {}
        for var, vtype in CNC_VARIABLES.items():
            variant = getattr(ua.VariantType, vtype)
            initial = 0.0 if vtype == "Double" else 0
            nodes[name][var] = await obj.add_variable(
                ua.NodeId.from_string(f"ns={idx};s={name}.{var}"),
                f"{idx}:{var}",
                ua.Variant(initial, variant),
            )
    await server.start()
    return server, nodes


async def run_factory(layout: FactoryLayout, ready: Any = None) -> None:
    """Serve every machine and update the signals until cancelled."""
    from asyncua import ua

    modbus = {name: await _modbus_server(port) for _, name, port in layout.plcs()}
    opcua, nodes = await _opcua_server(layout)
    if ready is not None:
        ready.set()
    sim = _Signals(layout)
    try:
        while True:
            values = sim.step(layout.period_s)
            for kind, names in (
                ("pump", layout.pumps),
                ("motor", layout.motors),
                ("meter", layout.meters),
            ):
                v = values[kind]
                for i, name in enumerate(names):
                    srv = modbus[name]
                    floats = np.array([v[p][i] for p in FLOAT_MAPS[kind]])
                    await srv.async_setValues(UNIT, FC_HR, 0, float_registers(floats))
                    if kind == "pump":
                        await srv.async_setValues(
                            UNIT, FC_COIL, PUMP_RUNNING_COIL, [bool(v["running"][i])]
                        )
                        await srv.async_setValues(
                            UNIT, FC_DI, PUMP_FAULT_INPUT, [bool(v["fault"][i])]
                        )
            c = values["cnc"]
            for i, name in enumerate(layout.cncs):
                for var, vtype in CNC_VARIABLES.items():
                    value = float(c[var][i]) if vtype == "Double" else int(c[var][i])
                    variant = ua.Variant(value, getattr(ua.VariantType, vtype))
                    await nodes[name][var].write_value(variant)
            await asyncio.sleep(layout.period_s)
    finally:
        for srv in modbus.values():
            with contextlib.suppress(Exception):
                await srv.shutdown()
        with contextlib.suppress(Exception):
            await opcua.stop()


def _exit_with_parent(parent: int) -> None:
    """The factory lives only as long as the demo: if the demo dies without stopping it
    (killed outright), the factory notices it was orphaned and ends too."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _factory_main(layout: FactoryLayout, ready: Any, parent: int) -> None:
    _exit_with_parent(parent)
    logging.basicConfig(level=logging.WARNING)
    for noisy in ("asyncua", "pymodbus"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_factory(layout, ready))


class FactoryProcess:
    """The factory in a spawned process: ``start()`` returns once every server listens."""

    def __init__(self, layout: FactoryLayout) -> None:
        self.layout = layout
        self._ctx = mp.get_context("spawn")
        self._proc: Any = None

    def start(self, timeout: float = 30.0) -> FactoryProcess:
        ready = self._ctx.Event()
        self._proc = self._ctx.Process(
            target=_factory_main,
            args=(self.layout, ready, os.getpid()),
            name="yugong-demo-factory",
            daemon=True,
        )
        self._proc.start()
        if not ready.wait(timeout):
            self.stop()
            raise RuntimeError("the demo factory's servers did not start")
        return self

    def stop(self) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(5)
        self._proc = None

    def __enter__(self) -> FactoryProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
