"""Edge processing: unit conversion, computed points, report by exception, window aggregation.

Every step takes an edge batch (:data:`yugong.edge.samples.EDGE_SCHEMA`) and returns one, and
works column-wise: rows are grouped by ``(device, point)`` key with NumPy, never handled one
Python object per sample. Steps keep their state in plain attributes (``snapshot()`` /
``restore()``) so a gateway can persist it and resume after a restart.

A :class:`Pipeline` chains named steps; any ``Callable[[pa.Table], pa.Table]`` is a step.
:func:`build_pipeline` makes one from a :class:`PipelineConfig`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, Protocol, cast, runtime_checkable

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from yugong.core.errors import FieldError, InvalidInput
from yugong.core.expr import Expression, compile_expr
from yugong.core.quality import Quality
from yugong.core.units import unit_factor
from yugong.edge.samples import EDGE_SCHEMA

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U8 = npt.NDArray[np.uint8]
_TS_MIN = np.iinfo(np.int64).min
_US = 1_000_000


def _empty() -> pa.Table:
    return EDGE_SCHEMA.empty_table()


def _values(batch: pa.Table) -> F64:
    """The value column as float64 with nulls as NaN."""
    col = batch.column("value")
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _make(
    devices: Sequence[str] | npt.NDArray[Any],
    points: Sequence[str] | npt.NDArray[Any],
    ts: I64,
    values: F64,
    quality: U8,
    text: pa.Array | None = None,
) -> pa.Table:
    n = len(ts)
    return pa.Table.from_arrays(
        [
            pa.array(devices, pa.string()),
            pa.array(points, pa.string()),
            pa.array(ts, pa.int64()),
            pa.array(values, pa.float64(), from_pandas=True),  # NaN -> null
            text if text is not None else pa.nulls(n, pa.string()),
            pa.array(quality, pa.uint8()),
        ],
        schema=EDGE_SCHEMA,
    )


def _concat(tables: Sequence[pa.Table]) -> pa.Table:
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return _empty()
    return tables[0] if len(tables) == 1 else pa.concat_tables(tables)


class _Keys:
    """Stable integer ids for ``(device, point)`` keys, so per-key state lives in arrays."""

    def __init__(self) -> None:
        self.ids: dict[tuple[str, str], int] = {}
        self.devices: list[str] = []
        self.points: list[str] = []

    def _add(self, key: tuple[str, str]) -> int:
        kid = self.ids[key] = len(self.devices)
        self.devices.append(key[0])
        self.points.append(key[1])
        return kid

    def __len__(self) -> int:
        return len(self.devices)

    def of(self, batch: pa.Table) -> tuple[I64, I64]:
        """Per-row key ids, plus the ids of keys first seen in this batch."""
        dev = pc.dictionary_encode(batch.column("device")).combine_chunks()
        pnt = pc.dictionary_encode(batch.column("point")).combine_chunks()
        dcode = dev.indices.to_numpy().astype(np.int64)
        pcode = pnt.indices.to_numpy().astype(np.int64)
        npnt = max(len(pnt.dictionary), 1)
        combo = dcode * npnt + pcode
        uniq, inverse = np.unique(combo, return_inverse=True)
        dnames = dev.dictionary.to_pylist()
        pnames = pnt.dictionary.to_pylist()
        mapped = np.empty(len(uniq), dtype=np.int64)
        start = len(self)
        for i, c in enumerate(uniq.tolist()):  # one lookup per key, not per row
            key = (dnames[c // npnt], pnames[c % npnt])
            kid = self.ids.get(key)
            mapped[i] = self._add(key) if kid is None else kid
        return mapped[inverse], np.arange(start, len(self), dtype=np.int64)

    def snapshot(self) -> list[tuple[str, str]]:
        return list(zip(self.devices, self.points, strict=True))

    def restore(self, keys: Sequence[Sequence[str]]) -> None:
        self.ids, self.devices, self.points = {}, [], []
        for d, p in keys:
            self._add((d, p))


def _grow(a: npt.NDArray[Any], n: int, fill: Any) -> npt.NDArray[Any]:
    if len(a) >= n:
        return a
    out = np.full(max(n, 2 * len(a), 16), fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


def _rank_in_group(key: I64) -> I64:
    """Position of each row within its run of equal ``key`` (``key`` must be sorted)."""
    n = len(key)
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if n else np.empty(0, np.int64)
    lengths = np.diff(np.r_[starts, n])
    return np.arange(n, dtype=np.int64) - np.repeat(starts, lengths)


# ---------------------------------------------------------------- config models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Deadband(_Model):
    """Report a value when it moved more than ``absolute`` OR more than ``percent`` of
    ``|last reported|``; with neither set, every change is reported."""

    absolute: float | None = Field(default=None, ge=0)
    percent: float | None = Field(default=None, ge=0)


class ReportByExceptionConfig(Deadband):
    kind: Literal["report_by_exception"] = "report_by_exception"
    name: str | None = None
    heartbeat_s: float | None = Field(
        default=None, gt=0, description="report anyway after this long without a report"
    )
    points: dict[str, Deadband] = Field(
        default_factory=dict, description="per-point deadbands, overriding the default"
    )


Aggregate = Literal["min", "max", "avg", "last"]


def _default_aggregates() -> list[Aggregate]:
    return ["avg"]


class WindowConfig(_Model):
    kind: Literal["window"] = "window"
    name: str | None = None
    seconds: float = Field(gt=0, description="tumbling window length")
    aggregates: list[Aggregate] = Field(default_factory=_default_aggregates, min_length=1)
    points: list[str] | None = Field(
        default=None, description="points to aggregate; others pass through (None: all)"
    )
    lateness_s: float | None = Field(
        default=None,
        ge=0,
        description="how long past its end a window waits for quiet points (None: one window)",
    )
    suffix: bool = Field(
        default=True, description="name outputs <point>_<aggregate>; False needs one aggregate"
    )


class UnitConversion(_Model):
    from_unit: str = Field(alias="from")
    to_unit: str = Field(alias="to")


class UnitsConfig(_Model):
    kind: Literal["units"] = "units"
    name: str | None = None
    points: dict[str, UnitConversion]


class ComputeConfig(_Model):
    kind: Literal["compute"] = "compute"
    name: str | None = None
    points: dict[str, str] = Field(description="output point -> expression over device points")
    devices: list[str] | None = Field(default=None, description="devices to compute on (all)")


StepConfig = Annotated[
    UnitsConfig | ComputeConfig | ReportByExceptionConfig | WindowConfig,
    Field(discriminator="kind"),
]


class PipelineConfig(_Model):
    steps: list[StepConfig] = Field(default_factory=list)


# ---------------------------------------------------------------- steps


@runtime_checkable
class Stateful(Protocol):
    def snapshot(self) -> dict[str, Any]: ...
    def restore(self, state: dict[str, Any]) -> None: ...


class UnitConvert:
    """Per point ``value * factor + offset``; factors come from pint once, at configuration."""

    def __init__(self, points: dict[str, tuple[str, str]]) -> None:
        self.factors = {p: unit_factor(f, t, f"units.points.{p}") for p, (f, t) in points.items()}

    def __call__(self, batch: pa.Table) -> pa.Table:
        if not batch.num_rows or not self.factors:
            return batch
        pnt = pc.dictionary_encode(batch.column("point")).combine_chunks()
        names = pnt.dictionary.to_pylist()
        fac = np.array([self.factors.get(p, (1.0, 0.0))[0] for p in names], dtype=np.float64)
        off = np.array([self.factors.get(p, (1.0, 0.0))[1] for p in names], dtype=np.float64)
        codes = pnt.indices.to_numpy()
        out = _values(batch) * fac[codes] + off[codes]
        col = pa.array(out, pa.float64(), from_pandas=True)
        return batch.set_column(batch.schema.get_field_index("value"), "value", col)


class ReportByException:
    """Forward a sample only when it says something new about its point.

    A sample of a ``(device, point)`` is reported when it is the first one seen, when its
    quality differs from the last reported, when its value left the deadband around the last
    reported value (NaN vs number counts as a change; text points report on any change), or
    when ``heartbeat_s`` passed since the last report. Rows are handled in time order per
    key; the loop runs over the position within a key (1 for a typical poll), vectorised
    across all keys.
    """

    def __init__(
        self,
        default: Deadband | None = None,
        points: dict[str, Deadband] | None = None,
        heartbeat_s: float | None = None,
    ) -> None:
        self.default = default or Deadband()
        self.per_point = dict(points or {})
        self.heartbeat_us = None if heartbeat_s is None else round(heartbeat_s * _US)
        self.keys = _Keys()
        self.abs_db = np.empty(0, np.float64)  # NaN: not configured
        self.pct_db = np.empty(0, np.float64)
        self.seen = np.empty(0, np.bool_)
        self.last_v = np.empty(0, np.float64)
        self.last_q = np.empty(0, np.uint8)
        self.last_ts = np.empty(0, np.int64)
        self.last_text: list[str | None] = []

    def _configure(self, new: I64) -> None:
        n = len(self.keys)
        self.abs_db = _grow(self.abs_db, n, np.nan)
        self.pct_db = _grow(self.pct_db, n, np.nan)
        self.seen = _grow(self.seen, n, False)
        self.last_v = _grow(self.last_v, n, np.nan)
        self.last_q = _grow(self.last_q, n, 0)
        self.last_ts = _grow(self.last_ts, n, 0)
        self.last_text.extend([None] * (n - len(self.last_text)))
        for k in new.tolist():
            db = self.per_point.get(self.keys.points[k], self.default)
            self.abs_db[k] = np.nan if db.absolute is None else db.absolute
            self.pct_db[k] = np.nan if db.percent is None else db.percent

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        if not n:
            return batch
        key, new = self.keys.of(batch)
        self._configure(new)
        ts = batch.column("ts").to_numpy()
        v = _values(batch)
        q = batch.column("quality").to_numpy()
        text_col = batch.column("text")
        texts = text_col.to_pylist() if text_col.null_count < n else None
        is_text = (
            np.zeros(n, np.bool_)
            if texts is None
            else np.asarray(pc.is_valid(text_col).to_numpy(zero_copy_only=False), dtype=np.bool_)
        )

        order = np.lexsort((ts, key))
        key_s = key[order]
        rank = _rank_in_group(key_s)
        keep = np.zeros(n, dtype=np.bool_)
        for r in range(int(rank.max()) + 1):
            sel = order[rank == r]  # at most one row per key: fancy-index updates are safe
            k = key[sel]
            vi, qi, ti = v[sel], q[sel], ts[sel]
            last = self.last_v[k]
            diff = np.abs(vi - last)
            nan_i, nan_l = np.isnan(vi), np.isnan(last)
            a, p = self.abs_db[k], self.pct_db[k]
            none = np.isnan(a) & np.isnan(p)
            moved = np.where(
                none,
                diff > 0,
                (~np.isnan(a) & (diff > a)) | (~np.isnan(p) & (diff > p / 100.0 * np.abs(last))),
            )
            report = ~self.seen[k] | (qi != self.last_q[k]) | (nan_i != nan_l) | moved
            if self.heartbeat_us is not None:
                report |= ti - self.last_ts[k] >= self.heartbeat_us
            if texts is not None:  # text rows only: a Python compare per text sample
                for j in np.flatnonzero(is_text[sel]).tolist():
                    if texts[sel[j]] != self.last_text[k[j]]:
                        report[j] = True
            rk, rows = k[report], sel[report]
            keep[rows] = True
            self.seen[rk] = True
            self.last_v[rk] = v[rows]
            self.last_q[rk] = q[rows]
            self.last_ts[rk] = ts[rows]
            if texts is not None:
                for row, kk in zip(rows.tolist(), rk.tolist(), strict=True):
                    self.last_text[kk] = texts[row]
        return batch.filter(pa.array(keep))

    def snapshot(self) -> dict[str, Any]:
        n = len(self.keys)
        return {
            "keys": self.keys.snapshot(),
            "seen": self.seen[:n].tolist(),
            "last_v": self.last_v[:n].tolist(),
            "last_q": self.last_q[:n].tolist(),
            "last_ts": self.last_ts[:n].tolist(),
            "last_text": self.last_text[:n],
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.keys.restore(state["keys"])
        self.last_text = []
        self.abs_db = np.empty(0, np.float64)
        self.pct_db = np.empty(0, np.float64)
        self.seen = np.empty(0, np.bool_)
        self.last_v = np.empty(0, np.float64)
        self.last_q = np.empty(0, np.uint8)
        self.last_ts = np.empty(0, np.int64)
        self._configure(np.arange(len(self.keys), dtype=np.int64))
        n = len(self.keys)
        self.seen[:n] = state["seen"]
        self.last_v[:n] = state["last_v"]
        self.last_q[:n] = state["last_q"]
        self.last_ts[:n] = state["last_ts"]
        self.last_text = list(state["last_text"])


_AGG_FIELDS = ("mn", "mx", "sm", "cnt", "last_ts", "last_v", "q", "nbad")


class WindowAggregate:
    """Tumbling windows of ``seconds`` per ``(device, point)``, aligned to the epoch.

    An emitted row is stamped with the window START (``ts - ts % width``), so a window and its
    inputs sort together. A window closes when its key receives a row of a later window, or
    when a row of any key is ``lateness_s`` (default: one window) past its end, so quiet
    points still emit, or
    on :meth:`flush`. Rows for a window that has already closed are late: they are dropped and
    counted in :attr:`late_dropped`. Empty windows (gaps) emit nothing.

    Aggregates use rows that carry a value; quality is the worst among them, raised to
    UNCERTAIN if some rows of the window had no value; a window with no value at all emits
    a null value with BAD quality. Text rows and points not listed pass through unchanged.
    """

    def __init__(
        self,
        seconds: float,
        aggregates: Sequence[str] = ("avg",),
        points: Sequence[str] | None = None,
        lateness_s: float | None = None,
        suffix: bool = True,
    ) -> None:
        self.width = round(seconds * _US)
        if self.width <= 0:
            raise InvalidInput("window: seconds must be positive", [FieldError("seconds", ">0")])
        bad = [a for a in aggregates if a not in ("min", "max", "avg", "last")]
        if bad or not aggregates:
            msg = f"unknown aggregates {bad}: use min, max, avg, last"
            raise InvalidInput(f"window: {msg}", [FieldError("aggregates", msg)])
        if not suffix and len(aggregates) != 1:
            msg = "suffix=False needs exactly one aggregate"
            raise InvalidInput(f"window: {msg}", [FieldError("suffix", msg)])
        self.aggregates = list(aggregates)
        self.points = None if points is None else set(points)
        self.lateness = self.width if lateness_s is None else round(lateness_s * _US)
        self.suffix = suffix
        self.keys = _Keys()
        self.late_dropped = 0
        self.watermark = _TS_MIN
        # Open window per key: start (_TS_MIN before any row) and its partial aggregate.
        self.start = np.empty(0, np.int64)
        self.open = np.empty(0, np.bool_)
        self.acc: dict[str, npt.NDArray[Any]] = {
            "mn": np.empty(0, np.float64),
            "mx": np.empty(0, np.float64),
            "sm": np.empty(0, np.float64),
            "cnt": np.empty(0, np.int64),
            "last_ts": np.empty(0, np.int64),
            "last_v": np.empty(0, np.float64),
            "q": np.empty(0, np.uint8),
            "nbad": np.empty(0, np.int64),
        }

    def _grow(self) -> None:
        n = len(self.keys)
        self.start = _grow(self.start, n, _TS_MIN)
        self.open = _grow(self.open, n, False)
        for f, a in self.acc.items():
            self.acc[f] = _grow(a, n, 0)

    def _split(self, batch: pa.Table) -> tuple[pa.Table, pa.Table]:
        """(rows to aggregate, rows to pass through)."""
        mask = pc.is_null(batch.column("text"))
        if self.points is not None:
            mask = pc.and_(mask, pc.is_in(batch.column("point"), pa.array(sorted(self.points))))
        return batch.filter(mask), batch.filter(pc.invert(mask))

    def __call__(self, batch: pa.Table) -> pa.Table:
        if not batch.num_rows:
            return batch
        rows, passthrough = self._split(batch)
        if not rows.num_rows:
            return passthrough
        key, _ = self.keys.of(rows)
        self._grow()
        ts = rows.column("ts").to_numpy()
        ws = ts - ts % self.width
        late = ws < self.start[key]  # that window has been emitted already
        if late.any():
            self.late_dropped += int(late.sum())
            keep = ~late
            key, ts, ws = key[keep], ts[keep], ws[keep]
            rows = rows.filter(pa.array(keep))
        self.watermark = max(self.watermark, int(ts.max()) if len(ts) else _TS_MIN)
        v = _values(rows)
        q = rows.column("quality").to_numpy()
        has = ~np.isnan(v)
        parts = {
            "key": key,
            "ws": ws,
            "mn": np.where(has, v, np.inf),
            "mx": np.where(has, v, -np.inf),
            "sm": np.where(has, v, 0.0),
            "cnt": has.astype(np.int64),
            "last_ts": np.where(has, ts, _TS_MIN),
            "last_v": v,
            "q": np.where(has, q, 0).astype(np.uint8),
            "nbad": (~has).astype(np.int64),
        }
        # The open windows join as partials of their own: merging partials is associative.
        ok = np.flatnonzero(self.open[: len(self.keys)])
        state = {"key": ok, "ws": self.start[ok], **{f: self.acc[f][ok] for f in _AGG_FIELDS}}
        merged = _reduce({f: np.concatenate([state[f], parts[f]]) for f in parts})
        return _concat([self._settle(merged, self.watermark - self.lateness), passthrough])

    def flush(self) -> pa.Table:
        """Close and emit every open window (shutdown, or a deliberate cut)."""
        ok = np.flatnonzero(self.open[: len(self.keys)])
        state = {"key": ok, "ws": self.start[ok], **{f: self.acc[f][ok] for f in _AGG_FIELDS}}
        return self._settle(state, np.iinfo(np.int64).max - self.width)

    def _settle(self, g: dict[str, npt.NDArray[Any]], horizon: int) -> pa.Table:
        """Emit closed groups; keep each key's newest unclosed group open."""
        key, ws = g["key"], g["ws"]
        if not len(key):
            return _empty()
        # Groups are sorted by (key, ws): the last of each key is its newest window.
        newest = np.r_[key[1:] != key[:-1], True]
        closed = ~newest | (ws + self.width <= horizon)
        keep_open = ~closed
        ok = key[keep_open]
        self.open[key] = False
        self.open[ok] = True
        last_k = key[newest]
        self.start[last_k] = np.where(keep_open[newest], ws[newest], ws[newest] + self.width)
        for f in _AGG_FIELDS:
            self.acc[f][ok] = g[f][keep_open]
        return self._emit({f: a[closed] for f, a in g.items()})

    def _emit(self, g: dict[str, npt.NDArray[Any]]) -> pa.Table:
        n = len(g["key"])
        if not n:
            return _empty()
        cnt = g["cnt"]
        empty = cnt == 0
        q = np.where(g["nbad"] > 0, np.maximum(g["q"], Quality.UNCERTAIN), g["q"])
        q = np.where(empty, Quality.BAD, q).astype(np.uint8)
        with np.errstate(all="ignore"):
            values = {
                "min": np.where(empty, np.nan, g["mn"]),
                "max": np.where(empty, np.nan, g["mx"]),
                "avg": np.where(empty, np.nan, g["sm"] / cnt),
                "last": np.where(empty, np.nan, g["last_v"]),
            }
        devices = np.array(self.keys.devices, dtype=object)[g["key"]]
        points = np.array(self.keys.points, dtype=object)[g["key"]]
        out = []
        for agg in self.aggregates:
            names = points + f"_{agg}" if self.suffix else points
            out.append(_make(devices, names, g["ws"], values[agg], q))
        return _concat(out)

    def snapshot(self) -> dict[str, Any]:
        n = len(self.keys)
        return {
            "keys": self.keys.snapshot(),
            "late_dropped": self.late_dropped,
            "watermark": self.watermark,
            "start": self.start[:n].tolist(),
            "open": self.open[:n].tolist(),
            **{f: self.acc[f][:n].tolist() for f in _AGG_FIELDS},
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.keys.restore(state["keys"])
        self.late_dropped = int(state["late_dropped"])
        self.watermark = int(state["watermark"])
        self.start = np.array(state["start"], dtype=np.int64)
        self.open = np.array(state["open"], dtype=np.bool_)
        for f in _AGG_FIELDS:
            self.acc[f] = np.array(state[f], dtype=self.acc[f].dtype)


def _reduce(p: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
    """Merge partial aggregates with equal ``(key, ws)``; result sorted by ``(key, ws)``."""
    order = np.lexsort((p["last_ts"], p["ws"], p["key"]))  # stable: later partials win ties
    s = {f: a[order] for f, a in p.items()}
    key, ws = s["key"], s["ws"]
    n = len(key)
    if not n:
        return s
    starts = np.flatnonzero(np.r_[True, (key[1:] != key[:-1]) | (ws[1:] != ws[:-1])])
    ends = np.r_[starts[1:], n] - 1
    return {
        "key": key[starts],
        "ws": ws[starts],
        "mn": np.minimum.reduceat(s["mn"], starts),
        "mx": np.maximum.reduceat(s["mx"], starts),
        "sm": np.add.reduceat(s["sm"], starts),
        "cnt": np.add.reduceat(s["cnt"], starts),
        "last_ts": s["last_ts"][ends],
        "last_v": s["last_v"][ends],
        "q": np.maximum.reduceat(s["q"], starts),
        "nbad": np.add.reduceat(s["nbad"], starts),
    }


class ComputedPoints:
    """Named expressions over other points of the same device, e.g.
    ``power = voltage * current * 1.732 * pf / 1000``.

    An output is evaluated at every timestamp where one of its inputs arrives, with the
    latest known value of each input (sample and hold, across batches); its quality is the
    worst input quality; a NaN result (``0/0``, a missing input value) is a null value with
    BAD quality, while ``x/0`` stays ``inf``. Until every input has been seen once, nothing
    is emitted (no value is invented). Later expressions may use earlier outputs. Input rows
    pass through; the computed rows are appended.
    """

    def __init__(self, points: dict[str, str], devices: Sequence[str] | None = None) -> None:
        self.exprs: dict[str, Expression] = {}
        for name, text in points.items():
            try:
                self.exprs[name] = compile_expr(text)
            except InvalidInput as exc:
                raise InvalidInput(
                    f"compute.points.{name}: {exc.detail}",
                    [FieldError(f"compute.points.{name}", e.msg) for e in exc.errors],
                ) from None
        self.devices = None if devices is None else set(devices)
        self.inputs = set().union(*(e.names for e in self.exprs.values())) if self.exprs else set()
        # Held value per (device, point): (ts, value, quality).
        self.held: dict[tuple[str, str], tuple[int, float, int]] = {}

    def __call__(self, batch: pa.Table) -> pa.Table:
        if not batch.num_rows or not self.exprs:
            return batch
        rel = batch.filter(pc.is_in(batch.column("point"), pa.array(sorted(self.inputs))))
        if not rel.num_rows:
            return batch
        dev = pc.dictionary_encode(rel.column("device")).combine_chunks()
        codes = dev.indices.to_numpy()
        pts_all = np.asarray(rel.column("point").to_numpy(zero_copy_only=False), dtype=object)
        ts_all = rel.column("ts").to_numpy()
        v_all = _values(rel)
        q_all = rel.column("quality").to_numpy()
        out: list[pa.Table] = [batch]
        for c, device in enumerate(dev.dictionary.to_pylist()):  # one pass per device
            if self.devices is not None and device not in self.devices:
                continue
            m = codes == c
            pts, ts, v, q = pts_all[m], ts_all[m], v_all[m], q_all[m].astype(np.uint8)
            for name, expr in self.exprs.items():
                got = self._evaluate(device, expr, pts, ts, v, q)
                if got is None:
                    continue
                t, val, qual = got
                out.append(_make([device] * len(t), [name] * len(t), t, val, qual))
                # Outputs become inputs for the expressions after this one.
                pts = np.concatenate([pts, np.full(len(t), name, dtype=object)])
                ts, v, q = np.r_[ts, t], np.r_[v, val], np.r_[q, qual].astype(np.uint8)
            for p in np.unique(pts).tolist():
                if p in self.inputs:
                    sel = np.flatnonzero(pts == p)
                    i = sel[np.argmax(ts[sel])]
                    self.held[(device, p)] = (int(ts[i]), float(v[i]), int(q[i]))
        return _concat(out)

    def _evaluate(
        self, device: str, expr: Expression, pts: npt.NDArray[Any], ts: I64, v: F64, q: U8
    ) -> tuple[I64, F64, U8] | None:
        arrived = np.isin(pts, list(expr.names))
        if not arrived.any():
            return None
        times = np.unique(ts[arrived])
        env: dict[str, F64] = {}
        qual = np.zeros(len(times), dtype=np.uint8)
        valid = np.ones(len(times), dtype=np.bool_)
        for name in expr.names:
            sel = np.flatnonzero(pts == name)
            sel = sel[np.argsort(ts[sel], kind="stable")]
            held = self.held.get((device, name))
            its = ts[sel]
            iv = v[sel]
            iq = q[sel]
            if held is not None:
                its, iv, iq = np.r_[held[0], its], np.r_[held[1], iv], np.r_[held[2], iq]
            # Index of the latest input row at or before each evaluation time.
            idx = np.searchsorted(its, times, side="right") - 1
            known = idx >= 0
            idx = np.maximum(idx, 0)
            env[name] = iv[idx] if len(iv) else np.full(len(times), np.nan)
            valid &= known
            if len(iq):
                qual = np.maximum(qual, iq[idx])
        if not valid.any():
            return None
        result = np.broadcast_to(expr.evaluate(env), times.shape)[valid]
        # An undefined result (0/0, sqrt(-1), a NaN input) is a failed value, not a number.
        qual = np.where(np.isnan(result), np.uint8(Quality.BAD), qual[valid]).astype(np.uint8)
        return times[valid], result.astype(np.float64), qual

    def snapshot(self) -> dict[str, Any]:
        return {"held": [[d, p, *h] for (d, p), h in self.held.items()]}

    def restore(self, state: dict[str, Any]) -> None:
        self.held = {(d, p): (int(t), float(v), int(q)) for d, p, t, v, q in state["held"]}


Step = Callable[[pa.Table], pa.Table]


class Pipeline:
    """Named steps applied in order; steps with ``flush``/``snapshot`` take part in those."""

    def __init__(self, steps: Sequence[tuple[str, Step]]) -> None:
        names = [n for n, _ in steps]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise InvalidInput(
                f"pipeline: duplicate step names {sorted(dup)}",
                [FieldError("steps", f"duplicate name {n!r}") for n in sorted(dup)],
            )
        self.steps = list(steps)

    def __call__(self, batch: pa.Table) -> pa.Table:
        for _, step in self.steps:
            batch = step(batch)
        return batch

    def flush(self) -> pa.Table:
        """Emit what steps hold back (open windows), passed through the steps after them."""
        out = []
        for i, (_, step) in enumerate(self.steps):
            flush = getattr(step, "flush", None)
            if flush is None:
                continue
            batch = flush()
            for _, later in self.steps[i + 1 :]:
                batch = later(batch)
            out.append(batch)
        return _concat(out)

    def snapshot(self) -> dict[str, Any]:
        return {n: cast(Stateful, s).snapshot() for n, s in self.steps if isinstance(s, Stateful)}

    def restore(self, state: dict[str, Any]) -> None:
        for n, s in self.steps:
            if isinstance(s, Stateful) and n in state:
                cast(Stateful, s).restore(state[n])


def build_step(cfg: UnitsConfig | ComputeConfig | ReportByExceptionConfig | WindowConfig) -> Step:
    if isinstance(cfg, UnitsConfig):
        return UnitConvert({p: (c.from_unit, c.to_unit) for p, c in cfg.points.items()})
    if isinstance(cfg, ComputeConfig):
        return ComputedPoints(cfg.points, cfg.devices)
    if isinstance(cfg, ReportByExceptionConfig):
        return ReportByException(
            Deadband(absolute=cfg.absolute, percent=cfg.percent), cfg.points, cfg.heartbeat_s
        )
    return WindowAggregate(cfg.seconds, cfg.aggregates, cfg.points, cfg.lateness_s, cfg.suffix)


def build_pipeline(config: PipelineConfig | dict[str, Any]) -> Pipeline:
    """A pipeline from its config; steps are named by ``name`` or ``<kind>``/``<kind>_<i>``."""
    cfg = config if isinstance(config, PipelineConfig) else PipelineConfig.model_validate(config)
    steps: list[tuple[str, Step]] = []
    for i, sc in enumerate(cfg.steps):
        name = sc.name or (sc.kind if all(s.kind != sc.kind for s in cfg.steps[:i]) else None)
        steps.append((name or f"{sc.kind}_{i}", build_step(sc)))
    return Pipeline(steps)
