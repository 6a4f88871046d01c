"""The platform's own small PKI: a CA, server certificates for HTTPS and MQTT over TLS, and
client certificates for devices and gateways (mutual TLS).

Files live under ``{data_dir}/pki/`` unless settings name others. Keys are EC P-256, written
with mode 0600. A device certificate is identified by the SHA-256 of its DER encoding (the
form the registry keeps in ``Device.cert_fingerprint``).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ipaddress
import logging
import os
import secrets
import socket
import ssl
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

if TYPE_CHECKING:
    from yugong.core.settings import Settings

log = logging.getLogger(__name__)

CA_DAYS = 3650
SERVER_DAYS = 825  # the longest browsers accept for a server certificate
DEVICE_DAYS = 365
RELOAD_INTERVAL_S = 2.0
DEVICE_URN = "urn:yugong:tenant:{tenant}:device:{device}"
_CLOCK_SKEW = dt.timedelta(minutes=5)  # not_before this far back: peers with slow clocks


class PkiError(ValueError):
    """A PKI file is missing, unreadable or does not fit the operation."""


# Files ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PkiPaths:
    folder: Path

    @property
    def ca_cert(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.folder / "ca.key"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server.key"

    @property
    def devices(self) -> Path:
        return self.folder / "devices"


def pki_paths(data_dir: Path) -> PkiPaths:
    return PkiPaths(Path(data_dir) / "pki")


@dataclass(frozen=True)
class TlsFiles:
    cert_file: Path
    key_file: Path
    ca_file: Path | None  # verifies client certificates; None: none are asked for


def tls_files(settings: Settings) -> TlsFiles | None:
    """The server's TLS files: those set in settings, else ``{data_dir}/pki/server.pem`` and
    ``server.key`` when ``yugong certs init`` made them; None when TLS is off. The CA for
    client certificates is ``tls_ca_file``, else the platform CA when present."""
    paths = pki_paths(settings.data_dir)
    ca = settings.tls_ca_file or (paths.ca_cert if paths.ca_cert.exists() else None)
    if settings.tls_cert_file is not None or settings.tls_key_file is not None:
        if settings.tls_cert_file is None or settings.tls_key_file is None:
            missing = "tls_key_file" if settings.tls_key_file is None else "tls_cert_file"
            raise PkiError(f"{missing} must be set together with the other TLS file")
        return TlsFiles(settings.tls_cert_file, settings.tls_key_file, ca)
    if paths.server_cert.exists() and paths.server_key.exists():
        return TlsFiles(paths.server_cert, paths.server_key, ca)
    return None


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _write_public(path: Path, data: bytes) -> None:
    _write_private(path, data)
    path.chmod(0o644)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def load_cert(path: Path) -> x509.Certificate:
    """The first certificate in a PEM (or DER) file, with a clear error when it is not one."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PkiError(f"certificate file not found: {path}") from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise PkiError(f"{path}: not an X.509 certificate ({exc})") from None


def load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PkiError(f"key file not found: {path}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PkiError(f"{path}: not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise PkiError(f"{path}: expected an EC private key")
    return key


# Certificates ---------------------------------------------------------------------------------


def fingerprint(cert: x509.Certificate | bytes) -> str:
    """SHA-256 of the DER encoding, lower-case hex (accepts a certificate or its DER bytes)."""
    der = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _validity(days: int, valid_from: dt.datetime | None) -> tuple[dt.datetime, dt.datetime]:
    if days < 1:
        raise PkiError(f"validity must be at least 1 day, not {days}")
    if valid_from is not None:
        return valid_from, valid_from + dt.timedelta(days=days)
    now = _now()
    return now - _CLOCK_SKEW, now + dt.timedelta(days=days)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    days: int,
    valid_from: dt.datetime | None,
) -> x509.CertificateBuilder:
    start, end = _validity(days, valid_from)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _name(common_name: str, org: str = "Yugong") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def create_ca(
    paths: PkiPaths,
    *,
    common_name: str | None = None,
    days: int = CA_DAYS,
    force: bool = False,
    valid_from: dt.datetime | None = None,
) -> x509.Certificate:
    """A new self-signed CA in ``paths``; refuses to replace an existing one unless ``force``
    (every certificate it issued would stop being trusted)."""
    if paths.ca_cert.exists() and not force:
        raise PkiError(
            f"a CA already exists at {paths.ca_cert}; replacing it invalidates every "
            "certificate it issued (use --force to do so anyway)"
        )
    key = ec.generate_private_key(ec.SECP256R1())
    # A name of its own: two installations' CAs never look alike to a verifier.
    name = _name(common_name or f"Yugong Platform CA {secrets.token_hex(4)}")
    cert = (
        _builder(name, name, key.public_key(), days, valid_from)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    _write_private(paths.ca_key, _key_pem(key))
    _write_public(paths.ca_cert, _cert_pem(cert))
    return cert


def _load_ca(paths: PkiPaths) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    if not paths.ca_cert.exists() or not paths.ca_key.exists():
        raise PkiError(f"no CA in {paths.folder}: run `yugong certs init` first")
    return load_cert(paths.ca_cert), load_key(paths.ca_key)


def _leaf_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=True,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def default_hosts() -> list[str]:
    hosts = ["localhost", "127.0.0.1"]
    name = socket.gethostname()
    if name and name not in hosts:
        hosts.append(name)
    return hosts


def _san(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for h in hosts:
        h = h.strip()
        if not h:
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    if not names:
        raise PkiError("a server certificate needs at least one host name or IP address")
    return names


@dataclass(frozen=True)
class Issued:
    cert_file: Path
    key_file: Path
    fingerprint: str
    not_after: dt.datetime


def _issue(
    paths: PkiPaths,
    subject: x509.Name,
    san: list[x509.GeneralName],
    usage: x509.ObjectIdentifier,
    days: int,
    valid_from: dt.datetime | None,
    cert_file: Path,
    key_file: Path,
) -> Issued:
    ca_cert, ca_key = _load_ca(paths)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), days, valid_from)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Key first, then certificate: a watcher that sees the new certificate finds its key.
    _write_private(key_file, _key_pem(key))
    _write_public(cert_file, _cert_pem(cert))
    return Issued(cert_file, key_file, fingerprint(cert), cert.not_valid_after_utc)


