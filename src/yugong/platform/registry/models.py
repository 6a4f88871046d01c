"""Registry tables: tenants, assets, products (thing models), devices, series.

Rows are only touched through the registry services, which scope every query by tenant.
Schema changes go through the Alembic migrations in ``yugong/infra/migrations``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from yugong.infra.db import Base, UTCDateTime, utcnow

ASSET_KINDS = ("site", "workshop", "line", "equipment")
# The kind a parent must have; sites are roots.
PARENT_KIND: dict[str, str | None] = {
    "site": None,
    "workshop": "site",
    "line": "workshop",
    "equipment": "line",
}


# Every table asks SQLite for AUTOINCREMENT: without it SQLite reuses the largest id after
# that row is deleted, and a reused series id would inherit the samples of the old series.
_SQLITE_NO_REUSE = {"sqlite_autoincrement": True}


class TenantProfile(Base):
    """Resource limits shared by the tenants that use the profile. A NULL limit is no
    limit; the profile marked ``is_default`` applies to tenants without one."""

    __tablename__ = "tenant_profiles"
    __table_args__ = _SQLITE_NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str] = mapped_column(String(512), default="")
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    max_devices: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_users: Mapped[int | None] = mapped_column(Integer, nullable=True)
    max_api_keys: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Ingest token buckets: per tenant and per device, messages and data points per second.
    messages_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    points_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    device_messages_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    device_points_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    api_requests_per_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_stored_bytes: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    max_retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Tenant(Base):
    __tablename__ = "tenants"
    __table_args__ = _SQLITE_NO_REUSE

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    industry: Mapped[str | None] = mapped_column(String(64), nullable=True)
    retention_days: Mapped[int | None] = mapped_column(Integer, nullable=True)  # None: keep
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # NULL: the default tenant profile.
    profile_id: Mapped[int | None] = mapped_column(
        ForeignKey("tenant_profiles.id", ondelete="SET NULL"), index=True, nullable=True
    )


class Asset(Base):
    __tablename__ = "assets"
    __table_args__ = (
        # Names are unique among siblings; roots (sites) have no parent, and NULLs never
        # collide in a plain unique constraint, so they get a partial index of their own.
        UniqueConstraint("tenant_id", "parent_id", "name", name="uq_assets_sibling_name"),
        Index(
            "uq_assets_root_name",
            "tenant_id",
            "name",
            unique=True,
            sqlite_where=text("parent_id IS NULL"),
            postgresql_where=text("parent_id IS NULL"),
        ),
        _SQLITE_NO_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("assets.id"), index=True, nullable=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (
        UniqueConstraint("tenant_id", "key", name="uq_products_tenant_key"),
        _SQLITE_NO_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    key: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")
    is_gateway: Mapped[bool] = mapped_column(Boolean, default=False)
    tsl: Mapped[dict[str, Any]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Device(Base):
    __tablename__ = "devices"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_devices_tenant_name"),
        _SQLITE_NO_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    asset_id: Mapped[int | None] = mapped_column(
        ForeignKey("assets.id", ondelete="SET NULL"), index=True, nullable=True
    )
    gateway_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), index=True, nullable=True
    )
    is_gateway: Mapped[bool] = mapped_column(Boolean, default=False)
    name: Mapped[str] = mapped_column(String(128))
    label: Mapped[str] = mapped_column(String(255), default="")
    # sha256 hex of the access token; the plain token is shown once and never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # MQTT username/password credentials (the password as an argon2 hash), and the X.509
    # client certificate issued by the platform CA: its SHA-256 fingerprint and expiry.
    mqtt_username: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    mqtt_password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    cert_fingerprint: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)
    cert_not_after: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Series(Base):
    """One (device, property): its id is the int32 series id of the time-series store."""

    __tablename__ = "series"
    __table_args__ = (
        UniqueConstraint("device_id", "property", name="uq_series_device_property"),
        _SQLITE_NO_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    property: Mapped[str] = mapped_column(String(64))
