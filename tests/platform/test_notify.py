"""Notifications to real peers on 127.0.0.1: a webhook receiver (http.server in a thread)
and an SMTP server (aiosmtpd). Signatures, retries with back-off, Retry-After, giving up,
the bounded queue, e-mail content, and the targets API with write-only secrets."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.header import decode_header, make_header
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.conftest import free_port, until
from tests.integration.conftest import Api
from yugong.api.app import create_app
from yugong.core.errors import Conflict, InvalidInput
from yugong.core.settings import Settings
from yugong.platform.notify import Backoff, NotifyService
from yugong.platform.notify.email import Mail
from yugong.platform.notify.webhook import SIGNATURE, TIMESTAMP, retry_after, verify
from yugong.platform.rules.models import NotificationTarget
from yugong.platform.runtime import Platform
from yugong.security.principal import SYSTEM

SECRET = "webhook-secret-0123456789"
ADMIN_PASSWORD = "Platform-Pass-2026!"


# A webhook receiver ----------------------------------------------------------------------


@dataclass
class Received:
    at: float
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next scripted (status, headers), then with ``default``."""

    port: int
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: int = 200
    requests: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver(free_port())
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                rx.requests.append(
                    Received(time.monotonic(), self.path, dict(self.headers.items()), body)
                )
                status, headers = rx.script.pop(0) if rx.script else (rx.default, {})
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", rx.port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rx
    server.shutdown()
    server.server_close()


# An SMTP server ----------------------------------------------------------------------------


@dataclass
class Mailbox:
    port: int
    messages: list[tuple[list[str], Message]] = field(default_factory=list)
    refuse_first: int = 0  # answer DATA with 451 this many times


class _Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.box.refuse_first > 0:
            self.box.refuse_first -= 1
            return "451 4.3.0 try again later"
        self.box.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox(free_port())
    controller = Controller(_Handler(box), hostname="127.0.0.1", port=box.port)
    controller.start()
    yield box
    controller.stop()


# The platform --------------------------------------------------------------------------


def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        mqtt_embedded=False,
        secret_key="k" * 40,
        admin_password=ADMIN_PASSWORD,
        ingest_flush_ms=10,
    )


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[Platform]:
    p = Platform(settings(tmp_path))
    await p.start()
    yield p
    await p.stop()


def tenant(p: Platform, name: str = "Notify Works") -> int:
    return p.registry.tenants.create(SYSTEM, name=name).id


def fast(p: Platform, **kw: Any) -> NotifyService:
    """A notify service over the platform's targets with test-sized back-off."""
    backoff = Backoff(**{"attempts": 4, "base_s": 0.2, "cap_s": 2.0, **kw})
    return NotifyService(p.notify.targets, backoff=backoff)


def webhook(p: Platform, t: int, url: str, name: str = "ops") -> Any:
    info = p.notify.targets.create(
        SYSTEM, name=name, kind="webhook", config={"url": url}, secret=SECRET, tenant_id=t
    )
    return p.notify.targets.resolve(t, info.name)


# Webhooks ------------------------------------------------------------------------------


async def test_webhook_body_is_signed_with_the_timestamp(
    platform: Platform, receiver: Receiver
) -> None:
    t = tenant(platform)
    target = webhook(platform, t, receiver.url)
    notify = fast(platform)
    try:
        notify.post_webhook(target, "alarm.raised", {"alarm": {"id": 7, "name": "Hot"}})
        await until(lambda: receiver.requests, "the webhook request")
    finally:
        await notify.close()
    req = receiver.requests[0]
    stamp, sig = req.headers[TIMESTAMP], req.headers[SIGNATURE]
    assert sig.startswith("sha256=")
    assert abs(int(stamp) - time.time()) < 5
    assert verify(SECRET, stamp, req.body, sig)
    assert not verify("another-secret-0123456", stamp, req.body, sig)
    assert not verify(SECRET, stamp, req.body.replace(b"Hot", b"Hat"), sig)  # body tampered
    assert not verify(SECRET, str(int(stamp) + 1), req.body, sig)  # timestamp is signed
    assert not verify(SECRET, stamp, req.body, sig, now=int(stamp) + 3600)  # replayed late
    doc = json.loads(req.body)
    assert doc["event"] == "alarm.raised" and doc["alarm"] == {"id": 7, "name": "Hot"}
    assert req.headers["X-Yugong-Event"] == "alarm.raised"
    assert notify.log(target.id)["delivered"] == 1


