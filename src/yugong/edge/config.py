"""Gateway configuration: one YAML file naming the connectors, processing, buffer and uplink.

::

    gateway: line-1
    connectors:
      - name: plcs
        protocol: modbus            # modbus | opcua | mqtt_json | http_json | simulator
        profiles: [profiles/pump.yaml]   # relative to this file
        devices: [ {name: ..., protocol: modbus_tcp, connection: ..., points: ...} ]  # inline
      - name: sim
        protocol: simulator
        simulated:
          - name: mixer-1
            interval: 1s
            signals: [{point: speed, waveform: sine, low: 0, high: 1500, period_s: 60}]
    processing: {steps: [{kind: report_by_exception, absolute: 0.5}]}
    buffer: {path: /var/lib/yugong/edge.buf, max_bytes: 1GiB, policy: drop_oldest}
    uplink: {kind: sparkplug, broker: mqtts://broker:8883, group_id: plant, host_id: yugong}
    health: {interval: 10s}

Loading checks everything before anything connects: the config itself, then every device
profile (files and inline), each problem naming the file, device and point.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from yugong.core.errors import FieldError, InvalidInput
from yugong.core.timeutil import parse_duration_us
from yugong.core.yamlfile import read_yaml
from yugong.edge.connectors.simulator import Signal, SimulatedDevice, Waveform
from yugong.edge.processing import PipelineConfig
from yugong.edge.profiles import (
    MODBUS_PROTOCOLS,
    DeviceProfile,
    ProfileError,
    load_profile,
    parse_profile,
)
from yugong.edge.secrets import open_sealed

ConnectorProtocol = Literal["modbus", "opcua", "mqtt_json", "http_json", "simulator"]

#: Which device-profile protocols each connector kind accepts.
PROFILE_PROTOCOLS: dict[str, frozenset[str]] = {
    "modbus": MODBUS_PROTOCOLS,
    "opcua": frozenset({"opcua"}),
    "mqtt_json": frozenset({"mqtt_json"}),
    "http_json": frozenset({"http_json"}),
    "simulator": frozenset({"simulator"}),
}

_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def parse_size(value: Any) -> int:
    """``1GiB``, ``500MB``, ``4096`` -> bytes."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"not a size: {value!r} (use e.g. 512MiB, 2GB or a number of bytes)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "b").lower()])


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, int | float):
        return float(value)
    return parse_duration_us(str(value).strip()) / 1e6


# --------------------------------------------------------------------------- simulator devices
class SignalConfig(_Model):
    point: str
    waveform: Waveform = Waveform.SINE
    low: float = 0.0
    high: float = 1.0
    period_s: float = Field(60.0, gt=0)
    step: float = 1.0
    states: list[float] = Field(default_factory=list)
    writable: bool = False


class SimulatedDeviceConfig(_Model):
    name: str = Field(pattern=_NAME)
    interval: float = Field(1.0, ge=0, description="seconds between ticks (or 500ms, 2s)")
    signals: list[SignalConfig] = Field(min_length=1)

    _interval = field_validator("interval", mode="before")(_seconds)

    def build(self) -> SimulatedDevice:
        return SimulatedDevice(
            self.name,
            tuple(
                Signal(
                    s.point,
                    s.waveform,
                    s.low,
                    s.high,
                    s.period_s,
                    s.step,
                    tuple(s.states),
                    s.writable,
                )
                for s in self.signals
            ),
            self.interval,
        )


# --------------------------------------------------------------------------- connectors
class ConnectorConfig(_Model):
    name: str = Field(pattern=_NAME)
    protocol: ConnectorProtocol
    profiles: list[Path] = Field(default_factory=list, description="profile files")
    devices: list[dict[str, Any]] = Field(default_factory=list, description="inline profiles")
    simulated: list[SimulatedDeviceConfig] = Field(default_factory=list)
    seed: int | None = None  # simulator: reproducible signals
    options: dict[str, Any] = Field(
        default_factory=dict, description="protocol-specific connector options"
    )


# --------------------------------------------------------------------------- buffer / uplink
class BufferConfig(_Model):
    path: Path = Path("edge-buffer.sqlite")
    max_bytes: int = Field(1 << 30, gt=0)
    policy: Literal["drop_oldest", "refuse_new"] = "drop_oldest"
    synchronous: Literal["full", "normal"] = "full"
    on_corrupt: Literal["raise", "move_aside"] = "move_aside"

    _size = field_validator("max_bytes", mode="before")(parse_size)


class TlsConfig(_Model):
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False  # skip server name checks (test benches only)

    @model_validator(mode="after")
    def _check_pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            given, missing = (
                ("cert_file", "key_file") if self.key_file is None else ("key_file", "cert_file")
            )
            raise ValueError(f"{missing} is required with {given} (client certificate and key)")
        return self


class UplinkConfig(_Model):
    kind: Literal["sparkplug", "log", "none"] = "sparkplug"
    broker: str = "mqtt://127.0.0.1:1883"
    tls: TlsConfig | None = None
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    group_id: str = Field("yugong", pattern=r"^[^/#+]+$")
    edge_node_id: str | None = Field(None, pattern=r"^[^/#+]+$")  # default: the gateway name
    host_id: str | None = None  # wait for this primary host's STATE before publishing
    batch_rows: int = Field(10_000, gt=0, description="rows per read from the buffer")

    @field_validator("broker")
    @classmethod
    def _check_broker(cls, v: str) -> str:
        if not re.match(r"^(mqtts?|tcp|ssl)://[^/:]+(:\d+)?/?$", v):
            raise ValueError(f"broker must look like mqtt://host:1883 or mqtts://host:8883: {v!r}")
        return v


