"""What the registry services hand back: plain immutable records, never live ORM rows."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Listing(Generic[T]):
    """One page of a list: ``total`` counts every match, not just this page."""

    items: Sequence[T]
    total: int
    limit: int
    offset: int

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class TenantRecord:
    id: int
    name: str
    slug: str
    industry: str | None
    retention_days: int | None
    active: bool
    created_at: datetime
    profile_id: int | None = None  # None: the default tenant profile


@dataclass(frozen=True)
class AssetRecord:
    id: int
    tenant_id: int
    parent_id: int | None
    kind: str
    name: str
    attributes: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class AssetNode:
    id: int
    kind: str
    name: str
    attributes: Mapping[str, Any]
    children: Sequence[AssetNode] = ()


@dataclass(frozen=True)
class ProductRecord:
    id: int
    tenant_id: int
    key: str
    name: str
    description: str
    is_gateway: bool
    version: int
    created_at: datetime
    updated_at: datetime
    tsl: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class DeviceRecord:
    id: int
    tenant_id: int
    product_id: int
    asset_id: int | None
    gateway_id: int | None
    is_gateway: bool
    name: str
    label: str
    online: bool
    last_seen_at: datetime | None
    attributes: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class DeviceCredentials:
    """A device and its plain access token: the only time the token is ever shown."""

    device: DeviceRecord
    token: str


@dataclass(frozen=True)
class SeriesRecord:
    id: int
    device_id: int
    property: str


ChangeKind = Literal["tenant", "asset", "product", "device"]
ChangeOp = Literal["created", "updated", "deleted"]


@dataclass(frozen=True)
class ChangeEvent:
    """Emitted after a registry change is committed.

    ``devices`` lists the devices whose bindings changed (a product model change touches
    all its devices); ``series`` lists series ids deleted with them, whose samples the
    receiver should delete from the time-series store.
    """

    kind: ChangeKind
    op: ChangeOp
    tenant: int
    id: int
    devices: tuple[int, ...] = ()
    series: tuple[int, ...] = ()
