"""The platform PKI: what its certificates contain, the server TLS context (real handshakes
over sockets), reloading a rotated certificate, and the ``yugong certs`` commands."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.integration.conftest import SENSOR_TSL
from yugong.cli import main
from yugong.core.settings import Settings
from yugong.infra.db import Database
from yugong.platform.registry.models import Device
from yugong.security import pki
from yugong.security.audit import AuditLog

SECRET = "s" * 40


@pytest.fixture
def paths(tmp_path: Path) -> pki.PkiPaths:
    p = pki.pki_paths(tmp_path)
    pki.create_ca(p)
    pki.issue_server(p, ["localhost", "127.0.0.1"])
    return p


def _der_sha256(path: Path) -> str:
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


# Contents -------------------------------------------------------------------------------------


def test_ca_is_a_ten_year_ca_with_a_private_key(tmp_path: Path) -> None:
    p = pki.pki_paths(tmp_path)
    ca = pki.create_ca(p)
    assert stat.S_IMODE(p.ca_key.stat().st_mode) == 0o600
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    life = ca.not_valid_after_utc - ca.not_valid_before_utc
    assert dt.timedelta(days=3649) < life < dt.timedelta(days=3651)
    ca.verify_directly_issued_by(ca)


def test_ca_is_not_replaced_without_force(tmp_path: Path) -> None:
    p = pki.pki_paths(tmp_path)
    first = pki.create_ca(p)
    with pytest.raises(pki.PkiError, match=r"already exists.*--force"):
        pki.create_ca(p)
    assert pki.load_cert(p.ca_cert) == first  # untouched
    second = pki.create_ca(p, force=True)
    assert pki.load_cert(p.ca_cert) == second != first


def test_server_certificate_names_and_usage(tmp_path: Path) -> None:
    p = pki.pki_paths(tmp_path)
    ca = pki.create_ca(p)
    issued = pki.issue_server(p)  # default names
    cert = pki.load_cert(issued.cert_file)
    cert.verify_directly_issued_by(ca)
    names = pki.san_names(cert)
    assert {"localhost", "127.0.0.1", socket.gethostname()} <= set(names)
    ip_sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ip_sans.get_values_for_type(x509.IPAddress)[0].exploded == "127.0.0.1"
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert stat.S_IMODE(issued.key_file.stat().st_mode) == 0o600
    assert issued.fingerprint == _der_sha256(issued.cert_file)

    custom = pki.load_cert(pki.issue_server(p, ["plant.example", "10.0.0.5"]).cert_file)
    assert pki.san_names(custom) == ("plant.example", "10.0.0.5")


def test_device_certificate_identity_usage_and_fingerprint(paths: pki.PkiPaths) -> None:
    issued = pki.issue_device(paths, "press-7", tenant=3, device_id=42, days=30)
    cert = pki.load_cert(issued.cert_file)
    cert.verify_directly_issued_by(pki.load_cert(paths.ca_cert))
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "press-7"
    assert pki.san_names(cert) == ("urn:yugong:tenant:3:device:42",)
    assert pki.device_identity(cert) == ("3", 42)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert issued.fingerprint == _der_sha256(issued.cert_file)
    assert len(issued.fingerprint) == 64 and issued.fingerprint == issued.fingerprint.lower()
    days = (issued.not_after - dt.datetime.now(dt.UTC)).total_seconds() / 86400
    assert 29.9 < days <= 30
    assert issued.cert_file == paths.devices / "3" / "press-7.pem"
    assert stat.S_IMODE(issued.key_file.stat().st_mode) == 0o600


def test_issuing_needs_a_ca_and_sane_input(tmp_path: Path) -> None:
    p = pki.pki_paths(tmp_path)
    with pytest.raises(pki.PkiError, match="certs init"):
        pki.issue_server(p)
    pki.create_ca(p)
    with pytest.raises(pki.PkiError, match="at least 1 day"):
        pki.issue_server(p, days=0)
    with pytest.raises(pki.PkiError, match="cannot name a certificate file"):
        pki.issue_device(p, "../etc", tenant=1, device_id=1)
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(pki.PkiError, match=r"bad\.pem: not an X\.509 certificate"):
        pki.load_cert(bad)


def test_tls_files_resolution(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key=SECRET)
    assert pki.tls_files(settings) is None  # nothing made yet: TLS off
    p = pki.pki_paths(tmp_path)
    pki.create_ca(p)
    pki.issue_server(p)
    assert pki.tls_files(settings) == pki.TlsFiles(p.server_cert, p.server_key, p.ca_cert)
    own = Settings(
        data_dir=tmp_path,
        secret_key=SECRET,
        tls_cert_file=tmp_path / "c.pem",
        tls_key_file=tmp_path / "k.pem",
    )
    # Own server files; client certificates still checked against the platform CA ...
    assert pki.tls_files(own) == pki.TlsFiles(tmp_path / "c.pem", tmp_path / "k.pem", p.ca_cert)
    # ... unless another CA is named.
    other_ca = own.model_copy(update={"tls_ca_file": tmp_path / "ca2.pem"})
    assert pki.tls_files(other_ca) == pki.TlsFiles(
        tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca2.pem"
    )
    half = Settings(data_dir=tmp_path, secret_key=SECRET, tls_cert_file=tmp_path / "c.pem")
    with pytest.raises(pki.PkiError, match="tls_key_file must be set"):
        pki.tls_files(half)


# Handshakes -----------------------------------------------------------------------------------


@contextmanager
def tls_server(ctx: ssl.SSLContext) -> Iterator[tuple[int, list[object]]]:
    """Accept connections on a thread; each outcome (peer DER cert, b"" for none, or the
    handshake error) is appended to the list."""
    outcomes: list[object] = []
    srv = socket.create_server(("127.0.0.1", 0))
    srv.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    outcomes.append(tls.getpeercert(binary_form=True) or b"")
                    tls.sendall(b"hello")
                    tls.recv(1)
            except (ssl.SSLError, OSError) as exc:
                outcomes.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1], outcomes
    finally:
        stop.set()
        t.join(5)
        srv.close()


def _connect(port: int, ctx: ssl.SSLContext, host: str = "localhost") -> bytes:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        data = tls.recv(5)
        return tls.getpeercert(binary_form=True) or b"" if data == b"hello" else b""


def test_server_context_verifies_optional_client_certificates(
    paths: pki.PkiPaths, tmp_path: Path
) -> None:
    ctx = pki.server_ssl_context(paths.server_cert, paths.server_key, paths.ca_cert)
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_OPTIONAL
    device = pki.issue_device(paths, "dev-1", tenant=1, device_id=1)
    other = pki.pki_paths(tmp_path / "other")
    pki.create_ca(other)
    stranger = pki.issue_device(other, "dev-1", tenant=1, device_id=1)

    with tls_server(ctx) as (port, outcomes):
        # A device with a platform certificate: the server sees exactly that certificate.
        server_der = _connect(
            port, pki.client_ssl_context(paths.ca_cert, device.cert_file, device.key_file)
        )
        assert pki.fingerprint(server_der) == _der_sha256(paths.server_cert)
        # No client certificate: allowed at the TLS layer (token or password logins).
        _connect(port, pki.client_ssl_context(paths.ca_cert))
        # A certificate from another CA: the handshake fails.
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _connect(
                port,
                pki.client_ssl_context(paths.ca_cert, stranger.cert_file, stranger.key_file),
            )
        # The client verifies the server: a client trusting another CA refuses.
        with pytest.raises(ssl.SSLCertVerificationError):
            _connect(port, pki.client_ssl_context(other.ca_cert))
    assert pki.fingerprint(outcomes[0]) == device.fingerprint  # type: ignore[arg-type]
    assert outcomes[1] == b""
    assert isinstance(outcomes[2], ssl.SSLError)


def _tls11_client() -> ssl.SSLContext:
    """A client that offers TLS 1.1 only (security level 0 so OpenSSL lets it try)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1_1
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    return ctx


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated")
def test_tls_1_1_is_refused(paths: pki.PkiPaths) -> None:
    # Control: a permissive server does complete a TLS 1.1 handshake with this client, so
    # the refusal below is the platform context's doing.
    lax = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    lax.set_ciphers("DEFAULT:@SECLEVEL=0")
    lax.minimum_version = ssl.TLSVersion.TLSv1_1
    lax.load_cert_chain(paths.server_cert, paths.server_key)
    try:
        with tls_server(lax) as (port, _):
            _connect(port, _tls11_client())
    except ssl.SSLError as exc:  # this OpenSSL build cannot speak TLS 1.1 at all
        pytest.skip(f"TLS 1.1 unavailable in this OpenSSL: {exc}")

    ctx = pki.server_ssl_context(paths.server_cert, paths.server_key)
    with tls_server(ctx) as (port, outcomes):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            _connect(port, _tls11_client())
        assert _connect(port, pki.client_ssl_context(paths.ca_cert))  # TLS 1.2+ fine
    assert isinstance(outcomes[0], ssl.SSLError)


