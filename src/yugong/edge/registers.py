"""Modbus register maps: coalesce points into few block reads, decode blocks with NumPy.

:func:`plan` turns a device's points into :class:`Block` reads — one per run of nearby
addresses in one register space and poll group, within the protocol's per-request limit.
Each block carries a decoder prepared once, so :func:`decode_block` costs a handful of NumPy
operations per (type, byte order, word order) present in the block, whatever the number of
points: registers are gathered with fancy indexing into an ``(n, words)`` array, ordered, and
reinterpreted with ``.view``. Only strings are decoded one by one.

:func:`encode` is the inverse for a single write.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from yugong.edge.profiles import BIT_SPACES, MAX_BITS, MAX_REGISTERS, Point, register_count

# Function code reading each space.
READ_FUNCTION: dict[str, int] = {"coil": 1, "discrete_input": 2, "holding": 3, "input": 4}
_SPACE_ORDER = ("coil", "discrete_input", "holding", "input")

# numpy dtype (big-endian) and struct code per numeric type
_NUMPY: dict[str, str] = {
    "int16": ">i2",
    "uint16": ">u2",
    "int32": ">i4",
    "uint32": ">u4",
    "int64": ">i8",
    "uint64": ">u8",
    "float32": ">f4",
    "float64": ">f8",
}
_STRUCT: dict[str, str] = {
    "int16": ">h",
    "uint16": ">H",
    "int32": ">i",
    "uint32": ">I",
    "int64": ">q",
    "uint64": ">Q",
    "float32": ">f",
    "float64": ">d",
}


class EncodeError(ValueError):
    """A value that cannot be written to a point; the message names the point."""


# --- decoding plan ------------------------------------------------------------------------------


@dataclass(eq=False, slots=True)
class _Run:
    """All points of one (type, byte order, word order) in a block, decoded together."""

    type: str
    byte_order: str
    word_order: str
    rows: npt.NDArray[np.intp]  # positions in the block's point list
    index: npt.NDArray[np.intp]  # (n, words) register offsets, already in word order
    bits: npt.NDArray[np.uint16] | None = None  # for type bit: the bit of each point


@dataclass(eq=False, slots=True)
class Block:
    """One read request: ``count`` registers (or bits) of ``space`` from ``start``."""

    space: str
    group: str
    start: int
    count: int
    points: tuple[Point, ...]
    offsets: npt.NDArray[np.intp]  # each point's first register, relative to start
    scale: npt.NDArray[np.float64] = field(repr=False)
    offset: npt.NDArray[np.float64] = field(repr=False)
    runs: tuple[_Run, ...] = field(repr=False)
    strings: tuple[int, ...] = field(repr=False)  # positions of string points

    @property
    def function_code(self) -> int:
        return READ_FUNCTION[self.space]

    @property
    def is_bits(self) -> bool:
        return self.space in BIT_SPACES

    @property
    def properties(self) -> list[str]:
        return [p.property for p in self.points]

    @property
    def end(self) -> int:
        """Last address read (inclusive)."""
        return self.start + self.count - 1


def plan(
    points: Sequence[Point],
    *,
    max_registers: int = MAX_REGISTERS,
    max_bits: int = MAX_BITS,
    max_gap: int = 10,
) -> list[Block]:
    """Fewest block reads covering ``points``, per (register space, poll group).

    Nearby points merge when the unread gap between them is at most ``max_gap`` registers
    (``16 * max_gap`` bits in coil and discrete-input space) and the block stays within
    ``max_registers`` / ``max_bits``. Greedy extension over sorted addresses is optimal here:
    a block can always take the next point unless the gap or the limit forbids it.
    """
    if max_registers < 1 or max_bits < 1 or max_gap < 0:
        raise ValueError("max_registers and max_bits must be >= 1 and max_gap >= 0")
    by_key: dict[tuple[str, str], list[Point]] = {}
    for p in points:
        if p.space is None or p.address is None:
            raise ValueError(f"point {p.property} has no Modbus register and address")
        if p.type is None and p.space not in BIT_SPACES:
            raise ValueError(f"point {p.property} has no type")
        by_key.setdefault((p.space, p.group or "default"), []).append(p)
    blocks: list[Block] = []
    for space, group in sorted(by_key, key=lambda k: (_SPACE_ORDER.index(k[0]), k[1])):
        bits = space in BIT_SPACES
        limit, gap = (max_bits, 16 * max_gap) if bits else (max_registers, max_gap)
        members = sorted(by_key[(space, group)], key=lambda p: (p.address, register_count(p)))
        current: list[Point] = []
        start = end = 0
        for p in members:
            a = p.address
            assert a is not None
            last = a + register_count(p) - 1
            if register_count(p) > limit:
                raise ValueError(
                    f"point {p.property} needs {register_count(p)} registers, over limit {limit}"
                )
            if current and a - end - 1 <= gap and max(end, last) - start + 1 <= limit:
                current.append(p)
                end = max(end, last)
                continue
            if current:
                blocks.append(_block(space, group, start, end - start + 1, current))
            current, start, end = [p], a, last
        if current:
            blocks.append(_block(space, group, start, end - start + 1, current))
    return blocks


def _block(space: str, group: str, start: int, count: int, points: list[Point]) -> Block:
    offsets = np.fromiter((p.address for p in points), dtype=np.intp, count=len(points)) - start
    scale = np.array([p.scale for p in points], dtype=np.float64)
    offset = np.array([p.offset for p in points], dtype=np.float64)
    runs: list[_Run] = []
    strings: list[int] = []
    if space not in BIT_SPACES:
        keyed: dict[tuple[str, str, str], list[int]] = {}
        for i, p in enumerate(points):
            if p.type == "string":
                strings.append(i)
            elif p.type is not None:
                keyed.setdefault((p.type, p.byte_order, p.word_order), []).append(i)
        for (typ, bo, wo), rows_list in keyed.items():
            rows = np.array(rows_list, dtype=np.intp)
            words = np.arange(
                1 if typ in ("bool", "bit") else int(_NUMPY[typ][-1]) // 2, dtype=np.intp
            )
            index = offsets[rows, None] + words[None, :]
            if wo == "little":
                index = np.ascontiguousarray(index[:, ::-1])
            bitnos = (
                np.array([points[r].bit or 0 for r in rows_list], dtype=np.uint16)
                if typ == "bit"
                else None
            )
            runs.append(_Run(typ, bo, wo, rows, index, bitnos))
    return Block(
        space=space,
        group=group,
        start=start,
        count=count,
        points=tuple(points),
        offsets=offsets,
        scale=scale,
        offset=offset,
        runs=tuple(runs),
        strings=tuple(strings),
    )


# --- decoding -----------------------------------------------------------------------------------


def unpack_bits(data: bytes, count: int) -> npt.NDArray[np.bool_]:
    """Coil/discrete-input response bytes (LSB first, as on the wire) -> ``count`` booleans."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    if bits.size < count:
        raise ValueError(f"response holds {bits.size} bits, expected {count}")
    return bits[:count].astype(np.bool_)


