"""Rule actions on a running platform: alarm changes on the bus lead to derived metrics in
the store, webhooks and e-mails to real local peers, and commands through the command
service, each from the rule version that raised the alarm."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from email.header import decode_header, make_header
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from tests.conftest import until
from tests.integration.conftest import SENSOR_TSL
from tests.platform import test_notify
from tests.platform.test_notify import SECRET, Mailbox, Receiver
from yugong.core.errors import InvalidInput
from yugong.core.timeutil import now_us
from yugong.platform.actions import check_actions
from yugong.platform.alarms.models import Alarm
from yugong.platform.command_models import Command
from yugong.platform.notify.webhook import SIGNATURE, TIMESTAMP, verify
from yugong.platform.rules.models import Rule, RuleVersion
from yugong.platform.rules.spec import RuleSpec
from yugong.platform.rules.types import ALARMS_TOPIC, AlarmChange
from yugong.platform.runtime import Platform
from yugong.security.principal import SYSTEM

# fixtures: a started platform, a webhook receiver, an SMTP server
platform = test_notify.platform
receiver = test_notify.receiver
mailbox = test_notify.mailbox

# Never true on the test data: the rule engine must not raise alarms of its own here.
QUIET = {"kind": "threshold", "property": "count", "op": ">", "value": 999_999}


@dataclass
class World:
    tenant: int
    device: int
    series: dict[str, int]


def world(p: Platform) -> World:
    t = p.registry.tenants.create(SYSTEM, name="Actions Works").id
    product, _ = p.registry.products.import_tsl(SYSTEM, SENSOR_TSL, tenant_id=t)
    d = p.registry.devices.create(SYSTEM, name="press-1", product_id=product.id, tenant_id=t)
    binding = p.directory.by_id(d.device.id)
    assert binding is not None
    series = {k: v.series for k, v in binding.properties.items()}
    return World(t, d.device.id, series)


def webhook_target(p: Platform, w: World, receiver: Receiver) -> None:
    """The tenant's webhook target ``ops-hook``, signed with ``SECRET``, calling ``receiver``."""
    p.notify.targets.create(
        SYSTEM,
        name="ops-hook",
        kind="webhook",
        config={"url": receiver.url},
        secret=SECRET,
        tenant_id=w.tenant,
    )


def rule(p: Platform, w: World, actions: list[dict[str, Any]], *, versions: int = 1) -> int:
    """A disabled rule (the engine ignores it) whose versions 1..n carry ``actions`` with
    the version number in the name; the current version is n."""
    with p.db.session() as s:
        specs = [
            RuleSpec.model_validate(
                {
                    "name": f"Press watch v{v}",
                    "target": {"device": w.device},
                    "severity": "major",
                    "condition": QUIET,
                    "actions": actions if v == 1 else [],
                    "enabled": False,
                }
            ).model_dump(mode="json", by_alias=True)
            for v in range(1, versions + 1)
        ]
        row = Rule(
            tenant_id=w.tenant, name="Press watch", version=versions, enabled=False, spec=specs[-1]
        )
        s.add(row)
        s.flush()
        for v, spec in enumerate(specs, 1):
            s.add(RuleVersion(rule_id=row.id, version=v, spec=spec))
        return row.id


def alarm(p: Platform, w: World, rule_id: int, version: int = 1) -> int:
    with p.db.session() as s:
        row = Alarm(
            tenant_id=w.tenant,
            rule_id=rule_id,
            rule_version=version,
            device_id=w.device,
            name="Press watch",
            severity="major",
        )
        s.add(row)
        s.flush()
        return row.id


def change(
    w: World, rule_id: int, alarm_id: int, kind: str, at_us: int, value: float
) -> AlarmChange:
    state = {"raised": "active", "cleared": "cleared"}.get(kind, "active")
    return AlarmChange(
        alarm_id, w.tenant, rule_id, w.device, kind, state, "major", "Press watch", at_us, value
    )


async def publish(p: Platform, c: AlarmChange, counter: str, n: int = 1) -> None:
    p.bus.publish(ALARMS_TOPIC, c)
    await until(lambda: p.actions.counts[counter] >= n, f"{counter} >= {n}")
    await p.actions.idle()


def stored(p: Platform, series: int) -> list[tuple[int, float]]:
    table = p.store.range([series], 0, now_us() + 10**9).table
    return list(zip(table.column("ts").to_pylist(), table.column("value").to_pylist(), strict=True))


