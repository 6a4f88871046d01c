"""HTTPS on the whole platform (real sockets, real clients): the platform CA is trusted, any
other CA is not, an expired certificate is refused, TLS 1.1 is refused, and a certificate
rotated under a running server reaches new connections while open ones and ingest carry on."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import free_port
from tests.integration.conftest import Api, TenantWorld, make_settings
from yugong.cli import main
from yugong.core.settings import Settings
from yugong.security import pki
from yugong.server import BackgroundServer


def _pki(data_dir: Path, **server: object) -> pki.PkiPaths:
    paths = pki.pki_paths(data_dir)
    pki.create_ca(paths)
    pki.issue_server(paths, ["localhost", "127.0.0.1"], **server)  # type: ignore[arg-type]
    return paths


def _settings(data_dir: Path) -> Settings:
    return make_settings(data_dir, mqtt_tls_port=free_port())


def _peer_fingerprint(host: str, port: int, ca: Path) -> str:
    ctx = pki.client_ssl_context(ca)
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        return pki.fingerprint(tls.getpeercert(binary_form=True) or b"")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundServer]:
    data = tmp_path_factory.mktemp("tls")
    _pki(data)
    with BackgroundServer(_settings(data)) as srv:
        yield srv


def test_https_with_the_platform_ca(tls_server: BackgroundServer) -> None:
    assert tls_server.url.startswith("https://127.0.0.1:")
    ca = pki.pki_paths(tls_server.settings.data_dir).ca_cert
    with httpx.Client(verify=pki.client_ssl_context(ca)) as client:
        r = client.get(f"{tls_server.url}/api/v1/health")
        assert r.status_code == 200
        tls = r.extensions["network_stream"].get_extra_info("ssl_object")
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_wrong_ca_and_plain_http_are_refused(tls_server: BackgroundServer, tmp_path: Path) -> None:
    other = pki.pki_paths(tmp_path)
    pki.create_ca(other)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/api/v1/health", verify=pki.client_ssl_context(other.ca_cert))
    # The system trust store does not know the platform CA either.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/api/v1/health")
    plain = tls_server.url.replace("https://", "http://")
    with pytest.raises(httpx.HTTPError):
        r = httpx.get(f"{plain}/api/v1/health")
        assert r.status_code != 200  # uvicorn may answer a bare 400; never the API


def _tls11_client() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this OpenSSL offer TLS 1.1 at all
    ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1")
def test_tls_1_1_and_1_0_are_refused(tls_server: BackgroundServer) -> None:
    host, port = tls_server.settings.http_host, tls_server.settings.http_port
    for version in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1):
        ctx = _tls11_client()
        ctx.minimum_version = ctx.maximum_version = version
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            pytest.raises((ssl.SSLError, ConnectionError)),
        ):
            ctx.wrap_socket(raw, server_hostname=host)
    # The same kind of client speaking TLS 1.2 gets through: the refusal is the version.
    ctx = _tls11_client()
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        assert tls.version() == "TLSv1.2"


def test_expired_server_certificate_is_refused(tmp_path: Path) -> None:
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    paths = _pki(tmp_path, valid_from=long_ago, days=1)
    with BackgroundServer(_settings(tmp_path)) as srv:
        with pytest.raises(httpx.ConnectError, match="certificate has expired"):
            httpx.get(f"{srv.url}/api/v1/health", verify=pki.client_ssl_context(paths.ca_cert))
        # The fix: a fresh certificate, picked up without a restart.
        assert main(["--config", _config(tmp_path), "certs", "rotate"]) == 0
        srv.reloader.check()  # type: ignore[union-attr]
        r = httpx.get(f"{srv.url}/api/v1/health", verify=pki.client_ssl_context(paths.ca_cert))
        assert r.status_code == 200


def _config(data_dir: Path) -> str:
    path = data_dir / "yugong.yaml"
    path.write_text(f"data_dir: {data_dir}\nsecret_key: {'k' * 40}\n")
    return str(path)


def test_rotation_keeps_open_connections_and_loses_no_ingest(tmp_path: Path) -> None:
    paths = _pki(tmp_path)
    settings = _settings(tmp_path)
    host, port = settings.http_host, settings.http_port
    with BackgroundServer(settings) as srv:
        mqtt_tls = srv.platform.mqtt_tls_address
        assert mqtt_tls is not None
        verify = pki.client_ssl_context(paths.ca_cert)
        with httpx.Client(base_url=srv.url, verify=verify) as client:
            api = Api(client)
            world = api.setup_tenant(api.admin(), "Rotation Works")
            old = _peer_fingerprint(host, port, paths.ca_cert)
            assert _peer_fingerprint(*mqtt_tls, paths.ca_cert) == old
            stream = client.get("/api/v1/health").extensions["network_stream"]

            ingest = _Ingest(srv, world, paths.ca_cert)
            reloader = srv.reloader
            assert reloader is not None
            ingest.run(rotate=lambda: _rotate(tmp_path), reloaded=lambda: reloader.reloads)

            # New connections, HTTPS and MQTT, see the new certificate.
            new = pki.inspect(paths.server_cert).fingerprint
            assert new != old
            api.wait_for(lambda: _peer_fingerprint(host, port, paths.ca_cert) == new, 10)
            assert _peer_fingerprint(*mqtt_tls, paths.ca_cert) == new
            # The connection opened before the rotation is the same one and still works.
            r = client.get("/api/v1/health")
            assert r.status_code == 200 and r.extensions["network_stream"] is stream
            ssl_object = stream.get_extra_info("ssl_object")
            assert pki.fingerprint(ssl_object.getpeercert(True)) == old
            # So is the MQTT client connected over TLS before it: one connection throughout.
            assert ingest.mqtt_connects == 1 and ingest.mqtt_peer == old

            assert ingest.errors == []
            assert ingest.http_sent > 20 and ingest.mqtt_sent > 20  # before, during, after
            total = ingest.http_sent + ingest.mqtt_sent
            api.wait_for(lambda: _stored(api, world, ingest.t0) == total, 15)
    assert srv.reloader is not None and srv.reloader.reloads >= 1


def _rotate(data_dir: Path) -> None:
    assert main(["--config", _config(data_dir), "certs", "rotate"]) == 0


class _Ingest:
    """Telemetry from three clients at once: HTTPS keep-alive, HTTPS with a new connection
    per message, and MQTT over TLS (QoS 1, connected once) — each value a distinct ts."""

    def __init__(self, srv: BackgroundServer, world: TenantWorld, ca: Path) -> None:
        self.srv, self.world, self.ca = srv, world, ca
        self.t0 = int(time.time() * 1000) - 3_600_000
        self.errors: list[str] = []
        self.http_sent = self.mqtt_sent = self.mqtt_connects = 0
        self.mqtt_peer = ""
        self._counter = iter(range(1_000_000))
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def _next_ts(self) -> int:
        with self._lock:
            return self.t0 + next(self._counter)

    def _post(self, client: httpx.Client | None) -> None:
        body = {"ts": self._next_ts(), "values": {"temperature": 20.0}}
        url = f"{self.srv.url}/api/v1/{self.world.token}/telemetry"
        verify = pki.client_ssl_context(self.ca)
        try:
            r = client.post(url, json=body) if client else httpx.post(url, json=body, verify=verify)
        except httpx.HTTPError as exc:
            self.errors.append(repr(exc))
            return
        if r.status_code == 200:
            with self._lock:
                self.http_sent += 1
        else:
            self.errors.append(f"{r.status_code} {r.text}")

    def _keep_alive(self) -> None:
        with httpx.Client(verify=pki.client_ssl_context(self.ca)) as c:
            while not self._stop.is_set():
                self._post(c)

    def _fresh(self) -> None:
        while not self._stop.is_set():
            self._post(None)

    def _mqtt(self, connected: threading.Event) -> None:
        address = self.srv.platform.mqtt_tls_address
        assert address is not None
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rotation-mqtt")
        c.username_pw_set(self.world.token)
        c.tls_set(ca_certs=str(self.ca), cert_reqs=ssl.CERT_REQUIRED)

        def on_connect(client: mqtt.Client, *args: object) -> None:
            self.mqtt_connects += 1
            sock = client.socket()
            der = sock.getpeercert(True) if isinstance(sock, ssl.SSLSocket) else b""
            self.mqtt_peer = pki.fingerprint(der or b"")
            connected.set()

        c.on_connect = on_connect
        c.connect(*address)
        c.loop_start()
        try:
            while not self._stop.is_set():
                body = {"ts": self._next_ts(), "values": {"temperature": 21.0}}
                info = c.publish("v1/devices/me/telemetry", json.dumps(body), qos=1)
                info.wait_for_publish(5)
                if info.is_published():
                    self.mqtt_sent += 1
                else:
                    self.errors.append(f"MQTT publish not acknowledged: rc {info.rc}")
                time.sleep(0.005)
        finally:
            c.disconnect()
            c.loop_stop()

    def run(self, *, rotate: Callable[[], None], reloaded: Callable[[], int]) -> None:
        connected = threading.Event()
        threads = [
            threading.Thread(target=self._keep_alive),
            threading.Thread(target=self._fresh),
            threading.Thread(target=self._mqtt, args=(connected,)),
        ]
        for t in threads:
            t.start()
        try:
            assert connected.wait(10), "the MQTT client did not connect over TLS"
            time.sleep(0.5)
            rotate()
            deadline = time.monotonic() + 10
            while reloaded() == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # keep sending with the new certificate in place
        finally:
            self._stop.set()
            for t in threads:
                t.join(15)


def _stored(api: Api, world: TenantWorld, t0: int) -> int:
    body = api.call(
        "GET",
        f"/api/v1/devices/{world.device_id}/timeseries",
        world.headers,
        params={"keys": "temperature", "start": t0, "end": t0 + 1_000_000, "limit": 100_000},
    )
    return len(body["series"][0]["ts"]) if body["series"] else 0


# MQTT over TLS on the embedded broker ---------------------------------------------------------


def test_paho_over_tls_against_the_embedded_broker(tls_server: BackgroundServer) -> None:
    address = getattr(tls_server.platform, "mqtt_tls_address", None)
    if address is None:
        pytest.skip("the embedded broker has no MQTT over TLS listener in this build")
    paths = pki.pki_paths(tls_server.settings.data_dir)
    other = pki.pki_paths(tls_server.settings.data_dir / "other")
    if not other.ca_cert.exists():
        pki.create_ca(other)

    def connect(ca: Path) -> str:
        result: list[str] = []
        done = threading.Event()
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"tls-{ca.parent.name}")
        c.username_pw_set("not-a-token")
        c.tls_set(ca_certs=str(ca), cert_reqs=ssl.CERT_REQUIRED)

        def on_connect(*args: object) -> None:
            result.append(str(args[3]))
            done.set()

        c.on_connect = on_connect
        try:
            c.connect(address[0], address[1])
        except ssl.SSLError as exc:
            return f"tls: {exc.reason}"
        c.loop_start()
        done.wait(5)
        c.loop_stop()
        c.disconnect()
        return result[0] if result else "no answer"

    # The broker's certificate verifies with the platform CA (the unknown token is then
    # refused by MQTT, not by TLS) and not with another CA.
    assert not connect(paths.ca_cert).startswith("tls:")
    assert connect(other.ca_cert).startswith("tls: CERTIFICATE_VERIFY_FAILED")


# The demo's edge gateway over TLS -------------------------------------------------------------


def test_demo_gateway_uplink_over_tls_with_a_client_certificate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from yugong.apps.demo.edge import edge_devices, run_edge
    from yugong.apps.demo.factory import FactoryProcess, make_layout
    from yugong.apps.demo.provision import GATEWAY_NAME
    from yugong.platform.registry.models import Device

    paths = _pki(tmp_path)
    # Only the TLS port is open: the gateway cannot have come in any other way.
    settings = _settings(tmp_path).model_copy(update={"mqtt_plain": False})
    layout = make_layout(pumps=1, motors=0, meters=0, cncs=1, period_s=0.2)
    with FactoryProcess(layout), BackgroundServer(settings) as srv:
        platform = srv.platform
        assert platform.mqtt_address is None and platform.mqtt_tls_address is not None

        async def scenario() -> set[str]:
            # Announce at once (how it connected), then keep running until cancelled.
            edge = asyncio.create_task(
                run_edge(platform, layout, tmp_path / "edge.sqlite", announce_within=0)
            )
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    assert not edge.done() or edge.exception() is None, edge.exception()
                    names = set(await asyncio.to_thread(edge_devices, platform, GATEWAY_NAME))
                    if "pump-01" in names:
                        return names
                    await asyncio.sleep(0.3)
                raise AssertionError("the gateway's devices did not reach the platform")
            finally:
                edge.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await edge

        assert "pump-01" in asyncio.run(scenario())
        issued = paths.devices / "demo" / f"{GATEWAY_NAME}.pem"
        with platform.db.session() as s:
            gw = s.query(Device).filter_by(name=GATEWAY_NAME).one()
            assert gw.cert_fingerprint == pki.inspect(issued).fingerprint
    assert "MQTT over TLS with a client certificate" in capsys.readouterr().out


@pytest.mark.slow
def test_yugong_demo_runs_with_tls_on(tmp_path: Path) -> None:
    """`yugong demo` as a user starts it: its own PKI on first run, HTTPS, and the
    simulated machines and edge gateway publishing over MQTT with TLS."""
    env = {
        **os.environ,
        "YUGONG_DATA_DIR": str(tmp_path / "data"),
        "YUGONG_HTTP_PORT": str(free_port()),
        "YUGONG_MQTT_PORT": str(free_port()),
        "YUGONG_MQTT_TLS_PORT": str(free_port()),
        "YUGONG_MQTT_PLAIN": "false",  # only TLS is open: every client below came over it
    }
    for name in ("YUGONG_TLS_CERT_FILE", "YUGONG_TLS_KEY_FILE", "YUGONG_MQTT_URL"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "yugong.cli", "demo", "--machines", "2", "--log-level", "WARNING"]
    proc = subprocess.Popen(
        cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Edge gateway" in line:
                break
        out = "".join(lines)
        assert "Edge gateway edge-gw-01" in out, out
        assert "MQTT over TLS with a client certificate" in out
        url = next(w for w in out.split() if w.startswith("https://")).rstrip("/")
        assert "mqtts://127.0.0.1:" + env["YUGONG_MQTT_TLS_PORT"] in out
        assert "mqtt://" not in out
        ca = tmp_path / "data" / "pki" / "ca.pem"
        password = (tmp_path / "data" / "initial-admin-password").read_text().strip()
        with httpx.Client(base_url=url, verify=pki.client_ssl_context(ca)) as client:
            api = Api(client)
            headers = api.login("admin", password)

            tenants = api.call("GET", "/api/v1/tenants", headers)
            demo = next(t["id"] for t in tenants["items"] if t["slug"] == "demo")

            def simulated_values() -> bool:
                devices = api.call(
                    "GET", "/api/v1/devices", headers, params={"limit": 100, "tenant_id": demo}
                )
                names = {d["name"]: d["id"] for d in devices["items"]}
                if "cnc-01" not in names:
                    return False
                latest = api.call("GET", f"/api/v1/devices/{names['cnc-01']}/latest", headers)
                return bool(latest["values"])

            api.wait_for(simulated_values, 20)  # the plant publishes over MQTT with TLS
        children = _children(proc.pid)
        assert children, "the demo runs its factory in a process of its own"
        # A service manager's stop: the demo shuts down cleanly and takes its factory along.
        proc.terminate()
        assert proc.wait(30) == 0
        api.wait_for(lambda: not any(_alive(c) for c in children), 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _children(pid: int) -> list[int]:
    """Child processes of ``pid``, whichever of its threads started them."""
    return [
        int(c)
        for task in Path(f"/proc/{pid}/task").glob("*")
        for c in (task / "children").read_text().split()
    ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone in all but name.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ", 1)[-1].startswith("Z"))
