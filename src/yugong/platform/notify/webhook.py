"""Webhook delivery: one signed JSON POST per try.

Every request carries::

    X-Yugong-Timestamp: <unix seconds>
    X-Yugong-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>
    X-Yugong-Event: alarm.raised | alarm.cleared | test
    X-Yugong-Delivery: <id, the same on every retry of one message>

A receiver recomputes the HMAC over the timestamp, a dot and the raw body, compares in
constant time (:func:`verify`), and refuses timestamps too far from its clock, so a captured
request cannot be replayed later. Network errors, 5xx and 429 are retried (``Retry-After``
in seconds or as an HTTP date is respected); other statuses are final.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from email.utils import parsedate_to_datetime

import httpx

from yugong.platform.notify.delivery import Attempt
from yugong.platform.notify.targets import ResolvedTarget

SIGNATURE = "X-Yugong-Signature"
TIMESTAMP = "X-Yugong-Timestamp"
EVENT = "X-Yugong-Event"
DELIVERY = "X-Yugong-Delivery"
REPLAY_WINDOW_S = 300


def signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    window_s: float = REPLAY_WINDOW_S,
) -> bool:
    """What a receiver does: the signature matches and the timestamp is recent."""
    try:
        age = abs((time.time() if now is None else now) - int(timestamp))
    except ValueError:
        return False
    return age <= window_s and hmac.compare_digest(signature(secret, timestamp, body), header)


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


async def send(
    client: httpx.AsyncClient,
    target: ResolvedTarget,
    body: bytes,
    *,
    event: str,
    delivery: str,
) -> Attempt:
    """One try; never raises for network trouble (it becomes a retryable Attempt)."""
    timestamp = str(int(time.time()))
    headers = {
        **target.config.get("headers", {}),
        "Content-Type": "application/json",
        TIMESTAMP: timestamp,
        SIGNATURE: signature(target.secret or "", timestamp, body),
        EVENT: event,
        DELIVERY: delivery,
    }
    timeout = float(target.config.get("timeout_s", 10.0))
    try:
        r = await client.post(target.config["url"], content=body, headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        return Attempt(ok=False, error=f"{type(exc).__name__}: {exc}".strip(), retry=True)
    except (httpx.InvalidURL, ValueError) as exc:  # nothing a retry would change
        return Attempt(ok=False, error=f"invalid URL: {exc}")
    if 200 <= r.status_code < 300:
        return Attempt(ok=True, status=r.status_code)
    transient = r.status_code == 429 or r.status_code >= 500
    return Attempt(
        ok=False,
        status=r.status_code,
        error=f"HTTP {r.status_code}",
        retry=transient,
        retry_after_s=retry_after(r.headers.get("retry-after")) if transient else None,
    )


__all__ = [
    "DELIVERY",
    "EVENT",
    "SIGNATURE",
    "TIMESTAMP",
    "retry_after",
    "send",
    "signature",
    "verify",
]
