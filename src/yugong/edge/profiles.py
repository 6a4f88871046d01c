"""Device profiles: what a gateway reads from each device, loaded from YAML and checked.

A profile names a device, its protocol with the protocol's connection settings, its poll
groups and its points. Everything is checked before anything connects, and every problem is
reported at once, each naming the file, the device and the point::

    press-1.yaml: press-1.points[3] (temperature): address 70000 out of range 0..65535

A Modbus point reads ``register_count(point)`` registers from ``address`` on; ``string``
points take ``length`` in registers (two characters each). ``byte_order: little`` swaps the
two bytes inside each register, ``word_order: little`` puts the least significant register
first. The engineering value is ``raw * scale + offset``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from yugong.core.errors import FieldError, InvalidInput
from yugong.core.timeutil import parse_duration_us
from yugong.core.yamlfile import read_yaml
from yugong.edge.secrets import open_sealed

Protocol = Literal[
    "modbus_tcp",
    "modbus_rtu",
    "modbus_rtu_over_tcp",
    "opcua",
    "mqtt_json",
    "http_json",
    "simulator",
]
MODBUS_PROTOCOLS: frozenset[str] = frozenset({"modbus_tcp", "modbus_rtu", "modbus_rtu_over_tcp"})

RegisterSpace = Literal["coil", "discrete_input", "holding", "input"]
BIT_SPACES: frozenset[str] = frozenset({"coil", "discrete_input"})
DataType = Literal[
    "bool",
    "bit",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
    "string",
]
Order = Literal["big", "little"]

# Registers per value for the fixed-size types; strings take ``length``.
TYPE_WORDS: dict[str, int] = {
    "bool": 1,
    "bit": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "int64": 4,
    "uint64": 4,
    "float32": 2,
    "float64": 4,
}
MAX_ADDRESS = 65535
MAX_REGISTERS = 125  # FC3/FC4 (and FC16 is 123; writes are checked by the writer)
MAX_BITS = 2000  # FC1/FC2
DEFAULT_GROUP = "default"

_IDENT = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _duration(value: Any) -> str:
    """Accept ``500ms``/``1s``/``2m`` or a number of seconds; keep the text, fail early."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"duration must be positive, got {value}")
        text = f"{value}s"
    elif isinstance(value, str):
        text = value.strip()
    else:
        raise ValueError(f"not a duration: {value!r} (use e.g. 500ms, 1s, 1m)")
    parse_duration_us(text)  # raises ValueError with a clear message
    return text


# --- connection settings, one sub-model per protocol ------------------------------------------


class _ModbusLimits(_Model):
    unit_id: int = Field(1, ge=0, le=255)  # pymodbus calls it device_id
    timeout: float = Field(3.0, gt=0)
    max_registers: int = Field(MAX_REGISTERS, ge=1, le=MAX_REGISTERS)
    max_bits: int = Field(MAX_BITS, ge=1, le=MAX_BITS)
    max_gap: int = Field(10, ge=0)  # registers read and thrown away to save a request


class ModbusTcpConnection(_ModbusLimits):
    protocol: Literal["modbus_tcp"] = "modbus_tcp"
    host: str
    port: int = Field(502, ge=1, le=65535)


class ModbusRtuOverTcpConnection(_ModbusLimits):
    protocol: Literal["modbus_rtu_over_tcp"] = "modbus_rtu_over_tcp"
    host: str
    port: int = Field(502, ge=1, le=65535)


