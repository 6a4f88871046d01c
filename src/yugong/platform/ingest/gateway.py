"""The ThingsBoard gateway MQTT API: one gateway connection speaks for many devices.

A device whose product (or own flag) marks it a gateway may publish:
- ``v1/gateway/connect`` ``{"device": "Pump 1", "type": "pump"}``: the device is behind this
  gateway from now on; if it does not exist it is created (auto-provisioning) with the
  tenant's product whose key is ``type`` (default ``default``);
- ``v1/gateway/disconnect`` ``{"device": "Pump 1"}``;
- ``v1/gateway/telemetry`` ``{"Pump 1": [{"ts": ms, "values": {...}}], "Pump 2": {...}}``,
  every shape the device API accepts, per device;
- ``v1/gateway/attributes`` ``{"Pump 1": {"firmware": "1.2"}}``.

A gateway speaks only for its own children: a device of the tenant that is behind another
gateway, or behind none, is refused by name. Each device's part of a message is accepted or
refused on its own, so one bad device does not hold back the others.
"""

from __future__ import annotations

import asyncio
import logging

from yugong.core.errors import FieldError, YugongError
from yugong.core.timeutil import now_us
from yugong.platform.ingest.payloads import loads
from yugong.platform.ingest.service import IngestService
from yugong.platform.ingest.validate import Rejected
from yugong.platform.registry.bindings import DeviceBinding
from yugong.platform.registry.service import Registry
from yugong.security.principal import SYSTEM

log = logging.getLogger(__name__)
PREFIX = "v1/gateway/"
PUBLISH_TOPICS = frozenset(
    f"{PREFIX}{t}" for t in ("connect", "disconnect", "telemetry", "attributes")
)
SUBSCRIBE_TOPICS = frozenset(f"{PREFIX}{t}" for t in ("attributes", "attributes/response", "rpc"))
DEFAULT_TYPE = "default"


def _refuse(reason: str, loc: str, msg: str) -> Rejected:
    return Rejected(f"{loc}: {msg}", [FieldError(loc, msg)], reason=reason)


class GatewayService:
    """Routes gateway API messages to ingest for each child device."""

    def __init__(
        self, ingest: IngestService, registry: Registry, *, auto_provision: bool = True
    ) -> None:
        self.ingest = ingest
        self.registry = registry
        self.auto_provision = auto_provision
        self._provisioning: dict[tuple[int, str], asyncio.Lock] = {}

    async def handle(self, gateway: DeviceBinding, topic: str, payload: bytes) -> int:
        """Handle one message; returns how many devices it reached. Raises the first refusal
        (after handling every device that was fine) so the caller logs and counts it."""
        if not gateway.is_gateway:
            raise _refuse(
                "not_gateway",
                "topic",
                f"device '{gateway.name}' is not a gateway and may not use {topic}",
            )
        kind = topic.removeprefix(PREFIX)
        doc = loads(payload)
        if not isinstance(doc, dict):
            raise _refuse("malformed", "body", "the gateway API takes a JSON object")
        if kind in ("connect", "disconnect"):
            name = doc.get("device")
            if not isinstance(name, str) or not name:
                raise _refuse("malformed", "device", "must name the device (a string)")
            type_ = doc.get("type")
            child = await self._child(
                gateway, name, type_ if isinstance(type_, str) else None, create=kind == "connect"
            )
            if kind == "connect":
                self.ingest.directory.touch([child.device], now_us())
            return 1
        first_error: YugongError | None = None
        reached = 0
        for name, part in doc.items():
            try:
                child = await self._child(gateway, name, None, create=True)
                if kind == "telemetry":
                    await self.ingest.ingest_telemetry(child, part)
                else:
                    await self.ingest.ingest_attributes(child, part)
                reached += 1
            except YugongError as exc:
                self.ingest.count_rejected(gateway.tenant, str(getattr(exc, "reason", "invalid")))
                first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return reached

    async def _child(
        self, gateway: DeviceBinding, name: str, type_: str | None, *, create: bool
    ) -> DeviceBinding:
        child = self.ingest.directory.by_name(gateway.tenant, name)
        if child is not None:
            if child.gateway != gateway.device:
                raise _refuse(
                    "not_child", "device", f"device '{name}' is not behind gateway '{gateway.name}'"
                )
            return child
        if not (create and self.auto_provision):
            raise _refuse("unknown_device", "device", f"unknown device '{name}'")
        # One provisioning per device name at a time; whoever waited finds it made.
        key = (gateway.tenant, name)
        lock = self._provisioning.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                child = self.ingest.directory.by_name(gateway.tenant, name)
                if child is None:
                    return await asyncio.to_thread(
                        self._provision, gateway, name, type_ or DEFAULT_TYPE
                    )
        finally:
            if not lock.locked():
                self._provisioning.pop(key, None)
        return await self._child(gateway, name, type_, create=False)

    def _provision(self, gateway: DeviceBinding, name: str, product_key: str) -> DeviceBinding:
        products = self.registry.products.list(SYSTEM, tenant_id=gateway.tenant, limit=1000)
        product = next((p for p in products if p.key == product_key), None)
        if product is None:
            raise _refuse(
                "unknown_product",
                "type",
                f"no product with key '{product_key}' in this tenant for device "
                f"'{name}': create it, or connect the device with a 'type' naming one",
            )
        created = self.registry.devices.create(
            SYSTEM,
            name=name,
            product_id=product.id,
            gateway_id=gateway.device,
            tenant_id=gateway.tenant,
        )
        log.info(
            "gateway '%s' provisioned device '%s' (product %s)", gateway.name, name, product_key
        )
        binding = self.ingest.directory.by_id(created.device.id)
        if binding is None:  # created a moment ago in this process: cannot be missing
            raise RuntimeError(f"device '{name}' vanished after it was created")
        return binding
