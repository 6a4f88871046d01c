"""Tenant quotas end to end: the whole platform on real sockets, real HTTP and MQTT clients.

- profiles through the API, a tenant's usage for its admin only;
- HTTP ingest over a rate limit: 429 with Retry-After and a problem naming the limit;
- API requests/s per tenant;
- MQTT (paho, 5 and 3.1.1): over-limit messages are dropped and a persistent offender is
  disconnected (MQTT 5: reason 0x96 "Message rate too high");
- isolation: a tenant flooding over its limit is throttled to it while another tenant's
  accepted rate stays what it is when the first is idle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest

from tests.integration.conftest import Api, TenantWorld, make_settings
from yugong.server import BackgroundServer


class Rig:
    def __init__(self, srv: BackgroundServer, client: httpx.Client) -> None:
        self.srv = srv
        self.api = Api(client)
        self.admin = self.api.admin()
        self._n = 0

    def tenant(self, **limits: Any) -> TenantWorld:
        """A new tenant (admin, product, one device) with a profile of its own."""
        self._n += 1
        world = self.api.setup_tenant(self.admin, f"Quota {self._n}")
        if limits:
            profile = self.api.call(
                "POST",
                "/api/v1/tenant-profiles",
                self.admin,
                201,
                json={"name": f"profile-{self._n}", **limits},
            )
            self.api.call(
                "PATCH",
                f"/api/v1/tenants/{world.tenant_id}",
                self.admin,
                json={"profile_id": profile["id"]},
            )
        return world

    def usage(self, world: TenantWorld) -> dict[str, Any]:
        body: dict[str, Any] = self.api.call(
            "GET", f"/api/v1/tenants/{world.tenant_id}/usage", self.admin
        )
        return body


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    settings = make_settings(Path(tmp_path_factory.mktemp("quotas")), quota_disconnect_after_s=2)
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        yield Rig(srv, c)


def test_profiles_through_the_api_and_usage_for_the_tenant_admin(rig: Rig) -> None:
    api = rig.api
    a = rig.tenant(max_devices=1, max_retention_days=30)
    b = rig.tenant()
    profiles = api.call("GET", "/api/v1/tenant-profiles", rig.admin)
    default = next(p for p in profiles if p["is_default"])
    mine = next(p for p in profiles if p["tenants"] == 1 and p["max_devices"] == 1)
    assert api.call("GET", f"/api/v1/tenants/{a.tenant_id}", a.headers)["profile_id"] == mine["id"]

    # Over max_devices: 409 naming the limit and the usage.
    problem = api.call(
        "POST",
        "/api/v1/devices",
        a.headers,
        409,
        json={"name": "second", "product_id": a.product_id},
    )
    assert problem["title"] == "Quota exceeded" and "max_devices" in problem["detail"]
    # Retention above the profile's maximum: refused, nothing changed.
    problem = api.call(
        "PATCH", f"/api/v1/tenants/{a.tenant_id}", rig.admin, 422, json={"retention_days": 90}
    )
    assert "max_retention_days" in problem["detail"]

    usage = api.call("GET", f"/api/v1/tenants/{a.tenant_id}/usage", a.headers)
    assert usage["limits"]["max_devices"] == 1 and usage["usage"]["devices"] == 1
    assert usage["usage"]["users"] == 1 and usage["refused"] == {"max_devices": 1}
    assert isinstance(usage["usage"]["stored_bytes"], int)
    # Another tenant's usage, and the profiles themselves, are not the tenant admin's.
    api.call("GET", f"/api/v1/tenants/{b.tenant_id}/usage", a.headers, (403, 404))
    api.call("GET", "/api/v1/tenant-profiles", a.headers, 403)
    api.call("POST", "/api/v1/tenant-profiles", a.headers, 403, json={"name": "mine"})
    api.call("PATCH", f"/api/v1/tenants/{a.tenant_id}", a.headers, 403, json={"profile_id": None})

    problem = api.call("DELETE", f"/api/v1/tenant-profiles/{default['id']}", rig.admin, 409)
    assert "default" in problem["detail"]
    gone = api.client.delete(f"/api/v1/tenant-profiles/{mine['id']}", headers=rig.admin)
    assert gone.status_code == 204
    assert api.call("GET", f"/api/v1/tenants/{a.tenant_id}", a.headers)["profile_id"] is None
    api.call(
        "POST",
        "/api/v1/devices",
        a.headers,
        201,
        json={"name": "second", "product_id": a.product_id},
    )


def test_http_ingest_over_the_rate_is_429_with_retry_after(rig: Rig) -> None:
    a = rig.tenant(messages_per_s=5)
    b = rig.tenant()
    codes: list[int] = []
    refused: httpx.Response | None = None
    for i in range(20):
        r = rig.api.client.post(f"/api/v1/{a.token}/telemetry", json={"temperature": 20.0 + i})
        codes.append(r.status_code)
        if r.status_code == 429:
            refused = r
    assert set(codes) == {200, 429}
    assert 5 <= codes.count(200) <= 7  # the burst (and what refilled meanwhile)
    assert refused is not None and int(refused.headers["retry-after"]) >= 1
    problem = refused.json()
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert problem["limit"] == "messages_per_s" and "messages_per_s = 5/s" in problem["detail"]
    for i in range(20):  # the other tenant is not limited
        rig.api.call("POST", f"/api/v1/{b.token}/telemetry", json={"temperature": float(i)})
    usage = rig.usage(a)
    assert usage["refused"]["messages_per_s"] == codes.count(429)
    assert rig.usage(b)["refused"] == {}
    assert usage["usage"]["messages_per_s"] > 0


def test_api_requests_per_second_per_tenant(rig: Rig) -> None:
    a = rig.tenant(api_requests_per_s=3)
    b = rig.tenant()
    codes = [rig.api.client.get("/api/v1/devices", headers=a.headers) for _ in range(15)]
    statuses = [r.status_code for r in codes]
    assert 200 in statuses and 429 in statuses
    assert statuses.count(200) <= 6
    refused = next(r for r in codes if r.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["limit"] == "api_requests_per_s"
    assert all(
        rig.api.client.get("/api/v1/devices", headers=b.headers).status_code == 200
        for _ in range(15)
    )
    assert rig.usage(a)["refused"]["api_requests_per_s"] == statuses.count(429)
    time.sleep(1.1)  # the bucket refills
    assert rig.api.client.get("/api/v1/devices", headers=a.headers).status_code == 200


@pytest.mark.parametrize("protocol", [paho.MQTTv5, paho.MQTTv311])
def test_mqtt_over_the_rate_is_dropped_and_a_persistent_offender_disconnected(
    rig: Rig, protocol: Any
) -> None:
    a = rig.tenant(device_messages_per_s=5)
    address = rig.srv.platform.mqtt_address
    assert address is not None
    closed = threading.Event()
    reason: list[Any] = []
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, protocol=protocol, client_id=f"q-{protocol}"
    )
    client.username_pw_set(a.token)

    def on_disconnect(c: Any, u: Any, flags: Any, rc: Any, props: Any) -> None:
        reason.append(rc)
        closed.set()

    client.on_disconnect = on_disconnect
    client.connect(address[0], address[1])
    client.loop_start()
    try:
        deadline = time.monotonic() + 10
        i = 0
        while not closed.is_set() and time.monotonic() < deadline:
            client.publish("v1/devices/me/telemetry", b'{"count": %d}' % i, qos=0)
            i += 1
            time.sleep(0.01)  # ~100 messages/s against a limit of 5/s
        assert closed.is_set(), "the broker did not disconnect the offender"
    finally:
        client.loop_stop()
    if protocol == paho.MQTTv5:
        assert getattr(reason[0], "value", reason[0]) == 0x96  # Message rate too high
    usage = rig.usage(a)
    assert usage["refused"]["device_messages_per_s"] > 0
    stats = rig.srv.platform._broker.stats()  # the broker's own counters
    assert stats.dropped.get("rate_limited", 0) >= 1
    # What was accepted is stored: at most the burst plus 5/s over the run.
    count = rig.api.wait_for(lambda: rig.api.latest(a, "count").get("count"))
    assert count["value"] is not None


def _pace(url: str, path: str, rate: float, seconds: float, threads: int) -> tuple[int, int]:
    """Offer ``rate`` requests/s for ``seconds`` from ``threads`` clients; (200s, 429s)."""
    counts = [0, 0]
    lock = threading.Lock()
    start = time.monotonic() + 0.05

    def run(k: int) -> None:
        ok = refused = 0
        per = rate / threads
        with httpx.Client(base_url=url, timeout=30) as c:
            i = 0
            while True:
                due = start + (i + k / threads) / per
                if due >= start + seconds:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                r = c.post(path, json={"temperature": 21.5})
                ok += r.status_code == 200
                refused += r.status_code == 429
                i += 1
        with lock:
            counts[0] += ok
            counts[1] += refused

    workers = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return counts[0], counts[1]


def test_a_tenant_over_its_rate_does_not_slow_another_tenant(rig: Rig) -> None:
    limit, seconds = 50.0, 3.0
    flooder = rig.tenant(messages_per_s=limit)
    other = rig.tenant()
    url = rig.srv.url
    b_path, a_path = f"/api/v1/{other.token}/telemetry", f"/api/v1/{flooder.token}/telemetry"

    alone, _ = _pace(url, b_path, 100, seconds, 2)
    results: dict[str, tuple[int, int]] = {}
    flood = threading.Thread(
        target=lambda: results.__setitem__("a", _pace(url, a_path, 150, seconds, 3))
    )
    flood.start()
    together, b_refused = _pace(url, b_path, 100, seconds, 2)
    flood.join()
    a_ok, a_refused = results["a"]

    # The flooder gets its limit (plus one second of burst), the rest is refused...
    expected = limit * seconds + limit
    assert 0.7 * expected <= a_ok <= 1.3 * expected, (a_ok, a_refused)
    assert a_refused > 0
    # ...and the other tenant's accepted rate is what it was while the flooder was idle.
    assert b_refused == 0
    assert together >= 0.7 * alone, (alone, together)
    assert alone >= 0.5 * 100 * seconds  # the measurement itself meant something
