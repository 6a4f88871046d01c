"""Finding alarms: the filters of the alarm list, the asset subtree, the summary."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from yugong.core.errors import FieldError, NotFound
from yugong.platform.alarms.models import Alarm
from yugong.platform.alarms.records import OPEN_STATES, STATE_FILTERS, at_us
from yugong.platform.registry._common import check_paging, invalid
from yugong.platform.registry.models import Asset
from yugong.platform.rules.spec import SEVERITIES


@dataclass(frozen=True, slots=True)
class AlarmFilter:
    """The alarm list's filters; ``None`` (or empty) means "any". Times are epoch µs and
    select by the time the alarm was raised: ``since <= raised_at < until``."""

    asset: int | None = None  # the asset and everything under it
    device: int | None = None
    severity: Sequence[str] = ()
    state: Sequence[str] = ()  # active, acknowledged, cleared, or "open" for the first two
    since_us: int | None = None
    until_us: int | None = None
    rule: int | None = None
    assignee: int | None = None


def check_filter(f: AlarmFilter) -> None:
    for sev in f.severity:
        if sev not in SEVERITIES:
            raise invalid("severity", f"{sev!r} is not one of {', '.join(SEVERITIES)}")
    for st in f.state:
        if st not in STATE_FILTERS:
            raise invalid("state", f"{st!r} is not one of {', '.join(STATE_FILTERS)}")
    if f.since_us is not None and f.until_us is not None and f.until_us <= f.since_us:
        raise invalid("until", "must be after since")


def check_page(limit: int, offset: int, before: int | None) -> None:
    check_paging(limit, offset)
    if before is not None and before < 1:
        raise invalid("before", "must be an alarm id (>= 1)")


def subtree(s: Session, tenant: int, root: int) -> list[int]:
    """The asset ``root`` and all its descendants, within ``tenant``."""
    rows = s.execute(select(Asset.id, Asset.parent_id).where(Asset.tenant_id == tenant)).all()
    if not any(r.id == root for r in rows):
        raise NotFound(f"asset {root} not found", [FieldError("asset", "no such asset")])
    children: dict[int | None, list[int]] = {}
    for r in rows:
        children.setdefault(r.parent_id, []).append(r.id)
    out, todo = [], [root]
    while todo:
        node = todo.pop()
        out.append(node)
        todo.extend(children.get(node, ()))
    return out


def filtered(s: Session, tenant: int, f: AlarmFilter) -> Select[Alarm]:
    q = select(Alarm).where(Alarm.tenant_id == tenant)
    if f.asset is not None:
        q = q.where(Alarm.asset_id.in_(subtree(s, tenant, f.asset)))
    if f.device is not None:
        q = q.where(Alarm.device_id == f.device)
    if f.severity:
        q = q.where(Alarm.severity.in_(list(f.severity)))
    if f.state:
        q = q.where(Alarm.state.in_(_states(f.state)))
    if f.since_us is not None:
        q = q.where(Alarm.raised_at >= at_us(f.since_us))
    if f.until_us is not None:
        q = q.where(Alarm.raised_at < at_us(f.until_us))
    if f.rule is not None:
        q = q.where(Alarm.rule_id == f.rule)
    if f.assignee is not None:
        q = q.where(Alarm.assignee_id == f.assignee)
    return q


def _states(words: Iterable[str]) -> list[str]:
    out: set[str] = set()
    for w in words:
        out.update(OPEN_STATES if w == "open" else (w,))
    return sorted(out)


def page(
    s: Session, q: Select[Alarm], limit: int, offset: int, before: int | None
) -> tuple[list[Alarm], int]:
    """Newest first (by id). ``total`` counts every match of the filters (not the cursor);
    ``before`` continues after the last id of the previous page."""
    total = s.scalar(select(func.count()).select_from(q.subquery())) or 0
    if before is not None:
        q = q.where(Alarm.id < before)
    rows = s.scalars(q.order_by(Alarm.id.desc()).limit(limit).offset(offset)).all()
    return list(rows), total


def summary(s: Session, tenant: int) -> dict[str, Any]:
    """Open alarms of the tenant by severity, and how many of them nobody acknowledged."""
    rows = s.execute(
        select(Alarm.severity, Alarm.state, func.count())
        .where(Alarm.tenant_id == tenant, Alarm.state.in_(OPEN_STATES))
        .group_by(Alarm.severity, Alarm.state)
    ).all()
    open_by = dict.fromkeys(SEVERITIES, 0)
    unacked = dict.fromkeys(SEVERITIES, 0)
    for severity, state, n in rows:
        open_by[severity] = open_by.get(severity, 0) + int(n)
        if state == "active":
            unacked[severity] = unacked.get(severity, 0) + int(n)
    return {
        "tenant_id": tenant,
        "open": open_by,
        "unacknowledged": unacked,
        "total": sum(open_by.values()),
    }