def test_mismatched_key_is_a_clear_error(paths: pki.PkiPaths) -> None:
    device = pki.issue_device(paths, "d", tenant=1, device_id=1)
    with pytest.raises(pki.PkiError, match="is the key the certificate's"):
        pki.server_ssl_context(paths.server_cert, device.key_file)
    with pytest.raises(pki.PkiError, match="not found"):
        pki.server_ssl_context(paths.folder / "nope.pem", paths.server_key)


def test_reloader_serves_a_rotated_certificate_to_new_handshakes(paths: pki.PkiPaths) -> None:
    ctx = pki.server_ssl_context(paths.server_cert, paths.server_key)
    reloader = pki.CertReloader(ctx, paths.server_cert, paths.server_key)
    old = _der_sha256(paths.server_cert)
    client = pki.client_ssl_context(paths.ca_cert)
    with tls_server(ctx) as (port, _):
        assert reloader.check() is False  # nothing changed
        assert pki.fingerprint(_connect(port, client)) == old
        new = pki.issue_server(paths, ["localhost"]).fingerprint
        assert new != old
        assert pki.fingerprint(_connect(port, client)) == old  # not reloaded yet
        assert reloader.check() is True
        assert pki.fingerprint(_connect(port, client)) == new
    assert reloader.reloads == 1


