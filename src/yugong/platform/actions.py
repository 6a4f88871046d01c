"""Rule actions: what happens when a rule's alarm is raised or cleared.

:class:`ActionDispatcher` reads every alarm change from the bus topic ``"alarms"``, looks up
the actions of the rule version that raised the alarm, and runs them:

- ``webhook``: a signed POST of the alarm change and the rule to the named notification
  target (queued, retried; see :mod:`yugong.platform.notify`);
- ``email``: a message to ``to`` (or the target's ``config.to``) through the named e-mail
  target, or the tenant's only one;
- ``command``: writes ``property`` = ``value`` on ``device`` (default: the alarm's source)
  through the command service, recorded with the rule's id;
- ``metric``: writes a derived sample into ``property`` of the alarm's source device, at the
  alarm change's time. ``value`` chooses what: omitted or ``"state"`` -> 1 when raised and
  0 when cleared (always both); ``"value"`` -> the triggering value; a number -> that number.

Actions run on ``raised``; on ``cleared`` too when ``on_clear`` is set. An action that
cannot run (unknown target, property not in the thing model, no downlink) is refused with a
logged reason and counted; it never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any

import numpy as np
from sqlalchemy import select

from yugong.core.errors import FieldError, InvalidInput, NotFound, YugongError
from yugong.core.timeutil import US_PER_S
from yugong.infra.bus import Bus
from yugong.infra.db import Database
from yugong.platform.alarms.models import Alarm
from yugong.platform.notify.email import Mail
from yugong.platform.notify.service import NotifyService
from yugong.platform.registry.bindings import DeviceBinding, DeviceDirectory
from yugong.platform.rules.models import Rule, RuleVersion
from yugong.platform.rules.spec import Action, RuleSpec
from yugong.platform.rules.types import ALARMS_TOPIC, AlarmChange
from yugong.security.audit import AuditLog
from yugong.security.principal import Principal, Role

log = logging.getLogger(__name__)

ALARMS_QUEUE = 100_000  # alarm changes waiting; far above any burst the alarm service makes
NUMERIC = frozenset({"number", "integer", "bool", "enum"})
SEVERITY_ZH = {"critical": "紧急", "major": "重要", "minor": "次要", "warning": "警告"}
KIND_ZH = {"raised": "告警触发", "cleared": "告警清除"}
_SPEC_CACHE = 512


class ActionRefused(YugongError):
    """An action that cannot run as written."""

    status = 422
    title = "Action refused"


def check_actions(
    spec: RuleSpec, devices: Iterable[DeviceBinding], target_kinds: dict[str, str]
) -> None:
    """For saving a rule: every action fits the devices the rule covers and the tenant's
    notification targets (name -> kind). Raises :class:`InvalidInput` naming the field."""
    devices = list(devices)
    for i, action in enumerate(spec.actions):
        where = f"actions.{i}"
        if action.kind in ("webhook", "email") and action.target is not None:
            kind = target_kinds.get(action.target)
            if kind != action.kind:
                why = "no such notification target" if kind is None else f"is a {kind} target"
                raise _invalid(f"{where}.target", f"'{action.target}': {why}")
        if action.kind == "webhook" and action.target is None:
            raise _invalid(f"{where}.target", "a webhook action names its notification target")
        if action.kind == "email" and not action.to and action.target is None:
            raise _invalid(f"{where}.to", "give recipients or an e-mail target with config.to")
        if action.kind in ("command", "metric") and not action.property:
            raise _invalid(f"{where}.property", f"a {action.kind} action names a property")
        if action.kind == "command" and action.value is None:
            raise _invalid(f"{where}.value", "a command action gives the value to write")
        if action.kind == "metric":
            _metric_value(action, where)
            for d in devices:
                _metric_property(d, action.property or "", f"{where}.property")


def _invalid(loc: str, msg: str) -> InvalidInput:
    return InvalidInput(f"{loc}: {msg}", [FieldError(loc, msg)])


def _metric_value(action: Action, where: str) -> None:
    v = action.value
    ok = v is None or v in ("state", "value")
    ok = ok or (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v))
    if not ok:
        raise _invalid(f"{where}.value", "a metric value is 'state', 'value' or a number")


def _metric_property(device: DeviceBinding, identifier: str, loc: str) -> None:
    prop = device.properties.get(identifier)
    if prop is None:
        raise _invalid(loc, f"device '{device.name}' has no property '{identifier}'")
    if prop.kind not in NUMERIC:
        raise _invalid(
            loc, f"'{identifier}' of device '{device.name}' is {prop.tsl_type}, not a number"
        )


def rule_principal(tenant: int, rule: int) -> Principal:
    """Who a rule acts as: an engineer of its tenant (may write device properties)."""
    return Principal("system", 0, tenant, Role.ENGINEER, f"rule:{rule}")


class ActionDispatcher:
    """Reads ``"alarms"`` and runs the rules' actions. ``await start()``, ``await stop()``."""

    def __init__(
        self,
        *,
        db: Database,
        bus: Bus,
        notify: NotifyService,
        ingest: Any,  # IngestService: ingest_columns(binding, columns)
        directory: DeviceDirectory,
        commands: Callable[[], Any],  # the command service (looked up per call)
        audit: AuditLog | None = None,
        queue: int = ALARMS_QUEUE,
    ) -> None:
        self.db, self.bus, self.notify = db, bus, notify
        self.ingest, self.directory, self._commands = ingest, directory, commands
        self.audit = audit
        self.queue = queue
        self.counts: Counter[str] = Counter()  # "<kind>.ok", "<kind>.refused", "<kind>.failed"
        self._specs: OrderedDict[tuple[int, int], tuple[RuleSpec, str]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()
        self._sub: Any = None
        self._dropped_seen = 0

    async def start(self) -> None:
        self._sub = self.bus.subscribe(ALARMS_TOPIC, maxsize=self.queue)
        self._task = asyncio.create_task(self._loop(), name="rule-actions")

    async def stop(self) -> None:
        if self._sub is not None:
            self._sub.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._running):
            task.cancel()
        for task in list(self._running):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def idle(self) -> None:
        """Until every started command and metric action has finished (tests, shutdown)."""
        while self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)

    async def _loop(self) -> None:
        assert self._sub is not None
        async for change in self._sub:
            dropped = self._sub.dropped
            if dropped > self._dropped_seen:
                log.error(
                    "rule actions fell behind: %d alarm changes lost (queue %d)",
                    dropped - self._dropped_seen,
                    self.queue,
                )
                self.counts["alarms.dropped"] += dropped - self._dropped_seen
                self._dropped_seen = dropped
            if not isinstance(change, AlarmChange):
                continue
            try:
                await self.handle(change)
            except Exception:
                log.exception("actions for alarm %s (%s) failed", change.alarm, change.kind)

    async def handle(self, change: AlarmChange) -> None:
        """Run the actions of ``change``'s rule that apply to it."""
        if change.rule is None or change.kind not in ("raised", "cleared"):
            return
        found = await asyncio.to_thread(self._spec, change)
        if found is None:
            log.warning("alarm %s: rule %s not found; no actions", change.alarm, change.rule)
            return
        spec, version = found
        raised = change.kind == "raised"
        for i, action in enumerate(spec.actions):
            state_metric = action.kind == "metric" and action.value in (None, "state")
            if not (raised or action.on_clear or state_metric):
                continue
            try:
                await self._run(change, spec, version, action)
            except YugongError as exc:
                self.counts[f"{action.kind}.refused"] += 1
                log.warning(
                    "rule %s action %d (%s) for alarm %s refused: %s",
                    change.rule,
                    i,
                    action.kind,
                    change.alarm,
                    exc.detail,
                )

    async def _run(self, change: AlarmChange, spec: RuleSpec, version: str, action: Action) -> None:
        if action.kind == "webhook":
            await self._webhook(change, spec, version, action)
        elif action.kind == "email":
            await self._email(change, spec, action)
        elif action.kind == "command":
            self._spawn(self._command(change, action))
        else:
            await self._metric(change, action)

    def _spawn(self, job: Any) -> None:
        task = asyncio.create_task(job)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    # Rules ---------------------------------------------------------------------------------

    def _spec(self, change: AlarmChange) -> tuple[RuleSpec, str] | None:
        """The spec of the rule version that raised the alarm (cached; versions never
        change), else the rule's current one."""
        assert change.rule is not None
        with self.db.session() as s:
            alarm = s.get(Alarm, change.alarm)
            version = alarm.rule_version if alarm is not None else None
            if version is None:
                rule = s.get(Rule, change.rule)
                if rule is None:
                    return None
                version = rule.version
            key = (change.rule, version)
            if key in self._specs:
                self._specs.move_to_end(key)
                return self._specs[key]
            row = s.scalars(
                select(RuleVersion).where(
                    RuleVersion.rule_id == change.rule, RuleVersion.version == version
                )
            ).first()
            raw = row.spec if row is not None else None
            if raw is None:
                rule = s.get(Rule, change.rule)
                raw = rule.spec if rule is not None else None
            if raw is None:
                return None
        found = (RuleSpec.model_validate(raw), str(version))
        self._specs[key] = found
        if len(self._specs) > _SPEC_CACHE:
            self._specs.popitem(last=False)
        return found

    # Notifications -------------------------------------------------------------------------

    async def _webhook(
        self, change: AlarmChange, spec: RuleSpec, version: str, action: Action
    ) -> None:
        if action.target is None:
            raise ActionRefused("a webhook action names its notification target (target)")
        target = await asyncio.to_thread(self.notify.targets.resolve, change.tenant, action.target)
        if target.kind != "webhook":
            raise ActionRefused(f"notification target '{target.name}' is not a webhook")
        data = {
            "alarm": asdict(change),
            "rule": {
                "id": change.rule,
                "version": int(version),
                "name": spec.name,
                "severity": spec.severity,
                "condition": spec.condition.model_dump(by_alias=True, exclude_none=True),
            },
        }
        self.notify.post_webhook(target, f"alarm.{change.kind}", data)
        self.counts["webhook.ok"] += 1

    async def _email(self, change: AlarmChange, spec: RuleSpec, action: Action) -> None:
        targets = self.notify.targets
        if action.target is not None:
            target = await asyncio.to_thread(targets.resolve, change.tenant, action.target)
            if target.kind != "email":
                raise ActionRefused(f"notification target '{target.name}' is not an e-mail sender")
        else:
            only = await asyncio.to_thread(targets.only_of_kind, change.tenant, "email")
            if only is None:
                raise ActionRefused(
                    "the e-mail action names no target and the tenant has not exactly one"
                )
            target = only
        if not (action.to or target.config.get("to")):
            raise ActionRefused(f"no recipients: set 'to' or config.to of '{target.name}'")
        self.notify.send_email(target, list(action.to), self._mail(change, spec))
        self.counts["email.ok"] += 1

    def _mail(self, change: AlarmChange, spec: RuleSpec) -> Mail:
        from datetime import UTC, datetime

        device = self.directory.by_id(change.device) if change.device is not None else None
        when = datetime.fromtimestamp(change.at_us / US_PER_S, UTC).isoformat(timespec="seconds")
        sev = change.severity
        lines = [
            ("Alarm / 告警", change.name),
            ("Severity / 级别", f"{sev} / {SEVERITY_ZH.get(sev, sev)}"),
            ("State / 状态", change.state),
            ("Device / 设备", device.name if device is not None else str(change.device)),
            ("Time / 时间", when),
            ("Value / 数值", "" if change.value is None else f"{change.value:g}"),
            ("Rule / 规则", f"{spec.name} (#{change.rule})"),
            ("Alarm id / 告警编号", str(change.alarm)),
        ]
        en = "Alarm raised" if change.kind == "raised" else "Alarm cleared"
        return Mail(
            f"[{SEVERITY_ZH.get(sev, sev)}] {KIND_ZH.get(change.kind, change.kind)}: {change.name}",
            f"[{sev.upper()}] {en}: {change.name}",
            lines,
            intro=spec.description,
        )

    # Commands ------------------------------------------------------------------------------

    async def _command(self, change: AlarmChange, action: Action) -> None:
        device = action.device if action.device is not None else change.device
        assert change.rule is not None
        try:
            if device is None or not action.property:
                raise ActionRefused("a command action needs a device and a property")
            outcome = await self._write(change.tenant, change.rule, device, action)
        except YugongError as exc:
            self.counts["command.failed"] += 1
            log.warning(
                "rule %s command %s=%r on device %s failed: %s",
                change.rule,
                action.property,
                action.value,
                device,
                exc.detail,
            )
            return
        self.counts["command.ok"] += 1
        log.info("rule %s wrote %s on device %s: %s", change.rule, action.property, device, outcome)

    async def _write(self, tenant: int, rule: int, device: int, action: Action) -> Any:
        """Through the command log when the service keeps one (``submit`` records the rule);
        a refusal before anything was recorded (e.g. no downlink) is recorded here."""
        service = self._commands()
        principal = rule_principal(tenant, rule)
        prop, value = action.property or "", action.value
        submit = getattr(service, "submit", None)
        write = getattr(service, "write_property", None)
        try:
            if submit is not None and "rule_id" in inspect.signature(submit).parameters:
                record = await submit(
                    principal, device, "write", prop, value=value, rule_id=rule, wait=True
                )
                if record.status != "acknowledged":
                    raise ActionRefused(f"command {record.id} {record.status}: {record.result}")
                return record
            if write is None:
                raise ActionRefused("the platform has no command service")
            outcome = await write(principal, device, prop, value)
        except ActionRefused:
            raise
        except YugongError as exc:
            await asyncio.to_thread(self._record, tenant, rule, device, action, exc)
            raise
        await asyncio.to_thread(self._record, tenant, rule, device, action, None)
        return outcome

    def _record(
        self, tenant: int, rule: int, device: int, action: Action, error: YugongError | None
    ) -> None:
        """The command log entry (and audit entry) of a write the service did not record."""
        from yugong.infra.db import utcnow
        from yugong.platform.command_models import Command
        from yugong.platform.registry.models import Device

        status = "acknowledged"
        result: dict[str, Any] = {}
        if error is not None:
            status = "timed_out" if error.status == 504 else "failed"
            result = {"error": error.detail, "status": error.status}
        with self.db.session() as s:
            known = s.get(Device, device)
            if known is None or known.tenant_id != tenant:
                return  # nothing to attach the entry to; the failure is logged
            now = utcnow()
            row = Command(
                tenant_id=tenant,
                device_id=device,
                kind="write",
                name=action.property or "",
                params={"value": action.value},
                status=status,
                result=result,
                created_by=f"rule:{rule}",
                rule_id=rule,
                sent_at=now if status != "failed" else None,
                done_at=now,
            )
            s.add(row)
            s.flush()
            if self.audit is not None:
                self.audit.record(
                    "command.write",
                    outcome="ok" if error is None else "failed",
                    tenant_id=tenant,
                    target_type="device",
                    target_id=device,
                    detail={"command": row.id, "property": row.name, "rule": rule, **result},
                    actor_kind="system",
                    actor_id=0,
                    actor_name=f"rule:{rule}",
                    session=s,
                )

    # Derived metrics ------------------------------------------------------------------------

    async def _metric(self, change: AlarmChange, action: Action) -> None:
        if change.device is None or not action.property:
            raise ActionRefused("a metric action needs the alarm's device and a property")
        binding = await asyncio.to_thread(self.directory.by_id, change.device)
        if binding is None or binding.tenant != change.tenant:
            raise NotFound(f"device {change.device} not found")
        try:
            _metric_property(binding, action.property, "property")
            _metric_value(action, "action")
        except InvalidInput as exc:
            raise ActionRefused(exc.detail) from None
        value = self._metric_number(change, action)
        if value is None:
            return
        columns = {action.property: (np.array([change.at_us], dtype=np.int64), [value])}
        await self.ingest.ingest_columns(binding, columns)
        self.counts["metric.ok"] += 1

    @staticmethod
    def _metric_number(change: AlarmChange, action: Action) -> float | None:
        if action.value in (None, "state"):
            return 1.0 if change.kind == "raised" else 0.0
        if action.value == "value":
            return change.value
        return float(action.value)


__all__ = ["ActionDispatcher", "ActionRefused", "check_actions", "rule_principal"]
