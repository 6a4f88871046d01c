"""Security events: what a defender must hear about — failed logins, ACL violations,
unknown devices, bad certificates, message-rate anomalies, malformed payload floods,
tampered files.

``record()`` is safe to call from anywhere (event loop or worker thread) and cheap: the
same (kind, tenant, source, subject) within ``fold_s`` is folded into one stored event
with a count, so a flood of attempts becomes one row, not a flood of writes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from yugong.infra.db import Database
from yugong.security.models import SecurityEvent

log = logging.getLogger("yugong.security.events")

Severity = Literal["info", "warning", "critical"]


@dataclass(frozen=True, slots=True)
class EventInfo:
    id: int
    kind: str
    severity: str
    tenant_id: int | None
    source_ip: str | None
    subject: str | None
    device_id: int | None
    count: int
    detail: dict[str, Any] = field(default_factory=dict)


Listener = Callable[[EventInfo], None]


class SecurityEvents:
    def __init__(self, db: Database, *, fold_s: float = 60.0) -> None:
        self.db = db
        self.fold_s = fold_s
        self._lock = threading.Lock()
        # fold key -> (event id, monotonic time of its first occurrence)
        self._recent: dict[tuple[Any, ...], tuple[int, float]] = {}
        self._listeners: list[Listener] = []
        self._repeat_listeners: list[Listener] = []

    def subscribe(self, listener: Listener, *, repeats: bool = False) -> None:
        """Called for every new (not folded) event, e.g. to raise an alarm; with
        ``repeats`` also for each occurrence folded into one (counting, e.g. to block)."""
        self._listeners.append(listener)
        if repeats:
            self._repeat_listeners.append(listener)

    def record(
        self,
        kind: str,
        severity: Severity = "warning",
        *,
        tenant_id: int | None = None,
        source_ip: str | None = None,
        subject: str | None = None,
        device_id: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> int:
        """Store the event (or count it into the same one seen within ``fold_s``); returns
        the event id. Never raises: a detection failure must not break the caller."""
        key = (kind, tenant_id, source_ip, subject, device_id)
        now = time.monotonic()
        repeat: EventInfo | None = None
        try:
            with self._lock:
                seen = self._recent.get(key)
                if seen is not None and now - seen[1] < self.fold_s:
                    with self.db.session() as s:
                        row = s.get(SecurityEvent, seen[0])
                        if row is not None:
                            row.count += 1
                            repeat = EventInfo(
                                seen[0], kind, row.severity, tenant_id, source_ip, subject,
                                device_id, row.count, detail or {},
                            )  # fmt: skip
                if repeat is None:
                    with self.db.session() as s:
                        row = SecurityEvent(
                            kind=kind,
                            severity=severity,
                            tenant_id=tenant_id,
                            source_ip=source_ip,
                            subject=subject,
                            device_id=device_id,
                            detail=detail or {},
                            count=1,
                        )
                        s.add(row)
                        s.flush()
                        event_id = int(row.id)
                    self._recent[key] = (event_id, now)
                    if len(self._recent) > 10_000:
                        self._recent = {
                            k: v for k, v in self._recent.items() if now - v[1] < self.fold_s
                        }
        except Exception:
            log.exception("security event %s could not be stored", kind)
            return 0
        if repeat is not None:
            self._notify(self._repeat_listeners, repeat)
            return repeat.id
        log.warning(
            "security event %s (%s): tenant=%s source=%s subject=%s %s",
            kind,
            severity,
            tenant_id,
            source_ip,
            subject,
            detail or "",
        )
        info = EventInfo(
            event_id, kind, severity, tenant_id, source_ip, subject, device_id, 1, detail or {}
        )
        self._notify(self._listeners, info)
        return event_id

    @staticmethod
    def _notify(listeners: list[Listener], info: EventInfo) -> None:
        for listener in listeners:
            try:
                listener(info)
            except Exception:
                log.exception("security event listener failed")


__all__ = ["EventInfo", "SecurityEvents", "Severity"]