def test_reloader_keeps_the_old_certificate_while_the_pair_does_not_match(
    paths: pki.PkiPaths,
) -> None:
    ctx = pki.server_ssl_context(paths.server_cert, paths.server_key)
    reloader = pki.CertReloader(ctx, paths.server_cert, paths.server_key)
    old = _der_sha256(paths.server_cert)
    other = pki.issue_device(paths, "x", tenant=1, device_id=1)
    paths.server_key.write_bytes(other.key_file.read_bytes())  # half-way through a rotation
    assert reloader.check() is False
    with tls_server(ctx) as (port, _):
        assert pki.fingerprint(_connect(port, pki.client_ssl_context(paths.ca_cert))) == old


def test_handshakes_during_reloads_never_fail(paths: pki.PkiPaths) -> None:
    # Reloads while clients connect: every handshake gets a whole certificate-and-key pair,
    # the old or the new one, and client certificates are still verified after a switch.
    ctx = pki.server_ssl_context(paths.server_cert, paths.server_key, paths.ca_cert)
    reloader = pki.CertReloader(ctx, paths.server_cert, paths.server_key, paths.ca_cert)
    device = pki.issue_device(paths, "dev-r", tenant=1, device_id=1)
    client = pki.client_ssl_context(paths.ca_cert, device.cert_file, device.key_file)
    stop = threading.Event()

    def reload_forever() -> None:
        while not stop.is_set():
            reloader.check(force=True)

    with tls_server(ctx) as (port, outcomes):
        worker = threading.Thread(target=reload_forever)
        worker.start()
        try:
            peers = [_connect(port, client) for _ in range(150)]
        finally:
            stop.set()
            worker.join()
    assert reloader.reloads > 10
    assert all(peers), "a handshake failed during a reload"
    assert all(isinstance(o, bytes) and o for o in outcomes), outcomes


# CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("YUGONG_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("YUGONG_SECRET_KEY", SECRET)
    for name in ("YUGONG_TLS_CERT_FILE", "YUGONG_TLS_KEY_FILE", "YUGONG_TLS_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_cli_init_show_and_rotate(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = pki.pki_paths(cli_env)
    assert main(["certs", "init", "--hosts", "plant.local,127.0.0.1", "--days", "90"]) == 0
    out = capsys.readouterr().out
    assert str(p.ca_cert) in out and "fingerprint:" in out
    first = pki.inspect(p.server_cert)
    assert first.hosts == ("plant.local", "127.0.0.1")
    assert 88 <= first.days_left <= 90
    ca_before = p.ca_cert.read_bytes()

    assert main(["certs", "init"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert p.ca_cert.read_bytes() == ca_before

    assert main(["certs", "show"]) == 0
    out = capsys.readouterr().out
    assert "CN=Yugong Platform CA" in out and "days left" in out and "plant.local" in out

    assert main(["certs", "rotate"]) == 0
    assert "rotated" in capsys.readouterr().out
    rotated = pki.inspect(p.server_cert)
    assert rotated.fingerprint != first.fingerprint
    assert rotated.hosts == first.hosts  # the names carry over
    assert p.ca_cert.read_bytes() == ca_before  # same CA
    pki.load_cert(p.server_cert).verify_directly_issued_by(pki.load_cert(p.ca_cert))


def test_cli_rotate_refuses_a_foreign_certificate(
    cli_env: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert main(["certs", "rotate"]) == 2
    assert "certs init" in capsys.readouterr().err
    assert main(["certs", "init"]) == 0
    other = pki.pki_paths(tmp_path / "elsewhere")
    pki.create_ca(other)
    foreign = pki.issue_server(other)
    monkeypatch.setenv("YUGONG_TLS_CERT_FILE", str(foreign.cert_file))
    monkeypatch.setenv("YUGONG_TLS_KEY_FILE", str(foreign.key_file))
    before = foreign.cert_file.read_bytes()
    assert main(["certs", "rotate"]) == 2
    assert "not issued by the platform CA" in capsys.readouterr().err
    assert foreign.cert_file.read_bytes() == before


def test_cli_issue_device_stores_fingerprint_and_expiry(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["certs", "issue-device", "m1", "--tenant", "acme"]) == 2
    assert "certs init" in capsys.readouterr().err
    tsl = cli_env / "sensor.json"
    tsl.write_text(json.dumps(SENSOR_TSL))
    assert main(["certs", "init"]) == 0
    assert main(["tenant", "create", "Acme"]) == 0
    assert main(["product", "import", str(tsl), "--tenant", "acme"]) == 0
    assert main(["device", "create", "m1", "--tenant", "acme", "--product", "sensor"]) == 0
    capsys.readouterr()

    assert main(["certs", "issue-device", "nope", "--tenant", "acme"]) == 2
    assert "nope" in capsys.readouterr().err

    out_dir = cli_env / "issued"
    rc = main(
        ["certs", "issue-device", "m1", "--tenant", "acme", "--days", "7", "--out", str(out_dir)]
    )
    assert rc == 0
    out = capsys.readouterr().out
    fp = _der_sha256(out_dir / "m1.pem")
    assert fp in out and "urn:yugong:tenant:" in out
    db = Database(Settings(data_dir=cli_env, secret_key=SECRET).registry_url)
    try:
        with db.session() as s:
            device = s.query(Device).filter_by(name="m1").one()
            assert device.cert_fingerprint == fp
            assert device.cert_not_after is not None
            left = device.cert_not_after - dt.datetime.now(dt.UTC)
            assert dt.timedelta(days=6.9) < left <= dt.timedelta(days=7)
            cert = pki.load_cert(out_dir / "m1.pem")
            assert pki.device_identity(cert) == (str(device.tenant_id), device.id)
        entries, total = AuditLog(db).list(all_tenants=True, action="devices.certificate_issued")
        assert total == 1 and entries[0].detail["fingerprint"] == fp
        assert entries[0].target_id == str(device.id)
    finally:
        db.dispose()
