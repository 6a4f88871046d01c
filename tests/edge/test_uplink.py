"""The Sparkplug edge node against the real Mosquitto, observed and commanded with pysparkplug
payloads (a Sparkplug implementation that is not ours). A small TCP proxy in front of the
broker lets a test cut the node's connection abruptly and bring it back."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pysparkplug as psp
import pytest

from tests.conftest import free_port, until
from tests.edge.sparkplug_observer import Observer, decode
from yugong.core.errors import InvalidInput
from yugong.edge.buffer import StoreForwardBuffer
from yugong.edge.connectors.base import WriteResult, WriteStatus
from yugong.edge.samples import edge_batch
from yugong.edge.sparkplug import DataType, state_payload, state_topic
from yugong.edge.uplink import DeviceSpec, EdgeNode, EdgeNodeConfig, MetricSpec

DEVICES = [
    DeviceSpec(
        "pump",
        [
            MetricSpec("speed", DataType.Double, unit="rpm", writable=True),
            MetricSpec("count", DataType.Int32),
        ],
    ),
    DeviceSpec("tank", [MetricSpec("level", DataType.Float, unit="m")]),
]


class Proxy:
    """TCP relay we can cut (sockets aborted, listener closed) and resume on the same port."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._conns: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection(*self.upstream)
        self._conns += [w, uw]

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            with contextlib.suppress(Exception):
                dst.close()

        await asyncio.gather(pump(r, uw), pump(ur, w))

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for w in self._conns:
            w.transport.abort()  # no DISCONNECT: the broker must send the will
        self._conns.clear()


@pytest.fixture
def group() -> str:
    return f"yg{uuid.uuid4().hex[:10]}"


@pytest.fixture
def observer(mosquitto: tuple[str, int], group: str) -> Iterator[Observer]:
    obs = Observer(*mosquitto, group)
    yield obs
    obs.close()


@contextlib.asynccontextmanager
async def running(node: EdgeNode) -> AsyncIterator[EdgeNode]:
    task = asyncio.create_task(node.run())
    try:
        yield node
    finally:
        node.stop()
        await asyncio.wait_for(task, 10)


def config(broker: tuple[str, int], group: str, **kw: Any) -> EdgeNodeConfig:
    return EdgeNodeConfig(
        host=broker[0],
        port=broker[1],
        group_id=group,
        edge_node_id="gw1",
        reconnect_initial=0.05,
        reconnect_max=0.3,
        poll_interval=0.05,
        **kw,
    )


async def test_births_then_data(
    mosquitto: tuple[str, int], group: str, observer: Observer, buffer: StoreForwardBuffer
) -> None:
    buffer.append(edge_batch("pump", ["speed", "count"], 1_000_000, [12.5, 7]))
    buffer.append(edge_batch("tank", ["level"], 2_000_000, [3.25]))
    node = EdgeNode(config(mosquitto, group), DEVICES, buffer)
    async with running(node):
        await until(lambda: len(observer.of("DDATA")) == 2)
    births = observer.of("NBIRTH")
    assert [t for t, _ in births] == [f"spBv1.0/{group}/NBIRTH/gw1"]
    nbirth = psp.NBirth.decode(births[0][1])
    assert nbirth.seq == 0
    by_name = {m.name: m for m in nbirth.metrics}
    assert by_name["bdSeq"].value == 0 and by_name["bdSeq"].datatype is psp.DataType.INT64
    assert by_name["Node Control/Rebirth"].value is False
    dbirths = {t.rsplit("/", 1)[1]: decode(p) for t, p in observer.of("DBIRTH")}
    assert set(dbirths) == {"pump", "tank"}
    pump = {m.name: m for m in dbirths["pump"].metrics}
    assert set(pump) == {"speed", "count"}
    assert pump["speed"].datatype == DataType.Double and pump["count"].datatype == DataType.Int32
    props = dict(zip(pump["speed"].properties.keys, pump["speed"].properties.values, strict=True))
    assert props["engUnit"].string_value == "rpm" and props["readOnly"].boolean_value is False
    aliases = {m.alias for d in dbirths.values() for m in d.metrics}
    assert len(aliases) == 3  # unique across the node
    ddata = {t.rsplit("/", 1)[1]: psp.DData.decode(p) for t, p in observer.of("DDATA")}
    by_alias = {m.alias: m.name for m in dbirths["pump"].metrics}
    assert {(by_alias[m.alias], m.value, m.timestamp) for m in ddata["pump"].metrics} == {
        ("speed", 12.5, 1000),
        ("count", 7, 1000),
    }
    assert [m.value for m in ddata["tank"].metrics] == [3.25]
    assert observer.seqs() == [0, 1, 2, 3, 4]
    assert buffer.depth().batches == 0
    # Orderly stop: an NDEATH with the session's bdSeq.
    await until(lambda: observer.of("NDEATH"))
    assert psp.NDeath.decode(observer.of("NDEATH")[0][1]).bd_seq_metric.value == 0


