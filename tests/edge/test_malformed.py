"""Malformed answers: a raw TCP server that speaks just enough Modbus TCP to misbehave on
request, and a raw HTTP server that lies about its bodies. Whatever comes back, a connector
must not crash or hang: the affected points turn BAD, the failure is counted and logged
once, and the first correct answer is the recovery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

import pytest

from tests.conftest import free_port, until
from tests.edge.conftest import Collector
from yugong.core.quality import Quality
from yugong.edge.connectors.base import Backoff, Connector
from yugong.edge.connectors.http_json import HttpJsonConnector, HttpJsonOptions
from yugong.edge.connectors.modbus import ModbusConnector
from yugong.edge.profiles import parse_profile

pytestmark = pytest.mark.timeout(60)

DEVICE = "plc-1"
REGISTERS = (1234, 4321)  # what holding registers 0 and 1 hold when the server behaves


def fast_backoff() -> Backoff:
    return Backoff(initial=0.02, maximum=0.1)


def our_records(caplog: pytest.LogCaptureFixture, since: int) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records[since:]
        if r.name.startswith("yugong.") and r.levelno >= logging.WARNING
    ]


class TcpTestServer:
    """A TCP server on a free 127.0.0.1 port, in this event loop; ``_serve`` answers each
    connection. It can be stopped and started again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- Modbus TCP
class BadModbusServer(TcpTestServer):
    """Answers FC 3 reads with ``REGISTERS``, or, per ``mode``, with a broken answer."""

    def __init__(self) -> None:
        super().__init__()
        self.mode = "ok"

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                tid, _pid, length, unit = struct.unpack(">HHHB", await r.readexactly(7))
                fc, address, count = struct.unpack(">BHH", (await r.readexactly(length - 1))[:5])
                self.requests += 1
                w.write(self.answer(self.mode, tid, unit, fc, address, count))
                await w.drain()
        w.close()

    @staticmethod
    def answer(mode: str, tid: int, unit: int, fc: int, address: int, count: int) -> bytes:
        words = [REGISTERS[(address + i) % len(REGISTERS)] for i in range(count)]
        data = b"".join(struct.pack(">H", v) for v in words)
        pdu = bytes([fc, len(data)]) + data

        def frame(pdu: bytes, tid: int = tid, length: int | None = None) -> bytes:
            n = len(pdu) + 1 if length is None else length
            return struct.pack(">HHHB", tid, 0, n, unit) + pdu

        if mode == "ok":
            return frame(pdu)
        if mode == "wrong_transaction_id":
            return frame(pdu, tid=(tid + 7) & 0xFFFF)
        if mode == "truncated_frame":  # the header promises more than ever arrives
            return frame(pdu)[:-3]
        if mode == "length_field_too_short":  # the MBAP length cuts the PDU
            return frame(pdu, length=len(pdu) - 2)
        if mode == "wrong_function_code":  # a well-formed FC 4 answer to an FC 3 request
            return frame(bytes([4]) + pdu[1:])
        if mode == "byte_count_too_small":  # one register fewer than asked for
            return frame(bytes([fc, len(data) - 2]) + data[:-2])
        if mode == "byte_count_too_large":  # one register more than asked for
            return frame(bytes([fc, len(data) + 2]) + data + b"\x00\x63")
        if mode == "garbage":
            return bytes([0xFA, 0xFB, 0xFC, 0xFD, 0x00, 0x03, 0x13, 0x37]) + b"garbage!\xff"
        if mode == "illegal_address":  # a valid exception response, for contrast
            return frame(bytes([fc | 0x80, 2]))
        raise AssertionError(f"unknown mode {mode}")


@pytest.fixture
async def bad_modbus() -> AsyncIterator[BadModbusServer]:
    server = BadModbusServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


