"""What flows between the rule engine, the alarms and the actions.

The engine is pure and synchronous: it is given the active rules (:class:`ActiveRule`,
targets already resolved to devices and series) and sample batches (``SAMPLE_SCHEMA``), and
returns :class:`Transition` records. The alarm service turns transitions into alarm changes
(:class:`AlarmChange`, published on the bus topic ``"alarms"``); the actions react to those.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from yugong.platform.rules.spec import RuleSpec

ALARMS_TOPIC = "alarms"


@dataclass(frozen=True, slots=True)
class ActiveRule:
    id: int
    version: int
    tenant: int
    spec: RuleSpec
    # device id -> property identifier -> series id, for every device the target covers
    # (only the properties the condition reads).
    series: Mapping[int, Mapping[str, int]]


@dataclass(frozen=True, slots=True)
class Transition:
    """The rule's condition began (``raised``) or ended on one device."""

    rule: int
    version: int
    tenant: int
    device: int
    raised: bool
    at_us: int  # time of the sample (or the timer) that decided it
    value: float | None = None  # the deciding value, when there is one
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AlarmChange:
    """What happened to an alarm: ``raised``, ``repeated``, ``acknowledged``, ``assigned``,
    ``commented``, ``cleared``."""

    alarm: int
    tenant: int
    rule: int | None
    device: int | None
    kind: str
    state: str  # active, acknowledged, cleared
    severity: str
    name: str
    at_us: int
    value: float | None = None
    actor: str = "rule"
    detail: dict[str, Any] = field(default_factory=dict)


__all__ = ["ALARMS_TOPIC", "ActiveRule", "AlarmChange", "Transition"]
