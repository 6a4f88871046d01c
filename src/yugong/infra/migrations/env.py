"""Alembic environment, configured in code by :mod:`yugong.infra.migrate` (no alembic.ini)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

import yugong.platform.alarms.models
import yugong.platform.command_models
import yugong.platform.dashboards
import yugong.platform.registry.models
import yugong.platform.rules.models
import yugong.security.models
from yugong.infra.db import Base, make_engine

# Both model modules register their tables on Base.metadata.
_ = (yugong.platform.registry.models, yugong.security.models)
target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database url configured for migrations")
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            _run(conn)
    finally:
        engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