def modbus_connector(port: int, sink: Collector) -> ModbusConnector:
    prof = parse_profile(
        {
            "name": DEVICE,
            "protocol": "modbus_tcp",
            "connection": {"host": "127.0.0.1", "port": port, "unit_id": 1, "timeout": 0.3},
            "interval": "50ms",
            "points": [
                {"property": "a", "register": "holding", "address": 0, "type": "int16"},
                {"property": "b", "register": "holding", "address": 1, "type": "int16"},
            ],
        }
    )
    return ModbusConnector("mb", [prof], sink, backoff=fast_backoff)


GOOD_ROWS = {("a", float(REGISTERS[0]), Quality.GOOD), ("b", float(REGISTERS[1]), Quality.GOOD)}


def good_answer(sink: Collector, since: int) -> bool:
    """A batch after ``since`` holds both points with the values the server holds."""
    return any(
        {(r["point"], r["value"], r["quality"]) for r in t.to_pylist()} == GOOD_ROWS
        for t in sink.batches[since:]
    )


@dataclass(frozen=True)
class Fault:
    mode: str
    logged: str  # in the one warning the fault produces
    device_stays_up: bool = False  # the device answered properly, with an exception


FAULTS = [
    Fault("wrong_transaction_id", "no answer within"),
    Fault("truncated_frame", "no answer within"),
    Fault("length_field_too_short", "no answer within"),
    Fault("wrong_function_code", "answer has function code 4, not 3"),
    Fault("byte_count_too_small", "answer has 1 values, asked for 2"),
    Fault("byte_count_too_large", "answer has 3 values, asked for 2"),
    Fault("garbage", "no answer within"),
    Fault("illegal_address", "exception 2 ILLEGAL_ADDRESS", device_stays_up=True),
]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.mode for f in FAULTS])
async def test_modbus_malformed_answer(
    bad_modbus: BadModbusServer, fault: Fault, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="yugong.edge")
    sink = Collector()
    async with modbus_connector(bad_modbus.port, sink) as conn:
        await until(lambda: good_answer(sink, 0), "the first good poll")
        assert conn.available(DEVICE)
        before = conn.stats().devices[DEVICE]
        logs, batches, requests = len(caplog.records), len(sink.batches), bad_modbus.requests

        bad_modbus.mode = fault.mode
        # It keeps asking (neither crashed nor stuck on one request) and fails every time.
        await until(lambda: bad_modbus.requests >= requests + 4, "repeated requests")
        await until(lambda: conn.stats().devices[DEVICE].errors >= before.errors + 3, "errors")
        during = conn.stats().devices[DEVICE]
        assert conn.available(DEVICE) is fault.device_stays_up
        # (The first batch may still be the answer to a request made before the switch.)
        fault_rows = sink.rows(batches + 1)
        # Nothing the broken answers carried was passed on as a reading.
        assert {(r["point"], r["value"], r["quality"]) for r in fault_rows} == {
            ("a", None, Quality.BAD),
            ("b", None, Quality.BAD),
        }
        assert during.bad_points >= before.bad_points + 6
        warnings = our_records(caplog, logs)
        assert len(warnings) == 1, [r.getMessage() for r in warnings]  # once, not per poll
        assert fault.logged in warnings[0].getMessage()

        recovering = len(sink.batches)
        bad_modbus.mode = "ok"
        await until(lambda: good_answer(sink, recovering), "a good poll after the fault")
        await until(lambda: conn.available(DEVICE), "the device to be available again")
        after = conn.stats().devices[DEVICE]
    assert after.points_read >= during.points_read + 2
    infos = [r.getMessage() for r in caplog.records[logs:] if r.name.startswith("yugong.")]
    recovered = "readable again" if fault.device_stays_up else "is available"
    assert len([m for m in infos if recovered in m]) == 1
    assert len(our_records(caplog, logs)) == 1  # the recovery added no warning


