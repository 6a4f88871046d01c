"""Device profiles: YAML loading and every validation error, each naming its point."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pymodbus.client import ModbusTcpClient

from yugong.edge.profiles import (
    DeviceProfile,
    ModbusTcpConnection,
    OpcUaConnection,
    ProfileError,
    load_profile,
    load_profiles,
    parse_profile,
)
from yugong.edge.registers import decode_block, plan

ENERGY_METER = """\
name: meter-1
protocol: modbus_tcp
connection:
  host: 127.0.0.1
  port: 5020
  unit_id: 3
  max_gap: 4
interval: 5s
groups:
  fast: 500ms
  energy: {interval: 1m}
points:
  - {property: voltage_l1, address: 0, register: input, type: float32, unit: V, group: fast}
  - {property: voltage_l2, address: 2, register: input, type: float32, unit: V, group: fast}
  - {property: voltage_l3, address: 4, register: input, type: float32, unit: V, group: fast}
  - property: current_l1
    address: 6
    register: input
    type: float32
    unit: A
    group: fast
    deadband: {absolute: 0.05}
  - property: active_power
    address: 52
    register: input
    type: float32
    word_order: little          # this meter sends the low word first
    unit: kW
    scale: 0.001
    group: fast
    deadband: {percent: 1}
  - property: frequency
    address: 70
    register: input
    type: uint16
    scale: 0.01
    unit: Hz
  - property: energy_import
    address: 342
    register: input
    type: float64
    unit: kWh
    group: energy
  - property: serial_number
    address: 1000
    register: holding
    type: string
    length: 8
"""

PUMP_PLC = """\
name: pump-7
protocol: modbus_rtu_over_tcp
connection: {host: plc-7.local, unit_id: 1, max_registers: 16}
points:
  - {property: running, address: 0, register: coil, type: bool, access: rw}
  - {property: fault, address: 1, register: discrete_input, type: bool}
  - {property: speed_setpoint, address: 10, register: holding, type: int16, access: rw, unit: rpm}
  - {property: speed, address: 11, register: holding, type: int16, unit: rpm}
  - {property: motor_temp, address: 12, register: holding, type: int16, scale: 0.1, unit: Cel}
  - {property: overload, address: 13, register: holding, type: bit, bit: 2}
  - {property: dry_run, address: 13, register: holding, type: bit, bit: 5}
  - {property: run_hours, address: 20, register: holding, type: uint32, byte_order: little}
  - {property: flow, address: 30, register: input, type: int16, scale: 0.1, interval: 250ms}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_energy_meter_profile_loads_and_plans(tmp_path: Path) -> None:
    prof = load_profile(write(tmp_path, "meter-1.yaml", ENERGY_METER))
    assert isinstance(prof.connection, ModbusTcpConnection)
    assert (prof.connection.host, prof.connection.port, prof.connection.unit_id) == (
        "127.0.0.1",
        5020,
        3,
    )
    assert prof.poll_groups() == {"fast": 500_000, "default": 5_000_000, "energy": 60_000_000}
    power = prof.point("active_power")
    assert (power.type, power.word_order, power.group, power.interval) == (
        "float32",
        "little",
        "fast",
        "500ms",
    )
    assert power.deadband is not None and power.deadband.percent == 1
    assert prof.point("frequency").group == "default"
    conn = prof.connection
    blocks = plan(prof.points, max_registers=conn.max_registers, max_gap=conn.max_gap)
    got = [(b.space, b.group, b.start, b.count) for b in blocks]
    assert got == [
        ("holding", "default", 1000, 8),
        ("input", "default", 70, 1),
        ("input", "energy", 342, 4),
        ("input", "fast", 0, 8),
        ("input", "fast", 52, 2),
    ]
    # decode the fast block of real meter words: 230.5 V, 231 V, 229.75 V, 12.5 A
    fast = blocks[3]
    regs: list[int] = []
    for v in (230.5, 231.0, 229.75, 12.5):
        regs += ModbusTcpClient.convert_to_registers(v, ModbusTcpClient.DATATYPE.FLOAT32)
    values, _ = decode_block(fast, regs)
    np.testing.assert_array_equal(values, [230.5, 231.0, 229.75, 12.5])
    power_regs = ModbusTcpClient.convert_to_registers(
        4321.0, ModbusTcpClient.DATATYPE.FLOAT32, word_order="little"
    )
    values, _ = decode_block(blocks[4], power_regs)
    assert values[0] == pytest.approx(4.321)


