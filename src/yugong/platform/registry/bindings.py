"""What ingest and query need to know about a device, resolved once and cached.

A binding maps each thing-model property of a device to its series id and the rules its
values must follow. The registry builds bindings (:class:`DeviceDirectory`); ingest validates
against them without touching the database on the hot path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

# How a TSL data type is stored: numbers, bools, enums and dates in ``value``; the rest
# (text, struct, array as JSON) in ``text``.
ValueKind = Literal["number", "integer", "bool", "enum", "date", "text", "json"]


@dataclass(frozen=True)
class PropertyBinding:
    identifier: str
    series: int
    kind: ValueKind
    tsl_type: str  # int | float | double | bool | enum | text | date | struct | array
    min: float | None = None
    max: float | None = None
    enum_values: frozenset[int] | None = None
    max_length: int | None = None
    unit: str | None = None
    writable: bool = False


@dataclass(frozen=True)
class DeviceBinding:
    tenant: int
    device: int
    name: str
    product: int
    gateway: int | None
    properties: Mapping[str, PropertyBinding]
    is_gateway: bool = False  # may speak for child devices (ThingsBoard gateway API)
    # MQTT username/password (the password as an argon2 hash) and the client certificate's
    # expiry: what the broker needs to authenticate the device by these credentials.
    mqtt_username: str | None = None
    mqtt_password_hash: str | None = field(default=None, repr=False)
    cert_not_after: datetime | None = None


class DeviceDirectory(Protocol):
    """Cached device lookups for the hot path. Implementations are thread-safe."""

    def by_token(self, token: str) -> DeviceBinding | None: ...

    def by_username(self, username: str) -> DeviceBinding | None:
        """The device whose MQTT username this is (platform-wide)."""

    def by_fingerprint(self, fingerprint: str) -> DeviceBinding | None:
        """The device whose client certificate has this SHA-256 fingerprint (hex)."""

    def by_id(self, device: int) -> DeviceBinding | None:
        """Global lookup by device id; callers acting for a tenant check ``binding.tenant``."""

    def by_name(self, tenant: int, name: str) -> DeviceBinding | None: ...

    def touch(self, devices: Sequence[int], seen_us: int) -> None:
        """Mark devices as seen now (online); persisted in the background, not per call."""

    def invalidate(self, device: int | None = None) -> None:
        """Forget cached bindings (one device, or all) after a registry change."""
