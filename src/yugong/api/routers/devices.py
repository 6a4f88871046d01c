"""Devices: CRUD, credentials (access token shown once, MQTT username/password, client
certificate), and the series of each property."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from yugong.api.deps import Limit, Offset, PrincipalDep, RegistryDep, TenantQuery
from yugong.core.errors import FieldError, InvalidInput
from yugong.platform.registry.devices import CredentialInfo
from yugong.platform.registry.service import Registry
from yugong.security.principal import Principal

router = APIRouter(prefix="/devices", tags=["devices"])


class DeviceOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    tenant_id: int
    product_id: int
    asset_id: int | None
    gateway_id: int | None
    is_gateway: bool
    name: str
    label: str
    online: bool
    last_seen_at: datetime | None
    attributes: dict[str, Any] = Field(description="Client-side attributes from the device.")
    created_at: datetime


class DeviceWithToken(DeviceOut):
    token: str = Field(description="The access token. Shown this once; store it now.")


class DevicePage(BaseModel):
    items: list[DeviceOut]
    total: int
    limit: int
    offset: int


class DeviceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128, description="Unique in the tenant.")
    product_id: int
    label: str = Field("", max_length=255)
    asset_id: int | None = None
    gateway_id: int | None = Field(None, description="The gateway this device talks through.")
    is_gateway: bool | None = Field(None, description="Default: the product's flag.")
    attributes: dict[str, Any] = Field(default_factory=dict)
    tenant_id: int | None = Field(None, description="Platform admins only: the tenant.")


class DeviceUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=128)
    label: str | None = Field(None, max_length=255)
    product_id: int | None = Field(None)
    asset_id: int | None = None
    gateway_id: int | None = None
    is_gateway: bool | None = Field(None)
    attributes: dict[str, Any] | None = Field(None)

    @field_validator("name", "product_id", "is_gateway", "attributes", mode="before")
    @classmethod
    def _not_null(cls, v: Any) -> Any:
        # Omit a field to leave it unchanged; null is only meaningful where allowed.
        if v is None:
            raise ValueError("may not be null")
        return v


class TokenOut(BaseModel):
    token: str = Field(description="The new access token; the old one no longer works.")


class CredentialsOut(BaseModel):
    """Which credentials the device has. Secrets are never shown."""

    device_id: int
    kinds: list[str] = Field(description="Set kinds, of: token, mqtt, x509.")
    mqtt_username: str | None
    cert_fingerprint: str | None = Field(description="SHA-256 of the certificate's DER, hex.")
    cert_not_after: datetime | None

    @classmethod
    def of(cls, info: CredentialInfo) -> CredentialsOut:
        return cls(
            device_id=info.device_id,
            kinds=info.kinds,
            mqtt_username=info.mqtt_username,
            cert_fingerprint=info.cert_fingerprint,
            cert_not_after=info.cert_not_after,
        )


class MqttCredentialsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(
        min_length=1, max_length=128, description="Unique on the platform; the MQTT username."
    )
    password: str = Field(
        min_length=8, max_length=256, description="Stored as an argon2 hash only."
    )


class CertificateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    certificate: str | None = Field(
        None,
        max_length=65_536,
        description="The client certificate (PEM): must be current and issued by the platform CA.",
    )
    fingerprint: str | None = Field(
        None,
        min_length=64,
        max_length=95,
        description="Or only the SHA-256 fingerprint of its DER (hex, colons allowed).",
    )

    @model_validator(mode="after")
    def _one(self) -> CertificateIn:
        if (self.certificate is None) == (self.fingerprint is None):
            raise ValueError("give either certificate or fingerprint")
        return self


_Body = TypeVar("_Body", MqttCredentialsIn, CertificateIn)


class SeriesOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    property: str


@router.get("", summary="List devices")
def list_devices(
    principal: PrincipalDep,
    registry: RegistryDep,
    product_id: int | None = None,
    asset_id: int | None = None,
    gateway_id: int | None = None,
    online: bool | None = None,
    search: Annotated[str | None, Query(max_length=128, description="In name or label.")] = None,
    tenant_id: TenantQuery = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> DevicePage:
    page = registry.devices.list(
        principal,
        tenant_id=tenant_id,
        product_id=product_id,
        asset_id=asset_id,
        gateway_id=gateway_id,
        online=online,
        search=search,
        limit=limit,
        offset=offset,
    )
    return DevicePage(
        items=[DeviceOut.model_validate(d) for d in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a device (the answer carries its access token, once)",
)
def create_device(
    body: DeviceCreate, principal: PrincipalDep, registry: RegistryDep
) -> DeviceWithToken:
    created = registry.devices.create(principal, **body.model_dump())
    out = DeviceOut.model_validate(created.device)
    return DeviceWithToken(**out.model_dump(), token=created.token)


@router.get("/{device_id}", summary="Get a device")
def get_device(
    device_id: int,
    principal: PrincipalDep,
    registry: RegistryDep,
    tenant_id: TenantQuery = None,
) -> DeviceOut:
    return DeviceOut.model_validate(registry.devices.get(principal, device_id, tenant_id=tenant_id))


@router.patch("/{device_id}", summary="Change a device")
def update_device(
    device_id: int,
    body: DeviceUpdate,
    principal: PrincipalDep,
    registry: RegistryDep,
    tenant_id: TenantQuery = None,
) -> DeviceOut:
    changes = body.model_dump(exclude_unset=True)
    return DeviceOut.model_validate(
        registry.devices.update(principal, device_id, tenant_id=tenant_id, **changes)
    )


@router.post("/{device_id}/token", summary="Issue a new access token (shown once)")
def rotate_token(
    device_id: int,
    principal: PrincipalDep,
    registry: RegistryDep,
    tenant_id: TenantQuery = None,
) -> TokenOut:
    return TokenOut(token=registry.devices.rotate_token(principal, device_id, tenant_id=tenant_id))


@dataclass(frozen=True, slots=True)
class _CredentialCall:
    """The device a credential endpoint acts on, and who asks: the path's device, the caller,
    the registry and the ``tenant_id`` query parameter."""

    device_id: int
    principal: Principal
    registry: Registry
    tenant_id: int | None

    def answer(self, action: Callable[..., CredentialInfo], **values: Any) -> CredentialsOut:
        """Run a registry credential method on the device; its credentials after it."""
        info = action(self.principal, self.device_id, tenant_id=self.tenant_id, **values)
        return CredentialsOut.of(info)

    def required(self, body: _Body | None) -> _Body:
        """A missing body is an error, named only once the caller may see the device: another
        tenant's device is "not found", whatever was sent."""
        if body is None:
            self.registry.devices.credentials(
                self.principal, self.device_id, tenant_id=self.tenant_id
            )
            raise InvalidInput("a JSON body is required", [FieldError("body", "required")])
        return body


