"""Dashboards tenant users compose from widgets bound to devices and properties.

A dashboard belongs to a tenant and to the user who made it (its owner). Everyone of the
tenant sees their own dashboards and the shared ones; only the owner, a tenant admin or a
platform admin may change or delete one (admins see every dashboard of the tenant, so they
can tidy up after people who left). Widgets are checked against the registry: the devices
exist in the tenant and have the properties, of a type the widget can show. Every problem is
an :class:`InvalidInput` naming the field (``widgets[2].property``).
"""

from __future__ import annotations

import builtins
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Integer, String, UniqueConstraint, or_, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from yugong.core.errors import Conflict, FieldError, Forbidden, InvalidInput, NotFound
from yugong.infra.db import Base, Database, UTCDateTime, utcnow
from yugong.platform.registry.bindings import DeviceBinding
from yugong.security.principal import Principal, Role

READ_ACTION = "dashboards:read"
WRITE_ACTION = "dashboards:write"
MAX_WIDGETS = 24
MAX_NAME = 128
MAX_TITLE = 128
MAX_PROPERTIES = 8  # per trend or table: more lines than that are unreadable
MAX_DEVICES = 20  # rows of a table
MAX_ALARMS = 50
KINDS = ("trend", "gauge", "value", "state_timeline", "table", "alarms")
RANGES = ("15m", "1h", "6h", "24h", "7d", "30d")
# What each kind reads: the value kinds (registry bindings) it can show.
_CHARTABLE = frozenset({"number", "integer", "bool", "enum", "date"})  # history has them
_NUMBERS = frozenset({"number", "integer"})
_ANY = frozenset({"number", "integer", "bool", "enum", "date", "text", "json"})
_ACCEPTS = {
    "trend": _CHARTABLE,
    "gauge": _NUMBERS,
    "value": _ANY,
    "state_timeline": _CHARTABLE,
    "table": _ANY,
}
# The fields each kind may carry besides "kind" and "title".
_FIELDS: dict[str, frozenset[str]] = {
    "trend": frozenset({"device", "properties", "range"}),
    "gauge": frozenset({"device", "property", "min", "max"}),
    "value": frozenset({"device", "property"}),
    "state_timeline": frozenset({"device", "property", "range"}),
    "table": frozenset({"devices", "properties"}),
    "alarms": frozenset({"device", "limit"}),
}
_ADMINS = frozenset({Role.TENANT_ADMIN, Role.PLATFORM_ADMIN})


