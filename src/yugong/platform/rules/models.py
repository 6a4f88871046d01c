"""Tables of rules, their versions and saved state, and notification targets."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from yugong.infra.db import Base, UTCDateTime, utcnow

_NO_REUSE = {"sqlite_autoincrement": True}


class Rule(Base):
    """The current version of a rule; every version's spec is kept in ``rule_versions``."""

    __tablename__ = "rules"
    __table_args__ = (UniqueConstraint("tenant_id", "name", name="uq_rules_tenant_name"), _NO_REUSE)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer, default=1)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)  # a RuleSpec as JSON
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class RuleVersion(Base):
    __tablename__ = "rule_versions"
    __table_args__ = (
        UniqueConstraint("rule_id", "version", name="uq_rule_versions_rule_version"),
        _NO_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule_id: Mapped[int] = mapped_column(ForeignKey("rules.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128), default="")


class RuleState(Base):
    """The engine's state of one rule (running durations, windows, baselines), saved
    periodically and at shutdown so a restart resumes where it stopped."""

    __tablename__ = "rule_state"

    rule_id: Mapped[int] = mapped_column(
        ForeignKey("rules.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer)  # state of another version is discarded
    state: Mapped[bytes] = mapped_column(LargeBinary)
    saved_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class NotificationTarget(Base):
    """Where actions send notifications: a webhook (URL, HMAC secret sealed at rest) or an
    e-mail sender (SMTP settings, password sealed)."""

    __tablename__ = "notification_targets"
    __table_args__ = (
        UniqueConstraint("tenant_id", "name", name="uq_notification_targets_tenant_name"),
        _NO_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))  # webhook, email
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # non-secret settings
    secret: Mapped[str | None] = mapped_column(String(512), nullable=True)  # sealed
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