async def test_failures_are_retried_with_growing_back_off(
    platform: Platform, receiver: Receiver
) -> None:
    t = tenant(platform)
    target = webhook(platform, t, receiver.url)
    receiver.script = [(503, {}), (502, {})]  # then 200
    notify = fast(platform, base_s=0.3)
    try:
        notify.post_webhook(target, "alarm.raised", {"n": 1})
        await until(lambda: notify.log(target.id)["delivered"], "the delivery", timeout=10)
    finally:
        await notify.close()
    times = [r.at for r in receiver.requests]
    assert len(times) == 3
    first, second = times[1] - times[0], times[2] - times[1]
    assert 0.15 <= first < 1.0, first  # 0.3 s back-off, jittered to [0.15, 0.3]
    assert 0.3 <= second < 1.5, second  # doubled: [0.3, 0.6]
    deliveries = {r.headers["X-Yugong-Delivery"] for r in receiver.requests}
    assert len(deliveries) == 1  # one message, retried
    log = notify.log(target.id)
    assert (log["retries"], log["failed"], log["last_status"]) == (2, 0, 200)


async def test_retry_after_is_respected(platform: Platform, receiver: Receiver) -> None:
    t = tenant(platform)
    target = webhook(platform, t, receiver.url)
    receiver.script = [(429, {"Retry-After": "1"})]
    notify = fast(platform, base_s=0.01)
    try:
        notify.post_webhook(target, "alarm.raised", {"n": 1})
        await until(lambda: notify.log(target.id)["delivered"], "the delivery", timeout=10)
    finally:
        await notify.close()
    gap = receiver.requests[1].at - receiver.requests[0].at
    assert gap >= 0.95, f"retried after {gap:.3f}s despite Retry-After: 1"
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10)
    assert retry_after("soon") is None


async def test_a_dead_endpoint_is_given_up_after_n_tries(
    platform: Platform, receiver: Receiver
) -> None:
    t = tenant(platform)
    failing = webhook(platform, t, receiver.url, "failing")
    refused = webhook(platform, t, f"http://127.0.0.1:{free_port()}/nobody", "refused")
    receiver.default = 500
    notify = fast(platform, attempts=3, base_s=0.05)
    try:
        notify.post_webhook(failing, "alarm.raised", {"n": 1})
        notify.post_webhook(refused, "alarm.raised", {"n": 1})
        await until(lambda: notify.log(failing.id)["failed"], "giving up on HTTP 500")
        await until(lambda: notify.log(refused.id)["failed"], "giving up on a refused port")
    finally:
        await notify.close()
    assert len(receiver.requests) == 3
    log = notify.log(failing.id)
    assert (log["delivered"], log["retries"], log["last_status"]) == (0, 2, 500)
    dead = notify.log(refused.id)
    assert dead["retries"] == 2 and dead["last_status"] is None
    assert "ConnectError" in dead["last_error"]


async def test_a_client_error_is_not_retried(platform: Platform, receiver: Receiver) -> None:
    t = tenant(platform)
    target = webhook(platform, t, receiver.url)
    receiver.default = 404
    notify = fast(platform)
    try:
        notify.post_webhook(target, "alarm.raised", {"n": 1})
        await until(lambda: notify.log(target.id)["failed"], "the refusal")
        await asyncio.sleep(0.3)
    finally:
        await notify.close()
    assert len(receiver.requests) == 1
    assert notify.log(target.id)["retries"] == 0


async def test_the_queue_of_a_dead_endpoint_is_bounded(platform: Platform) -> None:
    t = tenant(platform)
    dead = webhook(platform, t, f"http://127.0.0.1:{free_port()}/nobody")
    notify = NotifyService(
        platform.notify.targets, backoff=Backoff(attempts=3, base_s=30), queue_size=2
    )
    try:
        for n in range(5):
            notify.post_webhook(dead, "alarm.raised", {"n": n})
        log = notify.log(dead.id)
        assert (log["queued"], log["dropped"], log["pending"]) == (5, 3, 2)
    finally:
        await notify.close()


# E-mail ---------------------------------------------------------------------------------


def email_target(p: Platform, t: int, port: int) -> Any:
    config = {"host": "127.0.0.1", "port": port, "security": "none", "from": "yugong@plant.cn"}
    p.notify.targets.create(SYSTEM, name="mail", kind="email", config=config, tenant_id=t)
    return p.notify.targets.resolve(t, "mail")


def parts(msg: Message) -> dict[str, str]:
    out = {}
    for part in msg.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            out[part.get_content_subtype()] = payload.decode(part.get_content_charset() or "utf-8")
    return out


async def test_email_has_both_languages_and_both_bodies(
    platform: Platform, mailbox: Mailbox
) -> None:
    t = tenant(platform)
    target = email_target(platform, t, mailbox.port)
    mailbox.refuse_first = 1  # a 451 first: retried
    notify = fast(platform, base_s=0.05)
    mail = Mail(
        "[重要] 告警触发: 主轴过热",
        "[MAJOR] Alarm raised: Spindle too hot",
        [("Device / 设备", "cnc-7"), ("Value / 数值", "<81.5>")],
    )
    try:
        notify.send_email(target, ["ops@plant.cn", "lead@plant.cn"], mail)
        await until(lambda: mailbox.messages, "the e-mail", timeout=10)
    finally:
        await notify.close()
    to, msg = mailbox.messages[0]
    assert to == ["ops@plant.cn", "lead@plant.cn"]
    subject = str(make_header(decode_header(msg["Subject"])))
    assert subject == "[重要] 告警触发: 主轴过热 / [MAJOR] Alarm raised: Spindle too hot"
    assert msg["From"] == "yugong@plant.cn"
    bodies = parts(msg)
    assert "Device / 设备: cnc-7" in bodies["plain"]
    assert "<td>&lt;81.5&gt;</td>" in bodies["html"]  # escaped in HTML
    assert notify.log(target.id)["retries"] == 1