class ModbusRtuConnection(_ModbusLimits):
    protocol: Literal["modbus_rtu"] = "modbus_rtu"
    serial_port: str  # e.g. /dev/ttyUSB0
    baudrate: int = Field(9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8


class OpcUaConnection(_Model):
    protocol: Literal["opcua"] = "opcua"
    endpoint: str  # opc.tcp://host:4840/path
    security_policy: Literal["None", "Basic256Sha256"] = "None"
    security_mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    server_certificate: Path | None = None
    username: str | None = None
    password: str | None = None
    timeout: float = Field(4.0, gt=0)
    subscribe: bool = False  # monitored items instead of read polling


class MqttJsonConnection(_Model):
    protocol: Literal["mqtt_json"] = "mqtt_json"
    host: str
    port: int = Field(1883, ge=1, le=65535)
    topic: str
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: Path | None = None


class HttpJsonConnection(_Model):
    protocol: Literal["http_json"] = "http_json"
    url: str
    headers: dict[str, str] = Field(default_factory=dict)
    timeout: float = Field(5.0, gt=0)


class SimulatorConnection(_Model):
    protocol: Literal["simulator"] = "simulator"
    seed: int | None = None


Connection = Annotated[
    ModbusTcpConnection
    | ModbusRtuConnection
    | ModbusRtuOverTcpConnection
    | OpcUaConnection
    | MqttJsonConnection
    | HttpJsonConnection
    | SimulatorConnection,
    Field(discriminator="protocol"),
]


# --- points -------------------------------------------------------------------------------------


class Deadband(_Model):
    """Report by exception: a change smaller than this is not reported."""

    absolute: float | None = None
    percent: float | None = None


class PollGroup(_Model):
    interval: str

    _check_interval = field_validator("interval", mode="before")(_duration)

    @property
    def interval_us(self) -> int:
        return parse_duration_us(self.interval)


class Point(_Model):
    model_config = ConfigDict(extra="forbid", validate_by_name=True, validate_by_alias=True)

    property: str = Field(pattern=_IDENT)  # thing-model property identifier
    address: int | None = None  # Modbus, 0-based
    node: str | None = None  # OPC UA node id
    path: str | None = None  # JSON path (mqtt_json, http_json)
    # YAML says ``register``; the attribute is ``space`` (``register`` is taken by ABCMeta).
    space: RegisterSpace | None = Field(None, alias="register")
    type: DataType | None = None  # required on registers; coils are bool; OPC UA may omit
    bit: int | None = None
    length: int | None = None  # strings: registers (Modbus) or characters
    byte_order: Order = "big"
    word_order: Order = "big"
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    group: str | None = None  # resolved to a poll group name once the profile is loaded
    interval: str | None = None
    deadband: Deadband | None = None
    access: Literal["r", "rw"] = "r"

    @field_validator("interval", mode="before")
    @classmethod
    def _check_interval(cls, v: Any) -> Any:
        return None if v is None else _duration(v)


def register_count(point: Point) -> int:
    """Registers (or bits) a Modbus point occupies."""
    if point.space in BIT_SPACES:
        return 1
    if point.type == "string":
        return point.length or 0
    return TYPE_WORDS[point.type] if point.type is not None else 0


# --- the profile --------------------------------------------------------------------------------


class ProfileError(InvalidInput):
    """A profile that cannot be used; ``errors`` names each point and what is wrong with it."""

    def __str__(self) -> str:
        return self.detail


class DeviceProfile(_Model):
    name: str = Field(pattern=_NAME)
    protocol: Protocol
    connection: Connection
    interval: str = "1s"  # poll interval of points without a group
    groups: dict[str, PollGroup] = Field(default_factory=dict)
    points: list[Point] = Field(default_factory=list)

    _check_interval = field_validator("interval", mode="before")(_duration)

    @model_validator(mode="before")
    @classmethod
    def _connection_protocol(cls, data: Any) -> Any:
        # The protocol is written once, at the top; the connection sub-model is picked by it.
        if isinstance(data, Mapping) and "protocol" in data:
            conn = data.get("connection")
            if conn is None:
                conn = {}
            if isinstance(conn, Mapping) and "protocol" not in conn:
                data = {**data, "connection": {**conn, "protocol": data["protocol"]}}
        return data

    @field_validator("groups", mode="before")
    @classmethod
    def _group_shorthand(cls, v: Any) -> Any:
        # ``fast: 500ms`` is short for ``fast: {interval: 500ms}``.
        if isinstance(v, Mapping):
            return {
                k: {"interval": g} if isinstance(g, str | int | float) else g for k, g in v.items()
            }
        return v

    @model_validator(mode="after")
    def _check(self) -> DeviceProfile:
        errors = _problems(self)
        if errors:
            raise ProfileError(_summary(errors), errors)
        self.points = [_resolve_group(self, p) for p in self.points]
        return self

    @property
    def is_modbus(self) -> bool:
        return self.protocol in MODBUS_PROTOCOLS

    def poll_groups(self) -> dict[str, int]:
        """Poll group name -> interval in microseconds, for the groups points use."""
        out: dict[str, int] = {}
        for p in self.points:
            assert p.group is not None and p.interval is not None  # set by _resolve_group
            out[p.group] = parse_duration_us(p.interval)
        return out

    def point(self, prop: str) -> Point:
        for p in self.points:
            if p.property == prop:
                return p
        raise KeyError(f"{self.name} has no point {prop!r}")


def _resolve_group(profile: DeviceProfile, p: Point) -> Point:
    """Give every point a poll group and its interval (so a dumped profile loads back)."""
    group = p.group or (f"every {p.interval}" if p.interval is not None else DEFAULT_GROUP)
    if group in profile.groups:
        interval = profile.groups[group].interval
    else:
        interval = p.interval or profile.interval
    return p.model_copy(update={"group": group, "interval": interval})


def _summary(errors: list[FieldError]) -> str:
    return "; ".join(f"{e.loc}: {e.msg}" for e in errors)


def _problems(profile: DeviceProfile) -> list[FieldError]:
    """Every reason the profile cannot be used, each naming its point."""
    errors: list[FieldError] = []
    if profile.connection.protocol != profile.protocol:
        errors.append(
            FieldError(
                f"{profile.name}.connection",
                f"protocol {profile.connection.protocol} is not the device's {profile.protocol}",
            )
        )
    seen: dict[str, int] = {}
    for i, p in enumerate(profile.points):
        where = f"{profile.name}.points[{i}] ({p.property})"
        for msg in _point_problems(profile, p):
            errors.append(FieldError(where, msg))
        if p.property in seen:
            errors.append(
                FieldError(
                    where, f"duplicate property {p.property!r} (also points[{seen[p.property]}])"
                )
            )
        else:
            seen[p.property] = i
    errors.extend(_undeclared_groups(profile))
    if profile.is_modbus:
        errors.extend(_overlaps(profile))
    return errors


def _undeclared_groups(profile: DeviceProfile) -> Iterable[FieldError]:
    """A group named only on points (with an interval) must have one interval."""
    first: dict[str, tuple[int, str]] = {}
    for i, p in enumerate(profile.points):
        if p.group is None or p.group in profile.groups or p.interval is None:
            continue
        if p.group not in first:
            first[p.group] = (i, p.interval)
        elif first[p.group][1] != p.interval:
            j, interval = first[p.group]
            yield FieldError(
                f"{profile.name}.points[{i}] ({p.property})",
                f"interval {p.interval} differs from group {p.group!r} ({interval} at points[{j}])",
            )


def _point_problems(profile: DeviceProfile, p: Point) -> Iterable[str]:
    if p.scale == 0:
        yield "scale must not be 0"
    if p.type in ("bool", "bit", "string") and (p.scale != 1 or p.offset != 0):
        yield f"scale and offset apply to numbers, not to {p.type}"
    if p.type == "bit":
        if p.bit is None:
            yield "type bit needs bit: 0..15"
        elif not 0 <= p.bit <= 15:
            yield f"bit {p.bit} outside 0..15"
    elif p.bit is not None:
        yield f"bit applies to type bit only, not {p.type}"
    if p.type == "string":
        if p.length is None:
            yield "type string needs length"
        elif p.length < 1:
            yield f"string length {p.length} must be at least 1"
    elif p.length is not None:
        yield f"length applies to type string only, not {p.type}"
    if p.deadband is not None:
        db = p.deadband
        if (db.absolute is None) == (db.percent is None):
            yield "deadband takes exactly one of absolute or percent"
        for kind, v in (("absolute", db.absolute), ("percent", db.percent)):
            if v is not None and v < 0:
                yield f"deadband {kind} {v} is negative"
        if p.type in ("bool", "bit", "string"):
            yield f"deadband applies to numbers, not to {p.type}"
    if p.group is not None:
        if p.group not in profile.groups and p.group != DEFAULT_GROUP and p.interval is None:
            yield f"poll group {p.group!r} is not declared (groups: {sorted(profile.groups)})"
        elif p.group in profile.groups and p.interval not in (
            None,
            profile.groups[p.group].interval,
        ):
            group_interval = profile.groups[p.group].interval
            yield f"interval {p.interval} differs from its group {p.group!r} ({group_interval})"
    if profile.is_modbus:
        yield from _modbus_problems(profile, p)
    else:
        for name, attr in (("address", "address"), ("register", "space")):
            if getattr(p, attr) is not None:
                yield f"{name} is for Modbus points; {profile.protocol} points do not take it"
        if profile.protocol == "opcua" and not p.node:
            yield "OPC UA points need node (e.g. ns=2;s=Spindle.Speed)"
        if profile.protocol in ("mqtt_json", "http_json") and not p.path:
            yield f"{profile.protocol} points need path (a JSON path such as $.temperature)"


def _modbus_problems(profile: DeviceProfile, p: Point) -> Iterable[str]:
    conn = profile.connection
    assert isinstance(conn, _ModbusLimits)
    if p.node is not None or p.path is not None:
        yield "Modbus points take address, not node or path"
    if p.space is None:
        yield "Modbus points need register: coil | discrete_input | holding | input"
    if p.address is None:
        yield "Modbus points need address (0-based)"
    if p.space is None or p.address is None:
        return
    if p.space not in BIT_SPACES and p.type is None:
        yield f"{p.space} points need type (int16, uint16, int32, float32, bit, string, ...)"
    if p.space in BIT_SPACES and p.type not in (None, "bool"):
        yield f"type {p.type} does not fit a {p.space} (a single bit); use type bool"
    if p.access == "rw" and p.space in ("input", "discrete_input"):
        yield f"access rw on {p.space}: the device cannot write them (use holding or coil)"
    count = register_count(p)
    if count < 1:
        return
    last = p.address + count - 1
    if p.address < 0 or p.address > MAX_ADDRESS:
        yield f"address {p.address} out of range 0..{MAX_ADDRESS}"
    elif last > MAX_ADDRESS:
        yield f"address {p.address} + {count} registers ends at {last}, beyond {MAX_ADDRESS}"
    limit = conn.max_bits if p.space in BIT_SPACES else conn.max_registers
    if count > limit:
        yield f"needs {count} registers, over the device's limit of {limit} per request"


def _overlaps(profile: DeviceProfile) -> list[FieldError]:
    """Points sharing registers; only bit points of one register may share it (different bits)."""
    errors: list[FieldError] = []
    spans = []
    for i, p in enumerate(profile.points):
        if p.space is None or p.address is None or register_count(p) < 1:
            continue
        spans.append((p.space, p.address, p.address + register_count(p) - 1, i, p))
    spans.sort(key=lambda s: (s[0], s[1], s[2], s[3]))
    space: str | None = None
    end = -1
    owner: Point | None = None
    bits: dict[tuple[int, int], str] = {}
    for reg, start, stop, i, p in spans:
        where = f"{profile.name}.points[{i}] ({p.property})"
        if reg != space:
            space, end, owner = reg, -1, None
        if owner is not None and start <= end:
            shared_bit = p.type == "bit" and owner.type == "bit" and owner.address == start
            if not shared_bit:
                errors.append(
                    FieldError(
                        where,
                        f"{reg} address {start}..{stop} overlaps {owner.property} "
                        f"({owner.address}..{(owner.address or 0) + register_count(owner) - 1})",
                    )
                )
        if p.type == "bit" and p.bit is not None:
            if (start, p.bit) in bits:
                errors.append(
                    FieldError(
                        where, f"bit {p.bit} of {reg} {start} is already {bits[(start, p.bit)]}"
                    )
                )
            bits.setdefault((start, p.bit), p.property)
        if stop > end:
            end, owner = stop, p
    return errors


# --- loading ------------------------------------------------------------------------------------


def parse_profile(data: Any, *, source: str = "<profile>") -> DeviceProfile:
    """Validate a profile given as a mapping (parsed YAML/JSON); errors name ``source``."""
    if not isinstance(data, Mapping):
        raise ProfileError(
            f"{source}: a device profile is a mapping with name, protocol, connection and points",
            [FieldError(source, "not a mapping")],
        )
    data = open_sealed(data, source, ProfileError)
    try:
        return DeviceProfile.model_validate(data)
    except ProfileError as e:
        raise _with_source(e.errors, source) from None
    except ValidationError as e:
        raise _with_source(_from_pydantic(e, data), source) from None


def load_profile(path: str | Path) -> DeviceProfile:
    """Read one device profile from a YAML file."""
    path = Path(path)
    data = read_yaml(path, ProfileError)
    return parse_profile(data, source=path.name)


def load_profiles(paths: Iterable[str | Path]) -> list[DeviceProfile]:
    """Load several profiles; device names must be unique across them."""
    profiles: list[DeviceProfile] = []
    seen: dict[str, str] = {}
    for path in paths:
        prof = load_profile(path)
        if prof.name in seen:
            raise ProfileError(
                f"{Path(path).name}: device {prof.name} is already defined in {seen[prof.name]}",
                [FieldError(prof.name, f"duplicate device name (also in {seen[prof.name]})")],
            )
        seen[prof.name] = Path(path).name
        profiles.append(prof)
    return profiles


def _with_source(errors: list[FieldError], source: str) -> ProfileError:
    lines = [f"{source}: {e.loc}: {e.msg}" for e in errors]
    return ProfileError("\n".join(lines), errors)


def _from_pydantic(exc: ValidationError, data: Mapping[str, Any]) -> list[FieldError]:
    name = data.get("name") if isinstance(data.get("name"), str) else "<device>"
    points = data.get("points")
    raw_points: list[Any] = points if isinstance(points, list) else []
    out: list[FieldError] = []
    for err in exc.errors():
        loc = list(err["loc"])
        where = str(name)
        field: list[str] = []
        if len(loc) >= 2 and loc[0] == "points" and isinstance(loc[1], int):
            i = loc[1]
            raw = raw_points[i] if i < len(raw_points) else None
            prop = raw.get("property") if isinstance(raw, Mapping) else None
            where += f".points[{i}]" + (f" ({prop})" if prop else "")
            loc = loc[2:]
        elif len(loc) >= 2 and loc[0] == "connection" and loc[1] in _PROTOCOLS:
            # pydantic puts the union tag in the path (connection.modbus_tcp.host); drop it.
            loc = [loc[0], *loc[2:]]
        field = [str(x) for x in loc]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if field:
            msg = f"{'.'.join(field)}: {msg}"
            if err["type"] in ("literal_error", "enum") or err["type"].endswith("_type"):
                msg += f" (got {err.get('input')!r})"
        out.append(FieldError(where, msg))
    return out


_PROTOCOLS: frozenset[str] = frozenset(get_args(Protocol))