def decode_block(
    block: Block, registers: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], list[str | None]]:
    """Engineering values of all the block's points (in ``block.points`` order).

    ``registers`` is what the read returned: uint16 register values for holding/input blocks,
    booleans (or 0/1) for coil/discrete-input blocks — at least ``block.count`` of them.
    Numbers and booleans (as 0/1) come back in ``values``; strings in ``text`` with NaN values.
    """
    regs = np.asarray(registers)
    if regs.ndim != 1 or regs.shape[0] < block.count:
        got = regs.shape[0] if regs.ndim == 1 else regs.shape
        raise ValueError(
            f"{block.space} block at {block.start}: got {got} values, expected {block.count}"
        )
    n = len(block.points)
    text: list[str | None] = [None] * n
    if block.is_bits:
        return (regs[block.offsets] != 0).astype(np.float64), text
    if regs.dtype != np.uint16:
        if regs.size and (regs.min() < 0 or regs.max() > 0xFFFF):
            raise ValueError(
                f"{block.space} block at {block.start}: register values must be 0..65535"
            )
        regs = regs.astype(np.uint16)
    values = np.full(n, np.nan, dtype=np.float64)
    for run in block.runs:
        values[run.rows] = _decode_run(run, regs)
    values = values * block.scale + block.offset
    for i in block.strings:
        p = block.points[i]
        off = int(block.offsets[i])
        text[i] = _decode_string(regs[off : off + register_count(p)], p.byte_order, p.word_order)
    return values, text


