"""Sealed connector and uplink passwords in gateway configs and profiles."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from tests.conftest import until
from tests.edge.conftest import Collector
from tests.edge.opcua_server import CertPair, OpcUaTestServer, node_id
from tests.edge.opcua_server import secure_opcua_server as secure_opcua_server  # fixture
from yugong.cli import main
from yugong.core.errors import InvalidInput
from yugong.edge.config import load_config
from yugong.edge.connectors.opcua import OpcUaConnector
from yugong.edge.profiles import OpcUaConnection, ProfileError, parse_profile
from yugong.edge.secrets import KEY_ENV, KEY_FILE_ENV, seal

KEY = "edge-key-" + "k" * 40


def opcua_profile(endpoint: str, cert: CertPair, password: str) -> dict[str, object]:
    return {
        "name": "cnc-1",
        "protocol": "opcua",
        "connection": {
            "endpoint": endpoint,
            "timeout": 2.0,
            "security_policy": "Basic256Sha256",
            "security_mode": "SignAndEncrypt",
            "certificate": str(cert.cert),
            "private_key": str(cert.key),
            "username": "operator",
            "password": password,
        },
        "interval": "50ms",
        "points": [{"property": "speed", "node": node_id("Spindle.Speed")}],
    }


async def test_a_sealed_opcua_password_logs_in(
    secure_opcua_server: tuple[OpcUaTestServer, CertPair], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, cert = secure_opcua_server
    sealed = seal("s3cret", KEY)
    assert sealed.startswith("sealed:v1:") and "s3cret" not in sealed
    monkeypatch.setenv(KEY_ENV, KEY)
    prof = parse_profile(opcua_profile(server.endpoint, cert, sealed), source="cnc.yaml")
    sink = Collector()
    async with OpcUaConnector("opcua", [prof], sink):
        await until(lambda: sink.batches, "a reading over the sealed login")
    assert sink.latest()["speed"]["value"] == 1200.0


def test_sealed_values_need_the_right_key_and_say_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = opcua_profile("opc.tcp://127.0.0.1:4840/", CertPair(Path("c"), Path("k"), "u"), "")
    doc["connection"]["password"] = seal("s3cret", KEY)  # type: ignore[index]
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    with pytest.raises(ProfileError, match=r"cnc.yaml: connection.password is sealed, but"):
        parse_profile(doc, source="cnc.yaml")
    monkeypatch.setenv(KEY_ENV, "another-key-" + "x" * 40)
    with pytest.raises(ProfileError, match="does not open with the edge sealing key") as e:
        parse_profile(doc, source="cnc.yaml")
    assert "s3cret" not in str(e.value.detail)
    monkeypatch.setenv(KEY_ENV, "short")
    with pytest.raises(InvalidInput, match="at least 32 characters"):
        parse_profile(doc, source="cnc.yaml")
    key_file = tmp_path / "edge.key"
    key_file.write_text(KEY + "\n")
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))  # the file wins over the variable
    conn = parse_profile(doc, source="cnc.yaml").connection
    assert isinstance(conn, OpcUaConnection) and conn.password == "s3cret"


def test_seal_command_and_a_sealed_uplink_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setattr("sys.stdin", io.StringIO("broker-pass-1\n"))
    assert main(["edge", "seal"]) == 0
    sealed = capsys.readouterr().out.strip()
    assert sealed.startswith("sealed:v1:")
    config = {
        "gateway": "gw1",
        "connectors": [
            {
                "name": "sim",
                "protocol": "simulator",
                "simulated": [{"name": "m1", "signals": [{"point": "x", "waveform": "sine"}]}],
            }
        ],
        "buffer": {"path": str(tmp_path / "buf.sqlite")},
        "uplink": {"broker": "mqtt://127.0.0.1:1883", "username": "gw1", "password": sealed},
    }
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    assert load_config(path).uplink.password == "broker-pass-1"
    monkeypatch.delenv(KEY_ENV)
    assert main(["edge", "seal"]) == 2
    assert "set YUGONG_EDGE_KEY" in capsys.readouterr().err
