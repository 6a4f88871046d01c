"""One server process: builds the services from settings, starts them in order, runs the
housekeeping loops, and stops everything in reverse order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from yugong.core.settings import Settings
from yugong.core.timeutil import US_PER_S, now_us
from yugong.infra.bus import InProcessBus
from yugong.infra.db import Database
from yugong.infra.migrate import upgrade
from yugong.infra.timeseries import TimeSeriesStore, open_store
from yugong.platform.command_queue import CommandLog
from yugong.platform.components import Catalog
from yugong.platform.components.service import ComponentService
from yugong.platform.dashboards import DashboardService
from yugong.platform.ingest.service import IngestService
from yugong.platform.ingest.writer import BatchedWriter
from yugong.platform.query import QueryService
from yugong.platform.quotas import QuotaService
from yugong.platform.registry.directory import RegistryDirectory
from yugong.platform.registry.service import Registry
from yugong.security.bootstrap import ensure_platform_admin
from yugong.security.integrity import Integrity
from yugong.security.principal import SYSTEM
from yugong.security.service import Security

if TYPE_CHECKING:
    from yugong.infra.broker import EmbeddedBroker
    from yugong.platform.commands import CommandService
    from yugong.platform.ingest.sparkplug_host import SparkplugHost

log = logging.getLogger(__name__)
SEEN_FLUSH_S = 5.0
ADMIN_PASSWORD_FILE = "initial-admin-password"  # noqa: S105 - a file name


class Platform:
    """Everything a server runs. ``await start()`` then ``await stop()``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.generated_admin_password: str | None = None
        self.mqtt_address: tuple[str, int] | None = None
        self.mqtt_tls_address: tuple[str, int] | None = None  # MQTT over TLS, when configured
        self._tasks: list[asyncio.Task[None]] = []
        self._broker: Any = None
        self._subscriber: Any = None
        self.sparkplug: SparkplugHost | None = None  # when Sparkplug groups are configured
        self.commands: CommandService | None = None  # set by install_commands

    async def start(self) -> None:
        s = self.settings
        s.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(upgrade, s.registry_url)
        self.db = Database(s.registry_url)
        self.security = Security(self.db, s)
        left = await asyncio.to_thread(CommandLog(self.db).fail_leftovers)
        if left:
            log.warning("%d command(s) of the previous run never finished; marked failed", left)
        # Web anti-tampering: the manifest is made at the first start, then checked.
        self.integrity = Integrity(s, self.security.events)
        await asyncio.to_thread(self.integrity.ensure)
        self.generated_admin_password = await asyncio.to_thread(ensure_platform_admin, self.db, s)
        if self.generated_admin_password:
            path = s.data_dir / ADMIN_PASSWORD_FILE
            path.write_text(self.generated_admin_password + "\n")
            path.chmod(0o600)
        self.store: TimeSeriesStore = await asyncio.to_thread(
            open_store, s.store_url, compact_interval_s=s.timeseries_compact_interval_s
        )
        self.quotas = QuotaService(
            self.db,
            store=self.store,
            events=self.security.events,
            burst_s=s.quota_burst_s,
            disconnect_after_s=s.quota_disconnect_after_s,
            anomaly_factor=s.rate_anomaly_factor,
            anomaly_min_per_min=s.rate_anomaly_min_per_min,
        )
        self.registry = Registry(self.db, on_event=self.quotas.on_registry_event)
        # Device MQTT passwords share the users' argon2 hasher; certificates the platform CA.
        self.registry.devices.passwords = self.security.passwords
        from yugong.security.pki import tls_files

        tls = tls_files(s)
        self.registry.devices.ca_file = tls.ca_file if tls is not None else None
        self.directory: RegistryDirectory = self.registry.directory
        self.bus = InProcessBus()
        from yugong.platform.alarms.service import AlarmService

        self.alarms = AlarmService(
            self.db, self.bus, self.directory, self.security.audit, loop=asyncio.get_running_loop()
        )
        self.security.detection.alarm_sink = self._alarm_sink(asyncio.get_running_loop())
        await asyncio.to_thread(self.integrity.check)  # at start; alarms reach the bus
        self.writer = BatchedWriter(
            self.store,
            batch_rows=s.ingest_batch_rows,
            flush_ms=s.ingest_flush_ms,
            max_queue_rows=s.ingest_queue_rows,
        )
        await self.writer.start()
        self.ingest = IngestService(
            self.directory,
            self.writer,
            self.bus,
            attribute_sink=self.registry.store_client_attributes,
            guard=self.quotas,
        )
        self.query = QueryService(self.directory, self.store)
        self.components = ComponentService(await asyncio.to_thread(Catalog.discover), self.query)
        self.dashboards = DashboardService(self.db, self.directory, audit=self.security.audit)
        await self._start_actions()
        from yugong.platform.rules.runner import start_rules

        self.rules, self.rules_runner = await start_rules(self)
        await self._start_mqtt()
        self._every(SEEN_FLUSH_S, self._housekeeping)
        self._every(s.retention_interval_s, self._apply_retention)
        if s.integrity_check_interval_s > 0:
            self._every(s.integrity_check_interval_s, self._check_integrity)
        await asyncio.to_thread(self.quotas.refresh_storage)
        self._every(s.quota_storage_check_s, self._check_storage)
        log.info(
            "platform started: registry %s, time series %s",
            _safe(s.registry_url),
            _safe(s.store_url),
        )

    async def _start_mqtt(self) -> None:
        s = self.settings
        if s.mqtt_url:
            from yugong.platform.ingest.mqtt import ExternalBrokerIngest

            self._subscriber = ExternalBrokerIngest(
                s, self.directory, self.ingest, identifier=s.mqtt_client_id
            )
            await self._subscriber.start()
            if s.sparkplug_groups:
                from yugong.platform.ingest.sparkplug_host import SparkplugHost

                self.sparkplug = SparkplugHost(
                    s,
                    self.registry,
                    self.ingest,
                    groups=s.sparkplug_groups,
                    host_id=s.sparkplug_host_id,
                )
                await self.sparkplug.start()
        elif s.mqtt_embedded:
            from yugong.infra.broker import EmbeddedBroker
            from yugong.platform.ingest.gateway import GatewayService

            self.gateway = GatewayService(self.ingest, self.registry)
            self._broker = EmbeddedBroker(
                s,
                self.directory,
                self.ingest,
                gateway=self.gateway,
                events=self.security.events,
                blocked=self.security.blocks.is_blocked,
                passwords=self.security.passwords,
            )
            # Sparkplug B in-process: gateway devices are edge nodes, in their own tenant.
            from yugong.platform.ingest.sparkplug_host import SparkplugHost

            self.sparkplug = SparkplugHost(
                s,
                self.registry,
                self.ingest,
                groups=s.sparkplug_groups,
                host_id=s.sparkplug_host_id,
                publish=self._broker.publish,
            )
            self._broker.attach_sparkplug(self.sparkplug)
            await self._broker.start()
            await self.sparkplug.start()
            self.mqtt_address = self._broker.address
            self.mqtt_tls_address = self._broker.tls_address

    async def _start_actions(self) -> None:
        """Notification targets and delivery, and the rule actions on alarm changes."""
        from yugong.platform.actions import ActionDispatcher
        from yugong.platform.notify import NotificationTargets, NotifyService

        targets = NotificationTargets(self.db, self.security.box, self.security.audit)
        self.notify = NotifyService(targets)
        self.actions = ActionDispatcher(
            db=self.db,
            bus=self.bus,
            notify=self.notify,
            ingest=self.ingest,
            directory=self.directory,
            commands=lambda: self.commands,
            audit=self.security.audit,
        )
        await self.actions.start()

    @property
    def broker(self) -> EmbeddedBroker | None:
        """The embedded MQTT broker, when the platform runs one (after start)."""
        return cast("EmbeddedBroker | None", self._broker)

    def _every(self, seconds: float, job: Callable[[], Awaitable[None]]) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(seconds)
                try:
                    await job()
                except Exception:
                    log.exception("background job %s failed; it will run again", job.__name__)

        self._tasks.append(asyncio.create_task(loop(), name=job.__name__))

    async def _check_storage(self) -> None:
        await asyncio.to_thread(self.quotas.refresh_storage)

    async def _housekeeping(self) -> None:
        await asyncio.to_thread(self.quotas.flush_events)
        await asyncio.to_thread(self.directory.flush_seen)
        await asyncio.to_thread(
            self.directory.mark_offline_after, self.settings.device_offline_after_s
        )

    def _alarm_sink(self, loop: asyncio.AbstractEventLoop) -> Callable[[dict[str, Any]], None]:
        """Security alarms onto the bus topic ``security.alarm``, from any thread."""
        from yugong.security.blocks import ALARM_TOPIC

        def sink(message: dict[str, Any]) -> None:
            if loop.is_closed():
                return
            loop.call_soon_threadsafe(self.bus.publish, ALARM_TOPIC, message)

        return sink

    async def _check_integrity(self) -> None:
        await asyncio.to_thread(self.integrity.check)

    async def _apply_retention(self) -> None:
        offset = 0
        while True:
            page = await asyncio.to_thread(self.registry.tenants.list, SYSTEM, offset=offset)
            for tenant in page:
                days = self.quotas.retention_days(tenant.id, tenant.retention_days)
                if days:  # the smaller of the tenant's and its profile's maximum
                    cutoff = now_us() - days * 86_400 * US_PER_S
                    await asyncio.to_thread(self.store.drop_before, tenant.id, cutoff)
            offset += len(page)
            if not page.items or offset >= page.total:
                return

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.commands is not None:
            await self.commands.close()
        if self.sparkplug is not None:
            await self.sparkplug.stop()
        if self._subscriber is not None:
            await self._subscriber.stop()
        if self._broker is not None:
            await self._broker.stop()
        runner = getattr(self, "rules_runner", None)
        if runner is not None:
            await runner.stop()  # evaluates what is queued, saves rule state
        if getattr(self, "actions", None) is not None:
            await self.actions.stop()
            await self.notify.close()
        await self.writer.close()
        await asyncio.to_thread(self.directory.flush_seen)
        await asyncio.to_thread(self.store.close)
        self.db.dispose()
        log.info("platform stopped")


def _safe(url: str) -> str:
    """A URL for logs, without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
    return url
