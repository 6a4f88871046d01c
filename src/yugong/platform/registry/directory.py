"""The registry's :class:`~yugong.platform.registry.bindings.DeviceDirectory`: cached device
bindings for the ingest hot path, and last-seen bookkeeping kept in memory between flushes.

Devices of an inactive tenant do not resolve. Unknown tokens (and MQTT usernames and
certificate fingerprints) are remembered (bounded) so a client retrying a wrong one does not
reach the database on every attempt; any invalidation forgets them, so a device created a
moment later is found.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import case, literal, select, update

from yugong.core import tsl
from yugong.core.timeutil import us_to_datetime
from yugong.infra.db import Database, UTCDateTime, utcnow

from .bindings import DeviceBinding, PropertyBinding, ValueKind
from .devices import hash_token
from .models import Device, Product, Series, Tenant

_KIND: dict[str, ValueKind] = {
    "int": "integer",
    "float": "number",
    "double": "number",
    "bool": "bool",
    "enum": "enum",
    "date": "date",
    "text": "text",
    "struct": "json",
    "array": "json",
}
_MISS_LIMIT = 10_000
_FLUSH_CHUNK = 500


def property_bindings(
    model: tsl.ThingModel, series_ids: Mapping[str, int]
) -> dict[str, PropertyBinding]:
    """Bindings of the model's properties that have a series (identifier -> binding)."""
    out: dict[str, PropertyBinding] = {}
    for p in model.properties:
        series = series_ids.get(p.identifier)
        if series is None:
            continue
        dt = p.data_type
        out[p.identifier] = PropertyBinding(
            identifier=p.identifier,
            series=series,
            kind=_KIND[dt.type],
            tsl_type=dt.type,
            min=dt.min,
            max=dt.max,
            enum_values=frozenset(dt.enum) if dt.type == "enum" and dt.enum else None,
            max_length=dt.length,
            unit=dt.unit,
            writable=p.writable,
        )
    return out


@dataclass(frozen=True)
class _Keys:
    """The index keys one cached device is filed under."""

    token_hash: str
    name: tuple[int, str]
    username: str | None
    fingerprint: str | None