def test_pump_plc_profile_loads(tmp_path: Path) -> None:
    prof = load_profile(write(tmp_path, "pump-7.yaml", PUMP_PLC))
    assert prof.protocol == "modbus_rtu_over_tcp"
    assert prof.connection.protocol == "modbus_rtu_over_tcp"
    assert prof.point("running").space == "coil" and prof.point("running").access == "rw"
    assert prof.point("flow").group == "every 250ms"
    blocks = plan(prof.points, max_registers=16)
    by_space = {(b.space, b.group): b.properties for b in blocks}
    assert by_space[("holding", "default")] == [
        "speed_setpoint",
        "speed",
        "motor_temp",
        "overload",
        "dry_run",
        "run_hours",
    ]
    assert by_space[("coil", "default")] == ["running"]
    assert by_space[("input", "every 250ms")] == ["flow"]


def test_other_protocols_take_their_own_settings() -> None:
    prof = parse_profile(
        {
            "name": "cnc-2",
            "protocol": "opcua",
            "connection": {
                "endpoint": "opc.tcp://cnc-2:4840",
                "security_policy": "Basic256Sha256",
                "security_mode": "SignAndEncrypt",
                "username": "edge",
                "password": "secret",
            },
            "points": [
                {"property": "spindle_speed", "node": "ns=2;s=Spindle.Speed", "type": "float64"}
            ],
        }
    )
    assert isinstance(prof.connection, OpcUaConnection)
    assert prof.connection.security_policy == "Basic256Sha256"
    with pytest.raises(ProfileError) as e:
        parse_profile({"name": "cnc-3", "protocol": "opcua", "connection": {"host": "x"}})
    text = str(e.value)
    assert "cnc-3: connection.endpoint: Field required" in text
    assert "cnc-3: connection.host: Extra inputs are not permitted" in text


def base(points: list[dict[str, Any]], **conn: Any) -> dict[str, Any]:
    return {
        "name": "press-1",
        "protocol": "modbus_tcp",
        "connection": {"host": "10.0.0.5", **conn},
        "points": points,
    }


def reg(prop: str, address: int, type_: str = "uint16", **kw: Any) -> dict[str, Any]:
    return {"property": prop, "address": address, "register": "holding", "type": type_, **kw}


def errors_of(data: dict[str, Any]) -> list[str]:
    with pytest.raises(ProfileError) as e:
        parse_profile(data, source="press-1.yaml")
    lines = str(e.value).splitlines()
    assert all(line.startswith("press-1.yaml: ") for line in lines), lines
    return [line.removeprefix("press-1.yaml: ") for line in lines]


