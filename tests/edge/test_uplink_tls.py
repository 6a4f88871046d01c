"""The Sparkplug uplink over MQTT/TLS with client credentials, against a Mosquitto of our own
that requires a client certificate signed by our CA and a user name and password.

The node is built the way the gateway builds it: a YAML gateway config (``uplink.broker:
mqtts://...``, ``uplink.tls``, ``username``/``password``) through ``from_gateway``. Every
certificate is made with ``yugong.security.pki``; an observer connected over TLS sees what the
node publishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import getpass
import logging
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pysparkplug as psp
import pytest
import yaml

from tests.conftest import MOSQUITTO_BIN, PrivateMosquitto, need_programs, until
from tests.edge.sparkplug_observer import Observer, decode
from yugong.core.errors import InvalidInput
from yugong.edge.buffer import StoreForwardBuffer
from yugong.edge.config import load_config
from yugong.edge.gateway import EdgeGateway
from yugong.edge.samples import edge_batch
from yugong.edge.uplink import EdgeNode, SparkplugUplink, from_gateway
from yugong.security.pki import Issued, PkiPaths, create_ca, issue_device, issue_server

pytestmark = pytest.mark.timeout(60)

MOSQUITTO_PASSWD = "/usr/bin/mosquitto_passwd"
USER, PASSWORD = "edge-gw", "s3cret-Pass"
UPLINK_LOGGER = "yugong.edge.uplink"


# --------------------------------------------------------------------------- certificates
@dataclasses.dataclass(frozen=True)
class Pki:
    folder: Path
    ca: Path
    other_ca: Path  # trusted by nobody: the "wrong CA"
    server: Issued
    client: Issued


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    """Made with the platform's own PKI functions: a CA, a server certificate for the broker
    and a client certificate for the gateway, and a second CA nobody trusts."""
    folder = tmp_path / "pki"  # next to the gateway config, which names files relative to it
    plant, other = PkiPaths(folder), PkiPaths(folder / "other")
    create_ca(plant, common_name="plant-ca")
    create_ca(other, common_name="other-ca")
    server = issue_server(plant, ["127.0.0.1", "localhost"], days=1)
    client = issue_device(plant, "gateway", tenant=1, device_id=1, out_dir=folder, days=1)
    return Pki(folder, plant.ca_cert, other.ca_cert, server, client)


# --------------------------------------------------------------------------- the broker
def tls_broker(folder: Path, pki: Pki) -> PrivateMosquitto:
    """Mosquitto with one TLS listener: client certificate and password both required."""
    passwords = folder / "passwd"
    subprocess.run(
        [MOSQUITTO_PASSWD, "-b", "-c", str(passwords), USER, PASSWORD],
        check=True,
        capture_output=True,
        timeout=20,
    )
    return PrivateMosquitto(
        folder,
        [
            f"user {getpass.getuser()}",  # as root: stay root, read tmp_path
            f"cafile {pki.ca}",
            f"certfile {pki.server.cert_file}",
            f"keyfile {pki.server.key_file}",
            "tls_version tlsv1.2",  # 1.2 or newer
            "require_certificate true",
            "use_identity_as_username false",
            f"password_file {passwords}",
            "allow_anonymous false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
        ],
    )


@pytest.fixture
def broker(tmp_path: Path, pki: Pki) -> Iterator[PrivateMosquitto]:
    need_programs(MOSQUITTO_BIN, MOSQUITTO_PASSWD)
    folder = tmp_path / "broker"
    folder.mkdir()
    b = tls_broker(folder, pki)
    try:
        b.start()
        yield b
    finally:
        b.kill()


# --------------------------------------------------------------------------- observing
@pytest.fixture
def group() -> str:
    return f"tls{uuid.uuid4().hex[:10]}"


@pytest.fixture
def observer(broker: PrivateMosquitto, pki: Pki, group: str) -> Iterator[Observer]:
    """A host-side client over TLS (our CA, a client certificate, the password)."""
    obs = Observer(
        "127.0.0.1",
        broker.port,
        group,
        username=USER,
        password=PASSWORD,
        ca_file=pki.ca,
        cert_file=pki.client.cert_file,
        key_file=pki.client.key_file,
    )
    try:
        sock = obs.client.socket()
        assert isinstance(sock, ssl.SSLSocket) and sock.version() in ("TLSv1.2", "TLSv1.3")
        yield obs
    finally:
        obs.close()


# --------------------------------------------------------------------------- the gateway side
DEVICE = "mixer-1"


def gateway_yaml(
    folder: Path, port: int, group: str, *, tls: dict[str, Any], password: str = PASSWORD
) -> Path:
    """A gateway config file as an operator writes it (TLS files relative to it or not)."""
    data = {
        "gateway": "gw1",
        "connectors": [
            {
                "name": "sim",
                "protocol": "simulator",
                "simulated": [
                    {
                        "name": DEVICE,
                        "interval": "1s",
                        "signals": [
                            {"point": "speed", "waveform": "sine", "low": 0, "high": 1500},
                            {"point": "level", "waveform": "ramp", "low": 0, "high": 10},
                        ],
                    }
                ],
            }
        ],
        "uplink": {
            "kind": "sparkplug",
            "broker": f"mqtts://127.0.0.1:{port}",
            "group_id": group,
            "tls": tls,
            "username": USER,
            "password": password,
        },
    }
    path = folder / "gateway.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def build_uplink(config_file: Path) -> SparkplugUplink:
    """The uplink exactly as the gateway builds it; only the retry pace is quickened."""
    gateway = EdgeGateway(load_config(config_file))
    uplink = from_gateway(gateway)
    uplink.config = dataclasses.replace(
        uplink.config, reconnect_initial=0.05, reconnect_max=0.3, poll_interval=0.05
    )
    return uplink


@contextlib.asynccontextmanager
async def running(uplink: SparkplugUplink, buffer: StoreForwardBuffer) -> AsyncIterator[Any]:
    task = asyncio.create_task(uplink.run(buffer))
    try:
        yield task
    finally:
        await uplink.stop()
        await asyncio.wait_for(task, 10)


# --------------------------------------------------------------------------- tests
async def test_births_and_data_over_tls_with_client_credentials(
    tmp_path: Path,
    pki: Pki,
    broker: PrivateMosquitto,
    observer: Observer,
    group: str,
    buffer: StoreForwardBuffer,
) -> None:
    # The client files relative to the config file, the CA absolute: both forms work.
    config_file = gateway_yaml(
        tmp_path,
        broker.port,
        group,
        tls={
            "ca_file": str(pki.ca),
            "cert_file": str(pki.client.cert_file.relative_to(tmp_path)),
            "key_file": str(pki.client.key_file.relative_to(tmp_path)),
        },
    )
    uplink = build_uplink(config_file)
    cfg = uplink.config
    assert (cfg.host, cfg.port, cfg.tls, cfg.tls_insecure) == (
        "127.0.0.1",
        broker.port,
        True,
        False,
    )
    assert (cfg.username, cfg.password) == (USER, PASSWORD)
    assert (cfg.ca_file, cfg.cert_file, cfg.key_file) == (
        pki.ca,
        pki.client.cert_file,
        pki.client.key_file,
    )
    buffer.append(edge_batch(DEVICE, ["speed", "level"], 1_000_000, [1234.5, 6.25]))
    buffer.append(edge_batch(DEVICE, ["speed"], 2_000_000, [999.0]))
    async with running(uplink, buffer):
        await until(lambda: len(observer.of("DDATA")) == 2, "two DDATA over TLS")
        assert uplink.node is not None and uplink.node.online
        assert uplink.node.stats.sessions == 1
    # Encrypted and authenticated: the broker took the node's TLS session with its password.
    log = broker.log.read_text()
    assert f"as {group}-gw1 " in log and f"u'{USER}'" in log, log

    [(topic, raw)] = observer.of("NBIRTH")
    assert topic == f"spBv1.0/{group}/NBIRTH/gw1"
    nbirth = psp.NBirth.decode(raw)
    names = {m.name: m.value for m in nbirth.metrics}
    assert nbirth.seq == 0 and names["bdSeq"] == 0 and names["Node Control/Rebirth"] is False

    dbirths = {t.rsplit("/", 1)[1]: decode(p) for t, p in observer.of("DBIRTH")}
    assert set(dbirths) == {DEVICE, "gw1-health"}  # the catalog: device and health points
    mixer = {m.name: m for m in dbirths[DEVICE].metrics}
    assert set(mixer) == {"speed", "level"}
    assert all(m.datatype == psp.DataType.DOUBLE for m in mixer.values())
    alias = {m.alias: m.name for m in mixer.values()}

    ddata = [(t, psp.DData.decode(p)) for t, p in observer.of("DDATA")]
    assert [t for t, _ in ddata] == [f"spBv1.0/{group}/DDATA/gw1/{DEVICE}"] * 2
    got = [sorted((alias[m.alias], m.value, m.timestamp) for m in d.metrics) for _, d in ddata]
    assert got == [[("level", 6.25, 1000), ("speed", 1234.5, 1000)], [("speed", 999.0, 2000)]]
    assert buffer.depth().batches == 0  # acked once the broker confirmed them
    await until(lambda: observer.of("NDEATH"), "the orderly NDEATH")


@pytest.mark.parametrize(
    ("case", "expected", "broker_says"),
    [
        ("wrong_ca", "CERTIFICATE_VERIFY_FAILED", "alert unknown ca"),
        (
            "no_client_certificate",
            "closed the connection before accepting it",
            "peer did not return a certificate",
        ),
        ("wrong_password", "Not authorized", "not authorised"),
    ],
)
async def test_refused_links_log_clearly_and_keep_retrying(
    case: str,
    expected: str,
    broker_says: str,
    tmp_path: Path,
    pki: Pki,
    broker: PrivateMosquitto,
    observer: Observer,
    group: str,
    buffer: StoreForwardBuffer,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger=UPLINK_LOGGER)
    tls: dict[str, Any] = {
        "ca_file": str(pki.ca),
        "cert_file": str(pki.client.cert_file),
        "key_file": str(pki.client.key_file),
    }
    password = PASSWORD
    if case == "wrong_ca":
        tls["ca_file"] = str(pki.other_ca)
    elif case == "no_client_certificate":
        del tls["cert_file"], tls["key_file"]
    else:
        password = "not-the-password"
    uplink = build_uplink(gateway_yaml(tmp_path, broker.port, group, tls=tls, password=password))

    attempts: list[float] = []
    make_client = EdgeNode._make_client

    def counting(self: EdgeNode) -> mqtt.Client:
        attempts.append(time.monotonic())
        return make_client(self)

    monkeypatch.setattr(EdgeNode, "_make_client", counting)
    buffer.append(edge_batch(DEVICE, ["speed"], 1_000_000, [1.0]))
    async with running(uplink, buffer) as task:
        # Several attempts, each refused quickly (no waiting out the connect timeout).
        await until(lambda: len(attempts) >= 4, "four connection attempts", timeout=8.0)
        assert not task.done(), "the uplink gave up or crashed"
        node = uplink.node
        assert node is not None
        assert not node.online and node.stats.sessions == 0 and node.stats.births == 0
    assert task.exception() is None
    assert observer.of("NBIRTH") == [] and observer.of("DDATA") == []
    assert buffer.depth().batches == 1  # nothing acked: kept for when the link works
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.name == UPLINK_LOGGER and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, warnings  # once per outage, not once per retry
    assert f"uplink to 127.0.0.1:{broker.port} unavailable" in warnings[0]
    assert expected in warnings[0], warnings[0]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert broker_says in broker.log.read_text()  # refused for the reason under test


@pytest.mark.parametrize("given", ["cert_file", "key_file"])
def test_client_certificate_without_its_key_is_refused_at_load(tmp_path: Path, given: str) -> None:
    missing = {"cert_file": "key_file", "key_file": "cert_file"}[given]
    path = gateway_yaml(tmp_path, 8883, "plant", tls={given: "certs/gateway.pem"})
    with pytest.raises(InvalidInput) as err:
        load_config(path)
    [error] = err.value.errors
    assert error.loc == "uplink.tls" and missing in error.msg and given in error.msg, error
    assert f"uplink.tls: {error.msg}" in err.value.detail