async def test_modbus_every_fault_in_turn_on_one_connection(
    bad_modbus: BadModbusServer,
) -> None:
    """One connector through all the faults back to back, good answers in between: no fault
    leaves anything behind that spoils the next answer."""
    sink = Collector()
    async with modbus_connector(bad_modbus.port, sink) as conn:
        await until(lambda: good_answer(sink, 0), "the first good poll")
        for fault in FAULTS:
            errors = conn.stats().devices[DEVICE].errors

            def failing(n: int = errors) -> bool:
                return conn.stats().devices[DEVICE].errors >= n + 2

            bad_modbus.mode = fault.mode
            await until(failing, f"{fault.mode} errors")
            mark = len(sink.batches)
            bad_modbus.mode = "ok"
            await until(partial(good_answer, sink, mark), f"recovery after {fault.mode}")
        assert conn.available(DEVICE)
        st = conn.stats().devices[DEVICE]
    assert st.errors >= 2 * len(FAULTS) and st.bad_points >= 4 * len(FAULTS)


# --------------------------------------------------------------------------- HTTP JSON
class LyingHttpServer(TcpTestServer):
    """Answers every GET with ``body`` and a Content-Length of ``len(body) + length_delta``,
    then closes the connection."""

    def __init__(self) -> None:
        super().__init__()
        self.body = b"{}"
        self.length_delta = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/status"

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await r.readuntil(b"\r\n\r\n")
            self.requests += 1
            body = self.body
            head = (
                "HTTP/1.1 200 OK\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(body) + self.length_delta}\r\n"
                "Connection: close\r\n\r\n"
            )
            w.write(head.encode() + body)
            await w.drain()
        w.close()


@pytest.fixture
async def lying_http() -> AsyncIterator[LyingHttpServer]:
    server = LyingHttpServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


DOC = b'{"data": {"power_w": 1500, "relays": [true]}}'


def http_connector(
    url: str, sink: Collector, options: HttpJsonOptions | None = None
) -> HttpJsonConnector:
    prof = parse_profile(
        {
            "name": "meter-1",
            "protocol": "http_json",
            "connection": {"url": url, "timeout": 0.5},
            "interval": "50ms",
            "points": [
                {"property": "power", "path": "$.data.power_w", "scale": 0.001},
                {"property": "on", "path": "$.data.relays[0]", "type": "bool"},
            ],
        }
    )
    return HttpJsonConnector("http", [prof], sink, options=options, backoff=fast_backoff)


def http_good(sink: Collector, since: int) -> bool:
    rows = {(r["point"], r["value"], r["quality"]) for r in sink.rows(since)}
    return {("power", 1.5, Quality.GOOD), ("on", 1.0, Quality.GOOD)} <= rows


async def expect_failed_polls_then_recovery(
    server: LyingHttpServer,
    conn: Connector,
    sink: Collector,
    caplog: pytest.LogCaptureFixture,
    logged: str,
) -> None:
    """The server is misbehaving: every poll fails (BAD, counted, logged once) and the
    connector keeps asking; once it behaves again, the readings are GOOD again."""
    before = conn.stats().devices["meter-1"]
    logs, batches, requests = len(caplog.records), len(sink.batches), server.requests
    await until(lambda: server.requests >= requests + 3, "repeated requests")
    await until(lambda: conn.stats().devices["meter-1"].errors >= before.errors + 3, "errors")
    assert not conn.available("meter-1")
    rows = sink.rows(batches + 1)  # the first may answer a request made before the switch
    assert {(r["point"], r["value"], r["quality"]) for r in rows} == {
        ("power", None, Quality.BAD),
        ("on", None, Quality.BAD),
    }
    warnings = our_records(caplog, logs)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert logged in warnings[0].getMessage()
    server.body, server.length_delta = DOC, 0
    mark = len(sink.batches)
    await until(lambda: http_good(sink, mark), "good readings again")
    assert conn.available("meter-1")
    assert len(our_records(caplog, logs)) == 1


