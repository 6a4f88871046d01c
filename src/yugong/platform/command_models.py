"""The command log: every property write and service call sent to a device, with its
status (queued -> sent -> acknowledged | failed | timed_out)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from yugong.infra.db import Base, UTCDateTime, utcnow


class Command(Base):
    __tablename__ = "commands"
    __table_args__ = (
        Index("ix_commands_tenant_created", "tenant_id", "created_at"),
        Index("ix_commands_device_created", "device_id", "created_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[int] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))  # write, service
    name: Mapped[str] = mapped_column(String(64))  # property or service identifier
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # value / arguments
    status: Mapped[str] = mapped_column(String(16), default="queued")
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # output or error
    timeout_s: Mapped[float] = mapped_column(default=10.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(128), default="")
    rule_id: Mapped[int | None] = mapped_column(Integer, nullable=True)  # sent by a rule action
