"""Fixtures for the platform's tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import migrated_db
from yugong.infra.db import Database


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated registry database, once on SQLite and once on PostgreSQL."""
    with migrated_db(request, tmp_path) as database:
        yield database
