"""HTTP/JSON connector against a real HTTP server on a free local port."""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import until
from tests.edge.conftest import Collector
from yugong.core.quality import Quality
from yugong.edge.connectors.base import Backoff, WriteStatus
from yugong.edge.connectors.http_json import HttpJsonConnector, HttpJsonOptions
from yugong.edge.profiles import DeviceProfile, ProfileError, parse_profile


class JsonServer:
    """Serves ``body`` with ``status`` after ``delay_s``; records request headers."""

    def __init__(self) -> None:
        self.status = 200
        self.body: bytes = b"{}"
        self.delay_s = 0.0
        self.headers: list[dict[str, str]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.headers.append(dict(self.headers.items()))
                if server.delay_s:
                    time.sleep(server.delay_s)
                try:
                    self.send_response(server.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(server.body)))
                    self.end_headers()
                    self.wfile.write(server.body)
                except OSError:
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/status"

    def serve(self, doc: Any) -> None:
        self.body = json.dumps(doc).encode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def http_server() -> Iterator[JsonServer]:
    server = JsonServer()
    try:
        yield server
    finally:
        server.close()


def fast_backoff() -> Backoff:
    return Backoff(initial=0.05, maximum=0.1)


def profile(url: str, **conn: Any) -> DeviceProfile:
    return parse_profile(
        {
            "name": "meter-1",
            "protocol": "http_json",
            "connection": {"url": url, "timeout": 0.5, **conn},
            "interval": "50ms",
            "points": [
                {"property": "power", "path": "$.data.power_w", "scale": 0.001, "unit": "kW"},
                {"property": "state", "path": "$.data.state", "type": "string", "length": 32},
                {"property": "on", "path": "$.data.relays[0]", "type": "bool"},
                {"property": "energy", "path": "$.totals.kwh", "group": "slow", "interval": "1s"},
            ],
        }
    )


DOC: dict[str, Any] = {
    "data": {"power_w": 1500, "state": "running", "relays": [True]},
    "totals": {"kwh": 12.5},
}


async def test_polls_and_maps_json_paths(http_server: JsonServer) -> None:
    http_server.serve(DOC)
    sink = Collector()
    conn = HttpJsonConnector(
        "http",
        [profile(http_server.url, headers={"X-Api-Key": "k1"})],
        sink,
        options=HttpJsonOptions(username="edge", password="s3cret"),
    )
    async with conn:
        await until(lambda: all(sink.last(p) for p in ("power", "state", "on", "energy")))
        http_server.serve({**DOC, "data": {**DOC["data"], "power_w": 2000}})
        await until(lambda: (sink.last("power") or {}).get("value") == pytest.approx(2.0))
        assert conn.available("meter-1")
    power, state, on, energy = (sink.last(p) for p in ("power", "state", "on", "energy"))
    assert power and state and on and energy
    assert (power["device"], power["quality"]) == ("meter-1", Quality.GOOD)
    assert state["text"] == "running" and on["value"] == 1.0 and energy["value"] == 12.5
    # Two groups on their own intervals: the fast one is polled far more often.
    counts = {p: sum(r["point"] == p for r in sink.rows()) for p in ("power", "energy")}
    assert counts["power"] > counts["energy"]
    sent = http_server.headers[-1]
    assert sent["X-Api-Key"] == "k1"
    assert sent["Authorization"] == "Basic " + base64.b64encode(b"edge:s3cret").decode()
    stats = conn.stats().devices["meter-1"]
    assert stats.points_read >= 4 and stats.bad_points == 0 and stats.bytes_received > 0


async def test_http_error_is_unavailable_with_bad_samples_logged_once(
    http_server: JsonServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="yugong.edge.connectors")
    http_server.serve(DOC)
    sink = Collector()
    conn = HttpJsonConnector("http", [profile(http_server.url)], sink, backoff=fast_backoff)
    async with conn:
        await until(lambda: conn.available("meter-1"))
        http_server.status = 503
        await until(lambda: not conn.available("meter-1"))
        seen = len(http_server.headers)
        await until(lambda: len(http_server.headers) >= seen + 3)  # it keeps retrying
        bad = [r for r in sink.rows() if r["quality"] == Quality.BAD]
        assert {r["point"] for r in bad} >= {"power", "state", "on"}
        assert all(r["value"] is None for r in bad)
        http_server.status = 200
        await until(lambda: conn.available("meter-1"))
        n = len(sink.rows())
        await until(lambda: len(sink.rows()) > n)
    assert sink.rows()[-1]["quality"] == Quality.GOOD
    down = [r for r in caplog.records if "unavailable" in r.getMessage()]
    up = [r for r in caplog.records if "is available" in r.getMessage()]
    assert len(down) == 1 and "HTTP 503" in down[0].getMessage()
    assert len(up) == 2  # the first connection, then the recovery
    assert conn.stats().devices["meter-1"].errors >= 3