class RegistryDirectory:
    """Thread-safe cache of :class:`DeviceBinding` by id, token hash and (tenant, name)."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._lock = threading.Lock()
        self._by_id: dict[int, DeviceBinding] = {}
        self._by_token: dict[str, int] = {}
        self._by_name: dict[tuple[int, str], int] = {}
        self._by_username: dict[str, int] = {}
        self._by_fingerprint: dict[str, int] = {}
        self._keys: dict[int, _Keys] = {}  # device -> its index keys
        self._missed_tokens: set[str] = set()  # also "u:<username>" and "f:<fingerprint>"
        self._models: dict[tuple[int, int], tsl.ThingModel] = {}  # (product, version)
        self._generation = 0
        self._seen: dict[int, int] = {}  # device -> last seen (epoch µs), not yet flushed

    # Lookups ------------------------------------------------------------------------------

    def by_token(self, token: str) -> DeviceBinding | None:
        digest = hash_token(token)
        with self._lock:
            device = self._by_token.get(digest)
            if device is not None:
                return self._by_id.get(device)
            if digest in self._missed_tokens:
                return None
        binding = self._load(Device.token_hash == digest, miss_token=digest)
        return binding

    def by_username(self, username: str) -> DeviceBinding | None:
        """The device with this MQTT username (usernames are unique platform-wide)."""
        return self._lookup(self._by_username, username, "u:", Device.mqtt_username == username)

    def by_fingerprint(self, fingerprint: str) -> DeviceBinding | None:
        """The device whose client certificate has this SHA-256 fingerprint (lower hex)."""
        fingerprint = fingerprint.lower()
        return self._lookup(
            self._by_fingerprint, fingerprint, "f:", Device.cert_fingerprint == fingerprint
        )

    def _lookup(
        self, index: dict[str, int], key: str, miss_prefix: str, where: Any
    ) -> DeviceBinding | None:
        with self._lock:
            device = index.get(key)
            if device is not None:
                return self._by_id.get(device)
            if miss_prefix + key in self._missed_tokens:
                return None
        return self._load(where, miss_token=miss_prefix + key)

    def by_id(self, device: int) -> DeviceBinding | None:
        with self._lock:
            binding = self._by_id.get(device)
        return binding if binding is not None else self._load(Device.id == device)

    def by_name(self, tenant: int, name: str) -> DeviceBinding | None:
        with self._lock:
            device = self._by_name.get((tenant, name))
            if device is not None:
                return self._by_id.get(device)
        return self._load((Device.tenant_id == tenant) & (Device.name == name))

    def invalidate(self, device: int | None = None) -> None:
        with self._lock:
            self._generation += 1
            self._missed_tokens.clear()
            if device is None:
                self._by_id.clear()
                self._by_token.clear()
                self._by_name.clear()
                self._by_username.clear()
                self._by_fingerprint.clear()
                self._keys.clear()
                return
            self._by_id.pop(device, None)
            keys = self._keys.pop(device, None)
            if keys is not None:
                self._by_token.pop(keys.token_hash, None)
                self._by_name.pop(keys.name, None)
                if keys.username is not None:
                    self._by_username.pop(keys.username, None)
                if keys.fingerprint is not None:
                    self._by_fingerprint.pop(keys.fingerprint, None)

    def _model(self, product: int, version: int, document: dict[str, Any]) -> tsl.ThingModel:
        key = (product, version)
        model = self._models.get(key)
        if model is None:
            model = tsl.parse(document)
            with self._lock:
                self._models = {k: v for k, v in self._models.items() if k[0] != product}
                self._models[key] = model
        return model

    def _load(self, where: Any, miss_token: str | None = None) -> DeviceBinding | None:
        with self._lock:
            generation = self._generation
        with self._db.session() as s:
            row = s.execute(
                select(
                    Device.id,
                    Device.tenant_id,
                    Device.name,
                    Device.product_id,
                    Device.gateway_id,
                    Device.is_gateway,
                    Device.token_hash,
                    Device.mqtt_username,
                    Device.mqtt_password_hash,
                    Device.cert_fingerprint,
                    Device.cert_not_after,
                    Product.version,
                    Product.tsl,
                )
                .join(Product, Product.id == Device.product_id)
                .join(Tenant, Tenant.id == Device.tenant_id)
                .where(where, Tenant.active.is_(True))
            ).first()
            series: dict[str, int] = {}
            if row is not None:
                for r in s.execute(
                    select(Series.property, Series.id).where(Series.device_id == row.id)
                ):
                    series[r.property] = r.id
        if row is None:
            if miss_token is not None:
                with self._lock:
                    if generation == self._generation:
                        if len(self._missed_tokens) >= _MISS_LIMIT:
                            self._missed_tokens.clear()
                        self._missed_tokens.add(miss_token)
            return None
        model = self._model(row.product_id, row.version, row.tsl)
        binding = DeviceBinding(
            tenant=row.tenant_id,
            device=row.id,
            name=row.name,
            product=row.product_id,
            gateway=row.gateway_id,
            properties=property_bindings(model, series),
            is_gateway=bool(row.is_gateway),
            mqtt_username=row.mqtt_username,
            mqtt_password_hash=row.mqtt_password_hash,
            cert_not_after=row.cert_not_after,
        )
        keys = _Keys(
            row.token_hash, (row.tenant_id, row.name), row.mqtt_username, row.cert_fingerprint
        )
        with self._lock:
            # Cache only if nothing was invalidated while we read: otherwise it may be stale.
            if generation == self._generation:
                old = self._keys.get(row.id)
                if old is not None and old != keys:
                    self._by_token.pop(old.token_hash, None)
                    self._by_name.pop(old.name, None)
                    if old.username is not None:
                        self._by_username.pop(old.username, None)
                    if old.fingerprint is not None:
                        self._by_fingerprint.pop(old.fingerprint, None)
                self._by_id[row.id] = binding
                self._by_token[row.token_hash] = row.id
                self._by_name[keys.name] = row.id
                if keys.username is not None:
                    self._by_username[keys.username] = row.id
                if keys.fingerprint is not None:
                    self._by_fingerprint[keys.fingerprint] = row.id
                self._keys[row.id] = keys
        return binding

    # Last seen ----------------------------------------------------------------------------

    def touch(self, devices: Sequence[int], seen_us: int) -> None:
        with self._lock:
            seen = self._seen
            for d in devices:
                if seen.get(d, -1) < seen_us:
                    seen[d] = seen_us

    def flush_seen(self) -> int:
        """Persist last-seen times (and online) of devices touched since the last flush, in
        one UPDATE (per 500 devices). Returns how many devices were written."""
        with self._lock:
            pending, self._seen = self._seen, {}
        if not pending:
            return 0
        items = sorted(pending.items())
        try:
            with self._db.session() as s:
                for i in range(0, len(items), _FLUSH_CHUNK):
                    chunk = items[i : i + _FLUSH_CHUNK]
                    when = case(
                        {d: literal(us_to_datetime(us), UTCDateTime()) for d, us in chunk},
                        value=Device.id,
                    )
                    s.execute(
                        update(Device)
                        .where(Device.id.in_([d for d, _ in chunk]))
                        .values(last_seen_at=when, online=True)
                        .execution_options(synchronize_session=False)
                    )
        except BaseException:
            # Keep what we could not write (newer touches win) for the next flush.
            with self._lock:
                for d, us in pending.items():
                    if self._seen.get(d, -1) < us:
                        self._seen[d] = us
            raise
        return len(items)

    def mark_offline_after(self, seconds: float) -> list[int]:
        """Set devices not seen for ``seconds`` offline; returns their ids."""
        self.flush_seen()
        cutoff = utcnow() - timedelta(seconds=seconds)
        with self._db.session() as s:
            stale = (Device.online.is_(True)) & (
                Device.last_seen_at.is_(None) | (Device.last_seen_at < cutoff)
            )
            ids = list(s.scalars(select(Device.id).where(stale)))
            if ids:
                s.execute(
                    update(Device)
                    .where(Device.id.in_(ids), stale)
                    .values(online=False)
                    .execution_options(synchronize_session=False)
                )
        return ids
