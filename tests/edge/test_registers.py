"""Coalescing plans and vectorised decode/encode, checked against pymodbus' own conversions."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from pymodbus.client import ModbusTcpClient

from yugong.edge.profiles import Point
from yugong.edge.registers import EncodeError, decode_block, encode, plan, unpack_bits

DT = ModbusTcpClient.DATATYPE
NUMERIC = {
    "int16": DT.INT16,
    "uint16": DT.UINT16,
    "int32": DT.INT32,
    "uint32": DT.UINT32,
    "int64": DT.INT64,
    "uint64": DT.UINT64,
    "float32": DT.FLOAT32,
    "float64": DT.FLOAT64,
}
WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4}
WORDS |= {"float32": 2, "float64": 4}
ORDERS = [("big", "big"), ("big", "little"), ("little", "big"), ("little", "little")]


def pt(prop: str, address: int, type_: str = "uint16", **kw: Any) -> Point:
    kw.setdefault("space", kw.pop("register", "holding"))
    return Point(property=prop, address=address, type=type_, **kw)


def swap_bytes(regs: list[int]) -> list[int]:
    """pymodbus only knows word order; byte order little is each register's bytes swapped."""
    return [((r & 0xFF) << 8) | (r >> 8) for r in regs]


def reference(regs: list[int], type_: str, byte_order: str, word_order: str) -> Any:
    if byte_order == "little":
        regs = swap_bytes(regs)
    return ModbusTcpClient.convert_from_registers(regs, NUMERIC[type_], word_order=word_order)  # type: ignore[arg-type]


# --- decode -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("byte_order", "word_order"), ORDERS)
@pytest.mark.parametrize("type_", list(NUMERIC))
def test_decode_matches_pymodbus(type_: str, byte_order: str, word_order: str) -> None:
    rng = np.random.default_rng(7)
    words = WORDS[type_]
    n = 30
    # random words cover signs, extremes and float NaN/inf patterns alike
    regs = rng.integers(0, 0x10000, size=n * words, dtype=np.uint16)
    regs[:words] = 0xFFFF
    points = [
        pt(f"p{i}", i * words, type_, byte_order=byte_order, word_order=word_order)
        for i in range(n)
    ]
    (block,) = plan(points)
    values, text = decode_block(block, regs)
    expected = []
    for p in block.points:
        assert p.address is not None
        chunk = [int(r) for r in regs[p.address : p.address + words]]
        expected.append(float(reference(chunk, type_, byte_order, word_order)))
    np.testing.assert_array_equal(values, np.array(expected))
    assert text == [None] * n


