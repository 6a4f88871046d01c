from pathlib import Path

import pytest
from pydantic import ValidationError

from yugong.core.config_docs import configuration_markdown
from yugong.core.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_embedded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("YUGONG_CONFIG", raising=False)
    s = Settings(data_dir=tmp_path)
    assert s.registry_url == f"sqlite:///{tmp_path / 'registry.db'}"
    assert s.store_url == f"duckdb:///{tmp_path / 'timeseries.duckdb'}"
    monkeypatch.chdir(tmp_path)
    relative = Settings(data_dir=Path("data"))
    assert relative.store_url == f"duckdb:///{tmp_path / 'data' / 'timeseries.duckdb'}"
    assert s.mqtt_embedded and not s.broker_is_external


def test_postgres_url_moves_both_stores() -> None:
    s = Settings(database_url="postgresql://u@db/yg")
    assert s.registry_url == "postgresql+psycopg://u@db/yg"
    assert s.store_url == "postgresql://u@db/yg"
    assert (
        Settings(database_url="postgresql://u@db/yg", timeseries_url="duckdb:///x.duckdb").store_url
        == "duckdb:///x.duckdb"
    )


def test_env_and_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "yugong.yaml"
    cfg.write_text("http_port: 9100\nmqtt_port: 2883\n")
    monkeypatch.setenv("YUGONG_MQTT_PORT", "3883")
    s = load_settings(cfg)
    assert s.http_port == 9100  # from the file
    assert s.mqtt_port == 3883  # env wins over the file
    monkeypatch.setenv("YUGONG_CONFIG", str(cfg))
    assert Settings().http_port == 9100


def test_bad_settings_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="secret_key"):
        Settings(environment="production")
    with pytest.raises(ValidationError, match="mqtt_url"):
        Settings(mqtt_url="http://broker")
    with pytest.raises(ValidationError, match="not_a_setting"):
        Settings(not_a_setting=1)  # type: ignore[call-arg]
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="mapping"):
        load_settings(bad)


def test_signing_key_is_generated_once_per_data_dir(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path)
    key = s.signing_key()
    assert len(key) >= 32 and Settings(data_dir=tmp_path).signing_key() == key
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600


def test_configuration_reference_is_current() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert doc == configuration_markdown(), (
        "regenerate with: yugong config docs > docs/configuration.md"
    )