async def test_timeout_and_refused_connection(http_server: JsonServer) -> None:
    http_server.serve(DOC)
    http_server.delay_s = 1.0  # over the 0.5 s timeout
    sink = Collector()
    conn = HttpJsonConnector("http", [profile(http_server.url)], sink, backoff=fast_backoff)
    async with conn:
        await until(lambda: conn.stats().devices["meter-1"].timeouts >= 1)
        assert not conn.available("meter-1")
        last = sink.last("power")
        assert last is not None and last["quality"] == Quality.BAD and last["value"] is None
        http_server.delay_s = 0.0
        await until(lambda: conn.available("meter-1"))
    refused = profile(http_server.url)
    http_server.close()  # nothing listens on the port any more
    sink2 = Collector()
    async with HttpJsonConnector("http", [refused], sink2, backoff=fast_backoff) as conn2:
        await until(lambda: any(r["quality"] == Quality.BAD for r in sink2.rows()))
        assert not conn2.available("meter-1")


async def test_body_that_is_not_json_fails_the_poll(
    http_server: JsonServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="yugong.edge.connectors")
    http_server.body = b"<html>maintenance</html>"
    sink = Collector()
    conn = HttpJsonConnector("http", [profile(http_server.url)], sink, backoff=fast_backoff)
    async with conn:
        await until(lambda: len(http_server.headers) >= 3)
    assert not any(r["quality"] == Quality.GOOD for r in sink.rows())
    assert any(r["quality"] == Quality.BAD for r in sink.rows())
    messages = [r.getMessage() for r in caplog.records if "unavailable" in r.getMessage()]
    assert len(messages) == 1 and "not JSON" in messages[0]


async def test_missing_paths_are_skipped_or_reported_bad(http_server: JsonServer) -> None:
    http_server.serve({"data": {"power_w": 10}})
    skip, report = Collector(), Collector()
    prof = profile(http_server.url)
    quiet = HttpJsonConnector("a", [prof], skip)
    loud = HttpJsonConnector("b", [prof], report, options=HttpJsonOptions(report_missing=True))
    async with quiet, loud:
        await until(lambda: bool(skip.last("power")) and bool(report.last("state")))
        assert quiet.available("meter-1") and loud.available("meter-1")
    assert {r["point"] for r in skip.rows()} == {"power"}
    state = report.last("state")
    assert state is not None and state["quality"] == Quality.BAD
    assert (report.last("power") or {})["quality"] == Quality.GOOD


async def test_timestamp_from_the_answer(http_server: JsonServer) -> None:
    http_server.serve({**DOC, "ts": "2024-05-01T12:00:00Z"})
    sink = Collector()
    opts = HttpJsonOptions(timestamp_path="$.ts")
    async with HttpJsonConnector("http", [profile(http_server.url)], sink, options=opts):
        await until(lambda: bool(sink.last("power")))
    assert (sink.last("power") or {})["ts"] == 1_714_564_800_000_000


async def test_points_are_read_only(http_server: JsonServer) -> None:
    http_server.serve(DOC)
    async with HttpJsonConnector("http", [profile(http_server.url)], Collector()) as conn:
        await until(lambda: conn.available("meter-1"))
        result = await conn.write("meter-1", "power", 1.0)
    assert result.status is WriteStatus.INVALID and "read-only" in result.message


def test_profile_points_need_a_path() -> None:
    with pytest.raises(ProfileError, match=r"meter-1\.points\[0\] \(power\): .*need path"):
        parse_profile(
            {
                "name": "meter-1",
                "protocol": "http_json",
                "connection": {"url": "http://127.0.0.1:1/"},
                "points": [{"property": "power"}],
            }
        )
