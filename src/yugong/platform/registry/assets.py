"""The asset tree: site -> workshop -> line -> equipment.

Each kind has exactly one parent kind (sites are roots), so the tree can neither skip a
level nor contain a cycle. Names are unique among siblings.
"""

from __future__ import annotations

import builtins
from typing import Any

from sqlalchemy import func, select, update
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
    unique_violation,
)
from .models import ASSET_KINDS, PARENT_KIND, Asset, Device
from .records import AssetNode, AssetRecord, ChangeEvent, Listing


def _record(a: Asset) -> AssetRecord:
    return AssetRecord(
        a.id, a.tenant_id, a.parent_id, a.kind, a.name, dict(a.attributes or {}), a.created_at
    )


class AssetService:
    def __init__(self, db: Database, notify: Notify) -> None:
        self._db = db
        self._notify = notify

    @staticmethod
    def _get(s: Session, p: Principal, asset_id: int, tenant_id: int | None) -> Asset:
        return get_scoped(s, Asset, p, asset_id, tenant_id, "asset")

    @staticmethod
    def _parent(s: Session, tenant: int, kind: str, parent_id: int | None) -> Asset | None:
        wanted = PARENT_KIND[kind]
        if wanted is None:
            if parent_id is not None:
                raise invalid("parent_id", "a site is a root and has no parent")
            return None
        if parent_id is None:
            raise invalid("parent_id", f"a {kind} needs a parent {wanted}")
        parent = s.get(Asset, parent_id)
        if parent is None or parent.tenant_id != tenant:
            raise invalid("parent_id", f"asset {parent_id} not found")
        if parent.kind != wanted:
            raise invalid(
                "parent_id", f"the parent of a {kind} must be a {wanted}, not a {parent.kind}"
            )
        return parent

    @staticmethod
    def _check_sibling(s: Session, a: Asset) -> None:
        q = select(Asset.id).where(Asset.tenant_id == a.tenant_id, Asset.name == a.name)
        q = q.where(
            Asset.parent_id.is_(None) if a.parent_id is None else Asset.parent_id == a.parent_id
        )
        if a.id is not None:
            q = q.where(Asset.id != a.id)
        if s.scalar(q) is not None:
            raise Conflict(
                f"an asset named {a.name!r} already exists here",
                [FieldError("name", "already exists among its siblings")],
            )

    def create(
        self,
        p: Principal,
        *,
        name: str,
        kind: str,
        parent_id: int | None = None,
        attributes: dict[str, Any] | None = None,
        tenant_id: int | None = None,
    ) -> AssetRecord:
        p.require("assets:write")
        tenant = p.tenant_for(tenant_id)
        if kind not in ASSET_KINDS:
            raise invalid("kind", f"must be one of {', '.join(ASSET_KINDS)}")
        a = Asset(
            tenant_id=tenant,
            kind=kind,
            name=clean_name(name, "name"),
            attributes=clean_attributes(attributes),
        )
        with self._db.session() as s:
            parent = self._parent(s, tenant, kind, parent_id)
            a.parent_id = parent.id if parent else None
            self._check_sibling(s, a)
            with unique_violation(f"an asset named {a.name!r} already exists here", "name"):
                s.add(a)
                s.flush()
            rec = _record(a)
        self._notify(ChangeEvent("asset", "created", tenant, rec.id))
        return rec

    def get(self, p: Principal, asset_id: int, *, tenant_id: int | None = None) -> AssetRecord:
        p.require("assets:read")
        with self._db.session() as s:
            return _record(self._get(s, p, asset_id, tenant_id))

    def list(
        self,
        p: Principal,
        *,
        tenant_id: int | None = None,
        parent_id: int | None = UNSET,
        kind: str | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> Listing[AssetRecord]:
        """Assets of a tenant; ``parent_id=None`` lists the roots (sites)."""
        p.require("assets:read")
        check_paging(limit, offset)
        q = select(Asset).where(Asset.tenant_id == p.tenant_for(tenant_id))
        if parent_id is not UNSET:
            q = q.where(
                Asset.parent_id.is_(None) if parent_id is None else Asset.parent_id == parent_id
            )
        if kind is not None:
            if kind not in ASSET_KINDS:
                raise invalid("kind", f"must be one of {', '.join(ASSET_KINDS)}")
            q = q.where(Asset.kind == kind)
        if search:
            q = q.where(Asset.name.icontains(search, autoescape=True))
        with self._db.session() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = s.scalars(q.order_by(Asset.id).limit(limit).offset(offset)).all()
            return Listing([_record(a) for a in rows], total, limit, offset)

    def tree(
        self, p: Principal, *, root_id: int | None = None, tenant_id: int | None = None
    ) -> builtins.list[AssetNode]:
        """The whole tree of a tenant (or the subtree under ``root_id``), ordered by name."""
        p.require("assets:read")
        tenant = p.tenant_for(tenant_id)
        with self._db.session() as s:
            rows = s.execute(
                select(Asset.id, Asset.parent_id, Asset.kind, Asset.name, Asset.attributes)
                .where(Asset.tenant_id == tenant)
                .order_by(Asset.name, Asset.id)
            ).all()
        if root_id is not None and not any(r.id == root_id for r in rows):
            raise NotFound(f"asset {root_id} not found")
        children: dict[int | None, list[Any]] = {}
        for r in rows:
            children.setdefault(r.parent_id, []).append(r)

        def build(r: Any) -> AssetNode:
            return AssetNode(
                r.id,
                r.kind,
                r.name,
                dict(r.attributes or {}),
                tuple(build(c) for c in children.get(r.id, ())),
            )

        if root_id is not None:
            return [build(next(r for r in rows if r.id == root_id))]
        return [build(r) for r in children.get(None, ())]

    def update(
        self,
        p: Principal,
        asset_id: int,
        *,
        name: str = UNSET,
        parent_id: int | None = UNSET,
        attributes: dict[str, Any] = UNSET,
        tenant_id: int | None = None,
    ) -> AssetRecord:
        """Rename, move (to a parent of the right kind) or replace attributes. The kind of
        an asset is fixed at creation."""
        p.require("assets:write")
        with self._db.session() as s:
            a = self._get(s, p, asset_id, tenant_id)
            with s.no_autoflush:  # check the new values before the database sees them
                if name is not UNSET:
                    a.name = clean_name(name, "name")
                if parent_id is not UNSET:
                    parent = self._parent(s, a.tenant_id, a.kind, parent_id)
                    a.parent_id = parent.id if parent else None
                if attributes is not UNSET:
                    a.attributes = clean_attributes(attributes)
                self._check_sibling(s, a)
            with unique_violation(f"an asset named {a.name!r} already exists here", "name"):
                s.flush()
            rec = _record(a)
        self._notify(ChangeEvent("asset", "updated", rec.tenant_id, rec.id))
        return rec

    def delete(self, p: Principal, asset_id: int, *, tenant_id: int | None = None) -> None:
        """Delete a leaf asset; devices placed on it are kept and become unplaced."""
        p.require("assets:write")
        with self._db.session() as s:
            a = self._get(s, p, asset_id, tenant_id)
            kids = s.scalar(select(func.count()).where(Asset.parent_id == a.id)) or 0
            if kids:
                raise Conflict(
                    f"asset {asset_id} has {kids} child asset(s); delete or move them first"
                )
            s.execute(update(Device).where(Device.asset_id == a.id).values(asset_id=None))
            tenant = a.tenant_id
            s.delete(a)
        self._notify(ChangeEvent("asset", "deleted", tenant, asset_id))
