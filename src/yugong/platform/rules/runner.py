"""Running the rules on the live stream, and replaying them over stored history.

:class:`RuleRunner` subscribes to the bus topic ``"samples"`` with a queue large enough not
to lose batches (drops, should they still happen, are counted and logged), hands every batch
to the engine (batches already queued are concatenated and processed as one), ticks the
engine every second for timers (sustained durations, no data), and gives the transitions to
the alarm service. A batch the engine fails on is logged and counted; the rules that fail
on it (found by running each alone on a scratch engine) are suspended until their next
version, so the others keep running. The engine's state is saved to ``rule_state`` every
``save_every_s`` and at stop, and restored at start; state saved for another version of a
rule is discarded.
Targets are re-resolved when a rule changes and every ``refresh_every_s`` (devices, products
and assets added or moved reach running rules that way).

:func:`replay` (dry-run) runs a fresh engine over stored samples in time order, ticking it
the way the runner does, so a dry-run and the live run decide the same way.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa

from yugong.core.samples import SAMPLE_SCHEMA
from yugong.core.timeutil import US_PER_S, now_us
from yugong.platform.rules.types import ActiveRule, Transition

if TYPE_CHECKING:
    from yugong.infra.bus import Bus, InProcessSubscription
    from yugong.infra.timeseries.base import TimeSeriesStore
    from yugong.platform.rules.service import RuleService
    from yugong.platform.runtime import Platform

log = logging.getLogger(__name__)

SAMPLES_TOPIC = "samples"
QUEUE_BATCHES = 100_000  # far more than ingest produces between two engine passes
MAX_COALESCE = 64  # batches processed as one table
MAX_REPLAY_TICKS = 200_000  # a dry-run over a long span ticks more coarsely
PAGE_ROWS = 50_000


class Engine(Protocol):
    def set_rules(self, rules: Sequence[ActiveRule]) -> None: ...

    def process(self, batch: pa.Table) -> list[Transition]: ...

    def tick(self, now_us: int) -> list[Transition]: ...

    def snapshot(self) -> dict[int, tuple[int, bytes]]: ...

    def restore(self, state: dict[int, tuple[int, bytes]]) -> None: ...


def default_engine() -> Engine:
    from yugong.platform.rules.engine import RuleEngine

    engine: Engine = RuleEngine()
    return engine


@dataclass
class RunnerStats:
    batches: int = 0
    rows: int = 0
    ticks: int = 0
    transitions: int = 0
    failures: int = 0  # engine passes or alarm hand-overs that raised
    dropped: int = 0  # batches the bus dropped before the runner read them
    saves: int = 0
    refreshes: int = 0
    quarantined: dict[int, int] = field(default_factory=dict)  # rule id -> its version


class RuleRunner:
    """``await start()``; ``await stop()``. ``sink`` is the alarm service (anything with
    ``apply(transitions)``, sync or async) or a callable returning it (it may be built
    after the runner); transitions are handed over on the event loop thread."""

    def __init__(
        self,
        rules: RuleService,
        bus: Bus,
        sink: Any,
        *,
        engine: Engine | None = None,
        tick_s: float = 1.0,
        save_every_s: float = 30.0,
        refresh_every_s: float = 10.0,
        queue_batches: int = QUEUE_BATCHES,
    ) -> None:
        self.rules = rules
        self.bus = bus
        self._sink = sink
        self.engine = engine if engine is not None else default_engine()
        self.tick_s = tick_s
        self.save_every_s = save_every_s
        self.refresh_every_s = refresh_every_s
        self._queue = queue_batches
        self.stats = RunnerStats()
        self._dirty = False
        self._active: list[ActiveRule] = []
        self._sub: InProcessSubscription | None = None
        self._task: asyncio.Task[None] | None = None
        rules.on_change(self.invalidate)

    @property
    def sink(self) -> Any:
        s = self._sink
        return s() if callable(s) and not hasattr(s, "apply") else s

    @sink.setter
    def sink(self, value: Any) -> None:
        self._sink = value

    def invalidate(self) -> None:
        """Rules changed: resolve them again at the next pass (callable from any thread)."""
        self._dirty = True

    async def start(self) -> None:
        await self._refresh()
        state = await asyncio.to_thread(self.rules.load_state)
        if state:
            self.engine.restore(state)
            log.info("rules: restored the state of %d rules", len(state))
        self._sub = self.bus.subscribe(SAMPLES_TOPIC, maxsize=self._queue)  # type: ignore[assignment]
        self._task = asyncio.create_task(self._run(), name="rule-runner")

    async def stop(self) -> None:
        """Process what is queued, then save the engine's state."""
        if self._sub is not None:
            self._sub.close()  # the loop drains the queue, then ends
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=30)
            except (TimeoutError, asyncio.CancelledError):
                log.warning("rules: the runner did not finish its queue in time")
            except Exception:
                log.exception("rules: the runner failed")
            self._task = None
        await self._save()

    # the loop ----------------------------------------------------------------------------

    async def _run(self) -> None:
        assert self._sub is not None
        sub = self._sub
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + self.tick_s
        next_save = loop.time() + self.save_every_s
        next_refresh = loop.time() + self.refresh_every_s
        while True:
            batch: Any = None
            try:
                async with asyncio.timeout(max(0.0, next_tick - loop.time())):
                    batch = await sub.get()
            except TimeoutError:
                pass
            except StopAsyncIteration:
                return
            if batch is not None:
                if self._dirty:  # a rule changed: the next batch already sees it
                    await self._refresh()
                await self._process(await self._coalesce(batch, sub))
            now = loop.time()
            if now >= next_tick:
                await self._tick(now_us())
                next_tick = max(next_tick + self.tick_s, now)  # no burst after a stall
            if self._dirty or now >= next_refresh:
                await self._refresh()
                next_refresh = now + self.refresh_every_s
            if now >= next_save:
                await self._save()
                next_save = now + self.save_every_s

    async def _coalesce(self, first: Any, sub: InProcessSubscription) -> pa.Table:
        dropped = sub.dropped
        if dropped > self.stats.dropped:
            log.error(
                "rules: %d sample batches were dropped before evaluation",
                dropped - self.stats.dropped,
            )
            self.stats.dropped = dropped
        tables = [first]
        while getattr(sub, "pending", 0) and len(tables) < MAX_COALESCE:
            tables.append(await sub.get())  # queued already: no wait
        if len(tables) == 1:
            return first
        try:
            return pa.concat_tables(tables, promote_options="none")
        except pa.ArrowInvalid:
            return pa.concat_tables([t.cast(SAMPLE_SCHEMA) for t in tables])

    async def _process(self, batch: pa.Table) -> None:
        self.stats.batches += 1
        self.stats.rows += batch.num_rows
        try:
            transitions = await asyncio.to_thread(self.engine.process, batch)
        except Exception:
            self.stats.failures += 1
            log.exception("rules: evaluating a batch of %d rows failed", batch.num_rows)
            await self._isolate(batch)
            return
        await self._hand_over(transitions)

    async def _isolate(self, batch: pa.Table) -> None:
        """Find the rules that fail on ``batch`` (each alone, on a scratch engine) and take
        them out of the engine until their next version, so the others keep running."""
        culprits = await asyncio.to_thread(self._culprits, batch)
        for rule in culprits:
            self.stats.quarantined[rule.id] = rule.version
            log.error(
                "rules: rule %d (%r, version %d) fails on live data; it is suspended "
                "until it is changed",
                rule.id,
                rule.spec.name,
                rule.version,
            )
        if culprits:
            await self._apply_rules()

    def _culprits(self, batch: pa.Table) -> list[ActiveRule]:
        seen = set(np.unique(batch.column("series").to_numpy()).tolist())
        found = []
        for rule in self._usable():
            if not any(sid in seen for props in rule.series.values() for sid in props.values()):
                continue
            try:
                probe = type(self.engine)()
                probe.set_rules([rule])
                probe.process(batch)
            except Exception:
                found.append(rule)
        return found

    def _usable(self) -> list[ActiveRule]:
        q = self.stats.quarantined
        return [r for r in self._active if q.get(r.id) != r.version]

    async def _apply_rules(self) -> None:
        await asyncio.to_thread(self.engine.set_rules, self._usable())

    async def _tick(self, at_us: int) -> None:
        self.stats.ticks += 1
        try:
            transitions = await asyncio.to_thread(self.engine.tick, at_us)
        except Exception:
            self.stats.failures += 1
            log.exception("rules: the timer pass failed")
            return
        await self._hand_over(transitions)

    async def _hand_over(self, transitions: list[Transition]) -> None:
        if not transitions:
            return
        self.stats.transitions += len(transitions)
        sink = self.sink
        if sink is None:
            log.warning("rules: no alarm service; %d transitions not stored", len(transitions))
            return
        try:
            if getattr(sink, "loop", None) is asyncio.get_running_loop():
                # It hands its bus messages to this loop itself: store from a worker thread.
                result = await asyncio.to_thread(sink.apply, transitions)
            else:
                result = sink.apply(transitions)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.stats.failures += 1
            log.exception("rules: the alarm service refused %d transitions", len(transitions))

    async def _refresh(self) -> None:
        self._dirty = False
        try:
            self._active = await asyncio.to_thread(self.rules.active_rules)
            await self._apply_rules()
            self.stats.refreshes += 1
        except Exception:
            self.stats.failures += 1
            self._dirty = True
            log.exception("rules: loading the active rules failed")

    async def _save(self) -> None:
        try:
            snapshot = await asyncio.to_thread(self.engine.snapshot)
            await asyncio.to_thread(self.rules.save_state, snapshot)
            self.stats.saves += 1
        except Exception:
            self.stats.failures += 1
            log.exception("rules: saving the rule state failed")