async def test_seq_wraps_at_255(
    mosquitto: tuple[str, int], group: str, observer: Observer, buffer: StoreForwardBuffer
) -> None:
    for i in range(300):
        buffer.append(edge_batch("tank", ["level"], i, [float(i)]))
    node = EdgeNode(config(mosquitto, group, use_aliases=False), DEVICES, buffer)
    async with running(node):
        await until(lambda: len(observer.of("DDATA")) == 300)
    got = observer.seqs()
    assert got == [i % 256 for i in range(len(got))]  # NBIRTH 0, 2 DBIRTHs, 300 DDATA
    assert len(got) == 303 and got[256] == 0
    values = [psp.DData.decode(p).metrics[0].value for _, p in observer.of("DDATA")]
    assert values == [float(i) for i in range(300)]


async def test_death_will_and_replay_without_loss_or_duplicates(
    mosquitto: tuple[str, int], group: str, observer: Observer, buffer: StoreForwardBuffer
) -> None:
    proxy = Proxy(mosquitto)
    await proxy.start()
    node = EdgeNode(config(("127.0.0.1", proxy.port), group, use_aliases=False), DEVICES, buffer)
    async with running(node):
        for i in range(5):
            buffer.append(edge_batch("tank", ["level"], i, [float(i)]))
        node.notify()
        await until(lambda: len(observer.of("DDATA")) == 5 and buffer.depth().batches == 0)
        await proxy.cut()  # the link dies under the node
        await until(lambda: observer.of("NDEATH"))
        death = psp.NDeath.decode(observer.of("NDEATH")[0][1])
        assert death.bd_seq_metric.name == "bdSeq" and death.bd_seq_metric.value == 0
        for i in range(5, 40):  # live data keeps arriving while the broker is unreachable
            buffer.append(edge_batch("tank", ["level"], i, [float(i)]))
        await asyncio.sleep(0.3)
        assert buffer.depth().batches == 35  # nothing acked while down
        await proxy.start()  # same port, broker reachable again
        await until(lambda: len(observer.of("DDATA")) >= 40 and buffer.depth().batches == 0)
        await asyncio.sleep(0.1)
    values = [psp.DData.decode(p).metrics[0].value for _, p in observer.of("DDATA")]
    assert values == [float(i) for i in range(40)]  # none lost, none twice, in order
    nbirths = [psp.NBirth.decode(p) for _, p in observer.of("NBIRTH")]
    assert [b.metrics[0].value for b in nbirths][:2] == [0, 1]  # new session, next bdSeq
    await proxy.cut()


async def test_bdseq_continues_across_restarts(
    mosquitto: tuple[str, int], group: str, observer: Observer, tmp_path: Path
) -> None:
    """A restarted gateway's first session takes the next bdSeq, not 0 again: the will of
    the run before (which the broker may publish late) then cannot end the new session."""
    path = tmp_path / "restart.db"
    for run in range(3):
        with StoreForwardBuffer(path, max_bytes=10_000_000) as buf:
            node = EdgeNode(config(mosquitto, group), DEVICES, buf)
            async with running(node):
                await until(lambda run=run: len(observer.of("NBIRTH")) == run + 1)
    births = [psp.NBirth.decode(p).metrics[0].value for _, p in observer.of("NBIRTH")]
    deaths = [psp.NDeath.decode(p).bd_seq_metric.value for _, p in observer.of("NDEATH")]
    assert births == [0, 1, 2]
    assert deaths == [0, 1, 2]  # each orderly stop ends its own session


