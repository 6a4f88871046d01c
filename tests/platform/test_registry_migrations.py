"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

import yugong.platform.alarms.models
import yugong.platform.command_models
import yugong.platform.dashboards
import yugong.platform.registry.models
import yugong.platform.rules.models
import yugong.security.models
from yugong.infra import migrate
from yugong.infra.db import Base, make_engine

REGISTRY_TABLES = {"tenants", "assets", "products", "devices", "series"}
_ = (
    yugong.platform.alarms.models,
    yugong.platform.command_models,
    yugong.platform.dashboards,
    yugong.platform.registry.models,
    yugong.platform.rules.models,
    yugong.security.models,
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'm.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_upgrade_matches_models_and_downgrades(url: str) -> None:
    assert migrate.current(url) is None
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head() is not None
    migrate.upgrade(url)  # idempotent

    engine = make_engine(migrate.sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert tables >= REGISTRY_TABLES | {"users", "api_keys", "refresh_tokens"}
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
            assert diff == [], diff
            indexes = {i["name"]: i for i in inspect(conn).get_indexes("assets")}
            assert indexes["uq_assets_root_name"]["unique"]
    finally:
        engine.dispose()

    migrate.downgrade(url, "base")
    assert migrate.current(url) is None
    engine = make_engine(migrate.sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            assert not set(inspect(conn).get_table_names()) & REGISTRY_TABLES
    finally:
        engine.dispose()
    migrate.upgrade(url)
    assert migrate.current(url) == migrate.head()


def test_postgres_urls_get_the_psycopg_driver() -> None:
    assert migrate.sqlalchemy_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert migrate.sqlalchemy_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert migrate.sqlalchemy_url("sqlite:///x.db") == "sqlite:///x.db"
