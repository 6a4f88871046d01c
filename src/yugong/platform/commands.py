"""The downlink: write a read-write property of a device and report what the device said.

A write is checked against the device's thing model first (the property exists, is ``rw``,
the value fits its type and range), then sent the way the device is reached. Today that is
a device behind a Sparkplug B edge node: the platform's Sparkplug host publishes a DCMD and
waits for the edge node's answer. The answer maps to the outcome the caller sees:

- ``ok`` -> the write is done;
- ``device_error`` / ``unavailable`` -> :class:`BadGateway` (502) carrying the edge's message,
  e.g. the Modbus exception code and name or the OPC UA status name;
- ``timeout`` at the edge, or no answer in time -> :class:`GatewayTimeout` (504);
- ``invalid`` (the value does not fit the device's register) -> :class:`InvalidInput` on
  ``value``.

A device with no downlink now (not behind an edge node, or its edge node offline) is a
:class:`Conflict` (409) saying why.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yugong.core.errors import Conflict, FieldError, InvalidInput, NotFound, YugongError
from yugong.platform.ingest.validate import Rejected, check_column
from yugong.platform.registry.bindings import DeviceBinding, DeviceDirectory, PropertyBinding
from yugong.security.principal import Principal

if TYPE_CHECKING:
    from fastapi import FastAPI

    from yugong.platform.ingest.sparkplug_host import SparkplugHost
    from yugong.platform.runtime import Platform

WRITE_ACTION = "devices:write"
MAX_TIMEOUT_S = 60.0


class BadGateway(YugongError):
    """The device (or the gateway in front of it) refused or could not do the write."""

    status = 502
    title = "Bad gateway"
    write_status: str = ""

    def extra(self) -> dict[str, Any]:
        return {**super().extra(), "write_status": self.write_status}


class GatewayTimeout(YugongError):
    status = 504
    title = "Gateway timeout"


@dataclass(frozen=True)
class WriteOutcome:
    device: int
    property: str
    value: Any
    status: str = "ok"


class CommandService:
    """Writes to devices. ``sparkplug`` is the platform's Sparkplug host, or a callable
    returning it (it exists only once the platform has started), or None."""

    def __init__(
        self,
        directory: DeviceDirectory,
        sparkplug: SparkplugHost | Callable[[], SparkplugHost | None] | None = None,
    ) -> None:
        self.directory = directory
        self._sparkplug = sparkplug

    @property
    def sparkplug(self) -> SparkplugHost | None:
        if callable(self._sparkplug):
            return self._sparkplug()
        return self._sparkplug

    async def write_property(
        self,
        principal: Principal,
        device_id: int,
        identifier: str,
        value: Any,
        *,
        timeout_s: float = 5.0,
    ) -> WriteOutcome:
        principal.require(WRITE_ACTION)
        if not 0 < timeout_s <= MAX_TIMEOUT_S:
            raise InvalidInput(
                f"timeout_s must be in (0, {MAX_TIMEOUT_S:g}] seconds",
                [FieldError("timeout_s", f"must be > 0 and <= {MAX_TIMEOUT_S:g}")],
            )
        binding = await asyncio.to_thread(self.directory.by_id, device_id)
        if binding is None or not principal.can_see_tenant(binding.tenant):
            raise NotFound(f"device {device_id} not found")
        prop = _writable(binding, identifier)
        wire = _checked_value(binding, prop, value)
        host = self.sparkplug
        if binding.gateway is None or host is None:
            raise Conflict(
                f"device '{binding.name}' has no downlink: "
                + (
                    "it is not behind a gateway"
                    if binding.gateway is None
                    else "the platform runs no Sparkplug host"
                )
            )
        why = host.downlink(binding.device)
        if why is not None:
            raise Conflict(f"device '{binding.name}' cannot take writes now: {why}")
        try:
            answer = await host.write(binding.device, identifier, wire, timeout_s)
        except TimeoutError:
            raise GatewayTimeout(
                f"no answer from the edge node of device '{binding.name}' within {timeout_s:g} s;"
                " the write may or may not have been done"
            ) from None
        where = f"write of '{identifier}' on device '{binding.name}'"
        if answer.status == "ok":
            return WriteOutcome(binding.device, identifier, wire)
        if answer.status == "timeout":
            raise GatewayTimeout(f"{where}: the device did not answer ({answer.message})")
        if answer.status == "invalid":
            raise InvalidInput(
                f"{where} refused by the gateway: {answer.message}",
                [FieldError("value", answer.message or "refused by the gateway")],
            )
        err = BadGateway(f"{where} failed ({answer.status}): {answer.message}")
        err.write_status = answer.status
        raise err


def _writable(binding: DeviceBinding, identifier: str) -> PropertyBinding:
    prop = binding.properties.get(identifier)
    if prop is None:
        raise NotFound(
            f"device '{binding.name}' has no property '{identifier}'",
            [FieldError("property", f"'{identifier}' is not in the device's thing model")],
        )
    if not prop.writable:
        raise InvalidInput(
            f"property '{identifier}' of device '{binding.name}' is read-only",
            [FieldError("property", f"'{identifier}' has accessMode r, not rw")],
        )
    return prop


def _checked_value(binding: DeviceBinding, prop: PropertyBinding, value: Any) -> Any:
    """The value as sent to the device, after the thing model's type and range checks."""
    if value is None:
        raise InvalidInput("value is required", [FieldError("value", "must not be null")])
    if prop.kind == "json" or prop.tsl_type == "date":
        raise InvalidInput(
            f"property '{prop.identifier}' is of type {prop.tsl_type}, which cannot be written",
            [FieldError("property", f"type {prop.tsl_type} takes no writes")],
        )
    try:
        checked = check_column(prop, [value], binding.name)
    except Rejected as exc:
        msg = exc.errors[0].msg if exc.errors else exc.detail
        raise InvalidInput(exc.detail, [FieldError("value", msg)]) from None
    if checked.quality[0] != 0:  # out of range or otherwise unusable: not a good value
        raise InvalidInput(
            f"value {value!r} is not valid for property '{prop.identifier}'",
            [FieldError("value", _range_words(prop))],
        )
    if prop.kind == "text":
        return str(value)
    if prop.kind == "bool":
        return bool(value)
    assert checked.value is not None
    number = float(checked.value[0])
    if prop.kind in ("integer", "enum"):
        if not math.isfinite(number) or number != int(number):
            raise InvalidInput(
                f"property '{prop.identifier}' takes integers",
                [FieldError("value", f"expected an integer, got {value!r}")],
            )
        return int(number)
    return number


def _range_words(prop: PropertyBinding) -> str:
    if prop.min is not None or prop.max is not None:
        return f"must be within [{prop.min}, {prop.max}]"
    return "not a valid value for this property"


def install_commands(app: FastAPI, platform: Platform) -> None:
    """Mount the commands API on ``app`` and put a :class:`CommandService` on its state;
    the Sparkplug host is looked up per call (it exists once the platform has started)."""
    from yugong.api.routers import commands as router_module

    if not any(getattr(r, "path", "").endswith("/properties/{identifier}") for r in app.routes):
        app.include_router(router_module.router, prefix="/api/v1")
    app.state.commands = CommandService(_LazyDirectory(platform), lambda: platform.sparkplug)


class _LazyDirectory:
    """The platform's directory, which exists only after ``Platform.start``."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def __getattr__(self, name: str) -> Any:
        return getattr(self._platform.directory, name)


__all__ = [
    "BadGateway",
    "CommandService",
    "GatewayTimeout",
    "WriteOutcome",
    "install_commands",
]