async def test_rebirth_on_ncmd(
    mosquitto: tuple[str, int], group: str, observer: Observer, buffer: StoreForwardBuffer
) -> None:
    node = EdgeNode(config(mosquitto, group), DEVICES, buffer)
    async with running(node):
        await until(lambda: len(observer.of("DBIRTH")) == 2)
        cmd = psp.NCmd(
            timestamp=1,
            metrics=(
                psp.Metric(
                    timestamp=1,
                    name="Node Control/Rebirth",
                    datatype=psp.DataType.BOOLEAN,
                    value=True,
                ),
            ),
        )
        observer.publish(f"spBv1.0/{group}/NCMD/gw1", cmd.encode())
        await until(lambda: len(observer.of("DBIRTH")) == 4)
        buffer.append(edge_batch("tank", ["level"], 1, [1.0]))
        node.notify()
        await until(lambda: observer.of("DDATA"))
    nbirths = [psp.NBirth.decode(p) for _, p in observer.of("NBIRTH")]
    assert [(b.seq, b.metrics[0].value) for b in nbirths] == [(0, 0), (0, 0)]  # same session
    assert observer.seqs() == [0, 1, 2, 0, 1, 2, 3]


async def test_dcmd_writes_and_reports(
    mosquitto: tuple[str, int], group: str, observer: Observer, buffer: StoreForwardBuffer
) -> None:
    calls: list[tuple[str, str, Any]] = []

    async def on_write(device: str, point: str, value: Any) -> WriteResult:
        calls.append((device, point, value))
        if value < 0:
            return WriteResult(WriteStatus.DEVICE_ERROR, "illegal data value", code=3)
        return WriteResult.ok()

    node = EdgeNode(config(mosquitto, group, use_aliases=False), DEVICES, buffer, on_write=on_write)

    def dcmd(name: str, value: Any, dtype: Any = psp.DataType.DOUBLE) -> None:
        cmd = psp.DCmd(
            timestamp=1, metrics=(psp.Metric(timestamp=1, name=name, datatype=dtype, value=value),)
        )
        observer.publish(f"spBv1.0/{group}/DCMD/gw1/pump", cmd.encode())

    async with running(node):
        await until(lambda: len(observer.of("DBIRTH")) == 2)
        dcmd("speed", 1500.0)
        dcmd("speed", -1.0)
        dcmd("count", 3, psp.DataType.INT32)  # read-only: refused without calling the device
        await until(lambda: len(observer.of("DDATA")) == 3)
    assert calls == [("pump", "speed", 1500.0), ("pump", "speed", -1.0)]
    reports = [decode(p).metrics[0] for _, p in observer.of("DDATA")]

    def status(m: Any) -> str:
        return dict(zip(m.properties.keys, m.properties.values, strict=True))[
            "writeStatus"
        ].string_value

    assert (reports[0].name, reports[0].double_value, status(reports[0])) == ("speed", 1500.0, "ok")
    assert (reports[1].is_null, reports[1].is_transient, status(reports[1])) == (
        True,
        True,
        "device_error",
    )
    assert (reports[2].name, status(reports[2])) == ("count", "invalid")
    assert node.stats.writes_failed == 2


async def test_waits_for_primary_host_state(
    mosquitto: tuple[str, int], group: str, observer: Observer, buffer: StoreForwardBuffer
) -> None:
    host = f"host-{group}"
    node = EdgeNode(config(mosquitto, group, primary_host_id=host), DEVICES, buffer)
    async with running(node):
        await until(lambda: node.stats.sessions == 1)
        await asyncio.sleep(0.3)
        assert observer.of("NBIRTH") == []  # host not online: nothing published
        observer.publish(state_topic(host), state_payload(True, 1), retain=True)
        try:
            await until(lambda: len(observer.of("DBIRTH")) == 2)
        finally:
            observer.publish(state_topic(host), b"", retain=True)  # clear the retained STATE


def test_config_is_checked() -> None:
    with pytest.raises(InvalidInput) as err:
        EdgeNodeConfig(host="h", group_id="a/b", edge_node_id="", port=0, cert_file=Path("c"))
    assert {e.loc for e in err.value.errors} == {"group_id", "edge_node_id", "port", "cert_file"}
