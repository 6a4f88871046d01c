"""Chart history and the live device stream on a real platform: one day at 1 Hz reduced
with LTTB (spikes kept), short ranges raw, min/max buckets beyond the raw limit, a sparse
series over decades, refusals; and the stream (SSE) receiving ingested values."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from tests.integration.conftest import Api, TenantWorld, make_settings
from yugong.api.app import create_app
from yugong.core.samples import make_batch
from yugong.core.timeutil import now_ms
from yugong.platform.history import DeviceStream, history, minmax_bucket_us
from yugong.platform.query import QueryService
from yugong.security.principal import Principal, Role
from yugong.server import BackgroundServer

V1 = "/api/v1"
DAY = 86_400
# A whole day at 1 Hz, ending well before now (the default window is the last 24 hours).
T0_MS = (now_ms() // 86_400_000 - 3) * 86_400_000
END_MS = T0_MS + DAY * 1000
MAX_AT, MIN_AT = 40_000, 61_234  # seconds into the day of the two spikes
SPARSE_MS = [T0_MS - k * 121 * 86_400_000 for k in range(1, 61)]  # every ~4 months, 20 years


@dataclass
class World:
    client: TestClient
    api: Api
    a: TenantWorld
    b: TenantWorld
    temps: np.ndarray

    def get(self, params: dict[str, Any], expect: int = 200, who: TenantWorld | None = None) -> Any:
        path = f"{V1}/devices/{self.a.device_id}/history"
        return self.api.call("GET", path, (who or self.a).headers, expect, params=params)

    @property
    def query(self) -> QueryService:
        return self.client.app.state.query  # type: ignore[attr-defined,no-any-return]

    def principal(self) -> Principal:
        return Principal("user", 0, self.a.tenant_id, Role.VIEWER, "chart-test")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    settings = make_settings(Path(tmp_path_factory.mktemp("history")), mqtt_embedded=False)
    with TestClient(create_app(settings)) as client:
        api = Api(client)
        root = api.admin()
        a, b = api.setup_tenant(root, "Chart A"), api.setup_tenant(root, "Chart B")
        rng = np.random.default_rng(11)
        t = np.arange(DAY)
        temps = np.round(20 + 5 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 0.3, DAY), 2)
        temps[MAX_AT], temps[MIN_AT] = 120.0, -35.0
        day = {"ts": (T0_MS + t * 1000).tolist(), "temperature": temps.tolist()}
        sparse = {"ts": SPARSE_MS, "count": list(range(len(SPARSE_MS)))}
        body = [
            {"device": a.device_id, "columns": day},
            {"device": a.device_id, "columns": sparse},
        ]
        got = api.call("POST", f"{V1}/telemetry", a.headers, json=body)
        assert got["accepted"] == DAY + len(SPARSE_MS)
        w = World(client, api, a, b, temps)

        def stored() -> bool:
            s = w.get({"keys": "temperature", "start": T0_MS, "end": END_MS})["series"][0]
            return bool(s["raw_count"] == DAY)

        api.wait_for(stored)
        yield w


def test_one_day_is_downsampled_with_its_spikes(world: World) -> None:
    body = world.get({"keys": "temperature", "start": T0_MS, "end": END_MS, "points": 2000})
    [s] = body["series"]
    assert (s["device"], s["property"], s["unit"]) == (world.a.device_id, "temperature", "°C")
    assert s["mode"] == "lttb" and s["raw_count"] == DAY
    assert 0 < len(s["ts"]) == len(s["value"]) <= 2000
    assert max(s["value"]) == 120.0 and min(s["value"]) == -35.0
    assert s["ts"][s["value"].index(120.0)] == T0_MS + MAX_AT * 1000
    assert s["ts"][0] == T0_MS and s["ts"][-1] == END_MS - 1000
    assert s["ts"] == sorted(s["ts"])
    # Every point is a real sample, at its time.
    at = (np.array(s["ts"]) - T0_MS) // 1000
    assert np.array_equal(world.temps[at], np.array(s["value"]))
    fewer = world.get({"keys": "temperature", "start": T0_MS, "end": END_MS, "points": 100})
    assert len(fewer["series"][0]["value"]) == 100


def test_ten_minutes_are_raw(world: World) -> None:
    start = T0_MS + 3_600_000
    body = world.get({"keys": "temperature", "start": start, "end": start + 600_000})
    [s] = body["series"]
    assert s["mode"] == "raw" and s["raw_count"] == 600
    assert s["ts"] == list(range(start, start + 600_000, 1000))
    assert s["value"] == world.temps[3600:4200].tolist()


def test_iso_times_and_every_numeric_property(world: World) -> None:
    start = "1970-01-01T00:00:00Z"
    body = world.get({"start": start, "end": END_MS, "points": 10})
    names = [s["property"] for s in body["series"]]
    assert names == ["temperature", "running", "mode", "count"]  # not the text 'label'
    by = {s["property"]: s for s in body["series"]}
    assert by["running"]["raw_count"] == 0 and by["running"]["ts"] == []
    assert by["temperature"]["mode"] == "lttb" and len(by["temperature"]["ts"]) == 10


def test_sparse_data_over_a_huge_range(world: World) -> None:
    params = {"keys": "count", "start": 0, "end": END_MS}
    [s] = world.get(params)["series"]
    assert s["mode"] == "raw" and s["raw_count"] == len(SPARSE_MS)
    assert s["ts"] == sorted(SPARSE_MS) and s["value"] == list(range(59, -1, -1))
    [s] = world.get({**params, "points": 10})["series"]
    assert s["mode"] == "lttb" and len(s["ts"]) == 10
    assert s["ts"][0] == min(SPARSE_MS) and s["ts"][-1] == max(SPARSE_MS)
    # Over the raw limit: min/max buckets, at most points / 2 of them, still in the range.
    start_us, end_us = -(10**17), END_MS * 1000  # from 1.2 million years before 1970
    [mm] = history(
        world.query,
        world.principal(),
        world.a.device_id,
        ["count"],
        start_us,
        end_us,
        10,
        max_lttb_raw=20,
    )
    assert mm["mode"] == "minmax" and mm["raw_count"] == len(SPARSE_MS)
    assert 0 < len(mm["ts"]) <= 10 and len(mm["ts"]) % 2 == 0
    assert min(mm["value"]) == 0 and max(mm["value"]) == 59
    ts = np.asarray(mm["ts"])
    assert np.all(np.diff(ts) >= 0) and ts[0] >= start_us // 1000 and ts[-1] < END_MS


def test_minmax_over_the_day(world: World) -> None:
    start_us, end_us = T0_MS * 1000, END_MS * 1000
    [s] = history(
        world.query,
        world.principal(),
        world.a.device_id,
        ["temperature"],
        start_us,
        end_us,
        2000,
        max_lttb_raw=DAY - 1,
    )
    assert s["mode"] == "minmax" and s["raw_count"] == DAY
    value, ts = np.asarray(s["value"]), np.asarray(s["ts"])
    assert 0 < len(ts) <= 2000 and len(ts) == len(value)
    assert value.max() == 120.0 and value.min() == -35.0
    assert np.all(np.diff(ts) >= 0) and ts[0] == T0_MS and ts[-1] < END_MS
    # Each pair holds its bucket's extremes: the samples (whole seconds) in its time span.
    size_ms = minmax_bucket_us(start_us, end_us, 1000) // 1000
    first, last = T0_MS // size_ms, (END_MS - 1) // size_ms
    assert len(ts) == 2 * (last - first + 1)  # every bucket, none empty
    for k in range(0, len(ts), 2):
        end = (ts[k] // size_ms + 1) * size_ms
        lo, hi = -(-(ts[k] - T0_MS) // 1000), min(DAY, -(-(end - T0_MS) // 1000))
        bucket = world.temps[lo:hi]
        assert sorted(value[k : k + 2]) == [bucket.min(), bucket.max()]


def test_bucket_sizes_keep_the_promise() -> None:
    rng = np.random.default_rng(5)
    for _ in range(500):
        start = int(rng.integers(-(10**15), 10**15))
        end = start + int(rng.integers(1, 10**13))
        buckets = int(rng.integers(2, 5001))
        size = minmax_bucket_us(start, end, buckets)
        assert size % 1000 == 0
        first, last = start - start % size, (end - 1) - (end - 1) % size
        assert (last - first) // size + 1 <= buckets


def test_refusals(world: World) -> None:
    window = {"start": T0_MS, "end": END_MS}
    bad = world.get({**window, "keys": "temperature,nope"}, 422)
    assert "nope" in bad["detail"] and bad["errors"][0]["loc"] == "keys"
    text = world.get({**window, "keys": "label"}, 422)
    assert "label" in text["detail"]
    world.get({**window, "keys": "temperature", "points": 5}, 422)
    world.get({**window, "keys": "temperature", "points": 10_001}, 422)
    world.get({"keys": "temperature", "start": "yesterday"}, 422)
    world.get({"keys": "temperature", "start": END_MS, "end": T0_MS}, 422)
    # Another tenant's device does not exist for B, for history and stream alike.
    world.get({**window, "keys": "temperature"}, 404, who=world.b)
    path = f"{V1}/devices/{world.a.device_id}/stream"
    world.api.call("GET", path, world.b.headers, 404, params={"once": "true"})
    world.api.call("GET", f"{V1}/devices/{world.a.device_id}/history", None, 401)


def test_stream_once_sends_the_latest_values(world: World) -> None:
    path = f"{V1}/devices/{world.a.device_id}/stream"
    r = world.client.get(path, headers=world.a.headers, params={"once": "true"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    data = [json.loads(x[5:]) for x in r.text.splitlines() if x.startswith("data:")]
    assert data == [
        {
            "ts": END_MS - 1000,
            "values": {"temperature": world.temps[-1], "count": 0},
        }
    ]
    r = world.client.get(path, headers=world.a.headers, params={"once": 1, "keys": "label"})
    assert [x for x in r.text.splitlines() if x.startswith("data:")] == [
        'data: {"ts":null,"values":{}}'
    ]
    world.api.call("GET", path, world.a.headers, 422, params={"once": 1, "keys": "nope"})


def test_stream_picks_the_newest_sample_per_property(world: World) -> None:
    refs = world.query.resolve(world.principal(), [(world.a.device_id, ["temperature", "count"])])
    temp, count = (r.prop.series for r in refs)
    other = world.query.resolve(
        Principal("user", 0, world.b.tenant_id, Role.VIEWER, "b"),
        [(world.b.device_id, ["temperature"])],
    )[0].prop.series
    batch = make_batch(
        world.a.tenant_id,
        [temp, count, temp, other, temp, count],
        [5_000, 1_000, 9_000, 99_000, 9_000, 2_000],
        [1.0, 10.0, 2.0, 50.0, 3.0, 20.0],
    )
    picker = DeviceStream(refs)
    assert picker.event(batch) == {"ts": 9, "values": {"temperature": 3.0, "count": 20}}
    assert picker.event(batch.slice(3, 1)) is None
    assert picker.event(batch.slice(0, 0)) is None
    empty = pa.table({"series": pa.array([], pa.int32())})
    assert DeviceStream([]).event(empty) is None


# The live stream on real sockets ----------------------------------------------------------


class SseReader:
    """Reads a device stream in a thread, collecting the events' data and the comments."""

    def __init__(self, client: httpx.Client, path: str, headers: dict[str, str], **params: Any):
        self.events: list[Any] = []
        self.comments: list[str] = []
        self.status = 0
        self.opened = threading.Event()
        self._args = (client, path, headers, params)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        client, path, headers, params = self._args
        try:
            with client.stream("GET", path, headers=headers, params=params) as r:
                self.status = r.status_code
                for line in r.iter_lines():
                    if line.startswith(":"):
                        self.comments.append(line[1:].strip())
                        self.opened.set()
                    elif line.startswith("data:"):
                        self.events.append(json.loads(line[5:]))
        finally:
            self.opened.set()

    def wait(self, n: int, timeout: float = 15.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while len(self.events) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.events) >= n, f"got {self.events}"
        return self.events


