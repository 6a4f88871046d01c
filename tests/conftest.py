"""Shared fixtures. Tests that need an external service run when it is reachable; with
CI=true an unreachable service fails the run instead of skipping."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

PG_HOST = os.environ.get("YUGONG_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("YUGONG_TEST_PG_PORT", "5432"))
PG_ADMIN_URL = os.environ.get(
    "YUGONG_TEST_PG_URL", f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
)
MOSQUITTO_HOST = os.environ.get("YUGONG_TEST_MQTT_HOST", "127.0.0.1")
MOSQUITTO_PORT = int(os.environ.get("YUGONG_TEST_MQTT_PORT", "1883"))


def reachable(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def need_service(name: str, host: str, port: int) -> None:
    if reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: a missing service fails the run)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database of its own, dropped afterwards."""
    need_service("PostgreSQL", PG_HOST, PG_PORT)
    import psycopg

    name = f"yugong_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mosquitto() -> tuple[str, int]:
    need_service("Mosquitto", MOSQUITTO_HOST, MOSQUITTO_PORT)
    return MOSQUITTO_HOST, MOSQUITTO_PORT