async def start_rules(platform: Platform) -> tuple[RuleService, RuleRunner | None]:
    """The platform's rule service and its runner (started). Transitions go to
    ``platform.transition_sink`` when set, else to ``platform.alarms``."""
    from yugong.platform.rules.service import RuleService

    service = RuleService(platform.db, store=platform.store, audit=platform.security.audit)
    try:
        engine = default_engine()
    except ImportError:
        log.warning("rules: no rule engine installed; rules are kept but not evaluated")
        return service, None

    def sink() -> Any:
        return getattr(platform, "transition_sink", None) or getattr(platform, "alarms", None)

    runner = RuleRunner(service, platform.bus, sink, engine=engine)
    await runner.start()
    return service, runner


# Dry-run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WouldBeAlarm:
    device: int
    raised_at_us: int
    cleared_at_us: int | None
    value: float | None


def alarms_of(transitions: Sequence[Transition]) -> list[WouldBeAlarm]:
    """Pair raised/cleared transitions per device into alarms, in raise order."""
    open_: dict[int, tuple[int, float | None]] = {}
    done: list[WouldBeAlarm] = []
    for t in transitions:
        if t.raised:
            open_.setdefault(t.device, (t.at_us, t.value))
        elif t.device in open_:
            at, value = open_.pop(t.device)
            done.append(WouldBeAlarm(t.device, at, t.at_us, value))
    done += [WouldBeAlarm(d, at, None, v) for d, (at, v) in open_.items()]
    return sorted(done, key=lambda a: (a.raised_at_us, a.device))


