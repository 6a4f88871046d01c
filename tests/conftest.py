"""Shared fixtures. Tests that need an external service run when it is reachable; with
CI=true an unreachable service fails the run instead of skipping."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

from yugong.infra.db import Database
from yugong.infra.migrate import sqlalchemy_url, upgrade

PG_HOST = os.environ.get("YUGONG_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("YUGONG_TEST_PG_PORT", "5432"))
PG_ADMIN_URL = os.environ.get(
    "YUGONG_TEST_PG_URL", f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
)
MOSQUITTO_HOST = os.environ.get("YUGONG_TEST_MQTT_HOST", "127.0.0.1")
MOSQUITTO_PORT = int(os.environ.get("YUGONG_TEST_MQTT_PORT", "1883"))
MOSQUITTO_BIN = "/usr/sbin/mosquitto"

T = TypeVar("T")

# A sensor product's thing model: a read-only temperature and a read-write mode.
TEMPERATURE_MODE_TSL: dict[str, Any] = {
    "schema": "https://iotx-tsl.oss-ap-southeast-1.aliyuncs.com/schema.json",
    "profile": {"productKey": "sensor"},
    "properties": [
        {
            "identifier": "temperature",
            "name": "Temperature",
            "accessMode": "r",
            "dataType": {"type": "float", "specs": {"min": "-40", "max": "125", "unit": "°C"}},
        },
        {
            "identifier": "mode",
            "name": "Mode",
            "accessMode": "rw",
            "dataType": {"type": "enum", "specs": {"0": "auto", "1": "manual"}},
        },
    ],
    "events": [],
    "services": [],
}


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


def need_programs(*paths: str) -> None:
    """Skip (with CI=true: fail) unless every program is installed at its path."""
    if all(os.access(path, os.X_OK) for path in paths):
        return
    message = f"{' and '.join(paths)} {'is' if len(paths) == 1 else 'are'} needed"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: a missing service fails the run)")
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def until(cond: Callable[[], T], what: str = "the condition", timeout: float = 10.0) -> T:
    """Poll ``cond`` until it returns something true, and return that; fail after ``timeout``
    seconds, naming ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while not (result := cond()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return result


class PrivateMosquitto:
    """A Mosquitto process of our own on a free 127.0.0.1 port, without persistence; it can be
    killed (SIGKILL) and started again on the same port. ``extra_config_lines`` follow the
    listener line, so listener options (TLS files, passwords) apply to it."""

    def __init__(self, folder: Path, extra_config_lines: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            "\n".join(
                [f"listener {self.port} 127.0.0.1", *extra_config_lines, "persistence false", ""]
            )
        )
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [MOSQUITTO_BIN, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not reachable("127.0.0.1", self.port, timeout=0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mosquitto did not start: {self.log.read_text()}")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


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


@contextlib.contextmanager
def migrated_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """For a fixture parametrised by database ("sqlite", else PostgreSQL): a fresh database
    with every migration applied, disposed afterwards."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    upgrade(url)
    database = Database(sqlalchemy_url(url))
    try:
        yield database
    finally:
        database.dispose()
