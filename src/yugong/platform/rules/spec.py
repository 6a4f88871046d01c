"""What a rule says, as people write it (API JSON or YAML files) — validated with errors
naming the field.

::

    name: Spindle too hot
    target: {product: cnc-machine}        # or {device: 7} or {asset: 3}
    severity: major                       # critical | major | minor | warning
    condition:
      kind: sustained                     # see the kinds below
      property: spindle_temp
      op: ">"
      value: 80
      for: 5m
    clear: {hysteresis: 2}                # clear when the condition is false by this margin
    actions: [{kind: webhook, target: ops-webhook}, {kind: email, to: [ops@example.com]}]

Kinds (``condition.kind``):

- ``threshold``: ``property`` ``op`` (``>``, ``>=``, ``<``, ``<=``) ``value``, or ``op``
  ``inside``/``outside`` with ``low``/``high``; raised on the first sample that meets it.
- ``sustained``: a threshold that holds for ``for`` (a duration) without interruption.
- ``rate``: the change per second between consecutive samples of ``property`` compared with
  ``op`` ``value`` (``abs: true`` for the magnitude).
- ``deviation``: the z-score of a sample against the rolling mean and deviation of the last
  ``window`` (a duration) over ``value`` (e.g. 3), once ``min_samples`` are seen.
- ``expression``: a boolean expression over several properties of one device (the edge's
  safe expression language), evaluated on the device's latest value of each.
- ``no_data``: no sample of ``property`` (or of any property when omitted) for ``for``.
- ``state_change``: ``property`` changes value (optionally ``from``/``to`` given values).
- ``count``: more than ``value`` samples meeting a threshold within ``window``.

Hysteresis (``clear.hysteresis``) applies to the threshold-like kinds: an alarm raised at
``temp > 80`` clears only at ``temp <= 78`` with hysteresis 2. ``clear.manual: true`` leaves
clearing to people.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from yugong.core.timeutil import parse_duration_us

Severity = Literal["critical", "major", "minor", "warning"]
SEVERITIES: tuple[str, ...] = ("critical", "major", "minor", "warning")
Compare = Literal[">", ">=", "<", "<="]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _duration_s(value: Any) -> float:
    """``5m``, ``30s``, ``1h`` or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = parse_duration_us(value) / 1e6
    else:
        raise ValueError("a duration is a number of seconds or text like 30s, 5m, 1h")
    if seconds <= 0:
        raise ValueError("a duration must be positive")
    return seconds


class Target(_Model):
    """Exactly one of: a device, every device of a product (key), every device under an
    asset (the asset and its descendants)."""

    device: int | None = None
    product: str | None = None
    asset: int | None = None

    @model_validator(mode="after")
    def _one(self) -> Target:
        given = [k for k in ("device", "product", "asset") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("name exactly one of device, product or asset")
        return self


class _Threshold(_Model):
    property: str
    op: Compare | Literal["inside", "outside"]
    value: float | None = None
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _bounds(self) -> Any:
        if self.op in ("inside", "outside"):
            if self.low is None or self.high is None or self.low > self.high:
                raise ValueError(f"op {self.op!r} needs low <= high")
        elif self.value is None:
            raise ValueError(f"op {self.op!r} needs a value")
        return self


class ThresholdCondition(_Threshold):
    kind: Literal["threshold"] = "threshold"


class SustainedCondition(_Threshold):
    kind: Literal["sustained"] = "sustained"
    for_s: float = Field(alias="for")

    _d = field_validator("for_s", mode="before")(_duration_s)


class RateCondition(_Model):
    kind: Literal["rate"] = "rate"
    property: str
    op: Compare
    value: float  # per second
    abs: bool = False


class DeviationCondition(_Model):
    kind: Literal["deviation"] = "deviation"
    property: str
    value: float = Field(3.0, gt=0)  # z-score
    window_s: float = Field(3600.0, alias="window")
    min_samples: int = Field(30, ge=2)

    _d = field_validator("window_s", mode="before")(_duration_s)


class ExpressionCondition(_Model):
    kind: Literal["expression"] = "expression"
    expression: str

    @field_validator("expression")
    @classmethod
    def _compiles(cls, v: str) -> str:
        from yugong.core.expr import compile_expr

        compile_expr(v)  # raises ExprError naming the construct and column
        return v


class NoDataCondition(_Model):
    kind: Literal["no_data"] = "no_data"
    property: str | None = None
    for_s: float = Field(alias="for")

    _d = field_validator("for_s", mode="before")(_duration_s)


class StateChangeCondition(_Model):
    kind: Literal["state_change"] = "state_change"
    property: str
    from_value: float | str | None = Field(None, alias="from")
    to_value: float | str | None = Field(None, alias="to")


class CountCondition(_Threshold):
    kind: Literal["count"] = "count"
    count: int = Field(ge=1)  # more than this many matching samples ...
    window_s: float = Field(alias="window")  # ... within this long

    _d = field_validator("window_s", mode="before")(_duration_s)


Condition = Annotated[
    ThresholdCondition
    | SustainedCondition
    | RateCondition
    | DeviationCondition
    | ExpressionCondition
    | NoDataCondition
    | StateChangeCondition
    | CountCondition,
    Field(discriminator="kind"),
]


class Clear(_Model):
    hysteresis: float = Field(0.0, ge=0)
    manual: bool = False


class Action(_Model):
    """What happens when the rule's alarm is raised (and, with ``on_clear``, cleared)."""

    kind: Literal["webhook", "email", "command", "metric"]
    target: str | None = None  # webhook: a notification target's name
    to: list[str] = Field(default_factory=list)  # email recipients
    device: int | None = None  # command: the device (default: the alarm's source)
    property: str | None = None  # command: rw property; metric: the derived property
    value: Any = None  # command: the value to write
    on_clear: bool = False


class RuleSpec(_Model):
    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    target: Target
    severity: Severity = "warning"
    condition: Condition
    clear: Clear = Field(default_factory=Clear)
    actions: list[Action] = Field(default_factory=list)
    enabled: bool = True


__all__ = [
    "SEVERITIES",
    "Action",
    "Clear",
    "Condition",
    "CountCondition",
    "DeviationCondition",
    "ExpressionCondition",
    "NoDataCondition",
    "RateCondition",
    "RuleSpec",
    "Severity",
    "StateChangeCondition",
    "SustainedCondition",
    "Target",
    "ThresholdCondition",
]
