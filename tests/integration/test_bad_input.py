"""Bad input over every entry point gets a clear answer naming what is wrong; the platform
keeps running and nothing already stored is lost or altered."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.integration.conftest import Api, TenantWorld, make_settings
from yugong.server import BackgroundServer

T0 = 1_700_000_000_000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings = make_settings(
        Path(tmp_path_factory.mktemp("bad")),
        max_request_bytes=256 * 1024,
        mqtt_max_payload_bytes=16 * 1024,
    )
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        w = api.setup_tenant(api.admin(), "Careful Co")
        api.call(
            "POST",
            f"/api/v1/{w.token}/telemetry",
            json=[
                {"ts": T0 + i * 1000, "values": {"temperature": 20.0 + i, "count": i}}
                for i in range(10)
            ],
        )
        api.wait_for(lambda: len(_stored(api, w)["temperature"]) == 10)
        yield api, w, settings


def _stored(api: Api, w: TenantWorld) -> dict[str, list[Any]]:
    body = api.call(
        "GET",
        f"/api/v1/devices/{w.device_id}/timeseries",
        w.headers,
        params={"start": T0 - 10**9, "end": T0 + 10**10, "limit": 100_000},
    )
    return {s["property"]: list(zip(s["ts"], s["value"], strict=True)) for s in body["series"]}


def _problem(r: httpx.Response, status: int, *words: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    text = (body["detail"] + " " + str(body.get("errors", ""))).lower()
    for w in words:
        assert w.lower() in text, f"{w!r} not named in {body}"
    return body


@pytest.mark.parametrize(
    ("payload", "status", "named"),
    [
        (b'{"temperature": 21.5', 400, ["json"]),
        (b'"just a string"', 422, []),
        (b'{"ts": 1700000000000, "values": [1, 2]}', 422, ["values"]),
        (b'{"temperature": "hot"}', 422, ["temperature"]),
        (b'{"running": "yes"}', 422, ["running"]),
        (b'{"count": 1.5}', 422, ["count"]),
        (b'{"mode": 7}', 422, ["mode"]),
        (b'{"tmp": 1}', 422, ["tmp"]),
        (b'{"temperature": 1, "tmp": 2}', 422, ["tmp"]),  # one bad key: nothing stored
        (b'{"ts": "last tuesday", "values": {"temperature": 1}}', 422, ["ts"]),
    ],
)
def test_device_http_api_rejects_and_names(
    world: Any, payload: bytes, status: int, named: list[str]
) -> None:
    api, w, _ = world
    before = _stored(api, w)
    r = api.client.post(
        f"/api/v1/{w.token}/telemetry",
        content=payload,
        headers={"content-type": "application/json"},
    )
    if status == 400 and r.status_code == 422:
        status = 422  # malformed JSON may be reported as invalid input; it must say JSON
    _problem(r, status, *named)
    assert _stored(api, w) == before


def test_wrong_token_and_oversized(world: Any) -> None:
    api, w, settings = world
    before = _stored(api, w)
    _problem(api.client.post("/api/v1/not-a-token/telemetry", json={"temperature": 1.0}), 401)
    big = b'{"label": "' + b"x" * (settings.max_request_bytes + 10) + b'"}'
    r = api.client.post(
        f"/api/v1/{w.token}/telemetry", content=big, headers={"content-type": "application/json"}
    )
    _problem(r, 413, "limit")
    assert _stored(api, w) == before


def test_logged_in_json_ingest_rejects_and_names(world: Any) -> None:
    api, w, _ = world
    before = _stored(api, w)
    cases: list[tuple[object, list[str]]] = [
        ([{"device": 987654, "ts": T0, "values": {"temperature": 1.0}}], ["device"]),
        ([{"device": w.device_id, "ts": T0, "values": {"pressure": 1.0}}], ["pressure"]),
        (
            {"device": w.device_id, "columns": {"ts": [T0, T0 + 1], "temperature": [1.0, "x"]}},
            ["temperature"],
        ),
        (
            {"device": w.device_id, "columns": {"ts": [T0, T0 + 1], "temperature": [1.0]}},
            ["length"],
        ),
    ]
    for body, named in cases:
        _problem(api.client.post("/api/v1/telemetry", json=body, headers=w.headers), 422, *named)
    r = api.client.post(
        "/api/v1/telemetry",
        content=b"[{",
        headers={**w.headers, "content-type": "application/json"},
    )
    assert r.status_code in (400, 422) and "json" in r.text.lower()
    assert _stored(api, w) == before


def test_out_of_range_is_kept_as_uncertain(world: Any) -> None:
    api, w, _ = world
    api.call(
        "POST",
        f"/api/v1/{w.token}/telemetry",
        json={"ts": T0 + 50_000, "values": {"temperature": 500.0}},
    )
    body = api.wait_for(
        lambda: (lambda b: b if b["series"][0]["ts"] else None)(
            api.call(
                "GET",
                f"/api/v1/devices/{w.device_id}/timeseries",
                w.headers,
                params={"keys": "temperature", "start": T0 + 50_000, "end": T0 + 50_001},
            )
        )
    )
    assert body["series"][0]["value"] == [500.0]
    assert body["series"][0]["quality"] == ["uncertain"]


def test_mqtt_bad_input_leaves_broker_and_data_intact(world: Any) -> None:
    api, w, settings = world
    port = settings.mqtt_port
    # A wrong token is refused at connect.
    refused = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="intruder")
    refused.username_pw_set("not-a-token")
    codes: list[Any] = []
    refused.on_connect = lambda c, u, f, rc, p: codes.append(rc)
    refused.connect("127.0.0.1", port)
    refused.loop_start()
    deadline = time.monotonic() + 10
    while not codes and time.monotonic() < deadline:
        time.sleep(0.05)
    refused.loop_stop()
    assert codes and codes[0].is_failure

    before = _stored(api, w)
    good = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="careful-device")
    good.username_pw_set(w.token)
    good.connect("127.0.0.1", port)
    good.loop_start()
    try:
        for payload in (
            b'{"temperature": ',
            b'{"temperature": "hot"}',
            b'{"tmp": 1}',
            b'{"label": "' + b"x" * (settings.mqtt_max_payload_bytes + 1) + b'"}',
        ):
            good.publish("v1/devices/me/telemetry", payload, qos=1).wait_for_publish(10)
        # The broker is still up and the same connection still delivers good data.
        good.publish(
            "v1/devices/me/telemetry", b'{"ts": 1700000900000, "values": {"count": 99}}', qos=1
        ).wait_for_publish(10)
    finally:
        api.wait_for(lambda: any(t == T0 + 900_000 for t, _ in _stored(api, w).get("count", [])))
        good.disconnect()
        good.loop_stop()
    after = _stored(api, w)
    assert after["temperature"] == before["temperature"]
    assert after["count"] == [*before["count"], (T0 + 900_000, 99)]
    assert api.call("GET", "/api/v1/health")["status"] == "ok"
