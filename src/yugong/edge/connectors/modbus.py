"""Modbus connector: TCP, RTU (serial) and RTU over TCP, on pymodbus' asyncio clients.

A device is polled as a list of coalesced read blocks per poll group (FC 1-4, one request per
block, one timestamp per block). Register words go through one vectorised decode per block
and straight into an Arrow batch whose device/point/quality columns are built once and
reused. Writes use FC 5 for a coil and FC 6 / FC 16 for a point of one / several registers
(FC 15 / FC 16 always, for devices that only implement the "multiple" functions); a Modbus
exception response becomes a device error that names the exception code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.exceptions import ConnectionException, ModbusIOException
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU

from yugong.core.quality import Quality
from yugong.core.timeutil import now_us
from yugong.edge.connectors.base import (
    Backoff,
    Connector,
    DeviceSession,
    DeviceStats,
    DeviceUnreachable,
    PollGroup,
    PollResult,
    PollTimeout,
    Sink,
    WriteResult,
    WriteStatus,
)
from yugong.edge.profiles import (
    DeviceProfile,
    ModbusRtuConnection,
    ModbusRtuOverTcpConnection,
    ModbusTcpConnection,
)
from yugong.edge.registers import Block, EncodeError, decode_block, encode, plan
from yugong.edge.samples import EDGE_SCHEMA

log = logging.getLogger("yugong.edge.connectors.modbus")


def exception_name(code: int) -> str:
    try:
        return ExcCodes(code).name
    except ValueError:
        return "UNKNOWN"


class BadResponse(Exception):
    """The device answered with a frame that does not answer the request (another function
    code, or another number of values than asked for): not data, so the poll fails."""


ModbusConnection = ModbusTcpConnection | ModbusRtuConnection | ModbusRtuOverTcpConnection
AnyClient = AsyncModbusTcpClient | AsyncModbusSerialClient


# --------------------------------------------------------------------------- session
@dataclass(slots=True)
class _BlockState:
    block: Block
    rows: slice  # the block's rows in its group's batch
    failing: bool = False  # logged once when a block starts failing, once when it recovers


@dataclass(slots=True)
class _GroupState:
    """A poll group's blocks and the Arrow columns of its batch that never change."""

    blocks: list[_BlockState]
    device: pa.Array
    point: pa.Array
    good: pa.Array
    no_text: pa.Array
    has_text: bool


def _group_state(device: str, blocks: Sequence[Block]) -> _GroupState:
    states: list[_BlockState] = []
    points: list[str] = []
    for b in blocks:
        states.append(_BlockState(b, slice(len(points), len(points) + len(b.points))))
        points.extend(b.properties)
    n = len(points)
    return _GroupState(
        blocks=states,
        device=pa.array([device] * n, pa.string()),
        point=pa.array(points, pa.string()),
        good=pa.array(np.full(n, Quality.GOOD, np.uint8)),
        no_text=pa.nulls(n, pa.string()),
        has_text=any(b.strings for b in blocks),
    )


