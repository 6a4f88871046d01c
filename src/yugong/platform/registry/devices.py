"""Devices: instances of a product, optionally placed on an asset and behind a gateway.

Access tokens are stored as SHA-256 hex only; the plain token is returned once, at creation
and on rotation. Every property of the product gets a series when the device is created.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from yugong.core.errors import Conflict, FieldError, NotFound
from yugong.infra.db import Database
from yugong.security.principal import Principal

from ._common import (
    UNSET,
    Notify,
    check_paging,
    clean_attributes,
    clean_name,
    get_scoped,
    invalid,
    scope,
    unique_violation,
)
from .models import Asset, Device, Product, Series
from .products import add_series, property_ids
from .records import ChangeEvent, DeviceCredentials, DeviceRecord, Listing, SeriesRecord

TOKEN_BYTES = 24  # 32 URL-safe characters


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh access token and its hash."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def _record(d: Device) -> DeviceRecord:
    return DeviceRecord(
        d.id,
        d.tenant_id,
        d.product_id,
        d.asset_id,
        d.gateway_id,
        d.is_gateway,
        d.name,
        d.label,
        d.online,
        d.last_seen_at,
        dict(d.attributes or {}),
        d.created_at,
    )


def _label(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 255:
        raise invalid("label", "must be a string of at most 255 characters")
    return value.strip()


class DeviceService:
    def __init__(self, db: Database, notify: Notify) -> None:
        self._db = db
        self._notify = notify

    @staticmethod
    def _get(s: Session, p: Principal, device_id: int, tenant_id: int | None) -> Device:
        return get_scoped(s, Device, p, device_id, tenant_id, "device")

    # References to other objects must be in the same tenant; a miss reads as "not found"
    # whether the id exists elsewhere or not.

    @staticmethod
    def _product(s: Session, tenant: int, product_id: int) -> Product:
        pr = s.get(Product, product_id)
        if pr is None or pr.tenant_id != tenant:
            raise invalid("product_id", f"product {product_id} not found")
        return pr

    @staticmethod
    def _asset(s: Session, tenant: int, asset_id: int | None) -> int | None:
        if asset_id is None:
            return None
        a = s.get(Asset, asset_id)
        if a is None or a.tenant_id != tenant:
            raise invalid("asset_id", f"asset {asset_id} not found")
        return a.id

    @staticmethod
    def _gateway(
        s: Session, tenant: int, gateway_id: int | None, self_id: int | None
    ) -> int | None:
        if gateway_id is None:
            return None
        if gateway_id == self_id:
            raise invalid("gateway_id", "a device cannot be its own gateway")
        g = s.get(Device, gateway_id)
        if g is None or g.tenant_id != tenant:
            raise invalid("gateway_id", f"device {gateway_id} not found")
        if not g.is_gateway:
            raise invalid("gateway_id", f"device {g.name!r} is not a gateway")
        return g.id

    @staticmethod
    def _check_name(s: Session, tenant: int, name: str, exclude: int | None = None) -> None:
        q = select(Device.id).where(Device.tenant_id == tenant, Device.name == name)
        if exclude is not None:
            q = q.where(Device.id != exclude)
        if s.scalar(q) is not None:
            raise Conflict(
                f"a device named {name!r} already exists", [FieldError("name", "already exists")]
            )

    def create(
        self,
        p: Principal,
        *,
        name: str,
        product_id: int,
        label: str | None = None,
        asset_id: int | None = None,
        gateway_id: int | None = None,
        is_gateway: bool | None = None,
        attributes: Mapping[str, Any] | None = None,
        tenant_id: int | None = None,
    ) -> DeviceCredentials:
        """Create a device with a series per product property. ``is_gateway`` defaults to
        the product's flag. The returned token is never shown again."""
        p.require("devices:write")
        tenant = p.tenant_for(tenant_id)
        name = clean_name(name, "name")
        token, token_hash = new_token()
        with self._db.session() as s:
            pr = self._product(s, tenant, product_id)
            d = Device(
                tenant_id=tenant,
                product_id=pr.id,
                name=name,
                label=_label(label),
                asset_id=self._asset(s, tenant, asset_id),
                gateway_id=self._gateway(s, tenant, gateway_id, None),
                is_gateway=pr.is_gateway if is_gateway is None else bool(is_gateway),
                token_hash=token_hash,
                online=False,
                attributes=clean_attributes(attributes),
            )
            self._check_name(s, tenant, name)
            with unique_violation(f"a device named {name!r} already exists", "name"):
                s.add(d)
                s.flush()
            add_series(s, tenant, [d.id], property_ids(pr.tsl))
            rec = _record(d)
        self._notify(ChangeEvent("device", "created", tenant, rec.id, devices=(rec.id,)))
        return DeviceCredentials(rec, token)

    def get(self, p: Principal, device_id: int, *, tenant_id: int | None = None) -> DeviceRecord:
        p.require("devices:read")
        with self._db.session() as s:
            return _record(self._get(s, p, device_id, tenant_id))

    def get_by_name(self, p: Principal, name: str, *, tenant_id: int | None = None) -> DeviceRecord:
        p.require("devices:read")
        tenant = p.tenant_for(tenant_id)
        with self._db.session() as s:
            d = s.scalar(select(Device).where(Device.tenant_id == tenant, Device.name == name))
            if d is None:
                raise NotFound(f"device {name!r} not found")
            return _record(d)

    def list(
        self,
        p: Principal,
        *,
        tenant_id: int | None = None,
        product_id: int | None = None,
        asset_id: int | None = None,
        gateway_id: int | None = None,
        online: bool | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Listing[DeviceRecord]:
        """Devices of a tenant, filtered; ``search`` matches name or label (any case)."""
        p.require("devices:read")
        check_paging(limit, offset)
        q = select(Device).where(Device.tenant_id == p.tenant_for(tenant_id))
        if product_id is not None:
            q = q.where(Device.product_id == product_id)
        if asset_id is not None:
            q = q.where(Device.asset_id == asset_id)
        if gateway_id is not None:
            q = q.where(Device.gateway_id == gateway_id)
        if online is not None:
            q = q.where(Device.online == online)
        if search:
            q = q.where(
                or_(
                    Device.name.icontains(search, autoescape=True),
                    Device.label.icontains(search, autoescape=True),
                )
            )
        with self._db.session() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = s.scalars(q.order_by(Device.id).limit(limit).offset(offset)).all()
            return Listing([_record(d) for d in rows], total, limit, offset)

    def update(
        self,
        p: Principal,
        device_id: int,
        *,
        name: str = UNSET,
        label: str | None = UNSET,
        product_id: int = UNSET,
        asset_id: int | None = UNSET,
        gateway_id: int | None = UNSET,
        is_gateway: bool = UNSET,
        attributes: Mapping[str, Any] = UNSET,
        tenant_id: int | None = None,
    ) -> DeviceRecord:
        """Change a device. A new product adds series for its properties; old series stay."""
        p.require("devices:write")
        with self._db.session() as s:
            d = self._get(s, p, device_id, tenant_id)
            with s.no_autoflush:  # check the new values before the database sees them
                if name is not UNSET:
                    d.name = clean_name(name, "name")
                    self._check_name(s, d.tenant_id, d.name, exclude=d.id)
                if label is not UNSET:
                    d.label = _label(label)
                new_props: list[str] = []
                if product_id is not UNSET and product_id != d.product_id:
                    pr = self._product(s, d.tenant_id, product_id)
                    d.product_id = pr.id
                    new_props = property_ids(pr.tsl)
                if asset_id is not UNSET:
                    d.asset_id = self._asset(s, d.tenant_id, asset_id)
                if gateway_id is not UNSET:
                    d.gateway_id = self._gateway(s, d.tenant_id, gateway_id, d.id)
                if is_gateway is not UNSET:
                    if not is_gateway and d.is_gateway:
                        behind = s.scalar(select(func.count()).where(Device.gateway_id == d.id))
                        if behind:
                            raise Conflict(
                                f"{behind} device(s) are connected through this "
                                "gateway; move them first",
                                [FieldError("is_gateway", "gateway in use")],
                            )
                    d.is_gateway = bool(is_gateway)
                if attributes is not UNSET:
                    d.attributes = clean_attributes(attributes)
            with unique_violation(f"a device named {d.name!r} already exists", "name"):
                s.flush()
            add_series(s, d.tenant_id, [d.id], new_props)
            rec = _record(d)
        self._notify(ChangeEvent("device", "updated", rec.tenant_id, rec.id, devices=(rec.id,)))
        return rec

    def merge_attributes(
        self,
        p: Principal,
        device_id: int,
        values: Mapping[str, Any],
        *,
        tenant_id: int | None = None,
    ) -> dict[str, Any]:
        """Merge client-side attributes reported by a device; returns the whole set."""
        p.require("devices:write")
        return self._merge(scope(p, tenant_id), device_id, values)

    def store_client_attributes(
        self, tenant: int, device_id: int, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge attributes an authenticated device reported about itself (ingest path: the
        device's own credentials already decided who it is)."""
        return self._merge(tenant, device_id, values)

    def _merge(
        self, tenant: int | None, device_id: int, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        extra = clean_attributes(values, "values")
        with self._db.session() as s:
            d = s.get(Device, device_id)
            if d is None or (tenant is not None and d.tenant_id != tenant):
                raise NotFound(f"device {device_id} not found")
            merged = {**(d.attributes or {}), **extra}
            d.attributes = merged
        return merged

    def rotate_token(self, p: Principal, device_id: int, *, tenant_id: int | None = None) -> str:
        """Replace the access token: the old one stops working at once."""
        p.require("devices:credentials")
        token, token_hash = new_token()
        with self._db.session() as s:
            d = self._get(s, p, device_id, tenant_id)
            d.token_hash = token_hash
            tenant = d.tenant_id
        self._notify(ChangeEvent("device", "updated", tenant, device_id, devices=(device_id,)))
        return token

    def series(
        self, p: Principal, device_id: int, *, tenant_id: int | None = None
    ) -> builtins.list[SeriesRecord]:
        p.require("devices:read")
        with self._db.session() as s:
            d = self._get(s, p, device_id, tenant_id)
            rows = s.execute(
                select(Series.id, Series.property)
                .where(Series.device_id == d.id)
                .order_by(Series.id)
            ).all()
            return [SeriesRecord(r.id, d.id, r.property) for r in rows]

    def delete(
        self, p: Principal, device_id: int, *, tenant_id: int | None = None
    ) -> builtins.list[int]:
        """Delete a device and its series; returns the series ids (the caller deletes their
        samples from the time-series store). Devices behind a deleted gateway stay, with no
        gateway."""
        p.require("devices:write")
        with self._db.session() as s:
            d = self._get(s, p, device_id, tenant_id)
            series = list(s.scalars(select(Series.id).where(Series.device_id == d.id)))
            s.execute(delete(Series).where(Series.device_id == d.id))
            behind = list(s.scalars(select(Device.id).where(Device.gateway_id == d.id)))
            for child in s.scalars(select(Device).where(Device.gateway_id == d.id)):
                child.gateway_id = None
            tenant = d.tenant_id
            s.delete(d)
        self._notify(
            ChangeEvent(
                "device",
                "deleted",
                tenant,
                device_id,
                devices=(device_id, *behind),
                series=tuple(series),
            )
        )
        return series
