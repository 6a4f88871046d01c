"""The gateway runtime end to end: real Modbus server and simulator -> pipeline -> buffer;
``edge check``; and a ``kill -9`` of a running gateway process losing nothing buffered."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml
from pydantic import ValidationError

from tests.conftest import until
from tests.edge.conftest import FC_HR, ModbusTestServer
from yugong.core.errors import InvalidInput
from yugong.edge.buffer import StoreForwardBuffer, concat
from yugong.edge.cli import main as edge_main
from yugong.edge.config import parse_config, resolve
from yugong.edge.connectors.base import WriteStatus
from yugong.edge.gateway import CONNECTORS, EdgeGateway, LogUplink, NullUplink, _by_path
from yugong.edge.profiles import ProfileError

REPO = Path(__file__).resolve().parents[2]


def modbus_device(port: int) -> dict[str, Any]:
    return {
        "name": "plc-1",
        "protocol": "modbus_tcp",
        "connection": {"host": "127.0.0.1", "port": port, "timeout": 1},
        "interval": "50ms",
        "points": [
            {"property": "level", "register": "holding", "address": 0, "type": "uint16"},
            {"property": "temp", "register": "holding", "address": 1, "type": "int16"},
        ],
    }


def simulator(interval: float = 0.05) -> dict[str, Any]:
    return {
        "name": "sim",
        "protocol": "simulator",
        "simulated": [
            {
                "name": "mixer",
                "interval": interval,
                "signals": [
                    {"point": "batches", "waveform": "counter", "low": 0, "high": 1e9},
                    {"point": "setpoint", "waveform": "constant", "writable": True},
                ],
            }
        ],
    }


def gateway_config(
    tmp_path: Path, connectors: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    return {
        "gateway": "gw-test",
        "connectors": connectors,
        "buffer": {"path": str(tmp_path / "buf.sqlite"), "max_bytes": "64MiB"},
        "uplink": {"kind": "none"},
        "health": {"interval": 0.1},
        **extra,
    }


def series(table: pa.Table, device: str, point: str) -> tuple[list[int], list[float]]:
    rows = [r for r in table.to_pylist() if r["device"] == device and r["point"] == point]
    return [r["ts"] for r in rows], [r["value"] for r in rows]


async def test_modbus_and_simulator_through_deadband_into_the_buffer_in_order(
    modbus_server: ModbusTestServer, tmp_path: Path
) -> None:
    await modbus_server.set(FC_HR, 0, [100, 65535])  # temp is int16: -1
    cfg = parse_config(
        gateway_config(
            tmp_path,
            [
                {
                    "name": "plcs",
                    "protocol": "modbus",
                    "devices": [modbus_device(modbus_server.port)],
                },
                simulator(),
            ],
            processing={
                "steps": [{"kind": "report_by_exception", "points": {"level": {"absolute": 5}}}]
            },
        )
    )
    gw = EdgeGateway(cfg, uplink=NullUplink())
    async with gw:
        assert gw.buffer is not None
        buf = gw.buffer
        await until(lambda: buf.depth().rows > 0 and gw.health().devices_online == 2)
        assert (await gw.write("mixer", "setpoint", 42.0)).success
        await asyncio.sleep(0.2)
        await modbus_server.set(FC_HR, 0, [103])  # inside the deadband: not reported
        await asyncio.sleep(0.3)
        await modbus_server.set(FC_HR, 0, [110])
        await until(lambda: gw.connectors["plcs"].stats().total("polls") > 20)
        await asyncio.sleep(0.3)
        catalog = gw.catalog()
        assert [(m.point, m.datatype) for m in catalog["plc-1"]] == [
            ("level", "uint16"),
            ("temp", "int16"),
        ]
        assert [m.writable for m in catalog["mixer"]] == [False, True]
        assert "buffer_rows" in [m.point for m in catalog["gw-test-health"]]
        assert (await gw.write("nope", "x", 1)).status is WriteStatus.INVALID
        assert (await gw.write("plc-1", "missing", 1)).status is WriteStatus.INVALID
    with StoreForwardBuffer(tmp_path / "buf.sqlite", max_bytes=1 << 26) as buf:
        table = concat(buf.peek(10**9))
    ts, level = series(table, "plc-1", "level")
    assert level == [100.0, 110.0]
    assert series(table, "plc-1", "temp")[1] == [-1.0]
    # The counter advances by one per tick: every sample arrived, in order, exactly once.
    ts, batches = series(table, "mixer", "batches")
    assert len(batches) > 10
    assert batches == [batches[0] + i for i in range(len(batches))]
    assert ts == sorted(ts)
    assert 42.0 in series(table, "mixer", "setpoint")[1]
    _, online = series(table, "gw-test-health", "devices_online")
    assert max(online) == 2.0 and online[-1] == 0.0  # the last, at stop: all offline
    assert series(table, "gw-test-health", "connectors")[1][-1] == 2.0


async def test_log_uplink_drains_and_acks_the_buffer(tmp_path: Path) -> None:
    cfg = parse_config(gateway_config(tmp_path, [simulator(0.02)], health={"interval": 0}))
    uplink = LogUplink(idle_s=0.02)
    async with EdgeGateway(cfg, uplink=uplink) as gw:
        assert gw.buffer is not None
        await until(lambda: uplink.delivered_rows > 20)
        buf = gw.buffer
        await until(lambda: buf.stats().delivered_rows >= uplink.delivered_rows)


def test_config_errors_name_the_field_and_device(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput) as exc:
        parse_config(gateway_config(tmp_path, [simulator()], buffer={"max_bytes": "lots"}))
    assert "buffer.max_bytes" in exc.value.detail
    wrong = {"name": "c", "protocol": "opcua", "devices": [modbus_device(502)]}
    with pytest.raises(ProfileError) as perr:
        resolve(parse_config(gateway_config(tmp_path, [wrong])))
    assert "plc-1 is modbus_tcp, not a opcua device" in perr.value.detail
    twice = [simulator(), {**simulator(), "name": "sim2"}]
    with pytest.raises(ProfileError, match="device mixer is already defined"):
        resolve(parse_config(gateway_config(tmp_path, twice)))


def write_config(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_check_prints_the_request_plan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    device = modbus_device(5020)
    device["points"].append(
        {"property": "flow", "register": "holding", "address": 8, "type": "float32"}
    )
    (tmp_path / "plc.yaml").write_text(yaml.safe_dump(device), encoding="utf-8")
    path = write_config(
        tmp_path,
        gateway_config(
            tmp_path, [{"name": "plcs", "protocol": "modbus", "profiles": ["plc.yaml"]}]
        ),
    )
    assert edge_main(["check", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "device plc-1 (modbus_tcp): 3 points" in out
    assert "FC3 holding 0..9 (10): level, temp, flow" in out  # coalesced over the gap
    assert "1 requests per cycle" in out


def test_check_refuses_a_bad_profile_naming_the_point(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    device = modbus_device(5020)
    device["points"].append(
        {"property": "overlap", "register": "holding", "address": 1, "type": "int32"}
    )
    (tmp_path / "plc.yaml").write_text(yaml.safe_dump(device), encoding="utf-8")
    path = write_config(
        tmp_path,
        gateway_config(
            tmp_path, [{"name": "plcs", "protocol": "modbus", "profiles": ["plc.yaml"]}]
        ),
    )
    assert edge_main(["check", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert "plc.yaml" in err and "overlap" in err


def test_example_config_checks() -> None:
    assert edge_main(["check", "-c", str(REPO / "examples" / "gateway.yaml")]) == 0


# --------------------------------------------------------------------------- kill -9
def entries(db: Path) -> dict[int, tuple[int, int]]:
    """id -> (rows, crc) of what is in the buffer, read by a separate reader."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        return {i: (r, c) for i, r, c in con.execute("SELECT id, rows, crc FROM entries")}
    finally:
        con.close()