class Dashboard(Base):
    __tablename__ = "dashboards"
    __table_args__ = (
        UniqueConstraint("tenant_id", "owner_id", "name", name="uq_dashboards_tenant_owner_name"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    owner_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    name: Mapped[str] = mapped_column(String(MAX_NAME))
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    widgets: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


@dataclass(frozen=True)
class DashboardRecord:
    id: int
    tenant_id: int
    owner_id: int | None
    name: str
    shared: bool
    widgets: list[dict[str, Any]]
    created_at: datetime
    updated_at: datetime
    editable: bool  # by the principal that asked


def _invalid(loc: str, msg: str) -> InvalidInput:
    return InvalidInput(f"{loc}: {msg}", [FieldError(loc, msg)])


def _owner_of(p: Principal) -> int | None:
    """Dashboards are people's: an API key's have no owner (admins look after them)."""
    return p.id if p.kind == "user" else None


def _may_edit(p: Principal, d: Dashboard) -> bool:
    return p.role in _ADMINS or (d.owner_id is not None and d.owner_id == _owner_of(p))


def _may_see(p: Principal, d: Dashboard) -> bool:
    return d.shared or _may_edit(p, d)


def _record(p: Principal, d: Dashboard) -> DashboardRecord:
    return DashboardRecord(
        d.id,
        d.tenant_id,
        d.owner_id,
        d.name,
        d.shared,
        list(d.widgets or []),
        d.created_at,
        d.updated_at,
        _may_edit(p, d),
    )


# Validation -------------------------------------------------------------------------------

Lookup = Callable[[int], DeviceBinding | None]


def _int(value: Any, loc: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(loc, "must be a whole number")
    return value


def _number(value: Any, loc: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _invalid(loc, "must be a number")
    return float(value)


def _text(value: Any, loc: str, limit: int) -> str:
    if not isinstance(value, str):
        raise _invalid(loc, "must be text")
    value = value.strip()
    if len(value) > limit:
        raise _invalid(loc, f"at most {limit} characters")
    return value


def _device(value: Any, loc: str, tenant: int, lookup: Lookup) -> DeviceBinding:
    device_id = _int(value, loc)
    binding = lookup(device_id)
    if binding is None or binding.tenant != tenant:
        raise _invalid(loc, f"no device {device_id} in this tenant")
    return binding


def _property(value: Any, loc: str, device: DeviceBinding, kind: str) -> str:
    identifier = _text(value, loc, 64)
    if not identifier:
        raise _invalid(loc, "is required")
    prop = device.properties.get(identifier)
    if prop is None:
        raise _invalid(loc, f"device '{device.name}' has no property '{identifier}'")
    if prop.kind not in _ACCEPTS[kind]:
        raise _invalid(loc, f"a {kind} widget cannot show '{identifier}' ({prop.tsl_type})")
    return identifier


def _list(value: Any, loc: str, limit: int) -> builtins.list[Any]:
    if not isinstance(value, list) or not value:
        raise _invalid(loc, "must be a non-empty list")
    if len(value) > limit:
        raise _invalid(loc, f"at most {limit} items")
    return value


def _widget(raw: Any, loc: str, tenant: int, lookup: Lookup) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise _invalid(loc, "must be an object")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise _invalid(f"{loc}.kind", f"must be one of {', '.join(KINDS)}")
    allowed = _FIELDS[kind] | {"kind", "title"}
    for key in raw:
        if key not in allowed:
            raise _invalid(f"{loc}.{key}", f"not an option of a {kind} widget")
    out: dict[str, Any] = {"kind": kind, "title": _text(raw.get("title", ""), f"{loc}.title", 128)}
    if kind in ("trend", "gauge", "value", "state_timeline"):
        if "device" not in raw:
            raise _invalid(f"{loc}.device", "is required")
        device = _device(raw["device"], f"{loc}.device", tenant, lookup)
        out["device"] = device.device
        if kind == "trend":
            props = _list(raw.get("properties"), f"{loc}.properties", MAX_PROPERTIES)
            out["properties"] = list(
                dict.fromkeys(
                    _property(v, f"{loc}.properties[{i}]", device, kind)
                    for i, v in enumerate(props)
                )
            )
        else:
            out["property"] = _property(raw.get("property"), f"{loc}.property", device, kind)
    if kind in ("trend", "state_timeline"):
        rng = raw.get("range", "1h" if kind == "trend" else "24h")
        if rng not in RANGES:
            raise _invalid(f"{loc}.range", f"must be one of {', '.join(RANGES)}")
        out["range"] = rng
    if kind == "gauge":
        low = _number(raw.get("min", 0), f"{loc}.min")
        high = _number(raw.get("max", 100), f"{loc}.max")
        if high <= low:
            raise _invalid(f"{loc}.max", "must be greater than min")
        out["min"], out["max"] = low, high
    if kind == "table":
        devices = _list(raw.get("devices"), f"{loc}.devices", MAX_DEVICES)
        bound = [_device(v, f"{loc}.devices[{i}]", tenant, lookup) for i, v in enumerate(devices)]
        props = _list(raw.get("properties"), f"{loc}.properties", MAX_PROPERTIES)
        names = [_text(v, f"{loc}.properties[{i}]", 64) for i, v in enumerate(props)]
        for i, name in enumerate(names):
            # A column must exist on at least one row; rows without it show a dash.
            if not any(name in d.properties for d in bound):
                raise _invalid(f"{loc}.properties[{i}]", f"no device of the table has '{name}'")
        out["devices"] = list(dict.fromkeys(d.device for d in bound))
        out["properties"] = list(dict.fromkeys(names))
    if kind == "alarms":
        if raw.get("device") is not None:
            out["device"] = _device(raw["device"], f"{loc}.device", tenant, lookup).device
        limit = _int(raw.get("limit", 10), f"{loc}.limit")
        if not 1 <= limit <= MAX_ALARMS:
            raise _invalid(f"{loc}.limit", f"must be between 1 and {MAX_ALARMS}")
        out["limit"] = limit
    return out


def check_widgets(raw: Any, tenant: int, lookup: Lookup) -> builtins.list[dict[str, Any]]:
    """The widgets as stored, or :class:`InvalidInput` naming the first field wrong."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise _invalid("widgets", "must be a list")
    if len(raw) > MAX_WIDGETS:
        raise _invalid("widgets", f"at most {MAX_WIDGETS} widgets")
    return [_widget(w, f"widgets[{i}]", tenant, lookup) for i, w in enumerate(raw)]


def _name(value: Any) -> str:
    name = _text(value, "name", MAX_NAME)
    if not name:
        raise _invalid("name", "is required")
    return name


# The service ------------------------------------------------------------------------------


class DashboardService:
    """Dashboards of every tenant, scoped by the caller's principal. ``directory`` (the
    registry's) resolves widget bindings; ``audit`` records every change."""

    def __init__(self, db: Database, directory: Any, *, audit: Any = None) -> None:
        self._db = db
        self._directory = directory
        self.audit = audit

    def _audit(self, s: Session, action: str, d: Dashboard) -> None:
        if self.audit is not None:
            self.audit.record(
                f"dashboards.{action}",
                tenant_id=d.tenant_id,
                target_type="dashboard",
                target_id=d.id,
                detail={"name": d.name, "shared": d.shared, "widgets": len(d.widgets or [])},
                session=s,
            )

    @staticmethod
    def _get(s: Session, p: Principal, dashboard_id: int, tenant_id: int | None) -> Dashboard:
        tenant = None if (p.is_platform and tenant_id is None) else p.tenant_for(tenant_id)
        d = s.get(Dashboard, dashboard_id)
        if d is None or (tenant is not None and d.tenant_id != tenant) or not _may_see(p, d):
            raise NotFound(f"dashboard {dashboard_id} not found")
        return d

    def _editable(
        self, s: Session, p: Principal, dashboard_id: int, tenant_id: int | None
    ) -> Dashboard:
        d = self._get(s, p, dashboard_id, tenant_id)
        if not _may_edit(p, d):
            raise Forbidden("only its owner or an administrator may change this dashboard")
        return d

    @staticmethod
    def _check_name(s: Session, tenant: int, owner: int | None, name: str, but: int = 0) -> None:
        q = select(Dashboard.id).where(
            Dashboard.tenant_id == tenant,
            Dashboard.name == name,
            Dashboard.id != but,
            Dashboard.owner_id.is_(None) if owner is None else Dashboard.owner_id == owner,
        )
        if s.scalar(q) is not None:
            raise Conflict(
                f"a dashboard named '{name}' exists already",
                [FieldError("name", "already in use")],
            )

    # reads -------------------------------------------------------------------------------

    def list(self, p: Principal, *, tenant_id: int | None = None) -> builtins.list[DashboardRecord]:
        """The caller's own dashboards and the shared ones (an administrator: all), by name."""
        p.require(READ_ACTION)
        q = select(Dashboard).where(Dashboard.tenant_id == p.tenant_for(tenant_id))
        if p.role not in _ADMINS:
            owner = _owner_of(p)
            mine = Dashboard.owner_id == owner if owner is not None else Dashboard.id < 0
            q = q.where(or_(Dashboard.shared.is_(True), mine))
        with self._db.session() as s:
            rows = s.scalars(q.order_by(Dashboard.name, Dashboard.id)).all()
            return [_record(p, d) for d in rows]

    def get(
        self, p: Principal, dashboard_id: int, *, tenant_id: int | None = None
    ) -> DashboardRecord:
        p.require(READ_ACTION)
        with self._db.session() as s:
            return _record(p, self._get(s, p, dashboard_id, tenant_id))

    # writes ------------------------------------------------------------------------------

    def create(
        self,
        p: Principal,
        *,
        name: Any,
        widgets: Any = None,
        shared: bool = False,
        tenant_id: int | None = None,
    ) -> DashboardRecord:
        p.require(WRITE_ACTION)
        tenant = p.tenant_for(tenant_id)
        clean_name = _name(name)
        clean = check_widgets(widgets, tenant, self._directory.by_id)
        owner = _owner_of(p)
        with self._db.session() as s:
            self._check_name(s, tenant, owner, clean_name)
            now = utcnow()
            d = Dashboard(
                tenant_id=tenant,
                owner_id=owner,
                name=clean_name,
                shared=bool(shared),
                widgets=clean,
                created_at=now,
                updated_at=now,
            )
            s.add(d)
            s.flush()
            self._audit(s, "create", d)
            return _record(p, d)

    def update(
        self,
        p: Principal,
        dashboard_id: int,
        *,
        name: Any,
        widgets: Any = None,
        shared: bool = False,
        tenant_id: int | None = None,
    ) -> DashboardRecord:
        """Replace the name, sharing and widgets (the editor saves the whole dashboard)."""
        p.require(WRITE_ACTION)
        clean_name = _name(name)
        with self._db.session() as s:
            d = self._editable(s, p, dashboard_id, tenant_id)
            clean = check_widgets(widgets, d.tenant_id, self._directory.by_id)
            if clean_name != d.name:
                self._check_name(s, d.tenant_id, d.owner_id, clean_name, but=d.id)
            d.name, d.shared, d.widgets = clean_name, bool(shared), clean
            d.updated_at = utcnow()
            self._audit(s, "update", d)
            return _record(p, d)

    def delete(self, p: Principal, dashboard_id: int, *, tenant_id: int | None = None) -> None:
        p.require(WRITE_ACTION)
        with self._db.session() as s:
            d = self._editable(s, p, dashboard_id, tenant_id)
            self._audit(s, "delete", d)
            s.delete(d)