class HealthConfig(_Model):
    interval: float = Field(10.0, ge=0, description="seconds between health points (0: off)")
    device: str | None = Field(None, pattern=_NAME)  # default: the gateway name

    _interval = field_validator("interval", mode="before")(_seconds)


class GatewayConfig(_Model):
    gateway: str = Field(pattern=_NAME)
    connectors: list[ConnectorConfig] = Field(min_length=1)
    processing: PipelineConfig = Field(default_factory=PipelineConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    uplink: UplinkConfig = Field(default_factory=UplinkConfig)
    health: HealthConfig = Field(default_factory=HealthConfig)
    base_dir: Path = Field(Path("."), exclude=True, description="relative paths start here")

    @property
    def health_device(self) -> str:
        # Not the gateway's own name: under Sparkplug that is the edge node, and a device
        # may not share it.
        return self.health.device or f"{self.gateway}-health"


# --------------------------------------------------------------------------- loading
class ResolvedConnector:
    """A connector's config with its device profiles loaded and checked."""

    def __init__(
        self,
        config: ConnectorConfig,
        profiles: list[DeviceProfile],
        simulated: list[SimulatedDevice],
    ) -> None:
        self.config = config
        self.profiles = profiles
        self.simulated = simulated

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def device_names(self) -> list[str]:
        return [p.name for p in self.profiles] + [d.name for d in self.simulated]


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate a gateway config file (not yet its profiles)."""
    path = Path(path)
    data = read_yaml(path)
    return parse_config(data, source=str(path), base_dir=path.parent)


def parse_config(
    data: Any, *, source: str = "<gateway config>", base_dir: Path | None = None
) -> GatewayConfig:
    if not isinstance(data, Mapping):
        raise InvalidInput(
            f"{source}: a gateway config is a mapping with gateway, connectors, buffer, uplink",
            [FieldError(source, "not a mapping")],
        )
    data = open_sealed(data, source)
    try:
        cfg = GatewayConfig.model_validate(dict(data))
    except ProfileError as e:
        raise InvalidInput(f"{source}: {e.detail}", e.errors) from None
    except (InvalidInput, ValidationError) as e:
        errors = (
            e.errors
            if isinstance(e, InvalidInput)
            else [
                FieldError(
                    ".".join(str(x) for x in err["loc"]),
                    str(err["msg"]).removeprefix("Value error, "),
                )
                for err in e.errors()
            ]
        )
        lines = [f"{source}: {x.loc}: {x.msg}" for x in errors]
        raise InvalidInput("\n".join(lines), errors) from None
    if base_dir is not None:
        cfg.base_dir = base_dir
    _check_names(cfg, source)
    return cfg


def _check_names(cfg: GatewayConfig, source: str) -> None:
    names = [c.name for c in cfg.connectors]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InvalidInput(
            f"{source}: connector names must be unique: {', '.join(dup)}",
            [FieldError("connectors", f"duplicate name {n!r}") for n in dup],
        )


def resolve(cfg: GatewayConfig) -> list[ResolvedConnector]:
    """Load and check every connector's profiles; device names must be unique gateway-wide.

    All problems are collected and raised together as one :class:`ProfileError`.
    """
    out: list[ResolvedConnector] = []
    errors: list[FieldError] = []
    lines: list[str] = []
    seen: dict[str, str] = {cfg.health_device: "the gateway's health metrics"}

    def fail(exc: InvalidInput) -> None:
        errors.extend(exc.errors)
        lines.append(exc.detail)

    for i, cc in enumerate(cfg.connectors):
        where = f"connectors[{i}] ({cc.name})"
        profiles: list[DeviceProfile] = []
        for file in cc.profiles:
            full = file if file.is_absolute() else cfg.base_dir / file
            try:
                profiles.append(load_profile(full))
            except ProfileError as e:
                fail(e)
        for j, raw in enumerate(cc.devices):
            try:
                profiles.append(parse_profile(raw, source=f"{where}.devices[{j}]"))
            except ProfileError as e:
                fail(e)
        allowed = PROFILE_PROTOCOLS[cc.protocol]
        for p in profiles:
            if p.protocol not in allowed:
                msg = f"device {p.name} is {p.protocol}, not a {cc.protocol} device"
                fail(InvalidInput(f"{where}: {msg}", [FieldError(f"{where}.{p.name}", msg)]))
        simulated: list[SimulatedDevice] = []
        if cc.simulated and cc.protocol != "simulator":
            msg = "simulated devices belong to a simulator connector"
            fail(InvalidInput(f"{where}: {msg}", [FieldError(f"{where}.simulated", msg)]))
        for sd in cc.simulated:
            try:
                simulated.append(sd.build())
            except ValueError as e:
                loc = f"{where}.simulated ({sd.name})"
                fail(InvalidInput(f"{loc}: {e}", [FieldError(loc, str(e))]))
        rc = ResolvedConnector(cc, profiles, simulated)
        if not (cc.profiles or cc.devices or cc.simulated):
            msg = "no devices (give profiles, devices or simulated)"
            fail(InvalidInput(f"{where}: {msg}", [FieldError(where, msg)]))
        for name in rc.device_names:
            if name in seen:
                msg = f"device {name} is already defined by {seen[name]}"
                fail(InvalidInput(f"{where}: {msg}", [FieldError(f"{where}.{name}", msg)]))
            seen[name] = where
        out.append(rc)
    if errors:
        raise ProfileError("\n".join(lines), errors)
    return out