def _credential_call(
    device_id: int,
    principal: PrincipalDep,
    registry: RegistryDep,
    tenant_id: TenantQuery = None,
) -> _CredentialCall:
    return _CredentialCall(device_id, principal, registry, tenant_id)


CredentialCall = Annotated[_CredentialCall, Depends(_credential_call)]


@router.get("/{device_id}/credentials", summary="Which credentials the device has")
def get_credentials(call: CredentialCall) -> CredentialsOut:
    return call.answer(call.registry.devices.credentials)


@router.put("/{device_id}/credentials/mqtt", summary="Set the MQTT username and password")
def put_mqtt_credentials(
    call: CredentialCall, body: MqttCredentialsIn | None = None
) -> CredentialsOut:
    body = call.required(body)
    return call.answer(
        call.registry.devices.set_mqtt_credentials, username=body.username, password=body.password
    )


@router.delete("/{device_id}/credentials/mqtt", summary="Remove the MQTT username and password")
def delete_mqtt_credentials(call: CredentialCall) -> CredentialsOut:
    return call.answer(call.registry.devices.delete_mqtt_credentials)


@router.put("/{device_id}/credentials/x509", summary="Bind a client certificate")
def put_certificate(call: CredentialCall, body: CertificateIn | None = None) -> CredentialsOut:
    body = call.required(body)
    return call.answer(
        call.registry.devices.set_certificate,
        certificate=body.certificate,
        fingerprint=body.fingerprint,
    )


@router.delete("/{device_id}/credentials/x509", summary="Remove the client certificate")
def delete_certificate(call: CredentialCall) -> CredentialsOut:
    return call.answer(call.registry.devices.delete_certificate)


@router.get("/{device_id}/series", summary="Series id of each property")
def device_series(
    device_id: int,
    principal: PrincipalDep,
    registry: RegistryDep,
    tenant_id: TenantQuery = None,
) -> list[SeriesOut]:
    rows = registry.devices.series(principal, device_id, tenant_id=tenant_id)
    return [SeriesOut.model_validate(r) for r in rows]


@router.delete(
    "/{device_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a device and its telemetry",
)
def delete_device(
    device_id: int,
    request: Request,
    principal: PrincipalDep,
    registry: RegistryDep,
    tenant_id: TenantQuery = None,
) -> None:
    device = registry.devices.get(principal, device_id, tenant_id=tenant_id)
    series = registry.devices.delete(principal, device_id, tenant_id=tenant_id)
    store = getattr(request.app.state, "store", None)
    if store is not None and series:
        store.delete_series(device.tenant_id, series)