FILLER = [reg("a", 0), reg("b", 1), reg("c", 2)]


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (reg("temperature", 70000), "address 70000 out of range 0..65535"),
        (reg("temperature", -1), "address -1 out of range 0..65535"),
        (
            reg("temperature", 65530, "string", length=10),
            "address 65530 + 10 registers ends at 65539",
        ),
        (reg("temperature", 65535, "float32"), "ends at 65536, beyond 65535"),
        (reg("temperature", 9, "float32", register="coil"), "type float32 does not fit a coil"),
        (reg("temperature", 9, "bit", bit=1, register="coil"), "type bit does not fit a coil"),
        (reg("temperature", 9, "bit", bit=16), "bit 16 outside 0..15"),
        (reg("temperature", 9, "bit", bit=-1), "bit -1 outside 0..15"),
        (reg("temperature", 9, "bit"), "type bit needs bit: 0..15"),
        (reg("temperature", 9, "int16", bit=3), "bit applies to type bit only, not int16"),
        (reg("temperature", 9, "string"), "type string needs length"),
        (reg("temperature", 9, "string", length=0), "string length 0 must be at least 1"),
        (
            reg("temperature", 9, "string", length=126),
            "needs 126 registers, over the device's limit of 125",
        ),
        (reg("temperature", 9, access="rw", register="input"), "access rw on input"),
        (
            reg("temperature", 9, "bool", access="rw", register="discrete_input"),
            "access rw on discrete_input",
        ),
        (reg("temperature", 9, scale=0), "scale must not be 0"),
        (reg("temperature", 9, "bool", scale=2), "scale and offset apply to numbers, not to bool"),
        (reg("temperature", 9, deadband={"absolute": -0.5}), "deadband absolute -0.5 is negative"),
        (reg("temperature", 9, deadband={"percent": -1}), "deadband percent -1.0 is negative"),
        (reg("temperature", 9, deadband={}), "deadband takes exactly one of absolute or percent"),
        (reg("temperature", 9, group="fast"), "poll group 'fast' is not declared"),
        ({"property": "temperature", "address": 9, "type": "int16"}, "Modbus points need register"),
        ({"property": "temperature", "address": 9, "register": "input"}, "input points need type"),
        ({"property": "temperature", "register": "holding"}, "Modbus points need address"),
        (reg("temperature", 9, node="ns=2;i=5"), "Modbus points take address, not node or path"),
    ],
)
def test_each_validation_error_names_its_point(point: dict[str, Any], message: str) -> None:
    errors = errors_of(base([*FILLER, point]))
    assert len(errors) == 1, errors
    assert errors[0].startswith("press-1.points[3] (temperature): "), errors
    assert message in errors[0]


def test_field_errors_name_the_point_and_field() -> None:
    errors = errors_of(
        base([*FILLER, reg("temperature", 9, "float128", word_order="middle", colour=1)])
    )
    assert len(errors) == 3
    assert all(e.startswith("press-1.points[3] (temperature): ") for e in errors)
    joined = "\n".join(errors)
    assert "type: Input should be 'bool', 'bit'" in joined and "(got 'float128')" in joined
    assert "word_order: Input should be 'big' or 'little' (got 'middle')" in joined
    assert "colour: Extra inputs are not permitted" in joined


def test_limit_lowered_by_the_connection_names_the_point() -> None:
    errors = errors_of(base([*FILLER, reg("temperature", 9, "float64")], max_registers=3))
    assert errors == [
        "press-1.points[3] (temperature): "
        "needs 4 registers, over the device's limit of 3 per request"
    ]


def test_duplicate_property() -> None:
    errors = errors_of(base([*FILLER, reg("a", 10)]))
    assert errors == ["press-1.points[3] (a): duplicate property 'a' (also points[0])"]


def test_overlapping_addresses() -> None:
    errors = errors_of(base([reg("power", 0, "float32"), reg("temperature", 1, "int16")]))
    assert errors == ["press-1.points[1] (temperature): holding address 1..1 overlaps power (0..1)"]
    # a long string hides everything under it
    errors = errors_of(base([reg("name", 0, "string", length=10), reg("x", 5), reg("y", 12)]))
    assert errors == ["press-1.points[1] (x): holding address 5..5 overlaps name (0..9)"]
    # bit points may share a register with each other, not with a number, nor reuse a bit
    errors = errors_of(
        base([reg("run", 4, "bit", bit=0), reg("speed", 4, "int16"), reg("fault", 4, "bit", bit=0)])
    )
    assert errors == [
        "press-1.points[1] (speed): holding address 4..4 overlaps run (4..4)",
        "press-1.points[2] (fault): bit 0 of holding 4 is already run",
    ]


