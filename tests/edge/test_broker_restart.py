"""The broker restarted: a private Mosquitto process is killed (SIGKILL) under a running edge
gateway (simulator -> buffer -> Sparkplug uplink) and the platform's Sparkplug host, then
started again on the same port. Both sides must come back by themselves: the host with its
STATE, the edge node with a new birth (next bdSeq), replaying what it buffered while the
broker was gone, so that every sample produced arrives exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pyarrow as pa
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from pysparkplug import _protobuf as psp_pb

from tests.conftest import free_port, reachable
from yugong.core.quality import Quality
from yugong.core.settings import Settings
from yugong.edge.config import parse_config
from yugong.edge.gateway import EdgeGateway
from yugong.edge.uplink import SparkplugUplink
from yugong.platform.ingest.sparkplug_host import SparkplugHost
from yugong.platform.runtime import Platform
from yugong.security.principal import SYSTEM

pytestmark = pytest.mark.timeout(90)

MOSQUITTO = "/usr/sbin/mosquitto"
DEVICE, POINT = "mixer-1", "batches"
TICK_S = 0.1


class Broker:
    """A Mosquitto process of our own, on a fixed port, without persistence."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        )
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [MOSQUITTO, "-c", str(self.conf)], stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not reachable("127.0.0.1", self.port, timeout=0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mosquitto did not start: {self.log.read_text()}")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


class Observer:
    """A plain MQTT client recording every Sparkplug message of the group, and STATE."""

    def __init__(self, port: int, group: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"obs-{uuid.uuid4().hex[:8]}"
        )
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(f"spBv1.0/{group}/#", 1), ("spBv1.0/STATE/#", 1)])
        self.client.loop_start()
        assert subscribed.wait(5), "the observer could not subscribe"

    def _on_message(self, client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload)))

    def of(self, kind: str) -> list[tuple[str, Any]]:
        with self._lock:
            messages = list(self.messages)
        out = []
        for topic, payload in messages:
            parts = topic.split("/")
            if parts[1] != "STATE" and parts[2] == kind:
                pb = psp_pb.Payload()
                pb.ParseFromString(payload)
                out.append((topic, pb))
        return out

    def states(self, host_id: str) -> list[bool]:
        with self._lock:
            return [
                json.loads(p)["online"] for t, p in self.messages if t == f"spBv1.0/STATE/{host_id}"
            ]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


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


async def until(cond: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = cond()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def samples(obs: Observer, aliases: dict[int, str]) -> Counter[tuple[int, float]]:
    """(timestamp ms, value) of every counter sample seen in DDATA."""
    got: Counter[tuple[int, float]] = Counter()
    for topic, pb in obs.of("DDATA"):
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
        for topic, pb in obs.of("DBIRTH")
        if topic.rsplit("/", 1)[1] == DEVICE
        for m in pb.metrics
    }


def bdseqs(obs: Observer) -> list[int]:
    return [
        next(m.long_value for m in pb.metrics if m.name == "bdSeq") for _, pb in obs.of("NBIRTH")
    ]


async def test_broker_killed_and_restarted(tmp_path: Path) -> None:
    if not os.access(MOSQUITTO, os.X_OK) and shutil.which("mosquitto") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{MOSQUITTO} is not installed (CI=true: a missing service fails)")
        pytest.skip(f"{MOSQUITTO} is not installed")
    broker = Broker(tmp_path)
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
        obs = Observer(broker.port, group)
        gateway = TappedGateway(config)
        gateway.produced = []
        await gateway.start()
        uplink = gateway.uplink
        assert isinstance(uplink, SparkplugUplink)
        node = await until(lambda: uplink.node, "the edge node")
        buffer = gateway.buffer
        assert buffer is not None

        # Normal operation: data flows through the broker to the platform.
        seen = lambda: samples(obs, birth_aliases(obs))  # noqa: E731
        await until(lambda: len(seen()) >= 5, "data through the broker")
        assert bdseqs(obs) == [0] and node.stats.sessions == 1

        broker.kill()
        killed_at = len(gateway.produced)
        await until(lambda: not node.online, "the edge node to notice the broker is gone")
        before = seen()  # all the first observer saw: its broker is gone
        # The gateway keeps polling; what it produces waits in the buffer.
        await until(lambda: len(gateway.produced) >= killed_at + 20, "samples while down")
        assert buffer.depth().rows >= 15
        assert node.stats.sessions == 1 and not host.ready.is_set()

        # The same port, an empty broker: no sessions, no retained STATE. The observer is
        # back before this coroutine yields: the edge node publishes from this event loop,
        # so nothing it sends after the restart can pass before the observer listens.
        obs.close()
        broker.start()
        obs = Observer(broker.port, group)
        await until(lambda: host.ready.is_set(), "the host to reconnect")
        await until(lambda: obs.states(host_id) == [True], "the host's STATE again")
        await until(lambda: bdseqs(obs) == [1], "a new birth with the next bdSeq")
        restarted_at = len(gateway.produced)
        await until(lambda: len(gateway.produced) >= restarted_at + 5, "live data after it")

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
