"""Devices: instances of a product, optionally placed on an asset and behind a gateway.

Access tokens are stored as SHA-256 hex only; the plain token is returned once, at creation
and on rotation. Every property of the product gets a series when the device is created.

Besides its token a device may have MQTT username/password credentials (the password kept
as an argon2 hash; usernames are unique platform-wide) and an X.509 client certificate,
kept as the SHA-256 fingerprint of its DER encoding and its expiry. A certificate must be
current and, when a platform CA is configured, issued by it.
"""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding
from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from yugong.core.errors import Conflict, FieldError, InvalidInput, NotFound
from yugong.infra.db import Database
from yugong.security.passwords import Passwords
from yugong.security.principal import Principal

from .. import quotas_profiles as quotas
from ._common import (
    UNSET,
    Notify,
    check_paging,
    clean_attributes,
    clean_name,
    get_scoped,
    invalid,
    scope,
    unique_violation,
)
from .models import Asset, Device, Product, Series
from .products import add_series, property_ids
from .records import ChangeEvent, DeviceCredentials, DeviceRecord, Listing, SeriesRecord

TOKEN_BYTES = 24  # 32 URL-safe characters
MQTT_PASSWORD_MIN = 8
MQTT_PASSWORD_MAX = 256  # bounds the argon2 work one connect can cause
_USERNAME = re.compile(r"[A-Za-z0-9._@:-]{1,128}")
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class CredentialInfo:
    """Which credentials a device has; never a secret."""

    device_id: int
    token: bool
    mqtt_username: str | None
    cert_fingerprint: str | None
    cert_not_after: datetime | None

    @property
    def kinds(self) -> list[str]:
        found = ["token"] if self.token else []
        if self.mqtt_username is not None:
            found.append("mqtt")
        if self.cert_fingerprint is not None:
            found.append("x509")
        return found


def cert_fingerprint(der: bytes) -> str:
    """SHA-256 of a certificate's DER encoding, lower hex: how devices are found by it."""
    return hashlib.sha256(der).hexdigest()


def _credential_info(d: Device) -> CredentialInfo:
    return CredentialInfo(
        d.id, bool(d.token_hash), d.mqtt_username, d.cert_fingerprint, d.cert_not_after
    )


def parse_certificate(
    pem: str, ca_file: Path | None, now: datetime | None = None
) -> x509.Certificate:
    """The certificate in ``pem``, if it is current and (with ``ca_file``) issued by that CA;
    else :class:`InvalidInput` saying which."""
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError as exc:
        raise InvalidInput(
            f"certificate is not a PEM X.509 certificate: {exc}",
            [FieldError("certificate", "not a PEM X.509 certificate")],
        ) from exc
    now = now or datetime.now(UTC)
    if cert.not_valid_after_utc <= now:
        raise InvalidInput(
            f"certificate expired at {cert.not_valid_after_utc.isoformat()}",
            [FieldError("certificate", "expired")],
        )
    if cert.not_valid_before_utc > now:
        raise InvalidInput(
            f"certificate is not valid before {cert.not_valid_before_utc.isoformat()}",
            [FieldError("certificate", "not yet valid")],
        )
    if ca_file is not None:
        ca = x509.load_pem_x509_certificate(Path(ca_file).read_bytes())
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise InvalidInput(
                f"certificate is not issued by the platform CA ({ca.subject.rfc4514_string()})",
                [FieldError("certificate", "not issued by the platform CA")],
            ) from exc
    return cert


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh access token and its hash."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def _record(d: Device) -> DeviceRecord:
    return DeviceRecord(
        d.id,
        d.tenant_id,
        d.product_id,
        d.asset_id,
        d.gateway_id,
        d.is_gateway,
        d.name,
        d.label,
        d.online,
        d.last_seen_at,
        dict(d.attributes or {}),
        d.created_at,
    )