class ModbusSession(DeviceSession):
    """One Modbus device from its profile: coalesced blocks per poll group, one client."""

    def __init__(self, profile: DeviceProfile, *, multiple_writes: bool = False) -> None:
        if not isinstance(profile.connection, ModbusConnection):
            raise ValueError(f"device {profile.name}: protocol {profile.protocol} is not Modbus")
        self.name = profile.name
        self.profile = profile
        self.conn: ModbusConnection = profile.connection
        self.multiple_writes = multiple_writes  # for devices that only implement FC 15/16
        self.stats = DeviceStats()
        blocks = plan(
            profile.points,
            max_registers=self.conn.max_registers,
            max_bits=self.conn.max_bits,
            max_gap=self.conn.max_gap,
        )
        intervals = profile.poll_groups()
        self._groups = {
            g: _group_state(self.name, [b for b in blocks if b.group == g]) for g in intervals
        }
        self.groups = [
            PollGroup(g, us / 1e6, tuple(self._groups[g].point.to_pylist()))
            for g, us in intervals.items()
        ]
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None

    @property
    def blocks(self) -> list[Block]:
        return [st.block for g in self._groups.values() for st in g.blocks]

    # -- connection
    def _trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            self.stats.bytes_sent += len(data)
        else:
            self.stats.bytes_received += len(data)
        return data

    def _make_client(self) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
        c = self.conn
        # reconnect_delay=0 turns pymodbus' own reconnect off: the connector's backoff owns it.
        common: dict[str, Any] = {
            "timeout": c.timeout,
            "retries": 0,
            "reconnect_delay": 0,
            "trace_packet": self._trace,
        }
        if isinstance(c, ModbusRtuConnection):
            return AsyncModbusSerialClient(
                c.serial_port,
                framer=FramerType.RTU,
                baudrate=c.baudrate,
                bytesize=c.bytesize,
                parity=c.parity,
                stopbits=c.stopbits,
                **common,
            )
        framer = FramerType.RTU if isinstance(c, ModbusRtuOverTcpConnection) else FramerType.SOCKET
        return AsyncModbusTcpClient(c.host, port=c.port, framer=framer, **common)

    def _where(self) -> str:
        c = self.conn
        return c.serial_port if isinstance(c, ModbusRtuConnection) else f"{c.host}:{c.port}"

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.connected

    async def connect(self) -> None:
        await self.close()
        client = self._make_client()
        if not await client.connect():
            client.close()
            raise DeviceUnreachable(f"cannot connect to {self._where()}")
        self._client = client

    async def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def _call(self, request: Callable[[AnyClient], Awaitable[ModbusPDU]]) -> ModbusPDU:
        client = self._client
        if client is None:
            raise DeviceUnreachable("not connected")
        try:
            # pymodbus enforces the response timeout; the outer guard covers anything stuck
            # (asyncio.timeout: a timer handle, not a task per request as wait_for would).
            async with asyncio.timeout(self.conn.timeout * 2 + 1):
                return await request(client)
        except (TimeoutError, ModbusIOException) as exc:
            raise PollTimeout(f"no answer within {self.conn.timeout:g} s") from exc
        except ConnectionException as exc:
            raise DeviceUnreachable(str(exc) or "connection lost") from exc

    # -- reads
    async def _read(self, block: Block) -> ModbusPDU:
        unit, start, count = self.conn.unit_id, block.start, block.count
        fc = block.function_code
        if fc == 3:
            return await self._call(
                lambda c: c.read_holding_registers(start, count=count, device_id=unit)
            )
        if fc == 4:
            return await self._call(
                lambda c: c.read_input_registers(start, count=count, device_id=unit)
            )
        if fc == 1:
            return await self._call(lambda c: c.read_coils(start, count=count, device_id=unit))
        return await self._call(
            lambda c: c.read_discrete_inputs(start, count=count, device_id=unit)
        )

    async def poll(self, group: PollGroup) -> PollResult:
        """Read the group's blocks in turn; one batch for the group, one timestamp per block."""
        g = self._groups[group.name]
        n = len(g.point)
        values = np.empty(n, np.float64)
        ts = np.empty(n, np.int64)
        quality: npt.NDArray[np.uint8] | None = None  # stays None while every block is good
        text: list[str | None] | None = [None] * n if g.has_text else None
        result = PollResult()
        for state in g.blocks:
            block, rows = state.block, state.rows
            response = await self._read(block)
            ts[rows] = now_us()  # when this block's answer arrived
            _check_answer(block, response)
            if response.isError():
                self._block_failed(state, response, result)
                values[rows] = np.nan
                if quality is None:
                    quality = np.full(n, Quality.GOOD, np.uint8)
                quality[rows] = Quality.BAD
                continue
            if state.failing:
                state.failing = False
                log.info(
                    "device %s: %s %d..%d readable again",
                    self.name,
                    block.space,
                    block.start,
                    block.end,
                )
            raw = response.bits if block.is_bits else np.asarray(response.registers, np.uint16)
            block_values, block_text = decode_block(block, raw)
            values[rows] = block_values
            if text is not None and block.strings:
                text[rows] = block_text
        bad = 0 if quality is None else int(np.count_nonzero(quality))
        self.stats.points_read += n - bad
        self.stats.bad_points += bad
        result.batches.append(
            pa.Table.from_arrays(
                [
                    g.device,
                    g.point,
                    pa.array(ts),
                    pa.array(values, pa.float64(), from_pandas=True),
                    g.no_text if text is None else pa.array(text, pa.string()),
                    g.good if quality is None else pa.array(quality),
                ],
                schema=EDGE_SCHEMA,
            )
        )
        return result

    def _block_failed(self, state: _BlockState, response: ModbusPDU, result: PollResult) -> None:
        block = state.block
        code = int(getattr(response, "exception_code", 0))
        msg = f"{block.space} {block.start}..{block.end}: exception {code} {exception_name(code)}"
        result.block_errors.append(msg)
        if not state.failing:
            state.failing = True
            log.warning("device %s: cannot read %s", self.name, msg)

    # -- writes
    async def write(self, point: str, value: float | bool | str) -> WriteResult:
        try:
            p = self.profile.point(point)
        except KeyError:
            return WriteResult(WriteStatus.INVALID, f"device {self.name} has no point {point!r}")
        if p.space is None or p.address is None:
            return WriteResult(WriteStatus.INVALID, f"{point}: no Modbus register and address")
        unit, address = self.conn.unit_id, p.address
        current: int | None = None
        if p.type == "bit" and p.space == "holding" and p.access == "rw":
            # One bit of a register: read-modify-write, both under the device's lock.
            response = await self._call(
                lambda c: c.read_holding_registers(address, count=1, device_id=unit)
            )
            if response.isError():
                return self._device_error(point, response)
            current = int(response.registers[0])
        try:
            encoded = encode(p, value, current=current)
        except EncodeError as exc:
            return WriteResult(WriteStatus.INVALID, str(exc))
        many = self.multiple_writes
        if isinstance(encoded, bool):
            bit = encoded
            if many:
                response = await self._call(lambda c: c.write_coils(address, [bit], device_id=unit))
            else:
                response = await self._call(lambda c: c.write_coil(address, bit, device_id=unit))
        else:
            words = list(encoded)
            if len(words) == 1 and not many:
                response = await self._call(
                    lambda c: c.write_register(address, words[0], device_id=unit)
                )
            else:
                response = await self._call(
                    lambda c: c.write_registers(address, words, device_id=unit)
                )
        if response.isError():
            return self._device_error(point, response)
        return WriteResult.ok()

    def _device_error(self, point: str, response: ModbusPDU) -> WriteResult:
        code = int(getattr(response, "exception_code", 0))
        self.stats.errors += 1
        return WriteResult(
            WriteStatus.DEVICE_ERROR,
            f"device {self.name} refused {point}: exception {code} {exception_name(code)}",
            code=code,
        )


