"""Security and multi-tenancy: tenant profiles (resource limits), device MQTT and certificate
credentials, user lockout and TOTP, the audit log, security events and blocks.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 08:01:53.817036
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# SQLite batch mode rebuilds a table; it must keep AUTOINCREMENT (ids are never reused).
_KEEP_IDS = {"sqlite_autoincrement": True}


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("actor_kind", sa.String(length=16), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_name", sa.String(length=128), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target_type", sa.String(length=64), nullable=True),
        sa.Column("target_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_log_tenant_at", ["tenant_id", "at"], unique=False)

    op.create_table(
        "blocks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocks")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("blocks", schema=None) as batch_op:
        batch_op.create_index("ix_blocks_kind_value", ["kind", "value"], unique=False)

    op.create_table(
        "security_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("source_ip", sa.String(length=64), nullable=True),
        sa.Column("subject", sa.String(length=128), nullable=True),
        sa.Column("device_id", sa.Integer(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_security_events")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_security_events_kind"), ["kind"], unique=False)
        batch_op.create_index("ix_security_events_tenant_at", ["tenant_id", "at"], unique=False)

    op.create_table(
        "tenant_profiles",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.String(length=512), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("max_devices", sa.Integer(), nullable=True),
        sa.Column("max_users", sa.Integer(), nullable=True),
        sa.Column("max_api_keys", sa.Integer(), nullable=True),
        sa.Column("messages_per_s", sa.Float(), nullable=True),
        sa.Column("points_per_s", sa.Float(), nullable=True),
        sa.Column("device_messages_per_s", sa.Float(), nullable=True),
        sa.Column("device_points_per_s", sa.Float(), nullable=True),
        sa.Column("api_requests_per_s", sa.Float(), nullable=True),
        sa.Column("max_stored_bytes", sa.BigInteger(), nullable=True),
        sa.Column("max_retention_days", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tenant_profiles")),
        sa.UniqueConstraint("name", name=op.f("uq_tenant_profiles_name")),
        sqlite_autoincrement=True,
    )
    # The default profile: no limits until an operator sets some.
    op.bulk_insert(
        sa.table(
            "tenant_profiles",
            sa.column("name", sa.String),
            sa.column("description", sa.String),
            sa.column("is_default", sa.Boolean),
            sa.column("created_at", sa.DateTime(timezone=True)),
        ),
        [
            {
                "name": "default",
                "description": "Applies to every tenant without a profile of its own.",
                "is_default": True,
                "created_at": datetime.now(UTC),
            }
        ],
    )
    with op.batch_alter_table("devices", schema=None, table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.add_column(sa.Column("mqtt_username", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("mqtt_password_hash", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("cert_fingerprint", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("cert_not_after", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_devices_cert_fingerprint"), ["cert_fingerprint"]
        )
        batch_op.create_unique_constraint(batch_op.f("uq_devices_mqtt_username"), ["mqtt_username"])

    with op.batch_alter_table("tenants", schema=None, table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.add_column(sa.Column("profile_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_tenants_profile_id"), ["profile_id"], unique=False)
        batch_op.create_foreign_key(
            batch_op.f("fk_tenants_profile_id_tenant_profiles"),
            "tenant_profiles",
            ["profile_id"],
            ["id"],
            ondelete="SET NULL",
        )

    with op.batch_alter_table("users", schema=None, table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.add_column(
            sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0")
        )
        batch_op.add_column(sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("totp_secret", sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column("totp_enabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("totp_last_step", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None, table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.drop_column("totp_last_step")
        batch_op.drop_column("totp_enabled")
        batch_op.drop_column("totp_secret")
        batch_op.drop_column("locked_until")
        batch_op.drop_column("failed_logins")

    with op.batch_alter_table("tenants", schema=None, table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_tenants_profile_id_tenant_profiles"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_tenants_profile_id"))
        batch_op.drop_column("profile_id")

    with op.batch_alter_table("devices", schema=None, table_kwargs=_KEEP_IDS) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_devices_mqtt_username"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_devices_cert_fingerprint"), type_="unique")
        batch_op.drop_column("cert_not_after")
        batch_op.drop_column("cert_fingerprint")
        batch_op.drop_column("mqtt_password_hash")
        batch_op.drop_column("mqtt_username")

    op.drop_table("tenant_profiles")
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        batch_op.drop_index("ix_security_events_tenant_at")
        batch_op.drop_index(batch_op.f("ix_security_events_kind"))

    op.drop_table("security_events")
    with op.batch_alter_table("blocks", schema=None) as batch_op:
        batch_op.drop_index("ix_blocks_kind_value")

    op.drop_table("blocks")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_log_tenant_at")

    op.drop_table("audit_log")