def test_same_address_in_other_spaces_does_not_overlap() -> None:
    prof = parse_profile(
        base(
            [
                reg("h", 0),
                reg("i", 0, register="input"),
                reg("c", 0, "bool", register="coil"),
                reg("d", 0, "bool", register="discrete_input"),
                reg("b0", 1, "bit", bit=0),
                reg("b1", 1, "bit", bit=1),
            ]
        )
    )
    assert len(prof.points) == 6
    # coils and discrete inputs are bool whether or not the profile says so
    prof = parse_profile(base([{"property": "run", "address": 0, "register": "coil"}]))
    assert plan(prof.points)[0].function_code == 1


def test_all_errors_reported_at_once() -> None:
    errors = errors_of(base([reg("a", 70000), reg("b", 1, scale=0), reg("b", 2, "bit")]))
    assert len(errors) == 4, errors


def test_interval_and_group_checks() -> None:
    errors = errors_of(
        {**base([reg("temperature", 0, group="fast", interval="2s")]), "groups": {"fast": "1s"}}
    )
    assert errors == [
        "press-1.points[0] (temperature): interval 2s differs from its group 'fast' (1s)"
    ]
    # a group may be named on its points alone, with one interval
    errors = errors_of(
        base(
            [reg("a", 0, group="g", interval="1s"), reg("temperature", 1, group="g", interval="2s")]
        )
    )
    assert errors == [
        "press-1.points[1] (temperature): interval 2s differs from group 'g' (1s at points[0])"
    ]
    errors = errors_of(base([reg("temperature", 0, interval="soon")]))
    assert errors == [
        "press-1.points[0] (temperature): "
        "interval: not a duration: 'soon' (use e.g. 500ms, 15s, 1m, 2h, 1d)"
    ]


def test_protocol_specific_point_addressing() -> None:
    data = {
        "name": "line-mqtt",
        "protocol": "mqtt_json",
        "connection": {"host": "broker", "topic": "plant/line1/#"},
        "points": [{"property": "temperature", "address": 4, "register": "holding"}],
    }
    with pytest.raises(ProfileError) as e:
        parse_profile(data)
    text = str(e.value)
    assert "line-mqtt.points[0] (temperature): address is for Modbus points" in text
    assert "line-mqtt.points[0] (temperature): register is for Modbus points" in text
    assert "mqtt_json points need path" in text


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    bad = write(tmp_path, "broken.yaml", "name: x\npoints: [\n  - {property: a\n")
    with pytest.raises(ProfileError, match=r"broken.yaml:\d+:\d+: not valid YAML"):
        load_profile(bad)
    with pytest.raises(ProfileError, match=r"missing\.yaml: cannot read"):
        load_profile(tmp_path / "missing.yaml")
    with pytest.raises(ProfileError, match=r"list\.yaml: a device profile is a mapping"):
        load_profile(write(tmp_path, "list.yaml", "- 1\n- 2\n"))
    unknown = write(tmp_path, "u.yaml", "name: u\nprotocol: profibus\n")
    with pytest.raises(ProfileError, match=r"u.yaml: u: protocol: Input should be 'modbus_tcp'"):
        load_profile(unknown)


def test_device_names_unique_across_files(tmp_path: Path) -> None:
    a = write(tmp_path, "a.yaml", PUMP_PLC)
    b = write(tmp_path, "b.yaml", PUMP_PLC)
    assert [p.name for p in load_profiles([a])] == ["pump-7"]
    with pytest.raises(ProfileError, match=r"b\.yaml: device pump-7 is already defined in a\.yaml"):
        load_profiles([a, b])


def test_profile_is_a_typed_model() -> None:
    prof = DeviceProfile.model_validate(base([reg("a", 0)]))
    assert prof.connection.protocol == "modbus_tcp"
    dumped = prof.model_dump(by_alias=True, exclude_none=True)
    assert dumped["points"][0]["register"] == "holding"
    assert parse_profile(dumped).points == prof.points
