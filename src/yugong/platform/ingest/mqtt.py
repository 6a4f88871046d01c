"""Ingest from an external MQTT broker (Mosquitto, EMQX).

The platform subscribes to ``{prefix}/+/telemetry`` and ``{prefix}/+/attributes`` where
``+`` is the global device id. Access tokens never travel in topics: the broker's ACLs
decide which client may publish under which device id, so the topic is the identity.
With ``mqtt_shared_subscription`` the subscriptions are ``$share/yugong/...`` and several
platform processes split the messages between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import aiomqtt

from yugong.core.errors import YugongError
from yugong.core.settings import Settings
from yugong.infra.broker import RateLimitedLog
from yugong.platform.ingest.service import IngestService
from yugong.platform.registry.bindings import DeviceDirectory

log = logging.getLogger(__name__)
SHARE_GROUP = "yugong"
MAX_BACKOFF_S = 30.0


@dataclass
class SubscriberStats:
    connects: int = 0
    disconnects: int = 0
    messages: int = 0  # handed to ingest and accepted
    rejected: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    username: str | None
    password: str | None
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts", "tcp") or not parts.hostname:
            raise ValueError(f"not an MQTT broker URL: {url!r} (mqtt://[user:pass@]host[:port])")
        tls = parts.scheme == "mqtts"
        return cls(
            parts.hostname,
            parts.port or (8883 if tls else 1883),
            unquote(parts.username) if parts.username else None,
            unquote(parts.password) if parts.password else None,
            tls,
        )


class ExternalBrokerIngest:
    """``await start()`` subscribes in the background (reconnecting with backoff);
    ``await stop()``. ``ready`` is set while subscribed."""

    def __init__(
        self,
        settings: Settings,
        directory: DeviceDirectory,
        ingest: IngestService,
        *,
        identifier: str | None = None,
    ) -> None:
        if not settings.mqtt_url:
            raise ValueError("mqtt_url is not set")
        self.address = BrokerAddress.parse(settings.mqtt_url)
        self.prefix = settings.mqtt_topic_prefix.rstrip("/")
        self.shared = settings.mqtt_shared_subscription
        self.max_payload_bytes = settings.mqtt_max_payload_bytes
        self.directory = directory
        self.ingest = ingest
        self.identifier = identifier
        self.ready = asyncio.Event()
        self.stats = SubscriberStats()
        self._rlog = RateLimitedLog(log)
        self._task: asyncio.Task[None] | None = None

    @property
    def topics(self) -> list[str]:
        share = f"$share/{SHARE_GROUP}/" if self.shared else ""
        return [f"{share}{self.prefix}/+/telemetry", f"{share}{self.prefix}/+/attributes"]

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="mqtt-external-ingest")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.ready.clear()

    def _client(self) -> aiomqtt.Client:
        a = self.address
        kwargs: dict[str, Any] = {}
        if a.tls:
            kwargs["tls_context"] = ssl.create_default_context()
        return aiomqtt.Client(
            a.host,
            a.port,
            username=a.username,
            password=a.password,
            identifier=self.identifier,
            keepalive=30,
            **kwargs,
        )

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            try:
                async with self._client() as client:
                    await client.subscribe([(t, 1) for t in self.topics])
                    self.stats.connects += 1
                    backoff = 0.5
                    self.ready.set()
                    log.info(
                        "subscribed to %s on %s:%d",
                        ", ".join(self.topics),
                        self.address.host,
                        self.address.port,
                    )
                    async for message in client.messages:
                        await self.handle(message.topic.value, message.payload)
            except aiomqtt.MqttError as exc:
                self.ready.clear()
                self.stats.disconnects += 1
                self._rlog.warning(
                    "conn",
                    f"MQTT broker {self.address.host}:"
                    f"{self.address.port} unavailable ({exc}); retrying in "
                    f"{backoff:.1f} s",
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)

    async def handle(self, topic: str, payload: Any) -> None:
        """One message from the broker: resolve the device from the topic, then ingest."""
        rest = topic[len(self.prefix) + 1 :] if topic.startswith(self.prefix + "/") else ""
        device_id, _, kind = rest.partition("/")
        if kind not in ("telemetry", "attributes") or not device_id.isdigit():
            self._reject("bad_topic", f"unexpected topic {topic!r}")
            return
        device = self.directory.by_id(int(device_id))
        if device is None:
            self._reject("unknown_device", f"message for unknown device id {device_id}")
            return
        data = payload if isinstance(payload, bytes | bytearray) else str(payload).encode()
        if len(data) > self.max_payload_bytes:
            self.ingest.count_rejected(device.tenant, "too_large")
            self._reject(
                "too_large",
                f"device {device.device}: {len(data)} bytes, at most "
                f"{self.max_payload_bytes} accepted",
            )
            return
        try:
            if kind == "telemetry":
                await self.ingest.ingest_telemetry(device, data)
            else:
                await self.ingest.ingest_attributes(device, data)
            self.stats.messages += 1
        except YugongError as exc:
            self._reject(
                str(getattr(exc, "reason", type(exc).__name__)),
                f"device '{device.name}' (id {device.device}): {exc.detail}",
            )
        except Exception:
            self.stats.rejected["error"] = self.stats.rejected.get("error", 0) + 1
            log.exception("ingest of an MQTT message for device %s failed", device.device)

    def _reject(self, reason: str, detail: str) -> None:
        self.stats.rejected[reason] = self.stats.rejected.get(reason, 0) + 1
        self._rlog.warning(reason, f"MQTT message rejected: {detail}")