def _check_answer(block: Block, response: ModbusPDU) -> None:
    """Raise :class:`BadResponse` unless ``response`` answers the read of ``block``: the
    same function code (or its exception), and exactly the registers asked for (bits come
    in whole bytes)."""
    fc = int(response.function_code)
    where = f"{block.space} {block.start}..{block.end}"
    if fc & 0x7F != block.function_code:
        raise BadResponse(f"{where}: answer has function code {fc}, not {block.function_code}")
    if response.isError():
        return
    got = len(response.bits) if block.is_bits else len(response.registers)
    want = (block.count + 7) // 8 * 8 if block.is_bits else block.count
    if got != want:
        raise BadResponse(f"{where}: answer has {got} values, asked for {block.count}")


class ModbusConnector(Connector):
    """Modbus TCP, RTU and RTU-over-TCP devices, one task and one connection per device."""

    kind = "modbus"

    def __init__(
        self,
        name: str,
        profiles: Sequence[DeviceProfile],
        sink: Sink,
        *,
        multiple_writes: bool = False,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        super().__init__(name, sink, backoff=backoff)
        not_modbus = [p.name for p in profiles if not p.is_modbus]
        if not_modbus:
            raise ValueError(f"{name}: not Modbus devices: {', '.join(not_modbus)}")
        self._profiles = list(profiles)
        self._multiple_writes = multiple_writes
        # pymodbus logs every timeout and failed connect itself; availability is reported
        # here once per transition, so keep its chatter out unless someone asked for it.
        plog = logging.getLogger("pymodbus")
        if plog.level == logging.NOTSET:
            plog.setLevel(logging.CRITICAL)

    def build_sessions(self) -> list[DeviceSession]:
        return [ModbusSession(p, multiple_writes=self._multiple_writes) for p in self._profiles]