def replay(
    rule: ActiveRule,
    store: TimeSeriesStore,
    start_us: int,
    end_us: int,
    *,
    tick_s: float = 1.0,
    engine_factory: Callable[[], Engine] | None = None,
) -> list[WouldBeAlarm]:
    """Run a fresh engine over the rule's stored samples from ``start_us`` to ``end_us``:
    samples in time order, a timer tick every ``tick_s`` of data time (coarser over long
    spans, at most ``MAX_REPLAY_TICKS`` ticks), as the live runner does in real time."""
    engine = (engine_factory or default_engine)()
    engine.set_rules([rule])
    series = sorted({sid for props in rule.series.values() for sid in props.values()})
    end_us = min(end_us, now_us() + 1)
    span = max(0, end_us - start_us)
    step = max(int(tick_s * US_PER_S), -(-span // MAX_REPLAY_TICKS), 1)
    transitions: list[Transition] = []
    window = step * 600  # samples read per window, in time order across series
    lo = start_us
    while lo < end_us and series:
        hi = min(end_us, lo + window)
        table = _window(store, series, lo, hi, rule.tenant)
        ts = table.column("ts").to_numpy() if table.num_rows else np.empty(0, np.int64)
        pos = 0
        for boundary in range(lo + step, hi + step, step):
            edge = min(boundary, hi)
            idx = int(np.searchsorted(ts, edge, side="left"))
            if idx > pos:
                transitions += engine.process(table.slice(pos, idx - pos))
                pos = idx
            if boundary <= end_us:
                transitions += engine.tick(boundary)
        lo = hi
    return alarms_of(transitions)


def _window(
    store: TimeSeriesStore, series: Sequence[int], lo: int, hi: int, tenant: int
) -> pa.Table:
    """Samples of ``series`` in ``[lo, hi)``, paged, sorted by time (stable per series)."""
    pages: list[pa.Table] = []
    after = None
    while True:
        page = store.range(series, lo, hi, limit=PAGE_ROWS, after=after)
        if page.table.num_rows:
            pages.append(page.table)
        if page.next is None:
            break
        after = page.next
    if not pages:
        return SAMPLE_SCHEMA.empty_table()
    points = pa.concat_tables(pages)
    order = np.argsort(points.column("ts").to_numpy(), kind="stable")
    points = points.take(pa.array(order))
    n = points.num_rows
    return pa.table(
        {
            "tenant": pa.array(np.full(n, tenant, np.int32)),
            "series": points.column("series").cast(pa.int32()),
            "ts": points.column("ts").cast(pa.int64()),
            "value": points.column("value").cast(pa.float64()),
            "text": points.column("text").cast(pa.string()),
            "quality": points.column("quality").cast(pa.uint8()),
        },
        schema=SAMPLE_SCHEMA,
    )


__all__ = [
    "Engine",
    "RuleRunner",
    "RunnerStats",
    "WouldBeAlarm",
    "alarms_of",
    "replay",
    "start_rules",
]
