"""Thing-model services of devices connected straight to the embedded MQTT broker, as
ThingsBoard server-side RPC.

The platform publishes ``{"method": <service identifier>, "params": {...}}`` on
``v1/devices/me/rpc/request/{command id}`` to the device's own session (the device must be
connected and subscribed to ``v1/devices/me/rpc/request/+``, as ThingsBoard SDKs do); the
device answers with a JSON document on ``v1/devices/me/rpc/response/{command id}``. The
answer is the service's output (an object of its ``outputData``); an object whose only key
is ``error`` is the device refusing the call, with its reason.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, Protocol

RPC_REQUEST_TOPIC = "v1/devices/me/rpc/request/{}"


class RpcBroker(Protocol):
    def rpc_ready(self, device: int) -> str | None: ...

    def send_to_device(self, device: int, topic: str, payload: bytes) -> bool: ...

    def attach_rpc(self, handler: Callable[[int, str, bytes], None]) -> None: ...


class RpcChannel:
    """Requests in flight by (device, request id); ``broker`` is looked up per call (the
    embedded broker exists once the platform has started)."""

    def __init__(self, broker: Callable[[], RpcBroker | None]) -> None:
        self._broker = broker
        self._attached: RpcBroker | None = None
        self._pending: dict[tuple[int, str], asyncio.Future[Any]] = {}

    def ready(self, device: int) -> str | None:
        broker = self._broker()
        if broker is None:
            return "the platform runs no embedded MQTT broker"
        return broker.rpc_ready(device)

    async def call(
        self, device: int, request_id: int, method: str, params: dict[str, Any], timeout_s: float
    ) -> Any:
        """Send the request and return the device's decoded answer; :class:`TimeoutError`
        when none comes in ``timeout_s``, :class:`ConnectionError` when it cannot be sent."""
        broker = self._broker()
        if broker is None:
            raise ConnectionError("the platform runs no embedded MQTT broker")
        if self._attached is not broker:
            broker.attach_rpc(self.on_response)
            self._attached = broker
        key = (device, str(request_id))
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            body = json.dumps({"method": method, "params": params}).encode()
            if not broker.send_to_device(device, RPC_REQUEST_TOPIC.format(request_id), body):
                raise ConnectionError(broker.rpc_ready(device) or "the device is not connected")
            return await asyncio.wait_for(future, timeout_s)
        finally:
            if self._pending.get(key) is future:
                del self._pending[key]

    def on_response(self, device: int, request_id: str, data: bytes) -> None:
        """A device's answer (from the broker); answers nobody waits for are dropped."""
        future = self._pending.pop((device, request_id), None)
        if future is None or future.done():
            return
        try:
            future.set_result(json.loads(data) if data.strip() else None)
        except ValueError as exc:
            future.set_exception(ValueError(f"the answer is not JSON: {exc}"))