def start_gateway(config: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO)}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "yugong.edge.cli",
            "run",
            "-c",
            str(config),
            "--log-level",
            "WARNING",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_entries(
    db: Path, proc: subprocess.Popen[bytes], more_than: int
) -> dict[int, tuple[int, int]]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        if db.exists():
            try:
                got = entries(db)
            except sqlite3.OperationalError:
                got = {}
            if len([i for i in got if i > more_than]) >= 5:
                return got
        time.sleep(0.05)
    raise AssertionError("the gateway did not fill its buffer")


def test_kill_9_and_restart_loses_nothing_that_reached_the_buffer(tmp_path: Path) -> None:
    path = write_config(tmp_path, gateway_config(tmp_path, [simulator(0.01)]))
    db = tmp_path / "buf.sqlite"
    first = start_gateway(path)
    try:
        before = wait_entries(db, first, 0)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    assert first.returncode == -signal.SIGKILL
    after_kill = entries(db)
    assert set(before) <= set(after_kill)  # committed appends survived the kill

    second = start_gateway(path)
    try:
        wait_entries(db, second, max(after_kill))
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(15) == 0, second.stderr.read().decode() if second.stderr else ""
    final = entries(db)
    assert {i: final[i] for i in after_kill} == after_kill  # nothing lost or rewritten
    with StoreForwardBuffer(db, max_bytes=1 << 26) as buf:
        table = concat(buf.peek(10**9))
    _, batches = series(table, "mixer", "batches")
    # Two runs, each counting up from 0 (+1 per tick) with no gap inside a run.
    restarts = [i for i in range(1, len(batches)) if batches[i] != batches[i - 1] + 1]
    assert len(restarts) == 1 and batches[restarts[0]] == 1.0


def test_protocols_are_built_through_the_lazy_factory_table(tmp_path: Path) -> None:
    http = {
        "name": "web",
        "protocol": "http_json",
        "devices": [
            {
                "name": "meter-http",
                "protocol": "http_json",
                "connection": {"url": "http://127.0.0.1:9/values"},
                "points": [{"property": "power", "path": "$.power"}],
            }
        ],
    }
    (rc,) = resolve(parse_config(gateway_config(tmp_path, [http])))
    connector = CONNECTORS["http_json"](rc, lambda batch: None)
    assert type(connector).__name__ == "HttpJsonConnector" and connector.name == "web"
    rc.config.options = {"no_such_option": 1}
    with pytest.raises(ValidationError, match="no_such_option"):
        CONNECTORS["http_json"](rc, lambda batch: None)
    missing = _by_path("yugong.edge.connectors.not_installed", "Nothing")
    with pytest.raises(RuntimeError, match="protocol http_json is not available"):
        missing(rc, lambda batch: None)
