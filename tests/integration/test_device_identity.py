"""Device identity end to end on real sockets: the credentials API, and the embedded broker
authenticating devices by access token, MQTT username/password and client certificate over
MQTT/TLS (real paho clients and the edge gateway's Sparkplug uplink), with every refusal
recorded as a security event naming the client's address.

The platform CA, server and device certificates are made with ``yugong.security.pki``;
"another CA" is a second CA nobody configured.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy import select

from tests.conftest import free_port, migrated_db
from tests.integration.conftest import Api, TenantWorld, make_settings
from yugong.edge.config import parse_config
from yugong.edge.gateway import EdgeGateway
from yugong.security import pki
from yugong.security.models import SecurityEvent
from yugong.server import BackgroundServer

pytestmark = pytest.mark.timeout(120)
PASSWORD = "press-Secret-2026"


# --------------------------------------------------------------------------- helpers
def security_events(srv: BackgroundServer, kind: str) -> list[dict[str, Any]]:
    with srv.platform.db.session() as s:
        rows = s.scalars(select(SecurityEvent).where(SecurityEvent.kind == kind)).all()
        return [
            {
                "tenant_id": r.tenant_id,
                "source_ip": r.source_ip,
                "subject": r.subject,
                "device_id": r.device_id,
                "detail": dict(r.detail or {}),
            }
            for r in rows
        ]


def wait_event(srv: BackgroundServer, kind: str, **match: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        for e in security_events(srv, kind):
            if all(e.get(k) == v for k, v in match.items()):
                return e
        if time.monotonic() > deadline:
            raise AssertionError(f"no {kind} event with {match}: {security_events(srv, kind)}")
        time.sleep(0.05)


@dataclass
class Outcome:
    result: str  # "ok", "refused:<reason>", "closed", "tls:<error>", "no answer"
    client: mqtt.Client | None = None

    def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()


def connect(
    port: int,
    client_id: str,
    *,
    username: str | None = None,
    password: str | None = None,
    ca: Path | None = None,
    cert: pki.Issued | None = None,
    protocol: int = mqtt.MQTTv311,
) -> Outcome:
    """Connect a paho client; a connected one is kept (running) in the outcome."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    if username is not None:
        c.username_pw_set(username, password)
    if ca is not None:
        c.tls_set(
            ca_certs=str(ca),
            certfile=str(cert.cert_file) if cert else None,
            keyfile=str(cert.key_file) if cert else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    results: list[str] = []
    done = threading.Event()

    def on_connect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        results.append("ok" if not rc.is_failure else f"refused:{rc}")
        done.set()

    def on_disconnect(_c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        results.append("closed")
        done.set()

    c.on_connect = on_connect
    c.on_disconnect = on_disconnect
    try:
        c.connect("127.0.0.1", port, keepalive=10)
    except (ssl.SSLError, OSError) as exc:
        return Outcome(f"tls:{exc}")
    c.loop_start()
    done.wait(5)
    result = results[0] if results else "no answer"
    if result == "ok":
        return Outcome(result, c)
    c.loop_stop()
    c.disconnect()
    return Outcome(result)


def publish_and_read(api: Api, world: TenantWorld, client: mqtt.Client, value: float) -> None:
    client.publish(
        "v1/devices/me/telemetry", f'{{"temperature": {value}}}', qos=1
    ).wait_for_publish(5)
    api.wait_for(lambda: api.latest(world)["temperature"]["value"] == value)


@dataclass
class Rig:
    srv: BackgroundServer
    api: Api
    world: TenantWorld
    other: TenantWorld
    paths: pki.PkiPaths
    other_ca: pki.PkiPaths
    tls_port: int
    plain_port: int


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    data = tmp_path_factory.mktemp("identity")
    paths = pki.pki_paths(data)
    pki.create_ca(paths)
    pki.issue_server(paths, ["localhost", "127.0.0.1"])
    other_ca = pki.pki_paths(data / "elsewhere")
    pki.create_ca(other_ca)
    settings = make_settings(data, mqtt_tls_port=free_port())
    with (
        BackgroundServer(settings) as srv,
        httpx.Client(
            base_url=srv.url, timeout=30, verify=pki.client_ssl_context(paths.ca_cert)
        ) as c,
    ):
        api = Api(c)
        admin = api.admin()
        world = api.setup_tenant(admin, "Identity Works")
        other = api.setup_tenant(admin, "Other Works")
        assert srv.platform.mqtt_tls_address == ("127.0.0.1", settings.mqtt_tls_port)
        yield Rig(
            srv, api, world, other, paths, other_ca, settings.mqtt_tls_port, settings.mqtt_port
        )


def new_device(rig: Rig, name: str, **extra: Any) -> dict[str, Any]:
    return rig.api.call(
        "POST",
        "/api/v1/devices",
        rig.world.headers,
        201,
        json={"name": name, "product_id": rig.world.product_id, **extra},
    )


def issue(rig: Rig, name: str, device_id: int, **kw: Any) -> pki.Issued:
    return pki.issue_device(
        kw.pop("paths", rig.paths),
        name,
        tenant=rig.world.tenant_id,
        device_id=device_id,
        out_dir=rig.paths.folder / "out",
        **kw,
    )


# --------------------------------------------------------------------------- the API
def test_credentials_api_sets_shows_and_removes_without_secrets(rig: Rig) -> None:
    api, h = rig.api, rig.world.headers
    dev = new_device(rig, "api-press")
    base = f"/api/v1/devices/{dev['id']}/credentials"
    assert api.call("GET", base, h)["kinds"] == ["token"]

    body = api.call("PUT", f"{base}/mqtt", h, json={"username": "api-press", "password": PASSWORD})
    assert body["kinds"] == ["token", "mqtt"] and body["mqtt_username"] == "api-press"
    assert PASSWORD not in str(body)
    with rig.srv.platform.db.session() as s:
        from yugong.platform.registry.models import Device

        stored = s.get(Device, dev["id"])
        assert stored is not None and stored.mqtt_password_hash is not None
        assert stored.mqtt_password_hash.startswith("$argon2id$")

    # Usernames are unique on the whole platform, across tenants too.
    other = rig.api.call(
        "POST",
        "/api/v1/devices",
        rig.other.headers,
        201,
        json={"name": "elsewhere", "product_id": rig.other.product_id},
    )
    taken = api.call(
        "PUT",
        f"/api/v1/devices/{other['id']}/credentials/mqtt",
        rig.other.headers,
        409,
        json={"username": "api-press", "password": PASSWORD},
    )
    assert "api-press" in taken["detail"]
    short = api.call("PUT", f"{base}/mqtt", h, 422, json={"username": "x", "password": "short"})
    assert "password" in str(short)

    # A certificate of the platform CA: its fingerprint and expiry are kept.
    good = issue(rig, "api-press", dev["id"])
    body = api.call("PUT", f"{base}/x509", h, json={"certificate": good.cert_file.read_text()})
    assert body["cert_fingerprint"] == good.fingerprint
    assert dt.datetime.fromisoformat(body["cert_not_after"]) == good.not_after
    assert body["kinds"] == ["token", "mqtt", "x509"]

    # Expired, or from another CA: refused, and what was bound stays.
    expired = issue(
        rig, "api-old", dev["id"], days=1, valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(3)
    )
    refused = api.call(
        "PUT", f"{base}/x509", h, 422, json={"certificate": expired.cert_file.read_text()}
    )
    assert "expired" in refused["detail"]
    foreign = issue(rig, "api-foreign", dev["id"], paths=rig.other_ca)
    refused = api.call(
        "PUT", f"{base}/x509", h, 422, json={"certificate": foreign.cert_file.read_text()}
    )
    assert "not issued by the platform CA" in refused["detail"]
    api.call("PUT", f"{base}/x509", h, 422, json={"certificate": "not a certificate"})
    api.call("PUT", f"{base}/x509", h, 422, json={"fingerprint": "ab" * 31})
    assert api.call("GET", base, h)["cert_fingerprint"] == good.fingerprint

    # Another tenant neither sees nor changes them, whatever it sends.
    api.call("GET", base, rig.other.headers, 404)
    api.call("PUT", f"{base}/mqtt", rig.other.headers, 404)
    assert api.call("PUT", f"{base}/mqtt", h, 422)["errors"] == [{"loc": "body", "msg": "required"}]
    api.call(
        "PUT", f"{base}/mqtt", rig.other.headers, 404, json={"username": "u2", "password": PASSWORD}
    )
    api.call("DELETE", f"{base}/x509", rig.other.headers, 404)

    # By fingerprint alone (colons allowed), then removed.
    colons = ":".join(good.fingerprint[i : i + 2] for i in range(0, 64, 2)).upper()
    assert (
        api.call("PUT", f"{base}/x509", h, json={"fingerprint": colons})["cert_not_after"] is None
    )
    assert api.call("DELETE", f"{base}/mqtt", h)["kinds"] == ["token", "x509"]
    assert api.call("DELETE", f"{base}/x509", h)["kinds"] == ["token"]
    # The username is free again.
    api.call(
        "PUT",
        f"/api/v1/devices/{other['id']}/credentials/mqtt",
        rig.other.headers,
        json={"username": "api-press", "password": PASSWORD},
    )


# --------------------------------------------------------------------------- the broker
def test_username_and_password(rig: Rig) -> None:
    dev = new_device(rig, "pw-press")
    base = f"/api/v1/devices/{dev['id']}/credentials"
    rig.api.call(
        "PUT",
        f"{base}/mqtt",
        rig.world.headers,
        json={"username": "pw-press", "password": PASSWORD},
    )
    world = TenantWorld(rig.world.tenant_id, rig.world.headers, rig.world.product_id, dev["id"], "")
    for protocol in (mqtt.MQTTv311, mqtt.MQTTv5):
        ok = connect(
            rig.plain_port,
            f"pw-{protocol}",
            username="pw-press",
            password=PASSWORD,
            protocol=protocol,
        )
        assert ok.result == "ok" and ok.client is not None
        try:
            publish_and_read(rig.api, world, ok.client, 20.0 + protocol)
        finally:
            ok.close()
    # Again at once: answered from the verified-pair cache, the same way.
    again = connect(rig.plain_port, "pw-again", username="pw-press", password=PASSWORD)
    assert again.result == "ok"
    again.close()

    wrong = connect(rig.plain_port, "pw-wrong", username="pw-press", password=PASSWORD + "x")
    assert wrong.result.startswith("refused:")
    event = wait_event(rig.srv, "bad_credentials", device_id=dev["id"])
    assert event["source_ip"] == "127.0.0.1" and event["subject"] == "pw-press"
    assert event["tenant_id"] == rig.world.tenant_id

    nobody = connect(rig.plain_port, "pw-nobody", username="nobody-here", password=PASSWORD)
    assert nobody.result.startswith("refused:")
    unknown = wait_event(rig.srv, "unknown_device", source_ip="127.0.0.1")
    assert "nobody-here" not in str(unknown)  # a mistyped token is never stored
    anonymous = connect(rig.plain_port, "pw-anon")
    assert anonymous.result.startswith("refused:")
    refused = rig.srv.platform._broker.stats().refused_connections
    assert refused.get("bad_password") and refused.get("unknown_token") and refused.get("anonymous")

    # A changed password stops the old one at once (the cache is keyed by the stored hash).
    rig.api.call(
        "PUT",
        f"{base}/mqtt",
        rig.world.headers,
        json={"username": "pw-press", "password": PASSWORD + "-new"},
    )
    stale = connect(rig.plain_port, "pw-stale", username="pw-press", password=PASSWORD)
    assert stale.result.startswith("refused:")


def test_client_certificates_over_tls(rig: Rig) -> None:
    ca = rig.paths.ca_cert
    dev = new_device(rig, "tls-press")
    base = f"/api/v1/devices/{dev['id']}/credentials/x509"
    good = issue(rig, "tls-press", dev["id"])
    rig.api.call("PUT", base, rig.world.headers, json={"certificate": good.cert_file.read_text()})
    world = TenantWorld(rig.world.tenant_id, rig.world.headers, rig.world.product_id, dev["id"], "")

    # The certificate alone is the identity: no username.
    for protocol in (mqtt.MQTTv311, mqtt.MQTTv5):
        ok = connect(rig.tls_port, f"tls-{protocol}", ca=ca, cert=good, protocol=protocol)
        assert ok.result == "ok" and ok.client is not None
        try:
            publish_and_read(rig.api, world, ok.client, 30.0 + protocol)
        finally:
            ok.close()
    # A token over TLS without a client certificate works too.
    token = connect(rig.tls_port, "tls-token", username=rig.world.token, ca=ca)
    assert token.result == "ok"
    token.close()

    # A current certificate of the platform CA bound to no device: refused by MQTT.
    stray = issue(rig, "tls-stray", dev["id"])
    assert connect(rig.tls_port, "tls-stray", ca=ca, cert=stray).result.startswith("refused:")
    wait_event(rig.srv, "bad_certificate", subject=stray.fingerprint)

    # Expired (bound by fingerprint before it expired): the handshake fails.
    expired = issue(
        rig, "tls-old", dev["id"], days=1, valid_from=dt.datetime.now(dt.UTC) - dt.timedelta(3)
    )
    other_dev = new_device(rig, "tls-old")
    rig.api.call(
        "PUT",
        f"/api/v1/devices/{other_dev['id']}/credentials/x509",
        rig.world.headers,
        json={"fingerprint": expired.fingerprint},
    )
    assert connect(rig.tls_port, "tls-old", ca=ca, cert=expired).result != "ok"
    wait_event(rig.srv, "bad_certificate", subject="tls: certificate has expired")

    # Signed by another CA: the handshake fails.
    foreign = issue(rig, "tls-foreign", dev["id"], paths=rig.other_ca)
    assert connect(rig.tls_port, "tls-foreign", ca=ca, cert=foreign).result != "ok"
    wait_event(rig.srv, "bad_certificate", subject="tls: unable to get local issuer certificate")

    # The client does not trust the server: it refuses, before any credential is sent.
    wrong_ca = connect(rig.tls_port, "tls-wrong-ca", ca=rig.other_ca.ca_cert, cert=good)
    assert wrong_ca.result.startswith("tls:") and "CERTIFICATE_VERIFY_FAILED" in wrong_ca.result
    # Plain MQTT on the TLS port is no MQTT at all.
    assert connect(rig.tls_port, "tls-plain", username=rig.world.token).result != "ok"
    drops = rig.srv.platform._broker.stats().dropped
    assert drops.get("bad_certificate", 0) >= 2 and drops.get("tls_handshake", 0) >= 1


def test_blocked_device_is_refused(rig: Rig) -> None:
    dev = new_device(rig, "blocked-press")
    token = rig.api.call("POST", f"/api/v1/devices/{dev['id']}/token", rig.world.headers)["token"]
    ok = connect(rig.plain_port, "blk-1", username=token)
    assert ok.result == "ok"
    ok.close()
    rig.srv.platform.security.blocks.block("device", str(dev["id"]), "test", 60.0, None)
    deadline = time.monotonic() + 10  # the broker reads blocks through a short cache
    while connect(rig.plain_port, "blk-2", username=token).result == "ok":
        assert time.monotonic() < deadline, "the blocked device still connects"
        time.sleep(0.5)
    wait_event(rig.srv, "blocked", device_id=dev["id"])


def test_edge_gateway_sparkplug_over_tls_with_its_certificate(rig: Rig, tmp_path: Path) -> None:
    gw = new_device(rig, "tls-gw", is_gateway=True)
    cert = issue(rig, "tls-gw", gw["id"])
    rig.api.call(
        "PUT",
        f"/api/v1/devices/{gw['id']}/credentials/x509",
        rig.world.headers,
        json={"certificate": cert.cert_file.read_text()},
    )
    edge = parse_config(
        {
            "gateway": "tls-gw",
            "connectors": [
                {
                    "name": "sim",
                    "protocol": "simulator",
                    "simulated": [
                        {
                            "name": "tls-kiln",
                            "interval": 0.1,
                            "signals": [
                                {"point": "batches", "waveform": "counter", "low": 0, "high": 1e9}
                            ],
                        }
                    ],
                }
            ],
            "buffer": {"path": str(tmp_path / "edge.sqlite"), "max_bytes": "16MiB"},
            "uplink": {
                "kind": "sparkplug",
                "broker": f"mqtts://127.0.0.1:{rig.tls_port}",
                "tls": {
                    "ca_file": str(rig.paths.ca_cert),
                    "cert_file": str(cert.cert_file),
                    "key_file": str(cert.key_file),
                },
                "group_id": "plant",
                "host_id": rig.srv.settings.sparkplug_host_id,
            },
            "health": {"interval": 0},
        }
    )
    api, h = rig.api, rig.world.headers

    def kiln_batches() -> float:
        page = api.call("GET", "/api/v1/devices", h, params={"search": "tls-kiln"})
        if not page["items"]:
            return 0
        assert page["items"][0]["gateway_id"] == gw["id"]
        latest = api.call("GET", f"/api/v1/devices/{page['items'][0]['id']}/latest", h)
        return {v["property"]: v["value"] for v in latest["values"]}.get("batches") or 0

    async def run() -> None:
        async with EdgeGateway(edge):
            deadline = time.monotonic() + 30
            while await asyncio.to_thread(kiln_batches) < 5:
                assert time.monotonic() < deadline, "no data from the edge node over TLS"
                await asyncio.sleep(0.2)

    asyncio.run(run())


# --------------------------------------------------------------------------- the service
@pytest.fixture(params=["sqlite", "postgresql"])
def registry_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with migrated_db(request, tmp_path) as database:
        yield database


def test_credentials_service_and_directory_lookups(registry_db: Any, tmp_path: Path) -> None:
    """On both databases: usernames unique platform-wide (409), the directory finds a device
    by username and by fingerprint and forgets it once the credential is removed, and a
    refused change alters nothing."""
    from argon2 import PasswordHasher

    from tests.integration.conftest import SENSOR_TSL
    from yugong.core.errors import Conflict, Forbidden, InvalidInput
    from yugong.platform.registry import Registry
    from yugong.security.passwords import Passwords
    from yugong.security.principal import Principal, Role

    root = Principal("user", 1, None, Role.PLATFORM_ADMIN, "root")
    reg = Registry(registry_db)
    reg.devices.passwords = Passwords(PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    paths = pki.pki_paths(tmp_path)
    pki.create_ca(paths)
    reg.devices.ca_file = paths.ca_cert
    devices = []
    for name in ("Acme", "Bright"):
        t = reg.tenants.create(root, name=name)
        p = Principal("user", 10 + t.id, t.id, Role.TENANT_ADMIN, name)
        pid = reg.products.create(p, key="sensor", name="S", tsl_document=SENSOR_TSL).id
        devices.append((p, reg.devices.create(p, name="dev", product_id=pid).device))
    (pa, da), (pb, db_) = devices

    reg.devices.set_mqtt_credentials(pa, da.id, username="line-1", password=PASSWORD)
    with pytest.raises(Conflict, match="line-1"):
        reg.devices.set_mqtt_credentials(pb, db_.id, username="line-1", password=PASSWORD)
    with pytest.raises(InvalidInput):
        reg.devices.set_mqtt_credentials(pa, da.id, username="bad name", password=PASSWORD)
    viewer = Principal("user", 99, pa.tenant, Role.VIEWER, "v")
    with pytest.raises(Forbidden):
        reg.devices.set_mqtt_credentials(viewer, da.id, username="line-2", password=PASSWORD)
    with pytest.raises(Forbidden):
        reg.devices.credentials(viewer, da.id)
    found = reg.directory.by_username("line-1")
    assert found is not None and found.device == da.id and found.tenant == pa.tenant
    assert reg.devices.passwords.verify(found.mqtt_password_hash, PASSWORD)
    assert reg.directory.by_username("line-2") is None

    cert = pki.issue_device(paths, "dev", tenant=pa.tenant, device_id=da.id)
    info = reg.devices.set_certificate(pa, da.id, certificate=cert.cert_file.read_text())
    assert info.cert_fingerprint == cert.fingerprint and info.kinds == ["token", "mqtt", "x509"]
    with pytest.raises(Conflict):
        reg.devices.set_certificate(pb, db_.id, fingerprint=cert.fingerprint)
    by_cert = reg.directory.by_fingerprint(cert.fingerprint.upper())
    assert by_cert is not None and by_cert.device == da.id

    reg.devices.delete_mqtt_credentials(pa, da.id)
    reg.devices.delete_certificate(pa, da.id)
    assert reg.directory.by_username("line-1") is None
    assert reg.directory.by_fingerprint(cert.fingerprint) is None
    # Freed for another device, which the directory then finds under that name.
    reg.devices.set_mqtt_credentials(pb, db_.id, username="line-1", password=PASSWORD)
    moved = reg.directory.by_username("line-1")
    assert moved is not None and moved.device == db_.id
