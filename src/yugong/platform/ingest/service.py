"""Ingest: validate telemetry against the device's thing model, hand accepted batches to the
writer and the bus.

Every entry point is atomic: one rejected value refuses the whole message or request and
nothing from it is stored. :meth:`IngestService.ingest_messages` takes many MQTT messages at
once (one drain of a subscriber's queue): each message is still accepted or refused whole,
and the accepted ones leave as one batch (one write, one bus publish, one touch).

Values outside a property's min/max are stored with uncertain quality and counted.
Rejections are counted per tenant under a reason
(``unknown_property``, ``wrong_type``, ``not_integer``, ``not_in_enum``, ``too_long``,
``malformed``, ``too_many_points``, ``bad_timestamp``, ``unknown_device``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias, TypeGuard

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from yugong.core.errors import FieldError, PayloadTooLarge, YugongError
from yugong.core.quality import Quality
from yugong.core.samples import SAMPLE_SCHEMA
from yugong.core.timeutil import ms_array_to_us, now_us, to_us
from yugong.infra.bus import Bus
from yugong.platform.ingest.payloads import (
    AttributeSink,
    PayloadError,
    TelemetryEntry,
    parse_attributes,
    parse_telemetry,
)
from yugong.platform.ingest.validate import Checked, Rejected, check_column
from yugong.platform.ingest.writer import BatchedWriter
from yugong.platform.registry.bindings import DeviceBinding, DeviceDirectory, PropertyBinding

log = logging.getLogger(__name__)

SAMPLES_TOPIC = "samples"
ATTRIBUTES_TOPIC = "attributes"

MessageKind: TypeAlias = Literal["telemetry", "attributes"]
# One MQTT message: the device (from the topic or the client's credentials), the raw
# payload and which API it came in on.
Message: TypeAlias = tuple[DeviceBinding, bytes | bytearray | memoryview, str]
ColumnValues: TypeAlias = Sequence[Any] | npt.NDArray[Any] | pa.Array | pa.ChunkedArray
Columns: TypeAlias = Mapping[str, tuple[npt.ArrayLike, ColumnValues]]


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    out_of_range: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"accepted": self.accepted, "out_of_range": self.out_of_range}


@dataclass(frozen=True)
class BatchOutcome:
    """What :meth:`IngestService.ingest_messages` did with one drain of messages."""

    accepted: int  # messages accepted (telemetry and attributes)
    points: int  # points stored from them
    out_of_range: int  # of those, stored as uncertain
    attributes: int  # attribute updates accepted
    rejected: list[tuple[int, YugongError]]  # (index in the drain, why), in index order


@dataclass
class TenantStats:
    accepted: int = 0  # points stored
    out_of_range: int = 0  # of those, stored as uncertain
    messages: int = 0  # messages / requests accepted
    attributes: int = 0  # attribute updates accepted
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> messages refused


class IngestGuard(Protocol):
    """Admission before anything is stored (the tenant quotas): raises a YugongError with
    a ``reason`` to refuse; ``device`` is None for requests spanning several devices."""

    def admit_ingest(self, tenant: int, device: int | None, messages: int, points: int) -> None: ...


class TooManyPoints(PayloadTooLarge):
    reason = "too_many_points"


def _unknown_property(device: DeviceBinding, key: str, where: str = "") -> Rejected:
    at = f" ({where})" if where else ""
    return Rejected(
        f"unknown property '{key}' for device '{device.name}'{at}",
        [FieldError(f"values.{key}", "not a property of this device's product")],
        reason="unknown_property",
    )


class IngestService:
    def __init__(
        self,
        directory: DeviceDirectory,
        writer: BatchedWriter,
        bus: Bus,
        *,
        max_points_per_request: int = 10_000_000,
        attribute_sink: AttributeSink | None = None,
        guard: IngestGuard | None = None,
    ) -> None:
        self.guard = guard  # tenant quotas: rate limits and stored bytes
        self.directory = directory
        self.writer = writer
        self.bus = bus
        self.max_points = max_points_per_request
        self.attribute_sink = attribute_sink
        self._lock = threading.Lock()
        self._stats: dict[int, TenantStats] = {}

    # Entry points -------------------------------------------------------------------------

    async def ingest_telemetry(
        self,
        device: DeviceBinding,
        payload: bytes | str | list[TelemetryEntry] | Any,
    ) -> IngestResult:
        """A ThingsBoard telemetry payload (raw JSON, decoded JSON or parsed entries)."""
        with self._counting(device.tenant):
            entries = payload if _is_entries(payload) else parse_telemetry(payload)
            batch, result = self.build_telemetry(device, entries)
        return await self._commit(device.tenant, [device.device], batch, result)

    async def ingest_columns(self, device: DeviceBinding, columns: Columns) -> IngestResult:
        """Bulk: ``{property: (ts_us, values)}``, each a whole column."""
        with self._counting(device.tenant):
            batch, result = self.build_columns(device, columns)
        return await self._commit(device.tenant, [device.device], batch, result)

    async def ingest_arrow(self, tenant: int, table: pa.Table) -> IngestResult:
        """Bulk, long form: columns ``device`` (id or name), ``property``, ``ts`` (epoch ms,
        or a timestamp type), ``value`` [, ``text``]."""
        with self._counting(tenant):
            batch, result, devices = self.build_arrow(tenant, table)
        return await self._commit(tenant, devices, batch, result)

    async def ingest_arrow_wide(self, device: DeviceBinding, table: pa.Table) -> IngestResult:
        """Bulk, wide form: a ``ts`` column and one column per property of ``device``."""
        with self._counting(device.tenant):
            if "ts" not in table.column_names:
                raise Rejected(
                    "wide Arrow table lacks the 'ts' column",
                    [FieldError("ts", "missing")],
                    reason="malformed",
                )
            ts = _arrow_ts(table.column("ts"))
            columns = {
                name: (ts, table.column(name)) for name in table.column_names if name != "ts"
            }
            batch, result = self.build_columns(device, columns)
        return await self._commit(device.tenant, [device.device], batch, result)

    async def ingest_json(self, tenant: int, doc: Any) -> IngestResult:
        """Decoded JSON from people and scripts, one request, all or nothing: rows
        ``[{"device": name|id, "ts": ms|ISO, "values": {...}}]`` or columns
        ``{"device": ..., "columns": {"ts": [...], "<property>": [...]}}`` (or a list)."""
        with self._counting(tenant):
            batches: list[pa.Table] = []
            results: list[IngestResult] = []
            devices: set[int] = set()
            docs = doc if isinstance(doc, list) else [doc]
            if not docs:
                raise PayloadError("empty array: nothing to ingest", [FieldError("body", "empty")])
            rows: dict[int, tuple[DeviceBinding, list[TelemetryEntry]]] = {}
            total = 0
            now = now_us()
            for i, item in enumerate(docs):
                if not isinstance(item, dict) or "device" not in item:
                    raise PayloadError(
                        f"item {i}: must be an object with 'device'",
                        [FieldError(f"[{i}]", "expected {device, ...}")],
                    )
                device = self.resolve_device(tenant, item["device"], f"item {i}")
                devices.add(device.device)
                if "columns" in item:
                    batch, result = self.build_columns(device, _json_columns(item, i))
                    batches.append(batch)
                    results.append(result)
                    continue
                values = item.get("values")
                if not isinstance(values, dict):
                    raise PayloadError(
                        f"item {i}: 'values' must be an object",
                        [FieldError(f"[{i}].values", "expected an object")],
                    )
                ts = now if item.get("ts") is None else _row_ts(item["ts"], i)
                total += len(values)
                self._check_size(total)
                rows.setdefault(device.device, (device, []))[1].append(TelemetryEntry(ts, values))
            for device, entries in rows.values():
                batch, result = self.build_telemetry(device, entries)
                batches.append(batch)
                results.append(result)
            self._check_size(sum(r.accepted for r in results))
        batch = batches[0] if len(batches) == 1 else pa.concat_tables(batches)
        result = IngestResult(
            sum(r.accepted for r in results), sum(r.out_of_range for r in results)
        )
        return await self._commit(tenant, sorted(devices), batch, result)

    async def ingest_attributes(self, device: DeviceBinding, payload: bytes | str | Any) -> int:
        """Client attributes: stored on the device through ``attribute_sink`` and published
        on the bus. Returns how many attributes were updated."""
        with self._counting(device.tenant):
            attrs = parse_attributes(payload)
            if self.guard is not None:
                self.guard.admit_ingest(device.tenant, device.device, 1, 0)
        if self.attribute_sink is not None:
            # A database write: keep it off the event loop.
            await asyncio.to_thread(self.attribute_sink, device, attrs)
        self.bus.publish(
            ATTRIBUTES_TOPIC,
            {"tenant": device.tenant, "device": device.device, "attributes": attrs},
        )
        with self._lock:
            self._tenant(device.tenant).attributes += len(attrs)
        return len(attrs)

    async def ingest_messages(
        self, items: Sequence[Message], received_us: Sequence[int] | None = None
    ) -> BatchOutcome:
        """Many MQTT messages at once, each accepted or refused whole by the same rules as
        :meth:`ingest_telemetry` / :meth:`ingest_attributes`. The accepted telemetry leaves
        as one batch. ``received_us`` (per message) stamps values that carry no ``ts``;
        without it the drain's time is used. Refusals are counted and returned, not raised."""
        rejected: dict[int, YugongError] = {}
        attributes: list[int] = []
        parsed: dict[int, list[TelemetryEntry]] = {}
        for i, (_device, payload, kind) in enumerate(items):
            if kind != "telemetry":
                if kind != "attributes":
                    raise ValueError(f"unknown message kind {kind!r}")
                attributes.append(i)
                continue
            try:
                entries = parse_telemetry(payload)
                if len(entries) > 1 or len(entries[0].values) > self.max_points:
                    self._check_size(sum(len(e.values) for e in entries))
            except YugongError as exc:
                rejected[i] = exc
                continue
            parsed[i] = entries
        bindings = [device for device, _, _ in items]
        points, out = await self._ingest_parsed(bindings, parsed, rejected, received_us)
        n_attrs = 0
        for i in attributes:
            device, payload, _ = items[i]
            try:  # counts its own refusals
                n_attrs += await self.ingest_attributes(device, payload)
            except YugongError as exc:
                rejected[i] = exc
        return BatchOutcome(
            accepted=len(items) - len(rejected),
            points=points,
            out_of_range=out,
            attributes=n_attrs,
            rejected=sorted(rejected.items(), key=lambda r: r[0]),
        )

    async def ingest_entries(
        self,
        items: Sequence[tuple[DeviceBinding, list[TelemetryEntry]]],
        received_us: Sequence[int] | None = None,
    ) -> BatchOutcome:
        """Already decoded messages (e.g. Sparkplug DATA), each accepted or refused whole as
        by :meth:`ingest_messages`; the accepted values leave as one batch."""
        rejected: dict[int, YugongError] = {}
        parsed = dict(enumerate(entries for _, entries in items))
        bindings = [device for device, _ in items]
        points, out = await self._ingest_parsed(bindings, parsed, rejected, received_us)
        return BatchOutcome(
            accepted=len(items) - len(rejected),
            points=points,
            out_of_range=out,
            attributes=0,
            rejected=sorted(rejected.items(), key=lambda r: r[0]),
        )

    async def _ingest_parsed(
        self,
        bindings: Sequence[DeviceBinding],
        parsed: dict[int, list[TelemetryEntry]],
        rejected: dict[int, YugongError],
        received_us: Sequence[int] | None,
    ) -> tuple[int, int]:
        """Group, validate and write the telemetry of many messages; refusals go into
        ``rejected`` (by message index) and are counted. Returns (points, out of range)."""
        if self.guard is not None:  # over a quota: refused before validation, not stored
            for i in list(parsed):
                try:
                    points = sum(len(e.values) for e in parsed[i])
                    self.guard.admit_ingest(bindings[i].tenant, bindings[i].device, 1, points)
                except YugongError as exc:
                    rejected[i] = exc
                    del parsed[i]
        now = now_us()
        groups: dict[Any, _Group] = {}
        by_binding: dict[int, _Group] = {}  # id(PropertyBinding) -> its group, this drain
        last_default = 0
        for i, entries in parsed.items():
            device = bindings[i]
            # Values without ts get the receive time, kept strictly increasing so two such
            # messages for one series in a drain do not collapse into one point.
            default = max(received_us[i] if received_us is not None else now, last_default + 1)
            used_default = False
            props = device.properties
            for j, entry in enumerate(entries):
                ts = entry.ts_us
                if ts is None:
                    ts = default
                    used_default = True
                for key, value in entry.values.items():
                    pb = props.get(key)
                    if pb is None:
                        rejected[i] = _unknown_property(device, key, _item(j, entries))
                        break
                    g = by_binding.get(id(pb))
                    if g is None:
                        rule = _rules(pb)
                        g = groups.get(rule)
                        if g is None:
                            g = groups[rule] = _Group(pb, device.name)
                        by_binding[id(pb)] = g
                    g.ts.append(ts)
                    g.series.append(pb.series)
                    g.values.append(value)
                    g.msg.append(i)
                else:
                    continue
                break
            if used_default:
                last_default = default

        checked = self._check_groups(bindings, list(groups.values()), parsed, rejected)
        batch, tenants = _assemble_groups(bindings, checked)
        ok = [i for i in parsed if i not in rejected]
        if batch.num_rows:
            await self.writer.submit(batch)
            self.bus.publish(SAMPLES_TOPIC, batch)
            self.directory.touch(sorted({bindings[i].device for i in ok}), now_us())
        counted = self._count_batch(batch, tenants, [bindings[i].tenant for i in ok])
        for i, why in rejected.items():
            self.count_rejected(bindings[i].tenant, str(getattr(why, "reason", "invalid")))
        return counted

    def stats(self) -> dict[int, TenantStats]:
        """Counters per tenant (a snapshot)."""
        with self._lock:
            return {
                t: TenantStats(
                    s.accepted, s.out_of_range, s.messages, s.attributes, dict(s.rejected)
                )
                for t, s in self._stats.items()
            }

    def count_rejected(self, tenant: int, reason: str) -> None:
        """Count a refusal decided outside the service (e.g. an oversized MQTT payload)."""
        with self._lock:
            st = self._tenant(tenant)
            st.rejected[reason] = st.rejected.get(reason, 0) + 1

    # Building batches (pure; no I/O) --------------------------------------------------------

    def build_telemetry(
        self, device: DeviceBinding, entries: list[TelemetryEntry]
    ) -> tuple[pa.Table, IngestResult]:
        props = device.properties
        now = now_us()
        cols: dict[str, tuple[list[int], list[Any], list[int]]] = {}
        total = 0
        for i, entry in enumerate(entries):
            ts = now if entry.ts_us is None else entry.ts_us
            for key, value in entry.values.items():
                col = cols.get(key)
                if col is None:
                    if key not in props:
                        raise _unknown_property(device, key, _item(i, entries))
                    col = cols[key] = ([], [], [])
                col[0].append(ts)
                col[1].append(value)
                col[2].append(i)
            total += len(entry.values)
        self._check_size(total)
        single = len(entries) == 1
        parts = []
        for key, (ts_list, values, items) in cols.items():

            def where(j: int, items: list[int] = items) -> str:
                return "" if single else f"item {items[j]}"

            checked = check_column(props[key], values, device.name, where)
            parts.append((props[key], np.asarray(ts_list, dtype=np.int64), checked))
        return _assemble(device.tenant, parts)

    def build_columns(
        self, device: DeviceBinding, columns: Columns
    ) -> tuple[pa.Table, IngestResult]:
        props = device.properties
        total = 0
        for key, (ts, values) in columns.items():
            if key not in props:
                raise _unknown_property(device, key)
            if len(values) != np.shape(ts)[0]:
                raise Rejected(
                    f"property '{key}' of device '{device.name}': {len(values)} values but "
                    f"{np.shape(ts)[0]} timestamps",
                    [FieldError(f"columns.{key}", "length differs from ts")],
                    reason="malformed",
                )
            total += len(values)
        self._check_size(total)
        parts = []
        for key, (ts, values) in columns.items():
            ts_arr = _ts_column(ts, key)
            parts.append((props[key], ts_arr, check_column(props[key], values, device.name)))
        return _assemble(device.tenant, parts)

    def build_arrow(self, tenant: int, table: pa.Table) -> tuple[pa.Table, IngestResult, list[int]]:
        missing = [
            c
            for c in ("device", "property", "ts", "value")
            if c not in table.column_names and not (c == "value" and "text" in table.column_names)
        ]
        if missing:
            raise Rejected(
                f"Arrow table lacks column(s): {', '.join(missing)} (long form needs "
                "device, property, ts, value [, text]; wide form needs ?device=)",
                [FieldError(c, "missing") for c in missing],
                reason="malformed",
            )
        n = table.num_rows
        self._check_size(n)
        if n == 0:
            return SAMPLE_SCHEMA.empty_table(), IngestResult(0), []
        ts = _arrow_ts(table.column("ts"))
        bindings, dev_idx = self._resolve_devices(tenant, table.column("device"))
        prop_enc = pc.dictionary_encode(table.column("property").combine_chunks())
        prop_names: list[str] = prop_enc.dictionary.to_pylist()
        prop_idx = _indices(prop_enc, "property")
        # One lookup per distinct (device, property) pair, then per-row gathers.
        pair_codes, inverse = np.unique(
            dev_idx.astype(np.int64) * len(prop_names) + prop_idx, return_inverse=True
        )
        pairs: list[PropertyBinding] = []
        for k, code in enumerate(pair_codes):
            b = bindings[int(code) // len(prop_names)]
            name = prop_names[int(code) % len(prop_names)]
            pb = b.properties.get(name) if name is not None else None
            if pb is None:
                first = int(np.argmax(inverse == k))
                raise _unknown_property(b, str(name), f"row {first}")
            pairs.append(pb)
        value = table.column("value") if "value" in table.column_names else None
        text = table.column("text") if "text" in table.column_names else None
        if len(pairs) == 1:
            groups = [np.arange(n)]
        else:
            order = np.argsort(inverse, kind="stable")
            bounds = np.flatnonzero(np.diff(inverse[order])) + 1
            groups = np.split(order, bounds)
        parts = []
        for rows in groups:
            k = int(inverse[rows[0]])
            pb = pairs[k]
            b = bindings[int(pair_codes[k]) // len(prop_names)]
            rows_arr = pa.array(rows)
            use_text = pb.kind in ("text", "json")
            src = text if use_text else value
            if src is None:
                src = value if use_text else text
            assert src is not None

            def where(j: int, rows: npt.NDArray[np.int64] = rows) -> str:
                return f"row {int(rows[j])}"

            checked = check_column(pb, src.take(rows_arr), b.name, where)
            parts.append((pb, ts[rows], checked))
        batch, result = _assemble(tenant, parts)
        return batch, result, [b.device for b in bindings]

    # Helpers ------------------------------------------------------------------------------

    def _resolve_devices(
        self, tenant: int, col: pa.ChunkedArray
    ) -> tuple[list[DeviceBinding], npt.NDArray[np.int64]]:
        enc = pc.dictionary_encode(col.combine_chunks())
        idx = _indices(enc, "device")
        out: list[DeviceBinding] = []
        for k, key in enumerate(enc.dictionary.to_pylist()):
            b = self.resolve_device(tenant, key, f"row {int(np.argmax(idx == k))}")
            out.append(b)
        return out, idx

    def resolve_device(self, tenant: int, key: Any, where: str = "") -> DeviceBinding:
        """A device of ``tenant`` by id (int) or name (str); raises :class:`Rejected`."""
        b: DeviceBinding | None = None
        if isinstance(key, bool) or key is None:
            b = None
        elif isinstance(key, int):
            b = self.directory.by_id(key)
        elif isinstance(key, str):
            b = self.directory.by_name(tenant, key)
        if b is None or b.tenant != tenant:
            at = f" ({where})" if where else ""
            raise Rejected(
                f"unknown device {key!r}{at}",
                [FieldError("device", "no such device in this tenant")],
                reason="unknown_device",
            )
        return b

    def _check_groups(
        self,
        bindings: Sequence[DeviceBinding],
        groups: list[_Group],
        parsed: dict[int, list[TelemetryEntry]],
        rejected: dict[int, YugongError],
    ) -> list[tuple[_Group, npt.NDArray[np.bool_], Checked]]:
        """Validate each group of like properties as one column. A column that fails is
        re-checked message by message (the single-message path, so the error is the same)
        to refuse exactly the messages at fault; columns that held them are checked again."""
        msgs = [np.asarray(g.msg, dtype=np.int64) for g in groups]
        keeps: list[npt.NDArray[np.bool_]] = []
        done: list[Checked | None] = []
        for g, m in zip(groups, msgs, strict=True):
            keep = _keep(m, rejected)
            keeps.append(keep)
            try:
                done.append(check_column(g.rules, _take(g.values, keep), g.device))
            except Rejected:
                done.append(None)
                for i in sorted({int(x) for x in m[keep]}):
                    try:
                        self.build_telemetry(bindings[i], parsed[i])
                    except YugongError as exc:
                        rejected[i] = exc
        while True:
            out: list[tuple[_Group, npt.NDArray[np.bool_], Checked]] = []
            for k, (g, m) in enumerate(zip(groups, msgs, strict=True)):
                keep = _keep(m, rejected)
                if not keep.any():
                    continue
                checked = done[k]
                if checked is None or not np.array_equal(keep, keeps[k]):
                    try:
                        checked = check_column(g.rules, _take(g.values, keep), g.device)
                    except Rejected as exc:
                        # Not expected: message by message they passed. Refuse them all
                        # rather than store a value the rules refuse.
                        for i in {int(x) for x in m[keep]}:
                            rejected[i] = exc
                        break
                    done[k], keeps[k] = checked, keep
                out.append((g, keep, checked))
            else:
                return out

    def _count_batch(
        self, batch: pa.Table, tenants: npt.NDArray[np.int32], ok_tenants: list[int]
    ) -> tuple[int, int]:
        quality = batch.column("quality").to_numpy()
        uncertain = quality == Quality.UNCERTAIN
        per_tenant: dict[int, tuple[int, int]] = {}
        if len(tenants):
            keys, inverse = np.unique(tenants, return_inverse=True)
            points = np.bincount(inverse, minlength=len(keys))
            oor = np.bincount(inverse, weights=uncertain, minlength=len(keys))
            per_tenant = {
                int(k): (int(p), int(o)) for k, p, o in zip(keys, points, oor, strict=True)
            }
        messages = Counter(ok_tenants)
        with self._lock:
            for t in per_tenant.keys() | messages.keys():
                st = self._tenant(t)
                p, o = per_tenant.get(t, (0, 0))
                st.accepted += p
                st.out_of_range += o
                st.messages += messages.get(t, 0)
        return batch.num_rows, int(uncertain.sum())

    def _check_size(self, points: int) -> None:
        if points > self.max_points:
            raise TooManyPoints(f"{points} points in one request; at most {self.max_points}")

    def _tenant(self, tenant: int) -> TenantStats:
        st = self._stats.get(tenant)
        if st is None:
            st = self._stats[tenant] = TenantStats()
        return st

    def _counting(self, tenant: int) -> _Counting:
        return _Counting(self, tenant)

    async def _commit(
        self, tenant: int, devices: list[int], batch: pa.Table, result: IngestResult
    ) -> IngestResult:
        if self.guard is not None:
            with self._counting(tenant):
                device = devices[0] if len(devices) == 1 else None
                self.guard.admit_ingest(tenant, device, 1, result.accepted)
        if batch.num_rows:
            await self.writer.submit(batch)
            self.bus.publish(SAMPLES_TOPIC, batch)
            self.directory.touch(devices, now_us())
        with self._lock:
            st = self._tenant(tenant)
            st.accepted += result.accepted
            st.out_of_range += result.out_of_range
            st.messages += 1
        return result


class _Counting:
    """Counts a refusal under its reason, per tenant, then lets it propagate."""

    def __init__(self, service: IngestService, tenant: int) -> None:
        self.service = service
        self.tenant = tenant

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        if isinstance(exc, YugongError):
            self.service.count_rejected(self.tenant, str(getattr(exc, "reason", "invalid")))


class _Group:
    """Values of one drain whose properties share the same rules, checked as one column."""

    __slots__ = ("device", "msg", "rules", "series", "ts", "values")

    def __init__(self, rules: PropertyBinding, device: str) -> None:
        self.rules = rules
        self.device = device
        self.ts: list[int] = []
        self.series: list[int] = []
        self.values: list[Any] = []
        self.msg: list[int] = []  # index of the message each value came in


def _rules(pb: PropertyBinding) -> tuple[Any, ...]:
    """What check_column looks at, besides names used in its messages."""
    return (pb.kind, pb.min, pb.max, pb.enum_values, pb.max_length)


def _item(i: int, entries: Sequence[TelemetryEntry]) -> str:
    return f"item {i}" if len(entries) > 1 else ""


def _keep(msg: npt.NDArray[np.int64], rejected: Mapping[int, object]) -> npt.NDArray[np.bool_]:
    if not rejected:
        return np.ones(len(msg), dtype=bool)
    return ~np.isin(msg, np.fromiter(rejected, dtype=np.int64, count=len(rejected)))


def _take(values: list[Any], keep: npt.NDArray[np.bool_]) -> list[Any]:
    return values if keep.all() else [v for v, k in zip(values, keep.tolist(), strict=True) if k]


def _assemble_groups(
    bindings: Sequence[DeviceBinding], checked: list[tuple[_Group, npt.NDArray[np.bool_], Checked]]
) -> tuple[pa.Table, npt.NDArray[np.int32]]:
    """One SAMPLE_SCHEMA batch from the checked groups; also the tenant of each row."""
    if not checked:
        return SAMPLE_SCHEMA.empty_table(), np.empty(0, dtype=np.int32)
    tenant_of = np.fromiter((d.tenant for d in bindings), dtype=np.int32, count=len(bindings))
    tenants, series, ts = [], [], []
    for g, keep, _ in checked:
        msg = np.asarray(g.msg, dtype=np.int64)[keep]
        tenants.append(tenant_of[msg])
        series.append(np.asarray(g.series, dtype=np.int32)[keep])
        ts.append(np.asarray(g.ts, dtype=np.int64)[keep])
    tenant = np.concatenate(tenants)
    table = _sample_table(
        tenant, np.concatenate(series), np.concatenate(ts), [c for _, _, c in checked]
    )
    return table, tenant


def _is_entries(payload: Any) -> TypeGuard[list[TelemetryEntry]]:
    return isinstance(payload, list) and bool(payload) and isinstance(payload[0], TelemetryEntry)


def _row_ts(value: Any, i: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise Rejected(
            f"item {i}: 'ts' must be epoch ms or ISO 8601",
            [FieldError(f"[{i}].ts", "not a timestamp")],
            reason="bad_timestamp",
        )
    try:
        return to_us(value)
    except ValueError as exc:
        raise Rejected(
            f"item {i}: {exc}", [FieldError(f"[{i}].ts", str(exc))], reason="bad_timestamp"
        ) from None


def _json_columns(item: dict[str, Any], i: int) -> dict[str, tuple[npt.NDArray[np.int64], Any]]:
    cols = item["columns"]
    if not isinstance(cols, dict) or not isinstance(cols.get("ts"), list):
        raise PayloadError(
            f"item {i}: 'columns' must be an object with a 'ts' array",
            [FieldError(f"[{i}].columns.ts", "missing or not an array")],
        )
    raw_ts = cols["ts"]
    types = set(map(type, raw_ts))
    if types <= {int}:
        ts = ms_array_to_us(np.asarray(raw_ts, dtype=np.int64))
    else:
        ts = np.fromiter((_row_ts(v, i) for v in raw_ts), dtype=np.int64, count=len(raw_ts))
    out: dict[str, tuple[npt.NDArray[np.int64], Any]] = {}
    for key, values in cols.items():
        if key == "ts":
            continue
        if not isinstance(values, list):
            raise PayloadError(
                f"item {i}: column '{key}' must be an array",
                [FieldError(f"[{i}].columns.{key}", "not an array")],
            )
        out[key] = (ts, values)
    return out


def _indices(enc: pa.Array, name: str) -> npt.NDArray[np.int64]:
    if enc.null_count:
        first = int(np.argmax(~enc.is_valid().to_numpy(zero_copy_only=False)))
        raise Rejected(
            f"'{name}' is null at row {first}", [FieldError(name, "null")], reason="malformed"
        )
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def _ts_column(ts: npt.ArrayLike, key: str) -> npt.NDArray[np.int64]:
    arr = np.asarray(ts)
    if arr.dtype.kind not in "iu":
        raise Rejected(
            f"timestamps for '{key}' must be integers (epoch µs)",
            [FieldError(f"columns.{key}", "ts must be integers")],
            reason="bad_timestamp",
        )
    return arr.astype(np.int64, copy=False)


def _arrow_ts(col: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """An Arrow ts column (int epoch ms/µs, or a timestamp type) as epoch µs."""
    if col.null_count:
        first = int(np.argmax(~col.is_valid().to_numpy(zero_copy_only=False)))
        raise Rejected(
            f"'ts' is null at row {first}", [FieldError("ts", "null")], reason="bad_timestamp"
        )
    t = col.type
    if pa.types.is_timestamp(t):
        if t.tz is None and t.unit == "us":
            return col.cast(pa.int64()).to_numpy()
        return pc.cast(col, pa.timestamp("us", t.tz)).cast(pa.int64()).to_numpy()
    if pa.types.is_integer(t):
        return ms_array_to_us(col.to_numpy())
    raise Rejected(
        f"'ts' must be epoch milliseconds (integer) or a timestamp, not {t}",
        [FieldError("ts", f"type {t}")],
        reason="bad_timestamp",
    )


def _assemble(
    tenant: int,
    parts: list[tuple[PropertyBinding, npt.NDArray[np.int64], Checked]],
) -> tuple[pa.Table, IngestResult]:
    """Concatenate validated property columns into one SAMPLE_SCHEMA batch."""
    if not parts:
        return SAMPLE_SCHEMA.empty_table(), IngestResult(0)
    n = sum(len(c) for _, _, c in parts)
    series = np.concatenate([np.full(len(c), pb.series, dtype=np.int32) for pb, _, c in parts])
    ts = np.concatenate([t for _, t, _ in parts]) if len(parts) > 1 else parts[0][1]
    tenants = np.full(n, tenant, dtype=np.int32)
    batch = _sample_table(tenants, series, ts, [c for _, _, c in parts])
    out = sum(c.out_of_range for _, _, c in parts)
    return batch, IngestResult(n, out)


def _sample_table(
    tenant: npt.NDArray[np.int32],
    series: npt.NDArray[np.int32],
    ts: npt.NDArray[np.int64],
    checked: list[Checked],
) -> pa.Table:
    quality = np.concatenate([c.quality for c in checked])
    values = [
        pa.array(c.value, type=pa.float64(), from_pandas=True)
        if c.value is not None
        else pa.nulls(len(c), pa.float64())
        for c in checked
    ]
    texts = [c.text if c.text is not None else pa.nulls(len(c), pa.string()) for c in checked]
    value = values[0] if len(values) == 1 else pa.concat_arrays(values)
    text = texts[0] if len(texts) == 1 else pa.concat_arrays(texts)
    return pa.Table.from_arrays(
        [
            pa.array(tenant),
            pa.array(series),
            pa.array(ts.astype(np.int64, copy=False)),
            value,
            text,
            pa.array(quality.astype(np.uint8, copy=False)),
        ],
        schema=SAMPLE_SCHEMA,
    )


__all__ = [
    "ATTRIBUTES_TOPIC",
    "SAMPLES_TOPIC",
    "BatchOutcome",
    "IngestGuard",
    "IngestResult",
    "IngestService",
    "Message",
    "MessageKind",
    "Rejected",
    "TenantStats",
    "TooManyPoints",
]
