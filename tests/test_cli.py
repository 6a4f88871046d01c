"""The ``yugong`` command, run as a user would, on its own data directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import SENSOR_TSL
from yugong.cli import main


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("YUGONG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("YUGONG_CONFIG", raising=False)
    return tmp_path


def test_admin_commands(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "upgrade"]) == 0
    assert (
        main(["tenant", "create", "Henan Steel", "--industry", "process", "--retention-days", "90"])
        == 0
    )
    assert main(["tenant", "list"]) == 0
    out = capsys.readouterr().out
    assert "henan-steel" in out and "process" in out and "90" in out

    model = data_dir / "sensor.json"
    model.write_text(json.dumps(SENSOR_TSL, ensure_ascii=False), encoding="utf-8")
    assert main(["product", "import", str(model), "--tenant", "henan-steel"]) == 0
    assert (
        main(["device", "create", "furnace-1", "--tenant", "henan-steel", "--product", "sensor"])
        == 0
    )
    out = capsys.readouterr().out
    token = out.split("access token (shown once): ")[1].strip()
    assert len(token) >= 20
    assert main(["device", "list", "--tenant", "henan-steel"]) == 0
    assert "furnace-1" in capsys.readouterr().out
    assert main(["device", "token", "furnace-1", "--tenant", "henan-steel"]) == 0
    new_token = capsys.readouterr().out.split("(shown once): ")[1].strip()
    assert new_token != token

    assert (
        main(
            [
                "user",
                "create",
                "lihua",
                "--tenant",
                "henan-steel",
                "--role",
                "engineer",
                "--password",
                "Strong-Pass-4812",
            ]
        )
        == 0
    )
    assert main(["user", "list", "--tenant", "henan-steel"]) == 0
    assert "lihua" in capsys.readouterr().out
    assert main(["user", "set-password", "lihua", "--password", "Another-Pass-9321"]) == 0


def test_errors_are_named_not_traced(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["device", "list", "--tenant", "no-such-tenant"]) == 2
    assert "no-such-tenant" in capsys.readouterr().err
    assert main(["user", "create", "weak", "--role", "viewer", "--password", "short"]) == 2
    assert "tenant" in capsys.readouterr().err
    bad = data_dir / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "properties": [
                    {
                        "identifier": "x",
                        "name": "X",
                        "dataType": {"type": "float", "specs": {"min": "5", "max": "1"}},
                    }
                ]
            }
        )
    )
    main(["tenant", "create", "T"])
    assert (
        main(["user", "create", "weak", "--role", "viewer", "--tenant", "t", "--password", "short"])
        == 2
    )
    assert "password" in capsys.readouterr().err
    assert main(["product", "import", str(bad), "--tenant", "t", "--key", "k"]) == 2
    assert "min" in capsys.readouterr().err


def test_config_commands(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YUGONG_SECRET_KEY", "s" * 40)
    assert main(["config", "show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["secret_key"] == "***" and shown["http_port"] == 8080
    assert main(["config", "docs"]) == 0
    assert "YUGONG_DATABASE_URL" in capsys.readouterr().out
