"""HTTP ingest routes: ThingsBoard device API and /telemetry (JSON rows, JSON columns,
Arrow IPC long and wide form), on a real DuckDB store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pyarrow as pa
import pytest
from fastapi import FastAPI

from tests.platform._directory import MemoryDirectory, press
from yugong.api import problems
from yugong.api.deps import current_principal
from yugong.api.routers import ingest
from yugong.core.settings import Settings
from yugong.infra.bus import InProcessBus
from yugong.infra.timeseries import TimeSeriesStore, open_store
from yugong.platform.ingest.service import IngestService
from yugong.platform.ingest.writer import BatchedWriter
from yugong.security.principal import Principal, Role

T0 = 1_700_000_000_000
END = 2**62
ARROW = {"content-type": "application/vnd.apache.arrow.stream"}


class Rig:
    def __init__(self, store: TimeSeriesStore) -> None:
        self.store = store
        self.directory = MemoryDirectory()
        self.directory.add(press(1, tenant=4), token="TOK")
        self.directory.add(press(2, tenant=4, name="press-2"))
        self.directory.add(press(3, tenant=9, name="foreign"))
        self.writer = BatchedWriter(store, batch_rows=100_000, flush_ms=20)
        self.attrs: list[dict] = []
        self.svc = IngestService(
            self.directory,
            self.writer,
            InProcessBus(),
            attribute_sink=lambda d, a: self.attrs.append(a),
        )
        self.role = Role.OPERATOR
        app = FastAPI()
        problems.install(app)
        app.include_router(ingest.router, prefix="/api/v1")
        app.state.ingest = self.svc
        app.state.settings = Settings(max_request_bytes=100_000)
        app.dependency_overrides[current_principal] = lambda: Principal(
            kind="user", id=1, tenant=4, role=self.role, name="op"
        )
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1"
        )

    async def rows(self, *series: int) -> list[dict]:
        await self.writer.flush()
        s = list(series) or [*range(101, 108), *range(201, 208), *range(301, 308)]
        return self.store.range(s, 0, END, limit=100_000).table.to_pylist()


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    store = open_store(f"duckdb:///{tmp_path / 'ts.duckdb'}")
    r = Rig(store)
    yield r
    await r.http.aclose()
    await r.writer.close()
    store.close()


def arrow_body(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


async def test_thingsboard_device_api(rig: Rig) -> None:
    r = await rig.http.post(
        "/TOK/telemetry", content=b'{"ts": %d, "values": {"temperature": 150}}' % T0
    )
    assert r.status_code == 200 and r.json() == {"accepted": 1, "out_of_range": 1}
    r = await rig.http.post("/TOK/attributes", content=b'{"fw": "9"}')
    assert r.status_code == 200 and rig.attrs == [{"fw": "9"}]
    r = await rig.http.post("/NOPE/telemetry", content=b'{"temperature": 1}')
    assert r.status_code == 401
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "unknown device access token"
    r = await rig.http.post("/TOK/telemetry", content=b'{"tmp": 1}')
    assert r.status_code == 422
    assert r.json()["detail"] == "unknown property 'tmp' for device 'press-1'"
    assert [x["value"] for x in await rig.rows()] == [150.0]


async def test_json_rows_by_name_and_id_with_iso_time(rig: Rig) -> None:
    body = [
        {"device": "press-1", "ts": T0, "values": {"temperature": 1, "running": True}},
        {"device": 2, "ts": "2023-11-14T22:13:20Z", "values": {"count": 4}},
        {"device": "press-1", "values": {"note": "now"}},
    ]
    r = await rig.http.post("/telemetry", content=orjson.dumps(body))
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 4, "out_of_range": 0}
    assert (await rig.rows(202))[0]["ts"] == T0 * 1000


async def test_json_columns_bulk(rig: Rig) -> None:
    n = 1000
    body = {
        "device": "press-1",
        "columns": {
            "ts": [T0 + i for i in range(n)],
            "temperature": [float(i % 200) for i in range(n)],
            "running": [i % 2 == 0 for i in range(n)],
        },
    }
    r = await rig.http.post(
        "/telemetry",
        content=orjson.dumps([body, {"device": "press-2", "columns": {"ts": [T0], "count": [1]}}]),
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2 * n + 1, "out_of_range": 5 * 79}
    assert len(await rig.rows(101)) == n


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (b"{", 422, "malformed JSON"),
        (
            b'[{"device": "nope", "values": {"temperature": 1}}]',
            422,
            "unknown device 'nope' (item 0)",
        ),
        (b'[{"device": "foreign", "values": {"temperature": 1}}]', 422, "unknown device"),
        (
            b'[{"device": 1, "values": {"temperature": 1}}, {"device": 1, "values": 3}]',
            422,
            "item 1: 'values' must be an object",
        ),
        (b'[{"device": 1, "ts": "soon", "values": {"temperature": 1}}]', 422, "not a timestamp"),
        (
            b'{"device": 1, "columns": {"ts": [1, 2], "count": [1, 2.5]}}',
            422,
            "property 'count' of device 'press-1': expected an integer, got 2.5 at index 1",
        ),
        (b'{"device": 1, "columns": {"temperature": [1]}}', 422, "with a 'ts' array"),
    ],
)
async def test_json_rejections(rig: Rig, body: bytes, status: int, detail: str) -> None:
    r = await rig.http.post("/telemetry", content=body)
    assert r.status_code == status
    assert detail in r.json()["detail"]
    assert await rig.rows() == []


async def test_arrow_long_and_wide(rig: Rig) -> None:
    long = pa.table(
        {
            "device": pa.array(["press-1", "press-2", "press-2"]).dictionary_encode(),
            "property": ["temperature", "temperature", "running"],
            "ts": pa.array([T0, T0, T0], pa.int64()),
            "value": pa.array([1.0, 2.0, 1.0]),
        }
    )
    r = await rig.http.post("/telemetry", content=arrow_body(long), headers=ARROW)
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
    wide = pa.table(
        {
            "ts": pa.array([T0 * 1000 + 1, T0 * 1000 + 2], pa.timestamp("us")),
            "temperature": [3.0, 4.0],
            "note": ["a", None],
        }
    )
    r = await rig.http.post(
        "/telemetry", params={"device": "press-1"}, content=arrow_body(wide), headers=ARROW
    )
    assert r.status_code == 200 and r.json()["accepted"] == 4, r.text
    assert [x["value"] for x in await rig.rows(101)] == [1.0, 3.0, 4.0]
    assert [x["quality"] for x in await rig.rows(105)] == [0, 2]
    r = await rig.http.post(
        "/telemetry",
        params={"device": "press-1"},
        headers=ARROW,
        content=arrow_body(pa.table({"ts": [T0], "tmp": [1.0]})),
    )
    assert r.status_code == 422 and "unknown property 'tmp'" in r.json()["detail"]
    r = await rig.http.post("/telemetry", content=b"not arrow", headers=ARROW)
    assert r.status_code == 422 and "not an Arrow IPC stream" in r.json()["detail"]


async def test_limits_and_permission(rig: Rig) -> None:
    r = await rig.http.post("/telemetry", content=b" " * 100_001)
    assert r.status_code == 413
    r = await rig.http.post("/TOK/telemetry", content=b" " * 100_001)
    assert r.status_code == 413
    rig.role = Role.VIEWER
    r = await rig.http.post("/telemetry", content=b'[{"device": 1, "values": {"count": 1}}]')
    assert r.status_code == 403
    assert await rig.rows() == []
