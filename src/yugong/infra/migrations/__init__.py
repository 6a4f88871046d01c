"""Alembic migrations of the metadata database (run through :mod:`yugong.infra.migrate`)."""
