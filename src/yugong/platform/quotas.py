"""Per-tenant resource limits at run time: ingest and API rate limits, stored bytes, usage.

:class:`QuotaService` (``platform.quotas``) holds each tenant's effective :class:`Limits`
(cached, reloaded when a profile or tenant changes) and the token buckets:

- ingest: messages/s and points/s per tenant and per device, drawn atomically by
  :meth:`QuotaService.admit_ingest` for every message or request before it is stored. A
  refusal raises :class:`IngestRateLimited` (HTTP 429 with Retry-After; MQTT: the message is
  dropped, and a device refused in every second for ``disconnect_after_s`` seconds is
  disconnected with reason 0x96 "Message rate too high").
- API requests/s per tenant (:meth:`admit_api`, used by ``yugong.api.ratelimit``).
- stored bytes: a tenant over ``max_stored_bytes`` has its ingest refused with
  :class:`StorageFull` (**507 Insufficient Storage**: waiting alone does not help, so no
  Retry-After; the refusal lasts until retention or deletions bring usage under the limit,
  re-measured every ``storage_check_s``).

Every refusal is counted per tenant and limit (shown in the usage report) and summarised
into folded ``rate_limited`` security events by :meth:`flush_events`. One tenant's buckets
and counters are never touched by another tenant's traffic.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import select

from yugong.core.errors import NotFound, RateLimited, YugongError
from yugong.infra.db import Database
from yugong.platform.quotas_profiles import (
    UNLIMITED,
    Limits,
    Profiles,
    QuotaExceeded,
    all_limits,
    count,
    effective_retention,
    watchers,
)
from yugong.platform.ratelimit import (
    Anomaly,
    Buckets,
    Charge,
    RateAnomalies,
    RateMeter,
    Refusal,
    Streaks,
)
from yugong.platform.registry.models import Tenant
from yugong.platform.registry.records import ChangeEvent
from yugong.security.principal import Principal

log = logging.getLogger(__name__)

# Bucket tables.
T_MSG, T_PTS, D_MSG, D_PTS, T_API = range(5)
_LIMIT_NAME = {
    T_MSG: "messages_per_s",
    T_PTS: "points_per_s",
    D_MSG: "device_messages_per_s",
    D_PTS: "device_points_per_s",
    T_API: "api_requests_per_s",
}
MQTT_RATE_TOO_HIGH = 0x96  # MQTT 5 reason code "Message rate too high"


class IngestRateLimited(RateLimited):
    """Over an ingest rate limit (429). ``disconnect``: the device has been over its limit
    long enough that an MQTT connection should be closed."""

    reason = "rate_limited"

    def __init__(
        self, detail: str, *, limit: str, retry_after: int, disconnect: bool = False
    ) -> None:
        super().__init__(detail)
        self.limit = limit
        self.retry_after = retry_after
        self.disconnect = disconnect

    def extra(self) -> dict[str, Any]:
        return {**super().extra(), "limit": self.limit, "retry_after": self.retry_after}


class ApiRateLimited(IngestRateLimited):
    reason = "api_rate_limited"


class StorageFull(YugongError):
    """The tenant stores more than its profile's ``max_stored_bytes`` (507)."""

    status = 507
    title = "Insufficient storage"
    reason = "storage_full"

    def extra(self) -> dict[str, Any]:
        return {**super().extra(), "limit": "max_stored_bytes"}


