"""The command log and the per-device queues.

Every property write and service call becomes a ``commands`` row: ``queued`` when accepted,
``sent`` once handed to the device's downlink, then ``acknowledged``, ``failed`` or
``timed_out`` with its result (the value written, the service's output, or the error the
device or gateway gave). The row and its audit entry (``commands.write`` /
``commands.service``) are written in one transaction.

Commands to one device go out one at a time, in the order they were accepted: each device
has a queue and a worker task that exists while the queue has work. Just before a command is
sent, its device's downlink is checked again; a device that went offline while the command
waited fails it, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select

from yugong.core.errors import Conflict, YugongError
from yugong.infra.db import Database, utcnow
from yugong.platform.command_models import Command
from yugong.security.audit import AuditLog

log = logging.getLogger(__name__)

Final = Literal["acknowledged", "failed", "timed_out"]
STATUSES = ("queued", "sent", "acknowledged", "failed", "timed_out")
UNFINISHED = ("queued", "sent")


@dataclass(frozen=True)
class CommandRecord:
    id: int
    tenant: int
    device: int
    kind: str
    name: str
    params: dict[str, Any]
    status: str
    result: dict[str, Any]
    timeout_s: float
    created_at: datetime
    sent_at: datetime | None
    done_at: datetime | None
    created_by: str
    rule_id: int | None

    @classmethod
    def of(cls, row: Command) -> CommandRecord:
        return cls(
            row.id,
            row.tenant_id,
            row.device_id,
            row.kind,
            row.name,
            dict(row.params or {}),
            row.status,
            dict(row.result or {}),
            row.timeout_s,
            row.created_at,
            row.sent_at,
            row.done_at,
            row.created_by,
            row.rule_id,
        )


@dataclass(frozen=True)
class Delivery:
    """How a sent command ended; ``error`` is what a synchronous caller is told."""

    status: Final
    result: dict[str, Any]
    error: YugongError | None = None


@dataclass
class Job:
    command: int
    device: int
    ready: Callable[[], str | None]  # why it cannot be sent now, or None
    send: Callable[[], Awaitable[Delivery]]
    done: asyncio.Future[tuple[CommandRecord, Delivery]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class CommandLog:
    """The ``commands`` table; every method is blocking (run it in a thread)."""

    def __init__(
        self,
        db: Database | Callable[[], Database],
        audit: AuditLog | Callable[[], AuditLog | None] | None = None,
    ) -> None:
        # Either may be a callable: the platform's database exists once it has started.
        self._db = db
        self._audit = audit

    @property
    def db(self) -> Database:
        return self._db() if callable(self._db) else self._db

    @property
    def audit(self) -> AuditLog | None:
        return self._audit() if callable(self._audit) else self._audit

    def create(
        self,
        *,
        tenant: int,
        device: int,
        kind: str,
        name: str,
        params: dict[str, Any],
        timeout_s: float,
        created_by: str,
        rule_id: int | None,
    ) -> CommandRecord:
        with self.db.session() as s:
            row = Command(
                tenant_id=tenant,
                device_id=device,
                kind=kind,
                name=name,
                params=params,
                status="queued",
                result={},
                timeout_s=timeout_s,
                created_at=utcnow(),
                created_by=created_by,
                rule_id=rule_id,
            )
            s.add(row)
            s.flush()
            if self.audit is not None:
                self.audit.record(
                    f"commands.{kind}",
                    tenant_id=tenant,
                    target_type="device",
                    target_id=device,
                    detail={
                        "command": row.id,
                        "name": name,
                        "params": params,
                        **({"rule_id": rule_id} if rule_id is not None else {}),
                    },
                    session=s,
                )
            return CommandRecord.of(row)

    def sent(self, command: int) -> None:
        with self.db.session() as s:
            row = s.get(Command, command)
            if row is not None:
                row.status, row.sent_at = "sent", utcnow()

    def finish(self, command: int, status: Final, result: dict[str, Any]) -> CommandRecord:
        with self.db.session() as s:
            row = s.get(Command, command)
            if row is None:
                raise LookupError(f"command {command} is gone")
            row.status, row.result, row.done_at = status, result, utcnow()
            return CommandRecord.of(row)

    def abandon(self, commands: list[int]) -> None:
        """Fail commands the platform stopped before they finished."""
        why = {"error": "the platform stopped before the command finished"}
        with self.db.session() as s:
            for row in s.scalars(
                select(Command).where(Command.id.in_(commands), Command.status.in_(UNFINISHED))
            ):
                row.status, row.result, row.done_at = "failed", why, utcnow()

    def fail_leftovers(self) -> int:
        """At start: commands a previous run left queued or sent (it crashed, or was killed)
        can no longer be answered; fail them, saying so. Returns how many."""
        why = {"error": "the platform restarted before the command finished"}
        with self.db.session() as s:
            rows = s.scalars(select(Command).where(Command.status.in_(UNFINISHED))).all()
            for row in rows:
                row.status, row.result, row.done_at = "failed", why, utcnow()
            return len(rows)

    def get(self, command: int) -> CommandRecord | None:
        with self.db.session() as s:
            row = s.get(Command, command)
            return CommandRecord.of(row) if row is not None else None

    def page(
        self, device: int, *, status: str | None, offset: int, limit: int
    ) -> tuple[list[CommandRecord], int]:
        where = [Command.device_id == device]
        if status is not None:
            where.append(Command.status == status)
        with self.db.session() as s:
            total = s.scalar(select(func.count()).select_from(Command).where(*where)) or 0
            rows = s.scalars(
                select(Command)
                .where(*where)
                .order_by(Command.id.desc())
                .offset(offset)
                .limit(limit)
            )
            return [CommandRecord.of(r) for r in rows], int(total)


class CommandQueue:
    """One queue and (while it has work) one worker per device."""

    def __init__(self, log_: CommandLog) -> None:
        self.log = log_
        self._queues: dict[int, deque[Job]] = {}
        self._workers: set[asyncio.Task[None]] = set()

    def put(self, job: Job) -> None:
        queue = self._queues.get(job.device)
        if queue is not None:
            queue.append(job)
            return
        self._queues[job.device] = deque([job])
        task = asyncio.create_task(self._work(job.device), name=f"commands-{job.device}")
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    def waiting(self, device: int) -> int:
        return len(self._queues.get(device, ()))

    async def _work(self, device: int) -> None:
        queue = self._queues[device]
        while queue:
            job = queue[0]
            try:
                record, delivery = await self._run(job)
            except asyncio.CancelledError:
                job.done.cancel()
                raise
            except Exception as exc:
                if not job.done.done():
                    job.done.set_exception(exc)
                log.exception("command %s could not be completed", job.command)
            else:
                if not job.done.done():
                    job.done.set_result((record, delivery))
            finally:
                queue.popleft()
        del self._queues[device]

    async def _run(self, job: Job) -> tuple[CommandRecord, Delivery]:
        why = job.ready()
        if why is not None:
            detail = f"command {job.command} not sent: {why}"
            delivery = Delivery("failed", {"error": f"not sent: {why}"}, Conflict(detail))
        else:
            await asyncio.to_thread(self.log.sent, job.command)
            try:
                delivery = await job.send()
            except YugongError as exc:
                delivery = Delivery("failed", {"error": exc.detail}, exc)
        record = await asyncio.to_thread(
            self.log.finish, job.command, delivery.status, delivery.result
        )
        return record, delivery

    async def close(self) -> None:
        """Stop the workers; commands not finished yet are failed, saying so."""
        unfinished = [job.command for queue in self._queues.values() for job in queue]
        for task in list(self._workers):
            task.cancel()
        for task in list(self._workers):
            with contextlib.suppress(BaseException):  # cancelled on purpose
                await task
        if unfinished:
            await asyncio.to_thread(self.log.abandon, unfinished)