@dataclass
class Live:
    srv: BackgroundServer
    api: Api
    a: TenantWorld
    b: TenantWorld

    def stream_subscribers(self) -> int:
        return self.srv.platform.bus.stats().subscribers.get("samples", 0)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    settings = make_settings(Path(tmp_path_factory.mktemp("stream")), mqtt_embedded=False)
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        root = api.admin()
        yield Live(srv, api, api.setup_tenant(root, "Live A"), api.setup_tenant(root, "Live B"))


def test_stream_receives_ingested_values(live: Live) -> None:
    api, a, b = live.api, live.a, live.b
    path = f"{V1}/devices/{a.device_id}/stream"
    with httpx.Client(base_url=live.srv.url, timeout=30) as c:
        every = SseReader(c, path, a.headers, timeout=5, heartbeat=0.2)
        only_temp = SseReader(c, path, a.headers, timeout=5, keys="temperature")
        for reader in (every, only_temp):
            assert reader.opened.wait(10) and reader.status == 200
        # B's device and A's values of other properties do not reach the temperature stream.
        api.call("POST", f"{V1}/{b.token}/telemetry", json={"temperature": 99.5})
        api.call("POST", f"{V1}/{a.token}/telemetry", json={"count": 3})
        ts = now_ms()
        rows = [
            {"ts": ts - 10, "values": {"temperature": 41.0, "label": "old"}},
            {"ts": ts, "values": {"temperature": 42.5, "running": True, "label": "hot"}},
        ]
        api.call("POST", f"{V1}/{a.token}/telemetry", json=rows)
        got = every.wait(2)
        assert got[0]["values"] == {"count": 3}
        assert got[1] == {
            "ts": ts,
            "values": {"temperature": 42.5, "running": True, "label": "hot"},
        }
        assert only_temp.wait(1)[0] == {"ts": ts, "values": {"temperature": 42.5}}
        for reader in (every, only_temp):  # the server ends each stream
            reader.thread.join(15)
            assert not reader.thread.is_alive()
        assert "keep-alive" in every.comments
        assert len(only_temp.events) == 1 and len(every.events) == 2


def test_stream_ends_when_the_client_goes(live: Live) -> None:
    before = live.stream_subscribers()
    path = f"{V1}/devices/{live.a.device_id}/stream"
    params = {"heartbeat": 0.1}
    with (
        httpx.Client(base_url=live.srv.url, timeout=30) as c,
        c.stream("GET", path, headers=live.a.headers, params=params) as r,
    ):
        assert r.status_code == 200
        # Held: dropping the line iterator would close the connection.
        lines = (line for line in r.iter_lines() if line)
        assert next(lines).startswith("retry:")
        assert next(lines) == ": device stream"
        assert live.stream_subscribers() == before + 1
        assert next(lines) == ": keep-alive"  # still open, and kept alive
        assert live.stream_subscribers() == before + 1
    # No timeout was asked for: only the client leaving ends it and frees the subscription.
    live.api.wait_for(lambda: live.stream_subscribers() == before)