@pytest.mark.parametrize(("byte_order", "word_order"), ORDERS)
@pytest.mark.parametrize("type_", list(NUMERIC))
def test_encode_matches_pymodbus_and_round_trips(
    type_: str, byte_order: str, word_order: str
) -> None:
    p = pt("v", 0, type_, byte_order=byte_order, word_order=word_order, access="rw")
    info = np.finfo(np.float32) if type_ == "float32" else None
    if type_.startswith("float"):
        samples: list[int | float] = [0.0, -1.5, 3.25, 1e-3, -123456.75]
        if info is not None:
            samples += [float(info.max), float(info.tiny)]
        else:
            samples += [1e300, -2.2250738585072014e-308]
    else:
        ii = np.iinfo(np.dtype(type_))
        samples = [int(ii.min), int(ii.max), 0, 1, int(ii.max) // 3]
    for v in samples:
        regs = encode(p, v)
        assert isinstance(regs, list)
        ref = ModbusTcpClient.convert_to_registers(v, NUMERIC[type_], word_order=word_order)  # type: ignore[arg-type]
        if byte_order == "little":
            ref = swap_bytes(ref)
        assert regs == ref, v
        (block,) = plan([p])
        values, _ = decode_block(block, np.array(regs, dtype=np.uint16))
        if type_ == "float32":
            assert values[0] == float(np.float32(v))
        else:
            assert values[0] == float(v)


def test_int64_values_beyond_2_53_decode_like_python_floats() -> None:
    for type_ in ("int64", "uint64"):
        p = pt("big", 0, type_, access="rw")
        v = 2**53 + 1 if type_ == "int64" else 2**64 - 1
        regs = encode(p, v)
        assert isinstance(regs, list)
        values, _ = decode_block(plan([p])[0], regs)
        assert values[0] == float(v)


@pytest.mark.parametrize(("byte_order", "word_order"), ORDERS)
def test_strings_match_pymodbus(byte_order: str, word_order: str) -> None:
    p = pt(
        "serial", 3, "string", length=5, byte_order=byte_order, word_order=word_order, access="rw"
    )
    for s in ["AB-1234", "ten chars!", "", "Ω2"]:
        regs = encode(p, s)
        assert isinstance(regs, list) and len(regs) == 5
        ref_regs = swap_bytes(regs) if byte_order == "little" else regs
        ref = ModbusTcpClient.convert_from_registers(ref_regs, DT.STRING, word_order=word_order)  # type: ignore[arg-type]
        assert ref == s
        block = plan([p])[0]
        values, text = decode_block(block, regs)
        assert text == [s] and np.isnan(values[0])
    with pytest.raises(EncodeError, match=r"serial: 11 bytes do not fit 5 registers"):
        encode(p, "eleven char")


def test_bit_of_register_and_bool_register() -> None:
    reg = 0b1000_0000_0010_0101  # bits 0, 2, 5, 15
    points = [pt(f"b{b}", 0, "bit", bit=b) for b in range(16)]
    points.append(pt("flag", 1, "bool"))
    points.append(pt("lb3", 2, "bit", bit=3, byte_order="little"))  # bytes swapped: bit 3 of 0x08..
    (block,) = plan(points)
    values, _ = decode_block(block, [reg, 7, 0x0800])
    expected = [float((reg >> b) & 1) for b in range(16)] + [1.0, 1.0]
    assert values.tolist() == expected
    # pymodbus BITS over the same register agrees (it orders bits LSB first within each byte)
    bits = ModbusTcpClient.convert_from_registers([reg], DT.BITS)
    assert isinstance(bits, list)
    assert [float(b) for b in bits[8:] + bits[:8]] == expected[:16]


def test_bit_write_is_read_modify_write() -> None:
    p = pt("run", 0, "bit", bit=4, access="rw")
    assert encode(p, True, current=0b1) == [0b1_0001]
    assert encode(p, 0, current=0xFFFF) == [0xFFEF]
    with pytest.raises(EncodeError, match="run: writing bit 4 needs the register's current value"):
        encode(p, True)
    little = pt("l", 0, "bit", bit=0, byte_order="little", access="rw")
    assert encode(little, True, current=0x0000) == [0x0100]


def test_scale_and_offset_vectorised_and_inverted() -> None:
    temp = pt("temp", 0, "int16", scale=0.1, offset=-40, access="rw")
    power = pt("power", 1, "uint32", scale=0.001, word_order="little")
    (block,) = plan([temp, power])
    values, _ = decode_block(block, [655, 0x4240, 0x000F])  # power raw 0x000F4240 = 1,000,000
    np.testing.assert_allclose(values, [25.5, 1000.0])
    assert encode(temp, 25.5) == [655]
    assert encode(temp, -40) == [0]
    with pytest.raises(EncodeError, match=r"temp: value 4000 out of range for int16 .*raw 40400"):
        encode(temp, 4000)


def test_encode_refuses_bad_values() -> None:
    u16 = pt("sp", 0, "uint16", access="rw")
    with pytest.raises(EncodeError, match=r"sp: value -1 out of range for uint16 \(0..65535\)"):
        encode(u16, -1)
    with pytest.raises(EncodeError, match="sp: expected a number"):
        encode(u16, "12")
    with pytest.raises(EncodeError, match="sp: value nan is not a finite number"):
        encode(u16, float("nan"))
    with pytest.raises(EncodeError, match="out of range for float32"):
        encode(pt("f", 0, "float32", access="rw"), 1e39)
    with pytest.raises(EncodeError, match="ro: read-only point"):
        encode(pt("ro", 0, "uint16"), 1)
    coil = pt("pump", 0, "bool", register="coil", access="rw")
    assert encode(coil, True) is True and encode(coil, 0) is False
    with pytest.raises(EncodeError, match="pump: expected a boolean"):
        encode(coil, 2)


def test_coil_blocks_and_wire_bits() -> None:
    points = [pt(f"c{a}", a, "bool", register="coil") for a in (0, 3, 9, 17)]
    (block,) = plan(points)
    assert (block.start, block.count, block.function_code) == (0, 18, 1)
    # wire format: LSB of the first byte is the first coil
    data = bytes([0b0000_1000, 0b0000_0010, 0b0000_0010])  # coils 3, 9, 17 on
    bits = unpack_bits(data, block.count)
    values, _ = decode_block(block, bits)
    assert values.tolist() == [0.0, 1.0, 1.0, 1.0]
    # pymodbus' list[bool] from read_coils works as is
    values, _ = decode_block(block, [i in (0, 17) for i in range(24)])
    assert values.tolist() == [1.0, 0.0, 0.0, 1.0]
    with pytest.raises(ValueError, match="response holds 8 bits, expected 18"):
        unpack_bits(b"\x00", 18)


def test_short_or_malformed_response_is_refused() -> None:
    (block,) = plan([pt("a", 0, "float32"), pt("b", 4, "uint16")])
    with pytest.raises(ValueError, match="holding block at 0: got 3 values, expected 5"):
        decode_block(block, [0, 0, 0])
    with pytest.raises(ValueError, match=r"register values must be 0\.\.65535"):
        decode_block(block, [0, 0, 0, 0, 70000])


# --- coalescing ---------------------------------------------------------------------------------


def spans(blocks: list[Any]) -> list[tuple[str, str, int, int]]:
    return [(b.space, b.group, b.start, b.count) for b in blocks]


def test_contiguous_points_make_one_block_with_offsets() -> None:
    points = [pt("c", 4, "float32"), pt("a", 0, "uint16"), pt("b", 1, "int32"), pt("d", 3, "int16")]
    (block,) = plan(points)
    assert (block.start, block.count) == (0, 6)
    assert block.properties == ["a", "b", "d", "c"]
    assert block.offsets.tolist() == [0, 1, 3, 4]


def test_gaps_under_and_over_max_gap() -> None:
    points = [pt("a", 0), pt("b", 11), pt("c", 23)]  # gaps of 10 then 11 unread registers
    assert spans(plan(points)) == [("holding", "default", 0, 12), ("holding", "default", 23, 1)]
    assert spans(plan(points, max_gap=11)) == [("holding", "default", 0, 24)]
    assert len(plan(points, max_gap=0)) == 3
    assert len(plan([pt("a", 0), pt("b", 1)], max_gap=0)) == 1


@pytest.mark.parametrize("limit", [125, 16])
def test_block_limits(limit: int) -> None:
    points = [pt(f"p{i}", 2 * i, "float32") for i in range(200)]  # 400 contiguous registers
    blocks = plan(points, max_registers=limit)
    per_block = limit // 2 * 2
    assert len(blocks) == -(-400 // per_block)  # the fewest the limit allows
    assert all(b.count <= limit for b in blocks)
    assert sum(len(b.points) for b in blocks) == 200
    # a float32 never straddles two blocks
    assert all(b.start % 2 == 0 and b.count % 2 == 0 for b in blocks)


def test_bit_limit_and_bit_gap() -> None:
    coils = [pt(f"c{i}", i, "bool", register="coil") for i in range(4500)]
    blocks = plan(coils)
    assert [b.count for b in blocks] == [2000, 2000, 500]
    # gaps in bit spaces count 16 bits per register of max_gap
    far = [pt("x", 0, "bool", register="coil"), pt("y", 162, "bool", register="coil")]
    assert len(plan(far, max_gap=10)) == 2
    assert len(plan(far, max_gap=11)) == 1


def test_spaces_and_groups_are_separate_requests() -> None:
    points = [
        pt("h0", 0),
        pt("h1", 1, group="slow"),
        pt("i0", 0, register="input"),
        pt("c0", 0, "bool", register="coil"),
        pt("d0", 0, "bool", register="discrete_input"),
        pt("h2", 2),
    ]
    blocks = plan(points)
    assert spans(blocks) == [
        ("coil", "default", 0, 1),
        ("discrete_input", "default", 0, 1),
        ("holding", "default", 0, 3),
        ("holding", "slow", 1, 1),
        ("input", "default", 0, 1),
    ]
    assert [b.function_code for b in blocks] == [1, 2, 3, 3, 4]
    assert blocks[2].properties == ["h0", "h2"]


def test_bit_points_sharing_a_register_share_the_block() -> None:
    points = [pt("run", 10, "bit", bit=0), pt("fault", 10, "bit", bit=1), pt("speed", 11, "int16")]
    (block,) = plan(points)
    assert (block.start, block.count) == (10, 2)
    values, _ = decode_block(block, [0b10, 0xFFFF])
    assert values.tolist() == [0.0, 1.0, -1.0]


# --- vectorisation ------------------------------------------------------------------------------


@contextmanager
def count_calls() -> Iterator[list[int]]:
    """Count every Python and C function call made while the block runs."""
    counter = [0]

    def prof(frame: Any, event: str, arg: Any) -> None:
        if event in ("call", "c_call"):
            counter[0] += 1

    sys.setprofile(prof)
    try:
        yield counter
    finally:
        sys.setprofile(None)


def mixed_points(n: int) -> list[Point]:
    kinds = [("float32", 2, "big"), ("int16", 1, "big"), ("uint32", 2, "little"), ("bit", 1, "big")]
    points, addr = [], 0
    for i in range(n):
        type_, words, wo = kinds[i % len(kinds)]
        extra = {"bit": i % 16} if type_ == "bit" else {}
        points.append(
            pt(f"p{i}", addr, type_, word_order=wo, scale=1 if type_ == "bit" else 0.5, **extra)
        )
        addr += words
    return points


def test_decoding_cost_does_not_grow_with_points() -> None:
    small = plan(mixed_points(100), max_registers=1_000_000)
    large = plan(mixed_points(10_000), max_registers=1_000_000)
    assert len(small) == len(large) == 1
    regs_small = np.arange(small[0].count, dtype=np.uint16)
    regs_large = np.arange(large[0].count, dtype=np.uint16)
    decode_block(large[0], regs_large)  # warm caches (imports, dtype parsing)
    with count_calls() as n_small:
        values_small, _ = decode_block(small[0], regs_small)
    with count_calls() as n_large:
        values_large, _ = decode_block(large[0], regs_large)
    assert n_large[0] == n_small[0] < 200
    assert values_large.shape == (10_000,)
    np.testing.assert_array_equal(values_large[:100], values_small)