async def test_metric_actions_write_derived_samples(platform: Platform) -> None:
    w = world(platform)
    rid = rule(
        platform,
        w,
        [
            {"kind": "metric", "property": "count"},  # 1 while active, 0 when cleared
            {"kind": "metric", "property": "temperature", "value": "value"},
        ],
    )
    aid = alarm(platform, w, rid)
    t0 = now_us() - 10_000_000
    await publish(platform, change(w, rid, aid, "raised", t0, 81.5), "metric.ok", 2)
    await publish(platform, change(w, rid, aid, "cleared", t0 + 5_000_000, 70.0), "metric.ok", 3)
    await platform.writer.flush()
    assert stored(platform, w.series["count"]) == [(t0, 1.0), (t0 + 5_000_000, 0.0)]
    assert stored(platform, w.series["temperature"]) == [(t0, 81.5)]  # not on clear


async def test_a_metric_into_a_property_that_cannot_hold_it_is_refused(
    platform: Platform,
) -> None:
    w = world(platform)
    rid = rule(
        platform,
        w,
        [
            {"kind": "metric", "property": "label"},  # text
            {"kind": "metric", "property": "no_such_thing"},
            {"kind": "metric", "property": "count", "value": 5},
        ],
    )
    aid = alarm(platform, w, rid)
    await publish(platform, change(w, rid, aid, "raised", now_us(), 1.0), "metric.ok")
    await platform.writer.flush()
    assert platform.actions.counts["metric.refused"] == 2
    assert [v for _, v in stored(platform, w.series["count"])] == [5.0]
    assert stored(platform, w.series["label"]) == []


async def test_notifications_on_raise_and_on_clear(
    platform: Platform, receiver: Receiver, mailbox: Mailbox
) -> None:
    w = world(platform)
    targets = platform.notify.targets
    webhook_target(platform, w, receiver)
    mail = {
        "host": "127.0.0.1",
        "port": mailbox.port,
        "security": "none",
        "from": "yugong@plant.cn",
    }
    targets.create(SYSTEM, name="mail", kind="email", config=mail, tenant_id=w.tenant)
    rid = rule(
        platform,
        w,
        [
            {"kind": "webhook", "target": "ops-hook"},
            {"kind": "email", "to": ["ops@plant.cn"], "on_clear": True},  # the only sender
        ],
    )
    aid = alarm(platform, w, rid)
    t0 = now_us()
    await publish(platform, change(w, rid, aid, "raised", t0, 81.5), "email.ok")
    await until(lambda: receiver.requests and mailbox.messages, "the webhook and the e-mail")
    req = receiver.requests[0]
    assert verify(SECRET, req.headers[TIMESTAMP], req.body, req.headers[SIGNATURE])
    doc = json.loads(req.body)
    assert doc["event"] == "alarm.raised"
    assert doc["alarm"]["alarm"] == aid and doc["alarm"]["value"] == 81.5
    assert doc["rule"]["id"] == rid and doc["rule"]["name"] == "Press watch v1"
    assert doc["rule"]["condition"]["op"] == ">"
    _, msg = mailbox.messages[0]
    subject = str(make_header(decode_header(msg["Subject"])))
    assert subject == "[重要] 告警触发: Press watch / [MAJOR] Alarm raised: Press watch"

    # Acknowledging does nothing; clearing mails (on_clear) but does not call the webhook.
    await publish(platform, change(w, rid, aid, "acknowledged", t0 + 1, 81.5), "email.ok")
    await publish(platform, change(w, rid, aid, "cleared", t0 + 2, 70.0), "email.ok", 2)
    await until(lambda: len(mailbox.messages) == 2, "the clearing e-mail")
    subject = str(make_header(decode_header(mailbox.messages[1][1]["Subject"])))
    assert "Alarm cleared" in subject and "告警清除" in subject
    hook = targets.resolve(w.tenant, "ops-hook").id
    await until(lambda: platform.notify.log(hook)["delivered"] == 1, "the webhook delivered")
    assert len(receiver.requests) == 1
    assert platform.actions.counts["webhook.ok"] == 1


async def test_actions_come_from_the_version_that_raised_the_alarm(
    platform: Platform, receiver: Receiver
) -> None:
    w = world(platform)
    webhook_target(platform, w, receiver)
    rid = rule(platform, w, [{"kind": "webhook", "target": "ops-hook"}], versions=2)
    old = alarm(platform, w, rid, version=1)  # raised under v1, which had the webhook
    new = alarm(platform, w, rid, version=2)  # v2 has no actions
    await publish(platform, change(w, rid, new, "raised", now_us(), 1.0), "webhook.ok", 0)
    await publish(platform, change(w, rid, old, "raised", now_us(), 1.0), "webhook.ok", 1)
    await until(lambda: receiver.requests, "the webhook of version 1")
    assert json.loads(receiver.requests[0].body)["alarm"]["alarm"] == old
    assert len(receiver.requests) == 1