def issue_server(
    paths: PkiPaths,
    hosts: Sequence[str] | None = None,
    *,
    days: int = SERVER_DAYS,
    valid_from: dt.datetime | None = None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
) -> Issued:
    """A server certificate signed by the platform CA for ``hosts`` (DNS names and IPs;
    default localhost, 127.0.0.1 and this machine's name)."""
    hosts = list(hosts) if hosts else default_hosts()
    return _issue(
        paths,
        _name(hosts[0]),
        _san(hosts),
        ExtendedKeyUsageOID.SERVER_AUTH,
        days,
        valid_from,
        cert_file or paths.server_cert,
        key_file or paths.server_key,
    )


def device_urn(tenant: int | str, device: int | str) -> str:
    return DEVICE_URN.format(tenant=tenant, device=device)


def issue_device(
    paths: PkiPaths,
    name: str,
    *,
    tenant: int | str,
    device_id: int,
    out_dir: Path | None = None,
    days: int = DEVICE_DAYS,
    valid_from: dt.datetime | None = None,
) -> Issued:
    """A client certificate (clientAuth) for a device or gateway: CN = its name, SAN URI
    ``urn:yugong:tenant:{tenant}:device:{id}``. Written as ``{name}.pem`` / ``{name}.key``
    under ``out_dir`` (default ``pki/devices/{tenant}``)."""
    if not name or "/" in name or name.startswith("."):
        raise PkiError(f"device name {name!r} cannot name a certificate file")
    folder = out_dir if out_dir is not None else paths.devices / str(tenant)
    return _issue(
        paths,
        _name(name),
        [x509.UniformResourceIdentifier(device_urn(tenant, device_id))],
        ExtendedKeyUsageOID.CLIENT_AUTH,
        days,
        valid_from,
        folder / f"{name}.pem",
        folder / f"{name}.key",
    )


# Inspection -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertInfo:
    path: Path
    subject: str
    issuer: str
    not_before: dt.datetime
    not_after: dt.datetime
    hosts: tuple[str, ...]  # DNS names, IPs and URIs of the SAN
    fingerprint: str

    @property
    def days_left(self) -> int:
        return (self.not_after - _now()).days

    @property
    def expired(self) -> bool:
        return self.not_after <= _now()


