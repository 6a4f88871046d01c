"""Topic ACLs of the embedded broker with real paho clients (MQTT 3.1.1 and 5): a device
publishes and subscribes only its own topics, a gateway only its own and its children's
(ThingsBoard gateway API) and only as its own Sparkplug edge node; a device of one tenant
cannot write into or read from another tenant's devices over MQTT or HTTP. Every violation
is refused (MQTT 5: PUBACK 0x87, SUBACK 0x80; 3.1.1: dropped, SUBACK 0x80), leaves stored
data untouched, and is an ``acl_violation`` security event naming the device and topic. A
flood of malformed payloads is a ``malformed_flood`` event."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.integration.conftest import Api, TenantWorld, make_settings
from tests.integration.test_device_identity import security_events, wait_event
from yugong.server import BackgroundServer

pytestmark = pytest.mark.timeout(120)
T0 = 1_700_000_000_000
NOT_AUTHORIZED = 0x87


@dataclass
class Client:
    """A connected paho client that keeps each PUBACK's and SUBACK's reason codes."""

    port: int
    token: str
    name: str
    protocol: int = mqtt.MQTTv5
    acks: dict[int, int] = field(default_factory=dict)  # mid -> reason code
    granted: dict[int, list[int]] = field(default_factory=dict)  # mid -> codes
    received: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.done = threading.Condition()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.name, protocol=self.protocol)
        c.username_pw_set(self.token)
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        c.on_message = lambda _c, _u, m: self.received.append(m.topic)
        connected = threading.Event()
        c.on_connect = lambda *_a: connected.set()
        c.connect("127.0.0.1", self.port)
        c.loop_start()
        assert connected.wait(5) and c.is_connected(), f"{self.name} did not connect"
        self.client = c

    def _on_publish(self, _c: Any, _u: Any, mid: int, rc: Any, _p: Any) -> None:
        with self.done:
            self.acks[mid] = int(rc.value)
            self.done.notify_all()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, codes: list[Any], _p: Any) -> None:
        with self.done:
            self.granted[mid] = [int(x.value) for x in codes]
            self.done.notify_all()

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> int:
        """Publish and wait for the acknowledgement; its reason code (0 for QoS 0)."""
        info = self.client.publish(topic, payload, qos=qos)
        if qos == 0:
            info.wait_for_publish(5)
            return 0
        with self.done:
            assert self.done.wait_for(lambda: info.mid in self.acks, 5), f"no ack for {topic}"
            return self.acks[info.mid]

    def subscribe(self, *topics: str) -> list[int]:
        _, mid = self.client.subscribe([(t, 1) for t in topics])
        with self.done:
            assert self.done.wait_for(lambda: mid in self.granted, 5), "no SUBACK"
            return self.granted[mid]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Rig:
    srv: BackgroundServer
    api: Api
    a: TenantWorld
    b: TenantWorld
    port: int


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    data = tmp_path_factory.mktemp("acl")
    settings = make_settings(data, malformed_flood_per_min=5)
    with BackgroundServer(settings) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        api = Api(c)
        admin = api.admin()
        yield Rig(
            srv,
            api,
            api.setup_tenant(admin, "Alpha Plant"),
            api.setup_tenant(admin, "Beta Plant"),
            settings.mqtt_port,
        )


def device(rig: Rig, world: TenantWorld, name: str, **extra: Any) -> dict[str, Any]:
    return rig.api.call(
        "POST",
        "/api/v1/devices",
        world.headers,
        201,
        json={"name": name, "product_id": world.product_id, **extra},
    )


def latest(rig: Rig, world: TenantWorld, device_id: int) -> Any:
    body = rig.api.call("GET", f"/api/v1/devices/{device_id}/latest", world.headers)
    return {v["property"]: v["value"] for v in body["values"]}["temperature"]


def violations(rig: Rig, device_id: int) -> list[dict[str, Any]]:
    return [e for e in security_events(rig.srv, "acl_violation") if e["device_id"] == device_id]


def test_a_device_reaches_only_its_own_topics_not_another_tenants(rig: Rig) -> None:
    b_dev = rig.b.device_id
    b_name = "beta-plant-dev-1"
    foreign = [
        f"v1/devices/{b_name}/telemetry",
        f"yugong/v1/devices/{b_dev}/telemetry",
        "v1/gateway/telemetry",  # not a gateway
        f"spBv1.0/plant/NBIRTH/{b_name}",
    ]
    before = rig.srv.platform._broker.stats().acl_violations
    v5 = Client(rig.port, rig.a.token, "alpha-v5")
    v3 = Client(rig.port, rig.a.token, "alpha-v3", protocol=mqtt.MQTTv311)
    try:
        assert v5.publish("v1/devices/me/telemetry", '{"temperature": 11.5}') == 0
        rig.api.wait_for(lambda: latest(rig, rig.a, rig.a.device_id) == 11.5)
        body = orjson.dumps({"temperature": 99.0, b_name: {"temperature": 99.0}})
        for topic in foreign:
            assert v5.publish(topic, body) == NOT_AUTHORIZED, topic
            v5.publish(topic, body, qos=2)  # paho reports PUBCOMP's code: see the unit test
            v5.publish(topic, body, qos=0)
            v3.publish(topic, body)  # 3.1.1 has no refusal code: acknowledged, dropped
        # Listening beyond its own topics: refused, whichever version.
        wide = ["#", "v1/devices/+/telemetry", f"v1/devices/{b_name}/attributes", "spBv1.0/#"]
        assert v5.subscribe(*wide) == [0x80] * len(wide)
        assert v3.subscribe(*wide, "v1/devices/me/attributes") == [0x80] * len(wide) + [1]
        # The connection stays up: its own topic still works.
        assert v5.publish("v1/devices/me/telemetry", '{"temperature": 12.5}') == 0
        rig.api.wait_for(lambda: latest(rig, rig.a, rig.a.device_id) == 12.5)
        assert v3.client.is_connected()
    finally:
        v5.close()
        v3.close()

    # Another tenant's device has nothing, and nothing of it leaked to the client.
    assert latest(rig, rig.b, b_dev) is None
    assert v5.received == [] and v3.received == []
    stats = rig.srv.platform._broker.stats()
    assert stats.acl_violations - before >= 4 * len(foreign) + 2 * len(wide)
    # Recorded: the device, its tenant, its address and the topic.
    event = wait_event(rig.srv, "acl_violation", device_id=rig.a.device_id)
    assert event["tenant_id"] == rig.a.tenant_id and event["source_ip"] == "127.0.0.1"
    assert event["subject"] == event["detail"]["topic"]
    rig.api.wait_for(
        lambda: (
            {e["detail"]["topic"] for e in violations(rig, rig.a.device_id)} >= {foreign[0], "#"}
        )
    )

    # Over HTTP: one tenant neither reads nor writes the other's device.
    rig.api.call("GET", f"/api/v1/devices/{b_dev}/latest", rig.a.headers, 404)
    rig.api.call("GET", f"/api/v1/devices/{b_dev}/credentials", rig.a.headers, 404)
    rig.api.call("POST", f"/api/v1/devices/{b_dev}/token", rig.a.headers, 404)
    rig.api.call("PATCH", f"/api/v1/devices/{b_dev}", rig.a.headers, 404, json={"label": "x"})
    assert latest(rig, rig.b, b_dev) is None


def test_a_gateway_acts_only_for_its_children(rig: Rig) -> None:
    gw = device(rig, rig.a, "alpha-gw", is_gateway=True)
    loose = device(rig, rig.a, "alpha-loose")  # in the tenant, behind no gateway
    other_gw = device(rig, rig.a, "alpha-gw-2", is_gateway=True)
    behind_other = device(rig, rig.a, "alpha-behind-2", gateway_id=other_gw["id"])
    client = Client(rig.port, gw["token"], "alpha-gw")
    try:
        assert client.subscribe("v1/gateway/rpc", "v1/devices/me/rpc/request/+") == [1, 1]
        assert (
            client.publish("v1/gateway/connect", '{"device": "alpha-child", "type": "sensor"}') == 0
        )
        client.publish(
            "v1/gateway/telemetry",
            orjson.dumps({"alpha-child": [{"ts": T0, "values": {"temperature": 21.0}}]}),
        )
        for name in ("alpha-loose", "alpha-behind-2"):
            client.publish("v1/gateway/connect", orjson.dumps({"device": name}))
            client.publish(
                "v1/gateway/telemetry",
                orjson.dumps({name: [{"ts": T0, "values": {"temperature": 66.0}}]}),
            )
        # Another tenant's device by name: not found in the gateway's tenant; the "default"
        # product it would be made with does not exist there: refused, nothing created.
        client.publish(
            "v1/gateway/telemetry",
            orjson.dumps({"beta-plant-dev-1": {"temperature": 77.0}}),
        )
        # A foreign Sparkplug edge node and other nodes' commands: refused.
        assert client.publish("spBv1.0/plant/NBIRTH/alpha-gw-2", b"\x00") == NOT_AUTHORIZED
        assert client.publish("spBv1.0/plant/DDATA/alpha-gw-2/x", b"\x00") == NOT_AUTHORIZED
        assert client.subscribe("spBv1.0/plant/NCMD/alpha-gw-2", "spBv1.0/plant/NCMD/alpha-gw") == [
            0x80,
            1,
        ]
    finally:
        client.close()

    page = rig.api.call("GET", "/api/v1/devices", rig.a.headers, params={"search": "alpha-child"})
    child = page["items"][0]
    assert child["gateway_id"] == gw["id"]
    rig.api.wait_for(lambda: latest(rig, rig.a, child["id"]) == 21.0)
    assert latest(rig, rig.a, loose["id"]) is None
    assert latest(rig, rig.a, behind_other["id"]) is None
    assert latest(rig, rig.b, rig.b.device_id) is None
    names = {d["name"] for d in rig.api.call("GET", "/api/v1/devices", rig.a.headers)["items"]}
    assert "beta-plant-dev-1" not in names
    # The gateway acting for a device that is not its child is recorded with the topic.
    rig.api.wait_for(
        lambda: (
            {e["detail"]["topic"] for e in violations(rig, gw["id"])}
            >= {"v1/gateway/connect", "spBv1.0/plant/NBIRTH/alpha-gw-2"}
        )
    )
    reasons = " ".join(e["detail"]["reason"] for e in violations(rig, gw["id"]))
    assert "is not behind gateway 'alpha-gw'" in reasons
    assert "edge node id must be the gateway's name" in reasons


def test_a_flood_of_malformed_payloads_is_an_event(rig: Rig) -> None:
    dev = device(rig, rig.a, "alpha-noisy")
    client = Client(rig.port, dev["token"], "alpha-noisy", protocol=mqtt.MQTTv311)
    try:
        for i in range(4):
            client.publish("v1/devices/me/telemetry", f"not json {i}")
        time.sleep(0.5)
        assert not [
            e for e in security_events(rig.srv, "malformed_flood") if e["device_id"] == dev["id"]
        ]
        for i in range(4):  # 8 in the minute, over the limit of 5
            client.publish("v1/devices/me/telemetry", f"still not json {i}")
    finally:
        client.close()
    event = wait_event(rig.srv, "malformed_flood", device_id=dev["id"])
    assert event["tenant_id"] == rig.a.tenant_id
    assert event["detail"]["per_minute_limit"] == 5
    assert rig.srv.platform._broker.stats().malformed_floods == 1


def test_front_refuses_v5_publishes_with_reason_codes() -> None:
    """The front's answers to a refused MQTT 5 PUBLISH, byte for byte: PUBACK 0x87 at QoS 1;
    PUBREC 0x87 at QoS 2 and PUBCOMP for a client that releases it anyway; QoS 0 dropped.
    Nothing reaches the broker; an allowed PUBLISH passes, translated."""
    from yugong.infra.mqtt5 import V5Translator

    asked: list[str] = []

    def may(topic: str) -> bool:
        asked.append(topic)
        return topic == "v1/devices/me/telemetry"

    t = V5Translator(may_publish=may)
    bad, good = b"\x00\x08x/y/z/no", b"\x00\x17v1/devices/me/telemetry"
    assert t.from_client(0x32, bad + b"\x00\x07\x00hi") == b""
    assert t.from_client(0x34, bad + b"\x00\x08\x00hi") == b""
    assert t.from_client(0x30, bad + b"\x00hi") == b""
    assert t.replies == [b"\x40\x04\x00\x07\x87\x00", b"\x50\x04\x00\x08\x87\x00"]
    t.replies.clear()
    assert t.from_client(0x62, b"\x00\x08") == b""  # PUBREL of the refused QoS 2 message
    assert t.replies == [b"\x70\x02\x00\x08"]
    assert t.from_client(0x62, b"\x00\x09") == b"\x62\x02\x00\x09"  # others: to the broker
    sent = t.from_client(0x32, good + b"\x00\x0a\x00hi")
    assert sent == b"\x32" + bytes([len(good) + 4]) + good + b"\x00\x0ahi"
    assert asked == ["x/y/z/no"] * 3 + ["v1/devices/me/telemetry"]
