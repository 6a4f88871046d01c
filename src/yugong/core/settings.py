"""All configuration in one place: ``YUGONG_*`` environment variables over an optional YAML
file (``YUGONG_CONFIG`` or ``--config``) over the defaults below.

The defaults describe one machine with nothing to install: an embedded MQTT broker, DuckDB
time series and SQLite metadata under ``data_dir``. A ``postgresql://`` ``database_url``
moves both the registry and the time series to PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

_DEV_SECRET_FILE = "secret.key"  # noqa: S105 - a file name, not a secret


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="YUGONG_", extra="forbid")

    environment: Literal["development", "production"] = Field(
        "development", description="production refuses to start without secret_key."
    )
    data_dir: Path = Field(Path("data"), description="Where embedded storage keeps its files.")

    # Storage
    database_url: str | None = Field(
        None,
        description="Registry database. Default: SQLite in data_dir. "
        "postgresql://... also moves the time series to PostgreSQL.",
    )
    timeseries_url: str | None = Field(
        None, description="Override for the time-series store: duckdb:///path or postgresql://..."
    )
    device_offline_after_s: float = Field(
        300.0, description="A device not heard from for this long is shown offline."
    )
    timeseries_compact_interval_s: float = Field(
        30.0, description="How often the background compactor looks for work."
    )
    retention_interval_s: float = Field(
        3600.0, description="How often per-tenant retention is applied."
    )

    # HTTP
    http_host: str = Field("127.0.0.1", description="HTTP listen address (0.0.0.0 for all).")
    http_port: int = Field(8080, description="HTTP listen port (API, console, OpenAPI).")
    max_request_bytes: int = Field(
        64 * 1024 * 1024, description="Largest accepted request body (bulk ingest)."
    )

    # MQTT
    mqtt_embedded: bool = Field(True, description="Start the embedded broker (amqtt).")
    mqtt_host: str = Field("127.0.0.1", description="Embedded broker listen address.")
    mqtt_port: int = Field(1883, description="Embedded broker listen port.")
    mqtt_url: str | None = Field(
        None,
        description="External broker to subscribe to, e.g. mqtt://user:pass@host:1883. "
        "Setting it turns the embedded broker off.",
    )
    mqtt_max_payload_bytes: int = Field(
        1024 * 1024, description="Larger MQTT messages are rejected."
    )
    mqtt_topic_prefix: str = Field(
        "yugong/v1/devices",
        description="External broker: devices publish to "
        "PREFIX/{device_id}/telemetry and PREFIX/{device_id}/attributes.",
    )
    mqtt_client_id: str | None = Field(
        None,
        description="External broker: a fixed client id makes the platform's session "
        "persistent, so the broker keeps QoS 1 messages while the platform is away. Give each "
        "platform process its own. Default: a random id and a clean session.",
    )
    sparkplug_groups: dict[str, str] = Field(
        default_factory=dict,
        description="External broker: Sparkplug B group ids the platform hosts, each mapped "
        'to a tenant slug, e.g. {"plant-1": "acme"} (env: JSON). Empty: no Sparkplug host. '
        "Edge nodes of unmapped groups are refused and counted.",
    )
    sparkplug_host_id: str = Field(
        "yugong", description="Sparkplug B primary host id (the STATE topic's name)."
    )
    mqtt_shared_subscription: bool = Field(
        False,
        description="External broker: subscribe as $share/yugong/... so several "
        "platform processes split the load.",
    )

    # Ingest
    ingest_batch_rows: int = Field(50_000, description="Writer flushes at this many rows ...")
    ingest_flush_ms: int = Field(200, description="... or when its oldest row is this old.")
    ingest_queue_rows: int = Field(
        5_000_000, description="Rows waiting to be written before ingest pushes back."
    )

    # Access
    secret_key: str | None = Field(
        None,
        description="Signs access tokens. Required in production; generated and kept "
        "in data_dir in development.",
    )
    access_token_minutes: int = Field(30, description="Lifetime of an access token (JWT).")
    refresh_token_days: int = Field(14, description="Lifetime of a refresh token.")
    admin_username: str = Field("admin", description="Bootstrap platform admin user name.")
    admin_password: str | None = Field(
        None, description="Bootstrap platform admin password; printed once if generated."
    )
    password_min_length: int = Field(10, ge=8, description="Shortest password accepted.")
    password_min_classes: int = Field(
        1, ge=1, le=4, description="Character classes (lower, upper, digit, other) required."
    )
    login_lockout_after: int = Field(
        5, ge=1, description="Failed logins in a row after which an account is locked."
    )
    login_lockout_base_s: float = Field(
        30.0, gt=0, description="First lockout; each further failure doubles it ..."
    )
    login_lockout_max_s: float = Field(3600.0, gt=0, description="... up to this long.")
    totp_issuer: str = Field("Yugong", description="Issuer shown in authenticator apps.")
    data_key: str | None = Field(
        None,
        description="Encrypts secrets at rest (TOTP seeds, connector passwords). Default: "
        "derived from secret_key; set it to rotate one without the other.",
    )

    # Encrypted transport
    tls_cert_file: Path | None = Field(
        None, description="Server certificate (PEM); set: HTTPS and MQTT over TLS are on."
    )
    tls_key_file: Path | None = Field(None, description="Private key of tls_cert_file (PEM).")
    tls_ca_file: Path | None = Field(
        None,
        description="CA that issues device client certificates (PEM); default: the platform "
        "CA made by `yugong certs init`.",
    )
    mqtt_tls_port: int = Field(8883, description="Embedded broker's MQTT over TLS port.")
    mqtt_plain: bool = Field(
        True, description="Keep the plain MQTT port open beside TLS (off in production)."
    )

    # Detection and blocking
    block_failed_logins_per_ip: int = Field(
        20, ge=1, description="Failed logins from one address before it is blocked."
    )
    block_duration_s: float = Field(
        900.0, gt=0, description="How long an offending address or device stays blocked."
    )
    block_loopback: bool = Field(
        False,
        description="Also block loopback addresses (127.0.0.1, ::1); off so that nobody on "
        "the machine itself (an operator, a local reverse proxy) is locked out.",
    )
    malformed_flood_per_min: int = Field(
        100, ge=1, description="Malformed messages a minute from one device: an event, a block."
    )
    rate_anomaly_factor: float = Field(
        10.0, gt=1, description="A device's minute this many times its usual rate: an event."
    )
    rate_anomaly_min_per_min: int = Field(
        600, ge=1, description="... and over this many messages (smaller jumps are noise)."
    )
    integrity_check_interval_s: float = Field(
        300.0, ge=0, description="Seconds between checks of code and web assets (0: off)."
    )

    # Tenant quotas (the limits themselves are in tenant profiles)
    quota_burst_s: float = Field(
        1.0, gt=0, description="Rate limits allow bursts of this many seconds' worth."
    )
    quota_disconnect_after_s: int = Field(
        5,
        ge=0,
        description="An MQTT device over its rate limit in every second for this long is "
        "disconnected (reason 0x96; 0: never).",
    )
    quota_storage_check_s: float = Field(
        60.0, gt=0, description="Seconds between measurements of each tenant's stored bytes."
    )

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_scheme(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("mqtt://", "mqtts://", "tcp://")):
            raise ValueError("mqtt_url must start with mqtt://, mqtts:// or tcp://")
        return v

    @model_validator(mode="after")
    def _production_needs_secret(self) -> Settings:
        if self.environment == "production" and not self.secret_key:
            raise ValueError("secret_key (YUGONG_SECRET_KEY) must be set in production")
        if self.secret_key is not None and len(self.secret_key) < 32:
            raise ValueError("secret_key must be at least 32 characters")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("YUGONG_CONFIG")
        if config_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=config_file))
        return tuple(sources)

    # Derived values -------------------------------------------------------------------------

    @property
    def registry_url(self) -> str:
        if self.database_url:
            return _sqlalchemy_url(self.database_url)
        return f"sqlite:///{self.data_dir.resolve() / 'registry.db'}"

    @property
    def store_url(self) -> str:
        if self.timeseries_url:
            return self.timeseries_url
        if self.database_url and self.database_url.startswith(("postgresql", "postgres")):
            return self.database_url
        return f"duckdb:///{self.data_dir.resolve() / 'timeseries.duckdb'}"

    @property
    def broker_is_external(self) -> bool:
        return self.mqtt_url is not None

    def signing_key(self) -> str:
        """The JWT signing key: configured, or generated once per data_dir in development."""
        if self.secret_key:
            return self.secret_key
        path = self.data_dir / _DEV_SECRET_FILE
        if path.exists():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_urlsafe(48)
        path.write_text(key)
        path.chmod(0o600)
        return key


def _sqlalchemy_url(url: str) -> str:
    """Plain postgresql:// URLs use the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from env and (optionally) a YAML file; explicit overrides win."""
    if config_file is not None:
        path = Path(config_file)
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping of settings at the top level")
        env_keys = {k[len("YUGONG_") :].lower() for k in os.environ if k.startswith("YUGONG_")}
        merged = {k: v for k, v in data.items() if k not in env_keys}
        return Settings(**{**merged, **overrides})
    return Settings(**overrides)