# Targets: validation, sealing, the API -------------------------------------------------------


async def test_target_settings_are_checked_naming_the_field(platform: Platform) -> None:
    t = tenant(platform)
    targets = platform.notify.targets

    def refused(**kw: Any) -> str:
        with pytest.raises(InvalidInput) as exc:
            targets.create(SYSTEM, tenant_id=t, **{"name": "x", "kind": "webhook", **kw})
        return exc.value.errors[0].loc

    assert refused(config={"url": "ftp://x"}, secret=SECRET) == "config.url"
    assert refused(config={"url": "http://h/"}) == "secret"
    assert refused(config={"url": "http://h/"}, secret="short") == "secret"
    bad_header = {"url": "http://h/", "headers": {"X-Yugong-Signature": "x"}}
    assert refused(config=bad_header, secret=SECRET) == "config.headers.X-Yugong-Signature"
    assert refused(kind="email", config={"host": "smtp", "from": "nobody"}) == "config.from"
    assert refused(kind="email", config={"host": "smtp", "from": "a@b.cn", "port": 0}) == (
        "config.port"
    )
    assert refused(kind="sms", config={}) == "kind"
    webhook(platform, t, "http://127.0.0.1:9/")
    with pytest.raises(Conflict):
        webhook(platform, t, "http://127.0.0.1:9/")


def test_targets_api_keeps_secrets_write_only(tmp_path: Path, receiver: Receiver) -> None:
    platform = Platform(settings(tmp_path))
    with TestClient(create_app(platform.settings, platform)) as client:
        api = Api(client)
        root = api.admin()
        t = api.call("POST", "/api/v1/tenants", root, 201, json={"name": "Api Notify"})
        api.call(
            "POST",
            "/api/v1/users",
            root,
            201,
            json={
                "username": "eng",
                "password": "Tenant-Pass-2026!",
                "role": "engineer",
                "tenant_id": t["id"],
            },
        )
        eng = api.login("eng", "Tenant-Pass-2026!")
        body = {"name": "ops", "kind": "webhook", "config": {"url": receiver.url}, "secret": SECRET}
        made = api.call("POST", "/api/v1/notification-targets", eng, 201, json=body)
        assert made["has_secret"] is True and "secret" not in made
        assert SECRET not in json.dumps(made)
        with platform.db.session() as s:
            row = s.scalars(select(NotificationTarget)).one()
            assert row.secret is not None and row.secret.startswith("v1:")
            assert SECRET not in row.secret
            # Sealed to its row: the value does not open as another target's secret.
            with pytest.raises(Exception, match="does not open"):
                platform.security.box.open(row.secret, f"notification:{row.id + 1}")

        tid = made["id"]
        result = api.call("POST", f"/api/v1/notification-targets/{tid}/test", eng)
        assert result["ok"] is True and result["status"] == 200
        req = receiver.requests[0]
        assert verify(SECRET, req.headers[TIMESTAMP], req.body, req.headers[SIGNATURE])
        assert json.loads(req.body)["event"] == "test"

        got = api.call("GET", f"/api/v1/notification-targets/{tid}", eng)
        assert got["delivery"]["last_ok"] is True and got["delivery"]["last_status"] == 200
        listed = api.call("GET", "/api/v1/notification-targets", eng)
        assert [x["name"] for x in listed] == ["ops"]

        bad = api.call(
            "PATCH",
            f"/api/v1/notification-targets/{tid}",
            eng,
            422,
            json={"config": {"url": "not a url"}},
        )
        assert bad["errors"][0]["loc"] == "config.url"
        api.call(
            "PATCH",
            f"/api/v1/notification-targets/{tid}",
            eng,
            json={"secret": "rotated-secret-0123456789"},
        )
        receiver.requests.clear()
        api.call("POST", f"/api/v1/notification-targets/{tid}/test", eng)
        req = receiver.requests[0]
        assert verify(
            "rotated-secret-0123456789", req.headers[TIMESTAMP], req.body, req.headers[SIGNATURE]
        )
        api.call("DELETE", f"/api/v1/notification-targets/{tid}", eng, 204)
        api.call("GET", f"/api/v1/notification-targets/{tid}", eng, 404)
        entries = api.call("GET", "/api/v1/audit", root, params={"tenant_id": t["id"]})
        actions = {e["action"] for e in entries.get("items", entries)}
        assert {"notification_target.create", "notification_target.delete"} <= actions
