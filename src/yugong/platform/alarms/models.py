"""Tables of alarms, their history and comments."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from yugong.infra.db import Base, UTCDateTime, utcnow

_NO_REUSE = {"sqlite_autoincrement": True}


class Alarm(Base):
    """One alarm of a rule on a source. At most one is open (active or acknowledged) per
    (rule, source); repeated triggers while open count up instead of opening another."""

    __tablename__ = "alarms"
    __table_args__ = (
        Index("ix_alarms_tenant_state", "tenant_id", "state"),
        Index("ix_alarms_rule_source", "rule_id", "device_id"),
        Index("ix_alarms_tenant_raised", "tenant_id", "raised_at"),
        _NO_REUSE,
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    rule_id: Mapped[int | None] = mapped_column(
        ForeignKey("rules.id", ondelete="SET NULL"), nullable=True
    )
    rule_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    device_id: Mapped[int | None] = mapped_column(
        ForeignKey("devices.id", ondelete="SET NULL"), nullable=True
    )
    asset_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # the device's, then
    name: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(16))  # critical, major, minor, warning
    # active -> acknowledged -> cleared; or active -> cleared (then acknowledged stays false)
    state: Mapped[str] = mapped_column(String(16), default="active")
    acknowledged: Mapped[bool] = mapped_column(default=False)
    count: Mapped[int] = mapped_column(Integer, default=1)
    value: Mapped[float | None] = mapped_column(nullable=True)  # the triggering value
    raised_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # sample time
    last_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    cleared_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    cleared_by: Mapped[str | None] = mapped_column(String(128), nullable=True)  # "rule"...
    assignee_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class AlarmEvent(Base):
    """The alarm's history: raised, repeated, acknowledged, assigned, commented, cleared."""

    __tablename__ = "alarm_events"
    __table_args__ = (_NO_REUSE,)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alarm_id: Mapped[int] = mapped_column(ForeignKey("alarms.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128), default="")
    text: Mapped[str | None] = mapped_column(Text, nullable=True)  # a comment's text
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