def _decode_run(run: _Run, regs: npt.NDArray[np.uint16]) -> npt.NDArray[np.float64]:
    words = regs[run.index]  # (n, words), most significant register first
    # Big byte order: each register's high byte first on the wire; little swaps the two.
    raw = words.astype(">u2" if run.byte_order == "big" else "<u2")
    if run.type == "bool":
        return (raw[:, 0] != 0).astype(np.float64)
    if run.type == "bit":
        assert run.bits is not None
        reg = raw.view(">u2")[:, 0]  # the register as the device means it, bytes ordered
        return ((reg >> run.bits) & 1).astype(np.float64)
    return raw.view(_NUMPY[run.type])[:, 0].astype(np.float64)


def _decode_string(regs: npt.NDArray[np.uint16], byte_order: str, word_order: str) -> str:
    if word_order == "little":
        regs = regs[::-1]
    data = regs.astype(">u2" if byte_order == "big" else "<u2").tobytes()
    return data.rstrip(b"\x00").decode("utf-8", errors="replace")


# --- encoding -----------------------------------------------------------------------------------


def encode(point: Point, value: object, *, current: int | None = None) -> list[int] | bool:
    """Registers (or the coil state) to write ``value`` to ``point``.

    The inverse of decoding: ``raw = (value - offset) / scale``, rounded for integer types and
    refused when it does not fit. A ``bit`` point changes one bit of a register, so it needs
    the register's ``current`` value (read-modify-write).
    """
    where = f"{point.property}"
    if point.access != "rw":
        raise EncodeError(f"{where}: read-only point (access r)")
    if point.space in ("input", "discrete_input"):
        raise EncodeError(f"{where}: {point.space} cannot be written")
    if point.space == "coil":
        return _as_bool(where, value)
    if point.type is None:
        raise EncodeError(f"{where}: point has no type")
    if point.type == "bool":
        return [1 if _as_bool(where, value) else 0]
    if point.type == "bit":
        if current is None:
            raise EncodeError(
                f"{where}: writing bit {point.bit} needs the register's current value"
            )
        if not 0 <= current <= 0xFFFF:
            raise EncodeError(f"{where}: current register value {current} out of range 0..65535")
        mask = 1 << (point.bit or 0)
        reg = _swap(current) if point.byte_order == "little" else current
        reg = reg | mask if _as_bool(where, value) else reg & ~mask
        return [_swap(reg) if point.byte_order == "little" else reg]
    if point.type == "string":
        if not isinstance(value, str):
            raise EncodeError(f"{where}: string point needs a str, got {type(value).__name__}")
        data = value.encode("utf-8")
        size = 2 * (point.length or 0)
        if len(data) > size:
            raise EncodeError(
                f"{where}: {len(data)} bytes do not fit {point.length} registers ({size} bytes)"
            )
        data = data.ljust(size, b"\x00")
    else:
        data = struct.pack(_STRUCT[point.type], _raw_number(point, value))
    regs = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if point.byte_order == "little":
        regs = [_swap(r) for r in regs]
    if point.word_order == "little":
        regs.reverse()
    return regs


def _swap(reg: int) -> int:
    return ((reg & 0xFF) << 8) | (reg >> 8)


def _as_bool(where: str, value: object) -> bool:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    raise EncodeError(f"{where}: expected a boolean (true/false or 0/1), got {value!r}")


def _raw_number(point: Point, value: object) -> int | float:
    where = point.property
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise EncodeError(f"{where}: expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise EncodeError(f"{where}: value {value} is not a finite number")
    typ = point.type or ""
    identity = point.scale == 1 and point.offset == 0
    raw: int | float = value if identity else (value - point.offset) / point.scale
    if typ.startswith("float"):
        raw = float(raw)
        limit = float(np.finfo(np.float32).max) if typ == "float32" else math.inf
        if not math.isfinite(raw) or abs(raw) > limit:
            raise EncodeError(f"{where}: value {value} out of range for {typ}")
        return raw
    if isinstance(raw, float):
        if not math.isfinite(raw):
            raise EncodeError(f"{where}: value {value} out of range for {typ}")
        raw = round(raw)
    info = np.iinfo(np.dtype(_NUMPY[typ]))
    lo, hi = int(info.min), int(info.max)
    if not lo <= raw <= hi:
        scaled = (
            ""
            if identity
            else f" (raw {raw} after scale {point.scale:g} and offset {point.offset:g})"
        )
        raise EncodeError(f"{where}: value {value} out of range for {typ} ({lo}..{hi}){scaled}")
    return raw
