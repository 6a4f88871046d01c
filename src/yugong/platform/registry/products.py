"""Products: a thing model (TSL) shared by the devices made from it.

A model change is validated first, bumps ``version`` and gives every device of the product a
series for each new property. Series of removed properties are kept with their data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, insert, or_, select
from sqlalchemy.orm import Session

from yugong.core import tsl
from yugong.core.errors import Conflict, FieldError
from yugong.infra.db import Database, utcnow
from yugong.security.principal import Principal

from ._common import (
    UNSET,
    Notify,
    check_paging,
    clean_name,
    get_scoped,
    invalid,
    unique_violation,
)
from .models import Device, Product, Series
from .records import ChangeEvent, Listing, ProductRecord

_KEY = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def _record(pr: Product) -> ProductRecord:
    return ProductRecord(
        pr.id,
        pr.tenant_id,
        pr.key,
        pr.name,
        pr.description,
        pr.is_gateway,
        pr.version,
        pr.created_at,
        pr.updated_at,
        pr.tsl,
    )


def _key(value: Any) -> str:
    if not isinstance(value, str) or not _KEY.match(value):
        raise invalid("key", "must be 1-64 letters, digits, '_', '.' or '-'")
    return value


def _description(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid("description", "must be a string")
    if len(value) > 4000:
        raise invalid("description", "must be at most 4000 characters")
    return value


def property_ids(document: Mapping[str, Any]) -> list[str]:
    """Property identifiers of a stored (already validated) TSL document."""
    return [str(p["identifier"]) for p in document.get("properties") or ()]


def add_series(
    s: Session, tenant: int, device_ids: Iterable[int], properties: Iterable[str]
) -> int:
    """Create the missing (device, property) series rows in one insert; returns how many."""
    devices, props = list(device_ids), list(dict.fromkeys(properties))
    if not devices or not props:
        return 0
    have = {
        (r.device_id, r.property)
        for r in s.execute(
            select(Series.device_id, Series.property).where(Series.device_id.in_(devices))
        )
    }
    rows = [
        {"tenant_id": tenant, "device_id": d, "property": prop}
        for d in devices
        for prop in props
        if (d, prop) not in have
    ]
    if rows:
        s.execute(insert(Series), rows)
    return len(rows)


class ProductService:
    def __init__(self, db: Database, notify: Notify) -> None:
        self._db = db
        self._notify = notify

    @staticmethod
    def _get(s: Session, p: Principal, product_id: int, tenant_id: int | None) -> Product:
        return get_scoped(s, Product, p, product_id, tenant_id, "product")

    @staticmethod
    def _check_key(s: Session, tenant: int, key: str) -> None:
        if (
            s.scalar(select(Product.id).where(Product.tenant_id == tenant, Product.key == key))
            is not None
        ):
            raise Conflict(
                f"a product with key {key!r} already exists", [FieldError("key", "already exists")]
            )

    def create(
        self,
        p: Principal,
        *,
        key: str,
        name: str,
        description: str | None = None,
        tsl_document: Mapping[str, Any] | None = None,
        is_gateway: bool = False,
        tenant_id: int | None = None,
    ) -> ProductRecord:
        p.require("products:write")
        tenant = p.tenant_for(tenant_id)
        key = _key(key)
        model = tsl.parse(tsl_document if tsl_document is not None else tsl.empty_document(key))
        now = utcnow()
        pr = Product(
            tenant_id=tenant,
            key=key,
            name=clean_name(name, "name"),
            description=_description(description),
            is_gateway=bool(is_gateway),
            tsl=model.to_json(),
            version=1,
            created_at=now,
            updated_at=now,
        )
        with self._db.session() as s:
            self._check_key(s, tenant, key)
            with unique_violation(f"a product with key {key!r} already exists", "key"):
                s.add(pr)
                s.flush()
            rec = _record(pr)
        self._notify(ChangeEvent("product", "created", tenant, rec.id))
        return rec

    def import_tsl(
        self,
        p: Principal,
        document: Mapping[str, Any],
        *,
        key: str | None = None,
        name: str | None = None,
        tenant_id: int | None = None,
    ) -> tuple[ProductRecord, bool]:
        """Create a product from a TSL document, or update the model of the product with
        that key. The key comes from ``key`` or ``profile.productKey``. Returns the product
        and whether it was created."""
        p.require("products:write")
        tenant = p.tenant_for(tenant_id)
        model = tsl.parse(document)
        profile = model.document.get("profile") or {}
        key = key if key is not None else profile.get("productKey")
        if key is None:
            raise invalid("key", "is required when the model has no profile.productKey")
        key = _key(key)
        with self._db.session() as s:
            existing = s.scalar(
                select(Product.id).where(Product.tenant_id == tenant, Product.key == key)
            )
        if existing is None:
            return self.create(
                p, key=key, name=name or key, tsl_document=model.document, tenant_id=tenant
            ), True
        rec = self.update_model(p, existing, model.document, tenant_id=tenant)
        if name is not None and name != rec.name:
            rec = self.update(p, existing, name=name, tenant_id=tenant)
        return rec, False

    def export_tsl(
        self, p: Principal, product_id: int, *, tenant_id: int | None = None
    ) -> dict[str, Any]:
        return dict(self.get(p, product_id, tenant_id=tenant_id).tsl)

    def get(self, p: Principal, product_id: int, *, tenant_id: int | None = None) -> ProductRecord:
        p.require("products:read")
        with self._db.session() as s:
            return _record(self._get(s, p, product_id, tenant_id))

    def list(
        self,
        p: Principal,
        *,
        tenant_id: int | None = None,
        search: str | None = None,
        is_gateway: bool | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Listing[ProductRecord]:
        p.require("products:read")
        check_paging(limit, offset)
        q = select(Product).where(Product.tenant_id == p.tenant_for(tenant_id))
        if search:
            q = q.where(
                or_(
                    Product.key.icontains(search, autoescape=True),
                    Product.name.icontains(search, autoescape=True),
                )
            )
        if is_gateway is not None:
            q = q.where(Product.is_gateway == is_gateway)
        with self._db.session() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = s.scalars(q.order_by(Product.id).limit(limit).offset(offset)).all()
            return Listing([_record(r) for r in rows], total, limit, offset)

    def update(
        self,
        p: Principal,
        product_id: int,
        *,
        name: str = UNSET,
        description: str | None = UNSET,
        is_gateway: bool = UNSET,
        tenant_id: int | None = None,
    ) -> ProductRecord:
        """Change name, description or the gateway flag (the key is fixed)."""
        p.require("products:write")
        with self._db.session() as s:
            pr = self._get(s, p, product_id, tenant_id)
            if name is not UNSET:
                pr.name = clean_name(name, "name")
            if description is not UNSET:
                pr.description = _description(description)
            if is_gateway is not UNSET:
                pr.is_gateway = bool(is_gateway)
            pr.updated_at = utcnow()
            rec = _record(pr)
        self._notify(ChangeEvent("product", "updated", rec.tenant_id, rec.id))
        return rec

    def update_model(
        self,
        p: Principal,
        product_id: int,
        document: Mapping[str, Any],
        *,
        tenant_id: int | None = None,
    ) -> ProductRecord:
        """Replace the thing model. Validated first (nothing changes on error); a changed
        model bumps the version and adds series for new properties to every device."""
        p.require("products:write")
        model = tsl.parse(document)
        new_doc = model.to_json()
        with self._db.session() as s:
            pr = self._get(s, p, product_id, tenant_id)
            if pr.tsl == new_doc:
                return _record(pr)
            pr.tsl = new_doc
            pr.version += 1
            pr.updated_at = utcnow()
            devices = list(
                s.scalars(select(Device.id).where(Device.product_id == pr.id).order_by(Device.id))
            )
            add_series(s, pr.tenant_id, devices, model.property_ids)
            rec = _record(pr)
        self._notify(
            ChangeEvent("product", "updated", rec.tenant_id, rec.id, devices=tuple(devices))
        )
        return rec

    def delete(self, p: Principal, product_id: int, *, tenant_id: int | None = None) -> None:
        """Delete a product that no device uses any more."""
        p.require("products:write")
        with self._db.session() as s:
            pr = self._get(s, p, product_id, tenant_id)
            used = s.scalar(select(func.count()).where(Device.product_id == pr.id)) or 0
            if used:
                raise Conflict(
                    f"product {product_id} is used by {used} device(s); "
                    "delete them or change their product first"
                )
            tenant = pr.tenant_id
            s.delete(pr)
        self._notify(ChangeEvent("product", "deleted", tenant, product_id))