class QuotaService:
    """Limits, buckets, counters and usage of every tenant. Thread-safe."""

    def __init__(
        self,
        db: Database,
        *,
        store: Any = None,
        events: Any = None,
        burst_s: float = 1.0,
        disconnect_after_s: int = 5,
        anomaly_factor: float = 10.0,
        anomaly_min_per_min: int = 600,
    ) -> None:
        self.db = db
        self.store = store  # a TimeSeriesStore, for stored bytes
        self.events = events  # a SecurityEvents, for rate_limited events
        self.profiles = Profiles(db, self.invalidate)
        self.buckets = Buckets(5, burst_s=burst_s)
        self.streaks = Streaks(disconnect_after_s)
        self.messages = RateMeter()
        self.points = RateMeter()
        self.requests = RateMeter()
        self.anomalies = RateAnomalies(factor=anomaly_factor, min_per_min=anomaly_min_per_min)
        self._anomalous: list[tuple[int, Anomaly]] = []  # (tenant, anomaly) not yet reported
        self.started = time.time()
        self._lock = threading.Lock()
        self._limits: dict[int, Limits] | None = None
        # tenant -> limit name -> refusals since start
        self._refused: dict[int, dict[str, int]] = defaultdict(dict)
        # (tenant, device, limit) -> refusals not yet reported as a security event
        self._pending: dict[tuple[int, int | None, str], int] = {}
        self._stored: dict[int, int] = {}  # tenant -> bytes at the last measurement
        self._full: set[int] = set()  # tenants over max_stored_bytes
        watchers.add(self)  # count limits are checked in other services' transactions

    # Limits -----------------------------------------------------------------------------------

    def limits(self, tenant: int) -> Limits:
        """The tenant's effective limits (cached; a miss reloads every tenant at once)."""
        cache = self._limits
        if cache is not None:
            found = cache.get(tenant)
            if found is not None:
                return found
        loaded = all_limits(self.db)
        loaded.setdefault(tenant, UNLIMITED)  # an unknown tenant must not reload every time
        with self._lock:
            self._limits = loaded
        return loaded[tenant]

    def invalidate(self, tenant: int | None = None) -> None:
        """Forget cached limits (a profile or a tenant's profile changed)."""
        with self._lock:
            self._limits = None

    def on_registry_event(self, event: ChangeEvent) -> None:
        if event.kind == "tenant":
            self.invalidate(event.tenant)
            if event.op == "deleted":
                with self._lock:
                    self._full.discard(event.tenant)
                    self._stored.pop(event.tenant, None)

    def retention_days(self, tenant: int, tenant_days: int | None) -> int | None:
        return effective_retention(tenant_days, self.limits(tenant))

    # Counting limits ------------------------------------------------------------------------

    def count_refusal(self, engine: Any, tenant: int, limit: str) -> None:
        """A count limit refused something (called by ``check_can_add``)."""
        if engine is self.db.engine:
            self._count(tenant, None, limit)

    # Ingest -----------------------------------------------------------------------------------

    def admit_ingest(
        self, tenant: int, device: int | None, messages: int = 1, points: int = 0
    ) -> None:
        """Draw ``messages`` and ``points`` from the tenant's (and device's) buckets, or raise
        :class:`IngestRateLimited` / :class:`StorageFull` and count the refusal."""
        lim = self.limits(tenant)
        if tenant in self._full:
            self._count(tenant, device, "max_stored_bytes")
            used = self._stored.get(tenant, 0)
            raise StorageFull(
                f"tenant {tenant} stores {used} bytes, over the {lim.max_stored_bytes} bytes its "
                f"profile '{lim.profile}' allows (max_stored_bytes); ingest is refused until "
                "usage drops"
            )
        charges: list[Charge] = []
        if lim.messages_per_s is not None and messages:
            charges.append(Charge(T_MSG, tenant, lim.messages_per_s, messages))
        if lim.points_per_s is not None and points:
            charges.append(Charge(T_PTS, tenant, lim.points_per_s, points))
        if device is not None:
            if lim.device_messages_per_s is not None and messages:
                charges.append(Charge(D_MSG, device, lim.device_messages_per_s, messages))
            if lim.device_points_per_s is not None and points:
                charges.append(Charge(D_PTS, device, lim.device_points_per_s, points))
        if device is not None and messages:
            anomaly = self.anomalies.add(device, messages)
            if anomaly is not None:
                with self._lock:
                    self._anomalous.append((tenant, anomaly))
        refusal = self.buckets.take(charges) if charges else None
        if refusal is None:
            self.messages.add(tenant, messages)
            if points:
                self.points.add(tenant, points)
            return
        name = _LIMIT_NAME[refusal.charge.table]
        self._count(tenant, device, name)
        persistent = device is not None and self.streaks.strike(device)
        who = f"device {device}" if refusal.charge.table in (D_MSG, D_PTS) else f"tenant {tenant}"
        raise IngestRateLimited(
            f"{who} is over its ingest limit {name} = {refusal.charge.rate:g}/s of tenant "
            f"profile '{lim.profile}'; retry after {refusal.retry_after} s",
            limit=name,
            retry_after=refusal.retry_after,
            disconnect=persistent,
        )

    # API requests -----------------------------------------------------------------------------

    def admit_api(self, tenant: int, *, force: bool = False) -> ApiRateLimited | None:
        """Draw one request from the tenant's API bucket; returns the refusal (counted) or
        None. ``force``: the request already ran (its tenant was learnt from it)."""
        self.requests.add(tenant)
        lim = self.limits(tenant)
        if lim.api_requests_per_s is None:
            return None
        refusal: Refusal | None = self.buckets.take(
            [Charge(T_API, tenant, lim.api_requests_per_s, 1)], force=force
        )
        if refusal is None:
            return None
        self._count(tenant, None, "api_requests_per_s")
        return ApiRateLimited(
            f"tenant {tenant} is over its API limit api_requests_per_s = "
            f"{lim.api_requests_per_s:g}/s of tenant profile '{lim.profile}'; retry after "
            f"{refusal.retry_after} s",
            limit="api_requests_per_s",
            retry_after=refusal.retry_after,
        )

    # Refusal bookkeeping --------------------------------------------------------------------

    def _count(self, tenant: int, device: int | None, limit: str) -> None:
        with self._lock:
            table = self._refused[tenant]
            table[limit] = table.get(limit, 0) + 1
            key = (tenant, device, limit)
            self._pending[key] = self._pending.get(key, 0) + 1

    def refused(self, tenant: int) -> dict[str, int]:
        with self._lock:
            return dict(self._refused.get(tenant, {}))

    def flush_events(self) -> int:
        """Report the refusals since the last call as ``rate_limited`` security events, one
        per (tenant, device, limit); returns how many were recorded. Blocks (database)."""
        with self._lock:
            pending, self._pending = self._pending, {}
            anomalous, self._anomalous = self._anomalous, []
        if self.events is None:
            return 0
        for tenant, a in anomalous:
            self.events.record(
                "rate_anomaly",
                "warning",
                tenant_id=tenant,
                device_id=a.key,
                subject="messages_per_min",
                detail={"messages_per_min": a.per_min, "usual_per_min": round(a.baseline, 1)},
            )
        for (tenant, device, limit), n in pending.items():
            self.events.record(
                "rate_limited",
                "warning",
                tenant_id=tenant,
                device_id=device,
                subject=limit,
                detail={"limit": limit, "refused": n},
            )
        return len(pending) + len(anomalous)

    # Stored bytes -----------------------------------------------------------------------------

    def stored_bytes(self, tenant: int) -> int | None:
        if self.store is None:
            return None
        try:
            size = int(self.store.stored_bytes(tenant))
        except NotImplementedError:
            return None
        with self._lock:
            self._stored[tenant] = size
        return size

    def refresh_storage(self) -> None:
        """Measure every tenant that has a ``max_stored_bytes`` and refuse or resume its
        ingest accordingly. Blocks (database and store)."""
        limits = all_limits(self.db)
        full: set[int] = set()
        for tenant, lim in limits.items():
            if lim.max_stored_bytes is None:
                continue
            size = self.stored_bytes(tenant)
            if size is not None and size > lim.max_stored_bytes:
                full.add(tenant)
        with self._lock:
            self._limits = limits
            if full - self._full:
                log.warning("tenants over their stored bytes limit: %s", sorted(full - self._full))
            self._full = full

    # Usage ------------------------------------------------------------------------------------

    def usage(self, p: Principal, tenant: int) -> dict[str, Any]:
        """Limits, usage and refusals of one tenant: its tenant admin or a platform admin."""
        p.require("quotas:read")
        tenant = p.tenant_for(tenant)
        with self.db.session() as s:
            if s.scalar(select(Tenant.id).where(Tenant.id == tenant)) is None:
                raise NotFound(f"tenant {tenant} not found")
            counts = {k: count(s, tenant, k) for k in ("devices", "users", "api_keys")}
        lim = self.limits(tenant)
        stored = self.stored_bytes(tenant)
        return {
            "tenant_id": tenant,
            "limits": lim.as_dict(),
            "usage": {
                **counts,
                "stored_bytes": stored,
                "messages_per_s": round(self.messages.rate(tenant), 3),
                "points_per_s": round(self.points.rate(tenant), 3),
                "api_requests_per_s": round(self.requests.rate(tenant), 3),
            },
            "storage_full": tenant in self._full,
            "refused": self.refused(tenant),
            "since": self.started,
        }


__all__ = [
    "MQTT_RATE_TOO_HIGH",
    "ApiRateLimited",
    "IngestRateLimited",
    "QuotaExceeded",
    "QuotaService",
    "StorageFull",
]
