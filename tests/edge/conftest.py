"""Edge fixtures: a sink that collects what a connector produces, a store-and-forward buffer,
and a real pymodbus TCP server on a free 127.0.0.1 port, in this event loop.

The server keeps the four Modbus tables separate (coils and discrete inputs addressed by
bit), counts the requests it receives per function code, and can be slowed down (to provoke
client timeouts) or stopped and started again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import threading
import tty
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import SimData, SimDevice
from pymodbus.simulator.simdata import DataType

from tests.conftest import free_port
from yugong.edge.buffer import StoreForwardBuffer
from yugong.edge.samples import EDGE_SCHEMA

SERIAL_BAUD = 115200
TABLE_SIZE = 1000  # addresses 0..999 in every table; beyond is an illegal address
UNIT = 1

FC_COIL, FC_DI, FC_HR, FC_IR = 1, 2, 3, 4


class Collector:
    """A connector's sink: keeps every batch it is handed, each checked against EDGE_SCHEMA."""

    def __init__(self) -> None:
        self.batches: list[pa.Table] = []

    def __call__(self, batch: pa.Table) -> None:
        assert batch.schema == EDGE_SCHEMA
        self.batches.append(batch)

    def rows(self, since: int = 0) -> list[dict[str, Any]]:
        """The rows of every batch from the ``since``-th on, in order."""
        return [r for b in self.batches[since:] for r in b.to_pylist()]

    def table(self) -> pa.Table:
        return pa.concat_tables(self.batches) if self.batches else EDGE_SCHEMA.empty_table()

    def latest(self) -> dict[str, dict[str, Any]]:
        """The last row of each point."""
        return {r["point"]: r for r in self.rows()}

    def last(self, point: str) -> dict[str, Any] | None:
        return self.latest().get(point)


@pytest.fixture
def buffer(tmp_path: Path) -> Iterator[StoreForwardBuffer]:
    buf = StoreForwardBuffer(tmp_path / "buf.db", max_bytes=50_000_000, synchronous="normal")
    yield buf
    buf.close()


class ModbusTestServer:
    def __init__(
        self, port: int, framer: FramerType = FramerType.SOCKET, serial_port: str = ""
    ) -> None:
        self.port = port
        self.framer = framer
        self.serial_port = serial_port  # set: an RTU server on this serial line instead
        self.requests: Counter[int] = Counter()  # function code -> requests served
        self.delay_s = 0.0
        self._device = SimDevice(
            id=UNIT,
            simdata=(
                [SimData(0, count=TABLE_SIZE, values=False, datatype=DataType.BITS)],
                [SimData(0, count=TABLE_SIZE, values=False, datatype=DataType.BITS)],
                [SimData(0, count=TABLE_SIZE, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=TABLE_SIZE, values=0, datatype=DataType.REGISTERS)],
            ),
            use_bit_addressing=True,
            action=self._action,
        )
        self._server: ModbusTcpServer | ModbusSerialServer | None = None

    async def _action(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)

    def _trace_pdu(self, sending: bool, pdu: ModbusPDU) -> ModbusPDU:
        # Requests as they arrive on the wire, by function code.
        if not sending:
            self.requests[pdu.function_code] += 1
        return pdu

    async def start(self) -> None:
        # A new server starts from the SimDevice's initial values (the datastore is reset).
        if self.serial_port:
            self._server = ModbusSerialServer(
                self._device,
                port=self.serial_port,
                framer=FramerType.RTU,
                baudrate=SERIAL_BAUD,
                trace_pdu=self._trace_pdu,
            )
            await self._server.serve_forever(background=True)
            return
        self._server = ModbusTcpServer(
            self._device,
            address=("127.0.0.1", self.port),
            framer=self.framer,
            trace_pdu=self._trace_pdu,
        )
        await self._server.serve_forever(background=True)

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None

    @property
    def _runtime_server(self) -> ModbusTcpServer | ModbusSerialServer:
        assert self._server is not None, "server is stopped"
        return self._server

    async def set(self, fc: int, address: int, values: list[int] | list[bool]) -> None:
        """Write the datastore directly, by the function code of the table (1/2/3/4)."""
        await self._runtime_server.async_setValues(UNIT, fc, address, values)

    async def get(self, fc: int, address: int, count: int) -> list[int] | list[bool]:
        return await self._runtime_server.async_getValues(UNIT, fc, address, count)


@pytest.fixture
async def modbus_server() -> AsyncIterator[ModbusTestServer]:
    server = ModbusTestServer(free_port())
    await server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            await server.stop()


@pytest.fixture
async def modbus_rtu_server() -> AsyncIterator[ModbusTestServer]:
    """RTU framing over TCP, as a serial device server would present it."""
    server = ModbusTestServer(free_port(), FramerType.RTU)
    await server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception):
            await server.stop()


class PtyPair:
    """Two pseudo-terminals joined back to back, like a null-modem cable: whatever one end
    writes, the other reads. Each end has a path a serial client or server can open."""

    def __init__(self, folder: Path) -> None:
        self._masters: list[int] = []
        self._slaves: list[int] = []
        self.paths: list[str] = []
        for name in ("srv", "cli"):
            master, slave = os.openpty()
            tty.setraw(slave)
            link = folder / name
            link.symlink_to(os.ttyname(slave))
            self._masters.append(master)
            self._slaves.append(slave)
            self.paths.append(str(link))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        a, b = self._masters
        peer = {a: b, b: a}
        while not self._stop.is_set():
            ready, _, _ = select.select([a, b], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if data:
                    os.write(peer[fd], data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (*self._masters, *self._slaves):
            with contextlib.suppress(OSError):
                os.close(fd)


@pytest.fixture
async def modbus_serial_server(tmp_path: Path) -> AsyncIterator[tuple[ModbusTestServer, str]]:
    """An RTU server on one end of a pseudo-terminal pair; yields (server, client tty)."""
    pair = PtyPair(tmp_path)
    srv_tty, cli_tty = pair.paths
    try:
        server = ModbusTestServer(0, FramerType.RTU, serial_port=srv_tty)
        await server.start()
        try:
            yield server, cli_tty
        finally:
            with contextlib.suppress(Exception):
                await server.stop()
    finally:
        pair.close()
