"""Bring the metadata database to the newest schema (``yugong db upgrade``, server start).

Alembic is configured here in code, so no ``alembic.ini`` has to be found at run time.
Works on SQLite and PostgreSQL; ``postgresql://`` URLs use the psycopg 3 driver.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from yugong.infra.db import make_engine

SCRIPT_LOCATION = Path(__file__).with_name("migrations")


def sqlalchemy_url(url: str) -> str:
    """Plain ``postgresql://`` (or ``postgres://``) URLs get the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    # ConfigParser interpolates "%": URL-encoded passwords must be escaped.
    cfg.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Apply every migration up to ``revision`` (default: the newest)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def current(url: str) -> str | None:
    """The revision the database is at (None: never migrated)."""
    engine = make_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def head() -> str | None:
    """The newest revision shipped with this version of Yugong."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
