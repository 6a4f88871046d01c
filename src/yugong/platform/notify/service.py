"""The notification service: queue webhook and e-mail messages to a tenant's targets, send
test messages, and report each target's delivery log."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import orjson

from yugong.core.errors import FieldError, InvalidInput
from yugong.platform.notify import email, webhook
from yugong.platform.notify.delivery import Attempt, Backoff, Deliveries
from yugong.platform.notify.email import Mail
from yugong.platform.notify.targets import (
    WRITE,
    NotificationTargets,
    ResolvedTarget,
    clean_addresses,
)
from yugong.security.principal import Principal


def webhook_body(event: str, data: dict[str, Any], delivery: str) -> bytes:
    doc = {"event": event, "delivery": delivery, "sent_at": time.time(), **data}
    return orjson.dumps(doc, default=str)


class NotifyService:
    def __init__(
        self,
        targets: NotificationTargets,
        *,
        backoff: Backoff | None = None,
        queue_size: int = 1000,
    ) -> None:
        self.targets = targets
        self.deliveries = Deliveries(backoff, queue_size=queue_size)
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            # No redirects: a signed request is for the configured URL only.
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        return self._client

    def log(self, target_id: int) -> dict[str, Any]:
        return self.deliveries.log(target_id).as_dict()

    # Queued (actions) -----------------------------------------------------------------------

    def post_webhook(self, target: ResolvedTarget, event: str, data: dict[str, Any]) -> str:
        """Queue one signed POST to ``target``; its delivery id."""
        delivery = uuid.uuid4().hex
        body = webhook_body(event, data, delivery)

        async def attempt() -> Attempt:
            return await webhook.send(self.client, target, body, event=event, delivery=delivery)

        self.deliveries.submit(target.id, f"{event} {delivery}", attempt)
        return delivery

    def send_email(self, target: ResolvedTarget, to: list[str], mail: Mail) -> None:
        recipients = to or list(target.config.get("to") or [])

        async def attempt() -> Attempt:
            return await email.send(target, recipients, mail)

        self.deliveries.submit(target.id, f"mail '{mail.subject_en}'", attempt)

    # Test ------------------------------------------------------------------------------------

    async def test(
        self,
        p: Principal,
        target_id: int,
        *,
        tenant_id: int | None = None,
        to: list[str] | None = None,
    ) -> dict[str, Any]:
        """Send one test message now, without retries; what happened."""
        p.require(WRITE)
        target = await asyncio.to_thread(self.targets.resolve_id, p, target_id, tenant_id)
        started = time.monotonic()
        if target.kind == "webhook":
            delivery = uuid.uuid4().hex
            body = webhook_body(
                "test", {"target": {"id": target.id, "name": target.name}}, delivery
            )
            result = await webhook.send(self.client, target, body, event="test", delivery=delivery)
        else:
            recipients = clean_addresses(to, "to") or list(target.config.get("to") or [])
            if not recipients:
                raise InvalidInput(
                    "a test e-mail needs recipients",
                    [FieldError("to", "give addresses, or set config.to on the target")],
                )
            mail = Mail(
                "愚公测试通知",
                "Yugong test notification",
                [("Target / 通知目标", target.name)],
                intro="This is a test message from Yugong. 这是一条来自愚公的测试消息。",
            )
            result = await email.send(target, recipients, mail)
        stats = self.deliveries.log(target.id)
        stats.last_ok, stats.last_status, stats.last_error = result.ok, result.status, result.error
        stats.last_at = time.time()
        return {
            "ok": result.ok,
            "status": result.status,
            "error": result.error,
            "elapsed_ms": round((time.monotonic() - started) * 1000, 1),
        }

    async def close(self) -> None:
        await self.deliveries.close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


__all__ = ["NotifyService", "webhook_body"]