def san_names(cert: x509.Certificate) -> tuple[str, ...]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ()
    out: list[str] = list(ext.get_values_for_type(x509.DNSName))
    out += [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    out += list(ext.get_values_for_type(x509.UniformResourceIdentifier))
    return tuple(out)


def inspect(path: Path) -> CertInfo:
    cert = load_cert(path)
    return CertInfo(
        Path(path),
        cert.subject.rfc4514_string(),
        cert.issuer.rfc4514_string(),
        cert.not_valid_before_utc,
        cert.not_valid_after_utc,
        san_names(cert),
        fingerprint(cert),
    )


def device_identity(cert: x509.Certificate) -> tuple[str, int] | None:
    """(tenant, device id) from a device certificate's SAN URI; None when it has none."""
    for uri in san_names(cert):
        parts = uri.split(":")
        if len(parts) == 6 and parts[:3] == ["urn", "yugong", "tenant"] and parts[4] == "device":
            with contextlib.suppress(ValueError):
                return parts[3], int(parts[5])
    return None


# TLS contexts ---------------------------------------------------------------------------------


def server_ssl_context(
    cert_file: Path | str, key_file: Path | str, ca_file: Path | str | None = None
) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer only, this certificate and key, and with
    ``ca_file`` client certificates asked for (CERT_OPTIONAL) and verified against it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        ctx.load_cert_chain(str(cert_file), str(key_file))
    except FileNotFoundError as exc:
        raise PkiError(f"TLS file not found: {exc.filename}") from None
    except ssl.SSLError as exc:
        raise PkiError(
            f"cannot use {cert_file} with {key_file}: {exc.reason or exc} "
            "(is the key the certificate's?)"
        ) from None
    if ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(ca_file))
        except (FileNotFoundError, ssl.SSLError) as exc:
            raise PkiError(f"cannot load CA file {ca_file}: {exc}") from None
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def client_ssl_context(
    ca_file: Path | str,
    cert_file: Path | str | None = None,
    key_file: Path | str | None = None,
) -> ssl.SSLContext:
    """A client context that trusts ``ca_file`` only, TLS 1.2+, optionally presenting a
    client certificate."""
    ctx = ssl.create_default_context(cafile=str(ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file is not None:
        ctx.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    return ctx


class CertReloader:
    """Keeps live server contexts' certificate current (HTTPS, MQTT over TLS): when the
    certificate or key file changes, a fresh context is built from them and each new
    handshake is switched to it from the live context's SNI callback (called for every
    ClientHello, with or without a server name). The live context is never changed while it
    serves, so a handshake can never meet a certificate without its key, and established
    connections carry on."""

    def __init__(
        self,
        context: ssl.SSLContext,
        cert_file: Path,
        key_file: Path,
        ca_file: Path | str | None = None,
    ) -> None:
        self.cert_file = Path(cert_file)
        self.key_file = Path(key_file)
        self.reloads = 0
        self._live: list[tuple[ssl.SSLContext, Path | None]] = []
        self._fresh: dict[int, ssl.SSLContext] = {}  # id(live context) -> its replacement
        self._stamp = self._current()
        self.add(context, ca_file)

    @property
    def contexts(self) -> list[ssl.SSLContext]:
        return [live for live, _ in self._live]

    def add(self, context: ssl.SSLContext, ca_file: Path | str | None = None) -> None:
        """Keep another context serving these files current too; ``ca_file`` is the CA it
        verifies client certificates against, if any."""
        if any(live is context for live, _ in self._live):
            return
        self._live.append((context, Path(ca_file) if ca_file else None))
        key = id(context)

        def switch(
            conn: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, ctx: ssl.SSLContext
        ) -> None:
            fresh = self._fresh.get(key)
            if fresh is not None:
                conn.context = fresh

        context.sni_callback = switch

    def _current(self) -> tuple[tuple[int, int], ...]:
        out = []
        for p in (self.cert_file, self.key_file):
            try:
                st = p.stat()
            except FileNotFoundError:
                out.append((0, 0))
            else:
                out.append((st.st_mtime_ns, st.st_size))
        return tuple(out)

    def check(self, *, force: bool = False) -> bool:
        """Reload when the files changed (or ``force``); True when a new certificate is in
        use. A half-written pair (key and certificate not matching yet) is retried later."""
        stamp = self._current()
        if stamp == self._stamp and not force:
            return False
        try:
            fresh = {
                id(live): server_ssl_context(self.cert_file, self.key_file, ca)
                for live, ca in self._live
            }
        except PkiError as exc:
            log.warning("TLS certificate %s not reloaded yet: %s", self.cert_file, exc)
            return False
        self._fresh = fresh  # one assignment: a handshake sees the old set or the new
        self._stamp = stamp
        self.reloads += 1
        log.info("TLS certificate reloaded from %s", self.cert_file)
        return True

    async def watch(self, interval_s: float = RELOAD_INTERVAL_S) -> None:
        """Check every ``interval_s`` until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await asyncio.to_thread(self.check)


def ensure_pki(settings: Settings, hosts: Sequence[str] | None = None) -> TlsFiles:
    """The server's TLS files; when none are configured or made yet, a platform CA and a
    server certificate under ``{data_dir}/pki`` first (the demo runs with TLS on)."""
    files = tls_files(settings)
    if files is not None:
        return files
    paths = pki_paths(settings.data_dir)
    if not paths.ca_cert.exists():
        create_ca(paths)
    names = list(hosts) if hosts else default_hosts()
    if settings.http_host not in names and settings.http_host not in ("0.0.0.0", "::"):  # noqa: S104
        names.append(settings.http_host)
    issue_server(paths, names)
    made = tls_files(settings)
    assert made is not None
    return made
