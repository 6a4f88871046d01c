"""Commands: write a read-write property of a device, or call one of its thing-model
services, and track what the device said.

Every command is checked against the device's thing model first (a property exists, is
``rw``, the value fits its type and range; a service exists and its params fit its
``inputData``), then recorded and audited (:mod:`yugong.platform.command_queue`), queued per
device and sent the way the device is reached:

- a property write to a device behind a Sparkplug B edge node: the platform's Sparkplug host
  publishes a DCMD and waits for the edge node's answer;
- a service call to a device connected straight to the embedded broker: a ThingsBoard
  server-side RPC (:mod:`yugong.platform.command_rpc`); the answer is checked against the
  service's ``outputData`` and kept as the command's result.

The answer maps to the command's final status and, for a caller waiting on it, to:

- ``ok`` -> ``acknowledged``;
- ``device_error`` / ``unavailable`` -> ``failed``; :class:`BadGateway` (502) carrying the
  edge's message, e.g. the Modbus exception code and name or the OPC UA status name;
- ``timeout`` at the edge, or no answer in time -> ``timed_out``; :class:`GatewayTimeout`
  (504);
- ``invalid`` (the value does not fit the device's register) -> ``failed``;
  :class:`InvalidInput` on ``value``.

A device with no downlink now (not behind an edge node, its edge node offline, not
connected for RPC) is a :class:`Conflict` (409) saying why, and nothing is recorded; a
queued command whose device goes offline before it is sent fails with that reason.
Services of devices behind a Sparkplug edge node are not delivered yet (409 saying so).
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from yugong.core import tsl
from yugong.core.errors import Conflict, FieldError, InvalidInput, NotFound, YugongError
from yugong.infra.db import utcnow
from yugong.platform.command_params import check_params
from yugong.platform.command_queue import (
    STATUSES,
    CommandLog,
    CommandQueue,
    CommandRecord,
    Delivery,
    Job,
)
from yugong.platform.command_rpc import RpcChannel
from yugong.platform.ingest.validate import Rejected, check_column
from yugong.platform.registry.bindings import DeviceBinding, DeviceDirectory, PropertyBinding
from yugong.security.principal import Principal

if TYPE_CHECKING:
    from fastapi import FastAPI

    from yugong.platform.ingest.sparkplug_host import SparkplugHost
    from yugong.platform.runtime import Platform

WRITE_ACTION = "devices:write"
READ_ACTION = "devices:read"
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
    """Writes to devices and calls their services. ``sparkplug`` is the platform's Sparkplug
    host, or a callable returning it (it exists only once the platform has started), or
    None; ``log`` records commands (without it nothing is recorded or queued: writes go
    straight out); ``rpc`` delivers services to directly connected devices."""

    def __init__(
        self,
        directory: DeviceDirectory,
        sparkplug: SparkplugHost | Callable[[], SparkplugHost | None] | None = None,
        *,
        log: CommandLog | None = None,
        rpc: RpcChannel | None = None,
    ) -> None:
        self.directory = directory
        self._sparkplug = sparkplug
        self.log = log
        self.rpc = rpc
        self.queue = CommandQueue(log) if log is not None else None

    @property
    def sparkplug(self) -> SparkplugHost | None:
        if callable(self._sparkplug):
            return self._sparkplug()
        return self._sparkplug

    # The synchronous write ---------------------------------------------------------------

    async def write_property(
        self,
        principal: Principal,
        device_id: int,
        identifier: str,
        value: Any,
        *,
        timeout_s: float = 5.0,
    ) -> WriteOutcome:
        """Write and wait for the device's answer; failures raise (see the module)."""
        principal.require(WRITE_ACTION)
        _check_timeout(timeout_s)
        binding = await self._device(principal, device_id)
        job = self._write_job(binding, identifier, value, timeout_s)
        record, delivery = await self._run(principal, binding, job, None)
        if delivery.error is not None:
            raise delivery.error
        return WriteOutcome(binding.device, identifier, record.result.get("value"))

    # Queued commands ---------------------------------------------------------------------

    async def submit(
        self,
        principal: Principal,
        device_id: int,
        kind: str,
        name: str,
        *,
        value: Any = None,
        params: dict[str, Any] | None = None,
        timeout_s: float = 10.0,
        wait: bool = False,
        rule_id: int | None = None,
    ) -> CommandRecord:
        """Queue a write (``kind="write"``, ``value``) or a service call (``"service"``,
        ``params``); returns the queued record, or the final one with ``wait``."""
        principal.require(WRITE_ACTION)
        _check_timeout(timeout_s)
        if self.log is None or self.queue is None:
            raise Conflict("the platform keeps no command log here")
        binding = await self._device(principal, device_id)
        if kind == "write":
            job = self._write_job(binding, name, value, timeout_s)
        elif kind == "service":
            job = await self._service_job(binding, name, params, timeout_s)
        else:
            raise InvalidInput(
                f"unknown command kind {kind!r}", [FieldError("kind", "must be write or service")]
            )
        if not wait:
            future = await self._start(principal, binding, job, rule_id)
            return future[0]
        return (await self._run(principal, binding, job, rule_id))[0]

    async def get(self, principal: Principal, command_id: int) -> CommandRecord:
        principal.require(READ_ACTION)
        record = await asyncio.to_thread(self._log().get, command_id)
        if record is None or not principal.can_see_tenant(record.tenant):
            raise NotFound(f"command {command_id} not found")
        return record

    async def list(
        self,
        principal: Principal,
        device_id: int,
        *,
        status: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> tuple[list[CommandRecord], int]:
        principal.require(READ_ACTION)
        if status is not None and status not in STATUSES:
            raise InvalidInput(
                f"unknown command status {status!r}",
                [FieldError("status", f"must be one of {', '.join(STATUSES)}")],
            )
        await self._device(principal, device_id)
        return await asyncio.to_thread(
            self._log().page, device_id, status=status, offset=offset, limit=limit
        )

    async def close(self) -> None:
        """Stop sending; queued and in-flight commands are failed, saying why."""
        if self.queue is not None:
            await self.queue.close()

    # Internals -----------------------------------------------------------------------------

    def _log(self) -> CommandLog:
        if self.log is None:
            raise Conflict("the platform keeps no command log here")
        return self.log

    async def _device(self, principal: Principal, device_id: int) -> DeviceBinding:
        binding = await asyncio.to_thread(self.directory.by_id, device_id)
        if binding is None or not principal.can_see_tenant(binding.tenant):
            raise NotFound(f"device {device_id} not found")
        return binding

    def _write_job(
        self, binding: DeviceBinding, identifier: str, value: Any, timeout_s: float
    ) -> _Pending:
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

        async def send(_command: int) -> Delivery:
            return await _sparkplug_write(host, binding, identifier, wire, timeout_s)

        return _Pending(
            "write",
            identifier,
            {"value": wire},
            timeout_s,
            lambda: host.downlink(binding.device),
            send,
        )

    async def _service_job(
        self, binding: DeviceBinding, identifier: str, params: Any, timeout_s: float
    ) -> _Pending:
        service = await asyncio.to_thread(self._service, binding, identifier)
        errors = check_params(service.input, params, "params")
        if errors:
            raise InvalidInput(
                f"params of service '{identifier}' of device '{binding.name}' do not fit its"
                f" inputData: {errors[0].loc}: {errors[0].msg}",
                errors,
            )
        checked = dict(params or {})
        rpc = self.rpc
        if binding.gateway is not None:
            raise Conflict(
                f"device '{binding.name}' is behind a gateway: services are delivered only to"
                " devices connected straight to the platform's MQTT broker"
            )
        if rpc is None:
            raise Conflict(f"device '{binding.name}' has no downlink: the platform runs no RPC")
        why = rpc.ready(binding.device)
        if why is not None:
            raise Conflict(f"device '{binding.name}' cannot take service calls now: {why}")

        async def send(command: int) -> Delivery:
            return await _rpc_call(rpc, binding, service, command, checked, timeout_s)

        return _Pending(
            "service", identifier, checked, timeout_s, lambda: rpc.ready(binding.device), send
        )

    def _service(self, binding: DeviceBinding, identifier: str) -> tsl.Service:
        from yugong.platform.registry.models import Product

        with self._log().db.session() as s:
            document = s.scalar(select(Product.tsl).where(Product.id == binding.product))
        model = tsl.parse(document) if document is not None else None
        service = next(
            (x for x in (model.services if model else ()) if x.identifier == identifier), None
        )
        if service is None:
            raise NotFound(
                f"device '{binding.name}' has no service '{identifier}'",
                [
                    FieldError(
                        "name", f"'{identifier}' is not a service of the device's thing model"
                    )
                ],
            )
        return service

    async def _start(
        self, principal: Principal, binding: DeviceBinding, job: _Pending, rule_id: int | None
    ) -> tuple[CommandRecord, asyncio.Future[tuple[CommandRecord, Delivery]]]:
        log_, queue = self._log(), self.queue
        assert queue is not None
        record = await asyncio.to_thread(
            functools.partial(
                log_.create,
                tenant=binding.tenant,
                device=binding.device,
                kind=job.kind,
                name=job.name,
                params=job.params,
                timeout_s=job.timeout_s,
                created_by=principal.name,
                rule_id=rule_id,
            )
        )
        command = record.id
        queued = Job(command, binding.device, job.ready, lambda: job.send(command))
        queue.put(queued)
        return record, queued.done

    async def _run(
        self, principal: Principal, binding: DeviceBinding, job: _Pending, rule_id: int | None
    ) -> tuple[CommandRecord, Delivery]:
        if self.log is None:  # no log: straight out, as before the command log
            delivery = await job.send(0)
            return _unlogged(binding, job, delivery), delivery
        _record, done = await self._start(principal, binding, job, rule_id)
        return await done


@dataclass(frozen=True)
class _Pending:
    """A checked command, not yet recorded."""

    kind: str
    name: str
    params: dict[str, Any]
    timeout_s: float
    ready: Callable[[], str | None]
    send: Callable[[int], Awaitable[Delivery]]


def _check_timeout(timeout_s: float) -> None:
    if not 0 < timeout_s <= MAX_TIMEOUT_S:
        raise InvalidInput(
            f"timeout_s must be in (0, {MAX_TIMEOUT_S:g}] seconds",
            [FieldError("timeout_s", f"must be > 0 and <= {MAX_TIMEOUT_S:g}")],
        )


def _unlogged(binding: DeviceBinding, job: _Pending, delivery: Delivery) -> CommandRecord:
    now = utcnow()
    return CommandRecord(
        0,
        binding.tenant,
        binding.device,
        job.kind,
        job.name,
        job.params,
        delivery.status,
        delivery.result,
        job.timeout_s,
        now,
        now,
        now,
        "",
        None,
    )


async def _sparkplug_write(
    host: SparkplugHost, binding: DeviceBinding, identifier: str, wire: Any, timeout_s: float
) -> Delivery:
    try:
        answer = await host.write(binding.device, identifier, wire, timeout_s)
    except TimeoutError:
        msg = (
            f"no answer from the edge node of device '{binding.name}' within {timeout_s:g} s;"
            " the write may or may not have been done"
        )
        return Delivery("timed_out", {"error": msg}, GatewayTimeout(msg))
    where = f"write of '{identifier}' on device '{binding.name}'"
    if answer.status == "ok":
        return Delivery("acknowledged", {"value": wire})
    if answer.status == "timeout":
        msg = f"{where}: the device did not answer ({answer.message})"
        return Delivery("timed_out", {"error": msg, "write_status": "timeout"}, GatewayTimeout(msg))
    result = {"error": answer.message, "write_status": answer.status}
    if answer.status == "invalid":
        return Delivery(
            "failed",
            result,
            InvalidInput(
                f"{where} refused by the gateway: {answer.message}",
                [FieldError("value", answer.message or "refused by the gateway")],
            ),
        )
    err = BadGateway(f"{where} failed ({answer.status}): {answer.message}")
    err.write_status = answer.status
    return Delivery("failed", result, err)


async def _rpc_call(
    rpc: RpcChannel,
    binding: DeviceBinding,
    service: tsl.Service,
    command: int,
    params: dict[str, Any],
    timeout_s: float,
) -> Delivery:
    where = f"service '{service.identifier}' of device '{binding.name}'"
    try:
        answer = await rpc.call(binding.device, command, service.identifier, params, timeout_s)
    except TimeoutError:
        msg = f"{where}: no answer within {timeout_s:g} s"
        return Delivery("timed_out", {"error": msg}, GatewayTimeout(msg))
    except (ConnectionError, ValueError) as exc:
        msg = f"{where}: {exc}"
        return Delivery("failed", {"error": msg}, BadGateway(msg))
    declared = {p.identifier for p in service.output}
    if isinstance(answer, dict) and set(answer) == {"error"} and "error" not in declared:
        msg = f"{where} refused by the device: {answer['error']}"
        return Delivery("failed", {"error": str(answer["error"])}, BadGateway(msg))
    errors = check_params(service.output, answer, "output")
    if errors:
        msg = f"{where}: the answer does not fit outputData: {errors[0].loc}: {errors[0].msg}"
        return Delivery(
            "failed",
            {"error": msg, "output": answer, "errors": [e.as_dict() for e in errors]},
            BadGateway(msg),
        )
    return Delivery("acknowledged", {"output": answer})


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
        app.include_router(router_module.commands_router, prefix="/api/v1")
    service = CommandService(
        _LazyDirectory(platform),
        lambda: platform.sparkplug,
        log=CommandLog(lambda: platform.db, lambda: platform.security.audit),
        rpc=RpcChannel(lambda: platform.broker),
    )
    app.state.commands = service
    platform.commands = service  # for rule actions


class _LazyDirectory:
    """The platform's directory, which exists only after ``Platform.start``."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform

    def __getattr__(self, name: str) -> Any:
        return getattr(self._platform.directory, name)


__all__ = [
    "BadGateway",
    "CommandRecord",
    "CommandService",
    "GatewayTimeout",
    "WriteOutcome",
    "install_commands",
]