def _label(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 255:
        raise invalid("label", "must be a string of at most 255 characters")
    return value.strip()


class DeviceService:
    def __init__(
        self,
        db: Database,
        notify: Notify,
        *,
        passwords: Passwords | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self._db = db
        self._notify = notify
        self._passwords = passwords
        # The CA device certificates must be issued by (the platform's): None accepts any.
        self.ca_file = ca_file

    @property
    def passwords(self) -> Passwords:
        if self._passwords is None:  # argon2 with its defaults, made on first use
            self._passwords = Passwords()
        return self._passwords

    @passwords.setter
    def passwords(self, value: Passwords) -> None:
        self._passwords = value

    @staticmethod
    def _get(s: Session, p: Principal, device_id: int, tenant_id: int | None) -> Device:
        return get_scoped(s, Device, p, device_id, tenant_id, "device")

    # References to other objects must be in the same tenant; a miss reads as "not found"
    # whether the id exists elsewhere or not.

    @staticmethod
    def _product(s: Session, tenant: int, product_id: int) -> Product:
        pr = s.get(Product, product_id)
        if pr is None or pr.tenant_id != tenant:
            raise invalid("product_id", f"product {product_id} not found")
        return pr

    @staticmethod
    def _asset(s: Session, tenant: int, asset_id: int | None) -> int | None:
        if asset_id is None:
            return None
        a = s.get(Asset, asset_id)
        if a is None or a.tenant_id != tenant:
            raise invalid("asset_id", f"asset {asset_id} not found")
        return a.id

    @staticmethod
    def _gateway(
        s: Session, tenant: int, gateway_id: int | None, self_id: int | None
    ) -> int | None:
        if gateway_id is None:
            return None
        if gateway_id == self_id:
            raise invalid("gateway_id", "a device cannot be its own gateway")
        g = s.get(Device, gateway_id)
        if g is None or g.tenant_id != tenant:
            raise invalid("gateway_id", f"device {gateway_id} not found")
        if not g.is_gateway:
            raise invalid("gateway_id", f"device {g.name!r} is not a gateway")
        return g.id

    @staticmethod
    def _check_name(s: Session, tenant: int, name: str, exclude: int | None = None) -> None:
        q = select(Device.id).where(Device.tenant_id == tenant, Device.name == name)
        if exclude is not None:
            q = q.where(Device.id != exclude)
        if s.scalar(q) is not None:
            raise Conflict(
                f"a device named {name!r} already exists", [FieldError("name", "already exists")]
            )

    def create(
        self,
        p: Principal,
        *,
        name: str,
        product_id: int,
        label: str | None = None,
        asset_id: int | None = None,
        gateway_id: int | None = None,
        is_gateway: bool | None = None,
        attributes: Mapping[str, Any] | None = None,
        tenant_id: int | None = None,
    ) -> DeviceCredentials:
        """Create a device with a series per product property. ``is_gateway`` defaults to
        the product's flag. The returned token is never shown again."""
        p.require("devices:write")
        tenant = p.tenant_for(tenant_id)
        name = clean_name(name, "name")
        token, token_hash = new_token()
        with self._db.session() as s:
            pr = self._product(s, tenant, product_id)
            d = Device(
                tenant_id=tenant,
                product_id=pr.id,
                name=name,
                label=_label(label),
                asset_id=self._asset(s, tenant, asset_id),
                gateway_id=self._gateway(s, tenant, gateway_id, None),
                is_gateway=pr.is_gateway if is_gateway is None else bool(is_gateway),
                token_hash=token_hash,
                online=False,
                attributes=clean_attributes(attributes),
            )
            self._check_name(s, tenant, name)
            quotas.check_can_add(s, tenant, "devices")  # the tenant profile's max_devices
            with unique_violation(f"a device named {name!r} already exists", "name"):
                s.add(d)
                s.flush()
            add_series(s, tenant, [d.id], property_ids(pr.tsl))
            rec = _record(d)
        self._notify(ChangeEvent("device", "created", tenant, rec.id, devices=(rec.id,)))
        return DeviceCredentials(rec, token)

    def get(self, p: Principal, device_id: int, *, tenant_id: int | None = None) -> DeviceRecord:
        p.require("devices:read")
        with self._db.session() as s:
            return _record(self._get(s, p, device_id, tenant_id))

    def get_by_name(self, p: Principal, name: str, *, tenant_id: int | None = None) -> DeviceRecord:
        p.require("devices:read")
        tenant = p.tenant_for(tenant_id)
        with self._db.session() as s:
            d = s.scalar(select(Device).where(Device.tenant_id == tenant, Device.name == name))
            if d is None:
                raise NotFound(f"device {name!r} not found")
            return _record(d)

    def list(
        self,
        p: Principal,
        *,
        tenant_id: int | None = None,
        product_id: int | None = None,
        asset_id: int | None = None,
        gateway_id: int | None = None,
        online: bool | None = None,
        search: str | None = None,
        limit: int = 100,
        offset: int = 0,
        asset_ids: Sequence[int] | None = None,
        is_gateway: bool | None = None,
    ) -> Listing[DeviceRecord]:
        """Devices of a tenant, filtered; ``search`` matches name or label (any case);
        ``asset_ids``: devices on any of these assets (e.g. a subtree)."""
        p.require("devices:read")
        check_paging(limit, offset)
        q = select(Device).where(Device.tenant_id == p.tenant_for(tenant_id))
        if product_id is not None:
            q = q.where(Device.product_id == product_id)
        if asset_id is not None:
            q = q.where(Device.asset_id == asset_id)
        if asset_ids is not None:
            q = q.where(Device.asset_id.in_(list(asset_ids)))
        if is_gateway is not None:
            q = q.where(Device.is_gateway == is_gateway)
        if gateway_id is not None:
            q = q.where(Device.gateway_id == gateway_id)
        if online is not None:
            q = q.where(Device.online == online)
        if search:
            q = q.where(
                or_(
                    Device.name.icontains(search, autoescape=True),
                    Device.label.icontains(search, autoescape=True),
                )
            )
        with self._db.session() as s:
            total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
            rows = s.scalars(q.order_by(Device.id).limit(limit).offset(offset)).all()
            return Listing([_record(d) for d in rows], total, limit, offset)

    def update(
        self,
        p: Principal,
        device_id: int,
        *,
        name: str = UNSET,
        label: str | None = UNSET,
        product_id: int = UNSET,
        asset_id: int | None = UNSET,
        gateway_id: int | None = UNSET,
        is_gateway: bool = UNSET,
        attributes: Mapping[str, Any] = UNSET,
        tenant_id: int | None = None,
    ) -> DeviceRecord:
        """Change a device. A new product adds series for its properties; old series stay."""
        p.require("devices:write")
        with self._db.session() as s:
            d = self._get(s, p, device_id, tenant_id)
            with s.no_autoflush:  # check the new values before the database sees them
                if name is not UNSET:
                    d.name = clean_name(name, "name")
                    self._check_name(s, d.tenant_id, d.name, exclude=d.id)
                if label is not UNSET:
                    d.label = _label(label)
                new_props: list[str] = []
                if product_id is not UNSET and product_id != d.product_id:
                    pr = self._product(s, d.tenant_id, product_id)
                    d.product_id = pr.id
                    new_props = property_ids(pr.tsl)
                if asset_id is not UNSET:
                    d.asset_id = self._asset(s, d.tenant_id, asset_id)
                if gateway_id is not UNSET:
                    d.gateway_id = self._gateway(s, d.tenant_id, gateway_id, d.id)
                if is_gateway is not UNSET:
                    if not is_gateway and d.is_gateway:
                        behind = s.scalar(select(func.count()).where(Device.gateway_id == d.id))
                        if behind:
                            raise Conflict(
                                f"{behind} device(s) are connected through this "
                                "gateway; move them first",
                                [FieldError("is_gateway", "gateway in use")],
                            )
                    d.is_gateway = bool(is_gateway)
                if attributes is not UNSET:
                    d.attributes = clean_attributes(attributes)
            with unique_violation(f"a device named {d.name!r} already exists", "name"):
                s.flush()
            add_series(s, d.tenant_id, [d.id], new_props)
            rec = _record(d)
        self._notify(ChangeEvent("device", "updated", rec.tenant_id, rec.id, devices=(rec.id,)))
        return rec

    def merge_attributes(
        self,
        p: Principal,
        device_id: int,
        values: Mapping[str, Any],
        *,
        tenant_id: int | None = None,
    ) -> dict[str, Any]:
        """Merge client-side attributes reported by a device; returns the whole set."""
        p.require("devices:write")
        return self._merge(scope(p, tenant_id), device_id, values)

    def store_client_attributes(
        self, tenant: int, device_id: int, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Merge attributes an authenticated device reported about itself (ingest path: the
        device's own credentials already decided who it is)."""
        return self._merge(tenant, device_id, values)

    def _merge(
        self, tenant: int | None, device_id: int, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        extra = clean_attributes(values, "values")
        with self._db.session() as s:
            d = s.get(Device, device_id)
            if d is None or (tenant is not None and d.tenant_id != tenant):
                raise NotFound(f"device {device_id} not found")
            merged = {**(d.attributes or {}), **extra}
            d.attributes = merged
        return merged

    def rotate_token(self, p: Principal, device_id: int, *, tenant_id: int | None = None) -> str:
        """Replace the access token: the old one stops working at once."""
        p.require("devices:credentials")
        token, token_hash = new_token()
        with self._db.session() as s:
            d = self._get(s, p, device_id, tenant_id)
            d.token_hash = token_hash
            tenant = d.tenant_id
        self._notify(ChangeEvent("device", "updated", tenant, device_id, devices=(device_id,)))
        return token

    # Credentials -----------------------------------------------------------------------

    def credentials(
        self, p: Principal, device_id: int, *, tenant_id: int | None = None
    ) -> CredentialInfo:
        p.require("devices:credentials")
        with self._db.session() as s:
            return _credential_info(self._get(s, p, device_id, tenant_id))

    def set_mqtt_credentials(
        self,
        p: Principal,
        device_id: int,
        *,
        username: str,
        password: str,
        tenant_id: int | None = None,
    ) -> CredentialInfo:
        """Set (or replace) the device's MQTT username and password."""
        p.require("devices:credentials")
        if not isinstance(username, str) or not _USERNAME.fullmatch(username):
            raise InvalidInput(
                "username must be 1 to 128 characters of letters, digits and . _ @ : -",
                [FieldError("username", "1 to 128 of letters, digits and . _ @ : -")],
            )
        if not isinstance(password, str) or not (
            MQTT_PASSWORD_MIN <= len(password) <= MQTT_PASSWORD_MAX
        ):
            raise InvalidInput(
                f"password must be {MQTT_PASSWORD_MIN} to {MQTT_PASSWORD_MAX} characters long",
                [FieldError("password", f"{MQTT_PASSWORD_MIN} to {MQTT_PASSWORD_MAX} characters")],
            )
        password_hash = self.passwords.hash(password)  # before the transaction: it is slow
        taken = f"the MQTT username {username!r} is already used by another device"
        with self._db.session() as s:
            d = self._get(s, p, device_id, tenant_id)
            other = s.scalar(
                select(Device.id).where(Device.mqtt_username == username, Device.id != d.id)
            )
            if other is not None:
                raise Conflict(taken, [FieldError("username", "already used")])
            d.mqtt_username = username
            d.mqtt_password_hash = password_hash
            with unique_violation(taken, "username"):
                s.flush()
            info = _credential_info(d)
            tenant = d.tenant_id
        self._notify(ChangeEvent("device", "updated", tenant, device_id, devices=(device_id,)))
        return info

    def delete_mqtt_credentials(
        self, p: Principal, device_id: int, *, tenant_id: int | None = None
    ) -> CredentialInfo:
        p.require("devices:credentials")
        with self._db.session() as s:
            d = self._get(s, p, device_id, tenant_id)
            d.mqtt_username = None
            d.mqtt_password_hash = None
            info = _credential_info(d)
            tenant = d.tenant_id
        self._notify(ChangeEvent("device", "updated", tenant, device_id, devices=(device_id,)))
        return info

    def set_certificate(
        self,
        p: Principal,
        device_id: int,
        *,
        fingerprint: str | None = None,
        certificate: str | None = None,
        tenant_id: int | None = None,
    ) -> CredentialInfo:
        """Bind a client certificate: its PEM (checked: current, issued by the platform CA)
        or only its SHA-256 fingerprint (the TLS handshake checks the rest)."""
        p.require("devices:credentials")
        if (fingerprint is None) == (certificate is None):
            raise InvalidInput(
                "give either the certificate (PEM) or its SHA-256 fingerprint",
                [FieldError("certificate", "one of certificate, fingerprint is required")],
            )
        not_after: datetime | None = None
        if certificate is not None:
            cert = parse_certificate(certificate, self.ca_file)
            fp = cert_fingerprint(cert.public_bytes(Encoding.DER))
            not_after = cert.not_valid_after_utc
        else:
            fp = str(fingerprint).replace(":", "").strip().lower()
            if not _FINGERPRINT.fullmatch(fp):
                raise InvalidInput(
                    "fingerprint must be the SHA-256 of the certificate's DER: 64 hex digits",
                    [FieldError("fingerprint", "64 hex digits (SHA-256)")],
                )
        taken = "this certificate is already bound to another device"
        with self._db.session() as s:
            d = self._get(s, p, device_id, tenant_id)
            other = s.scalar(
                select(Device.id).where(Device.cert_fingerprint == fp, Device.id != d.id)
            )
            if other is not None:
                raise Conflict(taken, [FieldError("certificate", "already used")])
            d.cert_fingerprint = fp
            d.cert_not_after = not_after
            with unique_violation(taken, "certificate"):
                s.flush()
            info = _credential_info(d)
            tenant = d.tenant_id
        self._notify(ChangeEvent("device", "updated", tenant, device_id, devices=(device_id,)))
        return info

    def delete_certificate(
        self, p: Principal, device_id: int, *, tenant_id: int | None = None
    ) -> CredentialInfo:
        p.require("devices:credentials")
        with self._db.session() as s:
            d = self._get(s, p, device_id, tenant_id)
            d.cert_fingerprint = None
            d.cert_not_after = None
            info = _credential_info(d)
            tenant = d.tenant_id
        self._notify(ChangeEvent("device", "updated", tenant, device_id, devices=(device_id,)))
        return info

    def series(
        self, p: Principal, device_id: int, *, tenant_id: int | None = None
    ) -> builtins.list[SeriesRecord]:
        p.require("devices:read")
        with self._db.session() as s:
            d = self._get(s, p, device_id, tenant_id)
            rows = s.execute(
                select(Series.id, Series.property)
                .where(Series.device_id == d.id)
                .order_by(Series.id)
            ).all()
            return [SeriesRecord(r.id, d.id, r.property) for r in rows]

    def delete(
        self, p: Principal, device_id: int, *, tenant_id: int | None = None
    ) -> builtins.list[int]:
        """Delete a device and its series; returns the series ids (the caller deletes their
        samples from the time-series store). Devices behind a deleted gateway stay, with no
        gateway."""
        p.require("devices:write")
        with self._db.session() as s:
            d = self._get(s, p, device_id, tenant_id)
            series = list(s.scalars(select(Series.id).where(Series.device_id == d.id)))
            s.execute(delete(Series).where(Series.device_id == d.id))
            behind = list(s.scalars(select(Device.id).where(Device.gateway_id == d.id)))
            for child in s.scalars(select(Device).where(Device.gateway_id == d.id)):
                child.gateway_id = None
            tenant = d.tenant_id
            s.delete(d)
        self._notify(
            ChangeEvent(
                "device",
                "deleted",
                tenant,
                device_id,
                devices=(device_id, *behind),
                series=tuple(series),
            )
        )
        return series
