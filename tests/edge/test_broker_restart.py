"""The broker restarted: a private Mosquitto process is killed (SIGKILL) under a running edge
gateway (simulator -> buffer -> Sparkplug uplink) and the platform's Sparkplug host, then
started again on the same port. Both sides must come back by themselves: the host with its
STATE, the edge node with a new birth (next bdSeq), replaying what it buffered while the
broker was gone, so that every sample produced arrives exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from tests.conftest import MOSQUITTO_BIN, PrivateMosquitto, need_programs, until
from tests.edge.sparkplug_observer import Observer
from yugong.core.quality import Quality
from yugong.core.settings import Settings
from yugong.edge.config import parse_config
from yugong.edge.gateway import EdgeGateway
from yugong.edge.uplink import SparkplugUplink
from yugong.platform.ingest.sparkplug_host import SparkplugHost
from yugong.platform.runtime import Platform
from yugong.security.principal import SYSTEM

pytestmark = pytest.mark.timeout(90)

DEVICE, POINT = "mixer-1", "batches"
TICK_S = 0.1
WAIT_S = 15.0  # a platform, a gateway and a broker restart: longer than the default wait


class TappedGateway(EdgeGateway):
    """The gateway, remembering each sample its connectors produced."""

    produced: list[tuple[int, float]]

    async def _sink(self, batch: pa.Table) -> None:
        ts = batch.column("ts").to_pylist()
        values = batch.column("value").to_pylist()
        points = batch.column("point").to_pylist()
        self.produced.extend(
            (t // 1000, v) for t, v, p in zip(ts, values, points, strict=True) if p == POINT
        )
        await super()._sink(batch)


def samples(obs: Observer, aliases: dict[int, str]) -> Counter[tuple[int, float]]:
    """(timestamp ms, value) of every counter sample seen in DDATA."""
    got: Counter[tuple[int, float]] = Counter()
    for topic, pb in obs.decoded("DDATA"):
        if topic.rsplit("/", 1)[1] != DEVICE:
            continue
        for m in pb.metrics:
            name = m.name if m.HasField("name") else aliases.get(m.alias)
            if name == POINT:
                got[(m.timestamp, m.double_value)] += 1
    return got


def birth_aliases(obs: Observer) -> dict[int, str]:
    return {
        m.alias: m.name
        for topic, pb in obs.decoded("DBIRTH")
        if topic.rsplit("/", 1)[1] == DEVICE
        for m in pb.metrics
    }


def bdseqs(obs: Observer) -> list[int]:
    return [
        next(m.long_value for m in pb.metrics if m.name == "bdSeq")
        for _, pb in obs.decoded("NBIRTH")
    ]


async def test_broker_killed_and_restarted(tmp_path: Path) -> None:
    need_programs(MOSQUITTO_BIN)
    broker = PrivateMosquitto(tmp_path, ["allow_anonymous true"])
    broker.start()
    url = f"mqtt://127.0.0.1:{broker.port}"
    run = uuid.uuid4().hex[:10]
    group, host_id = f"grp{run}", f"host-{run}"
    settings = Settings(
        data_dir=tmp_path / "platform",
        mqtt_embedded=False,
        secret_key="k" * 40,
        admin_password="Platform-Pass-2026!",
        ingest_flush_ms=10,
    )
    platform = Platform(settings)
    host: SparkplugHost | None = None
    gateway: TappedGateway | None = None
    obs: Observer | None = None
    try:
        await platform.start()
        tenant = platform.registry.tenants.create(SYSTEM, name=f"Plant {run}", slug=f"p{run}")
        host = SparkplugHost(
            settings,
            platform.registry,
            platform.ingest,
            groups={group: tenant.slug},
            host_id=host_id,
            broker_url=url,
            rebirth_interval_s=0.0,
        )
        await host.start()
        await asyncio.wait_for(host.ready.wait(), 10)
        config = parse_config(
            {
                "gateway": "gw-restart",
                "connectors": [
                    {
                        "name": "sim",
                        "protocol": "simulator",
                        "simulated": [
                            {
                                "name": DEVICE,
                                "interval": TICK_S,
                                "signals": [
                                    {"point": POINT, "waveform": "counter", "low": 0, "high": 1e9}
                                ],
                            }
                        ],
                    }
                ],
                "buffer": {"path": str(tmp_path / "edge-buffer.sqlite"), "max_bytes": "64MiB"},
                "uplink": {
                    "kind": "sparkplug",
                    "broker": url,
                    "group_id": group,
                    "edge_node_id": "gw-restart",
                    "host_id": host_id,  # publish only while the platform is online
                },
                "health": {"interval": 0},
            }
        )
        obs = Observer("127.0.0.1", broker.port, group, also=["spBv1.0/STATE/#"])
        gateway = TappedGateway(config)
        gateway.produced = []
        await gateway.start()
        uplink = gateway.uplink
        assert isinstance(uplink, SparkplugUplink)
        node = await until(lambda: uplink.node, "the edge node", timeout=WAIT_S)
        buffer = gateway.buffer
        assert buffer is not None

        # Normal operation: data flows through the broker to the platform.
        seen = lambda: samples(obs, birth_aliases(obs))  # noqa: E731
        await until(lambda: len(seen()) >= 5, "data through the broker", timeout=WAIT_S)
        assert bdseqs(obs) == [0] and node.stats.sessions == 1

        broker.kill()
        killed_at = len(gateway.produced)
        await until(
            lambda: not node.online, "the edge node to notice the broker is gone", timeout=WAIT_S
        )
        before = seen()  # all the first observer saw: its broker is gone
        # The gateway keeps polling; what it produces waits in the buffer.
        await until(
            lambda: len(gateway.produced) >= killed_at + 20, "samples while down", timeout=WAIT_S
        )
        assert buffer.depth().rows >= 15
        assert node.stats.sessions == 1 and not host.ready.is_set()

        # The same port, an empty broker: no sessions, no retained STATE. The observer is
        # back before this coroutine yields: the edge node publishes from this event loop,
        # so nothing it sends after the restart can pass before the observer listens.
        obs.close()
        broker.start()
        obs = Observer("127.0.0.1", broker.port, group, also=["spBv1.0/STATE/#"])
        await until(lambda: host.ready.is_set(), "the host to reconnect", timeout=WAIT_S)
        await until(lambda: obs.states(host_id) == [True], "the host's STATE again", timeout=WAIT_S)
        await until(lambda: bdseqs(obs) == [1], "a new birth with the next bdSeq", timeout=WAIT_S)
        restarted_at = len(gateway.produced)
        await until(
            lambda: len(gateway.produced) >= restarted_at + 5, "live data after it", timeout=WAIT_S
        )

        # Stop producing; then everything produced must have arrived, once each.
        await gateway.connectors["sim"].stop()
        produced = Counter(gateway.produced)
        assert sum(produced.values()) == len(produced)  # counter values never repeat
        with contextlib.suppress(AssertionError):  # the comparison below says what is missing
            await until(
                lambda: (
                    buffer.depth().batches == 0
                    and sum(seen().values()) + sum(before.values()) >= len(produced)
                ),
                "the backlog to be replayed",
                timeout=WAIT_S,
            )
        await asyncio.sleep(0.3)  # anything sent twice would arrive right behind
        got = before + seen()
        assert got == produced, (
            f"lost {sorted(produced - got)[:10]}, duplicated {sorted(got - produced)[:10]}"
        )
        values = [v for _, v in sorted(produced)]
        assert values == [float(i) for i in range(1, len(values) + 1)]

        # The edge node reconnected by itself: a second session, born again; the host went
        # back online and saw the new session without a gap.
        assert node.stats.sessions == 2 and node.stats.births == 2 and node.bdseq == 1
        assert host.stats.seq_gaps == 0

        # The platform stored every sample, once.
        await platform.writer.flush()
        binding = platform.directory.by_name(tenant.id, DEVICE)
        assert binding is not None
        page = platform.store.range(
            [binding.properties[POINT].series], 0, (time.time_ns() // 1000) + 60_000_000
        )
        stored = zip(
            page.table.column("value").to_pylist(),
            page.table.column("quality").to_pylist(),
            strict=True,
        )
        assert [v for v, q in stored if q == Quality.GOOD] == values
    finally:
        if gateway is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(gateway.stop(), 15)
        if host is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(host.stop(), 15)
        with contextlib.suppress(Exception):
            await platform.stop()
        if obs is not None:
            obs.close()
        broker.kill()