@pytest.mark.parametrize(
    ("delta", "logged"),
    [
        (+20, "meter-1 is unavailable: DeviceUnreachable"),  # body ends before its length
        (-5, "not JSON"),  # the length cuts the document short
    ],
    ids=["content_length_too_large", "content_length_too_small"],
)
async def test_http_wrong_content_length(
    lying_http: LyingHttpServer, delta: int, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="yugong.edge")
    lying_http.body = DOC
    sink = Collector()
    async with http_connector(lying_http.url, sink) as conn:
        await until(lambda: http_good(sink, 0), "the first good poll")
        lying_http.length_delta = delta
        await expect_failed_polls_then_recovery(lying_http, conn, sink, caplog, logged)


async def test_http_not_json_recovers(
    lying_http: LyingHttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="yugong.edge")
    lying_http.body = DOC
    sink = Collector()
    async with http_connector(lying_http.url, sink) as conn:
        await until(lambda: http_good(sink, 0), "the first good poll")
        lying_http.body = b'{"data": {"power_w": 15'  # cut off mid-document
        await expect_failed_polls_then_recovery(lying_http, conn, sink, caplog, "not JSON")


@pytest.mark.parametrize(
    "body",
    [
        b'{"data": {"power_w": "1.5 kW", "relays": ["closed"]}}',  # text that is no value
        b'{"data": {"power_w": [1500], "relays": [{"on": true}]}}',  # nested one level deeper
    ],
    ids=["wrong_value_types", "wrong_nesting"],
)
async def test_http_json_of_the_wrong_shape_is_bad(
    lying_http: LyingHttpServer, body: bytes
) -> None:
    """The paths lead somewhere, but not to a value the point can take: BAD samples, while
    the device, which did answer, stays available."""
    lying_http.body = DOC
    sink = Collector()
    async with http_connector(lying_http.url, sink) as conn:
        await until(lambda: http_good(sink, 0), "the first good poll")
        before = conn.stats().devices["meter-1"]
        mark, requests = len(sink.batches), lying_http.requests
        lying_http.body = body
        await until(lambda: lying_http.requests >= requests + 3, "repeated requests")
        await until(
            lambda: conn.stats().devices["meter-1"].bad_points >= before.bad_points + 4,
            "BAD samples",
        )
        assert conn.available("meter-1")
        wrong = [r for r in sink.rows(mark) if r["quality"] == Quality.BAD]
        assert {r["point"] for r in wrong} == {"power", "on"}
        assert all(r["value"] is None for r in wrong)
        lying_http.body = DOC
        mark = len(sink.batches)
        await until(lambda: http_good(sink, mark), "good readings again")


async def test_http_document_of_another_shape(
    lying_http: LyingHttpServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A top-level list where an object is expected: none of the paths exist. With
    ``report_missing`` every point is BAD; without, nothing is emitted but the poll counts
    as an error, logged once; in no case is anything taken from it as a reading."""
    caplog.set_level(logging.WARNING, logger="yugong.edge.connectors")
    lying_http.body = b'[{"power_w": 1500}, true]'
    quiet, loud = Collector(), Collector()
    a = http_connector(lying_http.url, quiet)
    b = http_connector(lying_http.url, loud, HttpJsonOptions(report_missing=True))
    async with a, b:
        await until(lambda: lying_http.requests >= 8, "repeated requests")
        await until(lambda: b.stats().devices["meter-1"].bad_points >= 4, "BAD samples")
        assert quiet.rows() == []
        assert a.stats().devices["meter-1"].errors >= 2 and a.available("meter-1")
        said = [r.getMessage() for r in caplog.records if "point paths" in r.getMessage()]
        assert len(said) == 1 and "none of the 2 point paths" in said[0], said
        assert {(r["point"], r["value"], r["quality"]) for r in loud.rows()} == {
            ("power", None, Quality.BAD),
            ("on", None, Quality.BAD),
        }
        lying_http.body = DOC
        await until(lambda: http_good(quiet, 0) and http_good(loud, 0), "good readings")