async def test_a_command_action_goes_through_the_command_service(platform: Platform) -> None:
    from yugong.platform.commands import install_commands

    install_commands(FastAPI(), platform)  # the platform's command service, as the app has
    assert platform.commands is not None
    w = world(platform)
    rid = rule(platform, w, [{"kind": "command", "property": "mode", "value": 1}])
    aid = alarm(platform, w, rid)
    await publish(platform, change(w, rid, aid, "raised", now_us(), 1.0), "command.failed")
    with platform.db.session() as s:
        rows = list(s.scalars(select(Command).where(Command.rule_id == rid)))
    assert len(rows) == 1
    cmd = rows[0]
    assert (cmd.device_id, cmd.kind, cmd.name, cmd.status) == (w.device, "write", "mode", "failed")
    assert cmd.params == {"value": 1}
    assert "downlink" in cmd.result["error"]
    assert cmd.created_by == f"rule:{rid}"


def test_actions_are_checked_when_a_rule_is_saved(platform: Platform) -> None:
    w = world(platform)
    binding = platform.directory.by_id(w.device)
    assert binding is not None

    def loc(actions: list[dict[str, Any]], targets: dict[str, str] | None = None) -> str:
        spec = RuleSpec.model_validate(
            {"name": "r", "target": {"device": w.device}, "condition": QUIET, "actions": actions}
        )
        with pytest.raises(InvalidInput) as exc:
            check_actions(spec, [binding], targets or {})
        return exc.value.errors[0].loc

    assert loc([{"kind": "metric", "property": "label"}]) == "actions.0.property"
    assert loc([{"kind": "metric", "property": "count", "value": "twice"}]) == "actions.0.value"
    assert loc([{"kind": "webhook", "target": "nope"}]) == "actions.0.target"
    assert loc([{"kind": "webhook", "target": "m"}], {"m": "email"}) == "actions.0.target"
    assert loc([{"kind": "command", "property": "mode"}]) == "actions.0.value"
    spec = RuleSpec.model_validate(
        {
            "name": "r",
            "target": {"device": w.device},
            "condition": QUIET,
            "actions": [
                {"kind": "metric", "property": "count"},
                {"kind": "webhook", "target": "h"},
            ],
        }
    )
    check_actions(spec, [binding], {"h": "webhook"})  # fine


async def test_from_a_sample_to_a_webhook_and_a_metric(
    platform: Platform, receiver: Receiver
) -> None:
    """The whole chain: a rule saved through the rule service, a sample over its threshold,
    the engine, the alarm service, then the actions."""
    if getattr(platform, "rules_runner", None) is None:
        pytest.skip("no rule engine in this build")
    w = world(platform)
    webhook_target(platform, w, receiver)
    doc = {
        "name": "Too hot",
        "target": {"device": w.device},
        "severity": "critical",
        "condition": {"kind": "threshold", "property": "temperature", "op": ">", "value": 80},
        "actions": [
            {"kind": "webhook", "target": "ops-hook"},
            {"kind": "metric", "property": "count"},
        ],
    }
    platform.rules.create(SYSTEM, doc, tenant_id=w.tenant)
    binding = platform.directory.by_id(w.device)
    assert binding is not None
    # The runner picks the new rule up on its own schedule: send until the alarm is raised.
    sent: list[int] = []
    for _ in range(100):
        sent.append(now_us() // 1000)
        await platform.ingest.ingest_telemetry(
            binding, [{"ts": sent[-1], "values": {"temperature": 85.5}}]
        )
        if platform.actions.counts["webhook.ok"]:
            break
        await asyncio.sleep(0.1)
    await until(lambda: receiver.requests, "the webhook", timeout=15)
    doc = json.loads(receiver.requests[0].body)
    assert doc["event"] == "alarm.raised" and doc["alarm"]["value"] == 85.5
    assert doc["rule"]["name"] == "Too hot" and doc["alarm"]["severity"] == "critical"
    await until(lambda: platform.actions.counts["metric.ok"], "the derived metric")
    await platform.writer.flush()
    [(at, value)] = stored(platform, w.series["count"])
    assert value == 1.0 and at // 1000 in sent and at == doc["alarm"]["at_us"]
